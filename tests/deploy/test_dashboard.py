"""The Grafana dashboard ``deploy/grafana/anomaly-dashboard.json``.

Static checks: a Grafana JSON model, every panel queries something, the template variables the
panels use exist, and every series name is one the job pushes. End to end: with the job's
series pushed to a real Pushgateway and scraped by a real Prometheus, every PromQL expression
(template variables substituted) is accepted, every panel and variable query finds data, and
a broken expression is rejected (so the check can fail).
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from anomaly_lab import devstack

from anomaly.config import PushgatewayConfig
from anomaly.io.pushgateway import PushgatewaySink, Sample
from anomaly.job.export import HELP, POS_INF
from tests.conftest import Servers

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD_PATH = ROOT / "deploy" / "grafana" / "anomaly-dashboard.json"

TENANTS = ("org-a", "org-b")
METRICS = ("latency_p95", "ai_spend_24h")

# What Grafana substitutes at query time, as concrete values. A multi-value variable used in
# `=~"$tenant"` becomes a regex alternation.
BUILTINS = {
    "__rate_interval": "1m",
    "__interval": "30s",
    "__interval_ms": "30000",
    "__range": "1h",
    "__range_s": "3600",
    "__range_ms": "3600000",
}
SAMPLE_VALUES = {
    "datasource": "prometheus",
    "job": "anomaly_detector",
    "tenant": "|".join(TENANTS),
    "metric": "latency_p95",
}

_VARIABLE = re.compile(r"\$\{(\w+)(?::[\w]+)?\}|\[\[(\w+)\]\]|\$(\w+)")


def load_dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD_PATH.read_text(encoding="utf-8"))


def iter_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every panel, including those inside (collapsed) rows."""
    for panel in panels:
        yield panel
        yield from iter_panels(panel.get("panels", []))


def query_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in iter_panels(dashboard["panels"]) if p["type"] != "row"]


def variables(dashboard: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in dashboard["templating"]["list"]}


def variable_values(dashboard: dict[str, Any]) -> dict[str, str]:
    """Concrete values for every variable: samples for queried ones, defaults for textboxes."""
    values = dict(BUILTINS)
    for name, var in variables(dashboard).items():
        if var["type"] in ("textbox", "constant", "custom"):
            values[name] = str(var["query"]).split(",")[0].strip()
        else:
            values[name] = SAMPLE_VALUES[name]
    return values


def substitute(expr: str, values: dict[str, str]) -> str:
    """`expr` with ``$name``, ``${name}``, ``${name:fmt}`` and ``[[name]]`` replaced."""

    def replace(match: re.Match[str]) -> str:
        name = next(g for g in match.groups() if g)
        if name not in values:
            raise KeyError(f"unknown template variable ${name} in {expr!r}")
        return values[name]

    # Values may themselves hold variables (a textbox default); expand until stable.
    for _ in range(5):
        expanded = _VARIABLE.sub(replace, expr)
        if expanded == expr:
            return expanded
        expr = expanded
    raise ValueError(f"template variables nest too deep in {expr!r}")


def variable_query(var: dict[str, Any]) -> str | None:
    q = var.get("query")
    return q.get("query") if isinstance(q, dict) else q


_LABEL_VALUES = re.compile(r"^label_values\((?:(?P<match>.+),)?\s*(?P<label>\w+)\s*\)$", re.S)


