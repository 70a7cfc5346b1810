"""Configuration: ``load_config(path) -> Config``, validated, typed and frozen.

Nothing is read at import time. Every error is a :class:`~anomaly.errors.ConfigError` whose
message names the key (dotted path, e.g. ``metrics[2].forecast.horizon``), the bad value and
what is allowed. Unknown keys are errors, so that typos never pass silently.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import yaml

from anomaly.errors import ConfigError
from anomaly.io.rolling_query import RollingSum, recognise_rolling_sum

_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
_DURATION_RE = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")
_LABEL_NAME_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_METRIC_NAME_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


class FrozenMap(Mapping[str, str]):
    """An immutable ``str -> str`` mapping that hashes and pickles (the config's header and
    label maps; ``types.MappingProxyType`` does neither, which kept the config out of worker
    processes)."""

    __slots__ = ("_items",)

    def __init__(self, items: Mapping[str, str] | Iterable[tuple[str, str]] = ()) -> None:
        self._items = dict(items)

    def __getitem__(self, key: str) -> str:
        return self._items[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return hash(frozenset(self._items.items()))

    def __repr__(self) -> str:
        return f"FrozenMap({self._items!r})"

    def __reduce__(self) -> tuple[type[FrozenMap], tuple[dict[str, str]]]:
        return FrozenMap, (self._items,)


def parse_duration(text: Any, key: str = "duration") -> float:
    """Parse a Prometheus duration (``30s``, ``5m``, ``1h30m``, ``7d``, ``1w``) into seconds."""
    if isinstance(text, bool) or not isinstance(text, str | int | float):
        raise ConfigError(key, f"expected a duration such as '5m' or '7d', got {text!r}")
    if isinstance(text, int | float):
        if not math.isfinite(text) or text <= 0:
            raise ConfigError(key, f"duration must be positive, got {text!r}")
        return float(text)
    s = text.strip()
    pos, total = 0, 0.0
    for m in _DURATION_RE.finditer(s):
        if m.start() != pos:
            break
        total += int(m.group(1)) * _DURATION_UNITS[m.group(2)]
        pos = m.end()
    if pos != len(s) or not s:
        raise ConfigError(
            key, f"expected a duration such as '30s', '5m', '1h', '7d' or '1w', got {text!r}"
        )
    if total <= 0:
        raise ConfigError(key, f"duration must be positive, got {text!r}")
    return total


def parse_duration_or_off(text: Any, key: str) -> float:
    """:func:`parse_duration`, or 0 for ``0``, ``"0"`` or ``"0s"``: a setting turned off."""
    if not isinstance(text, bool) and text in (0, "0", "0s"):
        return 0.0
    return parse_duration(text, key)


def format_duration(seconds: float) -> str:
    """Format seconds as the shortest Prometheus duration (``86400 -> '1d'``)."""
    s = int(round(seconds))
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size and s % size == 0:
            return f"{s // size}{unit}"
    return f"{s}s"


@dataclass(frozen=True)
class TLSConfig:
    verify: bool = True
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None


@dataclass(frozen=True)
class AuthConfig:
    """Credentials; secrets come from files or environment variables, never from logs."""

    bearer_token: str | None = field(default=None, repr=False)
    username: str | None = None
    password: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class PrometheusConfig:
    url: str
    headers: Mapping[str, str] = field(default_factory=FrozenMap)
    timeout_seconds: float = 30.0
    retries: int = 3
    retry_backoff_seconds: float = 0.5
    max_points_per_query: int = 11000
    auth: AuthConfig = field(default_factory=AuthConfig)
    tls: TLSConfig = field(default_factory=TLSConfig)


@dataclass(frozen=True)
class PushgatewayConfig:
    url: str
    job: str = "anomaly_detector"
    timeout_seconds: float = 30.0
    retries: int = 3
    retry_backoff_seconds: float = 0.5
    headers: Mapping[str, str] = field(default_factory=FrozenMap)
    auth: AuthConfig = field(default_factory=AuthConfig)
    tls: TLSConfig = field(default_factory=TLSConfig)
    # How tenants' series are grouped: "tenant" (one group per tenant), "batch" (one group per
    # batch of tenants, see `scale.batch_series`), or "auto" (per batch when a run has more than
    # one batch). The Pushgateway re-checks every stored group on each PUT, so thousands of
    # per-tenant groups make a push quadratic.
    grouping: str = "auto"


#: How a metric is forecast (:attr:`ForecastConfig.mode`).
FORECAST_MODES = ("rate", "derived", "plain")


@dataclass(frozen=True)
class ForecastConfig:
    horizon_seconds: float = 86400.0
    threshold: float | None = None
    direction: str = "above"
    # For a rolling sum (e.g. 24h spend): the configured metric that is its rate (e.g. $/hour),
    # the sum's window and the rate's time unit. The rate is forecast and the sum carried
    # forward from it, which is far more accurate than extrapolating the lagging sum. A rate
    # derived from the query (mode "derived") names the configured metric whose query it is.
    rate: str | None = None
    window_seconds: float = 86400.0
    rate_unit_seconds: float = 3600.0
    # A forecast is made anew this often; runs in between count down to its breach from their
    # own time and newest values, reading only the metric's newest rows (0: every run).
    refresh_seconds: float = 900.0
    mode: str = "plain"
    """``rate``: rate mode, the rate read from the metric :attr:`rate` names; ``derived``: rate
    mode, the rate read with :attr:`rate_query`, derived from the metric's own query (a rolling
    window, :func:`~anomaly.io.rolling_query.recognise_rolling_sum`); ``plain``: the values
    extrapolated themselves."""
    rate_query: str | None = None
    """``derived`` mode: the PromQL of the rate (an internal series: not detected, not pushed)."""
    reason: str = ""
    """Why this mode, for a person: the rate's source, or why there is none."""
    trails: bool = False
    """Plain although the query is a rolling window: the forecast lags it (a run says so)."""

    def describe(self) -> str:
        """One line: the mode and why (``check-config`` prints it)."""
        if self.mode == "plain":
            return f"plain: {self.reason}"
        window, unit = format_duration(self.window_seconds), format_duration(self.rate_unit_seconds)
        return f"rate mode, {self.reason} (window {window}, per {unit})"


