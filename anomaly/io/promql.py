"""PromQL text: escaping label values, and finding and restricting a query's selectors.

Injection: tenant names and other label values that end up inside a query must go through
:func:`escape_label_value` (for ``=``/``!=``) or :func:`regex_escape_label_value` (for
``=~``/``!~``). :func:`restrict_query` adds a tenant matcher (:func:`tenant_matcher`) to every
selector of a query, so Prometheus reads only those tenants' series; :func:`series_selectors`
gives the selectors as ``match[]`` strings for the series and label APIs;
:func:`count_series_query` counts a query's series over a stretch of time;
:func:`reads_bucket_quantile` tells a quantile read off histogram buckets.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from anomaly.config import format_duration
from anomaly.io.promql_syntax import PromQLSyntaxError, Token, tokenize

__all__ = [
    "count_series_query",
    "reads_bucket_quantile",
    "escape_label_value",
    "regex_escape_label_value",
    "restrict_query",
    "series_selectors",
    "tenant_matcher",
]

# --------------------------------------------------------------------------- PromQL escaping

_STRING_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}
# RE2 metacharacters, as escaped by Go's regexp.QuoteMeta.
_RE2_META = frozenset("\\.+*?()|[]{}^$")


def escape_label_value(value: str) -> str:
    """Escape ``value`` for use inside a double-quoted PromQL string literal.

    The result goes between the quotes: ``f'{{org="{escape_label_value(v)}"}}'``. Backslashes,
    double quotes and control characters are escaped, so no value can end the literal early
    and change the query (``x"} or vector(1) #`` stays one label value).
    """
    out = []
    for ch in value:
        esc = _STRING_ESCAPES.get(ch)
        if esc is not None:
            out.append(esc)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return "".join(out)


def regex_escape_label_value(value: str) -> str:
    """Escape ``value`` so that an ``=~`` matcher matches exactly this one string.

    RE2 metacharacters are backslash-escaped (like Go's ``regexp.QuoteMeta``) and the result is
    then escaped as a string literal, so it goes straight between the quotes:
    ``f'{{org=~"{regex_escape_label_value(v)}"}}'``. Prometheus anchors regex matchers, so the
    matcher accepts ``value`` and nothing else. Join several with ``|`` for a set.
    """
    quoted = "".join("\\" + ch if ch in _RE2_META else ch for ch in value)
    return escape_label_value(quoted)


# --------------------------------------------------------------------------- selectors in PromQL

# Words that are never a metric name where they stand in an expression (PromQL keywords are
# case-insensitive). `by`/`without`/`on`/`ignoring`/`group_left`/`group_right` take a
# parenthesised list of label names, which is not an expression either.
_KEYWORDS = frozenset(
    {"and", "or", "unless", "bool", "offset", "atan2", "inf", "nan", "start", "end"}
    | {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values"}
    | {"bottomk", "topk", "quantile"}  # aggregation operators: keywords, never metric names
)
_LABEL_LIST_KEYWORDS = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})
_NOT_NAMES = _KEYWORDS | _LABEL_LIST_KEYWORDS | {None}


@dataclass(frozen=True)
class _Selector:
    """A vector selector in a query: ``text[start:end]``; ``brace`` is the index of its
    closing ``}`` (or -1 for a bare metric name)."""

    start: int
    end: int
    brace: int


def _selectors(query: str) -> list[_Selector]:
    """Every vector selector (``name``, ``name{...}``, ``{...}``) of a PromQL expression.

    Read off its tokens (:func:`~anomaly.io.promql_syntax.tokenize`: strings, comments and
    ``[...]`` ranges are tokens of their own), skipping function and aggregation names (an
    identifier before ``(``), keywords, and the label lists of ``by``/``without``/``on``/
    ``ignoring``/``group_left``/``group_right``. Raises ValueError on unbalanced brackets or
    strings.
    """
    tokens = [t for t in tokenize(query) if t.kind != "comment"]
    out: list[_Selector] = []
    i, n = 0, len(tokens)
    while i < n:
        tok = tokens[i]
        nxt = tokens[i + 1].kind if i + 1 < n else None
        word = tok.text.lower() if tok.kind == "ident" else None
        if tok.kind == "{" or (word not in _NOT_NAMES and nxt == "{"):
            close = _closing(tokens, i if tok.kind == "{" else i + 1, "}")
            out.append(_Selector(tok.start, tokens[close].end, tokens[close].start))
            i = close + 1
        elif word in _LABEL_LIST_KEYWORDS and nxt == "(":
            i = _closing(tokens, i + 1, ")") + 1
        elif word not in _NOT_NAMES and nxt != "(":
            out.append(_Selector(tok.start, tok.end, -1))
            i += 1
        else:
            i += 1
    return out


def _closing(tokens: list[Token], i: int, kind: str) -> int:
    """Index of the first token of ``kind`` after the bracket ``tokens[i]``."""
    for j in range(i + 1, len(tokens)):
        if tokens[j].kind == kind:
            return j
    raise PromQLSyntaxError(f"unbalanced {tokens[i].text!r}")


def series_selectors(query: str) -> list[str]:
    """The vector selectors of ``query`` as ``match[]`` strings for the series and label APIs.

    Empty when the query has none (e.g. ``vector(1)``) or cannot be read (unbalanced brackets).
    """
    try:
        return [query[s.start : s.end] for s in _selectors(query)]
    except ValueError:
        return []


def tenant_matcher(label: str, values: Iterable[str]) -> str:
    """``label=~"v1|v2|..."`` matching exactly ``values`` (each escaped; sorted, deduplicated)."""
    alternatives = "|".join(regex_escape_label_value(v) for v in sorted(set(values)))
    return f'{label}=~"{alternatives}"'


def restrict_query(query: str, matcher: str) -> str | None:
    """``query`` with ``matcher`` (e.g. from :func:`tenant_matcher`) added to every selector.

    The result equals ``query`` restricted to the matching series when the query never mixes
    tenants (the premise of per-tenant models): each selector is filtered in the index, so
    Prometheus reads only those series. ``None`` when the query has no selector or cannot be
    read.
    """
    try:
        selectors = _selectors(query)
    except ValueError:
        return None
    if not selectors:
        return None
    parts: list[str] = []
    pos = 0
    for sel in selectors:
        if sel.brace < 0:
            parts.append(query[pos : sel.end] + "{" + matcher + "}")
        else:
            inner = query[sel.start : sel.brace].rstrip()
            sep = "" if inner.endswith(("{", ",")) else ","
            parts.append(query[pos : sel.start] + inner + sep + matcher + "}")
        pos = sel.end
    parts.append(query[pos:])
    return "".join(parts)


def _duration(seconds: float) -> str:
    """A PromQL duration of ``seconds`` (milliseconds kept: ``0.5 -> '500ms'``)."""
    ms = round(seconds * 1000)
    return format_duration(ms / 1000) if ms % 1000 == 0 else f"{ms}ms"


def count_series_query(query: str, by: str, range_seconds: float, step_seconds: float) -> str:
    """PromQL counting, per value of label ``by``, the series ``query`` returns anywhere in the
    ``range_seconds`` up to the evaluation time, evaluated every ``step_seconds`` as a range
    query at that step sees them: ``count by (by) (last_over_time((query)[range:step]))``.

    Unlike an instant ``count by (by) (query)`` it does not depend on data at the evaluation
    time (a scrape gap, an hourly metric, a replay after the data ends). Any expression works
    (``rate()``, ``sum by``, ``histogram_quantile``...); the query is closed on a line of its
    own, so a trailing ``# comment`` cannot swallow the rest.
    """
    inner = f"({query}\n)" if "#" in query else f"({query})"
    return (
        f"count by ({by}) "
        f"(last_over_time({inner}[{_duration(range_seconds)}:{_duration(step_seconds)}]))"
    )


def reads_bucket_quantile(query: str) -> bool:
    """Whether ``query`` reads a quantile off histogram buckets (``histogram_quantile``): its
    value is interpolated within a bucket and jumps when the quantile crosses a bucket's
    bound, so its noise is those jumps, not the median step. False for a query this module
    cannot read."""
    try:
        tokens = [t for t in tokenize(query) if t.kind != "comment"]
    except PromQLSyntaxError:
        return False
    return any(
        a.kind == "ident" and a.text == "histogram_quantile" and b.kind == "("
        for a, b in zip(tokens, tokens[1:], strict=False)
    )
