"""spark-submit entry point: compute, validate and commit ds START..END of a view in one Spark job.

    spark-submit jobs/backfill_view.py --conf conf/cluster.yaml --view merchant_txn \
        --start 2024-01-01 --end 2024-03-01
"""

from __future__ import annotations

import argparse
import sys

from skewless.jobs_cli import job_parser, parse_date, run_job
from skewless.runtime.settings import Settings


def body(args: argparse.Namespace, settings: Settings) -> str:
    from skewless.orchestration import run_range
    from skewless.registry import require_registry
    from skewless.runtime.spark import get_spark

    manifest = require_registry(settings.registry_uri)
    spark = get_spark(settings, app_name=f"skewless-backfill-{args.view}")
    # Validated before the commit (nothing committed on failure), statistics after it.
    stats = not args.no_stats
    result = run_range(spark, settings, manifest, args.view, args.start, args.end, stats=stats).run
    return (
        f"{result.view}: ds {result.start}..{result.end} committed ({result.rows} rows),"
        f" version {result.table_version}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = job_parser(__doc__ or "")
    parser.add_argument("--view", required=True)
    parser.add_argument("--start", required=True, type=parse_date)
    parser.add_argument("--end", required=True, type=parse_date)
    parser.add_argument("--no-stats", action="store_true", help="skip statistics (a later task records them)")
    return run_job(parser, body, argv)


if __name__ == "__main__":
    sys.exit(main())
