"""``skewless.FeatureStore``: the Python API in the shape Feast users know (docs/python-api.md).

A thin layer over the library: training data comes from the point-in-time join of
:mod:`skewless.pit.training_set` (on-demand features included), online values from
:class:`skewless.online.client.OnlineClient`. It reads the applied registry, like every job.

    store = FeatureStore()                        # conf/local.yaml, $SKEWLESS_CONF, or conf="..."
    training = store.get_historical_features(entity_df=labels, features=[...])
    training.to_df()                              # pandas; .to_spark(); .to_parquet(path)
    store.get_online_features(features=..., entity_rows=[{...}]).to_dict()
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any, TypeVar

from skewless.errors import SkewlessError
from skewless.manifest import FeatureRef, Manifest, OnDemandSpec, ViewSpec
from skewless.runtime.settings import Settings, load_settings

T = TypeVar("T")

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import DataFrame, SparkSession

    from skewless.offline.inputs import InputSet
    from skewless.online.client import OnlineClient
    from skewless.pit.request import FeatureRequest
    from skewless.pit.training_set import PinnedTable, TrainingSetManifest


@dataclass(frozen=True)
class FeatureService:
    """A named feature list of the registry (``features=`` accepts it as it is)."""

    name: str
    features: tuple[str, ...]
    description: str | None = None
    owner: str | None = None


@dataclass(frozen=True)
class RetrievalJob:
    """A training set not materialized yet: nothing is collected until :meth:`to_df`."""

    store: FeatureStore
    frame: DataFrame
    tables: dict[str, PinnedTable]
    spine_rows: int
    request: FeatureRequest
    spine: InputSet | None
    service: str | None
    timestamp_column: str

    def to_spark(self) -> DataFrame:
        """The rows as a Spark DataFrame (distributed; nothing collected)."""
        return self.frame

    def to_df(self) -> pd.DataFrame:
        """The rows as a pandas DataFrame (collected to the driver: for results that fit)."""
        return _unwrapped(self.frame.toPandas)

    def to_parquet(self, path: str | os.PathLike[str]) -> TrainingSetManifest:
        """Write the rows as Parquet with the training-set manifest beside them (``--rebuild`` reads it
        when the entity_df was a path)."""
        from skewless.pit.training_set import JoinedFrame, refuse_existing, write_training_set

        out = os.fspath(path)
        refuse_existing(out)
        joined = JoinedFrame(self.frame, self.tables, self.spine_rows, self.request)
        return _unwrapped(
            lambda: write_training_set(
                self.store.spark,
                self.store.manifest,
                joined,
                out=out,
                spine=self.spine,
                service=self.service,
                timestamp_column=self.timestamp_column,
            )
        )


@dataclass(frozen=True)
class OnlineResponse:
    """Online values, one row per entity row: the row's own fields, then the features."""

    rows: list[dict[str, Any]]
    columns: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, list[Any]]:
        """Feast's shape: ``{"merchant_id": ["m1"], "txn_count_7d": [3], ...}``."""
        names: dict[str, None] = {}
        for row in self.rows:
            names.update(dict.fromkeys(row))
        return {name: [row.get(name) for row in self.rows] for name in names}

    def to_df(self) -> pd.DataFrame:
        import pandas as pd

        return pd.DataFrame(self.to_dict())


