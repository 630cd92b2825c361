//! One running rule: source → filter → projection (plugin functions in
//! batches) → every sink.
//!
//! Backpressure is end to end: every hop is a bounded channel or a stream
//! under HTTP/2 flow control, so a slow sink slows the source and memory stays
//! bounded by a few batches per hop.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use oort_proto::columns::{ArrayRef, RecordBatch};
use oort_proto::{Record, Value};
use tokio::sync::{mpsc, oneshot, watch};

use crate::metrics::CallMetrics;
use crate::payload::PayloadEncoder;
use crate::status::{Instance, RuleStatus};
use futures_util::stream::{FuturesOrdered, StreamExt};
use oort_store::checkpoint::{self, Snapshot};

use crate::publish::{CheckpointPublisher, PublishError};

use oort_host::{FunctionInstance, Host, HostError, SinkInstance, SourceBatch, SourceInstance};

use crate::shared::{SharedSource, SharedSources, StreamSource};
use oort_sql::window::WindowState;
use oort_sql::{Cell, ColumnAnswer, Functions, RulePlan, StreamDef};

use crate::forward::{Forward, Output};
use crate::memory::{self, MemoryTopics};
use oort_store::Store;

/// Batches queued per sink before the pipeline waits for it.
const SINK_QUEUE: usize = 2;

/// What a pipeline runs with.
#[derive(Clone)]
pub(super) struct RunContext {
    pub plan: RulePlan,
    pub stream: StreamDef,
    pub source_props: BTreeMap<String, Value>,
    /// Each action's properties, its connection's merged in.
    pub sink_props: Vec<BTreeMap<String, Value>>,
    pub host: Arc<Host>,
    pub store: Arc<Store>,
    pub status: Arc<RuleStatus>,
    pub stop: watch::Receiver<bool>,
    /// The source instances of `SHARED` streams, one per stream.
    pub shared: Arc<SharedSources>,
    /// The built-in memory topics.
    pub memory: Arc<MemoryTopics>,
    /// In cluster mode, where checkpoints go for other nodes.
    pub publisher: Option<Arc<dyn CheckpointPublisher>>,
}

/// Why a pipeline ended on its own.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Failure {
    pub reason: String,
    /// True when restarting the rule from its last checkpoint is the cure
    /// (a transactional sink failed mid-epoch); false when only an operator can
    /// help (a crash loop, a corrupt checkpoint, a failing store).
    pub recoverable: bool,
}

impl Failure {
    pub(crate) fn fatal(reason: impl Into<String>) -> Failure {
        Failure { reason: reason.into(), recoverable: false }
    }
}

impl From<String> for Failure {
    fn from(reason: String) -> Failure {
        Failure::fatal(reason)
    }
}

/// A message to a sink task, in order.
/// What the sinks get of one source batch or one window emission.
pub(crate) struct SinkBatch {
    /// The records; for a batch of columns, made from them when a sink
    /// first needs records.
    records: std::sync::OnceLock<Vec<Record>>,
    /// The records as columns, when the rule ran on columns.
    pub(crate) columns: Option<RecordBatch>,
    /// Where each window's results end in `records`; empty when every record
    /// is an emission of its own (a rule without a window).
    pub(crate) ends: Vec<usize>,
}

impl SinkBatch {
    pub(crate) fn of_records(records: Vec<Record>, ends: Vec<usize>) -> SinkBatch {
        SinkBatch { records: records.into(), columns: None, ends }
    }

    pub(crate) fn of_columns(columns: RecordBatch) -> SinkBatch {
        SinkBatch { records: std::sync::OnceLock::new(), columns: Some(columns), ends: Vec::new() }
    }

    pub(crate) fn len(&self) -> usize {
        match (&self.columns, self.records.get()) {
            (Some(c), _) => c.num_rows(),
            (None, r) => r.map_or(0, Vec::len),
        }
    }

    /// The batch as records. Columns the engine built always convert (they
    /// hold values only); should one not, its rows read as empty records.
    pub(crate) fn records(&self) -> &[Record] {
        self.records.get_or_init(|| match &self.columns {
            Some(c) => oort_proto::columns::records_of(c).unwrap_or_else(|_| vec![Record::default(); c.num_rows()]),
            None => Vec::new(),
        })
    }
}

pub(crate) enum SinkMsg {
    Batch(Arc<SinkBatch>),
    /// Checkpoint barrier: every earlier batch is written; pre-commit and reply.
    Barrier(u64, oneshot::Sender<Result<Value, HostError>>),
}

/// Runs the rule until `stop` fires (Ok) or it fails. Every instance it opened
/// is closed before it returns.
pub(super) async fn run(ctx: RunContext) -> Result<(), Failure> {
    let result = run_inner(&ctx).await;
    for (_, instance) in ctx.status.take_instances() {
        match instance {
            Instance::Source(s) => ctx.host.close_source(&s).await,
            // The stream's hub closes it when its last rule leaves.
            Instance::SharedSource(_) => {}
            Instance::Function(f) => ctx.host.close_function(&f).await,
            Instance::Sink(s) => ctx.host.close_sink(&s).await,
        }
    }
    result
}

