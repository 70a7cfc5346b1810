"""Sparse counts judged as counts: a few events more than usual at a quiet hour are no
anomaly, a burst is."""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
import pytest

from anomaly.models.counts import band_edges, count_unit, norm_isf, tail_z
from anomaly.models.scoring import AnomalyModel

STEP = 300.0
#: 2026-11-02 00:00 UTC, a Monday.
_MONDAY = 1793577600.0


def _poisson_tail(x: int, lam: float, upper: bool) -> float:
    """P(X >= x) (upper) or P(X <= x) of a Poisson of ``lam``, summed directly."""
    pmf = [math.exp(-lam) * lam**k / math.factorial(k) for k in range(x + 1)]
    return 1.0 - sum(pmf[:-1]) if upper else sum(pmf)


@pytest.mark.parametrize(("x", "lam"), [(3, 0.7), (5, 2.0), (12, 0.7), (0, 10.0), (2, 10.0)])
def test_tail_z_is_the_normal_quantile_of_the_poisson_tail(x: int, lam: float) -> None:
    upper = x > lam
    p = _poisson_tail(x, lam, upper)
    expected = NormalDist().inv_cdf(1 - p) if upper else -NormalDist().inv_cdf(1 - p)
    assert tail_z(np.array([float(x)]), np.array([lam]))[0] == pytest.approx(expected, abs=1e-6)


def test_norm_isf_matches_the_standard_library() -> None:
    p = np.array([0.5, 0.2, 0.025, 1e-3, 1e-9, 0.9, 0.999])
    want = [NormalDist().inv_cdf(1 - x) for x in p]
    np.testing.assert_allclose(norm_isf(p), want, atol=1e-7)


def test_count_unit_reads_counts_and_nothing_else() -> None:
    rng = np.random.default_rng(1)
    events = rng.poisson(0.8, size=(2000, 1)).astype(float)
    # increase() over an hour: each window extrapolated by its own factor of a few percent.
    extrapolated = events * rng.choice([60 / 59, 61 / 60.5], size=events.shape)
    continuous = np.abs(rng.normal(1.0, 0.8, size=(2000, 1)))
    continuous[::20] = 0.0
    signed = events - 0.5 * (events > 0)
    signed[::7] = -1.0
    busy = rng.poisson(40.0, size=(2000, 1)).astype(float)  # a count with no zeros
    unit = count_unit(np.hstack([events, extrapolated, continuous, signed, busy]))
    assert unit[0] == pytest.approx(1.0)
    assert unit[1] == pytest.approx(60 / 59, rel=0.01)
    assert list(unit[2:]) == [0.0, 0.0, 0.0]


def test_band_edges_hold_the_counts_the_tails_allow() -> None:
    lo, hi = band_edges(np.array([[0.7, 10.0, 30.0]]), np.array([5.0, 5.0, 5.0]))
    # Above: the first count whose upper tail reaches 5 sigmas lies just beyond the edge.
    for lam, edge in zip((0.7, 10.0, 30.0), hi[0], strict=True):
        assert tail_z(np.array([edge + 0.5]), np.array([lam]))[0] >= 5.0
        assert tail_z(np.array([edge - 0.5]), np.array([lam]))[0] < 5.0
    # Below: at a mean of 10 even no event at all is within 5 sigmas; at 30, 6 events are not.
    assert lo[0, 1] == -0.5
    assert tail_z(np.array([lo[0, 2] - 0.5]), np.array([30.0]))[0] <= -5.0
    assert tail_z(np.array([lo[0, 2] + 0.5]), np.array([30.0]))[0] > -5.0


def _failures(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Eight days of a failure counter read as ``increase(...[1h])`` every 5 minutes: Poisson
    failures, 0.7 an hour at night, 3 an hour by day, per tenant."""
    rng = np.random.default_rng(seed)
    minutes = np.arange(_MONDAY - 3600.0, _MONDAY + 8 * 86400.0, 60.0)
    hours = np.mod(minutes / 3600.0, 24.0)
    rate = np.where((hours > 8) & (hours < 18), 3.0, 0.7) / 60.0
    per_minute = rng.poisson(np.repeat(rate[:, None], 6, axis=1))
    total = np.cumsum(per_minute, axis=0)
    times = np.arange(_MONDAY, _MONDAY + 8 * 86400.0, STEP)
    idx = np.searchsorted(minutes, times)
    hour_ago = np.searchsorted(minutes, times - 3600.0)
    return times, (total[idx] - total[hour_ago]).astype(float) * 60 / 59


def test_a_few_failures_at_a_quiet_hour_are_no_anomaly_and_a_burst_is() -> None:
    times, values = _failures(3)
    night = np.flatnonzero(np.mod(times / 3600.0, 24.0) == 3.0)[-1]  # 03:00 on the last day
    times, values = times[: night + 1], values[: night + 1]
    model = AnomalyModel(step_seconds=STEP, use_iforest=False).fit(times[:-12], values[:-12])
    assert np.all(model.seasonal_.count_unit_ > 0)
    few = values.copy()
    few[-12:] = 3 * 60 / 59  # three failures in the last hour, where 0.7 are usual
    burst = values.copy()
    burst[-12:] = 20 * 60 / 59
    assert not model.score(times, few).is_anomaly[-1].any()
    result = model.score(times, burst)
    assert result.is_anomaly[-1].all()
    assert np.all(burst[-1] > result.upper[-1])
    assert np.all(few[-1] <= result.upper[-1])
