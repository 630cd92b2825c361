//! What can go wrong in an engine request, with the names of what it was
//! about; [`ErrorKind`] is what the API layer maps to HTTP and gRPC codes.

use oort_store::StoreError;

/// Why an engine request failed; the API maps each variant to a status code.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A definition that does not parse or validate: the message says why.
    #[error("{0}")]
    Invalid(String),
    #[error("no stream named {name:?}")]
    UnknownStream { name: String },
    #[error("no rule named {id:?}")]
    UnknownRule { id: String },
    #[error("stream {name}: no source plugin named {plugin:?}")]
    UnknownSource { name: String, plugin: String },
    #[error("no connection named {id:?}")]
    UnknownConnection { id: String },
    #[error("connection {id} already exists")]
    ConnectionExists { id: String },
    #[error("connection {id} is used by rules {}", rules.join(", "))]
    ConnectionInUse { id: String, rules: Vec<String> },
    #[error("source type {source_type} has no conf key {key:?}")]
    UnknownConfKey { source_type: String, key: String },
    #[error("stream {name} already exists")]
    StreamExists { name: String },
    #[error("rule {id} already exists")]
    RuleExists { id: String },
    #[error("stream {name} is used by rules {}", rules.join(", "))]
    StreamInUse { name: String, rules: Vec<String> },
    #[error("no {kind} plugin named {name:?}")]
    UnknownPlugin { kind: &'static str, name: String },
    /// A plugin's only runnable version cannot be rolled back.
    #[error("{kind} plugin {name} has no version before {version} to roll back to")]
    NothingToRollBackTo { kind: &'static str, name: String, version: String },
    /// A stored rule that no longer plans (see `unplannable`).
    #[error("rule {id} cannot start: {reason}")]
    CannotStart { id: String, reason: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("stored definition of {what} is unreadable: {reason}")]
    Corrupt { what: String, reason: String },
}

/// What kind of failure an [`EngineError`] is, for the API layer to map to
/// HTTP and gRPC codes in one place each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request is wrong: fix it.
    Invalid,
    /// It names something that does not exist.
    NotFound,
    /// It creates what already exists.
    Exists,
    /// It clashes with what exists (a stream that rules use).
    Conflict,
    /// The daemon failed (its store): not the caller's fault.
    Internal,
}

impl EngineError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            EngineError::Invalid(_) | EngineError::UnknownSource { .. } | EngineError::CannotStart { .. } => {
                ErrorKind::Invalid
            }
            EngineError::UnknownStream { .. }
            | EngineError::UnknownRule { .. }
            | EngineError::UnknownConfKey { .. }
            | EngineError::UnknownConnection { .. }
            | EngineError::UnknownPlugin { .. } => ErrorKind::NotFound,
            EngineError::StreamExists { .. }
            | EngineError::RuleExists { .. }
            | EngineError::ConnectionExists { .. } => ErrorKind::Exists,
            EngineError::StreamInUse { .. }
            | EngineError::ConnectionInUse { .. }
            | EngineError::NothingToRollBackTo { .. } => ErrorKind::Conflict,
            EngineError::Store(_) | EngineError::Corrupt { .. } => ErrorKind::Internal,
        }
    }
}

impl From<oort_sql::RuleError> for EngineError {
    fn from(e: oort_sql::RuleError) -> Self {
        EngineError::Invalid(e.0)
    }
}
