"""Runs the forecasters over the zoo's cases, scores them, and prints the tables.

Forecasters, at every run on the ten days before it, as the job calls them:

* **product**: :func:`anomaly.models.forecast.forecast` with ``ForecastParams(24h, window,
  unit)`` and :func:`~anomaly.models.forecast.breach_seconds` (threshold, direction). A
  rolling-sum case runs it twice: **recipe**, configured as the README says (``forecast.rate``:
  the case's recipe rate query, window 1 d, unit 1 h), and **plain config**, the query alone, in
  the mode the job chooses for it (:func:`bench.forecast_zoo.promql.job_mode`; its derived rate
  query served from the same raw samples);
* **ETS** and **Theta** (:mod:`bench.reference`): fitted per series on hourly data, of the
  series itself or, for a rolling sum, of the recipe's rate, the sum carried forward from it.

Figures per case and side (tune seeds, measure seeds), all forecasters on the same runs: every
series at every ``every``-th run, and each breaching series at every run of the
``max(error_hours, lead_hours + 1)`` hours before its breach:

* **breach**: a series whose truth (:attr:`Case.truth`) first crosses, for 30 minutes, between
  ``error_hours`` after the first run and an hour after the last; *missed* unless warned at
  least ``lead_hours`` before it and at every run from then on;
* **breach-time error**: at each run in the ``error_hours`` before a breach, ``|run time +
  countdown - breach time|``; a run without a warning counts as infinite (mean over the finite
  ones; p90 and max over all). Runs where the newest value has crossed already (noise took it
  over before the truth) are left out: every forecaster answers 0 there;
* **false**: a series whose truth and values stay uncrossed until the last run's horizon,
  warned at any of its runs;
* **MASE** (Hyndman): the mean absolute error over the 24 h forecast divided by the in-sample
  mean absolute change of the seasonal-naive forecast (a day back; a week for weekly cases)
  over the run's history; averaged over series and runs;
* **coverage**: the share of values inside the 90 % band at leads of 1, 6 and 24 h.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from anomaly.models.forecast import Forecast, ForecastParams, breach_seconds, forecast
from bench import reference
from bench.forecast_zoo import (
    HISTORY_SECONDS,
    HORIZON_SECONDS,
    HOUR,
    LASTING_SECONDS,
    STEP,
    Case,
    Generator,
)
from bench.forecast_zoo.promql import ForecastMode, job_mode, serve
from bench.forecast_zoo.shapes import crossed, first_crossing

COVERAGE_LEADS_HOURS = (1.0, 6.0, 24.0)
SIDES = ("tune", "measure")


@dataclass
class Figures:
    """One forecaster's figures on one case and side, accumulated over seeds."""

    breaches: int = 0
    missed: int = 0
    quiet: int = 0
    false: int = 0
    errors_hours: list[float] = field(default_factory=list)
    mase: list[float] = field(default_factory=list)
    covered: dict[float, list[bool]] = field(
        default_factory=lambda: {h: [] for h in COVERAGE_LEADS_HOURS}
    )
    fits: int = 0
    skipped: int = 0
    seconds: float = 0.0
    same_as: str | None = None
    """The forecaster whose forecasts these are too (the same rate, in other units)."""
    cases: list[str] = field(default_factory=list)
    """One line per breach missed or timed off by an hour or more, and per false warning."""

    def error(self) -> tuple[float, float, float]:
        """Breach-time error, hours: mean of the finite, p90 and max of all (NaN if none)."""
        if not self.errors_hours:
            return math.nan, math.nan, math.nan
        e = np.array(self.errors_hours)
        finite = e[np.isfinite(e)]
        mean = float(finite.mean()) if finite.size else math.inf
        return mean, float(np.quantile(e, 0.9, method="higher")), float(e.max())

    def coverage(self) -> tuple[float, ...]:
        """Per lead of :data:`COVERAGE_LEADS_HOURS`: the share inside the band, %."""
        return tuple(
            100 * float(np.mean(self.covered[h])) if self.covered[h] else math.nan
            for h in COVERAGE_LEADS_HOURS
        )

    def summary(self) -> dict[str, Any]:
        """The figures as plain numbers (the ``--json`` record)."""
        mean, p90, worst = self.error()
        return {
            "breaches": self.breaches,
            "missed": self.missed,
            "quiet": self.quiet,
            "false": self.false,
            "error_hours": {"mean": mean, "p90": p90, "max": worst, "n": len(self.errors_hours)},
            "mase": float(np.mean(self.mase)) if self.mase else math.nan,
            "coverage_percent": dict(
                zip(map(str, COVERAGE_LEADS_HOURS), self.coverage(), strict=True)
            ),
            "fits": self.fits,
            "skipped": self.skipped,
            "seconds": self.seconds,
        }


