"""Stage 2 of compilation: validated spec objects -> a resolved :class:`Manifest`.

Pure: no I/O beyond what :func:`compile_tree` delegates to the loader. Every cross-object
problem is collected, with the file:line of the object that has it, and reported together with
the loader's problems.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from skewless import semantics
from skewless.errors import SpecError, SpecProblem
from skewless.manifest import (
    RESERVED_COLUMNS,
    EntitySpec,
    ExpectationSpec,
    FeatureRef,
    FeatureSpec,
    JoinKey,
    Manifest,
    OnDemandInput,
    OnDemandSpec,
    RequestField,
    ServiceSpec,
    SourceSpec,
    ViewSpec,
    sha256_of,
)
from skewless.spec.functions import FunctionSource, find_function
from skewless.spec.loader import Located, duplicate_name_problem, load_tree
from skewless.spec.models import (
    NEEDS_COLUMN,
    NEEDS_K,
    NEEDS_NUMERIC,
    NUMERIC_DTYPES,
    REQUEST_TS,
    AggregationFeature,
    AggregationView,
    Entity,
    OnDemand,
    OnDemandFeature,
    Service,
    SnapshotFeature,
    SnapshotView,
    Source,
)

ONE_DAY = timedelta(days=1)


@dataclass(frozen=True)
class SourceColumns:
    """Column types of a source read from its own files (Parquet footers, Delta log).

    ``columns`` is None when the source could not be read (``problem`` says why): compilation then
    needs types declared under the source's ``columns:``, as in a pull-request check without data.
    """

    columns: Mapping[str, str] | None
    origin: str
    """Where the types were read, for messages (e.g. ``read from data/raw/transactions``)."""
    problem: str | None = None


SourceColumnReader = Callable[[Source], SourceColumns]


def compile_tree(defs: Path, read_columns: SourceColumnReader | None = None) -> Manifest:
    """Load, validate and resolve every definition under ``defs``.

    ``read_columns`` reads a source's column types when its YAML declares none (I/O stays with
    the caller; compilation itself is pure). Raises :class:`SpecError` with every problem.
    """
    tree = load_tree(defs)
    known: dict[str, SourceColumns] = {}
    if read_columns is not None:
        for item in tree.objects:
            if isinstance(item.obj, Source) and item.obj.columns is None:
                known[item.obj.name] = read_columns(item.obj)
    functions = {
        item.obj.name: find_function(item.obj.function, Path(item.document.file), defs)
        for item in tree.objects
        if isinstance(item.obj, OnDemand)
    }
    manifest, problems = compile_objects(
        tree.objects, unresolved=tree.unresolved, source_columns=known, function_sources=functions
    )
    all_problems = [*tree.problems, *problems]
    if all_problems or manifest is None:
        raise SpecError(all_problems)
    return manifest


def compile_objects(
    objects: Sequence[Located],
    unresolved: Iterable[tuple[str, str]] = (),
    source_columns: Mapping[str, SourceColumns] | None = None,
    function_sources: Mapping[str, FunctionSource] | None = None,
) -> tuple[Manifest | None, list[SpecProblem]]:
    """Resolve references and check cross-object rules. Returns the manifest when there is no problem.

    ``function_sources`` maps an on-demand view to its function's module (:func:`find_function`).
    """
    return _Compiler(objects, frozenset(unresolved), source_columns or {}, function_sources or {}).run()


class _Compiler:
    def __init__(
        self,
        objects: Sequence[Located],
        unresolved: frozenset[tuple[str, str]],
        source_columns: Mapping[str, SourceColumns],
        function_sources: Mapping[str, FunctionSource] | None = None,
    ) -> None:
        self.problems: list[SpecProblem] = []
        self.function_sources = function_sources or {}
        self.unresolved = unresolved
        self.read_columns = source_columns
        self.by_kind: dict[str, dict[str, Located]] = defaultdict(dict)
        for item in objects:
            name = item.obj.name
            first = self.by_kind[item.kind].get(name)
            if first is not None:  # load_tree already drops these; callers may pass any objects
                self.problems.append(duplicate_name_problem(item.kind, name, item.document, first.document))
                continue
            self.by_kind[item.kind][name] = item

    def run(self) -> tuple[Manifest | None, list[SpecProblem]]:
        entities = {
            name: self._entity(item.obj)
            for name, item in sorted(self.by_kind["entity"].items())
            if isinstance(item.obj, Entity)
        }
        sources = {
            name: self._source(item)
            for name, item in sorted(self.by_kind["source"].items())
            if isinstance(item.obj, Source)
        }
        views: dict[str, ViewSpec] = {}
        for name, item in sorted(self.by_kind["view"].items()):
            view = self._view(item, entities, sources)
            if view is not None:
                views[name] = view
        on_demand: dict[str, OnDemandSpec] = {}
        for name, item in sorted(self.by_kind["on_demand"].items()):
            spec = self._on_demand(item, views)
            if spec is not None:
                on_demand[name] = spec
        services = {
            name: self._service(item, views, on_demand)
            for name, item in sorted(self.by_kind["service"].items())
            if isinstance(item.obj, Service)
        }
        if self.problems:
            return None, self.problems
        manifest = Manifest(
            entities=entities, sources=sources, views=views, services=services, on_demand=on_demand or None
        )
        return manifest, []

    # -- helpers -------------------------------------------------------------------------------

    def _missing(self, kind: str, name: str) -> bool:
        """True when ``name`` is unknown and not merely an object already reported as broken."""
        return (kind, name) not in self.unresolved

    @staticmethod
    def _entity(entity: Entity) -> EntitySpec:
        return EntitySpec(
            name=entity.name,
            join_keys=tuple(JoinKey(name=k, dtype=t) for k, t in entity.join_keys.items()),
            **catalog_fields(entity),
        )

    def _source(self, item: Located) -> SourceSpec:
        source = item.obj
        assert isinstance(source, Source)  # narrowed by the caller; not user input
        declared = source.columns
        read = self.read_columns.get(source.name)
        known = declared if declared is not None else (read.columns if read is not None else None)
        if known is not None:
            for field in ("timestamp", "created_timestamp", "partition_column"):
                column = getattr(source, field)
                if column is None:
                    continue
                if column not in known:
                    message = (
                        f"column {column!r} is not declared under columns"
                        if declared is not None
                        else _absent_message(column, source.name, read)
                    )
                    self.problems.append(item.problem((field,), message))
                elif (
                    field != "partition_column"
                    and known[column] != "timestamp"
                    and not (known[column] == "string" and source.timestamp_format)
                ):
                    hint = "; declare timestamp_format" if known[column] == "string" else ""
                    self.problems.append(
                        item.problem((field,), f"column {column!r} is {known[column]}, not a timestamp{hint}")
                    )
        return SourceSpec(
            name=source.name,
            path=source.path,
            format=source.format,
            timestamp=source.timestamp,
            timestamp_format=source.timestamp_format,
            created_timestamp=source.created_timestamp,
            partition_column=source.partition_column,
            columns=dict(sorted(declared.items())) if declared is not None else None,
            **catalog_fields(source),
        )

    def _known_columns(self, source: SourceSpec) -> Mapping[str, str] | None:
        """Declared column types, else the ones read from the source's files (None: unknown)."""
        if source.columns is not None:
            return source.columns
        read = self.read_columns.get(source.name)
        return read.columns if read is not None else None

    def _absent(self, column: str, source: SourceSpec) -> str:
        if source.columns is not None:
            return f"column {column!r} is not declared in source {source.name!r}"
        return _absent_message(column, source.name, self.read_columns.get(source.name))

    def _view(
        self, item: Located, entities: dict[str, EntitySpec], sources: dict[str, SourceSpec]
    ) -> ViewSpec | None:
        view = item.obj
        assert isinstance(view, (AggregationView, SnapshotView))  # narrowed by the caller
        before = len(self.problems)
        entity = entities.get(view.entity)
        if entity is None and self._missing("entity", view.entity):
            self.problems.append(item.problem(("entity",), f"unknown entity {view.entity!r}"))
        source = sources.get(view.source)
        if source is None and self._missing("source", view.source):
            self.problems.append(item.problem(("source",), f"unknown source {view.source!r}"))

        if view.ttl <= timedelta(0):
            self.problems.append(item.problem(("ttl",), "must be positive"))
        elif isinstance(view, AggregationView) and view.ttl < ONE_DAY + view.availability_lag:
            self.problems.append(
                item.problem(
                    ("ttl",),
                    "an aggregation view's ttl must be at least 1d plus its availability_lag"
                    " (otherwise a value expires before the next nightly run replaces it)",
                )
            )
        self._check_freshness(item, view)
        if isinstance(view, SnapshotView) and view.availability_lag:
            self.problems.append(
                item.problem(
                    ("availability_lag",),
                    "applies to aggregation views only (a snapshot row is available at its event timestamp)",
                )
            )

        view_keys = entity.join_keys if entity else ()
        key_names = {k.name for k in view_keys}
        view_features: tuple[AggregationFeature | SnapshotFeature, ...] = view.features
        seen: dict[str, int] = {}
        for index, feature in enumerate(view_features):
            path = ("features", index, "name")
            if feature.name in seen:
                self.problems.append(
                    item.problem(path, f"duplicate feature name (also features[{seen[feature.name]}])")
                )
            seen.setdefault(feature.name, index)
            if feature.name in RESERVED_COLUMNS:
                self.problems.append(
                    item.problem(
                        path,
                        f"{feature.name!r} is a reserved column name"
                        f" ({', '.join(sorted(RESERVED_COLUMNS))} are added by skewless)",
                    )
                )
            elif feature.name in key_names:
                self.problems.append(
                    item.problem(path, f"{feature.name!r} is a join key of entity {view.entity!r}")
                )

        known = self._known_columns(source) if source is not None else None
        if source is not None and known is not None:
            verb = "declares it" if source.columns is not None else "has it as"
            for key in view_keys:
                declared = known.get(key.name)
                if declared is None:
                    where = (
                        f"is not a declared column of source {source.name!r}"
                        if source.columns is not None
                        else _absent_message(key.name, source.name, self.read_columns.get(source.name))
                    )
                    self.problems.append(item.problem(("entity",), f"join key {key.name!r} {where}"))
                elif not semantics.can_feed(declared, key.dtype):
                    self.problems.append(
                        item.problem(
                            ("entity",),
                            f"join key {key.name!r} is {key.dtype} but source {source.name!r} "
                            f"{verb} {declared}",
                        )
                    )
        if source is not None and view.filter:
            for problem in filter_problems(view.filter, known):
                self.problems.append(item.problem(("filter",), problem))

        features: list[FeatureSpec] = []
        for index, feature in enumerate(view_features):
            spec = (
                self._aggregation_feature(item, index, feature, view, entity, source)
                if isinstance(feature, AggregationFeature)
                else self._snapshot_feature(item, index, feature, view, entity, source)
            )
            if spec is not None:
                features.append(spec)

        dtypes = {f.name: f.dtype for f in features}
        for index, expectation in enumerate(view.expectations):
            if expectation.feature not in seen:
                self.problems.append(
                    item.problem(
                        ("expectations", index, "feature"),
                        f"unknown feature {expectation.feature!r} of view {view.name!r}",
                    )
                )
            elif (
                expectation.between is not None
                and dtypes.get(expectation.feature, "int64") not in NUMERIC_DTYPES
            ):
                self.problems.append(
                    item.problem(
                        ("expectations", index, "between"),
                        f"needs a numeric feature, but {expectation.feature!r} is "
                        f"{dtypes[expectation.feature]}",
                    )
                )

        if len(self.problems) > before or entity is None or source is None:
            return None
        body = {
            "name": view.name,
            "version": view.version,
            "kind": view.kind,
            "entity": entity.name,
            "join_keys": entity.join_keys,
            "source": source,
            "filter": view.filter,
            "ttl_seconds": int(view.ttl.total_seconds()),
            "availability_lag_seconds": int(view.availability_lag.total_seconds()),
            "features": tuple(features),
            **catalog_fields(view),
            "expectations": tuple(
                ExpectationSpec(**e.model_dump(exclude_none=True)) for e in view.expectations
            ),
            "table": f"views/{view.name}/v{view.version}",
            "tiles_table": f"tiles/{view.name}/v{view.version}" if view.kind == "aggregation" else None,
            "freshness_seconds": None if view.freshness is None else int(view.freshness.total_seconds()),
        }
        draft = ViewSpec(**body, content_hash="")
        return draft.model_copy(
            update={"content_hash": sha256_of(draft.model_dump(mode="json", exclude={"content_hash"}))}
        )

    def _check_freshness(self, item: Located, view: AggregationView | SnapshotView) -> None:
        """An SLA a healthy nightly pipeline meets and a stopped one breaks (docs/semantics.md)."""
        sla, lag = view.freshness, view.availability_lag
        if sla is None:
            return
        if sla <= timedelta(0):
            self.problems.append(item.problem(("freshness",), "must be positive"))
        elif sla <= ONE_DAY + lag:
            self.problems.append(
                item.problem(
                    ("freshness",),
                    "must be more than 1d plus the availability_lag: just before each nightly run the"
                    " latest boundary is already that old, so the SLA would break every day",
                )
            )
        elif sla > view.ttl + lag:
            self.problems.append(
                item.problem(
                    ("freshness",),
                    "must not exceed ttl plus the availability_lag: past that every online value has"
                    " expired, so a stopped pipeline would serve only nulls before the SLA broke",
                )
            )

    def _meaning_base(
        self,
        view: AggregationView | SnapshotView,
        entity: EntitySpec | None,
        source: SourceSpec | None,
    ) -> dict[str, object]:
        return {
            "kind": view.kind,
            "entity": view.entity,
            "source": view.source,
            "join_keys": [k.model_dump() for k in entity.join_keys] if entity else [],
            "source_timestamp": [
                source.timestamp,
                source.timestamp_format,
                source.created_timestamp,
            ]
            if source
            else [],
            "filter": view.filter,
            "availability_lag_seconds": int(view.availability_lag.total_seconds()),
        }

    def _aggregation_feature(
        self,
        item: Located,
        index: int,
        feature: AggregationFeature,
        view: AggregationView | SnapshotView,
        entity: EntitySpec | None,
        source: SourceSpec | None,
    ) -> FeatureSpec | None:
        before = len(self.problems)
        path = ("features", index)
        if feature.window % ONE_DAY:
            self.problems.append(
                item.problem((*path, "window"), "aggregation windows must be whole days, like '7d'")
            )
        if feature.window <= timedelta(0):
            self.problems.append(item.problem((*path, "window"), "must be positive"))
        if feature.function in NEEDS_COLUMN and feature.column is None:
            self.problems.append(
                item.problem((*path, "column"), f"function {feature.function!r} needs a column")
            )
        column_dtype = None
        known = self._known_columns(source) if source is not None else None
        if feature.column is not None and source is not None and known is not None:
            column_dtype = known.get(feature.column)
            if column_dtype is None:
                self.problems.append(item.problem((*path, "column"), self._absent(feature.column, source)))
        if feature.function in NEEDS_NUMERIC and column_dtype is not None:
            if column_dtype not in NUMERIC_DTYPES:
                self.problems.append(
                    item.problem(
                        (*path, "function"),
                        f"{feature.function!r} needs a numeric column, but {feature.column!r} is "
                        f"{column_dtype}",
                    )
                )
        elif (
            feature.function in NEEDS_NUMERIC
            and feature.function != "approx_percentile"
            and feature.dtype is not None
            and _aggregation_dtype(feature.function, feature.dtype) not in NUMERIC_DTYPES
        ):
            self.problems.append(
                item.problem(
                    (*path, "dtype"),
                    f"{feature.function!r} needs a numeric column, but dtype is {feature.dtype}",
                )
            )
        declared = source is not None and source.columns is not None and feature.column in source.columns
        self._list_parameters(item, path, feature, column_dtype, declared)
        percentiles = _percentile_levels(feature.percentile)
        source_dtype = column_dtype or feature.dtype
        if column_dtype is None and feature.dtype is not None and feature.function in LIST_OF_VALUES:
            source_dtype = semantics.element_dtype(feature.dtype)  # last_k/top_k: dtype is the array
        dtype = _aggregation_dtype(feature.function, source_dtype, isinstance(feature.percentile, tuple))
        if dtype is None and (source is None or len(self.problems) > before):
            # the source or the column is already reported; do not echo it as an unknown type
            return None
        if dtype is None:
            read = self.read_columns.get(source.name) if source is not None else None
            why = f" ({read.problem})" if read is not None and read.problem else ""
            self.problems.append(
                item.problem(
                    (*path, "dtype"),
                    f"cannot tell the type of {feature.function}({feature.column}): declare "
                    f"{feature.column!r} under the columns of source {source.name if source else '?'!r}, "
                    f"or set dtype{why}",
                )
            )
        elif feature.dtype is not None and feature.dtype != dtype:
            self.problems.append(
                item.problem((*path, "dtype"), f"{feature.function} yields {dtype}, not {feature.dtype}")
            )
        if len(self.problems) > before or dtype is None:
            return None
        window_days = int(feature.window / ONE_DAY)
        meaning: dict[str, object] = {
            **self._meaning_base(view, entity, source),
            "function": feature.function,
            "column": feature.column,
            "window_days": window_days,
            "dtype": dtype,
        }
        if feature.k is not None:
            meaning["k"] = feature.k
        if percentiles is not None:
            meaning["percentiles"] = list(percentiles)
        return FeatureSpec(
            name=feature.name,
            dtype=dtype,
            column=feature.column,
            function=feature.function,
            window_days=window_days,
            k=feature.k,
            percentiles=percentiles,
            meaning_hash=sha256_of(meaning),
            **catalog_fields(feature),
        )

    def _list_parameters(
        self,
        item: Located,
        path: tuple[str | int, ...],
        feature: AggregationFeature,
        column_dtype: str | None,
        declared: bool,
    ) -> None:
        """``k`` and ``percentile`` where the function takes them, in range; list element types.

        ``declared``: the column's type is declared under the source's ``columns`` (not only read
        from its files, which the registry does not keep).
        """
        function = feature.function
        if function in NEEDS_K and feature.k is None:
            self.problems.append(item.problem((*path, "k"), f"function {function!r} needs k, e.g. k: 5"))
        elif function not in NEEDS_K and feature.k is not None:
            self.problems.append(
                item.problem((*path, "k"), f"only {', '.join(sorted(NEEDS_K))} take k, not {function!r}")
            )
        elif feature.k is not None and not 1 <= feature.k <= MAX_K:
            self.problems.append(
                item.problem((*path, "k"), f"must be between 1 and {MAX_K}, got {feature.k}")
            )
        if function == "approx_percentile" and feature.percentile is None:
            self.problems.append(
                item.problem(
                    (*path, "percentile"), "approx_percentile needs percentile, e.g. 0.9 or [0.5, 0.9]"
                )
            )
        elif function != "approx_percentile" and feature.percentile is not None:
            self.problems.append(
                item.problem(
                    (*path, "percentile"), f"only approx_percentile takes percentile, not {function!r}"
                )
            )
        elif feature.percentile is not None:
            levels = _percentile_levels(feature.percentile) or ()
            if not levels:
                self.problems.append(item.problem((*path, "percentile"), "give at least one level"))
            for level in levels:
                if not 0.0 <= level <= 1.0:
                    self.problems.append(
                        item.problem((*path, "percentile"), f"levels are between 0 and 1, got {level:g}")
                    )
            if len(set(levels)) != len(levels):
                self.problems.append(item.problem((*path, "percentile"), "a level is listed twice"))
        if function == "top_k_counts" and feature.column is not None and not declared:
            self.problems.append(
                item.problem(
                    (*path, "column"),
                    f"top_k_counts needs the type of {feature.column!r} declared under the source's "
                    "columns (its counts do not carry the values' type, which the daily tiles store)",
                )
            )
        if function in (*LIST_OF_VALUES, "top_k_counts") and column_dtype is not None:
            allowed = TOP_K_ELEMENTS if function != "last_k" else LAST_K_ELEMENTS
            if column_dtype not in allowed:
                self.problems.append(
                    item.problem(
                        (*path, "function"),
                        f"{function!r} needs a column of type {', '.join(sorted(allowed))}, but "
                        f"{feature.column!r} is {column_dtype}",
                    )
                )

    def _snapshot_feature(
        self,
        item: Located,
        index: int,
        feature: SnapshotFeature,
        view: AggregationView | SnapshotView,
        entity: EntitySpec | None,
        source: SourceSpec | None,
    ) -> FeatureSpec | None:
        column = feature.column or feature.name
        known = self._known_columns(source) if source is not None else None
        if source is not None and known is not None:
            declared = known.get(column)
            field = "column" if feature.column else "name"
            if declared is None:
                self.problems.append(item.problem(("features", index, field), self._absent(column, source)))
                return None
            if not semantics.can_feed(declared, feature.dtype):
                verb = "declares" if source.columns is not None else "has"
                self.problems.append(
                    item.problem(
                        ("features", index, "dtype"),
                        f"source {source.name!r} {verb} {column!r} as {declared}",
                    )
                )
                return None
        if feature.length is not None and feature.dtype not in semantics.ARRAY_DTYPES:
            self.problems.append(
                item.problem(
                    ("features", index, "length"), f"only array features have a length, not {feature.dtype}"
                )
            )
            return None
        if feature.length is not None and not 1 <= feature.length <= MAX_LENGTH:
            self.problems.append(
                item.problem(
                    ("features", index, "length"), f"must be between 1 and {MAX_LENGTH}, got {feature.length}"
                )
            )
            return None
        meaning: dict[str, object] = {
            **self._meaning_base(view, entity, source),
            "column": column,
            "dtype": feature.dtype,
        }
        if feature.length is not None:
            meaning["length"] = feature.length
        return FeatureSpec(
            name=feature.name,
            dtype=feature.dtype,
            column=column,
            length=feature.length,
            meaning_hash=sha256_of(meaning),
            **catalog_fields(feature),
        )

    def _on_demand(self, item: Located, views: dict[str, ViewSpec]) -> OnDemandSpec | None:
        """An on-demand view (docs/feature-definitions.md, "On-demand views")."""
        spec = item.obj
        assert isinstance(spec, OnDemand)  # narrowed by the caller
        before = len(self.problems)
        if spec.name in self.by_kind["view"]:
            self.problems.append(
                item.problem(("name",), f"{spec.name!r} is also a view; 'name:feature' would be ambiguous")
            )
        found = self.function_sources.get(spec.name, FunctionSource(problem="module not looked up"))
        if found.problem is not None:
            self.problems.append(item.problem(("function",), found.problem))
        for field, dtype in spec.request.items():
            if field == REQUEST_TS and dtype != "timestamp":
                self.problems.append(
                    item.problem(
                        ("request", field),
                        f"{REQUEST_TS!r} is reserved (the spine's time offline, the request time online):"
                        f" declare it as timestamp, not {dtype}",
                    )
                )
        refs: list[tuple[str, str, str]] = []  # (view, feature, dtype)
        for index, ref in enumerate(spec.inputs):
            path = ("inputs", index)
            view_name, sep, feature_name = ref.partition(":")
            if not sep or not view_name or not feature_name:
                self.problems.append(item.problem(path, f"expected 'view:feature', got {ref!r}"))
                continue
            if any((view_name, feature_name) == (v, f) for v, f, _ in refs):
                self.problems.append(item.problem(path, f"{ref!r} is listed twice"))
                continue
            view = views.get(view_name)
            if view is None:
                if view_name in self.by_kind["on_demand"]:
                    self.problems.append(
                        item.problem(path, f"{view_name!r} is an on-demand view; inputs are stored features")
                    )
                elif view_name not in self.by_kind["view"] and self._missing("view", view_name):
                    self.problems.append(item.problem(path, f"unknown view {view_name!r}"))
                continue
            if feature_name not in view.feature_names:
                message = f"view {view_name!r} has no feature {feature_name!r}"
                self.problems.append(item.problem(path, message))
                continue
            refs.append((view_name, feature_name, view.feature(feature_name).dtype))
        names = Counter(feature for _, feature, _ in refs)
        inputs = tuple(
            OnDemandInput(view=v, feature=f, column=f"{v}__{f}" if names[f] > 1 else f, dtype=dtype)
            for v, f, dtype in refs
        )
        for index, one in enumerate(inputs):
            if one.column in spec.request:
                self.problems.append(
                    item.problem(
                        ("inputs", index),
                        f"input column {one.column!r} is also a request field; rename the request field",
                    )
                )
        seen: dict[str, int] = {}
        for index, feature in enumerate(spec.features):
            name_path = ("features", index, "name")
            if feature.name in seen:
                self.problems.append(
                    item.problem(name_path, f"duplicate feature name (also features[{seen[feature.name]}])")
                )
            seen.setdefault(feature.name, index)
            if feature.name in RESERVED_COLUMNS or feature.name == REQUEST_TS:
                self.problems.append(item.problem(name_path, f"{feature.name!r} is a reserved column name"))
            elif feature.name in spec.request:
                self.problems.append(
                    item.problem(
                        name_path, f"{feature.name!r} is also a request field (a spine column offline)"
                    )
                )
        if len(self.problems) > before or found.source_hash is None:
            return None
        request = tuple(RequestField(name=k, dtype=v) for k, v in spec.request.items())
        base = {
            "function": spec.function,
            "source_hash": found.source_hash,
            "request": [r.model_dump() for r in request],
            "inputs": [i.model_dump() for i in inputs],
        }
        features = tuple(
            FeatureSpec(
                name=f.name,
                dtype=f.dtype,
                meaning_hash=sha256_of({**base, "dtype": f.dtype}),
                **catalog_fields(f),
            )
            for f in spec.features
        )
        draft = OnDemandSpec(
            name=spec.name,
            version=spec.version,
            function=spec.function,
            source=found.source,
            source_hash=found.source_hash,
            request=request,
            inputs=inputs,
            features=features,
            **catalog_fields(spec),
            content_hash="",
        )
        return draft.model_copy(
            update={"content_hash": sha256_of(draft.model_dump(mode="json", exclude={"content_hash"}))}
        )

    def _service(
        self, item: Located, views: dict[str, ViewSpec], on_demand: Mapping[str, OnDemandSpec]
    ) -> ServiceSpec:
        service = item.obj
        assert isinstance(service, Service)  # narrowed by the caller
        refs: list[FeatureRef] = []
        seen: set[str] = set()
        for index, ref in enumerate(service.features):
            path = ("features", index)
            view_name, sep, feature_name = ref.partition(":")
            if not sep or not view_name or not feature_name:
                self.problems.append(item.problem(path, f"expected 'view:feature', got {ref!r}"))
                continue
            if ref in seen:
                self.problems.append(item.problem(path, f"{ref!r} is listed twice"))
                continue
            seen.add(ref)
            view: ViewSpec | OnDemandSpec | None = views.get(view_name) or on_demand.get(view_name)
            if view is None:
                known = view_name in self.by_kind["view"] or view_name in self.by_kind["on_demand"]
                if not known and self._missing("view", view_name) and self._missing("on_demand", view_name):
                    self.problems.append(item.problem(path, f"unknown view {view_name!r}"))
                continue
            if feature_name not in view.feature_names:
                self.problems.append(
                    item.problem(path, f"view {view_name!r} has no feature {feature_name!r}")
                )
                continue
            refs.append(FeatureRef(view=view_name, feature=feature_name))
        return ServiceSpec(name=service.name, features=tuple(refs), **catalog_fields(service))


