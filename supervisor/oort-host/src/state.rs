//! The supervisor's copy of every extension instance's state, and who may touch it.
//!
//! Architecture invariant: a caller is identified only by the secret token the
//! supervisor issued to its process, never by what it claims. An instance id is
//! honoured only when it belongs to the token's process.
//!
//! State is kept in memory here; checkpointing it is the store's job.
//!
//! Writes made through the State service are *staged* until the batch they
//! belong to is accepted, exactly like the mutations an SDK ships with a batch:
//! a batch whose response never arrived never happened, so its writes must not
//! count either (otherwise the retried batch counts them twice). A write
//! belongs to the batch named by the call's `oort-seq` metadata when the
//! plugin sends it, and otherwise to the next batch response the supervisor
//! accepts for the instance. Reads see the instance's staged writes.

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
    #[error("batch {seq} of instance {instance:?} was abandoned; its writes are discarded")]
    Abandoned { instance: String, seq: u64 },
    #[error("state key {0:?} is reserved: keys may not start with NUL")]
    ReservedKey(String),
    #[error("instance {0:?} has more than {MAX_STAGED_KEYS} keys written in batches not yet accepted")]
    TooManyStaged(String),
}

/// Most distinct keys an instance may have written, summed over the batches
/// not yet accepted, through the State service. Repeated writes of one key in
/// one batch take one place, so only a plugin that writes ever new keys
/// without answering its batches reaches this.
pub const MAX_STAGED_KEYS: usize = 1 << 20;

/// One key's content.
#[derive(Debug, Clone, PartialEq)]
pub enum Slot {
    Value(Value),
    Counter(i64),
}

/// The operator id of the `site`-th plugin function call in a rule's SQL, the
/// second half of its instance id and state scope: `fn_<site>_<function>`,
/// with the function name lowercased because SQL function names are
/// case-insensitive, so that spelling a call `nodeUpper` or `NODEUPPER` keeps
/// one state.
pub fn function_operator(site: usize, function: &str) -> String {
    format!("fn_{site}_{}", function.to_lowercase())
}

/// A checkpointed instance id as it is named today. Checkpoints written
/// before function operator ids were lowercased name a function the way the
/// rule's SQL spelled it (`r1/fn_0_accumulateWordCount`); they are read under
/// the lowercased id, which is the same call site.
fn current_instance_id(id: String) -> String {
    let Some((rule, operator)) = id.split_once('/') else { return id };
    let Some((site, function)) = operator.strip_prefix("fn_").and_then(|rest| rest.split_once('_')) else { return id };
    match site.parse::<usize>() {
        Ok(site) if function.chars().any(|c| c.is_uppercase()) => {
            format!("{rule}/{}", function_operator(site, function))
        }
        _ => id,
    }
}

/// The key under which a checkpoint records an instance's state version,
/// next to its state entries. A plugin cannot write it: keys starting with
/// NUL are refused.
const STATE_VERSION_KEY: &str = "\0oort.state_version";

/// Identifies a supervised process across its restarts.
pub type ProcessKey = u64;

/// Writes through the State service with one batch tag, in arrival order of
/// their first write; the last write of a key wins (`None`: deleted).
struct Group {
    batch: Option<u64>,
    writes: HashMap<String, Option<Slot>>,
}

/// An instance's writes waiting for their batches, oldest first.
#[derive(Default)]
struct Staged {
    groups: Vec<Group>,
    /// Batches below this sequence number failed: writes tagged with them
    /// come from an abandoned attempt and are refused.
    floor: u64,
}

impl Staged {
    fn lookup(&self, key: &str) -> Option<&Option<Slot>> {
        self.groups.iter().rev().find_map(|g| g.writes.get(key))
    }

    fn len(&self) -> usize {
        self.groups.iter().map(|g| g.writes.len()).sum()
    }
}

#[derive(Default)]
struct Inner {
    tokens: HashMap<String, ProcessKey>,
    owners: HashMap<String, ProcessKey>,
    /// The accepted state: as of the last accepted batch of each instance.
    data: HashMap<String, HashMap<String, Slot>>,
    staged: HashMap<String, Staged>,
    /// The state version each instance's state is in (the plugin's
    /// `Describe.state_version` when it last opened); absent means 0.
    versions: HashMap<String, u32>,
}

impl Inner {
    /// What a read of the instance sees: its staged writes over its accepted state.
    fn view(&self, instance: &str, key: &str) -> Option<&Slot> {
        match self.staged.get(instance).and_then(|s| s.lookup(key)) {
            Some(staged) => staged.as_ref(),
            None => self.data.get(instance)?.get(key),
        }
    }

