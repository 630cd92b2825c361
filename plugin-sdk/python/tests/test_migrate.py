"""State versions: Describe's state_version and the MigrateState RPC, served by a
real plugin process on a Unix socket; and the conversions they rest on."""

from __future__ import annotations

import os
from collections.abc import Iterator

import grpc
import pytest

from oort_plugin import (
    MAX_VALUE_BYTES,
    Counter,
    CounterOverflowError,
    Plugin,
    StateMigration,
    StateRefused,
    StateSlot,
    ValueTooLargeError,
    from_pb,
)
from oort_plugin._migrate import fill_state, state_from_pb
from oort_plugin._pb import plugin_pb2 as pb
from oort_plugin.testing import PYTHON, PluginProcess, rows, spec, value

MIGRATE = os.path.join(os.path.dirname(__file__), "migrate_plugin.py")

#: State as release 1 of the tally plugin wrote it: its sum under "total".
V1_STATE = [
    pb.StateEntry(key="total", value=value(40)),
    pb.StateEntry(key="count", counter=3),
    pb.StateEntry(key="seen", value=value(["a", None, {"b": b"\x00"}])),
]


def _start(*args: str) -> PluginProcess:
    return PluginProcess.ready([PYTHON, MIGRATE, *args], name="tally")


@pytest.fixture
def tally() -> Iterator[PluginProcess]:
    p = _start()
    try:
        yield p
    finally:
        p.close()


def _request(from_version: int, state: list[pb.StateEntry]) -> pb.MigrateStateRequest:
    return pb.MigrateStateRequest(
        symbol="tally", from_version=from_version, state=state, rule_id="r1", operator_id="op_2_tally"
    )


def _as_dict(entries: list[pb.StateEntry]) -> dict[str, object]:
    out: dict[str, object] = {}
    for e in entries:
        out[e.key] = ("counter", e.counter) if e.WhichOneof("entry") == "counter" else from_pb(e.value)
    return out


def test_describe_reports_state_version(tally: PluginProcess) -> None:
    d = tally.plugin().Describe(pb.DescribeRequest(), timeout=5)
    assert (d.name, d.version, d.state_version) == ("tally", "2.0.0", 2)


def test_hook_renames_a_key_and_carries_a_counter(tally: PluginProcess) -> None:
    resp = tally.plugin().MigrateState(_request(1, V1_STATE), timeout=5)
    assert _as_dict(list(resp.state)) == {
        "sum": 40,
        "count": ("counter", 3),
        "seen": ["a", None, {"b": b"\x00"}],
    }
    # The migrated state is what an instance of this version opens with: the
    # function reads "sum" and counts on from 3.
    f = tally.function()
    instance = spec("r1/op_2_tally", "tally", list(resp.state))
    instance.state_version = 2
    f.Open(pb.OpenFunctionRequest(instance=instance), timeout=5)
    [res] = f.Exec(iter([pb.ExecBatch(instance_id="r1/op_2_tally", seq=1, rows=rows([2]))]), timeout=5)
    assert from_pb(res.results[0].value) == [42, 4]


def test_hook_with_an_empty_state(tally: PluginProcess) -> None:
    resp = tally.plugin().MigrateState(_request(1, []), timeout=5)
    assert _as_dict(list(resp.state)) == {"sum": 0}


def test_refusing_hook_is_failed_precondition_with_its_message(tally: PluginProcess) -> None:
    with pytest.raises(grpc.RpcError) as e:
        tally.plugin().MigrateState(_request(3, V1_STATE), timeout=5)
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert e.value.details() == "tally 2.0.0 reads state of version 1 only, not 3"
    # A refusal from the hook's own reading of the state.
    bad = [pb.StateEntry(key="total", value=value("forty"))]
    with pytest.raises(grpc.RpcError) as e:
        tally.plugin().MigrateState(_request(1, bad), timeout=5)
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert e.value.details() == "state key total holds a str, not a number"


