"""The Kubernetes manifests, as ``kubectl kustomize`` renders every overlay.

``make k8s-check`` (``devtools.k8scheck``) validates the renderings against the
Kubernetes schemas; these tests hold them to the operations contract of issue 18:
one Deployment, Service and ServiceAccount per service in every overlay (the
router's usage outbox on an emptyDir; the ``durable-outbox`` component turns the
router into a StatefulSet with a claim per replica, checked on every overlay it can
be added to), probes, resources, an
unprivileged read-only container everywhere, autoscaling and disruption budgets,
migrations as one Job (not in every pod), a 3-node JetStream cluster with R3 streams
and synchronous writes, secrets by reference only, scraping, the dashboard and the
alert rules (parsed here, since promtool is not part of a clean install).
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Any

import pytest

from devtools import k8scheck
from router.config import RouterSettings

ROOT = Path(__file__).resolve().parents[2]
SERVICES = sorted(p.name for p in (ROOT / "services").iterdir() if (p / "pyproject.toml").exists())
#: Services with tables (every one but the router).
MIGRATED = ["billing", "edge", "rag", "sessions"]
OVERLAYS = ["overlays/dev", "overlays/prod"]
#: Every rendering: the targets, and the overlays with an optional component added.
ALL = k8scheck.ALL_TARGETS
DURABLE = [t for t in k8scheck.COMPONENT_TARGETS if t.endswith("+components/durable-outbox")]


@functools.cache
def rendered(target: str) -> tuple[dict[str, Any], ...]:
    return tuple(k8scheck.render(target))


def objects(target: str, kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in rendered(target) if o["kind"] == kind}


def pod_specs(target: str) -> dict[str, dict[str, Any]]:
    specs = {}
    for kind in ("Deployment", "StatefulSet", "Job"):
        for name, obj in objects(target, kind).items():
            specs[f"{kind}/{name}"] = obj["spec"]["template"]["spec"]
    return specs


def workloads(target: str) -> dict[str, dict[str, Any]]:
    """Each service's workload: its Deployment (the router's StatefulSet with durable-outbox)."""
    found = {**objects(target, "Deployment"), **objects(target, "StatefulSet")}
    return {name: found[name] for name in SERVICES if name in found}


def env(target: str) -> dict[str, str]:
    (config,) = [
        o for name, o in objects(target, "ConfigMap").items() if name.startswith("switchyard-env")
    ]
    return dict(config["data"])


def test_every_service_has_one_deployment_service_and_service_account() -> None:
    assert SERVICES == ["billing", "edge", "rag", "router", "sessions"]
    for target in k8scheck.TARGETS:
        for kind in ("Service", "ServiceAccount", "Deployment"):
            assert set(SERVICES) <= set(objects(target, kind)), (target, kind)
        assert set(objects(target, "Deployment")) == set(SERVICES), target
        assert not set(objects(target, "StatefulSet")) & set(SERVICES), target
    # With durable-outbox the router alone is a StatefulSet, still with its Service and account.
    for target in DURABLE:
        for kind in ("Service", "ServiceAccount"):
            assert set(SERVICES) <= set(objects(target, kind)), (target, kind)
        assert set(objects(target, "Deployment")) == set(SERVICES) - {"router"}, target
        assert workloads(target)["router"]["kind"] == "StatefulSet", target
        assert set(workloads(target)) == set(SERVICES), target


def _outbox_mount(pod: dict[str, Any]) -> str:
    """Where the router's container mounts ``outbox``; asserts the env path is under it."""
    (container,) = pod["containers"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    path = {v["name"]: v.get("value") for v in container["env"]}["ROUTER_USAGE_OUTBOX_PATH"]
    assert path.startswith(mounts["outbox"] + "/"), path
    return str(mounts["outbox"])


@pytest.mark.parametrize("target", k8scheck.TARGETS)
def test_the_router_outbox_is_on_an_empty_dir_of_its_deployment(target: str) -> None:
    router = objects(target, "Deployment")["router"]["spec"]
    assert router["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    pod = router["template"]["spec"]
    _outbox_mount(pod)
    (outbox,) = [v for v in pod["volumes"] if v["name"] == "outbox"]
    # Survives a container restart in the pod (the SIGKILL drill), bounded on the node's disk.
    assert outbox["emptyDir"]["sizeLimit"]
    assert "router-pods" not in objects(target, "Service")
    # The shutdown flush fits the pod's grace: preStop + in-flight grace + flush + margin.
    settings = RouterSettings()
    (container,) = pod["containers"]
    budget = (
        container["lifecycle"]["preStop"]["sleep"]["seconds"]
        + settings.shutdown_grace_s
        + settings.usage_flush_grace_s
    )
    assert budget < pod["terminationGracePeriodSeconds"], budget


@pytest.mark.parametrize("target", DURABLE)
def test_durable_outbox_renders_a_stateful_set_with_a_claim_per_replica(target: str) -> None:
    assert k8scheck.check(rendered(target)) == []  # valid against the Kubernetes schemas
    router = objects(target, "StatefulSet")["router"]["spec"]
    base = objects(target.split("+")[0], "Deployment")["router"]["spec"]
    assert router["replicas"] == base["replicas"]
    assert router["updateStrategy"] == {"type": "RollingUpdate"}
    assert router["podManagementPolicy"] == "Parallel"
    (claim,) = router["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "outbox"
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert claim["spec"]["resources"]["requests"]["storage"]
    # Kept when the set scales down or is deleted: the events in it are not billed yet.
    assert router["persistentVolumeClaimRetentionPolicy"] == {
        "whenDeleted": "Retain",
        "whenScaled": "Retain",
    }
    headless = objects(target, "Service")[router["serviceName"]]
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["metadata"].get("namespace") == base_namespace(target)
    pod = router["template"]["spec"]
    assert pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsGroup"]
    assert "outbox" not in {v["name"] for v in pod["volumes"]}  # the claim, not a pod volume
    _outbox_mount(pod)
    # Apart from the volume and fsGroup, the pod is the base's: one template, no drift.
    same = {k: v for k, v in pod.items() if k not in {"volumes", "securityContext"}}
    base_pod = base["template"]["spec"]
    assert same == {k: v for k, v in base_pod.items() if k not in {"volumes", "securityContext"}}
    hpa = objects(target, "HorizontalPodAutoscaler")["router"]
    assert hpa["spec"]["scaleTargetRef"]["kind"] == "StatefulSet"


def base_namespace(target: str) -> str | None:
    """The namespace the overlay of ``target`` puts its objects in."""
    return objects(target.split("+")[0], "Deployment")["router"]["metadata"].get("namespace")


@pytest.mark.parametrize("target", ALL)
def test_every_container_is_unprivileged_read_only_and_limited(target: str) -> None:
    for where, spec in pod_specs(target).items():
        assert spec["securityContext"]["runAsNonRoot"] is True, where
        assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", where
        assert spec.get("automountServiceAccountToken") is False, where
        for container in spec.get("initContainers", []) + spec["containers"]:
            at = f"{where}/{container['name']}"
            security = container["securityContext"]
            assert security["allowPrivilegeEscalation"] is False, at
            assert security["readOnlyRootFilesystem"] is True, at
            assert security["capabilities"]["drop"] == ["ALL"], at
            assert "add" not in security["capabilities"], at
            assert security.get("privileged") is not True, at
            resources = container["resources"]
            assert resources["requests"]["cpu"] and resources["requests"]["memory"], at
            assert resources["limits"]["memory"], at


@pytest.mark.parametrize("target", ALL)
def test_every_long_running_container_has_probes(target: str) -> None:
    for where, spec in pod_specs(target).items():
        if where.startswith("Job/"):
            continue
        for container in spec["containers"]:
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                assert container.get(probe), f"{where}/{container['name']} lacks {probe}"


def test_probes_use_healthz_readyz_and_grpc_health() -> None:
    deployments = workloads("base")
    for service in SERVICES:
        (container,) = deployments[service]["spec"]["template"]["spec"]["containers"]
        assert container["command"] == ["python", "-m", service]
        if service == "router":
            assert container["readinessProbe"]["grpc"]["port"] == 50051
            assert container["livenessProbe"]["grpc"]["port"] == 50051
            continue
        port = "http" if service == "edge" else "metrics"
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": port}
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": port}


def test_autoscaling_for_edge_and_router_and_disruption_budgets_for_all() -> None:
    for target in ALL:
        hpas = objects(target, "HorizontalPodAutoscaler")
        assert set(hpas) == {"edge", "router"}
        for name, hpa in hpas.items():
            assert hpa["spec"]["scaleTargetRef"] == {
                "apiVersion": "apps/v1",
                "kind": workloads(target)[name]["kind"],
                "name": name,
            }
        pdbs = objects(target, "PodDisruptionBudget")
        assert set(pdbs) == {*SERVICES, "nats"}
        for name, pdb in pdbs.items():
            assert pdb["spec"]["selector"]["matchLabels"] == {"app.kubernetes.io/name": name}


def test_rollouts_never_take_capacity_away_and_drain_on_stop() -> None:
    deployments = objects("overlays/prod", "Deployment")
    assert set(SERVICES) <= set(deployments)
    for name, dep in deployments.items():
        assert dep["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0, name
        spec = dep["spec"]["template"]["spec"]
        assert spec["terminationGracePeriodSeconds"] >= 30, name
    for name in ("edge", "router"):
        spec = deployments[name]["spec"]["template"]["spec"]
        assert spec["containers"][0]["lifecycle"]["preStop"]["sleep"]["seconds"] >= 5
        assert spec["terminationGracePeriodSeconds"] >= 60
    # durable-outbox: a StatefulSet cannot surge; it replaces one pod at a time.
    router = workloads("overlays/prod+components/durable-outbox")["router"]["spec"]
    assert router["replicas"] >= 2


@pytest.mark.parametrize("target", ALL)
def test_migrations_run_once_in_a_job_not_in_every_pod(target: str) -> None:
    for name, dep in workloads(target).items():
        assert "initContainers" not in dep["spec"]["template"]["spec"], name
    job = objects(target, "Job")["switchyard-migrate"]
    spec = job["spec"]["template"]["spec"]
    commands = [c["command"] for c in spec.get("initContainers", []) + spec["containers"]]
    assert commands == [
        ["python", "-m", s, "migrate"] for s in ("edge", "billing", "sessions", "rag")
    ]
    assert sorted(c[2] for c in commands) == MIGRATED
    assert job["spec"]["ttlSecondsAfterFinished"] > 0
    assert env(target)["GATEWAY_MIGRATE_ON_START"] == "false"


def test_nats_is_a_three_node_jetstream_cluster_with_r3_streams_and_sync_writes() -> None:
    for target in ("base", "overlays/prod"):
        nats = objects(target, "StatefulSet")["nats"]
        assert nats["spec"]["replicas"] == 3
        assert nats["spec"]["serviceName"] == "nats-headless"
        assert objects(target, "Service")["nats-headless"]["spec"]["clusterIP"] == "None"
        assert env(target)["NATS_STREAM_REPLICAS"] == "3"
        (config,) = [
            o for n, o in objects(target, "ConfigMap").items() if n.startswith("nats-config")
        ]
        conf = config["data"]["nats.conf"]
        assert re.search(r"^\s*sync_interval:\s*always\s*$", conf, re.M)
        routes = re.findall(r"nats://nats-(\d)\.nats-headless:6222", conf)
        assert routes == ["0", "1", "2"]
    # Dev: one server, R1 streams, and no cluster block (a cluster of one has no quorum).
    dev = objects("overlays/dev", "StatefulSet")["nats"]
    assert dev["spec"]["replicas"] == 1
    assert env("overlays/dev")["NATS_STREAM_REPLICAS"] == "1"
    (dev_config,) = [
        o for n, o in objects("overlays/dev", "ConfigMap").items() if n.startswith("nats-config")
    ]
    assert "cluster" not in dev_config["data"]["nats.conf"].split("jetstream")[1]


def test_secrets_are_referenced_never_defined_in_base_or_prod() -> None:
    for target in ("base", "overlays/prod", "overlays/prod+components/durable-outbox"):
        assert objects(target, "Secret") == {}, target
    for target in ALL:
        for where, spec in pod_specs(target).items():
            for container in spec.get("initContainers", []) + spec["containers"]:
                for var in container.get("env", []):
                    assert "value" not in var or not re.search(
                        r"KEY|TOKEN|PASSWORD|SECRET|DATABASE_URL", var["name"]
                    ), f"{where}: {var['name']} inlined"
        for key in env(target):
            assert not re.search(r"KEY|TOKEN|PASSWORD|SECRET|DATABASE_URL", key), key


def test_the_catalog_is_a_config_map_mounted_where_the_services_read_it() -> None:
    catalogs = [
        n for n in objects("overlays/prod", "ConfigMap") if n.startswith("switchyard-catalog")
    ]
    assert len(catalogs) == 1
    path = env("overlays/prod")["ROUTER_CATALOG_PATH"]
    for service in ("edge", "router", "billing"):
        spec = workloads("overlays/prod")[service]["spec"]["template"]["spec"]
        mounts = {m["name"]: m["mountPath"] for m in spec["containers"][0]["volumeMounts"]}
        assert path.startswith(mounts["catalog"] + "/"), service


def test_postgres_is_a_reference_in_prod_and_a_component_in_dev() -> None:
    assert "postgres" not in objects("overlays/prod", "StatefulSet")
    assert "postgres" in objects("overlays/dev", "StatefulSet")


@pytest.mark.parametrize("target", OVERLAYS + DURABLE)
def test_scraping_is_configured(target: str) -> None:
    (monitor,) = objects(target, "PodMonitor").values()
    assert {e["port"] for e in monitor["spec"]["podMetricsEndpoints"]} == {"metrics", "http"}
    for name, dep in workloads(target).items():
        annotations = dep["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true", name
        ports = {
            p["containerPort"] for p in dep["spec"]["template"]["spec"]["containers"][0]["ports"]
        }
        assert int(annotations["prometheus.io/port"]) in ports, name


# -- dashboard and alert rules ----------------------------------------------------------------

MONITORING = ROOT / "deploy" / "k8s" / "components" / "monitoring"
#: Every panel the operations contract asks the dashboard for, by a word of its title.
DASHBOARD_TOPICS = (
    "Traffic",
    "Latency",
    "Errors",
    "Tokens",
    "Cost",
    "Failovers",
    "breaker",
    "Rejections",
    "consumer lag",
)
metric_names = k8scheck.metric_names
dashboard_exprs = k8scheck.dashboard_queries


def alert_rules() -> list[dict[str, Any]]:
    (rule,) = objects("overlays/prod", "PrometheusRule").values()
    return [r for group in rule["spec"]["groups"] for r in group["rules"]]


def test_dashboard_is_a_config_map_with_every_panel_the_operators_need() -> None:
    (config,) = [
        o
        for n, o in objects("overlays/prod", "ConfigMap").items()
        if n.startswith("switchyard-grafana-dashboard")
    ]
    assert config["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(config["data"]["switchyard-dashboard.json"])
    titles = " | ".join(p["title"] for p in dashboard["panels"])
    for topic in DASHBOARD_TOPICS:
        assert topic.lower() in titles.lower(), topic
    for expr in dashboard_exprs():
        assert metric_names(expr), expr
        assert all(n.startswith("switchyard_") for n in metric_names(expr)), expr


def test_alert_rules_parse_and_cover_the_contract() -> None:
    rules = {r["alert"]: r for r in alert_rules()}
    for alert in (
        "SwitchyardHighErrorRate",
        "SwitchyardHighLatency",
        "SwitchyardConsumerLag",
        "SwitchyardBudgetRejectionsSpike",
    ):
        assert alert in rules
    for name, rule in rules.items():
        expr = rule["expr"]
        # A parser's view: balanced brackets, a comparison, known metric names only.
        for open_, close in ("()", "{}", "[]"):
            assert expr.count(open_) == expr.count(close), name
        assert re.search(r"(>|<|==|!=)\s*[\d.e-]+", expr), name
        assert metric_names(expr) and all(n.startswith("switchyard_") for n in metric_names(expr))
        assert re.fullmatch(r"\d+[smh]", rule["for"]), name
        assert rule["labels"]["severity"] in {"warning", "critical"}
        runbook = rule["annotations"]["runbook"]
        assert runbook.startswith("docs/operations.md#"), name
        ops = (ROOT / "docs" / "operations.md").read_text().lower()
        assert f"### {runbook.split('#')[1]}" in ops, f"{name}: no runbook section {runbook}"


def test_metric_name_extraction() -> None:
    expr = (
        "histogram_quantile(0.99, sum by (le, deployment) "
        '(rate(switchyard_x_bucket{a="b|c"}[5m]))) > 3 * sum(rate(switchyard_y_total[1d] offset 10m))'
    )
    assert metric_names(expr) == {"switchyard_x_bucket", "switchyard_y_total"}
    assert metric_names("(sum(rate(switchyard_z_total[5m])) or vector(0)) == 0") == {
        "switchyard_z_total"
    }
