"""spark-submit entry point for ``skewless training-set``: a point-in-time training set.

    spark-submit --driver-memory 8g jobs/training_set.py --conf conf/cluster.yaml \
        --service fraud_model_v1 --spine s3://bucket/spines/2024-03 --out s3://bucket/ts/2024-03

The arguments are those of ``skewless [--conf FILE] [--debug] training-set ...`` (docs/cli.md).
"""

import sys

from skewless.cli import run_as

if __name__ == "__main__":
    sys.exit(run_as("training-set"))
