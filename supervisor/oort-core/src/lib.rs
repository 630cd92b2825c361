//! The vocabulary every Oort crate shares: eKuiper's naming rule, a rule's
//! plugin options (`restartStrategy`, `pluginLimits`) and what a rule tells a
//! function plugin about its arguments. Plain data: no I/O, no async runtime,
//! so the pure SQL crate and the process-owning host crate can both use it
//! without depending on each other.
#![forbid(unsafe_code)]

mod limits;
pub mod names;
mod restart;

pub use limits::{format_bytes, parse_bytes, Limits, DEFAULT_OPEN_FILES, DEFAULT_PROCESSES};
pub use restart::RestartStrategy;

use oort_proto::Value;

/// What is known about a function's argument when the rule is created: its
/// SQL text, its value when it is a literal, its column when it is one. The
/// planner fills it in and the host passes it to the plugin's `Validate`.
#[derive(Debug, Clone, PartialEq)]
pub struct ArgInfo {
    pub expression: String,
    pub literal: Option<Value>,
    pub column: Option<String>,
}
