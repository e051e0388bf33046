"""The catalog site's pure parts: page models, search index, HTML (no Spark, no browser).

The real-browser test with real tables is tests/spark/test_catalog_site.py.
"""

from __future__ import annotations

import itertools
import json
import random
import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from tests.helpers import write_tree

from skewless.catalog_site.gather import MARKER, SiteError, _document_text, _prepare
from skewless.catalog_site.model import (
    Definition,
    OnlinePsiPoint,
    SiteInputs,
    StatsPoint,
    build_site_model,
    ranges_and_gaps,
)
from skewless.catalog_site.render import render_site
from skewless.compile import compile_tree
from skewless.manifest import Manifest

NOW = datetime(2024, 3, 11, 6, tzinfo=UTC)
HOSTILE = "Counts </script><script>alert(1)</script> & more"
TREE = {
    "defs.yaml": f"""
        entity:
          name: merchant
          join_keys: {{merchant_id: string}}
        ---
        source:
          name: transactions
          path: transactions
          format: parquet
          timestamp: ts
          columns: {{merchant_id: string, amount: float64, ts: timestamp}}
        ---
        view:
          name: merchant_txn
          version: 2
          kind: aggregation
          entity: merchant
          source: transactions
          ttl: 2d
          owner: fraud-ml
          tags: [fraud]
          features:
            - {{name: txn_count_7d, function: count, window: 7d, description: "{HOSTILE}"}}
            - {{name: amount_sum_7d, function: sum, column: amount, window: 7d,
               owner: finance, tags: [money]}}
        ---
        service:
          name: fraud_model
          features: [merchant_txn:txn_count_7d]
    """,
}


@pytest.fixture
def manifest(tmp_path: Path) -> Manifest:
    return compile_tree(write_tree(tmp_path / "defs", TREE))


def test_ranges_and_gaps_cover_exactly_the_committed_days() -> None:
    rng = random.Random(5)
    for _ in range(200):
        first = date(2024, 1, 1)
        days = sorted({first + timedelta(days=rng.randrange(40)) for _ in range(rng.randrange(0, 25))})
        ranges, gaps = ranges_and_gaps(days)

        def expand(spans: tuple[object, ...]) -> list[date]:
            out = []
            for span in spans:
                day = span.start  # type: ignore[attr-defined]
                while day <= span.end:  # type: ignore[attr-defined]
                    out.append(day)
                    day += timedelta(days=1)
            return out

        assert expand(ranges) == days
        if days:
            every = [days[0] + timedelta(days=i) for i in range((days[-1] - days[0]).days + 1)]
            assert expand(gaps) == [d for d in every if d not in set(days)]
        # maximal runs: no two ranges touch
        assert all(b.start - a.end > timedelta(days=1) for a, b in itertools.pairwise(ranges))


def test_features_inherit_the_view_owner_and_tags_and_list_their_services(manifest: Manifest) -> None:
    pages = build_site_model(SiteInputs(manifest=manifest, generated_at=NOW))
    by_name = {f.feature.name: f for f in pages.features}
    count, amount = by_name["txn_count_7d"], by_name["amount_sum_7d"]
    assert (count.owner, count.owner_inherited, count.tags) == ("fraud-ml", True, ("fraud",))
    assert (amount.owner, amount.owner_inherited, amount.tags) == ("finance", False, ("money", "fraud"))
    assert count.services == ("fraud_model",)
    assert amount.services == ()
    (view,) = pages.views
    assert view.lineage.services == ("fraud_model",)
    assert {(e.kind, e.name) for e in pages.entries} == {
        ("view", "merchant_txn"),
        ("feature", "txn_count_7d"),
        ("feature", "amount_sum_7d"),
        ("service", "fraud_model"),
        ("entity", "merchant"),
        ("source", "transactions"),
    }


def test_search_index_round_trips_and_user_text_never_becomes_markup(manifest: Manifest) -> None:
    pages = build_site_model(SiteInputs(manifest=manifest, generated_at=NOW))
    files = render_site(pages)
    index = files["index.html"]
    block = re.search(r'<script type="application/json" id="search-index">(.*?)</script>', index, re.DOTALL)
    assert block is not None
    assert json.loads(block.group(1)) == [e.to_json() for e in pages.entries]
    assert "<script>alert(1)" not in "".join(files.values())
    assert "&lt;/script&gt;&lt;script&gt;alert(1)" in files["features/merchant_txn.txn_count_7d.html"]


