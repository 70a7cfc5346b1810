"""The detection zoo: independent generators of multi-tenant scenarios, judged the same way.

Every generator writes one :class:`Scenario`: raw samples as Prometheus would have scraped
them (OpenMetrics text that ``promtool tsdb create-blocks-from openmetrics`` backfills), the
config entries a user would write to read them back (PromQL, labels), and the answer key
(:class:`Incident` s in the judged window, and which tenants are troubled). The runner
(:mod:`bench.detection_bench`) backfills a real Prometheus, replays the job every 5 minutes over
the judged window with ``run_once(config, now=T)``, and scores what was flagged against the
answer key, per generator.

Generators differ in design on purpose (see each module's docstring). Each declares whether its
design was tuned on (:attr:`Generator.tuned`: the house generator) and splits its seeds: the
``seeds`` a person may look at while tuning (misses diagnosed, changes tried) and the
``measure_seeds`` nobody looks at but through the bench's table. The measure seeds of the
generators whose design was not tuned on give the figures that count.

A generator is a module in this package with a module-level ``GENERATOR = Generator(...)``;
:data:`GENERATORS` lists them in the order the bench reports them.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

#: Kinds of incident the answer key knows; a generator uses the ones that suit its metrics.
KINDS = ("spike", "outage", "flatline", "level_shift", "variance_burst", "dip", "trend_drift")

#: The window the bench judges: the newest 30 minutes, one run every 5 minutes.
JUDGED_SECONDS = 1800.0
RUN_EVERY_SECONDS = 300.0


@dataclass(frozen=True)
class Incident:
    """One anomaly the answer key expects to be found.

    ``start``/``end`` are epoch seconds; ``end`` may lie after the scenario's end (still on).
    It counts as found when any run in the judged window flags ``(tenant, metric)``; a run that
    flags a pair without a live or judged incident is a false positive.
    """

    tenant: str
    metric: str
    """The config metric name (a :class:`MetricEntry` name)."""
    kind: str
    start: float
    end: float
    note: str = ""
    """Free text for the bench's list of misses (e.g. "13 % drop of a request rate")."""


@dataclass(frozen=True)
class MetricEntry:
    """One entry of the config's ``metrics:`` as a user of this scenario would write it."""

    name: str
    query: str
    labels: Mapping[str, str] = field(default_factory=dict)
    """e.g. ``{"team": "platform", "severity": "critical"}``."""
    detect: bool = True


@dataclass(frozen=True)
class Scenario:
    """One generated world, ready to backfill and judge.

    Attributes
    ----------
    generator : str
        The generator's name.
    seed : int
    openmetrics : Path
        OpenMetrics text (``# EOF`` terminated) with every raw sample, timestamps in seconds, no
        sample after :attr:`end`.
    end : float
        Epoch seconds of the newest sample: the last run of the bench happens at ``end``.
    step_seconds : float
        The config's ``step`` (the query resolution), e.g. 300.
    metrics : tuple of MetricEntry
        What the bench puts in the config (with ``tenant_label: organization_id``).
    tenants : tuple of str
    incidents : tuple of Incident
        Every incident live during the judged window ``[end - JUDGED_SECONDS, end]``. Incidents
        wholly in the training history are not listed here (they are part of the world, not of
        the key).
    objectives : tuple of mapping
        ``health.objectives`` entries for the config (``{"metric": ..., "max": ...}``).
    """

    generator: str
    seed: int
    openmetrics: Path
    end: float
    step_seconds: float
    metrics: tuple[MetricEntry, ...]
    tenants: tuple[str, ...]
    incidents: tuple[Incident, ...]
    objectives: tuple[Mapping[str, object], ...] = ()

    @property
    def troubled(self) -> frozenset[str]:
        """Tenants with an incident in the judged window (health should rank them lower)."""
        return frozenset(i.tenant for i in self.incidents)

    def to_json(self) -> str:
        """The scenario as JSON text (the bench's cache: data, never pickle)."""
        raw = dataclasses.asdict(self)
        raw["openmetrics"] = str(self.openmetrics)
        return json.dumps(raw)

    @classmethod
    def from_json(cls, text: str) -> Scenario:
        """The scenario :meth:`to_json` wrote."""
        raw = json.loads(text)
        return cls(
            **{
                **raw,
                "openmetrics": Path(raw["openmetrics"]),
                "metrics": tuple(MetricEntry(**m) for m in raw["metrics"]),
                "tenants": tuple(raw["tenants"]),
                "incidents": tuple(Incident(**i) for i in raw["incidents"]),
                "objectives": tuple(raw["objectives"]),
            }
        )


@dataclass(frozen=True)
class Generator:
    """A scenario generator.

    ``make(seed, workdir)`` writes the OpenMetrics file under ``workdir`` and returns the
    scenario; it must be deterministic in ``seed`` (``numpy.random.default_rng(seed)``).
    ``tuned`` says whether the detector was designed and tuned on this generator's data.
    """

    name: str
    make: Callable[[int, Path], Scenario]
    tuned: bool
    seeds: tuple[int, ...]
    """The tune side: seeds whose scenarios may be looked at while tuning."""
    description: str
    measure_seeds: tuple[int, ...] = ()
    """The measure side: seeds nobody looks at but through the bench's table (fixed; never
    move a seed from here to ``seeds`` after looking at it)."""


#: The generators' modules, in report order.
MODULES = ("house", "calendars", "exposition")


def generators() -> list[Generator]:
    """Every generator of :data:`MODULES` (importing each module)."""
    return [importlib.import_module(f"bench.zoo.{m}").GENERATOR for m in MODULES]
