//! `livechat serve`: run the server until Ctrl-C or SIGTERM.

use std::process::ExitCode;

use std::io::IsTerminal;

use crate::http::AppState;
use crate::mail::invites::FirstRun;
use crate::server;
use crate::settings::{LogFormat, ServerArgs};
use crate::store::lock::DataDirLock;

/// Threads for blocking work (the default is 512).
const MAX_BLOCKING_THREADS: usize = 32;

pub fn run(server: &ServerArgs) -> ExitCode {
    // `--database-url` is one of the shared flags (`ServerArgs`): every command that works
    // on the database resolves it the same way.
    let settings = match server.resolve() {
        Ok(s) => s,
        Err(e) => return super::fail(e),
    };
    init_logging(settings.log_format);
    // Held until the server has stopped: `livechat restore` refuses while it is, and a second
    // server on the same database is refused here.
    let _owner = match DataDirLock::try_acquire(&settings.data_dir) {
        Ok(lock) => lock,
        Err(e) => return super::fail(e),
    };
    // Blocking work (file writes of uploads, reads of the store, previews) queues for at
    // most this many threads: a burst of uploads otherwise starts a thread per upload, and
    // each one's stack and allocator arena stays in the server's memory afterwards.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(MAX_BLOCKING_THREADS)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return super::fail(format!("cannot start the async runtime: {e}")),
    };
    runtime.block_on(async move {
        let listener = match tokio::net::TcpListener::bind(settings.listen).await {
            Ok(l) => l,
            Err(e) => return super::fail(format!("cannot listen on {}: {e}", settings.listen)),
        };
        let addr = match listener.local_addr() {
            Ok(a) => a,
            Err(e) => return super::fail(e),
        };
        let mut settings = settings;
        if !settings.public_url_set {
            // Links in mail must work: name the port actually bound (`:0` picks one).
            let host = if addr.ip().is_unspecified() {
                tracing::warn!(
                    "listening on all addresses without `public_url`: links in mail say \
                     127.0.0.1; set public_url in livechat.toml"
                );
                std::net::SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), addr.port())
            } else {
                addr
            };
            settings.public_url = format!("http://{host}");
        }
        let (bots_dir, data_dir) = (settings.bots_dir.clone(), settings.data_dir.clone());
        let state = match AppState::open(settings).await {
            Ok(state) => state,
            Err(e) => return super::fail(e),
        };
        // Tests and scripts read this line to learn the port when listening on :0.
        println!(
            "livechat listening on http://{addr} (bots: {}, data: {})",
            bots_dir.display(),
            data_dir.display()
        );
        first_run(&state).await;
        match server::serve(listener, state, server::shutdown_signal()).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => super::fail(e),
        }
    })
}

/// On a data directory where no agent of the bundle can sign in yet: a one-time link for
/// the first admin to choose a password, on standard output (after the `listening` line,
/// which scripts read first) and in the log. Invitations by mail go out as well; the link
/// only spares the newcomer from looking for them.
async fn first_run(state: &AppState) {
    let roster = state.live.load().bundle.roster.clone();
    let outbound = state.engine.outbound().clone();
    // The mailed invitations first, so that the setup link (an invitation too) never
    // stands in for the admin's mail.
    let store = state.store();
    let answer = match store.invite_new_agents(&roster, &outbound).await {
        Ok(queued) => store
            .first_run(&roster, &outbound.public_url, jiff::Timestamp::now())
            .await
            .map(|first| (queued, first)),
        Err(e) => Err(e),
    };
    match answer {
        Ok((queued, first)) => {
            if queued > 0 {
                tracing::info!("invited {queued} new agent(s) by mail");
                state.engine.outbound().doorbell.ring();
            }
            match first {
                FirstRun::SomeoneCanSignIn => {}
                FirstRun::NoAdmin => {
                    let text = "livechat setup: no agent can sign in yet and agents.toml names \
                                no admin; set a password with `livechat agent password EMAIL`";
                    println!("{text}");
                    tracing::warn!("{text}");
                }
                FirstRun::SetupLink {
                    email,
                    link,
                    expires_at,
                } => {
                    let until = expires_at.strftime("%H:%M UTC");
                    println!(
                        "livechat setup: open {link} to choose the password of {email} \
                         (admin); the link works once, until {until}"
                    );
                    tracing::info!(
                        "first run: nobody can sign in yet; setup link for {email} (admin), \
                         valid once until {until}: {link}"
                    );
                }
            }
        }
        Err(e) => tracing::error!("cannot make the first-run setup link: {e}"),
    }
}

/// Logs go to standard error: colours only when it is a terminal (not in a file or a
/// journal), or one JSON object a line for log shippers.
fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("LIVECHAT_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
        LogFormat::Json => builder.json().with_ansi(false).try_init(),
    };
}
