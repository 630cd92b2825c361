"""Columnar (Arrow IPC) sources and sinks, end to end: columnar_io_plugin.py
served on a real socket, driven as the supervisor drives it
(docs/protocol.md §4.5, "Columnar sources and sinks")."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from typing import Any

import grpc
import pyarrow as pa
import pyarrow.ipc  # noqa: F401
import pytest

from oort_plugin import from_pb
from oort_plugin._pb import plugin_pb2 as pb
from oort_plugin.testing import PYTHON, PluginProcess, spec, value

HERE = os.path.dirname(__file__)
COLUMNAR_IO_PLUGIN = os.path.join(HERE, "columnar_io_plugin.py")


def start(*mode: str) -> PluginProcess:
    return PluginProcess.ready([PYTHON, COLUMNAR_IO_PLUGIN, *mode], name="colio")


@pytest.fixture
def plugin() -> Iterator[PluginProcess]:
    p = start()
    try:
        yield p
    finally:
        p.close()


@pytest.fixture
def row_plugin() -> Iterator[PluginProcess]:
    p = start("rows")
    try:
        yield p
    finally:
        p.close()


def messages(columns: dict[str, Any]) -> tuple[bytes, bytes]:
    """The schema and record-batch messages of one batch of named columns."""
    batch = pa.RecordBatch.from_arrays(list(columns.values()), names=list(columns))
    return batch.schema.serialize().to_pybytes(), batch.serialize().to_pybytes()


def got(ack: pb.WriteAck) -> Any:
    """What the plugin's sink put under "got" while collecting the batch."""
    [m] = [m for m in ack.mutations if m.key == "got"]
    return from_pb(m.put)


# --------------------------------------------------------------------------
# Describe
# --------------------------------------------------------------------------


def test_describe_lists_arrow_for_a_columnar_source_or_sink(plugin: PluginProcess, row_plugin: PluginProcess) -> None:
    assert list(plugin.plugin().Describe(pb.DescribeRequest(), timeout=5).encodings) == [pb.ENCODING_ARROW_IPC]
    assert list(row_plugin.plugin().Describe(pb.DescribeRequest(), timeout=5).encodings) == []
    factory = start("factory")
    try:
        assert list(factory.plugin().Describe(pb.DescribeRequest(), timeout=5).encodings) == [pb.ENCODING_ARROW_IPC]
    finally:
        factory.close()


def test_row_sources_and_sinks_never_import_pyarrow() -> None:
    code = (
        "import sys\n"
        "from oort_plugin import Plugin, Sink, Source\n"
        "class S(Source):\n"
        "    def open(self, ctx, datasource, props): pass\n"
        "    def read(self, ctx, max): return []\n"
        "class K(Sink):\n"
        "    def open(self, ctx, props): pass\n"
        "    def collect(self, ctx, records): return None\n"
        "p = Plugin('rows', '1').source(S).sink(singleton=K())\n"
        "assert not p._columnar_io\n"
        "assert 'pyarrow' not in sys.modules, 'a row source or sink imported pyarrow'\n"
        "class C(K):\n"
        "    def collect_columns(self, ctx, batch): return None\n"
        "q = Plugin('cols', '1').sink(C)\n"
        "assert q._columnar_io\n"
        "assert 'pyarrow' in sys.modules, 'exporting a columnar sink should load pyarrow'\n"
    )
    subprocess.run([PYTHON, "-c", code], check=True, timeout=30)


# --------------------------------------------------------------------------
# Sinks
# --------------------------------------------------------------------------


def test_a_columnar_sink_takes_arrow_and_gets_the_values_sent(plugin: PluginProcess) -> None:
    k = plugin.sink()
    opened = k.Open(pb.OpenSinkRequest(instance=spec("r1/sink_0", "colio")), timeout=5)
    assert opened.takes_arrow and not opened.wants_payloads
    schema, first = messages(
        {"a": pa.array([1, None, 3], type=pa.int64()), "b": pa.array(["x", "y", None], type=pa.string())}
    )
    # The same schema again: the supervisor leaves it out.
    _, second = messages({"a": pa.array([-1, 5], type=pa.int64()), "b": pa.array(["é€", ""], type=pa.string())})
    new_schema, third = messages({"u": pa.array([1 << 63], type=pa.uint64())})
    batches = [
        pb.WriteBatch(instance_id="r1/sink_0", seq=0, arrow_schema=schema, arrow=first),
        pb.WriteBatch(instance_id="r1/sink_0", seq=1, arrow=second),
        pb.WriteBatch(instance_id="r1/sink_0", seq=2, arrow_schema=new_schema, arrow=third),
        pb.WriteBatch(instance_id="r1/sink_0", seq=3, records=[pb.Record(fields={"a": value(7)})]),
    ]
    acks = list(k.Write(iter(batches), timeout=10))
    assert [(a.seq, a.error, list(a.item_errors)) for a in acks] == [
        (0, "", []),
        (1, "", ["minus one", ""]),  # one item per row
        (2, "", []),
        (3, "", []),
    ]
    assert [got(a) for a in acks] == [
        {
            "via": "columns",
            "types": ["int64", "string"],
            "rows": [{"a": 1, "b": "x"}, {"a": None, "b": "y"}, {"a": 3, "b": None}],
        },
        {"via": "columns", "types": ["int64", "string"], "rows": [{"a": -1, "b": "é€"}, {"a": 5, "b": ""}]},
        {"via": "columns", "types": ["uint64"], "rows": [{"u": 1 << 63}]},
        {"via": "records", "rows": [{"a": 7}]},
    ]


