"""Planning: the deployed manifest vs the new one -> changes, breaking changes, backfills.

Pure functions over data (no I/O): the caller passes the deployed manifest and, when it knows
them, the committed partition ranges of the deployed tables.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal

from pydantic import BaseModel

from skewless.manifest import Manifest, OnDemandSpec, ServiceSpec, ViewSpec

Action = Literal["added", "changed", "removed"]


@dataclass(frozen=True)
class DateRange:
    start: date
    end: date

    def __str__(self) -> str:
        return f"{self.start.isoformat()} .. {self.end.isoformat()}"


@dataclass(frozen=True)
class StaleRange:
    """Committed ``ds`` to recompute because the raw input of ``days`` changed after they were computed."""

    ds: DateRange
    days: tuple[date, ...]
    reasons: tuple[str, ...]
    repair: DateRange
    """``--start``/``--end`` of the ``skewless backfill`` that repairs the range."""

    def describe(self, view: str) -> str:
        changed = ", ".join(d.isoformat() for d in self.days)
        return (
            f"ds {self.ds}: raw input of {changed} ({'; '.join(self.reasons)}); repair: skewless backfill"
            f" {view} --start {self.repair.start.isoformat()} --end {self.repair.end.isoformat()}"
        )


@dataclass(frozen=True)
class Change:
    kind: str
    name: str
    action: Action
    details: tuple[str, ...] = ()


@dataclass(frozen=True)
class Backfill:
    view: str
    table: str
    reason: str
    partitions: DateRange | None
    """Partitions to compute; None when nothing is committed yet (choose the history to build)."""


@dataclass(frozen=True)
class Plan:
    old_hash: str | None
    new_hash: str
    changes: tuple[Change, ...] = ()
    breaking: tuple[str, ...] = ()
    backfills: tuple[Backfill, ...] = ()
    stale: tuple[tuple[str, StaleRange], ...] = ()
    """(view, range) of committed partitions whose raw input changed (docs/semantics.md)."""

    @property
    def has_changes(self) -> bool:
        return bool(self.changes)


def _flat(model: BaseModel | Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten a model into ``dotted.path -> value`` for field-level diffs."""
    data = model.model_dump(mode="json") if isinstance(model, BaseModel) else dict(model)
    out: dict[str, Any] = {}
    for key, value in data.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flat(value, f"{path}."))
        else:
            out[path] = value
    return out


def _field_diff(old: BaseModel, new: BaseModel, exclude: frozenset[str] = frozenset()) -> list[str]:
    before, after = _flat(old), _flat(new)
    return [
        f"{key}: {_show(before.get(key))} -> {_show(after.get(key))}"
        for key in sorted(before.keys() | after.keys())
        if key.split(".")[0] not in exclude and before.get(key) != after.get(key)
    ]


def _show(value: Any) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, list):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_show(v)}" for k, v in value.items()) + "}"
    return str(value)


_VIEW_INTERNAL = frozenset({"features", "content_hash", "source", "expectations", "table", "tiles_table"})


def _view_changes(
    old: ViewSpec, new: ViewSpec, committed: Mapping[str, DateRange]
) -> tuple[list[str], list[str], list[Backfill]]:
    """Field-level details, breaking reasons and backfills for a view present in both manifests."""
    details = _field_diff(old, new, exclude=_VIEW_INTERNAL)
    details += [f"source.{d}" for d in _field_diff(old.source, new.source)]
    if old.expectations != new.expectations:
        details.append("expectations changed")

    old_features = {f.name: f for f in old.features}
    new_features = {f.name: f for f in new.features}
    added = [name for name in new_features if name not in old_features]
    removed = sorted(old_features.keys() - new_features.keys())
    details += [f"feature {name}: removed" for name in removed]
    changed_meaning: list[tuple[str, list[str]]] = []
    for name, feature in new_features.items():
        before = old_features.get(name)
        if before is None:
            details.append(f"feature {name}: added")
            continue
        diff = _field_diff(before, feature, exclude=frozenset({"meaning_hash"}))
        details += [f"feature {name}: {d}" for d in diff]
        if before.meaning_hash != feature.meaning_hash:
            changed_meaning.append((name, diff))

    breaking: list[str] = []
    backfills: list[Backfill] = []
    if new.version < old.version:
        breaking.append(
            f"view {new.name}: version went down ({old.version} -> {new.version}); versions only go up"
        )
        return details, breaking, backfills
    if new.version > old.version:
        # A new version is a new table: every change is allowed, the old table stays as it is.
        details.append(f"new table {new.table} (the v{old.version} table {old.table} is kept)")
        backfills.append(
            Backfill(
                new.name,
                new.table,
                f"version {old.version} -> {new.version}: new table {new.table}"
                f" (the v{old.version} table's committed range is proposed)",
                committed.get(old.table),
            )
        )
        return details, breaking, backfills

    for name in removed:
        breaking.append(
            f"view {new.name} v{new.version}: feature {name} removed (bump the version: the"
            " table's schema would change under its existing partitions)"
        )
    for name, diff in changed_meaning:
        why = "; ".join(diff) or _meaning_context(old, new)
        breaking.append(
            f"view {new.name} v{new.version}: feature {name} changed meaning ({why}) without a version bump"
        )
    if added and not breaking:
        backfills.append(
            Backfill(
                new.name,
                new.table,
                f"feature{'s' if len(added) > 1 else ''} added: {', '.join(added)}",
                committed.get(new.table),
            )
        )
    return details, breaking, backfills


