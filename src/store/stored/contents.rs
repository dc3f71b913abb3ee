//! Where the bytes of an attachment are read from, and the key of signed links, through the
//! store interface: on SQLite the files under `DATA_DIR/files` and a key kept in the data
//! directory; on PostgreSQL the contents in the database (`postgres::contents`) and one key
//! in the database for every replica.

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::Stream;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::store::attachments::{file_path, sniff};
use crate::store::handle::client;
use crate::store::postgres::{PgError, PgStore, contents};
use crate::store::previews::{self, preview_path};
use crate::store::{Store, StoreError};

/// The name of the file, in the data directory, that holds SQLite's key of signed links.
pub const LINK_KEY_FILE: &str = "link.key";

/// The bytes of a stored file (a content or its preview), found, with their size.
pub enum Content {
    /// A file on this server's disk: SQLite's, or one a replica kept before migration 13.
    Disk { path: PathBuf, size: u64 },
    /// Pieces in PostgreSQL's `file_contents`.
    Database {
        store: Arc<PgStore>,
        sha256: String,
        preview: bool,
        size: u64,
    },
}

/// The bytes of a download, as they are read.
pub type Bytestream = Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>>;

impl Content {
    pub fn size(&self) -> u64 {
        match self {
            Content::Disk { size, .. } | Content::Database { size, .. } => *size,
        }
    }

    /// `len` bytes from `first` on.
    pub async fn read(self, first: u64, len: u64) -> std::io::Result<Bytestream> {
        match self {
            Content::Disk { path, .. } => {
                let mut file = tokio::fs::File::open(&path).await?;
                if first > 0 {
                    file.seek(std::io::SeekFrom::Start(first)).await?;
                }
                Ok(Box::pin(tokio_util::io::ReaderStream::new(file.take(len))))
            }
            Content::Database {
                store,
                sha256,
                preview,
                ..
            } => Ok(Box::pin(contents::read(store, sha256, preview, first, len))),
        }
    }
}

/// The file at `path` with its size, `None` when there is none.
async fn on_disk(path: PathBuf) -> Result<Option<Content>, StoreError> {
    match tokio::fs::metadata(&path).await {
        Ok(m) => Ok(Some(Content::Disk {
            path,
            size: m.len(),
        })),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StoreError::Unavailable(format!("cannot read a file: {e}"))),
    }
}

/// `previews::existing`, on a blocking thread.
async fn preview_on_disk(
    data_dir: &Path,
    sha256: &str,
) -> Result<Option<&'static str>, StoreError> {
    let (dir, sha) = (data_dir.to_path_buf(), sha256.to_string());
    tokio::task::spawn_blocking(move || previews::existing(&dir, &sha))
        .await
        .map_err(|e| StoreError::Unavailable(format!("cannot read a preview: {e}")))
}

impl Store {
    /// The bytes of the content `sha256` (its preview when `preview`), if stored.
    pub async fn content(
        &self,
        data_dir: &Path,
        sha256: &str,
        preview: bool,
    ) -> Result<Option<Content>, StoreError> {
        let path = if preview {
            preview_path(data_dir, sha256)
        } else {
            file_path(data_dir, sha256)
        };
        match self {
            Store::Sqlite(_) => on_disk(path).await,
            Store::Postgres(pg) => {
                match contents::size(&client(pg).await?, sha256, preview).await? {
                    Some(size) => Ok(Some(Content::Database {
                        store: pg.clone(),
                        sha256: sha256.to_string(),
                        preview,
                        size,
                    })),
                    // Kept by this replica before migration 13.
                    None => on_disk(path).await,
                }
            }
        }
    }

    /// The type of the preview of `sha256` stored already (another upload of the same
    /// content made it), as `previews::existing`.
    pub async fn stored_preview(
        &self,
        data_dir: &Path,
        sha256: &str,
    ) -> Result<Option<&'static str>, StoreError> {
        match self {
            Store::Sqlite(_) => preview_on_disk(data_dir, sha256).await,
            Store::Postgres(pg) => {
                match contents::preview_head(&client(pg).await?, sha256).await? {
                    Some(head) => Ok(match sniff(&head).mime {
                        m @ ("image/jpeg" | "image/png") => Some(m),
                        _ => None,
                    }),
                    // Kept by this replica before migration 13.
                    None => preview_on_disk(data_dir, sha256).await,
                }
            }
        }
    }

    /// The key signed links are signed with. On PostgreSQL one for every replica: the
    /// first to ask stores a random one, every replica reads the one stored. On SQLite a
    /// random one kept in `DATA_DIR/link.key` (readable by the server's user only), so that
    /// links outlive a restart.
    pub async fn link_key(&self, data_dir: &Path) -> Result<[u8; 32], StoreError> {
        match self {
            Store::Sqlite(_) => {
                let path = data_dir.join(LINK_KEY_FILE);
                tokio::task::spawn_blocking(move || key_file(&path))
                    .await
                    .map_err(|e| StoreError::Unavailable(format!("cannot read the link key: {e}")))?
                    .map_err(|e| StoreError::Unavailable(format!("cannot keep the link key: {e}")))
            }
            Store::Postgres(pg) => {
                let client = client(pg).await?;
                let made: [u8; 32] = rand::random();
                client
                    .execute(
                        "INSERT INTO link_key (key) VALUES ($1) ON CONFLICT DO NOTHING",
                        &[&&made[..]],
                    )
                    .await
                    .map_err(PgError::from)?;
                let key: Vec<u8> = client
                    .query_one("SELECT key FROM link_key", &[])
                    .await
                    .map_err(PgError::from)?
                    .get(0);
                key.try_into().map_err(|_| {
                    StoreError::Unavailable("the stored link key is not 32 bytes".into())
                })
            }
        }
    }
}

/// Reads the key at `path`, or makes it when there is none (or it is not 32 bytes): written
/// to a file of its own, then renamed into place.
fn key_file(path: &Path) -> std::io::Result<[u8; 32]> {
    match std::fs::read(path) {
        Ok(bytes) => {
            if let Ok(key) = <[u8; 32]>::try_from(bytes.as_slice()) {
                return Ok(key);
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let key: [u8; 32] = rand::random();
    let temp = path.with_extension(format!("{}.part", std::process::id()));
    {
        use std::io::Write;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&temp)?;
        file.write_all(&key)?;
        file.sync_all()?;
    }
    std::fs::rename(&temp, path)?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_file_is_made_once_and_read_after() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LINK_KEY_FILE);
        let first = key_file(&path).unwrap();
        assert_eq!(key_file(&path).unwrap(), first, "read back, not made again");
        std::fs::write(&path, b"short").unwrap();
        let made = key_file(&path).unwrap();
        assert_ne!(made, first, "a damaged key is replaced");
        assert_eq!(std::fs::read(&path).unwrap(), made);
    }
}
