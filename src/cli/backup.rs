//! `livechat backup FILE`: a consistent copy of the database, taken while the server serves.

use std::path::Path;
use std::process::ExitCode;

use crate::settings::ServerArgs;
use crate::store::backup::{self, BackupError, Summary};

pub fn run(server: &ServerArgs, file: &Path, force: bool) -> ExitCode {
    let settings = match server.resolve() {
        Ok(settings) => settings,
        Err(e) => return super::fail(e),
    };
    if let Some(db) = &settings.database {
        return super::fail(on_postgres("backup", db));
    }
    match backup::backup(&settings.data_dir, file, force) {
        Ok(summary) => {
            println!("wrote {}: {}", file.display(), describe(&summary));
            ExitCode::SUCCESS
        }
        Err(e @ BackupError::Exists(_)) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
        Err(e) => super::fail(e),
    }
}

/// Why `backup` and `restore` refuse on PostgreSQL, in one line: they copy the data
/// directory's SQLite file, which is not where the data is; the database's own tools are.
pub(crate) fn on_postgres(command: &str, db: &crate::settings::Database) -> String {
    format!(
        "`livechat {command}` works on the SQLite database of the data directory, and this \
         server's data is in PostgreSQL ({}): use pg_dump and pg_restore, or the backups of \
         your database's provider (they hold the attachments too; copy separately only \
         attachment files a replica kept in its data directory before version 13 of the \
         schema)",
        db.url.redacted()
    )
}

/// `1404928 bytes (1.3 MiB), last event seq 1234, config revision 3, schema version 9,
/// 12 attachment files (2 new)` (and `, 1 missing` for files removed after the snapshot).
pub(crate) fn describe(summary: &Summary) -> String {
    let revision = summary
        .revision
        .map_or("none".to_string(), |r| r.to_string());
    let missing = match summary.files.missing {
        0 => String::new(),
        n => format!(", {n} missing"),
    };
    format!(
        "{} bytes ({:.1} MiB), last event seq {}, config revision {revision}, schema version {}, \
         {} attachment files ({} new{missing})",
        summary.bytes,
        summary.bytes as f64 / (1024.0 * 1024.0),
        summary.last_seq,
        summary.schema_version,
        summary.files.files,
        summary.files.new
    )
}
