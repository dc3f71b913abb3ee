//! The bundle loader and validator over any text: `cargo fuzz run bundle`.
#![no_main]

#[path = "../../tests/fuzzing/harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::bundle(data));
