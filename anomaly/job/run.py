"""One cycle of the job (:func:`run_once`): plan → batches (in worker processes) → push → report.

A run plans its batches and shards first (:mod:`anomaly.job.plan`), then scores every metric
of a batch (:mod:`anomaly.job.metric`), turns the batch's outcomes into samples
(:mod:`anomaly.job.export`) and pushes them, batch by batch, in ``scale.workers`` processes
(by default as many as the CPUs it may use, for a run large enough to repay them:
:func:`auto_workers`).
Each batch's tenant groups are complete (every metric and the health of its tenants), so they
are pushed batch by batch with replace semantics; stale groups are deleted and the job group
pushed only after every batch. The run's progress is logged as it happens: a line per metric
(per metric and batch) and per batch as each finishes, in worker processes too, and a last
line for the run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import logging.handlers
import math
import multiprocessing
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np

from anomaly.config import MAX_WORKERS, Config, available_cpus
from anomaly.errors import StoreError
from anomaly.frame import Frame
from anomaly.health import TenantHealth, global_health, tenant_health
from anomaly.io.prometheus import PrometheusSource
from anomaly.io.pushgateway import PushgatewaySink, PushReport, Sample
from anomaly.io.store import ModelStore
from anomaly.job import export
from anomaly.job.freshness import Freshness, align_tenants
from anomaly.job.metric import (
    CalendarBook,
    TenantCalendars,
    metric_outcomes,
    read_calendar_book,
    refit_due,
)
from anomaly.job.plan import BatchPlan, Shard, plan_batches
from anomaly.job.report import Finding, MetricOutcome, RunReport

__all__ = [
    "AUTO_WORKERS_MIN_SERIES",
    "BatchResult",
    "auto_workers",
    "newest_value",
    "process_batch",
    "run_once",
]

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------- one batch


@dataclass
class BatchResult:
    """What one batch produced: all of its tenants' samples (their groups are whole), the
    findings and health of those tenants, and per-metric outcomes."""

    index: int
    samples: list[Sample]
    findings: list[Finding]
    health: list[TenantHealth]
    outcomes: list[MetricOutcome]
    seconds: float = 0.0


def newest_value(values: np.ndarray, k: int = 3) -> float:
    """The newest finite value among a series' last ``k`` points (NaN if none): what health
    judges a tenant's objectives on."""
    tail = values[-k:]
    finite = tail[np.isfinite(tail)]
    return float(finite[-1]) if finite.size else math.nan


#: The share of a series' history windows that may be all zero or silent, as long as its
#: newest ones, before its newest ones are no outage: above it, such quiet is the series'
#: normal (a failure counter that reads 0 in a fifth of its hours), below it an outage (a
#: 2-hour outage last week is 1.2 % of a 7-day history and leaves the next one counted).
NORMAL_QUIET_SHARE = 0.02


def is_out(values: np.ndarray, k: int = 3) -> bool:
    """Whether a series that normally has nonzero values is out at its newest ``k`` points:
    no value at all, or zeros (a request rate, a latency or an error ratio with nothing to
    measure), where ``k`` points as quiet are rare in its history (from its first value on,
    see :data:`NORMAL_QUIET_SHARE`): a sparse counter at 0 is not out."""
    tail, history = values[-k:], values[:-k]
    seen = history[np.isfinite(history)]
    if seen.size == 0 or np.median(np.abs(seen)) == 0:
        return False
    finite = tail[np.isfinite(tail)]
    if finite.size and np.any(finite != 0):
        return False
    history = history[int(np.argmax(np.isfinite(history))) :]
    if history.size < k:
        return True
    quiet = ~np.isfinite(history) | (history == 0)
    runs = np.lib.stride_tricks.sliding_window_view(quiet, k).all(axis=1)
    return bool(runs.mean() < NORMAL_QUIET_SHARE)


