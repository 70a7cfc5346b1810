"""Reference forecasters for the budget-breach bench: statsmodels' ETS and Theta.

The forecast bench (:mod:`bench.forecast_bench`) asks how well the product forecasts each
tenant's rolling 24-hour AI spend against its $100 budget. This module asks the same of two
recognised methods, fitted per tenant on the same history the product sees at each run:

* **ETS**: exponential smoothing with additive errors, a damped additive trend and an additive
  daily season (``ETSModel(error="add", trend="add", damped_trend=True, seasonal="add",
  seasonal_periods=24)``, heuristic initial states); its band comes from simulated paths;
* **Theta**: the Theta method (``ThetaModel(period=24)``, statsmodels' defaults:
  deseasonalised when the data call for it, theta = 2).

Both are fitted on hourly data (a day is 24 points, ten days 240): per-series fits in Python
would take minutes on the 5-minute grid. With the spend rate (the bench's default ``--mode
rate``, as the product runs), they forecast the hourly spend rate and the rolling spend is
carried forward from it the way the product carries it: the spend now, plus the forecast
inflow, minus the known spend that leaves the window. The rate forecast is held at zero or
more (spend never falls). With ``--mode sums`` they forecast the hourly rolling spend itself,
read on the 5-minute grid by linear interpolation from the spend now.

The bands: ETS's from 500 simulated paths (summed, for the carried spend); Theta's from the
simple exponential smoothing under it, as R's ``forecast::thetaf`` computes it (an innovation
``e`` moves every later forecast by ``alpha * e``; its variance is that of the one-step errors
on the seasonally adjusted data; scaled back by the seasonal factors). statsmodels' own
``prediction_intervals`` would refit an ARIMA(0, 1, 1) to the unadjusted data for every series,
about half a second each, and count the daily swing as noise.

A warning is the product's rule without its significance guard: the point forecast crosses
the budget and stays over it for ``min_duration_seconds`` (:func:`breach_seconds`).

To keep ``make bench`` within about two minutes more, every tenant is fitted at every
``every_hours``-th hourly run (the MAE, coverage and false-warning figures), and each crossing
drifter at every hourly run of the hours before its crossing that the detection and timing
figures read. The product's figures beside them are computed on the same runs. A fit that
fails, or whose optimiser reports a ``ConvergenceWarning``, is recorded with its key and
skipped (no forecast, no warning at that run); it never stops the bench.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from anomaly.models.forecast import Forecast, breach_seconds

MODELS = ("ETS", "Theta")
HOUR = 3600.0
SEASON_HOURS = 24
"""The daily season of the hourly data, in points."""


@dataclass
class Skip:
    """One series a reference forecaster could not forecast at one run."""

    model: str
    seed: int
    tenant: int
    run_time: float
    reason: str


@dataclass
class Series:
    """Forecasts of the rolling spend by one forecaster at one run, shape ``(n_h, n_series)``.

    NaN (and ``ok`` False) where the series was not forecast.
    """

    value: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    ok: np.ndarray
    """Shape ``(n_series,)``, bool."""


def _hourly(values: np.ndarray, points_per_hour: int, mean: bool) -> np.ndarray:
    """Hourly data ending at the newest point, ``(n_hours, n_series)``: per hour the mean of its
    points (`mean`, a rate) or its last point (a rolling sum)."""
    n_hours = values.shape[0] // points_per_hour
    tail = values[values.shape[0] - n_hours * points_per_hour :]
    if mean:
        blocks = tail.reshape(n_hours, points_per_hour, -1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.asarray(np.nanmean(blocks, axis=1))
    return np.asarray(tail[points_per_hour - 1 :: points_per_hour])


def _fit_ets(y: np.ndarray, steps: int, repetitions: int, rng: np.random.Generator) -> Any:
    """ETS point forecast ``(steps,)`` and simulated paths ``(steps, repetitions)``."""
    import pandas as pd
    from statsmodels.tsa.exponential_smoothing.ets import ETSModel

    res = ETSModel(
        pd.Series(y),
        error="add",
        trend="add",
        damped_trend=True,
        seasonal="add",
        seasonal_periods=SEASON_HOURS,
        initialization_method="heuristic",
    ).fit(disp=False)
    point = np.asarray(res.forecast(steps), dtype=float)
    paths = np.asarray(res.simulate(steps, anchor="end", repetitions=repetitions, rng=rng))
    return point, paths.reshape(steps, repetitions)


def _fit_theta(y: np.ndarray, steps: int) -> Any:
    """Theta point forecast ``(steps,)``, its SES smoothing weight and one-step error variance,
    and the factors ``(steps,)`` its errors scale by (the seasonal factors when
    multiplicative, else ones).

    The variance is that of the SES's one-step errors on the seasonally adjusted data, as R's
    ``forecast::thetaf`` has it: statsmodels' ``prediction_intervals`` would instead fit an
    ARIMA(0, 1, 1) to the unadjusted data per series (about half a second each; the daily swing
    then counts as noise).
    """
    import pandas as pd
    from statsmodels.tsa.forecasting.theta import ThetaModel

    res = ThetaModel(pd.Series(y), period=SEASON_HOURS).fit()
    point = np.asarray(res.forecast(steps), dtype=float)
    smoothing = float(res.params["alpha"])
    # In-sample seasonal components: the model's are periodic, and forecast_components gives
    # the SEASON_HOURS that follow the data (zeros or ones when there is no season).
    nobs = y.size
    season = np.asarray(res.forecast_components(SEASON_HOURS)["seasonal"], dtype=float)
    in_sample = season[(np.arange(nobs) - nobs) % SEASON_HOURS]
    multiplicative = res.model.method.startswith("mul")
    adjusted = y / in_sample if multiplicative else y - in_sample
    level, errors = adjusted[0], np.empty(nobs - 1)
    for i, x in enumerate(adjusted[1:]):  # the SES as statsmodels fits it: first level y[0]
        errors[i] = x - level
        level += smoothing * errors[i]
    scale = season[np.arange(steps) % SEASON_HOURS] if multiplicative else np.ones(steps)
    return point, smoothing, float(np.mean(errors**2)), scale


def _ses_sd(weights: np.ndarray, scale: np.ndarray, smoothing: float, sigma2: float) -> np.ndarray:
    """Standard deviation of ``weights @ errors`` for the SES's h-step errors, ``(n,)``.

    The error at hour h is ``scale[h] * (e[h] + smoothing * sum(e[j] for j < h))`` with
    independent innovations ``e`` of variance `sigma2`; so ``e[j]`` weighs ``A[:, j] +
    smoothing * sum(A[:, h] for h > j)``, with ``A = weights * scale``. `weights` has shape
    ``(n, steps)``: the identity gives each hour's own error.
    """
    a = weights * scale[None, :]
    later = np.cumsum(a[:, ::-1], axis=1)[:, ::-1] - a
    return np.asarray(np.sqrt(sigma2 * np.sum((a + smoothing * later) ** 2, axis=1)))


@functools.lru_cache(maxsize=4)
def _inflow_weights(steps: int, points_per_hour: int) -> np.ndarray:
    """``W`` with ``W @ hourly_rate`` the spend from now to each grid point, ``(n_h, steps)``.

    Grid point ``k`` (1-based) lies in hour ``(k - 1) // points_per_hour``; the hours before it
    count whole, its own by the part elapsed.
    """
    k = np.arange(1, steps * points_per_hour + 1)
    hour, part = (k - 1) // points_per_hour, ((k - 1) % points_per_hour + 1) / points_per_hour
    h = np.arange(steps)
    return np.where(
        h[None, :] < hour[:, None], 1.0, np.where(h[None, :] == hour[:, None], part[:, None], 0.0)
    )


def _one_series(
    model: str,
    y: np.ndarray,
    steps: int,
    points_per_hour: int,
    carry: bool,
    interval: float,
    repetitions: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Point and band on the grid, ``(steps * points_per_hour,)`` each, of one hourly series.

    `carry`: `y` is a rate per hour and the result is the spend from now (to be added to the
    rolling spend); otherwise `y` is the rolling spend and the result its forecast, read
    linearly between the hourly forecasts from the newest value.
    """
    from scipy.stats import norm

    alpha = (1.0 - interval) / 2
    w = _inflow_weights(steps, points_per_hour) if carry else np.eye(steps)
    if model == "ETS":
        point, paths = _fit_ets(y, steps, repetitions, rng)
        if carry:  # spend never falls: a negative rate forecast counts as none
            point, paths = np.maximum(point, 0.0), np.maximum(paths, 0.0)
        point = w @ point
        lower, upper = np.quantile(w @ paths, [alpha, 1.0 - alpha], axis=1)
    elif model == "Theta":
        point, smoothing, sigma2, scale = _fit_theta(y, steps)
        if carry:
            point = np.maximum(point, 0.0)
        point = w @ point
        sd = float(norm.ppf(1.0 - alpha)) * _ses_sd(w, scale, smoothing, sigma2)
        lower, upper = point - sd, point + sd
        if carry:
            lower = np.maximum(lower, 0.0)
    else:
        raise ValueError(f"`model` must be one of {list(MODELS)}, got {model!r}")
    lower, upper = np.minimum(lower, point), np.maximum(upper, point)
    if carry:
        return point, lower, upper
    lead = np.arange(0, steps + 1) * points_per_hour
    grid = np.arange(1, steps * points_per_hour + 1)

    def read(hourly: np.ndarray) -> np.ndarray:
        return np.asarray(np.interp(grid, lead, np.concatenate([[y[-1]], hourly])))

    return read(point), read(lower), read(upper)


