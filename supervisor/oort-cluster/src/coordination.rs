//! What the nodes of a cluster agree on through etcd besides membership:
//! stream and rule definitions, which node owns each rule, and where each
//! rule's newest published checkpoint is.
//!
//! | key | value | bound to |
//! |---|---|---|
//! | `streams/<name>` | the `CREATE STREAM` statement | — |
//! | `rules/<id>` | [`RuleRecord`] (JSON) | — |
//! | `owners/<rule>` | the owning node's id | the owner's lease |
//! | `checkpoints/<rule>` | [`Pointer`] (JSON) | — |
//!
//! The owner key's mod revision is the owner's *fencing token*: etcd's
//! revisions only grow, so a node that takes a rule over holds a higher
//! token than every node that had it before, and a pointer move compares
//! it, so only the current owner can publish a checkpoint.

use std::collections::BTreeMap;

use etcd_client::{Compare, CompareOp, DeleteOptions, EventType, GetOptions, PutOptions, Txn, TxnOp, WatchOptions};
use serde::{Deserialize, Serialize};

use crate::{etcd, retrying, ClusterError, Membership, NodeRecord, PREFIX};

/// A rule's definition in the cluster: the body it was created with and
/// whether it should run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleRecord {
    /// The rule as given to `POST /rules` (eKuiper's JSON).
    pub rule: serde_json::Value,
    pub running: bool,
}

/// Where a rule's newest published checkpoint is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pointer {
    pub id: u64,
    /// The object's name in the checkpoint store.
    pub object: String,
    /// The node that wrote it.
    pub node: String,
}

/// A rule's owner.
#[derive(Debug, Clone, PartialEq)]
pub struct Owner {
    pub node: String,
    /// The owner key's mod revision: the owner's fencing token.
    pub token: u64,
    pub lease: i64,
}

/// Everything the cluster agrees on, read at one etcd revision.
#[derive(Debug, Clone, Default)]
pub struct ClusterView {
    pub revision: i64,
    pub nodes: Vec<NodeRecord>,
    pub streams: BTreeMap<String, String>,
    pub rules: BTreeMap<String, RuleRecord>,
    pub owners: BTreeMap<String, Owner>,
    pub pointers: BTreeMap<String, Pointer>,
}

/// A checkpoint to publish: the pointer moves only while `token` is still
/// the owner key's revision.
#[derive(Debug, Clone)]
pub struct PointerMove {
    pub rule: String,
    pub token: u64,
    pub pointer: Pointer,
}

/// Whether a definition must be new or must exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    Absent,
    Present,
}

/// etcd's default `--max-txn-ops` is 128: a batch of pointer moves (a compare
/// and a put per rule) stays under it.
const MOVES_PER_TXN: usize = 60;

fn key(kind: &str, name: &str) -> String {
    format!("{PREFIX}{kind}/{name}")
}

impl Membership {
    async fn txn(&self, txn: Txn) -> Result<etcd_client::TxnResponse, etcd_client::Error> {
        retrying(|| {
            let mut client = self.client.clone();
            let txn = txn.clone();
            async move { client.txn(txn).await }
        })
        .await
    }

