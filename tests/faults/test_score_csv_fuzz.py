"""Hypothesis fuzzes the score-csv reader (:func:`anomaly.offline.replay.read_series_csv`): any bytes,
and any rows under a ``timestamp,value`` header, give a table or a DataError (one line, exit 2
from the CLI), never another exception."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from anomaly.errors import DataError
from anomaly.offline.replay import read_series_csv

_cell = (
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)
    | st.sampled_from(["", "NaN", "inf", "-Inf", "1e309", "2026-11-20T14:00:00Z", "1700000000"])
    | st.floats(allow_nan=True, allow_infinity=True).map(repr)
    | st.integers(min_value=-(2**80), max_value=2**80).map(str)
)


def _read(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as d:
        f = Path(d) / "in.csv"
        f.write_bytes(data)
        try:
            table = read_series_csv(f)
        except DataError as e:
            assert str(e)
            return
        assert table.times.shape == table.values.shape
        assert np.all(np.isfinite(table.times))


@settings(max_examples=150, deadline=None, derandomize=True)
@given(data=st.binary(max_size=300))
def test_any_bytes_give_a_table_or_a_data_error(data: bytes) -> None:
    _read(data)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(
    header=st.sampled_from(["timestamp,value", "value,timestamp", "timestamp, value ,extra"]),
    rows=st.lists(st.lists(_cell, min_size=0, max_size=4), max_size=12),
)
def test_any_rows_give_a_table_or_a_data_error(header: str, rows: list[list[str]]) -> None:
    text = header + "\n" + "\n".join(",".join(r) for r in rows) + "\n"
    _read(text.encode("utf-8"))
