"""Training sets: the point-in-time join over pinned Delta versions, its output and its manifest.

Every view table is pinned to its current Delta version when the request starts; the output's
manifest records those versions, the registry hash and the spine, so ``rebuild`` reproduces the
same rows later even after new partitions were committed.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict

from skewless.errors import SkewlessError, TableError
from skewless.manifest import FeatureRef, Manifest, ViewSpec
from skewless.offline.delta import CommitInfo, DeltaTables, delta_tables
from skewless.offline.inputs import InputError, InputSet, inspect_input, read_input
from skewless.offline.schemas import view_schema
from skewless.pit import join
from skewless.pit.ondemand import check_request_columns, with_on_demand
from skewless.pit.request import FeatureRequest, ViewRequest, resolve_features
from skewless.registry import history_uri, read_registry
from skewless.runtime.settings import Settings, is_remote
from skewless.storage import read_text, write_text

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)

MANIFEST_NAME = "_skewless_training_set.json"
OutputFormat = Literal["parquet", "delta"]


class PinnedTable(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    uri: str
    version: int | None
    """None: the table did not exist (every feature of the view is null)."""
    path: Literal["boundary", "asof"]


class TrainingSetManifest(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    created_at: datetime
    registry_hash: str
    features: tuple[str, ...]
    service: str | None
    spine_path: str | None
    spine_rows: int
    spine_fingerprint: str | None = None
    """Hash of the spine's file set and sizes (and Delta version): a rebuild refuses a changed spine."""
    spine_delta_version: int | None = None
    timestamp_column: str
    tables: dict[str, PinnedTable]
    output_path: str | None = None
    output_format: OutputFormat | None = None
    method: Literal["auto", "asof"] = "auto"


@dataclass(frozen=True)
class TrainingSet:
    frame: DataFrame
    manifest: TrainingSetManifest


def _pin(
    tables: DeltaTables, settings: Settings, view: ViewSpec, version: int | None = None
) -> tuple[str, int | None]:
    uri = settings.table_uri(view.table)
    current = tables.version(uri)
    if version is not None and (current is None or version > current):
        raise TableError(f"{uri}: version {version} not found (current: {current})")
    return uri, version if version is not None else current


def point_in_time(
    spark: SparkSession,
    settings: Settings,
    manifest: Manifest,
    spine: DataFrame,
    requests: Sequence[ViewRequest] | FeatureRequest,
    timestamp_column: str,
    *,
    method: str = "auto",
    versions: dict[str, int | None] | None = None,
    spine_files: InputSet | None = None,
) -> tuple[DataFrame, dict[str, PinnedTable], int]:
    """Join ``spine`` with the requested features; returns the frame, pinned tables and spine rows.

    Stored features come from the point-in-time join; on-demand features are computed after it
    from its rows and the spine's request columns (:func:`skewless.pit.ondemand.with_on_demand`).
    """
    join.ensure_method(method)
    request = requests if isinstance(requests, FeatureRequest) else FeatureRequest.of_views(requests)
    stored = request.views
    check_request_columns(spine, request)
    tables = delta_tables(spark)
    prepared = join.prepare_spine(spine, stored, timestamp_column)
    # The spine's files (when it came from a path) answer its checks from their footers.
    counts = None if spine_files is None else spine_counts(spine_files, stored, timestamp_column)
    stats = join.spine_stats(prepared, stored, timestamp_column, counts)
    log.info("spine: %d rows, %s..%s", stats.rows, stats.min_ts, stats.max_ts)
    result = prepared
    pinned: dict[str, PinnedTable] = {}
    for view_request in stored:
        view = view_request.view
        wanted = None if versions is None else versions.get(view.name)
        if versions is not None and wanted is None:
            uri, version = settings.table_uri(view.table), None
        else:
            uri, version = _pin(tables, settings, view, wanted)
        ds_range = join.feature_ds_range(view, stats)
        if version is None or ds_range is None:
            features = spark.createDataFrame([], view_schema(view))
        else:
            features = tables.read(uri, view_schema(view), version=version, ds_range=ds_range)
        exact = (
            method == "auto"
            and version is not None
            and view.kind == "aggregation"
            and join.boundary_join_is_exact(view, stats, tables.partitions(uri, version))
        )
        path: Literal["boundary", "asof"] = "boundary" if exact else "asof"
        log.info("%s: %s join over version %s, ds %s", view.name, path, version, ds_range)
        joiner = join.boundary_join if exact else join.asof_join
        result = joiner(result, features, view_request)
        pinned[view.name] = PinnedTable(uri=uri, version=version, path=path)
    joined = join.restore_spine_columns(result, spine.columns, stored)
    return with_on_demand(joined, request, spine.columns, timestamp_column), pinned, stats.rows


