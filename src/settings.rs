//! Server settings: `livechat.toml` (given with `--config`) overlaid by command-line flags.
//! Every subcommand that reads the live bundle or the database takes the same flags.

use std::fs;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use clap::Args;
use serde::Deserialize;

use crate::config::values::EnvString;

/// The flags shared by `serve`, `apply`, `history`, `rollback`, … .
#[derive(Debug, Clone, Default, Args)]
pub struct ServerArgs {
    /// Server settings file (livechat.toml); its relative paths are relative to it.
    #[arg(long, env = "LIVECHAT_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, env = "LIVECHAT_LISTEN", global = true)]
    pub listen: Option<String>,
    /// Where the database and outgoing mail files live [default: ./data].
    #[arg(long, env = "LIVECHAT_DATA_DIR", global = true)]
    pub data_dir: Option<PathBuf>,
    /// The live bundle directory that the server watches [default: ./bots].
    #[arg(long, env = "LIVECHAT_BOTS_DIR", global = true)]
    pub bots_dir: Option<PathBuf>,
    /// How log lines are written to standard error: `text` for people, `json` (one object a
    /// line) for log shippers [default: text].
    #[arg(long, env = "LIVECHAT_LOG_FORMAT", value_enum, global = true)]
    pub log_format: Option<LogFormat>,
    /// Reverse proxies whose X-Forwarded-For / Forwarded name the client: CIDRs separated
    /// by commas, like `127.0.0.1/32,::1/128` [default: none].
    #[arg(long, env = "LIVECHAT_TRUSTED_PROXIES", global = true)]
    pub trusted_proxies: Option<String>,
    /// The PostgreSQL database that replicas share, `postgres://user:password@host/db`
    /// (`sslmode`, `sslrootcert` as libpq): `serve` runs on it, and `agent`, `history`,
    /// `rollback`, `apply` and `visitor` work on it; over LIVECHAT_DATABASE_URL, over
    /// `database_url` of the settings file [default: SQLite in the data directory].
    #[arg(long, value_name = "URL", global = true)]
    pub database_url: Option<String>,
}

/// The shape of log lines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// One readable line per event; coloured only when standard error is a terminal.
    #[default]
    Text,
    /// One JSON object per line (`timestamp`, `level`, `fields.message`, `target`).
    Json,
}

/// `livechat.toml`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingsFile {
    pub listen: Option<String>,
    pub public_url: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub bots_dir: Option<PathBuf>,
    /// Bearer token for the admin API (remote `livechat apply`); usually `${ENV}`.
    pub admin_token: Option<EnvString>,
    /// When set, `/metrics` asks for it as a bearer token.
    pub metrics_token: Option<EnvString>,
    /// A request header holding the visitor's country (ISO 3166 alpha-2) that a trusted
    /// proxy in front sets, like `CF-IPCountry`; used by `route` rules on `country`. Read
    /// only from requests whose TCP peer is one of `trusted_proxies`.
    pub country_header: Option<String>,
    /// The reverse proxies (CIDRs) whose `X-Forwarded-For` / `Forwarded` headers name the
    /// client. Default: none, and every client is its TCP peer.
    pub trusted_proxies: Option<Vec<String>>,
    /// Outgoing mail. Absent: every mail is written as an `.eml` file under `DATA_DIR/mail`.
    pub smtp: Option<SmtpFile>,
    /// The sender of every mail, like `Acme Support <support@acme.example>`.
    pub mail_from: Option<String>,
    /// A directory whose templates (same names as the built-in ones) replace the built-in.
    pub templates_dir: Option<PathBuf>,
    /// The first retry of a failed mail or webhook waits this long; each next one twice as
    /// long, at most an hour (default `5s`).
    pub outbox_retry: Option<crate::config::values::DurationValue>,
    /// `text` or `json` (see [`LogFormat`]).
    pub log_format: Option<LogFormat>,
    /// `[limits]`: what one client may hold of the server.
    #[serde(default)]
    pub limits: LimitsFile,
    /// Below this much free space where the database is, the server warns in its log: a
    /// size (`500MB`, `2GiB`) or a share of the file system (`5%`, the default).
    pub low_space_warning: Option<String>,
    /// How long settled conversations are kept, like `90d` or `1y`: a sweeper erases
    /// conversations resolved, ended or closed longer ago (see docs/privacy.md). Default:
    /// kept forever.
    pub retention: Option<crate::config::values::DurationValue>,
    /// Below this much free space where the database is, uploads of attachments are
    /// refused (chat goes on): a size or a share of the file system (default `2%`).
    pub attachment_reserve: Option<String>,
    /// `[webrtc]`: how video calls find a way between the two browsers.
    #[serde(default)]
    pub webrtc: WebrtcFile,
    /// `[store]`: how the database is written.
    #[serde(default)]
    pub store: StoreFile,
    /// The PostgreSQL database that replicas share, `postgres://user:password@host/db`
    /// (`${VAR}` resolved, so the password can stay out of the file). Unset: SQLite in the
    /// data directory.
    pub database_url: Option<EnvString>,
    /// Connections of the PostgreSQL pool at most (default 16).
    pub database_pool: Option<usize>,
}

/// `[store]` of livechat.toml.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreFile {
    /// SQLite's `synchronous`: `normal` (the default) or `full`.
    pub synchronous: Option<Synchronous>,
}

