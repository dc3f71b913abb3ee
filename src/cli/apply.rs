//! `livechat apply`: validate, show the plan, install as a new revision — into the live
//! bundle directory and the store (`cli::db`: SQLite in the data directory, or PostgreSQL of
//! `database_url`), or on a remote server through its admin API (`--server`).

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use serde::Deserialize;

use crate::config::{self, Bundle, Diagnostic, Sources};
use crate::deploy::ApplyOutcome;
use crate::settings::ServerArgs;
use crate::store::revisions::short_hash;

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// The bundle to apply [default: the current directory].
    pub dir: Option<PathBuf>,
    /// Show the plan, install nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Upload to a running server's admin API instead of installing locally.
    #[arg(long, requires = "token")]
    pub server: Option<String>,
    /// The server's admin token (see `admin_token` in livechat.toml).
    #[arg(long, env = "LIVECHAT_ADMIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Install even if the bundle's test cases (`DIR/tests/*.toml`) fail.
    #[arg(long)]
    pub skip_tests: bool,
}

pub fn run(server: &ServerArgs, args: ApplyArgs) -> ExitCode {
    let dir = args.dir.unwrap_or_else(|| PathBuf::from("."));
    let shown = dir.display().to_string();
    if let Some(url) = &args.server {
        let token = args.token.as_deref().unwrap_or_default();
        return upload(url, token, &dir, args.dry_run, args.skip_tests);
    }
    let bundle = match config::load_dir(&dir, &config::process_env) {
        Ok(Ok(bundle)) => bundle,
        Ok(Err(diags)) => return refused(&shown, &diags),
        Err(e) => return super::fail(e),
    };
    let tests = match tests_line(&dir, &bundle, args.skip_tests) {
        Ok(line) => line,
        Err(code) => return code,
    };
    let settings = match server.resolve() {
        Ok(settings) => settings,
        Err(e) => return super::fail(e),
    };
    let runtime = match super::db::runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    runtime.block_on(async {
        let store = match super::db::open(&settings, super::db::Missing::Create).await {
            Ok(Some(store)) => store,
            Ok(None) => return super::fail("no database"),
            Err(e) => return super::fail(e),
        };
        let applied = store
            .apply_bundle(&settings.bots_dir, bundle, "apply", None, args.dry_run)
            .await;
        match applied {
            Ok(outcome) => {
                print(&report(&shown, &settings.bots_dir, &outcome, args.dry_run));
                print(&tests);
                if settings.database.is_some() && !args.dry_run && !outcome.unchanged {
                    print(super::db::REPLICAS_NOTE);
                }
                ExitCode::SUCCESS
            }
            Err(e) => super::fail(e),
        }
    })
}

/// Runs the bundle's test cases before it is installed: the line the summary ends with, or
/// the exit code of a refusal (a case failed, or a test file has errors: 1).
fn tests_line(dir: &Path, bundle: &Bundle, skip: bool) -> Result<String, ExitCode> {
    let shown = dir.display().to_string();
    match super::test::run_suite(dir, bundle) {
        // A bundle without cases: nothing to say.
        Ok(suite) if suite.results.is_empty() => Ok(String::new()),
        Ok(suite) if suite.failed() == 0 => {
            Ok(format!("Tests: {}.\n", super::test::summary(&suite)))
        }
        Ok(suite) if skip => Ok(format!(
            "Tests: {} — installed anyway (--skip-tests).\n",
            super::test::summary(&suite)
        )),
        Ok(suite) => {
            let mut out = super::test::text_report(&shown, &suite);
            let failed: Vec<String> = suite
                .results
                .iter()
                .filter(|r| !r.passed)
                .map(|r| format!("`{}`", r.name))
                .collect();
            out.push_str(&format!(
                "error: {} of the bundle's test cases failed ({}); nothing was installed (--skip-tests to install anyway)\n",
                failed.len(),
                failed.join(", ")
            ));
            let _ = io::stderr().lock().write_all(out.as_bytes());
            Err(ExitCode::from(1))
        }
        Err(_) if skip => Ok("Tests: skipped (--skip-tests).\n".into()),
        Err(super::test::NotRun::Invalid(diags)) => Err(refused(&shown, &diags)),
        Err(super::test::NotRun::Other(e)) => Err(super::fail(e)),
    }
}

