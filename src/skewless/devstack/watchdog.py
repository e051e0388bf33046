"""A guard that cleans up after a local server should the process that started it die.

The watchdog is a small process of its own reading a pipe from its launcher. A normal stop
writes "closed" and it exits; EOF without it means the launcher died without stopping the
server (SIGKILL, a crashed test run), and the watchdog runs the stop command and removes the
folders, so nothing outlives the run. Used by the private redis-server and PostgreSQL cluster.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from collections.abc import Sequence

_SCRIPT = """
import json, shutil, subprocess, sys
stop, folders = json.loads(sys.argv[1])
if sys.stdin.read() != "closed":
    subprocess.run(stop, stdin=subprocess.DEVNULL, capture_output=True, timeout=120)
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)
"""


class Watchdog:
    def __init__(self, stop: Sequence[str], folders: Sequence[str] = ()) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-c", _SCRIPT, json.dumps([list(stop), list(folders)])],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C of the launcher's terminal is not its business
        )

    @property
    def pid(self) -> int:
        return self._process.pid

    def disarm(self) -> None:
        """The server was stopped normally: the watchdog exits without doing anything."""
        if self._process.stdin is None:
            return
        with contextlib.suppress(BrokenPipeError, OSError):
            self._process.stdin.write(b"closed")
            self._process.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._process.wait(timeout=30)
