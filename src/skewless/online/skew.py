"""``skewless check-skew``: the online store against the training join, at the same moment.

Samples entities of a view (those with rows in the table's recent partitions, plus keys that
exist nowhere), computes the point-in-time join for a spine at ``now`` and reads Redis with the
same ``now``; every difference is a mismatch. The headline promise of docs/semantics.md
("Online store").
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from skewless import semantics
from skewless.manifest import Manifest, ViewSpec
from skewless.runtime.settings import Settings

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

SPINE_TIME = "__skew_check_time"


@dataclass(frozen=True)
class Mismatch:
    entity: dict[str, Any]
    feature: str
    offline: Any
    online: Any

    def __str__(self) -> str:
        keys = ", ".join(f"{k}={v!r}" for k, v in self.entity.items())
        return f"{keys}: {self.feature}: training join {self.offline!r} != online {self.online!r}"


@dataclass(frozen=True)
class SkewReport:
    view: str
    at: datetime
    entities: int
    absent_entities: int
    with_values: int
    mismatches: tuple[Mismatch, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return not self.mismatches


def same_value(left: Any, right: Any) -> bool:
    """Exact equality, float bits included (NaN equals NaN, 0.0 differs from -0.0).

    Timestamps compare as instants (a naive datetime is UTC), arrays element by element.
    """
    if isinstance(left, datetime) and isinstance(right, datetime):
        return semantics.to_micros(left) == semantics.to_micros(right)
    if isinstance(left, list) and isinstance(right, list):
        return len(left) == len(right) and all(map(same_value, left, right))
    if isinstance(left, float) and isinstance(right, float):
        if math.isnan(left) and math.isnan(right):
            return True
        return struct.pack("<d", left) == struct.pack("<d", right)
    return type(left) is type(right) and bool(left == right)


def _absent_keys(view: ViewSpec, count: int) -> list[dict[str, Any]]:
    """Keys that cannot exist in the table: negative ids, a reserved string prefix."""
    rows = []
    for index in range(count):
        rows.append(
            {
                k.name: (-(10**15) - index if k.dtype == "int64" else f"__skewless_absent_{index}")
                for k in view.join_keys
            }
        )
    return rows


def sample_entities(
    spark: SparkSession, settings: Settings, view: ViewSpec, at: datetime, sample: int, seed: int
) -> list[dict[str, Any]]:
    """Up to ``sample`` distinct entities with rows that could answer at ``at``."""
    from pyspark.sql import functions as F

    from skewless.offline.delta import delta_tables
    from skewless.offline.schemas import view_schema

    rows = delta_tables(spark).read(
        settings.table_uri(view.table), view_schema(view), ds_range=semantics.read_range(view, at, at)
    )
    keys = rows.select(*view.key_names).distinct().orderBy(F.rand(seed)).limit(sample)
    return [row.asDict() for row in keys.collect()]  # at most `sample` rows: a bounded collect


def check_skew(
    spark: SparkSession,
    settings: Settings,
    manifest: Manifest,
    view_name: str,
    *,
    sample: int = 1000,
    at: datetime | None = None,
    seed: int = 0,
) -> SkewReport:
    """Compare online answers with the training join for a sample of entities at ``at`` (now)."""
    from pyspark.sql import types as T

    from skewless.online.client import OnlineClient
    from skewless.pit.request import resolve
    from skewless.pit.training_set import point_in_time

    view = manifest.view(view_name)
    moment = semantics.as_utc(at or datetime.now(UTC))
    present = sample_entities(spark, settings, view, moment, sample, seed)
    absent = _absent_keys(view, max(1, sample // 10))
    entities = present + absent

    refs = ",".join(f"{view.name}:{name}" for name in view.feature_names)
    requests = resolve(manifest, features=refs)
    schema = T.StructType(
        [T.StructField(k.name, semantics.spark_type(k.dtype)) for k in view.join_keys]
        + [T.StructField(SPINE_TIME, T.TimestampType())]
    )
    spine = spark.createDataFrame([(*(e[k] for k in view.key_names), moment) for e in entities], schema)
    frame, _, _ = point_in_time(spark, settings, manifest, spine, requests, SPINE_TIME)
    columns = [f.column for r in requests for f in r.features]
    offline = {
        tuple(row[k] for k in view.key_names): row.asDict() for row in frame.collect()
    }  # one row per sampled entity: bounded by `sample`

    with OnlineClient(settings, manifest) as client:
        online = client.get_online_features(
            entities, features=[f"{view.name}:{n}" for n in view.feature_names], now=moment
        )

    mismatches: list[Mismatch] = []
    with_values = 0
    for entity, answer in zip(entities, online, strict=True):
        expected = offline[tuple(entity[k] for k in view.key_names)]
        with_values += any(expected[c] is not None for c in columns)
        for column in columns:
            if not same_value(expected[column], answer[column]):
                mismatches.append(Mismatch(entity, column, expected[column], answer[column]))
    return SkewReport(view.name, moment, len(entities), len(absent), with_values, tuple(mismatches))
