"""The house generator: the team's own :func:`anomaly_lab.synth.evaluation_scenario`.

24 tenants × 6 metrics, 8 days of 5-minute samples; every tenant on a whole-hour UTC offset
with a Saturday–Sunday weekend of its local calendar; multiplicative log-normal noise (AR(1)
on most metrics), Poisson counts for the queue, a cost counter read through
``rate(...[15m])``. Every anomaly kind is injected into a few (tenant, metric) pairs, live at
the newest point (spikes and dips on the last one or two points, the other kinds covering
the end), and six other pairs carry an incident that healed 2 to 5 days ago. The config is
the repository's ``config.yaml``: its queries, labels and health objectives.

This is the generator the detector was tuned on (``tuned=True``); the fast in-process figure
of :mod:`bench.detection_bench` judges the same scenarios at the newest point only.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import yaml
from anomaly_lab import synth

from bench.zoo import JUDGED_SECONDS, Generator, Incident, MetricEntry, Scenario

CONFIG_FILE = Path(__file__).resolve().parents[2] / "config.yaml"


def scenario_end(seed: int) -> float:
    """A fixed end time per seed, walking through the days of the week and the hours of the day,
    so that weekends and Monday mornings are part of every benchmark."""
    base = 1795305600.0  # Sunday 2026-11-22 00:00 UTC
    return base - (seed % 7) * 86400 - ((seed * 5) % 24) * 3600


def config_entries() -> tuple[tuple[MetricEntry, ...], tuple[Mapping[str, object], ...]]:
    """The detected metrics of ``config.yaml`` (query, labels) and the health objectives that
    refer to them (the forecast-only ``ai_spend_24h`` and its objective are left out)."""
    raw = yaml.safe_load(CONFIG_FILE.read_text())
    entries = tuple(
        MetricEntry(m["name"], m["query"], dict(m.get("labels") or {}))
        for m in raw["metrics"]
        if m.get("detect", True) and "forecast" not in m
    )
    names = {e.name for e in entries}
    objectives = tuple(
        dict(o) for o in (raw.get("health") or {}).get("objectives", []) if o["metric"] in names
    )
    return entries, objectives


def _note(inj: synth.Injection, step_seconds: float, end: float) -> str:
    """What an injection did, for the bench's list of misses."""
    until = end if inj.end is None else inj.end
    minutes = (until - inj.start) / 60.0
    length = (
        f"{round(minutes / 60, 1):g} h"
        if minutes >= 90
        else f"{minutes + step_seconds / 60:.0f} min"
    )
    still = ", still on" if inj.end is None else ""
    if inj.kind == "outage":
        return f"drop to 0 for {length}{still}"
    if inj.kind == "flatline":
        return f"value held for {length}{still}"
    mag = inj.magnitude if inj.magnitude is not None else 0.0
    if inj.kind == "variance_burst":
        return f"noise x{mag:g} for {length}{still}"
    if inj.kind == "dip":
        return f"-{100 * mag:.0f} % for {length}"
    if inj.kind == "trend_drift":
        return f"drift to {100 * mag:+.0f} % over {length}{still}"
    return f"{100 * mag:+.0f} % for {length}{still}"


def make_scenario(
    seed: int,
    workdir: Path,
    *,
    n_tenants: int = 24,
    counts: Mapping[str, int] | None = None,
    n_past: int = 6,
) -> Scenario:
    """Write the house scenario of ``seed`` to ``workdir/data.om`` and return it.

    ``n_tenants``, ``counts`` and ``n_past`` are :func:`~anomaly_lab.synth.evaluation_scenario`'s
    (smaller scenarios for tests).
    """
    dataset, _ = synth.evaluation_scenario(
        n_tenants=n_tenants, seed=seed, end=scenario_end(seed), counts=counts, n_past=n_past
    )
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "data.om"
    synth.write_openmetrics(dataset, path)
    entries, objectives = config_entries()
    end = dataset.end
    judged_from = end - JUDGED_SECONDS
    incidents = tuple(
        Incident(
            tenant=inj.tenant,
            metric=inj.metric,
            kind=inj.kind,
            start=inj.start,
            end=end + dataset.step_seconds if inj.end is None else inj.end,
            note=_note(inj, dataset.step_seconds, end),
        )
        for inj in dataset.injections
        if inj.start <= end and (inj.end is None or inj.end >= judged_from)
    )
    return Scenario(
        generator="house",
        seed=seed,
        openmetrics=path,
        end=end,
        step_seconds=float(dataset.step_seconds),
        metrics=entries,
        tenants=dataset.tenants,
        incidents=incidents,
        objectives=objectives,
    )


GENERATOR = Generator(
    name="house",
    make=make_scenario,
    tuned=True,
    seeds=(40, 43, 46),
    description="the team's own synth.evaluation_scenario: 24 tenants x 6 metrics at 5 m, "
    "whole-hour offsets, Saturday-Sunday weekends, every kind live at the newest point",
)
