//! Progress bars on a terminal, silence elsewhere.

use std::path::Path;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A byte-count progress bar over all input files, drawn on stderr only when
/// it is a terminal.
pub struct Bytes {
    bar: ProgressBar,
}

impl Bytes {
    pub fn new(total: u64, what: &str) -> Bytes {
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr_with_hz(4));
        bar.set_style(
            ProgressStyle::with_template(
                "{msg} [{bar:30}] {binary_bytes}/{binary_total_bytes} ({binary_bytes_per_sec}, {eta})",
            )
            .expect("static template")
            .progress_chars("=> "),
        );
        bar.set_message(what.to_string());
        Bytes { bar }
    }
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl palette_trace::Progress for Bytes {
    fn start_file(&self, path: &Path, _bytes: u64) {
        let name = path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned());
        self.bar.set_message(name);
    }
    fn advance(&self, bytes: u64) {
        self.bar.inc(bytes);
    }
}

/// Total size on disk of the inputs (directories expanded).
pub fn total_bytes(inputs: &[std::path::PathBuf]) -> u64 {
    palette_trace::input::expand_inputs(inputs)
        .map(|files| files.iter().filter_map(|f| std::fs::metadata(f).ok()).map(|m| m.len()).sum())
        .unwrap_or(0)
}
