"""Frames: alignment on one grid, tenant keys, skipped series."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from anomaly.errors import DataError
from anomaly.frame import SeriesKey, build_frame, frame_from_dataframe, time_grid


def test_time_grid_is_aligned_and_inclusive() -> None:
    g = time_grid(1001.0, 2000.0, 100.0)
    assert g[0] == 1100.0 and g[-1] == 2000.0
    assert np.all(np.diff(g) == 100.0)


def test_build_frame_aligns_gaps_and_sorts_by_tenant() -> None:
    grid = time_grid(0, 900, 300)
    series = [
        (
            {"organization_id": "b", "__name__": "x"},
            np.array([0.0, 600.0]),
            np.array([1.0, np.inf]),
        ),
        ({"organization_id": "a"}, np.array([300.0, 900.0]), np.array([2.0, 3.0])),
        ({"instance": "no-tenant"}, np.array([0.0]), np.array([1.0])),
        ({"organization_id": "a"}, np.array([0.0]), np.array([9.0])),
    ]
    f = build_frame("m", series, grid, "organization_id")
    assert [k.tenant for k in f.keys] == ["a", "b"]
    np.testing.assert_array_equal(f.values[:, 0], [np.nan, 2.0, np.nan, 3.0])
    np.testing.assert_array_equal(f.values[:, 1], [1.0, np.nan, np.nan, np.nan])  # +Inf → gap
    reasons = sorted(s.reason for s in f.skipped)
    assert reasons == ["duplicate label set", "no 'organization_id' label"]
    assert all("__name__" not in dict(k.labels) for k in f.keys)


def test_last_rows_is_what_a_read_of_the_shorter_window_returns() -> None:
    """The newest rows of a longer read: the same grid and values, without the series that
    have no value in them (a read of that window would not return them)."""
    series = [
        ({"organization_id": "a"}, np.array([0.0, 900.0]), np.array([1.0, 2.0])),
        ({"organization_id": "b"}, np.array([0.0, 300.0]), np.array([3.0, 4.0])),  # old only
        ({"organization_id": "c"}, np.array([600.0]), np.array([5.0])),
    ]
    long = build_frame("m", series, time_grid(0, 900, 300), "organization_id")
    short = build_frame("m", series, time_grid(600, 900, 300), "organization_id")
    tail = long.last_rows(2)
    np.testing.assert_array_equal(tail.times, short.times)
    assert tail.keys == tuple(k for k in short.keys if k.tenant != "b")
    np.testing.assert_array_equal(tail.values, short.values[:, [0, 2]])


def test_series_key_keeps_all_labels() -> None:
    k = SeriesKey.from_labels({"organization_id": "o", "service": "api"}, "organization_id")
    assert k.tenant == "o" and k.label_dict == {"organization_id": "o", "service": "api"}


def test_frame_from_dataframe_infers_step() -> None:
    idx = pd.date_range("2026-01-01", periods=10, freq="5min", tz="UTC")
    df = pd.DataFrame({"org-1": np.arange(10.0), "org-2": np.arange(10.0) * 2}, index=idx)
    f = frame_from_dataframe(df, "m")
    assert f.step_seconds == 300 and f.values.shape == (10, 2)
    assert f.times[0] == idx[0].timestamp()
    back = f.to_dataframe()
    assert list(back.columns) == ["org-1", "org-2"]
    np.testing.assert_array_equal(back["org-2"].to_numpy(), np.arange(10.0) * 2)


def test_frame_from_empty_dataframe_is_a_data_error() -> None:
    with pytest.raises(DataError):
        frame_from_dataframe(pd.DataFrame(), "m")
