#!/usr/bin/env python3
"""Cross-checks kubeconform cannot do, on the output of `kustomize build` (stdin):

* every label selector (Service, PDB, NetworkPolicy, HPA/VPA target, PodMonitor, Istio,
  Rollout, topology spread) selects a pod template we ship or a pod an operator creates
  from a custom resource we ship (Strimzi Kafka/KafkaNodePool, CloudNativePG Cluster);
* every Service targetPort exists on the pods it selects;
* every GM_* variable names a real setting of the code (struct fields of src/config.rs, the
  [actors] section's ActorsSettings in actors/src/runtime.rs,
  kafka/src/config.rs, redis/src/config.rs) and each role gets the settings it needs;
* secrets and config maps referenced by pods exist (or are made by an operator);
* the topic settings given to the roles equal the KafkaTopics, the consumer-group roles'
  HPA ceilings do not exceed their partition counts, probes use the routes the code serves.

usage: check_refs.py REPO_ROOT OVERLAY_NAME < rendered.yaml
"""
import re
import sys

import yaml

ROOT, OVERLAY = sys.argv[1], sys.argv[2]
docs = [d for d in yaml.safe_load_all(sys.stdin) if d]
errors = []


def err(msg):
    errors.append(msg)


def key(d):
    return f"{d['kind']}/{d['metadata']['name']}"


# ---- the code's configuration: struct fields -> valid setting paths -------------------
def rust_structs(paths):
    structs = {}
    for p in paths:
        src = open(f"{ROOT}/{p}").read()
        for m in re.finditer(r"pub struct (\w+) \{(.*?)\n\}", src, re.S):
            fields = {}
            for f in re.finditer(r"^\s*pub (\w+): ([^,]+),", m.group(2), re.M):
                fields[f.group(1)] = f.group(2).strip()
            structs[m.group(1)] = fields
    return structs


STRUCTS = rust_structs(["src/config.rs", "actors/src/runtime.rs", "kafka/src/config.rs", "redis/src/config.rs"])


def setting_exists(path):
    struct = "Config"
    for i, part in enumerate(path):
        fields = STRUCTS.get(struct)
        if fields is None or part not in fields:
            return False
        ty = fields[part]
        inner = re.sub(r"^Option<(.*)>$", r"\1", ty).split("::")[-1]
        if i == len(path) - 1:
            return True
        if inner in STRUCTS:
            struct = inner
        elif inner.startswith("BTreeMap") or inner in ("Extra",):
            return True  # free-form maps (kafka.extra, topic configs)
        else:
            return False
    return True


COMMON = ["mode", "http.bind", "postgres.url", "kafka.brokers", "kafka.security.protocol",
          "kafka.security.sasl_mechanism", "kafka.security.sasl_username",
          "kafka.security.sasl_password", "kafka.security.ssl_ca_location"]
REQUIRED = {
    "gateway": COMMON + ["api_keys", "redis.url", "privacy.master_key"],
    "actors": COMMON,
    "projections": COMMON,
    "migrate": ["mode", "postgres.url"],
    "retention": ["mode", "postgres.url"],
}
SUBCOMMANDS = {"serve", "gateway", "actors", "projections", "migrate", "simulate", "retention"}
for name in ("Gateway", "Actors", "Projections", "Migrate", "Serve", "Simulate", "Retention"):
    if not re.search(rf"^\s*{name}\b", open(f"{ROOT}/src/main.rs").read(), re.M):
        err(f"code: subcommand {name} not found in src/main.rs")
ROUTES = set(re.findall(r'\("(/[^"]*)", "get"', open(f"{ROOT}/gateway/src/lib.rs").read()))
OPS_ROUTES = set(re.findall(r'\.route\("(/[^"]*)"', open(f"{ROOT}/gateway/src/health.rs").read()))

# ---- pods: our templates plus operator-made pods -----------------------------------------
by_kind = {}
for d in docs:
    by_kind.setdefault(d["kind"], []).append(d)
pods = []  # (owner, labels, containers)
for d in docs:
    spec = d.get("spec") or {}
    tpl = None
    if d["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet"):
        tpl = spec["template"]
    elif d["kind"] == "Job":
        tpl = spec["template"]
    elif d["kind"] == "CronJob":
        tpl = spec["jobTemplate"]["spec"]["template"]
    elif d["kind"] == "Rollout" and "template" in spec:
        tpl = spec["template"]
    if tpl:
        pods.append((key(d), tpl["metadata"].get("labels", {}), tpl["spec"].get("containers", []), tpl["spec"]))
