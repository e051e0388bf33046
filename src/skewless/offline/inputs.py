"""Inputs as users bring them: the one reader of raw sources and spines.

A source or a spine may be one Parquet file, a directory of files, a hive-partitioned directory
(``event_date=2024-01-01/``), a glob, or a Delta table, written by any of the usual tools
(pandas, pyarrow, Spark, DuckDB, Hive). Two steps, each in one place:

* :func:`inspect_input` (pyarrow and deltalake, no Spark): list the files, read every Parquet
  footer, and fail early with one line naming the path when something is missing, empty, not
  Parquet or corrupt. The result also carries the Arrow schema (for type inference at compile
  time) and a fingerprint of the file set (for exact rebuilds).
* :func:`read_input` (Spark): read exactly the inspected files and normalise their columns to
  the types the rest of skewless works with (docs/semantics.md, "Time" and "Column types"):
  every Parquet timestamp encoding becomes a UTC microsecond ``timestamp`` (nanoseconds are
  truncated toward the past; no zone means UTC), narrow integers widen to ``bigint``,
  ``float`` and ``decimal`` widen to ``double``.
"""

from __future__ import annotations

import fnmatch
import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from skewless import semantics
from skewless.errors import SkewlessError
from skewless.offline.storage_options import storage_options

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.fs as pafs
    import pyarrow.parquet as pq
    from pyspark.sql import Column, DataFrame, SparkSession

    from skewless.compile.compiler import SourceColumnReader
    from skewless.runtime.settings import Settings
    from skewless.spec.models import Source

InputFormat = Literal["parquet", "delta"]
_GLOB_CHARS = frozenset("*?[")
# Spark and Hive leave these beside data files (_SUCCESS, .crc, _delta_log, _staging): never data.
_HIDDEN_PREFIXES = ("_", ".")


class InputError(SkewlessError):
    """A source or spine path that cannot be read: one line naming the path and what is wrong."""


@dataclass(frozen=True)
class InputFile:
    path: str
    size: int


@dataclass(frozen=True)
class InputSet:
    """What :func:`inspect_input` found at a path: the files Spark will read and their schema."""

    uri: str
    format: InputFormat
    files: tuple[InputFile, ...]
    schema: pa.Schema
    """Arrow schema of the data columns (the first file's), plus hive partition columns as strings."""
    base: str | None = None
    """Folder that hive partition discovery starts from (None for one file)."""
    delta_version: int | None = None
    partition_columns: tuple[str, ...] = field(default=())

    @property
    def fingerprint(self) -> str:
        """Changes whenever a file is added, removed, renamed or changes size (or the Delta version)."""
        digest = hashlib.sha256(f"{self.format}:{self.delta_version}".encode())
        for item in sorted(self.files, key=lambda f: f.path):
            digest.update(f"\n{item.path}\t{item.size}".encode())
        return digest.hexdigest()

    @property
    def first_file(self) -> str:
        """The file to name in an error about a column's type: Spark's schema comes from its footer."""
        return self.files[0].path if self.files else self.uri


def _is_remote(uri: str) -> bool:
    return uri.startswith(("s3://", "s3a://"))


def _filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    """pyarrow filesystem and the path inside it (S3 configured from the standard AWS environment)."""
    import pyarrow.fs as pafs

    if not _is_remote(uri):
        return pafs.LocalFileSystem(), str(Path(uri.removeprefix("file://")).absolute())
    options = storage_options(uri) or {}
    endpoint = options.get("AWS_ENDPOINT_URL")
    scheme = "https"
    if endpoint and "://" in endpoint:
        scheme, endpoint = endpoint.split("://", 1)
    filesystem = pafs.S3FileSystem(
        access_key=options.get("AWS_ACCESS_KEY_ID"),
        secret_key=options.get("AWS_SECRET_ACCESS_KEY"),
        session_token=options.get("AWS_SESSION_TOKEN"),
        region=options.get("AWS_REGION"),
        endpoint_override=endpoint,
        scheme=scheme,
    )
    return filesystem, uri.split("://", 1)[1]


