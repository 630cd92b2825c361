//! The plugin side of the handshake and the four plugin services.
//!
//! `serve` reads the environment the supervisor sets, binds the socket it names,
//! serves `oort.plugin.v1` plus `grpc.health.v1` and server reflection, and exits
//! when asked to (Shutdown RPC, SIGTERM or SIGINT), removing its socket first.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use oort_proto::columns::{self, BatchDecoder, SchemaSent};
use oort_proto::plugin::v1 as pb;
use oort_proto::plugin::v1::function_server::{Function as FunctionService, FunctionServer};
use oort_proto::plugin::v1::plugin_server::{Plugin as PluginService, PluginServer};
use oort_proto::plugin::v1::sink_server::{Sink as SinkService, SinkServer};
use oort_proto::plugin::v1::source_server::{Source as SourceService, SourceServer};
use oort_proto::{Record, Value};
use tokio::net::UnixListener;
use tokio::sync::{mpsc, Notify};
use tokio_stream::wrappers::{ReceiverStream, UnixListenerStream};
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use crate::context::Context;
use crate::export::{ArgSpec, BoxError, Function, FunctionFactory, Plugin, Shared, Sink, Source};

/// The gRPC services every plugin process serves.
const SERVED: [&str; 5] = [
    "grpc.health.v1.Health",
    "oort.plugin.v1.Plugin",
    "oort.plugin.v1.Function",
    "oort.plugin.v1.Source",
    "oort.plugin.v1.Sink",
];

/// Exit code for a handshake the plugin cannot take part in (wrong or missing
/// environment, unsupported protocol version). Mirrors sysexits' EX_CONFIG.
const EXIT_HANDSHAKE: i32 = 78;

/// Runs the plugin until the supervisor stops it, then exits the process.
///
/// Run by hand (without the supervisor's environment) it prints what it is and
/// exits with status 78.
pub fn serve(plugin: Plugin) -> ! {
    crate::log::init();
    let socket = match std::env::var_os("OORT_PLUGIN_SOCKET") {
        Some(s) => PathBuf::from(s),
        None => {
            eprintln!(
                "{} is an Oort plugin: it is started by the `oort` supervisor, not by hand \
                 (OORT_PLUGIN_SOCKET is not set; see docs/protocol.md)",
                plugin.name
            );
            std::process::exit(EXIT_HANDSHAKE);
        }
    };
    let offered = std::env::var("OORT_PROTOCOL_VERSIONS").unwrap_or_default();
    let speaks =
        offered.split(',').filter_map(|v| v.trim().parse::<u32>().ok()).any(|v| v == oort_proto::PROTOCOL_VERSION);
    if !speaks {
        eprintln!(
            "{}: the supervisor offers protocol versions {offered:?}, this plugin speaks only {}",
            plugin.name,
            oort_proto::PROTOCOL_VERSION
        );
        std::process::exit(EXIT_HANDSHAKE);
    }
    // One thread for the gRPC connections: a plugin's own code runs on the
    // runtime's blocking threads (`blocking`) and framed Exec calls on their
    // connection's thread, so the runtime only moves bytes. It also keeps a
    // plugin small: no worker threads, and without tokio's multi-threaded
    // scheduler the process does not load libm (BENCHMARKS.md, "One Rust
    // plugin ≤ 5 MB").
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| fatal(&format!("cannot start the async runtime: {e}")));
    let code = runtime.block_on(run(plugin, socket.clone()));
    let _ = std::fs::remove_file(&socket);
    if let Some(framed) = framed_socket() {
        let _ = std::fs::remove_file(framed);
    }
    std::process::exit(code);
}

/// Where the supervisor asks for the framed Exec path, if it does.
fn framed_socket() -> Option<PathBuf> {
    std::env::var_os("OORT_FRAMED_SOCKET").filter(|s| !s.is_empty()).map(PathBuf::from)
}

fn fatal(msg: &str) -> ! {
    eprintln!("oort plugin: {msg}");
    std::process::exit(1);
}

