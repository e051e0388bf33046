"""The Python API as a notebook uses it (docs/python-api.md): the snippet of the docs, run as
written against the example feature_defs/ (a pandas entity_df, a feature service with on-demand
features), then its outputs checked against values computed here from the stored rows."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from skewless import semantics
from skewless.compile import compile_tree
from skewless.errors import DataError, EntityError, SkewlessError
from skewless.manifest import ViewSpec
from skewless.offline.delta import CommitInfo, delta_tables
from skewless.offline.schemas import view_schema
from skewless.online.materialize import publish_rows
from skewless.registry import publish_registry
from skewless.runtime.settings import Settings

pytestmark = [pytest.mark.spark, pytest.mark.redis]

REPO = Path(__file__).resolve().parents[2]


def _values(view: ViewSpec, rng: random.Random, fixed: dict[str, Any]) -> dict[str, Any]:
    """A value for every feature of the view (whatever features it has), ``fixed`` ones as given."""
    random_of: dict[str, Callable[[], Any]] = {
        "int64": lambda: rng.randrange(100),
        "float64": lambda: rng.uniform(1, 99),
        "string": lambda: "x",
        "bool": lambda: True,
    }
    return {
        f.name: fixed[f.name] if f.name in fixed else random_of.get(f.dtype, lambda: None)()
        for f in view.features
    }


@pytest.fixture
def store_conf(spark: Any, tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """feature_defs/ applied, yesterday's merchant_txn row and a customer_stats row in Delta and Redis."""
    conf = tmp_path / "conf.yaml"
    conf.write_text(
        f"defs: {REPO / 'feature_defs'}\ndata_root: {tmp_path / 'data'}\n"
        f"offline_root: {tmp_path / 'offline'}\nredis_url: {redis_url}\n"
    )
    monkeypatch.setenv("SKEWLESS_CONF", str(conf))
    settings = Settings(
        defs=str(REPO / "feature_defs"), offline_root=str(tmp_path / "offline"), redis_url=redis_url
    )
    manifest = compile_tree(REPO / "feature_defs")
    publish_registry(settings.registry_uri, manifest)
    now_us = time.time_ns() // 1000
    yesterday = semantics.from_micros(now_us).date() - timedelta(days=1)
    rng = random.Random(5)
    merchant = manifest.view("merchant_txn")
    stats = {"txn_count_7d": 3, "amount_avg_7d": 40.0, "amount_stddev_30d": 16.0, "amount_max_7d": 95.0}
    merchant_values = _values(merchant, rng, stats)
    feature_ts = semantics.feature_ts(merchant, yesterday)
    customers = manifest.view("customer_stats")
    customer_values = _values(customers, rng, {"total_orders": 12})
    customer_ts = semantics.from_micros(now_us - 3 * 3600 * 10**6)
    rows: dict[str, list[dict[str, Any]]] = {
        "merchant_txn": [{"merchant_id": "m1", "ds": yesterday, "feature_ts": feature_ts} | merchant_values],
        "customer_stats": [
            {"customer_id": 7, "ds": customer_ts.date(), "feature_ts": customer_ts} | customer_values
        ],
    }
    tables = delta_tables(spark)
    for name, view_rows in rows.items():
        view = manifest.view(name)
        schema = view_schema(view)
        for row in view_rows:
            row["created_ts"] = row["feature_ts"]
            row["feature_ts"] = row["feature_ts"].replace(tzinfo=None)
            row["created_ts"] = row["created_ts"].replace(tzinfo=None)
        frame = spark.createDataFrame(
            [tuple(r.get(f) for f in schema.fieldNames()) for r in view_rows], schema
        )
        days = sorted({r["ds"] for r in view_rows})
        tables.replace_partitions(frame, settings.table_uri(view.table), days, CommitInfo("test", name))
        publish_rows(
            redis_url,
            view,
            [
                (
                    *(r[k] for k in view.key_names),
                    semantics.to_micros(r["feature_ts"]),
                    semantics.to_micros(r["created_ts"]),
                    *(r[f] for f in view.feature_names),
                )
                for r in view_rows
            ],
        )
    return {
        "manifest": manifest,
        "merchant": merchant_values,
        "customer": customer_values,
        "feature_ts": feature_ts.replace(tzinfo=None),
    }


