#!/usr/bin/env python3
"""CustomResourceDefinition YAML -> kubeconform JSON schemas.

usage: crd2schema.py OUT_DIR CRD_FILE...

Writes OUT_DIR/{group}/{kind}_{version}.json (lowercased) for every served version, in
kubeconform's -schema-location '{{.Group}}/{{.ResourceKind}}_{{.ResourceAPIVersion}}.json'
layout. Strict like kubeconform's own schemas: an object with `properties` and neither
`additionalProperties` nor x-kubernetes-preserve-unknown-fields refuses unknown fields.
"""
import json
import os
import sys

import yaml

# Some CRDs hold a bare "=" (YAML 1.1 value tag): read it as the string it is.
yaml.SafeLoader.add_constructor("tag:yaml.org,2002:value", lambda loader, node: loader.construct_scalar(node))


def strict(node):
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            if k in ("properties", "patternProperties", "definitions", "$defs"):
                out[k] = {name: strict(sub) for name, sub in v.items()}
            else:
                out[k] = strict(v)
        if out.get("required") == []:
            del out["required"]  # draft 4 wants at least one item
        if out.get("x-kubernetes-int-or-string"):
            out.pop("type", None)
            out.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
        if out.get("nullable"):
            t = out.get("type")
            if isinstance(t, str):
                out["type"] = [t, "null"]
        if "properties" in out and "additionalProperties" not in out and not out.get(
            "x-kubernetes-preserve-unknown-fields"
        ):
            out["additionalProperties"] = False
        return out
    if isinstance(node, list):
        return [strict(v) for v in node]
    return node


def main():
    out_dir, files = sys.argv[1], sys.argv[2:]
    count = 0
    for path in files:
        with open(path) as f:
            docs = list(yaml.safe_load_all(f))
        for doc in docs:
            if not isinstance(doc, dict) or doc.get("kind") != "CustomResourceDefinition":
                continue
            spec = doc["spec"]
            group, kind = spec["group"], spec["names"]["kind"]
            for version in spec.get("versions", []):
                schema = (version.get("schema") or {}).get("openAPIV3Schema")
                if schema is None or not version.get("served", True):
                    continue
                schema = strict(schema)
                props = schema.setdefault("properties", {})
                # apiVersion/kind/metadata are often untyped in CRDs; pin them down.
                props["apiVersion"] = {"type": "string", "enum": [f"{group}/{version['name']}"]}
                props["kind"] = {"type": "string", "enum": [kind]}
                props.setdefault("metadata", {"type": "object"})
                props["metadata"].pop("additionalProperties", None)
                target = os.path.join(out_dir, group.lower(), f"{kind.lower()}_{version['name'].lower()}.json")
                os.makedirs(os.path.dirname(target), exist_ok=True)
                with open(target, "w") as f:
                    json.dump(schema, f)
                count += 1
    print(f"{count} CRD schemas from {len(files)} files", file=sys.stderr)


if __name__ == "__main__":
    main()
