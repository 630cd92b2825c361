"""End to end: `serve` in a subprocess on a temp socket, driven with the generated stubs."""

from __future__ import annotations

import ast
import os
import queue
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2 as refl

from oort_plugin import SDK_NAME, SDK_VERSION, from_pb
from oort_plugin._pb import plugin_pb2 as pb
from oort_plugin.testing import PYTHON, PluginProcess, rows, spec, value

FIXTURE = os.path.join(os.path.dirname(__file__), "fixture_plugin.py")


@pytest.fixture
def plugin() -> Iterator[PluginProcess]:
    p = PluginProcess([PYTHON, FIXTURE], name="fixture")
    try:
        p.wait_ready()
        yield p
    finally:
        p.close()


def test_describe(plugin: PluginProcess) -> None:
    d = plugin.plugin().Describe(pb.DescribeRequest(), timeout=5)
    assert (d.name, d.version, d.protocol_version) == ("fixture", "0.0.1", 1)
    assert d.state_version == 0  # declared none
    assert (d.sdk_name, d.sdk_version) == (SDK_NAME, SDK_VERSION) == ("oort-plugin-python", SDK_VERSION)
    got = [(s.kind, s.name, s.mode, s.is_aggregate) for s in d.symbols]
    assert got == [
        (pb.KIND_FUNCTION, "echo", pb.EXPORT_MODE_SINGLETON, False),
        (pb.KIND_FUNCTION, "fail", pb.EXPORT_MODE_CONSTRUCTOR, False),
        (pb.KIND_FUNCTION, "count", pb.EXPORT_MODE_CONSTRUCTOR, False),
        (pb.KIND_FUNCTION, "agg", pb.EXPORT_MODE_CONSTRUCTOR, True),
        (pb.KIND_FUNCTION, "keep", pb.EXPORT_MODE_CONSTRUCTOR, False),
        (pb.KIND_SOURCE, "fixture", pb.EXPORT_MODE_CONSTRUCTOR, False),
        (pb.KIND_SINK, "fixture", pb.EXPORT_MODE_CONSTRUCTOR, False),
    ]


def test_health_reports_every_service(plugin: PluginProcess) -> None:
    for service in [
        "",
        "grpc.health.v1.Health",
        "oort.plugin.v1.Plugin",
        "oort.plugin.v1.Function",
        "oort.plugin.v1.Source",
        "oort.plugin.v1.Sink",
    ]:
        assert plugin.health_check(service).status == health_pb2.HealthCheckResponse.SERVING
    with pytest.raises(grpc.RpcError) as e:
        plugin.health_check("nope")
    assert e.value.code() == grpc.StatusCode.NOT_FOUND


def test_reflection_v1(plugin: PluginProcess) -> None:
    call = plugin.chan().stream_stream(
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        request_serializer=refl.ServerReflectionRequest.SerializeToString,
        response_deserializer=refl.ServerReflectionResponse.FromString,
    )
    reqs = [
        refl.ServerReflectionRequest(list_services=""),
        refl.ServerReflectionRequest(file_containing_symbol="oort.state.v1.State"),
        refl.ServerReflectionRequest(file_containing_symbol="grpc.reflection.v1.ServerReflection"),
    ]
    listed, state, own = list(call(iter(reqs), timeout=5))
    assert sorted(s.name for s in listed.list_services_response.service) == [
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "oort.plugin.v1.Function",
        "oort.plugin.v1.Plugin",
        "oort.plugin.v1.Sink",
        "oort.plugin.v1.Source",
    ]
    assert len(state.file_descriptor_response.file_descriptor_proto) == 2  # state.proto + plugin.proto
    assert len(own.file_descriptor_response.file_descriptor_proto) == 1


def test_validate(plugin: PluginProcess) -> None:
    f = plugin.function()
    ok = f.Validate(pb.ValidateRequest(symbol="echo", args=[pb.ArgSpec(expression="a", column="a")]), timeout=5)
    assert ok.error == ""
    bad = f.Validate(pb.ValidateRequest(symbol="echo"), timeout=5)
    assert bad.error == "echo expects 1 argument, got 0"
    with pytest.raises(grpc.RpcError) as e:
        f.Validate(pb.ValidateRequest(symbol="nope"), timeout=5)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    assert e.value.details() == 'plugin fixture exports no function "nope"'


