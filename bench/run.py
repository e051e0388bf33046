"""``make bench``: run every benchmark and write one JSON report.

Each benchmark module exposes ``run(workdir: Path, scale: float) -> dict``; figures are reported
as ratios against a baseline measured in the same run, never as absolute targets in tests.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCHMARKS = {
    "offline_backfill": "bench.offline_bench",
    "point_in_time_join": "bench.pit_bench",
    "online_store": "bench.online_bench",
    "statistics": "bench.stats_bench",
    "snapshot_workload": "bench.snapshot_bench",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="bench/report.json")
    parser.add_argument("--only", action="append", choices=sorted(BENCHMARKS), help="run only these")
    parser.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="data size multiplier (1.0 = targets; below 1 the snapshot workload skips its 10x size)",
    )
    args = parser.parse_args(argv)
    os.environ.setdefault("TZ", "UTC")
    report: dict[str, Any] = {
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "scale": args.scale,
        "results": {},
    }
    failed = False
    for name in args.only or list(BENCHMARKS):
        module = importlib.import_module(BENCHMARKS[name])
        started = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix=f"skewless-bench-{name}-") as workdir:
            try:
                section = module.run(Path(workdir), args.scale)
            except Exception as exc:  # a failed benchmark is reported, the others still run
                section = {"error": f"{type(exc).__name__}: {exc}"}
                failed = True
        section["wall_seconds"] = round(time.perf_counter() - started, 2)
        report["results"][name] = section
        print(f"{name}: {json.dumps(section, indent=2)}", flush=True)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"report written to {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
