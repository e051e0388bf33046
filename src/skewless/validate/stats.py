"""Feature statistics and drift per committed partition, kept in a Delta table per view.

:func:`record_stats` reads committed ``ds`` partitions of a view's offline table and writes one
row per ``(ds, feature)`` to ``<offline_root>/_stats/<view>/v<version>`` (partitioned by ``ds``;
rerunning a ``ds`` replaces its rows):

* every feature: rows, non-null count, null rate (over all rows, tombstones included);
* numeric features (int64, float64): mean, sample stddev, min, max and approximate p50/p90/p99
  over the non-null values;
* drift: the PSI (:mod:`skewless.validate.psi`) of each numeric feature's non-null values on
  the partition against the previous ``validation.drift_reference_days`` partitions, binned at
  the reference window's quantiles (alerts need ``drift_min_values`` values on both sides).
  ``drift_psi_warn`` logs a warning; ``drift_psi_fail`` raises
  :class:`~skewless.errors.DriftDetected` after the statistics are written (the partition is
  already committed: drift is an alert, not a gate).

Everything is computed in Spark; the driver only sees one aggregate row per ``ds`` and the bin
counts. A backfill of many days costs the same few Spark jobs as one day.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from skewless.errors import DriftDetected
from skewless.manifest import ViewSpec
from skewless.runtime.settings import Settings, ValidationSettings, join_uri
from skewless.validate.psi import DriftStatus, bin_edges, classify, dense, psi, quantile_levels
from skewless.validate.suite import NUMERIC_DTYPES

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.types import StructType

log = logging.getLogger(__name__)

QUANTILES = (0.5, 0.9, 0.99)
QUANTILE_ACCURACY = 10_000


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


@dataclass(frozen=True)
class StatsResult:
    view: str
    start: date
    end: date
    stats: tuple[FeatureStats, ...]
    table_version: int | None
    """Version of the stats table written (None when no partition of the range is committed)."""
    uri: str

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
    return join_uri(settings.offline_root, f"_stats/{view.name}/v{view.version}")


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
            f("table_version", long),
            f("computed_at", T.TimestampType()),
        ]
    )


def read_stats(spark: SparkSession, settings: Settings, view: ViewSpec, start: date, end: date) -> DataFrame:
    from skewless.offline.delta import delta_tables

    return delta_tables(spark).read(stats_uri(settings, view), stats_schema(), ds_range=(start, end))


def describe(rows: DataFrame, view: ViewSpec) -> list[FeatureStats]:
    """Per ``(ds, feature)`` statistics of ``rows`` (one Spark aggregation grouped by ``ds``)."""
    from pyspark.sql import functions as F

    has_value = F.lit(False)
    for name in view.feature_names:
        has_value = has_value | F.col(name).isNotNull()
    aggregates = [F.count(F.lit(1)).alias("rows"), F.sum((~has_value).cast("long")).alias("tombstones")]
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
                F.percentile_approx(value, list(QUANTILES), QUANTILE_ACCURACY).alias(f"q{index}"),
            ]
    out = []
    for row in rows.groupBy("ds").agg(*aggregates).orderBy("ds").collect():
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
class Drift:
    psi: float | None
    reference_days: int
    reference_values: int


def drift(
    history: DataFrame, view: ViewSpec, start: date, end: date, config: ValidationSettings
) -> dict[tuple[date, str], Drift]:
    """PSI per ``(ds, numeric feature)`` for ``ds`` in ``start..end``.

    ``history`` holds the committed rows of ``start - reference_days .. end``. Each row is a
    value of its own ``ds`` and a reference value of the next ``reference_days`` days; edges are
    the reference quantiles per target day, shared by both sides.
    """
    from pyspark.sql import functions as F

    numeric = [f.name for f in view.features if f.dtype in NUMERIC_DTYPES]
    if not numeric:
        return {}
    days = config.drift_reference_days
    values = history.select("ds", *[F.col(name).cast("double").alias(name) for name in numeric])
    current = values.where(F.col("ds") >= F.lit(start)).select(
        F.col("ds").alias("target"), F.lit("cur").alias("role"), *numeric
    )
    reference = (
        values.select(
            F.explode(F.sequence(F.date_add("ds", 1), F.date_add("ds", days))).alias("target"),
            F.lit("ref").alias("role"),
            "ds",
            *numeric,
        )
        .where(F.col("target").between(F.lit(start), F.lit(end)))
        .persist()
    )
    try:
        levels = quantile_levels(config.drift_bins)
        edge_rows = (
            reference.groupBy("target")
            .agg(
                F.count_distinct("ds").alias("ref_days"),
                *[
                    F.percentile_approx(F.when(~F.isnan(name), F.col(name)), levels, QUANTILE_ACCURACY).alias(
                        name
                    )
                    for name in numeric
                ],
            )
            .collect()
        )
        edges: dict[tuple[date, str], list[float]] = {}
        reference_days: dict[date, int] = {}
        for row in edge_rows:
            reference_days[row["target"]] = int(row["ref_days"])
            for name in numeric:
                found = bin_edges(row[name] or [])
                if row[name]:
                    edges[(row["target"], name)] = found
        counts: dict[tuple[date, str, str], dict[int, int]] = defaultdict(dict)
        if edges:
            edge_frame = history.sparkSession.createDataFrame(
                [(target, name, found) for (target, name), found in sorted(edges.items())],
                "target date, feature string, edges array<double>",
            )
            pairs = F.array(*[F.struct(F.lit(n).alias("feature"), F.col(n).alias("value")) for n in numeric])
            long = (
                reference.drop("ds")
                .unionByName(current)
                .select("target", "role", F.explode(pairs).alias("x"))
                .select("target", "role", "x.feature", "x.value")
                .where(F.col("value").isNotNull() & ~F.isnan("value"))
            )
            binned = long.join(F.broadcast(edge_frame), ["target", "feature"]).select(
                "target",
                "role",
                "feature",
                F.size(F.filter("edges", lambda e: e < F.col("value"))).alias("bin"),
            )
            for row in binned.groupBy("target", "role", "feature", "bin").count().collect():
                counts[(row["target"], row["role"], row["feature"])][int(row["bin"])] = int(row["count"])
    finally:
        reference.unpersist()

    out: dict[tuple[date, str], Drift] = {}
    for day in (start + timedelta(days=i) for i in range((end - start).days + 1)):
        for name in numeric:
            shared = edges.get((day, name))
            if shared is None:
                out[(day, name)] = Drift(None, reference_days.get(day, 0), 0)
                continue
            bins = len(shared) + 1
            ref_counts = dense(counts.get((day, "ref", name), {}), bins)
            cur_counts = dense(counts.get((day, "cur", name), {}), bins)
            out[(day, name)] = Drift(psi(ref_counts, cur_counts), reference_days.get(day, 0), sum(ref_counts))
    return out


def _status(stats: FeatureStats, found: Drift | None, config: ValidationSettings) -> DriftStatus:
    if stats.non_null == 0:
        return "no_values"
    if found is None or found.psi is None:
        return "no_reference"
    if min(stats.non_null, found.reference_values) < config.drift_min_values:
        return "too_few_values"
    return classify(found.psi, config.drift_psi_warn, config.drift_psi_fail)


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
    from skewless.offline.delta import CommitInfo, delta_tables
    from skewless.offline.schemas import view_schema

    end = end or start
    config = settings.validation
    tables = delta_tables(spark)
    table_uri = settings.table_uri(view.table)
    table_version = tables.version(table_uri)
    schema = view_schema(view)
    rows = tables.read(table_uri, schema, version=table_version, ds_range=(start, end))
    described = describe(rows, view)
    uri = stats_uri(settings, view)
    if not described:
        log.warning("%s: no committed rows for ds %s..%s: no statistics", view.name, start, end)
        return StatsResult(view.name, start, end, (), None, uri)
    history_start = start - timedelta(days=config.drift_reference_days)
    history = tables.read(table_uri, schema, version=table_version, ds_range=(history_start, end))
    drifts = drift(history, view, start, end, config)

    stats = []
    for item in described:
        if item.dtype not in NUMERIC_DTYPES:
            stats.append(item)
            continue
        found = drifts.get((item.ds, item.feature))
        status = _status(item, found, config)
        stats.append(
            FeatureStats(
                **{
                    **asdict(item),
                    "psi": found.psi if found else None,
                    "drift_status": status,
                    "reference_days": found.reference_days if found else 0,
                    "reference_values": found.reference_values if found else 0,
                }
            )
        )
    computed_at = datetime.now(UTC)
    schema_out = stats_schema()
    extra = {"view": view.name, "version": view.version, "table_version": table_version,
             "computed_at": computed_at}  # fmt: skip
    records = [tuple({**asdict(s), **extra}[name] for name in schema_out.fieldNames()) for s in stats]
    frame = spark.createDataFrame(records, schema_out).coalesce(1)
    days = sorted({s.ds for s in stats})
    version = tables.replace_partitions(frame, uri, days, CommitInfo("stats", view.name))
    result = StatsResult(view.name, start, end, tuple(stats), version, uri)
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
