"""Airflow as it runs in production, driven through its REST API (docs/airflow.md, "The local stack").

One stack for the module (:class:`skewless.devstack.airflow_stack.AirflowStack`, what
``make airflow`` runs): a private PostgreSQL cluster, the api-server, the scheduler with the
LocalExecutor and the DAG processor as separate processes, tasks running Spark in their own
processes. The tests run in file order and tell one story about view ``spend`` (dates relative to
today, UTC; T = today):

* ``skewless apply`` ran two days ago (the clock of ``skewless.registry`` frozen at T-2), so
  the registry records the schedule start D2 = T-3; raw events exist for D0..D4 = T-5..T-1.
* The scheduler creates the catchup runs D2..D4 by itself once the DAG is unpaused. D3's events
  break the expectation ``total_2d <= 1000``; D3 and D4 (whose 2-day window holds them) fail at
  ``validate``, the offline table and Redis stay as D2 left them.
* An operator triggers the backfill DAG for the history D0..D1 through ``POST .../dagRuns``.
* The scheduler is stopped "for two days": we cannot wait two days, so with the scheduler down
  the test deletes the runs of the last two days (D3, D4) through the REST API, which leaves the
  metadata database as a scheduler that stopped after D2 would have left it, and fixes D3's raw
  file. Restarted, the scheduler schedules the missed D3 and D4 from the fixed start date.
  Redis is stopped while D3 publishes: ``materialize`` fails, D4 runs once Redis is back, and
  clearing D3's ``materialize`` completes it without D3's older values replacing D4's.
* Offline table, Redis and statistics then equal what the CLI produces for the same days in the
  same order (``run``/``backfill``/``materialize`` into a second root and a second Redis).
"""

from __future__ import annotations

import json
import socket
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from itertools import pairwise
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from skewless.devstack.airflow_stack import AirflowApi, AirflowStack, live_members
from skewless.devstack.local_redis import LocalRedis
from tests.airflow.common import PAYMENTS, TREE
from tests.helpers import process_running, write_tree

pytestmark = [pytest.mark.airflow_stack, pytest.mark.spark, pytest.mark.redis, pytest.mark.e2e]

REPO = Path(__file__).resolve().parents[2]
VIEW = "spend"
NIGHTLY = f"skewless__{VIEW}"
BACKFILL = "skewless__backfill"
CHAIN = ["compute", "validate", "commit", "materialize", "stats"]
ACCOUNTS = ("a", "b", "c")
POLL_S = 3.0
RUN_TIMEOUT_S = 1200.0  # one DAG run on a loaded 2-core machine: each task starts its own Spark

TODAY = datetime.now(UTC).date()
D0, D1, D2, D3, D4 = (TODAY - timedelta(days=n) for n in (5, 4, 3, 2, 1))

# Tasks run Spark in their own process: one core, a small driver, a quick JIT.
SPARK_CONF = """\
spark:
  master: local[1]
  conf:
    spark.driver.memory: 768m
    spark.sql.shuffle.partitions: "1"
    spark.driver.extraJavaOptions: -Duser.timezone=UTC -XX:TieredStopAtLevel=1 -XX:+UseSerialGC
"""


def _at(day: date, hour: int) -> datetime:
    return datetime.combine(day, dtime(hour), tzinfo=UTC)


def _events(day: date, *, bad: bool = False) -> list[dict[str, Any]]:
    """A few payments per day; ``bad``: one of 5000 (the 2-day total breaks ``between [0, 1000]``)."""
    offset = (day - D0).days
    rows = [
        {"account_id": "a", "amount": 10.0 + offset, "ts": _at(day, 9)},
        {"account_id": "b", "amount": 2.5 * (offset + 1), "ts": _at(day, 23)},
    ]
    if offset % 2 == 0:
        rows.append({"account_id": "c", "amount": 100.0, "ts": _at(day, 12)})
    if bad:
        rows.append({"account_id": "a", "amount": 5000.0, "ts": _at(day, 15)})
    return rows


