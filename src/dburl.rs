//! The database URL of a replica (`database_url`, #17) and TLS to PostgreSQL.
//!
//! A URL is read as libpq reads one, as far as TLS goes: `sslmode` is `disable`, `prefer`
//! (the default), `require`, `verify-ca` or `verify-full`, and `sslrootcert=PATH` names the
//! certificates (PEM) of the authorities to trust (`sslrootcert=system`: the Mozilla roots
//! built in). tokio-postgres knows only the first three modes and no `sslrootcert`, so both
//! are taken out of the URL here before its parser reads the rest; the connections are then
//! made through rustls with a verifier that does what the mode says:
//!
//! | mode | TLS | certificate |
//! |---|---|---|
//! | `disable` | never | — |
//! | `prefer` | if the server offers it, else plain | not verified (as libpq), unless `sslrootcert` is given: then its chain is |
//! | `require` | always | not verified (as libpq), unless `sslrootcert` is given: then its chain is |
//! | `verify-ca` | always | signed by a root of `sslrootcert` |
//! | `verify-full` | always | signed by a root of `sslrootcert`, and made out to the host of the URL |
//!
//! A URL carries a password: [`redact`] is the form every message and log line shows.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres::config::SslMode as ClientSslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

/// libpq's `sslmode`, the modes this build supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(text: &str) -> Result<SslMode, String> {
        match text {
            "disable" => Ok(SslMode::Disable),
            "prefer" => Ok(SslMode::Prefer),
            "require" => Ok(SslMode::Require),
            "verify-ca" => Ok(SslMode::VerifyCa),
            "verify-full" => Ok(SslMode::VerifyFull),
            _ => Err(format!(
                "sslmode `{text}` is not supported: write disable, prefer, require, verify-ca \
                 or verify-full"
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

/// Where the trusted authorities come from (`sslrootcert`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootCert {
    File(PathBuf),
    /// `sslrootcert=system`: the Mozilla roots (webpki-roots) built into the binary.
    System,
}

/// A database URL read and checked: the client's settings, the TLS mode and its roots, and
/// the URL with its password hidden.
#[derive(Clone)]
pub struct DbUrl {
    config: tokio_postgres::Config,
    mode: SslMode,
    root: Option<RootCert>,
    redacted: String,
}

impl std::fmt::Debug for DbUrl {
    /// The redacted URL only: a `Settings` printed with `{:?}` must not show the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbUrl")
            .field("url", &self.redacted)
            .field("sslmode", &self.mode)
            .field("sslrootcert", &self.root)
            .finish()
    }
}

impl DbUrl {
    /// Reads `text`: a URL (`postgres://user:password@host:port/db?sslmode=…`) or libpq's
    /// key=value form (`host=… user=… sslmode=…`, whose values here must not contain spaces
    /// when they are `sslmode` or `sslrootcert`). The error names the URL redacted, never
    /// whole.
    pub fn parse(text: &str) -> Result<DbUrl, String> {
        let text = text.trim();
        let redacted = redact(text);
        let url_form = text.starts_with("postgres://") || text.starts_with("postgresql://");
        let (rest, tls) = if url_form {
            take_tls_params_url(text)
        } else {
            take_tls_params_keywords(text)
        };
        let (mode, root) = tls.map_err(|message| format!("{redacted}: {message}"))?;
        let mode = mode.unwrap_or(SslMode::Prefer);
        if matches!(mode, SslMode::VerifyCa | SslMode::VerifyFull) && root.is_none() {
            return Err(format!(
                "{redacted}: sslmode={} needs sslrootcert=PATH (the certificate of the \
                 authority that signed the server's, PEM) or sslrootcert=system",
                mode.as_str()
            ));
        }
        let mut config: tokio_postgres::Config = rest
            .parse()
            .map_err(|e| format!("{redacted} cannot be read: {e}"))?;
        config.ssl_mode(match mode {
            SslMode::Disable => ClientSslMode::Disable,
            SslMode::Prefer => ClientSslMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => ClientSslMode::Require,
        });
        let url = DbUrl {
            config,
            mode,
            root,
            redacted,
        };
        // The roots are read now, so that a missing or empty file is an error of the
        // settings (`validate`, the start), not of the first connection.
        url.tls()?;
        Ok(url)
    }

    /// The client's settings, without the TLS parameters (see [`DbUrl::tls`]).
    pub fn config(&self) -> &tokio_postgres::Config {
        &self.config
    }

    pub fn sslmode(&self) -> SslMode {
        self.mode
    }

    /// The URL with its password replaced by `***`.
    pub fn redacted(&self) -> &str {
        &self.redacted
    }

    /// The TLS connector every connection to this database is made with (the pool's, the
    /// committers' taken from it, a listener's of its own): rustls, verifying as the mode
    /// says. With `disable` the client never asks for TLS and the connector is not used.
    pub fn tls(&self) -> Result<MakeRustlsConnect, String> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let verifier: Arc<dyn ServerCertVerifier> = match (&self.root, self.mode) {
            (None, _) | (Some(_), SslMode::Disable) => Arc::new(Unverified(provider.clone())),
            (Some(root), mode) => {
                let roots = roots(root).map_err(|e| format!("{}: {e}", self.redacted))?;
                let webpki =
                    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                        .build()
                        .map_err(|e| format!("{}: sslrootcert: {e}", self.redacted))?;
                if mode == SslMode::VerifyFull {
                    webpki
                } else {
                    Arc::new(ChainOnly(webpki))
                }
            }
        };
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        Ok(MakeRustlsConnect::new(config))
    }
}

