"""On-demand (request-time) features: the ONE function both paths call (docs/semantics.md, "On-demand").

:func:`apply_on_demand` takes an Arrow batch with one column per request field and per input
feature (named as the function's frame names them), turns it into the pandas frame the user
function takes (Arrow-backed dtypes, nulls as ``pd.NA``), calls the function, checks its output
(exactly the declared features, the same number of rows, values of the declared types) and
returns the features as an Arrow table of the declared types. The training join calls it on the
executors over Arrow batches (:mod:`skewless.pit.ondemand`, ``mapInArrow``); the online client
calls it on the rows it just read. Training and serving therefore run the same code on the same
Arrow types.

The function's code comes from the registry (:func:`load_function`): a module under
feature_defs/ is carried in the applied registry as source and executed from there (the same
code everywhere, also on executors and in a rebuild); an installed package is imported by name
and must match the hash recorded when the registry was applied.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import threading
import types
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from skewless import semantics
from skewless.errors import OnDemandError
from skewless.manifest import OnDemandSpec
from skewless.spec.models import REQUEST_TS

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

UserFunction = Callable[["pd.DataFrame"], Any]

_LOADED: dict[tuple[str, str, str], UserFunction] = {}
_LOCK = threading.Lock()


def frame_columns(spec: OnDemandSpec) -> list[tuple[str, str]]:
    """(column, dtype) of the function's input frame: request fields, then input features."""
    return [(r.name, r.dtype) for r in spec.request] + [(i.column, i.dtype) for i in spec.inputs]


def input_schema(spec: OnDemandSpec) -> pa.Schema:
    import pyarrow as pa

    return pa.schema([(name, semantics.arrow_type(dtype)) for name, dtype in frame_columns(spec)])


def output_schema(spec: OnDemandSpec) -> pa.Schema:
    import pyarrow as pa

    return pa.schema([(f.name, semantics.arrow_type(f.dtype)) for f in spec.features])


def _error(spec: OnDemandSpec, message: str, features: Sequence[str] | None = None) -> OnDemandError:
    return OnDemandError(
        message, view=spec.name, function=spec.function, features=features or spec.feature_names
    )


def load_function(spec: OnDemandSpec) -> UserFunction:
    """The user function of ``spec``, from the registry's copy of its module (cached per process)."""
    key = (spec.name, spec.function, spec.source_hash)
    with _LOCK:
        found = _LOADED.get(key)
        if found is None:
            found = _load(spec)
            _LOADED[key] = found
    return found


def _load(spec: OnDemandSpec) -> UserFunction:
    if spec.source is not None:
        # A private module object: never in sys.modules, so two registries' versions of the same
        # module (or a rebuild's older one) never share state.
        module = types.ModuleType(f"skewless_on_demand.{spec.name}.{spec.module_name}")
        try:
            where = f"<registry: on-demand view {spec.name}, module {spec.module_name}>"
            code = compile(spec.source, where, "exec")
            exec(code, module.__dict__)  # the applied registry's own on-demand code
        except Exception as exc:
            raise _error(spec, f"importing its module failed: {type(exc).__name__}: {exc}") from exc
    else:
        try:
            module = importlib.import_module(spec.module_name)
            path = inspect.getsourcefile(module)
            with open(path or "", encoding="utf-8") as handle:
                current = hashlib.sha256(handle.read().encode("utf-8")).hexdigest()
        except (ImportError, OSError, TypeError) as exc:
            raise _error(spec, f"cannot import module {spec.module_name!r}: {exc}") from exc
        if current != spec.source_hash:
            raise _error(
                spec,
                f"installed module {spec.module_name!r} ({path}) is not the code the registry was applied"
                f" with (source {current[:12]}, registry {spec.source_hash[:12]}); install that version"
                " or re-apply",
            )
    function = getattr(module, spec.function_name, None)
    if not callable(function):
        raise _error(spec, f"module {spec.module_name!r} has no function {spec.function_name!r}")
    return function  # type: ignore[no-any-return]


def to_frame(spec: OnDemandSpec, batch: pa.Table | pa.RecordBatch) -> pd.DataFrame:
    """The function's input: one Arrow-backed column per request field and input (nulls ``pd.NA``)."""
    import pandas as pd
    import pyarrow as pa

    schema = input_schema(spec)
    arrays = []
    for field in schema:
        column = batch.column(batch.schema.get_field_index(field.name))
        arrays.append(column if column.type == field.type else column.cast(field.type))
    table = pa.Table.from_arrays(arrays, schema=schema)
    return table.to_pandas(types_mapper=pd.ArrowDtype)


def _castable(source: pa.DataType, target: pa.DataType) -> bool:
    """Only conversions that keep the meaning: numbers among numbers, strings, bools, times, lists."""
    import pyarrow.types as t

    def kind(dtype: pa.DataType) -> str:
        if t.is_integer(dtype) or t.is_floating(dtype):
            return "number"
        if t.is_string(dtype) or t.is_large_string(dtype):
            return "string"
        if t.is_list(dtype) or t.is_large_list(dtype) or t.is_fixed_size_list(dtype):
            return "list"
        return str(dtype).split("[")[0]

    return t.is_null(source) or source == target or kind(source) == kind(target)


def from_frame(spec: OnDemandSpec, result: Any, rows: int) -> pa.Table:
    """Check the function's output and convert it to the declared types."""
    import pandas as pd
    import pyarrow as pa

    if not isinstance(result, pd.DataFrame):
        raise _error(spec, f"returned {type(result).__name__}, not a pandas DataFrame")
    columns = [str(c) for c in result.columns]
    missing = [f for f in spec.feature_names if f not in columns]
    if missing:
        raise _error(spec, f"output lacks feature column(s) {', '.join(missing)}", missing)
    extra = [c for c in columns if c not in spec.feature_names]
    if extra:
        raise _error(
            spec,
            f"output has column(s) {', '.join(extra)} that are not declared features",
            spec.feature_names,
        )
    if len(columns) != len(set(columns)):
        raise _error(spec, "output has a column twice")
    if len(result) != rows:
        raise _error(spec, f"returned {len(result)} rows for {rows} input rows (same length and order)")
    arrays = []
    for field in output_schema(spec):
        series = result[field.name].reset_index(drop=True)
        try:
            array = pa.array(series, from_pandas=True)
            if not _castable(array.type, field.type):
                raise TypeError(f"values of type {array.type}")
            arrays.append(array if array.type == field.type else array.cast(field.type, safe=True))
        except (pa.ArrowException, TypeError, ValueError, OverflowError) as exc:
            dtype = spec.feature(field.name).dtype
            raise _error(spec, f"cannot be read as {dtype}: {exc}", [field.name]) from None
    return pa.Table.from_arrays(arrays, schema=output_schema(spec))


def apply_on_demand(
    spec: OnDemandSpec, batch: pa.Table | pa.RecordBatch, function: UserFunction | None = None
) -> pa.Table:
    """Run the on-demand function of ``spec`` over ``batch``; returns its features, declared types.

    ``batch`` holds the function's frame columns (:func:`frame_columns`; ``request_ts`` is the
    spine time offline and the request time online) and may hold others, which are ignored.
    """
    frame = to_frame(spec, batch)
    call = function or load_function(spec)
    try:
        result = call(frame)
    except Exception as exc:
        raise _error(spec, f"raised {type(exc).__name__}: {exc}") from exc
    return from_frame(spec, result, len(frame))


def uses_request_ts(spec: OnDemandSpec) -> bool:
    return any(r.name == REQUEST_TS for r in spec.request)
