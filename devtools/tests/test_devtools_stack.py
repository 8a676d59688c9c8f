"""The stack supervisor, on what exists without the services: nats-server and the fake provider."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import httpx
import pytest
import yaml

from devtools.ports import PortPlan, free_ports, port_in_use
from devtools.run import dev_secrets
from devtools.stack import Stack, StackConfig, StackError, render_catalog

pytestmark = pytest.mark.timeout(60)


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def test_free_ports_are_distinct_and_never_4222() -> None:
    ports = free_ports(20)
    assert len(set(ports)) == 20
    assert 4222 not in ports
    plan = PortPlan.free()
    assert len(set(plan.as_dict().values())) == len(plan.as_dict())


def test_default_plan_follows_the_docs_and_env() -> None:
    plan = PortPlan.defaults({"GATEWAY_PORT": "9000"})
    assert (plan.edge, plan.router, plan.fake_provider) == (9000, 50051, 8090)
    assert (plan.nats, plan.nats_monitor) == (14222, 18222)
    assert [plan.router_metrics, plan.billing_metrics, plan.sessions_metrics, plan.rag_metrics] == [
        9101,
        9102,
        9103,
        9104,
    ]


def test_render_catalog_moves_only_the_dev_fake(tmp_path: Path) -> None:
    source = tmp_path / "catalog.yaml"
    source.write_text(
        yaml.safe_dump(
            {
                "version": 1,
                "providers": {
                    "fake": {"kind": "openai", "base_url": "http://127.0.0.1:8090/v1"},
                    "broken": {
                        "kind": "openai",
                        "base_url": "http://localhost:8090/fault/status=500/v1",
                    },
                    "real": {"kind": "openai", "base_url": "https://api.openai.com/v1"},
                },
                "models": {},
            }
        )
    )
    providers = yaml.safe_load(render_catalog(source, "http://127.0.0.1:4321"))["providers"]
    assert providers["fake"]["base_url"] == "http://127.0.0.1:4321/v1"
    assert providers["broken"]["base_url"] == "http://127.0.0.1:4321/fault/status=500/v1"
    assert providers["real"]["base_url"] == "https://api.openai.com/v1"


def test_dev_secrets_are_generated_once_and_env_wins(tmp_path: Path) -> None:
    path = tmp_path / "dev.env"
    first = dev_secrets(path, {})
    assert first["GATEWAY_DEV_API_KEY"].startswith("sk-sy-dev-")
    assert dev_secrets(path, {}) == first
    assert path.stat().st_mode & 0o777 == 0o600
    override = dev_secrets(path, {"GATEWAY_DEV_API_KEY": "sk-mine"})
    assert override["GATEWAY_DEV_API_KEY"] == "sk-mine"
    assert override["GATEWAY_ADMIN_TOKEN"] == first["GATEWAY_ADMIN_TOKEN"]
    assert dev_secrets(path, {})["GATEWAY_DEV_API_KEY"] == first["GATEWAY_DEV_API_KEY"]


def test_nats_and_fake_provider_start_and_stop_cleanly(tmp_path: Path) -> None:
    stack = Stack(StackConfig(tmp_path, PortPlan.free(), services=()))
    with stack:
        children = stack.children
        assert list(children) == ["nats", "fakeprovider"]
        environ = Path(f"/proc/{children['nats'].pid}/environ").read_bytes().split(b"\0")
        assert b"GOMEMLIMIT=64MiB" in environ  # the Go heap's soft limit (StackConfig)
        monitor = f"http://127.0.0.1:{stack.config.ports.nats_monitor}"
        assert httpx.get(f"{monitor}/healthz?js-enabled-only=true").status_code == 200
        assert httpx.get(f"{stack.fake_provider_url}/v1/models").status_code == 200
        catalog = yaml.safe_load(stack.catalog_path.read_text())
        assert catalog["providers"]["fake"]["base_url"] == f"{stack.fake_provider_url}/v1"
    assert stack.stop() == {"nats": 0, "fakeprovider": 0}
    for child in children.values():
        assert not group_alive(child.pid), child
    assert not any(
        port_in_use(port) for port in (stack.config.ports.nats, stack.config.ports.fake_provider)
    )
    assert (tmp_path / "logs" / "fakeprovider.log").exists()


def test_a_child_dying_during_start_fails_fast_with_its_log(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = str(busy.getsockname()[1])
        config = StackConfig(
            tmp_path,
            PortPlan.free(),
            services=(),
            extra_env={"fakeprovider": {"FAKE_PROVIDER_PORT": taken}},
            ready_timeout_s=30,
        )
        stack = Stack(config)
        with pytest.raises(
            StackError, match=r"fakeprovider exited with \d+[\s\S]*address already in use"
        ):
            stack.start()
    for child in stack.children.values():
        assert child.returncode is not None
        assert not group_alive(child.pid)


def test_busy_port_is_refused_before_anything_starts(tmp_path: Path) -> None:
    plan = PortPlan.free()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", plan.nats))
        busy.listen()
        stack = Stack(StackConfig(tmp_path, plan, services=()))
        with pytest.raises(StackError, match=f"nats {plan.nats}"):
            stack.start()
    assert stack.children == {}


def test_external_nats_is_joined_not_started(tmp_path: Path) -> None:
    with Stack(StackConfig(tmp_path / "a", PortPlan.free(), services=())) as first:
        config = StackConfig(tmp_path / "b", PortPlan.free(), nats_url=first.nats_url, services=())
        with Stack(config) as second:
            assert list(second.children) == ["fakeprovider"]
            assert second.nats_url == first.nats_url
            assert second._env("router")["NATS_URL"] == first.nats_url


def test_unset_database_url_is_not_inherited(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GATEWAY_DATABASE_URL", "postgresql://elsewhere/db")
    monkeypatch.setenv("GATEWAY_DEV_API_KEY", "sk-stray")
    plain = Stack(StackConfig(tmp_path, PortPlan.free(), api_key="sk-test"))._env("edge")
    assert "GATEWAY_DATABASE_URL" not in plain
    assert plain["GATEWAY_DEV_API_KEY"] == "sk-test"
    pg = Stack(StackConfig(tmp_path, PortPlan.free(), database_url="postgresql://x/y"))._env(
        "billing"
    )
    assert pg["GATEWAY_DATABASE_URL"] == "postgresql://x/y"
    assert "GATEWAY_DEV_API_KEY" not in pg
