"""Seeded synthetic metrics with known injected anomalies, for detector tests.

Each series is ``expected(t)`` (daily business-hours shape, lower on UTC weekends) times or
plus noise, for six metric families seen in practice. Anomalies are injected at the END of
the window, so the newest point is inside them; a "past incident" (2-hour outage or level
shift 2-5 days before the end) can be put into the history of a clean series.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

STEP_SECONDS = 300.0
METRICS = ("request_rate", "latency", "error_ratio", "completion", "queue_depth", "ai_cost")
ANOMALIES = ("spike", "dip", "level_shift", "outage", "variance", "flatline", "drift")
#: 2026-01-05 00:00 UTC, a Monday.
_MONDAY = 1767571200.0


@dataclass(frozen=True)
class Series:
    """One synthetic series: ``values`` observed, ``expected`` noise-free, both (n_t,)."""

    metric: str
    values: np.ndarray
    expected: np.ndarray
    anomaly: str | None
    anomaly_rows: int


def make_times(rng: np.random.Generator, n_days: float = 7.0) -> np.ndarray:
    """A 5-minute grid of ``n_days`` ending at a random time of a random weekday.

    Returns
    -------
    ndarray of shape (n_t,)
    """
    n_t = int(round(n_days * 86400 / STEP_SECONDS))
    end = _MONDAY + 28 * 86400 + rng.integers(0, 7 * 288) * STEP_SECONDS
    return end - STEP_SECONDS * np.arange(n_t)[::-1]


def _business(times: np.ndarray, weekend_factor: float, phase_h: float) -> np.ndarray:
    hours = np.mod(times / 3600.0 - phase_h, 24.0)
    ramp_up = 1.0 / (1.0 + np.exp(-(hours - 8.5) * 1.8))
    ramp_down = 1.0 / (1.0 + np.exp((hours - 18.0) * 1.2))
    bump = ramp_up * ramp_down
    weekday = (np.floor(times / 86400).astype(np.int64) + 3) % 7
    return np.where(weekday >= 5, weekend_factor * bump, bump)


def make_series(
    rng: np.random.Generator,
    times: np.ndarray,
    metric: str,
    anomaly: str | None = None,
    past_incident: bool = False,
) -> Series:
    """One synthetic series of ``metric`` over ``times``, optionally with an anomaly at the end."""
    n_t = times.size
    bump = _business(times, rng.uniform(0.2, 0.6), rng.uniform(-2, 3))
    multiplicative = True
    if metric == "request_rate":
        level = 10 ** rng.uniform(0, 3)
        expected = level * (0.15 + bump)
        sigma = rng.uniform(0.05, 0.10)
    elif metric == "ai_cost":
        level = 10 ** rng.uniform(-2, 1)
        expected = level * (0.1 + bump)
        sigma = rng.uniform(0.08, 0.15)
    elif metric == "latency":
        expected = rng.uniform(0.2, 0.8) * (1.0 + 0.3 * bump)
        sigma = rng.uniform(0.10, 0.20)
    elif metric == "completion":
        expected = rng.uniform(0.9, 0.98) - 0.02 * bump
        sigma = rng.uniform(0.005, 0.015)
        multiplicative = False
    elif metric in ("error_ratio", "queue_depth"):
        multiplicative = False
        sigma = 0.0
        if metric == "error_ratio":
            expected = np.full(n_t, rng.uniform(0.001, 0.004))
        else:
            expected = rng.uniform(5, 40) * (0.01 + bump)
    else:
        raise ValueError(f"unknown metric {metric!r}")

    def draw(exp: np.ndarray, noise_factor: float = 1.0) -> np.ndarray:
        if metric == "error_ratio":
            requests = np.maximum(np.round(rng.uniform(300, 800) * (0.2 + bump[-exp.size :])), 1)
            ratio = rng.poisson(exp * requests) / requests
            return np.clip(exp + (ratio - exp) * noise_factor, 0, None)
        if metric == "queue_depth":
            counts = rng.poisson(exp).astype(np.float64)
            return np.clip(np.round(exp + (counts - exp) * noise_factor), 0, None)
        if multiplicative:
            return exp * np.exp(sigma * noise_factor * rng.standard_normal(exp.size))
        return np.clip(exp + sigma * noise_factor * rng.standard_normal(exp.size), 0, 1)

    values = draw(expected)
    if past_incident:
        start = n_t - int(rng.integers(2 * 288, 5 * 288))
        sl = slice(start, start + 24)
        if rng.random() < 0.5:
            values[sl] = 0.0
        else:
            values[sl] *= rng.choice([0.5, 1.5])

    rows = 0
    if anomaly == "spike":
        rows = int(rng.integers(1, 3))
        factor = rng.uniform(3, 5)
        if metric == "completion":
            values[-rows:] = expected[-rows:] * 0.6
        elif metric == "error_ratio":  # an incident: a few percent of requests fail
            values[-rows:] = rng.uniform(0.03, 0.1)
        elif metric == "queue_depth":
            values[-rows:] = np.round(expected[-rows:] * factor + 10)
        else:
            values[-rows:] = expected[-rows:] * factor
    elif anomaly == "dip":
        rows = int(rng.integers(1, 3))
        values[-rows:] = expected[-rows:] * rng.uniform(0.1, 0.3)
    elif anomaly == "level_shift":
        rows = int(rng.integers(12, 37))
        sign = rng.choice([-1.0, 1.0]) if metric != "completion" else -1.0
        factor = 1.0 + sign * rng.uniform(0.4, 0.6)
        values[-rows:] = draw(expected[-rows:] * factor)
    elif anomaly == "outage":
        rows = int(rng.integers(3, 25))
        values[-rows:] = 0.0
    elif anomaly == "variance":
        rows = int(rng.integers(12, 25))
        values[-rows:] = draw(expected[-rows:], noise_factor=rng.uniform(4, 6))
    elif anomaly == "flatline":
        rows = int(rng.integers(12, 37))
        values[-rows:] = values[-rows - 1]
    elif anomaly == "drift":
        rows = int(rng.integers(144, 289))
        ramp = np.linspace(0.0, rng.uniform(0.5, 1.0), rows)
        values[-rows:] = draw(expected[-rows:] * (1.0 + ramp))
    elif anomaly is not None:
        raise ValueError(f"unknown anomaly {anomaly!r}")
    return Series(metric, values, expected, anomaly, rows)


def make_panel(
    seed: int,
    n_series: int,
    anomaly: str | None = None,
    past_incident_share: float = 0.3,
    n_days: float = 7.0,
    metrics: tuple[str, ...] = METRICS,
    flatline_daytime: bool = True,
) -> tuple[np.ndarray, np.ndarray, list[Series]]:
    """A panel of ``n_series`` series on one grid, cycling through ``metrics``.

    For ``anomaly="flatline"`` the window ends in business hours (when the profile moves).

    Returns
    -------
    times : ndarray of shape (n_t,)
    values : ndarray of shape (n_t, n_series)
    series : list of Series
    """
    rng = np.random.default_rng(seed)
    times = make_times(rng, n_days)
    if anomaly == "flatline" and flatline_daytime:
        hour = np.mod(times[-1] / 3600.0, 24.0)
        times = times + (rng.uniform(11, 15) - hour) * 3600.0
        times = times - np.mod(times, STEP_SECONDS)
        weekday = (np.floor(times[-1] / 86400).astype(np.int64) + 3) % 7
        if weekday >= 5:
            times = times - (weekday - 4) * 86400.0
    series = [
        make_series(
            rng,
            times,
            metrics[j % len(metrics)],
            anomaly,
            past_incident=anomaly is None and rng.random() < past_incident_share,
        )
        for j in range(n_series)
    ]
    values = np.stack([s.values for s in series], axis=1)
    return times, values, series
