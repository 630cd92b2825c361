"""The Python plugins, each run as `python -m oort_plugins.<name>` the way the supervisor runs its launcher."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence

import grpc
import pytest

from oort_plugin import from_pb
from oort_plugin._pb import plugin_pb2 as pb
from oort_plugin.testing import PYTHON, PluginProcess, rows, spec, value


def start(name: str, env: dict[str, str] | None = None) -> PluginProcess:
    return PluginProcess.ready([PYTHON, "-m", f"oort_plugins.{name}"], env=env, name=name)


@pytest.fixture
def conformance() -> Iterator[PluginProcess]:
    p = start("conformance")
    yield p
    p.close()


def exec_rows(p: PluginProcess, instance: str, *args: Sequence[object]) -> pb.ExecResult:
    [result] = p.function().Exec(iter([pb.ExecBatch(instance_id=instance, seq=1, rows=rows(*args))]), timeout=5)
    return result


def outcomes(result: pb.ExecResult) -> list[object]:
    return [from_pb(r.value) if r.WhichOneof("outcome") == "value" else ("error", r.error) for r in result.results]


# -- textstats ---------------------------------------------------------------


def test_textstats() -> None:
    p = start("textstats")
    try:
        d = p.plugin().Describe(pb.DescribeRequest(), timeout=5)
        assert d.name == "textstats"
        assert [(s.name, s.mode) for s in d.symbols] == [
            ("wordCount", pb.EXPORT_MODE_SINGLETON),
            ("charCount", pb.EXPORT_MODE_SINGLETON),
        ]
        f = p.function()
        assert (
            f.Validate(pb.ValidateRequest(symbol="wordCount"), timeout=5).error == "wordCount expects 1 argument, got 0"
        )
        lit = pb.ArgSpec(expression="1", literal=value(1))
        assert "expects a string" in f.Validate(pb.ValidateRequest(symbol="charCount", args=[lit]), timeout=5).error
        f.Open(pb.OpenFunctionRequest(instance=spec("r1/op_1", "wordCount")), timeout=5)
        f.Open(pb.OpenFunctionRequest(instance=spec("r1/op_2", "charCount")), timeout=5)
        assert outcomes(exec_rows(p, "r1/op_1", ["the quick  brown fox"], [""], [None], [3])) == [
            4,
            0,
            None,
            ("error", "wordCount expects a string, got int"),
        ]
        assert outcomes(exec_rows(p, "r1/op_2", ["héllo"], [""])) == [5, 0]
    finally:
        p.close()

    here = os.path.dirname(__file__)
    with open(os.path.join(here, "..", "oort_plugins", "textstats.json")) as fh:
        meta = json.load(fh)
    assert [f["name"] for f in meta["functions"]] == ["wordCount", "charCount"]
    assert "about" in meta


# -- csvsink -----------------------------------------------------------------


def test_csvsink_writes_a_header_once() -> None:
    p = start("csvsink")
    try:
        out = os.path.join(p.dir, "out.csv")
        k = p.sink()
        for n, instance in enumerate(["r1/sink_0", "r2/sink_0"]):
            opened = k.Open(
                pb.OpenSinkRequest(instance=spec(instance, "csvsink"), props={"path": value(out)}), timeout=5
            )
            assert not opened.transactional
            recs = [
                pb.Record(fields={"a": value(n), "b": value("x,y")}),
                pb.Record(fields={"a": value(None), "c": value([1])}),
            ]
            [ack] = k.Write(iter([pb.WriteBatch(instance_id=instance, seq=0, records=recs)]), timeout=5)
            assert ack.error == ""
            k.Close(pb.CloseRequest(instance_id=instance), timeout=5)
        with open(out) as fh:
            lines = fh.read().splitlines()
        header = lines[0].split(",")
        assert sorted(header) == ["a", "b"]
        assert len(lines) == 5
        with pytest.raises(grpc.RpcError) as e:
            k.Open(pb.OpenSinkRequest(instance=spec("r3/sink_0", "csvsink")), timeout=5)
        assert e.value.details() == 'sink open failed: property "path" is required (a file name)'
    finally:
        p.close()


# -- conformance -------------------------------------------------------------


def test_conformance_describe(conformance: PluginProcess) -> None:
    d = conformance.plugin().Describe(pb.DescribeRequest(), timeout=5)
    assert d.name == "conformance" and d.protocol_version == 1 and d.sdk_name == "oort-plugin-python"
    assert [(s.kind, s.name, s.mode, s.is_aggregate) for s in d.symbols] == [
        (pb.KIND_FUNCTION, "cf_echo", pb.EXPORT_MODE_CONSTRUCTOR, False),
        (pb.KIND_FUNCTION, "cf_fail", pb.EXPORT_MODE_CONSTRUCTOR, False),
        (pb.KIND_FUNCTION, "cf_count", pb.EXPORT_MODE_CONSTRUCTOR, False),
        (pb.KIND_FUNCTION, "cf_state", pb.EXPORT_MODE_CONSTRUCTOR, False),
        (pb.KIND_FUNCTION, "cf_pid", pb.EXPORT_MODE_CONSTRUCTOR, False),
        (pb.KIND_FUNCTION, "cf_agg", pb.EXPORT_MODE_CONSTRUCTOR, True),
        (pb.KIND_SOURCE, "conformance", pb.EXPORT_MODE_CONSTRUCTOR, False),
        (pb.KIND_SINK, "conformance", pb.EXPORT_MODE_CONSTRUCTOR, False),
    ]


def test_conformance_singleton_mode() -> None:
    p = start("conformance", {"OORT_CONFORMANCE_SINGLETON": "1"})
    try:
        d = p.plugin().Describe(pb.DescribeRequest(), timeout=5)
        modes = {s.name: s.mode for s in d.symbols if s.kind == pb.KIND_FUNCTION}
        assert set(modes.values()) == {pb.EXPORT_MODE_SINGLETON} and len(modes) == 6
        # As in the Rust reference plugin, the source and sink stay constructors.
        assert [s.mode for s in d.symbols if s.kind != pb.KIND_FUNCTION] == [pb.EXPORT_MODE_CONSTRUCTOR] * 2
        # Two instances of one shared function object keep their own state.
        f = p.function()
        for i in ("r1/op", "r2/op"):
            f.Open(pb.OpenFunctionRequest(instance=spec(i, "cf_count")), timeout=5)
        assert outcomes(exec_rows(p, "r1/op", ["k"], ["k"])) == [1, 2]
        assert outcomes(exec_rows(p, "r2/op", ["k"])) == [1]
        s = p.source()
        for i, count in (("r1/source", 3), ("r2/source", 5)):
            s.Open(pb.OpenSourceRequest(instance=spec(i, "conformance"), props={"count": value(count)}), timeout=5)
        a = next(s.Read(pb.ReadRequest(instance_id="r1/source", max_batch=10), timeout=5))
        b = next(s.Read(pb.ReadRequest(instance_id="r2/source", max_batch=10), timeout=5))
        assert (len(a.records), from_pb(a.offset)) == (3, 3)
        assert (len(b.records), from_pb(b.offset)) == (5, 5)
    finally:
        p.close()


def test_conformance_functions(conformance: PluginProcess) -> None:
    f = conformance.function()
    ok = pb.ArgSpec(expression="x", column="x")
    assert f.Validate(pb.ValidateRequest(symbol="cf_echo", args=[ok]), timeout=5).error == ""
    two = f.Validate(pb.ValidateRequest(symbol="cf_echo", args=[ok, ok]), timeout=5)
    assert two.error == "cf_echo expects 1 argument, got 2"
    assert f.Validate(pb.ValidateRequest(symbol="cf_echo"), timeout=5).error == "cf_echo expects 1 argument, got 0"
    for i, sym in enumerate(["cf_echo", "cf_fail", "cf_count", "cf_state", "cf_pid"]):
        f.Open(pb.OpenFunctionRequest(instance=spec(f"r1/op_{i}", sym)), timeout=5)

    echo: list[list[object]] = [[None], [True], [-5], [2.5], ["s"], [b"\x00"], [[1, [2]]], [{"a": {"b": None}}]]
    assert outcomes(exec_rows(conformance, "r1/op_0", *echo)) == [row[0] for row in echo]

    assert outcomes(exec_rows(conformance, "r1/op_1", ["good"], ["bad"], ["badger"], [1], [None])) == [
        "good",
        ("error", "cf_fail: bad"),
        ("error", "cf_fail: badger"),
        1,
        None,
    ]

    r = exec_rows(conformance, "r1/op_2", ["a"], ["a"], ["b"], ["a"])
    assert outcomes(r) == [1, 2, 1, 3]
    assert sorted((m.key, m.counter) for m in r.mutations) == [("a", 3), ("b", 1)]

    r = exec_rows(
        conformance,
        "r1/op_3",
        ["get", "k"],
        ["put", "k", {"v": [1, "x"]}],
        ["get", "k"],
        ["counter", "k"],
        ["delete", "k"],
        ["get", "k"],
        ["incr", "n", 5],
        ["incr", "n", -2],
        ["counter", "n"],
        ["get", "n"],
        ["counter", "absent"],
    )
    out = outcomes(r)
    assert out[:3] == [None, True, {"v": [1, "x"]}]
    assert out[3] == ("error", 'state key "k" holds a map value, not a counter')
    assert out[4:] == [True, None, 5, 3, 3, 3, 0]
    assert [m.WhichOneof("op") for m in r.mutations] == ["put", "delete", "counter"]
    assert r.mutations[2].counter == 3

    [pid] = outcomes(exec_rows(conformance, "r1/op_4", []))
    assert pid == conformance.proc.pid


def test_conformance_aggregate(conformance: PluginProcess) -> None:
    f = conformance.function()
    ok = pb.ArgSpec(expression="x", column="x")
    assert f.Validate(pb.ValidateRequest(symbol="cf_agg", args=[ok]), timeout=5).error == ""
    assert f.Validate(pb.ValidateRequest(symbol="cf_agg"), timeout=5).error == "cf_agg expects 1 argument, got 0"
    f.Open(pb.OpenFunctionRequest(instance=spec("r1/op_0", "cf_agg")), timeout=5)
    r = exec_rows(
        conformance, "r1/op_0", [[1, 2, 3]], [[]], [[4, None, "x", 2.5, True]], [7], [None], [{"a": [1]}], [b"\x01"]
    )
    assert outcomes(r) == [
        {"n": 3, "sum": 6},
        {"n": 0, "sum": 0},
        {"n": 5, "sum": 4},
        ("error", "cf_agg expects a list, got int"),
        ("error", "cf_agg expects a list, got null"),
        ("error", "cf_agg expects a list, got map"),
        ("error", "cf_agg expects a list, got bytes"),
    ]
    # One increment per group answered, shipped as one absolute value.
    assert [(m.key, m.counter) for m in r.mutations] == [("groups", 3)]


def test_conformance_state_is_restored_on_open(conformance: PluginProcess) -> None:
    f = conformance.function()
    state = [pb.StateEntry(key="a", counter=10), pb.StateEntry(key="v", value=value("x"))]
    f.Open(pb.OpenFunctionRequest(instance=spec("r1/op_1", "cf_count", state)), timeout=5)
    f.Open(pb.OpenFunctionRequest(instance=spec("r1/op_2", "cf_state", state)), timeout=5)
    assert outcomes(exec_rows(conformance, "r1/op_1", ["a"])) == [11]
    assert outcomes(exec_rows(conformance, "r1/op_2", ["get", "v"], ["get", "a"])) == ["x", 10]


def test_conformance_source(conformance: PluginProcess) -> None:
    s = conformance.source()
    opened = s.Open(
        pb.OpenSourceRequest(instance=spec("r1/source", "conformance"), props={"count": value(10)}), timeout=5
    )
    assert opened.rewindable
    for bad in (-1, 11):
        with pytest.raises(grpc.RpcError) as e:
            s.Rewind(pb.RewindRequest(instance_id="r1/source", offset=value(bad)), timeout=5)
        assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    s.Rewind(pb.RewindRequest(instance_id="r1/source", offset=value(4)), timeout=5)
    stream = s.Read(pb.ReadRequest(instance_id="r1/source", max_batch=4), timeout=5)
    got = [next(stream), next(stream)]
    assert [[from_pb(r.fields["n"]) for r in b.records] for b in got] == [[4, 5, 6, 7], [8, 9]]
    assert [from_pb(b.offset) for b in got] == [8, 10]
    stream.cancel()
    # Idle at the end; rewind to the end is allowed and reads nothing.
    s.Rewind(pb.RewindRequest(instance_id="r1/source", offset=value(10)), timeout=5)
    s.Rewind(pb.RewindRequest(instance_id="r1/source", offset=value(9)), timeout=5)
    [last] = [next(s.Read(pb.ReadRequest(instance_id="r1/source", max_batch=100), timeout=5))]
    assert [from_pb(r.fields["n"]) for r in last.records] == [9]
    s.Close(pb.CloseRequest(instance_id="r1/source"), timeout=5)

    # Default count.
    s.Open(pb.OpenSourceRequest(instance=spec("r2/source", "conformance")), timeout=5)
    b = next(s.Read(pb.ReadRequest(instance_id="r2/source", max_batch=1000), timeout=5))
    assert len(b.records) == 100 and from_pb(b.offset) == 100


def test_conformance_sink(conformance: PluginProcess) -> None:
    path = os.path.join(conformance.dir, "out.jsonl")
    k = conformance.sink()
    with pytest.raises(grpc.RpcError) as e:
        k.Open(pb.OpenSinkRequest(instance=spec("r1/sink_0", "conformance")), timeout=5)
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    opened = k.Open(
        pb.OpenSinkRequest(instance=spec("r1/sink_0", "conformance"), props={"path": value(path)}), timeout=5
    )
    assert opened.transactional
    recs = [
        pb.Record(fields={"b": value(2), "a": value("x")}),
        pb.Record(fields={"n": value({"z": 1, "y": [None, True, 1.5]})}),
    ]
    [ack] = k.Write(iter([pb.WriteBatch(instance_id="r1/sink_0", seq=3, records=recs)]), timeout=5)
    assert (ack.seq, ack.error) == (3, "")
    expected = '{"a":"x","b":2}\n{"n":{"y":[null,true,1.5],"z":1}}\n'
    with open(path) as fh:
        assert fh.read() == expected
    h = k.PreCommit(pb.PreCommitRequest(instance_id="r1/sink_0", checkpoint_id=1), timeout=5).handle
    assert h.WhichOneof("kind") == "int" and h.int == len(expected.encode())
    k.Commit(pb.CommitRequest(instance_id="r1/sink_0", checkpoint_id=1, handle=h), timeout=5)
    k.Abort(pb.CommitRequest(instance_id="r1/sink_0", checkpoint_id=2, handle=value(7)), timeout=5)
    with open(path + ".commits") as fh:
        assert fh.read() == f"commit 1 {h.int}\nabort 2 7\n"
    k.Close(pb.CloseRequest(instance_id="r1/sink_0"), timeout=5)
