"""Late and corrected data: per-day fingerprints of raw input (docs/semantics.md, "Late and corrected data").

Every day of raw input a run read (a tile day of an aggregation view, a ``ds`` of a snapshot
view) is recorded with a fingerprint of the source files that may hold that day's events. A day
whose current fingerprint differs from the recorded one is *stale*, and so is every computed
``ds`` that depends on it. The first half of this module is pure (unit-tested without Spark);
the second reads sources, Delta logs and the record file.

The record lives beside the view's table (``<table>/_skewless/inputs.json``) and is written
right after the run's commits. A recorded day counts only while the input table's files of
that day are exactly the ones the record names, so a crash between a commit and its record (or
a commit by anything else) makes the day look stale, never fresh.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from skewless import semantics
from skewless.errors import TableError
from skewless.manifest import ViewSpec
from skewless.offline.inputs import FileStats, InputError, file_stats, inspect_input
from skewless.plan.planner import DateRange, StaleRange
from skewless.runtime.settings import Settings, join_uri

RECORD = "_skewless/inputs.json"
CHANGED = "input changed"
UNRECORDED = "no fingerprint recorded"


# --- pure ----------------------------------------------------------------------------------------


def days_in(start: date, end: date) -> list[date]:
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]


def may_hold(file: FileStats, day: date, partitioned: bool) -> bool:
    """Whether ``file`` may hold events of UTC ``day`` (what the reader would keep for it)."""
    if partitioned and file.partition is not None:
        return file.partition == day.isoformat()
    if file.no_events:
        return False
    if file.time_range is None:
        return True  # no statistics: any day
    low, high = file.time_range
    start = semantics.day_number(day) * semantics.DAY_US
    return low < start + semantics.DAY_US and high >= start


def day_fingerprint(files: Iterable[FileStats], day: date, partitioned: bool) -> str:
    """Hash of (path, size, modification time) of the files that may hold events of ``day``."""
    digest = hashlib.sha256(day.isoformat().encode())
    for file in sorted((f for f in files if may_hold(f, day, partitioned)), key=lambda f: f.path):
        digest.update(f"\n{file.path}\t{file.size}\t{file.modified_ns}".encode())
    return digest.hexdigest()


def fingerprints(files: Sequence[FileStats], days: Iterable[date], partitioned: bool) -> dict[date, str]:
    return {day: day_fingerprint(files, day, partitioned) for day in days}


@dataclass(frozen=True)
class DayRecord:
    fingerprint: str
    files: tuple[str, ...]
    """The input table's data files of that day right after the commit (empty: no rows)."""


@dataclass(frozen=True)
class InputRecord:
    """What ``<table>/_skewless/inputs.json`` holds."""

    days: Mapping[date, DayRecord]
    computed: DateRange | None
    """The ``ds`` range runs computed (including ``ds`` that had no rows)."""

    def to_json(self) -> str:
        body: dict[str, Any] = {
            "days": {
                d.isoformat(): {"fingerprint": r.fingerprint, "files": list(r.files)}
                for d, r in sorted(self.days.items())
            },
            "computed": None
            if self.computed is None
            else [self.computed.start.isoformat(), self.computed.end.isoformat()],
        }
        return json.dumps(body, indent=1, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str | None, origin: str) -> InputRecord:
        if not text:
            return cls({}, None)
        try:
            body = json.loads(text)
            days = {
                date.fromisoformat(d): DayRecord(str(r["fingerprint"]), tuple(map(str, r["files"])))
                for d, r in body["days"].items()
            }
            computed = body.get("computed")
            span = (
                DateRange(date.fromisoformat(computed[0]), date.fromisoformat(computed[1]))
                if computed
                else None
            )
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            raise TableError(f"{origin}: not a skewless input record ({exc})") from None
        return cls(days, span)

    def merged(self, days: Mapping[date, DayRecord], computed: DateRange | None) -> InputRecord:
        return InputRecord({**self.days, **days}, union(self.computed, computed))


