"""Columnar batches (Arrow IPC, docs/protocol.md "Columnar batches" and
"Columnar sources and sinks").

Everything that touches pyarrow lives here. Importing pyarrow costs tens of
milliseconds of every plugin start, so nothing imports this module at import
time: `Plugin.function` does when a `VectorizedFunction` is exported,
`Plugin.source` and `Plugin.sink` when the source or sink has a columnar
method, the server when it meets its first columnar batch,
`VectorizedFunction.exec` when it is called. A row-only plugin never loads
pyarrow.

pyarrow ships no type information: its objects are typed `Any` here, and every
function that hands one to the SDK says in its docstring what it is.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.ipc  # noqa: F401  (pa.ipc is a submodule: make sure it is loaded)

from ._context import Context
from ._pb import plugin_pb2 as pb
from ._values import Record, fill_value

if TYPE_CHECKING:
    from ._api import Function, VectorizedFunction


class ArrowProtocolError(Exception):
    """A columnar batch this side cannot read: the stream is broken."""


class StreamCodec:
    """The Arrow state of one Exec, Read or Write stream, in both directions.

    The supervisor sends `arrow_schema` only on the first columnar batch of a
    stream and when the schema changes, and expects the same of the answers:
    so each stream keeps the last schema it received (parsed once, not per
    batch) and the last one it sent.
    """

    __slots__ = ("_in_schema", "_out_schema")

    def __init__(self) -> None:
        self._in_schema: Any = None  # pa.Schema
        self._out_schema: Any = None  # pa.Schema

    def read(self, schema_msg: bytes, batch_msg: bytes) -> Any:
        """The pa.RecordBatch of a batch's `arrow_schema` and `arrow`."""
        if schema_msg:
            try:
                self._in_schema = pa.ipc.read_schema(pa.py_buffer(schema_msg))
            except Exception as e:
                raise ArrowProtocolError(f"cannot read the batch's arrow_schema: {e}") from e
        if self._in_schema is None:
            raise ArrowProtocolError("a columnar batch without arrow_schema came first on this stream")
        try:
            return pa.ipc.read_record_batch(pa.py_buffer(batch_msg), self._in_schema)
        except Exception as e:
            raise ArrowProtocolError(f"cannot read the batch's arrow record batch: {e}") from e

    def write(self, out: pb.ExecResult, column: Any) -> None:
        """Sets `out.arrow` (and `out.arrow_schema` when it is new on this
        stream) to a record batch of the one pa.Array `column`, named result."""
        out.arrow_schema, out.arrow = self.encode(pa.RecordBatch.from_arrays([column], names=["result"]))

    def encode(self, batch: Any) -> tuple[bytes, bytes]:
        """The messages of a pa.RecordBatch: its schema message (b"" when the
        schema is the one sent last on this stream) and its record-batch
        message."""
        schema_msg = b""
        schema = batch.schema
        if self._out_schema is None or not schema.equals(self._out_schema):
            schema_msg = schema.serialize().to_pybytes()
            self._out_schema = schema
        return schema_msg, batch.serialize().to_pybytes()


# --------------------------------------------------------------------------
# Values <-> arrays
# --------------------------------------------------------------------------


def columns_as_rows(batch: Any) -> list[list[Any]]:
    """The argument rows of a pa.RecordBatch, as the row encoding would give
    them: to_pylist yields None, bool, int (uint64 included), float, str and
    bytes, the same values `from_pb` reads from the row messages."""
    n = batch.num_rows
    if batch.num_columns == 0:
        return [[] for _ in range(n)]
    return [list(r) for r in zip(*(c.to_pylist() for c in batch.columns))]


def records_of(batch: Any) -> list[Record]:
    """The records a columnar batch of fields (a pa.RecordBatch) stands for,
    as the row encoding would give them: one per row, a field per column, a
    null cell read as an absent field (columns cannot tell them apart, and the
    supervisor reads them so too)."""
    names = batch.schema.names
    records = [Record() for _ in range(batch.num_rows)]
    for name, column in zip(names, batch.columns):
        for record, v in zip(records, column.to_pylist()):
            if v is not None:
                record.fields[name] = v
    return records


