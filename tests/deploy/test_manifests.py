"""The Kubernetes manifests: every service has one, and each follows the house rules.

Renders the kustomize overlays with ``kubectl kustomize`` when kubectl is on the
PATH; the structural checks on the base files run either way.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BASE = ROOT / "deploy" / "k8s" / "base"
SERVICES = sorted(p.name for p in (ROOT / "services").iterdir() if (p / "pyproject.toml").exists())


def _docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _deployment(service: str) -> dict:
    (dep,) = [d for d in _docs(BASE / f"{service}.yaml") if d["kind"] == "Deployment"]
    return dep


def test_every_service_has_one_manifest_listed_in_the_base() -> None:
    kustomization = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    assert SERVICES == ["billing", "edge", "rag", "router", "sessions"]
    for service in SERVICES:
        assert f"{service}.yaml" in kustomization["resources"]
        kinds = {d["kind"] for d in _docs(BASE / f"{service}.yaml")}
        assert {"Deployment", "Service", "ServiceAccount"} <= kinds


@pytest.mark.parametrize("service", SERVICES)
def test_deployment_is_probed_limited_and_unprivileged(service: str) -> None:
    spec = _deployment(service)["spec"]["template"]["spec"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    (container,) = spec["containers"]
    assert container["command"] == ["python", "-m", service]
    assert container["readinessProbe"] and container["livenessProbe"]
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    names = {p["name"] for p in container["ports"]}
    assert "metrics" in names or service == "edge"  # edge serves /metrics on its HTTP port


def test_router_probes_use_grpc_health_and_edge_uses_readyz() -> None:
    router = _deployment("router")["spec"]["template"]["spec"]["containers"][0]
    assert router["readinessProbe"]["grpc"]["port"] == 50051
    edge = _deployment("edge")["spec"]["template"]["spec"]["containers"][0]
    assert edge["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert edge["livenessProbe"]["httpGet"]["path"] == "/healthz"


@pytest.mark.parametrize("target", ["base", "overlays/dev", "overlays/prod"])
def test_kustomize_renders(target: str) -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed; structural checks above still ran")
    out = subprocess.run(
        [kubectl, "kustomize", str(ROOT / "deploy" / "k8s" / target)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    kinds = [d["kind"] for d in yaml.safe_load_all(out) if d]
    assert kinds.count("Deployment") == 5
    assert "StatefulSet" in kinds  # NATS (and PostgreSQL in dev)
    if target != "base":
        assert "PodMonitor" in kinds