def test_open_errors(plugin: PluginProcess) -> None:
    f = plugin.function()
    f.Open(pb.OpenFunctionRequest(instance=spec("r1/op_1", "echo")), timeout=5)
    cases = [
        (pb.OpenFunctionRequest(instance=spec("r1/op_1", "echo")), grpc.StatusCode.ALREADY_EXISTS),
        (pb.OpenFunctionRequest(instance=spec("r1/op_2", "nope")), grpc.StatusCode.NOT_FOUND),
        (pb.OpenFunctionRequest(instance=spec("", "echo")), grpc.StatusCode.INVALID_ARGUMENT),
        (pb.OpenFunctionRequest(), grpc.StatusCode.INVALID_ARGUMENT),
    ]
    for req, code in cases:
        with pytest.raises(grpc.RpcError) as e:
            f.Open(req, timeout=5)
        assert e.value.code() == code, req
    with pytest.raises(grpc.RpcError) as e:
        f.Close(pb.CloseRequest(instance_id="r9/none"), timeout=5)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    f.Close(pb.CloseRequest(instance_id="r1/op_1"), timeout=5)


def test_exec_batches(plugin: PluginProcess) -> None:
    f = plugin.function()
    f.Open(pb.OpenFunctionRequest(instance=spec("r1/op_1", "fail")), timeout=5)
    restored = [pb.StateEntry(key="k", counter=40)]
    f.Open(pb.OpenFunctionRequest(instance=spec("r1/op_2", "count", restored)), timeout=5)
    f.Open(pb.OpenFunctionRequest(instance=spec("r1/op_3", "agg")), timeout=5)
    batches = [
        pb.ExecBatch(instance_id="r1/op_1", seq=7, rows=rows(["ok"], ["bad"], [{"m": [1, None]}])),
        pb.ExecBatch(instance_id="r1/op_2", seq=8, rows=rows(["k"], ["k"], ["j"])),
        pb.ExecBatch(instance_id="r1/op_2", seq=9, rows=rows(["k"])),
        pb.ExecBatch(instance_id="r1/op_3", seq=10, rows=rows([[1, 2, 3]], ["not a list"])),
        pb.ExecBatch(instance_id="r1/op_1", seq=11),
    ]
    results = list(f.Exec(iter(batches), timeout=5))
    assert [r.seq for r in results] == [7, 8, 9, 10, 11]

    r = results[0]
    assert [x.WhichOneof("outcome") for x in r.results] == ["value", "error", "value"]
    assert from_pb(r.results[0].value) == "ok"
    assert r.results[1].error == "bad row"
    assert from_pb(r.results[2].value) == {"m": [1, None]}
    assert not r.mutations

    r = results[1]
    assert [from_pb(x.value) for x in r.results] == [41, 42, 1]
    assert [(m.key, m.counter) for m in r.mutations] == [("k", 42), ("j", 1)]
    assert [(m.key, m.counter) for m in results[2].mutations] == [("k", 43)]

    r = results[3]
    assert from_pb(r.results[0].value) == 6
    assert r.results[1].error  # sum() of a string: a row error, not a broken stream
    assert len(results[4].results) == 0


def test_ints_beyond_int64_cross_the_wire_as_uint(plugin: PluginProcess) -> None:
    f = plugin.function()
    f.Open(pb.OpenFunctionRequest(instance=spec("r1/op_1", "echo")), timeout=5)
    batch = pb.ExecBatch(instance_id="r1/op_1", seq=0, rows=[pb.ArgRow(args=[pb.Value(uint=(1 << 64) - 1)])])
    batch.rows.extend(rows([1 << 63], [-5], [[(1 << 63) + 1]]))
    [res] = f.Exec(iter([batch]), timeout=5)
    got = [r.value for r in res.results]
    assert [v.WhichOneof("kind") for v in got] == ["uint", "uint", "int", "list"]
    assert [from_pb(v) for v in got] == [(1 << 64) - 1, 1 << 63, -5, [(1 << 63) + 1]]


