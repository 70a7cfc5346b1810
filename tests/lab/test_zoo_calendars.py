"""Tests of the zoo's ``calendars`` generator: determinism, the file, the key, the calendars."""

from __future__ import annotations

import re
import subprocess
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from bench.zoo import JUDGED_SECONDS, KINDS, Scenario, calendars

DAYS, TENANTS = 0.5, 16
MINUTES = int(DAYS * 1440) + 1


def make_small(seed: int, workdir: Path) -> Scenario:
    """Half a day, 16 tenants."""
    return calendars.make(seed, workdir, days=DAYS, tenants=TENANTS)


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Scenario:
    return make_small(5, tmp_path_factory.mktemp("cal"))


def series(path: Path) -> dict[tuple[str, str], np.ndarray]:
    """(sample name, tenant) -> array of (timestamp, value), read back with a plain split."""
    out: dict[tuple[str, str], list[tuple[float, float]]] = defaultdict(list)
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            continue
        name, rest = line.split("{", 1)
        labels, value, ts = rest.rsplit(" ", 2)
        tenant = re.fullmatch(r'organization_id="(org-\d\d)"}', labels)
        assert tenant, line
        out[(name, tenant.group(1))].append((float(ts), float(value)))
    return {k: np.array(v) for k, v in out.items()}


def queried(data: dict[tuple[str, str], np.ndarray], metric: str, tenant: str) -> np.ndarray:
    """(grid times, values) of the config query at step 5m, grid aligned to the end."""
    name, family, typ = next(m[:3] for m in calendars.METRICS if m[0] == metric)
    arr = data[(family + ("_total" if typ == "counter" else ""), tenant)]
    t, v = arr[:, 0], arr[:, 1]
    grid = np.arange(t.size - 1, 5, -5)[::-1]
    if typ == "counter":
        return np.stack([t[grid], (v[grid] - v[grid - 5]) / 300.0])
    return np.stack([t[grid], v[grid]])


def test_same_seed_same_world_other_seed_other_world(tmp_path: Path) -> None:
    a = make_small(7, tmp_path / "a")
    b = make_small(7, tmp_path / "b")
    c = make_small(8, tmp_path / "c")
    assert a.openmetrics.read_bytes() == b.openmetrics.read_bytes()
    assert a.incidents == b.incidents and a.end == b.end
    assert a.openmetrics.read_bytes() != c.openmetrics.read_bytes()
    assert calendars.calendars(7) == calendars.calendars(7)


def test_file_parses_as_openmetrics_and_stops_at_end(small: Scenario) -> None:
    text = small.openmetrics.read_text()
    assert text.endswith("# EOF\n")
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert {(f.name, f.type) for f in families.values()} == {
        (m[1], m[2]) for m in calendars.METRICS
    }
    for fam in families.values():
        assert {s.name for s in fam.samples} == {
            fam.name + ("_total" if fam.type == "counter" else "")
        }
        assert {s.labels["organization_id"] for s in fam.samples} == set(small.tenants)
        assert len(fam.samples) == MINUTES * len(small.tenants)
        stamps = np.array([float(s.timestamp) for s in fam.samples])
        assert stamps.max() == small.end
        assert stamps.min() == small.end - DAYS * 86400
    for (name, _), arr in series(small.openmetrics).items():
        assert np.all(np.diff(arr[:, 0]) == 60)
        assert np.all(np.isfinite(arr[:, 1])) and np.all(arr[:, 1] >= 0)
        if name.endswith("_total"):
            assert np.all(np.diff(arr[:, 1]) >= 0)  # counters never go down (no resets here)
    assert small.end <= 1796515200  # 2026-12-06
    assert small.end % small.step_seconds == 0