class FeatureStore:
    """The applied registry of one configuration, offline and online.

    ``conf``: a config file (default ``$SKEWLESS_CONF``, else ``conf/local.yaml``); or pass
    ``settings``. ``spark`` reuses a session (default: the configured one, started on first use).
    """

    def __init__(
        self,
        conf: str | os.PathLike[str] | None = None,
        *,
        settings: Settings | None = None,
        spark: SparkSession | None = None,
    ) -> None:
        self.settings = settings if settings is not None else load_settings(conf)
        self._spark = spark
        self._online: OnlineClient | None = None

    @cached_property
    def manifest(self) -> Manifest:
        """The applied registry, read once (``refresh()`` reads it again)."""
        from skewless.registry import require_registry

        return require_registry(self.settings.registry_uri)

    def refresh(self) -> None:
        """Read the applied registry again (after ``skewless apply``)."""
        self.__dict__.pop("manifest", None)
        self.close()

    @property
    def spark(self) -> SparkSession:
        if self._spark is None:
            from skewless.runtime.spark import get_spark

            self._spark = get_spark(self.settings, app_name="skewless-feature-store")
        return self._spark

    # -- catalog ------------------------------------------------------------------------------

    def get_feature_service(self, name: str) -> FeatureService:
        service = self.manifest.service(name)
        return FeatureService(
            name=service.name,
            features=tuple(str(ref) for ref in service.features),
            description=service.description,
            owner=service.owner,
        )

    def _owners(self) -> list[tuple[str, ViewSpec | OnDemandSpec]]:
        """(kind, view) of every stored and on-demand view, by name."""
        owners: list[tuple[str, ViewSpec | OnDemandSpec]] = [
            *((view.kind, view) for view in self.manifest.views.values()),
            *(("on_demand", od) for od in self.manifest.on_demand_views.values()),
        ]
        return sorted(owners, key=lambda item: item[1].name)

    def list_views(self) -> list[dict[str, Any]]:
        """Stored and on-demand views: name, kind, version, entity, description, owner, features."""
        return [
            {
                "name": view.name,
                "kind": kind,
                "version": view.version,
                "entity": view.entity if isinstance(view, ViewSpec) else None,
                "description": view.description,
                "owner": view.owner,
                "features": list(view.feature_names),
            }
            for kind, view in self._owners()
        ]

    def list_features(self) -> list[dict[str, Any]]:
        """Every feature as ``view:feature`` with its dtype, description and owner (the view's when
        the feature has none)."""
        return [
            {
                "name": f"{owner.name}:{feature.name}",
                "view": owner.name,
                "feature": feature.name,
                "dtype": feature.dtype,
                "kind": kind,
                "description": feature.description,
                "owner": feature.owner or owner.owner,
            }
            for kind, owner in self._owners()
            for feature in owner.features
        ]

    # -- offline ------------------------------------------------------------------------------

    def get_historical_features(
        self,
        entity_df: Any,
        features: Sequence[str | FeatureRef] | FeatureService | str,
        timestamp_column: str = "event_timestamp",
    ) -> RetrievalJob:
        """The point-in-time join of ``entity_df`` (pandas, Spark, or a Parquet/Delta path).

        ``entity_df`` needs the join keys of every requested view, the timestamp column and the
        request fields of every requested on-demand view; a missing one is an error naming it,
        raised here before any feature is read.
        """
        from skewless.pit.request import resolve_features
        from skewless.pit.training_set import as_spark_spine, inspect_spine, point_in_time, read_spine

        service, refs = _features(features)
        request = resolve_features(self.manifest, features=refs, service=service)
        spine: InputSet | None = None
        if isinstance(entity_df, (str, os.PathLike)):
            spine = inspect_spine(os.fspath(entity_df))
            frame = read_spine(self.spark, spine)
        else:
            frame = as_spark_spine(self.spark, entity_df, timestamp_column)
        joined, tables, rows = point_in_time(
            self.spark, self.settings, self.manifest, frame, request, timestamp_column
        )
        return RetrievalJob(self, joined, tables, rows, request, spine, service, timestamp_column)

    # -- online -------------------------------------------------------------------------------

    def get_online_features(
        self,
        features: Sequence[str | FeatureRef] | FeatureService | str,
        entity_rows: Sequence[Mapping[str, Any]],
        *,
        now: datetime | None = None,
    ) -> OnlineResponse:
        """Online values for ``entity_rows`` (join keys plus the request fields of on-demand views)
        at ``now`` (default: the current time)."""
        from skewless.online.client import OnlineClient

        service, refs = _features(features)
        if self._online is None:
            self._online = OnlineClient(self.settings, self.manifest)
        plan = self._online.plan(refs, service)
        rows = self._online.get_online_features(list(entity_rows), refs, service, now=now)
        return OnlineResponse(rows, plan.columns)

    def close(self) -> None:
        if self._online is not None:
            self._online.close()
            self._online = None

    def __enter__(self) -> FeatureStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _features(
    features: Sequence[str | FeatureRef] | FeatureService | str,
) -> tuple[str | None, str | list[str | FeatureRef] | None]:
    """(service name, None) for a service; (None, references) for a list or ``"v:f,v:f"``."""
    if isinstance(features, FeatureService):
        return features.name, None
    if isinstance(features, str):
        if ":" not in features:
            raise SkewlessError(
                f"features={features!r}: give a list of 'view:feature' or store.get_feature_service(name)"
            )
        return None, features
    return None, list(features)


def _unwrapped(action: Callable[[], T]) -> T:
    """Run a Spark action; an on-demand function's failure on an executor comes back as the
    skewless error it was (naming the view, the function and the feature)."""
    try:
        return action()
    except SkewlessError:
        raise
    except Exception as exc:
        marker = "skewless.errors.OnDemandError: "
        text = str(exc)
        if marker not in text:
            raise
        line = text.split(marker, 1)[1].splitlines()[0].strip()
        raise SkewlessError(line) from exc


__all__ = ["FeatureService", "FeatureStore", "OnlineResponse", "RetrievalJob"]
