"""Airflow as it runs in production, on one machine: ``make airflow`` and the stack tests.

:class:`AirflowStack` starts, in a private temporary directory:

1. a PostgreSQL cluster (Debian's binaries, ``initdb``/``pg_ctl``) on a free loopback port: the
   metadata database. PostgreSQL refuses to run as root: when this process is root, the cluster
   belongs to the unprivileged ``postgres`` user and its commands run through ``runuser``;
2. ``airflow db migrate`` against it (``postgresql+psycopg2://``; Airflow derives its asyncpg URL);
3. ``airflow api-server`` (UI, REST API and the task execution API), ``airflow scheduler`` with
   the ``LocalExecutor`` and ``airflow dag-processor``, each its own process group, with
   ``AIRFLOW__CORE__DAGS_FOLDER`` at the repository's ``dags/`` and the caller's skewless
   environment (``SKEWLESS_CONF`` and any ``SKEWLESS_<KEY>``), as docs/airflow.md describes.

The login is Airflow 3's simple auth manager: user ``admin`` (role admin) with a random password
written to the passwords file before the API server starts; :meth:`AirflowStack.api` returns a
REST client holding a JWT from ``POST /auth/token``. :meth:`AirflowStack.close` stops every
process group (SIGTERM, then SIGKILL), stops the cluster and removes the directory.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from skewless.devstack.local_redis import HOST, free_port
from skewless.devstack.watchdog import Watchdog
from skewless.errors import SkewlessError

log = logging.getLogger(__name__)

ADMIN = "admin"
COMPONENTS = ("api-server", "scheduler", "dag-processor")
PG_BIN_DIRS = ("/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/16/bin", "/usr/lib/postgresql/17/bin")
PG_USER = "postgres"


class StackError(SkewlessError):
    """A part of the local Airflow stack did not start or stop (names the part and its log)."""


def postgres_bin_dir() -> Path:
    """Debian's PostgreSQL server binaries (``apt-get install postgresql``)."""
    for folder in PG_BIN_DIRS:
        if (Path(folder) / "initdb").is_file():
            return Path(folder)
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    raise StackError(
        "PostgreSQL server binaries not found in /usr/lib/postgresql/*/bin "
        "(Debian/Ubuntu: apt-get install postgresql; `make airflow` does it)"
    )


def _tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the launching process dies (Linux prctl)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass
class LocalPostgres:
    """A private PostgreSQL cluster in ``root`` on a free loopback port, password auth.

    Once started, a watchdog stops it and removes ``root`` (and ``remove_on_crash``) should this
    process die without calling :meth:`stop`.
    """

    root: Path
    port: int = field(default_factory=free_port)
    user: str = "airflow"
    database: str = "airflow"
    password: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    remove_on_crash: tuple[Path, ...] = ()

    def __post_init__(self) -> None:
        self.bin = postgres_bin_dir()
        self.data = self.root / "data"
        self.logfile = self.root / "postgres.log"
        # initdb and postgres refuse to run as root: the cluster then belongs to `postgres`.
        self.run_as = PG_USER if os.geteuid() == 0 else None
        self._watchdog: Watchdog | None = None

    @property
    def url(self) -> str:
        return f"postgresql+psycopg2://{self.user}:{self.password}@{HOST}:{self.port}/{self.database}"

    def _argv(self, *command: str) -> list[str]:
        argv = [str(self.bin / command[0]), *command[1:]]
        return ["runuser", "-u", self.run_as, "--", *argv] if self.run_as else argv

    def _run(self, *command: str, timeout: float = 300) -> None:
        argv = self._argv(*command)
        done = subprocess.run(
            argv, cwd=self.root, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
        )
        if done.returncode != 0:
            raise StackError(
                f"postgres: {command[0]} failed (exit {done.returncode}): "
                f"{(done.stderr or done.stdout)[-2000:]}\n{_tail(self.logfile)}"
            )

    def start(self) -> LocalPostgres:
        self.root.mkdir(parents=True, exist_ok=True)
        pwfile = self.root / "pwfile"
        pwfile.write_text(self.password + "\n")
        pwfile.chmod(0o600)
        if self.run_as:
            shutil.chown(self.root, self.run_as, self.run_as)
            shutil.chown(pwfile, self.run_as, self.run_as)
        self.root.chmod(0o700)
        self._run(
            "initdb", "-D", str(self.data), "-U", self.user, f"--pwfile={pwfile}",
            "--auth=scram-sha-256", "-E", "UTF8", "--no-sync", "--locale=C",
        )  # fmt: skip
        pwfile.unlink()
        options = (
            f"-p {self.port} -c listen_addresses={HOST} -k {self.root} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.logfile), "-o", options, "-w", "-t", "120", "start"
        )
        self._start_watchdog()
        self._psql_create_database()
        return self

    def _start_watchdog(self) -> None:
        stop = self._argv("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        self._watchdog = Watchdog(stop, [str(self.root), *map(str, self.remove_on_crash)])

    def _disarm_watchdog(self) -> None:
        watchdog, self._watchdog = self._watchdog, None
        if watchdog is not None:
            watchdog.disarm()

    @property
    def watchdog_pid(self) -> int | None:
        return None if self._watchdog is None else self._watchdog.pid

    def _psql_create_database(self) -> None:
        env = {**os.environ, "PGPASSWORD": self.password}
        argv = [str(self.bin.parent / "bin" / "createdb"), "-h", HOST, "-p", str(self.port), "-U", self.user]
        done = subprocess.run(
            [*argv, self.database],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
            stdin=subprocess.DEVNULL,
        )
        if done.returncode != 0 and "already exists" not in done.stderr:
            raise StackError(f"postgres: createdb {self.database} failed: {done.stderr[-2000:]}")

    def postmaster_pid(self) -> int | None:
        try:
            return int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def stop(self) -> None:
        self._disarm_watchdog()
        if self.postmaster_pid() is None:
            return
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "stop", timeout=120)
        except (StackError, subprocess.TimeoutExpired):
            pid = self.postmaster_pid()
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


