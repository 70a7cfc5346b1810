"""Offline, causal walk-forward scoring of one ``timestamp,value`` series (``anomaly score-csv``).

The scheduled job refits its models every ``detection.refit_interval`` on the trailing
``lookback`` and scores new points with the newest model. :func:`score_series` replays that
over a recorded series, so that row ``i``'s output depends on rows ``0..i`` only:

1. **Grid step.** Inferred from the first :attr:`OfflineOptions.step_gaps` positive gaps
   between timestamps (their median, snapped to the nearest divisor of a day, or to whole
   days), so it is known from a prefix of the file. Rows are snapped to the grid
   ``t0 + k * step`` (``t0`` = the first timestamp) for the model; the output has one row per
   input row.
2. **Refits.** The first model is fitted once the step is known, ``warmup`` of data time
   has passed and a day's worth of grid cells hold values (what the baseline needs); then
   every ``refit_interval``. Each fit sees the grid cells of the trailing
   ``lookback`` before the refit point (missing cells are gaps; none before the first row)
   and scores the rows up to the next refit with
   :meth:`~anomaly.models.scoring.AnomalyModel.score_history` on a window that starts
   :data:`HISTORY_CELLS` cells before the refit point, so trailing features see the same
   history whatever comes later. Warm-up rows get ``score`` 0, ``is_anomaly`` 0 and empty
   bands.
3. **Several rows in one cell** (duplicate timestamps, data denser than the step): the model's
   history holds the cell's last finite value; a row is scored with its cell holding the last
   finite value *as of that row*, so later rows in the same cell never change its output.
4. **The decision** (:attr:`OfflineOptions.decision`, :mod:`anomaly.offline.decision`). The
   models' per-row score is the ``model_score`` column (under ``"job"``, what the job pushes
   as ``anomaly_score``); ``score``, ``is_anomaly`` and the band come from the decision. By
   default (``"alert"``) ``is_anomaly`` is 1 on the rows that *open* an alert, ``score`` is
   the alert score and the band is widened as the evidence was divided
   (:class:`~anomaly.offline.decision.AlertRule`); and the models hold nothing out of their
   training window (the job holds out the newest day so that an incident in progress stays
   anomalous; here the open alert covers it), so a level shift is learned at the next refit
   and does not open a second alert. ``decision="job"`` gives the job's rule instead: models
   fitted with the job's holdout, ``score = model_score`` and ``is_anomaly = model_score >=
   threshold`` on every row, bands as the model has them.

Input rules (:func:`read_series_csv`): columns ``timestamp`` and ``value`` are required (more
are kept); timestamps are epoch seconds (every one numeric) or ISO 8601 (naive = UTC); an
empty or ``NaN`` value is a gap, any other non-numeric value is an error naming the line.
Equal timestamps are fine (see 3). A *late* row, whose timestamp is earlier than one before
it, is kept in the output but ignored by the model (score 0, empty bands), as Prometheus
drops out-of-order samples; when more than :data:`MAX_LATE_FRACTION` of the rows are late the
file is rejected as unsorted (sort it first).
"""

from __future__ import annotations

import io
import logging
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import numpy as np
import pandas as pd

from anomaly.errors import DataError
from anomaly.models.features import SECONDS_PER_DAY, n_slots_per_day
from anomaly.models.scoring import AnomalyModel, ScoreResult
from anomaly.offline.decision import DECISIONS, AlertRule, widen_band

if TYPE_CHECKING:
    from anomaly.config import Config

log = logging.getLogger(__name__)

#: Grid cells of history before a refit point that every scoring window starts with.
HISTORY_CELLS = 48
#: Above this share of late (out-of-order) rows a file is rejected as unsorted.
MAX_LATE_FRACTION = 0.1
#: Largest grid a series may span (cells), so one absurd gap cannot exhaust memory.
MAX_CELLS = 20_000_000
OUTPUT_COLUMNS = ("expected", "lower", "upper", "score", "is_anomaly", "model_score")
_MISSING_TEXT = frozenset({"", "nan", "na", "null", "none"})
_DAY_DIVISORS = np.array([d for d in range(1, 86401) if 86400 % d == 0], dtype=np.float64)