async fn run(plugin: Plugin, socket: PathBuf) -> i32 {
    let listener = match bind(&socket) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("cannot listen on {}: {e}", socket.display());
            return 1;
        }
    };
    let state = Arc::new(Served {
        plugin,
        instances: Mutex::new(HashMap::new()),
        stop: Notify::new(),
        framed: Default::default(),
    });
    if let Some(path) = framed_socket() {
        match crate::framed::listen(&path, state.clone()) {
            Ok(()) => state.framed.store(true, Ordering::Relaxed),
            // gRPC serves every call the framed path would: carry on without it.
            Err(e) => tracing::warn!("no framed Exec path: cannot listen on {}: {e}", path.display()),
        }
    }

    let (health, health_service) = tonic_health::server::health_reporter();
    for service in std::iter::once("").chain(SERVED) {
        health.set_service_status(service, tonic_health::ServingStatus::Serving).await;
    }
    let reflection = crate::reflection::LazyReflection::new(&SERVED);

    let handle = Handle(state.clone());
    let (stopping_tx, mut stopping) = tokio::sync::watch::channel(false);
    let server = tonic::transport::Server::builder()
        // Unix sockets have no bandwidth-delay product to speak of: large windows
        // let one batch stream run without waiting for WINDOW_UPDATEs.
        .initial_stream_window_size(Some(8 << 20))
        .initial_connection_window_size(Some(16 << 20))
        .add_service(health_service)
        .add_service(reflection)
        .add_service(PluginServer::new(handle.clone()))
        .add_service(FunctionServer::new(handle.clone()).max_decoding_message_size(64 << 20))
        .add_service(SourceServer::new(handle.clone()))
        .add_service(SinkServer::new(handle).max_decoding_message_size(64 << 20))
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), async move {
            let _ = stopping.wait_for(|s| *s).await;
        });
    let mut server = tokio::spawn(server);

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let ended_by_itself = tokio::select! {
        result = &mut server => Some(result),
        _ = state.stop.notified() => None,
        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => None,
        _ = tokio::signal::ctrl_c() => None,
    };
    let result = match ended_by_itself {
        Some(result) => result,
        None => {
            // A graceful stop waits for open calls, but batch streams stay open
            // for as long as the supervisor keeps them: give in-flight batches a
            // moment, then stop regardless.
            let _ = stopping_tx.send(true);
            match tokio::time::timeout(DRAIN, &mut server).await {
                Ok(result) => result,
                Err(_) => {
                    server.abort();
                    Ok(Ok(()))
                }
            }
        }
    };
    state.close_all();
    match result {
        Ok(Ok(())) => 0,
        Ok(Err(e)) => {
            eprintln!("plugin server failed: {e}");
            1
        }
        Err(e) => {
            eprintln!("plugin server task failed: {e}");
            1
        }
    }
}

/// How long a stopping plugin lets in-flight batches finish.
const DRAIN: std::time::Duration = std::time::Duration::from_millis(500);

/// Binds the socket, refusing to steal a path that a live process listens on.
fn bind(path: &Path) -> std::io::Result<UnixListener> {
    clear_stale(path)?;
    UnixListener::bind(path)
}

/// Removes a socket file that nobody listens on any more, refusing to steal
/// a path that a live process listens on.
pub(crate) fn clear_stale(path: &Path) -> std::io::Result<()> {
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(std::io::Error::new(std::io::ErrorKind::AddrInUse, "another process is listening there"));
        }
        std::fs::remove_file(path)?;
    }
    Ok(())
}

/// An open source: the object, its context, and its reader generation. Only
/// the reader of the current generation may read: a new `Read`, a `Rewind` or
/// a `Close` starts a new generation, which retires the previous reader before
/// it can consume a record that nobody would receive.
type OpenSource = (Shared<dyn Source>, Arc<Context>, Arc<AtomicU64>);

enum Instance {
    Function(Arc<dyn Function>, Arc<Context>),
    Source(Shared<dyn Source>, Arc<Context>, Arc<AtomicU64>),
    Sink(Shared<dyn Sink>, Arc<Context>),
}

pub(crate) struct Served {
    plugin: Plugin,
    instances: Mutex<HashMap<String, Instance>>,
    stop: Notify,
    /// Whether the framed Exec socket is being served (said in `Describe`).
    framed: std::sync::atomic::AtomicBool,
}

