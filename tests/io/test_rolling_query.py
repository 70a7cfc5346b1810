"""Tests for anomaly.io.rolling_query: which queries are rolling sums, the rate query derived
from each, and (on a real Prometheus holding data scraped every minute, read at 5-minute steps)
that the sum over the window is the sum of ``rate * step / rate_unit``, as rate mode needs."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator

import numpy as np
import pytest
from anomaly_lab import synth
from hypothesis import given
from hypothesis import strategies as st

from anomaly.config import PrometheusConfig
from anomaly.io.prometheus import PrometheusSource
from anomaly.io.promql import escape_label_value
from anomaly.io.rolling_query import (
    NotRollingSum,
    RollingSum,
    rate_range_seconds,
    recognise_rolling_sum,
)
from tests.conftest import Servers
from tests.io.test_promql import HOSTILE

DAY, HOUR = 86400.0, 3600.0


def derived(query: str, step_seconds: float = 300.0) -> RollingSum:
    found = recognise_rolling_sum(query, step_seconds)
    assert isinstance(found, RollingSum), found
    return found


def refused(query: str, step_seconds: float = 300.0) -> NotRollingSum:
    found = recognise_rolling_sum(query, step_seconds)
    assert isinstance(found, NotRollingSum), found
    return found


# --------------------------------------------------------------------------- every form


@pytest.mark.parametrize(
    ("query", "rate_query", "window", "unit"),
    [
        # increase: the counter's rate, per hour; the aggregation kept, the factor outside.
        (
            "sum by (organization_id) (increase(pa_ai_cost_usd_total[1d]))",
            "sum by (organization_id) (rate(pa_ai_cost_usd_total[15m])) * 3600",
            DAY,
            HOUR,
        ),
        (
            "sum(increase(x[24h])) by (organization_id)",
            "sum(rate(x[15m])) by (organization_id) * 3600",
            DAY,
            HOUR,
        ),
        (
            'sum by (organization_id) (increase(x{a="b", c!~"d.*"}[1d]))',
            'sum by (organization_id) (rate(x{a="b", c!~"d.*"}[15m])) * 3600',
            DAY,
            HOUR,
        ),
        ("sum without (pod) (increase(x[2d]))", "sum without (pod) (rate(x[15m])) * 3600", 2 * DAY, HOUR),
        ("max by (org) (increase(x[1d]))", "max by (org) (rate(x[15m])) * 3600", DAY, HOUR),
        ("min(avg by (org) (increase(x[1d])))", "min(avg by (org) (rate(x[15m]))) * 3600", DAY, HOUR),
        ("SUM BY (org) (INCREASE(x[1d]))", "SUM BY (org) (rate(x[15m])) * 3600", DAY, HOUR),
        ("increase(x[1d] offset 1h)", "rate(x[15m] offset 1h) * 3600", DAY, HOUR),
        ("sum(increase(x[1d])) / 100", "sum(rate(x[15m])) / 100 * 3600", DAY, HOUR),
        ("1.1 * sum(increase(x[1d]))", "1.1 * sum(rate(x[15m])) * 3600", DAY, HOUR),
        ("-(-sum(increase(x[1d])))", "-(-sum(rate(x[15m]))) * 3600", DAY, HOUR),
        (
            'label_replace(increase(x[1d]), "t", "$1", "org", "(.*)")',
            'label_replace(rate(x[15m]), "t", "$1", "org", "(.*)") * 3600',
            DAY,
            HOUR,
        ),
        # rate(x[w]) times anything: the same rate at the short range, per w.
        ("rate(x[1d]) * 86400", "rate(x[15m]) * 86400", DAY, DAY),
        ("86400 * rate(x[1d])", "86400 * rate(x[15m])", DAY, DAY),
        ("rate(x[1d]) * (60 * 60 * 24)", "rate(x[15m]) * (60 * 60 * 24)", DAY, DAY),
        ("sum by (org) (rate(x[1d])) * 3600", "sum by (org) (rate(x[15m])) * 3600", DAY, DAY),
        ("rate(x[6h])", "rate(x[15m])", 6 * HOUR, 6 * HOUR),
        # Gauges: samples per hour (sum, count), the mean per window (avg).
        ("sum_over_time(g[1d])", "sum_over_time(g[14m59s999ms]) * 4", DAY, HOUR),
        ("sum by (org) (sum_over_time(g[7d]))", "sum by (org) (sum_over_time(g[14m59s999ms])) * 4", 7 * DAY, HOUR),
        ("count_over_time(g[12h])", "count_over_time(g[14m59s999ms]) * 4", 12 * HOUR, HOUR),
        ("avg_over_time(g[1d])", "avg_over_time(g[15m])", DAY, DAY),
        ("max by (org) (avg_over_time(g[1w]))", "max by (org) (avg_over_time(g[15m]))", 7 * DAY, 7 * DAY),
        # Comments go; a comment that ended the query cannot swallow the factor.
        ("sum(increase(x[1d])) # daily spend\n", "sum(rate(x[15m])) * 3600", DAY, HOUR),
        ("sum(\n  increase(x[1d]) # daily\n) by (org)", "sum(\n  rate(x[15m]) \n) by (org) * 3600", DAY, HOUR),
    ],
)  # fmt: skip
def test_every_form_gets_its_rate_query(
    query: str, rate_query: str, window: float, unit: float
) -> None:
    got = derived(query)
    assert (got.rate_query, got.window_seconds, got.rate_unit_seconds) == (
        rate_query,
        window,
        unit,
    )


def test_the_window_is_reported_as_written() -> None:
    got = derived('sum by (org) (increase(x{a="b"}[1d]))')
    assert (got.function, got.window) == ("increase", 'increase(x{a="b"}[1d])')


# --------------------------------------------------------------------------- hostile text


@pytest.mark.parametrize(
    "matchers",
    [
        '{a="]"}',
        '{a="[1d]"}',
        '{a="}"}',
        '{a="\\"}[1d])"}',
        '{a="x\\\\"}',
        '{a="# not a comment", b=~"increase\\\\(y\\\\[1d\\\\]\\\\)"}',
        "{a='single ] \\' quoted'}",
        "{a=`raw ] \\ backtick`}",
        '{a="sum(max_over_time(x[1d]))"}',
        '{__name__=~"x|y", a!="b"}',
    ],
)
def test_label_values_never_confuse_the_reading(matchers: str) -> None:
    """Brackets, braces, quotes, comments and PromQL inside label values stay label values."""
    got = derived(f"sum by (org) (increase(x{matchers}[1d]))")
    assert got.rate_query == f"sum by (org) (rate(x{matchers}[15m])) * 3600"
    assert got.window_seconds == DAY


@pytest.mark.parametrize("value", HOSTILE)
def test_escaped_hostile_values_are_copied_verbatim(value: str) -> None:
    selector = f'x{{org="{escape_label_value(value)}"}}'
    got = derived(f"sum(sum_over_time({selector}[1d]))")
    assert got.rate_query == f"sum(sum_over_time({selector}[14m59s999ms])) * 4"


@given(st.text(), st.sampled_from(["1d", "36h", "2h", "1w"]))
def test_any_label_value_reads_back_with_the_window(value: str, window: str) -> None:
    selector = f'x{{org="{escape_label_value(value)}"}}'
    got = derived(f"sum by (org) (increase({selector}[{window}]))")
    assert got.rate_query == f"sum by (org) (rate({selector}[15m])) * 3600"
    assert got.window == f"increase({selector}[{window}])"


# --------------------------------------------------------------------------- not derived


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("max_over_time(g[1d])", "rolling window max_over_time(g[1d]) has no rate"),
        (
            "max by (org) (max_over_time(g[1d]))",
            "rolling window max_over_time(g[1d]) has no rate",
        ),
        (
            "quantile_over_time(0.9, g[1d])",
            "rolling window quantile_over_time(0.9, g[1d]) has no rate",
        ),
        ("delta(g[1d])", "rolling window delta(g[1d]) has no rate"),
        ("changes(g[1d])", "rolling window changes(g[1d]) has no rate"),
        (
            "sum(increase(a[1d])) / sum(increase(b[1d]))",
            "rolling window increase(a[1d]) has no rate here: '/' joins it to another rolling "
            "window, increase(b[1d])",
        ),
        (
            "sum(increase(a[1d])) / on(org) group_left budget",
            "rolling window increase(a[1d]) has no rate here: '/' joins it to a series",
        ),
        (
            "sum(increase(a[1d])) * on(org) group_left budget",
            "rolling window increase(a[1d]) has no rate here: '*' joins it to a series",
        ),
        (
            "100 / increase(a[1d])",
            "rolling window increase(a[1d]) has no rate here: a number is divided by it",
        ),
        (
            "increase(a[1d]) + 5",
            "rolling window increase(a[1d]) has no rate here: '+' joins it to a number",
        ),
        (
            "increase(a[1d]) > 100",
            "rolling window increase(a[1d]) has no rate here: '>' joins it to a number",
        ),
        (
            "increase(a[1d]) and on(org) up",
            "rolling window increase(a[1d]) has no rate here: 'and' joins it to a series",
        ),
        (
            "increase(a[1d]) / 0",
            "rolling window increase(a[1d]) has no rate here: it is divided by 0",
        ),
        (
            "increase(a[1d]) * (1 - 1)",
            "rolling window increase(a[1d]) has no rate here: it is multiplied by 0",
        ),
        (
            "-sum(increase(a[1d]))",
            "rolling window increase(a[1d]) has no rate here: it is negated, and rate mode "
            "forecasts a rate that is never negative",
        ),
        (
            "round(sum(increase(a[1d])))",
            "rolling window increase(a[1d]) has no rate here: it is inside round()",
        ),
        (
            "topk(3, increase(a[1d]))",
            "rolling window increase(a[1d]) has no rate here: it is inside topk()",
        ),
        (
            "histogram_quantile(0.9, sum by (le) (rate(a_bucket[1d])))",
            "rolling window rate(a_bucket[1d]) has no rate here: it is inside histogram_quantile()",
        ),
        (
            "increase(a[1d:5m])",
            "rolling window increase(a[1d:5m]) has no rate here: it reads a subquery",
        ),
        (
            "sum_over_time(rate(a[5m])[1d:5m])",
            "rolling window sum_over_time(rate(a[5m])[1d:5m]) has no rate here: it reads a "
            "subquery",
        ),
        (
            "max_over_time(sum(increase(a[1d]))[2h:5m])",
            "rolling window max_over_time(sum(increase(a[1d]))[2h:5m]) has no rate",
        ),
        (
            "rate(sum(increase(a[1d]))[10m:1m])",
            "rolling window increase(a[1d]) has no rate here: it is inside subquery "
            "sum(increase(a[1d]))[10m:1m]",
        ),
        (
            "increase(a[1d] @ end())",
            "rolling window increase(a[1d] @ end()) has no rate here: it is pinned in time by @",
        ),
    ],
)
def test_what_cannot_be_derived_says_why(query: str, reason: str) -> None:
    assert refused(query) == NotRollingSum(reason, rolling=True)


@pytest.mark.parametrize(
    "query",
    [
        "sum by (organization_id) (rate(processaudit_ai_cost_usd_total[15m])) * 3600",
        "sum(rate(x[5m]))",
        "increase(x[10m])",  # a window no longer than a rate's range: a rate already
        "max by (org) (queue_depth)",
        "irate(x[1d])",  # the newest two samples, whatever the range
        "last_over_time(g[1d])",
        "sum(rate(a[5m])) / sum(rate(b[5m]))",
        "vector(1)",
        'x{a="increase(y[1d])"}',
    ],
)
def test_queries_without_a_rolling_window_are_plain(query: str) -> None:
    assert refused(query) == NotRollingSum("the query is not a rolling window", rolling=False)


@pytest.mark.parametrize(
    "query", ["sum(up", 'x{a="b"', "rate(x[1q])", "increase(x[1d]", "sum(x) )", ""]
)
def test_a_query_it_cannot_read_is_plain_with_the_reason(query: str) -> None:
    found = refused(query)
    assert found.reason.startswith("the query could not be read (") and not found.rolling


_PIECES = ["sum by (a) (", "increase(", "max_over_time(", "rate(", "x", '{a="]"}', "[1d]"]
_PIECES += ["[5m:1m]", "(", ")", ",", " * 2", " / ", "-", "0", " offset 1h", " @ 5", "#c\n"]
_PIECES += [" by (b)", " and ", '"', "`", "{", "}", "[", "]", "0x1f", "1h", "inf", " ^ "]


@given(st.lists(st.sampled_from(_PIECES)).map("".join) | st.text())
def test_any_text_gets_an_answer_never_an_exception(query: str) -> None:
    found = recognise_rolling_sum(query)
    assert isinstance(found, RollingSum | NotRollingSum)


def test_a_query_nested_too_deeply_is_plain() -> None:
    found = refused("(" * 5000 + "increase(x[1d])" + ")" * 5000)
    assert found == NotRollingSum("the query could not be read (nested too deeply)", False)


# --------------------------------------------------------------------------- the rate's range


@pytest.mark.parametrize(
    ("step", "rho"), [(60, 900), (300, 900), (600, 1200), (420, 1260), (900, 900), (3600, 3600)]
)
def test_the_rate_range_is_a_whole_number_of_steps_from_15_minutes(step: float, rho: float) -> None:
    assert rate_range_seconds(step) == rho


def test_the_step_sets_the_rate_range_and_what_counts_as_a_window() -> None:
    assert derived("increase(x[1d])", 600).rate_query == "rate(x[20m]) * 3600"
    # 21 minutes do not divide an hour: the rate is per 21 minutes, with no factor.
    got = derived("sum_over_time(g[1d])", 420)
    assert (got.rate_query, got.rate_unit_seconds) == ("sum_over_time(g[20m59s999ms])", 1260)
    assert not refused("increase(x[1h])", 3600).rolling  # hourly steps: a 1h window is a rate
    with pytest.raises(ValueError, match="`step_seconds` must be positive"):
        rate_range_seconds(0)


# --------------------------------------------------------------------------- e2e: the identity


@pytest.fixture(scope="module")
def minute_data(servers: Servers) -> Iterator[tuple[str, float]]:
    """A Prometheus holding three tenants' two and a half days scraped every minute, up to the
    start of this week (the same days of the week every time, and within the retention); its
    URL and the newest sample's time."""
    week = 7 * DAY
    end = math.floor(time.time() / week) * week
    dataset = synth.generate(3, days=2.5, step_seconds=60, end=end, seed=11)
    with servers.prometheus(dataset=dataset) as server:
        yield server.url, float(dataset.end)


