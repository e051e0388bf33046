"""``make demo``: the whole pipeline on embedded defaults, end to end.

Generates a few weeks of card transactions and nightly customer-statistics exports (dated up to
yesterday, so online TTLs are live), then: validate -> plan -> apply -> backfill -> materialize ->
the nightly Airflow DAG for yesterday (``dag.test()``) -> a training set for ``fraud_model_v1`` ->
online reads -> a skew check -> the catalog site (``skewless docs``; its address is the last line
printed). Everything lives under ``.skewless/demo/``; a private redis-server is started on a free
port and stopped at the end.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / ".skewless" / "demo"
AIRFLOW_HOME = DEMO / "airflow"

# Airflow reads its configuration on first import: a private home with SQLite, set up front.
os.environ.update(
    {
        "TZ": "UTC",
        "AIRFLOW_HOME": str(AIRFLOW_HOME),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{AIRFLOW_HOME / 'airflow.db'}",
        "AIRFLOW__CORE__PARALLELISM": "2",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
    }
)

MERCHANTS = 300
CUSTOMERS = 2_000
HISTORY_DAYS = 40
BACKFILL_DAYS = 6


@contextmanager
def step(title: str) -> Iterator[None]:
    started = time.perf_counter()
    print(f"\n==> {title}", flush=True)
    yield
    print(f"    done in {time.perf_counter() - started:.1f} s", flush=True)


def generate(data_root: Path, yesterday: date, seed: int = 7) -> dict[str, int]:
    """Card transactions partitioned by event_date, and nightly customer statistics exports."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = random.Random(seed)
    first = yesterday - timedelta(days=HISTORY_DAYS - 1)
    merchants = [f"m{i:04d}" for i in range(MERCHANTS)]
    weights = [1 / (i + 1) ** 0.7 for i in range(MERCHANTS)]
    fraudsters = set(rng.sample(merchants, 6))
    schema = pa.schema(
        [
            ("txn_id", pa.string()),
            ("merchant_id", pa.string()),
            ("customer_id", pa.int64()),
            ("amount", pa.float64()),
            ("status", pa.string()),
            ("ts", pa.timestamp("us", tz="UTC")),
            ("event_date", pa.string()),
            ("is_fraud", pa.bool_()),
        ]
    )
    transactions = 0
    for offset in range(HISTORY_DAYS):
        day = first + timedelta(days=offset)
        rows = []
        for n in range(rng.randrange(1_200, 1_800)):
            merchant = rng.choices(merchants, weights)[0]
            burst = merchant in fraudsters and offset >= HISTORY_DAYS - 10 and rng.random() < 0.5
            amount = round(rng.lognormvariate(6.5 if burst else 3.5, 0.9), 2)
            rows.append(
                {
                    "txn_id": f"t{offset:03d}{n:05d}",
                    "merchant_id": merchant,
                    "customer_id": rng.randrange(CUSTOMERS),
                    "amount": amount if rng.random() > 0.005 else None,
                    "status": "completed" if rng.random() < 0.96 else "declined",
                    "ts": datetime.combine(day, datetime.min.time(), UTC)
                    + timedelta(seconds=rng.uniform(0, 86_399)),
                    "event_date": day.isoformat(),
                    "is_fraud": burst and rng.random() < 0.7,
                }
            )
        folder = data_root / "raw" / "transactions" / f"event_date={day.isoformat()}"
        folder.mkdir(parents=True, exist_ok=True)
        table = pa.Table.from_pylist(rows, schema=schema).drop_columns(["event_date"])
        pq.write_table(table, folder / "part-0.parquet")
        transactions += len(rows)

    stats = []
    for offset in range(BACKFILL_DAYS + 1):
        day = yesterday - timedelta(days=BACKFILL_DAYS - offset)
        exported = datetime.combine(day, datetime.min.time(), UTC) + timedelta(hours=2)
        for customer in range(CUSTOMERS):
            if rng.random() < 0.1:
                continue  # not every customer is in every export
            orders = customer % 40 + offset
            stats.append(
                {
                    "customer_id": customer,
                    "snapshot_ts": exported,
                    "exported_at": exported + timedelta(minutes=5),
                    "total_orders": orders,
                    "avg_order_value": round(20 + (customer % 97) * 1.5 + rng.random(), 2),
                    "days_since_last_order": rng.randrange(0, 60),
                    "segment": rng.choice(["new", "regular", "vip"]),
                    "is_subscriber": customer % 3 == 0,
                    # A 16-dimensional embedding that drifts a little every day (float32).
                    "embedding": [
                        math.sin(customer * 0.37 + dim) + 0.01 * offset * rng.random() for dim in range(16)
                    ],
                    "last_order_ts": exported
                    - timedelta(days=rng.randrange(0, 60), microseconds=rng.randrange(86_400_000_000)),
                }
            )
    folder = data_root / "raw" / "customer_stats"
    folder.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist(stats)
    float32s = table.column("embedding").cast(pa.list_(pa.float32()))
    table = table.set_column(table.schema.get_field_index("embedding"), "embedding", float32s)
    pq.write_table(table, folder / "part-0.parquet")
    return {"transactions": transactions, "customer_stats_rows": len(stats)}


