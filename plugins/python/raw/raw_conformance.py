"""raw_conformance: the conformance suite's function plugin, written from
docs/protocol.md alone with the generated gRPC stubs and grpcio (no SDK).

It describes itself as `conformance` and behaves like the function part of
plugins/src/bin/conformance.rs. "§" numbers refer to docs/protocol.md.

It also speaks the columnar encoding (§4.4, "Columnar batches (Arrow IPC)") with
pyarrow alone: Describe lists ENCODING_ARROW_IPC, every function reads both
encodings, and cf_echo answers a columnar batch with the array it received.
pyarrow is imported at the first columnar batch, so a row-only run never loads it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent import futures
from typing import Any, NoReturn

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2

from oort_plugin._pb import plugin_pb2 as pb
from oort_plugin._pb import plugin_pb2_grpc as pb_grpc

NAME, PROTOCOL = "conformance", 1
MAX_VALUE_BYTES = 1 << 20  # §4.2: a larger `put` is refused, never truncated
NULL, TRUE = pb.Value(null=True), pb.Value(bool=True)
stopping = threading.Event()  # set by Shutdown, SIGTERM or SIGINT (§6)


def log(level: str, msg: str) -> None:  # §6.5: plain stderr lines, level first
    print(f"{level} {NAME}: {msg}", file=sys.stderr, flush=True)


def fail(code: int, msg: str) -> NoReturn:
    log("ERROR", msg)
    sys.exit(code)


def quote(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)


class Instance:
    """One opened call site: its resident state and the mutations not yet shipped (§4.2).
    Every ValueError raised while a row runs is that row's error (§4.4 rule 4)."""

    def __init__(self, spec: pb.InstanceSpec) -> None:
        self.fn = FUNCTIONS[spec.symbol]
        self.slots: dict[str, pb.Value | int] = {}  # an int is a counter
        for entry in spec.state:
            if kind := entry.WhichOneof("entry"):
                self.slots[entry.key] = getattr(entry, kind)
        self.pending: list[pb.StateMutation] = []

    def call(self, args: list[pb.Value]) -> pb.RowResult:
        try:
            return pb.RowResult(value=self.fn(self, args))
        except ValueError as e:
            return pb.RowResult(error=str(e))

    def take_mutations(self) -> list[pb.StateMutation]:
        out, self.pending = self.pending, []
        return out

    # eKuiper's five state calls, served from the resident copy (§4.6, "the recommended model").
    def put(self, key: str, value: pb.Value) -> None:
        if (size := value.ByteSize()) > MAX_VALUE_BYTES:
            raise ValueError(f"value for state key {quote(key)} is {size} bytes, over the {MAX_VALUE_BYTES}-byte limit")
        self.slots[key] = value
        self.pending.append(pb.StateMutation(key=key, put=value))

    def get(self, key: str) -> pb.Value:
        slot = self.slots.get(key)
        return NULL if slot is None else pb.Value(int=slot) if isinstance(slot, int) else slot

    def delete(self, key: str) -> None:
        if self.slots.pop(key, None) is not None:  # only keys that existed, like the Rust SDK
            self.pending.append(pb.StateMutation(key=key, delete=True))

    def counter(self, key: str) -> int:
        slot = self.slots.get(key, 0)
        if not isinstance(slot, int):
            found = slot.WhichOneof("kind") or "null"
            raise ValueError(f"state key {quote(key)} holds a {found} value, not a counter")
        return slot

    def incr(self, key: str, amount: int) -> None:
        n = self.counter(key) + amount
        if not -(1 << 63) <= n < 1 << 63:
            raise ValueError(f"counter {quote(key)} would overflow")
        self.slots[key] = n
        last = self.pending[-1] if self.pending else None
        if last is not None and last.key == key and last.WhichOneof("op") == "counter":
            last.counter = n  # consecutive increments collapse into one absolute value
        else:
            self.pending.append(pb.StateMutation(key=key, counter=n))


# The six functions. Arguments and results stay protobuf Values.
def arg(args: list[pb.Value], i: int) -> pb.Value:
    return args[i] if i < len(args) else NULL


def text(v: pb.Value) -> str | None:
    return v.string if v.WhichOneof("kind") == "string" else None


def cf_echo(inst: Instance, args: list[pb.Value]) -> pb.Value:
    return arg(args, 0)


def cf_fail(inst: Instance, args: list[pb.Value]) -> pb.Value:
    if (x := text(arg(args, 0))) is not None and x.startswith("bad"):
        raise ValueError(f"cf_fail: {x}")
    return arg(args, 0)


