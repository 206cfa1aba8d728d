#!/usr/bin/env python3
"""Checks of the monitoring files (run by scripts/check-monitoring).

  monitoring.py render [--write]      PrometheusRule == rules file (or rewrite it)
  monitoring.py lint                  alert hygiene, runbooks, metric names in rules and dashboards
  monitoring.py tests OUT_DIR         write the promtool test file with labels/annotations filled in
  monitoring.py coverage              every alert has a firing and a not-firing unit test

Environment: GM_PROMQL_NAMES = the promql-names binary (Prometheus's own PromQL parser).
Each command prints `name: N checked` lines and exits non-zero with every problem listed.
"""
import json
import os
import re
import subprocess
import sys

import yaml

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
MON = os.path.join(ROOT, "k8s", "base", "monitoring")
RULES = os.path.join(MON, "rules", "gamemetrics.rules.yml")
TESTS = os.path.join(MON, "rules", "tests.yml")
PROMRULE = os.path.join(MON, "prometheusrule.yaml")
DASHBOARDS = os.path.join(MON, "dashboards")
EXPORTERS = os.path.join(ROOT, "k8s", "validate", "exporter-metrics.yaml")
TELEMETRY = os.path.join(ROOT, "telemetry", "src", "lib.rs")
MIGRATIONS = os.path.join(ROOT, "postgres", "migrations")
RUNBOOK_URL = re.compile(r"^https://github\.com/gamemetrics/gamemetrics/blob/main/(docs/runbooks/[a-z0-9-]+\.md)$")
SEVERITIES = {"critical", "warning", "info"}
TEAMS = {"platform", "data", "privacy", "infra"}
# Alerts that cannot be shown not firing, and why.
ALWAYS_FIRING = {"Watchdog": "the dead man's switch fires by design; Alertmanager alerts on its absence"}

HEADER = (
    "# GENERATED from rules/gamemetrics.rules.yml by `scripts/check-monitoring --write`: edit that\n"
    "# file, not this one (CI fails when they differ). The Prometheus Operator loads these rules.\n"
)

problems = []


def fail(msg):
    problems.append(msg)


def load_rules():
    with open(RULES) as f:
        return yaml.safe_load(f)


def alerts(doc):
    for g in doc["groups"]:
        for r in g["rules"]:
            if "alert" in r:
                yield g["name"], r


def records(doc):
    return [r["record"] for g in doc["groups"] for r in g["rules"] if "record" in r]


def render(doc):
    body = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "gamemetrics", "labels": {"app.kubernetes.io/name": "gamemetrics", "role": "alert-rules"}},
        "spec": {"groups": doc["groups"]},
    }
    return HEADER + yaml.safe_dump(body, sort_keys=False, width=10000, allow_unicode=True)


def cmd_render(write):
    text = render(load_rules())
    if write:
        with open(PROMRULE, "w") as f:
            f.write(text)
        print(f"render: wrote {os.path.relpath(PROMRULE, ROOT)}")
        return
    current = open(PROMRULE).read() if os.path.exists(PROMRULE) else ""
    if current != text:
        fail(f"{os.path.relpath(PROMRULE, ROOT)} differs from the rules file: run scripts/check-monitoring --write")
    else:
        print("render: PrometheusRule identical to the rules file: 1 checked")


def exported_series():
    """Series names the roles export, from telemetry's EXPORTED (name, type) list."""
    text = open(TELEMETRY).read()
    block = text[text.index("pub const EXPORTED") :]
    block = block[: block.index("];")]
    names = set()
    for name, kind in re.findall(r'\("(gamemetrics_[a-z0-9_]+)",\s*"([a-z]+)"\)', block):
        if kind == "counter":
            names.add(name + "_total")
        elif kind == "histogram":
            names.update({name + "_bucket", name + "_count", name + "_sum"})
        else:
            names.add(name)
    if not names:
        fail("no EXPORTED list found in telemetry/src/lib.rs")
    return names


def exporter_series():
    with open(EXPORTERS) as f:
        doc = yaml.safe_load(f)
    return {name: exporter for exporter, names in doc.items() for name in names}


