//! A rule's numbers: per-operator counters, plugin calls, checkpoints and the
//! resource use of plugin processes.
//!
//! This is the one source of both views: `rule status` and Prometheus' `GET
//! /metrics` both read [`OpMetrics::snapshot`], [`CallMetrics`] and
//! [`oort_host::process::ProcessUsage`], and the `api` module encodes them
//! (eKuiper's flat JSON, protobuf, the OpenMetrics text). Nothing is counted
//! twice or in two places.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::metrics::histogram::Histogram;

use oort_sql::OpOutcome;

/// Counters of one operator.
#[derive(Debug, Default, Clone)]
struct Counters {
    records_in: u64,
    records_out: u64,
    exceptions: u64,
    last_exception: String,
    last_exception_time: u64,
    process_latency_us: u64,
    last_invocation: u64,
    upstream: Option<Upstream>,
}

/// A source's connection to its upstream, as it last reported it, with
/// eKuiper's times (milliseconds since the epoch; 0 for never).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    pub state: oort_host::ConnectionState,
    /// Why it was last not connected.
    pub last_disconnected_message: String,
    pub last_connected_time: u64,
    pub last_disconnected_time: u64,
}

/// Which of eKuiper's three operator families an operator belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    Source,
    Op,
    Sink,
}

impl OpKind {
    /// eKuiper's metric prefix word: `source`, `op` or `sink`.
    pub fn as_str(self) -> &'static str {
        match self {
            OpKind::Source => "source",
            OpKind::Op => "op",
            OpKind::Sink => "sink",
        }
    }
}

/// One operator's numbers at one moment.
#[derive(Debug, Clone)]
pub struct OpSnapshot {
    pub name: String,
    pub kind: OpKind,
    pub records_in: u64,
    pub records_out: u64,
    pub exceptions: u64,
    pub last_exception: String,
    pub last_exception_time: u64,
    pub process_latency_us: u64,
    pub last_invocation: u64,
    /// Batches queued in front of the operator.
    pub buffer_length: u64,
    /// For a source that reports it: its connection to its upstream.
    pub upstream: Option<Upstream>,
}

/// One operator's metrics, updated by the pipeline and read by status calls
/// and scrapes.
#[derive(Debug)]
pub struct OpMetrics {
    /// eKuiper's operator prefix, e.g. `source_demo_0`, `op_2_project_0`, `sink_log_0_0`.
    pub name: String,
    kind: OpKind,
    counters: Mutex<Counters>,
    buffer: AtomicI64,
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

impl OpMetrics {
    pub fn new(name: String, kind: OpKind) -> OpMetrics {
        OpMetrics { name, kind, counters: Mutex::default(), buffer: AtomicI64::new(0) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counters> {
        self.counters.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records one batch: how many records came in and went out, and how long it took.
    pub fn batch(&self, records_in: u64, records_out: u64, took: Duration) {
        let mut c = self.lock();
        c.records_in += records_in;
        c.records_out += records_out;
        c.process_latency_us = took.as_micros() as u64;
        c.last_invocation = now_ms();
    }

    /// Records an exception.
    pub fn exception(&self, reason: impl Into<String>) {
        let mut c = self.lock();
        c.exceptions += 1;
        c.last_exception = reason.into();
        c.last_exception_time = now_ms();
    }

    /// Records a change of a source's connection to its upstream.
    pub fn upstream(&self, change: &oort_host::UpstreamConnection) {
        use oort_host::ConnectionState;
        let mut c = self.lock();
        let now = now_ms();
        let u = c.upstream.get_or_insert(Upstream {
            state: change.state,
            last_disconnected_message: String::new(),
            last_connected_time: 0,
            last_disconnected_time: 0,
        });
        let was = u.state;
        u.state = change.state;
        if change.state == ConnectionState::Connected {
            u.last_connected_time = now;
        } else {
            if !change.message.is_empty() {
                u.last_disconnected_message = change.message.clone();
            }
            if was == ConnectionState::Connected || u.last_disconnected_time == 0 {
                u.last_disconnected_time = now;
            }
        }
    }

    /// Records a rule operator's outcome for one batch.
    pub fn outcome(&self, o: &OpOutcome, took: Duration) {
        self.batch(o.input, o.output, took);
        if o.exceptions > 0 {
            let mut c = self.lock();
            c.exceptions += o.exceptions;
            c.last_exception = o.last_exception.clone().unwrap_or_default();
            c.last_exception_time = now_ms();
        }
    }

    /// A batch was queued in front of this operator.
    pub fn queued(&self) {
        self.buffer.fetch_add(1, Ordering::Relaxed);
    }

    /// A queued batch was taken by this operator.
    pub fn dequeued(&self) {
        self.buffer.fetch_sub(1, Ordering::Relaxed);
    }

    /// Nothing is queued any more (the pipeline ended with batches in flight).
    pub fn clear_buffer(&self) {
        self.buffer.store(0, Ordering::Relaxed);
    }

    /// Records read so far.
    pub fn records_out(&self) -> u64 {
        self.lock().records_out
    }

    /// Every number of this operator, read at once.
    pub fn snapshot(&self) -> OpSnapshot {
        let c = self.lock().clone();
        OpSnapshot {
            name: self.name.clone(),
            kind: self.kind,
            records_in: c.records_in,
            records_out: c.records_out,
            exceptions: c.exceptions,
            last_exception: c.last_exception,
            last_exception_time: c.last_exception_time,
            process_latency_us: c.process_latency_us,
            last_invocation: c.last_invocation,
            buffer_length: self.buffer.load(Ordering::Relaxed).max(0) as u64,
            upstream: c.upstream,
        }
    }
}

/// Bucket bounds of call and checkpoint durations, in seconds: 100 µs to 10 s.
pub fn duration_buckets() -> impl Iterator<Item = f64> {
    [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0].into_iter()
}

/// Calls on one plugin instance: how many and how long they took.
#[derive(Debug)]
pub struct CallMetrics {
    calls: AtomicU64,
    /// Shared with every scrape (a `Histogram` clone is a handle to the same buckets).
    pub latency: Histogram,
}

impl Default for CallMetrics {
    fn default() -> Self {
        CallMetrics { calls: AtomicU64::new(0), latency: Histogram::new(duration_buckets()) }
    }
}

impl CallMetrics {
    /// Records one call; `took` is `None` for calls without a round trip of
    /// their own (a batch arriving on a source's stream).
    pub fn record(&self, took: Option<Duration>) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        if let Some(t) = took {
            self.latency.observe(t.as_secs_f64());
        }
    }

    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }
}

/// Checkpoints of one rule run: how long each took and how big the newest was.
#[derive(Debug)]
pub struct CheckpointMetrics {
    pub duration: Histogram,
    size: AtomicU64,
    count: AtomicU64,
}

impl Default for CheckpointMetrics {
    fn default() -> Self {
        CheckpointMetrics {
            duration: Histogram::new(duration_buckets()),
            size: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }
}

impl CheckpointMetrics {
    pub fn record(&self, took: Duration, bytes: usize) {
        self.duration.observe(took.as_secs_f64());
        self.size.store(bytes as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Size in bytes of the newest checkpoint.
    pub fn size(&self) -> u64 {
        self.size.load(Ordering::Relaxed)
    }

    /// Checkpoints completed.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }
}
