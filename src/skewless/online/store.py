"""The online-store interface (the size of Feast's) and its Redis implementation.

:class:`OnlineStore` is what the rest of skewless needs from an online store: ``prepare`` a view
(idempotent set-up), ``write`` rows, ``read`` the live rows of entity keys at a time, ``delete``
keys, ``close``. :class:`RedisOnlineStore` implements it on the key/value layout of
:mod:`skewless.online.encoding` and the check-and-set write script of
:mod:`skewless.online.redis_store`; materialize's executors, ``publish_rows`` and the serving
client (:mod:`skewless.online.client`, whose batched multi-view read is Redis-specific:
:meth:`RedisOnlineStore.read_many`) go through it.

Rows given to ``write`` are ``(join keys..., feature_ts_us, created_ts_us, features...)`` in the
view's key and feature order, timestamps as UTC microseconds (what materialize selects from the
offline table). The semantics are those of docs/online-store.md: a write never replaces a
newer ``(feature_ts, created_ts)``, a row whose features are all null is a tombstone, and a row
is served only inside its live window (docs/semantics.md).

How batches reach Redis: each batch of keys is one ``EVALSHA``, several batches per round trip.
The commands are packed with hiredis and sent on one connection (:class:`ScriptWriter`); the
benchmark in bench/online_bench.py ("store" section) compares this with redis-py's ``Pipeline``
and ``register_script`` and records why it is kept (docs/benchmarks.md).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol, cast

from skewless import semantics
from skewless.errors import OnlineStoreError, OnlineTimeRefused
from skewless.manifest import ViewSpec
from skewless.online.encoding import ViewCodec, decode, decoder_of, parse_layout_document
from skewless.online.redis_store import ScriptWriter, WriteCounts, connect, describe_error, round_trip

if TYPE_CHECKING:
    import redis

DEFAULT_BATCH_SIZE = 256
"""Keys per script call."""
DEFAULT_PIPELINE_DEPTH = 8
"""Script calls per round trip."""


@dataclass(frozen=True)
class WriteStats:
    rows: int = 0
    tombstones: int = 0
    written: int = 0
    kept_newer: int = 0
    """Rows not written because the stored value is newer."""
    already_expired: int = 0
    """Rows not written because their expiry had passed on the Redis clock."""

    def as_tuple(self) -> tuple[int, int, int, int, int]:
        return (self.rows, self.tombstones, self.written, self.kept_newer, self.already_expired)


@dataclass(frozen=True)
class OnlineRow:
    """An entity's live row: its ``feature_ts`` (UTC) and its features by name (None for null)."""

    feature_ts: datetime
    values: dict[str, Any]


class OnlineStore(Protocol):
    def prepare(self, view: ViewSpec) -> None:
        """Check the store answers and set up what ``view`` needs (idempotent)."""
        ...

    def write(self, view: ViewSpec, rows: Iterable[Sequence[Any]]) -> WriteStats:
        """Write rows (module docstring), keeping any newer stored value."""
        ...

    def read(
        self, view: ViewSpec, keys: Sequence[Sequence[Any]], now: datetime | None = None
    ) -> list[OnlineRow | None]:
        """Per entity (its join key values in the view's key order) the row live at ``now``
        (default: the current time), None when there is none (absent, a tombstone, or expired).

        Raises :class:`OnlineTimeRefused` for a stored row later than ``now``: the store holds
        only the latest row, so the answer at ``now`` is unknown there.
        """
        ...

    def delete(self, view: ViewSpec, keys: Sequence[Sequence[Any]]) -> int:
        """Remove the entities' rows; returns how many there were."""
        ...

    def close(self) -> None: ...