for k in by_kind.get("KafkaNodePool", []):
    cluster = k["metadata"]["labels"]["strimzi.io/cluster"]
    roles = k["spec"]["roles"]
    pods.append((key(k), {"strimzi.io/cluster": cluster, "strimzi.io/kind": "Kafka",
                          "strimzi.io/name": f"{cluster}-kafka", "strimzi.io/pool-name": k["metadata"]["name"],
                          "strimzi.io/broker-role": str("broker" in roles).lower(),
                          "strimzi.io/controller-role": str("controller" in roles).lower()},
                 [{"name": "kafka", "ports": [{"containerPort": p} for p in (9090, 9091, 9093)]}], {}))
for k in by_kind.get("Kafka", []):
    c = k["metadata"]["name"]
    if "entityOperator" in k["spec"]:
        pods.append((key(k) + " entity operator", {"strimzi.io/cluster": c, "strimzi.io/kind": "Kafka",
                                                    "strimzi.io/name": f"{c}-entity-operator"}, [], {}))
    if "kafkaExporter" in k["spec"]:
        pods.append((key(k) + " kafka exporter", {"strimzi.io/cluster": c, "strimzi.io/kind": "Kafka",
                                                   "strimzi.io/name": f"{c}-kafka-exporter"},
                     [{"name": "kafka-exporter", "ports": [{"name": "tcp-prometheus", "containerPort": 9404}]}], {}))
# Pods the Prometheus Operator makes for an Alertmanager: its podMetadata labels.
for a in by_kind.get("Alertmanager", []):
    pods.append((key(a), dict((a["spec"].get("podMetadata") or {}).get("labels") or {}),
                 [{"name": "alertmanager", "ports": [{"name": "web", "containerPort": 9093}]}], {}))
for c in by_kind.get("Cluster", []):
    if c["apiVersion"].startswith("postgresql.cnpg.io"):
        pods.append((key(c), {"cnpg.io/cluster": c["metadata"]["name"], "cnpg.io/podRole": "instance"},
                     [{"name": "postgres", "ports": [{"name": "postgresql", "containerPort": 5432},
                                                     {"name": "metrics", "containerPort": 9187},
                                                     {"name": "status", "containerPort": 8000}]}], {}))


def matches(selector, labels):
    if selector is None:
        return False
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for e in selector.get("matchExpressions") or []:
        op, k, vals = e["operator"], e["key"], e.get("values", [])
        if op == "In" and labels.get(k) not in vals:
            return False
        if op == "NotIn" and labels.get(k) in vals:
            return False
        if op == "Exists" and k not in labels:
            return False
        if op == "DoesNotExist" and k in labels:
            return False
    return True


def selected(selector):
    return [p for p in pods if matches(selector, p[1])]


def must_select(where, selector):
    if selector == {}:
        return pods  # empty selector: every pod of the namespace
    found = selected(selector)
    if not found:
        err(f"{where}: selector {selector} selects no pod")
    return found


# ---- selectors -----------------------------------------------------------------------------
for s in by_kind.get("Service", []):
    sel = s["spec"].get("selector")
    if not sel:
        continue
    found = must_select(key(s), {"matchLabels": sel})
    for port in s["spec"]["ports"]:
        tp = port.get("targetPort", port["port"])
        for owner, _, containers, _ in found:
            names = {p.get("name") for c in containers for p in c.get("ports", [])}
            nums = {p.get("containerPort") for c in containers for p in c.get("ports", [])}
            if (isinstance(tp, str) and tp not in names) or (isinstance(tp, int) and tp not in nums):
                err(f"{key(s)}: targetPort {tp!r} is not a port of {owner}")
for d in by_kind.get("PodDisruptionBudget", []):
    must_select(key(d), d["spec"]["selector"])
for d in by_kind.get("NetworkPolicy", []):
    must_select(key(d), d["spec"]["podSelector"])
    for rule in (d["spec"].get("ingress") or []) + (d["spec"].get("egress") or []):
        for peer in rule.get("from", []) + rule.get("to", []):
            if "podSelector" in peer and "namespaceSelector" not in peer:
                must_select(f"{key(d)} peer", peer["podSelector"])
for d in by_kind.get("PodMonitor", []):
    found = must_select(key(d), d["spec"]["selector"])
    for ep in d["spec"]["podMetricsEndpoints"]:
        if "port" in ep:
            for owner, _, containers, _ in found:
                if ep["port"] not in {p.get("name") for c in containers for p in c.get("ports", [])}:
                    err(f"{key(d)}: port {ep['port']} is not a port of {owner}")