/// SQLite's `synchronous` for the server's writes, in WAL mode. `Normal` syncs the disk at
/// checkpoints: a crash of the process loses nothing, a power loss may lose the last
/// commits. `Full` also syncs the log at every (group) commit, so an acknowledged write
/// survives a power loss too, at the cost of an fsync per commit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum Synchronous {
    #[default]
    Normal,
    Full,
}

impl Synchronous {
    /// The value of `PRAGMA synchronous`.
    pub fn pragma(self) -> &'static str {
        match self {
            Synchronous::Normal => "NORMAL",
            Synchronous::Full => "FULL",
        }
    }
}

impl std::str::FromStr for Synchronous {
    type Err = String;

    fn from_str(text: &str) -> Result<Synchronous, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "normal" => Ok(Synchronous::Normal),
            "full" => Ok(Synchronous::Full),
            _ => Err(format!(
                "`{text}` is not a synchronous mode: write `normal` or `full`"
            )),
        }
    }
}

impl TryFrom<String> for Synchronous {
    type Error = String;

    fn try_from(text: String) -> Result<Synchronous, String> {
        text.parse()
    }
}

/// `[webrtc]` of livechat.toml. Without it a call uses host candidates only: it connects
/// when both browsers can reach each other directly (one network).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebrtcFile {
    /// STUN server URLs, like `stun:turn.example.com:3478`.
    #[serde(default)]
    pub stun: Vec<String>,
    /// TURN server URLs, like `turn:turn.example.com:3478?transport=udp`.
    #[serde(default)]
    pub turn: Vec<String>,
    /// The secret shared with the TURN server (coturn's `static-auth-secret` with
    /// `use-auth-secret`), usually `${TURN_SECRET}`: each caller gets a credential made
    /// from it that expires after `credential_ttl`.
    pub turn_secret: Option<EnvString>,
    /// How long a TURN credential holds (default `1h`).
    pub credential_ttl: Option<crate::config::values::DurationValue>,
    /// Calls only through the TURN relay (`iceTransportPolicy: "relay"`): neither side
    /// learns the other's IP addresses, at the cost of relaying every call. Needs `turn`.
    #[serde(default)]
    pub relay_only: bool,
}

/// Resolved `[webrtc]`.
#[derive(Debug, Clone, Default)]
pub struct Webrtc {
    pub stun: Vec<String>,
    pub turn: Vec<String>,
    pub turn_secret: Option<String>,
    pub credential_ttl: std::time::Duration,
    pub relay_only: bool,
}

/// `[limits]` of livechat.toml; each also from an environment variable.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsFile {
    /// Open connections at most; more wait in the kernel's queue (default 20000).
    pub max_connections: Option<usize>,
    /// A client must send a request's headers within this, also when a kept-alive
    /// connection waits for its next request (default `10s`).
    pub header_timeout: Option<crate::config::values::DurationValue>,
    /// A request (not a WebSocket) must be answered within this, its body read included
    /// (default `60s`).
    pub request_timeout: Option<crate::config::values::DurationValue>,
    /// Open WebSockets (widgets and consoles) per client address (default 500).
    pub sockets_per_address: Option<usize>,
    /// New visitor sessions per client address in 10 minutes (default 100).
    pub sessions_per_address: Option<usize>,
    /// Transcript mails to one address in a day (default 3).
    pub transcripts_per_recipient: Option<usize>,
    /// Transcript mails from the whole server in an hour (default 100).
    pub transcripts_per_hour: Option<usize>,
    /// A conversation still with the bot that sees no visitor for this long ends and
    /// leaves memory (default `1d`).
    pub bot_expiry: Option<crate::config::values::DurationValue>,
    /// Page views the widget may report per client address in a minute (default 120).
    pub pageviews_per_address: Option<usize>,
    /// How long page views are kept (default `30d`); a sweeper deletes older ones.
    pub pageview_retention: Option<crate::config::values::DurationValue>,
    /// Visitors the server follows live for "Visitors online" at most (default 5000);
    /// page views beyond it are stored but not listed.
    pub visitors_online: Option<usize>,
    /// Messages one visitor may send at once, by HTTP and socket together (default 20).
    pub message_burst: Option<usize>,
    /// After a burst, one more message per visitor each this long (default `1s`).
    pub message_refill: Option<crate::config::values::DurationValue>,
}

/// Resolved `[limits]`.
#[derive(Debug, Clone)]
pub struct ServerLimits {
    pub max_connections: usize,
    pub header_timeout: std::time::Duration,
    pub request_timeout: std::time::Duration,
    pub sockets_per_address: usize,
    pub sessions_per_address: usize,
    pub transcripts_per_recipient: usize,
    pub transcripts_per_hour: usize,
    pub bot_expiry: std::time::Duration,
    pub pageviews_per_address: usize,
    pub pageview_retention: std::time::Duration,
    pub visitors_online: usize,
    pub message_burst: usize,
    pub message_refill: std::time::Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            max_connections: 20_000,
            header_timeout: std::time::Duration::from_secs(10),
            request_timeout: std::time::Duration::from_secs(60),
            sockets_per_address: 500,
            sessions_per_address: 100,
            transcripts_per_recipient: 3,
            transcripts_per_hour: 100,
            bot_expiry: std::time::Duration::from_secs(86_400),
            pageviews_per_address: 120,
            pageview_retention: std::time::Duration::from_secs(30 * 86_400),
            visitors_online: 5000,
            // A person typing, or pasting a few lines as several messages, never sends 20
            // at once nor more than one a second for long; a script does.
            message_burst: 20,
            message_refill: std::time::Duration::from_secs(1),
        }
    }
}

