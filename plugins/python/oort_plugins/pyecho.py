"""pyecho: the Python echo plugin of the data-path benchmarks.

Two singleton functions that return their first argument, so that a benchmark
measures the SDK and the encoding, not the function:

- `echo(x)`: a VectorizedFunction. Columnar batches (Arrow IPC) are answered
  with the argument's array as received, without a conversion per value.
- `echo_rows(x)`: the row API (`Function.exec`, one call per row). It gets
  the same values from a columnar batch as from a row batch.

Both are singletons: one process serves every rule.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from oort_plugin import ArgSpec, Context, Function, Plugin, VectorizedFunction, serve


def _one_argument(name: str, args: list[Any]) -> None:
    # Validate refuses other arities; a batch without arguments fails the same way.
    if len(args) != 1:
        raise ValueError(f"{name} expects 1 argument, got {len(args)}")


class Echo(VectorizedFunction):
    def validate(self, args: list[ArgSpec]) -> None:
        _one_argument("echo", args)

    def exec_columns(self, ctx: Context, args: list[pa.Array]) -> pa.Array:
        if len(args) != 1:
            _one_argument("echo", args)
        return args[0]

    def exec(self, ctx: Context, args: list[Any]) -> Any:
        # Rows whose values make no column (lists, maps, mixed types): an echo
        # returns each value as it came, without a one-row array.
        if len(args) != 1:
            _one_argument("echo", args)
        return args[0]


class EchoRows(Function):
    def validate(self, args: list[ArgSpec]) -> None:
        _one_argument("echo_rows", args)

    def exec(self, ctx: Context, args: list[Any]) -> Any:
        if len(args) != 1:
            _one_argument("echo_rows", args)
        return args[0]


def build() -> Plugin:
    return Plugin("pyecho", "1.0.0").function("echo", singleton=Echo()).function("echo_rows", singleton=EchoRows())


if __name__ == "__main__":
    serve(build())
