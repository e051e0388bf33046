"""Expectation suites from views (pure: no Spark, no Great Expectations)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from tests.helpers import write_tree

from skewless.compile import compile_tree
from skewless.errors import SkewlessError
from skewless.manifest import ExpectationSpec, Manifest
from skewless.validate.gate import observed
from skewless.validate.suite import EXPECTED_FEATURE_TS, FEATURE_DATE, Check, build_checks

TREE = {
    "defs.yaml": """
        entity:
          name: account
          join_keys: {account_id: string, region: int64}
        ---
        source:
          name: payments
          path: payments
          format: parquet
          timestamp: ts
        ---
        source:
          name: profiles_raw
          path: profiles
          format: parquet
          timestamp: ts
          created_timestamp: loaded_at
        ---
        view:
          name: spend
          version: 1
          kind: aggregation
          entity: account
          source: payments
          ttl: 3d
          availability_lag: 2h
          features:
            - {name: n_2d, function: count, window: 2d}
            - {name: total_2d, function: sum, column: amount, window: 2d, dtype: float64}
            - {name: last_amount, function: last, column: amount, window: 2d, dtype: float64}
          expectations:
            - {feature: total_2d, between: [0, 1000]}
            - {feature: n_2d, not_null: true}
            - {feature: last_amount, max_null_fraction: 0.25}
            - {feature: total_2d, between: [null, 50]}
        ---
        view:
          name: profile
          version: 3
          kind: snapshot
          entity: account
          source: profiles_raw
          ttl: 1d
          features:
            - {name: score, dtype: float64}
            - {name: segment, dtype: string}
          expectations:
            - {feature: score, not_null: true}
    """,
}


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Manifest:
    return compile_tree(write_tree(tmp_path_factory.mktemp("suite") / "defs", TREE))


def test_aggregation_defaults_then_declared_expectations_on_rows_with_a_value(manifest: Manifest) -> None:
    checks = build_checks(manifest.view("spend"))
    assert [(c.name, c.origin, c.values_only) for c in checks] == [
        ("not_null(account_id)", "default", False),
        ("not_null(region)", "default", False),
        ("unique(account_id, region, ds)", "default", False),
        ("equal(feature_ts, ds + 1 day + 7200s)", "default", False),
        ("between(total_2d, 0..1000)", "expectations[0]", True),
        ("not_null(n_2d)", "expectations[1]", True),
        ("max_null_fraction(last_amount, 0.25)", "expectations[2]", True),
        ("between(total_2d, ..50)", "expectations[3]", True),
    ]
    assert checks[3].columns == ("feature_ts", EXPECTED_FEATURE_TS)
    assert checks[7].min_value is None
    assert checks[7].max_value == 50
    assert checks[4].scope == "rows with a value (tombstones excluded)"


def test_snapshot_views_are_unique_per_event_and_created_time_and_check_every_row(manifest: Manifest) -> None:
    checks = build_checks(manifest.view("profile"))
    assert [(c.name, c.values_only) for c in checks] == [
        ("not_null(account_id)", False),
        ("not_null(region)", False),
        ("unique(account_id, region, feature_ts, created_ts)", False),
        ("equal(to_date(feature_ts), ds)", False),
        ("not_null(score)", False),
    ]
    assert checks[3].columns == (FEATURE_DATE, "ds")


def test_between_on_a_string_feature_is_an_error_naming_view_and_feature(manifest: Manifest) -> None:
    profile = manifest.view("profile")
    bad = profile.model_copy(update={"expectations": (ExpectationSpec(feature="segment", between=(0, 1)),)})
    with pytest.raises(SkewlessError, match=r"view 'profile': expectations\[0\]: .*'segment' is string"):
        build_checks(bad)
    view = manifest.view("spend")
    # Open on both sides bounds nothing and is left out.
    empty = view.model_copy(update={"expectations": (ExpectationSpec(feature="n_2d", between=(None, None)),)})
    assert [c.origin for c in build_checks(empty)] == ["default"] * 4


def test_observed_values_read_like_a_sentence() -> None:
    between = Check("between", ("total_2d",), "expectations[0]", values_only=True, min_value=0, max_value=10)
    result = {"element_count": 40, "unexpected_count": 2, "partial_unexpected_list": [-3.0, 1e9]}
    assert observed(between, False, result) == "2 of 40 values outside the range, e.g. -3.0, 1000000000.0"
    nulls = Check("max_null_fraction", ("x",), "expectations[1]", values_only=True, max_null_fraction=0.1)
    assert observed(nulls, False, {"element_count": 8, "unexpected_count": 4}) == (
        "null fraction 0.5 (4 of 8 rows with a value), allowed at most 0.1"
    )
    unique = Check("unique", ("k", "ds"), "default")
    assert observed(unique, False, {"element_count": 3, "unexpected_count": 2, "partial_unexpected_list": [
        {"k": "a", "ds": "2024-05-02"}]}) == (
        '2 of 3 rows share their k, ds with another row, e.g. {"k": "a", "ds": "2024-05-02"}'
    )  # fmt: skip
    equal = Check("columns_equal", ("feature_ts", "e"), "default", labels=("feature_ts", "ds + 1 day + 0s"))
    text = observed(equal, False, {"element_count": 5, "unexpected_count": 1,
                                    "partial_unexpected_list": [["2024-05-04", "2024-05-03"]]})  # fmt: skip
    assert text == "1 of 5 rows differ, e.g. feature_ts=2024-05-04 but ds + 1 day + 0s=2024-05-03"
    assert observed(unique, False, {}, error="boom") == "could not be evaluated: boom"


def test_importing_the_suite_imports_neither_spark_nor_great_expectations(tmp_path: Path) -> None:
    import subprocess
    import sys

    code = (
        "import sys, skewless.validate.suite, skewless.validate.psi, skewless.validate.gate, "
        "skewless.validate.stats, skewless.orchestration, skewless.dag_factory\n"
        "print(sorted(m for m in ('pyspark', 'great_expectations', 'airflow') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path
    )
    assert out.stdout.strip() == "[]"


def test_preload_imports_great_expectations_in_a_background_thread_quietly() -> None:
    # A fresh interpreter: this test process may have imported GE already. The CLI logs INFO.
    code = (
        "import logging, sys\n"
        "logging.basicConfig(level=logging.INFO)\n"
        "from skewless.validate import gate\n"
        "assert 'great_expectations' not in sys.modules\n"
        "interval = sys.getswitchinterval()\n"
        "gate.preload(); gate.preload()\n"
        "(thread,) = gate._preloading\n"
        "assert thread.daemon and thread.name == 'skewless-preload-gx'\n"
        "thread.join()\n"
        "assert 'great_expectations' in sys.modules\n"
        "assert sys.getswitchinterval() == interval\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "great_expectations" not in done.stderr  # its import-time INFO lines stay quiet
