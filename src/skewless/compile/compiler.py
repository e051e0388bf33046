"""Stage 2 of compilation: validated spec objects -> a resolved :class:`Manifest`.

Pure: no I/O beyond what :func:`compile_tree` delegates to the loader. Every cross-object
problem is collected, with the file:line of the object that has it, and reported together with
the loader's problems.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import timedelta
from pathlib import Path

from skewless.errors import SpecError, SpecProblem
from skewless.manifest import (
    RESERVED_COLUMNS,
    EntitySpec,
    ExpectationSpec,
    FeatureRef,
    FeatureSpec,
    JoinKey,
    Manifest,
    ServiceSpec,
    SourceSpec,
    ViewSpec,
    sha256_of,
)
from skewless.spec.loader import Located, duplicate_name_problem, load_tree
from skewless.spec.models import (
    NEEDS_COLUMN,
    NEEDS_NUMERIC,
    NUMERIC_DTYPES,
    AggregationFeature,
    AggregationView,
    Entity,
    Service,
    SnapshotFeature,
    SnapshotView,
    Source,
)

ONE_DAY = timedelta(days=1)


def compile_tree(defs: Path) -> Manifest:
    """Load, validate and resolve every definition under ``defs``.

    Raises :class:`SpecError` carrying every problem of the tree.
    """
    tree = load_tree(defs)
    manifest, problems = compile_objects(tree.objects, unresolved=tree.unresolved)
    all_problems = [*tree.problems, *problems]
    if all_problems or manifest is None:
        raise SpecError(all_problems)
    return manifest


def compile_objects(
    objects: Sequence[Located], unresolved: Iterable[tuple[str, str]] = ()
) -> tuple[Manifest | None, list[SpecProblem]]:
    """Resolve references and check cross-object rules. Returns the manifest when there is no problem."""
    return _Compiler(objects, frozenset(unresolved)).run()


class _Compiler:
    def __init__(self, objects: Sequence[Located], unresolved: frozenset[tuple[str, str]]) -> None:
        self.problems: list[SpecProblem] = []
        self.unresolved = unresolved
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
        services = {
            name: self._service(item, views)
            for name, item in sorted(self.by_kind["service"].items())
            if isinstance(item.obj, Service)
        }
        if self.problems:
            return None, self.problems
        return Manifest(entities=entities, sources=sources, views=views, services=services), []

    # -- helpers -------------------------------------------------------------------------------

    def _missing(self, kind: str, name: str) -> bool:
        """True when ``name`` is unknown and not merely an object already reported as broken."""
        return (kind, name) not in self.unresolved

    @staticmethod
    def _entity(entity: Entity) -> EntitySpec:
        return EntitySpec(
            name=entity.name,
            join_keys=tuple(JoinKey(name=k, dtype=t) for k, t in entity.join_keys.items()),
        )

    def _source(self, item: Located) -> SourceSpec:
        source = item.obj
        assert isinstance(source, Source)  # narrowed by the caller; not user input
        declared = source.columns
        if declared is not None:
            for field in ("timestamp", "created_timestamp", "partition_column"):
                column = getattr(source, field)
                if column is not None and column not in declared:
                    self.problems.append(
                        item.problem((field,), f"column {column!r} is not declared under columns")
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
        )

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

        if source is not None and source.columns is not None:
            for key in view_keys:
                declared = source.columns.get(key.name)
                if declared is None:
                    self.problems.append(
                        item.problem(
                            ("entity",),
                            f"join key {key.name!r} is not a declared column of source {source.name!r}",
                        )
                    )
                elif declared != key.dtype:
                    self.problems.append(
                        item.problem(
                            ("entity",),
                            f"join key {key.name!r} is {key.dtype} but source {source.name!r} "
                            f"declares it {declared}",
                        )
                    )

        features: list[FeatureSpec] = []
        for index, feature in enumerate(view_features):
            spec = (
                self._aggregation_feature(item, index, feature, view, entity, source)
                if isinstance(feature, AggregationFeature)
                else self._snapshot_feature(item, index, feature, view, entity, source)
            )
            if spec is not None:
                features.append(spec)

        for index, expectation in enumerate(view.expectations):
            if expectation.feature not in seen:
                self.problems.append(
                    item.problem(
                        ("expectations", index, "feature"),
                        f"unknown feature {expectation.feature!r} of view {view.name!r}",
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
            "expectations": tuple(
                ExpectationSpec(**e.model_dump(exclude_none=True)) for e in view.expectations
            ),
            "table": f"views/{view.name}/v{view.version}",
            "tiles_table": f"tiles/{view.name}/v{view.version}" if view.kind == "aggregation" else None,
        }
        draft = ViewSpec(**body, content_hash="")
        return draft.model_copy(
            update={"content_hash": sha256_of(draft.model_dump(mode="json", exclude={"content_hash"}))}
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
        if feature.column is not None and source is not None and source.columns is not None:
            column_dtype = source.columns.get(feature.column)
            if column_dtype is None:
                self.problems.append(
                    item.problem(
                        (*path, "column"),
                        f"column {feature.column!r} is not declared in source {source.name!r}",
                    )
                )
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
            and feature.dtype is not None
            and _aggregation_dtype(feature.function, feature.dtype) not in NUMERIC_DTYPES
        ):
            self.problems.append(
                item.problem(
                    (*path, "dtype"),
                    f"{feature.function!r} needs a numeric column, but dtype is {feature.dtype}",
                )
            )
        dtype = _aggregation_dtype(feature.function, column_dtype or feature.dtype)
        if dtype is None and (source is None or len(self.problems) > before):
            # the source or the column is already reported; do not echo it as an unknown type
            return None
        if dtype is None:
            self.problems.append(
                item.problem(
                    (*path, "dtype"),
                    f"cannot tell the type of {feature.function}({feature.column}): declare the "
                    "column under the source's columns, or set dtype",
                )
            )
        elif feature.dtype is not None and feature.dtype != dtype:
            self.problems.append(
                item.problem((*path, "dtype"), f"{feature.function} yields {dtype}, not {feature.dtype}")
            )
        if len(self.problems) > before or dtype is None:
            return None
        window_days = int(feature.window / ONE_DAY)
        meaning = {
            **self._meaning_base(view, entity, source),
            "function": feature.function,
            "column": feature.column,
            "window_days": window_days,
            "dtype": dtype,
        }
        return FeatureSpec(
            name=feature.name,
            dtype=dtype,
            column=feature.column,
            function=feature.function,
            window_days=window_days,
            meaning_hash=sha256_of(meaning),
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
        if source is not None and source.columns is not None:
            declared = source.columns.get(column)
            field = "column" if feature.column else "name"
            if declared is None:
                self.problems.append(
                    item.problem(
                        ("features", index, field),
                        f"column {column!r} is not declared in source {source.name!r}",
                    )
                )
                return None
            if declared != feature.dtype:
                self.problems.append(
                    item.problem(
                        ("features", index, "dtype"),
                        f"source {source.name!r} declares {column!r} as {declared}",
                    )
                )
                return None
        meaning = {
            **self._meaning_base(view, entity, source),
            "column": column,
            "dtype": feature.dtype,
        }
        return FeatureSpec(
            name=feature.name, dtype=feature.dtype, column=column, meaning_hash=sha256_of(meaning)
        )

    def _service(self, item: Located, views: dict[str, ViewSpec]) -> ServiceSpec:
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
            view = views.get(view_name)
            if view is None:
                if view_name not in self.by_kind["view"] and self._missing("view", view_name):
                    self.problems.append(item.problem(path, f"unknown view {view_name!r}"))
                continue
            if feature_name not in view.feature_names:
                self.problems.append(
                    item.problem(path, f"view {view_name!r} has no feature {feature_name!r}")
                )
                continue
            refs.append(FeatureRef(view=view_name, feature=feature_name))
        return ServiceSpec(name=service.name, features=tuple(refs))


def _aggregation_dtype(function: str, column_dtype: str | None) -> str | None:
    """Output type of an aggregation function given its input column's type."""
    if function in ("count", "approx_count_distinct"):
        return "int64"
    if function in ("avg", "stddev"):
        return "float64"
    return column_dtype  # sum, min, max, last keep the column's type
