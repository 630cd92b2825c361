"""ekpy, the eKuiper portable-style plugin: its modules directly, and the
program served under each of its three names, as the supervisor runs it."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import pytest

from oort_plugin import ArgSpec, Record, from_pb
from oort_plugin import Context as OortContext
from oort_plugin._pb import plugin_pb2 as pb
from oort_plugin.ekuiper import Context, FunctionAdapter, SinkAdapter, SourceAdapter
from oort_plugin.testing import PYTHON, PluginProcess, rows, spec, value
from oort_plugins.portable.funcs import ShoutFunc, SpreadFunc, WhichRuleFunc, clampIns
from oort_plugins.portable.lines import LinesSink
from oort_plugins.portable.rawbytes import BytesSink
from oort_plugins.portable.ticker import Ticker


def start(name: str) -> PluginProcess:
    return PluginProcess.ready([PYTHON, "-m", "oort_plugins.portable"], name=name)


@pytest.fixture
def functions() -> Iterator[PluginProcess]:
    p = start("ekpy")
    yield p
    p.close()


def outcomes(result: pb.ExecResult) -> list[object]:
    return [from_pb(r.value) if r.WhichOneof("outcome") == "value" else ("error", r.error) for r in result.results]


# -- the modules, as eKuiper would call them ------------------------------------


def test_the_functions_in_process() -> None:
    ctx = Context(OortContext("r1/op_1", "r1", "op_1"))
    assert ShoutFunc().exec(["hi"], ctx) == "HI!"
    assert clampIns.validate([1, 2]) == "clamp expects 3 arguments (value, low, high), got 2"
    assert clampIns.exec([15, 0, 10], ctx) == 10
    assert SpreadFunc().exec([[3, None, 9.5, "x", 1]], ctx) == 8.5
    assert SpreadFunc().is_aggregate()
    assert WhichRuleFunc().exec([], ctx) == "r1"
    with pytest.raises(ValueError, match="clamp expects 3 arguments"):
        FunctionAdapter(clampIns).validate([ArgSpec("x")])


def test_the_source_and_sink_in_process(tmp_path: Any) -> None:
    c = OortContext("r1/source", "r1", "source")
    src = SourceAdapter(Ticker())
    src.open(c, "w", {"interval": 1, "count": 4, "errorEvery": 3})
    got: list[Record] = []
    for _ in range(100):
        got.extend(src.read(c, 10))
        if len(got) == 3:
            break
    src.close(c)
    assert [r.fields for r in got] == [
        {"seq": 0, "word": "w0", "value": 0.0},
        {"seq": 1, "word": "w1", "value": 1.5},
        {"seq": 3, "word": "w3", "value": 4.5},
    ]
    assert got[0].metadata == {"ticker": "w"}
    assert c._take_exceptions() == ["tick 2 skipped"]

    out = os.path.join(str(tmp_path), "out.jsonl")
    k = OortContext("r1/sink_0", "r1", "sink_0")
    sink = SinkAdapter(LinesSink())
    sink.open(k, {"path": out, "requireAck": True, "rejectField": "bad"})
    assert sink.collect_payloads(k, [b'[{"a":1},{"a":2}]', b'{"a":3,"bad":true}', b'{"a":4}', b"not json"]) == [
        "",
        'row rejected: {"a": 3, "bad": true}',
        "",
        "Expecting value: line 1 column 1 (char 0)",
    ]
    sink.close(k)
    with open(out) as f:
        assert [json.loads(line) for line in f] == [{"a": 1}, {"a": 2}, {"a": 4}]


# What ekbytes receives in a batch, and what each payload's outcome is.
EKBYTES_BATCH = [b'[{"a":1}]', "é fail".encode(), b"\xff\xfe", b"plain,text"]


def test_ekbytes_in_process(tmp_path: Any) -> None:
    out = os.path.join(str(tmp_path), "out.txt")
    with pytest.raises(ValueError, match="ekbytes needs a path"):
        SinkAdapter(BytesSink()).open(OortContext("r1/sink_0"), {})
    bad_utf8 = "'utf-8' codec can't decode byte 0xff in position 0: invalid start byte"
    runs: list[tuple[dict[str, Any], list[str]]] = [
        ({"path": out}, ["", "", bad_utf8, ""]),
        ({"path": out, "requireAck": True}, ["", "payload refused: it contains fail", bad_utf8, ""]),
    ]
    for props, outcomes in runs:
        k = OortContext("r1/sink_0", "r1", "sink_0")
        sink = SinkAdapter(BytesSink())
        sink.open(k, props)
        assert sink.collect_payloads(k, EKBYTES_BATCH) == outcomes
        sink.close(k)
    with open(out, encoding="utf-8") as f:
        # Each payload but the one that is not UTF-8, once per run; a refused
        # payload is written too.
        assert f.read() == '[{"a":1}]\né fail\nplain,text\n' * 2


# -- served ---------------------------------------------------------------------


def test_ekpy_serves_its_functions(functions: PluginProcess) -> None:
    d = functions.plugin().Describe(pb.DescribeRequest(), timeout=5)
    assert d.name == "ekpy"
    assert [(s.kind, s.name, s.mode, s.is_aggregate) for s in d.symbols] == [
        (pb.KIND_FUNCTION, "shout", pb.EXPORT_MODE_SINGLETON, False),
        (pb.KIND_FUNCTION, "clamp", pb.EXPORT_MODE_SINGLETON, False),
        (pb.KIND_FUNCTION, "spread", pb.EXPORT_MODE_SINGLETON, True),
        (pb.KIND_FUNCTION, "whichrule", pb.EXPORT_MODE_SINGLETON, False),
    ]
    f = functions.function()
    one = [pb.ArgSpec(expression="x")]
    assert (
        f.Validate(pb.ValidateRequest(symbol="clamp", args=one), timeout=5).error
        == "clamp expects 3 arguments (value, low, high), got 1"
    )
    assert f.Validate(pb.ValidateRequest(symbol="shout", args=one), timeout=5).error == ""
    assert f.Validate(pb.ValidateRequest(symbol="whichrule"), timeout=5).error == ""
    for op, sym in [("op_1", "shout"), ("op_2", "clamp"), ("op_3", "spread"), ("op_4", "whichrule")]:
        f.Open(pb.OpenFunctionRequest(instance=spec(f"r9/{op}", sym)), timeout=5)

    def call(op: str, *args: list[Any]) -> list[object]:
        [res] = f.Exec(iter([pb.ExecBatch(instance_id=f"r9/{op}", seq=0, rows=rows(*args))]), timeout=5)
        return outcomes(res)

    assert call("op_1", ["a"], [None], [3]) == ["A!", None, ("error", "shout expects a string, got int")]
    assert call("op_2", [5, 0, 3], [-1, 0, 3], [1.5, 0, 3]) == [3, 0, 1.5]
    assert call("op_3", [[1, 5, 2]], [[]]) == [4, None]
    assert call("op_4", []) == ["r9"]


def test_ekpy_serves_its_source_and_sink_by_name(tmp_path: Any) -> None:
    p = start("ekticker")
    try:
        d = p.plugin().Describe(pb.DescribeRequest(), timeout=5)
        assert [(s.kind, s.name) for s in d.symbols] == [(pb.KIND_SOURCE, "ekticker")]
        s = p.source()
        props = {"interval": value(5), "count": value(3)}
        s.Open(pb.OpenSourceRequest(instance=spec("r1/source", "ekticker"), datasource="t", props=props), timeout=5)
        got: list[Any] = []
        stream = s.Read(pb.ReadRequest(instance_id="r1/source", max_batch=10), timeout=10)
        for batch in stream:
            got.extend(from_pb(r.fields["word"]) for r in batch.records)
            if len(got) >= 3:
                break
        stream.cancel()
        assert got == ["t0", "t1", "t2"]
        s.Close(pb.CloseRequest(instance_id="r1/source"), timeout=5)
    finally:
        p.close()

    p = start("eklines")
    try:
        d = p.plugin().Describe(pb.DescribeRequest(), timeout=5)
        assert [(s.kind, s.name) for s in d.symbols] == [(pb.KIND_SINK, "eklines")]
        out = os.path.join(str(tmp_path), "o.jsonl")
        k = p.sink()
        props = {"path": value(out)}
        opened = k.Open(pb.OpenSinkRequest(instance=spec("r1/sink_0", "eklines"), props=props), timeout=5)
        assert opened.wants_payloads
        write = pb.WriteBatch(instance_id="r1/sink_0", seq=0, payloads=[b'[{"a":1}]', b'{"b":2}'])
        [ack] = k.Write(iter([write]), timeout=5)
        assert (ack.error, list(ack.item_errors)) == ("", ["", ""])
        k.Close(pb.CloseRequest(instance_id="r1/sink_0"), timeout=5)
        with open(out) as f:
            assert f.read() == '{"a": 1}\n{"b": 2}\n'
    finally:
        p.close()


@pytest.mark.parametrize("require_ack", [False, True])
def test_ekbytes_served(tmp_path: Any, require_ack: bool) -> None:
    p = start("ekbytes")
    try:
        d = p.plugin().Describe(pb.DescribeRequest(), timeout=5)
        assert [(s.kind, s.name, s.mode) for s in d.symbols] == [
            (pb.KIND_SINK, "ekbytes", pb.EXPORT_MODE_CONSTRUCTOR)
        ]
        out = os.path.join(str(tmp_path), "out.txt")
        k = p.sink()
        props = {"path": value(out), "requireAck": value(require_ack)}
        opened = k.Open(pb.OpenSinkRequest(instance=spec("r1/sink_0", "ekbytes"), props=props), timeout=5)
        assert opened.wants_payloads and not opened.transactional
        batches = [
            pb.WriteBatch(instance_id="r1/sink_0", seq=0, payloads=EKBYTES_BATCH),
            pb.WriteBatch(instance_id="r1/sink_0", seq=1, payloads=[b"fail again"]),
        ]
        acks = list(k.Write(iter(batches), timeout=5))
        bad_utf8 = "'utf-8' codec can't decode byte 0xff in position 0: invalid start byte"
        refused = "payload refused: it contains fail" if require_ack else ""
        assert [(a.seq, a.error, list(a.item_errors)) for a in acks] == [
            (0, "", ["", refused, bad_utf8, ""]),
            (1, "", [refused]),
        ]
        k.Close(pb.CloseRequest(instance_id="r1/sink_0"), timeout=5)
        with open(out, encoding="utf-8") as f:
            assert f.read() == '[{"a":1}]\né fail\nplain,text\nfail again\n'
    finally:
        p.close()


def test_ekpy_metadata_lists_the_functions() -> None:
    here = os.path.dirname(__file__)
    with open(os.path.join(here, "..", "oort_plugins", "portable", "ekpy.json")) as fh:
        meta = json.load(fh)
    assert [f["name"] for f in meta["functions"]] == ["shout", "clamp", "spread", "whichrule"]
