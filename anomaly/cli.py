"""The ``anomaly`` command: a thin front over the library.

Only this module turns errors into exit codes: 0 success, 1 a run failed (Prometheus,
Pushgateway or model store), 2 bad config or usage. Errors print one line, never a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from types import FrameType
from typing import TYPE_CHECKING, Any

from anomaly import __version__
from anomaly.config import Config, available_cpus, load_config, parse_workers
from anomaly.errors import AnomalyError, ConfigError, DataError

if TYPE_CHECKING:
    from anomaly.job.plan import Shard
    from anomaly.offline.replay import OfflineOptions

log = logging.getLogger("anomaly")

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

#: `--decision` of score-csv and evaluate (anomaly.offline.replay.OfflineOptions.decision).
DECISION: dict[str, Any] = {
    "choices": ["alert", "job"],
    "default": "alert",
    "help": "alert: flag the rows that open an alert (a page), the default; "
    "job: every row the job's anomaly_detected rule flags",
}


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%Y-%m-%dT%H:%M:%S",
        stream=sys.stderr,
        force=True,
    )


def _parse_time(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError("--at", f"expected epoch seconds or ISO 8601, got {text!r}") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()


def _load(path: str, log_level: str | None) -> Config:
    config = load_config(path)
    _setup_logging(log_level or config.log_level)
    return config


def cmd_check_config(args: argparse.Namespace) -> int:
    config = load_config(args.file)
    workers = config.scale.workers
    print(
        f"{args.file}: OK ({len(config.metrics)} metrics, tenant label "
        f"{config.tenant_label or '(none)'}, schedule '{config.schedule}', workers "
        + (f"auto: up to {available_cpus()} CPUs" if workers is None else str(workers))
        + ")"
    )
    forecasts = [mc for mc in config.metrics if mc.forecast is not None]
    if forecasts:
        print("forecasts:")
    for mc in forecasts:
        assert mc.forecast is not None
        print(f"  {mc.name}: {mc.forecast.describe()}")
    return EXIT_OK


def _shard(text: str | None, environ: Mapping[str, str]) -> Shard:
    """``--shard INDEX/COUNT``, else a Kubernetes Indexed Job's ``JOB_COMPLETION_INDEX`` with
    ``ANOMALY_SHARDS`` as COUNT, else unsharded."""
    from anomaly.job.plan import Shard

    try:
        if text:
            return Shard.parse(text)
        index = environ.get("JOB_COMPLETION_INDEX")
        count = environ.get("ANOMALY_SHARDS")
        if index is None and count is None:
            return Shard()
        if index is None or count is None:
            raise ConfigError(
                "--shard",
                "set both JOB_COMPLETION_INDEX and ANOMALY_SHARDS (or pass --shard INDEX/COUNT); "
                f"got JOB_COMPLETION_INDEX={index!r}, ANOMALY_SHARDS={count!r}",
            )
        return Shard.parse(f"{index}/{count}")
    except ValueError as e:
        raise ConfigError("--shard", str(e)) from None


def cmd_run(args: argparse.Namespace) -> int:
    from anomaly.job.report import format_summary
    from anomaly.job.run import run_once

    config = _load(args.config, args.log_level)
    if not args.once:
        raise ConfigError("run", "use `anomaly run --once` (or `anomaly serve` for a schedule)")
    now = _parse_time(args.at) if args.at else None
    shard = _shard(args.shard, os.environ)
    if args.workers is not None:  # overrides scale.workers, `auto` included
        scale = dataclasses.replace(config.scale, workers=parse_workers(args.workers, "--workers"))
        config = dataclasses.replace(config, scale=scale)
    report = run_once(config, now=now, shard=shard)
    print(format_summary(report))
    return EXIT_OK


def cmd_serve(args: argparse.Namespace) -> int:
    from anomaly.job.serve import serve

    config = _load(args.config, args.log_level)
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info(
            "received %s; finishing the current run, then exiting", signal.Signals(signum).name
        )
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    serve(config, stop, initial_run=not args.no_initial_run)
    return EXIT_OK


def _offline_options(config: Config | None, decision: str) -> OfflineOptions:
    from anomaly.offline.replay import OfflineOptions

    return dataclasses.replace(OfflineOptions.from_config(config), decision=decision)


def cmd_score_csv(args: argparse.Namespace) -> int:
    from anomaly.offline.replay import score_csv

    _setup_logging(args.log_level or "WARNING")
    config = load_config(args.config) if args.config else None
    t0 = time.perf_counter()
    try:
        out = score_csv(args.input, args.output, options=_offline_options(config, args.decision))
    except DataError as e:  # bad input is a usage error: one line, exit 2
        print(f"anomaly: {e}", file=sys.stderr)
        return EXIT_USAGE
    log.info("scored %d rows in %.1fs", out, time.perf_counter() - t0)
    return EXIT_OK


def cmd_evaluate(args: argparse.Namespace) -> int:
    from anomaly.offline.evaluate import evaluate, format_table

    _setup_logging(args.log_level or "WARNING")
    config = load_config(args.config) if args.config else None
    try:
        ev = evaluate(
            args.data_dir,
            args.labels,
            profile=args.profile,
            options=_offline_options(config, args.decision),
            jobs=args.jobs,
        )
    except DataError as e:  # bad input is a usage error: one line, exit 2
        print(f"anomaly: {e}", file=sys.stderr)
        return EXIT_USAGE
    print(format_table(ev, per_file=not args.summary))
    if args.output:
        try:
            ev.to_frame().to_csv(args.output, index=False, float_format="%.6g")
        except OSError as e:
            print(f"anomaly: {args.output}: cannot write: {e.strerror}", file=sys.stderr)
            return EXIT_USAGE
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="anomaly", description="Anomaly detection and predictive alerting for Prometheus."
    )
    p.add_argument("--version", action="version", version=f"anomaly {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="run one cycle: query, fit or load, score, push")
    r.add_argument("--once", action="store_true", help="run one cycle and exit")
    r.add_argument(
        "--config", "-c", default="config.yaml", help="config file (default: config.yaml)"
    )
    r.add_argument("--at", help="evaluate as of this time (epoch seconds or ISO 8601), for replays")
    r.add_argument(
        "--shard",
        metavar="INDEX/COUNT",
        help="only the tenants whose stable hash is INDEX mod COUNT, pushed under shard=INDEX "
        "(default: $JOB_COMPLETION_INDEX/$ANOMALY_SHARDS when set, else all tenants)",
    )
    r.add_argument(
        "--workers",
        metavar="N|auto",
        help="processes working side by side, on batches or on the metrics of a run of one "
        "batch (default: scale.workers; auto: one per CPU available for a large run)",
    )
    r.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    r.set_defaults(func=cmd_run)

    s = sub.add_parser("serve", help="run cycles on the config's cron schedule until SIGTERM")
    s.add_argument("--config", "-c", default="config.yaml")
    s.add_argument("--no-initial-run", action="store_true", help="wait for the first cron tick")
    s.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    s.set_defaults(func=cmd_serve)

    c = sub.add_parser("check-config", help="validate a config file (exit 2 when invalid)")
    c.add_argument("file")
    c.set_defaults(func=cmd_check_config)

    sc = sub.add_parser("score-csv", help="causal walk-forward scoring of a timestamp,value CSV")
    sc.add_argument("input")
    sc.add_argument("--output", "-o", help="output CSV (default: standard output)")
    sc.add_argument("--config", "-c", help="config file for detection settings")
    sc.add_argument("--decision", **DECISION)
    sc.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    sc.set_defaults(func=cmd_score_csv)

    ev = sub.add_parser(
        "evaluate", help="NAB-style score of score-csv over a directory of labelled CSVs"
    )
    ev.add_argument("data_dir", help="directory of timestamp,value CSVs (searched recursively)")
    ev.add_argument("labels", help="NAB combined_windows.json (or the directory holding it)")
    ev.add_argument(
        "--profile", choices=["standard", "reward_low_fp", "reward_low_fn"], default="standard"
    )
    ev.add_argument("--output", "-o", help="write per-file and per-category figures as CSV")
    ev.add_argument("--config", "-c", help="config file for detection settings")
    ev.add_argument("--decision", **DECISION)
    ev.add_argument("--jobs", "-j", type=int, help="worker processes (default: CPU count)")
    ev.add_argument("--summary", action="store_true", help="categories and overall only")
    ev.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    ev.set_defaults(func=cmd_evaluate)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as e:
        print(f"anomaly: config error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except AnomalyError as e:
        print(f"anomaly: {e}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