/// Resolves once the rule is asked to stop. (A helper rather than `wait_for`
/// in `select!`: its borrow guard must not live across an await.)
pub(super) async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Loads the newest checkpoint of a rule, refusing to go on from nothing when
/// one exists but cannot be read.
fn restore(ctx: &RunContext) -> Result<Option<Snapshot>, Failure> {
    let rule = &ctx.plan.def.id;
    match ctx.store.latest_checkpoint(rule) {
        Err(e) => Err(Failure::fatal(format!("rule {rule}: cannot read its checkpoints: {e}"))),
        Ok(None) => Ok(None),
        Ok(Some((id, bytes))) => match checkpoint::decode(rule, id, &bytes) {
            Ok(snapshot) => Ok(Some(snapshot)),
            Err(e) => Err(Failure::fatal(format!(
                "rule {rule}: checkpoint {id} cannot be decoded ({e}); the rule will not start from an empty \
                 state by itself: run `oort rule reset-state {rule}` to discard its checkpoints and state"
            ))),
        },
    }
}

async fn run_inner(ctx: &RunContext) -> Result<(), Failure> {
    let restored = restore_state(ctx)?;
    let mut opened = open(ctx).await?;
    ctx.status.opened();
    let outcome = match with_plugin_aggregates(ctx, &opened).await {
        Ok(ctx) => match recover(&ctx, &opened, restored.as_ref()).await {
            Ok(position) => run_loop(&ctx, &mut opened, position, restored.is_none()).await,
            Err(failure) => Err(failure),
        },
        Err(failure) => Err(failure),
    };
    drain(opened).await;
    outcome
}

/// The run's context with its plan made again when a function plugin's
/// `Describe` says something the plan did not assume: which functions are
/// aggregates is known for sure only once their processes run (a rule restored
/// at start-up was planned without asking them).
async fn with_plugin_aggregates(ctx: &RunContext, opened: &Opened) -> Result<RunContext, Failure> {
    let sites = ctx.plan.select.calls.iter().zip(&opened.functions);
    if sites.clone().all(|(site, f)| site.aggregate == f.is_aggregate()) {
        return Ok(ctx.clone());
    }
    let aggregates: oort_sql::AggregateFunctions =
        sites.filter(|(_, f)| f.is_aggregate()).map(|(site, _)| site.function.to_lowercase()).collect();
    let def = ctx.plan.def.clone();
    let plan = tokio::task::spawn_blocking(move || def.plan_with(&aggregates))
        .await
        .map_err(|e| Failure::fatal(format!("the rule could not be planned: {e}")))?
        .map_err(|e| Failure::fatal(e.to_string()))?;
    Ok(RunContext { plan, ..ctx.clone() })
}

/// Sets each record's event time from the stream's `TIMESTAMP` field; the
/// records without a readable one are returned as errors.
fn stamp_event_time(stream: &StreamDef, records: Vec<Record>) -> (Vec<Record>, Vec<String>) {
    let mut stamped = Vec::with_capacity(records.len());
    let mut errors = Vec::new();
    for mut r in records {
        match stream.event_time(&r) {
            Ok(t) => {
                r.timestamp_ms = t;
                stamped.push(r);
            }
            Err(e) => errors.push(e),
        }
    }
    (stamped, errors)
}

/// With checkpoints, state is exactly the checkpoint's: restored before any
/// instance opens, so every instance opens with it.
fn restore_state(ctx: &RunContext) -> Result<Option<Snapshot>, Failure> {
    let rule = ctx.plan.def.id.as_str();
    let checkpointing = ctx.plan.qos >= 1;
    let restored = if checkpointing { restore(ctx)? } else { None };
    ctx.host.set_rule_limits(rule, &ctx.plan.plugin_limits);
    ctx.host.set_rule_pins(rule, &ctx.plan.plugin_pins);
    ctx.host.set_rule_checkpointing(rule, checkpointing);
    if checkpointing {
        let instances = restored.as_ref().map(|r| r.instances.clone()).unwrap_or_default();
        ctx.host.state().restore_rule(rule, instances);
    }
    Ok(restored)
}

/// Where a rule's batches come from: its own source instance, the one
/// instance of a `SHARED` stream, or a memory topic filter.
enum RuleSource {
    Own(Arc<SourceInstance>),
    Shared(SharedSource),
    Memory(MemorySubscription),
}

/// A rule's subscription to memory topics: made when the rule opens, so that
/// nothing published between its opening and its first read is missed; a
/// later read (after the stream broke) subscribes anew.
struct MemorySubscription {
    topics: Arc<MemoryTopics>,
    filter: String,
    first: std::sync::Mutex<Option<mpsc::Receiver<Result<SourceBatch, HostError>>>>,
}

impl RuleSource {
    /// The rule's own plugin instance, if it has one.
    fn own(&self) -> Option<&SourceInstance> {
        match self {
            RuleSource::Own(s) => Some(s),
            RuleSource::Shared(_) | RuleSource::Memory(_) => None,
        }
    }

