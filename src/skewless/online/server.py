"""HTTP feature server (``skewless serve``): a Starlette app over :class:`OnlineClient`.

``GET /health``
    200 ``{"status": "ok", "registry_hash": ...}`` when Redis answers, else 503.
``POST /features``
    Body ``{"features": ["view:feature", ...] | "service": NAME, "entities": [{key: value}, ...],
    "now": optional ISO-8601 timestamp (UTC when it has no zone)}``; answers
    ``{"columns": [...], "rows": [{...}, ...]}``, one row per entity in request order, with the
    same values and JSON conventions as ``skewless get-online`` (:mod:`skewless.online.jsonio`).

``now`` is the time the answer is for (default: the current time). The online store holds only
the latest row per entity: a ``now`` before a stored row's ``feature_ts`` cannot be answered by
the point-in-time rule and is refused with 409 naming the view, the entity and that
``feature_ts`` (:class:`~skewless.errors.OnlineTimeRefused`), never answered null.

``GET /metrics``
    Prometheus text format (docs/online-store.md, "Metrics"): request latency per endpoint and
    service, entities per request, values missing or expired per view, Redis errors and
    reconnects. Each app has its own ``CollectorRegistry``.

Errors are JSON ``{"error": message}``: 400 for a malformed body or entity, 401 without the
bearer token (when one is set), 404 for an unknown view, feature or service, 409 for a ``now``
before a stored row, 413 for a body or entity list over the caps (:class:`Limits`), 503 when
Redis is unreachable.

**Access.** ``serve`` binds to 127.0.0.1 unless told otherwise. When ``SKEWLESS_SERVE_TOKEN`` is
set, ``/features`` and ``/metrics`` require ``Authorization: Bearer <token>``; ``/health`` stays
open (probes carry no secrets, and it reveals only the status and the registry hash).
"""

from __future__ import annotations

import hmac
import json
import os
import time
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from skewless.errors import (
    EntityError,
    OnlineStoreError,
    OnlineTimeRefused,
    SkewlessError,
    UnknownObjectError,
)
from skewless.manifest import Manifest
from skewless.online.client import OnlineClient
from skewless.online.jsonio import dumps, json_rows
from skewless.online.redis_store import connect
from skewless.runtime.settings import Settings

if TYPE_CHECKING:
    import redis
    from prometheus_client import CollectorRegistry
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response

MAX_BODY_BYTES = 8 * 1024 * 1024
MAX_ENTITIES = 10_000
TOKEN_ENV = "SKEWLESS_SERVE_TOKEN"
"""Environment variable holding the bearer token ``serve`` requires (unset or empty: no token)."""


@dataclass(frozen=True)
class Limits:
    """Request caps: a larger body or entity list is refused with 413 before any Redis read."""

    max_body_bytes: int = MAX_BODY_BYTES
    max_entities: int = MAX_ENTITIES


class BadRequest(SkewlessError):
    pass


class TooLarge(BadRequest):
    """A request over :class:`Limits` (413)."""


def _response(body: Any, status: int = 200) -> Response:
    from starlette.responses import Response

    return Response(dumps(body), status_code=status, media_type="application/json")


def _error(message: str, status: int) -> Response:
    return _response({"error": message}, status)


