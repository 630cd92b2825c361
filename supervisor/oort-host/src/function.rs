//! An open function instance: batches of argument rows in, results out,
//! retried as a whole per the rule's restart strategy.

use super::*;
use oort_proto::columns::ArrayRef;

/// The smallest batch sent as Arrow columns. An Arrow record-batch message
/// carries a ~200-byte header and 64-byte-aligned buffers, so below a few
/// dozen rows the row messages are smaller and as fast (BENCHMARKS.md, table
/// a: even at 16 rows, Arrow gains nothing; at 256 it is 1.4× faster).
pub const COLUMNS_FROM_ROWS: usize = 64;

/// Batches below this many rows are answered within microseconds: their
/// caller looks for the answer once before it parks (`framed.rs`).
const QUICK_ROWS: usize = 16;

/// The result of one row of a function batch.
pub type RowOutcome = Result<Value, String>;

/// A function's answer to a batch of argument columns.
#[derive(Debug)]
pub enum Answer {
    /// One result column (the plugin answered in columns), with the rows
    /// that failed and why.
    Column(ArrayRef, Vec<(usize, String)>),
    /// One outcome per row (the plugin answered in rows).
    Rows(Vec<RowOutcome>),
}

/// A batch's arguments: rows, or the columns of a rule on columns.
#[derive(Clone, Copy)]
pub(super) enum Args<'a> {
    Rows(&'a [Vec<Value>]),
    Columns(&'a [ArrayRef], usize),
}

/// What a function plugin says about one call before a rule runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validation {
    /// The plugin's reason to refuse the arguments, if it refuses them.
    pub problem: Option<String>,
    /// Whether the function aggregates a group's rows (its `Describe` says so).
    pub is_aggregate: bool,
}

/// An open function instance: batches of argument rows in, results out.
pub struct FunctionInstance {
    pub(super) id: String,
    pub(super) symbol: String,
    pub(super) is_aggregate: bool,
    pub(super) plugin: String,
    pub(super) entry: Arc<Entry>,
    pub(super) state: Arc<StateRegistry>,
    pub(super) timeouts: Timeouts,
    pub(super) stream: BatchStream<oort_proto::wire::EncodedBatch, pb::ExecResult>,
    /// The framed path, used instead of `stream` with a process that offers
    /// it, unless the host is set to gRPC only (then `None`). Both number
    /// their batches from `stream.seq`.
    pub(super) framed: Option<framed::FramedStream>,
    /// How many answered batches went over the framed path.
    pub(super) framed_batches: AtomicU64,
    /// Whether batches may go as Arrow columns (the host's data encoding);
    /// they do when the serving process also lists Arrow in `Describe`.
    pub(super) columns: bool,
    /// How many answered batches went as Arrow columns.
    pub(super) columnar_batches: AtomicU64,
    pub(super) turns: Turns,
    /// How often, and after which delays, a failed batch is retried.
    pub(super) retries: RestartStrategy,
    pub(super) watch: CallWatch,
}

impl FunctionInstance {
    /// The instance id, which is also its state scope.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// How often its process was restarted after a crash.
    pub fn restarts(&self) -> u32 {
        self.entry.process.restarts()
    }

    /// The function's name as the plugin exports it.
    pub fn symbol(&self) -> &str {
        &self.symbol
    }

    /// Whether the plugin's `Describe` calls the function an aggregate: its
    /// arguments are then lists, one per group of a window.
    pub fn is_aggregate(&self) -> bool {
        self.is_aggregate
    }

    /// How many of its batches the plugin answered after they went as Arrow
    /// columns (the others went as rows), retries included.
    pub fn columnar_batches(&self) -> u64 {
        self.columnar_batches.load(Ordering::Relaxed)
    }

    /// How many of its batches were answered over the plugin's framed Exec
    /// path (the others went over gRPC), retries included.
    pub fn framed_batches(&self) -> u64 {
        self.framed_batches.load(Ordering::Relaxed)
    }

    /// The oldest batch call in flight, retries included.
    pub fn outstanding(&self) -> Option<Outstanding> {
        self.watch.oldest()
    }

