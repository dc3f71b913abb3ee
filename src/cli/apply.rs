//! `livechat apply`: validate, show the plan, install as a new revision.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::settings::ServerArgs;

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
    #[arg(long, env = "LIVECHAT_ADMIN_TOKEN")]
    pub token: Option<String>,
}

pub fn run(_server: &ServerArgs, _args: ApplyArgs) -> ExitCode {
    super::fail("apply is not built yet")
}
