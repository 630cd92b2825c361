"""The shapes of eKuiper's portable Python SDK (`ekuiper.Function`, `Source`,
`Sink` and `Context`), for plugins ported from eKuiper.

eKuiper's base classes derive from `object`: their abstract methods are not
enforced, so a plugin that leaves one out still loads. These classes keep that
(every method has a default), so such plugins port unchanged.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from .._context import Context as OortContext
from .._values import Record


class SourceClosedError(Exception):
    """Raised by `Context.emit` once the source is closed, which ends an `open`
    loop that does not watch its own stop flag (as the closed socket does in
    eKuiper)."""


class Context:
    """What an eKuiper portable extension receives as `ctx`.

    Identity (`get_rule_id()`, `get_op_id()`, `get_instance_id()`) and
    `get_logger()` are methods, as in eKuiper. `emit`/`emit_error` work in a
    source, `ack_ok`/`ack_error` in a sink. The state calls are those of
    eKuiper's Go API in Python spelling (`put_state`, `get_state`,
    `delete_state`, `incr_counter`, `get_counter`); eKuiper's portable Python
    SDK has none. The underlying Oort context is `ctx.oort`.
    """

    __slots__ = ("_oort", "_emitter", "_acks")

    def __init__(
        self,
        oort: OortContext,
        emitter: _EmitBuffer | None = None,
        acks: _Acks | None = None,
    ) -> None:
        self._oort = oort
        self._emitter = emitter
        self._acks = acks

    @property
    def oort(self) -> OortContext:
        """The Oort context underneath (instance id, `report_exception`...)."""
        return self._oort

    # -- identity ---------------------------------------------------------

    def get_rule_id(self) -> str:
        """The id of the rule this instance belongs to."""
        return self._oort.rule_id

    def get_op_id(self) -> str:
        """The operator within the rule (e.g. `source`, `op_2_projection`, `sink_0`)."""
        return self._oort.operator_id

    def get_instance_id(self) -> int:
        """eKuiper's instance index within a parallel operator: always 0, as
        Oort runs one instance per operator. Oort's own instance id
        (`"<rule>/<operator>"`) is `ctx.oort.instance_id`."""
        return 0

    def get_logger(self) -> logging.Logger:
        """A `logging.Logger` whose lines carry the instance id (eKuiper's
        Python SDK returns `sys.stdout` here)."""
        return self._oort.logger

    # -- source -----------------------------------------------------------

    def emit(self, message: Any, meta: Any = None) -> None:
        """Sends one record (`message`, a dict of fields; a list of dicts sends
        several) with its metadata `meta` (a dict, or None). Blocks while the
        source's buffer is full; raises `SourceClosedError` once the source is
        closed."""
        if self._emitter is None:
            raise RuntimeError("emit is only available in a source")
        self._emitter.put(message, meta)

    def emit_error(self, error: Any) -> None:
        """Reports an error the source went past: it is counted as an exception
        of the rule's source and shown in the rule status."""
        if self._emitter is None:
            raise RuntimeError("emit_error is only available in a source")
        self._oort.report_exception(str(error))

    # -- sink -------------------------------------------------------------

    def ack_ok(self) -> None:
        """Acknowledges the data being collected as delivered. It counts only
        with the action property `requireAck`, and only during `collect`."""
        if self._acks is None:
            raise RuntimeError("ack_ok is only available in a sink")
        self._acks.ok()

    def ack_error(self, error: Any) -> None:
        """Fails the data being collected with `str(error)` as the reason. It
        counts only with the action property `requireAck`, and only during
        `collect`."""
        if self._acks is None:
            raise RuntimeError("ack_error is only available in a sink")
        self._acks.error(str(error))

    # -- state ------------------------------------------------------------

    def put_state(self, key: str, value: Any) -> None:
        """Stores `value` under `key` (eKuiper's `PutState`)."""
        self._oort.put_state(key, value)

    def get_state(self, key: str) -> Any | None:
        """The value under `key`, or None (eKuiper's `GetState`)."""
        return self._oort.get_state(key)

    def delete_state(self, key: str) -> None:
        """Removes `key` (eKuiper's `DeleteState`)."""
        self._oort.delete_state(key)

    def incr_counter(self, key: str, amount: int = 1) -> int:
        """Adds `amount` to the counter `key` and returns it (eKuiper's `IncrCounter`)."""
        return self._oort.incr_counter(key, amount)

    def get_counter(self, key: str) -> int:
        """The counter under `key`, 0 when absent (eKuiper's `GetCounter`)."""
        return self._oort.get_counter(key)


