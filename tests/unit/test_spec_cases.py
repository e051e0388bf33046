"""The corpus of broken feature definitions under ``spec_cases/``: each error at its exact place.

Every ``spec_cases/<case>.yaml`` is compiled together with the valid shared definitions in
``spec_cases/_base/`` (copied to ``feature_defs/base/``; the case goes to ``feature_defs/case/``).
A case states the errors it must produce in its header comments::

    # expect E1: view.features[0].window: aggregation windows must be whole days

and marks the line each error must point at with ``# <E1>`` at the end of that line. The field
is compared exactly (``-`` for none), the line must be the marked one, the file must be the
case's file, the message must contain the fragment, and there must be no other error.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from skewless.compile import compile_tree
from skewless.errors import SpecError, SpecProblem

CASES_DIR = Path(__file__).parent / "spec_cases"
BASE_DIR = CASES_DIR / "_base"
CASES = sorted(CASES_DIR.glob("*.yaml"))

_HEADER = re.compile(r"^# expect (?P<tag>\w+): (?P<field>\S+): (?P<fragment>.+)$")
_MARKER = re.compile(r"# <(?P<tag>\w+)>\s*$")


@dataclass(frozen=True)
class Expected:
    tag: str
    file: str
    line: int
    field: str
    fragment: str

    def matches(self, problem: SpecProblem) -> bool:
        return (
            problem.file == self.file
            and problem.line == self.line
            and problem.field == self.field
            and self.fragment in problem.message
        )

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.field}: ...{self.fragment}..."


def read_expectations(case: Path, shown_as: str) -> list[Expected]:
    """The case's ``# expect`` headers joined with the lines carrying their ``# <TAG>`` markers."""
    headers: dict[str, tuple[str, str]] = {}
    markers: dict[str, int] = {}
    for number, text in enumerate(case.read_text(encoding="utf-8").splitlines(), start=1):
        if header := _HEADER.match(text):
            assert header["tag"] not in headers, f"{case.name}: tag {header['tag']} stated twice"
            field = "" if header["field"] == "-" else header["field"]
            headers[header["tag"]] = (field, header["fragment"])
        elif marker := _MARKER.search(text):
            assert marker["tag"] not in markers, f"{case.name}: tag {marker['tag']} marked twice"
            markers[marker["tag"]] = number
    assert headers, f"{case.name}: no '# expect' header"
    assert headers.keys() == markers.keys(), f"{case.name}: headers {headers} vs markers {markers}"
    return [
        Expected(tag, shown_as, markers[tag], field, fragment)
        for tag, (field, fragment) in sorted(headers.items())
    ]


def build_tree(root: Path, case: Path | None) -> Path:
    """``root/feature_defs`` with the shared definitions and, when given, one case file."""
    defs = root / "feature_defs"
    shutil.copytree(BASE_DIR, defs / "base")
    if case is not None:
        (defs / "case").mkdir()
        shutil.copy(case, defs / "case" / case.name)
    return defs


def test_corpus_is_large_enough() -> None:
    assert len(CASES) >= 35


def test_base_definitions_compile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a case the shared tree is valid, so each case's errors come from the case alone."""
    monkeypatch.chdir(tmp_path)
    build_tree(tmp_path, None)
    manifest = compile_tree(Path("feature_defs"))
    assert sorted(manifest.entities) == ["customer", "merchant"]
    assert sorted(manifest.sources) == ["clicks", "customer_stats_raw", "transactions"]
    assert sorted(manifest.views) == ["customer_stats", "merchant_txn"]
    assert sorted(manifest.services) == ["fraud_model"]


@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
def test_broken_definition_reports_exact_place(
    case: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shown_as = f"feature_defs/case/{case.name}"
    expected = read_expectations(case, shown_as)
    monkeypatch.chdir(tmp_path)
    build_tree(tmp_path, case)

    with pytest.raises(SpecError) as caught:
        compile_tree(Path("feature_defs"))

    problems = list(caught.value.problems)
    report = "\n".join(map(str, problems))
    for want in expected:
        found = next((p for p in problems if want.matches(p)), None)
        assert found is not None, f"expected {want}\ngot:\n{report}"
        problems.remove(found)
        # The rendered line a user reads starts with exactly file:line: field.
        prefix = f"{want.file}:{want.line}: {want.field}: " if want.field else f"{want.file}:{want.line}: "
        assert str(found).startswith(prefix)
        assert prefix in str(caught.value)
    assert not problems, f"unexpected extra errors:\n{report}"
