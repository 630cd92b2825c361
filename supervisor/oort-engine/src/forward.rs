//! The in-order end of the main loop: evaluated batches to the sinks, or into
//! a windowed rule's window and, when it ends, its groups to the sinks.

use std::sync::Arc;
use std::time::{Duration, Instant};

use oort_proto::{Record, Value};
use oort_sql::window::{GroupResult, WindowState};
use oort_sql::OpOutcome;
use tokio::sync::{mpsc, watch};

use crate::pipeline::{sink_stopped, stopped, CallError, Calls, Evaluated, Failure, RunContext, SinkBatch, SinkMsg};

/// What a source batch became: output records, or rows for the window.
pub(crate) enum Output {
    Records(oort_sql::BatchOutcome),
    Columns(oort_sql::ColumnsOutcome),
    Window(oort_sql::WindowBatch),
}

/// Why the main loop ends early: the rule was stopped, or it failed.
pub(crate) enum Exit {
    Stopped,
    Failed(Failure),
}

impl From<Exit> for Result<(), Failure> {
    fn from(exit: Exit) -> Self {
        match exit {
            Exit::Stopped => Ok(()),
            Exit::Failed(f) => Err(f),
        }
    }
}

/// Hands evaluated batches to every sink, in source order, and remembers the
/// source offset after the last one handed over. A windowed rule's batches go
/// into its window instead, and the window's results go to the sinks when it
/// ends.
pub(crate) struct Forward<'a> {
    pub(crate) ctx: &'a RunContext,
    pub(crate) queues: &'a [mpsc::Sender<SinkMsg>],
    pub(crate) stop: watch::Receiver<bool>,
    pub(crate) last_offset: &'a mut Option<Value>,
    pub(crate) window: Option<WindowState>,
    pub(crate) calls: &'a Calls<'a>,
    /// The rule's own source instance, whose state changes are applied as
    /// its batches are sent on.
    pub(crate) source: Option<&'a oort_host::SourceInstance>,
}

