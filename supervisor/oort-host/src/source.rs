//! An open source instance: a stream of batches, a rewind, and a health
//! probe for a stream that goes quiet.

use super::*;

/// One batch from a source.
#[derive(Debug)]
pub struct SourceBatch {
    pub records: Vec<Record>,
    pub offset: Option<Value>,
    /// Problems the source went past; they count as its exceptions.
    pub exceptions: Vec<String>,
}

/// An open source instance.
pub struct SourceInstance {
    pub(super) id: String,
    pub(super) plugin: String,
    pub(super) entry: Arc<Entry>,
    pub(super) state: Arc<StateRegistry>,
    pub(super) timeouts: Timeouts,
    pub(super) rewindable: bool,
    /// A `Read` whose process stopped answering health checks.
    pub(super) watch: Arc<CallWatch>,
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

    /// Whether the source declared that it can replay from an offset.
    pub fn rewindable(&self) -> bool {
        self.rewindable
    }

    /// Repositions the source to just after `offset`, an offset it reported.
    pub async fn rewind(&self, offset: Value) -> Result<(), HostError> {
        let live = self.entry.process.live().await?;
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
        let live = self.entry.process.live().await?;
        let mut client = pb::source_client::SourceClient::new(live.channel.clone()).max_decoding_message_size(64 << 20);
        let request = pb::ReadRequest { instance_id: self.id.clone(), max_batch };
        let (tx, rx) = mpsc::channel(2);
        let state = self.state.clone();
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
                let item = match message {
                    Ok(Some(b)) => match state.accept(&id, None, b.mutations) {
                        Err(e) => Err(HostError::Protocol { plugin: plugin_name.clone(), reason: e.to_string() }),
                        Ok(()) => Ok(SourceBatch {
                            records: b.records.into_iter().map(Into::into).collect(),
                            offset: b.offset.map(Into::into),
                            exceptions: b.exceptions,
                        }),
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
