//! Generates the Rust code for the checkpoint format (`proto/oort/store/v1`).
//! It refers to the plugin contract's `Value` and `StateEntry`, which come
//! from the `oort-proto` crate rather than being generated twice.
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    std::env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path()?);
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let own = manifest.join("proto");
    let contract = manifest.join("../../proto");
    let proto = own.join("oort/store/v1/checkpoint.proto");
    tonic_prost_build::configure()
        .build_client(false)
        .build_server(false)
        .btree_map(".")
        .extern_path(".oort.plugin.v1", "::oort_proto::plugin::v1")
        .compile_protos(&[&proto], &[&own, &contract])?;
    println!("cargo:rerun-if-changed={}", proto.display());
    Ok(())
}
