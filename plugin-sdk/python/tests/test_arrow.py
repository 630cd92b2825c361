"""Columnar (Arrow IPC) Exec batches, end to end: arrow_plugin.py served on a
real socket, driven as the supervisor drives it (docs/protocol.md, "Columnar
batches (Arrow IPC)")."""

from __future__ import annotations

import math
import os
import subprocess
from collections.abc import Iterator
from typing import Any

import array

import grpc
import pyarrow as pa
import pytest

from oort_plugin import Context, Plugin, VectorizedFunction, from_pb
from oort_plugin._pb import plugin_pb2 as pb
from oort_plugin.testing import PYTHON, ArrowResults, PluginProcess, arrow_batch, rows, spec

HERE = os.path.dirname(__file__)
ARROW_PLUGIN = os.path.join(HERE, "arrow_plugin.py")
ROW_PLUGIN = os.path.join(HERE, "fixture_plugin.py")

U64_MAX = (1 << 64) - 1


@pytest.fixture(scope="module")
def plugin() -> Iterator[PluginProcess]:
    p = PluginProcess([PYTHON, ARROW_PLUGIN], name="arrowy")
    try:
        p.wait_ready()
        yield p
    finally:
        p.close()


_opened = 0


def open_(p: PluginProcess, symbol: str, state: list[pb.StateEntry] | None = None) -> str:
    """Opens a fresh instance of `symbol` (the plugin lives for the whole module)."""
    global _opened
    _opened += 1
    iid = f"r{_opened}/op_1"
    p.function().Open(pb.OpenFunctionRequest(instance=spec(iid, symbol, state or [])), timeout=5)
    return iid


def exec_(p: PluginProcess, batches: list[pb.ExecBatch]) -> list[pb.ExecResult]:
    results = list(p.function().Exec(iter(batches), timeout=10))
    assert [r.seq for r in results] == [b.seq for b in batches]
    return results


# --------------------------------------------------------------------------
# Describe
# --------------------------------------------------------------------------


def test_describe_lists_arrow_when_a_vectorized_function_is_exported(plugin: PluginProcess) -> None:
    d = plugin.plugin().Describe(pb.DescribeRequest(), timeout=5)
    assert list(d.encodings) == [pb.ENCODING_ARROW_IPC]
    assert not any(s.is_aggregate for s in d.symbols)


def test_describe_lists_arrow_for_a_factory_export() -> None:
    p = PluginProcess([PYTHON, ARROW_PLUGIN, "factory"], name="arrowy")
    try:
        p.wait_ready()
        d = p.plugin().Describe(pb.DescribeRequest(), timeout=5)
        assert [s.name for s in d.symbols] == ["vecho"]
        assert list(d.encodings) == [pb.ENCODING_ARROW_IPC]
    finally:
        p.close()


def test_a_row_only_plugin_stays_row_only() -> None:
    p = PluginProcess([PYTHON, ROW_PLUGIN], name="fixture")
    try:
        p.wait_ready()
        d = p.plugin().Describe(pb.DescribeRequest(), timeout=5)
        assert list(d.encodings) == []
    finally:
        p.close()


def test_row_only_plugins_never_import_pyarrow() -> None:
    code = (
        "import sys\n"
        "from oort_plugin import Context, Function, Plugin, VectorizedFunction\n"
        "class F(Function):\n"
        "    def exec(self, ctx, args): return 1\n"
        "p = Plugin('rows', '1').function('f', F).function('g', singleton=F())\n"
        "assert not p._vectorized\n"
        "assert 'pyarrow' not in sys.modules, 'row-only plugin imported pyarrow'\n"
        "class V(VectorizedFunction):\n"
        "    def exec_columns(self, ctx, args): return args[0]\n"
        "p.function('v', V)\n"
        "assert p._vectorized\n"
        "assert 'pyarrow' in sys.modules, 'exporting a VectorizedFunction should load pyarrow'\n"
    )
    subprocess.run([PYTHON, "-c", code], check=True, timeout=30)


# --------------------------------------------------------------------------
# VectorizedFunction on columns
# --------------------------------------------------------------------------