def reference_forecast(
    model: str,
    spend: np.ndarray,
    rate: np.ndarray | None,
    n_h: int,
    step_seconds: float,
    *,
    interval: float = 0.9,
    window_seconds: float = 86400.0,
    columns: np.ndarray | None = None,
    repetitions: int = 500,
    rng: np.random.Generator | None = None,
    on_skip: Any = None,
) -> Series:
    """Forecast the rolling spend of every column with `model`, one statsmodels fit per series.

    Parameters
    ----------
    model : {"ETS", "Theta"}
    spend : array, shape (n_t, n_series)
        The rolling sums (e.g. 24-hour spend) on a regular grid, oldest first; the last row is
        the run's now.
    rate : array, shape (n_t, n_series), optional
        The rate per hour whose rolling sums `spend` are. Given, the hourly rate is forecast
        and the sums carried forward from it; otherwise the hourly sums are forecast.
    n_h : int
        Grid points to forecast: a whole number of hours.
    step_seconds : float
        Grid spacing; an hour must be a whole number of points.
    interval : float
        Central coverage of the band.
    window_seconds : float
        Length of the rolling window of `spend`.
    columns : array of int, optional
        Only these columns are forecast (default: all); the others are NaN.
    repetitions : int
        ETS's simulated paths.
    rng : numpy Generator, optional
        For ETS's simulations.
    on_skip : callable, optional
        Called ``on_skip(column, reason)`` for a series that could not be forecast.

    Returns
    -------
    Series
        Point and band ``(n_h, n_series)``: NaN where not forecast.
    """
    pph = round(HOUR / step_seconds)
    if pph < 1 or abs(pph * step_seconds - HOUR) > 1e-6 or n_h % pph:
        raise ValueError(
            f"an hour must be whole grid steps and `n_h` whole hours, got step_seconds="
            f"{step_seconds} and n_h={n_h}"
        )
    steps = n_h // pph
    rng = np.random.default_rng(0) if rng is None else rng
    spend = np.asarray(spend, dtype=float)
    n_t, n_s = spend.shape
    out = Series(
        np.full((n_h, n_s), np.nan),
        np.full((n_h, n_s), np.nan),
        np.full((n_h, n_s), np.nan),
        np.zeros(n_s, dtype=bool),
    )
    carry = rate is not None
    if carry:
        rate = np.asarray(rate, dtype=float)
        hourly = _hourly(rate, pph, mean=True)
        # What leaves the window: the known spend from `window_seconds` ago, read from the rate.
        n_win = round(window_seconds / step_seconds)
        past = rate[n_t - n_win : n_t - n_win + n_h] * (step_seconds / HOUR)
        outflow = np.cumsum(np.where(np.isfinite(past), past, 0.0), axis=0)
    else:
        hourly = _hourly(spend, pph, mean=False)
    from statsmodels.tools.sm_exceptions import ConvergenceWarning

    for j in range(n_s) if columns is None else columns:
        y = hourly[:, j]
        if not np.isfinite(y).all() or not np.isfinite(spend[-1, j]):
            reason = "gaps in the history"
        elif y.size < 2 * SEASON_HOURS + 2:
            reason = f"history too short ({y.size} hours)"
        else:
            reason = None
        if reason is None:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                try:
                    v, lo, hi = _one_series(model, y, steps, pph, carry, interval, repetitions, rng)
                except (ValueError, np.linalg.LinAlgError, ZeroDivisionError) as e:
                    reason = f"fit failed: {type(e).__name__}: {e}"
            if reason is None and any(issubclass(w.category, ConvergenceWarning) for w in caught):
                reason = "ConvergenceWarning"
            elif reason is None and not (np.isfinite(v).all() and np.isfinite(lo).all()):
                reason = "non-finite forecast"
        if reason is not None:
            if on_skip is not None:
                on_skip(int(j), reason)
            continue
        if carry:
            base = spend[-1, j] - outflow[:, j]
            v, lo, hi = base + v, base + lo, base + hi
        out.value[:, j], out.lower[:, j], out.upper[:, j] = v, lo, hi
        out.ok[j] = True
    return out