@dataclass(frozen=True)
class OfflineOptions:
    """Settings of the walk-forward replay.

    Parameters
    ----------
    threshold : float
        Decision threshold on the score (``detection.threshold``).
    refit_interval_seconds : float
        Data time between refits (``detection.refit_interval``).
    lookback_seconds : float
        History each fit sees (``lookback``; with a config, the config's). The default is 28
        days, longer than the job's default of 7: the replay reads no Prometheus, and four
        weeks give each weekday four days to learn its profile from.
    warmup_seconds : float
        Data time before the first fit.
    step_gaps : int
        Positive timestamp gaps the grid step is inferred from.
    random_state : int
        Seed of the isolation forests.
    decision : {"alert", "job"}
        How ``score`` and ``is_anomaly`` are derived from the model's per-row score (see
        :mod:`anomaly.offline.decision`): ``"alert"`` flags the rows that open an alert,
        ``"job"`` every row the job's rule flags.
    refractory_seconds, young_days, routine_factor : float
        ``"alert"``: the :class:`~anomaly.offline.decision.AlertRule` (with ``threshold``).
    holdout_seconds : float or None
        Newest part of each training window the baseline leaves out (see
        :class:`~anomaly.models.seasonal.SeasonalBaseline`). None: the job's (a day) under
        ``"job"``, none under ``"alert"``, where an open alert already covers an incident in
        progress, so the next refit may learn a new level.
    """

    threshold: float = 0.5
    refit_interval_seconds: float = SECONDS_PER_DAY
    lookback_seconds: float = 28 * SECONDS_PER_DAY
    warmup_seconds: float = SECONDS_PER_DAY
    step_gaps: int = 24
    random_state: int = 0
    decision: str = "alert"
    refractory_seconds: float = SECONDS_PER_DAY
    young_days: float = 1.5
    routine_factor: float = 1.5
    holdout_seconds: float | None = None

    def __post_init__(self) -> None:
        if self.decision not in DECISIONS:
            raise ValueError(
                f"`decision` must be one of {', '.join(DECISIONS)}, got {self.decision!r}"
            )
        _ = self.alert_rule  # AlertRule checks its parameters
        if self.holdout_seconds is not None and not self.holdout_seconds >= 0:
            raise ValueError(f"`holdout_seconds` must be >= 0 or None, got {self.holdout_seconds}")

    @property
    def alert_rule(self) -> AlertRule:
        """The ``"alert"`` decision with these options."""
        return AlertRule(
            threshold=self.threshold,
            refractory_seconds=self.refractory_seconds,
            young_days=self.young_days,
            routine_factor=self.routine_factor,
        )

    @property
    def model_holdout_seconds(self) -> float:
        """The holdout the models are fitted with (resolving None by :attr:`decision`)."""
        if self.holdout_seconds is not None:
            return self.holdout_seconds
        return 0.0 if self.decision == "alert" else AnomalyModel().holdout_seconds

    @classmethod
    def from_config(cls, config: Config | None) -> OfflineOptions:
        """Options from a loaded config (defaults where ``config`` is None)."""
        if config is None:
            return cls()
        return cls(
            threshold=config.detection.threshold,
            refit_interval_seconds=config.detection.refit_interval_seconds,
            lookback_seconds=config.lookback_seconds,
        )


@dataclass(frozen=True)
class SeriesTable:
    """A series read from a CSV.

    Attributes
    ----------
    table : DataFrame
        The input columns as text, exactly as read.
    times : ndarray of float, shape (n,)
        Epoch seconds, in file order.
    values : ndarray of float, shape (n,)
        NaN where the value is missing.
    """

    table: pd.DataFrame
    times: np.ndarray
    values: np.ndarray