def _health(
    config: Config, outcomes: Sequence[MetricOutcome], findings: Sequence[Finding]
) -> list[TenantHealth]:
    """Health of every tenant in ``outcomes``' frames (one batch's tenants are all of theirs):
    its objectives on the newest values (a late series' up to its newest value, see
    :mod:`anomaly.job.freshness`), an outage of an objective's metric as a breach, and its
    anomalies of the last hour (see :attr:`Finding.recent`); with the age of the oldest newest
    value among its series."""
    current: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    flagged: dict[str, dict[str, float]] = defaultdict(dict)
    outages: dict[str, set[str]] = defaultdict(set)
    ages: dict[str, float] = {}
    objective_metrics = {o.metric for o in config.health.objectives}
    tenants: set[str] = set()
    for o in outcomes:
        if o.frame is None:
            continue
        fresh = o.freshness or Freshness.fresh(o.frame.n_series)
        n_rows = o.frame.values.shape[0]
        for j, key in enumerate(o.frame.keys):
            if key.tenant is None:
                continue
            tenants.add(key.tenant)
            values = o.frame.values[: n_rows - int(fresh.shift[j]), j]
            current[key.tenant][o.metric.name].append(newest_value(values))
            if o.metric.name in objective_metrics and is_out(values):
                outages[key.tenant].add(o.metric.name)
            age = float(fresh.age_seconds[j])
            if math.isfinite(age):
                ages[key.tenant] = max(age, ages.get(key.tenant, -math.inf))
    for f in findings:
        trouble = max(f.score if f.is_anomaly else 0.0, f.recent)
        if trouble > 0 and f.key.tenant is not None:
            prev = flagged[f.key.tenant].get(f.metric, 0.0)
            flagged[f.key.tenant][f.metric] = max(prev, trouble)
    return [
        tenant_health(config.health, t, current[t], flagged[t], outages[t], ages.get(t, math.nan))
        for t in sorted(tenants)
    ]


def _align_tenants(outcomes: Sequence[MetricOutcome]) -> None:
    """Judge each tenant's regular series as far back as most of them are late
    (:func:`~anomaly.job.freshness.align_tenants`; a batch holds all of its tenants' metrics)."""
    kept = [o for o in outcomes if o.frame is not None and o.freshness is not None]
    aligned = align_tenants(
        [[k.tenant for k in o.frame.keys] for o in kept if o.frame is not None],
        [o.freshness for o in kept if o.freshness is not None],
    )
    for o, fresh in zip(kept, aligned, strict=True):
        o.freshness = fresh


def process_batch(
    config: Config,
    plan: BatchPlan,
    index: int,
    *,
    now: float,
    source: PrometheusSource,
    store: ModelStore | None,
    keep_frames: bool = True,
    outcomes: list[MetricOutcome] | None = None,
) -> BatchResult:
    """Fetch, fit or reuse, score and forecast every metric for one batch's tenants
    (``outcomes``: the metrics already scored, e.g. in parallel), and assemble the samples.
    Logs the batch's progress line when the run has several."""
    t0 = time.perf_counter()
    if outcomes is None:
        outcomes = metric_outcomes(
            config, plan, index, range(len(config.metrics)), now=now, source=source, store=store
        )
    _align_tenants(outcomes)
    samples: list[Sample] = []
    findings: list[Finding] = []
    for outcome in outcomes:
        found = outcome.findings()
        samples.extend(export.finding_samples(outcome.metric, found))
        findings.extend(found)
        samples.extend(export.forecast_samples(outcome))
    health = _health(config, outcomes, findings)
    samples.extend(export.health_samples(config.tenant_label, health, time.time()))
    if not keep_frames:
        for o in outcomes:
            o.frame = o.result = o.forecast = o.breach_seconds = o.freshness = None
    result = BatchResult(index, samples, findings, health, outcomes, time.perf_counter() - t0)
    if plan.n_batches > 1:
        log.info(
            "batch %d/%d: %s series, %s anomalies, %.1fs",
            index + 1,
            plan.n_batches,
            f"{len(findings):,}",
            f"{sum(f.is_anomaly for f in findings):,}",
            result.seconds,
        )
    return result


# --------------------------------------------------------------------------- worker processes


@dataclass(frozen=True)
class _Work:
    """A run's inputs that every worker task needs (all of them pickle)."""

    config: Config
    plan: BatchPlan
    now: float
    store: ModelStore | None
    calendars: CalendarBook | None = None
    """The tenants' calendars, for a batch whose metrics are scored side by side."""


def _batch_in_worker(work: _Work, index: int) -> BatchResult:
    """Batch ``index``, samples assembled (its frames dropped: only samples travel back)."""
    with PrometheusSource(work.config.prometheus) as source:
        return process_batch(
            work.config,
            work.plan,
            index,
            now=work.now,
            source=source,
            store=work.store,
            keep_frames=False,
        )


def _unit_in_worker(work: _Work, task: tuple[list[int], dict[str, Frame]]) -> list[MetricOutcome]:
    """The outcomes of one group of metrics (:func:`_metric_units`) of a run of one batch,
    with the reads of them already made (those the tenants' calendars needed)."""
    unit, reads = task
    with PrometheusSource(work.config.prometheus) as source:
        return metric_outcomes(
            work.config,
            work.plan,
            0,
            unit,
            now=work.now,
            source=source,
            store=work.store,
            calendars=TenantCalendars.given(work.config, work.calendars, work.now),
            frames=reads,
        )