/// `[smtp]` of livechat.toml.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpFile {
    pub host: String,
    /// Default: 587 with `starttls`, 465 with `tls`, 25 with `none`.
    pub port: Option<u16>,
    #[serde(default)]
    pub security: SmtpSecurity,
    pub username: Option<String>,
    /// Usually `${SMTP_PASSWORD}`.
    pub password: Option<EnvString>,
    /// Give up on one connection attempt after this long (default 15s).
    pub timeout: Option<crate::config::values::DurationValue>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SmtpSecurity {
    /// Plain connection upgraded with STARTTLS (required).
    #[default]
    Starttls,
    /// TLS from the first byte ("SMTPS", port 465).
    Tls,
    /// No encryption: only for a relay on the same host or a test server.
    None,
}

/// Resolved SMTP settings.
#[derive(Debug, Clone)]
pub struct Smtp {
    pub host: String,
    pub port: u16,
    pub security: SmtpSecurity,
    pub username: Option<String>,
    pub password: Option<String>,
    pub timeout: std::time::Duration,
}

/// The resolved settings a command runs with.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    /// The address people reach the server at, for links in mail and notifications.
    pub public_url: String,
    /// Whether `public_url` was configured (else it is derived from the listen address).
    pub public_url_set: bool,
    pub data_dir: PathBuf,
    pub bots_dir: PathBuf,
    pub admin_token: Option<String>,
    /// `None`: `/metrics` is open (to whoever reaches the listen address).
    pub metrics_token: Option<String>,
    pub country_header: Option<String>,
    /// Peers whose forwarding headers are believed (see `http::client`).
    pub trusted_proxies: Vec<Cidr>,
    /// `None`: mail goes to files in `DATA_DIR/mail`.
    pub smtp: Option<Smtp>,
    pub mail_from: String,
    pub templates_dir: Option<PathBuf>,
    pub outbox_retry: std::time::Duration,
    pub limits: ServerLimits,
    pub log_format: LogFormat,
    pub low_space_warning: SpaceThreshold,
    /// `None`: conversations are kept forever.
    pub retention: Option<std::time::Duration>,
    pub webrtc: Webrtc,
    pub attachment_reserve: SpaceThreshold,
    /// SQLite's `synchronous` for the server's connections.
    pub synchronous: Synchronous,
    /// `None`: SQLite in `data_dir`.
    pub database: Option<Database>,
}

/// The PostgreSQL database a replica runs on (`database_url`, #17).
#[derive(Debug, Clone)]
pub struct Database {
    pub url: crate::dburl::DbUrl,
    /// Connections of the pool at most.
    pub pool: usize,
}

/// The pool's size when `database_pool` is not set: a replica's committers keep a
/// connection each, requests and the loops borrow the rest.
pub const DEFAULT_DATABASE_POOL: usize = 16;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
    #[error("invalid listen address `{0}` (write it like 127.0.0.1:8080)")]
    Listen(String),
    #[error(
        "trusted_proxies: `{0}` is not an address or a network (write it like 10.0.0.0/8 or ::1/128)"
    )]
    Cidr(String),
    /// An error at a place in the settings file, rendered as `file:line:col: message` with
    /// the line and a caret.
    #[error("{}", .0.render("").trim_end())]
    At(Box<crate::config::Diagnostic>),
}

/// An IP network, `address/prefix-length` (`10.0.0.0/8`, `2001:db8::/32`); a bare address
/// is the network of that address alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    len: u8,
}

impl std::str::FromStr for Cidr {
    type Err = SettingsError;

    fn from_str(text: &str) -> Result<Cidr, SettingsError> {
        let invalid = || SettingsError::Cidr(text.to_string());
        let (addr, len) = match text.trim().split_once('/') {
            Some((addr, len)) => (addr, Some(len)),
            None => (text.trim(), None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| invalid())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len = match len {
            None => max,
            Some(len) if len.bytes().all(|b| b.is_ascii_digit()) => {
                len.parse::<u8>().map_err(|_| invalid())?
            }
            Some(_) => return Err(invalid()),
        };
        if len > max {
            return Err(invalid());
        }
        Ok(Cidr { addr, len })
    }
}

impl Cidr {
    /// Whether `ip` is in the network. An IPv4 client that reaches a dual-stack listener
    /// as `::ffff:a.b.c.d` is the IPv4 address it maps.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr.to_canonical(), ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => prefix_eq(&net.octets(), &ip.octets(), self.len),
            (IpAddr::V6(net), IpAddr::V6(ip)) => prefix_eq(&net.octets(), &ip.octets(), self.len),
            _ => false,
        }
    }
}

/// Whether the first `bits` bits of two addresses are the same.
fn prefix_eq(a: &[u8], b: &[u8], bits: u8) -> bool {
    let (whole, rest) = (usize::from(bits / 8), bits % 8);
    if a[..whole] != b[..whole] {
        return false;
    }
    rest == 0 || (a[whole] ^ b[whole]) >> (8 - rest) == 0
}

