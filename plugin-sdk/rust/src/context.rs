//! The per-instance context: identity, logging and state.
//!
//! The instance's state lives here, in the plugin process: the instance is the
//! only writer of its own scope, so reads never leave the process. Every change
//! is also recorded as a mutation, and the server ships the recorded mutations
//! to the supervisor with the batch they were made in. The supervisor therefore
//! always holds "state as of the last batch it accepted" without a round trip
//! per call.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use oort_proto::plugin::v1 as pb;
use oort_proto::Value;

/// Why a state call failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StateError {
    /// `get_counter` or `incr_counter` on a key that holds a plain value.
    #[error("state key {key:?} holds a {found} value, not a counter")]
    NotACounter {
        /// The key that was asked for.
        key: String,
        /// The type of value it holds.
        found: &'static str,
    },
    /// `incr_counter` would leave the signed 64-bit range.
    #[error("counter {key:?} would overflow")]
    Overflow {
        /// The counter's key.
        key: String,
    },
    /// `put_state` of a value whose encoding exceeds [`MAX_VALUE_BYTES`].
    #[error("value for state key {key:?} is {size} bytes, over the {MAX_VALUE_BYTES}-byte limit")]
    TooLarge {
        /// The key.
        key: String,
        /// The value's encoded size.
        size: usize,
    },
}

/// The largest value `put_state` accepts, in bytes of its wire encoding; the
/// supervisor refuses a batch that carries a larger one.
pub const MAX_VALUE_BYTES: usize = 1 << 20;

/// What one state key holds: a value (`put_state`) or a counter
/// (`incr_counter`). A state migration receives and returns these.
#[derive(Debug, Clone, PartialEq)]
pub enum StateSlot {
    /// A value written with `put_state`.
    Value(Value),
    /// A counter kept with `incr_counter`.
    Counter(i64),
}

use StateSlot as Slot;

/// State written by another state version of this plugin, handed to the
/// hook registered with [`crate::Plugin::migrate_state`] to convert before an
/// instance opens with it (a plugin upgrade or rollback).
#[derive(Debug, Clone)]
pub struct StateMigration {
    /// The exported symbol whose instance wrote the state: a function's SQL
    /// name, or the plugin's name for its source or sink.
    pub symbol: String,
    /// The state version the entries were written under (0: undeclared).
    pub from_version: u32,
    /// The rule the instance belongs to, for the plugin's log.
    pub rule_id: String,
    /// The operator within the rule (`source`, `fn_0_<function>`, `sink_0_<sink>`).
    pub operator_id: String,
    /// Every key the instance held.
    pub state: std::collections::BTreeMap<String, StateSlot>,
}

impl StateMigration {
    pub(crate) fn from_wire(req: pb::MigrateStateRequest) -> StateMigration {
        StateMigration {
            symbol: req.symbol,
            from_version: req.from_version,
            rule_id: req.rule_id,
            operator_id: req.operator_id,
            state: req.state.into_iter().filter_map(|e| Some((e.key, slot_of(e.entry?)))).collect(),
        }
    }
}

fn slot_of(entry: pb::state_entry::Entry) -> StateSlot {
    match entry {
        pb::state_entry::Entry::Counter(c) => Slot::Counter(c),
        pb::state_entry::Entry::Value(v) => Slot::Value(v.into()),
    }
}

/// A migrated state as the supervisor takes it back.
pub(crate) fn state_to_wire(state: std::collections::BTreeMap<String, StateSlot>) -> Vec<pb::StateEntry> {
    state
        .into_iter()
        .map(|(key, slot)| pb::StateEntry {
            key,
            entry: Some(match slot {
                Slot::Counter(c) => pb::state_entry::Entry::Counter(c),
                Slot::Value(v) => pb::state_entry::Entry::Value(v.into()),
            }),
        })
        .collect()
}

#[derive(Default)]
struct StateStore {
    slots: HashMap<String, Slot>,
    pending: Vec<pb::StateMutation>,
    /// Problems reported with [`Context::report_exception`], not yet shipped.
    exceptions: Vec<String>,
}

/// At most this many reported exceptions wait for the next batch; older ones
/// are dropped so a flood cannot exhaust memory.
const MAX_PENDING_EXCEPTIONS: usize = 64;

