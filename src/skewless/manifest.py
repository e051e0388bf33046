"""The compiled registry: the one JSON document every job, DAG and client reads.

It is fully resolved (a view carries its entity's keys and its source), so nothing downstream
needs the YAML tree. Serialisation is canonical (sorted keys, fixed indentation) so the same
tree always yields byte-identical output.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, SerializerFunctionWrapHandler, ValidationError, model_serializer

from skewless.errors import RegistryError, UnknownObjectError

SCHEMA_VERSION = 1
RESERVED_COLUMNS = frozenset({"ds", "feature_ts", "created_ts"})


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    omit_when_none: ClassVar[frozenset[str]] = frozenset()
    """Optional fields left out of the JSON while unset, so that adding one changes no hash of an
    existing registry (content hashes, ``registry_hash`` and the history files keyed by it)."""

    @model_serializer(mode="wrap")
    def _omit_unset(self, handler: SerializerFunctionWrapHandler) -> Any:
        body = handler(self)
        if self.omit_when_none and isinstance(body, dict):
            for name in self.omit_when_none:
                if name in body and body[name] is None:
                    del body[name]
        return body


CATALOG_FIELDS = frozenset({"description", "owner", "tags"})
"""Catalog fields (docs/catalog.md) carried for people and the docs site: never part of a feature's
``meaning_hash``; left out of the JSON while unset, so that registries without them keep their hashes."""


DTypeName = Literal[
    "int64",
    "int32",
    "float64",
    "float32",
    "string",
    "bool",
    "timestamp",
    "date",
    "array<float32>",
    "array<float64>",
    "array<int64>",
    "array<string>",
]
"""A feature's dtype (the table is skewless.semantics.DTYPES)."""


class JoinKey(Frozen):
    name: str
    dtype: Literal["string", "int64"]


class SourceSpec(Frozen):
    name: str
    path: str
    format: Literal["parquet", "delta"]
    timestamp: str
    timestamp_format: str | None = None
    created_timestamp: str | None = None
    partition_column: str | None = None
    columns: dict[str, str] | None = None
    description: str | None = None
    owner: str | None = None
    tags: tuple[str, ...] | None = None

    omit_when_none: ClassVar[frozenset[str]] = CATALOG_FIELDS


class FeatureSpec(Frozen):
    name: str
    dtype: DTypeName
    column: str | None = None
    function: str | None = None
    """Aggregation function; None for snapshot features."""
    window_days: int | None = None
    length: int | None = None
    """Array features: the declared length of every non-null value (checked when rows are written)."""
    k: int | None = None
    """last_k, top_k, top_k_counts: how many values."""
    percentiles: tuple[float, ...] | None = None
    """approx_percentile: the levels; one level gives a float64, several an array<float64>."""
    meaning_hash: str
    """Hash of everything that decides this feature's values; a change needs a version bump."""
    description: str | None = None
    owner: str | None = None
    tags: tuple[str, ...] | None = None

    omit_when_none: ClassVar[frozenset[str]] = frozenset({"length", "k", "percentiles"}) | CATALOG_FIELDS


class ExpectationSpec(Frozen):
    feature: str
    between: tuple[float | None, float | None] | None = None
    not_null: bool | None = None
    max_null_fraction: float | None = None


class ViewSpec(Frozen):
    name: str
    version: int
    kind: Literal["aggregation", "snapshot"]
    entity: str
    join_keys: tuple[JoinKey, ...]
    source: SourceSpec
    filter: str | None
    ttl_seconds: int
    availability_lag_seconds: int
    features: tuple[FeatureSpec, ...]
    expectations: tuple[ExpectationSpec, ...]
    table: str
    """Offline table path, relative to ``offline_root``."""
    tiles_table: str | None
    """Daily partial aggregates (aggregation views only), relative to ``offline_root``."""
    freshness_seconds: int | None = None
    """Freshness SLA (docs/semantics.md, "Freshness"); not part of any feature's meaning."""
    description: str | None = None
    owner: str | None = None
    tags: tuple[str, ...] | None = None
    content_hash: str

    omit_when_none: ClassVar[frozenset[str]] = frozenset({"freshness_seconds"}) | CATALOG_FIELDS

    @property
    def key_names(self) -> tuple[str, ...]:
        return tuple(k.name for k in self.join_keys)

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features)

    @property
    def max_window_days(self) -> int:
        return max((f.window_days or 0) for f in self.features)

    def feature(self, name: str) -> FeatureSpec:
        for feature in self.features:
            if feature.name == name:
                return feature
        raise UnknownObjectError(f"view {self.name!r} has no feature {name!r}")


class EntitySpec(Frozen):
    name: str
    join_keys: tuple[JoinKey, ...]
    description: str | None = None
    owner: str | None = None
    tags: tuple[str, ...] | None = None

    omit_when_none: ClassVar[frozenset[str]] = CATALOG_FIELDS


