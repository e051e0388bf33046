"""Shared fixtures: one SparkSession for the whole run (starting Spark costs ~10-30 s)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

os.environ["TZ"] = "UTC"
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


@pytest.fixture(scope="session")
def spark() -> Iterator[SparkSession]:
    from skewless.runtime.settings import Settings, SparkSettings
    from skewless.runtime.spark import get_spark

    settings = Settings(
        spark=SparkSettings(
            master="local[2]",
            conf={"spark.sql.shuffle.partitions": "4", "spark.driver.memory": "2g"},
        )
    )
    session = get_spark(settings, app_name="skewless-tests")
    yield session
    session.stop()
