"""Snapshot workload as users run it: whole ``skewless`` processes beside DuckDB on the same files.

Data shaped like Feast's tutorial ``driver_hourly_stats``: users x 10 snapshots over 45 days,
3% duplicate (user, event time) rows with a later created time and other values, a 3-day TTL.
The spine has 5% unknown users, 5% rows at exactly a snapshot's event time (ties: the snapshot
is visible, and of two rows at that time the later created one answers) and 5% at the TTL's
edges (exactly ``event + 3 days``: still live; one microsecond later: expired unless a newer
snapshot exists).

Each step is one process, timed whole and with its process tree's peak resident memory:

* ``skewless apply`` then ``skewless backfill driver_stats`` over its 45 ds (compute, Great
  Expectations gate, commit, then statistics); phases from the process's own log lines;
* a plain Spark read + ``partitionBy("ds")`` Parquet write of the same rows (the copy a
  backfill is compared with, issue 13 target: backfill <= 1.5x);
* ``skewless training-set`` of the three features for the spine;
* DuckDB's ``ASOF JOIN`` on the same raw files (deduplicated by created time, TTL applied), the
  reference: ``python -c`` running duckdb;
* a check that both outputs agree on every row.

Two sizes: 1.03M feature rows x 200k spine rows and 10.3M x 2M (``--scale`` multiplies both;
the larger one runs only at ``--scale 1`` or more, so quick runs skip it).
"""

from __future__ import annotations

import json
import re
import sys
import textwrap
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.common import load_average, run_process, timed

USERS = 100_000  # x 10 snapshots x 1.03 = 1.03M rows at scale 1 (the small size)
LARGE = 10  # the large size: 10x the users and the spine
SPINE_ROWS = 200_000
SNAPSHOTS = 10
DAYS = 45  # every day is backfilled: both engines see the same rows
DUPLICATES = 0.03
FIRST_DAY = date(2024, 1, 1)
VIEW = "driver_stats"
FEATURES = ("conv_rate", "acc_rate", "avg_daily_trips")
TTL_DAYS = 3
DAY_US = 86_400_000_000
TARGETS = {"backfill_vs_copy": 1.5, "stats_vs_backfill": 0.25, "training_set_vs_duckdb": 3.0}

DEFS = f"""
entity:
  name: driver
  join_keys: {{driver_id: int64}}
---
source:
  name: driver_stats_raw
  path: raw/driver_stats
  format: parquet
  timestamp: event_timestamp
  created_timestamp: created
---
view:
  name: {VIEW}
  version: 1
  kind: snapshot
  entity: driver
  source: driver_stats_raw
  ttl: {TTL_DAYS}d
  features:
    - {{name: conv_rate, dtype: float64}}
    - {{name: acc_rate, dtype: float64}}
    - {{name: avg_daily_trips, dtype: int64}}
  expectations:
    - {{feature: conv_rate, between: [0, 1]}}
    - {{feature: acc_rate, not_null: true}}
"""


