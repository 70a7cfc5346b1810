"""Zoo generators of rolling 24-hour AI spend against a $100 budget, served from raw samples.

Each *world* is six tenants whose spend follows a law in their local time; every world holds
three or four tenants whose spend crosses the budget during the runs, one that climbs to
85-90 % and stays there, one steady near 80 % and (most worlds) one steady lower down. The law
of a tenant's spend rate ($/hour):

* a daily shape (one bump over a night floor of 15-50 % of the peak, in local time) and a
  weekly one (rest days 10-40 % lower; near 80 %: at most 10 %);
* its growth, one of: a ramp *added* to the shape (reaching 30-300 % of the mean rate over 1-3
  days, flat in time: it does not follow the daily shape); a growth that *scales* the shape
  (the rate times 1 + the ramp); a new workload (a flat extra rate from one moment on);
* a nightly batch (some worlds).

The spend is drawn per minute: a Poisson number of calls, each costing a gamma-distributed
amount, times a slow wander of the load (3 %, 2 h). Prometheus scrapes the counter
``pa_ai_cost_usd_total`` and the gauge ``pa_ai_cost_usd_minute`` (the spend of the past minute,
an exporter's other way to say the same) every minute, 17 s past it.

Worlds and their cases (the query that serves the case's values in brackets):

* ``budget``: tenants on random offsets, small calls ($0.01-0.05); its cases write the rolling
  spend four ways: ``budget_increase`` (``increase(x[1d])``), ``budget_sum_over_time``
  (``sum_over_time(g[1d])``), ``budget_avg_over_time`` (``avg_over_time(g[1d]) * 1440``) and
  ``budget_rate`` (``rate(x[1d]) * 86400``);
* ``lumpy``: the same kinds of tenant, but each call costs $0.25-1: a few an hour at night;
* ``night_batch``: every tenant runs a nightly batch (local 00:00-03:00 start, 1-2.5 h, 20-40 %
  of its daily spend);
* ``dst``: every tenant's clock moved by an hour 1-6 days before the first run;
* ``new_workload``: three tenants start a flat new workload 9-13 h before their breach (so
  the runs that time it see it 3-13 h old), one a smaller one;
* ``growth_additive``: added ramps crossing in the tenant's local evening (shape falling, two
  tenants) or morning (rising, two) - the case issue 20 saw 1.6 h late;
* ``growth_multiplicative``: the same with growth that scales the daily shape;
* ``timezones``: offsets -9:30, -3:30, +5:30, +5:45, +9:30 and +12:45.

All but the ``budget`` forms are written ``sum by (organization_id) (increase(x[1d]))``. The
README recipe's rate for each (:attr:`Case.recipe`): the same metric over 15 minutes, per
hour.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field, replace

import numpy as np

from bench.forecast_zoo import (
    DAY,
    HOUR,
    LASTING_SECONDS,
    OFFSETS,
    Case,
    Generator,
    grid,
    origin,
    rng_for,
)
from bench.forecast_zoo.promql import ForecastMode, Scrapes, serve
from bench.forecast_zoo.shapes import (
    ar1,
    bisect,
    daily_shape,
    draw_crossing,
    first_crossing,
    local_hours,
    week_factor,
)

BUDGET = 100.0
SCRAPE_SECONDS = 60.0
SCRAPE_OFFSET_SECONDS = 17.0
COUNTER = "pa_ai_cost_usd_total"
MINUTE_GAUGE = "pa_ai_cost_usd_minute"
_BY = "sum by (organization_id)"
RECIPE_RATE = f"{_BY} (rate({COUNTER}[15m])) * 3600"

#: The rolling 24-hour spend written every way: (query, the README recipe's rate query).
FORMS = {
    "increase": (f"{_BY} (increase({COUNTER}[1d]))", RECIPE_RATE),
    "sum_over_time": (
        f"{_BY} (sum_over_time({MINUTE_GAUGE}[1d]))",
        f"{_BY} (sum_over_time({MINUTE_GAUGE}[15m])) * 4",
    ),
    "avg_over_time": (
        f"{_BY} (avg_over_time({MINUTE_GAUGE}[1d])) * 1440",
        f"{_BY} (avg_over_time({MINUTE_GAUGE}[15m])) * 60",
    ),
    "rate": (f"{_BY} (rate({COUNTER}[1d])) * 86400", RECIPE_RATE),
}


@dataclass
class Tenant:
    """One tenant's spend law (the growth's magnitude is solved for its role)."""

    role: str
    """``crossing``, ``under`` (climbs to 85-90 %), ``steady80`` or ``steady``."""
    growth: str | None
    """``add``, ``mul``, ``workload`` or None."""
    offset: float
    peak_hour: float
    night_floor: float
    width: float
    rest_days: tuple[int, ...]
    weekend: float
    daily_usd: float
    cost_per_call: float
    dst_at: float = math.nan
    dst_delta: float = 0.0
    batch: tuple[float, float, float] | None = None
    """(local start hour, hours, share of the daily spend)."""
    growth_start: float = math.nan
    growth_days: float = 1.0
    magnitude: float = 0.0
    """The growth's size: of the mean rate (added, workload) or of the rate (scaled)."""
    window: tuple[float, float] = (0.0, 0.0)
    """Where the breach of a crossing tenant is placed."""
    aim: str = ""
    """``evening`` or ``morning``: the local time of day its breach is aimed at (or none)."""
    note: str = ""


