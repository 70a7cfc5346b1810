"""The soak's world: tenants on their local calendars, every metric one function of time.

The same function gives the backfilled history (:meth:`World.history`, every 5 minutes) and
what the live exporter serves when Prometheus scrapes it (:class:`Exporter`, every 15 s), so
the live part continues the history seamlessly: no seam in level, shape, noise or counter.

Each tenant (``organization_id="org-NN"``) has a UTC offset (half hours among them), rest days
of its own (Saturday-Sunday, Friday-Saturday or Sunday only) at 35-70 % of a working day's
load, and a daily shape of two bumps (late morning, afternoon) in its local time above a night
floor. The load drives the shipped config's metrics (:data:`anomaly_lab.synth.METRICS`: a
request-rate gauge, a p95-latency gauge that rises with load, an error-ratio gauge noisier at
night, an AI-cost counter in dollars, a completion-ratio gauge, an integer queue depth) and
one more, the security team's failed sign-ins (:data:`AUTH_FAILURES`, an integer counter).
Each metric's level and noise size are drawn as the house generator draws them
(:func:`anomaly_lab.synth.draw_profiles`).

Noise lives on a 60-second grid (:data:`SLOT_SECONDS`): multiplicative AR(1) (0.8-0.9 per
minute, about 0.3-0.6 between 5-minute points, near the house generator's) for the rates, the
latency and the queue, white for the ratios, Poisson counts for the queue and the sign-ins. Counters add each
minute's increment (``rate × 60 s``, or the count) and interpolate inside the minute. Every
draw comes from ``numpy.random.default_rng(seed)``; the same seed gives the same world.

An :class:`Incident` multiplies one metric of one tenant by its kind's factor from its onset
on (a counter's *increase* since the onset is multiplied, i.e. its rate), and stays until the
soak ends. Incidents are set once the soak's clock is known (:meth:`World.schedule`), so the
history, which ends before any onset, holds none (unless a test starts them before the setup).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from anomaly_lab import synth
from prometheus_client import start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

SLOT_SECONDS = 60
"""The noise grid: one draw per tenant, metric and minute."""
HISTORY_STEP_SECONDS = 300
"""Resolution of the backfilled history (promtool writes about 40k samples/s)..."""
DENSE_TAIL_SECONDS = 4 * 3600.0
"""...but for its last 4 hours, at the scrape interval (see :meth:`World.history`)."""

AUTH_FAILURES = synth.MetricSpec(
    "processaudit_auth_failures_total",
    "counter",
    "Failed sign-in attempts of the organization's users.",
    (0.0, math.inf),
)
SPECS: dict[str, synth.MetricSpec] = {**synth.METRICS, "auth_failures": AUTH_FAILURES}
"""Every metric the world exposes: the shipped config's, and the failed sign-ins."""

AUTH_FAILURES_METRIC: dict[str, object] = {
    "name": "auth_failures",
    "query": "sum by (organization_id) (rate(processaudit_auth_failures_total[15m])) * 60",
    "labels": {"team": "security", "severity": "critical"},
}
"""The config entry a security team would add to the shipped config (failures per minute).
Its rate window is 15 minutes, as the shipped ``ai_cost`` query's: a 5-minute window holds one
sample of the 5-minute history at most, which has no rate."""


@dataclass(frozen=True)
class Kind:
    """One kind of incident: which metric is bent, by what factor, and who should be told."""

    metric: str
    """The config metric bent (a key of :data:`SPECS`)."""
    factor: float
    """Multiplies the gauge, or the counter's rate, from the onset on."""
    team: str
    severity: str
    """The escalation matrix entry (``team``, ``severity``) the incident should reach."""
    description: str
    related: tuple[str, ...]
    """Config metrics whose alerts are this incident's (its own, and e.g. the spend forecast
    its AI cost drives); alerts without a ``metric`` label (health, OrganizationDown's tenant)
    belong to the tenant's incident too."""


