"""Aggregation views as small DataFrame -> DataFrame steps (DESIGN.md section 3).

1. :func:`build_tiles`: events -> one row per (entity, day) of mergeable partial aggregates.
2. :func:`windows_from_tiles`: tiles -> a grid of the (entity, ds) rows the view has (alive days
   and the drop-out day), then every feature as a window function over the last N days' tiles;
   on the drop-out day the row is a tombstone (all features null).

Floating-point sums are folded over *sorted* values within a day, and window frames add tiles in
day order, so a daily run and a backfill produce bit-identical results whatever the partitioning.
Variance uses Welford within a day and Chan's merge across days.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING

from skewless.manifest import FeatureSpec, ViewSpec
from skewless.offline.sources import DAY, TS

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame
    from pyspark.sql.window import WindowSpec

ROWS = "n_rows"
TARGET = "ds"
OFFSET = "_offset"
DAY_NUMBER = "_day_number"
EPOCH = "1970-01-01"


@dataclass(frozen=True)
class TilePlan:
    """Which partial aggregates a view's features need, per source column."""

    counts: frozenset[str]
    sums: frozenset[str]
    moments: frozenset[str]
    minimums: frozenset[str]
    maximums: frozenset[str]
    lasts: frozenset[str]
    sketches: frozenset[str]

    @classmethod
    def of(cls, view: ViewSpec) -> TilePlan:
        def columns(*functions: str) -> frozenset[str]:
            return frozenset(
                f.column for f in view.features if f.function in functions and f.column is not None
            )

        return cls(
            counts=columns("count", "sum", "avg", "stddev"),
            sums=columns("sum", "avg"),
            moments=columns("stddev"),
            minimums=columns("min"),
            maximums=columns("max"),
            lasts=columns("last"),
            sketches=columns("approx_count_distinct"),
        )

    @property
    def value_columns(self) -> list[str]:
        every = (
            self.counts
            | self.sums
            | self.moments
            | self.minimums
            | self.maximums
            | self.lasts
            | self.sketches
        )
        return sorted(every)


def tile_column(column: str, part: str) -> str:
    return f"{column}__{part}"


def _sorted_values(column: str) -> Column:
    from pyspark.sql import functions as F

    return F.array_sort(F.collect_list(F.col(column)))  # collect_list skips nulls


def _fold_sum(values: Column, dtype: str) -> Column:
    from pyspark.sql import functions as F

    zero = F.lit(0).cast("long") if dtype == "int64" else F.lit(0.0)
    return F.aggregate(values, zero, lambda acc, x: acc + x)


def _welford(values: Column) -> Column:
    """(n, mean, m2) of a sorted array of values."""
    from pyspark.sql import functions as F

    start = F.struct(F.lit(0).cast("long").alias("n"), F.lit(0.0).alias("mean"), F.lit(0.0).alias("m2"))

    def step(acc: Column, x: Column) -> Column:
        n = acc["n"] + 1
        value = x.cast("double")
        delta = value - acc["mean"]
        mean = acc["mean"] + delta / n
        return F.struct(n.alias("n"), mean.alias("mean"), (acc["m2"] + delta * (value - mean)).alias("m2"))

    return F.aggregate(values, start, step)


def build_tiles(events: DataFrame, view: ViewSpec) -> DataFrame:
    """Events (keys, ``_ts``, ``_day``, value columns) -> one tile per (entity, day), ``ds`` = day."""
    from pyspark.sql import functions as F

    plan = TilePlan.of(view)
    dtypes = column_dtypes(view)
    aggs: list[Column] = [F.count(F.lit(1)).alias(ROWS)]
    for column in sorted(plan.counts):
        aggs.append(F.count(F.col(column)).alias(tile_column(column, "n")))
    for column in sorted(plan.sums):
        aggs.append(_fold_sum(_sorted_values(column), dtypes[column]).alias(tile_column(column, "sum")))
    for column in sorted(plan.moments):
        aggs.append(_welford(_sorted_values(column)).alias(tile_column(column, "moments")))
    for column in sorted(plan.minimums):
        aggs.append(F.min(column).alias(tile_column(column, "min")))
    for column in sorted(plan.maximums):
        aggs.append(F.max(column).alias(tile_column(column, "max")))
    for column in sorted(plan.lasts):
        # Latest event wins; ties on ts go to the largest value (struct ordering). Nulls ignored.
        latest = F.when(
            F.col(column).isNotNull(), F.struct(F.col(TS).alias("ts"), F.col(column).alias("value"))
        )
        aggs.append(F.max(latest).alias(tile_column(column, "last")))
    for column in sorted(plan.sketches):
        aggs.append(
            F.hll_sketch_agg(_sketchable(F.col(column), dtypes[column])).alias(tile_column(column, "hll"))
        )
    return events.groupBy(*view.key_names, F.col(DAY).alias(TARGET)).agg(*aggs)


def _sketchable(column: Column, dtype: str) -> Column:
    # The HLL sketch accepts int, long, string and binary; other types are sketched as strings.
    return column if dtype in ("int64", "string") else column.cast("string")


def column_dtypes(view: ViewSpec) -> dict[str, str]:
    """Value type of each source column, from the declared source columns or the feature dtype."""
    declared = view.source.columns or {}
    out: dict[str, str] = {}
    for feature in view.features:
        if feature.column is not None:
            out[feature.column] = declared.get(feature.column) or feature.dtype
    return out


