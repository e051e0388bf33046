"""The jobs on a real Spark standalone cluster give what local mode gives.

``backfill``, ``run``, ``training-set`` (CLI and ``spark-submit jobs/training_set.py``),
``materialize`` (executors write to Redis) and a nightly DAG run through ``SparkSubmitOperator``
run with ``spark.master=spark://127.0.0.1:PORT`` against the session cluster (conftest.py): the
executors are separate JVMs whose Python has skewless only from the shipped ``skewless.zip``.
Local mode (the test session's ``local[2]`` session, in this process) is the oracle.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from skewless.cli import main
from skewless.devstack.local_redis import LocalRedis
from skewless.manifest import Manifest
from skewless.offline.delta import delta_tables
from skewless.offline.schemas import view_schema
from skewless.online.encoding import LAYOUT_KEY_PREFIX, decode
from skewless.runtime.settings import Settings, load_settings
from tests.cluster.conftest import REPO, VENV_BIN, Cluster, spark_env
from tests.helpers import deploy, write_parquet

pytestmark = [pytest.mark.cluster, pytest.mark.spark, pytest.mark.redis]

TREE = {
    "defs.yaml": """
        entity:
          name: account
          join_keys: {account_id: string}
        ---
        source:
          name: payments
          path: payments
          format: parquet
          timestamp: ts
        ---
        view:
          name: spend
          version: 1
          kind: aggregation
          entity: account
          source: payments
          ttl: 30d
          features:
            - {name: n_2d, function: count, window: 2d}
            - {name: total_2d, function: sum, column: amount, window: 2d, dtype: float64}
            - {name: max_7d, function: max, column: amount, window: 7d, dtype: float64}
          expectations:
            - {feature: n_2d, not_null: true}
    """,
}
PAYMENTS = pa.schema(
    [("account_id", pa.string()), ("amount", pa.float64()), ("ts", pa.timestamp("us", tz="UTC"))]
)
FEATURES = "spend:n_2d,spend:total_2d,spend:max_7d"
# Relative to today: Redis expires keys on its own clock (ttl 30d).
TODAY = datetime.now(UTC).date()
D1, D2, D3, D4 = (TODAY - timedelta(days=n) for n in (5, 4, 3, 2))


def _at(day: date, hour: int) -> datetime:
    return datetime.combine(day, time(hour), tzinfo=UTC)


@dataclass
class Deployment:
    """One raw dataset and registry; an offline root and Redis database per mode."""

    tmp: Path
    settings: Settings
    manifest: Manifest
    redis: LocalRedis
    spine: Path

    def conf(self, name: str, db: int, master: str = "local[2]", conf: dict[str, str] | None = None) -> Path:
        offline = self.tmp / name
        if not offline.exists():  # the same registry in every offline root
            (offline / "_registry").mkdir(parents=True)
            registry = Path(self.settings.registry_uri)
            (offline / "_registry" / "registry.json").write_bytes(registry.read_bytes())
        lines = [
            f"defs: {self.settings.defs}",
            f"data_root: {self.settings.data_root}",
            f"offline_root: {offline}",
            f"redis_url: redis://127.0.0.1:{self.redis.port}/{db}",
            "spark:",
            f"  master: '{master}'",
            f"  conf: {json.dumps(conf or {})}",  # a JSON object is a YAML flow mapping
        ]
        path = self.tmp / f"{name}.yaml"
        path.write_text("\n".join(lines) + "\n")
        return path


def cluster_conf(cluster: Cluster, pyfiles: Path | None) -> dict[str, str]:
    conf = {
        "spark.executor.memory": "512m",
        "spark.executor.cores": "1",
        "spark.cores.max": "2",
        "spark.driver.memory": "1g",
        "spark.sql.shuffle.partitions": "4",
        "spark.executor.extraJavaOptions": "-Duser.timezone=UTC -XX:TieredStopAtLevel=1",
        "spark.driver.extraJavaOptions": "-Duser.timezone=UTC -XX:TieredStopAtLevel=1",
    }
    if pyfiles is not None:
        conf["spark.submit.pyFiles"] = str(pyfiles)
    return conf


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    tmp = tmp_path_factory.mktemp("cluster")
    settings, manifest = deploy(tmp, TREE)
    # a every day, b on D1 and D3 (dropping out of the 2-day window in between), c once.
    days = {"a": (D1, D2, D3, D4), "b": (D1, D3), "c": (D2,)}
    rows = [
        {"account_id": account, "amount": float(7 * n + len(days[account])), "ts": _at(day, 1 + 5 * n)}
        for account in days
        for n, day in enumerate(days[account])
    ]
    write_parquet(Path(settings.data_root) / "payments", rows, PAYMENTS)
    spine = tmp / "spine"
    times = [_at(day, hour) for day in (D2, D3, D4, TODAY) for hour in (0, 11, 23)]
    write_parquet(
        spine,
        [{"account_id": a, "event_timestamp": t} for a in ("a", "b", "c", "zz") for t in times],
        pa.schema([("account_id", pa.string()), ("event_timestamp", pa.timestamp("us", tz="UTC"))]),
    )
    with LocalRedis() as redis_server:
        yield Deployment(tmp, settings, manifest, redis_server, spine)


def _skewless(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(VENV_BIN / "skewless"), *args], env=env, capture_output=True, text=True, timeout=900, cwd=REPO
    )


def _spark_submit(
    job: str, args: list[str], env: dict[str, str], conf: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    confs = [item for key, value in conf.items() for item in ("--conf", f"{key}={value}")]
    command = [str(VENV_BIN / "spark-submit"), *confs, str(REPO / "jobs" / job), *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=900, cwd=REPO)


def _ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, f"{done.args}\n{done.stdout[-2000:]}\n{done.stderr[-5000:]}"
    return done.stdout


def _executor_env(bare_python: Path) -> dict[str, str]:
    """Drivers and executors of the cluster runs use the Python without skewless."""
    return spark_env({"PYSPARK_PYTHON": str(bare_python), "PYSPARK_DRIVER_PYTHON": str(bare_python)})


def table_rows(spark: Any, conf: Path, manifest: Manifest) -> list[tuple[Any, ...]]:
    """The view's table without created_ts (the time of the run that wrote a row)."""
    view = manifest.view("spend")
    uri = load_settings(conf).table_uri(view.table)
    frame = delta_tables(spark).read(uri, view_schema(view)).drop("created_ts")
    return sorted(tuple(row) for row in frame.collect())


