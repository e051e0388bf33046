"""Small whole-object storage for local paths and ``s3://`` URIs (the registry, reports, manifests).

Writes are atomic: a local file is written beside its target and renamed over it; an S3 PUT
replaces the object in one step. :func:`update_text` is a compare-and-set on top of that. S3
goes through boto3 and its standard credential chain (``AWS_ENDPOINT_URL`` points it at any
S3-compatible server).
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from skewless.errors import SkewlessError


class StorageError(SkewlessError):
    pass


def _s3_client() -> Any:
    import boto3  # imported lazily: boto3 takes ~0.3 s to import and most commands never need it

    return boto3.client("s3")


def _split_s3(uri: str) -> tuple[str, str]:
    parsed = urlparse(uri)
    return parsed.netloc, parsed.path.lstrip("/")


def _read_s3(client: Any, uri: str) -> tuple[str | None, str | None]:
    """The object's text and ETag, or (None, None) when it does not exist."""
    bucket, key = _split_s3(uri)
    try:
        response = client.get_object(Bucket=bucket, Key=key)
        body = response["Body"].read()
    except client.exceptions.NoSuchKey:
        return None, None
    except Exception as exc:  # botocore raises many types; all mean "cannot read"
        raise StorageError(f"cannot read {uri}: {exc}") from exc
    try:
        return str(body.decode("utf-8")), str(response["ETag"])
    except UnicodeDecodeError as exc:
        raise StorageError(f"cannot read {uri}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc


def read_text(uri: str) -> str | None:
    """The object's text, or None when it does not exist."""
    if uri.startswith("s3://"):
        return _read_s3(_s3_client(), uri)[0]
    path = Path(uri.removeprefix("file://"))
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StorageError(f"cannot read {uri}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise StorageError(f"cannot read {uri}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc


def write_text(uri: str, text: str) -> None:
    """Replace the object at ``uri`` with ``text`` atomically."""
    if uri.startswith("s3://"):
        bucket, key = _split_s3(uri)
        try:
            _s3_client().put_object(Bucket=bucket, Key=key, Body=text.encode("utf-8"))
        except Exception as exc:  # botocore raises many types; all mean "cannot write"
            raise StorageError(f"cannot write {uri}: {exc}") from exc
        return
    path = Path(uri.removeprefix("file://"))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise StorageError(f"cannot write {uri}: {exc.strerror}") from exc


# S3 answers a conditional PUT that lost to another writer with 412 (the ETag no longer matches,
# or an object now exists), 409 (a concurrent conditional write is in progress) or 404 (If-Match
# on an object deleted meanwhile).
_LOST_RACE = frozenset({"PreconditionFailed", "ConditionalRequestConflict", "NoSuchKey"})
_S3_ATTEMPTS = 5


def update_text(uri: str, change: Callable[[str | None], str | None]) -> bool:
    """Replace the object at ``uri`` with ``change(current text)``: a compare-and-set.

    ``change`` receives the current text (None when there is no object) and returns the new
    text, or None to leave the object as it is; it raises to refuse. No other ``update_text``
    on the same object can write between the read that ``change`` sees and the write:

    * local paths hold an exclusive ``flock`` on ``<name>.lock`` beside the target from the read
      to the atomic rename (the kernel releases it if the process dies; the file stays);
    * on S3 the PUT is conditional on what was read (``If-Match: <ETag>``, or
      ``If-None-Match: *`` when there was no object); when another writer got in between, the
      object is read again and ``change`` decides again.

    Returns whether the object was written.
    """
    if uri.startswith("s3://"):
        return _update_s3(uri, change)
    path = Path(uri.removeprefix("file://"))
    lock = path.with_name(f"{path.name}.lock")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = lock.open("a")
    except OSError as exc:
        raise StorageError(f"cannot lock {uri}: {exc.strerror} ({lock})") from exc
    with handle:  # closing the file releases the lock
        fcntl.flock(handle, fcntl.LOCK_EX)
        text = change(read_text(uri))
        if text is None:
            return False
        write_text(uri, text)
        return True


def _update_s3(uri: str, change: Callable[[str | None], str | None]) -> bool:
    from botocore.exceptions import ClientError

    bucket, key = _split_s3(uri)
    client = _s3_client()
    for _ in range(_S3_ATTEMPTS):
        current, etag = _read_s3(client, uri)
        text = change(current)
        if text is None:
            return False
        condition = {"IfNoneMatch": "*"} if etag is None else {"IfMatch": etag}
        try:
            client.put_object(Bucket=bucket, Key=key, Body=text.encode("utf-8"), **condition)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in _LOST_RACE:
                continue
            raise StorageError(f"cannot write {uri}: {exc}") from exc
        except Exception as exc:  # botocore raises many types; all mean "cannot write"
            raise StorageError(f"cannot write {uri}: {exc}") from exc
        return True
    raise StorageError(f"cannot write {uri}: it changed under each of {_S3_ATTEMPTS} conditional writes")
