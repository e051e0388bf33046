"""Online values against training statistics: a sampled PSI per feature of a service.

What it compares (docs/validation.md, "Online against training"):

* **Reference: the latest training-set statistics.** A training set of the service reads the
  views' offline tables, so its distribution over the latest window is the one the stats table
  already summarises (:mod:`skewless.validate.stats`): the per-day KLL sketches of the latest
  ``validation.drift_reference_days`` days with statistics, merged. Bin edges are the merged
  sketch's quantiles at the ``drift_bins`` levels and the reference counts come from its ranks,
  exactly as the offline drift of a partition is computed.
* **Online sample.** Up to ``sample`` entities with rows that could answer now (the sampling of
  ``check-skew``), read through :class:`~skewless.online.client.OnlineClient` at ``now``; the
  non-null, non-NaN values are binned at the reference's edges (:func:`skewless.validate.psi.histogram`).
* **Recorded** one row per ``(view, feature)`` in the service's online statistics table,
  ``<offline_root>/_stats/_online/<service>`` (Delta, partitioned by ``ds`` = the UTC date of
  ``now``; rerunning a view on the same day replaces that view's rows). :func:`read_online_drift`
  reads it back without Spark (the docs site does).

A PSI at or above ``drift_psi_fail`` raises :class:`~skewless.errors.DriftDetected` after the rows
are written; ``drift_min_values`` on either side is needed for an alert (``too_few_values``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from skewless import semantics
from skewless.errors import DriftDetected
from skewless.manifest import Manifest
from skewless.runtime.settings import Settings, ValidationSettings, join_uri
from skewless.validate.psi import (
    DriftStatus,
    classify,
    histogram,
    psi,
)
from skewless.validate.suite import NUMERIC_DTYPES

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

REFERENCE_LOOKBACK_DAYS = 7
"""How far before the reference window the latest days with statistics are looked for."""


@dataclass(frozen=True)
class ReferenceBins:
    """The merged reference of one feature: bin edges and counts per bin (``len(edges) + 1``)."""

    edges: list[float]
    counts: list[int]
    values: int
    days: int


@dataclass(frozen=True)
class OnlineDrift:
    service: str
    view: str
    version: int
    feature: str
    ds: date
    computed_at: datetime
    sampled_entities: int
    online_values: int
    """Non-null, non-NaN online values among the sampled entities."""
    null_rate: float | None
    mean: float | None
    reference_start: date | None
    reference_end: date | None
    reference_days: int
    reference_values: int
    psi: float | None
    drift_status: str


@dataclass(frozen=True)
class OnlineDriftResult:
    service: str
    rows: tuple[OnlineDrift, ...]
    uri: str

    def with_status(self, status: str) -> list[OnlineDrift]:
        return [r for r in self.rows if r.drift_status == status]

    def raise_for_drift(self, config: ValidationSettings) -> None:
        failed = self.with_status("fail")
        if failed:
            lines = "\n  - ".join(
                f"{r.view}:{r.feature}: PSI {r.psi:.4f} of {r.online_values} online values against "
                f"{r.reference_days} day(s) of offline statistics"
                for r in failed
            )
            raise DriftDetected(
                f"service {self.service!r}: online values drifted from training at or above PSI "
                f"{config.drift_psi_fail}:\n  - {lines}\n(recorded in {self.uri})"
            )


# --- pure -----------------------------------------------------------------------------------


def online_psi(reference: ReferenceBins, values: Iterable[Any]) -> tuple[float | None, int]:
    """PSI of ``values`` against ``reference`` at its edges, and how many values were binned."""
    actual = histogram((None if v is None else float(v) for v in values), reference.edges)
    return psi(reference.counts, actual), sum(actual)


def drift_status(
    online_values: int, reference: ReferenceBins | None, value: float | None, config: ValidationSettings
) -> DriftStatus:
    if online_values == 0:
        return "no_values"
    if reference is None or value is None:
        return "no_reference"
    if min(online_values, reference.values) < config.drift_min_values:
        return "too_few_values"
    return classify(value, config.drift_psi_warn, config.drift_psi_fail)


def latest_days(days: Iterable[date], count: int) -> list[date]:
    """The ``count`` latest distinct days, in order."""
    return sorted(set(days))[-count:] if count > 0 else []


# --- I/O ------------------------------------------------------------------------------------


def online_stats_uri(settings: Settings, service: str) -> str:
    return join_uri(settings.offline_root, f"_stats/_online/{service}")


def reference_bins(sketches: Mapping[str, Sequence[bytes]], days: int, bins: int) -> dict[str, ReferenceBins]:
    """Merge each feature's day sketches; edges at the ``bins`` quantile levels; counts from ranks."""
    from skewless.validate.stats import reference_histogram

    out = {}
    for feature, items in sorted(sketches.items()):
        if items:
            values, edges, counts = reference_histogram(items, bins)
            if edges:
                out[feature] = ReferenceBins(edges, counts, values, days)
    return out


