"""spark-submit entry point for ``skewless task``: one step of a view's nightly DAG.

    spark-submit jobs/view_task.py --conf conf/cluster.yaml compute merchant_txn \
        --start 2024-03-01 --end 2024-03-01

Steps: compute, validate, commit, materialize, stats; the arguments are those of
``skewless [--conf FILE] [--debug] task STEP VIEW --start DATE --end DATE`` (docs/cli.md). The DAGs
run these when ``spark.submit`` is true (docs/airflow.md).
"""

import sys

from skewless.cli import run_as

if __name__ == "__main__":
    sys.exit(run_as("task"))