def _metric_units(config: Config) -> list[list[int]]:
    """The metrics' indices in groups that share reads: a forecast metric joins the metric that
    is its rate; groups in order of their first metric, each in config order."""
    unit_of = list(range(len(config.metrics)))
    names = {mc.name: i for i, mc in enumerate(config.metrics)}
    for i, mc in enumerate(config.metrics):
        if mc.forecast is not None and mc.forecast.rate in names:
            unit_of[i] = unit_of[names[mc.forecast.rate]]
    units: dict[int, list[int]] = {}
    for i, u in enumerate(unit_of):
        units.setdefault(u, []).append(i)
    return sorted(units.values())


class _Relay(logging.Handler):
    """Hands a worker's log record to this process's logger of the same name, so the run's
    handlers (the CLI's stderr, a test's capture) see it as it happens."""

    def emit(self, record: logging.LogRecord) -> None:
        logging.getLogger(record.name).handle(record)


def _start_worker(records: multiprocessing.Queue[logging.LogRecord], level: int) -> None:
    """A worker's logging: every record at ``level`` or above goes to the parent's queue."""
    root = logging.getLogger()
    root.handlers[:] = [logging.handlers.QueueHandler(records)]
    root.setLevel(level)


def _start_method() -> str:
    """How worker processes start: ``fork`` from the main thread (``run --once``: the cheapest,
    and the only other thread, our log listener, holds no lock a child needs: Python
    reinitialises logging's locks at fork), a fork server from any other thread (``serve`` runs
    cycles in APScheduler's thread, where ``fork`` could copy a lock another thread holds).

    Measured (scale_bench, N=1000, 2 workers): the fork server adds ~2 s and ~130 MiB peak PSS
    to a run that starts it (it imports the libraries once more, shared with the workers but
    not with this process); ``serve`` keeps it across cycles, so it pays that once. ``spawn``
    costs ~1.1 s every run (each worker imports numpy and pandas anew).
    """
    return "fork" if threading.current_thread() is threading.main_thread() else "forkserver"


#: Fewer series than this in a run (summed over its metrics, as planned) and ``scale.workers:
#: auto`` keeps to one process. Measured with the shipped config's 7 metrics, one batch, 2
#: workers: 4 tenants (28 series) take 0.6 s longer warm with a fork-started pool, 5-9 s longer
#: in ``serve``'s thread (a fork server), and 24 tenants (168 series) gain nothing cold and lose
#: 1.2 s warm; at 1,000 series the pool cuts a cold run from 38.0 to 28.8 s.
AUTO_WORKERS_MIN_SERIES = 500


def auto_workers(plan: BatchPlan, cpus: int | None = None) -> int:
    """How many processes a run with ``scale.workers: auto`` uses: one for a run of fewer than
    :data:`AUTO_WORKERS_MIN_SERIES` series (starting workers costs more than they save), else
    ``cpus`` (default :func:`~anomaly.config.available_cpus`), at most
    :data:`~anomaly.config.MAX_WORKERS`. A run never starts more than it has batches, or
    metrics for a run of one batch (:func:`_batch_results`)."""
    if sum(plan.series.values()) < AUTO_WORKERS_MIN_SERIES:
        return 1
    return min(available_cpus() if cpus is None else cpus, MAX_WORKERS)


@contextlib.contextmanager
def _worker_pool(n: int) -> Iterator[ProcessPoolExecutor]:
    """``n`` worker processes whose log records reach this process's loggers as they are
    emitted (a queue and a listener thread), all of them delivered when the pool closes."""
    method = _start_method()
    ctx = multiprocessing.get_context(method)
    if method == "forkserver":
        ctx.set_forkserver_preload([__name__])
    records: multiprocessing.Queue[logging.LogRecord] = ctx.Queue()
    listener = logging.handlers.QueueListener(records, _Relay())
    listener.start()
    try:
        with ProcessPoolExecutor(
            max_workers=n,
            mp_context=ctx,
            initializer=_start_worker,
            initargs=(records, logging.getLogger("anomaly").getEffectiveLevel()),
        ) as pool:
            yield pool
    finally:
        listener.stop()
        records.close()


def _processes(config: Config, plan: BatchPlan, workers: int) -> int:
    """How many processes work on a run with ``workers``: no more than it has batches, or
    groups of metrics (:func:`_metric_units`) for a run of one batch; 1 means no pool."""
    units = len(_metric_units(config)) if plan.n_batches == 1 else plan.n_batches
    return max(1, min(workers, units))