@dataclass(frozen=True)
class Settings:
    """How the zoo is judged."""

    every: int = 4
    """Every series is judged at every `every`-th run."""
    lead_hours: float = 3.0
    error_hours: float = 6.0
    references: tuple[str, ...] = reference.MODELS
    repetitions: int = 500
    """ETS's simulated paths."""
    runs: int | None = None
    """Judge only the first `runs` runs (None: all; the tests use fewer)."""

    def __post_init__(self) -> None:
        if self.every < 1:
            raise ValueError(f"`every` must be at least 1, got {self.every}")
        unknown = set(self.references) - set(reference.MODELS)
        if unknown:
            raise ValueError(f"`references` must be among {list(reference.MODELS)}, got {unknown}")


def variants(case: Case) -> list[tuple[str, ForecastMode]]:
    """The product's configurations on `case`: (label, mode)."""
    if case.recipe is None:
        return [("product", job_mode(case.query))]
    return [("product recipe", case.recipe), ("product plain config", job_mode(case.query))]


@dataclass
class _Key:
    """What one case-seed leaves for every forecaster's scoring."""

    case: Case
    runs: np.ndarray
    index: dict[float, int]
    """Per run: the grid points it reads (``values[:n]`` ends at the run)."""
    breach: np.ndarray
    """Per series: the truth's breach time, or NaN if the series is not judged a breach."""
    quiet: np.ndarray
    """Per series, bool: judged for false warnings."""
    sampled: list[float]
    needs: dict[float, np.ndarray]
    """Per run: the series forecast there."""
    over: dict[float, np.ndarray]
    """Per run, ``(n_s,)`` bool: the newest value has crossed already (no forecast to time)."""


def _key(case: Case, s: Settings) -> _Key:
    runs = case.runs if s.runs is None else case.runs[: s.runs]
    times = case.times
    index = {float(te): int(np.searchsorted(times, te)) + 1 for te in runs}
    first, last = float(runs[0]), float(runs[-1])
    n_s = len(case.series)
    cross = np.array(
        [
            first_crossing(
                case.truth[:, j], times, first, case.threshold, case.direction, LASTING_SECONDS
            )
            for j in range(n_s)
        ]
    )
    judged = (times >= first) & (times <= last + HORIZON_SECONDS)
    touched = crossed(np.nan_to_num(case.values[judged], nan=0.0), case.threshold, case.direction)
    breach = np.where(
        (cross >= first + s.error_hours * HOUR) & (cross <= last + HOUR), cross, np.nan
    )
    quiet = (cross > last + HORIZON_SECONDS) & ~touched.any(axis=0)
    sampled = [float(te) for te in runs[:: s.every]]
    window = max(s.error_hours, s.lead_hours + 1.0) * HOUR
    needs: dict[float, set[int]] = {te: set(range(n_s)) for te in sampled}
    for j in np.flatnonzero(np.isfinite(breach)):
        for te in runs:
            if breach[j] - window <= te < breach[j]:
                needs.setdefault(float(te), set()).add(int(j))
    return _Key(
        case,
        runs,
        index,
        breach,
        quiet,
        sampled,
        {te: np.array(sorted(c)) for te, c in sorted(needs.items())},
        {
            te: crossed(np.nan_to_num(case.values[n - 1], nan=0.0), case.threshold, case.direction)
            for te, n in index.items()
        },
    )


