"""JSON for online answers (``get-online`` and the feature server).

Standard JSON (RFC 8259) has no NaN or infinities, so a non-finite float64 value is written as the
string ``"NaN"``, ``"Infinity"`` or ``"-Infinity"`` (the convention of the protobuf JSON mapping);
a reader tells it from a string feature by the feature's dtype. Every finite float is written
with the shortest text that reads back to the same bits (``-0.0`` included); null is ``null``.
Integers are written exactly (readers limited to doubles, such as JavaScript, lose precision
past 2**53). A timestamp is ISO-8601 in UTC with microseconds (``2024-03-01T12:00:00.000001Z``),
a date ``YYYY-MM-DD``, an array a JSON array of its elements (with the same conventions); a
float32 value is written as the shortest text of its exact double value, which reads back to the
same float32 bits.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Any

NON_FINITE = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}


def json_value(value: Any) -> Any:
    if type(value) is float and not math.isfinite(value):
        return NON_FINITE[repr(value)]
    if isinstance(value, datetime):
        moment = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, list):
        return [json_value(item) for item in value]
    return value


def json_rows(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    return [{name: json_value(value) for name, value in row.items()} for row in rows]


def dumps(value: Any, indent: int | None = None) -> str:
    """``json.dumps`` that refuses NaN (call :func:`json_rows` first) and keeps unicode readable."""
    return json.dumps(value, indent=indent, ensure_ascii=False, allow_nan=False)