KINDS: dict[str, Kind] = {
    "error_ratio": Kind(
        "error_ratio", 10.0, "platform", "critical", "error ratio ×10", ("error_ratio",)
    ),
    "request_rate": Kind(
        "request_rate", 0.03, "platform", "critical", "request rate to 3 %", ("request_rate",)
    ),
    "auth_failures": Kind(
        "auth_failures", 25.0, "security", "critical", "auth failures ×25", ("auth_failures",)
    ),
    "latency_p95": Kind(
        "latency_p95", 3.0, "platform", "warning", "p95 latency ×3", ("latency_p95",)
    ),
    "ai_cost": Kind(
        "ai_cost", 8.0, "ai", "warning", "AI cost rate ×8", ("ai_cost", "ai_spend_24h")
    ),
    "completion": Kind(
        "completion", 0.7, "customer-success", "warning", "completion ×0.7", ("completion",)
    ),
    "queue_depth": Kind("queue_depth", 6.0, "product", "info", "queue depth ×6", ("queue_depth",)),
}
"""Every kind the soak can inject, by name (the metric it bends)."""
DEFAULT_KINDS = ("error_ratio", "request_rate", "auth_failures", "latency_p95", "ai_cost")
"""The default plan: each severity of the platform team, the security team, the AI team."""


@dataclass(frozen=True)
class Incident:
    """One kind bent into one tenant's metric from `onset` (epoch seconds) on."""

    kind: Kind
    tenant: str
    onset: float

    @property
    def metric(self) -> str:
        return self.kind.metric


@dataclass(frozen=True)
class _Calendars:
    """Per-tenant calendar and sign-in parameters, each an array of shape ``(n_tenants,)``
    (rest days: a list); the metrics' levels and noise are the house generator's
    (:func:`anomaly_lab.synth.draw_profiles`)."""

    offset_hours: np.ndarray
    rest_days: list[tuple[int, ...]]
    rest_level: np.ndarray
    night_floor: np.ndarray
    morning_hour: np.ndarray
    afternoon_hour: np.ndarray
    afternoon_weight: np.ndarray
    auth_per_minute: np.ndarray
    auth_start: np.ndarray


_OFFSETS = (-8.0, -6.0, -5.0, -3.5, -3.0, 0.0, 1.0, 2.0, 3.0, 5.5, 8.0, 9.0, 9.5, 10.0)
_REST_DAYS: tuple[tuple[int, ...], ...] = ((5, 6), (5, 6), (5, 6), (5, 6), (4, 5), (6,))
"""Monday = 0: mostly Saturday-Sunday, some Friday-Saturday, some a six-day week."""


def _draw_calendars(rng: np.random.Generator, n: int) -> _Calendars:
    return _Calendars(
        offset_hours=rng.choice(_OFFSETS, n),
        rest_days=[_REST_DAYS[int(i)] for i in rng.integers(0, len(_REST_DAYS), n)],
        rest_level=rng.uniform(0.35, 0.7, n),
        night_floor=rng.uniform(0.08, 0.22, n),
        morning_hour=rng.uniform(9.5, 11.5, n),
        afternoon_hour=rng.uniform(14.0, 16.5, n),
        afternoon_weight=rng.uniform(0.6, 1.0, n),
        auth_per_minute=rng.uniform(2.0, 8.0, n),
        auth_start=rng.integers(0, 5000, n).astype(float),
    )


def _bump(hour: np.ndarray, peak: np.ndarray, width_hours: float) -> np.ndarray:
    diff = (hour - peak + 12.0) % 24.0 - 12.0
    return np.asarray(np.exp(-0.5 * (diff / width_hours) ** 2))


