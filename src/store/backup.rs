//! `livechat backup` and `livechat restore`: a consistent copy of the database while the
//! server serves, and putting such a copy back in place of the data directory's database.
//!
//! The copy is made with SQLite's online backup API, page by page in small steps, all
//! inside one read transaction on the source: every step reads the same snapshot, so a
//! server writing meanwhile neither restarts the copy nor ends up half in it. In WAL mode a
//! reader never holds up the writer; what it holds up is the reuse of the WAL, which grows
//! while the copy runs and is started over at the next checkpoint after it.
//!
//! `VACUUM INTO` would do as well for consistency, but it rebuilds every table and index
//! (time and CPU grow with the database and cannot be paced); the backup API copies pages
//! as they are and lets us pause between steps, leaving the disk to the server.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::backup::Backup;
use rusqlite::{Connection, ErrorCode, OpenFlags};
use rusqlite_migration::SchemaVersion;

use super::backup_files::{self, Copied};
use super::lock::{DataDirLock, LockError};
use super::{DB_FILE, MIGRATIONS, StoreError};

/// Pages copied per step (128 KiB at the 512-byte pages of a new database).
const STEP_PAGES: i32 = 256;

/// The pause between two steps.
const STEP_PAUSE: Duration = Duration::from_millis(2);

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("there is no database at {0}")]
    NoDatabase(String),
    #[error("{0} exists; pass --force to overwrite it")]
    Exists(String),
    #[error("{file} is not a livechat database: {reason}")]
    NotLivechat { file: String, reason: String },
    #[error(transparent)]
    Locked(#[from] LockError),
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: String,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<rusqlite::Error> for BackupError {
    fn from(e: rusqlite::Error) -> BackupError {
        BackupError::Store(StoreError::Sqlite(e))
    }
}

fn io_error(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> BackupError {
    let path = path.display().to_string();
    move |source| BackupError::Io { what, path, source }
}

/// What a database file holds, as `backup` and `restore` print it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// The file's size in bytes.
    pub bytes: u64,
    /// The `seq` of the last event (0: none yet).
    pub last_seq: i64,
    /// The newest config revision, if any was installed.
    pub revision: Option<i64>,
    /// How many migrations have run on it (`PRAGMA user_version`).
    pub schema_version: i64,
    /// The attachment files copied beside it (`FILE.files`, [`super::backup_files`]).
    pub files: Copied,
}

/// Copies `DATA_DIR/livechat.db` into `file`, through a temporary file beside it renamed
/// into place at the end, and the attachment files the copy refers to into `FILE.files`.
/// Refuses to replace an existing `file` unless `force`.
pub fn backup(data_dir: &Path, file: &Path, force: bool) -> Result<Summary, BackupError> {
    let db = data_dir.join(DB_FILE);
    if !db.is_file() {
        return Err(BackupError::NoDatabase(db.display().to_string()));
    }
    if !force && exists(file) {
        return Err(BackupError::Exists(file.display().to_string()));
    }
    let name = file
        .file_name()
        .ok_or_else(|| BackupError::Io {
            what: "not a file name:",
            path: file.display().to_string(),
            source: io::ErrorKind::InvalidInput.into(),
        })?
        .to_string_lossy();
    let tmp = Staged::new(file.with_file_name(format!(".{name}.tmp-{}", std::process::id())));
    let source = super::connect(data_dir)?;
    // One read transaction for the whole copy (see the module's header): the backup's
    // steps use it rather than a fresh snapshot each.
    source.execute_batch("BEGIN DEFERRED")?;
    source.query_row("SELECT count(*) FROM sqlite_schema", [], |_| Ok(()))?;
    let summary = {
        let mut dest = Connection::open(&tmp.path).map_err(|source| StoreError::Open {
            path: tmp.path.display().to_string(),
            source,
        })?;
        Backup::new(&source, &mut dest)?.run_to_completion(STEP_PAGES, STEP_PAUSE, None)?;
        // The source's pages say WAL; a backup is one file that opens without a -wal or
        // -shm beside it (the server turns WAL on again when it opens a restored copy).
        stand_alone(&dest)?;
        summarize(&dest, 0)?
    };
    // The files of the same snapshot.
    let shas = if has_table(&source, "attachments")? {
        backup_files::referenced(&source)?
    } else {
        Vec::new()
    };
    source.execute_batch("COMMIT")?;
    drop(source);
    sync(&tmp.path)?;
    install(&tmp, file, force)?;
    let bytes = fs::metadata(file)
        .map_err(io_error("cannot read", file))?
        .len();
    let files_dir = backup_files::dir_of(file);
    let files = backup_files::copy_out(data_dir, &shas, &files_dir)
        .map_err(io_error("cannot copy the attachment files to", &files_dir))?;
    Ok(Summary {
        bytes,
        files,
        ..summary
    })
}

fn has_table(conn: &Connection, name: &str) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT count(*) > 0 FROM sqlite_schema WHERE type = 'table' AND name = ?1",
        [name],
        |r| r.get(0),
    )
}

