"""A plugin with a columnar source and sink, for test_columnar_io.py:
`python columnar_io_plugin.py [rows|factory]`.

The sinks put what they received under the state key "got", so that the test
reads it from the acknowledgement's mutations. With `rows` it exports a sink
and a source without columnar methods; with `factory` the columnar sink comes
from a factory function, which Plugin.sink cannot recognise.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import pyarrow as pa

from oort_plugin import Context, ItemErrors, Plugin, Record, Sink, Source, serve


class ColumnSink(Sink):
    """Keeps each batch's rows; a row whose "a" is -1 is refused on its own."""

    def open(self, ctx: Context, props: dict[str, Any]) -> None:
        pass

    def collect(self, ctx: Context, records: list[Record]) -> ItemErrors:
        ctx.put_state("got", {"via": "records", "rows": [r.fields for r in records]})
        return None

    def collect_columns(self, ctx: Context, batch: pa.RecordBatch) -> ItemErrors:
        rows = batch.to_pylist()
        ctx.put_state("got", {"via": "columns", "rows": rows, "types": [str(t) for t in batch.schema.types]})
        if any(r.get("a") == -1 for r in rows):
            return ["minus one" if r.get("a") == -1 else None for r in rows]
        return None


class RowSink(Sink):
    """A sink written against records only."""

    def open(self, ctx: Context, props: dict[str, Any]) -> None:
        pass

    def collect(self, ctx: Context, records: list[Record]) -> ItemErrors:
        ctx.put_state("got", {"via": "records", "rows": [r.fields for r in records]})
        return None


class Counter(Source):
    """Emits n = 0, 1, ... count-1 as rows; rewindable."""

    def __init__(self) -> None:
        self.next = 0
        self.count = 0

    def open(self, ctx: Context, datasource: str, props: dict[str, Any]) -> None:
        self.count = int(props.get("count", 0))

    def read(self, ctx: Context, max: int) -> list[Record]:
        out: list[Record] = []
        while self.next < self.count and len(out) < max:
            out.append(Record({"n": self.next}))
            self.next += 1
        if not out:
            time.sleep(0.02)
        return out

    def rewindable(self) -> bool:
        return True

    def offset(self) -> Any:
        return self.next

    def rewind(self, ctx: Context, offset: Any) -> None:
        self.next = int(offset)


class ColumnCounter(Counter):
    """Counter that reads columns {n} while n < 4, {n, tag} while n < 6 (tag
    null for 5), then rows (read_columns returns None). The datasource "dup"
    returns a batch that names a field twice."""

    def open(self, ctx: Context, datasource: str, props: dict[str, Any]) -> None:
        super().open(ctx, datasource, props)
        self.dup = datasource == "dup"

    def read_columns(self, ctx: Context, max: int) -> pa.RecordBatch | None:
        if self.dup:
            return pa.RecordBatch.from_arrays([pa.array([1]), pa.array([2])], names=["x", "x"])
        if self.next >= min(self.count, 6):
            return None
        tagged = self.next >= 4
        end = min(self.next + max, self.count, 6 if tagged else 4)
        ns = list(range(self.next, end))
        self.next = end
        if not tagged:
            return pa.RecordBatch.from_arrays([pa.array(ns, type=pa.int64())], names=["n"])
        tags = [None if n == 5 else f"t{n}" for n in ns]
        columns = [pa.array(ns, type=pa.int64()), pa.array(tags, type=pa.string())]
        return pa.RecordBatch.from_arrays(columns, names=["n", "tag"])


def build() -> Plugin:
    mode = sys.argv[1:]
    if mode == ["rows"]:
        return Plugin("colio", "0.0.1").source(Counter).sink(RowSink)
    if mode == ["factory"]:
        return Plugin("colio", "0.0.1").sink(lambda: ColumnSink())
    return Plugin("colio", "0.0.1").source(ColumnCounter).sink(ColumnSink)


if __name__ == "__main__":
    serve(build())
