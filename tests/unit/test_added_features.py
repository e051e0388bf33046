"""Added features, the pure rules: what ``plan`` allows, which views ``apply`` grows, and which
committed tile days a run must rebuild (docs/feature-definitions.md, "Changes and versions")."""

from __future__ import annotations

from datetime import date, timedelta

from tests.unit.test_planner import CUSTOMER_STATS, JAN_MAR, MERCHANT_TXN, TXN_TABLE, Build, build

from skewless.manifest import Manifest
from skewless.offline.aggregation import ROWS, incomplete_tile_days, tile_column_windows
from skewless.offline.evolution import grown_views
from skewless.plan import plan

__all__ = ["build"]  # the fixture

ADD_AVG = (
    "  expectations:",
    "    - {name: amount_avg_7d, function: avg, column: amount, window: 7d}\n"
    "    - {name: amount_max_3d, function: max, column: amount, window: 3d}\n"
    "  expectations:",
)


def _grown(build: Build) -> Manifest:
    return build(edits={"views/merchant_txn.yaml": ADD_AVG})


def test_a_renamed_feature_is_a_removal_and_breaks(build: Build) -> None:
    new = build(
        edits={"views/merchant_txn.yaml": ("name: txn_count_7d, function", "name: txn_n_7d, function")},
        files={"services.yaml": "service:\n  name: fraud_model\n  features: [merchant_txn:txn_n_7d]\n"},
    )
    result = plan(build(), new, {TXN_TABLE: JAN_MAR})
    (reason,) = result.breaking
    assert "feature txn_count_7d removed" in reason
    assert result.backfills == ()  # the added half backfills nothing while the plan is refused


def test_a_changed_function_or_column_breaks(build: Build) -> None:
    for old, new_text in (
        ("{name: amount_sum_30d, function: sum,", "{name: amount_sum_30d, function: max,"),
        ("function: sum, column: amount", "function: sum, column: customer_id"),
    ):
        result = plan(
            build(), build(edits={"views/merchant_txn.yaml": (old, new_text)}), {TXN_TABLE: JAN_MAR}
        )
        (reason,) = result.breaking
        assert "feature amount_sum_30d changed meaning" in reason
        assert result.backfills == ()


def test_a_changed_snapshot_dtype_breaks(build: Build) -> None:
    new = build(
        files={
            "views/customer_stats.yaml": CUSTOMER_STATS.replace(
                "{name: total_orders, dtype: int64}", "{name: total_orders, dtype: float64}"
            )
        }
    )
    (reason,) = plan(build(), new).breaking
    assert "customer_stats" in reason
    assert "total_orders changed meaning" in reason


def test_grown_views_are_those_that_keep_their_version_and_gain_features(build: Build) -> None:
    deployed = build()
    assert [v.name for v in grown_views(deployed, _grown(build))] == ["merchant_txn"]
    assert grown_views(None, _grown(build)) == []  # nothing deployed: first runs create the tables
    assert grown_views(deployed, deployed) == []
    bumped = build(files={"views/merchant_txn.yaml": MERCHANT_TXN.replace("version: 1", "version: 2")})
    assert grown_views(deployed, bumped) == []  # a new version is a new table
    ttl_only = build(edits={"views/merchant_txn.yaml": ("ttl: 2d", "ttl: 3d")})
    assert grown_views(deployed, ttl_only) == []


def test_tile_column_windows_are_the_longest_window_reading_each_column(build: Build) -> None:
    view = _grown(build).view("merchant_txn")
    assert tile_column_windows(view) == {
        ROWS: 30,  # txn_count_7d reads it for 7 days; liveness over the longest window
        "amount__n": 30,  # the 30-day sum and the 7-day average
        "amount__sum": 30,
        "amount__max": 3,
    }


def test_incomplete_tile_days_are_those_a_window_reads_without_its_column(build: Build) -> None:
    deployed, grown = build().view("merchant_txn"), _grown(build).view("merchant_txn")
    first = date(2024, 4, 1)
    old_columns = frozenset({"merchant_id", ROWS, "amount__n", "amount__sum"})
    held = {first - timedelta(days=back): old_columns for back in range(1, 31)}
    # The deployed view finds every column it reads.
    assert incomplete_tile_days(deployed, first, held) == []
    # The 3-day max reads the last 2 committed days before the run's first ds (and that ds).
    assert incomplete_tile_days(grown, first, held) == [date(2024, 3, 30), date(2024, 3, 31)]
    # A day already rebuilt with the column is complete; days inside the run's range need it too.
    held[date(2024, 3, 31)] = old_columns | {"amount__max"}
    held[first] = old_columns
    assert incomplete_tile_days(grown, first, held) == [date(2024, 3, 30), first]
    # Further back than the 3-day window, the new column is not needed: the old tile serves.
    assert incomplete_tile_days(grown, first, {date(2024, 3, 29): old_columns}) == []
    # Any column a window reads counts, not only new ones.
    assert incomplete_tile_days(grown, first, {date(2024, 3, 3): frozenset({ROWS})}) == [date(2024, 3, 3)]