    fn rewindable(&self) -> bool {
        match self {
            RuleSource::Own(s) => s.rewindable(),
            // Rewinding it for one rule would replay it for every rule.
            RuleSource::Shared(_) => false,
            // Topics keep nothing to replay, as in eKuiper.
            RuleSource::Memory(_) => false,
        }
    }

    /// Reads from `offset` (from where the source is when `None`).
    async fn read_from(
        &self,
        offset: Option<Value>,
        max_batch: u32,
    ) -> Result<mpsc::Receiver<Result<SourceBatch, HostError>>, HostError> {
        match self {
            RuleSource::Own(s) => s.read_from(offset, max_batch).await,
            RuleSource::Shared(s) => Ok(s.read()),
            RuleSource::Memory(m) => {
                let first = m.first.lock().unwrap_or_else(|e| e.into_inner()).take();
                Ok(first.unwrap_or_else(|| m.topics.subscribe(&m.filter)))
            }
        }
    }
}

/// A rule's plugin instances, opened, and the task that feeds each sink.
struct Opened {
    source: RuleSource,
    functions: Vec<Arc<FunctionInstance>>,
    function_calls: Vec<Arc<CallMetrics>>,
    /// Each action's operator name and plugin instance (none for the
    /// built-in memory sink).
    sinks: Vec<(String, Option<Arc<SinkInstance>>)>,
    sink_queues: Vec<mpsc::Sender<SinkMsg>>,
    sink_tasks: Vec<tokio::task::JoinHandle<()>>,
    /// A sink task that gives up says why here.
    fatal_rx: mpsc::Receiver<Failure>,
}

/// Opens the source, one function instance per call site and the sinks, and
/// starts the sink tasks.
async fn open(ctx: &RunContext) -> Result<Opened, Failure> {
    let plan = &ctx.plan;
    let rule = plan.def.id.as_str();
    let restart = plan.restart;
    let checkpointing = plan.qos >= 1;
    let props = ctx.source_props.clone().into_iter().collect();
    let cannot_open = |e: HostError| format!("cannot open source {}: {e}", ctx.stream.source_type());
    let source = if memory::is_memory(ctx.stream.source_type()) {
        // A SHARED memory stream needs no hub: every rule's subscription
        // already gets every batch.
        let filter = ctx.stream.datasource().to_string();
        let first = std::sync::Mutex::new(Some(ctx.memory.subscribe(&filter)));
        RuleSource::Memory(MemorySubscription { topics: ctx.memory.clone(), filter, first })
    } else if ctx.stream.is_shared() {
        // The instance is the stream's: the rule's status shows it, but
        // closing the rule's instances does not close it.
        let s = StreamSource {
            stream: &ctx.stream.name,
            source_type: ctx.stream.source_type(),
            datasource: ctx.stream.datasource(),
            props,
            restart,
            max_batch: plan.buffer_length,
        };
        let shared = ctx.shared.join(&ctx.host, s).await.map_err(cannot_open)?;
        ctx.status.register("source".into(), Instance::SharedSource(shared.instance()));
        RuleSource::Shared(shared)
    } else {
        let source = ctx
            .host
            .open_source(rule, ctx.stream.source_type(), ctx.stream.datasource(), props, restart)
            .await
            .map_err(cannot_open)?;
        let source = Arc::new(source);
        ctx.status.register("source".into(), Instance::Source(source.clone()));
        RuleSource::Own(source)
    };
    if checkpointing && !source.rewindable() {
        // Allowed, as in eKuiper (an MQTT source cannot replay either), but
        // the operator should know what a checkpoint can and cannot restore.
        let warning = format!(
            "source {} is not rewindable: with qos {} the rule restores its state after a failure, \
             but records the source produced since the last checkpoint are not replayed",
            ctx.stream.source_type(),
            plan.qos
        );
        tracing::warn!(rule, "{warning}");
        ctx.status.set_warning(warning);
    }

    let mut functions = Vec::new();
    let mut function_calls = Vec::new();
    for (site, call) in plan.select.calls.iter().enumerate() {
        let operator = oort_host::state::function_operator(site, &call.function);
        function_calls.push(ctx.status.calls(&operator));
        let f = ctx
            .host
            .open_function(rule, &operator, &call.function, restart)
            .await
            .map_err(|e| format!("cannot open function {}: {e}", call.function))?;
        let f = Arc::new(f);
        ctx.status.register(operator, Instance::Function(f.clone()));
        functions.push(f);
    }

    let (fatal_tx, fatal_rx) = mpsc::channel::<Failure>(1);
    let mut sink_queues = Vec::new();
    let mut sink_tasks = Vec::new();
    let mut sinks = Vec::new();
    for (i, action) in plan.actions.iter().enumerate() {
        let operator = format!("sink_{i}_{}", action.sink);
        let (tx, rx) = mpsc::channel::<SinkMsg>(SINK_QUEUE);
        if memory::is_memory(&action.sink) {
            let topic = memory::sink_topic(&action.props).map_err(|e| format!("sink {}: {e}", action.sink))?;
            let metrics = ctx.status.clone();
            sink_tasks.push(tokio::spawn(memory_sink_loop(
                ctx.memory.clone(),
                topic,
                metrics,
                i,
                rx,
                ctx.stop.clone(),
            )));
            sink_queues.push(tx);
            sinks.push((operator, None));
            continue;
        }
        let props = ctx.sink_props.get(i).unwrap_or(&action.props).clone().into_iter().collect();
        let sink = ctx
            .host
            .open_sink(rule, &operator, &action.sink, props, restart)
            .await
            .map_err(|e| format!("cannot open sink {}: {e}", action.sink))?;
        let sink = Arc::new(sink);
        ctx.status.register(operator.clone(), Instance::Sink(sink.clone()));
        let calls = ctx.status.calls(&operator);
        sinks.push((operator, Some(sink.clone())));
        sink_queues.push(tx);
        let status = ctx.status.clone();
        let exactly_once = plan.qos == 2;
        let encoder = if sink.wants_payloads() {
            Some(PayloadEncoder::new(&action.props).map_err(|e| format!("sink {}: {e}", action.sink))?)
        } else {
            None
        };
        sink_tasks.push(tokio::spawn(sink_loop(
            SinkTask { sink, encoder, calls, status, index: i, exactly_once, fatal_tx: fatal_tx.clone() },
            rx,
            ctx.stop.clone(),
        )));
    }
    drop(fatal_tx);
    Ok(Opened { source, functions, function_calls, sinks, sink_queues, sink_tasks, fatal_rx })
}

