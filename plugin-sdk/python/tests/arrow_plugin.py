"""A plugin with vectorized functions, for test_arrow.py: `python arrow_plugin.py [factory]`.

With `factory` it exports one VectorizedFunction through a factory function,
which Plugin.function cannot recognise: Describe must still list Arrow.
"""

from __future__ import annotations

import array
import sys
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from oort_plugin import Context, Function, Plugin, VectorizedFunction, serve


class VEcho(VectorizedFunction):
    """The first argument's array, as received."""

    def exec_columns(self, ctx: Context, args: list[pa.Array]) -> pa.Array:
        return args[0]


class VFail(VectorizedFunction):
    """Fails the whole batch when any value of its argument is "boom", after a
    state change that must still reach the supervisor."""

    def exec_columns(self, ctx: Context, args: list[pa.Array]) -> pa.Array:
        ctx.incr_counter("batches", 1)
        if "boom" in args[0].to_pylist():
            raise ValueError("boom in the batch")
        return args[0]


class VRowNo(VectorizedFunction):
    """Zero arguments: the row number in the batch, and a counter of rows seen."""

    def exec_columns(self, ctx: Context, args: list[pa.Array]) -> pa.Array:
        assert args == []
        ctx.incr_counter("rows", ctx.batch_rows)
        return pa.array(range(ctx.batch_rows), type=pa.int64())


class VDouble(VectorizedFunction):
    """x * 2, returned as a sequence that is not Arrow: a numpy array when
    numpy is installed (the SDK's venv leaves it out: it slows pyarrow's
    import), else a stdlib array.array, which takes the same path."""

    def exec_columns(self, ctx: Context, args: list[pa.Array]) -> Any:
        try:
            import numpy as np
        except ImportError:
            typecode = "q" if pa.types.is_integer(args[0].type) else "d"
            return array.array(typecode, [float("nan") if v is None else v * 2 for v in args[0].to_pylist()])
        return np.asarray(args[0].to_numpy(zero_copy_only=False)) * 2


class VChunked(VectorizedFunction):
    """upper(s) as a chunked array of two chunks."""

    def exec_columns(self, ctx: Context, args: list[pa.Array]) -> Any:
        upper = pc.utf8_upper(args[0])
        half = len(upper) // 2
        return pa.chunked_array([upper.slice(0, half), upper.slice(half)], type=upper.type)


class VMixed(VectorizedFunction):
    """A list of values of several types, which no one column holds."""

    def exec_columns(self, ctx: Context, args: list[pa.Array]) -> Any:
        return [i if i % 2 else str(i) for i in range(ctx.batch_rows)]


class VShort(VectorizedFunction):
    """One value too few: every row fails."""

    def exec_columns(self, ctx: Context, args: list[pa.Array]) -> pa.Array:
        return args[0].slice(1)


class VDict(VectorizedFunction):
    """A dictionary-encoded result: sent decoded (the protocol has no dictionaries)."""

    def exec_columns(self, ctx: Context, args: list[pa.Array]) -> pa.Array:
        return args[0].dictionary_encode()


class VTypes(VectorizedFunction):
    """The Arrow type of each argument, once per row."""

    def exec_columns(self, ctx: Context, args: list[pa.Array]) -> Any:
        return [",".join(str(a.type) for a in args)] * ctx.batch_rows


class Echo(Function):
    def exec(self, ctx: Context, args: list[Any]) -> Any:
        return args[0]


class Types(Function):
    """Every argument as [type name, value]: what a row function was given."""

    def exec(self, ctx: Context, args: list[Any]) -> Any:
        return [[type(a).__name__, a] for a in args]


class Fail(Function):
    def exec(self, ctx: Context, args: list[Any]) -> Any:
        if args[0] == "bad":
            raise ValueError(f"bad row {args[1]}")
        ctx.incr_counter("ok", 1)
        return args[0]


class Count(Function):
    def exec(self, ctx: Context, args: list[Any]) -> Any:
        return ctx.incr_counter(str(args[0]), 1)


class Arity(Function):
    def exec(self, ctx: Context, args: list[Any]) -> Any:
        return len(args)


def build() -> Plugin:
    if sys.argv[1:] == ["factory"]:
        return Plugin("arrowy", "0.0.1").function("vecho", lambda: VEcho())
    return (
        Plugin("arrowy", "0.0.1")
        .function("vecho", singleton=VEcho())
        .function("vfail", VFail)
        .function("vrowno", VRowNo)
        .function("vdouble", singleton=VDouble())
        .function("vchunked", singleton=VChunked())
        .function("vmixed", singleton=VMixed())
        .function("vshort", singleton=VShort())
        .function("vdict", singleton=VDict())
        .function("vtypes", singleton=VTypes())
        .function("echo", singleton=Echo())
        .function("types", singleton=Types())
        .function("fail", Fail)
        .function("count", Count)
        .function("arity", singleton=Arity())
    )


if __name__ == "__main__":
    serve(build())
