"""The time contract (skewless.semantics): boundaries, the ds that answers a time, liveness, dtypes."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from skewless import semantics
from skewless.manifest import FeatureSpec, JoinKey, SourceSpec, ViewSpec

US = timedelta(microseconds=1)
LAG = timedelta(hours=2, minutes=30)  # not a whole day


def make_view(
    kind: str = "aggregation", ttl: timedelta = timedelta(days=3), lag: timedelta = LAG
) -> ViewSpec:
    return ViewSpec(
        name="v",
        version=1,
        kind=kind,
        entity="e",
        join_keys=(JoinKey(name="id", dtype="string"),),
        source=SourceSpec(name="s", path="s", format="parquet", timestamp="ts"),
        filter=None,
        ttl_seconds=int(ttl.total_seconds()),
        availability_lag_seconds=int(lag.total_seconds()),
        features=(FeatureSpec(name="n", dtype="int64", function="count", window_days=7, meaning_hash="x"),),
        expectations=(),
        table="t",
        tiles_table=None,
        content_hash="h",
    )


def test_boundary_is_the_next_midnight_utc() -> None:
    assert semantics.boundary(date(2024, 2, 28)) == datetime(2024, 2, 29, tzinfo=UTC)
    assert semantics.boundary(date(2024, 12, 31)) == datetime(2025, 1, 1, tzinfo=UTC)
    assert semantics.boundary(date(1969, 12, 31)) == datetime(1970, 1, 1, tzinfo=UTC)
    assert semantics.boundary_us(date(1970, 1, 1)) == semantics.DAY_US


def test_feature_ts_adds_a_lag_that_is_not_a_whole_day() -> None:
    view = make_view(lag=timedelta(hours=2, minutes=30, seconds=15))
    assert semantics.feature_ts(view, date(2024, 5, 1)) == datetime(2024, 5, 2, 2, 30, 15, tzinfo=UTC)
    assert semantics.feature_ts_us(view, date(2024, 5, 1)) == semantics.to_micros(
        datetime(2024, 5, 2, 2, 30, 15)
    )
    with pytest.raises(ValueError, match="aggregation"):
        semantics.feature_ts(make_view("snapshot"), date(2024, 5, 1))


def test_instants_are_utc_microseconds() -> None:
    moment = datetime(2024, 5, 1, 12, 0, 0, 123456)
    assert semantics.to_micros(moment) == semantics.to_micros(moment.replace(tzinfo=UTC))
    paris = moment.replace(tzinfo=timezone(timedelta(hours=2)))
    assert semantics.to_micros(paris) == semantics.to_micros(moment) - 2 * 3600 * 1_000_000
    assert semantics.from_micros(semantics.to_micros(moment)) == moment.replace(tzinfo=UTC)
    assert semantics.to_micros(datetime(1969, 12, 31, 23, 59, 59, 999999)) == -1


def test_answering_ds_is_exact_at_boundary_plus_lag() -> None:
    view = make_view()
    ds = date(2024, 5, 1)
    available = semantics.feature_ts(view, ds)  # 2024-05-02 02:30
    assert semantics.answering_ds(view, available) == ds
    assert semantics.answering_ds(view, available - US) == ds - timedelta(days=1)
    assert semantics.answering_ds(view, available + timedelta(days=1) - US) == ds
    assert semantics.answering_ds(view, available + timedelta(days=1)) == ds + timedelta(days=1)
    # Naive times are UTC; other zones are converted.
    assert semantics.answering_ds(view, available.replace(tzinfo=None)) == ds
    assert semantics.answering_ds(view, available.astimezone(timezone(timedelta(hours=-9)))) == ds
    with pytest.raises(ValueError, match="aggregation"):
        semantics.answering_ds(make_view("snapshot"), available)


@given(
    st.datetimes(min_value=datetime(1960, 1, 1), max_value=datetime(2200, 1, 1)),
    st.integers(min_value=0, max_value=3 * 86400),
)
def test_answering_ds_is_the_latest_available_ds(at: datetime, lag_seconds: int) -> None:
    view = make_view(lag=timedelta(seconds=lag_seconds))
    ds = semantics.answering_ds(view, at)
    assert semantics.available_at(view, ds) <= at.replace(tzinfo=UTC)
    assert semantics.available_at(view, ds + timedelta(days=1)) > at.replace(tzinfo=UTC)


def test_read_range_of_an_aggregation_view_holds_exactly_the_rows_that_can_answer() -> None:
    view = make_view(ttl=timedelta(days=3))
    first, last = datetime(2024, 5, 10, 12), datetime(2024, 5, 20, 1)
    low, high = semantics.read_range(view, first, last)
    # Every ds whose feature_ts lies in [first - ttl, last], and no other.
    wanted = [
        date(2024, 4, 20) + timedelta(days=i)
        for i in range(60)
        if first - timedelta(days=3)
        <= semantics.feature_ts(view, date(2024, 4, 20) + timedelta(days=i)).replace(tzinfo=None)
        <= last
    ]
    assert (low, high) == (wanted[0], wanted[-1]) == (date(2024, 5, 7), date(2024, 5, 18))
    # The edges: a row exactly at first - ttl is still live, one microsecond earlier it is not.
    edge = semantics.feature_ts(view, date(2024, 5, 7)).replace(tzinfo=None) + timedelta(days=3)
    assert semantics.read_range(view, edge, edge)[0] == date(2024, 5, 7)
    assert semantics.read_range(view, edge + US, edge + US)[0] == date(2024, 5, 8)


def test_read_range_of_a_snapshot_view_is_the_dates_of_the_live_window() -> None:
    view = make_view("snapshot", ttl=timedelta(hours=12))
    assert semantics.read_range(view, datetime(2024, 6, 8, 12), datetime(2024, 6, 9, 1)) == (
        date(2024, 6, 8),
        date(2024, 6, 9),
    )
    assert semantics.read_range(view, datetime(2024, 6, 8, 11, 59), datetime(2024, 6, 8, 13)) == (
        date(2024, 6, 7),
        date(2024, 6, 8),
    )


def test_liveness_bounds_are_inclusive_in_microseconds() -> None:
    ts, ttl = 1_700_000_000_000_123, 86_400_000_000
    assert semantics.is_live(ts, ttl, ts)
    assert semantics.is_live(ts, ttl, ts + ttl)  # exactly at feature_ts + ttl
    assert not semantics.is_live(ts, ttl, ts + ttl + 1)  # one microsecond past
    assert not semantics.is_live(ts, ttl, ts - 1)
    assert semantics.live_window(ttl, ts + ttl) == (ts, ts + ttl)
    assert semantics.online_answer(ts, ttl, ts) == "live"
    assert semantics.online_answer(ts, ttl, ts + ttl) == "live"
    assert semantics.online_answer(ts, ttl, ts + ttl + 1) == "expired"
    assert semantics.online_answer(ts, ttl, ts - 1) == "unknowable"  # the store lost the older row
    assert semantics.last_live_us(ts, ttl) == ts + ttl


@given(st.integers(min_value=-(2**62), max_value=2**62), st.integers(min_value=0, max_value=10**12))
def test_expiry_covers_the_inclusive_window(feature_ts: int, ttl: int) -> None:
    expire_ms = semantics.expire_at_ms(feature_ts, ttl)
    # Redis deletes a key once its millisecond clock is past expire_ms: the last live microsecond
    # (feature_ts + ttl) lies in a millisecond <= expire_ms, and expire_ms is the first such one.
    assert (feature_ts + ttl) // 1000 <= expire_ms
    assert (expire_ms - 1) * 1000 < feature_ts + ttl
    assert semantics.is_live(feature_ts, ttl, feature_ts + ttl)
    assert semantics.is_live(feature_ts, ttl, feature_ts)
    assert not semantics.is_live(feature_ts, ttl, feature_ts + ttl + 1)
    assert not semantics.is_live(feature_ts, ttl, feature_ts - 1)


def test_expiry_rounds_up_to_the_millisecond() -> None:
    assert semantics.expire_at_ms(1_000_000, 0) == 1_000
    assert semantics.expire_at_ms(1_000_001, 0) == 1_001
    assert semantics.expire_at_ms(1_000_999, 1) == 1_001
    assert semantics.expire_at_ms(-1_500, 0) == -1


def test_a_row_of_nulls_is_a_tombstone() -> None:
    assert semantics.is_tombstone((None, None))
    assert not semantics.is_tombstone((None, 0))
    assert not semantics.is_tombstone([False])
    assert not semantics.is_tombstone(("",))


def test_window_bounds() -> None:
    end = semantics.boundary(date(2024, 5, 7))
    assert semantics.window_start(end, 7) == datetime(2024, 5, 1, tzinfo=UTC)
    assert semantics.window_day_offsets(7) == (-6, 0)
    assert semantics.window_day_offsets(1) == (0, 0)


def test_dtype_table() -> None:
    import pyarrow as pa

    assert set(semantics.FEATURE_DTYPES) <= set(semantics.DTYPES)
    assert set(semantics.KEY_DTYPES) <= set(semantics.DTYPES)
    assert {d: semantics.DTYPES[d].python for d in semantics.FEATURE_DTYPES} == {
        "int64": int,
        "int32": int,
        "float64": float,
        "float32": float,
        "string": str,
        "bool": bool,
        "timestamp": datetime,
        "date": date,
        "array<float32>": list,
        "array<float64>": list,
        "array<int64>": list,
        "array<string>": list,
    }
    assert [semantics.arrow_type(d) for d in semantics.DTYPES] == [
        pa.int64(),
        pa.int32(),
        pa.float64(),
        pa.float32(),
        pa.string(),
        pa.bool_(),
        pa.timestamp("us", tz="UTC"),
        pa.date32(),
        pa.list_(pa.float32()),
        pa.list_(pa.float64()),
        pa.list_(pa.int64()),
        pa.list_(pa.string()),
    ]
    for name, dtype in semantics.DTYPES.items():
        assert semantics.spark_type(name).simpleString() == dtype.spark
        assert semantics.dtype_of_spark(dtype.spark) == name
    assert semantics.element_dtype("array<float32>") == "float32"
    assert semantics.element_dtype("float32") is None
    assert semantics.array_of("string") == "array<string>"


def test_semantics_imports_without_spark() -> None:
    import subprocess
    import sys

    code = (
        "import sys, skewless.semantics, skewless.online.encoding, skewless.online.client; "
        "sys.exit(int(any(m.split('.')[0] == 'pyspark' for m in sys.modules)))"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_one_widening_rule_for_compile_and_read() -> None:
    """int64 may feed float64 (exact); nothing else crosses types (docs/inputs.md, Column types)."""
    assert semantics.can_feed("int64", "float64")
    assert semantics.can_feed("string", "string")
    assert not semantics.can_feed("float64", "int64")
    assert not semantics.can_feed("int64", "string")
    assert semantics.can_feed("float32", "float64")
    assert semantics.can_feed("int32", "int64")
    assert not semantics.can_feed("float64", "float32")
    assert not semantics.can_feed("int64", "int32")
    assert [semantics.dtype_of_spark(t) for t in ("bigint", "double", "boolean", "int", "decimal(20,0)")] == [
        "int64",
        "float64",
        "bool",
        "int32",
        None,
    ]
