"""Redis connection and the check-and-set write script of the online store.

Connections come from ``settings.redis_url`` (``redis://`` or ``rediss://``). The password comes
only from that URL (itself usually set through ``SKEWLESS_REDIS_URL``) or from the environment
variable ``SKEWLESS_REDIS_PASSWORD``; it never appears in a message or a log line
(:func:`redact_url`). Every connection has socket timeouts and retries connection errors with
exponential backoff (redis-py's ``Retry``): every command skewless sends is idempotent.

Writes go through one Lua script (:data:`WRITE_SCRIPT`), loaded once and called with
``EVALSHA`` for a batch of keys at a time: for each key it keeps the stored value when that
value's ``(feature_ts, created_ts)`` is newer, and otherwise stores the new value (or tombstone)
with ``PXAT`` at the expiry the caller computed (:func:`skewless.semantics.expire_at_ms`). The
comparison happens inside Redis, atomically, so concurrent writers and late backfills cannot
roll serving back in time.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit, urlunsplit

from skewless.errors import OnlineStoreError

if TYPE_CHECKING:
    import redis

PASSWORD_ENV = "SKEWLESS_REDIS_PASSWORD"
SOCKET_TIMEOUT_S = 5.0
CONNECT_TIMEOUT_S = 2.0
RETRIES = 3
BACKOFF_BASE_S = 0.05
BACKOFF_CAP_S = 1.0

# KEYS: the keys of the batch. ARGV[2i - 1]: the PXAT millisecond of KEYS[i] (computed by
# skewless.semantics.expire_at_ms, never here); ARGV[2i]: the value (or tombstone) for KEYS[i],
# a MessagePack array whose feature_ts and created_ts stamps are big-endian int64 microseconds
# at bytes 6..13 and 15..22 (1-based; see skewless.online.encoding). The script only compares:
# the expiry against the Redis clock, the stamps against the stored value's.
# Lua numbers are doubles: exact for microsecond timestamps up to the year 2255.
# The stored values are read with one MGET (a redis.call per key costs more than the rest of
# the work for it); `current` tracks writes so a key repeated in the batch compares against the
# value written before it. Returns {written, kept_newer, already_expired}.
WRITE_SCRIPT = """
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local stored = redis.call('MGET', unpack(KEYS))
local current = {}
for i = 1, #KEYS do current[KEYS[i]] = stored[i] end
local written, kept, expired = 0, 0, 0
for i = 1, #KEYS do
  local key, expire_ms, value = KEYS[i], ARGV[2 * i - 1], ARGV[2 * i]
  if tonumber(expire_ms) < now_ms then
    expired = expired + 1
  else
    local ts, _, created = struct.unpack('>i8B>i8', value, 6)
    local old = current[key]
    local newer = false
    if old and #old >= 22 then
      local sts, _, screated = struct.unpack('>i8B>i8', old, 6)
      newer = sts > ts or (sts == ts and screated > created)
    end
    if newer then
      kept = kept + 1
    else
      redis.call('SET', key, value, 'PXAT', expire_ms)
      current[key] = value
      written = written + 1
    end
  end
