"""The nightly DAG ends with the freshness check: a broken SLA is a failed ``freshness`` task.

Real ``dag.test()``, Spark (the session fixture), Delta and redis-server; the task judges at the
wall clock, so the days are dated relative to today: a run for ``today - 3`` leaves the view two
days old (past its 26h SLA), the run for yesterday makes it fresh on both sides.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pytest

from skewless.online.published import read_published
from tests.airflow.common import PAYMENTS, TREE, deploy_with_conf
from tests.helpers import write_parquet

pytestmark = [pytest.mark.airflow, pytest.mark.spark, pytest.mark.redis, pytest.mark.e2e]

TODAY = datetime.now(UTC).date()
OLD, YESTERDAY = TODAY - timedelta(days=3), TODAY - timedelta(days=1)
FRESH_TREE = {"defs.yaml": TREE["defs.yaml"].replace("ttl: 30d\n", "ttl: 30d\n          freshness: 26h\n", 1)}


def _at(day: date, hour: int = 12) -> datetime:
    return datetime.combine(day, time(hour), tzinfo=UTC)


def _run(dag: Any, ds: date) -> tuple[Any, dict[str, str]]:
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    run = dag.test(logical_date=_at(ds + timedelta(days=1), 0))
    with create_session() as session:
        states = {
            ti.task_id: str(ti.state)
            for ti in session.query(TaskInstance).filter(
                TaskInstance.dag_id == dag.dag_id, TaskInstance.run_id == run.run_id
            )
        }
    return run, states


def test_the_freshness_task_fails_on_a_broken_sla_and_passes_once_the_latest_day_is_published(
    tmp_path: Path, redis_url: str, airflow_db: Path, spark: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.dag_processing.dagbag import DagBag

    from tests.airflow.conftest import DAGS

    settings, manifest, conf = deploy_with_conf(tmp_path, redis_url=redis_url, tree=FRESH_TREE)
    assert manifest.view("spend").freshness_seconds == 26 * 3600
    monkeypatch.setenv("SKEWLESS_CONF", str(conf))
    write_parquet(
        Path(settings.data_root) / "payments",
        [
            {"account_id": "a", "amount": 10.0, "ts": _at(OLD)},
            {"account_id": "a", "amount": 4.0, "ts": _at(YESTERDAY)},
        ],
        PAYMENTS,
    )
    bag = DagBag(dag_folder=str(DAGS))
    assert bag.import_errors == {}
    dag = bag.dags["skewless__spend"]

    run, states = _run(dag, OLD)
    assert str(run.state) == "failed"
    assert states == {
        **dict.fromkeys(["compute", "validate", "commit", "materialize", "stats"], "success"),
        "freshness": "failed",
    }
    # materialize recorded what it published: the marker the online side is judged by.
    assert read_published(redis_url, [manifest.view("spend")]) == {"spend": OLD}

    run, states = _run(dag, YESTERDAY)
    assert str(run.state) == "success", states
    assert states["freshness"] == "success"
    assert read_published(redis_url, [manifest.view("spend")]) == {"spend": YESTERDAY}


def test_a_view_read_by_a_service_gets_an_online_drift_task_after_stats(tmp_path: Path) -> None:
    from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator

    from skewless.dag_factory import build_dags
    from skewless.runtime.settings import SparkSettings
    from tests.airflow.conftest import REPO

    service = "        ---\n        service:\n          name: risk\n          features: [spend:total_2d]\n"
    tree = {"defs.yaml": FRESH_TREE["defs.yaml"].rstrip(" ") + service}
    settings, manifest, _ = deploy_with_conf(tmp_path, tree=tree)
    cluster = settings.model_copy(update={"spark": SparkSettings(master="yarn", submit=True)})
    for mode in (settings, cluster):
        dags = build_dags(mode, manifest, jobs_dir=REPO / "jobs")
        spend, scores = dags["skewless__spend"], dags["skewless__scores"]
        assert spend.get_task("stats").downstream_task_ids == {"freshness", "online_drift__risk"}
        assert "online_drift__risk" not in scores.task_ids  # no service reads scores
        drift = spend.get_task("online_drift__risk")
        if mode is cluster:
            assert isinstance(drift, SparkSubmitOperator)
            assert Path(drift.application) == REPO / "jobs" / "online_drift.py"
            assert drift.application_args == ["risk", "--view", "spend"]
