"""A small deployment for the DAG tests: two views, a config file naming them, raw events."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pyarrow as pa

from skewless.manifest import Manifest
from skewless.runtime.settings import Settings
from tests.helpers import deploy

START_DATE = date(2024, 1, 1)

TREE = {
    "defs.yaml": """
        entity:
          name: account
          join_keys: {account_id: string}
        ---
        source:
          name: payments
          path: payments
          format: parquet
          timestamp: ts
        ---
        source:
          name: scores_raw
          path: scores
          format: parquet
          timestamp: ts
        ---
        view:
          name: spend
          version: 1
          kind: aggregation
          entity: account
          source: payments
          ttl: 30d
          features:
            - {name: n_2d, function: count, window: 2d}
            - {name: total_2d, function: sum, column: amount, window: 2d, dtype: float64}
          expectations:
            - {feature: total_2d, between: [0, 1000]}
            - {feature: n_2d, not_null: true}
        ---
        view:
          name: scores
          version: 2
          kind: snapshot
          entity: account
          source: scores_raw
          ttl: 1d
          features:
            - {name: score, dtype: float64}
    """,
}

PAYMENTS = pa.schema(
    [("account_id", pa.string()), ("amount", pa.float64()), ("ts", pa.timestamp("us", tz="UTC"))]
)


def deploy_with_conf(
    tmp_path: Path, *, redis_url: str | None = None, extra: str = "", tree: dict[str, str] | None = None
) -> tuple[Settings, Manifest, Path]:
    """Deploy :data:`TREE` (or ``tree``) under ``tmp_path`` and write the config file the DAGs read."""
    settings, manifest = deploy(tmp_path, tree or TREE)
    lines = [
        f"defs: {settings.defs}",
        f"data_root: {settings.data_root}",
        f"offline_root: {settings.offline_root}",
        *([f"redis_url: {redis_url}"] if redis_url else []),
        "spark:",
        "  master: local[2]",
        "airflow:",
        f"  start_date: {START_DATE.isoformat()}",
    ]
    conf = tmp_path / "skewless.yaml"
    conf.write_text("\n".join(lines) + "\n" + extra)
    return settings, manifest, conf