class World:
    """Every tenant's metrics from `origin` to `end` (epoch seconds), as one function of time.

    Parameters
    ----------
    tenants : sequence of str
        The ``organization_id`` values.
    origin, end : float
        The span the world covers; :meth:`sample` refuses times outside it.
    seed : int
        Seed of every draw (profiles, then noise, in a fixed order).
    """

    def __init__(self, tenants: Sequence[str], *, origin: float, end: float, seed: int) -> None:
        if end <= origin:
            raise ValueError(f"`end` must follow `origin` ({origin}), got {end}")
        self.tenants = tuple(tenants)
        self.origin = float(origin)
        self.end = float(end)
        self.seed = seed
        self._incidents: tuple[Incident, ...] = ()
        n = len(self.tenants)
        n_slots = int(math.ceil((self.end - self.origin) / SLOT_SECONDS)) + 1
        rng = np.random.default_rng(seed)
        p = self._levels = synth.draw_profiles(rng, n)  # its calendar fields go unused
        c = self._calendars = _draw_calendars(rng, n)
        mid = self.origin + (np.arange(n_slots) + 0.5) * SLOT_SECONDS
        load = self.load(mid)
        # Noise per minute, drawn in a fixed order so the seed alone fixes the world.
        self._rps_noise = np.exp(p.rps_sigma * synth.ar1_noise(rng, (n_slots, n), 0.8))
        self._latency_noise = np.exp(0.07 * synth.ar1_noise(rng, (n_slots, n), 0.85))
        error_sigma = 0.22 * (1.0 + 0.6 * (1.0 - load))
        self._error_noise = np.exp(
            error_sigma * rng.standard_normal((n_slots, n)) - 0.5 * error_sigma**2
        )
        self._completion_noise = np.exp(0.15 * rng.standard_normal((n_slots, n)))
        queue_mean = (p.queue_base + p.queue_scale * load**1.5) * np.exp(
            0.1 * synth.ar1_noise(rng, (n_slots, n), 0.9)
        )
        self._queue = rng.poisson(queue_mean).astype(float)
        week = self.origin + np.arange(0, 7 * 86400, HISTORY_STEP_SECONDS, dtype=float)
        usd_per_second = p.daily_usd / 86400.0 / self.load(week).mean(axis=0)
        cost = (
            usd_per_second
            * load
            * np.exp(0.1 * synth.ar1_noise(rng, (n_slots, n), 0.8))
            * SLOT_SECONDS
        )
        auth = rng.poisson(c.auth_per_minute * (0.15 + 0.85 * load)).astype(float)
        # Counters: the value at each minute's start, and each minute's increment.
        self._increments = {"ai_cost": cost, "auth_failures": auth}
        self._starts = {
            "ai_cost": p.counter_start + np.cumsum(cost, axis=0) - cost,
            "auth_failures": c.auth_start + np.cumsum(auth, axis=0) - auth,
        }

    # ------------------------------------------------------------------ shapes

    def load(self, t: np.ndarray) -> np.ndarray:
        """Normalised load in (0, 1], shape ``(n_t, n_tenants)``, at epoch seconds `t`: the
        daily shape in each tenant's local time, lower on its rest days."""
        p = self._calendars
        local = np.asarray(t, dtype=float)[:, None] + p.offset_hours[None, :] * 3600.0
        hour = (local % 86400.0) / 3600.0
        shape = _bump(hour, p.morning_hour, 2.2) + p.afternoon_weight * _bump(
            hour, p.afternoon_hour, 2.6
        )
        daily = p.night_floor + (1.0 - p.night_floor) * shape / (1.0 + p.afternoon_weight)
        weekday = (np.floor(local / 86400.0) + 3) % 7  # 1970-01-01 was a Thursday
        rest = np.column_stack([np.isin(weekday[:, j], days) for j, days in enumerate(p.rest_days)])
        return np.asarray(daily * np.where(rest, p.rest_level, 1.0))

    # ------------------------------------------------------------------ incidents

    @property
    def incidents(self) -> tuple[Incident, ...]:
        return self._incidents

    def schedule(self, incidents: Sequence[Incident]) -> None:
        """Set the incidents (once the soak's clock is known); each tenant's metric takes at
        most one. What was already served or backfilled is not changed by it."""
        for inc in incidents:
            if inc.tenant not in self.tenants:
                raise ValueError(f"incident tenant {inc.tenant!r} is not among the tenants")
            if not self.origin < inc.onset < self.end:
                raise ValueError(f"incident onset {inc.onset} is outside the world")
        pairs = [(i.tenant, i.metric) for i in incidents]
        if len(set(pairs)) != len(pairs):
            raise ValueError(f"one incident per tenant and metric, got {pairs}")
        self._incidents = tuple(incidents)

    # ------------------------------------------------------------------ values

    def _slots(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each time's minute index and its fraction of that minute elapsed."""
        if t.size and (t.min() < self.origin or t.max() > self.end):
            raise ValueError(f"times must lie in [{self.origin}, {self.end}]")
        offset = (t - self.origin) / SLOT_SECONDS
        k = np.floor(offset).astype(int)
        return k, offset - k

    def _counter(self, metric: str, t: np.ndarray) -> np.ndarray:
        k, frac = self._slots(t)
        increment = self._increments[metric][k] * frac[:, None]
        if metric == "auth_failures":
            increment = np.floor(increment)  # whole failures only
        return np.asarray(self._starts[metric][k] + increment)

    def sample(self, t: np.ndarray | Sequence[float]) -> dict[str, np.ndarray]:
        """Every metric of :data:`SPECS` at epoch seconds `t`, incidents applied.

        Returns
        -------
        dict of str to ndarray
            Shape ``(n_t, n_tenants)`` per metric, columns in :attr:`tenants` order.
        """
        t = np.asarray(t, dtype=float)
        p = self._levels
        k, _ = self._slots(t)
        load = self.load(t)
        values = {
            "request_rate": p.peak_rps * load * self._rps_noise[k],
            "latency_p95": p.latency_base * (1.0 + p.latency_load * load) * self._latency_noise[k],
            "error_ratio": p.error_base * self._error_noise[k],
            "ai_cost": self._counter("ai_cost", t),
            "completion": 1.0
            - (1.0 - p.completion_base) * (1.0 + 0.2 * load) * self._completion_noise[k],
            "queue_depth": self._queue[k].copy(),
            "auth_failures": self._counter("auth_failures", t),
        }
        column = {tenant: j for j, tenant in enumerate(self.tenants)}
        for inc in self._incidents:
            on = t >= inc.onset
            if not on.any():
                continue
            j, v = column[inc.tenant], values[inc.metric]
            if SPECS[inc.metric].type == "counter":
                at_onset = self._counter(inc.metric, np.array([inc.onset]))[0, j]
                v[on, j] += (inc.kind.factor - 1.0) * (v[on, j] - at_onset)
            else:
                v[on, j] *= inc.kind.factor
        values["queue_depth"] = np.round(values["queue_depth"])
        return {m: np.clip(values[m], *SPECS[m].bounds) for m in SPECS}

    def history(
        self,
        start: float,
        end: float,
        *,
        scrape_interval_seconds: float,
        labels: Mapping[str, str] | None = None,
    ) -> list[synth.Dataset]:
        """The world from `start` to `end` (epoch seconds) as datasets to backfill, written
        with ``synth.write_openmetrics(..., specs=SPECS)``: every 5 minutes
        (:data:`HISTORY_STEP_SECONDS`), then every `scrape_interval_seconds` over the last
        :data:`DENSE_TAIL_SECONDS`, as Prometheus would have scraped it. End it just before
        Prometheus starts scraping: the first live scrape follows it within seconds.

        The dense tail keeps ``rate(...[15m])`` honest where the history meets the live
        scrapes: over a window holding both, Prometheus extrapolates from the average spacing,
        which the dense part makes short, and reads the sparse part's rate 20-35 % low. That
        dip sits where the sparse part meets the dense one; 4 hours back, it is out of the
        trailing windows (3 hours) of every point the soak's runs judge. With a 30-minute
        tail, the first half hour of a soak flagged the AI cost of quiet tenants at 0.52-0.60.

        `labels` go on every series besides the tenant's: the ``job`` and ``instance`` that
        Prometheus gives the live exporter's series, so that history and live are one series
        (with other labels, ``sum by (organization_id)`` would add the history's last sample
        to the live one for Prometheus' 5-minute lookback).
        """
        dense = end - scrape_interval_seconds * np.arange(
            int(DENSE_TAIL_SECONDS // scrape_interval_seconds), -1, -1, dtype=float
        )
        sparse_end = dense[0] - HISTORY_STEP_SECONDS
        n = int((sparse_end - start) // HISTORY_STEP_SECONDS) + 1
        sparse = sparse_end - HISTORY_STEP_SECONDS * np.arange(n - 1, -1, -1, dtype=float)
        return [
            self._dataset(sparse, HISTORY_STEP_SECONDS, labels),
            self._dataset(dense, scrape_interval_seconds, labels),
        ]

    def _dataset(
        self, ts: np.ndarray, step_seconds: float, labels: Mapping[str, str] | None
    ) -> synth.Dataset:
        values = self.sample(ts)
        series = []
        for j, tenant in enumerate(self.tenants):
            for metric in SPECS:
                column = np.ascontiguousarray(values[metric][:, j])
                column.flags.writeable = False
                series.append(
                    synth.Series(metric, {**(labels or {}), synth.TENANT_LABEL: tenant}, column)
                )
        ts.flags.writeable = False
        return synth.Dataset(ts, int(step_seconds), self.tenants, tuple(series))


class Exporter(Collector):
    """The world as a Prometheus target: each scrape reads :meth:`World.sample` at the wall
    clock (`clock`), one series per tenant and metric, labelled ``organization_id``."""

    def __init__(self, world: World, clock: Callable[[], float] = time.time) -> None:
        self.world = world
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        values = self.world.sample([self.clock()])
        for metric, spec in SPECS.items():
            family: GaugeMetricFamily | CounterMetricFamily
            if spec.type == "counter":
                family = CounterMetricFamily(spec.name, spec.help, labels=[synth.TENANT_LABEL])
            else:
                family = GaugeMetricFamily(spec.name, spec.help, labels=[synth.TENANT_LABEL])
            for j, tenant in enumerate(self.world.tenants):
                family.add_metric([tenant], float(values[metric][0, j]))
            yield family


@contextmanager
def serve_exporter(exporter: Exporter) -> Iterator[str]:
    """Serve `exporter` on a free 127.0.0.1 port (prometheus-client's HTTP server, in a
    thread) until exit; yields its base URL (Prometheus scrapes ``/metrics``)."""
    registry = CollectorRegistry()
    registry.register(exporter)
    server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def pick_tenants(
    tenants: Sequence[str], kinds: Sequence[str], seed: int
) -> tuple[dict[str, str], tuple[str, ...]]:
    """Which tenant gets which kind (a seeded draw), and the quiet tenants left over."""
    if len(kinds) > len(tenants):
        raise ValueError(f"{len(kinds)} incidents need as many tenants, got {len(tenants)}")
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise ValueError(f"incident kinds must be among {sorted(KINDS)}, got {unknown}")
    order = [tenants[int(i)] for i in np.random.default_rng([seed, 1]).permutation(len(tenants))]
    chosen = dict(zip(kinds, order, strict=False))
    taken = set(chosen.values())
    return chosen, tuple(t for t in tenants if t not in taken)


def expected_labels(incident: Incident) -> Mapping[str, str]:
    """The labels the escalation matrix routes this incident by."""
    return {"team": incident.kind.team, "severity": incident.kind.severity}