def source_columns(batch: Any, max_rows: int) -> Any:
    """What `read_columns` returned, checked as the supervisor will read it:
    a pa.RecordBatch of at most `max_rows` rows, each field name once, each
    column cast to a type Oort carries (see `_carriable`)."""
    if not isinstance(batch, pa.RecordBatch):
        raise TypeError(f"expected a pyarrow.RecordBatch, not {type(batch).__name__}")
    if batch.num_rows > max_rows:
        raise ValueError(f"returned {batch.num_rows} rows, more than the {max_rows} asked for")
    names = batch.schema.names
    seen: set[str] = set()
    columns = []
    for name, column in zip(names, batch.columns):
        if name in seen:
            raise ValueError(f"field {name!r} appears twice")
        seen.add(name)
        target = _carriable(column.type)
        if target is None:
            raise TypeError(f"field {name!r} is an Arrow {column.type} column, which Oort cannot carry")
        columns.append(column if target.equals(column.type) else column.cast(target))
    if all(c is o for c, o in zip(columns, batch.columns)):
        return batch
    return pa.RecordBatch.from_arrays(columns, names=names)


_SCALAR_TYPES: dict[type, Callable[[], Any]] = {
    bool: pa.bool_,
    float: pa.float64,
    str: pa.string,
    bytes: pa.binary,
}


def array_of(values: Sequence[Any]) -> Any:
    """A pa.Array of scalar Python values, typed as the supervisor types an
    argument column: Null when every value is None, else the one type the
    values share (Int64, or UInt64 when an int is beyond it).

    Raises TypeError for values of several types, which pyarrow would coerce
    (1 and 2.5 both to floats), and for lists and maps, whose inferred list
    and struct types are not exact either ([1, 2.5] would read back as
    [1.0, 2.5]; {"a": 1} and {"b": 2} as two maps with both keys): values
    must reach the function as they are, or not at all."""
    kinds = {type(v) for v in values if v is not None}
    if not kinds:
        return pa.nulls(len(values))
    if len(kinds) == 1:
        kind = next(iter(kinds))
        if kind is int:
            try:
                return pa.array(values, type=pa.int64())
            except (OverflowError, pa.ArrowInvalid):
                return pa.array(values, type=pa.uint64())
        make = _SCALAR_TYPES.get(kind)
        if make is not None:
            return pa.array(values, type=make())
        if kind is bytearray or kind is memoryview:
            return pa.array([None if v is None else bytes(v) for v in values], type=pa.binary())
    names = ", ".join(sorted(k.__name__ for k in kinds))
    raise TypeError(f"values of type {names} do not make one column")


def value_array(v: Any) -> Any:
    """A one-row pa.Array of `v`: a scalar as `array_of` types it; a list or a
    map through pyarrow's inference, when the array gives `v` back exactly."""
    try:
        return array_of([v])
    except TypeError:
        pass
    try:
        arr = pa.array([v])
        exact = _exact(v, arr.to_pylist()[0])
    except Exception:
        exact = False
    if not exact:
        raise TypeError(f"this {type(v).__name__} value has no exact Arrow array: {v!r}")
    return arr