def _score_run(
    f: Figures,
    k: _Key,
    te: float,
    value: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    ok: np.ndarray,
) -> None:
    """MASE and coverage of one run's forecast ``(n_h, n_s)`` (series `ok` only)."""
    case, n = k.case, k.index[te]
    n_h = value.shape[0]
    history = round(HISTORY_SECONDS / STEP)
    season = round(case.season_seconds / STEP)
    actual = case.values[n : n + n_h]
    past = case.values[n - history : n]
    with np.errstate(invalid="ignore", divide="ignore"):
        scale = np.nanmean(np.abs(past[season:] - past[:-season]), axis=0)
        mase = np.nanmean(np.abs(value - actual), axis=0) / scale
    for j in np.flatnonzero(ok & np.isfinite(mase)):
        f.mase.append(float(mase[j]))
    for h in COVERAGE_LEADS_HOURS:
        i = round(h * HOUR / STEP) - 1
        inside = (lower[i] <= actual[i]) & (actual[i] <= upper[i])
        f.covered[h].extend(inside[ok & np.isfinite(actual[i])].tolist())


def _score_breaches(f: Figures, k: _Key, warned: dict[float, np.ndarray], s: Settings) -> None:
    """Breaches missed and timed, false warnings, from each run's countdown ``(n_s,)``."""
    window = max(s.error_hours, s.lead_hours + 1.0) * HOUR
    for j in map(int, np.flatnonzero(np.isfinite(k.breach))):
        cross = float(k.breach[j])
        before = [float(te) for te in k.runs if cross - window <= te < cross]
        f.breaches += 1
        missed = (cross - reference.warned_since(warned, j, before, cross)) / HOUR < s.lead_hours
        f.missed += int(missed)
        signed = []
        for te in before:
            if cross - te <= s.error_hours * HOUR and not k.over[te][j]:
                b = warned[te][j]
                signed.append((te + b - cross) / HOUR if np.isfinite(b) else math.inf)
        f.errors_hours += [abs(e) for e in signed]
        if missed or any(not abs(e) < 1.0 for e in signed):
            f.cases.append(
                f"{_who(k, j)}: breach at +{(cross - k.runs[0]) / HOUR:.1f} h"
                + (" missed" if missed else "")
                + ", predicted - true (h) from 6 h before: "
                + " ".join(f"{e:+.1f}" for e in signed)
            )
    for j in map(int, np.flatnonzero(k.quiet)):
        f.quiet += 1
        runs = [te for te in k.sampled if np.isfinite(warned[te][j])]
        f.false += int(bool(runs))
        if runs:
            f.cases.append(
                f"{_who(k, j)}: warned at {len(runs)} of {len(k.sampled)} runs, first at "
                f"+{(runs[0] - k.runs[0]) / HOUR:.0f} h counting down "
                f"{warned[runs[0]][j] / HOUR:.1f} h"
            )


def _who(k: _Key, j: int) -> str:
    return f"seed {k.case.seed} {k.case.series[j]} ({k.case.notes[j]})"


def _product(k: _Key, mode: ForecastMode, rate: np.ndarray | None, s: Settings) -> Figures:
    """The product's figures on one case-seed in `mode` (`rate`: its rate query, served)."""
    case, f = k.case, Figures()
    warned: dict[float, np.ndarray] = {}
    for te in k.needs:
        started = time.perf_counter()
        fc, warned[te] = product_at(case, mode, rate, k.index[te])
        f.seconds += time.perf_counter() - started
        f.fits += len(case.series)
        if te in k.sampled:
            _score_run(f, k, te, fc.value, fc.lower, fc.upper, fc.valid)
    _score_breaches(f, k, warned, s)
    return f


def product_at(
    case: Case, mode: ForecastMode, rate: np.ndarray | None, n: int
) -> tuple[Forecast, np.ndarray]:
    """The product's forecast of every series of `case` in `mode` at the run whose history
    ends at grid index `n` (exclusive; `rate`: its rate query served, or None), as the job
    makes it, and its countdown ``(n_s,)``."""
    lo = n - round(HISTORY_SECONDS / STEP)
    params = ForecastParams(
        HORIZON_SECONDS,
        window_seconds=mode.window_seconds,
        rate_unit_seconds=mode.rate_unit_seconds,
    )
    fc = forecast(
        case.times[lo:n],
        case.values[lo:n],
        params,
        rate=None if rate is None else rate[lo:n],
        step_seconds=STEP,
    )
    countdown = breach_seconds(
        fc,
        threshold=case.threshold,
        direction=case.direction,
        min_duration_seconds=LASTING_SECONDS,
    )
    return fc, countdown


