"""The Delta table layer: the only module that knows how tables are written and read.

Two implementations behind one small interface:

* :class:`NativeDeltaTables` - the Delta Spark extension is on the classpath (a cluster with
  delta-spark JARs): ``format("delta")`` with ``replaceWhere``.
* :class:`EmbeddedDeltaTables` - the default here: Spark writes Parquet in parallel, the driver
  moves the files under the table's ``ds=`` folders and commits them through delta-rs in one
  overwrite transaction restricted to the replaced partitions.

Both produce standard Delta tables partitioned by ``ds`` (a date) that any Delta reader opens.
Columns only grow (features added to a view): :func:`add_columns` at ``apply``, or the commit of
a run that has them; files committed before read null for them.
Nothing is collected to the driver: the driver handles file paths and Parquet footers only.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from skewless.errors import TableError
from skewless.offline.storage_options import storage_options
from skewless.runtime.settings import is_remote

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.parquet as pq
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.types import StructType

log = logging.getLogger(__name__)

PARTITION_COLUMN = "ds"
COMMIT_RETRIES = 5
COMMIT_ID_KEY = "skewless.commit_id"
COMMIT_LOOKBACK = 100
"""Versions of history searched for a commit just written (concurrent writers' commits between)."""


@dataclass(frozen=True)
class CommitInfo:
    """Why a commit happened, recorded in the Delta commit's metadata."""

    operation: str
    view: str
    registry_hash: str | None = None

    def metadata(self, commit_id: str | None = None) -> dict[str, str]:
        """``commit_id``: a token of one commit, so its version is read from the commit that holds
        it, not from "the latest", which a concurrent writer may have moved on by then."""
        out = {"skewless.operation": self.operation, "skewless.view": self.view}
        if self.registry_hash:
            out["skewless.registry_hash"] = self.registry_hash
        if commit_id:
            out[COMMIT_ID_KEY] = commit_id
        return out


def _commit_not_found(uri: str, commit_id: str) -> TableError:
    return TableError(
        f"{uri}: commit {commit_id} is not among the last {COMMIT_LOOKBACK} versions"
        " right after it was written"
    )


@dataclass(frozen=True)
class Staged:
    """Rows written beside a table (under its ``_staging/`` folder, which Delta ignores), not committed.

    Serialisable, so a later process (the next Airflow task) can audit and then commit them.
    """

    table_uri: str
    path: str
    schema_json: str

    @property
    def schema(self) -> StructType:
        from pyspark.sql.types import StructType

        return StructType.fromJson(json.loads(self.schema_json))


class DeltaTables(Protocol):
    """What the rest of skewless needs from the offline store."""

    def stage(self, frame: DataFrame, uri: str) -> Staged:
        """Write ``frame`` (partitioned by ``ds``) beside the table without committing it."""

    def read_staged(self, staged: Staged) -> DataFrame:
        """The staged rows, with the staged schema."""

    def commit_staged(self, staged: Staged, partitions: Sequence[date], info: CommitInfo) -> int:
        """Atomically replace exactly ``partitions`` with the staged rows; returns the new version."""

    def discard(self, staged: Staged) -> None:
        """Remove staged files that will not be committed."""

    def read(
        self,
        uri: str,
        schema: StructType,
        *,
        version: int | None = None,
        ds_range: tuple[date, date] | None = None,
    ) -> DataFrame:
        """The table (at ``version``) restricted to ``ds`` in ``ds_range`` (inclusive); empty if absent."""

    def replace_partitions(
        self, frame: DataFrame, uri: str, partitions: Sequence[date], info: CommitInfo
    ) -> int:
        """Atomically replace exactly ``partitions`` with ``frame``'s rows; returns the new version."""

    def replace_partitions_with_rows(
        self,
        rows: Sequence[Sequence[Any]],
        schema: StructType,
        uri: str,
        partitions: Sequence[date],
        info: CommitInfo,
    ) -> int:
        """:meth:`replace_partitions` with a few rows held by the driver (e.g. statistics)."""

    def version(self, uri: str) -> int | None:
        """Current version, None when the table does not exist."""

    def partitions(self, uri: str, version: int | None = None) -> list[date]:
        """Sorted committed ``ds`` values (empty when the table does not exist)."""

    def read_any(self, uri: str, version: int | None = None) -> DataFrame:
        """Any Delta table (not necessarily skewless's) with the schema from its log."""

    def create_table(self, frame: DataFrame, uri: str, info: CommitInfo) -> int:
        """Write ``frame`` as a new unpartitioned Delta table (error if one exists)."""


def partition_value(day: date) -> str:
    return day.isoformat()


def nullable(schema: StructType) -> StructType:
    """The same schema with every field nullable (Spark marks computed columns non-null)."""
    from pyspark.sql.types import StructField, StructType

    return StructType([StructField(f.name, f.dataType, True, f.metadata) for f in schema.fields])


def _arrow_schema(schema: StructType) -> pa.Schema:
    """Spark schema -> Arrow schema for the Delta log (microsecond UTC timestamps, nullable)."""
    import pyarrow as pa
    from pyspark.sql import types as T

    def convert(data_type: T.DataType) -> pa.DataType:
        simple: dict[type[T.DataType], pa.DataType] = {
            T.StringType: pa.string(),
            T.LongType: pa.int64(),
            T.IntegerType: pa.int32(),
            T.DoubleType: pa.float64(),
            T.FloatType: pa.float32(),
            T.BooleanType: pa.bool_(),
            T.DateType: pa.date32(),
            T.TimestampType: pa.timestamp("us", tz="UTC"),
            T.TimestampNTZType: pa.timestamp("us"),
            T.BinaryType: pa.binary(),
        }
        for spark_type, arrow_type in simple.items():
            if isinstance(data_type, spark_type):
                return arrow_type
        if isinstance(data_type, T.StructType):
            return pa.struct([pa.field(f.name, convert(f.dataType), True) for f in data_type.fields])
        if isinstance(data_type, T.ArrayType):
            return pa.list_(convert(data_type.elementType))
        if isinstance(data_type, T.MapType):
            return pa.map_(convert(data_type.keyType), convert(data_type.valueType))
        raise TableError(f"unsupported column type for a Delta table: {data_type.simpleString()}")

    return pa.schema([pa.field(f.name, convert(f.dataType), True) for f in schema.fields])


def arrow_rows(rows: Sequence[Sequence[Any]], schema: StructType) -> pa.Table:
    """A few driver-side rows as an Arrow table, typed as :func:`_arrow_schema` types the table."""
    import pyarrow as pa

    arrow = _arrow_schema(schema)
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in arrow]
    return pa.Table.from_arrays(
        [pa.array(list(values), type=field.type) for values, field in zip(columns, arrow, strict=True)],
        schema=arrow,
    )


