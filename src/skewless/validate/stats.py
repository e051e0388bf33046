"""Feature statistics and drift per committed partition, kept as mergeable per-day summaries.

:func:`record_stats` reads the committed ``ds`` partitions of a view's offline table once and
writes one row per ``(ds, feature)`` to ``<offline_root>/_stats/<view>/summaries-v<version>``
(partitioned by ``ds``; rerunning a ``ds`` replaces its rows), see docs/validation.md:

* every feature: rows, non-null count, null rate (over all rows, tombstones included);
* numeric features (int64, float64): mean, sample stddev, min, max over the non-null values, and
  a KLL quantile sketch (Apache DataSketches, Spark's ``kll_sketch_agg_double``) of the non-null,
  non-NaN values, with the p50/p90/p99 read from it. Sketches of several days merge into the
  sketch of their union, so any window's quantiles come from the stored rows alone;
* drift: the PSI (:mod:`skewless.validate.psi`) of each numeric feature on the partition against
  the previous ``validation.drift_reference_days`` partitions, from the stored summaries: the
  reference days' sketches are merged, the bin edges are the merged sketch's quantiles, and both
  sides' bin counts come from the sketches' ranks at those edges, all in this process
  (:mod:`skewless.validate.kll`). ``drift_psi_warn`` logs a
  warning; ``drift_psi_fail`` raises :class:`~skewless.errors.DriftDetected` after the
  statistics are written (the partition is already committed: drift is an alert, not a gate).

A stored summary is used for a reference day only if it was computed from the files that are
committed for that day now (a fingerprint of the partition's file list in the Delta log); a day
without one (committed without statistics, or rewritten since) is summarised from its rows in the
same pass. A nightly run therefore reads one day of rows plus the stored summaries, and a backfill
of many days reads each row once.
"""

from __future__ import annotations

import hashlib
import logging
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from skewless.errors import DriftDetected
from skewless.manifest import ViewSpec
from skewless.runtime.settings import Settings, ValidationSettings, join_uri
from skewless.validate import kll
from skewless.validate.psi import DriftStatus, bin_edges, classify, counts_from_ranks, psi, quantile_levels
from skewless.validate.suite import NUMERIC_DTYPES

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession
    from pyspark.sql.types import StructType

log = logging.getLogger(__name__)

QUANTILES = (0.5, 0.9, 0.99)
SKETCH_K = 2000
"""KLL accuracy parameter: normalized rank error about 0.15% (docs/validation.md gives the PSI
tolerance this buys); a sketch of a day's values takes about 30 KB."""


@dataclass(frozen=True)
class FeatureStats:
    ds: date
    feature: str
    dtype: str
    rows: int
    tombstones: int
    non_null: int
    null_rate: float | None
    mean: float | None = None
    stddev: float | None = None
    min: float | None = None
    max: float | None = None
    p50: float | None = None
    p90: float | None = None
    p99: float | None = None
    psi: float | None = None
    drift_status: str | None = None
    """``ok``, ``warn``, ``fail``, ``no_reference``, ``no_values``, ``too_few_values`` (fewer than
    ``drift_min_values`` on a side: PSI kept, no alert); None for non-numeric features."""
    reference_days: int | None = None
    reference_values: int | None = None
    sketch: bytes | None = field(default=None, repr=False)
    """KLL sketch (DataSketches ``KllDoublesSketch``) of the non-null, non-NaN values; numeric only."""
    sketch_values: int | None = None
    """Values in ``sketch`` (``non_null`` minus NaNs)."""
    partition_fingerprint: str | None = None
    """The committed files of the view's ``ds`` partition these statistics were computed from."""


@dataclass(frozen=True)
class StatsResult:
    view: str
    start: date
    end: date
    stats: tuple[FeatureStats, ...]
    table_version: int | None
    """Version of the stats table written (None when no partition of the range is committed)."""
    uri: str
    days_read: tuple[date, ...] = ()
    """The ``ds`` partitions whose rows were read: the range, plus reference days without a usable
    stored summary."""

    @property
    def days(self) -> list[date]:
        return sorted({s.ds for s in self.stats})

    def with_status(self, status: str) -> list[FeatureStats]:
        return [s for s in self.stats if s.drift_status == status]

    def raise_for_drift(self, config: ValidationSettings) -> None:
        """DriftDetected when a feature's PSI reached ``drift_psi_fail``."""
        if self.with_status("fail"):
            raise DriftDetected(
                f"{self.describe_drift('fail', config.drift_psi_fail)}\n"
                f"(the partitions are committed; statistics are in {self.uri})"
            )

    def describe_drift(self, status: str, threshold: float | None) -> str:
        lines = [
            f"{s.ds} {s.feature}: PSI {s.psi:.4f} against {s.reference_days} reference day(s)"
            for s in self.with_status(status)
        ]
        return f"view {self.view!r}: feature drift at or above PSI {threshold}:\n  - " + "\n  - ".join(lines)


