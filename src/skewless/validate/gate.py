"""Write-audit-publish gate: run a view's checks with Great Expectations on the staged rows.

:func:`validate_rows` evaluates :func:`skewless.validate.suite.build_checks` in an ephemeral GE
context over a Spark dataframe data source, always keeps the report as JSON under
``<offline_root>/_reports/validation/<view>/<start>_<end>-<timestamp>.json``, and raises
:class:`~skewless.errors.ValidationFailed` naming the view, the ds range and every failed check
with its observed value. :func:`skewless.orchestration.run_range` passes it to
:func:`skewless.offline.jobs.run_view` as its ``gate``; the DAG's validate step calls it on the
staged rows.

Great Expectations takes seconds to import (about 6 s of CPU on a 2-core machine) and logs a
lot: it is imported on first use only, or in the background by :func:`preload` while the rows
are being computed; its loggers are set to WARNING and its progress bars are off.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

from skewless import semantics
from skewless.errors import SkewlessError, ValidationFailed
from skewless.manifest import ViewSpec
from skewless.runtime.settings import Settings, join_uri
from skewless.storage import write_text
from skewless.validate.suite import (
    EXPECTED_FEATURE_TS,
    FEATURE_DATE,
    HAS_VALUE,
    Check,
    build_checks,
    length_column,
)

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame


log = logging.getLogger(__name__)

REPORTS_DIR = "_reports/validation"
PARTIAL_UNEXPECTED = 5
_NOISY_LOGGERS = ("great_expectations", "tzlocal")


@dataclass(frozen=True)
class CheckResult:
    check: Check
    success: bool
    observed: str
    """What was seen, e.g. ``2 of 40 values outside the range, e.g. [-3.0, 1e9]``."""
    result: Mapping[str, Any]
    """GE's result for the expectation (JSON-compatible)."""

    def to_json(self) -> dict[str, Any]:
        return {**self.check.to_json(), "success": self.success, "observed": self.observed,
                "result": dict(self.result)}  # fmt: skip


@dataclass(frozen=True)
class ValidationReport:
    view: str
    version: int
    start: date
    end: date
    rows: int
    results: tuple[CheckResult, ...]
    created_at: datetime
    uri: str | None = None

    @property
    def success(self) -> bool:
        return all(r.success for r in self.results)

    @property
    def failures(self) -> list[CheckResult]:
        return [r for r in self.results if not r.success]

    def to_json(self) -> str:
        body = {
            "view": self.view,
            "version": self.version,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "rows": self.rows,
            "success": self.success,
            "evaluated": len(self.results),
            "failed": len(self.failures),
            "created_at": self.created_at.isoformat(),
            "checks": [r.to_json() for r in self.results],
        }
        return json.dumps(body, indent=2, sort_keys=True, default=str) + "\n"

    def describe_failures(self) -> str:
        days = str(self.start) if self.start == self.end else f"{self.start}..{self.end}"
        lines = [
            f"view {self.view!r} ds {days}: {len(self.failures)} of {len(self.results)} expectations "
            f"failed on {self.rows} staged rows; nothing was committed"
            + (f" (report: {self.uri})" if self.uri else "")
        ]
        for failure in self.failures:
            check = failure.check
            lines.append(f"  - {check.name} [{check.origin}, {check.scope}]: {failure.observed}")
        return "\n".join(lines)


