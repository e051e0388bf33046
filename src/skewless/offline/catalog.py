"""What the offline store holds, read from Delta logs without Spark (cheap enough for ``plan``)."""

from __future__ import annotations

from datetime import date

from deltalake import DeltaTable

from skewless.manifest import Manifest
from skewless.offline.storage_options import storage_options
from skewless.plan.planner import DateRange
from skewless.runtime.settings import Settings


def committed_partitions(table_uri: str, version: int | None = None) -> list[date]:
    """Sorted ``ds`` values committed in the table (empty when the table does not exist)."""
    options = storage_options(table_uri)
    if not DeltaTable.is_deltatable(table_uri, storage_options=options):
        return []
    table = DeltaTable(table_uri, version=version, storage_options=options)
    return sorted({date.fromisoformat(p["ds"]) for p in table.partitions()})


def committed_ranges(settings: Settings, manifest: Manifest) -> dict[str, DateRange]:
    """Committed ``ds`` range of every deployed view table that has data, keyed by table path."""
    ranges: dict[str, DateRange] = {}
    for view in manifest.views.values():
        partitions = committed_partitions(settings.table_uri(view.table))
        if partitions:
            ranges[view.table] = DateRange(partitions[0], partitions[-1])
    return ranges
