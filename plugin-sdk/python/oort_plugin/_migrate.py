"""State versions: converting state written by another release of the plugin.

A plugin declares the version of its state layout (`Plugin(..., state_version=N)`).
When the supervisor holds non-empty state written under another version (an
upgrade from an older release, or a rollback from a newer one), it calls
`MigrateState` before opening an instance with it, and the hook registered with
`@plugin.migrate_state` turns the old state into the plugin's own:

    key -> value      the Python value `put_state` stored (`get_state` reads it)
    key -> Counter    a counter kept with `incr_counter`, its count in `.value`

The hook returns the whole new state in the same shape (keys it leaves out are
dropped), or raises to refuse it: `StateRefused` for a state it knowingly
cannot read, and any other exception counts as a refusal too. The supervisor
then stops the upgrade and the rule keeps running on the version it has.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias, Union

from ._context import MAX_VALUE_BYTES, CounterOverflowError, ValueTooLargeError, _check_key, _quote
from ._pb import plugin_pb2 as pb
from ._values import Value, fill_value, from_pb

_INT64_MIN = -(1 << 63)
_INT64_MAX = (1 << 63) - 1
_UINT32_MAX = (1 << 32) - 1


@dataclass(frozen=True, slots=True)
class Counter:
    """A counter of an instance's state (what `incr_counter` keeps), as a state
    migration sees it: plain values are themselves, counters are wrapped so
    that the two stay apart. The count is a signed 64-bit integer."""

    value: int

    def __post_init__(self) -> None:
        if isinstance(self.value, bool) or not isinstance(self.value, int):
            raise TypeError(f"a counter's value must be an int, not {type(self.value).__name__}")
        if not _INT64_MIN <= self.value <= _INT64_MAX:
            raise OverflowError(f"counter value {self.value} does not fit in a signed 64-bit integer")


#: What one state key holds: a value (as `put_state` takes it and `get_state`
#: returns it) or a `Counter`.
StateSlot: TypeAlias = Union[Value, Counter]


@dataclass(frozen=True, slots=True)
class StateMigration:
    """State written under another state version, to convert into the plugin's own."""

    #: The exported symbol whose instance wrote the state: a function's SQL
    #: name, or the plugin's name for its source or sink.
    symbol: str
    #: The state version the state was written under (0: the writer declared none).
    from_version: int
    #: The rule the instance belongs to, for the plugin's log.
    rule_id: str
    #: The operator within the rule (e.g. `source`, `op_2_projection`, `sink_0`).
    operator_id: str
    #: Every key the instance held: values as `get_state` returns them, and
    #: counters as `Counter`. The hook may change this dict and return it.
    state: dict[str, StateSlot]


class StateRefused(Exception):
    """Raised by a state migration hook for state it cannot convert. The message
    is the reason the supervisor reports; the rule stays on the version it has."""


#: A state migration hook: the old state in, the new state out.
MigrateHook: TypeAlias = Callable[[StateMigration], Mapping[str, StateSlot]]


def migration_from_pb(req: pb.MigrateStateRequest) -> StateMigration:
    """The hook's argument for a `MigrateState` request."""
    return StateMigration(
        symbol=req.symbol,
        from_version=req.from_version,
        rule_id=req.rule_id,
        operator_id=req.operator_id,
        state=state_from_pb(req.state),
    )


def state_from_pb(entries: Iterable[pb.StateEntry]) -> dict[str, StateSlot]:
    """State entries as a dict; an entry with neither case set is skipped (as
    when an instance opens)."""
    out: dict[str, StateSlot] = {}
    for entry in entries:
        case = entry.WhichOneof("entry")
        if case == "counter":
            out[entry.key] = Counter(entry.counter)
        elif case == "value":
            out[entry.key] = from_pb(entry.value)
    return out


def fill_state(out: Any, state: Mapping[str, StateSlot]) -> None:
    """Writes a migrated state into the repeated `StateEntry` field `out`.

    Checked as `put_state` checks: string keys, values the protocol can carry
    (TypeError, OverflowError) of at most `MAX_VALUE_BYTES` (ValueTooLargeError),
    counters in the signed 64-bit range (CounterOverflowError)."""
    if not isinstance(state, Mapping):
        raise TypeError(f"a state migration must return a dict of state keys, not {type(state).__name__}")
    add = out.add
    for key, slot in state.items():
        _check_key(key)
        if isinstance(slot, Counter):
            # A Counter checks its range when made; object.__setattr__ could
            # still have changed it.
            if not _INT64_MIN <= slot.value <= _INT64_MAX:
                raise CounterOverflowError(key)
            add(key=key, counter=slot.value)
            continue
        entry = add(key=key)
        try:
            fill_value(entry.value, slot)
        except (TypeError, OverflowError) as e:
            raise type(e)(f"state key {_quote(key)}: {e}") from None
        size = entry.value.ByteSize()
        if size > MAX_VALUE_BYTES:
            raise ValueTooLargeError(key, size)


def check_state_version(version: int) -> int:
    """A declared state version: an int from 0 to 2**32-1 (the wire's uint32)."""
    if isinstance(version, bool) or not isinstance(version, int):
        raise TypeError(f"state_version must be an int, not {type(version).__name__}")
    if not 0 <= version <= _UINT32_MAX:
        raise ValueError(f"state_version {version} is out of range (0 to {_UINT32_MAX})")
    return version


__all__ = ["Counter", "MigrateHook", "StateMigration", "StateRefused", "StateSlot"]
