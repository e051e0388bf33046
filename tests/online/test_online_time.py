"""Online answers for a given time: the point-in-time rule, or a refusal, never a silent null.

The store holds only the latest row per entity. At or after its ``feature_ts`` the answer is
that row while it is live (``feature_ts + ttl``, inclusive) and null after; before it, the
answer was an older row the store no longer has, so the client, ``get-online --at`` and the
server refuse with the view, the entity and the stored ``feature_ts``.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from skewless import semantics
from skewless.cli import main
from skewless.devstack.local_redis import free_port
from skewless.errors import OnlineTimeRefused
from skewless.manifest import Manifest
from skewless.online.client import OnlineClient
from skewless.online.materialize import publish_rows
from skewless.online.server import create_app
from skewless.runtime.settings import Settings
from tests.helpers import deploy
from tests.online.trees import TREE

pytestmark = pytest.mark.redis

HOUR_US = 3_600_000_000
OLD_TS = time.time_ns() // 1000 - 5 * HOUR_US - 123  # not on a millisecond
NEW_TS = OLD_TS + 2 * HOUR_US
"""customer_stats 7 was published at OLD_TS, then at NEW_TS (the store keeps NEW_TS only)."""


def at(micros: int) -> datetime:
    return semantics.from_micros(micros)


@pytest.fixture
def stored(tmp_path: Path, redis_url: str) -> tuple[Settings, Manifest]:
    settings, manifest = deploy(tmp_path, TREE)
    settings = settings.model_copy(update={"redis_url": redis_url})
    view = manifest.view("customer_stats")
    publish_rows(redis_url, view, [(7, OLD_TS, OLD_TS, 1, 1.0), (8, OLD_TS, OLD_TS, 80, 8.0)])
    publish_rows(
        redis_url, view, [(7, NEW_TS, NEW_TS, 2, 2.0), (9, NEW_TS, NEW_TS, None, None)]
    )  # 9: tombstone
    return settings, manifest


def _conf(settings: Settings, tmp_path: Path) -> str:
    conf = tmp_path / "conf.yaml"
    conf.write_text(f"offline_root: {settings.offline_root}\nredis_url: {settings.redis_url}\n")
    return str(conf)


def test_a_time_before_the_stored_row_is_refused_and_after_it_answered(
    stored: tuple[Settings, Manifest],
) -> None:
    settings, manifest = stored
    ttl = manifest.view("customer_stats").ttl_seconds * 1_000_000
    features = ["customer_stats:total"]
    with OnlineClient(settings, manifest) as client:

        def total(entity: int, micros: int) -> object:
            return client.get_online_features([{"customer_id": entity}], features, now=at(micros))[0]["total"]

        # Between the two publications the training join answers with the OLD_TS row, which
        # the store replaced: refused, naming the view, the entity and the stored feature_ts.
        with pytest.raises(OnlineTimeRefused) as refused:
            total(7, NEW_TS - 1)
        message = str(refused.value)
        assert "view 'customer_stats', entity customer_id=7" in message
        assert at(NEW_TS).isoformat() in message
        assert (refused.value.view, refused.value.entity) == ("customer_stats", {"customer_id": 7})
        assert refused.value.feature_ts == at(NEW_TS).isoformat()
        # At the stored feature_ts and through its inclusive ttl: the stored row.
        assert total(7, NEW_TS) == 2
        assert total(7, NEW_TS + ttl) == 2
        assert total(7, NEW_TS + ttl + 1) is None  # expired: null, as the training join
        # An entity whose only row is older answers normally at any time after it.
        assert total(8, OLD_TS) == 80
        with pytest.raises(OnlineTimeRefused, match="customer_id=8"):
            total(8, OLD_TS - 1)
        # A tombstone keeps its stamp: before it the entity had a value the store lost.
        with pytest.raises(OnlineTimeRefused, match="customer_id=9"):
            total(9, NEW_TS - 1)
        assert total(9, NEW_TS) is None
        # The connection stays usable after a refusal (every reply was read before raising).
        assert total(7, NEW_TS + 1) == 2


def test_a_refusal_names_the_first_entity_and_counts_the_others(stored: tuple[Settings, Manifest]) -> None:
    settings, manifest = stored
    rows = [{"customer_id": 8}, {"customer_id": 9}, {"customer_id": 7}, {"customer_id": 404}]
    with OnlineClient(settings, manifest) as client:
        with pytest.raises(OnlineTimeRefused, match=r"customer_id=9 \(and 1 more\)"):
            client.get_online_features(rows, ["customer_stats:total"], now=at(NEW_TS - 1))
        with pytest.raises(OnlineTimeRefused, match=r"customer_id=8 \(and 2 more\)"):
            client.get_online_features(rows, ["customer_stats:total"], now=at(OLD_TS - 1))
        answers = client.get_online_features(rows, ["customer_stats:total"], now=at(NEW_TS))
    # A missing key is null at any time (it never existed, or expired).
    assert [a["total"] for a in answers] == [80, None, 2, None]


def test_the_online_answer_equals_the_point_in_time_rule_or_is_refused(
    stored: tuple[Settings, Manifest],
) -> None:
    """For every moment around the two rows of entity 7, compare with the rule on both rows."""
    settings, manifest = stored
    ttl = manifest.view("customer_stats").ttl_seconds * 1_000_000
    history = [(OLD_TS, 1), (NEW_TS, 2)]
    moments = [OLD_TS - 1, OLD_TS, NEW_TS - 1, NEW_TS, NEW_TS + 1, NEW_TS + ttl, NEW_TS + ttl + 1]
    with OnlineClient(settings, manifest) as client:
        for moment in moments:
            live = [value for ts, value in history if semantics.is_live(ts, ttl, moment)]
            expected = live[-1] if live else None
            try:
                got = client.get_online_features(
                    [{"customer_id": 7}], ["customer_stats:total"], now=at(moment)
                )
            except OnlineTimeRefused:
                assert moment < NEW_TS  # refused only where the store lost the answer
                continue
            assert got[0]["total"] == expected, moment


def test_get_online_at_and_its_now_alias(
    stored: tuple[Settings, Manifest], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings, _ = stored
    conf = _conf(settings, tmp_path)
    before = at(NEW_TS - 1).isoformat()
    for option in ("--at", "--now"):
        code = main(
            ["--conf", conf, "get-online", "--features", "customer_stats:total", "--entity", "customer_id=7",
             option, before]
        )  # fmt: skip
        out, err = capsys.readouterr()
        assert code == 1
        assert out == ""
        assert "view 'customer_stats', entity customer_id=7" in err
        assert f"feature_ts {at(NEW_TS).isoformat()} is later" in err
        assert "Traceback" not in err
    # A naive time is UTC.
    naive = at(NEW_TS).replace(tzinfo=None).isoformat()
    code = main(
        ["--conf", conf, "get-online", "--features", "customer_stats:total", "--entity", "customer_id=7",
         "--entity", "customer_id=9", "--at", naive]
    )  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 0, err
    assert json.loads(out) == [{"customer_id": 7, "total": 2}, {"customer_id": 9, "total": None}]
    code = main(
        ["--conf", conf, "get-online", "--features", "customer_stats:total", "--entity", "customer_id=7",
         "--at", "last tuesday"]
    )  # fmt: skip
    assert code == 1
    assert "not an ISO-8601 time: 'last tuesday'" in capsys.readouterr().err


@pytest.fixture
def server(stored: tuple[Settings, Manifest]) -> Iterator[str]:
    import uvicorn

    settings, manifest = stored
    port = free_port()
    app = create_app(settings, manifest)
    instance = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=instance.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not instance.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    instance.should_exit = True
    thread.join(timeout=10)


def _post(url: str, body: dict[str, object]) -> tuple[int, dict[str, object]]:
    request = urllib.request.Request(
        f"{url}/features", data=json.dumps(body).encode(), headers={"content-type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def test_the_server_refuses_a_now_before_the_stored_row_with_409(server: str) -> None:
    body: dict[str, object] = {"features": ["customer_stats:total"], "entities": [{"customer_id": 7}]}
    status, answer = _post(server, {**body, "now": at(NEW_TS - 1).isoformat()})
    assert status == 409
    error = str(answer["error"])
    assert "view 'customer_stats', entity customer_id=7" in error
    assert at(NEW_TS).isoformat() in error
    status, answer = _post(server, {**body, "now": at(NEW_TS).isoformat()})
    assert (status, answer["rows"]) == (200, [{"customer_id": 7, "total": 2}])
    later = datetime.now(UTC) + timedelta(days=30)  # past the ttl: null, as the training join
    status, answer = _post(server, {**body, "now": later.isoformat()})
    assert (status, answer["rows"]) == (200, [{"customer_id": 7, "total": None}])
    status, answer = _post(server, body)  # now: the current time
    assert (status, answer["rows"]) == (200, [{"customer_id": 7, "total": 2}])
