"""Driver-side rows reach Spark as Arrow (skewless.runtime.spark.local_frame)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest

from skewless.runtime.spark import local_frame, row_schema

pytestmark = pytest.mark.spark


def test_local_frame_keeps_types_and_nulls_and_needs_no_python_worker(spark: Any) -> None:
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    schema = row_schema(ds="date", feature="string", sketch="binary", key="int")
    frame = local_frame(spark, [(date(2024, 1, 1), "a", b"\x00\xff", 3), (None, None, None, None)], schema)
    assert frame.schema == schema
    assert [tuple(row) for row in frame.collect()] == [
        (date(2024, 1, 1), "a", bytearray(b"\x00\xff"), 3),
        (None, None, None, None),
    ]
    # Read in the JVM from the Arrow batches: a local relation, not an RDD of pickled rows that
    # Python workers would have to decode.
    plan = frame._jdf.queryExecution().executedPlan().toString()
    assert "LocalTableScan" in plan, plan
    assert "ExistingRDD" not in plan, plan

    assert local_frame(spark, [], schema).count() == 0
    stamped = T.StructType([T.StructField("t", T.TimestampType(), True)])
    moment = datetime(2024, 1, 1, 12, 30, tzinfo=UTC)
    shown = local_frame(spark, [(moment,)], stamped).select(F.date_format("t", "yyyy-MM-dd HH:mm:ss"))
    assert shown.first()[0] == "2024-01-01 12:30:00"
