"""The planner: the deployed manifest vs a new one, both compiled from small YAML trees."""

from __future__ import annotations

from datetime import date
from itertools import count
from pathlib import Path
from typing import Protocol

import pytest

from skewless.compile import compile_tree
from skewless.manifest import Manifest
from skewless.plan import Backfill, Change, DateRange, Plan, plan

ENTITIES = """\
entity:
  name: merchant
  join_keys: {merchant_id: string}
---
entity:
  name: customer
  join_keys: {customer_id: int64}
"""

SOURCES = """\
source:
  name: transactions
  path: raw/transactions
  format: parquet
  timestamp: ts
  columns:
    merchant_id: string
    customer_id: int64
    amount: float64
    status: string
    ts: timestamp
    booked_at: timestamp
---
source:
  name: customer_stats_raw
  path: raw/customer_stats
  format: parquet
  timestamp: snapshot_ts
  columns: {customer_id: int64, snapshot_ts: timestamp, total_orders: int64, segment: string}
"""

MERCHANT_TXN = """\
view:
  name: merchant_txn
  version: 1
  kind: aggregation
  entity: merchant
  source: transactions
  filter: "status = 'completed'"
  ttl: 2d
  features:
    - {name: txn_count_7d, function: count, window: 7d}
    - {name: amount_sum_30d, function: sum, column: amount, window: 30d}
  expectations:
    - {feature: amount_sum_30d, between: [0, null]}
"""

CUSTOMER_STATS = """\
view:
  name: customer_stats
  version: 1
  kind: snapshot
  entity: customer
  source: customer_stats_raw
  ttl: 2d
  features:
    - {name: total_orders, dtype: int64}
"""

SERVICES = """\
service:
  name: fraud_model
  features: [merchant_txn:txn_count_7d, customer_stats:total_orders]
"""

BASE = {
    "entities.yaml": ENTITIES,
    "sources.yaml": SOURCES,
    "views/merchant_txn.yaml": MERCHANT_TXN,
    "views/customer_stats.yaml": CUSTOMER_STATS,
    "services.yaml": SERVICES,
}

TXN_TABLE = "views/merchant_txn/v1"
JAN_MAR = DateRange(date(2024, 1, 1), date(2024, 3, 31))

_trees = count()


class Build(Protocol):
    def __call__(
        self,
        edits: dict[str, tuple[str, str]] | None = None,
        files: dict[str, str | None] | None = None,
    ) -> Manifest: ...


@pytest.fixture
def build(tmp_path: Path) -> Build:
    """Compile ``BASE`` with the given files replaced, edited or removed."""

    def _build(
        edits: dict[str, tuple[str, str]] | None = None,
        files: dict[str, str | None] | None = None,
    ) -> Manifest:
        tree = dict(BASE)
        for name, text in (files or {}).items():
            if text is None:
                del tree[name]
            else:
                tree[name] = text
        for name, (old, new) in (edits or {}).items():
            assert old in tree[name], f"test bug: {old!r} not in {name}"
            tree[name] = tree[name].replace(old, new)
        root = tmp_path / f"defs{next(_trees)}"
        for name, text in tree.items():
            path = root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        return compile_tree(root)

    return _build


def _change(result: Plan, kind: str, name: str) -> Change:
    matches = [c for c in result.changes if (c.kind, c.name) == (kind, name)]
    assert len(matches) == 1, result.changes
    return matches[0]


def test_same_definitions_plan_no_change(build: Build) -> None:
    deployed = build()
    result = plan(deployed, build(), {TXN_TABLE: JAN_MAR})
    assert result == Plan(old_hash=deployed.registry_hash, new_hash=deployed.registry_hash)
    assert not result.has_changes


def test_nothing_deployed_adds_everything_with_backfills(build: Build) -> None:
    result = plan(None, build())
    assert result.old_hash is None
    assert [(c.kind, c.name, c.action) for c in result.changes] == [
        ("entity", "customer", "added"),
        ("entity", "merchant", "added"),
        ("source", "customer_stats_raw", "added"),
        ("source", "transactions", "added"),
        ("view", "customer_stats", "added"),
        ("view", "merchant_txn", "added"),
        ("service", "fraud_model", "added"),
    ]
    assert result.breaking == ()
    assert result.backfills == (
        Backfill("customer_stats", "views/customer_stats/v1", "new view", None),
        Backfill("merchant_txn", TXN_TABLE, "new view", None),
    )


