//! Installing a bundle into the directory the server watches, so that a reader never sees
//! half of it: every file is written to a temporary file beside it, synced, and renamed over
//! the old one, all under the exclusive bundle lock that readers take shared.

use std::collections::BTreeSet;
use std::fs;
use std::io::{self, Write};
use std::path::Path;

use super::{BundleLock, Sources, is_bundle_file};

/// Hidden, and no `*.toml`: a reader skips a temporary file, and the next install removes
/// one that a crash left behind.
const TEMP_SUFFIX: &str = ".livechat-tmp";

/// Installs `sources` as the bundle in `dir` (created if missing): writes every file, and
/// removes the bundle files that are not in `sources`.
pub fn install(dir: &Path, sources: &Sources) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    let _lock = BundleLock::exclusive(dir)?;
    install_locked(dir, sources)
}

/// `install` for a caller that holds `BundleLock::exclusive(dir)` already.
pub fn install_locked(dir: &Path, sources: &Sources) -> io::Result<()> {
    // Check every name before touching anything: names come from uploads too.
    for name in sources.keys() {
        check_name(name)?;
    }
    for (name, text) in sources {
        let path = dir.join(name);
        // An unchanged file is left alone: no rename, no event for the watcher.
        if fs::read(&path).is_ok_and(|old| old == text.as_bytes()) {
            continue;
        }
        let temp = dir.join(format!(".{name}{TEMP_SUFFIX}"));
        let mut file = fs::File::create(&temp)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        drop(file);
        fs::rename(&temp, &path)?;
    }
    let keep: BTreeSet<&str> = sources.keys().map(String::as_str).collect();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let stale_bundle_file = is_bundle_file(&name) && !keep.contains(name.as_str());
        let stale_temp = name.starts_with('.') && name.ends_with(TEMP_SUFFIX);
        if (stale_bundle_file || stale_temp) && entry.file_type()?.is_file() {
            fs::remove_file(entry.path())?;
        }
    }
    sync_dir(dir)
}

/// The bundle files in `dir` as they stand, for a caller that holds
/// `BundleLock::exclusive(dir)` (`config::read_dir` would wait for that lock).
pub fn read_locked(dir: &Path) -> io::Result<Sources> {
    let mut sources = Sources::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if is_bundle_file(&name) && entry.file_type()?.is_file() {
            let text = String::from_utf8(fs::read(entry.path())?)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            sources.insert(name, text);
        }
    }
    Ok(sources)
}

/// A bundle file's name must be a plain `NAME.toml` inside the directory.
fn check_name(name: &str) -> io::Result<()> {
    let plain = !name.contains(['/', '\\']) && Path::new(name).file_name() == Some(name.as_ref());
    if plain && is_bundle_file(name) {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("`{name}` is not a bundle file name (NAME.toml)"),
        ))
    }
}

/// Makes the renames and removals durable.
#[cfg(unix)]
fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sources(pairs: &[(&str, &str)]) -> Sources {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn listing(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn installs_replaces_and_removes_only_bundle_files() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("bots");
        install(
            &dir,
            &sources(&[("a.toml", "one"), ("agents.toml", "roster")]),
        )
        .unwrap();
        assert_eq!(fs::read_to_string(dir.join("a.toml")).unwrap(), "one");

        // Files that are no part of a bundle stay; a leftover temporary file goes.
        fs::write(dir.join("README.md"), "notes").unwrap();
        fs::write(dir.join(".b.toml.livechat-tmp"), "half").unwrap();
        install(
            &dir,
            &sources(&[("b.toml", "two"), ("agents.toml", "roster 2")]),
        )
        .unwrap();
        assert_eq!(
            listing(&dir),
            vec![".livechat.lock", "README.md", "agents.toml", "b.toml"]
        );
        assert_eq!(fs::read_to_string(dir.join("b.toml")).unwrap(), "two");
        assert_eq!(
            fs::read_to_string(dir.join("agents.toml")).unwrap(),
            "roster 2"
        );
        let (read, diags) = crate::config::read_dir(&dir).unwrap();
        assert_eq!(diags, vec![]);
        assert_eq!(
            read,
            sources(&[("b.toml", "two"), ("agents.toml", "roster 2")])
        );
        assert_eq!(read_locked(&dir).unwrap(), read);
    }

    #[test]
    fn a_name_outside_the_directory_is_refused_before_anything_is_written() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("bots");
        install(&dir, &sources(&[("a.toml", "one")])).unwrap();
        for bad in [
            "../evil.toml",
            "sub/x.toml",
            ".hidden.toml",
            "notes.txt",
            ".toml",
        ] {
            let err = install(&dir, &sources(&[("b.toml", "two"), (bad, "x")])).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{bad}");
        }
        assert_eq!(listing(&dir), vec![".livechat.lock", "a.toml"]);
        assert!(!tmp.path().join("evil.toml").exists());
    }

    #[test]
    fn a_reader_holding_the_shared_lock_is_never_shown_half_a_bundle() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let old = sources(&[("a.toml", "old a"), ("b.toml", "old b")]);
        let new = sources(&[("a.toml", "new a"), ("c.toml", "new c")]);
        install(&dir, &old).unwrap();

        // While a reader holds the lock, the installer waits; the reader sees the old bundle.
        let reader = BundleLock::shared(&dir);
        let writer = {
            let (dir, new) = (dir.clone(), new.clone());
            std::thread::spawn(move || install(&dir, &new))
        };
        let mut seen = Sources::new();
        for name in ["a.toml", "b.toml", "c.toml"] {
            if let Ok(text) = fs::read_to_string(dir.join(name)) {
                seen.insert(name.to_string(), text);
            }
        }
        assert_eq!(seen, old);
        drop(reader);
        writer.join().unwrap().unwrap();
        assert_eq!(crate::config::read_dir(&dir).unwrap().0, new);
    }
}
