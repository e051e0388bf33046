"""Benchmark plumbing: run a measured step in a fresh worker process, sample its process tree's memory.

Each measured step runs in its own Python process (so Spark's JVM starts fresh and its memory is
its own); the parent samples the resident memory of that process and all its descendants.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def _rss_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return 0
    return 0


def tree_rss(pid: int) -> int:
    """Resident memory of ``pid`` and every descendant."""
    total, stack = 0, [pid]
    while stack:
        current = stack.pop()
        total += _rss_bytes(current)
        stack.extend(_children(current))
    return total


class PeakSampler:
    def __init__(self, pid: int, interval: float = 0.1) -> None:
        self.pid, self.interval, self.peak = pid, interval, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_rss(self.pid))
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def run_worker(module: str, task: dict[str, Any], timeout: float = 3600) -> dict[str, Any]:
    """Run ``python -m module --worker JSON`` and return its JSON result plus ``peak_rss_mb``.

    The worker prints its result as JSON on its last stdout line.
    """
    env = {**os.environ, "TZ": "UTC", "SPARK_LOCAL_IP": "127.0.0.1", "PYTHONPATH": str(REPO)}
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", module, "--worker", json.dumps(task)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    with PeakSampler(process.pid) as sampler:
        stdout, stderr = process.communicate(timeout=timeout)
    if process.returncode != 0:
        raise RuntimeError(f"{module} worker failed ({process.returncode}): {stderr[-3000:]}")
    result: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
    result["peak_rss_mb"] = round(sampler.peak / 2**20, 1)
    result["process_seconds"] = round(time.perf_counter() - started, 2)
    return result


def worker_main(handlers: dict[str, Any]) -> int:
    """Entry for ``--worker``: dispatch on ``task['step']`` and print the result as JSON."""
    if len(sys.argv) != 3 or sys.argv[1] != "--worker":
        print("usage: python -m bench.<module> --worker JSON", file=sys.stderr)
        return 2
    task = json.loads(sys.argv[2])
    result = handlers[task["step"]](task)
    print(json.dumps(result))
    return 0


def timed(fn: Any, *args: Any, **kwargs: Any) -> tuple[Any, float]:
    started = time.perf_counter()
    value = fn(*args, **kwargs)
    return value, time.perf_counter() - started


def run_process(
    command: list[str], *, env: dict[str, str] | None = None, timeout: float = 7200
) -> dict[str, Any]:
    """Run ``command`` as users run it (a whole process); its wall time and the tree's peak memory.

    Returns ``seconds``, ``peak_rss_mb``, ``started_epoch`` (wall clock at start, to place the
    process's own log lines on the same clock), ``stdout`` and ``stderr``.
    """
    environment = {**os.environ, "TZ": "UTC", "SPARK_LOCAL_IP": "127.0.0.1", "PYTHONPATH": str(REPO)}
    environment.update(env or {})
    started_epoch = time.time()
    started = time.perf_counter()
    process = subprocess.Popen(
        command, cwd=REPO, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    with PeakSampler(process.pid) as sampler:
        stdout, stderr = process.communicate(timeout=timeout)
    seconds = time.perf_counter() - started
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:3])} failed ({process.returncode}): {stderr[-3000:]}")
    return {
        "seconds": round(seconds, 2),
        "peak_rss_mb": round(sampler.peak / 2**20, 1),
        "started_epoch": started_epoch,
        "stdout": stdout,
        "stderr": stderr,
    }


def load_average() -> list[float]:
    """The machine's 1, 5 and 15-minute load averages (figures are reported beside them)."""
    return [round(value, 2) for value in os.getloadavg()]
