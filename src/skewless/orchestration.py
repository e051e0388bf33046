"""The steps the CLI, the spark-submit jobs and the Airflow DAGs run: one library, three callers.

* :func:`run_range` - compute, validate (Great Expectations gate), commit and record statistics
  for ``ds`` in ``start..end`` (extended to the ``ds`` that depend on re-read raw input whose
  fingerprint changed, docs/semantics.md) in one Spark application: ``skewless run`` / ``backfill``,
  (also under spark-submit: ``jobs/run_view.py`` / ``jobs/backfill_view.py``) and the
  ``skewless__backfill`` DAG.
* The nightly DAG's tasks, each idempotent per ``ds``: :func:`compute_task` stages the rows and
  returns the :class:`~skewless.offline.jobs.StagedRun` as JSON (the XCom); :func:`validate_task`
  audits the staged rows and discards them on failure; :func:`commit_task` publishes them;
  :func:`materialize_task` writes the committed partition to Redis; :func:`stats_task` records
  statistics and drift. Rerunning the DAG run from ``compute`` recomputes and replaces the
  partition; a failed ``validate`` leaves nothing staged, so it is cleared together with
  ``compute``. Under spark-submit (``skewless task STEP``, ``jobs/view_task.py``) the steps
  hand the StagedRun on through a file (:func:`write_handoff`, :func:`read_handoff`).

Task functions load the settings (``SKEWLESS_CONF``) and the deployed registry when they run,
not when a DAG file is parsed, and return JSON-compatible dicts.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from skewless.errors import RegistryError, SkewlessError
from skewless.manifest import Manifest
from skewless.runtime.settings import Settings, is_remote, join_uri, load_settings

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from skewless.offline.jobs import RunResult, StagedRun
    from skewless.validate.gate import ValidationReport
    from skewless.validate.stats import StatsResult

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RangeRun:
    run: RunResult
    validation: ValidationReport | None
    stats: StatsResult | None


def run_range(
    spark: SparkSession,
    settings: Settings,
    manifest: Manifest,
    view_name: str,
    start: date,
    end: date | None = None,
    *,
    validate: bool = True,
    stats: bool = True,
    raise_on_drift: bool = True,
) -> RangeRun:
    """Compute, audit and commit ``start..end`` (nothing committed if the audit fails), then stats."""
    from skewless.offline.jobs import run_view
    from skewless.validate.gate import preload, validate_rows
    from skewless.validate.stats import record_stats

    end = end or start
    reports: list[ValidationReport] = []
    if validate:
        preload()

    def gate(rows: Any, view: Any) -> None:
        reports.append(validate_rows(rows, view, settings, start, end))

    result = run_view(spark, settings, manifest, view_name, start, end, gate=gate if validate else None)
    recorded = None
    if stats:  # over what was committed: a repair may have extended the range
        recorded = record_stats(
            spark, settings, manifest.view(view_name), result.start, result.end, raise_on_drift=raise_on_drift
        )
    return RangeRun(result, reports[0] if reports else None, recorded)


# --- DAG tasks ------------------------------------------------------------------------------


def deployment(settings: Settings | None = None) -> tuple[Settings, Manifest]:
    """The settings (``SKEWLESS_CONF`` or conf/local.yaml) and the deployed registry."""
    from skewless.registry import require_registry

    settings = settings or load_settings()
    return settings, require_registry(settings.registry_uri)


def spark_session(settings: Settings, app_name: str) -> SparkSession:
    """The process's active session (tests, a local worker running several tasks) or a new one."""
    from skewless.runtime.spark import get_spark

    return get_spark(settings, app_name=app_name)


def compute_task(view: str, start: date, end: date | None = None, *, settings: Settings | None = None) -> str:
    """Stage ``view`` for ``start..end``; returns the StagedRun JSON for the next tasks."""
    from skewless.offline.jobs import compute_view

    settings, manifest = deployment(settings)
    spark = spark_session(settings, f"skewless-compute-{view}")
    # The nightly run repairs changed input only as far back as late_data_days (docs/semantics.md).
    lookback = settings.late_data.days_for(view)
    staged = compute_view(spark, settings, manifest, view, start, end or start, lookback_days=lookback)
    log.info("%s: staged ds %s..%s (%d rows)", view, staged.start, staged.end, staged.rows)
    return staged.to_json()


def _staged(text: str) -> StagedRun:
    from skewless.offline.jobs import StagedRun

    staged = StagedRun.from_json(text)
    for part in (staged.staged_rows, staged.staged_tiles):
        if part is not None and not is_remote(part.path) and not Path(part.path).is_dir():
            raise SkewlessError(
                f"{staged.view}: the staged rows of ds {staged.start}..{staged.end} are gone ({part.path}): "
                "they were discarded after a failed validation or already committed; rerun from compute"
            )
    return staged


