"""Publish offline view partitions to Redis: the work behind ``skewless materialize``.

The view table's partitions are read with Spark and written by the executors with
``DataFrame.foreachPartition``: one Redis connection per Spark partition, rows encoded in the
worker and sent in bounded batches (``batch_size`` keys per ``EVALSHA``, ``pipeline_depth``
batches per round trip). Nothing but a few counters comes back to the driver.

Every write is a check-and-set inside Redis (see :mod:`skewless.online.redis_store`), so
partitions may be written in any order, concurrently, or again: a rerun after a failure, or a
late backfill of an old ``ds``, never replaces a newer value.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any, Literal

from skewless import semantics
from skewless.errors import OnlineStoreError, PublishRefused, SkewlessError, TableError
from skewless.manifest import Manifest, ViewSpec
from skewless.online.encoding import MIN_TIMESTAMP_US
from skewless.online.published import record_published
from skewless.online.redis_store import MAX_BATCH, env_password
from skewless.online.store import DEFAULT_BATCH_SIZE, DEFAULT_PIPELINE_DEPTH, RedisOnlineStore
from skewless.runtime.settings import Settings

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

log = logging.getLogger(__name__)

Transport = Literal["rows", "arrow"]
TRANSPORTS: tuple[Transport, ...] = ("rows", "arrow")
STATS = ("rows", "tombstones", "written", "kept_newer", "already_expired")
# Lets the driver pick the worker's message out of Spark's wrapped Python traceback.
_MARKER = "[skewless-online] "
_MARKER_RE = re.compile(re.escape(_MARKER) + r"(.+)")


@dataclass(frozen=True)
class MaterializeResult:
    view: str
    start: date
    end: date
    rows: int
    """Rows read from the offline table (values and tombstones)."""
    tombstones: int
    written: int
    kept_newer: int
    """Rows not written because Redis already held a newer value for the key."""
    already_expired: int
    """Rows not written because their ``feature_ts + ttl`` had passed."""
    days_without_rows: tuple[date, ...]
    """Days of the range with no committed rows (never computed, or no entity at all)."""


def materialize(
    spark: SparkSession,
    settings: Settings,
    manifest: Manifest,
    view_name: str,
    start: date,
    end: date | None = None,
    *,
    now: datetime | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    pipeline_depth: int = DEFAULT_PIPELINE_DEPTH,
    transport: Transport = "rows",
) -> MaterializeResult:
    """Publish the rows of ``view_name`` for every ``ds`` in ``[start, end]`` to Redis.

    ``transport`` is how rows reach the executors' Python writers: ``"rows"`` is
    ``DataFrame.foreachPartition`` over pickled Rows (the design's path); ``"arrow"`` is
    ``DataFrame.mapInArrow`` over Arrow record batches, about twice the throughput (Row
    deserialization dominates the first). Both write from the executors with one connection per
    partition and return only counters to the driver.
    """
    from skewless.offline.delta import delta_tables
    from skewless.offline.jobs import days_between
    from skewless.offline.schemas import view_schema
    from skewless.runtime.spark import require_classic

    require_classic(
        spark,
        "materialize (executors write to Redis with foreachPartition/mapInArrow and accumulators)",
        "run `skewless materialize` (or the DAG's materialize task) with spark.master local[N] or "
        "spark://..., or spark-submit jobs/view_task.py materialize",
    )
    view = manifest.view(view_name)
    end = end or start
    days = days_between(start, end)
    now = semantics.as_utc(now or datetime.now(UTC))
    future = [day for day in days if semantics.available_at(view, day) > now]
    if future:
        first = future[0]
        raise PublishRefused(
            f"{view.name}: ds {first}{' and later' if len(future) > 1 else ''} cannot be published yet: "
            f"its values are available at {semantics.available_at(view, first).isoformat()} (boundary + "
            f"availability lag), which is after now ({now.isoformat(timespec='seconds')})"
        )
    if not 1 <= batch_size <= MAX_BATCH or pipeline_depth < 1:
        raise SkewlessError(f"batch_size must be in 1..{MAX_BATCH} and pipeline_depth positive")
    if transport not in TRANSPORTS:
        raise SkewlessError(f"transport must be one of {', '.join(TRANSPORTS)}, not {transport!r}")

    tables = delta_tables(spark)
    uri = settings.table_uri(view.table)
    if tables.version(uri) is None:
        raise TableError(
            f"{view.name}: no offline table at {uri}; compute it first (skewless run {view.name} --ds ...)"
        )
    committed = set(tables.partitions(uri))
    missing = tuple(day for day in days if day not in committed)

    _prepare(settings.redis_url, view)

    frame = _publishable_rows(tables.read(uri, view_schema(view), ds_range=(start, end)), view, now)
    parallelism = spark.sparkContext.defaultParallelism
    if frame.rdd.getNumPartitions() < parallelism:
        frame = frame.repartition(parallelism)

    password = env_password(settings.redis_url)
    context = spark.sparkContext
    context.setJobDescription(f"skewless materialize {view.name} {start}..{end} ({transport})")
    try:
        if transport == "arrow":
            stats = _write_with_arrow(
                frame, ArrowPartitionWriter(settings.redis_url, view, batch_size, pipeline_depth, password)
            )
        else:
            counters = tuple(context.accumulator(0) for _ in STATS)
            frame.foreachPartition(
                PartitionWriter(settings.redis_url, view, batch_size, pipeline_depth, password, counters)
            )
            stats = tuple(int(c.value) for c in counters)
    except Exception as exc:
        raise _job_failure(exc, view, start, end) from None
    finally:
        context.setJobDescription(None)  # type: ignore[arg-type]
    published = [day for day in days if day not in missing]
    if published:  # after the values: the marker never runs ahead of what Redis holds
        record_published(settings.redis_url, view, published[-1])
    rows, tombstones, written, kept, expired = stats
    log.info(
        "%s: published ds %s..%s: %d rows (%d tombstones), %d written, %d kept (newer in Redis), "
        "%d already expired",
        view.name,
        start,
        end,
        rows,
        tombstones,
        written,
        kept,
        expired,
    )
    return MaterializeResult(view.name, start, end, rows, tombstones, written, kept, expired, missing)


def publish_rows(
    url: str,
    view: ViewSpec,
    rows: Iterable[Sequence[Any]],
    batch_size: int = DEFAULT_BATCH_SIZE,
    pipeline_depth: int = DEFAULT_PIPELINE_DEPTH,
) -> tuple[int, int, int, int, int]:
    """Publish rows from this process, without Spark (tests, tools): same script, same rules.

    Rows are (keys..., feature_ts_us, created_ts_us, features...); returns the counters of
    :func:`write_rows`.
    """
    with RedisOnlineStore(url, batch_size=batch_size, pipeline_depth=pipeline_depth) as store:
        try:
            store.prepare(view)
            return store.write(view, rows).as_tuple()
        except OnlineStoreError as exc:
            raise OnlineStoreError(f"{view.name}: {exc}") from None


def _prepare(url: str, view: ViewSpec) -> None:
    """Fail fast on the driver when Redis is unreachable; publish the layout document."""
    try:
        with RedisOnlineStore(url) as store:
            store.prepare(view)
    except OnlineStoreError as exc:
        raise OnlineStoreError(f"{view.name}: cannot publish: {exc}; nothing was written") from None


def _publishable_rows(frame: DataFrame, view: ViewSpec, now: datetime) -> DataFrame:
    """keys, feature_ts and created_ts as microseconds, then the features; rows that can matter only.

    A row older than the live window at ``now`` can never be served again (docs/semantics.md).
    """
    from pyspark.sql import functions as F

    oldest, _ = semantics.live_window(semantics.ttl_us(view), semantics.to_micros(now))
    feature_ts = F.unix_micros(F.col("feature_ts"))
    selected = frame.select(
        *view.key_names,
        feature_ts.alias("_feature_ts_us"),
        F.coalesce(F.unix_micros(F.col("created_ts")), F.lit(MIN_TIMESTAMP_US)).alias("_created_ts_us"),
        *[_publishable_value(f.name, f.dtype) for f in view.features],
    )
    condition = F.col("_feature_ts_us").isNotNull() & (F.col("_feature_ts_us") >= F.lit(oldest))
    for key in view.key_names:  # a row without its keys addresses no entity (validation rejects them)
        condition = condition & F.col(key).isNotNull()
    return selected.where(condition)


def _publishable_value(name: str, dtype: str) -> Column:
    """A feature as the writer encodes it: timestamps as microseconds and dates as day numbers
    (exact, and independent of the Python workers' time zone); other dtypes as they are."""
    from pyspark.sql import functions as F

    if dtype == "timestamp":
        return F.unix_micros(F.col(name)).alias(name)
    if dtype == "date":
        return F.unix_date(F.col(name)).alias(name)
    return F.col(name)


def _job_failure(exc: Exception, view: ViewSpec, start: date, end: date) -> SkewlessError:
    match = _MARKER_RE.search(str(exc))
    if match is None:
        raise exc
    days = str(start) if start == end else f"{start}..{end}"
    cause = match.group(1).strip().rstrip(".")
    return OnlineStoreError(
        f"{view.name}: materialize ds {days} failed: {cause}. Keys written before the failure hold valid "
        "values; rerun the same command once Redis is back (writes are idempotent and never replace "
        "newer values)"
    )


class PartitionWriter:
    """What ``foreachPartition`` runs on the executors (picklable; connects on the executor)."""

    def __init__(
        self,
        url: str,
        view: ViewSpec,
        batch_size: int,
        pipeline_depth: int,
        password: str | None = None,
        counters: Sequence[Any] = (),
    ) -> None:
        self.url = url
        self.password = password
        """From the driver's environment, so executors on other machines need no secret of their own."""
        self.view = view
        self.batch_size = batch_size
        self.pipeline_depth = pipeline_depth
        self.counters = counters

    def __call__(self, rows: Iterable[Sequence[Any]]) -> None:
        stats = self.write(tuple(row) for row in rows)  # a pyspark Row indexes through Python code
        for counter, value in zip(self.counters, stats, strict=True):
            counter.add(value)

    def write(self, rows: Iterable[Sequence[Any]]) -> tuple[int, int, int, int, int]:
        store = RedisOnlineStore(
            self.url, password=self.password, batch_size=self.batch_size, pipeline_depth=self.pipeline_depth
        )
        try:
            return store.write(self.view, rows).as_tuple()
        except OnlineStoreError as exc:
            raise OnlineStoreError(_MARKER + str(exc)) from None
        finally:
            store.close()


class ArrowPartitionWriter(PartitionWriter):
    """What ``mapInArrow`` runs on the executors: Arrow batches in, one row of counters out."""

    def __call__(self, batches: Iterable[Any]) -> Iterator[Any]:  # type: ignore[override]
        import pyarrow as pa

        def rows() -> Iterator[tuple[Any, ...]]:
            for batch in batches:
                yield from zip(*[column.to_pylist() for column in batch.columns], strict=True)

        stats = self.write(rows())
        yield pa.RecordBatch.from_pydict({name: [value] for name, value in zip(STATS, stats, strict=True)})


def _write_with_arrow(frame: DataFrame, writer: ArrowPartitionWriter) -> tuple[int, ...]:
    from pyspark.sql import functions as F

    schema = ", ".join(f"{name} long" for name in STATS)
    totals = frame.mapInArrow(writer, schema).agg(*[F.sum(name).alias(name) for name in STATS]).first()
    assert totals is not None  # a global aggregate always has one row
    return tuple(int(totals[name] or 0) for name in STATS)
