"""Strict, frozen models of the YAML document kinds: entity, source, view, on_demand, service.

These check what one document can check on its own (shapes, names, durations, required fields);
cross-object rules live in :mod:`skewless.compile`.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    StringConstraints,
    field_validator,
    model_validator,
)

NAME_PATTERN = r"^[a-z][a-z0-9_]*$"
Name = Annotated[
    str,
    StringConstraints(pattern=NAME_PATTERN, max_length=64),
]
"""Lower-case identifier; used in table paths, Redis keys and column names."""

KeyType = Literal["string", "int64"]
DType = Literal[
    "int64",
    "int32",
    "float64",
    "float32",
    "string",
    "bool",
    "timestamp",
    "date",
    "array<float32>",
    "array<float64>",
    "array<int64>",
    "array<string>",
]
"""Feature dtypes: the table is skewless.semantics.DTYPES (docs/semantics.md, Types)."""
ColumnType = DType
"""Types a source may declare for its columns: the same as features'."""
NUMERIC_DTYPES: frozenset[str] = frozenset({"int64", "int32", "float64", "float32"})

_DURATION = re.compile(r"^([0-9]+)([mhd])$")
_UNIT_SECONDS = {"m": 60, "h": 3600, "d": 86400}


def parse_duration(value: object) -> timedelta:
    """``'7d'`` -> 7 days. Units: m (minutes), h (hours), d (days)."""
    if isinstance(value, timedelta):
        return value
    if not isinstance(value, str) or not (match := _DURATION.match(value.strip())):
        raise ValueError(f"expected a duration like '7d', '12h' or '30m', got {value!r}")
    amount, unit = match.groups()
    try:
        return timedelta(seconds=int(amount) * _UNIT_SECONDS[unit])
    except OverflowError:
        raise ValueError(f"duration {value!r} is too large") from None


def format_duration(value: timedelta) -> str:
    seconds = int(value.total_seconds())
    for unit in ("d", "h", "m"):
        if seconds % _UNIT_SECONDS[unit] == 0:
            return f"{seconds // _UNIT_SECONDS[unit]}{unit}"
    return f"{seconds}s"  # pragma: no cover - parse_duration only builds whole minutes


Duration = Annotated[
    timedelta, BeforeValidator(parse_duration), PlainSerializer(format_duration, return_type=str)
]


def _description(value: str) -> str:
    text = value.strip()
    if not text:
        raise ValueError("must not be blank (leave the field out instead)")
    return text


OWNER_PATTERN = re.compile(r"[a-z0-9][a-z0-9._+-]*@[a-z0-9-]+(\.[a-z0-9-]+)+|[a-z][a-z0-9_-]*")
TAG_PATTERN = re.compile(r"[a-z][a-z0-9_-]*")


def _owner(value: str) -> str:
    if len(value) > 100 or not OWNER_PATTERN.fullmatch(value):
        raise ValueError(
            "expected a team name (lower-case letters, digits, '-' or '_', e.g. 'fraud-ml') or a"
            f" lower-case e-mail address, got {value!r}"
        )
    return value


def _tag(value: str) -> str:
    if len(value) > 40 or not TAG_PATTERN.fullmatch(value):
        raise ValueError(
            "expected a lower-case tag (a letter, then letters, digits, '-' or '_'; at most 40"
            f" characters), got {value!r}"
        )
    return value


def _tag_list(value: object) -> object:
    if isinstance(value, str):
        raise ValueError(f"expected a list of tags, e.g. [{value}], got a string")
    return value


def _distinct(values: tuple[str, ...]) -> tuple[str, ...]:
    seen: set[str] = set()
    for value in values:
        if value in seen:
            raise ValueError(f"tag {value!r} is listed twice")
        seen.add(value)
    return values


Description = Annotated[str, AfterValidator(_description)]
"""Free text for the catalog (docs/catalog.md); not part of any feature's meaning."""
Owner = Annotated[str, AfterValidator(_owner)]
"""A team name such as ``fraud-ml`` or an e-mail address; features inherit their view's."""
Tags = Annotated[
    tuple[Annotated[str, AfterValidator(_tag)], ...], BeforeValidator(_tag_list), AfterValidator(_distinct)
]
"""Lower-case labels for search in the catalog, each listed once."""


class Spec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=False)


class Entity(Spec):
    name: Name
    join_keys: dict[Name, KeyType] = Field(min_length=1)
    description: Description | None = None
    owner: Owner | None = None
    tags: Tags = ()


class Source(Spec):
    name: Name
    path: str = Field(min_length=1)
    format: Literal["parquet", "delta"]
    timestamp: str = Field(min_length=1)
    timestamp_format: str | None = None
    """Spark datetime pattern when the timestamp column is a string (read as UTC)."""
    created_timestamp: str | None = None
    partition_column: str | None = None
    """A column holding the event's UTC date (``yyyy-MM-dd``) that the source is partitioned by."""
    columns: dict[str, ColumnType] | None = None
    """Declared column types; enables compile-time type checks of aggregation functions."""
    description: Description | None = None
    owner: Owner | None = None
    tags: Tags = ()


