//! Any frame a client sends on the visitor and agent sockets of a real server on loopback:
//! `cargo fuzz run socket_frame`.
#![no_main]

#[path = "../../tests/fuzzing/harness.rs"]
mod harness;

use std::sync::LazyLock;

static TARGET: LazyLock<harness::Target> = LazyLock::new(|| {
    harness::Target::start(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/.."
    )))
});

libfuzzer_sys::fuzz_target!(|data: &[u8]| TARGET.socket_frame(data));
