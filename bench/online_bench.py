"""Online store benchmark: materialization throughput and online read latency.

Starts its own redis-server on a free loopback port and measures, in the same run:

* the baseline: ``redis-benchmark -P 64 -t set,hset`` (one client, pipelined) against that server;
* materialization of ``1M * scale`` entities through the real path (Delta table -> Spark
  ``foreachPartition`` -> check-and-set script), as keys/s and as a ratio to the SET baseline;
  plus the same encoding and script writes from one Python process without Spark, to show
  where the time goes;
* online read latency through :class:`OnlineClient` (p50/p99): 1 entity x 3 features of one
  view, and 500 entities x 10 features across 2 views; with plain ``MGET`` of the same keys as
  the floor;
* ``store``: the online-store interface's hand-packed hiredis round trips
  (:class:`~skewless.online.store.RedisOnlineStore`) against redis-py's ``Pipeline`` with
  ``register_script`` for the same writes (same batches of the same script) and the same
  multi-view ``MGET`` reads: whether the hand-tuned path is still needed
  (``python -m bench.online_bench store [ENTITIES]`` runs only this part).

Targets: >= 100k keys/s, p99 <= 0.3 ms (1 entity) and <= 2 ms (500 x 10).
"""

from __future__ import annotations

import gc
import os
import shutil
import statistics
import subprocess
import textwrap
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.common import run_worker, worker_main

TREE = {
    "defs.yaml": """
        entity:
          name: merchant
          join_keys: {merchant_id: string}
        ---
        entity:
          name: customer
          join_keys: {customer_id: int64}
        ---
        source:
          name: merchants_raw
          path: merchants
          format: parquet
          timestamp: ts
          columns: {merchant_id: string, ts: timestamp, txn_count: int64, amount_sum: float64,
                    amount_avg: float64, segment: string, is_active: bool}
        ---
        source:
          name: customers_raw
          path: customers
          format: parquet
          timestamp: ts
          columns: {customer_id: int64, ts: timestamp, orders: int64, spend: float64, tenure_days: int64,
                    tier: string, is_subscriber: bool}
        ---
        view:
          name: merchant_bench
          version: 1
          kind: snapshot
          entity: merchant
          source: merchants_raw
          ttl: 2d
          features:
            - {name: txn_count, dtype: int64}
            - {name: amount_sum, dtype: float64}
            - {name: amount_avg, dtype: float64}
            - {name: segment, dtype: string}
            - {name: is_active, dtype: bool}
        ---
        view:
          name: customer_bench
          version: 1
          kind: snapshot
          entity: customer
          source: customers_raw
          ttl: 2d
          features:
            - {name: orders, dtype: int64}
            - {name: spend, dtype: float64}
            - {name: tenure_days, dtype: int64}
            - {name: tier, dtype: string}
            - {name: is_subscriber, dtype: bool}
    """,
}
SEGMENTS = ["grocery", "travel", "fuel", "electronics", "restaurants", "other"]


def _percentiles(samples_ns: list[int]) -> dict[str, float]:
    ordered = sorted(samples_ns)

    def pick(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1e6, 4)

    return {
        "p50_ms": pick(0.50),
        "p99_ms": pick(0.99),
        "mean_ms": round(statistics.fmean(ordered) / 1e6, 4),
        "requests": len(ordered),
    }


def redis_benchmark(port: int, requests: int) -> dict[str, float]:
    """``redis-benchmark -P 64 -t set,hset`` requests per second, one connection."""
    binary = shutil.which("redis-benchmark")
    if binary is None:
        return {"error": "redis-benchmark not found"}  # type: ignore[dict-item]
    command = [binary, "-h", "127.0.0.1", "-p", str(port), "-P", "64", "-c", "1", "-t", "set,hset"]
    command += ["-n", str(requests), "-r", "1000000", "-d", "60", "--csv"]
    output = subprocess.run(command, capture_output=True, text=True, check=True, timeout=600).stdout
    rates: dict[str, float] = {}
    for line in output.splitlines():
        cells = [c.strip('"') for c in line.split(",")]
        if len(cells) >= 2 and cells[0] in ("SET", "HSET"):
            rates[f"{cells[0].lower()}_per_s"] = float(cells[1])
    return rates