def union(first: DateRange | None, second: DateRange | None) -> DateRange | None:
    if first is None or second is None:
        return first or second
    return DateRange(min(first.start, second.start), max(first.end, second.end))


def valid_fingerprints(record: InputRecord, table_files: Mapping[date, frozenset[str]]) -> dict[date, str]:
    """The recorded fingerprints that still describe the table: its files of the day are the recorded ones."""
    return {
        day: entry.fingerprint
        for day, entry in record.days.items()
        if frozenset(entry.files) == table_files.get(day, frozenset())
    }


@dataclass(frozen=True)
class InputState:
    """What a view's offline tables were computed from."""

    computed: DateRange | None
    """``ds`` range of the view's table (committed partitions and recorded runs)."""
    known: frozenset[date]
    """Input days a run read: with committed rows in the input table or a valid record."""
    recorded: Mapping[date, str]
    """Valid recorded fingerprints."""


def stale_days(state: InputState, current: Mapping[date, str]) -> dict[date, str]:
    """Known input days whose input changed, or whose committed rows have no valid record."""
    out: dict[date, str] = {}
    for day in sorted(state.known):
        recorded = state.recorded.get(day)
        if recorded is None:
            out[day] = UNRECORDED
        elif day in current and current[day] != recorded:
            out[day] = CHANGED
    return out


def dependent_range(day: date, window_days: int, computed: DateRange | None) -> DateRange | None:
    """The computed ``ds`` whose rows depend on input ``day``: ``day .. day + W`` (W the longest window).

    A window of W days at ``ds`` holds the tiles of ``ds - W + 1 .. ds``; the row at ``day + W``
    is the tombstone of an entity whose last tile is ``day``. Snapshot views: W = 0.
    """
    if computed is None:
        return None
    start = max(day, computed.start)
    end = min(day + timedelta(days=window_days), computed.end)
    return DateRange(start, end) if start <= end else None


def stale_ranges(
    stale: Mapping[date, str], window_days: int, computed: DateRange | None
) -> tuple[StaleRange, ...]:
    """Dependent ranges of the stale days, merged where they overlap or touch."""
    groups: list[tuple[DateRange, list[date]]] = []
    for day in sorted(stale):
        span = dependent_range(day, window_days, computed)
        if span is None:
            continue
        if groups and span.start <= groups[-1][0].end + timedelta(days=1):
            last, days = groups[-1]
            groups[-1] = (DateRange(last.start, max(last.end, span.end)), [*days, day])
        else:
            groups.append((span, [day]))
    out = []
    for span, days in groups:
        first = max(days[0], span.start)
        out.append(
            StaleRange(
                span,
                tuple(days),
                tuple(sorted({stale[d] for d in days})),
                DateRange(first, max(days[-1], first)),
            )
        )
    return tuple(out)


@dataclass(frozen=True)
class RunPlan:
    """What a run computes: ``ds`` in ``first .. last``, re-reading the raw input of ``reread``."""

    first: date
    last: date
    reread: tuple[date, ...]


def plan_run(
    start: date,
    end: date,
    *,
    window_days: int,
    snapshot: bool,
    lookback_days: int,
    state: InputState,
    stale: Iterable[date],
) -> RunPlan:
    """Extend a run of ``start .. end`` so that it leaves no computed ``ds`` stale behind it.

    Re-read: the requested days; input days no run read yet; stale days from
    ``start - lookback_days`` on. Every re-read day's dependent ``ds``
    (:func:`dependent_range`) join the run, whose tiles may in turn need re-reading, until
    nothing changes. Older stale days keep their committed tiles (and stay listed as stale).
    A snapshot view re-reads every day of its range.
    """
    stale_set = set(stale)
    oldest_repaired = start - timedelta(days=lookback_days)
    first, last = start, end
    while True:
        needed = days_in(min(first - timedelta(days=window_days), oldest_repaired), last)
        reread = [
            d
            for d in needed
            if (snapshot and first <= d)
            or start <= d <= end
            or (d not in state.known and d >= first - timedelta(days=window_days))
            or (d in stale_set and d >= oldest_repaired)
        ]
        spans = [s for s in (dependent_range(d, window_days, state.computed) for d in reread) if s]
        new_first = min([first, *(s.start for s in spans)])
        new_last = max([last, *(s.end for s in spans)])
        if (new_first, new_last) == (first, last):
            return RunPlan(first, last, tuple(reread))
        first, last = new_first, new_last