MAX_K = 1000
"""Upper bound of ``k`` (last_k, top_k): a list feature is a value online, not a table."""
MAX_LENGTH = 65_536
"""Upper bound of an array feature's declared ``length``."""
LIST_OF_VALUES = frozenset({"last_k", "top_k"})
"""Functions whose dtype is an array of their column's (widened) type."""
LAST_K_ELEMENTS = frozenset({"int64", "int32", "float64", "float32", "string"})
TOP_K_ELEMENTS = frozenset({"int64", "int32", "string"})


def _percentile_levels(value: float | tuple[float, ...] | None) -> tuple[float, ...] | None:
    if value is None:
        return None
    return tuple(float(v) for v in value) if isinstance(value, tuple) else (float(value),)


def catalog_fields(
    obj: Entity
    | Source
    | AggregationView
    | SnapshotView
    | AggregationFeature
    | SnapshotFeature
    | Service
    | OnDemand
    | OnDemandFeature,
) -> dict[str, Any]:
    """``description``, ``owner`` and ``tags`` as the manifest carries them (unset: None, left out
    of the JSON); never part of a meaning hash (docs/catalog.md)."""
    return {"description": obj.description, "owner": obj.owner, "tags": obj.tags or None}


def _aggregation_dtype(function: str, column_dtype: str | None, percentile_list: bool = False) -> str | None:
    """Output type of an aggregation function given its input column's type (docs/feature-definitions.md).

    Functions that keep the column's type compute in its wide type (:func:`skewless.semantics.widened`).
    """
    if function in ("count", "approx_count_distinct"):
        return "int64"
    if function in ("avg", "stddev"):
        return "float64"
    if function in ("first_seen", "last_seen"):
        return "timestamp"
    if function == "top_k_counts":
        return "array<int64>"
    if function == "approx_percentile":
        return "array<float64>" if percentile_list else "float64"
    if column_dtype is None:
        return None
    wide = semantics.widened(column_dtype)
    if function in LIST_OF_VALUES:
        return semantics.array_of(wide) if wide in semantics.ARRAY_ELEMENTS else None
    return wide  # sum, min, max, last keep the column's type


