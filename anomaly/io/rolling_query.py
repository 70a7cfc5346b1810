"""Rolling windows in PromQL: which queries are rolling sums, and the rate query of each.

A rolling sum such as ``sum by (org) (increase(cost_total[1d]))`` lags its rate by up to its
window, so a forecast extrapolating it announces a breach hours late. Rate mode
(:mod:`anomaly.models.forecast.rolling`) forecasts the rate instead and carries the sum
forward: its contract is that the sum over the window is ``sum(rate * step / rate_unit)`` over
the grid points in it. :func:`recognise_rolling_sum` reads a query and, where it is one rolling
window inside linear operations, writes the rate query that keeps that contract
(:class:`RollingSum`); otherwise it says why not (:class:`NotRollingSum`).

The forms, with ``r`` the rate range (:func:`rate_range_seconds`: 15 minutes, or the smallest
whole number of query steps above that) and ``w`` the window, longer than ``r``:

=========================  ===================================  ==============
the rolling window          its rate (the rest kept as written)   per
=========================  ===================================  ==============
``increase(x[w])``          ``rate(x[r])``, the whole x 3600      hour
``rate(x[w])``              ``rate(x[r])``                        ``w``
``sum_over_time(g[w])``     ``sum_over_time(g[r-])`` x 3600/r     hour (else r)
``count_over_time(g[w])``   ``count_over_time(g[r-])`` x 3600/r   hour (else r)
``avg_over_time(g[w])``     ``avg_over_time(g[r])``               ``w``
=========================  ===================================  ==============

Why these hold. ``increase(x[w])`` is the integral of the counter's per-second rate over the
window; ``rate(x[w])`` (times any number: ``rate(x[w]) * 86400`` is an ``increase``) is that
integral over ``w``, and ``avg_over_time`` the same for a gauge. The integral of ``rate(x[r])``
over the window is the window's increase shifted by about ``r / 2``: the only difference, and
small beside a window longer than ``r``. ``sum_over_time(g[w])`` sums the samples in the
window, whatever the scrape interval, so its rate must count samples, not assume an interval:
``sum_over_time(g[r-])`` sums those of the last ``r`` (``r-``: a millisecond short, so that a
sample on the boundary of two grid points' ranges is counted once whether the server's ranges
are closed, Prometheus 2, or left-open, 3); as ``r`` is a whole number of steps, the ranges of
the grid points cover each sample exactly ``r / step`` times, so ``sum_over_time(g[r-]) * step
/ r`` summed over the grid counts each sample once (none missed between grid points, none
twice). The same holds for ``count_over_time``. Around the window, ``sum``/``avg``/``min``/
``max`` aggregations (``by`` or ``without``, either place), multiplication by a number (either
side), division by a number, unary minus and ``label_replace``/``label_join``/``sort`` are kept
verbatim: each is linear (``min``/``max`` exactly so when each group holds one series at a
time, the usual per-tenant counter; with several it is the rate of the largest, an upper
bound), and the hoisted factor is positive. An ``offset`` stays on the rate's selector; label
matchers are copied as written, strings and all (nothing is unescaped or re-quoted).

Not derived, with the reason (``rolling=True``: the query does trail a window, and a run says
so once): other range functions over a long range (``max_over_time``, ``quantile_over_time``,
``delta``, ``changes``...), subqueries, a window pinned by ``@``, two windows in one query,
products or divisions by a series, comparisons, set operators, other functions and
aggregations around a window, adding a number. ``irate``/``idelta``/``last_over_time``/
``present_over_time``/``absent_over_time`` read the newest samples only and are no rolling
window; neither is any range of ``r`` or shorter (the query is a rate already).

The query is read by :mod:`anomaly.io.promql_syntax` (strings and comments included, so a
``]``, ``}``, quote or ``#`` inside a label value is only ever part of that value). Pure text
work: nothing here imports the rest of the package but that, so the configuration can record
each forecast's mode when it loads.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass

from anomaly.io.promql_syntax import (
    Aggregate,
    Binary,
    Call,
    Modified,
    Node,
    Number,
    Paren,
    PromQLSyntaxError,
    Range,
    Selector,
    String,
    Token,
    Unary,
    format_duration_ms,
    number_value,
    parse,
    tokenize,
)

__all__ = [
    "NotRollingSum",
    "RollingSum",
    "rate_range_seconds",
    "recognise_rolling_sum",
]

#: The shortest range of a derived rate: several scrapes at any usual interval (``rate()``
#: needs two), the README's recipe, and short beside the windows worth inverting.
RATE_RANGE_SECONDS = 900.0


@dataclass(frozen=True)
class RollingSum:
    """A query that is a rolling window, and the query of its rate.

    Over the window, ``query == sum(rate_query * step / rate_unit_seconds)`` summed over the
    grid points ``(t - window_seconds, t]``: what rate mode needs
    (``ForecastParams.window_seconds``, ``rate_unit_seconds``).
    """

    rate_query: str
    """PromQL of the rate, the query's aggregations, matchers and factors kept."""
    window_seconds: float
    rate_unit_seconds: float
    function: str
    """The range function read (``increase``, ``rate``, ``sum_over_time``...)."""
    window: str
    """The rolling window as written in the query (e.g. ``increase(x{a="b"}[1d])``)."""


