"""Synthetic ProcessAudit metrics with injected anomalies, for tests, the demo and benchmarks.

ProcessAudit AI is a multi-tenant SaaS; tenants are told apart by the ``organization_id``
label. :func:`generate` draws, for every tenant, six series that look like production: daily
seasonality (business-hours peak in the tenant's own timezone), weekends lower than weekdays,
multiplicative noise, a cost counter that accrues with load. :class:`Injection` s then bend
chosen (tenant, metric) pairs in one of :data:`KINDS` of ways, and the resulting
:class:`Dataset` knows which pairs are anomalous at its newest point (the ground truth).

Two ready-made scenarios: :func:`demo_scenario` (12 tenants, a handful of live incidents) and
:func:`evaluation_scenario` (24 tenants, every kind injected several times, for F1 tests).
:func:`write_openmetrics` writes what ``promtool tsdb create-blocks-from openmetrics``
backfills; :data:`QUERIES` holds the PromQL a config uses to read each logical metric back.

Everything random comes from ``numpy.random.default_rng(seed)``: the same arguments give the
same arrays, bit for bit.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from scipy.signal import lfilter

if TYPE_CHECKING:
    import pandas as pd

TENANT_LABEL = "organization_id"
DEFAULT_STEP_SECONDS = 300

KINDS: tuple[str, ...] = (
    "spike",
    "dip",
    "level_shift",
    "outage",
    "variance_burst",
    "flatline",
    "trend_drift",
)


@dataclass(frozen=True)
class MetricSpec:
    """How one logical metric is exposed in Prometheus."""

    name: str
    """Sample name in Prometheus (counters end in ``_total``)."""
    type: str
    """``gauge`` or ``counter``."""
    help: str
    bounds: tuple[float, float]
    """Closed range every value is clipped to."""


METRICS: dict[str, MetricSpec] = {
    "request_rate": MetricSpec(
        "processaudit_requests_per_second",
        "gauge",
        "API requests per second served to the organization.",
        (0.0, math.inf),
    ),
    "latency_p95": MetricSpec(
        "processaudit_latency_p95_seconds",
        "gauge",
        "95th percentile API latency in seconds.",
        (0.0, math.inf),
    ),
    "error_ratio": MetricSpec(
        "processaudit_error_ratio",
        "gauge",
        "Share of API requests that failed, 0..1.",
        (0.0, 1.0),
    ),
    "ai_cost": MetricSpec(
        "processaudit_ai_cost_usd_total",
        "counter",
        "Money spent on AI calls for the organization, in US dollars.",
        (0.0, math.inf),
    ),
    "completion": MetricSpec(
        "processaudit_analysis_completion_ratio",
        "gauge",
        "Share of process analyses that completed, 0..1.",
        (0.0, 1.0),
    ),
    "queue_depth": MetricSpec(
        "processaudit_queue_depth",
        "gauge",
        "Analyses waiting in the organization's queue.",
        (0.0, math.inf),
    ),
}
"""Logical metric name → its Prometheus series. Logical names are used everywhere else."""

QUERIES: dict[str, str] = {
    "request_rate": "sum by (organization_id) (processaudit_requests_per_second)",
    "latency_p95": "max by (organization_id) (processaudit_latency_p95_seconds)",
    "error_ratio": "max by (organization_id) (processaudit_error_ratio)",
    "ai_cost": "sum by (organization_id) (rate(processaudit_ai_cost_usd_total[15m])) * 3600",
    "completion": "min by (organization_id) (processaudit_analysis_completion_ratio)",
    "queue_depth": "sum by (organization_id) (processaudit_queue_depth)",
}
"""PromQL a config uses per logical metric, one result series per tenant. ``ai_cost`` is in $/hour."""

# Default magnitude of each kind, as a relative change of the value (spike 2.0 = three times
# the value, dip 0.6 = down by 60 %, level_shift -0.2 = down by 20 %, variance_burst 5.0 =
# noise five times wider). Chosen to be obvious on a plot yet plausible in production.
_DEFAULT_MAGNITUDE: dict[str, float] = {
    "spike": 2.0,
    "dip": 0.6,
    "level_shift": 0.5,
    "variance_burst": 5.0,
    "trend_drift": 0.8,
}
_METRIC_MAGNITUDE: dict[tuple[str, str], float] = {
    ("error_ratio", "spike"): 6.0,
    ("error_ratio", "level_shift"): 2.0,
    ("error_ratio", "trend_drift"): 1.5,
    ("error_ratio", "variance_burst"): 4.0,
    ("latency_p95", "dip"): 0.5,
    ("completion", "spike"): 0.05,
    ("completion", "dip"): 0.3,
    ("completion", "level_shift"): -0.12,
    ("completion", "trend_drift"): -0.15,
}
_MAGNITUDE_FREE = frozenset({"outage", "flatline"})

# Default length of an injection made with ``ending_injection`` (spike/dip: two points).
_DEFAULT_DURATION_SECONDS: dict[str, float] = {
    "level_shift": 2 * 3600.0,
    "outage": 3600.0,
    "variance_burst": 1.5 * 3600,
    "flatline": 2 * 3600.0,
    "trend_drift": 18 * 3600.0,
}


def default_magnitude(metric: str, kind: str) -> float | None:
    """Default magnitude of `kind` on `metric` (``None`` for outage and flatline)."""
    _check_metric_kind(metric, kind)
    if kind in _MAGNITUDE_FREE:
        return None
    return _METRIC_MAGNITUDE.get((metric, kind), _DEFAULT_MAGNITUDE[kind])


def _check_metric_kind(metric: str, kind: str) -> None:
    if metric not in METRICS:
        raise ValueError(f"`metric` must be one of {sorted(METRICS)}, got {metric!r}")
    if kind not in KINDS:
        raise ValueError(f"`kind` must be one of {list(KINDS)}, got {kind!r}")


@dataclass(frozen=True)
class Injection:
    """One anomaly bent into one (tenant, metric) series.

    Active at every timestamp ``t`` with ``start <= t <= end`` (``end=None``: to the end of the
    data). ``magnitude`` is a relative change (see :func:`default_magnitude`); ``None`` means the
    default for the metric and kind. For ``ai_cost`` the injection bends the spend *rate*, which
    is then integrated into the counter (an outage stops the counter).
    """

    tenant: str
    metric: str
    kind: str
    start: float
    end: float | None = None
    magnitude: float | None = None

    def __post_init__(self) -> None:
        _check_metric_kind(self.metric, self.kind)
        if self.end is not None and self.end < self.start:
            raise ValueError(f"`end` must not precede `start` ({self.start}), got {self.end}")
        if self.kind == "dip" and self.magnitude is not None and not 0 < self.magnitude <= 1:
            raise ValueError(f"a dip's `magnitude` must be in (0, 1], got {self.magnitude}")

    def active(self, t: float) -> bool:
        """Whether the injection covers epoch second `t`."""
        return self.start <= t and (self.end is None or t <= self.end)


def ending_injection(
    tenant: str,
    metric: str,
    kind: str,
    *,
    end: float,
    step_seconds: float = DEFAULT_STEP_SECONDS,
    duration_seconds: float | None = None,
    magnitude: float | None = None,
) -> Injection:
    """An injection that covers the newest point `end` of a dataset.

    Spikes and dips cover the last two points unless `duration_seconds` says otherwise
    (``0`` = only the last point); other kinds last their default duration.
    """
    _check_metric_kind(metric, kind)
    if duration_seconds is None:
        duration_seconds = _DEFAULT_DURATION_SECONDS.get(kind, float(step_seconds))
    if duration_seconds < 0:
        raise ValueError(f"`duration_seconds` must be non-negative, got {duration_seconds}")
    kept_end = end if kind in ("spike", "dip") else None
    return Injection(tenant, metric, kind, end - duration_seconds, kept_end, magnitude)


@dataclass(frozen=True)
class Series:
    """One generated Prometheus series."""

    metric: str
    """Logical metric name (a key of :data:`METRICS`)."""
    labels: Mapping[str, str]
    """Labels without ``__name__``; always holds :data:`TENANT_LABEL`."""
    values: np.ndarray
    """Shape ``(n_t,)``, float64, read-only; aligned with :attr:`Dataset.timestamps`."""

    @property
    def name(self) -> str:
        """The Prometheus sample name."""
        return METRICS[self.metric].name

    @property
    def tenant(self) -> str:
        """The tenant the series belongs to."""
        return self.labels[TENANT_LABEL]


@dataclass(frozen=True)
class Dataset:
    """Generated series on one regular time grid, plus the injections bent into them."""

    timestamps: np.ndarray
    """Shape ``(n_t,)``, epoch seconds (float64), regular, ascending, read-only."""
    step_seconds: int
    tenants: tuple[str, ...]
    series: tuple[Series, ...]
    """One per (tenant, metric), tenants outer, metrics in :data:`METRICS` order."""
    injections: tuple[Injection, ...] = field(default=())
    """With default magnitudes resolved."""

    @property
    def end(self) -> float:
        """Epoch seconds of the newest point."""
        return float(self.timestamps[-1])

    @property
    def metrics(self) -> tuple[str, ...]:
        """Logical metric names present, in :data:`METRICS` order."""
        seen = {s.metric for s in self.series}
        return tuple(m for m in METRICS if m in seen)

    def get(self, tenant: str, metric: str) -> Series:
        """The series of one (tenant, metric) pair; ``KeyError`` if absent."""
        for s in self.series:
            if s.metric == metric and s.tenant == tenant:
                return s
        raise KeyError((tenant, metric))

    def matrix(self, metric: str) -> np.ndarray:
        """Values of `metric`, shape ``(n_t, n_tenants)`` with columns in :attr:`tenants` order."""
        return np.column_stack([self.get(t, metric).values for t in self.tenants])

    def anomalous_pairs(self, at: float | None = None) -> set[tuple[str, str]]:
        """(tenant, metric) pairs with an injection active at `at` (default: the newest point)."""
        t = self.end if at is None else at
        return {(i.tenant, i.metric) for i in self.injections if i.active(t)}


@dataclass(frozen=True)
class Profiles:
    """Per-tenant parameters, each an array of shape ``(n_tenants,)``: a calendar (offset,
    daily peak and width, night trough, weekend level) and each metric's level and noise."""

    offset_hours: np.ndarray
    peak_hour: np.ndarray
    width_hours: np.ndarray
    trough: np.ndarray
    weekend_factor: np.ndarray
    peak_rps: np.ndarray
    rps_sigma: np.ndarray
    latency_base: np.ndarray
    latency_load: np.ndarray
    error_base: np.ndarray
    daily_usd: np.ndarray
    counter_start: np.ndarray
    completion_base: np.ndarray
    queue_base: np.ndarray
    queue_scale: np.ndarray