@dataclass(frozen=True)
class MetricConfig:
    name: str
    query: str
    labels: Mapping[str, str] = field(default_factory=FrozenMap)
    forecast: ForecastConfig | None = None
    detect: bool = True
    lookback_seconds: float | None = None  # overrides the global lookback for this metric
    # False when the query mixes tenants (e.g. divides by a global sum), so that adding a
    # tenant matcher to its selectors would change its results: it is then fetched whole and
    # its series filtered by tenant after the fetch.
    split: bool = True


@dataclass(frozen=True)
class DetectionConfig:
    threshold: float = 0.5
    refit_interval_seconds: float = 86400.0
    min_history_points: int = 288
    max_data_age_seconds: float = 1800.0
    """A series whose newest value is at most this old is judged up to it when the newest
    rows are empty (late data); 0 judges the grid's newest rows as they are
    (:mod:`anomaly.job.freshness`)."""


#: The most worker processes a run starts (``scale.workers``, ``--workers``).
MAX_WORKERS = 64


def available_cpus(cgroup_root: str | os.PathLike[str] = "/sys/fs/cgroup") -> int:
    """The CPUs this process may use, as a container sees them: those it may run on (its
    affinity, else the machine's count), fewer when a cgroup CPU quota (a container's CPU limit)
    allows less, rounded up; at least 1.

    The quota is cgroup v2's ``cpu.max`` (``"200000 100000"``: 2 CPUs; ``"max 100000"``: none)
    or cgroup v1's ``cpu/cpu.cfs_quota_us`` over ``cpu/cpu.cfs_period_us`` (``-1``: none), read
    under ``cgroup_root``, where a container finds its own cgroup; a file that is missing or
    unreadable sets no limit.
    """
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        cpus = os.cpu_count() or 1
    root = Path(cgroup_root)
    v2 = _read_numbers(root / "cpu.max")
    v1 = _read_numbers(root / "cpu" / "cpu.cfs_quota_us") + _read_numbers(
        root / "cpu" / "cpu.cfs_period_us"
    )
    for quota in (v2, v1):
        if len(quota) == 2 and all(math.isfinite(q) and q > 0 for q in quota):
            cpus = min(cpus, math.ceil(quota[0] / quota[1]))
    return max(1, cpus)


