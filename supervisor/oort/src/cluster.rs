//! Cluster mode: which rules this node runs, and publishing their
//! checkpoints where the other nodes can restore them.
//!
//! Every node runs the same loop ([`reconcile`]): read the cluster's state
//! from etcd (one read, one revision), place every rule on the live nodes
//! (`oort_cluster::place`, the same answer on every node), then make this
//! node agree with it:
//!
//! - a rule placed here that no node owns is *taken* (its owner key, bound
//!   to this node's lease, created in a transaction) and *adopted*: the
//!   checkpoint its pointer names is downloaded and installed as the rule's
//!   only local checkpoint, the rule is created with the owner key's
//!   revision as its fencing token, and it restores from that checkpoint as
//!   after a crash;
//! - a rule this node owns but that is placed elsewhere (a node joined) is
//!   stopped, deleted here, then *released* (its owner key deleted), so that
//!   the node it is placed on takes it;
//! - a rule this node runs but does not own (its lease expired: it was
//!   paused or cut off) is stopped and deleted here at once;
//! - streams follow etcd's definitions; a rule's start/stop follows its
//!   definition's `running`.
//!
//! Checkpoints are published by [`Publisher`]: uploaded to the checkpoint
//! store, then the pointer moved in a transaction that holds only while
//! this node's token is still the owner key's revision; pointer moves of
//! concurrent checkpoints go out in one transaction.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::StreamExt as _;
use oort_cluster::{ClusterView, Membership, Pointer, PointerMove, RuleDemand, RuleRecord};
use oort_engine::{CheckpointPublisher, Engine, PublishError};
use oort_host::Host;
use oort_store::CheckpointStore;
use tokio::sync::{mpsc, oneshot};

use crate::shutdown::Shutdown;

/// The rules this node owns, with its fencing token for each.
#[derive(Default)]
pub struct Owned {
    tokens: Mutex<HashMap<String, u64>>,
}

