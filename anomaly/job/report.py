"""What a run found: per series (:class:`Finding`), per metric (:class:`MetricOutcome`), per
run (:class:`RunReport`), and the human summary of it (:func:`format_summary`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # annotations only: the report's types, without their modules' imports
    from anomaly.config import MetricConfig
    from anomaly.frame import Frame, SeriesKey
    from anomaly.health import TenantHealth
    from anomaly.io.pushgateway import PushReport
    from anomaly.job.freshness import Freshness
    from anomaly.job.plan import Shard
    from anomaly.models.forecast import Forecast
    from anomaly.models.scoring import ScoreResult

__all__ = ["RECENT_SECONDS", "Finding", "MetricOutcome", "RunReport", "format_summary"]


#: How long a flagged point still counts against its tenant's health (linearly less with
#: age, nothing after this many seconds).
RECENT_SECONDS = 3600.0


@dataclass(frozen=True)
class Finding:
    """One scored series: its score over the points since the previous run (the highest),
    its newest point, and its recent trouble.

    ``recent`` is the highest flagged score of the last :data:`RECENT_SECONDS` before its newest
    point, each weighed down linearly with its age (0 when nothing was flagged): what health
    remembers. ``data_age_seconds``: how old its newest row holding a value is at the run's
    time (see :class:`~anomaly.job.freshness.Freshness`).
    """

    metric: str
    key: SeriesKey
    score: float
    is_anomaly: bool
    actual: float
    expected: float
    lower: float
    upper: float
    recent: float = 0.0
    data_age_seconds: float = float("nan")


@dataclass
class MetricOutcome:
    """What happened to one metric in a run (summed over its batches).

    ``frame``, ``result``, ``forecast`` and ``breach_seconds`` are kept only when the run read
    the metric in one batch in this process; with batches they would hold every series at
    once, which is what batching avoids. The counters are always filled.
    """

    metric: MetricConfig
    frame: Frame | None = None
    result: ScoreResult | None = None
    forecast: Forecast | None = None
    breach_seconds: np.ndarray | None = None
    error: str | None = None
    refitted: int = 0
    seconds: float = 0.0
    n_series: int = 0
    """Series in the frame(s) (after skipping)."""
    n_skipped: int = 0
    """Series left out of the frame(s) (no tenant label, duplicates)."""
    n_unscored: int = 0
    """Series in the frame(s) the model could not score."""
    fetch_seconds: float = 0.0
    model_seconds: float = 0.0
    """Loading stored state and fitting."""
    score_seconds: float = 0.0
    forecast_seconds: float = 0.0
    breaches: list[tuple[float, str]] = field(default_factory=list)
    """``(seconds until breach, summary line)`` of every finite forecast breach."""
    query_failed: bool = False
    n_evidence: int = 1
    """The newest rows of ``result`` the run judges (those since the previous run); the
    older ones are the recent past health remembers."""
    store_error: str | None = None
    """Why the fitted model could not be saved (the scores stand; the next run fits again)."""
    freshness: Freshness | None = None
    """Each series' newest value, its age, and the empty rows after it that a late series
    leaves unjudged (None: every series judged at the grid's newest row, age unknown)."""

    def findings(self) -> list[Finding]:
        """One :class:`Finding` per scored series of ``frame`` and ``result`` (none without).

        A series is judged on the ``n_evidence`` rows up to its newest point: the grid's
        newest row, or, for a late series, its newest row holding a value
        (:attr:`freshness`'s ``shift`` rows before it)."""
        frame, result = self.frame, self.result
        if frame is None or result is None:
            return []
        n_eval, n_series = result.score.shape
        n = max(1, min(self.n_evidence, n_eval))
        shift = np.zeros(n_series, dtype=np.int64)
        age = np.full(n_series, np.nan)
        if self.freshness is not None:
            shift = np.minimum(self.freshness.shift, n_eval - 1)
            age = self.freshness.age_seconds
        rows = np.arange(n_eval)[:, None]
        last = n_eval - 1 - shift  # each series' newest point, a row of `result`
        judged = (rows <= last) & (rows > last - n)
        score = np.max(np.where(judged, result.score, 0.0), axis=0)
        flagged = np.any(judged & result.is_anomaly, axis=0)
        times = frame.times[-n_eval:]
        before = times[last][None, :] - times[:, None]
        weight = np.where(rows <= last, np.clip(1.0 - before / RECENT_SECONDS, 0.0, 1.0), 0.0)
        recent = np.max(np.where(result.is_anomaly, result.score, 0.0) * weight, axis=0)
        at = frame.values.shape[0] - n_eval + last  # the newest point, a row of `frame`
        return [
            Finding(
                metric=self.metric.name,
                key=key,
                score=float(score[j]),
                is_anomaly=bool(flagged[j]),
                actual=float(frame.values[at[j], j]),
                expected=float(result.expected[last[j], j]),
                lower=float(result.lower[last[j], j]),
                upper=float(result.upper[last[j], j]),
                recent=float(recent[j]),
                data_age_seconds=float(age[j]),
            )
            for j, key in enumerate(frame.keys)
            if result.valid[j]
        ]

    def progress(self) -> str:
        """One line of what the metric cost: series, fits and where the time went."""
        return (
            f"metric {self.metric.name}: {self.n_series:,} series, {self.refitted:,} fitted, "
            f"{self.seconds:.1f}s (fetch {self.fetch_seconds:.1f}s, models "
            f"{self.model_seconds:.1f}s, score {self.score_seconds:.1f}s, forecast "
            f"{self.forecast_seconds:.1f}s)"
        )


@dataclass
class RunReport:
    """Summary of one cycle."""

    started_at: float
    evaluated_at: float
    outcomes: list[MetricOutcome] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    health: list[TenantHealth] = field(default_factory=list)
    global_health: float = 100.0
    push: PushReport | None = None
    duration_seconds: float = 0.0
    shard: Shard | None = None
    batches: int = 1
    push_seconds: float = 0.0
    """Time spent in Pushgateway requests (PUTs, the group listing, deletions)."""

    @property
    def series_scored(self) -> int:
        return len(self.findings)

    @property
    def series_failed(self) -> int:
        return sum(o.n_skipped + o.n_unscored for o in self.outcomes)

    @property
    def metrics_failed(self) -> list[MetricOutcome]:
        return [o for o in self.outcomes if o.error is not None]

    @property
    def anomalies(self) -> list[Finding]:
        return [f for f in self.findings if f.is_anomaly]

    def progress(self) -> str:
        """The run's last progress line: series, anomalies, failures and time."""
        return (
            f"run finished: {self.series_scored:,} series{_where(self)}, "
            f"{len(self.anomalies):,} anomalies, {self.series_failed:,} skipped, "
            f"{len(self.metrics_failed)} metrics failed, {self.duration_seconds:.1f}s "
            f"(push {self.push_seconds:.1f}s)"
        )


def _where(report: RunReport) -> str:
    where = ""
    if report.shard is not None and report.shard.count > 1:
        where += f" (shard {report.shard})"
    if report.batches > 1:
        where += f" in {report.batches} batches"
    return where


def format_summary(report: RunReport, *, limit: int = 50) -> str:
    """A short human summary of a run: anomalies with expected vs actual, health per tenant."""
    lines = [
        f"scored {report.series_scored} series{_where(report)} in "
        f"{report.duration_seconds:.1f}s: {len(report.anomalies)} anomalous, "
        f"{report.series_failed} skipped, {len(report.metrics_failed)} metrics failed"
    ]
    for o in report.metrics_failed:
        lines.append(f"  metric {o.metric.name} FAILED: {o.error}")
    if report.anomalies:
        lines.append("anomalies (tenant / metric: actual vs expected [band], score):")
        for f in sorted(report.anomalies, key=lambda f: -f.score)[:limit]:
            who = f.key.tenant if f.key.tenant is not None else str(f.key)
            lines.append(
                f"  {who:<16} {f.metric:<14} {f.actual:>12.4g} vs {f.expected:>10.4g} "
                f"[{f.lower:.4g}, {f.upper:.4g}]  score {f.score:.2f}"
            )
    breaches = [line for o in report.outcomes for line in o.breaches]
    if breaches:
        lines.append("forecast threshold breaches:")
        lines.extend(text for _, text in sorted(breaches)[:limit])
    if report.health:
        lines.append(f"health (global {report.global_health:.0f}/100):")
        for h in sorted(report.health, key=lambda h: h.score):
            worst = sorted(
                ((k, v) for k, v in h.components.items() if k.startswith("objective:") and v < 100),
                key=lambda kv: kv[1],
            )
            why = ", ".join(f"{k.split(':', 1)[1]} breached" for k, _ in worst)
            lines.append(f"  {h.tenant:<16} {h.score:5.1f}  {why}")
    return "\n".join(lines)
