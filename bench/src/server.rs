//! The server under load: a `livechat serve` this program starts on a bundle it writes into a
//! temporary directory (agents' passwords set through `livechat agent password`, reading
//! standard input, as an admin would), or one already running, given by `--url`.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};

use super::Progress;
use super::client::Api;

/// The password every bench agent gets (the server's minimum is 8 characters).
pub const PASSWORD: &str = "bench-password-1";

/// The bench bundle: `agents` agents in teams of `team_size`; each team serves one bot
/// (`bench0`, `bench1`, …) whose flow greets, offers "Talk to a person" and hands off.
#[derive(Debug, Clone, Copy)]
pub struct BundleSpec {
    pub agents: usize,
    pub team_size: usize,
    pub max_chats: usize,
}

impl BundleSpec {
    pub fn teams(&self) -> usize {
        self.agents.div_ceil(self.team_size.max(1)).max(1)
    }

    /// The team (and bot) of agent `i`.
    pub fn team_of(&self, agent: usize) -> usize {
        agent / self.team_size.max(1)
    }

    /// The agents of team `t`.
    pub fn members(&self, team: usize) -> std::ops::Range<usize> {
        let size = self.team_size.max(1);
        (team * size)..((team + 1) * size).min(self.agents)
    }

    pub fn email(agent: usize) -> String {
        format!("agent{agent}@bench.example")
    }

    pub fn bot(team: usize) -> String {
        format!("bench{team}")
    }

    pub fn agents_toml(&self) -> String {
        let mut s = String::from("# Written by livechat-bench.\n");
        for t in 0..self.teams() {
            s.push_str(&format!(
                "\n[[team]]\nid = \"team{t}\"\nbots = [\"{}\"]\n",
                Self::bot(t)
            ));
        }
        for a in 0..self.agents {
            s.push_str(&format!(
                "\n[[agent]]\nname = \"Agent {a}\"\nemail = \"{}\"\nmax_chats = {}\nteams = [\"team{}\"]\n",
                Self::email(a),
                self.max_chats.max(1),
                self.team_of(a)
            ));
        }
        s
    }

    /// Bot `team`'s file; `edit` changes its greeting (the reload scenario saves new ones).
    pub fn bot_toml(team: usize, edit: u64) -> String {
        format!(
            r#"# Written by livechat-bench.
name = "Bench {team}"

[[step]]
id = "start"
say = "Hello from bench {team} (edit {edit})."
choices = [
  {{ label = "Talk to a person", goto = "human" }},
]

[[step]]
id = "human"
live_chat = "desk"

[live_chat.desk]
accept_timeout = "30m"
idle_timeout = "30m"
route = [{{ team = "team{team}" }}]

# The uploads of `chat --uploaders` (a few files of a megabyte per chat).
[attachments]
conversation_total = "1GiB"
"#
        )
    }

    /// Writes the whole bundle into `dir`.
    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("agents.toml"), self.agents_toml())?;
        for t in 0..self.teams() {
            std::fs::write(
                dir.join(format!("{}.toml", Self::bot(t))),
                Self::bot_toml(t, 0),
            )?;
        }
        Ok(())
    }
}

/// Saves the way editors do: a temporary file renamed over the old one.
pub fn save_atomically(path: &Path, text: &str) -> anyhow::Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| anyhow!("{} names no file", path.display()))?;
    let tmp = path.with_file_name(format!(".{}.bench-tmp", name.to_string_lossy()));
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// Where the server runs and how to reach it.
pub struct Target {
    pub api: Api,
    /// The server's process, for its memory and CPU time (None: unknown).
    pub pid: Option<u32>,
    /// The bundle directory the server watches (None: unknown).
    pub bots_dir: Option<PathBuf>,
    pub password: String,
    pub spec: BundleSpec,
    process: Option<ServerProcess>,
}

impl Target {
    /// A server already running on the bench bundle (`livechat-bench bundle`).
    pub fn attach(
        url: &str,
        pid: Option<u32>,
        bots_dir: Option<PathBuf>,
        password: String,
        spec: BundleSpec,
    ) -> anyhow::Result<Target> {
        Ok(Target {
            api: Api::new(url)?,
            pid,
            bots_dir,
            password,
            spec,
            process: None,
        })
    }