def _parse_request(raw: bytes, limits: Limits = Limits()) -> tuple[list[Any], Any, Any, datetime | None]:
    if len(raw) > limits.max_body_bytes:
        raise TooLarge(f"request body larger than {limits.max_body_bytes} bytes")
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadRequest(f"body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise BadRequest("body must be a JSON object with 'entities' and 'features' or 'service'")
    unknown = sorted(set(body) - {"entities", "features", "service", "now"})
    if unknown:
        raise BadRequest(f"unknown field {unknown[0]!r} (expected entities, features, service, now)")
    entities = body.get("entities")
    if not isinstance(entities, list):
        raise BadRequest("'entities' must be a list of objects of join keys")
    if len(entities) > limits.max_entities:
        raise TooLarge(f"at most {limits.max_entities} entities per request, got {len(entities)}")
    features, service = body.get("features"), body.get("service")
    if (features is None) == (service is None):
        raise BadRequest("give either 'features' (a list of 'view:feature') or 'service', not both")
    if features is not None and not (
        isinstance(features, list) and all(isinstance(f, str) for f in features)
    ):
        raise BadRequest("'features' must be a list of 'view:feature' strings")
    if service is not None and not isinstance(service, str):
        raise BadRequest("'service' must be a string")
    now = None
    if body.get("now") is not None:
        if not isinstance(body["now"], str):
            raise BadRequest("'now' must be an ISO-8601 timestamp string")
        try:
            now = datetime.fromisoformat(body["now"])
        except ValueError:
            raise BadRequest(f"'now' is not an ISO-8601 timestamp: {body['now']!r}") from None
    return entities, features, service, now


class ServerMetrics:
    """The server's Prometheus metrics, in a registry of their own (several apps per process work)."""

    LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
    ENTITY_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.registry: CollectorRegistry = CollectorRegistry(auto_describe=True)
        labels = ("endpoint", "service")
        self.latency = Histogram(
            "skewless_request_duration_seconds",
            "Time to answer a request, by endpoint and feature service ('-': a feature list or none).",
            labels,
            buckets=self.LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.requests = Counter(
            "skewless_requests",
            "Requests answered, by endpoint, service and HTTP status.",
            (*labels, "code"),
            registry=self.registry,
        )
        self.entities = Histogram(
            "skewless_request_entities",
            "Entities per /features request, by service.",
            ("service",),
            buckets=self.ENTITY_BUCKETS,
            registry=self.registry,
        )
        self.missing = Counter(
            "skewless_values_missing",
            "Entities read with no value for a view (no key in Redis, or the entity dropped out).",
            ("view",),
            registry=self.registry,
        )
        self.expired = Counter(
            "skewless_values_expired",
            "Entities whose stored value was past its ttl at the request's time, by view.",
            ("view",),
            registry=self.registry,
        )
        self.redis_errors = Counter(
            "skewless_redis_errors",
            "Requests that failed because Redis did not answer (503).",
            ("endpoint",),
            registry=self.registry,
        )
        self.redis_reconnects = Counter(
            "skewless_redis_reconnects",
            "Connections to Redis opened again after being dropped (errors, timeouts, restarts).",
            registry=self.registry,
        )

    def observe_misses(self, view: str, missing: int, expired: int) -> None:
        if missing:
            self.missing.labels(view).inc(missing)
        if expired:
            self.expired.labels(view).inc(expired)

    def count_reconnects(self, client: redis.Redis) -> None:
        """Count every connect of a pooled connection after its first one."""
        pool = client.connection_pool
        counter = self.redis_reconnects
        base: Any = pool.connection_class

        class CountingConnection(base):  # type: ignore[misc]
            _skewless_connects = 0

            def on_connect_check_health(self, *args: Any, **kwargs: Any) -> Any:
                # redis-py runs it once a socket is open (on_connect calls it too).
                result = super().on_connect_check_health(*args, **kwargs)
                self._skewless_connects += 1
                if self._skewless_connects > 1:
                    counter.inc()
                return result

        pool.connection_class = CountingConnection

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST


async def _read_body(request: Request, limit: int) -> bytes:
    """The body; :class:`TooLarge` as soon as it passes ``limit`` bytes (never buffered whole)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise TooLarge(f"request body larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"request body larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(
    settings: Settings,
    manifest: Manifest,
    client: OnlineClient | None = None,
    *,
    token: str | None = None,
    limits: Limits = Limits(),
) -> Starlette:
    """The ASGI app; it owns ``client`` (closed on shutdown) unless one is given.

    ``token``: the bearer token /features and /metrics require (None or empty: none). The app's
    metrics are ``app.state.metrics`` (:class:`ServerMetrics`).
    """
    from contextlib import asynccontextmanager

    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.responses import Response
    from starlette.routing import Route

    metrics = ServerMetrics()
    if client is None:
        redis_client = connect(settings.redis_url)
        metrics.count_reconnects(redis_client)
        online = OnlineClient(settings, manifest, redis_client=redis_client)
    else:
        online = client
    online.observe_misses = metrics.observe_misses
    expected = f"Bearer {token}".encode() if token else None
    services = frozenset(manifest.services)

    def authorized(request: Request) -> bool:
        if expected is None:
            return True
        given = request.headers.get("authorization", "").encode()
        return hmac.compare_digest(given, expected)

    def unauthorized() -> Response:
        response = _error("missing or wrong bearer token (Authorization: Bearer <token>)", 401)
        response.headers["WWW-Authenticate"] = "Bearer"
        return response

    def done(endpoint: str, service: str, started: float, response: Response) -> Response:
        metrics.latency.labels(endpoint, service).observe(time.perf_counter() - started)
        metrics.requests.labels(endpoint, service, str(response.status_code)).inc()
        return response

    async def health(request: Request) -> Response:
        started = time.perf_counter()
        try:
            await run_in_threadpool(online.ping)
        except OnlineStoreError as exc:
            metrics.redis_errors.labels("/health").inc()
            return done("/health", "-", started, _response({"status": "unavailable", "error": str(exc)}, 503))
        return done(
            "/health", "-", started, _response({"status": "ok", "registry_hash": manifest.registry_hash})
        )

    async def features(request: Request) -> Response:
        started = time.perf_counter()
        if not authorized(request):
            return done("/features", "-", started, unauthorized())
        service_label = "-"
        try:
            entities, refs, service, now = _parse_request(
                await _read_body(request, limits.max_body_bytes), limits
            )
            if isinstance(service, str):
                service_label = service if service in services else "(unknown)"
            metrics.entities.labels(service_label).observe(len(entities))
            plan = online.plan(refs, service)
            rows = await run_in_threadpool(online.get_online_features, entities, refs, service, now)
        except TooLarge as exc:
            return done("/features", service_label, started, _error(str(exc), 413))
        except (BadRequest, EntityError) as exc:
            return done("/features", service_label, started, _error(str(exc), 400))
        except UnknownObjectError as exc:
            return done("/features", service_label, started, _error(str(exc), 404))
        except OnlineTimeRefused as exc:
            return done("/features", service_label, started, _error(str(exc), 409))
        except OnlineStoreError as exc:
            metrics.redis_errors.labels("/features").inc()
            return done("/features", service_label, started, _error(str(exc), 503))
        except SkewlessError as exc:
            return done("/features", service_label, started, _error(str(exc), 400))
        body = {"columns": list(plan.columns), "rows": json_rows(rows)}
        return done("/features", service_label, started, _response(body))

    async def metrics_page(request: Request) -> Response:
        if not authorized(request):
            return unauthorized()
        payload, content_type = metrics.render()
        return Response(payload, media_type=content_type)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> Any:
        yield
        if client is None:
            online.close()

    app = Starlette(
        routes=[
            Route("/health", health, methods=["GET"]),
            Route("/features", features, methods=["POST"]),
            Route("/metrics", metrics_page, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
    app.state.metrics = metrics
    return app


def serve(settings: Settings, manifest: Manifest, host: str, port: int, *, limits: Limits = Limits()) -> None:
    """Run the server until interrupted (uvicorn, one process); the token comes from :data:`TOKEN_ENV`."""
    import uvicorn

    app = create_app(settings, manifest, token=os.environ.get(TOKEN_ENV) or None, limits=limits)
    uvicorn.run(app, host=host, port=port, log_level="info", access_log=False)
