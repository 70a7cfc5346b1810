"""Detection quality of the shipped decision rule on generated scenarios, as the job sees them.

Two sections.

**The house figure** (fast, in process; the "must not regress, >= 0.98" figure). For each
seed: the evaluation scenario (24 tenants × 6 metrics, every anomaly kind live at the newest
point, healed past incidents in some clean series), cut to the job's default 7-day lookback,
one model per metric fitted and the newest point scored — exactly what ``anomaly run --once``
does, without the servers (``tests/e2e/test_run_once.py`` does it with them). Prints TP/FP/FN,
F1 and recall per anomaly kind.

**The zoo** (:mod:`bench.zoo`): every generator, each of its seeds. The scenario is written and
backfilled once into a TSDB cached under ``bench/.cache/zoo/<generator>-<seed>/`` (rebuilt when
the generator's source changes); a real Prometheus serves it, a real Pushgateway takes the
pushes, and the job is replayed as the scheduler would run it: ``run_once(config, now=T)`` every
5 minutes over the judged window (the newest 30 minutes: 7 runs, the last at the scenario's
end), models stored between runs and refitted per the config. The config is the repository's
``config.yaml`` with the scenario's metrics, health objectives and step.

Judged per (tenant, metric) pair, all seeds of one side of a generator together:

* an incident is **found** when any run at or after its start flags its pair; a pair with an
  incident is a TP when one of its incidents is found, else a FN; a pair without one is a FP
  when any run flags it (a flag on an incident's pair before the incident starts counts
  neither way);
* **false positives per 1,000 series-runs**: flags on pairs without an incident over all
  series-runs of those pairs;
* **recall per kind** of incident;
* **health AUC**: the probability that a troubled tenant's health at the last run is below a
  quiet tenant's (same scenario; ties count 0.5).

Each generator has two fixed sides (:class:`bench.zoo.Generator`): its tune seeds, whose
misses and false positives are printed and may be studied while tuning, and its measure seeds,
of which only the table row is printed. A row is "tuned" when its seeds or its generator's
design were tuned on, else "measured only": the measure seeds of generators not designed on
are the figures that count, and the F1 gap between the two groups is printed.

    python -m bench.detection_bench [SEED ...]           # the house figure, then the zoo
    python -m bench.detection_bench --fast [SEED ...]    # the house figure only
    python -m bench.detection_bench --zoo-only [--generator NAME] [--zoo-seeds 1,2]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import importlib
import inspect
import logging
import shutil
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml
from anomaly_lab import devstack, synth

from anomaly.config import format_duration, load_config
from anomaly.job.run import run_once
from anomaly.models.scoring import AnomalyModel
from bench.zoo import JUDGED_SECONDS, MODULES, RUN_EVERY_SECONDS, Generator, Scenario
from bench.zoo.house import scenario_end

LOOKBACK_POINTS = 7 * 288 + 1
ROOT = Path(__file__).resolve().parents[1]
CACHE = Path(__file__).resolve().parent / ".cache" / "zoo"
#: Runs of the judged window: one every RUN_EVERY_SECONDS, the last at the scenario's end.
N_RUNS = int(round(JUDGED_SECONDS / RUN_EVERY_SECONDS)) + 1

# --------------------------------------------------------------------------- the house figure


def evaluate(seed: int) -> tuple[set, set, dict]:
    dataset, truth = synth.evaluation_scenario(n_tenants=24, seed=seed, end=scenario_end(seed))
    flagged: set[tuple[str, str]] = set()
    for metric in dataset.metrics:
        df = synth.to_frame(dataset, metric, as_queried=True).iloc[-LOOKBACK_POINTS:]
        times = np.array([t.timestamp() for t in df.index])
        values = df.to_numpy(dtype=float)
        model = AnomalyModel(step_seconds=dataset.step_seconds).fit(times, values)
        result = model.score(times, values, n_eval=1)
        for j, tenant in enumerate(df.columns):
            if result.is_anomaly[-1, j]:
                flagged.add((str(tenant), metric))
    kinds = {(i.tenant, i.metric): i.kind for i in dataset.injections if i.active(dataset.end)}
    return flagged, truth, kinds


def house_figure(seeds: Sequence[int]) -> None:
    """Print the fast in-process figure of the house generator (newest point only)."""
    tp = fp = fn = 0
    caught: Counter[str] = Counter()
    total: Counter[str] = Counter()
    t0 = time.perf_counter()
    print(f"{'seed':>5} {'TP':>4} {'FP':>4} {'FN':>4}  false positives / misses")
    for seed in seeds:
        flagged, truth, kinds = evaluate(seed)
        s_tp, s_fp, s_fn = flagged & truth, flagged - truth, truth - flagged
        tp, fp, fn = tp + len(s_tp), fp + len(s_fp), fn + len(s_fn)
        for pair in truth:
            total[kinds.get(pair, "?")] += 1
            caught[kinds.get(pair, "?")] += pair in flagged
        detail = ", ".join(
            [f"FP {t}/{m}" for t, m in sorted(s_fp)]
            + [f"FN {t}/{m} ({kinds.get((t, m))})" for t, m in sorted(s_fn)]
        )
        print(f"{seed:>5} {len(s_tp):>4} {len(s_fp):>4} {len(s_fn):>4}  {detail}")
    precision = tp / max(tp + fp, 1)
    recall = tp / max(tp + fn, 1)
    f1 = 2 * precision * recall / max(precision + recall, 1e-9)
    print(
        f"\n{len(seeds)} scenarios, 144 series each: precision {precision:.3f}, recall {recall:.3f}, "
        f"F1 {f1:.3f}, false positives {fp} ({fp / len(seeds):.2f} per scenario), "
        f"{time.perf_counter() - t0:.1f}s"
    )
    print("recall per kind: " + ", ".join(f"{k} {caught[k]}/{total[k]}" for k in sorted(total)))


# --------------------------------------------------------------------------- the zoo: data


def available_generators(names: Sequence[str] | None = None) -> list[Generator]:
    """The generators of :data:`bench.zoo.MODULES` (or of ``names``) whose module exists; a
    module not written yet is reported and left out (an error inside one is raised)."""
    out = []
    for module in names or MODULES:
        try:
            out.append(importlib.import_module(f"bench.zoo.{module}").GENERATOR)
        except ModuleNotFoundError as e:
            if e.name != f"bench.zoo.{module}":
                raise
            print(f"  generator {module}: bench/zoo/{module}.py does not exist yet; left out")
    return out


def _fingerprint(generator: Generator) -> str:
    """Hash of the sources a generator's scenarios depend on: its module, the zoo's interface
    and the house data generator (a change to any of them rebuilds the cache; a change to
    anything else a generator imports needs ``--rebuild``)."""
    make = generator.make
    while isinstance(make, functools.partial):
        make = make.func
    files = {Path(inspect.getfile(make)), Path(__file__).parent / "zoo" / "__init__.py"}
    files.add(Path(synth.__file__))
    digest = hashlib.sha1()
    for path in sorted(files):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def prepare(
    generator: Generator, seed: int, *, cache: Path = CACHE, rebuild: bool = False
) -> tuple[Scenario, Path, float | None]:
    """The scenario of ``(generator, seed)`` and its backfilled TSDB directory.

    Cached under ``cache/<generator>-<seed>/`` (``scenario.json``, ``tsdb/``); made and
    backfilled when missing, when the generator's sources changed, or with ``rebuild``. The
    OpenMetrics file is deleted once backfilled (the TSDB holds the same samples). Returns the
    seconds spent making it (``None`` when it came from the cache).
    """
    root = cache / f"{generator.name}-{seed}"
    marker, tsdb = root / "scenario.json", root / "tsdb"
    stamp = _fingerprint(generator)
    stamp_file = root / "fingerprint"
    cached = marker.is_file() and tsdb.is_dir() and stamp_file.is_file()
    if cached and not rebuild and stamp_file.read_text() == stamp:
        return Scenario.from_json(marker.read_text()), tsdb, None
    print(f"  {generator.name} seed {seed}: making and backfilling it into {root}", flush=True)
    t0 = time.perf_counter()
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    scenario = generator.make(seed, root)
    devstack.create_blocks(scenario.openmetrics, tsdb, timeout_seconds=3600)
    scenario.openmetrics.unlink(missing_ok=True)
    stamp_file.write_text(stamp)
    marker.write_text(scenario.to_json())  # written last: its presence means the cache is whole
    return scenario, tsdb, time.perf_counter() - t0


# --------------------------------------------------------------------------- the zoo: replay


@dataclass(frozen=True)
class SeriesRun:
    """One scored series in one run of the replay."""

    run: int
    at: float
    tenant: str
    metric: str
    score: float
    is_anomaly: bool
    actual: float
    expected: float
    lower: float
    upper: float

    def describe(self) -> str:
        return (
            f"run {self.run}: score {self.score:.2f}, actual {self.actual:.4g} vs expected "
            f"{self.expected:.4g} [{self.lower:.4g}, {self.upper:.4g}]"
        )


@dataclass
class Replay:
    """What the replayed runs of one scenario found."""

    scenario: Scenario
    runs: tuple[float, ...]
    scored: list[SeriesRun] = field(default_factory=list)
    health: dict[str, float] = field(default_factory=dict)
    """Tenant -> health score at the last run."""
    problems: list[str] = field(default_factory=list)
    """The job's warnings and failed metrics, each once with the runs it occurred in."""
    seconds: float = 0.0


