"""Aggregation views against the plain-Python reference (docs/semantics.md, Aggregation views).

One generated scenario of 24 days with every edge case; 20 daily runs and one 20-day backfill
must both match the reference, and must be identical to each other.
"""

from __future__ import annotations

import math
import random
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from skewless.manifest import Manifest
from skewless.offline.delta import delta_tables
from skewless.offline.jobs import days_between, run_view
from skewless.offline.schemas import view_schema
from skewless.runtime.settings import Settings
from tests.helpers import deploy, write_parquet
from tests.reference.aggregation import expected_rows

pytestmark = pytest.mark.spark

FIRST_EVENT_DAY = date(2024, 3, 1)
RUN_START, RUN_END = date(2024, 3, 4), date(2024, 3, 23)

TREE = {
    "entities.yaml": """
        entity:
          name: merchant
          join_keys: {merchant_id: string}
    """,
    "txn.yaml": """
        source:
          name: txns
          path: txns
          format: parquet
          timestamp: ts
          partition_column: event_date
          columns: {merchant_id: string, customer_id: int64, amount: float64, qty: int64,
                    status: string, ts: timestamp, event_date: string}
        ---
        view:
          name: merchant_activity
          version: 1
          kind: aggregation
          entity: merchant
          source: txns
          filter: "status = 'completed'"
          ttl: 3d
          availability_lag: 2h
          features:
            - {name: n_1d, function: count, window: 1d}
            - {name: n_3d, function: count, window: 3d}
            - {name: n_amount_7d, function: count, column: amount, window: 7d}
            - {name: amount_sum_3d, function: sum, column: amount, window: 3d}
            - {name: qty_sum_7d, function: sum, column: qty, window: 7d}
            - {name: amount_avg_7d, function: avg, column: amount, window: 7d}
            - {name: amount_min_3d, function: min, column: amount, window: 3d}
            - {name: amount_max_7d, function: max, column: amount, window: 7d}
            - {name: amount_std_7d, function: stddev, column: amount, window: 7d}
            - {name: last_amount_7d, function: last, column: amount, window: 7d}
            - {name: last_qty_1d, function: last, column: qty, window: 1d}
            - {name: customers_7d, function: approx_count_distinct, column: customer_id, window: 7d}
    """,
}

SCHEMA = pa.schema(
    [
        ("merchant_id", pa.string()),
        ("customer_id", pa.int64()),
        ("amount", pa.float64()),
        ("qty", pa.int64()),
        ("status", pa.string()),
        ("ts", pa.timestamp("us", tz="UTC")),
        ("event_date", pa.string()),
    ]
)


def _at(day: int, seconds: float = 0.0) -> datetime:
    start = datetime(FIRST_EVENT_DAY.year, FIRST_EVENT_DAY.month, FIRST_EVENT_DAY.day, tzinfo=UTC)
    return start + timedelta(days=day, seconds=seconds)


def generate_events(seed: int = 7) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    events: list[dict[str, Any]] = []

    def add(merchant: str, ts: datetime, amount: float | None, qty: int | None = 1, **kw: Any) -> None:
        events.append(
            {
                "merchant_id": merchant,
                "customer_id": kw.get("customer", rng.randrange(40)),
                "amount": amount,
                "qty": qty,
                "status": kw.get("status", "completed"),
                "ts": ts,
                "event_date": ts.date().isoformat(),
            }
        )

    # Background traffic: every day has events, so steady daily runs need no history recompute.
    for day in range(24):
        for _ in range(rng.randrange(15, 30)):
            merchant = f"m{rng.randrange(8)}"
            amount = None if rng.random() < 0.1 else round(rng.uniform(1, 500), 2)
            qty = None if rng.random() < 0.05 else rng.randrange(1, 5)
            status = "completed" if rng.random() < 0.85 else "declined"
            add(merchant, _at(day, rng.uniform(0, 86399.999)), amount, qty, status=status)
    # Exactly at midnight: belongs to the new day, outside the previous day's window.
    for day in (5, 6, 12):
        add("midnight", _at(day), 10.0 * day)
    add("midnight", _at(7, -1e-6), 70.0)  # one microsecond before midnight of day 7
    # Same-timestamp tie for `last`: the larger value wins.
    add("tie", _at(9, 3600), 5.0, qty=2)
    add("tie", _at(9, 3600), 9.0, qty=1)
    add("tie", _at(9, 7200), None, qty=None)  # later but null: ignored by last()
    # Drops out (no event for > 7 days) and comes back.
    for day in (1, 2, 3):
        add("dropout", _at(day, 500), 20.0 + day)
    add("dropout", _at(17, 100), 99.0)
    # Seen only once.
    add("once", _at(10, 43200), 42.0, customer=3)
    # Only filtered-out events: never gets a row.
    add("declined_only", _at(11, 10), 1.0, status="declined")
    # All amounts null: counts of a column are 0, sum/avg/min/max null.
    add("nulls", _at(14, 10), None)
    add("nulls", _at(14, 20), None)
    return events


