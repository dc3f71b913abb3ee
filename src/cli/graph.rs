//! `livechat graph BOT [DIR]`: the bot's flow as Mermaid (default) or Graphviz DOT.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, ValueEnum};

use super::apply::print;
use crate::bottest::graph::{Style, render};
use crate::config::load::{FileCtx, parse_bot};

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

/// Draws the bot from its own file: a bot the rest of the bundle does not validate with
/// yet (an unreachable step, say) can still be drawn, its unreachable steps marked.
pub fn run(args: GraphArgs) -> ExitCode {
    let dir = args.dir.unwrap_or_else(|| PathBuf::from("."));
    let file = format!("{}.toml", args.bot);
    let path = dir.join(&file);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) => return super::fail(format!("cannot read {}: {e}", path.display())),
    };
    let mut ctx = FileCtx::new(&file, &text);
    let bot = parse_bot(&mut ctx);
    let Some(bot) = bot.filter(|_| ctx.diags.is_empty()) else {
        for d in &ctx.diags {
            eprintln!("{}", d.render(&dir.display().to_string()));
        }
        eprintln!("error: {file} has errors; no graph was drawn");
        return ExitCode::from(1);
    };
    let style = match args.format {
        GraphFormat::Mermaid => Style::Mermaid,
        GraphFormat::Dot => Style::Dot,
    };
    print(&render(&bot, style));
    ExitCode::SUCCESS
}
