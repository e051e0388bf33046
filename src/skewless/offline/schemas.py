"""Spark schemas of the offline tables, derived from the manifest (explicit schemas on every read)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from skewless import semantics
from skewless.manifest import ViewSpec

if TYPE_CHECKING:
    from pyspark.sql.types import DataType, StructType

SYSTEM_COLUMNS = ("ds", "feature_ts", "created_ts")


def spark_type(dtype: str) -> DataType:
    """The Spark type of a skewless dtype (the table is :data:`skewless.semantics.DTYPES`)."""
    return semantics.spark_type(dtype)


def key_fields(view: ViewSpec) -> list[tuple[str, DataType]]:
    return [(k.name, spark_type(k.dtype)) for k in view.join_keys]


def _struct(fields: list[tuple[str, DataType]]) -> StructType:
    from pyspark.sql.types import StructField, StructType

    return StructType([StructField(name, data_type, True) for name, data_type in fields])


def view_schema(view: ViewSpec) -> StructType:
    """keys, ds, feature_ts, created_ts, then the features in declared order."""
    from pyspark.sql import types as T

    return _struct(
        [
            *key_fields(view),
            ("ds", T.DateType()),
            ("feature_ts", T.TimestampType()),
            ("created_ts", T.TimestampType()),
            *[(f.name, spark_type(f.dtype)) for f in view.features],
        ]
    )


def tiles_schema(view: ViewSpec) -> StructType:
    """Daily partial aggregates of an aggregation view (see offline.aggregation.TilePlan)."""
    from pyspark.sql import types as T

    from skewless.offline.aggregation import ROWS, TilePlan, column_dtypes, latest_k_column, tile_column

    plan = TilePlan.of(view)
    dtypes = column_dtypes(view)
    fields: list[tuple[str, DataType]] = [*key_fields(view), ("ds", T.DateType()), (ROWS, T.LongType())]
    fields += [(tile_column(c, "n"), T.LongType()) for c in sorted(plan.counts)]
    fields += [(tile_column(c, "sum"), spark_type(dtypes[c])) for c in sorted(plan.sums)]
    moments = _struct(
        [("n", T.LongType()), ("sum", T.DoubleType()), ("sum_sq", T.DoubleType()), ("m2", T.DoubleType())]
    )
    fields += [(tile_column(c, "moments"), moments) for c in sorted(plan.moments)]
    fields += [(tile_column(c, "min"), spark_type(dtypes[c])) for c in sorted(plan.minimums)]
    fields += [(tile_column(c, "max"), spark_type(dtypes[c])) for c in sorted(plan.maximums)]
    fields += [
        (tile_column(c, "last"), _struct([("ts", T.TimestampType()), ("value", spark_type(dtypes[c]))]))
        for c in sorted(plan.lasts)
    ]
    fields += [(tile_column(c, "hll"), T.BinaryType()) for c in sorted(plan.sketches)]
    fields += [(tile_column(c, "first_seen"), T.TimestampType()) for c in sorted(plan.first_seen)]
    fields += [(tile_column(c, "last_seen"), T.TimestampType()) for c in sorted(plan.last_seen)]
    fields += [
        (
            latest_k_column(c, k),
            T.ArrayType(_struct([("ts", T.TimestampType()), ("value", spark_type(dtypes[c]))]), True),
        )
        for c, k in sorted(plan.latest_k)
    ]
    fields += [
        (tile_column(c, "freq"), T.MapType(spark_type(dtypes[c]), T.LongType(), True))
        for c in sorted(plan.frequencies)
    ]
    fields += [
        (tile_column(c, "buckets"), T.MapType(T.IntegerType(), T.LongType(), True))
        for c in sorted(plan.buckets)
    ]
    return _struct(fields)