def test_vectorized_echo_answers_in_columns_with_the_types_received(plugin: PluginProcess) -> None:
    iid = open_(plugin, "vecho")
    columns: list[Any] = [
        pa.array([1, None, -(1 << 63)], type=pa.int64()),
        pa.array([U64_MAX, 0, None], type=pa.uint64()),
        pa.array([1.5, float("inf"), None], type=pa.float64()),
        pa.array(["a", None, "é€"], type=pa.string()),
        pa.array([b"\x00", None, b""], type=pa.binary()),
        pa.array([True, False, None], type=pa.bool_()),
        pa.nulls(3),
    ]
    batches = [arrow_batch(iid, i, [c], with_schema=True) for i, c in enumerate(columns)]
    reader = ArrowResults()
    for sent, res in zip(columns, exec_(plugin, batches)):
        assert not res.results and not res.errors
        got = reader.column(res)
        assert got.type == sent.type
        assert got.to_pylist() == sent.to_pylist()


def test_schema_is_sent_once_per_stream_and_again_when_it_changes(plugin: PluginProcess) -> None:
    iid = open_(plugin, "vecho")
    ints, strs = pa.array([1, 2, 3]), pa.array(["x", "y"])
    batches = [
        arrow_batch(iid, 0, [ints]),
        arrow_batch(iid, 1, [ints], with_schema=False),  # the stream's last schema applies
        arrow_batch(iid, 2, [strs]),  # a new schema
        arrow_batch(iid, 3, [strs], with_schema=False),
        arrow_batch(iid, 4, [ints]),  # and back
    ]
    results = exec_(plugin, batches)
    # The answers follow the same rule in the plugin's direction.
    assert [bool(r.arrow_schema) for r in results] == [True, False, True, False, True]
    reader = ArrowResults()
    assert [reader.column(r).to_pylist() for r in results] == [[1, 2, 3], [1, 2, 3], ["x", "y"], ["x", "y"], [1, 2, 3]]
    # A new stream knows no schema in either direction.
    with pytest.raises(grpc.RpcError) as e:
        exec_(plugin, [arrow_batch(iid, 5, [ints], with_schema=False)])
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "without arrow_schema" in (e.value.details() or "")
    [res] = exec_(plugin, [arrow_batch(iid, 6, [ints])])
    assert res.arrow_schema


def test_schemas_are_kept_per_stream(plugin: PluginProcess) -> None:
    a, b = open_(plugin, "vecho"), open_(plugin, "vecho")
    f = plugin.function()
    # Two streams open at once, each sending its schema once.
    s1 = f.Exec(iter([arrow_batch(a, 0, [[1]]), arrow_batch(a, 1, [[2]], with_schema=False)]), timeout=10)
    s2 = f.Exec(iter([arrow_batch(b, 0, [["s"]]), arrow_batch(b, 1, [["t"]], with_schema=False)]), timeout=10)
    r1, r2 = ArrowResults(), ArrowResults()
    assert [r1.outcomes(r) for r in s1] == [[("value", 1)], [("value", 2)]]
    assert [r2.outcomes(r) for r in s2] == [[("value", "s")], [("value", "t")]]


def test_an_undecodable_batch_breaks_the_stream(plugin: PluginProcess) -> None:
    iid = open_(plugin, "vecho")
    bad = arrow_batch(iid, 0, [[1, 2]])
    bad.arrow = bad.arrow[:12]
    with pytest.raises(grpc.RpcError) as e:
        exec_(plugin, [bad])
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_zero_argument_function_gets_the_row_count(plugin: PluginProcess) -> None:
    iid = open_(plugin, "vrowno")
    results = exec_(
        plugin,
        [
            arrow_batch(iid, 0, [], num_rows=4),
            arrow_batch(iid, 1, [], num_rows=2, with_schema=False),
            pb.ExecBatch(instance_id=iid, seq=2, rows=rows([], [], [])),
        ],
    )
    reader = ArrowResults()
    assert [v for _, v in reader.outcomes(results[0])] == [0, 1, 2, 3]
    assert [v for _, v in reader.outcomes(results[1])] == [0, 1]
    assert not results[2].arrow  # a row batch is answered in rows
    assert [from_pb(r.value) for r in results[2].results] == [0, 1, 2]
    assert [[(m.key, m.counter) for m in r.mutations] for r in results] == [[("rows", 4)], [("rows", 6)], [("rows", 9)]]