@dataclass(frozen=True)
class OfflineScores:
    """Per-row output of :func:`score_series`; every array has shape (n,).

    Attributes
    ----------
    score : ndarray of float
        In [0, 1]; 0 for warm-up and late rows. Under ``decision="alert"`` the alert score
        (see the module docstring), under ``"job"`` :attr:`model_score`.
    is_anomaly : ndarray of bool
        The decision: rows that open an alert (``"alert"``) or every row at or above the
        threshold (``"job"``).
    model_score : ndarray of float
        The models' per-row score (under ``"job"``, what the job pushes as ``anomaly_score``).
    expected, lower, upper : ndarray of float
        NaN where no valid model covers the row; under ``"alert"`` the model's band widened
        by the divisors of the evidence (young series, routine surprises).
    scored : ndarray of bool
        Whether a fitted model scored the row (False: warm-up or late).
    step_seconds : float or None
        The inferred grid step (None when the series is too short to infer it).
    n_refits : int
        Models fitted.
    """

    score: np.ndarray
    is_anomaly: np.ndarray
    model_score: np.ndarray
    expected: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    scored: np.ndarray
    step_seconds: float | None
    n_refits: int


# ---------------------------------------------------------------------------- reading
def read_series_csv(path: str | Path) -> SeriesTable:
    """Read and validate a ``timestamp,value`` CSV.

    Raises
    ------
    DataError
        Unreadable file, missing columns, an unparsable timestamp or a non-numeric value
        (the message names the line).
    """
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError, pd.errors.ParserError) as e:
        raise DataError(f"{path}: cannot read the CSV: {str(e).splitlines()[0]}") from None
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: the file is empty (expected a header timestamp,value)") from None
    table.columns = [str(c).strip() for c in table.columns]
    missing = [c for c in ("timestamp", "value") if c not in table.columns]
    if missing:
        raise DataError(
            f"{path}: missing column(s) {', '.join(missing)}; found {', '.join(table.columns)}"
        )
    clash = [c for c in OUTPUT_COLUMNS if c in table.columns]
    if clash:
        raise DataError(f"{path}: input already has output column(s) {', '.join(clash)}")
    times = parse_timestamps(table["timestamp"], where=str(path))
    values = parse_values(table["value"], where=str(path))
    return SeriesTable(table, times, values)


def parse_timestamps(text: pd.Series, where: str = "input") -> np.ndarray:
    """Epoch seconds from text: all numeric (epoch seconds) or ISO 8601 (naive = UTC).

    Raises
    ------
    DataError
        Naming the first line (header = line 1) that is neither.
    """
    s = text.astype(str).str.strip()
    numeric = pd.to_numeric(s, errors="coerce")
    if len(s) and numeric.notna().all():
        out = numeric.to_numpy(dtype=np.float64)
    else:
        parsed = pd.to_datetime(s, utc=True, format="ISO8601", errors="coerce")
        bad = np.flatnonzero(parsed.isna().to_numpy())
        if bad.size:
            i = int(bad[0])
            raise DataError(
                f"{where}, line {i + 2}: timestamp {s.iloc[i]!r} is neither ISO 8601 "
                "nor epoch seconds"
            )
        out = ((parsed - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)).to_numpy(
            dtype=np.float64
        )
    bad = np.flatnonzero(~np.isfinite(out))
    if bad.size:
        i = int(bad[0])
        raise DataError(f"{where}, line {i + 2}: timestamp {s.iloc[i]!r} is not finite")
    return out


def parse_values(text: pd.Series, where: str = "input") -> np.ndarray:
    """Floats from text; empty/NaN/null are gaps (NaN), ±Inf too.

    Raises
    ------
    DataError
        Naming the first line with a non-numeric value.
    """
    s = text.astype(str).str.strip()
    out = pd.to_numeric(s, errors="coerce").to_numpy(dtype=np.float64, copy=True)
    missing = s.str.lower().isin(_MISSING_TEXT).to_numpy()
    bad = np.flatnonzero(np.isnan(out) & ~missing)
    if bad.size:
        i = int(bad[0])
        raise DataError(f"{where}, line {i + 2}: value {s.iloc[i]!r} is not a number")
    out[~np.isfinite(out)] = np.nan
    return out


