"""The eKuiper portable-SDK layer, `oort_plugin.ekuiper`: its adapters in
process, and a plugin written in eKuiper's style served for real."""

from __future__ import annotations

import json
import logging
import os
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from oort_plugin import ArgSpec, PayloadSink, Record, from_pb
from oort_plugin import Context as OortContext
from oort_plugin._pb import plugin_pb2 as pb
from oort_plugin.ekuiper import (
    Context,
    Function,
    NO_ACK,
    FunctionAdapter,
    PluginConfig,
    Sink,
    SinkAdapter,
    Source,
    SourceAdapter,
    SourceClosedError,
    plugin,
)
from oort_plugin.testing import PYTHON, PluginProcess, rows, spec, value


def octx(instance: str = "r1/op_1") -> OortContext:
    rule, _, op = instance.partition("/")
    return OortContext(instance, rule, op)


def wait_for(cond: Any, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.01)
    return bool(cond())


# -- functions -----------------------------------------------------------------


class Pair(Function):
    """Written as eKuiper's: validate returns the error text."""

    def validate(self, args: list[Any]) -> str:
        return "" if len(args) == 2 else "pair expects 2 arguments, got {}".format(len(args))

    def exec(self, args: list[Any], ctx: Context) -> Any:
        n = ctx.incr_counter("calls")
        return [args[0], args[1], ctx.get_rule_id(), ctx.get_op_id(), ctx.get_instance_id(), n]

    def is_aggregate(self) -> bool:
        return False


class NoneValidate(Function):
    def validate(self, args: list[Any]) -> None:
        return None

    def exec(self, args: list[Any], ctx: Context) -> Any:
        return sum(args[0])

    def is_aggregate(self) -> bool:
        return True


class Bare(Function):
    """Leaves out validate and is_aggregate, as eKuiper (no ABC) allows."""

    def exec(self, args: list[Any], ctx: Context) -> Any:
        return len(args)


def test_function_validate_turns_an_error_string_into_a_refusal() -> None:
    f = FunctionAdapter(Pair())
    f.validate([ArgSpec("a"), ArgSpec("b")])
    with pytest.raises(ValueError, match=r"^pair expects 2 arguments, got 1$"):
        f.validate([ArgSpec("a")])
    FunctionAdapter(NoneValidate()).validate([])  # None accepts
    FunctionAdapter(Bare()).validate([ArgSpec("x")])  # no validate at all accepts


def test_function_exec_takes_args_then_ctx_and_reaches_state() -> None:
    f = FunctionAdapter(Pair())
    c = octx("r7/op_3")
    assert f.exec(c, ["x", 2]) == ["x", 2, "r7", "op_3", 0, 1]
    assert f.exec(c, ["y", 3])[-1] == 2
    assert c.get_counter("calls") == 2
    assert not f.is_aggregate()
    assert FunctionAdapter(NoneValidate()).is_aggregate()
    assert FunctionAdapter(NoneValidate()).exec(c, [[1, 2, 3]]) == 6
    assert not FunctionAdapter(Bare()).is_aggregate()


def test_context_methods_and_state() -> None:
    c = Context(octx("r1/sink_0"))
    assert (c.get_rule_id(), c.get_op_id(), c.get_instance_id()) == ("r1", "sink_0", 0)
    assert isinstance(c.get_logger(), logging.Logger)
    assert c.oort.instance_id == "r1/sink_0"
    c.put_state("k", {"a": [1, 2]})
    assert c.get_state("k") == {"a": [1, 2]}
    c.delete_state("k")
    assert c.get_state("k") is None
    assert c.incr_counter("n", 5) == 5 and c.get_counter("n") == 5
    with pytest.raises(RuntimeError, match="only available in a source"):
        c.emit({"a": 1}, None)
    with pytest.raises(RuntimeError, match="only available in a sink"):
        c.ack_ok()


# -- sources -------------------------------------------------------------------


class Counting(Source):
    """A push loop in eKuiper's style: emits until close flips the flag."""

    def __init__(self, sleep: float = 0.0, limit: int = 0) -> None:
        self.running = True
        self.sleep = sleep
        self.limit = limit
        self.conf: dict[str, Any] = {}
        self.datasource = ""
        self.emitted = 0
        self.closed = False

    def configure(self, datasource: str, conf: dict[str, Any]) -> None:
        if conf.get("bad"):
            raise ValueError("bad conf")
        self.datasource = datasource
        self.conf = conf

    def open(self, ctx: Context) -> None:
        while self.running and (not self.limit or self.emitted < self.limit):
            ctx.emit({"i": self.emitted, "t": (1, 2)}, {"from": self.datasource})
            self.emitted += 1
            if self.sleep:
                time.sleep(self.sleep)

    def close(self, ctx: Context) -> None:
        self.running = False
        self.closed = True