def _write_day(data_root: Path, day: date, *, bad: bool = False) -> None:
    folder = data_root / "payments"
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(_events(day, bad=bad), schema=PAYMENTS), folder / f"{day}.parquet")


def _workspace(root: Path, redis_url: str) -> Path:
    """Feature definitions, raw data and a config under ``root``; returns the config file."""
    defs = write_tree(root / "defs", TREE)
    conf = root / "skewless.yaml"
    conf.write_text(
        f"defs: {defs}\ndata_root: {root / 'data'}\noffline_root: {root / 'offline'}\n"
        f"redis_url: {redis_url}\n" + SPARK_CONF
    )
    return conf


def _apply_on(day: date, conf: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``skewless apply`` as if run at noon UTC on ``day`` (it records yesterday as the start)."""
    import skewless.registry
    from skewless.cli import main

    class Frozen(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> Frozen:
            moment = cls(day.year, day.month, day.day, 12, tzinfo=UTC)
            return moment.astimezone(tz) if tz else moment.replace(tzinfo=None)

    with monkeypatch.context() as patch:
        patch.setattr(skewless.registry, "datetime", Frozen)
        assert main(["--conf", str(conf), "apply"]) == 0


# --- polling the REST API ------------------------------------------------------------------------


def _quote(run_id: str) -> str:
    return urllib.parse.quote(run_id, safe="")


def wait_for(what: str, probe: Callable[[], Any], timeout_s: float = RUN_TIMEOUT_S) -> Any:
    """Poll ``probe`` until it returns something truthy (no fixed sleeps: the machine is loaded)."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = probe()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(POLL_S)


def runs(api: AirflowApi, dag_id: str) -> list[dict[str, Any]]:
    body = api.get(f"/api/v2/dags/{dag_id}/dagRuns?limit=100&order_by=run_after")
    return list(body["dag_runs"])


def nightly_runs(api: AirflowApi) -> dict[date, dict[str, Any]]:
    """The nightly DAG's runs keyed by ds (the data interval's start date)."""
    return {datetime.fromisoformat(r["data_interval_start"]).date(): r for r in runs(api, NIGHTLY)}


def task_states(api: AirflowApi, dag_id: str, run_id: str) -> dict[str, str | None]:
    body = api.get(f"/api/v2/dags/{dag_id}/dagRuns/{_quote(run_id)}/taskInstances")
    return {ti["task_id"]: ti["state"] for ti in body["task_instances"]}


def task_log(api: AirflowApi, dag_id: str, run_id: str, task_id: str, try_number: int = 1) -> str:
    path = f"/api/v2/dags/{dag_id}/dagRuns/{_quote(run_id)}/taskInstances/{task_id}/logs/{try_number}"
    return json.dumps(api.get(f"{path}?full_content=true"))


def wait_run(api: AirflowApi, ds: date, states: tuple[str, ...] = ("success", "failed")) -> dict[str, Any]:
    def finished() -> dict[str, Any] | None:
        run = nightly_runs(api).get(ds)
        return run if run is not None and run["state"] in states else None

    return dict(wait_for(f"the {NIGHTLY} run of {ds} to finish", finished))


def wait_task(api: AirflowApi, dag_id: str, run_id: str, task_id: str, states: tuple[str, ...]) -> str:
    def reached() -> str | None:
        state = task_states(api, dag_id, run_id).get(task_id)
        return state if state in states else None

    return str(wait_for(f"{dag_id} {run_id} {task_id} in {states}", reached))


# --- what the stores hold ------------------------------------------------------------------------


def _delta_rows(uri: str, drop: tuple[str, ...]) -> list[tuple[Any, ...]]:
    from deltalake import DeltaTable

    table = DeltaTable(uri).to_pyarrow_table()
    keep = [name for name in table.column_names if name not in drop]
    return sorted(tuple(row[name] for name in keep) for row in table.select(keep).to_pylist())


@dataclass
class Root:
    """One skewless deployment: its config, its Redis."""

    conf: Path
    redis: LocalRedis

    @property
    def settings(self) -> Any:
        from skewless.runtime.settings import load_settings

        return load_settings(self.conf).model_copy(update={"redis_url": self.redis.url})

    def table(self) -> list[tuple[Any, ...]]:
        from skewless.registry import require_registry

        settings = self.settings
        view = require_registry(settings.registry_uri).view(VIEW)
        return _delta_rows(settings.table_uri(view.table), drop=("created_ts",))

    def table_versions(self) -> tuple[int | None, ...]:
        from skewless.offline.catalog import table_version
        from skewless.registry import require_registry

        settings = self.settings
        view = require_registry(settings.registry_uri).view(VIEW)
        return table_version(settings.table_uri(view.table)), table_version(
            settings.table_uri(view.tiles_table or "")
        )

    def stats(self) -> list[tuple[Any, ...]]:
        from skewless.registry import require_registry
        from skewless.validate.stats import stats_uri

        settings = self.settings
        view = require_registry(settings.registry_uri).view(VIEW)
        run_specific = ("computed_at", "table_version", "partition_fingerprint", "sketch")
        return _delta_rows(stats_uri(settings, view), drop=run_specific)

    def online(self) -> tuple[list[dict[str, Any]], dict[bytes, int]]:
        """Served values of every account, and each key's absolute expiry (ms)."""
        import redis

        from skewless.online.client import OnlineClient
        from skewless.registry import require_registry

        settings = self.settings
        manifest = require_registry(settings.registry_uri)
        with OnlineClient(settings, manifest) as client:
            values = client.get_online_features(
                [{"account_id": a} for a in ACCOUNTS], features="spend:n_2d,spend:total_2d"
            )
        connection = redis.Redis.from_url(self.redis.url)
        try:
            expiry = {key: int(connection.pexpiretime(key)) for key in connection.scan_iter()}
        finally:
            connection.close()
        return values, expiry

    def redis_dump(self) -> dict[bytes, bytes | None]:
        import redis

        connection = redis.Redis.from_url(self.redis.url)
        try:
            return {key: connection.dump(key) for key in connection.scan_iter()}
        finally:
            connection.close()


@dataclass
class World:
    stack: AirflowStack
    airflow: Root
    reference: Root
    api: AirflowApi
    seen: dict[str, Any] = field(default_factory=dict)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, spark: Any) -> Iterator[World]:
    base = tmp_path_factory.mktemp("airflow-stack")
    # The stack's Redis keeps its data across a stop (append-only file), as a real one would.
    online = LocalRedis(workdir=base / "redis", extra_args=("--appendonly", "yes")).start()
    reference_redis = LocalRedis().start()
    conf = _workspace(base / "airflow", online.url)
    reference_conf = _workspace(base / "reference", reference_redis.url)
    for day in (D0, D1, D2, D3, D4):
        _write_day(base / "airflow" / "data", day, bad=day == D3)
        _write_day(base / "reference" / "data", day)
    with pytest.MonkeyPatch.context() as patch:
        _apply_on(D3, conf, patch)  # two days ago: the schedule start is D2
    stack = AirflowStack(REPO / "dags", {"SKEWLESS_CONF": str(conf)})
    try:
        stack.start()
        yield World(stack, Root(conf, online), Root(reference_conf, reference_redis), stack.api())
    finally:
        try:
            stack.close()
        finally:
            online.close()
            reference_redis.close()


