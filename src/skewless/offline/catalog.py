"""What the offline store holds, read from Delta logs without Spark (cheap enough for ``plan``)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date

from deltalake import DeltaTable
from deltalake.exceptions import DeltaError

from skewless.errors import TableError
from skewless.manifest import Manifest
from skewless.offline.storage_options import storage_options
from skewless.plan.planner import DateRange
from skewless.runtime.settings import Settings


def committed_partitions(table_uri: str, version: int | None = None) -> list[date]:
    """Sorted ``ds`` values committed in the table (empty when the table does not exist).

    Raises :class:`TableError` when the table cannot be read (unreachable storage, a missing
    version, a ``ds`` partition value that is not a date).
    """
    options = storage_options(table_uri)
    try:
        if not DeltaTable.is_deltatable(table_uri, storage_options=options):
            return []
        table = DeltaTable(table_uri, version=version, storage_options=options)
        partition_columns = table.metadata().partition_columns
        partitions = table.partitions()
    except (DeltaError, OSError) as exc:
        at = "" if version is None else f" at version {version}"
        raise TableError(f"cannot read the Delta log of {table_uri}{at}: {exc}") from exc
    if "ds" not in partition_columns:
        raise TableError(
            f"{table_uri} is not partitioned by ds (partition columns: {partition_columns or 'none'})"
        )
    days: set[date] = set()
    for partition in partitions:
        value = partition.get("ds")
        if value is None:  # a null ds holds no day's values; nothing to plan for it
            continue
        try:
            days.add(date.fromisoformat(value))
        except ValueError:
            raise TableError(f"{table_uri}: partition ds={value!r} is not a yyyy-mm-dd date") from None
    return sorted(days)


def is_delta_table(uri: str) -> bool:
    try:
        return bool(DeltaTable.is_deltatable(uri, storage_options=storage_options(uri)))
    except OSError:  # delta-rs raises "Not a directory" for a file instead of answering False
        return False


def table_version(table_uri: str) -> int | None:
    """The table's current Delta version, None when there is no table."""
    options = storage_options(table_uri)
    if not DeltaTable.is_deltatable(table_uri, storage_options=options):
        return None
    return int(DeltaTable(table_uri, storage_options=options).version())


def committed_ranges(settings: Settings, *manifests: Manifest) -> dict[str, DateRange]:
    """Committed ``ds`` range of every view table of ``manifests`` that has data, keyed by table path."""
    ranges: dict[str, DateRange] = {}
    for table in _tables(manifests):
        partitions = committed_partitions(settings.table_uri(table))
        if partitions:
            ranges[table] = DateRange(partitions[0], partitions[-1])
    return ranges


def _tables(manifests: Iterable[Manifest]) -> list[str]:
    return sorted({view.table for manifest in manifests for view in manifest.views.values()})
