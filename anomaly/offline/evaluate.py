"""NAB-style evaluation of the walk-forward scores (``anomaly evaluate DATA_DIR LABELS``).

Every CSV under ``DATA_DIR`` is scored by :func:`anomaly.offline.replay.score_file` (the
machinery of ``score-csv``) and flagged by its decision (:mod:`anomaly.offline.decision`: by
default a row is a detection when it opens an alert; ``OfflineOptions(decision="job")``
judges the job's per-row rule), then judged as the Numenta Anomaly Benchmark's sweeper does:

* the first ``min(floor(0.15 * n_rows), 750)`` rows of a file are probation: never scored;
* a detection is a row whose score is at or above the threshold; inside a window only the
  earliest detection counts, earning ``A_TP * sigmoid(position) / sigmoid(-1)`` with
  ``sigmoid(x) = 2 / (1 + exp(5 x)) - 1`` and ``position = -(right - i + 1) / width``
  (-1 at the left edge: the full ``A_TP``); a window without detection costs ``-A_FN``;
* a detection outside every window costs ``A_FP * sigmoid((i - right) / (width - 1))``
  relative to the preceding window (-1 beyond three widths or before the first window), so a
  detection just after a window is nearly free;
* the threshold for the ``score`` column is the one that maximises the corpus total (ties:
  the highest), as NAB's optimiser does; the shipped decision ``is_anomaly`` is judged as is;
* normalised: ``100 * (S - S_null) / (S_perfect - S_null)`` with ``S_null = -A_FN * W`` (no
  detections) and ``S_perfect = A_TP * W`` (every window at its left edge), ``W`` the windows
  with at least one scored row in the files being summarised.

Also reported, per file and category: window recall (detected / windows), window precision
(detected windows / (detected windows + false alarms), a false alarm being the start of a
run of detections outside every window, :func:`~anomaly.offline.decision.run_starts`), and the mean delay from a window's left edge to its
first detection.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from anomaly.errors import ConfigError, DataError
from anomaly.offline.decision import run_starts
from anomaly.offline.replay import OfflineOptions, score_file

log = logging.getLogger(__name__)

PROBATION_FRACTION = 0.15
PROBATION_MAX_ROWS = 750  # NAB: 0.15 * 5000


@dataclass(frozen=True)
class CostProfile:
    """NAB application profile: reward of a true positive, costs of a false positive and a miss."""

    name: str
    tp: float
    fp: float
    fn: float


PROFILES: dict[str, CostProfile] = {
    "standard": CostProfile("standard", 1.0, 0.11, 1.0),
    "reward_low_fp": CostProfile("reward_low_fp", 1.0, 0.22, 1.0),
    "reward_low_fn": CostProfile("reward_low_fn", 1.0, 0.11, 2.0),
}


def scaled_sigmoid(position: np.ndarray | float) -> np.ndarray:
    """NAB's ``scaledSigmoid``: ``2 / (1 + exp(5 x)) - 1``, and -1 beyond ``x > 3``."""
    x = np.asarray(position, dtype=np.float64)
    with np.errstate(over="ignore"):
        val = 2.0 / (1.0 + np.exp(5.0 * x)) - 1.0
    return np.where(x > 3.0, -1.0, val)


MAX_TP = float(scaled_sigmoid(-1.0))


def probation_rows(n_rows: int) -> int:
    """Rows at the start of a file that NAB never scores."""
    return int(min(math.floor(PROBATION_FRACTION * n_rows), PROBATION_MAX_ROWS))


@dataclass(frozen=True)
class Sweep:
    """Profile-independent geometry of one file's windows, per row.

    Attributes
    ----------
    window : ndarray of int, shape (n_rows,)
        Index of the window a row is in, -1 outside every window.
    relative : ndarray of float, shape (n_rows,)
        Unweighted sweep score: in a window the scaled sigmoid of the position (0..MAX_TP),
        outside the (negative) false-positive weight relative to the preceding window.
    scorable : ndarray of bool, shape (n_rows,)
        After probation.
    left : ndarray of int, shape (n_windows,)
        Row of each window's left edge (windows without rows are dropped).
    counted : ndarray of bool, shape (n_windows,)
        Windows with at least one scorable row (those NAB scores).
    """

    window: np.ndarray
    relative: np.ndarray
    scorable: np.ndarray
    left: np.ndarray
    counted: np.ndarray

    @property
    def n_windows(self) -> int:
        return int(self.counted.sum())

    def weighted(self, profile: CostProfile) -> np.ndarray:
        """Sweep score of a detection at each row under ``profile``, shape (n_rows,)."""
        inside = self.window >= 0
        return np.where(inside, self.relative * profile.tp / MAX_TP, self.relative * profile.fp)


