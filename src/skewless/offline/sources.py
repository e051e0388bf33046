"""Reading raw sources (Parquet or Delta) into a normalised event frame.

The result has the entity keys (cast to their declared type), ``_ts`` (UTC timestamp), ``_day``
(its UTC date), the view's filter applied, and the columns its features use. Problems in the
data raise :class:`DataError` naming the source, the column and the path.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, timedelta
from typing import TYPE_CHECKING

from skewless.errors import DataError
from skewless.manifest import SourceSpec, ViewSpec
from skewless.runtime.settings import Settings

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

TS = "_ts"
DAY = "_day"
CREATED = "_created"


def _read_raw(spark: SparkSession, settings: Settings, source: SourceSpec) -> DataFrame:
    from pyspark.errors import AnalysisException

    from skewless.errors import TableError
    from skewless.offline.delta import delta_tables

    uri = settings.source_uri(source.path)
    try:
        if source.format == "delta":
            return delta_tables(spark).read_any(uri)
        return spark.read.parquet(uri)
    except TableError as exc:
        raise DataError(str(exc), source=source.name) from None
    except AnalysisException as exc:
        message = str(exc).strip().splitlines()[0]
        raise DataError(f"cannot read {uri}: {message}", source=source.name) from None


def source_schema_frame(spark: SparkSession, settings: Settings, source: SourceSpec) -> DataFrame:
    """The raw source as Spark sees it (used by ``validate --deep``)."""
    return _read_raw(spark, settings, source)


def _require_columns(frame: DataFrame, source: SourceSpec, uri: str, columns: Iterable[str]) -> None:
    present = set(frame.columns)
    for column in dict.fromkeys(columns):
        if column not in present:
            raise DataError(
                f"missing in {uri} (columns: {', '.join(sorted(present))})",
                source=source.name,
                column=column,
            )


def timestamp_column(frame: DataFrame, source: SourceSpec, uri: str, column: str) -> Column:
    """The source's timestamp as a UTC ``TimestampType`` column, or a clear error."""
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    data_type = frame.schema[column].dataType
    if isinstance(data_type, T.TimestampType):
        return F.col(column)
    if isinstance(data_type, T.TimestampNTZType):
        # Documented rule: a timestamp without a zone is UTC (the session zone is UTC).
        return F.col(column).cast(T.TimestampType())
    if isinstance(data_type, T.StringType) and source.timestamp_format:
        return F.to_timestamp(F.col(column), source.timestamp_format)
    hint = "declare timestamp_format on the source" if isinstance(data_type, T.StringType) else ""
    raise DataError(
        f"expected a timestamp, found {data_type.simpleString()} in {uri}" + (f"; {hint}" if hint else ""),
        source=source.name,
        column=column,
    )


def _key_column(frame: DataFrame, source: SourceSpec, uri: str, name: str, dtype: str) -> Column:
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    data_type = frame.schema[name].dataType
    if dtype == "string" and isinstance(data_type, T.StringType):
        return F.col(name)
    if dtype == "int64" and isinstance(data_type, (T.LongType, T.IntegerType, T.ShortType, T.ByteType)):
        return F.col(name).cast(T.LongType())
    raise DataError(
        f"join key must be {dtype}, found {data_type.simpleString()} in {uri}",
        source=source.name,
        column=name,
    )


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

    Prunes the source's date partitions when it declares ``partition_column``.
    """
    from pyspark.sql import functions as F

    wanted = sorted(set(days))
    source = view.source
    uri = settings.source_uri(source.path)
    raw = _read_raw(spark, settings, source)
    needed = [*view.key_names, source.timestamp, *value_columns]
    if source.created_timestamp:
        needed.append(source.created_timestamp)
    _require_columns(raw, source, uri, needed)

    if source.partition_column:
        _require_columns(raw, source, uri, [source.partition_column])
        # The partition holds the event's UTC date; prune on it before touching any file.
        partition = F.col(source.partition_column).cast("string")
        raw = raw.where(partition.isin([d.isoformat() for d in wanted]))
    ts = timestamp_column(raw, source, uri, source.timestamp)
    start, end = day_bounds(wanted)
    frame = raw.withColumn(TS, ts).where(
        (F.col(TS) >= F.lit(start).cast("timestamp")) & (F.col(TS) < F.lit(end).cast("timestamp"))
    )
    frame = frame.withColumn(DAY, F.to_date(F.col(TS)))
    if len(wanted) != (end - start).days:
        frame = frame.where(F.col(DAY).isin(wanted))
    if view.filter:
        frame = frame.where(F.expr(view.filter))
    keys = [_key_column(raw, source, uri, k.name, k.dtype).alias(k.name) for k in view.join_keys]
    extra = [F.col(c) for c in dict.fromkeys(value_columns) if c not in view.key_names]
    if source.created_timestamp:
        extra.append(timestamp_column(raw, source, uri, source.created_timestamp).alias(CREATED))
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
