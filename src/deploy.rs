//! Putting a bundle live: the one path behind `livechat apply`, `livechat rollback` and the
//! admin API. Plan against the live revision, install the files where the server watches
//! them, record the new revision; and, for the server, record what it loaded by itself. On
//! PostgreSQL the database is where a bundle is installed ([`apply_pg`]) and every new
//! revision is announced to the replicas ([`announce_pg`]).

pub mod stored;

use std::fs;
use std::io;
use std::path::Path;

use rusqlite::Connection;

use crate::config::plan::Plan;
use crate::config::{self, Bundle, BundleLock, Sources, install};
use crate::store::StoreError;
use crate::store::revisions::{self, Revision, RevisionSummary};

/// What `apply` did, or on a dry run would do.
#[derive(Debug, Clone)]
pub struct ApplyOutcome {
    /// What changes against `base`.
    pub plan: Plan,
    /// The revision that was live before (None: none recorded yet).
    pub base: Option<RevisionSummary>,
    /// The revision now live: the one recorded, or when `unchanged` the live one.
    /// None on a dry run that would record one.
    pub revision: Option<Revision>,
    /// The bundle is the live revision already: no revision was recorded.
    pub unchanged: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot install the bundle into {dir}: {source}")]
    Install {
        dir: String,
        #[source]
        source: io::Error,
    },
}

impl From<rusqlite::Error> for DeployError {
    fn from(e: rusqlite::Error) -> Self {
        DeployError::Store(e.into())
    }
}

/// Installs a validated `bundle` into `live_dir` and records it as a new revision, unless it
/// is the live revision already. `source` says who asked: `apply`, `api`, `rollback`.
pub fn apply(
    conn: &Connection,
    live_dir: &Path,
    bundle: &Bundle,
    source: &str,
    dry_run: bool,
) -> Result<ApplyOutcome, DeployError> {
    apply_noted(conn, live_dir, bundle, source, None, dry_run)
}

/// `apply`, with `note` put before the recorded summary: `rollback to 3: +1 bot`.
pub fn apply_noted(
    conn: &Connection,
    live_dir: &Path,
    bundle: &Bundle,
    source: &str,
    note: Option<&str>,
    dry_run: bool,
) -> Result<ApplyOutcome, DeployError> {
    // Held from reading the live revision until the new one is recorded: the server reads
    // the directory and looks its hash up under the shared lock, so it sees either the old
    // bundle or the new one together with its revision, and never records it twice.
    let _lock = if dry_run {
        None
    } else {
        Some(lock_exclusive(live_dir)?)
    };
    apply_locked(conn, live_dir, bundle, source, note, dry_run)
}

/// How a failure to write into `live_dir` is reported.
fn install_error(live_dir: &Path) -> impl Fn(io::Error) -> DeployError + '_ {
    move |source| DeployError::Install {
        dir: live_dir.display().to_string(),
        source,
    }
}

/// Takes the bundle directory's lock for installing (creating the directory if need be).
pub fn lock_exclusive(live_dir: &Path) -> Result<BundleLock, DeployError> {
    let install_err = install_error(live_dir);
    fs::create_dir_all(live_dir).map_err(&install_err)?;
    BundleLock::exclusive(live_dir).map_err(install_err)
}

