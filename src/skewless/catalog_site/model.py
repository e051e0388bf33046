"""What the catalog site shows, as plain data: inputs found by I/O -> page models (pure).

:func:`build_site_model` takes everything :mod:`skewless.catalog_site.gather` read (the deployed
manifest, the YAML definitions with their file:line, committed ``ds`` partitions, the statistics
table's rows, the kept validation reports, freshness, the latest partition's values) and returns
the pages to render. No I/O, no clock: ``generated_at`` comes in with the inputs.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Literal

from skewless import semantics
from skewless.freshness import ViewFreshness
from skewless.manifest import EntitySpec, FeatureSpec, Manifest, ServiceSpec, SourceSpec, ViewSpec
from skewless.plan.planner import DateRange

EntryKind = Literal["view", "on_demand", "feature", "service", "entity", "source"]


@dataclass(frozen=True)
class Definition:
    """One YAML document as written: file (relative to the definitions folder), line, text."""

    file: str
    line: int
    text: str
    matches_deployed: bool
    """False when the working tree's definition compiles to something other than the deployed one."""

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True)
class StatsPoint:
    """One ``(ds, feature)`` row of the statistics table (docs/validation.md)."""

    ds: date
    feature: str
    rows: int
    null_rate: float | None
    mean: float | None = None
    min: float | None = None
    max: float | None = None
    p50: float | None = None
    p90: float | None = None
    p99: float | None = None
    psi: float | None = None
    drift_status: str | None = None


@dataclass(frozen=True)
class OnlinePsiPoint:
    """One recorded comparison of a feature's online values with its training statistics
    (``skewless online-drift``, docs/validation.md)."""

    ds: date
    service: str
    psi: float | None
    drift_status: str
    online_values: int


@dataclass(frozen=True)
class ReportEntry:
    """A kept validation report (``<offline_root>/_reports/validation/<view>/``)."""

    start: date
    end: date
    created_at: datetime
    success: bool
    rows: int
    evaluated: int
    failed: int
    link: str
    """Path of the report's copy, relative to the site's root."""


@dataclass(frozen=True)
class SiteInputs:
    manifest: Manifest
    generated_at: datetime
    definitions: Mapping[tuple[str, str], Definition] = field(default_factory=dict)
    """``(kind, name)`` -> definition; kinds as in YAML (entity, source, view, on_demand, service)."""
    committed: Mapping[str, Sequence[date]] = field(default_factory=dict)
    """View -> committed ``ds`` partitions of its table."""
    stats: Mapping[str, Sequence[StatsPoint]] = field(default_factory=dict)
    """View -> its statistics rows."""
    latest_values: Mapping[tuple[str, str], Sequence[Any]] = field(default_factory=dict)
    """``(view, feature)`` -> the values of the latest committed partition (nulls left out)."""
    reports: Mapping[str, Sequence[ReportEntry]] = field(default_factory=dict)
    online_drift: Mapping[tuple[str, str], Sequence[OnlinePsiPoint]] = field(default_factory=dict)
    """``(view, feature)`` -> online-against-training PSI per ``ds`` and service."""
    freshness: Mapping[str, ViewFreshness] = field(default_factory=dict)
    drift_warn: float | None = None
    drift_fail: float | None = None
    problems: Sequence[str] = ()
    """What could not be read (shown on the catalog page instead of failing the build)."""


@dataclass(frozen=True)
class CatalogEntry:
    """One searchable row of the catalog page."""

    kind: EntryKind
    name: str
    title: str
    url: str | None
    owner: str | None
    tags: tuple[str, ...]
    description: str | None
    view: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "title": self.title,
            "url": self.url,
            "owner": self.owner,
            "tags": list(self.tags),
            "description": self.description,
            "view": self.view,
        }


@dataclass(frozen=True)
class Lineage:
    source: str
    entity: str
    view: str
    services: tuple[str, ...]
    on_demand: tuple[str, ...]
    """On-demand views that read a feature of this view."""


@dataclass(frozen=True)
class FeatureRow:
    name: str
    dtype: str
    computed: str
    """``count over 7d``, ``column amount``."""
    owner: str | None
    tags: tuple[str, ...]
    description: str | None
    url: str


@dataclass(frozen=True)
class ViewPage:
    view: ViewSpec
    url: str
    owner: str | None
    tags: tuple[str, ...]
    description: str | None
    definition: Definition | None
    lineage: Lineage
    committed: tuple[DateRange, ...]
    gaps: tuple[DateRange, ...]
    freshness: ViewFreshness | None
    reports: tuple[ReportEntry, ...]
    features: tuple[FeatureRow, ...]


@dataclass(frozen=True)
class FeaturePage:
    view: str
    version: int
    feature: FeatureSpec
    url: str
    view_url: str
    owner: str | None
    owner_inherited: bool
    """True when the owner is the view's (the feature names none)."""
    tags: tuple[str, ...]
    description: str | None
    computed: str
    services: tuple[str, ...]
    series: tuple[StatsPoint, ...]
    numeric: bool
    latest_ds: date | None
    latest_values: tuple[Any, ...]
    online_drift: tuple[OnlinePsiPoint, ...]
    drift_warn: float | None
    drift_fail: float | None


@dataclass(frozen=True)
class SitePages:
    generated_at: datetime
    registry_hash: str
    entries: tuple[CatalogEntry, ...]
    views: tuple[ViewPage, ...]
    features: tuple[FeaturePage, ...]
    problems: tuple[str, ...]


def view_url(name: str) -> str:
    return f"views/{name}.html"


def feature_url(view: str, feature: str) -> str:
    return f"features/{view}.{feature}.html"


