//! Oort's wire contract, generated from `proto/oort/**.proto`.
//!
//! This crate is the API boundary for plugins in every language: the same
//! `.proto` files generate the Go and Python stubs. Generated code is allowed
//! its own lint exceptions here and nowhere else.
//!
//! Besides the generated modules it holds the one domain [`Value`]/[`Record`]
//! pair that both the supervisor and the Rust SDK use, with its lossless
//! conversions to the wire types, so that the mapping exists exactly once.
#![forbid(unsafe_code)]

mod value;
pub use value::{map_from_pb, map_to_pb, Record, Value};
pub mod columns;
pub mod frames;
pub mod time;
pub mod wire;

#[allow(clippy::all, missing_docs)]
pub mod plugin {
    pub mod v1 {
        tonic::include_proto!("oort.plugin.v1");
    }
}

#[allow(clippy::all, missing_docs)]
pub mod state {
    pub mod v1 {
        tonic::include_proto!("oort.state.v1");
    }
}

/// The supervisor's admin API (`oort serve --grpc-addr`).
#[allow(clippy::all, missing_docs)]
pub mod admin {
    pub mod v1 {
        tonic::include_proto!("oort.admin.v1");
    }
}

/// Serialized `FileDescriptorSet` of every Oort proto, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("oort_descriptor");

/// The protocol versions this build speaks. A plugin picks the highest one it
/// also speaks and reports it in `Describe`.
pub const PROTOCOL_VERSION: u32 = 1;