def training_rows(path: Path) -> list[tuple[Any, ...]]:
    table = pq.read_table(str(path), ignore_prefixes=["_", "."])
    return sorted(tuple(row.values()) for row in table.to_pylist())


def redis_contents(redis_server: LocalRedis, db: int) -> dict[bytes, tuple[Any, ...]]:
    """Every key: its decoded value without created_ts, and its expiry (absolute, ms)."""
    import redis

    client = redis.Redis(host="127.0.0.1", port=redis_server.port, db=db)
    try:
        out: dict[bytes, tuple[Any, ...]] = {}
        for key in client.scan_iter():
            kind = client.type(key)
            if kind != b"string":
                value: Any = (kind, sorted(client.zrange(key, 0, -1, withscores=True)))
            elif key.startswith(LAYOUT_KEY_PREFIX.encode()):
                value = client.get(key)
            else:
                raw = client.get(key)
                assert raw is not None
                stored = decode(bytes(raw))  # type: ignore[arg-type]
                value = (stored.feature_ts_us, stored.layout_id, stored.values)
            out[key] = (value, client.pexpiretime(key))
        return out
    finally:
        client.close()


def test_cli_and_spark_submit_on_a_standalone_cluster_match_local_mode(
    spark: Any, cluster: Cluster, pyfiles: Path, bare_python: Path, deployment: Deployment
) -> None:
    d = deployment
    steps = [
        ["backfill", "spend", "--start", str(D1), "--end", str(D3)],
        ["run", "spend", "--ds", str(D4)],
        ["training-set", "--features", FEATURES, "--spine", str(d.spine), "--out", "{root}/ts-cli"],
        ["materialize", "spend", "--start", str(D1), "--end", str(D4)],
    ]
    # The oracle: local mode, in this process on the test session.
    local = d.conf("local", 1)
    for step in steps:
        args = [a.replace("{root}", str(d.tmp / "local")) for a in step]
        assert main(["--conf", str(local), *args]) == 0, args

    remote = d.conf("cluster", 2, cluster.master_url, cluster_conf(cluster, pyfiles))
    env = _executor_env(bare_python)
    env.pop("PYSPARK_DRIVER_PYTHON")  # the CLI runs where skewless is installed; executors do not
    for step in steps:
        args = [a.replace("{root}", str(d.tmp / "cluster")) for a in step]
        _ok(_skewless(["--conf", str(remote), *args], env))
    ts_submit = d.tmp / "cluster" / "ts-submit"
    submitted = _ok(
        _spark_submit(
            "training_set.py",
            ["--conf", str(remote), "--features", FEATURES, "--spine", str(d.spine), "--out", str(ts_submit)],
            _executor_env(bare_python),
            {"spark.master": cluster.master_url, **cluster_conf(cluster, None)}
            | {"spark.submit.pyFiles": str(pyfiles)},
        )
    )
    assert "wrote 48 rows" in submitted

    assert table_rows(spark, remote, d.manifest) == table_rows(spark, local, d.manifest)
    assert len(table_rows(spark, local, d.manifest)) >= 10
    expected = training_rows(d.tmp / "local" / "ts-cli")
    assert len(expected) == 48
    assert training_rows(d.tmp / "cluster" / "ts-cli") == expected
    assert training_rows(d.tmp / "cluster" / "ts-submit") == expected
    online = redis_contents(d.redis, 1)
    assert len(online) >= 4
    assert redis_contents(d.redis, 2) == online


