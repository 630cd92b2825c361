//! Oort's cluster mode, on etcd: who is in the cluster.
//!
//! Every node registers under `/oort/v1/nodes/<node id>` with a key bound to
//! a lease of its own (`--lease-ttl-s`, 5 s by default) that it keeps alive.
//! A node that dies, or is cut off from etcd for longer than its lease, drops
//! out of the list by itself: etcd deletes the key when the lease expires.
//! A node id is taken by one live node at a time: registering uses a
//! transaction that creates the key only where none exists.
//!
//! When etcd itself goes away the node keeps running what it runs and keeps
//! trying; when etcd is back, the node renews its lease, or registers again
//! under a new one if the old one expired meanwhile.
//!
//! `placement` is the pure function that will assign rules to the live
//! nodes (not wired yet: see docs/cluster.md).
//!
//! Architecture invariant: the only crate that talks to etcd.
#![forbid(unsafe_code)]

mod coordination;
mod placement;

pub use coordination::{ClusterView, Expect, Owner, Pointer, PointerMove, RuleRecord};
pub use placement::{place, RuleDemand};

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use etcd_client::{Client, Compare, CompareOp, ConnectOptions, GetOptions, PutOptions, Txn, TxnOp};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// Where everything Oort keeps in etcd lives.
const PREFIX: &str = "/oort/v1/";

/// How a node joins a cluster.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// etcd client URLs (`http://host:port`).
    pub endpoints: Vec<String>,
    /// This node's id, unique among live nodes (`[A-Za-z0-9_-]+`).
    pub node_id: String,
    /// The lease the node's registration is bound to: how long after a node
    /// stops renewing it (a crash, a pause, a cut) the others see it gone.
    pub lease_ttl: Duration,
    /// The address this node's REST API answers on, for the other nodes.
    pub api_addr: String,
    /// How many rules the node takes at most (`None`: no limit).
    pub capacity: Option<u32>,
    /// Labels that rules may ask for.
    pub labels: BTreeMap<String, String>,
}

/// What a node publishes about itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeRecord {
    pub id: String,
    pub api_addr: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<u32>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// When the node registered (ms since the epoch).
    pub registered_ms: u64,
}

/// A live node as the cluster sees it now.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeStatus {
    pub record: NodeRecord,
    /// The lease its registration is bound to.
    pub lease: i64,
    /// Seconds left before the lease expires unless renewed (`None`: the
    /// lease was gone by the time it was asked).
    pub ttl_left: Option<i64>,
}

/// Why a cluster operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClusterError {
    #[error("node id {0:?} is not valid: use letters, digits, '_' and '-'")]
    InvalidNodeId(String),
    #[error("the lease TTL must be a whole number of seconds, at least 1 (got {0:?})")]
    InvalidLease(Duration),
    #[error(
        "node id {0:?} is already registered by a live node; pick another --node-id or wait for its lease to expire"
    )]
    NodeIdTaken(String),
    #[error("cannot reach etcd at {endpoints}: {reason}")]
    Unreachable { endpoints: String, reason: String },
    #[error("etcd {op} failed: {reason}")]
    Etcd { op: &'static str, reason: String },
}

fn etcd(op: &'static str) -> impl Fn(etcd_client::Error) -> ClusterError {
    move |e| ClusterError::Etcd { op, reason: e.to_string() }
}

fn node_key(id: &str) -> String {
    format!("{PREFIX}nodes/{id}")
}

