//! Compiles `proto/fusion/v1/fusion.proto` with protox (protoc in pure
//! Rust), so no system protobuf compiler is needed anywhere.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let file = root.join("fusion/v1/fusion.proto");
    println!("cargo:rerun-if-changed={}", file.display());
    let descriptors = protox::compile([&file], [&root])?;
    tonic_prost_build::configure()
        // Chunk data as `bytes::Bytes`: sending slices a payload without copies.
        .bytes(".fusion.v1.Chunk")
        .compile_fds(descriptors)?;
    Ok(())
}
