"""A plain-Python reading of docs/semantics.md ("Aggregation views"), row by row, for tests.

Deliberately naive: it recomputes every window from raw events, with no tiles and no shortcuts.
Boundaries, windows and ``feature_ts`` come from :mod:`skewless.semantics`.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from datetime import date, datetime, timedelta
from typing import Any

from skewless import semantics
from skewless.manifest import FeatureSpec, ViewSpec

Event = Mapping[str, Any]
Key = tuple[Any, ...]


def _window(events: list[Event], ts_column: str, end: datetime, days: int) -> list[Event]:
    begin = semantics.window_start(end, days)
    return [e for e in events if begin <= e[ts_column] < end]


def _value(feature: FeatureSpec, events: list[Event], ts_column: str) -> Any:
    column = feature.column
    if feature.function == "count":
        return len(events) if column is None else sum(e[column] is not None for e in events)
    if feature.function in ("first_seen", "last_seen"):
        times = [e[ts_column] for e in events if column is None or e[column] is not None]
        if not times:
            return None
        return min(times) if feature.function == "first_seen" else max(times)
    assert column is not None
    present = [e for e in events if e[column] is not None]
    values = [e[column] for e in present]
    if feature.function == "approx_count_distinct":
        return len(set(values))
    if not values:
        return None
    if feature.function == "last_k":
        # Newest first; equal times: the larger value first (the rule of `last`).
        assert feature.k is not None
        return [value for _, value in sorted(((e[ts_column], e[column]) for e in present), reverse=True)][
            : feature.k
        ]
    if feature.function in ("top_k", "top_k_counts"):
        # Most frequent first; equal counts: the smaller value first.
        assert feature.k is not None
        ranked = sorted(Counter(values).items(), key=lambda item: (-item[1], item[0]))[: feature.k]
        return [v if feature.function == "top_k" else n for v, n in ranked]
    if feature.function == "approx_percentile":
        # The exact value of rank max(1, ceil(q n)) (nearest rank); NaN ignored. The view's value
        # must lie within the documented relative error of it.
        assert feature.percentiles is not None
        ordered = sorted(v for v in values if not math.isnan(v))
        if not ordered:
            return None
        exact = [ordered[max(1, math.ceil(q * len(ordered))) - 1] for q in feature.percentiles]
        return exact if feature.dtype.startswith("array<") else exact[0]
    if feature.function == "sum":
        return math.fsum(values) if isinstance(values[0], float) else sum(values)
    if feature.function == "avg":
        return math.fsum(values) / len(values)
    if feature.function == "min":
        return min(values)
    if feature.function == "max":
        return max(values)
    if feature.function == "stddev":
        return statistics.stdev(values) if len(values) >= 2 else None
    if feature.function == "last":
        return max((e[ts_column], e[column]) for e in present)[1]
    raise ValueError(feature.function)


def expected_rows(
    view: ViewSpec, events: Iterable[Event], days: Iterable[date], passes_filter: Any = None
) -> dict[tuple[Key, date], dict[str, Any] | None]:
    """``(keys, ds) -> feature values`` (None for a tombstone) for every row the view must have.

    ``events`` hold the source columns with a timezone-aware ``view.source.timestamp``;
    ``passes_filter`` is the view's filter as a Python predicate.
    """
    ts_column = view.source.timestamp
    by_entity: dict[Key, list[Event]] = defaultdict(list)
    for event in events:
        if passes_filter is None or passes_filter(event):
            by_entity[tuple(event[k] for k in view.key_names)].append(event)
    longest = view.max_window_days
    rows: dict[tuple[Key, date], dict[str, Any] | None] = {}
    for ds in days:
        end = semantics.boundary(ds)
        for key, entity_events in by_entity.items():
            present_now = bool(_window(entity_events, ts_column, end, longest))
            present_before = bool(
                _window(entity_events, ts_column, semantics.boundary(ds - timedelta(days=1)), longest)
            )
            if present_now:
                values: dict[str, Any] = {
                    f.name: _value(f, _window(entity_events, ts_column, end, f.window_days or 0), ts_column)
                    for f in view.features
                }
                values["feature_ts"] = semantics.feature_ts(view, ds)
                rows[(key, ds)] = values
            elif present_before:
                rows[(key, ds)] = None  # dropped out today: tombstone
    return rows