def _read_numbers(path: Path) -> list[float]:
    """The numbers of a one-line cgroup file; [] when it is missing, unreadable or says ``max``
    (no limit)."""
    try:
        words = path.read_text().split()
        return [] if "max" in words else [float(w) for w in words]
    except (OSError, UnicodeDecodeError, ValueError):
        return []


@dataclass(frozen=True)
class ScaleConfig:
    """How a run bounds its memory and spreads its work.

    ``batch_series``: a metric with more series than this (in one shard) is read in tenant
    batches of about this many series, each processed and pushed before the next. ``max_series``:
    a metric with more series than this fails with an error naming it and the count, before
    anything is fetched (``None``: no limit). ``workers``: processes working side by side, on
    batches or on the metrics of a run of one batch (1: all in the calling process); ``None``
    (the default, ``workers: auto``): as many as the CPUs this process may use
    (:func:`available_cpus`, at most :data:`MAX_WORKERS`) for a run large enough to repay
    starting them, one process for a small run (see :func:`anomaly.job.run.auto_workers`).
    """

    batch_series: int = 500
    max_series: int | None = 100_000
    workers: int | None = None


@dataclass(frozen=True)
class Objective:
    metric: str
    max: float | None = None
    min: float | None = None
    weight: float = 1.0


@dataclass(frozen=True)
class HealthConfig:
    objectives: tuple[Objective, ...] = ()
    objective_weight: float = 0.7
    anomaly_weight: float = 0.3


@dataclass(frozen=True)
class Config:
    prometheus: PrometheusConfig
    pushgateway: PushgatewayConfig
    metrics: tuple[MetricConfig, ...]
    tenant_label: str | None = "organization_id"
    lookback_seconds: float = 7 * 86400.0
    step_seconds: float = 300.0
    schedule: str = "* * * * *"
    model_dir: str = "models"
    detection: DetectionConfig = field(default_factory=DetectionConfig)
    health: HealthConfig = field(default_factory=HealthConfig)
    log_level: str = "INFO"
    scale: ScaleConfig = field(default_factory=ScaleConfig)

    def metric(self, name: str) -> MetricConfig:
        for m in self.metrics:
            if m.name == name:
                return m
        raise KeyError(name)


# --------------------------------------------------------------------------- validation helpers


def _check_keys(raw: Mapping[str, Any], allowed: set[str], where: str) -> None:
    for key in raw:
        if key not in allowed:
            path = f"{where}.{key}" if where else str(key)
            hint = difflib.get_close_matches(str(key), sorted(allowed), n=1)
            extra = f"; did you mean '{hint[0]}'?" if hint else ""
            raise ConfigError(path, f"unknown key (allowed: {', '.join(sorted(allowed))}){extra}")


def _mapping(raw: Any, key: str) -> Mapping[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ConfigError(key, f"expected a mapping, got {type(raw).__name__} {raw!r}")
    return raw


def _str(raw: Any, key: str, *, allow_empty: bool = False) -> str:
    if not isinstance(raw, str):
        raise ConfigError(key, f"expected a string, got {type(raw).__name__} {raw!r}")
    if not allow_empty and not raw.strip():
        raise ConfigError(key, "must not be empty")
    return raw


def _number(raw: Any, key: str, *, positive: bool = False, minimum: float | None = None) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw):
        raise ConfigError(key, f"expected a finite number, got {raw!r}")
    if positive and raw <= 0:
        raise ConfigError(key, f"must be positive, got {raw!r}")
    if minimum is not None and raw < minimum:
        raise ConfigError(key, f"must be at least {minimum}, got {raw!r}")
    return float(raw)


