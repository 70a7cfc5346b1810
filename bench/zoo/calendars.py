"""The ``calendars`` generator: a ProcessAudit-like world where every tenant keeps its own clock.

Design (written without looking at the team's generator or the detector): each tenant
(``organization_id="org-NN"``) has a *local calendar* and everything it does follows that
calendar, not UTC:

- a UTC offset from −10 h to +12:45 h, at least three of them half or quarter hours
  (−3:30, +5:30, +5:45, +8:45, +12:45, ...);
- rest days that are Saturday–Sunday for most, Friday–Saturday or Thursday–Friday for some, and a
  six-day week (one rest day) for others; a weekend strength of 0–60 % (how much lower the load
  is on a rest day);
- a public holiday (a working day at rest-day level) in the week before the end for a quarter of
  the tenants; a daylight-saving switch (the local clock moves by ±1 h at local 02:00 on a date
  inside the window) for 20–35 % of them;
- for two or three tenants a weekly batch that is not the calendar's: one local evening a week
  (19:00–23:00 start, 3–6 h long) the load is 1.6–2.5 × higher; the judged window never falls
  inside a batch;
- a daily shape of two smooth bumps in local time (a late-morning one and an afternoon or evening
  one) above a night floor of 15–60 % of the peak.

The load of a tenant drives six metrics, each with its own multiplicative noise (1–10 %, on the
failing fraction for the completion ratio), additive noise for the gauges, and a slow AR(1)
wander (time constant 3–24 h, 1–4 % in log scale): a request counter (Poisson counts per minute,
read through ``rate(...[5m])``), a p95 latency gauge that rises with load, a small error-ratio
gauge, a completion-ratio gauge near 0.85–0.95, an integer queue-depth gauge (Poisson, sparse at
night for the small tenants) and an AI-cost counter in dollars driven by a sparse Poisson number
of AI jobs per minute with gamma-distributed costs.

Anomalies are sized in noise widths of the series *as queried*: the standard deviation of
(queried output of the noisy clean series − queried output of its noiseless expectation) at the
5-minute step over the 4 hours before the incident. 40–50 % of the series carry one incident
live in the judged window (spike, outage, flatline, level_shift, variance_burst, dip; each chosen
only where it is visible in principle, kinds balanced); at least six tenants are quiet; 30 % of
the series carry a past incident in the training window (not in the key).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import repeat
from pathlib import Path

import numpy as np

from bench.zoo import JUDGED_SECONDS, Generator, Incident, MetricEntry, Scenario

MINUTE = 60
DAY = 86400
STEP = 300
DAYS = 11.0
#: 2026-11-18T14:00Z; each seed adds a whole number of hours (< 4 days), so the end falls on
#: other weekdays and local hours per seed, never after 2026-11-22T14:00Z.
BASE_END = 1795010400

#: (config name, family, type, help, team, severity) in file order.
METRICS = (
    ("request_rate", "pa_cal_requests", "counter", "Audit requests served.", "platform", "warning"),
    (
        "latency_p95",
        "pa_cal_latency_p95_seconds",
        "gauge",
        "95th percentile of audit request latency over the last minute.",
        "product",
        "critical",
    ),
    (
        "error_ratio",
        "pa_cal_error_ratio",
        "gauge",
        "Share of audit checks that failed with an error over the last minute.",
        "security",
        "critical",
    ),
    (
        "completion_ratio",
        "pa_cal_completion_ratio",
        "gauge",
        "Share of audit processes completed on time over the last minute.",
        "customer-success",
        "warning",
    ),
    ("queue_depth", "pa_cal_queue_depth", "gauge", "Audit jobs waiting.", "platform", "info"),
    (
        "ai_cost_rate",
        "pa_cal_ai_cost_dollars",
        "counter",
        "Dollars spent on AI review jobs.",
        "ai",
        "warning",
    ),
)
NAMES = tuple(m[0] for m in METRICS)
COUNTERS = frozenset(m[0] for m in METRICS if m[2] == "counter")
#: Output rounding of each metric (gauges) or of the cumulative counter.
DECIMALS = {
    "request_rate": 0,
    "latency_p95": 4,
    "error_ratio": 6,
    "completion_ratio": 5,
    "queue_depth": 0,
    "ai_cost_rate": 4,
}
OBJECTIVES = (
    {"metric": "latency_p95", "max": 2.0},
    {"metric": "error_ratio", "max": 0.005},
    {"metric": "completion_ratio", "min": 0.8},
)

#: Rest days (Monday = 0).
WEEKENDS = {
    "sat-sun": (5, 6),
    "fri-sat": (4, 5),
    "thu-fri": (3, 4),
    "sun": (6,),
    "fri": (4,),
    "sat": (5,),
}
WHOLE_OFFSETS = tuple(float(h) for h in range(-10, 13))
FRACTIONAL_OFFSETS = (-9.5, -3.5, 3.5, 4.5, 5.5, 5.75, 6.5, 8.75, 9.5, 10.5, 12.75)
QUARTER_OFFSETS = (5.75, 8.75, 12.75)
LIVE_KINDS = ("spike", "outage", "flatline", "level_shift", "variance_burst", "dip")


@dataclass(frozen=True)
class Calendar:
    """One tenant's local calendar and daily shape."""

    tenant: str
    offset_hours: float
    """UTC offset before the daylight-saving switch (if any)."""
    dst_at: float | None
    """Epoch seconds at which the local clock moves by :attr:`dst_delta_hours`."""
    dst_delta_hours: float
    weekend: str
    """A key of :data:`WEEKENDS`."""
    weekend_strength: float
    """How much lower a rest day's load is (0–0.6)."""
    holiday: int | None
    """Local day number (days since 1970-01-01 in local time) of a public holiday."""
    batch: tuple[int, float, float, float] | None
    """(local weekday, start hour, hours, load factor) of a weekly batch."""
    night_floor: float
    bumps: tuple[tuple[float, float, float], ...]
    """(weight, peak local hour, concentration) of the daily shape's von Mises bumps."""

    @property
    def rest_days(self) -> tuple[int, ...]:
        return WEEKENDS[self.weekend]


