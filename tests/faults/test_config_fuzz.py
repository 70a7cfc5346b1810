"""Config: every invalid file makes ``anomaly check-config`` exit 2 with one line naming the key,
and hypothesis finds no input on which the loader raises anything but ConfigError.

tests/test_config.py holds the example-based table of invalid values; this adds the cases it
lacks (typos at every level, wrong container types, bad ports, empty lists) through the CLI,
and the fuzzing.
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from anomaly.cli import main
from anomaly.config import Config, config_from_dict, load_config
from anomaly.errors import ConfigError

VALID: dict[str, Any] = {
    "prometheus": {
        "url": "http://127.0.0.1:9090",
        "timeout_seconds": 5,
        "headers": {"X-Scope-OrgID": "a"},
        "auth": {"bearer_token_env": "HOME"},
        "tls": {"verify": True},
    },
    "pushgateway": {"url": "http://127.0.0.1:9091", "job": "j", "retries": 1},
    "tenant_label": "organization_id",
    "lookback": "7d",
    "step": "5m",
    "schedule": "*/5 * * * *",
    "detection": {"threshold": 0.5, "refit_interval": "1d"},
    "metrics": [
        {
            "name": "m",
            "query": "up",
            "labels": {"team": "x"},
            "forecast": {"horizon": "24h", "threshold": 1, "direction": "above"},
            "lookback": "2d",
        }
    ],
    "health": {"objectives": [{"metric": "m", "max": 1}], "weights": {"objectives": 1}},
    "log_level": "INFO",
}


def _set(path: str, value: Any) -> dict[str, Any]:
    raw = yaml.safe_load(yaml.safe_dump(VALID))
    node = raw
    parts = path.split(".")
    for p in parts[:-1]:
        node = node[int(p)] if isinstance(node, list) else node[p]
    if value is _DELETE:
        del node[parts[-1]]
    else:
        node[parts[-1]] = value
    return raw


_DELETE = object()


@pytest.mark.parametrize(
    ("path", "value", "key"),
    [
        ("lookbak", "7d", "lookbak"),
        ("metrics.0.querry", "up", "metrics[0].querry"),
        ("prometheus.tls.ca_fiel", "x", "prometheus.tls.ca_fiel"),
        ("health.objectives.0.maxx", 1, "health.objectives[0].maxx"),
        ("metrics", {"name": "m", "query": "up"}, "metrics"),
        ("metrics", [], "metrics"),
        ("metrics.0.query", "   ", "metrics[0].query"),
        ("metrics.0.query", _DELETE, "metrics[0].query"),
        ("metrics.0.name", _DELETE, "metrics[0].name"),
        ("prometheus.url", _DELETE, "prometheus.url"),
        ("prometheus.url", "http://127.0.0.1:99999", "prometheus.url"),
        ("prometheus.url", "http://", "prometheus.url"),
        ("pushgateway.url", 9091, "pushgateway.url"),
        ("pushgateway.job", "a/b", "pushgateway.job"),
        ("prometheus.headers", ["X-A: b"], "prometheus.headers"),
        ("prometheus.retries", 1.5, "prometheus.retries"),
        ("prometheus.tls.verify", "yes", "prometheus.tls.verify"),
        ("lookback", "30m", "lookback"),  # fewer than 10 steps
        ("lookback", "7days", "lookback"),
        ("metrics.0.lookback", "forever", "metrics[0].lookback"),
        ("detection.refit_interval", -1, "detection.refit_interval"),
        ("schedule", "* * *", "schedule"),
        ("prometheus", "http://127.0.0.1:9090", "prometheus"),
    ],
)
def test_check_config_names_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], path: str, value: Any, key: str
) -> None:
    f = tmp_path / "config.yaml"
    f.write_text(yaml.safe_dump(_set(path, value)))
    assert main(["check-config", str(f)]) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"anomaly: config error: {key}: "), err


def test_the_valid_base_is_valid(tmp_path: Path) -> None:
    f = tmp_path / "config.yaml"
    f.write_text(yaml.safe_dump(VALID))
    assert isinstance(load_config(f), Config)


# --------------------------------------------------------------------------- fuzzing

_KEYS = sorted(
    {
        k
        for section in (VALID, VALID["prometheus"], VALID["metrics"][0], VALID["health"])
        for k in section
    }
    | {"url", "job", "auth", "tls", "ca_file", "password_file", "username", "min", "max"}
)
_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from(["", " ", "5m", "7d", "0s", "1e9y", "http://127.0.0.1:1", "* * * * *", "up"])
    | st.text(max_size=20)
)
_values = st.recursive(
    _scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(_KEYS) | st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=20,
)


def _paths(node: Any, prefix: str = "") -> list[str]:
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, f"{prefix}.{k}" if prefix else k)
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, f"{prefix}.{i}")
    return out


_ALL_PATHS = _paths(VALID)


def _loads_or_config_error(raw: Any, base: Path) -> None:
    try:
        config = config_from_dict(raw, base_dir=base)
    except ConfigError as e:
        assert e.key in str(e)  # every message names its key
        return
    assert isinstance(config, Config)
    assert math.isfinite(config.lookback_seconds) and config.step_seconds > 0


@settings(
    max_examples=200, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
@given(raw=_values)
def test_arbitrary_structures_raise_only_config_error(raw: Any) -> None:
    _loads_or_config_error(raw, Path("/nonexistent-base"))


@settings(max_examples=250, deadline=None, derandomize=True)
@given(
    edits=st.lists(
        st.tuples(st.sampled_from(_ALL_PATHS), _values | st.just(_DELETE)), min_size=1, max_size=3
    )
)
def test_a_valid_config_with_any_value_replaced_raises_only_config_error(
    edits: list[tuple[str, Any]],
) -> None:
    raw = yaml.safe_load(yaml.safe_dump(VALID))
    for path, value in edits:
        node: Any = raw
        parts = path.split(".")
        try:
            for p in parts[:-1]:
                node = node[int(p)] if isinstance(node, list) else node[p]
            last: Any = int(parts[-1]) if isinstance(node, list) else parts[-1]
            if value is _DELETE:
                del node[last]
            else:
                node[last] = value
        except (KeyError, IndexError, TypeError, ValueError):
            continue  # an earlier edit removed or replaced the parent
    _loads_or_config_error(raw, Path("/nonexistent-base"))


@settings(max_examples=150, deadline=None, derandomize=True)
@given(text=st.text(max_size=200) | st.builds(yaml.safe_dump, _values))
def test_any_file_content_raises_only_config_error(text: str) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        f = Path(d) / "config.yaml"
        try:
            f.write_text(text, encoding="utf-8", errors="surrogateescape")
        except UnicodeEncodeError:
            f.write_bytes(text.encode("utf-8", "replace"))
        with contextlib.suppress(ConfigError):
            load_config(f)