def spine_counts(
    spine: InputSet, requests: Sequence[ViewRequest], timestamp_column: str
) -> join.SpineCounts | None:
    """The spine's row count, null counts and time range from its Parquet footers (no Spark pass);
    None when a footer does not tell (then :func:`skewless.pit.join.spine_stats` counts)."""
    from skewless.offline.inputs import footer_counts
    from skewless.semantics import from_micros

    counted = footer_counts(spine, timestamp_column, join.checked_columns(requests, timestamp_column))
    if counted is None:
        return None
    low, high = (None, None) if counted.time_range is None else map(from_micros, counted.time_range)
    return join.SpineCounts(counted.rows, low, high, counted.nulls)


def inspect_spine(path: str, delta_version: int | None = None) -> InputSet:
    """The spine's files (one Parquet file, a folder, a glob or a Delta table), checked without Spark."""
    try:
        return inspect_input(path, delta_version=delta_version)
    except InputError as exc:
        raise SkewlessError(f"spine {exc}") from None


def read_spine(spark: SparkSession, spine: InputSet) -> DataFrame:
    """The spine's rows with normalised types (every Parquet timestamp encoding is a UTC timestamp)."""
    try:
        return read_input(spark, spine)
    except InputError as exc:
        raise SkewlessError(f"spine {exc}") from None


def write_output(spark: SparkSession, frame: DataFrame, out: str, output_format: OutputFormat) -> None:
    from skewless.offline.catalog import is_delta_table

    if output_format == "delta":
        delta_tables(spark).create_table(frame, out, CommitInfo(operation="training-set", view="*"))
        return
    if is_delta_table(out):
        raise SkewlessError(f"{out} is a Delta table; choose another --out")
    frame.write.mode("error").parquet(out)


def _manifest_uri(out: str) -> str:
    return f"{out.rstrip('/')}/{MANIFEST_NAME}"


def build_training_set(
    spark: SparkSession,
    settings: Settings,
    manifest: Manifest,
    *,
    spine: InputSet,
    out: str,
    features: Sequence[FeatureRef] | str | None = None,
    service: str | None = None,
    timestamp_column: str = "event_timestamp",
    output_format: OutputFormat = "parquet",
    method: str = "auto",
) -> TrainingSetManifest:
    """``skewless training-set``: join, write the output, and write its manifest beside it.

    ``spine`` comes from :func:`inspect_spine`, so a bad path fails before any Spark work.
    """
    requests = resolve_features(manifest, features=features, service=service)
    refuse_existing(out)
    log.info("reading the spine %s", spine.uri)
    frame, pinned, rows = point_in_time(
        spark,
        settings,
        manifest,
        read_spine(spark, spine),
        requests,
        timestamp_column,
        method=method,
        spine_files=spine,
    )
    return write_training_set(
        spark,
        manifest,
        JoinedFrame(frame, pinned, rows, requests),
        out=out,
        spine=spine,
        service=service,
        timestamp_column=timestamp_column,
        output_format=output_format,
        method=method,
    )


@dataclass(frozen=True)
class JoinedFrame:
    """A point-in-time join not written yet: the rows, the pinned tables and what was requested."""

    frame: DataFrame
    tables: dict[str, PinnedTable]
    spine_rows: int
    request: FeatureRequest


