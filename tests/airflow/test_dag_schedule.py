"""The nightly DAGs' start dates come from the registry, so parsing on any day builds the same DAGs.

The clock is frozen by replacing ``datetime`` in every loaded ``skewless`` module with a class
whose ``now()`` is a fixed day: whichever skewless code reads the time, it reads that day.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, tzinfo
from pathlib import Path
from typing import Any

import pytest

import skewless.dag_factory
import skewless.registry
from skewless.cli import main
from skewless.storage import write_text
from tests.airflow.common import TREE
from tests.airflow.conftest import DAGS
from tests.helpers import write_tree

pytestmark = pytest.mark.airflow

SKEWLESS_CLOCK_READERS = (skewless.dag_factory, skewless.registry)  # loaded before any clock is frozen

ADDED_VIEW = """\
---
view:
  name: refunds
  version: 1
  kind: aggregation
  entity: account
  source: payments
  ttl: 30d
  features:
    - {name: n_7d, function: count, window: 7d}
"""


@contextmanager
def frozen(day: date) -> Iterator[None]:
    """Every loaded skewless module sees ``datetime.now()`` at noon UTC on ``day``."""

    class FrozenDatetime(datetime):
        @classmethod
        def now(cls, tz: tzinfo | None = None) -> FrozenDatetime:
            moment = cls(day.year, day.month, day.day, 12, tzinfo=UTC)
            return moment.astimezone(tz) if tz else moment.replace(tzinfo=None)

    with pytest.MonkeyPatch.context() as patch:
        for module in list(sys.modules.values()):
            if (
                getattr(module, "__name__", "").startswith("skewless")
                and vars(module).get("datetime") is datetime
            ):
                patch.setattr(module, "datetime", FrozenDatetime)
        yield


def _workspace(tmp_path: Path, extra_conf: str = "") -> tuple[Path, Path]:
    defs = write_tree(tmp_path / "defs", TREE)
    conf = tmp_path / "skewless.yaml"
    conf.write_text(
        f"defs: {defs}\ndata_root: {tmp_path / 'data'}\noffline_root: {tmp_path / 'offline'}\n" + extra_conf
    )
    return conf, defs


def _parse(conf: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, tuple[Any, ...]]:
    """Each DAG of the DAG folder as (start date, schedule, catchup, max active runs)."""
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.setenv("SKEWLESS_CONF", str(conf))
    bag = DagBag(dag_folder=str(DAGS))
    assert bag.import_errors == {}
    return {
        dag_id: (dag.start_date, _schedule(dag.timetable), dag.catchup, dag.max_active_runs)
        for dag_id, dag in sorted(bag.dags.items())
    }


def _schedule(timetable: Any) -> tuple[str, str | None, str | None]:
    expression, zone = getattr(timetable, "expression", None), getattr(timetable, "timezone", None)
    return type(timetable).__name__, expression, None if zone is None else str(zone)


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def test_parsing_on_two_different_days_builds_identical_dags(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conf, defs = _workspace(tmp_path)
    with frozen(date(2024, 3, 10)):
        assert main(["--conf", str(conf), "apply"]) == 0

    with frozen(date(2024, 5, 1)):
        in_may = _parse(conf, monkeypatch)
    with frozen(date(2024, 9, 15)):
        in_september = _parse(conf, monkeypatch)
    assert in_may == in_september
    assert sorted(in_may) == ["skewless__backfill", "skewless__scores", "skewless__spend"]
    for dag_id in ("skewless__scores", "skewless__spend", "skewless__backfill"):
        assert in_may[dag_id][0] == _midnight(date(2024, 3, 9)), dag_id  # yesterday at the first apply
    nightly = ("CronDataIntervalTimetable", "0 0 * * *", "UTC")
    assert in_may["skewless__spend"][1:] == in_may["skewless__scores"][1:] == (nightly, True, 1)

    # a later apply adds a view: it starts the day before that apply, the others keep their start
    (defs / "defs.yaml").write_text((defs / "defs.yaml").read_text() + ADDED_VIEW)
    with frozen(date(2024, 6, 1)):
        assert main(["--conf", str(conf), "apply"]) == 0
    with frozen(date(2024, 9, 15)):
        after = _parse(conf, monkeypatch)
    assert after["skewless__spend"] == in_may["skewless__spend"]
    assert after["skewless__scores"] == in_may["skewless__scores"]
    assert after["skewless__refunds"][0] == _midnight(date(2024, 5, 31))
    assert after["skewless__backfill"][0] == _midnight(date(2024, 3, 9))


def test_configured_start_date_overrides_the_recorded_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conf, _ = _workspace(tmp_path, "airflow:\n  start_date: 2023-01-01\n")
    with frozen(date(2024, 3, 10)):
        assert main(["--conf", str(conf), "apply"]) == 0
        parsed = _parse(conf, monkeypatch)
    assert {start for start, *_ in parsed.values()} == {_midnight(date(2023, 1, 1))}


def test_a_registry_without_start_dates_falls_back_to_yesterday_with_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from skewless.compile import compile_tree
    from skewless.dag_factory import build_dags
    from skewless.runtime.settings import load_settings

    conf, defs = _workspace(tmp_path)
    settings = load_settings(conf)
    write_text(settings.registry_uri, compile_tree(defs).to_json())  # published before start dates
    with frozen(date(2024, 5, 1)), caplog.at_level(logging.WARNING, logger="skewless.dag_factory"):
        dags = build_dags(settings)
    assert dags["skewless__spend"].start_date == _midnight(date(2024, 4, 30))
    assert "view spend has no schedule start date in the registry" in caplog.text

    # `apply` without changes records the missing dates; from then on the start stays put
    with frozen(date(2024, 5, 2)):
        assert main(["--conf", str(conf), "apply"]) == 0
    with frozen(date(2024, 9, 15)):
        assert build_dags(load_settings(conf))["skewless__spend"].start_date == _midnight(date(2024, 5, 1))