def generate(root: Path, users: int, spine_rows: int) -> dict[str, int]:
    """The raw snapshot rows (one Parquet file, microsecond UTC timestamps) and the spine."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(13)
    rows = users * SNAPSHOTS
    driver = np.repeat(np.arange(users, dtype=np.int64), SNAPSHOTS)
    start_us = int(datetime(FIRST_DAY.year, FIRST_DAY.month, FIRST_DAY.day, tzinfo=UTC).timestamp()) * 10**6
    event = start_us + rng.integers(0, DAYS * DAY_US, rows)
    day = (event - start_us) // DAY_US
    created = event + rng.integers(0, 3_600_000_000, rows)
    conv = rng.beta(2 + day / DAYS, 5, rows)
    acc = rng.beta(8, 2, rows)
    trips = rng.poisson(20 + day / 5, rows)
    dup = rng.choice(rows, int(rows * DUPLICATES), replace=False)
    driver = np.concatenate([driver, driver[dup]])
    event = np.concatenate([event, event[dup]])
    created = np.concatenate([created, created[dup] + 60_000_000])
    conv = np.concatenate([conv, rng.beta(2, 5, len(dup))])
    acc = np.concatenate([acc, rng.beta(8, 2, len(dup))])
    trips = np.concatenate([trips, rng.poisson(20, len(dup))])
    order = np.argsort(event, kind="stable")
    raw = root / "data" / "raw" / "driver_stats"
    raw.mkdir(parents=True, exist_ok=True)
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
    pq.write_table(table, raw / "part-0.parquet", row_group_size=1_000_000)

    # The spine: random (user, time) pairs, plus unknown users, exact ties and TTL edges.
    n_unknown = n_ties = n_edges = spine_rows // 20
    n_random = spine_rows - n_unknown - n_ties - 2 * n_edges
    spine_users = [rng.integers(0, users, n_random), rng.integers(users, users * 2, n_unknown)]
    spine_ts = [start_us + rng.integers(0, DAYS * DAY_US, n_random + n_unknown)]
    tie = rng.integers(0, len(driver), n_ties)  # duplicates included: the later created row answers
    spine_users.append(driver[tie])
    spine_ts.append(event[tie])
    edge = rng.integers(0, len(driver), n_edges)
    ttl_us = TTL_DAYS * DAY_US
    spine_users += [driver[edge], driver[edge]]
    spine_ts += [event[edge] + ttl_us, event[edge] + ttl_us + 1]
    users_all = np.concatenate(spine_users)
    ts_all = np.concatenate(spine_ts)
    shuffle = rng.permutation(len(users_all))
    spine = pa.table(
        {
            "row_id": np.arange(len(users_all), dtype=np.int64),
            "driver_id": users_all[shuffle],
            "event_timestamp": pa.array(ts_all[shuffle], pa.timestamp("us", tz="UTC")),
            "label": rng.random(len(users_all)) < 0.1,
        }
    )
    (root / "spine").mkdir()
    pq.write_table(spine, root / "spine" / "part-0.parquet")
    return {"feature_rows": table.num_rows, "spine_rows": spine.num_rows}


def _conf(root: Path) -> Path:
    conf = root / "skewless.yaml"
    conf.write_text(
        f"defs: {root / 'defs'}\ndata_root: {root / 'data'}\noffline_root: {root / 'offline'}\n"
        'spark:\n  master: local[2]\n  conf:\n    spark.sql.shuffle.partitions: "8"\n'
    )
    (root / "defs").mkdir(exist_ok=True)
    (root / "defs" / "drivers.yaml").write_text(textwrap.dedent(DEFS).lstrip())
    return conf


def _skewless(conf: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "skewless.cli", "--conf", str(conf), *args]


# --- phases from the process's own log lines --------------------------------------------------

_LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) \w+ [\w.]+: (.*)$")


def log_times(stderr: str, started_epoch: float) -> list[tuple[float, str]]:
    """(seconds since the process started, message) of each skewless log line."""
    out = []
    for line in stderr.splitlines():
        match = _LOG_LINE.match(line)
        if match:
            at = datetime.strptime(match[1], "%Y-%m-%d %H:%M:%S,%f").replace(tzinfo=UTC).timestamp()
            out.append((at - started_epoch, match[2]))
    return out


def phases(lines: list[tuple[float, str]], markers: dict[str, str], total: float) -> dict[str, float]:
    """Seconds of each phase: a phase ends at the first log line containing its marker.

    ``markers`` is ordered: phase name -> text that ends it; the last phase ends with the process.
    """
    out: dict[str, float] = {}
    previous = 0.0
    for name, text in markers.items():
        at = next((t for t, message in lines if text in message and t >= previous), None)
        if at is None:
            continue
        out[name] = round(at - previous, 2)
        previous = at
    out["rest (to process exit)"] = round(total - previous, 2)
    return out


BACKFILL_MARKERS = {
    "start (python, JVM, registry, input listing)": "computing",
    "compute (read, rows, stage, structural checks)": "staged",
    "validation gate (Great Expectations)": "expectations passed",
    "commit": "committed",
    "statistics": "statistics of ds",
}
TRAINING_MARKERS = {
    "start (python, JVM, spine listing)": "reading the spine",
    "spine checks": "spine:",
    "Delta pinning and listing": "join over version",
    "join + write": "wrote",
}


# --- the steps ---------------------------------------------------------------------------------

COPY = """
import sys, time
from pyspark.sql import functions as F
from skewless.runtime.settings import load_settings
from skewless.runtime.spark import get_spark
raw, out = sys.argv[1], sys.argv[2]
spark = get_spark(load_settings(sys.argv[3]), app_name="bench-copy")
started = time.perf_counter()
frame = spark.read.parquet(raw).withColumn("ds", F.to_date("event_timestamp"))
frame.write.partitionBy("ds").mode("error").parquet(out)
print(time.perf_counter() - started)
"""

DUCKDB = """
import sys, duckdb
raw, spine, out, ttl = sys.argv[1:5]
con = duckdb.connect()
con.execute("SET TimeZone = 'UTC'; SET threads = 2")
con.execute(f'''
COPY (
  WITH f AS (
    SELECT driver_id, event_timestamp AS feature_ts, conv_rate, acc_rate, avg_daily_trips
    FROM read_parquet('{raw}/*.parquet')
    QUALIFY row_number() OVER (PARTITION BY driver_id, event_timestamp ORDER BY created DESC) = 1
  )
  SELECT s.*,
         CASE WHEN f.feature_ts >= s.event_timestamp - INTERVAL {ttl} DAY THEN f.conv_rate END AS conv_rate,
         CASE WHEN f.feature_ts >= s.event_timestamp - INTERVAL {ttl} DAY THEN f.acc_rate END AS acc_rate,
         CASE WHEN f.feature_ts >= s.event_timestamp - INTERVAL {ttl} DAY THEN f.avg_daily_trips END
           AS avg_daily_trips
  FROM read_parquet('{spine}/*.parquet') s
  ASOF LEFT JOIN f ON s.driver_id = f.driver_id AND s.event_timestamp >= f.feature_ts
) TO '{out}' (FORMAT parquet)
''')
"""


def compare(spark_out: Path, duckdb_out: Path, spine: Path) -> dict[str, int]:
    """Rows of both outputs joined on the spine's row id; every feature compared (nulls equal)."""
    import duckdb

    con = duckdb.connect()
    differs = " OR ".join(f"a.{f} IS DISTINCT FROM b.{f}" for f in FEATURES)
    row = con.execute(
        f"""
        SELECT (SELECT count(*) FROM read_parquet('{spine}/*.parquet')) AS spine,
               (SELECT count(*) FROM read_parquet('{spark_out}/*.parquet')) AS spark,
               (SELECT count(*) FROM read_parquet('{duckdb_out}')) AS duck,
               count(*) AS joined,
               count(*) FILTER (WHERE {differs}) AS mismatches,
               count(*) FILTER (WHERE a.conv_rate IS NOT NULL) AS with_value
        FROM read_parquet('{spark_out}/*.parquet') a JOIN read_parquet('{duckdb_out}') b USING (row_id)
        """
    ).fetchone()
    if row is None:  # pragma: no cover - a global aggregate returns one row
        raise RuntimeError("comparison returned nothing")
    keys = ("spine_rows", "spark_rows", "duckdb_rows", "rows_compared", "mismatches", "rows_with_value")
    return dict(zip(keys, (int(v) for v in row), strict=True))


