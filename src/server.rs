//! The running appliance: `serve(listener, settings, shutdown)` wires the live config, the
//! store and the HTTP routes together, and keeps the bundle live while admins edit it.

pub mod listen;
pub mod revisions;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::net::TcpListener;

use crate::config::{self, Bundle, BundleLock, Diagnostic, Live, LiveConfig};
use crate::engine::{Engine, Outbound};
use crate::http::AppState;
use crate::hub::Hub;
use crate::mail::outbox::{self, Doorbell};
use crate::mail::templates::Templates;
use crate::mail::transport::Transport;
use crate::settings::{Settings, Synchronous};
use crate::store::postgres::PgStore;
use crate::store::revisions::Revision;
use crate::store::{self, Store};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("the bundle directory {0} does not exist; create one with `livechat init {0}`")]
    NoBundleDir(String),
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error("cannot watch the bundle directory: {0}")]
    Watch(#[from] notify::Error),
    #[error("server: {0}")]
    Io(#[from] std::io::Error),
    #[error("mail: {0}")]
    Mail(String),
    /// The PostgreSQL database of `database_url` cannot be used: not reached, the login
    /// refused, the schema newer than this build. The URL is named with its password hidden.
    #[error("cannot use the database {url}: {reason}")]
    Database { url: String, reason: String },
    /// The engine refused to start on the store (today: the engine does not run on
    /// PostgreSQL yet), named with the database it was asked to run on.
    #[error("cannot start on the database {url}: {reason}")]
    Engine { url: String, reason: String },
}

impl AppState {
    /// Opens the store, loads the bundle (or the last good revision when it is invalid),
    /// then starts the engine on it.
    pub async fn open(settings: Settings) -> Result<AppState, StartError> {
        if !settings.bots_dir.is_dir() {
            return Err(StartError::NoBundleDir(
                settings.bots_dir.display().to_string(),
            ));
        }
        // The bundle is recorded (and live) before the engine starts on the store.
        let store = open_store(&settings).await?;
        let config = ConfigState {
            settings: Arc::new(settings),
            live: Arc::new(ArcSwap::from_pointee(Live {
                bundle: Arc::new(Bundle::empty()),
                revision: None,
                error: None,
            })),
            read: Arc::default(),
        };
        let config = {
            let store = store.clone();
            tokio::task::spawn_blocking(move || {
                let runtime = tokio::runtime::Handle::current();
                config.reload("startup", |bundle, edited| {
                    runtime.block_on(store.record_loaded(bundle, "startup", edited))
                });
                if config.live.load().revision.is_none() {
                    let last_good = runtime.block_on(store.latest_revision());
                    config.fall_back_to_last_good(last_good.ok().flatten());
                }
                config
            })
            .await
            .map_err(|e| StartError::Io(std::io::Error::other(e)))?
        };
        let settings = config.settings.clone();
        let templates = Templates::new(settings.templates_dir.clone());
        templates.check().map_err(StartError::Mail)?;
        settings
            .mail_from
            .parse::<lettre::message::Mailbox>()
            .map_err(|e| StartError::Mail(format!("mail_from `{}`: {e}", settings.mail_from)))?;
        let transport = Transport::from_settings(&settings).map_err(StartError::Mail)?;
        let outbound = Outbound {
            templates,
            public_url: settings.public_url.clone(),
            doorbell: Doorbell::default(),
        };
        let engine = match Engine::open(
            store,
            settings.data_dir.clone(),
            config.live.clone(),
            Hub::new(),
            outbound.clone(),
        )
        .await
        {
            Ok(engine) => engine,
            Err(e) => match &settings.database {
                Some(db) => {
                    return Err(StartError::Engine {
                        url: db.url.redacted().to_string(),
                        reason: e.to_string(),
                    });
                }
                None => return Err(e.into()),
            },
        };
        engine.start_expiry(settings.limits.bot_expiry);
        engine.start_live_visitors(
            settings.limits.visitors_online,
            settings.limits.pageview_retention,
        );
        tokio::spawn(store::stored::attachments::sweep_every(
            engine.store(),
            settings.data_dir.clone(),
        ));
        if let Some(writer) = engine.writer() {
            tokio::spawn(store::health::watch(
                writer.downgrade(),
                settings.data_dir.clone(),
                settings.low_space_warning,
            ));
        }
        tokio::spawn(
            outbox::Worker {
                store: engine.store().clone(),
                transport,
                from: settings.mail_from.clone(),
                live: config.live.clone(),
                doorbell: outbound.doorbell.clone(),
                retry_base: settings.outbox_retry,
            }
            .run(),
        );
        if let Some(keep) = settings.retention {
            tokio::spawn(crate::engine::privacy::retention_loop(
                engine.clone(),
                keep,
                crate::settings::retention_sweep_every(keep),
                settings.data_dir.join("mail"),
            ));
        }
        let link_key = engine
            .store()
            .link_key(&settings.data_dir)
            .await
            .map_err(|e| StartError::Io(std::io::Error::other(e)))?;
        let state = AppState {
            link_key: Arc::new(link_key),
            settings: config.settings,
            live: config.live,
            engine,
            limits: Arc::new(crate::http::limits::Limits::new(&settings.limits)),
            config_changes: Arc::default(),
            bundle_read: config.read,
        };
        let inviter = state.clone();
        tokio::task::spawn_blocking(move || inviter.invite_new_agents());
        Ok(state)
    }

    /// Mails an invitation to agents of the live roster who have no password yet (called
    /// on a blocking thread: at start and after each reload).
    fn invite_new_agents(&self) {
        let roster = self.live.load().bundle.roster.clone();
        let outbound = self.engine.outbound();
        let queued = tokio::runtime::Handle::current()
            .block_on(self.store().invite_new_agents(&roster, outbound));
        match queued {
            Ok(0) => {}
            Ok(n) => {
                tracing::info!("invited {n} new agent(s) by mail");
                outbound.doorbell.ring();
            }
            Err(e) => tracing::error!("cannot invite new agents: {e}"),
        }
    }

    fn config(&self) -> ConfigState {
        ConfigState {
            settings: self.settings.clone(),
            live: self.live.clone(),
            read: self.bundle_read.clone(),
        }
    }

    /// Reloads the bundle directory (blocking); tells the engine when a new revision is live.
    /// Requests never wait for it: the files are read and validated here, and only the new
    /// revision's row goes through the writer.
    pub fn reload(&self, source: &str) {
        let _changing = self.changing_config();
        let before = self.live.load().error.clone();
        let store = self.store().clone();
        let recorded_as = source.to_string();
        let runtime = tokio::runtime::Handle::current();
        let record = move |bundle: Arc<Bundle>, edited: bool| {
            runtime.block_on(store.record_loaded(bundle, &recorded_as, edited))
        };
        let revision = self.config().reload(source, record);
        self.config_changed(revision, before);
    }

    /// Makes `revision`, the database's newest, live on this replica (blocking): what a
    /// replica on PostgreSQL does when another replica, the admin API or the command line
    /// recorded it (`server::revisions`). The bundle directory is neither read nor written.
    /// Nothing changes when this replica serves that revision or a later one already, or
    /// when the revision does not validate here (a `${VAR}` this replica lacks): the
    /// current one stays, and the refusal is logged.
    pub fn adopt(&self, revision: Revision) -> Adopted {
        let _changing = self.changing_config();
        let current = self.live.load_full();
        if let Some(own) = current.revision.as_ref()
            && own.number >= revision.number
        {
            return Adopted::Already;
        }
        let bundle = match Bundle::from_sources(revision.bundle.clone(), &config::process_env) {
            Ok(bundle) => bundle,
            Err(diags) => {
                for d in &diags {
                    tracing::error!(
                        "revision {} does not validate on this replica, keeping revision {}: {}",
                        revision.number,
                        revision_label(&current.revision),
                        d.render("").trim_end()
                    );
                }
                return Adopted::Invalid;
            }
        };
        let number = revision.number;
        tracing::info!(
            "config live: revision {number} ({} bots) from the database (recorded by {}); \
             the bundle directory is not read for it",
            bundle.bots.len(),
            revision.source
        );
        self.live.store(Arc::new(Live {
            bundle: Arc::new(bundle),
            revision: Some(revision),
            error: None,
        }));
        self.config_changed(Some(number), current.error.clone());
        Adopted::Live
    }

    /// Held while the live config changes (see `AppState::config_changes`).
    fn changing_config(&self) -> std::sync::MutexGuard<'_, ()> {
        self.config_changes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// After the live config changed or an edit was refused: tells the engine and the
    /// consoles, and invites the new roster's agents. `revision`: the one that became live
    /// (None: the same stays); `before`: the refusal shown before the change.
    fn config_changed(&self, revision: Option<i64>, before: Option<Vec<Diagnostic>>) {
        if let Some(revision) = revision {
            self.engine.config_reloaded(revision);
            self.invite_new_agents();
        }
        let live = self.live.load();
        let revision = live.revision.as_ref().map(|r| r.number);
        match (&before, &live.error) {
            // The console shows it as a banner until a good edit is saved…
            (before, Some(errors)) if before.as_ref() != Some(errors) => {
                self.engine.config_error(revision, errors);
            }
            // …and then hears that it is gone (no errors).
            (Some(_), None) => self.engine.config_error(revision, &[]),
            _ => {}
        }
    }
}

/// What [`AppState::adopt`] did with a revision from the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Adopted {
    /// It is live now.
    Live,
    /// This replica serves it, or a later one, already.
    Already,
    /// It does not validate here; the current revision stays.
    Invalid,
}