def cf_count(inst: Instance, args: list[pb.Value]) -> pb.Value:
    if (key := text(arg(args, 0))) is None:
        raise ValueError("cf_count(key) needs a string key")
    inst.incr(key, 1)
    return pb.Value(int=inst.counter(key))


def cf_state(inst: Instance, args: list[pb.Value]) -> pb.Value:
    op, key, value = text(arg(args, 0)), text(arg(args, 1)), arg(args, 2)
    if op is None or key is None:
        raise ValueError("cf_state(op, key[, value])")
    if op == "put":
        inst.put(key, value)
    elif op == "delete":
        inst.delete(key)
    elif op == "get":
        return inst.get(key)
    elif op == "incr":  # an int, or a float with no fraction (as Rust's Value::as_i64)
        if value.WhichOneof("kind") == "int":
            inst.incr(key, value.int)
        elif value.WhichOneof("kind") == "float" and value.float.is_integer() and abs(value.float) < 9e15:
            inst.incr(key, int(value.float))
        else:
            raise ValueError("incr needs an integer amount")
        return pb.Value(int=inst.counter(key))
    elif op == "counter":
        return pb.Value(int=inst.counter(key))
    else:
        raise ValueError(f"unknown op {quote(op)}")
    return TRUE


def cf_pid(inst: Instance, args: list[pb.Value]) -> pb.Value:
    return pb.Value(int=os.getpid())


def cf_agg(inst: Instance, args: list[pb.Value]) -> pb.Value:
    """An aggregate (§4.3 is_aggregate): one row per group, its argument the group's list.
    {"n": items, nulls included; "sum": the int items' sum, wrapping like int64}."""
    if (kind := arg(args, 0).WhichOneof("kind") or "null") != "list":
        raise ValueError(f"cf_agg expects a list, got {kind}")
    items = arg(args, 0).list.items
    total = sum(v.int for v in items if v.WhichOneof("kind") == "int")
    total = (total + (1 << 63)) % (1 << 64) - (1 << 63)
    inst.incr("groups", 1)
    return pb.Value(map=pb.ValueMap(entries={"n": pb.Value(int=len(items)), "sum": pb.Value(int=total)}))


FUNCTIONS: dict[str, Callable[[Instance, list[pb.Value]], pb.Value]] = {
    f.__name__: f for f in (cf_echo, cf_fail, cf_count, cf_state, cf_pid, cf_agg)}
AGGREGATES = {"cf_agg"}
instances: dict[str, Instance] = {}  # §4.1: one process may hold several; route by instance_id
instances_lock = threading.Lock()


# §4.4, "Columnar batches (Arrow IPC)". A columnar ExecBatch carries `arrow`, one IPC
# encapsulated RecordBatch message with one column per argument ("0", "1", ..., one row per
# call), and `arrow_schema`, the Schema message, only when it is new on the stream: the last
# one received on the stream applies. `arrow_schema ++ arrow` is an IPC stream of one batch.
# An answer in columns is one record batch with exactly one column, "result", one value per
# row, its schema sent in our direction as the supervisor sends its own: when new on the stream.
#: The Value case of each column type the supervisor sends ("Column types the supervisor sends").
ARROW_KINDS = {"null": "null", "bool": "bool", "int64": "int", "uint64": "uint", "double": "float",
               "string": "string", "binary": "bytes"}


class ColumnarError(Exception):
    """A columnar batch that cannot be read: the stream is ended with INVALID_ARGUMENT."""


