"""The eklines sink, in eKuiper's portable Python style.

conf: `path` (required), the file to append JSON lines to; `requireAck`
(eKuiper's): ack each piece of data; `rejectField`: a payload with a row whose
field of that name is true is not written (and with acks on, refused with
`ack_error`). Payloads must be JSON, the default `format`: one row, or with
`sendSingle` false a list of rows.
"""

import json
from typing import Any, Dict, Optional, TextIO

from oort_plugin.ekuiper import Context, Sink


class LinesSink(Sink):
    def __init__(self) -> None:
        self.path = ""
        self.require_ack = False
        self.reject_field = ""
        self.file: Optional[TextIO] = None

    def configure(self, conf: Dict[str, Any]) -> None:
        path = conf.get("path")
        if not isinstance(path, str) or not path:
            raise ValueError("eklines needs a path")
        self.path = path
        self.require_ack = bool(conf.get("requireAck", False))
        self.reject_field = str(conf.get("rejectField", ""))

    def open(self, ctx: Context) -> None:
        self.file = open(self.path, "a", encoding="utf-8")

    def collect(self, ctx: Context, data: Any) -> None:
        rows = json.loads(data)
        if isinstance(rows, dict):
            rows = [rows]
        if self.reject_field:
            for row in rows:
                if row.get(self.reject_field) is True:
                    if self.require_ack:
                        ctx.ack_error("row rejected: {}".format(json.dumps(row, sort_keys=True)))
                    return
        assert self.file is not None
        for row in rows:
            self.file.write(json.dumps(row, sort_keys=True) + "\n")
        self.file.flush()
        if self.require_ack:
            ctx.ack_ok()

    def close(self, ctx: Context) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None