def _external(uri: str, path: str) -> str:
    """A path inside the filesystem as the URI Spark and the user know it."""
    if _is_remote(uri):
        return f"{uri.split('://', 1)[0]}://{path}"
    return path


def _is_hidden(relative: str) -> bool:
    return any(part.startswith(_HIDDEN_PREFIXES) for part in relative.split("/") if part)


def _walk(filesystem: pafs.FileSystem, root: str) -> Iterator[pafs.FileInfo]:
    import pyarrow.fs as pafs

    # Sorted, so the schema Spark takes (the first file's) and every message are reproducible.
    listing = filesystem.get_file_info(pafs.FileSelector(root, recursive=True))
    for info in sorted(listing, key=lambda i: i.path):
        if info.type == pafs.FileType.File and not _is_hidden(info.path[len(root) :]):
            yield info


def _glob_base(path: str) -> str:
    parts = path.split("/")
    for index, part in enumerate(parts):
        if _GLOB_CHARS & set(part):
            return "/".join(parts[:index]) or "/"
    return path


def _list_files(uri: str, filesystem: pafs.FileSystem, path: str) -> tuple[list[InputFile], str | None]:
    """Data files at ``path`` (a file, a folder or a glob) and the folder partition discovery starts from."""
    import pyarrow.fs as pafs

    if _GLOB_CHARS & set(path):
        base = _glob_base(path)
        if filesystem.get_file_info(base).type != pafs.FileType.Directory:
            raise InputError(f"{uri}: no such file or directory ({_external(uri, base)} does not exist)")
        matched: list[InputFile] = []
        for info in _walk(filesystem, base):
            # A pattern may name files or folders: a file counts when it or one of its folders matches.
            candidates = [info.path, *(str(p) for p in Path(info.path).parents if str(p).startswith(base))]
            if any(fnmatch.fnmatchcase(c, path) for c in candidates):
                matched.append(InputFile(_external(uri, info.path), info.size or 0))
        return matched, _external(uri, base)
    info = filesystem.get_file_info(path)
    if info.type == pafs.FileType.NotFound:
        raise InputError(f"{uri}: no such file or directory")
    if info.type == pafs.FileType.File:
        return [InputFile(_external(uri, path), info.size or 0)], None
    files = [InputFile(_external(uri, i.path), i.size or 0) for i in _walk(filesystem, path)]
    return files, _external(uri, path)


def _footer_schema(filesystem: pafs.FileSystem, uri: str, item: InputFile) -> pa.Schema:
    import pyarrow.parquet as pq

    path = item.path.split("://", 1)[1] if _is_remote(item.path) else item.path
    try:
        with filesystem.open_input_file(path) as handle:
            if item.size < 12:
                raise InputError(f"{item.path}: not a Parquet file (only {item.size} bytes)")
            handle.seek(item.size - 4)
            if handle.read(4) != b"PAR1":
                raise InputError(f"{item.path}: not a Parquet file (no Parquet footer)")
            handle.seek(0)
            return pq.read_schema(handle)
    except InputError:
        raise
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        raise InputError(f"{item.path}: corrupt Parquet file ({str(exc).splitlines()[0]})") from None


def _hive_columns(files: list[InputFile], base: str | None) -> list[str]:
    """Hive partition columns (``name=value`` folders) below ``base``, in folder order."""
    if base is None or not files:
        return []
    relative = files[0].path[len(base) :].strip("/").split("/")[:-1]
    return [part.split("=", 1)[0] for part in relative if "=" in part]


