"""On-demand features in training sets: a step after the point-in-time join (docs/semantics.md, "On-demand").

The join first gives every spine row its stored inputs (the point-in-time rule); this step then
calls :func:`skewless.ondemand.apply_on_demand` over Arrow batches on the executors
(``mapInArrow``: nothing is collected to the driver) with the spine's request columns and the
spine's timestamp as ``request_ts``. The online client calls the same function, so training and
serving compute on-demand values with the same code on the same inputs.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from skewless import semantics
from skewless.pit.join import INTERNAL_PREFIX, SpineError
from skewless.pit.request import FeatureRequest
from skewless.spec.models import REQUEST_TS

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import DataFrame

    from skewless.manifest import OnDemandSpec

REQUEST_TS_COLUMN = f"{INTERNAL_PREFIX}request_ts"

Step = tuple["OnDemandSpec", tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]]
"""(spec, (frame column, joined column) of each function input, (feature, output column) kept)."""


def check_request_columns(spine: DataFrame, request: FeatureRequest) -> None:
    """Every request field of the requested on-demand views is a spine column of a fitting type.

    ``request_ts`` is the spine's timestamp column, never a column of its own.
    """
    columns = spine.columns
    for od in request.on_demand:
        for feature in od.features:
            if feature.column in columns:
                raise SpineError(
                    "the spine already has a column of this name; a feature would overwrite it",
                    column=feature.column,
                )
        for field in od.spec.request:
            if field.name == REQUEST_TS:
                continue
            if field.name not in columns:
                raise SpineError(
                    f"request field of on-demand view {od.spec.name!r} ({field.dtype}) missing from the "
                    f"spine (spine has: {', '.join(columns)})",
                    column=field.name,
                )
            actual = spine.schema[field.name].dataType.simpleString()
            found = semantics.dtype_of_spark(actual)
            if found is None or not semantics.can_feed(found, field.dtype):
                raise SpineError(
                    f"request field of on-demand view {od.spec.name!r} must be {field.dtype}, found {actual}",
                    column=field.name,
                )


def _steps(request: FeatureRequest) -> list[Step]:
    steps: list[Step] = []
    for od in request.on_demand:
        sources = [(r.name, REQUEST_TS_COLUMN if r.name == REQUEST_TS else r.name) for r in od.spec.request]
        sources += [(one.column, joined) for one, joined in od.inputs]
        outputs = tuple((f.feature.name, f.column) for f in od.features)
        steps.append((od.spec, tuple(sources), outputs))
    return steps


def on_demand_batches(batches: Iterator[pa.RecordBatch], steps: Sequence[Step]) -> Iterator[pa.RecordBatch]:
    """Executor side: each batch with the on-demand output columns appended (one call per view)."""
    import pyarrow as pa

    from skewless.ondemand import apply_on_demand, load_function

    functions = [load_function(spec) for spec, _, _ in steps]
    for batch in batches:
        arrays = list(batch.columns)
        names = list(batch.schema.names)
        for (spec, sources, outputs), function in zip(steps, functions, strict=True):
            frame = pa.Table.from_arrays(
                [batch.column(names.index(joined)) for _, joined in sources],
                names=[name for name, _ in sources],
            )
            result = apply_on_demand(spec, frame, function)
            for feature, column in outputs:
                arrays.append(result.column(feature).combine_chunks())
                names.append(column)
        yield pa.RecordBatch.from_arrays(arrays, names=names)


def with_on_demand(
    joined: DataFrame, request: FeatureRequest, spine_columns: Sequence[str], timestamp_column: str
) -> DataFrame:
    """The joined rows with the on-demand features, then only the spine's and the requested columns.

    ``joined`` holds the spine's columns and every column of ``request.views`` (hidden inputs
    included). Without on-demand views this is only the final column selection.
    """
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    if request.on_demand:
        steps = _steps(request)
        staged = joined.withColumn(REQUEST_TS_COLUMN, F.col(timestamp_column).cast("timestamp"))
        fields = list(staged.schema.fields)
        for spec, _, outputs in steps:
            fields += [
                T.StructField(column, semantics.spark_type(spec.feature(feature).dtype), True)
                for feature, column in outputs
            ]
        joined = staged.mapInArrow(lambda batches: on_demand_batches(batches, steps), T.StructType(fields))
    return joined.select(*spine_columns, *request.columns)