def sweep(times: np.ndarray, windows: Sequence[tuple[float, float]]) -> Sweep:
    """Window geometry of a file, following NAB's ``Sweeper.calcSweepScore``.

    Parameters
    ----------
    times : ndarray of shape (n_rows,)
        Epoch seconds of the rows, in file order.
    windows : sequence of (start, end)
        Epoch seconds, in time order. A window spans the rows from the first at or after
        ``start`` to the last before the first row after ``end``.
    """
    t = np.asarray(times, dtype=np.float64)
    n = t.size
    window = np.full(n, -1, dtype=np.int64)
    relative = np.full(n, -1.0)  # before any window: the full false-positive cost
    lefts: list[int] = []
    cursor = 0
    prev: tuple[int, int] | None = None  # (right, width) of the preceding window
    spans: list[tuple[int, int]] = []
    for start, end in sorted(windows):
        after = np.flatnonzero(t[cursor:] >= start)
        if after.size == 0:
            break
        left = cursor + int(after[0])
        beyond = np.flatnonzero(t[left:] > end)
        right = left + int(beyond[0]) - 1 if beyond.size else n - 1
        if right < left:
            continue
        spans.append((left, right))
        cursor = right + 1
    for w, (left, right) in enumerate(spans):
        if prev is not None:  # rows between the preceding window and this one
            p_right, p_width = prev
            i = np.arange(p_right + 1, left)
            relative[i] = scaled_sigmoid((i - p_right) / max(p_width - 1, 1))
        width = right - left + 1
        i = np.arange(left, right + 1)
        window[i] = w
        relative[i] = scaled_sigmoid(-(right - i + 1) / width)
        lefts.append(left)
        prev = (right, width)
    if prev is not None:
        p_right, p_width = prev
        i = np.arange(p_right + 1, n)
        relative[i] = scaled_sigmoid((i - p_right) / max(p_width - 1, 1))
    scorable = np.arange(n) >= probation_rows(n)
    counted = np.array([right >= probation_rows(n) for _, right in spans], dtype=bool)
    return Sweep(window, relative, scorable, np.array(lefts, dtype=np.int64), counted)


@dataclass(frozen=True)
class Detections:
    """How one detector output fared on one file (or a sum of files).

    Attributes
    ----------
    score : float
        Raw NAB score ``S`` (window rewards, misses and false-positive costs).
    n_windows, n_detected, n_false_alarms : int
    delays_seconds : tuple of float
        From each detected window's left edge to its first detection.
    """

    score: float
    n_windows: int
    n_detected: int
    n_false_alarms: int
    delays_seconds: tuple[float, ...] = ()

    @property
    def recall(self) -> float:
        return self.n_detected / self.n_windows if self.n_windows else math.nan

    @property
    def precision(self) -> float:
        alarms = self.n_detected + self.n_false_alarms
        return self.n_detected / alarms if alarms else math.nan

    @property
    def mean_delay_seconds(self) -> float:
        return float(np.mean(self.delays_seconds)) if self.delays_seconds else math.nan

    def normalised(self, profile: CostProfile) -> float:
        """``100 (S - S_null) / (S_perfect - S_null)``; NaN without windows."""
        if not self.n_windows:
            return math.nan
        null, perfect = -profile.fn * self.n_windows, profile.tp * self.n_windows
        return 100.0 * (self.score - null) / (perfect - null)

    @classmethod
    def total(cls, parts: Iterable[Detections]) -> Detections:
        parts = list(parts)
        return cls(
            score=float(sum(p.score for p in parts)),
            n_windows=sum(p.n_windows for p in parts),
            n_detected=sum(p.n_detected for p in parts),
            n_false_alarms=sum(p.n_false_alarms for p in parts),
            delays_seconds=tuple(d for p in parts for d in p.delays_seconds),
        )