def promql_names(exprs):
    """Metric names of each expression, parsed by Prometheus's parser."""
    binary = os.environ.get("GM_PROMQL_NAMES")
    if not binary:
        sys.exit("GM_PROMQL_NAMES is not set (scripts/check-monitoring builds it)")
    data = "".join(json.dumps(e) + "\n" for e in exprs)
    out = subprocess.run([binary], input=data, capture_output=True, text=True, check=True).stdout
    return [json.loads(line) for line in out.splitlines()]


def dashboard_queries():
    """(dashboard file, panel title, kind, query) for every target of every panel."""
    found = []
    for name in sorted(os.listdir(DASHBOARDS)) if os.path.isdir(DASHBOARDS) else []:
        if not name.endswith(".json"):
            continue
        with open(os.path.join(DASHBOARDS, name)) as f:
            dash = json.load(f)
        panels = list(dash.get("panels", []))
        while panels:
            p = panels.pop(0)
            panels.extend(p.get("panels", []))
            for t in p.get("targets", []):
                ds = (t.get("datasource") or p.get("datasource") or {}).get("type")
                if "expr" in t:
                    found.append((name, p.get("title", "?"), "promql", t["expr"]))
                elif "rawSql" in t:
                    found.append((name, p.get("title", "?"), "sql", t["rawSql"]))
                else:
                    fail(f"{name}: panel '{p.get('title')}' has a target with neither expr nor rawSql ({ds})")
        for v in dash.get("templating", {}).get("list", []):
            if v.get("type") != "query":
                continue
            q = v.get("query")
            q = q.get("query") if isinstance(q, dict) else q
            kind = "sql" if "postgres" in (v.get("datasource") or {}).get("type", "") else "promql-variable"
            found.append((name, f"variable {v.get('name')}", kind, q))
    return found


def grafana_to_promql(expr):
    """Grafana's interval macros become a duration and dashboard variables a number, so
    that Prometheus's parser sees the query Grafana will send."""
    expr = re.sub(r"\$__(rate_interval|interval|range)\b", "5m", expr)
    return re.sub(r"\$\{?[A-Za-z_][A-Za-z0-9_]*\}?", "1", expr)


def sql_tables():
    tables = set()
    for name in os.listdir(MIGRATIONS):
        if name.endswith(".sql"):
            text = open(os.path.join(MIGRATIONS, name)).read().lower()
            tables.update(
                re.findall(r"create\s+(?:unlogged\s+)?(?:table|view|materialized\s+view)\s+(?:if\s+not\s+exists\s+)?([a-z_][a-z0-9_]*)", text)
            )
    return tables


def cmd_lint():
    doc = load_rules()
    recorded = set(records(doc))
    allowed = exported_series() | recorded | set(exporter_series())
    names = []
    for group, r in alerts(doc):
        a = r["alert"]
        names.append(a)
        labels, ann = r.get("labels", {}), r.get("annotations", {})
        if labels.get("severity") not in SEVERITIES:
            fail(f"{a}: severity must be one of {sorted(SEVERITIES)}")
        if labels.get("team") not in TEAMS:
            fail(f"{a}: team must be one of {sorted(TEAMS)}")
        if not ann.get("summary"):
            fail(f"{a}: no summary")
        m = RUNBOOK_URL.match(ann.get("runbook_url", ""))
        if not m:
            fail(f"{a}: runbook_url must point into docs/runbooks/ of the repository")
        elif not os.path.isfile(os.path.join(ROOT, m.group(1))):
            fail(f"{a}: runbook {m.group(1)} does not exist")
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        fail(f"duplicate alert names: {sorted(dup)}")
    print(f"lint: {len(names)} alerts with severity, team, summary and an existing runbook; {len(recorded)} recording rules")

    rule_exprs = [r["expr"] for g in doc["groups"] for r in g["rules"]]
    queries = dashboard_queries()
    promql = [q for q in queries if q[2].startswith("promql")]
    parsed = promql_names(rule_exprs + [grafana_to_promql(q[3]) for q in promql])
    where = [f"rule `{e.strip()[:60]}`" for e in rule_exprs] + [f"{q[0]} / {q[1]}" for q in promql]
    used = set()
    for w, res in zip(where, parsed):
        if res.get("error"):
            fail(f"{w}: {res['error']}")
        for n in res["metrics"]:
            used.add(n)
            if n not in allowed:
                fail(f"{w}: metric {n} is exported neither by the roles (telemetry EXPORTED) nor by a listed exporter nor recorded")
    print(f"lint: {len(rule_exprs)} rule expressions and {len(promql)} dashboard queries parsed; {len(used)} metric names, all exported")

    tables = sql_tables()
    sql = [q for q in queries if q[2] == "sql"]
    for dash, title, _, query in sql:
        q = query.lower()
        ctes = set(re.findall(r"\b([a-z_][a-z0-9_]*)\s+as\s*\(", q))
        for t in re.findall(r"\b(?:from|join)\s+([a-z_][a-z0-9_]*)", q):
            if t not in tables and t not in ctes:
                fail(f"{dash} / {title}: table {t} is not created by postgres/migrations")
    print(f"lint: {len(sql)} SQL panel queries against {len(tables)} tables of postgres/migrations")
    dashboards = {q[0] for q in queries}
    print(f"lint: {len(dashboards)} dashboards")


