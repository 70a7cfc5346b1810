"""Real Prometheus, Pushgateway and Alertmanager on loopback, for tests, the demo and benchmarks.

Each server runs from its own temporary directory on a free ``127.0.0.1`` port and is stopped
(terminate, then kill) and its directory removed when its context manager exits; an ``atexit``
hook and, on Linux, a parent-death signal stop anything left over if the caller dies.
:func:`backfill` turns a :class:`~anomaly_lab.synth.Dataset` into TSDB blocks with
``promtool tsdb create-blocks-from openmetrics`` before Prometheus starts, so the history is
queryable as soon as ``/-/ready`` answers.

::

    with run_stack(dataset=synth.demo_scenario()) as stack:
        requests.get(f"{stack.prometheus_url}/api/v1/query", params={"query": "up"})

Nothing here runs at import time; binaries are looked up when a server starts (override with
``ANOMALY_PROMETHEUS_BIN``, ``ANOMALY_PUSHGATEWAY_BIN``, ``ANOMALY_ALERTMANAGER_BIN``,
``ANOMALY_PROMTOOL_BIN``, ``ANOMALY_AMTOOL_BIN``).
"""

from __future__ import annotations

import atexit
import contextlib
import copy
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
import yaml

from anomaly_lab.synth import Dataset, write_openmetrics

log = logging.getLogger(__name__)

# server -> (binary names tried in order, the Debian package that installs them)
_BINARIES: dict[str, tuple[tuple[str, ...], str]] = {
    "prometheus": (("prometheus",), "prometheus"),
    "promtool": (("promtool",), "prometheus"),
    "pushgateway": (("prometheus-pushgateway", "pushgateway"), "prometheus-pushgateway"),
    "alertmanager": (("prometheus-alertmanager", "alertmanager"), "prometheus-alertmanager"),
    "amtool": (("amtool",), "prometheus-alertmanager"),
}

DEFAULT_ALERTMANAGER_CONFIG: dict[str, Any] = {
    "route": {
        "receiver": "null",
        "group_by": ["alertname"],
        "group_wait": "1s",
        "group_interval": "1s",
        "repeat_interval": "1h",
    },
    "receivers": [{"name": "null"}],
}
"""Routes every alert to a receiver that sends nothing; alerts stay visible in the API."""


class DevstackError(RuntimeError):
    """A server could not be started or backfilled; the message quotes its stderr tail."""


class MissingBinaryError(DevstackError):
    """A server binary is not installed; the message names the package that installs it."""


def find_binary(server: str) -> str:
    """Path of `server`'s binary: ``prometheus``, ``promtool``, ``pushgateway``,
    ``alertmanager`` or ``amtool``.

    Raises
    ------
    MissingBinaryError
        Not on ``PATH`` and no ``ANOMALY_<SERVER>_BIN`` override; the message is one line
        saying what to install.
    """
    override = os.environ.get(f"ANOMALY_{server.upper()}_BIN")
    if override:
        return override
    names, package = _BINARIES[server]
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    raise MissingBinaryError(f"{names[0]} is not installed: apt-get install {package}")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# Processes still running, stopped at interpreter exit if their context manager never ran.
_LIVE: dict[int, subprocess.Popen[bytes]] = {}


@atexit.register
def _stop_leftovers() -> None:
    for proc in list(_LIVE.values()):
        _stop(proc)


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    """Ask Linux to SIGTERM the child when the process that started it dies."""
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _stop(proc: subprocess.Popen[bytes], timeout_seconds: float = 10.0) -> None:
    """Terminate `proc`, then kill it if it has not exited within `timeout_seconds`."""
    _LIVE.pop(proc.pid, None)
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout_seconds)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _tail(path: Path, lines: int = 20) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


@dataclass(frozen=True)
class Server:
    """A running server."""

    name: str
    url: str
    """Base URL, ``http://127.0.0.1:PORT``."""
    port: int
    workdir: Path
    """Its temporary directory (removed on stop)."""
    pid: int
    log_path: Path
    """Its stdout and stderr."""


def _wait_ready(
    name: str, url: str, proc: subprocess.Popen[bytes], log_path: Path, timeout_seconds: float
) -> None:
    deadline = time.monotonic() + timeout_seconds
    while True:
        if proc.poll() is not None:
            raise DevstackError(
                f"{name} exited with code {proc.returncode} before it was ready; "
                f"log tail:\n{_tail(log_path)}"
            )
        with contextlib.suppress(requests.RequestException):
            if requests.get(f"{url}/-/ready", timeout=1.0).status_code == 200:
                return
        if time.monotonic() > deadline:
            raise DevstackError(
                f"{name} not ready at {url} within {timeout_seconds:g} s; "
                f"log tail:\n{_tail(log_path)}"
            )
        time.sleep(0.05)


