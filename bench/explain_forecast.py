"""Why one series of a forecast-zoo case was warned when it was: the case the forecast bench
lists as missed, mistimed or falsely warned, run by run.

Forecasts the series at each of the case's hourly runs exactly as the bench does
(:func:`anomaly.models.forecast.forecast` on the ten days before the run, in the product
configuration chosen, :func:`~anomaly.models.forecast.breach_seconds` for the countdown) and
prints per run: the newest value, the most the truth reaches over the next day, the point
forecast's and the guard's most over the horizon (the guard decides whether a breach is
announced), the held guards' most (a breach announced in the last two hours stays announced
while the point forecast crosses), the countdown, and in rate mode the weight of the added
trend against the scaling one (near 1: growth beside the daily shape; near 0: growth of it).
For a direction ``below`` the least, not the most.

Only tune seeds: a measure seed is refused, so that its cases stay unseen.

    python -m bench.explain_forecast budget_increase 1 org-04
    python -m bench.explain_forecast ratio_floor 2 tenant-3 --plain
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from bench.forecast_zoo import HORIZON_SECONDS, HOUR, LASTING_SECONDS, STEP, generators
from bench.forecast_zoo.judge import product_at, served, variants
from bench.forecast_zoo.shapes import first_crossing
from bench.tune_side import tune_side


def explain_forecast(case_name: str, seed: int, series: str, *, plain: bool) -> int:
    """Print the series' runs; returns the exit status (2 for a case that cannot be shown)."""
    gen = tune_side("case", case_name, {g.name: g for g in generators()}, seed)
    if gen is None:
        return 2
    case = gen.make(seed)
    if series not in case.series:
        print(f"case {case_name} has no series {series!r}; it has {', '.join(case.series)}")
        return 2
    j = case.series.index(series)
    label, mode = variants(case)[-1 if plain else 0]
    rate = None if mode.rate_query is None else served(case, mode.rate_query)
    first = float(case.runs[0])
    cross = first_crossing(
        case.truth[:, j], case.times, first, case.threshold, case.direction, LASTING_SECONDS
    )
    print(f"{case_name} seed {seed} {series}: {case.notes[j]}")
    print(
        f"{label} ({mode.rate_query or 'the query alone'}); threshold {case.threshold:g} "
        f"{case.direction}; truth "
        + (f"crosses at +{(cross - first) / HOUR:.1f} h" if np.isfinite(cross) else "never crosses")
    )
    most = np.nanmax if case.direction == "above" else np.nanmin
    word = "max" if case.direction == "above" else "min"
    print(
        f"{'run':>5} {'now':>9} {'truth ' + word:>10} {'point ' + word:>10} "
        f"{'guard ' + word:>10} {'held ' + word:>10} {'countdown':>10} {'added':>6}"
    )
    n_h = round(HORIZON_SECONDS / STEP)
    for te in case.runs:
        n = int(np.searchsorted(case.times, te)) + 1
        # All of the case's series, as the bench forecasts them: the same numbers to the bit.
        fc, countdowns = product_at(case, mode, rate, n)
        countdown = countdowns[j]
        guard = np.nan if fc.guard is None else most(fc.guard[:, j])
        held = np.nan if fc.held_guard is None else most(fc.held_guard[:, :, j])
        added = np.nan if fc.additive is None else float(fc.additive[j])
        print(
            f"+{(te - first) / HOUR:3.0f} h {case.values[n - 1, j]:9.4g} "
            f"{most(case.truth[n : n + n_h, j]):10.4g} {most(fc.value[:, j]):10.4g} "
            f"{_cell(guard)} {_cell(held)} "
            + (f"{countdown / HOUR:8.1f} h" if np.isfinite(countdown) else f"{'-':>10}")
            + (f" {added:6.2f}" if np.isfinite(added) else "")
        )
    return 0


def _cell(x: float) -> str:
    return f"{x:10.4g}" if np.isfinite(x) else f"{'-':>10}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.explain_forecast", description=__doc__)
    p.add_argument("case", help="a forecast zoo generator (budget_increase, ratio_floor, ...)")
    p.add_argument("seed", type=int)
    p.add_argument("series", help="as the bench lists it (org-04, tenant-3, disk-0, ...)")
    p.add_argument(
        "--plain",
        action="store_true",
        help="rolling sums: the plain config (the mode the job derives) instead of the recipe",
    )
    a = p.parse_args(argv)
    return explain_forecast(a.case, a.seed, a.series, plain=a.plain)


if __name__ == "__main__":
    sys.exit(main())
