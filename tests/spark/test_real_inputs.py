"""Inputs written by the usual tools: every Parquet timestamp encoding, widened types, spine shapes.

The same events are written by pandas with its defaults (nanoseconds), by pyarrow in ns and ms,
by Spark in microseconds and as INT96 (the legacy writer setting), and by DuckDB's ``COPY``.
Each copy goes through the whole path users run - types read from the footers at compile time
(no ``columns:`` blocks), backfill, training set from a single-file spine, materialize, online
reads - and must give exactly the answers of the microsecond copy.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import write_deltalake

from skewless.compile import compile_tree
from skewless.errors import DataError, SpecError
from skewless.manifest import Manifest
from skewless.offline.delta import delta_tables
from skewless.offline.inputs import inspect_input, source_column_reader
from skewless.offline.jobs import run_view
from skewless.offline.schemas import view_schema
from skewless.online.client import OnlineClient
from skewless.online.materialize import materialize
from skewless.pit.training_set import build_training_set, inspect_spine
from skewless.registry import publish_registry
from skewless.runtime.settings import Settings, SparkSettings
from tests.helpers import write_tree

pytestmark = [pytest.mark.spark, pytest.mark.redis]

# The shape of docs/feature-definitions.md: no `columns:` anywhere; types come from the files.
TREE = {
    "defs.yaml": """
        entity:
          name: merchant
          join_keys: {merchant_id: string}
        ---
        entity:
          name: customer
          join_keys: {customer_id: int64}
        ---
        source:
          name: transactions
          path: transactions
          format: parquet
          timestamp: ts
        ---
        source:
          name: customer_stats_raw
          path: customer_stats
          format: parquet
          timestamp: snapshot_ts
        ---
        view:
          name: merchant_txn
          version: 1
          kind: aggregation
          entity: merchant
          source: transactions
          filter: "status = 'completed'"
          ttl: 30d
          features:
            - {name: txn_count_2d, function: count, window: 2d}
            - {name: amount_sum_3d, function: sum, column: amount, window: 3d}
            - {name: amount_avg_3d, function: avg, column: amount, window: 3d}
            - {name: qty_max_3d, function: max, column: qty, window: 3d}
            - {name: last_amount, function: last, column: amount, window: 3d}
        ---
        view:
          name: customer_stats
          version: 1
          kind: snapshot
          entity: customer
          source: customer_stats_raw
          ttl: 5d
          features:
            - {name: total_orders, dtype: int64}
            - {name: avg_order_value, dtype: float64}
        ---
        service:
          name: fraud
          features: [merchant_txn:txn_count_2d, merchant_txn:amount_sum_3d, merchant_txn:amount_avg_3d,
                     merchant_txn:qty_max_3d, merchant_txn:last_amount,
                     customer_stats:total_orders, customer_stats:avg_order_value]
    """,
}
# Days relative to today: Redis expires keys at feature_ts + ttl on its own clock, so online
# answers need recent data. AT is after the last boundary and in the past.
START = datetime.now(UTC).date() - timedelta(days=8)
END = START + timedelta(days=5)
AT = datetime.combine(END + timedelta(days=1), time(0), tzinfo=UTC)


def _at(day: int, hour: int, minute: int = 0, second: int = 0, micro: int = 0) -> datetime:
    """A time on START + day (naive: UTC)."""
    return datetime.combine(START + timedelta(days=day), time(hour, minute, second, micro))


MERCHANTS = ("m1", "m2", "m3")
CUSTOMERS = (1, 2, 3, 4)


def _transactions() -> pd.DataFrame:
    """Events at whole milliseconds (so the millisecond writer loses nothing), int32 qty, nulls."""
    rows = []
    for day in range(6):
        for index, merchant in enumerate(MERCHANTS):
            for event in range(day % 3 + index):
                ts = _at(day, 1 + event * 5, event, 7, (day * 131 + event) % 1000 * 1000)
                amount = None if (day + event) % 5 == 4 else round(10.5 * (event + 1) + day, 2)
                status = "void" if (day * 7 + event) % 6 == 5 else "completed"
                rows.append((merchant, amount, (day + event) % 4, status, ts))
    frame = pd.DataFrame(rows, columns=["merchant_id", "amount", "qty", "status", "ts"])
    frame["qty"] = frame["qty"].astype("int32")
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
    return frame


def _customer_stats() -> pd.DataFrame:
    rows = []
    for day in range(6):
        for customer in CUSTOMERS:
            if (day + customer) % 3 == 0:
                continue
            ts = _at(day, 6 + customer, 30, 0, customer * 1000)
            rows.append((customer, ts, customer * 10 + day, 12.25 * customer + day * 0.5))
    frame = pd.DataFrame(rows, columns=["customer_id", "snapshot_ts", "total_orders", "avg_order_value"])
    frame["customer_id"] = frame["customer_id"].astype("int32")  # widened to int64 on read
    frame["total_orders"] = frame["total_orders"].astype("int32")
    frame["avg_order_value"] = frame["avg_order_value"].astype("float32")  # exact in float64
    frame["snapshot_ts"] = pd.to_datetime(frame["snapshot_ts"], utc=True)
    return frame


def _spine() -> pd.DataFrame:
    rows = []
    for day in range(1, 8):
        for merchant, customer in zip(MERCHANTS * 2, CUSTOMERS * 2, strict=False):
            hour = (day * 5 + customer) % 24
            rows.append((merchant, customer, _at(day - 1, hour, 0, 0, 1000 * day), day % 2))
    frame = pd.DataFrame(rows, columns=["merchant_id", "customer_id", "event_timestamp", "label"])
    frame["customer_id"] = frame["customer_id"].astype("int32")
    frame["event_timestamp"] = pd.to_datetime(frame["event_timestamp"], utc=True)
    return frame


# --- writers: each puts a pandas frame into `folder` the way its tool does ---------------------

Writer = Callable[[Any, pd.DataFrame, Path], None]


def _pyarrow(unit: str) -> Writer:
    def write(spark: Any, frame: pd.DataFrame, folder: Path) -> None:
        folder.mkdir(parents=True)
        table = pa.Table.from_pandas(frame, preserve_index=False)
        # Every timestamp column in `unit` (pyarrow writes ns as TIMESTAMP(NANOS) with format 2.6).
        schema = pa.schema(
            [
                pa.field(f.name, pa.timestamp(unit, tz=f.type.tz)) if pa.types.is_timestamp(f.type) else f
                for f in table.schema
            ]
        )
        pq.write_table(table.cast(schema), folder / "data.parquet")

    return write


def _pandas_defaults(spark: Any, frame: pd.DataFrame, folder: Path) -> None:
    folder.mkdir(parents=True)
    frame.to_parquet(folder / "data.parquet")  # TIMESTAMP(NANOS,true): what most users have


def _spark(int96: bool) -> Writer:
    def write(spark: Any, frame: pd.DataFrame, folder: Path) -> None:
        key = "spark.sql.parquet.outputTimestampType"
        previous = spark.conf.get(key)
        spark.conf.set(key, "INT96" if int96 else "TIMESTAMP_MICROS")
        try:
            spark.createDataFrame(frame).repartition(2).write.parquet(str(folder))
        finally:
            spark.conf.set(key, previous)

    return write


def _duckdb(spark: Any, frame: pd.DataFrame, folder: Path) -> None:
    folder.mkdir(parents=True)
    connection = duckdb.connect()
    connection.register("frame", frame)
    connection.execute(f"COPY (SELECT * FROM frame) TO '{folder / 'data.parquet'}' (FORMAT parquet)")
    connection.close()


WRITERS: dict[str, Writer] = {
    "pyarrow_us": _pyarrow("us"),
    "pandas_defaults": _pandas_defaults,
    "pyarrow_ns": _pyarrow("ns"),
    "pyarrow_ms": _pyarrow("ms"),
    "spark_us": _spark(int96=False),
    "spark_int96": _spark(int96=True),
    "duckdb": _duckdb,
}


def _timestamp_encoding(folder: Path, column: str) -> str:
    """What the footer says (physical type and unit), so each case tests the encoding it names."""
    schema = pq.ParquetFile(sorted(folder.rglob("*.parquet"))[0]).schema
    leaf = schema.column(schema.names.index(column))
    return f"{leaf.physical_type} {leaf.logical_type}"


def _deploy(root: Path) -> tuple[Settings, Manifest]:
    defs = write_tree(root / "defs", TREE)
    settings = Settings(
        defs=str(defs),
        data_root=str(root / "data"),
        offline_root=str(root / "offline"),
        spark=SparkSettings(master="local[2]"),
    )
    manifest = compile_tree(defs, source_column_reader(settings))
    publish_registry(settings.registry_uri, manifest)
    return settings, manifest


def _pipeline(spark: Any, root: Path, write: Writer, redis_url: str) -> dict[str, Any]:
    data = root / "data"
    write(spark, _transactions(), data / "transactions")
    write(spark, _customer_stats(), data / "customer_stats")
    write(spark, _spine(), root / "spine")
    settings, manifest = _deploy(root)
    settings = settings.model_copy(update={"redis_url": redis_url})
    offline = {}
    for view in ("merchant_txn", "customer_stats"):
        run_view(spark, settings, manifest, view, START, END)
        spec = manifest.view(view)
        rows = delta_tables(spark).read(settings.table_uri(spec.table), view_schema(spec)).drop("created_ts")
        offline[view] = sorted(tuple(r) for r in rows.collect())
        materialize(spark, settings, manifest, view, START, END, now=AT)
    spine_file = next((root / "spine").rglob("*.parquet")) if write is _pandas_defaults else root / "spine"
    out = root / "training"
    build_training_set(
        spark, settings, manifest, spine=inspect_spine(str(spine_file)), out=str(out), service="fraud"
    )
    training = sorted(
        tuple(r)
        for r in spark.read.parquet(str(out))
        .orderBy("merchant_id", "customer_id", "event_timestamp")
        .collect()
    )
    with OnlineClient(settings, manifest) as client:
        online = client.get_online_features(
            [{"merchant_id": m, "customer_id": c} for m in MERCHANTS for c in CUSTOMERS],
            service="fraud",
            now=AT,
        )
    return {"offline": offline, "training": training, "online": online, "manifest": manifest}


@pytest.fixture(scope="module")
def reference(spark: Any, tmp_path_factory: pytest.TempPathFactory, redis_server: Any) -> dict[str, Any]:
    import redis

    redis.Redis.from_url(redis_server.url).flushall()
    return _pipeline(spark, tmp_path_factory.mktemp("reference"), WRITERS["pyarrow_us"], redis_server.url)


@pytest.mark.parametrize("writer", [w for w in WRITERS if w != "pyarrow_us"])
def test_every_writer_gives_the_answers_of_microsecond_parquet(
    spark: Any, tmp_path: Path, redis_url: str, reference: dict[str, Any], writer: str
) -> None:
    result = _pipeline(spark, tmp_path, WRITERS[writer], redis_url)
    encoding = _timestamp_encoding(tmp_path / "data" / "transactions", "ts")
    expected_encoding = {
        "pandas_defaults": "nanoseconds",
        "pyarrow_ns": "nanoseconds",
        "pyarrow_ms": "milliseconds",
        "spark_us": "microseconds",
        "spark_int96": "INT96",
        "duckdb": "microseconds",
    }[writer]
    assert expected_encoding in encoding, encoding
    # The feature types were read from each writer's footers and agree.
    assert result["manifest"].registry_hash == reference["manifest"].registry_hash
    assert result["offline"] == reference["offline"]
    assert result["training"] == reference["training"]
    assert result["online"] == reference["online"]


def test_the_reference_itself_has_values_and_nulls(reference: dict[str, Any]) -> None:
    """Guard against a vacuous comparison: the answers hold real values, nulls and widened types."""
    training = reference["training"]
    assert len(training) == len(_spine())
    assert any(v is None for row in training for v in row)
    assert {type(row[2]) for row in training} == {datetime}
    online = reference["online"]
    assert any(isinstance(r["total_orders"], int) and r["total_orders"] > 0 for r in online)
    assert any(isinstance(r["avg_order_value"], float) for r in online)
    view = reference["manifest"].view("merchant_txn")
    assert {f.name: f.dtype for f in view.features}["amount_sum_3d"] == "float64"
    assert {f.name: f.dtype for f in view.features}["qty_max_3d"] == "int64"  # int32 in the files


def test_a_spine_as_one_file_a_folder_a_glob_and_a_delta_table_gives_identical_output(
    spark: Any, tmp_path: Path
) -> None:
    settings, manifest = _deploy_written(spark, tmp_path)
    spine = _spine()
    table = pa.Table.from_pandas(spine, preserve_index=False)
    single = tmp_path / "spines" / "labels.parquet"
    single.parent.mkdir(parents=True)
    spine.to_parquet(single)
    folder = tmp_path / "spines" / "folder"
    folder.mkdir()
    pq.write_table(table.slice(0, 10), folder / "a.parquet")
    pq.write_table(table.slice(10), folder / "b.parquet")
    (folder / "_SUCCESS").write_text("")
    delta = tmp_path / "spines" / "delta"
    write_deltalake(str(delta), table.cast(_micros(table.schema)))
    outputs = {}
    for name, path in {
        "file": single,
        "folder": folder,
        "glob": tmp_path / "spines" / "folder" / "*.parquet",
        "delta": delta,
    }.items():
        out = tmp_path / f"out-{name}"
        record = build_training_set(
            spark, settings, manifest, spine=inspect_spine(str(path)), out=str(out), service="fraud"
        )
        assert record.spine_rows == len(spine)
        assert record.spine_fingerprint
        outputs[name] = sorted(tuple(r) for r in spark.read.parquet(str(out)).collect())
    assert outputs["file"] == outputs["folder"] == outputs["glob"] == outputs["delta"]
    assert any(v is not None for row in outputs["file"] for v in row[4:])


def _micros(schema: pa.Schema) -> pa.Schema:
    return pa.schema(
        [
            pa.field(f.name, pa.timestamp("us", tz="UTC")) if pa.types.is_timestamp(f.type) else f
            for f in schema
        ]
    )


def _deploy_written(spark: Any, root: Path) -> tuple[Settings, Manifest]:
    data = root / "data"
    _pandas_defaults(spark, _transactions(), data / "transactions")
    _pandas_defaults(spark, _customer_stats(), data / "customer_stats")
    settings, manifest = _deploy(root)
    for view in ("merchant_txn", "customer_stats"):
        run_view(spark, settings, manifest, view, START, END)
    return settings, manifest


def test_events_500ns_apart_are_the_same_microsecond_and_follow_the_tie_rule(
    spark: Any, tmp_path: Path
) -> None:
    """Nanoseconds truncate to microseconds (docs/semantics.md): `last` then breaks the tie by value."""
    base = pd.Timestamp("2024-03-02 12:00:00", tz="UTC")
    frame = pd.DataFrame(
        {
            "merchant_id": ["m1", "m1", "m2", "m2"],
            "amount": [5.0, 3.0, 3.0, 5.0],
            "qty": pd.array([1, 1, 1, 1], dtype="int32"),
            "status": ["completed"] * 4,
            # m1: 500 ns apart inside one microsecond (3.0 is later but ties: the larger value wins);
            # m2: 1 ns apart across a microsecond boundary (order kept: 5.0 is the latest).
            "ts": [
                base + pd.Timedelta(nanoseconds=100),
                base + pd.Timedelta(nanoseconds=600),
                base + pd.Timedelta(nanoseconds=999),
                base + pd.Timedelta(nanoseconds=1000),
            ],
        }
    )
    _pandas_defaults(spark, frame, tmp_path / "data" / "transactions")
    _pandas_defaults(spark, _customer_stats(), tmp_path / "data" / "customer_stats")
    settings, manifest = _deploy(tmp_path)
    run_view(spark, settings, manifest, "merchant_txn", date(2024, 3, 2))
    spec = manifest.view("merchant_txn")
    rows = delta_tables(spark).read(settings.table_uri(spec.table), view_schema(spec)).collect()
    last = {r["merchant_id"]: r["last_amount"] for r in rows}
    assert last == {"m1": 5.0, "m2": 5.0}
    counts = {r["merchant_id"]: r["txn_count_2d"] for r in rows}
    assert counts == {"m1": 2, "m2": 2}  # truncation merges times, never events


def test_decimal_and_unsigned_columns(spark: Any, tmp_path: Path) -> None:
    """Decimals read as float64 (documented); an unsigned 64-bit key cannot be cast safely."""
    frame = _transactions()
    table = pa.Table.from_pandas(frame, preserve_index=False)
    amounts = pa.array(
        [None if v is None or v != v else round(v, 2) for v in frame["amount"]], type=pa.float64()
    ).cast(pa.decimal128(12, 2))
    table = table.set_column(table.schema.get_field_index("amount"), "amount", amounts)
    (tmp_path / "data" / "transactions").mkdir(parents=True)
    pq.write_table(table, tmp_path / "data" / "transactions" / "data.parquet")
    _pandas_defaults(spark, _customer_stats(), tmp_path / "data" / "customer_stats")
    settings, manifest = _deploy(tmp_path)
    assert {f.name: f.dtype for f in manifest.view("merchant_txn").features}["amount_sum_3d"] == "float64"
    run_view(spark, settings, manifest, "merchant_txn", START, END)
    spec = manifest.view("merchant_txn")
    sums = [
        r["amount_sum_3d"]
        for r in delta_tables(spark).read(settings.table_uri(spec.table), view_schema(spec)).collect()
    ]
    assert any(isinstance(v, float) and v > 0 for v in sums)

    stats = _customer_stats()
    unsigned = pa.Table.from_pandas(stats, preserve_index=False)
    unsigned = unsigned.set_column(0, "customer_id", unsigned.column("customer_id").cast(pa.uint64()))
    target = tmp_path / "data" / "customer_stats" / "data.parquet"
    pq.write_table(unsigned, target)
    with pytest.raises(
        DataError, match=r"column 'customer_id'.*join key must be int64, found decimal\(20,0\)"
    ):
        run_view(spark, settings, manifest, "customer_stats", START, END)


def test_a_string_date_partition_column_prunes_hive_folders(spark: Any, tmp_path: Path) -> None:
    frame = _transactions()
    frame["event_date"] = frame["ts"].dt.strftime("%Y-%m-%d")
    folder = tmp_path / "data" / "transactions"
    pq.write_to_dataset(
        pa.Table.from_pandas(frame, preserve_index=False), str(folder), partition_cols=["event_date"]
    )
    _pandas_defaults(spark, _customer_stats(), tmp_path / "data" / "customer_stats")
    files = {
        "defs.yaml": TREE["defs.yaml"].replace(
            "timestamp: ts\n", "timestamp: ts\n          partition_column: event_date\n", 1
        )
    }
    defs = write_tree(tmp_path / "defs", files)
    settings = Settings(
        defs=str(defs), data_root=str(tmp_path / "data"), offline_root=str(tmp_path / "offline")
    )
    manifest = compile_tree(defs, source_column_reader(settings))
    inputs = inspect_input(str(folder))
    assert inputs.partition_columns == ("event_date",)
    publish_registry(settings.registry_uri, manifest)
    # A broken file in the last day's folder: a run for an earlier day never opens it (pruned before reading).
    (folder / f"event_date={END}" / "broken.parquet").write_text("not parquet")
    day = START + timedelta(days=3)
    result = run_view(spark, settings, manifest, "merchant_txn", day)
    assert result.raw_days_read == tuple(START + timedelta(days=d) for d in range(4))
    assert result.rows > 0


def test_validate_reads_types_when_the_source_is_there_and_says_what_to_declare_when_not(
    tmp_path: Path,
) -> None:
    defs = write_tree(tmp_path / "defs", TREE)
    settings = Settings(defs=str(defs), data_root=str(tmp_path / "data"), offline_root=str(tmp_path / "o"))
    with pytest.raises(SpecError) as missing:
        compile_tree(defs, source_column_reader(settings))
    text = str(missing.value)
    assert (
        "cannot tell the type of sum(amount): declare 'amount' under the columns of source 'transactions'"
        in text
    )
    assert "could not be read" in text
    assert "transactions: no such file or directory" in text

    folder = tmp_path / "data" / "transactions"
    folder.mkdir(parents=True)
    _transactions().to_parquet(folder / "data.parquet")
    (tmp_path / "data" / "customer_stats").mkdir()
    _customer_stats().to_parquet(tmp_path / "data" / "customer_stats" / "data.parquet")
    manifest = compile_tree(defs, source_column_reader(settings))
    assert manifest.view("merchant_txn").features[1].dtype == "float64"
    # Types read from files stay out of the registry: a PR check without data and a deploy with
    # data agree on everything but what could not be known.
    assert manifest.sources["transactions"].columns is None

    broken = write_tree(
        tmp_path / "defs2",
        {"defs.yaml": TREE["defs.yaml"].replace("column: qty", "column: quantity")},
    )
    with pytest.raises(SpecError, match=r"column 'quantity' is not in source 'transactions' \(read from"):
        compile_tree(broken, source_column_reader(settings))


def test_naive_timestamps_are_utc(spark: Any, tmp_path: Path) -> None:
    """A timestamp without a zone (pandas naive, TIMESTAMP(NANOS,false)) is read as UTC."""
    aware = _transactions()
    naive = aware.copy()
    naive["ts"] = naive["ts"].dt.tz_localize(None)
    results = []
    for name, frame in (("aware", aware), ("naive", naive)):
        root = tmp_path / name
        _pandas_defaults(spark, frame, root / "data" / "transactions")
        _pandas_defaults(spark, _customer_stats(), root / "data" / "customer_stats")
        settings, manifest = _deploy(root)
        run_view(spark, settings, manifest, "merchant_txn", START, END)
        spec = manifest.view("merchant_txn")
        rows = delta_tables(spark).read(settings.table_uri(spec.table), view_schema(spec)).drop("created_ts")
        results.append(sorted(tuple(r) for r in rows.collect()))
    assert results[0] == results[1]
    # The first events (day 0, read as UTC) make the first rows: feature_ts = B(START), naive UTC.
    assert min(row[2] for row in results[0]) == datetime.combine(START + timedelta(days=1), time(0))
