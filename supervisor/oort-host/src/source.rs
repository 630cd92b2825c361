//! An open source instance: a stream of batches, a rewind, and a health
//! probe for a stream that goes quiet.

use super::*;

/// One batch from a source.
#[derive(Debug)]
pub struct SourceBatch {
    /// The records, unless they came as columns.
    pub records: Vec<Record>,
    /// The records as Arrow columns (one per field), when the source sent
    /// them so; `records` is then empty.
    pub columns: Option<oort_proto::columns::RecordBatch>,
    pub offset: Option<Value>,
    /// Problems the source went past; they count as its exceptions.
    pub exceptions: Vec<String>,
    /// The source asks for a checkpoint soon (it holds acknowledgements).
    pub checkpoint_wanted: bool,
    /// The source's connection to its upstream, when it reported a change.
    pub connection: Option<UpstreamConnection>,
    /// The instance's state changes made while reading this batch: applied
    /// (`SourceInstance::accept_state`) only once the rule has taken the
    /// batch, so that a checkpoint's state matches its offset.
    pub state: SourceState,
}

/// A source batch's state changes, checked but not yet applied.
#[derive(Debug, Default, Clone)]
pub struct SourceState(Vec<pb::StateMutation>);

impl SourceState {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A source's connection to its upstream (a broker, a server), as it
/// reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamConnection {
    pub state: ConnectionState,
    /// Why it is not connected; empty when connected.
    pub message: String,
}

/// eKuiper's three connection states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionState {
    Connected,
    Connecting,
    Disconnected,
}

impl UpstreamConnection {
    /// The state a source reported; `None` for an unspecified one.
    fn of(c: pb::Connection) -> Option<UpstreamConnection> {
        let state = match pb::connection::State::try_from(c.state).ok()? {
            pb::connection::State::Connected => ConnectionState::Connected,
            pb::connection::State::Connecting => ConnectionState::Connecting,
            pb::connection::State::Disconnected => ConnectionState::Disconnected,
            pb::connection::State::Unspecified => return None,
        };
        Some(UpstreamConnection { state, message: c.message })
    }
}

/// An open source instance.
pub struct SourceInstance {
    pub(super) id: String,
    pub(super) plugin: String,
    pub(super) entry: Arc<Entry>,
    pub(super) state: Arc<StateRegistry>,
    pub(super) timeouts: Timeouts,
    pub(super) rewindable: bool,
    /// The source acknowledges its upstream only on `Checkpointed` (and the
    /// rule checkpoints).
    pub(super) acks_on_checkpoint: bool,
    /// Set once the plugin answered `Checkpointed` with UNIMPLEMENTED.
    pub(super) checkpointed_unsupported: Arc<AtomicBool>,
    /// A `Read` whose process stopped answering health checks.
    pub(super) watch: Arc<CallWatch>,
    /// Whether batches may come as Arrow columns (the host's data encoding);
    /// they do when the serving process lists Arrow in `Describe` and sends them.
    pub(super) columns: bool,
    /// How many batches came as Arrow columns.
    pub(super) columnar_batches: Arc<AtomicU64>,
}

impl SourceInstance {
    /// A `Read` is tracked here while its process answers neither a batch
    /// nor a health check within the call timeout.
    pub fn call_watch(&self) -> &CallWatch {
        &self.watch
    }

    /// The pid of the process serving it right now.
    pub fn pid(&self) -> Option<u32> {
        self.entry.process.pid()
    }

    /// How often its process was restarted after a crash.
    pub fn restarts(&self) -> u32 {
        self.entry.process.restarts()
    }

    /// The serving process's status, limits and resource use.
    pub fn process(&self) -> ProcessView {
        ProcessView::of(&self.entry)
    }

    /// How many of its batches came as Arrow columns.
    pub fn columnar_batches(&self) -> u64 {
        self.columnar_batches.load(Ordering::Relaxed)
    }

