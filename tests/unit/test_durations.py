"""Durations in feature definitions: ``<int><unit>`` with unit m, h or d."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from skewless.spec.models import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("7d", timedelta(days=7)),
        ("1d", timedelta(days=1)),
        ("36h", timedelta(hours=36)),
        ("0h", timedelta(0)),
        ("30m", timedelta(minutes=30)),
        ("90m", timedelta(minutes=90)),
        ("365d", timedelta(days=365)),
        (" 2d ", timedelta(days=2)),
    ],
)
def test_parse(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


def test_parse_passes_timedeltas_through() -> None:
    assert parse_duration(timedelta(hours=3)) == timedelta(hours=3)


@pytest.mark.parametrize(
    "value",
    ["7 days", "7", 7, "1w", "1.5d", "-1d", "d", "", "7D", "7dd", "1d2h", "7s", "٧d", None, 7.0, ["7d"]],
)
def test_parse_rejects(value: object) -> None:
    with pytest.raises(ValueError, match="expected a duration like '7d'") as caught:
        parse_duration(value)
    assert repr(value) in str(caught.value)


def test_parse_rejects_durations_too_large_for_a_timedelta() -> None:
    with pytest.raises(ValueError, match="too large"):
        parse_duration("99999999999999d")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (timedelta(days=7), "7d"),
        (timedelta(hours=48), "2d"),
        (timedelta(hours=36), "36h"),
        (timedelta(minutes=90), "90m"),
        (timedelta(minutes=120), "2h"),
        (timedelta(0), "0d"),
    ],
)
def test_format_uses_the_largest_whole_unit(value: timedelta, expected: str) -> None:
    assert format_duration(value) == expected


@given(amount=st.integers(min_value=0, max_value=10**6), unit=st.sampled_from("mhd"))
def test_format_and_parse_round_trip(amount: int, unit: str) -> None:
    value = parse_duration(f"{amount}{unit}")
    text = format_duration(value)
    assert parse_duration(text) == value
    # The canonical text has no smaller unit than needed: its number is not divisible further.
    number, canonical_unit = int(text[:-1]), text[-1]
    bigger = {"m": 60, "h": 24}.get(canonical_unit)
    assert number == 0 or bigger is None or number % bigger != 0
