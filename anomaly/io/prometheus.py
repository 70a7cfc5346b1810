"""Prometheus range queries: HTTP, auth, TLS, timeouts, retries, chunking and parsing.

:class:`PrometheusSource` reads from any Prometheus-compatible HTTP API (Prometheus, Thanos,
Mimir, VictoriaMetrics) and returns plain numpy data (:class:`RawSeries`); aligning series onto
one grid is :mod:`anomaly.frame`'s job.

Why the HTTP calls go through our own :class:`requests.Session` and not through
``PrometheusConnect``'s query methods (prometheus-api-client 0.7.2):

* its methods raise ``PrometheusApiClientException("HTTP Status Code 400 (b'...')")`` for every
  non-200 answer, so the status code and Prometheus' ``error``/``errorType`` fields are only
  available by parsing a ``repr`` out of a message; we need them to tell a bad query (4xx, not
  retried, :class:`~anomaly.errors.QueryError`) from an unavailable server (5xx, retried);
* ``custom_query_range`` rounds ``start``/``end`` to whole seconds, which breaks exact chunk
  seams for sub-second steps;
* it mounts a urllib3 ``Retry`` of its own (status retries included) that would multiply with
  our bounded, configurable retries.

The session is configured the way ``PrometheusConnect`` configures its own (headers, ``auth``
tuple, ``verify``, ``cert``, a timeout on every request), so behaviour matches the library.

PromQL injection: tenant names and other label values that end up inside a query must go
through :func:`escape_label_value` (for ``=``/``!=``) or :func:`regex_escape_label_value`
(for ``=~``/``!~``).
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import numpy as np
import requests

from anomaly.config import PrometheusConfig
from anomaly.errors import QueryError, SourceError

__all__ = [
    "PrometheusSource",
    "RawSeries",
    "escape_label_value",
    "regex_escape_label_value",
    "restrict_query",
    "series_selectors",
    "tenant_matcher",
]

log = logging.getLogger(__name__)

_LABEL_NAME_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
# Statuses worth another attempt: the server or a proxy in front of it is unwell or throttling.
_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
# 4xx answers that say "this query is bad" rather than "this server/URL/credential is bad".
_QUERY_REJECTED_STATUSES = frozenset({400, 422})
_MAX_QUERY_IN_MESSAGE = 200


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
_IDENT_RE = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


@dataclass(frozen=True)
class _Selector:
    """A vector selector in a query: ``text[start:end]``; ``brace`` is the index of its
    closing ``}`` (or -1 for a bare metric name)."""

    start: int
    end: int
    brace: int


def _skip_string(text: str, i: int) -> int:
    """Index just after the string literal opening at ``text[i]``."""
    quote_char = text[i]
    i += 1
    while i < len(text):
        ch = text[i]
        if ch == "\\" and quote_char != "`":
            i += 2
            continue
        if ch == quote_char:
            return i + 1
        i += 1
    raise ValueError("unterminated string literal")


def _closing(text: str, i: int, close: str) -> int:
    """Index of the ``close`` character that ends the bracket opening at ``text[i]``."""
    i += 1
    while i < len(text):
        ch = text[i]
        if ch in "\"'`":
            i = _skip_string(text, i)
            continue
        if ch == close:
            return i
        i += 1
    raise ValueError(f"unbalanced {text[i - 1] if i else close!r}")


def _next_significant(text: str, i: int) -> int:
    while i < len(text) and text[i].isspace():
        i += 1
    return i


def _selectors(query: str) -> list[_Selector]:
    """Every vector selector (``name``, ``name{...}``, ``{...}``) of a PromQL expression.

    A small lexer, not a parser: it skips strings, comments, ``[...]`` ranges, numbers and
    durations, function and aggregation names (an identifier before ``(``), keywords, and the
    label lists of ``by``/``without``/``on``/``ignoring``/``group_left``/``group_right``.
    Raises ValueError on unbalanced brackets or strings.
    """
    out: list[_Selector] = []
    i, n = 0, len(query)
    while i < n:
        ch = query[i]
        if ch.isspace():
            i += 1
        elif ch == "#":
            nl = query.find("\n", i)
            i = n if nl < 0 else nl + 1
        elif ch in "\"'`":
            i = _skip_string(query, i)
        elif ch == "[":
            i = _closing(query, i, "]") + 1
        elif ch == "{":
            close = _closing(query, i, "}")
            out.append(_Selector(i, close + 1, close))
            i = close + 1
        elif ch.isdigit() or (ch == "." and i + 1 < n and query[i + 1].isdigit()):
            i += 1
            while i < n and (query[i].isalnum() or query[i] in "._"):
                i += 1
        elif ch.isalpha() or ch in "_:":
            m = _IDENT_RE.match(query, i)
            word = m.group(0) if m else ch
            end = i + len(word)
            nxt = _next_significant(query, end)
            lowered = word.lower()
            if lowered in _LABEL_LIST_KEYWORDS:
                i = _closing(query, nxt, ")") + 1 if nxt < n and query[nxt] == "(" else end
            elif nxt < n and query[nxt] == "(" or lowered in _KEYWORDS:
                i = end
            elif nxt < n and query[nxt] == "{":
                close = _closing(query, nxt, "}")
                out.append(_Selector(i, close + 1, close))
                i = close + 1
            else:
                out.append(_Selector(i, end, -1))
                i = end
        else:
            i += 1
    return out


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


# --------------------------------------------------------------------------- data


@dataclass(frozen=True, eq=False)
class RawSeries:
    """One series of a range query result.

    Attributes
    ----------
    labels : dict[str, str]
        The series' labels without ``__name__``.
    times : np.ndarray, shape (n_points,), float64
        Unix timestamps in seconds, strictly increasing.
    values : np.ndarray, shape (n_points,), float64
        Sample values; Prometheus' ``NaN``, ``+Inf`` and ``-Inf`` arrive as their floats.
    """

    labels: dict[str, str]
    times: np.ndarray = field(repr=False)
    values: np.ndarray = field(repr=False)

    def __repr__(self) -> str:
        return f"RawSeries(labels={self.labels!r}, n_points={len(self.times)})"


# --------------------------------------------------------------------------- source


def _redact_url(url: str) -> str:
    """The URL without user:password, for messages."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url.rstrip("/")
    netloc = parts.hostname or ""
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc)).rstrip("/")


