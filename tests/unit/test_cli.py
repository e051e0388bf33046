"""The command line: validate / plan / apply through ``skewless.cli.main`` (no Spark)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import pytest

from skewless.cli import main
from skewless.compile import compile_tree
from skewless.errors import PlanRefused, SpecError
from skewless.registry import history_uri, read_registry

ENTITIES = """\
entity:
  name: merchant
  join_keys: {merchant_id: string}
"""

SOURCES = """\
source:
  name: transactions
  path: raw/transactions
  format: parquet
  timestamp: ts
  columns: {merchant_id: string, amount: float64, ts: timestamp}
"""

VIEW = """\
view:
  name: merchant_txn
  version: 1
  kind: aggregation
  entity: merchant
  source: transactions
  ttl: 2d
  features:
    - {name: txn_count_7d, function: count, window: 7d}
    - {name: amount_sum_7d, function: sum, column: amount, window: 7d}
"""

SERVICES = """\
service:
  name: fraud_model
  features: [merchant_txn:txn_count_7d]
"""

# Three errors in two files; each line below is where the error is.
BROKEN_VIEWS = """\
view:
  name: merchant_txn
  version: 1
  kind: aggregation
  entity: merchant
  source: transactions
  ttl: 2d
  features:
    - {name: txn_count_7d, function: count, window: 7x}
---
view:
  name: other
  version: 1
  kind: aggregation
  entity: shop
  source: transactions
  ttl: 2d
  features:
    - {name: n, function: count, window: 1d}
"""
BROKEN_SERVICES = """\
service:
  name: fraud_model
  features:
    - other:n
    - merchant_txn:nope
    - nothing:here
