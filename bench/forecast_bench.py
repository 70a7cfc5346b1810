"""Benchmark of forecasts: budget breaches of multi-tenant AI spend, then the forecast zoo.

Run: ``python -m bench.forecast_bench [--seeds 1 2 3 4 5 6 7] [--tenants 30] [--mode rate]``;
``--zoo`` runs the zoo alone, ``--cases budget,disk_linear,...`` the cases named (``budget`` is
the section below; the others are :mod:`bench.forecast_zoo`'s generators), ``--json PATH``
writes the figures.

The zoo (:mod:`bench.forecast_zoo`, scored by :mod:`bench.forecast_zoo.judge`): capacity
gauges, a ratio towards a floor, a step, a weekly series, and rolling spend written every way
and in harder worlds, each with tune and measure seeds, the product beside ETS and Theta.

The budget section: for every seed, :func:`anomaly_lab.synth.generate` draws ``--tenants`` tenants. Each tenant's
rolling 24-hour spend, ``increase(processaudit_ai_cost_usd_total[1d])``, and its spend rate,
``rate(processaudit_ai_cost_usd_total[15m]) * 3600`` in $/hour, are computed here from the
counter exactly as Prometheus would serve them. The tenants fall in three groups:

* **crossing drifters** (a third): the spend rate grows linearly by ``G`` in [50 %, 150 %]
  over ``D`` in [1, 3] days and then stays there (a ``trend_drift`` followed by a
  ``level_shift``), with ``G`` high enough that the rolling spend ends at least 10 % over the
  $100 budget, and the drift placed so that the rolling spend first reaches $100 at a time
  ``T`` drawn inside the evaluation window;
* **sub-budget drifters** (a sixth): the same kind of drift, but the rolling spend stays
  under $90 - a climb that must not be called a breach;
* **steady** tenants (the rest): daily and weekly swings only.

The window (two days of hourly runs, 24 h horizon) starts on another weekday and hour for
every seed, so weekend dips and Monday climbs are part of the test. Each run forecasts from the
preceding ``--lookback-days`` only (what the scheduled job sees).

Definitions (the issue's targets in brackets):

* breach time ``T``: the first time the actual rolling spend reaches $100 and stays there for
  30 minutes - the event :func:`anomaly.models.forecast.breach_seconds` counts down to (a crossing
  must last ``min_duration_seconds``); ``--truth touch`` takes the first point over $100 instead;
* detected: a warning (a finite breach countdown) at least ``--lead`` hours before ``T`` that
  persists at every hourly run until ``T`` [every crossing drifter];
* breach-time error: at every run in the ``--error-window`` hours before ``T``,
  ``|run time + breach countdown - T|``; a run without a warning there counts as a miss and
  makes the maximum infinite [mean, p90 and max under one hour];
* floor: the breach-time error, on the same runs, of a forecaster that knows each tenant's
  expected spend rate (:func:`anomaly_lab.synth.expected_spend_rate`, the drift included) and so
  errs only by the future's noise. Where the rolling spend barely climbs (at night, when the
  rate is close to the rate a day earlier), that noise alone moves the crossing by an hour: no
  forecaster can time every run within an hour, and the floor shows how close this one gets;
* per drifter: the mean of its errors over those runs [under one hour for every crossing
  drifter];
* false breach: a steady or sub-budget tenant warned at any run [none];
* MAE ratio: the forecast's mean absolute error over the next 24 h divided by that of the
  seasonal-naive forecast (the value one day earlier) on the same points; MASE (Hyndman):
  that error scaled by the in-sample mean absolute day-over-day change;
* coverage: the share of actual values inside the 90 % band, at leads of 1, 6 and 24 h.

``--list-cases`` lists every crossing drifter warned late or timed off by an hour or more, and
every tenant warned falsely.

A second section sets recognised forecasters beside the product: statsmodels' ETS and Theta
(:mod:`bench.reference`, installed by the ``bench`` extra), fitted per tenant on the same
history at a sample of the runs; ``--no-reference`` skips it.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from anomaly_lab import synth
from threadpoolctl import threadpool_limits

from anomaly.models.forecast import ForecastParams, breach_seconds, forecast
from bench import forecast_zoo, reference
from bench.forecast_zoo import judge, shapes

HOUR = 3600.0
DAY = 86400.0
STEP = 300
BUDGET = 100.0
HORIZON = DAY
EVAL_DAYS = 2.0
COVERAGE_LEADS_HOURS = (1.0, 6.0, 24.0)
MIN_DURATION = 1800.0  # breach_seconds' default: a crossing counts once it holds 30 min
# Mondays 00:00 UTC would all look alike: every seed's window starts on another weekday.
_BASE_END = 1_704_067_200.0  # 2024-01-01 00:00 UTC, a Monday


@dataclass
class Tally(reference.BreachFigures):
    """The product's figures accumulated over seeds (per-seed lists give the spread)."""

    leads_hours: list[float] = field(default_factory=list)
    floor_hours: list[float] = field(default_factory=list)
    """The same runs' errors of a forecaster that knows the expected spend rate (the floor)."""
    tenant_hours: list[tuple[float, float]] = field(default_factory=list)
    """Per crossing drifter: its mean error over those runs, and the floor's."""
    scale: dict[str, list[float]] = field(default_factory=lambda: {"steady": [], "drifting": []})
    covered: dict[str, dict[float, list[bool]]] = field(
        default_factory=lambda: {
            g: {h: [] for h in COVERAGE_LEADS_HOURS} for g in ("steady", "drifting")
        }
    )
    per_seed: list[tuple[int, int, int, float, float, int]] = field(default_factory=list)
    n_forecasts: int = 0
    cases: list[str] = field(default_factory=list)
    """One line per missed or mistimed crossing and per false warning (``--list-cases``)."""
    comparison: reference.Comparison | None = None
    """The statsmodels reference forecasters beside the product (None with ``--no-reference``)."""


