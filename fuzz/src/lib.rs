//! Shared by the fuzz targets: feeding bytes to the trace readers the way a
//! user's file reaches them (`read_traces` on a path, assembly into call trees).

use std::path::PathBuf;
use std::sync::OnceLock;

use palette_trace::{CallTree, Format, NoProgress, ReadOptions, TraceStats};

/// One file per fuzzing process: readers take paths, as the CLI gives them.
fn input_path() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("palette-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir.join("input")
    })
}

/// Reads `data` as a trace file of `format` (`None`: detected, gzip included)
/// and assembles it, folding every tree into statistics as `palette inspect` does.
pub fn read_as(format: Option<Format>, data: &[u8]) {
    let path = input_path();
    std::fs::write(path, data).expect("write fuzz input");
    let opts = ReadOptions { format, ..ReadOptions::default() };
    let mut stats = TraceStats::default();
    let mut sink = |tree: &CallTree| {
        stats.add(tree);
        Ok(())
    };
    if let Ok(read) = palette_trace::read_traces(std::slice::from_ref(path), &opts, &NoProgress, &mut sink) {
        let _ = stats.summary(&read);
    }
}
