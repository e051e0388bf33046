"""Online store encoding (pure): keys never collide, values round-trip bit for bit."""

from __future__ import annotations

import struct
from typing import Any

import msgpack  # type: ignore[import-untyped]
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from skewless.errors import EntityError, OnlineStoreError
from skewless.manifest import FeatureSpec, JoinKey, SourceSpec, ViewSpec
from skewless.online.encoding import (
    FORMAT_TOMBSTONE,
    ViewCodec,
    decode,
    escape_key_part,
    layout_document,
    layout_id,
    parse_layout_document,
    unescape_key_part,
)
from skewless.online.jsonio import dumps, json_rows

INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=30)
TIMESTAMP = st.integers(min_value=-(2**62), max_value=2**62)
DTYPE_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "int64": INT64,
    "float64": st.floats(allow_nan=True, allow_infinity=True),
    "string": TEXT,
    "bool": st.booleans(),
}


def make_view(
    keys: list[tuple[str, str]], features: list[tuple[str, str]], name: str = "v", ttl: int = 86400
) -> ViewSpec:
    return ViewSpec(
        name=name,
        version=3,
        kind="snapshot",
        entity="e",
        join_keys=tuple(JoinKey(name=k, dtype=d) for k, d in keys),  # type: ignore[arg-type]
        source=SourceSpec(name="s", path="s", format="parquet", timestamp="ts"),
        filter=None,
        ttl_seconds=ttl,
        availability_lag_seconds=0,
        features=tuple(FeatureSpec(name=f, dtype=d, meaning_hash="x") for f, d in features),  # type: ignore[arg-type]
        expectations=(),
        table="t",
        tiles_table=None,
        content_hash="h",
    )