/// A list of networks, from the flag (comma-separated) or the file's array.
fn cidrs<'a>(items: impl IntoIterator<Item = &'a str>) -> Result<Vec<Cidr>, SettingsError> {
    items
        .into_iter()
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(str::parse)
        .collect()
}

/// A secret from the settings file (`${VAR}` resolved), else from the environment variable
/// `var`; empty means unset.
fn token(
    from_file: &Option<EnvString>,
    key: &str,
    var: &str,
) -> Result<Option<String>, SettingsError> {
    let value = match from_file {
        Some(t) => Some(t.resolve(&crate::config::process_env).map_err(|message| {
            SettingsError::Invalid {
                path: key.into(),
                message,
            }
        })?),
        None => std::env::var(var).ok(),
    };
    Ok(value.filter(|t| !t.is_empty()))
}

impl ServerArgs {
    /// Reads the settings file, if any, then applies the flags over it.
    pub fn resolve(&self) -> Result<Settings, SettingsError> {
        let (file, base, text) = match &self.config {
            Some(path) => {
                let text = fs::read_to_string(path).map_err(|source| SettingsError::Read {
                    path: path.display().to_string(),
                    source,
                })?;
                let file: SettingsFile =
                    toml::from_str(&text).map_err(|e| SettingsError::Invalid {
                        path: path.display().to_string(),
                        message: e.message().to_string(),
                    })?;
                let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
                (file, base, Some((path.display().to_string(), text)))
            }
            None => (SettingsFile::default(), PathBuf::new(), None),
        };
        let from_file = |p: &Option<PathBuf>| p.as_ref().map(|p| base.join(p));
        let listen_text = self
            .listen
            .clone()
            .or(file.listen.clone())
            .unwrap_or_else(|| DEFAULT_LISTEN.to_string());
        let listen: SocketAddr = listen_text
            .parse()
            .map_err(|_| SettingsError::Listen(listen_text.clone()))?;
        let admin_token = token(&file.admin_token, "admin_token", "LIVECHAT_ADMIN_TOKEN")?;
        let metrics_token = token(
            &file.metrics_token,
            "metrics_token",
            "LIVECHAT_METRICS_TOKEN",
        )?;
        Ok(Settings {
            public_url_set: file.public_url.is_some(),
            public_url: file
                .public_url
                .clone()
                .unwrap_or_else(|| format!("http://{listen}")),
            listen,
            data_dir: self
                .data_dir
                .clone()
                .or_else(|| from_file(&file.data_dir))
                .unwrap_or_else(|| PathBuf::from("data")),
            bots_dir: self
                .bots_dir
                .clone()
                .or_else(|| from_file(&file.bots_dir))
                .unwrap_or_else(|| PathBuf::from("bots")),
            admin_token,
            metrics_token,
            country_header: file.country_header.clone(),
            trusted_proxies: match (&self.trusted_proxies, &file.trusted_proxies) {
                (Some(flag), _) => cidrs(flag.split(','))?,
                (None, Some(list)) => cidrs(list.iter().map(String::as_str))?,
                (None, None) => Vec::new(),
            },
            smtp: match &file.smtp {
                None => None,
                Some(smtp) => Some(resolve_smtp(smtp)?),
            },
            mail_from: file
                .mail_from
                .clone()
                .unwrap_or_else(|| "livechat <livechat@localhost>".to_string()),
            templates_dir: from_file(&file.templates_dir),
            outbox_retry: file
                .outbox_retry
                .map(|d| d.get())
                .unwrap_or(std::time::Duration::from_secs(5)),
            limits: resolve_limits(&file.limits)?,
            log_format: self.log_format.or(file.log_format).unwrap_or_default(),
            low_space_warning: space_threshold(
                "LIVECHAT_LOW_SPACE_WARNING",
                "low_space_warning",
                file.low_space_warning.as_deref(),
                SpaceThreshold::default(),
            )?,
            attachment_reserve: space_threshold(
                "LIVECHAT_ATTACHMENT_RESERVE",
                "attachment_reserve",
                file.attachment_reserve.as_deref(),
                SpaceThreshold::Percent(2.0),
            )?,
            retention: retention(file.retention)?,
            webrtc: resolve_webrtc(&file.webrtc)?,
            synchronous: synchronous(file.store.synchronous)?,
            database: database(self.database_url.as_deref(), &file, text.as_ref())?,
        })
    }
}