/// `apply_noted` for a caller that holds the lock from [`lock_exclusive`] already (the
/// server, which runs this in its writer and must not wait for a lock there).
pub fn apply_locked(
    conn: &Connection,
    live_dir: &Path,
    bundle: &Bundle,
    source: &str,
    note: Option<&str>,
    dry_run: bool,
) -> Result<ApplyOutcome, DeployError> {
    let install_err = install_error(live_dir);
    let live = revisions::latest(conn)?;
    let base_bundle = match &live {
        Some(revision) => stored_bundle(revision),
        None => dir_bundle(live_dir, !dry_run),
    };
    let (plan, base, summary) = match decide(live, &base_bundle, bundle, note, dry_run) {
        Decided::Done(outcome) => {
            // Nothing to record. If the files were edited by hand since (and the server
            // kept this revision because the edit was invalid), put the live revision's
            // files back.
            if outcome.unchanged
                && !dry_run
                && install::read_locked(live_dir).ok().as_ref() != Some(&bundle.sources)
            {
                install::install_locked(live_dir, &bundle.sources).map_err(install_err)?;
            }
            return Ok(outcome);
        }
        Decided::Record {
            plan,
            base,
            summary,
        } => (plan, base, summary),
    };
    // Committed only once the files are in place: a failed install records nothing.
    let revision = crate::store::atomically(conn, |conn| {
        let revision = revisions::insert(conn, &bundle.hash, source, &summary, &bundle.sources)?;
        install::install_locked(live_dir, &bundle.sources).map_err(install_err)?;
        Ok::<_, DeployError>(revision)
    })?;
    Ok(ApplyOutcome {
        plan,
        base,
        revision: Some(revision),
        unchanged: false,
    })
}

/// The revision for a bundle the server loaded from the directory: the latest one if it has
/// this content, else a new one (a hand edit) summarised against the latest.
pub fn record_loaded(
    conn: &Connection,
    bundle: &Bundle,
    source: &str,
) -> Result<Revision, StoreError> {
    crate::store::atomically(conn, |conn| {
        let live = revisions::latest(conn)?;
        match to_record(live, bundle) {
            Ok(live) => Ok(live),
            Err(summary) => {
                revisions::insert(conn, &bundle.hash, source, &summary, &bundle.sources)
            }
        }
    })
}

/// What a replica's bundle is against the revisions its database holds
/// ([`record_loaded_pg`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Loaded {
    /// The bundle is the live revision: it was already, or it has just been recorded (no
    /// revision had its content: a new deploy, a hand edit).
    Live(Revision),
    /// The bundle is revision `loaded`, earlier than the live one: nothing was recorded. The
    /// replica is behind (an old image restarted during a rollout, a directory not updated)
    /// and should serve `live`.
    Behind { loaded: i64, live: Revision },
}

impl Loaded {
    /// The live revision, whether the replica has it or is behind it.
    pub fn live(&self) -> &Revision {
        match self {
            Loaded::Live(live) | Loaded::Behind { live, .. } => live,
        }
    }
}

/// [`record_loaded`] on the PostgreSQL of replicas (#17), under the revisions' lock. The
/// rule: a replica's bundle is recorded only if it differs from the live revision and,
/// unless the replica saw its directory `edited` (it read another bundle there before), no
/// earlier revision has it. Recorded, it is live ([`Loaded::Live`]); else the replica is
/// told it is behind ([`Loaded::Behind`]). So a replica that starts on an older bundle while
/// a newer one is live (two replicas with different bundles starting together, in either
/// order) cannot make the older one newest, while an admin who edits a running replica's
/// directory back to an earlier bundle (a reverted commit) gets it live, as on SQLite; so
/// does `livechat rollback`, which records it anew. Of replicas that load the same bundle at
/// once, one records it and the others find it live. Two bundles that no revision has,
/// loaded at once by two replicas, are both recorded and the last one is live: nothing tells
/// which is newer (docs/postgres.md). A revision recorded here is announced after the commit
/// ([`announce_pg`]).
pub async fn record_loaded_pg(
    client: &mut deadpool_postgres::Object,
    bundle: &Bundle,
    source: &str,
    edited: bool,
) -> Result<Loaded, StoreError> {
    use crate::store::postgres::{PgError, at_commit, revisions as pg};
    let tx = client.transaction().await.map_err(PgError::from)?;
    pg::lock(&tx).await?;
    let live = pg::latest(&tx).await?;
    let mut recorded = None;
    let loaded = match to_record(live.clone(), bundle) {
        Ok(live) => Loaded::Live(live),
        Err(summary) => match (live, pg::numbered(&tx, &bundle.hash).await?) {
            (Some(live), Some(loaded)) if !edited => Loaded::Behind { loaded, live },
            _ => {
                let revision =
                    pg::insert(&tx, &bundle.hash, source, &summary, &bundle.sources).await?;
                recorded = Some(revision.number);
                Loaded::Live(revision)
            }
        },
    };
    tx.commit().await.map_err(at_commit)?;
    if let Some(number) = recorded {
        announce_pg(&*client, number).await;
    }
    Ok(loaded)
}

