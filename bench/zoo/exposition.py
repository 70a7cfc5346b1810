"""The exposition generator: series as Prometheus exposes them and as users query them.

Design
------
The detector never sees a clean signal here: it sees the *output of PromQL* over raw scrapes.
Each tenant (label ``organization_id="org-NN"``) is served by 2-3 API pods, scraped every 60 s
with a per-target scrape phase. Pods restart 2-5 times per tenant (the counters start again near
0, a scrape or two is missing, and what the pod served since its last scrape is lost), roll out
1-3 times (a new pod name appears, the old one disappears a minute later), and a third of the
tenants scale out by one pod through their busy hours (a new pod series every day, up to 4
pods). Such churn moves ``sum(rate())`` for a point or two, as it does in Prometheus; it is in
the expected path too, and none happens unscheduled in the last 3 hours. What is exposed:

========================================  ==========================================================
raw family                                config query (what the detector reads, ``step: 5m``)
========================================  ==========================================================
``pa_exp_http_requests_total`` per pod    ``sum by (organization_id) (rate(...[5m]))``
``pa_exp_request_duration_seconds``       ``histogram_quantile(0.95, sum by (organization_id, le)
histogram per pod (5 buckets)             (rate(..._bucket[5m])))``
``pa_exp_jobs_failed_total`` per worker   ``sum by (organization_id) (increase(...[1h]))``: sparse,
                                          1.5-6 failures an hour at peak
``pa_exp_db_connections_in_use`` per      ``max by (organization_id) (...)``: integer, additive
tenant on two pgbouncer instances         noise
``pa_exp_replicas`` (kube-state-metrics)  ``sum by (organization_id) (...)``: whole pods
``pa_exp_ai_tokens_total`` (AI gateway)   ``sum by (organization_id) (rate(...[5m]))``: a gateway
                                          restart resets every tenant's counter at once
========================================  ==========================================================

Every tenant lives on a local clock (whole-hour offsets, two half hours among them); half of
them switch daylight-saving time inside the training window (the local pattern moves one hour
in UTC from that date on); a third work six-day weeks; about a third have a night batch hour
(requests, database connections and job failures high in a local night hour). The request load
is a working-day plateau between smooth ramps with a midday peak, a weaker off-day plateau
(40-90 %), a night floor with its low near 04:00, a per-weekday level and a slow hourly wander.

Incidents are sized in *noise widths of each query's own 5-minute output*: the generator runs
its PromQL emulation (:func:`rate_like`, :func:`histogram_quantile`, :func:`instant`; the
semantics of Prometheus 2.42, checked against a real Prometheus by the tests) on the observed
raw data and on the noise-free expected raw data. The noise width is the standard deviation of
their difference (points beyond 4 robust standard deviations dropped) at the judged time of day
(+-2 h) over the training days, in the world without incidents. Sizes are promised per kind in
:data:`SIZE_RANGES`. Half of the tenants carry one live incident in the judged window (a request
outage also lists its latency companion: with no requests the p95 has no value); 30 % carry a
past incident in training, which the answer key does not list. One case is hard on purpose: a
connection pool that rises in a night-batch hour a day or two after its tenant's clocks moved
(where the history before the switch has the night level), and a quiet tenant with the same
calendar (batch hour, recent switch, judged in its batch hour) sits beside it.

Writing: :func:`make` builds the world (:func:`build`) and writes ``data.om`` (OpenMetrics, one
family per metric name; counters drop ``_total`` in the family name; the histogram is a
``histogram`` family with ``_bucket``/``_count``/``_sum``; timestamps in seconds).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from bench.zoo import JUDGED_SECONDS, Generator, Incident, MetricEntry, Scenario

SCRAPE_SECONDS = 60
STEP_SECONDS = 300.0
END_BASE = datetime(2026, 11, 19, 9, tzinfo=timezone.utc).timestamp()
"""Scenarios end at this round hour plus a seed-dependent number of hours."""
LATEST_END = datetime(2026, 12, 6, tzinfo=timezone.utc).timestamp()
LOOKBACK_SECONDS = 300.0
"""Prometheus' default lookback delta for instant selectors."""

BUCKETS = (0.25, 0.5, 1.0, 2.5, math.inf)
LE_LABELS = ("0.25", "0.5", "1.0", "2.5", "+Inf")

PART = ("requests", "latency", "failures", "db", "replicas", "tokens")
"""The simulated parts; each config metric reads one (latency reads the requests too)."""

REQ, P95, FAIL, DB, REPL, TOK = (
    "http_requests_rate",
    "latency_p95_seconds",
    "jobs_failed_1h",
    "db_connections_in_use",
    "replicas",
    "ai_tokens_rate",
)

METRICS = (
    MetricEntry(
        REQ,
        "sum by (organization_id) (rate(pa_exp_http_requests_total[5m]))",
        {"team": "platform", "severity": "critical"},
    ),
    MetricEntry(
        P95,
        "histogram_quantile(0.95, sum by (organization_id, le) "
        "(rate(pa_exp_request_duration_seconds_bucket[5m])))",
        {"team": "product", "severity": "critical"},
    ),
    MetricEntry(
        FAIL,
        "sum by (organization_id) (increase(pa_exp_jobs_failed_total[1h]))",
        {"team": "customer-success", "severity": "warning"},
    ),
    MetricEntry(
        DB,
        "max by (organization_id) (pa_exp_db_connections_in_use)",
        {"team": "platform", "severity": "warning"},
    ),
    MetricEntry(
        REPL,
        "sum by (organization_id) (pa_exp_replicas)",
        {"team": "platform", "severity": "info"},
    ),
    MetricEntry(
        TOK,
        "sum by (organization_id) (rate(pa_exp_ai_tokens_total[5m]))",
        {"team": "ai", "severity": "warning"},
    ),
)

OBJECTIVES = (
    {"metric": P95, "max": 2.0},
    {"metric": DB, "max": 60.0},
    {"metric": FAIL, "max": 40.0},
)
"""Health objectives; clean tenants meet them (the tests check it over the last day)."""

SIZE_RANGES: dict[str, tuple[float, float]] = {
    "level_shift": (5.0, 10.0),
    "spike": (8.0, 16.0),
    "outage": (5.0, math.inf),
    "variance_burst": (3.0, 12.0),
    "flatline": (0.0, 0.3),
}
"""Promised size of each live incident in noise widths of its query's 5-minute output.

level_shift, spike, outage: the largest departure of the expected (noise-free) query output from
the one without the incident, over the incident's evaluation points. variance_burst: the RMS of
the observed output's residual (observed minus expected, less its usual median) over the points
whose window lies inside the burst. flatline: the standard deviation of the observed output's
step-to-step change during the flatline over ``sqrt(2)`` noise widths (how far the variation
collapsed; ~0 held, ~1 normal)."""

_TARGET = {"level_shift": (5.5, 9.5), "spike": (9.0, 14.0)}
_WIDTH_FLOOR = {REQ: 1e-3, P95: 1e-3, FAIL: 0.5, DB: 0.5, REPL: 0.25, TOK: 1e-3}
_WINDOW = {REQ: 300.0, P95: 300.0, FAIL: 3600.0, DB: 0.0, REPL: 0.0, TOK: 300.0}
_QUIET_TAIL_MINUTES = 180
"""No unscheduled pod event (restart, rollout) in the last 3 hours: what a quiet tenant shows
in the judged window is its own pattern (daily scale-outs included), not an unkeyed artifact."""


# --------------------------------------------------------------------------------------------
# PromQL emulation (Prometheus 2.42 semantics)