def spine(data_root: Path, out: Path, yesterday: date) -> int:
    """Labelled transactions of the last week: the rows a fraud model trains on."""
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    dataset = ds.dataset(data_root / "raw" / "transactions", format="parquet", partitioning="hive")
    since = datetime.combine(yesterday - timedelta(days=6), datetime.min.time(), UTC)
    # amount: the request field of the on-demand txn_risk features (their request_ts is the spine's time).
    table = dataset.to_table(
        columns=["merchant_id", "customer_id", "amount", "ts", "is_fraud"], filter=pc.field("ts") >= since
    ).rename_columns(["merchant_id", "customer_id", "amount", "event_timestamp", "is_fraud"])
    import pyarrow.parquet as pq

    out.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, out / "part-0.parquet")
    return int(table.num_rows)


def main() -> int:
    from skewless.compile import compile_tree
    from skewless.devstack.local_redis import LocalRedis
    from skewless.plan import plan, render_text
    from skewless.registry import publish_registry, read_registry
    from skewless.runtime.settings import load_settings

    shutil.rmtree(DEMO, ignore_errors=True)
    DEMO.mkdir(parents=True)
    today = datetime.now(UTC).date()
    yesterday = today - timedelta(days=1)
    data_root = DEMO / "data"

    with LocalRedis(workdir=DEMO / "redis") as redis_server:
        conf = DEMO / "conf.yaml"
        conf.write_text(
            f"defs: {REPO / 'feature_defs'}\ndata_root: {data_root}\noffline_root: {DEMO / 'offline'}\n"
            f"redis_url: {redis_server.url}\nspark:\n  master: local[2]\n"
            "  conf:\n    spark.sql.shuffle.partitions: '4'\n"
        )
        os.environ["SKEWLESS_CONF"] = str(conf)
        settings = load_settings(conf)
        print(f"skewless demo: data up to {yesterday} (UTC), everything under {DEMO}")
        print(f"private redis-server at {redis_server.url}")

        with step("generate raw data"):
            counts = generate(data_root, yesterday)
            print(
                f"    {counts['transactions']} transactions over {HISTORY_DAYS} days, "
                f"{counts['customer_stats_rows']} customer statistics rows"
            )

        with step("validate, plan and apply feature_defs/"):
            manifest = compile_tree(Path(settings.defs))
            print(f"    OK: {len(manifest.views)} views, {len(manifest.services)} services")
            print(
                "    "
                + render_text(plan(read_registry(settings.registry_uri), manifest)).replace("\n", "\n    ")
            )
            publish_registry(settings.registry_uri, manifest)

        from skewless.orchestration import run_range
        from skewless.runtime.spark import get_spark

        spark = get_spark(settings, app_name="skewless-demo")
        start = yesterday - timedelta(days=BACKFILL_DAYS)
        before = yesterday - timedelta(days=1)
        with step(f"backfill {start}..{before} (one Spark job per view, validated before commit)"):
            for view in ("merchant_txn", "customer_stats"):
                result = run_range(spark, settings, manifest, view, start, before)
                print(
                    f"    {view}: {result.run.rows} rows, table version {result.run.table_version}, "
                    f"read {len(result.run.raw_days_read)} days of raw data"
                )

        from skewless.online.materialize import materialize

        with step(f"materialize {start}..{before} into Redis"):
            for view in ("merchant_txn", "customer_stats"):
                published = materialize(spark, settings, manifest, view, start, before)
                print(f"    {view}: {published.written} keys written, {published.tombstones} tombstones")

        with step(
            f"nightly Airflow DAGs for ds={yesterday} "
            "(dag.test: compute -> validate -> commit -> materialize -> stats)"
        ):
            airflow = Path(sys.executable).parent / "airflow"
            subprocess.run(
                [str(airflow), "db", "migrate"], check=True, capture_output=True, env=os.environ.copy()
            )
            from airflow.dag_processing.dagbag import DagBag

            bag = DagBag(dag_folder=str(REPO / "dags"))
            if bag.import_errors:
                raise SystemExit(f"DAG import errors: {bag.import_errors}")
            for view in ("merchant_txn", "customer_stats"):
                dag = bag.dags[f"skewless__{view}"]
                run = dag.test(logical_date=datetime.combine(today, datetime.min.time(), UTC))
                print(f"    {dag.dag_id}: {run.state} (data interval {run.data_interval_start:%Y-%m-%d})")
                if str(run.state) != "success":
                    raise SystemExit(f"{dag.dag_id} failed; see {AIRFLOW_HOME}/logs")

        from skewless.pit.training_set import build_training_set, inspect_spine

        with step("training set for fraud_model_v1 (point-in-time join)"):
            spine_rows = spine(data_root, DEMO / "spines" / "fraud", yesterday)
            out = DEMO / "training" / "fraud_model_v1"
            record = build_training_set(
                spark,
                settings,
                manifest,
                spine=inspect_spine(str(DEMO / "spines" / "fraud")),
                out=str(out),
                service="fraud_model_v1",
                timestamp_column="event_timestamp",
            )
            tables = ", ".join(
                f"{n} at Delta version {t.version} ({t.path} join)" for n, t in sorted(record.tables.items())
            )
            print(f"    {record.spine_rows} rows (spine had {spine_rows}) -> {out}")
            print(f"    pinned tables: {tables}")
            sample = spark.read.parquet(str(out)).where("is_fraud").limit(2).collect()
            for row in sample:
                print(f"    e.g. {json.dumps(row.asDict(), default=str)}")

        from skewless.online.client import OnlineClient

        with step("online reads with request fields (same columns and values as the training join)"):
            with OnlineClient(settings, manifest) as client:
                # amount is a request field of the on-demand txn_risk features, computed at request time.
                entities = [
                    {"merchant_id": "m0000", "customer_id": 7, "amount": 35.0},
                    {"merchant_id": "m0042", "customer_id": 1234, "amount": 2400.0},
                    {"merchant_id": "never-seen", "customer_id": -1, "amount": 10.0},
                ]
                started = time.perf_counter()
                answers = client.get_online_features(entities, service="fraud_model_v1")
                elapsed = (time.perf_counter() - started) * 1000
            for answer in answers:
                print(f"    {json.dumps(answer, default=str)}")
            print(
                f"    ({len(entities)} entities x 2 stored views in one round trip, then txn_risk:"
                f" {elapsed:.2f} ms)"
            )

        from skewless import FeatureStore

        with step("Python API (skewless.FeatureStore): a pandas entity_df, an on-demand feature"):
            import pyarrow.parquet as pq

            labels = pq.read_table(DEMO / "spines" / "fraud").to_pandas().tail(5)  # the latest: with values
            with FeatureStore(settings=settings, spark=spark) as store:
                training = store.get_historical_features(
                    entity_df=labels, features=["merchant_txn:txn_count_7d", "txn_risk:amount_zscore"]
                )
                print("    " + training.to_df().to_string(index=False).replace("\n", "\n    "))
                online = store.get_online_features(
                    features=["merchant_txn:txn_count_7d", "txn_risk:amount_zscore"],
                    entity_rows=[{"merchant_id": "m0000", "amount": 35.0}],
                )
                print(f"    online: {online.to_dict()}")

        from skewless.online.skew import check_skew

        mismatches = 0
        with step("skew check: online now vs the training join at now"):
            for view in ("merchant_txn", "customer_stats"):
                report = check_skew(spark, settings, manifest, view, sample=300)
                mismatches += len(report.mismatches)
                print(
                    f"    {view}: {report.entities} entities ({report.with_values} with values), "
                    f"{len(report.mismatches)} mismatches"
                )

        spark.stop()

        from skewless.catalog_site.gather import build_site

        with step("catalog site (skewless docs): search, lineage, plots over time"):
            site = build_site(settings, manifest, DEMO / "site", defs=Path(settings.defs))
            for problem in site.problems:
                print(f"    warning: {problem}")
            print(f"    {site.pages} pages, {site.reports} validation reports")

    print(
        f"""
Summary
  registry:        {settings.registry_uri}
  offline tables:  {DEMO / "offline" / "views"}  (Delta; open with deltalake.DeltaTable)
  validation:      {DEMO / "offline" / "_reports"}
  statistics:      {DEMO / "offline" / "_stats"}
  training set:    {DEMO / "training" / "fraud_model_v1"}  (+ _skewless_training_set.json)
  airflow logs:    {AIRFLOW_HOME / "logs"}
  try:             .venv/bin/skewless --conf {conf} plan
  skew:            {"none" if mismatches == 0 else f"{mismatches} MISMATCHES"}
  catalog site:    {site.index.resolve().as_uri()}  (open it in a browser; no server needed)
"""
    )
    return 0 if mismatches == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
