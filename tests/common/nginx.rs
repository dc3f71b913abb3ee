//! A real nginx in front of the server (or of several replicas), configured with
//! `packaging/nginx.conf`'s own upstream, map and locations. It runs unprivileged in a
//! temporary prefix, in the foreground, on a free loopback port, and connects to the
//! servers from 127.0.0.2 (`proxy_bind`).
#![allow(dead_code)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::live::Api;

/// The address nginx connects to the server from.
pub const NGINX_ADDR: &str = "127.0.0.2";

pub struct Nginx {
    child: Child,
    pub url: String,
    dir: tempfile::TempDir,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The text of `packaging/nginx.conf` between two lines that start with `from` and `to`.
fn between<'a>(conf: &'a str, from: &str, to: &str) -> &'a str {
    let start = conf.find(from).unwrap_or_else(|| panic!("no `{from}`"));
    let end = start
        + conf[start..]
            .find(to)
            .unwrap_or_else(|| panic!("no `{to}`"));
    &conf[start..end]
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Nginx {
    /// nginx in front of the servers at `upstreams` (`127.0.0.1:PORT` each; several are
    /// replicas, taken in turn).
    pub fn start(upstreams: &[&str]) -> Nginx {
        Self::start_with(upstreams, "")
    }

    /// The same, naming the replica that answered each request in `X-Livechat-Upstream`
    /// (as `bench/replicas.sh` does, for the bench to tell cross-replica deliveries).
    pub fn start_naming_upstreams(upstreams: &[&str]) -> Nginx {
        Self::start_with(
            upstreams,
            "add_header X-Livechat-Upstream $upstream_addr always;",
        )
    }

    fn start_with(upstreams: &[&str], extra: &str) -> Nginx {
        let conf = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/nginx.conf"),
        )
        .unwrap();
        // The upstream and the map as shipped, the servers' addresses put in.
        let head = between(&conf, "upstream livechat {", "server {");
        assert!(head.contains("server 127.0.0.1:8080;"), "{head}");
        let servers: Vec<String> = upstreams.iter().map(|u| format!("server {u};")).collect();
        let head = head.replace("server 127.0.0.1:8080;", &servers.join("\n    "));
        let locations = between(&conf, "# BEGIN livechat", "# END livechat");

        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        std::fs::create_dir_all(p.join("tmp")).unwrap();
        // Run as root, nginx's workers are `nobody`: they need to reach the temp files.
        for d in [p, &p.join("tmp")] {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o777)).unwrap();
        }
        let port = free_port();
        let d = p.display();
        let text = format!(
            "daemon off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log info;\n\
             events {{ worker_connections 256; }}\n\
             http {{\n\
             access_log {d}/access.log;\n\
             client_body_temp_path {d}/tmp/body;\nproxy_temp_path {d}/tmp/proxy;\n\
             fastcgi_temp_path {d}/tmp/fastcgi;\nuwsgi_temp_path {d}/tmp/uwsgi;\n\
             scgi_temp_path {d}/tmp/scgi;\n\
             {head}\n\
             server {{\n\
             listen 127.0.0.1:{port};\n\
             proxy_bind {NGINX_ADDR};\n\
             {extra}\n\
             {locations}\n\
             }}\n}}\n"
        );
        let conf_path = p.join("nginx.conf");
        std::fs::write(&conf_path, text).unwrap();
        // Debian's nginx is in /usr/sbin, which a user's PATH may lack.
        let bin = ["/usr/sbin/nginx", "nginx"]
            .into_iter()
            .find(|b| Path::new(b).exists())
            .unwrap_or("nginx");
        let nginx = |extra: &[&str]| {
            let mut cmd = Command::new(bin);
            cmd.arg("-p")
                .arg(p)
                .arg("-c")
                .arg(&conf_path)
                .arg("-e")
                .arg(p.join("error.log"))
                .args(extra);
            cmd
        };
        let check = nginx(&["-t", "-q"])
            .output()
            .expect("nginx is installed (Debian package `nginx`; .ci/run installs it)");
        assert!(
            check.status.success(),
            "nginx -t: {}",
            String::from_utf8_lossy(&check.stderr)
        );
        let child = nginx(&[])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let nginx = Nginx {
            child,
            url: format!("http://127.0.0.1:{port}"),
            dir,
        };
        nginx.wait_ready();
        nginx
    }

    /// Until `/healthz` answers through nginx.
    fn wait_ready(&self) {
        let start = Instant::now();
        let health = Api::blocking(&self.url);
        while !health
            .request("GET", "/healthz")
            .try_wait()
            .is_ok_and(|reply| reply.status == 200)
        {
            let log = std::fs::read_to_string(self.dir.path().join("error.log"));
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "nginx does not answer: {log:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
