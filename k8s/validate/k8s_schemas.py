#!/usr/bin/env python3
"""Kubernetes JSON schemas from the PyPI package kubernetes-validate -> kubeconform layout.

usage: k8s_schemas.py SRC_DIR OUT_DIR

SRC_DIR is kubernetes_validate/kubernetes-json-schema/v<version>-local-strict: one file per
kind ({kind}-{group}-{version}.json, kubeconform's {{.ResourceKind}}{{.KindSuffix}}) whose
$refs point at "/api/_definitions.json" and whose $id is a kubernetes.io URL. kubeconform
resolves references relative to the file, so both are rewritten to the local file.
"""
import json
import os
import sys

PREFIX = "/api/_definitions.json"


def fix(node):
    if isinstance(node, dict):
        node.pop("$id", None)
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith(PREFIX):
            node["$ref"] = "_definitions.json" + ref[len(PREFIX):]
        for v in node.values():
            fix(v)
    elif isinstance(node, list):
        for v in node:
            fix(v)
    return node


def main():
    src, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    n = 0
    for name in os.listdir(src):
        if not name.endswith(".json"):
            continue
        with open(os.path.join(src, name)) as f:
            schema = fix(json.load(f))
        with open(os.path.join(out, name), "w") as f:
            json.dump(schema, f)
        n += 1
    print(f"{n} Kubernetes schemas", file=sys.stderr)


if __name__ == "__main__":
    main()