def rate_like(
    ts: np.ndarray, vs: np.ndarray, at: np.ndarray, window: float, per_second: bool
) -> np.ndarray:
    """``rate`` (`per_second`) or ``increase`` of counter samples, as Prometheus 2.42 computes
    ``extrapolatedRate``.

    `ts` (n,) sample times (s, increasing), `vs` (k, n) counter values of k series that share
    those times, `at` (E,) evaluation times. Windows are closed ``[T - window, T]``; resets (a
    decrease) add the value before them; the result is extrapolated to the window edges when
    the first/last sample lies within 1.1 average intervals of them (else by half an interval),
    and not past the counter's zero point. Returns (k, E); NaN where fewer than two samples.
    """
    vs = np.atleast_2d(np.asarray(vs, dtype=float))
    out = np.full((vs.shape[0], at.size), np.nan)
    if ts.size < 2:
        return out
    lo = np.searchsorted(ts, at - window, "left")
    hi = np.searchsorted(ts, at, "right") - 1
    ok = (hi - lo) >= 1
    if not ok.any():
        return out
    lo, hi, t_at = lo[ok], hi[ok], at[ok]
    drop = vs[:, 1:] < vs[:, :-1]
    carried = np.cumsum(np.where(drop, vs[:, :-1], 0.0), axis=1)
    corrected = vs + np.concatenate([np.zeros((vs.shape[0], 1)), carried], axis=1)
    result = corrected[:, hi] - corrected[:, lo]
    t0, t1 = ts[lo], ts[hi]
    sampled = t1 - t0
    average = sampled / (hi - lo)
    to_start = np.broadcast_to(t0 - (t_at - window), result.shape).copy()
    to_end = t_at - t1
    first = vs[:, lo]
    clamp = (result > 0) & (first >= 0)
    to_zero = sampled * first / np.where(clamp, result, 1.0)
    to_start = np.where(clamp & (to_zero < to_start), to_zero, to_start)
    threshold = average * 1.1
    span = (
        sampled
        + np.where(to_start < threshold, to_start, average / 2)
        + np.where(to_end < threshold, to_end, average / 2)
    )
    value = result * span / sampled
    if per_second:
        value = value / window
    out[:, ok] = value
    return out


def instant(ts: np.ndarray, vs: np.ndarray, at: np.ndarray) -> np.ndarray:
    """An instant selector: the newest sample at or before each T within the 5-minute lookback
    (NaN where none)."""
    idx = np.searchsorted(ts, at, "right") - 1
    ok = idx >= 0
    ok[ok] = ts[idx[ok]] >= at[ok] - LOOKBACK_SECONDS
    out = np.full(at.shape, np.nan)
    out[ok] = np.asarray(vs, dtype=float)[idx[ok]]
    return out


def histogram_quantile(q: float, bounds: Sequence[float], counts: np.ndarray) -> np.ndarray:
    """``histogram_quantile(q, ...)`` of cumulative bucket values `counts` (K, E) with upper
    bounds `bounds` (ascending, the last +Inf): made monotonic, the rank found in the first
    bucket that reaches it and interpolated linearly within it (from 0 for the first bucket);
    the +Inf bucket answers the largest finite bound; NaN with no observations."""
    c = np.maximum.accumulate(np.asarray(counts, dtype=float), axis=0)
    k = c.shape[0]
    total = c[-1]
    rank = q * total
    reached = c[:-1] >= rank
    b = np.where(reached.any(axis=0), reached.argmax(axis=0), k - 1)
    upper = np.asarray(bounds, dtype=float)
    lower = np.concatenate([[0.0], upper[:-1]])
    cols = np.arange(c.shape[1])
    below = np.where(b > 0, c[np.maximum(b - 1, 0), cols], 0.0)
    inside = c[b, cols] - below
    with np.errstate(invalid="ignore", divide="ignore"):
        value = lower[b] + (upper[b] - lower[b]) * (rank - below) / inside
    value = np.where(b == k - 1, upper[k - 2], value)
    bad = ~(total > 0) | np.isnan(c).any(axis=0)
    return np.where(bad, np.nan, value)


def _sum_by(rows: np.ndarray) -> np.ndarray:
    """``sum`` over series (rows), NaN where no series has a value (PromQL: no result)."""
    if rows.size == 0:
        return np.full(rows.shape[-1], np.nan)
    present = ~np.isnan(rows)
    return np.where(present.any(axis=0), np.nansum(rows, axis=0), np.nan)


# --------------------------------------------------------------------------------------------
# The world


@dataclass
class _Pods:
    names: list[str]
    alive: np.ndarray  # (P, M) bool: a sample exists
    serve: np.ndarray  # (P, M) load-balancer weight (lost share at a crash minute)
    reset: np.ndarray  # (P, M) bool: the counter starts again at this minute
    phase: np.ndarray  # (P,) int seconds before the minute mark
    events: np.ndarray  # (M,) bool: a roster change (birth, death, restart) at the minute


@dataclass
class _Tenant:
    index: int
    name: str
    offset_h: float
    switch: float | None
    dst_h: float
    six_day: bool
    off_weight: float
    night: float
    up: tuple[float, float]
    down: tuple[float, float]
    batch: tuple[float, float] | None  # (local start hour, minutes)
    rps: float
    req_noise: float
    beta: float
    p95: float
    lat_sigma: float
    lat_jitter: float
    fail_rate: float
    fail_batch: float
    db_night: float
    db_day: float
    db_batch: float
    db_noise: float
    db_bias: tuple[float, float]
    calls: float
    ai_night: float
    tokens_per_call: float
    base_pods: int
    autoscale: tuple[float, float] | None
    # filled by _calendar
    local_hour: np.ndarray = field(default_factory=lambda: np.zeros(0))
    day: np.ndarray = field(default_factory=lambda: np.zeros(0))  # working-day plateau 0..1
    profile: np.ndarray = field(default_factory=lambda: np.zeros(0))  # night floor..1
    batch_on: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    wander: np.ndarray = field(default_factory=lambda: np.zeros(0))
    pods: _Pods | None = None
    worker_alive: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    worker_reset: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    worker_phase: int = 0
    tags: tuple[str, ...] = ()


@dataclass
class _Plan:
    """One incident as injected: minute range ``[j0, j1)`` on the tenant's part."""

    tenant: int
    metric: str
    kind: str
    t0: float
    t1: float
    live: bool
    mag: float = 0.0


@dataclass
class Output:
    """One (tenant, metric): the raw series it writes and its query output (obs and expected)."""

    series: list[tuple[str, str, np.ndarray, np.ndarray]]
    """(family sample name, label text, times, values) per raw series."""
    obs: np.ndarray
    exp: np.ndarray


@dataclass
class World:
    """A built scenario before it is written: raw series, query outputs and the key."""

    seed: int
    end: float
    minutes: np.ndarray
    at: np.ndarray
    """Evaluation times of the emulated queries (multiples of 300 s)."""
    tenants: list[_Tenant]
    outputs: dict[tuple[int, str], Output]
    widths: dict[tuple[int, str], float]
    plans: list[_Plan]
    sizes: list[float]
    """Size in noise widths of each live plan, in :attr:`plans` order of live ones."""
    incidents: tuple[Incident, ...]
    medians: dict[tuple[int, str], float] = field(default_factory=dict)
    """Median residual (obs - exp) next to each noise width (:attr:`widths`)."""
    clean: dict[tuple[int, str], Output] = field(default_factory=dict)
    """Query outputs (no raw series) of every live plan's (tenant, metric) without incidents."""
    gateway_phase: int = 0
    pgbouncer_phase: tuple[int, int] = (0, 0)
    ksm_phase: int = 0
    gateway_alive: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))

    @property
    def samples(self) -> int:
        return sum(v.size for o in self.outputs.values() for _, _, _, v in o.series)


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def _norm_cdf(z: np.ndarray) -> np.ndarray:
    """Standard normal CDF (Abramowitz-Stegun 7.1.26 erf, |error| < 1.5e-7)."""
    x = np.abs(z) / math.sqrt(2)
    t = 1 / (1 + 0.3275911 * x)
    poly = t * (
        0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429)))
    )
    erf = 1 - poly * np.exp(-x * x)
    return 0.5 * (1 + np.sign(z) * erf)