def test_view_page_shows_the_definition_at_its_lines_ranges_gaps_and_plots(manifest: Manifest) -> None:
    definition = Definition("payments/merchant_txn.yaml", 12, "view:\n  name: merchant_txn", True)
    days = [date(2024, 3, 1), date(2024, 3, 2), date(2024, 3, 5)]
    stats = [
        StatsPoint(
            d, "amount_sum_7d", 10, 0.1, mean=5.0, min=1.0, max=9.0, p50=5.0, p90=8.0, p99=9.0, psi=0.02
        )
        for d in days
    ]
    inputs = SiteInputs(
        manifest=manifest,
        generated_at=NOW,
        definitions={("view", "merchant_txn"): definition},
        committed={"merchant_txn": days},
        stats={"merchant_txn": stats},
        latest_values={("merchant_txn", "amount_sum_7d"): [1.0, 2.5, 2.5, 9.0]},
        drift_warn=0.1,
    )
    files = render_site(build_site_model(inputs))
    view = files["views/merchant_txn.html"]
    assert '<span class="ln">12</span>view:\n<span class="ln">13</span>  name: merchant_txn' in view
    assert "payments/merchant_txn.yaml:12" in view
    assert "2024-03-01 .. 2024-03-02, 2024-03-05 .. 2024-03-05" in view
    assert "gaps</dt><dd>2024-03-03 .. 2024-03-04" in view
    feature = files["features/merchant_txn.amount_sum_7d.html"]
    for plot in ("quantiles", "null-rate", "drift", "distribution"):
        assert re.search(rf'<figure class="plot" data-plot="{plot}"><svg ', feature), plot
    # the same inputs give the same bytes (salted SVG ids, no dates in the metadata)
    assert render_site(build_site_model(inputs)) == files


def test_document_text_stops_at_the_next_document() -> None:
    lines = ["# header", "entity:", "  name: a", "", "---", "entity:", "  name: b"]
    assert _document_text(lines, 2) == "entity:\n  name: a"
    assert _document_text(lines, 6) == "entity:\n  name: b"


def test_the_site_folder_is_replaced_only_when_it_holds_a_site(tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(SiteError, match="not empty"):
        _prepare(other)
    assert (other / "notes.txt").exists()
    site = tmp_path / "site"
    site.mkdir()
    (site / MARKER).write_text("registry x\n")
    (site / "old.html").write_text("old")
    _prepare(site)
    assert list(site.iterdir()) == []


def test_online_against_training_psi_joins_the_drift_plot(manifest: Manifest) -> None:
    """Recorded by ``skewless online-drift`` per service; shown even before any offline PSI."""
    online = [
        OnlinePsiPoint(date(2024, 3, 9), "fraud_model", 0.04, "ok", 250),
        OnlinePsiPoint(date(2024, 3, 10), "fraud_model", 0.31, "warn", 250),
    ]
    stats = [StatsPoint(date(2024, 3, 10), "txn_count_7d", 10, 0.0, mean=3.0, p50=3.0)]
    inputs = SiteInputs(
        manifest=manifest,
        generated_at=NOW,
        stats={"merchant_txn": stats},
        online_drift={("merchant_txn", "txn_count_7d"): online},
    )
    files = render_site(build_site_model(inputs))
    page = files["features/merchant_txn.txn_count_7d.html"]
    drift = re.search(r'<figure class="plot" data-plot="drift">(.*?)</figure>', page, re.DOTALL)
    assert drift is not None
    assert "online vs training (fraud_model)" in drift.group(1)
    assert "PSI (offline)" not in drift.group(1)  # no offline PSI recorded for this feature
    other = files["features/merchant_txn.amount_sum_7d.html"]
    assert 'data-plot="drift"><svg' not in other


def test_the_example_definitions_with_an_on_demand_view_read_without_problems(tmp_path: Path) -> None:
    """The site compiles the tree as `skewless validate` does: on-demand functions are looked up."""
    from skewless.catalog_site.gather import read_definitions
    from skewless.runtime.settings import load_settings

    repo = Path(__file__).resolve().parents[2]
    conf = tmp_path / "conf.yaml"
    conf.write_text(f"defs: {repo / 'feature_defs'}\ndata_root: {tmp_path}\noffline_root: {tmp_path}\n")
    settings = load_settings(str(conf))
    deployed = compile_tree(repo / "feature_defs")
    definitions, problems = read_definitions(repo / "feature_defs", deployed, settings)
    assert problems == []
    assert definitions[("on_demand", "txn_risk")].matches_deployed
