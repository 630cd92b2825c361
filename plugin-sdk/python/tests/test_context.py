"""State semantics of Context and the mutations it records for shipping."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from oort_plugin import (
    MAX_VALUE_BYTES,
    Context,
    CounterOverflowError,
    NotACounterError,
    ValueTooLargeError,
    from_pb,
    to_pb,
)
from oort_plugin._pb import plugin_pb2 as pb


def ctx(*entries: pb.StateEntry) -> Context:
    return Context("r1/op_1", "r1", "op_1", entries)


def ops(c: Context) -> list[tuple[str, str, object]]:
    """The pending mutations as (op, key, payload), and clears them."""
    out: list[tuple[str, str, object]] = []
    for m in c._take_mutations():
        op = m.WhichOneof("op")
        assert op is not None
        if op == "put":
            out.append((op, m.key, from_pb(m.put)))
        elif op == "delete":
            out.append((op, m.key, m.delete))
        else:
            out.append((op, m.key, m.counter))
    return out


def test_identity() -> None:
    c = ctx()
    assert (c.instance_id, c.rule_id, c.operator_id) == ("r1/op_1", "r1", "op_1")
    assert c.logger is not None


def test_the_five_calls_follow_ekuiper_semantics() -> None:
    c = ctx()
    assert c.get_state("a") is None
    assert c.get_counter("n") == 0
    assert c.incr_counter("n", 5) == 5
    assert c.incr_counter("n", -2) == 3
    assert c.get_state("n") == 3  # a counter reads as an int
    c.put_state("a", "x")
    assert c.get_state("a") == "x"
    with pytest.raises(NotACounterError, match='state key "a" holds a string value, not a counter'):
        c.get_counter("a")
    with pytest.raises(NotACounterError):
        c.incr_counter("a", 1)
    c.delete_state("a")
    assert c.get_state("a") is None
    c.delete_state("a")  # absent: fine
    with pytest.raises(CounterOverflowError, match='counter "n" would overflow'):
        c.incr_counter("n", (1 << 63) - 1)
    assert c.get_counter("n") == 3
    # put replaces a counter, incr on a deleted key starts again at 0
    c.put_state("n", [1])
    assert c.get_state("n") == [1]
    c.delete_state("n")
    assert c.incr_counter("n", 2) == 2


def test_stored_values_are_copies() -> None:
    c = ctx()
    v = {"list": [1, 2]}
    c.put_state("k", v)
    v["list"].append(3)
    got = c.get_state("k")
    assert got == {"list": [1, 2]}
    got["list"].append(4)
    assert c.get_state("k") == {"list": [1, 2]}


def test_unconvertible_values_are_refused_at_once() -> None:
    c = ctx()
    with pytest.raises(TypeError):
        c.put_state("k", object())
    assert c.get_state("k") is None
    assert ops(c) == []


def test_bad_keys_and_amounts_are_refused_at_once() -> None:
    c = ctx()
    with pytest.raises(TypeError):
        c.put_state(1, "x")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        c.incr_counter("n", 1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        c.incr_counter("n", True)
    assert c.get_counter("n") == 0
    assert ops(c) == []


def test_values_over_1_mib_are_refused() -> None:
    c = ctx()
    c.put_state("ok", b"\0" * (MAX_VALUE_BYTES - 8))
    with pytest.raises(
        ValueTooLargeError, match=r'value for state key "big" is 1048580 bytes, over the 1048576-byte limit'
    ):
        c.put_state("big", b"\0" * MAX_VALUE_BYTES)
    assert c.get_state("big") is None
    assert [(op, k) for op, k, _ in ops(c)] == [("put", "ok")]


def test_mutations_are_recorded_in_order_and_counters_collapse() -> None:
    c = ctx()
    c.incr_counter("n", 1)
    c.incr_counter("n", 1)
    c.put_state("a", 1)
    c.incr_counter("m", 10)
    c.incr_counter("n", 1)  # n's latest mutation is a counter: updated in place
    c.delete_state("a")
    c.delete_state("never-there")  # nothing to ship
    assert ops(c) == [("counter", "n", 3), ("put", "a", 1), ("counter", "m", 10), ("delete", "a", True)]
    assert ops(c) == []


def test_a_counter_after_another_op_on_its_key_is_not_collapsed() -> None:
    c = ctx()
    c.incr_counter("n", 1)
    c.delete_state("n")
    c.incr_counter("n", 1)
    c.incr_counter("n", 1)
    assert ops(c) == [("counter", "n", 1), ("delete", "n", True), ("counter", "n", 2)]


def test_counters_ship_absolute_values_per_batch() -> None:
    c = ctx()
    c.incr_counter("n", 2)
    assert ops(c) == [("counter", "n", 2)]
    c.incr_counter("n", 2)
    assert ops(c) == [("counter", "n", 4)]


def test_restored_state_is_visible() -> None:
    c = ctx(
        pb.StateEntry(key="n", counter=41),
        pb.StateEntry(key="v", value=to_pb({"x": [1]})),
        pb.StateEntry(key="ignored"),
    )
    assert c.incr_counter("n", 1) == 42
    assert c.get_state("v") == {"x": [1]}
    assert c.get_state("ignored") is None
    with pytest.raises(NotACounterError, match="holds a map value"):
        c.get_counter("v")
    assert ops(c) == [("counter", "n", 42)]


def same(a: Any, b: Any) -> bool:
    """Equal, and of the same type all the way down (`1 == 1.0 == True` is not enough)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return bool(a == b)


