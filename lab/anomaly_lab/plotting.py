"""Notebook figures, and the small tables behind them (labels, threshold sweeps).

Every figure is a :class:`matplotlib.figure.Figure` built without pyplot, so nothing here
touches global plotting state or needs a display: the caller shows it (a notebook's last
expression), saves it (``fig.savefig``) or drops it. matplotlib is imported only when a plot
function runs; it is an optional dependency (the ``notebooks`` extra).

Labels are *windows*: per series (tenant), a list of ``(start, end)`` epoch seconds, inclusive,
as NAB's ``combined_windows.json`` gives them per file and as :mod:`anomaly_lab.synth` injections
define them. :func:`threshold_sweep` reads precision at the point level (flagged points inside a
window) and recall at the window level (windows with at least one flagged point): how often a
page is real, and how many incidents page at all.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from anomaly.models.forecast import Forecast
from anomaly_lab.synth import Dataset

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

Windows = Mapping[str, Sequence[tuple[float, float]]]
"""Series name (tenant) -> labelled windows ``(start, end)`` in epoch seconds, inclusive."""

DEFAULT_THRESHOLDS: tuple[float, ...] = (
    *(round(0.05 * i, 2) for i in range(1, 20)),
    0.97,
    0.99,
    0.995,
    0.999,
)
"""Thresholds :func:`threshold_sweep` tries by default."""

_FLAG_COLOR = "tab:red"
_LABEL_COLOR = "tab:orange"


# --------------------------------------------------------------------------- data helpers


def read_series_csv(path: str | os.PathLike[str]) -> pd.DataFrame:
    """A wide DataFrame from a CSV whose first column is the time (ISO 8601 or epoch seconds)
    and every other column one series (``timestamp,value`` gives one column ``value``).

    Returns a DataFrame indexed by a UTC ``DatetimeIndex``, sorted, numeric columns.
    """
    raw = pd.read_csv(path)
    if raw.shape[1] < 2:
        raise ValueError(f"{path}: need a time column and at least one value column")
    index = _to_utc(raw.iloc[:, 0])
    values = raw.iloc[:, 1:].apply(pd.to_numeric, errors="coerce")
    values.index = index
    return values.sort_index()


def _to_utc(column: pd.Series) -> pd.DatetimeIndex:
    numeric = pd.to_numeric(column, errors="coerce")
    if numeric.notna().all():
        return pd.DatetimeIndex(pd.to_datetime(numeric, unit="s", utc=True))
    return pd.DatetimeIndex(pd.to_datetime(column, utc=True, format="mixed"))


def _epoch(value: float | str | pd.Timestamp) -> float:
    if isinstance(value, int | float):
        return float(value)
    ts = pd.Timestamp(value)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return ts.value / 1e9


def injection_windows(dataset: Dataset, metric: str) -> dict[str, list[tuple[float, float]]]:
    """The labelled windows of `metric` in a generated dataset: one per injection, by tenant.

    An injection open at the end (``end=None``) lasts to the newest point.
    """
    windows: dict[str, list[tuple[float, float]]] = {t: [] for t in dataset.tenants}
    for inj in dataset.injections:
        if inj.metric == metric:
            end = dataset.end if inj.end is None else min(inj.end, dataset.end)
            windows[inj.tenant].append((float(inj.start), float(end)))
    return windows


def read_windows(path: str | os.PathLike[str]) -> dict[str, list[tuple[float, float]]]:
    """Labelled windows from JSON ``{series: [[start, end], ...]}`` (ISO 8601 or epoch seconds),
    the layout of NAB's ``combined_windows.json``."""
    with open(path, encoding="utf-8") as f:
        raw = json.load(f)
    return {str(k): [(_epoch(a), _epoch(b)) for a, b in v] for k, v in raw.items()}


