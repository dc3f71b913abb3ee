//! The layers point one way (docs/architecture.md): this reads every `crate::…` path in
//! `src/` and fails on one that reaches a layer above, naming the file and line.

use std::path::{Path, PathBuf};

/// The middle layer: the domain's services, which may use each other and what is below.
const MIDDLE: &[&str] = &[
    "config", "dburl", "chat", "ids", "settings", "store", "hub", "auth", "mail", "webhooks",
    "deploy",
];

/// What a top-level module may import besides itself; None for `cli`, `lib.rs` and
/// `main.rs`, which may import anything.
fn allowed(from: &str) -> Option<Vec<&'static str>> {
    let above_middle = |extra: &[&'static str]| [MIDDLE, extra].concat();
    Some(match from {
        "ids" | "config" | "dburl" => vec![],
        "settings" => vec!["config", "dburl"],
        "chat" => vec!["config"],
        "bottest" => vec!["config", "chat"],
        "store" => vec!["config", "dburl", "chat", "ids", "settings"],
        "hub" | "auth" | "mail" | "webhooks" | "deploy" => MIDDLE.to_vec(),
        "engine" => MIDDLE.to_vec(),
        "http" => above_middle(&["engine"]),
        "server" => above_middle(&["engine", "http"]),
        _ => return None,
    })
}

/// The top-level modules a line of Rust names through `crate::`: `crate::a::b` gives `a`,
/// `crate::{a, b::c}` gives `a` and `b`. Comments are skipped.
fn crate_paths(line: &str) -> Vec<String> {
    let code = line.split("//").next().unwrap_or("");
    let mut found = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // Top-level names of the group, up to its closing brace on this line.
            let mut depth = 0;
            let mut item = String::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        found.push(ident(&item));
                        item.clear();
                        continue;
                    }
                    _ => {}
                }
                if depth == 0 {
                    item.push(c);
                }
            }
            found.push(ident(&item));
        } else {
            found.push(ident(rest));
        }
    }
    found.retain(|m| !m.is_empty());
    found
}

fn ident(text: &str) -> String {
    text.trim_start()
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect()
}

/// The top-level module a source file belongs to: `src/chat/flow.rs` → `chat`.
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_string()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every import of `src` that breaks the rules, as `file:line: message`.
fn violations(src: &Path) -> Vec<String> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    files.sort();
    let mut found = Vec::new();
    for file in files {
        let from = module_of(src, &file);
        let Some(deps) = allowed(&from) else {
            continue;
        };
        let text = std::fs::read_to_string(&file).unwrap();
        for (n, line) in text.lines().enumerate() {
            for to in crate_paths(line) {
                if to != from && !deps.contains(&to.as_str()) {
                    found.push(format!(
                        "{}:{}: `{from}` may not import `{to}` (docs/architecture.md, layers)",
                        file.strip_prefix(src.parent().unwrap()).unwrap().display(),
                        n + 1
                    ));
                }
            }
        }
    }
    found
}

#[test]
fn imports_point_down_the_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let found = violations(&src);
    assert!(
        found.is_empty(),
        "imports against the layers:\n{}",
        found.join("\n")
    );
}

#[test]
fn every_top_level_module_has_a_rule() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    for entry in std::fs::read_dir(&src).unwrap() {
        let name = module_of(&src, &entry.unwrap().path());
        if ["lib", "main", "cli"].contains(&name.as_str()) {
            assert!(allowed(&name).is_none());
            continue;
        }
        assert!(
            allowed(&name).is_some(),
            "src/{name}: a new top-level module needs its place in RULES"
        );
    }
}

#[test]
fn the_checker_sees_back_edges_in_every_form() {
    assert_eq!(crate_paths("use crate::engine::Engine;"), ["engine"]);
    assert_eq!(
        crate_paths("use crate::{deploy, store::revisions::{self, Revision}};"),
        ["deploy", "store"]
    );
    assert_eq!(
        crate_paths("    let x = crate::server::AppState::open(s); // crate::http"),
        ["server"]
    );
    assert!(crate_paths("// use crate::engine;").is_empty());
    // A back edge in a lower layer is reported with its file and line.
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("chat")).unwrap();
    std::fs::write(
        src.join("chat/flow.rs"),
        "use crate::config::Bot;\nuse crate::engine::Engine;\n",
    )
    .unwrap();
    assert_eq!(
        violations(&src),
        ["src/chat/flow.rs:2: `chat` may not import `engine` (docs/architecture.md, layers)"]
    );
}