    /// Stages one write for the batch `batch` (or the next accepted one).
    fn stage(&mut self, instance: &str, batch: Option<u64>, key: &str, slot: Option<Slot>) -> Result<(), StateError> {
        if key.starts_with('\0') {
            return Err(StateError::ReservedKey(key.to_string()));
        }
        let staged = self.staged.entry(instance.to_string()).or_default();
        if let Some(seq) = batch.filter(|s| *s < staged.floor) {
            return Err(StateError::Abandoned { instance: instance.to_string(), seq });
        }
        let new_key = staged.groups.last().is_none_or(|g| g.batch != batch || !g.writes.contains_key(key));
        if new_key && staged.len() >= MAX_STAGED_KEYS {
            return Err(StateError::TooManyStaged(instance.to_string()));
        }
        match staged.groups.last_mut() {
            Some(g) if g.batch == batch => {
                g.writes.insert(key.to_string(), slot);
            }
            _ => staged.groups.push(Group { batch, writes: HashMap::from([(key.to_string(), slot)]) }),
        }
        Ok(())
    }
}

fn slot_of(entry: pb::state_entry::Entry) -> Slot {
    match entry {
        pb::state_entry::Entry::Value(v) => Slot::Value(v.into()),
        pb::state_entry::Entry::Counter(c) => Slot::Counter(c),
    }
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
        inner.staged.remove(instance);
        inner.versions.remove(instance);
    }

    /// The state version the instance's state is in (0: undeclared).
    pub fn state_version(&self, instance: &str) -> u32 {
        self.lock().versions.get(instance).copied().unwrap_or(0)
    }

    /// Records that the instance's state is now in `version`: a plugin of
    /// that state version opened it.
    pub fn set_state_version(&self, instance: &str, version: u32) {
        let mut inner = self.lock();
        match version {
            0 => inner.versions.remove(instance),
            v => inner.versions.insert(instance.to_string(), v),
        };
    }

    /// Replaces the instance's state with what a plugin migrated it to, in
    /// its state version `version`.
    pub fn replace_migrated(&self, instance: &str, entries: Vec<pb::StateEntry>, version: u32) {
        let map = entries.into_iter().filter_map(|e| Some((e.key, slot_of(e.entry?)))).collect();
        {
            let mut inner = self.lock();
            inner.data.insert(instance.to_string(), map);
            inner.staged.remove(instance);
        }
        self.set_state_version(instance, version);
    }

    /// Every instance's state of a rule, by instance id: what a checkpoint stores.
    pub fn snapshot_rule(&self, rule: &str) -> BTreeMap<String, Vec<pb::StateEntry>> {
        let prefix = format!("{rule}/");
        let ids: Vec<String> = self.lock().data.keys().filter(|k| k.starts_with(&prefix)).cloned().collect();
        ids.into_iter()
            .map(|id| {
                let mut entries = self.entries(&id);
                let version = self.state_version(&id);
                if version != 0 {
                    entries.push(pb::StateEntry {
                        key: STATE_VERSION_KEY.into(),
                        entry: Some(pb::state_entry::Entry::Counter(version.into())),
                    });
                }
                (id, entries)
            })
            .collect()
    }

    /// Replaces every instance's state of a rule with a checkpoint's.
    pub fn restore_rule(&self, rule: &str, instances: BTreeMap<String, Vec<pb::StateEntry>>) {
        let prefix = format!("{rule}/");
        let mut inner = self.lock();
        inner.data.retain(|k, _| !k.starts_with(&prefix));
        inner.staged.retain(|k, _| !k.starts_with(&prefix));
        inner.versions.retain(|k, _| !k.starts_with(&prefix));
        for (id, entries) in instances {
            let id = current_instance_id(id);
            let mut map: HashMap<String, Slot> =
                entries.into_iter().filter_map(|e| Some((e.key, slot_of(e.entry?)))).collect();
            if let Some(Slot::Counter(v)) = map.remove(STATE_VERSION_KEY) {
                if let Ok(v) = u32::try_from(v) {
                    inner.versions.insert(id.clone(), v);
                }
            }
            inner.data.insert(id, map);
        }
    }

    /// Forgets the state of every instance of a rule (the rule was deleted).
    pub fn forget_rule(&self, rule: &str) {
        let prefix = format!("{rule}/");
        let mut inner = self.lock();
        inner.owners.retain(|k, _| !k.starts_with(&prefix));
        inner.data.retain(|k, _| !k.starts_with(&prefix));
        inner.staged.retain(|k, _| !k.starts_with(&prefix));
        inner.versions.retain(|k, _| !k.starts_with(&prefix));
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

    /// Checks a plugin's state changes without applying them: no value over
    /// the size limit.
    pub fn check(mutations: &[pb::StateMutation]) -> Result<(), StateError> {
        for m in mutations {
            if m.key.starts_with('\0') {
                return Err(StateError::ReservedKey(m.key.clone()));
            }
            if let Some(pb::state_mutation::Op::Put(v)) = &m.op {
                let size = prost::Message::encoded_len(v);
                if size > MAX_VALUE_BYTES {
                    return Err(StateError::TooLarge { key: m.key.clone(), size });
                }
            }
        }
        Ok(())
    }

    /// Accepts the instance's batch `seq` (`None` for a source batch, which
    /// has no sequence number): first its writes through the State service
    /// (those tagged with `seq` or earlier, and untagged ones), then the
    /// mutations it shipped, in order. When a shipped mutation carries a value
    /// over the size limit, nothing applies and the staged writes stay.
    pub fn accept(
        &self,
        instance: &str,
        seq: Option<u64>,
        mutations: Vec<pb::StateMutation>,
    ) -> Result<(), StateError> {
        Self::check(&mutations)?;
        let mut inner = self.lock();
        let mut due = Vec::new();
        if let Some(staged) = inner.staged.get_mut(instance) {
            let (now, later): (Vec<Group>, Vec<Group>) =
                std::mem::take(&mut staged.groups).into_iter().partition(|g| match (g.batch, seq) {
                    (None, _) => true,
                    (Some(tag), Some(seq)) => tag <= seq,
                    (Some(_), None) => false,
                });
            staged.groups = later;
            due = now;
        }
        if due.is_empty() && mutations.is_empty() {
            return Ok(());
        }
        let map = inner.data.entry(instance.to_string()).or_default();
        for (key, slot) in due.into_iter().flat_map(|g| g.writes) {
            match slot {
                Some(slot) => map.insert(key, slot),
                None => map.remove(&key),
            };
        }
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

    /// Discards the instance's staged writes: the batches they belong to
    /// failed and the instance is being reopened with its accepted state.
    /// Writes that later arrive tagged with a batch below `floor` (the next
    /// sequence number to be sent) are refused, so a slow plugin still busy
    /// with an abandoned batch cannot slip its writes into the retry's.
    pub fn discard_staged(&self, instance: &str, floor: Option<u64>) {
        let mut inner = self.lock();
        if let Some(staged) = inner.staged.get_mut(instance) {
            staged.groups.clear();
        }
        if let Some(floor) = floor {
            let staged = inner.staged.entry(instance.to_string()).or_default();
            staged.floor = staged.floor.max(floor);
        }
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

    /// `PutState`, staged for `batch` (see the module comment).
    pub fn put(&self, instance: &str, key: &str, value: Value, batch: Option<u64>) -> Result<(), StateError> {
        let size = prost::Message::encoded_len(&pb::Value::from(value.clone()));
        if size > MAX_VALUE_BYTES {
            return Err(StateError::TooLarge { key: key.to_string(), size });
        }
        self.lock().stage(instance, batch, key, Some(Slot::Value(value)))
    }

    /// `GetState`: `None` when absent. A counter reads as an integer. Sees
    /// the instance's staged writes.
    pub fn get(&self, instance: &str, key: &str) -> Option<Value> {
        match self.lock().view(instance, key)? {
            Slot::Value(v) => Some(v.clone()),
            Slot::Counter(c) => Some(Value::Int(*c)),
        }
    }

    /// `DeleteState`, staged for `batch`.
    pub fn delete(&self, instance: &str, key: &str, batch: Option<u64>) -> Result<(), StateError> {
        self.lock().stage(instance, batch, key, None)
    }

    /// `IncrCounter`: creates the counter at 0, returns the new count. The
    /// new absolute value is staged for `batch`.
    pub fn incr(&self, instance: &str, key: &str, amount: i64, batch: Option<u64>) -> Result<i64, StateError> {
        let mut inner = self.lock();
        let current = match inner.view(instance, key) {
            None => 0,
            Some(Slot::Counter(c)) => *c,
            Some(Slot::Value(v)) => return Err(StateError::NotACounter { key: key.into(), found: v.type_name() }),
        };
        let next = current.checked_add(amount).ok_or_else(|| StateError::Overflow(key.into()))?;
        inner.stage(instance, batch, key, Some(Slot::Counter(next)))?;
        Ok(next)
    }

    /// `GetCounter`: 0 when absent. Sees the instance's staged writes.
    pub fn counter(&self, instance: &str, key: &str) -> Result<i64, StateError> {
        match self.lock().view(instance, key) {
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
    oort_core::names::hex(&bytes)
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

    fn counter_mutation(key: &str, c: i64) -> pb::StateMutation {
        pb::StateMutation { key: key.into(), op: Some(pb::state_mutation::Op::Counter(c)) }
    }

    #[test]
    fn a_state_version_travels_with_the_checkpoint_and_stays_out_of_the_plugins_view() {
        let r = StateRegistry::default();
        r.incr("r1/fn_0_f", "n", 5, None).unwrap();
        r.accept("r1/fn_0_f", Some(0), vec![]).unwrap();
        r.set_state_version("r1/fn_0_f", 2);
        let snapshot = r.snapshot_rule("r1");
        assert_eq!(snapshot["r1/fn_0_f"].len(), 2, "the entry and the version: {snapshot:?}");
        let other = StateRegistry::default();
        other.restore_rule("r1", snapshot);
        assert_eq!(other.state_version("r1/fn_0_f"), 2);
        assert_eq!(other.entries("r1/fn_0_f").len(), 1, "the version is not handed to the plugin");
        assert_eq!(other.counter("r1/fn_0_f", "n"), Ok(5));
        // A migration replaces the state and its version at once.
        other.replace_migrated("r1/fn_0_f", vec![], 3);
        assert_eq!((other.state_version("r1/fn_0_f"), other.entries("r1/fn_0_f").len()), (3, 0));
        // A plugin cannot write the version's key.
        assert_eq!(
            other.incr("r1/fn_0_f", STATE_VERSION_KEY, 1, None),
            Err(StateError::ReservedKey(STATE_VERSION_KEY.into()))
        );
        let forged = vec![counter_mutation(STATE_VERSION_KEY, 9)];
        assert!(matches!(StateRegistry::check(&forged), Err(StateError::ReservedKey(_))));
        other.forget_rule("r1");
        assert_eq!(other.state_version("r1/fn_0_f"), 0);
    }

    #[test]
    fn calls_and_shipped_mutations_share_one_view() {
        let r = StateRegistry::default();
        assert_eq!(r.incr("i", "n", 2, None), Ok(2));
        r.accept(
            "i",
            Some(0),
            vec![
                counter_mutation("n", 10),
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
    fn service_writes_wait_for_their_batch_and_die_with_it() {
        let r = StateRegistry::default();
        // Batch 0 is accepted: its writes count.
        assert_eq!(r.incr("i", "n", 1, None), Ok(1));
        assert_eq!(r.incr("i", "n", 1, None), Ok(2));
        assert!(r.entries("i").is_empty(), "nothing is accepted before the batch is");
        r.accept("i", Some(0), vec![]).unwrap();
        assert_eq!(r.entries("i").len(), 1);
        // Batch 1 fails: its writes vanish, reads saw them meanwhile.
        r.put("i", "s", Value::from("tmp"), None).unwrap();
        assert_eq!(r.incr("i", "n", 5, None), Ok(7));
        r.delete("i", "s", None).unwrap();
        assert_eq!(r.get("i", "s"), None, "reads see staged deletes");
        r.put("i", "s", Value::from("tmp2"), None).unwrap();
        assert_eq!(r.get("i", "s"), Some(Value::from("tmp2")), "reads see staged writes");
        r.discard_staged("i", Some(2));
        assert_eq!(r.counter("i", "n"), Ok(2));
        assert_eq!(r.get("i", "s"), None);
        // Its retry (batch 2) counts once.
        assert_eq!(r.incr("i", "n", 5, None), Ok(7));
        r.accept("i", Some(2), vec![]).unwrap();
        assert_eq!(r.counter("i", "n"), Ok(7));
        assert_eq!(r.entries("i")[0].entry, Some(pb::state_entry::Entry::Counter(7)));
    }

    #[test]
    fn tagged_writes_belong_to_exactly_their_batch() {
        let r = StateRegistry::default();
        // Batches 3 and 4 in flight; the plugin answered 3 and already wrote for 4.
        r.incr("i", "n", 1, Some(3)).unwrap();
        r.incr("i", "n", 1, Some(4)).unwrap();
        r.accept("i", Some(3), vec![]).unwrap();
        assert_eq!(r.entries("i")[0].entry, Some(pb::state_entry::Entry::Counter(1)));
        assert_eq!(r.counter("i", "n"), Ok(2), "batch 4's write is visible to reads");
        // Batch 4 fails: only its write goes; a late write for it is refused.
        r.discard_staged("i", Some(5));
        assert_eq!(r.counter("i", "n"), Ok(1));
        assert!(matches!(r.incr("i", "n", 1, Some(4)), Err(StateError::Abandoned { seq: 4, .. })));
        r.incr("i", "n", 1, Some(5)).unwrap();
        // A source batch (no sequence number) does not accept tagged writes.
        r.accept("i", None, vec![]).unwrap();
        assert_eq!(r.entries("i")[0].entry, Some(pb::state_entry::Entry::Counter(1)));
        r.accept("i", Some(5), vec![]).unwrap();
        assert_eq!(r.entries("i")[0].entry, Some(pb::state_entry::Entry::Counter(2)));
    }

    #[test]
    fn oversized_values_are_refused_not_truncated() {
        let r = StateRegistry::default();
        let big = Value::Bytes(vec![0; MAX_VALUE_BYTES + 1]);
        assert!(matches!(r.put("i", "k", big.clone(), None), Err(StateError::TooLarge { .. })));
        assert_eq!(r.get("i", "k"), None);
        let shipped = vec![
            counter_mutation("n", 1),
            pb::StateMutation { key: "k".into(), op: Some(pb::state_mutation::Op::Put(big.into())) },
        ];
        assert!(matches!(r.accept("i", Some(0), shipped), Err(StateError::TooLarge { .. })));
        assert_eq!(r.counter("i", "n"), Ok(0), "a refused batch applies nothing");
    }

    #[test]
    fn function_state_is_scoped_by_the_case_folded_name_and_old_checkpoints_follow() {
        assert_eq!(function_operator(0, "NODEUPPER"), function_operator(0, "nodeUpper"));
        assert_eq!(function_operator(2, "accumulateWordCount"), "fn_2_accumulatewordcount");
        let r = StateRegistry::default();
        let entry = |c| vec![pb::StateEntry { key: "n".into(), entry: Some(pb::state_entry::Entry::Counter(c)) }];
        let old = BTreeMap::from([
            ("r1/fn_0_accumulateWordCount".to_string(), entry(3)),
            ("r1/sink_0_File".to_string(), entry(4)),
            ("r1/fn_x_Odd".to_string(), entry(5)),
        ]);
        r.restore_rule("r1", old);
        assert_eq!(r.counter("r1/fn_0_accumulatewordcount", "n"), Ok(3));
        assert_eq!(r.counter("r1/sink_0_File", "n"), Ok(4), "only function operators changed their spelling");
        assert_eq!(r.counter("r1/fn_x_Odd", "n"), Ok(5));
    }

    #[test]
    fn a_rules_state_snapshots_and_restores_as_a_whole() {
        let r = StateRegistry::default();
        r.accept("r1/fn_0", Some(0), vec![counter_mutation("n", 5)]).unwrap();
        r.put("r1/sink_0", "k", Value::from("v"), None).unwrap();
        r.accept("r1/sink_0", Some(0), vec![]).unwrap();
        r.accept("r2/fn_0", Some(0), vec![counter_mutation("n", 7)]).unwrap();
        r.incr("r1/fn_0", "n", 1000, None).unwrap();
        let snap = r.snapshot_rule("r1");
        assert_eq!(snap.len(), 2);
        assert_eq!(snap["r1/fn_0"][0].entry, Some(pb::state_entry::Entry::Counter(5)), "staged writes are not in it");
        r.incr("r1/fn_0", "n", 100, None).unwrap();
        r.accept("r1/fn_1", Some(0), vec![counter_mutation("m", 1)]).unwrap();
        r.restore_rule("r1", snap);
        assert_eq!(r.counter("r1/fn_0", "n"), Ok(5), "staged writes are gone too");
        assert_eq!(r.counter("r1/fn_1", "m"), Ok(0), "state newer than the snapshot is gone");
        assert_eq!(r.get("r1/sink_0", "k"), Some(Value::from("v")));
        assert_eq!(r.counter("r2/fn_0", "n"), Ok(7), "other rules are untouched");
    }
}
