//! `livechat-bench`: a load generator for livechat. It speaks only the public v1 API, over
//! real HTTP and WebSockets on loopback, to a server it starts itself (or one given with
//! `--url`), and prints figures: delivery latency, accept races, messages stored per second,
//! reconnect replay, memory per socket, reload and startup times. A benchmark prints
//! figures; it fails (exit 2) only when a correctness check fails — a lost, duplicated or
//! reordered message, an accept race with other than one winner, a dropped socket.
//!
//! Every module refers to its siblings through `super::`, never `crate::`: the root
//! package's `tests/bench_smoke.rs` compiles this file as a module of its own, so that plain
//! `cargo test` runs a short bench.

mod chat;
mod client;
mod idle;
mod machine;
mod ramp;
mod report;
mod server;
mod socketio;
mod startup;
mod stats;
mod store;
mod uploads;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};

use chat::{ChatOpts, ReloadOpts};
use client::SendPath;
use idle::IdleOpts;
use machine::Machine;
use ramp::RampOpts;
use report::{Report, Section};
use server::{BundleSpec, Target};
use startup::StartupOpts;
use store::{StoreOpts, Synchronous};

#[derive(Debug, Parser)]
#[command(
    name = "livechat-bench",
    version,
    about = "Load generator for livechat: drives a real server over its public v1 API on loopback and prints figures.",
    after_help = "Without --url each scenario starts its own `livechat serve` on 127.0.0.1:0 with a \
                  fresh data directory and a bench bundle. With --url, run the server on the bundle \
                  `livechat-bench bundle DIR` writes, with the same --agents and --team-size."
)]
pub struct Cli {
    #[command(flatten)]
    target: TargetArgs,
    /// Print the figures as JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
    /// No progress lines on standard error.
    #[arg(long, short, global = true)]
    quiet: bool,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Debug, Args)]
struct TargetArgs {
    /// Drive a server already running on the bench bundle instead of starting one.
    #[arg(long, global = true, value_name = "URL")]
    url: Option<String>,
    /// With --url: the server's process id, to read its memory and CPU time from /proc.
    #[arg(long, global = true, value_name = "PID")]
    server_pid: Option<u32>,
    /// With --url: the bundle directory the server watches (the reload scenario saves there).
    #[arg(long, global = true, value_name = "DIR")]
    bots_dir: Option<PathBuf>,
    /// With --url: the bench agents' password.
    #[arg(
        long,
        global = true,
        env = "LIVECHAT_BENCH_PASSWORD",
        hide_env_values = true
    )]
    password: Option<String>,
    /// The `livechat` binary to start [default: `livechat` beside this program].
    #[arg(long, global = true, value_name = "PATH")]
    server_bin: Option<PathBuf>,
    /// Also run chat, idle and ramp against the Socket.IO relay in DIR (`bench/socketio`,
    /// after `npm ci` there), in the same run, and print the ratios.
    #[arg(long, global = true, value_name = "DIR")]
    compare_socketio: Option<PathBuf>,
    /// An environment variable for the servers the bench starts, e.g.
    /// `GLIBC_TUNABLES=glibc.malloc.mmap_threshold=1048576` (repeatable).
    #[arg(long, global = true, value_name = "KEY=VALUE", value_parser = parse_env)]
    server_env: Vec<(String, String)>,
}

#[derive(Debug, Subcommand)]
enum Scenario {
    /// Live chats: handoff with accept races, then a steady message rate both ways, with
    /// delivery latency, loss, reconnect replay and memory per socket.
    Chat(ChatArgs),
    /// Widget sockets open with no traffic: memory per socket.
    Idle(IdleArgs),
    /// Durably stored messages per second with many concurrent writers.
    Store(StoreArgs),
    /// The chat setup, then the message rate rising in steps until delivery p99 passes a
    /// limit or a step has errors, loss or skipped sends: the highest rate held.
    Ramp(RampArgs),
    /// Bundle saves while chat traffic runs: time until the new revision is live.
    Reload(ReloadArgs),
    /// Cold starts: spawn to the first 200 from /healthz.
    Startup(StartupArgs),
    /// Every scenario in turn, each on a fresh server.
    All(AllArgs),
    /// Write the bench bundle into a directory, to run a server on it yourself (--url).
    Bundle(BundleArgs),
}