def test_added_feature_is_compatible_and_backfills_the_committed_range(build: Build) -> None:
    new = build(
        edits={
            "views/merchant_txn.yaml": (
                "  expectations:",
                "    - {name: amount_avg_7d, function: avg, column: amount, window: 7d}\n  expectations:",
            )
        }
    )
    result = plan(build(), new, {TXN_TABLE: JAN_MAR, "views/customer_stats/v1": JAN_MAR})
    assert result.breaking == ()
    assert [(c.kind, c.name) for c in result.changes] == [("view", "merchant_txn")]
    assert _change(result, "view", "merchant_txn").details == ("feature amount_avg_7d: added",)
    assert result.backfills == (Backfill("merchant_txn", TXN_TABLE, "feature added: amount_avg_7d", JAN_MAR),)


def test_added_feature_without_committed_partitions_has_no_range(build: Build) -> None:
    new = build(
        edits={
            "views/merchant_txn.yaml": (
                "  expectations:",
                "    - {name: n_1d, function: count, window: 1d}\n  expectations:",
            )
        }
    )
    (backfill,) = plan(build(), new).backfills
    assert backfill.table == TXN_TABLE
    assert backfill.partitions is None


def test_changed_window_without_version_bump_is_breaking(build: Build) -> None:
    new = build(
        edits={
            "views/merchant_txn.yaml": (
                "{name: txn_count_7d, function: count, window: 7d}",
                "{name: txn_count_7d, function: count, window: 14d}",
            )
        }
    )
    result = plan(build(), new, {TXN_TABLE: JAN_MAR})
    assert len(result.breaking) == 1
    (reason,) = result.breaking
    assert "merchant_txn" in reason
    assert "txn_count_7d" in reason
    assert "window_days: 7 -> 14" in reason
    assert "feature txn_count_7d: window_days: 7 -> 14" in _change(result, "view", "merchant_txn").details
    assert result.backfills == ()


def test_changed_filter_without_version_bump_breaks_every_feature(build: Build) -> None:
    new = build(edits={"views/merchant_txn.yaml": ("status = 'completed'", "status <> 'refused'")})
    result = plan(build(), new, {TXN_TABLE: JAN_MAR})
    assert len(result.breaking) == 2
    for feature, reason in zip(["txn_count_7d", "amount_sum_30d"], result.breaking, strict=True):
        assert f"feature {feature} changed meaning" in reason
        assert "filter: status = 'completed' -> status <> 'refused'" in reason
    assert result.backfills == ()


def test_removed_feature_without_version_bump_is_breaking(build: Build) -> None:
    # the expectation on the removed feature goes too
    new = build(
        edits={
            "views/merchant_txn.yaml": (
                "    - {name: amount_sum_30d, function: sum, column: amount, window: 30d}\n"
                "  expectations:\n    - {feature: amount_sum_30d, between: [0, null]}\n",
                "",
            )
        }
    )
    result = plan(build(), new)
    (reason,) = result.breaking
    assert "feature amount_sum_30d removed" in reason
    assert "feature amount_sum_30d: removed" in _change(result, "view", "merchant_txn").details


def test_version_bump_allows_the_change_and_proposes_the_old_range(build: Build) -> None:
    new = build(
        edits={
            "views/merchant_txn.yaml": (
                "version: 1\n  kind: aggregation\n  entity: merchant\n  source: transactions\n"
                "  filter: \"status = 'completed'\"",
                "version: 2\n  kind: aggregation\n  entity: merchant\n  source: transactions\n"
                "  filter: \"status <> 'refused'\"",
            )
        }
    )
    assert new.views["merchant_txn"].table == "views/merchant_txn/v2"
    result = plan(build(), new, {TXN_TABLE: JAN_MAR})
    assert result.breaking == ()
    details = _change(result, "view", "merchant_txn").details
    assert "version: 1 -> 2" in details
    assert "new table views/merchant_txn/v2 (the v1 table views/merchant_txn/v1 is kept)" in details
    assert "filter: status = 'completed' -> status <> 'refused'" in details
    (backfill,) = result.backfills
    assert backfill.view == "merchant_txn"
    assert backfill.table == "views/merchant_txn/v2"
    assert backfill.partitions == JAN_MAR  # the v1 table's committed range


