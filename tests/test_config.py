"""Config loading: valid files load into frozen objects; every invalid one names its key."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from anomaly.cli import main
from anomaly.config import (
    ForecastConfig,
    available_cpus,
    config_from_dict,
    format_duration,
    load_config,
    parse_duration,
)
from anomaly.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]

MINIMAL = {
    "prometheus": {"url": "http://127.0.0.1:9090"},
    "pushgateway": {"url": "http://127.0.0.1:9091"},
    "metrics": [{"name": "error_ratio", "query": "max by (organization_id) (x)"}],
}


def _with(path: str, value: object) -> dict:
    """MINIMAL with one dotted key set (list items by index)."""
    raw = yaml.safe_load(yaml.safe_dump(MINIMAL))
    node = raw
    parts = path.split(".")
    for p in parts[:-1]:
        node = node[int(p)] if isinstance(node, list) else node.setdefault(p, {})
    node[parts[-1]] = value
    return raw


def test_example_config_loads_with_defaults_filled() -> None:
    config = load_config(ROOT / "config.yaml")
    assert config.prometheus.url == "http://127.0.0.1:9090"
    assert config.lookback_seconds == 7 * 86400
    assert config.step_seconds == 300
    assert config.tenant_label == "organization_id"
    assert [m.name for m in config.metrics][:3] == ["request_rate", "latency_p95", "error_ratio"]
    assert config.metric("error_ratio").labels["team"] == "platform"
    assert config.prometheus.tls.verify is True


def test_minimal_config_gets_contract_defaults() -> None:
    c = config_from_dict(MINIMAL)
    assert c.pushgateway.job == "anomaly_detector"
    assert c.pushgateway.grouping == "auto"
    assert c.prometheus.timeout_seconds == 30
    assert c.schedule == "* * * * *"  # every minute: a warm run reads about a day
    assert c.model_dir.endswith("models")


def test_config_is_frozen() -> None:
    c = config_from_dict(MINIMAL)
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.step_seconds = 60  # type: ignore[misc]
    with pytest.raises(TypeError):
        c.metrics[0].labels["x"] = "y"  # type: ignore[index]


def test_a_loaded_config_pickles_round_trip_and_stays_frozen_and_hashable() -> None:
    """Worker processes get the config by pickle (``anomaly.job.run``)."""
    import pickle

    c = load_config(ROOT / "config.yaml")
    back = pickle.loads(pickle.dumps(c))
    assert back == c and hash(back) == hash(c)
    assert dict(back.metrics[0].labels) == {"team": "platform", "severity": "warning"}
    with pytest.raises(TypeError):
        back.metrics[0].labels["x"] = "y"  # type: ignore[index]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("5m", 300), ("1h", 3600), ("7d", 604800), ("1w", 604800), ("1h30m", 5400)],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_format_duration_round_trips() -> None:
    for s in (30, 300, 3600, 86400, 604800, 5400):
        assert parse_duration(format_duration(s)) == s


@pytest.mark.parametrize(
    ("path", "value", "key", "fragment"),
    [
        ("lookbak", "7d", "lookbak", "did you mean 'lookback'"),
        ("lookback", "7 days", "lookback", "duration"),
        ("step", "-5m", "step", "duration"),
        ("step", 0, "step", "positive"),
        ("prometheus.url", "localhost:9090", "prometheus.url", "http"),
        ("prometheus.url", "", "prometheus.url", "empty"),
        ("prometheus.timeout_seconds", "fast", "prometheus.timeout_seconds", "number"),
        ("prometheus.timout_seconds", 3, "prometheus.timout_seconds", "timeout_seconds"),
        ("pushgateway.url", "ftp://x", "pushgateway.url", "http"),
        ("pushgateway.grouping", "org", "pushgateway.grouping", "auto, tenant, batch"),
        ("metrics.0.query", "", "metrics[0].query", "empty"),
        ("metrics.0.name", "bad name", "metrics[0].name", "must match"),
        ("metrics.0.labels", {"metric": "x"}, "metrics[0].labels.metric", "reserved"),
        ("metrics.0.forecast", {"direction": "up"}, "metrics[0].forecast.direction", "above"),
        ("metrics.0.forecast", {"horizon": "soon"}, "metrics[0].forecast.horizon", "duration"),
        ("metrics.0.forecast", {"rate": True}, "metrics[0].forecast.rate", "or false, got True"),
        ("metrics.0.forecast", {"rate": "nope"}, "metrics[0].forecast.rate", "not a configured"),
        ("metrics.0.forecast", {"window": "a day"}, "metrics[0].forecast.window", "duration"),
        ("schedule", "every minute", "schedule", "cron"),
        ("tenant_label", "org-id", "tenant_label", "label name"),
        ("detection.threshold", 1.5, "detection.threshold", "between 0 and 1"),
        (
            "health.objectives",
            [{"metric": "nope", "max": 1}],
            "health.objectives[0].metric",
            "not a configured metric",
        ),
        ("health.objectives", [{"metric": "error_ratio"}], "health.objectives[0]", "max"),
        ("log_level", "LOUD", "log_level", "DEBUG"),
        (
            "prometheus.auth",
            {"bearer_token_file": "/nonexistent/token"},
            "prometheus.auth.bearer_token_file",
            "cannot read",
        ),
        (
            "prometheus.auth",
            {"password_env": "NO_SUCH_VAR_XYZ", "username": "u"},
            "prometheus.auth.password_env",
            "not set",
        ),
    ],
)
def test_invalid_values_name_the_key(path: str, value: object, key: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as err:
        config_from_dict(_with(path, value))
    assert err.value.key == key
    assert fragment in str(err.value)


@pytest.mark.parametrize("missing", ["prometheus", "pushgateway", "metrics"])
def test_missing_required_sections(missing: str) -> None:
    raw = dict(MINIMAL)
    del raw[missing]
    with pytest.raises(ConfigError) as err:
        config_from_dict(raw)
    assert err.value.key == missing


def test_secret_from_file_and_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "token").write_text("s3cret-token\n")
    monkeypatch.setenv("PG_PASSWORD", "pw-from-env")
    raw = _with("prometheus.auth", {"bearer_token_file": "token"})
    raw["pushgateway"]["auth"] = {"username": "u", "password_env": "PG_PASSWORD"}
    c = config_from_dict(raw, base_dir=tmp_path)
    assert c.prometheus.auth.bearer_token == "s3cret-token"
    assert c.pushgateway.auth.password == "pw-from-env"
    assert "s3cret" not in repr(c) and "pw-from-env" not in repr(c)


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "config.yaml"
    p.write_text(text)
    return p


def test_check_config_says_how_many_workers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check-config", str(ROOT / "config.yaml")]) == 0
    assert f"workers auto: up to {available_cpus()} CPUs)" in capsys.readouterr().out
    fixed = _write(tmp_path, yaml.safe_dump(_with("scale.workers", 3)))
    assert main(["check-config", str(fixed)]) == 0
    assert capsys.readouterr().out.endswith(", workers 3)\n")


def test_check_config_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", str(ROOT / "config.yaml")]) == 0
    bad = _write(tmp_path, yaml.safe_dump(_with("lookback", "7 days")))
    assert main(["check-config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "lookback" in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("prometheus: {url: [\n", "YAML syntax error at line"),
        ("", "empty"),
        ("- just\n- a list\n", "mapping"),
    ],
)
def test_check_config_bad_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, fragment: str
) -> None:
    assert main(["check-config", str(_write(tmp_path, text))]) == 2
    err = capsys.readouterr().err
    assert fragment in err and "Traceback" not in err


def test_check_config_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", str(tmp_path / "nope.yaml")]) == 2
    assert "not found" in capsys.readouterr().err


# --------------------------------------------------------------------------- forecast modes

DAILY_SPEND = "sum by (organization_id) (increase(pa_ai_cost_usd_total[1d]))"
HOURLY_SPEND = "sum by (organization_id) (rate(pa_ai_cost_usd_total[15m])) * 3600"


def _forecasting(query: str, forecast: dict[str, object], **top: object) -> ForecastConfig:
    """The forecast config of metric ``spend`` reading ``query``, beside a rate metric."""
    raw = {
        **MINIMAL,
        **top,
        "metrics": [
            {"name": "hourly", "query": HOURLY_SPEND},
            {"name": "spend", "query": query, "forecast": forecast},
        ],
    }
    fcc = config_from_dict(raw).metric("spend").forecast
    assert fcc is not None
    return fcc


def test_a_rolling_sum_configured_plainly_is_forecast_from_the_rate_its_query_implies() -> None:
    fcc = _forecasting(DAILY_SPEND.replace("pa_", "other_"), {"horizon": "24h", "threshold": 100})
    rate_query = HOURLY_SPEND.replace("pa_", "other_")
    assert (fcc.mode, fcc.rate, fcc.rate_query, fcc.trails) == ("derived", None, rate_query, False)
    assert (fcc.window_seconds, fcc.rate_unit_seconds) == (86400, 3600)
    assert fcc.describe() == (
        f"rate mode, rate derived from the query: {rate_query} (window 1d, per 1h)"
    )
    # A configured metric reading exactly that rate is read for it (once per batch for both).
    shared = _forecasting(DAILY_SPEND, {})
    assert (shared.mode, shared.rate, shared.rate_query) == ("derived", "hourly", HOURLY_SPEND)
    assert shared.describe() == (
        f"rate mode, rate derived from the query: {HOURLY_SPEND}, as metric hourly reads it "
        "(window 1d, per 1h)"
    )
    # The rate's range follows the step: a whole number of steps from 15 minutes.
    ten = _forecasting(DAILY_SPEND, {}, step="10m")
    assert (ten.rate_query, ten.rate) == (HOURLY_SPEND.replace("[15m]", "[20m]"), None)
    # Other forms bring their own window and unit.
    daily_rate = _forecasting("86400 * rate(pa_ai_cost_usd_total[2d])", {})
    assert (daily_rate.window_seconds, daily_rate.rate_unit_seconds) == (172800, 172800)


def test_forecast_rate_and_explicit_window_keys_still_win() -> None:
    named = _forecasting(DAILY_SPEND, {"rate": "hourly"})
    assert (named.mode, named.rate, named.rate_query) == ("rate", "hourly", None)
    assert named.describe() == "rate mode, rate from metric hourly (window 1d, per 1h)"
    plain = _forecasting(DAILY_SPEND, {"rate": False})
    assert (plain.mode, plain.rate_query, plain.trails) == ("plain", None, False)
    assert plain.describe() == "plain: forecast.rate is false"
    kept = _forecasting("avg_over_time(g[1d])", {"window": "25h", "rate_unit": "1d"})
    assert kept.mode == "derived" and kept.rate_query == "avg_over_time(g[15m])"
    assert (kept.window_seconds, kept.rate_unit_seconds) == (90000, 86400)


def test_a_query_without_a_rate_is_forecast_plainly_and_says_why() -> None:
    level = _forecasting("max by (organization_id) (queue_depth)", {})
    assert (level.mode, level.trails) == ("plain", False)
    assert level.describe() == "plain: the query is not a rolling window"
    peak = _forecasting("max by (organization_id) (max_over_time(queue_depth[1d]))", {})
    assert (peak.mode, peak.trails) == ("plain", True)
    assert peak.describe() == "plain: rolling window max_over_time(queue_depth[1d]) has no rate"


def test_check_config_says_how_each_metric_is_forecast(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    raw = {
        **MINIMAL,
        "metrics": [
            {"name": "ai_cost", "query": HOURLY_SPEND},
            {"name": "ai_cost_daily", "query": DAILY_SPEND, "forecast": {"threshold": 100}},
            {"name": "ai_spend_24h", "query": DAILY_SPEND, "forecast": {"rate": "ai_cost"}},
            {"name": "queue", "query": "max(queue_depth)", "forecast": {}},
            {"name": "peak", "query": "max_over_time(queue_depth[1d])", "forecast": {}},
        ],
    }
    assert main(["check-config", str(_write(tmp_path, yaml.safe_dump(raw)))]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1:] == [
        "forecasts:",
        f"  ai_cost_daily: rate mode, rate derived from the query: {HOURLY_SPEND}, as metric "
        "ai_cost reads it (window 1d, per 1h)",
        "  ai_spend_24h: rate mode, rate from metric ai_cost (window 1d, per 1h)",
        "  queue: plain: the query is not a rolling window",
        "  peak: plain: rolling window max_over_time(queue_depth[1d]) has no rate",
    ]


# --------------------------------------------------------------------------- available CPUs


def _cgroup(root: Path, files: dict[str, str | bytes]) -> Path:
    """A fake cgroup mount under ``root``: each of ``files`` (path -> content) written."""
    for name, content in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            (root / name).write_bytes(content)
        else:
            (root / name).write_text(content)
    return root


@pytest.mark.parametrize(
    ("files", "cpus"),
    [
        ({}, 8),  # no cgroup files: the CPUs the process may run on
        ({"cpu.max": "max 100000\n"}, 8),  # v2, no limit
        ({"cpu.max": "200000 100000\n"}, 2),  # v2, two CPUs
        ({"cpu.max": "150000 100000\n"}, 2),  # a part of a CPU rounds up
        ({"cpu.max": "10000 100000\n"}, 1),  # at least one
        ({"cpu.max": "1600000 100000\n"}, 8),  # a quota above the affinity: the affinity
        ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, 8),  # v1
        ({"cpu/cpu.cfs_quota_us": "300000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 3),
        ({"cpu/cpu.cfs_quota_us": "50000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 1),
        ({"cpu/cpu.cfs_quota_us": "300000\n"}, 8),  # no period: no quota to read
        (  # both hierarchies (a hybrid mount): the tighter one
            {
                "cpu.max": "400000 100000",
                "cpu/cpu.cfs_quota_us": "300000",
                "cpu/cpu.cfs_period_us": "100000",
            },
            3,
        ),
        ({"cpu.max": "lots of them"}, 8),  # unreadable: no limit
        ({"cpu.max": "200000 0"}, 8),
        ({"cpu.max": "inf 100000"}, 8),
        ({"cpu.max": b"\xff\xfe 100000"}, 8),
    ],
)
def test_available_cpus_is_the_affinity_within_the_cgroup_quota(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, files: dict[str, str | bytes], cpus: int
) -> None:
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(8)), raising=False)
    assert available_cpus(_cgroup(tmp_path, files)) == cpus


def test_available_cpus_falls_back_to_the_cpu_count(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delattr("os.sched_getaffinity", raising=False)
    monkeypatch.setattr("os.cpu_count", lambda: 6)
    assert available_cpus(tmp_path) == 6
    assert available_cpus(_cgroup(tmp_path, {"cpu.max": "400000 100000"})) == 4
    monkeypatch.setattr("os.cpu_count", lambda: None)  # unknown: one
    assert available_cpus(tmp_path / "none") == 1


def test_available_cpus_on_this_machine_is_within_its_affinity() -> None:
    import os

    assert 1 <= available_cpus() <= len(os.sched_getaffinity(0))
