//! What a rule reports while it runs: its run state, operators' metrics, its
//! plugin processes and its checkpoints, collected by the pipeline and read as
//! one typed [`RuleReport`] (the API layer turns it into JSON or protobuf).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use oort_host::process::{ProcessStatus, ProcessUsage};
use oort_host::{FunctionInstance, Outstanding, ProcessView, SinkInstance, SourceInstance};

use oort_sql::RulePlan;

use crate::metrics::{CallMetrics, CheckpointMetrics, OpKind, OpMetrics, OpSnapshot};

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
    /// The newest checkpoint this run completed: its id and when (ms since the epoch).
    last_checkpoint: Mutex<Option<(u64, u64)>>,
    pub checkpoints: CheckpointMetrics,
    /// Plugin calls by operator (`source`, `fn_0_echo`, `sink_0_log`).
    calls: Mutex<BTreeMap<String, Arc<CallMetrics>>>,
    warning: Mutex<Option<String>>,
    /// Event-time windows: late rows dropped, and the watermark.
    event_time: Mutex<EventTimeReport>,
    windowed_on_event_time: bool,
    /// When the rule last started and last stopped running.
    run_times: Mutex<(Option<u64>, Option<u64>)>,
    /// Runs of this status that opened every instance, and runs that ended
    /// in a failure (with the last reason): what an upgrade watches to learn
    /// whether a rule it moved took to the new version.
    opened_runs: std::sync::atomic::AtomicU64,
    failed_runs: Mutex<(u64, Option<String>)>,
}

/// What an event-time window reports: rows dropped for arriving behind the
/// watermark, and the watermark (ms since the epoch) once a row has set it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EventTimeReport {
    pub late_rows: u64,
    pub watermark: Option<i64>,
}

/// One plugin process serving a rule, as status calls and scrapes report it.
#[derive(Debug, Clone)]
pub struct PluginProcess {
    pub operator: String,
    pub plugin: String,
    pub pid: Option<u32>,
    pub restarts: u32,
    /// Whether the process is up and handshaken (eKuiper's connection status).
    pub connected: bool,
    pub calls: Arc<CallMetrics>,
    /// Read from `/proc` when asked; `None` when there is no live process.
    pub usage: Option<ProcessUsage>,
    /// The process's status, limits, the watchdog's view of its tree and why
    /// it last failed.
    pub process: ProcessView,
    /// The oldest call in flight, once it has run for a second or timed out.
    pub outstanding: Option<Outstanding>,
    /// For a function: how many of its batches went as Arrow columns.
    pub columnar_batches: Option<u64>,
}

/// Everything a status call reports about one rule, read at once. The API
/// layer turns it into eKuiper's flat JSON or the admin service's protobuf.
#[derive(Debug, Clone)]
pub struct RuleReport {
    pub state: RunState,
    /// A condition the rule runs with but an operator should know of.
    pub warning: Option<String>,
    /// One line per instance whose call timed out and is being retried.
    pub stuck: Vec<String>,
    /// The newest completed checkpoint: its id and when (ms since the epoch).
    pub last_checkpoint: Option<(u64, u64)>,
    /// Source, filter, projection, then the sinks.
    pub operators: Vec<OpSnapshot>,
    /// Rules with event-time windows only.
    pub event_time: Option<EventTimeReport>,
    /// When the rule last started and last stopped running (ms since the
    /// epoch).
    pub last_start_ms: Option<u64>,
    pub last_stop_ms: Option<u64>,
    pub plugins: Vec<PluginProcess>,
    /// What the last plugin upgrade did to the rule when it did not simply
    /// move it: stopped because the new version refused its state, or rolled
    /// back automatically.
    pub upgrade: Option<String>,
}

#[derive(Clone)]
pub(crate) enum Instance {
    Source(Arc<SourceInstance>),
    /// A `SHARED` stream's source instance: shown in the status of every
    /// rule reading it, closed by the stream's hub, not by a rule.
    SharedSource(Arc<SourceInstance>),
    Function(Arc<FunctionInstance>),
    Sink(Arc<SinkInstance>),
}