# ---------------------------------------------------------------------------- the grid
def snap_step(seconds: float) -> float:
    """The nearest (in ratio) divisor of a day, or whole days above a day; at least 1 s."""
    if not seconds > 0:
        raise ValueError(f"`seconds` must be positive, got {seconds}")
    if seconds >= SECONDS_PER_DAY:
        return SECONDS_PER_DAY * max(1, round(seconds / SECONDS_PER_DAY))
    i = int(np.argmin(np.abs(np.log(_DAY_DIVISORS / seconds))))
    return float(_DAY_DIVISORS[i])


def infer_step(times: np.ndarray, n_gaps: int) -> tuple[float, int] | None:
    """Grid step from the first ``n_gaps`` positive gaps of increasing ``times``.

    Parameters
    ----------
    times : ndarray of shape (n,)
        Timestamps of the in-order rows.
    n_gaps : int

    Returns
    -------
    (step_seconds, row) or None
        ``row`` is the index in ``times`` at which the step became known; None when there
        are fewer than ``n_gaps`` positive gaps.
    """
    gaps = np.diff(times)
    positive = np.flatnonzero(gaps > 0)
    if positive.size < n_gaps:
        return None
    first = positive[:n_gaps]
    return snap_step(float(np.median(gaps[first]))), int(first[-1]) + 1


def late_rows(times: np.ndarray) -> np.ndarray:
    """Rows whose timestamp is earlier than some row before them, shape (n,) bool."""
    if times.size == 0:
        return np.zeros(0, dtype=bool)
    prev_max = np.maximum.accumulate(times)
    late = np.zeros(times.size, dtype=bool)
    late[1:] = times[1:] < prev_max[:-1]
    return late


