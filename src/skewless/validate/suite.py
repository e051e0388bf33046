"""The checks a view's partition must pass before it is published (pure: no Spark, no GE).

:func:`build_checks` turns a view into a list of :class:`Check`: the view's declared
``expectations`` plus defaults every partition must satisfy:

* each join key is not null;
* one row per ``(keys, ds)`` (aggregation views) or per ``(keys, feature_ts, created_ts)``
  (snapshot views);
* ``feature_ts`` agrees with ``ds``: ``feature_ts == ds + 1 day + availability_lag``
  (:func:`skewless.semantics.feature_ts`) for aggregation views, ``to_date(feature_ts) == ds``
  for snapshot views;
* an array feature with a declared ``length`` (an embedding) has exactly that many elements in
  every non-null value (a ``between`` check on the helper column :func:`length_column`).

**Tombstones.** An aggregation view writes a tombstone row (every feature null) on the day an
entity drops out of its longest window; it is how the store says "no value" (docs/semantics.md,
"Aggregation views"; :func:`skewless.semantics.is_tombstone`). Value
expectations (``between``, ``not_null``, ``max_null_fraction``) of aggregation views are
therefore evaluated on the rows that have a value (at least one feature non-null): a tombstone
never fails ``not_null``, and it does not count towards ``max_null_fraction``. The structural
defaults above apply to every row, tombstones included. Snapshot views have no tombstones: their
value expectations see every row.

The validated frame carries helper columns (:data:`HAS_VALUE`, :data:`EXPECTED_FEATURE_TS` or
:data:`FEATURE_DATE`) added by :func:`skewless.validate.gate.prepare_rows`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from skewless import semantics
from skewless.errors import SkewlessError
from skewless.manifest import ViewSpec

HAS_VALUE = "_skewless_has_value"
"""True when at least one feature of the row is non-null (False on a tombstone row)."""
EXPECTED_FEATURE_TS = "_skewless_expected_feature_ts"
"""Aggregation views: ``ds + 1 day + availability_lag`` as a timestamp."""
FEATURE_DATE = "_skewless_feature_date"
"""Snapshot views: the UTC date of ``feature_ts``."""


def length_column(feature: str) -> str:
    """Helper column holding the number of elements of an array feature (null for a null array)."""
    return f"_skewless_length_{feature}"


NUMERIC_DTYPES = semantics.NUMERIC_DTYPES
"""Kept here for its importers (validate/stats.py); the table is skewless.semantics.DTYPES."""

CheckKind = Literal["not_null", "max_null_fraction", "between", "unique", "columns_equal"]


@dataclass(frozen=True)
class Check:
    """One expectation on a partition's rows, independent of how it is evaluated."""

    kind: CheckKind
    columns: tuple[str, ...]
    origin: str
    """``default`` or ``expectations[i]`` (the view's declared expectation it comes from)."""
    values_only: bool = False
    """Evaluated on rows with a value only (tombstones excluded)."""
    min_value: float | None = None
    max_value: float | None = None
    max_null_fraction: float | None = None
    labels: tuple[str, ...] = field(default=())
    """Readable names for ``columns`` (``columns_equal`` compares with a helper column)."""

    @property
    def column(self) -> str:
        return self.columns[0]

    @property
    def name(self) -> str:
        """A short readable name, e.g. ``between(amount_avg_7d, 0..100000)``."""
        shown = ", ".join(self.labels or self.columns)
        if self.kind == "between":
            low = "" if self.min_value is None else f"{self.min_value:g}"
            high = "" if self.max_value is None else f"{self.max_value:g}"
            return f"between({shown}, {low}..{high})"
        if self.kind == "max_null_fraction":
            return f"max_null_fraction({shown}, {self.max_null_fraction:g})"
        if self.kind == "columns_equal":
            return f"equal({shown})"
        return f"{self.kind}({shown})"

    @property
    def scope(self) -> str:
        return "rows with a value (tombstones excluded)" if self.values_only else "all rows"

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "columns": list(self.columns),
            "origin": self.origin,
            "scope": self.scope,
            "min_value": self.min_value,
            "max_value": self.max_value,
            "max_null_fraction": self.max_null_fraction,
        }


def build_checks(view: ViewSpec) -> list[Check]:
    """Defaults first (keys, uniqueness, feature_ts), then the declared expectations in order."""
    checks = [Check("not_null", (key,), "default") for key in view.key_names]
    if view.kind == "aggregation":
        checks.append(Check("unique", (*view.key_names, "ds"), "default"))
        checks.append(
            Check(
                "columns_equal",
                ("feature_ts", EXPECTED_FEATURE_TS),
                "default",
                labels=("feature_ts", f"ds + 1 day + {view.availability_lag_seconds}s"),
            )
        )
    else:
        checks.append(Check("unique", (*view.key_names, "feature_ts", "created_ts"), "default"))
        checks.append(
            Check("columns_equal", (FEATURE_DATE, "ds"), "default", labels=("to_date(feature_ts)", "ds"))
        )

    for feature in view.features:
        if feature.length is not None:
            checks.append(
                Check(
                    "between",
                    (length_column(feature.name),),
                    "default",
                    min_value=feature.length,
                    max_value=feature.length,
                    labels=(f"length({feature.name})",),
                )
            )

    values_only = view.kind == "aggregation"
    for index, expectation in enumerate(view.expectations):
        origin = f"expectations[{index}]"
        feature = view.feature(expectation.feature)
        if expectation.between is not None:
            low, high = expectation.between
            if low is None and high is None:
                continue  # [null, null] bounds nothing
            if feature.dtype not in NUMERIC_DTYPES:
                raise SkewlessError(
                    f"view {view.name!r}: {origin}: between needs a numeric feature, "
                    f"{feature.name!r} is {feature.dtype}"
                )
            checks.append(
                Check(
                    "between",
                    (feature.name,),
                    origin,
                    values_only=values_only,
                    min_value=low,
                    max_value=high,
                )
            )
        elif expectation.not_null:
            checks.append(Check("not_null", (feature.name,), origin, values_only=values_only))
        elif expectation.max_null_fraction is not None:
            checks.append(
                Check(
                    "max_null_fraction",
                    (feature.name,),
                    origin,
                    values_only=values_only,
                    max_null_fraction=expectation.max_null_fraction,
                )
            )
    return checks
