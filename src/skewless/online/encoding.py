"""Redis key and value layout of the online store: pure functions, no Redis, no Spark.

The layout is a contract with readers in other languages; docs/online-store.md describes it
byte by byte. In short:

* **Key** of an entity's values in a view version: ``sk:<view>:<version>:<k1>[:<k2>...]``, the
  join keys in declared order. An int64 key is its decimal text; a string key is its UTF-8 text
  with ``%``, ``:``, ``{`` and ``}`` percent-escaped, so distinct entities never share a key and
  no entity value forms a Redis Cluster hash tag.
* **Value**: one MessagePack array ``[format, feature_ts, created_ts, layout_id, *features]``
  whose first fields have a fixed width and so fixed byte offsets (array16 header, int64
  timestamps in microseconds since the Unix epoch, UTC, an 8-byte bin layout id): one
  ``unpackb`` decodes a value, and the write script reads the stamps at known offsets. Features
  are in layout order (int64/int32 -> int, float64 -> float 64, float32 -> float 32, string ->
  str, bool -> bool, timestamp -> the MessagePack timestamp extension (type -1, exact to the
  microsecond), date -> int days since 1970-01-01, array -> array of its elements, null -> nil).
  Format 2 (tombstone) is ``[2, feature_ts, created_ts]``: the entity dropped out
  and reads as absent, but the stamp still stops a late backfill of an older ``ds`` from
  bringing its value back.
* **Layout** document, written once per materialization at ``sk-layout:<view>:<version>:<id hex>``:
  a MessagePack array of ``[name, dtype]`` pairs. A reader whose registry has the same layout id
  decodes positionally; otherwise it maps the stored values by name (a feature added to a view
  reads as null until it is materialized).
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import msgpack  # type: ignore[import-untyped]

from skewless import semantics
from skewless.errors import EntityError, OnlineStoreError
from skewless.manifest import ViewSpec

KEY_PREFIX = "sk"
LAYOUT_KEY_PREFIX = "sk-layout"
FORMAT_VALUES = 1
FORMAT_TOMBSTONE = 2
LAYOUT_ID_SIZE = 8
VALUE_HEADER = struct.Struct(">BHBBqBqBB8s")
"""array16 marker, element count, format (fixint), 0xd3 feature_ts, 0xd3 created_ts, 0xc4 0x08 layout id."""
TOMBSTONE = struct.Struct(">BHBBqBq")
"""array16 marker, 3, format 2, 0xd3 feature_ts, 0xd3 created_ts."""
FEATURES_AT = 4
"""Index of the first feature in a decoded value."""
MAX_FEATURES = 65_535 - FEATURES_AT
_ARRAY16, _INT64, _BIN8 = 0xDC, 0xD3, 0xC4
MIN_TIMESTAMP_US = -(2**63)
"""Stands for a missing created_ts: older than any real one."""
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

_ESCAPES = {ord("%"): "%25", ord(":"): "%3A", ord("{"): "%7B", ord("}"): "%7D"}
_UNESCAPES = {"%25": "%", "%3A": ":", "%7B": "{", "%7D": "}"}

# One reusable packer: about 1 us less per value than msgpack.packb. It never releases the GIL
# (no ``default`` hook), so calls from several threads do not interleave.
pack_payload = msgpack.Packer(use_bin_type=True, use_single_float=False, autoreset=True).pack
pack_single = msgpack.Packer(use_bin_type=True, use_single_float=True, autoreset=True).pack
"""Packs floats as MessagePack float 32: float32 and array<float32> features (exact for their values)."""
SINGLE_FLOAT_DTYPES = frozenset({"float32", "array<float32>"})
CONVERTED_DTYPES = frozenset({"timestamp", "date"})
"""Dtypes whose values are converted before packing and after unpacking (see :func:`encoder_of`)."""


def _timestamp_value(value: Any) -> Any:
    """A timestamp feature (a datetime, or microseconds since the epoch) as a MessagePack Timestamp."""
    if value is None:
        return None
    micros = semantics.to_micros(value) if isinstance(value, datetime) else int(value)
    seconds, remainder = divmod(micros, semantics.SECOND_US)
    return msgpack.Timestamp(seconds, remainder * 1000)


def _date_value(value: Any) -> Any:
    """A date feature (a date, or days since 1970-01-01) as its day number."""
    if value is None or type(value) is int:
        return value
    if isinstance(value, datetime):
        raise TypeError(f"a date feature got a datetime: {value!r}")
    assert isinstance(value, date)  # the view's rows hold dates here, never user input
    return semantics.day_number(value)


def encoder_of(dtype: str) -> Callable[[Any], Any] | None:
    """Converts a feature value to what is packed (None: packed as it is)."""
    return {"timestamp": _timestamp_value, "date": _date_value}.get(dtype)


def _timestamp_of(value: Any) -> Any:
    if value is None:
        return None
    if not isinstance(value, msgpack.Timestamp):
        raise TypeError(f"expected a MessagePack timestamp, got {type(value).__name__}")
    return semantics.from_micros(value.seconds * semantics.SECOND_US + value.nanoseconds // 1000)


def _date_of(value: Any) -> Any:
    return None if value is None else semantics.from_day_number(value)


def decoder_of(dtype: str) -> Callable[[Any], Any] | None:
    """Converts an unpacked value to the feature's Python type (None: already is): a timestamp to
    a UTC datetime, a date number to a date."""
    return {"timestamp": _timestamp_of, "date": _date_of}.get(dtype)


def escape_key_part(value: str) -> str:
    """A string join key as it appears in a Redis key (``%``, ``:``, ``{``, ``}`` percent-escaped)."""
    if "%" in value or ":" in value or "{" in value or "}" in value:
        return value.translate(_ESCAPES)
    return value


def unescape_key_part(text: str) -> str:
    """Inverse of :func:`escape_key_part`."""
    if "%" not in text:
        return text
    out: list[str] = []
    i = 0
    while i < len(text):
        escaped = _UNESCAPES.get(text[i : i + 3]) if text[i] == "%" else None
        if escaped is None:
            out.append(text[i])
            i += 1
        else:
            out.append(escaped)
            i += 3
    return "".join(out)


def key_prefix(view_name: str, version: int) -> str:
    return f"{KEY_PREFIX}:{view_name}:{version}:"


def layout_id(features: Sequence[tuple[str, str]]) -> bytes:
    """8 bytes identifying the ordered ``(name, dtype)`` list of a view's features."""
    return hashlib.sha256(layout_document(features)).digest()[:LAYOUT_ID_SIZE]


