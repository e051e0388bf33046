"""Stage 1 of compilation: a folder of YAML files -> validated spec objects with their positions.

Collects every problem of the whole tree before reporting; never stops at the first one.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path as FsPath
from typing import Any

from pydantic import ValidationError

from skewless.errors import SpecError, SpecProblem
from skewless.spec.models import (
    DOCUMENT_KEYS,
    FUNCTION_PATTERN,
    KINDS,
    NAME_PATTERN,
    VIEW_KINDS,
    SpecObject,
)
from skewless.spec.yaml_source import LocatedDocument, Path, load_documents

YAML_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class Located:
    """A validated object plus the document it came from, for cross-object error positions."""

    kind: str
    obj: SpecObject
    document: LocatedDocument

    def problem(self, path: Path, message: str) -> SpecProblem:
        return self.document.problem((self.kind, *path), message)


def display_path(path: FsPath) -> str:
    """Path as the user typed it: relative to the working directory when inside it."""
    try:
        return os.path.relpath(path) if path.is_absolute() else str(path)
    except ValueError:  # pragma: no cover - different drive on Windows
        return str(path)


def discover(defs: FsPath) -> list[FsPath]:
    """YAML files under ``defs`` in a stable order (hidden folders skipped)."""
    if defs.is_file():
        return [defs]
    if not defs.is_dir():
        raise SpecError([SpecProblem(str(defs), 0, "", "no such feature definitions folder")])
    return sorted(
        p
        for p in defs.rglob("*")
        if p.suffix in YAML_SUFFIXES
        and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(defs).parts)
    )


def _friendly(error: dict[str, Any]) -> str:
    kind = error["type"]
    ctx = error.get("ctx") or {}
    if kind == "missing":
        return "required field is missing"
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "too_short" and ctx.get("min_length") == 1:
        return "must not be empty"
    if kind == "string_pattern_mismatch" and ctx.get("pattern") == NAME_PATTERN:
        return (
            f"expected a lower-case name (a letter, then letters, digits or '_'), got {error.get('input')!r}"
        )
    if kind == "string_pattern_mismatch" and ctx.get("pattern") == FUNCTION_PATTERN:
        return f"expected 'module:function' (e.g. 'fraud_udfs:txn_risk'), got {error.get('input')!r}"
    message = str(error["msg"]).removeprefix("Value error, ")
    if kind == "literal_error":
        message += f", got {error.get('input')!r}"
    return message


def _clean_loc(loc: Iterable[Any]) -> Path:
    return tuple(part for part in loc if part != "[key]")


def _is_echo(error: dict[str, Any]) -> bool:
    """Pydantic's "too short" for a list whose items failed: only an echo of the item errors."""
    if error["type"] != "too_short":
        return False
    given = error.get("input")
    minimum = (error.get("ctx") or {}).get("min_length")
    return isinstance(given, (list, tuple, dict)) and isinstance(minimum, int) and len(given) >= minimum


_SHAPES: dict[type, str] = {
    list: "a list",
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "a boolean",
    type(None): "null",
}


def validate_document(doc: LocatedDocument) -> tuple[Located | None, list[SpecProblem]]:
    """Validate one document against the model of its single top-level key."""
    data = doc.data
    expected = f"one of {', '.join(DOCUMENT_KEYS)}"
    if not isinstance(data, dict):
        shape = _SHAPES.get(type(data), f"a {type(data).__name__}")
        return None, [
            doc.problem((), f"a document must be a mapping with one top-level key, {expected} (got {shape})")
        ]
    if len(data) != 1:
        if not data:
            return None, [doc.problem((), f"a document needs one top-level key, {expected}")]
        _, second, *_ = data
        return None, [
            doc.problem(
                (second,),
                f"a document has exactly one top-level key, {expected} (got {', '.join(map(str, data))});"
                " separate documents with '---'",
            )
        ]
    ((kind, body),) = data.items()
    if kind not in DOCUMENT_KEYS:
        return None, [doc.problem((kind,), f"unknown document kind; expected {expected}")]
    if not isinstance(body, dict):
        return None, [doc.problem((kind,), "expected a mapping of fields")]
    if kind == "view":
        if "kind" not in body:
            return None, [doc.problem((kind, "kind"), "required field is missing (aggregation or snapshot)")]
        view_kind = body["kind"]
        if not isinstance(view_kind, str) or view_kind not in VIEW_KINDS:
            return None, [
                doc.problem((kind, "kind"), f"expected one of {', '.join(VIEW_KINDS)}, got {view_kind!r}")
            ]
        model: type[Any] = VIEW_KINDS[view_kind]
    else:
        model = KINDS[kind]
    try:
        obj = model.model_validate(body)
    except ValidationError as exc:
        return None, [
            doc.problem((kind, *_clean_loc(err["loc"])), _friendly(dict(err)))
            for err in exc.errors()
            if not _is_echo(dict(err))
        ]
    return Located(kind, obj, doc), []


def duplicate_name_problem(kind: str, name: str, doc: LocatedDocument, first: LocatedDocument) -> SpecProblem:
    """The problem reported on the second definition of a name, pointing at the first one."""
    return doc.problem(
        (kind, "name"),
        f"duplicate {kind} name {name!r} (first defined at {first.file}:{first.line_of((kind, 'name'))})",
    )


@dataclass(frozen=True)
class LoadedTree:
    """Valid objects, every problem found so far, and the names of objects that failed to load.

    ``unresolved`` lets the compiler skip "unknown reference" errors that would only echo a
    document already reported as broken.
    """

    objects: tuple[Located, ...]
    problems: tuple[SpecProblem, ...]
    unresolved: frozenset[tuple[str, str]]


def _declared_name(doc: LocatedDocument) -> tuple[str, str] | None:
    data = doc.data
    if isinstance(data, dict) and len(data) == 1:
        ((kind, body),) = data.items()
        if isinstance(body, dict) and isinstance(body.get("name"), str):
            return str(kind), body["name"]
    return None


def load_tree(defs: FsPath) -> LoadedTree:
    """Load and validate every document under ``defs``, collecting all problems.

    Names are checked for uniqueness here, over valid and broken documents alike, so that a
    duplicate is reported even while one of its two definitions has other errors. The second
    definition (in discovery order) is the one reported and dropped.
    """
    located: list[Located] = []
    problems: list[SpecProblem] = []
    unresolved: set[tuple[str, str]] = set()
    declared_at: dict[tuple[str, str], LocatedDocument] = {}
    for file in discover(defs):
        name = display_path(file)
        try:
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(SpecProblem(name, 0, "", f"cannot read file: {exc}"))
            continue
        documents, syntax_problems = load_documents(text, name)
        problems.extend(syntax_problems)
        for doc in documents:
            obj, doc_problems = validate_document(doc)
            problems.extend(doc_problems)
            declared = _declared_name(doc)
            if declared is not None:
                first = declared_at.setdefault(declared, doc)
                if first is not doc:
                    problems.append(duplicate_name_problem(*declared, doc, first))
                    continue
            if obj is not None:
                located.append(obj)
            elif declared is not None:
                unresolved.add(declared)
    return LoadedTree(tuple(located), tuple(problems), frozenset(unresolved))