class RedisOnlineStore:
    """:class:`OnlineStore` on one Redis (``redis://``, ``rediss://`` or ``unix://`` URL)."""

    def __init__(
        self,
        url: str,
        *,
        password: str | None = None,
        client: redis.Redis | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        pipeline_depth: int = DEFAULT_PIPELINE_DEPTH,
    ) -> None:
        self.url = url
        self.client = client if client is not None else connect(url, password=password)
        self.batch_size = batch_size
        self.pipeline_depth = pipeline_depth
        self._writer: ScriptWriter | None = None
        self._codecs: dict[tuple[str, int], ViewCodec] = {}

    def __enter__(self) -> RedisOnlineStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.client.close()

    def codec(self, view: ViewSpec) -> ViewCodec:
        key = (view.name, view.version)
        codec = self._codecs.get(key)
        if codec is None or codec.features != tuple((f.name, f.dtype) for f in view.features):
            codec = self._codecs[key] = ViewCodec(view)
        return codec

    def _failure(self, exc: BaseException) -> OnlineStoreError:
        return OnlineStoreError(describe_error(exc, self.url))

    # --- OnlineStore ------------------------------------------------------------------------

    def prepare(self, view: ViewSpec) -> None:
        """Ping, load the write script, and publish the view's feature-layout document."""
        import redis

        codec = self.codec(view)
        try:
            self.client.ping()
            self._writer = ScriptWriter(self.client)
            self.client.set(codec.layout_key, codec.layout_document())
        except redis.RedisError as exc:
            raise self._failure(exc) from None

    def write(self, view: ViewSpec, rows: Iterable[Sequence[Any]]) -> WriteStats:
        import redis

        try:
            if self._writer is None:
                self._writer = ScriptWriter(self.client)
            counts = write_rows(self._writer, self.codec(view), rows, self.batch_size, self.pipeline_depth)
        except redis.RedisError as exc:
            raise self._failure(exc) from None
        return WriteStats(*counts)

    def read(
        self, view: ViewSpec, keys: Sequence[Sequence[Any]], now: datetime | None = None
    ) -> list[OnlineRow | None]:
        import redis

        codec = self.codec(view)
        redis_keys = [codec.entity_key(values, f"entity {i}") for i, values in enumerate(keys)]
        if not redis_keys:
            return []
        now_us = semantics.to_micros(now or datetime.now(UTC))
        oldest, newest = semantics.live_window(codec.ttl_us, now_us)
        try:
            raws = self.client.mget(redis_keys)
        except redis.RedisError as exc:
            raise self._failure(exc) from None
        out: list[OnlineRow | None] = []
        for values, raw in zip(keys, raws, strict=True):
            stored = None if raw is None else decode(cast(bytes, raw))
            if stored is not None and stored.feature_ts_us > newest:
                entity = dict(zip(codec.key_names, values, strict=True))
                at = semantics.from_micros(stored.feature_ts_us).isoformat()
                raise OnlineTimeRefused(
                    f"{view.name}: the stored row of {entity} is from {at}, after the requested time: "
                    "the online store holds only the latest row",
                    view=view.name,
                    entity=entity,
                    feature_ts=at,
                )
            if stored is None or stored.values is None or stored.feature_ts_us < oldest:
                out.append(None)
                continue
            features = self._features(codec, stored.layout_id, stored.values)
            out.append(OnlineRow(semantics.from_micros(stored.feature_ts_us), features))
        return out

    def delete(self, view: ViewSpec, keys: Sequence[Sequence[Any]]) -> int:
        import redis

        codec = self.codec(view)
        redis_keys = [codec.entity_key(values, f"entity {i}") for i, values in enumerate(keys)]
        if not redis_keys:
            return 0
        try:
            return int(self.client.delete(*redis_keys))
        except redis.RedisError as exc:
            raise self._failure(exc) from None

    # --- Redis-specific: the serving client's batched read ---------------------------------

    def read_many(
        self,
        keys_per_view: Sequence[Sequence[str]],
        each: Callable[[int, list[bytes | None]], Any],
    ) -> list[Any]:
        """One ``MGET`` per list of Redis keys, all in one round trip; ``each(index, values)``
        handles each reply as it arrives (while Redis still answers the next ones)."""
        import redis
        from hiredis import pack_command

        packed = b"".join(pack_command(cast(Any, ("MGET", *keys))) for keys in keys_per_view)
        try:
            return round_trip(self.client, packed, len(keys_per_view), each)
        except redis.RedisError as exc:
            raise self._failure(exc) from None

    def get(self, key: str) -> bytes | None:
        import redis

        try:
            raw = self.client.get(key)
        except redis.RedisError as exc:
            raise self._failure(exc) from None
        return None if raw is None else cast(bytes, raw)

    def ping(self) -> None:
        import redis

        try:
            self.client.ping()
        except redis.RedisError as exc:
            raise self._failure(exc) from None

    def _features(self, codec: ViewCodec, layout: bytes | None, values: list[Any]) -> dict[str, Any]:
        """The stored values by feature name; a value written under another layout of the same
        view version is read through that layout's document."""
        stored: Sequence[tuple[str, str]] = codec.features
        if layout is not None and layout != codec.layout_id:
            from skewless.online.encoding import layout_key

            raw = self.get(layout_key(codec.view_name, codec.version, layout))
            if raw is None:
                raise OnlineStoreError(
                    f"{codec.view_name}: a stored value refers to feature layout {layout.hex()}, whose "
                    "document is missing from Redis; re-materialize the view"
                )
            stored = parse_layout_document(raw)
        by_name: Mapping[str, tuple[int, str]] = {name: (i, dtype) for i, (name, dtype) in enumerate(stored)}
        out: dict[str, Any] = {}
        for name, dtype in codec.features:
            found = by_name.get(name)
            if found is None or found[1] != dtype or found[0] >= len(values):
                out[name] = None
                continue
            decoder = decoder_of(dtype)
            value = values[found[0]]
            out[name] = value if decoder is None or value is None else decoder(value)
        return out


