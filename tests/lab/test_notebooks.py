"""The notebooks in notebooks/ run end to end on small generated data, so they never rot.

Each notebook is executed with papermill in a kernel that runs this interpreter (a kernelspec
written to a temporary ``JUPYTER_PATH``, so neither the venv nor the user's Jupyter setup is
touched or consulted), writes its figures and a ``results.json`` to ``output_dir``, and the
tests assert on what it found. The helpers the notebooks import (:mod:`anomaly_lab.plotting`) are
tested here too.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import numpy as np
import pandas as pd
import papermill
import pytest
from anomaly_lab import plotting, synth

from tests.conftest import Servers

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"
KERNEL = "anomaly-notebook-tests"


@pytest.fixture(scope="session")
def kernel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A kernelspec whose kernel is this interpreter, found first on ``JUPYTER_PATH``."""
    jupyter_path = tmp_path_factory.mktemp("jupyter")
    spec_dir = jupyter_path / "kernels" / KERNEL
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "anomaly (tests)",
        "language": "python",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("JUPYTER_PATH", str(jupyter_path))
        mp.setenv("MPLBACKEND", "Agg")
        yield KERNEL


def run_notebook(
    name: str, tmp_path: Path, kernel: str, **parameters: Any
) -> tuple[nbformat.NotebookNode, dict[str, Any]]:
    """Execute ``notebooks/<name>`` with `parameters`; return it and its ``results.json``."""
    out_dir = tmp_path / "out"
    executed = papermill.execute_notebook(
        str(NOTEBOOKS / name),
        str(tmp_path / name),
        parameters={"output_dir": str(out_dir), **parameters},
        kernel_name=kernel,
        cwd=str(NOTEBOOKS),
        progress_bar=False,
        execution_timeout=120,
    )
    return executed, json.loads((out_dir / "results.json").read_text())


def png_outputs(nb: nbformat.NotebookNode) -> int:
    return sum(
        "image/png" in output.get("data", {})
        for cell in nb.cells
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
    )


# --------------------------------------------------------------------------- stored notebooks


@pytest.mark.parametrize("path", sorted(NOTEBOOKS.glob("*.ipynb")), ids=lambda p: p.name)
def test_notebooks_are_stored_clean_with_a_parameters_cell(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code), "clear the outputs"
    tagged = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, "one cell tagged `parameters` (papermill)"
    assert "output_dir" in tagged[0].source


def test_the_three_notebooks_exist() -> None:
    names = {p.name for p in NOTEBOOKS.glob("*.ipynb")}
    assert {"tuning.ipynb", "evaluation.ipynb", "forecasting.ipynb"} <= names


# --------------------------------------------------------------------------- tuning


def test_tuning_on_generated_data_flags_the_injections(tmp_path: Path, kernel: str) -> None:
    nb, results = run_notebook("tuning.ipynb", tmp_path, kernel)
    assert png_outputs(nb) == 2  # bands, sweep
    assert (tmp_path / "out" / "bands.png").stat().st_size > 0
    assert (tmp_path / "out" / "sweep.png").stat().st_size > 0
    assert results["n_series"] == 6 and results["n_windows"] == 5
    # Every injected window is flagged at the shipped threshold, the live level shift included.
    assert all(results["detected"].values())
    assert any(k.startswith("org-02@") for k in results["detected"])
    assert 0.5 <= results["best_threshold"] <= 1.0
    assert results["best_f1"] > 0.6
    sweep = pd.DataFrame(results["sweep"])
    assert sweep["recall"].is_monotonic_decreasing
    assert sweep["flagged"].is_monotonic_decreasing


def test_tuning_reads_a_csv_and_labels(tmp_path: Path, kernel: str) -> None:
    end = 1795305600.0 + 86400 + 15 * 3600
    shift = synth.Injection("org-01", "request_rate", "level_shift", end - 3 * 3600, None, -0.5)
    ds = synth.generate(2, days=8, end=end, seed=11, injections=[shift])
    df = synth.to_frame(ds, "request_rate")
    csv = tmp_path / "request_rate.csv"
    df.rename_axis("timestamp").to_csv(csv)
    labels = tmp_path / "windows.json"
    labels.write_text(
        json.dumps(
            {
                "org-01": [
                    [
                        str(pd.Timestamp(end - 3 * 3600, unit="s")),
                        str(pd.Timestamp(end, unit="s")),
                    ]
                ]
            }
        )
    )
    nb, results = run_notebook(
        "tuning.ipynb",
        tmp_path,
        kernel,
        csv_path=str(csv),
        labels_path=str(labels),
        metric="request_rate",
        tenant="org-01",
    )
    assert png_outputs(nb) == 2
    assert results["source"] == str(csv)
    assert results["n_series"] == 2 and results["n_points"] == len(ds.timestamps)
    assert results["n_windows"] == 1 and results["windows_detected"] == 1


