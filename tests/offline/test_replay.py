"""``score-csv``: causality (a prefix scores exactly like the whole file), the output format,
irregular and messy input, detection of an injected anomaly, and clear input errors."""

from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from anomaly_lab.synth import Injection, generate
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from anomaly.cli import main
from anomaly.config import config_from_dict
from anomaly.errors import DataError
from anomaly.models.scoring import AnomalyModel
from anomaly.offline.decision import DECISIONS
from anomaly.offline.replay import (
    OUTPUT_COLUMNS,
    OfflineOptions,
    infer_step,
    late_rows,
    score_csv,
    score_series,
    snap_step,
)

START = 1_717_977_600.0  # 2024-06-10 00:00 UTC, a Monday


def daily_series(
    n: int, step: float, seed: int, *, jitter: float = 0.0, spike_at: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    t = START + np.arange(n) * step + rng.uniform(-jitter, jitter, n)
    t = np.sort(np.round(t))
    hours = (t - START) / 3600.0
    v = 50 + 20 * np.sin(2 * np.pi * hours / 24) + rng.normal(0, 1.5, n)
    if spike_at is not None:
        v[spike_at] += 60
    return t, v


def write_csv(path: Path, times: np.ndarray, values: np.ndarray, *, iso: bool = True) -> Path:
    stamps = (
        pd.to_datetime(times, unit="s", utc=True).strftime("%Y-%m-%dT%H:%M:%SZ")
        if iso
        else [f"{x:.0f}" for x in times]
    )
    vals = ["" if np.isnan(x) else repr(float(x)) for x in values]
    pd.DataFrame({"timestamp": stamps, "value": vals}).to_csv(path, index=False)
    return path


def scored_text(path: Path, options: OfflineOptions | None = None) -> str:
    buf = io.StringIO()
    score_csv(path, buf, options=options)
    return buf.getvalue()


FAST = OfflineOptions(lookback_seconds=3 * 86400.0)


# ---------------------------------------------------------------------------- causality
@st.composite
def messy_series(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    """A few days of a daily pattern: regular or jittered, with gaps, repeats, missing values,
    duplicate and late timestamps, maybe a spike."""
    step = draw(st.sampled_from([300.0, 600.0, 1800.0]))
    days = draw(st.floats(1.5, 3.5))
    n = int(days * 86400 / step)
    seed = draw(st.integers(0, 2**16))
    jitter = draw(st.sampled_from([0.0, 0.0, step * 0.3, step * 0.6]))
    t, v = daily_series(n, step, seed, jitter=jitter)
    rng = np.random.default_rng(seed + 1)
    keep = rng.random(n) > draw(st.sampled_from([0.0, 0.05, 0.2]))  # gaps
    t, v = t[keep], v[keep]
    v[rng.random(v.size) < 0.02] = np.nan  # missing values
    if draw(st.booleans()):  # a stuck stretch
        i = int(rng.integers(0, v.size - 30))
        v[i : i + 30] = v[i]
    if draw(st.booleans()):  # duplicated timestamps
        dup = np.sort(rng.choice(t.size, size=5, replace=False))
        t = np.insert(t, dup, t[dup])
        v = np.insert(v, dup, rng.normal(50, 5, dup.size))
    if draw(st.booleans()):  # a late sample
        i = int(rng.integers(t.size // 2, t.size))
        t = np.insert(t, i, t[i - 1] - 5 * step)
        v = np.insert(v, i, 49.0)
    if draw(st.booleans()):
        v[int(rng.integers(0, v.size))] += 80
    return t, v


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(series=messy_series(), cut=st.floats(0.0, 1.0), iso=st.booleans())
def test_a_prefix_scores_exactly_like_the_whole_file(
    tmp_path: Path, series: tuple[np.ndarray, np.ndarray], cut: float, iso: bool
) -> None:
    t, v = series
    full = scored_text(write_csv(tmp_path / "full.csv", t, v, iso=iso), FAST).splitlines()
    k = max(1, int(round(cut * t.size)))
    prefix = scored_text(write_csv(tmp_path / "prefix.csv", t[:k], v[:k], iso=iso), FAST)
    assert prefix.splitlines() == full[: k + 1]
    assert len(full) == t.size + 1


@pytest.mark.parametrize("decision", DECISIONS)
def test_a_prefix_at_every_refit_boundary_scores_like_the_whole(
    tmp_path: Path, decision: str
) -> None:
    t, v = daily_series(12 * 24 * 4, 300.0, seed=3, spike_at=900)
    opts = replace(FAST, decision=decision)
    full = scored_text(write_csv(tmp_path / "full.csv", t, v), opts).splitlines()
    for k in (1, 287, 288, 289, 576, 577, 900, 901):
        prefix = scored_text(write_csv(tmp_path / "p.csv", t[:k], v[:k]), opts).splitlines()
        assert prefix == full[: k + 1], k


# ---------------------------------------------------------------------------- output
def test_output_keeps_the_input_and_adds_the_contract_columns(tmp_path: Path) -> None:
    t, v = daily_series(12 * 24 * 3, 300.0, seed=1)
    path = write_csv(tmp_path / "in.csv", t, v)
    out = tmp_path / "out.csv"
    assert score_csv(path, out, options=FAST) == t.size
    got = pd.read_csv(out, dtype={"timestamp": str})
    assert list(got.columns) == ["timestamp", "value", *OUTPUT_COLUMNS]
    assert list(got["timestamp"]) == list(pd.read_csv(path, dtype=str)["timestamp"])
    assert got["score"].between(0, 1).all()
    assert set(got["is_anomaly"]) <= {0, 1}
    warm = got.index < 288  # a day of warm-up
    assert (got.loc[warm, "score"] == 0).all() and got.loc[warm, "expected"].isna().all()
    later = got.loc[~warm]
    assert later["expected"].notna().all()
    assert (later["lower"] <= later["expected"]).all()
    assert (later["expected"] <= later["upper"]).all()


def test_an_injected_spike_is_flagged_and_quiet_data_mostly_is_not(tmp_path: Path) -> None:
    at = START + 3.5 * 86400  # Monday to Thursday: no weekend the models have not seen
    ds = generate(
        1,
        days=4,
        end=START + 4 * 86400,
        seed=4,
        injections=[Injection("org-01", "request_rate", "spike", at, at + 600)],
    )
    v = ds.matrix("request_rate")[:, 0]
    path = write_csv(tmp_path / "rate.csv", ds.timestamps, v)
    got = pd.read_csv(io.StringIO(scored_text(path)))
    spike = np.abs(ds.timestamps - at) <= 600
    assert got.loc[spike, "is_anomaly"].any()
    after_two_days = ds.timestamps >= START + 2 * 86400
    assert got.loc[~spike & after_two_days, "is_anomaly"].mean() < 0.04


def test_the_threshold_comes_from_the_config() -> None:
    config = config_from_dict(
        {
            "prometheus": {"url": "http://127.0.0.1:9090"},
            "pushgateway": {"url": "http://127.0.0.1:9091"},
            "metrics": [{"name": "m", "query": "up"}],
            "lookback": "3d",
            "detection": {"threshold": 0.9, "refit_interval": "12h"},
        }
    )
    opts = OfflineOptions.from_config(config)
    assert (opts.threshold, opts.refit_interval_seconds, opts.lookback_seconds) == (
        0.9,
        43200.0,
        3 * 86400.0,
    )
    t, v = daily_series(12 * 24 * 3, 300.0, seed=2, spike_at=700)
    for decision in DECISIONS:
        low = score_series(t, v, OfflineOptions(decision=decision, **_fast_rest()))
        high = score_series(t, v, OfflineOptions(threshold=0.9, decision=decision, **_fast_rest()))
        np.testing.assert_array_equal(low.model_score, high.model_score)
        np.testing.assert_array_equal(high.is_anomaly, high.score >= 0.9)
        assert high.is_anomaly[700] and low.is_anomaly[700]


def _fast_rest() -> dict[str, float]:
    return {"lookback_seconds": FAST.lookback_seconds}


# ---------------------------------------------------------------------------- decisions
def level_shift_series(seed: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Ten days of a daily pattern that steps up by 60 % on day 7 and stays there."""
    t, v = daily_series(10 * 288, 300.0, seed=seed)
    at = 7 * 288 + 100
    v[at:] *= 1.6
    return t, v, at


@pytest.mark.parametrize("seed", [11, 12])
def test_a_lasting_level_shift_opens_one_alert_where_the_job_flags_many_rows(seed: int) -> None:
    t, v, at = level_shift_series(seed)
    job = score_series(t, v, OfflineOptions(decision="job", **_fast_rest()))
    alert = score_series(t, v, FAST)
    same_models = score_series(t, v, replace(FAST, decision="job", holdout_seconds=0.0))
    assert job.is_anomaly[at:].sum() > 50  # the job's rule holds while the models catch up
    # An alert is open within the hour (opened by the shift, or still open from less than a
    # day before), and the days after the shift open at most one more.
    opened = np.flatnonzero(alert.is_anomaly[: at + 12])
    assert opened.size and t[at] - t[opened[-1]] < FAST.refractory_seconds
    assert alert.is_anomaly[at + 12 :].sum() <= 1
    # Only rows that open an alert reach the threshold; the model's score is kept aside.
    np.testing.assert_array_equal(alert.is_anomaly, alert.score >= 0.5)
    np.testing.assert_array_equal(alert.model_score, same_models.model_score)
    assert (alert.score[~alert.is_anomaly] <= 0.25).all()


def test_alerts_fit_without_holdout_and_the_job_decision_with_the_jobs() -> None:
    assert FAST.model_holdout_seconds == 0.0
    job = OfflineOptions(decision="job")
    assert job.model_holdout_seconds == AnomalyModel().holdout_seconds > 0
    assert replace(FAST, holdout_seconds=3600.0).model_holdout_seconds == 3600.0
    # The job's models keep a lasting shift anomalous for longer than models that learn it
    # (a day is held out only with three days before it: a five-day lookback).
    t, v, at = level_shift_series(15)
    five = replace(FAST, decision="job", lookback_seconds=5 * 86400.0)
    held = score_series(t, v, five)
    learned = score_series(t, v, replace(five, holdout_seconds=0.0))
    assert held.is_anomaly[at:].sum() > learned.is_anomaly[at:].sum()


def test_the_job_decision_is_the_model_score_against_the_threshold() -> None:
    t, v, _ = level_shift_series(13)
    job = score_series(t, v, OfflineOptions(decision="job", **_fast_rest()))
    np.testing.assert_array_equal(job.score, job.model_score)
    np.testing.assert_array_equal(job.is_anomaly, job.model_score >= 0.5)


def test_a_young_series_needs_stronger_evidence_to_open_an_alert() -> None:
    t, v = daily_series(4 * 288, 300.0, seed=14)
    v[int(1.5 * 288)] += 12  # moderate spikes: on day 1.5 and on day 3.5
    v[int(3.5 * 288)] += 12
    young = score_series(t, v, replace(FAST, routine_factor=0.0))
    plain = score_series(t, v, replace(FAST, routine_factor=0.0, young_days=0.0))
    assert plain.is_anomaly.sum() >= young.is_anomaly.sum()
    scored = young.scored
    gain = 1 + FAST.young_days / ((t[scored] - t[0]) / 86400)  # > 1, falling with age
    ev_plain = np.sqrt(plain.model_score[scored] / (1 - plain.model_score[scored]))
    opened = young.is_anomaly[scored]
    ev_young = np.sqrt(young.score[scored][opened] / (1 - young.score[scored][opened]))
    np.testing.assert_allclose(ev_young, ev_plain[opened] / gain[opened], rtol=1e-9)
    # Bands widen with the same factor: never narrower than the model's.
    ok = scored & np.isfinite(plain.upper)
    assert (young.upper[ok] >= plain.upper[ok] - 1e-9).all()
    assert (young.lower[ok] <= plain.lower[ok] + 1e-9).all()


def test_a_spike_at_the_same_time_every_night_stops_paging() -> None:
    t, v = daily_series(10 * 288, 300.0, seed=16)
    rng = np.random.default_rng(16)
    nightly = np.arange(288 + 36, t.size, 288) + rng.integers(-2, 3, size=9)  # 03:00 +-10 min
    v[nightly] += 25
    plain = score_series(t, v, replace(FAST, routine_factor=0.0))
    routine = score_series(t, v, FAST)
    # Without the routine rule, the spike still pages on later nights (the model's own point
    # threshold learns a daily jump only once it is in most days of its training window).
    assert plain.is_anomaly[nightly[5:]].sum() >= 2
    assert routine.is_anomaly[nightly[5:]].sum() == 0  # from the sixth night on, routine
    assert routine.is_anomaly.sum() < plain.is_anomaly.sum()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("decision", "page"),
        ("refractory_seconds", -1.0),
        ("young_days", float("nan")),
        ("routine_factor", -0.5),
        ("holdout_seconds", -5.0),
    ],
)
def test_bad_options_name_the_parameter(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=f"`{field}`"):
        OfflineOptions(**{field: value})  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- messy input
def test_irregular_timestamps_snap_to_the_inferred_step_with_one_row_per_input_row() -> None:
    t, v = daily_series(12 * 24 * 3, 300.0, seed=5, jitter=100.0)
    res = score_series(t, v, FAST)
    assert res.step_seconds == 300.0
    assert res.score.shape == t.shape
    assert res.scored[400:].all()  # a day of distinct cells, then one model after another


def test_step_inference_and_snapping() -> None:
    assert snap_step(297.0) == 300.0
    assert snap_step(3590.0) == 3600.0
    assert snap_step(0.2) == 1.0
    assert snap_step(2.2 * 86400) == 2 * 86400.0
    times = np.array([0.0, 0.0, 60.0, 120.0, 120.0, 185.0, 240.0])
    assert infer_step(times, 4) == (60.0, 6)
    assert infer_step(times, 5) is None


def test_duplicate_and_late_timestamps_are_kept_in_the_output() -> None:
    t, v = daily_series(12 * 24 * 3, 300.0, seed=6)
    t = np.insert(t, 500, t[499])  # a duplicate: same cell, scored in turn
    v = np.insert(v, 500, v[499] + 1)
    t = np.insert(t, 600, t[599] - 3000)  # late: ignored by the model
    v = np.insert(v, 600, 10.0)
    assert late_rows(t).sum() == 1
    res = score_series(t, v, FAST)
    assert res.scored[500] and res.scored[499]
    assert not res.scored[600] and res.score[600] == 0 and np.isnan(res.expected[600])


def test_epoch_seconds_and_iso_timestamps_give_the_same_scores(tmp_path: Path) -> None:
    t, v = daily_series(12 * 24 * 2, 300.0, seed=8)
    iso = pd.read_csv(io.StringIO(scored_text(write_csv(tmp_path / "a.csv", t, v), FAST)))
    epoch = pd.read_csv(
        io.StringIO(scored_text(write_csv(tmp_path / "b.csv", t, v, iso=False), FAST))
    )
    pd.testing.assert_frame_equal(iso.drop(columns="timestamp"), epoch.drop(columns="timestamp"))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("time,value\n1,2\n", "missing column(s) timestamp"),
        ("timestamp,value\n2024-01-01T00:00:00Z,1\nyesterday,2\n", "line 3: timestamp 'yesterday'"),
        ("timestamp,value\n1700000000,1\n1700000300,abc\n", "line 3: value 'abc' is not a number"),
        (
            "timestamp,value\n" + "".join(f"{1700000000 - 300 * i},1\n" for i in range(20)),
            "not in increasing order",
        ),
        ("", "empty"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, message: str
) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)")):
        score_csv(path, io.StringIO())
    assert main(["score-csv", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and "Traceback" not in err


def test_missing_file_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["score-csv", str(tmp_path / "absent.csv")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_empty_values_are_gaps_and_a_short_file_is_all_warm_up(tmp_path: Path) -> None:
    path = tmp_path / "short.csv"
    path.write_text("timestamp,value\n1700000000,1\n1700000300,\n1700000600,NaN\n")
    got = pd.read_csv(io.StringIO(scored_text(path)))
    assert len(got) == 3
    assert (got["score"] == 0).all() and got["expected"].isna().all()


def test_cli_decision_flag_picks_alerts_or_the_job_s_rows(tmp_path: Path) -> None:
    """`--decision job` flags every row of a lasting shift, the default only its first."""
    t, v = daily_series(10 * 48, 1800.0, seed=5)
    shift_at = 8 * 48 + 10
    v[shift_at:] += 40  # a shift that lasts to the end of the file
    path = write_csv(tmp_path / "shift.csv", t, v)
    flags = {}
    for decision in ("alert", "job"):
        out = tmp_path / f"{decision}.csv"
        assert main(["score-csv", str(path), "--decision", decision, "-o", str(out)]) == 0
        table = pd.read_csv(out)
        flags[decision] = np.flatnonzero(table["is_anomaly"].to_numpy() == 1)
        api = scored_text(path, OfflineOptions(decision=decision))
        assert out.read_text() == api  # the flag maps to OfflineOptions.decision
    assert flags["alert"].tolist() == [shift_at]
    assert len(flags["job"]) > 10 and shift_at in flags["job"]