def draw_profiles(rng: np.random.Generator, n: int) -> Profiles:
    """`n` tenants' parameters, drawn from `rng` in a fixed order."""
    return Profiles(
        offset_hours=rng.integers(-8, 10, n).astype(float),
        peak_hour=rng.uniform(10.5, 15.5, n),
        width_hours=rng.uniform(2.8, 4.2, n),
        trough=rng.uniform(0.08, 0.22, n),
        weekend_factor=rng.uniform(0.4, 0.7, n),
        peak_rps=np.exp(rng.uniform(np.log(5.0), np.log(200.0), n)),
        rps_sigma=rng.uniform(0.05, 0.09, n),
        latency_base=rng.uniform(0.3, 1.2, n),
        latency_load=rng.uniform(0.1, 0.3, n),
        error_base=rng.uniform(0.001, 0.003, n),
        daily_usd=rng.uniform(20.0, 80.0, n),
        counter_start=rng.uniform(500.0, 5000.0, n),
        completion_base=rng.uniform(0.9, 0.98, n),
        queue_base=rng.uniform(0.5, 3.0, n),
        queue_scale=rng.uniform(20.0, 150.0, n),
    )


def ar1_noise(rng: np.random.Generator, shape: tuple[int, int], phi: float) -> np.ndarray:
    """Unit-variance AR(1) noise along axis 0, shape `shape`."""
    eps = rng.standard_normal(shape) * math.sqrt(1.0 - phi * phi)
    return np.asarray(lfilter([1.0], [1.0, -phi], eps, axis=0))