/// The database a server runs on: `--database-url`, else `LIVECHAT_DATABASE_URL`, else
/// `database_url` of the file (the first that is set and not empty); none: SQLite. A URL
/// that is not PostgreSQL's, cannot be read or asks for TLS that cannot be given is refused,
/// at its place in the file when it comes from there, and never shown with its password.
fn database(
    flag: Option<&str>,
    file: &SettingsFile,
    source: Option<&(String, String)>,
) -> Result<Option<Database>, SettingsError> {
    let pool = env_or(
        "LIVECHAT_DATABASE_POOL",
        file.database_pool,
        DEFAULT_DATABASE_POOL,
    )?;
    if pool == 0 {
        return Err(SettingsError::Invalid {
            path: "database_pool".into(),
            message: "must be at least 1".into(),
        });
    }
    let given = |text: Option<String>| text.filter(|t| !t.trim().is_empty());
    let invalid = |path: &str, message: String| SettingsError::Invalid {
        path: path.into(),
        message,
    };
    if let Some(text) = given(flag.map(str::to_string)) {
        let url = database_url(&text).map_err(|m| invalid("--database-url", m))?;
        return Ok(Some(Database { url, pool }));
    }
    if let Some(text) = given(std::env::var("LIVECHAT_DATABASE_URL").ok()) {
        let url = database_url(&text).map_err(|m| invalid("LIVECHAT_DATABASE_URL", m))?;
        return Ok(Some(Database { url, pool }));
    }
    let Some(value) = &file.database_url else {
        return Ok(None);
    };
    let parsed = value
        .resolve(&crate::config::process_env)
        .and_then(|text| database_url(&text));
    match parsed {
        Ok(url) => Ok(Some(Database { url, pool })),
        Err(message) => Err(match source {
            Some((path, text)) => SettingsError::At(Box::new(database_url_at(
                path,
                text,
                value,
                format!("database_url: {message}"),
            ))),
            None => invalid("database_url", message),
        }),
    }
}

/// A `database_url` read and checked: PostgreSQL's URL form only (`postgres://` or
/// `postgresql://`), which the client can read, with TLS settings this build honours.
pub fn database_url(text: &str) -> Result<crate::dburl::DbUrl, String> {
    use crate::dburl as url;
    let trimmed = text.trim();
    if !(trimmed.starts_with("postgres://") || trimmed.starts_with("postgresql://")) {
        return Err(format!(
            "`{}` is not a PostgreSQL URL: write it like \
             postgres://user:password@host:5432/database (SQLite, the default, needs none)",
            url::redact(trimmed)
        ));
    }
    url::DbUrl::parse(trimmed)
}

/// The diagnostic of `database_url` at its place in the file, its line shown with the URL
/// redacted (the column and the caret stay right: the password comes after the start).
fn database_url_at(
    path: &str,
    text: &str,
    value: &EnvString,
    message: String,
) -> crate::config::Diagnostic {
    let mut d = crate::config::Diagnostic::at(path, text, value.0.span(), message);
    let raw = value.raw();
    let shown = crate::dburl::redact(raw);
    if !raw.is_empty() && d.source_line.contains(raw) {
        d.source_line = d.source_line.replace(raw, &shown);
        d.width = d.width.min(shown.chars().count() + 2);
    } else {
        // The value is not on one line as written (escapes, a multi-line string): show
        // none of it rather than a password.
        d.source_line.clear();
    }
    d
}

/// `LIVECHAT_RETENTION`, else `retention` of the file, else none (keep forever). Zero is
/// refused: it would erase a conversation the moment it is settled.
fn retention(
    file: Option<crate::config::values::DurationValue>,
) -> Result<Option<std::time::Duration>, SettingsError> {
    match std::env::var("LIVECHAT_RETENTION") {
        Ok(text) if !text.trim().is_empty() => match humantime::parse_duration(text.trim()) {
            Ok(d) if !d.is_zero() => Ok(Some(d)),
            _ => Err(SettingsError::Invalid {
                path: "LIVECHAT_RETENTION".into(),
                message: format!(
                    "`{text}` is not a retention period: write a duration longer than zero, \
                     like `90d` or `1y`"
                ),
            }),
        },
        _ => Ok(file.map(|d| d.get())),
    }
}

/// `LIVECHAT_SYNCHRONOUS`, else `synchronous` of `[store]`, else `normal`.
fn synchronous(file: Option<Synchronous>) -> Result<Synchronous, SettingsError> {
    match std::env::var("LIVECHAT_SYNCHRONOUS") {
        Ok(text) if !text.trim().is_empty() => {
            text.parse().map_err(|message| SettingsError::Invalid {
                path: "LIVECHAT_SYNCHRONOUS".into(),
                message,
            })
        }
        _ => Ok(file.unwrap_or_default()),
    }
}

/// How often the retention sweeper looks: a quarter of the period, between a second and
/// an hour.
pub fn retention_sweep_every(retention: std::time::Duration) -> std::time::Duration {
    (retention / 4).clamp(
        std::time::Duration::from_secs(1),
        std::time::Duration::from_secs(3600),
    )
}

/// The environment variable `env`, else `key` of the file, else `default`.
fn space_threshold(
    env: &'static str,
    key: &'static str,
    file: Option<&str>,
    default: SpaceThreshold,
) -> Result<SpaceThreshold, SettingsError> {
    let (text, key) = match std::env::var(env) {
        Ok(text) if !text.is_empty() => (text, env),
        _ => match file {
            Some(text) => (text.to_string(), key),
            None => return Ok(default),
        },
    };
    text.parse().map_err(|message| SettingsError::Invalid {
        path: key.into(),
        message,
    })
}

/// A setting from its environment variable, else from the file, else its default.
fn env_or<T: std::str::FromStr>(
    var: &str,
    file: Option<T>,
    default: T,
) -> Result<T, SettingsError> {
    match std::env::var(var) {
        Ok(text) if !text.is_empty() => text.trim().parse().map_err(|_| SettingsError::Invalid {
            path: var.into(),
            message: format!("`{text}` is not a valid value"),
        }),
        _ => Ok(file.unwrap_or(default)),
    }
}

