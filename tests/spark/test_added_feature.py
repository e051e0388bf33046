"""Adding a feature to a view without a version bump, end to end (docs/feature-definitions.md,
"Changes and versions"): plan -> apply -> run -> backfill -> materialize -> training set ->
get-online -> check-skew through the real CLI, with Spark, Delta and redis-server.

The reference at every step is a from-scratch backfill of the same view with every feature, in
a separate offline root over the same raw data.
"""

from __future__ import annotations

import json
import random
import struct
import textwrap
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable

from skewless.cli import main
from skewless.compile import compile_tree
from skewless.errors import TableError
from skewless.manifest import ViewSpec
from skewless.offline.delta import CommitInfo, delta_tables, partition_columns
from skewless.offline.jobs import days_between, run_view
from skewless.offline.schemas import view_schema
from skewless.registry import read_registry
from skewless.runtime.settings import Settings
from tests.helpers import write_parquet, write_tree

pytestmark = [pytest.mark.spark, pytest.mark.redis]

LAG = timedelta(hours=1)
HEAD = """
    entity:
      name: merchant
      join_keys: {merchant_id: string}
    ---
    source:
      name: txns
      path: txns
      format: parquet
      timestamp: ts
      partition_column: event_date
      columns: {merchant_id: string, amount: float64, qty: int64, ts: timestamp, event_date: string}
    ---
    view:
      name: spend
      version: 1
      kind: aggregation
      entity: merchant
      source: txns
      ttl: 3d
      availability_lag: 1h
      features:
"""
OLD_FEATURES = """
        - {name: n_3d, function: count, window: 3d}
        - {name: amount_sum_3d, function: sum, column: amount, window: 3d}
"""
# Added in the middle and at the end; last_amount and qty_max_3d need new tile columns (a struct
# and a plain one), amount_avg_2d only tile columns the view already has.
ALL_FEATURES = """
        - {name: n_3d, function: count, window: 3d}
        - {name: last_amount, function: last, column: amount, window: 2d}
        - {name: amount_sum_3d, function: sum, column: amount, window: 3d}
        - {name: qty_max_3d, function: max, column: qty, window: 3d}
        - {name: amount_avg_2d, function: avg, column: amount, window: 2d}
"""
ADDED = ("last_amount", "qty_max_3d", "amount_avg_2d")
RAW_SCHEMA = pa.schema(
    [
        ("merchant_id", pa.string()),
        ("amount", pa.float64()),
        ("qty", pa.int64()),
        ("ts", pa.timestamp("us", tz="UTC")),
        ("event_date", pa.string()),
    ]
)


def tree(features: str) -> dict[str, str]:
    return {"defs.yaml": textwrap.dedent(HEAD) + textwrap.indent(textwrap.dedent(features).strip("\n"), "  ")}


def raw_events(days: list[date]) -> list[dict[str, Any]]:
    rng = random.Random(5)
    out = []
    for day in days:
        midnight = datetime(day.year, day.month, day.day, tzinfo=UTC)
        merchants = [f"m{i}" for i in range(4)] + (["gone"] if day < days[4] else [])
        for _ in range(12):
            out.append(
                {
                    "merchant_id": rng.choice(merchants),
                    "amount": None if rng.random() < 0.1 else round(rng.uniform(1, 100), 2),
                    "qty": rng.randrange(1, 20),
                    "ts": midnight + timedelta(seconds=rng.randrange(86400)),
                    "event_date": str(day),
                }
            )
    return out


def same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return struct.pack(">d", a) == struct.pack(">d", b)
    return type(a) is type(b) and bool(a == b)


def table_rows(spark: Any, settings: Settings, view: ViewSpec) -> dict[tuple[str, date], dict[str, Any]]:
    """The view's committed rows by (entity, ds), read as every job reads them (explicit schema)."""
    rows = delta_tables(spark).read(settings.table_uri(view.table), view_schema(view)).collect()
    return {(r["merchant_id"], r["ds"]): r.asDict() for r in rows}


