"""Test helpers: run a plugin the way the supervisor does and call it.

`PluginProcess` starts a plugin executable with the supervisor's environment on
a fresh socket in a private temp folder, waits for it like the supervisor's
readiness loop, and hands out gRPC stubs::

    from oort_plugin.testing import PluginProcess, spec, value
    from oort_plugin._pb import plugin_pb2 as pb

    p = PluginProcess([sys.executable, "-m", "myplugin"], name="myplugin")
    try:
        p.wait_ready()
        f = p.function()
        f.Open(pb.OpenFunctionRequest(instance=spec("r1/op_1", "upper")), timeout=5)
        [res] = f.Exec(iter([pb.ExecBatch(instance_id="r1/op_1", seq=0,
                                          rows=[pb.ArgRow(args=[value("a")])])]), timeout=5)
    finally:
        p.close()

`arrow_batch` and `ArrowResults` do the same with columnar (Arrow IPC)
batches; they import pyarrow, the rest of this module does not.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any

import grpc
from grpc_health.v1 import health_pb2

from ._pb import plugin_pb2 as pb
from ._pb import plugin_pb2_grpc as pb_grpc
from ._values import to_pb


class PluginProcess:
    """One plugin process on a fresh socket in a private temp folder."""

    def __init__(
        self,
        argv: Sequence[str],
        env: dict[str, str] | None = None,
        name: str = "plugin",
        socket_path: str | None = None,
    ) -> None:
        self.dir = tempfile.mkdtemp(prefix="oort-py-")
        os.chmod(self.dir, 0o700)
        self.socket = socket_path or os.path.join(self.dir, "p1.sock")
        full_env = dict(os.environ)
        full_env.update(
            {
                "OORT_PLUGIN_SOCKET": self.socket,
                "OORT_PROTOCOL_VERSIONS": "1",
                "OORT_STATE_SOCKET": os.path.join(self.dir, "state.sock"),
                "OORT_STATE_TOKEN": "00" * 32,
                "OORT_PLUGIN_NAME": name,
            }
        )
        full_env.update(env or {})
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            list(argv),
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.channel: grpc.Channel | None = None

    @classmethod
    def ready(
        cls,
        argv: Sequence[str],
        env: dict[str, str] | None = None,
        name: str = "plugin",
        timeout: float = 10.0,
    ) -> PluginProcess:
        """Starts a plugin and waits until it serves; one that never does is
        closed (no process or folder left behind) before the error goes up."""
        p = cls(argv, env=env, name=name)
        try:
            p.wait_ready(timeout)
        except BaseException:
            p.close()
            raise
        return p

    # -- the supervisor's readiness loop -----------------------------------

    def wait_ready(self, timeout: float = 10.0) -> float:
        """Polls like the supervisor (1 ms doubling to 50 ms) until Health/Check
        says SERVING; returns the seconds since spawn."""
        deadline = self.started + timeout
        sleep = 0.001
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"plugin exited during its handshake ({self.proc.returncode}): {self.stderr()}")
            if os.path.exists(self.socket):
                try:
                    resp = self.health_check("")
                    if resp.status == health_pb2.HealthCheckResponse.SERVING:
                        return time.monotonic() - self.started
                except grpc.RpcError:
                    pass
            time.sleep(sleep)
            sleep = min(sleep * 2, 0.05)
        raise AssertionError(f"plugin not ready within {timeout}s: {self.stderr()}")

    def chan(self) -> grpc.Channel:
        if self.channel is None:
            self.channel = grpc.insecure_channel(
                "unix:" + self.socket,
                options=[("grpc.default_authority", "plugin"), ("grpc.max_receive_message_length", 64 << 20)],
            )
        return self.channel

    def health_check(self, service: str = "") -> health_pb2.HealthCheckResponse:
        """grpc.health.v1.Health/Check (typed by hand: the health stubs' types are partial)."""
        check: grpc.UnaryUnaryMultiCallable[health_pb2.HealthCheckRequest, health_pb2.HealthCheckResponse] = (
            self.chan().unary_unary(
                "/grpc.health.v1.Health/Check",
                request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
                response_deserializer=health_pb2.HealthCheckResponse.FromString,
            )
        )
        return check(health_pb2.HealthCheckRequest(service=service), timeout=5)

    def plugin(self) -> pb_grpc.PluginStub:
        return pb_grpc.PluginStub(self.chan())

    def function(self) -> pb_grpc.FunctionStub:
        return pb_grpc.FunctionStub(self.chan())

    def source(self) -> pb_grpc.SourceStub:
        return pb_grpc.SourceStub(self.chan())

    def sink(self) -> pb_grpc.SinkStub:
        return pb_grpc.SinkStub(self.chan())

    def stderr(self) -> str:
        if self.proc.poll() is None:
            return "(still running)"
        assert self.proc.stderr is not None
        return self.proc.stderr.read().decode(errors="replace")

    def wait_exit(self, timeout: float = 5.0) -> int:
        return self.proc.wait(timeout)

    def close(self) -> None:
        if self.channel is not None:
            self.channel.close()
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def spec(instance_id: str, symbol: str, state: Sequence[pb.StateEntry] = ()) -> pb.InstanceSpec:
    rule, _, op = instance_id.partition("/")
    return pb.InstanceSpec(instance_id=instance_id, symbol=symbol, rule_id=rule, operator_id=op, state=list(state))


def value(v: Any) -> pb.Value:
    """A Python value as a wire Value."""
    return to_pb(v)


def rows(*args: Sequence[Any]) -> list[pb.ArgRow]:
    """Argument rows for an ExecBatch: `rows(["a", 1], ["b", 2])`."""
    return [pb.ArgRow(args=[to_pb(a) for a in row]) for row in args]


PYTHON = sys.executable


# -- columnar batches (these load pyarrow; the rest of this module does not) --


def arrow_batch(
    instance_id: str,
    seq: int,
    columns: Sequence[Any],
    *,
    num_rows: int | None = None,
    with_schema: bool = True,
) -> pb.ExecBatch:
    """A columnar ExecBatch as the supervisor sends it: one column per argument
    (a pa.Array, or a list of Python values typed as the SDK types a row
    batch's column), named "0", "1", ...; `num_rows` for a batch without
    columns. `with_schema=False` leaves `arrow_schema` empty, as the
    supervisor does after the first columnar batch of a stream."""
    import pyarrow as pa

    from ._arrow import array_of

    arrays = [c if isinstance(c, pa.Array) else array_of(c) for c in columns]
    if arrays:
        batch = pa.RecordBatch.from_arrays(arrays, names=[str(i) for i in range(len(arrays))])
    else:
        # A record batch keeps its row count without columns.
        batch = pa.RecordBatch.from_arrays([pa.nulls(num_rows or 0)], names=["_"]).select([])
    return pb.ExecBatch(
        instance_id=instance_id,
        seq=seq,
        arrow_schema=batch.schema.serialize().to_pybytes() if with_schema else b"",
        arrow=batch.serialize().to_pybytes(),
    )


#: The Value case the supervisor reads from a result column of a scalar type.
_ARROW_KINDS = {
    "null": "null",
    "bool": "bool",
    "int64": "int",
    "uint64": "uint",
    "double": "float",
    "string": "string",
    "binary": "bytes",
}


class ArrowResults:
    """Reads the ExecResults of one Exec stream as the supervisor does: keeps
    the last `arrow_schema` the plugin sent on it."""

    def __init__(self) -> None:
        self.schema: Any = None  # pa.Schema

    def column(self, res: pb.ExecResult) -> Any:
        """The pa.Array `result` column of a columnar answer."""
        import pyarrow as pa
        import pyarrow.ipc  # noqa: F401

        if res.arrow_schema:
            self.schema = pa.ipc.read_schema(pa.py_buffer(res.arrow_schema))
        if self.schema is None:
            raise AssertionError("a columnar result without a schema on this stream")
        batch = pa.ipc.read_record_batch(pa.py_buffer(res.arrow), self.schema)
        if batch.schema.names != ["result"]:
            raise AssertionError(f"the result columns are {batch.schema.names}, not ['result']")
        return batch.column(0)

    def kinds(self, res: pb.ExecResult) -> list[str]:
        """Each row's outcome as the supervisor types it, in either encoding:
        the Value case ("int", "uint", "float", "string", ...; "null" for a
        null) or "error"."""
        if not res.arrow:
            return [
                "error" if r.WhichOneof("outcome") == "error" else (r.value.WhichOneof("kind") or "null")
                for r in res.results
            ]
        column = self.column(res)
        kind = _ARROW_KINDS.get(str(column.type), str(column.type))
        out = ["null" if v is None else kind for v in column.to_pylist()]
        for e in res.errors:
            out[e.row] = "error"
        return out

    def outcomes(self, res: pb.ExecResult) -> list[tuple[str, Any]]:
        """Each row's outcome, in either encoding: ("value", v) or ("error", message)."""
        from ._values import from_pb

        if not res.arrow:
            return [
                ("error", r.error) if r.WhichOneof("outcome") == "error" else ("value", from_pb(r.value))
                for r in res.results
            ]
        if res.results:
            raise AssertionError("an answer with both rows and columns")
        out: list[tuple[str, Any]] = [("value", v) for v in self.column(res).to_pylist()]
        for e in res.errors:
            if out[e.row][1] is not None:
                raise AssertionError(f"failed row {e.row} is not null")
            out[e.row] = ("error", e.message)
        return out
