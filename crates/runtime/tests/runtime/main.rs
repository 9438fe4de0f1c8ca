//! Integration tests of palette-runtime: one binary (like the CLI's tests/cli/main.rs), a module per area.

mod export;
mod grpc;
mod lateness;
mod replicate;
mod serve;