/// What `restore` did.
#[derive(Debug)]
pub struct Restored {
    pub summary: Summary,
    /// Where the database it replaced is kept (None when there was none).
    pub kept: Option<PathBuf>,
}

/// Puts a copy of `file` in place of `DATA_DIR/livechat.db`, after checking that it is a
/// sound livechat database, and the attachment files of `FILE.files` (when there) back
/// under `DATA_DIR/files`. Refuses while a server runs on the data directory (it holds
/// the directory's lock, see [`DataDirLock`]); keeps the database it replaces as
/// `livechat.db.before-restore-<time>`.
pub fn restore(data_dir: &Path, file: &Path) -> Result<Restored, BackupError> {
    // Before anything is written: a missing file is not worth taking the lock for.
    fs::metadata(file).map_err(io_error("cannot read", file))?;
    let _lock = DataDirLock::try_acquire(data_dir)?;
    // The copy that is checked is the copy that is installed.
    let staged = Staged::new(data_dir.join(format!(".{DB_FILE}.restore-{}", std::process::id())));
    fs::copy(file, &staged.path).map_err(io_error("cannot copy the backup to", &staged.path))?;
    let mut summary = check(&staged.path, file)?;
    owned_like(&staged.path, data_dir);
    sync(&staged.path)?;
    // The files first: once the database is in place, what it refers to is there.
    let files_dir = backup_files::dir_of(file);
    summary.files = backup_files::copy_in(&files_dir, data_dir).map_err(io_error(
        "cannot copy the attachment files from",
        &files_dir,
    ))?;
    let kept = set_aside(data_dir)?;
    let db = data_dir.join(DB_FILE);
    fs::rename(&staged.path, &db).map_err(io_error("cannot rename the backup to", &db))?;
    staged.installed();
    sync_dir(data_dir)?;
    Ok(Restored { summary, kept })
}

/// Checks that the database at `path` (a copy of `shown`) is livechat's and sound.
fn check(path: &Path, shown: &Path) -> Result<Summary, BackupError> {
    let refuse = |reason: String| BackupError::NotLivechat {
        file: shown.display().to_string(),
        reason,
    };
    // Errors that say what the file holds, as opposed to what failed around it.
    let content = |e: rusqlite::Error| match e.sqlite_error_code() {
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => refuse(e.to_string()),
        _ => BackupError::from(e),
    };
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE)?;
    let problems: Vec<String> = conn
        .prepare("PRAGMA integrity_check(20)")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .map_err(content)?;
    if problems != ["ok"] {
        return Err(refuse(format!(
            "PRAGMA integrity_check found {}",
            problems.join("; ")
        )));
    }
    match MIGRATIONS.current_version(&conn) {
        Ok(SchemaVersion::Inside(_)) => {}
        Ok(SchemaVersion::NoneSet) => {
            return Err(refuse(
                "it has no schema version (PRAGMA user_version is 0)".into(),
            ));
        }
        Ok(SchemaVersion::Outside(n)) => {
            return Err(refuse(format!(
                "its schema version {n} is newer than this livechat's; restore it with the \
                 version that wrote it"
            )));
        }
        Err(e) => return Err(refuse(e.to_string())),
    }
    // The first migration's table, with its columns.
    conn.prepare("SELECT number, hash, created_at, source, summary, bundle FROM revisions")
        .map_err(|e| refuse(format!("it has no table of config revisions ({e})")))?;
    stand_alone(&conn).map_err(content)?;
    let bytes = fs::metadata(path)
        .map_err(io_error("cannot read", path))?
        .len();
    summarize(&conn, bytes)
}

fn summarize(conn: &Connection, bytes: u64) -> Result<Summary, BackupError> {
    let has_events: bool = conn.query_row(
        "SELECT count(*) > 0 FROM sqlite_schema WHERE type = 'table' AND name = 'events'",
        [],
        |r| r.get(0),
    )?;
    let last_seq = if has_events {
        conn.query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |r| r.get(0))?
    } else {
        0
    };
    Ok(Summary {
        bytes,
        last_seq,
        revision: conn.query_row("SELECT MAX(number) FROM revisions", [], |r| r.get(0))?,
        schema_version: conn.query_row("PRAGMA user_version", [], |r| r.get(0))?,
        files: Copied::default(),
    })
}

