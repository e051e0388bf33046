"""The stack's private PostgreSQL cluster outlives no run: a watchdog stops it if its launcher dies."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from skewless.devstack.airflow_stack import LocalPostgres
from tests.helpers import process_running

pytestmark = [pytest.mark.airflow_stack]

LAUNCHER = """
import sys, time
from pathlib import Path
from skewless.devstack.airflow_stack import LocalPostgres
cluster = LocalPostgres(Path(sys.argv[1]) / "postgres", remove_on_crash=(Path(sys.argv[1]),)).start()
print(cluster.postmaster_pid(), cluster.port, cluster.watchdog_pid, flush=True)
time.sleep(600)
"""


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.fixture
def root() -> Iterator[Path]:
    """A folder the cluster's owner can reach (pytest's tmp_path is private to this user)."""
    folder = Path(tempfile.mkdtemp(prefix="skewless-pg-test-"))
    folder.chmod(0o711)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_a_cluster_whose_launcher_is_killed_is_stopped_and_removed(root: Path) -> None:
    launcher = subprocess.Popen(
        [sys.executable, "-c", LAUNCHER, str(root)], stdout=subprocess.PIPE, text=True, env=os.environ
    )
    assert launcher.stdout is not None
    postmaster, port, watchdog = map(int, launcher.stdout.readline().split())
    assert process_running(postmaster)
    assert process_running(watchdog)
    assert not _port_free(port)

    launcher.kill()  # no finally, no atexit: only the watchdog can clean up
    launcher.wait(timeout=30)
    deadline = time.monotonic() + 120
    while (process_running(postmaster) or root.exists()) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not process_running(postmaster)
    assert not root.exists()
    assert _port_free(port)


def test_a_stopped_cluster_disarms_its_watchdog_and_keeps_its_folder(root: Path) -> None:
    cluster = LocalPostgres(root / "postgres").start()
    postmaster, watchdog = cluster.postmaster_pid(), cluster.watchdog_pid
    assert postmaster is not None
    assert watchdog is not None
    cluster.stop()
    assert not process_running(postmaster)
    assert not process_running(watchdog)
    assert (root / "postgres" / "data" / "PG_VERSION").is_file()  # the caller's to remove
