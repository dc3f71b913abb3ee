//! `livechat init DIR`: writes a commented starter bundle that validates, for a first-time
//! admin to edit. The files are embedded in the binary; an existing file is never replaced
//! unless `--force` is given.

use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::config::{AGENTS_FILE, BundleLock, RESPONSES_FILE};

/// One file of the starter bundle.
struct StarterFile {
    name: &'static str,
    text: &'static str,
    about: &'static str,
}

const STARTER: [StarterFile; 3] = [
    StarterFile {
        name: AGENTS_FILE,
        text: include_str!("../../templates/init/agents.toml"),
        about: "the roster: one team and one agent",
    },
    StarterFile {
        name: RESPONSES_FILE,
        text: include_str!("../../templates/init/responses.toml"),
        about: "canned responses for the agent console",
    },
    StarterFile {
        name: "support.toml",
        text: include_str!("../../templates/init/support.toml"),
        about: "the bot `support`: a flow, a Live Chat action, an offline form",
    },
];

pub fn run(dir: &Path, force: bool) -> ExitCode {
    if let Err(e) = fs::create_dir_all(dir) {
        return super::fail(format_args!("cannot create {}: {e}", dir.display()));
    }
    // A server watching DIR reads under the shared lock, so it never sees half the files.
    let _lock = match BundleLock::exclusive(dir) {
        Ok(lock) => lock,
        Err(e) => return super::fail(format_args!("cannot lock {}: {e}", dir.display())),
    };

    let mut existing = Vec::new();
    for file in &STARTER {
        let path = dir.join(file.name);
        match fs::symlink_metadata(&path) {
            Ok(_) => existing.push(path),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return super::fail(format_args!("cannot check {}: {e}", path.display())),
        }
    }
    if !force && !existing.is_empty() {
        let names: Vec<String> = existing.iter().map(|p| p.display().to_string()).collect();
        let (verb, pronoun) = if names.len() == 1 {
            ("exists", "it")
        } else {
            ("exist", "them")
        };
        eprintln!(
            "error: {} already {verb}; nothing was written. \
             Run again with --force to overwrite {pronoun}.",
            names.join(", ")
        );
        return ExitCode::from(1);
    }

    for file in &STARTER {
        let path = dir.join(file.name);
        if let Err(e) = write_file(&path, file.text, force) {
            return super::fail(format_args!("cannot write {}: {e}", path.display()));
        }
    }

    print_summary(dir, &existing);
    ExitCode::SUCCESS
}

/// Writes `text` to `path`; without `overwrite`, a file that appeared meanwhile is an error.
fn write_file(path: &Path, text: &str, overwrite: bool) -> io::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true);
    if overwrite {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    let mut file = options.open(path)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
}

fn print_summary(dir: &Path, overwritten: &[PathBuf]) {
    let paths: Vec<(String, &StarterFile)> = STARTER
        .iter()
        .map(|f| (dir.join(f.name).display().to_string(), f))
        .collect();
    let width = paths.iter().map(|(p, _)| p.len()).max().unwrap_or(0);
    println!("Wrote a starter bundle to {}:", dir.display());
    for (path, file) in &paths {
        let note = if overwritten.iter().any(|p| p == &dir.join(file.name)) {
            " (overwritten)"
        } else {
            ""
        };
        println!("  {path:<width$}  {}{note}", file.about);
    }
    let quoted = shell_quote(&dir.display().to_string());
    println!();
    println!("Next:");
    println!(
        "  1. Put real email addresses into {} and {}.",
        dir.join(AGENTS_FILE).display(),
        dir.join("support.toml").display()
    );
    println!("  2. Check the bundle:   livechat validate {quoted}");
    println!("  3. Start the server:   livechat serve --bots-dir {quoted}");
    println!("Every key is explained in the livechat documentation, docs/config.md.");
}

/// `s` as one word for a POSIX shell, quoted only when it needs to be.
fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+:,@%=".contains(c));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_quoted_only_when_needed() {
        assert_eq!(shell_quote("bots"), "bots");
        assert_eq!(shell_quote("/etc/livechat/bots"), "/etc/livechat/bots");
        assert_eq!(shell_quote("my bots"), "'my bots'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn the_starter_bundle_is_valid() {
        let sources = STARTER
            .iter()
            .map(|f| (f.name.to_string(), f.text.to_string()))
            .collect();
        let bundle = crate::config::Bundle::from_sources(sources, &|_| None);
        let bundle = bundle.unwrap_or_else(|diags| {
            panic!("{}", diags.iter().map(|d| d.render("")).collect::<String>())
        });
        assert_eq!(bundle.bots.keys().collect::<Vec<_>>(), ["support"]);
    }
}