def _cli(root: Root, *args: str) -> None:
    from skewless.cli import main

    assert main(["--conf", str(root.conf), *args]) == 0, args


# --- the story -----------------------------------------------------------------------------------


@pytest.mark.timeout(1800)
def test_the_dag_processor_parses_the_dag_file_without_import_errors(world: World) -> None:
    api = world.api
    health = world.stack.health()
    assert {
        part: health[part]["status"] for part in ("metadatabase", "scheduler", "dag_processor")
    } == dict.fromkeys(("metadatabase", "scheduler", "dag_processor"), "healthy")

    def parsed() -> dict[str, Any] | None:
        dags = {d["dag_id"]: d for d in api.get("/api/v2/dags?limit=100")["dags"]}
        return dags if {NIGHTLY, BACKFILL} <= set(dags) else None

    dags = wait_for("the DAG processor to register the DAGs", parsed, timeout_s=600)
    assert sorted(dags) == ["skewless__backfill", "skewless__scores", "skewless__spend"]
    assert api.get("/api/v2/importErrors") == {"import_errors": [], "total_entries": 0}
    assert all(d["is_paused"] for d in dags.values())  # new DAGs wait for an operator
    details = api.get(f"/api/v2/dags/{NIGHTLY}/details")
    assert details["start_date"].startswith(f"{D2}T00:00:00")  # the start `apply` recorded
    assert details["catchup"] is True
    assert details["max_active_runs"] == 1
    tasks = {t["task_id"]: t for t in api.get(f"/api/v2/dags/{NIGHTLY}/tasks")["tasks"]}
    assert set(CHAIN) <= set(tasks)
    for upstream, downstream in pairwise(CHAIN):
        assert downstream in tasks[upstream]["downstream_task_ids"]
    world.seen["tasks"] = sorted(tasks)


