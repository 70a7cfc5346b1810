"""Zoo generators of plain metrics (gauges), which the job forecasts from their own values.

* ``disk_linear``: disk usage filling linearly with a daily log-rotation sawtooth, against 90 %;
  three disks cross during the runs, two come within 2-6 points without crossing.
* ``queue_exponential``: a queue backlog growing exponentially (doubling in 1-4 days) with a
  daily swing that scales with it, against 5,000 jobs; one steady queue, one growing slowly.
* ``ratio_floor``: a completion ratio declining exponentially towards a floor, against 0.8
  (``direction: below``); three floors lie under 0.8, two just above it, reached fast: a
  straight line through their recent decline would cross.
* ``step_change``: memory in use stepping up by 30-60 % (one down by 25-40 %) between 8 h
  before the first run and 14 h after it, then flat at 72-85 % of the 64 GiB threshold: the
  step must not be extrapolated.
* ``weekly_flat``: requests per second with a weekly shape (each host's own rest days and UTC
  offset) and no trend, peaking at 65-80 % of the threshold; the runs start on a Sunday, so
  the week's first climb is among them. MASE against the naive forecast a week back.

Every series keeps its own UTC offset (half and quarter hours among them) for its daily shape.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import numpy as np

from bench.forecast_zoo import (
    DAY,
    HORIZON_SECONDS,
    HOUR,
    LASTING_SECONDS,
    OFFSETS,
    Case,
    Generator,
    grid,
    origin,
    rng_for,
)
from bench.forecast_zoo.shapes import (
    ar1,
    daily_shape,
    draw_crossing,
    local_hours,
    week_factor,
)


def breach_window(runs: np.ndarray) -> tuple[float, float]:
    """Where a crossing series' breach falls: 7-23 h after the first run (the 6 h before it
    are all runs)."""
    return float(runs[0] + 7 * HOUR), float(runs[0] + 23 * HOUR)


def _crossing(
    draw: Callable[[int], Callable[[float], np.ndarray]],
    n_cross: int,
    times: np.ndarray,
    runs: np.ndarray,
    rng: np.random.Generator,
    bounds: tuple[float, float],
    threshold: float,
    direction: str = "above",
) -> tuple[np.ndarray, np.ndarray]:
    """The truth of series ``0 .. n_cross - 1``, ``(n_t, n_cross)``, each crossing in the
    :func:`breach_window`, and their parameters ``(n_cross,)``; ``draw(j)`` draws series `j`'s
    curve of its parameter (:func:`~bench.forecast_zoo.shapes.draw_crossing`)."""
    truth, params = np.empty((times.size, n_cross)), np.empty(n_cross)
    for j in range(n_cross):
        curve, params[j] = draw_crossing(
            functools.partial(draw, j),
            times,
            breach_window(runs),
            rng,
            bounds,
            threshold,
            direction,
            after=runs[0],
            lasting_seconds=LASTING_SECONDS,
        )
        truth[:, j] = curve(params[j])
    return truth, params


def _judged(times: np.ndarray, runs: np.ndarray) -> np.ndarray:
    """Mask of the grid points a run's horizon reaches."""
    return np.asarray((times >= runs[0]) & (times <= runs[-1] + HORIZON_SECONDS))


def _utc(offset: float) -> str:
    sign = "+" if offset >= 0 else "-"
    h, m = divmod(round(abs(offset) * 60), 60)
    return f"UTC{sign}{h:02d}:{m:02d}"


def disk_linear(seed: int) -> Case:
    """Disk usage (%) filling linearly with a daily sawtooth; threshold 90 % above."""
    name, threshold = "disk_linear", 90.0
    rng = rng_for(seed, name)
    times, runs = grid(origin(seed, name))
    days = ((times - runs[0]) / DAY)[:, None]
    n, n_cross = 5, 3
    offsets = rng.choice(OFFSETS, n)
    hours = local_hours(times, offsets)
    rotation = rng.uniform(0.0, 24.0, n)  # local hour of the nightly log rotation
    amp = rng.uniform(1.0, 4.0, n)
    slope = np.concatenate([rng.uniform(4.0, 8.0, n_cross), rng.uniform(0.5, 3.0, n - n_cross)])

    def base(j: int) -> np.ndarray:
        saw = amp[j] * (((hours[:, j] - rotation[j]) % 24.0) / 24.0 - 0.5)
        return np.asarray(slope[j] * days[:, 0] + saw)

    def draw(j: int) -> Callable[[float], np.ndarray]:
        rotation[j] = rng.uniform(0.0, 24.0)
        column = base(j)
        return lambda p: column + p

    truth = np.empty((times.size, n))
    truth[:, :n_cross], _ = _crossing(draw, n_cross, times, runs, rng, (-150.0, 150.0), threshold)
    margin = rng.uniform(2.0, 6.0, n - n_cross)
    judged = _judged(times, runs)
    for k, j in enumerate(range(n_cross, n)):
        column = base(j)
        truth[:, j] = column + threshold - margin[k] - column[judged].max()
    noise = ar1(rng, times.size, n, 6.0, 0.25) + rng.normal(0, 0.1, truth.shape)
    values = np.clip(truth + noise, 0, 100)
    notes = tuple(
        f"fills {slope[j]:.1f} %/day, sawtooth {amp[j]:.1f} pts, {_utc(offsets[j])}"
        + ("" if j < n_cross else f", peaks {margin[j - n_cross]:.1f} pts under")
        for j in range(n)
    )
    return Case(
        name,
        seed,
        "max by (host) (disk_used_percent)",
        threshold,
        "above",
        times,
        values,
        truth,
        tuple(f"disk-{j}" for j in range(n)),
        notes,
        runs,
    )


