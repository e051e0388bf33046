"""The example tree ``feature_defs/`` compiles to the committed manifest, byte for byte.

To accept an intended change of the manifest, run once with ``SKEWLESS_UPDATE_GOLDEN=1``: the
test rewrites ``golden/registry.json`` and still fails, so an update is never silently green.
Review the diff of the golden file and commit it.
"""

from __future__ import annotations

import os
import random
import re
from pathlib import Path

import pytest
import yaml

from skewless.compile import compile_tree
from skewless.manifest import Manifest

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "feature_defs"
GOLDEN = Path(__file__).parent / "golden" / "registry.json"
UPDATE_ENV = "SKEWLESS_UPDATE_GOLDEN"

_SEPARATOR = re.compile(r"^---[ \t]*$", re.MULTILINE)


def test_examples_compile_to_the_golden_manifest() -> None:
    actual = compile_tree(EXAMPLES).to_json()
    if os.environ.get(UPDATE_ENV) == "1":
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN.write_text(actual, encoding="utf-8", newline="\n")
        pytest.fail(f"rewrote {GOLDEN}; review and commit it, then run again without {UPDATE_ENV}")
    assert GOLDEN.is_file(), f"missing {GOLDEN}: run with {UPDATE_ENV}=1 to create it"
    expected = GOLDEN.read_bytes().decode("utf-8")
    assert actual == expected, f"manifest differs from {GOLDEN}; if intended, rerun with {UPDATE_ENV}=1"


def test_golden_manifest_reads_back_with_its_hash() -> None:
    """The committed file is a valid registry: its stated hash matches its content."""
    text = GOLDEN.read_text(encoding="utf-8")
    manifest = Manifest.from_json(text, str(GOLDEN))
    assert manifest.to_json() == text


def documents_of(path: Path) -> list[str]:
    return [doc for doc in _SEPARATOR.split(path.read_text(encoding="utf-8")) if doc.strip()]


def example_files() -> list[Path]:
    files = sorted(p for p in EXAMPLES.rglob("*") if p.suffix in (".yaml", ".yml"))
    assert files
    return files


def test_compiling_twice_is_identical() -> None:
    assert compile_tree(EXAMPLES).to_json() == compile_tree(EXAMPLES).to_json()


def copy_on_demand_modules(root: Path) -> None:
    """On-demand functions' modules, at the root of a copied tree (feature_defs/ is on the import path)."""
    for module in EXAMPLES.rglob("*.py"):
        (root / module.name).write_text(module.read_text(encoding="utf-8"), encoding="utf-8")


def test_renamed_files_and_reordered_documents_compile_identically(tmp_path: Path) -> None:
    files = example_files()
    assert any(len(documents_of(f)) > 1 for f in files), "no file with several documents to reorder"
    copy = tmp_path / "defs"
    for index, path in enumerate(files):
        # Reverse the discovery order with the new names, nest differently, use .yml.
        folder = copy / f"group_{len(files) - index}" / "nested"
        folder.mkdir(parents=True)
        docs = documents_of(path)[::-1]
        target = folder / f"{path.stem[::-1]}.yml"
        target.write_text("\n---\n".join(doc.strip("\n") for doc in docs) + "\n", encoding="utf-8")
    copy_on_demand_modules(copy)
    assert compile_tree(copy).to_json() == compile_tree(EXAMPLES).to_json()


def test_all_documents_reserialised_in_one_shuffled_file_compile_identically(tmp_path: Path) -> None:
    docs = [doc for path in example_files() for doc in yaml.safe_load_all(path.read_text(encoding="utf-8"))]
    docs = [doc for doc in docs if doc is not None]
    shuffled = list(docs)
    random.Random(7).shuffle(shuffled)
    assert shuffled != docs
    single = tmp_path / "all.yaml"
    # Sorted keys and block style: field order and flow/block style must not matter either.
    single.write_text(
        yaml.safe_dump_all(shuffled, sort_keys=True, default_flow_style=False), encoding="utf-8"
    )
    copy_on_demand_modules(tmp_path)
    assert compile_tree(single).to_json() == compile_tree(EXAMPLES).to_json()
