"""spark-submit entry points: bad arguments fail with one line, before any Spark session starts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_training_set_job_rejects_missing_spine_without_starting_spark(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "jobs/training_set.py", "--out", str(tmp_path / "o"), "--service", "fraud_model_v1"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        "error: give --spine and exactly one of --service or --features (or --rebuild)"
    )
    assert "Traceback" not in done.stderr
    assert "Spark" not in done.stderr  # no session was started for a usage error


def test_a_job_runs_the_skewless_command_line_with_its_global_options_first(tmp_path: Path) -> None:
    """jobs/*.py are the CLI: its parser, usage errors and one error handler (no second copy)."""
    conf = tmp_path / "c.yaml"
    conf.write_text(f"offline_root: {tmp_path / 'offline'}\n")
    done = subprocess.run(
        [sys.executable, "jobs/run_view.py", "--conf", str(conf), "spend", "--ds", "2024-05-02"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1].startswith(f"error: no registry at {tmp_path}")
    bad = subprocess.run(
        [sys.executable, "jobs/view_task.py", "--conf", str(conf), "compile", "spend"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 1
    assert "No such command 'compile'" in bad.stderr
    assert "(see `skewless task --help`)" in bad.stderr
