"""The data the fault tests run on: normal synthetic tenants plus hand-written pathological,
hostile-label and isolation series, backfilled into one real Prometheus (``promtool tsdb
create-blocks-from openmetrics``) that scrapes one real Pushgateway.

Every value comes from ``numpy.random.default_rng`` with a fixed seed; only the time grid's
end follows the clock (the newest sample must not be in the future).
"""

from __future__ import annotations

import contextlib
import math
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from anomaly_lab import devstack, synth

from tests.conftest import Servers, write_config

STEP = 300
DAYS = 8
TENANT = "organization_id"

#: Tenant ids no label value may break: PromQL fragments, quotes, escapes, newlines, unicode,
#: the Pushgateway's path separator and the text format's comment/brace characters.
HOSTILE_TENANTS: tuple[str, ...] = (
    'x"} or vector(1) #',
    'quote"inside',
    "back\\slash\\",
    "new\nline",
    "tab\tand space ",
    "ünïcødé-租户-🚀",
    "a/b/../c",
    "{} ,=~!",
    "' or 1=1 --",
    "%2F%0A+",
)

#: Pathological gauge series of ``patho_value``, one tenant each (see :func:`_patho`).
PATHO_TENANTS: tuple[str, ...] = (
    "constant",
    "zeros",
    "gappy",
    "newcomer",
    "nonfinite",
    "all_nan",
    "huge",
    "glitch",
    "twin",
)
COUNTER_TENANTS: tuple[str, ...] = ("resets", "reset_now")

ISOLATION = {
    "alpha": ({"region": "eu", "plan": "gold"}, 100.0),
    "beta": ({"region": "us", "tier": "free"}, 10000.0),
}

PATHO_METRICS: list[dict[str, Any]] = [
    {
        "name": "patho",
        "query": "patho_value",
        "forecast": {"horizon": "6h", "threshold": 50, "direction": "above"},
    },
    {"name": "patho_rate", "query": "sum by (organization_id) (rate(patho_requests_total[15m]))"},
    {"name": "patho_counter", "query": "patho_requests_total"},
    {"name": "patho_dup", "query": '{__name__=~"patho_value|patho_dup",organization_id="twin"}'},
]
HOSTILE_METRIC = {"name": "hostile", "query": "max by (organization_id) (hostile_value)"}
ISOLATION_METRICS = [
    {"name": "iso_requests", "query": "iso_requests", "labels": {"team": "iso"}},
    {"name": "iso_latency", "query": "iso_latency_seconds"},
]
NORMAL_METRIC = {"name": "latency_p95", "query": synth.QUERIES["latency_p95"]}


@dataclass(frozen=True)
class World:
    stack: devstack.Stack
    end: float
    """Epoch seconds of the newest sample; runs use ``--at end``."""
    normal: synth.Dataset
    """org-01..org-03, every synth metric."""


# --------------------------------------------------------------------------- series


def _seasonal(rng: np.random.Generator, t: np.ndarray, level: float) -> np.ndarray:
    day = np.sin(2 * math.pi * (t % 86400) / 86400)
    return level * (1 + 0.3 * day) * (1 + 0.03 * rng.standard_normal(t.size))