def layout_document(features: Sequence[tuple[str, str]]) -> bytes:
    return bytes(pack_payload([[name, dtype] for name, dtype in features]))


def parse_layout_document(raw: bytes) -> tuple[tuple[str, str], ...]:
    try:
        items = msgpack.unpackb(raw)
        return tuple((str(name), str(dtype)) for name, dtype in items)
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise OnlineStoreError(f"unreadable feature layout document in Redis: {exc}") from None


@dataclass(frozen=True)
class StoredValue:
    """A decoded Redis value. ``values`` is None for a tombstone."""

    feature_ts_us: int
    created_ts_us: int
    layout_id: bytes | None
    values: list[Any] | None


def decode(raw: bytes) -> StoredValue:
    """Decode any stored value (values or tombstone), checking its shape."""
    try:
        items = msgpack.unpackb(raw)
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise OnlineStoreError(f"unreadable online value ({exc}): not written by skewless?") from None
    if not isinstance(items, list) or len(items) < 3 or not all(type(i) is int for i in items[:3]):
        raise OnlineStoreError("online value is not a skewless value array")
    fmt, feature_ts, created_ts = items[:3]
    if fmt == FORMAT_TOMBSTONE and len(items) == 3:
        return StoredValue(feature_ts, created_ts, None, None)
    if fmt != FORMAT_VALUES or len(items) < FEATURES_AT or not isinstance(items[3], bytes):
        raise OnlineStoreError(f"online value has unknown format {fmt}: written by a newer skewless?")
    return StoredValue(feature_ts, created_ts, items[3], items[FEATURES_AT:])