class Columnar:
    """The Arrow side of one Exec stream: the last schema received and the last one sent."""

    def __init__(self) -> None:
        import pyarrow as pa  # loaded by the first columnar batch, never by a row-only plugin run
        import pyarrow.ipc  # noqa: F401

        self.pa: Any = pa
        self.schema_in = b""  # the last arrow_schema the supervisor sent on this stream
        self.schema_out = b""  # the last arrow_schema we sent on it

    def read(self, batch: pb.ExecBatch) -> Any:
        """The pa.RecordBatch of a columnar ExecBatch: its columns are the arguments."""
        if batch.arrow_schema:
            self.schema_in = batch.arrow_schema
        if not self.schema_in:
            raise ColumnarError("a columnar batch without arrow_schema came first on this stream")
        try:
            record = self.pa.ipc.open_stream(self.schema_in + batch.arrow).read_next_batch()
            record.validate()  # buffers that fit the schema, before any value is read
        except Exception as e:  # pa.ArrowInvalid, or StopIteration for a stream without a batch
            raise ColumnarError(f"cannot read the columnar batch: {e!r}") from e
        return record

    def rows_of(self, record: Any) -> list[list[pb.Value]]:
        """The argument rows the row encoding would have sent: each column's to_pylist (None,
        bool, int, float, str, bytes; uint64 values above 2^63 stay exact ints) as the Value case
        of its column type, so that an Int64 column gives `int` and a UInt64 one `uint` (§4.2)."""
        values: list[list[pb.Value]] = []
        for i, column in enumerate(record.columns):
            if self.pa.types.is_list(column.type) and (item := ARROW_KINDS.get(str(column.type.value_type))):
                # A list of one of those types: a list Value, its null items null.
                def items(v: list[Any], kind: str = item) -> pb.Value:
                    return pb.Value(list=pb.ValueList(items=[NULL if x is None else pb.Value(**{kind: x}) for x in v]))

                values.append([NULL if v is None else items(v) for v in column.to_pylist()])
                continue
            if (kind := ARROW_KINDS.get(str(column.type))) is None:
                raise ColumnarError(f"argument column {i} has type {column.type}, which the protocol never sends")
            values.append([NULL if v is None else pb.Value(**{kind: v}) for v in column.to_pylist()])
        if not values:  # a function without arguments: one empty row per call
            return [[] for _ in range(record.num_rows)]  # the record batch keeps its row count
        return [list(row) for row in zip(*values)]

    def echo(self, record: Any) -> Any:
        """cf_echo's answer: the argument array as received (like `arg(args, 0)`, nulls without one)."""
        return record.column(0) if record.num_columns else self.pa.nulls(record.num_rows)

    def answer(self, out: pb.ExecResult, column: Any) -> None:
        """Sets `out.arrow` to one record batch of `column` named "result", and `out.arrow_schema`
        when that schema differs from the last one sent on this stream (or none was sent)."""
        record = self.pa.RecordBatch.from_arrays([column], names=["result"])
        schema = record.schema.serialize().to_pybytes()
        if schema != self.schema_out:
            out.arrow_schema = self.schema_out = schema
        out.arrow = record.serialize().to_pybytes()


class PluginService(pb_grpc.PluginServicer):  # §4.3
    def Describe(self, request: pb.DescribeRequest, context: grpc.ServicerContext) -> pb.DescribeResponse:
        symbols = [pb.Symbol(kind=pb.KIND_FUNCTION, name=f, mode=pb.EXPORT_MODE_CONSTRUCTOR, is_aggregate=f in AGGREGATES)
                   for f in FUNCTIONS]
        # encodings: rows are always spoken; listing ENCODING_ARROW_IPC lets the supervisor send
        # columnar batches, and obliges us to read both (§4.4, "Columnar batches", Opt in).
        return pb.DescribeResponse(name=NAME, version="0.1.0", symbols=symbols, protocol_version=PROTOCOL,
                                   sdk_name="raw-python", sdk_version="0", encodings=[pb.ENCODING_ARROW_IPC])

    def Shutdown(self, request: pb.ShutdownRequest, context: grpc.ServicerContext) -> pb.ShutdownResponse:
        stopping.set()  # answer at once; main() does the rest
        return pb.ShutdownResponse()

    def MigrateState(self, request: pb.MigrateStateRequest,
                     context: grpc.ServicerContext) -> pb.MigrateStateResponse:
        # §4.3: declaring no state_version (0), this plugin is only asked when it is handed state
        # written under another version, which it cannot read: refuse it.
        context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                      f"plugin {NAME} (state version 0) has no state migration and cannot read state of "
                      f"version {request.from_version}")


