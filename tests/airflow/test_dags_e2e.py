"""The nightly DAG end to end with ``dag.test()``: real Spark (the session fixture), Delta, Redis.

``dag.test(logical_date=X)`` infers the data interval of a run triggered at ``X``: the last
complete day before it. So the run for ``ds`` is tested at ``ds + 1 day 00:00``, which is also
when the scheduler starts it; the test checks ``data_interval_start == ds``.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pytest

from skewless.manifest import Manifest
from skewless.offline.catalog import table_version
from skewless.offline.delta import delta_tables
from skewless.offline.schemas import view_schema
from skewless.runtime.settings import Settings
from skewless.validate.stats import read_stats, stats_uri
from tests.airflow.common import PAYMENTS, deploy_with_conf
from tests.helpers import write_parquet

pytestmark = [pytest.mark.airflow, pytest.mark.spark, pytest.mark.redis, pytest.mark.e2e]

# Dated relative to today: the ds under test are in the past and within the 30-day ttl of now.
TODAY = datetime.now(UTC).date()
D1, D2, D3 = (TODAY - timedelta(days=n) for n in (4, 3, 2))


def _at(day: date, hour: int = 12) -> datetime:
    return datetime.combine(day, time(hour), tzinfo=UTC)


@pytest.fixture
def deployment(
    tmp_path: Path, redis_url: str, airflow_db: Path, spark: Any, monkeypatch: pytest.MonkeyPatch
) -> tuple[Settings, Manifest, list[str]]:
    """A deployed registry, SKEWLESS_CONF naming it, and a record of the Spark sessions tasks used."""
    import skewless.orchestration as orchestration

    settings, manifest, conf = deploy_with_conf(tmp_path, redis_url=redis_url)
    monkeypatch.setenv("SKEWLESS_CONF", str(conf))
    used: list[str] = []
    original = orchestration.spark_session

    def same_session(settings: Settings, app_name: str) -> Any:
        session = original(settings, app_name)
        assert session is spark, "a DAG task built its own SparkSession"
        used.append(app_name)
        return session

    monkeypatch.setattr(orchestration, "spark_session", same_session)
    return settings.model_copy(update={"redis_url": redis_url}), manifest, used


def _dag(dag_id: str) -> Any:
    from airflow.dag_processing.dagbag import DagBag

    from tests.airflow.conftest import DAGS

    bag = DagBag(dag_folder=str(DAGS))
    assert bag.import_errors == {}
    return bag.dags[dag_id]


def _run(dag: Any, ds: date) -> tuple[Any, dict[str, str]]:
    """Run the DAG for ``ds``; returns the run and its task states."""
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
    assert run.data_interval_start.date() == ds
    return run, states


def _table_rows(spark: Any, settings: Settings, manifest: Manifest) -> list[tuple[Any, ...]]:
    view = manifest.view("spend")
    frame = delta_tables(spark).read(settings.table_uri(view.table), view_schema(view))
    return sorted((r["account_id"], r["ds"], r["n_2d"], r["total_2d"]) for r in frame.collect())


def _online(settings: Settings, manifest: Manifest) -> list[dict[str, Any]]:
    from skewless.online.client import OnlineClient

    with OnlineClient(settings, manifest) as client:
        return client.get_online_features(
            [{"account_id": "a"}, {"account_id": "b"}], features="spend:n_2d,spend:total_2d"
        )


def _redis_dump(url: str) -> dict[bytes, tuple[bytes | None, int]]:
    import redis

    client = redis.Redis.from_url(url)
    try:
        return {key: (client.dump(key), client.pexpiretime(key)) for key in client.scan_iter()}
    finally:
        client.close()


def test_nightly_dag_computes_validates_commits_publishes_and_profiles_consecutive_days(
    spark: Any, deployment: tuple[Settings, Manifest, list[str]]
) -> None:
    settings, manifest, used = deployment
    write_parquet(
        Path(settings.data_root) / "payments",
        [
            {"account_id": "a", "amount": 10.0, "ts": _at(D1)},
            {"account_id": "b", "amount": 7.0, "ts": _at(D1, 23)},
            {"account_id": "a", "amount": 5.0, "ts": _at(D2)},
        ],
        PAYMENTS,
    )
    dag = _dag("skewless__spend")
    for ds in (D1, D2, D3):
        run, states = _run(dag, ds)
        assert str(run.state) == "success", states
        assert states == dict.fromkeys(
            ["compute", "validate", "commit", "materialize", "stats", "freshness"], "success"
        )

    # b drops out of the 2-day window on D3: a tombstone row offline, no value online.
    assert _table_rows(spark, settings, manifest) == [
        ("a", D1, 1, 10.0),
        ("a", D2, 2, 15.0),
        ("a", D3, 1, 5.0),
        ("b", D1, 1, 7.0),
        ("b", D2, 1, 7.0),
        ("b", D3, None, None),
    ]
    assert _online(settings, manifest) == [
        {"account_id": "a", "n_2d": 1, "total_2d": 5.0},
        {"account_id": "b", "n_2d": None, "total_2d": None},
    ]

    stats = {
        (r["ds"], r["feature"]): r
        for r in read_stats(spark, settings, manifest.view("spend"), D1, D3).collect()
    }
    assert sorted(stats) == [(d, f) for d in (D1, D2, D3) for f in ("n_2d", "total_2d")]
    last = stats[(D3, "total_2d")]
    assert (last["rows"], last["tombstones"], last["non_null"], last["null_rate"]) == (2, 1, 1, 0.5)
    assert (last["mean"], last["min"], last["max"], last["p50"]) == (5.0, 5.0, 5.0, 5.0)
    assert stats[(D1, "n_2d")]["drift_status"] == "no_reference"
    assert stats[(D3, "n_2d")]["reference_days"] == 2
    assert stats[(D3, "n_2d")]["psi"] is not None

    reports = sorted((Path(settings.offline_root) / "_reports" / "validation" / "spend").glob("*.json"))
    assert [p.name[:21] for p in reports] == [f"{d}_{d}" for d in (D1, D2, D3)]
    assert all(json.loads(p.read_text())["success"] for p in reports)
    # Every task ran in this process on the test session (5 tasks x 3 days).
    assert len(used) == 15

    # A rerun of a day is idempotent: same rows, one more table version.
    version = table_version(settings.table_uri(manifest.view("spend").table))
    run, _ = _run(dag, D2)
    assert str(run.state) == "success"
    assert table_version(settings.table_uri(manifest.view("spend").table)) == (version or 0) + 1
    assert len(_table_rows(spark, settings, manifest)) == 6


def test_a_partition_failing_validation_fails_the_run_at_validate_and_publishes_nothing(
    spark: Any, deployment: tuple[Settings, Manifest, list[str]]
) -> None:
    settings, manifest, _ = deployment
    raw = Path(settings.data_root) / "payments"
    write_parquet(raw, [{"account_id": "a", "amount": 10.0, "ts": _at(D1)}], PAYMENTS)
    dag = _dag("skewless__spend")
    run, _ = _run(dag, D1)
    assert str(run.state) == "success"

    view = manifest.view("spend")
    table, tiles = settings.table_uri(view.table), settings.table_uri(view.tiles_table or "")
    versions = (table_version(table), table_version(tiles))
    rows = _table_rows(spark, settings, manifest)
    online = _redis_dump(settings.redis_url)
    assert online  # a's value of D1 is published

    # total_2d on D2 is 10 + 5000, outside the declared between: [0, 1000].
    write_parquet(
        raw,
        [
            {"account_id": "a", "amount": 10.0, "ts": _at(D1)},
            {"account_id": "a", "amount": 5000.0, "ts": _at(D2)},
        ],
        PAYMENTS,
    )
    run, states = _run(dag, D2)
    assert str(run.state) == "failed"
    assert states == {
        "compute": "success",
        "validate": "failed",
        "commit": "upstream_failed",
        "materialize": "upstream_failed",
        "stats": "upstream_failed",
        "freshness": "upstream_failed",
    }
    assert (table_version(table), table_version(tiles)) == versions
    assert _table_rows(spark, settings, manifest) == rows
    assert _redis_dump(settings.redis_url) == online
    assert not any((Path(table) / "_staging").iterdir())  # the staged rows were discarded

    (report,) = (Path(settings.offline_root) / "_reports" / "validation" / "spend").glob(f"{D2}_{D2}-*.json")
    body = json.loads(report.read_text())
    assert body["success"] is False
    (failed,) = [c for c in body["checks"] if not c["success"]]
    assert failed["name"] == "between(total_2d, 0..1000)"
    assert failed["observed"] == "1 of 1 values outside the range, e.g. 5010.0"


def test_backfill_dag_runs_a_range_in_one_job_then_publishes_it(
    spark: Any, deployment: tuple[Settings, Manifest, list[str]]
) -> None:
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    settings, manifest, used = deployment
    write_parquet(
        Path(settings.data_root) / "payments",
        [
            {"account_id": "a", "amount": 10.0, "ts": _at(D1)},
            {"account_id": "b", "amount": 7.0, "ts": _at(D1, 23)},
            {"account_id": "a", "amount": 5.0, "ts": _at(D2)},
        ],
        PAYMENTS,
    )
    dag = _dag("skewless__backfill")
    run = dag.test(run_conf={"view": "spend", "start": str(D1), "end": str(D3)})
    with create_session() as session:
        states = {
            ti.task_id: str(ti.state)
            for ti in session.query(TaskInstance).filter(
                TaskInstance.dag_id == dag.dag_id, TaskInstance.run_id == run.run_id
            )
        }
    assert states == {"backfill": "success", "materialize": "success", "stats": "success"}
    assert used == ["skewless-backfill-spend", "skewless-materialize-spend", "skewless-stats-spend"]
    # Created (version 0), then one commit for the whole range; the rows of three nightly runs.
    assert table_version(settings.table_uri(manifest.view("spend").table)) == 1
    assert [r[:2] for r in _table_rows(spark, settings, manifest)] == [
        ("a", D1), ("a", D2), ("a", D3), ("b", D1), ("b", D2), ("b", D3)
    ]  # fmt: skip
    assert _online(settings, manifest)[0] == {"account_id": "a", "n_2d": 1, "total_2d": 5.0}
    stats = read_stats(spark, settings, manifest.view("spend"), D1, D3).collect()
    assert len(stats) == 6
    assert table_version(stats_uri(settings, manifest.view("spend"))) == 1  # recorded once, by `stats`
    (report,) = (Path(settings.offline_root) / "_reports" / "validation" / "spend").glob("*.json")
    assert report.name.startswith(f"{D1}_{D3}-")


def test_a_nightly_run_that_repairs_late_data_publishes_the_repaired_days(
    spark: Any, tmp_path: Path, redis_url: str, airflow_db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """late_data_days: the run for D3 repairs a corrected D1 and puts the corrected value online.

    Account c's latest snapshot is on D1, so only a rematerialized D1 can fix what Redis serves.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from tests.airflow.common import TREE

    # A ttl long enough that Redis (on its own clock) still holds D1's value today.
    tree = {"defs.yaml": TREE["defs.yaml"].replace("ttl: 1d", "ttl: 30d")}
    settings, manifest, conf = deploy_with_conf(
        tmp_path, redis_url=redis_url, extra="late_data:\n  days: 3\n", tree=tree
    )
    monkeypatch.setenv("SKEWLESS_CONF", str(conf))
    settings = settings.model_copy(update={"redis_url": redis_url})
    scores = Path(settings.data_root) / "scores"
    scores.mkdir(parents=True)

    def write_day(day: date, rows: list[tuple[str, float]]) -> None:
        schema = pa.schema(
            [("account_id", pa.string()), ("score", pa.float64()), ("ts", pa.timestamp("us", tz="UTC"))]
        )
        table = pa.Table.from_pylist(
            [{"account_id": a, "score": s, "ts": _at(day, 6)} for a, s in rows], schema=schema
        )
        pq.write_table(table, scores / f"{day}.parquet")

    write_day(D1, [("c", 0.25)])
    write_day(D2, [("d", 0.5)])
    write_day(D3, [("d", 0.75)])
    dag = _dag("skewless__scores")
    for ds in (D1, D2):
        run, states = _run(dag, ds)
        assert str(run.state) == "success", states

    def online() -> list[dict[str, Any]]:
        from skewless.online.client import OnlineClient

        with OnlineClient(settings, manifest) as client:
            return client.get_online_features([{"account_id": "c"}], features="scores:score", now=_at(D1, 12))

    def profiled_at(day: date) -> set[int]:
        """Table versions the statistics of ``day`` were computed from."""
        view = manifest.view("scores")
        return {r["table_version"] for r in read_stats(spark, settings, view, day, day).collect()}

    assert online() == [{"account_id": "c", "score": 0.25}]
    write_day(D1, [("c", 0.125)])  # a corrected file for an already committed day
    run, states = _run(dag, D3)
    assert str(run.state) == "success", states
    assert online() == [{"account_id": "c", "score": 0.125}]
    # stats took the committed range too: D1's statistics describe the repaired table.
    uri = settings.table_uri(manifest.view("scores").table)
    assert profiled_at(D1) == {table_version(uri)}