class Forever(Source):
    """Never looks at a stop flag: only the closed buffer ends it."""

    def open(self, ctx: Context) -> None:
        i = 0
        while True:
            ctx.emit({"i": i}, None)
            i += 1


def test_source_configure_gets_datasource_and_props_and_read_drains_the_buffer() -> None:
    src = Counting(limit=5)
    a = SourceAdapter(src)
    c = octx("r1/source")
    a.open(c, "topic/a", {"interval": 100, "ratio": 0.5, "name": "x", "list": [1]})
    assert src.datasource == "topic/a"
    assert src.conf == {"interval": 100, "ratio": 0.5, "name": "x", "list": [1]}
    assert isinstance(src.conf["interval"], int)
    got: list[Record] = []

    def drained() -> bool:
        got.extend(a.read(c, 100))
        return len(got) == 5

    assert wait_for(drained)
    assert [r.fields for r in got] == [{"i": i, "t": [1, 2]} for i in range(5)]
    assert all(r.metadata == {"from": "topic/a"} for r in got)
    assert all(abs(r.timestamp_ms - time.time() * 1000) < 60_000 for r in got)
    started = time.monotonic()
    assert a.read(c, 10) == []  # idle: returns within about 100 ms
    assert time.monotonic() - started < 1.0
    a.close(c)
    assert src.closed


def test_source_configure_errors_refuse_the_open() -> None:
    with pytest.raises(ValueError, match="bad conf"):
        SourceAdapter(Counting()).open(octx(), "", {"bad": True})


def test_source_back_pressure_bounds_the_buffer_and_close_ends_the_loop() -> None:
    src = Counting()
    a = SourceAdapter(src, capacity=3)
    c = octx()
    a.open(c, "", {})
    assert wait_for(lambda: len(a.buffer) == 3)
    time.sleep(0.05)
    assert src.emitted == 3, "the loop blocks on the 4th emit while the buffer is full"
    assert len(a.read(c, 2)) == 2
    assert wait_for(lambda: src.emitted == 5)
    thread = a._thread
    assert thread is not None and thread.is_alive()
    a.close(c)
    assert not thread.is_alive()


def test_close_ends_a_loop_that_ignores_its_stop_flag() -> None:
    a = SourceAdapter(Forever(), capacity=2)
    c = octx()
    a.open(c, "", {})
    assert wait_for(lambda: len(a.buffer) == 2)
    a.close(c)
    assert a._thread is not None and not a._thread.is_alive()


def test_emit_error_and_a_failing_loop_become_source_exceptions() -> None:
    class Failing(Source):
        def open(self, ctx: Context) -> None:
            ctx.emit_error("lost a line")
            ctx.emit({"ok": 1}, None)
            with pytest.raises(TypeError, match="emit expects a dict"):
                ctx.emit("text", None)
            with pytest.raises(TypeError):
                ctx.emit({"b": b"\x00"}, None)  # not JSON, as in eKuiper
            raise OSError("connection reset")

    a = SourceAdapter(Failing())
    c = octx()
    a.open(c, "", {})
    assert a._thread is not None
    a._thread.join(5)
    assert [r.fields for r in a.read(c, 10)] == [{"ok": 1}]
    assert c._take_exceptions() == ["lost a line", "source open loop failed: connection reset"]
    a.close(c)


def test_emit_after_close_raises() -> None:
    a = SourceAdapter(Counting(limit=1))
    c = octx()
    a.open(c, "", {})
    a.close(c)
    ek = Context(c, emitter=a.buffer)
    with pytest.raises(SourceClosedError):
        ek.emit({"late": True}, None)


# -- sinks ---------------------------------------------------------------------


