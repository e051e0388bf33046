"""A private, throw-away redis-server on a loopback port (the local demo, benchmarks, tests).

No persistence (``--save '' --appendonly no``): a killed or restarted server comes back empty.
A :class:`~skewless.devstack.watchdog.Watchdog` stops the server (and removes a folder it made)
should the process that started it die without stopping it.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from skewless.devstack.watchdog import Watchdog
from skewless.errors import OnlineStoreError

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


class LocalRedis:
    """``with LocalRedis() as server: server.url`` - started on a free port, stopped on exit."""

    def __init__(
        self,
        port: int | None = None,
        workdir: Path | None = None,
        binary: str = "redis-server",
        extra_args: Sequence[str] = (),
    ) -> None:
        self.port = port or free_port()
        self.binary = binary
        self.extra_args = tuple(extra_args)
        self._own_dir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="skewless-redis-"))
        self.process: subprocess.Popen[bytes] | None = None
        self._watchdog: Watchdog | None = None

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    def start(self, timeout_s: float = 10.0) -> LocalRedis:
        path = shutil.which(self.binary)
        if path is None:
            raise OnlineStoreError(
                f"{self.binary} not found on PATH (Debian/Ubuntu: apt-get install redis-server)"
            )
        self.workdir.mkdir(parents=True, exist_ok=True)
        command = [path, "--save", "", "--appendonly", "no", "--port", str(self.port), "--bind", HOST]
        command += ["--dir", str(self.workdir), "--daemonize", "no", "--loglevel", "warning"]
        command += list(self.extra_args)
        log = (self.workdir / "redis.log").open("ab")
        self.process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        log.close()
        folders = [str(self.workdir)] if self._own_dir else []
        kill = [sys.executable, "-c", "import os, sys; os.kill(int(sys.argv[1]), 9)", str(self.process.pid)]
        self._watchdog = Watchdog(kill, folders)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self._disarm_watchdog()
                raise OnlineStoreError(
                    f"redis-server exited at start (code {self.process.returncode}); "
                    f"see {self.workdir}/redis.log"
                )
            if self.ping():
                return self
            time.sleep(0.01)
        self.stop()
        raise OnlineStoreError(f"redis-server did not answer on port {self.port} within {timeout_s} s")

    def ping(self) -> bool:
        """The server answers (a password-protected one answers PING with -NOAUTH)."""
        try:
            with socket.create_connection((HOST, self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith((b"+PONG", b"-NOAUTH"))
        except OSError:
            return False

    @property
    def watchdog_pid(self) -> int | None:
        return None if self._watchdog is None else self._watchdog.pid

    def _disarm_watchdog(self) -> None:
        watchdog, self._watchdog = self._watchdog, None
        if watchdog is not None:
            watchdog.disarm()

    def kill(self) -> None:
        """SIGKILL (a crash): the data is gone."""
        self._disarm_watchdog()
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    def stop(self) -> None:
        self._disarm_watchdog()
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process = None

    def restart(self) -> LocalRedis:
        self.kill()
        return self.start()

    def close(self) -> None:
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> LocalRedis:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
