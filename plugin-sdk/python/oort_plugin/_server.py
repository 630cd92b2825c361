"""The plugin side of the handshake and the four plugin services.

`serve` reads the environment the supervisor sets, binds the socket it names,
serves `oort.plugin.v1` plus `grpc.health.v1` and server reflection v1 (and
`Exec` on the framed socket too, when the supervisor names one), and exits
when asked to (Shutdown RPC, SIGTERM or SIGINT), removing its sockets first.
See docs/protocol.md for the contract.
"""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent import futures
from types import FrameType
from typing import TYPE_CHECKING, Any, BinaryIO, NoReturn

import grpc
from google.protobuf.message import DecodeError

from . import _log
from ._api import ArgSpec, Function, PayloadSink, Sink, Source, VectorizedFunction, reads_columns, takes_columns
from ._context import Context
from ._export import Plugin, _Export
from ._migrate import StateRefused, fill_state, migration_from_pb
from ._pb import plugin_pb2 as pb
from ._pb import plugin_pb2_grpc as pb_grpc
from ._pb import state_pb2 as _state_pb2  # noqa: F401  (puts oort.state.v1 in the pool, for reflection)
from ._values import Record, fill_record, fill_value, from_pb, map_from_pb, record_from_pb

if TYPE_CHECKING:
    # Imported lazily below: it loads pyarrow.
    from ._arrow import StreamCodec

SDK_NAME = "oort-plugin-python"
SDK_VERSION = "0.1.0"
#: The protocol versions this SDK speaks.
PROTOCOL_VERSION = 1

#: Exit code for a handshake the plugin cannot take part in (missing
#: environment, unsupported protocol version): sysexits' EX_CONFIG.
EXIT_HANDSHAKE = 78

#: The gRPC services every plugin process serves (besides reflection).
SERVED = (
    "grpc.health.v1.Health",
    "oort.plugin.v1.Plugin",
    "oort.plugin.v1.Function",
    "oort.plugin.v1.Source",
    "oort.plugin.v1.Sink",
)
REFLECTION_V1 = "grpc.reflection.v1.ServerReflection"

#: The supervisor may send batches over gRPC's default 4 MiB and accepts
#: results up to 64 MiB.
MAX_MESSAGE = 64 << 20
#: How long a stopping plugin lets in-flight calls finish before cancelling them.
DRAIN_S = 0.5
#: Every open Exec/Write/Read stream holds one thread for its lifetime (the
#: threads are started as needed, not up front).
MAX_THREADS = 512
#: Read's max_batch is clamped to 1..65536, as in the Rust SDK.
MAX_READ_BATCH = 65536

_log_sdk = logging.getLogger(_log.ROOT_NAME)


def _q(s: str) -> str:
    """Quotes like Rust's `{:?}` does for the error texts shared with the Rust SDK."""
    return json.dumps(s, ensure_ascii=False)


def _error_text(e: BaseException) -> str:
    return str(e) or type(e).__name__


# --------------------------------------------------------------------------
# Instances
# --------------------------------------------------------------------------


class _FunctionInstance:
    __slots__ = ("fn", "ctx", "vectorized")

    def __init__(self, fn: Function, ctx: Context) -> None:
        self.fn = fn
        self.ctx = ctx
        # Batches go to exec_columns. An aggregate's arguments are lists of
        # a group's values, which stay with the row call.
        self.vectorized: VectorizedFunction | None = (
            fn if isinstance(fn, VectorizedFunction) and not fn.is_aggregate() else None
        )


class _SourceInstance:
    __slots__ = ("obj", "ctx", "lock", "rewindable", "stopped", "generation")

    def __init__(self, obj: Source, ctx: Context, lock: threading.Lock, rewindable: bool) -> None:
        self.obj = obj
        self.ctx = ctx
        # Held around every call into `obj` (shared by a singleton's instances).
        self.lock = lock
        self.rewindable = rewindable
        self.stopped = False
        # Bumped by every Read and Rewind: a reader from an older stream stops
        # before its next read() instead of consuming records nobody receives.
        self.generation = 0


class _SinkInstance:
    __slots__ = ("obj", "ctx", "lock")

    def __init__(self, obj: Sink, ctx: Context, lock: threading.Lock) -> None:
        self.obj = obj
        self.ctx = ctx
        self.lock = lock


_Instance = _FunctionInstance | _SourceInstance | _SinkInstance


def _close_instance(inst: _Instance) -> None:
    if isinstance(inst, _SourceInstance):
        inst.stopped = True
        with inst.lock:
            inst.generation += 1
            inst.obj.close(inst.ctx)
    elif isinstance(inst, _SinkInstance):
        with inst.lock:
            inst.obj.close(inst.ctx)