/// The store of `settings`: PostgreSQL when `database_url` names one (connected, its schema
/// brought up to date), else SQLite in the data directory (made if need be).
async fn open_store(settings: &Settings) -> Result<Store, StartError> {
    if let Some(db) = &settings.database {
        let url = db.url.redacted().to_string();
        tracing::info!(
            "connecting to PostgreSQL at {url} (sslmode={}, pool of {})",
            db.url.sslmode().as_str(),
            db.pool
        );
        if settings.synchronous == Synchronous::Full {
            tracing::warn!(
                "synchronous = \"full\" is SQLite's setting and does nothing on PostgreSQL: \
                 there a commit is as durable as the server's synchronous_commit and \
                 replication make it"
            );
        }
        let pg = PgStore::connect_to(&db.url, db.pool)
            .await
            .map_err(|e| StartError::Database {
                url,
                reason: one_line(&with_causes(&e)),
            })?;
        return Ok(Store::postgres(pg));
    }
    store::set_synchronous(settings.synchronous);
    if settings.synchronous == Synchronous::Full {
        tracing::info!("SQLite synchronous=FULL: every commit is synced to the disk");
    }
    let data_dir = settings.data_dir.clone();
    Ok(
        tokio::task::spawn_blocking(move || Store::open_sqlite(&data_dir))
            .await
            .map_err(|e| StartError::Io(std::io::Error::other(e)))??,
    )
}