def _table_rows(spark: Any, settings: Settings, manifest: Manifest) -> dict[tuple[Any, date], dict[str, Any]]:
    view = manifest.view("merchant_activity")
    frame = delta_tables(spark).read(settings.table_uri(view.table), view_schema(view))
    return {(tuple(r[k] for k in view.key_names), r["ds"]): r.asDict() for r in frame.collect()}


def _close(actual: Any, expected: Any, feature: str) -> bool:
    if expected is None or actual is None:
        return actual is expected
    if feature == "customers_7d":  # HLL sketch estimate
        return abs(actual - expected) <= max(1, 0.02 * expected)
    if isinstance(expected, float):
        return math.isclose(actual, expected, rel_tol=1e-9, abs_tol=1e-9)
    return bool(actual == expected)


def _compare(
    actual: dict[Any, dict[str, Any]], expected: dict[Any, dict[str, Any] | None], manifest: Manifest
) -> list[str]:
    view = manifest.view("merchant_activity")
    problems = []
    for key in sorted(actual.keys() - expected.keys()):
        problems.append(f"unexpected row {key}")
    for key in sorted(expected.keys() - actual.keys()):
        problems.append(f"missing row {key}")
    for key in sorted(actual.keys() & expected.keys()):
        row, want = actual[key], expected[key]
        ds = key[1]
        boundary = datetime(ds.year, ds.month, ds.day) + timedelta(days=1, hours=2)
        if row["feature_ts"] != boundary:
            problems.append(f"{key}: feature_ts {row['feature_ts']} != {boundary}")
        for feature in view.feature_names:
            value = None if want is None else want[feature]
            if not _close(row[feature], value, feature):
                problems.append(f"{key} {feature}: got {row[feature]!r}, expected {value!r}")
    return problems


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, Any]]]:
    root = tmp_path_factory.mktemp("aggregation")
    events = generate_events()
    write_parquet(root / "data" / "txns", events, SCHEMA, partition_by="event_date")
    return root, events


@pytest.fixture(scope="module")
def daily(spark: Any, scenario: tuple[Path, list[dict[str, Any]]]) -> tuple[Settings, Manifest, list[Any]]:
    root, _ = scenario
    settings, manifest = deploy(root / "daily", TREE)
    settings = settings.model_copy(update={"data_root": str(root / "data")})
    results = [
        run_view(spark, settings, manifest, "merchant_activity", day)
        for day in days_between(RUN_START, RUN_END)
    ]
    return settings, manifest, results


def _expected(manifest: Manifest, events: list[dict[str, Any]]) -> dict[Any, dict[str, Any] | None]:
    view = manifest.view("merchant_activity")
    return expected_rows(
        view, events, days_between(RUN_START, RUN_END), passes_filter=lambda e: e["status"] == "completed"
    )


def test_daily_runs_match_reference(spark: Any, scenario: Any, daily: Any) -> None:
    settings, manifest, _ = daily
    actual = _table_rows(spark, settings, manifest)
    expected = _expected(manifest, scenario[1])
    assert len(expected) > 150
    assert any(v is None for v in expected.values()), "scenario must contain a tombstone"
    assert _compare(actual, expected, manifest) == []


def test_steady_daily_run_reads_one_day_of_events(daily: Any) -> None:
    _, manifest, results = daily
    longest = manifest.view("merchant_activity").max_window_days
    first = results[0]
    assert len(first.raw_days_read) == longest + 1  # the first run builds the history it needs
    # Days with no events have no tiles to commit, so they are looked at again (pruned to nothing);
    # once the history holds only days with events, a daily run reads exactly its own day.
    for result in results[1:]:
        extra = set(result.raw_days_read) - {result.start}
        assert all(day < FIRST_EVENT_DAY for day in extra), result
    steady = [r for r in results if r.start - timedelta(days=longest) >= FIRST_EVENT_DAY]
    assert len(steady) >= 15
    assert all(r.raw_days_read == (r.start,) for r in steady)


def test_backfill_matches_reference_and_daily_runs_exactly(spark: Any, scenario: Any, daily: Any) -> None:
    root, events = scenario
    daily_settings, manifest, _ = daily
    settings, _ = deploy(root / "backfill", TREE)
    settings = settings.model_copy(update={"data_root": str(root / "data")})
    result = run_view(spark, settings, manifest, "merchant_activity", RUN_START, RUN_END)
    assert result.raw_days_read == tuple(days_between(RUN_START - timedelta(days=7), RUN_END))

    backfilled = _table_rows(spark, settings, manifest)
    assert _compare(backfilled, _expected(manifest, events), manifest) == []

    daily_rows = _table_rows(spark, daily_settings, manifest)
    strip = lambda rows: {k: {c: v for c, v in r.items() if c != "created_ts"} for k, r in rows.items()}  # noqa: E731
    assert strip(backfilled) == strip(daily_rows)  # bit-identical, floats included
