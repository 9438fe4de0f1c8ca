//! Compiles `proto/palette.proto` into the gRPC stubs with `protox`, a
//! protobuf compiler in Rust: building needs no system `protoc`.

fn main() {
    println!("cargo:rerun-if-changed=proto/palette.proto");
    let fds = match protox::compile(["palette.proto"], ["proto"]) {
        Ok(fds) => fds,
        Err(e) => panic!("proto/palette.proto: {e}"),
    };
    if let Err(e) = tonic_prost_build::configure()
        // Payloads are slices of one shared buffer: `Bytes`, not `Vec<u8>`.
        .bytes(".")
        .build_transport(false)
        // Calls are framed on `h2` directly (see `grpc::GrpcClient`).
        .build_client(false)
        .emit_rerun_if_changed(false)
        .compile_fds(fds)
    {
        panic!("generating the gRPC stubs: {e}");
    }
}
