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