    /// The serving process's status, limits and resource use.
    pub fn process(&self) -> ProcessView {
        ProcessView::of(&self.entry)
    }

    /// The pid of the process serving it right now.
    pub fn pid(&self) -> Option<u32> {
        self.entry.process.pid()
    }

    /// Runs one batch. A batch that fails as a whole (the process crashed, the
    /// stream broke, the call timed out) is retried after the instance is
    /// reopened with the supervisor's copy of its state: whatever the failed
    /// attempt changed in the plugin's resident state is discarded, so nothing
    /// is counted twice. The first retry follows at once, the others after the
    /// delays of the instance's restart strategy, up to its `attempts`; a
    /// crash loop or a stopped process ends the call at once.
    ///
    /// Calls may overlap (the rule pipeline keeps two batches in flight): they
    /// go out, and see the instance's state, in the order they were made. So
    /// that a failure cannot reorder them, a call opens a new stream, and a
    /// failed call recovers, only once every earlier call has finished; until
    /// then later calls wait instead of overtaking on the new stream.
    pub async fn exec(&self, rows: &[Vec<Value>]) -> Result<Vec<RowOutcome>, HostError> {
        match self.exec_args(Args::Rows(rows)).await? {
            Answer::Rows(outcomes) => Ok(outcomes),
            Answer::Column(..) => unreachable!("row batches are answered in rows"),
        }
    }

    /// Runs one batch of argument columns of `rows` rows each, as
    /// [`FunctionInstance::exec`] runs rows: the arrays go to the plugin as
    /// they are when it takes columns, and its result column comes back as
    /// it was sent.
    pub async fn exec_columns(&self, columns: &[ArrayRef], rows: usize) -> Result<Answer, HostError> {
        self.exec_args(Args::Columns(columns, rows)).await
    }

    async fn exec_args(&self, args: Args<'_>) -> Result<Answer, HostError> {
        let outstanding = self.watch.begin("Exec");
        // A process that died up to a second before the call began may be
        // why it fails: its socket is gone before its monitor notices.
        let now = tokio::time::Instant::from_std(outstanding.started);
        let since = now.checked_sub(std::time::Duration::from_secs(1)).unwrap_or(now);
        let turn = self.turns.take();
        let first = match self.exec_once(args, false).await {
            Ok(Some(cells)) => Ok(cells),
            Ok(None) => {
                turn.wait_for_earlier().await;
                self.exec_opening(args).await
            }
            Err(e) => Err(e),
        };
        let mut last = match first {
            Err(e @ (HostError::Call { .. } | HostError::Timeout { .. } | HostError::Protocol { .. })) => e,
            other => return other,
        };
        let attempts = self.retries.attempts.max(1);
        if matches!(last, HostError::Timeout { .. }) {
            note_timeout(&self.watch, &self.plugin, &self.id, &last, &format!("up to {attempts} more times"));
        }
        turn.wait_for_earlier().await;
        for attempt in 0..attempts {
            if attempt > 0 {
                tokio::time::sleep(self.retries.delay_for(attempt - 1)).await;
            }
            tracing::debug!(plugin = %self.plugin, instance = %self.id, attempt, "retrying a failed batch: {last}");
            let result = match self.resync().await {
                Ok(()) => self.exec_opening(args).await,
                Err(e) => Err(e),
            };
            last = match result {
                Err(e @ (HostError::Call { .. } | HostError::Timeout { .. } | HostError::Protocol { .. })) => e,
                other => return other,
            };
            if matches!(last, HostError::Timeout { .. }) {
                note_timeout(
                    &self.watch,
                    &self.plugin,
                    &self.id,
                    &last,
                    &format!("up to {} more times", attempts - attempt - 1),
                );
            }
        }
        // When the process died under the call (a crash, a limit), its
        // monitor says why, which beats "connection refused"; it may need a
        // moment to notice. A process that gave up is the explanation
        // whenever it died.
        if let Some(failure) = self.entry.process.ended_since(since, std::time::Duration::from_secs(1)).await? {
            return Err(HostError::Call {
                plugin: self.plugin.clone(),
                call: "Exec",
                message: format!("{last}; the plugin process ended: {failure}"),
            });
        }
        Err(last)
    }

