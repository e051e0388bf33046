"""Two ``skewless apply`` processes racing to publish: exactly one wins (docs/cli.md, apply).

The race is made certain rather than likely: the test holds the registry's lock file while both
processes start, plan against the same deployed registry and block on the lock (seen as waiters
in ``/proc/locks``); then it lets them go. Linux only (``flock`` and ``/proc/locks``).
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests.helpers import write_tree

from skewless.cli import main
from skewless.compile import compile_tree
from skewless.registry import read_registry

pytestmark = pytest.mark.skipif(not Path("/proc/locks").exists(), reason="needs Linux /proc/locks")

BASE = """\
entity:
  name: merchant
  join_keys: {merchant_id: string}
---
source:
  name: transactions
  path: raw/transactions
  format: parquet
  timestamp: ts
  columns: {merchant_id: string, amount: float64, ts: timestamp}
---
view:
  name: merchant_txn
  version: 1
  kind: aggregation
  entity: merchant
  source: transactions
  ttl: 2d
  features:
    - {name: txn_count_7d, function: count, window: 7d}
"""


def _added_view(name: str) -> str:
    return f"""\
---
view:
  name: {name}
  version: 1
  kind: aggregation
  entity: merchant
  source: transactions
  ttl: 2d
  features:
    - {{name: amount_sum_1d, function: sum, column: amount, window: 1d}}
"""


def _waiters(lock: Path, pids: set[int]) -> set[int]:
    """Processes of ``pids`` blocked on a lock of ``lock`` (``/proc/locks`` marks them ``->``)."""
    inode = lock.stat().st_ino
    blocked = set()
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        if len(fields) > 6 and fields[1] == "->":
            pid, device_inode = int(fields[5]), fields[6]
            if pid in pids and int(device_inode.rsplit(":", 1)[1]) == inode:
                blocked.add(pid)
    return blocked


def _deployed(registry: Path) -> str:
    manifest = read_registry(str(registry))
    assert manifest is not None
    return manifest.registry_hash


def test_two_concurrent_applies_exactly_one_wins(tmp_path: Path) -> None:
    conf = tmp_path / "conf.yaml"
    conf.write_text(f"data_root: {tmp_path / 'data'}\noffline_root: {tmp_path / 'offline'}\n")
    registry = tmp_path / "offline" / "_registry" / "registry.json"
    base = write_tree(tmp_path / "base", {"defs.yaml": BASE})
    trees = {
        name: write_tree(tmp_path / name, {"defs.yaml": BASE + _added_view(f"{name}_view")})
        for name in ("left", "right")
    }
    assert main(["--conf", str(conf), "apply", "--defs", str(base)]) == 0
    deployed = compile_tree(base).registry_hash
    wanted = {name: compile_tree(tree).registry_hash for name, tree in trees.items()}

    env = {k: v for k, v in os.environ.items() if not k.startswith("SKEWLESS_")}
    lock = registry.with_name("registry.json.lock")
    with lock.open("a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        procs = {
            name: subprocess.Popen(
                [sys.executable, "-m", "skewless.cli", "--conf", str(conf), "apply", "--defs", str(tree)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for name, tree in trees.items()
        }
        pids = {proc.pid for proc in procs.values()}
        deadline = time.monotonic() + 180
        while _waiters(lock, pids) != pids:
            exited = {name: proc.returncode for name, proc in procs.items() if proc.poll() is not None}
            assert not exited, f"an apply ended before reaching the lock: {exited}"
            assert time.monotonic() < deadline, "the applies never blocked on the registry lock"
            time.sleep(0.05)
        # both have planned against the deployed registry and wait to publish
        assert _deployed(registry) == deployed
    # closing the file released the lock
    results = {name: (proc.wait(timeout=120), *proc.communicate()) for name, proc in procs.items()}

    winners = [name for name, (code, _, _) in results.items() if code == 0]
    assert len(winners) == 1, results
    (winner,) = winners
    (loser,) = set(trees) - {winner}
    assert _deployed(registry) == wanted[winner]
    assert f"Applied registry {wanted[winner][:12]}" in results[winner][1]

    code, out, err = results[loser]
    assert code == 1
    assert f"view {loser}_view (added)" in out  # it planned, then lost the race
    assert err == (
        f"error: {registry} changed since the plan read it: planned against registry "
        f"{deployed[:12]}, now registry {wanted[winner][:12]} is deployed (another apply "
        "published first); re-run `skewless plan` and `skewless apply`\n"
    )
