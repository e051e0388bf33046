"""Aggregation views as small DataFrame -> DataFrame steps (docs/semantics.md, "Aggregation views").

1. :func:`build_tiles`: events -> one row per (entity, day) of mergeable partial aggregates.
2. :func:`windows_from_tiles`: tiles -> a grid of the (entity, ds) rows the view has (alive days
   and the drop-out day), then every feature as a window function over the last N days' tiles;
   on the drop-out day the row is a tombstone (all features null).

Floating-point sums add values in one fixed order within a day (a window frame ordered by every
input column) and in day order across days, so a daily run and a backfill are bit-identical.
Variance pools per-day moments (n, sum, sum of squares of the daily mean, M2) over the window.

List and sketch functions keep exact, mergeable tiles too (docs/semantics.md, "List, time and
percentile functions"): ``last_k`` the day's k latest ``(ts, value)``, ``top_k`` a map of the
day's value counts, ``first_seen``/``last_seen`` the day's first and last event time, and
``approx_percentile`` a map of log-bucket counts (:mod:`skewless.offline.sketch`, relative error
at most 1%). Windows merge them with higher-order functions, in a fixed order, so daily runs and a
backfill agree exactly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING

from skewless import semantics
from skewless.manifest import FeatureSpec, ViewSpec
from skewless.offline import sketch
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
    first_seen: frozenset[str] = frozenset()
    """Columns (or :data:`TS` for every event) whose first non-null event time a day keeps."""
    last_seen: frozenset[str] = frozenset()
    latest_k: frozenset[tuple[str, int]] = frozenset()
    """(column, k): the day's k latest ``(ts, value)`` of the column."""
    frequencies: frozenset[str] = frozenset()
    """Columns whose per-day value counts a day keeps (top_k, top_k_counts)."""
    buckets: frozenset[str] = frozenset()
    """Columns whose per-day log-bucket counts a day keeps (approx_percentile)."""

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
            first_seen=frozenset(f.column or TS for f in view.features if f.function == "first_seen"),
            last_seen=frozenset(f.column or TS for f in view.features if f.function == "last_seen"),
            latest_k=frozenset(
                (f.column, f.k) for f in view.features if f.function == "last_k" and f.column and f.k
            ),
            frequencies=columns("top_k", "top_k_counts"),
            buckets=columns("approx_percentile"),
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
            | self.first_seen
            | self.last_seen
            | {column for column, _ in self.latest_k}
            | self.frequencies
            | self.buckets
        )
        return sorted(every - {TS})


def tile_column(column: str, part: str) -> str:
    return f"{column}__{part}"


