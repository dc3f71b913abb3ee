//! `database_url` (#17): the setting, its flag and variable, and TLS to PostgreSQL. Against
//! a real cluster listening on 127.0.0.1 with `ssl = on` and a certificate made here with
//! the `openssl` command, and through the real binary where the server is involved.

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::postgres::{self, Postgres};
use livechat::store::postgres::PgStore;
use livechat::store::postgres::log::{LogWriter, NewEvent};
use livechat::store::postgres::migrations;

const PASSWORD: &str = "hunter2-never-shown";

/// Certificates made with `openssl`: an authority `ca` that signed the server's
/// certificate (made out to `localhost` only, not to 127.0.0.1), and another authority,
/// `other_ca`, that signed nothing of this server.
struct Certs {
    dir: tempfile::TempDir,
}

impl Certs {
    fn make() -> Certs {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(d)
                .stdin(Stdio::null())
                .output()
                .expect("the openssl command");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        for (name, cn) in [
            ("ca", "livechat test CA"),
            ("other_ca", "someone else's CA"),
        ] {
            let key = format!("{name}.key");
            let crt = format!("{name}.crt");
            let subject = format!("/CN={cn}");
            let mut args = vec!["req", "-x509"];
            args.extend(ec);
            args.extend([
                "-keyout",
                &key,
                "-out",
                &crt,
                "-days",
                "2",
                "-subj",
                &subject,
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ]);
            openssl(&args);
        }
        let mut args = vec!["req"];
        args.extend(ec);
        args.extend([
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ]);
        openssl(&args);
        std::fs::write(
            d.join("server.ext"),
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n\
             extendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost\n",
        )
        .unwrap();
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ]);
        Certs { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// A cluster with `ssl = on` on 127.0.0.1 presenting the server certificate of `certs`.
fn tls_cluster(certs: &Certs) -> Postgres {
    Postgres::start_tls(&certs.path("server.crt"), &certs.path("server.key"))
}

/// `postgres://livechat:PASSWORD@HOST:PORT/DB?PARAMS` (the cluster trusts local logins,
/// so the password is carried and never asked for).
fn url(pg: &Postgres, host: &str, db: &str, params: &str) -> String {
    let query = if params.is_empty() {
        String::new()
    } else {
        format!("?{params}")
    };
    format!(
        "postgres://livechat:{PASSWORD}@{host}:{}/{db}{query}",
        pg.port()
    )
}

/// Whether the session of a connection from the store's pool is encrypted.
async fn pool_is_tls(store: &PgStore) -> bool {
    let client = store.pool().get().await.unwrap();
    ssl_of(&client).await
}

async fn ssl_of(client: &tokio_postgres::Client) -> bool {
    client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_sslmode_connects_as_libpq_would_against_a_server_with_tls() {
    let certs = Certs::make();
    let pg = tls_cluster(&certs);
    pg.database("tls");
    let ca = format!("sslrootcert={}", certs.path("ca.crt").display());
    let other = format!("sslrootcert={}", certs.path("other_ca.crt").display());
    let connect = |host: &str, params: String| {
        let url = url(&pg, host, "tls", &params);
        async move { PgStore::connect(&url, 2).await }
    };

    // require: encrypted, the certificate not checked (its authority is unknown here).
    let require = connect("127.0.0.1", "sslmode=require".into())
        .await
        .unwrap();
    assert!(pool_is_tls(&require).await, "sslmode=require without TLS");
    // The committers write through connections of the same pool; a session of its own
    // (a listener's) is made with the same TLS.
    let log = LogWriter::start(&require, 2);
    let seqs = log
        .append(vec![NewEvent {
            conversation_id: None,
            bot: None,
            kind: "tls.check".into(),
            at: "2026-01-01T00:00:00Z".into(),
            visitor_visible: false,
            data: "{}".into(),
            client_id: None,
        }])
        .await
        .unwrap();
    assert_eq!(seqs, 1..2);
    let (session, connection) = require.session(require.config()).await.unwrap();
    tokio::spawn(connection);
    assert!(ssl_of(&session).await, "a session of its own without TLS");
    // Every backend of the database but the watcher's own is encrypted (the pool's, the
    // committers' and the session's), watched through the plain Unix socket.
    let watcher = postgres::connect(&pg.url("tls")).await;
    let row = watcher
        .query_one(
            "SELECT count(*), count(*) FILTER (WHERE s.ssl) FROM pg_stat_activity a \
             JOIN pg_stat_ssl s USING (pid) \
             WHERE a.datname = 'tls' AND a.backend_type = 'client backend' \
             AND a.pid <> pg_backend_pid()",
            &[],
        )
        .await
        .unwrap();
    let (all, tls): (i64, i64) = (row.get(0), row.get(1));
    assert!(all >= 2 && tls == all, "{tls} of {all} sessions encrypted");
    assert!(!ssl_of(&watcher).await, "the socket's session is not TLS");

    // disable: plain, though the server offers TLS.
    let disable = connect("127.0.0.1", "sslmode=disable".into())
        .await
        .unwrap();
    assert!(!pool_is_tls(&disable).await, "sslmode=disable with TLS");
    // prefer (the default, as libpq): TLS, since the server offers it.
    let prefer = connect("127.0.0.1", String::new()).await.unwrap();
    assert!(pool_is_tls(&prefer).await, "sslmode=prefer without TLS");

    // verify-full: the right authority and the name on the certificate.
    let full = connect("localhost", format!("sslmode=verify-full&{ca}"))
        .await
        .unwrap();
    assert!(pool_is_tls(&full).await);
    // The wrong authority: refused, and the error says why.
    let wrong = connect("localhost", format!("sslmode=verify-full&{other}"))
        .await
        .err()
        .expect("verify-full accepted a certificate of an unknown authority");
    let message = with_causes(&wrong);
    assert!(
        message.contains("invalid peer certificate") && message.contains("UnknownIssuer"),
        "{message}"
    );
    assert!(!message.contains(PASSWORD), "{message}");
    // The right authority, but the host is not the certificate's name (127.0.0.1, where
    // the certificate names localhost): verify-full refuses, verify-ca does not look.
    // (The same messages are what `serve` prints after `cannot use the database …`.)
    let name = connect("127.0.0.1", format!("sslmode=verify-full&{ca}"))
        .await
        .err()
        .expect("verify-full accepted a certificate made out to another name");
    let because = with_causes(&name);
    assert!(
        because.contains("certificate not valid for name \"127.0.0.1\""),
        "{because}"
    );
    let chain = connect("127.0.0.1", format!("sslmode=verify-ca&{ca}"))
        .await
        .unwrap();
    assert!(pool_is_tls(&chain).await);
    let wrong_chain = connect("127.0.0.1", format!("sslmode=verify-ca&{other}")).await;
    assert!(
        wrong_chain.is_err(),
        "verify-ca accepted an unknown authority"
    );
    // libpq's rule: require with roots checks the chain as verify-ca does.
    let require_roots = connect("127.0.0.1", format!("sslmode=require&{other}")).await;
    assert!(
        require_roots.is_err(),
        "require with sslrootcert did not check it"
    );
    println!(
        "TLS: require, prefer, verify-full and verify-ca connected encrypted ({tls} of {all} \
         sessions of the database), disable plain; the wrong root was refused: {message}"
    );
}

/// An error's message and its causes, as the server prints a database's refusal.
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let message = c.to_string();
        if !text.contains(&message) {
            text.push_str(&format!(": {message}"));
        }
        cause = c.source();
    }
    text
}

