//! The supervisor's copy of every extension instance's state, and who may touch it.
//!
//! Architecture invariant: a caller is identified only by the secret token the
//! supervisor issued to its process, never by what it claims. An instance id is
//! honoured only when it belongs to the token's process.
//!
//! State is kept in memory here; checkpointing it is the store's job.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use oort_proto::plugin::v1 as pb;
use oort_proto::Value;

/// Largest value `PutState` accepts, in bytes of its wire encoding.
pub const MAX_VALUE_BYTES: usize = 1 << 20;

/// Why a state call was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StateError {
    #[error("unknown or revoked state token")]
    BadToken,
    #[error("instance {0:?} does not belong to the calling process")]
    NotYours(String),
    #[error("state key {key:?} holds a {found} value, not a counter")]
    NotACounter { key: String, found: &'static str },
    #[error("counter {0:?} would overflow")]
    Overflow(String),
    #[error("value for key {key:?} is {size} bytes, over the {MAX_VALUE_BYTES}-byte limit")]
    TooLarge { key: String, size: usize },
}

/// One key's content.
#[derive(Debug, Clone, PartialEq)]
pub enum Slot {
    Value(Value),
    Counter(i64),
}

/// Identifies a supervised process across its restarts.
pub type ProcessKey = u64;

#[derive(Default)]
struct Inner {
    tokens: HashMap<String, ProcessKey>,
    owners: HashMap<String, ProcessKey>,
    data: HashMap<String, HashMap<String, Slot>>,
}

/// Every instance's state and every live token.
#[derive(Default)]
pub struct StateRegistry {
    inner: Mutex<Inner>,
}

impl StateRegistry {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Issues a fresh secret token for one life of process `key`.
    pub fn issue_token(&self, key: ProcessKey) -> String {
        let token = new_token();
        self.lock().tokens.insert(token.clone(), key);
        token
    }

    /// Forgets a token: its process is gone.
    pub fn revoke_token(&self, token: &str) {
        self.lock().tokens.remove(token);
    }

    /// Records that `instance` is served by process `key`.
    pub fn assign(&self, instance: &str, key: ProcessKey) {
        self.lock().owners.insert(instance.to_string(), key);
    }

    /// Forgets an instance and its state (a rule stopped at qos 0, or deleted).
    pub fn forget(&self, instance: &str) {
        let mut inner = self.lock();
        inner.owners.remove(instance);
        inner.data.remove(instance);
    }

    /// Every instance's state of a rule, by instance id: what a checkpoint stores.
    pub fn snapshot_rule(&self, rule: &str) -> BTreeMap<String, Vec<pb::StateEntry>> {
        let prefix = format!("{rule}/");
        let ids: Vec<String> = self.lock().data.keys().filter(|k| k.starts_with(&prefix)).cloned().collect();
        ids.into_iter()
            .map(|id| {
                let entries = self.entries(&id);
                (id, entries)
            })
            .collect()
    }

    /// Replaces every instance's state of a rule with a checkpoint's.
    pub fn restore_rule(&self, rule: &str, instances: BTreeMap<String, Vec<pb::StateEntry>>) {
        let prefix = format!("{rule}/");
        let mut inner = self.lock();
        inner.data.retain(|k, _| !k.starts_with(&prefix));
        for (id, entries) in instances {
            let map = entries
                .into_iter()
                .filter_map(|e| {
                    let slot = match e.entry? {
                        pb::state_entry::Entry::Value(v) => Slot::Value(v.into()),
                        pb::state_entry::Entry::Counter(c) => Slot::Counter(c),
                    };
                    Some((e.key, slot))
                })
                .collect();
            inner.data.insert(id, map);
        }
    }

    /// Forgets the state of every instance of a rule (the rule was deleted).
    pub fn forget_rule(&self, rule: &str) {
        let prefix = format!("{rule}/");
        let mut inner = self.lock();
        inner.owners.retain(|k, _| !k.starts_with(&prefix));
        inner.data.retain(|k, _| !k.starts_with(&prefix));
    }