fn env_duration(
    var: &str,
    file: Option<crate::config::values::DurationValue>,
    default: std::time::Duration,
) -> Result<std::time::Duration, SettingsError> {
    match std::env::var(var) {
        Ok(text) if !text.is_empty() => {
            humantime::parse_duration(text.trim()).map_err(|e| SettingsError::Invalid {
                path: var.into(),
                message: format!("`{text}`: {e}"),
            })
        }
        _ => Ok(file.map(|d| d.get()).unwrap_or(default)),
    }
}

fn resolve_limits(file: &LimitsFile) -> Result<ServerLimits, SettingsError> {
    let d = ServerLimits::default();
    let limits = ServerLimits {
        max_connections: env_or(
            "LIVECHAT_MAX_CONNECTIONS",
            file.max_connections,
            d.max_connections,
        )?,
        header_timeout: env_duration(
            "LIVECHAT_HEADER_TIMEOUT",
            file.header_timeout,
            d.header_timeout,
        )?,
        request_timeout: env_duration(
            "LIVECHAT_REQUEST_TIMEOUT",
            file.request_timeout,
            d.request_timeout,
        )?,
        sockets_per_address: env_or(
            "LIVECHAT_SOCKETS_PER_ADDRESS",
            file.sockets_per_address,
            d.sockets_per_address,
        )?,
        sessions_per_address: env_or(
            "LIVECHAT_SESSIONS_PER_ADDRESS",
            file.sessions_per_address,
            d.sessions_per_address,
        )?,
        transcripts_per_recipient: env_or(
            "LIVECHAT_TRANSCRIPTS_PER_RECIPIENT",
            file.transcripts_per_recipient,
            d.transcripts_per_recipient,
        )?,
        transcripts_per_hour: env_or(
            "LIVECHAT_TRANSCRIPTS_PER_HOUR",
            file.transcripts_per_hour,
            d.transcripts_per_hour,
        )?,
        bot_expiry: env_duration("LIVECHAT_BOT_EXPIRY", file.bot_expiry, d.bot_expiry)?,
        pageviews_per_address: env_or(
            "LIVECHAT_PAGEVIEWS_PER_ADDRESS",
            file.pageviews_per_address,
            d.pageviews_per_address,
        )?,
        pageview_retention: env_duration(
            "LIVECHAT_PAGEVIEW_RETENTION",
            file.pageview_retention,
            d.pageview_retention,
        )?,
        visitors_online: env_or(
            "LIVECHAT_VISITORS_ONLINE",
            file.visitors_online,
            d.visitors_online,
        )?,
        message_burst: env_or(
            "LIVECHAT_MESSAGE_BURST",
            file.message_burst,
            d.message_burst,
        )?,
        message_refill: env_duration(
            "LIVECHAT_MESSAGE_REFILL",
            file.message_refill,
            d.message_refill,
        )?,
    };
    if limits.pageview_retention < std::time::Duration::from_secs(1) {
        return Err(SettingsError::Invalid {
            path: "limits.pageview_retention".into(),
            message: "must be at least 1s".into(),
        });
    }
    if limits.bot_expiry < std::time::Duration::from_secs(1) {
        return Err(SettingsError::Invalid {
            path: "limits.bot_expiry".into(),
            message: "must be at least 1s".into(),
        });
    }
    if limits.message_refill.is_zero() {
        return Err(SettingsError::Invalid {
            path: "limits.message_refill".into(),
            message: "must be longer than zero".into(),
        });
    }
    if limits.max_connections == 0
        || limits.sockets_per_address == 0
        || limits.sessions_per_address == 0
        || limits.pageviews_per_address == 0
        || limits.message_burst == 0
    {
        return Err(SettingsError::Invalid {
            path: "limits".into(),
            message: "max_connections, sockets_per_address, sessions_per_address, \
                      pageviews_per_address and message_burst must be at least 1"
                .into(),
        });
    }
    Ok(limits)
}

fn resolve_webrtc(file: &WebrtcFile) -> Result<Webrtc, SettingsError> {
    let invalid = |message: String| SettingsError::Invalid {
        path: "webrtc".into(),
        message,
    };
    let turn_secret = token(
        &file.turn_secret,
        "webrtc.turn_secret",
        "LIVECHAT_TURN_SECRET",
    )?;
    if !file.turn.is_empty() && turn_secret.is_none() {
        return Err(invalid(
            "`turn` servers need a `turn_secret` (coturn's static-auth-secret)".into(),
        ));
    }
    if file.relay_only && file.turn.is_empty() {
        return Err(invalid(
            "`relay_only` needs `turn` servers: without a relay no call could connect".into(),
        ));
    }
    let schemes = |urls: &[String], allowed: &[&str]| {
        urls.iter()
            .find(|u| !allowed.iter().any(|s| u.starts_with(s)))
            .cloned()
    };
    if let Some(bad) = schemes(&file.stun, &["stun:", "stuns:"]) {
        return Err(invalid(format!("`{bad}` is not a stun: or stuns: URL")));
    }
    if let Some(bad) = schemes(&file.turn, &["turn:", "turns:"]) {
        return Err(invalid(format!("`{bad}` is not a turn: or turns: URL")));
    }
    Ok(Webrtc {
        stun: file.stun.clone(),
        turn: file.turn.clone(),
        turn_secret,
        credential_ttl: file
            .credential_ttl
            .map(|d| d.get())
            .unwrap_or(std::time::Duration::from_secs(3600)),
        relay_only: file.relay_only,
    })
}

