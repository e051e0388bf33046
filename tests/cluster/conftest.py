"""A Spark standalone cluster on loopback: one master and two workers, separate JVMs.

Started once per session from the pinned pyspark (``spark-class ...deploy.master.Master`` and
``...deploy.worker.Worker``; no download, no network beyond 127.0.0.1) and stopped at the end.

Executors get skewless the way a cluster's would: :func:`pyfiles` zips ``src/skewless``
(scripts/build_pyfiles.py) and the jobs ship it with ``spark.submit.pyFiles`` / ``--py-files``.
The executors' Python (:func:`bare_python`) is a virtualenv whose only link to this project is a
``.pth`` file naming the project's site-packages: it has the dependencies (pyspark, pyarrow,
redis, ...) but not skewless, because the editable install's own ``.pth`` file (which puts
``src/`` on the path) is processed only in a real site directory, and a directory added by a
``.pth`` file is not one. So an executor imports skewless from the shipped zip or not at all.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from skewless.devstack.local_redis import free_port

# The nightly DAG test needs Airflow's private home and migrated DB (set before airflow is imported).
from tests.airflow.conftest import _airflow_home, airflow_db  # noqa: F401

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
SPARK_HOME = Path(sysconfig.get_paths()["purelib"]) / "pyspark"
WORKERS = 2
START_TIMEOUT_S = 180.0


@dataclass
class Cluster:
    master_url: str
    workdir: Path
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-3000:] for p in sorted(self.workdir.glob("*.log")))

    def stop(self) -> None:
        # Workers first (they stop their executors), then the master; each is its own process group.
        for process in reversed(self.processes):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in reversed(self.processes):
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)


def spark_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of everything Spark here: loopback only, UTC, this virtualenv's Spark."""
    env = {
        **os.environ,
        "SPARK_HOME": str(SPARK_HOME),
        "SPARK_LOCAL_IP": "127.0.0.1",
        "TZ": "UTC",
        "PATH": f"{VENV_BIN}:{os.environ['PATH']}",
        # Small daemons; C1 only: start-up dominates on a loaded machine.
        "SPARK_DAEMON_MEMORY": "256m",
        "SPARK_DAEMON_JAVA_OPTS": "-XX:TieredStopAtLevel=1",
        "SPARK_NO_DAEMONIZE": "1",
    }
    env.pop("PYSPARK_GATEWAY_PORT", None)
    return {**env, **(extra or {})}


def _start(command: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=log.parent, start_new_session=True
        )


def _wait_for(cluster: Cluster, log: Path, pattern: str, count: int = 1) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace") if log.exists() else ""
        if len(re.findall(pattern, text)) >= count:
            return
        if any(p.poll() is not None for p in cluster.processes):
            break
        time.sleep(0.5)
    cluster.stop()
    raise RuntimeError(f"the standalone cluster did not start ({pattern!r} in {log}):\n{cluster.logs()}")


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    """``spark://127.0.0.1:PORT`` with two workers of one core and 1 GiB each."""
    workdir = Path(tempfile.mkdtemp(prefix="skewless-cluster-"))
    port = free_port()
    spark_class = str(VENV_BIN / "spark-class")
    env = spark_env()
    cluster = Cluster(f"spark://127.0.0.1:{port}", workdir)
    master_log = workdir / "master.log"
    master = "org.apache.spark.deploy.master.Master"
    cluster.processes.append(
        _start(
            [spark_class, master, "--host", "127.0.0.1", "--port", str(port), "--webui-port", "0"],
            master_log,
            env,
        )
    )
    try:
        _wait_for(cluster, master_log, r"I have been elected leader")
        for n in range(WORKERS):
            worker_dir = workdir / f"worker-{n}"
            worker_dir.mkdir()
            command = [spark_class, "org.apache.spark.deploy.worker.Worker", cluster.master_url]
            command += ["--host", "127.0.0.1", "--webui-port", "0", "--cores", "1", "--memory", "1g"]
            command += ["--work-dir", str(worker_dir)]
            cluster.processes.append(_start(command, workdir / f"worker-{n}.log", env))
        _wait_for(cluster, master_log, r"Registering worker", WORKERS)
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def pyfiles(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``skewless.zip`` as ``make pyfiles`` builds it."""
    out = tmp_path_factory.mktemp("dist") / "skewless.zip"
    subprocess.run([sys.executable, str(REPO / "scripts" / "build_pyfiles.py"), str(out)], check=True)
    return out


@pytest.fixture(scope="session")
def bare_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Python with skewless's dependencies but not skewless (see the module docstring)."""
    root = tmp_path_factory.mktemp("bare-venv")
    base = Path(sys.base_prefix) / "bin" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    subprocess.run([str(base), "-m", "venv", "--without-pip", str(root)], check=True)
    site = root / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    (site / "skewless-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    python = root / "bin" / "python"
    probe = subprocess.run(
        [
            str(python),
            "-c",
            "import pyspark, redis, pyarrow\ntry:\n import skewless\nexcept ImportError: print('ok')",
        ],
        capture_output=True,
        text=True,
        cwd=root,
        check=True,
    )
    assert probe.stdout.strip() == "ok", "the bare Python must not see skewless"
    return python


@dataclass
class ConnectServer:
    url: str
    log: Path
    process: subprocess.Popen[bytes]


@pytest.fixture(scope="session")
def connect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConnectServer]:
    """A Spark Connect server (``SparkConnectServer`` from the pinned pyspark) on a loopback port."""
    from skewless.runtime.spark import REQUIRED_CONF

    workdir = tmp_path_factory.mktemp("connect")
    port = free_port()
    conf = {
        **REQUIRED_CONF,
        "spark.connect.grpc.binding.address": "127.0.0.1",
        "spark.connect.grpc.binding.port": str(port),
        "spark.ui.enabled": "false",
        "spark.sql.shuffle.partitions": "4",
        "spark.local.dir": str(workdir / "local"),
        "spark.driver.extraJavaOptions": "-Duser.timezone=UTC -XX:TieredStopAtLevel=1",
    }
    command = [str(VENV_BIN / "spark-submit"), "--master", "local[2]", "--driver-memory", "1g"]
    command += [item for key, value in conf.items() for item in ("--conf", f"{key}={value}")]
    command += ["--class", "org.apache.spark.sql.connect.service.SparkConnectServer", "spark-internal"]
    log = workdir / "connect.log"
    # Spark's launcher sizes the Connect server like a daemon (SPARK_DAEMON_MEMORY), not by --driver-memory.
    process = _start(command, log, spark_env({"PYSPARK_PYTHON": sys.executable, "SPARK_DAEMON_MEMORY": "1g"}))
    server = ConnectServer(f"sc://127.0.0.1:{port}", log, process)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while "Spark Connect server started" not in (log.read_text(errors="replace") if log.exists() else ""):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the Spark Connect server did not start:\n{log.read_text()[-5000:]}")
            time.sleep(0.5)
        yield server
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