def test_an_exception_fails_every_row_and_keeps_the_mutations(plugin: PluginProcess) -> None:
    iid = open_(plugin, "vfail")
    results = exec_(
        plugin,
        [
            arrow_batch(iid, 0, [["a", "boom", None]]),
            arrow_batch(iid, 1, [["b", "c"]], with_schema=False),
            pb.ExecBatch(instance_id=iid, seq=2, rows=rows(["boom"], ["d"])),
        ],
    )
    reader = ArrowResults()
    assert reader.outcomes(results[0]) == [("error", "boom in the batch")] * 3
    assert [(e.row, e.message) for e in results[0].errors] == [(0, "boom in the batch"), (1, "boom in the batch"), (2, "boom in the batch")]
    assert reader.column(results[0]).null_count == 3
    assert reader.outcomes(results[1]) == [("value", "b"), ("value", "c")]
    assert reader.outcomes(results[2]) == [("error", "boom in the batch")] * 2
    assert [[(m.key, m.counter) for m in r.mutations] for r in results] == [[("batches", 1)], [("batches", 2)], [("batches", 3)]]


def test_a_result_of_the_wrong_length_fails_every_row(plugin: PluginProcess) -> None:
    iid = open_(plugin, "vshort")
    [res] = exec_(plugin, [arrow_batch(iid, 0, [[1, 2, 3]])])
    assert ArrowResults().outcomes(res) == [("error", "exec_columns returned 2 values for a batch of 3 rows")] * 3


def test_results_are_normalised(plugin: PluginProcess) -> None:
    d, c, m, dic = open_(plugin, "vdouble"), open_(plugin, "vchunked"), open_(plugin, "vmixed"), open_(plugin, "vdict")
    results = exec_(
        plugin,
        [
            arrow_batch(d, 0, [[1, 2, 3]]),  # numpy int64
            arrow_batch(d, 1, [[1.5, None]]),  # numpy float64 with NaN for the null
            arrow_batch(c, 2, [["ab", "c", "d"]]),  # chunked
            arrow_batch(m, 3, [[0, 0, 0]]),  # a list no column holds: rows
            arrow_batch(dic, 4, [["x", "y", "x"]]),  # dictionary: decoded
        ],
    )
    reader = ArrowResults()
    assert reader.column(results[0]).type == pa.int64()
    assert reader.outcomes(results[0]) == [("value", 2), ("value", 4), ("value", 6)]
    out = reader.outcomes(results[1])
    assert out[0] == ("value", 3.0) and math.isnan(out[1][1])
    assert reader.outcomes(results[2]) == [("value", "AB"), ("value", "C"), ("value", "D")]
    assert not results[3].arrow
    assert reader.outcomes(results[3]) == [("value", "0"), ("value", 1), ("value", "2")]
    assert reader.column(results[4]).type == pa.string()
    assert reader.outcomes(results[4]) == [("value", "x"), ("value", "y"), ("value", "x")]


def test_row_batches_reach_exec_columns_as_typed_arrays(plugin: PluginProcess) -> None:
    iid = open_(plugin, "vtypes")
    [res] = exec_(
        plugin,
        [pb.ExecBatch(instance_id=iid, seq=0, rows=rows([1, U64_MAX, None, "s", b"b", 1.5, True]))],
    )
    assert not res.arrow
    assert [from_pb(r.value) for r in res.results] == ["int64,uint64,null,string,binary,double,bool"]


def test_row_batches_to_a_vectorized_function(plugin: PluginProcess) -> None:
    iid = open_(plugin, "vecho")
    batches = [
        pb.ExecBatch(instance_id=iid, seq=0, rows=rows([1], [None], [U64_MAX])),
        # Values of several types in one argument: no column holds them, so
        # each row goes through exec (exec_columns on one-row arrays), exactly.
        pb.ExecBatch(instance_id=iid, seq=1, rows=rows([1], ["a"], [2.0], [[1, 2]], [{"k": "v"}])),
        pb.ExecBatch(instance_id=iid, seq=2),
    ]
    results = exec_(plugin, batches)
    assert all(not r.arrow for r in results)
    got = [[from_pb(x.value) for x in r.results] for r in results]
    assert got[0] == [1, None, U64_MAX]
    assert got[1] == [1, "a", 2.0, [1, 2], {"k": "v"}]
    assert [type(v) for v in got[1][:3]] == [int, str, float]
    assert got[2] == []


