//! The PostgreSQL store (#17): what several livechat replicas share when their settings name
//! a PostgreSQL database. SQLite stays the default and, for now, the whole of what `serve`
//! runs on; this module grows beside it, area by area, and nothing of the server uses it yet
//! (docs/postgres.md says what is built and what is not).
//!
//! Built so far: the pool and the migrations run under an advisory lock (`migrations`), the
//! event log whose `seq` comes from one counter row updated last in every group commit
//! (`log`), conversations written only at the version they were read at and within their
//! agent's `max_chats` (`conversations`), timers and the outbox, which any replica may claim
//! for a lease (`timers`, `outbox`), config revisions (`revisions`), presence by heartbeats
//! (`presence`), ephemeral frames
//! by `NOTIFY` (`frames`), and the tailer that reads the log in order, is a replica's one
//! publisher of stored events and hears the frames (`tailer`).

pub mod attachments;
pub mod contacts;
pub mod contents;
pub mod conversations;
pub mod effects;
pub mod frames;
pub mod log;
pub mod migrations;
pub mod outbox;
pub mod pageviews;
pub mod presence;
pub mod privacy;
pub mod reads;
pub mod revisions;
pub mod tailer;
pub mod timers;
pub use crate::dburl as url;
pub mod visitors;

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::error::SqlState;
use tokio_postgres_rustls::MakeRustlsConnect;

/// How long a caller waits for a connection of the pool, and for a new one to be made,
/// before the store answers that it is unavailable.
const POOL_WAIT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// The URL cannot be read, or its TLS settings cannot be honoured (the message names the
    /// URL with its password hidden).
    #[error("the database URL {0}")]
    Url(String),
    #[error("PostgreSQL: {0}")]
    Db(#[from] tokio_postgres::Error),
    #[error("no PostgreSQL connection: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("the PostgreSQL pool cannot be built: {0}")]
    Build(#[from] deadpool_postgres::BuildError),
    /// The failure of a group commit, shared by each job of the group.
    #[error("{0}")]
    Group(std::sync::Arc<PgError>),
    #[error("the log writer has stopped")]
    WriterGone,
    /// The connection was lost while COMMIT was on its way or awaited its answer (the
    /// server ended the session, a failover, a cut link): the transaction may have been
    /// committed, or not, and only reading the database again tells which. The caller must
    /// read again what it meant to write (an event by its `client_id`, a conversation by its
    /// `version`) before it retries, or a retry may write it twice. Counted unavailable: the
    /// database could not answer.
    #[error("the connection was lost at COMMIT, which may have been committed: {0}")]
    CommitUnknown(tokio_postgres::Error),
    /// The tailer stopped (its receiver closed, or its task ended) at `position`, short of
    /// what a caller waits for: those events will not come through it. Not counted
    /// unavailable: the database may be there, this replica's reader is not.
    #[error("the log's tailer has stopped at seq {position}")]
    TailerGone { position: i64 },
    #[error("the database holds schema version {found}, newer than this build knows ({known})")]
    NewerSchema { found: i32, known: i32 },
}

impl PgError {
    /// Whether the database cannot be reached or cannot take the work now (the connection
    /// lost, the server shutting down or out of resources, the pool empty): a retry later may
    /// succeed, as with [`crate::store::StoreError::is_unavailable`]. A login the server
    /// refused ([`PgError::is_login_refused`]) is not: the server answered, and the settings
    /// must change.
    pub fn is_unavailable(&self) -> bool {
        match self {
            PgError::Pool(e) => !login_refused(e),
            PgError::WriterGone | PgError::CommitUnknown(_) => true,
            PgError::Group(e) => e.is_unavailable(),
            PgError::Db(e) => gone(e),
            _ => false,
        }
    }

    /// Whether the server refused to open a session: a wrong password (28P01), a role that
    /// does not exist or may not log in from here (28000), a database that does not exist
    /// (3D000). A setting to correct, not the database gone.
    pub fn is_login_refused(&self) -> bool {
        match self {
            PgError::Pool(e) => login_refused(e),
            PgError::Db(e) => refused(e),
            PgError::Group(e) => e.is_login_refused(),
            _ => false,
        }
    }

    /// Whether a transaction failed at its COMMIT without knowing whether it was committed
    /// ([`PgError::CommitUnknown`], also as a group commit's failure).
    pub fn is_commit_unknown(&self) -> bool {
        match self {
            PgError::CommitUnknown(_) => true,
            PgError::Group(e) => e.is_commit_unknown(),
            _ => false,
        }
    }
}

/// Whether the pool could not make a connection because the server refused the login.
fn login_refused(e: &deadpool_postgres::PoolError) -> bool {
    matches!(e, deadpool_postgres::PoolError::Backend(e) if refused(e))
}

/// Whether `e` is the server refusing a login: class 28 (invalid authorization: a wrong
/// password, 28P01, or a role that does not exist or may not log in, 28000) or 3D000 (no
/// such database).
fn refused(e: &tokio_postgres::Error) -> bool {
    e.code().is_some_and(|code| {
        code.code().starts_with("28") || *code == SqlState::INVALID_CATALOG_NAME
    })
}

/// Whether `e` says the database could not be reached or could not take the work.
fn gone(e: &tokio_postgres::Error) -> bool {
    e.is_closed()
        || e.code().is_some_and(|code| {
            let class = &code.code()[..2];
            // 08: connection exception, 53: insufficient resources,
            // 57: operator intervention (shutdown, cancel), 25006: read only.
            matches!(class, "08" | "53" | "57") || *code == SqlState::READ_ONLY_SQL_TRANSACTION
        })
        // The socket failed under the client (not a fault of the statement, such as a
        // value of the wrong type, which has no SQLSTATE either).
        || std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>())
}

