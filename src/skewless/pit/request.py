"""Which features a training set (or an online read) asks for, and what its columns are called.

Pure: shared by the training join and the online client so both name columns identically.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from skewless.errors import SkewlessError, UnknownObjectError
from skewless.manifest import FeatureRef, FeatureSpec, Manifest, ViewSpec


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