def _local_seconds(t: _Tenant, g: np.ndarray) -> np.ndarray:
    off = np.full(g.shape, t.offset_h)
    if t.switch is not None:
        off = np.where(g >= t.switch, t.offset_h + t.dst_h, off)
    return g + 3600.0 * off


def _calendar(t: _Tenant, g: np.ndarray, rng: np.random.Generator) -> None:
    local = _local_seconds(t, g)
    hour = (local % 86400.0) / 3600.0
    dow = (np.floor(local / 86400.0).astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday
    workday = dow <= (5 if t.six_day else 4)
    day_part = _smoothstep((hour - t.up[0]) / t.up[1]) * (
        1 - _smoothstep((hour - t.down[0]) / t.down[1])
    )
    peak_hour, peak = rng.uniform(10.5, 15.5), rng.uniform(0.1, 0.3)
    day_part = day_part * (1 - peak + peak * np.exp(-(((hour - peak_hour) / 3.0) ** 2)))
    from_4am = np.abs((hour - 4.0 + 12.0) % 24.0 - 12.0)
    night_shape = 1 - 0.25 * np.exp(-((from_4am / 2.5) ** 2))  # the night's low near 04:00
    dow_level = 1 + 0.04 * rng.standard_normal(7)
    week = np.where(workday, dow_level[dow], t.off_weight)
    t.local_hour = hour
    t.day = day_part * week
    t.profile = t.night * night_shape + (1 - t.night) * t.day
    if t.batch is None:
        t.batch_on = np.zeros(g.shape, dtype=bool)
    else:
        since = (hour - t.batch[0]) % 24.0
        t.batch_on = since < t.batch[1] / 60.0
    hours = int(math.ceil((g[-1] - g[0]) / 3600.0)) + 2
    ar = np.zeros(hours)
    shocks = 0.01 * rng.standard_normal(hours)
    for i in range(1, hours):
        ar[i] = 0.9 * ar[i - 1] + shocks[i]
    t.wander = np.exp(np.interp(g, g[0] + 3600.0 * np.arange(hours), ar))


def _roster(t: _Tenant, g: np.ndarray, rng: np.random.Generator) -> _Pods:
    m = g.size
    cutoff = m - _QUIET_TAIL_MINUTES
    lives: list[list[int]] = []  # [birth, death)

    def add(birth: int, death: int) -> int:
        lives.append([birth, death])
        return len(lives) - 1

    slots = [add(0, m) for _ in range(t.base_pods)]
    n_roll = int(rng.integers(1, 4))
    lo_roll = min(360, cutoff // 4)
    rolls: list[int] = []
    if cutoff > 60:
        rolls = sorted(rng.integers(lo_roll, max(lo_roll + 1, cutoff - 10), n_roll).tolist())
    for tau in rolls:
        for s, pod in enumerate(slots):
            if lives[pod][1] <= tau:
                continue
            lives[pod][1] = int(tau) + 2 * s + 1
            slots[s] = add(int(tau) + 2 * s, m)
    if t.autoscale is not None:
        hour = t.local_hour
        on = (hour >= t.autoscale[0]) & (hour < t.autoscale[1]) & (t.day > 0.5)
        edges = np.flatnonzero(np.diff(np.concatenate([[0], on.astype(np.int8), [0]])))
        for b, d in zip(edges[::2], edges[1::2], strict=True):
            if d - b >= 30:
                add(int(b), int(d))
    order = np.argsort([b for b, _ in lives], kind="stable")
    lives = [lives[i] for i in order]
    p = len(lives)
    alive = np.zeros((p, m), dtype=bool)
    reset = np.zeros((p, m), dtype=bool)
    events = np.zeros(m, dtype=bool)
    for i, (b, d) in enumerate(lives):
        alive[i, b:d] = True
        reset[i, b] = True
        events[b] = True
        if d < m:
            events[d] = True
    weight = 1 + 0.06 * rng.standard_normal(p)
    serve = alive * weight[:, None]
    n_restart = int(rng.integers(2, 6))
    for _ in range(n_restart):
        if cutoff < 120:
            break
        r = int(rng.integers(60, cutoff))
        candidates = [i for i, (b, d) in enumerate(lives) if b + 5 < r and r + 8 < d]
        if not candidates:
            continue
        i = candidates[int(rng.integers(len(candidates)))]
        down = int(rng.integers(1, 3))
        alive[i, r : r + down] = False
        serve[i, r] = weight[i] * rng.uniform(0.1, 0.9)  # served, never scraped: lost
        serve[i, r + 1 : r + down] = 0.0
        reset[i, r + down] = True
        events[r] = True
    names = [f"api-{t.name}-{i + 1}" for i in range(p)]
    phase = rng.integers(0, SCRAPE_SECONDS, p)
    return _Pods(names, alive, serve, reset, phase, events)


def _counter(inc: np.ndarray, reset: np.ndarray) -> np.ndarray:
    """Counter values from per-minute increments, restarting at `reset` minutes (..., M)."""
    c = np.cumsum(inc, axis=-1)
    before = c - inc
    idx = np.where(reset, np.arange(inc.shape[-1]), 0)
    idx = np.maximum.accumulate(idx, axis=-1)
    return c - np.take_along_axis(before, idx, axis=-1)


def _steady(rate: np.ndarray, start: float = 0.37) -> np.ndarray:
    """Integer increments whose running sum follows ``cumsum(rate)``: a constant rate read
    through integer counters (alternating by rounding)."""
    total = np.floor(np.cumsum(rate, axis=-1) + start)
    return np.diff(total, axis=-1, prepend=np.floor(start))


# --------------------------------------------------------------------------------------------
# Simulation of one tenant's part


def _in(plans: list[_Plan], metric: str) -> list[_Plan]:
    return [p for p in plans if p.metric == metric]


def _span(p: _Plan, g: np.ndarray) -> slice:
    j0 = int(np.searchsorted(g, p.t0, "left"))
    j1 = int(np.searchsorted(g, p.t1, "left"))
    return slice(j0, max(j0, j1))


def _simulate(
    w: World,
    t: _Tenant,
    metric: str,
    plans: list[_Plan],
    seed: int,
    attempt: int,
    request_attempt: int = 0,
) -> Output:
    """Raw series and query outputs of one tenant's `metric` under `plans`. `attempt` draws
    the noise of the metric's own part; the latency histogram counts the requests that the
    requests part drew with `request_attempt`."""
    g = w.minutes
    at = w.at
    if metric in (REQ, P95):
        return _simulate_api(w, t, metric, plans, seed, attempt, request_attempt)
    rng = np.random.default_rng([seed, t.index, PART.index(_part(metric)), attempt])
    labels = f'organization_id="{t.name}"'
    if metric == FAIL:
        lam = (t.fail_rate * (0.3 + 0.7 * t.profile) + t.fail_batch * t.batch_on) / 60.0
        exp = lam.copy()
        extra = np.zeros(g.size)
        for p in _in(plans, FAIL):
            s = _span(p, g)
            if p.kind == "level_shift":
                exp[s] *= 1 + p.mag
            elif p.kind == "spike":
                burst = np.full(min(3, s.stop - s.start), 0.0)
                n = int(round(p.mag))
                burst += n // burst.size
                burst[: n % burst.size] += 1
                extra[s.start : s.start + burst.size] += burst
        inc = rng.poisson(exp) + extra
        exp = exp + extra
        alive, reset = t.worker_alive, t.worker_reset
        ts = (g - t.worker_phase)[alive]
        vals = _counter(np.where(alive, inc, 0), reset)[alive]
        evals = _counter(np.where(alive, exp, 0), reset)[alive]
        obs_q = rate_like(ts, vals, at, 3600.0, False)[0]
        exp_q = rate_like(ts, evals, at, 3600.0, False)[0]
        series = [("pa_exp_jobs_failed_total", f'{labels},pod="worker-{t.name}"', ts, vals)]
        return Output(series, obs_q, exp_q)
    if metric == DB:
        level = t.db_night + (t.db_day - t.db_night) * t.day + t.db_batch * t.batch_on
        noise_mult = np.ones(g.size)
        shift = np.zeros(g.size)
        held: list[slice] = []
        for p in _in(plans, DB):
            s = _span(p, g)
            if p.kind in ("level_shift", "spike"):
                shift[s] += p.mag
            elif p.kind == "variance_burst":
                noise_mult[s] = p.mag
            elif p.kind == "flatline":
                held.append(s)
        obs_rows, exp_rows, series = [], [], []
        for i in range(2):
            lvl = level * (1 + t.db_bias[i]) + shift
            z = rng.standard_normal(g.size)
            val = np.clip(np.round(lvl + t.db_noise * noise_mult * z), 0, None)
            for s in held:
                val[s] = val[s.start - 1]
            ts = g - w.pgbouncer_phase[i]
            obs_rows.append(instant(ts, val, at))
            exp_rows.append(instant(ts, lvl, at))
            series.append(
                ("pa_exp_db_connections_in_use", f'{labels},instance="pgbouncer-{i}"', ts, val)
            )
        return Output(series, np.nanmax(obs_rows, axis=0), np.nanmax(exp_rows, axis=0))
    if metric == REPL:
        assert t.pods is not None
        count = t.pods.alive.sum(axis=0).astype(float)
        ts = g - w.ksm_phase
        q = instant(ts, count, at)
        return Output([("pa_exp_replicas", f'{labels},deployment="api-{t.name}"', ts, count)], q, q)
    if metric == TOK:
        calls = t.calls * (t.ai_night + (1 - t.ai_night) * t.day) * t.wander
        factor = np.ones(g.size)
        noise_mult = np.ones(g.size)
        flat: list[slice] = []
        for p in _in(plans, TOK):
            s = _span(p, g)
            if p.kind in ("level_shift", "spike"):
                factor[s] *= 1 + p.mag
            elif p.kind == "outage":
                factor[s] = 0.0
            elif p.kind == "variance_burst":
                noise_mult[s] = p.mag
            elif p.kind == "flatline":
                flat.append(s)
        calls = calls * factor
        n = rng.poisson(calls)
        shape = 1.5
        tokens = np.where(
            n > 0, rng.gamma(np.maximum(n, 1) * shape, t.tokens_per_call / shape), 0.0
        )
        exp = calls * t.tokens_per_call
        tokens = np.clip(exp + noise_mult * (tokens - exp), 0, None)
        inc = np.round(tokens)
        for s in flat:
            inc[s] = _steady(np.full(s.stop - s.start, exp[s.start]))
            exp[s] = exp[s.start]
        alive = w.gateway_alive
        reset = alive & ~np.concatenate([[False], alive[:-1]])
        ts = (g - w.gateway_phase)[alive]
        vals = _counter(np.where(alive, inc, 0), reset)[alive]
        evals = _counter(np.where(alive, exp, 0), reset)[alive]
        obs_q = rate_like(ts, vals, at, 300.0, True)[0]
        exp_q = rate_like(ts, evals, at, 300.0, True)[0]
        series = [("pa_exp_ai_tokens_total", f'{labels},model="assistant"', ts, vals)]
        return Output(series, obs_q, exp_q)
    raise ValueError(metric)


def _part(metric: str) -> str:
    return {REQ: "requests", P95: "latency", FAIL: "failures", DB: "db", REPL: "replicas"}.get(
        metric, "tokens"
    )


def _simulate_api(
    w: World,
    t: _Tenant,
    metric: str,
    plans: list[_Plan],
    seed: int,
    attempt: int,
    request_attempt: int,
) -> Output:
    """Requests and the latency histogram of one tenant's pods (the histogram counts the
    requests actually served); returns the `metric` the caller asked for."""
    g, at = w.minutes, w.at
    pods = t.pods
    assert pods is not None
    req_attempt = attempt if metric == REQ else request_attempt
    lat_attempt = attempt if metric == P95 else 0
    rng_r = np.random.default_rng([seed, t.index, 0, req_attempt])
    rng_l = np.random.default_rng([seed, t.index, 1, lat_attempt])
    lam = t.rps * (t.profile * t.wander + t.beta * t.batch_on)
    factor = np.ones(g.size)
    extra = np.zeros(g.size)
    noise_mult = np.ones(g.size)
    flat: list[slice] = []
    req_plans = _in(plans, REQ)
    for p in req_plans:
        s = _span(p, g)
        if p.kind == "level_shift":
            factor[s] *= 1 - p.mag
        elif p.kind == "spike":
            extra[s] += p.mag * lam[s]
        elif p.kind == "outage":
            factor[s] = 0.0
        elif p.kind == "variance_burst":
            noise_mult[s] = p.mag
        elif p.kind == "flatline":
            flat.append(s)
    lam = lam * factor + extra * factor
    total = pods.serve.sum(axis=0)
    share = np.divide(pods.serve, total, out=np.zeros_like(pods.serve), where=total > 0)
    exp_inc = lam * 60.0 * share
    sigma = t.req_noise * noise_mult
    eps = np.exp(sigma * rng_r.standard_normal(g.size) - 0.5 * sigma**2)
    served = rng_r.poisson(exp_inc * eps).astype(float)
    counted = served.copy()
    exp_counted = exp_inc.copy()
    for s in flat:
        per_pod = exp_inc[:, s.start][:, None] * np.ones(s.stop - s.start)
        counted[:, s] = _steady(per_pod)
        exp_counted[:, s] = per_pod
    alive = pods.alive
    if metric == REQ:
        vals = _counter(np.where(alive, counted, 0), pods.reset)
        evals = _counter(np.where(alive, exp_counted, 0), pods.reset)
        obs_rows, exp_rows, series = [], [], []
        for i, name in enumerate(pods.names):
            idx = np.flatnonzero(alive[i])
            ts = g[idx] - pods.phase[i]
            obs_rows.append(rate_like(ts, vals[i, idx], at, 300.0, True)[0])
            exp_rows.append(rate_like(ts, evals[i, idx], at, 300.0, True)[0])
            series.append(
                (
                    "pa_exp_http_requests_total",
                    f'organization_id="{t.name}",pod="{name}"',
                    ts,
                    vals[i, idx],
                )
            )
        return Output(series, _sum_by(np.array(obs_rows)), _sum_by(np.array(exp_rows)))
    # latency
    median = t.p95 / math.exp(1.645 * t.lat_sigma) * (0.8 + 0.35 * t.profile)
    jitter_mult = np.ones(g.size)
    for p in _in(plans, P95):
        s = _span(p, g)
        if p.kind in ("level_shift", "spike"):
            median[s] = median[s] * (1 + p.mag)
        elif p.kind == "variance_burst":
            jitter_mult[s] = p.mag
    jit = t.lat_jitter * jitter_mult
    median_obs = median * np.exp(jit * rng_l.standard_normal(g.size))
    k = len(BUCKETS)
    cdf_obs = np.ones((k, g.size))
    cdf_exp = np.ones((k, g.size))
    for b, le in enumerate(BUCKETS[:-1]):
        cdf_obs[b] = _norm_cdf((math.log(le) - np.log(median_obs)) / t.lat_sigma)
        cdf_exp[b] = _norm_cdf((math.log(le) - np.log(median)) / t.lat_sigma)
    n = np.where(alive, served, 0).astype(np.int64)
    cum = np.zeros((k,) + n.shape)
    cum[k - 1] = n
    for b in range(k - 2, -1, -1):
        ratio = np.clip(cdf_obs[b] / np.maximum(cdf_obs[b + 1], 1e-300), 0.0, 1.0)
        cum[b] = rng_l.binomial(cum[b + 1].astype(np.int64), np.broadcast_to(ratio, n.shape))
    exp_n = np.where(alive, exp_inc, 0.0)
    cum_exp = cdf_exp[:, None, :] * exp_n[None, :, :]
    mean = median_obs * math.exp(t.lat_sigma**2 / 2)
    sd = mean * math.sqrt(math.exp(t.lat_sigma**2) - 1)
    total_seconds = np.clip(n * mean + np.sqrt(n) * sd * rng_l.standard_normal(n.shape), 0, None)
    vals = _counter(cum, pods.reset[None])
    evals = _counter(cum_exp, pods.reset[None])
    sums = _counter(np.where(alive, total_seconds, 0.0), pods.reset)
    obs_b = np.zeros((k, at.size))
    exp_b = np.zeros((k, at.size))
    seen = np.zeros(at.size, dtype=bool)
    series = []
    for i, name in enumerate(pods.names):
        idx = np.flatnonzero(alive[i])
        ts = g[idx] - pods.phase[i]
        ro = rate_like(ts, vals[:, i, idx], at, 300.0, True)
        re = rate_like(ts, evals[:, i, idx], at, 300.0, True)
        has = ~np.isnan(ro[0])
        seen |= has
        obs_b += np.nan_to_num(ro)
        exp_b += np.nan_to_num(re)
        lab = f'organization_id="{t.name}",pod="{name}"'
        for b in range(k):
            series.append(
                (
                    "pa_exp_request_duration_seconds_bucket",
                    f'{lab},le="{LE_LABELS[b]}"',
                    ts,
                    vals[b, i, idx],
                )
            )
        series.append(("pa_exp_request_duration_seconds_count", lab, ts, vals[k - 1, i, idx]))
        series.append(("pa_exp_request_duration_seconds_sum", lab, ts, np.round(sums[i, idx], 3)))
    obs_q = np.where(seen, histogram_quantile(0.95, BUCKETS, obs_b), np.nan)
    exp_q = np.where(seen, histogram_quantile(0.95, BUCKETS, exp_b), np.nan)
    return Output(series, obs_q, exp_q)


# --------------------------------------------------------------------------------------------
# Drawing the world


_OFFSETS = (-8.0, -7.0, -6.0, -5.0, -4.0, -3.0, -3.5, 0.0, 1.0, 2.0, 3.0, 5.5, 7.0, 8.0, 9.0, 10.0)


def _snap_to_local_2am(t: float, offset_h: float) -> float:
    local = t + 3600.0 * offset_h
    snapped = math.floor((local - 7200.0) / 86400.0) * 86400.0 + 7200.0
    return snapped - 3600.0 * offset_h


def _wrap_offset(h: float) -> float:
    return (h + 11.0) % 24.0 - 11.0


def _draw_tenants(rng: np.random.Generator, n: int, g: np.ndarray) -> list[_Tenant]:
    start, end = float(g[0]), float(g[-1])
    span = end - start
    order = [int(i) for i in rng.permutation(n)]
    hard, trap = order[0], order[1]
    dst = set(order[: max(2, n // 2)])
    batch = {hard, trap} | {i for i in order[2:] if rng.random() < 0.3}
    six = {int(i) for i in rng.choice(n, max(1, round(0.3 * n)), replace=False)}
    auto = {int(i) for i in rng.choice(n, max(1, round(0.35 * n)), replace=False)}
    end_hour = (end % 86400.0) / 3600.0
    out = []
    for i in range(n):
        tags: tuple[str, ...] = ()
        switch: float | None = None
        dst_h = 0.0
        if i in (hard, trap):
            tags = ("hard",) if i == hard else ("trap",)
            b_hour = float(rng.integers(1, 4))
            b_len = 90.0
            post = _wrap_offset(b_hour + 1.0 - end_hour)  # the scenario ends 60 min into the batch
            dst_h = -1.0
            offset = post + 1.0
            back = rng.uniform(min(22.0, 0.3 * span / 3600), min(44.0, 0.5 * span / 3600))
            switch = _snap_to_local_2am(end - 3600.0 * back, offset)
            if switch < start + 0.2 * span:
                switch += 86400.0
        else:
            offset = float(rng.choice(_OFFSETS))
            b_hour = float(rng.integers(0, 5)) + float(rng.choice([0.0, 0.5]))
            b_len = float(rng.uniform(60, 120))
            if i in dst:
                dst_h = -1.0 if rng.random() < 0.7 else 1.0
                t_c = rng.uniform(start + 0.15 * span, end - 0.1 * span)
                switch = _snap_to_local_2am(t_c, offset)
                if switch < start + 0.05 * span:
                    switch += 86400.0
        has_batch = i in batch
        night_db = 9.0 if i in (hard, trap) else float(rng.uniform(3, 10))
        t = _Tenant(
            index=i,
            name=f"org-{i + 1:02d}",
            offset_h=offset,
            switch=switch if switch is not None and start < switch < end - 3600 else None,
            dst_h=dst_h,
            six_day=i in six,
            off_weight=float(rng.uniform(0.4, 0.9)),
            night=float(rng.uniform(0.12, 0.4)),
            up=(float(rng.uniform(6.5, 9.5)), float(rng.uniform(1.5, 3.0))),
            down=(float(rng.uniform(16.0, 19.0)), float(rng.uniform(2.5, 4.5))),
            batch=(b_hour, b_len) if has_batch else None,
            rps=float(math.exp(rng.uniform(math.log(6), math.log(150)))),
            req_noise=float(rng.uniform(0.035, 0.055)),
            beta=float(rng.uniform(0.3, 0.8)) if has_batch else 0.0,
            p95=float(rng.uniform(0.3, 0.7)),
            lat_sigma=float(rng.uniform(0.45, 0.65)),
            lat_jitter=float(rng.uniform(0.12, 0.22)),
            fail_rate=float(rng.uniform(1.5, 6.0)),
            fail_batch=float(rng.uniform(3, 10)) if has_batch else 0.0,
            db_night=night_db,
            db_day=night_db + float(rng.uniform(6, 18)),
            db_batch=(19.0 if i in (hard, trap) else float(rng.uniform(12, 22)))
            if has_batch
            else 0.0,
            db_noise=float(rng.uniform(2.6, 3.0) if i == hard else rng.uniform(1.0, 3.0)),
            db_bias=(float(rng.uniform(-0.04, 0.04)), float(rng.uniform(-0.04, 0.04))),
            calls=float(rng.uniform(3, 25)),
            ai_night=float(rng.uniform(0.05, 0.3)),
            tokens_per_call=float(rng.uniform(400, 2500)),
            base_pods=3 if rng.random() < 0.3 else 2,
            autoscale=(float(rng.uniform(8, 10.5)), float(rng.uniform(16.5, 19)))
            if i in auto
            else None,
            tags=tags,
        )
        _calendar(t, g, rng)
        t.pods = _roster(t, g, rng)
        m = g.size
        t.worker_alive = np.ones(m, dtype=bool)
        t.worker_reset = np.zeros(m, dtype=bool)
        t.worker_reset[0] = True
        for _ in range(int(rng.integers(0, 3))):
            if m - _QUIET_TAIL_MINUTES > 120:
                r = int(rng.integers(60, m - _QUIET_TAIL_MINUTES))
                t.worker_alive[r] = False
                t.worker_reset[r + 1] = True
        t.worker_phase = int(rng.integers(0, SCRAPE_SECONDS))
        out.append(t)
    return out


def _noise_width(
    w: World, out: Output, metric: str, exclude: Sequence[tuple[float, float]] = ()
) -> tuple[float, float]:
    """(width, median) of the residual obs - exp at the judged time of day (+-2 h) over the
    training days: its standard deviation about the median once points beyond 4 robust
    standard deviations (1.4826 MAD) are dropped, floored per metric."""
    at = w.at
    centre = (w.end - JUDGED_SECONDS / 2) % 86400.0
    tod = np.abs(((at % 86400.0) - centre + 43200.0) % 86400.0 - 43200.0)
    use = (at < w.end - JUDGED_SECONDS) & (tod <= 7200.0)
    for a, b in exclude:
        use &= (at < a) | (at > b + 3600.0)
    r = (out.obs - out.exp)[use]
    r = r[np.isfinite(r)]
    if r.size < 10:
        return _WIDTH_FLOOR[metric], 0.0
    med = float(np.median(r))
    robust = max(1.4826 * float(np.median(np.abs(r - med))), _WIDTH_FLOOR[metric])
    kept = r[np.abs(r - med) <= 4.0 * robust]  # integer gauges make the MAD coarse: clipped sd
    return max(float(np.sqrt(np.mean((kept - med) ** 2))), _WIDTH_FLOOR[metric]), med


def _points(w: World, a: float, b: float) -> np.ndarray:
    return (w.at >= a) & (w.at <= min(b, w.end))


def _size(w: World, p: _Plan, out: Output, clean: Output, width: float, median: float) -> float:
    """The size of live plan `p` in noise widths (see :data:`SIZE_RANGES`)."""
    window = _WINDOW[p.metric]
    if p.kind in ("level_shift", "spike", "outage"):
        use = _points(w, p.t0, p.t1 + window)
        d = np.abs(out.exp[use] - clean.exp[use])
        d = d[np.isfinite(d)]
        return float(d.max() / width) if d.size else 0.0
    use = _points(w, p.t0 + window, p.t1)
    if p.kind == "variance_burst":
        r = out.obs[use] - out.exp[use] - median
        r = r[np.isfinite(r)]
        return float(np.sqrt(np.mean(r**2)) / width) if r.size else 0.0
    if p.kind == "flatline":
        v = out.obs[use]
        v = v[np.isfinite(v)]
        return float(np.std(np.diff(v)) / (math.sqrt(2) * width)) if v.size > 2 else math.inf
    raise ValueError(p.kind)


_OPTIONS = {
    "spike": (REQ, P95, DB, FAIL),
    "variance_burst": (REQ, TOK, DB, P95),
    "flatline": (REQ, TOK, DB),
    "outage": (REQ, TOK),
    "level_shift": (TOK, FAIL, DB, REQ, P95),
}
_LEAD_MINUTES = {
    "level_shift": (12, 26),
    "spike": (10, 26),
    "variance_burst": (20, 45),
    "flatline": (36, 44),
    "outage": (10, 25),
}
_PAST_MINUTES = {
    "level_shift": (120, 360),
    "spike": (6, 6),
    "variance_burst": (60, 180),
    "flatline": (40, 90),
    "outage": (20, 60),
}


def _level(w: World, clean: Output, t: float) -> float:
    i = int(np.clip(np.searchsorted(w.at, t), 0, w.at.size - 1))
    v = clean.exp[max(0, i - 3) : i + 1]
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else 0.0


def _initial_mag(p: _Plan, k: float, level: float, width: float) -> float:
    """A first magnitude for a size of `k` widths (refined by :func:`_tune` for live plans)."""
    if p.kind == "variance_burst":
        return k
    rel = k * width / max(level, 1e-9)
    if p.metric == REQ:
        return min(0.6, rel) if p.kind == "level_shift" else rel
    if p.metric == P95:
        return max(0.2, rel)
    if p.metric == DB:
        return k * width
    if p.metric == FAIL:
        return round(k * width) if p.kind == "spike" else max(0.5, rel)
    return rel  # tokens


def _quiet_roster(t: _Tenant, g: np.ndarray, since: float) -> bool:
    assert t.pods is not None
    return not t.pods.events[g >= since].any()


def _plan(
    rng: np.random.Generator,
    w: World,
    clean: dict[tuple[int, str], Output],
    widths: dict[tuple[int, str], tuple[float, float]],
    n_live: int,
) -> tuple[list[_Plan], list[float]]:
    """Live plans (with their target sizes) and past plans (target NaN)."""
    n = len(w.tenants)
    end = w.end
    g = w.minutes
    hard = next(t.index for t in w.tenants if "hard" in t.tags)
    trap = next(t.index for t in w.tenants if "trap" in t.tags)
    free = [i for i in rng.permutation(n).tolist() if i not in (hard, trap)]
    specs: list[tuple[str, str | None]] = [
        ("level_shift", REQ),
        ("level_shift", P95),
        ("outage", None),
        ("flatline", None),
        ("spike", None),
        ("variance_burst", None),
    ]
    more = ["variance_burst", "flatline", "spike", "level_shift"]  # rotated by seed
    while len(specs) < n_live - 1:
        specs.append((more[(w.seed - 1 + len(specs) - 6) % len(more)], None))
    specs = specs[: max(0, n_live - 1)]
    plans: list[_Plan] = []
    targets: list[float] = []

    def lead(kind: str) -> float:
        a, b = _LEAD_MINUTES[kind]
        return end - 60.0 * float(rng.integers(a, b + 1))

    def still_on(kind: str, t0: float) -> float:
        if kind == "spike":
            return t0 + 360.0
        if kind == "flatline":
            return t0 + 2400.0
        return end + 3600.0

    if n_live >= 1:
        t0 = lead("level_shift")
        plans.append(_Plan(hard, DB, "level_shift", t0, end + 3600.0, True))
        targets.append(float(rng.uniform(*_TARGET["level_shift"])))

    def fit(ti: int, kind: str, metric: str | None) -> float:
        """How far a named level shift's physical size would sit from its middle widths."""
        if kind != "level_shift" or metric not in (REQ, P95):
            return 0.0
        width, _ = widths[(ti, metric)]
        ratio = _level(w, clean[(ti, metric)], end) / width
        return abs(ratio * (0.19 if metric == REQ else 1.0) - 7.5)

    for kind, metric in specs:
        metrics = [metric] if metric else [str(x) for x in rng.permutation(_OPTIONS[kind])]
        chosen = None
        ranked = sorted(free, key=lambda i: fit(i, kind, metric))
        for ti in ranked:
            t = w.tenants[ti]
            for mt in metrics:
                t0 = lead(kind)
                width, _ = widths[(ti, mt)]
                level = _level(w, clean[(ti, mt)], end)
                if mt in (REQ, P95) and not _quiet_roster(t, g, t0 - 900.0):
                    continue
                if kind == "outage" and level / width < 6.0:
                    continue
                if kind == "level_shift" and mt == REQ:
                    if not (5.5 * width / level <= 0.25 and 9.5 * width / level >= 0.13):
                        continue
                    k = float(np.clip(rng.uniform(0.13, 0.25) * level / width, 5.5, 9.5))
                elif kind == "level_shift" and mt == P95:
                    if (2.45 - level) / width < 10.0:
                        continue
                    k = float(np.clip(level / width, 5.5, 9.5))  # a doubling, where it fits
                elif kind == "spike" and mt == P95:
                    if (2.45 - level) / width < 15.0:
                        continue
                    k = float(rng.uniform(*_TARGET["spike"]))
                elif kind in _TARGET:
                    k = float(rng.uniform(*_TARGET[kind]))
                elif kind == "variance_burst":
                    k = float(rng.uniform(5.0, 8.0))
                else:
                    k = math.nan
                chosen = _Plan(ti, mt, kind, t0, still_on(kind, t0), True)
                targets.append(k)
                break
            if chosen:
                free.remove(ti)
                break
        if chosen is None:
            raise RuntimeError(f"no tenant fits a live {kind} on {metric}")
        plans.append(chosen)
    # past incidents, in the training window: about 30 % of the tenants
    start = float(g[0])
    span = end - start
    for ti in rng.choice(n, max(1, round(0.3 * n)), replace=False).tolist():
        kind = str(rng.choice(list(_PAST_MINUTES)))
        metric = str(rng.choice(_OPTIONS[kind]))
        a, b = _PAST_MINUTES[kind]
        dur = 60.0 * float(rng.integers(a, b + 1))
        t0 = float(rng.uniform(start + 0.25 * span, end - 0.2 * span - dur))
        t0 = math.floor(t0 / 60.0) * 60.0
        plans.append(_Plan(ti, metric, kind, t0, t0 + dur, False))
        targets.append(math.nan)
    return plans, targets


def _tune(
    w: World,
    p: _Plan,
    target: float,
    plans: list[_Plan],
    clean: Output,
    width: float,
    median: float,
    seed: int,
) -> tuple[Output, int, float]:
    """Set ``p.mag`` so the plan's size meets `target` (within :data:`SIZE_RANGES`); returns
    the final output of its metric, the noise attempt used and the size."""
    t = w.tenants[p.tenant]
    lo, hi = SIZE_RANGES[p.kind]
    if p.kind in ("outage", "flatline"):
        for attempt in range(6):
            out = _simulate(w, t, p.metric, plans, seed, attempt)
            size = _size(w, p, out, clean, width, median)
            if lo <= size <= hi:
                return out, attempt, size
        raise RuntimeError(f"{p.kind} on {t.name}/{p.metric} misses its promised size: {size}")
    level = _level(w, clean, p.t0)
    p.mag = _initial_mag(p, target, level, width)
    if p.kind == "variance_burst":
        size = math.nan
        for attempt in range(12):
            out = _simulate(w, t, p.metric, plans, seed, attempt)
            size = _size(w, p, out, clean, width, median)
            if lo + 0.5 <= size <= hi - 1.0:
                return out, attempt, size
            if size > 0:
                p.mag = max(1.5, p.mag * float(np.clip(target / size, 0.5, 2.0)))
        raise RuntimeError(f"variance burst on {t.name}/{p.metric}: size {size:.2f}")
    # the size grows monotonically with the magnitude: proportional steps inside a bracket
    below, above = 0.0, math.inf
    size = math.nan
    integer = p.metric == FAIL and p.kind == "spike"
    for _ in range(16):
        out = _simulate(w, t, p.metric, plans, seed, 0)
        size = _size(w, p, out, clean, width, median)
        if abs(size - target) <= 0.25 or (integer and lo + 0.2 <= size <= hi - 0.2):
            return out, 0, size
        if size < target:
            below = max(below, p.mag)
        else:
            above = min(above, p.mag)
        guess = p.mag * target / size if size > 0 else 2 * p.mag
        if not below < guess < above:
            guess = 2 * below if math.isinf(above) else (below + above) / 2
        if p.metric == REQ and p.kind == "level_shift":
            guess = min(guess, 0.9)
        p.mag = float(max(1, round(guess))) if integer else guess
    if lo <= size <= hi:
        return out, 0, size
    raise RuntimeError(f"{p.kind} on {t.name}/{p.metric}: size {size:.2f} not in [{lo}, {hi}]")


def _note(w: World, p: _Plan, out: Output, clean: Output, size: float) -> str:
    t = w.tenants[p.tenant]
    use = _points(w, p.t0, p.t1 + _WINDOW[p.metric])
    before = _level(w, clean, p.t0)
    d = out.exp[use] - clean.exp[use]
    j = int(np.nanargmax(np.abs(d))) if np.isfinite(d).any() else 0
    after = float(out.exp[use][j]) if use.any() else math.nan
    widths = f"{size:.1f} noise widths"
    if p.kind == "level_shift":
        if p.metric == REQ:
            text = f"request rate {-100 * p.mag:+.0f} %"
        elif p.metric == P95:
            text = f"p95 {before:.2f} -> {after:.2f} s (median x{1 + p.mag:.2f})"
        elif p.metric == DB:
            text = f"connection pool {before:.0f} -> {after:.0f}"
            if "hard" in t.tags:
                text += " in the night-batch hour, a day or two after the clocks moved"
        elif p.metric == FAIL:
            text = f"failed jobs x{1 + p.mag:.1f} (increase[1h] {before:.1f} -> {after:.1f})"
        else:
            text = f"token rate {100 * p.mag:+.0f} %"
    elif p.kind == "spike":
        if p.metric == FAIL:
            text = f"burst of {p.mag:.0f} failed jobs in 3 min"
        elif p.metric == DB:
            text = f"connection pool +{p.mag:.0f} for 6 min"
        elif p.metric == P95:
            text = f"p95 {before:.2f} -> {after:.2f} s for 6 min"
        else:
            text = f"request rate {100 * p.mag:+.0f} % for 6 min"
    elif p.kind == "variance_burst":
        what = {REQ: "request", TOK: "token", DB: "pool", P95: "latency"}[p.metric]
        text = f"{what} noise x{p.mag:.1f}"
        widths = f"residual RMS {size:.1f} noise widths"
    elif p.kind == "flatline":
        what = {REQ: "request counters", TOK: "token counter", DB: "pool gauge held"}[p.metric]
        text = f"{what} at a constant rate for 40 min" if p.metric != DB else f"{what} for 40 min"
        widths = f"step sd {size:.2f} of normal"
    else:
        assert t.pods is not None
        pods = int(t.pods.alive[:, -1].sum())
        text = (
            f"requests stop (rate 0) while {pods} pods stay up"
            if p.metric == REQ
            else "AI calls stop (token rate 0)"
        )
    return f"{text} ({widths})"


def build(seed: int, *, days: float = 11.0, tenants: int = 16) -> World:
    """The world of `seed`: raw series, query outputs (observed and expected), noise widths and
    the answer key. Deterministic in its arguments."""
    rng = np.random.default_rng([seed, 7])
    end = END_BASE + 3600.0 * ((seed * 29) % 240)
    if end > LATEST_END:
        raise ValueError("scenario end after 2026-12-06")
    m = int(round(days * 1440))
    g = end - 60.0 * (m - 1 - np.arange(m))
    first = math.ceil((g[0] + 3600.0 + STEP_SECONDS) / STEP_SECONDS) * STEP_SECONDS
    at = np.arange(first, end + 1.0, STEP_SECONDS)
    w = World(seed, end, g, at, [], {}, {}, [], [], ())
    w.gateway_phase = int(rng.integers(0, SCRAPE_SECONDS))
    w.pgbouncer_phase = (int(rng.integers(0, SCRAPE_SECONDS)), int(rng.integers(0, SCRAPE_SECONDS)))
    w.ksm_phase = int(rng.integers(0, SCRAPE_SECONDS))
    w.gateway_alive = np.ones(m, dtype=bool)
    for _ in range(2):
        if m - _QUIET_TAIL_MINUTES > 120:
            w.gateway_alive[int(rng.integers(60, m - _QUIET_TAIL_MINUTES))] = False
    w.tenants = _draw_tenants(rng, tenants, g)
    metrics = [e.name for e in METRICS]
    clean: dict[tuple[int, str], Output] = {}
    widths: dict[tuple[int, str], tuple[float, float]] = {}
    for t in w.tenants:
        for mt in metrics:
            clean[(t.index, mt)] = _simulate(w, t, mt, [], seed, 0)
            widths[(t.index, mt)] = _noise_width(w, clean[(t.index, mt)], mt)
    plans, targets = _plan(rng, w, clean, widths, n_live=tenants // 2)
    for p in plans:
        if not p.live:
            width, _ = widths[(p.tenant, p.metric)]
            level = _level(w, clean[(p.tenant, p.metric)], p.t0)
            nominal = {"level_shift": 7.0, "spike": 11.0, "variance_burst": 6.0}.get(p.kind, 0.0)
            p.mag = _initial_mag(p, nominal, level, width) if nominal else 0.0
    attempts: dict[tuple[int, str], int] = {}
    sizes: list[float] = []
    notes: list[str] = []
    for p, k in zip(plans, targets, strict=True):
        if not p.live:
            continue
        own = [q for q in plans if q.tenant == p.tenant]
        width, median = widths[(p.tenant, p.metric)]
        out, attempt, size = _tune(w, p, k, own, clean[(p.tenant, p.metric)], width, median, seed)
        attempts[(p.tenant, p.metric)] = attempt
        sizes.append(size)
        notes.append(_note(w, p, out, clean[(p.tenant, p.metric)], size))
    for t in w.tenants:
        own = [q for q in plans if q.tenant == t.index]
        for mt in metrics:
            if own:
                w.outputs[(t.index, mt)] = _simulate(
                    w,
                    t,
                    mt,
                    own,
                    seed,
                    attempts.get((t.index, mt), 0),
                    request_attempt=attempts.get((t.index, REQ), 0),
                )
            else:
                w.outputs[(t.index, mt)] = clean[(t.index, mt)]
    w.widths = {key: v[0] for key, v in widths.items()}
    w.medians = {key: v[1] for key, v in widths.items()}
    w.clean = {
        (p.tenant, p.metric): Output(
            [], clean[(p.tenant, p.metric)].obs, clean[(p.tenant, p.metric)].exp
        )
        for p in plans
        if p.live
    }
    w.plans = plans
    w.sizes = sizes
    incidents = []
    for p, note in zip([q for q in plans if q.live], notes, strict=True):
        name = w.tenants[p.tenant].name
        incidents.append(Incident(name, p.metric, p.kind, p.t0, p.t1, note))
        if p.kind == "outage" and p.metric == REQ:
            incidents.append(
                Incident(
                    name,
                    P95,
                    "outage",
                    p.t0,
                    p.t1,
                    "no requests, so histogram_quantile has no value (NaN): companion of the "
                    "request outage",
                )
            )
    w.incidents = tuple(incidents)
    return w


# --------------------------------------------------------------------------------------------
# Writing


_FAMILIES = (
    ("pa_exp_http_requests", "counter", "HTTP requests the pod served.", REQ),
    ("pa_exp_request_duration_seconds", "histogram", "Request latency of the pod.", P95),
    ("pa_exp_jobs_failed", "counter", "Background jobs that failed.", FAIL),
    ("pa_exp_db_connections_in_use", "gauge", "Server connections in use per tenant pool.", DB),
    ("pa_exp_replicas", "gauge", "Available replicas of the tenant's API deployment.", REPL),
    ("pa_exp_ai_tokens", "counter", "AI tokens used, as the gateway counts them.", TOK),
)


def write_openmetrics(w: World, path: Path) -> int:
    """Write every raw sample of `w` to `path` (OpenMetrics, ``# EOF``); returns the count."""
    count = 0
    with path.open("w", encoding="utf-8") as f:
        for family, kind, text, metric in _FAMILIES:
            f.write(f"# HELP {family} {text}\n# TYPE {family} {kind}\n")
            for t in w.tenants:
                for name, labels, ts, vals in w.outputs[(t.index, metric)].series:
                    prefix = f"{name}{{{labels}}} "
                    floats = name.endswith("_sum")
                    vl = vals.tolist() if floats else vals.astype(np.int64).tolist()
                    tl = ts.astype(np.int64).tolist()
                    f.write("".join([f"{prefix}{v} {s}\n" for v, s in zip(vl, tl, strict=True)]))
                    count += len(tl)
        f.write("# EOF\n")
    return count


def make(seed: int, workdir: Path, *, days: float = 11.0, tenants: int = 16) -> Scenario:
    """Build the world of `seed`, write ``workdir/data.om`` and return the scenario.

    `days` and `tenants` shrink it for tests (the bench uses the defaults)."""
    started = time.monotonic()
    w = build(seed, days=days, tenants=tenants)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "data.om"
    count = write_openmetrics(w, path)
    print(
        f"exposition seed {seed}: {len(w.tenants)} tenants, {count:,} samples, "
        f"{len(w.incidents)} incidents in the key, {path.stat().st_size / 1e6:.0f} MB, "
        f"{time.monotonic() - started:.1f} s"
    )
    return Scenario(
        generator="exposition",
        seed=seed,
        openmetrics=path,
        end=w.end,
        step_seconds=STEP_SECONDS,
        metrics=METRICS,
        tenants=tuple(t.name for t in w.tenants),
        incidents=w.incidents,
        objectives=OBJECTIVES,
    )


GENERATOR = Generator(
    name="exposition",
    make=make,
    tuned=False,
    seeds=(1, 2),
    measure_seeds=(3, 4),
    description=(
        "16 tenants seen through PromQL over 60 s scrapes: per-pod request counters and "
        "latency histograms on 2-4 pods that restart (counter resets), roll out and scale by "
        "whole pods, read with sum(rate()) and histogram_quantile(); a sparse failure counter "
        "through increase[1h]; an integer connection-pool gauge (max of two pgbouncers); a "
        "replica gauge; an AI token counter reset by its gateway. Local clocks, half with a "
        "DST switch in training, six-day weeks, night batch hours. Incidents sized in noise "
        "widths of each query's own 5-minute output."
    ),
)


if __name__ == "__main__":  # pragma: no cover - a manual timing aid
    import argparse
    import subprocess

    parser = argparse.ArgumentParser(description="Make one exposition scenario (and backfill).")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--days", type=float, default=11.0)
    parser.add_argument("--tenants", type=int, default=16)
    parser.add_argument("--backfill", action="store_true", help="run promtool into OUT/tsdb")
    args = parser.parse_args()
    scenario = make(args.seed, args.out, days=args.days, tenants=args.tenants)
    for inc in scenario.incidents:
        print(f"  {inc.tenant} {inc.metric:22s} {inc.kind:15s} {inc.note}")
    if args.backfill:
        began = time.monotonic()
        subprocess.run(
            [
                "promtool",
                "tsdb",
                "create-blocks-from",
                "--quiet",
                "openmetrics",
                "--max-block-duration=72h",
                str(scenario.openmetrics),
                str(args.out / "tsdb"),
            ],
            check=True,
        )
        print(f"backfill: {time.monotonic() - began:.1f} s")
