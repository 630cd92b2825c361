"""Conversion between Python values and the protocol's Value and Record."""

from __future__ import annotations

import math
from collections import OrderedDict
from enum import IntEnum
from typing import Any

import pytest

from oort_plugin import Record, from_pb, to_pb
from oort_plugin._pb import plugin_pb2 as pb
from oort_plugin._values import fill_record, record_from_pb


@pytest.mark.parametrize(
    "value, case",
    [
        (None, "null"),
        (True, "bool"),
        (False, "bool"),
        (0, "int"),
        (-(1 << 63), "int"),
        ((1 << 63) - 1, "int"),
        (1 << 63, "uint"),
        ((1 << 64) - 1, "uint"),
        (1.5, "float"),
        ("", "string"),
        ("héllo", "string"),
        (b"\x00\xff", "bytes"),
        (b"", "bytes"),
        ([], "list"),
        ([1, "a", None, [2.5]], "list"),
        ({}, "map"),
        ({"a": {"b": [1, {"c": b"x"}]}}, "map"),
    ],
)
def test_round_trip(value: Any, case: str) -> None:
    msg = to_pb(value)
    assert msg.WhichOneof("kind") == case
    back = from_pb(msg)
    assert back == value
    assert type(back) is type(value)
    # Through the wire bytes as well.
    assert from_pb(pb.Value.FromString(msg.SerializeToString())) == value


def test_bool_is_not_an_int() -> None:
    assert to_pb(True).WhichOneof("kind") == "bool"
    assert to_pb(1).WhichOneof("kind") == "int"


def test_other_sequences_and_mappings() -> None:
    assert from_pb(to_pb((1, 2))) == [1, 2]
    assert from_pb(to_pb(bytearray(b"ab"))) == b"ab"
    assert from_pb(to_pb(memoryview(b"ab"))) == b"ab"
    assert from_pb(to_pb(OrderedDict(a=1))) == {"a": 1}

    class Color(IntEnum):
        RED = 3

    assert to_pb(Color.RED).int == 3


def test_non_finite_floats_pass_through() -> None:
    assert math.isnan(from_pb(to_pb(float("nan"))))
    assert from_pb(to_pb(float("inf"))) == float("inf")


def test_ints_above_int64_go_as_uint_and_come_back_as_int() -> None:
    # int64's range keeps the signed case, also for values uint64 could hold.
    assert to_pb(5).WhichOneof("kind") == "int"
    big = to_pb({"n": [(1 << 63) + 7]})
    entry = big.map.entries["n"].list.items[0]
    assert (entry.WhichOneof("kind"), entry.uint) == ("uint", (1 << 63) + 7)
    # A uint the supervisor sends (e.g. a Go uint64 field) is a plain int here,
    # whatever its size.
    for n in (0, 3, (1 << 64) - 1):
        back = from_pb(pb.Value(uint=n))
        assert back == n and type(back) is int

    class Big(IntEnum):
        MAX = (1 << 64) - 1

    assert to_pb(Big.MAX).uint == (1 << 64) - 1


def test_errors() -> None:
    with pytest.raises(OverflowError, match=r"int 18446744073709551616 does not fit in 64 bits"):
        to_pb(1 << 64)
    with pytest.raises(OverflowError):
        to_pb([-(1 << 63) - 1])
    with pytest.raises(OverflowError):
        to_pb({"a": -(1 << 64)})
    with pytest.raises(TypeError, match="set"):
        to_pb({1, 2})
    with pytest.raises(TypeError, match="map keys must be strings"):
        to_pb({1: "a"})
    with pytest.raises(TypeError):
        to_pb(object())


def test_a_value_with_no_case_is_null() -> None:
    assert from_pb(pb.Value()) is None


def test_record_round_trip() -> None:
    r = Record({"a": 1, "b": [True, None]}, {"topic": "t"}, 1234)
    msg = pb.Record()
    fill_record(msg, r)
    assert msg.timestamp_ms == 1234
    back = record_from_pb(pb.Record.FromString(msg.SerializeToString()))
    assert back == r


def test_a_plain_dict_is_a_records_fields() -> None:
    msg = pb.Record()
    fill_record(msg, {"x": "y"})
    assert record_from_pb(msg) == Record({"x": "y"})
    with pytest.raises(TypeError):
        fill_record(msg, 3)  # type: ignore[arg-type]