def test_promtool_accepts_the_file(small: Scenario, promtool: str, tmp_path: Path) -> None:
    out = subprocess.run(
        [
            promtool,
            "tsdb",
            "create-blocks-from",
            "openmetrics",
            str(small.openmetrics),
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert any(p.is_dir() for p in tmp_path.iterdir())


def test_key_is_live_in_the_judged_window_and_leaves_quiet_tenants(
    small: Scenario,
) -> None:
    names = {m.name for m in small.metrics}
    assert names == set(calendars.NAMES)
    for m in small.metrics:
        assert m.labels["team"] in {"platform", "security", "product", "ai", "customer-success"}
        assert m.labels["severity"] in {"critical", "warning", "info"}
        assert "organization_id" in m.query
    assert len({(i.tenant, i.metric) for i in small.incidents}) == len(small.incidents)
    for inc in small.incidents:
        assert inc.kind in KINDS and inc.metric in names and inc.tenant in small.tenants
        assert inc.start <= small.end and inc.end >= small.end - JUDGED_SECONDS
        assert inc.start >= small.end - 2400 - 60  # a flatline starts at most 40 min before
        assert inc.note
    share = len(small.incidents) / (6 * len(small.tenants))
    assert 0.38 <= share <= 0.5
    assert len(set(small.tenants) - small.troubled) >= 6
    assert {i.kind for i in small.incidents} == set(calendars.LIVE_KINDS)


def test_quiet_tenants_meet_the_objectives(small: Scenario) -> None:
    data = series(small.openmetrics)
    for obj in small.objectives:
        for tenant in sorted(set(small.tenants) - small.troubled):
            _, v = queried(data, str(obj["metric"]), tenant)
            if "max" in obj:
                assert v.max() <= float(obj["max"])  # type: ignore[arg-type]
            else:
                assert v.min() >= float(obj["min"])  # type: ignore[arg-type]


def test_incidents_are_sized_in_noise_widths_of_the_queried_series(
    small: Scenario, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same world without incidents, against the one with: the difference of the queried
    outputs, in the σ the note gives, is the promised size where the incident is fully on."""
    monkeypatch.setattr(calendars, "_apply", lambda s, p: None)
    clean = make_small(5, tmp_path)
    assert clean.incidents == small.incidents
    with_, without = series(small.openmetrics), series(clean.openmetrics)
    seen = set()
    for inc in small.incidents:
        t, q = queried(with_, inc.metric, inc.tenant)
        _, q0 = queried(without, inc.metric, inc.tenant)
        on = (t >= inc.start) & (t <= inc.end)
        assert on.any(), inc  # at least one 5-minute point sees it
        assert not np.array_equal(q[on], q0[on]), inc
        match = re.search(r"([+−])(\d+\.\d)σ .*σ=([0-9.e+-]+)", inc.note)
        if inc.kind in ("spike", "dip", "level_shift") and match:
            sign = 1 if match.group(1) == "+" else -1
            size, sigma = float(match.group(2)), float(match.group(3))
            assert (8 if inc.kind != "level_shift" else 6) <= size <= 14
            dev = (q[on] - q0[on]) / sigma * sign
            assert dev.max() == pytest.approx(size, abs=0.25), inc  # the note's rounding
            seen.add(inc.kind)
        if inc.kind == "outage":
            assert q[on][-1] == 0
        if inc.kind == "flatline":
            held = q[(t >= inc.start + 300) & (t <= min(small.end, inc.end - 300))]
            assert np.ptp(held) < 0.2 * np.std(q0[on]) + 1e-9, inc
    assert seen == {"spike", "dip", "level_shift"}


@pytest.mark.parametrize("seed", calendars.GENERATOR.seeds)
def test_the_promised_calendar_variety(seed: int) -> None:
    end, cals = calendars.calendars(seed)
    start = end - calendars.DAYS * 86400
    assert 16 <= len(cals) <= 24
    assert end <= 1796515200 and end % 3600 == 0
    offsets = [c.offset_hours for c in cals]
    assert all(-10 <= o <= 12.75 for o in offsets)
    assert any(o % 1 == 0.5 for o in offsets)  # a half hour (e.g. -3:30, +5:30)
    assert any(o % 1 in (0.25, 0.75) for o in offsets)  # a quarter hour (+5:45, +12:45)
    weekends = [c.weekend for c in cals]
    assert weekends.count("fri-sat") >= 2 and "thu-fri" in weekends
    assert sum(len(c.rest_days) == 1 for c in cals) >= 2  # six-day weeks
    assert all(0 <= c.weekend_strength <= 0.6 for c in cals)
    dst = [c for c in cals if c.dst_at is not None]
    assert dst and all(start < c.dst_at < end - 6 * 3600 for c in dst)  # type: ignore[operator]
    holidays = [c for c in cals if c.holiday is not None]
    assert len(holidays) == max(1, round(len(cals) / 4))
    for c in holidays:
        assert c.holiday is not None
        local_end_day = (end + (c.offset_hours + c.dst_delta_hours) * 3600) // 86400
        assert local_end_day - 7 <= c.holiday < local_end_day
        assert (c.holiday + 3) % 7 not in c.rest_days  # a working day
    assert sum(c.batch is not None for c in cals) >= 2


def test_local_calendar_drives_the_load() -> None:
    """Every tenant is lower on its own rest days and holiday than on its working days, and
    lower in its local night than in its local late morning."""
    end, cals = calendars.calendars(1)
    t = np.arange(end - calendars.DAYS * 86400, end + 1, 60.0)
    for cal in cals:
        _, load = calendars._load(cal, t)
        local = calendars._local(cal, t)
        day = (local // 86400).astype(int)
        weekday = (day + 3) % 7
        rest = np.isin(weekday, cal.rest_days)
        if cal.holiday is not None:
            rest |= day == cal.holiday
        if cal.weekend_strength > 0.1 and cal.batch is None:
            assert load[rest].mean() < 0.95 * load[~rest].mean(), cal
        hour = (local % 86400) / 3600
        assert load[(hour > 2) & (hour < 5)].mean() < load[(hour > 10) & (hour < 12)].mean()