# ---------------------------------------------------------------------------- scoring
def score_series(
    times: np.ndarray,
    values: np.ndarray,
    options: OfflineOptions | None = None,
    *,
    row_name: Callable[[int], str] = lambda i: f"row {i}",
) -> OfflineScores:
    """Walk-forward causal scores of one series (see the module docstring).

    Parameters
    ----------
    times : ndarray of shape (n,)
        Epoch seconds, in arrival order.
    values : ndarray of shape (n,)
        NaN = missing.
    options : OfflineOptions, optional
    row_name : callable
        Names row ``i`` in error messages (``score_csv`` names file lines).

    Returns
    -------
    OfflineScores

    Raises
    ------
    DataError
        More than :data:`MAX_LATE_FRACTION` of the rows are out of order.
    """
    opts = options or OfflineOptions()
    t = np.asarray(times, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64).copy()
    if t.ndim != 1 or v.shape != t.shape:
        raise ValueError(
            f"`times` and `values` must be 1-D of one length, got {t.shape}, {v.shape}"
        )
    v[~np.isfinite(v)] = np.nan
    n = t.size
    out = OfflineScores(
        score=np.zeros(n),
        is_anomaly=np.zeros(n, dtype=bool),
        model_score=np.zeros(n),
        expected=np.full(n, np.nan),
        lower=np.full(n, np.nan),
        upper=np.full(n, np.nan),
        scored=np.zeros(n, dtype=bool),
        step_seconds=None,
        n_refits=0,
    )
    if n == 0:
        return out
    late = late_rows(t)
    n_late = int(late.sum())
    if n_late > MAX_LATE_FRACTION * n:
        first = int(np.argmax(late))
        raise DataError(
            f"timestamps are not in increasing order ({n_late} of {n} rows are earlier than a "
            f"row before them, the first at {row_name(first)}); sort the file first"
        )
    if n_late:
        log.warning(
            "%d late row(s) (timestamp earlier than a row before; first at %s) are ignored "
            "by the model",
            n_late,
            row_name(int(np.argmax(late))),
        )
    rows = np.flatnonzero(~late)  # in-order rows, times non-decreasing
    found = infer_step(t[rows], opts.step_gaps)
    if found is None:
        return out
    step, known = found
    t0 = float(t[0])
    cell = np.rint((t[rows] - t0) / step).astype(np.int64)
    if int(cell[-1]) > MAX_CELLS:
        raise DataError(
            f"the series spans {int(cell[-1])} steps of {step:g}s, more than {MAX_CELLS}; "
            "is a timestamp far off?"
        )
    refit_cells = max(1, round(opts.refit_interval_seconds / step))
    lookback_cells = max(1, round(opts.lookback_seconds / step))
    # The first fit waits for the step, for `warmup` of data time, and for a day of cells
    # with values (what the baseline needs to be valid).
    finite_cells = np.cumsum(np.r_[True, cell[1:] != cell[:-1]] & np.isfinite(v[rows]))
    enough = np.flatnonzero(finite_cells >= n_slots_per_day(step))
    if enough.size == 0:
        return replace(out, step_seconds=step, n_refits=0)
    first_fit = max(
        int(cell[known]),
        int(cell[enough[0]]) + 1,
        math.ceil(opts.warmup_seconds / step - 1e-9),
    )

    # Per in-order row: the cell's last finite value as of this row; the row's rank from the
    # end of its cell (0 = the cell's last row, whose as-of value is what later rows see).
    frame = pd.DataFrame({"cell": cell, "value": v[rows]})
    as_of = frame.groupby("cell")["value"].ffill().to_numpy()
    from_end = frame.groupby("cell").cumcount(ascending=False).to_numpy()
    n_cells = int(cell[-1]) + 1
    grid = np.full(n_cells, np.nan)
    last = from_end == 0
    grid[cell[last]] = as_of[last]

    def window(lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        """Grid times and values of cells [lo, hi); cells outside the data are gaps."""
        idx = np.arange(lo, hi)
        vals = np.full(idx.size, np.nan)
        inside = (idx >= 0) & (idx < n_cells)
        vals[inside] = grid[idx[inside]]
        return t0 + idx * step, vals

    n_refits = 0
    c_row = np.full(n, np.nan)  # the transform scale of the model that scored each row
    nonneg_row = np.zeros(n, dtype=bool)
    seg_of_row = np.where(cell >= first_fit, (cell - first_fit) // refit_cells, -1)
    for k in range(int(seg_of_row.max()) + 1 if n_cells > first_fit else 0):
        c_k = first_fit + k * refit_cells
        in_seg = np.flatnonzero(seg_of_row == k)
        if in_seg.size == 0:
            continue
        # Not before the first row: the baseline holds out the newest day only when older
        # rows exist, and cells before the data would count as such.
        fit_t, fit_v = window(max(c_k - lookback_cells, 0), c_k)
        model = AnomalyModel(
            step_seconds=step,
            threshold=opts.threshold,
            random_state=opts.random_state,
            holdout_seconds=opts.model_holdout_seconds,
        )
        try:
            model.fit(fit_t, fit_v[:, None])
        except DataError as e:
            log.warning("refit at %s skipped: %s", row_name(int(rows[in_seg[0]])), e)
            continue
        n_refits += 1
        start = c_k - HISTORY_CELLS
        # The cells' last rows in one pass; a row with later rows in its cell alone, on a
        # window ending at its cell that holds its own as-of value.
        lasts = in_seg[from_end[in_seg] == 0]
        if lasts.size:
            win_t, win_v = window(start, int(cell[lasts].max()) + 1)
            _take(out, model.score_history(win_t, win_v[:, None]), rows[lasts], cell[lasts] - start)
        for j in in_seg[from_end[in_seg] > 0]:
            win_t, win_v = window(start, int(cell[j]) + 1)
            win_v[-1] = as_of[j]
            _take(out, model.score_history(win_t, win_v[:, None]), rows[j : j + 1], np.array([-1]))
        c_row[rows[in_seg]] = model.seasonal_.c_[0]
        nonneg_row[rows[in_seg]] = model.seasonal_.nonneg_[0]
    out = replace(out, step_seconds=step, n_refits=n_refits)
    if opts.decision == "alert":
        _apply_alerts(out, t, c_row, nonneg_row, opts.alert_rule)
    return out


def _take(out: OfflineScores, res: ScoreResult, target: np.ndarray, pos: np.ndarray) -> None:
    """Copy rows ``pos`` of a one-series result into ``out`` at ``target``."""
    out.score[target] = res.score[pos, 0]
    out.model_score[target] = res.score[pos, 0]
    out.is_anomaly[target] = res.is_anomaly[pos, 0]
    out.expected[target] = res.expected[pos, 0]
    out.lower[target] = res.lower[pos, 0]
    out.upper[target] = res.upper[pos, 0]
    out.scored[target] = True


def _apply_alerts(
    out: OfflineScores, times: np.ndarray, c: np.ndarray, nonneg: np.ndarray, rule: AlertRule
) -> None:
    """Replace the model's decision and band in ``out`` by the alert rule's, in place.

    ``c`` and ``nonneg`` (shape (n,)) are the transform scale and sign of the model that
    scored each row."""
    rows = np.flatnonzero(out.scored)  # in order: late rows are never scored
    if rows.size == 0:
        return
    age_days = (times[rows] - times[0]) / SECONDS_PER_DAY
    alerts = rule.decide(times[rows], age_days, out.model_score[rows])
    out.is_anomaly[rows] = alerts.is_anomaly
    out.score[rows] = alerts.score
    out.lower[rows], out.upper[rows] = widen_band(
        out.expected[rows], out.upper[rows], c[rows], nonneg[rows], alerts.gain
    )


# ---------------------------------------------------------------------------- writing
def format_scores(table: pd.DataFrame, scores: OfflineScores) -> str:
    """The output CSV text: the input columns as read, then :data:`OUTPUT_COLUMNS`."""
    out = table.copy()
    out["expected"] = scores.expected
    out["lower"] = scores.lower
    out["upper"] = scores.upper
    out["score"] = scores.score
    out["is_anomaly"] = scores.is_anomaly.astype(np.int64)
    out["model_score"] = scores.model_score
    buf = io.StringIO()
    out.to_csv(buf, index=False, float_format="%.10g", lineterminator="\n")
    return buf.getvalue()


def score_file(
    path: str | Path, options: OfflineOptions | None = None
) -> tuple[SeriesTable, OfflineScores]:
    """Read a CSV and score it (what ``score-csv`` and ``evaluate`` share)."""
    series = read_series_csv(path)
    scores = score_series(
        series.times, series.values, options, row_name=lambda i: f"{path}, line {i + 2}"
    )
    return series, scores


def score_csv(
    input: str | Path,
    output: str | Path | TextIO | None = None,
    *,
    config: Config | None = None,
    options: OfflineOptions | None = None,
) -> int:
    """Score a ``timestamp,value`` CSV causally and write the result; return the row count.

    Parameters
    ----------
    input : path
    output : path, text stream or None
        None writes to standard output.
    config : Config, optional
        ``detection.threshold``, ``detection.refit_interval`` and ``lookback`` are used.
    options : OfflineOptions, optional
        Overrides ``config``.

    Raises
    ------
    DataError
        Bad input (see :func:`read_series_csv` and :func:`score_series`), or an unwritable
        output.
    """
    opts = options or OfflineOptions.from_config(config)
    series, scores = score_file(input, opts)
    text = format_scores(series.table, scores)
    if output is None:
        sys.stdout.write(text)
    elif isinstance(output, (str, Path)):
        try:
            Path(output).write_text(text)
        except OSError as e:
            raise DataError(f"{output}: cannot write: {e.strerror}") from None
    else:
        output.write(text)
    log.info(
        "%s: %d rows, step %ss, %d refits",
        input,
        len(series.table),
        f"{scores.step_seconds:g}" if scores.step_seconds else "?",
        scores.n_refits,
    )
    return len(series.table)
