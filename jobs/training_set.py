"""spark-submit entry point: a point-in-time training set for a service or a feature list.

    spark-submit --driver-memory 8g jobs/training_set.py --conf conf/cluster.yaml \
        --service fraud_model_v1 --spine s3://bucket/spines/2024-03 --out s3://bucket/ts/2024-03
"""

from __future__ import annotations

import argparse
import sys

from skewless.jobs_cli import job_parser, run_job
from skewless.runtime.settings import Settings


def body(args: argparse.Namespace, settings: Settings) -> str:
    from skewless.pit.training_set import training_set_command

    record = training_set_command(
        settings,
        out=args.out,
        spine_path=args.spine,
        features=args.features,
        service=args.service,
        timestamp_column=args.timestamp_column,
        output_format=args.format,
        rebuild=args.rebuild,
    )
    return f"wrote {record.spine_rows} rows to {args.out}"


def main(argv: list[str] | None = None) -> int:
    parser = job_parser(__doc__ or "")
    parser.add_argument("--service")
    parser.add_argument("--features")
    parser.add_argument("--spine")
    parser.add_argument("--out", required=True)
    parser.add_argument("--timestamp-column", default="event_timestamp")
    parser.add_argument("--format", choices=["parquet", "delta"])
    parser.add_argument("--rebuild")
    return run_job(parser, body, argv)


if __name__ == "__main__":
    sys.exit(main())