def _int(raw: Any, key: str, *, minimum: int = 0) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise ConfigError(key, f"expected an integer, got {raw!r}")
    if raw < minimum:
        raise ConfigError(key, f"must be at least {minimum}, got {raw!r}")
    return raw


def _bool(raw: Any, key: str) -> bool:
    if not isinstance(raw, bool):
        raise ConfigError(key, f"expected true or false, got {raw!r}")
    return raw


def _url(raw: Any, key: str) -> str:
    url = _str(raw, key)
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ConfigError(key, f"expected an http:// or https:// URL, got {url!r}")
    try:
        parsed.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise ConfigError(key, f"invalid port in URL {url!r}") from None
    return url.rstrip("/")


def _str_map(raw: Any, key: str, *, label_names: bool = False) -> Mapping[str, str]:
    out: dict[str, str] = {}
    for k, v in _mapping(raw, key).items():
        if not isinstance(k, str) or (label_names and not _LABEL_NAME_RE.match(k)):
            raise ConfigError(f"{key}.{k}", "expected a label name matching [a-zA-Z_][a-zA-Z0-9_]*")
        if isinstance(v, bool) or not isinstance(v, str | int | float):
            raise ConfigError(f"{key}.{k}", f"expected a string value, got {v!r}")
        out[k] = str(v)
    return FrozenMap(out)


def _secret(raw: Mapping[str, Any], name: str, where: str, base: Path) -> str | None:
    """A secret given as ``name_file`` (a path) or ``name_env`` (a variable), or inline ``name``."""
    value = raw.get(name)
    file_key, env_key = f"{name}_file", f"{name}_env"
    given = [k for k in (name, file_key, env_key) if raw.get(k) is not None]
    if len(given) > 1:
        raise ConfigError(f"{where}.{given[1]}", f"give only one of {', '.join(given)}")
    if raw.get(file_key) is not None:
        path = Path(_str(raw[file_key], f"{where}.{file_key}"))
        path = path if path.is_absolute() else base / path
        try:
            return path.read_text().strip()
        except OSError as e:
            raise ConfigError(f"{where}.{file_key}", f"cannot read {path}: {e.strerror}") from None
    if raw.get(env_key) is not None:
        var = _str(raw[env_key], f"{where}.{env_key}")
        if var not in os.environ:
            raise ConfigError(f"{where}.{env_key}", f"environment variable {var} is not set")
        return os.environ[var]
    return None if value is None else _str(value, f"{where}.{name}")


_AUTH_KEYS = {
    "bearer_token",
    "bearer_token_file",
    "bearer_token_env",
    "username",
    "password",
    "password_file",
    "password_env",
}
_TLS_KEYS = {"verify", "ca_file", "cert_file", "key_file"}


def _auth(raw: Any, where: str, base: Path) -> AuthConfig:
    raw = _mapping(raw, where)
    _check_keys(raw, _AUTH_KEYS, where)
    token = _secret(raw, "bearer_token", where, base)
    password = _secret(raw, "password", where, base)
    username = None if raw.get("username") is None else _str(raw["username"], f"{where}.username")
    if token and username:
        raise ConfigError(where, "give either bearer_token or username/password, not both")
    if password and not username:
        raise ConfigError(f"{where}.username", "required when a password is given")
    return AuthConfig(bearer_token=token, username=username, password=password)


def _tls(raw: Any, where: str, base: Path) -> TLSConfig:
    raw = _mapping(raw, where)
    _check_keys(raw, _TLS_KEYS, where)
    files: dict[str, str | None] = {}
    for k in ("ca_file", "cert_file", "key_file"):
        if raw.get(k) is None:
            files[k] = None
            continue
        p = Path(_str(raw[k], f"{where}.{k}"))
        p = p if p.is_absolute() else base / p
        if not p.is_file():
            raise ConfigError(f"{where}.{k}", f"file not found: {p}")
        files[k] = str(p)
    verify = _bool(raw.get("verify", True), f"{where}.verify")
    return TLSConfig(verify=verify, **files)


