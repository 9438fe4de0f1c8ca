#![no_main]
//! Format detection (plain or gzip) and whichever reader it picks.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| palette_fuzz::read_as(None, data));