def write_config(scenario: Scenario, path: Path, prometheus_url: str, pushgateway_url: str) -> Path:
    """The repository's ``config.yaml`` pointed at the servers, with the scenario's metrics,
    health objectives and step, and a model directory beside ``path``."""
    raw = yaml.safe_load((ROOT / "config.yaml").read_text())
    raw["prometheus"] = {"url": prometheus_url, "timeout_seconds": 120, "retries": 1}
    raw["pushgateway"]["url"] = pushgateway_url
    raw["model_dir"] = str(path.parent / "models")
    raw["tenant_label"] = "organization_id"
    raw["step"] = format_duration(scenario.step_seconds)
    raw["lookback"] = "7d"
    raw["log_level"] = "WARNING"
    raw["metrics"] = [
        {"name": m.name, "query": m.query, "labels": dict(m.labels)}
        | ({} if m.detect else {"detect": False})
        for m in scenario.metrics
    ]
    raw.setdefault("health", {})["objectives"] = [dict(o) for o in scenario.objectives]
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


class _Capture(logging.Handler):
    """Keeps the messages of the records it is handed."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextlib.contextmanager
def _job_log() -> Iterator[list[str]]:
    """The job's log while replaying: INFO lines off, warnings kept for the report instead of
    printed (the same warning every run would flood the output)."""
    logger = logging.getLogger("anomaly")
    capture = _Capture()
    level, propagate = logger.level, logger.propagate
    logger.setLevel(logging.WARNING)
    logger.propagate = False
    logger.addHandler(capture)
    try:
        yield capture.messages
    finally:
        logger.removeHandler(capture)
        logger.setLevel(level)
        logger.propagate = propagate


def _runs(runs: Sequence[int]) -> str:
    """``[0, 1, 2, 5]`` -> ``"runs 0-2,5"``."""
    parts: list[str] = []
    for k in sorted(set(runs)):
        if parts and parts[-1].split("-")[-1] == str(k - 1):
            parts[-1] = f"{parts[-1].split('-')[0]}-{k}"
        else:
            parts.append(str(k))
    return ("run " if len(runs) == 1 else "runs ") + ",".join(parts)


def replay(
    scenario: Scenario,
    prometheus_url: str,
    pushgateway_url: str,
    workdir: Path,
    *,
    n_runs: int = N_RUNS,
    workers: int | None = None,
) -> Replay:
    """Run the job ``n_runs`` times, every :data:`RUN_EVERY_SECONDS`, the last at the
    scenario's end, against servers that hold its data; collect what each run scored, the
    health at the last run, and the job's warnings and failed metrics."""
    config = load_config(
        write_config(scenario, workdir / "config.yaml", prometheus_url, pushgateway_url)
    )
    times = tuple(scenario.end - (n_runs - 1 - k) * RUN_EVERY_SECONDS for k in range(n_runs))
    out = Replay(scenario, times)
    problems: dict[str, list[int]] = defaultdict(list)
    t0 = time.perf_counter()
    with _job_log() as warnings:
        for k, at in enumerate(times):
            seen = len(warnings)
            report = run_once(config, now=at, workers=workers)
            out.scored += [
                SeriesRun(
                    run=k,
                    at=at,
                    tenant=str(f.key.tenant),
                    metric=f.metric,
                    score=f.score,
                    is_anomaly=f.is_anomaly,
                    actual=f.actual,
                    expected=f.expected,
                    lower=f.lower,
                    upper=f.upper,
                )
                for f in report.findings
            ]
            for o in report.metrics_failed:
                problems[f"metric {o.metric.name} FAILED: {o.error}"].append(k)
            for message in warnings[seen:]:
                problems[message].append(k)
            out.health = {h.tenant: h.score for h in report.health}
    out.problems = [f"{_runs(runs)}: {message}" for message, runs in problems.items()]
    out.seconds = time.perf_counter() - t0
    return out