_ENDPOINT_KEYS = {
    "url",
    "headers",
    "timeout_seconds",
    "retries",
    "retry_backoff_seconds",
    "auth",
    "tls",
}


def _endpoint(
    raw: Any, where: str, base: Path, extra_keys: set[str]
) -> tuple[Mapping[str, Any], dict[str, Any]]:
    """The HTTP settings Prometheus and the Pushgateway share; returns the raw section and the
    validated common fields."""
    if raw is None:
        raise ConfigError(where, "required section is missing (it needs at least 'url')")
    raw = _mapping(raw, where)
    _check_keys(raw, _ENDPOINT_KEYS | extra_keys, where)
    if "url" not in raw:
        raise ConfigError(f"{where}.url", "required key is missing")
    common = {
        "url": _url(raw["url"], f"{where}.url"),
        "headers": _str_map(raw.get("headers"), f"{where}.headers"),
        "timeout_seconds": _number(
            raw.get("timeout_seconds", 30), f"{where}.timeout_seconds", positive=True
        ),
        "retries": _int(raw.get("retries", 3), f"{where}.retries"),
        "retry_backoff_seconds": _number(
            raw.get("retry_backoff_seconds", 0.5), f"{where}.retry_backoff_seconds", minimum=0
        ),
        "auth": _auth(raw.get("auth"), f"{where}.auth", base),
        "tls": _tls(raw.get("tls"), f"{where}.tls", base),
    }
    return raw, common


def _prometheus(raw: Any, base: Path) -> PrometheusConfig:
    raw, common = _endpoint(raw, "prometheus", base, {"max_points_per_query"})
    return PrometheusConfig(
        max_points_per_query=_int(
            raw.get("max_points_per_query", 11000), "prometheus.max_points_per_query", minimum=2
        ),
        **common,
    )


#: `pushgateway.grouping`: one Pushgateway group per tenant, per batch, or per batch when a run
#: has several.
GROUPINGS = ("auto", "tenant", "batch")


def _pushgateway(raw: Any, base: Path) -> PushgatewayConfig:
    raw, common = _endpoint(raw, "pushgateway", base, {"job", "grouping"})
    job = _str(raw.get("job", "anomaly_detector"), "pushgateway.job")
    if "/" in job:
        raise ConfigError("pushgateway.job", f"must not contain '/', got {job!r}")
    grouping = raw.get("grouping", "auto")
    if grouping not in GROUPINGS:
        raise ConfigError(
            "pushgateway.grouping", f"must be one of {', '.join(GROUPINGS)}, got {grouping!r}"
        )
    return PushgatewayConfig(job=job, grouping=grouping, **common)


