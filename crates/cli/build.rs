//! Records the git commit the binary was built from, for the run metadata
//! in fidelity reports (`PALETTE_COMMIT`; empty outside a git checkout).

use std::path::Path;
use std::process::Command;

fn main() {
    let commit = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    println!("cargo:rustc-env=PALETTE_COMMIT={commit}");
    // Rebuilt when HEAD moves: HEAD itself, and the branch ref it names.
    let git = Path::new("../../.git");
    let mut watched = false;
    if let Ok(head) = std::fs::read_to_string(git.join("HEAD")) {
        println!("cargo:rerun-if-changed=../../.git/HEAD");
        watched = true;
        if let Some(reference) = head.strip_prefix("ref: ") {
            let path = git.join(reference.trim());
            if path.exists() {
                println!("cargo:rerun-if-changed={}", path.display());
            }
        }
    }
    if !watched {
        println!("cargo:rerun-if-changed=build.rs");
    }
}
