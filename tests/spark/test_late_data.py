"""Late and corrected raw data (docs/semantics.md, "Late and corrected data"): Spark, Delta, Redis.

A 30-day backfill, then a file of late events for a day 10 days back and a rewritten file that
corrects a value two days later: ``status`` lists the stale range, the documented repair
(``skewless backfill VIEW --start --end`` as ``status`` prints it) makes the table equal a
from-scratch backfill, and the training set and the online answers follow.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from skewless.cli import main
from skewless.manifest import Manifest
from skewless.offline.delta import delta_tables
from skewless.offline.fingerprints import CHANGED
from skewless.offline.inputs import inspect_input
from skewless.offline.jobs import days_between, run_view
from skewless.offline.schemas import view_schema
from skewless.offline.status import view_status
from skewless.online.client import OnlineClient
from skewless.online.materialize import materialize
from skewless.orchestration import commit_task, compute_task, validate_task
from skewless.pit.training_set import build_training_set
from skewless.plan.planner import DateRange
from skewless.runtime.settings import LateDataSettings, Settings
from tests.helpers import deploy

pytestmark = [pytest.mark.spark]

WINDOW = 5  # the longest window
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
          ttl: 7d
          features:
            - {name: n_3d, function: count, window: 3d}
            - {name: total_5d, function: sum, column: amount, window: 5d, dtype: float64}
            - {name: last_amount, function: last, column: amount, window: 5d, dtype: float64}
    """,
}
FEATURES = ("n_3d", "total_5d", "last_amount")
RAW = pa.schema([("account_id", pa.string()), ("amount", pa.float64()), ("ts", pa.timestamp("us", tz="UTC"))])


def _at(day: date, hour: int) -> datetime:
    return datetime.combine(day, datetime.min.time(), tzinfo=UTC) + timedelta(hours=hour)


def _day_rows(index: int, day: date) -> list[dict[str, Any]]:
    rows = [{"account_id": "a", "amount": float(index + 1), "ts": _at(day, 9)}]
    if index % 2 == 0:
        rows.append({"account_id": "b", "amount": 2.5 * index, "ts": _at(day, 10)})
    if index % 9 == 0:  # c comes and goes: tombstones
        rows.append({"account_id": "c", "amount": 7.0, "ts": _at(day, 11)})
    return rows


def _write(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=RAW), str(path))


def _raw(settings: Settings, days: list[date]) -> Path:
    """One file per day of events, like an hourly or daily landing job writes them."""
    folder = Path(settings.data_root) / "payments"
    for index, day in enumerate(days):
        _write(folder / f"part-{day}.parquet", _day_rows(index, day))
    return folder


def _table(spark: Any, settings: Settings, manifest: Manifest) -> list[dict[str, Any]]:
    view = manifest.view("spend")
    frame = delta_tables(spark).read(settings.table_uri(view.table), view_schema(view))
    return sorted((r.asDict() for r in frame.collect()), key=lambda r: (r["ds"], r["account_id"]))


def _without_created(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in row.items() if k != "created_ts"} for row in rows]


def _scratch(settings: Settings, tmp_path: Path, name: str) -> Settings:
    """The same raw data and registry, another offline root: a from-scratch backfill."""
    return settings.model_copy(
        update={"offline_root": str(tmp_path / name), "registry": settings.registry_uri}
    )


def _conf(tmp_path: Path, settings: Settings) -> str:
    conf = tmp_path / "conf.yaml"
    conf.write_text(
        f"defs: {settings.defs}\ndata_root: {settings.data_root}\noffline_root: {settings.offline_root}\n"
        f"redis_url: {settings.redis_url}\n"
    )
    return str(conf)


