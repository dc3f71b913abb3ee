//! `livechat restore FILE`: the data directory's database replaced by a backup, while no
//! server runs on it.

use std::path::Path;
use std::process::ExitCode;

use crate::settings::ServerArgs;
use crate::store::DB_FILE;
use crate::store::backup::{self, BackupError};
use crate::store::lock::LockError;

pub fn run(server: &ServerArgs, file: &Path) -> ExitCode {
    let settings = match server.resolve() {
        Ok(settings) => settings,
        Err(e) => return super::fail(e),
    };
    if let Some(db) = &settings.database {
        return super::fail(super::backup::on_postgres("restore", db));
    }
    let mut wal = file.as_os_str().to_owned();
    wal.push("-wal");
    if Path::new(&wal).exists() {
        eprintln!(
            "warning: {} has a WAL beside it, whose commits are not in the file; restore a \
             file written by `livechat backup`",
            file.display()
        );
    }
    match backup::restore(&settings.data_dir, file) {
        Ok(restored) => {
            let db = settings.data_dir.join(DB_FILE);
            println!(
                "restored {} into {}: {}",
                file.display(),
                db.display(),
                super::backup::describe(&restored.summary)
            );
            if let Some(kept) = restored.kept {
                println!("the database it replaced is kept as {}", kept.display());
            }
            ExitCode::SUCCESS
        }
        Err(e @ BackupError::NotLivechat { .. }) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
        Err(e @ BackupError::Locked(LockError::Busy { .. })) => {
            eprintln!("error: {e}; stop it first, then restore");
            ExitCode::from(3)
        }
        Err(e) => super::fail(e),
    }
}
