"""``validate --deep``: check column references and SQL filters against the real source schemas."""

from __future__ import annotations

from typing import TYPE_CHECKING

from skewless.errors import DataError, SkewlessError
from skewless.manifest import Manifest
from skewless.runtime.settings import Settings

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


class DeepValidationError(SkewlessError):
    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(
            f"{len(problems)} problem{'s' if len(problems) != 1 else ''} against the sources:\n"
            + "\n".join(f"  {p}" for p in problems)
        )


def deep_validate(spark: SparkSession, settings: Settings, manifest: Manifest) -> None:
    """Every column a view uses exists in its source, and every filter parses and resolves."""
    from pyspark.errors import AnalysisException, ParseException
    from pyspark.sql import functions as F

    from skewless.offline.sources import source_schema_frame

    problems: list[str] = []
    frames = {}
    for name, source in sorted(manifest.sources.items()):
        try:
            frames[name] = source_schema_frame(spark, settings, source)
        except DataError as exc:
            problems.append(str(exc))
    for view in sorted(manifest.views.values(), key=lambda v: v.name):
        frame = frames.get(view.source.name)
        if frame is None:
            continue
        columns = set(frame.columns)
        needed = [*view.key_names, view.source.timestamp]
        needed += [f.column for f in view.features if f.column is not None]
        if view.source.created_timestamp:
            needed.append(view.source.created_timestamp)
        for column in dict.fromkeys(needed):
            if column not in columns:
                problems.append(
                    f"view {view.name!r}: column {column!r} not found in source "
                    f"{view.source.name!r} (has: {', '.join(sorted(columns))})"
                )
        if view.filter:
            try:
                frame.where(F.expr(view.filter)).schema  # noqa: B018 - forces analysis
            except (AnalysisException, ParseException) as exc:
                first_line = str(exc).strip().splitlines()[0]
                problems.append(f"view {view.name!r}: filter {view.filter!r}: {first_line}")
    if problems:
        raise DeepValidationError(problems)
