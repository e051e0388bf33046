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