def _reference(k: _Key, model: str, s: Settings, rng: np.random.Generator) -> Figures:
    """A reference forecaster's figures on one case-seed (fitted only where `k` needs it)."""
    case, f = k.case, Figures()
    history = round(HISTORY_SECONDS / STEP)
    n_h = math.ceil(HORIZON_SECONDS / STEP - 1e-9)
    n_s = len(case.series)
    rate = None
    if case.recipe is not None and case.recipe.rate_query is not None:
        rate = served(case, case.recipe.rate_query) * (HOUR / case.recipe.rate_unit_seconds)
    window = case.recipe.window_seconds if case.recipe is not None else HORIZON_SECONDS
    warned: dict[float, np.ndarray] = {}
    for te, cols in k.needs.items():
        n = k.index[te]
        lo = n - history
        started = time.perf_counter()
        out = reference.reference_forecast(
            model,
            case.values[lo:n],
            None if rate is None else rate[lo:n],
            n_h,
            STEP,
            window_seconds=window,
            columns=cols,
            repetitions=s.repetitions,
            rng=rng,
        )
        fc = Forecast(
            te + STEP * np.arange(1, n_h + 1),
            out.value,
            out.lower,
            out.upper,
            out.ok,
            [None if ok else "not fitted" for ok in out.ok],
            te,
            STEP,
            case.values[n - 1].copy(),
            "daily",
        )
        countdown = breach_seconds(
            fc,
            threshold=case.threshold,
            direction=case.direction,
            min_duration_seconds=LASTING_SECONDS,
        )
        f.seconds += time.perf_counter() - started
        f.fits += cols.size
        f.skipped += int(cols.size - out.ok[cols].sum())
        warned[te] = np.where(out.ok, countdown, np.nan) if n_s else countdown
        if te in k.sampled:
            _score_run(f, k, te, out.value, out.lower, out.upper, out.ok)
    _score_breaches(f, k, warned, s)
    return f


def _same_rate(
    a: ForecastMode, rate_a: np.ndarray | None, b: ForecastMode, rate_b: np.ndarray | None
) -> bool:
    """Whether two modes forecast the same: plain both, or the same window and rate per second."""
    if rate_a is None or rate_b is None:
        return rate_a is None and rate_b is None
    return a.window_seconds == b.window_seconds and bool(
        np.allclose(
            rate_a / a.rate_unit_seconds, rate_b / b.rate_unit_seconds, rtol=1e-9, equal_nan=True
        )
    )


def served(case: Case, query: str) -> np.ndarray:
    """`query` served from the case's raw samples."""
    if case.raw is None:
        raise ValueError(f"case {case.name} has no raw samples to serve {query!r} from")
    return serve(query, case.raw, case.times)


def judge_case(case: Case, s: Settings, rng: np.random.Generator) -> dict[str, Figures]:
    """Every forecaster's figures on one case-seed: product variant(s), then the references."""
    k = _key(case, s)
    out: dict[str, Figures] = {}
    done: list[tuple[str, ForecastMode, np.ndarray | None]] = []
    for label, mode in variants(case):
        rate = None if mode.rate_query is None else served(case, mode.rate_query)
        # A rate the same in $/s as one already run gives the same forecast: not run again.
        same = next((d for d in done if _same_rate(d[1], d[2], mode, rate)), None)
        if same is None:
            out[label] = _product(k, mode, rate, s)
            done.append((label, mode, rate))
        else:
            out[label] = dataclasses.replace(out[same[0]], same_as=same[0])
    for model in s.references:
        out[model] = _reference(k, model, s, rng)
    return out


