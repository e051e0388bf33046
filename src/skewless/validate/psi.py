"""Population stability index (PSI): the drift measure of :mod:`skewless.validate.stats` (pure).

Both distributions are binned with the *same* edges, taken at the reference window's quantiles:
a value ``v`` falls in bin ``i`` = the number of edges strictly below ``v``, so with edges
``e1 < ... < ek`` the bins are ``(-inf, e1], (e1, e2], ..., (ek, +inf)``. :func:`bin_index` is
the plain-Python reading; Spark counts from quantile sketches instead of rows: the inclusive rank
of a sketch at ``ei`` is the fraction of values ``<= ei``, and :func:`counts_from_ranks` turns
those ranks into the same bin counts (exact while a sketch holds every value, within the
tolerance of docs/validation.md once it compacts).

``PSI = sum_i (a_i - r_i) * ln(a_i / r_i)`` over bin proportions ``a`` (new partition) and ``r``
(reference), each floored at ``epsilon`` so that an empty bin does not make it infinite. Common
reading: below 0.1 stable, 0.1-0.25 moderate shift, above 0.25 major shift.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from typing import Literal

EPSILON = 1e-4

DriftStatus = Literal["ok", "warn", "fail", "no_reference", "no_values", "too_few_values"]


def quantile_levels(bins: int) -> list[float]:
    """The quantile levels whose values become the edges of ``bins`` bins (e.g. deciles for 10)."""
    if bins < 2:
        raise ValueError("at least 2 bins")
    return [round(i / bins, 10) for i in range(1, bins)]


def bin_edges(quantiles: Iterable[float | None]) -> list[float]:
    """Sorted distinct finite edges (repeated quantiles of a discrete feature collapse)."""
    return sorted({float(q) for q in quantiles if q is not None and math.isfinite(q)})


def bin_index(value: float, edges: Sequence[float]) -> int:
    return sum(1 for edge in edges if edge < value)


def histogram(values: Iterable[float | None], edges: Sequence[float]) -> list[int]:
    """Counts per bin of the non-null values (``len(edges) + 1`` bins)."""
    counts = [0] * (len(edges) + 1)
    for value in values:
        if value is not None and not (isinstance(value, float) and math.isnan(value)):
            counts[bin_index(value, edges)] += 1
    return counts


def counts_from_ranks(ranks: Sequence[float], total: int) -> list[int]:
    """Counts per bin of ``total`` values from their inclusive ranks at the sorted edges.

    ``ranks[i]`` is the fraction of values ``<= edges[i]``; bin ``i`` holds the values between
    edge ``i - 1`` (exclusive) and edge ``i`` (inclusive), so ``len(ranks) + 1`` bins.
    """
    cumulative = [0, *(min(max(round(r * total), 0), total) for r in ranks), total]
    return [max(high - low, 0) for low, high in itertools.pairwise(cumulative)]


def psi(reference: Sequence[int], actual: Sequence[int], epsilon: float = EPSILON) -> float | None:
    """PSI of ``actual`` against ``reference`` (counts per shared bin); None when either is empty."""
    if len(reference) != len(actual):
        raise ValueError("reference and actual need the same bins")
    ref_total, act_total = sum(reference), sum(actual)
    if ref_total == 0 or act_total == 0:
        return None
    total = 0.0
    for ref_count, act_count in zip(reference, actual, strict=True):
        r = max(ref_count / ref_total, epsilon)
        a = max(act_count / act_total, epsilon)
        total += (a - r) * math.log(a / r)
    return total


def classify(value: float | None, warn: float | None, fail: float | None) -> DriftStatus:
    """``fail`` at or above ``fail``, ``warn`` at or above ``warn``, else ``ok`` (None thresholds: off)."""
    if value is None:
        return "no_reference"
    if fail is not None and value >= fail:
        return "fail"
    if warn is not None and value >= warn:
        return "warn"
    return "ok"