@pytest.mark.redis
def test_late_and_corrected_data_are_repaired_to_a_from_scratch_backfill(
    spark: Any, tmp_path: Path, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    settings, manifest = deploy(tmp_path, TREE)
    settings = settings.model_copy(update={"redis_url": redis_url})
    now = datetime.now(UTC)
    last = now.date() - timedelta(days=1)  # the latest ds available now
    days = days_between(last - timedelta(days=29), last)
    folder = _raw(settings, days)
    run_view(spark, settings, manifest, "spend", days[0], last)
    materialize(spark, settings, manifest, "spend", days[0], last)
    before = _table(spark, settings, manifest)
    assert view_status(settings, manifest.view("spend")).ok

    # Late events for a day 10 days back (a new account, and c, which had dropped out), and a
    # rewritten file correcting a's amount two days later.
    late = last - timedelta(days=10)
    corrected = late + timedelta(days=2)
    _write(
        folder / "late-arrivals.parquet",
        [
            {"account_id": "z", "amount": 100.0, "ts": _at(late, 12)},
            {"account_id": "c", "amount": 50.0, "ts": _at(late, 13)},
        ],
    )
    index = days.index(corrected)
    fixed = [
        {**row, "amount": row["amount"] * 10} if row["account_id"] == "a" else row
        for row in _day_rows(index, corrected)
    ]
    _write(folder / f"part-{corrected}.parquet", fixed)

    report = view_status(settings, manifest.view("spend"))
    assert not report.ok
    (stale,) = report.stale
    assert stale.ds == DateRange(late, corrected + timedelta(days=WINDOW))
    assert stale.days == (late, corrected)
    assert stale.reasons == (CHANGED,)
    assert stale.repair == DateRange(late, corrected)
    conf = _conf(tmp_path, settings)
    assert main(["--conf", conf, "status", "spend"]) == 1
    out = capsys.readouterr().out
    assert f"ds {late} .. {corrected + timedelta(days=WINDOW)}" in out
    assert f"skewless backfill spend --start {late} --end {corrected}" in out
    assert main(["--conf", conf, "plan"]) == 0  # no definition changes; the stale range is listed
    assert f"repair: skewless backfill spend --start {late} --end {corrected}" in capsys.readouterr().out

    # The repair, as status prints it.
    assert main(["--conf", conf, "backfill", "spend", "--start", str(late), "--end", str(corrected)]) == 0
    assert f"committed ds {late}..{corrected + timedelta(days=WINDOW)}" in capsys.readouterr().out
    assert main(["--conf", conf, "status"]) == 0
    assert "up to date" in capsys.readouterr().out

    scratch = _scratch(settings, tmp_path, "scratch")
    run_view(spark, scratch, manifest, "spend", days[0], last)
    repaired, rebuilt = _table(spark, settings, manifest), _table(spark, scratch, manifest)
    assert _without_created(repaired) == _without_created(rebuilt)
    assert _without_created(repaired) != _without_created(before)
    stale_span = DateRange(late, corrected + timedelta(days=WINDOW))
    old_created = {(r["account_id"], r["ds"]): r["created_ts"] for r in before}
    for row in repaired:  # repaired rows carry a new created_ts, the others keep theirs
        key = (row["account_id"], row["ds"])
        if stale_span.start <= row["ds"] <= stale_span.end:
            assert key not in old_created or row["created_ts"] > old_created[key]
        else:
            assert row["created_ts"] == old_created[key]
    assert any(r["account_id"] == "z" for r in repaired)

    # Training sets over the repaired and the from-scratch tables are identical.
    entities = ["a", "b", "c", "z", "never"]
    moments = [_at(d, 6) for d in days_between(late - timedelta(days=1), last)] + [now]
    spine_path = tmp_path / "spine.parquet"
    pq.write_table(
        pa.table(
            {
                "account_id": [e for _ in moments for e in entities],
                "event_timestamp": pa.array(
                    [m for m in moments for _ in entities], pa.timestamp("us", tz="UTC")
                ),
            }
        ),
        str(spine_path),
    )
    refs = ",".join(f"spend:{f}" for f in FEATURES)
    outputs = []
    for name, where in (("repaired", settings), ("scratch", scratch)):
        out = str(tmp_path / f"training-{name}")
        build_training_set(
            spark, where, manifest, spine=inspect_input(str(spine_path)), out=out, features=refs
        )
        outputs.append(sorted((r.asDict() for r in spark.read.parquet(out).collect()), key=repr))
    assert outputs[0] == outputs[1]
    assert len(outputs[0]) == len(moments) * len(entities)
    training_now = {
        r["account_id"]: r for r in outputs[0] if r["event_timestamp"] == now.replace(tzinfo=None)
    }
    assert training_now["z"]["n_3d"] is None  # z's late events left the windows before now

    # Online: rematerializing the repaired range puts the repaired values online.
    rows_of = [{"account_id": e} for e in entities]
    features = [f"spend:{f}" for f in FEATURES]
    result = materialize(spark, settings, manifest, "spend", stale_span.start, stale_span.end)
    assert result.written > 0
    with OnlineClient(settings, manifest) as client:
        answers = client.get_online_features(rows_of, features=features, now=now)
    for answer in answers:
        want = training_now[answer["account_id"]]
        assert {f: answer[f] for f in FEATURES} == {f: want[f] for f in FEATURES}, answer


def test_a_nightly_run_repairs_changed_input_of_its_last_late_data_days(spark: Any, tmp_path: Path) -> None:
    settings, manifest = deploy(tmp_path, TREE)
    days = days_between(date(2024, 3, 1), date(2024, 3, 9))
    folder = _raw(settings, days)
    run_view(spark, settings, manifest, "spend", days[0], days[6])
    late = days[4]
    _write(folder / "late.parquet", [{"account_id": "z", "amount": 3.0, "ts": _at(late, 8)}])

    # late_data_days 1 does not reach back to day 4: the nightly run reads one day, day 4 stays stale.
    near = settings.model_copy(update={"late_data": LateDataSettings(days=1)})
    done = commit_task(
        validate_task(compute_task("spend", days[7], settings=near), settings=near), settings=near
    )
    assert (done["start"], done["end"], done["raw_days_read"]) == (str(days[7]), str(days[7]), [str(days[7])])
    assert view_status(settings, manifest.view("spend")).stale[0].days == (late,)

    # late_data_days 4 (a per-view override) does: day 4 is re-read and every ds built from it recomputed.
    far = settings.model_copy(update={"late_data": LateDataSettings(days=1, views={"spend": 4})})
    done = commit_task(
        validate_task(compute_task("spend", days[8], settings=far), settings=far), settings=far
    )
    assert (done["start"], done["end"]) == (str(late), str(days[8]))
    assert done["raw_days_read"] == [str(late), str(days[8])]
    assert done["requested"] == [str(days[8]), str(days[8])]
    assert view_status(settings, manifest.view("spend")).ok

    scratch = _scratch(settings, tmp_path, "scratch")
    run_view(spark, scratch, manifest, "spend", days[0], days[8])
    assert _without_created(_table(spark, settings, manifest)) == _without_created(
        _table(spark, scratch, manifest)
    )


@pytest.mark.redis
def test_the_spark_submit_backfill_steps_publish_and_profile_the_range_the_backfill_committed(
    spark: Any, tmp_path: Path, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The backfill DAG under spark-submit: ``backfill --no-stats --handoff``, ``task materialize``,
    ``task stats``, three processes without XCom. A backfill that re-read late input commits a
    wider range than its params; the later steps must take that range, not the params."""
    settings, manifest = deploy(tmp_path, TREE)
    settings = settings.model_copy(update={"redis_url": redis_url})
    days = days_between(date(2024, 3, 1), date(2024, 3, 9))
    folder = _raw(settings, days)
    run_view(spark, settings, manifest, "spend", days[0], days[6])
    late, day = days[4], str(days[8])
    _write(folder / "late.parquet", [{"account_id": "z", "amount": 3.0, "ts": _at(late, 8)}])
    conf = _conf(tmp_path, settings)
    Path(conf).write_text(Path(conf).read_text() + "late_data:\n  days: 4\n")
    steps = [
        ["backfill", "spend", "--start", day, "--end", day, "--no-stats", "--handoff"],
        ["task", "materialize", "spend", "--start", day, "--end", day],
        ["task", "stats", "spend", "--start", day, "--end", day],
    ]
    for step in steps:
        assert main(["--conf", conf, *step]) == 0, step
    out = capsys.readouterr().out
    assert f"spend: committed ds {late}..{day}" in out
    assert f"spend: published ds {late}..{day}:" in out
    assert f"spend: ds {late}..{day} statistics recorded" in out