    /// Closes and reopens the instance on its (possibly restarted) process,
    /// handing it the supervisor's copy of its state.
    pub async fn resync(&self) -> Result<(), HostError> {
        self.reset_transport().await;
        let live = self.entry.process.live().await?;
        let open = lock(&self.entry.instances).get(&self.id).cloned();
        let Some(mut open) = open else {
            return Err(HostError::Call {
                plugin: self.plugin.clone(),
                call: "Open",
                message: "the instance is closed".into(),
            });
        };
        // The failed attempt's writes through the State service go with it;
        // the retry gets a new seq, so late writes tagged with an old one are refused.
        self.state.discard_staged(&self.id, Some(self.stream.seq.load(Ordering::Relaxed)));
        // The process is the one the instance opened on, or a restart of it:
        // the state version is already the process's.
        set_state(&mut open, self.state.entries(&self.id), live.describe.state_version);
        let mut client = pb::function_client::FunctionClient::new(live.channel.clone());
        let close = pb::CloseRequest { instance_id: self.id.clone() };
        // The restart hook may already have reopened it; a missing instance is fine.
        let _ = call(&self.plugin, "Close", self.timeouts, client.close(close)).await;
        open_on(&live, &open, self.timeouts, &self.plugin).await.map(|_| ())
    }

    /// Ends the open stream or framed connection, if any.
    pub(super) async fn reset_transport(&self) {
        self.stream.reset().await;
        if let Some(framed) = &self.framed {
            framed.reset().await;
        }
    }

    /// One attempt; `None` when `may_open` is false and no stream is open.
    /// Encoding the borrowed rows is the one copy an attempt needs; a retry
    /// encodes again instead of keeping a second copy around.
    pub(super) async fn exec_once(&self, args: Args<'_>, may_open: bool) -> Result<Option<Answer>, HostError> {
        use oort_proto::columns;
        use oort_proto::wire::BatchBody;
        let live = self.entry.process.live().await?;
        // Encoded here, in the caller's task and outside the stream's lock,
        // straight from the borrowed rows; the sequence number (and, for
        // columns, the schema when the stream has not seen it) goes last.
        let takes_columns = self.columns && live.describe.encodings.contains(&(pb::Encoding::ArrowIpc as i32));
        let decoded;
        let (n, rows, batch) = match args {
            Args::Rows(rows) => {
                let n = rows.len();
                (n, rows, if takes_columns && n >= COLUMNS_FROM_ROWS { columns::args_batch(rows) } else { None })
            }
            Args::Columns(arrays, n) => {
                let unreadable = |e: columns::ColumnError| HostError::Protocol {
                    plugin: self.plugin.clone(),
                    reason: format!("cannot encode the argument columns: {e}"),
                };
                let batch = columns::arguments(arrays, n).map_err(unreadable)?;
                if takes_columns && arrays.iter().all(|a| columns::sendable(a.data_type())) {
                    (n, &[][..], Some(batch))
                } else {
                    // Rows for a plugin that takes no columns; columns of
                    // the types the protocol sends for one that does.
                    decoded = columns::rows_of(&batch).map_err(unreadable)?;
                    let batch = if takes_columns { columns::args_batch(&decoded) } else { None };
                    (n, &decoded[..], batch)
                }
            }
        };
        let columnar = batch.is_some();
        // The arrays go once they are encoded: the call keeps only its bytes.
        let (body, schema) = match batch {
            Some(batch) => {
                let message = columns::batch_message(&batch).map_err(|e| HostError::Protocol {
                    plugin: self.plugin.clone(),
                    reason: format!("cannot encode the arguments as Arrow: {e}"),
                })?;
                (BatchBody::exec_columns(&self.id, message), Some(batch.schema()))
            }
            None => (BatchBody::exec(&self.id, rows), None),
        };
        let request =
            |seq, sent: &mut oort_proto::columns::SchemaSent| match schema.and_then(|s| sent.message_if_new(&s)) {
                Some(message) => body.with_schema(&message).with_seq(seq),
                None => body.with_seq(seq),
            };
        let result = match (&self.framed, &live.framed) {
            (Some(framed), Some(socket)) => {
                let result =
                    framed.round_trip(&live, socket, &self.stream.seq, may_open, n < QUICK_ROWS, request).await?;
                if result.is_some() {
                    self.framed_batches.fetch_add(1, Ordering::Relaxed);
                }
                result
            }
            _ => {
                self.stream
                    .round_trip(&live, may_open, request, |channel, input| {
                        oort_proto::wire::exec_stream(channel, input, 64 << 20)
                    })
                    .await?
            }
        };
        let Some(mut result) = result else { return Ok(None) };
        if columnar {
            self.columnar_batches.fetch_add(1, Ordering::Relaxed);
        }
        let protocol = |reason: String| HostError::Protocol { plugin: self.plugin.clone(), reason };
        let answer = if result.arrow.is_empty() {
            if result.results.len() != n {
                return Err(protocol(format!("answered a batch of {n} rows with {} results", result.results.len())));
            }
            None
        } else if matches!(args, Args::Columns(..)) {
            let (column, errors) = result_array(&result, n).map_err(protocol)?;
            Some(Answer::Column(column, errors))
        } else {
            Some(Answer::Rows(result_column(&result, n).map_err(protocol)?))
        };
        self.state
            .accept(&self.id, Some(result.seq), std::mem::take(&mut result.mutations))
            .map_err(|e| protocol(e.to_string()))?;
        if let Some(answer) = answer {
            return Ok(Some(answer));
        }
        Ok(Some(Answer::Rows(
            result
                .results
                .into_iter()
                .map(|r| match r.outcome {
                    Some(pb::row_result::Outcome::Value(v)) => Ok(v.into()),
                    Some(pb::row_result::Outcome::Error(e)) => Err(e),
                    None => Ok(Value::Null),
                })
                .collect(),
        )))
    }