impl Served {
    fn instances(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instance>> {
        self.instances.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn insert(&self, id: String, instance: Instance) -> Result<(), Status> {
        let mut map = self.instances();
        if map.contains_key(&id) {
            return Err(Status::already_exists(format!("instance {id:?} is already open")));
        }
        map.insert(id, instance);
        Ok(())
    }

    fn function(&self, id: &str) -> Result<(Arc<dyn Function>, Arc<Context>), Status> {
        match self.instances().get(id) {
            Some(Instance::Function(f, c)) => Ok((f.clone(), c.clone())),
            _ => Err(Status::not_found(format!("no open function instance {id:?}"))),
        }
    }

    fn source(&self, id: &str) -> Result<OpenSource, Status> {
        match self.instances().get(id) {
            Some(Instance::Source(s, c, stop)) => Ok((s.clone(), c.clone(), stop.clone())),
            _ => Err(Status::not_found(format!("no open source instance {id:?}"))),
        }
    }

    fn sink(&self, id: &str) -> Result<(Shared<dyn Sink>, Arc<Context>), Status> {
        match self.instances().get(id) {
            Some(Instance::Sink(s, c)) => Ok((s.clone(), c.clone())),
            _ => Err(Status::not_found(format!("no open sink instance {id:?}"))),
        }
    }

    fn function_factory(&self, symbol: &str) -> Result<&FunctionFactory, Status> {
        self.plugin
            .functions
            .iter()
            .find(|(name, _, _)| name == symbol)
            .map(|(_, _, f)| f)
            .ok_or_else(|| Status::not_found(format!("plugin {} exports no function {symbol:?}", self.plugin.name)))
    }

    fn close(&self, id: &str) -> Result<(), Status> {
        let instance = self.instances().remove(id);
        match instance {
            None => Err(Status::not_found(format!("no open instance {id:?}"))),
            Some(instance) => close_instance(instance).map_err(|e| Status::internal(format!("close {id:?}: {e}"))),
        }
    }

    fn close_all(&self) {
        let all: Vec<_> = self.instances().drain().collect();
        for (id, instance) in all {
            if let Err(e) = close_instance(instance) {
                tracing::warn!(instance = %id, "close failed during shutdown: {e}");
            }
        }
    }
}

fn close_instance(instance: Instance) -> Result<(), crate::BoxError> {
    match instance {
        Instance::Function(..) => Ok(()),
        Instance::Source(s, ctx, generation) => {
            generation.fetch_add(1, Ordering::SeqCst);
            lock(&s).close(&ctx)
        }
        Instance::Sink(s, ctx) => lock(&s).close(&ctx),
    }
}

fn lock<T: ?Sized>(m: &Mutex<Box<T>>) -> std::sync::MutexGuard<'_, Box<T>> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn spec(instance: Option<pb::InstanceSpec>) -> Result<pb::InstanceSpec, Status> {
    let spec = instance.ok_or_else(|| Status::invalid_argument("missing instance spec"))?;
    if spec.instance_id.is_empty() {
        return Err(Status::invalid_argument("instance_id must not be empty"));
    }
    Ok(spec)
}

fn props(map: std::collections::BTreeMap<String, pb::Value>) -> crate::Props {
    oort_proto::map_from_pb(map)
}

/// Runs the plugin's own code on the runtime's blocking threads, so that a
/// slow call of one instance never holds the others' calls: the runtime is a
/// single thread (see [`serve`]). A panic in it fails the call, not the
/// process.
async fn blocking<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> Result<R, Status> {
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        let why = match e.try_into_panic() {
            Ok(panic) => panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".to_string()),
            Err(e) => e.to_string(),
        };
        Status::internal(format!("the plugin's code failed: {why}"))
    })
}

/// The smallest source batch sent as columns: below it the IPC header and
/// the supervisor's decoding outweigh the rows (the host's
/// `COLUMNS_FROM_ROWS` for function batches, for the same reason), so a
/// small batch goes as records.
const SOURCE_COLUMNS_FROM_ROWS: usize = 64;

/// A source's columnar batch as a `RecordBatch` message (empty when the
/// batch has no rows, records when it has only a few); the schema goes when
/// new on the stream.
fn column_batch(batch: &columns::RecordBatch, sent: &mut SchemaSent) -> Result<pb::RecordBatch, columns::ColumnError> {
    if batch.num_rows() == 0 {
        return Ok(pb::RecordBatch::default());
    }
    if batch.num_rows() < SOURCE_COLUMNS_FROM_ROWS {
        let records = columns::records_of(batch)?.into_iter().map(pb::Record::from).collect();
        return Ok(pb::RecordBatch { records, ..Default::default() });
    }
    let arrow = columns::batch_message(batch)?;
    let arrow_schema = sent.message_if_new(&batch.schema()).unwrap_or_default();
    Ok(pb::RecordBatch { arrow_schema, arrow, ..Default::default() })
}

/// Runs one `Exec` batch on its instance, as both transports do: the gRPC
/// stream and the framed socket. `decoder` and `sent` are the connection's
/// Arrow schemas, received and sent.
pub(crate) fn exec_batch(
    served: &Served,
    batch: pb::ExecBatch,
    decoder: &mut BatchDecoder,
    sent: &mut SchemaSent,
) -> Result<pb::ExecResult, Status> {
    let (function, ctx) = served.function(&batch.instance_id)?;
    let mut result = if batch.arrow.is_empty() {
        exec_rows(function.as_ref(), &ctx, batch.rows)
    } else {
        let columns = decoder
            .decode(&batch.arrow_schema, &batch.arrow)
            .map_err(|e| Status::invalid_argument(format!("batch {}: {e}", batch.seq)))?;
        exec_columns(function.as_ref(), &ctx, &columns, sent)
    };
    ctx.log_exceptions();
    result.seq = batch.seq;
    result.mutations = ctx.take_mutations();
    Ok(result)
}

/// Runs a batch of argument rows through the row API.
fn exec_rows(function: &dyn Function, ctx: &Context, rows: Vec<pb::ArgRow>) -> pb::ExecResult {
    // One argument buffer for the whole batch: no allocation per row.
    let mut args: Vec<Value> = Vec::new();
    let results = rows
        .into_iter()
        .map(|row| {
            args.clear();
            args.extend(row.args.into_iter().map(Value::from));
            row_result(function.exec(ctx, &args))
        })
        .collect();
    pb::ExecResult { results, ..Default::default() }
}