def judge(sw: Sweep, times: np.ndarray, detected: np.ndarray, profile: CostProfile) -> Detections:
    """NAB score and window statistics of boolean ``detected`` rows, shape (n_rows,)."""
    d = np.asarray(detected, dtype=bool) & sw.scorable
    weighted = sw.weighted(profile)
    outside = sw.window < 0
    score = float(weighted[d & outside].sum())
    n_detected = 0
    delays: list[float] = []
    for w in np.flatnonzero(sw.counted):
        hits = np.flatnonzero(d & (sw.window == w))
        if hits.size:  # the earliest detection has the highest reward
            score += float(weighted[hits[0]])
            n_detected += 1
            delays.append(float(times[hits[0]] - times[sw.left[w]]))
        else:
            score -= profile.fn
    return Detections(
        score=score,
        n_windows=sw.n_windows,
        n_detected=n_detected,
        n_false_alarms=int(np.count_nonzero(run_starts(d) & outside)),
        delays_seconds=tuple(delays),
    )


def optimise_threshold(
    scored: Sequence[tuple[Sweep, np.ndarray]], profile: CostProfile
) -> tuple[float, float]:
    """The threshold maximising the corpus' total NAB score, as NAB's optimiser picks it.

    Parameters
    ----------
    scored : sequence of (Sweep, scores)
        ``scores`` of shape (n_rows,) per file.

    Returns
    -------
    (threshold, total score)
        Ties go to the highest threshold; no detection at all is the threshold ``inf``.
    """
    s_parts, w_parts, g_parts = [], [], []
    n_windows = 0
    for sw, scores in scored:
        keep = sw.scorable
        s_parts.append(np.asarray(scores, dtype=np.float64)[keep])
        w_parts.append(sw.weighted(profile)[keep])
        g = sw.window[keep]
        # Windows get corpus-wide ids; uncounted windows have no scorable rows anyway.
        g_parts.append(np.where(g >= 0, g + n_windows, -1))
        n_windows += len(sw.counted)
    null = -profile.fn * sum(int(sw.counted.sum()) for sw, _ in scored)
    if not s_parts or sum(p.size for p in s_parts) == 0:
        return math.inf, null
    s = np.concatenate(s_parts)
    w = np.concatenate(w_parts)
    g = np.concatenate(g_parts)
    order = np.argsort(-s, kind="stable")
    s, w, g = s[order], w[order], g[order]
    delta = np.where(g < 0, w, 0.0)
    inside = np.flatnonzero(g >= 0)
    if inside.size:
        best = pd.Series(w[inside]).groupby(g[inside]).cummax().to_numpy()
        before = pd.Series(best).groupby(g[inside]).shift(1).to_numpy()
        before = np.where(np.isnan(before), -profile.fn, before)
        delta[inside] = best - before
    total = null + np.cumsum(delta)
    # A threshold at score s detects every row >= s: the total after the last such row.
    last_of_value = np.r_[s[1:] != s[:-1], True]
    thresholds = np.r_[math.inf, s[last_of_value]]
    totals = np.r_[null, total[last_of_value]]
    i = int(np.argmax(totals))  # first maximum = highest threshold among ties
    return float(thresholds[i]), float(totals[i])


# ---------------------------------------------------------------------------- the corpus
@dataclass(frozen=True)
class FileResult:
    """One file's outcome under the tuned threshold and the shipped decision."""

    key: str
    n_rows: int
    tuned: Detections
    shipped: Detections

    @property
    def category(self) -> str:
        return self.key.split("/", 1)[0] if "/" in self.key else "."


