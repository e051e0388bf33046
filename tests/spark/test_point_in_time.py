"""The point-in-time join against a row-by-row reading of docs/semantics.md (Point-in-time rule).

Seeded generators build feature tables with every edge case (times equal to feature_ts, at
exactly T - ttl, one microsecond outside, created_ts ties, null values, tombstones, unknown
entities, duplicate spine rows, composite keys); both physical paths must match exactly.
"""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from skewless.errors import DataError, SkewlessError, UnknownObjectError
from skewless.manifest import Manifest
from skewless.offline.delta import CommitInfo, delta_tables
from skewless.offline.schemas import view_schema
from skewless.pit import join
from skewless.pit.request import resolve
from skewless.pit.training_set import (
    build_training_set,
    get_training_set,
    inspect_spine,
    point_in_time,
    prepare_rebuild,
    rebuild_training_set,
)
from skewless.runtime.settings import Settings
from tests.helpers import deploy
from tests.reference.point_in_time import expected_training_set

pytestmark = pytest.mark.spark

TREE = {
    "defs.yaml": """
        entity: {name: user, join_keys: {user_id: int64}}
        ---
        entity: {name: pair, join_keys: {store: string, item: int64}}
        ---
        source: {name: src, path: unused, format: parquet, timestamp: ts}
        ---
        view:
          name: profile
          version: 1
          kind: snapshot
          entity: user
          source: src
          ttl: 3d
          features:
            - {name: score, dtype: float64}
            - {name: tier, dtype: string}
        ---
        view:
          name: pair_stats
          version: 1
          kind: snapshot
          entity: pair
          source: src
          ttl: 12h
          features:
            - {name: qty, dtype: int64}
            - {name: flag, dtype: bool}
            - {name: score, dtype: float64}
        ---
        view:
          name: user_agg
          version: 1
          kind: aggregation
          entity: user
          source: src
          ttl: 2d
          availability_lag: 1h
          features:
            - {name: cnt_1d, function: count, window: 1d}
            - {name: amt_3d, function: sum, column: amount, window: 3d, dtype: float64}
    """,
}

FEATURES = [
    "profile:score",
    "profile:tier",
    "pair_stats:qty",
    "pair_stats:flag",
    "pair_stats:score",
    "user_agg:cnt_1d",
    "user_agg:amt_3d",
]
DAY0 = date(2024, 6, 1)
DAYS = 12
MICRO = timedelta(microseconds=1)


def _naive(ts: datetime) -> datetime:
    return ts.astimezone(UTC).replace(tzinfo=None)


def _time(rng: random.Random) -> datetime:
    base = datetime(DAY0.year, DAY0.month, DAY0.day)
    return base + timedelta(seconds=rng.randrange(DAYS * 86400), microseconds=rng.randrange(1_000_000))


