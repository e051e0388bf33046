"""``skewless get-online`` and the HTTP feature server (ASGI test client and a real uvicorn)."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from skewless.cli import main
from skewless.devstack.local_redis import free_port
from skewless.manifest import Manifest
from skewless.online.materialize import publish_rows
from skewless.online.server import create_app
from skewless.runtime.settings import Settings
from tests.helpers import deploy
from tests.online.trees import TREE

pytestmark = [
    pytest.mark.redis,
    # starlette 1.x asks for httpx2 in its TestClient; httpx still works.
    pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`"),
]


@pytest.fixture
def served(tmp_path: Path, redis_url: str) -> tuple[Settings, Manifest]:
    settings, manifest = deploy(tmp_path, TREE)
    settings = settings.model_copy(update={"redis_url": redis_url})
    ts = time.time_ns() // 1000 - 60_000_000
    publish_rows(
        redis_url, manifest.view("customer_stats"), [(1, ts, ts, 10, float("nan")), (2, ts, ts, 20, -0.0)]
    )
    publish_rows(redis_url, manifest.view("merchant_profile"), [("a,b=c", ts, ts, 3, 1.5, "ü", True)])
    publish_rows(redis_url, manifest.view("account_flags"), [(1, "eu", ts, ts, True, None)])
    return settings, manifest


def test_get_online_prints_json(
    served: tuple[Settings, Manifest], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings, _ = served
    conf = tmp_path / "conf.yaml"
    conf.write_text(f"offline_root: {settings.offline_root}\nredis_url: {settings.redis_url}\n")
    code = main(
        [
            "--conf",
            str(conf),
            "get-online",
            "--features",
            "customer_stats:total,customer_stats:score,merchant_profile:label",
            "--entity",
            "customer_id=1,merchant_id=x",
            "--entity",
            '{"customer_id": 2, "merchant_id": "a,b=c"}',
            "--entity",
            "customer_id=3,merchant_id=y",
        ]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    assert json.loads(out) == [
        {"customer_id": 1, "merchant_id": "x", "total": 10, "score": "NaN", "label": None},
        {"customer_id": 2, "merchant_id": "a,b=c", "total": 20, "score": -0.0, "label": "ü"},
        {"customer_id": 3, "merchant_id": "y", "total": None, "score": None, "label": None},
    ]
    assert '"score": -0.0' in out

    code = main(
        [
            "--conf",
            str(conf),
            "get-online",
            "--service",
            "fraud",
            "--entity",
            "customer_id=1,region=eu,merchant_id=q",
        ]
    )
    out, _ = capsys.readouterr()
    assert code == 0
    assert json.loads(out) == [
        {"customer_id": 1, "region": "eu", "merchant_id": "q", "n": None, "total": 10, "flag": True}
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--features", "customer_stats:nope", "--entity", "customer_id=1"], "has no feature 'nope'"),
        (["--features", "customer_stats:total", "--entity", "customer_id=x"], "must be an integer, got 'x'"),
        (["--features", "customer_stats:total", "--entity", "cust=1"], "'cust' is not a join key"),
        (["--features", "customer_stats:total", "--entity", "{nope"], "not a valid JSON object"),
        (["--entity", "customer_id=1"], "either --service NAME or --features"),
    ],
)
def test_get_online_errors(
    served: tuple[Settings, Manifest],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    settings, _ = served
    conf = tmp_path / "conf.yaml"
    conf.write_text(f"offline_root: {settings.offline_root}\nredis_url: {settings.redis_url}\n")
    code = main(["--conf", str(conf), "get-online", *args])
    _, err = capsys.readouterr()
    assert code != 0
    assert message in err
    assert "Traceback" not in err


def test_materialize_needs_one_date_or_a_range(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for args in ([], ["--ds", "2024-03-01", "--start", "2024-03-01"], ["--start", "2024-03-01"]):
        code = main(["materialize", "spend", *args])
        assert code == 1  # usage errors exit 1, like every failure (docs/cli.md)
        assert "give either --ds DATE or both --start DATE and --end DATE" in capsys.readouterr().err


def test_server_with_the_asgi_client(served: tuple[Settings, Manifest]) -> None:
    from starlette.testclient import TestClient

    settings, manifest = served
    with TestClient(create_app(settings, manifest)) as http:
        health = http.get("/health")
        assert health.status_code == 200
        assert health.json()["status"] == "ok"

        good = http.post(
            "/features",
            json={
                "features": ["customer_stats:total", "customer_stats:score"],
                "entities": [{"customer_id": 1}],
            },
        )
        assert good.status_code == 200
        assert good.json() == {
            "columns": ["total", "score"],
            "rows": [{"customer_id": 1, "total": 10, "score": "NaN"}],
        }
        by_service = http.post(
            "/features",
            json={"service": "fraud", "entities": [{"customer_id": 1, "region": "eu", "merchant_id": "m"}]},
        )
        assert by_service.json()["rows"][0]["flag"] is True
        later = http.post(
            "/features",
            json={
                "features": ["customer_stats:total"],
                "entities": [{"customer_id": 1}],
                "now": "2999-01-01T00:00:00",
            },
        )
        assert later.json()["rows"] == [{"customer_id": 1, "total": None}]

        errors: list[tuple[Any, int, str]] = [
            (
                {"features": ["customer_stats:nope"], "entities": [{"customer_id": 1}]},
                404,
                "has no feature 'nope'",
            ),
            ({"service": "ghost", "entities": []}, 404, "unknown service 'ghost'"),
            (
                {"features": ["customer_stats:total"], "entities": [{"customer_id": "1"}]},
                400,
                "must be an int64",
            ),
            ({"features": ["customer_stats:total"], "entities": [{}]}, 400, "missing join key 'customer_id'"),
            ({"features": ["customer_stats:total"], "entities": [5]}, 400, "expected an object of join keys"),
            (
                {"features": ["customer_stats:total"], "entities": {"customer_id": 1}},
                400,
                "'entities' must be a list",
            ),
            ({"entities": []}, 400, "either 'features'"),
            ({"features": "customer_stats:total", "entities": []}, 400, "list of 'view:feature' strings"),
            (
                {"features": ["customer_stats:total"], "entities": [], "extra": 1},
                400,
                "unknown field 'extra'",
            ),
            ({"features": ["x:y"], "entities": [], "now": "yesterday"}, 400, "not an ISO-8601 timestamp"),
        ]
        for body, status, message in errors:
            response = http.post("/features", json=body)
            assert response.status_code == status, (body, response.text)
            assert message in response.json()["error"], (body, response.text)
        broken = http.post("/features", content=b"{not json", headers={"content-type": "application/json"})
        assert broken.status_code == 400
        assert "not valid JSON" in broken.json()["error"]


def test_health_reports_an_unreachable_redis(tmp_path: Path) -> None:
    from starlette.testclient import TestClient

    settings, manifest = deploy(tmp_path, TREE)
    settings = settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{free_port()}/0"})
    with TestClient(create_app(settings, manifest)) as http:
        health = http.get("/health")
        assert health.status_code == 503
        assert "unreachable" in health.json()["error"]
        features = http.post(
            "/features", json={"features": ["customer_stats:total"], "entities": [{"customer_id": 1}]}
        )
        assert features.status_code == 503


@pytest.fixture
def real_server(served: tuple[Settings, Manifest]) -> Iterator[str]:
    import uvicorn

    settings, manifest = served
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings, manifest), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def test_real_http_server(real_server: str) -> None:
    with urllib.request.urlopen(f"{real_server}/health", timeout=10) as response:
        assert json.load(response)["status"] == "ok"
    request = urllib.request.Request(
        f"{real_server}/features",
        data=json.dumps({"features": ["customer_stats:score"], "entities": [{"customer_id": 2}]}).encode(),
        headers={"content-type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        text = response.read().decode()
    assert json.loads(text) == {"columns": ["score"], "rows": [{"customer_id": 2, "score": -0.0}]}
    assert "-0.0" in text
    bad = urllib.request.Request(
        f"{real_server}/features",
        data=b'{"features": ["nope:x"], "entities": []}',
        headers={"content-type": "application/json"},
        method="POST",
    )
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(bad, timeout=10)
    assert caught.value.code == 404
    assert "unknown view 'nope'" in json.loads(caught.value.read())["error"]