    /// The instance's state, as handed to a (re)opened instance.
    pub fn entries(&self, instance: &str) -> Vec<pb::StateEntry> {
        let inner = self.lock();
        let Some(map) = inner.data.get(instance) else { return Vec::new() };
        let mut entries: Vec<pb::StateEntry> = map
            .iter()
            .map(|(k, slot)| pb::StateEntry {
                key: k.clone(),
                entry: Some(match slot {
                    Slot::Value(v) => pb::state_entry::Entry::Value(v.clone().into()),
                    Slot::Counter(c) => pb::state_entry::Entry::Counter(*c),
                }),
            })
            .collect();
        entries.sort_by(|a, b| a.key.cmp(&b.key));
        entries
    }

    /// Applies the mutations an SDK shipped with a batch, in order, or none of
    /// them when one carries a value over the size limit.
    pub fn apply(&self, instance: &str, mutations: Vec<pb::StateMutation>) -> Result<(), StateError> {
        if mutations.is_empty() {
            return Ok(());
        }
        for m in &mutations {
            if let Some(pb::state_mutation::Op::Put(v)) = &m.op {
                let size = prost::Message::encoded_len(v);
                if size > MAX_VALUE_BYTES {
                    return Err(StateError::TooLarge { key: m.key.clone(), size });
                }
            }
        }
        let mut inner = self.lock();
        let map = inner.data.entry(instance.to_string()).or_default();
        for m in mutations {
            match m.op {
                Some(pb::state_mutation::Op::Put(v)) => {
                    map.insert(m.key, Slot::Value(v.into()));
                }
                Some(pb::state_mutation::Op::Delete(_)) => {
                    map.remove(&m.key);
                }
                Some(pb::state_mutation::Op::Counter(c)) => {
                    map.insert(m.key, Slot::Counter(c));
                }
                None => {}
            }
        }
        Ok(())
    }

    /// Checks that `token` may act on `instance`.
    pub fn authorize(&self, token: &str, instance: &str) -> Result<(), StateError> {
        let inner = self.lock();
        let key = inner.tokens.get(token).ok_or(StateError::BadToken)?;
        match inner.owners.get(instance) {
            Some(owner) if owner == key => Ok(()),
            _ => Err(StateError::NotYours(instance.to_string())),
        }
    }

    /// `PutState`.
    pub fn put(&self, instance: &str, key: &str, value: Value) -> Result<(), StateError> {
        let size = prost::Message::encoded_len(&pb::Value::from(value.clone()));
        if size > MAX_VALUE_BYTES {
            return Err(StateError::TooLarge { key: key.to_string(), size });
        }
        self.lock().data.entry(instance.to_string()).or_default().insert(key.to_string(), Slot::Value(value));
        Ok(())
    }

    /// `GetState`: `None` when absent. A counter reads as an integer.
    pub fn get(&self, instance: &str, key: &str) -> Option<Value> {
        match self.lock().data.get(instance)?.get(key)? {
            Slot::Value(v) => Some(v.clone()),
            Slot::Counter(c) => Some(Value::Int(*c)),
        }
    }

    /// `DeleteState`.
    pub fn delete(&self, instance: &str, key: &str) {
        if let Some(map) = self.lock().data.get_mut(instance) {
            map.remove(key);
        }
    }

    /// `IncrCounter`: creates the counter at 0, returns the new count.
    pub fn incr(&self, instance: &str, key: &str, amount: i64) -> Result<i64, StateError> {
        let mut inner = self.lock();
        let map = inner.data.entry(instance.to_string()).or_default();
        let current = match map.get(key) {
            None => 0,
            Some(Slot::Counter(c)) => *c,
            Some(Slot::Value(v)) => return Err(StateError::NotACounter { key: key.into(), found: v.type_name() }),
        };
        let next = current.checked_add(amount).ok_or_else(|| StateError::Overflow(key.into()))?;
        map.insert(key.to_string(), Slot::Counter(next));
        Ok(next)
    }

