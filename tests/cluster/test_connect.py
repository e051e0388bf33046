"""Spark Connect: ``backfill``, ``get_training_set`` and ``FeatureStore`` equal local mode.

The Connect server is a separate JVM started from the pinned pyspark (conftest.py). The clients
run in their own processes, as a notebook would: PySpark switches a whole process to Connect
mode (``pyspark.sql.functions`` then builds Connect columns), so a process uses either a
Connect session or a classic one, and this test process keeps the classic session that computes
the oracle (local mode). What cannot work over Connect (materialize: its writers run on the
executors with accumulators) fails with one line naming the supported route.
"""

from __future__ import annotations

import subprocess
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from skewless.offline.delta import delta_tables
from skewless.offline.schemas import view_schema
from skewless.orchestration import run_range
from skewless.pit.training_set import get_training_set
from skewless.runtime.settings import Settings, SparkSettings
from tests.cluster.conftest import REPO, VENV_BIN, ConnectServer, spark_env
from tests.cluster.test_cluster import PAYMENTS, TREE
from tests.helpers import deploy, write_parquet

pytestmark = [pytest.mark.cluster, pytest.mark.spark]

FEATURES = ["spend:n_2d", "spend:total_2d", "spend:max_7d"]
D1 = date(2024, 5, 1)

# A notebook: a Connect session of its own, handed to get_training_set.
NOTEBOOK = """
import sys

import pandas as pd
from pyspark.sql import SparkSession

from skewless.pit.training_set import get_training_set
from skewless.runtime.settings import load_settings
from skewless.runtime.spark import is_connect

settings = load_settings(sys.argv[1])
spark = SparkSession.builder.remote(settings.spark.master).getOrCreate()
assert is_connect(spark)
frame = get_training_set(pd.read_parquet(sys.argv[2]), sys.argv[3].split(","), settings=settings, spark=spark)
assert type(frame).__module__.startswith("pyspark.sql.connect"), type(frame)
rows = frame.toPandas()
rows.attrs = {}  # Connect attaches its plan metrics, which Parquet metadata cannot hold
rows.to_parquet(sys.argv[4])

# The Feast-shaped API on the notebook's Connect session, and on the one it gets from the config.
from skewless import FeatureStore

for n, store in enumerate((FeatureStore(sys.argv[1], spark=spark), FeatureStore(sys.argv[1]))):
    job = store.get_historical_features(pd.read_parquet(sys.argv[2]), sys.argv[3].split(","))
    assert is_connect(store.spark)
    assert type(job.to_spark()).__module__.startswith("pyspark.sql.connect")
    answer = job.to_df()
    answer.attrs = {}
    answer.to_parquet(sys.argv[4] + f".store{n}.parquet")
"""


def _at(day: date, hour: int) -> datetime:
    return datetime.combine(day, time(hour), tzinfo=UTC)


def _run(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, env=spark_env(), capture_output=True, text=True, timeout=1800, cwd=REPO)


def _table(spark: Any, settings: Settings) -> list[tuple[Any, ...]]:
    view = deploy_view(settings)
    frame = delta_tables(spark).read(settings.table_uri(view.table), view_schema(view)).drop("created_ts")
    return sorted(tuple(row) for row in frame.collect())


def deploy_view(settings: Settings) -> Any:
    from skewless.registry import require_registry

    return require_registry(settings.registry_uri).view("spend")


def test_backfill_and_get_training_set_over_spark_connect_match_local_mode(
    spark: Any, connect_server: ConnectServer, tmp_path: Path
) -> None:
    local, manifest = deploy(tmp_path, TREE)
    days = [D1 + timedelta(days=n) for n in range(4)]
    rows = [
        {"account_id": account, "amount": float(3 * n + len(account)), "ts": _at(day, 2 + 7 * (n % 3))}
        for n, day in enumerate(days)
        for account in ("a", "bb", "ccc")[: 1 + n % 3]
    ]
    write_parquet(Path(local.data_root) / "payments", rows, PAYMENTS)
    remote = local.model_copy(
        update={"offline_root": str(tmp_path / "remote"), "spark": SparkSettings(master=connect_server.url)}
    )
    (tmp_path / "remote" / "_registry").mkdir(parents=True)
    (tmp_path / "remote" / "_registry" / "registry.json").write_bytes(Path(local.registry_uri).read_bytes())
    conf = tmp_path / "connect.yaml"
    conf.write_text(
        f"defs: {remote.defs}\ndata_root: {remote.data_root}\noffline_root: {remote.offline_root}\n"
        f"spark:\n  master: '{connect_server.url}'\n"
    )
    skewless = str(VENV_BIN / "skewless")

    # The oracle: local mode on the test session.
    run_range(spark, local, manifest, "spend", D1, days[-1])
    # `skewless backfill` with spark.master sc://...: the CLI's session is a Connect one.
    done = _run(
        [skewless, "--conf", str(conf), "backfill", "spend", "--start", str(D1), "--end", str(days[-1])]
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"spend: committed ds {D1}..{days[-1]} (9 rows)" in done.stdout
    expected = _table(spark, local)
    assert len(expected) == 9
    assert _table(spark, remote) == expected

    spine = pd.DataFrame(
        [
            {"account_id": account, "event_timestamp": _at(D1, 0) + timedelta(hours=hours)}
            for account in ("a", "bb", "ccc", "nobody")
            for hours in range(0, 5 * 24, 7)
        ]
    )
    spine_path, out = tmp_path / "spine.parquet", tmp_path / "connect-training.parquet"
    spine.to_parquet(spine_path)
    script = tmp_path / "notebook.py"
    script.write_text(NOTEBOOK)
    done = _run(
        [str(VENV_BIN / "python"), str(script), str(conf), str(spine_path), ",".join(FEATURES), str(out)]
    )
    assert done.returncode == 0, done.stderr[-3000:]
    want: Any = get_training_set(spine, FEATURES, settings=local, manifest=manifest, spark=spark).toPandas()
    order = ["account_id", "event_timestamp"]
    want = want.sort_values(order).reset_index(drop=True)
    # get_training_set, then FeatureStore on the notebook's session and on its own.
    for path in (out, Path(f"{out}.store1.parquet"), Path(f"{out}.store0.parquet")):
        got = pd.read_parquet(path)
        pd.testing.assert_frame_equal(got[list(want.columns)].sort_values(order).reset_index(drop=True), want)
    assert want["n_2d"].notna().sum() > 10

    # What cannot run over Connect says so, naming the route.
    done = _run([skewless, "--conf", str(conf), "materialize", "spend", "--ds", str(D1)])
    assert done.returncode == 1
    assert [line for line in done.stderr.splitlines() if line.startswith("error: ")] == [
        "error: materialize (executors write to Redis with foreachPartition/mapInArrow and accumulators) "
        "cannot run over Spark Connect (it needs a classic Spark session: its Python runs on the executors, "
        "or it calls the JVM); run `skewless materialize` (or the DAG's materialize task) with "
        "spark.master local[N] or spark://..., or spark-submit jobs/view_task.py materialize "
        "(docs/cluster.md#spark-connect)"
    ]
