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

Errors are JSON ``{"error": message}``: 400 for a malformed body or entity, 404 for an unknown
view, feature or service, 409 for a ``now`` before a stored row, 503 when Redis is unreachable.
"""

from __future__ import annotations

import json
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
from skewless.runtime.settings import Settings

if TYPE_CHECKING:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response

MAX_BODY_BYTES = 8 * 1024 * 1024
MAX_ENTITIES = 10_000


class BadRequest(SkewlessError):
    pass


def _response(body: Any, status: int = 200) -> Response:
    from starlette.responses import Response

    return Response(dumps(body), status_code=status, media_type="application/json")


def _error(message: str, status: int) -> Response:
    return _response({"error": message}, status)


def _parse_request(raw: bytes) -> tuple[list[Any], Any, Any, datetime | None]:
    if len(raw) > MAX_BODY_BYTES:
        raise BadRequest(f"request body larger than {MAX_BODY_BYTES} bytes")
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
    if len(entities) > MAX_ENTITIES:
        raise BadRequest(f"at most {MAX_ENTITIES} entities per request, got {len(entities)}")
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


def create_app(settings: Settings, manifest: Manifest, client: OnlineClient | None = None) -> Starlette:
    """The ASGI app; it owns ``client`` (closed on shutdown) unless one is given."""
    from contextlib import asynccontextmanager

    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.routing import Route

    online = client or OnlineClient(settings, manifest)

    async def health(request: Request) -> Response:
        try:
            await run_in_threadpool(online.ping)
        except OnlineStoreError as exc:
            return _response({"status": "unavailable", "error": str(exc)}, 503)
        return _response({"status": "ok", "registry_hash": manifest.registry_hash})

    async def features(request: Request) -> Response:
        try:
            entities, refs, service, now = _parse_request(await request.body())
            plan = online.plan(refs, service)
            rows = await run_in_threadpool(online.get_online_features, entities, refs, service, now)
        except (BadRequest, EntityError) as exc:
            return _error(str(exc), 400)
        except UnknownObjectError as exc:
            return _error(str(exc), 404)
        except OnlineTimeRefused as exc:
            return _error(str(exc), 409)
        except OnlineStoreError as exc:
            return _error(str(exc), 503)
        except SkewlessError as exc:
            return _error(str(exc), 400)
        return _response({"columns": list(plan.columns), "rows": json_rows(rows)})

    @asynccontextmanager
    async def lifespan(app: Starlette) -> Any:
        yield
        if client is None:
            online.close()

    return Starlette(
        routes=[Route("/health", health, methods=["GET"]), Route("/features", features, methods=["POST"])],
        lifespan=lifespan,
    )


def serve(settings: Settings, manifest: Manifest, host: str, port: int) -> None:
    """Run the server until interrupted (uvicorn, one process)."""
    import uvicorn

    uvicorn.run(create_app(settings, manifest), host=host, port=port, log_level="info", access_log=False)