@dataclass(frozen=True)
class NotRollingSum:
    """Why a query has no derived rate."""

    reason: str
    """One line for a person (``the query is not a rolling window``, ``rolling window
    max_over_time(x[1d]) has no rate``...)."""
    rolling: bool
    """The query does hold a rolling window (a plain forecast of it trails)."""


def rate_range_seconds(step_seconds: float) -> float:
    """The range of a derived rate at query step ``step_seconds``: :data:`RATE_RANGE_SECONDS`,
    or the smallest whole number of steps that covers it, so that the ranges of consecutive grid
    points tile time."""
    if not (math.isfinite(step_seconds) and step_seconds > 0):
        raise ValueError(f"`step_seconds` must be positive, got {step_seconds}")
    return step_seconds * math.ceil(RATE_RANGE_SECONDS / step_seconds - 1e-9)


def recognise_rolling_sum(query: str, step_seconds: float = 300.0) -> RollingSum | NotRollingSum:
    """The rate of ``query`` when it is a rolling window (see the module's table), else why not.

    ``step_seconds`` is the step the query is read at: it sets the rate's range
    (:func:`rate_range_seconds`) and so which ranges count as rolling windows (longer ones).
    Never raises for a query: one it cannot read is no rolling window, with the reason.
    """
    rho = rate_range_seconds(step_seconds)
    try:
        tokens = tokenize(query)
        tree = parse(query, tokens)
        found = _Linearity(query, rho).walk(tree)
    except PromQLSyntaxError as e:
        return NotRollingSum(f"the query could not be read ({e})", rolling=False)
    except RecursionError:
        return NotRollingSum("the query could not be read (nested too deeply)", rolling=False)
    if isinstance(found, NotRollingSum):
        return found
    if not isinstance(found, _Core):
        return NotRollingSum("the query is not a rolling window", rolling=False)
    if found.negative:
        return NotRollingSum(
            f"rolling window {found.text} has no rate here: it is negated, and rate mode "
            "forecasts a rate that is never negative",
            rolling=True,
        )
    return _derive(query, tokens, found, rho)


# --------------------------------------------------------------------------- linearity


@dataclass(frozen=True)
class _Core:
    """The one rolling window of a query, ``function(selector[window])``, and the sign of the
    factor the query multiplies it by."""

    call: Call
    window: Range
    text: str
    """The window as written, on one line."""
    negative: bool = False


@dataclass(frozen=True)
class _Const:
    """A number, or arithmetic on numbers only."""

    value: float


class _Series:
    """An expression without a rolling window."""


_INVERTIBLE = frozenset({"increase", "rate", "sum_over_time", "count_over_time", "avg_over_time"})
#: Range functions that read only the newest samples of their range: no rolling window.
_NEWEST_ONLY = frozenset(
    {"irate", "idelta", "last_over_time", "present_over_time", "absent_over_time"}
)
_LINEAR_AGGREGATIONS = frozenset({"sum", "avg", "min", "max"})
#: Functions whose first argument passes through with its values unchanged.
_PASS_THROUGH = frozenset({"label_replace", "label_join", "sort", "sort_desc"})
_ARITHMETIC = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
    "/": lambda a, b: a / b if b else math.nan,  # never a factor either way
}

_Walked = _Core | _Const | _Series | NotRollingSum


