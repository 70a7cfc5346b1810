"""Tests for anomaly.io.promql_syntax: tokens that keep strings, comments and ranges whole, and
an expression tree with PromQL's precedence whose spans index the query text."""

from __future__ import annotations

import pytest

from anomaly.io.promql_syntax import (
    Aggregate,
    Binary,
    Call,
    Node,
    Paren,
    PromQLSyntaxError,
    Range,
    Selector,
    Unary,
    duration_seconds,
    format_duration_ms,
    number_value,
    parse,
    tokenize,
)


def test_strings_comments_and_ranges_are_one_token_each() -> None:
    query = 'x{a="]}\\"#", b=`\\`} # "not a string\n[1d:5m] offset -1h30m'
    kinds = [(t.kind, t.text) for t in tokenize(query)]
    assert kinds == [
        ("ident", "x"),
        ("{", "{"),
        ("ident", "a"),
        ("=", "="),
        ("string", '"]}\\"#"'),
        (",", ","),
        ("ident", "b"),
        ("=", "="),
        ("string", "`\\`"),
        ("}", "}"),
        ("comment", '# "not a string'),
        ("range", "1d:5m"),
        ("ident", "offset"),
        ("-", "-"),
        ("duration", "1h30m"),
    ]
    assert all(query[t.start : t.end] == t.text for t in tokenize(query) if t.kind != "range")


def _shape(node: Node, text: str) -> object:
    """The tree as nested tuples: operators and names, leaves as their text."""
    if isinstance(node, Binary):
        return (node.op, _shape(node.lhs, text), _shape(node.rhs, text))
    if isinstance(node, Unary):
        return (node.op, _shape(node.expr, text))
    if isinstance(node, Paren):
        return ("()", _shape(node.expr, text))
    if isinstance(node, Aggregate):
        return (node.op, *(_shape(a, text) for a in node.args))
    if isinstance(node, Call):
        return (node.name, *(_shape(a, text) for a in node.args))
    if isinstance(node, Range):
        return ("[]", _shape(node.inner, text), node.seconds, node.subquery, node.offset)
    return text[node.start : node.end]


@pytest.mark.parametrize(
    ("query", "shape"),
    [
        ("a + b * c", ("+", "a", ("*", "b", "c"))),
        ("a - b - c", ("-", ("-", "a", "b"), "c")),
        ("a ^ b ^ c", ("^", "a", ("^", "b", "c"))),
        ("-a ^ 2", ("-", ("^", "a", "2"))),
        ("-a * 2", ("*", ("-", "a"), "2")),
        ("a or b and c > bool 1", ("or", "a", ("and", "b", (">", "c", "1")))),
        ("a / on(x) group_left(y) b", ("/", "a", "b")),
        ("sum(x) by (a)", ("sum", "x")),
        ("topk by (a) (3, x)", ("topk", "3", "x")),
        ("rate(x[5m] offset 1h)", ("rate", ("[]", "x", 300.0, False, "1h"))),
        ("max_over_time(rate(x[1m])[1h:])", ("max_over_time", ("[]", ("rate", ("[]", "x", 60.0, False, None)), 3600.0, True, None))),
        ('x{a="b"} @ start()', 'x{a="b"} @ start()'),
    ],
)  # fmt: skip
def test_the_tree_follows_promql_precedence(query: str, shape: object) -> None:
    assert _shape(parse(query), query) == shape


def test_nodes_span_the_text_they_were_read_from() -> None:
    query = 'sum by (o) (increase(x{a="]"}[1d]))  /  100'
    tree = parse(query)
    assert isinstance(tree, Binary) and isinstance(tree.lhs, Aggregate)
    call = tree.lhs.args[0]
    assert isinstance(call, Call) and query[call.start : call.end] == 'increase(x{a="]"}[1d])'
    window = call.args[0]
    assert isinstance(window, Range) and isinstance(window.inner, Selector)
    assert query[window.inner.start : window.inner.end] == 'x{a="]"}'


@pytest.mark.parametrize(
    "query", ["", "sum(x", 'x{a="b', "x[5m", "1h30mx", "x $ y", "rate(x[1q])", "a +", "(a))"]
)
def test_what_is_not_promql_raises(query: str) -> None:
    with pytest.raises(PromQLSyntaxError):
        parse(query)


def test_durations_and_numbers() -> None:
    assert duration_seconds("1h30m") == 5400 and duration_seconds("90") == 90
    assert [format_duration_ms(s) for s in (86400, 5400, 899.999, 0.5)] == [
        "1d",
        "1h30m",
        "14m59s999ms",
        "500ms",
    ]
    assert [number_value(t) for t in ("0x1F", "1e3", ".5", "1h")] == [31, 1000, 0.5, 3600]
