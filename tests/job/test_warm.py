"""A run whose stored models are fresh reads only the rows it scores (about a day) of each
detected metric, and scores them as a read of the whole lookback would."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from anomaly.config import load_config
from anomaly.io.prometheus import PrometheusSource
from anomaly.job.report import MetricOutcome, RunReport
from anomaly.job.run import run_once
from anomaly.models.forecast import breach_seconds
from tests.conftest import write_config
from tests.job.conftest import World

DAY = 86400.0


def _spied_run(
    config: Any, now: float, monkeypatch: pytest.MonkeyPatch
) -> tuple[RunReport, dict[str, list[float]]]:
    """A run, and the spans (seconds) of the range queries it made, by metric name."""
    spans: list[tuple[str, float]] = []
    query_range = PrometheusSource.query_range

    def spy(self: PrometheusSource, query: str, start: float, end: float, step: float) -> Any:
        spans.append((query, end - start))
        return query_range(self, query, start, end, step)

    with monkeypatch.context() as m:
        m.setattr(PrometheusSource, "query_range", spy)
        report = run_once(config, now=now)
    by_metric: dict[str, list[float]] = {}
    for mc in config.metrics:
        by_metric[mc.name] = [span for q, span in spans if q == mc.query]
    return report, by_metric


def _by_series(report: RunReport) -> dict[tuple[str, Any], tuple[float, ...]]:
    return {
        (f.metric, f.key): (f.score, float(f.is_anomaly), f.expected, f.lower, f.upper, f.recent)
        for f in report.findings
    }


def _outcome(report: RunReport, name: str) -> MetricOutcome:
    return next(o for o in report.outcomes if o.metric.name == name)


def test_a_warm_run_reads_a_day_and_scores_as_a_whole_read(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = load_config(write_config(tmp_path / "config.yaml", world.stack))
    end = world.dataset.end
    cold_report, cold = _spied_run(config, end - 600.0, monkeypatch)  # fits, forecasts, stores
    assert all(spans and min(spans) >= 7 * DAY - 300 for spans in cold.values()), cold

    warm, spans = _spied_run(config, end, monkeypatch)
    assert all(o.refitted == 0 for o in warm.outcomes)
    for name, seen in spans.items():
        assert len(seen) == 1, (name, seen)
        if name == "ai_spend_24h":  # forecast only, its forecast stored: the rows it reports
            assert seen[0] <= 2 * 3600, (name, seen)
        else:  # a day of history and the last hour scored (ai_cost too: its forecast is kept)
            assert DAY <= seen[0] <= DAY + 2 * 3600, (name, seen)

    # The stored forecast, its breach counted down from this run's time and newest values.
    stored, fc = _outcome(cold_report, "ai_spend_24h").forecast, _outcome(warm, "ai_spend_24h")
    assert stored is not None and fc.forecast is not None and fc.frame is not None
    np.testing.assert_array_equal(fc.forecast.value, stored.value)
    fcc = config.metric("ai_spend_24h").forecast
    assert fcc is not None and fcc.threshold is not None
    expected = breach_seconds(
        stored, fc.frame.values[-1], fcc.threshold, fcc.direction, now=float(fc.frame.times[-1])
    )
    np.testing.assert_array_equal(fc.breach_seconds, expected)

    monkeypatch.setattr("anomaly.job.metric._read_warm", lambda *a, **k: None)
    whole, spans = _spied_run(config, end, monkeypatch)
    assert all(min(s) >= 7 * DAY - 300 for s in spans.values())
    a, b = _by_series(warm), _by_series(whole)
    assert a.keys() == b.keys() and len(a) == 4 * 6
    np.testing.assert_allclose(np.array([a[k] for k in a]), np.array([b[k] for k in a]))
    assert [h.score for h in warm.health] == [h.score for h in whole.health]


def test_a_forecast_is_made_anew_once_its_refresh_is_past(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = load_config(write_config(tmp_path / "config.yaml", world.stack))
    fcc = config.metric("ai_spend_24h").forecast
    assert fcc is not None and fcc.refresh_seconds == 900.0  # forecast.refresh's default
    end = world.dataset.end
    run_once(config, now=end - 900.0)
    report, spans = _spied_run(config, end, monkeypatch)
    assert spans["ai_spend_24h"][0] >= 10 * DAY - 300 and spans["ai_cost"][0] >= 10 * DAY - 300
    fc = _outcome(report, "ai_spend_24h").forecast
    assert fc is not None and fc.now == math.floor(end)


def test_a_new_series_in_a_warm_run_reads_the_whole_lookback_to_fit_it(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A model stored without one tenant (fitted by a run that did not see it): the next run
    finds the tenant in the day it reads, reads the lookback again, and fits that series."""
    config = load_config(write_config(tmp_path / "config.yaml", world.stack))
    end = world.dataset.end
    tenants = sorted(world.dataset.tenants)
    hidden = tenants[-1]
    query_range = PrometheusSource.query_range

    def without(self: PrometheusSource, query: str, start: float, end_: float, step: float) -> Any:
        return [
            r
            for r in query_range(self, query, start, end_, step)
            if r.labels.get("organization_id") != hidden
        ]

    with monkeypatch.context() as m:
        m.setattr(PrometheusSource, "query_range", without)
        run_once(config, now=end - 600.0)
    report, spans = _spied_run(config, end, monkeypatch)
    request_rate = next(o for o in report.outcomes if o.metric.name == "request_rate")
    assert request_rate.refitted == 1 and request_rate.n_series == 4
    assert spans["request_rate"][0] <= DAY + 2 * 3600 and spans["request_rate"][1] >= 7 * DAY - 300