def test_failing_hook_is_failed_precondition_with_its_message(tally: PluginProcess) -> None:
    with pytest.raises(grpc.RpcError) as e:
        tally.plugin().MigrateState(_request(99, V1_STATE), timeout=5)
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert e.value.details() == "cannot migrate r1/op_2_tally: boom"
    # The process serves on.
    assert tally.plugin().MigrateState(_request(1, V1_STATE), timeout=5).state


def test_unsendable_migrated_state_is_failed_precondition(tally: PluginProcess) -> None:
    with pytest.raises(grpc.RpcError) as e:
        tally.plugin().MigrateState(_request(98, V1_STATE), timeout=5)
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert e.value.details() == (
        'state migration of "tally" returned a state that cannot be sent: '
        'state key "bad": cannot convert a value of type set to an Oort value'
    )


def test_no_hook_is_failed_precondition() -> None:
    p = _start("nohook")
    try:
        assert p.plugin().Describe(pb.DescribeRequest(), timeout=5).state_version == 2
        with pytest.raises(grpc.RpcError) as e:
            p.plugin().MigrateState(_request(1, V1_STATE), timeout=5)
        assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert e.value.details() == (
            "plugin tally (state version 2) has no state migration and cannot read state of version 1"
        )
    finally:
        p.close()


# -- in process ---------------------------------------------------------------


def test_state_round_trip() -> None:
    state = state_from_pb(V1_STATE + [pb.StateEntry(key="unset")])
    assert state == {"total": 40, "count": Counter(3), "seen": ["a", None, {"b": b"\x00"}]}
    out = pb.MigrateStateResponse()
    fill_state(out.state, {**state, "none": None, "empty": [], "big": 1 << 63})
    assert _as_dict(list(out.state)) == {
        "total": 40,
        "count": ("counter", 3),
        "seen": ["a", None, {"b": b"\x00"}],
        "none": None,
        "empty": [],
        "big": 1 << 63,
    }
    assert out.state[4].value.WhichOneof("kind") == "list"


def test_fill_state_checks_like_put_state() -> None:
    out = pb.MigrateStateResponse()
    with pytest.raises(ValueTooLargeError):
        fill_state(out.state, {"k": b"x" * MAX_VALUE_BYTES})
    with pytest.raises(TypeError, match="state keys are strings"):
        fill_state(out.state, {1: 2})  # type: ignore[dict-item]
    with pytest.raises(TypeError, match="must return a dict"):
        fill_state(out.state, None)  # type: ignore[arg-type]
    with pytest.raises(OverflowError, match='state key "k"'):
        fill_state(out.state, {"k": 1 << 64})
    forged = Counter(1)
    object.__setattr__(forged, "value", 1 << 63)
    with pytest.raises(CounterOverflowError):
        fill_state(out.state, {"k": forged})


def test_counter_is_a_checked_int() -> None:
    assert Counter(-(1 << 63)).value == -(1 << 63)
    assert Counter(5) == Counter(5) and Counter(5) != Counter(6)
    with pytest.raises(OverflowError):
        Counter(1 << 63)
    with pytest.raises(TypeError):
        Counter(True)
    with pytest.raises(TypeError):
        Counter(1.0)  # type: ignore[arg-type]


def test_plugin_state_version_and_hook_registration() -> None:
    assert Plugin("p", "1.0.0").state_version == 0
    assert Plugin("p", "1.0.0", state_version=7).state_version == 7
    with pytest.raises(ValueError):
        Plugin("p", "1.0.0", state_version=-1)
    with pytest.raises(ValueError):
        Plugin("p", "1.0.0", state_version=1 << 32)
    with pytest.raises(TypeError):
        Plugin("p", "1.0.0", state_version="2")  # type: ignore[arg-type]

    plugin = Plugin("p", "1.0.0", state_version=2)

    @plugin.migrate_state
    def migrate(m: StateMigration) -> dict[str, StateSlot]:
        if m.from_version != 1:
            raise StateRefused("no")
        return m.state

    # The decorator hands the function back unchanged.
    m = StateMigration(symbol="p", from_version=1, rule_id="r", operator_id="o", state={"a": Counter(1)})
    assert migrate(m) == {"a": Counter(1)}
    assert plugin._migrate is migrate
    with pytest.raises(ValueError, match="already"):
        plugin.migrate_state(migrate)