@contextlib.contextmanager
def _run_server(
    name: str,
    args_for_port: Any,
    workdir: Path,
    *,
    ready_timeout_seconds: float,
    port: int | None = None,
    attempts: int = 3,
) -> Iterator[Server]:
    """Start ``args_for_port(port)`` in `workdir`, wait for ``/-/ready``, stop on exit.

    A port taken between :func:`free_port` and the bind is retried on a fresh port.
    """
    for attempt in range(1, attempts + 1):
        chosen = port if port is not None else free_port()
        url = f"http://127.0.0.1:{chosen}"
        log_path = workdir / f"{name}.log"
        with open(log_path, "wb") as log_file:
            proc = subprocess.Popen(
                [str(a) for a in args_for_port(chosen)],
                cwd=workdir,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,  # only a prctl call, safe after fork
            )
        _LIVE[proc.pid] = proc
        try:
            _wait_ready(name, url, proc, log_path, ready_timeout_seconds)
        except DevstackError:
            _stop(proc)
            if attempt < attempts and port is None and "address already in use" in _tail(log_path):
                log.info("%s: port %d taken, retrying", name, chosen)
                continue
            raise
        except BaseException:
            _stop(proc)
            raise
        log.info("%s ready at %s (pid %d)", name, url, proc.pid)
        try:
            yield Server(name, url, chosen, workdir, proc.pid, log_path)
        finally:
            _stop(proc)
        return


@contextlib.contextmanager
def _tempdir(prefix: str, keep: bool = False) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        if not keep:
            shutil.rmtree(path, ignore_errors=True)


@dataclass(frozen=True)
class BackfillReport:
    """What :func:`backfill` did."""

    seconds: float
    """Wall time of writing OpenMetrics plus ``promtool``."""
    blocks: int
    samples: int
    openmetrics_bytes: int


def create_blocks(
    openmetrics_path: str | os.PathLike[str],
    data_dir: str | os.PathLike[str],
    *,
    max_block_duration: str = "72h",
    timeout_seconds: float = 600.0,
) -> int:
    """``promtool tsdb create-blocks-from openmetrics``: an OpenMetrics file (``# EOF``
    terminated) into TSDB blocks in `data_dir`; returns how many blocks `data_dir` then holds.

    See :func:`backfill` for `max_block_duration`. Raises :class:`DevstackError` quoting
    promtool's output when it fails.
    """
    out = Path(data_dir)
    out.mkdir(parents=True, exist_ok=True)
    cmd = [
        find_binary("promtool"),
        "tsdb",
        "create-blocks-from",
        "--quiet",
        "openmetrics",
        f"--max-block-duration={max_block_duration}",
        str(openmetrics_path),
        str(out),
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_seconds)
    if result.returncode != 0:
        tail = "\n".join((result.stderr or result.stdout).splitlines()[-20:])
        raise DevstackError(f"promtool backfill failed (exit {result.returncode}):\n{tail}")
    return sum(1 for p in out.iterdir() if (p / "meta.json").is_file())


def backfill(
    dataset: Dataset,
    data_dir: str | os.PathLike[str],
    *,
    max_block_duration: str = "72h",
    timeout_seconds: float = 600.0,
) -> BackfillReport:
    """Write `dataset` as TSDB blocks into `data_dir` (a Prometheus ``--storage.tsdb.path``).

    Run it before Prometheus starts on that directory. ``--max-block-duration`` (hidden in
    promtool 2.42, honoured) defaults to 72 h, the largest block Prometheus compacts to itself
    under a 30 d retention (10 %): 8 days of data become 4-5 blocks instead of 97 two-hour ones,
    and promtool, which rereads the file once per block, runs ten times faster.
    The newest sample must not be in the future: Prometheus refuses scraped samples older than
    the newest block, so data ending after "now" would block scraping until then.
    """
    started = time.monotonic()
    out = Path(data_dir)
    out.mkdir(parents=True, exist_ok=True)
    if dataset.end > time.time() + 1:
        raise ValueError(f"`dataset` must not end in the future, got end={dataset.end}")
    with _tempdir("anomaly-backfill-") as tmp:
        source = tmp / "data.om"
        write_openmetrics(dataset, source)
        size = source.stat().st_size
        blocks = create_blocks(
            source,
            out,
            max_block_duration=max_block_duration,
            timeout_seconds=timeout_seconds,
        )
    report = BackfillReport(
        seconds=time.monotonic() - started,
        blocks=blocks,
        samples=sum(s.values.size for s in dataset.series),
        openmetrics_bytes=size,
    )
    log.info(
        "backfilled %d samples into %d blocks in %.2f s",
        report.samples,
        report.blocks,
        report.seconds,
    )
    return report


