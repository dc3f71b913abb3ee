//! `livechat visitor export ID` and `livechat visitor erase ID`: a data-subject request
//! answered on the data directory.
//!
//! Exporting only reads, so it works while a server runs (SQLite readers never block the
//! server). Erasing refuses while a server runs on the data directory (exit 3): the server
//! holds the visitor's live conversations in memory and their sockets open, so a running
//! server erases through `DELETE /api/v1/visitors/{id}`. Erasing takes the serve lock for
//! its whole run, so no server starts halfway through.

use std::process::ExitCode;

use clap::{Args, Subcommand};

use crate::settings::ServerArgs;
use crate::store::lock::{DataDirLock, LockError};
use crate::store::privacy as rows;
use crate::store::{self, DB_FILE};

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
    if !settings.data_dir.join(DB_FILE).is_file() {
        return super::fail(format!(
            "there is no database in {}",
            settings.data_dir.display()
        ));
    }
    match args.command {
        VisitorCommand::Export { id } => export(&settings.data_dir, &id),
        VisitorCommand::Erase { id } => erase(&settings.data_dir, &id),
    }
}

fn no_visitor(id: &str) -> ExitCode {
    eprintln!("error: there is no visitor {id}");
    ExitCode::from(1)
}

fn export(data_dir: &std::path::Path, id: &str) -> ExitCode {
    let exported = store::connect(data_dir).and_then(|conn| rows::export(&conn, id));
    match exported {
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

fn erase(data_dir: &std::path::Path, id: &str) -> ExitCode {
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
    let erased = store::open(data_dir).and_then(|conn| {
        if !rows::visitor_exists(&conn, id)? {
            return Ok(None);
        }
        let (erased, outbox) = store::atomically(&conn, |c| {
            rows::securely(c, |c| {
                let email = rows::email_of(c, id)?;
                let ids = rows::conversations_of(c, id)?;
                let outbox = crate::mail::outbox::forget(c, &ids, email.as_deref())?;
                Ok((rows::erase_visitor(c, id)?, outbox))
            })
        })?;
        // Their files (and previews) that no other upload refers to, as the API's erase.
        let removed = store::attachments::remove_unreferenced(&conn, data_dir, &erased.files)?;
        Ok(Some((erased, outbox, removed)))
    });
    let (erased, outbox, removed) = match erased {
        Ok(Some(done)) => done,
        Ok(None) => return no_visitor(id),
        Err(e) => return super::fail(e),
    };
    let files = crate::mail::transport::remove_mail_files(&data_dir.join("mail"), &outbox);
    match rows::truncate_wal(data_dir) {
        Ok(true) => {}
        Ok(false) => eprintln!("warning: the WAL could not be emptied; another process reads it"),
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
