"""Aggregation views as small DataFrame -> DataFrame steps (DESIGN.md section 3).

1. :func:`build_tiles`: events -> one row per (entity, day) of mergeable partial aggregates.
2. :func:`windows_from_tiles`: tiles -> one row per (entity, ds) with every window feature, plus
   a tombstone row (all features null) on the day an entity drops out of the longest window.

Floating-point sums are folded over *sorted* values (within a day) and over tiles in day order
(within a window), so a daily run and a backfill produce bit-identical results whatever the
partitioning. Variance uses Welford within a day and Chan's merge across days.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING

from skewless.manifest import FeatureSpec, ViewSpec
from skewless.offline.sources import DAY, TS

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

ROWS = "n_rows"
AGE = "_age"
TARGET = "ds"


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


def explode_to_targets(tiles: DataFrame, max_window_days: int, start: date, end: date) -> DataFrame:
    """Emit each tile to every target ``ds`` whose windows (or drop-out check) can see it.

    A tile of day ``d`` is inside an N-day window of target ``t`` when ``0 <= t - d < N``; at
    ``t - d == max_window_days`` it has just left the longest window (drop-out detection).
    """
    from pyspark.sql import functions as F

    offsets = F.sequence(F.lit(0), F.lit(max_window_days))
    exploded = tiles.withColumnRenamed(TARGET, "_tile_day").withColumn(AGE, F.explode(offsets))
    target = F.date_add(F.col("_tile_day"), F.col(AGE))
    return (
        exploded.withColumn(TARGET, target)
        .where((F.col(TARGET) >= F.lit(start)) & (F.col(TARGET) <= F.lit(end)))
        .drop("_tile_day")
    )


def _in_window(days: int) -> Column:
    from pyspark.sql import functions as F

    return F.col(AGE) < F.lit(days)


def _sum_parts(column: str) -> str:
    return f"_parts_{column}_sum"


def _moment_parts(column: str) -> str:
    return f"_parts_{column}_moments"


def _ordered(name: str, **fields: Column) -> Column:
    """Tiles' partial values as an array sorted by age: a fixed fold order, whatever the shuffle."""
    from pyspark.sql import functions as F

    parts = F.struct(F.col(AGE).alias("age"), *[value.alias(key) for key, value in fields.items()])
    return F.array_sort(F.collect_list(parts)).alias(name)


def _direct_feature(feature: FeatureSpec) -> Column:
    """count, min, max, last and approx_count_distinct combine exactly in any order."""
    from pyspark.sql import functions as F

    inside = _in_window(feature.window_days or 0)
    column = feature.column
    if feature.function == "count":
        source = F.col(ROWS) if column is None else F.col(tile_column(column, "n"))
        return F.coalesce(F.sum(F.when(inside, source)), F.lit(0).cast("long"))
    assert column is not None  # the compiler requires a column for every other function
    if feature.function == "min":
        return F.min(F.when(inside, F.col(tile_column(column, "min"))))
    if feature.function == "max":
        return F.max(F.when(inside, F.col(tile_column(column, "max"))))
    if feature.function == "last":
        return F.max(F.when(inside, F.col(tile_column(column, "last"))))["value"]
    if feature.function == "approx_count_distinct":
        union = F.hll_union_agg(F.when(inside, F.col(tile_column(column, "hll"))))
        return F.coalesce(F.hll_sketch_estimate(union), F.lit(0).cast("long"))
    raise ValueError(f"{feature.function!r} is folded from ordered parts")  # pragma: no cover


def _chan_merge(acc: Column, tile: Column) -> Column:
    """Merge two (n, mean, m2) summaries (Chan et al.), numerically stable."""
    from pyspark.sql import functions as F

    n = acc["n"] + tile["n"]
    delta = tile["mean"] - acc["mean"]
    safe_n = F.when(n > 0, n).otherwise(F.lit(1))
    mean = acc["mean"] + delta * tile["n"] / safe_n
    m2 = acc["m2"] + tile["m2"] + delta * delta * acc["n"] * tile["n"] / safe_n
    return F.struct(n.alias("n"), mean.alias("mean"), m2.alias("m2"))


def _folded_feature(feature: FeatureSpec, dtypes: dict[str, str]) -> Column:
    """sum, avg and stddev folded over the window's tiles in age order (bit-reproducible)."""
    from pyspark.sql import functions as F

    days = F.lit(feature.window_days or 0)
    column = feature.column
    assert column is not None  # the compiler requires a column for these functions
    if feature.function == "stddev":
        inside = F.filter(F.col(_moment_parts(column)), lambda t: t["age"] < days)
        zero = F.struct(F.lit(0).cast("long").alias("n"), F.lit(0.0).alias("mean"), F.lit(0.0).alias("m2"))
        moments = F.aggregate(inside, zero, lambda acc, t: _chan_merge(acc, t["v"]))
        return F.when(moments["n"] >= 2, F.sqrt(moments["m2"] / (moments["n"] - 1)))
    inside = F.filter(F.col(_sum_parts(column)), lambda t: t["age"] < days)
    zero = F.lit(0).cast("long") if dtypes[column] == "int64" else F.lit(0.0)
    total = F.aggregate(inside, zero, lambda acc, t: acc + t["s"])
    count = F.aggregate(inside, F.lit(0).cast("long"), lambda acc, t: acc + t["n"])
    if feature.function == "sum":
        return F.when(count > 0, total)
    return F.when(count > 0, total.cast("double") / count)


FOLDED = frozenset({"sum", "avg", "stddev"})
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

    plan = TilePlan.of(view)
    dtypes = column_dtypes(view)
    longest = view.max_window_days
    exploded = explode_to_targets(tiles, longest, start, end)

    aggregates: list[Column] = [F.min(F.col(AGE)).alias("_min_age")]
    for column in sorted(plan.sums):
        aggregates.append(
            _ordered(
                _sum_parts(column),
                s=F.col(tile_column(column, "sum")),
                n=F.col(tile_column(column, "n")),
            )
        )
    for column in sorted(plan.moments):
        aggregates.append(_ordered(_moment_parts(column), v=F.col(tile_column(column, "moments"))))
    aggregates += [_direct_feature(f).alias(f.name) for f in view.features if f.function not in FOLDED]
    grouped = exploded.groupBy(*view.key_names, TARGET).agg(*aggregates)

    # On the day the entity's last tile leaves the longest window, emit a tombstone: no value.
    alive = F.col("_min_age") < F.lit(longest)
    features = []
    for feature in view.features:
        value = _folded_feature(feature, dtypes) if feature.function in FOLDED else F.col(feature.name)
        features.append(F.when(alive, value).cast(_SPARK_TYPES[feature.dtype]).alias(feature.name))
    lag = timedelta(seconds=view.availability_lag_seconds)
    boundary = F.to_timestamp(F.date_add(F.col(TARGET), 1))
    feature_ts = boundary + F.make_dt_interval(secs=F.lit(lag.total_seconds())) if lag else boundary
    return grouped.select(
        *view.key_names,
        F.col(TARGET),
        feature_ts.alias("feature_ts"),
        F.lit(created_ts).cast("timestamp").alias("created_ts"),
        *features,
    )