for d in by_kind.get("AuthorizationPolicy", []) + by_kind.get("PeerAuthentication", []):
    if "selector" in (d.get("spec") or {}):
        must_select(key(d), d["spec"]["selector"])
for d in docs:
    tpl_spec = None
    if d["kind"] in ("Deployment", "StatefulSet"):
        must_select(f"{key(d)} spec.selector", d["spec"]["selector"])
        if not matches(d["spec"]["selector"], d["spec"]["template"]["metadata"].get("labels", {})):
            err(f"{key(d)}: spec.selector does not match its own template")
        tpl_spec = d["spec"]["template"]["spec"]
    if tpl_spec:
        for t in tpl_spec.get("topologySpreadConstraints", []):
            must_select(f"{key(d)} topologySpread", t["labelSelector"])
for d in by_kind.get("Rollout", []):
    must_select(key(d), d["spec"]["selector"])
    ref = d["spec"].get("workloadRef")
    if ref and not any(x["kind"] == ref["kind"] and x["metadata"]["name"] == ref["name"] for x in docs):
        err(f"{key(d)}: workloadRef {ref['kind']}/{ref['name']} not found")
    bg = d["spec"]["strategy"].get("blueGreen")
    for svc in ([bg["activeService"], bg.get("previewService")] if bg else []):
        if svc and not any(x["kind"] == "Service" and x["metadata"]["name"] == svc for x in docs):
            err(f"{key(d)}: service {svc} not found")
    for a in (d["spec"]["strategy"].get("canary") or {}).get("analysis", {}).get("templates", []) + \
            ((bg or {}).get("prePromotionAnalysis") or {}).get("templates", []):
        if not any(x["kind"] == "AnalysisTemplate" and x["metadata"]["name"] == a["templateName"] for x in docs):
            err(f"{key(d)}: AnalysisTemplate {a['templateName']} not found")
for d in by_kind.get("HorizontalPodAutoscaler", []) + by_kind.get("VerticalPodAutoscaler", []):
    ref = d["spec"].get("scaleTargetRef") or d["spec"].get("targetRef")
    if not any(x["kind"] == ref["kind"] and x["metadata"]["name"] == ref["name"] for x in docs):
        err(f"{key(d)}: target {ref['kind']}/{ref['name']} not found")

# ---- secrets, config maps, env --------------------------------------------------------------
secrets = {}
for s in by_kind.get("Secret", []):
    secrets[s["metadata"]["name"]] = set((s.get("data") or {}).keys()) | set((s.get("stringData") or {}).keys())
for e in by_kind.get("ExternalSecret", []):
    t = e["spec"]["target"]
    keys = {x["secretKey"] for x in e["spec"].get("data", [])} | set(((t.get("template") or {}).get("data") or {}).keys())
    secrets[t.get("name", e["metadata"]["name"])] = keys
for u in by_kind.get("KafkaUser", []):
    secrets[u["metadata"]["name"]] = {"password", "sasl.jaas.config"}
for k in by_kind.get("Kafka", []):
    secrets[f"{k['metadata']['name']}-cluster-ca-cert"] = {"ca.crt", "ca.p12", "ca.password"}
configmaps = {c["metadata"]["name"]: c.get("data") or {} for c in by_kind.get("ConfigMap", [])}
for u in by_kind.get("KafkaUser", []):
    pw = ((u["spec"].get("authentication") or {}).get("password") or {}).get("valueFrom", {}).get("secretKeyRef")
    if pw and pw["key"] not in secrets.get(pw["name"], set()):
        err(f"{key(u)}: password secret {pw['name']}/{pw['key']} not provided")
c_init = [c for c in by_kind.get("Cluster", []) if c["apiVersion"].startswith("postgresql.cnpg.io")]
for c in c_init:
    s = c["spec"].get("bootstrap", {}).get("initdb", {}).get("secret", {}).get("name")
    if s and not {"username", "password"} <= secrets.get(s, set()):
        err(f"{key(c)}: bootstrap secret {s} with username/password not provided")