impl Forward<'_> {
    pub(crate) async fn send(&mut self, done: Evaluated, fatal_rx: &mut mpsc::Receiver<Failure>) -> Result<(), Exit> {
        self.ctx.status.source.dequeued();
        let output = match done.outcome {
            Ok(out) => out,
            Err(e) => return Err(call_exit(e)),
        };
        let took = done.started.elapsed();
        match output {
            Output::Records(out) => {
                self.ctx.status.filter.outcome(&out.filter, took);
                self.ctx.status.project.outcome(&out.project, took);
                self.forward(out.records, Vec::new(), fatal_rx).await?;
            }
            Output::Columns(out) => {
                self.ctx.status.filter.outcome(&out.filter, took);
                self.ctx.status.project.outcome(&out.project, took);
                match out.output {
                    oort_sql::Projected::Columns(c) if c.num_rows() > 0 => {
                        self.forward_batch(SinkBatch::of_columns(c), fatal_rx).await?
                    }
                    oort_sql::Projected::Columns(_) => {}
                    oort_sql::Projected::Records(r) => self.forward(r, Vec::new(), fatal_rx).await?,
                }
            }
            Output::Window(batch) => {
                self.ctx.status.filter.outcome(&batch.filter, took);
                // Rows go into the window: the projection's output is counted
                // when the window emits.
                let absorbed = OpOutcome { output: 0, ..batch.aggregate };
                self.ctx.status.project.outcome(&absorbed, took);
                let window = self.window.as_mut().expect("a windowed rule has a window");
                let (results, errors) = match &batch.columns {
                    Some(columns) => window.add_columns(columns, now_ms()),
                    None => window.add(batch.rows, now_ms()),
                };
                let late = window.take_late();
                if self.ctx.plan.event_time.is_some() {
                    self.ctx.status.event_time_progress(late, window.watermark());
                }
                self.emit(results, errors, fatal_rx).await?;
            }
        }
        if done.offset.is_some() {
            *self.last_offset = done.offset;
        }
        // The batch is taken: its state changes belong to the state the next
        // checkpoint stores with this offset.
        if let (Some(source), false) = (self.source, done.state.is_empty()) {
            if let Err(e) = source.accept_state(done.state) {
                return Err(Exit::Failed(Failure::fatal(format!("source: {e}"))));
            }
        }
        Ok(())
    }

    /// How long until the window's next end, for a time window holding rows.
    pub(crate) fn window_wait(&self) -> Option<Duration> {
        let end = self.window.as_ref()?.next_end()?;
        // In microseconds: a whole-millisecond wait would add up to a
        // millisecond to every window's latency on top of the timer's tick.
        Some(Duration::from_micros(end.saturating_mul(1000).saturating_sub(now_us()).max(0) as u64))
    }

    /// Emits every time window that has ended.
    pub(crate) async fn emit_due(&mut self, fatal_rx: &mut mpsc::Receiver<Failure>) -> Result<(), Exit> {
        let Some(window) = self.window.as_mut() else { return Ok(()) };
        let (results, errors) = window.due(now_ms());
        self.emit(results, errors, fatal_rx).await
    }

    /// `HAVING` and the select list over a window's groups, then the sinks.
    async fn emit(
        &mut self,
        groups: Vec<GroupResult>,
        errors: Vec<String>,
        fatal_rx: &mut mpsc::Receiver<Failure>,
    ) -> Result<(), Exit> {
        if groups.is_empty() && errors.is_empty() {
            return Ok(());
        }
        let mut outcome = OpOutcome::default();
        errors.into_iter().for_each(|e| outcome.failed(e));
        // Each window is one emission, as in eKuiper, even when several end
        // at once (a batch filling several count windows, an event-time
        // watermark jumping ahead): each is projected (and ordered) alone,
        // and the sinks get them as one batch with the windows' ends, which a
        // sink taking payloads turns into one item per window.
        let started = Instant::now();
        let mut records = Vec::new();
        let mut ends = Vec::new();
        let mut groups = groups.into_iter().peekable();
        while let Some(first) = groups.next() {
            let mut window = vec![first];
            while let Some(g) = groups.next_if(|g| g.window == window[0].window) {
                window.push(g);
            }
            records.extend(
                oort_sql::project_groups(&self.ctx.plan.select, window, self.calls, &mut outcome)
                    .await
                    .map_err(call_exit)?,
            );
            ends.push(records.len());
        }
        // Only the output is new: the rows were counted as they came in.
        outcome.input = 0;
        self.ctx.status.project.outcome(&outcome, started.elapsed());
        self.forward(records, ends, fatal_rx).await
    }

    /// Hands records to every sink queue; `ends` are where each window's
    /// results end, empty when every record is an emission of its own.
    async fn forward(
        &mut self,
        records: Vec<Record>,
        ends: Vec<usize>,
        fatal_rx: &mut mpsc::Receiver<Failure>,
    ) -> Result<(), Exit> {
        if records.is_empty() {
            return Ok(());
        }
        self.forward_batch(SinkBatch::of_records(records, ends), fatal_rx).await
    }

    /// Hands one batch to every sink queue.
    async fn forward_batch(&mut self, batch: SinkBatch, fatal_rx: &mut mpsc::Receiver<Failure>) -> Result<(), Exit> {
        let records = Arc::new(batch);
        for (q, metrics) in self.queues.iter().zip(&self.ctx.status.sinks) {
            tokio::select! {
                _ = stopped(&mut self.stop) => return Err(Exit::Stopped),
                sent = q.send(SinkMsg::Batch(records.clone())) => if sent.is_ok() {
                    metrics.queued();
                } else {
                    // A sink task ends only after reporting why.
                    let qos = self.ctx.plan.qos;
                    return Err(Exit::Failed(fatal_rx.try_recv().unwrap_or_else(|_| sink_stopped(qos))));
                },
            }
        }
        Ok(())
    }
}

pub(crate) fn call_exit(e: CallError) -> Exit {
    match e {
        CallError::Stopped => Exit::Stopped,
        CallError::Host(e) => Exit::Failed(Failure::fatal(e.to_string())),
    }
}

/// Processing time: milliseconds since the epoch.
pub(crate) fn now_ms() -> i64 {
    now_us() / 1000
}

fn now_us() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0)
}