def _merchant_table(uri: str, count: int, day: date) -> None:
    import pyarrow as pa
    from deltalake import write_deltalake

    feature_ts = datetime.combine(day, datetime.min.time(), tzinfo=UTC) + timedelta(hours=12)
    created = datetime.now(UTC)
    ids = [f"m{i:08d}" for i in range(count)]
    table = pa.table(
        {
            "merchant_id": pa.array(ids, pa.string()),
            "ds": pa.array([day] * count, pa.date32()),
            "feature_ts": pa.array([feature_ts] * count, pa.timestamp("us", tz="UTC")),
            "created_ts": pa.array([created] * count, pa.timestamp("us", tz="UTC")),
            "txn_count": pa.array([i % 1000 for i in range(count)], pa.int64()),
            "amount_sum": pa.array([i * 1.37 for i in range(count)], pa.float64()),
            "amount_avg": pa.array([None if i % 17 == 0 else i / 3 for i in range(count)], pa.float64()),
            "segment": pa.array([SEGMENTS[i % len(SEGMENTS)] for i in range(count)], pa.string()),
            "is_active": pa.array([i % 3 != 0 for i in range(count)], pa.bool_()),
        }
    )
    # Several files, as a Spark job writes them (one per task), so the read has several partitions.
    files = 8
    step = -(-count // files)
    for index in range(files):
        part = table.slice(index * step, step)
        write_deltalake(uri, part, partition_by=["ds"], mode="overwrite" if index == 0 else "append")


def _latency(call: Any, repeats: int, redis_client: Any, warmup: int = 50) -> dict[str, float]:
    """Wall-clock percentiles, plus the CPU one request costs this process and redis-server.

    The CPU figures do not depend on what else the machine runs; the percentiles do.
    """
    for _ in range(warmup):
        call()
    samples = []
    cpu, redis_cpu = time.process_time(), _redis_cpu(redis_client)
    for _ in range(repeats):
        started = time.perf_counter_ns()
        call()
        samples.append(time.perf_counter_ns() - started)
    result = _percentiles(samples)
    result["client_cpu_ms_per_request"] = round((time.process_time() - cpu) / repeats * 1e3, 4)
    result["redis_cpu_ms_per_request"] = round((_redis_cpu(redis_client) - redis_cpu) / repeats * 1e3, 4)
    return result


def run(workdir: Path, scale: float) -> dict[str, Any]:
    import redis

    from skewless.compile import compile_tree
    from skewless.devstack.local_redis import LocalRedis
    from skewless.online.materialize import materialize, publish_rows
    from skewless.registry import publish_registry
    from skewless.runtime.settings import Settings, SparkSettings
    from skewless.runtime.spark import get_spark
    from skewless.semantics import to_micros

    os.environ.setdefault("TZ", "UTC")
    entities = max(1000, int(1_000_000 * scale))
    day = datetime.now(UTC).date() - timedelta(days=1)
    defs = workdir / "defs"
    defs.mkdir(parents=True)
    (defs / "defs.yaml").write_text(textwrap.dedent(TREE["defs.yaml"]).lstrip("\n"))
    manifest = compile_tree(defs)
    report: dict[str, Any] = {"entities": entities}

    with LocalRedis(workdir=workdir / "redis") as server:
        settings = Settings(
            defs=str(defs),
            offline_root=str(workdir / "offline"),
            redis_url=server.url,
            spark=SparkSettings(master="local[2]"),
        )
        publish_registry(settings.registry_uri, manifest)
        probe = redis.Redis.from_url(server.url)

        baseline = redis_benchmark(server.port, max(100_000, entities))
        probe.flushall()
        report["redis_benchmark_P64"] = baseline

        merchants = manifest.view("merchant_bench")
        _merchant_table(settings.table_uri(merchants.table), entities, day)

        # Materialization through Spark. A first small run warms the JVM and the Python workers
        # (session start and the first job cost 10-20 s here and are not what is measured).
        spark = get_spark(settings, app_name="skewless-bench-online")
        materialize(spark, settings, manifest, "merchant_bench", day, transport="arrow")
        materialize(spark, settings, manifest, "merchant_bench", day, transport="rows")
        for transport in ("rows", "arrow"):
            probe.flushall()
            started = time.perf_counter()
            cpu_before, tree_before = _redis_cpu(probe), _tree_cpu_seconds(os.getpid())
            result = materialize(spark, settings, manifest, "merchant_bench", day, transport=transport)
            seconds = time.perf_counter() - started
            redis_cpu = _redis_cpu(probe) - cpu_before
            total_cpu = _tree_cpu_seconds(os.getpid()) - tree_before + redis_cpu
            assert result.written == entities, result
            rate = entities / seconds
            report[f"materialize_spark_{transport}"] = {
                "path": "foreachPartition" if transport == "rows" else "mapInArrow",
                "keys": entities,
                "seconds": round(seconds, 2),
                "keys_per_s": round(rate),
                "ratio_to_redis_benchmark_set": round(rate / baseline["set_per_s"], 3)
                if "set_per_s" in baseline
                else None,
                "redis_cpu_us_per_key": round(redis_cpu / entities * 1e6, 2),
                # CPU of everything involved (driver, Spark JVM, Python workers, redis-server) per
                # key, and what that allows when the 2 cores are not shared with anything else.
                "total_cpu_us_per_key": round(total_cpu / entities * 1e6, 2),
                "keys_per_s_if_2_idle_cores": round(2 * entities / total_cpu),
            }

        # The same encoding and script writes from this one process, no Spark: where the time goes.
        probe.flushall()
        now_us = to_micros(datetime.now(UTC)) - 3_600_000_000
        rows = [
            (f"m{i:08d}", now_us, now_us, i % 1000, i * 1.37, i / 3, SEGMENTS[i % 6], i % 3 != 0)
            for i in range(min(entities, 200_000))
        ]
        started, cpu_before, redis_before = time.perf_counter(), time.process_time(), _redis_cpu(probe)
        publish_rows(server.url, merchants, rows)
        seconds = time.perf_counter() - started
        report["write_one_process_no_spark"] = {
            "keys": len(rows),
            "keys_per_s": round(len(rows) / seconds),
            "client_cpu_us_per_key": round((time.process_time() - cpu_before) / len(rows) * 1e6, 2),
            "redis_cpu_us_per_key": round((_redis_cpu(probe) - redis_before) / len(rows) * 1e6, 2),
        }

        # The store's hand-packed round trips against redis-py's Pipeline + register_script.
        del rows
        report["store"] = store_comparison(server.url, manifest, min(entities, 100_000))

        # Reads: the merchant view holds `entities` keys again, the customer view 100k.
        probe.flushall()
        materialize(spark, settings, manifest, "merchant_bench", day, transport="arrow")
        customers = manifest.view("customer_bench")
        publish_rows(
            server.url,
            customers,
            [(i, now_us, now_us, i, i * 2.5, i % 3650, "gold", i % 2 == 0) for i in range(100_000)],
        )
        # A serving process does not share the machine with a Spark driver: stop it before the
        # reads. Reads are measured at steady state, after redis-server has finished rehashing
        # its key table behind the million fresh keys (see _wait_until_redis_idle).
        if _created_session(spark):
            spark.stop()
        report["redis_settle_seconds_before_reads"] = _wait_until_redis_idle(probe)
        report["load_average_1m_before_reads"] = round(os.getloadavg()[0], 2)
        # Reads run in a fresh process, as a serving process would: no JVM, no large heap.
        reads = run_worker(
            "bench.online_bench",
            {"step": "reads", "defs": str(defs), "redis_url": server.url, "entities": entities},
        )
        report["reads_process_peak_rss_mb"] = reads.pop("peak_rss_mb")
        reads.pop("process_seconds")
        report.update(reads)
    report["targets"] = {
        "materialize_keys_per_s": 100_000,
        "p99_ms_1_entity": 0.3,
        "p99_ms_500_entities_10_features": 2.0,
    }
    report["load_average_1m_at_end"] = round(os.getloadavg()[0], 2)
    report["met"] = {
        "materialize_foreachPartition": report["materialize_spark_rows"]["keys_per_s"] >= 100_000,
        "materialize_mapInArrow": report["materialize_spark_arrow"]["keys_per_s"] >= 100_000,
        "p99_1_entity": report["online_1_entity_3_features"]["p99_ms"] <= 0.3,
        "p99_500x10": report["online_500_entities_10_features_2_views"]["p99_ms"] <= 2.0,
    }
    return report


def _tree_cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` and all its descendants (Linux /proc), in seconds."""
    ticks = os.sysconf("SC_CLK_TCK")
    total, stack, seen = 0.0, [pid], set()
    while stack:
        current = stack.pop()
        if current in seen:
            continue
        seen.add(current)
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ticks
            for task in Path(f"/proc/{current}/task").iterdir():
                stack.extend(int(child) for child in (task / "children").read_text().split())
        except (OSError, ValueError, IndexError):
            continue
    return total


def _redis_cpu(client: Any) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"] + info["used_cpu_sys"])


def _wait_until_redis_idle(client: Any, timeout: float = 120.0) -> float:
    """Until redis-server uses under 0.5% of a core over a second (or ``timeout`` passes).

    After a million inserts with expiry its cron spends about 2% of a core for about 30 s here
    finishing the incremental rehash of its key and expiry tables, and every key looked up
    meanwhile does a rehash step too: a 1000-key MGET then costs the server 3x its steady-state
    CPU. Idle is about 0.25%.
    """
    started = time.monotonic()
    while time.monotonic() < started + timeout:
        before = _redis_cpu(client)
        time.sleep(1.0)
        if _redis_cpu(client) - before < 0.005:
            break
    return round(time.monotonic() - started, 1)


def _reads(task: dict[str, Any]) -> dict[str, Any]:
    """Online read latency through :class:`OnlineClient`, and bare ``MGET`` floors (a worker step)."""
    import redis

    from skewless.compile import compile_tree
    from skewless.online.client import OnlineClient
    from skewless.online.encoding import ViewCodec
    from skewless.runtime.settings import Settings

    manifest = compile_tree(Path(task["defs"]))
    merchants, customers = manifest.view("merchant_bench"), manifest.view("customer_bench")
    settings = Settings(defs=task["defs"], redis_url=task["redis_url"])
    probe = redis.Redis.from_url(task["redis_url"])
    report: dict[str, Any] = {}
    # Start-up objects are frozen out of the garbage collector's scans, as a server does after
    # start-up: a full collection over them otherwise shows up as outliers.
    gc.collect()
    gc.freeze()
    with OnlineClient(settings, manifest) as client:
        one = [{"merchant_id": "m00000042"}]
        one_features = ["merchant_bench:txn_count", "merchant_bench:amount_avg", "merchant_bench:segment"]
        assert client.get_online_features(one, features=one_features)[0]["txn_count"] == 42
        report["online_1_entity_3_features"] = _latency(
            lambda: client.get_online_features(one, features=one_features), repeats=5000, redis_client=probe
        )
        step = max(1, task["entities"] // 500)
        many = [{"merchant_id": f"m{i * step:08d}", "customer_id": i * 97} for i in range(500)]
        ten = [f"merchant_bench:{f}" for f in merchants.feature_names]
        ten += [f"customer_bench:{f}" for f in customers.feature_names]
        answers = client.get_online_features(many, features=ten)
        assert sum(a["txn_count"] is not None for a in answers) == 500
        report["online_500_entities_10_features_2_views"] = _latency(
            lambda: client.get_online_features(many, features=ten), repeats=2000, redis_client=probe
        )
        # The floor: redis-py MGET of the same 1000 keys, no decoding.
        merchant_codec, customer_codec = ViewCodec(merchants), ViewCodec(customers)
        keys = [merchant_codec.entity_key([e["merchant_id"]]) for e in many]
        keys += [customer_codec.entity_key([e["customer_id"]]) for e in many]
        report["mget_1000_keys_floor"] = _latency(lambda: probe.mget(keys), repeats=2000, redis_client=probe)
        single = [merchant_codec.entity_key(["m00000042"])]
        report["mget_1_key_floor"] = _latency(lambda: probe.mget(single), repeats=5000, redis_client=probe)
    return report


def store_comparison(url: str, manifest: Any, entities: int, repeats: int = 3) -> dict[str, Any]:
    """Hand-packed hiredis round trips (the store's) against redis-py ``Pipeline`` + ``register_script``.

    Writes: ``entities`` merchant rows, ``DEFAULT_BATCH_SIZE`` keys per script call and
    ``DEFAULT_PIPELINE_DEPTH`` calls per round trip on both sides (the same encoded arguments);
    best of ``repeats`` runs (Redis flushed before each). Reads: 500 entities of two views, one
    ``MGET`` per view in one round trip, p50/p99 and client CPU.
    """
    import redis

    from skewless.online import store as online_store
    from skewless.online.encoding import ViewCodec
    from skewless.online.redis_store import WRITE_SCRIPT, WriteCounts, connect
    from skewless.semantics import to_micros

    merchants, customers = manifest.view("merchant_bench"), manifest.view("customer_bench")
    now_us = to_micros(datetime.now(UTC)) - 3_600_000_000
    rows = [
        (f"m{i:08d}", now_us, now_us, i % 1000, i * 1.37, i / 3, SEGMENTS[i % 6], i % 3 != 0)
        for i in range(entities)
    ]
    probe = redis.Redis.from_url(url)

    class PipelineWriter:
        """What ScriptWriter does, through redis-py's Pipeline and a registered Script."""

        def __init__(self, client: Any) -> None:
            self.client = client
            self.script = client.register_script(WRITE_SCRIPT)

        def write(self, batches: Any) -> Any:
            pipe = self.client.pipeline(transaction=False)
            for keys, arguments in batches:
                self.script(keys=keys, args=arguments, client=pipe)
            total = WriteCounts()
            for written, kept, expired in pipe.execute():
                total = total + WriteCounts(int(written), int(kept), int(expired))
            return total

    def timed_writes(make_writer: Any) -> dict[str, float]:
        best: dict[str, float] | None = None
        for _ in range(repeats):
            probe.flushall()
            client = connect(url)
            writer = make_writer(client)
            codec = ViewCodec(merchants)
            started, cpu = time.perf_counter(), time.process_time()
            counts = online_store.write_rows(writer, codec, rows)
            seconds, cpu_s = time.perf_counter() - started, time.process_time() - cpu
            client.close()
            assert counts[2] == entities, counts
            run = {
                "keys_per_s": round(entities / seconds),
                "client_cpu_us_per_key": round(cpu_s / entities * 1e6, 2),
            }
            if best is None or run["keys_per_s"] > best["keys_per_s"]:
                best = run
        assert best is not None
        return best

    report: dict[str, Any] = {"entities": entities, "load_average_1m_before": round(os.getloadavg()[0], 2)}
    report["write_hiredis_packed"] = timed_writes(online_store.ScriptWriter)
    report["write_redis_py_pipeline_register_script"] = timed_writes(PipelineWriter)

    with online_store.RedisOnlineStore(url) as store:
        store.write(merchants, rows)
        store.write(customers, [(i, now_us, now_us, i, i * 2.5, i % 3650, "gold", True) for i in range(500)])
        step = max(1, entities // 500)
        merchant_codec, customer_codec = ViewCodec(merchants), ViewCodec(customers)
        views = [
            [merchant_codec.entity_key([f"m{i * step:08d}"]) for i in range(500)],
            [customer_codec.entity_key([i]) for i in range(500)],
        ]
        client = store.client

        def packed() -> Any:
            return store.read_many(views, lambda _, values: values)

        def pipelined() -> Any:
            pipe = client.pipeline(transaction=False)
            for keys in views:
                pipe.mget(keys)
            return pipe.execute()

        assert packed() == pipelined()
        report["read_500x2_views_hiredis_packed"] = _latency(packed, repeats=1000, redis_client=probe)
        report["read_500x2_views_redis_py_pipeline"] = _latency(pipelined, repeats=1000, redis_client=probe)
    probe.flushall()
    probe.close()
    write_ratio = (
        report["write_hiredis_packed"]["keys_per_s"]
        / report["write_redis_py_pipeline_register_script"]["keys_per_s"]
    )
    read_ratio = (
        report["read_500x2_views_redis_py_pipeline"]["p50_ms"]
        / report["read_500x2_views_hiredis_packed"]["p50_ms"]
    )
    report["hiredis_speedup"] = {"write_throughput": round(write_ratio, 2), "read_p50": round(read_ratio, 2)}
    report["load_average_1m_after"] = round(os.getloadavg()[0], 2)
    return report


def _store_only(entities: int) -> dict[str, Any]:
    """``python -m bench.online_bench store [ENTITIES]``: only :func:`store_comparison`."""
    import tempfile

    from skewless.compile import compile_tree
    from skewless.devstack.local_redis import LocalRedis

    with tempfile.TemporaryDirectory(prefix="skewless-bench-store-") as tmp:
        defs = Path(tmp) / "defs"
        defs.mkdir()
        (defs / "defs.yaml").write_text(textwrap.dedent(TREE["defs.yaml"]).lstrip("\n"))
        with LocalRedis(workdir=Path(tmp) / "redis") as server:
            return store_comparison(server.url, compile_tree(defs), entities)


def _created_session(spark: Any) -> bool:
    return bool(spark.sparkContext.appName == "skewless-bench-online")


if __name__ == "__main__":
    import json
    import sys

    if sys.argv[1:2] == ["store"]:
        print(json.dumps(_store_only(int(sys.argv[2]) if len(sys.argv) > 2 else 50_000), indent=2))
        sys.exit(0)
    sys.exit(worker_main({"reads": _reads}))