impl RuleStatus {
    pub fn new(plan: &RulePlan) -> RuleStatus {
        RuleStatus {
            state: Mutex::new(RunState::Stopped),
            source: OpMetrics::new(format!("source_{}_0", plan.select.stream), OpKind::Source),
            filter: OpMetrics::new("op_1_filter_0".into(), OpKind::Op),
            project: OpMetrics::new("op_2_project_0".into(), OpKind::Op),
            sinks: plan
                .actions
                .iter()
                .enumerate()
                .map(|(i, a)| OpMetrics::new(format!("sink_{}_{i}_0", a.sink), OpKind::Sink))
                .collect(),
            instances: Mutex::default(),
            last_checkpoint: Mutex::default(),
            checkpoints: CheckpointMetrics::default(),
            calls: Mutex::default(),
            warning: Mutex::default(),
            event_time: Mutex::default(),
            run_times: Mutex::default(),
            opened_runs: Default::default(),
            failed_runs: Mutex::default(),
            windowed_on_event_time: plan.event_time.is_some()
                && plan.select.grouping.as_ref().is_some_and(|g| g.window.is_time()),
        }
    }

    /// Counts late rows and records the watermark of an event-time window.
    pub(crate) fn event_time_progress(&self, late_rows: u64, watermark: Option<i64>) {
        let mut e = self.event_time.lock().unwrap_or_else(|e| e.into_inner());
        e.late_rows += late_rows;
        e.watermark = watermark.or(e.watermark);
    }

