//! palette-system's tests: generating a system (snapshots of every file,
//! schema validity with docker-compose and kubernetes-validate, atomic
//! writes) and supervising local processes.

#[path = "system/generate.rs"]
mod generate;
#[path = "system/up.rs"]
mod up;
#[path = "system/util.rs"]
mod util;
