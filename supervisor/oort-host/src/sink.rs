//! An open sink instance: batches out, and the two-phase-commit calls.

use super::*;

/// An open sink instance.
pub struct SinkInstance {
    pub(super) id: String,
    pub(super) plugin: String,
    pub(super) entry: Arc<Entry>,
    pub(super) state: Arc<StateRegistry>,
    pub(super) timeouts: Timeouts,
    pub(super) stream: BatchStream<oort_proto::wire::EncodedBatch, pb::WriteAck>,
    pub(super) watch: CallWatch,
    pub(super) wants_payloads: bool,
    /// Whether the sink said it takes Arrow columns and the host's data
    /// encoding allows them.
    pub(super) columns: bool,
    /// How many batches went as Arrow columns.
    pub(super) columnar_batches: AtomicU64,
}

/// What the sink said of an accepted batch's items.
#[derive(Debug, Default)]
pub struct Written {
    /// eKuiper's per-item acks: one entry per item when the sink acks items,
    /// empty for a delivered item; empty when it does not.
    pub item_errors: Vec<String>,
}

impl SinkInstance {
    /// The writes in flight: the pipeline holds a [`CallGuard`] from the
    /// first attempt of a batch to its last retry.
    pub fn call_watch(&self) -> &CallWatch {
        &self.watch
    }

    /// The serving process's status, limits and resource use.
    pub fn process(&self) -> ProcessView {
        ProcessView::of(&self.entry)
    }

    /// The pid of the process serving it right now.
    pub fn pid(&self) -> Option<u32> {
        self.entry.process.pid()
    }

    /// How often its process was restarted after a crash.
    pub fn restarts(&self) -> u32 {
        self.entry.process.restarts()
    }

    /// Two-phase commit, phase one: makes everything written durable and
    /// returns the sink's handle for checkpoint `id`.
    pub async fn pre_commit(&self, id: u64) -> Result<Value, HostError> {
        let live = self.entry.process.live().await?;
        let mut client = pb::sink_client::SinkClient::new(live.channel.clone());
        let req = pb::PreCommitRequest { instance_id: self.id.clone(), checkpoint_id: id };
        let resp = call(&self.plugin, "PreCommit", self.timeouts, client.pre_commit(req)).await?;
        Ok(resp.handle.map(Into::into).unwrap_or_default())
    }

    /// Two-phase commit, phase two: checkpoint `id` is durable; make it final.
    /// Also the recover-and-commit call after a restore.
    pub async fn commit(&self, id: u64, handle: Value) -> Result<(), HostError> {
        let live = self.entry.process.live().await?;
        let mut client = pb::sink_client::SinkClient::new(live.channel.clone());
        let req = pb::CommitRequest { instance_id: self.id.clone(), checkpoint_id: id, handle: Some(handle.into()) };
        call(&self.plugin, "Commit", self.timeouts, client.commit(req)).await?;
        Ok(())
    }

    /// Two-phase commit, the other phase two: checkpoint `id` will never be
    /// durable (another sink failed its pre-commit, or the store its write);
    /// discard what its pre-commit prepared.
    pub async fn abort(&self, id: u64, handle: Value) -> Result<(), HostError> {
        let live = self.entry.process.live().await?;
        let mut client = pb::sink_client::SinkClient::new(live.channel.clone());
        let req = pb::CommitRequest { instance_id: self.id.clone(), checkpoint_id: id, handle: Some(handle.into()) };
        call(&self.plugin, "Abort", self.timeouts, client.abort(req)).await?;
        Ok(())
    }

    /// Whether the sink asked for encoded payloads instead of records
    /// ([`SinkInstance::write_payloads`]).
    pub fn wants_payloads(&self) -> bool {
        self.wants_payloads
    }

    /// Whether [`SinkInstance::write_columns`] sends columns (else it sends
    /// the batch's records).
    pub fn takes_columns(&self) -> bool {
        self.columns
    }

    /// How many of its batches went as Arrow columns.
    pub fn columnar_batches(&self) -> u64 {
        self.columnar_batches.load(Ordering::Relaxed)
    }

