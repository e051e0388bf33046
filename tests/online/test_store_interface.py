"""The online-store interface (skewless.online.store) on a real redis-server: write, read, delete.

The serving client (``OnlineClient.get_online_features``, itself tested against the training
join) is the oracle for ``read``: both must answer the same for every entity.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from skewless.errors import EntityError, OnlineTimeRefused
from skewless.manifest import Manifest
from skewless.online.client import OnlineClient
from skewless.online.store import OnlineStore, RedisOnlineStore, WriteStats
from skewless.runtime.settings import Settings
from tests.helpers import deploy
from tests.online.trees import TREE

pytestmark = pytest.mark.redis

HOUR_US = 3_600_000_000


@pytest.fixture
def online(tmp_path: Path, redis_url: str) -> tuple[Settings, Manifest]:
    settings, manifest = deploy(tmp_path, TREE)
    return settings.model_copy(update={"redis_url": redis_url}), manifest


def test_write_read_delete_agree_with_the_serving_client(online: tuple[Settings, Manifest]) -> None:
    settings, manifest = online
    view = manifest.view("account_flags")  # composite key (int64, string), ttl 1h
    now_us = time.time_ns() // 1000
    live, old = now_us - 60_000_000, now_us - 2 * HOUR_US
    rows = [
        (1, "eu", live, live, True, "x"),
        (1, "us:east", live, live, False, None),
        (2, "eu", old, old, True, "expired"),  # already expired: never written
        (3, "eu", live, live, None, None),  # a tombstone
    ]
    store: OnlineStore = RedisOnlineStore(settings.redis_url)
    try:
        store.prepare(view)
        assert store.write(view, rows) == WriteStats(4, 1, 3, 0, 1)
        # An older row for a stored key is kept out (check-and-set in Redis).
        assert store.write(view, [(1, "eu", live - 1, live, False, "older")]) == WriteStats(1, 0, 0, 1, 0)

        keys = [(1, "eu"), (1, "us:east"), (2, "eu"), (3, "eu"), (9, "nowhere")]
        now = datetime.now(UTC)
        got = store.read(view, keys, now)
        with OnlineClient(settings, manifest) as client:
            oracle = client.get_online_features(
                [{"customer_id": c, "region": r} for c, r in keys],
                features="account_flags:flag,account_flags:note",
                now=now,
            )
        assert [None if row is None else row.values for row in got] == [
            None
            if answer["flag"] is None and answer["note"] is None
            else {"flag": answer["flag"], "note": answer["note"]}
            for answer in oracle
        ]
        assert got[0] is not None
        assert got[0].feature_ts == datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=live)
        assert got[0].values == {"flag": True, "note": "x"}
        assert got[2] is None  # expired
        assert got[3] is None  # tombstone

        # The store holds only the latest row: a time before it is refused, as the client does.
        with pytest.raises(OnlineTimeRefused, match="account_flags"):
            store.read(view, [(1, "eu")], now - timedelta(hours=1))
        with pytest.raises(EntityError):
            store.read(view, [("not-an-int", "eu")], now)

        assert store.delete(view, [(1, "eu"), (9, "nowhere")]) == 1
        assert store.read(view, [(1, "eu"), (1, "us:east")], now)[0] is None
    finally:
        store.close()