def test_lists_and_maps_reach_a_vectorized_function_exactly_or_not_at_all(plugin: PluginProcess) -> None:
    iid = open_(plugin, "vecho")
    [maps, lists] = exec_(
        plugin,
        [
            # As one column these would be a struct of both keys: row by row instead.
            pb.ExecBatch(instance_id=iid, seq=0, rows=rows([{"a": 1}], [{"b": "x"}])),
            pb.ExecBatch(instance_id=iid, seq=1, rows=rows([[1, 2]], [[1, 2.5]])),
        ],
    )
    reader = ArrowResults()
    assert reader.outcomes(maps) == [("value", {"a": 1}), ("value", {"b": "x"})]
    # [1, 2.5] would reach the function as [1.0, 2.5]: that row fails instead.
    assert reader.outcomes(lists) == [("value", [1, 2]), ("error", "this list value has no exact Arrow array: [1, 2.5]")]


# --------------------------------------------------------------------------
# Row functions in a plugin that reads columns
# --------------------------------------------------------------------------

ROW_VALUES: list[list[Any]] = [
    [1, U64_MAX, 1.5, "é", b"\x00\xff", True, None],
    [-(1 << 63), 1 << 63, float("-inf"), "", b"", False, None],
    [None, None, None, None, None, None, None],
]


def test_a_row_function_gets_the_same_values_from_columns_and_rows(plugin: PluginProcess) -> None:
    iid = open_(plugin, "types")
    columns: list[Any] = [
        pa.array([r[0] for r in ROW_VALUES], type=pa.int64()),
        pa.array([r[1] for r in ROW_VALUES], type=pa.uint64()),
        pa.array([r[2] for r in ROW_VALUES], type=pa.float64()),
        pa.array([r[3] for r in ROW_VALUES], type=pa.string()),
        pa.array([r[4] for r in ROW_VALUES], type=pa.binary()),
        pa.array([r[5] for r in ROW_VALUES], type=pa.bool_()),
        pa.nulls(len(ROW_VALUES)),
    ]
    by_rows, by_columns = exec_(
        plugin,
        [pb.ExecBatch(instance_id=iid, seq=0, rows=rows(*ROW_VALUES)), arrow_batch(iid, 1, columns)],
    )
    want = [[[type(v).__name__, v] for v in r] for r in ROW_VALUES]
    reader = ArrowResults()
    assert reader.outcomes(by_rows) == [("value", w) for w in want]
    assert reader.outcomes(by_columns) == reader.outcomes(by_rows)
    # Compared on the wire too: a uint above int64 stays a uint, 1 stays an int.
    assert by_columns.results == by_rows.results


def test_a_row_function_answers_columns_in_columns_when_exact(plugin: PluginProcess) -> None:
    iid = open_(plugin, "echo")
    cases: list[tuple[Any, bool]] = [
        (pa.array([1, None, -(1 << 63)], type=pa.int64()), True),
        (pa.array([1, 2], type=pa.uint64()), True),  # every value fits `int`, as rows would send it
        (pa.array([U64_MAX, 1, None], type=pa.uint64()), False),  # `uint` and `int` in one answer: rows
        (pa.array([1.5, None, float("nan")], type=pa.float64()), True),
        (pa.array(["é", None], type=pa.string()), True),
        (pa.array([b"\x00", None], type=pa.binary()), True),
        (pa.array([True, None], type=pa.bool_()), True),
        (pa.nulls(2), True),
    ]
    by_cols = exec_(plugin, [arrow_batch(iid, i, [c]) for i, (c, _) in enumerate(cases)])
    by_rows = exec_(
        plugin,
        [pb.ExecBatch(instance_id=iid, seq=i, rows=rows(*([v] for v in c.to_pylist()))) for i, (c, _) in enumerate(cases)],
    )
    reader, row_reader = ArrowResults(), ArrowResults()
    for (column, in_columns), c, r in zip(cases, by_cols, by_rows):
        assert bool(c.arrow) == in_columns, column.type
        assert not r.arrow
        # The same values, of the same Value cases, as the row answer.
        assert reader.kinds(c) == row_reader.kinds(r), column.type
        got, want = reader.outcomes(c), row_reader.outcomes(r)
        assert [repr(v) for v in got] == [repr(v) for v in want]  # repr: nan == nan
    assert reader.kinds(by_cols[2]) == ["uint", "int", "null"]


