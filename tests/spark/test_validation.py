"""The Great Expectations gate on staged rows, and feature statistics with drift (real Spark, Delta)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from skewless.errors import DriftDetected, ValidationFailed
from skewless.manifest import ExpectationSpec
from skewless.offline.catalog import table_version
from skewless.offline.jobs import run_view
from skewless.offline.schemas import view_schema
from skewless.orchestration import run_range
from skewless.runtime.settings import Settings, ValidationSettings
from skewless.validate.gate import validate_rows
from skewless.validate.psi import bin_edges, histogram, psi
from skewless.validate.stats import read_stats, record_stats
from tests.helpers import deploy, write_parquet

pytestmark = pytest.mark.spark

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
          ttl: 2d
          features:
            - {name: n_2d, function: count, window: 2d}
            - {name: total_2d, function: sum, column: amount, window: 2d, dtype: float64}
          expectations:
            - {feature: total_2d, between: [0, 100]}
            - {feature: n_2d, not_null: true}
            - {feature: total_2d, max_null_fraction: 0}
        ---
        view:
          name: scores
          version: 1
          kind: snapshot
          entity: account
          source: scores_raw
          ttl: 1d
          features:
            - {name: score, dtype: float64}
            - {name: segment, dtype: string}
    """,
}

PAYMENTS = pa.schema(
    [("account_id", pa.string()), ("amount", pa.float64()), ("ts", pa.timestamp("us", tz="UTC"))]
)
SCORES = pa.schema(
    [
        ("account_id", pa.string()),
        ("score", pa.float64()),
        ("segment", pa.string()),
        ("ts", pa.timestamp("us", tz="UTC")),
    ]
)
DAY = date(2024, 5, 1)


def _at(day: date, hour: int = 12) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


def _reports(settings: Settings, view: str) -> list[dict[str, Any]]:
    folder = Path(settings.offline_root) / "_reports" / "validation" / view
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]


def test_tombstones_pass_value_expectations_and_a_violation_commits_nothing(
    spark: Any, tmp_path: Path
) -> None:
    settings, manifest = deploy(tmp_path, TREE)
    raw = Path(settings.data_root) / "payments"
    write_parquet(
        raw,
        [
            {"account_id": "a", "amount": 10.0, "ts": _at(DAY)},
            {"account_id": "b", "amount": 20.0, "ts": _at(DAY)},
            {"account_id": "a", "amount": 5.0, "ts": _at(DAY + timedelta(days=2))},
        ],
        PAYMENTS,
    )
    # ds 3: b drops out (a tombstone, all features null) while a has a value; both pass.
    for offset in range(3):
        day = DAY + timedelta(days=offset)
        run_range(spark, settings, manifest, "spend", day, stats=False)
    report = _reports(settings, "spend")[-1]
    assert report["success"]
    assert report["rows"] == 2
    assert report["evaluated"] == 6
    not_null = next(c for c in report["checks"] if c["name"] == "not_null(n_2d)")
    assert not_null["result"]["element_count"] == 1  # the tombstone row is not evaluated

    uri = settings.table_uri(manifest.view("spend").table)
    version = table_version(uri)
    # A new file of the next day's events (the earlier files stay: their days are unchanged).
    new_day = pa.Table.from_pylist(
        [{"account_id": "a", "amount": 500.0, "ts": _at(DAY + timedelta(days=3))}], PAYMENTS
    )
    pq.write_table(new_day, raw / "part-1.parquet")
    day = DAY + timedelta(days=3)
    with pytest.raises(ValidationFailed) as caught:
        run_range(spark, settings, manifest, "spend", day, stats=False)
    message = str(caught.value)
    assert "view 'spend' ds 2024-05-04: 1 of 6 expectations failed" in message
    assert "between(total_2d, 0..100) [expectations[0], rows with a value (tombstones excluded)]" in message
    assert "1 of 1 values outside the range, e.g. 505.0" in message
    failed = _reports(settings, "spend")[-1]
    assert not failed["success"]
    assert failed["start"] == failed["end"] == "2024-05-04"
    assert str(Path(settings.offline_root) / "_reports" / "validation" / "spend") in message
    assert table_version(uri) == version  # nothing committed
    assert not any((Path(uri) / "_staging").iterdir())  # staged rows discarded


