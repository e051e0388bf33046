"""``skewless status`` judges freshness against the SLA with frozen time (``--now``).

The offline side is a real Delta table with committed ``ds`` partitions (written with delta-rs,
as a committed run leaves it); the online side is the marker ``materialize`` records in a real
redis-server (:func:`skewless.online.published.record_published`, the function it calls).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest

from skewless import semantics
from skewless.cli import main
from skewless.manifest import Manifest
from skewless.online.published import read_published, record_published
from skewless.runtime.settings import Settings
from tests.helpers import deploy

pytestmark = [pytest.mark.redis]

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
          ttl: 30d
          freshness: 26h
          features:
            - {name: n_2d, function: count, window: 2d}
    """,
}

DS = date(2024, 3, 5)


def _commit(settings: Settings, manifest: Manifest, days: list[date]) -> None:
    """A view table with one committed partition per day, as a run leaves it."""
    from deltalake import write_deltalake

    view = manifest.view("spend")
    rows = {
        "account_id": ["a"] * len(days),
        "ds": days,
        "feature_ts": [semantics.feature_ts(view, day) for day in days],
        "created_ts": [None] * len(days),
        "n_2d": [1] * len(days),
    }
    schema = pa.schema(
        [
            ("account_id", pa.string()),
            ("ds", pa.date32()),
            ("feature_ts", pa.timestamp("us", tz="UTC")),
            ("created_ts", pa.timestamp("us", tz="UTC")),
            ("n_2d", pa.int64()),
        ]
    )
    write_deltalake(
        settings.table_uri(view.table), pa.table(rows, schema=schema), partition_by=["ds"], mode="append"
    )


@pytest.fixture
def deployed(tmp_path: Path, redis_url: str) -> tuple[Settings, Manifest, Path]:
    settings, manifest = deploy(tmp_path, TREE)
    conf = tmp_path / "conf.yaml"
    conf.write_text(f"defs: {settings.defs}\noffline_root: {settings.offline_root}\nredis_url: {redis_url}\n")
    (Path(settings.data_root) / "payments").mkdir(parents=True)
    return settings.model_copy(update={"redis_url": redis_url}), manifest, conf


def _status(conf: Path, now: datetime, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["--conf", str(conf), "status", "--now", now.isoformat()])
    out, err = capsys.readouterr()
    return code, out, err


def test_status_reports_fresh_then_stale_offline_then_stale_online(
    deployed: tuple[Settings, Manifest, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    settings, manifest, conf = deployed
    view = manifest.view("spend")
    boundary = semantics.boundary(DS)

    # Nothing computed or published: broken on both sides.
    code, out, err = _status(conf, boundary, capsys)
    assert code == 1
    assert "offline never computed, online never published" in out
    assert err.strip() == (
        "error: spend: freshness SLA 1d 2h broken: offline never computed; online never published"
    )

    _commit(settings, manifest, [DS - timedelta(days=1), DS])
    record_published(settings.redis_url, view, DS)
    record_published(settings.redis_url, view, DS - timedelta(days=1))  # a late backfill: no step back
    assert read_published(settings.redis_url, [view]) == {"spend": DS}

    code, out, err = _status(conf, boundary + timedelta(hours=25), capsys)
    assert code == 0, out + err
    assert out.splitlines() == [
        "spend v1: ds 2024-03-04 .. 2024-03-05 computed; up to date with its raw input",
        "  freshness (SLA 1d 2h): offline 1d 1h (ds 2024-03-05), online 1d 1h (ds 2024-03-05)",
    ]
    assert err == ""

    # The nightly run did not happen: both sides 4h past the SLA.
    code, out, err = _status(conf, boundary + timedelta(hours=30), capsys)
    assert code == 1
    assert (
        err.strip()
        == "error: spend: freshness SLA 1d 2h broken: offline 1d 6h old, 4h over; online 1d 6h old, 4h over"
    )

    # The run committed the next day but materialize did not publish it: only online is stale.
    _commit(settings, manifest, [DS + timedelta(days=1)])
    code, out, err = _status(conf, boundary + timedelta(hours=30), capsys)
    assert code == 1
    assert "offline 6h (ds 2024-03-06), online 1d 6h (ds 2024-03-05)" in out
    assert err.strip() == "error: spend: freshness SLA 1d 2h broken: online 1d 6h old, 4h over"

    record_published(settings.redis_url, view, DS + timedelta(days=1))
    code, _, err = _status(conf, boundary + timedelta(hours=30), capsys)
    assert code == 0, err


def test_unreachable_redis_makes_the_online_side_unknown_and_broken(
    deployed: tuple[Settings, Manifest, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from skewless.devstack.local_redis import free_port

    settings, manifest, conf = deployed
    _commit(settings, manifest, [DS])
    conf.write_text(conf.read_text().replace(settings.redis_url, f"redis://127.0.0.1:{free_port()}/0"))
    code, out, err = _status(conf, semantics.boundary(DS) + timedelta(hours=1), capsys)
    assert code == 1
    assert "offline 1h (ds 2024-03-05), online unknown (" in out
    assert err.startswith("error: spend: freshness SLA 1d 2h broken: online unknown (")
    assert datetime.now(UTC) > semantics.boundary(DS)  # the judgement used --now, not the clock
