"""The headline promise on a 20-day scenario: online at now == the training join at now."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis

from skewless.cli import main
from skewless.offline.jobs import days_between, run_view
from skewless.online.materialize import materialize
from skewless.online.skew import check_skew, same_value
from tests.helpers import deploy, write_parquet
from tests.spark.test_materialize import LAG, RAW_SCHEMA, TREE, events

pytestmark = [pytest.mark.spark, pytest.mark.redis]


def test_same_value_compares_float_bits() -> None:
    assert same_value(float("nan"), float("nan"))
    assert not same_value(0.0, -0.0)
    assert not same_value(1, 1.0)
    assert not same_value(True, 1)
    assert same_value(None, None)
    assert same_value("a", "a")


def test_twenty_days_materialized_have_no_skew_and_tampering_is_caught(
    spark: Any, tmp_path: Path, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    now = datetime.now(UTC)
    last = (now - LAG).date() - timedelta(days=1)  # the latest ds available now
    days = days_between(last - timedelta(days=19), last)
    settings, manifest = deploy(tmp_path, TREE)
    settings = settings.model_copy(update={"redis_url": redis_url})
    write_parquet(
        tmp_path / "data" / "txns",
        events(days_between(days[0] - timedelta(days=2), last)),
        RAW_SCHEMA,
        "event_date",
    )
    run_view(spark, settings, manifest, "spend", days[0], last)
    for day in days:  # nightly order: each ds published after its run
        materialize(spark, settings, manifest, "spend", day)

    report = check_skew(spark, settings, manifest, "spend", sample=50, at=now)
    assert report.mismatches == ()
    assert report.with_values >= 5  # the sample really compares values, not only nulls
    assert report.absent_entities >= 1

    # Serving drifts from training: one key disappears from Redis.
    client = redis.Redis.from_url(redis_url)
    victim = next(k for k in client.scan_iter("sk:spend:*") if b"late" in k)
    client.delete(victim)
    client.close()
    conf = tmp_path / "conf.yaml"
    conf.write_text(f"offline_root: {settings.offline_root}\nredis_url: {redis_url}\n")
    code = main(["--conf", str(conf), "check-skew", "spend", "--sample", "50"])
    out = capsys.readouterr().out
    assert code == 1
    assert "merchant_id='late': n_1d: training join 1 != online None" in out