class _Served:
    """What the services share: the plugin, its open instances, the stop signal."""

    def __init__(self, plugin: Plugin, wake: Any) -> None:
        self.plugin = plugin
        self.instances: dict[str, _Instance] = {}
        self.lock = threading.Lock()
        self._wake = wake
        self.stop_grace_ms = 0
        # Whether the framed Exec socket is being served (said in Describe).
        self.framed = False

    def request_stop(self, reason: bytes) -> None:
        self._wake(reason)

    def insert(self, instance_id: str, inst: _Instance, context: grpc.ServicerContext) -> None:
        with self.lock:
            if instance_id not in self.instances:
                self.instances[instance_id] = inst
                return
        try:
            _close_instance(inst)
        except Exception:  # the object was never visible to anyone
            pass
        context.abort(grpc.StatusCode.ALREADY_EXISTS, f"instance {_q(instance_id)} is already open")

    def ensure_free(self, instance_id: str, context: grpc.ServicerContext) -> None:
        if instance_id in self.instances:
            context.abort(grpc.StatusCode.ALREADY_EXISTS, f"instance {_q(instance_id)} is already open")

    def source(self, instance_id: str, context: grpc.ServicerContext) -> _SourceInstance:
        inst = self.instances.get(instance_id)
        if not isinstance(inst, _SourceInstance):
            context.abort(grpc.StatusCode.NOT_FOUND, f"no open source instance {_q(instance_id)}")
        return inst

    def sink(self, instance_id: str, context: grpc.ServicerContext) -> _SinkInstance:
        inst = self.instances.get(instance_id)
        if not isinstance(inst, _SinkInstance):
            context.abort(grpc.StatusCode.NOT_FOUND, f"no open sink instance {_q(instance_id)}")
        return inst

    def function_export(self, symbol: str, context: grpc.ServicerContext) -> _Export[Function]:
        export = self.plugin._functions.get(symbol)
        if export is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"plugin {self.plugin.name} exports no function {_q(symbol)}")
        return export

    def close(self, instance_id: str, context: grpc.ServicerContext) -> None:
        with self.lock:
            inst = self.instances.pop(instance_id, None)
        if inst is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"no open instance {_q(instance_id)}")
        try:
            _close_instance(inst)
        except Exception as e:
            context.abort(grpc.StatusCode.INTERNAL, f"close {_q(instance_id)}: {_error_text(e)}")

    def stop_sources(self) -> None:
        """Ends every Read stream at its next turn (before the server stops)."""
        for inst in list(self.instances.values()):
            if isinstance(inst, _SourceInstance):
                inst.stopped = True

    def close_all(self) -> None:
        with self.lock:
            all_ = list(self.instances.items())
            self.instances.clear()
        for instance_id, inst in all_:
            try:
                _close_instance(inst)
            except Exception as e:
                _log_sdk.warning("close of %s failed during shutdown: %s", instance_id, _error_text(e))


def _spec(spec: pb.InstanceSpec, has: bool, context: grpc.ServicerContext) -> pb.InstanceSpec:
    if not has:
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, "missing instance spec")
    if not spec.instance_id:
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, "instance_id must not be empty")
    return spec


def _context(spec: pb.InstanceSpec) -> Context:
    return Context._from_spec(spec, _log.instance_logger(spec.instance_id))


# --------------------------------------------------------------------------
# Services
# --------------------------------------------------------------------------