def promql_expressions(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, PromQL) for every panel target and every query in a template variable."""
    out: list[tuple[str, str]] = []
    for panel in query_panels(dashboard):
        for target in panel["targets"]:
            out.append((f"panel {panel['title']!r} target {target['refId']}", target["expr"]))
    for name, var in variables(dashboard).items():
        query = variable_query(var)
        if var["type"] == "query" and query:
            m = _LABEL_VALUES.match(query.strip())
            if m is None:
                pytest.fail(f"variable {name}: only label_values(...) queries are supported")
            if m["match"]:
                out.append((f"variable {name}", m["match"].strip()))
        elif var["type"] == "textbox" and query:
            out.append((f"variable {name} (default)", query))
    return out


# --------------------------------------------------------------------------- static checks


def test_dashboard_is_a_grafana_json_model() -> None:
    dashboard = load_dashboard()
    assert dashboard["uid"] == "anomaly-detection"
    assert dashboard["title"]
    assert 36 <= dashboard["schemaVersion"] <= 41
    ids = [p["id"] for p in iter_panels(dashboard["panels"])]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in iter_panels(dashboard["panels"]):
        assert {"x", "y", "w", "h"} <= set(panel["gridPos"]), panel["title"]
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24, panel["title"]


def test_every_panel_has_targets_on_the_datasource_variable() -> None:
    dashboard = load_dashboard()
    panels = query_panels(dashboard)
    assert len(panels) >= 10
    for panel in panels:
        targets = panel.get("targets")
        assert targets, f"panel {panel['title']!r} has no targets"
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        ref_ids = [t["refId"] for t in targets]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]
        for target in targets:
            assert target["expr"].strip(), f"panel {panel['title']!r} has an empty query"
            assert target["datasource"]["uid"] == "${datasource}"


def test_template_variables() -> None:
    dashboard = load_dashboard()
    vars_ = variables(dashboard)
    assert vars_["datasource"]["type"] == "datasource"
    assert vars_["datasource"]["query"] == "prometheus"
    tenant = vars_["tenant"]
    assert tenant["type"] == "query"
    assert tenant["multi"] and tenant["includeAll"]
    assert re.fullmatch(
        r"label_values\(anomaly_health_score(\{.*\})?, organization_id\)", variable_query(tenant)
    )
    assert variable_query(vars_["metric"]).startswith("label_values(anomaly_score")
    for var in vars_.values():
        if var["type"] == "query":
            assert var["datasource"]["uid"] == "${datasource}"


def test_every_variable_used_is_defined() -> None:
    dashboard = load_dashboard()
    values = variable_values(dashboard)
    for where, expr in promql_expressions(dashboard):
        assert "$" not in substitute(expr, values), where
    for panel in query_panels(dashboard):
        substitute(panel["title"], values)
        if "repeat" in panel:
            assert panel["repeat"] in values, panel["title"]


def test_series_names_are_ones_the_job_pushes() -> None:
    known = set(HELP)
    used: set[str] = set()
    for _, expr in promql_expressions(load_dashboard()):
        used |= set(re.findall(r"\banomaly_\w+", expr))
    assert used - known == set()
    # The brief's panels: health, scores, bands, forecasts with breach, the job's own health.
    for name in (
        "anomaly_health_score",
        "anomaly_global_health_score",
        "anomaly_health_component_score",
        "anomaly_score",
        "anomaly_detected",
        "anomaly_expected_value",
        "anomaly_lower_bound",
        "anomaly_upper_bound",
        "anomaly_forecast_value",
        "anomaly_forecast_breach_seconds",
        "anomaly_job_last_success_timestamp_seconds",
        "anomaly_job_duration_seconds",
        "anomaly_job_series",
        "anomaly_job_series_failed",
    ):
        assert name in used, name


def test_breach_countdown_is_a_humanized_stat() -> None:
    panels = query_panels(load_dashboard())
    stats = [
        p
        for p in panels
        if p["type"] == "stat"
        and any("anomaly_forecast_breach_seconds" in t["expr"] for t in p["targets"])
        and p["fieldConfig"]["defaults"].get("unit") == "dtdurations"
    ]
    assert stats, "no stat panel shows anomaly_forecast_breach_seconds as a duration"
    mapped = json.dumps(stats[0]["fieldConfig"]["defaults"]["mappings"])
    assert "none within horizon" in mapped  # +Inf (shown as -1) reads as words, not a number


def test_substitute() -> None:
    values = {"tenant": "a|b", "__rate_interval": "1m", "q": 'up{x=~"$tenant"}'}
    assert substitute('rate(x{o=~"$tenant"}[$__rate_interval])', values) == (
        'rate(x{o=~"a|b"}[1m])'
    )
    assert substitute("${tenant:regex} [[tenant]] ${q}", values) == 'a|b a|b up{x=~"a|b"}'
    with pytest.raises(KeyError, match="nope"):
        substitute("$nope", values)


# --------------------------------------------------------------------------- end to end


def pushed_samples(now: float) -> list[Sample]:
    """What a run of the job pushes, for two tenants and two metrics."""
    samples: list[Sample] = []
    for i, tenant in enumerate(TENANTS):
        for metric in METRICS:
            labels = {"metric": metric, "organization_id": tenant, "team": "platform",
                      "severity": "warning"}  # fmt: skip
            anomalous = i == 1 and metric == "latency_p95"
            samples += [
                Sample("anomaly_score", labels, 0.9 if anomalous else 0.1),
                Sample("anomaly_detected", labels, 1.0 if anomalous else 0.0),
                Sample("anomaly_expected_value", labels, 1.0),
                Sample("anomaly_lower_bound", labels, 0.5),
                Sample("anomaly_upper_bound", labels, 1.5),
                Sample("anomaly_forecast_value", {**labels, "horizon": "24h"}, 90.0 + 20 * i),
                Sample("anomaly_forecast_lower_bound", labels, 80.0),
                Sample("anomaly_forecast_upper_bound", labels, 120.0),
                Sample("anomaly_forecast_threshold", labels, 100.0),
                Sample("anomaly_forecast_breach_seconds", labels, 7200.0 if i else math.inf),
            ]
        health = {"organization_id": tenant}
        samples += [
            Sample("anomaly_health_score", health, 95.0 - 40 * i),
            Sample("anomaly_health_component_score", {**health, "component": "objectives"}, 90.0),
            Sample("anomaly_health_component_score", {**health, "component": "anomalies"}, 70.0),
            Sample("anomaly_tenant_data_age_seconds", health, 30.0 + 1800.0 * i),
            # The source series behind the "Actual (PromQL)" variable's default.
            Sample("processaudit_latency_p95_seconds", health, 1.2 + i),
        ]
    samples += [
        Sample("anomaly_global_health_score", {}, 75.0),
        Sample("anomaly_job_last_success_timestamp_seconds", {}, now),
        Sample("anomaly_job_duration_seconds", {}, 12.5),
        Sample("anomaly_job_series", {}, 4.0),
        Sample("anomaly_job_series_failed", {}, 0.0),
        Sample("anomaly_job_anomalies", {}, 1.0),
        Sample("anomaly_job_metric_failed", {"metric": "queue_depth"}, 1.0),
        Sample("anomaly_job_metric_failed", {"metric": "latency_p95"}, 0.0),
    ]
    return samples


@pytest.fixture(scope="module")
def pushed_stack(servers: Servers) -> Iterator[devstack.Stack]:
    """A Prometheus scraping a Pushgateway that holds one run's series."""
    with servers.stack(with_alertmanager=False) as stack:
        sink = PushgatewaySink(
            PushgatewayConfig(url=stack.pushgateway_url, job="anomaly_detector"),
            tenant_label="organization_id",
            help_text=HELP,
            pos_inf=POS_INF,
        )
        sink.push(pushed_samples(time.time()))
        deadline = time.monotonic() + 60
        while True:  # Prometheus discovers the Pushgateway target a few seconds after start
            found = instant_query(stack.prometheus_url, "anomaly_health_score")
            if len(found) == len(TENANTS):
                break
            if time.monotonic() > deadline:
                pytest.fail("Prometheus did not scrape the pushed series within 60 s")
            time.sleep(0.5)
        time.sleep(2)  # a few more scrapes, so range functions over short windows see data
        yield stack


