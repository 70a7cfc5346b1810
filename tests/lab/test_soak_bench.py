"""The live soak (bench/soak_bench.py): its world, its judging, and the instrument end to end.

The world and the judging are checked in process. The end-to-end test runs the real thing
(exporter, backfilled history, Prometheus with the shipped rules, Alertmanager with the shipped
routing and a webhook per receiver, ``anomaly serve``) with two changes that make it a test of
the instrument rather than a measurement of the product, and take it under a minute: the rules'
``for:`` and the routes' waits are shortened (as tests/e2e/test_alerting.py does), and the
incidents began 15 minutes before the setup, so the job's first run meets them instead of the
test waiting for the schedule. The bench itself offers neither: it measures the shipped timings.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from anomaly_lab import devstack, synth

from bench import soak_bench
from bench.soak import report, world
from bench.soak.watch import AlertSpells, Flag, Run
from tests.conftest import Servers

T0 = 1_795_000_000.0  # 2026-11-18, a Wednesday


def make_world(seed: int = 0, incidents: tuple[tuple[str, str, float], ...] = ()) -> world.World:
    w = world.World(synth.tenant_names(4), origin=T0 - 9 * 86400, end=T0 + 7200, seed=seed)
    w.schedule([world.Incident(world.KINDS[k], t, onset) for k, t, onset in incidents])
    return w


# --------------------------------------------------------------------------- the world


def test_the_world_is_one_function_of_time_fixed_by_its_seed() -> None:
    a, b, other = make_world(), make_world(), make_world(seed=1)
    t = np.array([T0 - 86400.0, T0, T0 + 37.5])
    for metric in world.SPECS:
        np.testing.assert_array_equal(a.sample(t)[metric], b.sample(t)[metric])
        assert not np.array_equal(a.sample(t)[metric], other.sample(t)[metric])
    # The history holds exactly what the exporter would have served at those instants.
    sparse, dense = a.history(T0 - 8 * 86400, T0, scrape_interval_seconds=15)
    assert dense.timestamps[-1] == T0 and np.all(np.diff(dense.timestamps) == 15)
    assert np.all(np.diff(sparse.timestamps) == 300)
    assert dense.timestamps[0] - sparse.timestamps[-1] == 300
    assert dense.timestamps[-1] - dense.timestamps[0] == world.DENSE_TAIL_SECONDS
    served = a.sample(dense.timestamps)
    for s in dense.series:
        j = dense.tenants.index(s.tenant)
        np.testing.assert_array_equal(s.values, served[s.metric][:, j])


def test_values_are_plausible_and_counters_never_fall() -> None:
    w = make_world()
    t = np.arange(T0 - 8 * 86400, T0, 60.0)
    v = w.sample(t)
    assert np.all(v["request_rate"] > 0) and np.all(v["latency_p95"] > 0)
    assert np.all((v["error_ratio"] > 0) & (v["error_ratio"] < 0.05))
    assert np.all((v["completion"] > 0.5) & (v["completion"] <= 1))
    assert np.all(v["queue_depth"] == np.round(v["queue_depth"]))
    for counter in ("ai_cost", "auth_failures"):
        assert np.all(np.diff(v[counter], axis=0) >= 0)
    assert np.all(v["auth_failures"] == np.round(v["auth_failures"]))
    # The AI spend is the tenant's daily dollars (20-80), spread over its load.
    daily = (v["ai_cost"][-1] - v["ai_cost"][-1 - 7 * 1440]) / 7
    assert np.all((daily > 15) & (daily < 90))


def test_each_tenant_keeps_its_own_calendar() -> None:
    w = make_world()
    t = np.arange(T0 - 14 * 86400, T0, 300.0)
    load = w.load(t)
    for j, tenant in enumerate(w.tenants):
        local = t + w._calendars.offset_hours[j] * 3600
        rest = np.isin((np.floor(local / 86400) + 3) % 7, w._calendars.rest_days[j])
        assert load[rest, j].mean() < 0.8 * load[~rest, j].mean(), tenant
        hour = (local % 86400) // 3600
        assert load[(hour >= 10) & (hour < 16), j].mean() > 2 * load[hour < 5, j].mean()


def test_an_incident_bends_its_series_from_its_onset_only() -> None:
    onset = T0 + 600.0
    plan = (("error_ratio", "org-01", onset), ("ai_cost", "org-02", onset))
    quiet, bent = make_world(), make_world(incidents=plan)
    before, after = np.array([T0, onset - 1]), np.array([onset + 60, onset + 3600])
    for metric in world.SPECS:
        np.testing.assert_array_equal(quiet.sample(before)[metric], bent.sample(before)[metric])
    q, b = quiet.sample(after), bent.sample(after)
    np.testing.assert_allclose(b["error_ratio"][:, 0], 10 * q["error_ratio"][:, 0])
    np.testing.assert_array_equal(b["error_ratio"][:, 1:], q["error_ratio"][:, 1:])
    at_onset = quiet.sample([onset])["ai_cost"][0, 1]
    np.testing.assert_allclose(b["ai_cost"][:, 1] - at_onset, 8 * (q["ai_cost"][:, 1] - at_onset))
    np.testing.assert_array_equal(b["ai_cost"][:, [0, 2, 3]], q["ai_cost"][:, [0, 2, 3]])


def test_the_plan_and_its_tenants() -> None:
    chosen, quiet = world.pick_tenants(synth.tenant_names(12), world.DEFAULT_KINDS, seed=0)
    assert set(chosen) == set(world.DEFAULT_KINDS) and len(set(chosen.values())) == 5
    assert len(quiet) == 7 and not set(quiet) & set(chosen.values())
    assert world.pick_tenants(synth.tenant_names(12), world.DEFAULT_KINDS, seed=0)[0] == chosen
    with pytest.raises(ValueError, match="incident kinds"):
        world.pick_tenants(synth.tenant_names(12), ("nope",), seed=0)
    with pytest.raises(ValueError, match="one incident per tenant"):
        make_world(incidents=(("error_ratio", "org-01", T0), ("error_ratio", "org-01", T0 + 1)))
    with pytest.raises(ValueError, match="`tenants`"):
        soak_bench.Settings(tenants=3)


# --------------------------------------------------------------------------- the judging


def note(
    at: float, receiver: str, *alerts: dict[str, str], status: str = "firing"
) -> report.Notification:
    payload = {
        "status": status,
        "alerts": [{"status": status, "labels": labels} for labels in alerts],
    }
    return report.Notification.from_payload(at, receiver, payload)


def alert(name: str, tenant: str | None, metric: str | None = None) -> dict[str, str]:
    labels = {"alertname": name}
    if tenant:
        labels["organization_id"] = tenant
    if metric:
        labels["metric"] = metric
    return labels


def test_events_go_to_their_incident_and_the_rest_is_false() -> None:
    errors = world.Incident(world.KINDS["error_ratio"], "org-01", T0)
    spend = world.Incident(world.KINDS["ai_cost"], "org-02", T0 + 60)
    spells = {
        "a": AlertSpells(alert("AnomalyDetected", "org-01", "error_ratio"), [[T0 + 700, T0 + 900]]),
        "b": AlertSpells(alert("AnomalyDetected", "org-03", "latency_p95"), [[T0 + 800, T0 + 820]]),
    }
    notes = [
        note(T0 + 702, "platform-critical", alert("AnomalyDetected", "org-01", "error_ratio")),
        note(T0 + 760, "customer-success", alert("TenantHealthLow", "org-01")),  # same incident
        note(T0 + 830, "platform-slack", alert("AnomalyDetected", "org-03", "latency_p95")),
        note(T0 + 840, "platform-slack", alert("AnomalyDetected", "org-01", "latency_p95")),
        note(T0 + 900, "ai-team", alert("AISpendBudgetBreachForecast", "org-02", "ai_spend_24h")),
        note(T0 + 905, "platform-slack", alert("AnomalyJobStale", None)),
        note(T0 + 950, "platform-slack", alert("AnomalyDetected", "org-03"), status="resolved"),
    ]
    flags = [
        Flag(T0 - 300, "org-01", "error_ratio", 0.6),  # before the onset: false
        Flag(T0 + 100, "org-01", "error_ratio", 0.9),
        Flag(T0 + 400, "org-01", "error_ratio", 0.8),
        Flag(T0 + 100, "org-04", "queue_depth", 0.55),
    ]
    result = report.judge(
        started_at=T0 - 600,
        ended_at=T0 + 3000,
        incidents=[errors, spend],
        expected_receivers={errors: "platform-critical", spend: "ai-team"},
        flags=flags,
        alerts=spells,
        notifications=notes,
        runs=[Run(T0 + 100, 1.5, 48, 2), Run(T0 - 300, 9.0, 48, 1)],
    )
    first, second = result.outcomes
    assert first.flag == flags[1] and first.firing_at == T0 + 700
    assert first.firing_alert == "AnomalyDetected"
    assert [n.received_at for n in first.notifications] == [T0 + 702, T0 + 760]
    assert first.page is notes[0]
    assert second.flag is None and second.firing_at is None
    assert second.first is notes[4] and second.page is notes[4]  # the forecast its cost drives
    assert result.false_notifications == [notes[2], notes[3], notes[5]]
    assert result.resolved_notifications == [notes[6]]
    assert result.false_flags == [flags[0], flags[3]]
    assert [labels["organization_id"] for _, labels in result.false_alerts] == ["org-03"]

    s = result.summary()
    assert s["critical_paged"] == 1 and s["critical_page_p95_seconds"] == 702
    assert s["warning_notified"] == 1 and s["warning_notification_max_seconds"] == 840
    assert (s["notifications"], s["false_notifications"], s["duplicate_notifications"]) == (6, 3, 1)
    assert s["runs"] == 2 and s["run_seconds_max"] == 9.0
    table = report.format_result(result)
    assert "error ratio ×10 (platform, critical)" in table and "702 s" in table
    assert "false notifications: 3" in table and "duplicate notifications: 1" in table
    assert "AnomalyDetected org-03/latency_p95" in table


def test_p95_is_nearest_rank_and_an_unpaged_incident_is_infinite() -> None:
    assert report._percentile_nearest_rank([658.0, 718.0, 778.0], 95) == 778.0
    assert report._percentile_nearest_rank([float(i) for i in range(1, 101)], 95) == 95.0
    critical = world.Incident(world.KINDS["auth_failures"], "org-01", T0)
    result = report.judge(
        started_at=T0,
        ended_at=T0 + 60,
        incidents=[critical],
        expected_receivers={critical: "security"},
        flags=[],
        alerts={},
        notifications=[],
        runs=[],
    )
    assert math.isinf(result.summary()["critical_page_p95_seconds"])
    assert soak_bench._finite(result.to_json())["summary"]["critical_page_p95_seconds"] is None


# --------------------------------------------------------------------------- end to end


@pytest.mark.e2e
def test_the_soak_times_each_incident_to_its_receiver(tmp_path: Path, servers: Servers) -> None:
    servers.require("prometheus", "promtool", "pushgateway", "alertmanager", "amtool")
    routing = tmp_path / "alertmanager.yml"
    shipped = yaml.safe_load(devstack.ALERTMANAGER_FILE.read_text())
    routing.write_text(yaml.safe_dump(devstack.fast_timers(shipped)))
    settings = soak_bench.Settings(
        tenants=6,
        minutes=4,
        head_start_seconds=900,
        spacing_seconds=10,
        scrape_interval_seconds=5,
        evaluation_interval_seconds=1,
        alert_resend_delay_seconds=1,
        poll_seconds=1,
        rules_file=devstack.fast_rules(devstack.RULES_FILE, tmp_path),
        alertmanager_file=routing,
        stop_when_paged_seconds=5,
    )
    lines: list[str] = []
    result, record = soak_bench.run_soak(settings, say=lines.append)

    # The escalation matrix, as amtool reads the routing.
    expected = {
        "error_ratio": "platform-critical",
        "request_rate": "platform-critical",
        "auth_failures": "security",
        "latency_p95": "platform-slack",
        "ai_cost": "ai-team",
    }
    assert {o.incident.metric: o.expected_receiver for o in result.outcomes} == expected
    for o in result.outcomes:
        assert o.flag is not None and o.firing_at is not None and o.page is not None, o
        assert o.flag.metric in o.incident.kind.related and o.flag.score >= 0.5
        assert o.incident.onset < o.flag.pushed_at < o.page.received_at
        # Firing is seen by a poll (every second), the notification when it lands.
        assert o.flag.pushed_at <= o.firing_at <= o.page.received_at + 2 * settings.poll_seconds
    by_metric = {o.incident.metric: o for o in result.outcomes}
    assert by_metric["request_rate"].firing_alert == "OrganizationDown"
    # Every firing notification is an incident's or false; none is lost between them.
    owned = {id(n) for o in result.outcomes for n in o.notifications}
    assert len(result.notifications) == len(owned) + len(result.false_notifications)
    assert result.runs and all(r.duration_seconds > 0 for r in result.runs)
    assert any("request rate to 3 %" in line for line in lines)

    saved = json.loads(json.dumps(soak_bench._finite(record)))
    assert saved["summary"]["critical_paged"] == 3
    assert len(saved["incidents"]) == 5 and saved["quiet_tenants"]
    assert saved["settings"]["rules_file"].endswith("anomaly-rules.yml")


def test_a_run_shows_only_the_flags_it_pushed() -> None:
    """The progress line of a run lists what that run flagged: the previous run's flags,
    pushed a minute earlier, and the next run's are not shown with it (they were, twice)."""
    from bench.soak.watch import Flag, Run, flags_of

    run = Run(finished_at=1000.0, duration_seconds=2.0, series=10.0, anomalies=1.0)
    flags = [
        Flag(940.5, "org-01", "ai_cost", 0.6),  # the run a minute before
        Flag(998.9, "org-01", "ai_cost", 0.7),  # this run's push
        Flag(999.6, "org-02", "latency_p95", 0.9),
        Flag(1059.0, "org-01", "ai_cost", 0.8),  # the next run
    ]
    assert [(f.tenant, f.pushed_at) for f in flags_of(run, flags)] == [
        ("org-01", 998.9),
        ("org-02", 999.6),
    ]
    unknown = Run(finished_at=1000.0, duration_seconds=math.nan, series=10.0, anomalies=1.0)
    assert len(flags_of(unknown, flags)) == 2