@pytest.mark.e2e
def test_tuning_loads_from_prometheus(tmp_path: Path, kernel: str, servers: Servers) -> None:
    end = 1795305600.0 + 86400 + 15 * 3600
    shift = synth.Injection("org-02", "latency_p95", "level_shift", end - 2 * 3600, None, 0.8)
    ds = synth.generate(3, days=8, end=end, seed=4, injections=[shift])
    labels = tmp_path / "windows.json"
    labels.write_text(json.dumps(plotting.injection_windows(ds, "latency_p95")))
    with servers.stack(dataset=ds, with_alertmanager=False) as stack:
        nb, results = run_notebook(
            "tuning.ipynb",
            tmp_path,
            kernel,
            prometheus_url=stack.prometheus_url,
            end_time=end,
            labels_path=str(labels),
            metric="latency_p95",
        )
    assert png_outputs(nb) == 2
    assert results["source"].startswith(stack.prometheus_url)
    assert results["n_series"] == 3
    assert results["detected"] and all(results["detected"].values())


# --------------------------------------------------------------------------- forecasting


def test_forecasting_counts_down_to_the_budget_breach(tmp_path: Path, kernel: str) -> None:
    nb, results = run_notebook("forecasting.ipynb", tmp_path, kernel)
    assert png_outputs(nb) == 1
    assert (tmp_path / "out" / "forecast.png").stat().st_size > 0
    assert results["tenant"] == "org-03" and results["budget"] == 100.0
    # The drifting tenant is under budget now and breaches it within the day; nobody else does.
    assert results["spend_24h_now"] < 100 < results["forecast"]
    assert results["forecast_lower"] <= results["forecast"] <= results["forecast_upper"]
    assert 0 < results["breach_seconds"] < 86400
    others = {k: v for k, v in results["breach_seconds_by_tenant"].items() if k != "org-03"}
    assert set(others.values()) == {"inf"}


# --------------------------------------------------------------------------- evaluation


def _nab_time(epoch: float) -> str:
    return pd.Timestamp(epoch, unit="s").strftime("%Y-%m-%d %H:%M:%S.%f")


def write_nab_corpus(root: Path) -> Path:
    """A small corpus in NAB's layout: ``data/<category>/<file>.csv`` and
    ``labels/combined_windows.json``; two files with a labelled anomaly and one without.

    4.5 days of 5-minute points up to a Friday 18:00 UTC (no weekend to learn), each anomaly
    about a day before the end, its window from 3 h before to 3 h after it.
    """
    end = 1795305600.0 + 5 * 86400 + 18 * 3600
    h = 3600.0
    shift = synth.Injection("org-01", "latency_p95", "level_shift", end - 30 * h, end - 27 * h, 1.0)
    outage = synth.Injection("org-02", "request_rate", "outage", end - 20 * h, end - 19 * h)
    files = {
        "synthWithAnomaly/latency_shift.csv": ("org-01", "latency_p95", shift),
        "synthWithAnomaly/traffic_outage.csv": ("org-02", "request_rate", outage),
        "synthNoAnomaly/traffic_clean.csv": ("org-03", "request_rate", None),
    }
    ds = synth.generate(3, days=4.5, end=end, seed=21, injections=[shift, outage])
    stamps = pd.to_datetime(ds.timestamps, unit="s").strftime("%Y-%m-%d %H:%M:%S")
    windows: dict[str, list[list[str]]] = {}
    for key, (tenant, metric, inj) in files.items():
        path = root / "data" / key
        path.parent.mkdir(parents=True, exist_ok=True)
        values = ds.get(tenant, metric).values
        pd.DataFrame({"timestamp": stamps, "value": values}).to_csv(path, index=False)
        windows[key] = (
            []
            if inj is None
            else [[_nab_time(inj.start - 3 * h), _nab_time(float(inj.end or end) + 3 * h)]]
        )
    labels = root / "labels" / "combined_windows.json"
    labels.parent.mkdir(parents=True)
    labels.write_text(json.dumps(windows, indent=1))
    return root


