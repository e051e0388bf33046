"""spark-submit entry point: compute, validate and commit one ds of a view.

spark-submit jobs/run_view.py --conf conf/cluster.yaml --view merchant_txn --ds 2024-03-01
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
    spark = get_spark(settings, app_name=f"skewless-run-{args.view}")
    # Validated before the commit (nothing committed on failure), statistics after it.
    result = run_range(spark, settings, manifest, args.view, args.ds).run
    return f"{result.view}: ds {result.start} committed ({result.rows} rows), version {result.table_version}"


def main(argv: list[str] | None = None) -> int:
    parser = job_parser(__doc__ or "")
    parser.add_argument("--view", required=True)
    parser.add_argument("--ds", required=True, type=parse_date)
    return run_job(parser, body, argv)


if __name__ == "__main__":
    sys.exit(main())