def inspect_input(
    uri: str,
    input_format: InputFormat | None = None,
    *,
    delta_version: int | None = None,
    all_footers: bool = True,
    only_partitions: tuple[str, frozenset[str]] | None = None,
) -> InputSet:
    """List and check what is at ``uri`` without Spark; raises :class:`InputError` naming the path.

    ``input_format`` None: a Delta table when ``uri`` holds a ``_delta_log``, else Parquet.
    ``delta_version`` pins a Delta table to that version (the current one by default).
    ``all_footers`` False reads only the first file's footer (enough for the schema).
    ``only_partitions`` (column, values) keeps the files of those hive partitions only, so a daily
    run neither lists nor opens the footers of other days.
    """
    import pyarrow as pa
    import pyarrow.fs as pafs

    filesystem, path = _filesystem(uri)
    try:
        is_folder = filesystem.get_file_info(path).type == pafs.FileType.Directory
        has_log = is_folder and filesystem.get_file_info(f"{path}/_delta_log").type == pafs.FileType.Directory
    except OSError as exc:
        raise InputError(f"{uri}: cannot be read ({str(exc).splitlines()[0]})") from None
    # A folder with a _delta_log is read through its log even when declared parquet: its raw
    # files include removed ones.
    if input_format == "delta" or has_log:
        return _inspect_delta(uri, delta_version)
    try:
        files, base = _list_files(uri, filesystem, path)
    except OSError as exc:
        raise InputError(f"{uri}: cannot be listed ({str(exc).splitlines()[0]})") from None
    if not files:
        raise InputError(f"{uri}: no Parquet files there" + (" (empty directory)" if is_folder else ""))
    if only_partitions is not None and base is not None:
        column, values = only_partitions
        if column in _hive_columns(files, base):
            wanted = {f"{column}={value}" for value in values}
            files = [f for f in files if wanted & set(f.path[len(base) :].split("/"))]
            if not files:  # no file of those days: still read one, for the schema (it is filtered out)
                files = [min(_list_files(uri, filesystem, path)[0], key=lambda f: f.path)]
    schemas = [_footer_schema(filesystem, uri, item) for item in (files if all_footers else files[:1])]
    partitions = _hive_columns(files, base)
    schema = schemas[0]
    for name in partitions:
        if name not in schema.names:
            schema = schema.append(pa.field(name, pa.string()))
    _check_consistent(files[: len(schemas)], schemas)
    return InputSet(uri, "parquet", tuple(files), schema, base, None, tuple(partitions))


def _check_consistent(files: list[InputFile], schemas: list[pa.Schema]) -> None:
    """Spark reads every file with the first file's schema: another type elsewhere would fail late."""
    first = {f.name: f.type for f in schemas[0]}
    for item, schema in zip(files[1:], schemas[1:], strict=True):
        for column in schema:
            expected = first.get(column.name)
            if expected is not None and _type_family(expected) != _type_family(column.type):
                raise InputError(
                    f"{item.path}: column {column.name!r} is {column.type}, but {files[0].path} has "
                    f"{expected}; rewrite the files with one type"
                )


def _type_family(data_type: pa.DataType) -> str:
    found = skewless_type(data_type)
    return str(data_type) if found is None else semantics.widened(found)


def _inspect_delta(uri: str, version: int | None) -> InputSet:
    from deltalake import DeltaTable
    from deltalake.exceptions import DeltaError, TableNotFoundError

    try:
        table = DeltaTable(uri, version=version, storage_options=storage_options(uri))
        files = table.file_uris()
        version = int(table.version())
        import pyarrow as pa

        schema = pa.schema(table.schema().to_arrow())
        partition_columns = tuple(table.metadata().partition_columns)
        actions = pa.table(table.get_add_actions(flatten=True)).to_pylist()
        sizes = {a["path"]: a["size_bytes"] for a in actions}
    except TableNotFoundError:
        raise InputError(f"{uri}: no Delta table there") from None
    except (DeltaError, OSError) as exc:
        raise InputError(f"{uri}: cannot read the Delta log ({str(exc).splitlines()[0]})") from None
    root = table.table_uri.rstrip("/")
    listed = tuple(InputFile(f, int(sizes.get(f[len(root) + 1 :], 0))) for f in files)
    if not listed:
        raise InputError(f"{uri}: the Delta table has no data files")
    return InputSet(uri, "delta", listed, schema, root, version, partition_columns)


# --- types -----------------------------------------------------------------------------------


