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

The reading is a small tokenizer and a precedence-climbing parser of PromQL expressions,
strings and comments included, so a ``]``, ``}``, quote or ``#`` inside a label value is only
ever part of that value. Pure text work: nothing here imports the rest of the package, so the
configuration can record each forecast's mode when it is loaded.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass

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
    or the smallest whole number of steps above it, so that the ranges of consecutive grid
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
        tokens = _tokenize(query)
        tree = _Parser(query, tokens).parse()
        found = _Linearity(query, rho).walk(tree)
    except _ParseError as e:
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


# --------------------------------------------------------------------------- tokens


class _ParseError(ValueError):
    """The query is not PromQL this module can read."""


@dataclass(frozen=True)
class _Token:
    kind: str
    """``ident``, ``number``, ``duration``, ``string``, ``range`` (the text between
    ``[`` and ``]``), ``comment``, or the operator or bracket itself."""
    text: str
    start: int
    end: int


_IDENT = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_DURATION = re.compile(r"(?:\d+(?:ms|s|m|h|d|w|y))+(?![a-zA-Z0-9_:.])")
_NUMBER = re.compile(r"0[xX][0-9a-fA-F]+|(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_OPERATORS = ("==", "!=", "<=", ">=", "=~", "!~", "<", ">", "=", "+", "-", "*", "/", "%", "^")
_SINGLE = {"(", ")", "{", "}", ",", "@", ":"}
_DURATION_PART = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


def _tokenize(text: str) -> list[_Token]:
    """The tokens of ``text`` (comments included, whitespace dropped)."""
    out: list[_Token] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
            continue
        if ch == "#":
            nl = text.find("\n", i)
            end = n if nl < 0 else nl
            out.append(_Token("comment", text[i:end], i, end))
        elif ch in "\"'`":
            end = _string_end(text, i)
            out.append(_Token("string", text[i:end], i, end))
        elif ch == "[":
            close = text.find("]", i)
            if close < 0:
                raise _ParseError(f"unclosed '[' at {i}")
            end = close + 1
            out.append(_Token("range", text[i + 1 : close].strip(), i, end))
        elif m := _DURATION.match(text, i):
            end = m.end()
            out.append(_Token("duration", m.group(0), i, end))
        elif m := _NUMBER.match(text, i):
            end = m.end()
            out.append(_Token("number", m.group(0), i, end))
        elif m := _IDENT.match(text, i):
            end = m.end()
            out.append(_Token("ident", m.group(0), i, end))
        else:
            op = next((o for o in _OPERATORS if text.startswith(o, i)), None)
            if op is None and ch not in _SINGLE:
                raise _ParseError(f"unexpected {ch!r} at {i}")
            op = op or ch
            end = i + len(op)
            out.append(_Token(op, op, i, end))
        i = end
    return out


def _string_end(text: str, i: int) -> int:
    """Index just after the string literal opening at ``text[i]`` (backslash escapes skipped,
    except in raw backtick strings)."""
    quote, j = text[i], i + 1
    while j < len(text):
        if text[j] == "\\" and quote != "`":
            j += 2
        elif text[j] == quote:
            return j + 1
        else:
            j += 1
    raise _ParseError(f"unterminated string at {i}")


def _seconds(text: str) -> float:
    """Seconds of a PromQL duration (``1h30m``) or plain number of seconds."""
    if _NUMBER.fullmatch(text) and not text.lower().startswith("0x"):
        return float(text)
    parts = list(_DURATION_PART.finditer(text))
    if not parts or "".join(p.group(0) for p in parts) != text:
        raise _ParseError(f"bad duration {text!r}")
    return sum(int(p.group(1)) * _UNIT_SECONDS[p.group(2)] for p in parts)


def _format_seconds(seconds: float) -> str:
    """The PromQL duration of ``seconds``, to the millisecond (``86400 -> '1d'``,
    ``899.999 -> '14m59s999ms'``)."""
    ms, parts = round(seconds * 1000), []
    for unit in ("w", "d", "h", "m", "s", "ms"):
        size = round(_UNIT_SECONDS[unit] * 1000)
        if ms >= size:
            parts.append(f"{ms // size}{unit}")
            ms %= size
    return "".join(parts) or "0s"


# --------------------------------------------------------------------------- the tree


@dataclass(frozen=True)
class _Node:
    start: int
    end: int


@dataclass(frozen=True)
class _Number(_Node):
    pass


@dataclass(frozen=True)
class _String(_Node):
    pass


@dataclass(frozen=True)
class _Selector(_Node):
    """``name``, ``name{...}`` or ``{...}``."""


@dataclass(frozen=True)
class _Range(_Node):
    """``inner[range]`` (``subquery``: ``inner[range:step]``) with its modifiers."""

    inner: _Node
    seconds: float
    subquery: bool
    offset: str | None
    pinned: bool
    """An ``@`` modifier fixes the window in time."""


@dataclass(frozen=True)
class _Modified(_Node):
    """An instant expression with ``offset`` or ``@``."""

    inner: _Node


@dataclass(frozen=True)
class _Call(_Node):
    name: str
    args: tuple[_Node, ...]


@dataclass(frozen=True)
class _Aggregate(_Node):
    op: str
    args: tuple[_Node, ...]
    """The parameter (``topk``'s k...) if any, then the expression."""


@dataclass(frozen=True)
class _Binary(_Node):
    op: str
    lhs: _Node
    rhs: _Node


@dataclass(frozen=True)
class _Unary(_Node):
    op: str
    expr: _Node


@dataclass(frozen=True)
class _Paren(_Node):
    expr: _Node


_AGGREGATIONS = frozenset(
    {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values"}
    | {"bottomk", "topk", "quantile", "limitk", "limit_ratio"}
)
_PRECEDENCE = {
    "or": 1,
    "and": 2,
    "unless": 2,
    "==": 3,
    "!=": 3,
    "<=": 3,
    "<": 3,
    ">=": 3,
    ">": 3,
    "+": 4,
    "-": 4,
    "*": 5,
    "/": 5,
    "%": 5,
    "atan2": 5,
    "^": 6,
}


class _Parser:
    """A precedence-climbing parser of one PromQL expression into :class:`_Node` s whose
    spans index the query text."""

    def __init__(self, text: str, tokens: list[_Token]) -> None:
        self.text = text
        self.tokens = [t for t in tokens if t.kind != "comment"]
        self.i = 0

    def parse(self) -> _Node:
        if not self.tokens:
            raise _ParseError("empty query")
        node = self._binary(1)
        if self.i < len(self.tokens):
            tok = self.tokens[self.i]
            raise _ParseError(f"unexpected {tok.text!r} at {tok.start}")
        return node

    # -- tokens

    def _peek(self, ahead: int = 0) -> _Token | None:
        j = self.i + ahead
        return self.tokens[j] if j < len(self.tokens) else None

    def _next(self) -> _Token:
        tok = self._peek()
        if tok is None:
            raise _ParseError("unexpected end of the query")
        self.i += 1
        return tok

    def _expect(self, kind: str) -> _Token:
        tok = self._next()
        if tok.kind != kind:
            raise _ParseError(f"expected {kind!r} at {tok.start}, got {tok.text!r}")
        return tok

    def _word(self, tok: _Token | None) -> str | None:
        return tok.text.lower() if tok is not None and tok.kind == "ident" else None

    # -- expressions

    def _binary(self, min_prec: int) -> _Node:
        lhs = self._unary()
        while True:
            tok = self._peek()
            op = None if tok is None else (self._word(tok) or tok.kind)
            prec = _PRECEDENCE.get(op or "")
            if op is None or prec is None or prec < min_prec:
                return lhs
            self._next()
            self._modifiers()
            rhs = self._binary(prec if op == "^" else prec + 1)
            lhs = _Binary(lhs.start, rhs.end, op, lhs, rhs)

    def _modifiers(self) -> None:
        """Skip a binary operator's ``bool``, ``on``/``ignoring`` and ``group_*`` clauses."""
        if self._word(self._peek()) == "bool":
            self._next()
        if self._word(self._peek()) in ("on", "ignoring"):
            self._next()
            self._labels()
        if self._word(self._peek()) in ("group_left", "group_right"):
            self._next()
            nxt = self._peek()
            if nxt is not None and nxt.kind == "(":
                self._labels()

    def _labels(self) -> None:
        """Skip a parenthesised list of label names."""
        self._expect("(")
        while self._next().kind != ")":
            pass

    def _unary(self) -> _Node:
        tok = self._peek()
        if tok is not None and tok.kind in ("-", "+"):
            self._next()
            expr = self._binary(_PRECEDENCE["^"])
            return _Unary(tok.start, expr.end, tok.kind, expr)
        return self._postfix(self._primary())

    def _postfix(self, node: _Node) -> _Node:
        while True:
            tok = self._peek()
            if tok is not None and tok.kind == "range":
                self._next()
                window, colon, _ = tok.text.partition(":")
                node = _Range(
                    node.start,
                    tok.end,
                    node,
                    _seconds(window.strip()),
                    bool(colon),
                    None,
                    pinned=False,
                )
            elif self._word(tok) == "offset":
                self._next()
                start = self._peek()
                sign = self._next().text if start is not None and start.kind == "-" else ""
                dur = self._next()
                if dur.kind not in ("duration", "number"):
                    raise _ParseError(f"expected a duration after offset at {dur.start}")
                if isinstance(node, _Range):
                    node = dataclasses.replace(node, end=dur.end, offset=sign + dur.text)
                else:
                    node = _Modified(node.start, dur.end, node)
            elif tok is not None and tok.kind == "@":
                self._next()
                at = self._next()
                if at.kind in ("-", "+"):
                    at = self._next()
                elif self._word(at) in ("start", "end"):
                    self._expect("(")
                    at = self._expect(")")
                if isinstance(node, _Range):
                    node = dataclasses.replace(node, end=at.end, pinned=True)
                else:
                    node = _Modified(node.start, at.end, node)
            else:
                return node

    def _primary(self) -> _Node:
        tok = self._next()
        word = self._word(tok)
        if tok.kind in ("number", "duration") or word in ("inf", "nan"):
            return _Number(tok.start, tok.end)
        if tok.kind == "string":
            return _String(tok.start, tok.end)
        if tok.kind == "(":
            expr = self._binary(1)
            close = self._expect(")")
            return _Paren(tok.start, close.end, expr)
        if tok.kind == "{":
            return _Selector(tok.start, self._braces())
        if word is None:
            raise _ParseError(f"unexpected {tok.text!r} at {tok.start}")
        nxt = self._peek()
        if word in _AGGREGATIONS and (
            (nxt is not None and nxt.kind == "(") or self._word(nxt) in ("by", "without")
        ):
            return self._aggregate(tok)
        if nxt is not None and nxt.kind == "(":
            self._next()
            args, end = self._args()
            return _Call(tok.start, end, tok.text, args)
        if nxt is not None and nxt.kind == "{":
            self._next()
            return _Selector(tok.start, self._braces())
        return _Selector(tok.start, tok.end)

    def _braces(self) -> int:
        """Skip label matchers up to the closing ``}`` (its end)."""
        while True:
            tok = self._next()
            if tok.kind == "}":
                return tok.end
            if tok.kind not in ("ident", "string", ",", "=", "!=", "=~", "!~"):
                raise _ParseError(f"unexpected {tok.text!r} in label matchers at {tok.start}")

    def _args(self) -> tuple[tuple[_Node, ...], int]:
        """Comma-separated expressions after an opening ``(``, and the end of the ``)``."""
        args: list[_Node] = []
        nxt = self._peek()
        if nxt is not None and nxt.kind == ")":
            return (), self._next().end
        while True:
            args.append(self._binary(1))
            tok = self._next()
            if tok.kind == ")":
                return tuple(args), tok.end
            if tok.kind != ",":
                raise _ParseError(f"expected ',' or ')' at {tok.start}, got {tok.text!r}")

    def _aggregate(self, op: _Token) -> _Aggregate:
        if self._word(self._peek()) in ("by", "without"):
            self._next()
            self._labels()
        self._expect("(")
        args, end = self._args()
        if self._word(self._peek()) in ("by", "without"):
            self._next()
            self._labels()
            end = self.tokens[self.i - 1].end
        if not args:
            raise _ParseError(f"{op.text}() needs an expression at {op.start}")
        return _Aggregate(op.start, end, op.text.lower(), args)


# --------------------------------------------------------------------------- linearity


@dataclass(frozen=True)
class _Core:
    """The one rolling window of a query, ``function(selector[window])``, and the sign of the
    factor the query multiplies it by."""

    call: _Call
    window: _Range
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

    def quote(self, node: _Node) -> str:
        """``node`` as written, on one line."""
        return re.sub(r"\s*\n\s*", " ", self.text[node.start : node.end])

    def walk(self, node: _Node) -> _Walked:
        if isinstance(node, _Number):
            return _Const(self._number(node))
        if isinstance(node, _String | _Selector | _Modified):
            return _Series()
        if isinstance(node, _Paren):
            return self.walk(node.expr)
        if isinstance(node, _Unary):
            inner = self.walk(node.expr)
            if node.op == "-" and isinstance(inner, _Const):
                return _Const(-inner.value)
            if node.op == "-" and isinstance(inner, _Core):
                return dataclasses.replace(inner, negative=not inner.negative)
            return inner
        if isinstance(node, _Range):
            if node.seconds > self.rho and not node.subquery:
                return NotRollingSum(f"{self.quote(node)} is a range, not a value", rolling=False)
            return self._inside(node, self.walk(node.inner))
        if isinstance(node, _Call):
            return self._call(node)
        if isinstance(node, _Aggregate):
            return self._aggregate(node)
        if isinstance(node, _Binary):
            return self._binary(node)
        raise TypeError(f"unknown node {node!r}")  # pragma: no cover

    def _number(self, node: _Number) -> float:
        text = self.text[node.start : node.end]
        if text.lower().startswith("0x"):
            return float(int(text, 16))
        if text.lower() in ("inf", "nan") or _NUMBER.fullmatch(text):
            return float(text)
        return _seconds(text)  # a duration where a number goes: its seconds

    def _inside(self, node: _Range, inner: _Walked) -> _Walked:
        """A subquery's or short range's inner expression: a window inside is not derived."""
        if isinstance(inner, _Core):
            return _no_rate(inner, f"it is inside subquery {self.quote(node)}")
        return inner if isinstance(inner, NotRollingSum) else _Series()

    def _call(self, node: _Call) -> _Walked:
        name = node.name.lower()
        rng = next((a for a in node.args if isinstance(a, _Range)), None)
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
            if not isinstance(rng.inner, _Selector) or len(node.args) != 1:
                return _no_rate(core, "its range is not over a plain selector")
            return core
        return self._around(node.args, name in _PASS_THROUGH, f"{node.name}()")

    def _aggregate(self, node: _Aggregate) -> _Walked:
        linear = node.op in _LINEAR_AGGREGATIONS and len(node.args) == 1
        return self._around(node.args, linear, f"{node.op}()")

    def _around(self, args: tuple[_Node, ...], passes: bool, name: str) -> _Walked:
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

    def _binary(self, node: _Binary) -> _Walked:
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


def _derive(query: str, tokens: list[_Token], core: _Core, rho: float) -> RollingSum:
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
    rate_core = f"{function}({selector}[{_format_seconds(span)}]{offset})"
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
