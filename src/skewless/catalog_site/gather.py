"""``skewless docs``: read what the site shows, build the page models, write the files.

Reads without Spark: the deployed registry, the YAML definitions (for file:line and text), the
views' Delta logs (committed ``ds``), the statistics tables and the latest partition of each view
through delta-rs, the kept validation reports, and freshness (:mod:`skewless.freshness`; online
markers from Redis when it answers). What cannot be read becomes a note on the catalog page, not
a failed build (docs/catalog.md).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from skewless.catalog_site.model import (
    Definition,
    OnlinePsiPoint,
    ReportEntry,
    SiteInputs,
    StatsPoint,
    build_site_model,
)
from skewless.catalog_site.render import render_site
from skewless.errors import SkewlessError
from skewless.freshness import ViewFreshness
from skewless.manifest import Manifest, ViewSpec
from skewless.runtime.settings import Settings, is_remote, join_uri

MARKER = ".skewless-site"
"""File marking a folder as a site ``skewless docs`` built (and may therefore replace)."""
LATEST_VALUES_CAP = 200_000
"""Values of the latest partition read per feature for its distribution plot."""
STATS_COLUMNS = ("ds", "feature", "rows", "null_rate", "mean", "min", "max", "p50", "p90", "p99", "psi",
                 "drift_status")  # fmt: skip


class SiteError(SkewlessError):
    """The site cannot be written where asked."""


@dataclass(frozen=True)
class SiteBuild:
    out: Path
    index: Path
    pages: int
    reports: int
    problems: tuple[str, ...]


# --- definitions -------------------------------------------------------------------------------


def _document_text(lines: Sequence[str], start_line: int) -> str:
    """The document starting on ``start_line`` (1-based), up to the next ``---`` or the end."""
    out: list[str] = []
    for text in lines[start_line - 1 :]:
        if text.startswith("---") and out:
            break
        out.append(text)
    while out and not out[-1].strip():
        out.pop()
    return "\n".join(out)


def read_definitions(
    defs: Path, deployed: Manifest, settings: Settings
) -> tuple[dict[tuple[str, str], Definition], list[str]]:
    """Each object of the YAML tree with its file:line and text, and whether it is what is deployed."""
    from skewless.compile.compiler import compile_tree
    from skewless.errors import SpecError
    from skewless.offline.inputs import source_column_reader
    from skewless.spec.loader import load_tree

    if not defs.exists():
        return {}, [f"no definitions folder at {defs}: the view pages show no YAML"]
    tree = load_tree(defs)
    problems = []
    compiled: Manifest | None
    try:  # the same compile as `skewless validate` (on-demand functions and source columns included)
        compiled = compile_tree(defs, source_column_reader(settings))
    except SpecError as exc:
        compiled = None
        problems.append(f"{defs}: {len(exc.problems)} problem(s) in the definitions (run skewless validate)")
    texts: dict[str, list[str]] = {}
    out: dict[tuple[str, str], Definition] = {}
    root = defs.resolve() if defs.is_dir() else defs.resolve().parent
    for item in tree.objects:
        file = item.document.file
        if file not in texts:
            texts[file] = Path(file).read_text(encoding="utf-8").splitlines()
        try:
            shown = str(Path(file).resolve().relative_to(root))
        except ValueError:
            shown = file
        name = item.obj.name
        out[(item.kind, name)] = Definition(
            file=shown,
            line=item.document.start_line,
            text=_document_text(texts[file], item.document.start_line),
            matches_deployed=compiled is not None and _deployed_equal(item.kind, name, compiled, deployed),
        )
    return out, problems


def _deployed_equal(kind: str, name: str, compiled: Manifest, deployed: Manifest) -> bool:
    groups: Mapping[str, Mapping[str, Any]] = {
        "entity": compiled.entities,
        "source": compiled.sources,
        "view": compiled.views,
        "service": compiled.services,
        "on_demand": compiled.on_demand_views,
    }
    deployed_groups: Mapping[str, Mapping[str, Any]] = {
        "entity": deployed.entities,
        "source": deployed.sources,
        "view": deployed.views,
        "service": deployed.services,
        "on_demand": deployed.on_demand_views,
    }
    mine = groups.get(kind, {}).get(name)
    return mine is not None and mine == deployed_groups.get(kind, {}).get(name)


# --- tables ------------------------------------------------------------------------------------


def read_stats_points(settings: Settings, view: ViewSpec) -> list[StatsPoint]:
    """The statistics rows of the view's current version (docs/validation.md), sketches left out."""
    from deltalake import DeltaTable

    from skewless.offline.catalog import is_delta_table
    from skewless.offline.storage_options import storage_options
    from skewless.validate.stats import stats_uri

    uri = stats_uri(settings, view)
    if not is_delta_table(uri):
        return []
    table = DeltaTable(uri, storage_options=storage_options(uri)).to_pyarrow_table(
        columns=list(STATS_COLUMNS)
    )
    points = []
    for row in table.to_pylist():
        day = row["ds"] if isinstance(row["ds"], date) else date.fromisoformat(str(row["ds"]))
        points.append(StatsPoint(**{**row, "ds": day, "rows": int(row["rows"] or 0)}))
    return sorted(points, key=lambda p: (p.ds, p.feature))


