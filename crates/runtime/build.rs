//! Compiles `proto/palette.proto` into its messages with `protox`, a
//! protobuf compiler in Rust, and `prost-build`: building needs no system
//! `protoc`.

fn main() {
    println!("cargo:rerun-if-changed=proto/palette.proto");
    let fds = match protox::compile(["palette.proto"], ["proto"]) {
        Ok(fds) => fds,
        Err(e) => panic!("proto/palette.proto: {e}"),
    };
    // Payloads are slices of one shared buffer: `Bytes`, not `Vec<u8>`.
    if let Err(e) = prost_build::Config::new().bytes(["."]).compile_fds(fds) {
        panic!("generating the protobuf messages: {e}");
    }
}
