"""KLL quantile sketches merged and read in this process (pure: no Spark).

Spark's ``kll_sketch_agg_double`` writes Apache DataSketches' ``KllDoublesSketch`` binary format,
which DataSketches' Python binding (the same C++ library family) reads bit for bit: Spark builds
each day's sketch over the rows (:func:`skewless.validate.stats.summarize`), and drift merges the
stored sketches and reads their quantiles and ranks here, in milliseconds, instead of in Spark
jobs over a few dozen rows (docs/validation.md, "Statistics").

Ranks and quantiles use DataSketches' inclusive criterion, as Spark's ``kll_sketch_get_*`` do:
the rank of ``v`` is the fraction of values ``<= v``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any


def merged(sketches: Iterable[bytes], k: int) -> Any:
    """One sketch (accuracy parameter ``k``) of the union of the serialized ``sketches``."""
    from datasketches import kll_doubles_sketch

    union = kll_doubles_sketch(k)
    for sketch in sketches:
        union.merge(kll_doubles_sketch.deserialize(sketch))
    return union


def read(sketch: bytes) -> Any:
    from datasketches import kll_doubles_sketch

    return kll_doubles_sketch.deserialize(sketch)


def quantiles(sketch: Any, levels: Sequence[float]) -> list[float]:
    """The values at normalized ranks ``levels`` (none for an empty sketch)."""
    if sketch.is_empty():
        return []
    return [float(sketch.get_quantile(level, True)) for level in levels]


def ranks(sketch: Any, values: Sequence[float]) -> list[float]:
    """The inclusive normalized rank (fraction of values ``<= v``) of each of ``values``."""
    return [float(sketch.get_rank(value, True)) for value in values]
