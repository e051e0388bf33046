"""The Spark Column forms of skewless.semantics agree with the plain-Python rules, edges included."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

import pytest

from skewless import semantics
from tests.unit.test_semantics import make_view

pytestmark = pytest.mark.spark

US = timedelta(microseconds=1)
DAYS = [date(1969, 12, 30), date(1970, 1, 1), date(2024, 2, 28), date(2024, 2, 29), date(2024, 12, 31)]


@pytest.mark.parametrize(
    "lag", [timedelta(0), timedelta(hours=2, minutes=30, seconds=15), timedelta(days=1, hours=1)]
)
def test_feature_ts_and_answering_ds_columns(spark: Any, lag: timedelta) -> None:
    from pyspark.sql import functions as F

    view = make_view(lag=lag, ttl=timedelta(days=3) + lag)
    rows = []
    for ds in DAYS:
        available = semantics.feature_ts(view, ds).replace(tzinfo=None)
        rows += [(ds, moment) for moment in (available - US, available, available + US, available + lag)]
    frame = spark.createDataFrame(rows, "ds date, t timestamp").select(
        "ds",
        "t",
        semantics.feature_ts_column(view, F.col("ds")).alias("feature_ts"),
        semantics.answering_ds_column(view, F.col("t")).alias("answering"),
    )
    for row in frame.collect():
        assert row["feature_ts"] == semantics.feature_ts(view, row["ds"]).replace(tzinfo=None)
        assert row["answering"] == semantics.answering_ds(view, row["t"]), row


def test_is_live_column(spark: Any) -> None:
    from pyspark.sql import functions as F

    view = make_view(ttl=timedelta(days=2, hours=3))
    ttl = timedelta(seconds=view.ttl_seconds)
    ts = datetime(2024, 5, 2, 2, 30, 0, 17)
    moments = [ts - US, ts, ts + US, ts + ttl - US, ts + ttl, ts + ttl + US]
    frame = spark.createDataFrame([(ts, m) for m in moments], "feature_ts timestamp, t timestamp")
    live = frame.select("t", semantics.is_live_column(view, F.col("feature_ts"), F.col("t")).alias("live"))
    got = {row["t"]: row["live"] for row in live.collect()}
    ttl_us = semantics.ttl_us(view)
    expected = {
        m: semantics.is_live(semantics.to_micros(ts), ttl_us, semantics.to_micros(m)) for m in moments
    }
    assert got == expected
    assert [expected[m] for m in moments] == [False, True, True, True, True, False]


def test_has_value_column(spark: Any) -> None:
    frame = spark.createDataFrame([(None, None), (1, None), (None, "")], "a long, b string")
    flags = [row[0] for row in frame.select(semantics.has_value_column(["a", "b"])).collect()]
    assert flags == [not semantics.is_tombstone(row) for row in [(None, None), (1, None), (None, "")]]
    assert flags == [False, True, True]