def label_mask(times: np.ndarray, series: Sequence[str], windows: Windows) -> np.ndarray:
    """Which points lie in a labelled window.

    Parameters
    ----------
    times : ndarray, shape (n_t,)
        Epoch seconds.
    series : sequence of str, length n_series
        The name of each column, as used in `windows`; names absent from it have no labels.
    windows : mapping
        Series name -> ``(start, end)`` windows, inclusive.

    Returns
    -------
    ndarray of bool, shape (n_t, n_series)
    """
    t = np.asarray(times, dtype=float)
    mask = np.zeros((t.size, len(series)), dtype=bool)
    for j, name in enumerate(series):
        for start, end in windows.get(name, ()):
            mask[:, j] |= (t >= start) & (t <= end)
    return mask


def threshold_sweep(
    score: np.ndarray, labels: np.ndarray, thresholds: Sequence[float] | np.ndarray | None = None
) -> pd.DataFrame:
    """Precision and recall of ``score >= threshold`` for every threshold.

    Parameters
    ----------
    score : ndarray, shape (n_t, n_series)
        Anomaly scores in [0, 1]; NaN counts as 0.
    labels : ndarray of bool, shape (n_t, n_series)
        True inside a labelled window; a window is a run of True in one column.
    thresholds : array-like, optional
        Default: 0.05, 0.10, ..., 0.95, then 0.97, 0.99, 0.995, 0.999 (scores crowd near 1:
        evidence 2 and 3 times a detector's own threshold score 0.94 and 0.998).

    Returns
    -------
    DataFrame
        One row per threshold: ``threshold``, ``flagged`` (points at or above it),
        ``precision`` (share of flagged points inside a window; NaN if none flagged),
        ``recall`` (share of windows with a flagged point; NaN without windows),
        ``point_recall`` (share of labelled points flagged) and ``f1`` (of precision and recall).
    """
    s = np.nan_to_num(np.asarray(score, dtype=float), nan=0.0)
    y = np.asarray(labels, dtype=bool)
    if s.shape != y.shape or s.ndim != 2:
        raise ValueError(
            f"`score` and `labels` must both have shape (n_t, n_series), got {s.shape} and {y.shape}"
        )
    th = np.asarray(DEFAULT_THRESHOLDS if thresholds is None else thresholds, dtype=float)
    # Windows: runs of True per column, numbered in column-major order.
    yc, sc = y.T.ravel(), s.T.ravel()
    starts = yc & ~np.concatenate([[False], yc[:-1]])
    starts[:: y.shape[0]] = yc[:: y.shape[0]]  # a run never continues across columns
    window_id = np.cumsum(starts) - 1
    n_windows = int(starts.sum())
    window_max = np.full(n_windows, -np.inf)
    np.maximum.at(window_max, window_id[yc], sc[yc])

    flagged = (s[None, :, :] >= th[:, None, None]).reshape(th.size, -1)
    n_flagged = flagged.sum(axis=1)
    hits = (flagged & y.ravel()[None, :]).sum(axis=1)
    detected = (window_max[None, :] >= th[:, None]).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(n_flagged > 0, hits / n_flagged, np.nan)
        recall = detected / n_windows if n_windows else np.full(th.size, np.nan)
        point_recall = hits / y.sum() if y.any() else np.full(th.size, np.nan)
        f1 = np.where((precision + recall) > 0, 2 * precision * recall / (precision + recall), 0.0)
    f1 = np.where(np.isnan(precision) | np.isnan(recall), np.nan, f1)
    return pd.DataFrame(
        {
            "threshold": th,
            "flagged": n_flagged,
            "precision": precision,
            "recall": recall,
            "point_recall": point_recall,
            "f1": f1,
        }
    )


def window_table(
    times: np.ndarray,
    series: Sequence[str],
    windows: Windows,
    score: np.ndarray,
    threshold: float,
) -> pd.DataFrame:
    """One row per labelled window: its series, start and end (UTC), the highest score in it,
    whether ``score >= threshold`` somewhere inside, and the delay of the first such point
    after the window's start (seconds; NaN if missed).

    `score` has shape ``(n_t, n_series)``, columns named by `series`.
    """
    t = np.asarray(times, dtype=float)
    s = np.nan_to_num(np.asarray(score, dtype=float), nan=0.0)
    rows = []
    for j, name in enumerate(series):
        for start, end in windows.get(name, ()):
            inside = (t >= start) & (t <= end)
            hit = inside & (s[:, j] >= threshold)
            rows.append(
                {
                    "series": name,
                    "start": pd.Timestamp(start, unit="s", tz="UTC"),
                    "end": pd.Timestamp(end, unit="s", tz="UTC"),
                    "max_score": float(s[inside, j].max()) if inside.any() else np.nan,
                    "detected": bool(hit.any()),
                    "delay_seconds": float(t[hit][0] - start) if hit.any() else np.nan,
                }
            )
    columns = ["series", "start", "end", "max_score", "detected", "delay_seconds"]
    return pd.DataFrame(rows, columns=columns)


