"""The forecast bench's statsmodels reference forecasters on a small generated case."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from anomaly_lab import synth
from statsmodels.tools.sm_exceptions import ConvergenceWarning

from bench import reference
from bench.forecast_bench import rate_per_hour, rolling_day

STEP = 300
DAY_POINTS = 288
HISTORY = 10 * DAY_POINTS
END = 1_704_412_800.0  # a Friday, 00:00 UTC: ten days of history, then a weekday to forecast


@pytest.fixture(scope="module")
def steady() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Three steady tenants over 12 days: rolling spend, rate ($/h), and the day that follows
    the history (the truth), ``(n_t, 3)`` each but the truth ``(288, 3)``."""
    counter = synth.generate(3, days=12.0, step_seconds=STEP, end=END, seed=5).matrix("ai_cost")
    spend, rate = rolling_day(counter), rate_per_hour(counter)
    n = spend.shape[0] - DAY_POINTS
    return spend[n - HISTORY : n], rate[n - HISTORY : n], spend[n : n + DAY_POINTS]


@pytest.mark.parametrize("model", reference.MODELS)
@pytest.mark.parametrize("carried", [True, False], ids=["rate", "sums"])
def test_steady_tenants_are_forecast_within_their_band(
    steady: tuple[np.ndarray, np.ndarray, np.ndarray], model: str, carried: bool
) -> None:
    spend, rate, truth = steady
    fc = reference.reference_forecast(model, spend, rate if carried else None, DAY_POINTS, STEP)
    assert fc.ok.all()
    assert fc.value.shape == truth.shape
    assert np.isfinite(fc.value).all()
    assert (fc.lower <= fc.value).all() and (fc.value <= fc.upper).all()
    mae = np.mean(np.abs(fc.value - truth), axis=0)
    assert (mae < 0.1 * np.mean(truth, axis=0)).all(), mae
    inside = (fc.lower <= truth) & (truth <= fc.upper)
    assert inside.mean() >= 0.6, inside.mean(axis=0)
    # The first hour's band is narrower than the last hour's.
    width = fc.upper - fc.lower
    assert (width[11] < width[-1]).all()


def test_a_series_with_gaps_is_skipped_and_the_others_forecast(
    steady: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> None:
    spend, rate, _ = steady
    rate = rate.copy()
    rate[-600:-500, 1] = np.nan
    skipped: list[tuple[int, str]] = []
    fc = reference.reference_forecast(
        "ETS", spend, rate, DAY_POINTS, STEP, on_skip=lambda j, why: skipped.append((j, why))
    )
    assert fc.ok.tolist() == [True, False, True]
    assert np.isnan(fc.value[:, 1]).all() and np.isfinite(fc.value[:, [0, 2]]).all()
    assert skipped == [(1, "gaps in the history")]


def test_a_failed_or_unconverged_fit_is_skipped_not_raised(
    steady: tuple[np.ndarray, np.ndarray, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    spend, rate, _ = steady
    real = reference._fit_theta
    calls = iter(["fails", "warns", "fits"])

    def flaky(y: np.ndarray, steps: int) -> object:
        what = next(calls)
        if what == "fails":
            raise np.linalg.LinAlgError("SVD did not converge")
        if what == "warns":
            warnings.warn("did not converge", ConvergenceWarning, stacklevel=1)
        return real(y, steps)

    monkeypatch.setattr(reference, "_fit_theta", flaky)
    skipped: list[tuple[int, str]] = []
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing escapes the reference's own handling
        fc = reference.reference_forecast(
            "Theta", spend, rate, DAY_POINTS, STEP, on_skip=lambda j, w: skipped.append((j, w))
        )
    assert fc.ok.tolist() == [False, False, True]
    assert [j for j, _ in skipped] == [0, 1]
    assert skipped[0][1].startswith("fit failed: LinAlgError")
    assert skipped[1][1] == "ConvergenceWarning"


def test_rejects_a_horizon_that_is_not_whole_hours(
    steady: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> None:
    spend, rate, _ = steady
    with pytest.raises(ValueError, match="whole hours"):
        reference.reference_forecast("ETS", spend, rate, 100, STEP)