def skewless_type(data_type: pa.DataType) -> str | None:
    """The skewless column type an Arrow type reads as (None: not a type features can use).

    Integers that fit 32 bits are int32, other integers int64; float16/float32 are float32,
    float64 and decimals float64 (decimals lose exactness beyond about 15 significant digits, as
    docs/semantics.md says); every timestamp unit is a timestamp; lists of those element types
    (and strings) are arrays. Narrow types feed their wide type (:func:`skewless.semantics.can_feed`).
    """
    import pyarrow as pa
    import pyarrow.types as pat

    if pat.is_boolean(data_type):
        return "bool"
    if pat.is_integer(data_type):
        if data_type in (pa.int8(), pa.int16(), pa.int32(), pa.uint8(), pa.uint16()):
            return "int32"
        return None if data_type == pa.uint64() else "int64"
    if pat.is_float16(data_type) or pat.is_float32(data_type):
        return "float32"
    if pat.is_floating(data_type) or pat.is_decimal(data_type):
        return "float64"
    if pat.is_list(data_type) or pat.is_large_list(data_type):
        element = skewless_type(data_type.value_type)
        exact = element in ("float32", "string") or data_type.value_type in (pa.float64(), pa.int64())
        return semantics.array_of(element) if element is not None and exact else None
    if pat.is_string(data_type) or pat.is_large_string(data_type):
        return "string"
    if pat.is_timestamp(data_type):
        return "timestamp"
    if pat.is_date(data_type):
        return "date"
    return None


def column_types(inputs: InputSet) -> dict[str, str]:
    """Column -> skewless type for every column whose type skewless can use."""
    out: dict[str, str] = {}
    for column in inputs.schema:
        kind = skewless_type(column.type)
        if kind is not None:
            out[column.name] = kind
    for name in inputs.partition_columns:
        out.setdefault(name, "string")
    return out


def source_column_reader(settings: Settings) -> SourceColumnReader:
    """Reads a source's column types for the compiler (``validate``/``plan``/``apply``) without Spark."""

    from skewless.compile.compiler import SourceColumns

    def read(source: Source) -> SourceColumns:
        uri = settings.source_uri(source.path)
        try:
            inputs = inspect_input(uri, source.format, all_footers=False)
        except InputError as exc:
            return SourceColumns(None, f"read from {uri}", f"source {source.name!r} could not be read: {exc}")
        return SourceColumns(column_types(inputs), f"read from {uri}")

    return read


# --- Spark ---------------------------------------------------------------------------------------


def read_input(spark: SparkSession, inputs: InputSet) -> DataFrame:
    """Exactly the inspected files as a Spark frame, columns normalised (see the module docstring)."""
    from pyspark.errors import AnalysisException

    from skewless.offline.delta import delta_tables

    # Spark refuses TIMESTAMP(NANOS) (pandas' and pyarrow's default); read them as longs and let
    # normalise() turn them into timestamps. Set here so any session (a notebook's too) reads them.
    spark.conf.set("spark.sql.legacy.parquet.nanosAsLong", "true")
    try:
        if inputs.format == "delta":
            frame = delta_tables(spark).read_any(inputs.uri, inputs.delta_version)
        elif inputs.base is None:
            frame = spark.read.parquet(inputs.files[0].path)
        else:
            frame = spark.read.option("basePath", inputs.base).parquet(*(f.path for f in inputs.files))
    except AnalysisException as exc:
        raise InputError(f"{inputs.uri}: cannot be read ({str(exc).strip().splitlines()[0]})") from None
    return normalise(frame, inputs.schema)


def _nanos_to_timestamp(name: str) -> Column:
    from pyspark.sql import functions as F

    # Exact integer floor division (a double would lose nanoseconds beyond 2^53): truncation
    # toward the past, so an event never moves later than it happened.
    return F.timestamp_micros(F.expr(f"`{name}` div 1000 - if(`{name}` % 1000 < 0, 1, 0)"))