def queue_exponential(seed: int) -> Case:
    """A queue backlog growing exponentially with a scaling daily swing; threshold 5,000."""
    name, threshold = "queue_exponential", 5000.0
    rng = rng_for(seed, name)
    times, runs = grid(origin(seed, name))
    days = (times - runs[0]) / DAY
    n, n_cross = 5, 3
    offsets = rng.choice(OFFSETS, n)
    hours = local_hours(times, offsets)
    peak_hour = rng.uniform(9.0, 17.0, n)
    floor, width = rng.uniform(0.3, 0.6, n), rng.uniform(2.0, 4.0, n)
    swing = rng.uniform(0.3, 0.7, n)
    doubling = np.concatenate([rng.uniform(1.0, 4.0, n_cross), [math.inf], rng.uniform(8, 15, 1)])
    growth = math.log(2.0) / doubling

    def log_base(j: int) -> np.ndarray:
        s = slice(j, j + 1)
        shape = daily_shape(hours[:, s], peak_hour[s], floor[s], width[s])[:, 0]
        return np.asarray(growth[j] * days + np.log1p(swing[j] * (shape - 1.0)))

    def draw(j: int) -> Callable[[float], np.ndarray]:
        peak_hour[j] = rng.uniform(9.0, 17.0)
        column = log_base(j)
        return lambda p: np.exp(column + p)

    truth = np.empty((times.size, n))
    truth[:, :n_cross], _ = _crossing(draw, n_cross, times, runs, rng, (-10.0, 20.0), threshold)
    peak = rng.uniform(0.5, 0.8, n - n_cross)
    judged = _judged(times, runs)
    for k, j in enumerate(range(n_cross, n)):
        column = log_base(j)
        truth[:, j] = np.exp(column + np.log(peak[k] * threshold) - column[judged].max())
    values = np.round(truth * np.exp(ar1(rng, times.size, n, 4.0, 0.04)))
    notes = tuple(
        f"doubles in {doubling[j]:.1f} d, swing {100 * swing[j]:.0f} %, {_utc(offsets[j])}"
        + ("" if j < n_cross else f", peaks at {100 * peak[j - n_cross]:.0f} %")
        for j in range(n)
    )
    return Case(
        name,
        seed,
        "sum by (queue) (queue_backlog_jobs)",
        threshold,
        "above",
        times,
        values,
        truth,
        tuple(f"queue-{j}" for j in range(n)),
        notes,
        runs,
    )


def ratio_floor(seed: int) -> Case:
    """A completion ratio declining towards a floor; threshold 0.8 below."""
    name, threshold = "ratio_floor", 0.8
    rng = rng_for(seed, name)
    times, runs = grid(origin(seed, name))
    n, n_cross = 5, 3
    offsets = rng.choice(OFFSETS, n)
    hours = local_hours(times, offsets)
    start_value = rng.uniform(0.94, 0.97, n)
    floor = np.concatenate(
        [rng.uniform(0.55, 0.72, n_cross), rng.uniform(0.825, 0.85, n - n_cross)]
    )
    tau_days = np.concatenate([rng.uniform(1.5, 4.0, n_cross), rng.uniform(0.4, 1.0, n - n_cross)])
    swing = rng.uniform(0.003, 0.01, n) * np.cos(2 * math.pi * (hours - rng.uniform(0, 24, n)) / 24)

    def curve(j: int, start: float) -> np.ndarray:
        since = np.clip(times - start, 0.0, None) / DAY
        decay = np.exp(-since / tau_days[j])
        return np.asarray(floor[j] + (start_value[j] - floor[j]) * decay + swing[:, j])

    def started_before(j: int, days: float) -> np.ndarray:
        return curve(j, runs[0] - days * DAY)

    # The decline starts `days_before` the first run; earlier means an earlier crossing.
    days_before = np.concatenate([np.zeros(n_cross), rng.uniform(0.3, 1.0, n - n_cross)])
    _, days_before[:n_cross] = _crossing(
        lambda j: functools.partial(started_before, j),
        n_cross,
        times,
        runs,
        rng,
        (-5.0, 12.0),
        threshold,
        "below",
    )
    truth = np.column_stack([curve(j, runs[0] - days_before[j] * DAY) for j in range(n)])
    values = np.clip(truth + ar1(rng, times.size, n, 3.0, 0.004), 0.0, 1.0)
    notes = tuple(
        f"declines to {floor[j]:.3f} (tau {tau_days[j]:.1f} d) from {days_before[j]:+.1f} d, "
        f"{_utc(offsets[j])}"
        for j in range(n)
    )
    return Case(
        name,
        seed,
        "min by (tenant) (completion_ratio)",
        threshold,
        "below",
        times,
        values,
        truth,
        tuple(f"tenant-{j}" for j in range(n)),
        notes,
        runs,
    )