IDENTITY_QUERIES = [
    "sum by (organization_id) (increase(processaudit_ai_cost_usd_total[1d]))",
    "sum(increase(processaudit_ai_cost_usd_total[1d])) by (organization_id) / 100",
    "86400 * rate(processaudit_ai_cost_usd_total[1d])",
    "max by (organization_id) (increase(processaudit_ai_cost_usd_total[1d] offset 30m))",
    "sum by (organization_id) (sum_over_time(processaudit_queue_depth[1d]))",
    "count_over_time(processaudit_queue_depth[12h])",
    'avg_over_time(processaudit_queue_depth{organization_id!="none]"}[1d])',
]


@pytest.mark.e2e
@pytest.mark.parametrize("query", IDENTITY_QUERIES)
def test_e2e_the_window_sums_its_derived_rate(minute_data: tuple[str, float], query: str) -> None:
    """On minute scrapes read at 5-minute steps, each rolling window equals the sum of its
    derived rate over the grid points in the window (times step / rate unit) within 1.5 %: the
    rate's 15-minute range shifts the window by about 7.5 minutes, the rest is exact (a sample
    on a range's boundary is counted once, Prometheus 2's ranges being closed)."""
    url, end = minute_data
    step = 300.0
    got = derived(query, step)
    source = PrometheusSource(PrometheusConfig(url=url))
    end = math.floor(end / step) * step
    start = end - 6 * HOUR
    sums = {tuple(sorted(r.labels.items())): r for r in source.query_range(query, start, end, step)}
    rates = {
        tuple(sorted(r.labels.items())): r
        for r in source.query_range(got.rate_query, start - got.window_seconds, end, step)
    }
    assert len(sums) == 3 and sums.keys() == rates.keys()
    n_win = round(got.window_seconds / step)
    for key, s in sums.items():
        r = rates[key]
        inflow = np.concatenate([[0.0], np.cumsum(r.values * step / got.rate_unit_seconds)])
        at = np.searchsorted(r.times, s.times)  # index of each sum's time in the rate's grid
        carried = inflow[at + 1] - inflow[at + 1 - n_win]
        np.testing.assert_allclose(carried, s.values, rtol=0.015, err_msg=f"{query} {key}")


@pytest.mark.e2e
def test_e2e_prometheus_reads_every_derived_query(minute_data: tuple[str, float]) -> None:
    """Every rate query written here (hostile label values, comments, factors, millisecond
    ranges) is PromQL that Prometheus accepts and answers."""
    url, end = minute_data
    source = PrometheusSource(PrometheusConfig(url=url))
    selectors = [f'x{{a="{escape_label_value(v)}"}}' for v in HOSTILE] + [
        "x{a='single ] \\' quoted'}",
        "x{a=`raw ] backtick`}",
    ]
    forms = ["sum by (a) (increase({}[1d])) # c", "86400 * rate({}[1d])", "sum_over_time({}[1d])"]
    forms += ["count_over_time({}[12h]) / 2", "max(avg_over_time({}[1w] offset 1h))"]
    for selector in selectors:
        for form in forms:
            rate_query = derived(form.format(selector)).rate_query
            assert source.query_range(rate_query, end - 600, end, 300) == [], rate_query
    answers = source.query_range(derived(IDENTITY_QUERIES[-1]).rate_query, end - 600, end, 300)
    assert len(answers) == 3 and all(np.isfinite(a.values).all() for a in answers)
