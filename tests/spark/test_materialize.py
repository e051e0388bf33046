"""Materialization with real Spark and Redis: the consistency guarantee, and a Redis crash mid-run.

docs/semantics.md (Liveness, expiry and online answers): after materializing every ds with
``B(ds) + lag <= T``, the online answer for any entity equals the training join's answer for a
spine row at ``T`` (checked against both the real join and a row-by-row reading of the rule).
"""

from __future__ import annotations

import random
import struct
import threading
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import redis

from skewless.cli import main
from skewless.devstack.local_redis import LocalRedis
from skewless.errors import OnlineStoreError
from skewless.manifest import Manifest
from skewless.offline.delta import delta_tables
from skewless.offline.jobs import days_between, run_view
from skewless.offline.schemas import view_schema
from skewless.online.client import OnlineClient
from skewless.online.materialize import materialize
from skewless.online.published import PUBLISHED_KEY
from skewless.pit import request
from skewless.pit.training_set import point_in_time as training_join
from skewless.runtime.settings import Settings
from tests.helpers import deploy, write_parquet
from tests.online.trees import TREE as SNAPSHOT_TREE

pytestmark = [pytest.mark.spark, pytest.mark.redis]

LAG = timedelta(hours=1)
TTL = timedelta(days=3)
TREE = {
    "defs.yaml": """
        entity:
          name: merchant
          join_keys: {merchant_id: string}
        ---
        source:
          name: txns
          path: txns
          format: parquet
          timestamp: ts
          partition_column: event_date
          columns: {merchant_id: string, amount: float64, qty: int64, ts: timestamp, event_date: string}
        ---
        view:
          name: spend
          version: 1
          kind: aggregation
          entity: merchant
          source: txns
          ttl: 3d
          availability_lag: 1h
          features:
            - {name: n_1d, function: count, window: 1d}
            - {name: amount_sum_2d, function: sum, column: amount, window: 2d}
            - {name: amount_avg_2d, function: avg, column: amount, window: 2d}
            - {name: qty_max_2d, function: max, column: qty, window: 2d}
            - {name: last_amount, function: last, column: amount, window: 2d}
    """,
}
RAW_SCHEMA = pa.schema(
    [
        ("merchant_id", pa.string()),
        ("amount", pa.float64()),
        ("qty", pa.int64()),
        ("ts", pa.timestamp("us", tz="UTC")),
        ("event_date", pa.string()),
    ]
)