def _exact(a: Any, b: Any) -> bool:
    """Whether `b` equals `a` with the same types all the way down (1 == 1.0
    is not exact; NaN is exactly NaN)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(_exact(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return list(a) == list(b) and all(_exact(a[k], b[k]) for k in a)
    if isinstance(a, float) and a != a:
        return bool(b != b)
    return bool(a == b)


def _is(predicate: str, t: Any) -> bool:
    # The view types and their predicates are newer than the oldest pyarrow
    # the SDK accepts (15): an older pyarrow has no such arrays either.
    test = getattr(pa.types, predicate, None)
    return test is not None and bool(test(t))


def _carriable(t: Any) -> Any:
    """The type an array of type `t` is sent as (the types the supervisor reads,
    docs/protocol.md), or None when there is none."""
    if (
        pa.types.is_null(t)
        or pa.types.is_boolean(t)
        or pa.types.is_integer(t)
        or pa.types.is_float32(t)
        or pa.types.is_float64(t)
        or pa.types.is_string(t)
        or pa.types.is_large_string(t)
        or pa.types.is_binary(t)
        or pa.types.is_large_binary(t)
    ):
        return t
    # Exact equivalents of types the supervisor reads.
    if pa.types.is_float16(t):
        return pa.float32()
    if _is("is_string_view", t):
        return pa.string()
    if _is("is_binary_view", t) or pa.types.is_fixed_size_binary(t):
        return pa.binary()
    if pa.types.is_dictionary(t):
        return _carriable(t.value_type)
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t) or _is("is_list_view", t):
        item = _carriable(t.value_type)
        if item is None:
            return None
        return pa.large_list(item) if pa.types.is_large_list(t) else pa.list_(item)
    if pa.types.is_struct(t):
        fields = []
        for i in range(t.num_fields):
            f = t.field(i)
            ft = _carriable(f.type)
            if ft is None:
                return None
            fields.append(pa.field(f.name, ft))
        return pa.struct(fields)
    return None


def result_of(result: Any, rows: int) -> Any:
    """What `exec_columns` returned, normalised: a pa.Array of a type the
    supervisor reads, or, for a Python list whose values make no exact column
    (see `_exact_column`: ints and strings, lists, maps), the list itself,
    answered as rows, where every value keeps its exact type.
    Raises when it is not one value per row or not carriable."""
    if isinstance(result, pa.ChunkedArray):
        result = result.combine_chunks()
    elif isinstance(result, (list, tuple)):
        values = list(result)
        if len(values) != rows:
            raise ValueError(f"exec_columns returned {len(values)} values for a batch of {rows} rows")
        column = _exact_column(values)
        return values if column is None else column
    elif not isinstance(result, pa.Array):
        # A numpy array (typed by its dtype) or any other sequence pyarrow takes.
        result = pa.array(result)
    if len(result) != rows:
        raise ValueError(f"exec_columns returned {len(result)} values for a batch of {rows} rows")
    target = _carriable(result.type)
    if target is None:
        raise TypeError(f"exec_columns returned an array of type {result.type}, which Oort cannot carry")
    if not target.equals(result.type):
        result = result.cast(target)
    return result


def _values_of(result: Any) -> list[Any]:
    """The Python values of a `result_of`."""
    return result if isinstance(result, list) else list(result.to_pylist())


def _call(fn: VectorizedFunction, ctx: Context, args: list[Any], rows: int) -> Any:
    """Runs exec_columns with `ctx.batch_rows` set, and normalises its result."""
    ctx._batch_rows = rows
    try:
        return result_of(fn.exec_columns(ctx, args), rows)
    finally:
        ctx._batch_rows = 0


def _error_text(e: BaseException) -> str:
    return str(e) or type(e).__name__


# --------------------------------------------------------------------------
# The three ways a batch meets a function
# --------------------------------------------------------------------------


def exec_one(fn: VectorizedFunction, ctx: Context, args: list[Any]) -> Any:
    """VectorizedFunction's row call: exec_columns on one-row arrays."""
    saved = ctx._batch_rows
    try:
        return _values_of(_call(fn, ctx, [value_array(a) for a in args], 1))[0]
    finally:
        ctx._batch_rows = saved


