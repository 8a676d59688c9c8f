"""EdgeSettings: names from the operator contract, and the production guard on secret_key."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from edge.config import DEV_SECRET_KEY, EdgeSettings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("GATEWAY_ENV", "GATEWAY_SECRET_KEY", "GATEWAY_PORT", "NATS_URL"):
        monkeypatch.delenv(name, raising=False)


def test_defaults() -> None:
    s = EdgeSettings()
    assert (s.host, s.port, s.router_addr) == ("127.0.0.1", 8080, "127.0.0.1:50051")
    assert s.request_timeout_s == 300 and s.max_body_bytes == 4 * 1024 * 1024
    assert s.service_name == "edge"
    assert s.resolved_database_url().endswith("/edge.db")


def test_environment_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_PORT", "9999")
    monkeypatch.setenv("GATEWAY_ROUTER_ADDR", "router:1")
    monkeypatch.setenv("GATEWAY_DEV_API_KEY", "sk-dev")
    monkeypatch.setenv("NATS_URL", "127.0.0.1:14999")
    s = EdgeSettings()
    assert (s.port, s.router_addr, s.nats_url) == (9999, "router:1", "nats://127.0.0.1:14999")
    assert s.dev_api_key is not None and s.dev_api_key.get_secret_value() == "sk-dev"


def test_production_refuses_the_placeholder_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_ENV", "production")
    with pytest.raises(ValidationError, match="GATEWAY_SECRET_KEY"):
        EdgeSettings()
    monkeypatch.setenv("GATEWAY_SECRET_KEY", "a-real-secret")
    assert EdgeSettings().secret_key.get_secret_value() == "a-real-secret"


def test_dev_accepts_the_placeholder() -> None:
    assert EdgeSettings().secret_key.get_secret_value() == DEV_SECRET_KEY