@dataclass(frozen=True)
class Evaluation:
    """Results over a corpus; :meth:`summary` aggregates files (all, or a category)."""

    profile: CostProfile
    threshold: float
    files: tuple[FileResult, ...]
    seconds: float
    skipped: tuple[str, ...] = field(default=())

    def summary(self, category: str | None = None) -> tuple[Detections, Detections]:
        """(tuned, shipped) totals over all files or one category."""
        chosen = [f for f in self.files if category is None or f.category == category]
        return Detections.total(f.tuned for f in chosen), Detections.total(
            f.shipped for f in chosen
        )

    @property
    def categories(self) -> list[str]:
        return sorted({f.category for f in self.files})

    def to_frame(self) -> pd.DataFrame:
        """One row per file plus one per category and ``ALL``, every figure as a column."""
        rows = []

        def row(name: str, n_rows: int, tuned: Detections, shipped: Detections) -> dict:
            out: dict[str, object] = {"file": name, "rows": n_rows, "windows": tuned.n_windows}
            for label, d in (("tuned", tuned), ("shipped", shipped)):
                out[f"{label}_nab"] = d.normalised(self.profile)
                out[f"{label}_raw"] = d.score
                out[f"{label}_detected"] = d.n_detected
                out[f"{label}_false_alarms"] = d.n_false_alarms
                out[f"{label}_recall"] = d.recall
                out[f"{label}_precision"] = d.precision
                out[f"{label}_delay_minutes"] = d.mean_delay_seconds / 60.0
            return out

        for f in self.files:
            rows.append(row(f.key, f.n_rows, f.tuned, f.shipped))
        for c in self.categories:
            n = sum(f.n_rows for f in self.files if f.category == c)
            rows.append(row(f"{c}/*", n, *self.summary(c)))
        rows.append(row("ALL", sum(f.n_rows for f in self.files), *self.summary()))
        frame = pd.DataFrame(rows)
        frame.insert(1, "profile", self.profile.name)
        frame.insert(2, "threshold", self.threshold)
        return frame


def load_windows(labels: str | Path) -> dict[str, list[tuple[float, float]]]:
    """NAB windows ``{file key: [(start, end), ...]}`` in epoch seconds (naive = UTC).

    ``labels`` is ``combined_windows.json`` or a directory holding it.

    Raises
    ------
    DataError
        Missing or malformed file.
    """
    path = Path(labels)
    if path.is_dir():
        path = path / "combined_windows.json"
    try:
        raw = json.loads(path.read_text())
    except OSError as e:
        raise DataError(f"{path}: cannot read the labels: {e.strerror}") from None
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not JSON: {e}") from None
    if not isinstance(raw, dict):
        raise DataError(f"{path}: expected an object of file -> windows")
    out: dict[str, list[tuple[float, float]]] = {}
    for key, wins in raw.items():
        try:
            pairs = [(_epoch(a), _epoch(b)) for a, b in wins]
        except (TypeError, ValueError) as e:
            raise DataError(f"{path}: windows of {key!r} are not [start, end] pairs: {e}") from None
        out[str(key)] = sorted(pairs)
    return out


def _epoch(text: str) -> float:
    ts = pd.Timestamp(text)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return float((ts - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1))


def _score_one(path: str, options: OfflineOptions) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    series, scores = score_file(path, options)
    return series.times, scores.score, scores.is_anomaly


