"""The deployed registry on local storage: publish (history copy, then pointer) and read back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from skewless.errors import RegistryError, SkewlessError
from skewless.manifest import EntitySpec, JoinKey, Manifest
from skewless.registry import history_uri, publish_registry, read_registry, require_registry
from skewless.storage import StorageError, read_text, write_text


def _manifest(*entities: str) -> Manifest:
    return Manifest(
        entities={
            name: EntitySpec(name=name, join_keys=(JoinKey(name=f"{name}_id", dtype="string"),))
            for name in entities
        },
        sources={},
        views={},
        services={},
    )


def test_history_uri_sits_beside_the_pointer() -> None:
    assert history_uri("s3://bucket/a/registry.json", "h") == "s3://bucket/a/history/h.json"
    assert history_uri("/srv/registry.json", "h") == "/srv/history/h.json"
    assert history_uri("registry.json", "h") == "./history/h.json"


def test_nothing_published_reads_none(tmp_path: Path) -> None:
    uri = str(tmp_path / "reg" / "registry.json")
    assert read_registry(uri) is None
    with pytest.raises(RegistryError, match="run `skewless apply`"):
        require_registry(uri)


def test_publish_writes_history_copy_and_pointer(tmp_path: Path) -> None:
    uri = str(tmp_path / "reg" / "registry.json")
    first, second = _manifest("merchant"), _manifest("merchant", "customer")

    assert publish_registry(uri, first) == first.registry_hash
    assert read_registry(uri) == first
    assert publish_registry(uri, second) == second.registry_hash
    assert require_registry(uri) == second

    # every applied registry stays addressable by its hash; the pointer holds the last one
    for manifest in (first, second):
        assert (
            Path(history_uri(uri, manifest.registry_hash)).read_text(encoding="utf-8") == manifest.to_json()
        )
    assert Path(uri).read_text(encoding="utf-8") == second.to_json()
    # atomic writes leave no temporary files behind
    assert sorted(p.name for p in (tmp_path / "reg").rglob("*") if p.is_file()) == sorted(
        ["registry.json", f"{first.registry_hash}.json", f"{second.registry_hash}.json"]
    )


def test_hand_edited_registry_is_refused(tmp_path: Path) -> None:
    uri = str(tmp_path / "registry.json")
    publish_registry(uri, _manifest("merchant"))
    body = json.loads(Path(uri).read_text(encoding="utf-8"))
    body["entities"]["merchant"]["join_keys"][0]["dtype"] = "int64"
    Path(uri).write_text(json.dumps(body), encoding="utf-8")
    with pytest.raises(RegistryError, match="hash mismatch"):
        read_registry(uri)


def test_unreadable_registry_is_a_user_error(tmp_path: Path) -> None:
    folder = tmp_path / "registry.json"
    folder.mkdir()  # a folder where the file should be
    with pytest.raises(StorageError, match="cannot read"):
        read_registry(str(folder))
    binary = tmp_path / "binary.json"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(StorageError, match="not UTF-8"):
        read_text(str(binary))


def test_write_failure_is_a_user_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x", encoding="utf-8")
    with pytest.raises(StorageError, match="cannot write") as info:
        write_text(str(blocker / "registry.json"), "{}")
    assert isinstance(info.value, SkewlessError)


def test_file_uri_is_a_local_path(tmp_path: Path) -> None:
    write_text(f"file://{tmp_path}/x.txt", "hello")
    assert (tmp_path / "x.txt").read_text(encoding="utf-8") == "hello"
    assert read_text(f"file://{tmp_path}/x.txt") == "hello"
