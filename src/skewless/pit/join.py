"""The point-in-time join (docs/semantics.md, "Point-in-time rule") as DataFrame -> DataFrame steps.

For a spine row with keys ``k`` and timestamp ``T``, a view contributes its row with keys ``k``
and the greatest ``feature_ts <= T`` with ``feature_ts >= T - ttl``; ties go to the greatest
``created_ts``. The whole row is taken (row-wise): a null value in the chosen row stays null.

Two physical paths, one rule:

* :func:`asof_join` - general: spine and feature rows are unioned per key, ordered by time
  (features before spine rows at equal time, then by created_ts), and each spine row takes the
  last feature row seen, carried as one struct so no older value leaks into a null field.
* :func:`boundary_join` - aggregation views only: their rows sit on daily boundaries, so the
  answer is the row of ``ds*`` (:func:`skewless.semantics.answering_ds`); a plain equi-join. It
  equals the general rule when every partition up to ``max(ds*)`` is committed (see
  :func:`boundary_join_is_exact`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING

from skewless import semantics
from skewless.errors import DataError, SkewlessError
from skewless.manifest import ViewSpec
from skewless.pit.request import ViewRequest, output_columns

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

INTERNAL_PREFIX = "__sk_"
T = f"{INTERNAL_PREFIX}t"
DS_STAR = f"{INTERNAL_PREFIX}ds_star"


class SpineError(DataError):
    """The spine cannot be joined: names the column."""

    def __init__(self, message: str, *, column: str, spine: str = "spine") -> None:
        super().__init__(message, source=spine, column=column)


@dataclass(frozen=True)
class SpineStats:
    rows: int
    min_ts: datetime | None
    max_ts: datetime | None


def _int_like(type_name: str) -> bool:
    return type_name in ("bigint", "int", "smallint", "tinyint")


def prepare_spine(spine: DataFrame, requests: Sequence[ViewRequest], timestamp_column: str) -> DataFrame:
    """Check column presence and types; add the UTC timestamp column ``T`` and cast int keys to int64.

    A timestamp without a zone (``timestamp_ntz``) is read as UTC (docs/semantics.md, "Time").
    """
    from pyspark.sql import functions as F

    columns = spine.columns
    internal = [c for c in columns if c.startswith(INTERNAL_PREFIX)]
    if internal:
        raise SpineError(f"column names starting with {INTERNAL_PREFIX!r} are reserved", column=internal[0])
    if timestamp_column not in columns:
        raise SpineError(
            f"timestamp column not found (spine has: {', '.join(columns)}); pass --timestamp-column",
            column=timestamp_column,
        )
    ts_type = spine.schema[timestamp_column].dataType.simpleString()
    if ts_type not in ("timestamp", "timestamp_ntz"):
        raise SpineError(
            f"expected a timestamp (with or without zone, read as UTC), found {ts_type}",
            column=timestamp_column,
        )
    for name in output_columns(requests):
        if name in columns:
            raise SpineError(
                "the spine already has a column of this name; a feature would overwrite it", column=name
            )
    casts: dict[str, Column] = {T: F.col(timestamp_column).cast("timestamp")}
    for request in requests:
        for key in request.view.join_keys:
            if key.name not in columns:
                raise SpineError(
                    f"join key of view {request.view.name!r} ({key.dtype}) missing from the spine "
                    f"(spine has: {', '.join(columns)})",
                    column=key.name,
                )
            actual = spine.schema[key.name].dataType.simpleString()
            if key.dtype == "string" and actual != "string":
                raise SpineError(f"join key must be string, found {actual}", column=key.name)
            if key.dtype == "int64":
                if not _int_like(actual):
                    raise SpineError(f"join key must be int64, found {actual}", column=key.name)
                if actual != semantics.DTYPES["int64"].spark:
                    casts[key.name] = F.col(key.name).cast("long")
    return spine.withColumns(casts)


@dataclass(frozen=True)
class SpineCounts:
    """What :func:`spine_stats` needs, already known without reading the rows (Parquet footers)."""

    rows: int
    min_ts: datetime | None
    max_ts: datetime | None
    nulls: dict[str, int]
    """Null count of the timestamp column and of each join key."""


def checked_columns(requests: Sequence[ViewRequest], timestamp_column: str) -> list[str]:
    """The spine columns that must not hold nulls: the timestamp and every join key."""
    return [timestamp_column, *sorted({k for r in requests for k in r.view.key_names})]


def spine_stats(
    spine: DataFrame,
    requests: Sequence[ViewRequest],
    timestamp_column: str,
    counts: SpineCounts | None = None,
) -> SpineStats:
    """Row count, time range, and a clear error for null keys or times.

    One pass over the spine, or none when ``counts`` (from the files' footers) already tell.
    """
    from pyspark.sql import functions as F

    checked = checked_columns(requests, timestamp_column)
    if counts is None:
        row = spine.agg(
            F.count(F.lit(1)).alias("rows"),
            F.min(T).alias("min_ts"),
            F.max(T).alias("max_ts"),
            *[F.sum(F.col(c).isNull().cast("long")).alias(f"nulls_{i}") for i, c in enumerate(checked)],
        ).first()
        assert row is not None  # a global aggregate always returns one row
        nulls = {c: int(row[f"nulls_{i}"] or 0) for i, c in enumerate(checked)}
        counts = SpineCounts(int(row["rows"]), row["min_ts"], row["max_ts"], nulls)
    for column in checked:
        if counts.nulls.get(column):
            what = "timestamp" if column == timestamp_column else "join key"
            raise SpineError(f"{counts.nulls[column]} row(s) with a null {what}", column=column)
    return SpineStats(counts.rows, counts.min_ts, counts.max_ts)


def feature_ds_range(view: ViewSpec, stats: SpineStats) -> tuple[date, date] | None:
    """Partitions that can hold an answer for any spine time (:func:`skewless.semantics.read_range`)."""
    if stats.min_ts is None or stats.max_ts is None:
        return None
    return semantics.read_range(view, stats.min_ts, stats.max_ts)


def boundary_ds(view: ViewSpec, ts: datetime) -> date:
    """The ``ds`` whose row an aggregation view answers with at time ``ts``."""
    return semantics.answering_ds(view, ts)


def boundary_join_is_exact(view: ViewSpec, stats: SpineStats, committed: Sequence[date]) -> bool:
    """True when the equi-join on ``ds*`` provably equals the general rule for this spine.

    It does when every partition from the first committed one up to ``max(ds*)`` exists: then an
    entity has a row on ``ds*`` exactly when it has a value then (a tombstone on its drop-out day
    covers the days after), and TTL >= 1 day + lag keeps that row inside the TTL.
    """
    if view.kind != "aggregation" or stats.min_ts is None or stats.max_ts is None:
        return False
    if not committed:
        return True  # nothing to find either way: every answer is null
    first, last = committed[0], committed[-1]
    high = boundary_ds(view, stats.max_ts)
    if high > last:
        return False  # a spine time after the data: the general rule may reach back to older rows
    low = max(first, boundary_ds(view, stats.min_ts))
    present = set(committed)
    return all(low + timedelta(days=i) in present for i in range((high - low).days + 1))


def _feature_columns(request: ViewRequest) -> list[Column]:
    from pyspark.sql import functions as F

    return [F.col(f.feature.name).alias(f.column) for f in request.features]


def boundary_join(spine: DataFrame, features: DataFrame, request: ViewRequest) -> DataFrame:
    """Aggregation views: left equi-join on (keys, ds*). ``spine`` must come from :func:`prepare_spine`."""
    from pyspark.sql import functions as F

    view = request.view
    keys = list(view.key_names)
    right = features.select(*keys, F.col("ds").alias(DS_STAR), *_feature_columns(request))
    return (
        spine.withColumn(DS_STAR, semantics.answering_ds_column(view, F.col(T)))
        .join(right, on=[*keys, DS_STAR], how="left")
        .drop(DS_STAR)
    )


def asof_join(spine: DataFrame, features: DataFrame, request: ViewRequest) -> DataFrame:
    """The general rule, for any view. ``spine`` must come from :func:`prepare_spine`."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    view = request.view
    keys = list(view.key_names)
    carried = [c for c in spine.columns if c not in keys]
    is_spine, created, row, match = (f"{INTERNAL_PREFIX}{n}" for n in ("is_spine", "created", "row", "match"))

    feature_struct = F.struct(
        F.col("feature_ts").alias("feature_ts"),
        *[F.col(f.feature.name).alias(f.column) for f in request.features],
    )
    feature_side = features.select(
        *keys,
        F.col("feature_ts").alias(T),
        F.lit(0).alias(is_spine),
        F.col("created_ts").alias(created),
        feature_struct.alias(match),
    )
    spine_row = F.struct(*[F.col(c) for c in carried]).alias(row)
    spine_side = spine.select(
        *keys, F.col(T), F.lit(1).alias(is_spine), F.lit(None).cast("timestamp").alias(created), spine_row
    )

    feature_type = feature_side.schema[match].dataType
    spine_type = spine_side.schema[row].dataType
    union = spine_side.withColumn(match, F.lit(None).cast(feature_type)).unionByName(
        feature_side.withColumn(row, F.lit(None).cast(spine_type))
    )
    # Per key, in time order; at equal time feature rows first (feature_ts == T is visible),
    # and among them ascending created_ts, so the last one seen is the greatest created_ts.
    window = (
        Window.partitionBy(*keys)
        .orderBy(F.col(T), F.col(is_spine), F.col(created))
        .rowsBetween(Window.unboundedPreceding, Window.currentRow)
    )
    latest = F.last(F.col(match), ignorenulls=True).over(window)
    joined = union.withColumn(match, latest).where(F.col(is_spine) == 1)
    valid = semantics.is_live_column(view, F.col(f"{match}.feature_ts"), F.col(T))
    return joined.select(
        *keys,
        *[F.col(f"{row}.{c}").alias(c) for c in carried],
        *[F.when(valid, F.col(f"{match}.{f.column}")).alias(f.column) for f in request.features],
    )


def restore_spine_columns(
    joined: DataFrame, spine_columns: Sequence[str], requests: Sequence[ViewRequest]
) -> DataFrame:
    """Spine columns in their original order, then the feature columns in request order."""
    return joined.select(*spine_columns, *output_columns(requests))


def ensure_method(method: str) -> str:
    if method not in ("auto", "asof"):
        raise SkewlessError(f"unknown join method {method!r} (auto or asof)")
    return method