def write_training_set(
    spark: SparkSession,
    manifest: Manifest,
    joined: JoinedFrame,
    *,
    out: str,
    spine: InputSet | None,
    service: str | None,
    timestamp_column: str,
    output_format: OutputFormat = "parquet",
    method: str = "auto",
) -> TrainingSetManifest:
    """Write a joined frame and its manifest beside it (``spine`` None: the spine was a DataFrame)."""
    write_output(spark, joined.frame, out, output_format)
    log.info("wrote %d rows to %s", joined.spine_rows, out)
    record = TrainingSetManifest(
        created_at=datetime.now(UTC),
        registry_hash=manifest.registry_hash,
        features=joined.request.refs,
        service=service,
        spine_path=None if spine is None else spine.uri,
        spine_rows=joined.spine_rows,
        spine_fingerprint=None if spine is None else spine.fingerprint,
        spine_delta_version=None if spine is None else spine.delta_version,
        timestamp_column=timestamp_column,
        tables=joined.tables,
        output_path=out,
        output_format=output_format,
        method="asof" if method == "asof" else "auto",
    )
    write_text(_manifest_uri(out), record.model_dump_json(indent=2) + "\n")
    return record


def refuse_existing(out: str) -> None:
    """An output that exists, or that cannot be created, fails before any Spark work."""
    from pathlib import Path

    if is_remote(out):
        return
    path = Path(out)
    if path.is_file() or (path.is_dir() and any(path.iterdir())):
        raise SkewlessError(f"output {out} already exists; choose another --out")
    ancestor = path
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir() or not os.access(ancestor, os.W_OK):
        raise SkewlessError(f"output {out} cannot be written ({ancestor} is not a writable folder)")


def load_training_manifest(uri: str) -> TrainingSetManifest:
    text = read_text(uri if uri.endswith(".json") else _manifest_uri(uri))
    if text is None:
        raise SkewlessError(f"no training-set manifest at {uri}")
    try:
        return TrainingSetManifest.model_validate(json.loads(text))
    except (ValueError, TypeError) as exc:
        raise SkewlessError(f"{uri}: not a training-set manifest ({exc})") from None


@dataclass(frozen=True)
class Rebuild:
    """Everything a rebuild needs, checked before Spark starts."""

    record: TrainingSetManifest
    registry: Manifest
    requests: FeatureRequest
    spine: InputSet
    out: str


def prepare_rebuild(settings: Settings, manifest_uri: str, out: str) -> Rebuild:
    """Check that a training set can be reproduced exactly: same registry, same spine files."""
    record = load_training_manifest(manifest_uri)
    if record.spine_path is None:
        raise SkewlessError(f"{manifest_uri}: built from a DataFrame, not a spine path; cannot rebuild")
    registry = _registry_at(settings, record.registry_hash)
    refs = [FeatureRef(view=v, feature=f) for v, _, f in (s.partition(":") for s in record.features)]
    requests = resolve_features(registry, features=refs)
    refuse_existing(out)
    # A Delta spine is read at its recorded version; a Parquet spine must still be the same files.
    spine = inspect_spine(record.spine_path, record.spine_delta_version)
    if record.spine_fingerprint is not None and spine.fingerprint != record.spine_fingerprint:
        raise SkewlessError(
            f"spine {record.spine_path} changed since the training set was built (files added, removed "
            "or rewritten); a rebuild would not reproduce it. Restore the spine, or build a new training set"
        )
    return Rebuild(record, registry, requests, spine, out)


def rebuild_training_set(
    spark: SparkSession, settings: Settings, rebuild: Rebuild, *, output_format: OutputFormat | None = None
) -> TrainingSetManifest:
    """Reproduce a training set from its manifest: same registry, same Delta versions, same spine."""
    record = rebuild.record
    versions = {name: table.version for name, table in record.tables.items()}
    frame, pinned, rows = point_in_time(
        spark,
        settings,
        rebuild.registry,
        read_spine(spark, rebuild.spine),
        rebuild.requests,
        record.timestamp_column,
        method=record.method,
        versions=versions,
        spine_files=rebuild.spine,
    )
    if rows != record.spine_rows:
        raise SkewlessError(
            f"spine {record.spine_path} now has {rows} rows; the training set was built from "
            f"{record.spine_rows}"
        )
    chosen: OutputFormat = output_format or record.output_format or "parquet"
    write_output(spark, frame, rebuild.out, chosen)
    rebuilt = record.model_copy(
        update={
            "created_at": datetime.now(UTC),
            "output_path": rebuild.out,
            "output_format": chosen,
            "tables": pinned,
        }
    )
    write_text(_manifest_uri(rebuild.out), rebuilt.model_dump_json(indent=2) + "\n")
    return rebuilt


