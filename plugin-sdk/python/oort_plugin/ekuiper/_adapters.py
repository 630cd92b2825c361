"""Adapters from eKuiper's portable shapes to the Oort SDK's `Function`,
`Source` and `Sink`."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from .. import _api as oort
from .._context import Context as OortContext
from .._values import Record
from ._api import Context, Function, Sink, Source, SourceClosedError, _Acks, _EmitBuffer

#: How many emitted records a push source may have waiting for `Read` before
#: `ctx.emit` blocks.
EMIT_BUFFER = 1024

#: How long `Read` waits for the first record (the SDK's ~100 ms contract).
READ_WAIT_S = 0.1

#: How long `close` waits for the `open` loop to return after `close(ctx)`. A
#: loop still asleep then ends by itself at its next `emit` (it raises) or
#: stop-flag check; its thread does not keep the process alive.
CLOSE_WAIT_S = 0.5


class FunctionAdapter(oort.Function):
    """An eKuiper portable function as an Oort function.

    eKuiper runs one object per function symbol and calls it from one thread;
    the adapter is exported as a singleton and serialises the calls too.
    """

    def __init__(self, fn: Function) -> None:
        self.fn = fn
        self._lock = threading.Lock()

    def validate(self, args: list[oort.ArgSpec]) -> None:
        with self._lock:
            err = self.fn.validate(list(args))
        if err:
            raise ValueError(str(err))

    def exec(self, ctx: OortContext, args: list[Any]) -> Any:
        with self._lock:
            return self.fn.exec(args, Context(ctx))

    def is_aggregate(self) -> bool:
        return bool(self.fn.is_aggregate())


class SourceAdapter(oort.Source):
    """A push-style eKuiper source as an Oort pull source.

    `open` configures the source and starts its `open(ctx)` loop in a daemon
    thread; what the loop emits waits in a bounded buffer that `read` drains.
    `close` calls the source's `close(ctx)`, closes the buffer (a blocked
    `emit` raises `SourceClosedError`) and waits a moment for the loop.
    """

    def __init__(self, source: Source, capacity: int = EMIT_BUFFER) -> None:
        self.source = source
        self.buffer = _EmitBuffer(capacity)
        self._thread: threading.Thread | None = None
        self._ctx: Context | None = None
        self._failure: str | None = None

    def open(self, ctx: OortContext, datasource: str, props: dict[str, Any]) -> None:
        self.source.configure(datasource, dict(props))
        ek = Context(ctx, emitter=self.buffer)
        self._ctx = ek
        self._thread = threading.Thread(
            target=self._run, args=(ek,), name=f"ekuiper-source {ctx.instance_id}", daemon=True
        )
        self._thread.start()

    def _run(self, ctx: Context) -> None:
        try:
            self.source.open(ctx)
        except SourceClosedError:
            pass
        except Exception as e:
            if not self.buffer.closed:
                text = str(e) or type(e).__name__
                ctx.oort.logger.error("the source's open loop failed: %s", text, exc_info=True)
                ctx.oort.report_exception(f"source open loop failed: {text}")

    def read(self, ctx: OortContext, max: int) -> Sequence[Record]:
        return self.buffer.take(max, READ_WAIT_S)

    def close(self, ctx: OortContext) -> None:
        ek = self._ctx or Context(ctx, emitter=self.buffer)
        try:
            self.source.close(ek)
        finally:
            self.buffer.close()
            t = self._thread
            if t is not None and t is not threading.current_thread():
                t.join(CLOSE_WAIT_S)
                if t.is_alive():
                    ctx.logger.info(
                        "the source's open loop is still running %.1fs after close; it ends at its next emit",
                        CLOSE_WAIT_S,
                    )


def _truthy(v: Any) -> bool:
    if isinstance(v, str):
        return v.strip().lower() in ("true", "1", "yes")
    return bool(v)


#: The error of a payload whose `collect` returned without `ack_ok` or
#: `ack_error` while `requireAck` is set: the sink promised to confirm every
#: delivery, and silence is no confirmation (eKuiper too reports an item as
#: failed when its ack does not come).
NO_ACK = "collect returned without ack_ok or ack_error (requireAck is set)"


class SinkAdapter(oort.PayloadSink):
    """An eKuiper portable sink as an Oort payload sink.

    As in eKuiper's portable runtime, `collect(ctx, data)` receives bytes the
    engine encoded per the rule action's `format`, `dataTemplate`,
    `sendSingle`, `fields` and `delimiter` (the supervisor does the encoding):
    one call per payload. Each payload's outcome is one of the batch's
    per-item errors, "" when delivered:

    - with the action property `requireAck` true (eKuiper's): what `collect`
      acked. `ack_error(e)` fails the payload with `str(e)` (the first one, if
      it acks several times), `ack_ok()` delivers it, no ack at all fails it
      with `NO_ACK`, and an exception fails it with its message, acks or not;
    - without `requireAck`: an exception fails the payload with its message,
      otherwise it is delivered; acks are ignored.

    A failed payload does not keep the batch's later payloads from being
    collected, and the batch itself is accepted: the supervisor counts each
    failed payload as an exception of the sink. Acks count only while
    `collect` runs.
    """

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self._acks = _Acks()
        self._ctx: Context | None = None
        self._require_ack = False

    def open(self, ctx: OortContext, props: dict[str, Any]) -> None:
        self._require_ack = _truthy(props.get("requireAck", False))
        self.sink.configure(dict(props))
        ek = Context(ctx, acks=self._acks)
        self._ctx = ek
        self.sink.open(ek)

    def collect_payloads(self, ctx: OortContext, payloads: list[bytes]) -> list[str]:
        ek = self._ctx or Context(ctx, acks=self._acks)
        return [self._collect_one(ek, data) for data in payloads]

    def _collect_one(self, ek: Context, data: bytes) -> str:
        self._acks.reset()
        try:
            self.sink.collect(ek, data)
        except Exception as e:
            ek.oort.logger.debug("collect failed", exc_info=True)
            return str(e) or type(e).__name__
        if not self._require_ack:
            return ""
        if self._acks.errors:
            # "" would read as delivered: an ack_error without a message still fails.
            return self._acks.errors[0] or "ack_error"
        return "" if self._acks.oks else NO_ACK

    def close(self, ctx: OortContext) -> None:
        self.sink.close(self._ctx or Context(ctx, acks=self._acks))
