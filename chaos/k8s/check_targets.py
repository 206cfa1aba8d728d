#!/usr/bin/env python3
"""Checks that every Chaos Mesh experiment of chaos/k8s hits something real.

kubeconform proves the experiments are valid Chaos Mesh resources; this proves that their
selectors (`selector`, and `target.selector` of NetworkChaos) select pods the platform really
runs in the dev overlay (our Deployments' pod templates, and the pods Strimzi and
CloudNativePG create for the Kafka node pools and the PostgreSQL cluster we ship), in a
namespace the overlay uses, and that a DNSChaos names the Kafka bootstrap host the roles are
configured with (GM_KAFKA__BROKERS).

usage: check_targets.py CHAOS.yaml DEV.yaml [PROD.yaml]   (kustomize build outputs)
"""
import sys

import yaml


def load(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def pods_of(docs):
    """(owner, labels) of every pod the rendered overlay makes run."""
    pods = []
    for d in docs:
        kind, spec = d["kind"], d.get("spec") or {}
        tpl = None
        if kind in ("Deployment", "StatefulSet", "DaemonSet", "Job") or (kind == "Rollout" and "template" in spec):
            tpl = spec["template"]
        elif kind == "CronJob":
            tpl = spec["jobTemplate"]["spec"]["template"]
        if tpl:
            pods.append((f"{kind}/{d['metadata']['name']}", tpl["metadata"].get("labels", {})))
        if kind == "KafkaNodePool":
            roles = spec["roles"]
            cluster = d["metadata"]["labels"]["strimzi.io/cluster"]
            pods.append((f"KafkaNodePool/{d['metadata']['name']}", {
                "strimzi.io/cluster": cluster, "strimzi.io/kind": "Kafka", "strimzi.io/name": f"{cluster}-kafka",
                "strimzi.io/pool-name": d["metadata"]["name"],
                "strimzi.io/broker-role": str("broker" in roles).lower(),
                "strimzi.io/controller-role": str("controller" in roles).lower()}))
        if kind == "Cluster" and d["apiVersion"].startswith("postgresql.cnpg.io"):
            # CloudNativePG labels each instance with its current role.
            for role in ("primary", "replica") if spec.get("instances", 1) > 1 else ("primary",):
                pods.append((f"Cluster/{d['metadata']['name']} {role}", {
                    "cnpg.io/cluster": d["metadata"]["name"], "cnpg.io/podRole": "instance",
                    "cnpg.io/instanceRole": role}))
    return pods


def selects(selector, labels):
    for k, v in (selector.get("labelSelectors") or {}).items():
        if labels.get(k) != v:
            return False
    for e in selector.get("expressionSelectors") or []:
        op, k, vals = e["operator"], e["key"], e.get("values", [])
        if (op == "In" and labels.get(k) not in vals) or (op == "NotIn" and labels.get(k) in vals) \
                or (op == "Exists" and k not in labels) or (op == "DoesNotExist" and k in labels):
            return False
    return True


def namespaces_of(docs):
    return {d["metadata"].get("namespace") for d in docs} | {d["metadata"]["name"] for d in docs if d["kind"] == "Namespace"}


def bootstrap_hosts(docs):
    hosts = set()
    for d in docs:
        if d["kind"] == "ConfigMap":
            for k, v in (d.get("data") or {}).items():
                if k == "GM_KAFKA__BROKERS":
                    hosts |= {b.rsplit(":", 1)[0] for b in v.split(",")}
    return hosts


def main():
    chaos = load(sys.argv[1])
    overlays = {path: load(path) for path in sys.argv[2:]}
    dev = sys.argv[2]
    errors = []
    for exp in chaos:
        name = f"{exp['kind']}/{exp['metadata']['name']}"
        if exp["metadata"].get("namespace") not in namespaces_of(overlays[dev]):
            errors.append(f"{name}: namespace {exp['metadata'].get('namespace')} is not one the platform uses")
        selectors = [("selector", exp["spec"]["selector"])]
        if "target" in exp["spec"]:
            selectors.append(("target", exp["spec"]["target"]["selector"]))
        for which, sel in selectors:
            for path, docs in overlays.items():
                unknown = set(sel.get("namespaces") or []) - namespaces_of(docs)
                if unknown and path == dev:
                    errors.append(f"{name}: {which} namespaces {sorted(unknown)} not in {path}")
            hit = [owner for owner, labels in pods_of(overlays[dev]) if selects(sel, labels)]
            if not hit:
                errors.append(f"{name}: {which} selects no pod of {dev}")
            others = {p: [o for o, l in pods_of(d) if selects(sel, l)] for p, d in overlays.items() if p != dev}
            print(f"check_targets: {name} {which} -> {', '.join(hit) or 'nothing'}"
                  + "".join(f"; {p}: {', '.join(o) or 'none (not run there)'}" for p, o in others.items()))
        if exp["kind"] == "DNSChaos":
            hosts = bootstrap_hosts(overlays[dev])
            if not hosts or not hosts <= set(exp["spec"].get("patterns", [])):
                errors.append(f"{name}: patterns {exp['spec'].get('patterns')} miss the bootstrap host(s) {sorted(hosts)}")
    for e in errors:
        print(f"check_targets: {e}", file=sys.stderr)
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    main()