class _PluginService(pb_grpc.PluginServicer):
    def __init__(self, served: _Served) -> None:
        self._s = served

    def Describe(self, request: pb.DescribeRequest, context: grpc.ServicerContext) -> pb.DescribeResponse:
        p = self._s.plugin

        def mode(singleton: bool) -> pb.ExportMode.ValueType:
            return pb.EXPORT_MODE_SINGLETON if singleton else pb.EXPORT_MODE_CONSTRUCTOR

        resp = pb.DescribeResponse(
            name=p.name,
            version=p.version,
            protocol_version=PROTOCOL_VERSION,
            sdk_name=SDK_NAME,
            sdk_version=SDK_VERSION,
            framed_exec=self._s.framed,
            state_version=p.state_version,
        )
        for name, export in p._functions.items():
            try:
                fn = export.make()
                aggregate = bool(fn.is_aggregate())
                if isinstance(fn, VectorizedFunction):
                    # A factory's product, which export time could not see.
                    p._mark_vectorized(name)
            except Exception as e:
                context.abort(grpc.StatusCode.INTERNAL, f"function {_q(name)}: {_error_text(e)}")
            resp.symbols.add(kind=pb.KIND_FUNCTION, name=name, mode=mode(export.singleton), is_aggregate=aggregate)
        try:
            # A factory's product, which export time could not see.
            if p._source is not None and _made_by_factory(p._source) and reads_columns(p._source.make()):
                p._mark_columnar_io("source")
            if p._sink is not None and _made_by_factory(p._sink) and takes_columns(p._sink.make()):
                p._mark_columnar_io("sink")
        except Exception as e:
            context.abort(grpc.StatusCode.INTERNAL, f"{p.name}: {_error_text(e)}")
        if p._vectorized or p._columnar_io:
            # Rows need no mention: every plugin speaks them.
            resp.encodings.append(pb.ENCODING_ARROW_IPC)
        if p._source is not None:
            resp.symbols.add(kind=pb.KIND_SOURCE, name=p.name, mode=mode(p._source.singleton))
        if p._sink is not None:
            resp.symbols.add(kind=pb.KIND_SINK, name=p.name, mode=mode(p._sink.singleton))
        return resp

    def MigrateState(
        self, request: pb.MigrateStateRequest, context: grpc.ServicerContext
    ) -> pb.MigrateStateResponse:
        # Every answer but the migrated state is a refusal (FAILED_PRECONDITION):
        # the supervisor then keeps the rule on the version it has.
        p = self._s.plugin
        hook = p._migrate
        if hook is None:
            context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"plugin {p.name} (state version {p.state_version}) has no state migration "
                f"and cannot read state of version {request.from_version}",
            )
        try:
            state = hook(migration_from_pb(request))
        except StateRefused as e:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, _error_text(e))
        except Exception as e:
            # Not a deliberate refusal: most likely a bug, so keep the traceback.
            _log_sdk.exception(
                "state migration of %s from version %d failed", _q(request.symbol), request.from_version
            )
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, _error_text(e))
        resp = pb.MigrateStateResponse()
        try:
            fill_state(resp.state, state)
        except Exception as e:
            context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"state migration of {_q(request.symbol)} returned a state that cannot be sent: {_error_text(e)}",
            )
        return resp

    def Shutdown(self, request: pb.ShutdownRequest, context: grpc.ServicerContext) -> pb.ShutdownResponse:
        self._s.stop_grace_ms = request.grace_ms
        self._s.request_stop(b"q")
        return pb.ShutdownResponse()


def _made_by_factory(export: _Export[Any]) -> bool:
    """Whether an export's objects come from a callable that is not a class
    (so that what they are is known only once one is made)."""
    return not export.shares_object and not isinstance(export.make, type)