def _load(ts: np.ndarray, p: Profiles) -> np.ndarray:
    """Normalised load in (0, 1], shape ``(n_t, n_tenants)``: daily and weekly seasonality."""
    local = ts[:, None] + p.offset_hours[None, :] * 3600.0
    hour = (local % 86400.0) / 3600.0
    diff = (hour - p.peak_hour + 12.0) % 24.0 - 12.0
    daily = p.trough + (1.0 - p.trough) * np.exp(-0.5 * (diff / p.width_hours) ** 2)
    weekday = (np.floor(local / 86400.0) + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
    weekly = np.where(weekday >= 5, p.weekend_factor, 1.0)
    return np.asarray(daily * weekly)


def _latency_bumps(
    rng: np.random.Generator, ts: np.ndarray, n_tenants: int, quiet_tail_seconds: float
) -> np.ndarray:
    """Occasional small latency bumps (+10..25 % for 15..60 min), none in the quiet tail."""
    factor = np.ones((ts.size, n_tenants))
    days = (ts[-1] - ts[0]) / 86400.0
    latest_start = ts[-1] - quiet_tail_seconds
    for j in range(n_tenants):
        for _ in range(rng.poisson(0.5 * days)):
            length = rng.uniform(900.0, 3600.0)
            start = rng.uniform(ts[0], max(ts[0], latest_start - length))
            window = (ts >= start) & (ts <= start + length)
            factor[window, j] *= 1.0 + rng.uniform(0.1, 0.25)
    return factor


def _apply(values: np.ndarray, clean: np.ndarray, ts: np.ndarray, inj: Injection) -> None:
    """Bend `values` (shape ``(n_t,)``) in place by one injection."""
    stop = math.inf if inj.end is None else inj.end
    mask = (ts >= inj.start) & (ts <= stop)
    if not mask.any():
        return
    mag = inj.magnitude
    if inj.kind in ("spike", "level_shift") and mag is not None and inj.metric == "queue_depth":
        # A backlog adds work in absolute terms: at night, when the queue is nearly empty, a
        # spike is still tens of items, not three times zero.
        typical = float(np.median(clean))
        values[mask] += mag * np.maximum(values[mask], typical)
    elif inj.kind in ("spike", "level_shift") and mag is not None:
        values[mask] *= 1.0 + mag
    elif inj.kind == "dip" and mag is not None:
        values[mask] *= 1.0 - mag
    elif inj.kind == "outage":
        values[mask] = 0.0
    elif inj.kind == "variance_burst" and mag is not None:
        v, c = values[mask], clean[mask]
        positive = (v > 0) & (c > 0)
        ratio = np.where(positive, v / np.where(positive, c, 1.0), 1.0)
        values[mask] = np.where(positive, c * ratio**mag, c + (v - c) * mag)
    elif inj.kind == "flatline":
        first = int(np.argmax(mask))
        values[mask] = values[max(first - 1, 0)]
    elif inj.kind == "trend_drift" and mag is not None:
        t0 = inj.start
        t1 = float(ts[-1]) if inj.end is None else min(inj.end, float(ts[-1]))
        frac = np.clip((ts[mask] - t0) / max(t1 - t0, 1.0), 0.0, 1.0)
        values[mask] *= 1.0 + mag * frac


_AI_COST_SIGMA = 0.1
"""Spread of the AI spend rate's log-normal noise (AR(1), unit variance before scaling)."""


def _spend_rate(load: np.ndarray, p: Profiles) -> np.ndarray:
    """Noise-free AI spend rate in $/s: each tenant's `daily_usd` spread over its load."""
    return np.asarray(p.daily_usd / 86400.0 / load.mean(axis=0) * load)


def expected_spend_rate(
    tenants: int | Sequence[str] = 12,
    *,
    days: float = 8.0,
    step_seconds: int = DEFAULT_STEP_SECONDS,
    end: float | None = None,
    seed: int = 0,
    injections: Iterable[Injection] = (),
) -> np.ndarray:
    """The mean of the AI spend rate that :func:`generate` draws with the same arguments, in $/s.

    Shape ``(n_t, n_tenants)``: the seasonal rate with the ``ai_cost`` injections applied and the
    noise averaged out (its log-normal mean ``exp(sigma**2 / 2)``). What a forecaster that knew
    the data's law exactly would forecast: benchmarks use it for the error that only the
    future's noise causes.
    """
    names = _names(tenants)
    ts = _grid(days, step_seconds, end)
    p = draw_profiles(np.random.default_rng(seed), len(names))
    clean = _spend_rate(_load(ts, p), p)
    rate = clean * math.exp(_AI_COST_SIGMA**2 / 2)
    column = {name: j for j, name in enumerate(names)}
    for inj in (_resolve(i, names) for i in injections):
        if inj.metric == "ai_cost":
            _apply(rate[:, column[inj.tenant]], clean[:, column[inj.tenant]], ts, inj)
    return rate


def _names(tenants: int | Sequence[str]) -> tuple[str, ...]:
    """The tenant names ``tenants`` stands for: a count, or the names; non-empty and unique."""
    names = tenant_names(tenants) if isinstance(tenants, int) else tuple(tenants)
    if not names or len(set(names)) != len(names):
        raise ValueError(f"`tenants` must be non-empty and unique, got {names!r}")
    return names


def _grid(days: float, step_seconds: int, end: float | None) -> np.ndarray:
    if step_seconds <= 0:
        raise ValueError(f"`step_seconds` must be positive, got {step_seconds}")
    if days <= 0:
        raise ValueError(f"`days` must be positive, got {days}")
    if end is None:
        end = math.floor(time.time() / step_seconds) * step_seconds
    n = int(days * 86400 // step_seconds) + 1
    return float(end) - step_seconds * np.arange(n - 1, -1, -1, dtype=float)


def tenant_names(n: int) -> tuple[str, ...]:
    """``org-01``, ``org-02``, ... (zero-padded to at least two digits)."""
    width = max(2, len(str(n)))
    return tuple(f"org-{i:0{width}d}" for i in range(1, n + 1))


def generate(
    tenants: int | Sequence[str] = 12,
    *,
    days: float = 8.0,
    step_seconds: int = DEFAULT_STEP_SECONDS,
    end: float | None = None,
    seed: int = 0,
    injections: Iterable[Injection] = (),
    extra_labels: Mapping[str, str] | None = None,
) -> Dataset:
    """Generate every metric of :data:`METRICS` for every tenant, then apply `injections`.

    Parameters
    ----------
    tenants : int or sequence of str
        How many tenants (named by :func:`tenant_names`) or their ``organization_id`` values.
    days : float
        Length of the history; the grid has ``days * 86400 // step_seconds + 1`` points.
    step_seconds : int
        Spacing of the grid.
    end : float, optional
        Epoch seconds of the newest point; default now rounded down to `step_seconds`.
    seed : int
        Seed of ``numpy.random.default_rng``; the tenants' profiles depend only on it.
    injections : iterable of Injection
        Applied in order; their tenants must be among `tenants`.
    extra_labels : mapping, optional
        Added to every series' labels (e.g. ``{"service": "api"}``).
    """
    names = _names(tenants)
    ts = _grid(days, step_seconds, end)
    n_t, n = ts.size, len(names)
    rng = np.random.default_rng(seed)
    p = draw_profiles(rng, n)
    load = _load(ts, p)

    clean: dict[str, np.ndarray] = {}
    noisy: dict[str, np.ndarray] = {}
    clean["request_rate"] = p.peak_rps * load
    noisy["request_rate"] = clean["request_rate"] * np.exp(
        p.rps_sigma * ar1_noise(rng, (n_t, n), 0.3)
    )

    bumps = _latency_bumps(rng, ts, n, quiet_tail_seconds=3 * 3600.0)
    clean["latency_p95"] = p.latency_base * (1.0 + p.latency_load * load) * bumps
    noisy["latency_p95"] = clean["latency_p95"] * np.exp(0.07 * ar1_noise(rng, (n_t, n), 0.4))

    error_sigma = 0.22 * (1.0 + 0.6 * (1.0 - load))  # fewer requests at night: noisier ratio
    clean["error_ratio"] = np.broadcast_to(p.error_base, (n_t, n)).copy()
    noisy["error_ratio"] = clean["error_ratio"] * np.exp(
        error_sigma * rng.standard_normal((n_t, n)) - 0.5 * error_sigma**2
    )

    clean["ai_cost"] = _spend_rate(load, p)  # $/s; integrated below
    noisy["ai_cost"] = clean["ai_cost"] * np.exp(_AI_COST_SIGMA * ar1_noise(rng, (n_t, n), 0.3))

    deficit = (1.0 - p.completion_base) * (1.0 + 0.2 * load)
    clean["completion"] = 1.0 - deficit
    noisy["completion"] = 1.0 - deficit * np.exp(0.15 * rng.standard_normal((n_t, n)))

    clean["queue_depth"] = p.queue_base + p.queue_scale * load**1.5
    lam = clean["queue_depth"] * np.exp(0.1 * ar1_noise(rng, (n_t, n), 0.5))
    noisy["queue_depth"] = rng.poisson(lam).astype(float)

    resolved = tuple(_resolve(i, names) for i in injections)
    column = {name: j for j, name in enumerate(names)}
    for inj in resolved:
        j = column[inj.tenant]
        _apply(noisy[inj.metric][:, j], clean[inj.metric][:, j], ts, inj)

    rate = np.clip(noisy["ai_cost"], 0.0, None)
    noisy["ai_cost"] = p.counter_start + np.cumsum(rate * step_seconds, axis=0)
    noisy["queue_depth"] = np.round(noisy["queue_depth"])
    for metric, spec in METRICS.items():
        noisy[metric] = np.clip(noisy[metric], *spec.bounds)

    extra = dict(extra_labels or {})
    series = []
    for j, tenant in enumerate(names):
        for metric in METRICS:
            values = np.ascontiguousarray(noisy[metric][:, j], dtype=float)
            values.flags.writeable = False
            series.append(Series(metric, {TENANT_LABEL: tenant, **extra}, values))
    ts.flags.writeable = False
    return Dataset(ts, step_seconds, names, tuple(series), resolved)


def _resolve(inj: Injection, tenants: Sequence[str]) -> Injection:
    if inj.tenant not in tenants:
        raise ValueError(f"injection tenant {inj.tenant!r} is not among the generated tenants")
    if inj.magnitude is None and inj.kind not in _MAGNITUDE_FREE:
        return dataclasses.replace(inj, magnitude=default_magnitude(inj.metric, inj.kind))
    return inj


def demo_scenario(
    *, end: float | None = None, seed: int = 7, days: float = 8.0, step_seconds: int = 300
) -> Dataset:
    """12 tenants × 6 metrics with five live incidents and two healed ones in the history.

    Live at the newest point: a bad deploy tripling ``org-03``'s error ratio (90 min), an
    outage of ``org-07``'s traffic (40 min), ``org-05``'s AI spend drifting up by 90 % over
    18 h, ``org-09``'s (a heavy spender) by 150 % over 36 h (a budget-breach forecast), ``org-10``'s latency up 60 % (2 h) and ``org-01``'s
    completion ratio down 15 % (2.5 h). Healed: an outage of ``org-02``'s traffic 3 days ago
    and a latency level shift of ``org-11`` 5 days ago.
    """
    grid_end = _grid(days, step_seconds, end)[-1]
    h = 3600.0
    injections = [
        Injection("org-03", "error_ratio", "level_shift", grid_end - 1.5 * h, None, 2.0),
        Injection("org-07", "request_rate", "outage", grid_end - 40 * 60, None),
        Injection("org-05", "ai_cost", "trend_drift", grid_end - 18 * h, None, 0.9),
        Injection("org-09", "ai_cost", "trend_drift", grid_end - 36 * h, None, 1.5),
        Injection("org-10", "latency_p95", "level_shift", grid_end - 2 * h, None, 0.6),
        Injection("org-01", "completion", "level_shift", grid_end - 2.5 * h, None, -0.15),
        Injection("org-02", "request_rate", "outage", grid_end - 72 * h, grid_end - 70 * h),
        Injection(
            "org-11", "latency_p95", "level_shift", grid_end - 120 * h, grid_end - 117 * h, 0.5
        ),
    ]
    return generate(
        12, days=days, step_seconds=step_seconds, end=grid_end, seed=seed, injections=injections
    )


# Which metrics each kind is injected into by the evaluation scenario: combinations a person
# would call an incident (no outage of a latency, no upward spike of a ratio near 1).
_SUITABLE: dict[str, tuple[str, ...]] = {
    "spike": ("request_rate", "latency_p95", "error_ratio", "ai_cost", "queue_depth"),
    # A queue that empties is no incident.
    "dip": ("request_rate", "completion", "ai_cost"),
    "level_shift": tuple(METRICS),
    "outage": ("request_rate", "ai_cost", "completion"),
    "variance_burst": ("request_rate", "latency_p95", "error_ratio", "queue_depth"),
    "flatline": ("request_rate", "latency_p95", "error_ratio", "ai_cost", "queue_depth"),
    "trend_drift": tuple(METRICS),
}
_EVALUATION_COUNTS: dict[str, int] = {
    "spike": 3,
    "dip": 2,
    "level_shift": 3,
    "outage": 2,
    "variance_burst": 2,
    "flatline": 2,
    "trend_drift": 3,
}
# Duration ranges in hours of the evaluation scenario's live injections (spike/dip: points).
_EVALUATION_HOURS: dict[str, tuple[float, float]] = {
    "level_shift": (1.0, 3.0),
    "outage": (0.5, 2.0),
    "variance_burst": (1.0, 2.0),
    "flatline": (1.0, 3.0),
    "trend_drift": (12.0, 24.0),
}


def evaluation_scenario(
    n_tenants: int = 24,
    *,
    seed: int = 42,
    end: float | None = None,
    days: float = 8.0,
    step_seconds: int = DEFAULT_STEP_SECONDS,
    counts: Mapping[str, int] | None = None,
    n_past: int = 6,
) -> tuple[Dataset, set[tuple[str, str]]]:
    """Data and ground truth for an end-to-end precision/recall test.

    Every kind is injected into ``counts[kind]`` distinct (tenant, metric) pairs (default 17
    pairs in all, on distinct tenants while there are enough), active at the newest points:
    spikes and dips on the last one or two points, the other kinds covering the end time.
    `n_past` other, clean pairs get a healed incident (a 2 h outage or ±50 % level shift that
    ended 2 to 5 days ago) which must not make their newest point anomalous.

    Returns
    -------
    dataset : Dataset
    truth : set of (tenant, metric)
        The pairs anomalous at the newest point (``dataset.anomalous_pairs()``).
    """
    plan = dict(_EVALUATION_COUNTS if counts is None else counts)
    unknown = set(plan) - set(KINDS)
    if unknown:
        raise ValueError(f"`counts` keys must be among {list(KINDS)}, got {sorted(unknown)}")
    names = tenant_names(n_tenants)
    ts = _grid(days, step_seconds, end)
    grid_end = float(ts[-1])
    rng = np.random.default_rng([seed, 1])  # independent of the series' own stream
    tenant_order = [names[i] for i in rng.permutation(n_tenants)]
    used: set[tuple[str, str]] = set()
    injections: list[Injection] = []
    per_metric = dict.fromkeys(METRICS, 0)
    k = 0
    for kind in KINDS:
        for _ in range(plan.get(kind, 0)):
            for _attempt in range(10 * n_tenants):
                tenant = tenant_order[k % n_tenants]
                k += 1
                # the least used suitable metric, so every metric gets its share
                options = _SUITABLE[kind]
                fewest = min(per_metric[m] for m in options)
                metric = str(rng.choice([m for m in options if per_metric[m] == fewest]))
                if (tenant, metric) not in used:
                    break
            else:
                raise ValueError(f"cannot place {sum(plan.values())} injections")
            used.add((tenant, metric))
            per_metric[metric] += 1
            magnitude = default_magnitude(metric, kind)
            if kind == "level_shift" and metric == "request_rate":
                magnitude = float(rng.choice([-0.5, 0.5]))
            if kind in ("spike", "dip"):
                points = int(rng.integers(1, 3))
                if metric == "ai_cost":  # read through rate(...[15m]): one point would blur away
                    points = 2
                start: float = grid_end - (points - 1) * step_seconds
                stop: float | None = grid_end
            else:
                lo, hi = _EVALUATION_HOURS[kind]
                hours = rng.uniform(lo, hi)
                start = grid_end - round(hours * 3600 / step_seconds) * step_seconds
                stop = None
            injections.append(Injection(tenant, metric, kind, start, stop, magnitude))
    clean_pairs = [(t, m) for t in names for m in METRICS if (t, m) not in used]
    past_metrics = ("request_rate", "latency_p95", "ai_cost", "queue_depth")
    candidates = [pair for pair in clean_pairs if pair[1] in past_metrics]
    picks = rng.permutation(len(candidates))[: min(n_past, len(candidates))]
    for index in sorted(int(i) for i in picks):
        tenant, metric = candidates[index]
        ago = round(rng.uniform(2.0, 5.0) * 86400 / step_seconds) * step_seconds
        start = grid_end - ago - 2 * 3600
        if rng.random() < 0.5:
            injections.append(Injection(tenant, metric, "outage", start, start + 2 * 3600))
        else:
            shift = float(rng.choice([-0.5, 0.5]))
            injections.append(
                Injection(tenant, metric, "level_shift", start, start + 2 * 3600, shift)
            )
    dataset = generate(
        names,
        days=days,
        step_seconds=step_seconds,
        end=grid_end,
        seed=seed,
        injections=injections,
    )
    return dataset, dataset.anomalous_pairs()


def format_value(v: float) -> str:
    """A sample value as Prometheus writes it (``NaN``, ``+Inf``, ``-Inf``, else ``repr``)."""
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return repr(v)


def _escape_label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _family_name(spec: MetricSpec) -> str:
    if spec.type == "counter" and spec.name.endswith("_total"):
        return spec.name[: -len("_total")]
    return spec.name


def write_openmetrics(
    dataset: Dataset | Sequence[Dataset],
    path: str | os.PathLike[str],
    *,
    specs: Mapping[str, MetricSpec] = METRICS,
) -> None:
    """Write `dataset` as OpenMetrics text for ``promtool tsdb create-blocks-from openmetrics``.

    One family per metric (``# HELP``/``# TYPE``; a counter's family name drops ``_total``,
    its samples keep it), every sample with its timestamp in seconds, ``# EOF`` at the end.
    `specs` maps each logical metric of the dataset's series to its Prometheus series (a
    caller with metrics of its own passes :data:`METRICS` plus them); series of a metric not
    in `specs` are not written.

    A sequence of datasets holding the same series on consecutive grids (a coarse history and
    a dense tail, say) is written as one: each series' samples from each dataset in turn.
    """
    parts = [dataset] if isinstance(dataset, Dataset) else list(dataset)
    for part in parts[1:]:
        if [(s.metric, dict(s.labels)) for s in part.series] != [
            (s.metric, dict(s.labels)) for s in parts[0].series
        ]:
            raise ValueError("every dataset must hold the same series in the same order")
        if part.timestamps[0] <= parts[0].timestamps[-1]:
            raise ValueError("the datasets' grids must follow one another")
    ts_text = [
        [str(int(t)) if float(t).is_integer() else repr(float(t)) for t in part.timestamps]
        for part in parts
    ]
    with open(path, "w", encoding="utf-8") as out:
        for metric, spec in specs.items():
            members = [i for i, s in enumerate(parts[0].series) if s.metric == metric]
            if not members:
                continue
            family = _family_name(spec)
            help_text = spec.help.replace("\\", "\\\\").replace("\n", "\\n")
            out.write(f"# HELP {family} {help_text}\n# TYPE {family} {spec.type}\n")
            for i in members:
                labels = ",".join(
                    f'{k}="{_escape_label_value(v)}"'
                    for k, v in sorted(parts[0].series[i].labels.items())
                )
                prefix = f"{spec.name}{{{labels}}} "
                for part, times in zip(parts, ts_text, strict=True):
                    out.writelines(
                        f"{prefix}{format_value(v)} {t}\n"
                        for v, t in zip(part.series[i].values.tolist(), times, strict=True)
                    )
        out.write("# EOF\n")


def to_frame(dataset: Dataset, metric: str, *, as_queried: bool = False) -> pd.DataFrame:
    """One column per tenant, indexed by a UTC ``DatetimeIndex``.

    With ``as_queried=True`` the ``ai_cost`` counter becomes its 15-minute rate in $/hour, as
    :data:`QUERIES` reads it (the first points are NaN); other metrics are unchanged.
    """
    import pandas as pd

    if metric not in METRICS:
        raise ValueError(f"`metric` must be one of {sorted(METRICS)}, got {metric!r}")
    values = dataset.matrix(metric)
    if as_queried and METRICS[metric].type == "counter":
        k = max(1, round(900 / dataset.step_seconds))
        rate = np.full_like(values, np.nan)
        rate[k:] = (values[k:] - values[:-k]) / (k * dataset.step_seconds) * 3600.0
        values = rate
    index = pd.to_datetime(dataset.timestamps, unit="s", utc=True)
    return pd.DataFrame(values, index=index, columns=list(dataset.tenants))
