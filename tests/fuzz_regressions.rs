//! The fuzz targets' saved inputs, replayed in the normal suite: `fuzz/corpus/<target>/`
//! (seeds) and `fuzz/regressions/<target>/` (every input that once made a target fail,
//! kept after the fix). The harness is the one `cargo fuzz` runs (`tests/fuzzing/`).

#[path = "fuzzing/harness.rs"]
mod harness;

use std::path::Path;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn saved_bundle_inputs_load_without_panicking() {
    let inputs = harness::saved_inputs(root(), "bundle");
    assert!(!inputs.is_empty(), "no saved inputs for bundle");
    for (path, data) in inputs {
        eprintln!("bundle: {}", path.display());
        harness::bundle(&data);
    }
}

#[test]
fn saved_api_bodies_get_a_clear_answer() {
    let inputs = harness::saved_inputs(root(), "api_body");
    assert!(!inputs.is_empty(), "no saved inputs for api_body");
    let target = harness::Target::start(root());
    for (path, data) in inputs {
        eprintln!("api_body: {}", path.display());
        target.api_body(&data);
    }
}

#[test]
fn saved_socket_frames_leave_the_server_up() {
    let inputs = harness::saved_inputs(root(), "socket_frame");
    assert!(!inputs.is_empty(), "no saved inputs for socket_frame");
    let target = harness::Target::start(root());
    for (path, data) in inputs {
        eprintln!("socket_frame: {}", path.display());
        target.socket_frame(&data);
    }
}