def _forecast(raw: Any, where: str, query: str, step_seconds: float) -> ForecastConfig:
    """``metrics[i].forecast`` of the metric reading ``query`` at ``step_seconds``, with its
    mode: rate mode from ``rate:`` (a metric name), else from the rate derived from a query
    that is a rolling window, else plain (``rate: false`` asks for plain)."""
    raw = _mapping(raw, where)
    _check_keys(
        raw, {"horizon", "threshold", "direction", "rate", "window", "rate_unit", "refresh"}, where
    )
    direction = raw.get("direction", "above")
    if direction not in ("above", "below"):
        raise ConfigError(f"{where}.direction", f"must be 'above' or 'below', got {direction!r}")
    threshold = raw.get("threshold")
    rate = raw.get("rate")
    if rate is not None and rate is not False and not isinstance(rate, str):
        raise ConfigError(
            f"{where}.rate",
            f"expected the name of the metric that is this sum's rate, or false, got {rate!r}",
        )
    window, unit = 86400.0, 3600.0
    mode: dict[str, Any]
    if rate is False:
        mode = {"mode": "plain", "reason": "forecast.rate is false"}
    elif rate is not None:
        rate = _str(rate, f"{where}.rate")
        mode = {"mode": "rate", "rate": rate, "reason": f"rate from metric {rate}"}
    else:
        found = recognise_rolling_sum(query, step_seconds)
        if isinstance(found, RollingSum):
            window, unit = found.window_seconds, found.rate_unit_seconds
            one_line = re.sub(r"\s*\n\s*", " ", found.rate_query)
            mode = {
                "mode": "derived",
                "rate_query": found.rate_query,
                "reason": f"rate derived from the query: {one_line}",
            }
        else:
            mode = {"mode": "plain", "reason": found.reason, "trails": found.rolling}
    return ForecastConfig(
        horizon_seconds=parse_duration(raw.get("horizon", "24h"), f"{where}.horizon"),
        threshold=None if threshold is None else _number(threshold, f"{where}.threshold"),
        direction=direction,
        window_seconds=parse_duration(raw.get("window", window), f"{where}.window"),
        rate_unit_seconds=parse_duration(raw.get("rate_unit", unit), f"{where}.rate_unit"),
        refresh_seconds=parse_duration_or_off(raw.get("refresh", "15m"), f"{where}.refresh"),
        **mode,
    )


_RESERVED_LABELS = {"metric", "job", "instance", "horizon", "component", "__name__"}


def _metrics(raw: Any, step_seconds: float) -> tuple[MetricConfig, ...]:
    if raw is None:
        raise ConfigError("metrics", "required key is missing (a list of {name, query})")
    if not isinstance(raw, list) or not raw:
        raise ConfigError("metrics", f"expected a non-empty list of {{name, query}}, got {raw!r}")
    out: list[MetricConfig] = []
    seen: set[str] = set()
    rates: list[tuple[str, Any]] = []
    for i, item in enumerate(raw):
        where = f"metrics[{i}]"
        item = _mapping(item, where)
        _check_keys(
            item, {"name", "query", "labels", "forecast", "detect", "lookback", "split"}, where
        )
        for req in ("name", "query"):
            if req not in item:
                raise ConfigError(f"{where}.{req}", "required key is missing")
        name = _str(item["name"], f"{where}.name")
        if not _METRIC_NAME_RE.match(name):
            raise ConfigError(f"{where}.name", f"must match [a-zA-Z_][a-zA-Z0-9_]*, got {name!r}")
        if name in seen:
            raise ConfigError(f"{where}.name", f"duplicate metric name {name!r}")
        seen.add(name)
        labels = _str_map(item.get("labels"), f"{where}.labels", label_names=True)
        for k in labels:
            if k in _RESERVED_LABELS:
                raise ConfigError(f"{where}.labels.{k}", "is reserved for the job's own labels")
        query = _str(item["query"], f"{where}.query")
        fc = item.get("forecast")
        forecast = None if fc is None else _forecast(fc, f"{where}.forecast", query, step_seconds)
        if forecast is not None and forecast.rate is not None:
            rates.append((f"{where}.forecast.rate", forecast.rate))
        out.append(
            MetricConfig(
                name=name,
                query=query,
                labels=labels,
                forecast=forecast,
                detect=_bool(item.get("detect", True), f"{where}.detect"),
                split=_bool(item.get("split", True), f"{where}.split"),
                lookback_seconds=None
                if item.get("lookback") is None
                else parse_duration(item["lookback"], f"{where}.lookback"),
            )
        )
    for key, rate in rates:
        if rate not in seen:
            raise ConfigError(
                key, f"{rate!r} is not a configured metric (known: {', '.join(sorted(seen))})"
            )
    reads = {m.query.strip(): m.name for m in reversed(out)}
    return tuple(_read_with(m, reads) for m in out)


