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
"""

from __future__ import annotations

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
from anomaly.errors import QueryError, SourceError
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
        data = self._call(
            f"/api/v1/label/{quote(label, safe='')}/values",
            params=params or None,
            query=" or ".join(matches) or None,
        )
        if not isinstance(data, list) or not all(isinstance(v, str) for v in data):
            raise SourceError(f"unexpected label values answer from {self._http.where}")
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
        data = self._call("/api/v1/query", form=form, query=query)
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
            self._call("/api/v1/query", params={"query": "1"}, query=None)
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
        data = self._call("/api/v1/query_range", form=form, query=query, matrix=True)
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
                    f"query {self._show(query)}: malformed samples from {self._http.where}: "
                    f"{one_line(str(e))}"
                ) from None
            yield metric, times, values

    def _results(self, data: Any, result_type: str, described: str, query: str) -> list[Any]:
        """The ``result`` list of a query answer of ``result_type``; else QueryError."""
        if not isinstance(data, dict) or data.get("resultType") != result_type:
            kind = data.get("resultType") if isinstance(data, dict) else type(data).__name__
            raise QueryError(
                f"query {self._show(query)} returned {kind!r} from {self._http.where}, "
                f"expected {described}"
            )
        return list(data.get("result") or [])

    def _show(self, query: str | None) -> str:
        q = one_line(query or "", _MAX_QUERY_IN_MESSAGE)
        return repr(q)

    def _call(
        self,
        path: str,
        *,
        params: Sequence[tuple[str, str]] | Mapping[str, str] | None = None,
        form: Mapping[str, str] | None = None,
        query: str | None,
        matrix: bool = False,
    ) -> Any:
        """GET ``path`` with ``params``, or POST it ``form``; returns the JSON ``data`` field
        (with ``matrix``, a range query's series decoded straight to arrays where the answer
        allows, see :func:`~anomaly.io.matrix.decode_matrix`)."""
        method = "GET" if form is None else "POST"
        resp = self._http.request(method, self.url + path, params=params, data=form)
        if matrix and resp.status_code == 200:
            # Not resp.text: without a charset it runs encoding detection over the body.
            try:
                decoded = decode_matrix(resp.content.decode("utf-8"))
            except UnicodeDecodeError:
                decoded = None
            if decoded is not None:
                return decoded
        return self._parse(resp, query)

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
                    "Prometheus warning for query %s: %s", self._show(query), one_line(str(w))
                )
        if status == 200 and isinstance(body, dict) and body.get("status") == "success":
            return body.get("data")
        detail = one_line(str(error)) if error else answer_text(resp, 200)
        where = self._http.where
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