class Function:
    """eKuiper's portable `Function`: `validate(args)` returns an error string
    ("" or None accepts), `exec(args, ctx)` computes one result,
    `is_aggregate()` says whether `args` are a group's lists of values."""

    def validate(self, args: list[Any]) -> str | None:
        """Checks a call's arguments when a rule is created; a non-empty string
        refuses the rule with that message. `args` are `oort_plugin.ArgSpec`s
        (`expression`, `literal`, `column`, `is_literal`)."""
        return ""

    def exec(self, args: list[Any], ctx: Context) -> Any:
        """Computes the result for one row; raise to fail the row."""
        raise NotImplementedError(f"{type(self).__name__}.exec is not implemented")

    def is_aggregate(self) -> bool:
        """Whether the function aggregates over a group of rows."""
        return False


class Source:
    """eKuiper's portable `Source`: `configure(datasource, conf)`, then
    `open(ctx)` runs (in its own thread) a loop that calls `ctx.emit`, until
    `close(ctx)` makes it return."""

    def configure(self, datasource: str, conf: dict[str, Any]) -> None:
        """Receives the stream's `DATASOURCE` and properties; raise to refuse."""

    def open(self, ctx: Context) -> None:
        """Runs continuously, sending data with `ctx.emit` and errors with
        `ctx.emit_error`."""
        raise NotImplementedError(f"{type(self).__name__}.open is not implemented")

    def close(self, ctx: Context) -> None:
        """Stops the `open` loop and cleans up."""


class Sink:
    """eKuiper's portable `Sink`: `configure(conf)`, `open(ctx)`,
    `collect(ctx, data)` with `data` the bytes of one item, encoded as
    eKuiper's runtime does per the action's `format`, `dataTemplate` and
    `sendSingle`, `close(ctx)`. With `requireAck`, `collect` reports each
    item's outcome with `ctx.ack_ok()` or `ctx.ack_error(e)`."""

    def configure(self, conf: dict[str, Any]) -> None:
        """Receives the rule action's properties; raise to refuse."""

    def open(self, ctx: Context) -> None:
        """Connects; raise to refuse."""

    def collect(self, ctx: Context, data: Any) -> None:
        """Handles one item (`bytes`); raise (or, with `requireAck`,
        `ctx.ack_error`) to fail it."""
        raise NotImplementedError(f"{type(self).__name__}.collect is not implemented")

    def close(self, ctx: Context) -> None:
        """Flushes and cleans up."""


# --------------------------------------------------------------------------
# Internals shared with the adapters
# --------------------------------------------------------------------------


class _EmitBuffer:
    """A bounded buffer between a push-style `open` loop and Oort's pull `Read`.

    `put` blocks while `capacity` records wait (back-pressure on the loop, not
    unbounded memory) and raises `SourceClosedError` once closed; `take` waits
    up to `timeout` seconds for the first record and returns up to `max`.
    """

    def __init__(self, capacity: int, clock: Callable[[], float] = time.time) -> None:
        if capacity < 1:
            raise ValueError("the buffer capacity must be at least 1")
        self.capacity = capacity
        self._items: deque[Record] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._clock = clock

    def put(self, message: Any, meta: Any) -> None:
        records = [_record(m, meta, self._clock) for m in (message if isinstance(message, list) else [message])]
        with self._cond:
            for r in records:
                while len(self._items) >= self.capacity and not self._closed:
                    self._cond.wait()
                if self._closed:
                    raise SourceClosedError("the source is closed")
                self._items.append(r)
                self._cond.notify_all()

    def take(self, max: int, timeout: float) -> list[Record]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self._items and not self._closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            out: list[Record] = []
            while self._items and len(out) < max:
                out.append(self._items.popleft())
            if out:
                self._cond.notify_all()
            return out

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._items.clear()
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)


def _record(message: Any, meta: Any, clock: Callable[[], float]) -> Record:
    if not isinstance(message, dict):
        raise TypeError(f"emit expects a dict of fields, not {type(message).__name__}")
    if meta is not None and not isinstance(meta, dict):
        raise TypeError(f"emit expects meta to be a dict or None, not {type(meta).__name__}")
    # eKuiper sends both through JSON: do the same, so that what is not JSON
    # fails here, in the emitting loop, and tuples become lists as there.
    fields = json.loads(json.dumps(message))
    metadata = json.loads(json.dumps(meta)) if meta else {}
    return Record(fields, metadata, int(clock() * 1000))


class _Acks:
    """What `ack_ok`/`ack_error` recorded during one `collect`."""

    __slots__ = ("errors", "oks")

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.oks = 0

    def ok(self) -> None:
        self.oks += 1

    def error(self, message: str) -> None:
        self.errors.append(message)

    def reset(self) -> None:
        self.errors = []
        self.oks = 0
