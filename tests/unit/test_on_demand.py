"""On-demand views without Spark: YAML -> manifest, plan, request resolution and the one library
function that runs the user code (docs/feature-definitions.md, "On-demand views")."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from skewless.compile import compile_tree
from skewless.errors import OnDemandError, SpecError
from skewless.manifest import Manifest, OnDemandSpec
from skewless.ondemand import apply_on_demand, load_function, to_frame
from skewless.pit.request import HIDDEN_PREFIX, resolve_features
from skewless.plan import plan

BASE = {
    "defs.yaml": """
        entity: {name: merchant, join_keys: {merchant_id: string}}
        ---
        source:
          name: src
          path: unused
          format: parquet
          timestamp: ts
          columns: {merchant_id: string, ts: timestamp, amount: float64, score: float64}
        ---
        view:
          name: stats
          version: 1
          kind: snapshot
          entity: merchant
          source: src
          ttl: 1d
          features:
            - {name: avg, dtype: float64, column: amount}
            - {name: score, dtype: float64}
        ---
        view:
          name: other
          version: 1
          kind: snapshot
          entity: merchant
          source: src
          ttl: 1d
          features:
            - {name: score, dtype: float64}
    """,
    "risk/risk.yaml": """
        on_demand:
          name: risk
          version: 1
          function: udfs:risk
          request: {amount: float64, request_ts: timestamp}
          inputs: [stats:avg, stats:score, other:score]
          features:
            - {name: ratio, dtype: float64}
            - {name: big, dtype: bool}
        ---
        service:
          name: model
          features: [stats:avg, risk:ratio]
    """,
    "risk/udfs.py": """
        import pandas as pd


        def risk(df):
            return pd.DataFrame({"ratio": df["amount"] / df["avg"], "big": df["amount"] > 100})
    """,
}


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return root


def compiled(tmp_path: Path, **changes: str) -> Manifest:
    files = {
        **BASE,
        **{name.replace("__", "/").replace("_dot_", "."): text for name, text in changes.items()},
    }
    return compile_tree(write(tmp_path / "defs", files))


def problems(tmp_path: Path, **changes: str) -> list[str]:
    with pytest.raises(SpecError) as failure:
        compiled(tmp_path, **changes)
    return [str(p) for p in failure.value.problems]


def test_an_on_demand_view_compiles_with_its_code_and_input_columns(tmp_path: Path) -> None:
    manifest = compiled(tmp_path)
    spec = manifest.on_demand_views["risk"]
    assert spec.source == (tmp_path / "defs" / "risk" / "udfs.py").read_text()
    assert [(r.name, r.dtype) for r in spec.request] == [("amount", "float64"), ("request_ts", "timestamp")]
    # Two inputs named score: both become view__feature in the function's frame.
    assert [i.column for i in spec.inputs] == ["avg", "stats__score", "other__score"]
    assert [(f.name, f.dtype) for f in spec.features] == [("ratio", "float64"), ("big", "bool")]
    assert [str(r) for r in manifest.service("model").features] == ["stats:avg", "risk:ratio"]
    again = Manifest.from_json(manifest.to_json(), "test")
    assert again == manifest


def test_a_registry_without_on_demand_views_keeps_its_json_and_hash(tmp_path: Path) -> None:
    files = {"defs.yaml": BASE["defs.yaml"]}
    manifest = compile_tree(write(tmp_path / "defs", files))
    assert manifest.on_demand is None
    assert '"on_demand"' not in manifest.to_json()
    assert "on_demand" not in manifest.model_dump(mode="json")


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        (
            {"risk__risk_dot_yaml": BASE["risk/risk.yaml"].replace("stats:avg,", "stats:nope,")},
            "risk/risk.yaml:6: on_demand.inputs[0]: view 'stats' has no feature 'nope'",
        ),
        (
            {"risk__risk_dot_yaml": BASE["risk/risk.yaml"].replace("stats:avg,", "gone:avg,")},
            "risk/risk.yaml:6: on_demand.inputs[0]: unknown view 'gone'",
        ),
        (
            {"risk__risk_dot_yaml": BASE["risk/risk.yaml"].replace("udfs:risk", "udfs:nothing")},
            "risk/risk.yaml:4: on_demand.function: module 'udfs'",
        ),
        (
            {"risk__risk_dot_yaml": BASE["risk/risk.yaml"].replace("udfs:risk", "no_such_module_xyz:risk")},
            "risk/risk.yaml:4: on_demand.function: module 'no_such_module_xyz' not found",
        ),
        (
            {"risk__risk_dot_yaml": BASE["risk/risk.yaml"].replace("udfs:risk", "udfs risk")},
            "risk/risk.yaml:4: on_demand.function: expected 'module:function'",
        ),
        (
            {"risk__udfs_dot_py": "def risk(df:\n"},
            "on_demand.function:",
        ),
        (
            {
                "risk__risk_dot_yaml": BASE["risk/risk.yaml"].replace(
                    "request_ts: timestamp", "request_ts: string"
                )
            },
            "risk/risk.yaml:5: on_demand.request.request_ts: 'request_ts' is reserved",
        ),
        (
            {"risk__risk_dot_yaml": BASE["risk/risk.yaml"].replace("{amount: float64,", "{avg: float64,")},
            "risk/risk.yaml:6: on_demand.inputs[0]: input column 'avg' is also a request field",
        ),
        (
            {"risk__risk_dot_yaml": BASE["risk/risk.yaml"].replace("name: big,", "name: amount,")},
            "risk/risk.yaml:9: on_demand.features[1].name: 'amount' is also a request field",
        ),
        (
            {"risk__risk_dot_yaml": BASE["risk/risk.yaml"].replace("name: risk\n", "name: stats\n")},
            "risk/risk.yaml:2: on_demand.name: 'stats' is also a view",
        ),
        (
            {"risk__risk_dot_yaml": BASE["risk/risk.yaml"].replace("risk:ratio", "risk:nope")},
            "risk/risk.yaml:13: service.features[1]: view 'risk' has no feature 'nope'",
        ),
        (
            {"risk__risk_dot_yaml": BASE["risk/risk.yaml"].replace("other:score]", "risk:ratio]")},
            "risk/risk.yaml:6: on_demand.inputs[2]: 'risk' is an on-demand view; inputs are stored features",
        ),
    ],
)
def test_on_demand_errors_name_file_line_and_field(
    tmp_path: Path, changes: dict[str, str], expected: str
) -> None:
    found = problems(tmp_path, **changes)
    assert any(expected in p for p in found), found


def test_changed_code_without_a_version_bump_is_breaking(tmp_path: Path) -> None:
    deployed = compiled(tmp_path / "a")
    edited = BASE["risk/udfs.py"].replace("> 100", "> 200")
    changed = compiled(tmp_path / "b", risk__udfs_dot_py=edited)
    result = plan(deployed, changed)
    assert len(result.breaking) == 2  # both features' meaning includes the code
    assert (
        "on-demand view risk v1: feature ratio changed meaning (its function's code changed)"
        in (result.breaking[0])
    )
    (change,) = [c for c in result.changes if c.kind == "on_demand"]
    assert any(d.startswith("function code changed (source ") for d in change.details)
    # The same change with a version bump is fine; a comment-only edit is a code change too.
    bumped = compiled(
        tmp_path / "c",
        risk__udfs_dot_py=edited,
        risk__risk_dot_yaml=BASE["risk/risk.yaml"].replace("version: 1", "version: 2"),
    )
    assert plan(deployed, bumped).breaking == ()
    assert plan(
        deployed, compiled(tmp_path / "d", risk__udfs_dot_py=textwrap.dedent(BASE["risk/udfs.py"]) + "# x\n")
    ).breaking
    # Adding a feature is compatible (nothing to backfill: computed at request time).
    added = compiled(
        tmp_path / "e",
        risk__risk_dot_yaml=BASE["risk/risk.yaml"].replace(
            "- {name: big, dtype: bool}",
            "- {name: big, dtype: bool}\n            - {name: extra, dtype: int64}",
        ),
    )
    result = plan(deployed, added)
    assert result.breaking == ()
    assert result.backfills == ()
    assert plan(deployed, compiled(tmp_path / "f")).changes == ()


def test_resolve_reads_inputs_under_hidden_columns_and_names_clashes(tmp_path: Path) -> None:
    manifest = compiled(tmp_path)
    request = resolve_features(manifest, features=["risk:ratio", "other:score", "stats:avg"])
    assert request.columns == ("ratio", "score", "avg")
    assert request.refs == ("risk:ratio", "other:score", "stats:avg")
    stats = next(v for v in request.views if v.view.name == "stats")
    # stats:avg is requested: the function reads that column; stats:score only as a hidden input.
    assert [f.column for f in stats.features] == ["avg", f"{HIDDEN_PREFIX}stats__score"]
    (od,) = request.on_demand
    assert [(one.column, joined) for one, joined in od.inputs] == [
        ("avg", "avg"),
        ("stats__score", f"{HIDDEN_PREFIX}stats__score"),
        ("other__score", "score"),
    ]
    assert request.request_fields == {"amount": "float64", "request_ts": "timestamp"}
    assert request.hidden_columns == (f"{HIDDEN_PREFIX}stats__score",)


def _spec(tmp_path: Path, body: str) -> OnDemandSpec:
    udfs = "import pandas as pd\nimport pyarrow as pa\n\n\ndef risk(df):\n" + textwrap.indent(
        textwrap.dedent(body), "    "
    )
    return compiled(tmp_path, risk__udfs_dot_py=udfs).on_demand_views["risk"]


def _batch() -> pa.Table:
    moment = datetime(2024, 3, 1, 12, tzinfo=UTC)
    return pa.table(
        {
            "amount": [10.0, None, 250.0],
            "request_ts": pa.array([moment] * 3, pa.timestamp("us", tz="UTC")),
            "avg": [5.0, 1.0, None],
            "stats__score": [1.0, None, float("nan")],
            "other__score": [None, None, 2.0],
        }
    )


def test_the_function_sees_arrow_backed_columns_with_pd_na(tmp_path: Path) -> None:
    spec = _spec(
        tmp_path, 'return pd.DataFrame({"ratio": df["amount"] / df["avg"], "big": df["amount"] > 100})'
    )
    frame = to_frame(spec, _batch())
    assert list(frame.columns) == ["amount", "request_ts", "avg", "stats__score", "other__score"]
    assert all(isinstance(dtype, pd.ArrowDtype) for dtype in frame.dtypes)
    assert frame["amount"][1] is pd.NA
    assert str(frame["request_ts"].dtype) == "timestamp[us, tz=UTC][pyarrow]"
    out = apply_on_demand(spec, _batch())
    assert out.schema == pa.schema([("ratio", pa.float64()), ("big", pa.bool_())])
    assert out.to_pylist() == [
        {"ratio": 2.0, "big": False},
        {"ratio": None, "big": None},
        {"ratio": None, "big": True},
    ]
    assert load_function(spec) is load_function(spec)  # loaded once per process


@pytest.mark.parametrize(
    ("body", "features", "message"),
    [
        ('return pd.DataFrame({"ratio": df["amount"]})', "feature big", "output lacks feature column(s) big"),
        (
            'return pd.DataFrame({"ratio": df["amount"], "big": df["amount"] > 1, "x": 1})',
            "features ratio, big",
            "output has column(s) x that are not declared features",
        ),
        (
            'return pd.DataFrame({"ratio": [1.0], "big": [True]})',
            "features ratio, big",
            "returned 1 rows for 3 input rows",
        ),
        (
            'return pd.DataFrame({"ratio": ["high", "low", "mid"], "big": df["amount"] > 1})',
            "feature ratio",
            "cannot be read as float64",
        ),
        (
            'return pd.DataFrame({"ratio": df["amount"], "big": [1.5, 2.5, 3.5]})',
            "feature big",
            "cannot be read as bool",
        ),
        ('raise ValueError("no model today")', "features ratio, big", "raised ValueError: no model today"),
        ("return df['amount']", "features ratio, big", "returned Series, not a pandas DataFrame"),
    ],
)
def test_bad_output_is_an_error_naming_view_function_and_feature(
    tmp_path: Path, body: str, features: str, message: str
) -> None:
    spec = _spec(tmp_path, body)
    with pytest.raises(OnDemandError) as failure:
        apply_on_demand(spec, _batch())
    assert str(failure.value).startswith(f"on-demand view 'risk', function udfs:risk, {features}: ")
    assert message in str(failure.value)


def test_an_uncastable_integer_is_refused_not_truncated(tmp_path: Path) -> None:
    spec = compiled(
        tmp_path,
        risk__risk_dot_yaml=BASE["risk/risk.yaml"].replace(
            "name: big, dtype: bool", "name: big, dtype: int64"
        ),
        risk__udfs_dot_py=(
            "import pandas as pd\n\ndef risk(df):\n"
            "    return pd.DataFrame({'ratio': df['amount'], 'big': [1.0, 2.5, None]})\n"
        ),
    ).on_demand_views["risk"]
    with pytest.raises(OnDemandError, match="feature big: cannot be read as int64"):
        apply_on_demand(spec, _batch())
