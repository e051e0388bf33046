"""The serving client: online feature values for entity rows, as the training join would give them.

A request is one round trip whatever the number of entities and views: one ``MGET`` per view,
pipelined. A stored row is served only while ``feature_ts <= now <= feature_ts + ttl`` (both bounds
inclusive, :func:`skewless.semantics.live_window`: the point-in-time rule of docs/semantics.md);
Redis's own expiry only reclaims memory. Missing keys, tombstones and expired values read as
null for every feature of the view. The store holds only the latest row per entity: when it is
later than ``now``, the answer at ``now`` was an older row that is gone, and the request is
refused with :class:`~skewless.errors.OnlineTimeRefused` rather than answered null.

Columns are named like the training join's: ``<feature>``, or ``<view>__<feature>`` for a
feature name requested from two views. Types are the manifest's dtypes: int64 -> int,
float64 -> float (NaN, infinities and -0.0 included), string -> str, bool -> bool, null -> None;
int32 -> int, float32 -> float (the float32 value exactly), timestamp -> UTC datetime, date -> date,
array<...> -> list.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from operator import add, itemgetter
from typing import TYPE_CHECKING, Any

import msgpack  # type: ignore[import-untyped]

from skewless import semantics
from skewless.errors import EntityError, OnlineStoreError, OnlineTimeRefused
from skewless.manifest import FeatureRef, Manifest
from skewless.online.encoding import (
    FEATURES_AT,
    FORMAT_TOMBSTONE,
    FORMAT_VALUES,
    INT64_MAX,
    INT64_MIN,
    ViewCodec,
    decoder_of,
    entity_key_part,
    escape_key_part,
    layout_key,
    parse_layout_document,
)
from skewless.online.store import RedisOnlineStore
from skewless.pit import request
from skewless.runtime.settings import Settings
from skewless.spec.models import REQUEST_TS

if TYPE_CHECKING:
    import pyarrow as pa
    import redis

_NEEDS_ESCAPE = re.compile(r"[%:{}]").search


@dataclass(frozen=True)
class _ViewRead:
    """What one request reads from one view."""

    codec: ViewCodec
    key_names: tuple[str, ...]
    key_dtypes: tuple[str, ...]
    pairs: tuple[tuple[str, int], ...]
    """(output column, index in the view's feature layout) of each requested feature."""

    @cached_property
    def columns(self) -> tuple[str, ...]:
        return tuple(column for column, _ in self.pairs)

    @cached_property
    def nulls(self) -> tuple[None, ...]:
        return (None,) * len(self.pairs)

    @cached_property
    def getter(self) -> Callable[[Sequence[Any]], tuple[Any, ...]]:
        """Picks the requested values out of a decoded value list, as a tuple.

        Timestamps and dates are converted to ``datetime`` (UTC) and ``date``
        (:func:`skewless.online.encoding.decoder_of`); every other dtype is already its Python type.
        """
        indices = [FEATURES_AT + index for _, index in self.pairs]
        decoders = [decoder_of(self.codec.features[index][1]) for _, index in self.pairs]
        if any(decoders):
            pairs = list(zip(indices, decoders, strict=True))
            return lambda values: tuple(
                v if d is None else d(v) for v, d in ((values[i], d) for i, d in pairs)
            )
        if len(indices) == 1:
            only = indices[0]
            return lambda values: (values[only],)
        return itemgetter(*indices)


@dataclass(frozen=True)
class FeaturePlan:
    """A resolved feature request: output columns (the training join's), reads grouped per view.

    With on-demand views, ``read_columns`` also holds the hidden inputs the views read for them
    and ``columns`` the on-demand features, computed from the reads and the request fields.
    """

    columns: tuple[str, ...]
    views: tuple[_ViewRead, ...]
    on_demand: tuple[request.OnDemandRequest, ...] = ()
    read_columns: tuple[str, ...] = ()

    @cached_property
    def request_fields(self) -> dict[str, str]:
        """Fields each entity row must carry for the on-demand views (``request_ts`` is ``now``)."""
        return {r.name: r.dtype for od in self.on_demand for r in od.spec.request if r.name != REQUEST_TS}

    @cached_property
    def column_set(self) -> frozenset[str]:
        return frozenset(self.columns)

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
    """Check a request's features against the registry and plan its reads.

    The features, their checks and their column names and order come from
    :func:`skewless.pit.request.resolve`, shared with the training join.
    """
    refs = None if features is None else request.parse_feature_refs(features)
    resolved = request.resolve_features(manifest, features=refs, service=service)
    requests = resolved.views
    reads = tuple(
        _ViewRead(
            ViewCodec(r.view),
            r.view.key_names,
            tuple(k.dtype for k in r.view.join_keys),
            tuple((f.column, r.view.feature_names.index(f.feature.name)) for f in r.features),
        )
        for r in requests
    )
    read_columns = tuple(request.output_columns(requests))
    return FeaturePlan(resolved.columns, reads, resolved.on_demand, read_columns)


@dataclass(frozen=True)
class _Unknowable:
    """A stored row later than the request's time (see :func:`skewless.semantics.online_answer`)."""

    read: _ViewRead
    row: int
    feature_ts_us: int


class OnlineClient:
    """Reads online features for the views of ``manifest`` from the Redis at ``settings.redis_url``."""

    def __init__(self, settings: Settings, manifest: Manifest, *, redis_client: redis.Redis | None = None):
        self.manifest = manifest
        self._url = settings.redis_url
        self._store = RedisOnlineStore(self._url, client=redis_client)
        self._plans: dict[tuple[Any, ...], FeaturePlan] = {}
        self._layouts: dict[str, tuple[tuple[str, str], ...]] = {}
        self.observe_misses: Callable[[str, int, int], None] | None = None
        """Called per view read with (view, missing, expired): values absent or tombstones, and
        values stored but not live at ``now`` (``skewless serve`` counts them for /metrics)."""

    def close(self) -> None:
        self._store.close()

    def __enter__(self) -> OnlineClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def ping(self) -> None:
        """Raises :class:`OnlineStoreError` when Redis does not answer."""
        self._store.ping()

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
        """One dict per entity row: the row's own fields, then the feature columns (training-join order).

        ``now`` (default: the current time; naive means UTC) is the time the answer is for.
        Raises :class:`OnlineTimeRefused` when a stored row is later than ``now``: the online
        store holds only the latest row, so the point-in-time answer at ``now`` is unknown there.
        """
        plan = self.plan(features, service)
        now_us = time.time_ns() // 1000 if now is None else semantics.to_micros(now)
        rows = entity_rows if isinstance(entity_rows, list) else list(entity_rows)
        if not rows:
            return []
        views = plan.views
        keys = [_view_keys(read, rows) for read in views]
        # One MGET per view, sent together: each view's values are decoded while Redis is still
        # answering the next view's MGET.
        unknowable: list[_Unknowable] = []
        decoded = self._read(keys, lambda i, raws: self._decode(views[i], raws, now_us, unknowable))
        if unknowable:  # raised once every reply is read: the connection stays usable
            raise _refusal(unknowable, rows, now_us)
        # Per view, one tuple of requested values per row; joined row-wise in C (operator.add):
        # the columns are grouped by view, in the training join's order.
        combined = decoded[0]
        for more in decoded[1:]:
            combined = list(map(add, combined, more))
        if plan.on_demand:
            return _with_on_demand(plan, rows, combined, now_us)
        columns = plan.columns
        results: list[dict[str, Any]] = []
        append = results.append
        for row, values in zip(rows, combined, strict=True):
            out = dict(row)
            out.update(zip(columns, values, strict=True))
            append(out)
        # A row field named like a feature column was overwritten: fewer fields than expected.
        if sum(map(len, results)) != sum(map(len, rows)) + len(columns) * len(rows):
            raise _clash_error(plan, rows)
        return results

    def _decode(
        self, read: _ViewRead, raws: list[bytes | None], now_us: int, unknowable: list[_Unknowable]
    ) -> list[tuple[Any, ...]]:
        """The requested values of each stored value, or nulls when absent, expired or a tombstone (hot loop).

        A value is ``[format, feature_ts, created_ts, layout_id, *features]`` (one ``unpackb``). A
        value or tombstone later than ``now`` is recorded in ``unknowable``.
        """
        getter, nulls = read.getter, read.nulls
        layout = read.codec.layout_id
        oldest, newest = semantics.live_window(read.codec.ttl_us, now_us)
        unpack = msgpack.unpackb
        out: list[tuple[Any, ...]] = []
        append = out.append
        missing = expired = 0
        try:
            for raw in raws:
                if raw is None:
                    append(nulls)
                    missing += 1
                    continue
                items = unpack(raw)
                if items[0] == FORMAT_VALUES and oldest <= items[1] <= newest:
                    if items[3] != layout:
                        items = self._remap(read.codec, items)
                    append(getter(items))
                elif items[0] == FORMAT_TOMBSTONE or items[0] == FORMAT_VALUES:
                    if items[1] > newest:
                        unknowable.append(_Unknowable(read, len(out), items[1]))
                    elif items[0] == FORMAT_TOMBSTONE:
                        missing += 1
                    else:
                        expired += 1
                    append(nulls)  # a tombstone, or a value not live at now
                else:
                    raise OnlineStoreError(
                        f"{read.codec.view_name}: stored value of unknown format {items[0]}"
                    )
        except (ValueError, TypeError, IndexError, KeyError, msgpack.UnpackException) as exc:
            raise OnlineStoreError(
                f"{read.codec.view_name}: a stored value is unreadable ({type(exc).__name__}: {exc})"
            ) from None
        if self.observe_misses is not None:
            self.observe_misses(read.codec.view_name, missing, expired)
        return out

    def _read(
        self, keys: list[list[str]], each: Callable[[int, list[bytes | None]], list[tuple[Any, ...]]]
    ) -> list[list[tuple[Any, ...]]]:
        return self._store.read_many(keys, each)

    def _remap(self, codec: ViewCodec, items: list[Any]) -> list[Any]:
        """A value written under another feature layout of the same view version, in today's order."""
        stored_layout = items[3]
        name = layout_key(codec.view_name, codec.version, stored_layout)
        layout = self._layouts.get(name)
        if layout is None:
            raw = self._store.get(name)
            if raw is None:
                raise OnlineStoreError(
                    f"{codec.view_name}: a stored value refers to feature layout {stored_layout.hex()}, "
                    f"whose document {name!r} is missing from Redis; re-materialize the view"
                )
            layout = parse_layout_document(raw)
            self._layouts[name] = layout
        values = items[FEATURES_AT:]
        stored = {feature: (index, dtype) for index, (feature, dtype) in enumerate(layout)}
        remapped = items[:FEATURES_AT]
        for feature, dtype in codec.features:
            found = stored.get(feature)
            ok = found is not None and found[1] == dtype and found[0] < len(values)
            remapped.append(values[found[0]] if found is not None and ok else None)
        return remapped


def _request_array(rows: list[Mapping[str, Any]], name: str, dtype: str, view: str) -> pa.Array:
    """One request field of every entity row as an Arrow array of its declared type."""
    import pyarrow as pa

    values = []
    for index, row in enumerate(rows):
        if name not in row:
            raise EntityError(
                f"entity row {index}: missing request field {name!r} ({dtype}, needed by on-demand"
                f" view {view!r})"
            )
        value = row[name]
        if isinstance(value, str) and dtype in ("timestamp", "date"):
            try:
                moment = datetime.fromisoformat(value)
            except ValueError:
                raise EntityError(
                    f"entity row {index}: request field {name!r}: not ISO-8601: {value!r}"
                ) from None
            value = moment.date() if dtype == "date" else semantics.as_utc(moment)
        values.append(value)
    try:
        return pa.array(values, type=semantics.arrow_type(dtype))
    except (pa.ArrowException, TypeError, ValueError, OverflowError) as exc:
        for index, value in enumerate(values):
            try:
                pa.array([value], type=semantics.arrow_type(dtype))
            except (pa.ArrowException, TypeError, ValueError, OverflowError):
                raise EntityError(
                    f"entity row {index}: request field {name!r} must be {dtype}, got {value!r}"
                ) from None
        raise EntityError(f"request field {name!r} must be {dtype}: {exc}") from None


def _with_on_demand(
    plan: FeaturePlan, rows: list[Mapping[str, Any]], combined: list[tuple[Any, ...]], now_us: int
) -> list[dict[str, Any]]:
    """Rows with the stored reads, then each on-demand view's features from the same library function
    the training join calls (:func:`skewless.ondemand.apply_on_demand`), at ``now`` as ``request_ts``."""
    import pyarrow as pa

    from skewless.ondemand import apply_on_demand

    for index, row in enumerate(rows):
        if not plan.column_set.isdisjoint(row):
            clash = sorted(plan.column_set.intersection(row))[0]
            raise EntityError(f"entity row {index}: field {clash!r} clashes with a feature column")
    read = {column: [values[i] for values in combined] for i, column in enumerate(plan.read_columns)}
    computed: dict[str, list[Any]] = {}
    now = semantics.from_micros(now_us)
    for od in plan.on_demand:
        spec = od.spec
        arrays: dict[str, pa.Array] = {}
        for field in spec.request:
            if field.name == REQUEST_TS:
                arrays[field.name] = pa.array([now] * len(rows), type=semantics.arrow_type("timestamp"))
            else:
                arrays[field.name] = _request_array(rows, field.name, field.dtype, spec.name)
        for one, column in od.inputs:
            arrays[one.column] = pa.array(read[column], type=semantics.arrow_type(one.dtype))
        result = apply_on_demand(spec, pa.table(arrays))
        for feature in od.features:
            computed[feature.column] = result.column(feature.feature.name).to_pylist()
    values = {column: computed[column] if column in computed else read[column] for column in plan.columns}
    results: list[dict[str, Any]] = []
    for index, row in enumerate(rows):
        out = dict(row)
        for column, column_values in values.items():
            out[column] = column_values[index]
        results.append(out)
    return results


def _view_keys(read: _ViewRead, rows: list[Mapping[str, Any]]) -> list[str]:
    """The Redis keys of ``read``'s view for every row, checking each join key (column at a time)."""
    parts: list[list[str]] = []
    for name, dtype in zip(read.key_names, read.key_dtypes, strict=True):
        try:
            values = [row[name] for row in rows]
        except (KeyError, TypeError, IndexError):
            raise _row_error(rows, name, read.codec.view_name) from None
        kinds = set(map(type, values))
        if dtype == "string" and kinds == {str}:
            if _NEEDS_ESCAPE("".join(values)):  # one scan: the characters are single ones
                values = [escape_key_part(v) for v in values]
            parts.append(values)
        elif dtype == "int64" and kinds == {int} and min(values) >= INT64_MIN and max(values) <= INT64_MAX:
            parts.append(list(map(str, values)))
        else:  # something is off: check row by row for a precise message
            parts.append(
                [entity_key_part(name, dtype, value, f"entity row {i}") for i, value in enumerate(values)]
            )
    prefix = read.codec.prefix
    if len(parts) == 1:
        return [prefix + part for part in parts[0]]
    return [prefix + ":".join(entity) for entity in zip(*parts, strict=True)]


def _refusal(unknowable: list[_Unknowable], rows: list[Mapping[str, Any]], now_us: int) -> OnlineTimeRefused:
    """The error for rows later than the request's time, naming the first one."""
    first = unknowable[0]
    view = first.read.codec.view_name
    entity = {name: rows[first.row][name] for name in first.read.key_names}
    keys = ", ".join(f"{name}={value!r}" for name, value in entity.items())
    stored = semantics.from_micros(first.feature_ts_us).isoformat()
    more = f" (and {len(unknowable) - 1} more)" if len(unknowable) > 1 else ""
    return OnlineTimeRefused(
        f"view {view!r}, entity {keys}{more}: cannot answer at "
        f"{semantics.from_micros(now_us).isoformat()}: the online store holds only the latest row, "
        f"whose feature_ts {stored} is later; the answer at that time was an older row it no longer "
        "has. Ask at or after the stored feature_ts, or use the training join (skewless training-set) "
        "for past times",
        view=view,
        entity=entity,
        feature_ts=stored,
    )


def _clash_error(plan: FeaturePlan, rows: list[Mapping[str, Any]]) -> EntityError:
    """Which row has a field named like a feature column (its output lost that field)."""
    for index, row in enumerate(rows):
        if not plan.column_set.isdisjoint(row):
            clash = sorted(plan.column_set.intersection(row))[0]
            return EntityError(f"entity row {index}: field {clash!r} clashes with a feature column")
    return EntityError("entity rows: a field clashes with a feature column")


def _row_error(rows: list[Mapping[str, Any]], name: str, view_name: str) -> EntityError:
    """Why ``row[name]`` failed for some row: not an object, or missing the join key."""
    for index, row in enumerate(rows):
        if not isinstance(row, Mapping):
            kind = type(row).__name__
            return EntityError(f"entity row {index}: expected an object of join keys, got {kind}")
        if name not in row:
            needed = f"needed by view {view_name!r}"
            return EntityError(f"entity row {index}: missing join key {name!r} ({needed})")
    return EntityError(f"entity rows: cannot read join key {name!r}")


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
        if name not in plan.key_names and name not in plan.request_fields:
            fields = f"; request fields: {', '.join(plan.request_fields)}" if plan.request_fields else ""
            raise EntityError(
                f"entity {text!r}: {name!r} is not a join key of the requested views "
                f"(join keys: {', '.join(plan.key_names)}{fields})"
            )
        if name in entity:
            raise EntityError(f"entity {text!r}: key {name!r} given twice")
        if name not in plan.key_names:
            entity[name] = _parse_request_value(text, name, plan.request_fields[name], value.strip())
        elif plan.key_dtype(name) == "int64":
            try:
                entity[name] = int(value.strip())
            except ValueError:
                raise EntityError(
                    f"entity {text!r}: key {name!r} must be an integer, got {value!r}"
                ) from None
        else:
            entity[name] = value
    return entity


def _parse_request_value(text: str, name: str, dtype: str, value: str) -> Any:
    """A request field given as ``name=value`` on the command line, as its declared dtype."""
    try:
        if dtype in ("int64", "int32"):
            return int(value)
        if dtype in ("float64", "float32"):
            return float(value)
        if dtype == "bool":
            if value.lower() not in ("true", "false"):
                raise ValueError(value)
            return value.lower() == "true"
        return value  # strings; timestamps and dates as ISO-8601 text (parsed with the request)
    except ValueError:
        raise EntityError(f"entity {text!r}: request field {name!r} must be {dtype}, got {value!r}") from None