def generate(rng: random.Random) -> tuple[dict[str, list[dict[str, Any]]], list[dict[str, Any]]]:
    users = list(range(1, 9))
    stores = ["north", "south"]
    created = datetime(2024, 7, 1)
    profile: list[dict[str, Any]] = []
    for _ in range(60):
        ts = _time(rng)
        row = {"user_id": rng.choice(users), "feature_ts": ts, "created_ts": created}
        row |= {
            "score": rng.choice([None, round(rng.uniform(0, 1), 6)]),
            "tier": rng.choice([None, "gold", "basic"]),
        }
        profile.append(row)
    # Ties on feature_ts: the greatest created_ts wins, even when its values are null.
    for row in rng.sample(profile, 8):
        profile.append(row | {"created_ts": created + timedelta(hours=1), "score": None, "tier": "tie"})
    pairs: list[dict[str, Any]] = []
    for _ in range(60):
        row = {
            "store": rng.choice(stores),
            "item": rng.randrange(4),
            "feature_ts": _time(rng),
            "created_ts": created,
        }
        row |= {"qty": rng.choice([None, rng.randrange(-5, 50)]), "flag": rng.choice([None, True, False])}
        row |= {"score": rng.choice([None, float(rng.randrange(100))])}
        pairs.append(row)
    # Aggregation rows sit on boundaries: a row per alive day, a tombstone on the drop-out day.
    agg: list[dict[str, Any]] = []
    for user in users:
        alive_before = False
        for offset in range(DAYS):
            ds = DAY0 + timedelta(days=offset)
            alive = rng.random() < 0.6
            feature_ts = datetime(ds.year, ds.month, ds.day) + timedelta(days=1, hours=1)
            if alive:
                values = {
                    "cnt_1d": rng.randrange(0, 5),
                    "amt_3d": rng.choice([None, round(rng.uniform(1, 99), 3)]),
                }
            elif alive_before:
                values = {"cnt_1d": None, "amt_3d": None}
            else:
                alive_before = False
                continue
            agg.append({"user_id": user, "ds": ds, "feature_ts": feature_ts, "created_ts": created} | values)
            alive_before = alive
    for rows in (profile, pairs):
        for row in rows:
            row["ds"] = row["feature_ts"].date()

    anchors = [r["feature_ts"] for r in profile + pairs + agg]
    spine: list[dict[str, Any]] = []
    for index in range(300):
        kind = rng.randrange(6)
        anchor = rng.choice(anchors)
        ts = {
            0: anchor,  # exactly at a feature_ts
            1: anchor + timedelta(days=3),  # exactly at feature_ts + ttl (profile)
            2: anchor + timedelta(days=3) + MICRO,  # one microsecond outside (profile)
            3: anchor + timedelta(hours=12),  # exactly at feature_ts + ttl (pair_stats)
            4: anchor - MICRO,  # just before a row becomes visible
            5: _time(rng),
        }[kind]
        spine.append(
            {
                "row_id": index,
                "user_id": rng.choice([*users, 99]),  # 99: unknown entity
                "store": rng.choice([*stores, "west"]),
                "item": rng.randrange(5),
                "label": rng.random() < 0.5,
                "event_timestamp": ts,
            }
        )
    spine += rng.sample(spine, 20)  # duplicate spine rows stay duplicates
    return {"profile": profile, "pair_stats": pairs, "user_agg": agg}, spine


def _write_tables(
    spark: Any, settings: Settings, manifest: Manifest, tables: dict[str, list[dict[str, Any]]]
) -> None:
    store = delta_tables(spark)
    for name, rows in tables.items():
        view = manifest.view(name)
        schema = view_schema(view)
        frame = spark.createDataFrame([tuple(r.get(f) for f in schema.fieldNames()) for r in rows], schema)
        days = sorted({r["ds"] for r in rows} | {DAY0 + timedelta(days=i) for i in range(DAYS)})
        store.replace_partitions(frame, settings.table_uri(view.table), days, CommitInfo("test", name))


def _spine_frame(spark: Any, spine: list[dict[str, Any]]) -> Any:
    from pyspark.sql import types as T

    schema = T.StructType(
        [
            T.StructField("row_id", T.LongType()),
            T.StructField("user_id", T.LongType()),
            T.StructField("store", T.StringType()),
            T.StructField("item", T.IntegerType()),  # int32 spine key joins an int64 entity key
            T.StructField("label", T.BooleanType()),
            T.StructField("event_timestamp", T.TimestampType()),
        ]
    )
    return spark.createDataFrame([tuple(r[f] for f in schema.fieldNames()) for r in spine], schema)


