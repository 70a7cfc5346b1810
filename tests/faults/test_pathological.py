"""Pathological series through the whole job, from a real Prometheus to a real Pushgateway:
constant and all-zero series, long gaps and a gap at the newest point, a new tenant with five
points, NaN/±Inf samples, values near 1e300, a 1e300 glitch, counters that reset (read raw and
through ``rate``), and two series whose label sets coincide once ``__name__`` is dropped.

Each is scored or skipped with a logged reason; the run never crashes and never pushes a NaN
or an infinite score (only ``anomaly_forecast_breach_seconds`` may be +Inf, by definition).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.faults.conftest import Result, samples, snapshot
from tests.faults.world import (
    COUNTER_TENANTS,
    PATHO_METRICS,
    PATHO_TENANTS,
    TENANT,
    World,
    config_for,
)

pytestmark = pytest.mark.e2e

JOB = "faults_pathological"


def _run(world: World, tmp: Path, anomaly: Callable[..., Result]) -> Result:
    config = config_for(tmp / "config.yaml", world, job=JOB, metrics=PATHO_METRICS)
    return anomaly("run", "--once", "--config", str(config), "--at", str(world.end))


def test_pathological_series_are_scored_or_skipped_with_a_reason(
    world: World, tmp_path: Path, anomaly: Callable[..., Result]
) -> None:
    result = _run(world, tmp_path, anomaly)
    assert result.code == 0, result.err[-3000:]
    assert "Traceback" not in result.err
    snap = snapshot(world.stack.pushgateway_url, JOB)

    # Nothing non-finite reaches the Pushgateway; scores are in [0, 1], flags are 0/1.
    for series in snap.values():
        for (name, _), value in series.items():
            if name == "anomaly_forecast_breach_seconds":
                assert not math.isnan(value) and value >= 0, (name, value)
            else:
                assert math.isfinite(value), (name, value)
    scores = samples(snap, "anomaly_score")
    assert scores and all(0.0 <= v <= 1.0 for _, v in scores)
    assert all(v in (0.0, 1.0) for _, v in samples(snap, "anomaly_detected"))

    # Every pathological tenant is either scored or named in a warning that gives a reason.
    for metric, tenants in [
        ("patho", PATHO_TENANTS),
        ("patho_counter", COUNTER_TENANTS),
        ("patho_rate", COUNTER_TENANTS),
    ]:
        scored = {lab[TENANT] for lab, _ in scores if lab["metric"] == metric}
        for tenant in tenants:
            if tenant in scored:
                continue
            reasons = [
                line
                for line in result.err.splitlines()
                if f"metric {metric}:" in line and f'{TENANT}="{tenant}"' in line
            ]
            assert reasons, f"{metric}/{tenant}: neither scored nor skipped with a reason"
            assert "not scored:" in reasons[0] or "skipping" in reasons[0], reasons

    # What must be scored: well-behaved history with a few bad samples, or a level of 1e300.
    scored_patho = {lab[TENANT] for lab, _ in scores if lab["metric"] == "patho"}
    assert {"nonfinite", "huge", "glitch", "twin"} <= scored_patho, scored_patho
    # A constant or all-zero series is scored too (about 0 while it stays put), so its
    # tenant keeps an anomaly_score for dashboards and absent() rules.
    for tenant in ("constant", "zeros"):
        (score,) = [v for lab, v in scores if lab["metric"] == "patho" and lab[TENANT] == tenant]
        assert score < 0.05, (tenant, score)
    # ... and what cannot be: no finite sample at all, or five points of history.
    assert {"all_nan", "newcomer"}.isdisjoint(scored_patho)
    assert {lab[TENANT] for lab, _ in scores if lab["metric"] == "patho_rate"} == set(
        COUNTER_TENANTS
    )

    # Two series with one label set (they differ only in __name__): the first is kept, the
    # second reported by the frame and counted as failed.
    assert [lab[TENANT] for lab, _ in scores if lab["metric"] == "patho_dup"] == ["twin"]
    assert "metric patho_dup: skipping series" in result.err
    assert "duplicate label set" in result.err
    (failed,) = [v for _, v in samples(snap, "anomaly_job_series_failed")]
    assert failed >= 1 + 2  # the duplicate, all_nan and newcomer at least

    # The 1e300 glitch is the newest point of an otherwise calm series: it is anomalous.
    (glitch,) = [v for lab, v in scores if lab["metric"] == "patho" and lab[TENANT] == "glitch"]
    assert glitch >= 0.5