def read_latest_values(settings: Settings, view: ViewSpec, day: date) -> dict[str, list[Any]]:
    """Each feature's non-null values in the committed partition ``day`` (at most the cap)."""
    from deltalake import DeltaTable

    from skewless.offline.delta import partition_value
    from skewless.offline.storage_options import storage_options

    uri = settings.table_uri(view.table)
    table = DeltaTable(uri, storage_options=storage_options(uri))
    present = {field.name for field in table.schema().fields}
    names = [f.name for f in view.features if f.name in present]
    rows = table.to_pyarrow_table(partitions=[("ds", "=", partition_value(day))], columns=names)
    rows = rows.slice(0, LATEST_VALUES_CAP)
    return {name: [v for v in rows.column(name).to_pylist() if v is not None] for name in names}


# --- validation reports ------------------------------------------------------------------------


def _report_files(settings: Settings, view: str) -> list[tuple[str, bytes]]:
    """(file name, bytes) of the view's kept reports, local or on object storage."""
    from skewless.validate.gate import REPORTS_DIR

    uri = join_uri(settings.offline_root, f"{REPORTS_DIR}/{view}")
    if not is_remote(uri):
        folder = Path(uri.removeprefix("file://"))
        if not folder.is_dir():
            return []
        return [(p.name, p.read_bytes()) for p in sorted(folder.glob("*.json"))]
    from pyarrow import fs

    filesystem, path = fs.FileSystem.from_uri(uri)
    infos = filesystem.get_file_info(fs.FileSelector(path, allow_not_found=True))
    out = []
    for info in sorted(infos, key=lambda i: i.path):
        if info.type == fs.FileType.File and info.path.endswith(".json"):
            with filesystem.open_input_stream(info.path) as stream:
                out.append((os.path.basename(info.path), stream.read()))
    return out


def read_reports(settings: Settings, view: ViewSpec) -> tuple[list[ReportEntry], dict[str, bytes]]:
    """The view's reports of its current version, and their bytes keyed by their path in the site."""
    entries, files = [], {}
    for name, data in _report_files(settings, view.name):
        try:
            body = json.loads(data)
            if body.get("version") != view.version:
                continue
            link = f"reports/{view.name}/{name}"
            entries.append(
                ReportEntry(
                    start=date.fromisoformat(body["start"]),
                    end=date.fromisoformat(body["end"]),
                    created_at=datetime.fromisoformat(body["created_at"]),
                    success=bool(body["success"]),
                    rows=int(body["rows"]),
                    evaluated=int(body["evaluated"]),
                    failed=int(body["failed"]),
                    link=link,
                )
            )
            files[link] = data
        except (ValueError, KeyError, TypeError):
            continue  # not a report of this layout; the folder may hold other files
    return entries, files


