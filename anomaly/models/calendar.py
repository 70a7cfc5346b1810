"""The calendar each series lives by, learned from its own data.

A tenant's traffic follows *its* local clock: its day starts at local midnight (UTC offsets
of any half or quarter hour), its rest days are its own (Saturday-Sunday, Friday-Saturday, a
six-day week's single Sunday), and its clock may move by an hour for daylight saving inside
the training window. Nothing of that is configured; this module reads it off the series,
vectorised over series, on quarter-hour medians of the model-space grid:

* :func:`estimate_clock_switch`: whether the series' daily pattern moved by one hour from
  one day on (a daylight-saving switch), chosen against "no switch" by how much closer the
  days come to their common profile; :meth:`ClockSwitch.realign` moves the older days onto
  the newest clock, so the profiles learn one pattern instead of a blur of two;
* :func:`estimate_calendar`: where the series' day starts (any quarter hour from -12 h to
  +14 h around UTC) and which weekdays are rest days (none, one, or two consecutive ones),
  chosen by how much of the day-to-day variation each candidate explains (a between-groups
  sum of squares per time of day). A candidate must explain a clear share of it; otherwise
  the series has no rest days (one daily profile).

:func:`read_calendars` does both in turn (and, given each series' tenant, reads them per
tenant). The choice is recorded per series (:func:`describe`) and kept in the fitted model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from anomaly.models.features import SECONDS_PER_DAY, nanmedian0

#: 1970-01-01 was a Thursday; with Monday = 0 that is weekday 3.
_EPOCH_WEEKDAY = 3
WEEKDAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def _rest_blocks() -> np.ndarray:
    """Candidate rest-day sets, shape (14, 7): each weekday alone, then each weekday with the
    next one (Sunday with Monday)."""
    blocks = np.zeros((14, 7), dtype=bool)
    for w in range(7):
        blocks[w, w] = True
        blocks[7 + w, [w, (w + 1) % 7]] = True
    return blocks


REST_BLOCKS = _rest_blocks()
_SAT_SUN = 7 + 5
#: Earliest and latest day start searched, hours from UTC midnight.
_OFFSET_HOURS = (-12, 14)
#: Share of the day-to-day variation a rest-day candidate must explain to be chosen.
_MIN_EXPLAINED = 0.3
#: Rest days' mean deviation from the work days', in spreads of the work days' means.
_MIN_SEPARATION = 2.5
#: Candidates whose explained variation is within this fraction of the best tie.
_TIE = 0.005
#: Day-to-day deviations are winsorised at this many robust spreads.
_CLIP = 4.0
#: A series takes its tenant's rest days (read off another of its series) on this fraction
#: of the evidence it would need to read them alone: the calendar is known, the question is
#: only whether this series follows it.
_ADOPT = 0.5
#: A calendar reading of each series: day start (seconds), rest weekdays (7, n_series) and
#: the share of the day-to-day variation they explain.
Reading = tuple[np.ndarray, np.ndarray, np.ndarray]
#: Share by which moving the older days' clock must bring them closer to the newer ones.
_MIN_OWN_GAIN = 0.3
_MAX_CROSS = 1.25


@dataclass(frozen=True)
class Calendar:
    """The calendar of each of ``n_series`` series: where its day starts, its rest days, and
    the clock switch in its window (:func:`read_calendars`).

    Attributes
    ----------
    offset : ndarray of float, shape (n_series,)
        Seconds added to UTC to get the series' day.
    rest : ndarray of bool, shape (7, n_series)
        Its rest weekdays (none: one daily profile).
    switch : ClockSwitch
    """

    offset: np.ndarray
    rest: np.ndarray
    switch: ClockSwitch

    @classmethod
    def none(cls, n_series: int) -> Calendar:
        """UTC days, no rest days, no switch."""
        return cls(
            np.zeros(n_series), np.zeros((7, n_series), dtype=bool), ClockSwitch.none(n_series)
        )

    @property
    def n_series(self) -> int:
        return int(self.offset.shape[0])

    def select(self, columns: np.ndarray | Sequence[int]) -> Calendar:
        """The calendars of ``columns`` (indices), in that order."""
        idx = np.asarray(columns, dtype=np.int64)
        sw = self.switch
        return Calendar(
            self.offset[idx],
            self.rest[:, idx],
            ClockSwitch(sw.at[idx], sw.shift_seconds[idx], sw.gain[idx]),
        )


@dataclass(frozen=True)
class ClockSwitch:
    """A one-hour move of a series' daily pattern inside the training window.

    Attributes
    ----------
    at : ndarray of float, shape (n_series,)
        Epoch seconds from which the series follows its newest clock (-inf = no switch).
    shift_seconds : ndarray of float, shape (n_series,)
        Seconds by which the older rows are moved onto the newest clock
        (``aligned(t) = value(t + shift)``; 0 = no switch).
    gain : ndarray of float, shape (n_series,)
        How much closer the move brought the days on either side of it (the share of their
        distance it removed; 0 = no switch): the strength of the evidence.
    """

    at: np.ndarray
    shift_seconds: np.ndarray
    gain: np.ndarray

    @classmethod
    def none(cls, n_series: int) -> ClockSwitch:
        return cls(np.full(n_series, -np.inf), np.zeros(n_series), np.zeros(n_series))

    def leading(self, times: np.ndarray) -> np.ndarray:
        """Which of ``times`` are on each series' older clock, shape (n_t, n_series)."""
        t = np.asarray(times, dtype=np.float64)[:, None]
        return (t < self.at[None, :]) & (self.shift_seconds != 0)[None, :]

    def realign(self, times: np.ndarray, values: np.ndarray) -> np.ndarray:
        """``values`` (rows at ``times``, one regular step apart) with the older rows moved
        onto the newest clock (NaN where the row they come from is beyond the window or on
        the newest clock already)."""
        if not np.any(self.shift_seconds) or values.shape[0] < 2:
            return values
        step = float(np.median(np.diff(times)))
        shift = np.rint(self.shift_seconds / step).astype(np.int64)
        leading = self.leading(times)
        n_rows = values.shape[0]
        rows = np.arange(n_rows)[:, None]
        src = np.where(leading, rows + shift[None, :], rows)
        inside = (src >= 0) & (src < n_rows)
        clipped = np.clip(src, 0, n_rows - 1)
        moved = np.take_along_axis(values, clipped, axis=0)
        from_leading = np.take_along_axis(leading, clipped, axis=0) | ~leading
        return np.where(inside & from_leading, moved, np.nan)


