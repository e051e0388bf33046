"""The one place that builds the SparkSession.

Local mode by default; under ``spark-submit`` the master and resources come from the submit
command and only skewless's semantic settings (UTC, microsecond timestamps) are applied.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from typing import TYPE_CHECKING

from skewless.errors import ConfigError, ConnectUnsupported
from skewless.runtime.settings import Settings

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

# Settings the semantics depend on (docs/semantics.md, Time); a user's conf cannot override them.
REQUIRED_CONF = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
    "spark.sql.parquet.int96RebaseModeInWrite": "CORRECTED",
    "spark.sql.parquet.datetimeRebaseModeInWrite": "CORRECTED",
}

# Defaults for local mode on a small machine; any of them can be overridden in the config.
LOCAL_DEFAULTS = {
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.shuffle.partitions": "8",
    "spark.sql.adaptive.enabled": "true",
    "spark.driver.memory": "4g",
    "spark.driver.extraJavaOptions": "-Duser.timezone=UTC",
    "spark.executor.extraJavaOptions": "-Duser.timezone=UTC",
    # Shuffle files stay on the local disk: compressing them costs CPU and saves no network
    # (measured: the 10M x 2M point-in-time join runs ~15% faster without it).
    "spark.shuffle.compress": "false",
    # Let AQE turn a sort-merge join into a hash join when every shuffled partition is small
    # enough to hash in memory: the join skips two sorts and memory stays bounded per partition.
    "spark.sql.adaptive.maxShuffledHashJoinLocalMapThreshold": "256m",
    # Reading a Delta snapshot lists its files explicitly; do not spin a job to list them.
    "spark.sql.sources.parallelPartitionDiscovery.threshold": "100000",
    "spark.sql.parquet.filterPushdown": "true",
}


def _under_spark_submit() -> bool:
    # spark-submit starts the Python driver with a gateway already running.
    return "PYSPARK_GATEWAY_PORT" in os.environ


def _use_utc_in_python() -> None:
    # collect() turns timestamps into naive datetimes in the *process* zone; skewless time is UTC.
    if os.environ.get("TZ") != "UTC":
        os.environ["TZ"] = "UTC"
        time.tzset()


def get_spark(settings: Settings | None = None, app_name: str = "skewless") -> SparkSession:
    """Return the active session, or build one from ``settings``."""
    from pyspark.sql import SparkSession

    _use_utc_in_python()
    if settings is not None and is_connect_url(settings.spark.master):
        return _connect(settings)
    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    settings = settings or Settings()
    builder = SparkSession.builder.appName(app_name)
    if not _under_spark_submit():
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        # Python workers (foreachPartition, UDFs) run this interpreter, so they see the same
        # installed packages; otherwise Spark starts whatever `python3` is first on PATH.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        builder = builder.master(settings.spark.master)
        local_dir = tempfile.mkdtemp(prefix="skewless-spark-")
        for key, value in {**LOCAL_DEFAULTS, "spark.local.dir": local_dir}.items():
            builder = builder.config(key, value)
    conf = {**settings.spark.conf, **REQUIRED_CONF}
    if not _under_spark_submit():
        conf.update(_ship_py_files(conf))
    for key, value in conf.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark


def _ship_py_files(conf: dict[str, str]) -> dict[str, str]:
    """``spark.submit.pyFiles`` from the config also outside spark-submit (docs/cluster.md).

    spark-submit ships ``--py-files`` by adding them to ``spark.files``; a driver started from
    Python (the CLI, a notebook) gets the same from this, so executors can import what it names.
    """
    py_files = [path for path in conf.get("spark.submit.pyFiles", "").split(",") if path]
    if not py_files:
        return {}
    files = [path for path in conf.get("spark.files", "").split(",") if path]
    return {"spark.files": ",".join([*files, *(path for path in py_files if path not in files)])}


# --- Spark Connect (docs/cluster.md#spark-connect) -------------------------------------------

CONNECT_SCHEME = "sc://"


def is_connect_url(master: str) -> bool:
    return master.startswith(CONNECT_SCHEME)


def is_connect(spark: SparkSession) -> bool:
    """True for a Spark Connect session (``SparkSession.builder.remote("sc://...")``)."""
    return type(spark).__module__.startswith("pyspark.sql.connect")


def require_classic(spark: SparkSession, operation: str, route: str) -> None:
    """Refuse ``operation`` on a Spark Connect session, naming what to use instead."""
    if is_connect(spark):
        raise ConnectUnsupported(
            f"{operation} cannot run over Spark Connect (it needs a classic Spark session: "
            f"its Python runs on the executors, or it calls the JVM); {route} (docs/cluster.md#spark-connect)"
        )


def _connect(settings: Settings) -> SparkSession:
    """A Spark Connect session to ``spark.master`` (``sc://host:port``) with skewless's settings.

    PySpark switches the whole process to Connect mode (``pyspark.sql.functions`` then builds
    Connect columns): a process uses either Spark Connect or a classic session, not both. The
    server owns the master and every static setting; only runtime SQL settings are set here.
    """
    from pyspark.sql import SparkSession

    spark = SparkSession.builder.remote(settings.spark.master).getOrCreate()
    for key, value in {**settings.spark.conf, **REQUIRED_CONF}.items():
        try:
            spark.conf.set(key, value)
        except Exception as exc:  # a static setting: the server's, not the client's
            raise ConfigError(
                f"spark.conf.{key}: cannot be set over Spark Connect ({str(exc).splitlines()[0][:200]}); "
                "set it where the Connect server starts"
            ) from None
    return spark
