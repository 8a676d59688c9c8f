"""The alert rules under Prometheus' own tools: ``promtool check rules`` and ``promtool test rules``.

``alerts_test.yaml`` (beside this file) feeds each alert of
``deploy/k8s/components/monitoring/alerts.yaml`` the series it is meant for and a
near miss, and says when it must fire, with which labels and annotations. promtool
ships in Debian's ``prometheus`` package (``apt-get install prometheus``); without it
the promtool tests skip, and the coverage test below still holds the test file to
every alert.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "deploy" / "k8s" / "components" / "monitoring" / "alerts.yaml"
UNIT_TESTS = Path(__file__).with_name("alerts_test.yaml")
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed")


def rule_groups() -> dict[str, Any]:
    """The PrometheusRule's groups as a plain Prometheus rule file."""
    return {"groups": yaml.safe_load(ALERTS.read_text())["spec"]["groups"]}


def promtool(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rule_groups()))
    shutil.copy(UNIT_TESTS, tmp_path / UNIT_TESTS.name)
    assert PROMTOOL is not None
    return subprocess.run(
        [PROMTOOL, *args], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )


@needs_promtool
def test_promtool_accepts_the_rules(tmp_path: Path) -> None:
    result = promtool(tmp_path, "check", "rules", "rules.yaml")
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_each_alert_fires_on_its_series_and_not_on_a_near_miss(tmp_path: Path) -> None:
    result = promtool(tmp_path, "test", "rules", UNIT_TESTS.name)
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_the_unit_tests_can_fail(tmp_path: Path) -> None:
    """A rule made ten times laxer breaks its near-miss case: promtool's verdict is real."""
    result = promtool(tmp_path, "test", "rules", UNIT_TESTS.name)
    assert result.returncode == 0
    lax = (tmp_path / "rules.yaml").read_text().replace("> 0.05", "> 0.005")
    assert lax != (tmp_path / "rules.yaml").read_text()
    (tmp_path / "rules.yaml").write_text(lax)
    assert PROMTOOL is not None
    broken = subprocess.run(
        [PROMTOOL, "test", "rules", UNIT_TESTS.name],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert broken.returncode != 0
    assert "SwitchyardHighErrorRate" in broken.stdout + broken.stderr


def test_every_alert_has_a_firing_and_a_quiet_case() -> None:
    alerts = {r["alert"] for g in rule_groups()["groups"] for r in g["rules"] if "alert" in r}
    cases = [
        case
        for test in yaml.safe_load(UNIT_TESTS.read_text())["tests"]
        for case in test["alert_rule_test"]
    ]
    fires = {c["alertname"] for c in cases if c["exp_alerts"]}
    quiet = {c["alertname"] for c in cases if not c["exp_alerts"]}
    assert alerts and alerts == fires, f"no firing case for {sorted(alerts - fires)}"
    assert alerts == quiet, f"no quiet case for {sorted(alerts - quiet)}"
