"""The NAB scorer against hand-computed cases, the threshold sweep against brute force, and
the ``evaluate`` command on a small generated corpus."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from anomaly.cli import main
from anomaly.offline.evaluate import (
    MAX_TP,
    PROFILES,
    Detections,
    evaluate,
    judge,
    optimise_threshold,
    probation_rows,
    scaled_sigmoid,
    sweep,
)

STANDARD = PROFILES["standard"]
N = 100  # rows of the small cases: probation is rows 0..14
TIMES = np.arange(N) * 60.0
WINDOW = [(TIMES[50], TIMES[59])]  # rows 50..59, width 10


def detect(*rows: int) -> np.ndarray:
    d = np.zeros(N, dtype=bool)
    d[list(rows)] = True
    return d


def nab(rows: tuple[int, ...], profile: str = "standard") -> Detections:
    return judge(sweep(TIMES, WINDOW), TIMES, detect(*rows), PROFILES[profile])


def test_probation_is_15_percent_capped_at_750() -> None:
    assert probation_rows(100) == 15
    assert probation_rows(4032) == 604
    assert probation_rows(22695) == 750


def test_detection_at_the_left_edge_earns_the_full_reward() -> None:
    d = nab((50,))
    assert d.score == pytest.approx(1.0)
    assert (d.n_windows, d.n_detected, d.n_false_alarms) == (1, 1, 0)
    assert d.mean_delay_seconds == 0.0
    assert d.normalised(STANDARD) == pytest.approx(100.0)


def test_a_missed_window_costs_a_full_miss() -> None:
    d = nab(())
    assert d.score == -1.0
    assert d.normalised(STANDARD) == 0.0
    assert nab((), "reward_low_fn").score == -2.0


def test_a_later_detection_earns_less_and_only_the_earliest_counts() -> None:
    right_edge = 2.0 / (1.0 + math.exp(-5.0 * 0.1)) - 1.0  # position -1/10
    assert nab((59,)).score == pytest.approx(right_edge / MAX_TP)
    assert nab((52, 50, 55)).score == pytest.approx(1.0)
    assert nab((52, 50, 55)).n_detected == 1
    assert nab((55,)).mean_delay_seconds == 5 * 60.0


def test_false_positive_costs() -> None:
    # Before any window: the full A_FP.
    assert nab((20, 50)).score == pytest.approx(1.0 - 0.11)
    assert nab((20, 50), "reward_low_fp").score == pytest.approx(1.0 - 0.22)
    # Just after the window: position 1 / (width - 1), nearly free.
    just_after = 0.11 * (2.0 / (1.0 + math.exp(5.0 / 9.0)) - 1.0)
    assert nab((50, 60)).score == pytest.approx(1.0 + just_after)
    assert -0.11 < just_after < 0
    # More than three widths after: the full A_FP again.
    assert nab((50, 95)).score == pytest.approx(1.0 - 0.11)
    # Two separate runs outside the window are two false alarms.
    d = nab((20, 21, 30, 50))
    assert d.n_false_alarms == 2
    assert d.precision == pytest.approx(1 / 3)
    assert d.score == pytest.approx(1.0 - 3 * 0.11)


def test_probation_rows_are_ignored() -> None:
    assert nab((10,)).score == -1.0
    assert nab((0, 14, 50)).score == pytest.approx(1.0)
    # A window entirely inside probation is not counted at all.
    sw = sweep(TIMES, [(TIMES[2], TIMES[8])])
    assert sw.n_windows == 0
    assert judge(sw, TIMES, detect(5), STANDARD).score == 0.0


def test_scaled_sigmoid_matches_nab() -> None:
    assert float(scaled_sigmoid(-1.0)) == pytest.approx(0.9866142981514305)
    assert float(scaled_sigmoid(0.0)) == 0.0
    assert float(scaled_sigmoid(3.5)) == -1.0


def test_threshold_sweep_picks_the_best_corpus_threshold() -> None:
    sw = sweep(TIMES, WINDOW)
    scores = np.zeros(N)
    scores[50], scores[20], scores[30], scores[55] = 0.9, 0.95, 0.7, 0.8
    # inf: -1; 0.95: -1.11; 0.9: +0.89; 0.8: +0.89 (window already detected); 0.7: +0.78.
    threshold, total = optimise_threshold([(sw, scores)], STANDARD)
    assert threshold == 0.9  # the highest of the tied thresholds
    assert total == pytest.approx(0.89)
    # Nothing worth detecting: no threshold at all.
    only_fp = np.zeros(N)
    only_fp[20] = 0.9
    threshold, total = optimise_threshold([(sweep(TIMES, []), only_fp)], STANDARD)
    assert threshold == math.inf and total == 0.0


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), profile=st.sampled_from(sorted(PROFILES)))
def test_threshold_sweep_equals_brute_force(seed: int, profile: str) -> None:
    rng = np.random.default_rng(seed)
    cost = PROFILES[profile]
    corpus = []
    for _ in range(3):
        n = int(rng.integers(40, 200))
        times = np.arange(n) * 300.0
        edges = np.sort(rng.choice(np.arange(n), size=4, replace=False))
        windows = [(times[edges[0]], times[edges[1]]), (times[edges[2]], times[edges[3]])]
        scores = np.round(rng.random(n) ** 3, 2)  # many ties
        corpus.append((times, sweep(times, windows), scores))
    threshold, total = optimise_threshold([(sw, s) for _, sw, s in corpus], cost)

    def total_at(th: float) -> float:
        return sum(judge(sw, t, s >= th, cost).score for t, sw, s in corpus)

    candidates = [math.inf] + sorted({float(x) for _, _, s in corpus for x in s}, reverse=True)
    brute = [total_at(th) for th in candidates]
    assert total == pytest.approx(max(brute))
    assert total_at(threshold) == pytest.approx(total)
    assert threshold == candidates[int(np.argmax(np.round(brute, 9)))]


# ---------------------------------------------------------------------------- the command
def _corpus(tmp_path: Path) -> tuple[Path, Path]:
    """Two categories of generated 5-minute series; one spike and one level shift labelled."""
    rng = np.random.default_rng(7)
    data = tmp_path / "data"
    windows: dict[str, list[list[str]]] = {}
    start = pd.Timestamp("2024-03-04 00:00:00")
    n = 12 * 24 * 9  # nine days
    for category, name, kind in (
        ("catA", "spike.csv", "spike"),
        ("catA", "quiet.csv", None),
        ("catB", "shift.csv", "shift"),
    ):
        t = start + pd.to_timedelta(np.arange(n) * 300, unit="s")
        hours = np.arange(n) * 300 / 3600.0
        v = 100 + 30 * np.sin(2 * np.pi * hours / 24) + rng.normal(0, 2, n)
        at = 12 * 24 * 7 + 100
        if kind == "spike":
            v[at] += 150
        elif kind == "shift":
            v[at:] += 120
        (data / category).mkdir(parents=True, exist_ok=True)
        pd.DataFrame({"timestamp": t.strftime("%Y-%m-%d %H:%M:%S"), "value": v}).to_csv(
            data / category / name, index=False
        )
        key = f"{category}/{name}"
        windows[key] = (
            []
            if kind is None
            else [[str(t[at - 50]) + ".000000", str(t[min(at + 50, n - 1)]) + ".000000"]]
        )
    labels = tmp_path / "labels"
    labels.mkdir()
    (labels / "combined_windows.json").write_text(json.dumps(windows))
    return data, labels


def test_evaluate_scores_a_generated_corpus(tmp_path: Path) -> None:
    data, labels = _corpus(tmp_path)
    ev = evaluate(data, labels, jobs=1)
    assert [f.key for f in ev.files] == ["catA/quiet.csv", "catA/spike.csv", "catB/shift.csv"]
    assert ev.categories == ["catA", "catB"]
    tuned, shipped = ev.summary()
    assert tuned.n_windows == shipped.n_windows == 2
    assert shipped.n_detected == 2  # the shipped rule catches an obvious spike and shift
    assert tuned.normalised(ev.profile) >= shipped.normalised(ev.profile) - 1e-9
    frame = ev.to_frame()
    assert list(frame["file"])[-3:] == ["catA/*", "catB/*", "ALL"]


def test_evaluate_command_prints_a_table_and_writes_csv(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, labels = _corpus(tmp_path)
    out = tmp_path / "results.csv"
    code = main(
        ["evaluate", str(data), str(labels / "combined_windows.json"), "-o", str(out), "-j", "1"]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "catB/shift.csv" in printed and "ALL" in printed
    assert pd.read_csv(out)["file"].iloc[-1] == "ALL"


def test_evaluate_command_bad_input_is_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["evaluate", str(tmp_path / "nowhere"), str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nowhere" in err and "Traceback" not in err
    data, labels = _corpus(tmp_path)
    (labels / "combined_windows.json").write_text("{not json")
    assert main(["evaluate", str(data), str(labels)]) == 2
    assert "not JSON" in capsys.readouterr().err