/// Writes to stdout; a closed pipe (`livechat history | head`) is not worth a panic.
pub(super) fn print(text: &str) {
    let _ = io::stdout().lock().write_all(text.as_bytes());
}

fn render_all(dir: &str, diags: &[Diagnostic]) -> String {
    let mut out = String::new();
    for d in diags {
        out.push_str(&d.render(dir));
        out.push('\n');
    }
    out
}

/// Prints a bundle's errors, and gives exit code 1.
pub(super) fn refused(dir: &str, diags: &[Diagnostic]) -> ExitCode {
    let mut out = render_all(dir, diags);
    let errors = if diags.len() == 1 { "error" } else { "errors" };
    let place = if dir.is_empty() {
        String::new()
    } else {
        format!(" in {dir}")
    };
    out.push_str(&format!(
        "error: {} {errors}{place}; nothing was installed\n",
        diags.len()
    ));
    let _ = io::stderr().lock().write_all(out.as_bytes());
    ExitCode::from(1)
}

/// What an apply or rollback of `what` did: the plan, and the revision it became.
pub(super) fn report(what: &str, bots_dir: &Path, outcome: &ApplyOutcome, dry_run: bool) -> String {
    if outcome.unchanged {
        let number = outcome.revision.as_ref().map_or(0, |r| r.number);
        return format!("No changes: {what} is identical to revision {number}.\n");
    }
    let mut out = match &outcome.base {
        Some(base) => format!("Plan for {what} against revision {}:\n", base.number),
        None => format!(
            "Plan for {what} against {} (no revision yet):\n",
            bots_dir.display()
        ),
    };
    for line in outcome.plan.lines() {
        out.push_str(&format!("  {line}\n"));
    }
    match &outcome.revision {
        Some(revision) if !dry_run => out.push_str(&format!(
            "Applied revision {} ({}) to {}.\n",
            revision.number,
            revision.short_hash(),
            bots_dir.display()
        )),
        _ => out.push_str("Dry run: nothing was installed.\n"),
    }
    out
}

// ---- Remote: `--server URL --token T` ----

/// `200` from `POST /api/v1/admin/config`.
#[derive(Debug, Deserialize)]
struct Applied {
    plan: Vec<String>,
    unchanged: bool,
    revision: Option<AppliedRevision>,
}

#[derive(Debug, Deserialize)]
struct AppliedRevision {
    number: i64,
    hash: String,
}

/// Any refusal: `{"error": {"code", "message", "diagnostics"?}}`.
#[derive(Debug, Deserialize)]
struct Refusal {
    error: RefusalBody,
}

#[derive(Debug, Deserialize)]
struct RefusalBody {
    code: String,
    message: String,
    #[serde(default)]
    diagnostics: Vec<RemoteDiagnostic>,
}

#[derive(Debug, Deserialize)]
struct RemoteDiagnostic {
    file: String,
    line: usize,
    column: usize,
    message: String,
}