    /// Reads the whole cluster state in one request (one revision).
    pub async fn view(&self) -> Result<ClusterView, ClusterError> {
        let resp = retrying(|| {
            let mut client = self.client.clone();
            async move { client.get(PREFIX, Some(GetOptions::new().with_prefix())).await }
        })
        .await
        .map_err(etcd("read the cluster"))?;
        let mut view = ClusterView { revision: resp.header().map_or(0, |h| h.revision()), ..ClusterView::default() };
        for kv in resp.kvs() {
            let Ok(k) = kv.key_str() else { continue };
            let Some((kind, name)) = k.strip_prefix(PREFIX).and_then(|rest| rest.split_once('/')) else { continue };
            let name = name.to_string();
            let bad = |what: &str| tracing::warn!(key = k, "a {what} in etcd cannot be read; skipped");
            match kind {
                "nodes" => match serde_json::from_slice(kv.value()) {
                    Ok(n) => view.nodes.push(n),
                    Err(_) => bad("node record"),
                },
                "streams" => match kv.value_str() {
                    Ok(sql) => {
                        view.streams.insert(name, sql.to_string());
                    }
                    Err(_) => bad("stream"),
                },
                "rules" => match serde_json::from_slice(kv.value()) {
                    Ok(r) => {
                        view.rules.insert(name, r);
                    }
                    Err(_) => bad("rule"),
                },
                "owners" => {
                    let node = String::from_utf8_lossy(kv.value()).into_owned();
                    view.owners.insert(name, Owner { node, token: kv.mod_revision() as u64, lease: kv.lease() });
                }
                "checkpoints" => match serde_json::from_slice(kv.value()) {
                    Ok(p) => {
                        view.pointers.insert(name, p);
                    }
                    Err(_) => bad("checkpoint pointer"),
                },
                _ => {}
            }
        }
        view.nodes.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(view)
    }

    /// Stores a stream's statement; `false` when `expect` did not hold.
    pub async fn put_stream(&self, name: &str, sql: &str, expect: Expect) -> Result<bool, ClusterError> {
        self.put_checked(key("streams", name), sql.as_bytes().to_vec(), expect).await
    }

    /// Stores a rule's definition; `false` when `expect` did not hold.
    pub async fn put_rule(&self, id: &str, record: &RuleRecord, expect: Expect) -> Result<bool, ClusterError> {
        let value = serde_json::to_vec(record).expect("a rule record serializes");
        self.put_checked(key("rules", id), value, expect).await
    }

    /// Replaces an existing rule's definition with a new one (`PUT
    /// /rules/{id}`): a new rule, whose published checkpoints no longer
    /// apply, so its pointer goes in the same transaction. `false` when the
    /// rule does not exist.
    pub async fn replace_rule(&self, id: &str, record: &RuleRecord) -> Result<bool, ClusterError> {
        let value = serde_json::to_vec(record).expect("a rule record serializes");
        let rule = key("rules", id);
        let txn = Txn::new()
            .when([Compare::create_revision(rule.clone(), CompareOp::Greater, 0)])
            .and_then([TxnOp::put(rule, value, None), TxnOp::delete(key("checkpoints", id), None::<DeleteOptions>)]);
        Ok(self.txn(txn).await.map_err(etcd("replace a rule"))?.succeeded())
    }

    async fn put_checked(&self, key: String, value: Vec<u8>, expect: Expect) -> Result<bool, ClusterError> {
        let op = match expect {
            Expect::Absent => CompareOp::Equal,
            Expect::Present => CompareOp::Greater,
        };
        let txn =
            Txn::new().when([Compare::create_revision(key.clone(), op, 0)]).and_then([TxnOp::put(key, value, None)]);
        let resp = self.txn(txn).await.map_err(etcd("put a definition"))?;
        Ok(resp.succeeded())
    }

    /// Deletes a stream's definition; `false` when there was none.
    pub async fn delete_stream(&self, name: &str) -> Result<bool, ClusterError> {
        let resp = retrying(|| {
            let mut client = self.client.clone();
            async move { client.delete(key("streams", name), None).await }
        })
        .await
        .map_err(etcd("delete a stream"))?;
        Ok(resp.deleted() > 0)
    }

    /// Deletes a rule's definition and its checkpoint pointer; `false` when
    /// there was none. Its owner stops it and releases it.
    pub async fn delete_rule(&self, id: &str) -> Result<bool, ClusterError> {
        let txn = Txn::new().and_then([
            TxnOp::delete(key("rules", id), None::<DeleteOptions>),
            TxnOp::delete(key("checkpoints", id), None::<DeleteOptions>),
        ]);
        let resp = self.txn(txn).await.map_err(etcd("delete a rule"))?;
        let deleted = resp.op_responses().first().is_some_and(|r| match r {
            etcd_client::TxnOpResponse::Delete(d) => d.deleted() > 0,
            _ => false,
        });
        Ok(deleted)
    }