class Collecting(Sink):
    def __init__(self) -> None:
        self.conf: dict[str, Any] = {}
        self.data: list[Any] = []
        self.events: list[str] = []

    def configure(self, conf: dict[str, Any]) -> None:
        self.conf = conf
        self.events.append("configure")

    def open(self, ctx: Context) -> None:
        self.events.append("open " + ctx.get_op_id())

    def collect(self, ctx: Context, data: Any) -> None:
        # What each payload asks for, as a script: "ok", "bad", "none", ...
        self.data.append(data)
        word = data.decode(errors="replace")
        if word == "ok":
            ctx.ack_ok()
        elif word == "bad":
            ctx.ack_error(ValueError("refused bad"))
        elif word == "raise":
            ctx.ack_ok()
            raise OSError("disk full")
        elif word == "twice":
            ctx.ack_error("first")
            ctx.ack_ok()
            ctx.ack_error("second")
        elif word == "empty":
            ctx.ack_error("")
        elif word == "bare raise":
            raise KeyError()

    def close(self, ctx: Context) -> None:
        self.events.append("close")


SCRIPT = [b"ok", b"bad", b"none", b"raise", b"twice", b"empty", b"bare raise", b"ok"]


def test_sink_is_a_payload_sink_and_gets_each_payload_as_sent() -> None:
    s = Collecting()
    a = SinkAdapter(s)
    assert isinstance(a, PayloadSink), "the SDK answers Open with wants_payloads"
    c = octx("r1/sink_0")
    a.open(c, {"path": "/tmp/x", "interval": 10, "ratio": 1.5, "sendSingle": True})
    assert s.conf == {"path": "/tmp/x", "interval": 10, "ratio": 1.5, "sendSingle": True}
    payloads = [b'[{"n":1,"b":"AQ=="}]', "é,1".encode(), b"\x00\xff"]
    assert a.collect_payloads(c, payloads) == ["", "", ""]
    assert s.data == payloads, "one collect per payload, the bytes unchanged"
    assert a.collect_payloads(c, []) == []
    with pytest.raises(TypeError, match="receives payloads, not records"):
        a.collect(c, [Record({"n": 1})])
    a.close(c)
    assert s.events == ["configure", "open sink_0", "close"]


def test_sink_without_require_ack_fails_only_what_raises() -> None:
    s = Collecting()
    a = SinkAdapter(s)
    c = octx("r1/sink_0")
    a.open(c, {})
    # Acks are ignored: "bad", "none", "twice" and "empty" are delivered.
    assert a.collect_payloads(c, SCRIPT) == ["", "", "", "disk full", "", "", "KeyError", ""]
    assert s.data == SCRIPT, "a failed payload does not stop the batch"


@pytest.mark.parametrize("require_ack", [True, "true"])
def test_sink_with_require_ack_reports_each_payloads_ack(require_ack: Any) -> None:
    s = Collecting()
    a = SinkAdapter(s)
    c = octx("r1/sink_0")
    a.open(c, {"requireAck": require_ack})
    assert a.collect_payloads(c, SCRIPT) == [
        "",  # ack_ok
        "refused bad",  # ack_error(e): str(e)
        NO_ACK,  # no ack at all
        "disk full",  # an exception wins over an earlier ack_ok
        "first",  # the first ack_error
        "ack_error",  # an empty message still fails
        "KeyError",  # an exception without a message: its class
        "",  # acks of earlier payloads do not carry over
    ]
    assert s.data == SCRIPT


# -- the entry -----------------------------------------------------------------


CONFIG = PluginConfig(
    "pysam",
    {"src": lambda: Counting(limit=3)},
    {"snk": lambda: Collecting(), "src": lambda: Collecting()},
    {"pair": lambda: Pair(), "bare": lambda: Bare()},
)


def test_build_serves_the_part_named_by_the_process_name() -> None:
    funcs = plugin.build(CONFIG, "pysam")
    assert funcs.name == "pysam" and sorted(funcs._functions) == ["bare", "pair"]
    assert funcs._source is None and funcs._sink is None
    assert all(e.singleton for e in funcs._functions.values())
    src = plugin.build(CONFIG, "src")
    assert src._functions == {} and src._source is not None and src._sink is not None
    snk = plugin.build(CONFIG, "snk")
    assert snk._source is None and snk._sink is not None and not snk._sink.singleton
    with pytest.raises(ValueError, match="none of its sources or sinks"):
        plugin.build(PluginConfig("x", {"a": lambda: Counting()}, {}, {}), "b")


# -- served for real -----------------------------------------------------------


