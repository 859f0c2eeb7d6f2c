#!/usr/bin/env python3
"""Lints, renders and validates the Buoy chart offline, for tests/tests/chart.rs and
scripts/render-chart.

Uses helm-python-sdk (the Helm v4 engine, `import helm_python`) and kubernetes-validate (the
Kubernetes JSON schemas, strict mode). Neither touches the network: Helm renders without a
cluster and the schemas ship inside kubernetes-validate.

    helmtool.py lint CHART [--values FILE]
    helmtool.py render CHART [--values FILE] [--name N] [--namespace NS] [--api-version G/V]...
                             [--crds] [--namespace-object] [--notes FILE]
    helmtool.py render-deploy CHART                  (deploy/buoy.yaml, see scripts/render-chart)
    helmtool.py values-doc CHART                     (the README's table of values)
    helmtool.py validate FILE [--kubernetes-version X.Y]
    helmtool.py schema CHART --values-json JSON      (exit 3 with Helm's message when rejected)

`render` prints one YAML stream in Helm's install order (CRDs first with --crds), each document
headed by `# Source: <template>` as `helm template` does.
"""

from __future__ import annotations

import argparse
import json
import sys

MISSING = (
    "missing Python package {pkg!r} ({err}); install the chart test tools with "
    "`python3 -m pip install -r .ci/requirements.txt` (.ci/run does)"
)

try:
    import yaml
except ImportError as e:  # pragma: no cover - reported to the Rust test
    sys.exit(MISSING.format(pkg="PyYAML", err=e))


def helm():
    try:
        import helm_python
    except ImportError as e:
        sys.exit(MISSING.format(pkg="helm-python-sdk", err=e))
    return helm_python


# Helm's install order (pkg/release/util/kind_sorter.go); unknown kinds go last.
INSTALL_ORDER = [
    "PriorityClass", "Namespace", "NetworkPolicy", "ResourceQuota", "LimitRange",
    "PodSecurityPolicy", "PodDisruptionBudget", "ServiceAccount", "Secret", "SecretList",
    "ConfigMap", "StorageClass", "PersistentVolume", "PersistentVolumeClaim",
    "CustomResourceDefinition", "ClusterRole", "ClusterRoleList", "ClusterRoleBinding",
    "ClusterRoleBindingList", "Role", "RoleList", "RoleBinding", "RoleBindingList", "Service",
    "DaemonSet", "Pod", "ReplicationController", "ReplicaSet", "Deployment",
    "HorizontalPodAutoscaler", "StatefulSet", "Job", "CronJob", "IngressClass", "Ingress",
    "APIService", "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration",
]


# .Capabilities.KubeVersion of renders and lints: the Kubernetes the tests validate against
# (tests/tests/chart.rs: KUBERNETES_VERSION), within Chart.yaml's kubeVersion.
KUBE_VERSION = "v1.33.0"


def load_values(path: str | None) -> dict:
    if not path:
        return {}
    with open(path) as f:
        return yaml.safe_load(f) or {}


def render_docs(args) -> tuple[list[tuple[str, str, dict]], str]:
    """[(source, text, object)] in install order, and NOTES.txt."""
    h = helm()
    from helm_python import _native  # render options beyond the wrapper's: api_versions

    docs: list[tuple[str, str, dict]] = []
    with h.Chart.load(args.chart) as chart:
        opts = {
            "name": args.name,
            "namespace": args.namespace,
            "is_install": True,
            "kube_version": KUBE_VERSION,
        }
        if args.api_version:
            # .Capabilities.APIVersions (e.g. monitoring.coreos.com/v1 for the ServiceMonitor);
            # Chart.render() does not expose it, the library's render options do.
            opts["api_versions"] = args.api_version
        rendered = json.loads(
            _native.call_string(
                "helm_render", chart._raw(), json.dumps(load_values(args.values)), json.dumps(opts)
            )
        )
        crds = chart.crds if args.crds else []
    notes = ""
    for c in sorted(crds, key=lambda c: c["filename"]):
        for text in split(c["data"]):
            docs.append((c["filename"], text, yaml.safe_load(text)))
    for source in sorted(rendered):
        if source.endswith("NOTES.txt"):
            notes = rendered[source]
            continue
        for text in split(rendered[source]):
            docs.append((source, text, yaml.safe_load(text)))
    if args.namespace_object:
        # The agents need the privileged Pod Security level: host network, NET_ADMIN, and the
        # host's iptables lock (a hostPath).
        ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {
            "name": args.namespace,
            "labels": {"pod-security.kubernetes.io/enforce": "privileged"}}}
        docs.insert(0, ("namespace", yaml.safe_dump(ns, sort_keys=False), ns))

    def rank(d):
        kind = d[2].get("kind", "")
        return INSTALL_ORDER.index(kind) if kind in INSTALL_ORDER else len(INSTALL_ORDER)

    docs.sort(key=rank)  # stable: template order within a kind
    return docs, notes