def stats_uri(settings: Settings, view: ViewSpec) -> str:
    # ``summaries-`` marks the layout with sketches: tables of the earlier layout stay at ``v<version>``.
    return join_uri(settings.offline_root, f"_stats/{view.name}/summaries-v{view.version}")


def stats_schema() -> StructType:
    from pyspark.sql import types as T

    def f(name: str, data_type: T.DataType) -> T.StructField:
        return T.StructField(name, data_type, True)

    double, long, string = T.DoubleType(), T.LongType(), T.StringType()
    return T.StructType(
        [
            f("view", string),
            f("version", long),
            f("ds", T.DateType()),
            f("feature", string),
            f("dtype", string),
            f("rows", long),
            f("tombstones", long),
            f("non_null", long),
            f("null_rate", double),
            f("mean", double),
            f("stddev", double),
            f("min", double),
            f("max", double),
            f("p50", double),
            f("p90", double),
            f("p99", double),
            f("psi", double),
            f("drift_status", string),
            f("reference_days", long),
            f("reference_values", long),
            f("sketch", T.BinaryType()),
            f("sketch_values", long),
            f("partition_fingerprint", string),
            f("table_version", long),
            f("computed_at", T.TimestampType()),
        ]
    )


def read_stats(spark: SparkSession, settings: Settings, view: ViewSpec, start: date, end: date) -> DataFrame:
    from skewless.offline.delta import delta_tables

    return delta_tables(spark).read(stats_uri(settings, view), stats_schema(), ds_range=(start, end))


def _sketch_values(sketch: Column) -> Column:
    """``kll_sketch_get_*`` reject an empty sketch: guard every read with its count."""
    from pyspark.sql import functions as F

    return F.kll_sketch_get_n_double(sketch)


def _doubles(values: Sequence[float]) -> Column:
    """A literal ``array<double>`` (``kll_sketch_get_*`` take positions only as literals).

    SQL text is parsed in one Py4J call, where ``F.array(F.lit(v), ...)`` costs one per value;
    ``repr`` round-trips a double exactly.
    """
    from pyspark.sql import functions as F

    return F.expr("array(" + ", ".join(f"{float(v)!r}D".upper() for v in values) + ")")


def summarize(rows: DataFrame, view: ViewSpec) -> list[FeatureStats]:
    """Per ``(ds, feature)`` statistics of ``rows``: one Spark aggregation grouped by ``ds``."""
    from pyspark.sql import functions as F

    has_value = F.lit(False)
    for name in view.feature_names:
        has_value = has_value | F.col(name).isNotNull()
    aggregates = [F.count(F.lit(1)).alias("rows"), F.sum((~has_value).cast("long")).alias("tombstones")]
    reads: list[Column] = []
    for index, feature in enumerate(view.features):
        column = F.col(feature.name)
        aggregates.append(F.count(column).alias(f"n{index}"))
        if feature.dtype in NUMERIC_DTYPES:
            value = column.cast("double")
            aggregates += [
                F.avg(value).alias(f"mean{index}"),
                F.stddev_samp(value).alias(f"sd{index}"),
                F.min(value).alias(f"min{index}"),
                F.max(value).alias(f"max{index}"),
                F.kll_sketch_agg_double(F.when(~F.isnan(value), value), SKETCH_K).alias(f"k{index}"),
            ]
            sketch = F.col(f"k{index}")
            levels = _doubles(QUANTILES)
            reads += [
                _sketch_values(sketch).alias(f"kn{index}"),
                F.when(_sketch_values(sketch) > 0, F.kll_sketch_get_quantile_double(sketch, levels)).alias(
                    f"q{index}"
                ),
            ]
    out = []
    # One row per ds: sorted here, not by Spark (a sort is a shuffle and two more jobs).
    summaries = rows.groupBy("ds").agg(*aggregates).select("*", *reads).collect()
    for row in sorted(summaries, key=lambda r: r["ds"]):
        total = int(row["rows"])
        for index, feature in enumerate(view.features):
            non_null = int(row[f"n{index}"])
            numbers: dict[str, Any] = {}
            if feature.dtype in NUMERIC_DTYPES:
                quantiles = row[f"q{index}"] or [None] * len(QUANTILES)
                numbers = {
                    "mean": row[f"mean{index}"],
                    "stddev": row[f"sd{index}"],
                    "min": row[f"min{index}"],
                    "max": row[f"max{index}"],
                    "p50": quantiles[0],
                    "p90": quantiles[1],
                    "p99": quantiles[2],
                    "sketch": bytes(row[f"k{index}"]),
                    "sketch_values": int(row[f"kn{index}"]),
                }
            out.append(
                FeatureStats(
                    ds=row["ds"],
                    feature=feature.name,
                    dtype=feature.dtype,
                    rows=total,
                    tombstones=int(row["tombstones"] or 0),
                    non_null=non_null,
                    null_rate=(total - non_null) / total if total else None,
                    **numbers,
                )
            )
    return out