def test_state_reads_back_as_put_also_after_a_restart(plugin: PluginProcess) -> None:
    kept: dict[str, object] = {
        "b": b"\x00raw",
        "l": [1, "a", None],
        "d": {"x": [2.5]},
        "i": -3,
        "u": (1 << 64) - 1,
        "f": 2.0,
        "s": "",
        "t": True,
        "n": None,
    }
    f = plugin.function()
    f.Open(pb.OpenFunctionRequest(instance=spec("r1/op_1", "keep")), timeout=5)
    # A tuple is stored as a list.
    batch = pb.ExecBatch(instance_id="r1/op_1", seq=0, rows=rows(*([k, v] for k, v in kept.items()), ["tu", (1, 2)]))
    [res] = f.Exec(iter([batch]), timeout=5)
    want = [[type(v).__name__, v] for v in kept.values()] + [["list", [1, 2]]]
    assert [from_pb(r.value) for r in res.results] == want
    # The process is restarted: the new instance opens with the shipped puts.
    restored = [pb.StateEntry(key=m.key, value=m.put) for m in res.mutations]
    assert [e.key for e in restored] == [*kept, "tu"]
    f.Open(pb.OpenFunctionRequest(instance=spec("r2/op_1", "keep", restored)), timeout=5)
    batch = pb.ExecBatch(instance_id="r2/op_1", seq=0, rows=rows(*([k] for k in [*kept, "tu"])))
    [res] = f.Exec(iter([batch]), timeout=5)
    assert [from_pb(r.value) for r in res.results] == want
    assert not res.mutations


def test_exec_on_an_unknown_instance_ends_the_stream(plugin: PluginProcess) -> None:
    f = plugin.function()
    with pytest.raises(grpc.RpcError) as e:
        list(f.Exec(iter([pb.ExecBatch(instance_id="r1/none", seq=0, rows=rows([1]))]), timeout=5))
    assert e.value.code() == grpc.StatusCode.NOT_FOUND


def test_source_read_rewind_and_state(plugin: PluginProcess) -> None:
    s = plugin.source()
    with pytest.raises(grpc.RpcError) as e:
        s.Open(pb.OpenSourceRequest(instance=spec("r1/source", "fixture"), datasource="refuse"), timeout=5)
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert e.value.details() == "source open failed: refused"
    opened = s.Open(
        pb.OpenSourceRequest(instance=spec("r1/source", "fixture"), datasource="ds", props={"count": value(7)}),
        timeout=5,
    )
    assert opened.rewindable
    s.Rewind(pb.RewindRequest(instance_id="r1/source", offset=value(2)), timeout=5)
    with pytest.raises(grpc.RpcError) as e:
        s.Rewind(pb.RewindRequest(instance_id="r1/source", offset=value(-1)), timeout=5)
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    stream = s.Read(pb.ReadRequest(instance_id="r1/source", max_batch=3), timeout=10)
    first = next(stream)
    second = next(stream)
    assert [from_pb(r.fields["n"]) for r in first.records] == [2, 3, 4]
    assert first.records[0].timestamp_ms == 1002
    assert from_pb(first.offset) == 5
    assert [(m.key, from_pb(m.put)) for m in first.mutations] == [("opened", "ds")]  # made in Open
    assert [from_pb(r.fields["n"]) for r in second.records] == [5, 6]
    assert from_pb(second.offset) == 7
    # Close ends the Read stream.
    s.Close(pb.CloseRequest(instance_id="r1/source"), timeout=5)
    assert list(stream) == []