class FeatureRef(Frozen):
    view: str
    feature: str

    def __str__(self) -> str:
        return f"{self.view}:{self.feature}"


class ServiceSpec(Frozen):
    name: str
    features: tuple[FeatureRef, ...]
    description: str | None = None
    owner: str | None = None
    tags: tuple[str, ...] | None = None

    omit_when_none: ClassVar[frozenset[str]] = CATALOG_FIELDS


class RequestField(Frozen):
    name: str
    dtype: str


class OnDemandInput(Frozen):
    """A stored feature an on-demand function reads, and its column name in the function's frame."""

    view: str
    feature: str
    column: str
    """``<feature>``, or ``<view>__<feature>`` when two inputs share the feature name."""
    dtype: str


class OnDemandSpec(Frozen):
    """An on-demand (request-time) view: one Python function over request fields and stored features.

    ``source`` is the module's code when it lives under feature_defs/ (the registry carries it, so
    every job, server and rebuild runs exactly the applied code); None for an installed package,
    which is imported by name and checked against ``source_hash``.
    """

    name: str
    version: int
    function: str
    """``module:function`` as written in the YAML."""
    source: str | None
    source_hash: str
    request: tuple[RequestField, ...]
    inputs: tuple[OnDemandInput, ...]
    features: tuple[FeatureSpec, ...]
    description: str | None = None
    owner: str | None = None
    tags: tuple[str, ...] | None = None
    content_hash: str

    omit_when_none: ClassVar[frozenset[str]] = CATALOG_FIELDS

    @property
    def module_name(self) -> str:
        return self.function.partition(":")[0]

    @property
    def function_name(self) -> str:
        return self.function.partition(":")[2]

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features)

    def feature(self, name: str) -> FeatureSpec:
        for feature in self.features:
            if feature.name == name:
                return feature
        raise UnknownObjectError(f"on-demand view {self.name!r} has no feature {name!r}")


class Manifest(Frozen):
    schema_version: int = SCHEMA_VERSION
    entities: dict[str, EntitySpec]
    sources: dict[str, SourceSpec]
    views: dict[str, ViewSpec]
    services: dict[str, ServiceSpec]
    on_demand: dict[str, OnDemandSpec] | None = None
    """On-demand views; None when there are none (left out of the JSON: older registries keep
    their hash). Read them through :attr:`on_demand_views`."""

    omit_when_none: ClassVar[frozenset[str]] = frozenset({"on_demand"})

    @property
    def on_demand_views(self) -> dict[str, OnDemandSpec]:
        return self.on_demand or {}

    def on_demand_view(self, name: str) -> OnDemandSpec:
        try:
            return self.on_demand_views[name]
        except KeyError:
            known = ", ".join(sorted(self.on_demand_views)) or "none"
            raise UnknownObjectError(f"unknown on-demand view {name!r} (known: {known})") from None

    def view(self, name: str) -> ViewSpec:
        try:
            return self.views[name]
        except KeyError:
            known = ", ".join(sorted(self.views)) or "none"
            raise UnknownObjectError(f"unknown view {name!r} (known: {known})") from None

    def service(self, name: str) -> ServiceSpec:
        try:
            return self.services[name]
        except KeyError:
            known = ", ".join(sorted(self.services)) or "none"
            raise UnknownObjectError(f"unknown service {name!r} (known: {known})") from None

    @property
    def registry_hash(self) -> str:
        return sha256_of(self.model_dump(mode="json"))

    def to_json(self) -> str:
        body = self.model_dump(mode="json")
        body["registry_hash"] = sha256_of(body)
        return canonical_json(body)

    @classmethod
    def from_json(cls, text: str, origin: str) -> Manifest:
        try:
            body = json.loads(text)
        except json.JSONDecodeError as exc:
            raise RegistryError(f"{origin}: not a registry (invalid JSON: {exc})") from None
        if not isinstance(body, dict):
            raise RegistryError(f"{origin}: not a registry")
        if body.get("schema_version") != SCHEMA_VERSION:
            raise RegistryError(
                f"{origin}: registry schema version {body.get('schema_version')!r} is not "
                f"{SCHEMA_VERSION}; upgrade skewless or re-apply the registry"
            )
        stated = body.pop("registry_hash", None)
        try:
            manifest = cls.model_validate(body)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(map(str, first["loc"])) or "(top level)"
            raise RegistryError(
                f"{origin}: not a valid registry ({exc.error_count()} problem(s); first at {where}:"
                f" {first['msg']})"
            ) from None
        if stated is not None and stated != manifest.registry_hash:
            raise RegistryError(f"{origin}: registry hash mismatch (file edited by hand?)")
        return manifest


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def sha256_of(value: Any) -> str:
    encoded = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(encoded.encode("utf-8")).hexdigest()