def _read_with(mc: MetricConfig, reads: Mapping[str, str]) -> MetricConfig:
    """``mc``, its forecast's derived rate read with the configured metric whose query it is,
    if any (``reads``: metric names by query): one read per batch then serves both, as with
    ``forecast.rate``."""
    fcc = mc.forecast
    if fcc is None or fcc.rate_query is None:
        return mc
    metric = reads.get(fcc.rate_query.strip())
    if metric is None or metric == mc.name:
        return mc
    reason = f"{fcc.reason}, as metric {metric} reads it"
    return dataclasses.replace(mc, forecast=dataclasses.replace(fcc, rate=metric, reason=reason))


def _detection(raw: Any) -> DetectionConfig:
    where = "detection"
    raw = _mapping(raw, where)
    _check_keys(raw, {"threshold", "refit_interval", "min_history_points", "max_data_age"}, where)
    threshold = _number(raw.get("threshold", 0.5), f"{where}.threshold")
    if not 0 < threshold < 1:
        raise ConfigError(f"{where}.threshold", f"must be between 0 and 1, got {threshold!r}")
    return DetectionConfig(
        threshold=threshold,
        refit_interval_seconds=parse_duration(
            raw.get("refit_interval", "1d"), f"{where}.refit_interval"
        ),
        min_history_points=_int(
            raw.get("min_history_points", 288), f"{where}.min_history_points", minimum=12
        ),
        max_data_age_seconds=parse_duration_or_off(
            raw.get("max_data_age", "30m"), f"{where}.max_data_age"
        ),
    )


def _scale(raw: Any) -> ScaleConfig:
    where = "scale"
    raw = _mapping(raw, where)
    _check_keys(raw, {"batch_series", "max_series", "workers"}, where)
    batch = _int(raw.get("batch_series", 500), f"{where}.batch_series", minimum=1)
    max_series = raw.get("max_series", 100_000)
    if max_series is not None:
        max_series = _int(max_series, f"{where}.max_series", minimum=1)
    workers = parse_workers(raw.get("workers", "auto"), f"{where}.workers")
    return ScaleConfig(batch_series=batch, max_series=max_series, workers=workers)


def parse_workers(raw: Any, key: str = "scale.workers") -> int | None:
    """``scale.workers`` (or ``--workers``): a whole number from 1 to :data:`MAX_WORKERS`, or
    ``auto`` (``None``: sized to the machine and the run)."""
    if isinstance(raw, str) and raw.strip().lower() == "auto":
        return None
    if isinstance(raw, str) and raw.strip().isdigit():
        raw = int(raw)
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise ConfigError(key, f"expected a number of processes or 'auto', got {raw!r}")
    if raw < 1:
        raise ConfigError(key, f"must be at least 1, got {raw!r}")
    if raw > MAX_WORKERS:
        raise ConfigError(key, f"must be at most {MAX_WORKERS}, got {raw}")
    return raw


def _health(raw: Any, metric_names: set[str]) -> HealthConfig:
    where = "health"
    raw = _mapping(raw, where)
    _check_keys(raw, {"objectives", "weights"}, where)
    objectives: list[Objective] = []
    items = raw.get("objectives") or []
    if not isinstance(items, list):
        raise ConfigError(f"{where}.objectives", f"expected a list, got {items!r}")
    for i, item in enumerate(items):
        w = f"{where}.objectives[{i}]"
        item = _mapping(item, w)
        _check_keys(item, {"metric", "max", "min", "weight"}, w)
        if "metric" not in item:
            raise ConfigError(f"{w}.metric", "required key is missing")
        metric = _str(item["metric"], f"{w}.metric")
        if metric not in metric_names:
            raise ConfigError(
                f"{w}.metric",
                f"{metric!r} is not a configured metric (known: {', '.join(sorted(metric_names))})",
            )
        lo = None if item.get("min") is None else _number(item["min"], f"{w}.min")
        hi = None if item.get("max") is None else _number(item["max"], f"{w}.max")
        if lo is None and hi is None:
            raise ConfigError(w, "needs 'max' or 'min'")
        if lo is not None and hi is not None and lo > hi:
            raise ConfigError(f"{w}.min", f"min {lo} is above max {hi}")
        weight = _number(item.get("weight", 1.0), f"{w}.weight", positive=True)
        objectives.append(Objective(metric=metric, max=hi, min=lo, weight=weight))
    weights = _mapping(raw.get("weights"), f"{where}.weights")
    _check_keys(weights, {"objectives", "anomalies"}, f"{where}.weights")
    ow = _number(weights.get("objectives", 0.7), f"{where}.weights.objectives", minimum=0)
    aw = _number(weights.get("anomalies", 0.3), f"{where}.weights.anomalies", minimum=0)
    if ow + aw <= 0:
        raise ConfigError(f"{where}.weights", "objectives + anomalies must be positive")
    return HealthConfig(objectives=tuple(objectives), objective_weight=ow, anomaly_weight=aw)