    /// Whether the source declared that it can replay from an offset.
    pub fn rewindable(&self) -> bool {
        self.rewindable
    }

    /// Applies the state changes of a batch the rule has taken.
    pub fn accept_state(&self, changes: SourceState) -> Result<(), HostError> {
        self.state
            .accept(&self.id, None, changes.0)
            .map_err(|e| HostError::Protocol { plugin: self.plugin.clone(), reason: e.to_string() })
    }

    /// Whether the source holds its upstream's acknowledgements until a
    /// checkpoint covers them: when its read breaks, only a restore of the
    /// whole rule from the checkpoint avoids reading redelivered records twice.
    pub fn acks_on_checkpoint(&self) -> bool {
        self.acks_on_checkpoint
    }

    /// Tells the source that checkpoint `id`, which covers every record up to
    /// `offset`, is durable. A plugin without the call is asked once.
    pub async fn checkpointed(&self, id: u64, offset: Option<Value>) -> Result<(), HostError> {
        if self.checkpointed_unsupported.load(Ordering::Relaxed) {
            return Ok(());
        }
        let live = self.entry.process.live().await?;
        let mut client = pb::source_client::SourceClient::new(live.channel.clone());
        let req =
            pb::CheckpointedRequest { instance_id: self.id.clone(), offset: offset.map(Into::into), checkpoint_id: id };
        match tokio::time::timeout(self.timeouts.call, client.checkpointed(req)).await {
            Ok(Err(status)) if status.code() == tonic::Code::Unimplemented => {
                self.checkpointed_unsupported.store(true, Ordering::Relaxed);
                Ok(())
            }
            Ok(Err(status)) => Err(HostError::Call {
                plugin: self.plugin.clone(),
                call: "Checkpointed",
                message: status_message(&status),
            }),
            Ok(Ok(_)) => Ok(()),
            Err(_) => Err(HostError::Timeout {
                plugin: self.plugin.clone(),
                call: "Checkpointed",
                timeout: self.timeouts.call,
            }),
        }
    }

    /// Repositions the source to just after `offset`, an offset it reported.
    pub async fn rewind(&self, offset: Value) -> Result<(), HostError> {
        let live = self.entry.process.live().await?;
        self.rewind_on(&live, offset).await
    }

    async fn rewind_on(&self, live: &Live, offset: Value) -> Result<(), HostError> {
        let mut client = pb::source_client::SourceClient::new(live.channel.clone());
        // The source replays from `offset`: writes staged for batches it never
        // delivered would be made again.
        self.state.discard_staged(&self.id, None);
        let req = pb::RewindRequest { instance_id: self.id.clone(), offset: Some(offset.into()) };
        call(&self.plugin, "Rewind", self.timeouts, client.rewind(req)).await?;
        Ok(())
    }

    /// Starts reading: batches arrive on the returned receiver until the
    /// stream ends or fails. HTTP/2 flow control stops the plugin when the
    /// receiver is not drained.
    pub async fn read(&self, max_batch: u32) -> Result<mpsc::Receiver<Result<SourceBatch, HostError>>, HostError> {
        self.read_from(None, max_batch).await
    }

