"""Prometheus range queries: the API's answers, chunking of long ranges, query errors.

:class:`PrometheusSource` reads from any Prometheus-compatible HTTP API (Prometheus, Thanos,
Mimir, VictoriaMetrics) and returns plain numpy data (:class:`RawSeries`); aligning series onto
one grid is :mod:`anomaly.frame`'s job. Requests go through :class:`anomaly.io.http.Endpoint`
(auth, TLS, timeout, retries, one-line errors naming the URL); range answers are decoded by
:func:`anomaly.io.matrix.decode_matrix` where their layout allows; label values inside a query
are escaped by :mod:`anomaly.io.promql`.

Why not ``PrometheusConnect``'s query methods (prometheus-api-client 0.7.2):

* they raise ``PrometheusApiClientException("HTTP Status Code 400 (b'...')")`` for every
  non-200 answer, so the status code and Prometheus' ``error``/``errorType`` fields are only
  available by parsing a ``repr`` out of a message; we need them to tell a bad query (4xx, not
  retried, :class:`~anomaly.errors.QueryError`) from an unavailable server (5xx, retried,
  then :class:`~anomaly.errors.SourceError`);
* ``custom_query_range`` rounds ``start``/``end`` to whole seconds, which breaks exact chunk
  seams for sub-second steps;
* it mounts a urllib3 ``Retry`` of its own (status retries included) that would multiply with
  our bounded, configurable retries.

An answer to a query that Prometheus gave but that cannot be used (HTTP 200 with an error body,
truncated or malformed JSON, a body that is not JSON or broke off, the wrong shape) is an
:class:`~anomaly.errors.AnswerError` naming the query, the URL and what was wrong: like a
rejected query, it fails that query's metric, not the run. The reachability check
(:meth:`PrometheusSource.check`) has no metric to fail: there it is a
:class:`~anomaly.errors.SourceError`.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import numpy as np
import requests

from anomaly.config import PrometheusConfig
from anomaly.errors import AnswerError, QueryError, SourceError
from anomaly.io.http import Endpoint, answer_text, one_line
from anomaly.io.matrix import DecodedMatrix, decode_matrix

__all__ = ["PrometheusSource", "RawSeries"]

log = logging.getLogger(__name__)

_LABEL_NAME_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
# 4xx answers that say "this query is bad" rather than "this server/URL/credential is bad".
_QUERY_REJECTED_STATUSES = frozenset({400, 422})
_MAX_QUERY_IN_MESSAGE = 200


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
        Injected for tests (e.g. with a mounted fake adapter); configured like the default one
        (see :mod:`anomaly.io.http`).
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
        self._http = Endpoint(config, "Prometheus", SourceError, session=session, sleep=sleep)
        self.url = self._http.url

    def close(self) -> None:
        """Release pooled connections."""
        self._http.close()

    def __enter__(self) -> PrometheusSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"PrometheusSource(url={self._http.display_url!r})"

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
        subject = f"label values of {label}"
        if matches:
            subject += f" for {self._show(' or '.join(matches))}"
        data = self._call(
            f"/api/v1/label/{quote(label, safe='')}/values", params=params or None, subject=subject
        )
        if not isinstance(data, list) or not all(isinstance(v, str) for v in data):
            raise AnswerError(
                f"{subject}: malformed answer from {self._http.where}: expected a list of "
                f"strings, got {_json_kind(data)}"
            )
        return sorted(data)

    def query(self, query: str, time: float) -> list[tuple[dict[str, str], float]]:
        """Evaluate ``query`` at one instant; ``(labels without __name__, value)`` per series.

        Raises :class:`~anomaly.errors.QueryError` if the query is rejected, and
        :class:`~anomaly.errors.AnswerError` if its answer is unusable (not an instant vector).
        """
        form = {
            "query": query,
            "time": _format_number(time),
            "timeout": f"{_format_number(self.config.timeout_seconds)}s",
        }
        subject = f"query {self._show(query)}"
        data = self._call("/api/v1/query", form=form, subject=subject)
        out = []
        for item in self._results(data, "vector", "an instant vector", subject):
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
            self._call("/api/v1/query", params={"query": "1"}, subject=None)
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
        subject = f"query {self._show(query)}"
        data = self._call("/api/v1/query_range", form=form, subject=subject, matrix=True)
        if isinstance(data, DecodedMatrix):
            yield from data.series
            return
        for item in self._results(data, "matrix", "a range vector (matrix)", subject):
            metric = dict(item.get("metric") or {})
            pairs = item.get("values") or []
            if not pairs:
                if item.get("histograms"):
                    log.warning(
                        "%s returned native histograms for %s; skipped (not supported)",
                        subject,
                        metric,
                    )
                continue
            try:
                times = np.fromiter((p[0] for p in pairs), dtype=np.float64, count=len(pairs))
                values = np.array([p[1] for p in pairs], dtype=str).astype(np.float64)
            except (TypeError, ValueError, IndexError) as e:
                raise AnswerError(
                    f"{subject}: malformed samples from {self._http.where}: {one_line(str(e))}"
                ) from None
            yield metric, times, values

    def _results(
        self, data: Any, result_type: str, described: str, subject: str
    ) -> list[dict[str, Any]]:
        """The series (``result``) of a query answer of ``result_type``, each an object whose
        ``metric``, if any, is an object; else AnswerError."""
        where = self._http.where
        if not isinstance(data, dict) or data.get("resultType") != result_type:
            if data is None:
                got = "no data"
            elif not isinstance(data, dict):
                got = f"a JSON {_json_kind(data)} as data"
            else:
                got = repr(data.get("resultType"))
            raise AnswerError(f"{subject} returned {got} from {where}, expected {described}")
        result = data.get("result") or []
        wrong = None
        if not isinstance(result, list):
            wrong = f"`result` is a JSON {_json_kind(result)}, not an array"
        elif bad := [i for i in result if not isinstance(i, dict)]:
            wrong = f"a series is a JSON {_json_kind(bad[0])}, not an object"
        elif bad := [i for i in result if not isinstance(i.get("metric") or {}, dict)]:
            wrong = f"a series' `metric` is a JSON {_json_kind(bad[0]['metric'])}, not an object"
        if wrong is not None:
            raise AnswerError(f"{subject}: malformed {result_type} from {where}: {wrong}")
        return result

    def _show(self, query: str | None) -> str:
        q = one_line(query or "", _MAX_QUERY_IN_MESSAGE)
        return repr(q)

    def _call(
        self,
        path: str,
        *,
        params: Sequence[tuple[str, str]] | Mapping[str, str] | None = None,
        form: Mapping[str, str] | None = None,
        subject: str | None,
        matrix: bool = False,
    ) -> Any:
        """GET ``path`` with ``params``, or POST it ``form``; returns the JSON ``data`` field
        (with ``matrix``, a range query's series decoded straight to arrays where the answer
        allows, see :func:`~anomaly.io.matrix.decode_matrix`).

        ``subject`` (``"query '...'"``) names what was asked in errors; with it, a rejection
        is a :class:`QueryError` and an unusable answer an :class:`AnswerError`. Without it
        (the reachability check) both are :class:`SourceError`."""
        method = "GET" if form is None else "POST"
        try:
            resp = self._http.request(
                method,
                self.url + path,
                params=params,
                data=form,
                broken=AnswerError if subject is not None else None,
            )
        except AnswerError as e:  # the answer broke off on every attempt
            raise AnswerError(f"{subject}: {e}") from None
        if matrix and resp.status_code == 200:
            # Not resp.text: without a charset it runs encoding detection over the body.
            try:
                decoded = decode_matrix(resp.content.decode("utf-8"))
            except UnicodeDecodeError:
                decoded = None
            if decoded is not None:
                return decoded
        return self._parse(resp, subject)

    def _parse(self, resp: requests.Response, subject: str | None) -> Any:
        status = resp.status_code
        bad_json: ValueError | None = None
        try:
            body = json.loads(resp.content)
        except ValueError as e:  # json.JSONDecodeError, UnicodeDecodeError
            body, bad_json = None, e
        error = error_type = None
        if isinstance(body, dict):
            error, error_type = body.get("error"), body.get("errorType")
            warnings = body.get("warnings")
            for w in warnings if isinstance(warnings, list) else []:
                log.warning(
                    "Prometheus warning for %s: %s", subject or "the check", one_line(str(w))
                )
        if status == 200 and isinstance(body, dict) and body.get("status") == "success":
            return body.get("data")
        detail = one_line(str(error)) if error else answer_text(resp, 200)
        where = self._http.where
        if status == 200:
            wrong = _what_is_wrong(resp, body, bad_json)
            if subject is None:
                raise SourceError(
                    f"{where} did not answer with Prometheus API JSON (HTTP 200 with {wrong})"
                )
            raise AnswerError(f"{subject}: {where} answered HTTP 200 with {wrong}")
        label = f"HTTP {status}" + (f" {error_type}" if error_type else "")
        if subject is not None and (
            status in _QUERY_REJECTED_STATUSES or (status == 503 and error_type == "timeout")
        ):
            raise QueryError(f"{subject} rejected by {where} ({label}): {detail}")
        if status in (401, 403):
            raise SourceError(f"{where} refused the credentials ({label}): {detail}")
        if status == 404:
            raise SourceError(f"{where} answered {label} (not found); is the URL right?")
        raise SourceError(f"{where} failed ({label}): {detail}")


# --------------------------------------------------------------------------- malformed answers

_JSON_KINDS = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
# What a JSON text cut short can end with, when its last token is a literal.
_LITERALS = ("true", "false", "null", "NaN", "Infinity", "-Infinity")


def _json_kind(value: Any) -> str:
    """The JSON name of ``value``'s type ("object", "array", "number", ...)."""
    return _JSON_KINDS.get(type(value), "number" if isinstance(value, int | float) else "value")