_TOP_KEYS = {
    "prometheus",
    "pushgateway",
    "tenant_label",
    "lookback",
    "step",
    "schedule",
    "model_dir",
    "metrics",
    "health",
    "detection",
    "log_level",
    "scale",
}


def config_from_dict(raw: Any, base_dir: str | Path = ".") -> Config:
    """Validate a parsed YAML document; ``base_dir`` resolves relative file paths."""
    base = Path(base_dir)
    if not isinstance(raw, Mapping):
        raise ConfigError("", f"the config must be a mapping of keys, got {type(raw).__name__}")
    _check_keys(raw, _TOP_KEYS, "")
    tenant = raw.get("tenant_label", "organization_id")
    if tenant is not None:
        tenant = _str(tenant, "tenant_label")
        if not _LABEL_NAME_RE.match(tenant):
            raise ConfigError("tenant_label", f"must be a label name, got {tenant!r}")
    lookback = parse_duration(raw.get("lookback", "7d"), "lookback")
    step = parse_duration(raw.get("step", "5m"), "step")
    if lookback < 10 * step:
        raise ConfigError(
            "lookback", f"must cover at least 10 steps ({10 * step:g}s), got {lookback:g}s"
        )
    schedule = _str(raw.get("schedule", "* * * * *"), "schedule")
    _check_cron(schedule)
    metrics = _metrics(raw.get("metrics"), step)
    level = _str(raw.get("log_level", "INFO"), "log_level").upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ConfigError("log_level", f"must be DEBUG, INFO, WARNING or ERROR, got {level!r}")
    model_dir = Path(_str(raw.get("model_dir", "models"), "model_dir"))
    return Config(
        prometheus=_prometheus(raw.get("prometheus"), base),
        pushgateway=_pushgateway(raw.get("pushgateway"), base),
        metrics=metrics,
        tenant_label=tenant,
        lookback_seconds=lookback,
        step_seconds=step,
        schedule=schedule,
        model_dir=str(model_dir if model_dir.is_absolute() else base / model_dir),
        detection=_detection(raw.get("detection")),
        health=_health(raw.get("health"), {m.name for m in metrics}),
        log_level=level,
        scale=_scale(raw.get("scale")),
    )


def _check_cron(schedule: str) -> None:
    from apscheduler.triggers.cron import CronTrigger

    try:
        CronTrigger.from_crontab(schedule, timezone="UTC")
    except ValueError as e:
        raise ConfigError("schedule", f"invalid cron expression {schedule!r}: {e}") from None


def load_config(path: str | Path) -> Config:
    """Read and validate a YAML config file; relative paths in it resolve from its folder."""
    p = Path(path)
    try:
        text = p.read_text()
    except FileNotFoundError:
        raise ConfigError("", f"config file not found: {p}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError("", f"cannot read config file {p}: {e}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e)
        raise ConfigError("", f"{p}: YAML syntax error{where}: {problem}") from None
    if raw is None:
        raise ConfigError("", f"{p}: the file is empty")
    return config_from_dict(raw, base_dir=p.resolve().parent)
