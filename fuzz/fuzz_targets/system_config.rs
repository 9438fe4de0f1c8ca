#![no_main]
//! The system.json loader with its limit and model checks.

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use palette_runtime::config::SystemConfig;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = SystemConfig::parse(text, Path::new("system.json"));
    }
});
