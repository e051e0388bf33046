"""The deployed registry on local storage: publish (a compare-and-set: history copy, then pointer),
read back, and the schedule start dates it records."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest
from tests.helpers import write_tree

from skewless.compile import compile_tree
from skewless.errors import RegistryChanged, RegistryError, SkewlessError
from skewless.manifest import EntitySpec, JoinKey, Manifest
from skewless.registry import (
    Deployment,
    history_uri,
    publish_registry,
    read_deployment,
    read_registry,
    require_registry,
    schedule_starts,
)
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
    assert publish_registry(uri, second, expected=first.registry_hash) == second.registry_hash
    assert require_registry(uri) == second

    # every applied registry stays addressable by its hash; the pointer holds the last one
    for manifest in (first, second):
        assert (
            Path(history_uri(uri, manifest.registry_hash)).read_text(encoding="utf-8") == manifest.to_json()
        )
    pointer = json.loads(Path(uri).read_text(encoding="utf-8"))
    assert pointer == {**json.loads(second.to_json()), "schedule_start": {}}
    # atomic writes leave no temporary files behind (the lock file stays, empty)
    assert sorted(p.name for p in (tmp_path / "reg").rglob("*") if p.is_file()) == sorted(
        ["registry.json", "registry.json.lock", f"{first.registry_hash}.json", f"{second.registry_hash}.json"]
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


# --- compare-and-set publishing and schedule start dates ---------------------------------------

TREE = """\
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
"""


def _view(name: str, version: int = 1, window: str = "7d") -> str:
    return f"""\
---
view:
  name: {name}
  version: {version}
  kind: aggregation
  entity: merchant
  source: transactions
  ttl: 2d
  features:
    - {{name: n, function: count, window: {window}}}
"""


def _compiled(tmp_path: Path, *views: str) -> Manifest:
    folder = tmp_path / f"defs-{len(list(tmp_path.glob('defs-*')))}"
    write_tree(folder, {"defs.yaml": TREE + "".join(views)})
    return compile_tree(folder)


def test_a_stale_expected_hash_is_refused_and_writes_nothing(tmp_path: Path) -> None:
    uri = str(tmp_path / "reg" / "registry.json")
    base = _compiled(tmp_path, _view("a"))
    ours, theirs = _compiled(tmp_path, _view("a"), _view("b")), _compiled(tmp_path, _view("a"), _view("c"))
    publish_registry(uri, base)
    publish_registry(uri, theirs, expected=base.registry_hash)
    before = Path(uri).read_bytes()

    with pytest.raises(RegistryChanged) as info:
        publish_registry(uri, ours, expected=base.registry_hash)
    message = str(info.value)
    assert "\n" not in message
    assert f"planned against registry {base.registry_hash[:12]}" in message
    assert f"now registry {theirs.registry_hash[:12]} is deployed" in message
    assert "re-run `skewless plan` and `skewless apply`" in message
    assert isinstance(info.value, RegistryError)
    assert Path(uri).read_bytes() == before
    assert not Path(history_uri(uri, ours.registry_hash)).exists()

    # "nothing deployed" is an expectation too: a first deploy does not overwrite a registry
    with pytest.raises(RegistryChanged, match="planned against no registry"):
        publish_registry(uri, ours)
    assert Path(uri).read_bytes() == before


def test_publishing_the_deployed_registry_again_writes_nothing(tmp_path: Path) -> None:
    uri = str(tmp_path / "registry.json")
    manifest = _compiled(tmp_path, _view("a"))
    publish_registry(uri, manifest, today=date(2024, 3, 10))
    before = Path(uri).read_bytes()
    # even from a stale plan: the registry it wanted is the one deployed
    assert publish_registry(uri, manifest, expected=None, today=date(2024, 5, 1)) == manifest.registry_hash
    assert Path(uri).read_bytes() == before


def test_schedule_start_is_fixed_at_the_first_apply_of_a_view_version(tmp_path: Path) -> None:
    uri = str(tmp_path / "registry.json")
    first = _compiled(tmp_path, _view("a"), _view("b"))
    publish_registry(uri, first, today=date(2024, 3, 10))
    deployed = read_deployment(uri)
    assert deployed is not None
    assert deployed.schedule_start == {"a": date(2024, 3, 9), "b": date(2024, 3, 9)}
    # the start date is deployment state: the registry hash and the manifest stay the compiled ones
    assert deployed.manifest == first
    assert deployed.manifest.registry_hash == first.registry_hash

    # later: a compatible change to a, b bumps its version, c is new
    second = _compiled(tmp_path, _view("a", window="14d"), _view("b", version=2), _view("c"))
    publish_registry(uri, second, expected=first.registry_hash, today=date(2024, 6, 1))
    deployed = read_deployment(uri)
    assert deployed is not None
    assert deployed.schedule_start == {"a": date(2024, 3, 9), "b": date(2024, 5, 31), "c": date(2024, 5, 31)}
    # the history copy is the manifest alone, addressed by the same hash
    history = Path(history_uri(uri, second.registry_hash)).read_text(encoding="utf-8")
    assert history == second.to_json()


def test_schedule_starts_rule(tmp_path: Path) -> None:
    day, old = date(2024, 5, 31), date(2024, 1, 1)
    a1 = _compiled(tmp_path, _view("a"))
    assert schedule_starts(None, a1, day) == {"a": day}
    deployed = Deployment(_compiled(tmp_path, _view("a"), _view("b"), _view("gone")), {"a": old, "gone": old})
    # kept while the version is kept; a new version, a view without a date or a new view: day
    assert schedule_starts(deployed, _compiled(tmp_path, _view("a"), _view("b"), _view("c")), day) == {
        "a": old,
        "b": day,
        "c": day,
    }
    assert schedule_starts(deployed, _compiled(tmp_path, _view("a", version=2)), day) == {"a": day}


def test_a_registry_without_start_dates_gets_them_at_the_next_apply(tmp_path: Path) -> None:
    uri = str(tmp_path / "registry.json")
    manifest = _compiled(tmp_path, _view("a"))
    write_text(uri, manifest.to_json())  # published before start dates were recorded
    deployed = read_deployment(uri)
    assert deployed is not None
    assert deployed.schedule_start == {}

    publish_registry(uri, manifest, expected=manifest.registry_hash, today=date(2024, 3, 10))
    deployed = read_deployment(uri)
    assert deployed is not None
    assert deployed.schedule_start == {"a": date(2024, 3, 9)}


def test_a_malformed_schedule_start_is_a_registry_error(tmp_path: Path) -> None:
    uri = str(tmp_path / "registry.json")
    publish_registry(uri, _compiled(tmp_path, _view("a")), today=date(2024, 3, 10))
    body = json.loads(Path(uri).read_text(encoding="utf-8"))
    for starts, problem in (
        ({"a": "soon"}, "schedule_start: Input should be a valid date"),
        ({"zzz": "2024-01-01"}, "schedule_start names views the registry lacks: zzz"),
    ):
        Path(uri).write_text(json.dumps({**body, "schedule_start": starts}), encoding="utf-8")
        with pytest.raises(RegistryError, match=problem):
            read_registry(uri)