class _BatchFailure(Exception):
    """A batch that ends its stream: the gRPC path aborts the stream with
    `code` and `message`, the framed path answers `failure` = `message` and
    closes the connection."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _decode_columns(codec: StreamCodec | None, batch: pb.ExecBatch | pb.WriteBatch) -> tuple[StreamCodec, Any]:
    """A columnar batch's pa.RecordBatch, read with its stream's codec (created, and pyarrow
    imported, at the stream's first columnar batch). A batch that cannot be read ends the stream
    with INVALID_ARGUMENT (`_BatchFailure`): retrying the same bytes cannot help."""
    from . import _arrow

    if codec is None:
        codec = _arrow.StreamCodec()
    try:
        return codec, codec.read(batch.arrow_schema, batch.arrow)
    except _arrow.ArrowProtocolError as e:
        raise _BatchFailure(grpc.StatusCode.INVALID_ARGUMENT, str(e)) from None


def _read_columns(
    codec: StreamCodec | None, batch: pb.ExecBatch | pb.WriteBatch, context: grpc.ServicerContext
) -> tuple[StreamCodec, Any]:
    """`_decode_columns` for a gRPC stream: a batch that cannot be read aborts it."""
    try:
        return _decode_columns(codec, batch)
    except _BatchFailure as f:
        context.abort(f.code, f.message)


class _ExecStream:
    """The batches of one Exec stream: a gRPC `Exec` call or a connection of
    the framed Exec path. Both run each batch with `run`."""

    __slots__ = ("_s", "_codec")

    def __init__(self, served: _Served) -> None:
        self._s = served
        # This stream's Arrow schemas, both directions: created (and pyarrow
        # imported) at the stream's first columnar batch.
        self._codec: StreamCodec | None = None

    def run(self, batch: pb.ExecBatch) -> pb.ExecResult:
        """One batch's answer. A batch that ends the stream (unknown instance,
        undecodable Arrow) raises `_BatchFailure`."""
        # The hot path: one ExecResult per batch, one RowResult per row, built
        # in place; nothing per row but the conversions and the user's call.
        inst = self._s.instances.get(batch.instance_id)
        if not isinstance(inst, _FunctionInstance):
            raise _BatchFailure(grpc.StatusCode.NOT_FOUND, f"no open function instance {_q(batch.instance_id)}")
        ctx = inst.ctx
        out = pb.ExecResult(seq=batch.seq)
        vectorized = inst.vectorized
        if batch.arrow:
            from . import _arrow

            codec, columns = _decode_columns(self._codec, batch)
            self._codec = codec
            if vectorized is not None:
                _arrow.exec_columns_batch(vectorized, ctx, columns, out, codec)
            else:
                # A row function gets the rows the row encoding would give.
                _arrow.exec_row_function_on_columns(inst.fn, ctx, columns, out, codec)
        elif vectorized is not None:
            from . import _arrow

            _arrow.exec_rows_batch(vectorized, ctx, [[from_pb(a) for a in row.args] for row in batch.rows], out)
        else:
            convert = from_pb
            fill = fill_value
            exec_ = inst.fn.exec
            add = out.results.add
            for row in batch.rows:
                res = add()
                try:
                    fill(res.value, exec_(ctx, [convert(a) for a in row.args]))
                except Exception as e:
                    res.error = str(e) or type(e).__name__
        if ctx._exceptions:
            ctx._log_exceptions()
        if ctx._pending:
            ctx._ship(out.mutations)
        return out


class _FunctionService(pb_grpc.FunctionServicer):
    def __init__(self, served: _Served) -> None:
        self._s = served

    def Validate(self, request: pb.ValidateRequest, context: grpc.ServicerContext) -> pb.ValidateResponse:
        export = self._s.function_export(request.symbol, context)
        args = [
            ArgSpec(
                expression=a.expression,
                literal=from_pb(a.literal) if a.HasField("literal") else None,
                column=a.column if a.HasField("column") else None,
                is_literal=a.HasField("literal"),
            )
            for a in request.args
        ]
        try:
            export.make().validate(args)
        except Exception as e:
            return pb.ValidateResponse(error=_error_text(e))
        return pb.ValidateResponse()

    def Open(self, request: pb.OpenFunctionRequest, context: grpc.ServicerContext) -> pb.OpenResponse:
        spec = _spec(request.instance, request.HasField("instance"), context)
        export = self._s.function_export(spec.symbol, context)
        self._s.ensure_free(spec.instance_id, context)
        try:
            fn = export.make()
        except Exception as e:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"function open failed: {_error_text(e)}")
        self._s.insert(spec.instance_id, _FunctionInstance(fn, _context(spec)), context)
        return pb.OpenResponse()

    def Exec(self, request_iterator: Iterator[pb.ExecBatch], context: grpc.ServicerContext) -> Iterator[pb.ExecResult]:
        stream = _ExecStream(self._s)
        for batch in request_iterator:
            try:
                out = stream.run(batch)
            except _BatchFailure as f:
                context.abort(f.code, f.message)
            yield out

    def Close(self, request: pb.CloseRequest, context: grpc.ServicerContext) -> pb.CloseResponse:
        self._s.close(request.instance_id, context)
        return pb.CloseResponse()


class _SourceService(pb_grpc.SourceServicer):
    def __init__(self, served: _Served) -> None:
        self._s = served

    def Open(self, request: pb.OpenSourceRequest, context: grpc.ServicerContext) -> pb.OpenSourceResponse:
        spec = _spec(request.instance, request.HasField("instance"), context)
        export = self._s.plugin._source
        if export is None:
            context.abort(grpc.StatusCode.UNIMPLEMENTED, "this plugin exports no source")
        self._s.ensure_free(spec.instance_id, context)
        ctx = _context(spec)
        lock = export.lock_for_new_instance()
        try:
            obj = export.make()
            with lock:
                obj.open(ctx, request.datasource, map_from_pb(request.props))
                rewindable = bool(obj.rewindable())
        except Exception as e:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"source open failed: {_error_text(e)}")
        self._s.insert(spec.instance_id, _SourceInstance(obj, ctx, lock, rewindable), context)
        return pb.OpenSourceResponse(rewindable=rewindable)

    def Read(self, request: pb.ReadRequest, context: grpc.ServicerContext) -> Iterator[pb.RecordBatch]:
        inst = self._s.source(request.instance_id, context)
        max_batch = min(max(request.max_batch, 1), MAX_READ_BATCH)
        obj, ctx, lock = inst.obj, inst.ctx, inst.lock
        # Columns only when the supervisor accepts them and the source offers
        # them; the schema sent last belongs to this stream.
        codec: StreamCodec | None = None
        if request.accept_arrow and reads_columns(obj):
            from . import _arrow

            codec = _arrow.StreamCodec()
        with lock:
            inst.generation += 1
            generation = inst.generation
        while True:
            started = time.monotonic()
            columns: Any = None  # pa.RecordBatch
            records: Sequence[Record | Mapping[str, Any]] = ()
            with lock:
                if inst.stopped or inst.generation != generation:
                    return
                try:
                    if codec is not None:
                        columns = obj.read_columns(ctx, max_batch)
                    if columns is None:
                        records = obj.read(ctx, max_batch)
                    offset = obj.offset() if inst.rewindable else None
                except Exception as e:
                    context.abort(grpc.StatusCode.INTERNAL, f"source read failed: {_error_text(e)}")
            if columns is not None and codec is not None:
                # Checked outside the lock: it concerns this stream only.
                from . import _arrow

                try:
                    columns = _arrow.source_columns(columns, max_batch)
                except Exception as e:
                    context.abort(grpc.StatusCode.INTERNAL, f"source read failed: read_columns: {_error_text(e)}")
                if columns.num_rows == 0:
                    columns = None
            if columns is None and not records and not ctx._pending and not ctx._exceptions:
                if not context.is_active():
                    return
                # A source that returns at once with nothing would spin a core.
                if time.monotonic() - started < 0.002:
                    time.sleep(0.01)
                continue
            batch = pb.RecordBatch()
            try:
                if columns is not None and codec is not None:
                    batch.arrow_schema, batch.arrow = codec.encode(columns)
                add = batch.records.add
                for r in records:
                    fill_record(add(), r)
                if offset is not None:
                    fill_value(batch.offset, offset)
            except Exception as e:
                context.abort(grpc.StatusCode.INTERNAL, f"source read failed: {_error_text(e)}")
            if ctx._pending:
                ctx._ship(batch.mutations)
            if ctx._exceptions:
                batch.exceptions.extend(ctx._take_exceptions())
            yield batch

    def Rewind(self, request: pb.RewindRequest, context: grpc.ServicerContext) -> pb.RewindResponse:
        inst = self._s.source(request.instance_id, context)
        offset = from_pb(request.offset) if request.HasField("offset") else None
        with inst.lock:
            inst.generation += 1
            try:
                inst.obj.rewind(inst.ctx, offset)
            except Exception as e:
                context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"rewind failed: {_error_text(e)}")
        return pb.RewindResponse()

    def Close(self, request: pb.CloseRequest, context: grpc.ServicerContext) -> pb.CloseResponse:
        self._s.close(request.instance_id, context)
        return pb.CloseResponse()

    def Checkpointed(
        self, request: pb.CheckpointedRequest, context: grpc.ServicerContext
    ) -> pb.CheckpointedResponse:
        # Python sources cannot hold their upstream's acknowledgements yet:
        # UNIMPLEMENTED tells the supervisor to stop asking (protocol §4.5).
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "this SDK's sources do not take Checkpointed")
        raise AssertionError("unreachable")


class _SinkService(pb_grpc.SinkServicer):
    def __init__(self, served: _Served) -> None:
        self._s = served

    def Open(self, request: pb.OpenSinkRequest, context: grpc.ServicerContext) -> pb.OpenSinkResponse:
        spec = _spec(request.instance, request.HasField("instance"), context)
        export = self._s.plugin._sink
        if export is None:
            context.abort(grpc.StatusCode.UNIMPLEMENTED, "this plugin exports no sink")
        self._s.ensure_free(spec.instance_id, context)
        ctx = _context(spec)
        lock = export.lock_for_new_instance()
        try:
            obj = export.make()
            with lock:
                obj.open(ctx, map_from_pb(request.props))
                transactional = bool(obj.transactional())
        except Exception as e:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"sink open failed: {_error_text(e)}")
        self._s.insert(spec.instance_id, _SinkInstance(obj, ctx, lock), context)
        # What the sink is does not change: Write checks it again with the same
        # isinstance, which also narrows the type there.
        return pb.OpenSinkResponse(
            transactional=transactional, wants_payloads=isinstance(obj, PayloadSink), takes_arrow=takes_columns(obj)
        )

    def Write(self, request_iterator: Iterator[pb.WriteBatch], context: grpc.ServicerContext) -> Iterator[pb.WriteAck]:
        served = self._s
        # This stream's last Arrow schema: created (and pyarrow imported) at
        # the stream's first columnar batch.
        codec: StreamCodec | None = None
        for batch in request_iterator:
            inst = served.sink(batch.instance_id, context)
            obj = inst.obj
            ack = pb.WriteAck(seq=batch.seq)
            columns: Any = None  # pa.RecordBatch
            if batch.arrow:
                codec, columns = _read_columns(codec, batch, context)
            try:
                if columns is not None:
                    # A sink without collect_columns gets the records (Sink's
                    # default); only a supervisor ignoring takes_arrow sends it
                    # columns.
                    count = columns.num_rows
                    with inst.lock:
                        outcome = obj.collect_columns(inst.ctx, columns)
                elif isinstance(obj, PayloadSink):
                    payloads = _payloads(batch)
                    count = len(payloads)
                    with inst.lock:
                        outcome = obj.collect_payloads(inst.ctx, payloads)
                else:
                    records = [record_from_pb(r) for r in batch.records]
                    count = len(records)
                    with inst.lock:
                        outcome = obj.collect(inst.ctx, records)
                if outcome is not None:
                    ack.item_errors.extend(_item_errors(outcome, count))
            except Exception as e:
                ack.error = _error_text(e)
            if inst.ctx._exceptions:
                inst.ctx._log_exceptions()
            if inst.ctx._pending:
                inst.ctx._ship(ack.mutations)
            yield ack

    def PreCommit(self, request: pb.PreCommitRequest, context: grpc.ServicerContext) -> pb.PreCommitResponse:
        inst = self._s.sink(request.instance_id, context)
        resp = pb.PreCommitResponse()
        try:
            with inst.lock:
                handle = inst.obj.pre_commit(inst.ctx, request.checkpoint_id)
            fill_value(resp.handle, handle)
        except Exception as e:
            context.abort(
                grpc.StatusCode.INTERNAL,
                f"pre-commit of checkpoint {request.checkpoint_id} failed: {_error_text(e)}",
            )
        return resp

    def Commit(self, request: pb.CommitRequest, context: grpc.ServicerContext) -> pb.CommitResponse:
        inst = self._s.sink(request.instance_id, context)
        handle = from_pb(request.handle) if request.HasField("handle") else None
        try:
            with inst.lock:
                inst.obj.commit(inst.ctx, request.checkpoint_id, handle)
        except Exception as e:
            context.abort(
                grpc.StatusCode.INTERNAL, f"commit of checkpoint {request.checkpoint_id} failed: {_error_text(e)}"
            )
        return pb.CommitResponse()

    def Abort(self, request: pb.CommitRequest, context: grpc.ServicerContext) -> pb.CommitResponse:
        inst = self._s.sink(request.instance_id, context)
        handle = from_pb(request.handle) if request.HasField("handle") else None
        try:
            with inst.lock:
                inst.obj.abort(inst.ctx, request.checkpoint_id, handle)
        except Exception as e:
            context.abort(
                grpc.StatusCode.INTERNAL, f"abort of checkpoint {request.checkpoint_id} failed: {_error_text(e)}"
            )
        return pb.CommitResponse()

    def Close(self, request: pb.CloseRequest, context: grpc.ServicerContext) -> pb.CloseResponse:
        self._s.close(request.instance_id, context)
        return pb.CloseResponse()


def _payloads(batch: pb.WriteBatch) -> list[bytes]:
    if batch.records and not batch.payloads:
        # A supervisor that predates OpenSinkResponse.wants_payloads: handing
        # the sink nothing would lose the batch silently.
        raise ValueError(
            f"this sink takes payloads, but the batch carries {len(batch.records)} records "
            "(the supervisor does not support wants_payloads)"
        )
    return list(batch.payloads)


def _item_errors(outcome: Any, count: int) -> list[str]:
    """The sink's per-item outcome as WriteAck.item_errors: exactly one entry per
    item, "" for an item delivered. A malformed outcome fails the batch. (Typed
    Any: it comes from user code and is checked here, not trusted.)"""
    if isinstance(outcome, (str, bytes)):
        # A str is a Sequence too: an error message returned by mistake must
        # not read as one outcome per character.
        raise TypeError("collect must return None or one error per item, not a single string")
    out: list[str] = []
    for e in outcome:
        if e is None:
            out.append("")
        elif isinstance(e, str):
            out.append(e)
        else:
            raise TypeError(f"an item's outcome must be a str or None, not {type(e).__name__}")
    if len(out) != count:
        raise ValueError(f"collect returned {len(out)} item outcomes for {count} items")
    return out


# --------------------------------------------------------------------------
# The framed Exec path
# --------------------------------------------------------------------------

#: A frame's prefix: one flag byte (0: not compressed), then the message's
#: length as a 4-byte big-endian integer, exactly as gRPC prefixes a message.
FRAME_HEADER = 5


class _Framed:
    """The framed Exec path (docs/protocol.md, "The framed Exec path"): Exec
    batches as length-prefixed protobuf frames on a second Unix socket.

    Each connection gets its own thread that reads a batch, runs it inline
    (with `_ExecStream.run`, as the gRPC `Exec` handler does) and writes the
    answer, so answers go in request order, as on a gRPC stream. A batch that
    would end a gRPC stream with a status is answered with `failure` and ends
    the connection.
    """

    def __init__(self, path: str, served: _Served) -> None:
        self.path = path
        self._s = served
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._closed = False
        _prepare_socket(path)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listener.bind(path)
        except BaseException:
            listener.close()
            raise
        self._listener = listener
        try:
            listener.listen(socket.SOMAXCONN)
            threading.Thread(target=self._accept, name="oort-framed-accept", daemon=True).start()
        except BaseException:
            listener.close()
            _remove_quietly(path)
            raise

    def close(self) -> None:
        """Stops accepting and ends every connection: a connection's thread
        returns at its next read or write. (The caller removes the file.)"""
        with self._lock:
            self._closed = True
            conns = list(self._conns)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._listener.close()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError as e:
                if self._closed:
                    return
                _log_sdk.warning("framed Exec path: accept failed: %s", _error_text(e))
                time.sleep(0.05)  # EMFILE and the like would spin a core
                continue
            with self._lock:
                if self._closed:
                    conn.close()
                    return
                self._conns.add(conn)
            try:
                threading.Thread(target=self._serve, args=(conn,), name="oort-framed", daemon=True).start()
            except RuntimeError as e:
                _log_sdk.warning("framed Exec path: cannot start a connection's thread: %s", _error_text(e))
                self._forget(conn)

    def _forget(self, conn: socket.socket) -> None:
        with self._lock:
            self._conns.discard(conn)
        conn.close()

    def _serve(self, conn: socket.socket) -> None:
        """Answers the batches of one connection until the supervisor closes it."""
        try:
            with conn.makefile("rb") as frames:
                self._answer(conn, frames)
        finally:
            self._forget(conn)

    def _answer(self, conn: socket.socket, frames: BinaryIO) -> None:
        # Per connection, as per gRPC stream: the Arrow schemas, both directions.
        stream = _ExecStream(self._s)
        while True:
            try:
                message = _read_frame(frames)
            except (OSError, _FrameError) as e:
                if not self._closed:
                    _log_sdk.warning("framed Exec path: %s; closing the connection", _error_text(e))
                return
            if message is None:
                return  # the supervisor closed the connection between frames
            last = True
            try:
                batch = pb.ExecBatch.FromString(message)
            except DecodeError as e:
                out = pb.ExecResult(failure=f"undecodable ExecBatch: {_error_text(e)}")
            else:
                try:
                    out = stream.run(batch)
                    last = False
                except _BatchFailure as f:
                    out = pb.ExecResult(seq=batch.seq, failure=f.message)
                except Exception as e:
                    # What the gRPC path ends the stream with as UNKNOWN.
                    _log_sdk.exception("framed Exec path: batch %d of %s failed", batch.seq, _q(batch.instance_id))
                    out = pb.ExecResult(seq=batch.seq, failure=_error_text(e))
            body = out.SerializeToString()
            try:
                conn.sendall(b"\x00" + len(body).to_bytes(4, "big") + body)
            except OSError:
                return
            if last:
                return


class _FrameError(Exception):
    """A frame that cannot be read: the connection ends."""


def _read_frame(frames: BinaryIO) -> bytes | None:
    """One frame's message; None when the peer closed the connection between frames."""
    header = frames.read(FRAME_HEADER)
    if not header:
        return None
    if len(header) < FRAME_HEADER:
        raise _FrameError("the connection ended inside a frame")
    if header[0] != 0:
        raise _FrameError(f"a frame is flagged {header[0]}, not 0: the framed path does not compress")
    length = int.from_bytes(header[1:], "big")
    if length > MAX_MESSAGE:
        raise _FrameError(f"a message of {length} bytes is too large (the limit is {MAX_MESSAGE} bytes)")
    message = frames.read(length) if length else b""
    if len(message) < length:
        raise _FrameError("the connection ended inside a frame")
    return message


