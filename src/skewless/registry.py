"""The deployed registry: the manifest ``apply`` published, read by every job, DAG and client.

The registry file is the manifest's JSON plus one deployment record, ``schedule_start``: the
first ``ds`` each view's nightly DAG schedules, fixed when the view (at its version) was first
published. It is state of this deployment, not a definition, so it is left out of the registry
hash, and the content-addressed history copies hold the manifest alone.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from pydantic import TypeAdapter, ValidationError

from skewless.errors import RegistryChanged, RegistryError
from skewless.manifest import Manifest, canonical_json
from skewless.storage import read_text, update_text, write_text

SCHEDULE_KEY = "schedule_start"
_STARTS = TypeAdapter(dict[str, date])


@dataclass(frozen=True)
class Deployment:
    manifest: Manifest
    schedule_start: Mapping[str, date] = field(default_factory=dict)
    """View name -> first scheduled ds; a view is missing only in registries published before
    start dates were recorded (the next ``apply`` records it)."""


def history_uri(registry_uri: str, registry_hash: str) -> str:
    base = registry_uri.rsplit("/", 1)[0] if "/" in registry_uri else "."
    return f"{base}/history/{registry_hash}.json"


def first_scheduled_ds(today: date | None = None) -> date:
    """Yesterday (UTC): a new view's nightly DAG starts with the latest complete day; history is
    a backfill."""
    return (today or datetime.now(UTC).date()) - timedelta(days=1)


def schedule_starts(deployed: Deployment | None, manifest: Manifest, first_ds: date) -> dict[str, date]:
    """Each view's first scheduled ds once ``manifest`` is published over ``deployed``.

    A view keeps its start date while it keeps its version; a new view, a new version (a new
    table) or a view without a recorded start gets ``first_ds``. Pure.
    """
    starts: dict[str, date] = {}
    for name, view in manifest.views.items():
        kept = None
        if deployed is not None:
            before = deployed.manifest.views.get(name)
            if before is not None and before.version == view.version:
                kept = deployed.schedule_start.get(name)
        starts[name] = kept or first_ds
    return starts


def _parse(text: str, origin: str) -> Deployment:
    try:
        body = json.loads(text)
    except json.JSONDecodeError:
        body = None
    if not isinstance(body, dict) or SCHEDULE_KEY not in body:
        return Deployment(Manifest.from_json(text, origin))  # reports malformed JSON itself
    raw_starts = body.pop(SCHEDULE_KEY)
    # What remains is the manifest exactly as published: from_json validates it and its hash.
    manifest = Manifest.from_json(json.dumps(body), origin)
    try:
        starts = _STARTS.validate_python(raw_starts)
    except ValidationError as exc:
        raise RegistryError(f"{origin}: {SCHEDULE_KEY}: {exc.errors()[0]['msg']}") from None
    unknown = sorted(starts.keys() - manifest.views.keys())
    if unknown:
        raise RegistryError(f"{origin}: {SCHEDULE_KEY} names views the registry lacks: {', '.join(unknown)}")
    return Deployment(manifest, starts)


def _document(manifest: Manifest, starts: Mapping[str, date]) -> str:
    body = json.loads(manifest.to_json())
    body[SCHEDULE_KEY] = {name: day.isoformat() for name, day in starts.items()}
    return canonical_json(body)


def read_deployment(registry_uri: str) -> Deployment | None:
    """The deployed manifest and its schedule start dates, or None when nothing was applied yet."""
    text = read_text(registry_uri)
    return None if text is None else _parse(text, registry_uri)


def read_registry(registry_uri: str) -> Manifest | None:
    """The deployed manifest, or None when nothing was applied yet."""
    deployment = read_deployment(registry_uri)
    return None if deployment is None else deployment.manifest


def require_registry(registry_uri: str) -> Manifest:
    manifest = read_registry(registry_uri)
    if manifest is None:
        raise RegistryError(
            f"no registry at {registry_uri}: run `skewless apply` to deploy the feature definitions"
        )
    return manifest


def publish_registry(
    registry_uri: str, manifest: Manifest, *, expected: str | None = None, today: date | None = None
) -> str:
    """Publish ``manifest`` if the deployed registry is still ``expected``; returns its hash.

    A compare-and-set (:func:`skewless.storage.update_text`): ``expected`` is the registry hash
    the caller planned against (None: nothing deployed). When another registry was published
    since, :class:`RegistryChanged` is raised and nothing is written, so two concurrent
    ``apply`` runs cannot both pass the breaking-change check. Publishing the registry that is
    already deployed writes nothing, except to record start dates it lacks.

    A content-addressed history copy is written first, then the registry file, each atomically:
    readers see either the old or the new registry, never a mix. New views are scheduled from
    :func:`first_scheduled_ds` of ``today``.
    """
    first_ds = first_scheduled_ds(today)
    new_hash = manifest.registry_hash

    def change(current_text: str | None) -> str | None:
        current = None if current_text is None else _parse(current_text, registry_uri)
        found = current.manifest.registry_hash if current else None
        if found not in (expected, new_hash):
            raise RegistryChanged(registry_uri, expected, found)
        starts = schedule_starts(current, manifest, first_ds)
        if current is not None and found == new_hash and current.schedule_start == starts:
            return None
        write_text(history_uri(registry_uri, new_hash), manifest.to_json())
        return _document(manifest, starts)

    update_text(registry_uri, change)
    return new_hash
