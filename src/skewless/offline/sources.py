"""Reading raw sources (Parquet or Delta) into a normalised event frame.

The result has the entity keys (cast to their declared type), ``_ts`` (UTC timestamp), ``_day``
(its UTC date), the view's filter applied, and the columns its features use. Problems in the
data raise :class:`DataError` naming the source, the column and the path.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, timedelta
from typing import TYPE_CHECKING

from skewless import semantics
from skewless.errors import DataError
from skewless.manifest import SourceSpec, ViewSpec
from skewless.offline.inputs import InputError, InputSet, inspect_input, read_input
from skewless.runtime.settings import Settings
from skewless.spec.models import NEEDS_NUMERIC

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

TS = "_ts"
DAY = "_day"
CREATED = "_created"


def inspect_source(settings: Settings, source: SourceSpec, days: Iterable[date] | None = None) -> InputSet:
    """The source's files and schema (no Spark); a bad path is a :class:`DataError` naming it.

    With ``days`` and a ``partition_column``, only those days' hive folders are listed.
    """
    pruned = None
    if days is not None and source.partition_column:
        pruned = (source.partition_column, frozenset(d.isoformat() for d in days))
    try:
        return inspect_input(settings.source_uri(source.path), source.format, only_partitions=pruned)
    except InputError as exc:
        raise DataError(str(exc), source=source.name) from None


def _read_raw(
    spark: SparkSession, settings: Settings, source: SourceSpec, days: Iterable[date] | None = None
) -> tuple[DataFrame, InputSet]:
    inputs = inspect_source(settings, source, days)
    try:
        return read_input(spark, inputs), inputs
    except InputError as exc:
        raise DataError(str(exc), source=source.name) from None


def source_schema_frame(spark: SparkSession, settings: Settings, source: SourceSpec) -> DataFrame:
    """The raw source as Spark sees it after normalisation (used by ``validate --deep``)."""
    return _read_raw(spark, settings, source)[0]


def _require_columns(frame: DataFrame, source: SourceSpec, uri: str, columns: Iterable[str]) -> None:
    present = set(frame.columns)
    for column in dict.fromkeys(columns):
        if column not in present:
            raise DataError(
                f"missing in {uri} (columns: {', '.join(sorted(present))})",
                source=source.name,
                column=column,
            )


def timestamp_column(frame: DataFrame, source: SourceSpec, where: str, column: str) -> Column:
    """The source's timestamp as a UTC ``TimestampType`` column, or a clear error.

    Every Parquet encoding (ns, us, ms, INT96, with or without zone) already arrives as a UTC
    timestamp from :func:`skewless.offline.inputs.read_input`.
    """
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    data_type = frame.schema[column].dataType
    if isinstance(data_type, T.TimestampType):
        return F.col(column)
    if isinstance(data_type, T.StringType) and source.timestamp_format:
        return F.to_timestamp(F.col(column), source.timestamp_format)
    hint = "declare timestamp_format on the source" if isinstance(data_type, T.StringType) else ""
    raise DataError(
        f"expected a timestamp, found {data_type.simpleString()} in {where}" + (f"; {hint}" if hint else ""),
        source=source.name,
        column=column,
    )


def _typed_column(
    frame: DataFrame, inputs: InputSet, source: SourceSpec, where: str, name: str, dtype: str, role: str
) -> Column:
    """``name`` cast to ``dtype``, or a :class:`DataError` naming source, column and file.

    The column's type is the one its files store (``float32`` stays float32 although Spark reads
    it widened to double: casting back is exact), else the one Spark reads (partition columns).
    """
    from pyspark.sql import functions as F

    from skewless.offline.inputs import skewless_type
    from skewless.offline.schemas import spark_type

    actual = frame.schema[name].dataType.simpleString()
    stored = inputs.schema.field(name).type if name in inputs.schema.names else None
    found = skewless_type(stored) if stored is not None else semantics.dtype_of_spark(actual)
    if found is None or not semantics.can_feed(found, dtype):
        raise DataError(
            f"{role} must be {dtype}, found {actual} in {where} (cannot be cast safely)",
            source=source.name,
            column=name,
        )
    return F.col(name).cast(spark_type(dtype))


def value_dtypes(view: ViewSpec) -> dict[str, str]:
    """Source column -> the dtype its values must have (columns whose type does not matter are absent).

    Snapshot features store the column as their dtype; sum/min/max/last keep the column's type;
    avg/stddev need any number; count and approx_count_distinct take any type.
    """
    out: dict[str, str] = {}
    for feature in view.features:
        if feature.column is None:
            continue
        if feature.function is None or feature.function in ("sum", "min", "max", "last"):
            out.setdefault(feature.column, feature.dtype)
        elif feature.function in ("last_k", "top_k"):
            out.setdefault(feature.column, semantics.element_dtype(feature.dtype) or feature.dtype)
        elif feature.function in NEEDS_NUMERIC:
            out.setdefault(feature.column, "float64")
    return out


def day_bounds(days: Iterable[date]) -> tuple[date, date]:
    ordered = sorted(days)
    return ordered[0], ordered[-1] + timedelta(days=1)


def read_events(
    spark: SparkSession,
    settings: Settings,
    view: ViewSpec,
    days: Iterable[date],
    *,
    value_columns: Iterable[str] = (),
) -> DataFrame:
    """Events of ``view``'s source whose UTC day is in ``days``, filtered, with typed keys.

    Prunes the source's date partitions when it declares ``partition_column``. Value columns
    whose type matters (:func:`value_dtypes`) are checked and cast; the others pass as read.
    """
    from pyspark.sql import functions as F

    wanted = sorted(set(days))
    source = view.source
    raw, inputs = _read_raw(spark, settings, source, wanted)
    where = f"file {inputs.first_file}"
    needed = [*view.key_names, source.timestamp, *value_columns]
    if source.created_timestamp:
        needed.append(source.created_timestamp)
    _require_columns(raw, source, inputs.uri, needed)

    if source.partition_column:
        _require_columns(raw, source, inputs.uri, [source.partition_column])
        # The partition holds the event's UTC date (a date, or a yyyy-MM-dd string); prune on it
        # before touching any file.
        partition = F.col(source.partition_column).cast("string")
        raw = raw.where(partition.isin([d.isoformat() for d in wanted]))
    ts = timestamp_column(raw, source, where, source.timestamp)
    start, end = day_bounds(wanted)
    frame = raw.withColumn(TS, ts).where(
        (F.col(TS) >= F.lit(start).cast("timestamp")) & (F.col(TS) < F.lit(end).cast("timestamp"))
    )
    frame = frame.withColumn(DAY, F.to_date(F.col(TS)))
    if len(wanted) != (end - start).days:
        frame = frame.where(F.col(DAY).isin(wanted))
    if view.filter:
        frame = frame.where(F.expr(view.filter))
    keys = [
        _typed_column(raw, inputs, source, where, k.name, k.dtype, "join key").alias(k.name)
        for k in view.join_keys
    ]
    typed = value_dtypes(view)
    extra = [
        (
            _typed_column(raw, inputs, source, where, c, typed[c], "value column") if c in typed else F.col(c)
        ).alias(c)
        for c in dict.fromkeys(value_columns)
        if c not in view.key_names
    ]
    if source.created_timestamp:
        extra.append(timestamp_column(raw, source, where, source.created_timestamp).alias(CREATED))
    return frame.select(*keys, F.col(TS), F.col(DAY), *extra)


def null_key_error(frame: DataFrame, source: SourceSpec, settings: Settings, key: str) -> DataError:
    """Build the error for rows with a null key, naming the file of the first such row."""
    from pyspark.sql import functions as F

    uri = settings.source_uri(source.path)
    sample = frame.where(F.col(key).isNull()).select(F.input_file_name().alias("f")).limit(1).first()
    where = f"file {sample['f']}" if sample and sample["f"] else f"in {uri}"
    return DataError(
        "null entity key (rows with a null key cannot be joined)", source=source.name, column=key, where=where
    )
