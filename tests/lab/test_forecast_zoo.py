"""The forecast zoo (bench.forecast_zoo): queries served as Prometheus serves them, the job's
mode for each query, the generators' answer keys, and a tiny zoo run end to end."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import requests
from anomaly_lab import devstack

from bench import forecast_bench
from bench.forecast_zoo import HOUR, LASTING_SECONDS, generators, judge, promql, spend
from bench.forecast_zoo.promql import Scrapes, job_mode, serve
from bench.forecast_zoo.shapes import first_crossing, place_crossing
from tests.conftest import Servers

DAY = 86400.0
T0 = 1_794_009_600.0


def scrapes(per_minute: np.ndarray, start_value: float = 500.0) -> dict[str, Scrapes]:
    """A counter and its per-minute increments, scraped every minute 17 s past it."""
    counter = start_value + np.cumsum(per_minute, axis=0)
    return {
        "c_total": Scrapes(T0 + 17.0, 60.0, counter),
        "g": Scrapes(T0 + 17.0, 60.0, per_minute),
    }


@pytest.fixture(scope="module")
def minutes() -> np.ndarray:
    """Three days of random per-minute spend, two series."""
    return np.random.default_rng(7).gamma(2.0, 0.05, (3 * 1440, 2))


def test_sum_over_time_of_a_day_is_the_direct_sum_of_its_minutes(minutes: np.ndarray) -> None:
    raw = scrapes(minutes)
    t = T0 + DAY + 3600.0 * np.arange(1, 30)
    got = serve("sum by (o) (sum_over_time(g[1d]))", raw, t)
    # The samples in [t - 1d, t]: those scraped at T0 + 17 s + 60 k.
    for i, ti in enumerate(t):
        k = (np.arange(minutes.shape[0]) * 60.0 + T0 + 17.0 >= ti - DAY) & (
            np.arange(minutes.shape[0]) * 60.0 + T0 + 17.0 <= ti
        )
        assert k.sum() == 1440
        np.testing.assert_allclose(got[i], minutes[k].sum(axis=0))
    avg = serve("sum by (o) (avg_over_time(g[1d])) * 1440", raw, t)
    np.testing.assert_allclose(avg, got)


def test_increase_extrapolates_the_first_to_last_delta_to_the_window(
    minutes: np.ndarray,
) -> None:
    raw = scrapes(minutes)
    t = T0 + DAY + 3600.0 * np.arange(1, 30)
    got = serve("sum by (o) (increase(c_total[1d]))", raw, t)
    counter = raw["c_total"].values
    # 1440 samples, 17 s after the window's start to 43 s before its end: the delta of the
    # 1439 minutes between them, stretched to the whole day (Prometheus' extrapolatedRate).
    last = ((t - T0 - 17.0) // 60).astype(int)
    direct = counter[last] - counter[last - 1439]
    np.testing.assert_allclose(got, direct * 1440 / 1439)
    # Within the extrapolation, the same as the direct sum of the day's spend.
    np.testing.assert_allclose(got, serve("sum by (o) (sum_over_time(g[1d]))", raw, t), rtol=0.01)
    rate = serve("sum by (o) (rate(c_total[1d])) * 86400", raw, t)
    np.testing.assert_allclose(rate, got)


def test_increase_of_a_steady_counter_is_exact_and_survives_a_reset() -> None:
    per_minute = np.full((3 * 1440, 1), 0.25)
    raw = scrapes(per_minute)
    t = np.array([T0 + 2 * DAY])
    assert serve("sum by (o) (increase(c_total[1d]))", raw, t)[0, 0] == pytest.approx(360.0)
    reset = raw["c_total"].values.copy()
    reset[2000:] -= reset[1999]  # the process restarted: the counter starts again from 0
    raw["c_total"] = dataclasses.replace(raw["c_total"], values=reset)
    t = np.array([T0 + 2000 * 60.0 + DAY / 2])
    assert serve("sum by (o) (increase(c_total[1d]))", raw, t)[0, 0] == pytest.approx(360.0)


def test_increase_never_extrapolates_a_counter_below_zero() -> None:
    per_minute = np.full((1440, 1), 1.0)
    raw = scrapes(per_minute, start_value=0.0)  # the counter is born at the first scrape
    t = np.array([T0 + 600.0])  # the window reaches back before the counter existed
    got = serve("sum by (o) (increase(c_total[1h]))", raw, t)[0, 0]
    # Samples 1..10 at T0 + 17 s .. T0 + 557 s: a delta of 9 over 540 s. Towards the window's
    # start, extrapolation stops at the counter's zero point, 60 s before the first sample
    # (not at the start, 3017 s before it); towards its end, 43 s to the query time.
    assert got == pytest.approx(9.0 * (540.0 + 60.0 + 43.0) / 540.0)


def test_rate_of_a_linear_counter_is_its_slope() -> None:
    raw = scrapes(np.full((200, 1), 3.0))
    t = T0 + 300.0 * np.arange(4, 30)
    np.testing.assert_allclose(serve("sum by (o) (rate(c_total[15m])) * 60", raw, t), 3.0)


@pytest.mark.parametrize(
    ("query", "plain", "unit"),
    [
        ("sum by (o) (increase(x_total[1d]))", False, 3600.0),
        ("sum by (o) (sum_over_time(g[1d]))", False, 3600.0),
        ("sum by (o) (avg_over_time(g[1d])) * 1440", False, DAY),
        ("sum by (o) (rate(x_total[1d])) * 86400", False, DAY),
        ("sum by (o) (rate(x_total[5m]))", True, None),
        ("max by (host) (disk_used_percent)", True, None),
    ],
)
def test_job_mode_forecasts_a_long_window_from_a_derived_rate(
    query: str, plain: bool, unit: float | None
) -> None:
    mode = job_mode(query)
    assert (mode.rate_query is None) == plain
    if not plain:
        assert mode.window_seconds == pytest.approx(DAY)
        assert mode.rate_unit_seconds == pytest.approx(unit)
        assert promql.parse(str(mode.rate_query)).window_seconds == pytest.approx(900.0, abs=0.01)


@pytest.mark.parametrize("form", list(spend.FORMS))
def test_the_derived_rate_carries_the_rolling_sum(minutes: np.ndarray, form: str) -> None:
    """The sum over the window of the derived rate, per its unit, is the query's value."""
    query, _ = spend.FORMS[form]
    names = {spend.COUNTER: "c_total", spend.MINUTE_GAUGE: "g"}
    for theirs, ours in names.items():
        query = query.replace(theirs, ours)
    mode = job_mode(query)
    raw = scrapes(minutes)
    t = T0 + 2 * DAY + 900.0 * np.arange(0, 8)
    grid = T0 + DAY + 300.0 * np.arange(0, round(2 * DAY / 300) + 1)
    rate = serve(str(mode.rate_query), raw, grid)
    carried = []
    for ti in t:
        inside = (grid > ti - DAY) & (grid <= ti)
        carried.append(rate[inside].sum(axis=0) * 300.0 / mode.rate_unit_seconds)
    np.testing.assert_allclose(np.array(carried), serve(query, raw, t), rtol=0.02)
    # And it is the README recipe's rate, in its own units.
    recipe = serve(
        spend.FORMS[form][1].replace(spend.COUNTER, "c_total").replace(spend.MINUTE_GAUGE, "g"),
        raw,
        grid,
    )
    np.testing.assert_allclose(rate / mode.rate_unit_seconds, recipe / 3600.0, rtol=1e-9)