/// This node's membership: registered, and kept alive by a task until
/// [`Membership::leave`].
pub struct Membership {
    client: Client,
    record: NodeRecord,
    ttl_secs: i64,
    /// The lease the registration is bound to now (a new one after etcd
    /// lost the old).
    lease: Arc<Mutex<i64>>,
    stop: watch::Sender<bool>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Membership {
    /// Registers this node and starts keeping its lease alive. Fails when
    /// etcd cannot be reached or the node id is taken by a live node.
    pub async fn join(config: ClusterConfig) -> Result<Arc<Membership>, ClusterError> {
        let valid = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
        if config.node_id.is_empty() || !config.node_id.chars().all(valid) {
            return Err(ClusterError::InvalidNodeId(config.node_id));
        }
        if config.lease_ttl < Duration::from_secs(1) || config.lease_ttl.subsec_nanos() != 0 {
            return Err(ClusterError::InvalidLease(config.lease_ttl));
        }
        let ttl_secs = config.lease_ttl.as_secs() as i64;
        let unreachable = |e: etcd_client::Error| ClusterError::Unreachable {
            endpoints: config.endpoints.join(","),
            reason: e.to_string(),
        };
        // Calls time out well inside the lease, so that a slow etcd is noticed
        // before the registration would expire.
        let options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(2))
            .with_timeout(config.lease_ttl / 2)
            .with_keep_alive(Duration::from_secs(1), Duration::from_secs(2));
        let client = Client::connect(&config.endpoints, Some(options)).await.map_err(unreachable)?;
        let record = NodeRecord {
            id: config.node_id.clone(),
            api_addr: config.api_addr.clone(),
            capacity: config.capacity,
            labels: config.labels.clone(),
            registered_ms: now_ms(),
        };
        let lease = register(&mut client.clone(), &record, ttl_secs).await.map_err(|e| match e {
            ClusterError::Etcd { reason, .. } => {
                ClusterError::Unreachable { endpoints: config.endpoints.join(","), reason }
            }
            other => other,
        })?;
        tracing::info!(node = %record.id, lease, ttl_s = ttl_secs, "joined the cluster");
        let (stop, stopped) = watch::channel(false);
        let membership = Arc::new(Membership {
            client,
            record,
            ttl_secs,
            lease: Arc::new(Mutex::new(lease)),
            stop,
            task: Mutex::default(),
        });
        let task = tokio::spawn(keep_alive(
            membership.client.clone(),
            membership.record.clone(),
            ttl_secs,
            membership.lease.clone(),
            stopped,
        ));
        *lock(&membership.task) = Some(task);
        Ok(membership)
    }

    /// This node's id.
    pub fn node_id(&self) -> &str {
        &self.record.id
    }

    /// Every live node, sorted by id.
    pub async fn nodes(&self) -> Result<Vec<NodeStatus>, ClusterError> {
        let mut client = self.client.clone();
        let resp = retrying(|| {
            let mut client = self.client.clone();
            async move { client.get(format!("{PREFIX}nodes/"), Some(GetOptions::new().with_prefix())).await }
        })
        .await
        .map_err(etcd("get nodes"))?;
        let mut nodes = Vec::new();
        for kv in resp.kvs() {
            let Ok(record) = serde_json::from_slice::<NodeRecord>(kv.value()) else {
                tracing::warn!(key = %String::from_utf8_lossy(kv.key()), "a node record in etcd cannot be read; skipped");
                continue;
            };
            let ttl = client.lease_time_to_live(kv.lease(), None).await.ok().map(|r| r.ttl()).filter(|t| *t >= 0);
            nodes.push(NodeStatus { record, lease: kv.lease(), ttl_left: ttl });
        }
        nodes.sort_by(|a, b| a.record.id.cmp(&b.record.id));
        Ok(nodes)
    }

    /// Leaves the cluster: stops renewing and revokes the lease, so that the
    /// others see the node gone at once instead of after its TTL.
    pub async fn leave(&self) {
        let _ = self.stop.send(true);
        let task = lock(&self.task).take();
        if let Some(task) = task {
            let _ = task.await;
        }
        let lease = *lock(&self.lease);
        let mut client = self.client.clone();
        match tokio::time::timeout(Duration::from_secs(2), client.lease_revoke(lease)).await {
            Ok(Ok(_)) => tracing::info!(node = %self.record.id, "left the cluster"),
            Ok(Err(e)) => tracing::warn!(node = %self.record.id, "could not revoke the lease on leaving: {e}"),
            Err(_) => tracing::warn!(node = %self.record.id, "etcd did not answer the lease revoke in time"),
        }
    }

    /// The lease this node's registration and rule ownership are bound to
    /// now.
    pub fn lease(&self) -> i64 {
        *lock(&self.lease)
    }

