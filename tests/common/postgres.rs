//! A real PostgreSQL server for tests: Debian's `postgresql` package, a new cluster in a
//! temporary directory, reached only through a Unix socket in that directory (no port to
//! race for, nothing on the network). `initdb` refuses to run as root, so as root the
//! cluster belongs to `nobody` and its programs run under `setpriv`. The server runs as a
//! child of the test process and dies with it, even when the test is killed.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The uid and gid of `nobody` and `nogroup` on Debian.
const NOBODY: u32 = 65534;

pub struct Postgres {
    bin: PathBuf,
    data: PathBuf,
    socket: PathBuf,
    as_nobody: bool,
    /// The postmaster, a child of this process.
    server: Option<std::process::Child>,
    /// The thread that started the server and lives as long as this value (see
    /// `server_command`); it ends when `keep` is dropped.
    keeper: Option<(std::sync::mpsc::Sender<()>, std::thread::JoinHandle<()>)>,
    _dir: tempfile::TempDir,
}

impl Postgres {
    /// Makes a cluster and starts its server; returns once it accepts connections. The
    /// cluster's own durability is off (no fsync): tests check behaviour, not the disk.
    pub fn start() -> Postgres {
        Postgres::start_with(false)
    }

    /// As [`Postgres::start`], with PostgreSQL's defaults of durability (fsync, full page
    /// writes): for figures that should resemble a real deployment's (`benches/pglog.rs`).
    pub fn start_durable() -> Postgres {
        Postgres::start_with(true)
    }

    fn start_with(durable: bool) -> Postgres {
        let bin = bindir();
        let dir = tempfile::Builder::new().prefix("pg").tempdir().unwrap();
        let as_nobody = is_root();
        if as_nobody {
            std::os::unix::fs::chown(dir.path(), Some(NOBODY), Some(NOBODY)).unwrap();
        }
        let mut pg = Postgres {
            data: dir.path().join("data"),
            socket: dir.path().to_path_buf(),
            bin,
            as_nobody,
            server: None,
            keeper: None,
            _dir: dir,
        };
        pg.run(
            "initdb",
            &[
                "-D".as_ref(),
                pg.data.as_os_str(),
                "-U".as_ref(),
                "livechat".as_ref(),
                "--auth=trust".as_ref(),
                "--encoding=UTF8".as_ref(),
                "--locale=C".as_ref(),
                "--no-sync".as_ref(),
            ],
        );
        // Durability of the cluster itself is not under test: fsync off keeps the suite
        // fast on a shared machine. Connections: several pools and tailers per test.
        let mut server = pg.server_command();
        server
            .arg("-D")
            .arg(&pg.data)
            .args(["-c", "listen_addresses=", "-k"])
            .arg(&pg.socket)
            .args(["-c", "max_connections=300", "-c", "shared_buffers=64MB"]);
        if !durable {
            server.args(["-c", "fsync=off", "-c", "full_page_writes=off"]);
        }
        let log = std::fs::File::create(pg.log_path()).unwrap();
        server
            .current_dir(&pg.socket)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        // Started by a thread of its own that waits until this value is dropped: the kill
        // signal comes when the thread that started the server ends, and a cluster shared
        // by several tests must outlive the test thread that happened to make it.
        let (started, child) = std::sync::mpsc::channel();
        let (keep, until_dropped) = std::sync::mpsc::channel::<()>();
        let keeper = std::thread::spawn(move || {
            let _ = started.send(server.spawn());
            let _ = until_dropped.recv();
        });
        let child = child
            .recv()
            .unwrap()
            .unwrap_or_else(|e| panic!("postgres: {e} (install Debian's `postgresql`)"));
        pg.server = Some(child);
        pg.keeper = Some((keep, keeper));
        pg.wait_ready();
        pg
    }

    /// The server, as a child of this process that dies with it: `setpriv --pdeathsig KILL`
    /// (as `nobody` when root). `pg_ctl start` would detach it, and a test process killed by
    /// a timeout or SIGKILL would leave it running with its cluster. The signal comes when
    /// the thread that started the server ends: a keeper thread that lives as long as the
    /// `Postgres` (`start_with`), so a cluster shared by tests outlives the first of them.
    fn server_command(&self) -> Command {
        let mut cmd = Command::new("setpriv");
        cmd.args(["--pdeathsig", "KILL"]);
        if self.as_nobody {
            cmd.arg(format!("--reuid={NOBODY}"))
                .arg(format!("--regid={NOBODY}"))
                .arg("--clear-groups");
        }
        cmd.arg(self.bin.join("postgres"));
        cmd
    }

