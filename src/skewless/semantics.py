"""The time contract in one place (docs/semantics.md): every path computes its times here.

* **Boundary.** ``ds`` is a UTC date; its run covers ``ds 00:00 <= ts < ds+1 00:00`` and
  describes the world as of ``B(ds) = ds+1 00:00``.
* **feature_ts.** The row of an aggregation view for ``ds`` carries
  ``feature_ts = B(ds) + availability_lag``; a snapshot view's row carries its event time and
  sits in the partition ``ds = date(feature_ts)``.
* **The row that answers a time T.** The row with the greatest ``feature_ts <= T`` that is still
  live (below); for an aggregation view that is the row of the latest ``ds`` with
  ``B(ds) + lag <= T``: :func:`answering_ds`. A join over spine times ``[min T, max T]`` reads
  the partitions of :func:`read_range`.
* **Liveness.** A row answers at ``T`` when ``feature_ts <= T <= feature_ts + ttl``: both bounds
  inclusive, in microseconds (:func:`is_live`). Online, a key expires at the first millisecond
  at or after ``feature_ts + ttl`` (:func:`expire_at_ms`: Redis expiry has millisecond
  precision, readers apply the exact bound). The online store holds only the latest row: a
  stored ``feature_ts`` after ``T`` means it cannot know the answer at ``T``
  (:func:`online_answer`).
* **Tombstones.** An aggregation view writes a row with every feature null on the day an entity
  drops out (its last event leaves the longest window): the entity has no value from then on.
  Online it is a marker that keeps its stamp and expires like a value; readers treat it as
  absent (:func:`is_tombstone`).
* **dtypes.** :data:`DTYPES`: each skewless dtype's Python, Spark and Arrow type.

Pure Python, importable without Spark. The Spark ``Column`` versions of the rules (the functions
ending in ``_column``) import pyspark when called, so Spark jobs and plain Python share the
same constants; they compute in microseconds and day numbers, independent of the session's
time zone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import Column
    from pyspark.sql.types import DataType

    from skewless.manifest import ViewSpec

SECOND_US = 1_000_000
DAY_US = 86_400 * SECOND_US
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
EPOCH_DATE = date(1970, 1, 1)

# --- Instants -------------------------------------------------------------------------------


def as_utc(moment: datetime) -> datetime:
    """``moment`` in UTC; a naive datetime is read as UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def to_micros(moment: datetime) -> int:
    """Microseconds since 1970-01-01 UTC (exact; a naive datetime is read as UTC)."""
    delta = as_utc(moment) - EPOCH
    return (delta.days * 86_400 + delta.seconds) * SECOND_US + delta.microseconds


def from_micros(micros: int) -> datetime:
    """The UTC datetime of a microsecond timestamp."""
    return EPOCH + timedelta(microseconds=micros)


def day_number(ds: date) -> int:
    """Days since 1970-01-01 (Spark's ``unix_date``)."""
    return (ds - EPOCH_DATE).days


def from_day_number(days: int) -> date:
    return EPOCH_DATE + timedelta(days=days)


# --- Boundaries and feature_ts --------------------------------------------------------------


def boundary_us(ds: date) -> int:
    """``B(ds) = ds+1 00:00`` UTC, in microseconds."""
    return (day_number(ds) + 1) * DAY_US


def boundary(ds: date) -> datetime:
    """``B(ds) = ds+1 00:00`` UTC."""
    return from_micros(boundary_us(ds))


def lag_us(view: ViewSpec) -> int:
    return view.availability_lag_seconds * SECOND_US


def ttl_us(view: ViewSpec) -> int:
    return view.ttl_seconds * SECOND_US


def available_us(view: ViewSpec, ds: date) -> int:
    """When the values of ``ds`` become available, ``B(ds) + availability_lag`` (any view).

    ``materialize`` refuses to publish a ``ds`` earlier.
    """
    return boundary_us(ds) + lag_us(view)


def available_at(view: ViewSpec, ds: date) -> datetime:
    """:func:`available_us` as a UTC datetime."""
    return from_micros(available_us(view, ds))


def feature_ts_us(view: ViewSpec, ds: date) -> int:
    """``feature_ts`` of an aggregation view's rows for ``ds``: ``B(ds) + availability_lag``."""
    _require_aggregation(view)
    return available_us(view, ds)


def feature_ts(view: ViewSpec, ds: date) -> datetime:
    """:func:`feature_ts_us` as a UTC datetime."""
    return from_micros(feature_ts_us(view, ds))


