//! The attachment files of a backup: `livechat backup FILE` copies the files that the
//! copied database refers to (and their previews) into the directory `FILE.files` beside
//! it, laid out as under `DATA_DIR/files`; `livechat restore FILE` puts those back.
//!
//! Files are named by their content's SHA-256, so a file already in the target with the
//! same name and size is the same file: a second backup to the same name copies only what
//! is new, and drops from the directory what the database no longer refers to.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use rusqlite::Connection;

use super::attachments::{FILES_DIR, file_path};
use super::previews::preview_path;

/// What was copied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Copied {
    /// Files (originals and previews) now in the target.
    pub files: u64,
    /// Of those, the ones copied this time (the rest were there already).
    pub new: u64,
    /// Files the database refers to that were not found (removed after its snapshot).
    pub missing: u64,
}

/// The directory of a backup's files: `FILE.files` beside `FILE`.
pub fn dir_of(backup: &Path) -> PathBuf {
    let mut name = backup.as_os_str().to_owned();
    name.push(".files");
    PathBuf::from(name)
}

/// The contents the database's attachment rows refer to. Run it in the same read
/// transaction as the copy of the database, so that both are of one snapshot.
pub fn referenced(conn: &Connection) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn.prepare("SELECT DISTINCT sha256 FROM attachments")?;
    let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
    rows.collect()
}

/// Whether `name` could be a stored file's name (no path tricks from a crafted backup).
fn plausible(name: &str) -> bool {
    let sha = name.strip_suffix(".preview").unwrap_or(name);
    sha.len() == 64 && sha.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Copies `from` to `to` through a temporary file beside `to`, unless `to` is there with
/// the same size. Answers whether it copied.
fn copy_if_new(from: &Path, to: &Path) -> io::Result<bool> {
    let size = fs::metadata(from)?.len();
    if fs::metadata(to).is_ok_and(|m| m.len() == size) {
        return Ok(false);
    }
    if let Some(dir) = to.parent() {
        fs::create_dir_all(dir)?;
    }
    let mut tmp = to.as_os_str().to_owned();
    tmp.push(format!(".tmp-{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    fs::copy(from, &tmp)?;
    fs::File::open(&tmp)?.sync_all()?;
    fs::rename(&tmp, to).inspect_err(|_| {
        let _ = fs::remove_file(&tmp);
    })?;
    Ok(true)
}

/// Copies the files of `shas` (and their previews) from `data_dir` into `target`, and
/// removes from `target` the files that are not among them.
pub fn copy_out(data_dir: &Path, shas: &[String], target: &Path) -> io::Result<Copied> {
    let mut copied = Copied::default();
    let mut keep = HashSet::new();
    for sha in shas.iter().filter(|s| plausible(s)) {
        let original = file_path(data_dir, sha);
        let preview = preview_path(data_dir, sha);
        for (from, required) in [(original, true), (preview, false)] {
            let Some(name) = from.file_name().map(|n| n.to_string_lossy().into_owned()) else {
                continue;
            };
            let to = target.join(&sha[..2]).join(&name);
            match copy_if_new(&from, &to) {
                Ok(new) => {
                    copied.files += 1;
                    copied.new += u64::from(new);
                    keep.insert(name);
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    copied.missing += u64::from(required);
                }
                Err(e) => return Err(e),
            }
        }
    }
    // What an earlier backup to this name left that this one does not have.
    for (path, name) in walk(target)? {
        if !keep.contains(&name) {
            fs::remove_file(&path)?;
        }
    }
    Ok(copied)
}

/// Puts the files of a backup's directory (`source`, as [`copy_out`] wrote it) back under
/// `DATA_DIR/files`; a file there already is left as it is.
pub fn copy_in(source: &Path, data_dir: &Path) -> io::Result<Copied> {
    let mut copied = Copied::default();
    let files = data_dir.join(FILES_DIR);
    for (path, name) in walk(source)? {
        if !plausible(&name) {
            continue;
        }
        let to = files.join(&name[..2]).join(&name);
        copied.files += 1;
        copied.new += u64::from(copy_if_new(&path, &to)?);
    }
    Ok(copied)
}

/// The files two levels down (`ab/<name>`), with their names; none when `dir` is missing.
fn walk(dir: &Path) -> io::Result<Vec<(PathBuf, String)>> {
    let mut out = Vec::new();
    let top = match fs::read_dir(dir) {
        Ok(top) => top,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for sub in top {
        let sub = sub?.path();
        if !sub.is_dir() {
            continue;
        }
        for f in fs::read_dir(&sub)? {
            let f = f?;
            if f.file_type()?.is_file() {
                let name = f.file_name().to_string_lossy().into_owned();
                out.push((f.path(), name));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_what_is_new_and_drops_what_is_gone() {
        let data = tempfile::tempdir().unwrap();
        let out = tempfile::tempdir().unwrap();
        let target = out.path().join("b.db.files");
        let (a, b) = ("a".repeat(64), "b".repeat(64));
        for (sha, body) in [(&a, "one"), (&b, "two")] {
            let path = file_path(data.path(), sha);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(&path, body).unwrap();
        }
        fs::write(preview_path(data.path(), &a), "small").unwrap();
        let gone = "c".repeat(64);

        let first = copy_out(data.path(), &[a.clone(), b.clone(), gone.clone()], &target).unwrap();
        assert_eq!(
            first,
            Copied {
                files: 3,
                new: 3,
                missing: 1
            }
        );
        // Again with one file fewer: nothing new, and the dropped one goes.
        let again = copy_out(data.path(), std::slice::from_ref(&a), &target).unwrap();
        assert_eq!((again.files, again.new), (2, 0));
        assert!(!target.join("bb").join(&b).exists());

        let restored = tempfile::tempdir().unwrap();
        let back = copy_in(&target, restored.path()).unwrap();
        assert_eq!((back.files, back.new), (2, 2));
        assert_eq!(fs::read(file_path(restored.path(), &a)).unwrap(), b"one");
        assert_eq!(
            fs::read(preview_path(restored.path(), &a)).unwrap(),
            b"small"
        );
        assert!(!plausible("../../etc/passwd") && plausible(&a));
    }
}