def _stats_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat(timespec="microseconds").replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, bytes):
        return None
    if isinstance(value, float) and value != value:  # NaN has no place in JSON stats
        return None
    return value


def _file_stats(path: Path) -> str:
    """Delta ``stats`` JSON from the Parquet footer (row count, nulls, min/max of flat columns)."""
    import pyarrow.parquet as pq

    metadata = pq.read_metadata(path)
    null_count: dict[str, int] = {}
    minimum: dict[str, Any] = {}
    maximum: dict[str, Any] = {}
    columns = [metadata.schema.column(i).path for i in range(metadata.num_columns)]
    for index, name in enumerate(columns):
        if "." in name:
            continue  # nested leaves: row count is enough
        nulls, lows, highs, complete = 0, [], [], True
        for group in range(metadata.num_row_groups):
            stats = metadata.row_group(group).column(index).statistics
            if stats is None:
                complete = False
                continue
            nulls += stats.null_count or 0
            if stats.has_min_max:
                lows.append(_stats_value(stats.min))
                highs.append(_stats_value(stats.max))
            elif metadata.row_group(group).num_rows > (stats.null_count or 0):
                complete = False
        if complete:
            null_count[name] = nulls
        lows = [v for v in lows if v is not None]
        highs = [v for v in highs if v is not None]
        if complete and lows and highs:
            minimum[name] = min(lows)
            maximum[name] = max(highs)
    return json.dumps(
        {
            "numRecords": metadata.num_rows,
            "minValues": minimum,
            "maxValues": maximum,
            "nullCount": null_count,
        },
        separators=(",", ":"),
    )


