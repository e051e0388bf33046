"""Airflow DAGs for every view of the deployed skewless registry.

Built by :func:`skewless.dag_factory.build_dags` from the registry JSON named by the skewless
config (``SKEWLESS_CONF``, else conf/local.yaml): ``skewless__<view>`` nightly and
``skewless__backfill``. No registry deployed: no DAGs. Parsing reads one JSON file and imports
neither Spark nor Great Expectations; ``skewless apply`` is what changes these DAGs, start dates
included (recorded in the registry, so parsing on any day builds the same DAGs).
"""

from __future__ import annotations

from pathlib import Path

from skewless.dag_factory import build_dags

globals().update(build_dags(jobs_dir=Path(__file__).resolve().parents[1] / "jobs"))
