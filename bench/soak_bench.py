"""Live soak: how long from an incident's onset to the page, with the product as shipped.

The product deployed as a user deploys it, in real time, on loopback:

- a **live exporter** in this process (:mod:`bench.soak.world`): 12 tenants (``--tenants``),
  each on its own local calendar, exposing the shipped ``config.yaml``'s metrics plus the
  security team's failed sign-ins, values following daily shapes with seeded noise;
- beneath it, **8 days of history** (``--history-days``) of the same world at 5-minute
  resolution (the last 4 hours at the scrape interval, so that the rates of the points the
  runs judge, and their trailing windows, hold no seam between the two), backfilled into the
  TSDB with ``promtool`` before Prometheus starts, so the live scrapes continue it without a
  seam;
- a real **Prometheus** scraping the exporter and the Pushgateway every 15 s, evaluating the
  **shipped** ``deploy/prometheus/anomaly-rules.yml`` every 15 s, alerting a real
  **Alertmanager** that runs the **shipped** ``deploy/alertmanager/alertmanager.yml`` with only
  the receivers' integrations replaced by webhooks, one local server per receiver (so each
  notification's receiver is known); routes, timers, inhibitions untouched;
- a real **Pushgateway** (no persistence) and ``anomaly serve`` (a subprocess) with the shipped
  config (its schedule and metrics, plus ``auth_failures`` for the security team)
  pointed at these servers.

Once the job's first run has pushed (the soak's start), incidents begin on five tenants at
known instants (5 minutes after the start, then 4 minutes apart, so they meet a 5-minute
step at five different phases): error ratio ×10 (platform, critical), request rate to 3 %
(platform, critical: OrganizationDown), auth failures ×25 (security, critical), p95 latency ×3
(platform, warning), AI cost rate ×8 (ai, warning). They last until the end; the other seven
tenants stay quiet. For ``--minutes`` (default 50) the bench polls the Pushgateway and
Prometheus every 2 s and records every notification's arrival.

It reports, per incident, onset → the job's first flag (the push carrying
``anomaly_detected == 1``) → the alert firing (Prometheus' ``/api/v1/alerts``) → the first
notification, and which receiver got it beside the one the escalation matrix names
(``amtool config routes test``); then every false notification (a quiet tenant, a metric
without an incident, a job-wide alert), every duplicate (a second notification for one
incident: two rules, a group that changed, a flap), the job's flags without an incident, and a
summary: critical onset → page p95, warnings onset → notification, counts. The table is
printed; the whole record goes to ``bench/out/soak-<UTC time>.json`` (``--json``).

    python -m bench.soak_bench                  # 50 minutes, 12 tenants (7 quiet)
    python -m bench.soak_bench --quick          # 25 minutes, 8 tenants, incidents 1 min apart
    python -m bench.soak_bench --minutes 30 --seed 3

Nothing is shortened: with the shipped ``for:`` and schedule a page takes minutes, which is
what this measures. (The test ``tests/lab/test_soak_bench.py`` drives :func:`run_soak` with
shortened rules and routing, and incidents already on when the job starts, to check the
instrument itself in under a minute; the command line offers neither.)
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import math
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from anomaly_lab import devstack, synth
from anomaly_lab.webhook import WebhookReceiver, run_webhook_receiver

from anomaly.config import parse_duration
from bench.soak import report, world
from bench.soak.watch import Watcher, flags_of

ROOT = Path(__file__).resolve().parents[1]
OUT = Path(__file__).resolve().parent / "out"
EXPORTER_JOB = "processaudit"


@dataclass(frozen=True)
class Settings:
    """One soak. Defaults are the full soak with everything shipped."""

    tenants: int = 12
    kinds: tuple[str, ...] = world.DEFAULT_KINDS
    """Incident kinds (keys of :data:`bench.soak.world.KINDS`), one tenant each."""
    minutes: float = 50.0
    """Observed from the soak's start (the job's first push)."""
    lead_seconds: float = 300.0
    """From the start to the first onset."""
    spacing_seconds: float = 240.0
    """Between onsets (4 minutes meets a 5-minute schedule at five phases)."""
    history_days: float = 8.0
    seed: int = 0
    scrape_interval_seconds: float = 15.0
    evaluation_interval_seconds: float = 15.0
    alert_resend_delay_seconds: float = 60.0
    """Prometheus' default."""
    poll_seconds: float = 2.0
    config_file: Path = ROOT / "config.yaml"
    rules_file: Path = devstack.RULES_FILE
    alertmanager_file: Path = devstack.ALERTMANAGER_FILE
    schedule: str | None = None
    """``None``: the config's own."""
    stop_when_paged_seconds: float | None = None
    """End early this long after every incident reached its expected receiver (tests)."""
    head_start_seconds: float | None = None
    """Tests: the incidents began this long before the last boundary of the job's ``step``
    grid before the setup, so the history ends inside them and the job's first run meets them
    (no wait for the schedule); ``lead_seconds`` is then unused. None: they begin
    ``lead_seconds`` after the start."""

    def __post_init__(self) -> None:
        if self.minutes <= 0:
            raise ValueError(f"`minutes` must be positive, got {self.minutes}")
        if self.tenants < len(self.kinds):
            raise ValueError(
                f"`tenants` must be at least the {len(self.kinds)} incidents, got {self.tenants}"
            )


