"""Small whole-object storage for local paths and ``s3://`` URIs (the registry, reports, manifests).

Writes are atomic: a local file is written beside its target and renamed over it; an S3 PUT
replaces the object in one step. S3 goes through boto3 and its standard credential chain
(``AWS_ENDPOINT_URL`` points it at any S3-compatible server).
"""

from __future__ import annotations

import os
import tempfile
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


def read_text(uri: str) -> str | None:
    """The object's text, or None when it does not exist."""
    if uri.startswith("s3://"):
        bucket, key = _split_s3(uri)
        client = _s3_client()
        try:
            response = client.get_object(Bucket=bucket, Key=key)
            body = response["Body"].read()
        except client.exceptions.NoSuchKey:
            return None
        except Exception as exc:  # botocore raises many types; all mean "cannot read"
            raise StorageError(f"cannot read {uri}: {exc}") from exc
        try:
            return str(body.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise StorageError(
                f"cannot read {uri}: not UTF-8 text ({exc.reason} at byte {exc.start})"
            ) from exc
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