/// Where a run resumes: after the last record the sinks accepted, and with
/// the next checkpoint id.
struct Position {
    last_offset: Option<Value>,
    next_checkpoint: u64,
    /// A windowed rule's window as the checkpoint left it.
    window: Option<Value>,
}

/// The position of the restored checkpoint (the main loop's first read
/// rewinds the source to it) and, under exactly-once, commits what the
/// checkpoint pre-committed in each sink (recover-and-commit).
async fn recover(ctx: &RunContext, opened: &Opened, restored: Option<&Snapshot>) -> Result<Position, Failure> {
    let plan = &ctx.plan;
    let rule = plan.def.id.as_str();
    let Opened { sinks, .. } = opened;
    let mut last_offset: Option<Value> = None;
    let mut next_checkpoint = 1;
    let mut window = None;
    if let Some(r) = restored {
        next_checkpoint = r.id + 1;
        window = r.window.clone();
        // The main loop's first read rewinds the source to it.
        if let Some(offset) = &r.source_offset {
            last_offset = Some(offset.clone());
        }
        if plan.qos == 2 {
            // Recover-and-commit: the restored checkpoint is durable, so its
            // pre-committed output is final, and whatever came after it goes.
            for (operator, sink) in sinks.iter().filter_map(|(o, s)| Some((o, s.as_ref()?))) {
                if let Some(handle) = r.sink_handles.get(operator) {
                    sink.commit(r.id, handle.clone()).await.map_err(|e| Failure {
                        reason: format!("rule {rule}: recovering checkpoint {} in {operator}: {e}", r.id),
                        recoverable: true,
                    })?;
                }
            }
        }
        tracing::info!(rule, checkpoint = r.id, "restored from checkpoint");
    }
    Ok(Position { last_offset, next_checkpoint, window })
}