def new_columns(uri: str, table_types: dict[str, Any], job_types: dict[str, Any]) -> list[str]:
    """The job's columns the table lacks; the only schema change a commit may make.

    Columns only grow under one view version (a removed or retyped feature is a breaking change,
    docs/feature-definitions.md): a table column the job lacks means the job computed with a
    registry older than the table (``apply`` ran meanwhile), and its rows would hold null where
    the table promises values.
    """
    missing = [name for name in table_types if name not in job_types]
    if missing:
        raise TableError(
            f"{uri}: the table has columns {missing} that this run lacks: the registry was applied"
            " while it ran; run it again (removing a feature needs a new view version)"
        )
    retyped = [name for name in table_types if table_types[name] != job_types[name]]
    if retyped:
        raise TableError(
            f"{uri}: columns {retyped} have another type in the table than in this run; a type change"
            " needs a new view version"
        )
    return [name for name in job_types if name not in table_types]


def add_columns(uri: str, schema: StructType, info: CommitInfo) -> tuple[str, ...]:
    """Add the nullable columns of ``schema`` that the Delta table at ``uri`` lacks; returns their names.

    What ``apply`` does when a view gains features: committed files lack the columns, and every
    skewless read (an explicit schema) gives null for them until a backfill rewrites the files.
    No table yet: nothing to do (its first commit creates it with every column). Any Delta table
    delta-rs can write, local or ``s3://``, whichever writer made it.
    """
    from deltalake import CommitProperties, DeltaTable, Schema
    from deltalake.exceptions import CommitFailedError

    options = storage_options(uri)
    wanted = Schema.from_arrow(_arrow_schema(nullable(schema)))
    for attempt in range(1, COMMIT_RETRIES + 1):
        if not DeltaTable.is_deltatable(uri, storage_options=options):
            return ()
        table = DeltaTable(uri, storage_options=options)
        added = new_columns(uri, _delta_types(table.schema()), _delta_types(wanted))
        if not added:
            return ()
        fields = [field for field in wanted.fields if field.name in added]
        try:
            table.alter.add_columns(
                fields, commit_properties=CommitProperties(custom_metadata=info.metadata())
            )
        except CommitFailedError as exc:
            log.warning("commit conflict adding columns to %s (attempt %d): %s", uri, attempt, exc)
            continue
        return tuple(added)
    raise TableError(f"{uri}: could not add columns after {COMMIT_RETRIES} attempts (concurrent writers)")


def _delta_types(schema: Any) -> dict[str, Any]:
    """Column name -> Delta type (comparable with ``==``) of a delta-rs schema, in schema order."""
    return {field.name: field.type for field in schema.fields}


