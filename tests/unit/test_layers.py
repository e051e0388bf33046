"""The layers are enforced by ruff's banned-api rules (pyproject.toml and the nested ruff.toml files)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RUFF = Path(sys.executable).parent / "ruff"


def _ruff_on(path: str, source: str) -> subprocess.CompletedProcess[str]:
    """Lint ``source`` as if it were the file at ``path`` (its config is the one nearest that path)."""
    return subprocess.run(
        [str(RUFF), "check", "--no-cache", "--select", "TID251", "--stdin-filename", path, "-"],
        input=source,
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
    )


@pytest.mark.parametrize("layer", ["spec", "compile", "plan"])
@pytest.mark.parametrize(
    ("module", "banned"),
    [
        ("pyspark.sql", "pyspark"),
        ("redis", "redis"),
        ("airflow.sdk", "airflow"),
        ("deltalake", "deltalake"),
        ("skewless.offline.inputs", "skewless.offline"),
    ],
)
def test_pure_layers_import_no_engine(layer: str, module: str, banned: str) -> None:
    done = _ruff_on(f"src/skewless/{layer}/probe.py", f"def f() -> None:\n    import {module}\n")
    assert done.returncode == 1, done.stdout
    assert f"`{banned}` is banned" in done.stdout


def test_the_library_never_imports_tests_but_tests_may() -> None:
    banned = _ruff_on("src/skewless/offline/probe.py", "from tests.helpers import deploy\n")
    assert banned.returncode == 1
    assert "the library never imports test code" in banned.stdout
    assert _ruff_on("tests/unit/probe.py", "from tests.helpers import deploy\n").returncode == 0
    # Outside the pure layers Spark is fine.
    assert _ruff_on("src/skewless/offline/probe.py", "def f() -> None:\n    import pyspark\n").returncode == 0