    /// Starts reading as [`SourceInstance::read`] does, after rewinding to
    /// `offset` when one is given, both on the same process. A rewind on one
    /// process and a read on its restarted successor would read from
    /// wherever the reopened instance starts (for a file: its first line);
    /// here a restart in between fails the read instead.
    pub async fn read_from(
        &self,
        offset: Option<Value>,
        max_batch: u32,
    ) -> Result<mpsc::Receiver<Result<SourceBatch, HostError>>, HostError> {
        let live = self.entry.process.live().await?;
        if let Some(offset) = offset {
            self.rewind_on(&live, offset).await?;
        }
        let mut client = pb::source_client::SourceClient::new(live.channel.clone()).max_decoding_message_size(64 << 20);
        let accept_arrow = self.columns && live.describe.encodings.contains(&(pb::Encoding::ArrowIpc as i32));
        let request = pb::ReadRequest { instance_id: self.id.clone(), max_batch, accept_arrow };
        let columnar_batches = self.columnar_batches.clone();
        let (tx, rx) = mpsc::channel(2);
        let id = self.id.clone();
        let plugin = self.plugin.clone();
        let plugin_name = self.plugin.clone();
        let failed = move |s: tonic::Status| HostError::Call {
            plugin: plugin.clone(),
            call: "Read",
            message: s.message().to_string(),
        };
        // No deadline on a source: a quiet source and a hung one look alike,
        // and a server may hold its response headers until its first batch.
        // What tells them apart is the process: after a call timeout without
        // a batch, its health service is asked, and a process that does not
        // answer that either is reported stuck until it answers again.
        let watch = self.watch.clone();
        let probe = HealthProbe { channel: live.channel.clone(), timeout: self.timeouts.call };
        tokio::spawn(async move {
            // The last Arrow schema this Read stream sent.
            let mut decoder = oort_proto::columns::BatchDecoder::default();
            let mut hung: Option<CallGuard<'_>> = None;
            let mut quiet = std::pin::pin!(tokio::time::sleep(probe.timeout));
            let mut read = std::pin::pin!(client.read(request));
            let opened = loop {
                tokio::select! {
                    r = &mut read => break r,
                    _ = tx.closed() => return,
                    _ = &mut quiet => probe.check(&watch, &mut hung, &plugin_name, &id, quiet.as_mut()).await,
                }
            };
            let mut stream = match opened {
                Ok(s) => s.into_inner(),
                Err(s) => {
                    let _ = tx.send(Err(failed(s))).await;
                    return;
                }
            };
            loop {
                // A receiver that went away ends the call, so the plugin stops
                // reading for nobody (and a Rewind that follows is not raced
                // by the old reader).
                let message = tokio::select! {
                    _ = tx.closed() => break,
                    m = stream.message() => m,
                    _ = &mut quiet => {
                        probe.check(&watch, &mut hung, &plugin_name, &id, quiet.as_mut()).await;
                        continue;
                    }
                };
                hung = None;
                quiet.as_mut().reset(tokio::time::Instant::now() + probe.timeout);
                let protocol = |reason: String| HostError::Protocol { plugin: plugin_name.clone(), reason };
                let item = match message {
                    Ok(Some(b)) => match read_columns(&mut decoder, &b, accept_arrow) {
                        Err(reason) => Err(protocol(reason)),
                        Ok(columns) => match StateRegistry::check(&b.mutations) {
                            Err(e) => Err(protocol(e.to_string())),
                            Ok(()) => {
                                if columns.is_some() {
                                    columnar_batches.fetch_add(1, Ordering::Relaxed);
                                }
                                Ok(SourceBatch {
                                    records: b.records.into_iter().map(Into::into).collect(),
                                    columns,
                                    offset: b.offset.map(Into::into),
                                    exceptions: b.exceptions,
                                    checkpoint_wanted: b.checkpoint_wanted,
                                    connection: b.connection.and_then(UpstreamConnection::of),
                                    state: SourceState(b.mutations),
                                })
                            }
                        },
                    },
                    Ok(None) => break,
                    Err(s) => Err(failed(s)),
                };
                let failed = item.is_err();
                if tx.send(item).await.is_err() || failed {
                    break;
                }
            }
        });
        Ok(rx)
    }
}

/// The columns of a source's batch, checked: only when they were asked
/// for, not beside records, decodable, and of field types with values.
fn read_columns(
    decoder: &mut oort_proto::columns::BatchDecoder,
    batch: &pb::RecordBatch,
    accepted: bool,
) -> Result<Option<oort_proto::columns::RecordBatch>, String> {
    if batch.arrow.is_empty() {
        return Ok(None);
    }
    if !accepted {
        return Err("Read sent Arrow columns, which the supervisor did not accept".into());
    }
    if !batch.records.is_empty() {
        return Err("Read sent a batch with both records and Arrow columns".into());
    }
    let columns = decoder
        .decode(&batch.arrow_schema, &batch.arrow)
        .and_then(|c| oort_proto::columns::check_fields(&c.schema()).map(|()| c))
        .map_err(|e| format!("Read sent an unreadable Arrow batch: {e}"))?;
    Ok(Some(columns))
}