@dataclass(frozen=True)
class World:
    """A world's tenants and their spend: per minute, drawn and expected, ``(n_k, n_s)``."""

    name: str
    seed: int
    times: np.ndarray
    runs: np.ndarray
    tenants: tuple[Tenant, ...]
    scrape_start: float
    spend: np.ndarray
    expected: np.ndarray
    counter_start: np.ndarray = field(repr=False)

    def raw(self, noiseless: bool = False) -> dict[str, Scrapes]:
        """The scraped counter and minute gauge (of the expected spend with `noiseless`)."""
        minute = self.expected if noiseless else self.spend
        counter = self.counter_start + np.cumsum(minute, axis=0)
        return {
            COUNTER: Scrapes(self.scrape_start, SCRAPE_SECONDS, counter),
            MINUTE_GAUGE: Scrapes(self.scrape_start, SCRAPE_SECONDS, minute),
        }


def _rates(t: Tenant, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The tenant's spend rate without growth and its growth per unit magnitude, $/h, ``(n,)``."""
    hours = local_hours(times, np.array([t.offset]), np.array([t.dst_at]), np.array([t.dst_delta]))
    shape = daily_shape(
        hours, np.array([t.peak_hour]), np.array([t.night_floor]), np.array([t.width])
    )[:, 0]
    week = week_factor(hours, t.rest_days, np.array([t.weekend]))[:, 0]
    mean_rate = t.daily_usd / 24.0
    load = mean_rate * shape * week
    base = load.copy()
    if t.batch is not None:
        start, length, share = t.batch
        in_batch = ((hours[:, 0] - start) % 24.0) < length
        base += np.where(in_batch, share * t.daily_usd / length, 0.0)
    ramp = np.clip((times - t.growth_start) / (t.growth_days * DAY), 0.0, 1.0)
    if t.growth == "add":
        unit = mean_rate * ramp
    elif t.growth == "mul":
        unit = load * ramp
    elif t.growth == "workload":
        unit = np.where(times >= t.growth_start, mean_rate, 0.0)
    else:
        unit = np.zeros_like(times)
    return np.asarray(base), np.asarray(unit)


def _rolling_day(per_minute: np.ndarray, scrape_start: float, times: np.ndarray) -> np.ndarray:
    """The spend of the day before each of `times` from per-minute spend (the placement's quick
    view; the truth is served by :func:`~bench.forecast_zoo.promql.serve`)."""
    c = np.concatenate([[0.0], np.cumsum(per_minute)])
    last = np.floor((times - scrape_start) / SCRAPE_SECONDS).astype(int) + 1
    first = np.maximum(last - round(DAY / SCRAPE_SECONDS), 0)
    return np.asarray(c[last] - c[first])


def _utc(offset: float) -> str:
    sign = "+" if offset >= 0 else "-"
    h, m = divmod(round(abs(offset) * 60), 60)
    return f"UTC{sign}{h:02d}:{m:02d}"


def _draw_tenant(
    rng: np.random.Generator, role: str, growth: str | None, world: str, runs: np.ndarray
) -> Tenant:
    """A tenant of `role` with a random calendar, level and growth timing."""
    t = Tenant(
        role=role,
        growth=growth,
        offset=float(rng.choice(OFFSETS)),
        peak_hour=rng.uniform(10.0, 17.0),
        night_floor=rng.uniform(0.15, 0.5),
        width=rng.uniform(2.5, 5.0),
        rest_days=((5, 6), (4, 5), (6,))[int(rng.integers(0, 3))],
        weekend=rng.uniform(0.1, 0.4) if role != "steady80" else rng.uniform(0.0, 0.1),
        daily_usd=rng.uniform(30.0, 60.0),
        cost_per_call=rng.uniform(0.25, 1.0) if world == "lumpy" else rng.uniform(0.01, 0.05),
    )
    if world == "night_batch":
        t.batch = (rng.uniform(0.0, 3.0), rng.uniform(1.0, 2.5), rng.uniform(0.2, 0.4))
    if world == "dst":
        t.dst_at = runs[0] - rng.uniform(1.0, 6.0) * DAY
        t.dst_delta = float(rng.choice([-1.0, 1.0]))
    first, last = float(runs[0]), float(runs[-1])
    t.window = (first + 7 * HOUR, first + 23 * HOUR)
    if growth == "workload":
        t.growth_start = first + rng.uniform(-2.0, 10.0) * HOUR
        t.window = (max(t.growth_start + 9 * HOUR, t.window[0]), t.growth_start + 13 * HOUR)
    elif growth is not None:
        t.growth_start = first - rng.uniform(4.0, 30.0) * HOUR
        t.growth_days = rng.uniform(1.0, 3.0)
    if role == "under":  # its rate levels off during the runs; the sum follows for a day
        end = first + rng.uniform(2.0, 14.0) * HOUR
        t.growth_days = rng.uniform(1.0, 2.0) if growth != "workload" else 1.0
        t.growth_start = end - (t.growth_days * DAY if growth != "workload" else 0.0)
        t.window = (first, last + DAY)
    return t


def _aim_local(t: Tenant, rng: np.random.Generator, local_hours_range: tuple[float, float]) -> None:
    """Move the tenant's clock so that its breach, drawn in its window, falls at a local hour
    in `local_hours_range` (an offset of whole or half hours)."""
    at = rng.uniform(*t.window)
    wanted = rng.uniform(*local_hours_range)
    offset = (wanted - (at / HOUR) % 24.0 + 12.0) % 24.0 - 12.0
    t.offset = round(offset * 2.0) / 2.0
    t.window = (at - 0.75 * HOUR, at + 0.75 * HOUR)


def _solve(
    t: Tenant,
    rng: np.random.Generator,
    world: str,
    times: np.ndarray,
    runs: np.ndarray,
    minute_times: np.ndarray,
    scrape_start: float,
) -> Tenant:
    """The tenant with its level or growth set for its role (drawn again until one fits)."""
    judged = (times >= runs[0]) & (times <= runs[-1] + DAY)
    for attempt in range(40):
        cand = replace(t) if attempt == 0 else _draw_tenant(rng, t.role, t.growth, world, runs)
        if world == "timezones":
            cand.offset = t.offset
        if t.aim:
            _aim_local(cand, rng, _AIMS[t.aim])
        base, unit = _rates(cand, minute_times)
        per_min = SCRAPE_SECONDS / HOUR
        s_base = _rolling_day(base * per_min, scrape_start, times)
        s_unit = _rolling_day(unit * per_min, scrape_start, times)
        if cand.role in ("steady80", "steady"):
            peak = rng.uniform(0.81, 0.85) if cand.role == "steady80" else rng.uniform(0.3, 0.7)
            cand.daily_usd *= peak * BUDGET / s_base[judged].max()
            cand.note = f"steady, peaks at ${peak * BUDGET:.0f}"
            return cand
        if s_base[judged].max() <= 0.75 * BUDGET and _grow(
            cand, rng, s_base, s_unit, times, judged, float(runs[0])
        ):
            return cand
    raise ValueError(f"world {world}: no draw fits a {t.role} tenant")


def _grow(
    t: Tenant,
    rng: np.random.Generator,
    s_base: np.ndarray,
    s_unit: np.ndarray,
    times: np.ndarray,
    judged: np.ndarray,
    first_run: float,
) -> bool:
    """Set the growth of a ``crossing`` or ``under`` tenant from its rolling spend without
    growth and per unit of growth, ``(n_t,)`` each; False if no growth fits its window."""
    if t.role == "under":
        top = rng.uniform(0.85, 0.9) * BUDGET
        t.magnitude = bisect(lambda m: bool((s_base + m * s_unit)[judged].max() >= top), 0, 20)
        t.note = f"{t.growth} growth x{t.magnitude:.2f}, climbs to ${top:.0f}"
        return True
    try:
        _, t.magnitude = draw_crossing(
            lambda: lambda m: s_base + m * s_unit,
            times,
            t.window,
            rng,
            (0.0, 3.0),
            BUDGET,
            after=first_run,
            lasting_seconds=LASTING_SECONDS,
            tries=3,
        )
    except ValueError:
        return False
    cross = first_crossing(s_base + t.magnitude * s_unit, times, first_run, BUDGET)
    since = (cross - t.growth_start) / HOUR
    local = (cross / HOUR + t.offset) % 24.0
    t.note = (
        f"{t.growth} growth x{t.magnitude:.2f} from {since:.0f} h before its breach "
        f"(local {int(local):02d}:{int(60 * (local % 1)):02d})"
    )
    return True


#: Per world: each tenant's role and growth, and a label for a local-time aim.
_LAYOUTS: dict[str, tuple[tuple[str, str | None, str], ...]] = {
    "default": (
        ("crossing", "add", ""),
        ("crossing", "add", ""),
        ("crossing", "mul", ""),
        ("under", "add", ""),
        ("steady80", None, ""),
        ("steady", None, ""),
    ),
    "new_workload": (
        ("crossing", "workload", ""),
        ("crossing", "workload", ""),
        ("crossing", "workload", ""),
        ("under", "workload", ""),
        ("steady80", None, ""),
        ("steady", None, ""),
    ),
    "growth_additive": (
        ("crossing", "add", "evening"),
        ("crossing", "add", "evening"),
        ("crossing", "add", "morning"),
        ("crossing", "add", "morning"),
        ("under", "add", ""),
        ("steady80", None, ""),
    ),
    "growth_multiplicative": (
        ("crossing", "mul", "evening"),
        ("crossing", "mul", "evening"),
        ("crossing", "mul", "morning"),
        ("crossing", "mul", "morning"),
        ("under", "mul", ""),
        ("steady80", None, ""),
    ),
    "timezones": (
        ("crossing", "add", ""),
        ("crossing", "add", ""),
        ("crossing", "mul", ""),
        ("crossing", "add", ""),
        ("under", "add", ""),
        ("steady80", None, ""),
    ),
}
_TIMEZONES = (-9.5, -3.5, 5.5, 9.5, 12.75, 5.75)
#: Local hours a breach is aimed at: the shape falling into the evening, rising in the morning.
_AIMS = {"evening": (18.5, 21.5), "morning": (7.5, 10.5)}


@functools.lru_cache(maxsize=4)
def world(name: str, seed: int) -> World:
    """The world `name` at `seed` (cached: the four ``budget`` cases read the same one)."""
    rng = rng_for(seed, name)
    times, runs = grid(origin(seed, name), warmup_seconds=DAY)
    scrape_start = times[0] - HOUR + SCRAPE_OFFSET_SECONDS
    n_k = int((times[-1] - scrape_start) // SCRAPE_SECONDS) + 1
    minute_times = scrape_start + SCRAPE_SECONDS * np.arange(n_k)
    # A minute's spend accrues over the minute before its scrape: its rate at the midpoint.
    mid = minute_times - SCRAPE_SECONDS / 2
    tenants = []
    for j, (role, growth, aim) in enumerate(_LAYOUTS.get(name, _LAYOUTS["default"])):
        t = _draw_tenant(rng, role, growth, name, runs)
        if name == "timezones":
            t.offset = _TIMEZONES[j]
        t.aim = aim
        tenants.append(_solve(t, rng, name, times, runs, mid, scrape_start))
    expected = np.empty((n_k, len(tenants)))
    for j, t in enumerate(tenants):
        base, unit = _rates(t, mid)
        expected[:, j] = (base + t.magnitude * unit) * (SCRAPE_SECONDS / HOUR)
    cost = np.array([t.cost_per_call for t in tenants])
    wander = np.exp(ar1(rng, n_k, len(tenants), 120.0, 0.03) - 0.03**2 / 2)
    calls = rng.poisson(expected * wander / cost)
    k = 2.0  # gamma shape of a call's cost: a coefficient of variation of 0.7
    spend = rng.gamma(calls * k, cost / k)
    return World(
        name,
        seed,
        times,
        runs,
        tuple(tenants),
        float(scrape_start),
        spend,
        expected,
        counter_start=rng.uniform(1e3, 5e4, len(tenants)),
    )


def make_case(case: str, world_name: str, form: str, seed: int) -> Case:
    """Case `case`: world `world_name` at `seed`, its rolling spend written as `form`."""
    w = world(world_name, seed)
    query, recipe_rate = FORMS[form]
    raw, clean = w.raw(), w.raw(noiseless=True)
    notes = tuple(
        f"{t.role}: {t.note}, {_utc(t.offset)}"
        + (f" (DST {t.dst_delta:+.0f} h)" if math.isfinite(t.dst_at) else "")
        + (f", batch {t.batch[2] * 100:.0f} %" if t.batch else "")
        + (f", ${t.cost_per_call:.2f}/call" if world_name == "lumpy" else "")
        for t in w.tenants
    )
    return Case(
        case,
        seed,
        query,
        BUDGET,
        "above",
        w.times,
        serve(query, raw, w.times),
        serve(query, clean, w.times),
        tuple(f"org-{j + 1:02d}" for j in range(len(w.tenants))),
        notes,
        w.runs,
        recipe=ForecastMode(recipe_rate, DAY, HOUR, "README recipe"),
        raw=raw,
    )


def _generator(case: str, world_name: str, form: str, description: str) -> Generator:
    return Generator(case, functools.partial(make_case, case, world_name, form), description)


GENERATORS = (
    *(
        _generator(f"budget_{form}", "budget", form, f"rolling spend as {FORMS[form][0]}")
        for form in FORMS
    ),
    _generator("budget_lumpy", "lumpy", "increase", "spend in $0.25-1 calls"),
    _generator("budget_night_batch", "night_batch", "increase", "a nightly batch per tenant"),
    _generator("budget_dst", "dst", "increase", "a clock change 1-6 days before the runs"),
    _generator("budget_new_workload", "new_workload", "increase", "a flat workload 9-13 h old"),
    _generator("budget_growth_additive", "growth_additive", "increase", "ramps added to the shape"),
    _generator(
        "budget_growth_multiplicative",
        "growth_multiplicative",
        "increase",
        "growth scaling the shape",
    ),
    _generator("budget_timezones", "timezones", "increase", "offsets -9:30 to +12:45"),
)