def _as_counter(rows: list[dict[str, Any]], columns: list[str]) -> Counter[tuple[Any, ...]]:
    return Counter(tuple(r[c] for c in columns) for r in rows)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_join_matches_row_by_row_reference(spark: Any, tmp_path: Path, seed: int) -> None:
    settings, manifest = deploy(tmp_path, TREE)
    tables, spine = generate(random.Random(seed))
    _write_tables(spark, settings, manifest, tables)
    requests = resolve(manifest, features=",".join(FEATURES))
    expected = expected_training_set(spine, requests, tables, "event_timestamp")
    columns = [
        "row_id",
        "user_id",
        "store",
        "item",
        "label",
        "event_timestamp",
        "score",
        "tier",
        "qty",
        "flag",
    ]
    columns += ["profile__score", "pair_stats__score", "cnt_1d", "amt_3d"]
    columns = [c for c in columns if c not in ("score",)]
    assert sum(r["tier"] == "tie" for r in expected) > 0, "scenario must hit a created_ts tie"
    assert sum(r["cnt_1d"] is not None for r in expected) > 20

    # Spine times past the last committed partition make the boundary join inexact: auto falls
    # back to the general path there, and uses the equi-join on a spine inside the data.
    last_ds = max(r["ds"] for r in tables["user_agg"])
    inside = [
        r for r in spine if join.boundary_ds(manifest.view("user_agg"), r["event_timestamp"]) <= last_ds
    ]
    assert len(inside) > 100
    for method, rows_in, path in (
        ("auto", spine, "asof"),
        ("auto", inside, "boundary"),
        ("asof", inside, "asof"),
    ):
        want = expected_training_set(rows_in, requests, tables, "event_timestamp")
        frame, pinned, count = point_in_time(
            spark,
            settings,
            manifest,
            _spine_frame(spark, rows_in),
            requests,
            "event_timestamp",
            method=method,
        )
        assert count == len(rows_in)
        assert pinned["user_agg"].path == path
        assert pinned["profile"].path == "asof"
        actual = [r.asDict() for r in frame.collect()]
        assert frame.columns[:6] == ["row_id", "user_id", "store", "item", "label", "event_timestamp"]
        assert _as_counter(actual, columns) == _as_counter(want, columns), (method, path)


@pytest.fixture(scope="module")
def small(
    spark: Any, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Settings, Manifest, list[dict[str, Any]]]:
    settings, manifest = deploy(tmp_path_factory.mktemp("pit-small"), TREE)
    tables, spine = generate(random.Random(11))
    _write_tables(spark, settings, manifest, tables)
    return settings, manifest, spine


@pytest.mark.parametrize(
    ("mutate", "column", "fragment"),
    [
        pytest.param(
            lambda f: f.drop("user_id"),
            "user_id",
            "join key of view 'profile' (int64) missing",
            id="missing-key",
        ),
        pytest.param(
            lambda f: f.withColumn("user_id", f["user_id"].cast("string")),
            "user_id",
            "must be int64, found string",
            id="key-type",
        ),
        pytest.param(
            lambda f: f.withColumn(
                "user_id",
                __import__("pyspark.sql.functions")
                .sql.functions.when(f["row_id"] == 3, None)
                .otherwise(f["user_id"]),
            ),
            "user_id",
            "1 row(s) with a null join key",
            id="null-key",
        ),
        pytest.param(
            lambda f: f.withColumn("event_timestamp", f["event_timestamp"].cast("string")),
            "event_timestamp",
            "expected a timestamp",
            id="string-timestamp",
        ),
        pytest.param(
            lambda f: f.withColumnRenamed("event_timestamp", "ts"),
            "event_timestamp",
            "timestamp column not found",
            id="no-timestamp",
        ),
        pytest.param(
            lambda f: f.withColumn("tier", f["store"]), "tier", "would overwrite", id="column-collision"
        ),
    ],
)
def test_bad_spines_name_the_column(spark: Any, small: Any, mutate: Any, column: str, fragment: str) -> None:
    settings, manifest, spine = small
    requests = resolve(manifest, features="profile:tier,pair_stats:qty")
    with pytest.raises(DataError) as caught:
        point_in_time(
            spark, settings, manifest, mutate(_spine_frame(spark, spine)), requests, "event_timestamp"
        )
    assert f"column {column!r}" in str(caught.value)
    assert fragment in str(caught.value)


def test_unknown_features_and_services_are_clear_errors(small: Any) -> None:
    _, manifest, _ = small
    with pytest.raises(UnknownObjectError, match="view 'profile' has no feature 'nope'"):
        resolve(manifest, features="profile:nope")
    with pytest.raises(UnknownObjectError, match="unknown view 'ghost'"):
        resolve(manifest, features="ghost:x")
    with pytest.raises(SkewlessError, match="expected 'view:feature'"):
        resolve(manifest, features="profile")


