//! The console's pure JavaScript (formatting, list sections, the `#` matcher, report
//! figures, the stream's resume arithmetic) is unit-tested with Node's own runner; this
//! runs those tests so that `cargo test` covers them. `.ci/run` installs Debian's `nodejs`
//! when `node` is missing.

use std::path::Path;
use std::process::Command;

#[test]
fn console_modules_pass_their_node_tests() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    // The files by name, as `node --test assets/console/tests/` finds them: newer Node
    // versions read a directory argument as a glob pattern instead.
    let mut files: Vec<String> = std::fs::read_dir(root.join("assets/console/tests"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|f| f.ends_with(".test.mjs"))
        .map(|f| format!("assets/console/tests/{f}"))
        .collect();
    files.sort();
    assert!(files.len() >= 5, "test files: {files:?}");
    let out = Command::new("node")
        .arg("--test")
        .args(&files)
        .current_dir(root)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run `node` ({e}): install Node.js (`apt-get install nodejs`)")
        });
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "`node --test` of the console's modules failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    // A runner that ran nothing passes too: insist on the tests being there.
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