def scenario_end(seed: int) -> int:
    """Epoch seconds of the newest sample for ``seed`` (a whole hour)."""
    return BASE_END + ((seed * 31) % 96) * 3600


def _streams(seed: int) -> list[np.random.Generator]:
    """Independent streams: calendars, data, incidents."""
    return [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3)]


def _local(cal: Calendar, t: np.ndarray) -> np.ndarray:
    """Local seconds (seconds since 1970-01-01 00:00 local) at epoch seconds ``t``."""
    return _local_at(cal.offset_hours, cal.dst_at, cal.dst_delta_hours, t)


def _local_at(offset: float, dst_at: float | None, delta: float, t: np.ndarray) -> np.ndarray:
    off = np.full(t.shape, offset * 3600.0)
    if dst_at is not None:
        off[t >= dst_at] += delta * 3600.0
    return t + off


def _weekday(local_day: np.ndarray | int) -> np.ndarray | int:
    """Monday = 0 (1970-01-01 was a Thursday)."""
    return (local_day + 3) % 7


def calendars(
    seed: int, *, days: float = DAYS, tenants: int | None = None
) -> tuple[int, list[Calendar]]:
    """The end time and every tenant's calendar for ``seed`` (what :func:`make` uses)."""
    rng = _streams(seed)[0]
    end = scenario_end(seed)
    start = end - int(round(days * DAY))
    n = int(tenants) if tenants is not None else int(rng.integers(16, 25))
    names = [f"org-{i + 1:02d}" for i in range(n)]

    # Offsets: at least three fractional ones, one of them a quarter hour.
    n_frac = int(rng.integers(3, 6))
    offsets = [float(rng.choice(QUARTER_OFFSETS))]
    offsets += [float(x) for x in rng.choice(FRACTIONAL_OFFSETS, size=n_frac - 1)]
    pool = WHOLE_OFFSETS + FRACTIONAL_OFFSETS
    offsets += [float(x) for x in rng.choice(pool, size=n - len(offsets))]
    offsets = [offsets[i] for i in rng.permutation(n)]

    # Weekends: two Friday–Saturday, one Thursday–Friday, two six-day weeks, the rest mostly
    # Saturday–Sunday.
    six = [str(x) for x in rng.choice(["sun", "fri", "sat"], size=2)]
    kinds = ["fri-sat", "fri-sat", "thu-fri", *six]
    rest = ["sat-sun", "fri-sat", "thu-fri", "sun"]
    kinds += [str(x) for x in rng.choice(rest, size=n - len(kinds), p=[0.75, 0.1, 0.05, 0.1])]
    weekends = [kinds[i] for i in rng.permutation(n)]

    order = rng.permutation(n)
    n_hol = max(1, round(n / 4))
    n_dst = max(1, round(n * rng.uniform(0.2, 0.35)))
    n_batch = int(rng.integers(2, 4))
    holiday_set = set(order[:n_hol].tolist())
    dst_set = set(rng.permutation(n)[:n_dst].tolist())
    batch_set = set(order[n_hol : n_hol + n_batch].tolist())

    cals = []
    for i, name in enumerate(names):
        off = offsets[i]
        strength = rng.uniform(0.25, 0.6) if i in holiday_set else rng.uniform(0.0, 0.6)
        rest_days = WEEKENDS[weekends[i]]

        dst_at, dst_delta = None, 0.0
        if i in dst_set:
            dst_delta = float(rng.choice([-1.0, 1.0]))
            span = end - start
            lo, hi = start + 0.2 * span, end - max(0.2 * span, 6 * 3600)
            first = math.floor((start + off * 3600) / DAY)
            last = math.floor((end + off * 3600) / DAY)
            cands = [d * DAY + 7200 - off * 3600 for d in range(first, last + 1)]
            ok = [c for c in cands if lo <= c <= hi]
            if not ok:
                mid = (start + end) / 2
                ok = [min(cands, key=lambda c: abs(c - mid))]
            dst_at = float(ok[int(rng.integers(len(ok)))])

        holiday = None
        if i in holiday_set:
            end_day = math.floor(
                (end + (off + (dst_delta if dst_at is not None else 0.0)) * 3600) / DAY
            )
            first_day = math.ceil((start + (off + 1.0) * 3600) / DAY)  # wholly inside
            days_ok = [
                d
                for d in range(end_day - 7, end_day)
                if d >= first_day and _weekday(d) not in rest_days
            ]
            if days_ok:
                holiday = int(days_ok[int(rng.integers(len(days_ok)))])

        batch = None
        if i in batch_set:
            work = [d for d in range(7) if d not in rest_days]
            h0 = round(rng.uniform(19.0, 23.0) * 4) / 4
            dur = round(rng.uniform(3.0, 6.0) * 4) / 4
            factor = rng.uniform(1.6, 2.5)
            probe = _local_at(off, dst_at, dst_delta, np.arange(end - 5 * 3600, end + 1, 300.0))
            for wd in [int(x) for x in rng.permutation(work)]:
                if not np.any(_batch_factor((wd, h0, dur, factor), probe) > 1.0):
                    batch = (wd, h0, dur, factor)
                    break

        evening = rng.random() < 0.25
        bumps = (
            (1.0, rng.uniform(9.0, 11.5), rng.uniform(1.5, 4.0)),
            (
                rng.uniform(0.5, 1.0),
                rng.uniform(19.0, 21.5) if evening else rng.uniform(14.0, 16.5),
                rng.uniform(1.5, 4.0),
            ),
        )
        cals.append(
            Calendar(
                tenant=name,
                offset_hours=off,
                dst_at=dst_at,
                dst_delta_hours=dst_delta,
                weekend=weekends[i],
                weekend_strength=float(strength),
                holiday=holiday,
                batch=batch,
                night_floor=float(rng.uniform(0.15, 0.6)),
                bumps=tuple(tuple(float(x) for x in b) for b in bumps),  # type: ignore[misc]
            )
        )
    return end, cals


