"""What ``materialize`` published: the latest ``ds`` of each view version, kept in Redis.

One sorted set, :data:`PUBLISHED_KEY`, member ``<view>:<version>``, score the ``ds`` as a day
number (:func:`skewless.semantics.day_number`). ``ZADD ... GT`` only ever raises a score, so a
late backfill of an old ``ds`` never makes a view look fresher or staler than it is, and
concurrent writers need no lock. It is written after the values of that ``ds`` are in Redis,
so the marker never runs ahead of the values (docs/online-store.md, "Freshness marker").
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date

from skewless import semantics
from skewless.errors import OnlineStoreError
from skewless.manifest import ViewSpec
from skewless.online.redis_store import connect, describe_error

PUBLISHED_KEY = "sk-published"


def member(view: ViewSpec) -> str:
    return f"{view.name}:{view.version}"


def record_published(url: str, view: ViewSpec, ds: date) -> None:
    """Raise the view's published ``ds`` to ``ds`` (no change when a later one is recorded)."""
    import redis

    client = connect(url)
    try:
        client.zadd(PUBLISHED_KEY, {member(view): semantics.day_number(ds)}, gt=True)
    except redis.RedisError as exc:
        raise OnlineStoreError(
            f"{view.name}: cannot record the published ds: {describe_error(exc, url)}"
        ) from None
    finally:
        client.close()


def read_published(url: str, views: Iterable[ViewSpec]) -> dict[str, date | None]:
    """The latest published ``ds`` of each view (by name; None: never published at this version)."""
    import redis

    chosen = list(views)
    if not chosen:
        return {}
    client = connect(url)
    try:
        scores = client.zmscore(PUBLISHED_KEY, [member(view) for view in chosen])
    except redis.RedisError as exc:
        raise OnlineStoreError(describe_error(exc, url)) from None
    finally:
        client.close()
    return {
        view.name: None if score is None else semantics.from_day_number(int(score))
        for view, score in zip(chosen, scores, strict=True)
    }