def test_place_crossing_puts_a_linear_fill_where_it_crosses() -> None:
    times = T0 + 300.0 * np.arange(2000)
    slope = 5.0 / DAY  # points per second

    def curve(level: float) -> np.ndarray:
        return level + slope * (times - times[0])

    target = times[0] + 3 * DAY + 1234.0
    level = place_crossing(curve, times, target, (-100.0, 100.0), 90.0, after=times[0])
    # The noiseless line crosses 90 on the first grid point at or after the target.
    assert level == pytest.approx(90.0 - slope * (target - times[0]), abs=slope * 300.0)
    assert first_crossing(curve(level), times, times[0], 90.0) == pytest.approx(target, abs=300.0)


GENERATORS = {g.name: g for g in generators()}


@pytest.mark.parametrize("name", ["disk_linear", "ratio_floor", "budget_growth_additive"])
def test_crossing_series_cross_once_inside_the_runs_and_the_others_stay_clear(name: str) -> None:
    case = GENERATORS[name].make(2)
    first, last = case.runs[0], case.runs[-1]
    crossings = np.array(
        [
            first_crossing(
                case.truth[:, j],
                case.times,
                first,
                case.threshold,
                case.direction,
                LASTING_SECONDS,
            )
            for j in range(len(case.series))
        ]
    )
    breaching = np.isfinite(crossings)
    assert breaching.sum() >= 3
    assert ((crossings[breaching] >= first + 7 * HOUR) & (crossings[breaching] <= last)).all()
    # Noiseless and crossing-free until the last run's horizon: no breach to announce.
    judged = (case.times >= first) & (case.times <= last + DAY)
    quiet = case.truth[judged][:, ~breaching]
    sign = 1.0 if case.direction == "above" else -1.0
    assert (sign * (quiet - case.threshold) < 0).all()
    # Noise around the truth, not another curve.
    err = np.nanmedian(np.abs(case.values - case.truth) / np.abs(case.truth), axis=0)
    assert (err < 0.1).all(), err


