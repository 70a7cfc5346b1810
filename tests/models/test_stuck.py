"""The stuck-value evidence: a collapse of the point-to-point variation, exact or by rounding."""

from __future__ import annotations

import numpy as np

from anomaly.models.scoring import AnomalyModel
from anomaly.models.seasonal import FEATURE_NAMES, SeasonalBaseline

STEP = 300.0
#: 2026-01-05 00:00 UTC, a Monday.
_MONDAY = 1767571200.0
_STUCK = FEATURE_NAMES.index("stuck")


def _times(days: float, end_hour: float) -> np.ndarray:
    end = _MONDAY + 14 * 86400 + end_hour * 3600
    n_t = int(days * 86400 / STEP)
    return end - STEP * np.arange(n_t)[::-1]


def _shape(t: np.ndarray) -> np.ndarray:
    hours = np.mod(t / 3600.0, 24.0)
    return 1.0 + 0.6 * np.sin(2 * np.pi * (hours - 8.0) / 24.0)


def _noisy_rate(rng: np.random.Generator, t: np.ndarray, n_s: int) -> tuple[np.ndarray, np.ndarray]:
    level = 0.0015 * rng.uniform(0.5, 2.0, n_s)
    expected = _shape(t)[:, None] * level
    return expected * (1.0 + 0.08 * rng.standard_normal((t.size, n_s))), expected


def test_a_rate_alternating_by_rounding_for_40_minutes_is_flagged() -> None:
    # A spend counter rising at a constant rate reads, through rate() and float rounding,
    # 0.001377, 0.0013773, 0.001377, ...: no exact repeat, but no variation either.
    rng = np.random.default_rng(7)
    t = _times(8.0, end_hour=14.0)
    values, expected = _noisy_rate(rng, t, 8)
    held = expected[-9]
    for i in range(1, 9):  # the newest 8 rows (40 minutes) of the first four series
        values[-i, :4] = np.where(i % 2, held, held * (1 + 2e-4))[:4]
    assert not np.any(values[-8:, :4][1:] == values[-8:, :4][:-1])
    result = AnomalyModel().fit(t, values).score(t, values)
    assert result.is_anomaly[-1].tolist() == [True] * 4 + [False] * 4
    # It is the stuck evidence that fires, not the level (the value is the expected one).
    model = SeasonalBaseline().fit(t, values)
    feats = model.features(t[-40:], values[-40:])
    assert np.all(feats[-1, _STUCK, :4] >= 25.0)
    assert np.all(np.abs(feats[-1, 0, :4]) < 3.0)


def test_exact_repeats_are_still_flagged() -> None:
    rng = np.random.default_rng(11)
    t = _times(8.0, end_hour=11.0)
    values, _ = _noisy_rate(rng, t, 6)
    values[-8:, :3] = values[-9, :3]
    result = AnomalyModel().fit(t, values).score(t, values)
    assert result.is_anomaly[-1].tolist() == [True] * 3 + [False] * 3


def test_a_zero_run_at_night_of_a_sparse_series_is_not_flagged() -> None:
    # A sparse failure count: zero for hours every night in training, so a zero run at night
    # is routine; a value held during the day is not.
    rng = np.random.default_rng(5)
    t = _times(8.0, end_hour=3.0)
    hours = np.mod(t / 3600.0, 24.0)
    mean = np.where((hours >= 22) | (hours < 6), 0.01, 3.0)
    n_s = 12
    values = rng.poisson(mean[:, None], (t.size, n_s)).astype(np.float64)
    values[-24:] = 0.0  # the newest two hours: a run of zeros, at night
    model = AnomalyModel().fit(t, values)
    result = model.score(t, values)
    assert not result.is_anomaly[-1].any()
    feats = model.seasonal_.features(t[-40:], values[-40:])
    assert np.all(feats[-1, _STUCK] < 25.0)


