//! Compiles every `.proto` under `capsight/` with the pure-Rust `protox` compiler (no `protoc`
//! needed on the machine), generates prost types and tonic stubs into `OUT_DIR`, and writes the
//! encoded descriptor set there for gRPC reflection.

use std::{error::Error, fs, path::PathBuf};

use prost::Message;

fn main() -> Result<(), Box<dyn Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let mut protos = Vec::new();
    for entry in fs::read_dir(root.join("capsight/v1"))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "proto") {
            println!("cargo:rerun-if-changed={}", path.display());
            protos.push(path);
        }
    }
    protos.sort();
    println!("cargo:rerun-if-changed=capsight/v1");

    let fds = protox::compile(&protos, [&root])?;
    fs::write(out.join("capsight_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