QUICK = Settings(tenants=8, minutes=25.0, lead_seconds=120.0, spacing_seconds=60.0)
"""``--quick``: the shipped timings still, five incidents a minute apart, three quiet tenants."""


def expected_receiver(amtool: str, alertmanager_file: Path, labels: Mapping[str, str]) -> str:
    """The receiver the routing at `alertmanager_file` gives an alert with `labels`."""
    result = subprocess.run(
        [
            amtool,
            "config",
            "routes",
            "test",
            f"--config.file={alertmanager_file}",
            *(f"{k}={v}" for k, v in labels.items()),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout.strip()


def job_config(settings: Settings, stack: devstack.Stack, model_dir: Path) -> dict[str, Any]:
    """The shipped config pointed at the stack, with the security team's metric added."""
    raw: dict[str, Any] = yaml.safe_load(settings.config_file.read_text())
    raw["prometheus"]["url"] = stack.prometheus_url
    raw["pushgateway"]["url"] = stack.pushgateway_url
    raw["model_dir"] = str(model_dir)
    if settings.schedule is not None:
        raw["schedule"] = settings.schedule
    if not any(m["name"] == world.AUTH_FAILURES_METRIC["name"] for m in raw["metrics"]):
        raw["metrics"].append(dict(world.AUTH_FAILURES_METRIC))
    return raw


@contextlib.contextmanager
def _receivers(names: Sequence[str]) -> Iterator[dict[str, WebhookReceiver]]:
    with contextlib.ExitStack() as stack:
        yield {name: stack.enter_context(run_webhook_receiver()) for name in names}


def _all_paged(
    notes: Sequence[report.Notification],
    incidents: Sequence[world.Incident],
    expected: Mapping[world.Incident, str],
) -> bool:
    """Whether every incident has a firing notification at its expected receiver."""
    for inc in incidents:
        if not any(
            n.receiver == expected[inc]
            and n.status == "firing"
            and any(report.owner(a, n.received_at, [inc]) for a in n.alerts)
            for n in notes
        ):
            return False
    return True


def _incidents(
    settings: Settings, chosen: Mapping[str, str], first_onset: float
) -> list[world.Incident]:
    """The settings' incidents, the first at `first_onset`, then every ``spacing_seconds``."""
    return [
        world.Incident(
            world.KINDS[kind],
            chosen[kind],
            float(round(first_onset + i * settings.spacing_seconds)),
        )
        for i, kind in enumerate(settings.kinds)
    ]


def _notifications(hooks: Mapping[str, WebhookReceiver]) -> list[report.Notification]:
    return sorted(
        (
            report.Notification.from_payload(at, name, payload)
            for name, hook in hooks.items()
            for at, payload in hook.receipts
        ),
        key=lambda n: n.received_at,
    )


def run_soak(
    settings: Settings, *, say: Callable[[str], None] = print
) -> tuple[report.SoakResult, dict[str, Any]]:
    """Run one soak (see the module docstring); returns the judged result and the record
    written as JSON (settings, incidents, events, summary). `say` gets progress lines."""
    amtool = devstack.find_binary("amtool")
    tenants = synth.tenant_names(settings.tenants)
    chosen, quiet = world.pick_tenants(tenants, settings.kinds, settings.seed)
    now = time.time()
    # Room for the history, setup, the lead, the soak and stopping.
    the_world = world.World(
        tenants,
        origin=now - settings.history_days * 86400 - 600,
        end=now + 3600 + 60 * settings.minutes,
        seed=settings.seed,
    )
    incidents: list[world.Incident] = []
    if settings.head_start_seconds is not None:
        raw_step = yaml.safe_load(settings.config_file.read_text()).get("step", "5m")
        step = parse_duration(str(raw_step))
        first = math.floor(now / step) * step - settings.head_start_seconds
        incidents = _incidents(settings, chosen, first)
        the_world.schedule(incidents)
    routing: dict[str, Any] = yaml.safe_load(settings.alertmanager_file.read_text())

    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="anomaly-soak-")))
        # The exporter first: the history carries the job and instance its scrapes will get.
        exporter_url = stack.enter_context(world.serve_exporter(world.Exporter(the_world)))
        tsdb = _backfill(the_world, settings, exporter_url, workdir, say)
        hooks = stack.enter_context(_receivers([r["name"] for r in routing["receivers"]]))
        am_path = workdir / "alertmanager.yml"
        am_config = devstack.webhook_receivers(
            settings.alertmanager_file,
            {name: hook.url for name, hook in hooks.items()},
            send_resolved=True,
        )
        am_path.write_text(yaml.safe_dump(am_config, sort_keys=False))
        servers = stack.enter_context(
            devstack.run_stack(
                rule_files=[settings.rules_file],
                alertmanager_config=am_path,
                scrape_interval_seconds=settings.scrape_interval_seconds,
                evaluation_interval_seconds=settings.evaluation_interval_seconds,
                alert_resend_delay_seconds=settings.alert_resend_delay_seconds,
                prebuilt_data_dir=tsdb,
                scrape_targets={EXPORTER_JOB: exporter_url},
            )
        )
        devstack.wait_for_query(
            servers.prometheus_url,
            f'up{{job="{EXPORTER_JOB}"}} == 1',
            timeout_seconds=3 * settings.scrape_interval_seconds + 30,
            interval_seconds=0.5,
        )
        config_path = workdir / "config.yaml"
        config = job_config(settings, servers, workdir / "models")
        config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        job = stack.enter_context(_Job.serve(config_path, workdir / "serve.log"))
        watcher = Watcher(servers.pushgateway_url, servers.prometheus_url)
        deadline = time.monotonic() + 900
        while not watcher.job_has_pushed():
            job.check("never pushed", deadline)
            time.sleep(settings.poll_seconds)
            watcher.poll()

        started_at = time.time()
        if settings.head_start_seconds is None:
            incidents = _incidents(settings, chosen, started_at + settings.lead_seconds)
            the_world.schedule(incidents)
        expected = {
            inc: expected_receiver(amtool, am_path, world.expected_labels(inc)) for inc in incidents
        }
        say(f"soak started {_iso(started_at)}: {settings.minutes:g} minutes")
        say(f"  quiet tenants: {', '.join(quiet)}")
        for inc in incidents:
            say(
                f"  {inc.onset - started_at:+5.0f} s  {inc.kind.description} on {inc.tenant}"
                f" (expected receiver {expected[inc]})"
            )
        progress = _Progress(started_at, say, watcher)
        paged_at: float | None = None
        while time.time() < started_at + 60 * settings.minutes:
            time.sleep(settings.poll_seconds)
            job.check("exited early")
            watcher.poll()
            notes = _notifications(hooks)
            progress.show(watcher, notes)
            settle = settings.stop_when_paged_seconds
            if settle is not None and paged_at is None and _all_paged(notes, incidents, expected):
                paged_at = time.time()
            if paged_at is not None and time.time() > paged_at + (settle or 0.0):
                break
        ended_at = time.time()
        watcher.poll()
        watcher.date_alerts(started_at - 3600, ended_at, settings.evaluation_interval_seconds)
        result = report.judge(
            started_at=started_at,
            ended_at=ended_at,
            incidents=incidents,
            expected_receivers=expected,
            flags=watcher.flags,
            alerts=watcher.alerts,
            notifications=_notifications(hooks),
            runs=list(watcher.runs.values()),
        )
    record = {
        "bench": "soak",
        "settings": {
            k: (str(v) if isinstance(v, Path) else v)
            for k, v in dataclasses.asdict(settings).items()
        },
        "started": _iso(started_at),
        "quiet_tenants": list(quiet),
        **result.to_json(),
    }
    return result, record