/// Gives the restored file the data directory's owner, so that a restore run as root leaves
/// a database the server's user can write. Best effort: only root may give a file away, and
/// anyone else writes files that are theirs already.
fn owned_like(path: &Path, data_dir: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if let Ok(dir) = fs::metadata(data_dir) {
            let _ = std::os::unix::fs::chown(path, Some(dir.uid()), Some(dir.gid()));
        }
    }
    #[cfg(not(unix))]
    let _ = (path, data_dir);
}

/// Rollback journal instead of WAL: folds a WAL into the file and deletes it, so that the
/// file alone is the whole database.
fn stand_alone(conn: &Connection) -> rusqlite::Result<()> {
    conn.pragma_update_and_check(None, "journal_mode", "DELETE", |_| Ok(()))
}

/// Moves the data directory's database aside as `livechat.db.before-restore-<time>`, with
/// every commit of its WAL in it, and clears the way for the restored one: a `-wal` left
/// beside the new file would be replayed into it (SQLite finds a WAL by its name only).
fn set_aside(data_dir: &Path) -> Result<Option<PathBuf>, BackupError> {
    let db = data_dir.join(DB_FILE);
    let beside = |path: &Path, suffix: &str| {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        PathBuf::from(name)
    };
    let (wal, shm, journal) = (
        beside(&db, "-wal"),
        beside(&db, "-shm"),
        beside(&db, "-journal"),
    );
    if !db.is_file() {
        // Without their database a WAL and its index hold nothing that can be read.
        for stale in [&wal, &shm, &journal] {
            remove_if_there(stale)?;
        }
        return Ok(None);
    }
    let stamp = jiff::Timestamp::now()
        .strftime("%Y%m%dT%H%M%SZ")
        .to_string();
    let mut aside = data_dir.join(format!("{DB_FILE}.before-restore-{stamp}"));
    for n in 2.. {
        if !exists(&aside) {
            break;
        }
        aside = data_dir.join(format!("{DB_FILE}.before-restore-{stamp}-{n}"));
    }
    // Nobody else has the file open (the server's lock is ours): its WAL, from a crash or a
    // `kill -9`, goes into the file itself. Should the old file be too broken for that, its
    // WAL and journal move with it instead, under the names SQLite looks for.
    let folded =
        Connection::open_with_flags(&db, OpenFlags::SQLITE_OPEN_READ_WRITE).and_then(|conn| {
            conn.busy_timeout(Duration::from_secs(5))?;
            stand_alone(&conn)
        });
    if let Err(e) = folded {
        tracing::warn!(
            "cannot fold the WAL into {} ({e}); it is kept beside it",
            db.display()
        );
    }
    for (from, suffix) in [(&wal, "-wal"), (&journal, "-journal")] {
        if exists(from) {
            let to = beside(&aside, suffix);
            fs::rename(from, &to).map_err(io_error("cannot move aside", from))?;
        }
    }
    // The WAL's shared-memory index: rebuilt from the WAL, never needed once no one runs.
    remove_if_there(&shm)?;
    // A second name first, so that `livechat.db` is the old file until the restored one
    // replaces it in one rename; where hard links are not supported, a plain move.
    if fs::hard_link(&db, &aside).is_err() {
        fs::rename(&db, &aside).map_err(io_error("cannot move aside", &db))?;
    }
    Ok(Some(aside))
}

/// A file being written: removed, with what SQLite may have left beside it, unless it was
/// installed.
struct Staged {
    path: PathBuf,
    installed: bool,
}

impl Staged {
    fn new(path: PathBuf) -> Staged {
        let staged = Staged {
            path,
            installed: false,
        };
        staged.clean();
        staged
    }

    fn installed(mut self) {
        self.installed = true;
    }

    fn clean(&self) {
        for suffix in ["", "-journal", "-wal", "-shm"] {
            let mut name = self.path.as_os_str().to_owned();
            name.push(suffix);
            let _ = fs::remove_file(PathBuf::from(name));
        }
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.installed {
            self.clean();
        }
    }
}

/// Renames the finished backup to `file`. Without `force`, a `file` that appeared meanwhile
/// is not replaced: the hard link fails if it exists.
fn install(tmp: &Staged, file: &Path, force: bool) -> Result<(), BackupError> {
    let placed = if force {
        fs::rename(&tmp.path, file)
    } else {
        match fs::hard_link(&tmp.path, file) {
            Ok(()) => fs::remove_file(&tmp.path),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(BackupError::Exists(file.display().to_string()));
            }
            // A file system without hard links: check, then rename.
            Err(_) if exists(file) => {
                return Err(BackupError::Exists(file.display().to_string()));
            }
            Err(_) => fs::rename(&tmp.path, file),
        }
    };
    placed.map_err(io_error("cannot write", file))?;
    let dir = match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    sync_dir(dir)
}

/// Something is at `path`, a dangling symbolic link included.
fn exists(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok()
}