/// `e`'s message followed by those of its causes not already in it ("error connecting to
/// server: Connection refused").
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let message = c.to_string();
        if !text.contains(&message) {
            text.push_str(": ");
            text.push_str(&message);
        }
        cause = c.source();
    }
    text
}

/// A driver's message on one line (a server's error may carry a detail or hint line).
fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The config half of the state, which exists before the engine does.
struct ConfigState {
    settings: Arc<Settings>,
    live: LiveConfig,
    /// The hash of the bundle last read from the directory (`AppState::bundle_read`).
    read: Arc<std::sync::Mutex<Option<String>>>,
}

impl ConfigState {
    /// Reads the bundle directory and, if it is valid and new, makes it live. Blocking: call
    /// from a blocking thread. An invalid bundle keeps the current one and records why.
    /// Answers the new revision's number when one became live. `record` stores a new
    /// bundle as a revision (or finds it recorded already); it is told whether the
    /// directory was edited since this server last read it (`Store::record_loaded`).
    fn reload(
        &self,
        source: &str,
        record: impl FnOnce(Arc<Bundle>, bool) -> Result<Revision, store::StoreError>,
    ) -> Option<i64> {
        let dir = &self.settings.bots_dir;
        // The bundle lock is held across reading and recording, so an `apply` running at the
        // same moment is either wholly before (its revision is found by hash) or wholly
        // after (we are notified again). `apply` takes its lock outside the writer, so the
        // writer never waits for the lock and holding it while recording cannot deadlock.
        let _lock = BundleLock::shared(dir);
        let loaded = match config::load_dir(dir, &config::process_env) {
            Ok(result) => result,
            Err(e) => Err(vec![Diagnostic::file("", e.to_string())]),
        };
        let current = self.live.load_full();
        match loaded {
            Err(diags) => {
                for d in &diags {
                    tracing::warn!(
                        "config error, keeping revision {}: {}",
                        revision_label(&current.revision),
                        d.render(&dir.display().to_string()).trim_end()
                    );
                }
                self.live.store(Arc::new(Live {
                    bundle: current.bundle.clone(),
                    revision: current.revision.clone(),
                    error: Some(diags),
                }));
                None
            }
            Ok(bundle) => {
                let edited = {
                    let mut read = self.read.lock().unwrap_or_else(|p| p.into_inner());
                    let edited = read.as_ref().is_some_and(|before| *before != bundle.hash);
                    *read = Some(bundle.hash.clone());
                    edited
                };
                if current.revision.is_some() && bundle.hash == current.bundle.hash {
                    if current.error.is_some() {
                        tracing::info!("config error cleared; the bundle is back to the live one");
                        self.live.store(Arc::new(Live {
                            bundle: current.bundle.clone(),
                            revision: current.revision.clone(),
                            error: None,
                        }));
                    }
                    return None;
                }
                let bundle = Arc::new(bundle);
                let revision = match record(bundle.clone(), edited) {
                    Ok(revision) => revision,
                    Err(e) => {
                        tracing::error!("cannot record the new revision: {e}");
                        return None;
                    }
                };
                // On PostgreSQL the answer may be the live revision of another bundle: this
                // directory is an earlier revision's, and the database's live one is served.
                let (bundle, whence) = if revision.hash == bundle.hash {
                    (bundle, source.to_string())
                } else {
                    match Bundle::from_sources(revision.bundle.clone(), &config::process_env) {
                        Ok(live) => (Arc::new(live), "the database".to_string()),
                        Err(diags) => {
                            for d in &diags {
                                tracing::error!(
                                    "the live revision {} does not validate on this replica, \
                                     keeping revision {}: {}",
                                    revision.number,
                                    revision_label(&current.revision),
                                    d.render("").trim_end()
                                );
                            }
                            return None;
                        }
                    }
                };
                if current.revision.as_ref().map(|r| r.number) == Some(revision.number)
                    && current.bundle.hash == bundle.hash
                {
                    // Served already (the directory is behind it): only a refusal to clear.
                    if current.error.is_some() {
                        self.live.store(Arc::new(Live {
                            bundle: current.bundle.clone(),
                            revision: current.revision.clone(),
                            error: None,
                        }));
                    }
                    return None;
                }
                tracing::info!(
                    "config live: revision {} ({} bots) from {whence}",
                    revision.number,
                    bundle.bots.len()
                );
                let number = revision.number;
                self.live.store(Arc::new(Live {
                    bundle,
                    revision: Some(revision),
                    error: None,
                }));
                Some(number)
            }
        }
    }