def report_uri(settings: Settings, view: str, start: date, end: date, created_at: datetime) -> str:
    stamp = created_at.astimezone(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    return join_uri(settings.offline_root, f"{REPORTS_DIR}/{view}/{start}_{end}-{stamp}.json")


def prepare_rows(rows: DataFrame, view: ViewSpec) -> DataFrame:
    """The staged rows plus the helper columns the checks refer to."""
    from pyspark.sql import functions as F

    frame = rows.withColumn(HAS_VALUE, semantics.has_value_column(view.feature_names))
    lengths = {
        length_column(f.name): F.when(F.col(f.name).isNotNull(), F.size(F.col(f.name)))
        for f in view.features
        if f.length is not None
    }
    if lengths:
        frame = frame.withColumns(lengths)
    if view.kind == "aggregation":
        return frame.withColumn(EXPECTED_FEATURE_TS, semantics.feature_ts_column(view, F.col("ds")))
    return frame.withColumn(FEATURE_DATE, F.to_date(F.col("feature_ts")))


def _quiet_great_expectations() -> None:
    # Some GE modules set their own logger to INFO at import: quiet every logger under the package.
    names = [n for n in list(logging.root.manager.loggerDict) if n.startswith("great_expectations.")]
    for name in (*_NOISY_LOGGERS, *names):
        logging.getLogger(name).setLevel(logging.WARNING)


def counting_column(check: Check) -> str | None:
    """The helper column a ``unique`` or ``columns_equal`` check reads in the counting pass."""
    if check.kind in ("unique", "columns_equal"):
        return f"_skewless_{check.kind}__" + "__".join(check.columns)
    return None


def counting_columns(checks: Sequence[Check]) -> dict[str, Column]:
    """The helper columns of :func:`counting_column`, as :func:`_expectation` explains.

    ``unique``: a 64-bit hash of the columns. ``columns_equal``: 1 where the two agree, 0 where
    they differ or one is null, null where both are (GE's pair check ignores those rows too).
    """
    from pyspark.sql import functions as F

    helpers = {}
    for check in checks:
        name = counting_column(check)
        if name is None:
            continue
        if check.kind == "unique":
            helpers[name] = F.xxhash64(*check.columns)
        else:
            first, second = (F.col(c) for c in check.columns)
            agree = first.eqNullSafe(second).cast("int")
            helpers[name] = F.when(first.isNotNull() | second.isNotNull(), agree)
    return helpers


_preloading: list[threading.Thread] = []


def preload() -> None:
    """Start importing Great Expectations in a background thread; :func:`evaluate` waits for it.

    A backfill calls this before computing its rows: the Spark jobs run in the JVM while this
    process only waits on them, so the import overlaps them instead of following them.
    """
    if not _preloading:
        _preloading.append(threading.Thread(target=_import, name="skewless-preload-gx", daemon=True))
        _preloading[0].start()


def _import() -> None:
    # The import is seconds of pure Python holding the GIL; the main thread meanwhile makes
    # hundreds of short Py4J calls, each waiting for the GIL up to the switch interval (5 ms).
    # A shorter interval while importing keeps those waits short.
    interval = sys.getswitchinterval()
    sys.setswitchinterval(min(interval, 0.0005))
    try:
        _quiet_great_expectations()
        import great_expectations  # noqa: F401
    except Exception:  # evaluate() imports it again and raises the error there
        log.debug("preloading Great Expectations failed", exc_info=True)
    finally:
        sys.setswitchinterval(interval)
        _quiet_great_expectations()


def _expectation(check: Check, *, counting: bool = False) -> Any:
    """The GE expectation for ``check`` (GE imported by the caller).

    ``counting``: the first pass, which only needs to know whether each check holds; a failed
    check runs again in its full form, whose result decides and gives the count and examples
    of the offending rows. In the counting pass two checks read a helper column
    (:func:`counting_columns`) so that GE can answer them with cheaper queries (on 10.3M staged
    rows, docs/validation.md):

    * ``unique`` asks that no two rows share a 64-bit hash of the columns, GE's single-column
      uniqueness (a window over one ``long``: 6 s), instead of its compound-uniqueness metric
      (a window over the rows' columns: 15 s). Distinct hashes prove distinct rows; rows sharing
      a hash are a duplicate or, rarely, a collision, which the full check tells apart;
    * ``columns_equal`` becomes a ``between(1, 1)`` on a 0/1 column, which GE counts in the
      one aggregation it shares with the other single-column checks, instead of two queries
      of its own (2.3 s).
    """
    import great_expectations as gx
    from great_expectations.expectations.row_conditions import Column

    condition: dict[str, Any] = {"row_condition": Column(HAS_VALUE) == True} if check.values_only else {}  # noqa: E712
    expectations: Any = gx.expectations
    if check.kind == "not_null":
        return expectations.ExpectColumnValuesToNotBeNull(column=check.column, **condition)
    if check.kind == "max_null_fraction":
        assert check.max_null_fraction is not None
        mostly = max(0.0, min(1.0, 1.0 - check.max_null_fraction))
        return expectations.ExpectColumnValuesToNotBeNull(column=check.column, mostly=mostly, **condition)
    if check.kind == "between":
        return expectations.ExpectColumnValuesToBeBetween(
            column=check.column, min_value=check.min_value, max_value=check.max_value, **condition
        )
    helper = counting_column(check) if counting else None
    if check.kind == "unique" and helper:
        return expectations.ExpectColumnValuesToBeUnique(column=helper, **condition)
    if check.kind == "columns_equal" and helper:
        return expectations.ExpectColumnValuesToBeBetween(
            column=helper, min_value=1, max_value=1, **condition
        )
    if check.kind == "unique":
        return expectations.ExpectCompoundColumnsToBeUnique(column_list=list(check.columns), **condition)
    if check.kind == "columns_equal":
        first, second = check.columns
        return expectations.ExpectColumnPairValuesToBeEqual(column_A=first, column_B=second, **condition)
    raise AssertionError(f"unknown check kind {check.kind}")  # pragma: no cover


def _identity(expectation: Any) -> tuple[str, dict[str, Any]]:
    """What GE compares (with ``==``: ``mostly=1`` equals ``mostly=1.0``) to find one already in a suite."""
    return expectation.expectation_type, expectation.dict(exclude={"id", "rendered_content", "notes", "meta"})


def _shown(values: Sequence[Any]) -> str:
    return ", ".join(json.dumps(v, default=str) for v in values[:PARTIAL_UNEXPECTED])


def observed(check: Check, success: bool, result: Mapping[str, Any], error: str | None = None) -> str:
    """A one-line account of what the check saw (GE's SUMMARY result)."""
    if error:
        return f"could not be evaluated: {error}"
    total = int(result.get("element_count") or 0)
    bad = int(result.get("unexpected_count") or 0)
    examples = list(result.get("partial_unexpected_list") or [])
    rows = "rows with a value" if check.values_only else "rows"
    if check.kind == "max_null_fraction":
        fraction = bad / total if total else 0.0
        allowed = f"allowed at most {check.max_null_fraction:g}"
        return f"null fraction {fraction:.4g} ({bad} of {total} {rows}), {allowed}"
    if check.kind == "not_null":
        return f"{bad} of {total} {rows} are null"
    if check.kind == "between":
        seen = f"{bad} of {total} values outside the range"
        return f"{seen}, e.g. {_shown(examples)}" if examples else seen
    if check.kind == "unique":
        seen = f"{bad} of {total} rows share their {', '.join(check.columns)} with another row"
        return f"{seen}, e.g. {_shown(examples)}" if examples else seen
    labels = check.labels or check.columns
    seen = f"{bad} of {total} rows differ"
    if examples:
        pairs = "; ".join(f"{labels[0]}={a} but {labels[1]}={b}" for a, b in examples[:PARTIAL_UNEXPECTED])
        seen = f"{seen}, e.g. {pairs}"
    return seen


def _run(
    context: Any, batch: Any, suite: Any, frame: DataFrame, view: ViewSpec, name: str, *, partial: int
) -> list[Any]:
    """Validate ``frame`` against ``suite``; GE's results in the order the expectations were added."""
    import great_expectations as gx

    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name=f"{view.name}.{name}", data=batch, suite=suite)
    )
    outcome = definition.run(
        batch_parameters={"dataframe": frame},
        result_format={"result_format": "SUMMARY", "partial_unexpected_count": partial},
    )
    return list(outcome.results)