def compare_online(
    spark: SparkSession,
    settings: Settings,
    manifest: Manifest,
    service: str,
    *,
    views: Iterable[str] | None = None,
    sample: int = 1000,
    seed: int = 0,
    now: datetime | None = None,
    raise_on_drift: bool = True,
) -> OnlineDriftResult:
    """Compare a sample of online values of ``service``'s numeric features (of ``views``: all of
    the service's views by default) with their training statistics; record and return the rows."""
    from skewless.online.client import OnlineClient
    from skewless.online.skew import sample_entities
    from skewless.validate.stats import read_stats

    spec = manifest.service(service)
    moment = semantics.as_utc(now or datetime.now(UTC))
    today = moment.date()
    config = settings.validation
    wanted = None if views is None else set(views)
    by_view: dict[str, list[str]] = {}
    for ref in spec.features:
        if ref.view in manifest.on_demand_views:
            continue  # computed at request time: no stored values, no training statistics
        view = manifest.view(ref.view)
        if (wanted is None or view.name in wanted) and view.feature(ref.feature).dtype in NUMERIC_DTYPES:
            by_view.setdefault(view.name, []).append(ref.feature)

    rows: list[OnlineDrift] = []
    with OnlineClient(settings, manifest) as client:
        for name, features in sorted(by_view.items()):
            view = manifest.view(name)
            start = today - timedelta(days=config.drift_reference_days + REFERENCE_LOOKBACK_DAYS)
            stored = (
                read_stats(spark, settings, view, start, today)
                .where("sketch IS NOT NULL AND sketch_values > 0")
                .select("ds", "feature", "sketch")
                .collect()
            )
            stored = [r for r in stored if r["feature"] in features]
            window = latest_days((r["ds"] for r in stored), config.drift_reference_days)
            sketches: dict[str, list[bytes]] = {}
            for r in stored:
                if r["ds"] in window:
                    sketches.setdefault(r["feature"], []).append(bytes(r["sketch"]))
            references = reference_bins(sketches, len(window), config.drift_bins)

            entities = sample_entities(spark, settings, view, moment, sample, seed)
            answers = client.get_online_features(
                entities, features=[f"{name}:{f}" for f in features], now=moment
            )
            for feature in features:
                values = [row[feature] for row in answers]
                reference = references.get(feature)
                present = [float(v) for v in values if v is not None and not math.isnan(float(v))]
                value, binned = online_psi(reference, present) if reference else (None, len(present))
                rows.append(
                    OnlineDrift(
                        service=service,
                        view=name,
                        version=view.version,
                        feature=feature,
                        ds=today,
                        computed_at=moment,
                        sampled_entities=len(entities),
                        online_values=binned,
                        null_rate=(len(values) - len(present)) / len(values) if values else None,
                        mean=sum(present) / len(present) if present else None,
                        reference_start=window[0] if window else None,
                        reference_end=window[-1] if window else None,
                        reference_days=len(window),
                        reference_values=reference.values if reference else 0,
                        psi=value,
                        drift_status=drift_status(binned, reference, value, config),
                    )
                )
    uri = online_stats_uri(settings, service)
    if rows:
        _write(uri, rows, today, sorted(by_view))
    result = OnlineDriftResult(service, tuple(rows), uri)
    for row in result.with_status("warn"):
        log.warning(
            "service %s: %s:%s online values drifted from training: PSI %.4f (warn at %s)",
            service,
            row.view,
            row.feature,
            row.psi,
            config.drift_psi_warn,
        )
    if raise_on_drift:
        result.raise_for_drift(config)
    return result


def _arrow_schema() -> pa.Schema:
    import pyarrow as pa

    timestamp = pa.timestamp("us", tz="UTC")
    return pa.schema(
        [
            ("service", pa.string()),
            ("view", pa.string()),
            ("version", pa.int64()),
            ("feature", pa.string()),
            ("ds", pa.date32()),
            ("computed_at", timestamp),
            ("sampled_entities", pa.int64()),
            ("online_values", pa.int64()),
            ("null_rate", pa.float64()),
            ("mean", pa.float64()),
            ("reference_start", pa.date32()),
            ("reference_end", pa.date32()),
            ("reference_days", pa.int64()),
            ("reference_values", pa.int64()),
            ("psi", pa.float64()),
            ("drift_status", pa.string()),
        ]
    )


def _write(uri: str, rows: Sequence[OnlineDrift], day: date, views: Sequence[str]) -> None:
    """Replace the rows of ``views`` on ``day`` in one Delta commit (delta-rs)."""
    import pyarrow as pa
    from deltalake import DeltaTable, write_deltalake

    from skewless.offline.storage_options import storage_options

    options = storage_options(uri)
    table = pa.Table.from_pylist([asdict(row) for row in rows], schema=_arrow_schema())
    names = ", ".join(f"'{v}'" for v in views)  # view names are [a-z0-9_] identifiers
    predicate = f"ds = '{day.isoformat()}' AND view IN ({names})"
    if DeltaTable.is_deltatable(uri, storage_options=options):
        write_deltalake(
            uri, table, partition_by=["ds"], mode="overwrite", predicate=predicate, storage_options=options
        )
    else:
        write_deltalake(uri, table, partition_by=["ds"], mode="append", storage_options=options)


def read_online_drift(settings: Settings, service: str) -> list[dict[str, Any]]:
    """Every recorded row of ``service`` (oldest day first), without Spark; [] when none yet."""
    from deltalake import DeltaTable

    from skewless.offline.storage_options import storage_options

    uri = online_stats_uri(settings, service)
    options = storage_options(uri)
    if not DeltaTable.is_deltatable(uri, storage_options=options):
        return []
    rows = DeltaTable(uri, storage_options=options).to_pyarrow_table().to_pylist()
    return sorted(rows, key=lambda r: (r["ds"], r["view"], r["feature"]))
