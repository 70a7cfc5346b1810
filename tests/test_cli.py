"""The CLI's failure modes: one line naming the URL, a non-zero exit, no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from anomaly_lab import devstack

from anomaly.cli import main
from anomaly.config import Config
from anomaly.job.report import RunReport

ROOT = Path(__file__).resolve().parents[1]


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "anomaly.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def config_file(tmp_path: Path, prometheus_url: str, pushgateway_url: str) -> Path:
    raw = yaml.safe_load((ROOT / "config.yaml").read_text())
    raw["prometheus"].update(
        url=prometheus_url, retries=1, retry_backoff_seconds=0.01, timeout_seconds=2
    )
    raw["pushgateway"].update(url=pushgateway_url, retries=0, timeout_seconds=2)
    raw["model_dir"] = str(tmp_path / "models")
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_unreachable_prometheus_is_one_line_naming_the_url(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{devstack.free_port()}"  # nothing listens there
    result = cli("run", "--once", "--config", str(config_file(tmp_path, url, "http://127.0.0.1:9")))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    # Retries are logged as they happen; the failure itself is one line naming the URL.
    errors = [line for line in result.stderr.splitlines() if line.startswith("anomaly:")]
    assert len(errors) == 1 and url in errors[0], result.stderr


def test_run_without_once_is_a_usage_error(tmp_path: Path) -> None:
    path = config_file(tmp_path, "http://127.0.0.1:9", "http://127.0.0.1:9")
    result = cli("run", "--config", str(path))
    assert result.returncode == 2
    assert "--once" in result.stderr


def test_bad_at_time_is_a_usage_error(tmp_path: Path) -> None:
    path = config_file(tmp_path, "http://127.0.0.1:9", "http://127.0.0.1:9")
    result = cli("run", "--once", "--config", str(path), "--at", "yesterday-ish")
    assert result.returncode == 2 and "--at" in result.stderr and "Traceback" not in result.stderr


def test_version_and_help() -> None:
    assert cli("--version").stdout.startswith("anomaly ")
    out = cli("--help").stdout
    for command in ("run", "serve", "check-config", "score-csv"):
        assert command in out


def test_workers_flag_overrides_the_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`--workers N|auto` replaces scale.workers for the run; without it the config's holds."""
    seen: list[int | None] = []

    def fake_run_once(config: Config, **kwargs: Any) -> RunReport:
        seen.append(config.scale.workers)
        return RunReport(started_at=0.0, evaluated_at=0.0)

    monkeypatch.setattr("anomaly.job.run.run_once", fake_run_once)
    monkeypatch.setattr("anomaly.cli._setup_logging", lambda level: None)
    path = config_file(tmp_path, "http://127.0.0.1:9", "http://127.0.0.1:9")
    raw = yaml.safe_load(path.read_text())
    path.write_text(yaml.safe_dump({**raw, "scale": {"workers": 4}}))
    for flag in (["--workers", "auto"], ["--workers", "3"], []):
        assert main(["run", "--once", "--config", str(path), *flag]) == 0
    assert seen == [None, 3, 4]


@pytest.mark.parametrize(
    ("value", "problem"),
    [("0", "at least 1"), ("65", "at most 64"), ("lots", "'auto', got 'lots'"), ("1.5", "'1.5'")],
)
def test_bad_workers_flag_is_a_usage_error(tmp_path: Path, value: str, problem: str) -> None:
    path = config_file(tmp_path, "http://127.0.0.1:9", "http://127.0.0.1:9")
    result = cli("run", "--once", "--config", str(path), "--workers", value)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "--workers" in result.stderr and problem in result.stderr, result.stderr
