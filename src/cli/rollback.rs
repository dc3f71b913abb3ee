//! `livechat rollback REV`: install an earlier revision again, as a new revision, into the
//! live bundle directory and the store (`cli::db`). On PostgreSQL the revision is recorded
//! in the database replicas share and announced to them (`deploy::apply_pg`), which the
//! command says.

use std::process::ExitCode;

use super::apply::{print, refused, report};
use super::db::{self, Missing};
use crate::config::{self, Bundle};
use crate::settings::ServerArgs;

pub fn run(server: &ServerArgs, revision: i64, dry_run: bool) -> ExitCode {
    let settings = match server.resolve() {
        Ok(settings) => settings,
        Err(e) => return super::fail(e),
    };
    let unknown = || {
        eprintln!("error: there is no revision {revision}; `livechat history` lists them");
        ExitCode::from(1)
    };
    let runtime = match db::runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    runtime.block_on(async {
        let store = match db::open(&settings, Missing::Leave).await {
            Ok(Some(store)) => store,
            Ok(None) => return unknown(),
            Err(e) => return super::fail(e),
        };
        let target = match store.revision(revision).await {
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
        let applied = store
            .apply_bundle(&settings.bots_dir, bundle, "rollback", Some(&note), dry_run)
            .await;
        match applied {
            Ok(outcome)
                if outcome.unchanged
                    && outcome.base.as_ref().map(|b| b.number) == Some(revision) =>
            {
                print(&format!(
                    "No changes: revision {revision} is the live revision.\n"
                ));
                ExitCode::SUCCESS
            }
            Ok(outcome) => {
                print(&report(&what, &settings.bots_dir, &outcome, dry_run));
                if settings.database.is_some() && !dry_run && !outcome.unchanged {
                    print(db::REPLICAS_NOTE);
                }
                ExitCode::SUCCESS
            }
            Err(e) => super::fail(e),
        }
    })
}
