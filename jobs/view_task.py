"""spark-submit entry point: one step of a view's nightly DAG (used when ``spark.submit`` is true).

    spark-submit jobs/view_task.py --conf conf/cluster.yaml --task compute --view merchant_txn \
        --start 2024-03-01 --end 2024-03-01

Tasks: compute, validate, commit, materialize, stats (skewless.orchestration). compute writes
the staged run to a small JSON file under offline_root that validate and commit read.
"""

from __future__ import annotations

import argparse
import sys
from datetime import date

from skewless.jobs_cli import job_parser, parse_date, run_job
from skewless.runtime.settings import Settings

TASKS = ("compute", "validate", "commit", "materialize", "stats")


def body(args: argparse.Namespace, settings: Settings) -> str:
    from skewless import orchestration as o
    from skewless.errors import SkewlessError
    from skewless.storage import read_text, write_text

    handoff = o.handoff_uri(settings, args.view, args.start, args.end)
    if args.task == "compute":
        write_text(handoff, o.compute_task(args.view, args.start, args.end, settings=settings))
        return f"{args.view}: ds {args.start}..{args.end} staged ({handoff})"
    if args.task in ("validate", "commit"):
        staged = read_text(handoff)
        if staged is None:
            raise SkewlessError(f"{args.view}: no staged run at {handoff}; run the compute task first")
        if args.task == "validate":
            o.validate_task(staged, settings=settings)
            return f"{args.view}: ds {args.start}..{args.end} passed validation"
        result = o.commit_task(staged, settings=settings)
        return f"{args.view}: ds {args.start}..{args.end} committed, version {result['table_version']}"
    if args.task == "materialize":
        # The range compute staged (and commit published): wider than ds when late data was repaired.
        staged = read_text(handoff)
        start, end = (args.start, args.end) if staged is None else _staged_range(staged)
        published = o.materialize_task(args.view, start, end, settings=settings)
        return f"{args.view}: ds {start}..{end} published ({published['written']} written)"
    o.stats_task(args.view, args.start, args.end, settings=settings)
    return f"{args.view}: ds {args.start}..{args.end} statistics recorded"


def _staged_range(staged_json: str) -> tuple[date, date]:
    from skewless.offline.jobs import StagedRun

    run = StagedRun.from_json(staged_json)
    return run.start, run.end


def main(argv: list[str] | None = None) -> int:
    parser = job_parser(__doc__ or "")
    parser.add_argument("--task", required=True, choices=TASKS)
    parser.add_argument("--view", required=True)
    parser.add_argument("--start", required=True, type=parse_date)
    parser.add_argument("--end", required=True, type=parse_date)
    return run_job(parser, body, argv)


if __name__ == "__main__":
    sys.exit(main())