def _one_line(text: str, limit: int = 300) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _causes(exc: BaseException) -> Iterable[BaseException]:
    """``exc`` and what it wraps (``__cause__``/``__context__`` and urllib3's ``reason``)."""
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        cur = todo.pop()
        if id(cur) in seen:
            continue
        seen.add(id(cur))
        yield cur
        nxt = [cur.__cause__, cur.__context__, getattr(cur, "reason", None)]
        nxt += [a for a in cur.args if isinstance(a, BaseException)]
        todo.extend(n for n in nxt if isinstance(n, BaseException))


def _describe_connection_error(exc: requests.RequestException, timeout: float) -> str:
    """A short reason such as 'connection refused', never the exception's full text."""
    if isinstance(exc, requests.Timeout):
        return f"no answer within {timeout:g}s (timed out)"
    if isinstance(exc, requests.exceptions.SSLError):
        return "TLS handshake or certificate verification failed"
    for cause in _causes(exc):
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        if isinstance(cause, ConnectionResetError):
            return "connection reset by peer"
        if type(cause).__name__ == "NameResolutionError":
            return "host name cannot be resolved"
    if isinstance(exc, requests.ConnectionError):
        return "connection failed"
    return f"request failed ({type(exc).__name__})"


def _format_number(x: float) -> str:
    """Seconds for Prometheus' API; millisecond precision is what Prometheus keeps."""
    return f"{x:.3f}".rstrip("0").rstrip(".")


