# Two commands on a fresh machine: `make demo` and `make test`.
# Every target installs what it needs itself (Python deps into .venv, redis-server from Debian).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.9
STAMP := $(VENV)/.installed
export TZ := UTC
export SPARK_LOCAL_IP := 127.0.0.1
export PYTHONHASHSEED := 0

.PHONY: help install redis-server chromium postgresql airflow lint typecheck test test-unit test-cluster test-airflow-stack pyfiles demo bench lock clean

help:
	@echo "make demo   - run the whole pipeline end to end on embedded defaults"
	@echo "make test   - install everything and run lint, type checks and all tests"
	@echo "make bench  - run the benchmarks, write bench/report.json"
	@echo "make airflow - Airflow with PostgreSQL, scheduler and DAG processor on this machine (Ctrl-C stops it)"

install: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "uv==$(UV_VERSION)"
	$(BIN)/uv pip sync --python $(BIN)/python --quiet requirements.lock
	$(BIN)/uv pip install --python $(BIN)/python --quiet --no-deps -e .
	touch $(STAMP)

# Tests and the demo run a private redis-server; install Debian's package when it is missing.
redis-server:
	@command -v redis-server >/dev/null || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq redis-server >/dev/null; }
	@command -v redis-server >/dev/null

# The catalog site test (tests/spark/test_catalog_site.py) drives Debian's chromium through
# Playwright (Playwright's own browser download is not reachable); install it when missing.
chromium:
	@[ -x /usr/bin/chromium ] || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }
	@[ -x /usr/bin/chromium ]

# The Airflow stack (`make airflow`, tests/stack) runs a private PostgreSQL cluster from Debian's
# server binaries; install them when missing (the package's own cluster is not used).
PG_BIN := $(firstword $(wildcard /usr/lib/postgresql/*/bin/initdb))
postgresql:
	@[ -n "$(PG_BIN)" ] || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq postgresql >/dev/null; }
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null

lint: install
	$(BIN)/ruff check src jobs dags tests bench scripts
	$(BIN)/ruff format --check src jobs dags tests bench scripts

typecheck: install
	$(BIN)/mypy

# Three pytest sessions: the cluster and Airflow-stack layers start their own processes and
# Airflow homes (about 11 and 14 minutes on 2 cores; the README's test layers).
test: install redis-server chromium postgresql lint typecheck
	$(BIN)/pytest --ignore=tests/cluster --ignore=tests/stack
	$(BIN)/pytest tests/cluster
	$(BIN)/pytest tests/stack

test-unit: install
	$(BIN)/pytest tests/unit

# A Spark standalone master + 2 workers on loopback; the jobs there equal local mode (docs/cluster.md).
test-cluster: install redis-server
	$(BIN)/pytest tests/cluster

# The production-shaped Airflow stack: PostgreSQL, api-server, scheduler, dag-processor (docs/airflow.md).
test-airflow-stack: install redis-server postgresql
	$(BIN)/pytest tests/stack

# skewless for spark-submit --py-files / spark.submit.pyFiles (docs/cluster.md).
pyfiles: install
	$(BIN)/python scripts/build_pyfiles.py dist/skewless.zip

# Airflow as in production on this machine (PostgreSQL, api-server, scheduler, dag-processor):
# prints the UI address and login, runs until Ctrl-C (docs/airflow.md).
airflow: install redis-server postgresql
	$(BIN)/python scripts/airflow_stack.py

demo: install redis-server
	$(BIN)/python scripts/demo.py

bench: install redis-server
	$(BIN)/python -m bench.run --out bench/report.json

# Regenerate the pinned lock file after editing pyproject.toml.
lock: install
	$(BIN)/uv pip compile pyproject.toml --extra dev --python-version 3.11 --quiet -o requirements.lock

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build dist *.egg-info src/*.egg-info