def test_source_exceptions_travel_in_record_batches() -> None:
    p = PluginProcess([PYTHON, FIXTURE, "exceptions"], name="exceptions")
    try:
        p.wait_ready()
        s = p.source()
        s.Open(pb.OpenSourceRequest(instance=spec("r1/source", "exceptions")), timeout=5)
        stream = s.Read(pb.ReadRequest(instance_id="r1/source", max_batch=10), timeout=10)
        got = [next(stream) for _ in range(4)]
        flood = [f"line {4 + i}: malformed" for i in range(100)]
        assert [([from_pb(r.fields["n"]) for r in b.records], list(b.exceptions)) for b in got] == [
            ([1], ["opened without a header", "line 2: malformed"]),  # Open's goes with the first batch
            ([], ["line 3: too long"]),  # a batch is sent for exceptions alone
            ([], flood[-64:]),  # at most 64 wait for a batch: the oldest are dropped
            ([2], []),
        ]
        assert not any(b.HasField("offset") or b.mutations for b in got)
        s.Close(pb.CloseRequest(instance_id="r1/source"), timeout=5)
        assert list(stream) == []  # the idle reads had nothing to report
    finally:
        p.close()


def test_function_and_sink_exceptions_are_logged() -> None:
    p = PluginProcess([PYTHON, FIXTURE, "exceptions"], name="exceptions")
    try:
        p.wait_ready()
        f = p.function()
        f.Open(pb.OpenFunctionRequest(instance=spec("r1/op_1", "grumble")), timeout=5)
        [res] = f.Exec(iter([pb.ExecBatch(instance_id="r1/op_1", seq=1, rows=rows(["a"], ["b"]))]), timeout=5)
        assert [from_pb(r.value) for r in res.results] == ["a", "b"]
        k = p.sink()
        k.Open(pb.OpenSinkRequest(instance=spec("r1/sink_0", "exceptions")), timeout=5)
        [ack] = k.Write(iter([pb.WriteBatch(instance_id="r1/sink_0", records=[pb.Record()] * 3)]), timeout=5)
        assert ack.error == ""
        p.proc.send_signal(signal.SIGTERM)
        assert p.wait_exit(5) == 0
        lines = [line for line in p.stderr().splitlines() if "r1/" in line]
        assert len(lines) == 3, lines
        assert all("WARN" in line[:48] for line in lines), lines
        assert lines[0].endswith("r1/op_1: odd row a")
        assert lines[1].endswith("r1/op_1: odd row b")
        assert lines[2].endswith("r1/sink_0: odd batch of 3")
    finally:
        p.close()


def test_sink_write_and_two_phase_commit(plugin: PluginProcess) -> None:
    out = os.path.join(plugin.dir, "out.txt")
    k = plugin.sink()
    opened = k.Open(pb.OpenSinkRequest(instance=spec("r1/sink_0", "fixture"), props={"path": value(out)}), timeout=5)
    assert opened.transactional and not opened.wants_payloads
    recs = [pb.Record(fields={"a": value(1)}), pb.Record(fields={"a": value(2)})]
    batches = [
        pb.WriteBatch(instance_id="r1/sink_0", seq=0, records=recs),
        pb.WriteBatch(instance_id="r1/sink_0", seq=1, records=[pb.Record(fields={"fail": value(True)})]),
        pb.WriteBatch(instance_id="r1/sink_0", seq=2, records=recs[:1]),
    ]
    acks = list(k.Write(iter(batches), timeout=5))
    assert [(a.seq, a.error, list(a.item_errors)) for a in acks] == [(0, "", []), (1, "refused batch", []), (2, "", [])]
    assert [(m.key, m.counter) for m in acks[0].mutations] == [("written", 2)]
    assert [(m.key, m.counter) for m in acks[2].mutations] == [("written", 3)]
    with open(out) as f:
        assert f.read() == "{'a': 1}\n{'a': 2}\n{'a': 1}\n"
    handle = k.PreCommit(pb.PreCommitRequest(instance_id="r1/sink_0", checkpoint_id=5), timeout=5).handle
    assert from_pb(handle) == {"size": 27, "cp": 5}
    k.Commit(pb.CommitRequest(instance_id="r1/sink_0", checkpoint_id=5, handle=handle), timeout=5)
    with open(out + ".commits") as f:
        line = f.read()
    # (map order is not preserved on the wire)
    assert line.startswith("commit 5 {") and ast.literal_eval(line[len("commit 5 ") :]) == {"size": 27, "cp": 5}
    k.Close(pb.CloseRequest(instance_id="r1/sink_0"), timeout=5)


