//! `livechat healthcheck`: asks the server at the listen address for `/healthz` and exits 0
//! when it answers `ok`, else 1 (a container HEALTHCHECK's "unhealthy"; Docker reserves 2).
//! For images and scripts that have no curl. A bundle edit that was refused is no failure:
//! the server keeps running the last good revision.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::process::ExitCode;
use std::time::Duration;

use crate::settings::ServerArgs;

pub fn run(args: &ServerArgs) -> ExitCode {
    let unhealthy = |message: String| {
        eprintln!("unhealthy: {message}");
        ExitCode::from(1)
    };
    let settings = match args.resolve() {
        Ok(settings) => settings,
        Err(e) => return unhealthy(e.to_string()),
    };
    // A server listening on every address is asked on loopback.
    let mut addr = settings.listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        });
    }
    let url = format!("http://{addr}/healthz");
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into();
    let text = match agent.get(&url).call() {
        Ok(mut response) => response.body_mut().read_to_string().unwrap_or_default(),
        Err(e) => return unhealthy(format!("{url}: {e}")),
    };
    let status = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|health| health["status"].as_str().map(str::to_string));
    match status.as_deref() {
        Some("ok") => {
            println!("ok: {url}");
            ExitCode::SUCCESS
        }
        _ => unhealthy(format!("{url} answered {text}")),
    }
}
