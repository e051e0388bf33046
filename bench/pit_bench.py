"""Point-in-time join benchmark: 10M feature rows x 2M spine rows, beside DuckDB's ASOF JOIN.

Same Parquet data for both engines, measured in the same run. Each engine runs in a fresh
process whose whole process tree's peak memory is sampled. Memory is "bounded" when the run at
5x the data does not need 5x the memory: both sizes are measured.
"""

from __future__ import annotations

import sys
import textwrap
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.common import run_worker, timed, worker_main

FEATURE_ROWS = 10_000_000
SPINE_ROWS = 2_000_000
DAYS = 50
FIRST_DAY = date(2024, 1, 1)
TTL = "INTERVAL 2 DAY"  # the view's ttl, in DuckDB's syntax

TREE = """
entity: {name: user, join_keys: {user_id: int64}}
---
source: {name: events, path: unused, format: parquet, timestamp: ts}
---
view:
  name: user_activity
  version: 1
  kind: aggregation
  entity: user
  source: events
  ttl: 2d
  features:
    - {name: clicks_1d, function: count, window: 1d}
    - {name: spend_7d, function: sum, column: amount, window: 7d, dtype: float64}
"""


def generate(root: Path, feature_rows: int, spine_rows: int) -> dict[str, str]:
    """A registry, the view's Delta table (via delta-rs) and a Parquet spine."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    from deltalake import write_deltalake

    from skewless.compile import compile_tree
    from skewless.registry import publish_registry
    from skewless.runtime.settings import Settings

    defs = root / "defs"
    defs.mkdir(parents=True)
    (defs / "defs.yaml").write_text(textwrap.dedent(TREE))
    settings = Settings(defs=str(defs), data_root=str(root / "data"), offline_root=str(root / "offline"))
    manifest = compile_tree(defs)
    publish_registry(settings.registry_uri, manifest)
    table_uri = settings.table_uri(manifest.view("user_activity").table)

    rng = np.random.default_rng(7)
    users = feature_rows // DAYS
    created = datetime(2024, 3, 1, tzinfo=UTC)
    for offset in range(DAYS):
        day = FIRST_DAY + timedelta(days=offset)
        boundary = datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1)
        spend = np.round(rng.lognormal(3, 1, users), 2)
        batch = pa.table(
            {
                "user_id": pa.array(np.arange(users, dtype=np.int64)),
                "ds": pa.array([day] * users, pa.date32()),
                "feature_ts": pa.array([boundary] * users, pa.timestamp("us", tz="UTC")),
                "created_ts": pa.array([created] * users, pa.timestamp("us", tz="UTC")),
                "clicks_1d": pa.array(rng.integers(0, 20, users)),
                "spend_7d": pa.array(spend, mask=rng.random(users) < 0.05),
            }
        )
        write_deltalake(table_uri, batch, mode="append", partition_by=["ds"])

    start_us = int(datetime(FIRST_DAY.year, FIRST_DAY.month, FIRST_DAY.day, tzinfo=UTC).timestamp() * 1e6)
    spine = pa.table(
        {
            "row_id": pa.array(np.arange(spine_rows, dtype=np.int64)),
            "user_id": pa.array(rng.integers(0, int(users * 1.05), spine_rows)),  # 5% unknown users
            "event_timestamp": pa.array(
                rng.integers(start_us, start_us + DAYS * 86_400_000_000, spine_rows),
                pa.timestamp("us", tz="UTC"),
            ),
            "label": pa.array(rng.random(spine_rows) < 0.1),
        }
    )
    spine_path = root / "spine"
    spine_path.mkdir()
    pq.write_table(spine, spine_path / "part-0.parquet")
    return {
        "defs": str(defs),
        "data_root": str(root / "data"),
        "offline_root": str(root / "offline"),
        "table": table_uri,
        "spine": str(spine_path),
    }


def _spark(task: dict[str, Any]) -> dict[str, Any]:
    from skewless.pit.training_set import build_training_set, inspect_spine
    from skewless.registry import require_registry
    from skewless.runtime.settings import Settings, SparkSettings
    from skewless.runtime.spark import get_spark

    settings = Settings(
        defs=task["defs"],
        data_root=task["data_root"],
        offline_root=task["offline_root"],
        spark=SparkSettings(
            master="local[2]", conf={"spark.driver.memory": "4g", "spark.sql.shuffle.partitions": "16"}
        ),
    )
    manifest = require_registry(settings.registry_uri)
    spark = get_spark(settings, app_name="bench-pit")
    spark.range(1).count()  # JVM start is not the join's cost

    def build(out: str) -> Any:
        return build_training_set(
            spark,
            settings,
            manifest,
            spine=inspect_spine(task["spine"]),
            out=out,
            features="user_activity:clicks_1d,user_activity:spend_7d",
            method=task["method"],
        )

    record, seconds = timed(build, task["out"])
    # The same join again in this JVM, as a notebook session's second request runs: no JIT or
    # code-generation warm-up left. Peak memory covers both.
    _, warm_seconds = timed(build, task["out"] + "-again")
    return {
        "seconds": round(seconds, 2),
        "seconds_second_join_same_jvm": round(warm_seconds, 2),
        "rows": record.spine_rows,
        "path": record.tables["user_activity"].path,
    }


def _duckdb(task: dict[str, Any]) -> dict[str, Any]:
    import duckdb

    connection = duckdb.connect()
    connection.execute("SET TimeZone = 'UTC'; SET threads = 2")
    query = f"""
        COPY (
          SELECT s.*,
                 CASE WHEN f.feature_ts >= s.event_timestamp - {TTL} THEN f.clicks_1d END AS clicks_1d,
                 CASE WHEN f.feature_ts >= s.event_timestamp - {TTL} THEN f.spend_7d END AS spend_7d
          FROM read_parquet('{task["spine"]}/*.parquet') s
          ASOF LEFT JOIN read_parquet('{task["table"]}/ds=*/*.parquet', hive_partitioning = true) f
            ON s.user_id = f.user_id AND s.event_timestamp >= f.feature_ts
        ) TO '{task["out"]}' (FORMAT parquet)
    """
    _, seconds = timed(connection.execute, query)
    return {"seconds": round(seconds, 2)}


def _compare(task: dict[str, Any]) -> dict[str, Any]:
    import duckdb

    connection = duckdb.connect()
    row = connection.execute(
        f"""
        SELECT count(*) AS rows,
               count(*) FILTER (WHERE a.clicks_1d IS DISTINCT FROM b.clicks_1d
                                   OR a.spend_7d IS DISTINCT FROM b.spend_7d) AS mismatches
        FROM read_parquet('{task["spark_out"]}/*.parquet') a
        JOIN read_parquet('{task["duckdb_out"]}') b USING (row_id)
        """
    ).fetchone()
    assert row is not None
    return {"rows_compared": row[0], "mismatches": row[1]}


def _measure(workdir: Path, name: str, feature_rows: int, spine_rows: int) -> dict[str, Any]:
    root = workdir / name
    paths, generate_seconds = timed(generate, root, feature_rows, spine_rows)
    spark = run_worker(
        "bench.pit_bench", {**paths, "step": "spark", "method": "auto", "out": str(root / "out-spark")}
    )
    asof = run_worker(
        "bench.pit_bench", {**paths, "step": "spark", "method": "asof", "out": str(root / "out-asof")}
    )
    duck = run_worker("bench.pit_bench", {**paths, "step": "duckdb", "out": str(root / "out-duckdb.parquet")})
    agree = run_worker(
        "bench.pit_bench",
        {
            "step": "compare",
            "spark_out": str(root / "out-spark"),
            "duckdb_out": str(root / "out-duckdb.parquet"),
        },
    )
    agree_asof = run_worker(
        "bench.pit_bench",
        {
            "step": "compare",
            "spark_out": str(root / "out-asof"),
            "duckdb_out": str(root / "out-duckdb.parquet"),
        },
    )
    return {
        "feature_rows": feature_rows,
        "spine_rows": spine_rows,
        "generate_seconds": round(generate_seconds, 1),
        "spark_boundary_join": spark,
        "spark_general_asof_join": asof,
        "duckdb_asof_join": duck,
        "spark_vs_duckdb_time_ratio": round(spark["seconds"] / duck["seconds"], 2),
        "spark_second_join_vs_duckdb_time_ratio": round(
            spark["seconds_second_join_same_jvm"] / duck["seconds"], 2
        ),
        "spark_general_vs_duckdb_time_ratio": round(asof["seconds"] / duck["seconds"], 2),
        "spark_rows_per_second": round(spine_rows / spark["seconds"]),
        "agreement_boundary_vs_duckdb": agree,
        "agreement_general_vs_duckdb": agree_asof,
    }


def run(workdir: Path, scale: float) -> dict[str, Any]:
    full = _measure(workdir, "full", int(FEATURE_ROWS * scale), int(SPINE_ROWS * scale))
    fifth = _measure(workdir, "fifth", int(FEATURE_ROWS * scale / 5), int(SPINE_ROWS * scale / 5))
    return {
        "full": full,
        "one_fifth": fifth,
        "memory_ratio_at_5x_data": round(
            full["spark_boundary_join"]["peak_rss_mb"] / fifth["spark_boundary_join"]["peak_rss_mb"], 2
        ),
        "memory_ratio_at_5x_data_general": round(
            full["spark_general_asof_join"]["peak_rss_mb"] / fifth["spark_general_asof_join"]["peak_rss_mb"],
            2,
        ),
    }


if __name__ == "__main__":
    sys.exit(worker_main({"spark": _spark, "duckdb": _duckdb, "compare": _compare}))
