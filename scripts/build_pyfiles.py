"""Build dist/skewless.zip: the skewless package for spark-submit ``--py-files`` (docs/cluster.md).

    python scripts/build_pyfiles.py [OUT]

Only the package's own files (no ``__pycache__``); its dependencies come from the workers' Python.
"""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "skewless"


def build(out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(PACKAGE.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                archive.write(path, Path("skewless") / path.relative_to(PACKAGE))
    return out


if __name__ == "__main__":
    target = build(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("dist/skewless.zip"))
    print(target)