fn row_result(outcome: Result<Value, BoxError>) -> pb::RowResult {
    let outcome = match outcome {
        Ok(v) => pb::row_result::Outcome::Value(v.into()),
        Err(e) => pb::row_result::Outcome::Error(e.to_string()),
    };
    pb::RowResult { outcome: Some(outcome) }
}

/// Runs a columnar batch: through [`Function::exec_columns`] when the
/// function works on columns, answering with a column; row by row otherwise.
fn exec_columns(
    function: &dyn Function,
    ctx: &Context,
    batch: &columns::RecordBatch,
    sent: &mut SchemaSent,
) -> pb::ExecResult {
    let n = batch.num_rows();
    let fail_all = |message: String| pb::ExecResult {
        results: (0..n).map(|_| row_result(Err(message.clone().into()))).collect(),
        ..Default::default()
    };
    match function.exec_columns(ctx, batch.columns(), n) {
        Some(Ok(array)) if array.len() != n => {
            fail_all(format!("exec_columns returned {} values for a batch of {n} rows", array.len()))
        }
        Some(Ok(array)) => {
            let answer = columns::single_column("result", array).and_then(|b| {
                let message = columns::batch_message(&b)?;
                Ok((sent.message_if_new(&b.schema()).unwrap_or_default(), message))
            });
            match answer {
                Ok((arrow_schema, arrow)) => pb::ExecResult { arrow_schema, arrow, ..Default::default() },
                Err(e) => fail_all(format!("cannot encode the result column: {e}")),
            }
        }
        Some(Err(e)) => fail_all(e.to_string()),
        None => match columns::rows_of(batch) {
            Ok(rows) => pb::ExecResult {
                results: rows.iter().map(|args| row_result(function.exec(ctx, args))).collect(),
                ..Default::default()
            },
            Err(e) => fail_all(e.to_string()),
        },
    }
}

#[derive(Clone)]
struct Handle(Arc<Served>);

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl PluginService for Handle {
    async fn describe(&self, _: Request<pb::DescribeRequest>) -> Result<Response<pb::DescribeResponse>, Status> {
        let p = &self.0.plugin;
        let mode = |singleton: bool| {
            if singleton {
                pb::ExportMode::Singleton as i32
            } else {
                pb::ExportMode::Constructor as i32
            }
        };
        let mut symbols = Vec::new();
        for (name, singleton, factory) in &p.functions {
            let is_aggregate = factory.probe().is_aggregate();
            symbols.push(pb::Symbol {
                kind: pb::Kind::Function as i32,
                name: name.clone(),
                mode: mode(*singleton),
                is_aggregate,
            });
        }
        if let Some((singleton, _)) = &p.source {
            symbols.push(pb::Symbol {
                kind: pb::Kind::Source as i32,
                name: p.name.clone(),
                mode: mode(*singleton),
                is_aggregate: false,
            });
        }
        if let Some((singleton, _)) = &p.sink {
            symbols.push(pb::Symbol {
                kind: pb::Kind::Sink as i32,
                name: p.name.clone(),
                mode: mode(*singleton),
                is_aggregate: false,
            });
        }
        Ok(Response::new(pb::DescribeResponse {
            name: p.name.clone(),
            version: p.version.clone(),
            symbols,
            protocol_version: oort_proto::PROTOCOL_VERSION,
            sdk_name: crate::SDK_NAME.into(),
            sdk_version: crate::SDK_VERSION.into(),
            encodings: vec![pb::Encoding::ArrowIpc as i32],
            framed_exec: self.0.framed.load(Ordering::Relaxed),
            state_version: p.state_version,
        }))
    }

    async fn migrate_state(
        &self,
        req: Request<pb::MigrateStateRequest>,
    ) -> Result<Response<pb::MigrateStateResponse>, Status> {
        let p = &self.0.plugin;
        let req = req.into_inner();
        let Some(hook) = p.migrate.clone() else {
            return Err(Status::failed_precondition(format!(
                "plugin {} (state version {}) has no state migration and cannot read state of version {}",
                p.name, p.state_version, req.from_version
            )));
        };
        let migration = crate::context::StateMigration::from_wire(req);
        match blocking(move || hook(migration)).await? {
            Ok(state) => Ok(Response::new(pb::MigrateStateResponse { state: crate::context::state_to_wire(state) })),
            Err(e) => Err(Status::failed_precondition(e.to_string())),
        }
    }

    async fn shutdown(&self, _: Request<pb::ShutdownRequest>) -> Result<Response<pb::ShutdownResponse>, Status> {
        // notify_one stores a permit, so the stop is not lost if the server's
        // shutdown future is not polling at this very moment.
        self.0.stop.notify_one();
        Ok(Response::new(pb::ShutdownResponse {}))
    }
}