def _add(total: Figures, part: Figures) -> None:
    for name in ("breaches", "missed", "quiet", "false", "fits", "skipped", "seconds"):
        setattr(total, name, getattr(total, name) + getattr(part, name))
    total.same_as = part.same_as
    total.errors_hours += part.errors_hours
    total.cases += part.cases
    total.mase += part.mase
    for h in COVERAGE_LEADS_HOURS:
        total.covered[h] += part.covered[h]


@dataclass
class CaseResult:
    """One generator's figures: per side, per forecaster."""

    generator: Generator
    example: Case
    """The first seed's case (its query, threshold and series notes for the report)."""
    sides: dict[str, dict[str, Figures]]
    seconds: float = 0.0


def run_zoo(
    gens: Iterable[Generator],
    s: Settings,
    *,
    sides: tuple[str, ...] = SIDES,
    progress: Callable[[str], None] | None = None,
) -> list[CaseResult]:
    """Every generator over its seeds of `sides`; one :class:`CaseResult` each."""
    results = []
    for g in gens:
        started = time.perf_counter()
        rng = np.random.default_rng(20240101)
        by_side: dict[str, dict[str, Figures]] = {}
        example = None
        for side in sides:
            totals: dict[str, Figures] = {}
            for seed in g.tune_seeds if side == "tune" else g.measure_seeds:
                case = g.make(seed)
                example = example or case
                for label, f in judge_case(case, s, rng).items():
                    _add(totals.setdefault(label, Figures()), f)
            by_side[side] = totals
        if example is None:
            raise ValueError(f"generator {g.name} has no seeds on sides {sides}")
        results.append(CaseResult(g, example, by_side, time.perf_counter() - started))
        if progress is not None:
            progress(f"{g.name}: {time.perf_counter() - started:.0f} s")
    return results


def _cells(f: Figures) -> list[str]:
    mean, p90, worst = f.error()
    err = "-" if math.isnan(mean) else f"{mean:.2f} / {p90:.2f} / {worst:.2f}"
    mase = f"{np.mean(f.mase):.2f}" if f.mase else "-"
    cover = " / ".join("-" if math.isnan(c) else f"{c:.0f}" for c in f.coverage())
    return [
        f"{f.missed}/{f.breaches}" if f.breaches else "-",
        f"{f.false}/{f.quiet}" if f.quiet else "-",
        err,
        mase,
        cover,
    ]


HEAD = ["missed", "false", "breach error h mean/p90/max", "MASE", "cover 1/6/24 h %"]


def report_case(r: CaseResult) -> str:
    """The compact table of one case: side, forecaster, figures."""
    c = r.example
    lines = [
        f"{r.generator.name}: {r.generator.description}",
        f"  query {c.query}, threshold {c.threshold:g} ({c.direction}), "
        f"{len(c.series)} series per seed; seeds tune "
        f"{','.join(map(str, r.generator.tune_seeds))}, measure "
        f"{','.join(map(str, r.generator.measure_seeds))} ({r.seconds:.0f} s)",
    ]
    rows = []
    for side, figures in r.sides.items():
        label = "measure*" if side == "measure" else side
        for i, (name, f) in enumerate(figures.items()):
            shown = name if f.same_as is None else f"{name} (= {f.same_as.split()[-1]})"
            rows.append([label if i == 0 else "", shown, *_cells(f)])
    head = ["side", "forecaster", *HEAD]
    widths = [max(len(str(x[i])) for x in [head, *rows]) for i in range(len(head))]
    fmt = "  " + "  ".join(f"{{:<{w}}}" for w in widths)
    lines.append(fmt.format(*head))
    lines += [fmt.format(*row) for row in rows]
    return "\n".join(lines)