def normalise(frame: DataFrame, arrow_schema: pa.Schema) -> DataFrame:
    """Widen columns to skewless's types; nanosecond timestamps (read as longs) become timestamps."""
    import pyarrow.types as pat
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    nanos = {f.name for f in arrow_schema if pat.is_timestamp(f.type) and f.type.unit == "ns"}
    columns = []
    changed = False
    for spark_field in frame.schema.fields:
        name, data_type = spark_field.name, spark_field.dataType
        column = F.col(f"`{name}`")
        if name in nanos and isinstance(data_type, T.LongType):
            column = _nanos_to_timestamp(name)
        elif isinstance(data_type, T.TimestampNTZType):
            column = column.cast(T.TimestampType())  # no zone: UTC (the session zone)
        elif isinstance(data_type, (T.ByteType, T.ShortType, T.IntegerType)):
            column = column.cast(T.LongType())
        elif isinstance(data_type, (T.FloatType, T.DecimalType)) and not _is_wide_decimal_key(data_type):
            column = column.cast(T.DoubleType())
        else:
            columns.append(column)
            continue
        changed = True
        columns.append(column.alias(name))
    return frame.select(*columns) if changed else frame


def _is_wide_decimal_key(data_type: object) -> bool:
    """uint64 arrives as decimal(20,0); casting it to double would round ids silently."""
    from pyspark.sql import types as T

    return isinstance(data_type, T.DecimalType) and data_type.scale == 0 and data_type.precision > 18


# --- per-file time ranges (for per-day input fingerprints) -------------------------------------


@dataclass(frozen=True)
class FileStats:
    """What tells which UTC days' events a file may hold (docs/semantics.md, "Late and corrected data")."""

    path: str
    size: int
    modified_ns: int | None
    """Last modification time: a file rewritten in place with the same size still changes it."""
    partition: str | None
    """The file's value of the source's ``partition_column`` (hive folder or Delta partition)."""
    time_range: tuple[int, int] | None
    """Min and max of the timestamp column in UTC microseconds (nanoseconds floored, like the
    reader); None when the footer or log has no usable statistics (the file may hold any day)."""
    no_events: bool = False
    """Every timestamp is null: the reader drops every row, so the file holds no day's events."""


_MICROS_PER_UNIT = {"ms": (1000, 1), "us": (1, 1), "ns": (1, 1000)}


def _to_micros(raw: int, unit: str) -> int:
    multiply, divide = _MICROS_PER_UNIT[unit]
    return raw * multiply // divide  # floor division: nanoseconds truncate toward the past


def file_stats(
    inputs: InputSet, timestamp_column: str, partition_column: str | None = None
) -> tuple[FileStats, ...]:
    """Size, modification time, partition value and timestamp min/max of every inspected file.

    Parquet statistics come from each footer; a Delta source's from its add actions. A string or
    INT96 timestamp, or a footer without statistics, gives ``time_range`` None.
    """
    if inputs.format == "delta":
        return _delta_file_stats(inputs, timestamp_column, partition_column)
    filesystem, _ = _filesystem(inputs.uri)
    out: list[FileStats] = []
    for item in inputs.files:
        path = item.path.split("://", 1)[1] if _is_remote(item.path) else item.path
        partition = None
        if partition_column is not None and inputs.base is not None:
            for part in item.path[len(inputs.base) :].split("/")[:-1]:
                if part.startswith(f"{partition_column}="):
                    partition = part.split("=", 1)[1]
        time_range, no_events = None, False
        try:
            modified = filesystem.get_file_info(path).mtime_ns
            if partition is None:  # a day's folder already says which day: no footer to open
                with filesystem.open_input_file(path) as handle:
                    time_range, no_events = _footer_time_range(handle, timestamp_column)
        except (OSError, ValueError) as exc:
            raise InputError(f"{item.path}: cannot read its footer ({str(exc).splitlines()[0]})") from None
        out.append(FileStats(item.path, item.size, modified, partition, time_range, no_events))
    return tuple(out)


def _footer_time_range(handle: pa.NativeFile, column: str) -> tuple[tuple[int, int] | None, bool]:
    import pyarrow.parquet as pq

    return _metadata_time_range(pq.read_metadata(handle), column)


