#![no_main]
//! The spancsv reader and assembly, on bytes given as a spancsv file.

use libfuzzer_sys::fuzz_target;
use palette_trace::Format;

fuzz_target!(|data: &[u8]| palette_fuzz::read_as(Some(Format::SpanCsv), data));
