"""Offline store benchmark: a 60-day backfill of the example ``merchant_txn`` view over 20M events.

Baseline (same run, same data): a plain Spark scan + group-by of every event (the least any
aggregation job must do). Also shows that a steady daily run reads one day of raw events.
"""

from __future__ import annotations

import shutil
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.common import REPO, run_worker, timed, worker_main

DAYS = 60  # ds partitions computed by the backfill
HISTORY = 30  # the longest window: the backfill also reads these days before its first ds
EVENTS = 20_000_000
MERCHANTS = 20_000
FIRST_DAY = date(2024, 1, 1)


def generate(raw: Path, events: int, days: int) -> dict[str, int]:
    """Transactions partitioned by event_date, one Parquet file per day."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(42)
    per_day = events // days
    sizes: dict[str, int] = {}
    merchants = np.array([f"m{i:06d}" for i in range(MERCHANTS)], dtype=object)
    weights = np.arange(1, MERCHANTS + 1, dtype=float) ** -0.8  # a long tail of small merchants
    weights /= weights.sum()
    for offset in range(days):
        day = FIRST_DAY + timedelta(days=offset)
        start_us = int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * 1_000_000)
        ts = np.sort(rng.integers(start_us, start_us + 86_400_000_000, per_day))
        amount = np.round(rng.lognormal(3.5, 1.0, per_day), 2)
        amount[rng.random(per_day) < 0.01] = np.nan
        table = pa.table(
            {
                "txn_id": pa.array(np.char.add("t", np.arange(per_day).astype(str)).astype(object)),
                "merchant_id": pa.array(merchants[rng.choice(MERCHANTS, per_day, p=weights)]),
                "customer_id": pa.array(rng.integers(0, 2_000_000, per_day)),
                "amount": pa.array(amount, mask=np.isnan(amount)),
                "status": pa.array(
                    np.where(rng.random(per_day) < 0.95, "completed", "declined").astype(object)
                ),
                "ts": pa.array(ts, type=pa.timestamp("us", tz="UTC")),
            }
        )
        folder = raw / f"event_date={day.isoformat()}"
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, folder / "part-0.parquet")
        sizes[day.isoformat()] = (folder / "part-0.parquet").stat().st_size
    return sizes


def _settings(task: dict[str, Any]) -> Any:
    from skewless.runtime.settings import Settings, SparkSettings

    return Settings(
        defs=str(REPO / "feature_defs"),
        data_root=task["data_root"],
        offline_root=task["offline_root"],
        spark=SparkSettings(
            master="local[2]",
            conf={"spark.driver.memory": "6g", "spark.sql.shuffle.partitions": "16"},
        ),
    )


def _baseline(task: dict[str, Any]) -> dict[str, Any]:
    from pyspark.sql import functions as F

    from skewless.runtime.spark import get_spark

    spark = get_spark(_settings(task), app_name="bench-baseline")
    frame = spark.read.parquet(str(Path(task["data_root"]) / "raw" / "transactions"))
    query = frame.where("status = 'completed'").groupBy("merchant_id", F.to_date("ts")).agg(F.sum("amount"))
    _, seconds = timed(lambda: query.write.format("noop").mode("overwrite").save())
    return {"seconds": round(seconds, 2)}


def _backfill(task: dict[str, Any]) -> dict[str, Any]:
    from skewless.compile import compile_tree
    from skewless.offline.jobs import run_view
    from skewless.registry import publish_registry
    from skewless.runtime.spark import get_spark

    settings = _settings(task)
    manifest = compile_tree(Path(settings.defs))
    publish_registry(settings.registry_uri, manifest)
    spark = get_spark(settings, app_name="bench-backfill")
    start, end = date.fromisoformat(task["start"]), date.fromisoformat(task["end"])
    result, seconds = timed(run_view, spark, settings, manifest, "merchant_txn", start, end)
    return {
        "seconds": round(seconds, 2),
        "rows": result.rows,
        "raw_days_read": len(result.raw_days_read),
    }


def _daily(task: dict[str, Any]) -> dict[str, Any]:
    from skewless.offline.jobs import run_view
    from skewless.registry import require_registry
    from skewless.runtime.spark import get_spark

    settings = _settings(task)
    manifest = require_registry(settings.registry_uri)
    spark = get_spark(settings, app_name="bench-daily")
    day = date.fromisoformat(task["day"])
    result, seconds = timed(run_view, spark, settings, manifest, "merchant_txn", day)
    return {"seconds": round(seconds, 2), "raw_days_read": [d.isoformat() for d in result.raw_days_read]}


def run(workdir: Path, scale: float) -> dict[str, Any]:
    events = int(EVENTS * scale)
    data_root = workdir / "data"
    raw = data_root / "raw" / "transactions"
    total_days = HISTORY + DAYS + 1  # history, the backfilled days, one more for the daily run
    (sizes, generate_seconds) = timed(generate, raw, events, total_days)
    task = {"data_root": str(data_root), "offline_root": str(workdir / "offline")}
    baseline = run_worker("bench.offline_bench", {**task, "step": "baseline"})
    # The backfill's first ds has complete 30-day windows; it reads every event of the first 90 days.
    start = FIRST_DAY + timedelta(days=HISTORY)
    last = start + timedelta(days=DAYS - 1)
    backfill = run_worker(
        "bench.offline_bench",
        {**task, "step": "backfill", "start": start.isoformat(), "end": last.isoformat()},
    )
    next_day = last + timedelta(days=1)
    daily = run_worker("bench.offline_bench", {**task, "step": "daily", "day": next_day.isoformat()})
    read_bytes = sum(sizes[d] for d in daily["raw_days_read"])
    window_bytes = sum(sizes[(next_day - timedelta(days=i)).isoformat()] for i in range(30))
    events_read = events // total_days * backfill["raw_days_read"]
    shutil.rmtree(workdir / "offline", ignore_errors=True)
    return {
        "events": events,
        "days": DAYS,
        "generate_seconds": round(generate_seconds, 1),
        "baseline_scan_groupby_seconds": baseline["seconds"],
        "backfill": backfill,
        "backfill_events_per_second": round(events_read / backfill["seconds"]),
        "backfill_vs_baseline_ratio": round(backfill["seconds"] / baseline["seconds"], 2),
        "daily_run": daily,
        "daily_run_bytes_read": read_bytes,
        "thirty_day_window_bytes": window_bytes,
        "daily_read_vs_window_ratio": round(read_bytes / window_bytes, 4),
    }


if __name__ == "__main__":
    sys.exit(worker_main({"baseline": _baseline, "backfill": _backfill, "daily": _daily}))