def _backfill(
    the_world: world.World,
    settings: Settings,
    exporter_url: str,
    workdir: Path,
    say: Callable[[str], None],
) -> Path:
    """The world's history up to now as TSDB blocks under `workdir`; returns their folder."""
    started = time.time()
    history, tsdb = workdir / "history.om", workdir / "tsdb"
    datasets = the_world.history(
        started - settings.history_days * 86400,
        started,
        scrape_interval_seconds=settings.scrape_interval_seconds,
        labels={"job": EXPORTER_JOB, "instance": urlsplit(exporter_url).netloc},
    )
    synth.write_openmetrics(datasets, history, specs=world.SPECS)
    blocks = devstack.create_blocks(history, tsdb)
    history.unlink()
    say(
        f"history: {settings.history_days:g} days × {settings.tenants} tenants × "
        f"{len(world.SPECS)} metrics every {world.HISTORY_STEP_SECONDS} s (the last "
        f"{world.DENSE_TAIL_SECONDS / 60:g} min every {settings.scrape_interval_seconds:g} s), "
        f"{blocks} blocks in {time.time() - started:.1f} s"
    )
    return tsdb


class _Job:
    """``anomaly serve`` as a subprocess; on the way out SIGTERM (it finishes its run)."""

    def __init__(self, proc: subprocess.Popen[bytes], log_path: Path) -> None:
        self.proc = proc
        self.log_path = log_path

    @classmethod
    @contextlib.contextmanager
    def serve(cls, config_path: Path, log_path: Path) -> Iterator[_Job]:
        with open(log_path, "wb") as log_file:
            proc = subprocess.Popen(
                [sys.executable, "-m", "anomaly.cli", "serve", "--config", str(config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        try:
            yield cls(proc, log_path)
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(120)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()

    def check(self, what: str, deadline: float | None = None) -> None:
        """Raise, quoting the job's log, if it has exited (or `deadline` has passed)."""
        if self.proc.poll() is not None or (deadline is not None and time.monotonic() > deadline):
            log_tail = "\n".join(self.log_path.read_text(errors="replace").splitlines()[-30:])
            raise RuntimeError(f"anomaly serve {what}; its log:\n{log_tail}")


class _Progress:
    """Prints each run of the job and each notification once, as they happen."""

    def __init__(self, started_at: float, say: Callable[[str], None], watcher: Watcher) -> None:
        self.started_at = started_at
        self.say = say
        self.runs_seen = set(watcher.runs)  # the runs before the start
        self.notes_seen = 0

    def show(self, watcher: Watcher, notes: Sequence[report.Notification]) -> None:
        for run in sorted(watcher.runs.values(), key=lambda r: r.finished_at):
            if run.finished_at in self.runs_seen:
                continue
            self.runs_seen.add(run.finished_at)
            flagged = flags_of(run, watcher.flags)
            names = ", ".join(f"{f.tenant}/{f.metric} {f.score:.2f}" for f in flagged) or "-"
            self.say(
                f"  {run.finished_at - self.started_at:+5.0f} s  run of "
                f"{run.duration_seconds:.1f} s flagged: {names}"
            )
        for note in notes[self.notes_seen :]:
            self.say(
                f"  {note.received_at - self.started_at:+5.0f} s  {note.status} → "
                f"{note.receiver}: {note.describe()}"
            )
        self.notes_seen = len(notes)


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.soak_bench",
        description="Live soak with the shipped rules, routing and schedule: onset → page.",
    )
    parser.add_argument(
        "--quick", action="store_true", help="25 minutes, 8 tenants, incidents 1 min apart"
    )
    parser.add_argument("--minutes", type=float, help="observed minutes (default 50; quick 25)")
    parser.add_argument(
        "--tenants", type=int, help="tenants, five with an incident (default 12; quick 8)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--history-days", type=float, default=8.0)
    parser.add_argument(
        "--incidents",
        default=",".join(world.DEFAULT_KINDS),
        help=f"comma-separated kinds among {','.join(world.KINDS)}",
    )
    parser.add_argument(
        "--json", type=Path, help="where to write the record (default bench/out/soak-<time>.json)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    base = QUICK if args.quick else Settings()
    kinds = tuple(k for k in args.incidents.split(",") if k)
    settings = dataclasses.replace(
        base,
        minutes=args.minutes if args.minutes is not None else base.minutes,
        tenants=args.tenants if args.tenants is not None else base.tenants,
        seed=args.seed,
        history_days=args.history_days,
        kinds=kinds,
    )
    for server in ("prometheus", "promtool", "pushgateway", "alertmanager", "amtool"):
        devstack.find_binary(server)
    result, record = run_soak(settings, say=lambda line: print(line, flush=True))
    print()
    print(report.format_result(result))
    path = args.json or OUT / f"soak-{record['started'].replace(':', '')}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_finite(record), indent=2) + "\n")
    print(f"\nrecord: {path}")
    return 0


def _finite(value: Any) -> Any:
    """`value` with every infinite or NaN float replaced by None (JSON has neither)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


if __name__ == "__main__":
    sys.exit(main())