/// The main loop: source batches in, evaluated (up to `IN_FLIGHT` at once),
/// forwarded to the sinks, with a checkpoint every interval; `fresh` when no
/// checkpoint was restored. Ends when the rule is stopped or fails.
async fn run_loop(ctx: &RunContext, opened: &mut Opened, position: Position, fresh: bool) -> Result<(), Failure> {
    let plan = &ctx.plan;
    let checkpointing = plan.qos >= 1;
    let Opened { source, functions, function_calls, sinks, sink_queues, fatal_rx, .. } = opened;
    let Position { mut last_offset, mut next_checkpoint, window } = position;
    let window = match (&plan.select.grouping, window) {
        (None, _) => None,
        (Some(g), saved) => {
            let empty = match plan.event_time {
                Some(tolerance) => WindowState::of(g).on_event_time(tolerance),
                None => WindowState::of(g),
            };
            Some(match saved {
                None => empty,
                Some(v) => WindowState::restore(empty, &v).map_err(|e| {
                    let id = next_checkpoint.saturating_sub(1);
                    Failure::fatal(format!(
                        "rule {}: the window in checkpoint {id} is unreadable ({e}); \
                         `oort rule reset-state {}` discards it",
                        plan.def.id, plan.def.id
                    ))
                })?,
            })
        }
    };
    let calls = Calls { functions, metrics: function_calls, stop: ctx.stop.clone() };
    let max_batch = plan.buffer_length;
    let mut stop = ctx.stop.clone();
    let mut checkpoint = Checkpointer { ctx, source, sinks, queues: sink_queues };
    // A source that holds acknowledgements cannot be read on after its read
    // broke: its upstream delivers again what the last checkpoint did not
    // cover, and only a restore from that checkpoint reads it exactly once.
    let restore_on_break = checkpointing && source.own().is_some_and(SourceInstance::acks_on_checkpoint);
    // When a source asked for a checkpoint sooner than the interval, and when
    // the last one was taken: such checkpoints come at most every 100 ms.
    let mut wanted = false;
    let mut last_taken = Instant::now();
    if checkpointing && fresh {
        // Checkpoint 1 before the first record: a crash before the first
        // interval then restores to "nothing written yet" instead of nothing.
        checkpoint.take(next_checkpoint, &last_offset, window.as_ref().map(WindowState::snapshot)).await?;
        next_checkpoint += 1;
    }
    let mut ticker = tokio::time::interval(plan.checkpoint_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;

    // Up to IN_FLIGHT source batches are evaluated at once, finishing in
    // source order: the next batch's function arguments are encoded and sent
    // while a plugin still works on the previous one.
    let mut in_flight = FuturesOrdered::new();
    let source_calls = ctx.status.calls("source");
    // A batch of columns stays columns through a rule without a window on a
    // stream without event time, and into a tumbling, hopping or count
    // window on processing time; the others take records.
    let on_columns = (oort_sql::runs_on_columns(&plan.select) && plan.event_time.is_none())
        || oort_sql::window_takes_columns(&plan.select, plan.event_time.is_some());
    let event_time_field: Vec<&str> = ctx.stream.timestamp_field().into_iter().collect();
    let evaluate = |mut batch: SourceBatch| {
        let n = batch.columns.as_ref().map_or(batch.records.len(), |c| c.num_rows()) as u64;
        ctx.status.source.batch(n, n, Duration::ZERO);
        source_calls.record(None);
        if let Some(columns) = batch.columns.take_if(|_| !on_columns) {
            // Only the columns the statement reads become record fields.
            batch.records = oort_sql::records_for(&plan.select, &columns, &event_time_field);
        }
        let (select, calls, started) = (&plan.select, &calls, Instant::now());
        async move {
            let outcome = match (&select.grouping, batch.columns) {
                (Some(g), Some(columns)) => {
                    oort_sql::prepare_window_columns(select, g, columns, calls).await.map(Output::Window)
                }
                (None, Some(columns)) => oort_sql::run_columns(select, columns, calls).await.map(Output::Columns),
                (None, None) => oort_sql::run_batch(select, batch.records, calls).await.map(Output::Records),
                (Some(g), None) if plan.event_time.is_some() && g.window.is_time() => {
                    // A row without a readable event time cannot be placed
                    // in a window: it is counted as an exception and left out.
                    let (records, unplaced) = stamp_event_time(&ctx.stream, batch.records);
                    oort_sql::prepare_window_rows(select, g, records, calls).await.map(|mut w| {
                        w.filter.input += unplaced.len() as u64;
                        unplaced.into_iter().for_each(|e| w.filter.failed(e));
                        Output::Window(w)
                    })
                }
                (Some(g), None) => {
                    oort_sql::prepare_window_rows(select, g, batch.records, calls).await.map(Output::Window)
                }
            };
            Evaluated { outcome, offset: batch.offset, state: batch.state, started }
        }
    };
    let mut out = Forward {
        ctx,
        queues: sink_queues,
        stop: ctx.stop.clone(),
        last_offset: &mut last_offset,
        window,
        calls: &calls,
        source: source.own(),
    };

    // Reads that failed in a row (the source process restarting, say).
    let mut failed_reads = 0;
    let outcome: Result<(), Failure> = 'outer: loop {
        // Every read resumes after the last offset the pipeline accepted (the
        // restored checkpoint's at first), rewinding on the process it reads
        // from, so a rewindable source neither skips nor repeats records.
        let resume = out.last_offset.clone().filter(|_| source.rewindable());
        let mut batches = match source.read_from(resume, max_batch).await {
            Ok(rx) => {
                failed_reads = 0;
                rx
            }
            Err(e) if e.is_fatal() => break Err(Failure::fatal(format!("source {}: {e}", ctx.stream.source_type()))),
            Err(e) => {
                ctx.status.source.exception(format!("reading from the last offset failed: {e}"));
                failed_reads += 1;
                if failed_reads == MAX_FAILED_READS {
                    // Persistent: the rule's restart strategy takes over.
                    break Err(Failure {
                        reason: format!("source {}: {e}", ctx.stream.source_type()),
                        recoverable: true,
                    });
                }
                tokio::select! {
                    _ = stopped(&mut stop) => break 'outer Ok(()),
                    _ = tokio::time::sleep(Duration::from_millis(50)) => continue,
                }
            }
        };
        loop {
            let window_wait = out.window_wait();
            let item = tokio::select! {
                biased;
                _ = stopped(&mut stop) => break 'outer Ok(()),
                Some(failure) = fatal_rx.recv() => break 'outer Err(failure),
                // Lazy: a rule without a window never builds the timer.
                _ = async { tokio::time::sleep(window_wait.unwrap_or_default()).await }, if window_wait.is_some() => {
                    // A window ended. The batches already taken go in first
                    // (stamped now: processing time), then the window emits.
                    while let Some(done) = in_flight.next().await {
                        if let Err(exit) = out.send(done, &mut *fatal_rx).await {
                            break 'outer exit.into();
                        }
                    }
                    if let Err(exit) = out.emit_due(&mut *fatal_rx).await {
                        break 'outer exit.into();
                    }
                    continue;
                }
                Some(done) = in_flight.next(), if !in_flight.is_empty() => {
                    if let Err(exit) = out.send(done, &mut *fatal_rx).await {
                        break 'outer exit.into();
                    }
                    continue;
                }
                _ = async {
                    if wanted {
                        tokio::time::sleep_until((last_taken + EARLY_CHECKPOINT_GAP).into()).await
                    } else {
                        ticker.tick().await;
                    }
                }, if checkpointing => {
                    // The barrier must follow every batch taken from the source.
                    while let Some(done) = in_flight.next().await {
                        if let Err(exit) = out.send(done, &mut *fatal_rx).await {
                            break 'outer exit.into();
                        }
                    }
                    let window = out.window.as_ref().map(WindowState::snapshot);
                    if let Err(f) = checkpoint.take(next_checkpoint, &*out.last_offset, window).await {
                        break 'outer Err(f);
                    }
                    next_checkpoint += 1;
                    (wanted, last_taken) = (false, Instant::now());
                    continue;
                }
                item = batches.recv(), if in_flight.len() < IN_FLIGHT => item,
            };
            match item {
                Some(Ok(mut batch)) => {
                    for e in batch.exceptions.drain(..) {
                        ctx.status.source.exception(e);
                    }
                    wanted |= batch.checkpoint_wanted;
                    if let Some(change) = batch.connection.take() {
                        ctx.status.source.upstream(&change);
                    }
                    // The source's buffer: batches read and not yet forwarded.
                    ctx.status.source.queued();
                    in_flight.push_back(evaluate(batch));
                }
                Some(Err(e)) => {
                    ctx.status.source.exception(e.to_string());
                    if e.is_fatal() {
                        break 'outer Err(Failure::fatal(format!("source {}: {e}", ctx.stream.source_type())));
                    }
                    break;
                }
                None => break,
            }
        }
        if restore_on_break {
            break 'outer Err(Failure {
                reason: format!(
                    "source {}'s read broke; it acknowledges on checkpoints, so the rule restores the last one",
                    ctx.stream.source_type()
                ),
                recoverable: true,
            });
        }
        // The read stream broke, most likely because the source process was
        // restarted. Finish the batches already taken, then read again from
        // the last offset the pipeline accepted.
        while let Some(done) = in_flight.next().await {
            if let Err(exit) = out.send(done, &mut *fatal_rx).await {
                break 'outer exit.into();
            }
        }
        tokio::select! {
            _ = stopped(&mut stop) => break 'outer Ok(()),
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
    };
    drop(in_flight);
    ctx.status.source.clear_buffer();
    outcome
}