def test_generators_repeat_their_seed_and_differ_between_seeds() -> None:
    for name in ("queue_exponential", "budget_lumpy"):
        g = GENERATORS[name]
        a, b, c = g.make(3), g.make(3), g.make(4)
        np.testing.assert_array_equal(a.values, b.values)
        assert a.notes == b.notes
        assert not np.array_equal(a.values, c.values)
    assert set(GENERATORS["disk_linear"].tune_seeds).isdisjoint(
        GENERATORS["disk_linear"].measure_seeds
    )


def test_the_four_budget_forms_serve_the_same_spend() -> None:
    cases = [GENERATORS[f"budget_{form}"].make(1) for form in spend.FORMS]
    for case in cases[1:]:
        np.testing.assert_allclose(case.truth[400:], cases[0].truth[400:], rtol=0.002)
        assert case.recipe is not None and case.recipe.rate_query is not None


def test_a_growth_added_beside_a_night_batch_stays_announced_through_the_batch() -> None:
    """The zoo's night-batch world (tune seed 1, org-01): a growth added to a tenant whose
    nightly batch is 39 % of its spend. As a ratio to the shape the batch hours read as the
    growth stopping, so the multiplicative trend's decision flips when the batch begins;
    the walk-forward errors prefer the added trend (t about 1), which then decides, and the
    breach stays announced at every hourly run from 6 hours before it (it dropped out at
    five of them while only a t of 1.5 let the added trend decide)."""
    from anomaly.models.forecast import ForecastParams, breach_seconds, forecast
    from bench.forecast_zoo import HISTORY_SECONDS, HORIZON_SECONDS, STEP

    case = GENERATORS["budget_night_batch"].make(1)
    assert case.recipe is not None and case.recipe.rate_query is not None
    rate = serve(case.recipe.rate_query, case.raw, case.times) * (
        HOUR / case.recipe.rate_unit_seconds
    )
    breach = first_crossing(
        case.truth[:, 0], case.times, float(case.runs[0]), case.threshold, "above", LASTING_SECONDS
    )
    history = round(HISTORY_SECONDS / STEP)
    # The rate is served per hour, as the judge serves it.
    params = ForecastParams(
        HORIZON_SECONDS, window_seconds=case.recipe.window_seconds, rate_unit_seconds=HOUR
    )
    runs = [te for te in case.runs if breach - 6 * HOUR <= te < breach]
    assert len(runs) == 6
    for te in runs:
        n = int(np.searchsorted(case.times, te)) + 1
        rows = slice(n - history, n)
        fc = forecast(
            case.times[rows], case.values[rows], params, rate=rate[rows], step_seconds=STEP
        )
        countdown = breach_seconds(fc, threshold=case.threshold)[0]
        assert math.isfinite(countdown), f"run {(te - breach) / HOUR:+.0f} h: breach not announced"


@pytest.fixture(scope="module")
def tiny() -> list[judge.CaseResult]:
    """Two cases, one seed per side, the first five runs, Theta only."""
    gens = [
        dataclasses.replace(GENERATORS[name], tune_seeds=(1,), measure_seeds=(3,))
        for name in ("step_change", "budget_new_workload")
    ]
    return judge.run_zoo(gens, judge.Settings(every=2, runs=5, references=("Theta",)))


def test_a_tiny_zoo_run_gives_finite_figures_for_every_forecaster(
    tiny: list[judge.CaseResult],
) -> None:
    gauge, rolling = tiny
    assert list(gauge.sides["measure"]) == ["product", "Theta"]
    assert list(rolling.sides["measure"]) == ["product recipe", "product plain config", "Theta"]
    for r in tiny:
        for figures in r.sides.values():
            for f in figures.values():
                assert f.mase and np.isfinite(f.mase).all()
                cover = f.coverage()
                assert all(0 <= c <= 100 for c in cover)
                assert f.quiet + f.breaches > 0
                assert 0 <= f.false <= f.quiet and 0 <= f.missed <= f.breaches
    # The derived rate is the recipe's in other units: the same forecasts, said so.
    plain = rolling.sides["tune"]["product plain config"]
    assert plain.same_as == "product recipe"
    assert plain.mase == rolling.sides["tune"]["product recipe"].mase