def _batch_results(
    config: Config,
    plan: BatchPlan,
    *,
    now: float,
    source: PrometheusSource,
    store: ModelStore | None,
    workers: int,
) -> Iterator[BatchResult]:
    """Every batch's result in batch order, from ``workers`` processes when more than one:
    batches side by side, or, for a run of one batch, its metrics side by side (a forecast
    metric with its rate metric, :func:`_metric_units`)."""
    single = plan.n_batches == 1
    units = _metric_units(config)
    n_processes = _processes(config, plan, workers)
    if n_processes == 1:
        for i in range(plan.n_batches):
            yield process_batch(
                config, plan, i, now=now, source=source, store=store, keep_frames=single
            )
        return
    work = _Work(config, plan, now, store)
    reads: dict[str, Frame] = {}
    if single and refit_due(config, plan, 0, store, now):
        # The metrics are fitted in separate processes: the tenants' calendars, which each
        # fit reads off all of a tenant's metrics, are read here once for all of them, and
        # each unit gets the reads of its metrics with its task instead of reading them again.
        book = read_calendar_book(
            config, now=now, source=source, tenants=None, frames=reads, errors={}
        )
        work = dataclasses.replace(work, calendars=book)
    # A unit holds a forecast metric's rate metric too (:func:`_metric_units`): its own
    # metrics are all it reads.
    tasks: list[tuple[list[int], dict[str, Frame]]] = []
    for unit in units:
        names = {config.metrics[i].name for i in unit}
        tasks.append((unit, {n: f for n, f in reads.items() if n in names}))
    with _worker_pool(n_processes) as pool:
        if single:
            by_index: dict[int, MetricOutcome] = {}
            for unit, outcomes in zip(
                units, pool.map(functools.partial(_unit_in_worker, work), tasks), strict=True
            ):
                by_index.update(zip(unit, outcomes, strict=True))
            outcomes = [by_index[i] for i in range(len(config.metrics))]
            yield process_batch(
                config, plan, 0, now=now, source=source, store=store, outcomes=outcomes
            )
            return
        yield from pool.map(functools.partial(_batch_in_worker, work), range(plan.n_batches))


# --------------------------------------------------------------------------- the run


def _merge(total: MetricOutcome, part: MetricOutcome, single: bool) -> None:
    """Add one batch's outcome of a metric to the run's."""
    if single:
        total.frame, total.result = part.frame, part.result
        total.n_evidence, total.freshness = part.n_evidence, part.freshness
        total.forecast, total.breach_seconds = part.forecast, part.breach_seconds
    for name in (
        "refitted",
        "seconds",
        "n_series",
        "n_skipped",
        "n_unscored",
        "fetch_seconds",
        "model_seconds",
        "score_seconds",
        "forecast_seconds",
    ):
        setattr(total, name, getattr(total, name) + getattr(part, name))
    total.breaches.extend(part.breaches)
    total.store_error = total.store_error or part.store_error
    # One batch without series of a metric is normal (its tenants lack it); the metric fails
    # when its query does, or when no batch had any series (set by run_once afterwards).
    if single or part.query_failed:
        total.error = total.error or part.error
        total.query_failed = total.query_failed or part.query_failed


def _batch_group(config: Config, plan: BatchPlan) -> Callable[[int], str | None]:
    """The Pushgateway group of a batch's tenants: ``None`` (one group per tenant) or the
    batch's name, per ``pushgateway.grouping``."""
    grouping = config.pushgateway.grouping
    if grouping == "tenant" or (grouping == "auto" and plan.n_batches == 1):
        return lambda index: None
    return lambda index: f"{index + 1}-of-{plan.n_batches}"


def _log_forecast_modes(config: Config) -> None:
    """Once per run: a warning for each forecast that trails a rolling window in its query
    for want of a rate (``forecast.trails``), the mode of the others for debugging."""
    for mc in config.metrics:
        fcc = mc.forecast
        if fcc is not None and fcc.trails:
            log.warning(
                "metric %s: forecast plainly, so it lags its rolling window: %s "
                "(forecast.rate can name the metric that is its rate)",
                mc.name,
                fcc.reason,
            )
        elif fcc is not None:
            log.debug("metric %s: forecast %s", mc.name, fcc.describe())


