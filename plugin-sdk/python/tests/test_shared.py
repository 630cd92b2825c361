"""The shared= export style: `serve` in a subprocess on a temp socket, driven
with the generated stubs. A shared symbol is described as a singleton (so the
supervisor runs one process for every rule), yet each instance opened on that
process gets a fresh object from the factory."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from oort_plugin import Context, Function, Plugin, Record, Sink, Source, from_pb
from oort_plugin._pb import plugin_pb2 as pb
from oort_plugin.testing import PYTHON, PluginProcess, rows, spec, value

FIXTURE = os.path.join(os.path.dirname(__file__), "fixture_plugin.py")


@pytest.fixture
def plugin() -> Iterator[PluginProcess]:
    p = PluginProcess([PYTHON, FIXTURE, "shared"], name="shared")
    try:
        p.wait_ready()
        yield p
    finally:
        p.close()


def test_describe_reports_shared_symbols_as_singletons(plugin: PluginProcess) -> None:
    d = plugin.plugin().Describe(pb.DescribeRequest(), timeout=5)
    assert [(s.kind, s.name, s.mode) for s in d.symbols] == [
        (pb.KIND_FUNCTION, "number", pb.EXPORT_MODE_SINGLETON),
        (pb.KIND_SOURCE, "shared", pb.EXPORT_MODE_SINGLETON),
        (pb.KIND_SINK, "shared", pb.EXPORT_MODE_SINGLETON),
    ]


def test_each_function_instance_gets_its_own_object(plugin: PluginProcess) -> None:
    f = plugin.function()
    for iid in ["r1/op_1", "r2/op_1"]:
        f.Open(pb.OpenFunctionRequest(instance=spec(iid, "number")), timeout=5)
    batches = [
        pb.ExecBatch(instance_id="r1/op_1", seq=0, rows=rows([0], [0])),
        pb.ExecBatch(instance_id="r2/op_1", seq=1, rows=rows([0])),
        pb.ExecBatch(instance_id="r1/op_1", seq=2, rows=rows([0])),
    ]
    results = list(f.Exec(iter(batches), timeout=5))
    # One object would have numbered the rows 1 2, 3, 4.
    assert [[from_pb(r.value) for r in res.results] for res in results] == [[1, 2], [1], [3]]
    for iid in ["r1/op_1", "r2/op_1"]:
        f.Close(pb.CloseRequest(instance_id=iid), timeout=5)


def test_each_source_instance_gets_its_own_object(plugin: PluginProcess) -> None:
    s = plugin.source()
    for iid in ["r1/source", "r2/source"]:
        s.Open(pb.OpenSourceRequest(instance=spec(iid, "shared"), props={"count": value(3)}), timeout=5)
    for iid in ["r1/source", "r2/source"]:
        stream = s.Read(pb.ReadRequest(instance_id=iid, max_batch=10), timeout=10)
        # One object would have given everything to the first reader.
        assert [from_pb(r.fields["n"]) for r in next(stream).records] == [0, 1, 2], iid
        s.Close(pb.CloseRequest(instance_id=iid), timeout=5)
        assert list(stream) == []


def test_each_sink_instance_gets_its_own_object(plugin: PluginProcess) -> None:
    k = plugin.sink()
    out = {iid: os.path.join(plugin.dir, f"out{i}.txt") for i, iid in enumerate(["r1/sink_0", "r2/sink_0"])}
    # One object would keep the last path opened and write both rules there.
    for iid, path in out.items():
        k.Open(pb.OpenSinkRequest(instance=spec(iid, "shared"), props={"path": value(path)}), timeout=5)
    batches = [
        pb.WriteBatch(instance_id="r1/sink_0", seq=0, records=[pb.Record(fields={"a": value(1)})]),
        pb.WriteBatch(instance_id="r2/sink_0", seq=1, records=[pb.Record(fields={"a": value(2)})]),
    ]
    acks = list(k.Write(iter(batches), timeout=5))
    assert [(a.seq, a.error) for a in acks] == [(0, ""), (1, "")]
    for iid, want in [("r1/sink_0", "{'a': 1}\n"), ("r2/sink_0", "{'a': 2}\n")]:
        with open(out[iid]) as f:
            assert f.read() == want, iid
        k.Close(pb.CloseRequest(instance_id=iid), timeout=5)


class _Fn(Function):
    def exec(self, ctx: Context, args: list[Any]) -> Any:
        return None


class _Src(Source):
    def open(self, ctx: Context, datasource: str, props: dict[str, Any]) -> None:
        pass

    def read(self, ctx: Context, max: int) -> list[Record]:
        return []


class _Sink(Sink):
    def open(self, ctx: Context, props: dict[str, Any]) -> None:
        pass

    def collect(self, ctx: Context, records: list[Record]) -> None:
        pass


def test_shared_export_rules() -> None:
    p = Plugin("p", "1").function("f", shared=_Fn).source(shared=_Src).sink(shared=_Sink)
    for export in [p._functions["f"], p._source, p._sink]:
        assert export is not None
        assert export.singleton and not export.shares_object
        assert export.make() is not export.make()
        assert export.lock_for_new_instance() is not export.lock_for_new_instance()
    single = Plugin("q", "1").function("f", singleton=_Fn())._functions["f"]
    assert single.singleton and single.shares_object and single.make() is single.make()
    ctor = Plugin("q", "1").function("f", constructor=_Fn)._functions["f"]
    assert not ctor.singleton and not ctor.shares_object

    with pytest.raises(ValueError, match="exactly one of constructor=, singleton= or shared="):
        Plugin("q", "1").function("f", _Fn, shared=_Fn)
    with pytest.raises(ValueError, match="exactly one of"):
        Plugin("q", "1").source(singleton=_Src(), shared=_Src)
    with pytest.raises(ValueError, match="exactly one of"):
        Plugin("q", "1").sink()
    with pytest.raises(TypeError, match="shared must be a zero-argument callable"):
        Plugin("q", "1").sink(shared=_Sink())  # type: ignore[arg-type]