#[derive(Debug, Clone, Args)]
struct ChatArgs {
    /// Visitors, each in one live chat.
    #[arg(long, default_value_t = 100)]
    visitors: usize,
    /// Agents.
    #[arg(long, default_value_t = 10)]
    agents: usize,
    /// Agents per team; each team serves its own bot, and visitors are spread over the bots.
    #[arg(long, default_value_t = 10)]
    team_size: usize,
    /// Agents of the team that accept each request at the same moment.
    #[arg(long, default_value_t = 2)]
    accepters: usize,
    /// Each side of each chat sends a message this often.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    interval: Duration,
    /// How long the steady phase runs.
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    duration: Duration,
    /// Visitor sockets dropped and reconnected with after=N halfway (plus one agent's)
    /// [default: one visitor in 20, at least one].
    #[arg(long)]
    reconnects: Option<usize>,
    /// How long a dropped socket stays away [default: the interval].
    #[arg(long, value_parser = parse_duration)]
    reconnect_gap: Option<Duration>,
    /// Visitors set up at once.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// How long acknowledged messages may take to arrive after the last send.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    drain: Duration,
    /// Visitors that upload files at once, a third into the steady phase (0: none).
    #[arg(long, default_value_t = 0)]
    uploaders: usize,
    /// Bytes of each uploaded file.
    #[arg(long, default_value_t = 1_000_000)]
    upload_size: usize,
    /// Files each uploading visitor sends, one after the other.
    #[arg(long, default_value_t = 3)]
    uploads_each: usize,
    /// How messages are sent: `ws`, a frame on the sender's open socket answered by an
    /// `ack` frame (as the widget and console do), or `http`, a POST.
    #[arg(long, value_enum, default_value = "ws")]
    send: SendPath,
    /// With --url in front of several replicas: `kill -9` this replica's process halfway
    /// through the steady phase. Its sockets come back through --url with after=N, and
    /// writes that fail meanwhile are sent again with the same client_id.
    #[arg(long, value_name = "PID")]
    kill_replica: Option<u32>,
}

impl ChatArgs {
    fn opts(&self) -> ChatOpts {
        ChatOpts {
            visitors: self.visitors,
            agents: self.agents.max(1),
            team_size: self.team_size.max(1),
            accepters: self.accepters.max(1),
            interval: self.interval,
            duration: self.duration,
            // A killed replica's sockets reconnect already: no drops beside them by default.
            reconnects: self
                .reconnects
                .unwrap_or(if self.kill_replica.is_some() {
                    0
                } else {
                    (self.visitors / 20).max(1)
                })
                .min(self.visitors),
            reconnect_gap: self.reconnect_gap.unwrap_or(self.interval),
            concurrency: self.concurrency,
            drain: self.drain,
            uploads: (self.uploaders > 0).then_some(uploads::UploadOpts {
                uploaders: self.uploaders.min(self.visitors),
                size: self.upload_size.max(1),
                each: self.uploads_each.max(1),
            }),
            send: self.send,
            kill_replica: self.kill_replica,
        }
    }
}

#[derive(Debug, Clone, Args)]
struct IdleArgs {
    /// Widget sockets to open.
    #[arg(long, default_value_t = 1000)]
    sockets: usize,
    /// How long to hold them open.
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    hold: Duration,
    /// Sessions and sockets opened at once.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
}

#[derive(Debug, Clone, Args)]
struct StoreArgs {
    /// Concurrent writers, each a visitor in an accepted chat.
    #[arg(long, default_value_t = 64)]
    writers: usize,
    /// Agents who accept the chats.
    #[arg(long, default_value_t = 2)]
    agents: usize,
    /// How long the writers write.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// How the writers send: `ws` (a frame on each writer's widget socket) or `http`.
    #[arg(long, value_enum, default_value = "ws")]
    send: SendPath,
    /// SQLite's `synchronous` for the server the bench starts (`LIVECHAT_SYNCHRONOUS`).
    #[arg(long, value_enum, default_value = "normal")]
    synchronous: Synchronous,
}