def build_tiles(events: DataFrame, view: ViewSpec) -> DataFrame:
    """Events (keys, ``_ts``, ``_day``, value columns) -> one tile per (entity, day), ``ds`` = day.

    Aggregates are window functions over each (entity, day) with an unbounded frame ordered by
    every input column: the rows are added in one total order, so a float sum or mean has the
    same bits however Spark split the input (a daily run and a backfill agree exactly).
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    plan = TilePlan.of(view)
    dtypes = column_dtypes(view)
    group = [*view.key_names, DAY]
    order = [F.col(TS), *[F.col(c).asc_nulls_first() for c in plan.value_columns]]
    ordered = Window.partitionBy(*group).orderBy(*order)
    whole = ordered.rowsBetween(Window.unboundedPreceding, Window.unboundedFollowing)

    tiles: list[Column] = [F.count(F.lit(1)).over(whole).alias(ROWS)]
    for column in sorted(plan.counts):
        tiles.append(F.count(F.col(column)).over(whole).alias(tile_column(column, "n")))
    for column in sorted(plan.sums):
        tiles.append(F.sum(F.col(column)).over(whole).alias(tile_column(column, "sum")))
    for column in sorted(plan.moments):
        # Per-day moments as sums that windows can add: n, n*mean, n*mean^2 and M2 (Welford, by
        # Spark's var_pop in the frame's fixed order).
        value = F.col(column).cast("double")
        n = F.count(value).over(whole)
        mean = F.avg(value).over(whole)
        moments = F.struct(
            n.alias("n"),
            F.coalesce(mean * n, F.lit(0.0)).alias("sum"),
            F.coalesce(mean * mean * n, F.lit(0.0)).alias("sum_sq"),
            F.coalesce(F.var_pop(value).over(whole) * n, F.lit(0.0)).alias("m2"),
        )
        tiles.append(moments.alias(tile_column(column, "moments")))
    for column in sorted(plan.minimums):
        tiles.append(F.min(column).over(whole).alias(tile_column(column, "min")))
    for column in sorted(plan.maximums):
        tiles.append(F.max(column).over(whole).alias(tile_column(column, "max")))
    for column in sorted(plan.lasts):
        # Latest event wins; ties on ts go to the largest value (struct ordering). Nulls ignored.
        event = F.struct(F.col(TS).alias("ts"), F.col(column).alias("value"))
        latest = F.max(F.when(F.col(column).isNotNull(), event)).over(whole)
        tiles.append(latest.alias(tile_column(column, "last")))
    for column in sorted(plan.sketches):
        hll = F.hll_sketch_agg(_sketchable(F.col(column), dtypes[column])).over(whole)
        tiles.append(hll.alias(tile_column(column, "hll")))
    for column in sorted(plan.first_seen):
        seen = F.col(TS) if column == TS else F.when(F.col(column).isNotNull(), F.col(TS))
        tiles.append(F.min(seen).over(whole).alias(tile_column(column, "first_seen")))
    for column in sorted(plan.last_seen):
        seen = F.col(TS) if column == TS else F.when(F.col(column).isNotNull(), F.col(TS))
        tiles.append(F.max(seen).over(whole).alias(tile_column(column, "last_seen")))
    for column, k in sorted(plan.latest_k):
        # The day's k latest events, newest first; ties on ts go to the larger value (as `last`).
        event = F.struct(F.col(TS).alias("ts"), F.col(column).alias("value"))
        events_of_day = F.collect_list(F.when(F.col(column).isNotNull(), event)).over(whole)
        tiles.append(F.slice(F.sort_array(events_of_day, asc=False), 1, k).alias(latest_k_column(column, k)))
    first = F.row_number().over(ordered) == 1
    built = (
        events.select(*view.key_names, F.col(DAY).alias(TARGET), *tiles, first.alias("_first"))
        .where(F.col("_first"))
        .drop("_first")
    )
    for column in sorted(plan.frequencies):
        built = _join_counts(built, events, view, F.col(column), tile_column(column, "freq"))
    for column in sorted(plan.buckets):
        bucket = sketch.bucket_column(F.col(column).cast("double"))
        built = _join_counts(built, events, view, bucket, tile_column(column, "buckets"))
    return built


def latest_k_column(column: str, k: int) -> str:
    """Tile column of a day's ``k`` latest values (one per k, so a feature with a new k gets its own)."""
    return tile_column(column, f"last{k}")


def _join_counts(tiles: DataFrame, events: DataFrame, view: ViewSpec, value: Column, name: str) -> DataFrame:
    """Adds ``name``: a map ``value -> number of the day's events with it`` (nulls ignored).

    The map is built from entries sorted by value, so its layout does not depend on how Spark
    split the input.
    """
    from pyspark.sql import functions as F

    # The counts' keys get their own names: both sides come from ``events``, and Spark would
    # otherwise read ``tiles.k == counted.k`` as the same column (a cross join).
    keys = [*view.key_names, DAY]
    renamed = {k: f"_count_key_{i}" for i, k in enumerate(keys)}
    counted = (
        events.select(*[F.col(k).alias(renamed[k]) for k in keys], value.alias("_value"))
        .where(F.col("_value").isNotNull())
        .groupBy(*renamed.values(), "_value")
        .count()
        .groupBy(*renamed.values())
        .agg(
            F.map_from_entries(
                F.sort_array(F.collect_list(F.struct(F.col("_value"), F.col("count").cast("long"))))
            ).alias(name)
        )
    )
    targets = {**{k: k for k in view.key_names}, DAY: TARGET}
    condition = [F.col(targets[k]).eqNullSafe(F.col(renamed[k])) for k in keys]
    return tiles.join(counted, condition, "left").drop(*renamed.values())


def _sketchable(column: Column, dtype: str) -> Column:
    # The HLL sketch accepts int, long, string and binary; other types are sketched as strings.
    return column if dtype in ("int64", "string") else column.cast("string")


def column_dtypes(view: ViewSpec) -> dict[str, str]:
    """Value type of each source column as the tiles hold it (widened: events are read that way).

    From the declared source columns, else the feature's dtype (an array feature's element type).
    """
    declared = view.source.columns or {}
    out: dict[str, str] = {}
    for feature in view.features:
        if feature.column is not None:
            found = declared.get(feature.column) or semantics.element_dtype(feature.dtype) or feature.dtype
            out[feature.column] = semantics.widened(found)
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

    return (
        Window.partitionBy(*keys).orderBy(F.col(DAY_NUMBER)).rangeBetween(*semantics.window_day_offsets(days))
    )