def step_change(seed: int) -> Case:
    """Memory in use stepping up (one down) near the runs, then flat under 64 GiB."""
    name, threshold = "step_change", 64.0
    rng = rng_for(seed, name)
    times, runs = grid(origin(seed, name))
    n = 5
    offsets = rng.choice(OFFSETS, n)
    hours = local_hours(times, offsets)
    shape = daily_shape(
        hours, rng.uniform(9.0, 17.0, n), rng.uniform(0.3, 0.6, n), rng.uniform(2.0, 4.0, n)
    )
    swing = rng.uniform(0.1, 0.3, n)
    at = runs[0] + rng.uniform(-8.0, 14.0, n) * HOUR
    factor = np.concatenate([rng.uniform(1.3, 1.6, n - 1), rng.uniform(0.6, 0.75, 1)])
    ramp = np.clip((times[:, None] - at[None, :]) / 600.0, 0.0, 1.0)
    unit = (1.0 + swing * (shape - 1.0)) * (1.0 + (factor - 1.0) * ramp)
    peak = rng.uniform(0.72, 0.85, n)
    near = (times >= runs[0] - DAY) & (times <= runs[-1] + HORIZON_SECONDS)
    truth = unit * peak * threshold / unit[near].max(axis=0)
    values = truth * np.exp(ar1(rng, times.size, n, 3.0, 0.015))
    notes = tuple(
        f"steps x{factor[j]:.2f} at {(at[j] - runs[0]) / HOUR:+.1f} h, peaks at "
        f"{100 * peak[j]:.0f} %, {_utc(offsets[j])}"
        for j in range(n)
    )
    return Case(
        name,
        seed,
        "max by (pod) (memory_used_gib)",
        threshold,
        "above",
        times,
        values,
        truth,
        tuple(f"pod-{j}" for j in range(n)),
        notes,
        runs,
    )


def weekly_flat(seed: int) -> Case:
    """Requests per second with a weekly shape and no trend, under 1,000 (no breach)."""
    name, threshold = "weekly_flat", 1000.0
    rng = rng_for(seed, name)
    # A Sunday between 06:00 and Monday 05:00 UTC: the runs see some tenants' week begin.
    first = origin(0, name) - origin(0, name) % (7 * DAY) + 3 * DAY + (6 + seed * 7 % 24) * HOUR
    times, runs = grid(first)
    n = 5
    offsets = rng.choice(OFFSETS, n)
    hours = local_hours(times, offsets)
    rest = [((5, 6), (4, 5), (6,))[k] for k in rng.integers(0, 3, n)]
    strength = rng.uniform(0.3, 0.6, n)
    shape = daily_shape(
        hours, rng.uniform(10.0, 15.0, n), rng.uniform(0.2, 0.4, n), rng.uniform(2.5, 4.5, n)
    )
    week = np.column_stack(
        [week_factor(hours[:, [j]], rest[j], strength[[j]])[:, 0] for j in range(n)]
    )
    unit = shape * week
    peak = rng.uniform(0.65, 0.8, n)
    truth = unit * peak * threshold / unit.max(axis=0)
    values = truth * np.exp(ar1(rng, times.size, n, 12.0, 0.03) + rng.normal(0, 0.02, truth.shape))
    notes = tuple(
        f"rest days {','.join('MTWTFSS'[d] for d in rest[j])} at -{100 * strength[j]:.0f} %, "
        f"peaks at {100 * peak[j]:.0f} %, {_utc(offsets[j])}"
        for j in range(n)
    )
    return Case(
        name,
        seed,
        "sum by (host) (rate(http_requests_total[5m]))",
        threshold,
        "above",
        times,
        values,
        truth,
        tuple(f"host-{j}" for j in range(n)),
        notes,
        runs,
        season_seconds=7 * DAY,
    )


GENERATORS = (
    Generator("disk_linear", disk_linear, "disk % filling linearly, daily sawtooth, 90 % above"),
    Generator("queue_exponential", queue_exponential, "backlog growing exponentially, 5,000 above"),
    Generator("ratio_floor", ratio_floor, "ratio declining towards a floor, 0.8 below"),
    Generator("step_change", step_change, "a step to a flat level under 64 GiB: no breach"),
    Generator("weekly_flat", weekly_flat, "weekly shape, no trend, under 1,000: no breach"),
)
