"""deploy/alertmanager/alertmanager.yml: the escalation matrix, checked with amtool, and the
local webhook receiver (anomaly_lab.webhook) the live tests use."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from anomaly_lab import devstack
from anomaly_lab.webhook import has_alert, run_webhook_receiver

from tests.conftest import Servers

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "deploy" / "alertmanager" / "alertmanager.yml"
RULES = ROOT / "deploy" / "prometheus" / "anomaly-rules.yml"
SECRETS_DIR = "/etc/alertmanager/secrets/"
SECRET_PATH_RE = re.compile(re.escape(SECRETS_DIR) + r"[A-Za-z0-9._-]+")
INLINE_SECRET_KEYS = {
    "routing_key",
    "service_key",
    "api_url",
    "slack_api_url",
    "auth_password",
    "smtp_auth_password",
    "auth_secret",
    "smtp_auth_secret",
}


@dataclass(frozen=True)
class Row:
    """One row of the escalation matrix: an alert's labels and where it must go."""

    name: str
    labels: dict[str, str]
    receiver: str
    group_wait: str


MATRIX = [
    Row(
        "critical system alert pages",
        {
            "alertname": "OrganizationDown",
            "organization_id": "org-07",
            "team": "platform",
            "severity": "critical",
            "metric": "request_rate",
        },
        "platform-critical",
        "0s",
    ),
    Row(
        "critical platform anomaly pages",
        {
            "alertname": "AnomalyDetected",
            "organization_id": "org-01",
            "team": "platform",
            "severity": "critical",
            "metric": "error_ratio",
        },
        "platform-critical",
        "0s",
    ),
    Row(
        "dead job pages",
        {
            "alertname": "AnomalyJobDown",
            "job": "anomaly_detector",
            "team": "platform",
            "severity": "critical",
        },
        "platform-critical",
        "0s",
    ),
    Row(
        "security critical, no delay",
        {
            "alertname": "AnomalyDetected",
            "organization_id": "org-03",
            "team": "security",
            "severity": "critical",
            "metric": "login_failures",
        },
        "security",
        "0s",
    ),
    Row(
        "security warning, no delay",
        {
            "alertname": "AnomalyDetected",
            "organization_id": "org-03",
            "team": "security",
            "severity": "warning",
            "metric": "login_failures",
        },
        "security",
        "0s",
    ),
    Row(
        "AI anomaly after 2m",
        {
            "alertname": "AnomalyDetected",
            "organization_id": "org-02",
            "team": "ai",
            "severity": "warning",
            "metric": "ai_cost",
        },
        "ai-team",
        "2m",
    ),
    Row(
        "AI budget exceeded (critical) goes to the AI team",
        {
            "alertname": "AISpendBudgetExceeded",
            "organization_id": "org-02",
            "team": "ai",
            "severity": "critical",
            "metric": "ai_spend_24h",
        },
        "ai-team",
        "2m",
    ),
    Row(
        "critical AI anomaly keeps the AI team's 2m",
        {
            "alertname": "AnomalyDetected",
            "organization_id": "org-02",
            "team": "ai",
            "severity": "critical",
            "metric": "ai_cost",
        },
        "ai-team",
        "2m",
    ),
    Row(
        "customer-success anomaly after 5m",
        {
            "alertname": "AnomalyDetected",
            "organization_id": "org-04",
            "team": "customer-success",
            "severity": "warning",
            "metric": "completion",
        },
        "customer-success",
        "5m",
    ),
    Row(
        "critical tenant health pages",
        {
            "alertname": "TenantHealthCritical",
            "organization_id": "org-04",
            "team": "platform",
            "severity": "critical",
        },
        "platform-critical",
        "0s",
    ),
    Row(
        "customer success after 5m",
        {
            "alertname": "TenantHealthLow",
            "organization_id": "org-04",
            "team": "customer-success",
            "severity": "warning",
        },
        "customer-success",
        "5m",
    ),
    Row(
        "business metric after 10m",
        {
            "alertname": "AnomalyDetected",
            "organization_id": "org-05",
            "team": "product",
            "severity": "info",
            "metric": "queue_depth",
        },
        "product",
        "10m",
    ),
    Row(
        "platform warning to Slack",
        {
            "alertname": "AnomalyDetected",
            "organization_id": "org-06",
            "team": "platform",
            "severity": "warning",
            "metric": "latency_p95",
        },
        "platform-slack",
        "30s",
    ),
    Row(
        "platform info to Slack",
        {
            "alertname": "AnomalyDetected",
            "organization_id": "org-06",
            "team": "platform",
            "severity": "info",
            "metric": "latency_p95",
        },
        "platform-slack",
        "30s",
    ),
    Row(
        "no fresh data to the platform channel",
        {
            "alertname": "AnomalyDataStale",
            "organization_id": "org-08",
            "team": "platform",
            "severity": "warning",
        },
        "platform-slack",
        "30s",
    ),
    Row(
        "unknown team to the default receiver",
        {
            "alertname": "Whatever",
            "organization_id": "org-09",
            "team": "finance",
            "severity": "warning",
        },
        "default",
        "30s",
    ),
    Row("no labels to the default receiver", {"alertname": "Whatever"}, "default", "30s"),
]