def _windowed(function: str, source: str, days: int) -> str:
    """Name of the column holding ``function(source)`` over the last ``days`` days."""
    return f"_w_{function}_{source.replace('.', '_')}_{days}"


def _window_inputs(feature: FeatureSpec) -> list[tuple[str, str, int]]:
    """The (function, tile column, days) window aggregates a feature is computed from."""
    days = feature.window_days or 0
    column = feature.column
    if feature.function == "count":
        return [("sum", ROWS if column is None else tile_column(column, "n"), days)]
    if feature.function in ("first_seen", "last_seen"):
        aggregate = "min" if feature.function == "first_seen" else "max"
        return [(aggregate, tile_column(column or TS, str(feature.function)), days)]
    assert column is not None  # the compiler requires a column for every other function
    if feature.function in ("sum", "avg"):
        return [("sum", tile_column(column, "n"), days), ("sum", tile_column(column, "sum"), days)]
    if feature.function == "stddev":
        moments = tile_column(column, "moments")
        return [("sum", f"{moments}.{part}", days) for part in ("n", "sum", "sum_sq", "m2")]
    if feature.function == "last_k":
        assert feature.k is not None  # the compiler requires k
        return [("collect", latest_k_column(column, feature.k), days)]
    parts = {
        "min": ("min", "min"),
        "max": ("max", "max"),
        "last": ("max", "last"),
        "approx_count_distinct": ("hll_union", "hll"),
        "top_k": ("collect", "freq"),
        "top_k_counts": ("collect", "freq"),
        "approx_percentile": ("collect", "buckets"),
    }
    function, part = parts[str(feature.function)]
    return [(function, tile_column(column, part), days)]


def tile_column_windows(view: ViewSpec) -> dict[str, int]:
    """Each tile column the view's windows read -> the longest window (days) reading it."""
    out = {ROWS: view.max_window_days}
    for feature in view.features:
        for _, source, days in _window_inputs(feature):
            column = source.split(".", 1)[0]
            out[column] = max(out.get(column, 0), days)
    return out


def incomplete_tile_days(view: ViewSpec, first: date, held: Mapping[date, frozenset[str]]) -> list[date]:
    """Committed tile days lacking a column that the windows of a ``ds >= first`` read.

    ``held`` maps each committed tile day to the columns its files hold. A day committed before
    a feature was added lacks that feature's partial aggregates (they would read as null): a
    run re-reads such days from raw events like uncommitted ones. A window of N days at ``ds``
    reads the tiles of ``ds - N + 1 .. ds``, so a day ``first - N`` or earlier needs no column of
    an N-day window.
    """
    windows = tile_column_windows(view)
    return sorted(
        day
        for day, columns in held.items()
        if any(name not in columns and (first - day).days < days for name, days in windows.items())
    )


def _window_expression(function: str, source: str, days: int, keys: Sequence[str]) -> Column:
    from pyspark.sql import functions as F

    aggregate = {
        "sum": F.sum,
        "min": F.min,
        "max": F.max,
        "hll_union": F.hll_union_agg,
        "collect": F.collect_list,
    }[function]
    return aggregate(F.col(source)).over(_window(keys, days))


