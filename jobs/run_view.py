"""spark-submit entry point for ``skewless run``: compute, validate and commit one ds of a view.

    spark-submit jobs/run_view.py --conf conf/cluster.yaml merchant_txn --ds 2024-03-01

The arguments are those of ``skewless [--conf FILE] [--debug] run VIEW --ds DATE`` (docs/cli.md).
"""

import sys

from skewless.cli import run_as

if __name__ == "__main__":
    sys.exit(run_as("run"))