/// Closes the sink queues and waits for every sink task to finish its batch.
async fn drain(opened: Opened) {
    let Opened { sink_queues, sink_tasks, .. } = opened;
    drop(sink_queues);
    for task in sink_tasks {
        let _ = task.await;
    }
}

/// The shortest time between two checkpoints a source asked for.
const EARLY_CHECKPOINT_GAP: Duration = Duration::from_millis(100);

/// Source batches evaluated at once (see the main loop).
const IN_FLIGHT: usize = 2;

/// Failed attempts in a row to read from the last offset (50 ms apart) before
/// the rule fails and its restart strategy takes over.
const MAX_FAILED_READS: u32 = 20;

/// A source batch after filter and projection.
pub(crate) struct Evaluated {
    pub(crate) outcome: Result<Output, CallError>,
    pub(crate) offset: Option<Value>,
    /// The source's state changes of the batch, applied once it is sent on.
    pub(crate) state: oort_host::SourceState,
    pub(crate) started: Instant,
}

/// A sink task that is gone. Under exactly-once a sink task stops on any
/// write failure, which a restore from the checkpoint cures; otherwise only
/// on a failure no restart helps.
pub(crate) fn sink_stopped(qos: u8) -> Failure {
    Failure { reason: "a sink stopped after a failed write".into(), recoverable: qos == 2 }
}

/// Takes checkpoints: a barrier through every sink, one atomic store write,
/// then the sinks' commits.
struct Checkpointer<'a> {
    ctx: &'a RunContext,
    source: &'a RuleSource,
    sinks: &'a [(String, Option<Arc<SinkInstance>>)],
    queues: &'a [mpsc::Sender<SinkMsg>],
}

