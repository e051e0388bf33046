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

    conf = {"spark.sql.shuffle.partitions": "4", "spark.driver.memory": "2g"}
    if os.environ.get("SKEWLESS_TEST_DELTA_SPARK") == "1":  # delta-spark's JARs supplied by the caller
        conf |= {
            "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
            "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
        }
    settings = Settings(spark=SparkSettings(master="local[2]", conf=conf))
    session = get_spark(settings, app_name="skewless-tests")
    yield session
    session.stop()


# --- Redis: one private redis-server for the run (no persistence, loopback only) -----------------

if TYPE_CHECKING:
    from skewless.devstack.local_redis import LocalRedis


@pytest.fixture(scope="session")
def redis_server() -> Iterator[LocalRedis]:
    """``redis-server --save '' --appendonly no --port N --bind 127.0.0.1`` on a free port."""
    from skewless.devstack.local_redis import LocalRedis

    server = LocalRedis().start()
    yield server
    server.close()


@pytest.fixture
def redis_url(redis_server: LocalRedis) -> str:
    """The session server's URL, emptied for the test (restarted first if a test killed it)."""
    import redis

    if not redis_server.ping():
        redis_server.start()
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    return redis_server.url