def rolling_day(counter: np.ndarray, step: int = STEP) -> np.ndarray:
    """``increase(counter[1d])`` on the grid: counter now minus counter a day ago (NaN first day)."""
    lag = round(DAY / step)
    out = np.full_like(counter, np.nan)
    out[lag:] = counter[lag:] - counter[:-lag]
    return out


def rate_per_hour(
    counter: np.ndarray, step: int = STEP, window_seconds: float = 900.0
) -> np.ndarray:
    """``rate(counter[15m]) * 3600`` on the grid (NaN for the first points)."""
    lag = max(1, round(window_seconds / step))
    out = np.full_like(counter, np.nan)
    out[lag:] = (counter[lag:] - counter[:-lag]) / (lag * step) * HOUR
    return out


def _drift_factor(times: np.ndarray, starts: np.ndarray, days: float, growth: float) -> np.ndarray:
    """Rate multiplier of a ramp of `growth` over `days` then a plateau; ``(n_starts, n_t)``."""
    frac = np.clip((times[None, :] - starts[:, None]) / (days * DAY), 0.0, 1.0)
    return np.asarray(1.0 + growth * frac)


def _rolling(inc: np.ndarray, n: int) -> np.ndarray:
    """Rolling sums of `n` increments along the last axis (NaN for the first ``n - 1``)."""
    c = np.cumsum(inc, axis=-1)
    out = np.full(inc.shape, np.nan)
    out[..., n:] = c[..., n:] - c[..., :-n]
    return out