# --- I/O -----------------------------------------------------------------------------------------


def record_uri(table_uri: str) -> str:
    return join_uri(table_uri, RECORD)


def input_table_uri(settings: Settings, view: ViewSpec) -> str:
    """The table whose partitions are input days: the tiles (aggregation) or the view's own table."""
    return settings.table_uri(view.tiles_table or view.table)


def read_record(table_uri: str) -> InputRecord:
    from skewless.storage import read_text

    uri = record_uri(table_uri)
    return InputRecord.from_json(read_text(uri), uri)


def table_files(table_uri: str, version: int | None = None) -> dict[date, frozenset[str]]:
    """Data files of each ``ds`` partition (relative paths, as the Delta log names them)."""
    import pyarrow as pa
    from deltalake import DeltaTable
    from deltalake.exceptions import DeltaError

    from skewless.offline.storage_options import storage_options

    options = storage_options(table_uri)
    try:
        if not DeltaTable.is_deltatable(table_uri, storage_options=options):
            return {}
        table = DeltaTable(table_uri, version=version, storage_options=options)
        actions = pa.table(table.get_add_actions(flatten=True)).select(["path", "partition.ds"]).to_pylist()
    except (DeltaError, OSError, KeyError) as exc:
        raise TableError(f"cannot read the Delta log of {table_uri}: {exc}") from exc
    out: dict[date, set[str]] = {}
    for action in actions:
        value = action["partition.ds"]
        if value is not None:
            out.setdefault(date.fromisoformat(str(value)), set()).add(str(action["path"]))
    return {day: frozenset(paths) for day, paths in out.items()}


def load_state(settings: Settings, view: ViewSpec) -> InputState:
    from skewless.offline.catalog import committed_partitions

    record = read_record(settings.table_uri(view.table))
    files = table_files(input_table_uri(settings, view))
    recorded = valid_fingerprints(record, files)
    partitions = committed_partitions(settings.table_uri(view.table))
    computed = union(record.computed, DateRange(partitions[0], partitions[-1]) if partitions else None)
    return InputState(computed, frozenset(files) | frozenset(recorded), recorded)


def source_files(settings: Settings, view: ViewSpec) -> tuple[FileStats, ...]:
    """Every file of the view's source with its size, modification time and timestamp range."""
    from skewless.errors import DataError

    source = view.source
    try:
        # Every footer is checked like the reader does (same errors) unless the day folders say it all.
        footers = source.partition_column is None
        inputs = inspect_input(settings.source_uri(source.path), source.format, all_footers=footers)
        return file_stats(inputs, source.timestamp, source.partition_column)
    except InputError as exc:
        raise DataError(str(exc), source=source.name) from None


def current_fingerprints(settings: Settings, view: ViewSpec, days: Iterable[date]) -> dict[date, str]:
    wanted = sorted(set(days))
    if not wanted:
        return {}
    return fingerprints(source_files(settings, view), wanted, view.source.partition_column is not None)


def write_record(
    view_table_uri: str,
    input_uri: str,
    input_version: int,
    days: Mapping[date, str],
    computed: DateRange,
) -> None:
    """Record ``days``' fingerprints with the input table's files of those days at ``input_version``.

    Called right after the commits, so a crash before it leaves the committed days without a
    matching record: stale, never fresh.
    """
    from skewless.storage import update_text

    files = table_files(input_uri, input_version)
    entries = {day: DayRecord(fp, tuple(sorted(files.get(day, frozenset())))) for day, fp in days.items()}
    uri = record_uri(view_table_uri)

    def change(text: str | None) -> str:
        return InputRecord.from_json(text, uri).merged(entries, computed).to_json()

    update_text(uri, change)