impl Owned {
    fn token(&self, rule: &str) -> Option<u64> {
        lock(&self.tokens).get(rule).copied()
    }
    fn set(&self, rule: &str, token: u64) {
        lock(&self.tokens).insert(rule.to_string(), token);
    }
    fn remove(&self, rule: &str) {
        lock(&self.tokens).remove(rule);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One checkpoint waiting to be published.
struct Publication {
    rule: String,
    id: u64,
    bytes: Vec<u8>,
    token: u64,
    reply: oneshot::Sender<Result<(), PublishError>>,
}

/// Publishes this node's checkpoints (see the module comment).
pub struct Publisher {
    owned: Arc<Owned>,
    queue: mpsc::Sender<Publication>,
}

/// How many checkpoints one batch publishes at most.
const BATCH: usize = 100;
/// Published objects kept per rule: the newest and the one before it.
const OBJECTS_KEPT: usize = 2;

impl Publisher {
    /// Starts the task that publishes through `membership` and `store`.
    pub fn start(membership: Arc<Membership>, store: CheckpointStore, owned: Arc<Owned>) -> Arc<Publisher> {
        let (queue, pending) = mpsc::channel(4 * BATCH);
        tokio::spawn(publish_batches(membership, store, pending));
        Arc::new(Publisher { owned, queue })
    }
}

impl CheckpointPublisher for Publisher {
    fn publish(&self, rule: &str, id: u64, bytes: Vec<u8>) -> BoxFuture<'static, Result<(), PublishError>> {
        let token = self.owned.token(rule);
        let queue = self.queue.clone();
        let rule = rule.to_string();
        Box::pin(async move {
            let Some(token) = token else {
                return Err(PublishError::Fenced(format!("rule {rule} is not owned by this node")));
            };
            let (reply, answer) = oneshot::channel();
            let gone = || PublishError::Unavailable("the publisher stopped".into());
            queue.send(Publication { rule, id, bytes, token, reply }).await.map_err(|_| gone())?;
            answer.await.map_err(|_| gone())?
        })
    }
}

/// Uploads every waiting checkpoint, concurrently, then moves their pointers
/// in as few transactions as the fencing allows.
async fn publish_batches(
    membership: Arc<Membership>,
    store: CheckpointStore,
    mut pending: mpsc::Receiver<Publication>,
) {
    let node = membership.node_id().to_string();
    let mut published: HashMap<String, VecDeque<String>> = HashMap::new();
    while let Some(first) = pending.recv().await {
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match pending.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        let uploads = futures_util::future::join_all(batch.iter_mut().map(|p| {
            let bytes = std::mem::take(&mut p.bytes);
            store.upload(&p.rule, p.id, &node, p.token, bytes)
        }))
        .await;
        let mut moves = Vec::new();
        let mut movers = Vec::new();
        for (p, uploaded) in batch.into_iter().zip(uploads) {
            match uploaded {
                Ok(object) => {
                    let pointer = Pointer { id: p.id, object, node: node.clone() };
                    moves.push(PointerMove { rule: p.rule.clone(), token: p.token, pointer });
                    movers.push(p);
                }
                Err(e) => {
                    let _ = p.reply.send(Err(PublishError::Unavailable(e.to_string())));
                }
            }
        }
        if moves.is_empty() {
            continue;
        }
        match membership.move_pointers(&moves).await {
            Ok(moved) => {
                let mut doomed = Vec::new();
                for ((p, m), moved) in movers.into_iter().zip(moves).zip(moved) {
                    if !moved {
                        doomed.push(m.pointer.object);
                        let why = format!("rule {} was taken over by another node (fencing token {})", p.rule, p.token);
                        let _ = p.reply.send(Err(PublishError::Fenced(why)));
                        continue;
                    }
                    let _ = p.reply.send(Ok(()));
                    let kept = published.entry(p.rule).or_default();
                    kept.push_back(m.pointer.object);
                    while kept.len() > OBJECTS_KEPT {
                        doomed.extend(kept.pop_front());
                    }
                }
                // Off the publishing path: when the store has just gone down,
                // each delete takes its retries, and the next checkpoints
                // (of every rule on this node) must not wait for them.
                tokio::spawn(delete_objects(store.clone(), doomed));
            }
            Err(e) => {
                for p in movers {
                    let _ = p.reply.send(Err(PublishError::Unavailable(e.to_string())));
                }
            }
        }
    }
}

/// Deletes checkpoint objects no pointer names any more; one that cannot be
/// deleted only takes space (until the rule is deleted and pruned).
async fn delete_objects(store: CheckpointStore, objects: Vec<String>) {
    futures_util::future::join_all(objects.iter().map(|o| store.delete(o)))
        .await
        .into_iter()
        .filter_map(Result::err)
        .for_each(|e| tracing::debug!("an old checkpoint object stays: {e}"));
}

/// What the reconcile loop works with.
pub struct Reconciler {
    membership: Arc<Membership>,
    engine: Arc<Engine>,
    host: Arc<Host>,
    store: Option<CheckpointStore>,
    owned: Arc<Owned>,
    /// The definition each local rule was created from.
    created: tokio::sync::Mutex<BTreeMap<String, RuleRecord>>,
}

/// How many rules are adopted or given up at once.
const CONCURRENT_MOVES: usize = 8;

impl Reconciler {
    pub fn new(
        membership: Arc<Membership>,
        engine: Arc<Engine>,
        host: Arc<Host>,
        store: Option<CheckpointStore>,
        owned: Arc<Owned>,
    ) -> Arc<Reconciler> {
        Arc::new(Reconciler { membership, engine, host, store, owned, created: Default::default() })
    }

    /// Runs until `shutdown`: reconciles at every change in etcd, and at
    /// least every two seconds.
    pub async fn run(self: Arc<Self>, shutdown: Shutdown) {
        let mut reachable = true;
        loop {
            let revision = match self.membership.view().await {
                Ok(view) => {
                    if !reachable {
                        tracing::info!("etcd is reachable again: reconciling the rules");
                    }
                    reachable = true;
                    let revision = view.revision;
                    self.reconcile(view).await;
                    revision
                }
                Err(e) => {
                    if reachable {
                        tracing::warn!("cannot read the cluster from etcd; the rules here keep running: {e}");
                    }
                    reachable = false;
                    0
                }
            };
            tokio::select! {
                _ = shutdown.wait() => return,
                _ = self.membership.changed(revision), if revision > 0 => {}
                _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            }
        }
    }