def _xcom(dag_id: str, run_id: str, task_id: str) -> Any:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = (
            session.query(XComModel)
            .filter_by(dag_id=dag_id, run_id=run_id, task_id=task_id, key="return_value")
            .one()
        )
        return row.value if isinstance(row.value, dict) else json.loads(row.value)


def test_a_backfill_that_repairs_changed_input_publishes_and_profiles_the_range_it_committed(
    spark: Any, deployment: tuple[Settings, Manifest, list[str]]
) -> None:
    """The backfill DAG asked for D3 re-reads D2's corrected file (inside D3's 2-day window) and
    commits D2..D3; materialize and stats take that range from its XCom, not the params."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    settings, manifest, _ = deployment
    folder = Path(settings.data_root) / "payments"
    folder.mkdir(parents=True)

    def write_day(day: date, amount: float) -> None:
        rows = [{"account_id": "a", "amount": amount, "ts": _at(day)}]
        pq.write_table(pa.Table.from_pylist(rows, schema=PAYMENTS), folder / f"{day}.parquet")

    for day, amount in ((D1, 10.0), (D2, 5.0), (D3, 1.0)):
        write_day(day, amount)
    dag = _dag("skewless__backfill")
    assert str(dag.test(run_conf={"view": "spend", "start": str(D1), "end": str(D3)}).state) == "success"
    write_day(D2, 7.0)  # a corrected file for a committed day

    run = dag.test(run_conf={"view": "spend", "start": str(D3), "end": str(D3)})
    assert str(run.state) == "success"
    committed = _xcom(dag.dag_id, run.run_id, "backfill")
    assert (committed["start"], committed["end"], committed["requested"]) == (str(D2), str(D3), [str(D3)] * 2)
    published = _xcom(dag.dag_id, run.run_id, "materialize")
    profiled = _xcom(dag.dag_id, run.run_id, "stats")
    assert (published["start"], published["end"]) == (str(D2), str(D3))
    assert (profiled["start"], profiled["end"]) == (str(D2), str(D3))
    assert _online(settings, manifest)[0] == {"account_id": "a", "n_2d": 2, "total_2d": 8.0}