def test_version_going_down_is_breaking(build: Build) -> None:
    deployed = build(edits={"views/merchant_txn.yaml": ("version: 1", "version: 3")})
    result = plan(deployed, build(), {"views/merchant_txn/v3": JAN_MAR})
    (reason,) = result.breaking
    assert "merchant_txn" in reason
    assert "version went down (3 -> 1)" in reason
    assert result.backfills == ()


def test_removed_view_is_listed_and_its_table_kept(build: Build) -> None:
    new = build(
        files={"views/customer_stats.yaml": None},
        edits={"services.yaml": (", customer_stats:total_orders", "")},
    )
    result = plan(build(), new, {"views/customer_stats/v1": JAN_MAR})
    assert result.breaking == ()
    assert result.backfills == ()
    removed = _change(result, "view", "customer_stats")
    assert removed.action == "removed"
    assert removed.details == ("table views/customer_stats/v1 is kept, no longer updated",)
    assert _change(result, "service", "fraud_model").details == (
        "feature customer_stats:total_orders: removed",
    )


def test_ttl_and_expectations_changes_are_compatible_without_backfill(build: Build) -> None:
    new = build(
        files={
            "views/merchant_txn.yaml": MERCHANT_TXN.replace("ttl: 2d", "ttl: 3d").replace(
                "between: [0, null]", "between: [0, 1000000]"
            )
        }
    )
    result = plan(build(), new, {TXN_TABLE: JAN_MAR})
    assert result.breaking == ()
    assert result.backfills == ()
    details = _change(result, "view", "merchant_txn").details
    assert details == ("ttl_seconds: 172800 -> 259200", "expectations changed")


def test_service_added_and_changed(build: Build) -> None:
    new = build(
        files={
            "services.yaml": SERVICES.replace("customer_stats:total_orders", "merchant_txn:amount_sum_30d")
            + "---\nservice:\n  name: churn_model\n  features: [customer_stats:total_orders]\n"
        }
    )
    result = plan(build(), new, {TXN_TABLE: JAN_MAR})
    assert result.breaking == ()
    assert result.backfills == ()
    assert [(c.kind, c.name, c.action) for c in result.changes] == [
        ("service", "churn_model", "added"),
        ("service", "fraud_model", "changed"),
    ]
    assert _change(result, "service", "fraud_model").details == (
        "feature merchant_txn:amount_sum_30d: added",
        "feature customer_stats:total_orders: removed",
    )


def test_source_path_change_is_compatible(build: Build) -> None:
    new = build(edits={"sources.yaml": ("path: raw/transactions", "path: s3://lake/transactions")})
    result = plan(build(), new, {TXN_TABLE: JAN_MAR})
    assert result.breaking == ()
    assert result.backfills == ()
    assert _change(result, "source", "transactions").details == (
        "path: raw/transactions -> s3://lake/transactions",
    )
    assert _change(result, "view", "merchant_txn").details == (
        "source.path: raw/transactions -> s3://lake/transactions",
    )


def test_source_timestamp_change_is_breaking_for_every_feature_reading_it(build: Build) -> None:
    new = build(edits={"sources.yaml": ("timestamp: ts", "timestamp: booked_at")})
    result = plan(build(), new, {TXN_TABLE: JAN_MAR})
    assert len(result.breaking) == 2
    assert all("merchant_txn" in r and "source.timestamp: ts -> booked_at" in r for r in result.breaking)
    assert {r.split("feature ")[1].split(" ")[0] for r in result.breaking} == {
        "txn_count_7d",
        "amount_sum_30d",
    }
    # the other source and its view are untouched
    assert [(c.kind, c.name) for c in result.changes] == [
        ("source", "transactions"),
        ("view", "merchant_txn"),
    ]


def test_view_switching_source_without_version_bump_is_breaking(build: Build) -> None:
    """A feature's meaning includes its source, even when the timestamps look alike (docs)."""
    copy = SOURCES.split("---")[0].replace("name: transactions", "name: transactions_eu")
    new = build(
        edits={"views/merchant_txn.yaml": ("source: transactions", "source: transactions_eu")},
        files={"sources.yaml": SOURCES + "---\n" + copy},
    )
    result = plan(build(), new)
    assert len(result.breaking) == 2
    assert all("merchant_txn" in r for r in result.breaking)