    /// Makes this node agree with `view` (see the module comment).
    pub async fn reconcile(&self, view: ClusterView) {
        let me = self.membership.node_id().to_string();
        let lease = self.membership.lease();
        self.follow_streams(&view).await;
        let demands: Vec<RuleDemand> =
            view.rules.iter().map(|(id, r)| RuleDemand { id: id.clone(), labels: node_labels(&r.rule) }).collect();
        let placement = oort_cluster::place(&demands, &view.nodes);
        let local: std::collections::BTreeSet<String> =
            self.engine.list_rules().await.into_iter().map(|(id, _)| id).collect();
        let mut give_up = Vec::new();
        let mut adopt = Vec::new();
        for id in &local {
            let owner = view.owners.get(id);
            let mine = owner.filter(|o| o.node == me && o.lease == lease);
            match (view.rules.get(id), mine) {
                // Deleted from the cluster, or lost to another node.
                (None, _) | (_, None) => give_up.push((id.clone(), mine.map(|o| o.token))),
                (Some(_), Some(o)) => {
                    let placed_here = placement.get(id).and_then(|n| n.as_deref()) == Some(me.as_str());
                    let placed_elsewhere = placement.get(id).is_some_and(|n| n.is_some()) && !placed_here;
                    if placed_elsewhere {
                        give_up.push((id.clone(), Some(o.token)));
                    }
                }
            }
        }
        for (id, record) in &view.rules {
            if local.contains(id) {
                continue;
            }
            let placed_here = placement.get(id).and_then(|n| n.as_deref()) == Some(me.as_str());
            match view.owners.get(id) {
                None if placed_here => adopt.push((id.clone(), record.clone(), None)),
                // Owned here but not running here: taken in an earlier round
                // whose adoption failed. Adopted again, or released when
                // another node should run it now.
                Some(o) if o.node == me && o.lease == lease => match placed_here {
                    true => adopt.push((id.clone(), record.clone(), Some(o.token))),
                    false => give_up.push((id.clone(), Some(o.token))),
                },
                _ => {}
            }
        }
        let view = &view;
        futures_util::stream::iter(give_up)
            .for_each_concurrent(CONCURRENT_MOVES, |(id, token)| async move {
                self.give_up(&id, token, view.rules.contains_key(&id)).await
            })
            .await;
        futures_util::stream::iter(adopt)
            .for_each_concurrent(CONCURRENT_MOVES, |(id, record, token)| async move {
                self.adopt(&id, &record, token, view).await
            })
            .await;
        self.follow_definitions(view, &me, lease).await;
    }

    /// Creates the streams etcd has and this node lacks, drops the ones it
    /// no longer has.
    async fn follow_streams(&self, view: &ClusterView) {
        let local = create_missing_streams(&self.engine, view).await;
        for name in local.iter().filter(|n| !view.streams.contains_key(*n)) {
            if let Err(e) = self.engine.drop_stream(name, false).await {
                tracing::warn!(stream = %name, "the cluster dropped the stream, but it stays here: {e}");
            }
        }
    }

    /// Applies changed definitions (`running`, or a new body) to the rules
    /// this node owns and runs.
    async fn follow_definitions(&self, view: &ClusterView, me: &str, lease: i64) {
        let owned: Vec<(String, RuleRecord)> = view
            .rules
            .iter()
            .filter(|(id, _)| view.owners.get(*id).is_some_and(|o| o.node == me && o.lease == lease))
            .map(|(id, r)| (id.clone(), r.clone()))
            .collect();
        for (id, record) in owned {
            let before = self.created.lock().await.get(&id).cloned();
            let Some(before) = before else { continue };
            if before == record {
                continue;
            }
            let outcome = if before.rule != record.rule {
                let body = with_running(&record);
                self.engine.update_rule(&id, &body).await
            } else if record.running {
                self.engine.start_rule(&id).await
            } else {
                self.engine.stop_rule(&id).await
            };
            match outcome {
                Ok(()) => {
                    self.created.lock().await.insert(id, record);
                }
                Err(e) => tracing::error!(rule = %id, "cannot apply the rule's new definition: {e}"),
            }
        }
    }

