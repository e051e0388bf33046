"""One contract for both Delta table layers: the embedded writer (delta-rs commits, Spark computes)
and delta-spark (``NativeDeltaTables``, on clusters with its JARs).

The native layer runs only where delta-spark's JARs are on the test session's classpath
(``SKEWLESS_TEST_DELTA_SPARK=1`` with the JARs, e.g. in ``PYSPARK_SUBMIT_ARGS``);
this machine cannot download them, so here it is skipped and the embedded layer runs alone.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import pytest

from skewless.offline.delta import (
    CommitInfo,
    DeltaTables,
    EmbeddedDeltaTables,
    NativeDeltaTables,
    delta_extension_active,
)

pytestmark = [pytest.mark.spark]

D1, D2 = date(2024, 5, 1), date(2024, 5, 2)
SCHEMA = "account_id string, ds date, n long"
INFO = CommitInfo(operation="test", view="contract")


@pytest.fixture(params=["embedded", "native"])
def tables(request: pytest.FixtureRequest, spark: Any) -> DeltaTables:
    if request.param == "native":
        if not delta_extension_active(spark):
            pytest.skip("delta-spark is not on the classpath (SKEWLESS_TEST_DELTA_SPARK=1 and its JARs)")
        return NativeDeltaTables(spark)
    return EmbeddedDeltaTables(spark)


def _frame(spark: Any, rows: list[tuple[str, date, int]]) -> Any:
    return spark.createDataFrame(rows, SCHEMA)


def _rows(frame: Any) -> list[tuple[Any, ...]]:
    return sorted(tuple(r) for r in frame.collect())


def test_commits_return_their_versions_replace_only_their_partitions_and_time_travel(
    spark: Any, tables: DeltaTables, tmp_path: Path
) -> None:
    uri = str(tmp_path / "table")
    schema = _frame(spark, []).schema
    assert tables.version(uri) is None
    assert tables.partitions(uri) == []
    assert _rows(tables.read(uri, schema)) == []

    first = tables.replace_partitions(_frame(spark, [("a", D1, 1), ("b", D1, 2)]), uri, [D1], INFO)
    assert tables.version(uri) == first
    second = tables.replace_partitions(_frame(spark, [("a", D2, 3)]), uri, [D2], INFO)
    third = tables.replace_partitions(_frame(spark, [("c", D1, 9)]), uri, [D1], INFO)  # D1 again
    assert (second, third) == (first + 1, first + 2)
    assert tables.version(uri) == third

    assert tables.partitions(uri) == [D1, D2]
    assert tables.partitions(uri, first) == [D1]
    assert _rows(tables.read(uri, schema)) == [("a", D2, 3), ("c", D1, 9)]  # D2 untouched by the third
    assert _rows(tables.read(uri, schema, version=first)) == [("a", D1, 1), ("b", D1, 2)]
    assert _rows(tables.read(uri, schema, version=second)) == [("a", D1, 1), ("a", D2, 3), ("b", D1, 2)]
    assert _rows(tables.read(uri, schema, ds_range=(D2, D2))) == [("a", D2, 3)]


def test_the_version_returned_is_the_commits_own_when_another_writer_commits_right_after(
    spark: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A parallel backfill of other partitions commits between our commit and our reading of the
    version: we must still return ours (the training-set manifest and the stats pin it)."""
    import pyarrow as pa
    from deltalake import DeltaTable, write_deltalake

    tables = EmbeddedDeltaTables(spark)
    uri = str(tmp_path / "table")
    schema = _frame(spark, []).schema
    first = tables.replace_partitions(_frame(spark, [("a", D1, 1)]), uri, [D1], INFO)
    original = DeltaTable.create_write_transaction

    def commit_then_another_writer(self: Any, *args: Any, **kwargs: Any) -> Any:
        done = original(self, *args, **kwargs)
        other = pa.table(
            {"account_id": ["z"], "ds": pa.array([D2], pa.date32()), "n": pa.array([7], pa.int64())}
        )
        write_deltalake(uri, other, mode="append", partition_by=["ds"])
        return done

    monkeypatch.setattr(DeltaTable, "create_write_transaction", commit_then_another_writer)
    ours = tables.replace_partitions(_frame(spark, [("b", D1, 2)]), uri, [D1], INFO)
    monkeypatch.undo()

    assert tables.version(uri) == ours + 1  # the other writer's commit came after ours
    assert ours == first + 1
    assert _rows(tables.read(uri, schema, version=ours)) == [("b", D1, 2)]


def test_driver_side_rows_replace_their_partitions_with_every_type_read_back(
    spark: Any, tables: DeltaTables, tmp_path: Path
) -> None:
    """The statistics' write: a few rows held by the driver (the embedded layer stages them with
    pyarrow, not a Spark job); timestamps, binary, doubles and nulls read back through Spark."""
    from datetime import UTC, datetime

    from pyspark.sql import types as T

    uri = str(tmp_path / "stats")
    schema = T.StructType(
        [
            T.StructField("feature", T.StringType(), True),
            T.StructField("ds", T.DateType(), True),
            T.StructField("psi", T.DoubleType(), True),
            T.StructField("sketch", T.BinaryType(), True),
            T.StructField("computed_at", T.TimestampType(), True),
        ]
    )
    at = datetime(2024, 5, 3, 4, 5, 6, 789, tzinfo=UTC)
    first = tables.replace_partitions_with_rows(
        [("x", D1, 0.5, b"\x00\x01", at), ("y", D2, None, None, None)], schema, uri, [D1, D2], INFO
    )
    second = tables.replace_partitions_with_rows([("z", D2, 1.5, b"", at)], schema, uri, [D2], INFO)
    assert (tables.version(uri), second) == (first + 1, first + 1)
    assert tables.partitions(uri) == [D1, D2]
    read = tables.read(uri, schema).orderBy("feature")
    assert read.schema == schema
    naive = at.replace(tzinfo=None)  # collect() gives naive UTC datetimes (the session runs in UTC)
    assert [tuple(r) for r in read.collect()] == [
        ("x", D1, 0.5, bytearray(b"\x00\x01"), naive),
        ("z", D2, 1.5, bytearray(b""), naive),
    ]
    assert not list((tmp_path / "stats" / "_staging").glob("*"))  # nothing left staged