    /// Writes one batch of records as Arrow columns (one per output field),
    /// for a sink that takes them; as records to any other.
    pub async fn write_columns(&self, batch: &oort_proto::columns::RecordBatch) -> Result<Written, HostError> {
        use oort_proto::columns;
        let protocol = |e: columns::ColumnError| HostError::Protocol {
            plugin: self.plugin.clone(),
            reason: format!("cannot encode a batch as Arrow: {e}"),
        };
        // One look at the serving process, for the encoding check and the write.
        let live = self.entry.process.live().await?;
        let lists_arrow = live.describe.encodings.contains(&(pb::Encoding::ArrowIpc as i32));
        if !self.columns || !lists_arrow {
            return self.write(&columns::records_of(batch).map_err(protocol)?).await;
        }
        // Sinks get the column types the protocol sends: others (a source's
        // narrower integers, lists) are converted, or the batch goes as rows.
        let converted;
        let batch = if batch.columns().iter().all(|c| columns::sendable(c.data_type())) {
            batch
        } else {
            let records = columns::records_of(batch).map_err(protocol)?;
            match columns::records_batch(&records) {
                Some(b) => {
                    converted = b;
                    &converted
                }
                None => return self.write(&records).await,
            }
        };
        let message = columns::batch_message(batch).map_err(protocol)?;
        let body = oort_proto::wire::BatchBody::write_columns(&self.id, message);
        let schema = batch.schema();
        let written = self
            .send(&live, batch.num_rows(), |seq, sent| match sent.message_if_new(&schema) {
                Some(m) => body.with_schema(&m).with_seq(seq),
                None => body.with_seq(seq),
            })
            .await;
        if written.is_ok() {
            self.columnar_batches.fetch_add(1, Ordering::Relaxed);
        }
        written
    }

    /// Writes one batch and waits for the sink's acknowledgement. The batch is
    /// borrowed: a failed write is retried with the same records, and several
    /// sinks share one batch.
    pub async fn write(&self, records: &[Record]) -> Result<Written, HostError> {
        self.write_body(oort_proto::wire::BatchBody::write(&self.id, records), records.len()).await
    }

    /// Writes one batch of encoded items to a sink that asked for payloads.
    pub async fn write_payloads(&self, payloads: &[Vec<u8>]) -> Result<Written, HostError> {
        self.write_body(oort_proto::wire::BatchBody::write_payloads(&self.id, payloads), payloads.len()).await
    }

    async fn write_body(&self, encoded: oort_proto::wire::BatchBody, items: usize) -> Result<Written, HostError> {
        let live = self.entry.process.live().await?;
        self.send(&live, items, |seq, _| encoded.with_seq(seq)).await
    }

    /// One write of `items` items: `request` seals the encoded batch with its
    /// sequence number, given what the stream has seen of its schema.
    async fn send(
        &self,
        live: &Live,
        items: usize,
        request: impl FnOnce(u64, &mut oort_proto::columns::SchemaSent) -> oort_proto::wire::EncodedBatch,
    ) -> Result<Written, HostError> {
        let ack = self
            .stream
            .round_trip(live, true, request, |channel, input| oort_proto::wire::write_stream(channel, input, 64 << 20))
            .await
            .inspect_err(|e| {
                if matches!(e, HostError::Timeout { .. }) {
                    note_timeout(&self.watch, &self.plugin, &self.id, e, "until it succeeds");
                }
            })
            .and_then(|ack| {
                ack.ok_or_else(|| HostError::Call {
                    plugin: self.plugin.clone(),
                    call: "Write",
                    message: "no stream".into(),
                })
            })
            .inspect_err(|_| {
                // An unacknowledged batch never happened: neither did its writes.
                self.state.discard_staged(&self.id, Some(self.stream.seq.load(Ordering::Relaxed)));
            })?;
        self.state
            .accept(&self.id, Some(ack.seq), ack.mutations)
            .map_err(|e| HostError::Protocol { plugin: self.plugin.clone(), reason: e.to_string() })?;
        if !ack.error.is_empty() {
            return Err(HostError::Call { plugin: self.plugin.clone(), call: "Write", message: ack.error });
        }
        if !ack.item_errors.is_empty() && ack.item_errors.len() != items {
            // A miscounted ack cannot be matched to the items: the batch was
            // accepted, but nothing can be said of which items were delivered.
            return Err(HostError::Protocol {
                plugin: self.plugin.clone(),
                reason: format!("Write acknowledged {} items with {} item errors", items, ack.item_errors.len()),
            });
        }
        Ok(Written { item_errors: ack.item_errors })
    }
}
