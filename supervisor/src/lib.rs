//! Oort: an out-of-process plugin supervisor for eKuiper-style extensions.
//!
//! # Layout
//! - [`catalog`]: plugin files on disk, their names, versions and metadata.
//!   Plain data: it never holds a process.
//! - [`process`]: the only code that spawns, signals or waits on a child:
//!   handshake, health, logs, restart back-off, graceful stop.
//! - [`state`]: every extension instance's state and the token check that
//!   scopes it.
//! - [`store`]: the embedded RocksDB; the only module that imports `rocksdb`.
//! - [`rule`]: stream and rule definitions, SQL planning, batch evaluation.
//!   Pure: no I/O.
//! - [`runtime`]: the stream and rule registry and one pipeline task per
//!   running rule.
//! - [`host`]: which process serves which rule (constructor or singleton), and
//!   the typed, deadline-bounded calls on plugin instances.
//! - [`install`]: plugin archives from a path or URL, checked and unpacked
//!   atomically into the plugins folder.
//! - [`names`]: eKuiper's naming rule, the folded lookup key, hex.
//! - [`api`]: the REST admin API, the gRPC services the supervisor serves (the
//!   State service, health, reflection, the admin service); the only place that
//!   serves HTTP (the CLI and `install` are HTTP clients).
//! - [`cli`]: the `oort` subcommands that talk to a running daemon.
//! - [`daemon`]: wires the above together for `oort serve`.
//! - [`shutdown`]: one signal that tells every task to stop.
#![deny(unsafe_code)]

pub mod api;
pub mod catalog;
pub mod cli;
pub mod daemon;
pub mod host;
pub mod install;
pub mod names;
pub mod process;
pub mod rule;
pub mod runtime;
pub mod shutdown;
pub mod state;
pub mod store;
