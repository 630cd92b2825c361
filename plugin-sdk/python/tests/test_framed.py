"""The framed Exec path (docs/protocol.md, "The framed Exec path"), end to end:
the test plugins served with `OORT_FRAMED_SOCKET` set, their functions opened
over gRPC and called over a raw socket with length-prefixed frames, as the
supervisor calls them."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from collections.abc import Iterator

import grpc
import pyarrow as pa
import pytest

from oort_plugin import from_pb
from oort_plugin._pb import plugin_pb2 as pb
from oort_plugin.testing import PYTHON, ArrowResults, PluginProcess, arrow_batch, rows, spec

HERE = os.path.dirname(__file__)
FIXTURE = os.path.join(HERE, "fixture_plugin.py")
ARROW_PLUGIN = os.path.join(HERE, "arrow_plugin.py")


@pytest.fixture
def folder() -> Iterator[str]:
    # Not pytest's tmp_path: a Unix socket's path must stay short.
    d = tempfile.mkdtemp(prefix="oort-fr-")
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def start(script: str, name: str, framed: str | None) -> PluginProcess:
    env = {"OORT_FRAMED_SOCKET": framed} if framed is not None else {}
    return PluginProcess.ready([PYTHON, script], env=env, name=name)


@pytest.fixture
def fixture(folder: str) -> Iterator[tuple[PluginProcess, str]]:
    path = os.path.join(folder, "p1.frames")
    p = start(FIXTURE, "fixture", path)
    try:
        yield p, path
    finally:
        p.close()


def frame(message: bytes, flag: int = 0) -> bytes:
    return bytes([flag]) + len(message).to_bytes(4, "big") + message


def connect(path: str) -> socket.socket:
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.settimeout(5)
    conn.connect(path)
    return conn


def send(conn: socket.socket, *batches: pb.ExecBatch) -> None:
    """Writes the batches back to back, in one write."""
    conn.sendall(b"".join(frame(b.SerializeToString()) for b in batches))


def recv_exact(conn: socket.socket, n: int) -> bytes:
    got = b""
    while len(got) < n:
        chunk = conn.recv(n - len(got))
        if not chunk:
            raise AssertionError(f"the connection ended after {len(got)} of {n} bytes")
        got += chunk
    return got


def recv(conn: socket.socket) -> pb.ExecResult:
    header = recv_exact(conn, 5)
    assert header[0] == 0
    return pb.ExecResult.FromString(recv_exact(conn, int.from_bytes(header[1:], "big")))


def assert_closed(conn: socket.socket) -> None:
    assert conn.recv(1) == b""


def open_fn(p: PluginProcess, instance_id: str, symbol: str) -> None:
    p.function().Open(pb.OpenFunctionRequest(instance=spec(instance_id, symbol)), timeout=5)


def test_describe_says_framed_exec_only_when_asked(fixture: tuple[PluginProcess, str]) -> None:
    p, path = fixture
    assert p.plugin().Describe(pb.DescribeRequest(), timeout=5).framed_exec
    assert os.path.exists(path)
    plain = start(FIXTURE, "fixture", None)
    try:
        assert not plain.plugin().Describe(pb.DescribeRequest(), timeout=5).framed_exec
    finally:
        plain.close()


def test_row_batches_in_order_with_mutations(fixture: tuple[PluginProcess, str]) -> None:
    p, path = fixture
    open_fn(p, "r1/op_1", "fail")
    open_fn(p, "r1/op_2", "count")
    with connect(path) as conn:
        send(conn, pb.ExecBatch(instance_id="r1/op_1", seq=7, rows=rows(["ok"], ["bad"], [{"m": [1, None]}])))
        r = recv(conn)
        assert r.seq == 7 and not r.failure
        assert [x.WhichOneof("outcome") for x in r.results] == ["value", "error", "value"]
        assert from_pb(r.results[0].value) == "ok"
        assert r.results[1].error == "bad row"
        assert from_pb(r.results[2].value) == {"m": [1, None]}

        # Two batches written back to back (two in flight) are answered in order.
        send(
            conn,
            pb.ExecBatch(instance_id="r1/op_2", seq=8, rows=rows(["k"], ["k"], ["j"])),
            pb.ExecBatch(instance_id="r1/op_2", seq=9, rows=rows(["k"])),
        )
        r8, r9 = recv(conn), recv(conn)
        assert (r8.seq, r9.seq) == (8, 9)
        assert [from_pb(x.value) for x in r8.results] == [1, 2, 1]
        assert [(m.key, m.counter) for m in r8.mutations] == [("k", 2), ("j", 1)]
        assert [from_pb(x.value) for x in r9.results] == [3]
        assert [(m.key, m.counter) for m in r9.mutations] == [("k", 3)]

        # An empty batch still gets its answer.
        send(conn, pb.ExecBatch(instance_id="r1/op_1", seq=10))
        r = recv(conn)
        assert r.seq == 10 and len(r.results) == 0 and not r.failure

    # gRPC still serves the same instances.
    [res] = p.function().Exec(iter([pb.ExecBatch(instance_id="r1/op_2", seq=11, rows=rows(["k"]))]), timeout=5)
    assert res.seq == 11 and [from_pb(x.value) for x in res.results] == [4]


def test_an_unknown_instance_gets_a_failure_then_eof(fixture: tuple[PluginProcess, str]) -> None:
    p, path = fixture
    open_fn(p, "r1/op_1", "echo")
    with connect(path) as conn:
        send(
            conn,
            pb.ExecBatch(instance_id="r1/op_1", seq=1, rows=rows(["a"])),
            pb.ExecBatch(instance_id="r9/none", seq=2, rows=rows(["b"])),
            pb.ExecBatch(instance_id="r1/op_1", seq=3, rows=rows(["c"])),
        )
        ok, failed = recv(conn), recv(conn)
        assert ok.seq == 1 and [from_pb(x.value) for x in ok.results] == ["a"]
        assert failed.seq == 2
        assert failed.failure == 'no open function instance "r9/none"'
        assert not failed.results
        assert_closed(conn)
    # Other connections are unaffected.
    with connect(path) as conn:
        send(conn, pb.ExecBatch(instance_id="r1/op_1", seq=4, rows=rows(["d"])))
        assert [from_pb(x.value) for x in recv(conn).results] == ["d"]


def test_bad_frames_close_the_connection(fixture: tuple[PluginProcess, str]) -> None:
    p, path = fixture
    open_fn(p, "r1/op_1", "echo")
    batch = pb.ExecBatch(instance_id="r1/op_1", seq=1, rows=rows(["a"])).SerializeToString()
    with connect(path) as conn:
        conn.sendall(frame(batch, flag=1))
        assert_closed(conn)
    with connect(path) as conn:
        conn.sendall(b"\x00" + ((64 << 20) + 1).to_bytes(4, "big"))
        assert_closed(conn)
    with connect(path) as conn:
        conn.sendall(frame(b"\xff\xff\xff"))
        r = recv(conn)
        assert r.failure.startswith("undecodable ExecBatch")
        assert_closed(conn)
    # EOF between frames ends a connection quietly; the plugin still serves.
    with connect(path) as conn:
        conn.sendall(frame(batch))
        assert recv(conn).seq == 1
    assert p.plugin().Describe(pb.DescribeRequest(), timeout=5).framed_exec


def test_columnar_batches_keep_the_schema_per_connection(folder: str) -> None:
    path = os.path.join(folder, "p1.frames")
    p = start(ARROW_PLUGIN, "arrowy", path)
    try:
        open_fn(p, "r1/op_1", "vecho")
        with connect(path) as conn:
            # The schema travels on the first batch only, both ways.
            send(
                conn,
                arrow_batch("r1/op_1", 0, [pa.array([1, None, 3], type=pa.int64())]),
                arrow_batch("r1/op_1", 1, [pa.array([4], type=pa.int64())], with_schema=False),
            )
            first, second = recv(conn), recv(conn)
            assert (first.seq, second.seq) == (0, 1)
            assert first.arrow_schema and not second.arrow_schema
            reader = ArrowResults()
            col = reader.column(first)
            assert col.type == pa.int64() and col.to_pylist() == [1, None, 3]
            assert reader.column(second).to_pylist() == [4]

        # A new connection starts without a schema: Arrow it cannot read fails it.
        with connect(path) as conn:
            send(conn, arrow_batch("r1/op_1", 5, [[1]], with_schema=False))
            r = recv(conn)
            assert r.seq == 5 and r.failure
            assert_closed(conn)
    finally:
        p.close()


def test_a_stale_file_is_replaced_and_the_socket_removed_at_exit(folder: str) -> None:
    path = os.path.join(folder, "p1.frames")
    with open(path, "w") as f:
        f.write("stale")
    p = start(FIXTURE, "fixture", path)
    try:
        assert p.plugin().Describe(pb.DescribeRequest(), timeout=5).framed_exec
        open_fn(p, "r1/op_1", "echo")
        with connect(path) as conn:
            send(conn, pb.ExecBatch(instance_id="r1/op_1", seq=1, rows=rows(["a"])))
            assert recv(conn).seq == 1
            p.plugin().Shutdown(pb.ShutdownRequest(grace_ms=2000), timeout=5)
            assert p.wait_exit() == 0
        assert not os.path.exists(path)
        assert not os.path.exists(p.socket)
    finally:
        p.close()


def test_a_path_it_cannot_listen_on_leaves_exec_to_grpc(folder: str) -> None:
    p = start(FIXTURE, "fixture", os.path.join(folder, "missing", "p1.frames"))
    try:
        assert not p.plugin().Describe(pb.DescribeRequest(), timeout=5).framed_exec
        open_fn(p, "r1/op_1", "echo")
        [res] = p.function().Exec(iter([pb.ExecBatch(instance_id="r1/op_1", seq=1, rows=rows(["a"]))]), timeout=5)
        assert [from_pb(x.value) for x in res.results] == ["a"]
        p.plugin().Shutdown(pb.ShutdownRequest(grace_ms=2000), timeout=5)
        assert p.wait_exit() == 0
        assert "no framed Exec path: cannot listen on" in p.stderr()
    finally:
        p.close()


def test_grpc_exec_still_aborts_on_an_unknown_instance(fixture: tuple[PluginProcess, str]) -> None:
    p, _ = fixture
    with pytest.raises(grpc.RpcError) as e:
        list(p.function().Exec(iter([pb.ExecBatch(instance_id="r9/none", seq=0)]), timeout=5))
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    assert e.value.details() == 'no open function instance "r9/none"'
