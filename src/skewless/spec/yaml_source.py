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


class _Builder:
    def __init__(self, file: str) -> None:
        self.file = file
        self.lines: dict[Path, int] = {}
        self.problems: list[SpecProblem] = []
        self._scalars = yaml.constructor.SafeConstructor()

    def build(self, node: yaml.Node, path: Path) -> Any:
        self.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        return self._scalars.construct_object(node, deep=True)

    def _mapping(self, node: yaml.MappingNode, path: Path) -> dict[Any, Any]:
        self._scalars.flatten_mapping(node)  # resolves YAML merge keys (<<)
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = self.build(key_node, (*path, "<key>"))
            line = key_node.start_mark.line + 1
            if not isinstance(key, (str, int, bool)) or isinstance(key, bool):
                key = str(key)
            if key in result:
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
            self.lines[(*path, key)] = line
            result[key] = self.build(value_node, (*path, key))
        self.lines.pop((*path, "<key>"), None)
        return result


def load_documents(text: str, file: str) -> tuple[list[LocatedDocument], list[SpecProblem]]:
    """Parse every ``---``-separated document of ``text``; syntax errors become problems."""
    documents: list[LocatedDocument] = []
    problems: list[SpecProblem] = []
    try:
        nodes: Iterator[yaml.Node] = yaml.compose_all(text, Loader=yaml.SafeLoader)
        for node in nodes:
            if node is None:
                continue
            builder = _Builder(file)
            data = builder.build(node, ())
            problems.extend(builder.problems)
            documents.append(LocatedDocument(file, data, builder.lines, start_line=node.start_mark.line + 1))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        problems.append(SpecProblem(file, line, "", f"invalid YAML: {exc.problem or exc.context}"))
    except yaml.YAMLError as exc:  # pragma: no cover - PyYAML raises marked errors in practice
        problems.append(SpecProblem(file, 1, "", f"invalid YAML: {exc}"))
    return documents, problems