def partition_columns(uri: str, ds_range: tuple[date, date]) -> dict[date, frozenset[str]]:
    """Columns held by the data files of each committed ``ds`` in ``ds_range``, from a Parquet footer.

    The Delta schema says what a table holds now; a file committed before ``add_columns`` still
    lacks the added columns (they read as null), and only its footer tells. Every commit replaces
    whole ``ds`` partitions with files of one schema, so one footer per day answers for the day.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq
    from deltalake import DeltaTable
    from pyarrow import fs

    options = storage_options(uri)
    if not DeltaTable.is_deltatable(uri, storage_options=options):
        return {}
    table = DeltaTable(uri, storage_options=options)
    actions = pa.table(table.get_add_actions(flatten=True)).select(["path", f"partition.{PARTITION_COLUMN}"])
    filesystem, base = fs.FileSystem.from_uri(table.table_uri.rstrip("/"))
    out: dict[date, frozenset[str]] = {}
    start, end = ds_range
    for action in actions.to_pylist():
        day = action[f"partition.{PARTITION_COLUMN}"]
        if day is None or not start <= day <= end or day in out:
            continue
        path = str(action["path"])
        if "://" in path:  # an absolute file URI (shallow clones); ours are relative
            file_system, file_path = fs.FileSystem.from_uri(path)
        else:
            file_system, file_path = filesystem, f"{base}/{path}"
        out[day] = frozenset(pq.read_schema(file_path, filesystem=file_system).names)
    return out


def footer_counts(folder: str, columns: Sequence[str]) -> tuple[int, dict[str, int]] | None:
    """Rows, and nulls of ``columns``, of the Parquet files under a local ``folder``, from their footers.

    Spark writes a null count for every column chunk, so staged rows are counted without reading
    them. None when the folder is remote or a footer lacks a count: then count with Spark.
    """
    import pyarrow.parquet as pq

    if is_remote(folder):
        return None
    rows, nulls = 0, dict.fromkeys(columns, 0)
    for path in sorted(Path(folder).rglob("*.parquet")):
        metadata = pq.read_metadata(path)
        counted = footer_null_counts(metadata, columns)
        if counted is None:
            return None
        rows += metadata.num_rows
        for column, count in counted.items():
            nulls[column] += count
    return rows, nulls


def footer_null_counts(metadata: pq.FileMetaData, columns: Sequence[str]) -> dict[str, int] | None:
    """Nulls of each of ``columns`` in one Parquet file, summed over its column chunks' statistics.

    None when a column is missing or a non-empty row group has no null count.
    """
    names = [metadata.schema.column(i).path for i in range(metadata.num_columns)]
    out: dict[str, int] = {}
    for column in columns:
        if column not in names:
            return None
        index = names.index(column)
        out[column] = 0
        for group in range(metadata.num_row_groups):
            if metadata.row_group(group).num_rows == 0:
                continue
            stats = metadata.row_group(group).column(index).statistics
            if stats is None or not stats.has_null_count:
                return None
            out[column] += stats.null_count
    return out


class _StagedWrites:
    """What both implementations share: a replace is stage + commit, and staged rows are Parquet."""

    spark: SparkSession

    def stage(self, frame: DataFrame, uri: str) -> Staged:
        raise NotImplementedError

    def commit_staged(self, staged: Staged, partitions: Sequence[date], info: CommitInfo) -> int:
        raise NotImplementedError

    def discard(self, staged: Staged) -> None:
        raise NotImplementedError

    def replace_partitions(
        self, frame: DataFrame, uri: str, partitions: Sequence[date], info: CommitInfo
    ) -> int:
        return self._commit_and_clean(self.stage(frame, uri), partitions, info)

    def replace_partitions_with_rows(
        self,
        rows: Sequence[Sequence[Any]],
        schema: StructType,
        uri: str,
        partitions: Sequence[date],
        info: CommitInfo,
    ) -> int:
        # Sent as Arrow, which Spark reads in the JVM: pickled rows would start Python workers.
        frame = self.spark.createDataFrame(arrow_rows(rows, schema), schema).coalesce(1)
        return self.replace_partitions(frame, uri, partitions, info)

    def _commit_and_clean(self, staged: Staged, partitions: Sequence[date], info: CommitInfo) -> int:
        try:
            return self.commit_staged(staged, partitions, info)
        finally:
            self.discard(staged)

    def read_staged(self, staged: Staged) -> DataFrame:
        schema = staged.schema
        frame = self.spark.read.schema(schema).option("basePath", staged.path).parquet(staged.path)
        return frame.select(*schema.fieldNames())


class EmbeddedDeltaTables(_StagedWrites):
    """Spark writes Parquet; delta-rs commits it (no Delta JARs needed)."""

    def __init__(self, spark: SparkSession) -> None:
        self.spark = spark

    def _open(self, uri: str, version: int | None = None) -> Any:
        from deltalake import DeltaTable

        options = storage_options(uri)
        if not DeltaTable.is_deltatable(uri, storage_options=options):
            return None
        return DeltaTable(uri, version=version, storage_options=options)

    def version(self, uri: str) -> int | None:
        from skewless.offline.catalog import table_version

        return table_version(uri)

    def partitions(self, uri: str, version: int | None = None) -> list[date]:
        from skewless.offline.catalog import committed_partitions

        return committed_partitions(uri, version)

    def read_any(self, uri: str, version: int | None = None) -> DataFrame:
        table = self._open(uri, version)
        if table is None:
            raise TableError(f"no Delta table at {uri}")
        partition_columns = table.metadata().partition_columns
        uris = table.file_uris()
        if not uris:
            raise TableError(f"Delta table {uri} has no data files")
        frame = self.spark.read.option("basePath", table.table_uri.rstrip("/")).parquet(*uris)
        # Spark infers partition column types from folder names; keep data columns first.
        return frame.select(*[c for c in frame.columns if c not in partition_columns], *partition_columns)

    def create_table(self, frame: DataFrame, uri: str, info: CommitInfo) -> int:
        from deltalake import CommitProperties, DeltaTable

        if is_remote(uri):
            raise TableError(f"{uri}: the embedded Delta writer needs a local path")
        root = Path(uri)
        if self._open(uri) is not None:
            raise TableError(f"{uri}: a Delta table already exists there")
        staging = root / "_staging" / uuid.uuid4().hex
        try:
            frame.write.mode("error").parquet(str(staging))
            run = staging.name[:12]
            files = []
            for file in sorted(staging.glob("*.parquet")):
                target = root / f"{run}-{file.name}"
                os.replace(file, target)
                files.append(target)
            from deltalake.transaction import AddAction, RemoveAction

            actions: list[AddAction | RemoveAction] = [
                AddAction(
                    path=path.name,
                    size=path.stat().st_size,
                    partition_values={},
                    modification_time=int(path.stat().st_mtime * 1000),
                    data_change=True,
                    stats=_file_stats(path),
                )
                for path in files
            ]
            schema = _arrow_schema(nullable(frame.schema))
            table = DeltaTable.create(uri, schema=schema, mode="error")
            table.create_write_transaction(
                actions,
                mode="append",
                schema=schema,
                commit_properties=CommitProperties(custom_metadata=info.metadata()),
            )
            table.update_incremental()
            return int(table.version())
        finally:
            shutil.rmtree(root / "_staging", ignore_errors=True)

    def read(
        self,
        uri: str,
        schema: StructType,
        *,
        version: int | None = None,
        ds_range: tuple[date, date] | None = None,
    ) -> DataFrame:
        table = self._open(uri, version)
        if table is None:
            if version is not None:
                raise TableError(f"no Delta table at {uri} (version {version} requested)")
            return self.spark.createDataFrame([], schema)
        filters = None
        if ds_range is not None:
            start, end = ds_range
            filters = [
                (PARTITION_COLUMN, ">=", partition_value(start)),
                (PARTITION_COLUMN, "<=", partition_value(end)),
            ]
        uris = table.file_uris(partition_filters=filters)
        if not uris:
            return self.spark.createDataFrame([], schema)
        base = table.table_uri.rstrip("/")
        frame = self.spark.read.schema(schema).option("basePath", base).parquet(*uris)
        return frame.select(*schema.fieldNames())  # Spark moves partition columns last

    def stage(self, frame: DataFrame, uri: str) -> Staged:
        if is_remote(uri):
            raise TableError(
                f"{uri}: the embedded Delta writer needs a local offline_root; on a cluster put the"
                " delta-spark JARs on the classpath (spark-submit --packages io.delta:...)"
            )
        staging = Path(uri) / "_staging" / uuid.uuid4().hex
        frame.write.partitionBy(PARTITION_COLUMN).mode("error").parquet(str(staging))
        return Staged(uri, str(staging), nullable(frame.schema).json())

    def replace_partitions_with_rows(
        self,
        rows: Sequence[Sequence[Any]],
        schema: StructType,
        uri: str,
        partitions: Sequence[date],
        info: CommitInfo,
    ) -> int:
        """Staged with pyarrow, not a Spark job: 0.1 s instead of 1-2 s for a backfill's statistics."""
        import pyarrow.parquet as pq

        if is_remote(uri):
            return super().replace_partitions_with_rows(rows, schema, uri, partitions, info)
        staging = Path(uri) / "_staging" / uuid.uuid4().hex
        pq.write_to_dataset(
            arrow_rows(rows, schema),
            str(staging),
            partition_cols=[PARTITION_COLUMN],
            basename_template=f"part-{staging.name[:8]}-{{i}}.parquet",
        )
        return self._commit_and_clean(Staged(uri, str(staging), nullable(schema).json()), partitions, info)

    def commit_staged(self, staged: Staged, partitions: Sequence[date], info: CommitInfo) -> int:
        wanted = {partition_value(d) for d in partitions}
        if not wanted:
            raise TableError(f"{staged.table_uri}: no partitions to replace")
        root = Path(staged.table_uri)
        added = self._move_into_table(Path(staged.path), root, wanted)
        return self._commit(root, staged.schema, added, wanted, info)

    def discard(self, staged: Staged) -> None:
        shutil.rmtree(staged.path, ignore_errors=True)

    @staticmethod
    def _move_into_table(staging: Path, root: Path, wanted: set[str]) -> list[tuple[Path, str]]:
        """Move staged files to ``root/ds=.../``; refuse any file outside the replaced partitions."""
        run = staging.name[:12]
        moved: list[tuple[Path, str]] = []
        for file in sorted(staging.glob(f"{PARTITION_COLUMN}=*/*.parquet")):
            value = file.parent.name.split("=", 1)[1]
            if value not in wanted:
                raise TableError(
                    f"{root}: refusing to commit: a file for {PARTITION_COLUMN}={value} is outside the"
                    f" partitions being replaced ({', '.join(sorted(wanted))})"
                )
            target_dir = root / f"{PARTITION_COLUMN}={value}"
            target_dir.mkdir(parents=True, exist_ok=True)
            target = target_dir / f"{run}-{file.name}"
            os.replace(file, target)
            moved.append((target, value))
        return moved

    def _commit(
        self,
        root: Path,
        schema: StructType,
        files: list[tuple[Path, str]],
        wanted: set[str],
        info: CommitInfo,
    ) -> int:
        from deltalake import CommitProperties, DeltaTable
        from deltalake.exceptions import CommitFailedError
        from deltalake.transaction import AddAction

        arrow_schema = _arrow_schema(schema)
        actions = [
            AddAction(
                path=str(path.relative_to(root)),
                size=path.stat().st_size,
                partition_values={PARTITION_COLUMN: value},
                modification_time=int(path.stat().st_mtime * 1000),
                data_change=True,
                stats=_file_stats(path),
            )
            for path, value in files
        ]
        commit_id = uuid.uuid4().hex
        properties = CommitProperties(custom_metadata=info.metadata(commit_id))
        uri = str(root)
        for attempt in range(1, COMMIT_RETRIES + 1):
            table = self._open(uri)
            if table is None:
                table = DeltaTable.create(
                    uri, schema=arrow_schema, partition_by=[PARTITION_COLUMN], mode="ignore"
                )
            schema_of_commit = self._commit_schema(uri, table, arrow_schema)
            try:
                table.create_write_transaction(
                    actions,
                    mode="overwrite",
                    schema=schema_of_commit,
                    partition_by=[PARTITION_COLUMN],
                    partition_filters=[(PARTITION_COLUMN, "in", sorted(wanted))],
                    commit_properties=properties,
                )
            except CommitFailedError as exc:
                # Another writer committed first (e.g. a parallel backfill of other partitions):
                # reload and commit again on top of it.
                log.warning("commit conflict on %s (attempt %d): %s", uri, attempt, exc)
                continue
            return self._version_of_commit(uri, commit_id)
        raise TableError(f"{uri}: could not commit after {COMMIT_RETRIES} attempts (concurrent writers)")

    def _version_of_commit(self, uri: str, commit_id: str) -> int:
        from deltalake import DeltaTable

        for entry in DeltaTable(uri).history(COMMIT_LOOKBACK):
            if entry.get(COMMIT_ID_KEY) == commit_id:
                return int(entry["version"])
        raise _commit_not_found(uri, commit_id)

    @staticmethod
    def _commit_schema(uri: str, table: Any, arrow_schema: pa.Schema) -> Any:
        """The table schema this commit leaves: the current one, plus the job's new columns.

        delta-rs makes the schema passed to a commit the table's schema, so the current columns
        keep their order and only added features join (after ``apply`` added them, none do).
        """
        import pyarrow as pa
        from deltalake import Schema

        current = table.schema()
        added = new_columns(uri, _delta_types(current), _delta_types(Schema.from_arrow(arrow_schema)))
        if not added:
            return current
        log.info("%s: adding columns %s", uri, added)
        return pa.schema([*pa.schema(current.to_arrow()), *(arrow_schema.field(name) for name in added)])


