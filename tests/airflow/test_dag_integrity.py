"""DAG integrity: the DAG folder imports cleanly and fast, and builds the expected DAGs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from skewless.runtime.settings import SparkSettings
from tests.airflow.common import START_DATE, deploy_with_conf
from tests.airflow.conftest import DAGS, REPO

pytestmark = pytest.mark.airflow

NIGHTLY = ["compute", "validate", "commit", "materialize", "stats", "freshness"]


def _bag(conf: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.setenv("SKEWLESS_CONF", str(conf))
    return DagBag(dag_folder=str(DAGS))


def _chain(dag: Any) -> list[tuple[str, list[str]]]:
    return [(t.task_id, sorted(t.downstream_task_ids)) for t in sorted(dag.tasks, key=lambda t: t.task_id)]


def test_dag_folder_builds_one_nightly_dag_per_view_and_a_backfill_dag(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.sdk import CronDataIntervalTimetable

    _, manifest, conf = deploy_with_conf(tmp_path)
    bag = _bag(conf, monkeypatch)
    assert bag.import_errors == {}
    assert sorted(bag.dags) == ["skewless__backfill", "skewless__scores", "skewless__spend"]
    for view in manifest.views:
        dag = bag.dags[f"skewless__{view}"]
        assert sorted(dag.task_ids) == sorted(NIGHTLY)
        downstream = dict(_chain(dag))
        for upstream, task_id in pairwise(NIGHTLY):
            assert downstream[upstream] == [task_id]
            assert dag.get_task(task_id).upstream_task_ids == {upstream}
        assert isinstance(dag.timetable, CronDataIntervalTimetable)
        assert dag.timetable.expression == "0 0 * * *"  # @daily, data intervals [ds, ds+1) in UTC
        assert str(dag.timetable.timezone) == "UTC"
        assert dag.catchup is True
        assert dag.max_active_runs == 1
        assert dag.start_date == datetime(START_DATE.year, START_DATE.month, START_DATE.day, tzinfo=UTC)
        assert set(dag.tags) == {"skewless", f"view:{view}"}

    backfill = bag.dags["skewless__backfill"]
    assert type(backfill.timetable).__name__ == "NullTimetable"  # manual trigger only
    # stats also reads the range the backfill committed (its XCom), after materialize.
    assert _chain(backfill) == [
        ("backfill", ["materialize", "stats"]),
        ("materialize", ["stats"]),
        ("stats", []),
    ]
    params = backfill.params
    assert sorted(params.keys()) == ["end", "start", "view"]
    assert params.get_param("view").schema["enum"] == ["scores", "spend"]


def test_no_registry_deployed_means_no_dags_and_no_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conf = tmp_path / "skewless.yaml"
    conf.write_text(f"offline_root: {tmp_path / 'nothing-here'}\n")
    bag = _bag(conf, monkeypatch)
    assert bag.import_errors == {}
    assert bag.dags == {}


def test_a_broken_config_is_an_import_error_naming_the_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conf = tmp_path / "skewless.yaml"
    conf.write_text("offline_root: /tmp/x\nvalidation:\n  drift_psi_warn: lots\n")
    bag = _bag(conf, monkeypatch)
    assert bag.dags == {}
    (error,) = bag.import_errors.values()
    assert "validation.drift_psi_warn" in error


def test_dag_file_imports_in_under_two_seconds_without_spark_or_great_expectations(tmp_path: Path) -> None:
    _, _, conf = deploy_with_conf(tmp_path)
    # The DAG processor has airflow imported already; time what the DAG file adds on top of it.
    script = f"""
import json, runpy, sys, time
start = time.perf_counter()
import airflow.sdk
airflow_s = time.perf_counter() - start
start = time.perf_counter()
namespace = runpy.run_path({str(DAGS / "skewless_dags.py")!r})
file_s = time.perf_counter() - start
dags = sorted(k for k, v in namespace.items() if type(v).__name__ == "DAG")
heavy = sorted(m for m in ("pyspark", "great_expectations") if m in sys.modules)
print(json.dumps({{"airflow_s": airflow_s, "file_s": file_s, "dags": dags, "heavy": heavy}}))
"""
    env = {**os.environ, "SKEWLESS_CONF": str(conf)}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300, cwd=REPO
    )
    assert done.returncode == 0, done.stderr[-3000:]
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"DAG file import: {measured['file_s']:.3f} s (airflow.sdk itself: {measured['airflow_s']:.2f} s)")
    assert measured["dags"] == ["skewless__backfill", "skewless__scores", "skewless__spend"]
    assert measured["heavy"] == []
    assert measured["file_s"] < 2.0


def test_spark_submit_mode_builds_the_same_graph_with_spark_submit_operators(tmp_path: Path) -> None:
    from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator

    from skewless.dag_factory import build_dags

    settings, manifest, _ = deploy_with_conf(tmp_path)
    cluster = settings.model_copy(
        update={"spark": SparkSettings(master="yarn", submit=True, conf={"a": "b"})}
    )
    dags = build_dags(cluster, manifest, jobs_dir=REPO / "jobs")
    nightly = dags["skewless__spend"]
    assert sorted(nightly.task_ids) == sorted(NIGHTLY)
    # The freshness check needs no Spark: a plain Python task after stats (docs/airflow.md).
    assert not isinstance(nightly.get_task("freshness"), SparkSubmitOperator)
    assert nightly.get_task("freshness").upstream_task_ids == {"stats"}
    for task_id in NIGHTLY[:-1]:
        operator = nightly.get_task(task_id)
        assert isinstance(operator, SparkSubmitOperator)
        assert Path(operator.application) == REPO / "jobs" / "view_task.py"
        assert Path(operator.application).is_file()
        args = operator.application_args
        # `skewless task STEP VIEW --start DS --end DS` (jobs/view_task.py runs `skewless task`).
        assert args[:3] == [task_id, "spend", "--start"]
        assert "{{ data_interval_start" in args[3]
        assert operator.name == f"skewless-spend-{task_id}"
    assert _chain(nightly)[0] == ("commit", ["materialize"])
    backfill = dags["skewless__backfill"]
    run = backfill.get_task("backfill")
    assert isinstance(run, SparkSubmitOperator)
    assert Path(run.application) == REPO / "jobs" / "backfill_view.py"
    assert run.application_args[:2] == ["{{ params.view }}", "--start"]
    assert "--no-stats" in run.application_args
    assert "--handoff" in run.application_args  # materialize and stats read the committed range
    for task_id in ("materialize", "stats"):
        step = backfill.get_task(task_id)
        assert isinstance(step, SparkSubmitOperator)
        assert step.application_args[:2] == [task_id, "{{ params.view }}"]
