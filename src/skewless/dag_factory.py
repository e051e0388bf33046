"""Airflow DAGs built from the deployed registry (``dags/skewless_dags.py`` calls :func:`build_dags`).

Per view, ``skewless__<view>``: nightly (``@daily`` data intervals in UTC, catchup, one active
run), tasks ``compute -> validate -> commit -> materialize -> stats -> freshness`` (plus, after
``stats``, one ``online_drift__<service>`` per feature service reading the view) for ``ds`` = the run's
``data_interval_start`` date. A manual ``skewless__backfill`` (params ``view``, ``start``,
``end``) runs one Spark job for the range (compute, validate, commit), then publishes it to Redis
and records its statistics, like the nightly DAG (a drift alert never holds back publishing).

Each nightly DAG starts at the view's ``schedule_start`` recorded in the registry by the
``apply`` that first published the view at its version (or at ``airflow.start_date`` from the
config), never at a date computed at parse time: parsing on any day yields the same DAGs, and
days missed while the scheduler was down are still caught up.

The task bodies are :mod:`skewless.orchestration` functions (the ones the CLI uses). Building
the DAGs reads the settings and the registry JSON only: no YAML, no Spark, no Great
Expectations. With no registry deployed there are no DAGs. With ``spark.submit: true`` each task
is a ``SparkSubmitOperator`` running ``jobs/view_task.py`` (``skewless task STEP``) or
``jobs/backfill_view.py`` (``skewless backfill``), the steps handing the staged run on through a
small JSON file under ``offline_root`` instead of XCom.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from datetime import UTC, date, datetime, time, timedelta
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Any

from skewless.manifest import Manifest, ViewSpec
from skewless.runtime.settings import Settings, load_settings

if TYPE_CHECKING:
    from airflow.sdk import DAG

DAG_PREFIX = "skewless__"
BACKFILL_DAG_ID = "skewless__backfill"
NIGHTLY_TASKS = ("compute", "validate", "commit", "materialize", "stats")
FRESHNESS_TASK = "freshness"
"""The nightly DAG's last task: the view's freshness SLA, as ``skewless status`` judges it (no Spark)."""
ONLINE_DRIFT_PREFIX = "online_drift__"
DS_TEMPLATE = "{{ data_interval_start.strftime('%Y-%m-%d') }}"

log = logging.getLogger(__name__)


def online_drift_id(service: str) -> str:
    """The nightly task comparing ``service``'s online values of the view with training (after stats)."""
    return f"{ONLINE_DRIFT_PREFIX}{service}"


def dag_id(view: str) -> str:
    return f"{DAG_PREFIX}{view}"


def build_dags(
    settings: Settings | None = None,
    manifest: Manifest | None = None,
    *,
    jobs_dir: str | os.PathLike[str] | None = None,
    schedule_start: Mapping[str, date] | None = None,
) -> dict[str, DAG]:
    """One nightly DAG per view plus the backfill DAG, keyed by dag_id (empty without a registry).

    Without ``manifest`` the deployed registry is read, with its ``schedule_start`` dates.
    """
    from skewless.registry import read_deployment

    settings = settings or load_settings()
    if manifest is None:
        deployment = read_deployment(settings.registry_uri)
        if deployment is not None:
            manifest, schedule_start = deployment.manifest, deployment.schedule_start
    if manifest is None or not manifest.views:
        return {}
    folder = settings.airflow.jobs_dir or jobs_dir or Path(__file__).resolve().parents[2] / "jobs"
    starts = _start_dates(settings, manifest, schedule_start or {})
    builder = _Builder(settings, manifest, Path(folder), starts)
    dags = {dag_id(name): builder.nightly(manifest.views[name]) for name in sorted(manifest.views)}
    dags[BACKFILL_DAG_ID] = builder.backfill()
    return dags


def _start_dates(settings: Settings, manifest: Manifest, recorded: Mapping[str, date]) -> dict[str, datetime]:
    """Each view's DAG start: ``airflow.start_date`` when configured, else the recorded one."""
    from skewless.registry import first_scheduled_ds

    starts: dict[str, datetime] = {}
    for name in sorted(manifest.views):
        day = settings.airflow.start_date or recorded.get(name)
        if day is None:
            # Only a registry published before start dates were recorded; the fallback moves
            # with the parse date, which is what `apply` recording the date fixes.
            log.warning(
                "view %s has no schedule start date in the registry: starting yesterday; "
                "run `skewless apply` to record one (or set airflow.start_date)",
                name,
            )
            day = first_scheduled_ds()
        starts[name] = datetime.combine(day, time(0), tzinfo=UTC)
    return starts


