//! The console's pure JavaScript (formatting, list sections, the `#` matcher, report
//! figures, the stream's resume arithmetic) is unit-tested with Node's own runner; this
//! runs those tests so that `cargo test` covers them. Node 20 or later: `.ci/run` installs
//! Debian's `nodejs` when `node` is missing.

use std::path::Path;
use std::process::Command;

#[test]
fn console_modules_pass_their_node_tests() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("node")
        .args(["--test", "assets/console/tests/"])
        .current_dir(root)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run `node` ({e}): install Node.js 20 or later (`apt-get install nodejs`)"
            )
        });
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "`node --test assets/console/tests/` failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    // A runner that found no test files passes too: insist on some.
    let passed = stdout
        .lines()
        .find_map(|l| l.strip_prefix("# pass "))
        .and_then(|n| n.trim().parse::<u32>().ok())
        .unwrap_or(0);
    assert!(
        passed >= 20,
        "only {passed} node tests passed:\n{stdout}\n{stderr}"
    );
}
