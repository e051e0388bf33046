"""Offline jobs: idempotent partition replacement, time travel, crashes, bad data, snapshots."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake

from skewless.errors import DataError
from skewless.manifest import Manifest
from skewless.offline.delta import delta_tables
from skewless.offline.jobs import run_view
from skewless.offline.schemas import view_schema
from skewless.runtime.settings import Settings
from tests.fault_hooks.sitecustomize import FAULT_ENV
from tests.helpers import deploy, write_parquet

pytestmark = pytest.mark.spark

REPO = Path(__file__).resolve().parents[2]
FAULT_HOOKS = REPO / "tests" / "fault_hooks"

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
        view:
          name: spend
          version: 1
          kind: aggregation
          entity: account
          source: payments
          ttl: 2d
          features:
            - {name: n_2d, function: count, window: 2d}
            - {name: total_2d, function: sum, column: amount, window: 2d, dtype: float64}
    """,
}

PAYMENTS = pa.schema(
    [("account_id", pa.string()), ("amount", pa.float64()), ("ts", pa.timestamp("us", tz="UTC"))]
)


def _ts(day: int, hour: int = 12) -> datetime:
    return datetime(2024, 5, day, hour, tzinfo=UTC)


def _payments(extra: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    rows = [
        {"account_id": "a", "amount": 10.0, "ts": _ts(1)},
        {"account_id": "a", "amount": 5.0, "ts": _ts(2)},
        {"account_id": "b", "amount": 7.0, "ts": _ts(2)},
    ]
    return rows + (extra or [])


def _setup(
    tmp_path: Path, rows: list[dict[str, Any]], schema: pa.Schema = PAYMENTS
) -> tuple[Settings, Manifest]:
    settings, manifest = deploy(tmp_path, TREE)
    write_parquet(Path(settings.data_root) / "payments", rows, schema)
    return settings, manifest


def _rows(
    spark: Any, settings: Settings, manifest: Manifest, version: int | None = None
) -> list[tuple[Any, ...]]:
    view = manifest.view("spend")
    frame = delta_tables(spark).read(settings.table_uri(view.table), view_schema(view), version=version)
    return sorted((r["account_id"], r["ds"], r["n_2d"], r["total_2d"]) for r in frame.collect())


def _version(settings: Settings, manifest: Manifest) -> int | None:
    from skewless.offline.catalog import table_version

    return table_version(settings.table_uri(manifest.view("spend").table))


def test_rerun_replaces_the_partition_and_time_travel_keeps_the_old_one(spark: Any, tmp_path: Path) -> None:
    settings, manifest = _setup(tmp_path, _payments())
    first = run_view(spark, settings, manifest, "spend", date(2024, 5, 2))
    before = _rows(spark, settings, manifest)
    assert before == [("a", date(2024, 5, 2), 2, 15.0), ("b", date(2024, 5, 2), 1, 7.0)]

    again = run_view(spark, settings, manifest, "spend", date(2024, 5, 2))
    assert _rows(spark, settings, manifest) == before  # one copy, not two
    assert again.table_version == first.table_version + 1

    # Late data arrives; the rerun replaces exactly that partition, the old version stays readable.
    write_parquet(
        Path(settings.data_root) / "payments",
        _payments([{"account_id": "a", "amount": 1.0, "ts": _ts(2, 23)}]),
        PAYMENTS,
    )
    run_view(spark, settings, manifest, "spend", date(2024, 5, 2))
    assert _rows(spark, settings, manifest)[0] == ("a", date(2024, 5, 2), 3, 16.0)
    assert _rows(spark, settings, manifest, version=first.table_version) == before
    # Any Delta reader opens the table: delta-rs sees the same rows.
    table = DeltaTable(settings.table_uri(manifest.view("spend").table))
    assert table.metadata().partition_columns == ["ds"]
    assert sorted(table.to_pyarrow_table().column("account_id").to_pylist()) == ["a", "b"]


def test_other_partitions_are_untouched_by_a_run(spark: Any, tmp_path: Path) -> None:
    settings, manifest = _setup(tmp_path, _payments())
    run_view(spark, settings, manifest, "spend", date(2024, 5, 1), date(2024, 5, 3))
    before = _rows(spark, settings, manifest)
    run_view(spark, settings, manifest, "spend", date(2024, 5, 2))
    assert _rows(spark, settings, manifest) == before
    # b drops out of the 2-day window on May 4: a tombstone row (all features null).
    run_view(spark, settings, manifest, "spend", date(2024, 5, 4))
    assert ("b", date(2024, 5, 4), None, None) in _rows(spark, settings, manifest)


def _job(
    args: list[str], settings: Settings, tmp_path: Path, fault: str | None = None
) -> subprocess.CompletedProcess[str]:
    conf = tmp_path / "conf.yaml"
    conf.write_text(
        f"defs: {settings.defs}\ndata_root: {settings.data_root}\noffline_root: {settings.offline_root}\n"
        "spark:\n  master: local[1]\n  conf:\n    spark.sql.shuffle.partitions: '2'\n"
    )
    # spark-submit finds Spark through the Python on PATH: use this virtualenv's.
    bin_dir = str(Path(sys.executable).parent)
    env = {
        **os.environ,
        "TZ": "UTC",
        "PYSPARK_PYTHON": sys.executable,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
    }
    env.pop(FAULT_ENV, None)
    if fault:  # tests/fault_hooks/sitecustomize.py installs the fault in the job's Python
        env[FAULT_ENV] = fault
        env["PYTHONPATH"] = os.pathsep.join([str(FAULT_HOOKS), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return subprocess.run(
        # The job's arguments are the `skewless` command line's: global options first.
        [*args[:2], "--conf", str(conf), *args[2:]],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )


def test_sigkill_before_commit_leaves_previous_version_and_rerun_succeeds(spark: Any, tmp_path: Path) -> None:
    settings, manifest = _setup(tmp_path, _payments())
    run_view(spark, settings, manifest, "spend", date(2024, 5, 1))
    version, before = _version(settings, manifest), _rows(spark, settings, manifest)

    killed = _job(
        [sys.executable, "jobs/run_view.py", "spend", "--ds", "2024-05-02"],
        settings,
        tmp_path,
        fault="kill-before-commit",
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    table_dir = Path(settings.table_uri(manifest.view("spend").table))
    assert _version(settings, manifest) == version
    assert _rows(spark, settings, manifest) == before  # readable, previous version

    # The same job under spark-submit (the cluster entry point) completes with no duplicates.
    spark_submit = Path(sys.executable).parent / "spark-submit"
    rerun = _job([str(spark_submit), "jobs/run_view.py", "spend", "--ds", "2024-05-02"], settings, tmp_path)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "spend: committed ds 2024-05-02 (2 rows)" in rerun.stdout
    assert _rows(spark, settings, manifest) == [
        ("a", date(2024, 5, 1), 1, 10.0),
        ("a", date(2024, 5, 2), 2, 15.0),
        ("b", date(2024, 5, 2), 1, 7.0),
    ]
    assert (table_dir / "ds=2024-05-02").is_dir()


def test_job_reports_bad_input_in_one_line(spark: Any, tmp_path: Path) -> None:
    settings, _ = _setup(tmp_path, _payments())
    result = _job([sys.executable, "jobs/run_view.py", "nope", "--ds", "2024-05-02"], settings, tmp_path)
    assert result.returncode == 1
    assert "error: unknown view 'nope'" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("rows", "schema", "column", "fragment"),
    [
        pytest.param(
            _payments([{"account_id": None, "amount": 3.0, "ts": _ts(2)}]),
            PAYMENTS,
            "account_id",
            "null entity key",
            id="null-key",
        ),
        pytest.param(
            [{"account_id": "a", "ts": _ts(2)}],
            pa.schema([("account_id", pa.string()), ("ts", pa.timestamp("us", tz="UTC"))]),
            "amount",
            "missing in",
            id="missing-column",
        ),
        pytest.param(
            [{"account_id": "a", "amount": 1.0, "ts": "2024-05-02 10:00:00"}],
            pa.schema([("account_id", pa.string()), ("amount", pa.float64()), ("ts", pa.string())]),
            "ts",
            "expected a timestamp, found string",
            id="timestamp-as-string",
        ),
        pytest.param(
            [{"account_id": 1, "amount": 1.0, "ts": _ts(2)}],
            pa.schema(
                [("account_id", pa.int64()), ("amount", pa.float64()), ("ts", pa.timestamp("us", tz="UTC"))]
            ),
            "account_id",
            "join key must be string, found bigint",
            id="key-of-wrong-type",
        ),
    ],
)
def test_bad_data_names_source_column_and_file_and_changes_nothing(
    spark: Any, tmp_path: Path, rows: list[dict[str, Any]], schema: pa.Schema, column: str, fragment: str
) -> None:
    settings, manifest = _setup(tmp_path, _payments())
    run_view(spark, settings, manifest, "spend", date(2024, 5, 1))
    version, before = _version(settings, manifest), _rows(spark, settings, manifest)
    write_parquet(Path(settings.data_root) / "payments", rows, schema)

    with pytest.raises(DataError) as caught:
        run_view(spark, settings, manifest, "spend", date(2024, 5, 1), date(2024, 5, 2))
    message = str(caught.value)
    assert "source 'payments'" in message
    assert f"column {column!r}" in message
    assert fragment in message
    assert str(Path(settings.data_root) / "payments") in message  # the path (or file) to look at
    assert _version(settings, manifest) == version
    assert _rows(spark, settings, manifest) == before


SNAPSHOT_TREE = {
    "defs.yaml": """
        entity:
          name: customer
          join_keys: {customer_id: int64}
        ---
        source:
          name: stats_raw
          path: stats
          format: delta
          timestamp: snapshot_ts
          timestamp_format: "yyyy-MM-dd HH:mm:ss"
          created_timestamp: exported_at
        ---
        source:
          name: stats_nocreated
          path: stats
          format: delta
          timestamp: snapshot_ts
          timestamp_format: "yyyy-MM-dd HH:mm:ss"
        ---
        view:
          name: stats
          version: 1
          kind: snapshot
          entity: customer
          source: stats_raw
          ttl: 2d
          features:
            - {name: orders, dtype: int64}
            - {name: value, dtype: float64, column: avg_value}
        ---
        view:
          name: stats_strict
          version: 1
          kind: snapshot
          entity: customer
          source: stats_nocreated
          ttl: 2d
          features:
            - {name: orders, dtype: int64}
    """,
}


def test_snapshot_view_copies_rows_by_event_date_from_a_delta_source(spark: Any, tmp_path: Path) -> None:
    settings, manifest = deploy(tmp_path, SNAPSHOT_TREE)
    rows = pa.table(
        {
            "customer_id": pa.array([1, 1, 2, 1], pa.int32()),
            "snapshot_ts": [
                "2024-05-01 23:00:00",
                "2024-05-02 00:00:00",
                "2024-05-02 08:00:00",
                "2024-05-02 00:00:00",
            ],
            "exported_at": pa.array(
                [_ts(2, 1), _ts(2, 1), _ts(2, 9), _ts(2, 3)], pa.timestamp("us", tz="UTC")
            ),
            "orders": pa.array([3, 4, 9, 5], pa.int32()),
            "avg_value": [1.5, 2.5, None, 2.75],
        }
    )
    write_deltalake(str(Path(settings.data_root) / "stats"), rows)
    result = run_view(spark, settings, manifest, "stats", date(2024, 5, 1), date(2024, 5, 2))
    assert result.rows == 4
    view = manifest.view("stats")
    frame = delta_tables(spark).read(settings.table_uri(view.table), view_schema(view))
    got = sorted(
        (r["customer_id"], r["ds"], r["feature_ts"], r["created_ts"], r["orders"], r["value"])
        for r in frame.collect()
    )
    naive = lambda d: d.replace(tzinfo=None)  # noqa: E731 - collect() returns naive UTC
    assert got == [
        (1, date(2024, 5, 1), datetime(2024, 5, 1, 23), naive(_ts(2, 1)), 3, 1.5),
        (1, date(2024, 5, 2), datetime(2024, 5, 2), naive(_ts(2, 1)), 4, 2.5),
        (1, date(2024, 5, 2), datetime(2024, 5, 2), naive(_ts(2, 3)), 5, 2.75),
        (2, date(2024, 5, 2), datetime(2024, 5, 2, 8), naive(_ts(2, 9)), 9, None),
    ]
    # Without a created timestamp the same two rows are ambiguous: a data error, nothing written.
    with pytest.raises(DataError, match=r"2 rows share keys \(customer_id=1\)"):
        run_view(spark, settings, manifest, "stats_strict", date(2024, 5, 2))
    assert delta_tables(spark).version(settings.table_uri(manifest.view("stats_strict").table)) is None


def test_failing_audit_commits_nothing_and_leaves_no_staged_files(spark: Any, tmp_path: Path) -> None:
    from skewless.offline.jobs import commit_view, compute_view, staged_rows

    settings, manifest = _setup(tmp_path, _payments())
    run_view(spark, settings, manifest, "spend", date(2024, 5, 1))
    version, before = _version(settings, manifest), _rows(spark, settings, manifest)
    seen: list[int] = []

    def gate(rows: Any, view: Any) -> None:
        seen.append(rows.count())
        raise DataError("audit failed", source=view.name)

    with pytest.raises(DataError, match="audit failed"):
        run_view(spark, settings, manifest, "spend", date(2024, 5, 2), gate=gate)
    assert seen == [2]  # the gate saw exactly the rows that would have been published
    assert _version(settings, manifest) == version
    assert _rows(spark, settings, manifest) == before
    table_dir = Path(settings.table_uri(manifest.view("spend").table))
    assert not list((table_dir / "_staging").glob("*/*"))

    # Staged in one process step, committed in another (the DAG's validate -> commit split).
    staged = compute_view(spark, settings, manifest, "spend", date(2024, 5, 2))
    assert _version(settings, manifest) == version
    from skewless.offline.jobs import StagedRun

    restored = StagedRun.from_json(staged.to_json())
    assert staged_rows(spark, restored).count() == 2
    result = commit_view(spark, restored)
    assert result.table_version == version + 1
    assert ("b", date(2024, 5, 2), 1, 7.0) in _rows(spark, settings, manifest)