"""
BROKEN_ERRORS = [
    "defs/services.yaml:6: service.features[2]: unknown view 'nothing'",
    "defs/views.yaml:9: view.features[0].window: expected a duration like '7d', '12h' or '30m', got '7x'",
    "defs/views.yaml:15: view.entity: unknown entity 'shop'",
]


@dataclass
class Workspace:
    root: Path
    conf: Path
    defs: Path

    @property
    def registry(self) -> Path:
        return self.root / "offline" / "_registry" / "registry.json"

    @property
    def history(self) -> Path:
        return self.registry.parent / "history"

    def write(self, name: str, text: str) -> None:
        (self.defs / name).write_text(text, encoding="utf-8")

    def edit(self, name: str, old: str, new: str) -> None:
        text = (self.defs / name).read_text(encoding="utf-8")
        assert old in text, f"test bug: {old!r} not in {name}"
        self.write(name, text.replace(old, new))

    def run(self, *args: str) -> int:
        return main(["--conf", str(self.conf), *args])

    def snapshot(self) -> dict[str, bytes]:
        """Every file under the registry folder, byte for byte."""
        folder = self.registry.parent
        return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def ws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    for key in list(os.environ):
        if key.startswith("SKEWLESS_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    defs = tmp_path / "defs"
    defs.mkdir()
    conf = tmp_path / "conf.yaml"
    conf.write_text("defs: defs\ndata_root: data\noffline_root: offline\n", encoding="utf-8")
    workspace = Workspace(tmp_path, conf, defs)
    workspace.write("entities.yaml", ENTITIES)
    workspace.write("sources.yaml", SOURCES)
    workspace.write("views.yaml", VIEW)
    workspace.write("services.yaml", SERVICES)
    return workspace


def _break(ws: Workspace) -> None:
    ws.write("views.yaml", BROKEN_VIEWS)
    ws.write("services.yaml", BROKEN_SERVICES)


def test_validate_ok(ws: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    assert ws.run("validate") == 0
    out, err = capsys.readouterr()
    assert out == "OK: 1 entities, 1 sources, 1 views, 1 services\n"
    assert err == ""


def test_validate_prints_every_error_with_file_and_line(
    ws: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    _break(ws)
    assert ws.run("validate") == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == ["error: 3 errors in feature definitions", *BROKEN_ERRORS]
    assert "Traceback" not in err


def test_validate_defs_option_overrides_the_config(ws: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    other = ws.root / "other_defs"
    other.mkdir()
    (other / "entities.yaml").write_text(ENTITIES, encoding="utf-8")
    assert ws.run("validate", "--defs", str(other)) == 0
    assert capsys.readouterr().out == "OK: 1 entities, 0 sources, 0 views, 0 services\n"


def test_plan_with_nothing_deployed(ws: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    assert ws.run("plan") == 0
    lines = capsys.readouterr().out.splitlines()
    new_hash = compile_tree(ws.defs).registry_hash
    assert lines[0] == f"Plan: (nothing deployed) -> {new_hash[:12]}"
    for line in (
        "  + entity merchant (added)",
        "  + source transactions (added)",
        "  + view merchant_txn (added)",
        "  + service fraud_model (added)",
        "  * merchant_txn -> views/merchant_txn/v1: new view; "
        "no committed partitions yet: choose the history to build",
    ):
        assert line in lines
    assert not ws.registry.exists()  # plan never publishes


def test_apply_publishes_then_plan_says_no_changes(ws: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = compile_tree(ws.defs)
    assert ws.run("apply") == 0
    out = capsys.readouterr().out
    assert (
        f"Applied registry {manifest.registry_hash[:12]} to {Path('offline/_registry/registry.json')}" in out
    )
    pointer = json.loads(ws.registry.read_text(encoding="utf-8"))
    assert sorted(pointer.pop("schedule_start")) == ["merchant_txn"]  # deployment state, not hashed
    assert pointer == json.loads(manifest.to_json())
    copy = Path(history_uri(str(ws.registry), manifest.registry_hash))
    assert copy.read_text(encoding="utf-8") == manifest.to_json()
    assert read_registry(str(ws.registry)) == manifest

    assert ws.run("plan") == 0
    assert capsys.readouterr().out.startswith("No changes")

    before = ws.snapshot()
    assert ws.run("apply") == 0
    assert capsys.readouterr().out.startswith("No changes")
    assert ws.snapshot() == before


def test_apply_compatible_change_publishes_a_new_registry(
    ws: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    assert ws.run("apply") == 0
    first = compile_tree(ws.defs)
    ws.edit(
        "views.yaml",
        "  features:\n",
        "  features:\n    - {name: txn_count_1d, function: count, window: 1d}\n",
    )
    second = compile_tree(ws.defs)
    capsys.readouterr()

    assert ws.run("apply") == 0
    out = capsys.readouterr().out
    assert "feature txn_count_1d: added" in out
    assert f"Applied registry {second.registry_hash[:12]}" in out
    assert read_registry(str(ws.registry)) == second
    assert sorted(p.name for p in ws.history.iterdir()) == sorted(
        f"{m.registry_hash}.json" for m in (first, second)
    )


def test_apply_refuses_a_breaking_change_and_leaves_the_registry_alone(
    ws: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    assert ws.run("apply") == 0
    before = ws.snapshot()
    assert len(before) == 3  # the pointer, its history copy and the (empty) lock file
    ws.edit(
        "views.yaml",
        "{name: txn_count_7d, function: count, window: 7d}",
        "{name: txn_count_7d, function: count, window: 14d}",
    )
    capsys.readouterr()

    assert ws.run("apply") == 1
    out, err = capsys.readouterr()
    assert err.startswith("error: refused: breaking changes without a version bump:\n")
    assert "feature txn_count_7d changed meaning (window_days: 7 -> 14)" in err
    assert "Traceback" not in err
    assert "BREAKING" in out  # the plan is shown before the refusal
    assert ws.snapshot() == before

    # plan shows the same thing and fails too, so CI can gate on it
    assert ws.run("plan") == 1
    out, err = capsys.readouterr()
    assert "  ! view merchant_txn v1: feature txn_count_7d changed meaning" in out
    assert ws.snapshot() == before

    # bumping the version makes it a new table: accepted
    ws.edit("views.yaml", "version: 1", "version: 2")
    assert ws.run("apply") == 0
    registry = read_registry(str(ws.registry))
    assert registry is not None
    assert registry.views["merchant_txn"].table == "views/merchant_txn/v2"


def test_plan_markdown(ws: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    assert ws.run("apply") == 0
    old_hash = compile_tree(ws.defs).registry_hash
    ws.edit(
        "views.yaml",
        "  features:\n",
        "  features:\n    - {name: txn_count_1d, function: count, window: 1d}\n",
    )
    ws.write(
        "services.yaml", SERVICES + "---\nservice:\n  name: churn\n  features: [merchant_txn:txn_count_1d]\n"
    )
    capsys.readouterr()

    assert ws.run("plan", "--format", "markdown") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "### skewless plan"
    assert f"Registry `{old_hash[:12]}` -> `{compile_tree(ws.defs).registry_hash[:12]}`" in lines
    rows = [line for line in lines if line.startswith("| ") and not line.startswith("| |")]
    assert rows == [
        "| ~ | view | `merchant_txn` | feature txn_count_1d: added |",
        "| + | service | `churn` | added |",
    ]
    assert (
        "- merchant_txn -> views/merchant_txn/v1: feature added: txn_count_1d; "
        "no committed partitions yet: choose the history to build"
    ) in lines


def test_debug_reraises_the_error(ws: Workspace) -> None:
    _break(ws)
    with pytest.raises(SpecError) as info:
        main(["--debug", "--conf", str(ws.conf), "validate"])
    assert [str(p) for p in info.value.problems] == BROKEN_ERRORS


def test_debug_reraises_a_refused_apply(ws: Workspace) -> None:
    assert ws.run("apply") == 0
    ws.edit("views.yaml", "window: 7d}", "window: 8d}")
    with pytest.raises(PlanRefused) as info:
        main(["--conf", str(ws.conf), "--debug", "apply"])
    assert len(info.value.reasons) == 2  # both features have a 7d window


def test_unknown_command_is_a_usage_error(ws: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    # Every failure exits 1 with one line (scripts test for non-zero; docs/cli.md).
    assert ws.run("frobnicate") == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == "error: No such command 'frobnicate'. (see `skewless --help`)\n"


def test_bad_option_value_is_a_usage_error(ws: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    assert ws.run("plan", "--format", "html") == 1
    assert "'html' is not one of 'text', 'markdown'" in capsys.readouterr().err


def test_missing_config_file(ws: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--conf", "missing.yaml", "plan"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == "error: cannot read config missing.yaml: No such file or directory\n"


def test_missing_config_file_from_the_environment(
    ws: Workspace, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SKEWLESS_CONF", "nowhere/conf.yaml")
    assert main(["plan"]) == 1
    assert (
        capsys.readouterr().err == "error: cannot read config nowhere/conf.yaml: No such file or directory\n"
    )


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"skewless, version {version('skewless')}\n"


def test_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Usage: skewless [OPTIONS] COMMAND [ARGS]...")
    for command in ("validate", "plan", "apply"):
        assert f"  {command} " in out
    assert main(["plan", "--help"]) == 0
    assert "--format [text|markdown]" in capsys.readouterr().out


def _console_script() -> list[str]:
    script = Path(sys.executable).with_name("skewless")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "skewless.cli"]


def test_console_script_exit_codes(ws: Workspace) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SKEWLESS_")}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*_console_script(), *args],
            cwd=ws.root,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    ok = run("--conf", "conf.yaml", "validate")
    assert (ok.returncode, ok.stdout, ok.stderr) == (
        0,
        "OK: 1 entities, 1 sources, 1 views, 1 services\n",
        "",
    )

    version_run = run("--version")
    assert (version_run.returncode, version_run.stdout) == (0, f"skewless, version {version('skewless')}\n")

    usage = run("frobnicate")
    assert usage.returncode == 1
    assert "No such command 'frobnicate'" in usage.stderr

    _break(ws)
    broken = run("--conf", "conf.yaml", "validate")
    assert broken.returncode == 1
    assert broken.stderr.splitlines() == ["error: 3 errors in feature definitions", *BROKEN_ERRORS]
    assert "Traceback" not in broken.stderr