#[derive(Debug, Clone, Args)]
struct RampArgs {
    /// Visitors, each in one live chat.
    #[arg(long, default_value_t = 100)]
    visitors: usize,
    /// Agents.
    #[arg(long, default_value_t = 10)]
    agents: usize,
    /// Agents per team.
    #[arg(long, default_value_t = 10)]
    team_size: usize,
    /// Visitors set up at once.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// How messages are sent (`ws` or `http`).
    #[arg(long, value_enum, default_value = "ws")]
    send: SendPath,
    #[command(flatten)]
    steps: RampSteps,
}

/// The steps of a ramp (also in `all`).
#[derive(Debug, Clone, Args)]
struct RampSteps {
    /// The first step's total message rate (both ways, all chats).
    #[arg(long, default_value_t = 500.0)]
    start_rate: f64,
    /// What each step adds to the rate.
    #[arg(long, default_value_t = 500.0)]
    step: f64,
    /// How long each step sends.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    step_duration: Duration,
    /// A step whose delivery p99 (either way) is above this ends the ramp.
    #[arg(long, default_value = "10ms", value_parser = parse_duration)]
    p99_limit: Duration,
    /// The ramp stops at this rate even if every step held.
    #[arg(long, default_value_t = 20_000.0)]
    max_rate: f64,
    /// How long a step's acknowledged messages may take to arrive after its last send.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    step_drain: Duration,
}

impl RampSteps {
    fn opts(&self, send: SendPath) -> RampOpts {
        RampOpts {
            start_rate: self.start_rate.max(1.0),
            step: self.step.max(1.0),
            step_duration: self.step_duration.max(Duration::from_millis(100)),
            p99_limit: self.p99_limit,
            max_rate: self.max_rate,
            drain: self.step_drain,
            send,
        }
    }
}

impl RampArgs {
    /// The chat setup of a ramp: no reconnects, no uploads.
    fn chat_opts(&self) -> ChatOpts {
        ChatOpts {
            visitors: self.visitors,
            agents: self.agents.max(1),
            team_size: self.team_size.max(1),
            accepters: 1,
            interval: Duration::from_secs(1),
            duration: Duration::ZERO,
            reconnects: 0,
            reconnect_gap: Duration::ZERO,
            concurrency: self.concurrency,
            drain: self.steps.step_drain,
            uploads: None,
            send: self.send,
            kill_replica: None,
        }
    }
}

#[derive(Debug, Clone, Args)]
struct ReloadArgs {
    #[command(flatten)]
    chat: ChatArgs,
    /// Bundle saves.
    #[arg(long, default_value_t = 10)]
    reloads: usize,
    /// Time between saves.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    reload_every: Duration,
}

#[derive(Debug, Clone, Args)]
struct StartupArgs {
    /// Starts on a fresh data directory, and as many on an existing one.
    #[arg(long, default_value_t = 10)]
    repeats: usize,
}

#[derive(Debug, Clone, Args)]
struct AllArgs {
    #[command(flatten)]
    chat: ChatArgs,
    /// idle: widget sockets to open.
    #[arg(long, default_value_t = 1000)]
    sockets: usize,
    /// idle: how long to hold them.
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    hold: Duration,
    /// store: concurrent writers.
    #[arg(long, default_value_t = 64)]
    writers: usize,
    /// store: how long they write [default: --duration].
    #[arg(long, value_parser = parse_duration)]
    store_duration: Option<Duration>,
    /// reload: bundle saves.
    #[arg(long, default_value_t = 5)]
    reloads: usize,
    /// reload: time between saves.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    reload_every: Duration,
    /// startup: starts of each kind.
    #[arg(long, default_value_t = 5)]
    repeats: usize,
    /// ramp: its steps (the chats are --visitors and --agents).
    #[command(flatten)]
    ramp: RampSteps,
}

#[derive(Debug, Clone, Args)]
struct BundleArgs {
    /// Where to write the bundle (created if missing).
    dir: PathBuf,
    #[arg(long, default_value_t = 10)]
    agents: usize,
    #[arg(long, default_value_t = 10)]
    team_size: usize,
    /// Each agent's max_chats.
    #[arg(long, default_value_t = 1000)]
    max_chats: usize,
}

/// Progress lines on standard error, with the time since the run started.
#[derive(Clone)]
pub struct Progress {
    quiet: bool,
    t0: Instant,
}

