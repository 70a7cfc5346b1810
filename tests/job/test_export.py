"""The table of pushed series is the one truth: the README shows exactly it, and a real run
pushes every row of it and nothing else."""

from __future__ import annotations

from pathlib import Path

import requests

from anomaly.config import load_config
from anomaly.job import export
from anomaly.job.run import run_once
from tests.conftest import write_config
from tests.job.conftest import World

ROOT = Path(__file__).resolve().parents[2]
#: What the Pushgateway adds to every group of its own accord.
PUSHGATEWAY_OWN = {
    "labels",
    "last_push_successful",
    "push_time_seconds",
    "push_failure_time_seconds",
}


def test_the_readme_lists_exactly_the_table() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Series pushed to the Pushgateway\n", 1)[1].split("\n## ", 1)[0]
    table = "\n".join(line for line in section.splitlines() if line.startswith("|"))
    assert table == export.markdown_table(), (
        "README.md's series table differs from anomaly/job/export.py's SERIES; paste "
        "`python -c 'from anomaly.job import export; print(export.markdown_table())'`"
    )


def test_a_real_run_pushes_every_row_of_the_table_and_nothing_else(
    world: World, tmp_path: Path
) -> None:
    job = "export_table"
    config = load_config(
        write_config(
            tmp_path / "config.yaml",
            world.stack,
            pushgateway={"url": world.stack.pushgateway_url, "job": job},
        )
    )
    report = run_once(config, now=world.dataset.end)
    assert report.series_scored == 4 * 6 and not report.metrics_failed
    data = requests.get(f"{world.stack.pushgateway_url}/api/v1/metrics", timeout=10).json()["data"]
    pushed = {
        name
        for group in data
        if group["labels"].get("job") == job
        for name in group
        if name not in PUSHGATEWAY_OWN
    }
    assert pushed == {s.name for s in export.SERIES}