def same(a: Any, b: Any) -> bool:
    """Equal values of equal types; floats compared by their bits (NaN, -0.0)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return struct.pack(">d", a) == struct.pack(">d", b)
    return bool(a == b)


@st.composite
def view_and_rows(draw: st.DrawFn) -> tuple[ViewSpec, list[list[Any]]]:
    dtypes = draw(st.lists(st.sampled_from(sorted(DTYPE_VALUES)), min_size=1, max_size=6))
    view = make_view([("id", "string")], [(f"f{i}", d) for i, d in enumerate(dtypes)])
    rows = draw(
        st.lists(
            st.tuples(*[st.one_of(st.none(), DTYPE_VALUES[d]) for d in dtypes]).map(list),
            min_size=1,
            max_size=5,
        )
    )
    return view, rows


@settings(max_examples=300, deadline=None)
@given(view_and_rows(), TIMESTAMP, TIMESTAMP)
def test_values_round_trip_exactly(
    case: tuple[ViewSpec, list[list[Any]]], feature_ts: int, created_ts: int
) -> None:
    view, rows = case
    codec = ViewCodec(view)
    for values in rows:
        stored = decode(codec.encode(feature_ts, created_ts, values))
        assert (stored.feature_ts_us, stored.created_ts_us) == (feature_ts, created_ts)
        assert stored.layout_id == codec.layout_id
        assert stored.values is not None
        assert len(stored.values) == len(values)
        assert all(same(a, b) for a, b in zip(stored.values, values, strict=True)), (stored.values, values)


def test_special_values_round_trip() -> None:
    view = make_view([("id", "string")], [("i", "int64"), ("f", "float64"), ("s", "string"), ("b", "bool")])
    codec = ViewCodec(view)
    cases = [
        [2**63 - 1, float("nan"), "", True],
        [-(2**63), float("inf"), "ü日本🎉\x00", False],
        [0, float("-inf"), "a:b%{c}", None],
        [None, -0.0, None, False],
        [1, 5e-324, "x" * 10_000, True],
        [None, 1.7976931348623157e308, "1", None],
    ]
    for values in cases:
        stored = decode(codec.encode(1, 2, values))
        assert stored.values is not None
        assert all(same(a, b) for a, b in zip(stored.values, values, strict=True))
    # A NaN with a payload keeps its bits too.
    odd_nan = struct.unpack(">d", bytes.fromhex("7ff8000000000abc"))[0]
    stored = decode(codec.encode(1, 2, [None, odd_nan, None, None]))
    assert stored.values is not None
    assert same(stored.values[1], odd_nan)


def test_tombstone_is_a_three_element_array() -> None:
    raw = ViewCodec.tombstone(123, -(2**63))
    assert len(raw) == 22
    assert msgpack.unpackb(raw) == [FORMAT_TOMBSTONE, 123, -(2**63)]
    stored = decode(raw)
    assert (stored.feature_ts_us, stored.created_ts_us, stored.values) == (123, -(2**63), None)


def test_value_layout_is_documented_bytes() -> None:
    """The layout of docs/online-store.md, byte by byte."""
    features = [("n", "int64"), ("x", "float64")]
    view = make_view([("id", "string")], features)
    raw = ViewCodec(view).encode(1_700_000_000_000_000, 1_700_000_000_000_001, [7, None])
    assert raw[0] == 0xDC
    assert struct.unpack(">H", raw[1:3]) == (6,)
    assert raw[3] == 1
    assert raw[4] == raw[13] == 0xD3
    assert struct.unpack(">q", raw[5:13]) == (1_700_000_000_000_000,)
    assert struct.unpack(">q", raw[14:22]) == (1_700_000_000_000_001,)
    assert raw[22:24] == bytes([0xC4, 0x08])
    assert raw[24:32] == layout_id(features)
    assert raw[32:] == bytes([0x07, 0xC0])  # 7, nil
    assert msgpack.unpackb(raw) == [
        1,
        1_700_000_000_000_000,
        1_700_000_000_000_001,
        layout_id(features),
        7,
        None,
    ]


@pytest.mark.parametrize("count", [1, 15, 16, 300])
def test_any_number_of_features(count: int) -> None:
    view = make_view([("id", "string")], [(f"f{i}", "int64") for i in range(count)])
    values = list(range(count))
    raw = ViewCodec(view).encode(5, 6, values)
    assert decode(raw).values == values
    assert struct.unpack(">H", raw[1:3]) == (count + 4,)


def test_decode_rejects_foreign_values() -> None:
    with pytest.raises(OnlineStoreError, match="unreadable online value"):
        decode(b"\xc1")
    with pytest.raises(OnlineStoreError, match="not a skewless value array"):
        decode(msgpack.packb("hello"))
    with pytest.raises(OnlineStoreError, match="unknown format 9"):
        decode(msgpack.packb([9, 1, 2, b"12345678"]))


@given(st.lists(TEXT, min_size=1, max_size=3), st.lists(TEXT, min_size=1, max_size=3))
def test_string_keys_never_collide(a: list[str], b: list[str]) -> None:
    n = max(len(a), len(b))
    a, b = (a + [""] * n)[:n], (b + [""] * n)[:n]
    codec = ViewCodec(make_view([(f"k{i}", "string") for i in range(n)], [("f", "int64")]))
    assert (codec.entity_key(a) == codec.entity_key(b)) == (a == b)
    assert (codec.key_function()(a) == codec.key_function()(b)) == (a == b)
    assert codec.entity_key(a) == codec.key_function()(a)


@given(TEXT)
def test_escape_round_trips_and_hides_separators(text: str) -> None:
    escaped = escape_key_part(text)
    assert unescape_key_part(escaped) == text
    assert not set(escaped) & {":", "{", "}"}


@given(st.tuples(INT64, TEXT), st.tuples(INT64, TEXT))
def test_composite_int_and_string_keys(a: tuple[int, str], b: tuple[int, str]) -> None:
    codec = ViewCodec(make_view([("id", "int64"), ("region", "string")], [("f", "int64")]))
    assert (codec.entity_key(a) == codec.entity_key(b)) == (a == b)
    assert codec.entity_key(a) == codec.key_function()(a)


def test_key_layout() -> None:
    codec = ViewCodec(make_view([("id", "int64"), ("region", "string")], [("f", "int64")], name="spend"))
    assert codec.entity_key([-5, "eu:west"]) == "sk:spend:3:-5:eu%3Awest"
    assert codec.entity_key([7, ""]) == "sk:spend:3:7:"
    assert codec.entity_key([7, "%3A"]) == "sk:spend:3:7:%253A"
    assert codec.layout_key.startswith("sk-layout:spend:3:")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (None, "key 'id' is null"),
        ("5", "must be an int64, got str '5'"),
        (True, "must be an int64, got bool True"),
        (5.0, "must be an int64, got float 5.0"),
        (2**63, "out of the int64 range"),
    ],
)
def test_int_keys_are_checked(value: Any, message: str) -> None:
    codec = ViewCodec(make_view([("id", "int64")], [("f", "int64")]))
    with pytest.raises(EntityError, match=message):
        codec.entity_key([value], where="entity row 0")


def test_string_keys_are_checked() -> None:
    codec = ViewCodec(make_view([("id", "string")], [("f", "int64")]))
    with pytest.raises(EntityError, match="entity row 2: key 'id' must be a string, got int 5"):
        codec.entity_key([5], where="entity row 2")


def test_layout_document_round_trip() -> None:
    features = [("a", "int64"), ("b", "string")]
    assert parse_layout_document(layout_document(features)) == tuple(features)
    assert layout_id(features) != layout_id(list(reversed(features)))
    with pytest.raises(OnlineStoreError):
        parse_layout_document(b"\xc1")


def test_json_represents_nan_and_keeps_floats_exact() -> None:
    rows = [{"a": float("nan"), "b": float("inf"), "c": float("-inf"), "d": -0.0, "e": 0.1, "f": None}]
    text = dumps(json_rows(rows))
    assert text == '[{"a": "NaN", "b": "Infinity", "c": "-Infinity", "d": -0.0, "e": 0.1, "f": null}]'
