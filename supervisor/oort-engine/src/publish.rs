//! How a cluster node publishes each completed checkpoint so that another
//! node can restore the rule: the engine calls a [`CheckpointPublisher`]
//! after a checkpoint is durable in the local store and before the sinks
//! commit it, so that no sink commits output that a node taking the rule
//! over would not restore.

use futures_util::future::BoxFuture;

/// Publishes checkpoints (implemented by the daemon's cluster mode).
pub trait CheckpointPublisher: Send + Sync + 'static {
    /// Publishes checkpoint `id` of `rule` (its encoded bytes). Resolves once
    /// another node would restore it, or with why not.
    fn publish(&self, rule: &str, id: u64, bytes: Vec<u8>) -> BoxFuture<'static, Result<(), PublishError>>;
}

/// Why a checkpoint was not published.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PublishError {
    /// Another node owns the rule now: this node must not commit anything
    /// more for it.
    #[error("this node no longer owns the rule: {0}")]
    Fenced(String),
    /// The coordinator or the checkpoint store could not be reached: the
    /// checkpoint is complete on this node only, and a failover would
    /// restore an older one.
    #[error("the checkpoint was not published: {0}")]
    Unavailable(String),
}
