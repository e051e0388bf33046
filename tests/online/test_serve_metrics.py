"""``serve``'s /metrics, bearer token and request caps: the real ASGI app against a real redis-server.

The scrape is parsed with prometheus_client's own text parser; the expected counts follow from
the requests sent (which entities have values, which are missing or expired).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from skewless.devstack.local_redis import LocalRedis
from skewless.manifest import Manifest
from skewless.online.materialize import publish_rows
from skewless.online.server import Limits, create_app
from skewless.runtime.settings import Settings
from tests.helpers import deploy
from tests.online.trees import TREE

pytestmark = [
    pytest.mark.redis,
    pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`"),
]

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
DAY_US = 86_400_000_000


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    from prometheus_client.parser import text_string_to_metric_families

    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _get(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def deployed(tmp_path: Path, redis_url: str) -> tuple[Settings, Manifest, int]:
    settings, manifest = deploy(tmp_path, TREE)
    settings = settings.model_copy(update={"redis_url": redis_url})
    ts = time.time_ns() // 1000 - 60_000_000
    publish_rows(redis_url, manifest.view("customer_stats"), [(1, ts, ts, 10, 0.5)])
    publish_rows(redis_url, manifest.view("merchant_profile"), [("m1", ts, ts, 3, 1.5, "x", True)])
    return settings, manifest, ts


@pytest.fixture
def http(deployed: tuple[Settings, Manifest, int]) -> Iterator[Any]:
    from starlette.testclient import TestClient

    settings, manifest, _ = deployed
    app = create_app(settings, manifest, token=TOKEN, limits=Limits(max_body_bytes=2000, max_entities=5))
    with TestClient(app) as client:
        yield client


def test_metrics_after_a_burst_show_counts_buckets_misses_and_expiries(
    http: Any, deployed: tuple[Settings, Manifest, int]
) -> None:
    _, _, ts = deployed
    entities = [
        {"merchant_id": "m1", "customer_id": 1, "region": "eu"},
        {"merchant_id": "zz", "customer_id": 3, "region": "eu"},
    ]
    burst = 20
    for _ in range(burst):
        response = http.post("/features", json={"service": "fraud", "entities": entities}, headers=AUTH)
        assert response.status_code == 200, response.text
        assert [row["total"] for row in response.json()["rows"]] == [10, None]
    # Asked 3 days after its feature_ts, customer 1's value (ttl 2d) has expired.
    later = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime((ts + 3 * DAY_US) / 1e6))
    expired_requests = 5
    for _ in range(expired_requests):
        body = {"features": ["customer_stats:total"], "entities": [{"customer_id": 1}], "now": later}
        response = http.post("/features", json=body, headers=AUTH)
        assert response.status_code == 200, response.text
        assert response.json()["rows"] == [{"customer_id": 1, "total": None}]

    scrape = http.get("/metrics", headers=AUTH)
    assert scrape.status_code == 200
    assert scrape.headers["content-type"].startswith("text/plain")
    samples = _samples(scrape.text)

    latency = "skewless_request_duration_seconds"
    fraud = {"endpoint": "/features", "service": "fraud"}
    assert _get(samples, f"{latency}_count", **fraud) == burst
    assert _get(samples, f"{latency}_count", endpoint="/features", service="-") == expired_requests
    buckets = sorted(
        (float(dict(labels)["le"]), value)
        for (name, labels), value in samples.items()
        if name == f"{latency}_bucket" and dict(labels)["service"] == "fraud"
    )
    assert len(buckets) == 14  # 13 bounds and +Inf
    assert buckets[-1] == (float("inf"), burst)
    assert all(a[1] <= b[1] for a, b in pairwise(buckets))  # cumulative
    assert 0 < _get(samples, f"{latency}_sum", **fraud) < buckets[-1][1] * 5.0
    assert _get(samples, "skewless_requests_total", **fraud, code="200") == burst

    assert _get(samples, "skewless_request_entities_count", service="fraud") == burst
    assert _get(samples, "skewless_request_entities_sum", service="fraud") == burst * len(entities)
    assert _get(samples, "skewless_request_entities_bucket", service="fraud", le="1.0") == 0
    assert _get(samples, "skewless_request_entities_bucket", service="fraud", le="2.0") == burst

    # Per request: merchant zz and customer 3 have no key; account_flags has none at all.
    missing = "skewless_values_missing_total"
    assert _get(samples, missing, view="merchant_profile") == burst
    assert _get(samples, missing, view="customer_stats") == burst
    assert _get(samples, missing, view="account_flags") == burst * 2
    assert _get(samples, "skewless_values_expired_total", view="customer_stats") == expired_requests
    assert _get(samples, "skewless_values_expired_total", view="merchant_profile") == 0
    assert _get(samples, "skewless_redis_errors_total", endpoint="/features") == 0


def test_without_the_token_401_and_health_stays_open(http: Any) -> None:
    body = {"service": "fraud", "entities": [{"merchant_id": "m1", "customer_id": 1, "region": "eu"}]}
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        response = http.post("/features", json=body, headers=headers)
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
        assert "bearer token" in response.json()["error"]
        assert http.get("/metrics", headers=headers).status_code == 401
    assert http.get("/health").status_code == 200
    assert http.post("/features", json=body, headers=AUTH).status_code == 200
    samples = _samples(http.get("/metrics", headers=AUTH).text)
    assert _get(samples, "skewless_requests_total", endpoint="/features", service="-", code="401") == 3


def test_over_the_caps_413_with_a_clear_message(http: Any) -> None:
    six = [{"customer_id": n} for n in range(6)]
    response = http.post(
        "/features", json={"features": ["customer_stats:total"], "entities": six}, headers=AUTH
    )
    assert response.status_code == 413
    assert response.json() == {"error": "at most 5 entities per request, got 6"}

    big = {"features": ["customer_stats:total"], "entities": [{"customer_id": 1}], "pad": "x" * 3000}
    response = http.post("/features", json=big, headers=AUTH)
    assert response.status_code == 413
    assert response.json() == {"error": "request body larger than 2000 bytes"}

    # Without a Content-Length (chunked): refused while reading, as soon as it passes the cap.
    response = http.post("/features", content=iter([b"{" * 1500, b" " * 1500]), headers=AUTH)
    assert response.status_code == 413
    assert response.json() == {"error": "request body larger than 2000 bytes"}

    # The server still answers normally afterwards.
    ok = {"features": ["customer_stats:total"], "entities": [{"customer_id": 1}]}
    assert http.post("/features", json=ok, headers=AUTH).json()["rows"] == [{"customer_id": 1, "total": 10}]
    samples = _samples(http.get("/metrics", headers=AUTH).text)
    assert _get(samples, "skewless_requests_total", endpoint="/features", service="-", code="413") == 3


def test_redis_errors_and_reconnects_are_counted(tmp_path: Path) -> None:
    from starlette.testclient import TestClient

    with LocalRedis() as server:
        settings, manifest = deploy(tmp_path, TREE)
        settings = settings.model_copy(update={"redis_url": server.url})
        body = {"features": ["customer_stats:total"], "entities": [{"customer_id": 1}]}
        with TestClient(create_app(settings, manifest)) as http:
            assert http.post("/features", json=body).status_code == 200
            server.kill()
            down = http.post("/features", json=body)
            assert down.status_code == 503
            assert "error" in down.json()
            assert http.get("/health").status_code == 503
            server.start()
            assert http.post("/features", json=body).status_code == 200
            samples = _samples(http.get("/metrics").text)
    assert _get(samples, "skewless_redis_errors_total", endpoint="/features") == 1
    assert _get(samples, "skewless_redis_errors_total", endpoint="/health") == 1
    assert _get(samples, "skewless_redis_reconnects_total") == 1
