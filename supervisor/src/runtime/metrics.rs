//! Per-operator counters, reported in eKuiper's flat status shape.

use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value as Json};

use crate::rule::OpOutcome;

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
}

/// One operator's metrics, updated by the pipeline and read by status calls.
#[derive(Debug)]
pub struct OpMetrics {
    /// eKuiper's operator prefix, e.g. `source_demo_0`, `op_2_project_0`, `sink_log_0_0`.
    pub name: String,
    counters: Mutex<Counters>,
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

impl OpMetrics {
    pub fn new(name: String) -> OpMetrics {
        OpMetrics { name, counters: Mutex::default() }
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

    /// Records read so far.
    pub fn records_out(&self) -> u64 {
        self.lock().records_out
    }

    /// Appends this operator's metrics to a status object.
    pub fn report(&self, into: &mut Map<String, Json>) {
        let c = self.lock().clone();
        let n = &self.name;
        into.insert(format!("{n}_records_in_total"), json!(c.records_in));
        into.insert(format!("{n}_records_out_total"), json!(c.records_out));
        into.insert(format!("{n}_exceptions_total"), json!(c.exceptions));
        into.insert(format!("{n}_last_exception"), json!(c.last_exception));
        into.insert(format!("{n}_last_exception_time"), json!(c.last_exception_time));
        into.insert(format!("{n}_process_latency_us"), json!(c.process_latency_us));
        into.insert(format!("{n}_last_invocation"), json!(c.last_invocation));
    }
}