    /// Returns once the server accepts connections on its socket (`pg_isready`); panics with
    /// its log if it exits first or is not ready within a minute.
    fn wait_ready(&mut self) {
        let started = std::time::Instant::now();
        loop {
            let ready = Command::new(self.bin.join("pg_isready"))
                .arg("-h")
                .arg(&self.socket)
                .args(["-U", "livechat", "-d", "postgres", "-q"])
                .stdin(Stdio::null())
                .status()
                .unwrap_or_else(|e| panic!("pg_isready: {e}"));
            if ready.success() {
                return;
            }
            let server = self.server.as_mut().expect("a server");
            if let Some(status) = server.try_wait().unwrap() {
                panic!(
                    "postgres exited ({status}) before it was ready:\n{}",
                    self.log()
                );
            }
            assert!(
                started.elapsed() < std::time::Duration::from_secs(60),
                "postgres not ready after a minute:\n{}",
                self.log()
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// Makes a new, empty database and returns its connection string.
    pub fn database(&self, name: &str) -> String {
        self.run(
            "createdb",
            &[
                "-h".as_ref(),
                self.socket.as_os_str(),
                "-U".as_ref(),
                "livechat".as_ref(),
                name.as_ref(),
            ],
        );
        self.url(name)
    }

    /// The connection string of database `name` (key=value form; the host is the socket's
    /// directory).
    pub fn url(&self, name: &str) -> String {
        format!("host={} user=livechat dbname={name}", self.socket.display())
    }

    /// The server's version, as `postgres --version` prints it.
    pub fn version(&self) -> String {
        let out = Command::new(self.bin.join("postgres"))
            .arg("--version")
            .output()
            .expect("postgres --version");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// The process id of the server (the postmaster).
    pub fn pid(&self) -> u32 {
        self.server.as_ref().expect("a server").id()
    }

    /// The temporary directory of the cluster (data, socket and log).
    pub fn dir(&self) -> &Path {
        &self.socket
    }

    /// The server's log so far (for a failing test's message).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Beside the data directory, not in it: the server's output, written by this process.
    fn log_path(&self) -> PathBuf {
        self.socket.join("server.log")
    }

    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        if self.as_nobody {
            let mut cmd = Command::new("setpriv");
            cmd.arg(format!("--reuid={NOBODY}"))
                .arg(format!("--regid={NOBODY}"))
                .arg("--clear-groups")
                .arg(path);
            cmd
        } else {
            Command::new(path)
        }
    }

    fn run(&self, program: &str, args: &[&std::ffi::OsStr]) {
        let out = self
            .command(program)
            .args(args)
            .current_dir(&self.socket)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("{program}: {e} (install Debian's `postgresql`)"));
        assert!(
            out.status.success(),
            "{program} failed: {}\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Postgres {
    /// A fast shutdown (SIGINT: sessions ended, no checkpoint wait beyond the shutdown's
    /// own), then waits for the server to exit; after 30 s it is killed.
    fn drop(&mut self) {
        self.stop_server();
        if let Some((keep, keeper)) = self.keeper.take() {
            drop(keep);
            let _ = keeper.join();
        }
    }
}

impl Postgres {
    fn stop_server(&mut self) {
        let Some(mut server) = self.server.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-INT", &server.id().to_string()])
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let asked = std::time::Instant::now();
        while asked.elapsed() < std::time::Duration::from_secs(30) {
            match server.try_wait() {
                Ok(None) => std::thread::sleep(std::time::Duration::from_millis(20)),
                _ => return,
            }
        }
        let _ = server.kill();
        let _ = server.wait();
    }
}

/// A client of its own on `url` (its connection driven by a task of the test's runtime),
/// for what a test reads or does beside the store under test.
pub async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
}

/// The newest PostgreSQL under Debian's `/usr/lib/postgresql/<version>/bin` (its programs
/// are not on the PATH), or `PG_BINDIR` when set.
fn bindir() -> PathBuf {
    if let Some(dir) = std::env::var_os("PG_BINDIR") {
        return PathBuf::from(dir);
    }
    let root = Path::new("/usr/lib/postgresql");
    let newest = std::fs::read_dir(root)
        .ok()
        .into_iter()
        .flatten()
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version: u32 = entry.file_name().to_str()?.parse().ok()?;
            entry
                .path()
                .join("bin/initdb")
                .is_file()
                .then(|| (version, entry.path().join("bin")))
        })
        .max();
    newest.map(|(_, bin)| bin).expect(
        "no PostgreSQL under /usr/lib/postgresql: install Debian's `postgresql` (.ci/run does)",
    )
}

fn is_root() -> bool {
    let out = Command::new("id").arg("-u").output().expect("id -u");
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}
