//! eKuiper's `SHARED` streams: one source instance feeds every rule that
//! reads the stream, instead of one instance per rule.
//!
//! The first rule to start on a shared stream opens the instance (under the
//! rule id `stream:<name>`, so its state and process are the stream's, not a
//! rule's) and a hub task that reads it and hands every batch to each
//! subscribed rule, in order. A slow rule slows the others: the hub waits
//! for every subscriber's queue, as the source's own backpressure would. The
//! last rule to leave closes the instance. A shared source is never rewound
//! for one rule, so rules on a shared stream cannot checkpoint source offsets
//! (`qos` 1 and 2 are refused when the rule is created).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use oort_host::process::RestartStrategy;
use oort_host::{Host, HostError, SourceBatch, SourceInstance};
use oort_proto::Value;
use tokio::sync::mpsc;

type Subscriber = mpsc::Sender<Result<SourceBatch, HostError>>;

/// The shared streams that some running rule reads, by stream name.
#[derive(Default)]
pub(crate) struct SharedSources {
    hubs: tokio::sync::Mutex<HashMap<String, Arc<Hub>>>,
}

/// One shared stream's open source instance and who reads it.
struct Hub {
    instance: Arc<SourceInstance>,
    subscribers: Mutex<Vec<Subscriber>>,
    /// Rules holding a [`SharedSource`] on this stream.
    users: Mutex<usize>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// A rule's handle on a shared stream; dropping it leaves the stream.
pub(crate) struct SharedSource {
    sources: Arc<SharedSources>,
    host: Arc<Host>,
    stream: String,
    hub: Arc<Hub>,
}

/// What opening a shared stream needs (the first rule's view of it).
pub(crate) struct StreamSource<'a> {
    pub stream: &'a str,
    pub source_type: &'a str,
    pub datasource: &'a str,
    pub props: HashMap<String, Value>,
    pub restart: RestartStrategy,
    pub max_batch: u32,
}

impl SharedSources {
    /// Joins the stream's hub, opening its source instance if no running rule
    /// reads the stream yet.
    pub(crate) async fn join(
        self: &Arc<Self>,
        host: &Arc<Host>,
        s: StreamSource<'_>,
    ) -> Result<SharedSource, HostError> {
        let mut hubs = self.hubs.lock().await;
        let hub = match hubs.get(s.stream) {
            Some(hub) => hub.clone(),
            None => {
                let rule = format!("stream:{}", s.stream);
                let instance = host.open_source(&rule, s.source_type, s.datasource, s.props, s.restart).await?;
                let hub = Arc::new(Hub {
                    instance: Arc::new(instance),
                    subscribers: Mutex::new(Vec::new()),
                    users: Mutex::new(0),
                    task: Mutex::new(None),
                });
                let task = tokio::spawn(feed(hub.clone(), s.max_batch));
                *lock(&hub.task) = Some(task);
                hubs.insert(s.stream.to_string(), hub.clone());
                hub
            }
        };
        *lock(&hub.users) += 1;
        Ok(SharedSource { sources: self.clone(), host: host.clone(), stream: s.stream.to_string(), hub })
    }

    /// One rule left: the last one closes the instance.
    async fn leave(&self, host: &Host, stream: &str, hub: &Arc<Hub>) {
        let mut hubs = self.hubs.lock().await;
        let users = {
            let mut users = lock(&hub.users);
            *users -= 1;
            *users
        };
        if users > 0 || !hubs.get(stream).is_some_and(|h| Arc::ptr_eq(h, hub)) {
            return;
        }
        hubs.remove(stream);
        if let Some(task) = lock(&hub.task).take() {
            task.abort();
        }
        host.close_source(&hub.instance).await;
    }
}

impl SharedSource {
    /// The stream's source instance, for the rule's status.
    pub(crate) fn instance(&self) -> Arc<SourceInstance> {
        self.hub.instance.clone()
    }

    /// The batches of the stream from now on, as a rule reads its own source.
    pub(crate) fn read(&self) -> mpsc::Receiver<Result<SourceBatch, HostError>> {
        let (tx, rx) = mpsc::channel(2);
        lock(&self.hub.subscribers).push(tx);
        rx
    }
}

impl Drop for SharedSource {
    fn drop(&mut self) {
        let (sources, host, stream, hub) =
            (self.sources.clone(), self.host.clone(), self.stream.clone(), self.hub.clone());
        tokio::spawn(async move { sources.leave(&host, &stream, &hub).await });
    }
}

/// The hub's task: reads the instance and hands each batch to every
/// subscriber; after the read stream breaks (the process restarted), reads
/// again after the last offset handed on, as a rule does with its own source.
async fn feed(hub: Arc<Hub>, max_batch: u32) {
    let mut last_offset: Option<Value> = None;
    loop {
        // Rewound and read on one process (see `SourceInstance::read_from`).
        let resume = last_offset.clone().filter(|_| hub.instance.rewindable());
        let mut batches = match hub.instance.read_from(resume, max_batch).await {
            Ok(rx) => rx,
            Err(e) => {
                let fatal = e.is_fatal();
                hand_on(&hub, Err(e)).await;
                if fatal {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        while let Some(mut item) = batches.recv().await {
            let fatal = matches!(&item, Err(e) if e.is_fatal());
            if let Ok(batch) = &mut item {
                if batch.offset.is_some() {
                    last_offset = batch.offset.clone();
                }
                // A shared stream's rules do not checkpoint: its instance's
                // state is as of the last batch read.
                if let Err(e) = hub.instance.accept_state(std::mem::take(&mut batch.state)) {
                    tracing::warn!("shared source: {e}");
                }
            }
            hand_on(&hub, item).await;
            if fatal {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sends one item to every subscriber, in subscription order, dropping the
/// subscribers that left.
async fn hand_on(hub: &Hub, item: Result<SourceBatch, HostError>) {
    let subscribers: Vec<Subscriber> = lock(&hub.subscribers).clone();
    let mut gone = Vec::new();
    for tx in &subscribers {
        let copy = match &item {
            Ok(b) => Ok(SourceBatch {
                records: b.records.clone(),
                columns: b.columns.clone(),
                offset: b.offset.clone(),
                exceptions: b.exceptions.clone(),
                checkpoint_wanted: false,
                connection: b.connection.clone(),
                state: Default::default(),
            }),
            Err(e) => Err(e.clone()),
        };
        if tx.send(copy).await.is_err() {
            gone.push(tx.clone());
        }
    }
    if !gone.is_empty() {
        lock(&hub.subscribers).retain(|tx| !gone.iter().any(|g| g.same_channel(tx)));
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