def test_default_checks_catch_duplicates_null_keys_and_misdated_rows(spark: Any, tmp_path: Path) -> None:
    settings, manifest = deploy(tmp_path, TREE)
    view = manifest.view("spend")
    boundary = datetime(2024, 5, 2)
    rows = spark.createDataFrame(
        [
            ("a", DAY, boundary, boundary, 1, 3.0),
            ("a", DAY, boundary, boundary, 2, 4.0),
            (None, DAY, boundary, boundary, 1, 1.0),
            ("c", DAY, boundary + timedelta(hours=1), boundary, 1, 1.0),
            ("d", DAY, boundary, boundary, None, None),  # tombstone
        ],
        view_schema(view),
    )
    report = validate_rows(rows, view, settings, DAY, DAY, raise_on_failure=False)
    failed = {r.check.name: r.observed for r in report.failures}
    assert failed == {
        "not_null(account_id)": "1 of 5 rows are null",
        "unique(account_id, ds)": (
            '2 of 5 rows share their account_id, ds with another row, e.g. {"account_id": "a", '
            '"ds": "2024-05-01"}, {"account_id": "a", "ds": "2024-05-01"}'
        ),
        "equal(feature_ts, ds + 1 day + 0s)": (
            "1 of 5 rows differ, e.g. feature_ts=2024-05-02 01:00:00 but ds + 1 day + 0s=2024-05-02 00:00:00"
        ),
    }

    # Equal expectations (GE keeps one of them in a suite) still each get their result.
    repeated = view.model_copy(
        update={
            "expectations": (
                ExpectationSpec(feature="n_2d", not_null=True),
                ExpectationSpec(feature="n_2d", max_null_fraction=0),
                ExpectationSpec(feature="n_2d", not_null=True),
            )
        }
    )
    report = validate_rows(rows, repeated, settings, DAY, DAY, raise_on_failure=False)
    assert [(r.check.origin, r.success) for r in report.results[3:]] == [
        ("expectations[0]", True),
        ("expectations[1]", True),
        ("expectations[2]", True),
    ]

    snapshot = manifest.view("scores")
    misdated = spark.createDataFrame(
        [("a", DAY, datetime(2024, 5, 2, 0, 0), datetime(2024, 5, 3), 1.0, "x")], view_schema(snapshot)
    )
    report = validate_rows(misdated, snapshot, settings, DAY, DAY, raise_on_failure=False)
    assert [r.check.name for r in report.failures] == ["equal(to_date(feature_ts), ds)"]


def _scores(days: list[date], values: list[float | None]) -> list[dict[str, Any]]:
    return [
        {"account_id": f"k{i}", "score": v, "segment": None if v is None else "s", "ts": _at(day)}
        for day in days
        for i, v in enumerate(values)
    ]


def test_statistics_and_drift_per_partition(spark: Any, tmp_path: Path) -> None:
    settings, manifest = deploy(tmp_path, TREE)
    view = manifest.view("scores")
    stable = [1.0, 1.0, 2.0, 2.0, None]
    days = [DAY + timedelta(days=i) for i in range(8)]
    shifted_day = DAY + timedelta(days=8)
    shifted = [2.0, 5.0, 5.0, 5.0, 5.0]
    write_parquet(
        Path(settings.data_root) / "scores", _scores(days, stable) + _scores([shifted_day], shifted), SCORES
    )
    strict = settings.model_copy(
        update={"validation": ValidationSettings(drift_psi_fail=1.0, drift_min_values=1)}
    )
    done = run_range(spark, strict, manifest, "scores", days[0], days[-1])
    assert done.validation is not None
    assert done.validation.success
    assert done.stats is not None
    assert done.stats.table_version is not None
    statuses = {(s.ds, s.feature): s.drift_status for s in done.stats.stats}
    assert statuses[(days[0], "score")] == "no_reference"
    assert all(statuses[(d, "score")] == "ok" for d in days[1:])
    assert all(s.psi == pytest.approx(0.0, abs=1e-9) for s in done.stats.stats if s.ds > days[0] and s.psi)

    run_view(spark, strict, manifest, "scores", shifted_day)
    with pytest.raises(DriftDetected, match=r"2024-05-09 score: PSI \d+\.\d+ against 7 reference day"):
        record_stats(spark, strict, view, shifted_day)
    # The statistics are written before the drift fails the step.
    stored = read_stats(spark, settings, view, days[0], shifted_day).collect()
    rows = {(r["ds"], r["feature"]): r for r in stored}
    assert len(rows) == 9 * 2
    score = rows[(shifted_day, "score")]
    assert (score["rows"], score["non_null"], score["null_rate"]) == (5, 5, 0.0)
    summary = (score["mean"], score["min"], score["max"], score["p50"], score["p99"])
    assert summary == (4.4, 2.0, 5.0, 5.0, 5.0)
    assert score["stddev"] == pytest.approx(1.3416407865)
    assert score["drift_status"] == "fail"
    assert score["reference_days"] == 7
    edges = bin_edges([1.0, 2.0])  # the reference deciles of a half-1, half-2 window
    expected = psi(histogram(stable * 7, edges), histogram(shifted, edges))
    assert score["psi"] == pytest.approx(expected)
    segment = rows[(days[0], "segment")]
    assert (segment["rows"], segment["non_null"], segment["null_rate"], segment["mean"]) == (5, 4, 0.2, None)
    assert segment["drift_status"] is None

    # Rerunning a ds replaces its statistics (no duplicates); with the default settings five
    # values are too few to alert on, the PSI is kept all the same.
    record_stats(spark, settings, view, shifted_day)
    again = read_stats(spark, settings, view, shifted_day, shifted_day).collect()
    assert sorted(r["feature"] for r in again) == ["score", "segment"]
    assert {r["drift_status"] for r in again} == {"too_few_values", None}
    assert {r["psi"] for r in again} == {score["psi"], None}


