"""Conversion between Python values and the protocol's `Value` and `Record`.

Python side            wire (`oort.plugin.v1.Value`)
-----------            -----------------------------
None                   null
bool                   bool
int                    int when it fits int64; uint (uint64) from 2**63 up to
                       2**64-1; anything outside both raises OverflowError
float                  float
str                    string
bytes, bytearray,      bytes
memoryview
list, tuple            list
dict (str keys)        map

Anything else raises TypeError. Values read from the wire always come back as
the first type of each row (a list, never a tuple; bytes, never bytearray); both
integer cases come back as `int`, so every int from -2**63 to 2**64-1 makes the
round trip unchanged.

The converters write straight into a message that the caller already holds
(`results.add().value`, `record.fields[key]`), so a batch is built without an
intermediate copy of every value.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Union

from ._pb import plugin_pb2 as pb

#: A value as exchanged with the rule engine, the equivalent of eKuiper's
#: `interface{}`. Function arguments and results, record fields, state values,
#: source offsets and sink handles all take this shape.
Value = Union[None, bool, int, float, str, bytes, "list[Value]", "dict[str, Value]"]

_INT64_MIN = -(1 << 63)
_INT64_MAX = (1 << 63) - 1
_UINT64_MAX = (1 << 64) - 1


@dataclass(slots=True)
class Record:
    """One record flowing through a rule: named fields, metadata and event time."""

    fields: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    #: Event time in milliseconds since the Unix epoch; 0 when unknown.
    timestamp_ms: int = 0


# --------------------------------------------------------------------------
# Python -> wire
# --------------------------------------------------------------------------


def _set_none(msg: pb.Value, _v: Any) -> None:
    msg.null = True


def _set_bool(msg: pb.Value, v: Any) -> None:
    msg.bool = v


def _set_int(msg: pb.Value, v: Any) -> None:
    if _INT64_MIN <= v <= _INT64_MAX:
        msg.int = v
    elif _INT64_MAX < v <= _UINT64_MAX:
        # The protocol's unsigned case: the int64 case is kept for everything
        # that fits it, so that the supervisor's signed arithmetic is unchanged.
        msg.uint = v
    else:
        raise OverflowError(f"int {v} does not fit in 64 bits (the range is -2**63 to 2**64-1)")


def _set_float(msg: pb.Value, v: Any) -> None:
    msg.float = v


def _set_str(msg: pb.Value, v: Any) -> None:
    msg.string = v


def _set_bytes(msg: pb.Value, v: Any) -> None:
    msg.bytes = bytes(v)


def _set_list(msg: pb.Value, v: Any) -> None:
    lst = msg.list
    # An empty list must still select the `list` case.
    lst.SetInParent()
    add = lst.items.add
    for item in v:
        fill_value(add(), item)


def _set_map(msg: pb.Value, v: Any) -> None:
    m = msg.map
    m.SetInParent()
    fill_map(m.entries, v)


_SETTERS: dict[type, Callable[[pb.Value, Any], None]] = {
    type(None): _set_none,
    bool: _set_bool,
    int: _set_int,
    float: _set_float,
    str: _set_str,
    bytes: _set_bytes,
    bytearray: _set_bytes,
    memoryview: _set_bytes,
    list: _set_list,
    tuple: _set_list,
    dict: _set_map,
}


def fill_value(msg: pb.Value, v: Any) -> None:
    """Writes the Python value `v` into the (empty) wire message `msg`."""
    setter = _SETTERS.get(type(v))
    if setter is None:
        setter = _setter_for_subclass(v)
    setter(msg, v)


def _setter_for_subclass(v: Any) -> Callable[[pb.Value, Any], None]:
    # Subclasses (IntEnum, OrderedDict, a str subclass...) and other mappings.
    # bool before int: bool is a subclass of int.
    for base in (bool, int, float, str, bytes, bytearray, list, tuple, dict):
        if isinstance(v, base):
            return _SETTERS[base]
    if isinstance(v, Mapping):
        return _set_map
    raise TypeError(f"cannot convert a value of type {type(v).__name__} to an Oort value")


def fill_map(entries: Any, v: Mapping[Any, Any]) -> None:
    """Writes a `str`-keyed mapping into a protobuf `map<string, Value>` field."""
    for k, item in v.items():
        if type(k) is not str and not isinstance(k, str):
            raise TypeError(f"map keys must be strings, not {type(k).__name__}")
        fill_value(entries[k], item)


def to_pb(v: Any) -> pb.Value:
    """Converts a Python value to a new wire `Value`."""
    msg = pb.Value()
    fill_value(msg, v)
    return msg


def fill_record(msg: pb.Record, r: Record | Mapping[str, Any]) -> None:
    """Writes a `Record` (or a plain mapping of fields) into the wire message."""
    if isinstance(r, Record):
        fill_map(msg.fields, r.fields)
        if r.metadata:
            fill_map(msg.metadata, r.metadata)
        if r.timestamp_ms:
            msg.timestamp_ms = r.timestamp_ms
    elif isinstance(r, Mapping):
        fill_map(msg.fields, r)
    else:
        raise TypeError(f"expected a Record or a dict of fields, not {type(r).__name__}")


# --------------------------------------------------------------------------
# wire -> Python
# --------------------------------------------------------------------------


def _get_list(msg: pb.Value) -> Any:
    return [from_pb(item) for item in msg.list.items]


def _get_map(msg: pb.Value) -> Any:
    return {k: from_pb(item) for k, item in msg.map.entries.items()}


_GETTERS: dict[str | None, Callable[[pb.Value], Any]] = {
    None: lambda _m: None,
    "null": lambda _m: None,
    "bool": lambda m: m.bool,
    "int": lambda m: m.int,
    "uint": lambda m: m.uint,
    "float": lambda m: m.float,
    "string": lambda m: m.string,
    "bytes": lambda m: m.bytes,
    "list": _get_list,
    "map": _get_map,
}


def from_pb(msg: pb.Value) -> Any:
    """Converts a wire `Value` to a Python value. A `Value` with no case set is None."""
    return _GETTERS[msg.WhichOneof("kind")](msg)


def map_from_pb(entries: Mapping[str, pb.Value]) -> dict[str, Any]:
    """Converts a protobuf `map<string, Value>` to a dict."""
    return {k: from_pb(item) for k, item in entries.items()}


def record_from_pb(msg: pb.Record) -> Record:
    """Converts a wire `Record` to a `Record`."""
    return Record(map_from_pb(msg.fields), map_from_pb(msg.metadata), msg.timestamp_ms)
