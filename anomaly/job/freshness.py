"""How old each series' newest point is, and where a run's judgement of it ends when data
arrives late.

Remote-write stores (Mimir, Thanos receive), slow scrapes and a job clock running ahead of
Prometheus' leave the newest rows of a run's grid empty although the data is on its way. Those
rows are no evidence that all is well, nor that the series stopped: a series is *late* when its
newest value is at most ``detection.max_data_age`` old and it normally has a value in
(nearly) every row; the run then judges it up to its newest row that holds a value, as it
would have judged that row had the data been on time. A series whose newest value is older
than that is *stale*: its empty newest rows are judged as they are (a series that stops
reporting where it always reports is out, see :mod:`anomaly.models.seasonal`). A series that
often has no value (a metric sampled hourly) is neither: its empty rows are its normal.

A tenant's series share its pipeline, so lateness is the tenant's: when more than half of its
regular series are late by k rows or more, all of its regular series are judged k rows back
(:func:`align_tenants`), and none is when most are on time: a series whose newest rows are
empty while its tenant's others are on time has stopped (a p95 with no requests to measure, an
exporter gone) and is judged at the grid's newest row, where it is out. Judging all k rows
back matters for a query over a range (``rate(x[15m])``): it keeps answering from older
samples while its range reaches them, so its newest rows hold values, lower than the rate was,
where the samples behind them are still missing.

Every scored series' age, late, stale or fresh, is pushed (``anomaly_data_age_seconds``), and
each tenant's oldest (``anomaly_tenant_data_age_seconds``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from anomaly.models.features import SECONDS_PER_DAY

__all__ = ["REGULAR_COVERAGE", "Freshness", "align_tenants", "freshness"]

#: A series is late, not sparse, when at least this share of its rows of the day up to its
#: newest value (from its first value on) hold a value: a 2-hour outage yesterday still
#: leaves it regular, a metric sampled hourly (1 row in 12 at a 5-minute step) is not.
REGULAR_COVERAGE = 0.9


@dataclass(frozen=True)
class Freshness:
    """Per series of a frame: where its newest value is and what the run judges.

    Attributes
    ----------
    newest : ndarray of int, shape (n_series,)
        Row of the newest value (-1: none in the window).
    shift : ndarray of int, shape (n_series,)
        How many rows before the grid's newest row the run's judgement ends: the empty rows
        after a late series' newest value (0 for a fresh, stale or sparse series).
    age_seconds : ndarray of float, shape (n_series,)
        Seconds from the run's time to the newest row holding a value (NaN: none). A row's
        value is the newest sample up to Prometheus' lookback (5 minutes) before it, so the
        sample itself may be up to that much older.
    regular : ndarray of bool, shape (n_series,)
        Whether the series has a value in (nearly) every row (:data:`REGULAR_COVERAGE`):
        empty rows after its newest value are late data, not its normal.
    grid_age_seconds, step_seconds : float
        Seconds from the run's time to the grid's newest row, and between rows.
    """

    newest: np.ndarray
    shift: np.ndarray
    age_seconds: np.ndarray
    regular: np.ndarray
    grid_age_seconds: float = 0.0
    step_seconds: float = 0.0

    @classmethod
    def fresh(cls, n_series: int) -> Freshness:
        """Every series judged at the grid's newest row, of unknown age."""
        return cls(
            np.full(n_series, -1, dtype=np.int64),
            np.zeros(n_series, dtype=np.int64),
            np.full(n_series, np.nan),
            np.zeros(n_series, dtype=bool),
        )


def freshness(
    times: np.ndarray, values: np.ndarray, now: float, max_age_seconds: float
) -> Freshness:
    """Where each series' newest value is, how old it is at ``now``, and how many empty rows
    after it the run leaves unjudged (a late series, see the module's docstring).

    Parameters
    ----------
    times : ndarray of shape (n_t,)
        The run's grid, epoch seconds.
    values : ndarray of shape (n_t, n_series)
        NaN where a series has no value.
    now : float
        The run's time (``--at`` for a replay).
    max_age_seconds : float
        ``detection.max_data_age``: the oldest newest value a late series may have (0: none
        is late; the grid's newest rows are judged as they are).
    """
    t = np.asarray(times, dtype=np.float64)
    finite = np.isfinite(np.asarray(values, dtype=np.float64))
    n_t, n_s = finite.shape
    if n_t == 0:
        return Freshness.fresh(n_s)
    has = finite.any(axis=0)
    newest = np.where(has, n_t - 1 - np.argmax(finite[::-1], axis=0), -1)
    age = np.where(has, now - t[np.maximum(newest, 0)], np.nan)
    gap = n_t - 1 - newest
    within = has & (gap > 0) & (age <= max_age_seconds)
    step = float(t[1] - t[0]) if n_t > 1 else 1.0
    reach = max(1, round(SECONDS_PER_DAY / step))
    rows = np.arange(n_t)[:, None]
    # The day of rows up to each series' newest value, from its first value on.
    first = np.argmax(finite, axis=0)
    counted = (rows <= newest) & (rows > newest - reach) & (rows >= first)
    coverage = np.sum(finite & counted, axis=0) / np.maximum(np.sum(counted, axis=0), 1)
    regular = has & (coverage >= REGULAR_COVERAGE)
    shift = np.where(within & regular, gap, 0).astype(np.int64)
    return Freshness(
        newest.astype(np.int64), shift, age.astype(np.float64), regular, now - t[-1], step
    )


def align_tenants(
    tenants: Sequence[Sequence[str | None]], parts: Sequence[Freshness]
) -> list[Freshness]:
    """``parts`` (one per metric of a batch, columns of tenants ``tenants``) with each tenant's
    regular series judged as far back as more than half of them are late: the largest ``k``
    such that more than half of the tenant's regular series have a ``shift`` of ``k`` or more
    (0 when most are on time; the shifts stay within ``detection.max_data_age``), their age
    that of the row they are now judged at where it is older. Series without a tenant, and
    sparse ones, keep theirs."""
    shifts: dict[str, list[int]] = {}
    for keys, part in zip(tenants, parts, strict=True):
        for tenant, shift, regular in zip(keys, part.shift, part.regular, strict=True):
            if tenant is not None and regular:
                shifts.setdefault(tenant, []).append(int(shift))
    common = {t: sorted(v, reverse=True)[len(v) // 2] for t, v in shifts.items()}
    out = []
    for keys, part in zip(tenants, parts, strict=True):
        floor = np.array([common.get(t, 0) if t is not None else 0 for t in keys], dtype=np.int64)
        tenanted = np.array([t is not None for t in keys], dtype=bool)
        shift = np.where(part.regular & tenanted, floor, part.shift)
        judged_at = part.grid_age_seconds + shift * part.step_seconds
        age = np.where(part.regular, np.fmax(part.age_seconds, judged_at), part.age_seconds)
        out.append(
            Freshness(
                part.newest, shift, age, part.regular, part.grid_age_seconds, part.step_seconds
            )
        )
    return out
