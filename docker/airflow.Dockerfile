# syntax=docker/dockerfile:1
#
# skewless Airflow image: Airflow 3.3.2 with skewless, from the same requirements.lock as the jobs
# image and the test suite (the lock pins apache-airflow==3.3.2 itself), plus OpenJDK 17: with
# spark.submit false (conf/docker.yaml) the tasks run Spark inside the Airflow worker process,
# and with spark.submit true SparkSubmitOperator calls the bundled `spark-submit`.
#
# It is built on python:3.11-slim rather than apache/airflow: that image installs Airflow with its
# own constraints file, which would have to be reconciled with our lock, and its Debian release
# decides whether a Java 17 package exists. Here every Python package is exactly the lock's.
#
#   docker build -f docker/airflow.Dockerfile -t skewless-airflow:dev .
#
# The entrypoint runs `airflow` (docker/entrypoint.sh): `docker run IMAGE scheduler` is
# `airflow scheduler`; docker/compose.yaml runs api-server, scheduler and dag-processor.
# The DAG folder is /opt/skewless/dags (dags/skewless_dags.py): it builds the DAGs from the
# registry that SKEWLESS_CONF names, and the spark-submit tasks find jobs/ beside it.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- build: requirements.lock (exact pins), the Postgres drivers, then skewless itself -----------
FROM ${PYTHON_IMAGE} AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src

COPY requirements.lock docker/requirements-postgres.txt ./
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install --no-deps -r requirements.lock -r requirements-postgres.txt
COPY pyproject.toml README.md ./
COPY src ./src
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install --no-deps . \
    && pip check \
    && python -c "import importlib.metadata as m, sys; sys.exit(m.version('apache-airflow') != '3.3.2')"

# ---- runtime -------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}

# Same system layer as docker/jobs.Dockerfile: Java 17 for Spark, tini, procps.
# Versions are not pinned: bookworm's security updates replace them, and a pin would break rebuilds.
# hadolint ignore=DL3008
RUN mkdir -p /usr/share/man/man1 \
    && apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        openjdk-17-jre-headless tini procps \
    && ln -s "/usr/lib/jvm/java-17-openjdk-$(dpkg --print-architecture)" /usr/lib/jvm/java-17 \
    && rm -rf /var/lib/apt/lists/*

# The same non-root user (uid/gid) as the jobs image, so both can write the shared volumes.
# Folders that compose mounts named volumes on exist here with that owner: Docker copies the
# ownership into a new, empty volume.
ARG SKEWLESS_UID=10001
RUN groupadd --gid "${SKEWLESS_UID}" skewless \
    && useradd --uid "${SKEWLESS_UID}" --gid skewless --create-home --shell /bin/bash skewless \
    && mkdir -p /var/lib/skewless/data /var/lib/skewless/offline \
        /opt/airflow/logs /opt/airflow/auth /opt/airflow/plugins \
    && chown -R skewless:skewless /var/lib/skewless /opt/airflow

COPY --from=build /opt/venv /opt/venv

ENV TZ=UTC \
    JAVA_HOME=/usr/lib/jvm/java-17 \
    PATH=/opt/venv/bin:$PATH \
    PYSPARK_PYTHON=/opt/venv/bin/python \
    PYSPARK_DRIVER_PYTHON=/opt/venv/bin/python \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    AIRFLOW_HOME=/opt/airflow \
    AIRFLOW__CORE__DAGS_FOLDER=/opt/skewless/dags \
    AIRFLOW__CORE__LOAD_EXAMPLES=False \
    AIRFLOW__CORE__DEFAULT_TIMEZONE=utc

WORKDIR /opt/skewless
COPY jobs ./jobs
COPY dags ./dags
COPY conf ./conf
COPY feature_defs ./feature_defs
COPY --chmod=0755 docker/entrypoint.sh /usr/local/bin/entrypoint.sh

USER ${SKEWLESS_UID}:${SKEWLESS_UID}
EXPOSE 8080
ENTRYPOINT ["tini", "--", "/usr/local/bin/entrypoint.sh", "airflow"]
CMD ["--help"]
