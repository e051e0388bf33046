"""Compiler behaviour across files: errors collected together, no echoes, meaning hashes."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from skewless.compile import compile_objects, compile_tree
from skewless.errors import SpecError, SpecProblem
from skewless.manifest import Manifest
from skewless.spec.loader import load_tree

ENTITIES = """\
entity:
  name: merchant
  join_keys: {merchant_id: string}
---
entity:
  name: store
  join_keys: {merchant_id: string}
"""

SOURCES = """\
source:
  name: transactions
  path: raw/transactions
  format: parquet
  timestamp: ts
  columns: {merchant_id: string, amount: float64, ts: timestamp}
---
source:
  name: transactions_eu
  path: raw/transactions_eu
  format: parquet
  timestamp: ts
  columns: {merchant_id: string, amount: float64, ts: timestamp}
"""

VIEW = """\
view:
  name: merchant_txn
  version: 1
  kind: aggregation
  entity: {entity}
  source: {source}
  ttl: 2d
  features:
    - {{name: txn_count_7d, function: count, window: 7d}}
    - {{name: amount_sum_7d, function: sum, column: amount, window: {window}}}
"""


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
    return root


def compile_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, files: dict[str, str]) -> Manifest:
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "defs", files)
    return compile_tree(Path("defs"))


def problems_of(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, files: dict[str, str]) -> list[SpecProblem]:
    with pytest.raises(SpecError) as caught:
        compile_files(tmp_path, monkeypatch, files)
    return list(caught.value.problems)


def test_three_errors_in_three_files_are_reported_together(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a_view.yaml's error is found by the compiler, after the loader has reported the other two,
    # so the report's order is the sorted order, not the order of discovery.
    problems = problems_of(
        tmp_path,
        monkeypatch,
        {
            "entities.yaml": ENTITIES,
            "sources.yaml": SOURCES,
            "a_view.yaml": VIEW.format(entity="shop", source="transactions", window="7d"),
            "b_broken.yaml": "entity:\n  name: [unclosed\n  join_keys: {k: string}\n",
            "c_source.yaml": (
                "source:\n  name: refunds\n  path: raw/refunds\n  format: parquet\n"
                "  timestamp: ts\n  colour: red\n"
            ),
        },
    )
    where = [(p.file, p.line, p.field) for p in problems]
    assert where == [
        ("defs/a_view.yaml", 5, "view.entity"),
        ("defs/b_broken.yaml", 3, ""),
        ("defs/c_source.yaml", 6, "source.colour"),
    ]

    with pytest.raises(SpecError) as caught:
        compile_tree(Path("defs"))
    lines = str(caught.value).splitlines()
    assert lines[0] == "3 errors in feature definitions"
    assert lines[1].startswith("defs/a_view.yaml:5: view.entity: unknown entity 'shop'")
    assert lines[2].startswith("defs/b_broken.yaml:3: invalid YAML:")
    assert lines[3] == "defs/c_source.yaml:6: source.colour: unknown field"


def test_spec_error_sorts_lines_numerically() -> None:
    error = SpecError(
        [
            SpecProblem("b.yaml", 2, "x", "m"),
            SpecProblem("a.yaml", 10, "y", "m"),
            SpecProblem("a.yaml", 9, "z", "m"),
            SpecProblem("a.yaml", 9, "z", "m"),  # the same problem twice is reported once
        ]
    )
    assert str(error).splitlines() == [
        "3 errors in feature definitions",
        "a.yaml:9: z: m",
        "a.yaml:10: y: m",
        "b.yaml:2: x: m",
    ]
    assert str(SpecError([SpecProblem("a.yaml", 1, "", "m")])).splitlines() == [
        "1 error in feature definitions",
        "a.yaml:1: m",
    ]


BROKEN_ENTITY = """\
entity:
  name: merchant
  join_keys: {merchant_id: float64}