def _batch_factor(batch: tuple[int, float, float, float] | None, local: np.ndarray) -> np.ndarray:
    """The weekly batch's load factor (1 outside it; 20-minute ramps at both ends)."""
    if batch is None:
        return np.ones(local.shape)
    wd_b, h0, dur, factor = batch
    day = np.floor(local / DAY)
    hod = (local - day * DAY) / 3600.0
    hours = ((_weekday(day.astype(np.int64)) - wd_b) % 7) * 24.0 + hod
    ramp = np.clip(np.minimum(hours - h0, h0 + dur - hours) / (1 / 3), 0.0, 1.0)
    return 1.0 + (factor - 1.0) * ramp


def _load(cal: Calendar, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(load without batch, load with batch); 1 is a working day's daily peak."""
    local = _local(cal, t)
    day = np.floor(local / DAY)
    hod = (local - day * DAY) / 3600.0
    grid = np.linspace(0.0, 24.0, 24 * 12, endpoint=False)

    def shape(h: np.ndarray) -> np.ndarray:
        out = np.zeros(h.shape)
        for w, mu, k in cal.bumps:
            out += w * np.exp(k * (np.cos(2 * np.pi * (h - mu) / 24.0) - 1.0))
        return out

    daily = shape(hod) / shape(grid).max()
    level = cal.night_floor + (1.0 - cal.night_floor) * daily
    iday = day.astype(np.int64)
    rest = np.isin(_weekday(iday), cal.rest_days)
    if cal.holiday is not None:
        rest |= iday == cal.holiday
    level = level * np.where(rest, 1.0 - cal.weekend_strength, 1.0)
    return level, level * _batch_factor(cal.batch, local)


def _ar1(rng: np.random.Generator, n_series: int, n: int) -> np.ndarray:
    """Slow AR(1) wander in log scale, shape (n_series, n): sd 1–4 %, time constant 3–24 h."""
    sd = rng.uniform(0.01, 0.04, n_series)
    tau = rng.uniform(3 * 60, 24 * 60, n_series)
    phi = np.exp(-1.0 / tau)
    shocks = rng.standard_normal((n, n_series)) * (sd * np.sqrt(1 - phi**2))
    out = np.empty((n, n_series))
    out[0] = rng.standard_normal(n_series) * sd
    for i in range(1, n):
        out[i] = phi * out[i - 1] + shocks[i]
    return out.T


def _queried(name: str, work: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """The 5-minute output a query gives: a gauge's sample at each grid point; for a counter
    (``work`` = per-second rate of each minute's increment) ``rate(...[5m])``, the mean of the
    five increments in the window."""
    if name not in COUNTERS:
        return work[..., grid]
    cs = np.cumsum(work, axis=-1)
    return (cs[..., grid] - cs[..., grid - 5]) / 5.0


@dataclass
class _Series:
    name: str
    work: np.ndarray  # (T, N): gauge values, or per-second rate of each minute's increment
    exp: np.ndarray  # the noiseless expectation (with wander) in the same units


def _generate(rng: np.random.Generator, cals: list[Calendar], t: np.ndarray) -> list[_Series]:
    n_t, n = len(cals), t.size
    loads = [_load(c, t) for c in cals]
    lnb = np.stack([x[0] for x in loads])
    load = np.stack([x[1] for x in loads])
    wander = np.exp(_ar1(rng, 6 * n_t, n)).reshape(6, n_t, n)

    def col(lo: float, hi: float, log: bool = False) -> np.ndarray:
        if log:
            return np.exp(rng.uniform(math.log(lo), math.log(hi), n_t))[:, None]
        return rng.uniform(lo, hi, n_t)[:, None]

    def mult() -> np.ndarray:
        sd = col(0.01, 0.10)
        return np.clip(1.0 + sd * rng.standard_normal((n_t, n)), 0.05, None)

    out = []
    # Requests: Poisson counts per minute.
    lam = col(2.0, 200.0, log=True) * load * wander[0]
    counts = rng.poisson(60.0 * lam * mult())
    out.append(_Series("request_rate", counts / 60.0, lam))
    # p95 latency: rises with load.
    c = col(0.2, 0.7)
    exp = col(0.12, 0.6, log=True) * (1 + c * load) / (1 + c) * wander[1]
    add = col(0.002, 0.01) * rng.standard_normal((n_t, n))
    out.append(_Series("latency_p95", np.maximum(exp * mult() + add, 0.001), exp))
    # Error ratio: small, mildly load-dependent.
    e = col(0.0, 0.4)
    exp = col(0.0003, 0.0012, log=True) * (1 + e * lnb) / (1 + e) * wander[2]
    add = col(0.00003, 0.00015) * rng.standard_normal((n_t, n))
    out.append(_Series("error_ratio", np.maximum(exp * mult() + add, 0.0), exp))
    # Completion ratio: noise on the failing fraction.
    g = col(0.0, 0.3)
    fail = col(0.05, 0.11) * (1 + g * lnb) / (1 + g) * wander[3]
    add = col(0.001, 0.004) * rng.standard_normal((n_t, n))
    out.append(_Series("completion_ratio", np.clip(1 - fail * mult() + add, 0, 1), 1 - fail))
    # Queue depth: Poisson integers, sparse at night for small tenants.
    lam = col(1.5, 30.0, log=True) * load * wander[4]
    out.append(_Series("queue_depth", rng.poisson(lam * mult()).astype(float), lam))
    # AI cost: a Poisson number of jobs per minute, gamma-distributed dollars per job.
    jobs = col(0.3, 5.0, log=True) * load * wander[5]
    cv = col(0.3, 0.9)
    shape = 1.0 / cv**2
    scale = col(0.02, 0.4) / shape
    n_jobs = rng.poisson(jobs * mult())
    dollars = rng.gamma(n_jobs * shape, np.broadcast_to(scale, (n_t, n)))
    out.append(_Series("ai_cost_rate", dollars / 60.0, jobs * shape * scale / 60.0))
    for s in out:
        s.work[:, 0] = s.exp[:, 0]  # no increment before the first sample
    return out


@dataclass(frozen=True)
class _Plan:
    metric: int
    tenant: int
    kind: str
    a: int
    b: int
    size: float
    sign: float
    sigma: float
    level: float


def _choose(
    rng: np.random.Generator,
    kind: str,
    name: str,
    a_range: tuple[int, int],
    n: int,
    *,
    live: bool,
) -> tuple[int, int, float] | None:
    """(a, b, size) of an incident of ``kind`` starting in ``a_range`` (inclusive minute
    indices); spikes and dips of counters start so that one 5-minute rate window lies wholly
    inside them (grid points are the indices ≡ n-1 mod 5)."""
    lo, hi = a_range
    if kind in ("spike", "dip"):
        length = 6 if kind == "spike" else int(rng.integers(6, 11))
        size = rng.uniform(8.0, 14.0)
        if name in COUNTERS:
            # increments a..a+length-1; grid g with a <= g-4 and g <= a+length-1
            cands = [
                g - 4 - j
                for g in range((n - 1) % 5, n, 5)
                for j in range(length - 4)
                if lo <= g - 4 - j <= hi - length + 1
            ]
        else:
            cands = list(range(lo, hi - length + 2))
        if not cands:
            return None
        a = int(cands[int(rng.integers(len(cands)))])
        return a, a + length, size
    if kind == "flatline":
        length = 40 if live else int(rng.integers(60, 181))
        a = int(rng.integers(lo, hi + 1))
        return a, a + length, 0.0
    if live:  # still on at the end
        a = int(rng.integers(lo, hi + 1))
        size = rng.uniform(6.0, 9.0) if kind == "level_shift" else rng.uniform(5.0, 7.0)
        return a, n + 60, size
    lengths = {"outage": (10, 91), "level_shift": (60, 481), "variance_burst": (60, 241)}[kind]
    a = int(rng.integers(lo, hi + 1))
    size = rng.uniform(6.0, 9.0) if kind == "level_shift" else rng.uniform(5.0, 7.0)
    return a, min(a + int(rng.integers(*lengths)), n), size


def _eligible(kind: str, name: str, level: float, sigma: float, repeats: float) -> bool:
    """Whether an incident of ``kind`` is visible in principle on this series at this time."""
    if sigma <= 0 or not np.isfinite(sigma):
        return False
    ratio = name in ("error_ratio", "completion_ratio")
    if kind == "spike":
        return not ratio or level + 14 * sigma <= 0.999
    if kind == "dip":
        return level - 14 * sigma >= 0.15 * level
    if kind == "outage":
        return level >= 6 * sigma and repeats < 0.05
    if kind == "flatline":
        return repeats < 0.1
    if kind == "level_shift":
        return (not ratio or level + 9 * sigma <= 0.999) or level - 9 * sigma >= 0.2 * level
    # variance_burst: values are clipped at 0, so the level must leave room for the wider noise
    return repeats < 0.3 and level >= 3 * sigma


def _apply(s: _Series, p: _Plan) -> None:
    w, x, j, a, b = s.work, s.exp, p.tenant, p.a, p.b
    delta = p.sign * p.size * p.sigma
    if p.kind in ("spike", "dip", "level_shift"):
        w[j, a:b] += delta
    elif p.kind == "outage":
        w[j, a:b] = 0.0
    elif p.kind == "flatline":
        w[j, a:b] = x[j, a] if s.name in COUNTERS else w[j, a - 1]
    elif p.kind == "variance_burst":
        w[j, a:b] = x[j, a:b] + p.size * (w[j, a:b] - x[j, a:b])


def _finish(s: _Series) -> np.ndarray:
    """Raw sample values as exported: cumulative counters, rounded, clipped to their range."""
    d = DECIMALS[s.name]
    if s.name in COUNTERS:
        inc = np.maximum(s.work, 0.0) * 60.0
        if d == 0:
            inc = np.round(inc)
        inc[:, 0] = 0.0
        return np.round(1000.0 + np.cumsum(inc, axis=1), d)
    v = np.maximum(s.work, 0.0)
    if s.name.endswith("_ratio"):
        v = np.minimum(v, 1.0)
    return np.round(v, d)


def _write(path: Path, tenants: list[str], t: np.ndarray, values: dict[str, np.ndarray]) -> None:
    stamps = [str(int(x)) for x in t]
    with path.open("w", encoding="utf-8") as f:
        for name, family, typ, help_, _, _ in METRICS:
            f.write(f"# HELP {family} {help_}\n# TYPE {family} {typ}\n")
            sample = family + ("_total" if typ == "counter" else "")
            for j, tenant in enumerate(tenants):
                prefix = f'{sample}{{organization_id="{tenant}"}} '
                vals = map(repr, values[name][j].tolist())
                f.write(
                    "".join(
                        map("".join, zip(repeat(prefix), vals, repeat(" "), stamps, repeat("\n")))
                    )
                )
        f.write("# EOF\n")


def _note(p: _Plan, name: str, level_after: float | None = None) -> str:
    lv, sd = f"{p.level:.4g}", f"σ={p.sigma:.3g}"
    if p.kind == "spike":
        return f"spike +{p.size:.1f}σ of {name} for 6 min at level {lv} ({sd})"
    if p.kind == "dip":
        return f"dip −{p.size:.1f}σ of {name} for {p.b - p.a} min from level {lv} ({sd})"
    if p.kind == "level_shift":
        sign = "+" if p.sign > 0 else "−"
        new = p.level + p.sign * p.size * p.sigma
        return f"level shift {sign}{p.size:.1f}σ of {name} ({lv} → {new:.4g}, {sd})"
    if p.kind == "outage":
        what = "requests stop" if name in COUNTERS else "drop to 0"
        return f"outage of {name}: {lv} → 0 ({what})"
    if p.kind == "flatline":
        how = "counter rises at a constant rate" if name in COUNTERS else "value held"
        return f"flatline of {name} for {p.b - p.a} min ({how}; {sd})"
    return f"variance burst ×{p.size:.1f} of {name} noise ({sd}, level {lv})"


def make(seed: int, workdir: Path, *, days: float = DAYS, tenants: int | None = None) -> Scenario:
    """Write ``workdir / "data.om"`` and return the scenario for ``seed``.

    ``days`` and ``tenants`` shrink the world for tests (defaults: 11 days, 16–24 tenants)."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    end, cals = calendars(seed, days=days, tenants=tenants)
    _, data_rng, inc_rng = _streams(seed)
    n = int(round(days * DAY / MINUTE)) + 1
    t = (end - MINUTE * np.arange(n - 1, -1, -1)).astype(np.int64)
    tf = t.astype(float)
    series = _generate(data_rng, cals, tf)
    names = [c.tenant for c in cals]
    n_t = len(cals)

    grid = np.arange((n - 1) % 5, n, 5)
    grid = grid[grid >= 5]
    gt = tf[grid]
    clean_q = [_queried(s.name, s.work, grid) for s in series]
    exp_q = [_queried(s.name, s.exp, grid) for s in series]

    def stats(m: int, j: int, lo: float, hi: float) -> tuple[float, float, float]:
        """(level, σ, share of repeated values) of the queried series in [lo, hi]."""
        sel = (gt >= lo) & (gt <= hi)
        resid = clean_q[m][j, sel] - exp_q[m][j, sel]
        sigma = float(np.std(resid))
        if series[m].name == "queue_depth":
            sigma = max(sigma, 0.5)
        q = clean_q[m][j, sel]
        repeats = float(np.mean(np.diff(q) == 0)) if q.size > 1 else 1.0
        return float(np.mean(exp_q[m][j, sel])), sigma, repeats

    def plan(m: int, j: int, kind: str, a_range: tuple[int, int], live: bool) -> _Plan | None:
        name = series[m].name
        got = _choose(inc_rng, kind, name, a_range, n, live=live)
        if got is None:
            return None
        a, b, size = got
        sig_lo = end - 4 * 3600 if live else tf[a] - 4 * 3600
        sig_hi = end if live else tf[a]
        _, sigma, repeats = stats(m, j, sig_lo, sig_hi)
        level = float(np.mean(series[m].exp[j, a : min(b, n)]))
        if not _eligible(kind, name, level, sigma, repeats):
            return None
        unit = {"request_rate": 1 / 60, "queue_depth": 1.0}.get(name)
        if unit is not None and kind in ("spike", "dip", "level_shift"):
            # whole counts per minute / whole jobs: the size the note gives is the one written
            lo_k, hi_k = (6.0, 9.0) if kind == "level_shift" else (8.0, 14.0)
            steps = min(
                max(round(size * sigma / unit), math.ceil(lo_k * sigma / unit - 1e-9)),
                math.floor(hi_k * sigma / unit + 1e-9),
            )
            if steps * unit < lo_k * sigma * (1 - 1e-9):
                return None
            size = steps * unit / sigma
        sign = 1.0
        if kind == "dip":
            sign = -1.0
        elif kind == "level_shift":
            up = name not in ("error_ratio", "completion_ratio") or level + 9 * sigma <= 0.999
            down = level - 9 * sigma >= 0.2 * level
            sign = float(inc_rng.choice([-1.0, 1.0])) if up and down else (1.0 if up else -1.0)
        return _Plan(m, j, kind, a, b, size, sign, sigma, level)

    # Live incidents: 40–50 % of the series, on the troubled tenants only.
    n_series = 6 * n_t
    n_quiet = max(6, round(n_t * inc_rng.uniform(0.3, 0.4)))
    order = [int(x) for x in inc_rng.permutation(n_t)]
    troubled = sorted(order[n_quiet:])
    target = min(round(n_series * inc_rng.uniform(0.40, 0.50)), 6 * len(troubled))
    first = [(j, int(inc_rng.integers(6))) for j in troubled]
    others = [(j, m) for j in troubled for m in range(6) if (j, m) not in set(first)]
    others = [others[i] for i in inc_rng.permutation(len(others))]
    e = n - 1  # index of the newest sample
    ranges = {
        "spike": (e - 30, e),
        "dip": (e - 30, e),
        "outage": (e - 25, e - 10),
        "flatline": (e - 40, e - 30),
        "level_shift": (e - 30, e - 10),
        "variance_burst": (e - 30, e - 10),
    }
    count = dict.fromkeys(LIVE_KINDS, 0)
    live: list[_Plan] = []
    covered: set[int] = set()
    for j, m in first + others:
        if len(live) >= target:
            break
        kinds = sorted(LIVE_KINDS, key=lambda k: (count[k], inc_rng.random()))
        for kind in kinds:
            p = plan(m, j, kind, ranges[kind], True)
            if p is not None:
                live.append(p)
                count[kind] += 1
                covered.add(j)
                break

    # Past incidents: 30 % of the series, in the training window, healed well before the end.
    lo_a = int(min(2 * DAY / MINUTE, 0.2 * n))
    hi_a = int(n - 1 - 10 * 60 - 8 * 60)
    past: list[_Plan] = []
    if hi_a > lo_a + 240:
        for flat in inc_rng.permutation(n_series)[: round(0.3 * n_series)]:
            m, j = int(flat) % 6, int(flat) // 6
            for kind in inc_rng.permutation(LIVE_KINDS):
                p = plan(m, j, str(kind), (max(lo_a, 241), hi_a), False)
                if p is not None:
                    past.append(p)
                    break

    for p in past + live:
        _apply(series[p.metric], p)
    values = {s.name: _finish(s) for s in series}
    _write(workdir / "data.om", names, t, values)

    incidents = []
    for p in sorted(live, key=lambda p: (p.tenant, p.metric)):
        name = series[p.metric].name
        counter = name in COUNTERS
        start = float(t[p.a]) - (MINUTE if counter else 0.0)
        stop = float(t[0]) + MINUTE * (p.b - 1) + (4 * MINUTE if counter else 0.0)
        incidents.append(Incident(names[p.tenant], name, p.kind, start, stop, _note(p, name)))

    entries = []
    for name, family, typ, _, team, severity in METRICS:
        if typ == "counter":
            query = f"sum by (organization_id) (rate({family}_total[5m]))"
        else:
            query = f"max by (organization_id) ({family})"
        entries.append(MetricEntry(name, query, {"team": team, "severity": severity}))

    assert all(i.start >= end - JUDGED_SECONDS or i.end >= end - JUDGED_SECONDS for i in incidents)
    return Scenario(
        generator="calendars",
        seed=seed,
        openmetrics=workdir / "data.om",
        end=float(end),
        step_seconds=float(STEP),
        metrics=tuple(entries),
        tenants=tuple(names),
        incidents=tuple(incidents),
        objectives=OBJECTIVES,
    )


GENERATOR = Generator(
    name="calendars",
    make=make,
    tuned=False,
    seeds=(1, 2),
    measure_seeds=(3, 4),
    description=(
        "16–24 ProcessAudit tenants × 6 metrics, 11 days of 1-minute samples, each tenant on its "
        "own local calendar: UTC offsets −10 h…+12:45 with half and quarter hours, Friday–"
        "Saturday / Thursday–Friday weekends and six-day weeks, weekend strength 0–60 %, a "
        "public holiday in the last week for a quarter, a DST switch inside the window for "
        "some, a weekly evening batch for 2–3; counters read through rate(), a sparse AI-cost "
        "counter, integer queue depths; 40–50 % of the series with a live incident sized in "
        "noise widths of the 5-minute query output, 30 % with a past one."
    ),
)
