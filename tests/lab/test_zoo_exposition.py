"""The exposition zoo generator: PromQL-shaped series, deterministic, backfillable, honest key.

A small instance (2 days, 8 tenants) is written, backfilled with promtool and queried in a real
Prometheus, whose answers must equal the generator's own PromQL emulation (the numbers every
noise width and incident size rests on). The answer key is checked on the bench's seeds at full
tenant count over 3 days.
"""

from __future__ import annotations

import hashlib
import math
import re
import subprocess
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import requests

from bench.zoo import JUDGED_SECONDS, KINDS, Scenario
from bench.zoo import exposition as ex
from tests.conftest import Servers

SMALL = {"days": 2.0, "tenants": 8}
SAMPLE = re.compile(r"^([a-z_]+)\{([^}]*)\} (\S+) (\d+)$")


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Scenario:
    return ex.make(1, tmp_path_factory.mktemp("exposition"), **SMALL)


@pytest.fixture(scope="module")
def parsed(small: Scenario) -> dict[tuple[str, str], tuple[np.ndarray, np.ndarray]]:
    """(sample name, labels) -> (times, values) of the small instance's file."""
    times: dict[tuple[str, str], list[int]] = defaultdict(list)
    values: dict[tuple[str, str], list[float]] = defaultdict(list)
    lines = small.openmetrics.read_text().splitlines()
    assert lines[-1] == "# EOF"
    for line in lines[:-1]:
        if line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        assert m, line
        key = (m.group(1), m.group(2))
        times[key].append(int(m.group(4)))
        values[key].append(float(m.group(3)))
    return {k: (np.array(times[k]), np.array(values[k])) for k in times}


@pytest.fixture(scope="module")
def worlds() -> dict[int, ex.World]:
    """The bench's seeds at full tenant count, 3 days (the key does not depend on the days)."""
    return {seed: ex.build(seed, days=3.0, tenants=16) for seed in ex.GENERATOR.seeds}


def test_make_is_deterministic(small: Scenario, tmp_path: Path) -> None:
    again = ex.make(1, tmp_path, **SMALL)
    assert _digest(again.openmetrics) == _digest(small.openmetrics)
    assert again.incidents == small.incidents
    assert again.end == small.end


def test_the_file_is_openmetrics_with_one_family_per_name(small: Scenario) -> None:
    text = small.openmetrics.read_text()
    types = re.findall(r"^# TYPE (\S+) (\S+)$", text, flags=re.M)
    assert types == [
        ("pa_exp_http_requests", "counter"),
        ("pa_exp_request_duration_seconds", "histogram"),
        ("pa_exp_jobs_failed", "counter"),
        ("pa_exp_db_connections_in_use", "gauge"),
        ("pa_exp_replicas", "gauge"),
        ("pa_exp_ai_tokens", "counter"),
    ]
    assert len(re.findall(r"^# HELP ", text, flags=re.M)) == len(types)


def test_no_sample_after_end_and_one_minute_scrapes(
    small: Scenario, parsed: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]]
) -> None:
    newest = max(int(t.max()) for t, _ in parsed.values())
    assert newest <= small.end
    assert newest > small.end - ex.SCRAPE_SECONDS
    assert small.end <= ex.LATEST_END
    for t, _ in parsed.values():
        assert np.all(np.diff(t) >= ex.SCRAPE_SECONDS)  # in order; gaps where a pod was down
    assert sum(v.size for _, v in parsed.values()) > 100_000


def test_counters_reset_when_pods_restart(
    parsed: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]],
) -> None:
    resets = 0
    for (name, labels), (t, v) in parsed.items():
        if name != "pa_exp_http_requests_total":
            continue
        drops = np.flatnonzero(np.diff(v) < 0) + 1
        for i in drops:
            resets += 1
            assert v[i] < 0.2 * v[i - 1], (labels, v[i - 1], v[i])  # starts again near 0
            assert t[i] - t[i - 1] >= 2 * ex.SCRAPE_SECONDS  # a scrape or more was missed
    assert resets >= 4
    pods = {labels for name, labels in parsed if name == "pa_exp_http_requests_total"}
    assert len(pods) > 2 * SMALL["tenants"]  # pods come and go: more series than replicas