fn remove_if_there(path: &Path) -> Result<(), BackupError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_error("cannot remove", path)(e)),
        _ => Ok(()),
    }
}

fn sync(path: &Path) -> Result<(), BackupError> {
    File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(io_error("cannot sync", path))
}

/// Makes a rename in `dir` durable.
fn sync_dir(dir: &Path) -> Result<(), BackupError> {
    sync(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn served(dir: &Path) -> Connection {
        let conn = crate::store::open(dir).unwrap();
        conn.execute(
            "INSERT INTO revisions (hash, created_at, source, summary, bundle)
             VALUES ('h', 't', 'apply', 's', '{}')",
            [],
        )
        .unwrap();
        conn
    }

    fn add_events(conn: &Connection, n: usize) {
        for i in 0..n {
            conn.execute(
                "INSERT INTO events (conversation_id, bot, type, at, visitor_visible, data)
                 VALUES ('c', 'b', 'message.created', 't', 1, ?1)",
                [format!("{{\"text\": \"{i}\"}}")],
            )
            .unwrap();
        }
    }

    #[test]
    fn a_backup_is_one_file_with_every_commit_and_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let conn = served(&data);
        // The writer never checkpoints: every commit is in the WAL only.
        conn.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
        add_events(&conn, 300);
        let file = dir.path().join("copy.db");
        let summary = backup(&data, &file, false).unwrap();
        assert_eq!(summary.last_seq, 300);
        assert_eq!(summary.revision, Some(1));
        assert_eq!(summary.bytes, fs::metadata(&file).unwrap().len());
        // A rollback-journal file: bytes 18 and 19 of the header are 1 (WAL: 2).
        let header = fs::read(&file).unwrap();
        assert_eq!(&header[..16], b"SQLite format 3\0");
        assert_eq!((header[18], header[19]), (1, 1));
        let left: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n != "data")
            .collect();
        assert_eq!(left, ["copy.db"]);

        add_events(&conn, 1);
        match backup(&data, &file, false) {
            Err(BackupError::Exists(_)) => {}
            other => panic!("overwrote without --force: {other:?}"),
        }
        assert_eq!(backup(&data, &file, true).unwrap().last_seq, 301);
    }

    #[test]
    fn restore_keeps_the_replaced_database_with_its_wal_and_leaves_no_stale_wal() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        let file = dir.path().join("a.db");
        let source = served(&a);
        add_events(&source, 5);
        backup(&a, &file, false).unwrap();

        // b's database has commits in its WAL only, as after a kill -9.
        let target = served(&b);
        target.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
        add_events(&target, 40);
        let wal = b.join(format!("{DB_FILE}-wal"));
        let copy = |from: &Path, to: &Path| {
            for suffix in ["", "-wal"] {
                let name = |p: &Path| PathBuf::from(format!("{}{suffix}", p.display()));
                fs::copy(name(from), name(to)).unwrap();
            }
        };
        // What a crashed server leaves: the file and its WAL, nobody connected.
        let crashed = dir.path().join("crashed");
        fs::create_dir_all(&crashed).unwrap();
        copy(&b.join(DB_FILE), &crashed.join(DB_FILE));
        drop(target);
        assert!(!wal.exists(), "a clean close removes the WAL");

        let restored = restore(&crashed, &file).unwrap();
        assert_eq!(restored.summary.last_seq, 5);
        let kept = restored.kept.unwrap();
        let old = Connection::open(&kept).unwrap();
        let kept_seq: i64 = old
            .query_row("SELECT MAX(seq) FROM events", [], |r| r.get(0))
            .unwrap();
        assert_eq!(kept_seq, 40, "the kept database has the commits of its WAL");
        drop(old);
        let new = crate::store::open(&crashed).unwrap();
        let seq: i64 = new
            .query_row("SELECT MAX(seq) FROM events", [], |r| r.get(0))
            .unwrap();
        assert_eq!(
            seq, 5,
            "no stale WAL was replayed into the restored database"
        );
    }

    #[test]
    fn restore_refuses_what_is_not_a_livechat_database() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let text = dir.path().join("notes.txt");
        fs::write(
            &text,
            "not a database at all, but long enough to be read as one\n".repeat(20),
        )
        .unwrap();
        let other = dir.path().join("other.db");
        Connection::open(&other)
            .unwrap()
            .execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);")
            .unwrap();
        for file in [&text, &other] {
            match restore(&data, file) {
                Err(BackupError::NotLivechat { .. }) => {}
                other => panic!("{}: {other:?}", file.display()),
            }
        }
        assert!(!data.join(DB_FILE).exists());
        let names: Vec<_> = fs::read_dir(&data)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            names,
            [super::super::lock::LOCK_FILE],
            "nothing staged is left"
        );
    }
}