def split(text: str) -> list[str]:
    """The non-empty documents of a YAML stream, without comments-only documents."""
    out = []
    for part in ("\n" + text).split("\n---"):
        part = part.strip("\n")
        if yaml.safe_load(part) is not None:
            out.append(part.rstrip() + "\n")
    return out


def cmd_lint(args) -> int:
    report = helm().lint(
        args.chart, load_values(args.values), strict=True, kube_version=KUBE_VERSION
    )
    for m in report.get("messages", []):
        print(f"lint [{ {0: 'UNKNOWN', 1: 'INFO', 2: 'WARNING', 3: 'ERROR'}.get(m['severity'])}] "
              f"{m['path']}: {m['error']}")
    for e in report.get("errors", []):
        print(f"lint error: {e}")
    bad = [m for m in report.get("messages", []) if m["severity"] >= 2] + report.get("errors", [])
    print(f"lint: {report.get('total_charts_linted')} chart(s), {len(bad)} problem(s)")
    return 1 if bad else 0


def cmd_render(args) -> int:
    docs, notes = render_docs(args)
    out = []
    for source, text, _ in docs:
        out.append(f"---\n# Source: {source}\n{text}")
    sys.stdout.write("".join(out))
    if args.notes:
        with open(args.notes, "w") as f:
            f.write(notes)
    return 0


DEPLOY_HEADER = """\
# Buoy: the Helm chart charts/buoy rendered with its default values (release `buoy` in namespace
# `buoy-system`, CRDs included), for `kubectl apply -f deploy/buoy.yaml`.
# Generated by scripts/render-chart; do not edit (a test fails when it drifts from the chart).
"""


def cmd_render_deploy(args) -> int:
    args.values, args.name, args.namespace = None, "buoy", "buoy-system"
    args.api_version, args.crds, args.namespace_object, args.notes = [], True, True, None
    sys.stdout.write(DEPLOY_HEADER)
    return cmd_render(args)


def documented_values(values_file: str) -> list[tuple[str, str]]:
    """(dotted key, description) of every key preceded by a `# -- description` comment (the
    helm-docs convention), in file order. Continuation lines are the `#` lines that follow."""
    docs: list[tuple[str, str]] = []
    stack: list[tuple[int, str]] = []  # (indent, key)
    pending: list[str] | None = None
    with open(values_file) as f:
        for raw in f:
            line = raw.rstrip("\n")
            stripped = line.strip()
            if stripped.startswith("# --"):
                pending = [stripped[4:].strip()]
                continue
            if stripped.startswith("#"):
                if pending is not None:
                    pending.append(stripped[1:].strip())
                continue
            if not stripped or stripped.startswith("-"):
                pending = None
                continue
            indent = len(line) - len(line.lstrip(" "))
            key = stripped.split(":", 1)[0].strip()
            while stack and stack[-1][0] >= indent:
                stack.pop()
            stack.append((indent, key))
            if pending is not None:
                docs.append((".".join(k for _, k in stack), " ".join(pending)))
                pending = None
    return docs


def leaves(value, prefix: str = "") -> list[str]:
    """Dotted paths of every leaf: scalars, lists and empty maps."""
    if isinstance(value, dict) and value:
        out = []
        for k, v in value.items():
            out.extend(leaves(v, f"{prefix}.{k}" if prefix else k))
        return out
    return [prefix]


def lookup(values: dict, path: str):
    for part in path.split("."):
        values = values[part]
    return values