def _target(url: str) -> dict[str, Any]:
    parts = urlsplit(url)
    config: dict[str, Any] = {
        "scheme": parts.scheme or "http",
        "static_configs": [{"targets": [parts.netloc]}],
    }
    if parts.path.strip("/"):
        config["path_prefix"] = parts.path
    return config


def prometheus_config(
    *,
    pushgateway_url: str | None = None,
    rule_files: Sequence[str | os.PathLike[str]] = (),
    alertmanager_url: str | None = None,
    scrape_interval_seconds: float = 1.0,
    evaluation_interval_seconds: float = 1.0,
    scrape_targets: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The ``prometheus.yml`` :func:`run_prometheus` writes, as a dict.

    `scrape_targets` maps a scrape job's name to the base URL of one more target to scrape
    (its ``/metrics``), e.g. an exporter a benchmark serves.
    """
    config: dict[str, Any] = {
        "global": {
            "scrape_interval": f"{scrape_interval_seconds:g}s",
            "scrape_timeout": f"{min(scrape_interval_seconds, 10.0):g}s",
            "evaluation_interval": f"{evaluation_interval_seconds:g}s",
        },
        "rule_files": [str(Path(p).resolve()) for p in rule_files],
        "scrape_configs": [],
    }
    if pushgateway_url:
        parts = urlsplit(pushgateway_url)
        config["scrape_configs"].append(
            {
                "job_name": "pushgateway",
                "honor_labels": True,
                "scheme": parts.scheme or "http",
                "static_configs": [{"targets": [parts.netloc]}],
            }
        )
    for job_name, url in (scrape_targets or {}).items():
        config["scrape_configs"].append({"job_name": job_name, **_target(url)})
    if alertmanager_url:
        config["alerting"] = {"alertmanagers": [_target(alertmanager_url)]}
    return config


@contextlib.contextmanager
def run_prometheus(
    *,
    dataset: Dataset | None = None,
    pushgateway_url: str | None = None,
    rule_files: Sequence[str | os.PathLike[str]] = (),
    alertmanager_url: str | None = None,
    scrape_interval_seconds: float = 1.0,
    evaluation_interval_seconds: float = 1.0,
    alert_resend_delay_seconds: float = 1.0,
    retention: str = "30d",
    extra_args: Sequence[str] = (),
    ready_timeout_seconds: float = 30.0,
    keep_workdir: bool = False,
    prebuilt_data_dir: str | os.PathLike[str] | None = None,
    scrape_targets: Mapping[str, str] | None = None,
) -> Iterator[tuple[Server, BackfillReport | None]]:
    """Prometheus on a free port, `dataset` backfilled first, scraping `pushgateway_url` (and
    `scrape_targets`, see :func:`prometheus_config`).

    `prebuilt_data_dir`, instead of a dataset, is a TSDB directory made earlier by
    :func:`backfill` (e.g. a benchmark's cache); it is copied, so the original stays untouched
    by Prometheus' head, WAL and compaction.

    Yields the server and the backfill report (``None`` without a dataset). Prometheus finds
    its scrape targets and Alertmanager about 5 s after start (its discovery cadence); an alert
    that fired before that is resent after `alert_resend_delay_seconds` (Prometheus' default,
    1 min, would make tests wait).
    """
    binary = find_binary("prometheus")
    with _tempdir("anomaly-prometheus-", keep_workdir) as workdir:
        data_dir = workdir / "data"
        if prebuilt_data_dir is not None:
            if dataset is not None:
                raise ValueError("give `dataset` or `prebuilt_data_dir`, not both")
            shutil.copytree(prebuilt_data_dir, data_dir)
        else:
            data_dir.mkdir()
        report = backfill(dataset, data_dir) if dataset is not None else None
        config_path = workdir / "prometheus.yml"
        config = prometheus_config(
            pushgateway_url=pushgateway_url,
            rule_files=rule_files,
            alertmanager_url=alertmanager_url,
            scrape_interval_seconds=scrape_interval_seconds,
            evaluation_interval_seconds=evaluation_interval_seconds,
            scrape_targets=scrape_targets,
        )
        config_path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")

        def args(port: int) -> list[str]:
            return [
                binary,
                f"--config.file={config_path}",
                f"--storage.tsdb.path={data_dir}",
                f"--storage.tsdb.retention.time={retention}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--web.enable-admin-api",
                "--web.enable-lifecycle",
                f"--rules.alert.resend-delay={alert_resend_delay_seconds:g}s",
                *extra_args,
            ]

        with _run_server(
            "prometheus", args, workdir, ready_timeout_seconds=ready_timeout_seconds
        ) as server:
            yield server, report


@contextlib.contextmanager
def run_pushgateway(
    *, ready_timeout_seconds: float = 15.0, keep_workdir: bool = False
) -> Iterator[Server]:
    """A Pushgateway on a free port, without persistence, admin API on."""
    binary = find_binary("pushgateway")
    with _tempdir("anomaly-pushgateway-", keep_workdir) as workdir:

        def args(port: int) -> list[str]:
            return [
                binary,
                f"--web.listen-address=127.0.0.1:{port}",
                "--persistence.file=",
                "--web.enable-admin-api",
            ]

        with _run_server(
            "pushgateway", args, workdir, ready_timeout_seconds=ready_timeout_seconds
        ) as server:
            yield server


@contextlib.contextmanager
def run_alertmanager(
    config: str | os.PathLike[str] | Mapping[str, Any] | None = None,
    *,
    ready_timeout_seconds: float = 15.0,
    keep_workdir: bool = False,
) -> Iterator[Server]:
    """An Alertmanager on a free port, no clustering.

    `config` is a path to an ``alertmanager.yml`` or its content as a mapping; default
    :data:`DEFAULT_ALERTMANAGER_CONFIG`.
    """
    binary = find_binary("alertmanager")
    with _tempdir("anomaly-alertmanager-", keep_workdir) as workdir:
        if config is None or isinstance(config, Mapping):
            config_path = workdir / "alertmanager.yml"
            content = DEFAULT_ALERTMANAGER_CONFIG if config is None else dict(config)
            config_path.write_text(yaml.safe_dump(content, sort_keys=False), encoding="utf-8")
        else:
            config_path = Path(config).resolve()
            if not config_path.is_file():
                raise FileNotFoundError(f"`config` is not a file: {config_path}")

        def args(port: int) -> list[str]:
            return [
                binary,
                f"--config.file={config_path}",
                f"--storage.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--cluster.listen-address=",
            ]

        with _run_server(
            "alertmanager", args, workdir, ready_timeout_seconds=ready_timeout_seconds
        ) as server:
            yield server


@dataclass(frozen=True)
class Stack:
    """URLs of a running stack (``http://127.0.0.1:PORT``, no trailing slash)."""

    prometheus_url: str
    pushgateway_url: str
    alertmanager_url: str | None
    prometheus: Server
    pushgateway: Server
    alertmanager: Server | None
    backfill: BackfillReport | None
    """``None`` when no dataset was given."""

    def reload_prometheus(self) -> None:
        """Ask Prometheus to reread its config and rule files (``/-/reload``)."""
        requests.post(f"{self.prometheus_url}/-/reload", timeout=10).raise_for_status()


@contextlib.contextmanager
def run_stack(
    dataset: Dataset | None = None,
    rule_files: Sequence[str | os.PathLike[str]] = (),
    alertmanager_config: str | os.PathLike[str] | Mapping[str, Any] | None = None,
    *,
    with_alertmanager: bool = True,
    scrape_interval_seconds: float = 1.0,
    evaluation_interval_seconds: float = 1.0,
    ready_timeout_seconds: float = 30.0,
    prometheus_args: Sequence[str] = (),
    prebuilt_data_dir: str | os.PathLike[str] | None = None,
    scrape_targets: Mapping[str, str] | None = None,
    alert_resend_delay_seconds: float = 1.0,
) -> Iterator[Stack]:
    """Pushgateway, Alertmanager (unless ``with_alertmanager=False``) and Prometheus.

    Prometheus gets `dataset` backfilled (or a copy of `prebuilt_data_dir`), scrapes the
    Pushgateway with ``honor_labels`` and any `scrape_targets`, evaluates `rule_files` every
    `evaluation_interval_seconds` and sends alerts to the Alertmanager (see
    :func:`run_prometheus`). Everything stops, in reverse order, when the block exits.
    """
    with contextlib.ExitStack() as stack:
        pushgateway = stack.enter_context(
            run_pushgateway(ready_timeout_seconds=ready_timeout_seconds)
        )
        alertmanager = (
            stack.enter_context(
                run_alertmanager(alertmanager_config, ready_timeout_seconds=ready_timeout_seconds)
            )
            if with_alertmanager
            else None
        )
        prometheus, report = stack.enter_context(
            run_prometheus(
                dataset=dataset,
                pushgateway_url=pushgateway.url,
                rule_files=rule_files,
                alertmanager_url=alertmanager.url if alertmanager else None,
                scrape_interval_seconds=scrape_interval_seconds,
                evaluation_interval_seconds=evaluation_interval_seconds,
                ready_timeout_seconds=ready_timeout_seconds,
                extra_args=prometheus_args,
                prebuilt_data_dir=prebuilt_data_dir,
                scrape_targets=scrape_targets,
                alert_resend_delay_seconds=alert_resend_delay_seconds,
            )
        )
        yield Stack(
            prometheus_url=prometheus.url,
            pushgateway_url=pushgateway.url,
            alertmanager_url=alertmanager.url if alertmanager else None,
            prometheus=prometheus,
            pushgateway=pushgateway,
            alertmanager=alertmanager,
            backfill=report,
        )


def wait_for_query(
    prometheus_url: str, query: str, *, timeout_seconds: float = 15.0, interval_seconds: float = 0.2
) -> list[dict[str, Any]]:
    """Poll an instant `query` until it returns a non-empty vector; return its result.

    Raises
    ------
    TimeoutError
        Nothing came back within `timeout_seconds`.
    """
    deadline = time.monotonic() + timeout_seconds
    while True:
        response = requests.get(
            f"{prometheus_url}/api/v1/query", params={"query": query}, timeout=10
        )
        response.raise_for_status()
        result: list[dict[str, Any]] = response.json()["data"]["result"]
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"{query!r} returned nothing within {timeout_seconds:g} s")
        time.sleep(interval_seconds)


# --------------------------------------------------------------------------- shipped rules, fast


REPO_ROOT = Path(__file__).resolve().parents[2]
RULES_FILE = REPO_ROOT / "deploy" / "prometheus" / "anomaly-rules.yml"
ALERTMANAGER_FILE = REPO_ROOT / "deploy" / "alertmanager" / "alertmanager.yml"


def fast_rules(
    path: str | os.PathLike[str], out_dir: str | os.PathLike[str], speedup: float = 60.0
) -> Path:
    """A copy of a rule file with every ``for:`` divided by ``speedup`` (minutes become seconds),
    so alerts fire within seconds in tests and the demo while keeping their order (an alert
    with a shorter ``for:`` still fires first, as inhibitions expect).

    Everything else (expressions, labels, annotations) is the shipped file's.
    """
    from anomaly.config import parse_duration

    doc = yaml.safe_load(Path(path).read_text())
    for group in doc.get("groups", []):
        for rule in group.get("rules", []):
            if "for" in rule:
                rule["for"] = f"{int(round(parse_duration(rule['for']) / speedup))}s"
    out = Path(out_dir) / Path(path).name
    out.write_text(yaml.safe_dump(doc, sort_keys=False))
    return out


def webhook_receivers(
    path: str | os.PathLike[str],
    urls: str | Mapping[str, str],
    *,
    send_resolved: bool = False,
) -> dict[str, Any]:
    """The Alertmanager config at `path` with each receiver's integrations replaced by one
    webhook: ``urls[name]`` per receiver, or the one URL `urls` for all. Routes, timers,
    inhibitions and ``global`` are the file's.

    Raises
    ------
    KeyError
        `urls` is a mapping without an entry for one of the file's receivers.
    """
    config: dict[str, Any] = yaml.safe_load(Path(path).read_text())
    config["receivers"] = [
        {
            "name": r["name"],
            "webhook_configs": [
                {
                    "url": urls if isinstance(urls, str) else urls[r["name"]],
                    "send_resolved": send_resolved,
                }
            ],
        }
        for r in config["receivers"]
    ]
    return config


def fast_timers(config: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of an Alertmanager config whose every route waits 0 s before its first
    notification and 1 s between a group's notifications; everything else kept."""
    fast: dict[str, Any] = copy.deepcopy(dict(config))
    routes = [fast["route"]]
    while routes:
        route = routes.pop()
        route["group_wait"] = "0s"
        route["group_interval"] = "1s"
        routes.extend(route.get("routes", []))
    return fast


def webhook_routing(path: str | os.PathLike[str], webhook_url: str) -> dict[str, Any]:
    """The shipped Alertmanager routing and inhibition with every receiver replaced by one
    webhook and fast timers, so a test or the demo sees which receiver each alert reached."""
    config = fast_timers(webhook_receivers(path, webhook_url))
    config.pop("global", None)
    config.pop("templates", None)
    return config