def _date(text: Any) -> date:
    return text if isinstance(text, date) else date.fromisoformat(str(text))


class _Builder:
    def __init__(
        self, settings: Settings, manifest: Manifest, jobs_dir: Path, start_dates: Mapping[str, datetime]
    ) -> None:
        self.settings = settings
        self.manifest = manifest
        self.jobs_dir = jobs_dir
        self.start_dates = start_dates

    # --- nightly -------------------------------------------------------------------------------

    def nightly(self, view: ViewSpec) -> DAG:
        from airflow.sdk import DAG, CronDataIntervalTimetable

        with DAG(
            dag_id=dag_id(view.name),
            description=f"skewless: compute, validate, commit, materialize and profile {view.name} nightly",
            # Interval semantics: the run for [ds, ds+1) starts after ds+1 00:00 UTC with
            # data_interval_start = ds (a bare "@daily" means a point-in-time trigger in Airflow 3).
            schedule=CronDataIntervalTimetable("@daily", timezone="UTC"),
            start_date=self.start_dates[view.name],
            catchup=True,
            max_active_runs=1,
            default_args={"owner": "skewless", "retries": 0},
            tags=["skewless", f"view:{view.name}"],
            doc_md=(
                f"View `{view.name}` v{view.version} ({view.kind}). Each run handles "
                "ds = the data interval's start date. Clear a run from `compute` to recompute it."
            ),
        ) as dag:
            if self.settings.spark.submit:
                self._submit_tasks(view)
            else:
                self._local_tasks(view)
        return dag

    def _materialize_retry(self, view: ViewSpec) -> dict[str, Any]:
        # With an availability lag the partition's values may not be publishable at midnight:
        # materialize refuses (PublishRefused) and is retried after the lag.
        if view.availability_lag_seconds <= 0:
            return {}
        delay = timedelta(seconds=max(300, view.availability_lag_seconds // 2))
        return {"retries": 4, "retry_delay": delay}

    def _local_tasks(self, view: ViewSpec) -> None:
        from airflow.sdk import task

        name = view.name

        @task(task_id="compute")
        def compute(day: str) -> str:
            from skewless.orchestration import compute_task

            return compute_task(name, _date(day))

        @task(task_id="validate")
        def validate(staged: Any) -> str:
            from skewless.orchestration import validate_task

            return validate_task(staged)

        @task(task_id="commit")
        def commit(staged: Any) -> dict[str, Any]:
            from skewless.orchestration import commit_task

            return commit_task(staged)

        @task(task_id="materialize", **self._materialize_retry(view))
        def materialize(committed: Any) -> dict[str, Any]:
            from skewless.orchestration import materialize_task

            # The committed range, not only ds: a run that repaired late data (late_data_days)
            # rewrote earlier ds too, and their newer rows must reach Redis.
            return materialize_task(name, _date(committed["start"]), _date(committed["end"]))

        @task(task_id="stats")
        def stats(published: Any) -> dict[str, Any]:
            from skewless.orchestration import stats_task

            # The range materialize published: the committed one, repaired days included.
            return stats_task(name, _date(published["start"]), _date(published["end"]))

        committed = commit(validate(compute(DS_TEMPLATE)))
        profiled = stats(materialize(committed))
        profiled >> self._freshness(view)
        for service in self._services(view):
            profiled >> self._local_online_drift(view, service)

    def _spark_submit(self, task_id: str, label: str, application: str, args: list[str], **extra: Any) -> Any:
        from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator

        conf = os.environ.get("SKEWLESS_CONF")
        return SparkSubmitOperator(
            task_id=task_id,
            application=str(self.jobs_dir / application),
            # The `skewless` command line after the job script (docs/cli.md): global options first.
            application_args=[*(["--conf", conf] if conf else []), *args],
            conn_id=self.settings.airflow.spark_conn_id,
            conf=dict(self.settings.spark.conf),
            name=f"skewless-{label}-{task_id}",
            **extra,
        )

    def _submit_tasks(self, view: ViewSpec) -> None:
        def step(task_id: str, **extra: Any) -> Any:
            args = [task_id, view.name, "--start", DS_TEMPLATE, "--end", DS_TEMPLATE]
            return self._spark_submit(task_id, view.name, "view_task.py", args, **extra)

        tasks = [
            step(task_id, **(self._materialize_retry(view) if task_id == "materialize" else {}))
            for task_id in NIGHTLY_TASKS
        ]
        for upstream, downstream in pairwise(tasks):
            upstream >> downstream
        tasks[-1] >> self._freshness(view)
        for service in self._services(view):
            args = [service, "--view", view.name]
            tasks[-1] >> self._spark_submit(online_drift_id(service), view.name, "online_drift.py", args)

    def _services(self, view: ViewSpec) -> list[str]:
        """The feature services that read a feature of ``view`` (each gets an online drift task)."""
        services = self.manifest.services.items()
        return sorted(name for name, spec in services if any(ref.view == view.name for ref in spec.features))

    @staticmethod
    def _local_online_drift(view: ViewSpec, service: str) -> Any:
        """Sampled online values of ``service`` against its training statistics (this view's features)."""
        from airflow.sdk import task

        name = view.name

        @task(task_id=online_drift_id(service))
        def online_drift() -> list[dict[str, Any]]:
            from skewless.orchestration import deployment, spark_session
            from skewless.validate.online_drift import compare_online

            settings, manifest = deployment()
            spark = spark_session(settings, f"skewless-online-drift-{service}")
            result = compare_online(spark, settings, manifest, service, views=[name])
            return [
                {"feature": r.feature, "psi": r.psi, "drift_status": r.drift_status, "ds": r.ds.isoformat()}
                for r in result.rows
            ]

        return online_drift()

    @staticmethod
    def _freshness(view: ViewSpec) -> Any:
        """Fails (FreshnessBroken, one line per side) when the view breaks its SLA at the task's time."""
        from airflow.sdk import task

        name = view.name

        @task(task_id=FRESHNESS_TASK)
        def freshness() -> dict[str, Any]:
            from skewless.freshness import check_freshness
            from skewless.orchestration import deployment

            settings, manifest = deployment()
            return check_freshness(settings, manifest, [name])[0].to_json()

        return freshness()

    # --- backfill ------------------------------------------------------------------------------

    def backfill(self) -> DAG:
        from airflow.sdk import DAG, Param

        views = sorted(self.manifest.views)
        with DAG(
            dag_id=BACKFILL_DAG_ID,
            description="skewless: backfill one view over a ds range in one Spark job, then publish it",
            schedule=None,
            start_date=min(self.start_dates.values()),
            catchup=False,
            default_args={"owner": "skewless", "retries": 0},
            tags=["skewless", "backfill"],
            params={
                "view": Param(views[0], type="string", enum=views, description="View to backfill"),
                "start": Param(type="string", format="date", description="First ds (YYYY-MM-DD)"),
                "end": Param(type="string", format="date", description="Last ds, inclusive"),
            },
            doc_md="Compute, validate and commit ds `start..end` of `view` in one Spark job, "
            "then materialize the range to Redis and record its statistics.",
        ) as dag:
            if self.settings.spark.submit:
                args = [
                    "{{ params.view }}",
                    "--start",
                    "{{ params.start }}",
                    "--end",
                    "{{ params.end }}",
                ]
                view = "{{ params.view }}"
                # --handoff: materialize and stats read the range the backfill committed.
                run = self._spark_submit(
                    "backfill", view, "backfill_view.py", [*args, "--no-stats", "--handoff"]
                )
                step = ("materialize", "stats")
                publish, profile = (
                    self._spark_submit(name, view, "view_task.py", [name, *args]) for name in step
                )
                run >> publish >> profile
            else:
                self._local_backfill()
        return dag

    @staticmethod
    def _local_backfill() -> None:
        from airflow.sdk import task

        @task(task_id="backfill")
        def backfill(view: str, start: str, end: str) -> dict[str, Any]:
            from skewless.orchestration import backfill_task

            return backfill_task(view, _date(start), _date(end))

        # materialize and stats take the range the backfill committed, not the params: a backfill
        # that re-read late input commits a wider range (docs/semantics.md, Late data).
        @task(task_id="materialize")
        def materialize(view: str, committed: Any) -> dict[str, Any]:
            from skewless.orchestration import materialize_task

            return materialize_task(view, _date(committed["start"]), _date(committed["end"]))

        @task(task_id="stats")
        def stats(view: str, committed: Any) -> dict[str, Any]:
            from skewless.orchestration import stats_task

            return stats_task(view, _date(committed["start"]), _date(committed["end"]))

        view = "{{ params.view }}"
        committed = backfill(view, "{{ params.start }}", "{{ params.end }}")
        materialize(view, committed) >> stats(view, committed)