def _absent_message(column: str, source: str, read: SourceColumns | None) -> str:
    if read is None or read.columns is None:
        return f"column {column!r} is not in source {source!r}"
    return (
        f"column {column!r} is not in source {source!r} ({read.origin}; it has "
        f"{', '.join(sorted(read.columns)) or 'no usable columns'})"
    )


def filter_problems(text: str, columns: Mapping[str, str] | None) -> list[str]:
    """A view filter that does not parse, or (when the columns are known) names an unknown column.

    Parsed with sqlglot's Spark dialect, so ``validate`` catches these without Spark or data;
    ``validate --deep`` still resolves the filter against the real source with Spark.
    """
    import sqlglot
    from sqlglot import exp
    from sqlglot.errors import ParseError

    try:
        tree = sqlglot.parse_one(text, read="spark")
    except ParseError as exc:
        detail = exc.errors[0]["description"] if exc.errors else str(exc).splitlines()[0]
        return [f"not a valid SQL expression: {detail}"]
    if tree is None:
        return ["not a valid SQL expression"]
    if columns is None:
        return []
    problems = []
    for reference in tree.find_all(exp.Column):
        # ``a.b`` is field b of struct column a in a filter over one source.
        name = reference.table or reference.name
        if name and name not in columns:
            problems.append(
                f"column {name!r} is not a column of the source (it has {', '.join(sorted(columns))})"
            )
    return sorted(set(problems))