def beats(results: list[CaseResult], side: str = "measure") -> list[str]:
    """Where a reference beats the product on `side`: one line per case and product variant.

    Beating means: fewer missed breaches or false warnings; a breach-time error lower by 20 %
    and 0.1 h (mean over finite, or the count of runs without a warning); a MASE lower by
    10 %; coverage closer to 90 % by 5 points on average over the leads.
    """
    lines = []
    for r in results:
        figures = r.sides.get(side, {})
        products = {
            n: f for n, f in figures.items() if n.startswith("product") and f.same_as is None
        }
        refs = {n: f for n, f in figures.items() if not n.startswith("product")}
        for pname, p in products.items():
            twins = [n for n, f in figures.items() if f.same_as == pname]
            shown = " = ".join([pname, *(t.removeprefix("product ") for t in twins)])
            wins = []
            for rname, ref in refs.items():
                why = _wins(p, ref)
                if why:
                    wins.append(f"{rname} ({'; '.join(why)})")
            if wins:
                lines.append(f"{r.generator.name} [{shown}]: " + ", ".join(wins))
    return lines


def _wins(p: Figures, ref: Figures) -> list[str]:
    why = []
    if ref.missed < p.missed:
        why.append(f"missed {ref.missed} vs {p.missed}")
    if ref.false < p.false:
        why.append(f"false {ref.false} vs {p.false}")
    pe, re_ = p.error(), ref.error()
    p_inf = sum(1 for e in p.errors_hours if not math.isfinite(e))
    r_inf = sum(1 for e in ref.errors_hours if not math.isfinite(e))
    if r_inf < p_inf:
        why.append(f"runs unwarned {r_inf} vs {p_inf}")
    elif r_inf == p_inf and re_[0] < 0.8 * pe[0] and re_[0] < pe[0] - 0.1:
        why.append(f"breach error {re_[0]:.2f} vs {pe[0]:.2f} h")
    if p.mase and ref.mase and np.mean(ref.mase) < 0.9 * np.mean(p.mase):
        why.append(f"MASE {np.mean(ref.mase):.2f} vs {np.mean(p.mase):.2f}")
    pc, rc = np.array(p.coverage()), np.array(ref.coverage())
    both = np.isfinite(pc) & np.isfinite(rc)
    if both.any() and np.mean(np.abs(rc[both] - 90)) < np.mean(np.abs(pc[both] - 90)) - 5:
        cover = " / ".join(f"{c:.0f}" for c in ref.coverage())
        mine = " / ".join(f"{c:.0f}" for c in p.coverage())
        why.append(f"coverage {cover} vs {mine} %")
    return why


def list_cases(results: list[CaseResult], side: str = "tune") -> str:
    """The product's missed, mistimed and false breaches on `side` (the tune seeds: the
    measure side is looked at only through the table)."""
    lines = []
    for r in results:
        for name, f in r.sides.get(side, {}).items():
            if name.startswith("product") and f.same_as is None and f.cases:
                lines.append(f"{r.generator.name} [{name}]:")
                lines += [f"  {c}" for c in f.cases]
    return f"the product's misses and false warnings ({side} seeds):\n" + (
        "\n".join(f"  {line}" for line in lines) if lines else "  none"
    )


def report(results: list[CaseResult]) -> str:
    """Every case's table and the summary of where a reference beats the product."""
    parts = [
        "Forecast zoo: hourly runs over a day per seed, 10 d history, 24 h horizon; the product "
        "beside statsmodels ETS and Theta on the same runs (measure* = the seeds that count)",
        *(report_case(r) for r in results),
    ]
    lines = beats(results)
    parts.append(
        "where a reference beats the product (measure seeds):\n"
        + ("\n".join(f"  {line}" for line in lines) if lines else "  nowhere")
    )
    return "\n\n".join(parts)


def to_json(results: list[CaseResult]) -> dict[str, Any]:
    """The figures as JSON-ready data (a non-finite number as the string ``inf`` or ``nan``)."""
    return jsonable(
        {
            r.generator.name: {
                "description": r.generator.description,
                "query": r.example.query,
                "threshold": r.example.threshold,
                "direction": r.example.direction,
                "tune_seeds": list(r.generator.tune_seeds),
                "measure_seeds": list(r.generator.measure_seeds),
                "seconds": r.seconds,
                **{
                    side: {name: f.summary() for name, f in figures.items()}
                    for side, figures in r.sides.items()
                },
            }
            for r in results
        }
    )


def jsonable(x: Any) -> Any:
    """`x` with every non-finite float written as a string (strict JSON has none)."""
    if isinstance(x, dict):
        return {k: jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [jsonable(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    return x