    /// An attempt that may open a stream, so it always has an answer.
    pub(super) async fn exec_opening(&self, args: Args<'_>) -> Result<Answer, HostError> {
        self.exec_once(args, true).await?.ok_or_else(|| HostError::Call {
            plugin: self.plugin.clone(),
            call: "Exec",
            message: "no stream".into(),
        })
    }
}

/// The outcomes of a columnar answer to a batch of `n` rows: its one result
/// column, with the rows it lists as failed.
fn result_column(result: &pb::ExecResult, n: usize) -> Result<Vec<RowOutcome>, String> {
    let (column, errors) = result_array(result, n)?;
    let values = oort_proto::columns::values_of(column.as_ref())
        .map_err(|e| format!("answered with an unreadable result column: {e}"))?;
    let mut outcomes: Vec<RowOutcome> = values.into_iter().map(Ok).collect();
    for (row, message) in errors {
        outcomes[row] = Err(message);
    }
    Ok(outcomes)
}

/// A columnar answer to a batch of `n` rows, checked: its one result column
/// (of a type with values) and the rows it lists as failed.
fn result_array(result: &pb::ExecResult, n: usize) -> Result<(ArrayRef, Vec<(usize, String)>), String> {
    let batch = oort_proto::columns::decode_with_schema(&result.arrow_schema, &result.arrow)
        .map_err(|e| format!("answered with an unreadable Arrow batch: {e}"))?;
    if batch.num_columns() != 1 {
        return Err(format!("answered with {} Arrow columns instead of one", batch.num_columns()));
    }
    if batch.num_rows() != n {
        return Err(format!("answered a batch of {n} rows with {} results", batch.num_rows()));
    }
    oort_proto::columns::check_fields(&batch.schema())
        .map_err(|e| format!("answered with an unreadable result column: {e}"))?;
    let mut errors = Vec::with_capacity(result.errors.len());
    for error in &result.errors {
        let row = error.row as usize;
        if row >= n {
            return Err(format!("reported an error for row {row} of a batch of {n} rows"));
        }
        errors.push((row, error.message.clone()));
    }
    Ok((batch.column(0).clone(), errors))
}