end
return {written, kept, expired}
"""
MAX_BATCH = 4096
"""Keys per script call at most (Lua's unpack() has a limit of about 8000 values)."""


@dataclass(frozen=True)
class WriteCounts:
    written: int = 0
    kept_newer: int = 0
    already_expired: int = 0

    def __add__(self, other: WriteCounts) -> WriteCounts:
        return WriteCounts(
            self.written + other.written,
            self.kept_newer + other.kept_newer,
            self.already_expired + other.already_expired,
        )


def redact_url(url: str) -> str:
    """The URL without its password (``redis://user:***@host:port/db``)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable redis url>"
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, f"{user}:***@{host}", parts.path, parts.query, parts.fragment))


def env_password(url: str) -> str | None:
    """The password from ``SKEWLESS_REDIS_PASSWORD``, when ``url`` has none of its own."""
    password = os.environ.get(PASSWORD_ENV)
    return password if password and urlsplit(url).password is None else None


def connect(
    url: str, *, password: str | None = None, socket_timeout: float = SOCKET_TIMEOUT_S
) -> redis.Redis:
    """A client for ``url`` with timeouts and retries; raises :class:`OnlineStoreError` on a bad URL.

    The password is the URL's, else ``password``, else ``SKEWLESS_REDIS_PASSWORD``. Query
    parameters of the URL (e.g. ``?socket_timeout=2``) override the defaults.
    """
    import redis
    from redis.backoff import ExponentialWithJitterBackoff
    from redis.retry import Retry

    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise OnlineStoreError(
            f"redis_url {redact_url(url)!r} must start with redis://, rediss:// or unix://"
        )
    options: dict[str, Any] = {
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": CONNECT_TIMEOUT_S,
        "retry": Retry(ExponentialWithJitterBackoff(base=BACKOFF_BASE_S, cap=BACKOFF_CAP_S), RETRIES),
        "retry_on_error": [redis.ConnectionError, redis.TimeoutError],
        "health_check_interval": 30,
        "decode_responses": False,
    }
    password = password or env_password(url)
    if password and parts.password is None:
        options["password"] = password
    try:
        return redis.Redis.from_url(url, **options)
    except ValueError as exc:
        raise OnlineStoreError(f"invalid redis_url {redact_url(url)!r}: {exc}") from None


def describe_error(exc: BaseException, url: str) -> str:
    """A one-line explanation of a redis-py error, never containing the password."""
    import redis

    target = redact_url(url)
    if isinstance(exc, redis.exceptions.AuthenticationError):
        return f"Redis at {target} refused the credentials (set the password in redis_url or {PASSWORD_ENV})"
    if isinstance(exc, redis.TimeoutError):
        return f"Redis at {target} did not answer in time (after {RETRIES} retries): {_scrub(exc, url)}"
    if isinstance(exc, redis.ConnectionError):
        return f"Redis at {target} is unreachable (after {RETRIES} retries): {_scrub(exc, url)}"
    return f"Redis at {target} failed: {type(exc).__name__}: {_scrub(exc, url)}"


def _scrub(exc: BaseException, url: str) -> str:
    text = str(exc)
    try:
        password = urlsplit(url).password
    except ValueError:
        password = None
    for secret in (password, os.environ.get(PASSWORD_ENV)):
        if secret:
            text = text.replace(secret, "***")
    return text


class ScriptWriter:
    """Calls the write script on one connection: batches of keys, several batches per round trip.

    Commands are packed by hiredis straight from the argument tuples (redis-py's pipeline spends
    about a microsecond per argument before that) and sent in one write; the replies are read in
    order. Connection errors reconnect and resend the round trip with the client's backoff (the
    script is idempotent); a Redis that lost the script (restart, SCRIPT FLUSH) gets it again.
    """

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self.sha = self.load()

    def load(self) -> str:
        return str(self.client.script_load(WRITE_SCRIPT))

    def write(self, batches: Sequence[tuple[Sequence[str], Sequence[int | bytes]]]) -> WriteCounts:
        """Write batches in one round trip (one EVALSHA per batch).

        A batch is ``(keys, arguments)``: for each key in order, its ``PXAT`` millisecond then its
        value, ``[expire_ms_1, value_1, expire_ms_2, value_2, ...]``.
        """
        import hiredis
        import redis

        if any(len(keys) > MAX_BATCH for keys, _ in batches):
            raise OnlineStoreError(f"at most {MAX_BATCH} keys per script call")
        packed = b"".join(
            [
                hiredis.pack_command(cast(Any, ("EVALSHA", self.sha, len(keys), *keys, *arguments)))
                for keys, arguments in batches
            ]
        )
        try:
            replies = self._round_trip(packed, len(batches))
        except redis.exceptions.NoScriptError:
            self.load()  # the same script has the same sha
            replies = self._round_trip(packed, len(batches))
        total = WriteCounts()
        for written, kept, expired in replies:
            total = total + WriteCounts(int(written), int(kept), int(expired))
        return total

    def _round_trip(self, packed: bytes, count: int) -> list[Any]:
        return round_trip(self.client, packed, count)


def round_trip(
    client: redis.Redis, packed: bytes, count: int, each: Callable[[int, Any], Any] | None = None
) -> list[Any]:
    """Send already packed commands on one pooled connection and read their ``count`` replies.

    ``each(index, reply)``, when given, handles every reply as soon as it arrives, while Redis is
    still answering the next commands; its results are returned instead of the replies.
    Connection errors and timeouts disconnect and try again with the client's retry policy (the
    commands must be idempotent); any other error drops the connection, whose later replies are
    unread.
    """
    pool = client.connection_pool
    connection: Any = pool.get_connection()

    def attempt() -> list[Any]:
        connection.send_packed_command([packed], check_health=False)
        if each is None:
            return [connection.read_response() for _ in range(count)]
        return [each(index, connection.read_response()) for index in range(count)]

    try:
        return list(connection.retry.call_with_retry(attempt, lambda _: connection.disconnect()))
    except BaseException:
        connection.disconnect()
        raise
    finally:
        pool.release(connection)