def run_once(
    config: Config,
    *,
    now: float | None = None,
    source: PrometheusSource | None = None,
    sink: PushgatewaySink | None = None,
    store: ModelStore | None = None,
    shard: Shard | None = None,
    workers: int | None = None,
) -> RunReport:
    """One cycle: query every metric, fit or load models, score, compute health, push.

    The tenants are read in batches (:func:`plan_batches`), each processed and its tenants'
    groups pushed before the next, so memory is bounded by a batch; stale groups are deleted
    and the job's own group is pushed only after every batch succeeded. ``shard`` restricts
    the run to its tenants and pushes under its own ``shard`` grouping key; ``workers``
    (default ``scale.workers``; when that is unset, :func:`auto_workers`) processes work on
    batches, or on the metrics of a run of one batch, side by side, with their own connections
    to Prometheus (not ``source``).

    Raises :class:`~anomaly.errors.SourceError` when Prometheus is unreachable and
    :class:`~anomaly.errors.SinkError` when the push fails; a broken query only fails its metric.
    A model store that cannot save (disk full) raises :class:`~anomaly.errors.StoreError` after
    the tenants' results were pushed, without the job's own group: detection goes on, and the
    job's ageing last success is the alarm.
    """
    started = time.time()
    now = started if now is None else now
    shard = shard or Shard()
    source = source or PrometheusSource(config.prometheus)
    sink = sink or PushgatewaySink(
        config.pushgateway,
        config.tenant_label,
        shard=shard.grouping,
        help_text=export.HELP,
        pos_inf=export.POS_INF,
    )
    store = store if store is not None else ModelStore(config.model_dir)
    workers = config.scale.workers if workers is None else workers
    source.check()
    plan = plan_batches(config, source, now, shard)
    why = str(workers)
    if workers is None:
        workers = auto_workers(plan)
        series = sum(plan.series.values())
        why = (
            f"auto, {workers} CPUs available"
            if series >= AUTO_WORKERS_MIN_SERIES
            else f"auto, {series:,} series: fewer than {AUTO_WORKERS_MIN_SERIES:,} run in one"
        )
    n_processes = _processes(config, plan, workers)
    log.info(
        "%s (scale.workers: %s)",
        "1 process" if n_processes == 1 else f"{n_processes} worker processes",
        why,
    )
    _log_forecast_modes(config)
    report = RunReport(started_at=started, evaluated_at=now, shard=shard, batches=plan.n_batches)
    report.outcomes = [MetricOutcome(mc) for mc in config.metrics]
    single = plan.n_batches == 1
    pushed: list[dict[str, str]] = []
    group_of = _batch_group(config, plan)
    if not single:
        log.info(
            "shard %s: %d tenants in %d batches (largest metric: %d series)",
            shard,
            sum(len(b) for b in plan.batches or ()),
            plan.n_batches,
            max(plan.series.values(), default=0),
        )
    retired: list[dict[str, str]] = []
    sink.start_run()
    for result in _batch_results(
        config, plan, now=now, source=source, store=store, workers=workers
    ):
        for total, part in zip(report.outcomes, result.outcomes, strict=True):
            _merge(total, part, single)
        report.findings.extend(result.findings)
        report.health.extend(result.health)
        t_push = time.perf_counter()
        put = sink.put(result.samples, group=group_of(result.index))
        pushed.extend(put.groups_pushed)
        retired.extend(put.groups_deleted)
        report.push_seconds += time.perf_counter() - t_push
    for o in report.outcomes if not single else ():
        if o.error is None and o.n_series == 0:
            o.error = (
                f"all {o.n_skipped} series skipped" if o.n_skipped else "query returned no series"
            )
            log.warning("metric %s: %s", o.metric.name, o.error)
    for i, o in enumerate(report.outcomes if not single else (), 1):
        if o.error is None:  # the metric's total over the batches (each was logged as it went)
            log.info("[%d/%d] %s", i, len(report.outcomes), o.progress())
    report.global_health = global_health(report.health)
    unsaved = [o.store_error for o in report.outcomes if o.store_error is not None]
    if unsaved:
        # The tenants' results are pushed and their alerts stay live; the job's own group is
        # not: its last success ages, so AnomalyJobStale tells the platform team.
        report.duration_seconds = time.time() - started
        raise StoreError(
            f"{unsaved[0]}; the scores of this run were pushed, its models not saved"
            + (f" ({len(unsaved)} metrics)" if len(unsaved) > 1 else "")
        )
    finished = time.time()
    t_push = time.perf_counter()
    push = sink.push(export.job_samples(report, finished), keep=pushed)
    report.push_seconds += time.perf_counter() - t_push
    report.push = PushReport(
        tuple(pushed) + push.groups_pushed,
        tuple(retired) + push.groups_deleted,
        push.samples_pushed,
        push.samples_dropped,
        push.duplicates,
    )
    report.duration_seconds = time.time() - started
    log.info("%s", report.progress())
    return report