class PrometheusSource:
    """Range queries against a Prometheus-compatible API.

    Parameters
    ----------
    config : PrometheusConfig
        URL, headers (e.g. ``X-Scope-OrgID`` for Mimir), auth, TLS, timeout, retry and chunking
        settings.
    session : requests.Session, optional
        Injected for tests (e.g. with a mounted fake adapter); configured like the default one.
    sleep : callable, optional
        Used between retries (``time.sleep`` by default).
    """

    def __init__(
        self,
        config: PrometheusConfig,
        *,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.config = config
        self.url = config.url.rstrip("/")
        self._display_url = _redact_url(self.url)
        self._sleep = sleep
        self._session = session if session is not None else requests.Session()
        self._configure_session(self._session)

    def _configure_session(self, s: requests.Session) -> None:
        cfg = self.config
        s.headers.update(dict(cfg.headers))
        if cfg.auth.bearer_token:
            s.headers["Authorization"] = f"Bearer {cfg.auth.bearer_token}"
        elif cfg.auth.username is not None:
            s.auth = (cfg.auth.username, cfg.auth.password or "")
        if not cfg.tls.verify:
            s.verify = False
        elif cfg.tls.ca_file:
            s.verify = cfg.tls.ca_file
        if cfg.tls.cert_file:
            s.cert = (
                (cfg.tls.cert_file, cfg.tls.key_file) if cfg.tls.key_file else cfg.tls.cert_file
            )

    def close(self) -> None:
        """Release pooled connections."""
        self._session.close()

    def __enter__(self) -> PrometheusSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"PrometheusSource(url={self._display_url!r})"

    # ----------------------------------------------------------------------- public API

    def query_range(
        self, query: str, start: float, end: float, step_seconds: float
    ) -> list[RawSeries]:
        """Evaluate ``query`` at ``start, start + step, ...`` up to ``end`` (Unix seconds).

        Ranges with more than ``max_points_per_query`` points are split into consecutive
        chunks whose results are stitched per label set (no duplicate timestamps at seams).

        Returns
        -------
        list[RawSeries]
            One entry per series, in the order Prometheus first returned them. Two series
            that differ only in `__name__` stay two entries with equal `labels`.

        Raises
        ------
        QueryError
            Prometheus rejected the query (HTTP 400/422, or it timed out server-side).
        SourceError
            Prometheus is unreachable, failed after all retries, or answered nonsense.
        """
        if not (math.isfinite(step_seconds) and step_seconds > 0):
            raise ValueError(f"`step_seconds` must be positive, got {step_seconds!r}")
        if not (math.isfinite(start) and math.isfinite(end)) or end < start:
            raise ValueError(f"`end` must not be before `start`, got start={start!r} end={end!r}")
        per_chunk = max(int(self.config.max_points_per_query), 1)
        n_points = int(math.floor((end - start) / step_seconds + 1e-9)) + 1
        chunks: list[tuple[float, float]] = []
        first = 0
        while first < n_points:
            last = min(first + per_chunk, n_points) - 1
            chunks.append((start + first * step_seconds, start + last * step_seconds))
            first = last + 1

        order: list[tuple[tuple[str, str], ...]] = []
        parts: dict[tuple[tuple[str, str], ...], list[tuple[np.ndarray, np.ndarray]]] = {}
        for c_start, c_end in chunks:
            for labels, times, values in self._query_range_chunk(
                query, c_start, c_end, step_seconds
            ):
                # Keyed with __name__: two series that differ only in their name are two
                # series (the frame reports them as duplicates), not one to be merged.
                key = tuple(sorted(labels.items()))
                if key not in parts:
                    parts[key] = []
                    order.append(key)
                parts[key].append((times, values))
        out = []
        for key in order:
            times = np.concatenate([p[0] for p in parts[key]])
            values = np.concatenate([p[1] for p in parts[key]])
            # Chunks do not overlap, but a server may return a boundary point twice; keep the
            # first occurrence and guarantee increasing times.
            times, idx = np.unique(times, return_index=True)
            labels = {k: v for k, v in key if k != "__name__"}
            out.append(RawSeries(labels=labels, times=times, values=values[idx]))
        return out

    def label_values(
        self,
        label: str,
        match: str | Sequence[str] | None = None,
        *,
        start: float | None = None,
        end: float | None = None,
    ) -> list[str]:
        """Values of ``label`` (``/api/v1/label/<label>/values``), optionally ``match[]``-ed
        (one selector or several, whose series are united) and limited to series with samples
        between ``start`` and ``end`` (Unix seconds).

        Returns the values sorted.
        """
        if not _LABEL_NAME_RE.match(label):
            raise ValueError(f"`label` must be a label name, got {label!r}")
        matches = [match] if isinstance(match, str) else list(match or [])
        params: list[tuple[str, str]] = [("match[]", m) for m in matches]
        if start is not None:
            params.append(("start", _format_number(start)))
        if end is not None:
            params.append(("end", _format_number(end)))
        data = self._call(
            "GET",
            f"/api/v1/label/{quote(label, safe='')}/values",
            params or None,
            query=" or ".join(matches) or None,
        )
        if not isinstance(data, list) or not all(isinstance(v, str) for v in data):
            raise SourceError(
                f"unexpected label values answer from Prometheus at {self._display_url}"
            )
        return sorted(data)

    def query(self, query: str, time: float) -> list[tuple[dict[str, str], float]]:
        """Evaluate ``query`` at one instant; ``(labels without __name__, value)`` per series.

        Raises :class:`~anomaly.errors.QueryError` if the query is rejected or does not
        return an instant vector.
        """
        form = {
            "query": query,
            "time": _format_number(time),
            "timeout": f"{_format_number(self.config.timeout_seconds)}s",
        }
        data = self._call("POST", "/api/v1/query", form, query=query)
        out = []
        for item in self._results(data, "vector", "an instant vector", query):
            labels = {k: v for k, v in (item.get("metric") or {}).items() if k != "__name__"}
            try:
                value = float(item["value"][1])
            except (KeyError, IndexError, TypeError, ValueError):
                continue
            out.append((labels, value))
        return out

    def check(self) -> None:
        """Cheaply verify that the API answers (an instant query of ``1``); else SourceError."""
        try:
            self._call("GET", "/api/v1/query", {"query": "1"}, query=None)
        except QueryError as e:
            # A server that rejects "1" is not a working Prometheus API for us.
            raise SourceError(str(e)) from None

    # ----------------------------------------------------------------------- internals

    def _query_range_chunk(
        self, query: str, start: float, end: float, step_seconds: float
    ) -> Iterable[tuple[dict[str, str], np.ndarray, np.ndarray]]:
        form = {
            "query": query,
            "start": _format_number(start),
            "end": _format_number(end),
            "step": _format_number(step_seconds),
            # Let Prometheus give up when we do, instead of evaluating for nobody.
            "timeout": f"{_format_number(self.config.timeout_seconds)}s",
        }
        data = self._call("POST", "/api/v1/query_range", form, query=query, matrix=True)
        if isinstance(data, DecodedMatrix):
            yield from data.series
            return
        for item in self._results(data, "matrix", "a range vector (matrix)", query):
            metric = dict(item.get("metric") or {})
            pairs = item.get("values") or []
            if not pairs:
                if item.get("histograms"):
                    log.warning(
                        "query %s returned native histograms for %s; skipped (not supported)",
                        self._show(query),
                        metric,
                    )
                continue
            try:
                times = np.fromiter((p[0] for p in pairs), dtype=np.float64, count=len(pairs))
                values = np.array([p[1] for p in pairs], dtype=str).astype(np.float64)
            except (TypeError, ValueError, IndexError) as e:
                raise QueryError(
                    f"query {self._show(query)}: malformed samples from Prometheus at "
                    f"{self._display_url}: {_one_line(str(e))}"
                ) from None
            yield metric, times, values

    def _results(self, data: Any, result_type: str, described: str, query: str) -> list[Any]:
        """The ``result`` list of a query answer of ``result_type``; else QueryError."""
        if not isinstance(data, dict) or data.get("resultType") != result_type:
            kind = data.get("resultType") if isinstance(data, dict) else type(data).__name__
            raise QueryError(
                f"query {self._show(query)} returned {kind!r} from Prometheus at "
                f"{self._display_url}, expected {described}"
            )
        return list(data.get("result") or [])

    def _show(self, query: str | None) -> str:
        q = _one_line(query or "", _MAX_QUERY_IN_MESSAGE)
        return repr(q)

    def _call(
        self,
        method: str,
        path: str,
        params: Mapping[str, str] | list[tuple[str, str]] | None,
        *,
        query: str | None,
        matrix: bool = False,
    ) -> Any:
        """One API call with bounded retries; returns the JSON ``data`` field (with ``matrix``,
        a range query's series decoded straight to arrays where the answer allows, see
        :func:`decode_matrix`)."""
        cfg = self.config
        attempts = max(int(cfg.retries), 0) + 1
        url = self.url + path
        for attempt in range(attempts):
            last = attempt == attempts - 1
            try:
                # `verify` per request: requests lets REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE override
                # a session's `verify` (psf/requests#3829), which would drop `tls.ca_file` and
                # `tls.verify: false` wherever those variables are set.
                verify = self._session.verify
                if method == "POST":
                    resp = self._session.post(
                        url, data=params, timeout=cfg.timeout_seconds, verify=verify
                    )
                else:
                    resp = self._session.get(
                        url, params=params, timeout=cfg.timeout_seconds, verify=verify
                    )
            except requests.RequestException as e:
                reason = _describe_connection_error(e, cfg.timeout_seconds)
                if last:
                    tries = f" (after {attempts} attempts)" if attempts > 1 else ""
                    raise SourceError(
                        f"cannot reach Prometheus at {self._display_url}: {reason}{tries}"
                    ) from None
                log.warning(
                    "Prometheus at %s: %s; retrying (%d/%d)",
                    self._display_url,
                    reason,
                    attempt + 1,
                    attempts - 1,
                )
                self._backoff(attempt)
                continue
            status = resp.status_code
            if status in _RETRY_STATUSES and not last:
                log.warning(
                    "Prometheus at %s answered HTTP %d; retrying (%d/%d)",
                    self._display_url,
                    status,
                    attempt + 1,
                    attempts - 1,
                )
                self._backoff(attempt)
                continue
            if matrix and resp.status_code == 200:
                # Not resp.text: without a charset it runs encoding detection over the body.
                try:
                    decoded = decode_matrix(resp.content.decode("utf-8"))
                except UnicodeDecodeError:
                    decoded = None
                if decoded is not None:
                    return decoded
            return self._parse(resp, query)
        raise AssertionError("unreachable")  # pragma: no cover - the loop always returns/raises

    def _backoff(self, attempt: int) -> None:
        delay = self.config.retry_backoff_seconds * (2**attempt)
        if delay > 0:
            self._sleep(delay)

    def _parse(self, resp: requests.Response, query: str | None) -> Any:
        status = resp.status_code
        try:
            body = resp.json()
        except ValueError:
            body = None
        error = error_type = None
        if isinstance(body, dict):
            error, error_type = body.get("error"), body.get("errorType")
            for w in body.get("warnings") or []:
                log.warning(
                    "Prometheus warning for query %s: %s", self._show(query), _one_line(str(w))
                )
        if status == 200 and isinstance(body, dict) and body.get("status") == "success":
            return body.get("data")
        detail = _one_line(str(error)) if error else _one_line(resp.text or resp.reason or "", 200)
        where = f"Prometheus at {self._display_url}"
        if status == 200:
            raise SourceError(f"{where} did not answer with Prometheus API JSON: {detail}")
        label = f"HTTP {status}" + (f" {error_type}" if error_type else "")
        if query is not None and (
            status in _QUERY_REJECTED_STATUSES or (status == 503 and error_type == "timeout")
        ):
            raise QueryError(f"query {self._show(query)} rejected by {where} ({label}): {detail}")
        if status in (401, 403):
            raise SourceError(f"{where} refused the credentials ({label}): {detail}")
        if status == 404:
            raise SourceError(f"{where} answered {label} (not found); is the URL right?")
        raise SourceError(f"{where} failed ({label}): {detail}")


# --------------------------------------------------------------------------- fast matrix decoding


@dataclass(frozen=True)
class DecodedMatrix:
    """A successful range-query answer decoded by :func:`decode_matrix`."""

    series: list[tuple[dict[str, str], np.ndarray, np.ndarray]]


_MATRIX_HEAD = re.compile(
    r'\s*\{\s*"status"\s*:\s*"success"\s*,\s*"data"\s*:\s*\{\s*"resultType"\s*:\s*"matrix"'
    r'\s*,\s*"result"\s*:\s*\['
)
_EMPTY_RESULT = re.compile(r"\s*\]")
_METRIC_KEY = re.compile(r'\s*\{\s*"metric"\s*:\s*')
_VALUES_KEY = re.compile(r'\s*,\s*"values"\s*:\s*\[')
_SERIES_END = re.compile(r"\s*\}\s*(,|\])")
_MATRIX_TAIL = re.compile(r"\s*\}\s*\}\s*$")
_PAIR_PUNCTUATION = str.maketrans({"[": None, "]": None, '"': None})
_JSON = json.JSONDecoder()


def decode_matrix(text: str) -> DecodedMatrix | None:
    """Decode a Prometheus range-query answer without building a Python object per sample.

    ``json.loads`` turns each ``[t, "v"]`` pair into a list, a float and a string: ~220 MB
    and seconds for 500 series x 2,016 points. Here each series' labels are decoded as JSON
    and its ``values`` array is read by numpy in one call. Returns ``None`` for anything
    but the plain layout Prometheus writes (``status`` success, a matrix, series of
    ``metric`` then ``values``, no warnings or native histograms), which the caller then
    decodes with ``json`` and checks as usual.
    """
    head = _MATRIX_HEAD.match(text)
    if head is None:
        return None
    pos = head.end()
    out: list[tuple[dict[str, str], np.ndarray, np.ndarray]] = []
    if (empty := _EMPTY_RESULT.match(text, pos)) is not None:
        pos = empty.end()
    else:
        while True:
            m = _METRIC_KEY.match(text, pos)
            if m is None:
                return None
            try:
                metric, pos = _JSON.raw_decode(text, m.end())
            except ValueError:
                return None
            v = _VALUES_KEY.match(text, pos)
            if not isinstance(metric, dict) or v is None:
                return None
            start = v.end()
            if text.startswith("]", start):  # "values": []
                end, pos = start, start + 1
            else:
                end = text.find("]]", start)  # samples hold only numbers and quoted numbers
                if end < 0:
                    return None
                pos = end + 2
            pairs = _read_pairs(text[start:end])
            if pairs is None:
                return None
            m = _SERIES_END.match(text, pos)
            if m is None:
                return None
            pos = m.end()
            if pairs[0].size:
                out.append(({str(k): str(x) for k, x in metric.items()}, *pairs))
            if m.group(1) == "]":
                break
    if _MATRIX_TAIL.match(text, pos) is None:
        return None
    return DecodedMatrix(out)


def _read_pairs(body: str) -> tuple[np.ndarray, np.ndarray] | None:
    """``[t,"v"],[t,"v"`` (the ``values`` array without its last two brackets) → times and
    values; None if malformed."""
    if not body:
        return np.empty(0), np.empty(0)
    n_pairs = body.count("[")
    flat = body.translate(_PAIR_PUNCTUATION)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # numpy warns, not raises, on trailing junk
            numbers = np.fromstring(flat, sep=",")
    except (ValueError, DeprecationWarning):
        return None
    if numbers.size != 2 * n_pairs:
        return None
    return numbers[0::2].copy(), numbers[1::2].copy()
