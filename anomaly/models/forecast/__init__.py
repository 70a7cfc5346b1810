"""Seasonal trend forecasts with prediction intervals, and the time until they cross a threshold.

``forecast(times, values, ForecastParams(horizon_seconds))`` forecasts every column of a grid;
``breach_seconds(fc, threshold=...)`` counts down to the first lasting crossing. Where each
part lives:

``params.py``
    :class:`ForecastParams`: the horizon and every setting, their defaults and checks.
``dispatch.py``
    :func:`forecast`: checks the arrays, finds the series that can be forecast (a reason for
    each that cannot), and hands them to one of the two forecasters below.
``plain.py``
    A series extrapolated from itself: a weekly or daily seasonal reference plus a deviation
    that continues as it did over the last day; a band calibrated on walk-forward errors and a
    guard that does not extrapolate steps.
``rolling.py``
    Rate mode (``rate=`` given): a rolling sum carried forward from its rate's forecast, with
    a band from walk-forward errors, a guard and the held guards of recent origins. Its parts:
    ``rate_reference.py`` (the rate's seasonal reference, weekend edges) and ``trend.py`` (the
    rate's level and slope: candidate ramps, the decision and the timing fit).
``result.py``
    :class:`Forecast` and :func:`breach_seconds`, which reads its point forecast and guards.
``common.py``
    Array helpers both forecasters use (days as rows, cumulative sums, NaN handling).
"""

from anomaly.models.forecast.dispatch import forecast
from anomaly.models.forecast.params import ForecastParams
from anomaly.models.forecast.result import Forecast, breach_seconds

__all__ = ["Forecast", "ForecastParams", "breach_seconds", "forecast"]