def cmd_values_doc(args) -> int:
    """The README's table of values, from values.yaml; fails when a value is undocumented."""
    values_file = f"{args.chart}/values.yaml"
    with open(values_file) as f:
        values = yaml.safe_load(f)
    docs = documented_values(values_file)
    documented = {k for k, _ in docs}
    missing = [
        leaf for leaf in leaves(values)
        if not any(leaf == d or leaf.startswith(d + ".") for d in documented)
    ]
    if missing:
        print("values without a `# --` description in values.yaml: " + ", ".join(missing),
              file=sys.stderr)
        return 1
    rows = ["| Key | Type | Default | Description |", "| --- | --- | --- | --- |"]
    for key, desc in docs:
        v = lookup(values, key)
        kind = {bool: "bool", int: "int", float: "float", str: "string", list: "list",
                dict: "object", type(None): "null"}[type(v)]
        default = json.dumps(v, separators=(",", ":")).replace("|", "\\|")
        desc = desc.replace("|", "\\|")
        rows.append(f"| `{key}` | {kind} | `{default}` | {desc} |")
    table = "\n".join(rows) + "\n"
    if args.readme:
        with open(args.readme) as f:
            readme = f.read()
        start, end = "<!-- values:start -->\n", "<!-- values:end -->"
        i, j = readme.index(start) + len(start), readme.index(end)
        sys.stdout.write(readme[:i] + table + readme[j:])
    else:
        sys.stdout.write(table)
    return 0


def cmd_validate(args) -> int:
    try:
        import kubernetes_validate
        from kubernetes_validate import utils
    except ImportError as e:
        sys.exit(MISSING.format(pkg="kubernetes-validate", err=e))
    version = args.kubernetes_version or utils.latest_version()
    with open(args.file) as f:
        objs = [o for o in yaml.safe_load_all(f) if o is not None]
    failures = 0
    for o in objs:
        name = f"{o.get('kind')}/{o.get('metadata', {}).get('name')}"
        api = o.get("apiVersion", "")
        if api.startswith("buoy.io/"):
            # Custom resources: kubernetes-validate has no schema for them; the Rust test checks
            # them with buoy_crds::manifest::parse (what `buoy-agent check` runs).
            print(f"CUSTOM {name} {api}")
            continue
        if api.startswith("monitoring.coreos.com/"):
            # The Prometheus Operator's CRDs are not part of Kubernetes' schemas and not
            # vendored here; the ServiceMonitor is checked structurally by the Rust test.
            print(f"SKIPPED {name} {api}")
            continue
        try:
            kubernetes_validate.validate(o, version, strict=True)
            print(f"VALID {name} {api}")
        except utils.ValidationError as e:
            path = ".".join(str(p) for p in e.path)
            print(f"INVALID {name} {api} against {e.version}: {path}: {e.message}")
            failures += 1
        except utils.SchemaNotFoundError as e:
            print(f"INVALID {name} {api}: {e.message}")
            failures += 1
    print(f"validate: {len(objs)} object(s) against Kubernetes {version}, {failures} invalid")
    return 1 if failures else 0


def cmd_schema(args) -> int:
    h = helm()
    with h.Chart.load(args.chart) as chart:
        try:
            chart.render(json.loads(args.values_json), name="schema", namespace="schema")
        except h.HelmValuesError as e:
            print(str(e))
            return 3
    print("accepted")
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    lint = sub.add_parser("lint")
    lint.add_argument("chart")
    lint.add_argument("--values")
    render = sub.add_parser("render")
    render.add_argument("chart")
    render.add_argument("--values")
    render.add_argument("--name", default="buoy")
    render.add_argument("--namespace", default="buoy-system")
    render.add_argument("--api-version", action="append", default=[])
    render.add_argument("--crds", action="store_true")
    render.add_argument("--namespace-object", action="store_true")
    render.add_argument("--notes")
    deploy = sub.add_parser("render-deploy")
    deploy.add_argument("chart")
    vdoc = sub.add_parser("values-doc")
    vdoc.add_argument("chart")
    vdoc.add_argument("--readme", help="print this README with its values table replaced")
    validate = sub.add_parser("validate")
    validate.add_argument("file")
    validate.add_argument("--kubernetes-version")
    schema = sub.add_parser("schema")
    schema.add_argument("chart")
    schema.add_argument("--values-json", required=True)
    args = p.parse_args()
    return {"lint": cmd_lint, "render": cmd_render, "validate": cmd_validate,
            "schema": cmd_schema, "render-deploy": cmd_render_deploy,
            "values-doc": cmd_values_doc}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
