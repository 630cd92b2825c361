"""conformance: the reference plugin of the cross-language conformance suite.

The Rust and Go SDKs ship a plugin with exactly this behaviour, so one suite
can drive all three.

Functions (constructor exports; singletons when the environment has
OORT_CONFORMANCE_SINGLETON=1 — the source and sink stay constructors, as in
the Rust reference plugin):

- `cf_echo(x)` -> x. Validate: exactly one argument, else
  `cf_echo expects 1 argument, got N`. A VectorizedFunction (so the plugin
  lists the columnar encoding): a columnar batch is answered with the
  argument's array as received, a row batch with the same values.
- `cf_fail(x)` -> the row error `cf_fail: <x>` when x is a string starting with
  "bad", else x.
- `cf_count(key)` -> incr_counter(key, 1), then get_counter(key).
- `cf_state(op, key[, value])` -> "put": put_state(key, value), True; "get":
  get_state(key) (None when absent); "delete": delete_state(key), True;
  "incr": incr_counter(key, value), then get_counter(key); "counter":
  get_counter(key) (a row error on a non-counter value).
- `cf_pid()` -> the process id.
- `cf_agg(values)` -> an aggregate (`is_aggregate()` is True): one row per
  group, `values` the group's list. Returns {"n": number of items, nulls
  included, "sum": sum of the int items, every other item (null, string,
  float, bool, ...) skipped, wrapping on int64 overflow}, then
  incr_counter("groups", 1). A non-list is the row error
  `cf_agg expects a list, got <type>`. Validate: exactly one argument.

Source `conformance`: property `count` (int, default 100). Emits {"n": i} for
i = next .. count-1 in batches of at most `max`, then idles. Rewindable: the
offset is the next i, and rewind(k) sets next = k (0 <= k <= count). Columnar
too: `read_columns` reads the same records from the same cursor as one int64
column "n" (a batch of no rows when idle).

Sink `conformance`: property `path` (required). Appends each record's fields as
one JSON object per line (sorted keys, no spaces). Transactional: pre_commit
flushes and fsyncs the file and returns its length in bytes; commit and abort
append `commit <id> <handle>` / `abort <id> <handle>` to `<path>.commits`.
Columnar too: `collect_columns` writes the lines `collect` writes for the
records the columns stand for (one per row, a null cell an absent field).

Source and sink keep their per-instance data keyed by instance id, so the same
objects would also work as singletons shared by several rules.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from typing import Any, TextIO

import pyarrow as pa

from oort_plugin import ArgSpec, Context, Function, Plugin, Record, Sink, Source, VectorizedFunction, serve

# --------------------------------------------------------------------------
# Functions
# --------------------------------------------------------------------------


# Argument errors use the Rust reference plugin's texts.


def _amount(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise ValueError("incr needs an integer amount")
    return v


class Echo(VectorizedFunction):
    def validate(self, args: list[ArgSpec]) -> None:
        if len(args) != 1:
            raise ValueError(f"cf_echo expects 1 argument, got {len(args)}")

    def exec_columns(self, ctx: Context, args: list[pa.Array]) -> pa.Array:
        # Validate refuses other arities; without an argument, as exec: null.
        return args[0] if args else pa.nulls(ctx.batch_rows)

    def exec(self, ctx: Context, args: list[Any]) -> Any:
        # The SDK calls this for rows whose values make no Arrow column (a
        # list or map, values of several types in one batch). The default
        # would go through a one-row array, which refuses a value it cannot
        # hold exactly ([1, 2.5]): an echo needs no array to return its value.
        return args[0] if args else None


class Fail(Function):
    def exec(self, ctx: Context, args: list[Any]) -> Any:
        x = args[0] if args else None
        if isinstance(x, str) and x.startswith("bad"):
            raise ValueError(f"cf_fail: {x}")
        return x


class Count(Function):
    def exec(self, ctx: Context, args: list[Any]) -> Any:
        key = args[0] if args else None
        if not isinstance(key, str):
            raise ValueError("cf_count(key) needs a string key")
        ctx.incr_counter(key, 1)
        return ctx.get_counter(key)


class State(Function):
    def exec(self, ctx: Context, args: list[Any]) -> Any:
        op = args[0] if args else None
        key = args[1] if len(args) > 1 else None
        if not isinstance(op, str) or not isinstance(key, str):
            raise ValueError("cf_state(op, key[, value])")
        value = args[2] if len(args) > 2 else None
        if op == "put":
            ctx.put_state(key, value)
            return True
        if op == "get":
            return ctx.get_state(key)
        if op == "delete":
            ctx.delete_state(key)
            return True
        if op == "incr":
            ctx.incr_counter(key, _amount(value))
            return ctx.get_counter(key)
        if op == "counter":
            return ctx.get_counter(key)
        raise ValueError(f"unknown op {json.dumps(op, ensure_ascii=False)}")


def _type_name(v: Any) -> str:
    # The protocol's name of a value's type (docs/protocol.md section 4.4).
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "bool"
    for t, name in ((int, "int"), (float, "float"), (str, "string"), (bytes, "bytes"), (list, "list"), (dict, "map")):
        if isinstance(v, t):
            return name
    return type(v).__name__


def _wrap64(n: int) -> int:
    return (n + (1 << 63)) % (1 << 64) - (1 << 63)


class Agg(Function):
    def validate(self, args: list[ArgSpec]) -> None:
        if len(args) != 1:
            raise ValueError(f"cf_agg expects 1 argument, got {len(args)}")

    def exec(self, ctx: Context, args: list[Any]) -> Any:
        values = args[0] if args else None
        if not isinstance(values, list):
            raise ValueError(f"cf_agg expects a list, got {_type_name(values)}")
        total = _wrap64(sum(v for v in values if isinstance(v, int) and not isinstance(v, bool)))
        ctx.incr_counter("groups", 1)
        return {"n": len(values), "sum": total}

    def is_aggregate(self) -> bool:
        return True


class Pid(Function):
    def exec(self, ctx: Context, args: list[Any]) -> Any:
        return os.getpid()


# --------------------------------------------------------------------------
# Source
# --------------------------------------------------------------------------


class _Cursor:
    __slots__ = ("count", "next")

    def __init__(self, count: int) -> None:
        self.count = count
        self.next = 0


def _count_prop(props: dict[str, Any]) -> int:
    v = props.get("count", 100)
    if isinstance(v, str) and v.strip().lstrip("-").isdigit():
        v = int(v)
    elif isinstance(v, float) and v.is_integer():
        v = int(v)
    if isinstance(v, bool) or not isinstance(v, int):
        raise ValueError("count must be an integer")
    return v


class CountingSource(Source):
    IDLE_S = 0.05

    def __init__(self) -> None:
        self._cursors: dict[str, _Cursor] = {}
        # offset() has no context: it follows the read() just before it, which
        # the SDK calls under the same lock.
        self._last: _Cursor | None = None

    def open(self, ctx: Context, datasource: str, props: dict[str, Any]) -> None:
        self._cursors[ctx.instance_id] = _Cursor(_count_prop(props))

    def read(self, ctx: Context, max: int) -> list[Record]:
        c = self._cursors[ctx.instance_id]
        self._last = c
        if c.next >= c.count:
            time.sleep(self.IDLE_S)
            return []
        end = min(c.count, c.next + max)
        out = [Record({"n": i}) for i in range(c.next, end)]
        c.next = end
        return out

    def read_columns(self, ctx: Context, max: int) -> pa.RecordBatch | None:
        # The same records as read, from the same cursor. When idle, a batch
        # of no rows: None would have the SDK call read, which idles again.
        c = self._cursors[ctx.instance_id]
        self._last = c
        if c.next >= c.count:
            time.sleep(self.IDLE_S)
        end = c.next if c.next >= c.count else min(c.count, c.next + max)
        column = pa.array(range(c.next, end), type=pa.int64())
        c.next = end
        return pa.RecordBatch.from_arrays([column], names=["n"])

    def rewindable(self) -> bool:
        return True

    def offset(self) -> Any:
        return None if self._last is None else self._last.next

    def rewind(self, ctx: Context, offset: Any) -> None:
        c = self._cursors[ctx.instance_id]
        if isinstance(offset, bool) or not isinstance(offset, int) or not 0 <= offset <= c.count:
            raise ValueError(f"offset {offset!r} is outside 0..={c.count}")
        c.next = offset

    def close(self, ctx: Context) -> None:
        c = self._cursors.pop(ctx.instance_id, None)
        if c is not None and self._last is c:
            self._last = None


# --------------------------------------------------------------------------
# Sink
# --------------------------------------------------------------------------


def _jsonable(v: Any) -> Any:
    # As the Rust SDK's Value::to_json: bytes become a list of numbers and
    # non-finite floats become null.
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, (bytes, bytearray)):
        return list(v)
    if isinstance(v, list):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    return v


def _handle_text(handle: Any) -> str:
    # The handle as compact JSON: an int handle is just its digits.
    return json.dumps(_jsonable(handle), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class _Out:
    __slots__ = ("path", "file")

    def __init__(self, path: str, file: TextIO) -> None:
        self.path = path
        self.file = file


class JsonLinesSink(Sink):
    def __init__(self) -> None:
        self._outs: dict[str, _Out] = {}

    def open(self, ctx: Context, props: dict[str, Any]) -> None:
        path = props.get("path")
        if not isinstance(path, str) or not path:
            raise ValueError("the conformance sink needs `path`")
        self._outs[ctx.instance_id] = _Out(path, open(path, "a", encoding="utf-8"))

    def collect(self, ctx: Context, records: list[Record]) -> None:
        out = self._outs[ctx.instance_id]
        dumps = json.dumps
        lines = [dumps(_jsonable(r.fields), sort_keys=True, separators=(",", ":")) + "\n" for r in records]
        out.file.write("".join(lines))
        out.file.flush()

    def collect_columns(self, ctx: Context, batch: pa.RecordBatch) -> None:
        # The records the columns stand for, as the SDK hands them to a sink
        # without collect_columns: one per row, a field per column, a null
        # cell an absent field (to_pylist gives the values a row batch does).
        records = [Record() for _ in range(batch.num_rows)]
        for name, column in zip(batch.schema.names, batch.columns):
            for record, v in zip(records, column.to_pylist()):
                if v is not None:
                    record.fields[name] = v
        self.collect(ctx, records)

    def transactional(self) -> bool:
        return True

    def pre_commit(self, ctx: Context, checkpoint_id: int) -> Any:
        out = self._outs[ctx.instance_id]
        out.file.flush()
        os.fsync(out.file.fileno())
        return os.fstat(out.file.fileno()).st_size

    def commit(self, ctx: Context, checkpoint_id: int, handle: Any) -> None:
        self._log(ctx, "commit", checkpoint_id, handle)

    def abort(self, ctx: Context, checkpoint_id: int, handle: Any) -> None:
        self._log(ctx, "abort", checkpoint_id, handle)

    def _log(self, ctx: Context, what: str, checkpoint_id: int, handle: Any) -> None:
        out = self._outs[ctx.instance_id]
        with open(out.path + ".commits", "a", encoding="utf-8") as f:
            f.write(f"{what} {checkpoint_id} {_handle_text(handle)}\n")

    def close(self, ctx: Context) -> None:
        out = self._outs.pop(ctx.instance_id, None)
        if out is not None:
            out.file.close()


# --------------------------------------------------------------------------
# Export
# --------------------------------------------------------------------------

FUNCTIONS: dict[str, Callable[[], Function]] = {
    "cf_echo": Echo,
    "cf_fail": Fail,
    "cf_count": Count,
    "cf_state": State,
    "cf_pid": Pid,
    "cf_agg": Agg,
}


def build(singleton: bool) -> Plugin:
    p = Plugin("conformance", "1.0.0")
    for name, make in FUNCTIONS.items():
        if singleton:
            p.function(name, singleton=make())
        else:
            p.function(name, constructor=make)
    return p.source(CountingSource).sink(JsonLinesSink)


if __name__ == "__main__":
    serve(build(os.environ.get("OORT_CONFORMANCE_SINGLETON") == "1"))
