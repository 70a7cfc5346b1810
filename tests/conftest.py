"""Shared fixtures. End-to-end fixtures start real servers via :mod:`anomaly_lab.devstack`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from anomaly_lab import devstack

ROOT = Path(__file__).resolve().parents[1]


def write_config(path: Path, stack: devstack.Stack, **overrides: Any) -> Path:
    """The repository's example config pointed at a dev stack, with overrides."""
    raw = yaml.safe_load((ROOT / "config.yaml").read_text())
    raw["prometheus"]["url"] = stack.prometheus_url
    raw["prometheus"]["retries"] = 1
    raw["pushgateway"]["url"] = stack.pushgateway_url
    raw["model_dir"] = str(path.parent / "models")
    raw.update(overrides)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


@pytest.fixture(scope="session")
def require_servers() -> None:
    for name in ("prometheus", "pushgateway", "promtool"):
        try:
            devstack.find_binary(name)
        except devstack.MissingBinaryError as e:
            pytest.fail(f"{e} (make test installs it)")


@pytest.fixture
def empty_stack(require_servers: None) -> Iterator[devstack.Stack]:
    with devstack.run_stack(with_alertmanager=False) as stack:
        yield stack
