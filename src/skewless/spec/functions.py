"""Find the Python module of an on-demand view's ``module:function`` and read its source.

Nothing is imported or executed here: the module is found as a file (beside the YAML file that
names it, then under feature_defs/, then among installed packages) and parsed with :mod:`ast`
to check that it defines the function. The source's hash is part of the features' meaning
(docs/feature-definitions.md, "On-demand views").
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class FunctionSource:
    """Where ``module:function`` was found, its source and hash; ``problem`` when it was not."""

    module_file: str | None = None
    """Relative to feature_defs/ (forward slashes); None for an installed package."""
    source: str | None = None
    """The module's code when it is under feature_defs/ (carried in the registry)."""
    source_hash: str | None = None
    problem: str | None = None


def source_hash(source: str) -> str:
    return hashlib.sha256(source.encode("utf-8")).hexdigest()


def _candidates(folder: Path, module: str) -> list[Path]:
    base = folder.joinpath(*module.split("."))
    return [base.with_suffix(".py"), base / "__init__.py"]


def defines(source: str, name: str) -> bool:
    """True when the module's top level defines (or imports, or assigns) ``name``."""
    tree = ast.parse(source)
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name == name:
            return True
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == name for t in targets):
                return True
        if isinstance(node, (ast.Import, ast.ImportFrom)) and any(
            (alias.asname or alias.name.split(".")[0]) == name for alias in node.names
        ):
            return True
    return False


def find_function(function: str, yaml_file: Path, defs: Path) -> FunctionSource:
    """Locate ``module:function`` for the YAML file ``yaml_file`` of the tree rooted at ``defs``."""
    module, _, name = function.partition(":")
    root = defs if defs.is_dir() else defs.parent
    for folder in dict.fromkeys([yaml_file.parent, root]):
        for candidate in _candidates(folder, module):
            if candidate.is_file():
                return _read(candidate, name, root, module)
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError) as exc:  # a parent package failed to import
        return FunctionSource(problem=f"cannot find module {module!r}: {exc}")
    if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
        return FunctionSource(
            problem=f"module {module!r} not found beside {yaml_file.name}, under {root}, nor installed"
        )
    found = _read(Path(spec.origin), name, None, module)
    return FunctionSource(source_hash=found.source_hash, problem=found.problem)


def _read(path: Path, name: str, root: Path | None, module: str) -> FunctionSource:
    try:
        source = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return FunctionSource(problem=f"cannot read {path}: {exc}")
    try:
        found = defines(source, name)
    except SyntaxError as exc:
        return FunctionSource(problem=f"{path}:{exc.lineno}: syntax error: {exc.msg}")
    if not found:
        return FunctionSource(problem=f"module {module!r} ({path}) defines no {name!r}")
    relative = None if root is None else os.path.relpath(path, root).replace(os.sep, "/")
    return FunctionSource(
        module_file=relative,
        source=source if root is not None else None,
        source_hash=source_hash(source),
    )