def training_set_command(
    settings: Settings,
    *,
    out: str,
    spine_path: str | None = None,
    features: str | None = None,
    service: str | None = None,
    timestamp_column: str = "event_timestamp",
    output_format: OutputFormat | None = None,
    method: str = "auto",
    rebuild: str | None = None,
) -> TrainingSetManifest:
    """What ``skewless training-set`` and ``jobs/training_set.py`` run: every check before Spark starts."""
    from skewless.registry import require_registry
    from skewless.runtime.spark import get_spark

    if rebuild is not None:
        if spine_path or features or service:
            raise SkewlessError("--rebuild takes the features and spine from the manifest")
        prepared = prepare_rebuild(settings, rebuild, out)
        spark = get_spark(settings, app_name="skewless-training-set-rebuild")
        return rebuild_training_set(spark, settings, prepared, output_format=output_format)
    if spine_path is None or (service is None) == (features is None):
        raise SkewlessError("give --spine and exactly one of --service or --features (or --rebuild)")
    join.ensure_method(method)
    manifest = require_registry(settings.registry_uri)
    resolve_features(manifest, features=features, service=service)  # unknown features fail before Spark
    refuse_existing(out)
    spine = inspect_spine(spine_path)
    spark = get_spark(settings, app_name="skewless-training-set")
    return build_training_set(
        spark,
        settings,
        manifest,
        spine=spine,
        out=out,
        features=features,
        service=service,
        timestamp_column=timestamp_column,
        output_format=output_format or "parquet",
        method=method,
    )


def _registry_at(settings: Settings, registry_hash: str) -> Manifest:
    current = read_registry(settings.registry_uri)
    if current is not None and current.registry_hash == registry_hash:
        return current
    text = read_text(history_uri(settings.registry_uri, registry_hash))
    if text is None:
        raise SkewlessError(f"registry {registry_hash[:12]} is not in the registry history")
    return Manifest.from_json(text, history_uri(settings.registry_uri, registry_hash))


def get_training_set(
    spine: DataFrame | Any,
    features: Sequence[str] | str | None = None,
    *,
    service: str | None = None,
    timestamp_column: str = "event_timestamp",
    settings: Settings | None = None,
    manifest: Manifest | None = None,
    spark: SparkSession | None = None,
    method: str = "auto",
) -> DataFrame:
    """Notebook API: the point-in-time join of ``spine`` (a Spark or pandas DataFrame).

    Returns a Spark DataFrame with the spine's columns then one column per feature; call
    ``.toPandas()`` on it when the result is small enough.
    """
    from skewless.registry import require_registry
    from skewless.runtime.settings import load_settings
    from skewless.runtime.spark import get_spark

    settings = settings or load_settings()
    manifest = manifest or require_registry(settings.registry_uri)
    spark = spark or get_spark(settings)
    frame = as_spark_spine(spark, spine, timestamp_column)
    requests = resolve_features(manifest, features=features, service=service)
    result, _, _ = point_in_time(spark, settings, manifest, frame, requests, timestamp_column, method=method)
    return result


def as_spark_spine(spark: SparkSession, spine: Any, timestamp_column: str) -> DataFrame:
    """A spine given as a Spark or pandas DataFrame, as a Spark DataFrame."""
    from pyspark.sql import DataFrame as SparkDataFrame

    if isinstance(spine, SparkDataFrame):
        return spine
    import pandas as pd

    if not isinstance(spine, pd.DataFrame):
        raise SkewlessError(f"spine must be a Spark or pandas DataFrame, got {type(spine).__name__}")
    if timestamp_column in spine.columns and spine[timestamp_column].dtype == object:
        zones = {getattr(v, "tzinfo", None) is not None for v in spine[timestamp_column] if v is not None}
        if len(zones) > 1:
            raise join.SpineError(
                "mixes timestamps with and without a time zone; make them all UTC", column=timestamp_column
            )
    return spark.createDataFrame(spine)
