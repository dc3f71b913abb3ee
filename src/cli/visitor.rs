//! `livechat visitor export ID` and `livechat visitor erase ID`: a data-subject request
//! answered on the data directory.
//!
//! Exporting only reads, so it works while a server runs (SQLite readers never block the
//! server). Erasing refuses while a server runs on the data directory, or on PostgreSQL
//! while any replica was heard from within `presence::SILENT` (exit 3): the server
//! holds the visitor's live conversations in memory and their sockets open, so a running
//! server erases through `DELETE /api/v1/visitors/{id}`. Erasing takes the serve lock for
//! its whole run, so no server starts halfway through.
//!
//! Both run on a `Store` (the store interface, #17) opened in one place, [`open_store`]:
//! PostgreSQL of `database_url`, else the SQLite database of the data directory.

use std::path::Path;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use crate::settings::{ServerArgs, Settings};
use crate::store::lock::{DataDirLock, LockError};
use crate::store::reader::Readers;
use crate::store::writer::Writer;
use crate::store::{self, DB_FILE, Store, StoreError};

#[derive(Debug, Args)]
pub struct VisitorArgs {
    #[command(subcommand)]
    command: VisitorCommand,
}

#[derive(Debug, Subcommand)]
enum VisitorCommand {
    /// Print everything stored about a visitor as JSON (works while the server runs).
    Export {
        /// The visitor id, `v_…`.
        id: String,
    },
    /// Erase a visitor and everything about them (the server must be stopped; a running
    /// server erases through `DELETE /api/v1/visitors/{id}`).
    Erase {
        /// The visitor id, `v_…`.
        id: String,
    },
}

pub fn run(server: &ServerArgs, args: VisitorArgs) -> ExitCode {
    let settings = match server.resolve() {
        Ok(settings) => settings,
        Err(e) => return super::fail(e),
    };
    if settings.database.is_none() && !settings.data_dir.join(DB_FILE).is_file() {
        return super::fail(format!(
            "there is no database in {}",
            settings.data_dir.display()
        ));
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return super::fail(e),
    };
    let data_dir = &settings.data_dir;
    match args.command {
        VisitorCommand::Export { id } => runtime.block_on(async {
            match open_store(&settings, Purpose::Read).await {
                Ok(store) => export(&store, &id).await,
                Err(e) => super::fail(e),
            }
        }),
        VisitorCommand::Erase { id } => {
            let _lock = match DataDirLock::try_acquire(data_dir) {
                Ok(lock) => lock,
                Err(e @ LockError::Busy { .. }) => {
                    eprintln!(
                        "error: {e}; erase through the running server instead: \
                         DELETE /api/v1/visitors/{id} as an admin (or stop it first)"
                    );
                    return ExitCode::from(3);
                }
                Err(e) => return super::fail(e),
            };
            runtime.block_on(async {
                match open_store(&settings, Purpose::Erase).await {
                    Ok(store) => match replicas_running(&store).await {
                        Ok(0) => erase(&store, data_dir, &id).await,
                        Ok(n) => {
                            eprintln!(
                                "error: {n} replica(s) on this database were heard from in the \
                                 last {} s; erase through a running one instead: \
                                 DELETE /api/v1/visitors/{id} as an admin (or stop them all \
                                 first)",
                                store::postgres::presence::SILENT.as_secs()
                            );
                            ExitCode::from(3)
                        }
                        Err(e) => super::fail(e),
                    },
                    Err(e) => super::fail(e),
                }
            })
        }
    }
}

/// The replicas running on the store's PostgreSQL (heard from within
/// `presence::SILENT`): the running servers the data directory's lock cannot see. Always 0
/// on SQLite, where that lock answers.
async fn replicas_running(store: &Store) -> Result<i64, String> {
    let Store::Postgres(pg) = store else {
        return Ok(0);
    };
    let client = pg.pool().get().await.map_err(|e| e.to_string())?;
    store::postgres::presence::running(&client, store::postgres::presence::SILENT)
        .await
        .map_err(|e| e.to_string())
}

/// What the command opens its store for.
enum Purpose {
    /// Reading only, beside a server that may be running: the schema as it is.
    Read,
    /// Erasing, with no server running: the schema brought up to date first.
    Erase,
}

/// The one place the command opens its store: PostgreSQL when `database_url` names one
/// (`cli::db`, as every command on the database), else the data directory's SQLite (a
/// writer and its readers, as `serve` has them, less the search index's group step and the
/// checkpointer, which the command never had). Everything after runs on the `Store` either
/// way (the database file's check in [`run`] is SQLite's; the data directory's lock sees
/// only a server on this machine's data directory, and on PostgreSQL [`replicas_running`]
/// sees the replicas). Runs inside the runtime: the writer tells its callers on a task of
/// it.
async fn open_store(settings: &Settings, purpose: Purpose) -> Result<Store, String> {
    if let Some(db) = &settings.database {
        return super::db::connect(db).await;
    }
    let data_dir = &settings.data_dir;
    let conn = match purpose {
        Purpose::Read => store::connect(data_dir),
        Purpose::Erase => store::open(data_dir),
    }
    .map_err(|e| e.to_string())?;
    Ok(Store::sqlite(Writer::start(conn), Readers::new(data_dir)))
}

fn no_visitor(id: &str) -> ExitCode {
    eprintln!("error: there is no visitor {id}");
    ExitCode::from(1)
}

async fn export(store: &Store, id: &str) -> ExitCode {
    match store.export_visitor(id).await {
        Ok(Some(mut json)) => {
            json["exported_at"] = serde_json::json!(jiff::Timestamp::now().to_string());
            match serde_json::to_string_pretty(&json) {
                Ok(text) => {
                    println!("{text}");
                    ExitCode::SUCCESS
                }
                Err(e) => super::fail(e),
            }
        }
        Ok(None) => no_visitor(id),
        Err(e) => super::fail(e),
    }
}

/// Erases the visitor's rows, then their files no other upload refers to (as the API's
/// erase), their mail files, and on SQLite the WAL's old pages.
async fn erase(store: &Store, data_dir: &Path, id: &str) -> ExitCode {
    let erased = async {
        if store.visitor_conversations(id).await?.is_none() {
            return Ok(None);
        }
        let (erased, outbox) = store.erase_visitor_rows(id).await?;
        let removed = store
            .remove_unreferenced_files(data_dir, &erased.files)
            .await?;
        Ok::<_, StoreError>(Some((erased, outbox, removed)))
    };
    let (erased, outbox, removed) = match erased.await {
        Ok(Some(done)) => done,
        Ok(None) => return no_visitor(id),
        Err(e) => return super::fail(e),
    };
    let files = crate::mail::transport::remove_mail_files(&data_dir.join("mail"), &outbox);
    match store.cut_back_wal().await {
        Ok(Some(true) | None) => {}
        Ok(Some(false)) => {
            eprintln!("warning: the WAL could not be emptied; another process reads it")
        }
        Err(e) => return super::fail(e),
    }
    println!(
        "erased visitor {id}: {} conversations, {} messages, {} forms, {} events redacted, \
         {} outbox items, {} mail files, {} attachment files",
        erased.conversations.len(),
        erased.messages,
        erased.forms,
        erased.events,
        outbox.len(),
        files,
        removed
    );
    ExitCode::SUCCESS
}
