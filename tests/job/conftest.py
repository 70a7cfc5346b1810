"""A small real world for the job's tests: four tenants' eleven days of the shipped config's
metrics in a real Prometheus, and a real Pushgateway."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from anomaly_lab import devstack, synth

from tests.conftest import Servers


@dataclass(frozen=True)
class World:
    stack: devstack.Stack
    dataset: synth.Dataset


@pytest.fixture(scope="package")
def world(servers: Servers) -> Iterator[World]:
    # Eleven days: the AI spend forecast reads ten (`lookback: 10d` in config.yaml).
    dataset = synth.generate(4, days=11.0, seed=3)
    with servers.stack(dataset=dataset, with_alertmanager=False) as stack:
        yield World(stack, dataset)