/// `livechat serve` on `url`, with a fresh bundle and data directory, until it exits or
/// says it is listening (then it is stopped).
enum Served {
    Exited {
        code: Option<i32>,
        stdout: String,
        stderr: String,
    },
    Listening {
        stdout: String,
    },
}

fn serve(args: &[&str], env: &[(&str, &str)], config: Option<&str>) -> Served {
    let dir = tempfile::tempdir().unwrap();
    let bots = dir.path().join("bots");
    let init = common::livechat().arg("init").arg(&bots).output().unwrap();
    assert!(init.status.success(), "{init:?}");
    let mut cmd = common::livechat();
    if let Some(text) = config {
        let path = dir.path().join("livechat.toml");
        std::fs::write(&path, text).unwrap();
        cmd.arg("--config").arg(path);
    }
    cmd.arg("serve")
        .args(args)
        .args(["--listen", "127.0.0.1:0", "--bots-dir"])
        .arg(&bots)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .env("LIVECHAT_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let started = Instant::now();
    loop {
        if let Some(_status) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            return Served::Exited {
                code: out.status.code(),
                stdout: String::from_utf8_lossy(&out.stdout).into(),
                stderr: String::from_utf8_lossy(&out.stderr).into(),
            };
        }
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
            if stdout.contains("livechat listening on") {
                return Served::Listening { stdout };
            }
            panic!("serve neither exited nor listened in a minute: {out:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What an exited `serve` said; panics if it is listening.
fn exited(served: Served) -> (Option<i32>, String, String) {
    match served {
        Served::Exited {
            code,
            stdout,
            stderr,
        } => (code, stdout, stderr),
        Served::Listening { stdout } => panic!("serve is listening: {stdout}"),
    }
}

/// The one `error:` line of a failed command; checks that it is alone, that nothing
/// panicked and that the password appears nowhere.
fn one_error_line(stdout: &str, stderr: &str) -> String {
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        !stdout.contains(PASSWORD) && !stderr.contains(PASSWORD),
        "the password was shown:\n{stdout}\n{stderr}"
    );
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    errors[0].to_string()
}

/// A port on 127.0.0.1 where nothing listens.
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn serve_on_a_database_it_cannot_reach_says_so_in_one_line_and_exits_2() {
    let port = closed_port();
    let url = format!("postgres://livechat:{PASSWORD}@127.0.0.1:{port}/livechat");
    let (code, stdout, stderr) = exited(serve(&["--database-url", &url], &[], None));
    assert_eq!(code, Some(2), "{stderr}");
    let line = one_error_line(&stdout, &stderr);
    let shown = format!(
        "error: cannot use the database postgres://livechat:***@127.0.0.1:{port}/livechat: "
    );
    assert!(line.starts_with(&shown), "{line}");
    assert!(line.contains("Connection refused"), "{line}");
    println!("{line}");
}

#[test]
fn the_flag_wins_over_the_variable_which_wins_over_the_file() {
    let [file, env, flag] = [closed_port(), closed_port(), closed_port()];
    let at = |port: u16, db: &str| format!("postgres://livechat:{PASSWORD}@127.0.0.1:{port}/{db}");
    let config = format!("database_url = \"{}\"\n", at(file, "file"));
    let env_url = at(env, "env");
    let flag_url = at(flag, "flag");
    let refused_at = |served: Served| {
        let (code, stdout, stderr) = exited(served);
        assert_eq!(code, Some(2), "{stderr}");
        one_error_line(&stdout, &stderr)
    };
    let line = refused_at(serve(
        &["--database-url", &flag_url],
        &[("LIVECHAT_DATABASE_URL", &env_url)],
        Some(&config),
    ));
    assert!(line.contains(&format!("127.0.0.1:{flag}/flag")), "{line}");
    let line = refused_at(serve(
        &[],
        &[("LIVECHAT_DATABASE_URL", &env_url)],
        Some(&config),
    ));
    assert!(line.contains(&format!("127.0.0.1:{env}/env")), "{line}");
    let line = refused_at(serve(&[], &[], Some(&config)));
    assert!(line.contains(&format!("127.0.0.1:{file}/file")), "{line}");
    // An empty variable is unset: the file's.
    let line = refused_at(serve(&[], &[("LIVECHAT_DATABASE_URL", "")], Some(&config)));
    assert!(line.contains(&format!("127.0.0.1:{file}/file")), "{line}");
    // A URL that is not PostgreSQL's, from the flag: named as the flag's, redacted.
    let (code, stdout, stderr) = exited(serve(
        &["--database-url", &format!("mysql://root:{PASSWORD}@db/x")],
        &[],
        None,
    ));
    assert_eq!(code, Some(2));
    let line = one_error_line(&stdout, &stderr);
    assert!(
        line.contains("--database-url") && line.contains("mysql://root:***@db/x"),
        "{line}"
    );
}

/// `serve --database-url` over TLS (`sslmode=require`) brings the schema up to date (every
/// migration has its row in `schema_migrations`) and serves on PostgreSQL: `/healthz` says
/// so, a visitor's chat over HTTP and its WebSocket lands in the database's log and comes
/// back in the visitor's history and on their socket, and the password is never shown.
#[test]
fn serve_on_postgres_migrates_the_schema_and_serves_a_chat() {
    let certs = Certs::make();
    let pg = tls_cluster(&certs);
    pg.database("served");
    let url = url(&pg, "127.0.0.1", "served", "sslmode=require");
    let server = common::Bundle::live(1).serve_with(&[], &[("LIVECHAT_DATABASE_URL", &url)]);
    let health = server.health();
    assert_eq!(health["store"]["kind"], "postgres", "{health}");
    let (conversation, seqs) = common::live::block_on(async {
        let api = common::live::Api::new(&server.url);
        let session = api.session("support").await;
        let mut stream = api.visitor_stream(&session.token, 0).await;
        let sent = api
            .post_ok(
                "/api/v1/visitor/messages",
                Some(&session.token),
                serde_json::json!({"client_id": "pg-1", "text": "Hello from PostgreSQL"}),
            )
            .await;
        let echoed = stream
            .wait_for(Duration::from_secs(10), "the visitor's own message", |v| {
                v["data"]["text"] == "Hello from PostgreSQL"
            })
            .await;
        assert_eq!(echoed["data"]["message_id"], sent["message_id"]);
        let history = api.history(&session.token, 0).await;
        let seqs: Vec<i64> = history.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
        assert!(
            history
                .iter()
                .any(|e| e["data"]["text"] == "Hello from PostgreSQL"),
            "{history:?}"
        );
        (session.conv, seqs)
    });
    let (migrated, stored) = common::live::block_on(async {
        let client = postgres::connect(&pg.url("served")).await;
        let row = client
            .query_one("SELECT count(*), max(version) FROM schema_migrations", &[])
            .await
            .unwrap();
        let stored: Vec<i64> = client
            .query(
                "SELECT seq FROM events WHERE conversation_id = $1 AND visitor_visible ORDER BY seq",
                &[&conversation],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        ((row.get::<_, i64>(0), row.get::<_, Option<i32>>(1)), stored)
    });
    assert_eq!(
        migrated,
        (
            migrations::MIGRATIONS.len() as i64,
            Some(migrations::latest())
        ),
        "schema_migrations after serve"
    );
    assert_eq!(
        seqs, stored,
        "the visitor's history against the database's log"
    );
    let printed = server.stdout.lock().unwrap().join("\n");
    let logged = server.stderr.lock().unwrap().join("\n");
    assert!(
        !printed.contains(PASSWORD) && !logged.contains(PASSWORD),
        "the password was shown"
    );
    println!(
        "serve on PostgreSQL: {} migrations applied; a visitor's chat stored as seq {:?}",
        migrated.0, stored
    );
}

#[test]
fn validate_reports_a_database_url_it_cannot_use_at_its_place_in_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let bots = dir.path().join("bots");
    assert!(
        common::livechat()
            .arg("init")
            .arg(&bots)
            .output()
            .unwrap()
            .status
            .success()
    );
    let config = dir.path().join("livechat.toml");
    let validate = |text: &str| {
        std::fs::write(&config, text).unwrap();
        let out = common::livechat()
            .arg("--config")
            .arg(&config)
            .arg("validate")
            .arg(&bots)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            !stdout.contains(PASSWORD) && !stderr.contains(PASSWORD),
            "{stdout}{stderr}"
        );
        (out.status.code(), stdout)
    };
    let path = config.display().to_string();
    let (code, out) = validate(&format!(
        "listen = \"127.0.0.1:0\"\n\ndatabase_url = \"mysql://chat:{PASSWORD}@db/x\"\n"
    ));
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.starts_with(&format!(
            "{path}:3:16: database_url: `mysql://chat:***@db/x` is not a PostgreSQL URL"
        )),
        "{out}"
    );
    assert!(
        out.contains("3 | database_url = \"mysql://chat:***@db/x\""),
        "{out}"
    );
    let (code, out) = validate(&format!(
        "database_url = \"postgres://chat:{PASSWORD}@db:notaport/x\"\n"
    ));
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.starts_with(&format!(
            "{path}:1:16: database_url: postgres://chat:***@db:notaport/x cannot be read"
        )),
        "{out}"
    );
    let (code, out) = validate(&format!(
        "database_url = \"postgres://chat:{PASSWORD}@db/x?sslmode=verify-full\"\n"
    ));
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("needs sslrootcert=PATH"), "{out}");
    let (code, out) = validate(&format!(
        "database_url = \"postgres://chat:{PASSWORD}@db/x?sslmode=require\"\n"
    ));
    assert_eq!(code, Some(0), "{out}");
    println!("{out}");
}
