"""A forecast metric written plainly as a rolling sum (``increase(x[1d])``, no ``rate:``) is
forecast in rate mode from the rate its query implies, on a real Prometheus: exactly as with
the README's ``rate:`` recipe, read per tenant batch without mixing tenants, kept between runs
like any stored forecast; a rolling window without a rate is said once per run."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from anomaly_lab import synth

from anomaly.config import Config, load_config
from anomaly.io.prometheus import PrometheusSource
from anomaly.job.metric import score_metric
from anomaly.job.report import MetricOutcome
from anomaly.job.run import run_once
from tests.conftest import write_config
from tests.job.conftest import World
from tests.job.test_warm import _outcome, _spied_run

DAY = 86400.0
SPEND = "sum by (organization_id) (increase(processaudit_ai_cost_usd_total[1d]))"
RATE = synth.QUERIES["ai_cost"]  # what the spend's rate is derived as, text for text


def _config(
    world: World, path: Path, forecast: dict[str, Any], *, with_rate: bool = True, **top: Any
) -> Config:
    """The budget forecast of the shipped config with ``forecast`` keys instead of its own
    (beside the ``ai_cost`` rate metric unless not ``with_rate``)."""
    path.mkdir(parents=True, exist_ok=True)
    spend = {
        "name": "ai_spend_24h",
        "query": SPEND,
        "lookback": "10d",
        "detect": False,
        "forecast": {"horizon": "24h", "threshold": 100, **forecast},
    }
    rate = [{"name": "ai_cost", "query": RATE}] if with_rate else []
    return load_config(
        write_config(path / "config.yaml", world.stack, metrics=[*rate, spend], health={}, **top)
    )


def _forecast(config: Config, now: float, tenants: list[str] | None = None) -> MetricOutcome:
    mc = config.metric("ai_spend_24h")
    with PrometheusSource(config.prometheus) as source:
        return score_metric(config, mc, now=now, source=source, store=None, tenants=tenants)


def test_a_rolling_sum_configured_plainly_is_forecast_in_rate_mode(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    end = world.dataset.end
    derived = _config(world, tmp_path / "derived", {}, with_rate=False)
    named = _config(world, tmp_path / "named", {"rate": "ai_cost", "window": "1d"})
    plain = _config(world, tmp_path / "plain", {"rate": False})
    fcc = derived.metric("ai_spend_24h").forecast
    assert fcc is not None and (fcc.mode, fcc.rate, fcc.rate_query) == ("derived", None, RATE)

    reads: list[tuple[str, float]] = []
    query_range = PrometheusSource.query_range

    def spy(self: PrometheusSource, query: str, start: float, end_: float, step: float) -> Any:
        reads.append((query, end_ - start))
        return query_range(self, query, start, end_, step)

    monkeypatch.setattr(PrometheusSource, "query_range", spy)
    got = _forecast(derived, end)
    # The derived rate is an internal series of its own, read over the forecast's lookback.
    assert [q for q, _ in reads] == [SPEND, RATE] and reads[1][1] >= 10 * DAY - 300
    want, old = _forecast(named, end), _forecast(plain, end)
    assert got.forecast is not None and want.forecast is not None and old.forecast is not None
    assert got.n_series == 4 and got.forecast.valid.all()
    # Rate mode (the weight of its additive trend is rate mode's alone), the very forecast of
    # the README's recipe.
    assert got.forecast.additive is not None and old.forecast.additive is None
    np.testing.assert_array_equal(got.forecast.value, want.forecast.value)
    np.testing.assert_array_equal(got.forecast.upper, want.forecast.upper)
    np.testing.assert_array_equal(got.breach_seconds, want.breach_seconds)
    assert not np.allclose(got.forecast.value, old.forecast.value)


def test_a_batch_of_tenants_reads_its_own_rates_and_gets_their_forecasts(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    end = world.dataset.end
    config = _config(world, tmp_path, {}, with_rate=False)
    whole = _forecast(config, end)
    tenants = sorted(world.dataset.tenants)
    batch = [tenants[2], tenants[0]]
    reads: list[str] = []
    query_range = PrometheusSource.query_range

    def spy(self: PrometheusSource, query: str, start: float, end_: float, step: float) -> Any:
        reads.append(query)
        return query_range(self, query, start, end_, step)

    monkeypatch.setattr(PrometheusSource, "query_range", spy)
    part = _forecast(config, end, tenants=batch)
    assert len(reads) == 2 and all(
        f'organization_id=~"{tenants[0]}|{tenants[2]}"' in q for q in reads
    )
    assert part.frame is not None and whole.frame is not None
    assert part.forecast is not None and whole.forecast is not None
    column = {k.tenant: j for j, k in enumerate(whole.frame.keys)}
    for j, key in enumerate(part.frame.keys):
        np.testing.assert_allclose(
            part.forecast.value[:, j], whole.forecast.value[:, column[key.tenant]], rtol=1e-12
        )


def test_a_derived_forecast_is_stored_and_its_rate_read_once_with_its_metric(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Beside ``ai_cost``, whose query is the derived rate, one read per run serves both (the
    longer lookback); a warm run counts down to the stored forecast's breach from the newest
    rows only, as with ``rate: ai_cost``."""
    config = _config(world, tmp_path, {})
    fcc = config.metric("ai_spend_24h").forecast
    assert fcc is not None and (fcc.mode, fcc.rate) == ("derived", "ai_cost")
    end = world.dataset.end
    cold_report, cold = _spied_run(config, end - 600.0, monkeypatch)
    assert len(cold["ai_cost"]) == 1 and cold["ai_cost"][0] >= 10 * DAY - 300, cold
    warm_report, warm = _spied_run(config, end, monkeypatch)
    assert warm["ai_spend_24h"][0] <= 2 * 3600 and warm["ai_cost"][0] <= DAY + 2 * 3600, warm
    stored = _outcome(cold_report, "ai_spend_24h").forecast
    kept = _outcome(warm_report, "ai_spend_24h").forecast
    assert stored is not None and kept is not None and stored.guard is not None
    np.testing.assert_array_equal(kept.value, stored.value)
    # Whatever the run that made it knew of it, the stored forecast knows too.
    assert stored.additive is not None and kept.additive is not None
    np.testing.assert_array_equal(kept.guard, stored.guard)
    np.testing.assert_array_equal(kept.additive, stored.additive)


def test_a_rolling_window_without_a_rate_is_said_once_per_run(
    world: World, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    peak = {
        "name": "queue_peak",
        "query": "max by (organization_id) (max_over_time(processaudit_queue_depth[1d]))",
        "detect": False,
        "forecast": {"horizon": "6h", "threshold": 1000},
    }
    config = load_config(
        write_config(
            tmp_path / "config.yaml",
            world.stack,
            metrics=[{"name": "ai_cost", "query": RATE}, peak],
            health={},
            scale={"batch_series": 2, "workers": 1},  # two batches of two tenants
        )
    )
    with caplog.at_level(logging.WARNING, logger="anomaly"):
        report = run_once(config, now=world.dataset.end)
    assert report.batches == 2
    said = [r.getMessage() for r in caplog.records if "queue_peak" in r.getMessage()]
    assert said == [
        "metric queue_peak: forecast plainly, so it lags its rolling window: rolling window "
        "max_over_time(processaudit_queue_depth[1d]) has no rate (forecast.rate can name the "
        "metric that is its rate)"
    ]
