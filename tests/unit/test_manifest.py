"""The registry manifest: canonical JSON, round trip, and refusal of damaged files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from skewless.compile import compile_tree
from skewless.errors import RegistryError, UnknownObjectError
from skewless.manifest import SCHEMA_VERSION, Manifest, sha256_of

EXAMPLES = Path(__file__).resolve().parents[2] / "feature_defs"


@pytest.fixture(scope="module")
def manifest() -> Manifest:
    return compile_tree(EXAMPLES)


def test_round_trip(manifest: Manifest) -> None:
    text = manifest.to_json()
    again = Manifest.from_json(text, "registry.json")
    assert again == manifest
    assert again.to_json() == text
    assert again.registry_hash == manifest.registry_hash


def test_json_is_canonical(manifest: Manifest) -> None:
    text = manifest.to_json()
    body = json.loads(text)
    assert text.endswith("}\n")
    assert text == json.dumps(body, sort_keys=True, indent=2, ensure_ascii=False) + "\n"
    assert body["schema_version"] == SCHEMA_VERSION
    stated = body.pop("registry_hash")
    assert stated == sha256_of(body) == manifest.registry_hash


def test_invalid_json_is_a_registry_error(manifest: Manifest) -> None:
    with pytest.raises(RegistryError, match=r"^s3://b/registry\.json: not a registry \(invalid JSON"):
        Manifest.from_json(manifest.to_json()[:-10], "s3://b/registry.json")


@pytest.mark.parametrize("text", ["[]", "42", '"registry"', "null"])
def test_json_that_is_not_an_object_is_a_registry_error(text: str) -> None:
    with pytest.raises(RegistryError, match=r"^r\.json: not a registry$"):
        Manifest.from_json(text, "r.json")


@pytest.mark.parametrize("version", [SCHEMA_VERSION + 1, 0, "1", None])
def test_other_schema_version_is_refused(manifest: Manifest, version: object) -> None:
    body = json.loads(manifest.to_json())
    if version is None:
        del body["schema_version"]
    else:
        body["schema_version"] = version
    with pytest.raises(RegistryError, match=rf"^r\.json: registry schema version {version!r} is not 1"):
        Manifest.from_json(json.dumps(body), "r.json")


def test_hand_edited_registry_is_refused(manifest: Manifest) -> None:
    body = json.loads(manifest.to_json())
    body["views"]["merchant_txn"]["ttl_seconds"] += 1
    with pytest.raises(RegistryError, match=r"^r\.json: registry hash mismatch"):
        Manifest.from_json(json.dumps(body), "r.json")


def test_wrong_stated_hash_is_refused(manifest: Manifest) -> None:
    body = json.loads(manifest.to_json())
    body["registry_hash"] = "0" * 64
    with pytest.raises(RegistryError, match="registry hash mismatch"):
        Manifest.from_json(json.dumps(body), "r.json")


def test_registry_of_the_wrong_shape_is_a_registry_error(manifest: Manifest) -> None:
    body = json.loads(manifest.to_json())
    del body["views"]["merchant_txn"]["ttl_seconds"]
    with pytest.raises(
        RegistryError, match=r"^r\.json: not a valid registry .*views\.merchant_txn\.ttl_seconds"
    ):
        Manifest.from_json(json.dumps(body), "r.json")


def test_unknown_view_and_service_name_the_known_ones(manifest: Manifest) -> None:
    with pytest.raises(
        UnknownObjectError, match=r"unknown view 'nope' \(known: customer_stats, merchant_txn\)"
    ):
        manifest.view("nope")
    with pytest.raises(
        UnknownObjectError,
        match=r"unknown service 'nope' \(known: churn_model_v1, fraud_model_v1, recommendation_model_v1\)",
    ):
        manifest.service("nope")
    with pytest.raises(UnknownObjectError, match="has no feature 'nope'"):
        manifest.view("merchant_txn").feature("nope")
    assert manifest.view("merchant_txn").feature("last_amount").function == "last"
