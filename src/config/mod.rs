//! Config as code: the bundle of TOML files admins keep in git.
//!
//! `Bundle::from_sources` is pure: file texts in, a validated bundle or every error out.
//! Reading a directory, installing a bundle and watching for edits are thin wrappers.

pub mod contacts;
pub mod diagnostic;
pub mod graph;
pub mod hours;
pub mod install;
pub mod live;
pub mod load;
pub mod plan;
pub mod schema;
pub mod validate;
pub mod values;
pub mod watch;

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::Path;

use sha2::{Digest, Sha256};

pub use diagnostic::Diagnostic;
pub use live::{Live, LiveConfig, Revision};
pub use schema::{Bot, Responses, Roster};

use load::FileCtx;

/// The roster file of a bundle.
pub const AGENTS_FILE: &str = "agents.toml";
/// The canned-responses file of a bundle.
pub const RESPONSES_FILE: &str = "responses.toml";
/// The lock that keeps a reader from seeing half an installed bundle.
pub const LOCK_FILE: &str = ".livechat.lock";

/// How a bundle looks up `${NAME}` references.
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The process environment, for `Env`.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// The file texts of a bundle, by file name (`support.toml`).
pub type Sources = BTreeMap<String, String>;

/// A loaded, validated bundle: an immutable value, swapped in whole.
#[derive(Debug, Clone, PartialEq)]
pub struct Bundle {
    pub sources: Sources,
    /// Bots by id (the file name without `.toml`).
    pub bots: BTreeMap<String, Bot>,
    pub roster: Roster,
    pub responses: Responses,
    /// SHA-256 over every file name and text: equal bundles have equal hashes.
    pub hash: String,
}

impl Bundle {
    /// Parses and validates a bundle; every error at once when it is not valid.
    pub fn from_sources(sources: Sources, env: Env<'_>) -> Result<Bundle, Vec<Diagnostic>> {
        let mut diags = Vec::new();
        let mut bots = BTreeMap::new();
        let mut roster = Some(Roster::default());
        let mut responses = Some(Responses::default());
        for (file, text) in &sources {
            let mut ctx = FileCtx::new(file, text);
            match file.as_str() {
                AGENTS_FILE => roster = load::parse_roster(&mut ctx),
                RESPONSES_FILE => responses = load::parse_responses(&mut ctx),
                _ => {
                    let id = bot_id(file);
                    if let Some(bot) = load::parse_bot(&mut ctx) {
                        bots.insert(id.to_string(), bot);
                    }
                }
            }
            diags.extend(ctx.diags);
        }
        if !diags.is_empty() {
            diagnostic::sort(&mut diags);
            return Err(diags);
        }
        let bundle = Bundle {
            hash: hash_sources(&sources),
            sources,
            bots,
            roster: roster.unwrap_or_default(),
            responses: responses.unwrap_or_default(),
        };
        let mut diags = validate::validate(&bundle, env);
        if diags.is_empty() {
            Ok(bundle)
        } else {
            diagnostic::sort(&mut diags);
            Err(diags)
        }
    }

    /// An empty bundle (no bots), what a server runs before any valid bundle exists.
    pub fn empty() -> Bundle {
        let sources = Sources::new();
        Bundle {
            hash: hash_sources(&sources),
            sources,
            bots: BTreeMap::new(),
            roster: Roster::default(),
            responses: Responses::default(),
        }
    }
}

/// A bot's id: its file name without `.toml`.
pub fn bot_id(file: &str) -> &str {
    file.strip_suffix(".toml").unwrap_or(file)
}

/// The content hash of a bundle's files.
pub fn hash_sources(sources: &Sources) -> String {
    let mut h = Sha256::new();
    for (name, text) in sources {
        h.update((name.len() as u64).to_le_bytes());
        h.update(name.as_bytes());
        h.update((text.len() as u64).to_le_bytes());
        h.update(text.as_bytes());
    }
    hex::encode(h.finalize())
}

/// Whether a directory entry is part of the bundle: a visible `*.toml` file.
pub fn is_bundle_file(name: &str) -> bool {
    name.ends_with(".toml") && !name.starts_with('.') && name.len() > ".toml".len()
}

/// Why a bundle directory could not be read at all (as opposed to holding errors).
#[derive(Debug, thiserror::Error)]
#[error("cannot read the bundle directory {path}: {source}")]
pub struct ReadError {
    pub path: String,
    #[source]
    pub source: io::Error,
}

/// Reads every bundle file of `dir`, holding the bundle lock (shared) so that a bundle being
/// installed by `livechat apply` is never seen half-written. A file that is not UTF-8 comes
/// back as a diagnostic.
pub fn read_dir(dir: &Path) -> Result<(Sources, Vec<Diagnostic>), ReadError> {
    let err = |source| ReadError {
        path: dir.display().to_string(),
        source,
    };
    let meta = fs::metadata(dir).map_err(err)?;
    if !meta.is_dir() {
        return Err(err(io::Error::new(
            io::ErrorKind::NotADirectory,
            "not a directory",
        )));
    }
    let _lock = BundleLock::shared(dir);
    let mut sources = Sources::new();
    let mut diags = Vec::new();
    for entry in fs::read_dir(dir).map_err(err)? {
        let entry = entry.map_err(err)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !is_bundle_file(&name) || !entry.path().is_file() {
            continue;
        }
        match fs::read(entry.path()) {
            Ok(bytes) => match String::from_utf8(bytes) {
                Ok(text) => {
                    sources.insert(name, text);
                }
                Err(_) => diags.push(Diagnostic::file(&name, "the file is not valid UTF-8")),
            },
            // A file removed between listing and reading is simply not part of the bundle.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => diags.push(Diagnostic::file(&name, format!("cannot read: {e}"))),
        }
    }
    Ok((sources, diags))
}

/// Reads and validates the bundle in `dir`.
pub fn load_dir(dir: &Path, env: Env<'_>) -> Result<Result<Bundle, Vec<Diagnostic>>, ReadError> {
    let (sources, read_diags) = read_dir(dir)?;
    if !read_diags.is_empty() {
        return Ok(Err(read_diags));
    }
    Ok(Bundle::from_sources(sources, env))
}

/// An advisory lock on `dir/.livechat.lock`: writers hold it exclusively while installing,
/// readers hold it shared while reading. Released on drop. Where the lock file cannot be
/// created (a read-only directory) nobody can install there either, so reading goes on
/// without it.
pub struct BundleLock(#[allow(dead_code)] Option<fs::File>);

impl BundleLock {
    pub fn shared(dir: &Path) -> BundleLock {
        let file = Self::open(dir);
        if let Some(f) = &file {
            let _ = f.lock_shared();
        }
        BundleLock(file)
    }

    pub fn exclusive(dir: &Path) -> io::Result<BundleLock> {
        let f = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(LOCK_FILE))?;
        f.lock()?;
        Ok(BundleLock(Some(f)))
    }

    fn open(dir: &Path) -> Option<fs::File> {
        let path = dir.join(LOCK_FILE);
        fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .or_else(|_| fs::File::open(&path))
            .ok()
    }
}