fn resolve_smtp(file: &SmtpFile) -> Result<Smtp, SettingsError> {
    let invalid = |message: String| SettingsError::Invalid {
        path: "smtp".into(),
        message,
    };
    let password = match &file.password {
        Some(p) => Some(p.resolve(&crate::config::process_env).map_err(invalid)?),
        None => None,
    };
    Ok(Smtp {
        host: file.host.clone(),
        port: file.port.unwrap_or(match file.security {
            SmtpSecurity::Starttls => 587,
            SmtpSecurity::Tls => 465,
            SmtpSecurity::None => 25,
        }),
        security: file.security,
        username: file.username.clone(),
        password,
        timeout: file
            .timeout
            .map(|t| t.get())
            .unwrap_or(std::time::Duration::from_secs(15)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn networks_hold_their_addresses_and_no_others() {
        let net: Cidr = "10.1.0.0/16".parse().unwrap();
        assert!(net.contains(ip("10.1.0.0")) && net.contains(ip("10.1.255.7")));
        assert!(!net.contains(ip("10.2.0.1")) && !net.contains(ip("::1")));
        let odd: Cidr = "192.168.4.0/22".parse().unwrap();
        assert!(odd.contains(ip("192.168.7.255")));
        assert!(!odd.contains(ip("192.168.8.0")) && !odd.contains(ip("192.168.3.255")));
        let v6: Cidr = "2001:db8:cafe::/48".parse().unwrap();
        assert!(v6.contains(ip("2001:db8:cafe:1::9")));
        assert!(!v6.contains(ip("2001:db8:caff::1")) && !v6.contains(ip("10.0.0.1")));
        let one: Cidr = "127.0.0.1".parse().unwrap();
        assert!(one.contains(ip("127.0.0.1")) && !one.contains(ip("127.0.0.2")));
        // A dual-stack listener sees IPv4 clients as mapped IPv6 addresses.
        assert!(one.contains(ip("::ffff:127.0.0.1")));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("203.0.113.9")) && !all.contains(ip("::1")));
    }

    #[test]
    fn garbage_is_no_network() {
        for bad in [
            "",
            "10.0.0.0/33",
            "::/129",
            "10.0.0/8",
            "10.0.0.0/",
            "10.0.0.0/+8",
            "10.0.0.0/8/8",
            "localhost",
            "10.0.0.0 /8x",
            "fe80::1%eth0",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn trusted_proxies_from_the_file_or_the_flag() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("livechat.toml");
        std::fs::write(&path, "trusted_proxies = [\"127.0.0.1/32\", \"::1\"]\n").unwrap();
        let mut args = ServerArgs {
            config: Some(path),
            ..ServerArgs::default()
        };
        let proxies = args.resolve().unwrap().trusted_proxies;
        assert_eq!(proxies.len(), 2);
        assert!(proxies[1].contains(ip("::1")));
        args.trusted_proxies = Some("10.0.0.0/8, 172.16.0.0/12".into());
        let proxies = args.resolve().unwrap().trusted_proxies;
        assert!(proxies.len() == 2 && proxies[1].contains(ip("172.31.0.1")));
        args.trusted_proxies = Some("10.0.0.0/8,nope".into());
        let err = args.resolve().unwrap_err().to_string();
        assert!(err.contains("`nope`"), "{err}");
    }

    #[test]
    fn retention_is_kept_forever_unless_set_and_never_zero() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("livechat.toml");
        let args = ServerArgs {
            config: Some(path.clone()),
            ..ServerArgs::default()
        };
        std::fs::write(&path, "listen = \"127.0.0.1:0\"\n").unwrap();
        assert_eq!(args.resolve().unwrap().retention, None);
        std::fs::write(&path, "retention = \"180d\"\n").unwrap();
        let keep = args.resolve().unwrap().retention.unwrap();
        assert_eq!(keep, std::time::Duration::from_secs(180 * 86_400));
        assert_eq!(
            retention_sweep_every(keep),
            std::time::Duration::from_secs(3600)
        );
        assert_eq!(
            retention_sweep_every(std::time::Duration::from_secs(2)),
            std::time::Duration::from_secs(1)
        );
        std::fs::write(&path, "retention = \"0s\"\n").unwrap();
        let err = args.resolve().unwrap_err().to_string();
        assert!(err.contains("longer than zero"), "{err}");
    }

    #[test]
    fn a_visitor_may_send_20_messages_at_once_then_one_a_second_unless_set() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("livechat.toml");
        let args = ServerArgs {
            config: Some(path.clone()),
            ..ServerArgs::default()
        };
        std::fs::write(&path, "listen = \"127.0.0.1:0\"\n").unwrap();
        let limits = args.resolve().unwrap().limits;
        assert_eq!(limits.message_burst, 20);
        assert_eq!(limits.message_refill, std::time::Duration::from_secs(1));
        std::fs::write(
            &path,
            "[limits]\nmessage_burst = 5\nmessage_refill = \"250ms\"\n",
        )
        .unwrap();
        let limits = args.resolve().unwrap().limits;
        assert_eq!(limits.message_burst, 5);
        assert_eq!(limits.message_refill, std::time::Duration::from_millis(250));
        std::fs::write(&path, "[limits]\nmessage_burst = 0\n").unwrap();
        let err = args.resolve().unwrap_err().to_string();
        assert!(err.contains("message_burst must be at least 1"), "{err}");
        std::fs::write(&path, "[limits]\nmessage_refill = \"0s\"\n").unwrap();
        let err = args.resolve().unwrap_err().to_string();
        assert!(err.contains("longer than zero"), "{err}");
    }

    #[test]
    fn synchronous_is_normal_unless_the_store_table_says_full() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("livechat.toml");
        let args = ServerArgs {
            config: Some(path.clone()),
            ..ServerArgs::default()
        };
        std::fs::write(&path, "listen = \"127.0.0.1:0\"\n").unwrap();
        assert_eq!(args.resolve().unwrap().synchronous, Synchronous::Normal);
        std::fs::write(&path, "[store]\nsynchronous = \"full\"\n").unwrap();
        let full = args.resolve().unwrap().synchronous;
        assert_eq!((full, full.pragma()), (Synchronous::Full, "FULL"));
        std::fs::write(&path, "[store]\nsynchronous = \"off\"\n").unwrap();
        let err = args.resolve().unwrap_err().to_string();
        assert!(
            err.contains("livechat.toml") && err.contains("`off` is not a synchronous mode"),
            "{err}"
        );
        std::fs::write(&path, "[store]\nfsync = true\n").unwrap();
        let err = args.resolve().unwrap_err().to_string();
        assert!(err.contains("unknown field `fsync`"), "{err}");
        // The variable's spelling, as the environment gives it.
        assert_eq!("FULL".parse(), Ok(Synchronous::Full));
        assert_eq!(" normal ".parse(), Ok(Synchronous::Normal));
        let err = "extra".parse::<Synchronous>().unwrap_err();
        assert!(err.contains("write `normal` or `full`"), "{err}");
    }
}

