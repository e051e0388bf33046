"""Online values against training statistics: sampled PSI recorded and read back (real Spark, Delta,
redis-server), checked against the exact numpy PSI of the same values (tests/spark/test_stats.py)."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from skewless.errors import DriftDetected
from skewless.manifest import Manifest
from skewless.online.materialize import materialize
from skewless.orchestration import run_range
from skewless.runtime.settings import Settings, ValidationSettings
from skewless.validate.online_drift import compare_online, read_online_drift
from tests.helpers import deploy, write_parquet
from tests.spark.test_stats import exact_psi, tolerance

pytestmark = [pytest.mark.spark, pytest.mark.redis]

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
          ttl: 10d
          features:
            - {name: level, dtype: float64}
            - {name: hits, dtype: int64}
            - {name: label, dtype: string}
        ---
        service:
          name: monitor
          features: [readings:level, readings:hits, readings:label]
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
TODAY = datetime.now(UTC).date()
DAYS = [TODAY - timedelta(days=n) for n in range(5, 0, -1)]
DEVICES = 60


def _data(shift: float) -> dict[date, list[dict[str, Any]]]:
    """One reading per device and day; the last day's levels moved by ``shift``."""
    rng = random.Random(7)
    out = {}
    for day in DAYS:
        rows = []
        for index in range(DEVICES):
            level = rng.gauss(10.0, 2.0) + (shift if day == DAYS[-1] else 0.0)
            rows.append(
                {
                    "device_id": f"d{index}",
                    "level": None if index == 0 and day == DAYS[-1] else level,
                    "hits": rng.randint(0, 20),
                    "label": "x",
                    "ts": datetime.combine(day, time(12), tzinfo=UTC),
                }
            )
        out[day] = rows
    return out


@pytest.fixture
def published(
    spark: Any, tmp_path: Path, redis_url: str
) -> tuple[Settings, Manifest, dict[date, list[dict[str, Any]]]]:
    settings, manifest = deploy(tmp_path, TREE)
    settings = settings.model_copy(
        update={
            "redis_url": redis_url,
            "validation": ValidationSettings(drift_reference_days=3, drift_min_values=10, drift_psi_warn=0.1),
        }
    )
    data = _data(shift=3.0)
    write_parquet(Path(settings.data_root) / "readings", [row for rows in data.values() for row in rows], RAW)
    run_range(spark, settings, manifest, "readings", DAYS[0], DAYS[-1], validate=False, raise_on_drift=False)
    materialize(spark, settings, manifest, "readings", DAYS[0], DAYS[-1])
    return settings, manifest, data


def test_online_psi_is_recorded_and_read_back_and_matches_the_exact_psi(
    spark: Any, published: tuple[Settings, Manifest, dict[date, list[dict[str, Any]]]]
) -> None:
    settings, manifest, data = published
    now = datetime.now(UTC)
    result = compare_online(spark, settings, manifest, "monitor", sample=1000, now=now)
    # The reference: the latest 3 days with statistics; online: each device's latest reading.
    window = DAYS[-3:]
    for feature in ("level", "hits"):
        reference = np.array([r[feature] for day in window for r in data[day]], dtype=float)
        online = np.array([np.nan if r[feature] is None else r[feature] for r in data[DAYS[-1]]], dtype=float)
        expected = exact_psi(reference, online)
        assert expected is not None
        row = next(r for r in result.rows if r.feature == feature)
        assert row.psi is not None
        assert abs(row.psi - expected) <= tolerance(expected), (feature, row.psi, expected)

    stored = read_online_drift(settings, "monitor")
    assert [(r["view"], r["feature"]) for r in stored] == [("readings", "hits"), ("readings", "level")]
    level = next(r for r in stored if r["feature"] == "level")
    assert level["ds"] == now.date()
    assert level["sampled_entities"] == DEVICES
    assert level["online_values"] == DEVICES - 1  # device d0 has no level on the last day
    assert level["null_rate"] == pytest.approx(1 / DEVICES)
    assert (level["reference_start"], level["reference_end"], level["reference_days"]) == (
        window[0],
        window[-1],
        3,
    )
    assert level["reference_values"] == 3 * DEVICES - 1
    assert level["drift_status"] == "warn"
    assert level["psi"] > 0.25  # the last day moved by 1.5 standard deviations
    hits = next(r for r in stored if r["feature"] == "hits")
    assert hits["psi"] < level["psi"]  # not shifted: sampling noise only (60 values against 180)
    assert hits["drift_status"] == ("ok" if hits["psi"] < 0.1 else "warn")

    # Rerun on the same day: the day's rows are replaced, not added; a fail threshold raises after writing.
    strict = settings.model_copy(
        update={"validation": settings.validation.model_copy(update={"drift_psi_fail": 0.25})}
    )
    with pytest.raises(DriftDetected, match=r"(?s)service 'monitor'.*readings:level: PSI"):
        compare_online(spark, strict, manifest, "monitor", sample=1000, now=now)
    again = read_online_drift(settings, "monitor")
    assert len(again) == 2
    assert next(r for r in again if r["feature"] == "level")["drift_status"] == "fail"
