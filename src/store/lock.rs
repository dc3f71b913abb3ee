//! The data directory's owner: `livechat serve` holds an exclusive advisory lock on
//! `DATA_DIR/.serve.lock` for its whole life, and `livechat restore` takes the same lock
//! before it replaces the database, so neither can pull the database from under the other.
//! The operating system releases the lock when the process ends, `kill -9` included, so a
//! crash leaves no stale lock behind; the file itself stays and means nothing when unlocked.

use std::fs::{self, File, TryLockError};
use std::io;
use std::path::Path;

/// The lock file inside the data directory.
pub const LOCK_FILE: &str = ".serve.lock";

/// Held while it lives; released on drop (or when the process ends).
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds the lock: a server runs on the directory (or a restore).
    #[error(
        "a livechat server (or a restore) is running on the data directory {dir}: another \
         process holds the lock {path}"
    )]
    Busy { dir: String, path: String },
    #[error("cannot lock {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
}

impl DataDirLock {
    /// Takes the lock without waiting, creating the directory and the lock file if need be.
    pub fn try_acquire(data_dir: &Path) -> Result<DataDirLock, LockError> {
        let path = data_dir.join(LOCK_FILE);
        let io_err = |source| LockError::Io {
            path: path.display().to_string(),
            source,
        };
        fs::create_dir_all(data_dir).map_err(io_err)?;
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_err)?;
        match file.try_lock() {
            Ok(()) => Ok(DataDirLock { _file: file }),
            Err(TryLockError::WouldBlock) => Err(LockError::Busy {
                dir: data_dir.display().to_string(),
                path: path.display().to_string(),
            }),
            Err(TryLockError::Error(source)) => Err(io_err(source)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_at_a_time_and_free_again_after_drop() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let held = DataDirLock::try_acquire(&data).unwrap();
        assert!(data.join(LOCK_FILE).is_file());
        // A second open file description is refused while the first holds it.
        match DataDirLock::try_acquire(&data) {
            Err(LockError::Busy { .. }) => {}
            other => panic!("a second holder: {other:?}"),
        }
        drop(held);
        DataDirLock::try_acquire(&data).unwrap();
    }
}