def test_the_documented_snippet_runs_as_written(
    store_conf: dict[str, Any], spark: Any, tmp_path: Path
) -> None:
    after = store_conf["feature_ts"] + timedelta(minutes=5)
    labels = pd.DataFrame(
        {
            "merchant_id": ["m1", "m1", "m2"],
            "event_timestamp": [after, after - timedelta(days=1), after],  # the middle one: before the row
            "amount": [120.0, 8.0, None],
            "is_fraud": [True, False, False],
        }
    )

    # --- the snippet, as docs/python-api.md shows it ---------------------------------------
    from skewless import FeatureStore

    store = FeatureStore()  # conf/local.yaml, or FeatureStore(conf="...")
    training = store.get_historical_features(
        entity_df=labels,  # pandas DataFrame, Spark DataFrame, or a path
        features=["merchant_txn:txn_count_7d", "txn_risk:amount_zscore"],  # or a feature service
        timestamp_column="event_timestamp",  # the default
    )
    frame = training.to_df()  # pandas;  .to_spark() keeps it distributed;  .to_parquet(path) writes it
    hour_before = datetime.now(UTC).hour
    online = store.get_online_features(
        features=store.get_feature_service("fraud_model_v1"),
        entity_rows=[{"merchant_id": "m1", "customer_id": 7, "amount": 120.0}],
    )
    answer = online.to_dict()  # {"merchant_id": ["m1"], "txn_count_7d": [3], ...};  .to_df() for pandas
    # ------------------------------------------------------------------------------------------

    merchant = store_conf["merchant"]
    zscore = (120.0 - merchant["amount_avg_7d"]) / merchant["amount_stddev_30d"]
    assert list(frame.columns) == [
        "merchant_id",
        "event_timestamp",
        "amount",
        "is_fraud",
        "txn_count_7d",
        "amount_zscore",
    ]
    assert frame["txn_count_7d"].tolist()[0] == 3
    assert frame["amount_zscore"].tolist()[0] == pytest.approx(zscore, rel=0, abs=0)
    assert pd.isna(frame["txn_count_7d"][1])  # before the row's feature_ts: nothing known
    assert pd.isna(frame["amount_zscore"][1])
    assert pd.isna(frame["amount_zscore"][2])
    assert training.to_spark().count() == 3

    expected_columns = ["merchant_id", "customer_id", "amount"]
    expected_columns += [
        str(r).split(":")[1] for r in store_conf["manifest"].service("fraud_model_v1").features
    ]
    assert list(answer) == expected_columns
    assert answer["merchant_id"] == ["m1"]
    assert answer["txn_count_7d"] == [3]
    assert answer["total_orders"] == [12]
    assert answer["amount_zscore"] == [zscore]  # the same function, the same float
    assert answer["is_large_amount"] == [merchant["amount_max_7d"] < 120.0]
    assert answer["hour_of_day"][0] in (hour_before, datetime.now(UTC).hour)  # request_ts: the read's time
    assert online.to_df().to_dict(orient="list") == answer

    written = training.to_parquet(tmp_path / "out")
    assert written.features == ("merchant_txn:txn_count_7d", "txn_risk:amount_zscore")
    assert written.spine_path is None
    manifest_file = json.loads((tmp_path / "out" / "_skewless_training_set.json").read_text())
    assert manifest_file["spine_rows"] == 3
    again = spark.read.parquet(str(tmp_path / "out")).orderBy("event_timestamp").collect()
    assert sorted(r["amount_zscore"] for r in again if r["amount_zscore"] is not None) == [zscore]
    store.close()


def test_a_path_entity_df_and_the_catalog(store_conf: dict[str, Any], tmp_path: Path) -> None:
    from skewless import FeatureStore

    after = store_conf["feature_ts"] + timedelta(minutes=5)
    spine = tmp_path / "spine.parquet"
    pd.DataFrame({"merchant_id": ["m1"], "event_timestamp": [after], "amount": [56.0]}).to_parquet(spine)
    store = FeatureStore()
    service = store.get_feature_service("fraud_model_v1")
    assert "txn_risk:amount_zscore" in service.features
    assert service.description == "Real-time card fraud scoring."
    job = store.get_historical_features(
        entity_df=str(spine), features=["txn_risk:is_large_amount", "txn_risk:hour_of_day"]
    )
    assert job.to_df().to_dict(orient="list")["hour_of_day"] == [after.hour]
    assert job.to_parquet(tmp_path / "out").spine_path is not None

    views = {v["name"]: v for v in store.list_views()}
    assert views["txn_risk"]["kind"] == "on_demand"
    assert views["txn_risk"]["owner"] == "fraud-ml"
    assert views["txn_risk"]["description"].startswith("Amount anomaly")
    assert views["merchant_txn"]["owner"] == "fraud-ml"
    features = {f["name"]: f for f in store.list_features()}
    assert features["txn_risk:amount_zscore"]["dtype"] == "float64"
    assert features["txn_risk:amount_zscore"]["description"].startswith("(amount - 7-day average)")
    assert features["txn_risk:amount_zscore"]["owner"] == "fraud-ml"  # the view's, when the feature has none
    assert features["merchant_txn:txn_count_7d"]["kind"] == "aggregation"


def test_entity_df_and_entity_rows_missing_what_the_features_need(store_conf: dict[str, Any]) -> None:
    from skewless import FeatureStore

    after = store_conf["feature_ts"]
    store = FeatureStore()
    no_key = pd.DataFrame({"event_timestamp": [after], "amount": [1.0]})
    with pytest.raises(DataError, match="column 'merchant_id': join key of view 'merchant_txn'"):
        store.get_historical_features(entity_df=no_key, features=["txn_risk:amount_zscore"])
    no_amount = pd.DataFrame({"merchant_id": ["m1"], "event_timestamp": [after]})
    with pytest.raises(DataError, match="column 'amount': request field of on-demand view 'txn_risk'"):
        store.get_historical_features(entity_df=no_amount, features=["txn_risk:amount_zscore"])
    with pytest.raises(EntityError, match="entity row 0: missing request field 'amount'"):
        store.get_online_features(features=["txn_risk:amount_zscore"], entity_rows=[{"merchant_id": "m1"}])
    with pytest.raises(EntityError, match="request field 'amount' must be float64, got 'lots'"):
        store.get_online_features(
            features=["txn_risk:amount_zscore"], entity_rows=[{"merchant_id": "m1", "amount": "lots"}]
        )
    with pytest.raises(SkewlessError, match="give a list of 'view:feature'"):
        store.get_historical_features(entity_df=no_key, features="fraud_model_v1")
