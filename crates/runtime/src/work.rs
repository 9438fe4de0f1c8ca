//! Local work: sleep, cpu (calibrated matrix multiply) or memory (strided buffer touches).
//!
//! INTERFACE ONLY — being implemented.

use crate::config::{Limits, WorkMode};

/// Does an execution's local work. Shared by every request of a process.
pub struct Worker {}

impl Worker {
    /// Calibrates CPU work and sizes memory work's buffer within `limits`.
    pub fn new(limits: &Limits) -> Worker {
        let _ = limits;
        Worker {}
    }

    /// Spends `ns` nanoseconds of work in `mode`. CPU and memory work run
    /// off the async reactor; sleep is precise below a millisecond too.
    pub async fn work(&self, mode: WorkMode, ns: u64) {
        let _ = mode;
        tokio::time::sleep(std::time::Duration::from_nanos(ns)).await;
    }
}
