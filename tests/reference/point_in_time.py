"""A plain row-by-row reading of the point-in-time rule (docs/semantics.md), for tests.

No joins, no windows: for each spine row, scan every feature row of the view; whether a row is
live at the spine time is :func:`skewless.semantics.is_live`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from skewless import semantics
from skewless.pit.request import ViewRequest

Row = Mapping[str, Any]


def latest_row(
    rows: Iterable[Row], keys: Sequence[str], key_values: Sequence[Any], at: datetime, ttl_us: int
) -> Row | None:
    """The row with these keys and the greatest feature_ts live at ``at`` (``[at - ttl, at]``).

    Ties on feature_ts go to the greatest created_ts.
    """
    best: Row | None = None
    at_us = semantics.to_micros(at)
    for row in rows:
        if any(row[k] != v for k, v in zip(keys, key_values, strict=True)):
            continue
        if not semantics.is_live(semantics.to_micros(row["feature_ts"]), ttl_us, at_us):
            continue
        if best is None or (row["feature_ts"], row["created_ts"]) > (best["feature_ts"], best["created_ts"]):
            best = row
    return best


def expected_training_set(
    spine: Iterable[Row],
    requests: Sequence[ViewRequest],
    tables: Mapping[str, Sequence[Row]],
    timestamp_column: str,
) -> list[dict[str, Any]]:
    """One output row per spine row: the spine's values plus every requested feature."""
    out: list[dict[str, Any]] = []
    for spine_row in spine:
        result = dict(spine_row)
        for request in requests:
            view = request.view
            match = latest_row(
                tables[view.name],
                view.key_names,
                [spine_row[k] for k in view.key_names],
                spine_row[timestamp_column],
                semantics.ttl_us(view),
            )
            for feature in request.features:
                result[feature.column] = None if match is None else match[feature.feature.name]
        out.append(result)
    return out
