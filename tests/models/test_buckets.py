"""Quantiles read off histogram buckets (``histogram_quantile``): noise that jumps between
bucket bounds where traffic is thin, judged per time of day."""

from __future__ import annotations

import math

import numpy as np

from anomaly.models.scoring import AnomalyModel

STEP = 300.0
#: 2026-01-05 00:00 UTC, a Monday.
_MONDAY = 1767571200.0
BOUNDS = (0.25, 0.5, 1.0, 2.5, math.inf)


def _p95(counts: np.ndarray) -> np.ndarray:
    """Prometheus' ``histogram_quantile(0.95, ...)`` of bucket counts (n_t, n_buckets), not
    cumulative: linear within the bucket that holds the rank, the last finite bound for the
    +Inf bucket, NaN without requests."""
    cum = np.cumsum(counts, axis=1)
    total = cum[:, -1]
    rank = 0.95 * total
    b = np.argmax(cum >= rank[:, None], axis=1)
    lower = np.where(b == 0, 0.0, np.array((0.0,) + BOUNDS[:-1])[b])
    upper = np.array(BOUNDS)[b]
    below = np.where(b == 0, 0.0, cum[np.arange(cum.shape[0]), np.maximum(b - 1, 0)])
    inside = counts[np.arange(cum.shape[0]), b]
    frac = np.where(inside > 0, (rank - below) / np.maximum(inside, 1), 0.0)
    value = np.where(np.isinf(upper), BOUNDS[-2], lower + (upper - lower) * frac)
    return np.where(total > 0, value, np.nan)


def _latency_p95(
    rng: np.random.Generator, t: np.ndarray, slow_from: float = math.inf
) -> np.ndarray:
    """A p95 of request latencies (log-normal, median 0.2 s) over 5-minute buckets; a few
    requests a step at night, hundreds by day; latencies twice as long from ``slow_from``."""
    hours = np.mod(t / 3600.0, 24.0)
    load = 3.0 + 400.0 * np.exp(-0.5 * ((hours - 13.0) / 3.0) ** 2)
    n = rng.poisson(load)
    median = np.where(t >= slow_from, 0.4, 0.2)
    edges = np.log(np.array(BOUNDS[:-1]))[None, :]
    cdf = 0.5 * (1.0 + np.vectorize(math.erf)((edges - np.log(median)[:, None]) / (0.6 * 2**0.5)))
    probs = np.diff(np.concatenate([np.zeros((t.size, 1)), cdf, np.ones((t.size, 1))], axis=1))
    counts = np.array([rng.multinomial(k, p) for k, p in zip(n, probs, strict=True)])
    return _p95(counts)


def _times(days: float, end_hour: float) -> np.ndarray:
    end = _MONDAY + 14 * 86400 + end_hour * 3600
    return end - STEP * np.arange(int(days * 86400 / STEP))[::-1]


def test_a_p95_that_doubled_by_day_is_seen_past_the_night_s_bucket_jumps() -> None:
    t = _times(8.0, end_hour=14.0)
    n_s = 16
    clean = np.stack([_latency_p95(np.random.default_rng(s), t) for s in range(n_s)], axis=1)
    slow = np.stack(
        [_latency_p95(np.random.default_rng(s), t, slow_from=t[-6]) for s in range(n_s)], axis=1
    )
    train_t, train = t[:-6], clean[:-6]
    bucketed = AnomalyModel(use_iforest=False, bucketed=True).fit(train_t, train)
    plain = AnomalyModel(use_iforest=False).fit(train_t, train)
    found = bucketed.score(t, slow, n_eval=6).is_anomaly.any(axis=0)
    assert found.mean() >= 0.9
    # One threshold for the day, set by the night's jumps, hides most of them.
    assert plain.score(t, slow, n_eval=6).is_anomaly.any(axis=0).mean() < found.mean()
    # The night's jumps are still no anomaly: another week of the same latencies.
    other = np.stack([_latency_p95(np.random.default_rng(100 + s), t) for s in range(n_s)], axis=1)
    assert bucketed.score_history(t, other).is_anomaly[-288:].mean() < 0.005
