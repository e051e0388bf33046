"""approx_percentile, last_k, top_k, top_k_counts, first_seen and last_seen against the plain-Python
reference (docs/semantics.md, "List, time and percentile functions").

One generated scenario of 24 days on skewed data (log-normal and Pareto values, zeros, negatives,
ties, nulls, NaN, a drop-out); 20 daily runs and one 20-day backfill must both match the
reference (exactly, and approx_percentile within its documented 1% relative error), and must be
identical to each other.
"""

from __future__ import annotations

import math
import random
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from skewless import semantics
from skewless.manifest import Manifest
from skewless.offline.delta import delta_tables
from skewless.offline.jobs import days_between, run_view
from skewless.offline.schemas import view_schema
from skewless.offline.sketch import DOCUMENTED_ERROR
from skewless.runtime.settings import Settings
from tests.helpers import deploy, write_parquet
from tests.reference.aggregation import expected_rows

pytestmark = [pytest.mark.spark, pytest.mark.timeout(3600)]  # 20 daily runs and a backfill

VIEW = "merchant_lists"
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
          columns: {merchant_id: string, amount: float64, latency: float64, qty: int64,
                    category: string, status: string, ts: timestamp, event_date: string}
        ---
        view:
          name: merchant_lists
          version: 1
          kind: aggregation
          entity: merchant
          source: txns
          filter: "status = 'completed'"
          ttl: 3d
          features:
            - {name: n_7d, function: count, window: 7d}
            - {name: amount_p90_7d, function: approx_percentile, column: amount, percentile: 0.9, window: 7d}
            - {name: amount_pcts_3d, function: approx_percentile, column: amount,
               percentile: [0.0, 0.5, 0.99, 1.0], window: 3d}
            - {name: latency_p50_7d, function: approx_percentile, column: latency, percentile: 0.5,
               window: 7d}
            - {name: last5_amounts_7d, function: last_k, column: amount, k: 5, window: 7d}
            - {name: last3_categories_3d, function: last_k, column: category, k: 3, window: 3d}
            - {name: top_categories_7d, function: top_k, column: category, k: 3, window: 7d}
            - {name: top_category_counts_7d, function: top_k_counts, column: category, k: 3, window: 7d}
            - {name: top_qty_3d, function: top_k, column: qty, k: 2, window: 3d}
            - {name: first_seen_7d, function: first_seen, window: 7d}
            - {name: last_seen_3d, function: last_seen, window: 3d}
            - {name: first_amount_seen_7d, function: first_seen, column: amount, window: 7d}
    """,
}

SCHEMA = pa.schema(
    [
        ("merchant_id", pa.string()),
        ("amount", pa.float64()),
        ("latency", pa.float64()),
        ("qty", pa.int64()),
        ("category", pa.string()),
        ("status", pa.string()),
        ("ts", pa.timestamp("us", tz="UTC")),
        ("event_date", pa.string()),
    ]
)
APPROXIMATE = ("amount_p90_7d", "amount_pcts_3d", "latency_p50_7d")


def _at(day: int, seconds: float = 0.0) -> datetime:
    start = datetime(FIRST_EVENT_DAY.year, FIRST_EVENT_DAY.month, FIRST_EVENT_DAY.day, tzinfo=UTC)
    return start + timedelta(days=day, seconds=seconds)


def generate_events(seed: int = 11) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    events: list[dict[str, Any]] = []
    categories = ["grocery", "fuel", "travel", "games", "books"]

    def add(merchant: str, ts: datetime, amount: float | None, **kw: Any) -> None:
        events.append(
            {
                "merchant_id": merchant,
                "amount": amount,
                "latency": kw.get("latency", rng.paretovariate(1.2) - 1.0),
                "qty": kw.get("qty", rng.choice([1, 1, 1, 2, 2, 3, None])),
                "category": kw.get("category", rng.choice([*categories[: rng.randrange(1, 6)], None])),
                "status": kw.get("status", "completed"),
                "ts": ts,
                "event_date": ts.date().isoformat(),
            }
        )

    for day in range(24):
        for _ in range(rng.randrange(15, 30)):
            amount = None if rng.random() < 0.1 else round(rng.lognormvariate(3.0, 2.0), 2)
            status = "completed" if rng.random() < 0.85 else "declined"
            add(f"m{rng.randrange(6)}", _at(day, rng.uniform(0, 86399.999999)), amount, status=status)
        # A heavy, skewed merchant: Pareto amounts over six orders of magnitude, negatives, zeros.
        for _ in range(300):
            value = rng.paretovariate(0.8) * rng.choice([1.0, 1.0, 1.0, -1.0, 0.0])
            add("heavy", _at(day, rng.uniform(0, 86399.999999)), value, latency=rng.lognormvariate(0, 3))
    # Ties: equal times (last_k takes the larger value first), equal counts (smaller value first).
    for amount in (5.0, 9.0, 7.0):
        add("tie", _at(9, 3600), amount, category="b", qty=2)
    add("tie", _at(9, 3600), 1.0, category="a", qty=1)
    add("tie", _at(9, 3601), None, category="a", qty=1)  # later but null amount: not in last_k(amount)
    add("tie", _at(9, 3602), 3.0, category="c", qty=None)
    # NaN is a value for last_k, ignored by approx_percentile; one microsecond before midnight.
    add("nan", _at(12, 10), math.nan, category="x")
    add("nan", _at(13, -1e-6), 4.0, category="x")
    # Drops out and comes back; all amounts null; only filtered-out events.
    for day in (1, 2, 3):
        add("dropout", _at(day, 500), 20.0 + day)
    add("dropout", _at(17, 100), 99.0, category=None)
    add("nulls", _at(14, 10), None, category=None, qty=None, latency=None)
    add("declined_only", _at(11, 10), 1.0, status="declined")
    return events


def _table_rows(spark: Any, settings: Settings, manifest: Manifest) -> dict[tuple[Any, date], dict[str, Any]]:
    view = manifest.view(VIEW)
    frame = delta_tables(spark).read(settings.table_uri(view.table), view_schema(view))
    return {(tuple(r[k] for k in view.key_names), r["ds"]): r.asDict() for r in frame.collect()}


def _within_bound(actual: float, exact: float) -> bool:
    if math.isinf(exact) or exact == 0.0:
        return actual == exact
    return abs(actual - exact) <= DOCUMENTED_ERROR * abs(exact)


def _same(actual: Any, expected: Any, feature: str) -> bool:
    if expected is None or actual is None:
        return actual is expected
    if feature in APPROXIMATE:
        pairs = zip(actual, expected, strict=True) if isinstance(expected, list) else [(actual, expected)]
        return all(_within_bound(a, e) for a, e in pairs)
    if isinstance(expected, datetime):
        return semantics.to_micros(actual) == semantics.to_micros(expected)
    if isinstance(expected, list):
        return len(actual) == len(expected) and all(
            (isinstance(e, float) and math.isnan(e) and math.isnan(a)) or a == e
            for a, e in zip(actual, expected, strict=True)
        )
    return bool(actual == expected)


def _compare(
    actual: dict[Any, dict[str, Any]], expected: dict[Any, dict[str, Any] | None], view: Any
) -> list[str]:
    problems = [f"unexpected row {key}" for key in sorted(actual.keys() - expected.keys())]
    problems += [f"missing row {key}" for key in sorted(expected.keys() - actual.keys())]
    for key in sorted(actual.keys() & expected.keys()):
        row, want = actual[key], expected[key]
        for feature in view.feature_names:
            value = None if want is None else want[feature]
            if not _same(row[feature], value, feature):
                problems.append(f"{key} {feature}: got {row[feature]!r}, expected {value!r}")
    return problems


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, Any]]]:
    root = tmp_path_factory.mktemp("list_aggregations")
    events = generate_events()
    write_parquet(root / "data" / "txns", events, SCHEMA, partition_by="event_date")
    return root, events


@pytest.fixture(scope="module")
def daily(spark: Any, scenario: tuple[Path, list[dict[str, Any]]]) -> tuple[Settings, Manifest, list[Any]]:
    root, _ = scenario
    settings, manifest = deploy(root / "daily", TREE)
    settings = settings.model_copy(update={"data_root": str(root / "data")})
    results = [run_view(spark, settings, manifest, VIEW, day) for day in days_between(RUN_START, RUN_END)]
    return settings, manifest, results


def _expected(manifest: Manifest, events: list[dict[str, Any]]) -> dict[Any, dict[str, Any] | None]:
    view = manifest.view(VIEW)
    days = days_between(RUN_START, RUN_END)
    return expected_rows(view, events, days, passes_filter=lambda e: e["status"] == "completed")


def test_dtypes_of_the_new_functions(daily: Any) -> None:
    _, manifest, _ = daily
    dtypes = {f.name: f.dtype for f in manifest.view(VIEW).features}
    assert dtypes == {
        "n_7d": "int64",
        "amount_p90_7d": "float64",
        "amount_pcts_3d": "array<float64>",
        "latency_p50_7d": "float64",
        "last5_amounts_7d": "array<float64>",
        "last3_categories_3d": "array<string>",
        "top_categories_7d": "array<string>",
        "top_category_counts_7d": "array<int64>",
        "top_qty_3d": "array<int64>",
        "first_seen_7d": "timestamp",
        "last_seen_3d": "timestamp",
        "first_amount_seen_7d": "timestamp",
    }


def test_daily_runs_match_reference(spark: Any, scenario: Any, daily: Any) -> None:
    settings, manifest, results = daily
    view = manifest.view(VIEW)
    actual = _table_rows(spark, settings, manifest)
    expected = _expected(manifest, scenario[1])
    assert any(v is None for v in expected.values()), "scenario must contain a tombstone"
    ties = expected[(("tie",), date(2024, 3, 10))]
    assert ties is not None
    assert ties["last5_amounts_7d"] == [3.0, 9.0, 7.0, 5.0, 1.0]
    assert ties["top_categories_7d"] == ["b", "a", "c"]
    assert ties["top_category_counts_7d"] == [3, 2, 1]
    assert _compare(actual, expected, view) == []
    # A steady daily run still reads one day of raw events.
    assert all(r.raw_days_read == (r.start,) for r in results[8:])


def test_percentile_error_bound_on_skewed_data(spark: Any, scenario: Any, daily: Any) -> None:
    """The heavy merchant's 2,100 Pareto values over 7 days: every level within 1% of the exact value."""
    settings, manifest, _ = daily
    actual = _table_rows(spark, settings, manifest)
    expected = _expected(manifest, scenario[1])
    heavy = [(k, r) for k, r in actual.items() if k[0] == ("heavy",)]
    assert len(heavy) == 20
    worst = 0.0
    for key, row in heavy:
        want = expected[key]
        assert want is not None
        for got, exact in zip(row["amount_pcts_3d"], want["amount_pcts_3d"], strict=True):
            assert _within_bound(got, exact), (key, got, exact)
            if exact:
                worst = max(worst, abs(got - exact) / abs(exact))
        assert _within_bound(row["amount_p90_7d"], want["amount_p90_7d"])
    values = [e["amount"] for e in scenario[1] if e["merchant_id"] == "heavy"]
    assert max(abs(v) for v in values) / min(abs(v) for v in values if v) > 1e3  # skewed indeed
    assert 0 < worst <= DOCUMENTED_ERROR


def test_backfill_matches_reference_and_daily_runs_exactly(spark: Any, scenario: Any, daily: Any) -> None:
    root, events = scenario
    daily_settings, manifest, _ = daily
    settings, _ = deploy(root / "backfill", TREE)
    settings = settings.model_copy(update={"data_root": str(root / "data")})
    result = run_view(spark, settings, manifest, VIEW, RUN_START, RUN_END)
    assert result.raw_days_read == tuple(days_between(RUN_START - timedelta(days=7), RUN_END))

    backfilled = _table_rows(spark, settings, manifest)
    assert _compare(backfilled, _expected(manifest, events), manifest.view(VIEW)) == []

    def strip(rows: dict[Any, dict[str, Any]]) -> dict[Any, str]:
        # repr keeps NaN comparable and float bits visible
        return {k: repr({c: v for c, v in r.items() if c != "created_ts"}) for k, r in rows.items()}

    assert strip(backfilled) == strip(_table_rows(spark, daily_settings, manifest))
