//! Any body or query string to the HTTP API, through the real router: `cargo fuzz run
//! api_body`.
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

libfuzzer_sys::fuzz_target!(|data: &[u8]| TARGET.api_body(data));