impl Checkpointer<'_> {
    async fn take(&mut self, id: u64, offset: &Option<Value>, window: Option<Value>) -> Result<(), Failure> {
        let rule = self.ctx.plan.def.id.as_str();
        let started = Instant::now();
        // A sink that fails its part of a checkpoint (its process died during
        // the barrier, say) is cured by restarting the rule from the last
        // complete checkpoint, whatever the qos: nothing newer was promised.
        let sink_failure = |reason: String| Failure { reason, recoverable: true };
        // The barrier follows every batch already queued: once each sink has
        // answered it, the whole pipeline holds nothing newer than `offset`.
        let mut replies = Vec::new();
        for q in self.queues {
            let (tx, rx) = oneshot::channel();
            q.send(SinkMsg::Barrier(id, tx)).await.map_err(|_| sink_stopped(self.ctx.plan.qos))?;
            replies.push(rx);
        }
        let mut snapshot = Snapshot { id, source_offset: offset.clone(), window, ..Snapshot::default() };
        let mut failed = None;
        for ((operator, sink), reply) in self.sinks.iter().zip(replies) {
            match reply.await {
                // A memory sink has nothing to commit.
                Ok(Ok(_)) if sink.is_none() => {}
                Ok(Ok(handle)) => {
                    snapshot.sink_handles.insert(operator.clone(), handle);
                }
                Ok(Err(e)) => {
                    failed.get_or_insert(format!("{operator}: pre-commit of checkpoint {id}: {e}"));
                }
                Err(_) => {
                    failed.get_or_insert(format!("{operator} stopped during checkpoint {id}"));
                }
            }
        }
        if let Some(reason) = failed {
            self.abort(id, &snapshot.sink_handles).await;
            return Err(sink_failure(reason));
        }
        snapshot.instances = self.ctx.host.state().snapshot_rule(rule);
        let bytes = checkpoint::encode(rule, self.ctx.plan.qos, &snapshot);
        if let Err(e) = self.ctx.store.write_checkpoint(rule, id, &bytes) {
            self.abort(id, &snapshot.sink_handles).await;
            return Err(Failure::fatal(format!("rule {rule}: checkpoint {id}: {e}")));
        }
        let size = bytes.len();
        if let Some(publisher) = &self.ctx.publisher {
            match publisher.publish(rule, id, bytes).await {
                Ok(()) => {}
                Err(e @ PublishError::Fenced(_)) => {
                    // Another node restores from its own checkpoints now:
                    // nothing of this one may become visible.
                    self.abort(id, &snapshot.sink_handles).await;
                    return Err(Failure::fatal(format!("rule {rule}: checkpoint {id} not committed: {e}")));
                }
                Err(e @ PublishError::Unavailable(_)) => {
                    tracing::warn!(rule, "checkpoint {id}: {e}");
                    self.ctx.status.source.exception(format!("checkpoint {id}: {e}"));
                }
            }
        }
        for (operator, sink) in self.sinks.iter().filter_map(|(o, s)| Some((o, s.as_ref()?))) {
            let handle = snapshot.sink_handles.get(operator).cloned().unwrap_or_default();
            sink.commit(id, handle)
                .await
                .map_err(|e| sink_failure(format!("{operator}: commit of checkpoint {id}: {e}")))?;
        }
        self.ctx.status.checkpointed(id, started.elapsed(), size);
        // Now the source may let go of what the checkpoint covers (a broker's
        // messages are acknowledged). A failure here loses nothing: the
        // upstream keeps the records, and the next checkpoint covers them.
        if let Some(source) = self.source.own() {
            if let Err(e) = source.checkpointed(id, offset.clone()).await {
                tracing::warn!(rule, "source: checkpoint {id} could not be confirmed to it: {e}");
                self.ctx.status.source.exception(format!("checkpoint {id} not confirmed to the source: {e}"));
            }
        }
        Ok(())
    }

    /// Tells every sink that pre-committed checkpoint `id` that it will never
    /// be durable. Best effort: the restore that follows a failed checkpoint
    /// commits the last durable one, which discards the same output anyway.
    async fn abort(&self, id: u64, handles: &BTreeMap<String, Value>) {
        for (operator, sink) in self.sinks.iter().filter_map(|(o, s)| Some((o, s.as_ref()?))) {
            if let Some(handle) = handles.get(operator) {
                if let Err(e) = sink.abort(id, handle.clone()).await {
                    tracing::warn!(rule = %self.ctx.plan.def.id, %operator, "abort of checkpoint {id} failed: {e}");
                }
            }
        }
    }
}

/// One sink's writer and what it reports to.
struct SinkTask {
    sink: Arc<SinkInstance>,
    /// For a sink that asked for payloads: how to encode its items.
    encoder: Option<PayloadEncoder>,
    calls: Arc<CallMetrics>,
    status: Arc<RuleStatus>,
    index: usize,
    exactly_once: bool,
    fatal_tx: mpsc::Sender<Failure>,
}