def instant_query(prometheus_url: str, expr: str) -> list[dict[str, Any]]:
    response = requests.get(f"{prometheus_url}/api/v1/query", params={"query": expr}, timeout=10)
    body = response.json()
    assert response.status_code == 200 and body["status"] == "success", (
        f"Prometheus rejected {expr!r}: HTTP {response.status_code} {body.get('error')}"
    )
    return list(body["data"]["result"])


_EXPRESSIONS = promql_expressions(load_dashboard())


@pytest.mark.e2e
@pytest.mark.parametrize(("where", "expr"), _EXPRESSIONS, ids=[w for w, _ in _EXPRESSIONS])
def test_prometheus_accepts_and_answers(
    pushed_stack: devstack.Stack, where: str, expr: str
) -> None:
    query = substitute(expr, variable_values(load_dashboard()))
    result = instant_query(pushed_stack.prometheus_url, query)
    assert result, f"{where}: {query!r} found nothing in one run's pushed series"


@pytest.mark.e2e
def test_prometheus_rejects_a_broken_expression(pushed_stack: devstack.Stack) -> None:
    response = requests.get(
        f"{pushed_stack.prometheus_url}/api/v1/query",
        params={"query": 'max by (organization_id (anomaly_score{organization_id=~"x"})'},
        timeout=10,
    )
    assert response.status_code == 400
    assert response.json()["errorType"] == "bad_data"


@pytest.mark.e2e
def test_variables_list_the_pushed_values(pushed_stack: devstack.Stack) -> None:
    dashboard = load_dashboard()
    values = variable_values(dashboard)
    expected = {"job": {"anomaly_detector"}, "tenant": set(TENANTS), "metric": set(METRICS)}
    for name, var in variables(dashboard).items():
        if var["type"] != "query":
            continue
        m = _LABEL_VALUES.match(variable_query(var).strip())
        assert m is not None
        params = {"match[]": substitute(m["match"], values)} if m["match"] else {}
        response = requests.get(
            f"{pushed_stack.prometheus_url}/api/v1/label/{m['label']}/values",
            params=params,
            timeout=10,
        )
        assert response.status_code == 200, response.text
        assert set(response.json()["data"]) == expected[name], name
