"""The public anomaly model: combines detector evidence into one score, a decision, and bands.

:class:`AnomalyModel` fits, per chunk of series, the seasonal baseline
(:class:`~anomaly.models.seasonal.SeasonalBaseline`), which turns a window into feature
rows, and on those rows the detectors (:class:`~anomaly.models.base.Detector`): the
threshold rules (:class:`~anomaly.models.rules.RuleDetector`) and the isolation forest
(:class:`~anomaly.models.iforest.IsolationForestDetector`). Each detector gives *evidence*
per row and series, scaled so that 1 means "at the decision threshold" on its own. The model
takes the strongest evidence ``e`` and maps it to

    ``score = e ** 2 / (1 + e ** 2)``     (e = 0 -> 0, e = 1 -> 0.5, e = 2 -> 0.8, e = 10 -> 0.99)

which approaches 1 only asymptotically (``1 - score = 1 / (1 + e ** 2)`` stays above float
resolution up to e ~ 1e8), so a threshold near 1 still separates strong anomalies from the
strongest. The shipped rule ``is_anomaly = score >= threshold`` with ``threshold = 0.5`` fires
exactly when one detector reaches its own threshold. Bands are the seasonal baseline's point band in
the source unit: a value outside them alone makes the point anomalous.

The stored state (``get_state``) is the parts' arrays under ``model.``, ``seasonal.`` (the
baseline and the threshold rules, which share ``valid``) and ``iforest.``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from anomaly.errors import DataError
from anomaly.models.base import FittedState, scalar
from anomaly.models.calendar import Calendar
from anomaly.models.features import SECONDS_PER_DAY, n_slots_per_day
from anomaly.models.iforest import IsolationForestDetector
from anomaly.models.rules import RULE_NAMES, RuleDetector
from anomaly.models.seasonal import N_FEATURES, SeasonalBaseline, check_input

_CHUNK_SERIES = 256
_HISTORY_ROWS = 48


def history_rows(step_seconds: float) -> int:
    """Rows before the first scored one that :meth:`AnomalyModel.score` reads, and all it
    reads: a day, for reading today's day type and clock from today so far (the trailing
    features need 36 rows). A window of ``n_eval`` plus these rows scores as the whole one."""
    return max(_HISTORY_ROWS, int(np.ceil(SECONDS_PER_DAY / step_seconds)))


#: The fitted parts: (attribute, state prefix, class). The threshold rules' arrays share the
#: baseline's prefix (the format the job stores, which predates their split).
_PARTS: tuple[tuple[str, str, type[FittedState]], ...] = (
    ("seasonal_", "seasonal.", SeasonalBaseline),
    ("rules_", "seasonal.", RuleDetector),
    ("iforest_", "iforest.", IsolationForestDetector),
)


@dataclass(frozen=True)
class ScoreResult:
    """Scores of the newest ``n_eval`` rows of ``n_series`` series.

    Attributes
    ----------
    score : ndarray of float, shape (n_eval, n_series)
        In [0, 1], higher = more anomalous; never NaN (0 for invalid series).
    is_anomaly : ndarray of bool, shape (n_eval, n_series)
        ``score >= threshold``.
    expected, lower, upper : ndarray of float, shape (n_eval, n_series)
        Baseline and band in the source unit; NaN for invalid series.
    valid : ndarray of bool, shape (n_series,)
    reason : list of (str or None), length n_series
        Why a series is invalid (None when valid).
    """

    score: np.ndarray
    is_anomaly: np.ndarray
    expected: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    valid: np.ndarray
    reason: list[str | None]


def _constant(values: np.ndarray) -> np.ndarray:
    """Series whose finite values are all equal (or that have none), shape (n_series,)."""
    finite = np.isfinite(values)
    with np.errstate(invalid="ignore"):
        hi = np.max(np.where(finite, values, -np.inf), axis=0, initial=-np.inf)
        lo = np.min(np.where(finite, values, np.inf), axis=0, initial=np.inf)
    return ~(hi > lo)


def evidence_to_score(evidence: np.ndarray) -> np.ndarray:
    """Map evidence (>= 0, 1 = at threshold) to a score in [0, 1]; NaN -> 0."""
    e = np.where(np.isnan(evidence), 0.0, np.maximum(evidence, 0.0))
    e2 = np.minimum(e, 1e150) ** 2
    return np.clip(e2 / (1.0 + e2), 0.0, 1.0)


class AnomalyModel:
    """Seasonal baseline plus isolation forest, per series, with one score and a decision rule.

    Parameters
    ----------
    step_seconds : float
        Grid step of the series.
    threshold : float
        Decision threshold on the score, in (0, 1].
    random_state : int
        Seed of the isolation forests (the same for every series).
    use_iforest : bool
        Whether the isolation forest contributes evidence.
    n_estimators, max_samples : int
        Isolation forest size.
    holdout_seconds : float
        Newest part of the training window left out of the baseline (see
        :class:`~anomaly.models.seasonal.SeasonalBaseline`).
    bucketed : bool
        The values are quantiles read off histogram buckets (``histogram_quantile``; the job
        sets it from the metric's query): each time of day's noise covers its typical jumps
        between bucket bounds (see :class:`~anomaly.models.seasonal.SeasonalBaseline`).

    Attributes
    ----------
    seasonal_ : SeasonalBaseline
    rules_ : RuleDetector
    iforest_ : IsolationForestDetector
        The fitted parts (``iforest_`` skips every series when ``use_iforest`` is off).
    """

    seasonal_: SeasonalBaseline
    rules_: RuleDetector
    iforest_: IsolationForestDetector

    def __init__(
        self,
        step_seconds: float = 300.0,
        threshold: float = 0.5,
        random_state: int = 0,
        use_iforest: bool = True,
        n_estimators: int = 50,
        max_samples: int = 128,
        holdout_seconds: float = SECONDS_PER_DAY,
        bucketed: bool = False,
    ) -> None:
        self.step_seconds = step_seconds
        self.threshold = threshold
        self.random_state = random_state
        self.use_iforest = use_iforest
        self.n_estimators = n_estimators
        self.max_samples = max_samples
        self.holdout_seconds = holdout_seconds
        self.bucketed = bucketed

    def fit(
        self, times: np.ndarray, values: np.ndarray, calendar: Calendar | None = None
    ) -> AnomalyModel:
        """Fit the detectors on a training window.

        Parameters
        ----------
        times : ndarray of shape (n_t,)
            Epoch seconds on a regular grid of ``step_seconds``.
        values : ndarray of shape (n_t, n_series)
            One column per series; NaN/±Inf = missing.
        calendar : Calendar, optional
            The series' calendars read beforehand
            (:func:`~anomaly.models.seasonal.estimate_calendars`, e.g. pooled over each
            tenant's metrics, as the job does); default: each series' own.

        Returns
        -------
        self
        """
        if not 0.0 < self.threshold <= 1.0:
            raise ValueError(f"`threshold` must be in (0, 1], got {self.threshold}")
        t, v = check_input(times, values)
        if calendar is not None and calendar.n_series != v.shape[1]:
            raise ValueError(
                f"`calendar` describes {calendar.n_series} series, `values` has {v.shape[1]}"
            )
        parts: dict[str, list[FittedState]] = {attr: [] for attr, _, _ in _PARTS}
        for start in range(0, max(v.shape[1], 1), _CHUNK_SERIES):
            chunk = v[:, start : start + _CHUNK_SERIES]
            n_s = chunk.shape[1]
            own = (
                None
                if calendar is None
                else calendar.select(np.arange(start, start + n_s, dtype=np.int64))
            )
            seasonal = SeasonalBaseline(
                step_seconds=self.step_seconds,
                holdout_seconds=self.holdout_seconds,
                bucketed=self.bucketed,
            ).fit(t, chunk, own)
            # The detectors learn from the baseline's training cells (the newest day held out):
            # the rules calibrate on features of those cells' values alone (what the baseline
            # normalised its features on), the forest on the window's features at those cells.
            # Days that fit no profile (a holiday) are left out of both, as of the baseline.
            mask = seasonal.train_cells_
            rows = mask.any(axis=1) | (n_s == 0)
            held_in = seasonal.train_values_[rows]
            rules = RuleDetector(block_rows=n_slots_per_day(self.step_seconds)).fit(
                seasonal.features(t[rows], held_in), valid=seasonal.valid_
            )
            forest = IsolationForestDetector(
                n_estimators=self.n_estimators,
                max_samples=self.max_samples,
                random_state=self.random_state,
            )
            if self.use_iforest:
                feats = seasonal.features(t, seasonal.aligned_values_)
                feats = np.where(mask[:, None, :], feats, np.nan)
                # A constant series has nothing for a forest to learn: its rules alone judge
                # it (0 while it stays at its value).
                forest.fit(feats[rows], valid=seasonal.valid_ & ~_constant(chunk))
            else:  # an all-skipped forest: no evidence, same state layout
                forest.fit(np.full((1, N_FEATURES, n_s), np.nan), valid=np.zeros(n_s, bool))
            for attr, part in (("seasonal_", seasonal), ("rules_", rules), ("iforest_", forest)):
                parts[attr].append(part)
        for attr, _, cls in _PARTS:
            fitted = parts[attr]
            setattr(self, attr, fitted[0] if len(fitted) == 1 else cls.concat(fitted))
        return self

    @property
    def n_series_(self) -> int:
        """Number of series the model was fitted on."""
        return int(self.seasonal_.valid_.shape[0])

    def _evidence(self, t: np.ndarray, v: np.ndarray, n_eval: int | None = None) -> np.ndarray:
        """Evidence of the newest ``n_eval`` rows (all when None); older rows are history."""
        feats = self.seasonal_.features(t, v)
        if n_eval is not None:
            feats = feats[-n_eval:]
        ev = self.rules_.evidence(feats)
        if self.use_iforest:
            ev = np.maximum(ev, self.iforest_.evidence(feats))
        return ev

    def explain(
        self, times: np.ndarray, values: np.ndarray, n_eval: int = 1
    ) -> dict[str, np.ndarray]:
        """Where the score of the last ``n_eval`` rows comes from: each detector's evidence
        (1 = at the decision threshold on its own), so a notebook can tell a spike (``point``)
        from a shift (``mean_6`` .. ``mean_36``), a burst of noise (``variance``), a stuck or
        missing run (``still``) or an unusual combination (``forest``).

        The score of a row is :func:`evidence_to_score` of the largest of them, as
        :meth:`score` gives it.

        Parameters
        ----------
        times, values, n_eval
            As for :meth:`score`.

        Returns
        -------
        dict of str to ndarray of shape (n_eval, n_series)
            :data:`~anomaly.models.rules.RULE_NAMES`, then ``forest`` (zeros when the forest
            is off); 0 for an invalid series.
        """
        t, v = self._window(times, values, n_eval)
        feats = self.seasonal_.features(t, v)[-n_eval:]
        out = dict(zip(RULE_NAMES, self.rules_.rule_evidence(feats), strict=True))
        out["forest"] = (
            self.iforest_.evidence(feats) if self.use_iforest else np.zeros(feats[:, 0].shape)
        )
        return out

    def _window(
        self, times: np.ndarray, values: np.ndarray, n_eval: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """The checked rows :meth:`score` reads: the last ``n_eval`` and their history."""
        self._check_fitted()
        t, v = check_input(times, values)
        if not 1 <= n_eval <= t.shape[0]:
            raise ValueError(f"`n_eval` must be within [1, {t.shape[0]}], got {n_eval}")
        if v.shape[1] != self.n_series_:
            raise ValueError(
                f"`values` has {v.shape[1]} series, the model was fitted on {self.n_series_}"
            )
        start = max(0, t.shape[0] - n_eval - history_rows(self.step_seconds))
        return t[start:], v[start:]

    def score(self, times: np.ndarray, values: np.ndarray, n_eval: int = 1) -> ScoreResult:
        """Score the LAST ``n_eval`` rows of a window (earlier rows are history for features).

        Parameters
        ----------
        times : ndarray of shape (n_t,)
        values : ndarray of shape (n_t, n_series)
            Same series, in the same order, as at fit time. Only the last ``n_eval`` rows and
            :func:`history_rows` before them are read.
        n_eval : int
            Rows to score, ``1 <= n_eval <= n_t``.

        Returns
        -------
        ScoreResult
        """
        t, v = self._window(times, values, n_eval)
        ev = self._evidence(t, v, n_eval)
        expected, lower, upper = self.seasonal_.bands(t, self.rules_.band_sigmas(), v)
        expected, lower, upper = expected[-n_eval:], lower[-n_eval:], upper[-n_eval:]
        return self._result(ev, expected, lower, upper)

    def score_history(self, times: np.ndarray, values: np.ndarray) -> ScoreResult:
        """Score every row of a window (notebooks, offline backtests); rows see their past only.

        Returns
        -------
        ScoreResult
            Arrays of shape (n_t, n_series).
        """
        self._check_fitted()
        t, v = check_input(times, values)
        if v.shape[1] != self.n_series_:
            raise ValueError(
                f"`values` has {v.shape[1]} series, the model was fitted on {self.n_series_}"
            )
        ev = self._evidence(t, v)
        expected, lower, upper = self.seasonal_.bands(t, self.rules_.band_sigmas(), v)
        return self._result(ev, expected, lower, upper)

    def _result(
        self, ev: np.ndarray, expected: np.ndarray, lower: np.ndarray, upper: np.ndarray
    ) -> ScoreResult:
        valid = self.seasonal_.valid_.copy()
        score = evidence_to_score(ev)
        score[:, ~valid] = 0.0
        reasons: list[str | None] = [
            None if ok else str(r) for ok, r in zip(valid, self.seasonal_.reason_, strict=True)
        ]
        return ScoreResult(
            score=score,
            is_anomaly=score >= self.threshold,
            expected=expected,
            lower=lower,
            upper=upper,
            valid=valid,
            reason=reasons,
        )

    # ------------------------------------------------------------------ state
    def get_state(self, copy: bool = True) -> dict[str, np.ndarray]:
        """All fitted state as numpy arrays (no objects); per-series arrays have the series last.

        ``copy=False`` shares the parts' arrays instead of copying them (for saving)."""
        self._check_fitted()
        state = {
            "model.threshold": np.array(float(self.threshold)),
            "model.use_iforest": np.array(bool(self.use_iforest)),
            "model.random_state": np.array(int(self.random_state)),
            "model.holdout_seconds": np.array(float(self.holdout_seconds)),
        }
        for attr, prefix, _ in _PARTS:
            part: FittedState = getattr(self, attr)
            state.update({prefix + k: a for k, a in part.get_state(copy).items()})
        return state

    @classmethod
    def from_state(cls, state: Mapping[str, np.ndarray]) -> AnomalyModel:
        """Rebuild a fitted model from :meth:`get_state`.

        Raises
        ------
        DataError
            Anything missing or inconsistent (a corrupt or foreign file).
        """
        if not isinstance(state, Mapping):
            raise DataError(f"state must be a mapping of arrays, got {type(state).__name__}")
        for key in (
            "model.threshold",
            "model.use_iforest",
            "model.random_state",
            "model.holdout_seconds",
        ):
            if not isinstance(state.get(key), np.ndarray) or state[key].shape != ():
                raise DataError(f"state `{key}` must be a scalar array")
        try:
            use_iforest = bool(state["model.use_iforest"])
            random_state = int(state["model.random_state"])
        except (TypeError, ValueError) as exc:
            raise DataError(f"state model parameters unreadable: {exc}") from exc
        holdout = scalar(
            {"model.holdout_seconds": state["model.holdout_seconds"]},
            "model.holdout_seconds",
            0.0,
            1e9,
        )
        threshold = scalar(
            {"model.threshold": state["model.threshold"]}, "model.threshold", 1e-9, 1.0
        )
        seasonal = SeasonalBaseline.from_state(state, prefix="seasonal.")
        rules = RuleDetector.from_state(state, prefix="seasonal.")
        forest = IsolationForestDetector.from_state(state, prefix="iforest.")
        if forest.valid_.shape != seasonal.valid_.shape:
            raise DataError(
                f"state has {seasonal.valid_.shape[0]} seasonal series but {forest.valid_.shape[0]} forests"
            )
        for detector in (rules, forest):
            detector.check_n_features(N_FEATURES)
        model = cls(
            step_seconds=seasonal.step_seconds,
            threshold=threshold,
            random_state=random_state,
            use_iforest=use_iforest,
            n_estimators=int(forest.feature_.shape[0]),
            max_samples=int(forest.max_samples_.max(initial=0)) or 128,
            holdout_seconds=holdout,
        )
        model.seasonal_, model.rules_, model.iforest_ = seasonal, rules, forest
        return model

    def select(self, columns: np.ndarray) -> AnomalyModel:
        """The model restricted to ``columns`` (indices or boolean mask), in that order."""
        self._check_fitted()
        out = self._empty_like()
        for attr, _, _ in _PARTS:
            setattr(out, attr, getattr(self, attr).select(columns))
        return out

    @classmethod
    def concat(cls, models: list[AnomalyModel]) -> AnomalyModel:
        """Models side by side, series in order; their parameters must agree."""
        if not models:
            raise ValueError("`models` must not be empty")
        first = models[0]
        for m in models:
            m._check_fitted()
            if (m.threshold, m.use_iforest, m.step_seconds) != (
                first.threshold,
                first.use_iforest,
                first.step_seconds,
            ):
                raise ValueError(
                    "cannot concat models with different threshold, use_iforest or step_seconds"
                )
        out = first._empty_like()
        for attr, _, part_cls in _PARTS:
            setattr(out, attr, part_cls.concat([getattr(m, attr) for m in models]))
        return out

    def _empty_like(self) -> AnomalyModel:
        return type(self)(
            step_seconds=self.step_seconds,
            threshold=self.threshold,
            random_state=self.random_state,
            use_iforest=self.use_iforest,
            n_estimators=self.n_estimators,
            max_samples=self.max_samples,
            holdout_seconds=self.holdout_seconds,
            bucketed=self.bucketed,
        )

    def _check_fitted(self) -> None:
        if not hasattr(self, "seasonal_"):
            raise AttributeError("AnomalyModel is not fitted; call fit() first")
