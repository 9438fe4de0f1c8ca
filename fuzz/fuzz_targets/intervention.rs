#![no_main]
//! The intervention file parser, and applying what it accepts to a model (as
//! `palette edit --apply` does).

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use palette_model::Model;
use palette_model::intervene::{apply, parse, tests_support};

fuzz_target!(|data: &[u8]| {
    static MODEL: OnceLock<Model> = OnceLock::new();
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(entries) = parse(text) {
        let _ = apply(MODEL.get_or_init(tests_support::shop), &entries);
    }
});
