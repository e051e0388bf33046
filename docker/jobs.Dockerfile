# syntax=docker/dockerfile:1
#
# skewless jobs image: the `skewless` CLI, the spark-submit entry points (jobs/), the DAG file,
# conf/ and feature_defs/, on Python 3.11 and OpenJDK 17 (Debian bookworm).
#
# Build from the repository root (the context is the root; see /.dockerignore):
#
#   docker build -f docker/jobs.Dockerfile -t skewless-jobs:dev .
#
# Run: the entrypoint runs the skewless CLI, or any program named first (docker/entrypoint.sh):
#
#   docker run --rm skewless-jobs:dev validate
#   docker run --rm -e SKEWLESS_CONF=/opt/skewless/conf/docker.yaml \
#       -v skewless-offline:/var/lib/skewless/offline -v skewless-data:/var/lib/skewless/data \
#       skewless-jobs:dev backfill merchant_txn --start 2024-01-01 --end 2024-03-01
#
# spark-submit. pyspark (pinned in requirements.lock) ships Spark 4.2.0 and its launchers, so
# `spark-submit` is on PATH and the jobs/ entry points are at /opt/skewless/jobs.
#
# * Local mode (the CLI above; conf/docker.yaml sets spark.master local[2]): no JARs needed.
#   Spark writes Parquet and the driver commits it through delta-rs (README, "Embedded
#   default"). That writer needs a local offline_root, which is why the compose stack keeps the
#   tables on a shared volume rather than on its S3 (MinIO).
#
# * A cluster: submit jobs/*.py with the Delta Lake JARs on the classpath; skewless then writes
#   through delta-spark (format("delta") + replaceWhere), which also handles s3:// tables.
#   Executors must import skewless: `--py-files` a zip of src/skewless, or executors started
#   from this image where the cluster schedules containers. On a cluster's Spark 4.0 (README,
#   conf/cluster.example.yaml):
#
#     spark-submit --master yarn \
#       --packages io.delta:delta-spark_2.13:4.0.0 \
#       --conf spark.sql.extensions=io.delta.sql.DeltaSparkSessionExtension \
#       --conf spark.sql.catalog.spark_catalog=org.apache.spark.sql.delta.catalog.DeltaCatalog \
#       --py-files skewless.zip \
#       jobs/run_view.py --conf conf/cluster.yaml merchant_txn --ds 2024-03-02
#
#   The same from this image as the submitting client (client mode; for YARN also mount the
#   cluster's client configuration and set HADOOP_CONF_DIR; ./deploy holds cluster.yaml and
#   skewless.zip):
#
#     docker run --rm -v "$PWD/deploy:/deploy:ro" skewless-jobs:dev spark-submit \
#       --master yarn --deploy-mode client --packages <delta artifact, below> <the two --conf above> \
#       --py-files /deploy/skewless.zip \
#       /opt/skewless/jobs/run_view.py --conf /deploy/cluster.yaml merchant_txn --ds 2024-03-02
#
#   The Delta artifact must match the driver's Spark: delta-spark_2.13:4.0.0 is built for Spark
#   4.0. Here the driver is the bundled Spark 4.2.0, for which the pinned delta-spark 4.4.1
#   Python package names io.delta:delta-spark_4.2_2.13:4.4.1 (what
#   delta.configure_spark_with_delta_pip adds).
#   s3:// tables through Hadoop's S3A: also org.apache.hadoop:hadoop-aws:3.5.0 (the Hadoop client
#   bundled with Spark 4.2.0) in --packages, spark.hadoop.fs.s3.impl=
#   org.apache.hadoop.fs.s3a.S3AFileSystem, and for the compose stack's MinIO
#   spark.hadoop.fs.s3a.endpoint=http://minio:9000 and spark.hadoop.fs.s3a.path.style.access=true.
#   --packages downloads into ~/.ivy2* at submit time: the user's HOME below is writable.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- build: a virtualenv with exactly the pins of requirements.lock, then skewless itself ------
FROM ${PYTHON_IMAGE} AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src

# The lock is a complete resolution (uv pip compile): --no-deps installs exactly its pins and
# nothing else; pip check then proves the set is consistent.
COPY requirements.lock ./
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install --no-deps -r requirements.lock
COPY pyproject.toml README.md ./
COPY src ./src
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install --no-deps . \
    && pip check

# ---- runtime -------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}

# Java 17 for Spark (Debian's headless JRE; bookworm is the Debian release that packages 17),
# tini as PID 1 (signals reach the JVM, zombies are reaped), procps for Spark's scripts. The
# man1 folder: the JRE's postinst links its man pages there, and slim images have none.
# Versions are not pinned: bookworm's security updates replace them, and a pin would break rebuilds.
# hadolint ignore=DL3008
RUN mkdir -p /usr/share/man/man1 \
    && apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        openjdk-17-jre-headless tini procps \
    && ln -s "/usr/lib/jvm/java-17-openjdk-$(dpkg --print-architecture)" /usr/lib/jvm/java-17 \
    && rm -rf /var/lib/apt/lists/*

# One non-root user, with the same uid/gid in the Airflow image: both write the shared volumes.
ARG SKEWLESS_UID=10001
RUN groupadd --gid "${SKEWLESS_UID}" skewless \
    && useradd --uid "${SKEWLESS_UID}" --gid skewless --create-home --shell /bin/bash skewless \
    && mkdir -p /var/lib/skewless/data /var/lib/skewless/offline \
    && chown -R skewless:skewless /var/lib/skewless

COPY --from=build /opt/venv /opt/venv

ENV TZ=UTC \
    JAVA_HOME=/usr/lib/jvm/java-17 \
    PATH=/opt/venv/bin:$PATH \
    PYSPARK_PYTHON=/opt/venv/bin/python \
    PYSPARK_DRIVER_PYTHON=/opt/venv/bin/python \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1

# Code and definitions are root-owned (read-only to the user); data lives under /var/lib/skewless.
WORKDIR /opt/skewless
COPY jobs ./jobs
COPY dags ./dags
COPY conf ./conf
COPY feature_defs ./feature_defs
COPY --chmod=0755 docker/entrypoint.sh /usr/local/bin/entrypoint.sh

USER ${SKEWLESS_UID}:${SKEWLESS_UID}
ENTRYPOINT ["tini", "--", "/usr/local/bin/entrypoint.sh", "skewless"]
CMD ["--help"]