def label_render(template, labels):
    return re.sub(r"\{\{\s*\$labels\.([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}", lambda m: str(labels.get(m.group(1), "")), template)


def cmd_tests(out_dir):
    doc = load_rules()
    by_name = {r["alert"]: r for _, r in alerts(doc)}
    with open(TESTS) as f:
        tests = yaml.safe_load(f)
    tests["rule_files"] = [RULES]
    for t in tests["tests"]:
        for case in t.get("alert_rule_test", []):
            rule = by_name.get(case["alertname"])
            if rule is None:
                fail(f"test '{t['name']}': no alert named {case['alertname']}")
                continue
            for exp in case.get("exp_alerts", []):
                labels = {str(k): str(v) for k, v in (exp.get("exp_labels") or {}).items()}
                labels.update({k: str(v) for k, v in rule.get("labels", {}).items()})
                exp["exp_labels"] = labels
                if "exp_annotations" in exp:
                    fail(f"test '{t['name']}': annotations are filled in from the rule; do not write them")
                exp["exp_annotations"] = {k: label_render(v, labels) for k, v in rule.get("annotations", {}).items()}
    path = os.path.join(out_dir, "tests.yml")
    with open(path, "w") as f:
        yaml.safe_dump(tests, f, sort_keys=False, width=10000)
    print(path)


def cmd_coverage():
    doc = load_rules()
    with open(TESTS) as f:
        tests = yaml.safe_load(f)
    firing, quiet = {}, {}
    for t in tests["tests"]:
        for case in t.get("alert_rule_test", []):
            target = firing if case.get("exp_alerts") else quiet
            target[case["alertname"]] = target.get(case["alertname"], 0) + 1
    names = [r["alert"] for _, r in alerts(doc)]
    for a in names:
        if a not in firing:
            fail(f"{a}: no unit test shows it firing")
        if a not in quiet and a not in ALWAYS_FIRING:
            fail(f"{a}: no unit test shows it not firing")
    n_fire = sum(1 for a in names if a in firing)
    n_quiet = sum(1 for a in names if a in quiet)
    print(f"coverage: {len(names)} alerts; {n_fire} tested firing, {n_quiet} tested not firing"
          f" (exempt: {', '.join(f'{k} — {v}' for k, v in ALWAYS_FIRING.items())})")
    print(f"coverage-counts: alerts={len(names)} firing={n_fire} quiet={n_quiet} records={len(records(doc))}")


def main():
    args = sys.argv[1:]
    if not args:
        sys.exit(__doc__)
    if args[0] == "render":
        cmd_render("--write" in args)
    elif args[0] == "lint":
        cmd_lint()
    elif args[0] == "tests":
        cmd_tests(args[1])
    elif args[0] == "coverage":
        cmd_coverage()
    else:
        sys.exit(__doc__)
    if problems:
        for p in problems:
            print(f"monitoring: FAILED: {p}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