class FunctionService(pb_grpc.FunctionServicer):  # §4.4, status codes as in §4.5
    def Validate(self, request: pb.ValidateRequest, context: grpc.ServicerContext) -> pb.ValidateResponse:
        if request.symbol not in FUNCTIONS:
            context.abort(grpc.StatusCode.NOT_FOUND, f"function {quote(request.symbol)} is not exported")
        if request.symbol in ("cf_echo", "cf_agg") and len(request.args) != 1:
            return pb.ValidateResponse(error=f"{request.symbol} expects 1 argument, got {len(request.args)}")
        return pb.ValidateResponse()

    def Open(self, request: pb.OpenFunctionRequest, context: grpc.ServicerContext) -> pb.OpenResponse:
        spec = request.instance
        if not request.HasField("instance") or not spec.instance_id:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "Open needs an instance with an instance_id")
        if spec.symbol not in FUNCTIONS:
            context.abort(grpc.StatusCode.NOT_FOUND, f"function {quote(spec.symbol)} is not exported")
        with instances_lock:
            if spec.instance_id in instances:
                context.abort(grpc.StatusCode.ALREADY_EXISTS, f"instance {quote(spec.instance_id)} is already open")
            instances[spec.instance_id] = Instance(spec)
        return pb.OpenResponse()

    def Exec(self, request_iterator: Iterator[pb.ExecBatch], context: grpc.ServicerContext) -> Iterator[pb.ExecResult]:
        columnar: Columnar | None = None  # this stream's Arrow schemas, made at its first columnar batch
        for batch in request_iterator:  # one answer per batch, in order, seq echoed (rules 2, 3)
            if (inst := instances.get(batch.instance_id)) is None:
                context.abort(grpc.StatusCode.NOT_FOUND, f"unknown instance {quote(batch.instance_id)}")
            out = pb.ExecResult(seq=batch.seq)
            if batch.arrow:  # a columnar batch has `arrow` and no `rows`
                if columnar is None:
                    columnar = Columnar()
                try:
                    record = columnar.read(batch)
                    if inst.fn is cf_echo:  # answered in columns: the argument array as received
                        columnar.answer(out, columnar.echo(record))
                    else:  # every other function: the rows the row encoding would have sent, answered in rows
                        out.results.extend(inst.call(args) for args in columnar.rows_of(record))
                except ColumnarError as e:  # not a batch we can read: end the stream, like the SDKs
                    context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
            else:  # rule 3: exactly one RowResult per row, in row order
                out.results.extend(inst.call(list(row.args)) for row in batch.rows)
            out.mutations.extend(inst.take_mutations())  # §4.2: this batch's changes, in order
            yield out

    def Close(self, request: pb.CloseRequest, context: grpc.ServicerContext) -> pb.CloseResponse:
        with instances_lock:
            if instances.pop(request.instance_id, None) is None:
                context.abort(grpc.StatusCode.NOT_FOUND, f"unknown instance {quote(request.instance_id)}")
        return pb.CloseResponse()


def add_reflection_v1(server: grpc.Server, services: list[str]) -> None:
    """grpcio-reflection ships only v1alpha; v1 has the same messages under another name (§8)."""
    handler = grpc.stream_stream_rpc_method_handler(
        reflection.ReflectionServicer(services).ServerReflectionInfo,
        request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
        response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString)
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler("grpc.reflection.v1.ServerReflection", {"ServerReflectionInfo": handler})])


def main() -> None:
    path = os.environ.get("OORT_PLUGIN_SOCKET") or ""  # §3.2 step 1
    if not path:
        fail(78, "OORT_PLUGIN_SOCKET is not set: this plugin must be started by the Oort supervisor")
    offered = os.environ.get("OORT_PROTOCOL_VERSIONS", "")  # step 2
    if PROTOCOL not in {int(p) for p in map(str.strip, offered.split(",")) if p.isascii() and p.isdigit()}:
        fail(78, f"the supervisor offers protocol versions {quote(offered)}, this plugin speaks only {PROTOCOL}")
    if os.path.lexists(path):  # step 3: refuse a live listener, remove a stale file
        with socket.socket(socket.AF_UNIX) as probe:
            if probe.connect_ex(path) == 0:
                fail(1, f"cannot listen on {path}: another process is listening there")
        os.unlink(path)
    for sig in (signal.SIGTERM, signal.SIGINT):  # §6.2
        signal.signal(sig, lambda *_: stopping.set())

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=64),  # an open Exec stream holds a thread
                         options=[("grpc.max_receive_message_length", 64 << 20),  # §1
                                  ("grpc.max_send_message_length", 64 << 20)])
    pb_grpc.add_PluginServicer_to_server(PluginService(), server)
    pb_grpc.add_FunctionServicer_to_server(FunctionService(), server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    served = ["oort.plugin.v1.Plugin", "oort.plugin.v1.Function"]
    add_reflection_v1(server, [*served, health.SERVICE_NAME, "grpc.reflection.v1.ServerReflection"])
    server.add_insecure_port(f"unix:{path}")  # step 4: h2c on that socket, nowhere else
    server.start()
    for service in ["", *served]:
        health_servicer.set(service, health_pb2.HealthCheckResponse.SERVING)
    log("INFO", f"serving protocol {PROTOCOL} on {path}")

    # §6.1: wait for Shutdown or a signal. A signal may arrive on a gRPC thread, and Python
    # runs its handler only once the main thread wakes up: hence the short timeout.
    while not stopping.wait(0.05):
        pass
    server.stop(grace=0.1).wait()  # open Exec streams are cancelled, not waited for
    instances.clear()  # close every instance
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    log("INFO", "stopped")
    sys.exit(0)


if __name__ == "__main__":
    main()