def _feature(feature: FeatureSpec) -> Column:
    """A feature from its window aggregates (see :func:`_window_inputs`)."""
    from pyspark.sql import functions as F

    (first, *rest) = [F.col(_windowed(*spec)) for spec in _window_inputs(feature)]
    if feature.function == "count":
        return F.coalesce(first, F.lit(0).cast("long"))
    if feature.function == "sum":
        return F.when(first > 0, rest[0])
    if feature.function == "avg":
        return F.when(first > 0, rest[0].cast("double") / first)
    if feature.function == "stddev":
        # Pooled variance of the window's days: M2 = sum(M2_d) + sum(n_d mean_d^2) - (sum n_d mean_d)^2 / n
        total, total_sq, within = rest
        between = F.greatest(total_sq - total * total / first, F.lit(0.0))
        return F.when(first >= 2, F.sqrt((within + between) / (first - 1)))
    if feature.function == "last":
        return first["value"]
    if feature.function == "approx_count_distinct":
        return F.coalesce(F.hll_sketch_estimate(first), F.lit(0).cast("long"))
    if feature.function == "last_k":
        assert feature.k is not None
        latest = F.slice(F.sort_array(F.flatten(first), asc=False), 1, feature.k)
        return F.when(F.size(latest) > 0, F.transform(latest, lambda event: event["value"]))
    if feature.function in ("top_k", "top_k_counts"):
        assert feature.k is not None
        ranked = F.slice(_by_count(F.col(_merged(_window_inputs(feature)[0]))), 1, feature.k)
        part = "key" if feature.function == "top_k" else "value"
        return F.when(F.size(ranked) > 0, F.transform(ranked, lambda entry: entry[part]))
    if feature.function == "approx_percentile":
        assert feature.percentiles is not None
        merged = F.col(_merged(_window_inputs(feature)[0]))
        if feature.dtype == "array<float64>":
            return sketch.quantiles_column(merged, feature.percentiles)
        return sketch.quantile_column(merged, feature.percentiles[0])
    return first  # min, max, first_seen, last_seen


COUNT_MAPS = frozenset({"top_k", "top_k_counts", "approx_percentile"})
"""Functions computed from the sum of their window's count maps (:func:`_merged_counts`)."""


def _merged(spec: tuple[str, str, int]) -> str:
    """Column holding the merged count maps of a window input (computed once, read by every level)."""
    return "_m" + _windowed(*spec)


def _merged_counts(maps: Column) -> Column:
    """The sum of a window's count maps as entries sorted by value; null when the window has none."""
    from pyspark.sql import functions as F

    zero = F.lit(0).cast("long")

    def add(total: Column, day: Column) -> Column:
        return F.map_zip_with(total, day, lambda _, a, b: F.coalesce(a, zero) + F.coalesce(b, zero))

    first = F.try_element_at(maps, F.lit(1))
    summed = F.aggregate(F.slice(maps, 2, F.greatest(F.size(maps) - 1, F.lit(0))), first, add)
    return F.array_sort(F.map_entries(summed))


def _by_count(entries: Column) -> Column:
    """Entries ``(key: value, value: count)`` most frequent first; equal counts by ascending value."""
    from pyspark.sql import functions as F

    def compare(left: Column, right: Column) -> Column:
        return (
            F.when(left["value"] > right["value"], -1)
            .when(left["value"] < right["value"], 1)
            .when(left["key"] < right["key"], -1)
            .when(left["key"] > right["key"], 1)
            .otherwise(0)
        )

    return F.array_sort(entries, compare)


def windows_from_tiles(
    tiles: DataFrame,
    view: ViewSpec,
    start: date,
    end: date,
    created_ts: datetime,
) -> DataFrame:
    """Tiles -> the view's rows for every ``ds`` in ``[start, end]`` (docs/semantics.md).

    ``tiles`` must hold every tile of days ``[start - max_window_days, end]``.
    """
    from pyspark.sql import functions as F

    keys = list(view.key_names)
    longest = view.max_window_days
    alive_input = ("sum", ROWS, longest)
    inputs = sorted({alive_input, *(spec for f in view.features for spec in _window_inputs(f))})
    grid = entity_day_grid(tiles, keys, longest)
    windowed = grid.select(
        *keys,
        F.col(TARGET),
        *[_window_expression(*spec, keys).alias(_windowed(*spec)) for spec in inputs],
    ).where((F.col(TARGET) >= F.lit(start)) & (F.col(TARGET) <= F.lit(end)))
    # Count maps are merged once per window input, in a step of their own: several percentile
    # levels (and top_k beside top_k_counts) read the same sum.
    maps = sorted({_window_inputs(f)[0] for f in view.features if f.function in COUNT_MAPS})
    if maps:
        windowed = windowed.withColumns(
            {_merged(spec): _merged_counts(F.col(_windowed(*spec))) for spec in maps}
        )
    # On the day the entity's last tile leaves the longest window, emit a tombstone: no value.
    alive = F.col(_windowed(*alive_input)) > 0
    return windowed.select(
        *keys,
        F.col(TARGET),
        semantics.feature_ts_column(view, F.col(TARGET)).alias("feature_ts"),
        F.lit(created_ts).cast("timestamp").alias("created_ts"),
        *[
            F.when(alive, _feature(f)).cast(semantics.DTYPES[f.dtype].spark).alias(f.name)
            for f in view.features
        ],
    )
