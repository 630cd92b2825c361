"""The per-instance context: identity, logging and state.

The instance's state lives here, in the plugin process: the instance is the
only writer of its own scope, so reads never leave the process. Every change is
also recorded as a `StateMutation`, and the server ships the recorded mutations
to the supervisor with the batch they were made in (`ExecResult`, `RecordBatch`
or `WriteAck`). The supervisor therefore always holds "state as of the last
batch it accepted" without a round trip per call.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import deque
from collections.abc import Iterable
from typing import Any

from ._pb import plugin_pb2 as pb
from ._values import from_pb, to_pb

_INT64_MIN = -(1 << 63)
_INT64_MAX = (1 << 63) - 1

#: The largest value `put_state` accepts, in bytes of its wire encoding; the
#: supervisor refuses a batch that carries a larger one.
MAX_VALUE_BYTES = 1 << 20

#: At most this many reported exceptions wait for the next batch; older ones
#: are dropped, so that a flood cannot exhaust memory.
MAX_PENDING_EXCEPTIONS = 64


class StateError(Exception):
    """A state call that cannot be carried out."""


class NotACounterError(StateError):
    """`get_counter` or `incr_counter` on a key that holds a plain value."""

    def __init__(self, key: str, found: str) -> None:
        super().__init__(f"state key {_quote(key)} holds a {found} value, not a counter")
        self.key = key
        self.found = found


class CounterOverflowError(StateError):
    """`incr_counter` would leave the signed 64-bit range."""

    def __init__(self, key: str) -> None:
        super().__init__(f"counter {_quote(key)} would overflow")
        self.key = key


class ValueTooLargeError(StateError):
    """`put_state` of a value whose wire encoding exceeds `MAX_VALUE_BYTES`."""

    def __init__(self, key: str, size: int) -> None:
        super().__init__(f"value for state key {_quote(key)} is {size} bytes, over the {MAX_VALUE_BYTES}-byte limit")
        self.key = key
        self.size = size


def _quote(key: str) -> str:
    return json.dumps(key, ensure_ascii=False)


class Context:
    """What an extension instance knows about itself, and its state.

    One context exists per opened instance: per rule, operator and (for
    functions) call site. A singleton object shared by several rules receives a
    different context for each of them, so their state never mixes.

    The state calls follow eKuiper's semantics: `put_state` replaces a value or
    counter, `get_state` returns None for an absent key (a counter reads as its
    int), `delete_state` of an absent key is fine, `incr_counter` starts a
    missing counter at 0, and `get_counter` returns 0 for an absent key but
    raises `NotACounterError` for a key that holds a plain value.
    """

    __slots__ = (
        "_rule_id",
        "_instance_id",
        "_operator_id",
        "_logger",
        "_lock",
        "_values",
        "_counters",
        "_pending",
        "_counting",
        "_exceptions",
        "_batch_rows",
    )

    def __init__(
        self,
        instance_id: str,
        rule_id: str = "",
        operator_id: str = "",
        state: Iterable[pb.StateEntry] = (),
        logger: logging.Logger | None = None,
    ) -> None:
        self._rule_id = rule_id
        self._instance_id = instance_id
        self._operator_id = operator_id
        self._logger = logger if logger is not None else logging.getLogger("oort_plugin")
        self._lock = threading.Lock()
        # A key lives in exactly one of the two maps.
        self._values: dict[str, pb.Value] = {}
        self._counters: dict[str, int] = {}
        # Mutations since the last batch response, turned into messages only
        # when shipped; and, per key whose latest pending mutation is a counter,
        # that mutation (repeated increments update it instead of adding one).
        self._pending: list[_Pending] = []
        self._counting: dict[str, _Pending] = {}
        # Problems reported with `report_exception`, not yet shipped (a
        # source's) or logged (a function's or sink's), oldest first.
        self._exceptions: deque[str] = deque(maxlen=MAX_PENDING_EXCEPTIONS)
        # Set by the server around each VectorizedFunction.exec_columns call
        # (see `batch_rows`); batches of one instance never run concurrently.
        self._batch_rows = 0
        for entry in state:
            case = entry.WhichOneof("entry")
            if case == "counter":
                self._counters[entry.key] = entry.counter
            elif case == "value":
                v = pb.Value()
                v.CopyFrom(entry.value)
                self._values[entry.key] = v

    @classmethod
    def _from_spec(cls, spec: pb.InstanceSpec, logger: logging.Logger) -> Context:
        return cls(spec.instance_id, spec.rule_id, spec.operator_id, spec.state, logger)

    # -- identity ---------------------------------------------------------

    @property
    def rule_id(self) -> str:
        """The id of the rule this instance belongs to."""
        return self._rule_id

    @property
    def instance_id(self) -> str:
        """The supervisor-assigned id of this instance, `"<rule>/<operator>"`."""
        return self._instance_id

    @property
    def operator_id(self) -> str:
        """The operator within the rule (e.g. `source`, `op_2_projection`, `sink_0`)."""
        return self._operator_id

    @property
    def logger(self) -> logging.Logger:
        """A logger whose lines carry this instance's id. Lines go to stderr,
        which the supervisor forwards into its own log."""
        return self._logger

    @property
    def batch_rows(self) -> int:
        """The number of rows of the batch `VectorizedFunction.exec_columns` is
        computing: the length its result must have. A function without
        arguments receives no array to take it from. 0 outside such a call."""
        return self._batch_rows

    # -- state ------------------------------------------------------------

    def put_state(self, key: str, value: Any) -> None:
        """Stores `value` under `key`, replacing a value or counter.

        The value is converted (and so copied) at once: a value that cannot be
        sent raises TypeError or OverflowError here, one whose encoding exceeds
        `MAX_VALUE_BYTES` (1 MiB) raises ValueTooLargeError, and changing the
        object afterwards does not change the stored state.
        """
        _check_key(key)
        pv = to_pb(value)
        size = pv.ByteSize()
        if size > MAX_VALUE_BYTES:
            raise ValueTooLargeError(key, size)
        with self._lock:
            self._counters.pop(key, None)
            self._values[key] = pv
            self._counting.pop(key, None)
            self._pending.append(_Pending(_PUT, key, pv))

    def get_state(self, key: str) -> Any | None:
        """The value under `key` (a fresh copy), or None when there is none.
        A counter reads as its int.

        The value reads back as it was put, equal and of the same types all
        the way down, also when it was restored from the supervisor after a
        restart: the stored wire form keeps every type of the value model
        apart. The one change is the model's own: a tuple reads back as a list
        (and a bytearray as bytes, any mapping as a dict)."""
        with self._lock:
            c = self._counters.get(key)
            if c is not None:
                return c
            v = self._values.get(key)
        return None if v is None else from_pb(v)

    def delete_state(self, key: str) -> None:
        """Removes `key`. Removing an absent key is not an error (and ships nothing)."""
        _check_key(key)
        with self._lock:
            if self._values.pop(key, None) is None and self._counters.pop(key, None) is None:
                return
            self._counting.pop(key, None)
            self._pending.append(_Pending(_DELETE, key, None))

    def incr_counter(self, key: str, amount: int = 1) -> int:
        """Adds `amount` to the counter under `key` (created at 0) and returns the
        new count. Raises NotACounterError when the key holds a plain value and
        CounterOverflowError when the count would leave the int64 range."""
        _check_key(key)
        if isinstance(amount, bool) or not isinstance(amount, int):
            raise TypeError(f"the amount must be an int, not {type(amount).__name__}")
        with self._lock:
            if key in self._values:
                raise NotACounterError(key, _stored_type(self._values[key]))
            nxt = self._counters.get(key, 0) + amount
            if not _INT64_MIN <= nxt <= _INT64_MAX or not _INT64_MIN <= amount <= _INT64_MAX:
                raise CounterOverflowError(key)
            self._counters[key] = nxt
            # Only the newest absolute value matters: when this key's latest
            # mutation in the batch is a counter, update it instead of adding one.
            # Mutations of other keys in between commute with it.
            last = self._counting.get(key)
            if last is not None:
                last.payload = nxt
            else:
                last = _Pending(_COUNTER, key, nxt)
                self._counting[key] = last
                self._pending.append(last)
            return nxt

    def get_counter(self, key: str) -> int:
        """The count under `key`: 0 when absent. Raises NotACounterError when the
        key holds a plain value."""
        with self._lock:
            c = self._counters.get(key)
            if c is not None:
                return c
            v = self._values.get(key)
        if v is not None:
            raise NotACounterError(key, _stored_type(v))
        return 0

    # -- exceptions -------------------------------------------------------

    def report_exception(self, message: str) -> None:
        """Reports a problem the instance met and went past (a malformed input
        line, say).

        A source's exceptions travel with its next batch (one is sent even with
        no records): the supervisor counts each as an exception of the rule's
        source and shows the last in the rule status. Functions and sinks
        report per-row or per-batch errors by raising instead; what they report
        here is logged at warning level. At most 64 wait for the next batch;
        older ones are dropped.
        """
        # str() at the call: an exception object passed by mistake must not
        # fail the batch it would travel with.
        text = str(message)
        with self._lock:
            self._exceptions.append(text)

    # -- for the server ---------------------------------------------------

    def _ship(self, out: Any) -> None:
        """Moves the mutations recorded since the last call, in order, into the
        repeated `mutations` field `out` of a batch response."""
        with self._lock:
            pending = self._pending
            if not pending:
                return
            self._pending = []
            self._counting = {}
        add = out.add
        for p in pending:
            if p.op is _COUNTER:
                add(key=p.key, counter=p.payload)
            elif p.op is _PUT:
                add(key=p.key, put=p.payload)
            else:
                add(key=p.key, delete=True)

    def _take_exceptions(self) -> list[str]:
        """The exceptions reported since the last call, oldest first."""
        with self._lock:
            out = list(self._exceptions)
            self._exceptions.clear()
        return out

    def _log_exceptions(self) -> None:
        """Logs the exceptions a function or sink reported: only a source's
        travel to the supervisor."""
        for e in self._take_exceptions():
            self._logger.warning("%s", e)

    def _take_mutations(self) -> list[pb.StateMutation]:
        """The mutations recorded since the last call, as messages (for tests)."""
        out = pb.ExecResult()
        self._ship(out.mutations)
        return list(out.mutations)


_PUT = "put"
_DELETE = "delete"
_COUNTER = "counter"


class _Pending:
    """One recorded mutation; `payload` is the put's Value or the counter's count."""

    __slots__ = ("op", "key", "payload")

    def __init__(self, op: str, key: str, payload: Any) -> None:
        self.op = op
        self.key = key
        self.payload = payload


def _check_key(key: Any) -> None:
    # Checked at the call: a bad key found while shipping would fail the batch.
    if not isinstance(key, str):
        raise TypeError(f"state keys are strings, not {type(key).__name__}")


def _stored_type(v: pb.Value) -> str:
    # The oneof's case names are the protocol's type names.
    return v.WhichOneof("kind") or "null"


__all__ = ["Context", "StateError", "NotACounterError", "CounterOverflowError", "ValueTooLargeError", "MAX_VALUE_BYTES"]
