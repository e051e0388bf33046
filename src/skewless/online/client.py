"""The serving client: online feature values for entity rows, as the training join would give them.

One ``MGET`` fetches every (entity, view) key of a request, whatever the number of entities and
views. A stored row is served only while ``feature_ts <= now <= feature_ts + ttl`` (both bounds
inclusive), the point-in-time rule of DESIGN.md section 5; Redis's own expiry only reclaims
memory. Missing keys, tombstones and expired values read as null for every feature of the view.

Columns are named like the training join's: ``<feature>``, or ``<view>__<feature>`` for a
feature name requested from two views. Types are the manifest's dtypes: int64 -> int,
float64 -> float (NaN, infinities and -0.0 included), string -> str, bool -> bool, null -> None.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

import msgpack  # type: ignore[import-untyped]

from skewless.errors import EntityError, OnlineStoreError, SkewlessError, UnknownObjectError
from skewless.manifest import FeatureRef, Manifest
from skewless.online.encoding import (
    FORMAT_TOMBSTONE,
    FORMAT_VALUES,
    HEADER,
    PAYLOAD_OFFSET,
    ViewCodec,
    entity_key_part,
    layout_key,
    parse_layout_document,
)
from skewless.online.redis_store import connect, describe_error
from skewless.runtime.settings import Settings

if TYPE_CHECKING:
    import redis


def parse_feature_refs(text: str | Sequence[str | FeatureRef]) -> list[FeatureRef]:
    """``"view:feature,view:feature"`` or a list of ``view:feature`` strings -> references."""
    items = [part.strip() for part in text.split(",")] if isinstance(text, str) else list(text)
    refs = []
    for item in items:
        if isinstance(item, FeatureRef):
            refs.append(item)
            continue
        if not isinstance(item, str):
            raise UnknownObjectError(f"feature reference {item!r} must be a 'view:feature' string")
        view, sep, feature = item.partition(":")
        if not sep or not view or not feature:
            raise UnknownObjectError(f"feature reference {item!r} must look like 'view:feature'")
        refs.append(FeatureRef(view=view, feature=feature))
    return refs


def output_columns(refs: Sequence[FeatureRef]) -> list[str]:
    """``<feature>``, or ``<view>__<feature>`` for a name requested from two or more views."""
    views_of: dict[str, set[str]] = {}
    for ref in refs:
        views_of.setdefault(ref.feature, set()).add(ref.view)
    return [f"{ref.view}__{ref.feature}" if len(views_of[ref.feature]) > 1 else ref.feature for ref in refs]


@dataclass(frozen=True)
class _ViewRead:
    """What one request reads from one view."""

    codec: ViewCodec
    key_names: tuple[str, ...]
    key_dtypes: tuple[str, ...]
    pairs: tuple[tuple[str, int], ...]
    """(output column, index in the view's feature layout) of each requested feature."""


@dataclass(frozen=True)
class FeaturePlan:
    """A resolved feature request: output columns in request order, grouped reads per view."""

    refs: tuple[FeatureRef, ...]
    columns: tuple[str, ...]
    views: tuple[_ViewRead, ...]

    @property
    def key_names(self) -> tuple[str, ...]:
        names: dict[str, None] = {}
        for read in self.views:
            names.update(dict.fromkeys(read.key_names))
        return tuple(names)

    def key_dtype(self, name: str) -> str:
        for read in self.views:
            if name in read.key_names:
                return read.key_dtypes[read.key_names.index(name)]
        raise EntityError(f"{name!r} is not a join key of the requested views")


def resolve(
    manifest: Manifest,
    features: str | Sequence[str | FeatureRef] | None = None,
    service: str | None = None,
) -> FeaturePlan:
    """Check a request's features against the registry and plan its reads."""
    if (features is None) == (service is None):
        raise SkewlessError("give either features or a service, not both and not neither")
    if service is not None:
        refs = list(manifest.service(service).features)
    else:
        assert features is not None  # checked just above
        refs = parse_feature_refs(features)
    refs = list(dict.fromkeys(refs))  # a feature asked twice is served once
    if not refs:
        raise UnknownObjectError("no features requested")
    columns = output_columns(refs)
    by_view: dict[str, list[tuple[str, int]]] = {}
    for ref, column in zip(refs, columns, strict=True):
        view = manifest.view(ref.view)
        view.feature(ref.feature)  # raises naming the view and the feature
        by_view.setdefault(ref.view, []).append((column, view.feature_names.index(ref.feature)))
    reads = []
    for name, pairs in by_view.items():
        view = manifest.view(name)
        reads.append(
            _ViewRead(ViewCodec(view), view.key_names, tuple(k.dtype for k in view.join_keys), tuple(pairs))
        )
    return FeaturePlan(tuple(refs), tuple(columns), tuple(reads))


def now_micros(now: datetime | None) -> int:
    if now is None:
        return time.time_ns() // 1000
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    delta = now - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


class OnlineClient:
    """Reads online features for the views of ``manifest`` from the Redis at ``settings.redis_url``."""

    def __init__(self, settings: Settings, manifest: Manifest, *, redis_client: redis.Redis | None = None):
        self.manifest = manifest
        self._url = settings.redis_url
        self._redis = redis_client if redis_client is not None else connect(self._url)
        self._plans: dict[tuple[Any, ...], FeaturePlan] = {}
        self._layouts: dict[str, tuple[tuple[str, str], ...]] = {}

    def close(self) -> None:
        self._redis.close()

    def __enter__(self) -> OnlineClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def ping(self) -> None:
        """Raises :class:`OnlineStoreError` when Redis does not answer."""
        import redis

        try:
            self._redis.ping()
        except redis.RedisError as exc:
            raise OnlineStoreError(describe_error(exc, self._url)) from None

    def plan(
        self, features: str | Sequence[str | FeatureRef] | None = None, service: str | None = None
    ) -> FeaturePlan:
        cache_key = (service,) if service is not None else (None, *self._hashable(features))
        plan = self._plans.get(cache_key)
        if plan is None:
            plan = resolve(self.manifest, features, service)
            if len(self._plans) < 1024:
                self._plans[cache_key] = plan
        return plan

    @staticmethod
    def _hashable(features: Any) -> tuple[Any, ...]:
        if isinstance(features, str):
            return (features,)
        try:
            return tuple(features)
        except TypeError:
            return (repr(features),)

    def get_online_features(
        self,
        entity_rows: Sequence[Mapping[str, Any]],
        features: str | Sequence[str | FeatureRef] | None = None,
        service: str | None = None,
        now: datetime | None = None,
    ) -> list[dict[str, Any]]:
        """One dict per entity row: the row's own fields, then the feature columns in request order."""
        plan = self.plan(features, service)
        now_us = now_micros(now)
        keys = self._keys(plan, entity_rows)
        if not keys:
            return []
        raws = self._mget(keys)
        empty = dict.fromkeys(plan.columns)
        results = []
        position = 0
        for row in entity_rows:
            out = dict(row)
            out.update(empty)
            for read in plan.views:
                raw = raws[position]
                position += 1
                if raw is None:
                    continue
                fmt, feature_ts, _ = HEADER.unpack_from(raw)
                if not feature_ts <= now_us <= feature_ts + read.codec.ttl_us:
                    continue
                if fmt == FORMAT_TOMBSTONE:
                    continue
                if fmt != FORMAT_VALUES:
                    raise OnlineStoreError(f"{read.codec.view_name}: stored value of unknown format {fmt}")
                values = msgpack.unpackb(raw[PAYLOAD_OFFSET:])
                if raw[HEADER.size : PAYLOAD_OFFSET] != read.codec.layout_id:
                    values = self._remap(read.codec, raw[HEADER.size : PAYLOAD_OFFSET], values)
                for column, index in read.pairs:
                    out[column] = values[index]
            results.append(out)
        return results

    def _keys(self, plan: FeaturePlan, entity_rows: Sequence[Mapping[str, Any]]) -> list[str]:
        columns = set(plan.columns)
        keys = []
        for index, row in enumerate(entity_rows):
            where = f"entity row {index}"
            if not isinstance(row, Mapping):
                raise EntityError(f"{where}: expected an object of join keys, got {type(row).__name__}")
            clash = columns.intersection(row)
            if clash:
                raise EntityError(f"{where}: field {sorted(clash)[0]!r} clashes with a feature column")
            for read in plan.views:
                parts = []
                for name, dtype in zip(read.key_names, read.key_dtypes, strict=True):
                    if name not in row:
                        raise EntityError(
                            f"{where}: missing join key {name!r} (needed by view {read.codec.view_name!r})"
                        )
                    parts.append(entity_key_part(name, dtype, row[name], where))
                keys.append(read.codec.prefix + ":".join(parts))
        return keys

    def _mget(self, keys: list[str]) -> list[bytes | None]:
        import redis

        try:
            return cast("list[bytes | None]", self._redis.mget(keys))
        except redis.RedisError as exc:
            raise OnlineStoreError(describe_error(exc, self._url)) from None

    def _remap(self, codec: ViewCodec, stored_layout: bytes, values: list[Any]) -> list[Any]:
        """Values written under another feature layout of the same view version, in today's order."""
        import redis

        name = layout_key(codec.view_name, codec.version, stored_layout)
        layout = self._layouts.get(name)
        if layout is None:
            try:
                raw = self._redis.get(name)
            except redis.RedisError as exc:
                raise OnlineStoreError(describe_error(exc, self._url)) from None
            if raw is None:
                raise OnlineStoreError(
                    f"{codec.view_name}: a stored value refers to feature layout {stored_layout.hex()}, "
                    f"whose document {name!r} is missing from Redis; re-materialize the view"
                )
            layout = parse_layout_document(cast(bytes, raw))
            self._layouts[name] = layout
        stored = {feature: (index, dtype) for index, (feature, dtype) in enumerate(layout)}
        remapped: list[Any] = []
        for feature, dtype in codec.features:
            found = stored.get(feature)
            remapped.append(
                values[found[0]]
                if found is not None and found[1] == dtype and found[0] < len(values)
                else None
            )
        return remapped


def parse_entity(text: str, plan: FeaturePlan) -> dict[str, Any]:
    """An entity given on the command line: ``key=value[,key=value]`` or a JSON object.

    ``key=value`` values take the join key's dtype (int64 keys must be decimal integers); a
    JSON object keeps its own types (use it for string keys holding ``,`` or ``=``).
    """
    text = text.strip()
    if text.startswith("{"):
        import json

        try:
            parsed = json.loads(text)
        except json.JSONDecodeError as exc:
            raise EntityError(f"entity {text!r} is not a valid JSON object: {exc}") from None
        if not isinstance(parsed, dict):
            raise EntityError(f"entity {text!r} is not a JSON object")
        return parsed
    entity: dict[str, Any] = {}
    for pair in text.split(","):
        name, sep, value = pair.partition("=")
        name = name.strip()
        if not sep or not name:
            raise EntityError(f"entity {text!r}: expected key=value[,key=value...], got {pair!r}")
        if name not in plan.key_names:
            raise EntityError(
                f"entity {text!r}: {name!r} is not a join key of the requested views "
                f"(join keys: {', '.join(plan.key_names)})"
            )
        if name in entity:
            raise EntityError(f"entity {text!r}: key {name!r} given twice")
        if plan.key_dtype(name) == "int64":
            try:
                entity[name] = int(value.strip())
            except ValueError:
                raise EntityError(
                    f"entity {text!r}: key {name!r} must be an integer, got {value!r}"
                ) from None
        else:
            entity[name] = value
    return entity
