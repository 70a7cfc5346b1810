"""Scale: PromQL restriction to a tenant batch, stable sharding, batch planning, the
`scale` config section and the --shard option."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from anomaly.cli import _shard
from anomaly.config import ScaleConfig, config_from_dict, load_config, parse_duration
from anomaly.errors import AnswerError, ConfigError, QueryError
from anomaly.io.prometheus import PrometheusSource
from anomaly.io.promql import (
    count_series_query,
    regex_escape_label_value,
    restrict_query,
    series_selectors,
    tenant_matcher,
)
from anomaly.job.plan import (
    Shard,
    evaluation_window,
    evidence_rows,
    plan_batches,
    previous_run,
    tenant_hash,
)
from tests.conftest import write_config
from tests.job.conftest import World

M = 'organization_id=~"a|b"'


@pytest.mark.parametrize(
    ("query", "restricted"),
    [
        ("up", 'up{organization_id=~"a|b"}'),
        (
            "max by (organization_id) (processaudit_error_ratio)",
            'max by (organization_id) (processaudit_error_ratio{organization_id=~"a|b"})',
        ),
        (
            "sum by (organization_id) (rate(c_total[15m])) * 3600",
            'sum by (organization_id) (rate(c_total{organization_id=~"a|b"}[15m])) * 3600',
        ),
        ('x{job="a}b",}', 'x{job="a}b",organization_id=~"a|b"}'),
        ("x{}", 'x{organization_id=~"a|b"}'),
        ('{__name__=~"x|y"}', '{__name__=~"x|y",organization_id=~"a|b"}'),
        (
            "sum(x offset 1h) BY (org) / ON(org) group_left y",
            'sum(x{organization_id=~"a|b"} offset 1h) BY (org) / ON(org) group_left '
            'y{organization_id=~"a|b"}',
        ),
        (
            'label_replace(x, "dst", "$1", "src", "(.*)") > bool 1e-3',
            'label_replace(x{organization_id=~"a|b"}, "dst", "$1", "src", "(.*)") > bool 1e-3',
        ),
        (
            "histogram_quantile(0.9, sum without (pod) (rate(h_bucket[5m])))",
            'histogram_quantile(0.9, sum without (pod) (rate(h_bucket{organization_id=~"a|b"}'
            "[5m])))",
        ),
        ("x # a comment with y\n", 'x{organization_id=~"a|b"} # a comment with y\n'),
        # A comment between a name and its matchers is whitespace: one selector.
        ('x # c\n{a="]"}[5m]', 'x # c\n{a="]",organization_id=~"a|b"}[5m]'),
    ],
)
def test_every_selector_gets_the_tenant_matcher(query: str, restricted: str) -> None:
    assert restrict_query(query, M) == restricted


@pytest.mark.parametrize("query", ["vector(1)", "time() - 3", "sum(rate(x[5m)", 'x{a="b'])
def test_queries_without_readable_selectors_are_not_restricted(query: str) -> None:
    assert restrict_query(query, M) is None
    assert series_selectors(query) == []


def test_selectors_for_the_label_values_api() -> None:
    q = 'sum by (organization_id) (a{x="1"}) / on (organization_id) sum(b:rate5m)'
    assert series_selectors(q) == ['a{x="1"}', "b:rate5m"]


def test_tenant_matcher_escapes_hostile_values() -> None:
    hostile = ["a.b", 'x"} or vector(1) #', "back\\slash", "p|q"]
    m = tenant_matcher("organization_id", hostile)
    assert (
        m
        == 'organization_id=~"'
        + "|".join(regex_escape_label_value(v) for v in sorted(hostile))
        + '"'
    )
    # The escaped alternation cannot close the string or the braces early.
    assert restrict_query("x", m) == "x{" + m + "}"
    assert series_selectors("x{" + m + "}") == ["x{" + m + "}"]


def test_tenant_hash_is_sha1_and_stable() -> None:
    expected = int.from_bytes(hashlib.sha1(b"org-01").digest()[:8], "big")
    assert tenant_hash("org-01") == expected


def test_shards_partition_the_tenants() -> None:
    tenants = [f"org-{i:04d}" for i in range(1000)]
    owned = [{t for t in tenants if Shard(i, 3).owns(t)} for i in range(3)]
    assert set().union(*owned) == set(tenants)
    assert sum(len(o) for o in owned) == len(tenants)
    assert all(250 < len(o) < 420 for o in owned)  # roughly even


@pytest.mark.parametrize("text", ["1", "2/2", "-1/3", "a/b", "0/0", "1/2/3"])
def test_bad_shards_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="INDEX/COUNT"):
        Shard.parse(text)


def test_shard_from_flag_or_indexed_job_environment() -> None:
    assert _shard("1/4", {}) == Shard(1, 4)
    assert _shard(None, {}) == Shard(0, 1)
    assert _shard(None, {"JOB_COMPLETION_INDEX": "2", "ANOMALY_SHARDS": "3"}) == Shard(2, 3)
    assert _shard("0/2", {"JOB_COMPLETION_INDEX": "1", "ANOMALY_SHARDS": "3"}) == Shard(0, 2)
    with pytest.raises(ConfigError, match="ANOMALY_SHARDS"):
        _shard(None, {"JOB_COMPLETION_INDEX": "2"})
    with pytest.raises(ConfigError, match="--shard"):
        _shard(None, {"JOB_COMPLETION_INDEX": "3", "ANOMALY_SHARDS": "3"})


# --------------------------------------------------------------------------- config


def _raw(**extra: Any) -> dict[str, Any]:
    return {
        "prometheus": {"url": "http://127.0.0.1:9"},
        "pushgateway": {"url": "http://127.0.0.1:9"},
        "metrics": [
            {"name": "a", "query": "max by (organization_id) (a)"},
            {"name": "b", "query": "max by (organization_id) (b)"},
        ],
        **extra,
    }


def test_scale_defaults() -> None:
    assert config_from_dict(_raw()).scale == ScaleConfig(500, 100_000, None)  # workers: auto
    cfg = config_from_dict(_raw(scale={"batch_series": 10, "max_series": None, "workers": 2}))
    assert cfg.scale == ScaleConfig(10, None, 2)
    for auto in ("auto", "AUTO", " auto "):
        assert config_from_dict(_raw(scale={"workers": auto})).scale.workers is None
    assert config_from_dict(_raw(scale={"workers": 64})).scale.workers == 64


@pytest.mark.parametrize(
    ("scale", "key", "message"),
    [
        ({"batch_series": 0}, "scale.batch_series", "at least 1"),
        ({"batch_series": 2.5}, "scale.batch_series", "integer"),
        ({"max_series": -1}, "scale.max_series", "at least 1"),
        ({"workers": 0}, "scale.workers", "at least 1"),
        ({"workers": 1000}, "scale.workers", "at most 64"),
        ({"workers": 65}, "scale.workers", "at most 64"),
        ({"workers": "many"}, "scale.workers", "number of processes or 'auto', got 'many'"),
        ({"workers": 1.5}, "scale.workers", "number of processes or 'auto'"),
        ({"workers": True}, "scale.workers", "number of processes or 'auto'"),
        ({"workers": None}, "scale.workers", "number of processes or 'auto'"),
        ({"batch_size": 3}, "scale.batch_size", "did you mean 'batch_series'"),
        ([1], "scale", "expected a mapping"),
    ],
)
def test_bad_scale_keys_are_named(scale: Any, key: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as e:
        config_from_dict(_raw(scale=scale))
    assert e.value.key == key


def test_split_is_a_boolean() -> None:
    raw = _raw()
    raw["metrics"][0]["split"] = "no"
    with pytest.raises(ConfigError, match="true or false") as e:
        config_from_dict(raw)
    assert e.value.key == "metrics[0].split"


# --------------------------------------------------------------------------- planning


class CountingSource:
    """Answers the planner's two calls: per-tenant counts and the label-values list."""

    def __init__(self, per_tenant: dict[str, int], extra_tenants: tuple[str, ...] = ()) -> None:
        self.per_tenant = per_tenant
        self.extra = extra_tenants
        self.calls: list[tuple[str, Any]] = []

    def query(self, query: str, time: float) -> list[tuple[dict[str, str], float]]:
        self.calls.append(("query", query))
        return [({"organization_id": t}, float(n)) for t, n in self.per_tenant.items()]

    def label_values(self, label: str, match: Any = None, **kw: Any) -> list[str]:
        self.calls.append(("label_values", match))
        return sorted([*self.per_tenant, *self.extra])


