"""Embeddings, timestamps, dates, float32, int32 and arrays round-trip bit-exactly (docs/semantics.md, Types).

The source is written with pyarrow (extreme float32 values, subnormals, -0.0, NaN, infinities,
int32 and int64 limits, a pre-1970 microsecond, empty and null arrays); the values then go through
``skewless backfill`` -> ``training-set`` -> ``materialize`` -> ``get-online`` (CLI, JSON) -> the
HTTP app, and every path must give back exactly the source's values. List and percentile
aggregations (array<float64>, timestamp outputs) take the same paths and agree with the training
join. An embedding of the wrong length fails the run before anything is written, naming the view,
the feature and the row.
"""

from __future__ import annotations

import json
import math
import struct
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable

from skewless import semantics
from skewless.cli import main
from skewless.errors import DataError
from skewless.offline.delta import delta_tables
from skewless.offline.jobs import run_view
from skewless.online.client import OnlineClient
from skewless.online.server import create_app
from skewless.registry import require_registry
from skewless.runtime.settings import Settings
from tests.helpers import deploy, write_parquet

pytestmark = [
    pytest.mark.spark,
    pytest.mark.redis,
    pytest.mark.timeout(1800),
    pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`"),
]

TREE = {
    "defs.yaml": """
        entity:
          name: customer
          join_keys: {customer_id: int64}
        ---
        source:
          name: profiles
          path: profiles
          format: parquet
          timestamp: ts
          columns: {customer_id: int64, ts: timestamp, embedding: "array<float32>", score: float32,
                    small: int32, last_order_ts: timestamp, signup: date, tags: "array<string>",
                    counts: "array<int64>", weights: "array<float64>"}
        ---
        source:
          name: orders
          path: orders
          format: parquet
          timestamp: ts
          columns: {customer_id: int64, amount: float64, ts: timestamp}
        ---
        view:
          name: profile
          version: 1
          kind: snapshot
          entity: customer
          source: profiles
          ttl: 30d
          features:
            - {name: embedding, dtype: "array<float32>", length: 4}
            - {name: score, dtype: float32}
            - {name: small, dtype: int32}
            - {name: last_order_ts, dtype: timestamp}
            - {name: signup, dtype: date}
            - {name: tags, dtype: "array<string>"}
            - {name: counts, dtype: "array<int64>"}
            - {name: weights, dtype: "array<float64>"}
        ---
        view:
          name: order_lists
          version: 1
          kind: aggregation
          entity: customer
          source: orders
          ttl: 2d
          features:
            - {name: last3_amounts_7d, function: last_k, column: amount, k: 3, window: 7d}
            - {name: amount_p90_7d, function: approx_percentile, column: amount, percentile: 0.9, window: 7d}
            - {name: amount_pcts_7d, function: approx_percentile, column: amount, percentile: [0.5, 1.0],
               window: 7d}
            - {name: last_order_7d, function: last_seen, window: 7d}
        ---
        service:
          name: recommender
          features: [profile:embedding, profile:score, profile:last_order_ts, order_lists:last3_amounts_7d]
    """,
}
PROFILE_FEATURES = ("embedding", "score", "small", "last_order_ts", "signup", "tags", "counts", "weights")
ORDER_FEATURES = ("last3_amounts_7d", "amount_p90_7d", "amount_pcts_7d", "last_order_7d")
DTYPES = {
    "embedding": "array<float32>",
    "score": "float32",
    "small": "int32",
    "last_order_ts": "timestamp",
    "signup": "date",
    "tags": "array<string>",
    "counts": "array<int64>",
    "weights": "array<float64>",
    "last3_amounts_7d": "array<float64>",
    "amount_p90_7d": "float64",
    "amount_pcts_7d": "array<float64>",
    "last_order_7d": "timestamp",
}
PROFILE_SCHEMA = pa.schema(
    [
        ("customer_id", pa.int64()),
        ("ts", pa.timestamp("us", tz="UTC")),
        ("embedding", pa.list_(pa.float32())),
        ("score", pa.float32()),
        ("small", pa.int32()),
        ("last_order_ts", pa.timestamp("us", tz="UTC")),
        ("signup", pa.date32()),
        ("tags", pa.list_(pa.string())),
        ("counts", pa.list_(pa.int64())),
        ("weights", pa.list_(pa.float64())),
    ]
)
F32_MAX, F32_TINY, F32_SUBNORMAL = 3.4028234663852886e38, 1.1754943508222875e-38, 1.401298464324817e-45


def _f32(value: float) -> float:
    """The float32 nearest ``value``, as the exact double pyarrow gives back."""
    return float(struct.unpack(">f", struct.pack(">f", value))[0])


def profile_rows(now: datetime) -> list[dict[str, Any]]:
    base = (now - timedelta(days=2)).replace(microsecond=123457)
    return [
        {
            "customer_id": 1,
            "ts": base,
            "embedding": [_f32(0.1), -0.0, F32_SUBNORMAL, F32_MAX],
            "score": _f32(0.1),
            "small": -(2**31),
            "last_order_ts": datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
            "signup": date(1960, 2, 29),
            "tags": ["vip", "ü", ""],
            "counts": [-(2**63), 2**63 - 1, 0],
            "weights": [-0.0, 5e-324, 1.7976931348623157e308],
        },
        {
            "customer_id": 2,
            "ts": base + timedelta(hours=5, microseconds=1),
            "embedding": [math.nan, math.inf, -math.inf, F32_TINY],
            "score": -0.0,
            "small": 2**31 - 1,
            "last_order_ts": datetime(2031, 7, 4, 12, 0, 0, 1, tzinfo=UTC),
            "signup": date(2024, 12, 31),
            "tags": [],
            "counts": [],
            "weights": [math.nan],
        },
        {
            "customer_id": 3,
            "ts": base + timedelta(days=1),
            "embedding": None,
            "score": None,
            "small": None,
            "last_order_ts": None,
            "signup": None,
            "tags": None,
            "counts": None,
            "weights": None,
        },
    ]


def order_rows(now: datetime) -> list[dict[str, Any]]:
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    rows = []
    for day in range(1, 6):
        for index in range(4):
            at = today - timedelta(days=day, seconds=3600 * index + 7, microseconds=day * 11 + index)
            rows.append({"customer_id": 1 + index % 2, "amount": 10.0**index * 1.5 + day, "ts": at})
    return rows


def canonical(value: Any, dtype: str) -> Any:
    """A value reduced to what must be identical on every path (bits of floats, instants)."""
    if value is None:
        return None
    element = semantics.element_dtype(dtype)
    if element is not None:
        return tuple(canonical(v, element) for v in value)
    if dtype in ("float32", "float64"):
        number = float(value)  # JSON spells non-finite floats as strings
        if math.isnan(number):
            return "NaN"
        return struct.pack(">f" if dtype == "float32" else ">d", number).hex()
    if dtype == "timestamp":
        moment = datetime.fromisoformat(value) if isinstance(value, str) else value
        return semantics.to_micros(moment)
    if dtype == "date":
        return value if isinstance(value, str) else value.isoformat()
    return value


def rows_by_customer(rows: list[dict[str, Any]], features: tuple[str, ...]) -> dict[int, dict[str, Any]]:
    return {r["customer_id"]: {f: canonical(r[f], DTYPES[f]) for f in features} for r in rows}


@pytest.fixture
def world(tmp_path: Path, redis_url: str) -> tuple[Settings, Path, datetime]:
    now = datetime.now(UTC)
    settings, _ = deploy(tmp_path, TREE)
    settings = settings.model_copy(update={"redis_url": redis_url})
    write_parquet(tmp_path / "data" / "profiles", profile_rows(now), PROFILE_SCHEMA)
    orders_schema = pa.schema(
        [("customer_id", pa.int64()), ("amount", pa.float64()), ("ts", pa.timestamp("us", tz="UTC"))]
    )
    write_parquet(tmp_path / "data" / "orders", order_rows(now), orders_schema)
    conf = tmp_path / "conf.yaml"
    conf.write_text(
        f"defs: {settings.defs}\ndata_root: {settings.data_root}\n"
        f"offline_root: {settings.offline_root}\nredis_url: {redis_url}\n"
    )
    return settings, conf, now


def test_rich_types_round_trip_bit_exactly(
    spark: Any, world: tuple[Settings, Path, datetime], capsys: pytest.CaptureFixture[str]
) -> None:
    settings, conf, now = world
    tmp = Path(settings.offline_root).parent

    def cli(*args: str) -> str:
        code = main(["--conf", str(conf), *args])
        out, err = capsys.readouterr()
        assert code == 0, err
        return out

    first = (now - timedelta(days=7)).date()
    yesterday = (now - timedelta(days=1)).date()
    cli("backfill", "profile", "--start", str(first), "--end", str(now.date()), "--no-stats")
    cli("backfill", "order_lists", "--start", str(first), "--end", str(yesterday), "--no-stats")
    source = rows_by_customer(profile_rows(now), PROFILE_FEATURES)

    # Delta: the stored Arrow types are the dtypes' (float32 stays float32, arrays are lists).
    stored = pa.schema(DeltaTable(settings.table_uri("views/profile/v1")).schema().to_arrow())
    for feature in PROFILE_FEATURES:
        assert stored.field(feature).type == semantics.arrow_type(DTYPES[feature]), feature

    # Training set (Parquet out) at a time after every row: exactly the source values.
    spine = tmp / "spine.parquet"
    pq.write_table(
        pa.table(
            {"customer_id": [1, 2, 3], "event_timestamp": pa.array([now] * 3, pa.timestamp("us", tz="UTC"))}
        ),
        spine,
    )
    refs = ",".join(
        [*(f"profile:{f}" for f in PROFILE_FEATURES), *(f"order_lists:{f}" for f in ORDER_FEATURES)]
    )
    cli("training-set", "--features", refs, "--spine", str(spine), "--out", str(tmp / "training"))
    training = pq.read_table(tmp / "training")
    for feature in PROFILE_FEATURES:
        assert training.schema.field(feature).type == semantics.arrow_type(DTYPES[feature]), feature
    joined = training.to_pylist()
    assert rows_by_customer(joined, PROFILE_FEATURES) == source
    offline_orders = rows_by_customer(joined, ORDER_FEATURES)
    assert offline_orders[1]["last3_amounts_7d"] is not None
    assert offline_orders[3] == dict.fromkeys(ORDER_FEATURES)

    # Online: materialize, then the client, get-online (JSON) and the HTTP app give the same.
    cli("materialize", "profile", "--start", str(first), "--end", str(now.date() - timedelta(days=1)))
    cli("materialize", "order_lists", "--start", str(first), "--end", str(yesterday))
    features = [*(f"profile:{f}" for f in PROFILE_FEATURES), *(f"order_lists:{f}" for f in ORDER_FEATURES)]
    everything = (*PROFILE_FEATURES, *ORDER_FEATURES)
    expected = {c: {**source[c], **offline_orders[c]} for c in (1, 2, 3)}
    manifest = require_registry(settings.registry_uri)
    with OnlineClient(settings, manifest) as client:
        answers = client.get_online_features([{"customer_id": c} for c in (1, 2, 3)], features=features)
    assert rows_by_customer(answers, everything) == expected
    assert isinstance(answers[0]["last_order_ts"], datetime)
    assert answers[0]["last_order_ts"].tzinfo is not None
    assert isinstance(answers[0]["signup"], date)

    out = cli(
        "get-online",
        "--features",
        ",".join(features),
        *[a for c in (1, 2, 3) for a in ("--entity", f"customer_id={c}")],
    )
    printed = json.loads(out)
    assert rows_by_customer(printed, everything) == expected
    assert printed[0]["last_order_ts"] == "1969-12-31T23:59:59.999999Z"
    assert printed[0]["signup"] == "1960-02-29"
    assert printed[1]["embedding"][:3] == ["NaN", "Infinity", "-Infinity"]
    assert printed[1]["tags"] == []

    from starlette.testclient import TestClient

    with TestClient(create_app(settings, manifest)) as http:
        response = http.post(
            "/features", json={"features": features, "entities": [{"customer_id": c} for c in (1, 2, 3)]}
        )
    assert response.status_code == 200, response.text
    assert rows_by_customer(response.json()["rows"], everything) == expected


def test_embedding_of_the_wrong_length_fails_before_writing(
    spark: Any, world: tuple[Settings, Path, datetime]
) -> None:
    settings, _, now = world
    rows = profile_rows(now)
    rows[1]["embedding"] = [1.0, 2.0, 3.0]
    path = Path(settings.data_root) / "profiles" / "part-0.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=PROFILE_SCHEMA), path)
    manifest = require_registry(settings.registry_uri)
    with pytest.raises(DataError) as caught:
        run_view(spark, settings, manifest, "profile", (now - timedelta(days=3)).date(), now.date())
    message = str(caught.value)
    assert "view 'profile'" in message
    assert "feature 'embedding' is declared array<float32> of length 4" in message
    assert "customer_id=2" in message
    assert "holds 3 elements" in message
    assert str(path) in message
    assert delta_tables(spark).version(settings.table_uri("views/profile/v1")) is None