    /// Takes (unless `token` says it is owned already) and starts a rule
    /// from the checkpoint the cluster published for it.
    async fn adopt(&self, id: &str, record: &RuleRecord, token: Option<u64>, view: &ClusterView) {
        let token = match token {
            Some(t) => t,
            None => match self.membership.take(id).await {
                Ok(Some(t)) => t,
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!(rule = %id, "cannot take the rule: {e}");
                    return;
                }
            },
        };
        let checkpoint = match (view.pointers.get(id), &self.store) {
            (Some(p), Some(store)) => match store.download(&p.object).await {
                Ok(bytes) => Some((p.id, bytes)),
                Err(e) => {
                    tracing::error!(rule = %id, "cannot download checkpoint {} to restore the rule (retrying): {e}", p.id);
                    return;
                }
            },
            _ => None,
        };
        if let Err(e) = self.engine.install_checkpoint(id, checkpoint.as_ref().map(|(i, b)| (*i, b.as_slice()))) {
            tracing::error!(rule = %id, "cannot install the rule's published checkpoint: {e}");
            return;
        }
        self.host.set_rule_fencing_token(id, token);
        self.owned.set(id, token);
        match self.engine.create_rule(&with_running(record)).await {
            Ok(_) => {
                tracing::info!(rule = %id, token, checkpoint = checkpoint.map(|(i, _)| i), "rule taken over");
                self.created.lock().await.insert(id.to_string(), record.clone());
            }
            Err(e) => tracing::error!(rule = %id, "cannot start the rule taken over (retrying): {e}"),
        }
    }

    /// Stops and deletes a rule here; releases it when this node still owns
    /// it; forgets its published checkpoints when the cluster deleted it.
    async fn give_up(&self, id: &str, token: Option<u64>, still_defined: bool) {
        match self.engine.delete_rule(id).await {
            Err(e) if e.kind() != oort_engine::ErrorKind::NotFound => {
                tracing::warn!(rule = %id, "cannot stop the rule given up: {e}")
            }
            _ => {}
        }
        self.owned.remove(id);
        self.created.lock().await.remove(id);
        if let Some(token) = token {
            if let Err(e) = self.membership.release(id, token).await {
                tracing::warn!(rule = %id, "cannot release the rule; it moves when the lease expires: {e}");
            }
        }
        if !still_defined {
            if let Some(store) = &self.store {
                if let Err(e) = store.prune(id, &[]).await {
                    tracing::warn!(rule = %id, "the deleted rule's checkpoints stay in the store: {e}");
                }
            }
        }
        tracing::info!(rule = %id, released = token.is_some(), "rule given up");
    }
}

/// The labels a rule's node must carry (option `nodeLabels`, checked to be
/// an object of strings when the rule was created).
fn node_labels(rule: &serde_json::Value) -> BTreeMap<String, String> {
    let labels = rule.pointer("/options/nodeLabels").and_then(|l| l.as_object());
    labels
        .map(|l| l.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string()))).collect())
        .unwrap_or_default()
}

/// The rule's body with `triggered` set from the cluster's `running`.
fn with_running(record: &RuleRecord) -> Vec<u8> {
    let mut rule = record.rule.clone();
    if let Some(obj) = rule.as_object_mut() {
        obj.insert("triggered".into(), serde_json::Value::Bool(record.running));
    }
    serde_json::to_vec(&rule).expect("a rule serializes")
}

/// Creates the streams the cluster has and this node lacks, and returns the
/// names this node had before. The reconcile loop calls it, and so does the
/// API before it checks a rule: a stream created through another node a
/// moment ago may not have reached this one's loop yet.
pub(crate) async fn create_missing_streams(engine: &Engine, view: &ClusterView) -> Vec<String> {
    let local = engine.list_streams().await;
    for (name, sql) in &view.streams {
        if !local.contains(name) {
            if let Err(e) = engine.create_stream(sql).await {
                // The loop and the API may race to create it: that is fine.
                if !engine.list_streams().await.contains(name) {
                    tracing::error!(stream = %name, "cannot create the cluster's stream here: {e}");
                }
            }
        }
    }
    local
}
