"""Compute, audit and commit view partitions: ``skewless run`` / ``backfill`` and the DAG tasks.

Write-audit-publish: :func:`compute_view` stages the run's rows beside the tables (nothing
committed), an audit (Great Expectations in the DAG) reads the staged rows, and
:func:`commit_view` publishes them, each table in one atomic Delta commit replacing exactly the
run's partitions. A daily run is a backfill of one day.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from skewless.errors import DataError, SkewlessError
from skewless.manifest import Manifest, ViewSpec
from skewless.offline import aggregation, fingerprints, snapshot
from skewless.offline.delta import CommitInfo, DeltaTables, Staged, delta_tables
from skewless.offline.schemas import tiles_schema
from skewless.offline.sources import null_key_error, read_events
from skewless.plan.planner import DateRange
from skewless.runtime.settings import Settings

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)

Gate = Callable[["DataFrame", ViewSpec], None]
"""An audit of the staged rows before they are committed; raises to stop the publish."""


@dataclass(frozen=True)
class RunResult:
    view: str
    start: date
    end: date
    table_version: int
    rows: int
    raw_days_read: tuple[date, ...]
    """UTC days of raw events this run read (one day for a steady-state daily run)."""
    requested: tuple[date, date] | None = None
    """The range asked for, when the run extended it to ``ds`` depending on re-read input."""


@dataclass(frozen=True)
class StagedRun:
    """A computed but uncommitted run; serialisable so another process can audit and commit it."""

    view: str
    start: date
    end: date
    rows: int
    raw_days: tuple[date, ...]
    staged_rows: Staged
    staged_tiles: Staged | None
    registry_hash: str
    operation: str
    input_fingerprints: dict[str, str] = field(default_factory=dict)
    """Fingerprint of each re-read raw day (``raw_days``), recorded after the commit."""
    requested: tuple[date, date] | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), default=str, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> StagedRun:
        body: dict[str, Any] = json.loads(text)
        tiles = body.get("staged_tiles")
        requested = body.get("requested")
        return cls(
            view=body["view"],
            start=date.fromisoformat(body["start"]),
            end=date.fromisoformat(body["end"]),
            rows=int(body["rows"]),
            raw_days=tuple(date.fromisoformat(d) for d in body["raw_days"]),
            staged_rows=Staged(**body["staged_rows"]),
            staged_tiles=Staged(**tiles) if tiles else None,
            registry_hash=body["registry_hash"],
            operation=body["operation"],
            input_fingerprints=dict(body.get("input_fingerprints") or {}),
            requested=(date.fromisoformat(requested[0]), date.fromisoformat(requested[1]))
            if requested
            else None,
        )

    @property
    def days(self) -> list[date]:
        return days_between(self.start, self.end)


def days_between(start: date, end: date) -> list[date]:
    if end < start:
        raise SkewlessError(f"--end {end} is before --start {start}")
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]


def compute_view(
    spark: SparkSession,
    settings: Settings,
    manifest: Manifest,
    view_name: str,
    start: date,
    end: date | None = None,
    *,
    created_ts: datetime | None = None,
    lookback_days: int | None = None,
) -> StagedRun:
    """Compute ``view_name`` for every ``ds`` in ``[start, end]``, check it, and stage it.

    The range grows to every computed ``ds`` that depends on raw input the run re-reads, so the
    table stays equal to a from-scratch backfill (:func:`skewless.offline.fingerprints.plan_run`).
    Stale input days before ``start`` are re-read back to ``start - lookback_days`` (default:
    the view's longest window, everything the run needs; the nightly run passes
    ``late_data_days``).
    """
    view = manifest.view(view_name)
    end = end or start
    days_between(start, end)  # --end before --start is an error
    created = created_ts or datetime.now(UTC)
    window = view.max_window_days if view.kind == "aggregation" else 0
    lookback = window if lookback_days is None else lookback_days
    state = fingerprints.load_state(settings, view)
    # Fingerprints are taken before any raw file is read: a file that changes in between makes
    # its day look stale later, never fresh.
    files = fingerprints.source_files(settings, view)
    partitioned = view.source.partition_column is not None
    horizon = max(end, state.computed.end if state.computed else end)
    candidates = [d for d in state.known if start - timedelta(days=lookback) <= d <= horizon]
    stale = fingerprints.stale_days(state, fingerprints.fingerprints(files, candidates, partitioned))
    plan = fingerprints.plan_run(
        start,
        end,
        window_days=window,
        snapshot=view.kind == "snapshot",
        lookback_days=lookback,
        state=state,
        stale=stale,
    )
    if view.kind == "aggregation":
        plan = _with_incomplete_tiles(settings, view, plan, set(stale))
    if (plan.first, plan.last) != (start, end):
        log.info(
            "%s: ds %s..%s extended to %s..%s (re-read input days %s)",
            view.name,
            start,
            end,
            plan.first,
            plan.last,
            ", ".join(map(str, plan.reread)),
        )
    tables = delta_tables(spark)
    operation = "run" if plan.first == plan.last else "backfill"
    compute = _compute_aggregation if view.kind == "aggregation" else _compute_snapshot
    log.info("%s: computing ds %s..%s", view.name, plan.first, plan.last)
    rows, staged_rows, staged_tiles = compute(spark, settings, tables, view, plan, created)
    log.info("%s: staged ds %s..%s (%d rows)", view.name, plan.first, plan.last, rows)
    taken = fingerprints.fingerprints(files, plan.reread, partitioned)
    return StagedRun(
        view.name,
        plan.first,
        plan.last,
        rows,
        plan.reread,
        staged_rows,
        staged_tiles,
        manifest.registry_hash,
        operation,
        {d.isoformat(): fp for d, fp in taken.items()},
        (start, end) if (plan.first, plan.last) != (start, end) else None,
    )


def staged_rows(spark: SparkSession, staged: StagedRun) -> DataFrame:
    """The rows a staged run would publish (what an audit looks at)."""
    return delta_tables(spark).read_staged(staged.staged_rows)


def commit_view(spark: SparkSession, staged: StagedRun) -> RunResult:
    """Publish a staged run: the tiles (an internal cache) first, then the view's table, then the
    fingerprints of the raw input they were built from (last: a crash before it leaves stale days)."""
    tables = delta_tables(spark)
    info = CommitInfo(operation=staged.operation, view=staged.view, registry_hash=staged.registry_hash)
    try:
        tiles_version = None
        if staged.staged_tiles is not None:
            tiles_version = tables.commit_staged(staged.staged_tiles, staged.raw_days, info)
        version = tables.commit_staged(staged.staged_rows, staged.days, info)
    finally:
        discard_view(spark, staged)
    input_uri = (
        staged.staged_tiles.table_uri if staged.staged_tiles is not None else staged.staged_rows.table_uri
    )
    fingerprints.write_record(
        staged.staged_rows.table_uri,
        input_uri,
        version if tiles_version is None else tiles_version,
        {date.fromisoformat(d): fp for d, fp in staged.input_fingerprints.items()},
        DateRange(staged.start, staged.end),
    )
    log.info(
        "%s: committed %s..%s (%d rows) as version %d",
        staged.view,
        staged.start,
        staged.end,
        staged.rows,
        version,
    )
    return RunResult(
        staged.view, staged.start, staged.end, version, staged.rows, staged.raw_days, staged.requested
    )


def discard_view(spark: SparkSession, staged: StagedRun) -> None:
    tables = delta_tables(spark)
    tables.discard(staged.staged_rows)
    if staged.staged_tiles is not None:
        tables.discard(staged.staged_tiles)


def run_view(
    spark: SparkSession,
    settings: Settings,
    manifest: Manifest,
    view_name: str,
    start: date,
    end: date | None = None,
    *,
    created_ts: datetime | None = None,
    gate: Gate | None = None,
    lookback_days: int | None = None,
) -> RunResult:
    """Compute, audit (``gate``) and commit; nothing is committed when any step fails."""
    staged = compute_view(
        spark, settings, manifest, view_name, start, end, created_ts=created_ts, lookback_days=lookback_days
    )
    try:
        if gate is not None:
            gate(staged_rows(spark, staged), manifest.view(view_name))
    except BaseException:
        discard_view(spark, staged)
        raise
    return commit_view(spark, staged)


def _null_key_check(frame: DataFrame, events: DataFrame, view: ViewSpec, settings: Settings) -> None:
    """Null keys in the computed rows trace back to raw rows; name the file of one of them."""
    from pyspark.sql import functions as F

    nulls = frame.agg(*[F.sum(F.col(k).isNull().cast("long")).alias(k) for k in view.key_names]).first()
    for key in view.key_names:
        if nulls is not None and nulls[key]:
            raise null_key_error(events, view.source, settings, key)


def _compute_aggregation(
    spark: SparkSession,
    settings: Settings,
    tables: DeltaTables,
    view: ViewSpec,
    plan: fingerprints.RunPlan,
    created: datetime,
) -> tuple[int, Staged, Staged | None]:
    from pyspark.sql import functions as F

    assert view.tiles_table is not None  # aggregation views always have one (compiler)
    tiles_uri = settings.table_uri(view.tiles_table)
    history_start = plan.first - timedelta(days=view.max_window_days)
    # Tiles of the days the plan re-reads come from raw events; every other day's committed
    # tiles are reused, so a steady daily run reads one day.
    raw_days = list(plan.reread)
    tile_plan = aggregation.TilePlan.of(view)
    events = read_events(spark, settings, view, raw_days, value_columns=tile_plan.value_columns)
    schema = tiles_schema(view)
    staged_tiles = tables.stage(aggregation.build_tiles(events, view).select(*schema.fieldNames()), tiles_uri)
    try:
        new_tiles = tables.read_staged(staged_tiles)
        _null_key_check(new_tiles, events, view, settings)
        old_tiles = tables.read(tiles_uri, schema, ds_range=(history_start, plan.last))
        all_tiles = old_tiles.where(~F.col("ds").isin(raw_days)).unionByName(new_tiles)
        rows = aggregation.windows_from_tiles(all_tiles, view, plan.first, plan.last, created)
        staged = tables.stage(rows, settings.table_uri(view.table))
        try:
            count = _count_checked(tables.read_staged(staged), view)
        except BaseException:
            tables.discard(staged)
            raise
    except BaseException:
        tables.discard(staged_tiles)
        raise
    return count, staged, staged_tiles


def _compute_snapshot(
    spark: SparkSession,
    settings: Settings,
    tables: DeltaTables,
    view: ViewSpec,
    plan: fingerprints.RunPlan,
    created: datetime,
) -> tuple[int, Staged, Staged | None]:
    columns = [f.column or f.name for f in view.features]
    events = read_events(spark, settings, view, plan.reread, value_columns=columns)
    rows = snapshot.snapshot_rows(events, view, created)
    staged = tables.stage(rows, settings.table_uri(view.table))
    try:
        written = tables.read_staged(staged)
        count = _staged_count(staged, written, events, view, settings)
        snapshot.check_unique(written, view)
        snapshot.check_lengths(written, view, events)
    except BaseException:
        tables.discard(staged)
        raise
    return count, staged, None


def _staged_count(
    staged: Staged, written: DataFrame, events: DataFrame, view: ViewSpec, settings: Settings
) -> int:
    """A snapshot view's staged row count and null-key check, from the Parquet footers when they
    tell (no pass over the rows: a backfill costs about a copy, docs/benchmarks.md)."""
    from skewless.offline.delta import footer_counts

    counted = footer_counts(staged.path, view.key_names)
    if counted is None:
        _null_key_check(written, events, view, settings)
        return _count_checked(written, view)
    rows, nulls = counted
    for key in view.key_names:
        if nulls[key]:
            raise null_key_error(events, view.source, settings, key)
    return rows


def _count_checked(rows: DataFrame, view: ViewSpec) -> int:
    """Structural checks every partition passes before commit; returns the row count."""
    from pyspark.sql import functions as F

    stats = rows.agg(
        F.count(F.lit(1)).alias("rows"),
        F.count_distinct(*[F.col(c) for c in (*view.key_names, "ds")]).alias("distinct"),
    ).first()
    assert stats is not None  # a global aggregate always returns one row
    if view.kind == "aggregation" and stats["rows"] != stats["distinct"]:
        raise DataError(
            f"{stats['rows'] - stats['distinct']} duplicate (entity, ds) rows computed",
            source=view.source.name,
        )
    return int(stats["rows"])


def _with_incomplete_tiles(
    settings: Settings, view: ViewSpec, plan: fingerprints.RunPlan, stale: set[date]
) -> fingerprints.RunPlan:
    """Also re-read the committed tile days that lack a column this run's windows need.

    A feature added since they were committed (docs/feature-definitions.md): re-reading them
    makes this run's ``ds`` right for it, without recomputing the ``ds`` committed before (they
    keep null for it until a backfill). A stale day is left to the late-data rules, which list
    what depends on it.
    """
    from dataclasses import replace

    from skewless.offline.delta import partition_columns

    assert view.tiles_table is not None  # aggregation views always have one (compiler)
    history_start = plan.first - timedelta(days=view.max_window_days)
    held = partition_columns(settings.table_uri(view.tiles_table), (history_start, plan.last))
    skip = {*plan.reread, *stale}
    incomplete = [d for d in aggregation.incomplete_tile_days(view, plan.first, held) if d not in skip]
    if not incomplete:
        return plan
    log.info("%s: re-reading tile days %s (they lack columns of added features)", view.name, incomplete)
    return replace(plan, reread=tuple(sorted({*plan.reread, *incomplete})))