    /// At startup with an invalid bundle: run the last recorded revision if there is one.
    fn fall_back_to_last_good(&self, latest: Option<Revision>) {
        let Some(revision) = latest else {
            return;
        };
        match Bundle::from_sources(revision.bundle.clone(), &config::process_env) {
            Ok(bundle) => {
                tracing::warn!(
                    "the bundle directory is invalid; running the last good revision {}",
                    revision.number
                );
                let error = self.live.load().error.clone();
                self.live.store(Arc::new(Live {
                    bundle: Arc::new(bundle),
                    revision: Some(revision),
                    error,
                }));
            }
            Err(_) => tracing::warn!(
                "the last revision {} does not validate any more either",
                revision.number
            ),
        }
    }
}

fn revision_label(revision: &Option<Revision>) -> String {
    revision
        .as_ref()
        .map_or("none".to_string(), |r| r.number.to_string())
}

/// Serves until `shutdown` completes, then finishes in-flight requests and returns.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    let (_watcher, mut changes) = config::watch::watch(&state.settings.bots_dir)?;
    let reloader = {
        let state = state.clone();
        tokio::spawn(async move {
            while config::watch::next_change(&mut changes, Duration::from_millis(50))
                .await
                .is_some()
            {
                let state = state.clone();
                let _ = tokio::task::spawn_blocking(move || state.reload("watch")).await;
            }
        })
    };
    // On PostgreSQL: every revision recorded elsewhere becomes live here too.
    let follower = match state.store() {
        Store::Postgres(pg) => Some(tokio::spawn(revisions::follow(state.clone(), pg.clone()))),
        Store::Sqlite(_) => None,
    };
    let limits = state.settings.limits.clone();
    let app = crate::http::router(state);
    let result = listen::serve(
        listener,
        app,
        listen::ConnLimits {
            max_connections: limits.max_connections,
            header_timeout: limits.header_timeout,
        },
        shutdown,
    )
    .await;
    reloader.abort();
    if let Some(follower) = follower {
        follower.abort();
    }
    result.map_err(StartError::from)
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down");
}