    /// A condition worth an operator's attention that does not stop the rule.
    pub fn warning(&self) -> Option<String> {
        self.warning.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(crate) fn set_warning(&self, w: String) {
        *self.warning.lock().unwrap_or_else(|e| e.into_inner()) = Some(w);
    }

    /// The newest completed checkpoint: id and time in ms since the epoch.
    pub fn last_checkpoint(&self) -> Option<(u64, u64)> {
        *self.last_checkpoint.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn checkpointed(&self, id: u64, took: Duration, bytes: usize) {
        self.checkpoints.record(took, bytes);
        *self.last_checkpoint.lock().unwrap_or_else(|e| e.into_inner()) = Some((id, crate::metrics::now_ms()));
    }

    pub fn state(&self) -> RunState {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// A run opened every instance of the rule.
    pub(crate) fn opened(&self) {
        self.opened_runs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// A run ended in a failure (the rule restarts or stops).
    pub(crate) fn run_failed(&self, reason: &str) {
        let mut f = self.failed_runs.lock().unwrap_or_else(|e| e.into_inner());
        f.0 += 1;
        f.1 = Some(reason.to_string());
    }

    /// How many runs opened every instance, how many failed, and why the
    /// last failed.
    pub fn runs(&self) -> (u64, u64, Option<String>) {
        let f = self.failed_runs.lock().unwrap_or_else(|e| e.into_inner()).clone();
        (self.opened_runs.load(std::sync::atomic::Ordering::Relaxed), f.0, f.1)
    }

    pub(super) fn set_state(&self, s: RunState) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = crate::metrics::now_ms();
        let mut times = self.run_times.lock().unwrap_or_else(|e| e.into_inner());
        match (&*state, &s) {
            (RunState::Running, RunState::Running) => {}
            (_, RunState::Running) => times.0 = Some(now),
            (RunState::Running, _) => times.1 = Some(now),
            _ => {}
        }
        *state = s;
    }

    /// When the rule last started and last stopped (ms since the epoch).
    pub fn run_times(&self) -> (Option<u64>, Option<u64>) {
        *self.run_times.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn register(&self, operator: String, instance: Instance) {
        self.instances.lock().unwrap_or_else(|e| e.into_inner()).push((operator, instance));
    }

    /// The call counters of one operator's plugin instance.
    pub(crate) fn calls(&self, operator: &str) -> Arc<CallMetrics> {
        let mut calls = self.calls.lock().unwrap_or_else(|e| e.into_inner());
        calls.entry(operator.to_string()).or_default().clone()
    }

    /// Every operator's numbers: source, filter, projection, then the sinks.
    pub fn operators(&self) -> Vec<OpSnapshot> {
        let mut ops = vec![self.source.snapshot(), self.filter.snapshot(), self.project.snapshot()];
        ops.extend(self.sinks.iter().map(OpMetrics::snapshot));
        ops
    }

    /// The plugin processes serving this rule, with their calls, process
    /// status and, when `usage` is set, their memory and CPU time read from
    /// `/proc` now.
    pub fn processes(&self, usage: bool) -> Vec<PluginProcess> {
        let list = self.instances.lock().unwrap_or_else(|e| e.into_inner()).clone();
        list.into_iter()
            .map(|(operator, i)| {
                let (pid, restarts, process, outstanding) = match &i {
                    Instance::Source(s) | Instance::SharedSource(s) => {
                        (s.pid(), s.restarts(), s.process(), s.call_watch().oldest())
                    }
                    Instance::Function(f) => (f.pid(), f.restarts(), f.process(), f.outstanding()),
                    Instance::Sink(s) => (s.pid(), s.restarts(), s.process(), s.call_watch().oldest()),
                };
                PluginProcess {
                    calls: self.calls(&operator),
                    operator,
                    plugin: process.plugin.clone(),
                    pid,
                    restarts,
                    connected: matches!(process.status, ProcessStatus::Running { .. }),
                    usage: if usage { pid.and_then(ProcessUsage::of) } else { None },
                    process,
                    outstanding: outstanding.filter(|o| o.for_ms >= SLOW_CALL_MS || o.timeouts > 0),
                    columnar_batches: Some(match &i {
                        Instance::Function(f) => f.columnar_batches(),
                        Instance::Source(s) | Instance::SharedSource(s) => s.columnar_batches(),
                        Instance::Sink(s) => s.columnar_batches(),
                    }),
                }
            })
            .collect()
    }

    /// The rule's state, numbers and processes, read now.
    pub fn report(&self) -> RuleReport {
        let (last_start_ms, last_stop_ms) = self.run_times();
        RuleReport {
            state: self.state(),
            warning: self.warning(),
            stuck: self.stuck(),
            last_checkpoint: self.last_checkpoint(),
            operators: self.operators(),
            event_time: self.windowed_on_event_time.then(|| *self.event_time.lock().unwrap_or_else(|e| e.into_inner())),
            last_start_ms,
            last_stop_ms,
            plugins: self.processes(true),
            upgrade: None,
        }
    }

    pub(crate) fn take_instances(&self) -> Vec<(String, Instance)> {
        std::mem::take(&mut *self.instances.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// One line per instance whose call has timed out and is still being
    /// retried: which instance, which call, since when.
    pub fn stuck(&self) -> Vec<String> {
        let list = self.instances.lock().unwrap_or_else(|e| e.into_inner()).clone();
        list.iter()
            .filter_map(|(op, i)| {
                let (pid, plugin, o) = match i {
                    Instance::Function(f) => (f.pid(), f.process().plugin, f.outstanding()?),
                    Instance::Sink(s) => (s.pid(), s.process().plugin, s.call_watch().oldest()?),
                    Instance::Source(s) | Instance::SharedSource(s) => {
                        (s.pid(), s.process().plugin, s.call_watch().oldest()?)
                    }
                };
                (o.timeouts > 0).then(|| {
                    let pid = pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into());
                    format!(
                        "{op} (plugin {plugin}, pid {pid}) is stuck in {}: in flight since {} ({:.1} s, {} timeouts)",
                        o.call,
                        rfc3339_ms(o.since_ms),
                        o.for_ms as f64 / 1000.0,
                        o.timeouts
                    )
                })
            })
            .collect()
    }
}

/// A call in flight this long is shown in the status (`outstanding`) even
/// before it times out.
const SLOW_CALL_MS: u64 = 1000;

/// `2026-01-02T03:04:05.678Z` from ms since the epoch (UTC), without a
/// date-time dependency.
fn rfc3339_ms(ms: u64) -> String {
    let mut out = String::with_capacity(24);
    oort_proto::time::write_rfc3339(&mut out, std::time::Duration::from_millis(ms), oort_proto::time::Fraction::Millis);
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn timestamps_print_as_rfc3339() {
        assert_eq!(super::rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(super::rfc3339_ms(1_709_210_096_789), "2024-02-29T12:34:56.789Z");
    }
}