@pytest.mark.timeout(3600)
def test_the_scheduler_catches_up_from_the_recorded_start_and_a_bad_partition_fails_at_validate(
    world: World,
) -> None:
    api, airflow, reference = world.api, world.airflow, world.reference
    api.patch(f"/api/v2/dags/{NIGHTLY}", {"is_paused": False})

    # The CLI reference for the same day, while the scheduler works: run D2, publish.
    with pytest.MonkeyPatch.context() as patch:
        _apply_on(D3, reference.conf, patch)
    _cli(reference, "run", VIEW, "--ds", str(D2))
    _cli(reference, "materialize", VIEW, "--ds", str(D2))

    first = wait_run(api, D2)
    assert first["state"] == "success", task_states(api, NIGHTLY, first["dag_run_id"])
    assert first["run_type"] == "scheduled"
    # D2's run ended: what the table and Redis hold now must survive the failing days.
    versions, dump = airflow.table_versions(), airflow.redis_dump()
    assert task_states(api, NIGHTLY, first["dag_run_id"]) == dict.fromkeys(world.seen["tasks"], "success")

    for ds in (D3, D4):  # D3's events break total_2d <= 1000, inside both days' 2-day window
        run = wait_run(api, ds)
        assert run["state"] == "failed"
        states = task_states(api, NIGHTLY, run["dag_run_id"])
        assert states["compute"] == "success"
        assert states["validate"] == "failed"
        assert {states[t] for t in world.seen["tasks"] if t not in ("compute", "validate")} == {
            "upstream_failed"
        }
        log = task_log(api, NIGHTLY, run["dag_run_id"], "validate")
        assert "between(total_2d, 0..1000)" in log, log[-2000:]
    assert sorted(nightly_runs(api)) == [D2, D3, D4]  # created by the scheduler, from D2 on

    assert airflow.table_versions() == versions
    assert airflow.redis_dump() == dump
    assert airflow.table() == reference.table()
    assert airflow.online() == reference.online()
    assert airflow.stats() == reference.stats()


@pytest.mark.timeout(1800)
def test_an_operator_triggers_the_backfill_dag_through_the_rest_api(world: World) -> None:
    api, airflow, reference = world.api, world.airflow, world.reference
    api.patch(f"/api/v2/dags/{BACKFILL}", {"is_paused": False})
    params = api.get(f"/api/v2/dags/{BACKFILL}/details")["params"]
    assert sorted(params) == ["end", "start", "view"]
    run = api.post(
        f"/api/v2/dags/{BACKFILL}/dagRuns",
        {"logical_date": None, "conf": {"view": VIEW, "start": str(D0), "end": str(D1)}},
    )
    _cli(reference, "backfill", VIEW, "--start", str(D0), "--end", str(D1))
    _cli(reference, "materialize", VIEW, "--start", str(D0), "--end", str(D1))

    def finished() -> dict[str, Any] | None:
        found = {r["dag_run_id"]: r for r in runs(api, BACKFILL)}.get(run["dag_run_id"])
        return found if found and found["state"] in ("success", "failed") else None

    done = wait_for("the backfill run", finished)
    states = task_states(api, BACKFILL, run["dag_run_id"])
    assert (done["state"], states) == (
        "success",
        {"backfill": "success", "materialize": "success", "stats": "success"},
    )
    assert airflow.table() == reference.table()
    assert airflow.online() == reference.online()  # older than D2: Redis keeps D2's values
    assert airflow.stats() == reference.stats()