def ranges_and_gaps(days: Sequence[date]) -> tuple[tuple[DateRange, ...], tuple[DateRange, ...]]:
    """Committed days -> contiguous ranges, and the missing days between them."""
    ordered = sorted(set(days))
    ranges: list[DateRange] = []
    gaps: list[DateRange] = []
    for day in ordered:
        if ranges and day == ranges[-1].end + timedelta(days=1):
            ranges[-1] = DateRange(ranges[-1].start, day)
            continue
        if ranges:
            gaps.append(DateRange(ranges[-1].end + timedelta(days=1), day - timedelta(days=1)))
        ranges.append(DateRange(day, day))
    return tuple(ranges), tuple(gaps)


def describe_computation(feature: FeatureSpec) -> str:
    if feature.function is not None:
        over = f" of {feature.column}" if feature.column else ""
        window = f" over {feature.window_days}d" if feature.window_days else ""
        return f"{feature.function}{over}{window}"
    if feature.column is not None:
        return f"column {feature.column}"
    return "computed on request"


def _on_demand_inputs(manifest: Manifest) -> dict[str, list[str]]:
    """View -> on-demand views reading one of its features (none when the manifest has none)."""
    readers: dict[str, list[str]] = defaultdict(list)
    for name, spec in sorted(manifest.on_demand_views.items()):
        for view in sorted({item.view for item in spec.inputs}):
            readers[view].append(name)
    return readers


def build_site_model(inputs: SiteInputs) -> SitePages:
    manifest = inputs.manifest
    services_of: dict[tuple[str, str], list[str]] = defaultdict(list)
    services_of_view: dict[str, list[str]] = defaultdict(list)
    for service in sorted(manifest.services.values(), key=lambda s: s.name):
        for ref in service.features:
            services_of[(ref.view, ref.feature)].append(service.name)
            if service.name not in services_of_view[ref.view]:
                services_of_view[ref.view].append(service.name)
    readers = _on_demand_inputs(manifest)

    entries: list[CatalogEntry] = []
    views: list[ViewPage] = []
    features: list[FeaturePage] = []
    for name, view in sorted(manifest.views.items()):
        ranges, gaps = ranges_and_gaps(inputs.committed.get(name, ()))
        stats = sorted(inputs.stats.get(name, ()), key=lambda p: p.ds)
        latest_ds = max(inputs.committed[name]) if inputs.committed.get(name) else None
        rows: list[FeatureRow] = []
        for feature in view.features:
            url = feature_url(name, feature.name)
            owner = feature.owner or view.owner
            tags = tuple(dict.fromkeys((*(feature.tags or ()), *(view.tags or ()))))
            computed = describe_computation(feature)
            rows.append(
                FeatureRow(feature.name, feature.dtype, computed, owner, tags, feature.description, url)
            )
            entries.append(
                CatalogEntry(
                    "feature",
                    feature.name,
                    f"{name}:{feature.name}",
                    url,
                    owner,
                    tags,
                    feature.description,
                    view=name,
                )
            )
            features.append(
                FeaturePage(
                    view=name,
                    version=view.version,
                    feature=feature,
                    url=url,
                    view_url=view_url(name),
                    owner=owner,
                    owner_inherited=feature.owner is None and view.owner is not None,
                    tags=tags,
                    description=feature.description,
                    computed=computed,
                    services=tuple(services_of.get((name, feature.name), ())),
                    series=tuple(p for p in stats if p.feature == feature.name),
                    numeric=feature.dtype in semantics.NUMERIC_DTYPES,
                    latest_ds=latest_ds,
                    latest_values=tuple(inputs.latest_values.get((name, feature.name), ())),
                    online_drift=tuple(
                        sorted(
                            inputs.online_drift.get((name, feature.name), ()), key=lambda p: (p.ds, p.service)
                        )
                    ),
                    drift_warn=inputs.drift_warn,
                    drift_fail=inputs.drift_fail,
                )
            )
        entries.append(
            CatalogEntry(
                "view",
                name,
                name,
                view_url(name),
                view.owner,
                tuple(view.tags or ()),
                view.description,
                view=name,
            )
        )
        views.append(
            ViewPage(
                view=view,
                url=view_url(name),
                owner=view.owner,
                tags=tuple(view.tags or ()),
                description=view.description,
                definition=inputs.definitions.get(("view", name)),
                lineage=Lineage(
                    source=view.source.name,
                    entity=view.entity,
                    view=name,
                    services=tuple(services_of_view.get(name, ())),
                    on_demand=tuple(readers.get(name, ())),
                ),
                committed=ranges,
                gaps=gaps,
                freshness=inputs.freshness.get(name),
                reports=tuple(sorted(inputs.reports.get(name, ()), key=lambda r: r.created_at, reverse=True)),
                features=tuple(rows),
            )
        )
    for name, on_demand in sorted(manifest.on_demand_views.items()):
        entries.append(
            CatalogEntry("on_demand", name, name, None, on_demand.owner, (), on_demand.description)
        )
    others: list[tuple[EntryKind, Mapping[str, EntitySpec | SourceSpec | ServiceSpec]]] = [
        ("service", manifest.services),
        ("entity", manifest.entities),
        ("source", manifest.sources),
    ]
    for kind, objects in others:
        for name, spec in sorted(objects.items()):
            entries.append(
                CatalogEntry(kind, name, name, None, spec.owner, tuple(spec.tags or ()), spec.description)
            )
    return SitePages(
        generated_at=inputs.generated_at,
        registry_hash=manifest.registry_hash,
        entries=tuple(entries),
        views=tuple(views),
        features=tuple(features),
        problems=tuple(inputs.problems),
    )
