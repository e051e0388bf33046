"""Rich dtypes and list/percentile functions at compile time (docs/feature-definitions.md).

``k``, ``percentile`` and ``length`` are checked with the file and line of the feature; output
dtypes follow the function and the column's (widened) type.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from skewless.compile import compile_tree
from skewless.errors import SpecError

HEAD = """\
entity:
  name: merchant
  join_keys: {merchant_id: string}
---
source:
  name: txns
  path: raw/txns
  format: parquet
  timestamp: ts
  columns: {merchant_id: int32, amount: float64, small: float32, qty: int32, category: string,
            ok: bool, ts: timestamp, emb: "array<float32>", day: date}
---
"""
# merchant_id is declared int32 above on purpose for the key check; entities use string keys,
# so the tests that need a valid tree use KEYED instead.
KEYED = HEAD.replace("merchant_id: int32", "merchant_id: string")


def compile_view(tmp_path: Path, features: str, head: str = KEYED, kind: str = "aggregation") -> object:
    text = head + textwrap.dedent(
        f"""\
        view:
          name: v
          version: 1
          kind: {kind}
          entity: merchant
          source: txns
          ttl: 2d
          features:
        """
    )
    text += textwrap.indent(textwrap.dedent(features).strip("\n"), "    ") + "\n"
    (tmp_path / "defs.yaml").write_text(text, encoding="utf-8")
    return compile_tree(tmp_path)


def problems(tmp_path: Path, features: str, kind: str = "aggregation") -> list[str]:
    with pytest.raises(SpecError) as caught:
        compile_view(tmp_path, features, kind=kind)
    return [str(p) for p in caught.value.problems]


def test_output_dtypes_of_the_new_functions(tmp_path: Path) -> None:
    manifest = compile_view(
        tmp_path,
        """
        - {name: p90, function: approx_percentile, column: amount, percentile: 0.9, window: 7d}
        - {name: pcts, function: approx_percentile, column: qty, percentile: [0.5, 0.99], window: 7d}
        - {name: last5, function: last_k, column: amount, k: 5, window: 7d}
        - {name: last5_small, function: last_k, column: small, k: 5, window: 7d}
        - {name: last_cats, function: last_k, column: category, k: 2, window: 7d}
        - {name: top, function: top_k, column: qty, k: 3, window: 7d}
        - {name: top_n, function: top_k_counts, column: category, k: 3, window: 7d}
        - {name: first, function: first_seen, window: 7d}
        - {name: last_amount_at, function: last_seen, column: amount, window: 7d}
        - {name: small_sum, function: sum, column: small, window: 7d}
        - {name: qty_max, function: max, column: qty, window: 7d}
        """,
    )
    view = manifest.view("v")  # type: ignore[attr-defined]
    assert {f.name: f.dtype for f in view.features} == {
        "p90": "float64",
        "pcts": "array<float64>",
        "last5": "array<float64>",
        "last5_small": "array<float64>",
        "last_cats": "array<string>",
        "top": "array<int64>",
        "top_n": "array<int64>",
        "first": "timestamp",
        "last_amount_at": "timestamp",
        "small_sum": "float64",
        "qty_max": "int64",
    }
    assert view.feature("pcts").percentiles == (0.5, 0.99)
    assert view.feature("last5").k == 5
    # Unset parameters stay out of the registry JSON (older registries keep their hashes).
    assert "k" not in view.feature("p90").model_dump(mode="json")


def test_k_and_percentile_are_checked_at_their_line(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        """
        - {name: a, function: last_k, column: amount, window: 7d}
        - {name: b, function: top_k, column: category, k: 0, window: 7d}
        - {name: c, function: count, k: 3, window: 7d}
        - {name: d, function: approx_percentile, column: amount, window: 7d}
        - {name: e, function: approx_percentile, column: amount, percentile: 1.5, window: 7d}
        - {name: f, function: approx_percentile, column: amount, percentile: [0.5, 0.5], window: 7d}
        - {name: g, function: max, column: amount, percentile: 0.5, window: 7d}
        - {name: h, function: top_k, column: amount, k: 2, window: 7d}
        - {name: i, function: approx_percentile, column: category, percentile: 0.5, window: 7d}
        - {name: j, function: last_k, column: ok, k: 2, window: 7d}
        - {name: k, function: top_k, column: category, k: 1001, window: 7d}
        """,
    )
    lines = KEYED.count("\n") + 9  # the first feature's line
    expected = [
        f"defs.yaml:{lines}: view.features[0].k: function 'last_k' needs k, e.g. k: 5",
        f"defs.yaml:{lines + 1}: view.features[1].k: must be between 1 and 1000, got 0",
        f"defs.yaml:{lines + 2}: view.features[2].k: only last_k, top_k, top_k_counts take k, not 'count'",
        f"defs.yaml:{lines + 3}: view.features[3].percentile: approx_percentile needs percentile",
        f"defs.yaml:{lines + 4}: view.features[4].percentile: levels are between 0 and 1, got 1.5",
        f"defs.yaml:{lines + 5}: view.features[5].percentile: a level is listed twice",
        f"defs.yaml:{lines + 6}: view.features[6].percentile: only approx_percentile takes percentile",
        f"defs.yaml:{lines + 7}: view.features[7].function: 'top_k' needs a column of type int32, int64,",
        f"defs.yaml:{lines + 8}: view.features[8].function: 'approx_percentile' needs a numeric column",
        f"defs.yaml:{lines + 9}: view.features[9].function: 'last_k' needs a column of type float32,",
        f"defs.yaml:{lines + 10}: view.features[10].k: must be between 1 and 1000, got 1001",
    ]
    for want in expected:
        assert any(want in p for p in found), f"{want}\n---\n" + "\n".join(found)


def test_snapshot_dtypes_and_declared_length(tmp_path: Path) -> None:
    manifest = compile_view(
        tmp_path,
        """
        - {name: emb, dtype: "array<float32>", length: 4}
        - {name: small, dtype: float32}
        - {name: small_wide, dtype: float64, column: small}
        - {name: qty, dtype: int32}
        - {name: qty_wide, dtype: int64, column: qty}
        - {name: day, dtype: date}
        - {name: ts_copy, dtype: timestamp, column: ts}
        """,
        kind="snapshot",
    )
    view = manifest.view("v")  # type: ignore[attr-defined]
    assert view.feature("emb").length == 4
    assert {f.name: f.dtype for f in view.features}["small"] == "float32"

    found = problems(
        tmp_path,
        """
        - {name: amount, dtype: float32}
        - {name: emb, dtype: "array<float64>"}
        - {name: qty, dtype: int64, length: 3}
        - {name: small, dtype: "array<float32>", column: emb, length: 0}
        """,
        kind="snapshot",
    )
    lines = KEYED.count("\n") + 9
    expected = [
        f"defs.yaml:{lines}: view.features[0].dtype: source 'txns' declares 'amount' as float64",
        f"defs.yaml:{lines + 1}: view.features[1].dtype: source 'txns' declares 'emb' as array<float32>",
        f"defs.yaml:{lines + 2}: view.features[2].length: only array features have a length, not int64",
        f"defs.yaml:{lines + 3}: view.features[3].length: must be between 1 and 65536, got 0",
    ]
    for want in expected:
        assert any(want in p for p in found), f"{want}\n---\n" + "\n".join(found)


def test_a_narrow_key_column_feeds_an_int64_key(tmp_path: Path) -> None:
    head = HEAD.replace("join_keys: {merchant_id: string}", "join_keys: {merchant_id: int64}")
    manifest = compile_view(tmp_path, "- {name: n, function: count, window: 1d}", head=head)
    assert manifest.view("v").join_keys[0].dtype == "int64"  # type: ignore[attr-defined]


def test_the_validation_suite_checks_declared_lengths(tmp_path: Path) -> None:
    from skewless.validate.suite import build_checks, length_column

    manifest = compile_view(
        tmp_path,
        """
        - {name: emb, dtype: "array<float32>", length: 4}
        - {name: free, dtype: "array<float32>", column: emb}
        """,
        kind="snapshot",
    )
    checks = [c for c in build_checks(manifest.view("v")) if c.origin == "default"]  # type: ignore[attr-defined]
    lengths = [c for c in checks if c.columns == (length_column("emb"),)]
    assert [(c.kind, c.min_value, c.max_value, c.name) for c in lengths] == [
        ("between", 4, 4, "between(length(emb), 4..4)")
    ]
    assert not [c for c in checks if c.columns == (length_column("free"),)]


def test_top_k_counts_needs_the_column_type_declared(tmp_path: Path) -> None:
    from skewless.compile.compiler import SourceColumns

    undeclared = KEYED[: KEYED.index("  columns:")] + "---\n"
    (tmp_path / "defs.yaml").write_text(
        undeclared
        + textwrap.dedent(
            """\
            view:
              name: v
              version: 1
              kind: aggregation
              entity: merchant
              source: txns
              ttl: 2d
              features:
                - {name: top, function: top_k, column: category, k: 2, window: 7d}
                - {name: top_n, function: top_k_counts, column: category, k: 2, window: 7d}
            """
        ),
        encoding="utf-8",
    )
    types = {"merchant_id": "string", "category": "string", "ts": "timestamp"}
    with pytest.raises(SpecError) as caught:
        compile_tree(tmp_path, read_columns=lambda source: SourceColumns(types, "read from files"))
    (problem,) = caught.value.problems
    assert "view.features[1].column: top_k_counts needs the type of 'category' declared" in str(problem)