def cells_per_day(n_slots: int) -> int:
    """Cells per day of the calendar search: quarter hours when the slots divide them, else
    hours, else one per slot (0: too coarse to read a calendar from)."""
    for n_cells in (96, 24):
        if n_slots % n_cells == 0:
            return n_cells
    return 0


def cell_times(first_day: int, n_days: int, n_slots: int) -> np.ndarray:
    """Start time (epoch seconds) of every cell of a grid of ``n_days`` whole UTC days of
    ``n_slots`` slots from UTC day ``first_day``."""
    return first_day * SECONDS_PER_DAY + np.arange(n_days * n_slots) * (SECONDS_PER_DAY / n_slots)


def day_cells(grid: np.ndarray, n_days: int, n_slots: int) -> np.ndarray:
    """Median of each cell of :func:`cells_per_day`, shape (n_days, n_cells, n_series)."""
    n_cells = cells_per_day(n_slots)
    n_s = grid.shape[1]
    per = n_slots // n_cells
    cells = grid.reshape(n_days, n_cells, per, n_s).transpose(2, 0, 1, 3)
    return nanmedian0(cells)


def estimate_clock_switch(
    grid: np.ndarray,
    n_days: int,
    n_slots: int,
    d0: int,
    offset: np.ndarray | None = None,
    rest: np.ndarray | None = None,
) -> ClockSwitch:
    """Find a one-hour move of each series' daily pattern (see the module docstring).

    Works on each series' own days (``offset`` and ``rest``, see :func:`estimate_calendar`;
    UTC days without rest days without them): a clock moves at night, so a switch falls
    between two of them. Every pair of days is compared at its own level (the spread of the cell-by-cell difference around its
    median) with the older day as it is and moved by one hour either way. A switch before
    day ``k`` in one direction is chosen when, over the pairs it separates, the median
    distance drops by :data:`_MIN_OWN_GAIN` with the move, and the moved pairs are then about
    as close as the pairs it does not separate. A weekend's other shape differs from a
    workday's at any shift, so it does not look like a moved clock; a holiday or an incident
    is one day among many pairs.
    """
    n_s = grid.shape[1]
    n_cells = cells_per_day(n_slots)
    if n_cells == 0 or n_days < 3 or n_s == 0:
        return ClockSwitch.none(n_s)
    offset = np.zeros(n_s) if offset is None else offset
    rest = np.zeros((7, n_s), dtype=bool) if rest is None else rest
    q = _local_grid(day_cells(grid, n_days, n_slots), offset)
    n_ld = n_days + 2
    flat = q.reshape(n_ld * n_cells, n_s)
    hour = n_cells // 24
    moved = {m: _shift_rows(flat, m * hour).reshape(n_ld, n_cells, n_s) for m in (-1, 0, 1)}
    # dist[m][a, b] = robust distance of day a (moved by m hours) to day b, NaN when they
    # share less than half a day of cells.
    dist = {m: np.full((n_ld, n_ld, n_s), np.nan) for m in (-1, 0, 1)}
    for a in range(n_ld):
        for m in (-1, 0, 1):
            diff = moved[m][a][None] - q  # (n_ld, n_cells, n_s) against every day b
            both = np.sum(np.isfinite(diff), axis=1)
            center = nanmedian0(diff.transpose(1, 0, 2))
            spread = nanmedian0(np.abs(diff - center[:, None, :]).transpose(1, 0, 2))
            dist[m][a] = np.where(both >= n_cells // 2, spread, np.nan)
    best = np.zeros(n_s)
    at_day = np.zeros(n_s, dtype=np.int64)
    shift = np.zeros(n_s)
    idx = np.arange(n_ld)
    full = np.sum(np.isfinite(q), axis=1) >= 0.8 * n_cells  # (n_ld, n_s)
    is_rest = rest[(np.arange(n_ld) - 1 + d0 + _EPOCH_WEEKDAY) % 7]  # (n_ld, n_s)
    same = is_rest[:, None, :] == is_rest[None, :, :]  # (n_ld, n_ld, n_s)
    for k in range(1, n_ld):
        # When the newer side has no full day (20 hours: a clock that moved during the
        # newest day), its hours are compared with days of their own type only: a weekend's
        # first hours are no moved clock.
        pairs = np.where(full[k:].any(axis=0)[None, None, :], True, same)
        cross = ((idx[:, None] < k) & (idx[None, :] >= k))[:, :, None] & pairs
        within = (((idx[:, None] < k) == (idx[None, :] < k)) & (idx != idx[:, None]))[
            :, :, None
        ] & pairs
        d0_cross = _masked_median(dist[0], cross)
        d_within = _masked_median(dist[0], within)
        for m in (-1, 1):
            d_cross = _masked_median(dist[m], cross)
            with np.errstate(invalid="ignore", divide="ignore"):
                gain = (d0_cross - d_cross) / d0_cross
                ok = (gain >= _MIN_OWN_GAIN) & (d_cross <= _MAX_CROSS * d_within)
            better = ok & (gain > best)
            best = np.where(better, gain, best)
            at_day = np.where(better, k, at_day)
            shift = np.where(better, m * 3600.0, shift)
    found = best > 0
    cell_seconds = SECONDS_PER_DAY / n_cells
    o = np.rint(offset / cell_seconds)
    at = (d0 - 1 + at_day) * SECONDS_PER_DAY - o * cell_seconds
    return ClockSwitch(
        np.where(found, at, -np.inf), np.where(found, shift, 0.0), np.where(found, best, 0.0)
    )


def _local_grid(cells: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """``cells`` (n_days, n_cells, n_series) of UTC days on each series' own days (``offset``):
    shape (n_days + 2, n_cells, n_series), one day of padding on each side (NaN where the
    window has no cell). Local day ``k`` is UTC day ``k - 1`` moved by the offset."""
    n_days, n_cells, n_s = cells.shape
    utc = cells.reshape(n_days * n_cells, n_s)
    o = np.rint(offset / (SECONDS_PER_DAY / n_cells)).astype(np.int64)
    n_ld = n_days + 2
    # Local cell r holds UTC cell r - o - n_cells.
    src = np.arange(n_ld * n_cells)[:, None] - o[None, :] - n_cells
    inside = (src >= 0) & (src < n_days * n_cells)
    picked = np.take_along_axis(utc, np.clip(src, 0, n_days * n_cells - 1), axis=0)
    return np.where(inside, picked, np.nan).reshape(n_ld, n_cells, n_s)


def _masked_median(d: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Median of ``d`` (n_ld, n_ld, n_s) over the (a, b) pairs of ``mask`` (same shape), per
    series."""
    sel = np.where(mask, d, np.nan).reshape(-1, d.shape[-1])
    return nanmedian0(sel)


def _shift_rows(flat: np.ndarray, shift: int) -> np.ndarray:
    """``out[i] = flat[i + shift]`` (NaN beyond the ends)."""
    out = np.full(flat.shape, np.nan)
    n = flat.shape[0]
    if shift >= 0:
        out[: n - shift] = flat[shift:]
    else:
        out[-shift:] = flat[: n + shift]
    return out


def read_calendars(
    grid: np.ndarray,
    n_days: int,
    n_slots: int,
    d0: int,
    sparse: np.ndarray,
    groups: np.ndarray | None = None,
) -> Calendar:
    """Each series' calendar from its model-space grid (n_days * n_slots, n_series) on UTC
    days ``d0 ..``: the calendar read off the window as it is, the clock switch judged day
    against day of the same type (none for sparse counts, which show no clock worth moving),
    and the calendar again on the newest clock.

    With ``groups`` (one id per series: its tenant, -1 for none), the clock and the weekend
    are facts of the group, not of each series: a switch found in one of its series (the one
    with the strongest evidence) moves all of them, and the rest days of the series that
    shows them most clearly are every other series' too where its own data bears them out
    (:func:`_adopt`); where not, it keeps its own reading (a weekly batch day of its own, or
    none). A connection pool whose night-batch hour moved with the clocks is then realigned
    by its tenant's request rate, where its own days alone are too flat to show the move.
    """
    n_s = grid.shape[1]
    (offset, rest, explained), today = _readings(grid, n_days, n_slots, d0)
    switch = estimate_clock_switch(grid, n_days, n_slots, d0, offset, rest)
    switch = ClockSwitch(
        np.where(sparse, -np.inf, switch.at),
        np.where(sparse, 0.0, switch.shift_seconds),
        np.where(sparse, 0.0, switch.gain),
    )
    members = _groups(groups, n_s)
    if members:
        at, shift, gain = switch.at.copy(), switch.shift_seconds.copy(), switch.gain.copy()
        for cols in members:
            lead = cols[int(np.argmax(switch.gain[cols]))]
            if switch.gain[lead] > 0:
                at[cols], shift[cols], gain[cols] = at[lead], shift[lead], gain[lead]
        switch = ClockSwitch(at, shift, gain)
    moved = switch.shift_seconds != 0
    if moved.any():
        grid = switch.realign(cell_times(d0, n_days, n_slots), grid)
        cols = np.flatnonzero(moved)
        now, now_today = _readings(grid[:, cols], n_days, n_slots, d0)
        offset[cols], rest[:, cols], explained[cols] = now
        today[0][cols], today[1][:, cols], today[2][cols] = now_today
    for cols in members:
        _rest_today(grid, n_days, n_slots, d0, cols, (offset, rest, explained), today)
    for cols in members:
        lead = cols[int(np.argmax(explained[cols]))]
        if explained[lead] <= 0:
            continue
        others = cols[cols != lead]
        take_offset = np.repeat(offset[lead], others.size)
        take_rest = np.repeat(rest[:, lead : lead + 1], others.size, axis=1)
        ok = _adopt(grid[:, others], n_days, n_slots, d0, take_offset, take_rest)
        offset[others[ok]] = offset[lead]
        rest[:, others[ok]] = rest[:, lead : lead + 1]
    return Calendar(offset, rest, switch)


#: Share of a tenant's series that must read a rest day on the newest day for it to be one.
_TODAY_QUORUM = 0.5
#: Distinct readings of it tried as the tenant's (the clearest first).
_TODAY_CANDIDATES = 3


def _rest_today(
    grid: np.ndarray,
    n_days: int,
    n_slots: int,
    d0: int,
    cols: np.ndarray,
    reading: Reading,
    today: Reading,
) -> None:
    """A tenant's rest day that the window shows only on its newest day (a six-day week's
    Sunday when the window ends on one): where most of the tenant's series read no rest
    days, but at least half of them (two or more) bear out one series' reading with the
    newest day counted (``today``; the reading most of them bear out), those without rest
    days of their own take that reading (``reading``, in place). One series alone never
    reads its newest day as a rest day: that is an incident of hours as often as a weekend.
    """
    offset, rest, explained = reading
    if np.any(rest[:, cols].any(axis=0)) and rest[:, cols].any(axis=0).mean() >= _TODAY_QUORUM:
        return
    o2, r2, e2 = today[0][cols], today[1][:, cols], today[2][cols]
    if not r2.any():
        return
    if cells_per_day(n_slots) == 0 or n_days < 3:
        return
    size = cols.size
    dev, _, cell_spread = _deviations(grid[:, cols], n_days, n_slots)
    # The reading most of the tenant bears out, among its distinct readings (the clearest
    # few first).
    readers = np.flatnonzero(r2.any(axis=0))
    readers = readers[np.argsort(-e2[readers], kind="stable")]
    tried: list[tuple[float, tuple[bool, ...]]] = []
    best_key, best_lead, best_agree = (0, 0.0), -1, np.zeros(size, dtype=bool)
    for j in readers:
        lead = int(j)
        reading_key = (float(o2[lead]), tuple(bool(x) for x in r2[:, lead]))
        if reading_key in tried:
            continue
        if len(tried) == _TODAY_CANDIDATES:
            break
        tried.append(reading_key)
        agree = _bears_out(
            dev,
            cell_spread,
            d0,
            np.repeat(o2[lead], size),
            np.repeat(r2[:, lead : lead + 1], size, axis=1),
            newest=True,
        )
        agree[lead] = True
        key = (int(agree.sum()), float(e2[lead]))
        if key > best_key:
            best_key, best_lead, best_agree = key, lead, agree
    if best_key[0] < max(2, _TODAY_QUORUM * size):
        return
    take = cols[best_agree & ~rest[:, cols].any(axis=0)]
    offset[take] = o2[best_lead]
    rest[:, take] = r2[:, best_lead : best_lead + 1]
    explained[take] = e2[best_lead]


def _groups(groups: np.ndarray | None, n_series: int) -> list[np.ndarray]:
    """The columns of each group of two series or more (ids below 0 are no group)."""
    if groups is None:
        return []
    ids = np.asarray(groups)
    if ids.shape != (n_series,):
        raise ValueError(f"`groups` must have shape ({n_series},), got {ids.shape}")
    out = []
    for g in np.unique(ids[ids >= 0]):
        cols = np.flatnonzero(ids == g)
        if cols.size > 1:
            out.append(cols)
    return out


def local_day(times: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """Day number of each time in each series' calendar (days since 1970-01-01 on its
    clock), shape (n_t, n_series)."""
    local = np.asarray(times, dtype=np.float64)[:, None] + offset[None, :]
    return np.floor(local / SECONDS_PER_DAY).astype(np.int64)


def local_weekday(times: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """Weekday (Monday = 0) of each time in each series' day, shape (n_t, n_series)."""
    return (local_day(times, offset) + _EPOCH_WEEKDAY) % 7


def _deviations(
    grid: np.ndarray, n_days: int, n_slots: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each cell's deviation from the median day, shape (n_days, n_cells, n_series),
    winsorised at :data:`_CLIP` robust spreads (an outage hours long, a value of 0 very far
    in model space, weighs like a rest day at most, not like dozens of them); the median
    day (n_cells, n_series) and the cells' robust spread (n_series,)."""
    n_s = grid.shape[1]
    q = day_cells(grid, n_days, n_slots)  # (n_days, n_cells, n_s)
    median_day = nanmedian0(q)  # (n_cells, n_s)
    dev = q - median_day[None]
    spread = 1.4826 * nanmedian0(np.abs(dev).reshape(-1, n_s))
    bound = _CLIP * np.where(np.isfinite(spread) & (spread > 0), spread, np.inf)
    dev = np.clip(dev, -bound, bound)
    return dev, median_day, np.where(np.isfinite(spread), spread, 0.0)


def estimate_calendar(
    grid: np.ndarray, n_days: int, n_slots: int, d0: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each series' day start and rest days (see the module docstring)."""
    return _readings(grid, n_days, n_slots, d0)[0]


def _readings(grid: np.ndarray, n_days: int, n_slots: int, d0: int) -> tuple[Reading, Reading]:
    """Each series' day start and rest days, without and with its newest day counted as a
    possible rest day (:func:`_separation`): one search, two separation tests.

    Parameters
    ----------
    grid : ndarray of shape (n_days * n_slots, n_series)
        Model-space values on UTC days ``d0 .. d0 + n_days - 1``, realigned.

    Returns
    -------
    Two readings (without, with the newest day), each of

    offset : ndarray of shape (n_series,)
        Seconds added to UTC to get the series' day (its local midnight falls at UTC
        ``-offset``).
    rest : ndarray of bool, shape (7, n_series)
        Its rest weekdays (none: one daily profile).
    explained : ndarray of shape (n_series,)
        The share of the day-to-day variation its rest days explain (0 without rest days).
    """
    n_s = grid.shape[1]
    offset = np.zeros(n_s)
    rest = np.zeros((7, n_s), dtype=bool)
    n_cells = cells_per_day(n_slots)
    if n_cells == 0 or n_days < 3 or n_s == 0:
        return (offset, rest, np.zeros(n_s)), (offset.copy(), rest.copy(), np.zeros(n_s))
    dev, median_day, cell_spread = _deviations(grid, n_days, n_slots)
    offset, rest = _searched(dev, d0, median_day)
    # Days that fit neither type (a public holiday: a work day at a rest day's level) are
    # left out and the search run again: next to a weekend, a holiday makes a three-day low
    # that fits a weekend starting anywhere in it.
    means, is_rest, cell_day, first = _day_means(dev, offset, rest, d0)
    has_rest: np.ndarray = np.any(rest, axis=0)
    odd = _odd_days(means, is_rest) & has_rest[None, :]
    if odd.any():
        idx = np.clip(cell_day - first, 0, odd.shape[0] - 1)
        drop = np.take_along_axis(odd, idx, axis=0).reshape(dev.shape)
        dev = np.where(drop, np.nan, dev)
        again = odd.any(axis=0)
        offset2, rest2 = _searched(dev[:, :, again], d0, median_day[:, again])
        offset[again], rest[:, again] = offset2, rest2
    # The rest days must stand apart from the work days as whole days: their mean deviation
    # beyond _MIN_SEPARATION times the spread of the work days' (noise and wander), so a
    # few days of noise never make a weekend.
    out = []
    for newest in (False, True):
        distinct = _separation(dev, offset, rest, d0, cell_spread, newest) >= _MIN_SEPARATION
        kept = rest & distinct[None, :]
        start = np.where(distinct, offset, 0.0)
        out.append((start, kept, np.where(distinct, _explained(dev, start, kept, d0), 0.0)))
    return out[0], out[1]


def _local_days(
    n_days: int, n_cells: int, offset: np.ndarray, d0: int
) -> tuple[np.ndarray, np.ndarray]:
    """The local day (relative to UTC day ``d0``) and weekday of each cell of ``n_days`` UTC
    days of ``n_cells`` cells, on each series' day (``offset``), both of shape
    (n_days * n_cells, n_series)."""
    o = np.rint(offset / (SECONDS_PER_DAY / n_cells)).astype(np.int64)
    cell_day = np.floor_divide(np.arange(n_days * n_cells)[:, None] + o[None, :], n_cells)
    return cell_day, (cell_day + d0 + _EPOCH_WEEKDAY) % 7


def _explained(dev: np.ndarray, offset: np.ndarray, rest: np.ndarray, d0: int) -> np.ndarray:
    """Share of the day-to-day variation ``dev`` (n_days, n_cells, n_s; see
    :func:`_deviations`) that each series' day start and rest days explain (the between-groups
    sum of squares per time of day of :func:`_search`), shape (n_series,)."""
    n_days, n_cells, _ = dev.shape
    _, weekday = _local_days(n_days, n_cells, offset, d0)
    w = np.take_along_axis(rest, weekday, axis=0).reshape(dev.shape)
    fin = np.isfinite(dev)
    dev0 = np.where(fin, dev, 0.0)
    s_all, n_all = dev0.sum(axis=0), fin.sum(axis=0)
    s_in, n_in = np.where(w, dev0, 0.0).sum(axis=0), (fin & w).sum(axis=0)
    base = s_all**2 / np.maximum(n_all, 1)
    gain = s_in**2 / np.maximum(n_in, 1) + (s_all - s_in) ** 2 / np.maximum(n_all - n_in, 1)
    gain = (gain - base).sum(axis=0)
    total = (dev0**2).sum(axis=(0, 1)) - base.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        out: np.ndarray = np.where(total > 0, gain / total, 0.0)
    return out


def _adopt(
    grid: np.ndarray,
    n_days: int,
    n_slots: int,
    d0: int,
    offset: np.ndarray,
    rest: np.ndarray,
) -> np.ndarray:
    """Whether each series' own data bears out the given day start and rest days (as
    :func:`estimate_calendar` requires of its own choice: the share explained and the rest
    days' separation as whole days), shape (n_series,)."""
    if cells_per_day(n_slots) == 0 or n_days < 3 or grid.shape[1] == 0:
        return np.zeros(grid.shape[1], dtype=bool)
    dev, _, cell_spread = _deviations(grid, n_days, n_slots)
    return _bears_out(dev, cell_spread, d0, offset, rest)


def _bears_out(
    dev: np.ndarray,
    cell_spread: np.ndarray,
    d0: int,
    offset: np.ndarray,
    rest: np.ndarray,
    newest: bool = False,
) -> np.ndarray:
    """:func:`_adopt` on the series' deviations (:func:`_deviations`); with ``newest``, the
    newest day may be one of the rest days (:func:`_separation`)."""
    sep = _separation(dev, offset, rest, d0, cell_spread, newest)
    ok: np.ndarray = (_explained(dev, offset, rest, d0) >= _ADOPT * _MIN_EXPLAINED) & (
        sep >= _ADOPT * _MIN_SEPARATION
    )
    return ok & rest.any(axis=0)


def _search(
    dev: np.ndarray, d0: int, median_day: np.ndarray, allowed: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The day start and rest block that explain most of ``dev`` (n_days, n_cells, n_s):
    deviations from the median day, NaN where missing or left out; among the blocks of
    ``allowed`` (n_blocks, n_s) when given."""
    n_days, n_cells, n_s = dev.shape
    offset = np.zeros(n_s)
    rest = np.zeros((7, n_s), dtype=bool)
    fin = np.isfinite(dev)
    dev0 = np.where(fin, dev, 0.0)
    finf = fin.astype(np.float64)
    # Per time of day (batch axis first): sums over days.
    dev_j = dev0.transpose(1, 0, 2)  # (n_cells, n_days, n_s)
    fin_j = finf.transpose(1, 0, 2)
    s_all = dev_j.sum(axis=1)
    n_all = fin_j.sum(axis=1)
    base = s_all**2 / np.maximum(n_all, 1.0)  # 0 where a time of day has no value
    base_sum = base.sum(axis=0)
    total = (dev0**2).sum(axis=(0, 1)) - base_sum  # (n_s,)

    per_hour = n_cells // 24
    offsets = np.arange(_OFFSET_HOURS[0] * per_hour, _OFFSET_HOURS[1] * per_hour + 1)
    cell = np.arange(n_days)[:, None] * n_cells + np.arange(n_cells)[None, :]
    gains = np.empty((offsets.size, REST_BLOCKS.shape[0], n_s))
    blocks_t = REST_BLOCKS.T.astype(np.float64)  # (7, n_blocks)
    for i, o in enumerate(offsets):
        weekday = (np.floor_divide(cell + o, n_cells) + d0 + _EPOCH_WEEKDAY) % 7
        w = blocks_t[weekday].transpose(1, 2, 0)  # (n_cells, n_blocks, n_days)
        s_in = w @ dev_j  # (n_cells, n_blocks, n_s)
        n_in = w @ fin_j
        # Between-groups sum of squares, in place (the hot loop of a fit). Missing cells
        # are zeros, so an empty group has a zero sum and its term vanishes by itself: a
        # time of day with one group empty explains nothing.
        gain = s_in * s_in
        gain /= np.maximum(n_in, 1.0)
        out = s_all[:, None, :] - s_in
        out *= out
        out /= np.maximum(n_all[:, None, :] - n_in, 1.0)
        gain += out
        gains[i] = gain.sum(axis=0) - base_sum[None, :]
    if allowed is not None:
        gains = np.where(allowed[None], gains, -np.inf)
    best = gains.max(axis=(0, 1))
    with np.errstate(invalid="ignore", divide="ignore"):
        explained = np.where(total > 0, best / total, 0.0)
    chosen = explained >= _MIN_EXPLAINED
    near = gains >= (1.0 - _TIE) * best[None, None, :]
    for j in np.flatnonzero(chosen):
        block, o_idx = _pick(near[:, :, j], gains[:, :, j], offsets, per_hour, median_day[:, j])
        rest[:, j] = REST_BLOCKS[block]
        offset[j] = offsets[o_idx] * (SECONDS_PER_DAY / n_cells)
    return offset, rest


def _searched(dev: np.ndarray, d0: int, median_day: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_search`, then each two-day rest block checked day by day (:func:`_lone_days`):
    where one of its weekdays is told better by the work days' profile than by the other
    rest day's, the block is searched again among its single days."""
    offset, rest = _search(dev, d0, median_day)
    holds = _lone_days(dev, d0, offset, rest)
    again = np.flatnonzero(np.any(rest & ~holds, axis=0))
    if again.size == 0:
        return offset, rest
    keep = np.where(np.any(rest & holds, axis=0)[None, :], rest & holds, rest)[:, again]
    allowed = np.zeros((REST_BLOCKS.shape[0], again.size), dtype=bool)
    allowed[:7] = keep  # the single-day blocks of the weekdays that hold
    offset2, rest2 = _search(dev[:, :, again], d0, median_day[:, again], allowed)
    offset[again], rest[:, again] = offset2, rest2
    return offset, rest


def _lone_days(dev: np.ndarray, d0: int, offset: np.ndarray, rest: np.ndarray) -> np.ndarray:
    """Which rest weekdays of a two-day block (7, n_series) its days bear out on their own:
    a rest weekday holds when its days, cell by cell, lie nearer the other rest weekday's
    days (a profile they took no part in) than the work days' profile. Weekdays of a single
    rest day, or of none, hold.

    A weekend that is one day long, next to a work day slightly below the others (a
    per-weekday level), explains a little more day-to-day variation as a two-day block than
    alone; told out of sample, the work day is a work day.
    """
    n_days, n_cells, n_s = dev.shape
    holds = np.ones((7, n_s), dtype=bool)
    pair = np.sum(rest, axis=0) == 2
    if not pair.any():
        return holds
    cols = np.flatnonzero(pair)
    q = _local_grid(dev[:, :, cols], offset[cols])  # (n_ld, n_cells, n_c)
    n_ld = q.shape[0]
    weekday = (np.arange(n_ld) - 1 + d0 + _EPOCH_WEEKDAY) % 7
    r = rest[:, cols]
    resting = r[weekday]  # (n_ld, n_c)
    enough = np.sum(np.isfinite(q), axis=1) >= n_cells // 2  # (n_ld, n_c)
    with np.errstate(invalid="ignore"):
        work = _day_profile(q, ~resting & enough)
        for w in range(7):
            on = (weekday == w)[:, None] & resting & enough
            if not on.any():
                continue
            other = _day_profile(q, resting & enough & (weekday != w)[:, None])
            to_rest, to_work = (q - other[None]) ** 2, (q - work[None]) ** 2
            cells = on[:, None, :] & np.isfinite(to_rest) & np.isfinite(to_work)
            err_rest = np.sum(np.where(cells, to_rest, 0.0), axis=(0, 1))
            err_work = np.sum(np.where(cells, to_work, 0.0), axis=(0, 1))
            told = np.any(cells, axis=(0, 1))
            holds[w, cols] = ~(r[w] & told & (err_work < err_rest))
    return holds


def _day_profile(q: np.ndarray, days: np.ndarray) -> np.ndarray:
    """Mean over the local days ``days`` (n_ld, n_series) of ``q`` (n_ld, n_cells, n_series)
    at each cell, NaN where none has a value."""
    sel = np.where(days[:, None, :], q, np.nan)
    n = np.sum(np.isfinite(sel), axis=0)
    return np.where(n > 0, np.nansum(sel, axis=0) / np.maximum(n, 1), np.nan)


def _day_means(
    dev: np.ndarray, offset: np.ndarray, rest: np.ndarray, d0: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Mean deviation of each of the series' own days with 20 hours of cells.

    Returns
    -------
    means, is_rest : ndarray of shape (n_cell_days, n_series)
        NaN for a day with fewer cells; whether the day is a rest day.
    cell_day : ndarray of int, shape (n_days * n_cells, n_series)
        The local day of each UTC cell.
    first : int
        The local day of row 0 of ``means``.
    """
    n_days, n_cells, n_s = dev.shape
    cell_day, weekday = _local_days(n_days, n_cells, offset, d0)
    flat = dev.reshape(n_days * n_cells, n_s)
    lo, hi = int(cell_day.min()), int(cell_day.max())
    means = np.full((hi - lo + 1, n_s), np.nan)
    is_rest = np.zeros((hi - lo + 1, n_s), dtype=bool)
    for i, ld in enumerate(range(lo, hi + 1)):
        on = cell_day == ld
        n = np.sum(on & np.isfinite(flat), axis=0)
        total = np.nansum(np.where(on, flat, np.nan), axis=0)
        means[i] = np.where(n >= 0.8 * n_cells, total / np.maximum(n, 1), np.nan)
        wd = np.max(np.where(on, weekday, -1), axis=0)
        is_rest[i] = np.take_along_axis(rest, np.clip(wd, 0, 6)[None, :], axis=0)[0]
    return means, is_rest, cell_day, lo


def _odd_days(means: np.ndarray, is_rest: np.ndarray) -> np.ndarray:
    """Days nearer the other type's median mean than their own's, shape of ``means``."""
    work = nanmedian0(np.where(is_rest, np.nan, means))
    off = nanmedian0(np.where(is_rest, means, np.nan))
    own = np.where(is_rest, off, work)
    other = np.where(is_rest, work, off)
    with np.errstate(invalid="ignore"):
        nearer: np.ndarray = np.abs(means - other) < np.abs(means - own)
    return nearer


def _separation(
    dev: np.ndarray,
    offset: np.ndarray,
    rest: np.ndarray,
    d0: int,
    cell_spread: np.ndarray,
    newest: bool = False,
) -> np.ndarray:
    """How far each series' rest days lie from its work days, in robust spreads of the work
    days' mean deviations (0 without rest days, three full work days and five days).

    Each day is compared with the work days at its own hours (its mean deviation from their
    median at each time of day), so a rest day cut by the window's older edge (a six-day
    week's only rest day split across both ends of a week's window) counts with six hours
    or more, where a work day needs 80 % of its cells. The newest day counts as a rest day
    only with ``newest`` (the tenant's series agree on it, see :func:`read_calendars`): in
    one series, a pattern seen only today (a drift of hours) is an incident, not a weekend.

    Parameters
    ----------
    dev : ndarray of shape (n_days, n_cells, n_series)
        :func:`_deviations`.
    cell_spread : ndarray of shape (n_series,)
        Robust spread of single cells' deviations.
    """
    n_days, n_cells, n_s = dev.shape
    n = n_days * n_cells
    cell_day, weekday = _local_days(n_days, n_cells, offset, d0)
    resting = np.take_along_axis(rest, weekday, axis=0)  # (n, n_s)
    work_level = nanmedian0(
        np.where(resting.reshape(dev.shape), np.nan, dev)
    )  # (n_cells, n_s): the work days at each time of day
    flat = (dev - work_level[None]).reshape(n, n_s)
    fin = np.isfinite(flat)
    lo, hi = int(cell_day.min()), int(cell_day.max())
    work = np.full((hi - lo + 1, n_s), np.nan)
    off = np.full((hi - lo + 1, n_s), np.nan)
    fewest = np.full(n_s, float(n_cells))
    # The newest day of each series is in progress: a part of it shows where today is odd (an
    # incident of hours), not where a week rests.
    last = np.max(np.where(np.isfinite(flat), cell_day, lo - 1), axis=0)
    for i, ld in enumerate(range(lo, hi + 1)):
        on = cell_day == ld
        count = np.sum(on & fin, axis=0)
        mean = np.nansum(np.where(on, flat, np.nan), axis=0) / np.maximum(count, 1)
        is_rest = np.any(on & resting, axis=0)
        work[i] = np.where(~is_rest & (count >= 0.8 * n_cells), mean, np.nan)
        part = is_rest & (count >= n_cells // 4) & ((ld < last) | newest)
        off[i] = np.where(part, mean, np.nan)
        fewest = np.where(part, np.minimum(fewest, count), fewest)
    n_work = np.sum(np.isfinite(work), axis=0)
    n_rest = np.sum(np.isfinite(off), axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        # Medians and MAD: one odd work day (an incident, the day in progress) neither
        # moves the work days' level nor widens their spread.
        work_mean = nanmedian0(work)
        diff = np.abs(nanmedian0(off) - work_mean)
        spread = 1.4826 * nanmedian0(np.abs(work - work_mean))
        # Floors: what the cells' noise alone spreads a day's mean by (twice, for its
        # autocorrelation; over the fewest cells a rest day was seen with), and a tenth of
        # the difference itself, so that a few nearly equal work days do not make any
        # difference look separated.
        noise = 2.0 * cell_spread / np.sqrt(np.maximum(fewest, 1.0))
        spread = np.maximum(np.maximum(spread, noise), 0.1 * diff)
        sep = diff / spread
    ok = (n_work >= 3) & (n_rest >= 1) & (n_work + n_rest >= 5) & np.isfinite(sep)
    return np.where(ok, sep, 0.0)


def _pick(
    near: np.ndarray,
    gains: np.ndarray,
    offsets: np.ndarray,
    per_hour: int,
    day_level: np.ndarray,
) -> tuple[int, int]:
    """Block and offset index among near-best candidates ``near`` (n_offsets, n_blocks).

    Saturday-Sunday when it ties (a holiday next to a weekend makes a three-day low that
    several blocks explain equally), else the best block. Its offset, among the run of
    tying offsets around the best one (a weekend effect confined to business hours ties over
    the whole night; a holiday next to the weekend over a whole day): one whose day starts
    in the quietest hours of the median day (``day_level``, per cell), then a whole, then a
    half hour, then the one nearest the run's middle.
    """
    if near[:, _SAT_SUN].any():
        block = _SAT_SUN
    else:  # the largest offset of exact ties: UTC+12 (Fiji) before its alias UTC-12
        block = int(np.unravel_index(np.argmax(gains[::-1]), gains.shape)[1])
    col = near[:, block]
    top = int(np.argmax(np.where(col, gains[:, block], -np.inf)))
    lo = top
    while lo > 0 and col[lo - 1]:
        lo -= 1
    hi = top
    while hi < col.size - 1 and col[hi + 1]:
        hi += 1
    run = np.arange(lo, hi + 1)
    cells = offsets[run]
    n_cells = day_level.shape[0]
    level = np.where(np.isfinite(day_level), day_level, np.nanmin(day_level, initial=0.0))
    around = np.mean(
        [np.roll(level, -k) for k in range(-per_hour, per_hour + 1)], axis=0
    )  # the hour around each cell
    at_start = around[(-cells) % n_cells]
    quiet = at_start <= at_start.min() + 0.1 * (level.max() - level.min())
    coarse = np.where(cells % per_hour == 0, 0, np.where((2 * cells) % per_hour == 0, 1, 2))
    middle = np.abs(run - (lo + hi) / 2.0)
    return block, int(run[np.lexsort((middle, coarse, ~quiet))[0]])


def describe(offset: float, rest: np.ndarray, switch_at: float, shift_seconds: float) -> str:
    """One line for the notebook: ``"rest Sat-Sun; day starts 22:00 UTC"``, ``"daily"``,
    ``"...; clock moved 1 h on 2026-10-25 01:00 UTC"``."""
    parts = []
    if rest.any():
        names = [WEEKDAY_NAMES[w] for w in range(7) if rest[w]]
        if rest[6] and rest[0]:
            names = ["Sun", "Mon"]
        parts.append("rest " + "-".join(names))
        start = (-offset) % SECONDS_PER_DAY
        parts.append(f"day starts {int(start // 3600):02d}:{int(start % 3600 // 60):02d} UTC")
    else:
        parts.append("daily")
    if shift_seconds:
        when = np.datetime64(int(switch_at), "s").astype("datetime64[m]")
        parts.append(f"clock moved {abs(shift_seconds) / 3600:g} h at {when} UTC")
    return "; ".join(parts)