class ViewCodec:
    """Keys and values of one view version."""

    def __init__(self, view: ViewSpec) -> None:
        self.view_name = view.name
        self.version = view.version
        self.key_names = view.key_names
        self.key_dtypes = tuple(k.dtype for k in view.join_keys)
        self.features: tuple[tuple[str, str], ...] = tuple((f.name, f.dtype) for f in view.features)
        self.feature_names = tuple(name for name, _ in self.features)
        self.ttl_us = semantics.ttl_us(view)
        self.prefix = key_prefix(view.name, view.version)
        self.layout_id = layout_id(self.features)
        self.layout_key = layout_key(view.name, view.version, self.layout_id)

    # Keys -----------------------------------------------------------------------------------

    def key_function(self) -> Callable[[Sequence[Any]], str]:
        """Key of a row whose first values are the join keys, already of the right types (fast path)."""
        prefix = self.prefix
        escape = escape_key_part
        if self.key_dtypes == ("string",):
            return lambda row: prefix + escape(row[0])
        if self.key_dtypes == ("int64",):
            return lambda row: prefix + str(row[0])
        parts = [escape if dtype == "string" else str for dtype in self.key_dtypes]
        count = len(parts)

        def composite(row: Sequence[Any]) -> str:
            return prefix + ":".join([parts[i](row[i]) for i in range(count)])

        return composite

    def entity_key(self, values: Sequence[Any], where: str = "entity") -> str:
        """Key of an entity given by a caller: checks that every key is present and well typed."""
        parts = []
        for name, dtype, value in zip(self.key_names, self.key_dtypes, values, strict=True):
            parts.append(entity_key_part(name, dtype, value, where))
        return self.prefix + ":".join(parts)

    # Values ---------------------------------------------------------------------------------

    def encode(self, feature_ts_us: int, created_ts_us: int, values: Sequence[Any]) -> bytes:
        """A format-1 value; ``values`` in the view's feature order, already of the right types."""
        return self.value_encoder()(feature_ts_us, created_ts_us, values)

    def value_encoder(self) -> Callable[[int, int, Sequence[Any]], bytes]:
        """``encode`` with everything constant for the view bound once (the materialization hot path)."""
        count = len(self.features)
        if count > MAX_FEATURES:
            raise OnlineStoreError(f"view {self.view_name!r}: more than {MAX_FEATURES} features")
        pack_header, pack = VALUE_HEADER.pack, pack_payload
        layout = self.layout_id
        # The features are packed as an array; its own header (1 byte up to 15 elements, else 3)
        # is dropped since the value's array16 header counts them.
        skip = 1 if count <= 15 else 3
        total = count + FEATURES_AT
        dtypes = [dtype for _, dtype in self.features]

        def encode(feature_ts_us: int, created_ts_us: int, values: Sequence[Any]) -> bytes:
            header = pack_header(
                _ARRAY16, total, FORMAT_VALUES, _INT64, feature_ts_us, _INT64, created_ts_us, _BIN8, 8, layout
            )
            return header + pack(values)[skip:]  # type: ignore[no-any-return]

        if not any(d in SINGLE_FLOAT_DTYPES or d in CONVERTED_DTYPES for d in dtypes):
            return encode
        # Some features need another packer (float 32) or a conversion: pack feature by feature.
        packers = [pack_single if d in SINGLE_FLOAT_DTYPES else pack for d in dtypes]
        converters = [encoder_of(d) for d in dtypes]

        def encode_each(feature_ts_us: int, created_ts_us: int, values: Sequence[Any]) -> bytes:
            header = pack_header(
                _ARRAY16, total, FORMAT_VALUES, _INT64, feature_ts_us, _INT64, created_ts_us, _BIN8, 8, layout
            )
            parts = [header]
            for value, packer, convert in zip(values, packers, converters, strict=True):
                parts.append(packer(value if convert is None else convert(value)))
            return b"".join(parts)

        return encode_each

    @staticmethod
    def tombstone(feature_ts_us: int, created_ts_us: int) -> bytes:
        return TOMBSTONE.pack(_ARRAY16, 3, FORMAT_TOMBSTONE, _INT64, feature_ts_us, _INT64, created_ts_us)

    def expire_at_ms(self, feature_ts_us: int) -> int:
        return semantics.expire_at_ms(feature_ts_us, self.ttl_us)

    def layout_document(self) -> bytes:
        return layout_document(self.features)


def layout_key(view_name: str, version: int, layout: bytes) -> str:
    return f"{LAYOUT_KEY_PREFIX}:{view_name}:{version}:{layout.hex()}"


def entity_key_part(name: str, dtype: str, value: Any, where: str) -> str:
    """One join key of a caller's entity, checked against its dtype (no silent conversion)."""
    if value is None:
        raise EntityError(f"{where}: key {name!r} is null")
    if dtype == "int64":
        if type(value) is not int:
            raise EntityError(f"{where}: key {name!r} must be an int64, got {_describe(value)}")
        if not INT64_MIN <= value <= INT64_MAX:
            raise EntityError(f"{where}: key {name!r} is out of the int64 range: {value}")
        return str(value)
    if not isinstance(value, str):
        raise EntityError(f"{where}: key {name!r} must be a string, got {_describe(value)}")
    return escape_key_part(value)


def _describe(value: Any) -> str:
    text = repr(value)
    if len(text) > 40:
        text = text[:37] + "..."
    return f"{type(value).__name__} {text}"