def best_f1(sweep: pd.DataFrame) -> pd.Series:
    """The sweep row with the highest F1; among ties the highest threshold (fewest pages)."""
    if sweep["f1"].isna().all():
        raise ValueError("no threshold has an F1 (no labelled windows or nothing flagged)")
    ranked = sweep.sort_values(["f1", "threshold"], ascending=False, na_position="last")
    return ranked.iloc[0]


# --------------------------------------------------------------------------- figures


def _axes(ax: Axes | None, figsize: tuple[float, float]) -> tuple[Figure, Axes]:
    if ax is not None:
        fig = ax.get_figure()
        if fig is None:
            raise ValueError("`ax` must belong to a figure")
        return fig, ax  # type: ignore[return-value]
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.add_subplot()


def _shade_windows(ax: Axes, windows: Sequence[tuple[float, float]], label: str) -> None:
    for i, (start, end) in enumerate(windows):
        ax.axvspan(
            pd.Timestamp(start, unit="s", tz="UTC"),
            pd.Timestamp(end, unit="s", tz="UTC"),
            color=_LABEL_COLOR,
            alpha=0.2,
            label=label if i == 0 else None,
        )


def plot_bands(
    table: pd.DataFrame,
    series: str,
    *,
    windows: Sequence[tuple[float, float]] = (),
    ax: Axes | None = None,
    title: str | None = None,
) -> Figure:
    """Actual vs expected with the band, flagged points and labelled windows, for one series.

    Parameters
    ----------
    table : DataFrame
        :func:`anomaly.score_frame` output (``time, series, tenant, value, expected, lower,
        upper, is_anomaly``).
    series : str
        A tenant, or a ``series`` name of the table.
    windows : sequence of (start, end)
        Labelled windows of this series (epoch seconds), shaded.
    """
    rows = table[(table["tenant"] == series) | (table["series"] == series)]
    if rows.empty:
        raise ValueError(f"`series` {series!r} is not in the table")
    fig, ax = _axes(ax, (11, 3.6))
    ax.fill_between(
        rows["time"], rows["lower"], rows["upper"], color="tab:blue", alpha=0.15, label="band"
    )
    ax.plot(rows["time"], rows["expected"], color="tab:blue", lw=1, label="expected")
    ax.plot(rows["time"], rows["value"], color="black", lw=0.8, label="actual")
    flagged = rows[rows["is_anomaly"].astype(bool)]
    ax.scatter(
        flagged["time"], flagged["value"], color=_FLAG_COLOR, s=12, zorder=3, label="flagged"
    )
    _shade_windows(ax, windows, "labelled")
    ax.set_title(title or f"{series}: actual vs expected")
    ax.legend(loc="upper left", fontsize="small", ncols=5)
    return fig


def plot_threshold_sweep(
    sweep: pd.DataFrame, *, shipped: float | None = 0.5, ax: Axes | None = None
) -> Figure:
    """Precision, recall and F1 against the threshold (a :func:`threshold_sweep` table), with
    the best-F1 threshold and the shipped one marked."""
    fig, ax = _axes(ax, (7, 3.6))
    for column, style in (("precision", "-o"), ("recall", "-s"), ("f1", "-^")):
        ax.plot(sweep["threshold"], sweep[column], style, ms=3, label=column)
    if not sweep["f1"].isna().all():
        best = best_f1(sweep)
        ax.axvline(best["threshold"], color="tab:green", ls="--", label="best F1")
    if shipped is not None:
        ax.axvline(shipped, color="grey", ls=":", label=f"shipped ({shipped:g})")
    ax.set_xlabel("threshold on anomaly_score")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(loc="lower left", fontsize="small")
    ax.set_title("Decision threshold sweep")
    return fig