def test_naive_timestamps_are_utc_and_pandas_spines_work(spark: Any, small: Any) -> None:
    settings, manifest, spine = small
    frame = _spine_frame(spark, spine)
    zoned = get_training_set(frame, ["profile:score"], settings=settings, manifest=manifest, spark=spark)
    ntz = frame.withColumn("event_timestamp", frame["event_timestamp"].cast("timestamp_ntz"))
    naive = get_training_set(ntz, ["profile:score"], settings=settings, manifest=manifest, spark=spark)
    key = lambda rows: Counter((r["row_id"], r["score"]) for r in rows)  # noqa: E731
    assert key(zoned.collect()) == key(naive.collect())

    import pandas as pd

    mixed = pd.DataFrame(
        {"user_id": [1, 2], "event_timestamp": [datetime(2024, 6, 3), datetime(2024, 6, 3, tzinfo=UTC)]}
    )
    with pytest.raises(DataError, match="mixes timestamps with and without a time zone"):
        get_training_set(mixed, ["profile:score"], settings=settings, manifest=manifest, spark=spark)


def test_feature_tables_are_pruned_to_the_spine_time_range(spark: Any, small: Any) -> None:
    settings, manifest, _ = small
    view = manifest.view("profile")
    stats = join.SpineStats(rows=1, min_ts=datetime(2024, 6, 8, 12), max_ts=datetime(2024, 6, 9, 1))
    low, high = join.feature_ds_range(view, stats) or (None, None)
    assert (low, high) == (date(2024, 6, 5), date(2024, 6, 9))
    frame = delta_tables(spark).read(settings.table_uri(view.table), view_schema(view), ds_range=(low, high))
    read_days = {Path(f).parent.name for f in frame.inputFiles()}
    assert read_days
    assert read_days <= {f"ds={low + timedelta(days=i)}" for i in range(5)}


def test_training_set_manifest_rebuilds_the_same_rows_after_new_commits(spark: Any, tmp_path: Path) -> None:
    settings, manifest = deploy(tmp_path, TREE)
    tables, spine = generate(random.Random(5))
    _write_tables(spark, settings, manifest, tables)
    spine_path = str(tmp_path / "spine")
    _spine_frame(spark, spine).write.parquet(spine_path)

    first = build_training_set(
        spark,
        settings,
        manifest,
        spine=inspect_spine(spine_path),
        out=str(tmp_path / "ts1"),
        service=None,
        features=",".join(FEATURES),
        output_format="delta",
    )
    assert first.spine_rows == len(spine)
    assert set(first.tables) == {"profile", "pair_stats", "user_agg"}

    # New data lands afterwards: every profile row is rewritten with another score.
    changed = {"profile": [r | {"score": -1.0} for r in tables["profile"]]}
    _write_tables(spark, settings, manifest, changed)
    fresh = build_training_set(
        spark,
        settings,
        manifest,
        spine=inspect_spine(spine_path),
        out=str(tmp_path / "ts2"),
        features=",".join(FEATURES),
    )
    assert fresh.tables["profile"].version == first.tables["profile"].version + 1

    rebuilt = rebuild_training_set(
        spark, settings, prepare_rebuild(settings, str(tmp_path / "ts1"), str(tmp_path / "ts3"))
    )
    assert rebuilt.tables["profile"].version == first.tables["profile"].version

    def read(p, fmt):
        return Counter(
            tuple(r)
            for r in (delta_tables(spark).read_any(p) if fmt == "delta" else spark.read.parquet(p)).collect()
        )

    original = read(str(tmp_path / "ts1"), "delta")
    assert read(str(tmp_path / "ts3"), "delta") == original
    assert read(str(tmp_path / "ts2"), "parquet") != original  # the new data does change a fresh build

    # The spine changes afterwards (one more file of labels): a rebuild cannot reproduce ts1 and
    # says so before any Spark work, even though the row count alone would not show it.
    _spine_frame(spark, spine[:1]).write.mode("append").parquet(spine_path)
    with pytest.raises(SkewlessError, match=r"spine .* changed since the training set was built"):
        prepare_rebuild(settings, str(tmp_path / "ts1"), str(tmp_path / "ts4"))
