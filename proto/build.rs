//! Generates the Rust code for the wire contract. `protoc` comes from the
//! `protoc-bin-vendored` crate, so no system protobuf compiler is needed.
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    std::env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path()?);
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let protos = ["oort/plugin/v1/plugin.proto", "oort/state/v1/state.proto", "oort/admin/v1/admin.proto"];
    tonic_prost_build::configure()
        // Ordered maps decode without hashing every key and convert to the
        // domain's `BTreeMap`s in key order; they also encode deterministically.
        .btree_map(".")
        // Arrow IPC messages: `Bytes`, so the host hands them on without a copy.
        .bytes(".oort.plugin.v1.ExecBatch")
        .bytes(".oort.plugin.v1.ExecResult")
        .bytes(".oort.plugin.v1.RecordBatch")
        .bytes(".oort.plugin.v1.WriteBatch.arrow_schema")
        .bytes(".oort.plugin.v1.WriteBatch.arrow")
        .file_descriptor_set_path(out.join("oort_descriptor.bin"))
        .compile_protos(&protos, &["."])?;
    for p in protos {
        println!("cargo:rerun-if-changed={p}");
    }
    Ok(())
}
