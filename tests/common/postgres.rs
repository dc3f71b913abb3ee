//! A real PostgreSQL server for tests: Debian's `postgresql` package, a new cluster in a
//! temporary directory, reached only through a Unix socket in that directory (no port to
//! race for, nothing on the network). `initdb` refuses to run as root, so as root the
//! cluster belongs to `nobody` and its programs run under `setpriv`.
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
        let pg = Postgres {
            data: dir.path().join("data"),
            socket: dir.path().to_path_buf(),
            bin,
            as_nobody,
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
        let durability = if durable {
            ""
        } else {
            "-c fsync=off -c full_page_writes=off"
        };
        let options = format!(
            "-c listen_addresses='' -k {} {durability} -c max_connections=300 -c shared_buffers=64MB",
            pg.socket.display()
        );
        pg.run(
            "pg_ctl",
            &[
                "-D".as_ref(),
                pg.data.as_os_str(),
                "-l".as_ref(),
                pg.data.join("server.log").as_os_str(),
                "-w".as_ref(),
                "-t".as_ref(),
                "60".as_ref(),
                "-o".as_ref(),
                options.as_ref(),
                "start".as_ref(),
            ],
        );
        pg
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

    /// The server's log so far (for a failing test's message).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data.join("server.log")).unwrap_or_default()
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
    fn drop(&mut self) {
        let _ = self
            .command("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "-w", "stop"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
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
