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


def test_a_job_turns_any_failure_into_one_line_and_exit_1(capsys: object) -> None:
    """Not only SkewlessError: an unexpected exception is one line too (the traceback needs --debug)."""
    import argparse

    import pytest

    from skewless.jobs_cli import job_parser, run_job

    def body(args: argparse.Namespace, settings: object) -> str:
        raise ValueError("embedded null byte\nsecond line")

    assert run_job(job_parser("test"), body, []) == 1
    err = capsys.readouterr().err  # type: ignore[attr-defined]
    assert err == "error: unexpected ValueError: embedded null byte (rerun with --debug for the traceback)\n"
    with pytest.raises(ValueError, match="embedded null byte"):
        run_job(job_parser("test"), body, ["--debug"])