def read_online_points(settings: Settings, manifest: Manifest) -> dict[tuple[str, str], list[OnlinePsiPoint]]:
    """Online-against-training PSI of every service, keyed by ``(view, feature)`` (current versions)."""
    from skewless.validate.online_drift import read_online_drift

    out: dict[tuple[str, str], list[OnlinePsiPoint]] = {}
    for service in sorted(manifest.services):
        for row in read_online_drift(settings, service):
            view = manifest.views.get(row["view"])
            if view is None or row["version"] != view.version:
                continue
            out.setdefault((row["view"], row["feature"]), []).append(
                OnlinePsiPoint(row["ds"], service, row["psi"], row["drift_status"], int(row["online_values"]))
            )
    return out


# --- the build ---------------------------------------------------------------------------------


def gather_inputs(
    settings: Settings, manifest: Manifest, defs: Path | None, now: datetime
) -> tuple[SiteInputs, dict[str, bytes]]:
    """Everything the pages show, plus the report files to copy into the site."""
    from skewless.freshness import gather_freshness
    from skewless.offline.catalog import committed_partitions

    problems: list[str] = []
    definitions: dict[tuple[str, str], Definition] = {}
    if defs is not None:
        definitions, found = read_definitions(defs, manifest, settings)
        problems += found
    committed: dict[str, list[date]] = {}
    stats: dict[str, list[StatsPoint]] = {}
    latest: dict[tuple[str, str], list[Any]] = {}
    reports: dict[str, list[ReportEntry]] = {}
    files: dict[str, bytes] = {}
    for name, view in sorted(manifest.views.items()):
        try:
            committed[name] = committed_partitions(settings.table_uri(view.table))
            stats[name] = read_stats_points(settings, view)
            if committed[name]:
                for feature, values in read_latest_values(settings, view, committed[name][-1]).items():
                    latest[(name, feature)] = values
            reports[name], view_files = read_reports(settings, view)
            files.update(view_files)
        except (SkewlessError, OSError) as exc:
            problems.append(f"{name}: {exc}")
    online: dict[tuple[str, str], list[OnlinePsiPoint]] = {}
    try:
        online = read_online_points(settings, manifest)
    except (SkewlessError, OSError) as exc:
        problems.append(f"online-against-training statistics: {exc}")
    freshness: dict[str, ViewFreshness] = {}
    try:
        freshness = {f.view: f for f in gather_freshness(settings, manifest, now=now)}
    except (SkewlessError, OSError) as exc:
        problems.append(f"freshness: {exc}")
    inputs = SiteInputs(
        manifest=manifest,
        generated_at=now,
        definitions=definitions,
        committed=committed,
        stats=stats,
        latest_values=latest,
        reports=reports,
        online_drift=online,
        freshness=freshness,
        drift_warn=settings.validation.drift_psi_warn,
        drift_fail=settings.validation.drift_psi_fail,
        problems=tuple(problems),
    )
    return inputs, files


def _prepare(out: Path) -> None:
    """An empty folder at ``out``; an earlier site there is replaced, anything else refused."""
    if out.exists() and not out.is_dir():
        raise SiteError(f"--out {out} is a file; give a folder for the site")
    if out.is_dir() and any(out.iterdir()):
        if not (out / MARKER).is_file():
            raise SiteError(
                f"--out {out} is not empty and holds no site built by skewless docs;"
                " give a new or empty folder"
            )
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)


def build_site(
    settings: Settings,
    manifest: Manifest,
    out: Path,
    *,
    defs: Path | None = None,
    now: datetime | None = None,
) -> SiteBuild:
    """Build the static catalog site of ``manifest`` into ``out`` (docs/catalog.md)."""
    if is_remote(str(out)):
        raise SiteError(f"--out {out}: the site is written to a local folder")
    inputs, files = gather_inputs(settings, manifest, defs, now or datetime.now(UTC))
    pages = render_site(build_site_model(inputs))
    _prepare(out)
    for path, text in pages.items():
        target = out / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    for path, data in files.items():
        target = out / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    (out / MARKER).write_text(f"registry {manifest.registry_hash}\n", encoding="utf-8")
    return SiteBuild(out, out / "index.html", len(pages), len(files), tuple(inputs.problems))