def test_small_unsharded_runs_read_whole_queries() -> None:
    config = config_from_dict(_raw())
    plan = plan_batches(config, CountingSource({"x": 1, "y": 1}), 1e9)  # type: ignore[arg-type]
    assert plan.batches is None and plan.n_batches == 1
    assert plan.store_key("a", 0) == "a"


def test_batches_are_stable_hash_buckets_within_the_limit() -> None:
    tenants = {f"org-{i:03d}": 1 for i in range(300)}
    config = config_from_dict(_raw(scale={"batch_series": 50}))
    source = CountingSource(tenants, extra_tenants=("gone-before-now",))
    plan = plan_batches(config, source, 1e9)  # type: ignore[arg-type]
    assert plan.n_batches == 8  # ceil(300 / 50) = 6, rounded up to a power of two
    batches = plan.batches or ()
    flat = [t for b in batches for t in b]
    assert sorted(flat) == sorted([*tenants, "gone-before-now"])
    assert all(len(b) < 80 for b in batches)
    count = "count by (organization_id) (last_over_time((max by (organization_id) (a))[1h:5m]))"
    assert ("query", count) in source.calls
    assert ("label_values", ["a", "b"]) in source.calls
    again = plan_batches(config, CountingSource(tenants), 1e9)  # type: ignore[arg-type]
    assert [set(b) - {"gone-before-now"} for b in batches] == [set(b) for b in again.batches or ()]
    assert plan.store_key("a", 3) == "a@shard0of1-batch3of8"