@dataclass
class SeedCase:
    """What one seed of the forecast bench leaves for the comparison."""

    seed: int
    times: np.ndarray
    """Shape ``(n_t,)``: epoch seconds of the grid."""
    spend: np.ndarray
    """Shape ``(n_t, n_s)``: the rolling 24-hour spend."""
    rate: np.ndarray | None
    """Shape ``(n_t, n_s)``: the spend rate in $/hour, or None (``--mode sums``)."""
    groups: np.ndarray
    """Shape ``(n_s,)``: ``steady``, ``crossing`` or ``under``."""
    crossing: np.ndarray
    """Shape ``(n_s,)``: the breach time T (epoch seconds; inf if none in the window)."""
    already: np.ndarray
    """Shape ``(n_s,)``, bool: over budget when the window opens."""
    eval_times: np.ndarray
    """The hourly runs."""
    history: int
    """Grid points of history each run sees."""
    warned: dict[float, np.ndarray]
    """The product's breach countdown at each run, ``(n_s,)``."""
    product: dict[float, Forecast]
    """The product's forecast at the sampled runs."""


def warned_since(
    warned: Mapping[float, np.ndarray], j: int, runs: Sequence[float], until: float
) -> float:
    """The earliest of `runs` (ascending, all before `until`) from which series `j` had a
    warning (a finite countdown in ``warned[run]``) at every run; `until` if the last had none.
    ``until - warned_since(...)`` is the warning's lead time."""
    since = until
    for te in reversed(runs):
        if not np.isfinite(warned[te][j]):
            break
        since = te
    return since