def _config() -> dict[str, Any]:
    loaded = yaml.safe_load(CONFIG.read_text())
    assert isinstance(loaded, dict)
    return loaded


def _walk(node: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield str(key), value
            yield from _walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from _walk(item)


@pytest.fixture
def config_copy(tmp_path: Path) -> Path:
    """The shipped config with its secret files pointed at dummy files in `tmp_path`."""
    text = CONFIG.read_text()
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    for path in sorted(set(SECRET_PATH_RE.findall(text))):
        name = path.removeprefix(SECRETS_DIR)
        value = "https://hooks.slack.invalid/x" if "url" in name else "dummy-secret"
        (secrets / name).write_text(value + "\n")
    out = tmp_path / "alertmanager.yml"
    out.write_text(text.replace(SECRETS_DIR, f"{secrets}/"))
    return out


def _amtool(amtool: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([amtool, *args], capture_output=True, text=True, timeout=60)


def test_check_config(amtool: str, config_copy: Path) -> None:
    proc = _amtool(amtool, "check-config", str(config_copy))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_secrets_only_from_files() -> None:
    keys = {key for key, _ in _walk(_config())}
    assert not keys & INLINE_SECRET_KEYS, keys & INLINE_SECRET_KEYS
    file_values = [v for k, v in _walk(_config()) if k.endswith("_file")]
    assert file_values and all(str(v).startswith(SECRETS_DIR) for v in file_values)


@pytest.mark.parametrize("row", MATRIX, ids=lambda r: r.name)
def test_routes(amtool: str, config_copy: Path, row: Row) -> None:
    labels = [f"{k}={v}" for k, v in row.labels.items()]
    ok = _amtool(
        amtool,
        "config",
        "routes",
        "test",
        f"--config.file={config_copy}",
        f"--verify.receivers={row.receiver}",
        *labels,
    )
    assert ok.returncode == 0, f"{row.labels} -> {ok.stdout.strip()} (want {row.receiver})"
    # The check has teeth: a wrong expectation fails.
    wrong = "default" if row.receiver != "default" else "platform-critical"
    bad = _amtool(
        amtool,
        "config",
        "routes",
        "test",
        f"--config.file={config_copy}",
        f"--verify.receivers={wrong}",
        *labels,
    )
    assert bad.returncode != 0, bad.stdout


@pytest.mark.parametrize(
    "config_file", [ROOT / "config.yaml", ROOT / "deploy" / "compose" / "anomaly-config.yaml"]
)
def test_every_shipped_metric_reaches_its_team(
    amtool: str, config_copy: Path, config_file: Path
) -> None:
    """An anomaly of each metric the shipped configs watch routes by its `team` and `severity`
    to that team's receiver, never to the catch-all."""
    metrics = yaml.safe_load(config_file.read_text())["metrics"]
    for metric in metrics:
        labels = {"alertname": "AnomalyDetected", "organization_id": "org-01"}
        labels |= {"metric": metric["name"], **metric.get("labels", {})}
        proc = _amtool(
            amtool,
            "config",
            "routes",
            "test",
            f"--config.file={config_copy}",
            *(f"{k}={v}" for k, v in labels.items()),
        )
        assert proc.returncode == 0, proc.stderr
        receiver = proc.stdout.strip()
        assert receiver != "default", f"{config_file.name}: {labels} -> {receiver}"
        if labels.get("severity") == "critical" and labels.get("team") == "platform":
            assert receiver == "platform-critical", labels


def _route_for(receiver: str) -> dict[str, Any]:
    root = _config()["route"]
    if root["receiver"] == receiver:
        return dict(root)
    routes = [r for r in root.get("routes", []) if r["receiver"] == receiver]
    assert len(routes) == 1, f"want exactly one route to {receiver}, got {routes}"
    return {**{k: v for k, v in root.items() if k != "routes"}, **routes[0]}


@pytest.mark.parametrize("row", MATRIX, ids=lambda r: r.name)
def test_group_wait(row: Row) -> None:
    assert _route_for(row.receiver)["group_wait"] == row.group_wait


def test_grouped_by_alertname_and_organization() -> None:
    root = _config()["route"]
    assert root["group_by"] == ["alertname", "organization_id"]
    for route in root.get("routes", []):
        assert "group_by" not in route, f"{route['receiver']} overrides group_by"


def test_critical_system_alerts_reach_pagerduty_slack_and_email() -> None:
    receivers = {r["name"]: r for r in _config()["receivers"]}
    critical = receivers["platform-critical"]
    for integration in ("pagerduty_configs", "slack_configs", "email_configs"):
        assert critical.get(integration), f"platform-critical lacks {integration}"
    for name in {row.receiver for row in MATRIX}:
        assert name in receivers


def _alert_names() -> set[str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {rule["alert"] for group in groups for rule in group["rules"] if "alert" in rule}


def test_inhibition_names_real_alerts() -> None:
    """Inhibit rules refer to alerts the rules file defines, and OrganizationDown mutes its own
    organization's anomaly alerts only."""
    defined = _alert_names()
    rules = _config()["inhibit_rules"]
    for rule in rules:
        for matcher in rule["source_matchers"] + rule["target_matchers"]:
            m = re.fullmatch(r'alertname(=~|=)"([^"]*)"', matcher)
            assert m, matcher
            names = m.group(2).split("|")
            assert set(names) <= defined, set(names) - defined
    down = [r for r in rules if r["source_matchers"] == ['alertname="OrganizationDown"']]
    assert len(down) == 1
    assert down[0]["equal"] == ["organization_id"]
    assert "AnomalyDetected" in down[0]["target_matchers"][0]


def _templates() -> list[tuple[str, str]]:
    found = []
    for receiver in _config()["receivers"]:
        for key, value in _walk(receiver):
            if isinstance(value, str) and "{{" in value:
                found.append((f"{receiver['name']}.{key}", value))
    return found


@pytest.mark.parametrize(("where", "template"), _templates(), ids=lambda x: str(x)[:40])
def test_notification_templates_render(
    amtool: str, tmp_path: Path, where: str, template: str
) -> None:
    """Every notification template renders, and what people read names tenant and metric."""
    labels = {
        "alertname": "AnomalyDetected",
        "organization_id": "org-07",
        "metric": "error_ratio",
        "team": "platform",
        "severity": "critical",
    }
    annotations = {
        "summary": "Anomaly in error_ratio for org-07",
        "description": "error_ratio of tenant org-07 has been anomalous",
        "runbook_url": "https://runbooks.processaudit.example/anomaly/AnomalyDetected",
    }
    data = {
        "receiver": "platform-critical",
        "status": "firing",
        "alerts": [
            {
                "status": "firing",
                "labels": labels,
                "annotations": annotations,
                "startsAt": "2026-11-20T14:00:00Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus/graph",
                "fingerprint": "0123456789abcdef",
            }
        ],
        "groupLabels": {"alertname": "AnomalyDetected", "organization_id": "org-07"},
        "commonLabels": labels,
        "commonAnnotations": annotations,
        "externalURL": "http://alertmanager",
    }
    (tmp_path / "data.json").write_text(json.dumps(data))
    (tmp_path / "empty.tmpl").write_text("")
    proc = _amtool(
        amtool,
        "template",
        "render",
        f"--template.glob={tmp_path / 'empty.tmpl'}",
        f"--template.text={template}",
        f"--template.data={tmp_path / 'data.json'}",
    )
    assert proc.returncode == 0, f"{where}: {proc.stderr}"
    if where.endswith((".title", ".text", ".description", ".Subject")):
        assert "org-07" in proc.stdout, f"{where} rendered {proc.stdout!r}"


# ---------------------------------------------------------------------------- webhook receiver


def _post(url: str, body: bytes) -> int:
    req = urllib.request.Request(
        url, data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as e:
        return int(e.code)


def test_webhook_receiver_collects_and_waits() -> None:
    note = {
        "receiver": "platform-critical",
        "status": "firing",
        "alerts": [
            {
                "status": "firing",
                "labels": {"alertname": "OrganizationDown", "organization_id": "org-07"},
            }
        ],
    }
    with run_webhook_receiver() as hook:
        assert hook.url.startswith("http://127.0.0.1:")
        assert hook.notifications == []
        with pytest.raises(TimeoutError, match="received 0"):
            hook.wait_for(timeout=0.05)
        # A notification arriving while we wait wakes the waiter.
        timer = threading.Timer(0.2, _post, (hook.url, json.dumps(note).encode()))
        timer.start()
        started = time.monotonic()
        got = hook.wait_for(has_alert(organization_id="org-07"), timeout=10)
        timer.join()
        assert got == note
        assert time.monotonic() - started < 5
        assert _post(hook.url, b"not json") == 400
        assert _post(hook.url, b"[1, 2]") == 400
        assert hook.notifications == [note]
        with pytest.raises(TimeoutError, match="OrganizationDown"):
            hook.wait_for(has_alert(organization_id="org-08"), timeout=0.1)
        assert not has_alert(status="resolved", organization_id="org-07")(note)
        assert has_alert(status=None, alertname="OrganizationDown")(note)
    with pytest.raises(OSError):
        _post(hook.url, b"{}")


# ------------------------------------------------------------------ inhibition, real Alertmanager


@pytest.mark.e2e
def test_organization_down_and_anomalies_inhibit_the_symptoms_of_their_tenant(
    servers: Servers,
) -> None:
    def alert(name: str, org: str, team: str, severity: str) -> dict[str, Any]:
        return {
            "labels": {
                "alertname": name,
                "organization_id": org,
                "team": team,
                "severity": severity,
                "metric": "request_rate",
            },
            "annotations": {"summary": f"{name} {org}"},
        }

    with (
        run_webhook_receiver() as hook,
        # The shipped routing and inhibition, every receiver a webhook, fast timers.
        servers.alertmanager(devstack.webhook_routing(CONFIG, hook.url)) as am,
    ):
        # The source alert first: Alertmanager inhibits against the alerts it already holds,
        # and alerts posted together race its inhibitor (a test that flaked under load).
        down_alert = [alert("OrganizationDown", "org-07", "platform", "critical")]
        requests.post(f"{am.url}/api/v2/alerts", json=down_alert, timeout=5).raise_for_status()
        down = hook.wait_for(has_alert(alertname="OrganizationDown", organization_id="org-07"))
        assert down["receiver"] == "platform-critical"
        posted = [
            alert("AnomalyDetected", "org-07", "platform", "warning"),
            alert("AnomalyDetected", "org-08", "platform", "warning"),
        ]
        requests.post(f"{am.url}/api/v2/alerts", json=posted, timeout=5).raise_for_status()
        other = hook.wait_for(has_alert(alertname="AnomalyDetected", organization_id="org-08"))
        assert other["receiver"] == "platform-slack"

        states = {
            (a["labels"]["alertname"], a["labels"]["organization_id"]): a["status"]
            for a in requests.get(f"{am.url}/api/v2/alerts", timeout=5).json()
        }
        assert states[("AnomalyDetected", "org-07")]["state"] == "suppressed"
        assert states[("AnomalyDetected", "org-07")]["inhibitedBy"]
        assert states[("AnomalyDetected", "org-08")]["state"] == "active"
        assert states[("OrganizationDown", "org-07")]["state"] == "active"
        time.sleep(2)  # a few group_intervals: the inhibited alert is never delivered
        muted = has_alert(alertname="AnomalyDetected", organization_id="org-07")
        assert not any(muted(n) for n in hook.notifications)

        # A tenant's health falling behind its notified anomaly is not a second notification;
        # a tenant whose health falls without one is.
        health = [
            alert("TenantHealthLow", "org-08", "customer-success", "warning"),
            alert("TenantHealthLow", "org-09", "customer-success", "warning"),
        ]
        requests.post(f"{am.url}/api/v2/alerts", json=health, timeout=5).raise_for_status()
        low = hook.wait_for(has_alert(alertname="TenantHealthLow", organization_id="org-09"))
        assert low["receiver"] == "customer-success"
        states = {
            (a["labels"]["alertname"], a["labels"]["organization_id"]): a["status"]
            for a in requests.get(f"{am.url}/api/v2/alerts", timeout=5).json()
        }
        assert states[("TenantHealthLow", "org-08")]["state"] == "suppressed"
        time.sleep(2)
        behind = has_alert(alertname="TenantHealthLow", organization_id="org-08")
        assert not any(behind(n) for n in hook.notifications)


def _readme_silences() -> list[list[str]]:
    """The ``amtool ... silence add`` commands of deploy/alertmanager/README.md, as argv."""
    text = (CONFIG.parent / "README.md").read_text().replace("\\\n", " ")
    commands = []
    for line in text.splitlines():
        if line.startswith("amtool $AM silence add"):
            argv = shlex.split(line.replace("$USER", "tester"))
            commands.append(argv[2:])  # without "amtool $AM"
    return commands


@pytest.mark.e2e
def test_readme_silences_work(amtool: str, alertmanager: str) -> None:
    """The documented maintenance-window commands are accepted by a real Alertmanager."""
    commands = _readme_silences()
    assert len(commands) >= 4
    for argv in commands:
        proc = _amtool(amtool, f"--alertmanager.url={alertmanager}", *argv)
        assert proc.returncode == 0, f"{argv}: {proc.stderr}"
    listed = _amtool(
        amtool,
        f"--alertmanager.url={alertmanager}",
        "silence",
        "query",
        "-q",
        "organization_id=org-07",
    )
    assert len(listed.stdout.split()) >= 3, listed.stdout