def test_a_shard_plans_only_its_tenants() -> None:
    tenants = {f"org-{i}": 1 for i in range(40)}
    config = config_from_dict(_raw())
    plans = [
        plan_batches(config, CountingSource(tenants), 1e9, Shard(i, 2))  # type: ignore[arg-type]
        for i in range(2)
    ]
    mine = [set(p.batches[0]) for p in plans if p.batches]
    assert len(mine) == 2 and not mine[0] & mine[1] and mine[0] | mine[1] == set(tenants)
    assert plans[1].store_key("a", 0) == "a@shard1of2-batch0of1"


def test_max_series_refuses_the_metric_with_its_count() -> None:
    config = config_from_dict(_raw(scale={"max_series": 100}))
    plan = plan_batches(config, CountingSource({"big": 150}), 1e9)  # type: ignore[arg-type]
    assert set(plan.failed) == {"a", "b"}
    assert (
        "metric a: its query returns 150 series, above scale.max_series (100)" in plan.failed["a"]
    )


class FlakySource(CountingSource):
    """A :class:`CountingSource` whose answers about metric ``b`` are malformed (an
    :class:`AnswerError`) or rejected (a :class:`QueryError`), for its count (``count``) or
    for any label-values lookup that includes it (``tenants``)."""

    def __init__(self, *args: Any, count: type[QueryError] | None = None, **kw: Any) -> None:
        self.tenants: type[QueryError] | None = kw.pop("tenants", None)
        super().__init__(*args, **kw)
        self.count = count

    def query(self, query: str, time: float) -> list[tuple[dict[str, str], float]]:
        if self.count is not None and "(b)" in query:
            self.calls.append(("query", query))
            raise self.count(f"query {query!r}: answered HTTP 200 with truncated JSON (9 bytes)")
        return super().query(query, time)

    def label_values(self, label: str, match: Any = None, **kw: Any) -> list[str]:
        if self.tenants is not None and "b" in match:
            self.calls.append(("label_values", match))
            raise self.tenants("label values: answered HTTP 200 with an error body (x): boom")
        return super().label_values(label, match, **kw)


def test_a_malformed_count_fails_its_metric_in_the_plan() -> None:
    config = config_from_dict(_raw())
    plan = plan_batches(config, FlakySource({"x": 1}, count=AnswerError), 1e9)  # type: ignore[arg-type]
    assert set(plan.failed) == {"b"} and plan.series == {"a": 1}
    assert plan.failed["b"].startswith("metric b: cannot count its series: query 'count by")
    assert "truncated JSON (9 bytes)" in plan.failed["b"]


def test_a_rejected_count_is_left_to_the_range_query() -> None:
    config = config_from_dict(_raw())
    plan = plan_batches(config, FlakySource({"x": 1}, count=QueryError), 1e9)  # type: ignore[arg-type]
    assert plan.failed == {} and plan.series == {"a": 1}


