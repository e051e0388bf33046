"""``validate --deep``: column references and filters checked against the real source schemas."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from skewless.cli import main
from tests.helpers import write_parquet, write_tree

pytestmark = pytest.mark.spark

SOURCE = """
    entity: {name: account, join_keys: {account_id: string}}
    ---
    source: {name: payments, path: payments, format: parquet, timestamp: ts}
"""


def _view(filter_sql: str, column: str) -> str:
    return f"""
        view:
          name: spend
          version: 1
          kind: aggregation
          entity: account
          source: payments
          filter: "{filter_sql}"
          ttl: 2d
          features:
            - {{name: total, function: sum, column: {column}, window: 1d, dtype: float64}}
    """


def _project(tmp_path: Path, view: str) -> Path:
    write_tree(tmp_path / "defs", {"source.yaml": SOURCE, "view.yaml": view})
    write_parquet(
        tmp_path / "data" / "payments",
        [{"account_id": "a", "amount": 1.0, "status": "ok", "ts": datetime(2024, 5, 1, tzinfo=UTC)}],
        pa.schema(
            [
                ("account_id", pa.string()),
                ("amount", pa.float64()),
                ("status", pa.string()),
                ("ts", pa.timestamp("us", tz="UTC")),
            ]
        ),
    )
    conf = tmp_path / "conf.yaml"
    conf.write_text(
        f"defs: {tmp_path / 'defs'}\ndata_root: {tmp_path / 'data'}\noffline_root: {tmp_path / 'off'}\n"
    )
    return conf


def test_deep_validation_passes_on_matching_sources(
    spark: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    conf = _project(tmp_path, _view("status = 'ok'", "amount"))
    assert main(["--conf", str(conf), "validate", "--deep"]) == 0
    assert "(sources checked)" in capsys.readouterr().out


def test_validate_reads_the_source_types_and_reports_missing_columns_and_filter_columns(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without `columns:` the types come from the files, so plain validate already finds both."""
    conf = _project(tmp_path, _view("state = 'ok'", "amount_usd"))
    assert main(["--conf", str(conf), "validate"]) == 1
    err = capsys.readouterr().err
    assert "view.filter: column 'state' is not a column of the source" in err
    assert "view.features[0].column: column 'amount_usd' is not in source 'payments' (read from" in err


def test_deep_validation_reports_missing_columns_and_bad_filters_together(
    spark: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Declared columns the real source lacks pass validate (the YAML agrees with itself); --deep
    finds them."""
    declared = SOURCE.replace(
        "timestamp: ts}",
        "timestamp: ts, columns: {account_id: string, amount_usd: float64, state: string, ts: timestamp}}",
    )
    conf = _project(tmp_path, _view("state = 'ok'", "amount_usd"))
    write_tree(tmp_path / "defs", {"source.yaml": declared})
    assert main(["--conf", str(conf), "validate"]) == 0  # the YAML alone is valid
    assert main(["--conf", str(conf), "validate", "--deep"]) == 1
    err = capsys.readouterr().err
    assert "2 problems against the sources" in err
    assert "view 'spend': column 'amount_usd' not found in source 'payments'" in err
    assert "view 'spend': filter \"state = 'ok'\"" in err
    assert "Traceback" not in err
