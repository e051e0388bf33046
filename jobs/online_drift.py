"""spark-submit entry point for ``skewless online-drift``: a service's online values against training.

    spark-submit jobs/online_drift.py --conf conf/cluster.yaml fraud_model_v1 --view merchant_txn

The arguments are those of ``skewless [--conf FILE] [--debug] online-drift SERVICE [--view VIEW]
[--sample N] [--seed N]`` (docs/cli.md). The nightly DAGs run it when ``spark.submit`` is true
(docs/airflow.md).
"""

import sys

from skewless.cli import run_as

if __name__ == "__main__":
    sys.exit(run_as("online-drift"))