def answering_ds(view: ViewSpec, at: datetime) -> date:
    """The ``ds`` whose row an aggregation view answers with at ``at``.

    The latest ``ds`` with ``B(ds) + lag <= at``, that is ``date(at - lag - 1 day)``. Whether
    that row exists and is live is for the join to find out.
    """
    _require_aggregation(view)
    return from_day_number((to_micros(at) - lag_us(view)) // DAY_US - 1)


def read_range(view: ViewSpec, first: datetime, last: datetime) -> tuple[date, date]:
    """The ``ds`` partitions that can hold the answer for any time in ``[first, last]``.

    Exactly the partitions with rows whose ``feature_ts`` lies in ``[first - ttl, last]``: for an
    aggregation view ``ds`` from the first with ``B(ds) + lag >= first - ttl`` to
    :func:`answering_ds` of ``last``; for a snapshot view the dates of those two instants.
    """
    low = to_micros(first) - ttl_us(view)
    high = to_micros(last)
    if view.kind == "aggregation":
        lag = lag_us(view)
        return from_day_number(-((lag - low) // DAY_US) - 1), from_day_number((high - lag) // DAY_US - 1)
    return from_day_number(low // DAY_US), from_day_number(high // DAY_US)


def _require_aggregation(view: ViewSpec) -> None:
    if view.kind != "aggregation":
        raise ValueError(f"view {view.name!r}: only aggregation views have rows on daily boundaries")


# --- Windows --------------------------------------------------------------------------------


def window_start(boundary_at: datetime, days: int) -> datetime:
    """An ``N``-day window ending at a boundary ``B`` holds the events ``B - N days <= ts < B``."""
    return boundary_at - timedelta(days=days)


def window_day_offsets(days: int) -> tuple[int, int]:
    """The tile days of an ``N``-day window for ``ds``, as offsets from ``ds``: ``[ds - N + 1, ds]``."""
    return -(days - 1), 0


# --- Liveness and expiry --------------------------------------------------------------------


def live_window(ttl_micros: int, at_us: int) -> tuple[int, int]:
    """The ``feature_ts`` values whose rows answer at ``at``: ``[at - ttl, at]``, both inclusive."""
    return at_us - ttl_micros, at_us


def is_live(feature_ts_micros: int, ttl_micros: int, at_us: int) -> bool:
    """The point-in-time rule for one row: ``feature_ts <= at <= feature_ts + ttl``."""
    oldest, newest = live_window(ttl_micros, at_us)
    return oldest <= feature_ts_micros <= newest


OnlineAnswer = Literal["live", "expired", "unknowable"]


def online_answer(feature_ts_micros: int, ttl_micros: int, at_us: int) -> OnlineAnswer:
    """What the latest stored row says about ``at``.

    ``live``: it is the answer. ``expired``: no row answers (every older row expired before it).
    ``unknowable``: the row is later than ``at``; the answer was an older row that the online
    store no longer holds, so a reader must refuse rather than answer null.
    """
    oldest, newest = live_window(ttl_micros, at_us)
    if feature_ts_micros > newest:
        return "unknowable"
    return "live" if feature_ts_micros >= oldest else "expired"


def last_live_us(feature_ts_micros: int, ttl_micros: int) -> int:
    """The last microsecond at which a row answers: ``feature_ts + ttl``."""
    return feature_ts_micros + ttl_micros


def expire_at_ms(feature_ts_micros: int, ttl_micros: int) -> int:
    """``PXAT`` of an online value: the first millisecond at or after ``feature_ts + ttl``.

    Redis deletes a key once its clock is *past* this millisecond, so the key lives through the
    whole inclusive window; readers enforce the exact microsecond bound with :func:`is_live`.
    """
    return -(-last_live_us(feature_ts_micros, ttl_micros) // 1000)


# --- Tombstones -----------------------------------------------------------------------------


def is_tombstone(features: Sequence[Any]) -> bool:
    """A row whose features are all null says the entity has no value (it dropped out)."""
    return features.count(None) == len(features)


# --- dtypes ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class DType:
    """One skewless dtype and the types it is in each engine."""

    name: str
    python: type
    spark: str
    """Spark SQL name (``DataType.simpleString()``, usable in ``cast``)."""
    spark_class: str
    """Class in ``pyspark.sql.types`` (``ArrayType`` for arrays: see :attr:`element`)."""
    arrow: str
    """pyarrow type (:func:`arrow_type`; timestamps are microseconds in UTC)."""
    element: str | None = None
    """The element dtype of an array dtype (``array<float32>`` -> ``float32``)."""


_SCALARS = (
    DType("int64", int, "bigint", "LongType", "int64"),
    DType("int32", int, "int", "IntegerType", "int32"),
    DType("float64", float, "double", "DoubleType", "float64"),
    DType("float32", float, "float", "FloatType", "float32"),
    DType("string", str, "string", "StringType", "string"),
    DType("bool", bool, "boolean", "BooleanType", "bool"),
    DType("timestamp", datetime, "timestamp", "TimestampType", "timestamp[us, tz=UTC]"),
    DType("date", date, "date", "DateType", "date32"),
)
ARRAY_ELEMENTS = ("float32", "float64", "int64", "string")
"""Element dtypes of the array dtypes (embeddings and lists)."""


def _array(element: DType) -> DType:
    return DType(
        f"array<{element.name}>",
        list,
        f"array<{element.spark}>",
        "ArrayType",
        f"list<{element.arrow}>",
        element.name,
    )


DTYPES: dict[str, DType] = {
    d.name: d for d in (*_SCALARS, *(_array(s) for e in ARRAY_ELEMENTS for s in _SCALARS if s.name == e))
}
"""Every dtype a feature can have (docs/semantics.md, Types); join keys are string or int64."""
FEATURE_DTYPES = tuple(DTYPES)
KEY_DTYPES = ("string", "int64")
ARRAY_DTYPES = frozenset(name for name, d in DTYPES.items() if d.element is not None)
NUMERIC_DTYPES = frozenset({"int64", "int32", "float64", "float32"})
_WIDENS_TO: dict[str, frozenset[str]] = {
    "int64": frozenset({"int32"}),
    "float64": frozenset({"int64", "int32", "float32"}),
}
"""Exact widenings: an int64 column may feed a float64 value (docs/inputs.md, Column types); a
narrow int32 or float32 column feeds its wide type. Never the other way: a float64 column does
not feed a float32 feature (rounding would change values)."""


def array_of(element: str) -> str:
    """The array dtype of ``element`` values (``float32`` -> ``array<float32>``)."""
    name = f"array<{element}>"
    if name not in DTYPES:
        raise ValueError(f"no array dtype of {element} (arrays hold {', '.join(ARRAY_ELEMENTS)})")
    return name


def element_dtype(dtype: str) -> str | None:
    """The element dtype of an array dtype, None for a scalar."""
    found = DTYPES.get(dtype)
    return found.element if found is not None else None


def can_feed(column_dtype: str, wanted: str) -> bool:
    """A column of ``column_dtype`` may supply values of dtype ``wanted`` without losing meaning."""
    return column_dtype == wanted or column_dtype in _WIDENS_TO.get(wanted, frozenset())


def widened(dtype: str) -> str:
    """``int32`` -> ``int64``, ``float32`` -> ``float64``; other dtypes unchanged.

    Aggregations that keep their column's type (sum, min, max, last) compute in the wide type,
    as sources were always read (docs/inputs.md): a narrow column does not change their dtype.
    """
    return {"int32": "int64", "float32": "float64"}.get(dtype, dtype)


def dtype_of_spark(simple_string: str) -> str | None:
    """The skewless dtype of a Spark type name (``DataType.simpleString()``), None if none."""
    return next((d.name for d in DTYPES.values() if d.spark == simple_string), None)


def spark_type(dtype: str) -> DataType:
    from pyspark.sql import types as T

    found = DTYPES[dtype]
    if found.element is not None:
        return T.ArrayType(spark_type(found.element), True)
    return getattr(T, found.spark_class)()  # type: ignore[no-any-return]


def arrow_type(dtype: str) -> pa.DataType:
    import pyarrow as pa

    found = DTYPES[dtype]
    if found.element is not None:
        return pa.list_(arrow_type(found.element))
    if dtype == "timestamp":
        return pa.timestamp("us", tz="UTC")
    return pa.type_for_alias(found.arrow)


# --- The same rules as Spark Columns --------------------------------------------------------


def feature_ts_column(view: ViewSpec, ds: Column) -> Column:
    """:func:`feature_ts` of a ``date`` column: ``B(ds) + availability_lag`` as a timestamp."""
    from pyspark.sql import functions as F

    days = F.unix_date(ds).cast("long") + F.lit(1)
    return F.timestamp_micros(days * F.lit(DAY_US) + F.lit(lag_us(view)))


def answering_ds_column(view: ViewSpec, at: Column) -> Column:
    """:func:`answering_ds` of a timestamp column."""
    from pyspark.sql import functions as F

    _require_aggregation(view)
    shifted = F.unix_micros(at) - F.lit(lag_us(view))
    # Floor division in exact integer arithmetic (a multiple of DAY_US divides exactly).
    days = ((shifted - F.pmod(shifted, F.lit(DAY_US))) / F.lit(DAY_US)).cast("long")
    return F.date_from_unix_date((days - F.lit(1)).cast("int"))


def is_live_column(view: ViewSpec, feature_ts_col: Column, at: Column) -> Column:
    """:func:`is_live` of a row's ``feature_ts`` at a timestamp column."""
    from pyspark.sql import functions as F

    ts, now = F.unix_micros(feature_ts_col), F.unix_micros(at)
    return (ts <= now) & (ts >= now - F.lit(ttl_us(view)))


def has_value_column(feature_names: Sequence[str]) -> Column:
    """True unless the row is a tombstone (every feature null): :func:`is_tombstone` negated."""
    from pyspark.sql import functions as F

    has_value = F.lit(False)
    for name in feature_names:
        has_value = has_value | F.col(name).isNotNull()
    return has_value
