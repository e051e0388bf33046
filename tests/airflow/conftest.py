"""Airflow tests: a private AIRFLOW_HOME with a SQLite DB, configured before airflow is imported.

Airflow reads its configuration when it is first imported, so the environment is set when this
conftest is loaded (collection time), and test modules import airflow inside their tests only.
``airflow db migrate`` runs once per session (:func:`airflow_db`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DAGS = REPO / "dags"
HOME = Path(tempfile.gettempdir()) / f"skewless-airflow-{os.getpid()}"

os.environ["AIRFLOW_HOME"] = str(HOME)
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{HOME / 'airflow.db'}"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(DAGS)
os.environ["AIRFLOW__CORE__PARALLELISM"] = "2"
os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")


@pytest.fixture(scope="session", autouse=True)
def _airflow_home() -> Iterator[Path]:
    """Removes the private AIRFLOW_HOME (Airflow writes airflow.cfg there on import) at the end."""
    HOME.mkdir(parents=True, exist_ok=True)
    yield HOME
    shutil.rmtree(HOME, ignore_errors=True)


@pytest.fixture(scope="session")
def airflow_db(_airflow_home: Path) -> Path:
    """A migrated metadata DB in the private AIRFLOW_HOME (about 6 s)."""
    airflow = Path(sys.executable).parent / "airflow"
    done = subprocess.run(
        [str(airflow), "db", "migrate"], env=os.environ.copy(), capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return HOME