def test_a_series_that_stops_reporting_is_flagged_where_it_always_reports() -> None:
    # A p95 read off histogram buckets has no value when no request came: gone for 10
    # minutes at an hour it always reported, it is out; a series that is routinely absent at
    # night is not flagged for being absent at night.
    rng = np.random.default_rng(5)
    t = _times(8.0, end_hour=14.0)
    values, _ = _noisy_rate(rng, t, 6)
    hours = np.mod(t / 3600.0, 24.0)
    values[(hours >= 13.0) & (hours < 15.0), 3:] = np.nan  # the last three: absent 13-15 h daily
    values[-2:, :] = np.nan  # everyone absent for the newest two rows
    values[-2:, 2] = values[-3, 2] * np.array([1.02, 0.97])  # but the third reports on
    result = AnomalyModel().fit(t, values).score(t, values)
    assert result.is_anomaly[-1].tolist() == [True, True, False, False, False, False]
    one_row = AnomalyModel().fit(t[:-1], values[:-1]).score(t[:-1], values[:-1])
    assert not one_row.is_anomaly[-1, :2].any()  # one missing row is not an outage yet


def test_heavy_tailed_single_points_are_not_flagged_but_a_level_shift_is() -> None:
    # A p95 that jumps for single points every day (the quantile crossing a bucket bound) is
    # not an incident when it does it once more; the same series shifting for an hour is.
    rng = np.random.default_rng(9)
    t = _times(8.0, end_hour=14.0)
    values, expected = _noisy_rate(rng, t, 6)
    values = expected * (1.0 + 0.01 * rng.standard_normal(values.shape))
    jumps = rng.random(values.shape) < 0.015
    values = np.where(jumps, expected * 1.3, values)
    values[-13:-1, :] = expected[-13:-1] * (1.0 + 0.01 * rng.standard_normal((12, 6)))
    values[-1, :3] = expected[-1, :3] * 1.3  # one more jump
    values[-12:, 3:] = expected[-12:, 3:] * 1.3  # an hour of it
    result = AnomalyModel().fit(t, values).score(t, values)
    assert result.is_anomaly[-1].tolist() == [False] * 3 + [True] * 3


def test_a_series_gone_for_more_than_a_day_is_no_longer_flagged() -> None:
    rng = np.random.default_rng(6)
    t = _times(9.0, end_hour=14.0)
    values, _ = _noisy_rate(rng, t, 4)
    values[-(int(86400 / STEP) + 2) :, :2] = np.nan  # a tenant that left a day ago
    values[-3:, 2] = np.nan  # one that stopped 15 minutes ago
    model = AnomalyModel().fit(t[:-400], values[:-400])
    result = model.score(t, values)
    assert result.is_anomaly[-1].tolist() == [False, False, True, False]


def _pool_gauge(rng: np.random.Generator, t: np.ndarray, n_s: int) -> np.ndarray:
    """Connections in use: a small integer gauge around 10 (noise sd 2.5): a value repeats
    every few steps by chance."""
    expected = 10.0 * _shape(t)[:, None] * np.ones(n_s)
    return np.maximum(np.rint(expected + 2.5 * rng.standard_normal((t.size, n_s))), 0.0)


def test_a_small_integer_gauge_held_for_40_minutes_is_flagged() -> None:
    # About 2 nats a repeat: 40 minutes held (8 rows) is some 15 nats, short of the general
    # 25, but beyond the runs of most such gauges' own week.
    rng = np.random.default_rng(5)
    t = _times(8.0, end_hour=15.0)
    values = _pool_gauge(rng, t, 40)
    held = values.copy()
    held[-8:, :20] = held[-9, :20]
    model = AnomalyModel(use_iforest=False).fit(t[:-8], values[:-8])
    flagged = model.score(t, held).is_anomaly[-1]
    assert flagged[:20].mean() >= 0.6  # at 25 nats for all: 4 of 20, by their level
    assert not flagged[20:].any()
    # A hold of 15 minutes is no flatline.
    short = values.copy()
    short[-3:, :20] = short[-4, :20]
    assert not model.score(t, short).is_anomaly[-1].any()
    # Other weeks of the same gauges reach the narrowed thresholds by chance far less often
    # than once in 1,000 series-runs (a run every 5 minutes).
    limit = model.rules_.stuck_threshold_nats * model.rules_.calibration_[5]
    over = [
        model.seasonal_.features(t, _pool_gauge(np.random.default_rng(seed), t, 40))[:, _STUCK]
        >= limit
        for seed in (6, 7, 8)
    ]
    assert np.mean(over) < 1e-4