def test_a_row_function_gets_zero_argument_rows_from_columns(plugin: PluginProcess) -> None:
    iid = open_(plugin, "arity")
    [res] = exec_(plugin, [arrow_batch(iid, 0, [], num_rows=3)])
    assert ArrowResults().outcomes(res) == [("value", 0)] * 3


def test_row_errors_and_mutations_of_a_row_function_on_columns(plugin: PluginProcess) -> None:
    fail, count = open_(plugin, "fail"), open_(plugin, "count", [pb.StateEntry(key="k", counter=10)])
    results = exec_(
        plugin,
        [
            arrow_batch(fail, 0, [["ok", "bad", "fine"], [1, 2, 3]]),
            arrow_batch(count, 1, [["k", "k", "j"]]),
            arrow_batch(count, 2, [["k"]], with_schema=False),
        ],
    )
    reader = ArrowResults()
    assert reader.outcomes(results[0]) == [("value", "ok"), ("error", "bad row 2"), ("value", "fine")]
    assert [(m.key, m.counter) for m in results[0].mutations] == [("ok", 2)]
    assert reader.outcomes(results[1]) == [("value", 11), ("value", 12), ("value", 1)]
    assert [(m.key, m.counter) for m in results[1].mutations] == [("k", 12), ("j", 1)]
    assert [(m.key, m.counter) for m in results[2].mutations] == [("k", 13)]


# --------------------------------------------------------------------------
# In process
# --------------------------------------------------------------------------


class _Plus(VectorizedFunction):
    def exec_columns(self, ctx: Context, args: list[pa.Array]) -> Any:
        assert ctx.batch_rows == 1
        import pyarrow.compute as pc

        return pc.add(args[0], args[1])


def test_exec_runs_exec_columns_on_one_row() -> None:
    ctx = Context("r1/op_1")
    assert _Plus().exec(ctx, [2, 3]) == 5
    assert _Plus().exec(ctx, [2, None]) is None
    assert ctx.batch_rows == 0
    with pytest.raises(Exception):
        _Plus().exec(ctx, ["a", 1])


def test_arrays_of_values_are_exact() -> None:
    from oort_plugin._arrow import array_of, result_of, value_array

    assert array_of([1, None, U64_MAX]).type == pa.uint64()
    assert array_of([1, None, -1]).type == pa.int64()
    assert array_of([None, None]).type == pa.null()
    for mixed in ([1, 2.5], [True, 1], ["a", b"a"], [[1]], [-1, U64_MAX]):
        with pytest.raises((TypeError, OverflowError)):
            array_of(mixed)
    assert value_array({"a": [1, None]}).to_pylist() == [{"a": [1, None]}]
    with pytest.raises(TypeError):
        value_array([1, "a"])
    # A list result that makes no exact column is kept as values (answered as rows).
    assert result_of([[1, 2.5], "x"], 2) == [[1, 2.5], "x"]
    # ints beyond int64 next to smaller ones: rows keep `int` and `uint` apart.
    assert result_of([1, U64_MAX], 2) == [1, U64_MAX]
    assert result_of([1, None], 2).type == pa.int64()
    assert result_of(array.array("f", [1.5, 2.5]), 2).to_pylist() == [1.5, 2.5]
    assert result_of(pa.array([1, 2], type=pa.float16()), 2).type == pa.float32()
    with pytest.raises(TypeError, match="cannot carry"):
        result_of(pa.array([1], type=pa.timestamp("s")), 1)


def test_numpy_results() -> None:
    np = pytest.importorskip("numpy", reason="numpy is not installed (the SDK's venv leaves it out)")
    from oort_plugin._arrow import result_of

    assert result_of(np.array([1.5, 2.5], dtype=np.float32), 2).type == pa.float32()
    assert result_of(np.arange(3), 3).to_pylist() == [0, 1, 2]
    f = pa.array([1.0, None]).to_numpy(zero_copy_only=False)
    assert result_of(f, 2).type == pa.float64()


def test_a_vectorized_export_is_recognised() -> None:
    assert Plugin("p", "1").function("plus", _Plus)._vectorized
    assert Plugin("p", "1").function("plus", singleton=_Plus())._vectorized