/// The error of a COMMIT. When the database could not answer it (the connection lost, the
/// server ending the session or shutting down), [`PgError::CommitUnknown`]: the commit may
/// have landed before the answer was lost (PostgreSQL ends a session that is terminated
/// while it waits after writing its commit, for instance). An error the server answered (a
/// deferred constraint, a serialization failure) means the transaction was rolled back.
pub fn at_commit(e: tokio_postgres::Error) -> PgError {
    if gone(&e) {
        PgError::CommitUnknown(e)
    } else {
        PgError::Db(e)
    }
}

/// `d` in whole milliseconds, for SQL's `$n::bigint * interval '1 millisecond'` (leases,
/// backoffs, silences); a longer one than SQL can count is the longest it can.
pub(crate) fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// A replica's handle on the shared database: a pool of connections, and the connection
/// settings and TLS connector that a connection outside the pool is opened with.
#[derive(Clone)]
pub struct PgStore {
    pool: Pool,
    config: tokio_postgres::Config,
    tls: MakeRustlsConnect,
    redacted: String,
}

impl PgStore {
    /// Connects to `url` (`postgres://user@host/db`, or the key=value form; a Unix socket is
    /// a host that is a path; `sslmode` and `sslrootcert` as libpq reads them, see
    /// [`url`]), with at most `max_connections` in the pool, and brings the schema up to
    /// date under the migration lock.
    pub async fn connect(url: &str, max_connections: usize) -> Result<PgStore, PgError> {
        let url = url::DbUrl::parse(url).map_err(PgError::Url)?;
        PgStore::connect_to(&url, max_connections).await
    }

    /// As [`PgStore::connect`], with the URL read already (the server's settings).
    pub async fn connect_to(url: &url::DbUrl, max_connections: usize) -> Result<PgStore, PgError> {
        let mut config = url.config().clone();
        // A connection whose peer vanished without a reset (a failover, a cut link) must
        // fail in seconds, not after the kernel's quarter of an hour: the committers and
        // the tailer keep theirs for good. Over a Unix socket these do nothing.
        config
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(10))
            .keepalives_interval(Duration::from_secs(5))
            .keepalives_retries(3)
            .tcp_user_timeout(Duration::from_secs(30));
        // Every connection, the pool's and any of its own, is made through this connector:
        // TLS as the URL's sslmode says (disable: the connector is never asked).
        let tls = url.tls().map_err(PgError::Url)?;
        let manager = Manager::from_config(
            config.clone(),
            tls.clone(),
            ManagerConfig {
                // A connection given back after an error is checked before reuse.
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(max_connections.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(POOL_WAIT))
            .create_timeout(Some(POOL_WAIT))
            .build()?;
        let store = PgStore {
            pool,
            config,
            tls,
            redacted: url.redacted().to_string(),
        };
        let mut client = store.pool.get().await?;
        migrations::run(&mut client).await?;
        Ok(store)
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// The connection settings, for a connection outside the pool (the tailer's, which
    /// listens for notifications and so must be a session of its own). Open it with
    /// [`PgStore::session`], or with [`PgStore::tls`]: the settings alone do not carry
    /// the TLS of the URL, and `sslmode=require` refuses a connection made without it.
    pub fn config(&self) -> &tokio_postgres::Config {
        &self.config
    }

    /// The TLS connector of this database's connections (see [`url::DbUrl::tls`]).
    pub fn tls(&self) -> &MakeRustlsConnect {
        &self.tls
    }

    /// A session of its own outside the pool, made as the pool's are (TLS included), for
    /// a listener: the caller drives the connection (its messages carry the
    /// notifications).
    pub async fn session(
        &self,
        config: &tokio_postgres::Config,
    ) -> Result<(tokio_postgres::Client, Session), PgError> {
        Ok(config.connect(self.tls.clone()).await?)
    }

    /// The database's URL with its password hidden, for messages and logs.
    pub fn redacted_url(&self) -> &str {
        &self.redacted
    }
}

/// The connection half of a [`PgStore::session`].
pub type Session = tokio_postgres::Connection<
    tokio_postgres::Socket,
    <MakeRustlsConnect as tokio_postgres::tls::MakeTlsConnect<tokio_postgres::Socket>>::Stream,
>;