/// What an extension instance knows about itself, and its state.
///
/// One context exists per opened instance: per rule, operator and (for
/// functions) call site. A singleton object shared by several rules receives a
/// different context for each of them, so their state never mixes.
pub struct Context {
    rule_id: String,
    instance_id: String,
    operator_id: String,
    logger: Logger,
    state: Mutex<StateStore>,
    checkpointing: bool,
    fencing_token: u64,
    checkpoint_wanted: AtomicBool,
    /// A connection state set since the last batch, not yet sent.
    connection: Mutex<Option<pb::Connection>>,
    /// Calls waiting for the instance's lock (a source's `Checkpointed`),
    /// which its read loop lets go first: a loop that takes the lock again
    /// the moment it released it would otherwise keep them waiting.
    pub(crate) callers_waiting: AtomicUsize,
}

/// The state of a source's connection to its upstream, as eKuiper reports it
/// in a rule's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionState {
    /// Connected and receiving.
    Connected,
    /// Trying to connect (first connection, or after a loss).
    Connecting,
    /// Not connected, and not trying now.
    Disconnected,
}

impl Context {
    pub(crate) fn new(spec: pb::InstanceSpec) -> Context {
        let mut store = StateStore::default();
        for entry in spec.state {
            let Some(slot) = entry.entry.map(slot_of) else { continue };
            store.slots.insert(entry.key, slot);
        }
        let logger = Logger { rule_id: spec.rule_id.clone(), instance_id: spec.instance_id.clone() };
        Context {
            rule_id: spec.rule_id,
            instance_id: spec.instance_id,
            operator_id: spec.operator_id,
            logger,
            state: Mutex::new(store),
            checkpointing: spec.checkpointing,
            fencing_token: spec.fencing_token,
            checkpoint_wanted: AtomicBool::new(false),
            connection: Mutex::new(None),
            callers_waiting: AtomicUsize::new(0),
        }
    }

    /// Reports the source's connection to its upstream (`message`: why it is
    /// not connected, e.g. the last error; empty when connected). It goes with
    /// the next batch, or alone; call it on every change, from any thread.
    pub fn set_connection(&self, state: ConnectionState, message: &str) {
        let state = match state {
            ConnectionState::Connected => pb::connection::State::Connected,
            ConnectionState::Connecting => pb::connection::State::Connecting,
            ConnectionState::Disconnected => pb::connection::State::Disconnected,
        };
        let update = pb::Connection { state: state as i32, message: message.to_string() };
        *self.connection.lock().unwrap_or_else(|e| e.into_inner()) = Some(update);
    }