/// Tells the other replicas that revision `number` is recorded
/// (`store::postgres::revisions::announce`), after its commit. A failure is logged, not
/// returned: the revision is recorded, and every replica's poll finds it within
/// `server::revisions::POLL`. What `livechat apply`, `livechat rollback` and anything else
/// that records a revision on PostgreSQL call once their transaction has committed.
pub async fn announce_pg(client: &impl deadpool_postgres::GenericClient, number: i64) {
    if let Err(e) = crate::store::postgres::revisions::announce(client, number).await {
        tracing::warn!(
            revision = number,
            error = %e,
            "cannot announce the new revision; the other replicas find it at their next poll"
        );
    }
}

/// [`apply_noted`] on the PostgreSQL of replicas (#17): the database is where a bundle is
/// installed, no directory is written. Under the revisions' lock, plan `bundle` against the
/// live revision, and unless it is that revision already record it as the next one; after
/// the commit, announce it ([`announce_pg`]) so that every replica makes it live. A dry run
/// takes no lock and records nothing. The admin API calls this; so can `livechat apply` and
/// `livechat rollback` (`source` `apply` or `rollback`, `note` `rollback to N`).
pub async fn apply_pg(
    client: &mut deadpool_postgres::Object,
    bundle: &Bundle,
    source: &str,
    note: Option<&str>,
    dry_run: bool,
) -> Result<ApplyOutcome, StoreError> {
    use crate::store::postgres::{PgError, at_commit, revisions as pg};
    let tx = client.transaction().await.map_err(PgError::from)?;
    if !dry_run {
        pg::lock(&tx).await?;
    }
    let live = pg::latest(&tx).await?;
    let base_bundle = live.as_ref().map_or_else(Bundle::empty, stored_bundle);
    let (plan, base, summary) = match decide(live, &base_bundle, bundle, note, dry_run) {
        Decided::Done(outcome) => return Ok(outcome),
        Decided::Record {
            plan,
            base,
            summary,
        } => (plan, base, summary),
    };
    let revision = pg::insert(&tx, &bundle.hash, source, &summary, &bundle.sources).await?;
    tx.commit().await.map_err(at_commit)?;
    announce_pg(&*client, revision.number).await;
    Ok(ApplyOutcome {
        plan,
        base,
        revision: Some(revision),
        unchanged: false,
    })
}

/// What installing `bundle` over the `live` revision (whose bundle is `base_bundle`) comes
/// to, on either store: nothing to record (it is live already, or a dry run's plan), or a
/// revision to record with its summary.
enum Decided {
    Done(ApplyOutcome),
    Record {
        plan: Plan,
        base: Option<RevisionSummary>,
        summary: String,
    },
}

fn decide(
    live: Option<Revision>,
    base_bundle: &Bundle,
    bundle: &Bundle,
    note: Option<&str>,
    dry_run: bool,
) -> Decided {
    let plan = Plan::between(base_bundle, bundle);
    let base = live.as_ref().map(Revision::to_summary);
    if let Some(revision) = live.filter(|r| r.hash == bundle.hash) {
        return Decided::Done(ApplyOutcome {
            plan,
            base,
            revision: Some(revision),
            unchanged: true,
        });
    }
    if dry_run {
        return Decided::Done(ApplyOutcome {
            plan,
            base,
            revision: None,
            unchanged: false,
        });
    }
    let summary = match note {
        Some(note) => format!("{note}: {}", plan.summary()),
        None => plan.summary(),
    };
    Decided::Record {
        plan,
        base,
        summary,
    }
}