def test_a_record_sink_may_fail_single_records(plugin: PluginProcess) -> None:
    out = os.path.join(plugin.dir, "out.txt")
    k = plugin.sink()
    k.Open(pb.OpenSinkRequest(instance=spec("r1/sink_0", "fixture"), props={"path": value(out)}), timeout=5)
    recs = [pb.Record(fields={"a": value(i), "skip": value(i == 2)}) for i in range(1, 4)]
    [ack] = k.Write(iter([pb.WriteBatch(instance_id="r1/sink_0", seq=4, records=recs)]), timeout=5)
    assert (ack.seq, ack.error, list(ack.item_errors)) == (4, "", ["", "skipped 2", ""])
    assert [(m.key, m.counter) for m in ack.mutations] == [("written", 2)]


def test_a_payload_sink_gets_payloads_and_reports_each_item() -> None:
    p = PluginProcess([PYTHON, FIXTURE, "payloads"], name="payloads")
    try:
        p.wait_ready()
        out = os.path.join(p.dir, "out.txt")
        k = p.sink()
        opened = k.Open(
            pb.OpenSinkRequest(instance=spec("r1/sink_0", "payloads"), props={"path": value(out)}), timeout=5
        )
        assert opened.wants_payloads and not opened.transactional

        def batch(seq: int, *payloads: bytes) -> pb.WriteBatch:
            return pb.WriteBatch(instance_id="r1/sink_0", seq=seq, payloads=list(payloads))

        batches = [
            batch(0, b'[{"a":1}]', b"fail", b"\x00\xff"),
            batch(1),
            batch(2, b"x", b"short"),  # one outcome for two items: the batch fails
            # Records where payloads were asked for: refused, not lost silently.
            pb.WriteBatch(instance_id="r1/sink_0", seq=3, records=[pb.Record()]),
            batch(4, b"last"),
        ]
        acks = list(k.Write(iter(batches), timeout=5))
        assert [(a.seq, a.error, list(a.item_errors)) for a in acks] == [
            (0, "", ["", "refused fail", ""]),
            (1, "", []),
            (2, "collect returned 1 item outcomes for 2 items", []),
            (
                3,
                "this sink takes payloads, but the batch carries 1 records "
                "(the supervisor does not support wants_payloads)",
                [],
            ),
            (4, "", [""]),
        ]
        with open(out, "rb") as f:
            assert f.read() == b'[{"a":1}]\n\x00\xff\nlast\n'
    finally:
        p.close()


def test_shutdown_with_an_open_stream_removes_the_socket(plugin: PluginProcess) -> None:
    f = plugin.function()
    f.Open(pb.OpenFunctionRequest(instance=spec("r1/op_1", "echo")), timeout=5)
    # An Exec stream that the "supervisor" keeps open.
    q: queue.Queue[pb.ExecBatch | None] = queue.Queue()

    def requests() -> Iterator[pb.ExecBatch]:
        while (b := q.get()) is not None:
            yield b

    stream = f.Exec(requests())
    q.put(pb.ExecBatch(instance_id="r1/op_1", seq=0, rows=rows([1])))
    assert next(stream).seq == 0
    started = time.monotonic()
    plugin.plugin().Shutdown(pb.ShutdownRequest(grace_ms=2000), timeout=5)
    assert plugin.wait_exit(5) == 0
    took = time.monotonic() - started
    assert took < 1.5, took
    assert not os.path.exists(plugin.socket)
    q.put(None)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signals_stop_the_plugin(plugin: PluginProcess, sig: signal.Signals) -> None:
    plugin.function().Open(pb.OpenFunctionRequest(instance=spec("r1/op_1", "echo")), timeout=5)
    started = time.monotonic()
    plugin.proc.send_signal(sig)
    assert plugin.wait_exit(5) == 0
    assert time.monotonic() - started < 1.5
    assert not os.path.exists(plugin.socket)


# -- the handshake's refusals ---------------------------------------------


def run_fixture(env: dict[str, str], drop: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("OORT_")}
    full.update(env)
    return subprocess.run([PYTHON, FIXTURE], env=full, capture_output=True, text=True, timeout=20)