# eKuiper's flat layout: the main imports its symbols from modules beside it.
PORTED_TICK = textwrap.dedent(
    """
    import time

    from oort_plugin.ekuiper import Context, Source


    class Tick(Source):
        def __init__(self):
            self.running = True

        def configure(self, datasource: str, conf: dict):
            self.n = conf.get("n", 3)

        def open(self, ctx: Context):
            i = 0
            while self.running:
                if i < self.n:
                    ctx.emit({"i": i}, None)
                i += 1
                time.sleep(0.01)

        def close(self, ctx: Context):
            self.running = False
    """
)

PORTED = textwrap.dedent(
    """
    from typing import Any, List

    from oort_plugin.ekuiper import Context, Function, PluginConfig, plugin
    from tick import Tick


    class Revert(Function):
        def validate(self, args: List[Any]):
            if len(args) != 1:
                return "revert takes one argument"
            return ""

        def exec(self, args: List[Any], ctx: Context):
            return args[0][::-1]

        def is_aggregate(self):
            return False


    if __name__ == "__main__":
        c = PluginConfig("ported", {"tick": lambda: Tick()}, {}, {"revert": lambda: Revert()})
        plugin.start(c)
    """
)


@pytest.fixture
def ported(tmp_path: Any) -> Iterator[str]:
    with open(os.path.join(str(tmp_path), "tick.py"), "w") as f:
        f.write(PORTED_TICK)
    path = os.path.join(str(tmp_path), "ported.py")
    with open(path, "w") as f:
        f.write(PORTED)
    yield path


def test_a_ported_plugin_served_as_its_function_set(ported: str) -> None:
    p = PluginProcess([PYTHON, ported], name="ported")
    try:
        p.wait_ready()
        d = p.plugin().Describe(pb.DescribeRequest(), timeout=5)
        assert d.name == "ported"
        assert [(s.kind, s.name, s.mode) for s in d.symbols] == [
            (pb.KIND_FUNCTION, "revert", pb.EXPORT_MODE_SINGLETON)
        ]
        f = p.function()
        assert f.Validate(pb.ValidateRequest(symbol="revert"), timeout=5).error == "revert takes one argument"
        assert f.Validate(pb.ValidateRequest(symbol="revert", args=[pb.ArgSpec(expression="a")]), timeout=5).error == ""
        f.Open(pb.OpenFunctionRequest(instance=spec("r1/op_1", "revert")), timeout=5)
        [res] = f.Exec(iter([pb.ExecBatch(instance_id="r1/op_1", seq=0, rows=rows(["abc"]))]), timeout=5)
        assert from_pb(res.results[0].value) == "cba"
    finally:
        p.close()


def test_a_ported_plugin_served_as_its_push_source(ported: str) -> None:
    p = PluginProcess([PYTHON, ported], name="tick")
    try:
        p.wait_ready()
        d = p.plugin().Describe(pb.DescribeRequest(), timeout=5)
        assert [(s.kind, s.name, s.mode) for s in d.symbols] == [(pb.KIND_SOURCE, "tick", pb.EXPORT_MODE_CONSTRUCTOR)]
        s = p.source()
        s.Open(pb.OpenSourceRequest(instance=spec("r1/source", "tick"), props={"n": value(4)}), timeout=5)
        got: list[Any] = []
        stream = s.Read(pb.ReadRequest(instance_id="r1/source", max_batch=10), timeout=10)
        for batch in stream:
            got.extend(from_pb(r.fields["i"]) for r in batch.records)
            if len(got) >= 4:
                break
        stream.cancel()
        assert got == [0, 1, 2, 3]
        s.Close(pb.CloseRequest(instance_id="r1/source"), timeout=5)
        with pytest.raises(grpc.RpcError):
            s.Close(pb.CloseRequest(instance_id="r1/source"), timeout=5)
    finally:
        p.close()


def test_thread_safety_of_a_shared_function() -> None:
    seen: list[int] = []
    inside = [0, 0]  # now, most at once

    class Slow(Function):
        def exec(self, args: list[Any], ctx: Context) -> Any:
            inside[0] += 1
            inside[1] = max(inside)
            seen.append(1)
            time.sleep(0.01)
            inside[0] -= 1
            return len(seen)

    f = FunctionAdapter(Slow())
    threads = [threading.Thread(target=f.exec, args=(octx(f"r{i}/op_1"), [])) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(seen) == 4
    assert inside[1] == 1, "calls are serialised, as eKuiper makes them"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__]))