def test_promtool_backfills_it_and_prometheus_agrees_with_the_emulation(
    small: Scenario, promtool: str, servers: Servers, tmp_path: Path
) -> None:
    blocks = tmp_path / "tsdb"
    result = subprocess.run(
        [
            promtool,
            "tsdb",
            "create-blocks-from",
            "openmetrics",
            "--max-block-duration=72h",
            str(small.openmetrics),
            str(blocks),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert any((p / "meta.json").is_file() for p in blocks.iterdir())
    world = ex.build(1, **SMALL)
    names = [t.name for t in world.tenants]
    start = small.end - 6 * 3600.0
    with servers.prometheus(prebuilt_data_dir=blocks) as server:
        for entry in small.metrics:
            params = {"query": entry.query, "start": start, "end": small.end, "step": 300}
            body = requests.get(f"{server.url}/api/v1/query_range", params=params, timeout=30)
            series = body.json()["data"]["result"]
            assert len(series) == len(names), entry.name
            for s in series:
                ti = names.index(s["metric"]["organization_id"])
                at = np.array([float(v[0]) for v in s["values"]])
                got = np.array([float(v[1]) for v in s["values"]])
                mine = world.outputs[(ti, entry.name)].obs[np.searchsorted(world.at, at)]
                assert np.array_equal(np.isnan(got), np.isnan(mine)), entry.name
                ok = ~np.isnan(got)
                np.testing.assert_allclose(mine[ok], got[ok], rtol=1e-9, atol=1e-9)


def test_the_key_lists_live_incidents_of_about_half_the_tenants(
    worlds: dict[int, ex.World],
) -> None:
    for w in worlds.values():
        names = [t.name for t in w.tenants]
        judged = w.end - JUDGED_SECONDS
        metrics = {e.name for e in ex.METRICS}
        for inc in w.incidents:
            assert inc.tenant in names and inc.metric in metrics and inc.kind in KINDS
            assert judged - 3600 < inc.start < w.end and inc.end > judged, inc
            assert inc.note
        troubled = {i.tenant for i in w.incidents}
        assert len(troubled) == len(names) // 2
        assert len(names) - len(troubled) >= 6
        kinds = {i.kind for i in w.incidents}
        assert kinds >= {"level_shift", "spike", "outage", "flatline"}
        assert len({p.tenant for p in w.plans if not p.live}) >= round(0.3 * len(names))
        assert all(p.t1 < judged - 86400 * 0.2 for p in w.plans if not p.live)


def _size(w: ex.World, p: ex._Plan) -> float:
    """The size of a live plan by the definitions of SIZE_RANGES, from the world's outputs."""
    out, clean = w.outputs[(p.tenant, p.metric)], w.clean[(p.tenant, p.metric)]
    width, median = w.widths[(p.tenant, p.metric)], w.medians[(p.tenant, p.metric)]
    window = {ex.FAIL: 3600.0, ex.DB: 0.0, ex.REPL: 0.0}.get(p.metric, 300.0)
    if p.kind in ("level_shift", "spike", "outage"):
        use = (w.at >= p.t0) & (w.at <= min(p.t1 + window, w.end))
        return float(np.nanmax(np.abs(out.exp[use] - clean.exp[use])) / width)
    use = (w.at >= p.t0 + window) & (w.at <= min(p.t1, w.end))
    if p.kind == "variance_burst":
        r = out.obs[use] - out.exp[use] - median
        return float(np.sqrt(np.nanmean(r**2)) / width)
    steps = np.diff(out.obs[use])
    return float(np.std(steps) / (math.sqrt(2) * width))


def test_each_incident_has_the_promised_size_in_noise_widths(worlds: dict[int, ex.World]) -> None:
    for w in worlds.values():
        live = [p for p in w.plans if p.live]
        assert len(live) == len(w.sizes)
        for p, reported in zip(live, w.sizes, strict=True):
            lo, hi = ex.SIZE_RANGES[p.kind]
            size = _size(w, p)
            assert lo <= size <= hi, (p, size)
            assert size == pytest.approx(reported, rel=1e-6, abs=1e-9)
        drops = [p.mag for p in live if (p.metric, p.kind) == (ex.REQ, "level_shift")]
        assert drops and all(0.1 <= d <= 0.3 for d in drops)  # a 13-25 % drop, about


def test_the_hard_case_sits_in_a_night_batch_hour_after_a_dst_switch(
    worlds: dict[int, ex.World],
) -> None:
    for w in worlds.values():
        hard = next(t for t in w.tenants if "hard" in t.tags)
        trap = next(t for t in w.tenants if "trap" in t.tags)
        incident = next(p for p in w.plans if p.live and p.tenant == hard.index)
        assert (incident.metric, incident.kind) == (ex.DB, "level_shift")
        assert not any(p.live and p.tenant == trap.index for p in w.plans)
        for t in (hard, trap):
            assert t.switch is not None and w.end - 3 * 86400 < t.switch < w.end - 86400 / 2
            assert t.batch_on[-31:].all()  # the judged window lies in the batch hour


def test_quiet_tenants_meet_the_objectives(worlds: dict[int, ex.World]) -> None:
    for w in worlds.values():
        troubled = {i.tenant for i in w.incidents}
        last_day = w.at > w.end - 86400
        for t in w.tenants:
            if t.name in troubled:
                continue
            for objective in ex.OBJECTIVES:
                values = w.outputs[(t.index, objective["metric"])].obs[last_day]
                assert np.nanmax(values) <= objective["max"], (t.name, objective)
