//! `livechat serve`: run the server until Ctrl-C or SIGTERM.

use std::process::ExitCode;

use crate::http::AppState;
use crate::server;
use crate::settings::ServerArgs;

pub fn run(args: &ServerArgs) -> ExitCode {
    init_logging();
    let settings = match args.resolve() {
        Ok(s) => s,
        Err(e) => return super::fail(e),
    };
    let runtime = match tokio::runtime::Runtime::new() {
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
        match server::serve(listener, state, server::shutdown_signal()).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => super::fail(e),
        }
    })
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("LIVECHAT_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