def same(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return struct.pack(">d", a) == struct.pack(">d", b)
    return bool(a == b)


def events(days: list[date], seed: int = 11) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []

    def add(merchant: str, day: date, amount: float | None, qty: int | None = 1) -> None:
        ts = datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(seconds=rng.uniform(0, 86399))
        out.append({"merchant_id": merchant, "amount": amount, "qty": qty, "ts": ts, "event_date": str(day)})

    for day in days:
        for _ in range(40):
            merchant = f"m{rng.randrange(6)}"
            amount = None if rng.random() < 0.1 else round(rng.uniform(1, 100), 2)
            add(merchant, day, amount, rng.randrange(1, 9))
    add("dropout", days[0], 5.0)  # rows on the first two days, then a tombstone
    add("late", days[-1], 7.5)  # appears on the last day only
    add("nan", days[-1], float("nan"))  # NaN flows through sum/avg/last unchanged
    add("odd:key{1}", days[-2], -0.0, None)
    return out


def point_in_time(rows: list[dict[str, Any]], features: list[str], moment: datetime) -> dict[str, Any]:
    """The point-in-time rule of docs/semantics.md, row by row, for one entity's offline rows."""
    moment = moment.replace(tzinfo=None)
    ttl = TTL
    candidates = [r for r in rows if moment - ttl <= r["feature_ts"] <= moment]
    if not candidates:
        return dict.fromkeys(features)
    best = max(candidates, key=lambda r: (r["feature_ts"], r["created_ts"]))
    return {f: best[f] for f in features}


def test_online_answers_equal_the_point_in_time_rule(
    spark: Any, tmp_path: Path, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    now = datetime.now(UTC)
    last = (now - LAG).date() - timedelta(days=1)  # the latest ds available now
    days = days_between(last - timedelta(days=3), last)
    settings, manifest = deploy(tmp_path, TREE)
    settings = settings.model_copy(update={"redis_url": redis_url})
    write_parquet(
        tmp_path / "data" / "txns",
        events(days_between(days[0] - timedelta(days=2), last)),
        RAW_SCHEMA,
        "event_date",
    )
    run_view(spark, settings, manifest, "spend", days[0], last)

    # The latest ds first, then the older ones (a late backfill): they must not roll it back.
    # Both transports: mapInArrow for the latest ds, foreachPartition for the backfill.
    first = materialize(spark, settings, manifest, "spend", last, transport="arrow")
    assert first.written == first.rows > 0
    assert first.kept_newer == 0
    backfill = [materialize(spark, settings, manifest, "spend", day) for day in days[1:-1]]
    conf = tmp_path / "conf.yaml"
    conf.write_text(f"offline_root: {settings.offline_root}\nredis_url: {redis_url}\n")
    code = main(["--conf", str(conf), "materialize", "spend", "--start", str(days[0]), "--end", str(days[0])])
    out = capsys.readouterr().out
    assert code == 0
    assert f"spend: published ds {days[0]}: " in out
    assert "kept (newer in Redis)" in out
    assert sum(r.kept_newer for r in backfill) > 0
    assert all(r.days_without_rows == () for r in [first, *backfill])

    view = manifest.view("spend")
    table = delta_tables(spark).read(settings.table_uri(view.table), view_schema(view)).collect()
    by_entity: dict[str, list[dict[str, Any]]] = {}
    for row in table:
        by_entity.setdefault(row["merchant_id"], []).append(row.asDict())
    assert {"dropout", "late", "nan", "odd:key{1}"} <= set(by_entity)
    dropout = by_entity["dropout"]
    assert any(all(r[f] is None for f in view.feature_names) for r in dropout), "scenario needs a tombstone"

    features = list(view.feature_names)
    refs = [f"spend:{f}" for f in features]
    latest_ts = datetime.combine(last + timedelta(days=1), datetime.min.time(), tzinfo=UTC) + LAG
    entities = [{"merchant_id": m} for m in [*sorted(by_entity), "never-seen"]]
    moments = (now, latest_ts, latest_ts + TTL, latest_ts + TTL + timedelta(microseconds=1))
    # The training join itself, for a spine of every entity at every moment.
    requests = request.resolve(manifest, features=",".join(refs))
    spine = spark.createDataFrame(
        [(e["merchant_id"], moment) for moment in moments for e in entities],
        "merchant_id string, event_timestamp timestamp",
    )
    joined, _, _ = training_join(spark, settings, manifest, spine, requests, "event_timestamp")
    training = {(r["merchant_id"], r["event_timestamp"]): r.asDict() for r in joined.collect()}
    assert len(training) == len(moments) * len(entities)
    with OnlineClient(settings, manifest) as client:
        for moment in moments:
            answers = client.get_online_features(entities, features=refs, now=moment)
            for entity, answer in zip(entities, answers, strict=True):
                want = point_in_time(by_entity.get(entity["merchant_id"], []), features, moment)
                got = {f: answer[f] for f in features}
                assert all(same(got[f], want[f]) for f in features), (moment, entity, got, want)
                joined_row = training[(entity["merchant_id"], moment.replace(tzinfo=None))]
                assert all(same(got[f], joined_row[f]) for f in features), (moment, entity, got, joined_row)
        answers = client.get_online_features(entities, features=refs)
    assert {a["merchant_id"] for a in answers if a["n_1d"] is not None} >= {"late", "nan"}
    assert all(a["n_1d"] is None for a in answers if a["merchant_id"] in ("dropout", "never-seen"))
    nan_row = next(a for a in answers if a["merchant_id"] == "nan")
    assert nan_row["last_amount"] != nan_row["last_amount"]  # NaN, served as NaN
    assert type(nan_row["n_1d"]) is int


def _write_snapshot_table(settings: Settings, manifest: Manifest, count: int, day: date) -> None:
    """A customer_stats table of ``count`` rows for ``day``, written with delta-rs (no Spark job)."""
    from deltalake import write_deltalake

    view = manifest.view("customer_stats")
    feature_ts = datetime.combine(day, datetime.min.time(), tzinfo=UTC) + timedelta(hours=12)
    created = datetime.now(UTC)
    frame = pa.table(
        {
            "customer_id": pa.array(range(count), pa.int64()),
            "ds": pa.array([day] * count, pa.date32()),
            "feature_ts": pa.array([feature_ts] * count, pa.timestamp("us", tz="UTC")),
            "created_ts": pa.array([created] * count, pa.timestamp("us", tz="UTC")),
            "total": pa.array(range(count), pa.int64()),
            "score": pa.array([i / 7 for i in range(count)], pa.float64()),
        }
    )
    assert frame.column_names == view_schema(view).fieldNames()
    write_deltalake(settings.table_uri(view.table), frame, partition_by=["ds"], mode="overwrite")


def test_redis_crash_mid_run_fails_clearly_and_a_rerun_completes(spark: Any, tmp_path: Path) -> None:
    count = 200_000
    day = datetime.now(UTC).date() - timedelta(days=1)
    settings, manifest = deploy(tmp_path, SNAPSHOT_TREE)
    _write_snapshot_table(settings, manifest, count, day)
    with LocalRedis() as server:
        settings = settings.model_copy(update={"redis_url": server.url})
        probe = redis.Redis.from_url(server.url, socket_timeout=1)
        killed = threading.Event()

        def kill_when_writing() -> None:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                try:
                    if probe.dbsize() >= 5_000:
                        server.kill()
                        killed.set()
                        return
                except redis.RedisError:
                    return
                time.sleep(0.002)

        killer = threading.Thread(target=kill_when_writing, daemon=True)
        killer.start()
        with pytest.raises(OnlineStoreError) as caught:
            materialize(spark, settings, manifest, "customer_stats", day)
        killer.join(timeout=10)
        assert killed.is_set()
        message = str(caught.value)
        assert f"customer_stats: materialize ds {day} failed: Redis at {server.url} is unreachable" in message
        assert "rerun the same command" in message
        assert "Traceback" not in message

        # Still down: the driver fails fast, before any Spark job.
        with pytest.raises(OnlineStoreError, match=r"cannot publish: .* is unreachable.*nothing was written"):
            materialize(spark, settings, manifest, "customer_stats", day)

        server.start()  # back, and empty (no persistence)
        result = materialize(spark, settings, manifest, "customer_stats", day)
        assert (result.rows, result.written, result.kept_newer, result.already_expired) == (
            count,
            count,
            0,
            0,
        )
        # The values, the layout document and the published-ds marker (freshness, docs/online-store.md).
        assert probe.dbsize() == count + 2
        assert probe.exists(PUBLISHED_KEY)
        sample = random.Random(3).sample(range(count), 1000)
        with OnlineClient(settings, manifest) as client:
            answers = client.get_online_features(
                [{"customer_id": i} for i in sample],
                features=["customer_stats:total", "customer_stats:score"],
            )
        assert [(a["total"], a["score"]) for a in answers] == [(i, i / 7) for i in sample]
