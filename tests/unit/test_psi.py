"""PSI math and binning (the plain-Python reading of what Spark computes in validate.stats)."""

from __future__ import annotations

import math

import pytest

from skewless.validate.psi import (
    bin_edges,
    bin_index,
    classify,
    counts_from_ranks,
    histogram,
    psi,
    quantile_levels,
)


def test_identical_distributions_have_zero_psi() -> None:
    assert psi([10, 20, 30], [1, 2, 3]) == pytest.approx(0.0, abs=1e-12)


def test_psi_by_hand() -> None:
    # (0.9 - 0.5) ln(0.9/0.5) + (0.1 - 0.5) ln(0.1/0.5)
    expected = 0.4 * math.log(1.8) + 0.4 * math.log(5)
    assert psi([50, 50], [90, 10]) == pytest.approx(expected)
    assert psi([50, 50], [90, 10]) == pytest.approx(psi([90, 10], [50, 50]))  # symmetric
    assert expected == pytest.approx(0.8789, abs=1e-4)


def test_empty_bins_are_floored_not_infinite() -> None:
    value = psi([100, 0], [0, 100])
    assert value is not None
    assert math.isfinite(value)
    assert value == pytest.approx(2 * (1 - 1e-4) * math.log(1 / 1e-4))


def test_empty_sides_have_no_psi_and_bins_must_match() -> None:
    assert psi([0, 0], [1, 2]) is None
    assert psi([1, 2], [0, 0]) is None
    with pytest.raises(ValueError, match="same bins"):
        psi([1, 2], [1, 2, 3])


def test_bins_are_left_open_right_closed_at_shared_edges() -> None:
    edges = bin_edges([3.0, 1.0, 1.0, None, float("inf"), 2.0])
    assert edges == [1.0, 2.0, 3.0]
    assert [bin_index(v, edges) for v in (0.5, 1.0, 1.5, 2.0, 3.0, 9.0)] == [0, 0, 1, 1, 2, 3]
    assert histogram([0.5, 1.0, None, float("nan"), 9.0], edges) == [2, 0, 0, 1]


def test_bin_counts_from_inclusive_ranks_at_the_edges() -> None:
    values = [0.5, 1.0, 1.0, 2.0, 9.0]
    edges = [1.0, 2.0, 3.0]
    ranks = [sum(v <= e for v in values) / len(values) for e in edges]  # what a sketch answers
    assert counts_from_ranks(ranks, len(values)) == histogram(values, edges) == [3, 1, 0, 1]
    assert counts_from_ranks([], 4) == [4]
    # Approximate ranks round to whole values and never give a negative bin.
    assert counts_from_ranks([0.3334, 0.3333, 1.0000001], 3) == [1, 0, 2, 0]


def test_quantile_levels_and_classification() -> None:
    assert quantile_levels(4) == [0.25, 0.5, 0.75]
    assert len(quantile_levels(10)) == 9
    with pytest.raises(ValueError, match="2 bins"):
        quantile_levels(1)
    assert classify(None, 0.1, 0.2) == "no_reference"
    assert classify(0.05, 0.1, 0.2) == "ok"
    assert classify(0.1, 0.1, 0.2) == "warn"
    assert classify(0.3, 0.1, 0.2) == "fail"
    assert classify(5.0, None, None) == "ok"