def _listen_framed(served: _Served) -> _Framed | None:
    """Serves the framed Exec path when the supervisor asks for it; a path
    this process cannot listen on leaves it to gRPC, which serves every call."""
    path = os.environ.get("OORT_FRAMED_SOCKET")
    if not path:
        return None
    try:
        framed = _Framed(path, served)
    except Exception as e:
        _log_sdk.warning("no framed Exec path: cannot listen on %s: %s", path, _error_text(e))
        return None
    served.framed = True
    return framed


def _remove_quietly(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass


# --------------------------------------------------------------------------
# Health and reflection
# --------------------------------------------------------------------------


def _add_health(server: grpc.Server) -> None:
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc

    servicer = health.HealthServicer()
    for service in ("", *SERVED):
        servicer.set(service, health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)


def _add_reflection(server: grpc.Server) -> None:
    """Serves `grpc.reflection.v1.ServerReflection`.

    grpcio-reflection implements only v1alpha, whose messages are field for
    field the same as v1's: serve its servicer under the v1 name, and add a v1
    copy of its descriptor to the pool so that `describe` resolves v1 too.
    """
    from google.protobuf import descriptor_pb2, descriptor_pool
    from grpc_reflection.v1alpha import reflection
    from grpc_reflection.v1alpha import reflection_pb2 as alpha

    pool = descriptor_pool.Default()
    try:
        pool.FindFileByName("grpc/reflection/v1/reflection.proto")
    except KeyError:
        fdp = descriptor_pb2.FileDescriptorProto()
        alpha.DESCRIPTOR.CopyToProto(fdp)
        fdp.name = "grpc/reflection/v1/reflection.proto"
        fdp.package = "grpc.reflection.v1"
        fdp.ClearField("options")
        old, new = ".grpc.reflection.v1alpha.", ".grpc.reflection.v1."
        for message in fdp.message_type:
            for f in message.field:
                if f.HasField("type_name"):
                    f.type_name = f.type_name.replace(old, new)
        for service in fdp.service:
            for method in service.method:
                method.input_type = method.input_type.replace(old, new)
                method.output_type = method.output_type.replace(old, new)
        pool.AddSerializedFile(fdp.SerializeToString())

    servicer = reflection.ReflectionServicer((*SERVED, REFLECTION_V1))
    handler = grpc.method_handlers_generic_handler(
        REFLECTION_V1,
        {
            "ServerReflectionInfo": grpc.stream_stream_rpc_method_handler(
                servicer.ServerReflectionInfo,
                request_deserializer=alpha.ServerReflectionRequest.FromString,
                response_serializer=alpha.ServerReflectionResponse.SerializeToString,
            )
        },
    )
    server.add_generic_rpc_handlers((handler,))


# --------------------------------------------------------------------------
# The handshake
# --------------------------------------------------------------------------


def _fail(line: str, code: int) -> NoReturn:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()
    os._exit(code)


def negotiate(offered: str) -> int | None:
    """The highest version in the comma-separated `offered` that this SDK speaks."""
    versions: list[int] = []
    for part in offered.split(","):
        part = part.strip()
        if part.isdigit():
            versions.append(int(part))
    common = [v for v in versions if v == PROTOCOL_VERSION]
    return max(common) if common else None


def _prepare_socket(path: str) -> None:
    """Refuses a path a live process listens on; removes a stale file."""
    if not os.path.lexists(path):
        return
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(path)
        live = True
    except OSError:
        live = False
    finally:
        probe.close()
    if live:
        raise OSError("another process is listening there")
    os.remove(path)


def serve(plugin: Plugin) -> NoReturn:
    """Runs the plugin until the supervisor stops it, then exits the process.

    Run by hand (without the supervisor's environment) it prints what it is and
    exits with status 78.
    """
    _log.setup()
    if isinstance(sys.stdout, io.TextIOWrapper):
        # stdout is a pipe to the supervisor's log: a line per line, not per 8 KiB.
        sys.stdout.reconfigure(line_buffering=True)

    path = os.environ.get("OORT_PLUGIN_SOCKET")
    if not path:
        _fail(
            f"{plugin.name} is an Oort plugin: it is started by the `oort` supervisor, not by hand "
            "(OORT_PLUGIN_SOCKET is not set; see docs/protocol.md)",
            EXIT_HANDSHAKE,
        )
    offered = os.environ.get("OORT_PROTOCOL_VERSIONS", "")
    if negotiate(offered) is None:
        _fail(
            f"{plugin.name}: the supervisor offers protocol versions {_q(offered)}, "
            f"this plugin speaks only {PROTOCOL_VERSION}",
            EXIT_HANDSHAKE,
        )

    # The main thread sleeps on this pipe until a signal handler or the Shutdown
    # RPC writes to it. (A signal handler must not take locks, so no Event.)
    wake_r, wake_w = os.pipe()

    def wake(reason: bytes) -> None:
        try:
            os.write(wake_w, reason)
        except OSError:
            pass

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        wake(b"s")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    served = _Served(plugin, wake)
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=MAX_THREADS, thread_name_prefix="oort"),
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE),
            ("grpc.max_send_message_length", MAX_MESSAGE),
            ("grpc.so_reuseport", 0),
        ],
    )
    pb_grpc.add_PluginServicer_to_server(_PluginService(served), server)
    pb_grpc.add_FunctionServicer_to_server(_FunctionService(served), server)
    pb_grpc.add_SourceServicer_to_server(_SourceService(served), server)
    pb_grpc.add_SinkServicer_to_server(_SinkService(served), server)
    _add_health(server)
    _add_reflection(server)

    try:
        _prepare_socket(path)
        server.add_insecure_port("unix:" + path)
    except Exception as e:
        _fail(f"cannot listen on {path}: {_error_text(e)}", 1)
    # Listening before the health service can say SERVING (it does once the
    # server starts), so that Describe's framed_exec is true from the first call.
    framed = _listen_framed(served)
    try:
        server.start()
    except Exception as e:
        if framed is not None:
            framed.close()
            _remove_quietly(framed.path)
        _fail(f"cannot listen on {path}: {_error_text(e)}", 1)

    while True:
        try:
            reason = os.read(wake_r, 1)
        except InterruptedError:  # pragma: no cover (PEP 475 retries)
            continue
        if reason:
            break

    # Shutdown RPC, SIGTERM or SIGINT: end the Read streams, give in-flight
    # calls a moment (the Shutdown answer among them), then cancel the rest:
    # batch streams stay open for as long as the supervisor keeps them.
    grace = DRAIN_S
    if served.stop_grace_ms:
        grace = min(DRAIN_S, served.stop_grace_ms / 4000)
    served.stop_sources()
    server.stop(grace).wait(grace + 0.2)
    if framed is not None:
        # Its connections had the same moment: end the rest, as gRPC cancels them.
        framed.close()
    served.close_all()
    _remove_quietly(path)
    if framed is not None:
        _remove_quietly(framed.path)
    logging.shutdown()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        # Not sys.exit: it would wait for threads still inside user code.
        os._exit(0)
