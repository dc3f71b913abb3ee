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
    /// The TCP port on 127.0.0.1 when the cluster also listens there (`start_tls`).
    port: Option<u16>,
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
        Postgres::start_with(false, None, "pg")
    }

    /// The cluster of the whole test process, for the suite's run on PostgreSQL
    /// (`common::store_under_test`): made on first use and never dropped, so that a server
    /// started again on a data directory finds its database however many servers ran
    /// between. The server dies with the process; its directory, named after the process,
    /// is removed by the next process that makes one, once no process of that id runs.
    pub fn of_process() -> &'static Postgres {
        static CLUSTER: std::sync::OnceLock<Postgres> = std::sync::OnceLock::new();
        CLUSTER.get_or_init(|| {
            const PREFIX: &str = "livechat-test-pg-";
            if let Ok(dir) = std::fs::read_dir(std::env::temp_dir()) {
                for entry in dir.filter_map(Result::ok) {
                    let name = entry.file_name().to_string_lossy().into_owned();
                    let pid = name
                        .strip_prefix(PREFIX)
                        .and_then(|rest| rest.split('-').next())
                        .and_then(|pid| pid.parse::<u32>().ok());
                    if pid.is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists()) {
                        let _ = std::fs::remove_dir_all(entry.path());
                    }
                }
            }
            let prefix = format!("{PREFIX}{}-", std::process::id());
            Postgres::start_with(false, None, &prefix)
        })
    }

    /// As [`Postgres::start`], with PostgreSQL's defaults of durability (fsync, full page
    /// writes): for figures that should resemble a real deployment's (`benches/pglog.rs`).
    pub fn start_durable() -> Postgres {
        Postgres::start_with(true, None, "pg")
    }

    /// Opt-in, for the TLS tests: as [`Postgres::start`], and besides its socket the server
    /// listens on 127.0.0.1 (a free port, [`Postgres::port`]) with `ssl = on`, presenting
    /// the certificate `cert` (PEM, with its chain) and its key `key`. Both are copied into
    /// the cluster's directory, owned by the server's user (PostgreSQL refuses a key that
    /// others can read). Plain connections are still accepted; the default `start` is
    /// unchanged.
    pub fn start_tls(cert: &Path, key: &Path) -> Postgres {
        Postgres::start_with(false, Some((cert, key)), "pg")
    }

    fn start_with(durable: bool, tls: Option<(&Path, &Path)>, prefix: &str) -> Postgres {
        let bin = bindir();
        let dir = tempfile::Builder::new().prefix(prefix).tempdir().unwrap();
        let as_nobody = is_root();
        if as_nobody {
            std::os::unix::fs::chown(dir.path(), Some(NOBODY), Some(NOBODY)).unwrap();
        }
        let mut pg = Postgres {
            data: dir.path().join("data"),
            socket: dir.path().to_path_buf(),
            bin,
            as_nobody,
            port: None,
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
        server.arg("-D").arg(&pg.data);
        match tls {
            None => {
                server.args(["-c", "listen_addresses="]);
            }
            Some((cert, key)) => {
                let port = free_port();
                let (cert, key) = pg.own_copy(cert, "server.crt", key, "server.key");
                server
                    .args(["-c", "listen_addresses=127.0.0.1", "-p", &port.to_string()])
                    .args(["-c", "ssl=on", "-c"])
                    .arg(format!("ssl_cert_file={}", cert.display()))
                    .arg("-c")
                    .arg(format!("ssl_key_file={}", key.display()));
                pg.port = Some(port);
            }
        }
        server.arg("-k").arg(&pg.socket).args([
            "-c",
            "max_connections=300",
            "-c",
            "shared_buffers=64MB",
        ]);
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
                .args(self.port_args())
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
        let port = self.port_args();
        let mut args: Vec<&std::ffi::OsStr> = vec!["-h".as_ref(), self.socket.as_os_str()];
        args.extend(port.iter().map(std::ffi::OsStr::new));
        args.extend(["livechat", name].map(std::ffi::OsStr::new));
        args.insert(args.len() - 2, "-U".as_ref());
        self.run("createdb", &args);
        self.url(name)
    }

    /// The connection string of database `name` (key=value form; the host is the socket's
    /// directory).
    pub fn url(&self, name: &str) -> String {
        match self.port {
            None => format!("host={} user=livechat dbname={name}", self.socket.display()),
            // The socket's name carries the port (`.s.PGSQL.PORT`).
            Some(port) => format!(
                "host={} port={port} user=livechat dbname={name}",
                self.socket.display()
            ),
        }
    }

    /// The URL form of [`Postgres::url`], as `database_url` takes it: the socket's directory
    /// as the `host` parameter.
    pub fn uri(&self, name: &str) -> String {
        let port = self.port.map(|p| format!("&port={p}")).unwrap_or_default();
        format!(
            "postgres://livechat@localhost/{name}?host={}{port}",
            self.socket.display()
        )
    }

    /// `-p PORT` for the programs when the cluster has a port of its own (`start_tls`),
    /// none for the default (5432, a socket name only).
    fn port_args(&self) -> Vec<String> {
        self.port
            .map(|port| vec!["-p".to_string(), port.to_string()])
            .unwrap_or_default()
    }

    /// The TCP port on 127.0.0.1 of a cluster started with [`Postgres::start_tls`].
    pub fn port(&self) -> u16 {
        self.port.expect("a cluster started with start_tls")
    }

    /// Copies the certificate and key into the cluster's directory, readable by the
    /// server's user alone.
    fn own_copy(
        &self,
        cert: &Path,
        cert_name: &str,
        key: &Path,
        key_name: &str,
    ) -> (PathBuf, PathBuf) {
        use std::os::unix::fs::PermissionsExt;
        let mut copies = Vec::new();
        for (from, name) in [(cert, cert_name), (key, key_name)] {
            let to = self.socket.join(name);
            std::fs::copy(from, &to).unwrap();
            std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o600)).unwrap();
            if self.as_nobody {
                std::os::unix::fs::chown(&to, Some(NOBODY), Some(NOBODY)).unwrap();
            }
            copies.push(to);
        }
        (copies[0].clone(), copies[1].clone())
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

/// Ends every replica's listening session (`application_name` `livechat tailer`) on the
/// database `client` is connected to; answers how many were ended.
pub async fn end_tailers(client: &tokio_postgres::Client) -> i64 {
    client
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
             WHERE application_name = 'livechat tailer' AND datname = current_database()",
            &[],
        )
        .await
        .unwrap()
        .get(0)
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

/// A port on 127.0.0.1 that nothing listens on now (the kernel's pick, given back at once).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn is_root() -> bool {
    let out = Command::new("id").arg("-u").output().expect("id -u");
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

/// The rows of a query of a text and a number (`status, count(*)`, `client_id, seq`).
pub async fn pairs(client: &tokio_postgres::Client, sql: &str) -> Vec<(String, i64)> {
    client
        .query(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

/// The number of events of `kind` of each conversation in the database at `url`.
pub async fn events_by_conversation(
    url: &str,
    kind: &str,
) -> std::collections::BTreeMap<String, i64> {
    connect(url)
        .await
        .query(
            "SELECT conversation_id, count(*) FROM events WHERE type = $1 GROUP BY 1",
            &[&kind],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}
