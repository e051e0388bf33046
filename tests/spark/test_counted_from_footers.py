"""Counts read from Parquet footers instead of a Spark pass (issue 13): they equal Spark's count.

* A training set's spine checks (rows, time range, null keys and times) come from the spine's
  footers when they tell; the Spark pass over the spine is the oracle.
* A snapshot backfill counts its staged rows and their null keys from the staged files' footers;
  a null key still fails the run naming the raw file, and nothing is committed.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from skewless import semantics
from skewless.errors import DataError
from skewless.offline.delta import delta_tables
from skewless.offline.jobs import run_view
from skewless.pit import join
from skewless.pit.request import resolve
from skewless.pit.training_set import inspect_spine, read_spine, spine_counts
from tests.helpers import deploy

pytestmark = pytest.mark.spark

TREE = {
    "defs.yaml": """
        entity: {name: driver, join_keys: {driver_id: int64}}
        ---
        entity: {name: city, join_keys: {city: string}}
        ---
        source:
          name: drivers_raw
          path: drivers
          format: parquet
          timestamp: event_timestamp
          created_timestamp: created
        ---
        view:
          name: drivers
          version: 1
          kind: snapshot
          entity: driver
          source: drivers_raw
          ttl: 3d
          features:
            - {name: conv_rate, dtype: float64}
        ---
        source: {name: cities_raw, path: cities, format: parquet, timestamp: event_timestamp}
        ---
        view:
          name: cities
          version: 1
          kind: snapshot
          entity: city
          source: cities_raw
          ttl: 3d
          features:
            - {name: temperature, dtype: float64}
    """,
}
START = datetime(2024, 1, 1, tzinfo=UTC)


def _spine_files(folder: Path, seed: int, unit: str, with_nulls: bool) -> None:
    """Three files (one empty), several row groups, timestamps in ``unit``; nulls if asked."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    for index, rows in enumerate((500, 0, 1200)):
        micros = rng.integers(0, 30 * 86_400_000_000, rows) + int(START.timestamp()) * 1_000_000
        values = micros * 1000 if unit == "ns" else micros // 1000 if unit == "ms" else micros
        drivers = pa.array(rng.integers(0, 50, rows), mask=(rng.random(rows) < 0.01) if with_nulls else None)
        table = pa.table(
            {
                "driver_id": drivers,
                "city": pa.array([f"c{i % 7}" for i in range(rows)], pa.string()),
                "event_timestamp": pa.array(values, pa.timestamp(unit, tz="UTC")),
            }
        )
        pq.write_table(table, folder / f"part-{index}.parquet", row_group_size=300)


@pytest.mark.parametrize(("unit", "with_nulls"), [("us", False), ("ns", False), ("ms", True)])
def test_spine_checks_from_footers_equal_the_spark_pass(
    spark: Any, tmp_path: Path, unit: str, with_nulls: bool
) -> None:
    _, manifest = deploy(tmp_path, TREE)
    folder = tmp_path / "spine"
    _spine_files(folder, seed=len(unit) + with_nulls, unit=unit, with_nulls=with_nulls)
    spine = inspect_spine(str(folder))
    requests = resolve(manifest, features="drivers:conv_rate,cities:temperature")
    counts = spine_counts(spine, requests, "event_timestamp")
    assert counts is not None
    prepared = join.prepare_spine(read_spine(spark, spine), requests, "event_timestamp")

    def outcome(known: join.SpineCounts | None) -> Any:
        try:
            stats = join.spine_stats(prepared, requests, "event_timestamp", known)
        except join.SpineError as exc:
            return str(exc)
        assert stats.min_ts is not None
        assert stats.max_ts is not None
        return (stats.rows, semantics.to_micros(stats.min_ts), semantics.to_micros(stats.max_ts))

    from_spark = outcome(None)
    assert outcome(counts) == from_spark
    assert ("null join key" in str(from_spark)) == with_nulls


def test_a_spine_whose_footers_do_not_tell_is_counted_by_spark(spark: Any, tmp_path: Path) -> None:
    _, manifest = deploy(tmp_path, TREE)
    folder = tmp_path / "spine"
    pq.write_to_dataset(  # the key lives in the folder names, not in any footer
        pa.table({"city": ["a", "b"], "event_timestamp": pa.array([1, 2], pa.timestamp("us"))}),
        str(folder),
        partition_cols=["city"],
    )
    requests = resolve(manifest, features="cities:temperature")
    assert spine_counts(inspect_spine(str(folder)), requests, "event_timestamp") is None


def test_snapshot_backfill_counts_staged_rows_from_footers_and_names_a_null_key_file(
    spark: Any, tmp_path: Path
) -> None:
    settings, manifest = deploy(tmp_path, TREE)
    raw = Path(settings.data_root) / "drivers"
    raw.mkdir(parents=True)
    times = [START + timedelta(hours=7 * i) for i in range(40)]
    rows = {
        "driver_id": pa.array([i % 5 for i in range(40)], pa.int64()),
        "event_timestamp": pa.array(times, pa.timestamp("us", tz="UTC")),
        "created": pa.array(times, pa.timestamp("us", tz="UTC")),
        "conv_rate": pa.array([i / 40 for i in range(40)]),
    }
    pq.write_table(pa.table(rows), raw / "part-0.parquet")
    last = times[-1].date()
    result = run_view(spark, settings, manifest, "drivers", START.date(), last)
    frame = delta_tables(spark).read_any(settings.table_uri(manifest.view("drivers").table))
    assert result.rows == frame.count() == 40

    day = last + timedelta(days=1)
    at = pa.array([datetime(day.year, day.month, day.day, 9, tzinfo=UTC)] * 2, pa.timestamp("us", tz="UTC"))
    bad = {"driver_id": pa.array([None, 1], pa.int64()), "event_timestamp": at, "created": at,
           "conv_rate": pa.array([0.5, 0.6])}  # fmt: skip
    pq.write_table(pa.table(bad), raw / "part-1.parquet")
    version = delta_tables(spark).version(settings.table_uri(manifest.view("drivers").table))
    with pytest.raises(DataError, match="null entity key") as caught:
        run_view(spark, settings, manifest, "drivers", day)
    assert "part-1.parquet" in str(caught.value)
    assert delta_tables(spark).version(settings.table_uri(manifest.view("drivers").table)) == version