@pytest.mark.redis
def test_cli_run_is_gated_and_submit_steps_hand_the_staged_run_on_through_a_file(
    spark: Any, tmp_path: Path, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from skewless.cli import main, run_as

    settings, manifest = deploy(tmp_path, TREE)
    raw = Path(settings.data_root) / "payments"
    ok = {"account_id": "a", "amount": 10.0, "ts": _at(DAY)}
    write_parquet(
        raw, [ok, {"account_id": "a", "amount": 900.0, "ts": _at(DAY + timedelta(days=2))}], PAYMENTS
    )
    conf = tmp_path / "conf.yaml"
    conf.write_text(
        f"defs: {settings.defs}\ndata_root: {settings.data_root}\noffline_root: {settings.offline_root}\n"
        f"redis_url: {redis_url}\n"
    )
    uri = settings.table_uri(manifest.view("spend").table)

    assert main(["--conf", str(conf), "run", "spend", "--ds", str(DAY)]) == 0
    assert "spend: committed ds 2024-05-01 (1 rows)" in capsys.readouterr().out
    assert main(["--conf", str(conf), "run", "spend", "--ds", "2024-05-03"]) == 1
    err = capsys.readouterr().err
    assert "error: view 'spend' ds 2024-05-03: 1 of 6 expectations failed" in err
    assert table_version(uri) == 1

    # `skewless task STEP` (jobs/view_task.py): the steps spark-submit runs one by one when
    # spark.submit is true.
    def step(task: str, day: str) -> int:
        return run_as("task", ["--conf", str(conf), task, "spend", "--start", day, "--end", day])

    assert [step(t, "2024-05-02") for t in ("compute", "validate", "commit", "materialize", "stats")] == [
        0
    ] * 5
    assert table_version(uri) == 2
    handoff = Path(settings.offline_root) / "_runs" / "spend" / "2024-05-02_2024-05-02.staged.json"
    assert json.loads(handoff.read_text())["view"] == "spend"
    assert step("compute", "2024-05-03") == 0
    assert step("validate", "2024-05-03") == 1
    assert step("commit", "2024-05-03") == 1
    assert "were discarded after a failed validation" in capsys.readouterr().err
    assert table_version(uri) == 2


def test_the_counting_pass_never_changes_a_verdict(spark: Any, tmp_path: Path) -> None:
    """The cheap first-pass forms of `unique` and `columns_equal` only decide when they pass."""
    from pyspark.sql import functions as F

    from skewless.validate.gate import evaluate
    from skewless.validate.suite import Check

    _, manifest = deploy(tmp_path, TREE)
    view = manifest.view("scores")
    moment = datetime(2024, 5, 1, 12)

    def rows(pairs: list[tuple[str | None, str | None]]) -> Any:
        return spark.createDataFrame([(a, DAY, moment, moment, 1.0, b) for a, b in pairs], view_schema(view))

    unique = Check("unique", ("account_id", "segment"), "default")
    equal = Check("columns_equal", ("account_id", "segment"), "default")

    # Two different rows whose 64-bit hashes collide (a null leaves Spark's hash unchanged):
    # the counting pass sees one distinct hash for two rows, the full check finds them distinct.
    colliding = rows([("x", None), (None, "x")])
    hashes = colliding.select(F.xxhash64("account_id", "segment").alias("h")).distinct().count()
    assert hashes == 1
    _, (result,) = evaluate(colliding, view, [unique])
    assert (result.success, result.observed) == (
        True,
        "0 of 2 rows share their account_id, segment with another row",
    )

    _, (result,) = evaluate(rows([("x", "y"), ("x", "y"), ("x", None)]), view, [unique])
    assert (result.success, result.result["unexpected_count"]) == (False, 2)

    # Both null: ignored by GE's pair check; equal values pass; a difference fails.
    _, (result,) = evaluate(rows([(None, None), ("x", "x")]), view, [equal])
    assert (result.success, result.observed) == (True, "0 of 2 rows differ")
    _, (result,) = evaluate(rows([("x", "x"), ("x", "y")]), view, [equal])
    assert (result.success, result.observed) == (False, "1 of 2 rows differ, e.g. account_id=x but segment=y")
    # One side null is a difference, for GE's pair check as for the counting form.
    _, (result,) = evaluate(rows([("x", None)]), view, [equal])
    assert (result.success, result.observed) == (
        False,
        "1 of 1 rows differ, e.g. account_id=x but segment=None",
    )