/// The TLS parameters read out of a URL, or why they are refused.
type TlsParams = Result<(Option<SslMode>, Option<RootCert>), String>;

/// Takes `sslmode` and `sslrootcert` out of a URL's query; answers the rest of the URL.
fn take_tls_params_url(text: &str) -> (String, TlsParams) {
    let Some((base, query)) = text.split_once('?') else {
        return (text.to_string(), Ok((None, None)));
    };
    let mut kept = Vec::new();
    let mut params = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "sslmode" | "sslrootcert" | "sslcert" | "sslkey" => {
                params.push((key.to_string(), percent_decode(value)))
            }
            _ => kept.push(pair),
        }
    }
    let rest = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    (rest, tls_params(params))
}

/// Takes `sslmode` and `sslrootcert` out of libpq's key=value form; the rest is given back
/// unchanged when there is nothing to take.
fn take_tls_params_keywords(text: &str) -> (String, TlsParams) {
    let is_tls = |word: &str| {
        ["sslmode=", "sslrootcert=", "sslcert=", "sslkey="]
            .iter()
            .any(|key| word.starts_with(key))
    };
    if !text.split_whitespace().any(is_tls) {
        return (text.to_string(), Ok((None, None)));
    }
    let mut kept = Vec::new();
    let mut params = Vec::new();
    for word in text.split_whitespace() {
        match word.split_once('=') {
            Some((key, value)) if is_tls(word) => {
                params.push((key.to_string(), value.trim_matches('\'').to_string()))
            }
            _ => kept.push(word),
        }
    }
    (kept.join(" "), tls_params(params))
}

fn tls_params(params: Vec<(String, String)>) -> TlsParams {
    let mut mode = None;
    let mut root = None;
    for (key, value) in params {
        match key.as_str() {
            "sslmode" => mode = Some(SslMode::parse(&value)?),
            "sslrootcert" if value == "system" => root = Some(RootCert::System),
            "sslrootcert" if value.is_empty() => return Err("sslrootcert is empty".into()),
            "sslrootcert" => root = Some(RootCert::File(PathBuf::from(value))),
            _ => {
                return Err(format!(
                    "{key}: client certificates are not supported (sslcert, sslkey); \
                     use a password"
                ));
            }
        }
    }
    Ok((mode, root))
}

/// `%XX` escapes of a URL's value decoded (a path with spaces, say); a `%` not followed by
/// two hexadecimal digits is kept as it is.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The trusted roots of `sslrootcert`.
fn roots(root: &RootCert) -> Result<RootCertStore, String> {
    let mut store = RootCertStore::empty();
    match root {
        RootCert::System => store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        RootCert::File(path) => {
            let certs = read_pem(path)?;
            let (added, _ignored) = store.add_parsable_certificates(certs);
            if added == 0 {
                return Err(format!(
                    "sslrootcert {} holds no certificate this build can use",
                    path.display()
                ));
            }
        }
    }
    Ok(store)
}

fn read_pem(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let cannot = |e: &dyn std::fmt::Display| format!("sslrootcert {}: {e}", path.display());
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| cannot(&e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| cannot(&e))?;
    if certs.is_empty() {
        return Err(cannot(&"no PEM certificate in it"));
    }
    Ok(certs)
}

