"""On-demand features agree between training and serving by construction (docs/semantics.md, "On-demand").

Seeded random scenarios: entities with several stored rows (null values, NaN, created_ts ties,
unknown entities), spine rows with random request values (nulls included) at a handful of times.
For every spine row, the training set's value of each on-demand feature (Spark, the
point-in-time join then ``mapInArrow``) must equal the online value at the same time (rows
materialized into a real redis-server, read with :class:`OnlineClient` at that time), and both
must equal the user function called directly, one row at a time, on the inputs the plain-Python
point-in-time reference finds.
"""

from __future__ import annotations

import importlib.util
import math
import random
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest
import redis

from skewless import semantics
from skewless.errors import DataError
from skewless.manifest import Manifest, ViewSpec
from skewless.offline.delta import CommitInfo, delta_tables
from skewless.offline.schemas import view_schema
from skewless.online.client import OnlineClient
from skewless.online.materialize import publish_rows
from skewless.pit.request import FeatureRequest, resolve_features
from skewless.pit.training_set import get_training_set, point_in_time
from skewless.runtime.settings import Settings
from tests.helpers import deploy
from tests.reference.point_in_time import expected_training_set, latest_row

pytestmark = [pytest.mark.spark, pytest.mark.redis]

UDFS = """
import pandas as pd


def risk(df):
    spread = df["spread"]
    return pd.DataFrame(
        {
            "zscore": (df["amount"] - df["avg"]) / spread.where(spread > 0),
            "over_cap": df["amount"] > df["cap"],
            "label": df["channel"].str.upper() + "/" + df["tier"],
            "age_s": (df["request_ts"] - df["opened_at"]).dt.total_seconds(),
            "hour": df["request_ts"].dt.hour,
        }
    )
"""

TREE = {
    "defs.yaml": """
        entity: {name: customer, join_keys: {customer_id: int64}}
        ---
        entity: {name: merchant, join_keys: {merchant_id: string}}
        ---
        source: {name: src, path: unused, format: parquet, timestamp: ts}
        ---
        view:
          name: profile
          version: 1
          kind: snapshot
          entity: customer
          source: src
          ttl: 10d
          features:
            - {name: avg, dtype: float64}
            - {name: spread, dtype: float64}
            - {name: tier, dtype: string}
        ---
        view:
          name: limits
          version: 1
          kind: snapshot
          entity: merchant
          source: src
          ttl: 10d
          features:
            - {name: cap, dtype: int64}
            - {name: tier, dtype: string}
    """,
    "risk/risk.yaml": """
        on_demand:
          name: risk
          version: 1
          function: udfs:risk
          request: {amount: float64, channel: string, opened_at: timestamp, request_ts: timestamp}
          inputs: [profile:avg, profile:spread, limits:cap, profile:tier]
          features:
            - {name: zscore, dtype: float64}
            - {name: over_cap, dtype: bool}
            - {name: label, dtype: string}
            - {name: age_s, dtype: float64}
            - {name: hour, dtype: int64}
    """,
    "risk/udfs.py": UDFS,
}
FEATURES = ["risk:zscore", "profile:tier", "risk:over_cap", "risk:label", "risk:age_s", "risk:hour"]
ON_DEMAND = ["zscore", "over_cap", "label", "age_s", "hour"]
HOUR = timedelta(hours=1)


