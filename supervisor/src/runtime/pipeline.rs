//! One running rule: source → filter → projection (plugin functions in
//! batches) → every sink.
//!
//! Backpressure is end to end: every hop is a bounded channel or a stream
//! under HTTP/2 flow control, so a slow sink slows the source and memory stays
//! bounded by a few batches per hop.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use oort_proto::{Record, Value};
use tokio::sync::{mpsc, watch};

use super::metrics::OpMetrics;
use crate::host::{FunctionInstance, Host, HostError, SinkInstance, SourceInstance};
use crate::process::ProcessError;
use crate::rule::{self, Cell, Functions, RulePlan, StreamDef};

/// Batches queued per sink before the pipeline waits for it.
const SINK_QUEUE: usize = 2;

/// A rule's run state, as reported by status calls.
#[derive(Debug, Clone, PartialEq)]
pub enum RunState {
    Running,
    Stopped,
    /// The rule stopped on its own; the reason says why.
    Failed(String),
}

/// Everything a status call reports about one rule, shared between the
/// pipeline that updates it and the API that reads it.
pub struct RuleStatus {
    state: Mutex<RunState>,
    pub source: OpMetrics,
    pub filter: OpMetrics,
    pub project: OpMetrics,
    pub sinks: Vec<OpMetrics>,
    instances: Mutex<Vec<(String, Instance)>>,
}

#[derive(Clone)]
enum Instance {
    Source(Arc<SourceInstance>),
    Function(Arc<FunctionInstance>),
    Sink(Arc<SinkInstance>),
}

impl RuleStatus {
    pub fn new(plan: &RulePlan) -> RuleStatus {
        RuleStatus {
            state: Mutex::new(RunState::Stopped),
            source: OpMetrics::new(format!("source_{}_0", plan.select.stream)),
            filter: OpMetrics::new("op_1_filter_0".into()),
            project: OpMetrics::new("op_2_project_0".into()),
            sinks: plan
                .actions
                .iter()
                .enumerate()
                .map(|(i, a)| OpMetrics::new(format!("sink_{}_{i}_0", a.sink)))
                .collect(),
            instances: Mutex::default(),
        }
    }