@pytest.mark.parametrize("error", [AnswerError, QueryError])
def test_a_failed_tenant_lookup_fails_only_the_metric_it_belongs_to(
    error: type[QueryError],
) -> None:
    tenants = {f"org-{i:03d}": 1 for i in range(300)}
    config = config_from_dict(_raw(scale={"batch_series": 50}))
    source = FlakySource(tenants, extra_tenants=("gone-before-now",), tenants=error)
    plan = plan_batches(config, source, 1e9)  # type: ignore[arg-type]
    # The lookup of both metrics' selectors failed; each metric was then looked up alone.
    lookups = [m for kind, m in source.calls if kind == "label_values"]
    assert lookups == [["a", "b"], ["a"], ["b"]]
    assert set(plan.failed) == {"b"}
    assert plan.failed["b"].startswith("metric b: cannot list its tenants: label values: ")
    assert plan.n_batches == 8
    assert sorted(t for b in plan.batches or () for t in b) == sorted([*tenants, "gone-before-now"])


def test_a_run_of_one_batch_does_not_list_tenants() -> None:
    source = FlakySource({"x": 1, "y": 1}, tenants=AnswerError)
    plan = plan_batches(config_from_dict(_raw()), source, 1e9)  # type: ignore[arg-type]
    assert plan.batches is None and plan.failed == {}
    assert [kind for kind, _ in source.calls] == ["query", "query"]


@pytest.mark.parametrize(
    ("schedule", "delay", "expected"),
    [
        ("*/5 * * * *", 0.0, 300.0),
        ("*/5 * * * *", 17.0, 317.0),  # a run starts a little after its fire time
        ("* * * * *", 5.0, 65.0),
        ("*/15 * * * *", 40.0, 940.0),
        ("0 3 * * *", 3600.0, 86400.0),  # rarer than hourly: a day back at most
    ],
)
def test_previous_run_is_the_fire_before_this_run(
    schedule: str, delay: float, expected: float
) -> None:
    fire = 1795287600.0  # 2026-11-21 03:00 UTC, a fire time of every schedule above
    assert fire + delay - previous_run(schedule, fire + delay) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("schedule", "rows_by_step"),
    [
        ("*/5 * * * *", ((300.0, 1), (60.0, 5), (15.0, 20))),
        ("* * * * *", ((300.0, 1), (60.0, 1), (15.0, 4))),  # the default: the run's own time
    ],
)
def test_a_run_judges_every_grid_point_since_the_previous_run(
    schedule: str, rows_by_step: tuple[tuple[float, int], ...]
) -> None:
    fire = 1795287600.0
    for step, rows in rows_by_step:
        config = config_from_dict(
            {
                "prometheus": {"url": "http://127.0.0.1:9"},
                "pushgateway": {"url": "http://127.0.0.1:9"},
                "metrics": [{"name": "m", "query": "x"}],
                "step": f"{int(step)}s",
                "schedule": schedule,
            }
        )
        times = evaluation_window(config, fire + 10.0)
        assert evidence_rows(config, times, fire + 10.0) == rows


# --------------------------------------------------------------------------- counting the window


LOOKBACK_SECONDS = 300.0  # Prometheus' instant-vector lookback
NOW = 1_000_000_200.0  # a multiple of the 5-minute step


class StaleSource:
    """Answers the planner like Prometheus for tenants whose series' newest sample is at
    ``last``: an evaluation at instant t sees them when ``last`` is in (t - 5m, t], and a
    subquery ``[range:step]`` evaluates at every step of its range."""

    def __init__(self, per_tenant: dict[str, int], last: float) -> None:
        self.per_tenant, self.last = per_tenant, last
        self.reaches: list[float] = []

    def query(self, query: str, time: float) -> list[tuple[dict[str, str], float]]:
        sub = re.search(r"\[(\w+):\w+\]\)\)$", query)
        reach = parse_duration(sub.group(1)) if sub else 0.0
        self.reaches.append(reach)
        if not time - reach - LOOKBACK_SECONDS < self.last <= time:
            return []
        return [({"organization_id": t}, float(n)) for t, n in self.per_tenant.items()]

    def label_values(self, label: str, match: Any = None, **kw: Any) -> list[str]:
        return sorted(self.per_tenant)


def test_a_plan_counts_series_whose_newest_sample_is_older_than_the_lookback() -> None:
    """A scrape gap at the window's end: an instant count there sees no series, the plan still
    counts every tenant's and batches them."""
    tenants = {f"org-{i:03d}": 1 for i in range(300)}
    config = config_from_dict(_raw(scale={"batch_series": 50}))
    plan = plan_batches(config, StaleSource(tenants, last=NOW - 1800), NOW)  # type: ignore[arg-type]
    assert plan.series == {"a": 300, "b": 300}
    assert plan.n_batches == 8
    assert sorted(t for b in plan.batches or () for t in b) == sorted(tenants)
    assert all(len(b) < 80 for b in plan.batches or ())