impl Progress {
    fn say(&self, what: &str) {
        if !self.quiet {
            eprintln!("[{:7.2}s] {what}", self.t0.elapsed().as_secs_f64());
        }
    }
}

/// What a run produced: the text to print and whether every check passed.
pub struct Outcome {
    pub output: String,
    pub ok: bool,
}

impl Outcome {
    /// The printed line whose label (after its indent) starts with `label`.
    pub fn line(&self, label: &str) -> Option<&str> {
        self.output
            .lines()
            .find(|l| l.trim_start().starts_with(label))
    }
}

/// The program: parses the command line, runs, prints; exit 2 when a check failed.
pub fn main_exit() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(e.exit_code().clamp(0, 255) as u8);
        }
    };
    match run(cli) {
        Ok(outcome) => {
            print!("{}", outcome.output);
            if outcome.ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            }
        }
        Err(e) => {
            eprintln!("livechat-bench: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// Runs with these arguments (the first is the program name) and answers what it would print.
pub fn run_args<I, T>(args: I) -> anyhow::Result<Outcome>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    run(Cli::try_parse_from(args)?)
}

fn run(cli: Cli) -> anyhow::Result<Outcome> {
    let progress = Progress {
        quiet: cli.quiet,
        t0: Instant::now(),
    };
    if let Scenario::Bundle(b) = &cli.scenario {
        let spec = BundleSpec {
            agents: b.agents.max(1),
            team_size: b.team_size.max(1),
            max_chats: b.max_chats,
        };
        spec.write(&b.dir)?;
        let emails = (0..spec.agents)
            .map(BundleSpec::email)
            .collect::<Vec<_>>()
            .join(" ");
        return Ok(Outcome {
            output: format!(
                "wrote the bench bundle ({} agents in {} teams) to {}\n\
                 set each agent's password, e.g.:\n  \
                 for a in {emails}; do echo \"$LIVECHAT_BENCH_PASSWORD\" | livechat agent password $a --bots-dir {}; done\n",
                spec.agents,
                spec.teams(),
                b.dir.display(),
                b.dir.display()
            ),
            ok: true,
        });
    }
    let server_bin = match (&cli.target.server_bin, &cli.target.url) {
        (Some(bin), _) => Some(bin.clone()),
        (None, None) => Some(server::default_server_bin()?),
        (None, Some(_)) => None,
    };
    let server_label = match (&cli.target.url, &server_bin) {
        (Some(url), _) => format!("already running at {url}"),
        (None, Some(bin)) => format!(
            "{} ({:.1} MiB)",
            bin.display(),
            machine::file_mib(bin).unwrap_or(0.0)
        ),
        (None, None) => "unknown".into(),
    };
    let mut machine = Machine::now(server_label);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start the async runtime")?;
    let sections = runtime.block_on(scenarios(&cli, server_bin.as_deref(), &progress))?;
    machine.load_end = machine::load_average();
    let report = Report { machine, sections };
    let output = if cli.json {
        format!("{:#}\n", report.json())
    } else {
        report.table()
    };
    Ok(Outcome {
        output,
        ok: report.ok(),
    })
}

async fn scenarios(
    cli: &Cli,
    bin: Option<&std::path::Path>,
    progress: &Progress,
) -> anyhow::Result<Vec<Section>> {
    let mut sections = Vec::new();
    match &cli.scenario {
        Scenario::Chat(c) => {
            let o = c.opts();
            if o.kill_replica.is_some() && cli.target.url.is_none() {
                bail!("--kill-replica kills one of several replicas behind --url: pass --url");
            }
            let mut t = target(cli, bin, chat_spec(&o), progress).await?;
            sections.extend(chat::run(&mut t, &o, None, progress).await?);
            drop(t);
            if let Some(dir) = &cli.target.compare_socketio {
                let relay = socketio::Relay::start(dir)?;
                let theirs = socketio::chat(&relay, &o, progress).await?;
                sections.push(report::comparison(&[(
                    &sections[0],
                    &theirs,
                    report::CHAT_COMPARED,
                )]));
                sections.insert(1, theirs);
            }
        }
        Scenario::Reload(r) => {
            let o = r.chat.opts();
            if o.kill_replica.is_some() {
                bail!("only the chat scenario kills a replica (--kill-replica)");
            }
            let mut t = target(cli, bin, chat_spec(&o), progress).await?;
            let reload = ReloadOpts {
                reloads: r.reloads,
                every: r.reload_every,
            };
            sections.extend(chat::run(&mut t, &o, Some(&reload), progress).await?);
        }
        Scenario::Idle(i) => {
            let o = IdleOpts {
                sockets: i.sockets,
                hold: i.hold,
                concurrency: i.concurrency,
            };
            let mut t = target(cli, bin, idle_spec(), progress).await?;
            sections.push(idle::run(&mut t, &o, progress).await?);
            drop(t);
            if let Some(dir) = &cli.target.compare_socketio {
                let relay = socketio::Relay::start(dir)?;
                let theirs = socketio::idle(&relay, o.sockets, o.hold, progress).await?;
                sections.push(report::comparison(&[(
                    &sections[0],
                    &theirs,
                    report::IDLE_COMPARED,
                )]));
                sections.insert(1, theirs);
            }
        }
        Scenario::Store(s) => {
            let o = StoreOpts {
                writers: s.writers,
                agents: s.agents.max(1),
                duration: s.duration,
                concurrency: 32,
                send: s.send,
                synchronous: s.synchronous,
            };
            if cli.target.url.is_some() && o.synchronous != Synchronous::Normal {
                bail!(
                    "--synchronous sets the server the bench starts: with --url, start that server with LIVECHAT_SYNCHRONOUS instead"
                );
            }
            let mut t =
                target_with(cli, bin, store_spec(&o), o.synchronous.env(), progress).await?;
            sections.push(store::run(&mut t, &o, progress).await?);
        }
        Scenario::Ramp(r) => {
            let o = r.chat_opts();
            let steps = r.steps.opts(r.send);
            let mut t = target(cli, bin, chat_spec(&o), progress).await?;
            sections.push(ramp::livechat(&mut t, &o, &steps, progress).await?);
            drop(t);
            if let Some(dir) = &cli.target.compare_socketio {
                let relay = socketio::Relay::start(dir)?;
                let theirs = ramp::socketio(&relay, &o, &steps, progress).await?;
                sections.push(report::comparison(&[(
                    &sections[0],
                    &theirs,
                    report::RAMP_COMPARED,
                )]));
                sections.insert(1, theirs);
            }
        }
        Scenario::Startup(s) => {
            let Some(bin) = bin.filter(|_| cli.target.url.is_none()) else {
                bail!("startup starts the server itself: drop --url");
            };
            sections.push(startup::run(bin, &StartupOpts { repeats: s.repeats }, progress).await?);
        }
        Scenario::All(a) => {
            if a.chat.kill_replica.is_some() {
                bail!("only the chat scenario kills a replica (--kill-replica)");
            }
            if let Some(bin) = bin.filter(|_| cli.target.url.is_none()) {
                sections
                    .push(startup::run(bin, &StartupOpts { repeats: a.repeats }, progress).await?);
            }
            let idle = IdleOpts {
                sockets: a.sockets,
                hold: a.hold,
                concurrency: 64,
            };
            let mut t = target(cli, bin, idle_spec(), progress).await?;
            sections.push(idle::run(&mut t, &idle, progress).await?);
            drop(t);
            let store = StoreOpts {
                writers: a.writers,
                agents: 2,
                duration: a.store_duration.unwrap_or(a.chat.duration),
                concurrency: 32,
                send: a.chat.send,
                synchronous: Synchronous::Normal,
            };
            let mut t = target(cli, bin, store_spec(&store), progress).await?;
            sections.push(store::run(&mut t, &store, progress).await?);
            drop(t);
            let o = a.chat.opts();
            let mut t = target(cli, bin, chat_spec(&o), progress).await?;
            sections.extend(chat::run(&mut t, &o, None, progress).await?);
            drop(t);
            let mut t = target(cli, bin, chat_spec(&o), progress).await?;
            let reload = ReloadOpts {
                reloads: a.reloads,
                every: a.reload_every,
            };
            let mut with_reload = chat::run(&mut t, &o, Some(&reload), progress).await?;
            drop(t);
            // The chat figures of the reload run are the load it ran under; keep the reload's.
            sections.extend(with_reload.drain(1..));
            let ramp_chat = ChatOpts {
                reconnects: 0,
                uploads: None,
                accepters: 1,
                ..o.clone()
            };
            let steps = a.ramp.opts(a.chat.send);
            let mut t = target(cli, bin, chat_spec(&ramp_chat), progress).await?;
            sections.push(ramp::livechat(&mut t, &ramp_chat, &steps, progress).await?);
            drop(t);
            if let Some(dir) = &cli.target.compare_socketio {
                let relay = socketio::Relay::start(dir)?;
                let idle_theirs = socketio::idle(&relay, a.sockets, a.hold, progress).await?;
                drop(relay);
                let relay = socketio::Relay::start(dir)?;
                let chat_theirs = socketio::chat(&relay, &o, progress).await?;
                drop(relay);
                let relay = socketio::Relay::start(dir)?;
                let ramp_theirs = ramp::socketio(&relay, &ramp_chat, &steps, progress).await?;
                let named = |name: &str| sections.iter().find(|s| s.name == name);
                let mut pairs = Vec::new();
                if let Some(ours) = named("chat") {
                    pairs.push((ours, &chat_theirs, report::CHAT_COMPARED));
                }
                if let Some(ours) = named("idle") {
                    pairs.push((ours, &idle_theirs, report::IDLE_COMPARED));
                }
                if let Some(ours) = named("ramp") {
                    pairs.push((ours, &ramp_theirs, report::RAMP_COMPARED));
                }
                let compared = report::comparison(&pairs);
                sections.push(idle_theirs);
                sections.push(chat_theirs);
                sections.push(ramp_theirs);
                sections.push(compared);
            }
        }
        Scenario::Bundle(_) => {}
    }
    Ok(sections)
}

fn chat_spec(o: &ChatOpts) -> BundleSpec {
    BundleSpec {
        agents: o.agents,
        team_size: o.team_size,
        max_chats: o.visitors + 1,
    }
}

fn idle_spec() -> BundleSpec {
    BundleSpec {
        agents: 1,
        team_size: 1,
        max_chats: 1,
    }
}

fn store_spec(o: &StoreOpts) -> BundleSpec {
    BundleSpec {
        agents: o.agents,
        team_size: o.agents,
        max_chats: o.writers + 1,
    }
}

/// The server for one scenario: a fresh one, or the one at --url.
async fn target(
    cli: &Cli,
    bin: Option<&std::path::Path>,
    spec: BundleSpec,
    progress: &Progress,
) -> anyhow::Result<Target> {
    target_with(cli, bin, spec, None, progress).await
}

/// The same, with one more variable in a started server's environment.
async fn target_with(
    cli: &Cli,
    bin: Option<&std::path::Path>,
    spec: BundleSpec,
    extra_env: Option<(String, String)>,
    progress: &Progress,
) -> anyhow::Result<Target> {
    match (&cli.target.url, bin) {
        (Some(url), _) => {
            let Some(password) = cli.target.password.clone() else {
                bail!(
                    "with --url, give the agents' password (--password or LIVECHAT_BENCH_PASSWORD)"
                );
            };
            Target::attach(
                url,
                cli.target.server_pid,
                cli.target.bots_dir.clone(),
                password,
                spec,
            )
        }
        (None, Some(bin)) => {
            let mut env = cli.target.server_env.clone();
            env.extend(extra_env);
            Target::start(bin, spec, &env, progress).await
        }
        (None, None) => bail!("no server: give --server-bin or --url"),
    }
}

/// `KEY=VALUE`.
fn parse_env(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("`{s}` is not KEY=VALUE")),
    }
}

/// `2s`, `500ms`, `1.5s`, `2m`.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (number, unit) = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .map_or((s, "s"), |i| s.split_at(i));
    let n: f64 = number
        .parse()
        .map_err(|_| format!("`{s}` is not a duration like 2s, 500ms or 1m"))?;
    let secs = match unit.trim() {
        "ms" => n / 1000.0,
        "s" => n,
        "m" | "min" => n * 60.0,
        other => return Err(format!("unknown unit `{other}` in `{s}`: use ms, s or m")),
    };
    if !(0.0..86_400.0).contains(&secs) {
        return Err(format!("`{s}` is out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("2h").is_err());
        assert!(parse_duration("x").is_err());
    }

    #[test]
    fn the_cli_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