def _patho(rng: np.random.Generator, t: np.ndarray) -> dict[str, np.ndarray]:
    """Per tenant: values on ``t`` (NaN in the array = no sample written, i.e. a gap),
    and for "nonfinite" the non-finite samples are real NaN/Inf samples (see ``_NAN_SAMPLE``)."""
    n = t.size
    gappy = _seasonal(rng, t, 20.0)
    gappy[n // 4 : n // 4 + int(2.5 * 86400 / STEP)] = np.nan  # a 2.5-day hole
    gappy[-24:] = np.nan  # nothing for the last two hours
    gappy[n // 2 : n // 2 + 30] = np.nan
    newcomer = np.full(n, np.nan)
    newcomer[-5:] = [3.0, 3.2, 2.9, 3.1, 3.0]
    nonfinite = _seasonal(rng, t, 10.0)
    idx = rng.choice(n - 1, size=n // 50, replace=False)
    nonfinite[idx[0::3]] = _NAN_SAMPLE
    nonfinite[idx[1::3]] = math.inf
    nonfinite[idx[2::3]] = -math.inf
    nonfinite[-1] = math.inf
    glitch = _seasonal(rng, t, 1.0)
    glitch[-1] = 1e300
    return {
        "constant": np.full(n, 5.0),
        "zeros": np.zeros(n),
        "gappy": gappy,
        "newcomer": newcomer,
        "nonfinite": nonfinite,
        "all_nan": np.full(n, _NAN_SAMPLE),
        "huge": _seasonal(rng, t, 1e300),
        "glitch": glitch,
        "twin": _seasonal(rng, t, 7.0),
    }


# A NaN sample (as opposed to a gap) is written with this sentinel, since the arrays use NaN
# for "no sample". It is a NaN with a payload numpy keeps.
_NAN_SAMPLE = float(np.frombuffer(np.uint64(0x7FF8_0000_0000_BEEF).tobytes(), dtype=np.float64)[0])


def _is_nan_sample(v: float) -> bool:
    return math.isnan(v) and np.float64(v).tobytes() == np.float64(_NAN_SAMPLE).tobytes()


def _counter(rng: np.random.Generator, t: np.ndarray, resets_every: int | None) -> np.ndarray:
    inc = np.abs(_seasonal(rng, t, 50.0)) * STEP
    out = np.empty(t.size)
    total = 0.0
    for i, x in enumerate(inc):
        if resets_every and i and i % resets_every == 0:
            total = 0.0  # a restart
        total += x
        out[i] = total
    return out


# --------------------------------------------------------------------------- OpenMetrics


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _fmt(v: float) -> str:
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return repr(float(v))


def _family(
    out: Any,
    name: str,
    kind: str,
    series: Sequence[tuple[Mapping[str, str], np.ndarray]],
    t: np.ndarray,
) -> None:
    family = name[: -len("_total")] if kind == "counter" else name
    out.write(f"# HELP {family} Written by tests/faults.\n# TYPE {family} {kind}\n")
    for labels, values in series:
        inner = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items()))
        for ts, v in zip(t.tolist(), values.tolist(), strict=True):
            if math.isnan(v) and not _is_nan_sample(v):
                continue  # a gap
            out.write(f"{name}{{{inner}}} {_fmt(v)} {int(ts)}\n")


def write_world(path: Path, end: float) -> synth.Dataset:
    """Write every series into ``path`` (OpenMetrics); returns the normal synth dataset."""
    normal = synth.generate(3, days=DAYS, seed=3, end=end)
    synth.write_openmetrics(normal, path)
    text = path.read_text()
    assert text.endswith("# EOF\n")
    rng = np.random.default_rng(606)
    t = normal.timestamps
    with open(path, "w", encoding="utf-8") as out:
        out.write(text[: -len("# EOF\n")])
        patho = _patho(rng, t)
        _family(out, "patho_value", "gauge", [({TENANT: k}, v) for k, v in patho.items()], t)
        _family(out, "patho_dup", "gauge", [({TENANT: "twin"}, _seasonal(rng, t, 9.0))], t)
        counters = [
            ({TENANT: "resets"}, _counter(rng, t, resets_every=400)),
            ({TENANT: "reset_now"}, _counter(rng, t, resets_every=t.size - 1)),
        ]
        _family(out, "patho_requests_total", "counter", counters, t)
        hostile = [
            ({TENANT: h}, _seasonal(rng, t, 10.0 + i)) for i, h in enumerate(HOSTILE_TENANTS)
        ]
        _family(out, "hostile_value", "gauge", hostile, t)
        iso_req, iso_lat = [], []
        for tenant, (labels, level) in ISOLATION.items():
            iso_req.append(({TENANT: tenant, **labels}, _seasonal(rng, t, level)))
            iso_lat.append(({TENANT: tenant, **labels}, _seasonal(rng, t, level / 1000)))
        _family(out, "iso_requests", "gauge", iso_req, t)
        _family(out, "iso_latency_seconds", "gauge", iso_lat, t)
        out.write("# EOF\n")
    return normal


@contextlib.contextmanager
def run_world(servers: Servers) -> Iterator[World]:
    """A Pushgateway and a Prometheus holding :func:`write_world`'s data and scraping it."""
    servers.require("promtool", "prometheus", "pushgateway")
    end = math.floor((time.time() - 600) / STEP) * STEP
    with tempfile.TemporaryDirectory(prefix="anomaly-faults-") as tmp:
        workdir = Path(tmp)
        source = workdir / "world.om"
        normal = write_world(source, end)
        data = workdir / "data"
        devstack.create_blocks(source, data, timeout_seconds=300)
        with (
            servers.pushgateway() as pushgateway,
            servers.prometheus(prebuilt_data_dir=data, pushgateway_url=pushgateway.url) as prom,
        ):
            stack = devstack.Stack(prom.url, pushgateway.url, None, prom, pushgateway, None, None)
            yield World(stack, float(end), normal)


# --------------------------------------------------------------------------- configs


def config_for(
    path: Path,
    world: World,
    *,
    job: str,
    metrics: list[dict[str, Any]] | None = None,
    prometheus: Mapping[str, Any] | None = None,
    pushgateway: Mapping[str, Any] | None = None,
    **top: Any,
) -> Path:
    """The example config pointed at ``world`` under Pushgateway job ``job``, so that tests
    sharing the Pushgateway never replace each other's groups; nested sections are merged."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_config(path, world.stack)
    raw = yaml.safe_load(path.read_text())
    raw["metrics"] = metrics if metrics is not None else [NORMAL_METRIC]
    raw["health"] = {"objectives": []}
    raw["pushgateway"]["job"] = job
    raw["prometheus"].update(prometheus or {})
    raw["pushgateway"].update(pushgateway or {})
    raw.update(top)
    path.write_text(yaml.safe_dump(raw, sort_keys=False, allow_unicode=True))
    return path
