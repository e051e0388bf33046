"""YAML -> plain Python data, keeping the line of every key so errors can point at it.

PyYAML's constructors silently keep the last of two duplicate keys and forget positions, so we
compose the node graph ourselves: mappings and sequences are walked here, scalars go through
PyYAML's safe constructor (same typing rules as ``yaml.safe_load``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml

from skewless.errors import SpecProblem

Path = tuple[str | int, ...]


@dataclass(frozen=True)
class LocatedDocument:
    """One YAML document with the 1-based line of every key path inside it."""

    file: str
    data: Any
    lines: dict[Path, int] = field(repr=False)
    start_line: int

    def line_of(self, path: Path) -> int:
        """Line of ``path`` or of its nearest enclosing node that has one."""
        for end in range(len(path), -1, -1):
            line = self.lines.get(path[:end])
            if line is not None:
                return line
        return self.start_line

    def problem(self, path: Path, message: str) -> SpecProblem:
        return SpecProblem(self.file, self.line_of(path), format_path(path), message)


def format_path(path: Path) -> str:
    """``('view', 'features', 2, 'window')`` -> ``view.features[2].window``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


_MERGE_TAG = "tag:yaml.org,2002:merge"


class _Builder:
    def __init__(self, file: str) -> None:
        self.file = file
        self.lines: dict[Path, int] = {}
        self.problems: list[SpecProblem] = []
        self._scalars = yaml.constructor.SafeConstructor()
        self._explicit: dict[int, frozenset[int]] = {}
        """Per mapping node: ids of the key nodes written in it (not brought in by a merge key)."""

    def build(self, node: yaml.Node, path: Path) -> Any:
        self.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        return self._scalars.construct_object(node, deep=True)

    def _forget(self, path: Path) -> None:
        """Drop the lines recorded under ``path`` (a merged value that an explicit key replaces)."""
        for known in [p for p in self.lines if p[: len(path)] == path]:
            del self.lines[known]

    def _mapping(self, node: yaml.MappingNode, path: Path) -> dict[Any, Any]:
        # Remember which keys the user wrote here before ``flatten_mapping`` prepends the pairs of
        # merge keys (<<): an explicit key may override a merged one (YAML merge semantics), but
        # two explicit keys with the same name are an error. Cached per node because an alias
        # may make us visit the (already flattened) node again.
        explicit = self._explicit.get(id(node))
        if explicit is None:
            explicit = frozenset(id(k) for k, _ in node.value if k.tag != _MERGE_TAG)
            self._explicit[id(node)] = explicit
        self._scalars.flatten_mapping(node)  # resolves YAML merge keys (<<)
        result: dict[Any, Any] = {}
        written: set[Any] = set()
        for key_node, value_node in node.value:
            key = self.build(key_node, (*path, "<key>"))
            line = key_node.start_mark.line + 1
            if not isinstance(key, (str, int, bool)) or isinstance(key, bool):
                key = str(key)
            is_explicit = id(key_node) in explicit
            if key in written:  # written twice (merged pairs all come before the written ones)
                first = self.lines[(*path, key)]
                self.problems.append(
                    SpecProblem(
                        self.file,
                        line,
                        format_path((*path, key)),
                        f"duplicate key (first defined on line {first})",
                    )
                )
                continue
            if key in result:
                self._forget((*path, key))  # a merged value replaced by a later pair
            if is_explicit:
                written.add(key)
            self.lines[(*path, key)] = line
            result[key] = self.build(value_node, (*path, key))
        self.lines.pop((*path, "<key>"), None)
        return result


def _is_empty(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null" and node.value == ""


def load_documents(text: str, file: str) -> tuple[list[LocatedDocument], list[SpecProblem]]:
    """Parse every ``---``-separated document of ``text``; syntax errors become problems."""
    documents: list[LocatedDocument] = []
    problems: list[SpecProblem] = []
    try:
        nodes: Iterator[yaml.Node] = yaml.compose_all(text, Loader=yaml.SafeLoader)
        for node in nodes:
            if node is None or _is_empty(node):
                continue  # e.g. a trailing '---', or a document commented out between two '---'
            builder = _Builder(file)
            data = builder.build(node, ())
            problems.extend(builder.problems)
            documents.append(LocatedDocument(file, data, builder.lines, start_line=node.start_mark.line + 1))
    except yaml.MarkedYAMLError as exc:
        problems.append(_syntax_problem(exc, text, file))
    except yaml.YAMLError as exc:  # pragma: no cover - PyYAML raises marked errors in practice
        problems.append(SpecProblem(file, 1, "", f"invalid YAML: {exc}"))
    return documents, problems


def _syntax_problem(exc: yaml.MarkedYAMLError, text: str, file: str) -> SpecProblem:
    """A parser error at the line where PyYAML noticed it, naming where the construct began.

    Errors found at the end of the stream (an unclosed quote or bracket) are moved to the last
    line of the file, and the message says on which line the unclosed construct starts.
    """
    mark = exc.problem_mark or exc.context_mark
    last_line = max(1, len(text.splitlines()))
    line = min(mark.line + 1, last_line) if mark is not None else 1
    message = f"invalid YAML: {exc.problem or exc.context}"
    if exc.problem and exc.context:
        context = exc.context.removeprefix("while ")
        if exc.context_mark is not None and exc.context_mark.line + 1 != line:
            context += f" that starts on line {exc.context_mark.line + 1}"
        message += f" (while {context})"
    return SpecProblem(file, line, "", message)
