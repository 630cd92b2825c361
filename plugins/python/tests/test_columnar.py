"""The columnar (Arrow IPC) encoding in the plugins that list it: conformance
(cf_echo is a VectorizedFunction, every other function the row API), its
SDK-free twin raw/raw_conformance.py (written from docs/protocol.md with
pyarrow) and the benchmarks' pyecho. Each answer must be the same in both
encodings."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import grpc
import pyarrow as pa
import pytest

from oort_plugin._pb import plugin_pb2 as pb
from oort_plugin.testing import PYTHON, ArrowResults, PluginProcess, arrow_batch, rows, spec

U64_MAX = (1 << 64) - 1
RAW = os.path.join(os.path.dirname(__file__), "..", "raw", "raw_conformance.py")

#: One column per type the supervisor sends, three rows each, nulls included.
COLUMNS: list[Any] = [
    pa.array([1, None, -(1 << 63)], type=pa.int64()),
    pa.array([U64_MAX, 1 << 63, None], type=pa.uint64()),
    pa.array([2.5, None, float("-inf")], type=pa.float64()),
    pa.array(["s", "é€", None], type=pa.string()),
    pa.array([b"\x00", None, b""], type=pa.binary()),
    pa.array([None, True, False], type=pa.bool_()),
    pa.nulls(3),
]


def start(name: str, env: dict[str, str] | None = None, argv: list[str] | None = None) -> PluginProcess:
    return PluginProcess.ready(argv or [PYTHON, "-m", f"oort_plugins.{name}"], env=env, name=name)


@pytest.fixture(scope="module", params=["constructors", "singletons", "raw"])
def conformance(request: pytest.FixtureRequest) -> Iterator[PluginProcess]:
    if request.param == "raw":  # the same functions on the generated stubs alone (constructors)
        p = start("conformance", argv=[PYTHON, RAW])
    else:
        p = start("conformance", {"OORT_CONFORMANCE_SINGLETON": "1" if request.param == "singletons" else "0"})
    yield p
    p.close()


@pytest.fixture(scope="module")
def raw() -> Iterator[PluginProcess]:
    p = start("conformance", argv=[PYTHON, RAW])
    yield p
    p.close()


@pytest.fixture(scope="module")
def pyecho() -> Iterator[PluginProcess]:
    p = start("pyecho")
    yield p
    p.close()


def both_encodings(p: PluginProcess, symbol: str, columns: list[Any]) -> tuple[pb.ExecResult, pb.ExecResult]:
    """The same batch sent as rows and as columns to two instances of `symbol`."""
    f = p.function()
    iid_rows, iid_cols = f"rows-{symbol}/op", f"cols-{symbol}/op"
    for iid in (iid_rows, iid_cols):
        f.Open(pb.OpenFunctionRequest(instance=spec(iid, symbol)), timeout=5)
    n = len(columns[0]) if columns else 0
    arg_rows = [[c[i].as_py() for c in columns] for i in range(n)]
    by_rows, by_cols = f.Exec(
        iter([pb.ExecBatch(instance_id=iid_rows, seq=0, rows=rows(*arg_rows)), arrow_batch(iid_cols, 0, columns)]),
        timeout=10,
    )
    for iid in (iid_rows, iid_cols):
        f.Close(pb.CloseRequest(instance_id=iid), timeout=5)
    return by_rows, by_cols


def test_conformance_lists_arrow(conformance: PluginProcess) -> None:
    d = conformance.plugin().Describe(pb.DescribeRequest(), timeout=5)
    assert list(d.encodings) == [pb.ENCODING_ARROW_IPC]


def test_conformance_cf_echo_answers_columns_with_the_array_received(conformance: PluginProcess) -> None:
    f = conformance.function()
    f.Open(pb.OpenFunctionRequest(instance=spec("r1/op_echo", "cf_echo")), timeout=5)
    batches = [arrow_batch("r1/op_echo", i, [c]) for i, c in enumerate(COLUMNS)]
    results = list(f.Exec(iter(batches), timeout=10))
    reader = ArrowResults()
    for sent, res in zip(COLUMNS, results):
        got = reader.column(res)
        assert (got.type, got.to_pylist()) == (sent.type, sent.to_pylist())
        assert not res.errors and not res.mutations


@pytest.mark.parametrize("column", range(len(COLUMNS)))
def test_conformance_cf_echo_is_the_same_in_both_encodings(conformance: PluginProcess, column: int) -> None:
    by_rows, by_cols = both_encodings(conformance, "cf_echo", [COLUMNS[column]])
    reader = ArrowResults()
    assert reader.outcomes(by_cols) == reader.outcomes(by_rows) == [("value", v) for v in COLUMNS[column].to_pylist()]
    assert by_cols.arrow and not by_rows.arrow  # each answered in its own encoding
    assert reader.kinds(by_cols) == reader.kinds(by_rows)


def test_conformance_row_functions_are_the_same_in_both_encodings(conformance: PluginProcess) -> None:
    reader = ArrowResults()
    cases: list[tuple[str, list[Any]]] = [
        ("cf_fail", [pa.array(["good", "bad", None, "badger"])]),
        ("cf_fail", [pa.array([1, 2], type=pa.int64())]),
        ("cf_count", [pa.array(["a", "a", "b", None])]),
        ("cf_state", [pa.array(["put", "get", "incr", "counter"]), pa.array(["k", "k", "n", "k"]), pa.array([7, None, 3, None])]),
        ("cf_echo", [pa.array([1, 2]), pa.array(["extra", None])]),
    ]
    for symbol, columns in cases:
        by_rows, by_cols = both_encodings(conformance, symbol, columns)
        assert reader.outcomes(by_cols) == reader.outcomes(by_rows), symbol
        assert reader.kinds(by_cols) == reader.kinds(by_rows), symbol
        assert list(by_cols.mutations) == list(by_rows.mutations), symbol
    by_rows, by_cols = both_encodings(conformance, "cf_fail", [pa.array(["good", "bad"])])
    assert reader.outcomes(by_cols) == [("value", "good"), ("error", "cf_fail: bad")]


def test_conformance_cf_pid_without_arguments(conformance: PluginProcess) -> None:
    f = conformance.function()
    f.Open(pb.OpenFunctionRequest(instance=spec("r1/op_pid", "cf_pid")), timeout=5)
    [res] = f.Exec(iter([arrow_batch("r1/op_pid", 0, [], num_rows=2)]), timeout=5)
    assert ArrowResults().outcomes(res) == [("value", conformance.proc.pid)] * 2


def test_raw_schemas_are_kept_per_stream(raw: PluginProcess) -> None:
    """The supervisor sends arrow_schema only when it is new on a stream; the
    plugin answers the same way, in its own direction."""
    f = raw.function()
    for iid, symbol in (("r1/fn_0_cf_echo", "cf_echo"), ("r1/fn_1_cf_fail", "cf_fail")):
        f.Open(pb.OpenFunctionRequest(instance=spec(iid, symbol)), timeout=5)
    ints, strs = pa.array([1, None, 3], type=pa.int64()), pa.array(["a", "bad", None])
    batches = [
        arrow_batch("r1/fn_0_cf_echo", 0, [ints]),  # the stream's first schema
        arrow_batch("r1/fn_0_cf_echo", 1, [ints], with_schema=False),  # the same: none sent
        arrow_batch("r1/fn_1_cf_fail", 0, [strs]),  # another instance, a new schema
        arrow_batch("r1/fn_0_cf_echo", 2, [strs], with_schema=False),  # the stream's last schema (Utf8)
        pb.ExecBatch(instance_id="r1/fn_1_cf_fail", seq=1, rows=rows(["bad2"])),  # rows, on the same stream
        arrow_batch("r1/fn_0_cf_echo", 3, [ints]),  # the first schema again
        arrow_batch("r1/fn_0_cf_echo", 4, [], num_rows=2),  # no argument: nulls
    ]
    results = list(f.Exec(iter(batches), timeout=10))
    assert [r.seq for r in results] == [0, 1, 0, 2, 1, 3, 4]
    reader = ArrowResults()
    assert [reader.outcomes(r) for r in results] == [
        [("value", 1), ("value", None), ("value", 3)],
        [("value", 1), ("value", None), ("value", 3)],
        [("value", "a"), ("error", "cf_fail: bad"), ("value", None)],
        [("value", "a"), ("value", "bad"), ("value", None)],
        [("error", "cf_fail: bad2")],
        [("value", 1), ("value", None), ("value", 3)],
        [("value", None), ("value", None)],
    ]
    # Only cf_echo answers in columns; its schema goes out when it differs from the last one sent.
    assert [bool(r.arrow) for r in results] == [True, True, False, True, False, True, True]
    assert [bool(r.arrow_schema) for r in results] == [True, False, False, True, False, True, True]


def test_raw_uint_columns_stay_uint(raw: PluginProcess) -> None:
    """A UInt64 column holds the supervisor's `uint` values: a row function gets
    them as `uint`, as the row encoding sends them, however small."""
    f = raw.function()
    f.Open(pb.OpenFunctionRequest(instance=spec("r2/fn_0_cf_fail", "cf_fail")), timeout=5)
    column = pa.array([U64_MAX, 5, None], type=pa.uint64())
    [res] = f.Exec(iter([arrow_batch("r2/fn_0_cf_fail", 0, [column])]), timeout=5)
    assert [r.value.WhichOneof("kind") for r in res.results] == ["uint", "uint", "null"]
    assert [r.value.uint for r in res.results] == [U64_MAX, 5, 0]


def test_raw_refuses_unreadable_columnar_batches(raw: PluginProcess) -> None:
    """No schema yet on the stream, a batch that does not fit the stream's
    schema, bytes that are no IPC message: the stream ends, INVALID_ARGUMENT."""
    f = raw.function()
    iid = "r3/fn_0_cf_echo"
    f.Open(pb.OpenFunctionRequest(instance=spec(iid, "cf_echo")), timeout=5)
    for stream in (
        [arrow_batch(iid, 0, [pa.array([1])], with_schema=False)],
        [arrow_batch(iid, 0, [pa.array([1, 2, 3])]), arrow_batch(iid, 1, [pa.array(["a", "b", "c"])], with_schema=False)],
        [pb.ExecBatch(instance_id=iid, seq=0, arrow=b"not arrow")],
    ):
        with pytest.raises(grpc.RpcError) as err:
            list(f.Exec(iter(stream), timeout=5))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_pyecho(pyecho: PluginProcess) -> None:
    d = pyecho.plugin().Describe(pb.DescribeRequest(), timeout=5)
    assert d.name == "pyecho"
    assert [(s.name, s.mode, s.is_aggregate) for s in d.symbols] == [
        ("echo", pb.EXPORT_MODE_SINGLETON, False),
        ("echo_rows", pb.EXPORT_MODE_SINGLETON, False),
    ]
    assert list(d.encodings) == [pb.ENCODING_ARROW_IPC]
    f = pyecho.function()
    assert f.Validate(pb.ValidateRequest(symbol="echo"), timeout=5).error == "echo expects 1 argument, got 0"
    reader = ArrowResults()
    for column in COLUMNS:
        want = [("value", v) for v in column.to_pylist()]
        echo_rows, echo_cols = both_encodings(pyecho, "echo", [column])
        assert reader.outcomes(echo_rows) == reader.outcomes(echo_cols) == want
        assert echo_cols.arrow  # the vectorized echo answers columns with columns
        rows_rows, rows_cols = both_encodings(pyecho, "echo_rows", [column])
        assert reader.outcomes(rows_rows) == reader.outcomes(rows_cols) == want
        # The row API's answer to columns: in columns when that is exact, and
        # either way of the Value cases the row answer has.
        assert reader.kinds(rows_cols) == reader.kinds(rows_rows)
    f.Open(pb.OpenFunctionRequest(instance=spec("r8/op", "echo")), timeout=5)
    [res] = f.Exec(iter([arrow_batch("r8/op", 0, [], num_rows=2)]), timeout=5)
    assert reader.outcomes(res) == [("error", "echo expects 1 argument, got 0")] * 2
    # Values no column holds reach echo row by row, unchanged.
    f.Open(pb.OpenFunctionRequest(instance=spec("r9/op", "echo")), timeout=5)
    mixed: list[list[Any]] = [[1], ["a"], [[1, 2.5]], [{"k": None}]]
    [res] = f.Exec(iter([pb.ExecBatch(instance_id="r9/op", seq=0, rows=rows(*mixed))]), timeout=5)
    assert reader.outcomes(res) == [("value", r[0]) for r in mixed]


def test_pyecho_metadata_lists_its_functions() -> None:
    here = os.path.dirname(__file__)
    with open(os.path.join(here, "..", "oort_plugins", "pyecho.json")) as fh:
        meta = json.load(fh)
    assert [f["name"] for f in meta["functions"]] == ["echo", "echo_rows"]