#[tonic::async_trait]
impl FunctionService for Handle {
    async fn validate(&self, req: Request<pb::ValidateRequest>) -> Result<Response<pb::ValidateResponse>, Status> {
        let req = req.into_inner();
        let function = self.0.function_factory(&req.symbol)?.probe();
        let args: Vec<ArgSpec> = req
            .args
            .into_iter()
            .map(|a| ArgSpec { expression: a.expression, literal: a.literal.map(Value::from), column: a.column })
            .collect();
        let error = match blocking(move || function.validate(&args)).await? {
            Ok(()) => String::new(),
            Err(e) => e.to_string(),
        };
        Ok(Response::new(pb::ValidateResponse { error }))
    }

    async fn open(&self, req: Request<pb::OpenFunctionRequest>) -> Result<Response<pb::OpenResponse>, Status> {
        let spec = spec(req.into_inner().instance)?;
        let function = self.0.function_factory(&spec.symbol)?.make();
        let id = spec.instance_id.clone();
        self.0.insert(id, Instance::Function(function, Arc::new(Context::new(spec))))?;
        Ok(Response::new(pb::OpenResponse {}))
    }

    type ExecStream = BoxStream<pb::ExecResult>;

    async fn exec(&self, req: Request<Streaming<pb::ExecBatch>>) -> Result<Response<Self::ExecStream>, Status> {
        let mut input = req.into_inner();
        let served = self.0.clone();
        let output = async_stream(move |tx| async move {
            // Per stream, as the protocol keeps them: the last Arrow schema
            // received, and the last one sent.
            let mut decoder = BatchDecoder::default();
            let mut sent = SchemaSent::default();
            while let Some(batch) = input.next().await {
                let batch = batch?;
                let served = served.clone();
                let (result, d, s) = blocking(move || {
                    let result = exec_batch(&served, batch, &mut decoder, &mut sent);
                    (result, decoder, sent)
                })
                .await?;
                (decoder, sent) = (d, s);
                let result = result?;
                if tx.send(Ok(result)).await.is_err() {
                    break;
                }
            }
            Ok(())
        });
        Ok(Response::new(output))
    }

    async fn close(&self, req: Request<pb::CloseRequest>) -> Result<Response<pb::CloseResponse>, Status> {
        self.0.close(&req.into_inner().instance_id)?;
        Ok(Response::new(pb::CloseResponse {}))
    }
}

#[tonic::async_trait]
impl SourceService for Handle {
    async fn open(&self, req: Request<pb::OpenSourceRequest>) -> Result<Response<pb::OpenSourceResponse>, Status> {
        let req = req.into_inner();
        let spec = spec(req.instance)?;
        let (_, factory) =
            self.0.plugin.source.as_ref().ok_or_else(|| Status::unimplemented("this plugin exports no source"))?;
        let source = factory.make();
        let ctx = Arc::new(Context::new(spec));
        let props = props(req.props);
        let (opened, c) = (source.clone(), ctx.clone());
        let (rewindable, acks_on_checkpoint) = blocking(move || {
            let mut s = lock(&opened);
            s.open(&c, &req.datasource, &props).map(|()| (s.rewindable(), s.acks_on_checkpoint()))
        })
        .await?
        .map_err(|e| Status::failed_precondition(format!("source open failed: {e}")))?;
        let acks_on_checkpoint = acks_on_checkpoint && ctx.checkpointing();
        let id = ctx.instance_id().to_string();
        self.0.insert(id, Instance::Source(source, ctx, Arc::new(AtomicU64::new(0))))?;
        Ok(Response::new(pb::OpenSourceResponse { rewindable, acks_on_checkpoint }))
    }

    type ReadStream = BoxStream<pb::RecordBatch>;