AggFunction = Literal[
    "count",
    "sum",
    "avg",
    "min",
    "max",
    "stddev",
    "last",
    "approx_count_distinct",
    "approx_percentile",
    "last_k",
    "first_seen",
    "last_seen",
    "top_k",
    "top_k_counts",
]
NEEDS_COLUMN: frozenset[str] = frozenset(
    {
        "sum",
        "avg",
        "min",
        "max",
        "stddev",
        "last",
        "approx_count_distinct",
        "approx_percentile",
        "last_k",
        "top_k",
        "top_k_counts",
    }
)
NEEDS_NUMERIC: frozenset[str] = frozenset({"sum", "avg", "min", "max", "stddev", "last", "approx_percentile"})
NEEDS_K: frozenset[str] = frozenset({"last_k", "top_k", "top_k_counts"})
"""Functions that take ``k`` (docs/feature-definitions.md)."""


class AggregationFeature(Spec):
    name: Name
    function: AggFunction
    column: str | None = None
    window: Duration
    dtype: DType | None = None
    k: int | None = None
    """last_k, top_k, top_k_counts: how many values (checked by the compiler)."""
    percentile: float | tuple[float, ...] | None = None
    """approx_percentile: one level in [0, 1] (a float64 feature) or a list (array<float64>)."""
    description: Description | None = None
    owner: Owner | None = None
    tags: Tags = ()


class SnapshotFeature(Spec):
    name: Name
    dtype: DType
    column: str | None = None
    """Source column holding the value; defaults to ``name``."""
    length: int | None = None
    """Array features: the declared length every non-null value must have (e.g. an embedding)."""
    description: Description | None = None
    owner: Owner | None = None
    tags: Tags = ()


class Expectation(Spec):
    feature: Name
    between: tuple[float | None, float | None] | None = None
    not_null: bool | None = None
    max_null_fraction: float | None = Field(default=None, ge=0, le=1)

    @field_validator("between")
    @classmethod
    def _ordered_bounds(cls, value: tuple[float | None, float | None] | None) -> object:
        if value is None:
            return value
        low, high = value
        if low is None and high is None:
            raise ValueError("give at least one bound, e.g. [0, null]")
        if low is not None and high is not None and low > high:
            raise ValueError(f"the lower bound {low:g} is above the upper bound {high:g}")
        return value

    @model_validator(mode="after")
    def _exactly_one_check(self) -> Expectation:
        given = [k for k in ("between", "not_null", "max_null_fraction") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of between, not_null, max_null_fraction"
                + (f" (got {', '.join(given)})" if given else "")
            )
        return self


class _ViewBase(Spec):
    name: Name
    version: int = Field(ge=1)
    entity: Name
    source: Name
    filter: str | None = None
    ttl: Duration
    availability_lag: Duration = timedelta(0)
    expectations: tuple[Expectation, ...] = ()
    freshness: Duration | None = None
    """SLA: now minus the latest committed (offline) or materialized (online) boundary must not exceed it."""
    description: Description | None = None
    owner: Owner | None = None
    tags: Tags = ()


class AggregationView(_ViewBase):
    kind: Literal["aggregation"]
    features: tuple[AggregationFeature, ...] = Field(min_length=1)


class SnapshotView(_ViewBase):
    kind: Literal["snapshot"]
    features: tuple[SnapshotFeature, ...] = Field(min_length=1)


View = AggregationView | SnapshotView
VIEW_KINDS: dict[str, type[AggregationView] | type[SnapshotView]] = {
    "aggregation": AggregationView,
    "snapshot": SnapshotView,
}


def _feature_ref(value: object) -> object:
    """Explain the usual slip ``- view: feature`` (a space after the colon makes a mapping)."""
    if isinstance(value, dict) and len(value) == 1:
        ((view, feature),) = value.items()
        raise ValueError(
            f"expected 'view:feature' as one string, got a mapping; write '{view}:{feature}'"
            " (no space after the colon)"
        )
    return value


FeatureRefText = Annotated[str, BeforeValidator(_feature_ref)]


class Service(Spec):
    name: Name
    features: tuple[FeatureRefText, ...] = Field(min_length=1)
    """``view:feature`` references."""
    description: Description | None = None
    owner: Owner | None = None
    tags: Tags = ()


REQUEST_TS = "request_ts"
"""Reserved request field of on-demand views: the spine's timestamp offline, the request time online."""
FUNCTION_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$"


class OnDemandFeature(Spec):
    name: Name
    dtype: DType
    description: Description | None = None
    owner: Owner | None = None
    tags: Tags = ()


class OnDemand(Spec):
    """Request-time features: ``module:function`` over request fields and stored features."""

    name: Name
    version: int = Field(ge=1)
    function: Annotated[str, StringConstraints(pattern=FUNCTION_PATTERN)]
    """``module:function``; the module is looked up beside the YAML file, then under feature_defs/,
    then among installed packages."""
    request: dict[Name, ColumnType] = Field(default_factory=dict)
    inputs: tuple[FeatureRefText, ...] = ()
    features: tuple[OnDemandFeature, ...] = Field(min_length=1)
    description: Description | None = None
    owner: Owner | None = None
    tags: Tags = ()


SpecObject = Entity | Source | AggregationView | SnapshotView | Service | OnDemand
KINDS: dict[str, type[Entity] | type[Source] | type[Service] | type[OnDemand]] = {
    "entity": Entity,
    "source": Source,
    "service": Service,
    "on_demand": OnDemand,
}
DOCUMENT_KEYS = ("entity", "source", "view", "on_demand", "service")