def _by_group() -> dict[str, list[float]]:
    return {"steady": [], "drifting": []}


@dataclass
class BreachFigures:
    """What the forecast bench counts of a forecaster, accumulated over seeds: crossing
    drifters warned and their breach-time errors, false warnings, MAE beside the seasonal-naive
    one, interval coverage (the product's :class:`bench.forecast_bench.Tally` adds its own)."""

    drifting: int = 0
    detected: int = 0
    errors_hours: list[float] = field(default_factory=list)
    missed_runs: int = 0
    steady: int = 0
    false_steady: int = 0
    under: int = 0
    false_under: int = 0
    false_runs: int = 0
    runs_quiet: int = 0
    mae: dict[str, list[float]] = field(default_factory=_by_group)
    mae_naive: dict[str, list[float]] = field(default_factory=_by_group)
    covered: dict[str, dict[float, list[bool]]] = field(default_factory=dict)
    seconds: float = 0.0


@dataclass
class Figures(BreachFigures):
    """One reference forecaster's figures, accumulated over seeds."""

    fits: int = 0
    skips: list[Skip] = field(default_factory=list)


@dataclass
class Comparison:
    """Collects the bench's seeds, then fits the reference forecasters and reports.

    ``record_run`` and ``add_seed`` are called by :func:`bench.forecast_bench.run_seed`;
    ``report`` does the fitting, after the product's figures are printed.
    """

    budget: float
    lead_hours: float
    error_hours: float
    every_hours: int = 10
    min_duration_seconds: float = 1800.0
    horizon_seconds: float = 86400.0
    interval: float = 0.9
    coverage_leads_hours: tuple[float, ...] = (1.0, 6.0, 24.0)
    repetitions: int = 500
    cases: list[SeedCase] = field(default_factory=list)
    _runs: dict[float, Forecast] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.every_hours < 1:
            raise ValueError(f"`every_hours` must be at least 1, got {self.every_hours}")
        try:
            import statsmodels  # noqa: F401
        except ModuleNotFoundError as e:
            raise ModuleNotFoundError(
                "the reference forecasters need statsmodels: pip install -e '.[reference]' "
                "(make installs it), or skip them with --no-reference"
            ) from e

    def record_run(self, run_time: float, fc: Forecast) -> None:
        """Keep the product's forecast of one run (until :meth:`add_seed`)."""
        self._runs[float(run_time)] = fc

    def add_seed(
        self,
        seed: int,
        times: np.ndarray,
        spend: np.ndarray,
        rate: np.ndarray | None,
        groups: np.ndarray,
        crossing: np.ndarray,
        already: np.ndarray,
        eval_times: np.ndarray,
        history: int,
        warned: dict[float, np.ndarray],
    ) -> None:
        """Keep one seed's data, and the product's forecasts at the sampled runs."""
        sampled = {float(te) for te in eval_times[:: self.every_hours]}
        product = {te: fc for te, fc in self._runs.items() if te in sampled}
        self._runs = {}
        self.cases.append(
            SeedCase(
                seed,
                times,
                spend,
                rate,
                groups,
                crossing,
                already,
                eval_times,
                history,
                dict(warned),
                product,
            )
        )

    def _window_hours(self) -> float:
        """Hours before a crossing whose runs the detection and timing figures read."""
        return max(self.error_hours, self.lead_hours + 1.0)

    def evaluate(self) -> dict[str, Figures]:
        """Fit the references on every seed; the figures of ``product``, ``ETS`` and ``Theta``."""
        figures = {name: Figures() for name in ("product", *MODELS)}
        for f in figures.values():
            f.covered = {
                g: {h: [] for h in self.coverage_leads_hours} for g in ("steady", "drifting")
            }
        rng = np.random.default_rng(20240101)
        # One BLAS thread: the fits' small matrices gain nothing from more, and on a busy
        # machine the threads' waiting made each fit several times slower.
        with threadpool_limits(limits=1):
            for case in self.cases:
                self._evaluate_seed(case, figures, rng)
        return figures

    def _evaluate_seed(
        self, case: SeedCase, figures: dict[str, Figures], rng: np.random.Generator
    ) -> None:
        times, spend = case.times, case.spend
        step = float(times[1] - times[0])
        n_h = math.ceil(self.horizon_seconds / step - 1e-9)
        per_day = round(86400.0 / step)
        n_s = spend.shape[1]
        eval_start, eval_end = float(case.eval_times[0]), float(case.eval_times[-1])
        sampled = [float(te) for te in case.eval_times[:: self.every_hours]]
        drifters = [
            j
            for j in range(n_s)
            if case.groups[j] == "crossing"
            and not case.already[j]
            and eval_start + self.lead_hours * HOUR <= case.crossing[j] <= eval_end + HOUR
        ]
        window = self._window_hours() * HOUR
        needs: dict[float, set[int]] = {te: set(range(n_s)) for te in sampled}
        for j in drifters:
            for te in case.eval_times:
                if case.crossing[j] - window <= te < case.crossing[j]:
                    needs.setdefault(float(te), set()).add(j)
        template = next(iter(case.product.values()))
        drifting = case.groups != "steady"
        warned: dict[str, dict[float, np.ndarray]] = {m: {} for m in MODELS}
        for te in sorted(needs):
            n = int(np.searchsorted(times, te)) + 1
            lo = n - case.history
            columns = np.array(sorted(needs[te]))
            actual = spend[n : n + n_h]
            naive = spend[n - per_day : n - per_day + n_h]
            for model in MODELS:
                f = figures[model]
                started = time.perf_counter()
                fc = reference_forecast(
                    model,
                    spend[lo:n],
                    None if case.rate is None else case.rate[lo:n],
                    n_h,
                    step,
                    interval=self.interval,
                    columns=columns,
                    repetitions=self.repetitions,
                    rng=rng,
                    on_skip=lambda j, why, f=f, m=model, te=te: f.skips.append(
                        Skip(m, case.seed, j, te, why)
                    ),
                )
                f.seconds += time.perf_counter() - started
                f.fits += columns.size
                as_forecast = dataclasses.replace(
                    template,
                    times=te + step * np.arange(1, n_h + 1),
                    value=fc.value,
                    lower=fc.lower,
                    upper=fc.upper,
                    valid=fc.ok,
                    reason=[None if ok else "reference skipped" for ok in fc.ok],
                    now=te,
                    last_value=spend[n - 1],
                    guard=None,
                    held_guard=None,
                )
                warned[model][te] = breach_seconds(
                    as_forecast,
                    threshold=self.budget,
                    min_duration_seconds=self.min_duration_seconds,
                )
                if te in case.product:
                    self._add_errors(
                        f,
                        (fc.value, fc.lower, fc.upper),
                        fc.ok,
                        actual,
                        naive,
                        step,
                        drifting,
                        case.already,
                    )
            if te in case.product:
                p = case.product[te]
                self._add_errors(
                    figures["product"],
                    (p.value, p.lower, p.upper),
                    p.valid,
                    actual,
                    naive,
                    step,
                    drifting,
                    case.already,
                )
        warned["product"] = case.warned
        for name, f in figures.items():
            self._add_breaches(f, case, warned[name], drifters, sampled, spend)

    def _add_errors(
        self,
        f: Figures,
        band: tuple[np.ndarray, np.ndarray, np.ndarray],
        ok: np.ndarray,
        actual: np.ndarray,
        naive: np.ndarray,
        step: float,
        drifting: np.ndarray,
        already: np.ndarray,
    ) -> None:
        """MAE, seasonal-naive MAE and band coverage of one run, as the bench counts them;
        `band` is the point forecast, lower and upper edges, ``(n_h, n_s)`` each."""
        value, lower, upper = band
        for group, mask in (("steady", ~drifting), ("drifting", drifting & ~already)):
            cols = mask & ok
            if not cols.any():
                continue
            f.mae[group].append(float(np.nanmean(np.abs(value[:, cols] - actual[:, cols]))))
            f.mae_naive[group].append(float(np.nanmean(np.abs(naive[:, cols] - actual[:, cols]))))
            for h in self.coverage_leads_hours:
                i = round(h * HOUR / step) - 1
                inside = (lower[i] <= actual[i]) & (actual[i] <= upper[i])
                f.covered[group][h].extend(inside[cols].tolist())

    def _add_breaches(
        self,
        f: Figures,
        case: SeedCase,
        warned: dict[float, np.ndarray],
        drifters: list[int],
        sampled: list[float],
        spend: np.ndarray,
    ) -> None:
        """Detection and timing of the crossing drifters; false warnings at the sampled runs."""
        window = self._window_hours() * HOUR
        for j in drifters:
            cross = float(case.crossing[j])
            before = [float(te) for te in case.eval_times if cross - window <= te < cross]
            f.drifting += 1
            lead = cross - warned_since(warned, j, before, cross)
            f.detected += int(lead / HOUR >= self.lead_hours)
            for te in before:
                if cross - te <= self.error_hours * HOUR:
                    if np.isfinite(warned[te][j]):
                        f.errors_hours.append(abs(te + warned[te][j] - cross) / HOUR)
                    else:
                        f.errors_hours.append(math.inf)
                        f.missed_runs += 1
        for j in range(spend.shape[1]):
            if case.groups[j] == "crossing" or case.already[j] or np.isfinite(case.crossing[j]):
                continue
            false = int(any(np.isfinite(warned[te][j]) for te in sampled))
            if case.groups[j] == "under":
                f.under += 1
                f.false_under += false
            else:
                f.steady += 1
                f.false_steady += false
        for te in sampled:
            n = int(np.searchsorted(case.times, te)) + 1
            quiet = (case.groups != "crossing") & (spend[n - 1] < self.budget)
            f.runs_quiet += int(quiet.sum())
            f.false_runs += int((np.isfinite(warned[te]) & quiet).sum())

    def report(self, product_seconds_per_series: float | None = None) -> str:
        """Fit the references and return the section: the product's figure beside each."""
        started = time.perf_counter()
        figures = self.evaluate()
        names = ("product", *MODELS)
        mode = "sums" if self.cases and self.cases[0].rate is None else "rate"
        n_sampled = sum(len(c.eval_times[:: self.every_hours]) for c in self.cases)

        def row(label: str, cell: Any, target: str = "") -> tuple[str, list[str], str]:
            return label, [cell(figures[n]) for n in names], target

        def errors(f: Figures) -> np.ndarray:
            return np.array(f.errors_hours) if f.errors_hours else np.array([np.nan])

        def timing(f: Figures) -> str:
            e = errors(f)
            finite = e[np.isfinite(e)]
            mean = float(np.mean(finite)) if finite.size else math.nan
            p90 = float(np.quantile(e, 0.9, method="higher"))
            return f"{mean:.2f} / {p90:.2f} / {np.max(e):.2f}"

        def ratio(group: str) -> Any:
            return lambda f: (
                f"{np.nanmean(f.mae[group]) / np.nanmean(f.mae_naive[group]):.2f}"
                if f.mae[group]
                else "-"
            )

        def coverage(group: str) -> Any:
            return lambda f: " / ".join(
                f"{100 * np.mean(f.covered[group][h]):.0f}" if f.covered[group][h] else "-"
                for h in self.coverage_leads_hours
            )

        def seconds(f: Figures) -> str:
            if f.fits:
                return f"{1000 * f.seconds / f.fits:.1f} ms"
            if product_seconds_per_series is not None:
                return f"{1000 * product_seconds_per_series:.1f} ms"
            return "-"

        rows = [
            row(
                f"crossing drifters warned >= {self.lead_hours:g} h ahead, persisting",
                lambda f: f"{f.detected}/{f.drifting}",
                "all",
            ),
            row(
                f"breach-time error, h, runs <= {self.error_hours:g} h before (mean/p90/max)",
                timing,
                "< 1",
            ),
            row(
                "  runs in that window timed within 1 h",
                lambda f: f"{int(np.sum(errors(f) < 1.0))}/{len(f.errors_hours)}",
                "all",
            ),
            row("  runs in that window without a warning", lambda f: f"{f.missed_runs}", "0"),
            row(
                "steady tenants ever warned (sampled runs)",
                lambda f: f"{f.false_steady}/{f.steady}",
                "0",
            ),
            row(
                "sub-budget drifters ever warned (sampled runs)",
                lambda f: f"{f.false_under}/{f.under}",
                "0",
            ),
            row(
                "  sampled runs of those two groups with a warning",
                lambda f: f"{f.false_runs}/{f.runs_quiet}",
                "0",
            ),
            row("MAE / seasonal-naive MAE, steady", ratio("steady"), "< 1"),
            row("MAE / seasonal-naive MAE, drifting", ratio("drifting"), "< 1"),
            row("90 % band coverage at 1 / 6 / 24 h, steady, %", coverage("steady"), "~90"),
            row("90 % band coverage at 1 / 6 / 24 h, drifting, %", coverage("drifting"), ""),
            row(
                "series skipped (fit failed or did not converge)",
                lambda f: f"{len(f.skips)}/{f.fits}" if f.fits else "-",
                "",
            ),
            row("forecast time per series and run", seconds, ""),
        ]
        width = max(len(r[0]) for r in rows)
        widths = [max(len(n), *(len(r[1][i]) for r in rows)) for i, n in enumerate(names)]
        head = "  ".join(f"{n:<{w}}" for n, w in zip(names, widths, strict=True))
        fitted_on = (
            "the hourly spend rate, the rolling spend carried forward as the product does"
            if mode == "rate"
            else "the hourly rolling spend"
        )
        lines = [
            "reference forecasters (statsmodels): ETS (damped additive trend, daily season) and "
            "Theta,",
            f"fitted per tenant on {fitted_on};",
            f"every tenant at every {self.every_hours}th hourly run ({n_sampled} runs), each "
            f"crossing drifter at every run in the {self._window_hours():g} h before its crossing;",
            "the product's figures are on the same runs",
            f"{'figure':<{width}}  {head}  target",
            "-" * (width + sum(widths) + 2 * len(widths) + 8),
        ]
        lines += [
            f"{label:<{width}}  "
            + "  ".join(f"{c:<{w}}" for c, w in zip(cells, widths, strict=True))
            + f"  {target}"
            for label, cells, target in rows
        ]
        skips = [s for n in MODELS for s in figures[n].skips]
        if skips:
            counts = Counter(f"{s.model}: {s.reason.split(':')[0]}" for s in skips)
            lines.append("skipped: " + ", ".join(f"{k} x{v}" for k, v in sorted(counts.items())))
        lines.append(f"(reference: {time.perf_counter() - started:.0f} s)")
        return "\n".join(lines)