def _step(result: dict[str, Any], markers: dict[str, str] | None = None) -> dict[str, Any]:
    out = {"seconds": result["seconds"], "peak_rss_mb": result["peak_rss_mb"], "load_at_end": load_average()}
    if markers is not None:
        lines = log_times(result["stderr"], result["started_epoch"])
        out["phases"] = phases(lines, markers, result["seconds"])
    # Progress on stderr: a run stopped half way still tells what it measured.
    print(f"snapshot_workload step: {json.dumps(out)}", file=sys.stderr, flush=True)
    return out


def measure(root: Path, users: int, spine_rows: int) -> dict[str, Any]:
    root.mkdir(parents=True)
    sizes, generate_seconds = timed(generate, root, users, spine_rows)
    conf = _conf(root)
    raw = root / "data" / "raw" / "driver_stats"
    start, end = FIRST_DAY, FIRST_DAY + timedelta(days=DAYS - 1)
    load_before = load_average()
    run_process(_skewless(conf, "apply"))
    backfill = _step(
        run_process(
            _skewless(conf, "backfill", VIEW, "--start", start.isoformat(), "--end", end.isoformat())
        ),
        BACKFILL_MARKERS,
    )
    # The training set and DuckDB back to back (the same load), then the copy.
    spark_out, duck_out = root / "training-set", root / "duckdb.parquet"
    features = ",".join(f"{VIEW}:{f}" for f in FEATURES)
    spine = str(root / "spine")
    training = _step(
        run_process(
            _skewless(conf, "training-set", "--features", features, "--spine", spine, "--out", str(spark_out))
        ),
        TRAINING_MARKERS,
    )
    duck = _step(run_process([sys.executable, "-c", DUCKDB, str(raw), spine, str(duck_out), str(TTL_DAYS)]))
    agreement = compare(spark_out, duck_out, root / "spine")
    print(f"snapshot_workload agreement: {json.dumps(agreement)}", file=sys.stderr, flush=True)
    copy_run = run_process([sys.executable, "-c", COPY, str(raw), str(root / "copy"), str(conf)])
    copy_in_process = float(copy_run["stdout"].strip().splitlines()[-1])
    copy = {**_step(copy_run), "in_process_seconds": round(copy_in_process, 2)}

    bf = backfill["phases"]
    compute_commit = sum(
        bf.get(k, 0.0)
        for k in (
            "compute (read, rows, stage, structural checks)",
            "validation gate (Great Expectations)",
            "commit",
        )
    )
    gate = bf.get("validation gate (Great Expectations)", 0.0)
    stats = bf.get("statistics", 0.0)
    return {
        **sizes,
        "generate_seconds": round(generate_seconds, 1),
        "load_before": load_before,
        "backfill_process": backfill,
        "plain_copy_process": copy,
        "training_set_process": training,
        "duckdb_asof_process": duck,
        "agreement": agreement,
        "ratios": {
            "backfill_compute_gate_commit_vs_copy": round(compute_commit / copy_in_process, 2),
            "backfill_compute_commit_without_gate_vs_copy": round(
                (compute_commit - gate) / copy_in_process, 2
            ),
            "gate_seconds": gate,
            "stats_vs_backfill_compute": round(stats / compute_commit, 3) if compute_commit else None,
            "training_set_vs_duckdb_whole_process": round(training["seconds"] / duck["seconds"], 2),
            "training_set_vs_duckdb_peak_memory": round(training["peak_rss_mb"] / duck["peak_rss_mb"], 2),
        },
    }


