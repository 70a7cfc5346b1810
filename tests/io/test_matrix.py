"""Tests for anomaly.io.matrix: the fast range-answer decoder agrees with ``json`` and leaves
anything unusual to it."""

from __future__ import annotations

import json

import numpy as np
import pytest
from anomaly_lab import synth
from hypothesis import given
from hypothesis import strategies as st

from anomaly.io.matrix import decode_matrix

_LABEL_TEXT = st.lists(
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=3)
    | st.sampled_from(['"', "\\", "]]", "[", '"values":[[1,"2"]]}', "\n"]),
    max_size=5,
).map("".join)
_SAMPLE = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from([0.0, -0.0, 1e300])


_prom_value = synth.format_value  # how Prometheus writes a sample value


def _slow_path(text: str) -> list[tuple[dict[str, str], list[float], list[float]]]:
    out = []
    for item in json.loads(text)["data"]["result"]:
        pairs = item["values"]
        if pairs:
            out.append((item["metric"], [float(p[0]) for p in pairs], [float(p[1]) for p in pairs]))
    return out


@given(
    st.lists(
        st.tuples(
            st.dictionaries(st.sampled_from(["organization_id", "values", "a_b"]), _LABEL_TEXT),
            st.lists(st.tuples(st.integers(0, 2**33), _SAMPLE), max_size=6),
        ),
        max_size=4,
    ),
    st.sampled_from(["", " ", "\n  "]),
)
def test_decode_matrix_equals_json_decoding(
    series: list[tuple[dict[str, str], list[tuple[int, float]]]], space: str
) -> None:
    result = [
        {"metric": labels, "values": [[t / 2, _prom_value(v)] for t, v in samples]}
        for labels, samples in series
    ]
    doc = {"status": "success", "data": {"resultType": "matrix", "result": result}}
    separators = ("," + space, ":" + space)
    text = json.dumps(doc, separators=separators, ensure_ascii=bool(space))
    decoded = decode_matrix(text)
    assert decoded is not None
    want = _slow_path(text)
    assert len(decoded.series) == len(want)
    for (labels, times, values), (w_labels, w_times, w_values) in zip(
        decoded.series, want, strict=True
    ):
        assert labels == w_labels
        assert times.tolist() == w_times
        np.testing.assert_array_equal(values, np.array(w_values))  # NaN == NaN here


@pytest.mark.parametrize(
    "text",
    [
        '{"status":"success","data":{"resultType":"vector","result":[]}}',
        '{"status":"error","errorType":"bad_data","error":"x"}',
        '{"status":"success","data":{"resultType":"matrix","result":[]},"warnings":["w"]}',
        '{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},'
        '"histograms":[[1,{"count":"1"}]]}]}}',
        '{"status":"success","data":{"resultType":"matrix","result":[{"values":[[1,"1"]],'
        '"metric":{}}]}}',
        '{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},'
        '"values":[[1,"x"]]}]}}',
        '{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},'
        '"values":[[1,"1",2]]}]}}',
        '{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},'
        '"values":[[1,"1"]]}',
    ],
    ids=["vector", "error", "warnings", "histograms", "key-order", "junk", "triple", "cut"],
)
def test_decode_matrix_leaves_anything_unusual_to_json(text: str) -> None:
    assert decode_matrix(text) is None


def test_decode_matrix_of_an_empty_result() -> None:
    text = '{"status":"success","data":{"resultType":"matrix","result":[]}}'
    decoded = decode_matrix(text)
    assert decoded is not None and decoded.series == []