def test_a_columnar_batch_before_any_schema_ends_the_stream(plugin: PluginProcess) -> None:
    k = plugin.sink()
    k.Open(pb.OpenSinkRequest(instance=spec("r1/sink_0", "colio")), timeout=5)
    _, batch = messages({"a": pa.array([1], type=pa.int64())})
    with pytest.raises(grpc.RpcError) as e:
        list(k.Write(iter([pb.WriteBatch(instance_id="r1/sink_0", seq=0, arrow=batch)]), timeout=5))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_a_row_sink_does_not_take_arrow(row_plugin: PluginProcess) -> None:
    k = row_plugin.sink()
    opened = k.Open(pb.OpenSinkRequest(instance=spec("r1/sink_0", "colio")), timeout=5)
    assert not opened.takes_arrow
    # Columns sent anyway reach collect as the records the row encoding of
    # the same batch gives (a null cell is an absent field).
    schema, batch = messages({"a": pa.array([1, None], type=pa.int64()), "b": pa.array([None, True], type=pa.bool_())})
    rows = [pb.Record(fields={"a": value(1)}), pb.Record(fields={"b": value(True)})]
    acks = list(
        k.Write(
            iter(
                [
                    pb.WriteBatch(instance_id="r1/sink_0", seq=0, arrow_schema=schema, arrow=batch),
                    pb.WriteBatch(instance_id="r1/sink_0", seq=1, records=rows),
                ]
            ),
            timeout=5,
        )
    )
    assert [a.error for a in acks] == ["", ""]
    assert got(acks[0]) == got(acks[1]) == {"via": "records", "rows": [{"a": 1}, {"b": True}]}


# --------------------------------------------------------------------------
# Sources
# --------------------------------------------------------------------------


def read(p: PluginProcess, datasource: str, count: int, accept_arrow: bool, batches: int) -> list[pb.RecordBatch]:
    s = p.source()
    s.Open(
        pb.OpenSourceRequest(instance=spec("r1/source", "colio"), datasource=datasource, props={"count": value(count)}),
        timeout=5,
    )
    stream = s.Read(pb.ReadRequest(instance_id="r1/source", max_batch=2, accept_arrow=accept_arrow), timeout=10)
    out = [next(stream) for _ in range(batches)]
    s.Close(pb.CloseRequest(instance_id="r1/source"), timeout=5)
    return out


def test_a_columnar_source_sends_arrow_when_accepted(plugin: PluginProcess) -> None:
    batches = read(plugin, "ds", 8, True, 4)
    schema: Any = None
    decoded = []
    for b in batches[:3]:
        assert not b.records and b.arrow
        if b.arrow_schema:
            schema = pa.ipc.read_schema(pa.py_buffer(b.arrow_schema))
        decoded.append(pa.ipc.read_record_batch(pa.py_buffer(b.arrow), schema).to_pylist())
    # The schema comes with the first batch and when it changes only.
    assert [bool(b.arrow_schema) for b in batches[:3]] == [True, False, True]
    assert decoded == [
        [{"n": 0}, {"n": 1}],
        [{"n": 2}, {"n": 3}],
        [{"n": 4, "tag": "t4"}, {"n": 5, "tag": None}],
    ]
    assert [from_pb(b.offset) for b in batches] == [2, 4, 6, 8]
    # read_columns returned None: that batch is rows.
    last = batches[3]
    assert not last.arrow and not last.arrow_schema
    assert [from_pb(r.fields["n"]) for r in last.records] == [6, 7]


def test_a_columnar_source_sends_rows_unless_arrow_is_accepted(plugin: PluginProcess) -> None:
    batches = read(plugin, "ds", 4, False, 2)
    assert all(not b.arrow and not b.arrow_schema for b in batches)
    # read_columns would have answered these in columns.
    assert [[from_pb(r.fields["n"]) for r in b.records] for b in batches] == [[0, 1], [2, 3]]


def test_a_source_whose_columns_repeat_a_field_fails_the_read(plugin: PluginProcess) -> None:
    with pytest.raises(grpc.RpcError) as e:
        read(plugin, "dup", 4, True, 1)
    assert e.value.code() == grpc.StatusCode.INTERNAL
    assert "field 'x' appears twice" in (e.value.details() or "")