    async fn read(&self, req: Request<pb::ReadRequest>) -> Result<Response<Self::ReadStream>, Status> {
        let req = req.into_inner();
        let (source, ctx, generation) = self.0.source(&req.instance_id)?;
        let mine = generation.fetch_add(1, Ordering::SeqCst) + 1;
        let max = req.max_batch.clamp(1, 65_536) as usize;
        // Two batches in flight: enough to overlap reading with sending, small
        // enough that a supervisor that stops reading stops the source.
        let (tx, rx) = mpsc::channel(2);
        std::thread::spawn(move || {
            let mut buf: Vec<Record> = Vec::with_capacity(max);
            // Columns while the supervisor takes them and the source gives
            // them; the schema goes once per stream, as the protocol keeps it.
            let mut columns = req.accept_arrow;
            let mut sent = SchemaSent::default();
            while !tx.is_closed() {
                // A waiting call (Checkpointed) goes before the next read.
                while ctx.callers_waiting.load(Ordering::SeqCst) > 0 {
                    std::thread::sleep(std::time::Duration::from_micros(200));
                }
                let read = {
                    let mut s = lock(&source);
                    // Checked under the lock that Rewind takes after bumping it.
                    if generation.load(Ordering::SeqCst) != mine {
                        break;
                    }
                    let batch = match columns.then(|| s.read_columns(&ctx, max)).flatten() {
                        Some(read) => read.and_then(|b| Ok(column_batch(&b, &mut sent)?)),
                        None => {
                            columns = false;
                            s.read(&ctx, &mut buf, max).map(|()| {
                                let records = buf.drain(..).map(pb::Record::from).collect();
                                pb::RecordBatch { records, ..Default::default() }
                            })
                        }
                    };
                    batch.map(|b| (b, s.offset()))
                };
                match read {
                    Ok((mut batch, offset)) => {
                        let mutations = ctx.take_mutations();
                        let exceptions = ctx.take_exceptions();
                        let checkpoint_wanted = ctx.take_checkpoint_wanted();
                        let connection = ctx.take_connection();
                        if batch.records.is_empty()
                            && batch.arrow.is_empty()
                            && mutations.is_empty()
                            && exceptions.is_empty()
                            && !checkpoint_wanted
                            && connection.is_none()
                        {
                            continue;
                        }
                        batch.checkpoint_wanted = checkpoint_wanted;
                        batch.connection = connection;
                        batch.offset = offset.map(Into::into);
                        batch.mutations = mutations;
                        batch.exceptions = exceptions;
                        if tx.blocking_send(Ok(batch)).is_err() {
                            break;
                        }
                    }
                    Err(e) => {
                        let _ = tx.blocking_send(Err(Status::internal(format!("source read failed: {e}"))));
                        break;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn rewind(&self, req: Request<pb::RewindRequest>) -> Result<Response<pb::RewindResponse>, Status> {
        let req = req.into_inner();
        let (source, ctx, generation) = self.0.source(&req.instance_id)?;
        let offset: Value = req.offset.map(Value::from).unwrap_or_default();
        generation.fetch_add(1, Ordering::SeqCst);
        blocking(move || lock(&source).rewind(&ctx, &offset))
            .await?
            .map_err(|e| Status::failed_precondition(format!("rewind failed: {e}")))?;
        Ok(Response::new(pb::RewindResponse {}))
    }

    async fn close(&self, req: Request<pb::CloseRequest>) -> Result<Response<pb::CloseResponse>, Status> {
        self.0.close(&req.into_inner().instance_id)?;
        Ok(Response::new(pb::CloseResponse {}))
    }

    async fn checkpointed(
        &self,
        req: Request<pb::CheckpointedRequest>,
    ) -> Result<Response<pb::CheckpointedResponse>, Status> {
        let req = req.into_inner();
        let (source, ctx, _) = self.0.source(&req.instance_id)?;
        let offset: Value = req.offset.map(Value::from).unwrap_or_default();
        ctx.callers_waiting.fetch_add(1, Ordering::SeqCst);
        let c = ctx.clone();
        let done = blocking(move || lock(&source).checkpointed(&c, &offset)).await;
        ctx.callers_waiting.fetch_sub(1, Ordering::SeqCst);
        done?.map_err(|e| Status::failed_precondition(format!("checkpointed failed: {e}")))?;
        Ok(Response::new(pb::CheckpointedResponse {}))
    }
}

#[tonic::async_trait]
impl SinkService for Handle {
    async fn open(&self, req: Request<pb::OpenSinkRequest>) -> Result<Response<pb::OpenSinkResponse>, Status> {
        let req = req.into_inner();
        let spec = spec(req.instance)?;
        let (_, factory) =
            self.0.plugin.sink.as_ref().ok_or_else(|| Status::unimplemented("this plugin exports no sink"))?;
        let sink = factory.make();
        let ctx = Arc::new(Context::new(spec));
        let props = props(req.props);
        let (opened, c) = (sink.clone(), ctx.clone());
        let (transactional, wants_payloads, takes_arrow) = blocking(move || {
            let mut s = lock(&opened);
            s.open(&c, &props).map(|()| (s.transactional(), s.wants_payloads(), s.takes_columns()))
        })
        .await?
        .map_err(|e| Status::failed_precondition(format!("sink open failed: {e}")))?;
        let id = ctx.instance_id().to_string();
        self.0.insert(id, Instance::Sink(sink, ctx))?;
        Ok(Response::new(pb::OpenSinkResponse { transactional, wants_payloads, takes_arrow }))
    }

    type WriteStream = BoxStream<pb::WriteAck>;

    async fn write(&self, req: Request<Streaming<pb::WriteBatch>>) -> Result<Response<Self::WriteStream>, Status> {
        let mut input = req.into_inner();
        let served = self.0.clone();
        let output = async_stream(move |tx| async move {
            // The last Arrow schema this stream received.
            let mut decoder = BatchDecoder::default();
            while let Some(batch) = input.next().await {
                let batch = batch?;
                let (sink, ctx) = served.sink(&batch.instance_id)?;
                let columns = match batch.arrow.is_empty() {
                    true => None,
                    false => Some(
                        decoder
                            .decode(&batch.arrow_schema, &batch.arrow)
                            .map_err(|e| Status::invalid_argument(format!("batch {}: {e}", batch.seq)))?,
                    ),
                };
                let ack = blocking(move || {
                    let mut sink = lock(&sink);
                    let mut item_errors = Vec::new();
                    let written = if sink.wants_payloads() {
                        let items = batch.payloads.len();
                        sink.collect_payloads(&ctx, &batch.payloads).and_then(|errors| match errors.len() {
                            0 => Ok(()),
                            n if n == items => {
                                item_errors = errors.into_iter().map(Option::unwrap_or_default).collect();
                                Ok(())
                            }
                            n => Err(format!("collect_payloads returned {n} item errors for {items} items").into()),
                        })
                    } else if let Some(columns) = &columns {
                        sink.collect_columns(&ctx, columns)
                    } else {
                        let records: Vec<Record> = batch.records.into_iter().map(Record::from).collect();
                        sink.collect(&ctx, &records)
                    };
                    let error = match written {
                        Ok(()) => String::new(),
                        Err(e) => e.to_string(),
                    };
                    ctx.log_exceptions();
                    pb::WriteAck { seq: batch.seq, error, mutations: ctx.take_mutations(), item_errors }
                })
                .await?;
                if tx.send(Ok(ack)).await.is_err() {
                    break;
                }
            }
            Ok(())
        });
        Ok(Response::new(output))
    }

    async fn pre_commit(&self, req: Request<pb::PreCommitRequest>) -> Result<Response<pb::PreCommitResponse>, Status> {
        let req = req.into_inner();
        let (sink, ctx) = self.0.sink(&req.instance_id)?;
        let id = req.checkpoint_id;
        let handle = blocking(move || lock(&sink).pre_commit(&ctx, id))
            .await?
            .map_err(|e| Status::internal(format!("pre-commit of checkpoint {} failed: {e}", req.checkpoint_id)))?;
        Ok(Response::new(pb::PreCommitResponse { handle: Some(handle.into()) }))
    }

    async fn commit(&self, req: Request<pb::CommitRequest>) -> Result<Response<pb::CommitResponse>, Status> {
        let req = req.into_inner();
        let (sink, ctx) = self.0.sink(&req.instance_id)?;
        let handle: Value = req.handle.map(Value::from).unwrap_or_default();
        let id = req.checkpoint_id;
        blocking(move || lock(&sink).commit(&ctx, id, &handle))
            .await?
            .map_err(|e| Status::internal(format!("commit of checkpoint {} failed: {e}", req.checkpoint_id)))?;
        Ok(Response::new(pb::CommitResponse {}))
    }

    async fn abort(&self, req: Request<pb::CommitRequest>) -> Result<Response<pb::CommitResponse>, Status> {
        let req = req.into_inner();
        let (sink, ctx) = self.0.sink(&req.instance_id)?;
        let handle: Value = req.handle.map(Value::from).unwrap_or_default();
        let id = req.checkpoint_id;
        blocking(move || lock(&sink).abort(&ctx, id, &handle))
            .await?
            .map_err(|e| Status::internal(format!("abort of checkpoint {} failed: {e}", req.checkpoint_id)))?;
        Ok(Response::new(pb::CommitResponse {}))
    }

    async fn close(&self, req: Request<pb::CloseRequest>) -> Result<Response<pb::CloseResponse>, Status> {
        self.0.close(&req.into_inner().instance_id)?;
        Ok(Response::new(pb::CloseResponse {}))
    }
}

/// Turns a producer task into a response stream. The task's error, if any,
/// ends the stream with that status.
fn async_stream<T, F, Fut>(producer: F) -> BoxStream<T>
where
    T: Send + 'static,
    F: FnOnce(mpsc::Sender<Result<T, Status>>) -> Fut,
    Fut: std::future::Future<Output = Result<(), Status>> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(4);
    let fut = producer(tx.clone());
    tokio::spawn(async move {
        if let Err(status) = fut.await {
            let _ = tx.send(Err(status)).await;
        }
    });
    Box::pin(ReceiverStream::new(rx))
}

#[cfg(test)]
mod tests {
    //! How a columnar batch reaches a function: its own `exec_columns`, or
    //! `exec` row by row with the values a row batch would give.

    use super::*;
    use crate::arrow::{Array, ArrayRef, Int64Array};

    /// The README's example.
    struct Double;
    impl Function for Double {
        fn exec(&self, _ctx: &Context, args: &[Value]) -> Result<Value, BoxError> {
            Ok(args[0].as_i64().map(|i| Value::Int(i * 2)).unwrap_or_default())
        }
        fn exec_columns(&self, _ctx: &Context, args: &[ArrayRef], _rows: usize) -> Option<Result<ArrayRef, BoxError>> {
            let ints = args[0].as_any().downcast_ref::<Int64Array>()?;
            Some(Ok(Arc::new(ints.iter().map(|v| v.map(|i| i * 2)).collect::<Int64Array>())))
        }
    }

    /// Answers with the wrong number of values, or fails, per its argument.
    struct Liar;
    impl Function for Liar {
        fn exec(&self, _ctx: &Context, _args: &[Value]) -> Result<Value, BoxError> {
            Ok(Value::Null)
        }
        fn exec_columns(&self, _ctx: &Context, args: &[ArrayRef], rows: usize) -> Option<Result<ArrayRef, BoxError>> {
            Some(match rows {
                2 => Ok(args[0].slice(0, 1)),
                _ => Err("no columns today".into()),
            })
        }
    }

    fn ctx() -> Context {
        Context::new(pb::InstanceSpec { instance_id: "i".into(), ..Default::default() })
    }

    fn rows_answer(result: &pb::ExecResult) -> Vec<Result<Value, String>> {
        result
            .results
            .iter()
            .map(|r| match r.outcome.clone() {
                Some(pb::row_result::Outcome::Value(v)) => Ok(v.into()),
                Some(pb::row_result::Outcome::Error(e)) => Err(e),
                None => Ok(Value::Null),
            })
            .collect()
    }

    #[test]
    fn a_columnar_function_answers_with_a_column_and_its_schema_once() {
        let batch = columns::args_batch(&[vec![Value::Int(1)], vec![Value::Null], vec![Value::Int(-4)]]).unwrap();
        let mut sent = SchemaSent::default();
        let first = exec_columns(&Double, &ctx(), &batch, &mut sent);
        assert!(first.results.is_empty() && !first.arrow_schema.is_empty());
        let answer = columns::decode_with_schema(&first.arrow_schema, &first.arrow).unwrap();
        assert_eq!(
            columns::values_of(answer.column(0).as_ref()).unwrap(),
            [Value::Int(2), Value::Null, Value::Int(-8)]
        );
        let second = exec_columns(&Double, &ctx(), &batch, &mut sent);
        assert!(second.arrow_schema.is_empty() && !second.arrow.is_empty(), "the schema goes once per stream");
    }

    #[test]
    fn columns_the_function_does_not_take_go_row_by_row() {
        // Strings: Double's exec_columns declines (None), so exec runs per row.
        let batch = columns::args_batch(&[vec![Value::String("a".into())], vec![Value::Int(3)]]);
        assert!(batch.is_none(), "a mixed column is not a batch");
        let batch = columns::args_batch(&[vec![Value::String("a".into())], vec![Value::Null]]).unwrap();
        let result = exec_columns(&Double, &ctx(), &batch, &mut SchemaSent::default());
        assert!(result.arrow.is_empty());
        assert_eq!(rows_answer(&result), [Ok(Value::Null), Ok(Value::Null)]);
    }

    #[test]
    fn a_wrong_length_or_an_error_fails_every_row() {
        let two = columns::args_batch(&[vec![Value::Int(1)], vec![Value::Int(2)]]).unwrap();
        let result = exec_columns(&Liar, &ctx(), &two, &mut SchemaSent::default());
        let why = "exec_columns returned 1 values for a batch of 2 rows".to_string();
        assert_eq!(rows_answer(&result), [Err(why.clone()), Err(why)]);
        let one = columns::args_batch(&[vec![Value::Int(1)]]).unwrap();
        let result = exec_columns(&Liar, &ctx(), &one, &mut SchemaSent::default());
        assert_eq!(rows_answer(&result), [Err("no columns today".to_string())]);
    }

    #[test]
    fn a_sources_columns_carry_their_schema_once_and_nothing_when_empty() {
        let batch = columns::records_batch(&[Record::default()]).unwrap();
        let mut sent = SchemaSent::default();
        assert_eq!(column_batch(&batch.slice(0, 0), &mut sent).unwrap(), pb::RecordBatch::default());
        let ints: ArrayRef = Arc::new(Int64Array::from_iter_values(0..SOURCE_COLUMNS_FROM_ROWS as i64));
        let batch = columns::RecordBatch::try_from_iter([("n", ints)]).unwrap();
        // A few rows go as records.
        let few = column_batch(&batch.slice(0, 3), &mut sent).unwrap();
        assert!(few.arrow.is_empty() && few.records.len() == 3 && few.records[2].fields["n"] == Value::Int(2).into());
        let first = column_batch(&batch, &mut sent).unwrap();
        assert!(!first.arrow_schema.is_empty() && !first.arrow.is_empty() && first.records.is_empty());
        let second = column_batch(&batch, &mut sent).unwrap();
        assert!(second.arrow_schema.is_empty(), "the schema goes once per Read stream");
        let read = columns::decode_with_schema(&first.arrow_schema, &second.arrow).unwrap();
        assert_eq!(columns::records_of(&read).unwrap()[1].fields["n"], Value::Int(1));
    }
}
