"""The decision: which rows of a series' per-row model score get flagged (yes/no).

The models give a continuous per-row score (the job pushes it as ``anomaly_score``); a
decision turns it into flags. There are two (:data:`DECISIONS`):

``"job"``
    The job's rule, ``anomaly_detected = score >= threshold`` on every row
    (:attr:`~anomaly.models.scoring.ScoreResult.is_anomaly`). It holds for as long as a model
    calls the data unusual: a level shift stays anomalous for a day or two, until refits have
    learned it, which is hundreds of flagged rows for one incident.
``"alert"`` (:class:`AlertRule`)
    What a person receives from it: one page when an alert starts.

    * While the series holds ``d`` days of data, the evidence behind the score is divided by
      ``1 + young_days / d`` (a model fitted on two days knows its noise poorly; at
      ``young_days = 1.5`` the bar is 1.75x at day 2, 1.2x at day 7, 1.05x at day 28).
    * A surprise that is routine at this time of day needs more: with ``r`` the median, over
      the past week's days, of the largest evidence within half an hour of the same time of
      day (:func:`routine_evidence`), the evidence is also divided by ``routine_factor * r``
      (1.5 r) where that is above 1, so a nightly job's spike stops paging after two nights.
    * A row is flagged when it *opens* an alert: at or above the threshold (after the two
      divisions) while no alert is open. An alert stays open until a row at least
      ``refractory_seconds`` (a day) after it opened is below the threshold
      (:func:`alert_onsets`).
    * The alert score is that score on the rows that open an alert and at most half the
      threshold on every other row, so any threshold at or above the shipped one selects
      alert starts.
    * The band widens by the same divisors (:func:`widen_band`): a value outside it alone
      opens an alert.

    It is causal (a state machine run forward over the rows) and uses no labels.

``anomaly score-csv`` (:mod:`anomaly.offline.replay`) applies the decision to its walk-forward
scores; ``anomaly evaluate`` (:mod:`anomaly.offline.evaluate`) judges the rows it flags.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from anomaly.models.features import SECONDS_PER_DAY, nanmedian0
from anomaly.models.scoring import evidence_to_score

#: The decisions: flag the rows that open an alert, or every row the job's rule flags.
DECISIONS = ("alert", "job")
#: Days back, and the half-width around the same time of day, of :func:`routine_evidence`.
ROUTINE_DAYS = 7
ROUTINE_HALF_WIDTH_SECONDS = 1800.0


@dataclass(frozen=True)
class Alerts:
    """Per-row outcome of :meth:`AlertRule.decide`; every array has shape (n,).

    Attributes
    ----------
    score : ndarray of float
        The alert score, in [0, 1]: at or above the threshold exactly on the rows that open
        an alert.
    is_anomaly : ndarray of bool
        Rows that open an alert.
    gain : ndarray of float
        What the evidence was divided by (>= 1; the band widens by it).
    """

    score: np.ndarray
    is_anomaly: np.ndarray
    gain: np.ndarray


@dataclass(frozen=True)
class AlertRule:
    """The ``"alert"`` decision (see the module docstring).

    Parameters
    ----------
    threshold : float
        Threshold on the score.
    refractory_seconds : float
        After an alert opens, no other opens for this long, and not before the score has
        been below the threshold again.
    young_days : float
        Evidence needed to open an alert is ``1 + young_days / d`` times the model's own while
        the series holds ``d`` days of data (0 = as the model has it).
    routine_factor : float
        Evidence needed to open an alert is also at least ``routine_factor`` times the
        :func:`routine_evidence` of the time of day (0 = off).
    """

    threshold: float = 0.5
    refractory_seconds: float = SECONDS_PER_DAY
    young_days: float = 1.5
    routine_factor: float = 1.5

    def __post_init__(self) -> None:
        if not self.refractory_seconds >= 0:
            raise ValueError(f"`refractory_seconds` must be >= 0, got {self.refractory_seconds}")
        if not self.young_days >= 0:
            raise ValueError(f"`young_days` must be >= 0, got {self.young_days}")
        if not self.routine_factor >= 0:
            raise ValueError(f"`routine_factor` must be >= 0, got {self.routine_factor}")

    def decide(self, times: np.ndarray, age_days: np.ndarray, model_score: np.ndarray) -> Alerts:
        """Alerts from the models' per-row score.

        Parameters
        ----------
        times : ndarray of shape (n,)
            Non-decreasing epoch seconds of the scored rows.
        age_days : ndarray of shape (n,)
            Days of data the series holds at each row (0: no alert can open).
        model_score : ndarray of shape (n,)
            The models' score of each row.

        Returns
        -------
        Alerts
        """
        with np.errstate(divide="ignore", invalid="ignore"):  # day 0 (no warm-up): no alert
            gain = 1.0 + self.young_days / age_days if self.young_days > 0 else np.ones(times.size)
            evidence = score_to_evidence(model_score) / gain
            if self.routine_factor > 0:
                routine = routine_evidence(times, evidence)
                evidence = evidence / np.maximum(1.0, self.routine_factor * routine)
                gain = gain * np.maximum(1.0, self.routine_factor * routine)
            score = evidence_to_score(evidence)
        opens = alert_onsets(times, score >= self.threshold, self.refractory_seconds)
        return Alerts(
            score=np.where(opens, score, np.minimum(score, self.threshold) / 2.0),
            is_anomaly=opens,
            gain=gain,
        )


def alert_onsets(times: np.ndarray, above: np.ndarray, refractory_seconds: float) -> np.ndarray:
    """Rows that open an alert: above the threshold while no alert is open.

    An alert opened at ``t`` stays open until a row at or after ``t + refractory_seconds``
    is below the threshold; so one incident, however long, opens one alert, and a flapping
    score opens at most one a ``refractory_seconds``.

    Parameters
    ----------
    times : ndarray of shape (n,)
        Non-decreasing epoch seconds.
    above : ndarray of bool, shape (n,)
        Rows at or above the threshold.
    refractory_seconds : float

    Returns
    -------
    ndarray of bool, shape (n,)
    """
    opens = np.zeros(above.shape, dtype=bool)
    is_open = False
    opened = -math.inf
    for i in range(above.size):  # a state machine: sequential by nature (n <= rows of a file)
        if above[i]:
            if not is_open:
                opens[i] = is_open = True
                opened = times[i]
        elif is_open and times[i] - opened >= refractory_seconds:
            is_open = False
    return opens


def run_starts(flags: np.ndarray) -> np.ndarray:
    """Rows that start a run of flagged rows, shape (n,) bool: the alerts of a rule that
    opens one per run of flags, with no refractory period."""
    flags = np.asarray(flags, dtype=bool)
    starts = flags.copy()
    starts[1:] &= ~flags[:-1]
    return starts


def routine_evidence(
    times: np.ndarray,
    evidence: np.ndarray,
    days: int = ROUTINE_DAYS,
    half_width_seconds: float = ROUTINE_HALF_WIDTH_SECONDS,
    min_days: int = 2,
) -> np.ndarray:
    """How surprising the same time of day usually is: per row, the median over the previous
    ``days`` days of the largest evidence within ``half_width_seconds`` of this time of day
    (0 where fewer than ``min_days`` of those days have rows). Causal: it looks at least
    ``1 day - half_width_seconds`` back.

    Parameters
    ----------
    times : ndarray of shape (n,)
        Non-decreasing epoch seconds.
    evidence : ndarray of shape (n,)

    Returns
    -------
    ndarray of shape (n,)
    """
    t = np.asarray(times, dtype=np.float64)
    span = 2.0 * half_width_seconds
    # Largest evidence in (t_j - span, t_j] at every row j.
    peak = (
        pd.Series(evidence, index=pd.to_datetime(t, unit="s"))
        .rolling(pd.Timedelta(seconds=span))
        .max()
        .to_numpy()
    )
    past = np.full((t.size, days), np.nan)
    for d in range(1, days + 1):
        end = t - d * SECONDS_PER_DAY + half_width_seconds
        j = np.searchsorted(t, end, side="right") - 1
        has = (j >= 0) & (t[np.maximum(j, 0)] > end - span)
        past[has, d - 1] = peak[j[has]]
    enough = np.count_nonzero(np.isfinite(past), axis=1) >= min_days
    out = np.zeros(t.size)
    out[enough] = nanmedian0(past[enough].T)
    return out


def score_to_evidence(score: np.ndarray) -> np.ndarray:
    """Inverse of :func:`~anomaly.models.scoring.evidence_to_score` (1 -> inf)."""
    s = np.clip(np.asarray(score, dtype=np.float64), 0.0, 1.0)
    with np.errstate(divide="ignore"):
        return np.sqrt(s / (1.0 - s))


def widen_band(
    expected: np.ndarray, upper: np.ndarray, c: np.ndarray, nonneg: np.ndarray, gain: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The model's point band widened by ``gain`` in the model's space ``asinh(x / c)``:
    the band within which a value alone cannot open an alert.

    Parameters
    ----------
    expected, upper : ndarray of shape (n,)
        The model's expected value and upper band edge (source unit).
    c : ndarray of shape (n,)
        The transform scale of the model that scored each row.
    nonneg : ndarray of bool, shape (n,)
        Rows whose series was never negative (the lower edge stays at or above 0).
    gain : ndarray of shape (n,)
        :attr:`Alerts.gain`.

    Returns
    -------
    lower, upper : ndarray of shape (n,)
    """
    with np.errstate(invalid="ignore", over="ignore"):
        mid = np.arcsinh(expected / c)
        half = (np.arcsinh(upper / c) - mid) * gain
        lower = c * np.sinh(mid - half)
        wide_upper = c * np.sinh(mid + half)
    return np.where(nonneg, np.maximum(lower, 0.0), lower), wide_upper