/// Uploads the bundle in `dir`; the server validates it again with its own environment,
/// where the `${VAR}` secrets are set, and answers with the plan.
fn upload(url: &str, token: &str, dir: &Path, dry_run: bool, skip_tests: bool) -> ExitCode {
    let shown = dir.display().to_string();
    let sources = match config::read_dir(dir) {
        Ok((sources, diags)) if diags.is_empty() => sources,
        Ok((_, diags)) => return refused(&shown, &diags),
        Err(e) => return super::fail(e),
    };
    // Everything but the secrets can be checked here, without a round trip.
    let any_secret = |_: &str| Some(String::new());
    let local = match Bundle::from_sources(sources.clone(), &any_secret) {
        Ok(bundle) => bundle,
        Err(diags) => return refused(&shown, &diags),
    };
    let tests = match tests_line(dir, &local, skip_tests) {
        Ok(line) => line,
        Err(code) => return code,
    };
    let base = url.trim_end_matches('/');
    if base.starts_with("http://") && !is_loopback_url(base) {
        eprintln!("warning: {base} is plain http: the admin token travels unencrypted");
    }
    let endpoint = format!("{base}/api/v1/admin/config");
    let body = serde_json::json!({ "files": &sources, "dry_run": dry_run }).to_string();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        // 4xx answers carry the reasons in their body: read them, do not fail on them.
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into();
    let response = agent
        .post(&endpoint)
        .header("Authorization", &format!("Bearer {token}"))
        .content_type("application/json")
        .send(body);
    let mut response = match response {
        Ok(response) => response,
        Err(e) => return super::fail(format!("cannot reach {base}: {e}")),
    };
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap_or_default();
    if status == 200 {
        return match serde_json::from_str::<Applied>(&text) {
            Ok(applied) => {
                print(&remote_report(&shown, base, &applied, dry_run));
                print(&tests);
                ExitCode::SUCCESS
            }
            Err(e) => super::fail(format!("{base} answered with something unexpected: {e}")),
        };
    }
    let refusal = serde_json::from_str::<Refusal>(&text).ok();
    let code = if (400..500).contains(&status) { 1 } else { 2 };
    match refusal {
        Some(Refusal { error }) if !error.diagnostics.is_empty() => {
            let diags: Vec<Diagnostic> = error
                .diagnostics
                .into_iter()
                .map(|d| local_diagnostic(&sources, d))
                .collect();
            eprint!("{}", render_all(&shown, &diags));
            eprintln!(
                "error: {base} refused the bundle: {}; nothing was installed",
                error.message
            );
        }
        Some(Refusal { error }) => {
            eprintln!(
                "error: {base} refused ({status} {}): {}",
                error.code, error.message
            );
        }
        None => {
            let snippet: String = text.chars().take(200).collect();
            eprintln!("error: {base} answered {status}: {snippet}");
        }
    }
    ExitCode::from(code)
}

/// A diagnostic from the server, with the line it points at taken from the local file.
fn local_diagnostic(sources: &Sources, d: RemoteDiagnostic) -> Diagnostic {
    let source_line = sources
        .get(&d.file)
        .and_then(|text| text.lines().nth(d.line.saturating_sub(1)))
        .unwrap_or_default()
        .to_string();
    Diagnostic {
        file: d.file,
        line: d.line.max(1),
        column: d.column.max(1).min(source_line.chars().count() + 1),
        message: d.message,
        source_line,
        width: 1,
    }
}

fn remote_report(what: &str, server: &str, applied: &Applied, dry_run: bool) -> String {
    let number = applied.revision.as_ref().map(|r| r.number);
    if applied.unchanged {
        return format!(
            "No changes: {what} is identical to revision {} on {server}.\n",
            number.unwrap_or(0)
        );
    }
    let mut out = format!("Plan for {what} on {server}:\n");
    for line in &applied.plan {
        out.push_str(&format!("  {line}\n"));
    }
    match &applied.revision {
        Some(revision) if !dry_run => out.push_str(&format!(
            "Applied revision {} ({}) on {server}.\n",
            revision.number,
            short_hash(&revision.hash)
        )),
        _ => out.push_str("Dry run: nothing was installed.\n"),
    }
    out
}

fn is_loopback_url(url: &str) -> bool {
    let rest = url.trim_start_matches("http://");
    let host = rest.split(['/', '?']).next().unwrap_or_default();
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host.split(':').next().unwrap_or_default(),
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}
