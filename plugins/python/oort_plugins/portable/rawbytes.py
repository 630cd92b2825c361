"""The ekbytes sink, in eKuiper's portable Python style: whatever the rule
engine encoded, one line per payload.

conf: `path` (required), the file to append to; `requireAck` (eKuiper's): ack
each payload, refusing those that contain the text `fail`. The rule action's
`format`, `dataTemplate`, `sendSingle`, `fields` and `delimiter` decide what a
payload is; the sink writes it as it came, so the file shows exactly what
`collect` received.
"""

from typing import Any, BinaryIO, Dict, Optional

from oort_plugin.ekuiper import Context, Sink


class BytesSink(Sink):
    def __init__(self) -> None:
        self.path = ""
        self.require_ack = False
        self.file: Optional[BinaryIO] = None

    def configure(self, conf: Dict[str, Any]) -> None:
        path = conf.get("path")
        if not isinstance(path, str) or not path:
            raise ValueError("ekbytes needs a path")
        self.path = path
        self.require_ack = bool(conf.get("requireAck", False))

    def open(self, ctx: Context) -> None:
        self.file = open(self.path, "ab")

    def collect(self, ctx: Context, data: Any) -> None:
        # Decoded first: a payload that is not UTF-8 raises, which fails that
        # payload only, and nothing of it is written.
        text = data.decode("utf-8")
        assert self.file is not None
        # Every payload is written, also one refused below: the ack only
        # decides what the rule reports (a test can then see both).
        self.file.write((text + "\n").encode("utf-8"))
        self.file.flush()
        if self.require_ack:
            if "fail" in text:
                ctx.ack_error("payload refused: it contains fail")
            else:
                ctx.ack_ok()

    def close(self, ctx: Context) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None
