"""Write-audit-publish gate: run a view's checks with Great Expectations on the staged rows.

:func:`validate_rows` evaluates :func:`skewless.validate.suite.build_checks` in an ephemeral GE
context over a Spark dataframe data source, always keeps the report as JSON under
``<offline_root>/_reports/validation/<view>/<start>_<end>-<timestamp>.json``, and raises
:class:`~skewless.errors.ValidationFailed` naming the view, the ds range and every failed check
with its observed value. :func:`skewless.orchestration.run_range` passes it to
:func:`skewless.offline.jobs.run_view` as its ``gate``; the DAG's validate step calls it on the
staged rows.

Great Expectations takes seconds to import and logs a lot: it is imported on first use only,
its loggers are set to WARNING and its progress bars are off.
"""

from __future__ import annotations

import json
import logging
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
    from pyspark.sql import DataFrame


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


def _expectation(check: Check) -> Any:
    """The GE expectation for ``check`` (GE imported by the caller)."""
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
    """Run ``checks`` (default: the view's) with Great Expectations; returns the row count too."""
    _quiet_great_expectations()
    checks = list(build_checks(view) if checks is None else checks)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        _quiet_great_expectations()
        context = gx.get_context(mode="ephemeral")
        context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
        source = context.data_sources.add_spark(name="skewless", persist=False)  # we persist ourselves
        asset = source.add_dataframe_asset(name=view.name)
        batch = asset.add_batch_definition_whole_dataframe("staged")
        suite = context.suites.add(gx.ExpectationSuite(name=f"{view.name}.v{view.version}"))
        # A suite is set-like: GE drops an expectation equal to one already added (e.g. a
        # declared `not_null` and `max_null_fraction: 0` of the same feature). Results come
        # back in the order the distinct expectations were added.
        distinct: list[tuple[str, dict[str, Any]]] = []
        position = []
        for check in checks:
            expectation = _expectation(check)
            key = _identity(expectation)
            if key not in distinct:
                distinct.append(key)
                suite.add_expectation(expectation)
            position.append(distinct.index(key))
        frame = prepare_rows(rows, view).persist()
        try:
            count = frame.count()
            # Counts of every check first, without examples: GE then skips the per-check query
            # for unexpected values (16 Spark jobs instead of 27 for a snapshot view's five checks,
            # docs/validation.md). Only the failed checks run again, for their examples.
            outcome = _run(context, batch, suite, frame, view, "staged", partial=0)
            failed = [i for i, r in enumerate(outcome) if not r.success]
            if failed:
                again = context.suites.add(gx.ExpectationSuite(name=f"{view.name}.v{view.version}.failed"))
                for index in failed:
                    again.add_expectation(_expectation(checks[position.index(index)]))
                examples = _run(context, batch, again, frame, view, "failed", partial=PARTIAL_UNEXPECTED)
                for index, result in zip(failed, examples, strict=True):
                    outcome[index] = result
        finally:
            frame.unpersist()
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
