"""Shared fixtures; the one place tests get real servers.

Every Prometheus, Pushgateway and Alertmanager a test talks to is started here, through
:mod:`anomaly_lab.devstack`, on a free loopback port, and stopped afterwards:

- ``prometheus`` (session): the URL of a bare Prometheus, no data, no targets; for evaluating
  expressions.
- ``pushgateway``, ``alertmanager`` (each test): the URL of a fresh, empty one, default config.
- ``promtool``, ``amtool`` (session): paths of the tools.
- ``servers`` (session): starts anything else (a stack with a dataset and rules, an
  Alertmanager with a given config) as context managers, from fixtures of any scope.

A server binary that is not installed fails the test in one line naming the package to install
(``make test`` installs them all); it is never skipped. Free ports come from
:func:`anomaly_lab.devstack.free_port`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml
from anomaly_lab import devstack, synth

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


class Servers:
    """Starts :mod:`anomaly_lab.devstack` servers for tests.

    Each method first checks the binaries it needs; a missing one fails the test with one line
    saying what to install.
    """

    def binary(self, server: str) -> str:
        """Path of `server`'s binary (``prometheus``, ``promtool``, ``pushgateway``,
        ``alertmanager``, ``amtool``)."""
        try:
            return devstack.find_binary(server)
        except devstack.MissingBinaryError as e:
            missing = str(e)
        pytest.fail(f"{missing} (make test installs it)", pytrace=False)  # outside: no chain

    def require(self, *servers: str) -> None:
        """Fail unless every one of `servers` is installed."""
        for server in servers:
            self.binary(server)

    @contextlib.contextmanager
    def prometheus(self, **kwargs: Any) -> Iterator[devstack.Server]:
        """:func:`~anomaly_lab.devstack.run_prometheus` with `kwargs`."""
        self.require("prometheus", *self._promtool_for(kwargs.get("dataset")))
        with devstack.run_prometheus(**kwargs) as (server, _):
            yield server

    @contextlib.contextmanager
    def pushgateway(self) -> Iterator[devstack.Server]:
        """An empty Pushgateway."""
        self.require("pushgateway")
        with devstack.run_pushgateway() as server:
            yield server

    @contextlib.contextmanager
    def alertmanager(
        self, config: str | os.PathLike[str] | Mapping[str, Any] | None = None
    ) -> Iterator[devstack.Server]:
        """An Alertmanager with `config` (default: every alert to a receiver sending nothing)."""
        self.require("alertmanager")
        with devstack.run_alertmanager(config) as server:
            yield server

    @contextlib.contextmanager
    def stack(
        self,
        dataset: synth.Dataset | None = None,
        rule_files: Sequence[str | os.PathLike[str]] = (),
        alertmanager_config: str | os.PathLike[str] | Mapping[str, Any] | None = None,
        *,
        with_alertmanager: bool = True,
        **kwargs: Any,
    ) -> Iterator[devstack.Stack]:
        """:func:`~anomaly_lab.devstack.run_stack`: Prometheus holding `dataset`, scraping a
        Pushgateway and (unless ``with_alertmanager=False``) alerting an Alertmanager."""
        alertmanager = ("alertmanager",) if with_alertmanager else ()
        self.require("prometheus", "pushgateway", *alertmanager, *self._promtool_for(dataset))
        with devstack.run_stack(
            dataset,
            rule_files,
            alertmanager_config,
            with_alertmanager=with_alertmanager,
            **kwargs,
        ) as stack:
            yield stack

    @staticmethod
    def _promtool_for(dataset: object) -> tuple[str, ...]:
        """promtool backfills a dataset before Prometheus starts."""
        return ("promtool",) if dataset is not None else ()


@pytest.fixture(scope="session")
def servers() -> Servers:
    return Servers()


@pytest.fixture(scope="session")
def promtool(servers: Servers) -> str:
    return servers.binary("promtool")


@pytest.fixture(scope="session")
def amtool(servers: Servers) -> str:
    return servers.binary("amtool")


@pytest.fixture(scope="session")
def prometheus(servers: Servers) -> Iterator[str]:
    """URL of a bare Prometheus shared by the session: nothing stored, nothing scraped, so tests
    that only evaluate expressions cannot disturb each other."""
    with servers.prometheus() as server:
        yield server.url


@pytest.fixture
def pushgateway(servers: Servers) -> Iterator[str]:
    """URL of an empty Pushgateway of this test's own."""
    with servers.pushgateway() as server:
        yield server.url


@pytest.fixture
def alertmanager(servers: Servers) -> Iterator[str]:
    """URL of an Alertmanager of this test's own: default config, no alerts, no silences."""
    with servers.alertmanager() as server:
        yield server.url