/// The live revision when it is `bundle` already (`Ok`), else the summary of the revision
/// to record (`Err`): what changes against the live one.
fn to_record(live: Option<Revision>, bundle: &Bundle) -> Result<Revision, String> {
    if let Some(revision) = live.as_ref().filter(|r| r.hash == bundle.hash) {
        return Ok(revision.clone());
    }
    let base = live.as_ref().map_or_else(Bundle::empty, stored_bundle);
    Err(Plan::between(&base, bundle).summary())
}

/// Secrets play no part in a plan: every `${VAR}` is taken as set (and empty).
fn any_env(_: &str) -> Option<String> {
    Some(String::new())
}

/// A stored revision as a bundle to plan against; one that no longer validates (the rules
/// grew stricter) is planned against as if empty.
fn stored_bundle(revision: &Revision) -> Bundle {
    Bundle::from_sources(revision.bundle.clone(), &any_env).unwrap_or_else(|_| Bundle::empty())
}

/// The live directory's bundle, before any revision was recorded; empty when it does not
/// load. `locked`: this process holds the exclusive lock, so read without taking it.
fn dir_bundle(dir: &Path, locked: bool) -> Bundle {
    let sources: Option<Sources> = if locked {
        install::read_locked(dir).ok()
    } else {
        config::read_dir(dir)
            .ok()
            .filter(|(_, diags)| diags.is_empty())
            .map(|(sources, _)| sources)
    };
    sources
        .and_then(|s| Bundle::from_sources(s, &any_env).ok())
        .unwrap_or_else(Bundle::empty)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store;

    const SUPPORT: &str = "name = \"Support\"\n\n[[step]]\nid = \"start\"\nsay = \"Hi!\"\n";
    const SALES: &str = "name = \"Sales\"\n\n[[step]]\nid = \"start\"\nsay = \"Buy!\"\n";

    fn agents(max_chats: u32) -> String {
        format!(
            "[[team]]\nid = \"support\"\nbots = [\"support\"]\n\n\
             [[agent]]\nname = \"Ana\"\nemail = \"ana@acme.example\"\n\
             max_chats = {max_chats}\nteams = [\"support\"]\n"
        )
    }

    fn bundle(files: &[(&str, &str)]) -> Bundle {
        let sources: Sources = files
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Bundle::from_sources(sources, &any_env).unwrap()
    }

    fn setup() -> (tempfile::TempDir, Connection, std::path::PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let conn = store::open(&tmp.path().join("data")).unwrap();
        let live = tmp.path().join("bots");
        (tmp, conn, live)
    }

    fn files_in(dir: &Path) -> Sources {
        config::read_dir(dir).unwrap().0
    }

    #[test]
    fn apply_installs_records_and_then_finds_nothing_to_do() {
        let (_tmp, conn, live) = setup();
        let first = bundle(&[("support.toml", SUPPORT), ("agents.toml", &agents(3))]);

        let dry = apply(&conn, &live, &first, "apply", true).unwrap();
        assert_eq!(
            dry.plan.lines(),
            vec![
                "+ bot support",
                "+ agent ana@acme.example",
                "+ team support"
            ]
        );
        assert!(dry.revision.is_none() && !dry.unchanged && dry.base.is_none());
        assert!(!live.exists(), "a dry run installs nothing");
        assert_eq!(revisions::list(&conn).unwrap(), vec![]);

        let done = apply(&conn, &live, &first, "apply", false).unwrap();
        let r1 = done.revision.unwrap();
        assert_eq!((r1.number, r1.source.as_str()), (1, "apply"));
        assert_eq!(r1.summary, "+1 bot, +1 agent, +1 team");
        assert_eq!(r1.hash, first.hash);
        assert_eq!(files_in(&live), first.sources);

        let again = apply(&conn, &live, &first, "apply", false).unwrap();
        assert!(again.unchanged);
        assert!(again.plan.is_empty());
        assert_eq!(again.revision.unwrap().number, 1);
        assert_eq!(revisions::list(&conn).unwrap().len(), 1);

        let second = bundle(&[
            ("sales.toml", SALES),
            ("agents.toml", &agents(5)),
            ("support.toml", SUPPORT),
        ]);
        let dry = apply(&conn, &live, &second, "api", true).unwrap();
        assert_eq!(dry.base.as_ref().map(|b| b.number), Some(1));
        assert_eq!(
            dry.plan.lines(),
            vec!["+ bot sales", "~ agent ana@acme.example: max_chats 3 → 5"]
        );
        assert_eq!(files_in(&live), first.sources, "a dry run installs nothing");

        let r2 = apply(&conn, &live, &second, "api", false)
            .unwrap()
            .revision
            .unwrap();
        assert_eq!((r2.number, r2.source.as_str()), (2, "api"));
        assert_eq!(r2.summary, "+1 bot, ~1 agent");
        assert_eq!(files_in(&live), second.sources);

        // Going back removes the file that revision 1 did not have.
        let back = apply_noted(
            &conn,
            &live,
            &first,
            "rollback",
            Some("rollback to 1"),
            false,
        )
        .unwrap()
        .revision
        .unwrap();
        assert_eq!(back.number, 3);
        assert_eq!(back.summary, "rollback to 1: -1 bot, ~1 agent");
        assert_eq!(files_in(&live), first.sources);
    }

    #[test]
    fn with_no_revision_yet_the_plan_is_against_what_the_directory_holds() {
        let (_tmp, conn, live) = setup();
        install::install(&live, &bundle(&[("support.toml", SUPPORT)]).sources).unwrap();
        let new = bundle(&[("support.toml", SUPPORT), ("sales.toml", SALES)]);
        let dry = apply(&conn, &live, &new, "apply", true).unwrap();
        assert_eq!(dry.plan.lines(), vec!["+ bot sales"]);
        let done = apply(&conn, &live, &new, "apply", false).unwrap();
        assert_eq!(done.plan.lines(), vec!["+ bot sales"]);
        assert_eq!(done.revision.unwrap().summary, "+1 bot");
    }

    #[test]
    fn an_unchanged_apply_puts_back_files_edited_by_hand() {
        let (_tmp, conn, live) = setup();
        let b = bundle(&[("support.toml", SUPPORT)]);
        apply(&conn, &live, &b, "apply", false).unwrap();
        fs::write(live.join("support.toml"), "name = broken").unwrap();
        fs::write(live.join("stray.toml"), "").unwrap();
        let again = apply(&conn, &live, &b, "apply", false).unwrap();
        assert!(again.unchanged);
        assert_eq!(files_in(&live), b.sources);
        assert_eq!(revisions::list(&conn).unwrap().len(), 1);
    }

    #[test]
    fn record_loaded_finds_the_applied_revision_and_records_hand_edits() {
        let (_tmp, conn, live) = setup();
        let first = bundle(&[("support.toml", SUPPORT), ("agents.toml", &agents(3))]);

        // The server starting on a directory nobody applied.
        let r1 = record_loaded(&conn, &first, "startup").unwrap();
        assert_eq!((r1.number, r1.source.as_str()), (1, "startup"));
        assert_eq!(r1.summary, "+1 bot, +1 agent, +1 team");

        // After an apply the server finds that revision, and records no duplicate.
        let second = bundle(&[("support.toml", SUPPORT), ("agents.toml", &agents(4))]);
        let applied = apply(&conn, &live, &second, "apply", false)
            .unwrap()
            .revision
            .unwrap();
        assert_eq!(record_loaded(&conn, &second, "watch").unwrap(), applied);
        assert_eq!(revisions::list(&conn).unwrap().len(), 2);

        // A hand edit becomes a revision of its own, summarised against the live one.
        let edited = bundle(&[("support.toml", SUPPORT), ("agents.toml", &agents(6))]);
        let r3 = record_loaded(&conn, &edited, "watch").unwrap();
        assert_eq!((r3.number, r3.source.as_str()), (3, "watch"));
        assert_eq!(r3.summary, "~1 agent");
        assert_eq!(
            revisions::latest(&conn).unwrap().unwrap().bundle,
            edited.sources
        );
    }
}