class _Linearity:
    """Whether an expression is linear in one rolling window: :meth:`walk` gives the window
    (:class:`_Core`), a constant, a series without a window, or why it has no rate."""

    def __init__(self, text: str, rho: float) -> None:
        self.text, self.rho = text, rho

    def quote(self, node: Node) -> str:
        """``node`` as written, on one line."""
        return re.sub(r"\s*\n\s*", " ", self.text[node.start : node.end])

    def walk(self, node: Node) -> _Walked:
        if isinstance(node, Number):
            return _Const(number_value(self.text[node.start : node.end]))
        if isinstance(node, String | Selector | Modified):
            return _Series()
        if isinstance(node, Paren):
            return self.walk(node.expr)
        if isinstance(node, Unary):
            inner = self.walk(node.expr)
            if node.op == "-" and isinstance(inner, _Const):
                return _Const(-inner.value)
            if node.op == "-" and isinstance(inner, _Core):
                return dataclasses.replace(inner, negative=not inner.negative)
            return inner
        if isinstance(node, Range):
            if node.seconds > self.rho and not node.subquery:
                return NotRollingSum(f"{self.quote(node)} is a range, not a value", rolling=False)
            return self._inside(node, self.walk(node.inner))
        if isinstance(node, Call):
            return self._call(node)
        if isinstance(node, Aggregate):
            return self._aggregate(node)
        if isinstance(node, Binary):
            return self._binary(node)
        raise TypeError(f"unknown node {node!r}")  # pragma: no cover

    def _inside(self, node: Range, inner: _Walked) -> _Walked:
        """A subquery's or short range's inner expression: a window inside is not derived."""
        if isinstance(inner, _Core):
            return _no_rate(inner, f"it is inside subquery {self.quote(node)}")
        return inner if isinstance(inner, NotRollingSum) else _Series()

    def _call(self, node: Call) -> _Walked:
        name = node.name.lower()
        rng = next((a for a in node.args if isinstance(a, Range)), None)
        if rng is not None:
            if name in _NEWEST_ONLY or rng.seconds <= self.rho:
                return self._inside(rng, self.walk(rng.inner))
            core = _Core(node, rng, self.quote(node))
            if name not in _INVERTIBLE:
                return NotRollingSum(f"rolling window {core.text} has no rate", rolling=True)
            if rng.subquery:
                return _no_rate(core, "it reads a subquery")
            if rng.pinned:
                return _no_rate(core, "it is pinned in time by @")
            if not isinstance(rng.inner, Selector) or len(node.args) != 1:
                return _no_rate(core, "its range is not over a plain selector")
            return core
        return self._around(node.args, name in _PASS_THROUGH, f"{node.name}()")

    def _aggregate(self, node: Aggregate) -> _Walked:
        linear = node.op in _LINEAR_AGGREGATIONS and len(node.args) == 1
        return self._around(node.args, linear, f"{node.op}()")

    def _around(self, args: tuple[Node, ...], passes: bool, name: str) -> _Walked:
        """A function or aggregation of ``args``; ``passes``: its first argument's values pass
        through unchanged."""
        walked = [self.walk(a) for a in args]
        failed = next((w for w in walked if isinstance(w, NotRollingSum)), None)
        if failed is not None:
            return failed
        cores = [w for w in walked if isinstance(w, _Core)]
        if not cores:
            return _Series()
        if passes and len(cores) == 1 and cores[0] is walked[0]:
            return cores[0]
        return _no_rate(cores[0], f"it is inside {name}")

    def _binary(self, node: Binary) -> _Walked:
        lhs, rhs = self.walk(node.lhs), self.walk(node.rhs)
        for side in (lhs, rhs):
            if isinstance(side, NotRollingSum):
                return side
        op = node.op
        if isinstance(lhs, _Const) and isinstance(rhs, _Const) and op in _ARITHMETIC:
            return _Const(_ARITHMETIC[op](lhs.value, rhs.value))
        core = lhs if isinstance(lhs, _Core) else rhs if isinstance(rhs, _Core) else None
        if core is None:
            return _Series()
        other = rhs if core is lhs else lhs
        if isinstance(other, _Core):
            return _no_rate(core, f"{op!r} joins it to another rolling window, {other.text}")
        if not isinstance(other, _Const):
            return _no_rate(core, f"{op!r} joins it to a series")
        if op == "*" or (op == "/" and core is lhs):
            if not (math.isfinite(other.value) and other.value != 0):
                how = "multiplied" if op == "*" else "divided"
                return _no_rate(core, f"it is {how} by {other.value:g}")
            return dataclasses.replace(core, negative=core.negative != (other.value < 0))
        if op == "/":
            return _no_rate(core, "a number is divided by it")
        return _no_rate(core, f"{op!r} joins it to a number")


def _no_rate(core: _Core, how: str) -> NotRollingSum:
    return NotRollingSum(f"rolling window {core.text} has no rate here: {how}", rolling=True)


# --------------------------------------------------------------------------- the rate query


def _derive(query: str, tokens: list[Token], core: _Core, rho: float) -> RollingSum:
    """The rate query of ``query`` whose one rolling window is ``core`` (comments dropped)."""
    name = core.call.name.lower()
    window = core.window
    selector = query[window.inner.start : window.inner.end]
    offset = "" if window.offset is None else f" offset {window.offset}"
    function, factor, unit = {
        "increase": ("rate", 3600.0, 3600.0),
        "rate": ("rate", 1.0, window.seconds),
        "avg_over_time": ("avg_over_time", 1.0, window.seconds),
    }.get(name, (name, 3600.0 / rho, 3600.0))
    span = rho
    if name in ("sum_over_time", "count_over_time"):
        # A millisecond short: a sample on the boundary of two grid points' ranges is counted
        # once whether the server's ranges are closed (Prometheus 2) or left-open (3).
        span = rho - 0.001
        if factor != round(factor):  # a range that does not divide an hour: per range
            factor, unit = 1.0, rho
    rate_core = f"{function}({selector}[{format_duration_ms(span)}]{offset})"
    edits = [(core.call.start, core.call.end, rate_core)]
    edits += [(t.start, t.end, "") for t in tokens if t.kind == "comment"]
    parts, pos = [], 0
    for start, end, new in sorted(edits):
        parts += [query[pos:start], new]
        pos = end
    parts.append(query[pos:])
    text = "".join(parts).strip()
    if factor != 1.0:
        text = f"{text} * {factor:g}"
    return RollingSum(
        rate_query=text,
        window_seconds=window.seconds,
        rate_unit_seconds=unit,
        function=name,
        window=core.text,
    )