@dataclass(frozen=True)
class Summary:
    """What drift needs of one ``(ds, feature)``: its sketch and how many values it holds."""

    values: int
    sketch: bytes | None


@dataclass(frozen=True)
class Drift:
    psi: float | None
    reference_days: int
    reference_values: int


def reference_window(day: date, config: ValidationSettings) -> list[date]:
    """The calendar days whose committed partitions are ``day``'s reference."""
    return [day - timedelta(days=i) for i in range(config.drift_reference_days, 0, -1)]


def reference_histogram(sketches: Sequence[bytes], bins: int) -> tuple[int, list[float], list[int]]:
    """The reference side of a PSI from its days' sketches: the merged sketch's number of values,
    the bin edges at its ``bins`` quantile levels, and its count per bin (no edges: no counts)."""
    reference = kll.merged(sketches, SKETCH_K)
    values = int(reference.n)
    edges = bin_edges(kll.quantiles(reference, quantile_levels(bins)))
    return values, edges, counts_from_ranks(kll.ranks(reference, edges), values) if edges else []


def drift(
    summaries: Mapping[tuple[date, str], Summary],
    days: Sequence[date],
    features: Sequence[str],
    config: ValidationSettings,
) -> dict[tuple[date, str], Drift]:
    """PSI per ``(day, feature)`` for ``day`` in ``days``, from per-day summaries only (pure).

    ``summaries`` holds every committed day of the days and their reference windows. Per target
    day the reference sketches are merged (:mod:`skewless.validate.kll`, in this process); the
    edges are the merged sketch's quantiles at the ``drift_bins`` levels; both sides' ranks at
    those edges give the bin counts (:func:`counts_from_ranks`).
    """
    out: dict[tuple[date, str], Drift] = {}
    for day in days:
        window = [d for d in reference_window(day, config) if any((d, f) in summaries for f in features)]
        for name in features:
            found = [s.sketch for d in window if (s := summaries.get((d, name))) and s.values and s.sketch]
            if not found:
                out[(day, name)] = Drift(None, len(window), 0)
                continue
            values, edges, expected = reference_histogram(found, config.drift_bins)
            if not edges:
                out[(day, name)] = Drift(None, len(window), values)
                continue
            current = summaries.get((day, name))
            actual = [0] * len(expected)
            if current and current.values and current.sketch:
                actual = counts_from_ranks(kll.ranks(kll.read(current.sketch), edges), current.values)
            out[(day, name)] = Drift(psi(expected, actual), len(window), values)
    return out


def _status(stats: FeatureStats, found: Drift | None, config: ValidationSettings) -> DriftStatus:
    if stats.non_null == 0:
        return "no_values"
    if found is None or found.psi is None:
        return "no_reference"
    if min(stats.sketch_values or 0, found.reference_values) < config.drift_min_values:
        return "too_few_values"
    return classify(found.psi, config.drift_psi_warn, config.drift_psi_fail)


def partition_fingerprints(table_uri: str, version: int, start: date, end: date) -> dict[date, str]:
    """A digest of each committed ``ds`` partition's file list in ``start..end`` (Delta log only).

    Every commit writes new file names, so a rewritten partition gets a new fingerprint.
    """
    import pyarrow as pa
    from deltalake import DeltaTable

    from skewless.offline.storage_options import storage_options

    table = DeltaTable(table_uri, version=version, storage_options=storage_options(table_uri))
    files: dict[date, list[str]] = defaultdict(list)
    for action in pa.table(table.get_add_actions(flatten=True)).select(["path", "partition.ds"]).to_pylist():
        value = action["partition.ds"]
        day = value if isinstance(value, date) or value is None else date.fromisoformat(str(value))
        if day is not None and start <= day <= end:
            files[day].append(action["path"])
    return {
        day: hashlib.sha256("\n".join(sorted(paths)).encode()).hexdigest()[:32]
        for day, paths in files.items()
    }