def exec_columns_batch(
    fn: VectorizedFunction, ctx: Context, batch: Any, out: pb.ExecResult, codec: StreamCodec
) -> None:
    """A columnar batch (a pa.RecordBatch) to a VectorizedFunction: the
    argument arrays as received, the answer in columns. An exception fails
    every row: each is null and listed in `errors`."""
    n = batch.num_rows
    if n == 0:
        return  # zero RowResults: a valid answer, without calling user code
    try:
        result = _call(fn, ctx, list(batch.columns), n)
    except Exception as e:
        codec.write(out, pa.nulls(n))
        message = _error_text(e)
        add = out.errors.add
        for i in range(n):
            add(row=i, message=message)
        return
    if isinstance(result, list):
        _fill_rows(out, result)
    else:
        codec.write(out, result)


def exec_row_function_on_columns(fn: Function, ctx: Context, batch: Any, out: pb.ExecResult, codec: StreamCodec) -> None:
    """A columnar batch (a pa.RecordBatch) to a row function: `exec` per row
    on the values the row encoding would give, the answer in columns when
    that is exact (see `_exact_column`; several times faster to encode than
    a RowResult per row), else in rows."""
    exec_ = fn.exec
    values: list[Any] = []
    errors: list[tuple[int, str]] = []
    for i, args in enumerate(columns_as_rows(batch)):
        try:
            values.append(exec_(ctx, args))
        except Exception as e:
            values.append(None)
            errors.append((i, _error_text(e)))
    column = _exact_column(values) if values else None
    if column is not None:
        codec.write(out, column)
        add_error = out.errors.add
        for row, text in errors:
            add_error(row=row, message=text)
        return
    failed = dict(errors)
    add = out.results.add
    for i, v in enumerate(values):
        res = add()
        message = failed.get(i)
        if message is not None:
            res.error = message
            continue
        try:
            fill_value(res.value, v)
        except Exception as e:
            res.error = _error_text(e)


def _exact_column(values: list[Any]) -> Any:
    """A pa.Array that the supervisor reads back as exactly the Values the row
    encoding would send for `values`, or None. Only for scalars of one type:
    a column cannot mix types, and an int column holds either the protocol's
    `int` (Int64) or its `uint` (UInt64) while the row encoding sends each
    int as `int` when it fits and as `uint` above: a column with an int
    above int64 answers in rows. Lists and maps (their inferred types are not
    exact) answer in rows too, and so do subclasses (an IntEnum, a str
    subclass), which the row conversion handles."""
    kinds = {type(v) for v in values}
    kinds.discard(type(None))
    if not kinds:
        return pa.nulls(len(values))
    if len(kinds) != 1:
        return None
    kind = next(iter(kinds))
    make = pa.int64 if kind is int else _SCALAR_TYPES.get(kind)
    if make is None:
        return None
    try:
        return pa.array(values, type=make())
    except Exception:  # an int beyond int64; a str the row conversion refuses too
        return None


def exec_rows_batch(fn: VectorizedFunction, ctx: Context, rows: list[list[Any]], out: pb.ExecResult) -> None:
    """A row batch to a VectorizedFunction: one array per argument built from
    the rows, one exec_columns call, the answer in rows (the encoding the
    supervisor chose). When the arguments do not make columns (values of
    several types, lists or maps, rows of different lengths) every row goes
    through `exec` on its own instead."""
    n = len(rows)
    if n == 0:
        return
    width = len(rows[0])
    try:
        if any(len(r) != width for r in rows):
            raise ValueError("rows of different lengths")
        columns = [array_of([r[i] for r in rows]) for i in range(width)]
    except Exception:
        add = out.results.add
        for r in rows:
            res = add()
            try:
                fill_value(res.value, fn.exec(ctx, r))
            except Exception as e:
                res.error = _error_text(e)
        return
    try:
        values = _values_of(_call(fn, ctx, columns, n))
    except Exception as e:
        message = _error_text(e)
        add = out.results.add
        for _ in range(n):
            add().error = message
        return
    _fill_rows(out, values)


def _fill_rows(out: pb.ExecResult, values: list[Any]) -> None:
    add = out.results.add
    fill = fill_value
    for v in values:
        res = add()
        try:
            fill(res.value, v)
        except Exception as e:
            res.error = _error_text(e)