def validate_task(staged_json: str, *, settings: Settings | None = None) -> str:
    """Audit the staged rows; on failure discard them and raise ValidationFailed. Returns the input."""
    from skewless.offline.jobs import discard_view, staged_rows
    from skewless.validate.gate import preload, validate_rows

    preload()  # while the Spark session starts
    settings, manifest = deployment(settings)
    staged = _staged(staged_json)
    spark = spark_session(settings, f"skewless-validate-{staged.view}")
    if staged.registry_hash != manifest.registry_hash:
        discard_view(spark, staged)
        raise RegistryError(
            f"{staged.view}: the registry changed since ds {staged.start}..{staged.end} was computed; "
            "rerun from compute"
        )
    try:
        validate_rows(
            staged_rows(spark, staged), manifest.view(staged.view), settings, staged.start, staged.end
        )
    except BaseException:
        discard_view(spark, staged)
        raise
    return staged_json


def commit_task(staged_json: str, *, settings: Settings | None = None) -> dict[str, Any]:
    from skewless.offline.jobs import commit_view

    settings, _ = deployment(settings)
    staged = _staged(staged_json)
    result = commit_view(spark_session(settings, f"skewless-commit-{staged.view}"), staged)
    return _jsonable(asdict(result))


def materialize_task(
    view: str,
    start: date,
    end: date | None = None,
    *,
    settings: Settings | None = None,
    transport: Literal["rows", "arrow"] = "rows",
) -> dict[str, Any]:
    """Publish the committed partitions to Redis (refused while a ds is not available yet)."""
    from skewless.online.materialize import materialize

    settings, manifest = deployment(settings)
    spark = spark_session(settings, f"skewless-materialize-{view}")
    result = materialize(spark, settings, manifest, view, start, end or start, transport=transport)
    if result.days_without_rows:
        log.warning("%s: no committed rows for ds %s", view, ", ".join(map(str, result.days_without_rows)))
    return _jsonable(asdict(result))


def stats_task(
    view: str, start: date, end: date | None = None, *, settings: Settings | None = None
) -> dict[str, Any]:
    """Record statistics and drift of the committed partitions (DriftDetected past the fail level)."""
    from skewless.validate.stats import record_stats

    settings, manifest = deployment(settings)
    spark = spark_session(settings, f"skewless-stats-{view}")
    result = record_stats(spark, settings, manifest.view(view), start, end or start)
    return {
        "view": view,
        "start": str(result.start),
        "end": str(result.end),
        "stats_version": result.table_version,
        "features": len({s.feature for s in result.stats}),
        "drift_warnings": [f"{s.ds} {s.feature} PSI {s.psi:.4f}" for s in result.with_status("warn")],
    }


def backfill_task(view: str, start: date, end: date, *, settings: Settings | None = None) -> dict[str, Any]:
    """Compute, validate and commit ``start..end`` in one Spark job (statistics are a later task)."""
    settings, manifest = deployment(settings)
    spark = spark_session(settings, f"skewless-backfill-{view}")
    done = run_range(spark, settings, manifest, view, start, end, stats=False)
    return _jsonable(asdict(done.run))


def handoff_uri(settings: Settings, view: str, start: date, end: date) -> str:
    """Where spark-submit tasks pass the StagedRun JSON on (they have no XCom)."""
    return join_uri(settings.offline_root, f"_runs/{view}/{start}_{end}.staged.json")


def write_handoff(settings: Settings, view: str, start: date, end: date, staged_json: str) -> str:
    """Keep :func:`compute_task`'s output for the next spark-submit step; returns where."""
    from skewless.storage import write_text

    uri = handoff_uri(settings, view, start, end)
    write_text(uri, staged_json)
    return uri


def read_handoff(settings: Settings, view: str, start: date, end: date) -> str:
    """The StagedRun JSON :func:`write_handoff` kept (SkewlessError when compute has not run)."""
    from skewless.storage import read_text

    uri = handoff_uri(settings, view, start, end)
    staged = read_text(uri)
    if staged is None:
        raise SkewlessError(f"{view}: no staged run at {uri}; run the compute task first")
    return staged


def handoff_range(settings: Settings, view: str, start: date, end: date) -> tuple[date, date]:
    """The range an earlier step of this run staged or committed, else ``start..end``.

    Wider than asked when the run repaired late data (docs/semantics.md, "Late data"): the
    rewritten earlier ds must reach Redis and the statistics too. The record is the nightly
    compute's staged run or the backfill's :func:`record_committed`; both carry ``start``/``end``.
    """
    import json

    from skewless.storage import read_text

    record = read_text(handoff_uri(settings, view, start, end))
    if record is None:
        return start, end
    body = json.loads(record)
    return date.fromisoformat(body["start"]), date.fromisoformat(body["end"])


def record_committed(settings: Settings, view: str, start: date, end: date, run: RunResult) -> str:
    """Keep the range a backfill of ``start..end`` committed for its later spark-submit steps."""
    import json

    return write_handoff(settings, view, start, end, json.dumps(_jsonable(asdict(run)), sort_keys=True))


def _jsonable(body: dict[str, Any]) -> dict[str, Any]:
    def convert(value: Any) -> Any:
        if isinstance(value, date):
            return value.isoformat()
        if isinstance(value, list | tuple):
            return [convert(v) for v in value]
        return value

    return {key: convert(value) for key, value in body.items()}