    /// Writes the bundle, sets the passwords and starts `bin serve` on 127.0.0.1:0.
    pub async fn start(
        bin: &Path,
        spec: BundleSpec,
        env: &[(String, String)],
        progress: &Progress,
    ) -> anyhow::Result<Target> {
        let dir = tempfile::Builder::new()
            .prefix("livechat-bench-")
            .tempdir()?;
        let bots_dir = dir.path().join("bots");
        let data_dir = dir.path().join("data");
        spec.write(&bots_dir)?;
        progress.say(&format!(
            "setting {} agent password(s) with `livechat agent password`",
            spec.agents
        ));
        let (b, bd, dd) = (bin.to_path_buf(), bots_dir.clone(), data_dir.clone());
        tokio::task::spawn_blocking(move || set_passwords(&b, &bd, &dd, spec.agents)).await??;
        let env = env.to_vec();
        let (b, bd, dd, log) = (
            bin.to_path_buf(),
            bots_dir.clone(),
            data_dir.clone(),
            dir.path().join("server.log"),
        );
        let (child, url) =
            tokio::task::spawn_blocking(move || spawn_serve(&b, &bd, &dd, &log, &env)).await??;
        let pid = child.id();
        let process = ServerProcess {
            child,
            log: dir.path().join("server.log"),
            _dir: dir,
        };
        let api = Api::new(&url)?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while api.revision().await.is_none() {
            if Instant::now() > deadline {
                bail!(
                    "the server at {url} did not answer /healthz with a revision; its log:\n{}",
                    process.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        progress.say(&format!("server pid {pid} listening on {url}"));
        Ok(Target {
            api,
            pid: Some(pid),
            bots_dir: Some(bots_dir),
            password: PASSWORD.to_string(),
            spec,
            process: Some(process),
        })
    }

    /// Whether a server this program started is still running.
    pub fn alive(&mut self) -> bool {
        match &mut self.process {
            Some(p) => matches!(p.child.try_wait(), Ok(None)),
            None => true,
        }
    }
}

struct ServerProcess {
    child: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl ServerProcess {
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for ServerProcess {
    /// SIGTERM first, as systemd would (the server finishes in-flight requests); SIGKILL if it
    /// is still running after 5 s.
    fn drop(&mut self) {
        let term = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if term.is_ok_and(|s| s.success()) {
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `livechat` with no stray settings from this environment.
pub fn livechat(bin: &Path) -> Command {
    let mut cmd = Command::new(bin);
    for (key, _) in std::env::vars() {
        if key.starts_with("LIVECHAT_") {
            cmd.env_remove(key);
        }
    }
    cmd
}

/// Sets every agent's password; the first alone (it creates the database), then two at a
/// time (hashing takes a core each, on purpose).
fn set_passwords(
    bin: &Path,
    bots_dir: &Path,
    data_dir: &Path,
    agents: usize,
) -> anyhow::Result<()> {
    if agents == 0 {
        return Ok(());
    }
    set_password(bin, bots_dir, data_dir, 0)?;
    let rest: Vec<usize> = (1..agents).collect();
    for pair in rest.chunks(2) {
        std::thread::scope(|s| {
            let handles: Vec<_> = pair
                .iter()
                .map(|&a| s.spawn(move || set_password(bin, bots_dir, data_dir, a)))
                .collect();
            handles.into_iter().try_for_each(|h| {
                h.join()
                    .map_err(|_| anyhow!("a password thread panicked"))?
            })
        })?;
    }
    Ok(())
}

fn set_password(bin: &Path, bots_dir: &Path, data_dir: &Path, agent: usize) -> anyhow::Result<()> {
    let email = BundleSpec::email(agent);
    let mut child = livechat(bin)
        .args(["agent", "password", &email, "--bots-dir"])
        .arg(bots_dir)
        .arg("--data-dir")
        .arg(data_dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("run {}", bin.display()))?;
    if let Some(mut stdin) = child.stdin.take() {
        writeln!(stdin, "{PASSWORD}")?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "livechat agent password {email}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// Starts `serve` on 127.0.0.1:0 and reads the address from its first line of output.
/// Standard error goes to `log`; `env` is added to the server's environment.
pub fn spawn_serve(
    bin: &Path,
    bots_dir: &Path,
    data_dir: &Path,
    log: &Path,
    env: &[(String, String)],
) -> anyhow::Result<(Child, String)> {
    let log_file = std::fs::File::create(log)?;
    let mut child = livechat(bin)
        .arg("serve")
        .arg("--listen")
        .arg("127.0.0.1:0")
        .arg("--bots-dir")
        .arg(bots_dir)
        .arg("--data-dir")
        .arg(data_dir)
        .env("LIVECHAT_LOG", "info")
        // Every simulated client comes from 127.0.0.1: the per-address and connection
        // limits a real site never reaches are raised by setting, as an operator would.
        .env("LIVECHAT_SOCKETS_PER_ADDRESS", "1000000")
        .env("LIVECHAT_MAX_CONNECTIONS", "1000000")
        .env("LIVECHAT_SESSIONS_PER_ADDRESS", "1000000")
        // So is the limit per visitor: `store` has each visitor write again at every ack
        // and `ramp` up to 100 messages a second, where a person sends one every few
        // seconds (`chat`'s default, one every 2 s, stays below it anyway).
        .env("LIVECHAT_MESSAGE_BURST", "1000000")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log_file))
        .spawn()
        .with_context(|| format!("start {} serve", bin.display()))?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow!("no stdout pipe"))?;
    let url = match listening_line(stdout, Duration::from_secs(30)) {
        Some(url) => url,
        None => {
            let _ = child.kill();
            let _ = child.wait();
            let log = std::fs::read_to_string(log).unwrap_or_default();
            bail!("the server did not print `livechat listening on …`; its log:\n{log}");
        }
    };
    Ok((child, url))
}

/// Waits for `livechat listening on http://ADDR` and answers the URL; keeps draining the
/// pipe afterwards so the server never blocks on it.
pub fn listening_line(stdout: std::process::ChildStdout, limit: Duration) -> Option<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix("livechat listening on ")
                && let Some(tx) = tx.take()
            {
                let _ = tx.send(rest.split_whitespace().next().unwrap_or("").to_string());
            }
        }
    });
    rx.recv_timeout(limit).ok().filter(|u| !u.is_empty())
}

/// `livechat` beside this program (target/<profile>/), or beside its parent directory when
/// this is a test binary in target/<profile>/deps.
pub fn default_server_bin() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let mut dir = exe.parent();
    while let Some(d) = dir {
        let candidate = d.join("livechat");
        if candidate.is_file() {
            return Ok(candidate);
        }
        if d.file_name().is_some_and(|n| n != "deps") {
            break;
        }
        dir = d.parent();
    }
    bail!(
        "no `livechat` binary beside {}; build it (`cargo build --release`) or pass --server-bin",
        exe.display()
    )
}
