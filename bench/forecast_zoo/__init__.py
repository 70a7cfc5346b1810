"""The forecast zoo: generated cases on which the forecast bench sets the product's forecaster
beside statsmodels' ETS and Theta.

Every generator makes one :class:`Case` per seed, deterministically: several series (hosts,
queues, tenants) on a 5-minute grid, ten days of history before the first of 24 hourly runs,
and a day after the last run for the truth. Each series has a noiseless twin (the data's law
served the same way, :attr:`Case.truth`): the breach time a forecaster aims at is where the
twin first crosses the threshold and stays crossed for 30 minutes, the rule
:func:`anomaly.models.forecast.breach_seconds` counts down to.

Rolling-sum cases keep the raw samples (:attr:`Case.raw`: counters and gauges at their scrape
interval) so that any query over them is served as Prometheus serves it
(:func:`bench.forecast_zoo.promql.serve`): the metric's query, the README recipe's rate
(:attr:`Case.recipe`) and the rate the job derives from the query
(:func:`bench.forecast_zoo.promql.job_mode`).

Each generator splits its seeds: ``tune_seeds`` may be looked at while the product is changed
(misses diagnosed, changes tried), ``measure_seeds`` only through the bench's table; the
measure side is the figure that counts. Never move a seed from measure to tune after looking.

Generators live in :mod:`.gauges` (plain metrics) and :mod:`.spend` (rolling sums of spend);
:func:`generators` lists them in report order, :mod:`.judge` runs and scores them.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from bench.forecast_zoo.promql import ForecastMode, Scrapes

STEP = 300.0
"""The query step: seconds between grid points."""
HOUR = 3600.0
DAY = 86400.0
HISTORY_SECONDS = 10 * DAY
"""What each run reads back (the shipped config's forecast lookback)."""
RUNS = 24
"""Hourly runs from the case's origin."""
HORIZON_SECONDS = DAY
LASTING_SECONDS = 1800.0
"""A breach counts once the series stays crossed this long (``breach_seconds``' default)."""
BASE_ORIGIN = 1_794_009_600.0
"""2026-11-06 00:00 UTC, a Friday: origins fall on the hours of the following week."""

#: UTC offsets the generators draw local clocks from (half and quarter hours among them).
OFFSETS = (-9.5, -8.0, -5.0, -3.5, 0.0, 1.0, 3.5, 5.5, 5.75, 8.0, 9.5, 10.5, 12.75)


@dataclass(frozen=True)
class Case:
    """One seed of one generator: the data, how the job reads it, and the answer key.

    Arrays are ``(n_t, n_series)`` on :attr:`times` unless said otherwise.
    """

    name: str
    seed: int
    query: str
    """The metric's query as the user writes it."""
    threshold: float
    direction: str
    """``above`` or ``below``: as ``forecast.direction``."""
    times: np.ndarray
    """Shape ``(n_t,)``: the 5-minute grid, epoch seconds."""
    values: np.ndarray
    """The query's values, as served (noise included)."""
    truth: np.ndarray
    """The same query over the noiseless data: its crossing is the true breach time."""
    series: tuple[str, ...]
    notes: tuple[str, ...]
    """Per series: what it does (``"linear fill 4.1 %/day"``, ``"steady near 80 %"``)."""
    runs: np.ndarray
    """Shape ``(RUNS,)``: epoch seconds of the hourly runs, on the grid."""
    season_seconds: float = DAY
    """Seasonal period of the naive forecast that scales MASE (Hyndman)."""
    recipe: ForecastMode | None = None
    """Rolling sums: the README recipe's ``forecast.rate`` query, window and unit."""
    raw: Mapping[str, Scrapes] | None = None
    """Rolling sums: the raw samples every query of the case is served from."""

    def __post_init__(self) -> None:
        n_t = self.times.shape[0]
        n_s = len(self.series)
        for name in ("values", "truth"):
            if getattr(self, name).shape != (n_t, n_s):
                raise ValueError(
                    f"`{name}` must have shape {(n_t, n_s)}, got {getattr(self, name).shape}"
                )
        if len(self.notes) != n_s:
            raise ValueError(f"`notes` must have {n_s} entries, got {len(self.notes)}")
        if self.direction not in ("above", "below"):
            raise ValueError(f"`direction` must be 'above' or 'below', got {self.direction!r}")


@dataclass(frozen=True)
class Generator:
    """A forecast case generator: ``make(seed)`` is deterministic in `seed`."""

    name: str
    make: Callable[[int], Case]
    description: str
    tune_seeds: tuple[int, ...] = (1, 2)
    measure_seeds: tuple[int, ...] = (3, 4)


def origin(seed: int, world: str) -> float:
    """The first run of `world`'s case of `seed`: a whole hour of the week that differs between
    seeds and between worlds."""
    hours = (seed * 29 + zlib.crc32(world.encode()) % 168) % 168
    return BASE_ORIGIN + hours * HOUR


def grid(first_run: float, warmup_seconds: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """The 5-minute grid of a case (history, runs, the truth's day and an hour to spare) and
    its runs; `warmup_seconds` more at the start (a rolling window's first day)."""
    start = first_run - HISTORY_SECONDS - HOUR - warmup_seconds
    end = first_run + (RUNS - 1) * HOUR + HORIZON_SECONDS + HOUR
    times = np.arange(start, end + 1.0, STEP)
    runs = first_run + HOUR * np.arange(RUNS)
    return times, runs


def rng_for(seed: int, world: str) -> np.random.Generator:
    """The random generator of `world` at `seed` (independent between worlds)."""
    return np.random.default_rng([seed, zlib.crc32(world.encode())])


def generators() -> list[Generator]:
    """Every generator, in report order."""
    from bench.forecast_zoo import gauges, spend

    return [*gauges.GENERATORS, *spend.GENERATORS]
