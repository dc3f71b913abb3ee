//! A real SMTP server for tests: Python's aiosmtpd, delivering every mail it accepts into a
//! Maildir (`<dir>/new/`), on a free loopback port. It can be stopped and started again on
//! the same port to test an outage.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct SmtpServer {
    pub port: u16,
    pub maildir: PathBuf,
    child: Option<Child>,
    _dir: tempfile::TempDir,
}

impl SmtpServer {
    /// Starts aiosmtpd on a port that was free a moment ago.
    pub fn start() -> SmtpServer {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = tempfile::tempdir().unwrap();
        let maildir = dir.path().join("box");
        let mut server = SmtpServer {
            port,
            maildir,
            child: None,
            _dir: dir,
        };
        server.resume();
        server
    }

    /// Starts (again) on the same port and Maildir; returns once it accepts connections.
    pub fn resume(&mut self) {
        assert!(self.child.is_none(), "already running");
        let child = Command::new("python3")
            .args(["-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{}", self.port))
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(&self.maildir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 -m aiosmtpd (install it with `pip install aiosmtpd`)");
        self.child = Some(child);
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(15),
                "aiosmtpd did not start listening on {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops it: connections are refused until `resume`.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Every mail received so far, as raw RFC 5322 text, oldest first.
    pub fn mails(&self) -> Vec<String> {
        let new = self.maildir.join("new");
        let mut files: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(&new)
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .map(|e| {
                        let t = e.metadata().and_then(|m| m.modified()).unwrap();
                        (t, e.path())
                    })
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        files
            .into_iter()
            .map(|(_, p)| std::fs::read_to_string(p).unwrap())
            .collect()
    }

    /// Waits until `n` mails have arrived; answers them.
    pub fn wait_for_mails(&self, n: usize, limit: Duration) -> Vec<String> {
        let start = Instant::now();
        loop {
            let mails = self.mails();
            if mails.len() >= n {
                return mails;
            }
            assert!(
                start.elapsed() < limit,
                "{} of {n} mails arrived within {limit:?}",
                mails.len()
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Mails of one kind (the `X-Livechat-Kind` header: `offline_form`, `invite`, …).
    pub fn mails_of(&self, kind: &str) -> Vec<String> {
        self.mails()
            .into_iter()
            .filter(|m| header(m, "X-Livechat-Kind").as_deref() == Some(kind))
            .collect()
    }

    /// Waits until `n` mails of `kind` have arrived; answers them.
    pub fn wait_for_kind(&self, kind: &str, n: usize, limit: Duration) -> Vec<String> {
        let start = Instant::now();
        loop {
            let mails = self.mails_of(kind);
            if mails.len() >= n {
                return mails;
            }
            assert!(
                start.elapsed() < limit,
                "{} of {n} {kind} mails arrived within {limit:?}",
                mails.len()
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// A `livechat.toml` that sends to this server without TLS.
    pub fn settings(&self, dir: &Path, extra: &str) -> PathBuf {
        let path = dir.join("livechat.toml");
        std::fs::write(
            &path,
            format!(
                "mail_from = \"Acme Support <support@acme.example>\"\n{extra}\n[smtp]\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"none\"\ntimeout = \"2s\"\n",
                self.port
            ),
        )
        .unwrap();
        path
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The value of a header in a raw mail (first occurrence, unfolded).
pub fn header(mail: &str, name: &str) -> Option<String> {
    let head = &mail[..mail.find("\n\n").or_else(|| mail.find("\r\n\r\n"))?];
    let mut lines = head.lines().peekable();
    while let Some(line) = lines.next() {
        if let Some((k, v)) = line.split_once(':')
            && k.eq_ignore_ascii_case(name)
        {
            let mut value = v.trim().to_string();
            while let Some(next) = lines.peek().filter(|l| l.starts_with([' ', '\t'])) {
                value.push(' ');
                value.push_str(next.trim());
                lines.next();
            }
            return Some(value);
        }
    }
    None
}

/// Undoes quoted-printable soft breaks and `=XX` escapes, enough to search a body.
pub fn decode_qp(s: &str) -> String {
    let joined = s.replace("=\r\n", "").replace("=\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'='
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&joined[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