def write_table_directly(root: Path, conf: Path) -> None:
    """The view's Delta table written with delta-rs from the raw rows, as a backfill commits them
    (keys, ds, feature_ts, created_ts, features): for timing the training set alone."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    from deltalake import write_deltalake

    from skewless.registry import require_registry
    from skewless.runtime.settings import load_settings

    settings = load_settings(str(conf))
    view = require_registry(settings.registry_uri).view(VIEW)
    raw = pq.read_table(root / "data" / "raw" / "driver_stats")
    micros = np.asarray(raw["event_timestamp"].cast(pa.int64()))
    ds = pa.array((micros // DAY_US).astype(np.int32), pa.date32())
    table = raw.select(["driver_id"]).append_column("ds", ds)
    table = table.append_column("feature_ts", raw["event_timestamp"]).append_column(
        "created_ts", raw["created"]
    )
    for name in FEATURES:
        table = table.append_column(name, raw[name])
    write_deltalake(settings.table_uri(view.table), table, partition_by=["ds"], mode="overwrite")


def measure_training_set(root: Path, users: int, spine_rows: int) -> dict[str, Any]:
    """Only the training set against DuckDB, over a table written directly (no backfill)."""
    root.mkdir(parents=True)
    sizes, generate_seconds = timed(generate, root, users, spine_rows)
    conf = _conf(root)
    run_process(_skewless(conf, "apply"))
    write_table_directly(root, conf)
    raw, spine = root / "data" / "raw" / "driver_stats", str(root / "spine")
    spark_out, duck_out = root / "training-set", root / "duckdb.parquet"
    features = ",".join(f"{VIEW}:{f}" for f in FEATURES)
    load_before = load_average()
    training = _step(
        run_process(
            _skewless(conf, "training-set", "--features", features, "--spine", spine, "--out", str(spark_out))
        ),
        TRAINING_MARKERS,
    )
    duck = _step(run_process([sys.executable, "-c", DUCKDB, str(raw), spine, str(duck_out), str(TTL_DAYS)]))
    return {
        **sizes,
        "generate_seconds": round(generate_seconds, 1),
        "load_before": load_before,
        "training_set_process": training,
        "duckdb_asof_process": duck,
        "agreement": compare(spark_out, duck_out, root / "spine"),
        "training_set_vs_duckdb_whole_process": round(training["seconds"] / duck["seconds"], 2),
        "training_set_vs_duckdb_peak_memory": round(training["peak_rss_mb"] / duck["peak_rss_mb"], 2),
    }


def run(workdir: Path, scale: float, sizes: tuple[str, ...] = ("small", "large")) -> dict[str, Any]:
    out: dict[str, Any] = {"targets": TARGETS}
    if "small" in sizes:
        out["small"] = measure(workdir / "small", int(USERS * scale), int(SPINE_ROWS * scale))
    if "large" in sizes and scale >= 1:
        out["large"] = measure(workdir / "large", int(USERS * scale * LARGE), int(SPINE_ROWS * scale * LARGE))
    if "large-training-set" in sizes:  # development: the join alone at the larger size
        out["large_training_set"] = measure_training_set(
            workdir / "large-training-set", int(USERS * scale * LARGE), int(SPINE_ROWS * scale * LARGE)
        )
    return out


if __name__ == "__main__":  # python -m bench.snapshot_bench SCALE FOLDER [small|large] (FOLDER kept)
    chosen = tuple(sys.argv[3:]) or ("small", "large")
    print(json.dumps(run(Path(sys.argv[2]), float(sys.argv[1]), chosen), indent=2))
