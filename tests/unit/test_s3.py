"""The registry and the Delta catalog on S3, against moto's S3 server on 127.0.0.1.

The server (moto's ``ThreadedMotoServer``) runs in a child Python process rather than in a thread
of the test process: delta-rs holds the GIL while it waits for HTTP answers, so an in-process
server thread could never answer it (the call hangs until its timeout).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import boto3
import pyarrow as pa
import pytest
from deltalake import write_deltalake

from skewless.cli import main
from skewless.compile import compile_tree
from skewless.errors import RegistryChanged, TableError
from skewless.offline.catalog import committed_partitions
from skewless.offline.storage_options import storage_options
from skewless.registry import history_uri, publish_registry, read_registry
from skewless.storage import StorageError, read_text, update_text, write_text

_SERVER = """\
import sys
from moto.server import ThreadedMotoServer

server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
print(server.get_host_and_port()[1], flush=True)
sys.stdin.read()  # serve until the test session closes our stdin (or dies)
server.stop()
"""


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """``http://127.0.0.1:PORT`` of a moto S3 server; the OS picks a free port."""
    server = subprocess.Popen(
        [sys.executable, "-c", _SERVER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert server.stdin is not None
    assert server.stdout is not None
    try:
        port = server.stdout.readline().strip()
        if not port.isdigit():
            pytest.fail(f"moto server did not start (exit code {server.poll()})")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stdin.close()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


@dataclass(frozen=True)
class Bucket:
    name: str
    client: Any

    def object_keys(self, prefix: str = "") -> list[str]:
        listing = self.client.list_objects_v2(Bucket=self.name, Prefix=prefix)
        return sorted(item["Key"] for item in listing.get("Contents", []))

    def text(self, key: str) -> str:
        return str(self.client.get_object(Bucket=self.name, Key=key)["Body"].read().decode("utf-8"))


@pytest.fixture
def s3(moto_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Bucket:
    """A fresh bucket; the AWS environment points at moto with fake credentials only."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(name, ",".join(filter(None, ["127.0.0.1,localhost", os.environ.get(name)])))
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)  # no client config cached from another test
    client = boto3.client("s3")
    bucket = Bucket(f"skewless-{uuid.uuid4().hex[:12]}", client)
    client.create_bucket(Bucket=bucket.name)
    return bucket


VIEW = """\
entity:
  name: merchant
  join_keys: {merchant_id: string}
---
source:
  name: transactions
  path: raw/transactions
  format: parquet
  timestamp: ts
  columns: {merchant_id: string, amount: float64, ts: timestamp}
---
view:
  name: merchant_txn
  version: 1
  kind: aggregation
  entity: merchant
  source: transactions
  ttl: 2d
  features:
    - {name: txn_count_7d, function: count, window: 7d}
"""


@pytest.fixture
def s3_workspace(s3: Bucket, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A config whose offline store (and so the registry) lives in the bucket."""
    for key in list(os.environ):
        if key.startswith("SKEWLESS_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "defs").mkdir()
    (tmp_path / "defs" / "defs.yaml").write_text(VIEW, encoding="utf-8")
    conf = tmp_path / "conf.yaml"
    conf.write_text(f"defs: defs\noffline_root: s3://{s3.name}/offline\n", encoding="utf-8")
    return conf


def test_apply_publishes_the_registry_to_s3_and_plan_reads_it_back(
    s3: Bucket, s3_workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = compile_tree(Path("defs"))
    registry = f"s3://{s3.name}/offline/_registry/registry.json"

    assert main(["--conf", str(s3_workspace), "apply"]) == 0
    assert f"Applied registry {manifest.registry_hash[:12]} to {registry}" in capsys.readouterr().out
    history_key = f"offline/_registry/history/{manifest.registry_hash}.json"
    assert s3.object_keys() == [history_key, "offline/_registry/registry.json"]
    pointer = json.loads(s3.text("offline/_registry/registry.json"))
    assert sorted(pointer.pop("schedule_start")) == ["merchant_txn"]  # deployment state, not hashed
    assert pointer == json.loads(manifest.to_json())
    assert s3.text(history_key) == manifest.to_json()
    assert read_registry(registry) == manifest

    assert main(["--conf", str(s3_workspace), "plan"]) == 0
    assert capsys.readouterr().out.startswith("No changes")


def test_refused_apply_leaves_the_s3_registry_unchanged(
    s3: Bucket, s3_workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--conf", str(s3_workspace), "apply"]) == 0
    before = {key: s3.text(key) for key in s3.object_keys()}
    defs = Path("defs/defs.yaml")
    defs.write_text(defs.read_text(encoding="utf-8").replace("window: 7d", "window: 8d"), encoding="utf-8")
    capsys.readouterr()

    assert main(["--conf", str(s3_workspace), "apply"]) == 1
    assert "error: refused: breaking changes" in capsys.readouterr().err
    assert {key: s3.text(key) for key in s3.object_keys()} == before


def test_plan_lists_the_committed_range_of_an_s3_table(
    s3: Bucket, s3_workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--conf", str(s3_workspace), "apply"]) == 0
    table = f"s3://{s3.name}/offline/views/merchant_txn/v1"
    days = [date(2024, 2, 1), date(2024, 1, 30), date(2024, 1, 31)]
    rows = pa.table({"merchant_id": ["a", "b", "c"], "ds": pa.array(days, pa.date32())})
    write_deltalake(table, rows, partition_by=["ds"], storage_options=storage_options(table))
    defs = Path("defs/defs.yaml")
    defs.write_text(
        defs.read_text(encoding="utf-8") + "    - {name: txn_count_1d, function: count, window: 1d}\n",
        encoding="utf-8",
    )
    capsys.readouterr()

    assert main(["--conf", str(s3_workspace), "plan"]) == 0
    out = capsys.readouterr().out
    assert (
        "  * merchant_txn -> views/merchant_txn/v1: feature added: txn_count_1d; "
        "partitions 2024-01-30 .. 2024-02-01"
    ) in out.splitlines()


def test_registry_round_trip_and_missing_objects(s3: Bucket, tmp_path: Path) -> None:
    uri = f"s3://{s3.name}/reg/registry.json"
    assert read_registry(uri) is None
    (tmp_path / "defs.yaml").write_text(VIEW, encoding="utf-8")
    manifest = compile_tree(tmp_path)
    publish_registry(uri, manifest)
    assert read_registry(uri) == manifest
    assert (
        s3.text(history_uri(uri, manifest.registry_hash).removeprefix(f"s3://{s3.name}/"))
        == manifest.to_json()
    )


def test_missing_bucket_is_a_storage_error(s3: Bucket) -> None:
    with pytest.raises(StorageError, match=r"cannot read s3://no-such-bucket-[0-9a-f]+/registry.json"):
        read_registry(f"s3://no-such-bucket-{uuid.uuid4().hex[:8]}/registry.json")


def test_committed_partitions_on_s3(s3: Bucket) -> None:
    uri = f"s3://{s3.name}/tables/t"
    assert committed_partitions(uri) == []
    days = [date(2024, 3, 2), date(2024, 3, 1), date(2024, 3, 2)]
    rows = pa.table({"k": ["a", "b", "c"], "ds": pa.array(days, pa.date32())})
    write_deltalake(uri, rows, partition_by=["ds"], storage_options=storage_options(uri))
    assert committed_partitions(uri) == [date(2024, 3, 1), date(2024, 3, 2)]
    assert any(key.startswith("tables/t/_delta_log/") for key in s3.object_keys())


def test_committed_partitions_in_a_missing_bucket_is_a_table_error(s3: Bucket) -> None:
    with pytest.raises(TableError, match="cannot read the Delta log of s3://no-such-bucket"):
        committed_partitions(f"s3://no-such-bucket-{uuid.uuid4().hex[:8]}/t")


def test_publishing_on_s3_is_a_compare_and_set(s3: Bucket, tmp_path: Path) -> None:
    uri = f"s3://{s3.name}/reg/registry.json"
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "defs.yaml").write_text(VIEW, encoding="utf-8")
    base = compile_tree(tmp_path / "a")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "defs.yaml").write_text(VIEW.replace("ttl: 2d", "ttl: 3d"), encoding="utf-8")
    other = compile_tree(tmp_path / "b")
    publish_registry(uri, base)
    with pytest.raises(RegistryChanged, match=f"now registry {base.registry_hash[:12]} is deployed"):
        publish_registry(uri, other)  # planned against "nothing deployed"
    with pytest.raises(RegistryChanged, match=f"planned against registry {other.registry_hash[:12]}"):
        publish_registry(uri, other, expected=other.registry_hash)
    assert read_registry(uri) == base
    publish_registry(uri, other, expected=base.registry_hash)
    assert read_registry(uri) == other


def test_update_text_on_s3_redecides_after_losing_a_conditional_write(s3: Bucket) -> None:
    uri = f"s3://{s3.name}/cas.txt"
    seen: list[str | None] = []

    def append(current: str | None) -> str:
        seen.append(current)
        if len(seen) <= 2:  # another writer gets in between our read and our write, twice
            write_text(uri, f"{current or ''}[other {len(seen)}]")
        return f"{current or ''}[ours]"

    # the object is absent on the first read (If-None-Match: *), present on the next (If-Match)
    assert update_text(uri, append) is True
    assert seen == [None, "[other 1]", "[other 1][other 2]"]
    assert read_text(uri) == "[other 1][other 2][ours]"
    assert update_text(uri, lambda current: None) is False
    assert read_text(uri) == "[other 1][other 2][ours]"


def test_sources_on_s3_are_inspected_and_typed_without_spark(s3: Bucket, tmp_path: Path) -> None:
    """validate reads an s3:// source's types from its footers (pandas-written, nanoseconds)."""
    import io

    import pandas as pd

    from skewless.offline.inputs import InputError, column_types, inspect_input

    frame = pd.DataFrame(
        {
            "merchant_id": ["m1", "m2"],
            "amount": pd.array([1.5, 2.5], dtype="float32"),
            "ts": pd.to_datetime(["2024-03-01 10:00", "2024-03-02 11:00"], utc=True),
        }
    )
    for day in ("2024-03-01", "2024-03-02"):
        body = io.BytesIO()
        frame.to_parquet(body)
        s3.client.put_object(
            Bucket=s3.name, Key=f"raw/txns/event_date={day}/part-0.parquet", Body=body.getvalue()
        )
    s3.client.put_object(Bucket=s3.name, Key="raw/txns/_SUCCESS", Body=b"")

    inputs = inspect_input(f"s3://{s3.name}/raw/txns")
    assert [f.path for f in inputs.files] == [
        f"s3://{s3.name}/raw/txns/event_date=2024-03-01/part-0.parquet",
        f"s3://{s3.name}/raw/txns/event_date=2024-03-02/part-0.parquet",
    ]
    assert column_types(inputs) == {
        "merchant_id": "string",
        "amount": "float32",  # the file's own type; it feeds float64 features (docs/inputs.md)
        "ts": "timestamp",
        "event_date": "string",
    }
    one_day = inspect_input(
        f"s3://{s3.name}/raw/txns", only_partitions=("event_date", frozenset({"2024-03-02"}))
    )
    assert len(one_day.files) == 1
    with pytest.raises(InputError, match=rf"s3://{s3.name}/raw/nothing: no such file or directory"):
        inspect_input(f"s3://{s3.name}/raw/nothing")