env_checked = 0
topic_env = {}
for owner, labels, containers, pspec in pods:
    for c in containers:
        args = c.get("args")
        if args is None or not c.get("image", "").endswith(tuple([":main"])) and "gamemetrics" not in c.get("image", ""):
            continue
        role = args[0] if args else "serve"
        if role not in SUBCOMMANDS:
            err(f"{owner}: `gamemetrics {role}` is not a subcommand")
            continue
        env = {}
        for ef in c.get("envFrom", []):
            cm = ef.get("configMapRef", {}).get("name")
            if cm is not None:
                if cm not in configmaps:
                    err(f"{owner}: configMap {cm} not found")
                env.update(configmaps.get(cm, {}))
        for e in c.get("env", []):
            ref = (e.get("valueFrom") or {}).get("secretKeyRef")
            if ref and ref["key"] not in secrets.get(ref["name"], set()):
                err(f"{owner}: {e['name']} reads secret {ref['name']}/{ref['key']}, which nothing provides")
            env[e["name"]] = e.get("value", "<secret>")
        for name, value in env.items():
            if not name.startswith("GM_"):
                continue
            env_checked += 1
            path = name[3:].lower().split("__")
            if not setting_exists(path):
                err(f"{owner}: {name} is not a setting of the code")
            if name.startswith("GM_KAFKA__TOPICS__"):
                topic_env[name] = str(value)
        have = {".".join(n[3:].lower().split("__")) for n in env if n.startswith("GM_")}
        for req in REQUIRED.get(role, []):
            if req not in have:
                err(f"{owner} ({role}): setting {req} is not set (GM_{req.upper().replace('.', '__')})")
        if env.get("GM_MODE") not in (None, "production"):
            err(f"{owner}: GM_MODE must be production")
        if role in ("gateway", "actors", "projections") and env.get("GM_HTTP__BIND", "").split(":")[-1] not in \
                {str(p.get("containerPort")) for p in c.get("ports", [])}:
            err(f"{owner}: GM_HTTP__BIND port is not a containerPort")
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            path = ((c.get(probe) or {}).get("httpGet") or {}).get("path")
            if path and path not in ROUTES | OPS_ROUTES:
                err(f"{owner}: {probe} path {path} is not served by the code")
        mounts = {m["mountPath"] for m in c.get("volumeMounts", [])}
        ca = env.get("GM_KAFKA__SECURITY__SSL_CA_LOCATION")
        if ca and not any(ca.startswith(m.rstrip("/") + "/") for m in mounts):
            err(f"{owner}: {ca} is on no mounted volume")
        for v in pspec.get("volumes", []):
            s = (v.get("secret") or {}).get("secretName")
            for item in (v.get("secret") or {}).get("items", []):
                if item["key"] not in secrets.get(s, set()):
                    err(f"{owner}: volume {v['name']} needs secret {s}/{item['key']}")

# ---- Kafka topics = the roles' topic settings; HPA ceilings -----------------------------------
TOPIC_FIELD = {"player.events.raw": "RAW", "player.events.processed": "PROCESSED",
               "recommendations.generated": "RECOMMENDATIONS", "system.dlq": "DLQ"}
partitions = {}
for t in by_kind.get("KafkaTopic", []):
    name = t["spec"].get("topicName", t["metadata"]["name"])
    f = TOPIC_FIELD.get(name)
    if not f:
        err(f"{key(t)}: {name} is not a topic of the platform")
        continue
    partitions[f] = t["spec"]["partitions"]
    want = {"PARTITIONS": t["spec"]["partitions"], "REPLICATION_FACTOR": t["spec"]["replicas"],
            "MIN_INSYNC_REPLICAS": t["spec"]["config"]["min.insync.replicas"]}
    for fld, v in want.items():
        got = topic_env.get(f"GM_KAFKA__TOPICS__{f}__{fld}")
        if got != str(v):
            err(f"{key(t)}: {fld.lower()} {v} but the roles get GM_KAFKA__TOPICS__{f}__{fld}={got}")
    compacted = t["spec"]["config"].get("cleanup.policy") == "compact"
    if compacted != (topic_env.get(f"GM_KAFKA__TOPICS__{f}__COMPACTED") == "true"):
        err(f"{key(t)}: cleanup.policy and GM_KAFKA__TOPICS__{f}__COMPACTED disagree")
for name in TOPIC_FIELD.values():
    if name not in partitions:
        err(f"no KafkaTopic for {name}")
for h in by_kind.get("HorizontalPodAutoscaler", []):
    n = h["metadata"]["name"]
    cap = partitions.get("RAW") if n.endswith("-actors") else partitions.get("PROCESSED") if n.endswith("-projections") else None
    if cap is not None and h["spec"]["maxReplicas"] > cap:
        err(f"{key(h)}: maxReplicas {h['spec']['maxReplicas']} exceeds {cap} partitions")

if errors:
    for e in errors:
        print(f"  ERROR [{OVERLAY}] {e}")
    sys.exit(1)
print(f"  cross-checks [{OVERLAY}]: {len(docs)} objects, {len(pods)} pod templates, "
      f"{len(by_kind.get('Service', []))} services, {env_checked} GM_* settings: OK")
