"""User-facing errors.

Every failure a user can cause has its own type carrying where it happened: a file, line and
field for feature definitions; a source, column and file (or row) for data. The CLI prints
``str(error)`` and exits non-zero; nothing else in the library prints or exits.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass


class SkewlessError(Exception):
    """Base class of every error meant for the user (no traceback without ``--debug``)."""


@dataclass(frozen=True, order=True)
class SpecProblem:
    """One problem in a feature definition, located at ``file:line`` and a field path."""

    file: str
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}"
        return f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"


class SpecError(SkewlessError):
    """All problems found in a tree of feature definitions, reported together."""

    def __init__(self, problems: Iterable[SpecProblem]) -> None:
        self.problems: tuple[SpecProblem, ...] = tuple(sorted(set(problems)))
        count = len(self.problems)
        header = f"{count} error{'s' if count != 1 else ''} in feature definitions"
        super().__init__("\n".join([header, *map(str, self.problems)]))


class ConfigError(SkewlessError):
    """A missing or malformed configuration value."""


class ConnectUnsupported(SkewlessError):
    """An operation that needs a classic Spark session (executors running skewless's Python, the
    JVM gateway) was given a Spark Connect session; the message names the supported route."""


class RegistryError(SkewlessError):
    """The deployed registry is missing, unreadable or incompatible."""


class RegistryChanged(RegistryError):
    """``apply`` lost a race: the deployed registry is no longer the one its plan was computed against."""

    def __init__(self, uri: str, expected: str | None, found: str | None) -> None:
        self.uri = uri
        self.expected = expected
        self.found = found

        def name(registry_hash: str | None) -> str:
            return f"registry {registry_hash[:12]}" if registry_hash else "no registry"

        super().__init__(
            f"{uri} changed since the plan read it: planned against {name(expected)}, now"
            f" {name(found)} is deployed (another apply published first); re-run `skewless plan`"
            " and `skewless apply`"
        )


class PlanRefused(SkewlessError):
    """``plan``/``apply`` found breaking changes (a feature's meaning changed without a version bump)."""

    def __init__(self, reasons: Sequence[str]) -> None:
        self.reasons = tuple(reasons)
        super().__init__(
            "refused: breaking changes without a version bump:\n"
            + "\n".join(f"  - {r}" for r in self.reasons)
        )


class DataError(SkewlessError):
    """Bad input data: names the source (or table), the column and, when known, the file or row."""

    def __init__(
        self, message: str, *, source: str, column: str | None = None, where: str | None = None
    ) -> None:
        self.source = source
        self.column = column
        self.where = where
        parts = [f"source {source!r}"]
        if column is not None:
            parts.append(f"column {column!r}")
        if where is not None:
            parts.append(where)
        super().__init__(f"{', '.join(parts)}: {message}")


class TableError(SkewlessError):
    """A Delta table operation failed in a way the user must act on (left at its previous version)."""


class UnknownObjectError(SkewlessError):
    """A view, feature or service named on the command line or in a request does not exist."""


class OnlineStoreError(SkewlessError):
    """Redis could not be reached or answered unexpectedly (the URL in the message has no password)."""


class EntityError(SkewlessError):
    """An entity row of an online request is malformed: a missing or null key, or a wrongly typed one."""


class PublishRefused(SkewlessError):
    """``materialize`` refused to publish a ``ds`` whose values are not available yet."""


class FreshnessBroken(SkewlessError):
    """A view's freshness SLA is broken (docs/semantics.md, "Freshness"); one line per view."""


class ValidationFailed(SkewlessError):
    """A staged partition failed its expectations; nothing was committed (the report names each failure)."""


class DriftDetected(SkewlessError):
    """A committed partition's feature distribution drifted past ``validation.drift_psi_fail``."""


class OnlineTimeRefused(SkewlessError):
    """An online read asked about a time before the stored row: the store holds only the latest row.

    Carries the view, the entity and the stored ``feature_ts`` so the caller can tell which key
    is newer than the request (the training join answers such past times).
    """

    def __init__(self, message: str, *, view: str, entity: dict[str, object], feature_ts: str) -> None:
        self.view = view
        self.entity = entity
        self.feature_ts = feature_ts
        super().__init__(message)


class OnDemandError(SkewlessError):
    """An on-demand view's function failed or returned something other than its declared features.

    Names the view, the function and the feature(s) concerned (docs/semantics.md, "On-demand").
    """

    def __init__(self, message: str, *, view: str, function: str, features: Sequence[str]) -> None:
        self.view = view
        self.function = function
        self.features = tuple(features)
        label = "feature" if len(self.features) == 1 else "features"
        super().__init__(
            f"on-demand view {view!r}, function {function}, {label} {', '.join(self.features)}: {message}"
        )
