"""The private redis-server outlives no run: a watchdog stops it if its launcher dies."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from skewless.devstack.local_redis import LocalRedis
from tests.helpers import process_running

LAUNCHER = """
import time
from skewless.devstack.local_redis import LocalRedis
server = LocalRedis().start()
print(server.process.pid, server.port, server.watchdog_pid, server.workdir, flush=True)
time.sleep(600)
"""


def _wait_until_gone(pid: int, folder: Path | None = None, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while (process_running(pid) or (folder is not None and folder.exists())) and time.monotonic() < deadline:
        time.sleep(0.1)


def test_a_server_whose_launcher_is_killed_is_stopped_and_its_folder_removed() -> None:
    launcher = subprocess.Popen(
        [sys.executable, "-c", LAUNCHER], stdout=subprocess.PIPE, text=True, env=os.environ
    )
    assert launcher.stdout is not None
    pid, port, watchdog, workdir = launcher.stdout.readline().split()
    assert process_running(int(pid))
    assert process_running(int(watchdog))
    assert LocalRedis(port=int(port)).ping()

    launcher.kill()  # no finally, no atexit: only the watchdog can clean up
    launcher.wait(timeout=30)
    _wait_until_gone(int(pid), Path(workdir))
    assert not process_running(int(pid))
    assert not Path(workdir).exists()
    assert not LocalRedis(port=int(port)).ping()


def test_stop_kill_and_restart_disarm_the_watchdog_they_replace() -> None:
    server = LocalRedis().start()
    first = server.watchdog_pid
    assert first is not None
    server.restart()  # a simulated crash, then a new server with its own watchdog
    second = server.watchdog_pid
    assert second is not None
    assert second != first
    _wait_until_gone(first)
    assert not process_running(first)
    assert server.ping()
    workdir = server.workdir
    server.close()
    _wait_until_gone(second)
    assert not process_running(second)
    assert server.watchdog_pid is None
    assert not workdir.exists()