def test_added_feature_end_to_end(
    spark: Any, tmp_path: Path, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    now = datetime.now(UTC)
    last = (now - LAG).date() - timedelta(days=1)  # the latest ds available now: the nightly run
    days = days_between(last - timedelta(days=9), last)
    before, nightly = days[:-1], days[-1]
    write_parquet(
        tmp_path / "data" / "txns",
        raw_events(days_between(days[0] - timedelta(days=3), last)),
        RAW_SCHEMA,
        "event_date",
    )
    defs = write_tree(tmp_path / "defs", tree(OLD_FEATURES))
    settings = Settings(
        defs=str(defs),
        data_root=str(tmp_path / "data"),
        offline_root=str(tmp_path / "offline"),
        redis_url=redis_url,
    )
    conf = tmp_path / "conf.yaml"
    conf.write_text(
        f"defs: {defs}\ndata_root: {settings.data_root}\n"
        f"offline_root: {settings.offline_root}\nredis_url: {redis_url}\n"
    )

    def cli(*args: str) -> str:
        code = main(["--conf", str(conf), *args])
        out = capsys.readouterr().out
        assert code == 0, out
        return out

    # The reference: every feature, backfilled from scratch (the same raw data, another root).
    fresh = settings.model_copy(update={"offline_root": str(tmp_path / "fresh")})
    full = compile_tree(write_tree(tmp_path / "full_defs", tree(ALL_FEATURES)))
    run_view(spark, fresh, full, "spend", days[0], last)
    grown = full.view("spend")
    expected = table_rows(spark, fresh, grown)
    features = list(grown.feature_names)
    entities = ["m0", "m1", "m2", "m3", "gone", "never-seen"]

    spine = tmp_path / "spine.parquet"
    moments = [datetime.combine(d + timedelta(days=1), datetime.min.time(), tzinfo=UTC) + LAG for d in days]
    pq.write_table(
        pa.table(
            {
                "merchant_id": [e for _ in [*moments, now] for e in entities],
                "event_timestamp": pa.array(
                    [m for m in [*moments, now] for _ in entities], pa.timestamp("us", tz="UTC")
                ),
            }
        ),
        spine,
    )
    sets = iter(range(100))

    def training(names: list[str]) -> dict[tuple[str, datetime], dict[str, Any]]:
        out = tmp_path / f"training{next(sets)}"
        cli(
            "training-set",
            "--features",
            ",".join(f"spend:{f}" for f in names),
            "--spine",
            str(spine),
            "--out",
            str(out),
        )
        rows = pq.read_table(out).to_pylist()
        assert len(rows) == len(entities) * (len(moments) + 1)
        return {(r["merchant_id"], r["event_timestamp"].replace(tzinfo=None)): r for r in rows}

    def online(names: list[str]) -> dict[str, dict[str, Any]]:
        args = [a for e in entities for a in ("--entity", f"merchant_id={e}")]
        answer = json.loads(cli("get-online", "--features", ",".join(f"spend:{f}" for f in names), *args))
        return {row["merchant_id"]: row for row in answer}

    def consistent(names: list[str]) -> dict[tuple[str, datetime], dict[str, Any]]:
        """Online now equals the training join at now, and check-skew agrees."""
        joined = training(names)
        answers = online(names)
        for entity in entities:
            offline = joined[(entity, now.replace(tzinfo=None))]
            assert all(same(answers[entity][f], offline[f]) for f in names), (
                entity,
                answers[entity],
                offline,
            )
        assert " 0 mismatches" in cli("check-skew", "spend", "--sample", "20")
        return joined

    # v1 deployed, backfilled and published: online values written in the old feature layout.
    cli("apply")
    cli("backfill", "spend", "--start", str(before[0]), "--end", str(before[-1]))
    cli("materialize", "spend", "--start", str(before[0]), "--end", str(before[-1]))
    old = read_registry(settings.registry_uri)
    assert old is not None
    old_view = old.view("spend")
    old_rows = table_rows(spark, settings, old_view)
    old_training = consistent(list(old_view.feature_names))
    assert sum(r["n_3d"] is not None for r in old_training.values()) > 20

    # plan: compatible, lists the backfill of every committed partition.
    write_tree(defs, tree(ALL_FEATURES))
    out = cli("plan")
    assert "feature last_amount: added" in out
    assert "features added: last_amount, qty_max_3d, amount_avg_2d" in out
    assert f"{before[0]} .. {before[-1]}" in out

    # apply: the nullable columns join both tables; history reads null for them.
    out = cli("apply")
    assert "spend: added nullable columns last_amount, qty_max_3d, amount_avg_2d to views/spend/v1" in out
    assert "spend: added nullable columns qty__max, amount__last to tiles/spend/v1" in out
    for table in (grown.table, grown.tiles_table):
        assert table is not None
        schema = DeltaTable(settings.table_uri(table)).schema()
        assert all(f.nullable for f in schema.fields)
    assert [f.name for f in DeltaTable(settings.table_uri(grown.table)).schema().fields][-3:] == list(ADDED)
    history = table_rows(spark, settings, grown)
    assert history.keys() == old_rows.keys()
    for key, row in history.items():
        assert all(row[f] is None for f in ADDED)
        assert all(same(row[f], old_rows[key][f]) for f in old_view.feature_names)
    # Online values written before the change answer null for the added features, and agree with
    # the training join; the old features are unchanged.
    joined = consistent(features)
    for key, row in joined.items():
        assert all(row[f] is None for f in ADDED)
        assert all(same(row[f], old_training[key][f]) for f in old_view.feature_names)

    # The nightly run: right for every feature at once, history untouched until the backfill.
    tiles_uri = settings.table_uri(grown.tiles_table or "")
    cli("run", "spend", "--ds", str(nightly))
    after_run = table_rows(spark, settings, grown)
    for key, row in after_run.items():
        if key[1] == nightly:
            assert all(same(row[f], expected[key][f]) for f in features), (key, row, expected[key])
        else:
            assert all(row[f] is None for f in ADDED)
    assert {k for k in after_run if k[1] == nightly} == {k for k in expected if k[1] == nightly}
    held = partition_columns(tiles_uri, (days[0] - timedelta(days=3), nightly))
    # The tile days the windows of the new features read were rebuilt from raw events (2-day
    # last, 3-day max); older ones keep their committed files.
    assert {d for d, columns in held.items() if "qty__max" in columns} == set(days[-3:])
    assert {d for d, columns in held.items() if "amount__last" in columns} == set(days[-3:])
    cli("materialize", "spend", "--ds", str(nightly))
    joined = consistent(features)
    assert any(row["qty_max_3d"] is not None for row in joined.values())

    # The backfill plan listed, then a rematerialization: the table is the from-scratch one and
    # online equals the training join.
    cli("backfill", "spend", "--start", str(before[0]), "--end", str(before[-1]))
    repaired = table_rows(spark, settings, grown)
    assert repaired.keys() == expected.keys()
    for key, row in repaired.items():
        assert all(same(row[f], expected[key][f]) for f in ("feature_ts", *features)), (
            key,
            row,
            expected[key],
        )
    cli("materialize", "spend", "--start", str(days[0]), "--end", str(nightly))
    joined = consistent(features)
    # History now carries the added features (qty is never null: a max wherever there is a count).
    history_rows = [row for (_, at), row in joined.items() if at < moments[-1].replace(tzinfo=None)]
    assert sum(row["n_3d"] is not None for row in history_rows) > 20
    assert all((row["qty_max_3d"] is None) == (row["n_3d"] is None) for row in history_rows)
    # Nothing left to do: no change, and no tile day looks stale after the rebuilt ones.
    assert cli("plan").strip() == "No changes: the feature definitions match the deployed registry."


def test_the_writer_adds_columns_and_refuses_a_run_that_lacks_some(spark: Any, tmp_path: Path) -> None:
    """A commit with new columns evolves the table (a run that committed before ``apply`` added
    them); a commit lacking a table column (a run of the registry before ``apply``) is refused."""
    from pyspark.sql import functions as F

    tables = delta_tables(spark)
    uri = str(tmp_path / "table")
    info = CommitInfo(operation="test", view="t")
    day1, day2 = date(2024, 3, 1), date(2024, 3, 2)
    base = spark.range(3).select(
        F.col("id").alias("k"), F.lit(day1).alias("ds"), (F.col("id") * 2).alias("a")
    )
    tables.replace_partitions(base, uri, [day1], info)
    grown = spark.range(2).select(
        F.col("id").alias("k"),
        F.lit(day2).alias("ds"),
        F.col("id").alias("a"),
        F.struct(F.lit(1.5).alias("v")).alias("s"),
        F.lit("x").alias("b"),
    )
    tables.replace_partitions(grown, uri, [day2], info)
    assert [f.name for f in DeltaTable(uri).schema().fields] == ["k", "ds", "a", "s", "b"]
    rows = tables.read(uri, grown.schema).orderBy("ds", "k").collect()
    assert [(r["ds"], r["k"], r["a"], r["s"], r["b"]) for r in rows] == [
        (day1, 0, 0, None, None),
        (day1, 1, 2, None, None),
        (day1, 2, 4, None, None),
        (day2, 0, 0, (1.5,), "x"),
        (day2, 1, 1, (1.5,), "x"),
    ]
    assert partition_columns(uri, (day1, day2)) == {day1: {"k", "a"}, day2: {"k", "a", "s", "b"}}
    version = DeltaTable(uri).version()
    with pytest.raises(TableError, match=r"the table has columns \['s', 'b'\] that this run lacks"):
        tables.replace_partitions(base, uri, [day1], info)
    retyped = grown.withColumn("a", F.col("a").cast("string")).withColumn("ds", F.lit(day1))
    with pytest.raises(TableError, match=r"columns \['a'\] have another type"):
        tables.replace_partitions(retyped, uri, [day1], info)
    assert DeltaTable(uri).version() == version
