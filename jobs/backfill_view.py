"""spark-submit entry point for ``skewless backfill``: ds START..END of a view in one Spark job.

    spark-submit jobs/backfill_view.py --conf conf/cluster.yaml merchant_txn \
        --start 2024-01-01 --end 2024-03-01

The arguments are those of ``skewless [--conf FILE] [--debug] backfill VIEW --start DATE --end DATE
[--no-stats]`` (docs/cli.md).
"""

import sys

from skewless.cli import run_as

if __name__ == "__main__":
    sys.exit(run_as("backfill"))