    pub fn state(&self) -> RunState {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(super) fn set_state(&self, s: RunState) {
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = s;
    }

    fn register(&self, operator: String, instance: Instance) {
        self.instances.lock().unwrap_or_else(|e| e.into_inner()).push((operator, instance));
    }

    fn take_instances(&self) -> Vec<(String, Instance)> {
        std::mem::take(&mut *self.instances.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// The plugin processes serving this rule: operator, pid and restarts.
    pub fn plugins(&self) -> Vec<serde_json::Value> {
        let list = self.instances.lock().unwrap_or_else(|e| e.into_inner()).clone();
        list.iter()
            .map(|(op, i)| {
                let (pid, restarts) = match i {
                    Instance::Source(s) => (s.pid(), s.restarts()),
                    Instance::Function(f) => (f.pid(), f.restarts()),
                    Instance::Sink(s) => (s.pid(), s.restarts()),
                };
                serde_json::json!({ "operator": op, "pid": pid, "restarts": restarts })
            })
            .collect()
    }
}

/// What a pipeline runs with.
pub(super) struct RunContext {
    pub plan: RulePlan,
    pub stream: StreamDef,
    pub source_props: BTreeMap<String, Value>,
    pub host: Arc<Host>,
    pub status: Arc<RuleStatus>,
    pub stop: watch::Receiver<bool>,
}

/// Runs the rule until `stop` fires (Ok) or it fails (Err with the reason).
/// Every instance it opened is closed before it returns.
pub(super) async fn run(ctx: RunContext) -> Result<(), String> {
    let result = run_inner(&ctx).await;
    for (_, instance) in ctx.status.take_instances() {
        match instance {
            Instance::Source(s) => ctx.host.close_source(&s).await,
            Instance::Function(f) => ctx.host.close_function(&f).await,
            Instance::Sink(s) => ctx.host.close_sink(&s).await,
        }
    }
    result
}

fn fatal(e: &HostError) -> bool {
    matches!(e, HostError::Process(ProcessError::CrashLoop { .. } | ProcessError::Stopped { .. }))
}

async fn run_inner(ctx: &RunContext) -> Result<(), String> {
    let plan = &ctx.plan;
    let rule = plan.def.id.as_str();
    let restart = plan.restart;
    let props = ctx.source_props.clone().into_iter().collect();
    let source = ctx
        .host
        .open_source(rule, ctx.stream.source_type(), ctx.stream.datasource(), props, restart)
        .await
        .map_err(|e| format!("cannot open source {}: {e}", ctx.stream.source_type()))?;
    let source = Arc::new(source);
    ctx.status.register("source".into(), Instance::Source(source.clone()));

    let mut functions = Vec::new();
    for (site, call) in plan.select.calls.iter().enumerate() {
        let operator = format!("fn_{site}_{}", call.function);
        let f = ctx
            .host
            .open_function(rule, &operator, &call.function, restart)
            .await
            .map_err(|e| format!("cannot open function {}: {e}", call.function))?;
        let f = Arc::new(f);
        ctx.status.register(operator, Instance::Function(f.clone()));
        functions.push(f);
    }

    let (fatal_tx, mut fatal_rx) = mpsc::channel::<String>(1);
    let mut sink_queues = Vec::new();
    let mut sink_tasks = Vec::new();
    for (i, action) in plan.actions.iter().enumerate() {
        let operator = format!("sink_{i}_{}", action.sink);
        let props = action.props.clone().into_iter().collect();
        let sink = ctx
            .host
            .open_sink(rule, &operator, &action.sink, props, restart)
            .await
            .map_err(|e| format!("cannot open sink {}: {e}", action.sink))?;
        let sink = Arc::new(sink);
        ctx.status.register(operator, Instance::Sink(sink.clone()));
        let (tx, rx) = mpsc::channel::<Arc<Vec<Record>>>(SINK_QUEUE);
        sink_queues.push(tx);
        let status = ctx.status.clone();
        sink_tasks.push(tokio::spawn(sink_loop(sink, rx, status, i, fatal_tx.clone(), ctx.stop.clone())));
    }
    drop(fatal_tx);

    let calls = Calls(&functions);
    let max_batch = plan.buffer_length;
    let mut stop = ctx.stop.clone();
    let mut last_offset: Option<Value> = None;
    let outcome: Result<(), String> = 'outer: loop {
        let mut batches = match source.read(max_batch).await {
            Ok(rx) => rx,
            Err(e) => break Err(format!("source {}: {e}", ctx.stream.source_type())),
        };
        loop {
            let item = tokio::select! {
                _ = stop.wait_for(|s| *s) => break 'outer Ok(()),
                Some(reason) = fatal_rx.recv() => break 'outer Err(reason),
                item = batches.recv() => item,
            };
            match item {
                Some(Ok(batch)) => {
                    let started = Instant::now();
                    let n = batch.records.len() as u64;
                    ctx.status.source.batch(n, n, Duration::ZERO);
                    let out = match process(plan, batch.records, &calls, &ctx.status, &mut stop).await {
                        Ok(Some(out)) => out,
                        Ok(None) => break 'outer Ok(()),
                        Err(reason) => break 'outer Err(reason),
                    };
                    let took = started.elapsed();
                    ctx.status.filter.outcome(&out.filter, took);
                    ctx.status.project.outcome(&out.project, took);
                    if !out.records.is_empty() {
                        let records = Arc::new(out.records);
                        for q in &sink_queues {
                            tokio::select! {
                                _ = stop.wait_for(|s| *s) => break 'outer Ok(()),
                                sent = q.send(records.clone()) => if sent.is_err() {
                                    break 'outer Err("a sink stopped".into());
                                },
                            }
                        }
                    }
                    if batch.offset.is_some() {
                        last_offset = batch.offset;
                    }
                }
                Some(Err(e)) => {
                    ctx.status.source.exception(e.to_string());
                    if fatal(&e) {
                        break 'outer Err(format!("source {}: {e}", ctx.stream.source_type()));
                    }
                    break;
                }
                None => break,
            }
        }
        // The read stream broke, most likely because the source process was
        // restarted. Resume after the last offset the pipeline accepted, so a
        // rewindable source neither skips nor repeats records.
        tokio::select! {
            _ = stop.wait_for(|s| *s) => break 'outer Ok(()),
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
        if let Some(offset) = &last_offset {
            if let Err(e) = source.rewind(offset.clone()).await {
                ctx.status.source.exception(format!("rewind after a restart failed: {e}"));
            }
        }
    };
    drop(sink_queues);
    for task in sink_tasks {
        let _ = task.await;
    }
    outcome
}

/// Runs one batch through filter and projection. Plugin calls that fail as a
/// whole (a crash mid-call, a timeout) are retried per the rule's restart
/// strategy; a crash loop fails the rule. `Ok(None)`: the rule was stopped.
async fn process(
    plan: &RulePlan,
    records: Vec<Record>,
    calls: &Calls<'_>,
    status: &RuleStatus,
    stop: &mut watch::Receiver<bool>,
) -> Result<Option<rule::BatchOutcome>, String> {
    if plan.select.calls.is_empty() {
        return match rule::run_batch(&plan.select, records, calls).await {
            Ok(out) => Ok(Some(out)),
            Err(e) => Err(e.to_string()),
        };
    }
    let mut attempt = 0;
    loop {
        match rule::run_batch(&plan.select, records.clone(), calls).await {
            Ok(out) => return Ok(Some(out)),
            Err(e) if fatal(&e) || attempt >= plan.restart.attempts => return Err(e.to_string()),
            Err(e) => {
                status.project.exception(e.to_string());
                let delay = plan.restart.delay_for(attempt);
                attempt += 1;
                tokio::select! {
                    _ = stop.wait_for(|s| *s) => return Ok(None),
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}

/// Writes every batch to one sink, retrying a failed write until it succeeds,
/// the rule stops, or the sink's process is given up on.
async fn sink_loop(
    sink: Arc<SinkInstance>,
    mut batches: mpsc::Receiver<Arc<Vec<Record>>>,
    status: Arc<RuleStatus>,
    index: usize,
    fatal_tx: mpsc::Sender<String>,
    mut stop: watch::Receiver<bool>,
) {
    let metrics = &status.sinks[index];
    while let Some(records) = batches.recv().await {
        let n = records.len() as u64;
        let mut delay = Duration::from_millis(50);
        loop {
            let started = Instant::now();
            match sink.write(records.as_ref().clone()).await {
                Ok(()) => {
                    metrics.batch(n, n, started.elapsed());
                    break;
                }
                Err(e) if fatal(&e) => {
                    metrics.exception(e.to_string());
                    let _ = fatal_tx.send(format!("sink: {e}")).await;
                    return;
                }
                Err(e) => {
                    metrics.exception(e.to_string());
                    tokio::select! {
                        _ = stop.wait_for(|s| *s) => return,
                        _ = tokio::time::sleep(delay) => {}
                    }
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
            }
        }
    }
}

/// The rule's plugin functions, one instance per call site.
struct Calls<'a>(&'a [Arc<FunctionInstance>]);

impl Functions for Calls<'_> {
    type Error = HostError;

    async fn call(&self, site: usize, rows: Vec<Vec<Value>>) -> Result<Vec<Cell>, HostError> {
        self.0[site].exec(rows).await
    }
}