/// `prefer` and `require` without roots, as libpq: the connection is encrypted, the server's
/// certificate is not checked (anyone on the path can pose as the server). The handshake's
/// signatures are still verified, so the session is with the holder of the certificate's
/// key.
#[derive(Debug)]
struct Unverified(Arc<CryptoProvider>);

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `verify-ca` (and `prefer`/`require` with roots, as libpq): the chain must lead to a
/// trusted root, the name on the certificate is not compared with the host. webpki checks
/// the chain before the name, so a name mismatch is reported only for a trusted chain.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// `text` with its password replaced by `***`: the one after `user:` in a URL's user
/// information (`postgres://user:***@host/db`), and a `password` parameter's value in the
/// query or in the key=value form. Anything else is kept, so that the host, port, database
/// and parameters still say which database was meant.
pub fn redact(text: &str) -> String {
    let text = text.trim();
    let Some(scheme_end) = text.find("://") else {
        return text
            .split_whitespace()
            .map(|word| match word.split_once('=') {
                Some(("password", _)) => "password=***",
                _ => word,
            })
            .collect::<Vec<_>>()
            .join(" ");
    };
    let (scheme, after) = text.split_at(scheme_end + 3);
    // tokio-postgres takes the user information up to the first `@`; so does this.
    let (userinfo, rest) = match after.split_once('@') {
        Some((userinfo, rest)) => (Some(userinfo), rest),
        None => (None, after),
    };
    let mut out = scheme.to_string();
    if let Some(userinfo) = userinfo {
        match userinfo.split_once(':') {
            Some((user, _)) => out.push_str(&format!("{user}:***@")),
            None => out.push_str(&format!("{userinfo}@")),
        }
    }
    match rest.split_once('?') {
        Some((base, query)) => {
            out.push_str(base);
            out.push('?');
            let params: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some(("password", _)) => "password=***".to_string(),
                    _ => pair.to_string(),
                })
                .collect();
            out.push_str(&params.join("&"));
        }
        None => out.push_str(rest),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_hidden_wherever_a_url_carries_one() {
        assert_eq!(
            redact("postgres://chat:s3cret@db.example:5432/livechat?sslmode=require"),
            "postgres://chat:***@db.example:5432/livechat?sslmode=require"
        );
        assert_eq!(
            redact("postgresql://chat@db/livechat?password=s3cret&sslmode=verify-full"),
            "postgresql://chat@db/livechat?password=***&sslmode=verify-full"
        );
        assert_eq!(redact("postgres://db/livechat"), "postgres://db/livechat");
        assert_eq!(
            redact("host=/run/pg user=chat password=s3cret dbname=x"),
            "host=/run/pg user=chat password=*** dbname=x"
        );
        // A password holding `@` or `:` unescaped: still nothing of it shown.
        let odd = redact("postgres://chat:p:a@ss@db/x");
        assert!(
            !odd.contains("p:a") && odd.starts_with("postgres://chat:***@"),
            "{odd}"
        );
    }

    #[test]
    fn sslmode_and_sslrootcert_are_taken_out_before_the_client_reads_the_url() {
        let url =
            DbUrl::parse("postgres://chat:pw@db.example:6432/livechat?application_name=a").unwrap();
        assert_eq!(url.sslmode(), SslMode::Prefer);
        assert_eq!(url.config().get_ssl_mode(), ClientSslMode::Prefer);
        assert_eq!(url.config().get_ports(), &[6432]);
        assert_eq!(url.config().get_application_name(), Some("a"));
        let url = DbUrl::parse("postgres://chat@db/livechat?sslmode=disable").unwrap();
        assert_eq!(url.config().get_ssl_mode(), ClientSslMode::Disable);
        let url = DbUrl::parse("postgresql://chat@db/livechat?sslmode=require").unwrap();
        assert_eq!(url.config().get_ssl_mode(), ClientSslMode::Require);
        let url =
            DbUrl::parse("postgres://chat@db/livechat?sslmode=verify-full&sslrootcert=system")
                .unwrap();
        assert_eq!(url.sslmode(), SslMode::VerifyFull);
        assert_eq!(url.config().get_ssl_mode(), ClientSslMode::Require);
        assert_eq!(url.config().get_dbname(), Some("livechat"));
        let url =
            DbUrl::parse("host=/run/pg user=chat sslmode=verify-ca sslrootcert=system").unwrap();
        assert_eq!(url.sslmode(), SslMode::VerifyCa);
        assert_eq!(url.config().get_user(), Some("chat"));
    }

    #[test]
    fn what_cannot_be_honoured_is_refused_with_the_url_redacted() {
        let err = |text: &str| DbUrl::parse(text).err().unwrap();
        let e = err("postgres://chat:pw@db/x?sslmode=verify-full");
        assert!(
            e.contains("needs sslrootcert") && e.starts_with("postgres://chat:***@db/x"),
            "{e}"
        );
        assert!(!e.contains(":pw@"), "{e}");
        let e = err("postgres://chat:pw@db/x?sslmode=allow");
        assert!(e.contains("sslmode `allow` is not supported"), "{e}");
        let e = err("postgres://chat:pw@db/x?sslmode=require&sslcert=/c.pem");
        assert!(e.contains("client certificates"), "{e}");
        let e = err("postgres://chat:pw@db:port/x");
        assert!(e.contains("cannot be read") && !e.contains(":pw@"), "{e}");
        let e = err("postgres://chat:pw@db/x?sslmode=verify-ca&sslrootcert=/nonexistent/ca.pem");
        assert!(e.contains("sslrootcert /nonexistent/ca.pem"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty ca.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let e = err(&format!(
            "postgres://chat@db/x?sslmode=verify-ca&sslrootcert={}",
            empty.display().to_string().replace(' ', "%20")
        ));
        assert!(e.contains("no PEM certificate"), "{e}");
    }
}