def test_the_report_marks_the_measure_side_and_sums_up(tiny: list[judge.CaseResult]) -> None:
    text = judge.report(tiny)
    assert "step_change" in text and "budget_new_workload" in text
    assert sum(line.startswith("  measure*") for line in text.splitlines()) == 2
    assert "where a reference beats the product" in text
    record = json.loads(json.dumps(judge.to_json(tiny)))
    assert set(record["step_change"]) >= {"tune", "measure", "query", "measure_seeds"}
    assert math.isfinite(record["step_change"]["measure"]["product"]["mase"])


def test_beats_names_a_reference_that_misses_less() -> None:
    product, ets = judge.Figures(breaches=4, missed=2), judge.Figures(breaches=4, missed=0)
    gen = GENERATORS["disk_linear"]
    r = judge.CaseResult(gen, gen.make(1), {"measure": {"product": product, "ETS": ets}})
    (line,) = judge.beats([r])
    assert line.startswith("disk_linear [product]: ETS (missed 0 vs 2")
    assert judge.beats([dataclasses.replace(r, sides={"measure": {"product": ets}})]) == []


def test_the_cli_picks_cases_and_refuses_unknown_ones(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        forecast_bench.main(["--cases", "budget,no_such_case"])
    assert e.value.code == 2
    assert "no_such_case" in capsys.readouterr().err


def test_served_queries_reject_what_the_zoo_does_not_write() -> None:
    with pytest.raises(ValueError, match="`query` must be"):
        promql.parse("histogram_quantile(0.9, x)")
    with pytest.raises(ValueError, match="does not hold"):
        serve("sum by (o) (increase(missing_total[1d]))", {}, np.array([T0]))


@pytest.mark.e2e
def test_served_queries_match_a_real_prometheus(
    servers: Servers, tmp_path: Path, minutes: np.ndarray
) -> None:
    """Every query form the zoo serves, against Prometheus' own answers on the same samples
    (a counter reset and a counter born inside the data among them)."""
    start = 1_700_000_000.0 + 17.0  # in the past: Prometheus keeps it with a long retention
    per_minute = minutes.copy()
    counter = 500.0 + np.cumsum(per_minute, axis=0)
    counter[2000:, 0] -= counter[1999, 0]  # a restart: the counter starts again from 0
    counter[:, 1] -= counter[0, 1] - per_minute[0, 1]  # born at the first scrape
    raw = {
        "c_total": Scrapes(start, 60.0, counter),
        "g": Scrapes(start, 60.0, per_minute),
    }
    lines = ["# TYPE c counter"]
    for j, org in enumerate("ab"):
        lines += [
            f'c_total{{o="{org}"}} {float(v)!r} {start + 60 * k:.3f}'
            for k, v in enumerate(counter[:, j])
        ]
    lines.append("# TYPE g gauge")
    for j, org in enumerate("ab"):
        lines += [
            f'g{{o="{org}"}} {float(v)!r} {start + 60 * k:.3f}'
            for k, v in enumerate(per_minute[:, j])
        ]
    lines.append("# EOF")
    source = tmp_path / "data.om"
    source.write_text("\n".join(lines) + "\n")
    servers.require("promtool")
    devstack.create_blocks(source, tmp_path / "blocks")
    queries = [
        "sum by (o) (increase(c_total[1d]))",
        "sum by (o) (rate(c_total[1d])) * 86400",
        "sum by (o) (sum_over_time(g[1d]))",
        "sum by (o) (avg_over_time(g[1d])) * 1440",
        "sum by (o) (rate(c_total[15m])) * 3600",
        "sum by (o) (increase(c_total[15m]))",
        "sum by (o) (sum_over_time(g[15m]))",
        "sum by (o) (increase(c_total[1h]))",
    ]
    first = math.ceil((start - 17.0) / 300.0) * 300.0 + 300.0
    t = np.arange(first, start + 3 * DAY - 600.0, 300.0)
    with servers.prometheus(prebuilt_data_dir=tmp_path / "blocks", retention="100y") as prom:
        for query in queries:
            params = {"query": query, "start": t[0], "end": t[-1], "step": 300}
            body = requests.get(f"{prom.url}/api/v1/query_range", params=params, timeout=30)
            result = {s["metric"]["o"]: s["values"] for s in body.json()["data"]["result"]}
            mine = serve(query, raw, t)
            for j, org in enumerate("ab"):
                at = np.array([float(v[0]) for v in result[org]])
                got = np.array([float(v[1]) for v in result[org]])
                assert at.size > 800, query  # three days of 5-minute steps
                ours = mine[np.searchsorted(t, at), j]
                np.testing.assert_allclose(ours, got, rtol=1e-9, atol=1e-9, err_msg=query)
                # Prometheus leaves out what we call NaN (a range without two samples).
                assert np.isnan(mine[:, j]).sum() == t.size - at.size, query
