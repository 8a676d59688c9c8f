from __future__ import annotations

from pathlib import Path

import pytest

from gateway_common.settings import DEFAULT_NATS_URL, BaseServiceSettings


def test_defaults_follow_the_operator_contract(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("NATS_URL", "GATEWAY_DATABASE_URL", "GATEWAY_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)
    settings = BaseServiceSettings(service_name="billing")
    assert settings.nats_url == DEFAULT_NATS_URL
    assert ":4222" not in settings.nats_url
    assert settings.resolved_database_url() == (
        f"sqlite+aiosqlite:///{Path('.data/billing.db').resolve()}"
    )


def test_env_names_and_url_normalisation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NATS_URL", "127.0.0.1:4333")
    monkeypatch.setenv("GATEWAY_DATABASE_URL", "postgresql://u@h:5432/db")
    settings = BaseServiceSettings()
    assert settings.nats_url == "nats://127.0.0.1:4333"
    assert settings.resolved_database_url() == "postgresql+psycopg://u@h:5432/db"