def _cut_short(e: json.JSONDecodeError) -> bool:
    """Whether a JSON text failed to parse only because it ends too early."""
    rest = e.doc[e.pos :].strip()
    return (
        e.msg.startswith("Unterminated string")
        or not rest
        or any(word.startswith(rest) for word in _LITERALS)
    )


def _what_is_wrong(resp: requests.Response, body: Any, bad_json: ValueError | None) -> str:
    """What is wrong with a 200 answer that is no successful API answer, to follow
    "answered HTTP 200 with ": an error body, truncated or malformed JSON, no JSON at all."""
    if isinstance(body, dict) and body.get("status") == "error":
        kind = f" ({one_line(str(body['errorType']))})" if body.get("errorType") else ""
        message = one_line(str(body.get("error") or "")) or "no message"
        return f"an error body{kind}: {message}"
    if bad_json is None:
        return f"JSON that is not a Prometheus API answer: {answer_text(resp, 200)}"
    if not resp.content.strip():
        return "an empty body"
    if isinstance(bad_json, json.JSONDecodeError) and resp.content.lstrip()[:1] in (b"{", b"["):
        if _cut_short(bad_json):
            return f"truncated JSON ({len(resp.content):,} bytes)"
        return (
            f"malformed JSON ({bad_json.msg} at position {bad_json.pos:,} of {len(bad_json.doc):,})"
        )
    content_type = (resp.headers.get("Content-Type") or "").split(";")[0].strip()
    kind = f"a {content_type} body" if content_type else "a body"
    return f"{kind} that is not JSON: {answer_text(resp, 200)}"
