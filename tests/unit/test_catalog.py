"""Committed ``ds`` partitions read from Delta logs with delta-rs (no Spark), on local paths."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from deltalake import write_deltalake

from skewless.errors import TableError
from skewless.manifest import Manifest
from skewless.offline.catalog import committed_partitions, committed_ranges
from skewless.offline.storage_options import storage_options
from skewless.plan import DateRange
from skewless.runtime.settings import Settings

D1, D2, D3, D4 = (date(2024, 1, d) for d in (1, 2, 3, 4))


def _rows(*days: date | None) -> pa.Table:
    return pa.table(
        {
            "merchant_id": pa.array([f"m{i}" for i in range(len(days))], pa.string()),
            "ds": pa.array(list(days), pa.date32()),
            "value": pa.array(range(len(days)), pa.int64()),
        }
    )


def _write(uri: str, table: pa.Table, **kwargs: Any) -> None:
    write_deltalake(uri, table, partition_by=["ds"], **kwargs)


def test_partitions_of_a_ds_partitioned_table(tmp_path: Path) -> None:
    uri = str(tmp_path / "views" / "merchant_txn" / "v1")
    _write(uri, _rows(D3, D1, D1))
    assert committed_partitions(uri) == [D1, D3]

    _write(uri, _rows(D2, D3), mode="append")
    assert committed_partitions(uri) == [D1, D2, D3]
    assert committed_partitions(uri, version=0) == [D1, D3]  # time travel


def test_replaced_and_deleted_partitions_are_no_longer_committed(tmp_path: Path) -> None:
    uri = str(tmp_path / "t")
    _write(uri, _rows(D1, D2, D3))
    _write(uri, _rows(D4), mode="overwrite", predicate="ds = '2024-01-02' OR ds = '2024-01-04'")
    assert committed_partitions(uri) == [D1, D3, D4]


def test_missing_table_has_no_partitions(tmp_path: Path) -> None:
    assert committed_partitions(str(tmp_path / "nothing")) == []
    (tmp_path / "empty").mkdir()
    assert committed_partitions(str(tmp_path / "empty")) == []


def test_null_ds_partition_is_skipped(tmp_path: Path) -> None:
    uri = str(tmp_path / "t")
    _write(uri, _rows(D2, None))
    assert committed_partitions(uri) == [D2]


def test_table_not_partitioned_by_ds_is_an_error(tmp_path: Path) -> None:
    uri = str(tmp_path / "t")
    write_deltalake(uri, _rows(D1))
    with pytest.raises(TableError, match="not partitioned by ds"):
        committed_partitions(uri)


def test_ds_that_is_not_a_date_is_an_error(tmp_path: Path) -> None:
    uri = str(tmp_path / "t")
    write_deltalake(uri, pa.table({"ds": ["2024-01-01", "yesterday"], "v": [1, 2]}), partition_by=["ds"])
    with pytest.raises(TableError, match="partition ds='yesterday' is not a yyyy-mm-dd date"):
        committed_partitions(uri)


def test_missing_version_is_an_error_naming_the_table(tmp_path: Path) -> None:
    uri = str(tmp_path / "t")
    _write(uri, _rows(D1))
    with pytest.raises(TableError, match=rf"cannot read the Delta log of {uri} at version 7"):
        committed_partitions(uri, version=7)


def _manifest(*views: tuple[str, int]) -> Manifest:
    """A manifest holding snapshot views ``(name, version)`` over one source."""
    body = {
        "entities": {"m": {"name": "m", "join_keys": [{"name": "merchant_id", "dtype": "string"}]}},
        "sources": {},
        "views": {
            name: {
                "name": name,
                "version": version,
                "kind": "snapshot",
                "entity": "m",
                "join_keys": [{"name": "merchant_id", "dtype": "string"}],
                "source": {"name": "s", "path": "raw/s", "format": "parquet", "timestamp": "ts"},
                "filter": None,
                "ttl_seconds": 86400,
                "availability_lag_seconds": 0,
                "features": [{"name": "value", "dtype": "int64", "column": "value", "meaning_hash": "x"}],
                "expectations": [],
                "table": f"views/{name}/v{version}",
                "tiles_table": None,
                "content_hash": "x",
            }
            for name, version in views
        },
        "services": {},
    }
    return Manifest.model_validate(body)


def test_committed_ranges_of_the_tables_of_every_manifest(tmp_path: Path) -> None:
    settings = Settings(offline_root=str(tmp_path / "offline"))
    _write(settings.table_uri("views/a/v1"), _rows(D2, D4, D3))
    _write(settings.table_uri("views/b/v2"), _rows(D1))
    deployed = _manifest(("a", 1), ("b", 1))  # b v1 has no table: absent from the result
    new = _manifest(("a", 1), ("b", 2))
    assert committed_ranges(settings, deployed) == {"views/a/v1": DateRange(D2, D4)}
    assert committed_ranges(settings, new, deployed) == {
        "views/a/v1": DateRange(D2, D4),
        "views/b/v2": DateRange(D1, D1),
    }


def test_storage_options_are_none_for_local_paths() -> None:
    assert storage_options("/data/offline/t") is None
    assert storage_options("file:///data/offline/t") is None


_AWS = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
)


def test_s3_storage_options_follow_the_aws_sdk_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _AWS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_REGION", "eu-central-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "https://global.example")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9000")
    assert storage_options("s3://bucket/offline/t") == {
        "AWS_ACCESS_KEY_ID": "key",
        "AWS_SECRET_ACCESS_KEY": "secret",
        "AWS_REGION": "eu-central-1",  # AWS_REGION wins over AWS_DEFAULT_REGION
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9000",  # the S3-specific endpoint wins
        "AWS_ALLOW_HTTP": "true",
        "AWS_S3_ALLOW_UNSAFE_RENAME": "true",
    }


def test_s3_storage_options_without_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _AWS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    assert storage_options("s3a://bucket/t") == {
        "AWS_REGION": "eu-west-1",
        "AWS_S3_ALLOW_UNSAFE_RENAME": "true",
    }
