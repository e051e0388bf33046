"""``skewless`` command line: thin commands over the library, one error handler.

Library code never prints or exits; commands turn results into text and exit codes here.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import click

from skewless.errors import PlanRefused, SkewlessError
from skewless.runtime.settings import Settings, load_settings

if TYPE_CHECKING:
    from skewless.manifest import Manifest
    from skewless.offline.jobs import RunResult
    from skewless.plan import Plan, StaleRange


@dataclass
class Context:
    conf: str | None
    debug: bool

    @cached_property
    def settings(self) -> Settings:
        """Loaded on first use, so ``validate --defs DIR`` works without any config file."""
        return load_settings(self.conf)


pass_context = click.make_pass_decorator(Context)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--conf",
    type=click.Path(dir_okay=False),
    default=None,
    help="Config file (default: $SKEWLESS_CONF, else conf/local.yaml when present).",
)
@click.option("--debug", is_flag=True, help="Show full tracebacks instead of one-line errors.")
@click.version_option(package_name="skewless")
@click.pass_context
def cli(ctx: click.Context, conf: str | None, debug: bool) -> None:
    """skewless: feature definitions -> Spark jobs -> Delta offline store -> Redis online store."""
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    ctx.obj = Context(conf=conf, debug=debug)


def _defs(context: Context, defs: str | None) -> Path:
    return Path(defs or context.settings.defs)


@cli.command()
@click.option("--defs", type=click.Path(), default=None, help="Feature definitions folder.")
@click.option("--deep", is_flag=True, help="Also check columns and filters against the real sources (Spark).")
@pass_context
def validate(context: Context, defs: str | None, deep: bool) -> int:
    """Compile every definition; print every error with file:line."""
    manifest = _compile(context, defs)
    if deep:
        from skewless.offline.deep import deep_validate
        from skewless.runtime.spark import get_spark

        deep_validate(get_spark(context.settings), context.settings, manifest)
    click.echo(
        f"OK: {len(manifest.entities)} entities, {len(manifest.sources)} sources, "
        f"{len(manifest.views)} views, "
        + (f"{len(manifest.on_demand_views)} on-demand views, " if manifest.on_demand_views else "")
        + f"{len(manifest.services)} services"
        + (" (sources checked)" if deep else "")
    )
    return 0


def _compile(context: Context, defs: str | None) -> Manifest:
    """Compile the tree; sources without ``columns:`` get their types from their files when readable."""
    from skewless.compile import compile_tree
    from skewless.offline.inputs import source_column_reader

    return compile_tree(_defs(context, defs), source_column_reader(context.settings))


def _plan(context: Context, defs: str | None) -> tuple[Manifest, Plan]:
    from skewless.offline.catalog import committed_ranges
    from skewless.plan import plan
    from skewless.registry import read_registry

    settings = context.settings
    manifest = _compile(context, defs)
    deployed = read_registry(settings.registry_uri)
    # Tables of both manifests: a re-added view may find its old table still holding partitions.
    ranges = committed_ranges(settings, manifest, *([deployed] if deployed else []))
    return manifest, plan(deployed, manifest, ranges, _stale(settings, deployed))


def _stale(settings: Settings, deployed: Manifest | None) -> dict[str, tuple[StaleRange, ...]]:
    """Stale ranges of the deployed views (what their tables were computed from).

    A source ``plan`` cannot read (e.g. CI without the data) is a warning, not a failed plan.
    """
    from skewless.offline.status import view_status

    out: dict[str, tuple[StaleRange, ...]] = {}
    for name, view in sorted((deployed.views if deployed else {}).items()):
        try:
            report = view_status(settings, view)
        except SkewlessError as exc:
            click.echo(f"warning: {name}: cannot check its raw input for changes: {exc}", err=True)
            continue
        if report.stale:
            out[name] = report.stale
    return out


@cli.command(name="plan")
@click.option("--defs", type=click.Path(), default=None, help="Feature definitions folder.")
@click.option("--format", "fmt", type=click.Choice(["text", "markdown"]), default="text")
@pass_context
def plan_command(context: Context, defs: str | None, fmt: str) -> int:
    """Diff the definitions against the deployed registry; exit 1 on breaking changes."""
    from skewless.plan import render_markdown, render_text

    _, result = _plan(context, defs)
    click.echo(render_markdown(result) if fmt == "markdown" else render_text(result))
    return 1 if result.breaking else 0


@cli.command()
@click.option("--defs", type=click.Path(), default=None, help="Feature definitions folder.")
@pass_context
def apply(context: Context, defs: str | None) -> int:
    """Publish the compiled registry (refused on breaking changes, or when another apply
    published since the plan read the deployed registry)."""
    from skewless.offline.evolution import add_feature_columns
    from skewless.plan import render_text
    from skewless.registry import publish_registry, read_registry

    manifest, result = _plan(context, defs)
    click.echo(render_text(result))
    if result.breaking:
        raise PlanRefused(result.breaking)
    deployed = read_registry(context.settings.registry_uri)
    # Compare-and-set against the registry this plan was computed from. Without changes it
    # writes nothing, unless the deployed registry lacks a view's schedule start date.
    registry_hash = publish_registry(context.settings.registry_uri, manifest, expected=result.old_hash)
    if result.has_changes:
        click.echo(f"\nApplied registry {registry_hash[:12]} to {context.settings.registry_uri}")
    # Columns of added features, once the registry that has them is published: a run of the new
    # registry that commits before this adds them itself; one of the old registry still computing
    # is refused at its commit (docs/feature-definitions.md, "Changes and versions").
    for added in add_feature_columns(context.settings, deployed, manifest):
        click.echo(
            f"{added.view}: added nullable columns {', '.join(added.columns)} to {added.table}"
            " (committed partitions read null for them until the backfill above)"
        )
    return 0


def _registry(context: Context) -> Manifest:
    from skewless.registry import require_registry

    return require_registry(context.settings.registry_uri)


def _check_range(manifest: Manifest, view: str, start: datetime | date, end: datetime | date) -> None:
    """Usage problems a Spark job would only find after its session started."""
    manifest.view(view)  # UnknownObjectError naming the views there are
    if end < start:
        raise click.UsageError(f"--end {end:%Y-%m-%d} is before --start {start:%Y-%m-%d}")


def _echo_run(result: RunResult) -> None:
    days = "" if result.start == result.end else f"..{result.end}"
    extended = ""
    if result.requested is not None:
        first, last = result.requested
        extended = f" (asked for {first}..{last}; extended to the ds that depend on re-read raw input)"
    click.echo(
        f"{result.view}: committed ds {result.start}{days} ({result.rows} rows) as table version "
        f"{result.table_version}{extended}"
    )


@cli.command()
@click.argument("view")
@click.option("--ds", "ds", type=click.DateTime(["%Y-%m-%d"]), required=True, help="UTC date to compute.")
@pass_context
def run(context: Context, view: str, ds: datetime) -> int:
    """Compute, validate and commit one ds partition of VIEW, then record its statistics."""
    return _run_range(context, view, ds, ds, "run")


@cli.command()
@click.argument("view")
@click.option("--start", type=click.DateTime(["%Y-%m-%d"]), required=True, help="First UTC date.")
@click.option("--end", type=click.DateTime(["%Y-%m-%d"]), required=True, help="Last UTC date (inclusive).")
@click.option("--no-stats", is_flag=True, help="Skip the statistics (a later step records them).")
@click.option(
    "--handoff",
    is_flag=True,
    help="Record the committed range for later `skewless task materialize|stats` steps "
    "(the backfill DAG under spark-submit).",
)
@pass_context
def backfill(
    context: Context, view: str, start: datetime, end: datetime, no_stats: bool, handoff: bool
) -> int:
    """Compute, validate and commit ds partitions START..END of VIEW in one Spark job, then statistics."""
    return _run_range(context, view, start, end, "backfill", stats=not no_stats, handoff=handoff)


def _run_range(
    context: Context,
    view: str,
    start: datetime,
    end: datetime,
    command: str,
    *,
    stats: bool = True,
    handoff: bool = False,
) -> int:
    """Validation (Great Expectations) gates the commit; a failure commits nothing and keeps a report."""
    from skewless.orchestration import run_range
    from skewless.runtime.spark import get_spark

    manifest = _registry(context)
    _check_range(manifest, view, start, end)
    spark = get_spark(context.settings, app_name=f"skewless-{command}-{view}")
    done = run_range(
        spark, context.settings, manifest, view, start.date(), end.date(), stats=stats, raise_on_drift=False
    )
    _echo_run(done.run)
    if handoff:
        from skewless.orchestration import record_committed

        record_committed(context.settings, view, start.date(), end.date(), done.run)
    if done.stats is not None:
        for item in done.stats.with_status("warn"):
            click.echo(f"warning: {view} ds {item.ds}: {item.feature} drifted (PSI {item.psi:.4f})", err=True)
        done.stats.raise_for_drift(context.settings.validation)
    return 0


@cli.command()
@click.argument("view", required=False)
@click.option(
    "--now",
    "at",
    default=None,
    help="Judge freshness as of this ISO-8601 time (UTC if no zone; default: the current time).",
)
@pass_context
def status(context: Context, view: str | None, at: str | None) -> int:
    """Per view, the days whose raw input changed after they were computed and the ds to recompute
    (with the backfill that repairs them), and offline and online freshness against the view's SLA;
    exit 1 when any view is stale or breaks its SLA."""
    from skewless.offline.status import status as view_statuses

    moment = None
    if at is not None:
        try:
            moment = datetime.fromisoformat(at)
        except ValueError:
            raise click.BadParameter(f"not an ISO-8601 time: {at!r}", param_hint="--now") from None
    reports = view_statuses(context.settings, _registry(context), None if view is None else [view], moment)
    for report in reports:
        for line in report.lines():
            click.echo(line)
    for report in reports:
        problem = report.freshness.problem() if report.freshness is not None else None
        if problem is not None:
            click.echo(f"error: {problem}", err=True)
    return 0 if all(report.ok for report in reports) else 1


# --- Online store: materialize, get-online, serve (docs/online-store.md) -----------------------


@cli.command()
@click.argument("view")
@click.option("--ds", "ds", type=click.DateTime(["%Y-%m-%d"]), default=None, help="UTC date to publish.")
@click.option("--start", type=click.DateTime(["%Y-%m-%d"]), default=None, help="First UTC date.")
@click.option("--end", type=click.DateTime(["%Y-%m-%d"]), default=None, help="Last UTC date (inclusive).")
@click.option(
    "--transport",
    type=click.Choice(["rows", "arrow"]),
    default="rows",
    show_default=True,
    help="How rows reach the executors' writers: foreachPartition (rows) or mapInArrow (arrow, faster).",
)
@pass_context
def materialize(
    context: Context,
    view: str,
    ds: datetime | None,
    start: datetime | None,
    end: datetime | None,
    transport: Literal["rows", "arrow"],
) -> int:
    """Publish ds partitions of VIEW from the offline table to Redis."""
    if (ds is None) == (start is None or end is None) or (ds is not None and (start or end)):
        raise click.UsageError("give either --ds DATE or both --start DATE and --end DATE")
    first, last = (ds.date(), ds.date()) if ds is not None else (start.date(), end.date())  # type: ignore[union-attr]
    _check_range(_registry(context), view, first, last)
    return _materialize(context, view, first, last, transport)


def _materialize(
    context: Context, view: str, first: date, last: date, transport: Literal["rows", "arrow"] = "rows"
) -> int:
    from skewless.orchestration import materialize_task

    result = materialize_task(view, first, last, settings=context.settings, transport=transport)
    days = str(first) if first == last else f"{first}..{last}"
    click.echo(
        f"{view}: published ds {days}: {result['rows']} rows ({result['tombstones']} tombstones); "
        f"{result['written']} written, {result['kept_newer']} kept (newer in Redis), "
        f"{result['already_expired']} already expired"
    )
    if result["days_without_rows"]:
        missing = ", ".join(map(str, result["days_without_rows"]))
        click.echo(f"warning: no committed rows for ds {missing} (not computed yet?)", err=True)
    return 0


# --- Low-level steps of the nightly DAG under spark-submit (docs/cli.md, "skewless task") --------


@cli.group(name="task")
def task_group() -> None:
    """One step of a view's nightly DAG (what its spark-submit tasks run; docs/airflow.md).

    compute stages ds START..END and keeps the staged run in a small JSON file under
    offline_root; validate and commit read it; materialize publishes the range compute staged.
    """


def _task_range(view: str, start: datetime, end: datetime) -> tuple[str, date, date]:
    if end < start:
        raise click.UsageError(f"--end {end:%Y-%m-%d} is before --start {start:%Y-%m-%d}")
    return view, start.date(), end.date()


_TASK_OPTIONS = (
    click.argument("view"),
    click.option("--start", type=click.DateTime(["%Y-%m-%d"]), required=True, help="First UTC date."),
    click.option("--end", type=click.DateTime(["%Y-%m-%d"]), required=True, help="Last UTC date."),
)


def _task_command(name: str, help_text: str) -> Callable[[Callable[..., int]], click.Command]:
    def decorate(function: Callable[..., int]) -> click.Command:
        wrapped: Any = pass_context(function)
        for option in reversed(_TASK_OPTIONS):
            wrapped = option(wrapped)
        return task_group.command(name=name, help=help_text)(wrapped)

    return decorate


@_task_command("compute", "Stage ds START..END of VIEW (late data repaired per late_data_days).")
def task_compute(context: Context, view: str, start: datetime, end: datetime) -> int:
    from skewless.orchestration import compute_task, write_handoff

    name, first, last = _task_range(view, start, end)
    staged = compute_task(name, first, last, settings=context.settings)
    uri = write_handoff(context.settings, name, first, last, staged)
    click.echo(f"{name}: ds {first}..{last} staged ({uri})")
    return 0


@_task_command("validate", "Audit the rows compute staged; discard them on failure.")
def task_validate(context: Context, view: str, start: datetime, end: datetime) -> int:
    from skewless.orchestration import read_handoff, validate_task

    name, first, last = _task_range(view, start, end)
    validate_task(read_handoff(context.settings, name, first, last), settings=context.settings)
    click.echo(f"{name}: ds {first}..{last} passed validation")
    return 0


@_task_command("commit", "Commit the rows compute staged (after validate).")
def task_commit(context: Context, view: str, start: datetime, end: datetime) -> int:
    from skewless.orchestration import commit_task, read_handoff

    name, first, last = _task_range(view, start, end)
    result = commit_task(read_handoff(context.settings, name, first, last), settings=context.settings)
    rows, version = result["rows"], result["table_version"]
    click.echo(f"{name}: ds {first}..{last} committed ({rows} rows), version {version}")
    return 0


@_task_command("materialize", "Publish the range committed (else START..END) to Redis.")
def task_materialize(context: Context, view: str, start: datetime, end: datetime) -> int:
    from skewless.orchestration import handoff_range

    name, first, last = _task_range(view, start, end)
    return _materialize(context, name, *handoff_range(context.settings, name, first, last))


@_task_command("stats", "Record the statistics and drift of the range committed (else START..END).")
def task_stats(context: Context, view: str, start: datetime, end: datetime) -> int:
    from skewless.orchestration import handoff_range, stats_task

    name, first, last = _task_range(view, start, end)
    first, last = handoff_range(context.settings, name, first, last)
    result = stats_task(name, first, last, settings=context.settings)
    for warning in result["drift_warnings"]:
        click.echo(f"warning: {name} ds {warning}: drifted", err=True)
    click.echo(f"{name}: ds {first}..{last} statistics recorded (version {result['stats_version']})")
    return 0


@cli.command(name="get-online")
@click.option("--service", default=None, help="Feature service name.")
@click.option("--features", default=None, help="Comma-separated view:feature list.")
@click.option(
    "--entity",
    "entities",
    multiple=True,
    required=True,
    help="One entity: key=value[,key=value] or a JSON object, with the request fields of on-demand "
    "features (e.g. merchant_id=m1,amount=120.5); repeat for more entities.",
)
@click.option(
    "--at",
    "--now",
    "at",
    default=None,
    help="Answer as of this ISO-8601 time (UTC if no zone; default now). Refused (exit 1) for a "
    "time before an entity's stored feature_ts: the online store holds only the latest row.",
)
@pass_context
def get_online(
    context: Context, service: str | None, features: str | None, entities: tuple[str, ...], at: str | None
) -> int:
    """Print online feature values as JSON, one object per entity (nulls as null, NaN as "NaN")."""
    from skewless.online.client import OnlineClient, parse_entity
    from skewless.online.jsonio import dumps, json_rows

    if (service is None) == (features is None):
        raise click.UsageError("give either --service NAME or --features view:feature,...")
    moment = None
    if at is not None:
        try:
            moment = datetime.fromisoformat(at)
        except ValueError:
            raise click.BadParameter(f"not an ISO-8601 time: {at!r}", param_hint="--at") from None
    with OnlineClient(context.settings, _registry(context)) as client:
        plan = client.plan(features, service)
        rows = client.get_online_features(
            [parse_entity(text, plan) for text in entities], features, service, now=moment
        )
    click.echo(dumps(json_rows(rows), indent=2))
    return 0


@cli.command()
@click.option("--port", type=int, default=8000, show_default=True)
@click.option(
    "--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0: every interface)."
)
@click.option(
    "--max-body-bytes",
    type=click.IntRange(min=1),
    default=8 * 1024 * 1024,
    show_default=True,
    help="Larger request bodies get 413.",
)
@click.option(
    "--max-entities",
    type=click.IntRange(min=1),
    default=10_000,
    show_default=True,
    help="Requests with more entities get 413.",
)
@pass_context
def serve(context: Context, port: int, host: str, max_body_bytes: int, max_entities: int) -> int:
    """HTTP feature server: GET /health, POST /features, GET /metrics (Prometheus).

    When SKEWLESS_SERVE_TOKEN is set, /features and /metrics require "Authorization: Bearer <token>".
    """
    from skewless.online.server import Limits
    from skewless.online.server import serve as run_server

    limits = Limits(max_body_bytes=max_body_bytes, max_entities=max_entities)
    run_server(context.settings, _registry(context), host, port, limits=limits)
    return 0


@cli.command(name="training-set")
@click.option("--service", default=None, help="Feature service whose features to join.")
@click.option("--features", default=None, help="Comma-separated view:feature list.")
@click.option("--spine", default=None, help="Parquet or Delta path with the join keys and a timestamp.")
@click.option("--out", required=True, help="Output path (must not exist).")
@click.option("--timestamp-column", default="event_timestamp", show_default=True)
@click.option("--format", "fmt", type=click.Choice(["parquet", "delta"]), default=None, help="Output format.")
@click.option("--rebuild", default=None, help="A training set's manifest (or its folder) to reproduce.")
@click.option(
    "--method",
    type=click.Choice(["auto", "asof"]),
    default="auto",
    show_default=True,
    help="asof forces the general join even where the boundary equi-join is exact.",
)
@pass_context
def training_set(
    context: Context,
    service: str | None,
    features: str | None,
    spine: str | None,
    out: str,
    timestamp_column: str,
    fmt: str | None,
    rebuild: str | None,
    method: str,
) -> int:
    """Point-in-time join of a spine with features; writes the rows and a manifest."""
    from skewless.pit.training_set import training_set_command

    record = training_set_command(
        context.settings,
        out=out,
        spine_path=spine,
        features=features,
        service=service,
        timestamp_column=timestamp_column,
        output_format=fmt,  # type: ignore[arg-type]
        method=method,
        rebuild=rebuild,
    )
    tables = ", ".join(
        f"{name} at Delta version {t.version} ({t.path} join)" for name, t in sorted(record.tables.items())
    )
    click.echo(f"wrote {record.spine_rows} rows to {out} ({record.output_format}); tables: {tables}")
    return 0


@cli.command(name="check-skew")
@click.argument("view")
@click.option("--sample", default=1000, show_default=True, help="Entities to compare (plus 10% absent ones).")
@click.option("--seed", default=0, show_default=True, help="Sampling seed.")
@pass_context
def check_skew_command(context: Context, view: str, sample: int, seed: int) -> int:
    """Compare online answers now with the training join at now; exit 1 on any mismatch."""
    from skewless.online.skew import check_skew
    from skewless.runtime.spark import get_spark

    manifest = _registry(context)
    manifest.view(view)  # an unknown view fails before Spark starts
    spark = get_spark(context.settings, app_name=f"skewless-check-skew-{view}")
    report = check_skew(spark, context.settings, manifest, view, sample=sample, seed=seed)
    click.echo(
        f"{report.view} at {report.at.isoformat()}: {report.entities} entities "
        f"({report.with_values} with values, {report.absent_entities} absent everywhere), "
        f"{len(report.mismatches)} mismatch{'es' if len(report.mismatches) != 1 else ''}"
    )
    for mismatch in report.mismatches[:50]:
        click.echo(f"  {mismatch}")
    if len(report.mismatches) > 50:
        click.echo(f"  ... and {len(report.mismatches) - 50} more")
    return 0 if report.ok else 1


@cli.command(name="online-drift")
@click.argument("service")
@click.option("--view", "views", multiple=True, help="Only this view's features (repeatable; default: all).")
@click.option("--sample", default=1000, show_default=True, help="Entities to sample per view.")
@click.option("--seed", default=0, show_default=True, help="Sampling seed.")
@pass_context
def online_drift_command(
    context: Context, service: str, views: tuple[str, ...], sample: int, seed: int
) -> int:
    """PSI of a sample of SERVICE's online values against their training statistics; recorded in
    the service's online statistics table. Exit 1 when a PSI reaches validation.drift_psi_fail."""
    from skewless.runtime.spark import get_spark
    from skewless.validate.online_drift import compare_online

    manifest = _registry(context)
    manifest.service(service)  # an unknown service fails before Spark starts
    for view in views:
        manifest.view(view)
    spark = get_spark(context.settings, app_name=f"skewless-online-drift-{service}")
    result = compare_online(
        spark,
        context.settings,
        manifest,
        service,
        views=views or None,
        sample=sample,
        seed=seed,
        raise_on_drift=False,
    )
    for row in result.rows:
        value = "-" if row.psi is None else f"{row.psi:.4f}"
        click.echo(
            f"{row.view}:{row.feature}: PSI {value} ({row.drift_status}) of {row.online_values} online values"
            f" from {row.sampled_entities} entities against {row.reference_days} day(s) of statistics"
        )
    click.echo(f"recorded in {result.uri}")
    result.raise_for_drift(context.settings.validation)
    return 0