def _now() -> datetime:
    return semantics.from_micros(time.time_ns() // 1000).replace(tzinfo=None)


def generate(
    rng: random.Random, now: datetime
) -> tuple[dict[str, list[dict[str, Any]]], list[dict[str, Any]]]:
    """Stored rows within the last 3 days (far inside the 10-day ttl: Redis expiry on its own
    clock never matters) and spine rows at 6 times of the last 30 hours."""
    customers, merchants = list(range(1, 7)), ["m1", "m2", "m:3"]
    start = now - timedelta(days=3)

    def moment() -> datetime:
        return start + timedelta(
            microseconds=rng.randrange(int((now - start - HOUR) / timedelta(microseconds=1)))
        )

    def number() -> float | None:
        draw = rng.random()
        if draw < 0.3:
            return [None, float("nan"), 0.0][int(draw * 10)]
        return round(rng.uniform(-50, 500), 3)

    profile: list[dict[str, Any]] = []
    limits: list[dict[str, Any]] = []
    for customer in customers:
        for _ in range(rng.randrange(0, 4)):
            feature_ts = moment()
            row: dict[str, Any] = {
                "customer_id": customer,
                "feature_ts": feature_ts,
                "created_ts": feature_ts + HOUR,
            }
            row |= {"avg": number(), "spread": number(), "tier": rng.choice([None, "gold", "basic"])}
            profile.append(row)
            if rng.random() < 0.2:  # a tie on feature_ts: the greater created_ts wins
                profile.append(row | {"created_ts": feature_ts + 2 * HOUR, "avg": number()})
    for merchant in merchants:
        for _ in range(rng.randrange(1, 4)):
            feature_ts = moment()
            cap = rng.choice([None, rng.randrange(0, 400)])
            limits.append(
                {"merchant_id": merchant, "feature_ts": feature_ts, "created_ts": feature_ts, "cap": cap}
                | {"tier": "x"}
            )
    for rows in (profile, limits):
        for row in rows:
            row["ds"] = row["feature_ts"].date()
    times = sorted(now - timedelta(microseconds=rng.randrange(30 * 3600 * 10**6)) for _ in range(6))
    spine = [
        {
            "row_id": index,
            "customer_id": rng.choice([*customers, 99]),  # 99: never stored
            "merchant_id": rng.choice([*merchants, "unknown"]),
            "amount": rng.choice([None, float(rng.randrange(-10, 600)), round(rng.uniform(0, 900), 2)]),
            "channel": rng.choice([None, "web", "pos"]),
            "opened_at": rng.choice(
                [None, now - timedelta(days=rng.randrange(1, 900), seconds=rng.randrange(9999))]
            ),
            "event_timestamp": rng.choice(times),
        }
        for index in range(120)
    ]
    return {"profile": profile, "limits": limits}, spine


def _write(
    spark: Any, settings: Settings, manifest: Manifest, tables: dict[str, list[dict[str, Any]]]
) -> None:
    store = delta_tables(spark)
    for name, rows in tables.items():
        view = manifest.view(name)
        schema = view_schema(view)
        frame = spark.createDataFrame([tuple(r.get(f) for f in schema.fieldNames()) for r in rows], schema)
        days = sorted({r["ds"] for r in rows})
        store.replace_partitions(frame, settings.table_uri(view.table), days, CommitInfo("test", name))


def _spine_frame(spark: Any, spine: list[dict[str, Any]]) -> Any:
    from pyspark.sql import types as T

    schema = T.StructType(
        [
            T.StructField("row_id", T.LongType()),
            T.StructField("customer_id", T.LongType()),
            T.StructField("merchant_id", T.StringType()),
            T.StructField("amount", T.DoubleType()),
            T.StructField("channel", T.StringType()),
            T.StructField("opened_at", T.TimestampType()),
            T.StructField("event_timestamp", T.TimestampType()),
        ]
    )
    return spark.createDataFrame([tuple(r[f] for f in schema.fieldNames()) for r in spine], schema)


def _user_function(defs: Path) -> Callable[[pd.DataFrame], pd.DataFrame]:
    spec = importlib.util.spec_from_file_location("udfs_under_test", defs / "risk" / "udfs.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.risk  # type: ignore[no-any-return]


def _oracle(
    function: Callable[[pd.DataFrame], pd.DataFrame], row: dict[str, Any], inputs: dict[str, Any]
) -> dict[str, Any]:
    """The user function called on one row built by hand (Arrow-backed columns, nulls as pd.NA)."""
    types = {
        "amount": pa.float64(),
        "channel": pa.string(),
        "opened_at": pa.timestamp("us", tz="UTC"),
        "request_ts": pa.timestamp("us", tz="UTC"),
        "avg": pa.float64(),
        "spread": pa.float64(),
        "cap": pa.int64(),
        "tier": pa.string(),
    }
    values = {
        "amount": row["amount"],
        "channel": row["channel"],
        "opened_at": None if row["opened_at"] is None else semantics.as_utc(row["opened_at"]),
        "request_ts": semantics.as_utc(row["event_timestamp"]),
        **inputs,
    }
    frame = pd.DataFrame(
        {
            name: pd.Series(pa.array([values[name]], type=dtype), dtype=pd.ArrowDtype(dtype))
            for name, dtype in types.items()
        }
    )
    out = function(frame)
    return {name: None if out[name][0] is pd.NA else out[name][0] for name in ON_DEMAND}


def _same(left: Any, right: Any) -> bool:
    if isinstance(left, float) and isinstance(right, float) and math.isnan(left) and math.isnan(right):
        return True
    return (type(left) is type(right) and left == right) or (left is None and right is None)


def _published(rows: list[dict[str, Any]], view: ViewSpec, at: datetime) -> list[tuple[Any, ...]]:
    """The online store after materializing everything available at ``at``: each entity's latest row."""
    ttl = 10**18  # latest row, live or not: liveness is the reader's business
    out = []
    for key in sorted({tuple(r[k] for k in view.key_names) for r in rows}):
        best = latest_row(rows, view.key_names, key, at, ttl)
        if best is not None:
            stamps = (semantics.to_micros(best["feature_ts"]), semantics.to_micros(best["created_ts"]))
            out.append((*key, *stamps, *(best[f] for f in view.feature_names)))
    return out


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_training_online_and_the_function_agree_on_every_row(
    spark: Any, tmp_path: Path, redis_url: str, seed: int
) -> None:
    settings, manifest = deploy(tmp_path, TREE)
    settings = settings.model_copy(update={"redis_url": redis_url})
    rng = random.Random(seed)
    tables, spine = generate(rng, _now())
    _write(spark, settings, manifest, tables)
    request = resolve_features(manifest, features=FEATURES)

    # Training: the point-in-time join, then mapInArrow over its rows.
    frame, _, _ = point_in_time(
        spark, settings, manifest, _spine_frame(spark, spine), request, "event_timestamp"
    )
    assert frame.columns[:7] == [
        "row_id",
        "customer_id",
        "merchant_id",
        "amount",
        "channel",
        "opened_at",
        "event_timestamp",
    ]
    assert frame.columns[7:] == [*ON_DEMAND, "tier"]  # grouped per view, in request order
    offline = {row["row_id"]: row.asDict() for row in frame.collect()}
    assert len(offline) == len(spine)

    # Reference inputs: the plain-Python point-in-time rule over the same stored rows.
    reference = {
        r["row_id"]: r for r in expected_training_set(spine, request.views, tables, "event_timestamp")
    }
    function = _user_function(Path(settings.defs))

    # Online: per spine time, the store as materialization leaves it then, read at that time.
    online: dict[int, dict[str, Any]] = {}
    flush = redis.Redis.from_url(redis_url)
    with OnlineClient(settings, manifest) as client:
        for at in sorted({r["event_timestamp"] for r in spine}):
            flush.flushall()
            for name in ("profile", "limits"):
                view = manifest.view(name)
                publish_rows(redis_url, view, _published(tables[name], view, at))
            rows = [r for r in spine if r["event_timestamp"] == at]
            entity_rows = [
                {k: r[k] for k in ("customer_id", "merchant_id", "amount", "channel", "opened_at")}
                for r in rows
            ]
            answers = client.get_online_features(entity_rows, FEATURES, now=at)
            online.update({r["row_id"]: answer for r, answer in zip(rows, answers, strict=True)})

    mismatches = []
    nulls_in_inputs = 0
    for row in spine:
        ref = reference[row["row_id"]]
        inputs = {
            "avg": ref[_hidden(request, "avg")],
            "spread": ref[_hidden(request, "spread")],
            "cap": ref[_hidden(request, "cap")],
            "tier": ref["tier"],
        }
        nulls_in_inputs += any(v is None for v in inputs.values())
        expected = _oracle(function, row, inputs)
        for feature in ON_DEMAND:
            train, serve = offline[row["row_id"]][feature], online[row["row_id"]][feature]
            if isinstance(train, datetime):  # pragma: no cover - no timestamp features here
                train = semantics.as_utc(train)
            if not (_same(train, expected[feature]) and _same(serve, expected[feature])):
                mismatches.append((row["row_id"], feature, train, serve, expected[feature]))
        assert _same(offline[row["row_id"]]["tier"], ref["tier"])
        assert _same(online[row["row_id"]]["tier"], ref["tier"])
    assert mismatches == []
    assert nulls_in_inputs > 10, "scenario must include null inputs"
    computed = [
        v["zscore"] for v in offline.values() if v["zscore"] is not None and not math.isnan(v["zscore"])
    ]
    assert len(computed) > 5, "scenario must compute values"


def _hidden(request: FeatureRequest, feature: str) -> str:
    """The joined column holding an input (a hidden one unless it was requested)."""
    (od,) = request.on_demand
    return next(joined for one, joined in od.inputs if one.feature == feature)


def test_a_missing_request_column_is_an_error_naming_it(spark: Any, tmp_path: Path) -> None:
    settings, manifest = deploy(tmp_path, TREE)
    now = _now()
    spine = spark.createDataFrame(
        [(1, "m1", 12.0, now)],
        "customer_id long, merchant_id string, amount double, event_timestamp timestamp",
    )
    with pytest.raises(
        DataError, match="column 'channel': request field of on-demand view 'risk' \\(string\\) missing"
    ):
        get_training_set(spine, ["risk:zscore"], settings=settings, manifest=manifest, spark=spark)
    typed = spine.selectExpr("*", "'web' AS channel", "1 AS opened_at")
    with pytest.raises(
        DataError, match="column 'opened_at': request field of on-demand view 'risk' must be timestamp"
    ):
        get_training_set(typed, ["risk:zscore"], settings=settings, manifest=manifest, spark=spark)


def test_a_failing_function_fails_the_training_set_naming_view_function_and_feature(
    spark: Any, tmp_path: Path
) -> None:
    broken = TREE | {
        "risk/udfs.py": UDFS.replace('"hour": df["request_ts"].dt.hour', '"hour": df["channel"]')
    }
    settings, manifest = deploy(tmp_path, broken)
    # No table was written: every input is null, and the function still runs on every row.
    spine = spark.createDataFrame(
        [(1, "m1", 12.0, "web", _now(), _now())],
        "customer_id long, merchant_id string, amount double, channel string, opened_at timestamp,"
        " event_timestamp timestamp",
    )
    frame = get_training_set(spine, ["risk:hour"], settings=settings, manifest=manifest, spark=spark)
    with pytest.raises(
        Exception, match=r"on-demand view 'risk', function udfs:risk, feature hour: cannot be read as int64"
    ):
        frame.collect()