def record_stats(
    spark: SparkSession,
    settings: Settings,
    view: ViewSpec,
    start: date,
    end: date | None = None,
    *,
    raise_on_drift: bool = True,
) -> StatsResult:
    """Compute statistics and drift for the committed partitions of ``start..end`` and store them."""
    from pyspark.sql import functions as F

    from skewless.offline.delta import CommitInfo, delta_tables
    from skewless.offline.schemas import view_schema

    end = end or start
    config = settings.validation
    tables = delta_tables(spark)
    table_uri = settings.table_uri(view.table)
    uri = stats_uri(settings, view)
    table_version = tables.version(table_uri)
    numeric = [f.name for f in view.features if f.dtype in NUMERIC_DTYPES]
    window_start = start - timedelta(days=config.drift_reference_days)
    committed = (
        {} if table_version is None else partition_fingerprints(table_uri, table_version, window_start, end)
    )
    targets = sorted(d for d in committed if start <= d)
    if table_version is None or not targets:
        log.warning("%s: no committed rows for ds %s..%s: no statistics", view.name, start, end)
        return StatsResult(view.name, start, end, (), None, uri)

    summaries: dict[tuple[date, str], Summary] = {}
    references = sorted(d for d in committed if d < start) if numeric else []
    described: set[date] = set()
    if references:
        stored = (
            read_stats(spark, settings, view, references[0], references[-1])
            .select("ds", "feature", "sketch", "sketch_values", "partition_fingerprint")
            .collect()
        )
        for row in stored:
            if row["partition_fingerprint"] != committed.get(row["ds"]):
                continue  # computed from files that are no longer committed
            described.add(row["ds"])
            if row["feature"] in numeric:
                sketch = None if row["sketch"] is None else bytes(row["sketch"])
                summaries[(row["ds"], row["feature"])] = Summary(int(row["sketch_values"] or 0), sketch)
    for day in described:
        for name in numeric:
            # A feature added since (its column added, the files unchanged) is null in every row.
            summaries.setdefault((day, name), Summary(0, None))
    unsummarised = [d for d in references if d not in described]
    if unsummarised:
        log.info(
            "%s: reference day(s) %s have no statistics of their committed files: summarising their rows",
            view.name,
            ", ".join(map(str, unsummarised)),
        )
    days_read = sorted({*targets, *unsummarised})
    rows = tables.read(
        table_uri, view_schema(view), version=table_version, ds_range=(days_read[0], days_read[-1])
    )
    if len(days_read) < (days_read[-1] - days_read[0]).days + 1:
        rows = rows.where(F.col("ds").isin(days_read))
    summarised = summarize(rows, view)
    for item in summarised:
        if item.feature in numeric:
            summaries[(item.ds, item.feature)] = Summary(item.sketch_values or 0, item.sketch)
    drifts = drift(summaries, targets, numeric, config)

    stats = []
    for item in summarised:
        if item.ds < start:
            continue  # a reference day summarised for the drift only
        update: dict[str, Any] = {"partition_fingerprint": committed[item.ds]}
        if item.feature in numeric:
            found = drifts.get((item.ds, item.feature))
            update |= {
                "psi": found.psi if found else None,
                "drift_status": _status(item, found, config),
                "reference_days": found.reference_days if found else 0,
                "reference_values": found.reference_values if found else 0,
            }
        stats.append(FeatureStats(**{**asdict(item), **update}))
    computed_at = datetime.now(UTC)
    schema_out = stats_schema()
    extra = {"view": view.name, "version": view.version, "table_version": table_version,
             "computed_at": computed_at}  # fmt: skip
    records = [tuple({**asdict(s), **extra}[name] for name in schema_out.fieldNames()) for s in stats]
    version = tables.replace_partitions_with_rows(
        records, schema_out, uri, targets, CommitInfo("stats", view.name)
    )
    result = StatsResult(view.name, start, end, tuple(stats), version, uri, tuple(days_read))
    for item in result.with_status("warn"):
        log.warning(
            "%s ds %s: feature %s drifted: PSI %.4f against %d reference day(s) (warn at %s)",
            view.name,
            item.ds,
            item.feature,
            item.psi,
            item.reference_days,
            config.drift_psi_warn,
        )
    log.info("%s: statistics of ds %s..%s written to %s (version %d)", view.name, start, end, uri, version)
    if raise_on_drift:
        result.raise_for_drift(config)
    return result
