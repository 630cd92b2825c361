"""csvsink: appends records to a CSV file.

Properties:

- `path` (required): the file, relative to the supervisor's working directory.
- `fields` (optional): the columns, in order. Without it, an existing file's
  header is reused, and a new file takes the first record's field names.

A new or empty file gets a header line first. Each record is one line; a field
missing from a record is an empty cell and fields outside the columns are
dropped. NULL is an empty cell, bytes are hex, lists and maps are JSON.
"""

from __future__ import annotations

import csv
import io
import json
import os
from typing import Any, TextIO

from oort_plugin import Context, Plugin, Record, Sink, serve


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (bytes, bytearray)):
        return bytes(v).hex()
    if isinstance(v, (list, dict)):
        return json.dumps(v, separators=(",", ":"), default=lambda b: bytes(b).hex())
    return str(v)


class CsvSink(Sink):
    def __init__(self) -> None:
        self._file: TextIO | None = None
        self._columns: list[str] | None = None
        self._has_header = False
        self._buf = io.StringIO()
        self._writer = csv.writer(self._buf, lineterminator="\n")

    def open(self, ctx: Context, props: dict[str, Any]) -> None:
        path = props.get("path")
        if not isinstance(path, str) or not path:
            raise ValueError('property "path" is required (a file name)')
        fields = props.get("fields")
        if fields is not None:
            if not isinstance(fields, list) or not fields or not all(isinstance(f, str) for f in fields):
                raise ValueError('property "fields" must be a non-empty list of strings')
            self._columns = list(fields)
        header: list[str] | None = None
        if os.path.exists(path) and os.path.getsize(path) > 0:
            with open(path, newline="", encoding="utf-8") as f:
                header = next(csv.reader(f), None)
        if self._columns is None and header:
            self._columns = header
        self._file = open(path, "a", newline="", encoding="utf-8")
        self._has_header = bool(header)
        ctx.logger.info("appending to %s", path)

    def collect(self, ctx: Context, records: list[Record]) -> None:
        if self._file is None:
            raise RuntimeError("the sink is not open")
        if not records:
            return
        if self._columns is None:
            self._columns = list(records[0].fields)
        cols = self._columns
        w = self._writer
        if not self._has_header:
            w.writerow(cols)
            self._has_header = True
        for r in records:
            fields = r.fields
            w.writerow([_cell(fields.get(c)) for c in cols])
        self._file.write(self._buf.getvalue())
        self._file.flush()
        self._buf.seek(0)
        self._buf.truncate()

    def close(self, ctx: Context) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


PLUGIN = Plugin("csvsink", "1.0.0").sink(CsvSink)

if __name__ == "__main__":
    serve(PLUGIN)