def test_a_job_whose_executors_cannot_import_skewless_fails_with_one_clear_line(
    spark: Any, cluster: Cluster, bare_python: Path, deployment: Deployment
) -> None:
    """No py-files and a worker Python without skewless: materialize's writers cannot start."""
    d = deployment
    local = d.conf("noship", 3)
    assert main(["--conf", str(local), "run", "spend", "--ds", str(D2)]) == 0
    remote = d.conf("noship", 3, cluster.master_url, cluster_conf(cluster, None))
    env = _executor_env(bare_python)
    env.pop("PYSPARK_DRIVER_PYTHON")
    done = _skewless(["--conf", str(remote), "materialize", "spend", "--ds", str(D2)], env)
    assert done.returncode == 1, done.stderr[-3000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [
        "error: the Spark executors cannot import skewless: ship it with spark-submit --py-files "
        "(or spark.submit.pyFiles in spark.conf) or install it on the workers' Python (docs/cluster.md)"
    ], done.stderr[-3000:]


def test_the_nightly_dag_through_spark_submit_on_the_cluster_matches_local_mode(
    spark: Any,
    cluster: Cluster,
    pyfiles: Path,
    bare_python: Path,
    deployment: Deployment,
    airflow_db: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``spark.submit: true``: each task is a SparkSubmitOperator running jobs/view_task.py."""
    from airflow.dag_processing.dagbag import DagBag

    d = deployment
    local = d.conf("dag-local", 4)
    assert main(["--conf", str(local), "run", "spend", "--ds", str(D3)]) == 0
    assert main(["--conf", str(local), "materialize", "spend", "--ds", str(D3)]) == 0

    remote = d.conf("dag-cluster", 5, cluster.master_url, cluster_conf(cluster, pyfiles))
    text = remote.read_text().replace("spark:\n", "spark:\n  submit: true\n", 1)
    remote.write_text(text + f"airflow:\n  start_date: {D1}\n")
    for key, value in _executor_env(bare_python).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("SKEWLESS_CONF", str(remote))
    connection = {"conn_type": "spark", "host": cluster.master_url, "extra": {"deploy-mode": "client"}}
    monkeypatch.setenv("AIRFLOW_CONN_SPARK_DEFAULT", json.dumps(connection))

    bag = DagBag(dag_folder=str(REPO / "dags"))
    assert bag.import_errors == {}
    dag = bag.dags["skewless__spend"]
    run = dag.test(logical_date=_at(D3 + timedelta(days=1), 0))
    assert str(run.state) == "success"

    assert table_rows(spark, remote, d.manifest) == table_rows(spark, local, d.manifest)
    assert redis_contents(d.redis, 5) == redis_contents(d.redis, 4)
    # The steps handed the staged run on through the file (no XCom between spark-submits).
    handoff = Path(load_settings(remote).offline_root) / "_runs" / "spend" / f"{D3}_{D3}.staged.json"
    assert handoff.is_file()
