"""Decoding a Prometheus range-query answer (a matrix) straight to numpy arrays.

:func:`decode_matrix` reads the plain layout Prometheus writes without building a Python
object per sample; anything else is left to ``json`` and the checks of
:class:`~anomaly.io.prometheus.PrometheusSource`.
"""

from __future__ import annotations

import json
import re
import warnings
from dataclasses import dataclass

import numpy as np

__all__ = ["DecodedMatrix", "decode_matrix"]


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