def _metadata_time_range(metadata: pq.FileMetaData, column: str) -> tuple[tuple[int, int] | None, bool]:
    import pyarrow.types as pat

    arrow_schema = metadata.schema.to_arrow_schema()
    index = next((i for i in range(metadata.num_columns) if metadata.schema.column(i).path == column), None)
    if index is None or column not in arrow_schema.names:
        return None, False
    data_type = arrow_schema.field(column).type
    if not pat.is_timestamp(data_type) or data_type.unit not in _MICROS_PER_UNIT:
        return None, False
    lows: list[int] = []
    highs: list[int] = []
    for group in range(metadata.num_row_groups):
        chunk = metadata.row_group(group)
        stats = chunk.column(index).statistics
        if stats is None or stats.physical_type != "INT64":
            return None, False
        if stats.has_min_max:
            lows.append(_to_micros(int(stats.min_raw), data_type.unit))
            highs.append(_to_micros(int(stats.max_raw), data_type.unit))
        elif chunk.num_rows > (stats.null_count or 0):
            return None, False  # values present but no min/max written
    if not lows:
        return None, True
    return (min(lows), max(highs)), False


def _delta_file_stats(
    inputs: InputSet, timestamp_column: str, partition_column: str | None
) -> tuple[FileStats, ...]:
    import pyarrow as pa
    from deltalake import DeltaTable
    from deltalake.exceptions import DeltaError

    try:
        options = storage_options(inputs.uri)
        table = DeltaTable(inputs.uri, version=inputs.delta_version, storage_options=options)
        actions = pa.table(table.get_add_actions(flatten=True)).to_pylist()
    except (DeltaError, OSError) as exc:
        raise InputError(f"{inputs.uri}: cannot read the Delta log ({str(exc).splitlines()[0]})") from None
    root = table.table_uri.rstrip("/")
    out: list[FileStats] = []
    for action in actions:
        low, high = action.get(f"min.{timestamp_column}"), action.get(f"max.{timestamp_column}")
        nulls, rows = action.get(f"null_count.{timestamp_column}"), action.get("num_records")
        time_range = None
        if isinstance(low, datetime) and isinstance(high, datetime):
            time_range = (_datetime_micros(low), _datetime_micros(high))
        partition = action.get(f"partition.{partition_column}") if partition_column else None
        out.append(
            FileStats(
                f"{root}/{action['path']}",
                int(action["size_bytes"]),
                int(action["modification_time"]) * 1_000_000,
                None if partition is None else str(partition),
                time_range,
                no_events=time_range is None and rows is not None and nulls == rows,
            )
        )
    return tuple(sorted(out, key=lambda f: f.path))


def _datetime_micros(value: datetime) -> int:
    moment = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


@dataclass(frozen=True)
class FooterCounts:
    """Row count, null counts and timestamp range of an input, from its Parquet footers alone."""

    rows: int
    nulls: dict[str, int]
    time_range: tuple[int, int] | None
    """Min and max of the timestamp column in UTC microseconds (None: no non-null value)."""


def footer_counts(inputs: InputSet, timestamp_column: str, columns: Sequence[str]) -> FooterCounts | None:
    """What one pass over the rows would count, read from the Parquet footers (no Spark).

    Parquet statistics are exact: the row count, each column chunk's null count and the
    timestamp's min/max (in the reader's microseconds, docs/inputs.md). None when any file lacks
    one of them (an INT96 or string timestamp, a hive partition column, a Delta input, a writer
    that skips statistics): the caller then counts with Spark.
    """
    import pyarrow.parquet as pq

    from skewless.offline.delta import footer_null_counts

    if inputs.format != "parquet":
        return None
    filesystem, _ = _filesystem(inputs.uri)
    rows, nulls, lows, highs = 0, dict.fromkeys(columns, 0), [], []
    for item in inputs.files:
        path = item.path.split("://", 1)[1] if _is_remote(item.path) else item.path
        try:
            with filesystem.open_input_file(path) as handle:
                metadata = pq.read_metadata(handle)
        except (OSError, ValueError):
            return None
        counted = footer_null_counts(metadata, [*columns, timestamp_column])
        if counted is None:
            return None
        time_range, no_values = _metadata_time_range(metadata, timestamp_column)
        if time_range is None and not no_values and metadata.num_rows:
            return None
        if time_range is not None:
            lows.append(time_range[0])
            highs.append(time_range[1])
        rows += metadata.num_rows
        for column in columns:
            nulls[column] += counted[column]
    return FooterCounts(rows, nulls, (min(lows), max(highs)) if lows else None)
