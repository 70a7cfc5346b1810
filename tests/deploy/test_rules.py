"""The Prometheus rules in deploy/prometheus, checked and unit-tested with promtool."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

RULES_DIR = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
RULES = RULES_DIR / "anomaly-rules.yml"
RULE_TESTS = RULES_DIR / "anomaly-rules.test.yml"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=RULES_DIR)


def test_promtool_check_rules(promtool: str) -> None:
    proc = _run(promtool, "check", "rules", str(RULES))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_promtool_test_rules(promtool: str) -> None:
    proc = _run(promtool, "test", "rules", str(RULE_TESTS))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _alerts() -> list[dict[str, object]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


@pytest.mark.parametrize("rule", _alerts(), ids=lambda r: str(r["alert"]))
def test_every_alert_routes_and_explains_itself(rule: dict[str, object]) -> None:
    """Each alert has the annotations people read and labels (or series labels) that route it."""
    annotations = rule.get("annotations")
    assert isinstance(annotations, dict)
    assert {"summary", "description", "runbook_url"} <= annotations.keys()
    assert annotations["runbook_url"].endswith(f"/anomaly/{rule['alert']}")
    labels = rule.get("labels") or {}
    assert isinstance(labels, dict)
    expr = str(rule["expr"])
    # team/severity are set by the rule, or carried from the series with a label_replace default.
    assert "team" in labels or '"team", "' in expr
    assert "severity" in labels or '"severity", "' in expr
    if "organization_id" in expr or "push_time_seconds" in expr:
        text = str(annotations["summary"]) + str(annotations["description"])
        assert "$labels.organization_id" in text or rule["alert"] in {
            "GlobalHealthLow",
            "AnomalyJobMetricFailed",
            "AnomalyJobSeriesFailing",
        }


@pytest.mark.parametrize("rule", _alerts(), ids=lambda r: str(r["alert"]))
def test_tenant_alerts_have_a_freshness_guard(rule: dict[str, object]) -> None:
    """Nothing computed from pushed results may keep firing after the job died."""
    expr = str(rule["expr"])
    if rule["alert"] in {"AnomalyJobStale", "AnomalyJobDown", "AnomalyJobAbsent"}:
        return
    guards = ("time() - push_time_seconds", "time() - anomaly_tenant_last_run_timestamp_seconds")
    assert any(g in expr for g in guards) and "< 900" in expr, expr
    if "$labels.organization_id" in str(
        rule["annotations"]
    ):  # a tenant's alert: guarded by that tenant's own push time
        assert "on (job, organization_id) (time() - anomaly_tenant_last_run" in expr, expr
