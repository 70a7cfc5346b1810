"""Raw query results → one aligned grid per metric.

A :class:`Frame` holds ``times`` (n_t,), ``values`` (n_t, n_series) and one :class:`SeriesKey`
per column. Gaps are NaN; non-finite samples (±Inf) become NaN too, so that detectors see only
finite numbers or gaps. With a tenant label configured, a series without it is reported and
skipped; two series with the same label set keep the first and report the rest.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from anomaly.errors import DataError

log = logging.getLogger(__name__)


@dataclass(frozen=True, order=True)
class SeriesKey:
    """Identity of one series: its tenant (or None) and all its labels, sorted."""

    tenant: str | None
    labels: tuple[tuple[str, str], ...]

    @classmethod
    def from_labels(cls, labels: Mapping[str, str], tenant_label: str | None) -> SeriesKey:
        clean = {k: v for k, v in labels.items() if k != "__name__"}
        tenant = clean.get(tenant_label) if tenant_label else None
        return cls(tenant=tenant, labels=tuple(sorted(clean.items())))

    @property
    def label_dict(self) -> dict[str, str]:
        return dict(self.labels)

    def __str__(self) -> str:
        inner = ",".join(f'{k}="{v}"' for k, v in self.labels)
        return "{" + inner + "}"


@dataclass(frozen=True)
class Skipped:
    """A series left out of a frame, and why."""

    metric: str
    labels: dict[str, str]
    reason: str


@dataclass(frozen=True)
class Frame:
    """One metric's series on a common grid.

    Attributes
    ----------
    metric : str
        The config name of the metric.
    times : ndarray, shape (n_t,)
        Epoch seconds, evenly spaced by ``step_seconds``.
    values : ndarray, shape (n_t, n_series)
        float64; NaN where a series has no sample.
    keys : tuple of SeriesKey, length n_series
    """

    metric: str
    times: np.ndarray
    values: np.ndarray
    keys: tuple[SeriesKey, ...]
    step_seconds: float
    skipped: tuple[Skipped, ...] = field(default=())

    @property
    def n_series(self) -> int:
        return self.values.shape[1]

    def select(self, columns: Sequence[int] | np.ndarray) -> Frame:
        idx = np.asarray(columns, dtype=int)
        return Frame(
            self.metric,
            self.times,
            self.values[:, idx],
            tuple(self.keys[i] for i in idx),
            self.step_seconds,
            self.skipped,
        )

    def last_rows(self, n: int) -> Frame:
        """The newest ``n`` rows, without the series that have no value in them (as a read
        of that shorter window would return)."""
        values = self.values[self.values.shape[0] - n :]
        keep = np.flatnonzero(np.isfinite(values).any(axis=0))
        return Frame(
            self.metric,
            self.times[self.times.size - n :],
            values[:, keep],
            tuple(self.keys[i] for i in keep),
            self.step_seconds,
            self.skipped,
        )

    def to_dataframe(self) -> pd.DataFrame:
        """Wide DataFrame: UTC DatetimeIndex, one column per series (named by its key)."""
        index = pd.to_datetime(self.times, unit="s", utc=True)
        names = [k.tenant if k.tenant is not None else str(k) for k in self.keys]
        if len(set(names)) != len(names):
            names = [str(k) for k in self.keys]
        return pd.DataFrame(self.values, index=index, columns=names)


def time_grid(start: float, end: float, step_seconds: float) -> np.ndarray:
    """Epoch-second grid from ``start`` to ``end`` inclusive, aligned to ``step_seconds``."""
    if step_seconds <= 0:
        raise ValueError(f"step_seconds must be positive, got {step_seconds}")
    first = np.ceil(start / step_seconds) * step_seconds
    last = np.floor(end / step_seconds) * step_seconds
    n = int(round((last - first) / step_seconds)) + 1
    return first + step_seconds * np.arange(max(n, 0), dtype=np.float64)


def build_frame(
    metric: str,
    series: Iterable[tuple[Mapping[str, str], np.ndarray, np.ndarray]],
    times: np.ndarray,
    tenant_label: str | None,
) -> Frame:
    """Align raw series ``(labels, sample_times, sample_values)`` on the grid ``times``.

    Samples off the grid snap to the nearest grid point; samples outside it are dropped.
    """
    if times.size < 2:
        raise DataError(f"{metric}: the time grid needs at least 2 points")
    step = float(times[1] - times[0])
    columns: list[np.ndarray] = []
    keys: list[SeriesKey] = []
    seen: set[SeriesKey] = set()
    skipped: list[Skipped] = []
    for labels, t, v in series:
        labels = {k: val for k, val in labels.items() if k != "__name__"}
        if tenant_label and tenant_label not in labels:
            skipped.append(Skipped(metric, labels, f"no '{tenant_label}' label"))
            continue
        key = SeriesKey.from_labels(labels, tenant_label)
        if key in seen:
            skipped.append(Skipped(metric, labels, "duplicate label set"))
            continue
        seen.add(key)
        col = np.full(times.size, np.nan)
        t = np.asarray(t, dtype=np.float64)
        v = np.asarray(v, dtype=np.float64)
        idx = np.rint((t - times[0]) / step).astype(np.int64)
        ok = (idx >= 0) & (idx < times.size)
        col[idx[ok]] = v[ok]
        col[~np.isfinite(col)] = np.nan
        columns.append(col)
        keys.append(key)
    for s in skipped:
        log.warning("metric %s: skipping series %s: %s", metric, s.labels, s.reason)
    order = sorted(range(len(keys)), key=lambda i: keys[i])
    values = (
        np.column_stack([columns[i] for i in order])
        if columns
        else np.empty((times.size, 0), dtype=np.float64)
    )
    return Frame(metric, times, values, tuple(keys[i] for i in order), step, tuple(skipped))


def frame_from_dataframe(
    df: pd.DataFrame,
    metric: str = "value",
    *,
    step_seconds: float | None = None,
    tenant_label: str | None = "organization_id",
) -> Frame:
    """Build a :class:`Frame` from a wide DataFrame (DatetimeIndex or epoch seconds; a column
    per tenant) — for notebooks and CSVs. The grid's step is inferred (median spacing) unless
    given; rows are snapped onto it."""
    if df.empty:
        raise DataError(f"{metric}: the DataFrame is empty")
    index = df.index
    if isinstance(index, pd.DatetimeIndex):
        idx = index.tz_localize("UTC") if index.tz is None else index.tz_convert("UTC")
        unit = {"ns": 1e9, "us": 1e6, "ms": 1e3, "s": 1.0}.get(getattr(idx, "unit", "ns"), 1e9)
        t = idx.asi8.astype(np.float64) / unit
    else:
        t = np.asarray(index, dtype=np.float64)
    order = np.argsort(t, kind="stable")
    t = t[order]
    if step_seconds is None:
        diffs = np.diff(t)
        diffs = diffs[diffs > 0]
        if diffs.size == 0:
            raise DataError(f"{metric}: cannot infer a step from fewer than 2 distinct timestamps")
        step_seconds = float(np.median(diffs))
    grid = time_grid(t[0], t[-1] + step_seconds / 2, step_seconds)
    series = []
    for col in df.columns:
        labels = {tenant_label: str(col)} if tenant_label else {"series": str(col)}
        vals = pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=np.float64)[order]
        series.append(
            (labels, grid[0] + np.rint((t - grid[0]) / step_seconds) * step_seconds, vals)
        )
    return build_frame(metric, series, grid, tenant_label)
