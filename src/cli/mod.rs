//! The command line: one file per subcommand; `main.rs` only dispatches here.
//!
//! Exit codes: 0 success, 1 the input is invalid (a bundle with errors, a refused apply, a
//! failed test case, a file that is not a livechat database, a backup that would overwrite a
//! file),
//! 2 the command could not run (unreadable directory, database error, bad flags), 3 the data
//! directory is in use: a server runs on it (`restore`, `visitor erase`).

mod agent;
mod apply;
mod backup;
mod db;
mod graph;
mod healthcheck;
mod history;
mod init;
mod restore;
mod rollback;
mod send_test_email;
mod serve;
mod test;
mod try_;
mod validate;
mod visitor;

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::settings::ServerArgs;

#[derive(Debug, Parser)]
#[command(
    name = "livechat",
    version,
    about = "A self-hosted live chat appliance"
)]
pub struct Cli {
    #[command(flatten)]
    pub server: ServerArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum Format {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server on the live bundle, reloading it when it changes.
    Serve,
    /// Check a bundle and report every error as file:line:col.
    Validate {
        /// The bundle directory [default: the live bundle directory].
        dir: Option<std::path::PathBuf>,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Show the plan for a bundle, run its tests and install it as a new revision.
    Apply(apply::ApplyArgs),
    /// Run the bundle's test cases (`DIR/tests/*.toml`) through the conversation core.
    Test(test::TestArgs),
    /// Talk to a bot in the terminal (a script on standard input); `:save` writes a case.
    Try(try_::TryArgs),
    /// Draw a bot's flow as Mermaid or Graphviz DOT.
    Graph(graph::GraphArgs),
    /// List the installed revisions.
    History {
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Install an earlier revision again (as a new revision).
    Rollback {
        /// The revision number to bring back.
        revision: i64,
        /// Show the plan without installing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Agents' passwords: `agent password EMAIL`, `agent list`.
    Agent(agent::AgentArgs),
    /// Send a test mail now through the configured transport (SMTP or files).
    SendTestEmail {
        /// Where to send it.
        address: String,
    },
    /// Ask the running server for /healthz: exit 0 when it is up, 1 when not.
    Healthcheck,
    /// Copy the database into FILE, consistently, while the server runs.
    Backup {
        /// Where to write the copy (a temporary file beside it is renamed to it).
        file: std::path::PathBuf,
        /// Overwrite FILE if it exists.
        #[arg(long)]
        force: bool,
    },
    /// Replace the database with a backup; the server must be stopped.
    Restore {
        /// A file written by `livechat backup`.
        file: std::path::PathBuf,
    },
    /// A visitor's personal data: `visitor export ID`, `visitor erase ID`.
    Visitor(visitor::VisitorArgs),
    /// Write a commented starter bundle into DIR.
    Init {
        dir: std::path::PathBuf,
        /// Overwrite files that already exist.
        #[arg(long)]
        force: bool,
    },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve => serve::run(&cli.server),
        Command::Validate { dir, format } => validate::run(&cli.server, dir, format),
        Command::Apply(args) => apply::run(&cli.server, args),
        Command::Test(args) => test::run(args),
        Command::Try(args) => try_::run(args),
        Command::Graph(args) => graph::run(args),
        Command::History { format } => history::run(&cli.server, format),
        Command::Rollback { revision, dry_run } => rollback::run(&cli.server, revision, dry_run),
        Command::Init { dir, force } => init::run(&dir, force),
        Command::SendTestEmail { address } => send_test_email::run(&cli.server, &address),
        Command::Agent(args) => agent::run(&cli.server, args),
        Command::Healthcheck => healthcheck::run(&cli.server),
        Command::Backup { file, force } => backup::run(&cli.server, &file, force),
        Command::Restore { file } => restore::run(&cli.server, &file),
        Command::Visitor(args) => visitor::run(&cli.server, args),
    }
}

/// Prints an error the way every subcommand does and gives exit code 2.
pub(crate) fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(2)
}
