"""Compute and commit view partitions: the work behind ``skewless run`` and ``skewless backfill``.

A daily run is a backfill of one day. Everything is checked before anything is committed, and
each table changes in one atomic Delta commit that replaces exactly the partitions of the run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING

from skewless.errors import DataError, SkewlessError
from skewless.manifest import Manifest, ViewSpec
from skewless.offline import aggregation, snapshot
from skewless.offline.delta import CommitInfo, DeltaTables, delta_tables
from skewless.offline.schemas import tiles_schema
from skewless.offline.sources import null_key_error, read_events
from skewless.runtime.settings import Settings

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunResult:
    view: str
    start: date
    end: date
    table_version: int
    rows: int
    raw_days_read: tuple[date, ...]
    """UTC days of raw events this run read (one day for a steady-state daily run)."""


def days_between(start: date, end: date) -> list[date]:
    if end < start:
        raise SkewlessError(f"--end {end} is before --start {start}")
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]


def run_view(
    spark: SparkSession,
    settings: Settings,
    manifest: Manifest,
    view_name: str,
    start: date,
    end: date | None = None,
    *,
    created_ts: datetime | None = None,
) -> RunResult:
    """Compute ``view_name`` for every ``ds`` in ``[start, end]`` and commit it in one transaction."""
    view = manifest.view(view_name)
    end = end or start
    days = days_between(start, end)
    created = created_ts or datetime.now(UTC)
    tables = delta_tables(spark)
    info = CommitInfo(
        operation="run" if start == end else "backfill",
        view=view.name,
        registry_hash=manifest.registry_hash,
    )
    if view.kind == "aggregation":
        return _run_aggregation(spark, settings, tables, view, days, created, info)
    return _run_snapshot(spark, settings, tables, view, days, created, info)


def _check_keys(frame: DataFrame, events: DataFrame, view: ViewSpec, settings: Settings) -> None:
    """Null keys in the computed rows trace back to raw rows; name the file of one of them."""
    from pyspark.sql import functions as F

    condition = None
    for key in view.key_names:
        term = F.col(key).isNull()
        condition = term if condition is None else condition | term
    if condition is None or frame.where(condition).limit(1).count() == 0:
        return
    for key in view.key_names:
        if frame.where(F.col(key).isNull()).limit(1).count():
            raise null_key_error(events, view.source, settings, key)


def _run_aggregation(
    spark: SparkSession,
    settings: Settings,
    tables: DeltaTables,
    view: ViewSpec,
    days: list[date],
    created: datetime,
    info: CommitInfo,
) -> RunResult:
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    start, end = days[0], days[-1]
    assert view.tiles_table is not None  # aggregation views always have one (compiler)
    tiles_uri = settings.table_uri(view.tiles_table)
    view_uri = settings.table_uri(view.table)
    longest = view.max_window_days
    history_start = start - timedelta(days=longest)

    # Tiles this run needs that are not committed yet are computed from raw events as well, so
    # the first run (or one after a gap) is correct, and a steady daily run reads one day.
    committed = set(tables.partitions(tiles_uri))
    history = days_between(history_start, start - timedelta(days=1))
    raw_days = sorted(set(days) | {d for d in history if d not in committed})

    plan = aggregation.TilePlan.of(view)
    events = read_events(spark, settings, view, raw_days, value_columns=plan.value_columns)
    new_tiles = aggregation.build_tiles(events, view).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        _check_keys(new_tiles, events, view, settings)
        schema = tiles_schema(view)
        old_tiles = tables.read(tiles_uri, schema, ds_range=(history_start, end))
        all_tiles = old_tiles.where(~F.col("ds").isin(raw_days)).unionByName(
            new_tiles.select(*schema.fieldNames())
        )
        rows = aggregation.windows_from_tiles(all_tiles, view, start, end, created)
        rows = rows.persist(StorageLevel.MEMORY_AND_DISK)
        try:
            count = _validate_rows(rows, view)
            tables.replace_partitions(new_tiles.select(*schema.fieldNames()), tiles_uri, raw_days, info)
            version = tables.replace_partitions(rows, view_uri, days, info)
        finally:
            rows.unpersist()
    finally:
        new_tiles.unpersist()
    log.info("%s: committed %s..%s (%d rows) as version %d", view.name, start, end, count, version)
    return RunResult(view.name, start, end, version, count, tuple(raw_days))


def _run_snapshot(
    spark: SparkSession,
    settings: Settings,
    tables: DeltaTables,
    view: ViewSpec,
    days: list[date],
    created: datetime,
    info: CommitInfo,
) -> RunResult:
    from pyspark import StorageLevel

    columns = [f.column or f.name for f in view.features]
    events = read_events(spark, settings, view, days, value_columns=columns)
    rows = snapshot.snapshot_rows(events, view, created).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        _check_keys(rows, events, view, settings)
        snapshot.check_unique(rows, view)
        count = _validate_rows(rows, view)
        version = tables.replace_partitions(rows, settings.table_uri(view.table), days, info)
    finally:
        rows.unpersist()
    log.info("%s: committed %s..%s (%d rows) as version %d", view.name, days[0], days[-1], count, version)
    return RunResult(view.name, days[0], days[-1], version, count, tuple(days))


def _validate_rows(rows: DataFrame, view: ViewSpec) -> int:
    """Structural checks every partition passes before commit; returns the row count."""
    from pyspark.sql import functions as F

    unique = [*view.key_names, "ds"] if view.kind == "aggregation" else [*view.key_names, "feature_ts"]
    stats = rows.agg(
        F.count(F.lit(1)).alias("rows"),
        F.count_distinct(*[F.col(c) for c in unique]).alias("distinct"),
    ).first()
    assert stats is not None  # a global aggregate always returns one row
    if view.kind == "aggregation" and stats["rows"] != stats["distinct"]:
        raise DataError(
            f"{stats['rows'] - stats['distinct']} duplicate (entity, ds) rows computed",
            source=view.source.name,
        )
    return int(stats["rows"])