    /// `GetCounter`: 0 when absent.
    pub fn counter(&self, instance: &str, key: &str) -> Result<i64, StateError> {
        match self.lock().data.get(instance).and_then(|m| m.get(key)) {
            None => Ok(0),
            Some(Slot::Counter(c)) => Ok(*c),
            Some(Slot::Value(v)) => Err(StateError::NotACounter { key: key.into(), found: v.type_name() }),
        }
    }
}

/// 256 random bits, hex-encoded.
fn new_token() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    crate::catalog::hex(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_scope_instances_to_their_process() {
        let r = StateRegistry::default();
        let a = r.issue_token(1);
        let b = r.issue_token(2);
        r.assign("rule1/op", 1);
        r.assign("rule2/op", 2);
        assert_eq!(r.authorize(&a, "rule1/op"), Ok(()));
        assert_eq!(r.authorize(&b, "rule1/op"), Err(StateError::NotYours("rule1/op".into())));
        assert_eq!(r.authorize("guess", "rule1/op"), Err(StateError::BadToken));
        r.revoke_token(&a);
        assert_eq!(r.authorize(&a, "rule1/op"), Err(StateError::BadToken));
    }

    #[test]
    fn calls_and_shipped_mutations_share_one_view() {
        let r = StateRegistry::default();
        assert_eq!(r.incr("i", "n", 2), Ok(2));
        r.apply(
            "i",
            vec![
                pb::StateMutation { key: "n".into(), op: Some(pb::state_mutation::Op::Counter(10)) },
                pb::StateMutation { key: "s".into(), op: Some(pb::state_mutation::Op::Put(Value::from("x").into())) },
            ],
        )
        .unwrap();
        assert_eq!(r.counter("i", "n"), Ok(10));
        assert_eq!(r.get("i", "s"), Some(Value::from("x")));
        assert!(matches!(r.counter("i", "s"), Err(StateError::NotACounter { .. })));
        assert_eq!(r.get("other", "n"), None);
        assert_eq!(r.entries("i").len(), 2);
        r.forget("i");
        assert!(r.entries("i").is_empty());
    }

    #[test]
    fn oversized_values_are_refused_not_truncated() {
        let r = StateRegistry::default();
        let big = Value::Bytes(vec![0; MAX_VALUE_BYTES + 1]);
        assert!(matches!(r.put("i", "k", big.clone()), Err(StateError::TooLarge { .. })));
        assert_eq!(r.get("i", "k"), None);
        let shipped = vec![
            pb::StateMutation { key: "n".into(), op: Some(pb::state_mutation::Op::Counter(1)) },
            pb::StateMutation { key: "k".into(), op: Some(pb::state_mutation::Op::Put(big.into())) },
        ];
        assert!(matches!(r.apply("i", shipped), Err(StateError::TooLarge { .. })));
        assert_eq!(r.counter("i", "n"), Ok(0), "a refused batch applies nothing");
    }

    #[test]
    fn a_rules_state_snapshots_and_restores_as_a_whole() {
        let r = StateRegistry::default();
        r.incr("r1/fn_0", "n", 5).unwrap();
        r.put("r1/sink_0", "k", Value::from("v")).unwrap();
        r.incr("r2/fn_0", "n", 7).unwrap();
        let snap = r.snapshot_rule("r1");
        assert_eq!(snap.len(), 2);
        r.incr("r1/fn_0", "n", 100).unwrap();
        r.incr("r1/fn_1", "m", 1).unwrap();
        r.restore_rule("r1", snap);
        assert_eq!(r.counter("r1/fn_0", "n"), Ok(5));
        assert_eq!(r.counter("r1/fn_1", "m"), Ok(0), "state newer than the snapshot is gone");
        assert_eq!(r.get("r1/sink_0", "k"), Some(Value::from("v")));
        assert_eq!(r.counter("r2/fn_0", "n"), Ok(7), "other rules are untouched");
    }
}