/// Asks a plugin process whether it still answers, for a source that has
/// sent nothing for a while.
pub(super) struct HealthProbe {
    pub(super) channel: tonic::transport::Channel,
    pub(super) timeout: std::time::Duration,
}

impl HealthProbe {
    /// Marks the read stuck when the process does not answer within the
    /// timeout (warning once), clears it when it does, and re-arms `quiet`.
    pub(super) async fn check<'w>(
        &self,
        watch: &'w CallWatch,
        hung: &mut Option<CallGuard<'w>>,
        plugin: &str,
        instance: &str,
        quiet: std::pin::Pin<&mut tokio::time::Sleep>,
    ) {
        let answered = crate::process::health(&self.channel, self.timeout).await.is_some();
        if answered {
            *hung = None;
        } else {
            if hung.is_none() {
                *hung = Some(watch.begin("Read"));
            }
            let error = HostError::Timeout { plugin: plugin.into(), call: "Read", timeout: self.timeout };
            note_timeout(watch, plugin, instance, &error, "its process answers no health check either; the read waits");
        }
        quiet.reset(tokio::time::Instant::now() + self.timeout);
    }
}

#[cfg(test)]
mod tests {
    //! What the host accepts of a source's columnar batch.
    use super::*;
    use oort_proto::columns::{self, arrow_array, ArrayRef, BatchDecoder};

    fn message(batch: &columns::RecordBatch) -> pb::RecordBatch {
        pb::RecordBatch {
            arrow_schema: columns::schema_message(&batch.schema()),
            arrow: columns::batch_message(batch).unwrap(),
            ..Default::default()
        }
    }

    fn batch(columns: Vec<(&str, ArrayRef)>) -> columns::RecordBatch {
        columns::RecordBatch::try_from_iter(columns).unwrap()
    }

    #[test]
    fn a_source_may_send_checked_columns_only_when_asked() {
        let ints: ArrayRef = Arc::new(arrow_array::Int64Array::from(vec![1, 2]));
        let good = message(&batch(vec![("a", ints.clone())]));
        let read = read_columns(&mut BatchDecoder::default(), &good, true).unwrap().unwrap();
        assert_eq!(read.num_rows(), 2);
        assert!(read_columns(&mut BatchDecoder::default(), &pb::RecordBatch::default(), true).unwrap().is_none());
        let e = read_columns(&mut BatchDecoder::default(), &good, false).unwrap_err();
        assert!(e.contains("did not accept"), "{e}");
        let both = pb::RecordBatch { records: vec![pb::Record::default()], ..good.clone() };
        assert!(read_columns(&mut BatchDecoder::default(), &both, true).unwrap_err().contains("both records"));
        let twice = message(&batch(vec![("a", ints.clone()), ("a", ints)]));
        let e = read_columns(&mut BatchDecoder::default(), &twice, true).unwrap_err();
        assert!(e.contains("field a appears twice"), "{e}");
        let dates: ArrayRef = Arc::new(arrow_array::Date32Array::from(vec![1]));
        let e = read_columns(&mut BatchDecoder::default(), &message(&batch(vec![("d", dates)])), true).unwrap_err();
        assert!(e.contains("column d has Arrow type Date32"), "{e}");
        let garbage = pb::RecordBatch { arrow: prost::bytes::Bytes::from_static(b"nonsense"), ..good };
        let e = read_columns(&mut BatchDecoder::default(), &garbage, true).unwrap_err();
        assert!(e.starts_with("Read sent an unreadable Arrow batch"), "{e}");
    }
}
