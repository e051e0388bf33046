"""The deployed registry: the manifest ``apply`` published, read by every job, DAG and client."""

from __future__ import annotations

from skewless.errors import RegistryError
from skewless.manifest import Manifest
from skewless.storage import read_text, write_text


def history_uri(registry_uri: str, registry_hash: str) -> str:
    base = registry_uri.rsplit("/", 1)[0] if "/" in registry_uri else "."
    return f"{base}/history/{registry_hash}.json"


def read_registry(registry_uri: str) -> Manifest | None:
    """The deployed manifest, or None when nothing was applied yet."""
    text = read_text(registry_uri)
    return None if text is None else Manifest.from_json(text, registry_uri)


def require_registry(registry_uri: str) -> Manifest:
    manifest = read_registry(registry_uri)
    if manifest is None:
        raise RegistryError(
            f"no registry at {registry_uri}: run `skewless apply` to deploy the feature definitions"
        )
    return manifest


def publish_registry(registry_uri: str, manifest: Manifest) -> str:
    """Publish ``manifest``: a content-addressed copy first, then the pointer, each atomically.

    Returns the registry hash. Readers see either the old or the new registry, never a mix.
    """
    text = manifest.to_json()
    registry_hash = manifest.registry_hash
    write_text(history_uri(registry_uri, registry_hash), text)
    write_text(registry_uri, text)
    return registry_hash