def entity_day_grid(tiles: DataFrame, keys: Sequence[str], max_window_days: int) -> DataFrame:
    """One row per (entity, day) from each tile's day until the entity's next tile or its drop-out day.

    The tile's values sit on its own day; the days after it carry nulls. Those rows are exactly
    the (entity, ds) rows the view has: alive days plus the tombstone day ``last tile + longest``.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    by_day = Window.partitionBy(*keys).orderBy(F.col(TARGET))
    until = F.coalesce(
        F.least(
            F.date_sub(F.lead(F.col(TARGET)).over(by_day), 1), F.date_add(F.col(TARGET), max_window_days)
        ),
        F.date_add(F.col(TARGET), max_window_days),
    )
    value_columns = [c for c in tiles.columns if c not in (*keys, TARGET)]
    spans = tiles.withColumn(OFFSET, F.datediff(until, F.col(TARGET)))
    offsets = spans.withColumn(OFFSET, F.explode(F.sequence(F.lit(0), F.col(OFFSET))))
    return offsets.select(
        *keys,
        F.date_add(F.col(TARGET), F.col(OFFSET)).alias(TARGET),
        *[F.when(F.col(OFFSET) == 0, F.col(c)).alias(c) for c in value_columns],
    ).withColumn(DAY_NUMBER, F.datediff(F.col(TARGET), F.lit(EPOCH)))


def _window(keys: Sequence[str], days: int) -> WindowSpec:
    """The N-day window ending at (and including) the row's day: ``[ds - N + 1, ds]``."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    return Window.partitionBy(*keys).orderBy(F.col(DAY_NUMBER)).rangeBetween(-(days - 1), 0)


def _chan_merge(acc: Column, tile: Column) -> Column:
    """Merge two (n, mean, m2) summaries (Chan et al.), numerically stable."""
    from pyspark.sql import functions as F

    n = acc["n"] + tile["n"]
    delta = tile["mean"] - acc["mean"]
    safe_n = F.when(n > 0, n).otherwise(F.lit(1))
    mean = acc["mean"] + delta * tile["n"] / safe_n
    m2 = acc["m2"] + tile["m2"] + delta * delta * acc["n"] * tile["n"] / safe_n
    return F.struct(n.alias("n"), mean.alias("mean"), m2.alias("m2"))


def _feature(feature: FeatureSpec, keys: Sequence[str], dtypes: dict[str, str]) -> Column:
    """One feature as a window function over the grid. Frames are evaluated in day order, so
    floating-point sums add up in the same order in a daily run and in a backfill."""
    from pyspark.sql import functions as F

    window = _window(keys, feature.window_days or 0)
    column = feature.column
    if feature.function == "count":
        counted = F.col(ROWS) if column is None else F.col(tile_column(column, "n"))
        return F.coalesce(F.sum(counted).over(window), F.lit(0).cast("long"))
    assert column is not None  # the compiler requires a column for every other function
    if feature.function in ("sum", "avg"):
        count = F.sum(F.col(tile_column(column, "n"))).over(window)
        total = F.sum(F.col(tile_column(column, "sum"))).over(window)
        return F.when(count > 0, total if feature.function == "sum" else total.cast("double") / count)
    if feature.function == "stddev":
        parts = F.collect_list(F.col(tile_column(column, "moments"))).over(window)  # in day order
        zero = F.struct(F.lit(0).cast("long").alias("n"), F.lit(0.0).alias("mean"), F.lit(0.0).alias("m2"))
        moments = F.aggregate(parts, zero, _chan_merge)
        return F.when(moments["n"] >= 2, F.sqrt(moments["m2"] / (moments["n"] - 1)))
    if feature.function == "min":
        return F.min(F.col(tile_column(column, "min"))).over(window)
    if feature.function == "max":
        return F.max(F.col(tile_column(column, "max"))).over(window)
    if feature.function == "last":
        return F.max(F.col(tile_column(column, "last"))).over(window)["value"]
    if feature.function == "approx_count_distinct":
        union = F.hll_union_agg(F.col(tile_column(column, "hll"))).over(window)
        return F.coalesce(F.hll_sketch_estimate(union), F.lit(0).cast("long"))
    raise ValueError(f"unknown aggregation function {feature.function!r}")  # pragma: no cover


_SPARK_TYPES = {"int64": "long", "float64": "double", "string": "string", "bool": "boolean"}


def windows_from_tiles(
    tiles: DataFrame,
    view: ViewSpec,
    start: date,
    end: date,
    created_ts: datetime,
) -> DataFrame:
    """Tiles -> the view's rows for every ``ds`` in ``[start, end]`` (DESIGN.md section 3).

    ``tiles`` must hold every tile of days ``[start - max_window_days, end]``.
    """
    from pyspark.sql import functions as F

    keys = list(view.key_names)
    dtypes = column_dtypes(view)
    longest = view.max_window_days
    grid = entity_day_grid(tiles, keys, longest)
    # On the day the entity's last tile leaves the longest window, emit a tombstone: no value.
    alive = F.sum(F.col(ROWS)).over(_window(keys, longest)) > 0
    lag = timedelta(seconds=view.availability_lag_seconds)
    boundary = F.to_timestamp(F.date_add(F.col(TARGET), 1))
    feature_ts = boundary + F.make_dt_interval(secs=F.lit(lag.total_seconds())) if lag else boundary
    rows = grid.select(
        *keys,
        F.col(TARGET),
        feature_ts.alias("feature_ts"),
        F.lit(created_ts).cast("timestamp").alias("created_ts"),
        *[
            F.when(alive, _feature(f, keys, dtypes)).cast(_SPARK_TYPES[f.dtype]).alias(f.name)
            for f in view.features
        ],
    )
    return rows.where((F.col(TARGET) >= F.lit(start)) & (F.col(TARGET) <= F.lit(end)))