def plan_drifts(
    counter: np.ndarray,
    times: np.ndarray,
    groups: np.ndarray,
    window: tuple[float, float],
    rng: np.random.Generator,
) -> tuple[list[synth.Injection], np.ndarray]:
    """Ramp-then-plateau drifts of the spend rate for the drifting tenants.

    `groups` holds per tenant ``"steady"``, ``"crossing"`` or ``"under"``. Returns the
    injections and the updated groups (a tenant no drift fits becomes ``"steady"``).
    """
    names = synth.tenant_names(counter.shape[1])
    per_day = round(DAY / STEP)
    inc = np.diff(counter, axis=0, prepend=counter[:1])  # spend per step (exact)
    injections: list[synth.Injection] = []
    groups = groups.copy()
    candidates = np.arange(window[0] - 5 * DAY, window[1], 900.0)
    for j in np.flatnonzero(groups != "steady"):
        plan = None
        # The plateau's rolling spend is about the clean peak times 1 + G: draw G where the
        # group's condition can hold (over 110 % or under 90 % of the budget).
        peak = float(np.nanmax(_rolling(inc[:, j], per_day)))
        if groups[j] == "crossing":
            g_range = (max(0.5, 1.1 * BUDGET / peak - 1.0), 1.5)
        else:
            g_range = (0.5, min(1.5, 0.9 * BUDGET / peak - 1.0))
        for _ in range(50 if g_range[0] < g_range[1] else 0):
            growth, days = rng.uniform(*g_range), rng.uniform(1.0, 3.0)
            if groups[j] == "crossing":
                target = rng.uniform(*window)
                f = _drift_factor(times, candidates, days, growth)
                spend = _rolling(inc[:, j][None, :] * f, per_day)
                over = np.nan_to_num(spend, nan=0.0) >= BUDGET
                first = np.where(over.any(axis=1), times[np.argmax(over, axis=1)], np.inf)
                best = int(np.argmin(np.abs(first - target)))
                if abs(first[best] - target) > HOUR or np.nanmax(spend[best]) < 1.1 * BUDGET:
                    continue
                plan = (candidates[best], days, growth)
            else:
                start = rng.uniform(window[0] - 2 * DAY, window[1] - 0.5 * DAY)
                f = _drift_factor(times, np.array([start]), days, growth)
                if np.nanmax(_rolling(inc[:, j][None, :] * f, per_day)) >= 0.9 * BUDGET:
                    continue
                plan = (start, days, growth)
            break
        if plan is None:
            groups[j] = "steady"
            continue
        start, days, growth = plan
        ramp_end = start + days * DAY
        injections += [
            synth.Injection(names[j], "ai_cost", "trend_drift", start, ramp_end, growth),
            synth.Injection(names[j], "ai_cost", "level_shift", ramp_end + 1.0, None, growth),
        ]
    return injections, groups


def _when(epoch: float) -> str:
    """Weekday and UTC hour of `epoch`, e.g. ``Sat 14:00``."""
    return time.strftime("%a %H:%M", time.gmtime(epoch))


def first_crossing(
    series: np.ndarray, times: np.ndarray, after: float, lasting_seconds: float = 0.0
) -> float:
    """Epoch seconds of the first point at or after `after` with ``series >= BUDGET`` (held for
    `lasting_seconds`, the rule of :func:`anomaly.models.forecast.breach_seconds`), or inf."""
    return shapes.first_crossing(series, times, after, BUDGET, "above", lasting_seconds)


def floor_crossing(
    counter: np.ndarray, expected: np.ndarray, times: np.ndarray, n: int, lasting_seconds: float
) -> float:
    """The breach time forecast at a run that sees ``counter[:n]`` by one that knows the law.

    `expected` is the spend rate's mean in $/s (:func:`anomaly_lab.synth.expected_spend_rate`): the
    forecast rolling spend is the spend now, plus the expected inflow, minus the known spend that
    leaves the window. Its error is what the future's noise alone causes - the floor of any
    forecaster's error.
    """
    lag = round(DAY / STEP)
    inflow = np.cumsum(expected[n : n + lag] * STEP)
    outflow = counter[n - lag : n - lag + inflow.size] - counter[n - lag - 1]
    path = counter[n - 1] - counter[n - 1 - lag] + inflow - outflow
    future = times[n : n + inflow.size]
    return first_crossing(path, future, future[0], lasting_seconds)


