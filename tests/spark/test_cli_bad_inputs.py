"""Bad inputs through the real command line: exit 1, one line saying what is wrong, never a traceback.

Cases that fail before Spark starts run the ``skewless`` executable in a subprocess, exactly as
a user types it. Cases that fail inside a Spark job run the same ``main()`` in this process, on
the test session's SparkSession (starting a JVM per case would cost a minute each); ``main`` is
the one error handler either way.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from skewless.cli import main
from tests.helpers import write_tree
from tests.spark.test_real_inputs import END, START, TREE, _customer_stats, _spine, _transactions

pytestmark = pytest.mark.spark

SKEWLESS = str(Path(sys.executable).parent / "skewless")


@dataclass(frozen=True)
class Workspace:
    root: Path
    conf: Path

    def path(self, *parts: str) -> str:
        return str(self.root.joinpath(*parts))


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory, spark: Any) -> Workspace:
    """Definitions, pandas-written data, a deployed registry and one committed backfill."""
    root = tmp_path_factory.mktemp("cli-bad")
    write_tree(root / "defs", TREE)
    for name, frame in (("transactions", _transactions()), ("customer_stats", _customer_stats())):
        (root / "data" / name).mkdir(parents=True)
        frame.to_parquet(root / "data" / name / "data.parquet")
    (root / "spines").mkdir()
    _spine().to_parquet(root / "spines" / "good.parquet")
    conf = root / "conf.yaml"
    conf.write_text(
        f"defs: {root / 'defs'}\ndata_root: {root / 'data'}\noffline_root: {root / 'offline'}\n"
        "redis_url: redis://127.0.0.1:1/0\n"  # nothing listens on port 1: "Redis down"
    )
    workspace = Workspace(root, conf)
    assert main(["--conf", str(conf), "apply"]) == 0
    assert (
        main(["--conf", str(conf), "backfill", "merchant_txn", "--start", str(START), "--end", str(END)]) == 0
    )
    _bad_files(workspace)
    return workspace


def _bad_files(ws: Workspace) -> None:
    spines = ws.root / "spines"
    (spines / "empty").mkdir()
    (spines / "labels.csv").write_text("merchant_id,event_timestamp\nm1,2024-03-02\n")
    good = (spines / "good.parquet").read_bytes()
    (spines / "truncated.parquet").write_bytes(good[: len(good) // 2] + b"PAR1")
    frame = _spine()
    frame.drop(columns=["event_timestamp"]).to_parquet(spines / "no_ts.parquet")
    nulls = frame.astype({"customer_id": "Int64"})
    nulls.loc[3, "customer_id"] = None
    nulls.to_parquet(spines / "null_keys.parquet")
    frame.astype({"customer_id": str}).to_parquet(spines / "string_keys.parquet")
    existing = ws.root / "out" / "existing"
    existing.mkdir(parents=True)
    (existing / "part-0.parquet").write_text("x")
    (ws.root / "registry_newer.json").write_text(json.dumps({"schema_version": 99}))
    (ws.root / "broken_defs").mkdir()
    (ws.root / "broken_defs" / "views.yaml").write_text("view:\n  name: x\n  name: y\n")
    (ws.root / "notes.txt").write_text("hello")


def _data_variant(ws: Workspace, name: str, frame: pd.DataFrame | None, *, raw: bytes | None = None) -> Path:
    """A copy of the workspace whose transactions are replaced by a bad variant."""
    root = ws.root / "variants" / name
    (root / "transactions").mkdir(parents=True)
    if frame is not None:
        frame.to_parquet(root / "transactions" / "data.parquet")
    if raw is not None:
        (root / "transactions" / "data.parquet").write_bytes(raw)
    (root / "customer_stats").symlink_to(ws.root / "data" / "customer_stats")
    return root


# (id, argv after --conf, words the one line must contain). {root} is the workspace folder.
BEFORE_SPARK: list[tuple[str, list[str], list[str]]] = [
    ("unknown command", ["frobnicate"], ["No such command", "--help"]),
    ("unknown option", ["run", "merchant_txn", "--day", "2024-03-01"], ["No such option", "--day"]),
    ("missing config", ["--conf", "{root}/nope.yaml", "plan"], ["cannot read config", "nope.yaml"]),
    ("config not yaml settings", ["--conf", "{root}/notes.txt", "plan"], ["notes.txt"]),
    ("broken definitions", ["validate", "--defs", "{root}/broken_defs"], ["views.yaml:3", "duplicate"]),
    ("definitions folder missing", ["validate", "--defs", "{root}/nowhere"], ["nowhere"]),
    ("plan bad format", ["plan", "--format", "html"], ["'html' is not one of"]),
    ("run unknown view", ["run", "nope", "--ds", "2024-03-01"], ["unknown view 'nope'", "merchant_txn"]),
    ("run bad date", ["run", "merchant_txn", "--ds", "2024-02-30"], ["--ds", "2024-02-30"]),
    ("run date not a date", ["run", "merchant_txn", "--ds", "yesterday"], ["--ds", "yesterday"]),
    (
        "backfill end before start",
        ["backfill", "merchant_txn", "--start", "2024-03-05", "--end", "2024-03-01"],
        ["--end 2024-03-01 is before --start 2024-03-05"],
    ),
    ("backfill missing end", ["backfill", "merchant_txn", "--start", "2024-03-05"], ["--end"]),
    (
        "materialize ds and range",
        ["materialize", "merchant_txn", "--ds", "2024-03-01", "--start", "2024-03-01"],
        ["give either --ds"],
    ),
    ("materialize unknown view", ["materialize", "nope", "--ds", "2024-03-01"], ["unknown view 'nope'"]),
    (
        "materialize end before start",
        ["materialize", "merchant_txn", "--start", "2024-03-05", "--end", "2024-03-01"],
        ["is before"],
    ),
    (
        "get-online malformed entity",
        ["get-online", "--service", "fraud", "--entity", "merchant_id"],
        ["expected key=value"],
    ),
    (
        "get-online unknown key",
        ["get-online", "--service", "fraud", "--entity", "shop=1"],
        ["'shop' is not a join key"],
    ),
    (
        "get-online int key not int",
        ["get-online", "--features", "customer_stats:total_orders", "--entity", "customer_id=abc"],
        ["customer_id"],
    ),
    (
        "get-online bad json",
        ["get-online", "--service", "fraud", "--entity", "{merchant_id: m1"],
        ["not a valid JSON object"],
    ),
    (
        "get-online unknown service",
        ["get-online", "--service", "nope", "--entity", "merchant_id=m1"],
        ["unknown service 'nope'"],
    ),
    (
        "get-online unknown feature",
        ["get-online", "--features", "merchant_txn:nope", "--entity", "merchant_id=m1"],
        ["nope"],
    ),
    (
        "get-online unknown view",
        ["get-online", "--features", "ghost:x", "--entity", "merchant_id=m1"],
        ["ghost"],
    ),
    (
        "get-online service and features",
        [
            "get-online",
            "--service",
            "fraud",
            "--features",
            "merchant_txn:txn_count_2d",
            "--entity",
            "merchant_id=m1",
        ],
        ["give either --service"],
    ),
    (
        "get-online bad time",
        ["get-online", "--service", "fraud", "--entity", "merchant_id=m1,customer_id=1", "--at", "noon"],
        ["not an ISO-8601 time"],
    ),
    (
        "get-online redis down",
        ["get-online", "--service", "fraud", "--entity", "merchant_id=m1,customer_id=1"],
        ["Redis at redis://127.0.0.1:1/0"],
    ),
    (
        "training-set missing spine",
        [
            "training-set",
            "--service",
            "fraud",
            "--spine",
            "{root}/spines/none.parquet",
            "--out",
            "{root}/out/a",
        ],
        ["spine", "none.parquet", "no such file"],
    ),
    (
        "training-set empty spine folder",
        ["training-set", "--service", "fraud", "--spine", "{root}/spines/empty", "--out", "{root}/out/b"],
        ["spines/empty", "no Parquet files", "empty"],
    ),
    (
        "training-set csv spine",
        [
            "training-set",
            "--service",
            "fraud",
            "--spine",
            "{root}/spines/labels.csv",
            "--out",
            "{root}/out/c",
        ],
        ["labels.csv", "not a Parquet file"],
    ),
    (
        "training-set corrupt spine",
        [
            "training-set",
            "--service",
            "fraud",
            "--spine",
            "{root}/spines/truncated.parquet",
            "--out",
            "{root}/out/d",
        ],
        ["truncated.parquet", "corrupt Parquet file"],
    ),
    (
        "training-set glob matches nothing",
        ["training-set", "--service", "fraud", "--spine", "{root}/spines/*.json", "--out", "{root}/out/e"],
        ["no Parquet files"],
    ),
    (
        "training-set existing out",
        [
            "training-set",
            "--service",
            "fraud",
            "--spine",
            "{root}/spines/good.parquet",
            "--out",
            "{root}/out/existing",
        ],
        ["already exists"],
    ),
    (
        "training-set unwritable out",
        [
            "training-set",
            "--service",
            "fraud",
            "--spine",
            "{root}/spines/good.parquet",
            "--out",
            "{root}/notes.txt/out",
        ],
        ["cannot be written", "notes.txt"],
    ),
    (
        "training-set unknown service",
        [
            "training-set",
            "--service",
            "nope",
            "--spine",
            "{root}/spines/good.parquet",
            "--out",
            "{root}/out/f",
        ],
        ["unknown service 'nope'"],
    ),
    ("training-set no spine", ["training-set", "--service", "fraud", "--out", "{root}/out/g"], ["--spine"]),
    (
        "training-set bad method",
        [
            "training-set",
            "--service",
            "fraud",
            "--spine",
            "{root}/spines/good.parquet",
            "--out",
            "{root}/out/h",
            "--method",
            "magic",
        ],
        ["'magic' is not one of"],
    ),
    (
        "training-set rebuild without manifest",
        ["training-set", "--rebuild", "{root}/out/none", "--out", "{root}/out/i"],
        ["no training-set manifest"],
    ),
    ("check-skew unknown view", ["check-skew", "nope"], ["unknown view 'nope'"]),
    (
        "no registry deployed",
        ["--conf", "{root}/conf_empty.yaml", "run", "merchant_txn", "--ds", "2024-03-01"],
        ["no registry", "skewless apply"],
    ),
    (
        "registry from a newer skewless",
        [
            "--conf",
            "{root}/conf_newer.yaml",
            "get-online",
            "--service",
            "fraud",
            "--entity",
            "merchant_id=m1",
        ],
        ["schema version 99", "upgrade skewless"],
    ),
    ("serve without registry", ["--conf", "{root}/conf_empty.yaml", "serve", "--port", "0"], ["no registry"]),
]


def _argv(ws: Workspace, args: list[str]) -> list[str]:
    filled = [a.replace("{root}", str(ws.root)) for a in args]
    return filled if filled[0] == "--conf" else ["--conf", str(ws.conf), *filled]


@pytest.fixture(scope="module")
def extra_confs(ws: Workspace) -> None:
    text = ws.conf.read_text()
    (ws.root / "conf_empty.yaml").write_text(
        text.replace(f"offline_root: {ws.root / 'offline'}", f"offline_root: {ws.root / 'empty'}")
    )
    (ws.root / "conf_newer.yaml").write_text(text + f"registry: {ws.root / 'registry_newer.json'}\n")


@pytest.mark.parametrize(("case", "args", "words"), BEFORE_SPARK, ids=[c[0] for c in BEFORE_SPARK])
def test_bad_input_before_spark_is_one_line_and_exit_1(
    ws: Workspace, extra_confs: None, case: str, args: list[str], words: list[str]
) -> None:
    env = {**os.environ, "SKEWLESS_REDIS_URL": "redis://127.0.0.1:1/0"}
    done = subprocess.run(
        [SKEWLESS, *_argv(ws, args)], capture_output=True, text=True, timeout=120, env=env, check=False
    )
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    lines = [
        line
        for line in done.stderr.splitlines()
        if line.strip() and " INFO " not in line and " WARN" not in line
    ]
    # One line, except a definitions error: its header line, then one file:line line per problem.
    assert len(lines) == 1 or lines[0].endswith("in feature definitions"), done.stderr
    assert lines[0].startswith("error: "), done.stderr
    for word in words:
        assert word.replace("{root}", str(ws.root)) in done.stderr, (word, done.stderr)


# Failures found inside a Spark job: main() in this process, on the shared session.
def _in_spark_cases(ws: Workspace) -> list[tuple[str, list[str], list[str]]]:
    wrong_key_type = _transactions().assign(merchant_id=lambda f: f["merchant_id"].str[1:].astype("int64"))
    string_ts = _transactions().assign(ts=lambda f: f["ts"].dt.strftime("%Y-%m-%d %H:%M:%S"))
    wrong_value_type = _transactions().assign(qty=lambda f: f["qty"].astype(str))
    variants = {
        "wrong_key_type": _data_variant(ws, "wrong_key_type", wrong_key_type),
        "string_ts": _data_variant(ws, "string_ts", string_ts),
        "wrong_value_type": _data_variant(ws, "wrong_value_type", wrong_value_type),
        "corrupt": _data_variant(ws, "corrupt", None, raw=b"PAR1 not really parquet PAR1"),
        "empty": _data_variant(ws, "empty", None),
    }
    missing = ws.root / "variants" / "missing"
    (missing / "customer_stats").parent.mkdir(parents=True, exist_ok=True)

    def backfill(data_root: Path) -> list[str]:
        return [
            "--conf",
            str(_conf_with(ws, data_root)),
            "backfill",
            "merchant_txn",
            "--start",
            str(START + timedelta(days=1)),
            "--end",
            str(START + timedelta(days=2)),
        ]

    spine = ["training-set", "--service", "fraud", "--out"]
    return [
        (
            "source key of the wrong type",
            backfill(variants["wrong_key_type"]),
            [
                "source 'transactions'",
                "column 'merchant_id'",
                "join key must be string, found bigint",
                "data.parquet",
            ],
        ),
        (
            "source timestamp as text",
            backfill(variants["string_ts"]),
            ["column 'ts'", "expected a timestamp, found string", "timestamp_format"],
        ),
        (
            "source value that cannot be cast",
            backfill(variants["wrong_value_type"]),
            ["column 'qty'", "value column must be int64, found string", "data.parquet"],
        ),
        (
            "source corrupt file",
            backfill(variants["corrupt"]),
            ["source 'transactions'", "data.parquet", "corrupt"],
        ),
        ("source empty folder", backfill(variants["empty"]), ["source 'transactions'", "no Parquet files"]),
        ("source missing", backfill(missing), ["source 'transactions'", "no such file or directory"]),
        (
            "spine without its timestamp",
            [*spine, "{root}/out/s1", "--spine", "{root}/spines/no_ts.parquet"],
            ["event_timestamp"],
        ),
        (
            "spine with null keys",
            [*spine, "{root}/out/s2", "--spine", "{root}/spines/null_keys.parquet"],
            ["customer_id", "null"],
        ),
        (
            "spine key of the wrong type",
            [*spine, "{root}/out/s3", "--spine", "{root}/spines/string_keys.parquet"],
            ["customer_id"],
        ),
        (
            "materialize with redis down",
            ["materialize", "merchant_txn", "--ds", str(START + timedelta(days=2))],
            ["Redis at redis://127.0.0.1:1/0"],
        ),
    ]


def _conf_with(ws: Workspace, data_root: Path) -> Path:
    conf = data_root.parent / f"{data_root.name}.yaml"
    conf.write_text(ws.conf.read_text().replace(f"data_root: {ws.root / 'data'}", f"data_root: {data_root}"))
    return conf


def test_bad_input_inside_spark_jobs_is_one_line_and_exit_1(
    ws: Workspace, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SKEWLESS_REDIS_URL", "redis://127.0.0.1:1/0")
    offline = sorted(str(p.relative_to(ws.root)) for p in (ws.root / "offline").rglob("*") if p.is_file())
    cases = _in_spark_cases(ws)
    assert len(BEFORE_SPARK) + len(cases) >= 40
    for case, args, words in cases:
        code = main(_argv(ws, args))
        err = capsys.readouterr().err
        assert code == 1, (case, err)
        lines = [line for line in err.splitlines() if line.startswith("error: ")]
        assert len(lines) == 1, (case, err)
        assert "Traceback" not in err, case
        for word in words:
            assert word in lines[0], (case, word, lines[0])
    # Nothing was committed by any failed job: the offline store holds exactly what it held.
    after = sorted(str(p.relative_to(ws.root)) for p in (ws.root / "offline").rglob("*") if p.is_file())
    assert [p for p in after if "_staging" not in p] == [p for p in offline if "_staging" not in p]