@pytest.mark.parametrize(
    ("age", "reaches"),
    [
        ("0s", ["1h"]),  # fresh data: one short count per metric
        ("50m", ["1h"]),
        ("3h", ["1h", "1d"]),
        ("3d", ["1h", "1d", "7d"]),  # a replay after the data ended: the whole window
        ("8d", ["1h", "1d", "7d"]),  # nothing in the window at all
    ],
)
def test_the_count_widens_only_while_the_newest_stretch_is_empty(
    age: str, reaches: list[str]
) -> None:
    config = config_from_dict(_raw())
    last = NOW - (parse_duration(age) if age != "0s" else 0.0)
    source = StaleSource({"x": 2, "y": 3}, last=last)
    plan = plan_batches(config, source, NOW)  # type: ignore[arg-type]
    expected = [parse_duration(r) for r in reaches]
    assert source.reaches == expected * 2  # the same for each of the two metrics
    seen = age != "8d"
    assert plan.series == {"a": 5 if seen else 0, "b": 5 if seen else 0}


def test_max_series_still_refuses_a_metric_whose_data_ended_before_the_run() -> None:
    config = config_from_dict(_raw(scale={"max_series": 100}))
    source = StaleSource({"big": 150}, last=NOW - 2 * 86400)
    plan = plan_batches(config, source, NOW)  # type: ignore[arg-type]
    assert set(plan.failed) == {"a", "b"}
    assert "its query returns 150 series, above scale.max_series (100)" in plan.failed["a"]


@pytest.mark.parametrize(
    ("range_seconds", "step_seconds", "tail"),
    [(3600, 300, "[1h:5m]))"), (90, 15, "[90s:15s]))"), (1.5, 0.5, "[1500ms:500ms]))")],
)
def test_count_series_query_counts_over_a_subquery(
    range_seconds: float, step_seconds: float, tail: str
) -> None:
    q = count_series_query("sum by (org) (rate(x[5m]))", "org", range_seconds, step_seconds)
    assert q == "count by (org) (last_over_time((sum by (org) (rate(x[5m])))" + tail


QUERIES = [
    "up",
    "max by (organization_id) (processaudit_error_ratio)",
    "sum by (organization_id) (rate(processaudit_ai_cost_usd_total[15m])) * 3600",
    "histogram_quantile(0.95, sum by (organization_id, le) (rate(h_bucket[5m])))",
    "a / on (organization_id) group_left b",
    "max by (organization_id) (x) # a trailing comment",
]


@pytest.mark.parametrize("query", QUERIES)
def test_prometheus_accepts_the_count_of_any_query(prometheus: str, query: str) -> None:
    from anomaly.config import PrometheusConfig

    with PrometheusSource(PrometheusConfig(url=prometheus, retries=0)) as source:
        count = count_series_query(query, "organization_id", 3600, 300)
        assert source.query(count, NOW) == []  # parsed and evaluated: no data, no error


@pytest.mark.parametrize("after_end", ["30m", "2d"])
def test_a_plan_after_the_data_ended_counts_and_batches_every_tenant(
    world: World, tmp_path: Path, after_end: str
) -> None:
    """Real Prometheus, the run's `--at` past the newest sample (by more than the 5-minute
    lookback): every metric's four tenants are counted and each gets a batch of its own."""
    config = load_config(
        write_config(tmp_path / "config.yaml", world.stack, scale={"batch_series": 1})
    )
    now = world.dataset.end + parse_duration(after_end)
    with PrometheusSource(config.prometheus) as source:
        plan = plan_batches(config, source, now)
    assert plan.series == {mc.name: 4 for mc in config.metrics}
    assert plan.n_batches == 4
    assert sorted(t for b in plan.batches or () for t in b) == sorted(world.dataset.tenants)


def test_the_grid_ends_at_the_run_s_own_time() -> None:
    """A run every minute at a 5-minute step: its grid's newest row is its own time (not the
    last multiple of the step, up to 5 minutes old), and that row is the one it judges."""
    config = config_from_dict(_raw(schedule="* * * * *"))
    now = 1795287600.0 + 3 * 60 + 7.4  # 03:03:07 UTC, 7 s after its fire time
    times = evaluation_window(config, now)
    assert times[-1] == 1795287600.0 + 3 * 60 + 7
    np.testing.assert_array_equal(np.diff(times), 300.0)
    assert times[-1] - times[0] == config.lookback_seconds
    assert evidence_rows(config, times, now) == 1