class NativeDeltaTables(_StagedWrites):
    """delta-spark on the classpath: Spark reads and writes Delta itself."""

    def __init__(self, spark: SparkSession) -> None:
        self.spark = spark

    def _exists(self, uri: str) -> bool:
        from delta.tables import DeltaTable

        return bool(DeltaTable.isDeltaTable(self.spark, uri))

    def version(self, uri: str) -> int | None:
        from delta.tables import DeltaTable

        if not self._exists(uri):
            return None
        row = DeltaTable.forPath(self.spark, uri).history(1).select("version").first()
        return None if row is None else int(row[0])

    def partitions(self, uri: str, version: int | None = None) -> list[date]:
        if not self._exists(uri):
            return []
        rows = self.read_any(uri, version).select(PARTITION_COLUMN).distinct().collect()
        return sorted(row[0] for row in rows)

    def read_any(self, uri: str, version: int | None = None) -> DataFrame:
        reader = self.spark.read.format("delta")
        if version is not None:
            reader = reader.option("versionAsOf", version)
        return reader.load(uri)

    def create_table(self, frame: DataFrame, uri: str, info: CommitInfo) -> int:
        (
            frame.write.format("delta")
            .mode("error")
            .option("userMetadata", json.dumps(info.metadata(), sort_keys=True))
            .save(uri)
        )
        return 0

    def read(
        self,
        uri: str,
        schema: StructType,
        *,
        version: int | None = None,
        ds_range: tuple[date, date] | None = None,
    ) -> DataFrame:
        from pyspark.sql import functions as F

        if not self._exists(uri):
            if version is not None:
                raise TableError(f"no Delta table at {uri} (version {version} requested)")
            return self.spark.createDataFrame([], schema)
        reader = self.spark.read.format("delta")
        if version is not None:
            reader = reader.option("versionAsOf", version)
        frame = reader.load(uri)
        if ds_range is not None:
            frame = frame.where(F.col(PARTITION_COLUMN).between(*ds_range))
        return frame.select(*schema.fieldNames())

    def stage(self, frame: DataFrame, uri: str) -> Staged:
        staging = f"{uri.rstrip('/')}/_staging/{uuid.uuid4().hex}"
        frame.write.partitionBy(PARTITION_COLUMN).mode("error").parquet(staging)
        return Staged(uri, staging, nullable(frame.schema).json())

    def commit_staged(self, staged: Staged, partitions: Sequence[date], info: CommitInfo) -> int:
        values = ", ".join(f"DATE'{partition_value(d)}'" for d in sorted(set(partitions)))
        if self._exists(staged.table_uri):
            current = self.spark.read.format("delta").load(staged.table_uri).schema
            new_columns(
                staged.table_uri,
                {f.name: f.dataType.simpleString() for f in current.fields},
                {f.name: f.dataType.simpleString() for f in staged.schema.fields},
            )
        commit_id = uuid.uuid4().hex
        (
            self.read_staged(staged)
            .write.format("delta")
            .mode("overwrite")
            .option("replaceWhere", f"{PARTITION_COLUMN} IN ({values})")
            .option("mergeSchema", "true")  # added features: as the embedded commit does
            .option("userMetadata", json.dumps(info.metadata(commit_id), sort_keys=True))
            .partitionBy(PARTITION_COLUMN)
            .save(staged.table_uri)
        )
        return self._version_of_commit(staged.table_uri, commit_id)

    def _version_of_commit(self, uri: str, commit_id: str) -> int:
        from delta.tables import DeltaTable
        from pyspark.sql import functions as F

        token = json.dumps({COMMIT_ID_KEY: commit_id})[1:-1]  # '"skewless.commit_id": "..."'
        row = (
            DeltaTable.forPath(self.spark, uri)
            .history(COMMIT_LOOKBACK)
            .where(F.col("userMetadata").contains(token))
            .select("version")
            .first()
        )
        if row is None:
            raise _commit_not_found(uri, commit_id)
        return int(row[0])

    def discard(self, staged: Staged) -> None:
        from skewless.runtime.spark import require_classic

        require_classic(
            self.spark,
            f"discarding the staged rows at {staged.path} with delta-spark (Hadoop's FileSystem)",
            "remove that folder by hand, or run the job with a classic session (spark-submit)",
        )
        jvm = self.spark.sparkContext._jvm  # Hadoop's FileSystem handles every scheme Spark writes
        if jvm is None:  # pragma: no cover - a classic session always has a JVM
            raise TableError("cannot remove staged files without a JVM session")
        path = jvm.org.apache.hadoop.fs.Path(staged.path)
        path.getFileSystem(self.spark.sparkContext._jsc.hadoopConfiguration()).delete(path, True)


def delta_extension_active(spark: SparkSession) -> bool:
    extensions = spark.conf.get("spark.sql.extensions", "") or ""
    return "DeltaSparkSessionExtension" in extensions


def delta_tables(spark: SparkSession) -> DeltaTables:
    """The table layer for this session: native when delta-spark is configured, else embedded."""
    if delta_extension_active(spark):
        return NativeDeltaTables(spark)
    return EmbeddedDeltaTables(spark)
