"""``description``, ``owner`` and ``tags`` (docs/catalog.md): carried in the manifest, never semantics.

The same tree compiled with and without the catalog fields on every kind of object must keep every
feature's meaning hash, plan as a non-breaking change without backfills, and a tree without them
must serialise exactly as before (no new keys: deployed registries keep their hash).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.helpers import write_tree

from skewless.compile import compile_tree
from skewless.manifest import CATALOG_FIELDS, Manifest
from skewless.plan import plan, render_text

BASE = Path(__file__).parent / "spec_cases" / "_base"

CATALOGUED = {
    "entities.yaml": """
        entity:
          name: merchant
          join_keys: {merchant_id: string}
          description: A merchant accepting card payments.
          owner: payments-core
          tags: [payments]
        ---
        entity:
          name: customer
          join_keys: {customer_id: int64}
    """,
    "sources.yaml": (BASE / "sources.yaml")
    .read_text(encoding="utf-8")
    .replace(
        "  name: transactions\n",
        "  name: transactions\n  description: Card transactions from the gateway.\n"
        "  owner: data-platform@example.com\n  tags: [raw, pci]\n",
        1,
    ),
    "views.yaml": """
        view:
          name: merchant_txn
          version: 1
          kind: aggregation
          entity: merchant
          source: transactions
          ttl: 2d
          description: |
            Transaction velocity per merchant.
          owner: fraud-ml
          tags: [fraud, velocity]
          features:
            - {name: txn_count_7d, function: count, window: 7d, description: Transactions in 7 days.}
            - name: amount_sum_7d
              function: sum
              column: amount
              window: 7d
              owner: finance-analytics
              tags: [money]
        ---
        view:
          name: customer_stats
          version: 1
          kind: snapshot
          entity: customer
          source: customer_stats_raw
          ttl: 2d
          features:
            - {name: total_orders, dtype: int64, tags: [orders]}
    """,
    "services.yaml": """
        service:
          name: fraud_model
          description: Real-time fraud scoring.
          owner: fraud-ml
          tags: [fraud]
          features: [merchant_txn:txn_count_7d, customer_stats:total_orders]
    """,
}


def _plain(tmp_path: Path) -> Manifest:
    shutil.copytree(BASE, tmp_path / "plain")
    return compile_tree(tmp_path / "plain")


def _catalogued(tmp_path: Path) -> Manifest:
    return compile_tree(write_tree(tmp_path / "catalogued", CATALOGUED))


def test_catalog_fields_reach_the_manifest(tmp_path: Path) -> None:
    manifest = _catalogued(tmp_path)
    view = manifest.view("merchant_txn")
    assert (view.description, view.owner, view.tags) == (
        "Transaction velocity per merchant.",  # a YAML block's trailing newline is stripped
        "fraud-ml",
        ("fraud", "velocity"),
    )
    assert view.feature("txn_count_7d").description == "Transactions in 7 days."
    assert view.feature("txn_count_7d").owner is None  # the site shows the view's owner for it
    assert (view.feature("amount_sum_7d").owner, view.feature("amount_sum_7d").tags) == (
        "finance-analytics",
        ("money",),
    )
    assert manifest.entities["merchant"].tags == ("payments",)
    assert manifest.sources["transactions"].owner == "data-platform@example.com"
    assert manifest.services["fraud_model"].owner == "fraud-ml"
    assert Manifest.from_json(manifest.to_json(), "test") == manifest


def test_catalog_fields_change_no_meaning_hash(tmp_path: Path) -> None:
    plain, catalogued = _plain(tmp_path), _catalogued(tmp_path)
    for name, view in plain.views.items():
        assert [f.meaning_hash for f in view.features] == [
            f.meaning_hash for f in catalogued.view(name).features
        ]


def test_a_tree_without_catalog_fields_serialises_without_them(tmp_path: Path) -> None:
    """No ``description``/``owner``/``tags`` keys appear: a registry applied before keeps its hash."""
    body = json.loads(_plain(tmp_path).to_json())

    def keys(value: object) -> set[str]:
        if isinstance(value, dict):
            return set(value) | {k for v in value.values() for k in keys(v)}
        if isinstance(value, list):
            return {k for v in value for k in keys(v)}
        return set()

    assert not keys(body) & CATALOG_FIELDS


def test_plan_shows_catalog_changes_as_non_breaking_without_backfills(tmp_path: Path) -> None:
    result = plan(_plain(tmp_path), _catalogued(tmp_path))
    assert result.breaking == ()
    assert result.backfills == ()
    details = {(c.kind, c.name): c.details for c in result.changes}
    assert set(details) == {
        ("entity", "merchant"),
        ("source", "transactions"),
        ("view", "merchant_txn"),
        ("view", "customer_stats"),
        ("service", "fraud_model"),
    }
    assert "owner: (none) -> fraud-ml" in details[("view", "merchant_txn")]
    assert "tags: (none) -> [fraud, velocity]" in details[("view", "merchant_txn")]
    assert "feature amount_sum_7d: owner: (none) -> finance-analytics" in details[("view", "merchant_txn")]
    assert "feature total_orders: tags: (none) -> [orders]" in details[("view", "customer_stats")]
    assert "description: (none) -> Real-time fraud scoring." in details[("service", "fraud_model")]
    assert "BREAKING" not in render_text(result)