class AirflowApi:
    """A small REST client of ``/api/v2`` with a bearer token (JSON in, JSON out)."""

    def __init__(self, base_url: str, token: str, timeout_s: float = 120) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout_s = timeout_s

    def request(self, method: str, path: str, body: Any = None, accept: str = "application/json") -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.base_url}{path}", data=data, method=method)
        request.add_header("Authorization", f"Bearer {self.token}")
        request.add_header("Accept", accept)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                text = response.read().decode()
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:2000]
            raise StackError(f"{method} {path}: HTTP {exc.code}: {detail}") from None
        return json.loads(text) if text.strip() else None

    def get(self, path: str) -> Any:
        return self.request("GET", path)

    def post(self, path: str, body: Any) -> Any:
        return self.request("POST", path, body)

    def patch(self, path: str, body: Any) -> Any:
        return self.request("PATCH", path, body)

    def delete(self, path: str) -> Any:
        return self.request("DELETE", path)


def _http_json(url: str, body: Any = None, timeout_s: float = 30) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="GET" if body is None else "POST")
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        return json.loads(response.read().decode())


class AirflowStack:
    """PostgreSQL + api-server + scheduler (LocalExecutor) + dag-processor, started together.

    ``skewless_env`` holds the skewless settings the tasks and the DAG file read (``SKEWLESS_CONF``
    and ``SKEWLESS_<KEY>`` overrides); ``airflow_env`` any further ``AIRFLOW__*`` settings.
    """

    def __init__(
        self,
        dags_folder: Path,
        skewless_env: Mapping[str, str],
        *,
        root: Path | None = None,
        parallelism: int = 2,
        airflow_env: Mapping[str, str] | None = None,
        start_timeout_s: float = 600,
    ) -> None:
        self._own_root = root is None
        self.root = Path(root or tempfile.mkdtemp(prefix="skewless-airflow-stack-"))
        self.dags_folder = Path(dags_folder).resolve()
        self.skewless_env = dict(skewless_env)
        self.parallelism = parallelism
        self.airflow_env = dict(airflow_env or {})
        self.start_timeout_s = start_timeout_s
        self.home = self.root / "airflow"
        self.logs = self.root / "logs"
        self.api_port = free_port()
        self.log_server_port = free_port()
        self.password = secrets.token_urlsafe(12)
        self.postgres = LocalPostgres(
            self.root / "postgres", remove_on_crash=(self.root,) if self._own_root else ()
        )
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self._api: AirflowApi | None = None

    # --- addresses -------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.api_port}"

    @property
    def login(self) -> tuple[str, str]:
        return ADMIN, self.password

    @property
    def ports(self) -> tuple[int, ...]:
        """Every port the stack listens on (all free again after :meth:`close`)."""
        return self.api_port, self.log_server_port, self.postgres.port

    # --- environment -----------------------------------------------------------------------------

    def environment(self) -> dict[str, str]:
        """The environment of every Airflow process (and of ``airflow`` commands run by hand)."""
        venv_bin = str(Path(sys.executable).parent)
        # The caller's own Airflow settings (a test session's AIRFLOW_HOME, say) do not leak in.
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
        env = {**inherited, **self.skewless_env}
        env["PATH"] = f"{venv_bin}{os.pathsep}{env.get('PATH', '')}"
        env.setdefault("PYSPARK_PYTHON", sys.executable)
        env.update(
            {
                "TZ": "UTC",
                "SPARK_LOCAL_IP": HOST,
                "AIRFLOW_HOME": str(self.home),
                "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                "AIRFLOW__CORE__PARALLELISM": str(self.parallelism),
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.url}/execution/",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN}:admin",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self.home / "passwords.json"),
                "AIRFLOW__CORE__FERNET_KEY": self._fernet_key(),
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.postgres.url,
                "AIRFLOW__API__HOST": HOST,
                "AIRFLOW__API__PORT": str(self.api_port),
                "AIRFLOW__API__WORKERS": "1",
                "AIRFLOW__API__BASE_URL": self.url,
                "AIRFLOW__API__SECRET_KEY": self._secret("api_secret"),
                "AIRFLOW__API_AUTH__JWT_SECRET": self._secret("jwt_secret"),
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(self.log_server_port),
                "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(self.logs / "tasks"),
                # A loaded laptop: parse the DAG file (it reads one JSON file) every 10 s, so an
                # `apply` shows up quickly, and give slow task start-ups room.
                "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "10",
                "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
                "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
                "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "1800",
                "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "600",
                "AIRFLOW__EXECUTION_API__JWT_EXPIRATION_TIME": "3600",
                # Task processes call the execution API; on a loaded machine its answers can
                # take far longer than the 5 s default.
                "AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT": "120",
            }
        )
        env.update(self.airflow_env)
        return env

    def _secret(self, name: str) -> str:
        path = self.home / f".{name}"
        if not path.is_file():
            self.home.mkdir(parents=True, exist_ok=True)
            path.write_text(secrets.token_urlsafe(32))
        return path.read_text()

    def _fernet_key(self) -> str:
        import base64

        path = self.home / ".fernet_key"
        if not path.is_file():
            self.home.mkdir(parents=True, exist_ok=True)
            path.write_text(base64.urlsafe_b64encode(secrets.token_bytes(32)).decode())
        return path.read_text()

    def airflow(self, *args: str, timeout_s: float = 600) -> subprocess.CompletedProcess[str]:
        """Run an ``airflow`` command against this stack's database; raises on failure."""
        done = subprocess.run(
            [str(Path(sys.executable).parent / "airflow"), *args],
            env=self.environment(),
            capture_output=True,
            text=True,
            timeout=timeout_s,
            stdin=subprocess.DEVNULL,
            cwd=self.root,
        )
        if done.returncode != 0:
            raise StackError(
                f"airflow {' '.join(args)} failed (exit {done.returncode}): {done.stderr[-3000:]}"
            )
        return done

    # --- lifecycle -------------------------------------------------------------------------------

    def start(self) -> AirflowStack:
        try:
            self.home.mkdir(parents=True, exist_ok=True)
            self.logs.mkdir(parents=True, exist_ok=True)
            (self.home / "passwords.json").write_text(json.dumps({ADMIN: self.password}) + "\n")
            if self.postgres.run_as:  # the cluster's owner must reach its folder inside the root
                self.root.chmod(0o711)
            self.postgres.start()
            self.airflow("db", "migrate", timeout_s=self.start_timeout_s)
            self.start_component("api-server")
            self._wait_for_api()
            self.start_component("scheduler")
            self.start_component("dag-processor")
            self.wait_healthy(("scheduler", "dag_processor"))
        except BaseException:
            self.close()
            raise
        return self

    def start_component(self, name: str) -> None:
        """Start ``airflow <name>`` (one of :data:`COMPONENTS`) in its own process group."""
        if name not in COMPONENTS:
            raise StackError(f"unknown Airflow component {name!r}; expected one of {', '.join(COMPONENTS)}")
        running = self.processes.get(name)
        if running is not None and running.poll() is None:
            return
        args = (
            ["api-server", "--port", str(self.api_port), "--host", HOST] if name == "api-server" else [name]
        )
        with (self.logs / f"{name}.log").open("ab") as out:
            self.processes[name] = subprocess.Popen(
                [str(Path(sys.executable).parent / "airflow"), *args],
                env=self.environment(),
                cwd=self.root,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own process group: stopped with every child
                preexec_fn=_die_with_parent,
            )

    def stop_component(self, name: str, timeout_s: float = 120) -> None:
        """SIGTERM to the component's process group (its workers, task processes and their Spark
        JVMs included), SIGKILL after ``timeout_s``; returns when the group is gone."""
        process = self.processes.pop(name, None)
        if process is None:
            return
        group = process.pid
        for sig, wait_s in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, 30.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=wait_s)
            if _wait_group_gone(group, wait_s):
                return
        raise StackError(f"airflow {name}: process group {group} survived SIGKILL")

    def process_groups(self) -> dict[str, int]:
        return {name: process.pid for name, process in self.processes.items()}

    def _wait_for_api(self) -> None:
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            self._check_running()
            with contextlib.suppress(OSError, ValueError):
                _http_json(f"{self.url}/api/v2/monitor/health", timeout_s=10)
                # The execution API builds its versioned app on its first request (tens of
                # seconds under load): warm it up before a task's first call can time out.
                _http_json(f"{self.url}/execution/health", timeout_s=self.start_timeout_s)
                return
            time.sleep(1)
        raise StackError(f"airflow api-server did not answer within {self.start_timeout_s:.0f} s")

    def health(self) -> dict[str, Any]:
        body = _http_json(f"{self.url}/api/v2/monitor/health", timeout_s=30)
        return dict(body)

    def wait_healthy(
        self, parts: tuple[str, ...] = ("scheduler", "dag_processor"), timeout_s: float | None = None
    ) -> None:
        """Poll ``/api/v2/monitor/health`` until every part in ``parts`` reports healthy."""
        deadline = time.monotonic() + (timeout_s or self.start_timeout_s)
        status: dict[str, Any] = {}
        while time.monotonic() < deadline:
            self._check_running()
            with contextlib.suppress(OSError, ValueError):
                status = self.health()
                if all((status.get(part) or {}).get("status") == "healthy" for part in parts):
                    return
            time.sleep(2)
        raise StackError(f"Airflow did not become healthy ({', '.join(parts)}): {status}")

    def _check_running(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                raise StackError(
                    f"airflow {name} exited (code {process.returncode}); "
                    f"log {self.logs / (name + '.log')}:\n{_tail(self.logs / (name + '.log'))}"
                )

    def api(self) -> AirflowApi:
        """A REST client logged in as the admin (``POST /auth/token``)."""
        if self._api is None:
            user, password = self.login
            token = _http_json(f"{self.url}/auth/token", {"username": user, "password": password})
            self._api = AirflowApi(self.url, str(token["access_token"]))
        return self._api

    def close(self) -> None:
        """Stop every process group, then the cluster; remove the directory the stack created."""
        problems: list[str] = []
        for name in reversed(COMPONENTS):
            try:
                self.stop_component(name)
            except StackError as exc:
                problems.append(str(exc))
        self.postgres.stop()
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)
        if problems:
            raise StackError("; ".join(problems))

    def __enter__(self) -> AirflowStack:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def live_members(group: int) -> list[int]:
    """Processes of process group ``group`` that still run (zombies awaiting a reaper excluded)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            # pid (comm) state ppid pgrp ...: comm may hold spaces, so split after its ')'.
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == group and fields[0] != "Z":
            members.append(int(entry.name))
    return members


def _wait_group_gone(group: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while live_members(group):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True
