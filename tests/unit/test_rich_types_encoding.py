"""The online layout of the rich dtypes (docs/online-store.md, Values) and their JSON form."""

from __future__ import annotations

import json
import math
import struct
from datetime import UTC, date, datetime

import msgpack  # type: ignore[import-untyped]

from skewless import semantics
from skewless.manifest import FeatureSpec, JoinKey, SourceSpec, ViewSpec
from skewless.online.encoding import FEATURES_AT, ViewCodec, decode, decoder_of
from skewless.online.jsonio import dumps, json_rows
from skewless.online.skew import same_value

FEATURES = (
    ("f32", "float32"),
    ("f64", "float64"),
    ("i32", "int32"),
    ("ts", "timestamp"),
    ("day", "date"),
    ("emb", "array<float32>"),
    ("xs", "array<float64>"),
    ("ns", "array<int64>"),
    ("tags", "array<string>"),
)


def view() -> ViewSpec:
    return ViewSpec(
        name="rich",
        version=1,
        kind="snapshot",
        entity="customer",
        join_keys=(JoinKey(name="customer_id", dtype="int64"),),
        source=SourceSpec(name="s", path="p", format="parquet", timestamp="ts"),
        filter=None,
        ttl_seconds=86_400,
        availability_lag_seconds=0,
        features=tuple(FeatureSpec(name=n, dtype=d, meaning_hash="x") for n, d in FEATURES),
        expectations=(),
        table="views/rich/v1",
        tiles_table=None,
        content_hash="",
    )


def f32(value: float) -> float:
    return float(struct.unpack(">f", struct.pack(">f", value))[0])


def bits32(value: float) -> bytes:
    return struct.pack(">f", value)


VALUES = [
    f32(0.1),
    -0.0,
    -(2**31),
    datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    date(1960, 2, 29),
    [f32(1e-45), -0.0, f32(3.4028234663852886e38), math.nan, math.inf],
    [5e-324, -0.0, None],
    [-(2**63), 2**63 - 1],
    ["", "ü", None],
]


def decoded(values: list[object]) -> list[object]:
    raw = ViewCodec(view()).encode(1, 2, values)
    stored = decode(raw)
    assert stored.values is not None
    out = []
    for (_, dtype), value in zip(FEATURES, stored.values, strict=True):
        convert = decoder_of(dtype)
        out.append(value if convert is None else convert(value))
    return out


def test_rich_values_round_trip_exactly() -> None:
    got = decoded(VALUES)
    assert bits32(got[0]) == bits32(VALUES[0])  # type: ignore[arg-type]
    assert math.copysign(1.0, got[1]) == -1.0  # type: ignore[arg-type]
    assert got[2] == -(2**31)
    assert got[3] == VALUES[3]
    assert isinstance(got[3], datetime)
    assert got[3].tzinfo is not None
    assert got[4] == date(1960, 2, 29)
    emb = got[5]
    assert [bits32(v) for v in emb[:3]] == [bits32(v) for v in VALUES[5][:3]]  # type: ignore[index]
    assert math.isnan(emb[3])  # type: ignore[index]
    assert emb[4] == math.inf  # type: ignore[index]
    assert all(same_value(a, b) for a, b in zip(got[6:], VALUES[6:], strict=True))


def test_float32_features_take_four_bytes_and_timestamps_the_standard_extension() -> None:
    raw = ViewCodec(view()).encode(1, 2, VALUES)
    items = msgpack.unpackb(raw)
    assert isinstance(items[FEATURES_AT + 3], msgpack.Timestamp)  # a generic reader sees a timestamp
    assert items[FEATURES_AT + 4] == semantics.day_number(date(1960, 2, 29))
    # float32: 0xca + 4 bytes; the embedding's elements too.
    assert msgpack.packb(f32(0.1), use_single_float=True) in raw
    assert b"\xca" + bits32(f32(3.4028234663852886e38)) in raw
    # microseconds given as an int encode the same as the datetime
    as_micros = [*VALUES]
    as_micros[3] = semantics.to_micros(VALUES[3])  # type: ignore[arg-type]
    as_micros[4] = semantics.day_number(VALUES[4])  # type: ignore[arg-type]
    assert ViewCodec(view()).encode(1, 2, as_micros) == raw


def test_nulls_and_empty_arrays_stay_distinct() -> None:
    got = decoded([None, None, None, None, None, [], None, [], None])
    assert got == [None, None, None, None, None, [], None, [], None]


def test_json_of_rich_values() -> None:
    (row,) = json_rows([dict(zip([n for n, _ in FEATURES], decoded(VALUES), strict=True))])
    text = dumps([row])
    back = json.loads(text)[0]
    assert back["ts"] == "1969-12-31T23:59:59.999999Z"
    assert back["day"] == "1960-02-29"
    assert back["emb"][3:] == ["NaN", "Infinity"]
    assert bits32(back["f32"]) == bits32(f32(0.1))
    assert [bits32(v) for v in back["emb"][:3]] == [bits32(v) for v in VALUES[5][:3]]  # type: ignore[index]
    assert back["tags"] == ["", "ü", None]
    assert back["ns"] == [-(2**63), 2**63 - 1]
    naive = json_rows([{"t": datetime(2024, 1, 2, 3, 4, 5, 6)}])
    assert naive == [{"t": "2024-01-02T03:04:05.000006Z"}]  # a naive datetime is UTC


def test_same_value_of_timestamps_and_arrays() -> None:
    aware = datetime(2024, 1, 1, 0, 0, 0, 1, tzinfo=UTC)
    assert same_value(aware.replace(tzinfo=None), aware)
    assert not same_value(aware, aware.replace(microsecond=2))
    assert same_value([math.nan, 1.0], [math.nan, 1.0])
    assert not same_value([0.0], [-0.0])
    assert not same_value([1.0], [1.0, 2.0])
