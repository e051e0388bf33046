"""The mergeable percentile sketch of ``approx_percentile`` (docs/semantics.md, "approx_percentile").

A value ``x`` falls in a logarithmic bucket: with ``gamma = (1 + a) / (1 - a)``, bucket ``i`` holds
``gamma^(i-1) < |x| <= gamma^i`` and is represented by ``2 gamma^i / (gamma + 1)``, which is within a
relative distance ``a`` of every value in the bucket (the DDSketch construction). A tile is a map
``bucket key -> count`` per (entity, day); windows add the maps, which is exact and independent of
the order, so a daily run and a backfill produce the same bits. The percentile ``q`` of ``n``
values is the value of rank ``r = max(1, ceil(q n))`` in ascending order (nearest rank); the sketch
answers the representative of the bucket holding that value, so

    |answer - exact| <= a |exact|      (a = ALPHA = 0.99%, documented as 1%)

for every finite value with ``|x| >= 1e-300`` (subnormal numbers lose relative precision), on any
data, skewed or not: the bound is deterministic, not probabilistic. Zero is its own bucket (answered
exactly), negative values mirror positive ones, infinities have their own buckets (answered as
themselves), NaN and null are ignored.

Keys are integers ordered like the values they hold: ``0`` for zero, ``OFFSET + i`` for ``x > 0``,
``-(OFFSET + i)`` for ``x < 0``, ``+-INFINITY_KEY`` for infinities. A tile holds one entry (4-byte key,
8-byte count) per non-empty bucket: at most ``ln(max|x| / min|x|) / ln(gamma) + 1`` per sign, about
117 per factor of ten between the day's smallest and largest magnitude (e.g. at most 700 entries
for values spanning 1 to 10^6), whatever the number of events.

Why not Spark's ``kll_sketch_*``: KLL compaction is randomized, so a daily run and a backfill of the
same events would not give identical tables, and its error is a rank error with a probability, not a
bound on the value.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import Column

ALPHA = 0.0099
"""Relative accuracy of the sketch (the documented bound is 1%, leaving room for rounding)."""
DOCUMENTED_ERROR = 0.01
GAMMA = (1 + ALPHA) / (1 - ALPHA)
LOG_GAMMA = math.log(GAMMA)
OFFSET = 100_000
"""Added to the bucket index of positive values (indices of doubles lie within +-40,000)."""
INFINITY_KEY = 1_000_000


def bucket_column(value: Column) -> Column:
    """The bucket key of a double column (null for null and NaN)."""
    from pyspark.sql import functions as F

    magnitude = F.abs(value)
    index = F.ceil(F.log(magnitude) / F.lit(LOG_GAMMA))
    return (
        F.when(value.isNull() | F.isnan(value), F.lit(None))
        .when(value == F.lit(0.0), F.lit(0))
        .when(value == F.lit(math.inf), F.lit(INFINITY_KEY))
        .when(value == F.lit(-math.inf), F.lit(-INFINITY_KEY))
        .when(value > F.lit(0.0), F.lit(OFFSET) + index)
        .otherwise(-(F.lit(OFFSET) + index))
        .cast("int")
    )


def representative_column(key: Column) -> Column:
    """The value a bucket stands for: ``sign * 2 gamma^i / (gamma + 1)``; exact for 0 and infinities."""
    from pyspark.sql import functions as F

    scale = F.lit(2.0 * GAMMA / (GAMMA + 1.0))

    def magnitude(index: Column) -> Column:
        return F.pow(F.lit(GAMMA), (index - F.lit(1)).cast("double")) * scale

    return (
        F.when(key.isNull(), F.lit(None).cast("double"))
        .when(key == F.lit(0), F.lit(0.0))
        .when(key == F.lit(INFINITY_KEY), F.lit(math.inf))
        .when(key == F.lit(-INFINITY_KEY), F.lit(-math.inf))
        .when(key > F.lit(0), magnitude(key - F.lit(OFFSET)))
        .otherwise(-magnitude(-key - F.lit(OFFSET)))
    )


def quantile_column(entries: Column, level: float) -> Column:
    """Percentile ``level`` of sorted ``(key, count)`` entries: the bucket of rank ``max(1, ceil(q n))``."""
    from pyspark.sql import functions as F

    zero = F.lit(0).cast("long")
    total = F.aggregate(entries, zero, lambda acc, entry: acc + entry["value"])
    rank = F.greatest(F.lit(1).cast("long"), F.ceil(F.lit(float(level)) * total))
    start = F.struct(zero.alias("seen"), F.lit(None).cast("int").alias("key"))

    def step(acc: Column, entry: Column) -> Column:
        seen = acc["seen"] + entry["value"]
        found = F.when(acc["key"].isNull() & (seen >= rank), entry["key"]).otherwise(acc["key"])
        return F.struct(seen.alias("seen"), found.alias("key"))

    key = F.aggregate(entries, start, step)["key"]
    return F.when(total > 0, representative_column(key))


def quantiles_column(entries: Column, levels: Sequence[float]) -> Column:
    """Several levels as an ``array<double>`` in the listed order; null when there is no value."""
    from pyspark.sql import functions as F

    values = F.array(*[quantile_column(entries, level) for level in levels])
    return F.when(F.aggregate(entries, F.lit(0).cast("long"), lambda acc, e: acc + e["value"]) > 0, values)