def run_scenario(
    scenario: Scenario, tsdb: Path, *, n_runs: int = N_RUNS, workers: int | None = None
) -> Replay:
    """:func:`replay` against a fresh Prometheus (a copy of ``tsdb``) and Pushgateway."""
    with (
        tempfile.TemporaryDirectory(prefix="anomaly-zoo-") as tmp,
        devstack.run_pushgateway() as pgw,
        devstack.run_prometheus(prebuilt_data_dir=tsdb, retention="100y") as (prom, _),
    ):
        return replay(scenario, prom.url, pgw.url, Path(tmp), n_runs=n_runs, workers=workers)


# --------------------------------------------------------------------------- the zoo: figures


@dataclass
class Figures:
    """The judged figures of one or more replays (add them with :meth:`add`)."""

    scenarios: int = 0
    pairs: int = 0
    tp: int = 0
    fp: int = 0
    fn: int = 0
    clean_series_runs: int = 0
    clean_flags: int = 0
    kinds_found: Counter[str] = field(default_factory=Counter)
    kinds_total: Counter[str] = field(default_factory=Counter)
    auc_sum: float = 0.0
    auc_pairs: int = 0
    misses: list[str] = field(default_factory=list)
    false_positives: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def precision(self) -> float:
        return self.tp / max(self.tp + self.fp, 1)

    @property
    def recall(self) -> float:
        return self.tp / max(self.tp + self.fn, 1)

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / max(p + r, 1e-9)

    @property
    def fp_per_1000(self) -> float:
        """Flags on pairs without an incident per 1,000 series-runs of those pairs."""
        return 1000.0 * self.clean_flags / max(self.clean_series_runs, 1)

    @property
    def health_auc(self) -> float:
        return self.auc_sum / self.auc_pairs if self.auc_pairs else float("nan")

    def add(self, other: Figures) -> Figures:
        for name in ("scenarios", "pairs", "tp", "fp", "fn", "clean_series_runs", "clean_flags"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.kinds_found.update(other.kinds_found)
        self.kinds_total.update(other.kinds_total)
        self.auc_sum += other.auc_sum
        self.auc_pairs += other.auc_pairs
        self.misses += other.misses
        self.false_positives += other.false_positives
        self.problems += other.problems
        return self


def judge(rep: Replay) -> Figures:
    """Score one replay against its scenario's answer key."""
    sc = rep.scenario
    fig = Figures(scenarios=1, problems=[f"seed {sc.seed} {p}" for p in rep.problems])
    by_pair: dict[tuple[str, str], list[SeriesRun]] = defaultdict(list)
    for s in rep.scored:
        by_pair[s.tenant, s.metric].append(s)
    incidents = defaultdict(list)
    for inc in sc.incidents:
        incidents[inc.tenant, inc.metric].append(inc)
    fig.pairs = len(set(by_pair) | set(incidents))
    for pair, incs in sorted(incidents.items()):
        runs = by_pair.get(pair, [])
        found_any = False
        for inc in incs:
            fig.kinds_total[inc.kind] += 1
            after = [s for s in runs if s.at >= inc.start]
            found = any(s.is_anomaly for s in after)
            fig.kinds_found[inc.kind] += found
            found_any |= found
            if not found:
                best = max(after, key=lambda s: s.score, default=None)
                seen = f"best {best.describe()}" if best else "never scored after its start"
                fig.misses.append(
                    f"seed {sc.seed} {pair[0]}/{pair[1]} {inc.kind} ({inc.note}); {seen}"
                )
        fig.tp += found_any
        fig.fn += not found_any
    for pair, runs in sorted(by_pair.items()):
        if pair in incidents:
            continue
        flags = [s for s in runs if s.is_anomaly]
        fig.clean_series_runs += len(runs)
        fig.clean_flags += len(flags)
        if flags:
            fig.fp += 1
            first = flags[0]
            fig.false_positives.append(
                f"seed {sc.seed} {pair[0]}/{pair[1]}: flagged in runs "
                f"{','.join(str(s.run) for s in flags)}; first {first.describe()}"
            )
    troubled = [h for t, h in rep.health.items() if t in sc.troubled]
    quiet = [h for t, h in rep.health.items() if t not in sc.troubled]
    for a in troubled:
        for b in quiet:
            fig.auc_sum += 1.0 if a < b else 0.5 if a == b else 0.0
            fig.auc_pairs += 1
    return fig


# --------------------------------------------------------------------------- the zoo: report


def _kinds(fig: Figures) -> str:
    return ", ".join(
        f"{k} {fig.kinds_found[k]}/{fig.kinds_total[k]}" for k in sorted(fig.kinds_total)
    )


def zoo(
    generators: Sequence[Generator],
    *,
    seeds: Sequence[int] | None = None,
    rebuild: bool = False,
    workers: int | None = None,
    cache: Path = CACHE,
) -> tuple[dict[str, Figures], list[str]]:
    """Replay and judge every scenario of ``generators`` (their own seeds, or ``seeds``);
    print progress, the misses and false positives, and the table. Returns the figures per
    generator and the scenarios that failed (one line each)."""
    # One row per generator and side: its tune seeds (looked at while tuning) and its measure
    # seeds (only ever seen through this table); ``seeds`` overrides both with one row, tune
    # side unless it holds a measure seed.
    units: list[tuple[str, Generator, tuple[int, ...], bool]] = []
    for gen in generators:
        if seeds:
            # Seeds off the generator's measure side are tune side: their cases are printed.
            looked = gen.tuned or not set(seeds) & set(gen.measure_seeds)
            units.append((f"{gen.name} tune" if looked else gen.name, gen, tuple(seeds), looked))
            continue
        units.append((f"{gen.name} tune", gen, gen.seeds, True))
        if gen.measure_seeds:
            units.append((f"{gen.name} measure", gen, gen.measure_seeds, gen.tuned))
    results: dict[str, Figures] = {}
    failed: list[str] = []
    t_all = time.perf_counter()
    for label, gen, unit_seeds, _ in units:
        fig = results.setdefault(label, Figures())
        for seed in unit_seeds:
            t0 = time.perf_counter()
            try:
                scenario, tsdb, made = prepare(gen, seed, cache=cache, rebuild=rebuild)
                rep = run_scenario(scenario, tsdb, workers=workers)
            except Exception as e:  # one broken scenario is reported, the others still run
                failed.append(f"{gen.name} seed {seed}: {type(e).__name__}: {e}")
                print(f"  {gen.name} seed {seed}: FAILED: {type(e).__name__}: {e}", flush=True)
                continue
            one = judge(rep)
            fig.add(one)
            per_run = Counter(s.run for s in rep.scored if s.is_anomaly)
            print(
                f"  {gen.name} seed {seed}: {len(scenario.tenants)} tenants, "
                f"{len(scenario.metrics)} metrics, {len(scenario.incidents)} incidents; "
                + ("cached" if made is None else f"made and backfilled in {made:.0f}s")
                + f"; {len(rep.runs)} runs in {rep.seconds:.0f}s (flags per run "
                f"{'/'.join(str(per_run[k]) for k in range(len(rep.runs)))}): TP {one.tp} "
                f"FP {one.fp} FN {one.fn}, health AUC {one.health_auc:.2f} "
                f"[{time.perf_counter() - t0:.0f}s]",
                flush=True,
            )
    for label, _, _, tuned in units:
        fig = results[label]
        if not tuned:  # the measure side's cases stay unseen: only its table row is printed
            continue
        if fig.misses or fig.false_positives or fig.problems:
            print(f"\n{label}:")
        for line in fig.misses:
            print(f"  miss  {line}")
        for line in fig.false_positives:
            print(f"  FP    {line}")
        for line in fig.problems:
            print(f"  note  {line}")
    print()
    print(
        f"{'generator / seeds':<22} {'used':<14} {'scen':>4} {'pairs':>5} {'TP':>4} {'FP':>4} "
        f"{'FN':>4} {'prec':>5} {'recall':>6} {'F1':>5} {'FP/1k series-runs':>17} "
        f"{'health AUC':>10}"
    )
    for label, _, unit_seeds, tuned in units:
        f = results[label]
        used = "tuned" if tuned else "measured only"
        print(
            f"{label + ' ' + ','.join(map(str, unit_seeds)):<22} {used:<14} {f.scenarios:>4} "
            f"{f.pairs:>5} {f.tp:>4} {f.fp:>4} {f.fn:>4} {f.precision:>5.3f} {f.recall:>6.3f} "
            f"{f.f1:>5.3f} {f.fp_per_1000:>17.2f} {f.health_auc:>10.2f}"
        )
    for label, _, _, _ in units:
        print(f"recall per kind, {label}: {_kinds(results[label])}")
    tuned = [label for label, _, _, t in units if t and results[label].scenarios]
    measured = [label for label, _, _, t in units if not t and results[label].scenarios]
    if tuned and measured:
        a = Figures()
        b = Figures()
        for name in tuned:
            a.add(results[name])
        for name in measured:
            b.add(results[name])
        print(
            f"F1 gap: tuned ({' + '.join(tuned)}) {a.f1:.3f} - measured only "
            f"({' + '.join(measured)}) {b.f1:.3f} = {a.f1 - b.f1:+.3f}; "
            f"false positives per 1,000 series-runs {a.fp_per_1000:.2f} vs {b.fp_per_1000:.2f}"
        )
    else:
        print("F1 gap: needs a tuned and a measured-only side; ran " + ", ".join(results))
    for line in failed:
        print(f"FAILED {line}")
    n = sum(f.scenarios for f in results.values())
    print(f"zoo: {n} scenarios in {time.perf_counter() - t_all:.0f}s")
    return results, failed


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.detection_bench",
        description=__doc__.split("\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("seeds", nargs="*", type=int, help="seeds of the house figure (default 40..49)")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--fast", action="store_true", help="the house figure only")
    what.add_argument("--zoo-only", action="store_true", help="the zoo only")
    p.add_argument(
        "--generator",
        action="append",
        choices=MODULES,
        help="a zoo generator to run (repeatable; default all)",
    )
    p.add_argument(
        "--zoo-seeds",
        type=lambda s: [int(x) for x in s.split(",")],
        help="comma-separated seeds for every zoo generator (default: each generator's own)",
    )
    p.add_argument("--rebuild", action="store_true", help="remake the cached zoo scenarios")
    p.add_argument("--workers", type=int, help="the job's worker processes (default: config's)")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    if not args.zoo_only:
        house_figure(args.seeds or list(range(40, 50)))
    if args.fast:
        return 0
    if not args.zoo_only:
        print("\n-- the zoo: the job replayed every 5 minutes on real servers (bench/zoo)")
    _, failed = zoo(
        available_generators(args.generator),
        seeds=args.zoo_seeds,
        rebuild=args.rebuild,
        workers=args.workers,
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
