"""Online store against a real redis-server: round trips, exact expiry, check-and-set, tombstones."""

from __future__ import annotations

import struct
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis

from skewless.devstack.local_redis import LocalRedis, free_port
from skewless.errors import (
    EntityError,
    OnlineStoreError,
    OnlineTimeRefused,
    PublishRefused,
    SkewlessError,
    UnknownObjectError,
)
from skewless.manifest import FeatureSpec, Manifest
from skewless.online.client import OnlineClient
from skewless.online.encoding import ViewCodec, decode
from skewless.online.materialize import materialize, publish_rows
from skewless.online.redis_store import ScriptWriter, WriteCounts
from skewless.runtime.settings import Settings
from tests.helpers import deploy
from tests.online.trees import TREE

pytestmark = pytest.mark.redis

HOUR_US = 3_600_000_000
DAY_US = 24 * HOUR_US


@pytest.fixture
def online(tmp_path: Path, redis_url: str) -> tuple[Settings, Manifest]:
    settings, manifest = deploy(tmp_path, TREE)
    return settings.model_copy(update={"redis_url": redis_url}), manifest


def now_us() -> int:
    return time.time_ns() // 1000


def at(micros: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=micros)


def same(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return struct.pack(">d", a) == struct.pack(">d", b)
    return bool(a == b)


def test_every_dtype_round_trips(online: tuple[Settings, Manifest]) -> None:
    settings, manifest = online
    ts = now_us() - HOUR_US
    nan_payload = struct.unpack(">d", bytes.fromhex("7ff8000000000abc"))[0]
    rows = {
        "plain": (42, 0.1, "hello", True),
        "extremes": (2**63 - 1, 1.7976931348623157e308, "ü日本🎉", False),
        "negative": (-(2**63), -0.0, "", False),
        "nan": (0, float("nan"), "a:b%{c}", None),
        "nan-payload": (1, nan_payload, "x", True),
        "inf": (None, float("inf"), None, True),
        "-inf": (None, float("-inf"), None, None),
        "nulls-but-one": (None, None, None, False),
        "a:b": (7, 5e-324, "colon key", True),
        "": (8, 1.5, "empty key", True),
    }
    view = manifest.view("merchant_profile")
    counts = publish_rows(settings.redis_url, view, [(k, ts, ts, *v) for k, v in rows.items()])
    assert counts == (len(rows), 0, len(rows), 0, 0)

    features = [f"merchant_profile:{f}" for f in ("n", "score", "label", "active")]
    entities = [{"merchant_id": key} for key in rows]
    with OnlineClient(settings, manifest) as client:
        answers = client.get_online_features(entities, features=features)
    assert [a["merchant_id"] for a in answers] == list(rows)
    for answer, values in zip(answers, rows.values(), strict=True):
        got = (answer["n"], answer["score"], answer["label"], answer["active"])
        assert all(same(g, v) for g, v in zip(got, values, strict=True)), (answer, values)
        assert list(answer) == ["merchant_id", "n", "score", "label", "active"]


def test_int_and_composite_keys_and_shared_feature_names(online: tuple[Settings, Manifest]) -> None:
    settings, manifest = online
    ts = now_us() - 60_000_000  # account_flags has a ttl of 1h
    publish_rows(settings.redis_url, manifest.view("merchant_profile"), [("m1", ts, ts, 1, 0.5, "m", True)])
    publish_rows(
        settings.redis_url,
        manifest.view("customer_stats"),
        [(-3, ts, ts, 30, 2.5), (2**63 - 1, ts, ts, 31, None)],
    )
    publish_rows(
        settings.redis_url,
        manifest.view("account_flags"),
        [(-3, "eu:west", ts, ts, True, "x"), (-3, "eu", ts, ts, False, "y")],
    )
    entities = [
        {"merchant_id": "m1", "customer_id": -3, "region": "eu:west"},
        {"merchant_id": "zz", "customer_id": 2**63 - 1, "region": "eu"},
        {"merchant_id": "m1", "customer_id": -3, "region": "eu"},
    ]
    with OnlineClient(settings, manifest) as client:
        answers = client.get_online_features(
            entities,
            features=[
                "merchant_profile:score",
                "customer_stats:score",
                "customer_stats:total",
                "account_flags:note",
            ],
        )
        by_service = client.get_online_features(entities, service="fraud")
    assert [{k: v for k, v in a.items() if k not in entities[0]} for a in answers] == [
        {"merchant_profile__score": 0.5, "customer_stats__score": 2.5, "total": 30, "note": "x"},
        {"merchant_profile__score": None, "customer_stats__score": None, "total": 31, "note": None},
        {"merchant_profile__score": 0.5, "customer_stats__score": 2.5, "total": 30, "note": "y"},
    ]
    assert [(a["n"], a["total"], a["flag"]) for a in by_service] == [
        (1, 30, True),
        (None, 31, None),
        (1, 30, False),
    ]


def test_many_entities_of_several_views_in_one_round_trip(
    online: tuple[Settings, Manifest], redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings, manifest = online
    sends: list[int] = []
    send = redis.connection.AbstractConnection.send_packed_command

    def counting_send(self: Any, command: Any, check_health: bool = True) -> None:
        sends.append(1)
        send(self, command, check_health)

    monkeypatch.setattr(redis.connection.AbstractConnection, "send_packed_command", counting_send)
    ts = now_us() - HOUR_US
    publish_rows(
        settings.redis_url,
        manifest.view("merchant_profile"),
        [(f"m{i}", ts, ts, i, 1.0, "", True) for i in range(500)],
    )
    publish_rows(
        settings.redis_url, manifest.view("customer_stats"), [(i, ts, ts, i, 2.0) for i in range(500)]
    )
    entities = [{"merchant_id": f"m{i}", "customer_id": i} for i in range(500)]
    stats = redis.Redis.from_url(redis_url)
    with OnlineClient(settings, manifest) as client:
        client.ping()
        stats.config_resetstat()
        sends.clear()
        answers = client.get_online_features(
            entities, features=["merchant_profile:n", "customer_stats:total", "customer_stats:score"]
        )
        assert len(sends) == 1  # one write: the two views' MGETs are pipelined
    commands = {k: v["calls"] for k, v in stats.info("commandstats").items()}
    assert commands.get("cmdstat_mget") == 2, commands  # one per view
    assert sum(commands.values()) == 3, commands  # the MGETs and the INFO itself
    assert all(a["n"] == a["total"] == i and a["score"] == 2.0 for i, a in enumerate(answers))


def test_expiry_is_exact_at_feature_ts_plus_ttl(online: tuple[Settings, Manifest], redis_url: str) -> None:
    settings, manifest = online
    view = manifest.view("merchant_profile")  # ttl 1d
    ts = now_us() - HOUR_US + 123  # not on a millisecond
    publish_rows(settings.redis_url, view, [("m", ts, ts, 5, 1.0, "x", True)])
    ttl = view.ttl_seconds * 1_000_000
    expected = {
        ts: 5,
        ts + ttl - 1: 5,
        ts + ttl: 5,  # both bounds inclusive
        ts + ttl + 1: None,
    }
    with OnlineClient(settings, manifest) as client:
        for moment, value in expected.items():
            answer = client.get_online_features(
                [{"merchant_id": "m"}], features=["merchant_profile:n"], now=at(moment)
            )
            assert answer[0]["n"] == value, moment - ts
        # Before the stored row the answer was an older row the store no longer holds: refused.
        with pytest.raises(OnlineTimeRefused, match="merchant_id='m'"):
            client.get_online_features(
                [{"merchant_id": "m"}], features=["merchant_profile:n"], now=at(ts - 1)
            )
    # Redis itself drops the key at the first millisecond boundary past feature_ts + ttl.
    key = ViewCodec(view).entity_key(["m"])
    assert redis.Redis.from_url(redis_url).pexpiretime(key) == -(-(ts + ttl) // 1000)


def test_the_write_script_takes_each_expiry_from_its_caller(
    online: tuple[Settings, Manifest], redis_url: str
) -> None:
    # The script computes no time of its own: the PXAT of each key is the argument it was given
    # (semantics.expire_at_ms in the writers), and one already past is counted, not written.
    _, manifest = online
    codec = ViewCodec(manifest.view("customer_stats"))
    ts = now_us()
    value = codec.encode(ts, ts, [1, 1.0])
    given_ms = ts // 1000 + 10 * HOUR_US // 1000  # not feature_ts + ttl (2 days)
    client = redis.Redis.from_url(redis_url)
    counts = ScriptWriter(client).write([(["k-live", "k-past"], [given_ms, value, ts // 1000 - 1000, value])])
    assert counts == WriteCounts(written=1, kept_newer=0, already_expired=1)
    assert client.pexpiretime("k-live") == given_ms
    assert client.exists("k-past") == 0
    client.close()


def test_late_backfill_never_overwrites_newer_values(
    online: tuple[Settings, Manifest], redis_url: str
) -> None:
    settings, manifest = online
    view = manifest.view("customer_stats")
    new = now_us() - HOUR_US
    old = new - DAY_US
    url = settings.redis_url
    assert publish_rows(url, view, [(1, new, 100, 2, 2.0)])[2:] == (1, 0, 0)
    assert publish_rows(url, view, [(1, old, 999, 1, 1.0)])[2:] == (0, 1, 0)  # older ds, later run
    assert publish_rows(url, view, [(1, new, 99, 3, 3.0)])[2:] == (0, 1, 0)  # same ds, older run
    assert publish_rows(url, view, [(1, new, 100, 4, 4.0)])[2:] == (1, 0, 0)  # same stamp: rerun
    assert publish_rows(url, view, [(1, new, 101, 5, 5.0)])[2:] == (1, 0, 0)  # same ds, newer run
    # Several versions of one key in one batch: the newest wins whatever the order.
    assert publish_rows(url, view, [(2, new, 1, 20, 0.0), (2, old, 1, 10, 0.0), (2, new - 1, 5, 15, 0.0)])[
        2:
    ] == (
        1,
        2,
        0,
    )
    with OnlineClient(settings, manifest) as client:
        answers = client.get_online_features(
            [{"customer_id": 1}, {"customer_id": 2}], features=["customer_stats:total"]
        )
    assert [a["total"] for a in answers] == [5, 20]
    stored = decode(redis.Redis.from_url(redis_url).get(ViewCodec(view).entity_key([1])))
    assert (stored.feature_ts_us, stored.created_ts_us) == (new, 101)


def test_tombstones_remove_values_and_block_resurrection(
    online: tuple[Settings, Manifest], redis_url: str
) -> None:
    settings, manifest = online
    view = manifest.view("customer_stats")
    day2 = now_us() - HOUR_US
    day1 = day2 - DAY_US
    url = settings.redis_url
    publish_rows(url, view, [(1, day1, 1, 10, 1.0), (2, day1, 1, 20, 2.0)])
    # Entity 1 drops out on day 2 (all features null); entity 2 has a tombstone older than its value.
    publish_rows(url, view, [(2, day2, 2, 21, 2.5)])
    assert publish_rows(url, view, [(1, day2, 2, None, None), (2, day1 - 1, 2, None, None)]) == (
        2,
        2,
        1,
        1,
        0,
    )
    # A late rerun of day 1 must not bring entity 1's value back.
    assert publish_rows(url, view, [(1, day1, 3, 10, 1.0)])[2:] == (0, 1, 0)
    with OnlineClient(settings, manifest) as client:
        answers = client.get_online_features(
            [{"customer_id": 1}, {"customer_id": 2}],
            features=["customer_stats:total", "customer_stats:score"],
        )
        # Before the tombstone, at day 1's time, the point-in-time rule would still see day 1's value;
        # the online store keeps the latest row only, so it answers for times at or after it.
    assert answers == [
        {"customer_id": 1, "total": None, "score": None},
        {"customer_id": 2, "total": 21, "score": 2.5},
    ]
    raw = redis.Redis.from_url(redis_url).get(ViewCodec(view).entity_key([1]))
    assert raw is not None
    assert len(raw) == 22
    assert decode(raw).values is None


def test_expired_rows_are_not_written(online: tuple[Settings, Manifest], redis_url: str) -> None:
    settings, manifest = online
    view = manifest.view("account_flags")  # ttl 1h
    old = now_us() - 2 * HOUR_US
    assert publish_rows(settings.redis_url, view, [(1, "eu", old, old, True, "x")]) == (1, 0, 0, 0, 1)
    assert redis.Redis.from_url(redis_url).keys("sk:*") == []


def test_feature_added_to_a_view_reads_null_until_materialized(online: tuple[Settings, Manifest]) -> None:
    settings, manifest = online
    view = manifest.view("customer_stats")
    ts = now_us() - HOUR_US
    publish_rows(settings.redis_url, view, [(1, ts, ts, 10, 1.5)])
    # The registry gains a feature in the middle of the list (compatible: no version bump).
    added = FeatureSpec(name="fresh", dtype="string", meaning_hash="x")
    grown = view.model_copy(update={"features": (view.features[0], added, view.features[1])})
    newer = manifest.model_copy(update={"views": {**manifest.views, "customer_stats": grown}})
    with OnlineClient(settings, newer) as client:
        answers = client.get_online_features(
            [{"customer_id": 1}],
            features=["customer_stats:score", "customer_stats:fresh", "customer_stats:total"],
        )
    assert answers == [{"customer_id": 1, "score": 1.5, "fresh": None, "total": 10}]


def test_bad_requests_are_clear_errors(online: tuple[Settings, Manifest]) -> None:
    settings, manifest = online
    with OnlineClient(settings, manifest) as client:
        with pytest.raises(UnknownObjectError, match="view 'customer_stats' has no feature 'nope'"):
            client.get_online_features([{"customer_id": 1}], features=["customer_stats:nope"])
        with pytest.raises(UnknownObjectError, match="unknown view 'ghost'"):
            client.get_online_features([{"customer_id": 1}], features=["ghost:x"])
        with pytest.raises(UnknownObjectError, match="unknown service 'ghost'"):
            client.get_online_features([{"customer_id": 1}], service="ghost")
        with pytest.raises(SkewlessError, match="expected 'view:feature', got 'total'"):
            client.get_online_features([{"customer_id": 1}], features=["total"])
        with pytest.raises(SkewlessError, match="feature requested twice: customer_stats:total"):
            client.get_online_features(
                [{"customer_id": 1}], features=["customer_stats:total", "customer_stats:total"]
            )
        with pytest.raises(
            SkewlessError, match="give exactly one of a feature service or a list of features"
        ):
            client.get_online_features([{"customer_id": 1}])
        with pytest.raises(EntityError, match="entity row 1: missing join key 'customer_id'"):
            client.get_online_features([{"customer_id": 1}, {"id": 2}], features=["customer_stats:total"])
        with pytest.raises(
            EntityError, match="entity row 0: key 'customer_id' must be an int64, got str '1'"
        ):
            client.get_online_features([{"customer_id": "1"}], features=["customer_stats:total"])
        with pytest.raises(EntityError, match="entity row 0: key 'region' is null"):
            client.get_online_features([{"customer_id": 1, "region": None}], features=["account_flags:flag"])
        with pytest.raises(EntityError, match="field 'total' clashes with a feature column"):
            client.get_online_features([{"customer_id": 1, "total": 3}], features=["customer_stats:total"])
        assert client.get_online_features([], features=["customer_stats:total"]) == []


def test_unreachable_redis_is_a_clear_error_without_the_password(tmp_path: Path) -> None:
    settings, manifest = deploy(tmp_path, TREE)
    url = f"redis://:s3cret-pw@127.0.0.1:{free_port()}/0"
    client = OnlineClient(settings.model_copy(update={"redis_url": url}), manifest)
    with pytest.raises(OnlineStoreError) as caught:
        client.get_online_features([{"customer_id": 1}], features=["customer_stats:total"])
    message = str(caught.value)
    assert "is unreachable" in message
    assert "redis://:***@127.0.0.1" in message
    assert "s3cret" not in message
    with pytest.raises(OnlineStoreError, match="must start with redis://") as bad:
        OnlineClient(settings.model_copy(update={"redis_url": "http://:s3cret@x"}), manifest)
    assert "s3cret" not in str(bad.value)


def test_password_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings, manifest = deploy(tmp_path, TREE)
    with LocalRedis(extra_args=["--requirepass", "pw-from-env"]) as server:
        configured = settings.model_copy(update={"redis_url": server.url})
        monkeypatch.setenv("SKEWLESS_REDIS_PASSWORD", "wrong-pw")
        with pytest.raises(OnlineStoreError, match="refused the credentials") as caught:
            OnlineClient(configured, manifest).ping()
        assert "wrong-pw" not in str(caught.value)
        monkeypatch.setenv("SKEWLESS_REDIS_PASSWORD", "pw-from-env")
        ts = now_us() - HOUR_US
        publish_rows(server.url, manifest.view("customer_stats"), [(1, ts, ts, 1, 1.0)])
        with OnlineClient(configured, manifest) as client:
            assert (
                client.get_online_features([{"customer_id": 1}], features=["customer_stats:total"])[0][
                    "total"
                ]
                == 1
            )


def test_materialize_refuses_a_ds_not_available_yet(online: tuple[Settings, Manifest]) -> None:
    settings, manifest = online
    today = datetime.now(UTC).date()
    with pytest.raises(PublishRefused, match=rf"ds {today} and later cannot be published yet"):
        # Refused before Spark or Redis is touched.
        materialize(
            None, settings, manifest, "customer_stats", today - timedelta(days=1), today + timedelta(days=1)
        )  # type: ignore[arg-type]
    with pytest.raises(PublishRefused, match="available at 2024-03-02T00:00:00"):
        materialize(
            None,  # type: ignore[arg-type]
            settings,
            manifest,
            "customer_stats",
            date(2024, 3, 1),
            now=datetime(2024, 3, 1, 23, 59, 59, tzinfo=UTC),
        )


def test_a_foreign_value_under_a_skewless_key_is_a_clear_error(
    online: tuple[Settings, Manifest], redis_url: str
) -> None:
    settings, manifest = online
    redis.Redis.from_url(redis_url).set(ViewCodec(manifest.view("customer_stats")).entity_key([1]), b"hello")
    ts = now_us() - HOUR_US
    publish_rows(settings.redis_url, manifest.view("merchant_profile"), [("m", ts, ts, 7, 1.0, "", True)])
    both = ["customer_stats:total", "merchant_profile:n"]
    with OnlineClient(settings, manifest) as client:
        with pytest.raises(OnlineStoreError, match="customer_stats: a stored value is unreadable"):
            client.get_online_features([{"customer_id": 1, "merchant_id": "m"}], features=both)
        # The failed request left the merchant view's reply unread; the client must not read it
        # as the answer to its next request.
        answer = client.get_online_features([{"merchant_id": "m"}], features=["merchant_profile:n"])
        assert answer == [{"merchant_id": "m", "n": 7}]


def test_columns_are_the_training_joins(online: tuple[Settings, Manifest]) -> None:
    """Names and order come from skewless.pit.request, as in the training join: grouped by view."""
    from skewless.pit import request

    settings, manifest = online
    features = [
        "merchant_profile:n",
        "customer_stats:score",
        "merchant_profile:score",
        "customer_stats:total",
    ]
    with OnlineClient(settings, manifest) as client:
        answer = client.get_online_features([{"merchant_id": "m", "customer_id": 1}], features=features)[0]
    training = request.output_columns(request.resolve(manifest, features=",".join(features)))
    assert list(answer) == ["merchant_id", "customer_id", *training]
    assert training == ["n", "merchant_profile__score", "customer_stats__score", "total"]