@pytest.mark.timeout(3600)
def test_after_two_days_down_the_scheduler_schedules_the_missed_days_and_a_redis_outage_is_retried(
    world: World,
) -> None:
    api, stack, airflow, reference = world.api, world.stack, world.airflow, world.reference
    stack.stop_component("scheduler")
    for ds in (D3, D4):  # the metadata database as a scheduler stopped after D2 leaves it
        api.delete(f"/api/v2/dags/{NIGHTLY}/dagRuns/{_quote(nightly_runs(api)[ds]['dag_run_id'])}")
    assert sorted(nightly_runs(api)) == [D2]
    _write_day(Path(airflow.settings.data_root), D3)  # the source fixed D3's file meanwhile
    # Redis is down when D3's materialize runs (compute, validate and commit do not use it).
    airflow.redis.stop()
    stack.start_component("scheduler")

    third = wait_for("the scheduler to create the missed D3 run", lambda: nightly_runs(api).get(D3))
    assert third["run_type"] == "scheduled"
    try:
        assert wait_task(api, NIGHTLY, third["dag_run_id"], "materialize", ("failed", "success")) == "failed"
    finally:
        airflow.redis.start()
    states = task_states(api, NIGHTLY, third["dag_run_id"])
    assert (states["commit"], states["stats"]) == ("success", "upstream_failed")
    log = task_log(api, NIGHTLY, third["dag_run_id"], "materialize")
    assert "unreachable" in log, log[-2000:]
    assert wait_run(api, D3)["state"] == "failed"

    # The CLI reference for the missed days, while the scheduler runs D4.
    _cli(reference, "run", VIEW, "--ds", str(D3))
    _cli(reference, "run", VIEW, "--ds", str(D4))
    _cli(reference, "materialize", VIEW, "--start", str(D3), "--end", str(D4))

    fourth = wait_run(api, D4)
    assert fourth["state"] == "success", task_states(api, NIGHTLY, fourth["dag_run_id"])
    newer = airflow.online()

    # The operator clears D3's failed materialize (and what follows it): it publishes D3's
    # committed rows, and the check-and-set keeps D4's newer values.
    api.post(
        f"/api/v2/dags/{NIGHTLY}/clearTaskInstances",
        {
            "dry_run": False,
            "dag_run_id": third["dag_run_id"],
            "task_ids": ["materialize"],
            "include_downstream": True,
            "only_failed": False,
        },
    )
    assert wait_run(api, D3)["state"] == "success"
    assert task_states(api, NIGHTLY, third["dag_run_id"]) == dict.fromkeys(world.seen["tasks"], "success")
    assert sorted(nightly_runs(api)) == [D2, D3, D4]
    assert airflow.online() == newer
    assert airflow.table() == reference.table()
    assert airflow.online() == reference.online()
    assert airflow.stats() == reference.stats()
    assert world.api.get("/api/v2/importErrors")["total_entries"] == 0


@pytest.mark.timeout(600)
def test_closing_the_stack_leaves_no_process_cluster_or_port(world: World) -> None:
    stack = world.stack
    groups = stack.process_groups()
    assert sorted(groups) == ["api-server", "dag-processor", "scheduler"]
    postmaster = stack.postgres.postmaster_pid()
    assert postmaster is not None
    stack.close()
    assert {name: live_members(group) for name, group in groups.items()} == {name: [] for name in groups}
    assert not process_running(postmaster)
    assert not stack.root.exists()
    for port in stack.ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is no listener
            sock.bind(("127.0.0.1", port))  # free again
