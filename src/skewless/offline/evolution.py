"""Added features: the columns ``apply`` adds to a view's offline tables (docs/feature-definitions.md).

A feature added to a view without a version bump gets a nullable column in the view's table and
the partial-aggregate columns it needs in the tiles table. Files committed before it lack those
columns, and every skewless read gives null for them until the backfill ``plan`` listed rewrites
the files; a run's windows never read a tile day that lacks a column they need (see
:func:`skewless.offline.aggregation.incomplete_tile_days`).
"""

from __future__ import annotations

from dataclasses import dataclass

from skewless.manifest import Manifest, ViewSpec
from skewless.offline.delta import CommitInfo, add_columns
from skewless.offline.schemas import tiles_schema, view_schema
from skewless.runtime.settings import Settings

OPERATION = "add feature columns"


@dataclass(frozen=True)
class AddedColumns:
    view: str
    table: str
    columns: tuple[str, ...]


def grown_views(deployed: Manifest | None, new: Manifest) -> list[ViewSpec]:
    """Views of ``new`` that keep their deployed version and gained features (pure).

    A new version writes a new table, created with every column by its first run.
    """
    if deployed is None:
        return []
    out = []
    for name, view in sorted(new.views.items()):
        before = deployed.views.get(name)
        if before is None or before.version != view.version:
            continue
        if set(view.feature_names) - set(before.feature_names):
            out.append(view)
    return out


def add_feature_columns(settings: Settings, deployed: Manifest | None, new: Manifest) -> list[AddedColumns]:
    """Add the columns of features ``new`` adds over ``deployed`` to the existing tables."""
    out: list[AddedColumns] = []
    for view in grown_views(deployed, new):
        info = CommitInfo(operation=OPERATION, view=view.name, registry_hash=new.registry_hash)
        tables = [(view.table, view_schema(view))]
        if view.tiles_table is not None:
            tables.append((view.tiles_table, tiles_schema(view)))
        for table, schema in tables:
            added = add_columns(settings.table_uri(table), schema, info)
            if added:
                out.append(AddedColumns(view.name, table, added))
    return out
