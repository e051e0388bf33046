"""Which features a training set (or an online read) asks for, and what its columns are called.

Pure: shared by the training join and the online client so both name columns identically.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from skewless.errors import SkewlessError, UnknownObjectError
from skewless.manifest import FeatureRef, FeatureSpec, Manifest, OnDemandInput, OnDemandSpec, ViewSpec

HIDDEN_PREFIX = "__sk_in__"
"""Columns of stored features read only as inputs of on-demand views (dropped from the output)."""


@dataclass(frozen=True)
class OutputFeature:
    feature: FeatureSpec
    column: str
    """``<feature>``, or ``<view>__<feature>`` when two requested views share the name."""


@dataclass(frozen=True)
class ViewRequest:
    view: ViewSpec
    features: tuple[OutputFeature, ...]


def parse_feature_refs(text: str | Iterable[str | FeatureRef]) -> list[FeatureRef]:
    """``"view:feature,view:feature"``, or a list of such strings or references -> references."""
    items = text.split(",") if isinstance(text, str) else list(text)
    refs: list[FeatureRef] = []
    for raw in items:
        if isinstance(raw, FeatureRef):
            refs.append(raw)
            continue
        if not isinstance(raw, str):
            raise SkewlessError(f"expected 'view:feature', got {raw!r}")
        item = raw.strip()
        view, sep, feature = item.partition(":")
        if not sep or not view or not feature:
            raise SkewlessError(f"expected 'view:feature', got {item!r}")
        refs.append(FeatureRef(view=view, feature=feature))
    return refs


def resolve(
    manifest: Manifest,
    *,
    features: str | Iterable[str | FeatureRef] | None = None,
    service: str | None = None,
) -> list[ViewRequest]:
    """Resolve a service or feature list into per-view requests with output column names."""
    if (features is None) == (service is None):
        raise SkewlessError("give exactly one of a feature service or a list of features")
    refs = (
        list(manifest.service(service).features)
        if service is not None
        else parse_feature_refs(features or [])
    )
    if not refs:
        raise SkewlessError("no features requested")
    duplicates = [str(r) for r, n in Counter(refs).items() if n > 1]
    if duplicates:
        raise SkewlessError(f"feature requested twice: {', '.join(duplicates)}")

    by_view: dict[str, list[FeatureSpec]] = {}
    for ref in refs:
        view = manifest.view(ref.view)
        if ref.feature not in view.feature_names:
            raise UnknownObjectError(
                f"view {view.name!r} has no feature {ref.feature!r} (has: {', '.join(view.feature_names)})"
            )
        by_view.setdefault(view.name, []).append(view.feature(ref.feature))

    owners = Counter(f.name for specs in by_view.values() for f in specs)
    return [
        ViewRequest(
            manifest.view(name),
            tuple(OutputFeature(f, f"{name}__{f.name}" if owners[f.name] > 1 else f.name) for f in specs),
        )
        for name, specs in by_view.items()
    ]


def output_columns(requests: Sequence[ViewRequest]) -> list[str]:
    return [f.column for r in requests for f in r.features]


@dataclass(frozen=True)
class OnDemandRequest:
    """An on-demand view's requested features, and where its inputs are in the joined rows."""

    spec: OnDemandSpec
    features: tuple[OutputFeature, ...]
    inputs: tuple[tuple[OnDemandInput, str], ...]
    """Each input and the joined column holding it (a requested feature's column, or a hidden one)."""


@dataclass(frozen=True)
class FeatureRequest:
    """A request for stored and on-demand features (docs/semantics.md, "On-demand").

    ``views`` are the stored reads: the requested features plus, under hidden column names, the
    inputs of the requested on-demand views. ``columns`` are the output columns in request order
    (grouped per view, as the training join and the online client both return them).
    """

    views: tuple[ViewRequest, ...]
    on_demand: tuple[OnDemandRequest, ...]
    columns: tuple[str, ...]
    refs: tuple[str, ...] = ()
    """The requested ``view:feature`` references, in column order."""

    @classmethod
    def of_views(cls, requests: Sequence[ViewRequest]) -> FeatureRequest:
        """Stored features only (as :func:`resolve` gives them)."""
        return cls(
            tuple(requests),
            (),
            tuple(output_columns(requests)),
            tuple(f"{r.view.name}:{f.feature.name}" for r in requests for f in r.features),
        )

    @property
    def hidden_columns(self) -> tuple[str, ...]:
        return tuple(f.column for r in self.views for f in r.features if f.column.startswith(HIDDEN_PREFIX))

    @property
    def request_fields(self) -> dict[str, str]:
        """Request fields the on-demand views need (``request_ts`` included), with their dtypes."""
        fields: dict[str, str] = {}
        for od in self.on_demand:
            fields.update({r.name: r.dtype for r in od.spec.request})
        return fields


def resolve_features(
    manifest: Manifest,
    *,
    features: str | Iterable[str | FeatureRef] | None = None,
    service: str | None = None,
) -> FeatureRequest:
    """Resolve stored and on-demand features; names follow :func:`resolve` (``view__feature`` on a clash)."""
    if (features is None) == (service is None):
        raise SkewlessError("give exactly one of a feature service or a list of features")
    refs = (
        list(manifest.service(service).features)
        if service is not None
        else parse_feature_refs(features or [])
    )
    if not refs:
        raise SkewlessError("no features requested")
    duplicates = [str(r) for r, n in Counter(refs).items() if n > 1]
    if duplicates:
        raise SkewlessError(f"feature requested twice: {', '.join(duplicates)}")
    on_demand = manifest.on_demand_views
    groups: dict[str, list[FeatureSpec]] = {}
    for ref in refs:
        owner: ViewSpec | OnDemandSpec = (
            on_demand[ref.view] if ref.view in on_demand else manifest.view(ref.view)
        )
        if ref.feature not in owner.feature_names:
            raise UnknownObjectError(
                f"view {owner.name!r} has no feature {ref.feature!r} (has: {', '.join(owner.feature_names)})"
            )
        groups.setdefault(owner.name, []).append(owner.feature(ref.feature))
    owners = Counter(f.name for specs in groups.values() for f in specs)

    def output(group: str, feature: FeatureSpec) -> OutputFeature:
        return OutputFeature(
            feature, f"{group}__{feature.name}" if owners[feature.name] > 1 else feature.name
        )

    stored: dict[str, list[OutputFeature]] = {}
    requested: list[OnDemandRequest] = []
    columns: list[str] = []
    names: list[str] = []
    for group, specs in groups.items():
        outputs = [output(group, f) for f in specs]
        columns += [o.column for o in outputs]
        names += [f"{group}:{f.name}" for f in specs]
        if group not in on_demand:
            stored.setdefault(group, []).extend(outputs)
    for group, specs in groups.items():
        if group not in on_demand:
            continue
        inputs: list[tuple[OnDemandInput, str]] = []
        for one in on_demand[group].inputs:
            view = manifest.view(one.view)
            reads = stored.setdefault(one.view, [])
            found = next((o.column for o in reads if o.feature.name == one.feature), None)
            if found is None:
                found = f"{HIDDEN_PREFIX}{one.view}__{one.feature}"
                reads.append(OutputFeature(view.feature(one.feature), found))
            inputs.append((one, found))
        requested.append(
            OnDemandRequest(on_demand[group], tuple(output(group, f) for f in specs), tuple(inputs))
        )
    views = tuple(ViewRequest(manifest.view(name), tuple(outs)) for name, outs in stored.items())
    return FeatureRequest(views, tuple(requested), tuple(columns), tuple(names))