@cli.command()
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Folder to write the site to.")
@click.option("--defs", type=click.Path(), default=None, help="Feature definitions (for the YAML shown).")
@pass_context
def docs(context: Context, out: str, defs: str | None) -> int:
    """Build the static catalog site of the deployed registry (opens from file://, no server)."""
    from skewless.catalog_site.gather import build_site

    result = build_site(context.settings, _registry(context), Path(out), defs=_defs(context, defs))
    for problem in result.problems:
        click.echo(f"warning: {problem}", err=True)
    where = result.index.resolve().as_uri()
    click.echo(f"wrote {result.pages} pages and {result.reports} validation reports; open {where}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: the one place that turns errors into messages and exit codes.

    Every failure is exit 1 and one line on stderr (``--debug`` re-raises for the traceback);
    usage errors too, so scripts can tell success from failure without parsing text.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    try:
        # Without standalone mode click raises instead of exiting, and returns the command's
        # return value, or the code of a ``ctx.exit`` (0 after --help and --version).
        result = cli.main(args=args, prog_name="skewless", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 130
    except click.UsageError as exc:
        where = exc.ctx.command_path if exc.ctx is not None else "skewless"
        click.echo(f"error: {exc.format_message()} (see `{where} --help`)", err=True)
        return 1
    except click.ClickException as exc:
        click.echo(f"error: {exc.format_message()}", err=True)
        return 1
    except Exception as exc:  # the one handler: no traceback for the user without --debug
        if debug:
            raise
        click.echo(f"error: {describe_failure(exc)}", err=True)
        return 1
    return result if isinstance(result, int) else 0


def run_as(command: str, argv: Sequence[str] | None = None) -> int:
    """:func:`main` for ``skewless COMMAND ARGS``: what the spark-submit entry points in ``jobs/`` run.

    ``argv`` is the command line after the job script, the global options (``--conf FILE``,
    ``--debug``) first, as with ``skewless``; e.g. ``--conf c.yaml spend --ds 2024-03-01``.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    leading: list[str] = []
    while args and (args[0] in ("--conf", "--debug") or args[0].startswith("--conf=")):
        take = 2 if args[0] == "--conf" else 1
        leading, args = leading + args[:take], args[take:]
    return main([*leading, command, *args])


def describe_failure(exc: BaseException) -> str:
    """One line for any failure: the user's own error as written, else where it came from."""
    if isinstance(exc, SkewlessError):
        return str(exc)
    text = str(exc)
    # An error raised on an executor (e.g. a Redis write in foreachPartition) comes back wrapped
    # in Spark's traceback text; the original skewless message is the line that names its class.
    for line in text.splitlines():
        if "skewless.errors." in line and ": " in line:
            return line.split("skewless.errors.", 1)[1].split(": ", 1)[1].strip()
    if "No module named 'skewless'" in text:
        return (
            "the Spark executors cannot import skewless: ship it with spark-submit --py-files "
            "(or spark.submit.pyFiles in spark.conf) or install it on the workers' Python (docs/cluster.md)"
        )
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    if type(exc).__module__.startswith(("pyspark", "py4j")):
        return f"Spark failed: {first[:500]} (rerun with --debug for the full trace)"
    return f"unexpected {type(exc).__name__}: {first[:500]} (rerun with --debug for the traceback)"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