def write_rows(
    writer: ScriptWriter,
    codec: ViewCodec,
    rows: Iterable[Sequence[Any]],
    batch_size: int = DEFAULT_BATCH_SIZE,
    pipeline_depth: int = DEFAULT_PIPELINE_DEPTH,
) -> tuple[int, int, int, int, int]:
    """Encode and write rows of (keys..., feature_ts_us, created_ts_us, features...).

    Returns (rows, tombstones, written, kept_newer, already_expired). A row whose features are
    all null is a tombstone (:func:`skewless.semantics.is_tombstone`). Each value goes to the
    script with its expiry, :func:`skewless.semantics.expire_at_ms`.
    """
    key_of = codec.key_function()
    first_feature = len(codec.key_names) + 2
    ts_index = first_feature - 2
    ttl_us = codec.ttl_us
    expire_at_ms, is_tombstone = semantics.expire_at_ms, semantics.is_tombstone
    encode = codec.value_encoder()
    tombstone = codec.tombstone
    counts = WriteCounts()
    rows_seen = tombstones = 0
    keys: list[str] = []
    arguments: list[int | bytes] = []
    batches: list[tuple[list[str], list[int | bytes]]] = []
    for row in rows:
        features = row[first_feature:]
        feature_ts, created_ts = row[ts_index], row[ts_index + 1]
        if is_tombstone(features):
            value = tombstone(feature_ts, created_ts)
            tombstones += 1
        else:
            value = encode(feature_ts, created_ts, features)
        arguments += (expire_at_ms(feature_ts, ttl_us), value)
        keys.append(key_of(row))
        if len(keys) >= batch_size:
            rows_seen += len(keys)
            batches.append((keys, arguments))
            keys, arguments = [], []
            if len(batches) >= pipeline_depth:
                counts = counts + writer.write(batches)
                batches = []
    if keys:
        rows_seen += len(keys)
        batches.append((keys, arguments))
    if batches:
        counts = counts + writer.write(batches)
    return rows_seen, tombstones, counts.written, counts.kept_newer, counts.already_expired
