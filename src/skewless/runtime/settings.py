"""Configuration: one YAML file (``--conf`` or ``SKEWLESS_CONF``) plus ``SKEWLESS_<KEY>`` overrides.

Relative paths in the config are relative to the working directory. Secrets (Redis password,
S3 keys) never live here: they come from the environment or the standard credential chains.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import date
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, ValidationError

from skewless.errors import ConfigError
from skewless.spec.yaml_source import LocatedDocument, load_documents

DEFAULT_CONF = Path("conf/local.yaml")
ENV_PREFIX = "SKEWLESS_"


class SparkSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    master: str = "local[2]"
    conf: dict[str, str] = Field(default_factory=dict)
    """Extra ``spark.*`` settings, e.g. executor memory on a cluster."""
    submit: bool = False
    """DAG tasks run jobs through spark-submit (a cluster) instead of in-process."""


class ValidationSettings(BaseModel):
    """The audit before publishing and the drift check after it (``validation:`` in the config)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    drift_psi_warn: float | None = Field(default=0.1, ge=0)
    """Log a warning when a numeric feature's PSI against the reference window reaches this."""
    drift_psi_fail: float | None = Field(default=None, ge=0)
    """Fail the stats step (after the partition is committed) when a PSI reaches this; None: never."""
    drift_reference_days: int = Field(default=7, ge=1)
    """The reference window: this many ``ds`` partitions before the one checked."""
    drift_bins: int = Field(default=10, ge=2, le=100)
    """Bins per feature (edges at the reference window's quantiles, shared by both sides)."""
    drift_min_values: int = Field(default=100, ge=1)
    """Fewer non-null values than this on either side: PSI is recorded but neither warns nor fails."""


class AirflowSettings(BaseModel):
    """How the generated DAGs in ``dags/`` are scheduled (``airflow:`` in the config)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    start_date: date | None = None
    """First ``ds`` of the nightly DAGs (catchup runs every day from it); default: yesterday, UTC."""
    spark_conn_id: str = "spark_default"
    """Airflow connection of ``SparkSubmitOperator`` when ``spark.submit`` is true."""
    jobs_dir: str | None = None
    """Folder holding the spark-submit entry points; default: ``jobs/`` beside ``dags/``."""


class LateDataSettings(BaseModel):
    """Late and corrected raw data (``late_data:`` in the config; docs/semantics.md)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    days: int = Field(default=0, ge=0)
    """``late_data_days``: each nightly run re-reads the raw input of its last N days whose
    fingerprint changed, and recomputes the ``ds`` that depend on them; 0: none."""
    views: dict[str, NonNegativeInt] = Field(default_factory=dict)
    """Per-view ``late_data_days`` overriding ``days``."""

    def days_for(self, view: str) -> int:
        return self.views.get(view, self.days)


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    defs: str = "feature_defs"
    data_root: str = "data"
    offline_root: str = ".skewless/offline"
    registry: str | None = None
    """Where ``apply`` publishes the manifest; default ``<offline_root>/_registry/registry.json``."""
    redis_url: str = "redis://127.0.0.1:6379/0"
    spark: SparkSettings = Field(default_factory=SparkSettings)
    validation: ValidationSettings = Field(default_factory=ValidationSettings)
    airflow: AirflowSettings = Field(default_factory=AirflowSettings)
    late_data: LateDataSettings = Field(default_factory=LateDataSettings)

    @property
    def registry_uri(self) -> str:
        return self.registry or join_uri(self.offline_root, "_registry/registry.json")

    def source_uri(self, path: str) -> str:
        return join_uri(self.data_root, path)

    def table_uri(self, relative: str) -> str:
        return join_uri(self.offline_root, relative)


def is_remote(uri: str) -> bool:
    return "://" in uri and not uri.startswith("file://")


def join_uri(root: str, path: str) -> str:
    """``path`` when it is absolute or a URI, else ``root/path``."""
    if is_remote(path) or path.startswith("/"):
        return path
    if is_remote(root):
        return f"{root.rstrip('/')}/{path}"
    return str(Path(root.removeprefix("file://")) / path)


_ENV_KEYS = ("defs", "data_root", "offline_root", "registry", "redis_url")


def load_settings(
    conf: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Read the config file (if any) and apply ``SKEWLESS_<KEY>`` environment overrides."""
    env = os.environ if environ is None else environ
    conf_path = Path(conf) if conf is not None else None
    if conf_path is None and env.get(f"{ENV_PREFIX}CONF"):
        conf_path = Path(env[f"{ENV_PREFIX}CONF"])
    if conf_path is None and DEFAULT_CONF.is_file():
        conf_path = DEFAULT_CONF

    raw: dict[str, Any] = {}
    document: LocatedDocument | None = None
    if conf_path is not None:
        try:
            text = conf_path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read config {conf_path}: {exc.strerror}") from None
        documents, problems = load_documents(text, str(conf_path))
        if problems:
            raise ConfigError("\n".join(map(str, problems)))
        if len(documents) > 1:
            raise ConfigError(f"{conf_path}: expected one YAML document")
        if documents:
            document = documents[0]
            if not isinstance(document.data, dict):
                raise ConfigError(f"{conf_path}:{document.start_line}: expected a mapping of settings")
            raw = dict(document.data)

    for key in _ENV_KEYS:
        value = env.get(f"{ENV_PREFIX}{key.upper()}")
        if value:
            raw[key] = value
    if master := env.get(f"{ENV_PREFIX}SPARK_MASTER"):
        raw["spark"] = {**dict(raw.get("spark") or {}), "master": master}

    try:
        return Settings.model_validate(raw)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = tuple(err["loc"])
            where = f"{document.file}:{document.line_of(loc)}" if document is not None else "environment"
            message = "unknown setting" if err["type"] == "extra_forbidden" else err["msg"]
            lines.append(f"{where}: {'.'.join(map(str, loc))}: {message}")
        raise ConfigError("\n".join(lines)) from None
