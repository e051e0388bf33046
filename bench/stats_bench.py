"""Statistics benchmark: the statistics and drift step against the backfill it describes.

A snapshot view shaped like Feast's tutorial driver statistics: users x 10 snapshots spread over
46 days, 3% duplicate (user, event time) rows with a later created time, a 3-day TTL, three
numeric features. One worker process (one JVM, as ``skewless backfill`` runs it) times:

* the 45-day backfill: compute + validation gate + commit (``run_range(..., stats=False)``);
* the statistics of those 45 days (``record_stats``): the issue-13 target is at most 25% of the
  backfill's time;
* a nightly run of day 46 and its statistics, which read one day of rows plus the stored
  per-day summaries of the 7 reference days.
"""

from __future__ import annotations

import sys
import textwrap
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.common import run_worker, timed, worker_main

USERS = 100_000
SNAPSHOTS = 10
DAYS = 46  # 45 backfilled, the last one for the nightly run
DUPLICATES = 0.03
FIRST_DAY = date(2024, 1, 1)
VIEW = "driver_stats"
TARGET_RATIO = 0.25

DEFS = """
entity:
  name: driver
  join_keys: {driver_id: int64}
---
source:
  name: driver_stats_raw
  path: raw/driver_stats
  format: parquet
  timestamp: event_timestamp
  created_timestamp: created
---
view:
  name: driver_stats
  version: 1
  kind: snapshot
  entity: driver
  source: driver_stats_raw
  ttl: 3d
  features:
    - {name: conv_rate, dtype: float64}
    - {name: acc_rate, dtype: float64}
    - {name: avg_daily_trips, dtype: int64}
"""


def generate(raw: Path, users: int) -> int:
    """Snapshot rows as Feast's tutorial writes them (microsecond UTC timestamps); returns the count."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(13)
    rows = users * SNAPSHOTS
    driver = np.repeat(np.arange(users, dtype=np.int64), SNAPSHOTS)
    start_us = (
        int(datetime(FIRST_DAY.year, FIRST_DAY.month, FIRST_DAY.day, tzinfo=UTC).timestamp()) * 1_000_000
    )
    event = start_us + rng.integers(0, DAYS * 86_400_000_000, rows)
    day = (event - start_us) // 86_400_000_000
    created = event + rng.integers(0, 3_600_000_000, rows)
    conv = rng.beta(2 + day / DAYS, 5, rows)  # a slow drift over the days
    acc = rng.beta(8, 2, rows)
    trips = rng.poisson(20 + day / 5, rows)
    # 3% duplicate (driver, event time) rows, created later, with other values.
    dup = rng.choice(rows, int(rows * DUPLICATES), replace=False)
    driver = np.concatenate([driver, driver[dup]])
    event = np.concatenate([event, event[dup]])
    created = np.concatenate([created, created[dup] + 60_000_000])
    conv = np.concatenate([conv, rng.beta(2, 5, len(dup))])
    acc = np.concatenate([acc, rng.beta(8, 2, len(dup))])
    trips = np.concatenate([trips, rng.poisson(20, len(dup))])
    order = np.argsort(event, kind="stable")
    table = pa.table(
        {
            "driver_id": driver[order],
            "event_timestamp": pa.array(event[order], pa.timestamp("us", tz="UTC")),
            "created": pa.array(created[order], pa.timestamp("us", tz="UTC")),
            "conv_rate": conv[order],
            "acc_rate": acc[order],
            "avg_daily_trips": trips[order].astype(np.int64),
        }
    )
    raw.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, raw / "part-0.parquet", row_group_size=256_000)
    return table.num_rows


def _settings(task: dict[str, Any]) -> Any:
    from skewless.runtime.settings import Settings, SparkSettings

    return Settings(
        defs=task["defs"],
        data_root=task["data_root"],
        offline_root=task["offline_root"],
        spark=SparkSettings(
            master="local[2]",
            conf={"spark.driver.memory": "6g", "spark.sql.shuffle.partitions": "16"},
        ),
    )


def _run(task: dict[str, Any]) -> dict[str, Any]:
    from skewless.compile import compile_tree
    from skewless.orchestration import run_range
    from skewless.registry import publish_registry
    from skewless.runtime.spark import get_spark
    from skewless.validate.stats import record_stats

    settings = _settings(task)
    manifest = compile_tree(Path(settings.defs))
    publish_registry(settings.registry_uri, manifest)
    view = manifest.view(VIEW)
    spark = get_spark(settings, app_name="bench-stats")
    start, end = FIRST_DAY, FIRST_DAY + timedelta(days=DAYS - 2)
    nightly_day = end + timedelta(days=1)

    backfill, backfill_seconds = timed(run_range, spark, settings, manifest, VIEW, start, end, stats=False)
    stats, stats_seconds = timed(record_stats, spark, settings, view, start, end, raise_on_drift=False)
    _, nightly_run_seconds = timed(
        run_range, spark, settings, manifest, VIEW, nightly_day, nightly_day, stats=False
    )
    nightly, nightly_stats_seconds = timed(
        record_stats, spark, settings, view, nightly_day, raise_on_drift=False
    )
    statuses: dict[str, int] = {}
    for item in stats.stats:
        if item.drift_status:
            statuses[item.drift_status] = statuses.get(item.drift_status, 0) + 1
    return {
        "rows": backfill.run.rows,
        "ds_partitions": len(stats.days),
        "backfill_seconds": round(backfill_seconds, 2),
        "stats_seconds": round(stats_seconds, 2),
        "stats_days_read": len(stats.days_read),
        "drift_statuses": statuses,
        "nightly_run_seconds": round(nightly_run_seconds, 2),
        "nightly_stats_seconds": round(nightly_stats_seconds, 2),
        "nightly_stats_days_read": [d.isoformat() for d in nightly.days_read],
        "nightly_reference_days": max((s.reference_days or 0) for s in nightly.stats),
    }


def run(workdir: Path, scale: float) -> dict[str, Any]:
    data_root = workdir / "data"
    defs = workdir / "defs"
    defs.mkdir(parents=True)
    (defs / "drivers.yaml").write_text(textwrap.dedent(DEFS).lstrip())
    rows, generate_seconds = timed(generate, data_root / "raw" / "driver_stats", int(USERS * scale))
    task = {
        "step": "run",
        "defs": str(defs),
        "data_root": str(data_root),
        "offline_root": str(workdir / "offline"),
    }
    result = run_worker("bench.stats_bench", task)
    ratio = result["stats_seconds"] / result["backfill_seconds"]
    return {
        "generated_rows": rows,
        "generate_seconds": round(generate_seconds, 1),
        **result,
        "stats_vs_backfill_ratio": round(ratio, 3),
        "target_ratio": TARGET_RATIO,
        "target_met": ratio <= TARGET_RATIO,
    }


if __name__ == "__main__":
    sys.exit(worker_main({"run": _run}))
