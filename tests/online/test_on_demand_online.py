"""On-demand features online: the client, ``skewless get-online`` and the server take request
fields beside the join keys and compute with the registry's copy of the function, at the
request's time as ``request_ts`` (docs/online-store.md, "On-demand features")."""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path

import pytest

from skewless import semantics
from skewless.cli import main
from skewless.errors import EntityError, OnDemandError
from skewless.manifest import Manifest
from skewless.online.client import OnlineClient
from skewless.online.materialize import publish_rows
from skewless.online.server import create_app
from skewless.runtime.settings import Settings
from tests.helpers import deploy
from tests.online.trees import TREE

pytestmark = [
    pytest.mark.redis,
    pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`"),
]

ON_DEMAND = {
    "on_demand.yaml": """
        on_demand:
          name: basket
          version: 1
          function: basket_udfs:basket
          request: {quantity: int64, coupon: string, placed_at: timestamp, request_ts: timestamp}
          inputs: [customer_stats:total, merchant_profile:score, customer_stats:score]
          features:
            - {name: per_order, dtype: float64}
            - {name: label, dtype: string}
            - {name: wait_s, dtype: float64}
        ---
        service:
          name: checkout
          features: [customer_stats:total, basket:per_order, basket:label, basket:wait_s]
    """,
    "basket_udfs.py": """
        import pandas as pd


        def basket(df):
            return pd.DataFrame(
                {
                    "per_order": df["quantity"] / df["total"],
                    "label": df["coupon"].fillna("none")
                    + "@"
                    + df["merchant_profile__score"].astype("string"),
                    "wait_s": (df["request_ts"] - df["placed_at"]).dt.total_seconds(),
                }
            )
    """,
}
NOW_US = time.time_ns() // 1000 - 60_000_000


@pytest.fixture
def stored(tmp_path: Path, redis_url: str) -> tuple[Settings, Manifest]:
    settings, manifest = deploy(tmp_path, TREE | ON_DEMAND)
    settings = settings.model_copy(update={"redis_url": redis_url})
    ts = NOW_US - 3_600_000_000
    publish_rows(redis_url, manifest.view("customer_stats"), [(1, ts, ts, 8, 0.5), (2, ts, ts, None, None)])
    publish_rows(redis_url, manifest.view("merchant_profile"), [("m1", ts, ts, 3, 1.5, "x", True)])
    return settings, manifest


def test_the_client_computes_on_demand_features_from_request_fields(
    stored: tuple[Settings, Manifest],
) -> None:
    settings, manifest = stored
    at = semantics.from_micros(NOW_US)
    placed = semantics.from_micros(NOW_US - 90_000_000)
    rows = [
        {"customer_id": 1, "merchant_id": "m1", "quantity": 4, "coupon": "SPRING", "placed_at": placed},
        {
            "customer_id": 2,
            "merchant_id": "zz",
            "quantity": None,
            "coupon": None,
            "placed_at": placed.isoformat(),
        },
    ]
    with OnlineClient(settings, manifest) as client:
        answers = client.get_online_features(rows, service="checkout", now=at)
    assert [list(a)[5:] for a in answers] == [["total", "per_order", "label", "wait_s"]] * 2
    assert answers[0] | {"placed_at": None} == rows[0] | {
        "placed_at": None,
        "total": 8,
        "per_order": 0.5,
        "label": "SPRING@1.5",
        "wait_s": 90.0,
    }
    # Unknown merchant, null input and null request values: nulls, computed by the same function.
    assert (answers[1]["total"], answers[1]["per_order"], answers[1]["label"]) == (None, None, None)
    assert answers[1]["wait_s"] == 90.0  # an ISO-8601 string for a timestamp request field


def test_request_field_errors(stored: tuple[Settings, Manifest]) -> None:
    settings, manifest = stored
    base = {"customer_id": 1, "merchant_id": "m1", "quantity": 1, "coupon": None, "placed_at": None}
    with OnlineClient(settings, manifest) as client:
        with pytest.raises(EntityError, match="entity row 1: missing request field 'coupon'"):
            client.get_online_features(
                [base, {k: v for k, v in base.items() if k != "coupon"}], service="checkout"
            )
        with pytest.raises(
            EntityError, match="entity row 0: request field 'quantity' must be int64, got 'two'"
        ):
            client.get_online_features([base | {"quantity": "two"}], service="checkout")
        with pytest.raises(EntityError, match="field 'per_order' clashes with a feature column"):
            client.get_online_features([base | {"per_order": 1}], service="checkout")


def test_a_failing_function_names_view_function_and_feature_online(tmp_path: Path, redis_url: str) -> None:
    broken = ON_DEMAND | {
        "basket_udfs.py": ON_DEMAND["basket_udfs.py"].replace('df["quantity"] /', "1 / 0 *")
    }
    settings, manifest = deploy(tmp_path, TREE | broken)
    settings = settings.model_copy(update={"redis_url": redis_url})
    row = {"customer_id": 1, "merchant_id": "m1", "quantity": 1, "coupon": None, "placed_at": None}
    with OnlineClient(settings, manifest) as client, pytest.raises(OnDemandError) as failure:
        client.get_online_features([row], ["basket:label"])
    assert str(failure.value).startswith(
        "on-demand view 'basket', function basket_udfs:basket, features per_order, label, wait_s: raised"
        " ZeroDivisionError"
    )


def test_get_online_and_serve_take_request_fields(
    stored: tuple[Settings, Manifest], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from starlette.testclient import TestClient

    settings, manifest = stored
    conf = tmp_path / "conf.yaml"
    conf.write_text(f"offline_root: {settings.offline_root}\nredis_url: {settings.redis_url}\n")
    at = semantics.from_micros(NOW_US).isoformat()
    placed = semantics.from_micros(NOW_US - 30_000_000).isoformat()
    entity = f"customer_id=1,merchant_id=m1,quantity=2,coupon=X,placed_at={placed}"
    code = main(["--conf", str(conf), "get-online", "--service", "checkout", "--entity", entity, "--at", at])
    out, err = capsys.readouterr()
    assert (code, err) == (0, "")
    (answer,) = json.loads(out)
    assert (answer["quantity"], answer["per_order"], answer["label"], answer["wait_s"]) == (
        2,
        0.25,
        "X@1.5",
        30.0,
    )

    code = main(
        ["--conf", str(conf), "get-online", "--service", "checkout", "--entity", "customer_id=1,quantity=x"]
    )
    assert code == 1
    assert "request field 'quantity' must be int64, got 'x'" in capsys.readouterr().err

    with TestClient(create_app(settings, manifest)) as http:
        body = {
            "service": "checkout",
            "now": at,
            "entities": [
                {"customer_id": 1, "merchant_id": "m1", "quantity": 2, "coupon": "X", "placed_at": placed}
            ],
        }
        response = http.post("/features", json=body)
        assert response.status_code == 200, response.text
        assert response.json()["columns"] == ["total", "per_order", "label", "wait_s"]
        assert response.json()["rows"][0]["wait_s"] == 30.0
        missing = http.post("/features", json=body | {"entities": [{"customer_id": 1, "merchant_id": "m1"}]})
        assert missing.status_code == 400
        assert "missing request field 'quantity'" in missing.json()["error"]


def test_the_registry_code_runs_not_the_file(stored: tuple[Settings, Manifest]) -> None:
    """Editing the module after apply changes nothing online: the registry carries the applied code."""
    settings, manifest = stored
    (Path(settings.defs) / "basket_udfs.py").write_text("raise ImportError('edited after apply')\n")
    row = {"customer_id": 1, "merchant_id": "m1", "quantity": 4, "coupon": None, "placed_at": None}
    with OnlineClient(settings, manifest) as client:
        (answer,) = client.get_online_features(
            [row], ["basket:per_order"], now=datetime.fromtimestamp(NOW_US / 1e6)
        )
    assert answer["per_order"] == 0.5
