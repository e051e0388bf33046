"""Snapshot views (docs/semantics.md, Snapshot views): source rows already are feature values."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from skewless.errors import DataError
from skewless.manifest import ViewSpec
from skewless.offline.schemas import spark_type
from skewless.offline.sources import CREATED, DAY, TS

if TYPE_CHECKING:
    from pyspark.sql import DataFrame


def snapshot_rows(events: DataFrame, view: ViewSpec, created_ts: datetime) -> DataFrame:
    """Source events -> the view's rows: keys, ds (event day), feature_ts (event time), created_ts."""
    from pyspark.sql import functions as F

    # read_events already refused columns that cannot be cast safely to their feature's dtype.
    features = [
        F.col(feature.column or feature.name).cast(spark_type(feature.dtype)).alias(feature.name)
        for feature in view.features
    ]
    created = F.col(CREATED) if CREATED in events.columns else F.lit(created_ts).cast("timestamp")
    return events.select(
        *view.key_names,
        F.col(DAY).alias("ds"),
        F.col(TS).alias("feature_ts"),
        created.alias("created_ts"),
        *features,
    )


def check_unique(rows: DataFrame, view: ViewSpec) -> None:
    """Without a created timestamp, two rows with the same keys and event time are ambiguous."""
    from pyspark.sql import functions as F

    if view.source.created_timestamp:
        return
    duplicate = rows.groupBy(*view.key_names, "feature_ts").count().where(F.col("count") > 1).limit(1).first()
    if duplicate is not None:
        keys = ", ".join(f"{k}={duplicate[k]!r}" for k in view.key_names)
        raise DataError(
            f"{duplicate['count']} rows share keys ({keys}) and event time {duplicate['feature_ts']}; "
            "declare a created_timestamp on the source to order them",
            source=view.source.name,
            column=view.source.timestamp,
        )


def check_lengths(rows: DataFrame, view: ViewSpec, events: DataFrame | None = None) -> None:
    """Every non-null value of an array feature with a declared ``length`` has that many elements.

    Checked on the rows about to be written (before any commit), so a wrong embedding never
    reaches the table; the error names the view, the feature, the row (keys and event time) and,
    when ``events`` are given, the file it came from.
    """
    from pyspark.sql import functions as F

    declared = [f for f in view.features if f.length is not None]
    if not declared:
        return
    wrong = F.lit(None).cast("string")
    for feature in reversed(declared):
        size = F.size(F.col(feature.name))
        bad = F.col(feature.name).isNotNull() & (size != F.lit(feature.length))
        wrong = F.when(bad, F.lit(feature.name)).otherwise(wrong)
    offending = rows.select("*", wrong.alias("_wrong")).where(F.col("_wrong").isNotNull())
    first = offending.orderBy(*view.key_names, "feature_ts").limit(1).first()
    if first is None:
        return
    feature = view.feature(first["_wrong"])
    keys = ", ".join(f"{k}={first[k]!r}" for k in view.key_names)
    found = len(first[feature.name])
    where = f"row ({keys}, {view.source.timestamp}={first['feature_ts'].isoformat()})"
    if events is not None:
        match = events
        for key in view.key_names:
            match = match.where(F.col(key) == F.lit(first[key]))
        sample = match.where(F.col(TS) == F.lit(first["feature_ts"])).select(F.input_file_name().alias("f"))
        hit = sample.limit(1).first()
        if hit is not None and hit["f"]:
            where += f" of file {hit['f']}"
    raise DataError(
        f"view {view.name!r}: feature {feature.name!r} is declared {feature.dtype} of length "
        f"{feature.length}, but {where} holds {found} elements (nothing was written)",
        source=view.source.name,
        column=feature.column or feature.name,
    )
