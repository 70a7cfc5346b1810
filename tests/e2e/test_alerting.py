"""End to end, the path to a page: injected anomalies → `anomaly run --once` → Pushgateway →
Prometheus evaluating the shipped rules → Alertmanager with the shipped routing → a webhook.

Only the timers are shortened (rule `for:` to 0s, group_wait to 0s); expressions, labels,
annotations, routes and inhibitions are the shipped files'.
"""

from __future__ import annotations

import math
import subprocess
import sys
import time
from pathlib import Path

import pytest
from anomaly_lab import devstack, synth
from anomaly_lab.webhook import has_alert, run_webhook_receiver

from tests.conftest import Servers, write_config

pytestmark = pytest.mark.e2e


def test_injected_anomalies_become_routed_notifications(tmp_path: Path, servers: Servers) -> None:
    end = math.floor(time.time() / 300) * 300
    injections = [
        synth.ending_injection("org-02", "request_rate", "outage", end=end, duration_seconds=3600),
        synth.ending_injection("org-03", "latency_p95", "level_shift", end=end, magnitude=1.0),
        synth.ending_injection("org-04", "ai_cost", "level_shift", end=end, magnitude=1.5),
    ]
    dataset = synth.generate(5, days=8.0, end=end, seed=11, injections=injections)
    rules = devstack.fast_rules(devstack.RULES_FILE, tmp_path)
    with (
        run_webhook_receiver() as hook,
        servers.stack(
            dataset=dataset,
            rule_files=[rules],
            alertmanager_config=devstack.webhook_routing(devstack.ALERTMANAGER_FILE, hook.url),
        ) as stack,
    ):
        config = write_config(tmp_path / "config.yaml", stack)
        run = subprocess.run(
            [sys.executable, "-m", "anomaly.cli", "run", "--once", "--config", str(config)],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert run.returncode == 0, run.stderr[-2000:]

        down = hook.wait_for(
            has_alert(alertname="OrganizationDown", organization_id="org-02"), timeout=90
        )
        assert down["receiver"] == "platform-critical"
        alert = down["alerts"][0]
        assert "org-02" in alert["annotations"]["summary"]
        assert "request_rate" in alert["annotations"]["description"]
        assert alert["annotations"]["runbook_url"].startswith("https://")

        latency = hook.wait_for(
            has_alert(alertname="AnomalyDetected", organization_id="org-03", metric="latency_p95"),
            timeout=60,
        )
        assert latency["receiver"] == "platform-slack"
        text = " ".join(latency["alerts"][0]["annotations"].values())
        assert "org-03" in text and "latency_p95" in text

        spend = hook.wait_for(
            has_alert(alertname="AnomalyDetected", organization_id="org-04", metric="ai_cost"),
            timeout=60,
        )
        assert spend["receiver"] == "ai-team"

        # The outage's own anomaly alert is inhibited by OrganizationDown: never delivered.
        time.sleep(3)
        assert not any(
            has_alert(alertname="AnomalyDetected", organization_id="org-02")(n)
            for n in hook.notifications
        )
        # No notification carries one tenant's alert in another tenant's group.
        for note in hook.notifications:
            group_org = note["groupLabels"].get("organization_id")
            for a in note["alerts"]:
                assert a["labels"].get("organization_id") == group_org