    pub(crate) fn take_connection(&self) -> Option<pb::Connection> {
        self.connection.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    /// Whether the rule checkpoints (qos 1 or 2). A source is then told of
    /// every durable checkpoint ([`crate::Source::checkpointed`]) and may hold
    /// its upstream's acknowledgements until one covers them.
    pub fn checkpointing(&self) -> bool {
        self.checkpointing
    }

    /// In cluster mode, the fencing token of the node that runs the rule
    /// (0 outside a cluster). A node that takes a rule over has a higher
    /// token than every node that ran it before, so a sink writing where
    /// another node can also write keeps the highest token it has seen
    /// beside its output and refuses a write or commit carrying a lower one:
    /// a node that lost the rule then cannot change the new owner's output.
    pub fn fencing_token(&self) -> u64 {
        self.fencing_token
    }

    /// Asks the supervisor for a checkpoint soon rather than at the rule's
    /// interval (a source holding acknowledgements whose upstream stopped
    /// sending until it acknowledges). The request goes with the source's next
    /// batch, or alone, and the supervisor takes at most one such checkpoint
    /// every 100 ms.
    pub fn request_checkpoint(&self) {
        self.checkpoint_wanted.store(true, Ordering::Relaxed);
    }

    pub(crate) fn take_checkpoint_wanted(&self) -> bool {
        self.checkpoint_wanted.swap(false, Ordering::Relaxed)
    }

    /// The id of the rule this instance belongs to.
    pub fn rule_id(&self) -> &str {
        &self.rule_id
    }

    /// The supervisor-assigned id of this instance.
    pub fn instance_id(&self) -> &str {
        &self.instance_id
    }

    /// The operator within the rule (e.g. `source`, `op_projection_0`, `sink_0`).
    pub fn operator_id(&self) -> &str {
        &self.operator_id
    }

    /// A logger whose lines carry this instance's rule and instance ids. Lines go
    /// to stderr, which the supervisor forwards into its own log.
    pub fn logger(&self) -> &Logger {
        &self.logger
    }

    /// Stores `value` under `key`, replacing a value or counter. A value over
    /// [`MAX_VALUE_BYTES`] is refused, never truncated.
    pub fn put_state(&self, key: &str, value: Value) -> Result<(), StateError> {
        let wire: pb::Value = value.clone().into();
        let size = prost::Message::encoded_len(&wire);
        if size > MAX_VALUE_BYTES {
            return Err(StateError::TooLarge { key: key.to_string(), size });
        }
        let mut s = self.lock();
        s.pending.push(pb::StateMutation { key: key.to_string(), op: Some(pb::state_mutation::Op::Put(wire)) });
        s.slots.insert(key.to_string(), Slot::Value(value));
        Ok(())
    }

    /// The value under `key`, or `None` when there is none. A counter reads as
    /// an integer value.
    pub fn get_state(&self, key: &str) -> Option<Value> {
        match self.lock().slots.get(key) {
            Some(Slot::Value(v)) => Some(v.clone()),
            Some(Slot::Counter(c)) => Some(Value::Int(*c)),
            None => None,
        }
    }

    /// Removes `key`. Removing an absent key is not an error.
    pub fn delete_state(&self, key: &str) {
        let mut s = self.lock();
        if s.slots.remove(key).is_some() {
            s.pending.push(pb::StateMutation { key: key.to_string(), op: Some(pb::state_mutation::Op::Delete(true)) });
        }
    }

    /// Adds `amount` to the counter under `key` (created at 0) and returns the
    /// new count.
    pub fn incr_counter(&self, key: &str, amount: i64) -> Result<i64, StateError> {
        let mut s = self.lock();
        let current = match s.slots.get(key) {
            None => 0,
            Some(Slot::Counter(c)) => *c,
            Some(Slot::Value(v)) => return Err(StateError::NotACounter { key: key.into(), found: v.type_name() }),
        };
        let next = current.checked_add(amount).ok_or_else(|| StateError::Overflow { key: key.into() })?;
        s.slots.insert(key.to_string(), Slot::Counter(next));
        // Only the newest absolute value matters: collapse repeated increments of
        // the same key within one batch instead of shipping each of them.
        if let Some(last) = s.pending.last_mut() {
            if last.key == key && matches!(last.op, Some(pb::state_mutation::Op::Counter(_))) {
                last.op = Some(pb::state_mutation::Op::Counter(next));
                return Ok(next);
            }
        }
        s.pending.push(pb::StateMutation { key: key.to_string(), op: Some(pb::state_mutation::Op::Counter(next)) });
        Ok(next)
    }

    /// The count under `key`: 0 when absent, an error when the key holds a
    /// plain value.
    pub fn get_counter(&self, key: &str) -> Result<i64, StateError> {
        match self.lock().slots.get(key) {
            None => Ok(0),
            Some(Slot::Counter(c)) => Ok(*c),
            Some(Slot::Value(v)) => Err(StateError::NotACounter { key: key.into(), found: v.type_name() }),
        }
    }

    /// Reports a problem the instance met and went past (a malformed input
    /// line, say). A source's exceptions travel with its next batch: the
    /// supervisor counts them in the rule status (`…_exceptions_total`,
    /// `…_last_exception`). Functions and sinks report per-row or per-batch
    /// errors through their results instead; what they report here is logged.
    pub fn report_exception(&self, message: impl std::fmt::Display) {
        let mut s = self.lock();
        if s.exceptions.len() >= MAX_PENDING_EXCEPTIONS {
            let dropped = s.exceptions.len() - MAX_PENDING_EXCEPTIONS + 1;
            s.exceptions.drain(..dropped);
        }
        s.exceptions.push(message.to_string());
    }

    /// Takes the exceptions reported since the last call, oldest first.
    pub(crate) fn take_exceptions(&self) -> Vec<String> {
        std::mem::take(&mut self.lock().exceptions)
    }

    /// Logs the exceptions reported by a function or sink: only a source's
    /// travel to the supervisor.
    pub(crate) fn log_exceptions(&self) {
        for e in self.take_exceptions() {
            self.logger().warn(e);
        }
    }

    /// Takes the mutations recorded since the last call, in order.
    pub(crate) fn take_mutations(&self) -> Vec<pb::StateMutation> {
        std::mem::take(&mut self.lock().pending)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, StateStore> {
        // A panic inside a user callback must not make the state unusable: the
        // map itself is always consistent between two statements above.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Logs lines tagged with the instance's rule and instance ids.
pub struct Logger {
    rule_id: String,
    instance_id: String,
}

impl Logger {
    /// Logs at debug level.
    pub fn debug(&self, msg: impl std::fmt::Display) {
        tracing::debug!(rule = %self.rule_id, instance = %self.instance_id, "{msg}");
    }
    /// Logs at info level.
    pub fn info(&self, msg: impl std::fmt::Display) {
        tracing::info!(rule = %self.rule_id, instance = %self.instance_id, "{msg}");
    }
    /// Logs at warn level.
    pub fn warn(&self, msg: impl std::fmt::Display) {
        tracing::warn!(rule = %self.rule_id, instance = %self.instance_id, "{msg}");
    }
    /// Logs at error level.
    pub fn error(&self, msg: impl std::fmt::Display) {
        tracing::error!(rule = %self.rule_id, instance = %self.instance_id, "{msg}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(state: Vec<pb::StateEntry>) -> Context {
        Context::new(pb::InstanceSpec { instance_id: "i1".into(), rule_id: "r1".into(), state, ..Default::default() })
    }

    #[test]
    fn the_five_calls_follow_ekuiper_semantics() {
        let c = ctx(vec![]);
        assert_eq!(c.get_state("a"), None);
        assert_eq!(c.get_counter("n"), Ok(0));
        assert_eq!(c.incr_counter("n", 5), Ok(5));
        assert_eq!(c.incr_counter("n", -2), Ok(3));
        c.put_state("a", Value::from("x")).unwrap();
        assert_eq!(c.get_state("a"), Some(Value::from("x")));
        let big = Value::Bytes(vec![0; MAX_VALUE_BYTES]);
        assert!(matches!(c.put_state("big", big), Err(StateError::TooLarge { .. })));
        assert_eq!(c.get_state("big"), None);
        assert!(matches!(c.get_counter("a"), Err(StateError::NotACounter { .. })));
        c.delete_state("a");
        assert_eq!(c.get_state("a"), None);
        assert_eq!(c.incr_counter("n", i64::MAX), Err(StateError::Overflow { key: "n".into() }));
    }

    #[test]
    fn reported_exceptions_keep_the_newest_64_and_are_not_mutations() {
        let c = ctx(vec![]);
        for i in 0..100 {
            c.report_exception(format!("e{i}"));
        }
        let taken = c.take_exceptions();
        assert_eq!(taken.len(), MAX_PENDING_EXCEPTIONS);
        assert_eq!((taken[0].as_str(), taken[63].as_str()), ("e36", "e99"));
        assert!(c.take_exceptions().is_empty());
        assert!(c.take_mutations().is_empty());
    }

    #[test]
    fn mutations_are_recorded_in_order_and_collapsed_per_counter() {
        let c = ctx(vec![]);
        c.incr_counter("n", 1).unwrap();
        c.incr_counter("n", 1).unwrap();
        c.put_state("a", Value::Int(1)).unwrap();
        c.delete_state("a");
        c.delete_state("never-there");
        let m = c.take_mutations();
        assert_eq!(m.len(), 3);
        assert_eq!(m[0].op, Some(pb::state_mutation::Op::Counter(2)));
        assert_eq!(m[2].op, Some(pb::state_mutation::Op::Delete(true)));
        assert!(c.take_mutations().is_empty());
    }

    #[test]
    fn restored_state_is_visible() {
        let c = ctx(vec![pb::StateEntry { key: "n".into(), entry: Some(pb::state_entry::Entry::Counter(41)) }]);
        assert_eq!(c.incr_counter("n", 1), Ok(42));
    }
}