/// Writes every batch to one sink. A failed write is retried until it
/// succeeds (at most once and at least once delivery), except under
/// exactly-once, where the rule restarts from its last checkpoint instead.
async fn sink_loop(task: SinkTask, mut messages: mpsc::Receiver<SinkMsg>, mut stop: watch::Receiver<bool>) {
    let SinkTask { sink, encoder, calls, status, index, exactly_once, fatal_tx } = task;
    let metrics = &status.sinks[index];
    while let Some(message) = messages.recv().await {
        let batch = match message {
            SinkMsg::Barrier(id, reply) => {
                let _ = reply.send(sink.pre_commit(id).await);
                continue;
            }
            SinkMsg::Batch(batch) => {
                metrics.dequeued();
                batch
            }
        };
        let n = batch.len() as u64;
        // Columns go on as columns to a sink that takes them.
        let columns = batch.columns.as_ref().filter(|_| encoder.is_none() && sink.takes_columns());
        // Items that cannot be encoded are exceptions of the sink and are
        // not sent; the others go as one batch.
        let payloads: Option<Vec<Vec<u8>>> = encoder.as_ref().map(|encoder| {
            encoder
                .encode(batch.records(), &batch.ends)
                .into_iter()
                .filter_map(|item| item.inspect_err(|e| metrics.exception(format!("cannot encode an item: {e}"))).ok())
                .collect()
        });
        if payloads.as_ref().is_some_and(Vec::is_empty) {
            metrics.batch(n, 0, Duration::ZERO);
            continue;
        }
        let mut delay = Duration::from_millis(50);
        // From the first attempt to the last retry: a status shows the sink
        // as stuck while its writes time out.
        let _outstanding = sink.call_watch().begin("Write");
        loop {
            let started = Instant::now();
            let written = match (&payloads, columns) {
                (Some(payloads), _) => sink.write_payloads(payloads).await,
                (None, Some(columns)) => sink.write_columns(columns).await,
                (None, None) => sink.write(batch.records()).await,
            };
            calls.record(Some(started.elapsed()));
            match written {
                Ok(written) => {
                    // eKuiper's per-item acks: a refused item is an exception
                    // of the sink, the batch goes on.
                    let mut failed = 0;
                    for e in written.item_errors.iter().filter(|e| !e.is_empty()) {
                        failed += 1;
                        metrics.exception(format!("item not delivered: {e}"));
                    }
                    // An item is a record, or (a list) every record of the batch.
                    let items = payloads.as_ref().map_or(n, |p| p.len() as u64);
                    let out = match failed {
                        0 => n,
                        _ if items == n => n - failed,
                        _ => 0,
                    };
                    metrics.batch(n, out, started.elapsed());
                    break;
                }
                Err(e) if e.is_fatal() || exactly_once => {
                    metrics.exception(e.to_string());
                    // A write that failed may have left part of the batch in
                    // the sink: only a restore from the checkpoint undoes it.
                    let _ = fatal_tx.send(Failure { reason: format!("sink: {e}"), recoverable: !e.is_fatal() }).await;
                    return;
                }
                Err(e) => {
                    metrics.exception(e.to_string());
                    tokio::select! {
                        _ = stopped(&mut stop) => return,
                        _ = tokio::time::sleep(delay) => {}
                    }
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
            }
        }
    }
}

/// Publishes every batch to a memory topic. It is delivered once it is in
/// every matching subscription's queue; a barrier has nothing to pre-commit.
async fn memory_sink_loop(
    topics: Arc<MemoryTopics>,
    topic: String,
    status: Arc<RuleStatus>,
    index: usize,
    mut messages: mpsc::Receiver<SinkMsg>,
    mut stop: watch::Receiver<bool>,
) {
    let metrics = &status.sinks[index];
    while let Some(message) = messages.recv().await {
        match message {
            SinkMsg::Barrier(_, reply) => {
                let _ = reply.send(Ok(Value::Null));
            }
            SinkMsg::Batch(batch) => {
                metrics.dequeued();
                let started = Instant::now();
                // A subscriber that never reads must not keep this rule from
                // stopping.
                tokio::select! {
                    _ = stopped(&mut stop) => return,
                    _ = topics.publish(&topic, &batch) => {}
                }
                let n = batch.len() as u64;
                metrics.batch(n, n, started.elapsed());
            }
        }
    }
}

/// Why a function call gave up.
pub(crate) enum CallError {
    /// The rule was stopped while the call was being retried.
    Stopped,
    Host(HostError),
}

/// The rule's plugin functions, one instance per call site. A call that fails
/// as a whole is retried by its instance, per the rule's restart strategy:
/// each attempt starts from the supervisor's copy of the instance's state, so
/// retrying one call site never replays another's state changes.
pub(crate) struct Calls<'a> {
    functions: &'a [Arc<FunctionInstance>],
    metrics: &'a [Arc<CallMetrics>],
    stop: watch::Receiver<bool>,
}

impl Functions for Calls<'_> {
    type Error = CallError;

    async fn call(&self, site: usize, rows: Vec<Vec<Value>>) -> Result<Vec<Cell>, CallError> {
        let mut stop = self.stop.clone();
        tokio::select! {
            _ = stopped(&mut stop) => Err(CallError::Stopped),
            result = async {
                let started = Instant::now();
                let result = self.functions[site].exec(&rows).await;
                self.metrics[site].record(Some(started.elapsed()));
                result
            } => result.map_err(CallError::Host),
        }
    }

    async fn call_columns(&self, site: usize, args: Vec<ArrayRef>, rows: usize) -> Result<ColumnAnswer, CallError> {
        let mut stop = self.stop.clone();
        tokio::select! {
            _ = stopped(&mut stop) => Err(CallError::Stopped),
            result = async {
                let started = Instant::now();
                let result = self.functions[site].exec_columns(&args, rows).await;
                self.metrics[site].record(Some(started.elapsed()));
                result
            } => match result.map_err(CallError::Host)? {
                oort_host::Answer::Column(column, errors) => Ok(ColumnAnswer::Column(column, errors)),
                oort_host::Answer::Rows(cells) => Ok(ColumnAnswer::Cells(cells)),
            },
        }
    }
}
