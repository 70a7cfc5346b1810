"""PromQL syntax: the tokens of a query and the tree of its expression, with spans into its text.

:func:`tokenize` cuts a query into :class:`Token` s (strings with their escapes, comments and
``[...]`` ranges each one token, so a ``]``, ``}``, quote or ``#`` inside a label value is only
ever part of that value); :func:`parse` reads them into a tree of :class:`Node` s by precedence
climbing (PromQL's binary operators, ``bool``/``on``/``ignoring``/``group_*`` modifiers,
aggregations with ``by``/``without`` before or after, function calls, selectors, ranges,
subqueries, ``offset`` and ``@``). Every node knows the span of the query text it was read
from, so callers rewrite a query by splicing its own text. Not a validator: label matchers are
skipped, not checked, and what is not read raises :class:`PromQLSyntaxError`; Prometheus
judges the query.

Pure text work: nothing here imports the rest of the package (the configuration reads queries
through :mod:`anomaly.io.rolling_query` when it loads).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

__all__ = [
    "Aggregate",
    "Binary",
    "Call",
    "Modified",
    "Node",
    "Number",
    "Paren",
    "PromQLSyntaxError",
    "Range",
    "Selector",
    "String",
    "Token",
    "Unary",
    "duration_seconds",
    "format_duration_ms",
    "number_value",
    "parse",
    "tokenize",
]

# --------------------------------------------------------------------------- tokens


class PromQLSyntaxError(ValueError):
    """The query is not PromQL this module can read."""


@dataclass(frozen=True)
class Token:
    kind: str
    """``ident``, ``number``, ``duration``, ``string``, ``range`` (the text between
    ``[`` and ``]``), ``comment``, or the operator or bracket itself."""
    text: str
    start: int
    end: int


_IDENT = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_IDENT_CHAR = re.compile(r"[a-zA-Z0-9_:.]")
_DURATION = re.compile(r"(?:\d+(?:ms|s|m|h|d|w|y))+(?![a-zA-Z0-9_:.])")
NUMBER = re.compile(r"0[xX][0-9a-fA-F]+|(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_OPERATORS = ("==", "!=", "<=", ">=", "=~", "!~", "<", ">", "=", "+", "-", "*", "/", "%", "^")
_SINGLE = {"(", ")", "{", "}", ",", "@", ":"}
_DURATION_PART = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


def tokenize(text: str) -> list[Token]:
    """The tokens of ``text`` (comments included, whitespace dropped)."""
    out: list[Token] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
            continue
        if ch == "#":
            nl = text.find("\n", i)
            end = n if nl < 0 else nl
            out.append(Token("comment", text[i:end], i, end))
        elif ch in "\"'`":
            end = _string_end(text, i)
            out.append(Token("string", text[i:end], i, end))
        elif ch == "[":
            close = text.find("]", i)
            if close < 0:
                raise PromQLSyntaxError(f"unclosed '[' at {i}")
            end = close + 1
            out.append(Token("range", text[i + 1 : close].strip(), i, end))
        elif m := _DURATION.match(text, i):
            end = m.end()
            out.append(Token("duration", m.group(0), i, end))
        elif m := NUMBER.match(text, i):
            end = m.end()
            if _IDENT_CHAR.match(text, end):
                raise PromQLSyntaxError(f"bad number {text[i : end + 1]!r}... at {i}")
            out.append(Token("number", m.group(0), i, end))
        elif m := _IDENT.match(text, i):
            end = m.end()
            out.append(Token("ident", m.group(0), i, end))
        else:
            op = next((o for o in _OPERATORS if text.startswith(o, i)), None)
            if op is None and ch not in _SINGLE:
                raise PromQLSyntaxError(f"unexpected {ch!r} at {i}")
            op = op or ch
            end = i + len(op)
            out.append(Token(op, op, i, end))
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
    raise PromQLSyntaxError(f"unterminated string at {i}")


def duration_seconds(text: str) -> float:
    """Seconds of a PromQL duration (``1h30m``) or plain number of seconds."""
    if NUMBER.fullmatch(text) and not text.lower().startswith("0x"):
        return float(text)
    parts = list(_DURATION_PART.finditer(text))
    if not parts or "".join(p.group(0) for p in parts) != text:
        raise PromQLSyntaxError(f"bad duration {text!r}")
    return sum(int(p.group(1)) * _UNIT_SECONDS[p.group(2)] for p in parts)


def format_duration_ms(seconds: float) -> str:
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
class Node:
    start: int
    end: int


@dataclass(frozen=True)
class Number(Node):
    pass


@dataclass(frozen=True)
class String(Node):
    pass


@dataclass(frozen=True)
class Selector(Node):
    """``name``, ``name{...}`` or ``{...}``."""


@dataclass(frozen=True)
class Range(Node):
    """``inner[range]`` (``subquery``: ``inner[range:step]``) with its modifiers."""

    inner: Node
    seconds: float
    subquery: bool
    offset: str | None
    pinned: bool
    """An ``@`` modifier fixes the window in time."""


@dataclass(frozen=True)
class Modified(Node):
    """An instant expression with ``offset`` or ``@``."""

    inner: Node


@dataclass(frozen=True)
class Call(Node):
    name: str
    args: tuple[Node, ...]


@dataclass(frozen=True)
class Aggregate(Node):
    op: str
    args: tuple[Node, ...]
    """The parameter (``topk``'s k...) if any, then the expression."""


@dataclass(frozen=True)
class Binary(Node):
    op: str
    lhs: Node
    rhs: Node


@dataclass(frozen=True)
class Unary(Node):
    op: str
    expr: Node


@dataclass(frozen=True)
class Paren(Node):
    expr: Node


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
    """A precedence-climbing parser of one PromQL expression into :class:`Node` s whose
    spans index the query text."""

    def __init__(self, text: str, tokens: list[Token]) -> None:
        self.text = text
        self.tokens = [t for t in tokens if t.kind != "comment"]
        self.i = 0

    def parse(self) -> Node:
        if not self.tokens:
            raise PromQLSyntaxError("empty query")
        node = self._binary(1)
        if self.i < len(self.tokens):
            tok = self.tokens[self.i]
            raise PromQLSyntaxError(f"unexpected {tok.text!r} at {tok.start}")
        return node

    # -- tokens

    def _peek(self, ahead: int = 0) -> Token | None:
        j = self.i + ahead
        return self.tokens[j] if j < len(self.tokens) else None

    def _next(self) -> Token:
        tok = self._peek()
        if tok is None:
            raise PromQLSyntaxError("unexpected end of the query")
        self.i += 1
        return tok

    def _expect(self, kind: str) -> Token:
        tok = self._next()
        if tok.kind != kind:
            raise PromQLSyntaxError(f"expected {kind!r} at {tok.start}, got {tok.text!r}")
        return tok

    def _word(self, tok: Token | None) -> str | None:
        return tok.text.lower() if tok is not None and tok.kind == "ident" else None

    # -- expressions

    def _binary(self, min_prec: int) -> Node:
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
            lhs = Binary(lhs.start, rhs.end, op, lhs, rhs)

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

    def _unary(self) -> Node:
        tok = self._peek()
        if tok is not None and tok.kind in ("-", "+"):
            self._next()
            expr = self._binary(_PRECEDENCE["^"])
            return Unary(tok.start, expr.end, tok.kind, expr)
        return self._postfix(self._primary())

    def _postfix(self, node: Node) -> Node:
        while True:
            tok = self._peek()
            if tok is not None and tok.kind == "range":
                self._next()
                window, colon, _ = tok.text.partition(":")
                node = Range(
                    node.start,
                    tok.end,
                    node,
                    duration_seconds(window.strip()),
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
                    raise PromQLSyntaxError(f"expected a duration after offset at {dur.start}")
                if isinstance(node, Range):
                    node = dataclasses.replace(node, end=dur.end, offset=sign + dur.text)
                else:
                    node = Modified(node.start, dur.end, node)
            elif tok is not None and tok.kind == "@":
                self._next()
                at = self._next()
                if at.kind in ("-", "+"):
                    at = self._next()
                elif self._word(at) in ("start", "end"):
                    self._expect("(")
                    at = self._expect(")")
                if isinstance(node, Range):
                    node = dataclasses.replace(node, end=at.end, pinned=True)
                else:
                    node = Modified(node.start, at.end, node)
            else:
                return node

    def _primary(self) -> Node:
        tok = self._next()
        word = self._word(tok)
        if tok.kind in ("number", "duration") or word in ("inf", "nan"):
            return Number(tok.start, tok.end)
        if tok.kind == "string":
            return String(tok.start, tok.end)
        if tok.kind == "(":
            expr = self._binary(1)
            close = self._expect(")")
            return Paren(tok.start, close.end, expr)
        if tok.kind == "{":
            return Selector(tok.start, self._braces())
        if word is None:
            raise PromQLSyntaxError(f"unexpected {tok.text!r} at {tok.start}")
        nxt = self._peek()
        if word in _AGGREGATIONS and (
            (nxt is not None and nxt.kind == "(") or self._word(nxt) in ("by", "without")
        ):
            return self._aggregate(tok)
        if nxt is not None and nxt.kind == "(":
            self._next()
            args, end = self._args()
            return Call(tok.start, end, tok.text, args)
        if nxt is not None and nxt.kind == "{":
            self._next()
            return Selector(tok.start, self._braces())
        return Selector(tok.start, tok.end)

    def _braces(self) -> int:
        """Skip label matchers up to the closing ``}`` (its end)."""
        while True:
            tok = self._next()
            if tok.kind == "}":
                return tok.end
            if tok.kind not in ("ident", "string", ",", "=", "!=", "=~", "!~"):
                raise PromQLSyntaxError(f"unexpected {tok.text!r} in label matchers at {tok.start}")

    def _args(self) -> tuple[tuple[Node, ...], int]:
        """Comma-separated expressions after an opening ``(``, and the end of the ``)``."""
        args: list[Node] = []
        nxt = self._peek()
        if nxt is not None and nxt.kind == ")":
            return (), self._next().end
        while True:
            args.append(self._binary(1))
            tok = self._next()
            if tok.kind == ")":
                return tuple(args), tok.end
            if tok.kind != ",":
                raise PromQLSyntaxError(f"expected ',' or ')' at {tok.start}, got {tok.text!r}")

    def _aggregate(self, op: Token) -> Aggregate:
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
            raise PromQLSyntaxError(f"{op.text}() needs an expression at {op.start}")
        return Aggregate(op.start, end, op.text.lower(), args)


def parse(text: str, tokens: list[Token] | None = None) -> Node:
    """The expression tree of the query ``text`` (``tokens``: its :func:`tokenize`, if made
    already). Raises :class:`PromQLSyntaxError`, or ``RecursionError`` when nested too deeply."""
    return _Parser(text, tokenize(text) if tokens is None else tokens).parse()


def number_value(text: str) -> float:
    """The value of a number token (decimal, hex, ``Inf``, ``NaN``, or a duration's seconds)."""
    if text.lower().startswith("0x"):
        return float(int(text, 16))
    if text.lower() in ("inf", "nan") or NUMBER.fullmatch(text):
        return float(text)
    return duration_seconds(text)