    /// Takes a rule that no node owns, bound to this node's lease; returns
    /// the fencing token, or `None` when another node holds it.
    pub async fn take(&self, rule: &str) -> Result<Option<u64>, ClusterError> {
        let owner = key("owners", rule);
        let lease = self.lease();
        let txn = Txn::new()
            .when([Compare::create_revision(owner.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(owner, self.record.id.clone(), Some(PutOptions::new().with_lease(lease)))]);
        let resp = self.txn(txn).await.map_err(etcd("take a rule"))?;
        Ok(resp.succeeded().then(|| resp.header().map_or(0, |h| h.revision()) as u64))
    }

    /// Gives a rule up, if this node still holds it under `token`.
    pub async fn release(&self, rule: &str, token: u64) -> Result<(), ClusterError> {
        let owner = key("owners", rule);
        let txn = Txn::new()
            .when([Compare::mod_revision(owner.clone(), CompareOp::Equal, token as i64)])
            .and_then([TxnOp::delete(owner, None::<DeleteOptions>)]);
        self.txn(txn).await.map_err(etcd("release a rule"))?;
        Ok(())
    }

    /// Moves checkpoint pointers, each only if its rule's owner key still
    /// has the mover's token: batched, one transaction for up to 60 rules;
    /// when a batch fails because some rule was lost, its moves are retried
    /// one by one. Returns, per move, whether it was published (`false`:
    /// fenced, the rule belongs to another node now).
    pub async fn move_pointers(&self, moves: &[PointerMove]) -> Result<Vec<bool>, ClusterError> {
        let mut out = Vec::with_capacity(moves.len());
        for chunk in moves.chunks(MOVES_PER_TXN) {
            if self.move_together(chunk).await? {
                out.extend(std::iter::repeat_n(true, chunk.len()));
                continue;
            }
            for one in chunk {
                let moved = chunk.len() > 1 && self.move_together(std::slice::from_ref(one)).await?;
                out.push(moved);
            }
        }
        Ok(out)
    }

    async fn move_together(&self, moves: &[PointerMove]) -> Result<bool, ClusterError> {
        let compares = moves
            .iter()
            .map(|m| Compare::mod_revision(key("owners", &m.rule), CompareOp::Equal, m.token as i64))
            .collect::<Vec<_>>();
        let puts = moves
            .iter()
            .map(|m| TxnOp::put(key("checkpoints", &m.rule), serde_json::to_vec(&m.pointer).expect("serializes"), None))
            .collect::<Vec<_>>();
        let resp =
            self.txn(Txn::new().when(compares).and_then(puts)).await.map_err(etcd("move checkpoint pointers"))?;
        Ok(resp.succeeded())
    }

    /// Resolves at the next change of a node, stream, rule or owner (or when
    /// the watch breaks, so that the caller reads again either way). Moves
    /// of checkpoint pointers, many per second, are not changes here.
    pub async fn changed(&self, after_revision: i64) {
        let mut client = self.client.clone();
        let options = WatchOptions::new().with_prefix().with_start_revision(after_revision + 1);
        let Ok(mut events) = client.watch(PREFIX, Some(options)).await else {
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            return;
        };
        let pointers = format!("{PREFIX}checkpoints/");
        while let Ok(Some(resp)) = events.message().await {
            let relevant = |e: &etcd_client::Event| {
                matches!(e.event_type(), EventType::Put | EventType::Delete)
                    && e.kv().is_some_and(|kv| !kv.key().starts_with(pointers.as_bytes()))
            };
            if resp.events().iter().any(relevant) {
                return;
            }
            if resp.canceled() {
                return;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}