def evaluate(
    data_dir: str | Path,
    labels: str | Path,
    *,
    profile: str = "standard",
    options: OfflineOptions | None = None,
    jobs: int | None = None,
) -> Evaluation:
    """Score every CSV under ``data_dir`` and judge it against NAB windows.

    Parameters
    ----------
    data_dir : path
        Searched recursively; a file's key is its path relative to ``data_dir``.
    labels : path
        ``combined_windows.json`` (or its directory). Files without an entry are skipped.
    profile : {"standard", "reward_low_fp", "reward_low_fn"}
    options : OfflineOptions, optional
        Walk-forward settings (threshold of the shipped decision, refits, lookback).
    jobs : int, optional
        Worker processes (default: the CPU count).

    Raises
    ------
    ConfigError
        Unknown profile.
    DataError
        Missing data directory or labels, no labelled CSV, or a file that cannot be scored.
    """
    if profile not in PROFILES:
        raise ConfigError("--profile", f"must be one of {', '.join(PROFILES)}, got {profile!r}")
    cost = PROFILES[profile]
    root = Path(data_dir)
    if not root.is_dir():
        raise DataError(f"{root}: not a directory")
    windows = load_windows(labels)
    paths = sorted(root.rglob("*.csv"))
    keyed = [(p.relative_to(root).as_posix(), p) for p in paths]
    skipped = tuple(k for k, _ in keyed if k not in windows)
    for k in skipped:
        log.warning("%s: no windows in the labels; skipped", k)
    keyed = [(k, p) for k, p in keyed if k in windows]
    if not keyed:
        raise DataError(f"{root}: no CSV file with windows in {labels}")
    opts = options or OfflineOptions()
    t0 = time.perf_counter()
    n_jobs = max(1, jobs if jobs is not None else (os.cpu_count() or 1))
    if n_jobs == 1:
        outputs = [_score_one(str(p), opts) for _, p in keyed]
    else:
        with ProcessPoolExecutor(max_workers=n_jobs) as pool:
            outputs = list(pool.map(_score_one, [str(p) for _, p in keyed], [opts] * len(keyed)))
    sweeps = [
        sweep(times, windows[k]) for (k, _), (times, _, _) in zip(keyed, outputs, strict=True)
    ]
    threshold, _ = optimise_threshold(
        [(sw, score) for sw, (_, score, _) in zip(sweeps, outputs, strict=True)], cost
    )
    files = []
    for (key, _), sw, (times, score, shipped) in zip(keyed, sweeps, outputs, strict=True):
        files.append(
            FileResult(
                key=key,
                n_rows=times.size,
                tuned=judge(sw, times, score >= threshold, cost),
                shipped=judge(sw, times, shipped, cost),
            )
        )
    return Evaluation(cost, threshold, tuple(files), time.perf_counter() - t0, skipped)


def _fmt(x: float, spec: str = ".1f") -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def format_table(ev: Evaluation, *, per_file: bool = True) -> str:
    """A readable report: per file (optional), per category, overall."""
    head = (
        f"{'':44} {'':>6} {'':>3} | {'tuned threshold':^34} | {'shipped is_anomaly':^34}\n"
        f"{'file':44} {'rows':>6} {'win':>3} | "
        + " | ".join([f"{'NAB':>6} {'raw':>6} {'det':>3} {'FA':>4} {'prec':>4} {'delay':>6}"] * 2)
    )
    lines = [
        f"NAB profile {ev.profile.name} (A_TP {ev.profile.tp:g}, A_FP {ev.profile.fp:g}, "
        f"A_FN {ev.profile.fn:g}); tuned threshold {ev.threshold:.6g}; "
        f"{len(ev.files)} files in {ev.seconds:.1f}s",
        "NAB = 100 (S - S_null) / (S_perfect - S_null); raw = S; det = windows detected; "
        "FA = false alarms; prec = window precision; delay = mean minutes from window start",
        head,
    ]

    def line(name: str, n_rows: int, tuned: Detections, shipped: Detections) -> str:
        cells = []
        for d in (tuned, shipped):
            cells.append(
                f"{_fmt(d.normalised(ev.profile)):>6} {d.score:>6.2f} {d.n_detected:>3} "
                f"{d.n_false_alarms:>4} {_fmt(d.precision, '.2f'):>4} "
                f"{_fmt(d.mean_delay_seconds / 60.0, '.0f'):>6}"
            )
        name = name if len(name) <= 44 else "…" + name[-43:]
        return f"{name:44} {n_rows:>6} {tuned.n_windows:>3} | " + " | ".join(cells)

    rule = "-" * len(head.splitlines()[-1])
    if per_file:
        lines.append(rule)
        lines += [line(f.key, f.n_rows, f.tuned, f.shipped) for f in ev.files]
    lines.append(rule)
    for c in ev.categories:
        n = sum(f.n_rows for f in ev.files if f.category == c)
        lines.append(line(c, n, *ev.summary(c)))
    lines.append(rule)
    lines.append(line("ALL", sum(f.n_rows for f in ev.files), *ev.summary()))
    if ev.skipped:
        lines.append(f"skipped (no windows in the labels): {', '.join(ev.skipped)}")
    return "\n".join(lines)