def humanize_seconds(seconds: float) -> str:
    """``5400 -> '1 h 30 min'``, ``0 -> 'now'``, ``inf -> 'not within the horizon'``."""
    if math.isnan(seconds):
        return "no forecast"
    if math.isinf(seconds):
        return "not within the horizon"
    if seconds <= 0:
        return "now"
    hours, minutes = divmod(int(round(seconds / 60)), 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min"


def plot_forecast(
    times: np.ndarray,
    values: np.ndarray,
    fc: Forecast,
    *,
    column: int = 0,
    threshold: float | None = None,
    threshold_label: str | None = None,
    breach_seconds: float | None = None,
    history_seconds: float = 3 * 86400.0,
    ax: Axes | None = None,
    title: str | None = None,
    unit: str = "",
) -> Figure:
    """History, point forecast and interval of one series, the threshold line and the breach.

    Parameters
    ----------
    times : ndarray, shape (n_t,)
        Epoch seconds of the history the forecast was made from.
    values : ndarray, shape (n_t, n_series) or (n_t,)
    fc : Forecast
        :func:`anomaly.models.forecast.forecast` of `values`.
    column : int
        Which series to draw.
    threshold : float, optional
        Drawn as a horizontal line (a budget), labelled `threshold_label`.
    breach_seconds : float, optional
        :func:`anomaly.models.forecast.breach_seconds` of this series; a finite value is marked.
    history_seconds : float
        How much history to show before the forecast.
    """
    v = np.asarray(values, dtype=float)
    v = v[:, column] if v.ndim == 2 else v
    t = np.asarray(times, dtype=float)
    keep = t >= t[-1] - history_seconds
    fig, ax = _axes(ax, (11, 3.8))
    past = pd.to_datetime(t[keep], unit="s", utc=True)
    future = pd.to_datetime(fc.times, unit="s", utc=True)
    ax.plot(past, v[keep], color="black", lw=1, label="actual")
    ax.plot(future, fc.value[:, column], color="tab:purple", lw=1.2, label="forecast")
    ax.fill_between(
        future,
        fc.lower[:, column],
        fc.upper[:, column],
        color="tab:purple",
        alpha=0.2,
        label="interval",
    )
    ax.axvline(pd.Timestamp(fc.now, unit="s", tz="UTC"), color="grey", lw=0.8, ls=":")
    if threshold is not None:
        ax.axhline(
            threshold,
            color=_FLAG_COLOR,
            ls="--",
            lw=1,
            label=threshold_label or f"threshold {threshold:g}",
        )
    if breach_seconds is not None and math.isfinite(breach_seconds):
        at = pd.Timestamp(fc.now + breach_seconds, unit="s", tz="UTC")
        ax.axvline(at, color=_FLAG_COLOR, lw=1)
        ax.annotate(
            f"breach in {humanize_seconds(breach_seconds)}",
            xy=(at, threshold if threshold is not None else float(np.nanmax(v[keep]))),
            xytext=(5, 8),
            textcoords="offset points",
            color=_FLAG_COLOR,
        )
    ax.set_ylabel(unit)
    ax.set_title(title or "Forecast")
    ax.legend(loc="upper left", fontsize="small")
    return fig


def plot_evaluation(per_file: pd.DataFrame, *, title: str | None = None) -> Figure:
    """Per-file NAB scores and false alarms, tuned threshold against the shipped decision.

    Parameters
    ----------
    per_file : DataFrame
        Rows of :meth:`anomaly.offline.evaluate.Evaluation.to_frame` for the files (columns ``file``,
        ``tuned_nab``, ``shipped_nab``, ``tuned_false_alarms``, ``shipped_false_alarms``).
        A file without windows has no NAB score; its false alarms still show.
    """
    from matplotlib.figure import Figure

    rows = per_file.iloc[::-1]  # first file on top
    y = np.arange(len(rows))
    height = 0.4
    fig = Figure(figsize=(12, 1.2 + 0.32 * len(rows)), layout="constrained")
    nab, fa = fig.subplots(1, 2, sharey=True, width_ratios=(3, 2))
    for offset, label, color in (
        (height / 2, "tuned", "tab:blue"),
        (-height / 2, "shipped", "grey"),
    ):
        nab.barh(y + offset, rows[f"{label}_nab"], height, color=color, label=label)
        fa.barh(y + offset, rows[f"{label}_false_alarms"], height, color=color, label=label)
    # A file with one window and many false alarms can score -1000: clip the axis, print it.
    floor = -100.0
    lowest = float(np.nanmin(rows[["tuned_nab", "shipped_nab"]].to_numpy(), initial=0.0))
    nab.set_xlim(max(lowest, floor) - 5, 105)
    for offset, label in ((height / 2, "tuned"), (-height / 2, "shipped")):
        for yi, value in zip(y + offset, rows[f"{label}_nab"], strict=True):
            if value < floor:
                nab.annotate(
                    f"{value:.0f}",
                    (floor, yi),
                    xytext=(2, -3),
                    textcoords="offset points",
                    fontsize="x-small",
                    color="white",
                )
    nab.set_yticks(y, [str(f) for f in rows["file"]], fontsize="small")
    nab.axvline(0, color="black", lw=0.6)
    nab.axvline(100, color="tab:green", lw=0.6, ls=":")
    nab.set_xlabel("NAB score (0 = null detector, 100 = perfect)")
    nab.legend(loc="best", fontsize="small")
    fa.set_xlabel("false alarms")
    fig.suptitle(title or "Per-file results")
    return fig


def plot_scored_file(
    times: np.ndarray,
    values: np.ndarray,
    score: np.ndarray,
    *,
    windows: Sequence[tuple[float, float]] = (),
    threshold: float | None = None,
    is_anomaly: np.ndarray | None = None,
    probation_rows: int = 0,
    title: str | None = None,
) -> Figure:
    """One scored series: values with labelled windows and detections above, score below.

    Parameters
    ----------
    times, values, score : ndarray, shape (n,)
        Epoch seconds, the series and its anomaly score (e.g. from
        :func:`anomaly.offline.replay.score_file`).
    windows : sequence of (start, end)
        Labelled windows, epoch seconds.
    threshold : float, optional
        Tuned threshold: rows at or above it are marked (red), and drawn on the score axis.
    is_anomaly : ndarray of bool, shape (n,), optional
        The shipped decision, marked on the score axis.
    probation_rows : int
        Leading rows that are not judged, shaded grey.
    """
    from matplotlib.figure import Figure

    t = pd.to_datetime(np.asarray(times, dtype=float), unit="s", utc=True)
    v = np.asarray(values, dtype=float)
    s = np.asarray(score, dtype=float)
    fig = Figure(figsize=(12, 5), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(3, 2))
    top.plot(t, v, color="black", lw=0.7, label="value")
    for ax in (top, bottom):
        _shade_windows(ax, windows, "labelled window" if ax is top else "")
        if probation_rows:
            ax.axvspan(t[0], t[min(probation_rows, len(t) - 1)], color="grey", alpha=0.15)
    if threshold is not None:
        hit = s >= threshold
        top.scatter(t[hit], v[hit], color=_FLAG_COLOR, s=8, zorder=3, label="score ≥ threshold")
        bottom.axhline(threshold, color=_FLAG_COLOR, ls="--", lw=1, label="tuned threshold")
    bottom.plot(t, s, color="tab:blue", lw=0.7, label="score")
    if is_anomaly is not None:
        flagged = np.asarray(is_anomaly, dtype=bool)
        bottom.scatter(t[flagged], s[flagged], color="grey", s=6, label="shipped is_anomaly")
    bottom.set_ylim(-0.02, 1.02)
    top.legend(loc="upper left", fontsize="small")
    bottom.legend(loc="upper left", fontsize="small")
    fig.suptitle(title or "Scores")
    return fig
