#![no_main]
//! The otlp reader and assembly, on bytes given as a otlp file.

use libfuzzer_sys::fuzz_target;
use palette_trace::Format;

fuzz_target!(|data: &[u8]| palette_fuzz::read_as(Some(Format::Otlp), data));