def _on_demand_changes(old: OnDemandSpec, new: OnDemandSpec) -> tuple[list[str], list[str]]:
    """Details and breaking reasons of an on-demand view in both manifests (nothing to backfill:
    its values are computed at request time).

    Its features' meaning includes the function's source hash: changed code without a version
    bump is breaking, like a changed window.
    """
    details = _field_diff(old, new, exclude=frozenset({"features", "content_hash", "source", "source_hash"}))
    if old.source_hash != new.source_hash:
        details.append(f"function code changed (source {old.source_hash[:12]} -> {new.source_hash[:12]})")
    old_features = {f.name: f for f in old.features}
    new_features = {f.name: f for f in new.features}
    removed = sorted(old_features.keys() - new_features.keys())
    details += [f"feature {name}: removed" for name in removed]
    changed: list[str] = []
    for name, feature in new_features.items():
        before = old_features.get(name)
        if before is None:
            details.append(f"feature {name}: added")
            continue
        details += [
            f"feature {name}: {d}" for d in _field_diff(before, feature, exclude=frozenset({"meaning_hash"}))
        ]
        if before.meaning_hash != feature.meaning_hash:
            changed.append(name)
    if new.version < old.version:
        return details, [f"on-demand view {new.name}: version went down ({old.version} -> {new.version})"]
    if new.version > old.version:
        return details, []
    what = "its function's code" if old.source_hash != new.source_hash else "its function, request or inputs"
    breaking = [
        f"on-demand view {new.name} v{new.version}: feature {name} changed meaning ({what} changed)"
        " without a version bump"
        for name in changed
    ]
    breaking += [
        f"on-demand view {new.name} v{new.version}: feature {name} removed (bump the version)"
        for name in removed
    ]
    return details, breaking


def _service_details(old: ServiceSpec, new: ServiceSpec) -> tuple[str, ...]:
    before, after = [str(r) for r in old.features], [str(r) for r in new.features]
    details = [f"feature {ref}: added" for ref in after if ref not in before]
    details += [f"feature {ref}: removed" for ref in before if ref not in after]
    if not details and before != after:
        details.append("feature order changed")
    details += _field_diff(old, new, exclude=frozenset({"features"}))  # description, owner, tags
    return tuple(details)


def _meaning_context(old: ViewSpec, new: ViewSpec) -> str:
    """Why features changed meaning when no feature field did: the view-wide inputs."""
    diff = _field_diff(old, new, exclude=_VIEW_INTERNAL)
    diff += [f"source.{d}" for d in _field_diff(old.source, new.source)]
    return "; ".join(diff) or "its inputs changed"


def plan(
    deployed: Manifest | None,
    new: Manifest,
    committed: Mapping[str, DateRange] | None = None,
    stale: Mapping[str, Sequence[StaleRange]] | None = None,
) -> Plan:
    """Compare ``new`` with the ``deployed`` manifest.

    ``committed`` maps an offline table path (``ViewSpec.table``) to its committed ``ds`` range;
    ``stale`` maps a view to its ranges whose raw input changed (listed as repairs to run).
    """
    committed = committed or {}
    old = deployed or Manifest(entities={}, sources={}, views={}, services={})
    changes: list[Change] = []
    breaking: list[str] = []
    backfills: list[Backfill] = []

    for kind, before, after in (
        ("entity", old.entities, new.entities),
        ("source", old.sources, new.sources),
        ("service", old.services, new.services),
    ):
        for name in sorted(before.keys() | after.keys()):
            if name not in before:
                changes.append(Change(kind, name, "added"))
            elif name not in after:
                changes.append(Change(kind, name, "removed"))
            elif before[name] != after[name]:
                old_obj, new_obj = before[name], after[name]
                diff = (
                    _service_details(old_obj, new_obj)
                    if isinstance(old_obj, ServiceSpec) and isinstance(new_obj, ServiceSpec)
                    else tuple(_field_diff(old_obj, new_obj))
                )
                changes.append(Change(kind, name, "changed", diff))

    for name in sorted(old.views.keys() | new.views.keys()):
        before_view, after_view = old.views.get(name), new.views.get(name)
        if before_view is None:
            assert after_view is not None  # name comes from the union of both key sets
            changes.append(Change("view", name, "added", (f"table {after_view.table}",)))
            backfills.append(Backfill(name, after_view.table, "new view", committed.get(after_view.table)))
        elif after_view is None:
            changes.append(
                Change(
                    "view",
                    name,
                    "removed",
                    (f"table {before_view.table} is kept, no longer updated",),
                )
            )
        elif before_view.content_hash != after_view.content_hash:
            details, reasons, view_backfills = _view_changes(before_view, after_view, committed)
            changes.append(Change("view", name, "changed", tuple(details)))
            breaking += reasons
            backfills += view_backfills

    old_on_demand, new_on_demand = old.on_demand_views, new.on_demand_views
    for name in sorted(old_on_demand.keys() | new_on_demand.keys()):
        before_od, after_od = old_on_demand.get(name), new_on_demand.get(name)
        if before_od is None:
            changes.append(Change("on_demand", name, "added"))
        elif after_od is None:
            changes.append(Change("on_demand", name, "removed"))
        elif before_od.content_hash != after_od.content_hash:
            details, reasons = _on_demand_changes(before_od, after_od)
            changes.append(Change("on_demand", name, "changed", tuple(details)))
            breaking += reasons

    order = {"entity": 0, "source": 1, "view": 2, "on_demand": 3, "service": 4}
    changes.sort(key=lambda c: (order[c.kind], c.name))
    return Plan(
        old_hash=deployed.registry_hash if deployed else None,
        new_hash=new.registry_hash,
        changes=tuple(changes),
        breaking=tuple(breaking),
        backfills=tuple(backfills),
        stale=tuple((name, item) for name in sorted(stale or {}) for item in (stale or {})[name]),
    )
