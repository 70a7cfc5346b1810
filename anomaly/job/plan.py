"""How a run splits its work: the time window, shards of tenants and batches within a shard.

A run first plans (:func:`plan_batches`): per metric it counts the series per tenant with
``count by (<tenant>) (last_over_time((<query>)[<range>:<step>]))``
(:func:`~anomaly.io.promql.count_series_query`), evaluated at the window's end on the run's
grid, so it sees the series the range query will: first over the newest 12 steps (an hour at a
5-minute step: a few evaluations, cheap at 10,000 series), widening to the newest 288 steps
(a day) and then to the whole window only when the narrower count is empty. An instant count
at the window's end would see nothing of a metric whose newest sample is older than
Prometheus' 5-minute lookback (a scrape gap, an hourly metric, a backfilled store, a replay
with ``--at``), plan 0 series and read every metric whole. A metric above
``scale.max_series`` fails alone, before any range query, with an error naming it and the count
(the other metrics still run; ``anomaly_job_metric_failed`` shows it); so does a metric whose
count was answered but unusably (:class:`~anomaly.errors.AnswerError`: an error body with HTTP
200, truncated JSON, ...), since its size is unknown. A count Prometheus rejects is left to the
range query, which is rejected too and says so. When the largest metric has more than
``scale.batch_series`` series (or the run is sharded), the tenants come from that count plus
the label-values API over the metrics' selectors and window (tenants whose series stopped
before the counted stretch); when that lookup fails, each metric's selectors are looked up
alone, and a metric whose own lookup fails fails alone. The tenants are then split into a
power-of-two number of stable hash buckets; each batch reads every metric with
``<tenant>=~"t1|t2|..."`` (escaped) added to each selector of its query, so Prometheus reads
only those series from its index — cost per batch proportional to the batch, unlike wrapping
the query in ``and on (<tenant>)``, which evaluates the whole query once per batch. A metric
with ``split: false`` (a query that mixes tenants) is read whole and filtered by tenant
afterwards.

``--shard INDEX/COUNT`` keeps the tenants whose SHA-1 hash is INDEX mod COUNT, pushes under
``shard=INDEX`` and keys stored models by shard and batch, so shards share nothing.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import numpy as np

from anomaly.config import Config, MetricConfig
from anomaly.errors import AnswerError, ConfigError, QueryError
from anomaly.io.prometheus import PrometheusSource
from anomaly.io.promql import count_series_query, series_selectors

__all__ = [
    "COUNT_REACH_STEPS",
    "BatchPlan",
    "Shard",
    "count_series",
    "evaluation_window",
    "evidence_rows",
    "plan_batches",
    "previous_run",
    "run_interval",
    "tenant_hash",
]

log = logging.getLogger(__name__)

#: How far back from the window's end the plan first counts a metric's series, in steps of
#: its grid (an hour, then a day at a 5-minute step); the whole window when both are empty.
COUNT_REACH_STEPS = (12, 288)


def evaluation_window(
    config: Config, now: float | None = None, metric: MetricConfig | None = None
) -> np.ndarray:
    """The grid a run reads: ``lookback`` (the metric's own, if set) back from ``now`` (whole
    seconds) in steps of ``step``, so its newest row is the run's own time: a run a minute after an
    incident began sees it, whatever the step. (Profiles are read by time-of-day slot, so a
    grid need not fall on multiples of the step.)"""
    now = time.time() if now is None else now
    lookback = (metric.lookback_seconds if metric else None) or config.lookback_seconds
    n = int(round(lookback / config.step_seconds))
    return math.floor(now) - config.step_seconds * np.arange(n, -1, -1, dtype=np.float64)


def previous_run(schedule: str, now: float) -> float:
    """When the ``schedule`` (cron, UTC) fired before the run at ``now``: the run itself
    fired at the latest fire time up to ``now`` (it starts a little after it), so the one
    before that (``now`` minus a day when it fires less often than daily)."""
    return _fires(schedule, now)[0]


def run_interval(schedule: str, now: float) -> float:
    """Seconds between the ``schedule``'s fire before the run at ``now`` and the run's own
    (a day at most)."""
    before, latest = _fires(schedule, now)
    return latest - before


@functools.lru_cache(maxsize=8)
def _fires(schedule: str, now: float) -> tuple[float, float]:
    """The ``schedule``'s last two fire times up to ``now`` (``now`` minus a day and ``now``
    when it fires less often than daily). Every metric of a run asks with the same ``now``:
    they are worked out once."""
    from apscheduler.triggers.cron import CronTrigger

    trigger = CronTrigger.from_crontab(schedule, timezone="UTC")
    for back in (3600.0, 86400.0):
        start = datetime.fromtimestamp(now - back, tz=timezone.utc)
        fired: list[float] = []
        fire = trigger.get_next_fire_time(None, start)
        while fire is not None and fire.timestamp() <= now:
            fired.append(fire.timestamp())
            fire = trigger.get_next_fire_time(fire, fire + timedelta(seconds=1))
        if len(fired) >= 2:
            return fired[-2], fired[-1]
    return now - 86400.0, now


def evidence_rows(config: Config, times: np.ndarray, now: float) -> int:
    """How many of the newest rows a run judges: every grid point since the previous run's
    newest one, that is within the schedule's interval of ``times``' newest (one at a
    5-minute schedule and a 5-minute step, five at a 1-minute step; one, the run's own time,
    at a 1-minute schedule), at least one."""
    t = np.asarray(times, dtype=np.float64)
    if t.size == 0:
        return 1
    interval = run_interval(config.schedule, now)
    return max(1, int(np.count_nonzero(t > t[-1] - interval)))


@dataclass(frozen=True)
class Shard:
    """This process's part of the tenants: those whose stable hash is ``index`` mod ``count``."""

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ValueError(
                f"`shard` must be INDEX/COUNT with 0 <= INDEX < COUNT, got {self.index}/{self.count}"
            )

    @classmethod
    def parse(cls, text: str) -> Shard:
        """``"INDEX/COUNT"`` (e.g. ``"0/4"``)."""
        try:
            index, count = (int(part) for part in text.split("/"))
        except ValueError:
            raise ValueError(f"`shard` must be INDEX/COUNT such as 0/4, got {text!r}") from None
        return cls(index, count)

    def owns(self, tenant: str) -> bool:
        return tenant_hash(tenant) % self.count == self.index

    @property
    def grouping(self) -> str | None:
        """The sink's ``shard`` grouping-key value (``None`` when unsharded)."""
        return None if self.count == 1 else str(self.index)

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def tenant_hash(tenant: str) -> int:
    """A hash of ``tenant`` that is the same in every process and every version (SHA-1, not
    Python's salted ``hash()``): it decides the tenant's shard and batch."""
    digest = hashlib.sha1(tenant.encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big")


@dataclass(frozen=True)
class BatchPlan:
    """How one run splits its tenants.

    ``batches`` holds each batch's tenants, or is ``None`` for one unrestricted batch (the
    metrics' queries as configured: an unsharded run small enough for one batch). A tenant's
    batch is a stable hash bucket, so its stored model is found again next run; the number of
    batches is a power of two, so it changes rarely as tenants come and go.
    """

    shard: Shard
    batches: tuple[tuple[str, ...], ...] | None
    series: Mapping[str, int]
    """Series per metric in this shard over the newest stretch of its window that has any
    (:func:`count_series`)."""
    failed: Mapping[str, str]
    """Metrics refused before fetching (``scale.max_series``, an unusable answer to their
    count or tenant lookup), with the reason."""

    @property
    def n_batches(self) -> int:
        return 1 if self.batches is None else len(self.batches)

    def store_key(self, metric: str, batch: int) -> str:
        """The model store key of ``metric`` in one batch of this shard."""
        if self.shard.count == 1 and self.n_batches == 1:
            return metric
        return (
            f"{metric}@shard{self.shard.index}of{self.shard.count}-batch{batch}of{self.n_batches}"
        )


def count_series(
    source: PrometheusSource, query: str, tenant_label: str, times: np.ndarray, step_seconds: float
) -> list[tuple[dict[str, str], float]]:
    """``query``'s series per ``tenant_label`` value over the newest stretch of the grid
    ``times`` (every ``step_seconds``) that has any: the newest :data:`COUNT_REACH_STEPS` steps,
    then the whole window (``[]`` when it has none). Raises
    :class:`~anomaly.errors.QueryError` as the query does."""
    end, span = float(times[-1]), float(times[-1] - times[0])
    for reach in sorted({min(n * step_seconds, span) for n in COUNT_REACH_STEPS} | {span}):
        counts = source.query(count_series_query(query, tenant_label, reach, step_seconds), end)
        if counts:
            return counts
    return []


def _list_tenants(
    source: PrometheusSource,
    tenant_label: str,
    selectors: Mapping[str, list[str]],
    start: float,
    end: float,
    failed: dict[str, str],
) -> set[str]:
    """The ``tenant_label`` values of the metrics' ``selectors`` (per metric name) between
    ``start`` and ``end``: one label-values lookup for all of them, else (rejected, or
    answered unusably) one per metric; a metric whose own lookup fails goes to ``failed``."""
    every = sorted({s for sel in selectors.values() for s in sel})
    if not every:
        return set()
    try:
        return set(source.label_values(tenant_label, every, start=start, end=end))
    except QueryError as e:
        log.warning("cannot list the tenants of all metrics at once (%s); listing each alone", e)
    out: set[str] = set()
    for name, sel in selectors.items():
        if not sel:
            continue
        try:
            out |= set(source.label_values(tenant_label, sorted(set(sel)), start=start, end=end))
        except QueryError as e:
            failed[name] = f"metric {name}: cannot list its tenants: {e}"
            log.error("%s", failed[name])
    return out


def plan_batches(
    config: Config, source: PrometheusSource, now: float, shard: Shard | None = None
) -> BatchPlan:
    """Count each metric's series over the newest stretch of its window that has any
    (:func:`count_series`, cheap), refuse metrics above ``scale.max_series`` (or whose count
    was answered unusably), and, for a run of several batches or shards, list this shard's
    tenants (:func:`_list_tenants`) and bucket them so that no batch holds much more than
    ``scale.batch_series`` series of any metric."""
    shard = shard or Shard()
    tl = config.tenant_label
    if tl is None:
        if shard.count > 1:
            raise ConfigError("--shard", "sharding needs a `tenant_label` to shard by")
        return BatchPlan(shard, None, {}, {})
    tenants: set[str] = set()
    series: dict[str, int] = {}
    failed: dict[str, str] = {}
    start = end = now
    for mc in config.metrics:
        times = evaluation_window(config, now, mc)
        start, end = min(start, float(times[0])), float(times[-1])
        try:
            counts = count_series(source, mc.query, tl, times, config.step_seconds)
        except AnswerError as e:
            # Its size unknown, its range read could exceed scale.max_series: not fetched.
            failed[mc.name] = f"metric {mc.name}: cannot count its series: {e}"
            log.error("%s", failed[mc.name])
            continue
        except QueryError as e:
            # Rejected: the range query will be rejected too and say so; no count here.
            log.debug("metric %s: cannot count series: %s", mc.name, e)
            continue
        n = 0
        for labels, value in counts:
            tenant = labels.get(tl)
            if tenant is None or shard.owns(tenant):
                n += int(value)
                if tenant is not None:
                    tenants.add(tenant)
        series[mc.name] = n
        limit = config.scale.max_series
        if limit is not None and n > limit:
            failed[mc.name] = (
                f"metric {mc.name}: its query returns {n} series"
                + (f" in shard {shard}" if shard.count > 1 else "")
                + f", above scale.max_series ({limit}); not fetched. Raise the limit, "
                "narrow the query or shard the job (--shard)"
            )
            log.error("%s", failed[mc.name])
    biggest = max((n for name, n in series.items() if name not in failed), default=0)
    wanted = max(1, math.ceil(biggest / config.scale.batch_series))
    n_batches = 1 << (wanted - 1).bit_length()
    if shard.count == 1 and n_batches == 1:
        return BatchPlan(shard, None, series, failed)  # the queries read whole: no tenant list
    # Tenants whose series ended before the counted stretch still get their window scored.
    selectors = {
        mc.name: series_selectors(mc.query)
        for mc in config.metrics
        if mc.split and mc.name not in failed
    }
    listed = _list_tenants(source, tl, selectors, start, end, failed)
    tenants |= {t for t in listed if shard.owns(t)}
    buckets: list[list[str]] = [[] for _ in range(n_batches)]
    for t in sorted(tenants):
        buckets[(tenant_hash(t) // shard.count) % n_batches].append(t)
    return BatchPlan(shard, tuple(tuple(b) for b in buckets), series, failed)
