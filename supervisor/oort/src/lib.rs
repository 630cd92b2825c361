//! The `oort` daemon and CLI: the outermost crate, which wires the others
//! together and is the only one that speaks to the outside world.
//!
//! The workspace's crates, innermost first (see ARCHITECTURE.md):
//! `oort-core` (shared vocabulary), `oort-sql` (pure SQL), `oort-store`
//! (RocksDB), `oort-host` (plugin processes and calls), `oort-engine` (rules at
//! run time) and this one.
//!
//! # Layout
//! - [`api`]: the REST admin API and the gRPC services the daemon serves (the
//!   State service, health, reflection, the admin service); the only code that
//!   converts domain types to JSON or protobuf and maps domain errors to HTTP
//!   and gRPC codes.
//! - [`cli`]: the `oort` subcommands that talk to a running daemon (an HTTP
//!   client, `ureq`, like the installer's).
//! - [`cluster`]: cluster mode: which rules this node runs (the reconcile
//!   loop) and publishing their checkpoints for the other nodes.
//! - [`daemon`]: wires the crates together for `oort serve`.
//! - [`shutdown`]: one signal that tells every task to stop.
#![deny(unsafe_code)]

pub mod api;
pub mod cli;
pub mod cluster;
pub mod daemon;
pub mod shutdown;