def test_evaluation_runs_the_harness_on_a_nab_layout(tmp_path: Path, kernel: str) -> None:
    nab = write_nab_corpus(tmp_path / "nab")
    nb, results = run_notebook("evaluation.ipynb", tmp_path, kernel, nab_dir=str(nab), jobs=1)
    assert png_outputs(nb) == 2  # per-file results, one file's scores
    assert (tmp_path / "out" / "per_file.png").stat().st_size > 0
    assert (tmp_path / "out" / "file.png").stat().st_size > 0
    assert results["n_files"] == 3 and results["windows"] == 2
    assert set(results["per_file"]) == {
        "synthWithAnomaly/latency_shift.csv",
        "synthWithAnomaly/traffic_outage.csv",
        "synthNoAnomaly/traffic_clean.csv",
    }
    assert results["per_file"]["synthNoAnomaly/traffic_clean.csv"]["tuned_nab"] is None
    # Both injected anomalies are caught: by the shipped decision, and at the tuned threshold.
    assert results["shipped_detected"] == 2
    assert results["threshold"] is not None and results["tuned_detected"] == 2
    assert results["tuned_nab"] > 50
    assert results["plot_file"] in results["per_file"]


# --------------------------------------------------------------------------- plotting helpers


def test_threshold_sweep_counts_points_and_windows() -> None:
    score = np.array([[0.1, 0.9], [0.8, 0.2], [0.2, 0.7], [0.6, 0.1]])
    labels = np.array([[0, 1], [1, 1], [1, 0], [0, 1]], dtype=bool)  # three windows
    sweep = plotting.threshold_sweep(score, labels, [0.5, 0.65, 0.85, 0.95]).set_index("threshold")
    assert sweep["flagged"].tolist() == [4, 3, 1, 0]
    np.testing.assert_allclose(sweep["precision"].iloc[:3], [2 / 4, 2 / 3, 1.0])
    assert np.isnan(sweep.loc[0.95, "precision"])
    np.testing.assert_allclose(sweep["recall"], [2 / 3, 2 / 3, 1 / 3, 0.0])
    np.testing.assert_allclose(sweep["point_recall"], [2 / 5, 2 / 5, 1 / 5, 0.0])
    assert plotting.best_f1(sweep.reset_index())["threshold"] == 0.65


def test_a_window_does_not_continue_into_the_next_series() -> None:
    labels = np.array([[0, 1], [1, 0]], dtype=bool)  # column 0 ends labelled, column 1 starts
    sweep = plotting.threshold_sweep(np.array([[0.0, 0.0], [0.9, 0.0]]), labels, [0.5])
    assert sweep["recall"].iloc[0] == 0.5


def test_label_mask_and_window_table_from_injections() -> None:
    end = 1795305600.0
    inj = synth.Injection("org-02", "latency_p95", "spike", end - 3600, end - 3000, 2.0)
    ds = synth.generate(2, days=2, end=end, seed=1, injections=[inj])
    windows = plotting.injection_windows(ds, "latency_p95")
    assert windows == {"org-01": [], "org-02": [(end - 3600, end - 3000)]}
    mask = plotting.label_mask(ds.timestamps, ds.tenants, windows)
    assert mask[:, 0].sum() == 0 and mask[:, 1].sum() == 3  # 600 s at a 300 s step, inclusive
    score = np.where(mask, 0.9, 0.1)
    table = plotting.window_table(ds.timestamps, ds.tenants, windows, score, 0.5)
    assert table[["series", "detected", "delay_seconds"]].values.tolist() == [["org-02", True, 0.0]]


def test_read_series_csv_accepts_iso_and_epoch_times(tmp_path: Path) -> None:
    iso = tmp_path / "iso.csv"
    iso.write_text("timestamp,value\n2014-04-01 00:05:00,2\n2014-04-01 00:00:00,1\n")
    epoch = tmp_path / "epoch.csv"
    epoch.write_text("timestamp,a,b\n1396310400,1,x\n1396310700,2,3\n")
    a, b = plotting.read_series_csv(iso), plotting.read_series_csv(epoch)
    assert a["value"].tolist() == [1, 2] and list(a.index) == list(b.index)
    assert str(a.index.tz) == "UTC" and np.isnan(b.loc[b.index[0], "b"])


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "now"), (59 * 60, "59 min"), (5400, "1 h 30 min"), (np.inf, "not within the horizon")],
)
def test_humanize_seconds(seconds: float, text: str) -> None:
    assert plotting.humanize_seconds(seconds) == text