def run_seed(seed: int, args: argparse.Namespace, t: Tally) -> None:
    """Generate one data set, walk the evaluation window hourly, and add the figures to `t`."""
    n_tenants, lead_hours, error_hours = args.tenants, args.lead, args.error_window
    end = _BASE_END + (seed % 7) * DAY + 13 * HOUR * (seed % 3)
    days = 1 + args.lookback_days + EVAL_DAYS + 1  # rolling window + history + window + truth
    eval_start = end - DAY - EVAL_DAYS * DAY
    eval_end = end - DAY
    rng = np.random.default_rng([seed, 99])
    groups = np.full(n_tenants, "steady", dtype=object)
    order = rng.permutation(n_tenants)
    groups[order[: n_tenants // 3]] = "crossing"
    groups[order[n_tenants // 3 : n_tenants // 2]] = "under"

    clean = synth.generate(n_tenants, days=days, step_seconds=STEP, end=end, seed=seed)
    times = np.asarray(clean.timestamps)
    clean_spend = rolling_day(clean.matrix("ai_cost"))
    # Drift only tenants whose own swings stay well under the budget.
    groups[(groups != "steady") & (np.nanmax(clean_spend, axis=0) >= 0.9 * BUDGET)] = "steady"
    window = (eval_start + lead_hours * HOUR + 3 * HOUR, eval_end)
    injections, groups = plan_drifts(clean.matrix("ai_cost"), times, groups, window, rng)
    data = synth.generate(
        n_tenants, days=days, step_seconds=STEP, end=end, seed=seed, injections=injections
    )
    counter = data.matrix("ai_cost")
    spend = rolling_day(counter)
    expected = synth.expected_spend_rate(
        n_tenants, days=days, step_seconds=STEP, end=end, seed=seed, injections=injections
    )
    rate = rate_per_hour(counter)
    drifting = groups != "steady"
    names = synth.tenant_names(n_tenants)
    ramps = {
        i.tenant: (i.start, i.end or math.inf, i.magnitude or 0.0)
        for i in injections
        if i.kind == "trend_drift"
    }

    per_day = round(DAY / STEP)
    history = round(args.lookback_days * DAY / STEP)
    lasting = MIN_DURATION if args.truth == "lasting" else 0.0
    crossing = np.array(
        [first_crossing(spend[:, j], times, eval_start, lasting) for j in range(n_tenants)]
    )
    start_i = int(np.searchsorted(times, eval_start))
    already = spend[start_i] >= BUDGET
    warned: dict[float, np.ndarray] = {}
    eval_times = np.arange(eval_start, eval_end + 1, HOUR)
    for te in eval_times:
        n = int(np.searchsorted(times, te)) + 1
        lo = n - history
        started = time.perf_counter()
        fc = forecast(
            times[lo:n],
            spend[lo:n],
            ForecastParams(HORIZON),
            step_seconds=STEP,
            rate=rate[lo:n] if args.mode == "rate" else None,
        )
        breach = breach_seconds(fc, threshold=BUDGET, min_duration_seconds=MIN_DURATION)
        t.seconds += time.perf_counter() - started
        t.n_forecasts += 1
        warned[te] = breach
        if t.comparison is not None:
            t.comparison.record_run(te, fc)
        actual = spend[n : n + per_day]
        naive = spend[n - per_day : n]
        for group, mask in (("steady", ~drifting), ("drifting", drifting & ~already)):
            cols = mask & fc.valid
            if not cols.any():
                continue  # e.g. every drifter of the seed is over budget already
            t.mae[group].append(float(np.nanmean(np.abs(fc.value[:, cols] - actual[:, cols]))))
            t.mae_naive[group].append(float(np.nanmean(np.abs(naive[:, cols] - actual[:, cols]))))
            past = spend[lo:n, cols]
            t.scale[group].append(float(np.nanmean(np.abs(past[per_day:] - past[:-per_day]))))
            for h in COVERAGE_LEADS_HOURS:
                i = round(h * HOUR / STEP) - 1
                inside = (fc.lower[i] <= actual[i]) & (actual[i] <= fc.upper[i])
                t.covered[group][h].extend(inside[cols].tolist())
        quiet = ~(groups == "crossing") & (spend[n - 1] < BUDGET)
        t.runs_quiet += int(quiet.sum())
        t.false_runs += int((np.isfinite(breach) & quiet).sum())

    seed_detected = seed_drifting = seed_false = 0
    seed_errors: list[float] = []
    for j in range(n_tenants):
        if groups[j] != "crossing":
            if already[j] or np.isfinite(crossing[j]):
                continue  # a steady tenant over budget is not a forecasting question
            false = int(any(np.isfinite(warned[te][j]) for te in eval_times))
            seed_false += false
            if false:
                runs = [te for te in eval_times if np.isfinite(warned[te][j])]
                window_spend = spend[start_i : int(np.searchsorted(times, eval_end)) + 1, j]
                t.cases.append(
                    f"seed {seed} {names[j]} {groups[j]}: warned at {len(runs)} runs "
                    f"(first {_when(runs[0])}, countdown {warned[runs[0]][j] / HOUR:.1f} h), "
                    f"window spend max {np.nanmax(window_spend):.1f}"
                )
            if groups[j] == "under":
                t.under += 1
                t.false_under += false
            else:
                t.steady += 1
                t.false_steady += false
            continue
        cross = crossing[j]
        if already[j] or not eval_start + lead_hours * HOUR <= cross <= eval_end + HOUR:
            continue  # crossing not inside the evaluable part of the window
        seed_drifting += 1
        before = [te for te in eval_times if te < cross]
        lead = (cross - reference.warned_since(warned, j, before, cross)) / HOUR
        t.leads_hours.append(lead)
        seed_detected += int(lead >= lead_hours)
        signed, floor = [], []
        for te in before:
            if cross - te <= error_hours * HOUR:
                n = int(np.searchsorted(times, te)) + 1
                floor.append(
                    (floor_crossing(counter[:, j], expected[:, j], times, n, lasting) - cross)
                    / HOUR
                )
                t.floor_hours.append(abs(floor[-1]))
                if np.isfinite(warned[te][j]):
                    signed.append((te + warned[te][j] - cross) / HOUR)
                    seed_errors.append(abs(signed[-1]))
                else:
                    signed.append(math.inf)
                    seed_errors.append(math.inf)
                    t.missed_runs += 1
        if signed:
            t.tenant_hours.append((float(np.mean(np.abs(signed))), float(np.mean(np.abs(floor)))))
        if lead < lead_hours or any(not abs(e) < 1.0 for e in signed):
            start, ramp_end, growth = ramps[names[j]]
            t.cases.append(
                f"seed {seed} {names[j]} crossing at {_when(cross)}: ramp +{100 * growth:.0f} % "
                f"over {(ramp_end - start) / DAY:.1f} d from {(start - cross) / HOUR:+.0f} h, "
                f"lead {lead:.1f} h, predicted - actual breach (h) from 6 h before: "
                + " ".join(f"{e:+.1f}" for e in signed)
                + " (floor "
                + " ".join(f"{e:+.1f}" for e in floor)
                + ")"
            )
    t.drifting += seed_drifting
    t.detected += seed_detected
    t.errors_hours += seed_errors
    finite = [e for e in seed_errors if math.isfinite(e)]
    t.per_seed.append(
        (
            seed,
            seed_detected,
            seed_drifting,
            float(np.mean(finite)) if finite else math.nan,
            max(seed_errors) if seed_errors else math.nan,
            seed_false,
        )
    )
    if t.comparison is not None:
        t.comparison.add_seed(
            seed,
            times,
            spend,
            rate if args.mode == "rate" else None,
            groups,
            crossing,
            already,
            eval_times,
            history,
            warned,
        )


def report(t: Tally, args: argparse.Namespace) -> str:
    """A readable table of the figures."""
    errors = np.array(t.errors_hours) if t.errors_hours else np.array([np.nan])
    finite = errors[np.isfinite(errors)] if np.isfinite(errors).any() else np.array([np.nan])
    leads = np.array(t.leads_hours) if t.leads_hours else np.array([np.nan])

    def ratio(group: str) -> tuple[float, float]:
        mae = float(np.nanmean(t.mae[group]))
        return mae / float(np.nanmean(t.mae_naive[group])), mae / float(np.nanmean(t.scale[group]))

    def coverage(group: str) -> str:
        return " / ".join(f"{100 * np.mean(t.covered[group][h]):.0f}" for h in COVERAGE_LEADS_HOURS)

    rel_s, mase_s = ratio("steady")
    rel_d, mase_d = ratio("drifting")
    p90 = float(np.quantile(errors, 0.9, method="higher")) if errors.size else math.nan
    floor = np.array(t.floor_hours) if t.floor_hours else np.array([np.nan])
    floor_p90 = float(np.quantile(floor, 0.9, method="higher"))
    per_tenant = np.array(t.tenant_hours) if t.tenant_hours else np.full((1, 2), np.nan)
    rows = [
        (
            "seeds / mode / breach time",
            " ".join(map(str, args.seeds)) + f" / {args.mode} / {args.truth}",
            "",
        ),
        ("tenants per seed / lookback", f"{args.tenants} / {args.lookback_days:g} d", ""),
        (
            f"crossing drifters warned >= {args.lead:g} h ahead, persisting",
            f"{t.detected}/{t.drifting} ({100 * t.detected / max(t.drifting, 1):.0f} %)",
            "all",
        ),
        (
            "  warning lead time, h (min / median)",
            f"{np.nanmin(leads):.1f} / {np.nanmedian(leads):.1f}",
            "hours",
        ),
        (
            f"breach-time error, h, runs <= {args.error_window:g} h before (mean / p90 / max)",
            f"{np.mean(finite):.2f} / {p90:.2f} / {np.max(errors):.2f}  (n={errors.size})",
            "< 1",
        ),
        (
            "  runs in that window timed within 1 h",
            f"{int(np.sum(errors < 1.0))}/{errors.size} ({100 * np.mean(errors < 1.0):.0f} %)",
            "all",
        ),
        ("  runs in that window without a warning", f"{t.missed_runs}", "0"),
        (
            "  crossing drifters timed within 1 h on average over those runs",
            f"{int(np.sum(per_tenant[:, 0] < 1.0))}/{len(per_tenant)}"
            f" (worst {np.max(per_tenant[:, 0]):.2f} h)",
            "all",
        ),
        (
            "  floor: the same, knowing the expected rate (mean / p90 / max)",
            f"{np.mean(floor):.2f} / {floor_p90:.2f} / {np.max(floor):.2f}",
            "",
        ),
        (
            "  floor: runs timed within 1 h; drifters within 1 h on average",
            f"{int(np.sum(floor < 1.0))}/{floor.size} ({100 * np.mean(floor < 1.0):.0f} %); "
            f"{int(np.sum(per_tenant[:, 1] < 1.0))}/{len(per_tenant)}"
            f" (worst {np.max(per_tenant[:, 1]):.2f} h)",
            "",
        ),
        (
            "steady tenants ever warned",
            f"{t.false_steady}/{t.steady} ({100 * t.false_steady / max(t.steady, 1):.0f} %)",
            "0",
        ),
        (
            "sub-budget drifters ever warned",
            f"{t.false_under}/{t.under} ({100 * t.false_under / max(t.under, 1):.0f} %)",
            "0",
        ),
        ("  runs of those two groups with a warning", f"{t.false_runs}/{t.runs_quiet}", "0"),
        ("MAE / seasonal-naive MAE, steady", f"{rel_s:.2f}", "< 1"),
        ("MAE / seasonal-naive MAE, drifting", f"{rel_d:.2f}", "< 1"),
        ("MASE (in-sample scaled), steady", f"{mase_s:.2f}", ""),
        ("MASE (in-sample scaled), drifting", f"{mase_d:.2f}", ""),
        ("90 % band coverage at 1 / 6 / 24 h, steady, %", coverage("steady"), "~90"),
        ("90 % band coverage at 1 / 6 / 24 h, drifting, %", coverage("drifting"), ""),
        (
            "forecast time per run (all tenants)",
            f"{1000 * t.seconds / max(t.n_forecasts, 1):.1f} ms",
            "",
        ),
    ]
    width = max(len(r[0]) for r in rows)
    vwidth = max(len(r[1]) for r in rows)
    lines = [f"{'figure':<{width}}  {'value':<{vwidth}}  target", "-" * (width + vwidth + 10)]
    lines += [f"{a:<{width}}  {b:<{vwidth}}  {c}" for a, b, c in rows]
    lines.append("")
    lines.append("per seed: detected/crossing, error mean / max (h), false-warned tenants")
    for seed, det, n, mean, worst, false in t.per_seed:
        lines.append(f"  seed {seed}: {det}/{n}, {mean:.2f} / {worst:.2f}, {false}")
    return "\n".join(lines)


def summary(t: Tally) -> dict[str, Any]:
    """The budget section's headline figures as plain numbers (the ``--json`` record)."""
    errors = np.array(t.errors_hours) if t.errors_hours else np.array([np.nan])
    finite = errors[np.isfinite(errors)]
    return {
        "detected": t.detected,
        "crossing": t.drifting,
        "error_hours": {
            "mean": float(finite.mean()) if finite.size else math.nan,
            "p90": float(np.quantile(errors, 0.9, method="higher")),
            "max": float(errors.max()),
            "n": len(t.errors_hours),
        },
        "false_steady": [t.false_steady, t.steady],
        "false_under": [t.false_under, t.under],
        "coverage_percent": {
            g: {str(h): 100 * float(np.mean(v)) if v else math.nan for h, v in c.items()}
            for g, c in t.covered.items()
        },
    }


def run_budget(args: argparse.Namespace) -> dict[str, Any]:
    """The budget section: run, print, and return its headline figures."""
    tally = Tally()
    if not args.no_reference:
        tally.comparison = reference.Comparison(
            budget=BUDGET,
            lead_hours=args.lead,
            error_hours=args.error_window,
            every_hours=args.reference_every,
            min_duration_seconds=MIN_DURATION,
            horizon_seconds=HORIZON,
            coverage_leads_hours=COVERAGE_LEADS_HOURS,
        )
    started = time.perf_counter()
    for seed in args.seeds:
        run_seed(seed, args, tally)
    print("Budget-breach forecasts: rolling 24 h AI spend vs $100, 24 h horizon, hourly runs")
    print(report(tally, args))
    if args.list_cases:
        print("\ncases (UTC):")
        print("\n".join(f"  {c}" for c in tally.cases) or "  none")
    print(f"({time.perf_counter() - started:.0f} s)")
    if tally.comparison is not None:
        print()
        print(tally.comparison.report(tally.seconds / max(tally.n_forecasts, 1) / args.tenants))
    return summary(tally)


def _picked(parser: argparse.ArgumentParser, args: argparse.Namespace) -> tuple[bool, list[str]]:
    """Whether to run the budget section, and the zoo generators to run, from the CLI."""
    zoo = [g.name for g in forecast_zoo.generators()]
    if args.cases is None:
        return not args.zoo, zoo
    names = [n.strip() for n in args.cases.split(",") if n.strip()]
    unknown = [n for n in names if n not in ("budget", *zoo)]
    if unknown or not names:
        parser.error(f"--cases must name cases among budget, {', '.join(zoo)}; got {args.cases!r}")
    return "budget" in names and not args.zoo, [n for n in zoo if n in names]


def main(argv: list[str] | None = None) -> int:
    """Run the budget section and the zoo (or the cases picked) and print the figures; 0."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5, 6, 7])
    parser.add_argument("--tenants", type=int, default=30)
    parser.add_argument("--lookback-days", type=float, default=10.0)
    parser.add_argument("--lead", type=float, default=3.0, help="hours of warning required")
    parser.add_argument("--error-window", type=float, default=6.0, help="hours before T")
    parser.add_argument(
        "--mode",
        choices=("rate", "sums"),
        default="rate",
        help="forecast the rolling spend from the spend rate, or from the sums alone",
    )
    parser.add_argument(
        "--truth",
        choices=("lasting", "touch"),
        default="lasting",
        help="the breach time T: the first crossing that holds 30 min, like the countdown's "
        "(default), or the first point over the budget",
    )
    parser.add_argument(
        "--list-cases",
        action="store_true",
        help="list missed or mistimed crossings and false warnings (the zoo's: tune seeds)",
    )
    parser.add_argument(
        "--no-reference",
        action="store_true",
        help="skip the statsmodels reference forecasters (ETS, Theta) for a quicker run",
    )
    parser.add_argument(
        "--reference-every",
        type=int,
        default=10,
        help="budget section: fit the references on every tenant at every Nth hourly run "
        "(default 10: the sampled runs fall at varied hours of the day)",
    )
    parser.add_argument("--zoo", action="store_true", help="the forecast zoo only")
    parser.add_argument(
        "--cases",
        metavar="NAME,...",
        help="run only these cases: budget (the section above) and zoo generators",
    )
    parser.add_argument("--json", metavar="PATH", help="write the figures as JSON to PATH")
    args = parser.parse_args(argv)
    with_budget, zoo_names = _picked(parser, args)
    record: dict[str, Any] = {}
    if with_budget:
        record["budget"] = run_budget(args)
    if zoo_names:
        if with_budget:
            print()
        gens = [g for g in forecast_zoo.generators() if g.name in zoo_names]
        settings = judge.Settings(references=() if args.no_reference else reference.MODELS)
        started = time.perf_counter()
        # One BLAS thread, as for the references above: the machine is shared.
        with threadpool_limits(limits=1):
            results = judge.run_zoo(gens, settings)
        print(judge.report(results))
        if args.list_cases:
            print()
            print(judge.list_cases(results))
        print(f"(zoo: {time.perf_counter() - started:.0f} s)")
        record["zoo"] = judge.to_json(results)
    if args.json:
        Path(args.json).write_text(json.dumps(judge.jsonable(record), indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