def test_without_the_socket_variable_it_exits_78() -> None:
    r = run_fixture({"OORT_PROTOCOL_VERSIONS": "1"})
    assert r.returncode == 78
    assert "OORT_PLUGIN_SOCKET is not set" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_without_version_1_it_exits_78() -> None:
    r = run_fixture({"OORT_PLUGIN_SOCKET": "/tmp/never-bound.sock", "OORT_PROTOCOL_VERSIONS": "2, 3"})
    assert r.returncode == 78
    assert r.stderr.strip() == 'fixture: the supervisor offers protocol versions "2, 3", this plugin speaks only 1'
    r = run_fixture({"OORT_PLUGIN_SOCKET": "/tmp/never-bound.sock"})
    assert r.returncode == 78


def test_a_live_listener_is_not_stolen_and_a_stale_file_is(tmp_path: Path) -> None:
    path = str(tmp_path / "p.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(path)
        listener.listen(1)
        r = run_fixture({"OORT_PLUGIN_SOCKET": path, "OORT_PROTOCOL_VERSIONS": "1"})
        assert r.returncode == 1
        assert r.stderr.strip() == f"cannot listen on {path}: another process is listening there"
        assert os.path.exists(path)
    finally:
        listener.close()  # the file stays behind: now it is stale
    p = PluginProcess([PYTHON, FIXTURE], name="fixture", socket_path=path)
    try:
        p.wait_ready()
        assert p.plugin().Describe(pb.DescribeRequest(), timeout=5).name == "fixture"
    finally:
        p.close()


def test_logs_are_plain_lines_with_the_level_first() -> None:
    code = (
        "import sys; sys.path.insert(0, %r)\n"
        "from fixture_plugin import *\n"
        "import logging, threading, os, signal\n"
        "from oort_plugin import Context\n"
        "class Loud(Echo):\n"
        "    def exec(self, ctx: Context, args):\n"
        "        ctx.logger.warning('careful %%s', args[0]); ctx.logger.error('broken'); return 1\n"
        "serve(Plugin('fixture', '1').function('loud', constructor=Loud))\n"
    ) % os.path.dirname(FIXTURE)
    p = PluginProcess([PYTHON, "-c", code], name="fixture")
    try:
        p.wait_ready()
        f = p.function()
        f.Open(pb.OpenFunctionRequest(instance=spec("r1/op_1", "loud")), timeout=5)
        list(f.Exec(iter([pb.ExecBatch(instance_id="r1/op_1", rows=rows(["x"]))]), timeout=5))
        p.proc.send_signal(signal.SIGTERM)
        assert p.wait_exit(5) == 0
        lines = [line for line in p.stderr().splitlines() if "r1/op_1" in line]
        assert len(lines) == 2, lines
        assert "WARN" in lines[0][:48] and lines[0].endswith("r1/op_1: careful x")
        assert "ERROR" in lines[1][:48]
        assert "\x1b" not in "".join(lines)
    finally:
        p.close()


def test_many_streams_do_not_starve_unary_calls(plugin: PluginProcess) -> None:
    f = plugin.function()
    queues: list[queue.Queue[pb.ExecBatch | None]] = []
    streams = []
    for i in range(40):
        f.Open(pb.OpenFunctionRequest(instance=spec(f"r{i}/op", "echo")), timeout=5)
        q: queue.Queue[pb.ExecBatch | None] = queue.Queue()

        def requests(q: queue.Queue[pb.ExecBatch | None] = q) -> Iterator[pb.ExecBatch]:
            while (b := q.get()) is not None:
                yield b

        stream = f.Exec(requests())
        q.put(pb.ExecBatch(instance_id=f"r{i}/op", seq=1, rows=rows([i])))
        assert from_pb(next(stream).results[0].value) == i
        queues.append(q)
        streams.append(stream)
    assert plugin.plugin().Describe(pb.DescribeRequest(), timeout=5).name == "fixture"
    for q in queues:
        q.put(None)
    done = threading.Event()

    def drain() -> None:
        for s in streams:
            list(s)
        done.set()

    threading.Thread(target=drain, daemon=True).start()
    assert done.wait(10)