"""


def test_broken_entity_does_not_echo_as_unknown_entity(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    problems = problems_of(
        tmp_path,
        monkeypatch,
        {
            "entities.yaml": BROKEN_ENTITY,
            "sources.yaml": SOURCES,
            "views.yaml": VIEW.format(entity="merchant", source="transactions", window="7d"),
            "services.yaml": "service:\n  name: model\n  features: [merchant_txn:txn_count_7d]\n",
        },
    )
    assert [(p.file, p.line, p.field) for p in problems] == [
        ("defs/entities.yaml", 3, "entity.join_keys.merchant_id")
    ]


def test_loader_records_broken_names_as_unresolved(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "defs", {"entities.yaml": BROKEN_ENTITY, "sources.yaml": SOURCES})
    tree = load_tree(Path("defs"))
    assert ("entity", "merchant") in tree.unresolved
    assert sorted(item.obj.name for item in tree.objects) == ["transactions", "transactions_eu"]
    # Without the unresolved names, the same objects do produce the "unknown" error: the
    # mechanism, not luck, is what keeps the report free of echoes.
    write(
        tmp_path / "defs", {"views.yaml": VIEW.format(entity="merchant", source="transactions", window="7d")}
    )
    tree = load_tree(Path("defs"))
    _, with_unresolved = compile_objects(tree.objects, unresolved=tree.unresolved)
    _, without = compile_objects(tree.objects)
    assert with_unresolved == []
    assert [(p.field, p.message) for p in without] == [("view.entity", "unknown entity 'merchant'")]


def test_broken_source_does_not_echo_in_view_or_service(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    problems = problems_of(
        tmp_path,
        monkeypatch,
        {
            "entities.yaml": ENTITIES,
            "sources.yaml": "source:\n  name: transactions\n  path: raw/t\n  format: csv\n  timestamp: ts\n",
            "views.yaml": VIEW.format(entity="merchant", source="transactions", window="7d"),
            "services.yaml": "service:\n  name: model\n  features: [merchant_txn:amount_sum_7d]\n",
        },
    )
    assert [(p.file, p.field) for p in problems] == [("defs/sources.yaml", "source.format")]


def test_duplicate_is_reported_when_the_first_definition_is_broken_in_another_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    problems = problems_of(
        tmp_path,
        monkeypatch,
        {
            "a.yaml": BROKEN_ENTITY,
            "b.yaml": "entity:\n  name: merchant\n  join_keys: {merchant_id: string}\n",
        },
    )
    assert [str(p) for p in problems] == [
        "defs/a.yaml:3: entity.join_keys.merchant_id: Input should be 'string' or 'int64', got 'float64'",
        "defs/b.yaml:2: entity.name: duplicate entity name 'merchant' (first defined at defs/a.yaml:2)",
    ]


def test_compile_objects_reports_duplicates_passed_directly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``compile_objects`` does its own duplicate check for callers that bypass ``load_tree``."""
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "defs", {"entities.yaml": ENTITIES})
    objects = load_tree(Path("defs")).objects
    manifest, problems = compile_objects([*objects, objects[0]])
    assert manifest is None
    assert [str(p) for p in problems] == [
        "defs/entities.yaml:2: entity.name: duplicate entity name 'merchant'"
        " (first defined at defs/entities.yaml:2)"
    ]


def _meaning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, **view: str) -> dict[str, str]:
    root = tmp_path / name
    root.mkdir()
    monkeypatch.chdir(root)
    write(
        root / "defs", {"entities.yaml": ENTITIES, "sources.yaml": SOURCES, "views.yaml": VIEW.format(**view)}
    )
    manifest = compile_tree(Path("defs"))
    return {f.name: f.meaning_hash for f in manifest.view("merchant_txn").features}


def test_meaning_hash_follows_what_decides_the_values(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = _meaning(tmp_path, monkeypatch, "base", entity="merchant", source="transactions", window="7d")
    same = _meaning(tmp_path, monkeypatch, "same", entity="merchant", source="transactions", window="7d")
    window = _meaning(tmp_path, monkeypatch, "window", entity="merchant", source="transactions", window="30d")
    source = _meaning(
        tmp_path, monkeypatch, "source", entity="merchant", source="transactions_eu", window="7d"
    )
    entity = _meaning(tmp_path, monkeypatch, "entity", entity="store", source="transactions", window="7d")

    assert same == base
    assert window["txn_count_7d"] == base["txn_count_7d"]
    assert window["amount_sum_7d"] != base["amount_sum_7d"]
    # Another source or entity with the very same columns and keys still means other values
    # (docs/feature-definitions.md: changing the entity or source needs a version bump).
    assert all(source[name] != base[name] for name in base)
    assert all(entity[name] != base[name] for name in base)


def test_compiled_view_is_resolved(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    manifest = compile_files(
        tmp_path,
        monkeypatch,
        {
            "entities.yaml": ENTITIES,
            "sources.yaml": SOURCES,
            "views.yaml": VIEW.format(entity="merchant", source="transactions", window="30d"),
        },
    )
    view = manifest.view("merchant_txn")
    assert view.key_names == ("merchant_id",)
    assert view.source.name == "transactions"
    assert view.ttl_seconds == 2 * 86400
    assert view.availability_lag_seconds == 0
    assert [(f.name, f.function, f.column, f.window_days, f.dtype) for f in view.features] == [
        ("txn_count_7d", "count", None, 7, "int64"),
        ("amount_sum_7d", "sum", "amount", 30, "float64"),
    ]
    assert view.max_window_days == 30
    assert view.table == "views/merchant_txn/v1"
    assert view.tiles_table == "tiles/merchant_txn/v1"


def test_yaml_merge_keys_may_be_overridden(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``<<: *anchor`` then an explicit key: YAML merge semantics, not a duplicate key."""
    view = VIEW.format(entity="merchant", source="transactions", window="7d").replace(
        "    - {name: txn_count_7d, function: count, window: 7d}\n",
        "    - &count {name: txn_count_7d, function: count, window: 7d}\n"
        "    - {<<: *count, name: txn_count_30d, window: 30d}\n",
    )
    manifest = compile_files(
        tmp_path, monkeypatch, {"entities.yaml": ENTITIES, "sources.yaml": SOURCES, "views.yaml": view}
    )
    features = {f.name: f for f in manifest.view("merchant_txn").features}
    assert features["txn_count_30d"].window_days == 30
    assert features["txn_count_30d"].function == "count"
    assert features["txn_count_7d"].window_days == 7


def test_missing_folder_is_a_spec_error(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="no such feature definitions folder"):
        compile_tree(tmp_path / "nowhere")
