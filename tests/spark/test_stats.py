"""Statistics as per-day summaries: drift from stored sketches vs an exact numpy PSI (real Spark, Delta)."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from skewless.offline.jobs import run_view
from skewless.runtime.settings import ValidationSettings
from skewless.validate import kll
from skewless.validate.psi import bin_edges, psi, quantile_levels
from skewless.validate.stats import QUANTILES, SKETCH_K, Summary, drift, read_stats, record_stats, summarize
from tests.helpers import deploy, write_parquet

pytestmark = pytest.mark.spark

TREE = {
    "defs.yaml": """
        entity:
          name: device
          join_keys: {device_id: string}
        ---
        source:
          name: readings_raw
          path: readings
          format: parquet
          timestamp: ts
        ---
        view:
          name: readings
          version: 1
          kind: snapshot
          entity: device
          source: readings_raw
          ttl: 1d
          features:
            - {name: level, dtype: float64}
            - {name: hits, dtype: int64}
            - {name: label, dtype: string}
    """,
}
RAW = pa.schema(
    [
        ("device_id", pa.string()),
        ("level", pa.float64()),
        ("hits", pa.int64()),
        ("label", pa.string()),
        ("ts", pa.timestamp("us", tz="UTC")),
    ]
)
DAY = date(2024, 5, 1)
DAYS = [DAY + timedelta(days=i) for i in range(9)]
Data = dict[date, tuple[list[float | None], list[int | None]]]
"""Per day: the ``level`` and the ``hits`` of 40 devices."""


def exact_psi(reference: np.ndarray, actual: np.ndarray, bins: int = 10) -> float | None:
    """Today's rule without sketches: edges at the reference's exact quantiles, exact bin counts.

    ``inverted_cdf`` is the smallest value whose rank reaches the level (as ``percentile_approx``);
    ``searchsorted(side="left")`` is the number of edges strictly below a value.
    """
    reference, actual = reference[~np.isnan(reference)], actual[~np.isnan(actual)]
    if not len(reference) or not len(actual):
        return None
    edges = np.array(bin_edges(np.quantile(reference, quantile_levels(bins), method="inverted_cdf").tolist()))
    ref_counts = np.bincount(np.searchsorted(edges, reference, side="left"), minlength=len(edges) + 1)
    act_counts = np.bincount(np.searchsorted(edges, actual, side="left"), minlength=len(edges) + 1)
    return psi(ref_counts.tolist(), act_counts.tolist())


def tolerance(exact: float) -> float:
    """The documented bound (docs/validation.md): |PSI from sketches - exact PSI| <= 0.005 + 1%."""
    return 0.005 + 0.01 * exact


def _rows(day: date, levels: list[float | None], hits: list[int | None]) -> list[dict[str, Any]]:
    at = datetime(day.year, day.month, day.day, 12, tzinfo=UTC)
    return [
        {"device_id": f"d{i}", "level": level, "hits": hit, "label": "x", "ts": at}
        for i, (level, hit) in enumerate(zip(levels, hits, strict=True))
    ]


def _data(seed: int) -> Data:
    """40 readings a day; the last day shifted. Fewer values than a sketch holds: PSI is exact."""
    rng = np.random.default_rng(seed)
    out: Data = {}
    for day in DAYS:
        shift = 1.5 if day == DAYS[-1] else 0.0
        levels: list[float | None] = [round(float(v), 3) for v in rng.normal(shift, 1.0, 40)]
        levels[0], levels[1] = None, math.nan  # neither counts as a value for the drift
        hits: list[int | None] = [int(v) for v in rng.poisson(3 + 2 * shift, 40)]
        out[day] = (levels, hits)
    return out


def _write(settings: Any, data: Data) -> None:
    rows = [row for day, (levels, hits) in data.items() for row in _rows(day, levels, hits)]
    write_parquet(Path(settings.data_root) / "readings", rows, RAW)


def _values(data: Data, days: list[date], index: int) -> Any:
    return np.array([v for day in days for v in data[day][index] if v is not None], dtype=float)


def test_a_nightly_run_reads_only_its_day_and_drifts_against_the_stored_summaries(
    spark: Any, tmp_path: Path
) -> None:
    settings, manifest = deploy(tmp_path, TREE)
    settings = settings.model_copy(update={"validation": ValidationSettings(drift_min_values=1)})
    view = manifest.view("readings")
    data = _data(seed=1)
    _write(settings, data)
    run_view(spark, settings, manifest, "readings", DAYS[0], DAYS[-1])

    backfill = record_stats(spark, settings, view, DAYS[0], DAYS[-2])
    assert backfill.days_read == tuple(DAYS[:-1])  # each row read once, no reference copies
    nightly = record_stats(spark, settings, view, DAYS[-1], raise_on_drift=False)
    assert nightly.days_read == (DAYS[-1],)
    found = {s.feature: s for s in nightly.stats}
    assert found["level"].reference_days == 7
    assert found["level"].reference_values == 7 * 38
    assert (found["level"].non_null, found["level"].sketch_values) == (39, 38)  # NaN is not a value
    assert found["label"].psi is None
    assert found["label"].sketch is None
    for index, name in ((0, "level"), (1, "hits")):
        expected = exact_psi(_values(data, DAYS[1:-1], index), _values(data, DAYS[-1:], index))
        assert found[name].psi == pytest.approx(expected, rel=1e-9)
        assert found[name].drift_status == "warn"
    # One pass over the whole range gives the same drift as the nightly run did.
    whole = record_stats(spark, settings, view, DAYS[0], DAYS[-1], raise_on_drift=False)
    again = {(s.ds, s.feature): s.psi for s in whole.stats}
    assert again[(DAYS[-1], "level")] == pytest.approx(found["level"].psi, rel=1e-9)
    assert again[(DAYS[0], "level")] is None
    stored = read_stats(spark, settings, view, DAYS[0], DAYS[-1]).collect()
    assert len(stored) == 9 * 3
    assert all(r["sketch_values"] == 38 for r in stored if r["feature"] == "level")


def test_a_reference_day_rewritten_since_its_statistics_is_summarised_from_its_rows(
    spark: Any, tmp_path: Path
) -> None:
    settings, manifest = deploy(tmp_path, TREE)
    view = manifest.view("readings")
    data = _data(seed=2)
    _write(settings, data)
    run_view(spark, settings, manifest, "readings", DAYS[0], DAYS[-1])
    # The statistics so far were recorded when the view had no ``hits`` yet (a feature added
    # later keeps the committed files, where it reads null).
    before = view.model_copy(update={"features": tuple(f for f in view.features if f.name != "hits")})
    record_stats(spark, settings, before, DAYS[0], DAYS[-2])
    # Day 5 changes and is recommitted without statistics: its stored summary no longer describes it.
    data[DAYS[5]] = ([v + 10 if v is not None else None for v in data[DAYS[5]][0]], data[DAYS[5]][1])
    _write(settings, data)
    run_view(spark, settings, manifest, "readings", DAYS[5])

    nightly = record_stats(spark, settings, view, DAYS[-1], raise_on_drift=False)
    assert nightly.days_read == (DAYS[5], DAYS[-1])
    found = {s.feature: s for s in nightly.stats}
    expected = exact_psi(_values(data, DAYS[1:-1], 0), _values(data, DAYS[-1:], 0))
    assert found["level"].psi == pytest.approx(expected, rel=1e-9)
    # The other reference days' summaries still describe their files: ``hits`` is empty there,
    # and has the values of day 5, whose rows were read.
    assert (found["hits"].reference_days, found["hits"].reference_values) == (7, 40)
    expected = exact_psi(_values(data, DAYS[5:6], 1), _values(data, DAYS[-1:], 1))
    assert found["hits"].psi == pytest.approx(expected, rel=1e-9)
    # Only the range's own statistics are written: day 5 keeps its stale row until its stats rerun.
    assert {r["ds"] for r in read_stats(spark, settings, view, DAYS[5], DAYS[-1]).collect()} == set(DAYS[5:])


def test_psi_from_sketches_stays_within_the_documented_tolerance_of_the_exact_psi(
    spark: Any, tmp_path: Path
) -> None:
    """Random data large enough that the sketches compact (approximate ranks), shifts from none
    to large, discrete and continuous features."""
    _, manifest = deploy(tmp_path, TREE)
    view = manifest.view("readings")
    config = ValidationSettings()
    rng = np.random.default_rng(13)
    per_day = 6_000
    shifts = [0.0, 0.1, 0.4, 1.0]
    days = [DAY + timedelta(days=i) for i in range(7 + len(shifts))]
    generate = {
        "level": lambda s: rng.lognormal(s, 1.0, per_day),  # continuous, skewed
        "hits": lambda s: rng.poisson(3 + 3 * s, per_day).astype(float),  # discrete, many ties
    }
    values = {
        (day, name): gen(0.0 if i < 7 else shifts[i - 7])
        for i, day in enumerate(days)
        for name, gen in generate.items()
    }
    frame = spark.createDataFrame(
        pa.table(
            {
                "ds": pa.array([d for d in days for _ in range(per_day)], pa.date32()),
                "level": np.concatenate([values[(d, "level")] for d in days]),
                "hits": np.concatenate([values[(d, "hits")] for d in days]).astype(np.int64),
                "label": pa.nulls(len(days) * per_day, pa.string()),
            }
        )
    )
    summarised = summarize(frame, view)
    summaries = {(s.ds, s.feature): Summary(s.sketch_values or 0, s.sketch) for s in summarised}
    assert min(s.values for s in summaries.values() if s.sketch) > SKETCH_K  # the sketches compacted
    # Drift reads Spark's sketches in Python (DataSketches): both read the same quantiles.
    for item in summarised:
        if item.sketch:
            sketch = kll.read(item.sketch)
            assert sketch.n == item.sketch_values
            assert kll.quantiles(sketch, QUANTILES) == [item.p50, item.p90, item.p99]
    targets = days[7:]
    found = drift(summaries, targets, ["level", "hits"], config)
    exacts = []
    for day in targets:
        window = [day - timedelta(days=i) for i in range(1, 8)]
        for name in generate:
            exact = exact_psi(np.concatenate([values[(d, name)] for d in window]), values[(day, name)])
            assert exact is not None
            got = found[(day, name)].psi
            assert got is not None
            assert abs(got - exact) <= tolerance(exact), (day, name, got, exact)
            assert found[(day, name)].reference_values == 7 * per_day
            exacts.append(exact)
    # both sides of the alert thresholds
    assert min(exacts) < 0.01
    assert max(exacts) > 0.5
