//! `livechat graph BOT [DIR]`: the bot's flow as Mermaid (default) or Graphviz DOT.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, ValueEnum};

use super::apply::print;
use crate::bottest::graph::{Style, render};
use crate::config;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum GraphFormat {
    #[default]
    Mermaid,
    Dot,
}

#[derive(Debug, Args)]
pub struct GraphArgs {
    /// The bot's id (its file name without `.toml`).
    pub bot: String,
    /// The bundle directory [default: the current directory].
    pub dir: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t)]
    pub format: GraphFormat,
}

pub fn run(args: GraphArgs) -> ExitCode {
    let dir = args.dir.unwrap_or_else(|| PathBuf::from("."));
    let bundle = match config::load_dir(&dir, &config::process_env) {
        Ok(Ok(bundle)) => bundle,
        Ok(Err(diags)) => return super::apply::refused(&dir.display().to_string(), &diags),
        Err(e) => return super::fail(e),
    };
    let Some(bot) = bundle.bots.get(&args.bot) else {
        let ids: Vec<&str> = bundle.bots.keys().map(String::as_str).collect();
        return super::fail(format!(
            "no bot `{}` in {}; it has {}",
            args.bot,
            dir.display(),
            ids.join(", ")
        ));
    };
    let style = match args.format {
        GraphFormat::Mermaid => Style::Mermaid,
        GraphFormat::Dot => Style::Dot,
    };
    print(&render(bot, style));
    ExitCode::SUCCESS
}
