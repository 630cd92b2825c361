//! Write Oort plugins in Rust.
//!
//! An Oort plugin is an executable that the `oort` supervisor starts and talks to
//! over a Unix socket. This crate does the whole handshake; you write the
//! extension, the way you would write an eKuiper Go plugin:
//!
//! ```no_run
//! use oort_plugin::{serve, BoxError, Context, Export, Function, Plugin, Value};
//!
//! struct Echo;
//!
//! impl Function for Echo {
//!     fn exec(&self, _ctx: &Context, args: &[Value]) -> Result<Value, BoxError> {
//!         args.first().cloned().ok_or_else(|| "echo needs one argument".into())
//!     }
//! }
//!
//! fn main() {
//!     serve(Plugin::new("echo", "1.0.0").function("echo", Export::singleton(Echo)));
//! }
//! ```
//!
//! # Layout
//! - [`Function`], [`Source`], [`Sink`]: the three extension kinds, as in eKuiper.
//! - [`Context`]: rule and instance identity, a logger, and the five state calls
//!   (`put_state`, `get_state`, `delete_state`, `incr_counter`, `get_counter`).
//! - [`Plugin`] and [`Export`]: what the executable exports, each symbol either as a
//!   constructor (a fresh object per rule) or as a singleton (one shared object).
//! - [`serve`]: the one entry point; it never returns.
//!
//! # Features
//! - `mimalloc`: makes mimalloc the plugin's global allocator (the bundled
//!   plugins use it; per-row allocation costs less than with glibc's malloc).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod context;
mod export;
mod framed;
mod log;
mod reflection;
mod server;

pub use context::{ConnectionState, Context, Logger, StateError, StateMigration, StateSlot, MAX_VALUE_BYTES};
pub use export::{ArgSpec, BoxError, Export, Function, ItemErrors, Plugin, Props, Sink, Source};
pub use oort_proto::{Record, Value};

/// Apache Arrow's arrays, for functions that work on columns
/// ([`Function::exec_columns`]): the SDK's own version, so that a plugin
/// needs no Arrow dependency of its own.
pub mod arrow {
    pub use oort_proto::columns::arrow_array::*;
    pub use oort_proto::columns::arrow_schema::{DataType, Field, Schema};
}
pub use server::serve;

// With the `mimalloc` feature the SDK sets the process's allocator, so that a
// plugin gets it by enabling a feature rather than writing this in its `main`.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The SDK's name as reported in `Describe`.
pub const SDK_NAME: &str = "oort-plugin-rust";
/// The SDK's version as reported in `Describe`.
pub const SDK_VERSION: &str = env!("CARGO_PKG_VERSION");