/// `low_space_warning`: below this much free space where the database is, the server warns
/// in its log (and `/healthz` and `/metrics` say so).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SpaceThreshold {
    Bytes(u64),
    /// Percent of the file system's size.
    Percent(f64),
}

impl SpaceThreshold {
    pub fn bytes(self, total: u64) -> u64 {
        match self {
            SpaceThreshold::Bytes(n) => n,
            SpaceThreshold::Percent(p) => (total as f64 * p / 100.0) as u64,
        }
    }
}

impl std::str::FromStr for SpaceThreshold {
    type Err = String;

    /// `5%`, `500MB`, `2GiB`, `0` (never warn).
    fn from_str(text: &str) -> Result<SpaceThreshold, String> {
        let text = text.trim();
        if let Some(p) = text.strip_suffix('%') {
            return match p.trim().parse::<f64>() {
                Ok(p) if (0.0..=100.0).contains(&p) => Ok(SpaceThreshold::Percent(p)),
                _ => Err(format!("`{text}` is not a percentage from 0% to 100%")),
            };
        }
        crate::config::values::ByteSize::parse(text)
            .map(SpaceThreshold::Bytes)
            .ok_or_else(|| format!("`{text}`: write a size like 500MB or 2GiB, or 5%"))
    }
}

impl std::fmt::Display for SpaceThreshold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SpaceThreshold::Bytes(n) => write!(f, "{:.1} MB", *n as f64 / 1e6),
            SpaceThreshold::Percent(p) => write!(f, "{p}%"),
        }
    }
}

impl Default for SpaceThreshold {
    fn default() -> Self {
        SpaceThreshold::Percent(5.0)
    }
}

#[cfg(test)]
mod space_tests {
    use super::*;

    #[test]
    fn thresholds_parse_as_sizes_or_percentages() {
        let t = |s: &str| s.parse::<SpaceThreshold>();
        assert_eq!(t("5%"), Ok(SpaceThreshold::Percent(5.0)));
        assert_eq!(t("500MB"), Ok(SpaceThreshold::Bytes(500_000_000)));
        assert_eq!(t("2 GiB"), Ok(SpaceThreshold::Bytes(2 << 30)));
        assert_eq!(t("0"), Ok(SpaceThreshold::Bytes(0)));
        assert!(t("120%").is_err());
        assert!(t("lots").is_err());
        assert!(t("5 parsecs").is_err());
        assert_eq!(SpaceThreshold::Percent(5.0).bytes(1_000), 50);
    }
}

#[cfg(test)]
mod webrtc_tests {
    use super::*;

    fn webrtc(toml: &str) -> Result<Webrtc, SettingsError> {
        resolve_webrtc(&toml::from_str(toml).expect("the test's TOML parses"))
    }

    #[test]
    fn relay_only_needs_a_relay_and_turn_needs_its_secret() {
        let refused = webrtc("relay_only = true").unwrap_err().to_string();
        assert!(refused.contains("`relay_only` needs `turn`"), "{refused}");
        let refused = webrtc(r#"turn = ["turn:t.example:3478"]"#)
            .unwrap_err()
            .to_string();
        assert!(refused.contains("turn_secret"), "{refused}");
        let relayed = webrtc(
            r#"turn = ["turn:t.example:3478"]
               turn_secret = "s"
               relay_only = true"#,
        )
        .unwrap();
        assert!(relayed.relay_only);
        assert!(!webrtc("").unwrap().relay_only);
    }
}