    /// The lease TTL in seconds.
    pub fn lease_ttl_secs(&self) -> i64 {
        self.ttl_secs
    }
}

/// Grants a lease and creates the node's key bound to it, unless a live
/// node holds the id.
async fn register(client: &mut Client, record: &NodeRecord, ttl_secs: i64) -> Result<i64, ClusterError> {
    let lease = client.lease_grant(ttl_secs, None).await.map_err(etcd("lease grant"))?.id();
    let key = node_key(&record.id);
    let value = serde_json::to_vec(record).expect("a node record serializes");
    let txn = Txn::new().when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)]).and_then([TxnOp::put(
        key,
        value,
        Some(PutOptions::new().with_lease(lease)),
    )]);
    let resp = client.txn(txn).await.map_err(etcd("register"))?;
    if !resp.succeeded() {
        let _ = client.lease_revoke(lease).await;
        return Err(ClusterError::NodeIdTaken(record.id.clone()));
    }
    Ok(lease)
}

/// Renews the lease a third of its TTL apart; when etcd lost it (expired
/// while unreachable), registers again under a new one.
async fn keep_alive(
    mut client: Client,
    record: NodeRecord,
    ttl_secs: i64,
    lease: Arc<Mutex<i64>>,
    mut stopped: watch::Receiver<bool>,
) {
    let period = Duration::from_millis((ttl_secs as u64 * 1000 / 3).max(200));
    let mut reachable = true;
    loop {
        let id = *lock(&lease);
        // Every step is bounded: a keep-alive stream opened to a member that
        // died can stall without an error (no answer, no close), and the
        // lease would run out while this waited on it. A stalled step opens
        // a new stream, which the client sends to a member that answers.
        let step = |what: &'static str| move |_| format!("{what} took longer than {period:?}");
        let renewed = async {
            let (mut keeper, mut answers) = tokio::time::timeout(period, client.lease_keep_alive(id))
                .await
                .map_err(step("opening the keep-alive stream"))?
                .map_err(|e| e.to_string())?;
            loop {
                let answer = tokio::time::timeout(period, async {
                    keeper.keep_alive().await?;
                    answers.message().await
                })
                .await
                .map_err(step("a keep-alive"))?
                .map_err(|e| e.to_string())?;
                match answer {
                    Some(answer) if answer.ttl() > 0 => {}
                    // TTL 0: the lease is gone.
                    _ => return Ok::<bool, String>(false),
                }
                tokio::time::sleep(period).await;
            }
        };
        let outcome = tokio::select! {
            _ = stopped.changed() => return,
            outcome = renewed => outcome,
        };
        match outcome {
            Ok(_expired) => {
                tracing::warn!(node = %record.id, lease = id, "the node's lease expired; registering again");
                match register(&mut client, &record, ttl_secs).await {
                    Ok(new) => {
                        *lock(&lease) = new;
                        tracing::info!(node = %record.id, lease = new, "registered again");
                        reachable = true;
                        continue;
                    }
                    Err(e) => tracing::warn!(node = %record.id, "registering again failed: {e}"),
                }
            }
            Err(e) => {
                if reachable {
                    tracing::warn!(node = %record.id, "etcd unreachable, retrying: {e}");
                }
                reachable = false;
            }
        }
        tokio::select! {
            _ = stopped.changed() => return,
            _ = tokio::time::sleep(period) => {}
        }
    }
}

/// Runs a call, again (up to five times in all) when it fails: the client
/// spreads calls over the endpoints and does not retry one that went to a
/// member that is down (refused, or timed out while it was being killed).
/// Reads are safe to repeat; every write Oort makes is a conditional
/// transaction or a delete, so a repeat of one that did apply but whose
/// answer was lost reports "condition failed" or "nothing deleted" instead
/// of applying twice.
pub(crate) async fn retrying<T, F, Fut>(mut call: F) -> Result<T, etcd_client::Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, etcd_client::Error>>,
{
    let mut attempt = 0;
    loop {
        match call().await {
            Ok(v) => return Ok(v),
            Err(e) if attempt >= 4 => return Err(e),
            Err(_) => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(20 * attempt)).await;
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}
