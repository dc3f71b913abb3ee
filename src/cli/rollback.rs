//! `livechat rollback REV`: install an earlier revision again, as a new revision.

use std::process::ExitCode;

use super::apply::{print, refused, report};
use crate::config::{self, Bundle};
use crate::deploy;
use crate::settings::ServerArgs;
use crate::store::{self, DB_FILE, revisions};

pub fn run(server: &ServerArgs, revision: i64, dry_run: bool) -> ExitCode {
    let settings = match server.resolve() {
        Ok(settings) => settings,
        Err(e) => return super::fail(e),
    };
    let unknown = || {
        eprintln!("error: there is no revision {revision}; `livechat history` lists them");
        ExitCode::from(1)
    };
    if !settings.data_dir.join(DB_FILE).is_file() {
        return unknown();
    }
    let conn = match store::open(&settings.data_dir) {
        Ok(conn) => conn,
        Err(e) => return super::fail(e),
    };
    let target = match revisions::get(&conn, revision) {
        Ok(Some(target)) => target,
        Ok(None) => return unknown(),
        Err(e) => return super::fail(e),
    };
    // Validated again, as now: the environment or the rules may have changed since.
    let bundle = match Bundle::from_sources(target.bundle, &config::process_env) {
        Ok(bundle) => bundle,
        Err(diags) => {
            eprintln!("revision {revision} is not valid any more:");
            return refused("", &diags);
        }
    };
    let what = format!("revision {revision}");
    let note = format!("rollback to {revision}");
    match deploy::apply_noted(
        &conn,
        &settings.bots_dir,
        &bundle,
        "rollback",
        Some(&note),
        dry_run,
    ) {
        Ok(outcome)
            if outcome.unchanged && outcome.base.as_ref().map(|b| b.number) == Some(revision) =>
        {
            print(&format!(
                "No changes: revision {revision} is the live revision.\n"
            ));
            ExitCode::SUCCESS
        }
        Ok(outcome) => {
            print(&report(&what, &settings.bots_dir, &outcome, dry_run));
            ExitCode::SUCCESS
        }
        Err(e) => super::fail(e),
    }
}
