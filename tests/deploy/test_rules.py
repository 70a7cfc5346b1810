"""The Prometheus rules in deploy/prometheus, checked and unit-tested with promtool."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

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


#: A recording rule's name (`level:metric:operations`); alert and metric names have no colon.
RECORDED_NAME = re.compile(r"\b[a-zA-Z_][a-zA-Z0-9_]*:[a-zA-Z0-9_:]*")


def _groups() -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = yaml.safe_load(RULES.read_text())["groups"]
    return groups


def _alerts() -> list[dict[str, Any]]:
    return [rule for group in _groups() for rule in group["rules"] if "alert" in rule]


def _alert_id(rule: dict[str, Any]) -> str:
    return f"{rule['alert']}-for-{rule.get('for', '0s')}"


def _expanded(expr: str) -> str:
    """``expr`` with each recording rule it reads replaced by that rule's own expression:
    what the alert evaluates."""
    recorded = {r["record"]: str(r["expr"]) for g in _groups() for r in g["rules"] if "record" in r}

    def expand(match: re.Match[str]) -> str:
        name = match.group()
        return f"({_expanded(recorded[name])})" if name in recorded else name

    return RECORDED_NAME.sub(expand, expr)


@pytest.mark.parametrize("rule", _alerts(), ids=_alert_id)
def test_every_alert_routes_and_explains_itself(rule: dict[str, Any]) -> None:
    """Each alert has the annotations people read and labels (or series labels) that route it."""
    annotations = rule.get("annotations")
    assert isinstance(annotations, dict)
    assert {"summary", "description", "runbook_url"} <= annotations.keys()
    assert annotations["runbook_url"].endswith(f"/anomaly/{rule['alert']}")
    labels = rule.get("labels") or {}
    assert isinstance(labels, dict)
    expr = _expanded(str(rule["expr"]))
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


@pytest.mark.parametrize("rule", _alerts(), ids=_alert_id)
def test_tenant_alerts_have_a_freshness_guard(rule: dict[str, Any]) -> None:
    """Nothing computed from pushed results may keep firing after the job died."""
    expr = _expanded(str(rule["expr"]))
    if rule["alert"] in {"AnomalyJobStale", "AnomalyJobDown", "AnomalyJobAbsent"}:
        return
    guards = ("time() - push_time_seconds", "time() - anomaly_tenant_last_run_timestamp_seconds")
    assert any(g in expr for g in guards) and "< 900" in expr, expr
    if "$labels.organization_id" in str(
        rule["annotations"]
    ):  # a tenant's alert: guarded by that tenant's own push time
        assert "on (job, organization_id) (time() - anomaly_tenant_last_run" in expr, expr


def test_alerts_read_recordings_of_the_same_evaluation() -> None:
    """A recording an alert reads is made in the alert's group, above it: rules of a group run
    in order at one time, so the alert sees this evaluation's recording (another group's
    could be one interval old, and AnomalyDetected would then race OrganizationDown)."""
    read = 0
    for group in _groups():
        recorded_above: set[str] = set()
        for rule in group["rules"]:
            for name in RECORDED_NAME.findall(str(rule["expr"])):
                assert name in recorded_above, f"{rule.get('alert') or rule['record']} reads {name}"
                read += 1
            if "record" in rule:
                recorded_above.add(rule["record"])
    assert read  # the check has something to check
