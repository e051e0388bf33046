"""Helpers shared by the test layers: write feature trees, configs and raw data."""

from __future__ import annotations

import textwrap
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from skewless.compile import compile_tree
from skewless.manifest import Manifest
from skewless.registry import publish_registry
from skewless.runtime.settings import Settings, SparkSettings


def write_tree(root: Path, files: Mapping[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))
    return root


def deploy(tmp_path: Path, files: Mapping[str, str]) -> tuple[Settings, Manifest]:
    """Write a feature tree, compile it and publish the registry under ``tmp_path``."""
    defs = write_tree(tmp_path / "defs", files)
    settings = Settings(
        defs=str(defs),
        data_root=str(tmp_path / "data"),
        offline_root=str(tmp_path / "offline"),
        spark=SparkSettings(master="local[2]"),
    )
    manifest = compile_tree(defs)
    publish_registry(settings.registry_uri, manifest)
    return settings, manifest


def write_parquet(
    path: Path,
    rows: Iterable[Mapping[str, Any]],
    schema: pa.Schema,
    partition_by: str | None = None,
) -> None:
    """Write rows as a Parquet dataset (hive-partitioned when ``partition_by`` is given)."""
    table = pa.Table.from_pylist(list(rows), schema=schema)
    path.mkdir(parents=True, exist_ok=True)
    if partition_by:
        pq.write_to_dataset(table, str(path), partition_cols=[partition_by])
    else:
        pq.write_table(table, str(path / "part-0.parquet"))


def process_running(pid: int) -> bool:
    """The process exists and is not a zombie (Linux /proc)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"
