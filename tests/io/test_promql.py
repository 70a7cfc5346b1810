"""Tests for anomaly.io.promql: escaping label values into PromQL literals and regex matchers.

Selectors and tenant restriction are tested with the planning code in tests/job/test_plan.py;
that Prometheus itself reads escaped values back exactly is in tests/io/test_prometheus.py.
"""

from __future__ import annotations

import ast
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from anomaly.io.promql import escape_label_value, reads_bucket_quantile, regex_escape_label_value

HOSTILE = [
    "plain",
    'x"} or vector(1) #',
    "back\\slash\\",
    'quote"',
    "new\nline\r\ttab",
    "ünïcødé €",
    "a.b*c+d?e(f)g|h[i]j{k}l^m$n",
    "nul\x00bell\x07del\x7f",
    "",
    ".*",
]


def go_string_literal(escaped: str) -> str:
    """Decode a PromQL/Go double-quoted literal body (same escapes as Python for our output)."""
    return str(ast.literal_eval('"' + escaped + '"'))


@pytest.mark.parametrize("value", HOSTILE)
def test_escaped_value_cannot_leave_the_string_literal(value: str) -> None:
    esc = escape_label_value(value)
    assert "\n" not in esc and "\r" not in esc
    assert re.search(r'(?<!\\)(\\\\)*"', esc) is None  # no unescaped quote
    assert go_string_literal(esc) == value


@given(st.text())
def test_escape_round_trips(value: str) -> None:
    assert go_string_literal(escape_label_value(value)) == value


@given(st.text(), st.text())
def test_regex_escape_matches_exactly_the_value(value: str, other: str) -> None:
    pattern = go_string_literal(regex_escape_label_value(value))
    assert re.fullmatch(pattern, value, flags=re.DOTALL)
    if other != value:
        assert not re.fullmatch(pattern, other, flags=re.DOTALL)


@pytest.mark.parametrize(
    ("query", "bucketed"),
    [
        ("histogram_quantile(0.95, sum by (le) (rate(http_duration_seconds_bucket[5m])))", True),
        ("max by (org) (histogram_quantile (0.9, rate(x_bucket[5m]))) * 1000", True),
        ("sum by (org) (rate(http_requests_total[5m]))", False),
        ('sum(rate(x{job="histogram_quantile("}[5m]))', False),  # a label value, not a call
        ("# histogram_quantile(0.5, x)\nsum(x)", False),  # a comment
        ("sum(((", False),  # not PromQL this module reads
    ],
)
def test_a_quantile_read_off_buckets_is_told_from_its_query(query: str, bucketed: bool) -> None:
    assert reads_bucket_quantile(query) is bucketed
