"""Freshness against the SLA, with frozen time (``now`` passed in), and the SLA in the registry."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from tests.helpers import write_tree

from skewless import semantics
from skewless.compile import compile_tree
from skewless.freshness import format_age, view_freshness
from skewless.manifest import Manifest
from skewless.plan import plan

TREE = {
    "defs.yaml": """
        entity:
          name: account
          join_keys: {account_id: string}
        ---
        source:
          name: payments
          path: payments
          format: parquet
          timestamp: ts
          columns: {account_id: string, amount: float64, ts: timestamp}
        ---
        view:
          name: spend
          version: 1
          kind: aggregation
          entity: account
          source: payments
          ttl: 3d
          availability_lag: 1h
          freshness: 27h
          features:
            - {name: n_2d, function: count, window: 2d}
        ---
        view:
          name: plain
          version: 1
          kind: snapshot
          entity: account
          source: payments
          ttl: 2d
          features:
            - {name: amount, dtype: float64}
    """,
}

DS = date(2024, 3, 1)
B = datetime(2024, 3, 2, tzinfo=UTC)  # B(DS)


def _manifest(tmp_path: Path, tree: dict[str, str] = TREE) -> Manifest:
    return compile_tree(write_tree(tmp_path / "defs", tree))


def test_the_sla_is_in_the_manifest_in_seconds(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path)
    assert manifest.view("spend").freshness_seconds == 27 * 3600
    assert manifest.view("plain").freshness_seconds is None
    # Unset, it is left out of the JSON: registries written before the field keep their hashes.
    views = json.loads(manifest.to_json())["views"]
    assert views["spend"]["freshness_seconds"] == 27 * 3600
    assert "freshness_seconds" not in views["plain"]
    assert Manifest.from_json(manifest.to_json(), "test") == manifest


def test_fresh_when_both_sides_are_within_the_sla(tmp_path: Path) -> None:
    now = B + timedelta(hours=26, minutes=59)
    (spend,) = view_freshness(_manifest(tmp_path), {"spend": DS}, {"spend": DS}, now, views=["spend"])
    assert spend.ok
    assert spend.problem() is None
    assert spend.offline.age == spend.online.age == now - semantics.boundary(DS)
    assert spend.offline.boundary == B
    assert spend.describe() == (
        "freshness (SLA 1d 3h): offline 1d 2h 59m (ds 2024-03-01), online 1d 2h 59m (ds 2024-03-01)"
    )


def test_stale_offline_names_the_view_and_by_how_much(tmp_path: Path) -> None:
    now = B + timedelta(days=1, hours=5, minutes=30)
    today = DS + timedelta(days=1)
    (spend,) = view_freshness(_manifest(tmp_path), {"spend": DS}, {"spend": today}, now, views=["spend"])
    assert [side.side for side in spend.broken] == ["offline"]
    assert spend.over(spend.offline) == timedelta(hours=2, minutes=30)
    assert spend.over(spend.online) is None
    assert spend.problem() == "spend: freshness SLA 1d 3h broken: offline 1d 5h 30m old, 2h 30m over"


def test_stale_online_when_materialize_fell_behind(tmp_path: Path) -> None:
    now = B + timedelta(days=2)
    fresh = DS + timedelta(days=2)
    (spend,) = view_freshness(_manifest(tmp_path), {"spend": fresh}, {"spend": DS}, now, views=["spend"])
    assert [side.side for side in spend.broken] == ["online"]
    assert spend.problem() == "spend: freshness SLA 1d 3h broken: online 2d old, 21h over"


def test_never_published_or_unreadable_online_breaks_the_sla(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path)
    (never,) = view_freshness(manifest, {"spend": DS}, {}, B, views=["spend"])
    assert never.problem() == "spend: freshness SLA 1d 3h broken: online never published"
    (unknown,) = view_freshness(
        manifest, {"spend": DS}, {"spend": DS}, B, views=["spend"], online_error="down"
    )
    assert unknown.online.ds is None
    assert unknown.problem() == "spend: freshness SLA 1d 3h broken: online unknown (down)"
    (nothing,) = view_freshness(manifest, {}, {}, B, views=["spend"])
    assert [side.side for side in nothing.broken] == ["offline", "online"]


def test_a_view_without_sla_is_reported_but_never_broken(tmp_path: Path) -> None:
    report = view_freshness(_manifest(tmp_path), {}, {}, B + timedelta(days=99))
    assert [r.view for r in report] == ["plain", "spend"]
    plain = report[0]
    assert plain.ok
    assert plain.sla is None
    assert plain.describe() == "freshness (no SLA): offline never computed, online never published"
    assert plain.to_json()["ok"] is True


def test_format_age() -> None:
    assert format_age(timedelta(0)) == "0m"
    assert format_age(timedelta(days=2, minutes=1, seconds=59)) == "2d 1m"
    assert format_age(timedelta(hours=-3)) == "-3h"


def test_adding_or_changing_the_sla_is_a_non_breaking_change_without_backfill(tmp_path: Path) -> None:
    without = _manifest(tmp_path / "a", {"defs.yaml": TREE["defs.yaml"].replace("freshness: 27h", "")})
    with_sla = _manifest(tmp_path / "b")
    looser = _manifest(tmp_path / "c", {"defs.yaml": TREE["defs.yaml"].replace("27h", "2d")})
    for old, new in ((without, with_sla), (with_sla, looser)):
        result = plan(old, new)
        assert result.breaking == ()
        assert result.backfills == ()
        (change,) = result.changes
        assert (change.kind, change.name, change.action) == ("view", "spend", "changed")
        assert any(detail.startswith("freshness_seconds:") for detail in change.details)
        assert [f.meaning_hash for f in old.view("spend").features] == [
            f.meaning_hash for f in new.view("spend").features
        ]
