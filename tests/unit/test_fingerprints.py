"""Per-day fingerprints of raw input, stale ranges and run plans (pure logic, real Parquet/Delta files)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from deltalake import write_deltalake

from skewless import semantics
from skewless.offline.fingerprints import (
    CHANGED,
    UNRECORDED,
    DayRecord,
    InputRecord,
    InputState,
    day_fingerprint,
    plan_run,
    stale_days,
    stale_ranges,
    valid_fingerprints,
)
from skewless.offline.inputs import FileStats, file_stats, inspect_input
from skewless.plan.planner import DateRange

D = date(2024, 5, 10)


def _us(day: date, hour: int = 0) -> int:
    return semantics.day_number(day) * semantics.DAY_US + hour * 3_600_000_000


def _file(path: str, first: date, last: date, size: int = 100, modified: int = 1) -> FileStats:
    return FileStats(path, size, modified, None, (_us(first, 1), _us(last, 23)))


def test_a_day_fingerprint_covers_exactly_the_files_that_may_hold_that_day() -> None:
    files = [
        _file("a", D, D),
        _file("b", D + timedelta(days=1), D + timedelta(days=2)),
        FileStats("unknown", 5, 1, None, None),  # no statistics: any day
        FileStats("all-null", 5, 1, None, None, no_events=True),  # no day at all
    ]
    before = {d: day_fingerprint(files, d, False) for d in (D, D + timedelta(days=1), D + timedelta(days=3))}
    appended = [*files, _file("late", D, D)]
    rewritten = [_file("a", D, D, modified=2), *files[1:]]
    resized = [files[0], _file("b", D + timedelta(days=1), D + timedelta(days=2), size=101), *files[2:]]
    assert day_fingerprint(appended, D, False) != before[D]
    assert day_fingerprint(appended, D + timedelta(days=1), False) == before[D + timedelta(days=1)]
    assert day_fingerprint(rewritten, D, False) != before[D]  # same size, new modification time
    assert day_fingerprint(resized, D, False) == before[D]
    assert day_fingerprint(resized, D + timedelta(days=1), False) != before[D + timedelta(days=1)]
    # Files without statistics change every day; a file holding only null timestamps none.
    grown = [*files[:2], FileStats("unknown", 6, 1, None, None), files[3]]
    assert all(day_fingerprint(grown, d, False) != fp for d, fp in before.items())
    nulls = [*files[:3], FileStats("all-null", 6, 1, None, None, no_events=True)]
    assert all(day_fingerprint(nulls, d, False) == fp for d, fp in before.items())


def test_a_partitioned_source_fingerprints_the_days_folder_only() -> None:
    files = [
        FileStats("x/day=2024-05-10/a", 1, 1, "2024-05-10", None),
        FileStats("x/day=2024-05-11/b", 1, 1, "2024-05-11", None),
    ]
    moved = [files[0], FileStats("x/day=2024-05-11/b", 2, 1, "2024-05-11", None)]
    assert day_fingerprint(moved, D, True) == day_fingerprint(files, D, True)
    assert day_fingerprint(moved, D + timedelta(days=1), True) != day_fingerprint(
        files, D + timedelta(days=1), True
    )


def test_footer_statistics_floor_nanoseconds_like_the_reader(tmp_path: Path) -> None:
    last_ns = (semantics.day_number(D + timedelta(days=1)) * semantics.DAY_US) * 1000 - 1
    table = pa.table({"ts": pa.array([last_ns - 3_600 * 10**9, last_ns], pa.timestamp("ns"))})
    pq.write_table(table, tmp_path / "late.parquet")
    pq.write_table(
        pa.table({"ts": pa.array([None], pa.timestamp("us", tz="UTC"))}), tmp_path / "nulls.parquet"
    )
    (stats, nulls) = file_stats(inspect_input(str(tmp_path)), "ts")
    # 23:59:59.999999999 on D is 23:59:59.999999 after flooring: day D only, not D + 1.
    assert stats.time_range == ((last_ns - 3_600 * 10**9) // 1000, last_ns // 1000)
    assert day_fingerprint([stats], D, False) != day_fingerprint([], D, False)
    assert day_fingerprint([stats], D + timedelta(days=1), False) == day_fingerprint(
        [], D + timedelta(days=1), False
    )
    assert nulls.no_events
    assert nulls.time_range is None


def test_delta_sources_take_ranges_and_partitions_from_the_log(tmp_path: Path) -> None:
    moment = datetime(2024, 5, 10, 6, tzinfo=UTC)
    rows = pa.table(
        {
            "ts": pa.array([moment, moment + timedelta(hours=1)], pa.timestamp("us", tz="UTC")),
            "day": ["2024-05-10", "2024-05-10"],
        }
    )
    write_deltalake(str(tmp_path / "t"), rows, partition_by=["day"])
    (stats,) = file_stats(inspect_input(str(tmp_path / "t")), "ts", "day")
    assert stats.partition == "2024-05-10"
    assert stats.time_range == (semantics.to_micros(moment), semantics.to_micros(moment + timedelta(hours=1)))


def test_a_record_counts_only_while_the_table_holds_the_recorded_files() -> None:
    record = InputRecord(
        {D: DayRecord("fp-d", ("ds=D/a",)), D + timedelta(days=1): DayRecord("fp-e", ())}, DateRange(D, D)
    )
    assert InputRecord.from_json(record.to_json(), "x") == record
    # A commit after the record (a crash before its record was written) replaced D's files.
    files = {D: frozenset({"ds=D/b"})}
    assert valid_fingerprints(record, files) == {D + timedelta(days=1): "fp-e"}
    state = InputState(
        DateRange(D, D), frozenset({D, D + timedelta(days=1)}), {D + timedelta(days=1): "fp-e"}
    )
    assert stale_days(state, {D + timedelta(days=1): "fp-e"}) == {D: UNRECORDED}
    assert stale_days(state, {D + timedelta(days=1): "other"}) == {
        D: UNRECORDED,
        D + timedelta(days=1): CHANGED,
    }


def test_stale_ranges_run_from_the_day_to_the_day_plus_the_longest_window() -> None:
    computed = DateRange(D - timedelta(days=20), D + timedelta(days=9))
    stale = {D - timedelta(days=25): CHANGED, D: CHANGED, D + timedelta(days=3): CHANGED}
    ranges = stale_ranges(stale, 7, computed)
    # D-25 feeds ds D-25..D-18; only D-20..D-18 were computed; the repair starts at the first computed ds.
    assert [(r.ds.start, r.ds.end, r.repair.start, r.repair.end) for r in ranges] == [
        (D - timedelta(days=20), D - timedelta(days=18), D - timedelta(days=20), D - timedelta(days=20)),
        (D, D + timedelta(days=9), D, D + timedelta(days=3)),  # D..D+7 and D+3..D+10 merge, clipped
    ]
    assert ranges[1].days == (D, D + timedelta(days=3))
    assert stale_ranges({D: CHANGED}, 0, DateRange(D, D + timedelta(days=1)))[0].ds == DateRange(D, D)


def _state(first: date, last: date, window: int) -> InputState:
    known = frozenset(
        first - timedelta(days=window) + timedelta(days=i) for i in range((last - first).days + window + 1)
    )
    return InputState(DateRange(first, last), known, {})


def test_a_run_plan_recomputes_every_dependent_ds_and_cascades_through_stale_tiles() -> None:
    state = _state(D - timedelta(days=20), D + timedelta(days=9), 3)
    steady = plan_run(
        D + timedelta(days=10),
        D + timedelta(days=10),
        window_days=3,
        snapshot=False,
        lookback_days=0,
        state=state,
        stale=(),
    )
    assert (steady.first, steady.last, steady.reread) == (
        D + timedelta(days=10),
        D + timedelta(days=10),
        (D + timedelta(days=10),),
    )
    repair = plan_run(
        D, D, window_days=3, snapshot=False, lookback_days=3, state=state, stale=[D + timedelta(days=2)]
    )
    assert (repair.first, repair.last) == (D, D + timedelta(days=5))  # D..D+3, then D+2..D+5
    assert repair.reread == (D, D + timedelta(days=2))
    # A stale day just before the range is re-read within the lookback, and its ds join the run.
    back = plan_run(
        D, D, window_days=3, snapshot=False, lookback_days=3, state=state, stale=[D - timedelta(days=2)]
    )
    assert (back.first, back.last, back.reread) == (
        D - timedelta(days=2),
        D + timedelta(days=3),
        (D - timedelta(days=2), D),
    )
    # Outside the lookback (a nightly run with late_data_days 1) it keeps its committed tiles.
    kept = plan_run(
        D, D, window_days=3, snapshot=False, lookback_days=1, state=state, stale=[D - timedelta(days=2)]
    )
    assert (kept.first, kept.last, kept.reread) == (D, D + timedelta(days=3), (D,))
    # A snapshot view re-reads every day of its range; a stale day in the lookback starts it.
    snap = plan_run(
        D,
        D,
        window_days=0,
        snapshot=True,
        lookback_days=2,
        state=_state(D - timedelta(days=5), D, 0),
        stale=[D - timedelta(days=2)],
    )
    assert snap.reread == (D - timedelta(days=2), D - timedelta(days=1), D)


def test_plan_lists_stale_ranges_with_their_repair_even_without_definition_changes() -> None:
    from skewless.plan import Plan, render_markdown, render_text
    from skewless.plan.planner import StaleRange

    item = StaleRange(DateRange(D, D + timedelta(days=5)), (D,), (CHANGED,), DateRange(D, D))
    plan = Plan(old_hash="a" * 64, new_hash="a" * 64, stale=(("spend", item),))
    text = render_text(plan)
    assert text.startswith("No changes")
    assert (
        "spend: ds 2024-05-10 .. 2024-05-15: raw input of 2024-05-10 (input changed); repair: skewless"
        " backfill spend --start 2024-05-10 --end 2024-05-10" in text
    )
    assert "skewless backfill spend --start 2024-05-10 --end 2024-05-10" in render_markdown(plan)
    assert "Stale" not in render_text(Plan(old_hash="a" * 64, new_hash="a" * 64))
