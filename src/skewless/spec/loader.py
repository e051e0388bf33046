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
from skewless.spec.models import DOCUMENT_KEYS, KINDS, VIEW_KINDS, SpecObject
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
    if kind == "missing":
        return "required field is missing"
    if kind == "extra_forbidden":
        return "unknown field"
    message = str(error["msg"])
    return message.removeprefix("Value error, ")


def _clean_loc(loc: Iterable[Any]) -> Path:
    return tuple(part for part in loc if part != "[key]")


def validate_document(doc: LocatedDocument) -> tuple[Located | None, list[SpecProblem]]:
    """Validate one document against the model of its single top-level key."""
    data = doc.data
    if not isinstance(data, dict) or len(data) != 1:
        keys = ", ".join(map(str, data)) if isinstance(data, dict) else type(data).__name__
        return None, [
            doc.problem(
                (),
                f"a document has exactly one top-level key, one of {', '.join(DOCUMENT_KEYS)}"
                f" (got {keys or 'nothing'})",
            )
        ]
    ((kind, body),) = data.items()
    if kind not in DOCUMENT_KEYS:
        return None, [
            doc.problem((kind,), f"unknown document kind; expected one of {', '.join(DOCUMENT_KEYS)}")
        ]
    if not isinstance(body, dict):
        return None, [doc.problem((kind,), "expected a mapping of fields")]
    if kind == "view":
        view_kind = body.get("kind")
        if view_kind not in VIEW_KINDS:
            field = "kind" if "kind" in body else ""
            message = (
                f"expected one of {', '.join(VIEW_KINDS)}, got {view_kind!r}"
                if field
                else "required field 'kind' is missing (aggregation or snapshot)"
            )
            return None, [doc.problem((kind, field) if field else (kind,), message)]
        model: type[Any] = VIEW_KINDS[view_kind]
    else:
        model = KINDS[kind]
    try:
        obj = model.model_validate(body)
    except ValidationError as exc:
        return None, [
            doc.problem((kind, *_clean_loc(err["loc"])), _friendly(dict(err))) for err in exc.errors()
        ]
    return Located(kind, obj, doc), []


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
    """Load and validate every document under ``defs``, collecting all problems."""
    located: list[Located] = []
    problems: list[SpecProblem] = []
    unresolved: set[tuple[str, str]] = set()
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
            if obj is not None:
                located.append(obj)
            elif (declared := _declared_name(doc)) is not None:
                unresolved.add(declared)
    return LoadedTree(tuple(located), tuple(problems), frozenset(unresolved))