/// Gives a columnar answer that came without its schema the schema its
/// stream sent last, and remembers a new one.
pub(super) fn carry_result_schema(result: &mut pb::ExecResult, last: &mut prost::bytes::Bytes) {
    if !result.arrow_schema.is_empty() {
        *last = result.arrow_schema.clone();
    } else if !result.arrow.is_empty() {
        result.arrow_schema = last.clone();
    }
}

#[cfg(test)]
mod tests {
    //! What the host makes of a plugin's columnar answer: the values, the
    //! rows it says failed, and a clear protocol error for every lie.

    use super::*;
    use oort_proto::columns::{self, arrow_array, ArrayRef};

    fn answer(batch: &columns::RecordBatch, errors: &[(u32, &str)]) -> pb::ExecResult {
        pb::ExecResult {
            arrow_schema: columns::schema_message(&batch.schema()),
            arrow: columns::batch_message(batch).unwrap(),
            errors: errors.iter().map(|(row, m)| pb::RowError { row: *row, message: m.to_string() }).collect(),
            ..Default::default()
        }
    }

    fn ints(values: &[Option<i64>]) -> columns::RecordBatch {
        let array: ArrayRef = Arc::new(arrow_array::Int64Array::from(values.to_vec()));
        columns::single_column("result", array).unwrap()
    }

    #[test]
    fn a_result_column_with_failed_rows_becomes_outcomes() {
        let result = answer(&ints(&[Some(1), None, Some(3)]), &[(1, "no")]);
        assert_eq!(result_column(&result, 3).unwrap(), vec![Ok(Value::Int(1)), Err("no".into()), Ok(Value::Int(3))]);
    }

    #[test]
    fn lying_columnar_answers_are_protocol_errors() {
        let short = answer(&ints(&[Some(1)]), &[]);
        assert_eq!(result_column(&short, 2).unwrap_err(), "answered a batch of 2 rows with 1 results");
        let stray = answer(&ints(&[Some(1)]), &[(5, "x")]);
        assert_eq!(result_column(&stray, 1).unwrap_err(), "reported an error for row 5 of a batch of 1 rows");
        let two = columns::args_batch(&[vec![Value::Int(1), Value::Int(2)]]).unwrap();
        assert_eq!(result_column(&answer(&two, &[]), 1).unwrap_err(), "answered with 2 Arrow columns instead of one");
        let mut garbage = answer(&ints(&[Some(1)]), &[]);
        garbage.arrow = prost::bytes::Bytes::from_static(b"not arrow at all");
        let e = result_column(&garbage, 1).unwrap_err();
        assert!(e.starts_with("answered with an unreadable Arrow batch: undecodable Arrow IPC message"), "{e}");
        let mut no_schema = answer(&ints(&[Some(1)]), &[]);
        no_schema.arrow_schema = prost::bytes::Bytes::new();
        let e = result_column(&no_schema, 1).unwrap_err();
        assert!(e.contains("before any Arrow schema"), "{e}");
        let dates: ArrayRef = Arc::new(arrow_array::Date32Array::from(vec![1]));
        let e = result_column(&answer(&columns::single_column("result", dates).unwrap(), &[]), 1).unwrap_err();
        assert!(e.contains("Arrow type Date32, which has no Oort value"), "{e}");
    }

    #[test]
    fn an_answer_without_its_schema_gets_the_one_its_stream_sent() {
        let first = answer(&ints(&[Some(1)]), &[]);
        let mut last = prost::bytes::Bytes::new();
        let mut a = first.clone();
        carry_result_schema(&mut a, &mut last);
        assert_eq!(last, first.arrow_schema);
        let mut b = pb::ExecResult { arrow: first.arrow.clone(), ..Default::default() };
        carry_result_schema(&mut b, &mut last);
        assert_eq!(result_column(&b, 1).unwrap(), vec![Ok(Value::Int(1))]);
    }
}