KEPT: dict[str, Any] = {
    "bytes": b"\x00\xffraw",
    "empty bytes": b"",
    "list": [1, "a", None, [2.5, b"x"]],
    "dict": {"a": {"b": [1, {"c": True}]}, "e": {}},
    "int": -7,
    "zero": 0,
    "int64 max": (1 << 63) - 1,
    "above int64": 1 << 63,
    "uint64 max": (1 << 64) - 1,
    "float": 2.0,
    "str": "héllo",
    "empty str": "",
    "true": True,
    "false": False,
    "none": None,
}


def test_get_state_returns_the_value_as_put_also_after_a_restart() -> None:
    c = ctx()
    for k, v in KEPT.items():
        c.put_state(k, v)
    for k, v in KEPT.items():
        assert same(c.get_state(k), v), k
    # A restart: the supervisor hands the shipped puts back as StateEntries at
    # Open, through the wire.
    restored = [
        pb.StateEntry.FromString(pb.StateEntry(key=m.key, value=m.put).SerializeToString())
        for m in c._take_mutations()
    ]
    assert [e.key for e in restored] == list(KEPT)
    again = ctx(*restored)
    for k, v in KEPT.items():
        assert same(again.get_state(k), v), k
    assert again._take_mutations() == []  # restoring is not a change


def test_tuples_come_back_as_lists() -> None:
    c = ctx()
    c.put_state("t", (1, ("a", b"b"), {"x": (2.5,)}))
    assert same(c.get_state("t"), [1, ["a", b"b"], {"x": [2.5]}])


def test_reported_exceptions_keep_the_newest_64() -> None:
    c = ctx()
    assert c._take_exceptions() == []
    c.report_exception("first")
    c.report_exception(ValueError("second"))  # type: ignore[arg-type]  # str() at the call
    assert c._take_exceptions() == ["first", "second"]
    assert c._take_exceptions() == []
    for i in range(100):
        c.report_exception(f"e{i}")
    assert c._take_exceptions() == [f"e{i}" for i in range(36, 100)]
    assert ops(c) == []  # an exception is not a state mutation


def test_exceptions_of_functions_and_sinks_are_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    c = ctx()
    c.report_exception("odd row")
    c.report_exception("100% odd")
    with caplog.at_level(logging.WARNING):
        c._log_exceptions()
        c._log_exceptions()
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.WARNING, "odd row"),
        (logging.WARNING, "100% odd"),
    ]
    assert c._take_exceptions() == []
