//! Readers: a small pool of read-only connections used from blocking threads, so queries
//! never run on an async worker and never wait for the writer (WAL).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OpenFlags};

use super::StoreError;

#[derive(Clone)]
pub struct Readers {
    path: Arc<PathBuf>,
    idle: Arc<Mutex<Vec<Connection>>>,
    /// A permit per connection that may be in use at once.
    permits: Arc<tokio::sync::Semaphore>,
}

/// Connections in use at once, at most, and kept for reuse. A read beyond waits for one to
/// be free rather than open another: a new connection parses the whole schema (views
/// included) and prepares its statements again, which under a burst of reads cost more than
/// the reads (most of SQLite's allocations under the chat load, by heaptrack), and two cores
/// run no more than a few queries at once anyway.
const READERS: usize = 8;

impl Readers {
    pub fn new(data_dir: &Path) -> Readers {
        Readers {
            path: Arc::new(data_dir.join(super::DB_FILE)),
            idle: Arc::new(Mutex::new(Vec::new())),
            permits: Arc::new(tokio::sync::Semaphore::new(READERS)),
        }
    }

    /// The data directory the database is in.
    pub fn data_dir(&self) -> PathBuf {
        self.path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default()
    }

    /// Runs `query` on a read connection in a blocking thread.
    pub async fn read<T, Q>(&self, query: Q) -> Result<T, StoreError>
    where
        T: Send + 'static,
        Q: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| StoreError::Commit(format!("the readers are closed: {e}")))?;
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            this.read_blocking(query)
        })
        .await
        .map_err(|e| StoreError::Commit(format!("a read task failed: {e}")))?
    }

    /// The same from code that is already on a blocking thread.
    pub fn read_blocking<T>(
        &self,
        query: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let conn = self.take()?;
        let result = query(&conn);
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < READERS {
            idle.push(conn);
        }
        result
    }

    fn take(&self) -> Result<Connection, StoreError> {
        if let Some(conn) = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop() {
            return Ok(conn);
        }
        let conn = Connection::open_with_flags(
            self.path.as_path(),
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|source| StoreError::Open {
            path: self.path.display().to_string(),
            source,
        })?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        super::small_cache(&conn)?;
        Ok(conn)
    }
}