def evaluate(
    rows: DataFrame, view: ViewSpec, checks: Sequence[Check] | None = None
) -> tuple[int, list[CheckResult]]:
    """Run ``checks`` (default: the view's) with Great Expectations; returns the row count too.

    ``rows`` is read once per GE query and not cached: pass staged Parquet (as every caller
    does) or a persisted frame.
    """
    for thread in _preloading:
        thread.join()
    _quiet_great_expectations()
    checks = list(build_checks(view) if checks is None else checks)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        _quiet_great_expectations()
        context = gx.get_context(mode="ephemeral")
        context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
        source = context.data_sources.add_spark(name="skewless", persist=False)
        asset = source.add_dataframe_asset(name=view.name)
        batch = asset.add_batch_definition_whole_dataframe("staged")
        suite = context.suites.add(gx.ExpectationSuite(name=f"{view.name}.v{view.version}"))
        # A suite is set-like: GE drops an expectation equal to one already added (e.g. a
        # declared `not_null` and `max_null_fraction: 0` of the same feature). Results come
        # back in the order the distinct expectations were added.
        distinct: list[tuple[str, dict[str, Any]]] = []
        position = []
        for check in checks:
            expectation = _expectation(check, counting=True)
            key = _identity(expectation)
            if key not in distinct:
                distinct.append(key)
                suite.add_expectation(expectation)
            position.append(distinct.index(key))
        # Not persisted: the rows are staged Parquet, and each of GE's queries reads only the
        # columns it needs (caching every column of 10.3M rows first cost more than all the
        # queries together, docs/validation.md).
        frame = prepare_rows(rows, view).withColumns(counting_columns(checks))
        count = frame.count()
        # Counts of every check first, without examples: GE then skips the per-check query for
        # unexpected values. A counting form can fail where the full check would pass (a hash
        # collision) but never the reverse, so only the failed checks run again, in full: their
        # result decides and holds the examples.
        outcome = _run(context, batch, suite, frame, view, "staged", partial=0)
        failed = [i for i, r in enumerate(outcome) if not r.success]
        if failed:
            again = context.suites.add(gx.ExpectationSuite(name=f"{view.name}.v{view.version}.failed"))
            for index in failed:
                again.add_expectation(_expectation(checks[position.index(index)]))
            examples = _run(context, batch, again, frame, view, "failed", partial=PARTIAL_UNEXPECTED)
            for index, result in zip(failed, examples, strict=True):
                outcome[index] = result
    if len(outcome) != len(distinct):  # pragma: no cover - a GE behaviour change
        raise SkewlessError(f"Great Expectations returned {len(outcome)} results for {len(distinct)}")
    results = []
    for check, index in zip(checks, position, strict=True):
        result = outcome[index]
        body = json.loads(json.dumps(result.result or {}, default=str))
        info = result.exception_info or {}
        error = None
        if isinstance(info, Mapping) and info.get("raised_exception"):
            error = str(info.get("exception_message") or "exception")
        success = bool(result.success) and error is None
        results.append(CheckResult(check, success, observed(check, success, body, error), body))
    return count, results


def validate_rows(
    rows: DataFrame,
    view: ViewSpec,
    settings: Settings,
    start: date,
    end: date,
    *,
    raise_on_failure: bool = True,
) -> ValidationReport:
    """Audit the rows of ``view`` for ds ``start..end``; keep the report; raise when any check fails."""
    created = datetime.now(UTC)
    count, results = evaluate(rows, view)
    uri = report_uri(settings, view.name, start, end, created)
    report = ValidationReport(view.name, view.version, start, end, count, tuple(results), created, uri)
    write_text(uri, report.to_json())
    if report.success:
        log.info("%s: %d expectations passed on ds %s..%s (%s)", view.name, len(results), start, end, uri)
    elif raise_on_failure:
        raise ValidationFailed(report.describe_failures())
    return report
