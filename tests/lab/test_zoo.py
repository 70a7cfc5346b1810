"""The detection zoo's runner (bench.detection_bench): the judging rules on a hand-made
replay, and one tiny house scenario end to end against real Prometheus and Pushgateway."""

from __future__ import annotations

import dataclasses
import functools
from collections import Counter
from pathlib import Path

import pytest

from bench import detection_bench as bench
from bench.zoo import RUN_EVERY_SECONDS, Incident, MetricEntry, Scenario, house
from tests.conftest import Servers

END = 1_795_000_000.0


def _run(k: int, tenant: str, metric: str, flagged: bool, score: float = 0.1) -> bench.SeriesRun:
    at = END - (2 - k) * RUN_EVERY_SECONDS
    return bench.SeriesRun(k, at, tenant, metric, score, flagged, 1.0, 1.0, 0.5, 1.5)


def test_judge_counts_pairs_runs_kinds_and_health() -> None:
    incidents = (
        Incident("a", "rps", "outage", END - 3600, END + 300, "drop to 0"),
        Incident("b", "rps", "spike", END, END, "x3"),  # starts at the last run
        Incident("b", "lat", "level_shift", END - 600, END + 300, "+50 %"),
    )
    scenario = Scenario(
        "toy",
        0,
        Path("/nonexistent"),
        END,
        300.0,
        (MetricEntry("rps", "q1"), MetricEntry("lat", "q2")),
        ("a", "b", "c"),
        incidents,
    )
    scored = [
        _run(1, "a", "rps", True, 0.9),  # found
        _run(1, "b", "rps", True, 0.7),  # flagged before its spike started: not a find
        _run(2, "b", "rps", False, 0.2),
        _run(0, "b", "lat", False),  # never flagged: missed
        _run(2, "b", "lat", False, 0.4),
        _run(2, "c", "rps", True, 0.6),  # a false positive
    ]
    scored += [_run(k, t, "lat", False) for k in range(3) for t in ("a", "c")]
    scored += [_run(k, "c", "rps", False) for k in range(2)]
    rep = bench.Replay(scenario, (END - 600, END - 300, END), scored, {"a": 40, "b": 90, "c": 90})
    fig = bench.judge(rep)
    assert (fig.tp, fig.fp, fig.fn, fig.pairs) == (1, 1, 2, 6)
    assert fig.kinds_found == Counter(outage=1)
    assert fig.kinds_total == {"outage": 1, "spike": 1, "level_shift": 1}
    # clean pairs: a/lat and c/lat 3 runs each, c/rps 3 runs (one flagged)
    assert (fig.clean_series_runs, fig.clean_flags) == (9, 1)
    assert fig.fp_per_1000 == pytest.approx(1000 / 9)
    # troubled a (40) and b (90) against quiet c (90): 1 + 0.5
    assert fig.health_auc == pytest.approx(0.75)
    assert len(fig.misses) == 2 and len(fig.false_positives) == 1
    assert "best run 2: score 0.40" in " ".join(fig.misses)
    assert fig.precision == 0.5 and fig.recall == pytest.approx(1 / 3)


@pytest.mark.e2e
def test_tiny_house_scenario_end_to_end(servers: Servers, tmp_path: Path) -> None:
    """2 tenants, one live outage, 2 runs: the outage is found, nothing clean is flagged."""
    servers.require("promtool")
    tiny = dataclasses.replace(
        house.GENERATOR,
        make=functools.partial(house.make_scenario, n_tenants=2, counts={"outage": 1}, n_past=0),
        seeds=(3,),
    )
    scenario, tsdb, made = bench.prepare(tiny, 3, cache=tmp_path / "cache")
    assert made is not None and not scenario.openmetrics.exists()
    assert [i.kind for i in scenario.incidents] == ["outage"]
    assert bench.prepare(tiny, 3, cache=tmp_path / "cache")[2] is None  # cached now
    with (
        servers.pushgateway() as pgw,
        servers.prometheus(prebuilt_data_dir=tsdb, retention="100y") as prom,
    ):
        rep = bench.replay(scenario, prom.url, pgw.url, tmp_path, n_runs=2)
    assert rep.runs == (scenario.end - RUN_EVERY_SECONDS, scenario.end)
    assert len(rep.scored) == 2 * 2 * len(scenario.metrics) and not rep.problems
    fig = bench.judge(rep)
    assert (fig.tp, fig.fn, fig.fp) == (1, 0, 0)
    assert fig.kinds_found == Counter(outage=1)
    assert fig.clean_series_runs == 2 * (2 * len(scenario.metrics) - 1)
    assert fig.fp_per_1000 == 0.0
    assert fig.auc_pairs == 1
