//! Config revisions across replicas on PostgreSQL (#17): two real `serve` processes on one
//! real PostgreSQL (the harness of `tests/common/postgres.rs`), each with a bundle
//! directory of its own, watched over HTTP. Every replica serves the database's newest
//! revision: an edit of one replica's directory, a replica started on an older bundle, and
//! the admin API's apply on one replica all end with both serving the same revision.
//!
//! The admin API is authorised by the admin token (`LIVECHAT_ADMIN_TOKEN`), not by an
//! agent's password, so no password is set here (the command line cannot set one on
//! PostgreSQL yet; nothing in these tests needs it).

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use common::postgres::Postgres;
use common::{Bundle, TestServer, bot};
use serde_json::{Value, json};

const TOKEN: &str = "s3cret-admin";

/// Within this a revision recorded on one replica must be live on the other. The poll that
/// backs up a lost announcement runs every 15 s: only the announcement meets this.
const ANNOUNCED: Duration = Duration::from_secs(5);

/// `Bundle::live(1)`: bot `support` only.
fn v1() -> Bundle {
    Bundle::live(1)
}

/// `v1` with a second bot, `sales`, which greets with `greeting`.
fn with_sales(greeting: &str) -> Bundle {
    Bundle::live(1).bot("sales", bot("Sales", greeting))
}

/// A new database `name` of `pg` in the URL form `database_url` takes: the cluster listens
/// on a Unix socket only, whose directory is the URL's host, percent-encoded.
fn database(pg: &Postgres, name: &str) -> String {
    pg.database(name);
    let socket = pg.dir().to_str().unwrap().replace('/', "%2F");
    format!("postgres://livechat@{socket}/{name}?sslmode=disable")
}

/// A replica on `bundle`, on the database `url`.
fn replica(bundle: &Bundle, url: &str) -> TestServer {
    bundle.serve_with(
        &[],
        &[
            ("LIVECHAT_DATABASE_URL", url),
            ("LIVECHAT_ADMIN_TOKEN", TOKEN),
        ],
    )
}

/// Waits until `server` serves revision `number`; answers its `/healthz` and how long it took.
fn serves(server: &TestServer, number: i64, limit: Duration) -> (Value, Duration) {
    server.wait_for(limit, &format!("revision {number}"), |h| {
        h["config_revision"] == number
    })
}

/// The bots a replica serves, as `/healthz` lists them.
fn bots(health: &Value) -> Vec<String> {
    health["bots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b.as_str().unwrap().to_string())
        .collect()
}

/// A visitor starts a chat with bot `id` through `server`'s API: its greeting, once the
/// bot said it, or the refusal's status when the server has no such bot.
fn greeting(server: &TestServer, id: &str) -> Result<String, u16> {
    let api = server.api();
    let (status, body) = api.post(
        "/api/v1/visitor/sessions",
        None,
        json!({"bot": id, "page_url": "https://acme.example/"}),
    );
    if status != 201 {
        return Err(status);
    }
    let token = body["token"].as_str().unwrap().to_string();
    let start = Instant::now();
    loop {
        let (status, history) = api.get("/api/v1/visitor/history?after=0", Some(&token));
        assert_eq!(status, 200, "{history}");
        let said = history["events"]
            .as_array()
            .unwrap()
            .iter()
            .find_map(|e| e["data"]["text"].as_str().map(str::to_string));
        if let Some(text) = said {
            return Ok(text);
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "bot {id} said nothing: {history}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The admin API's revision list, through `server`.
fn revisions(server: &TestServer) -> Vec<Value> {
    let (status, body) = server
        .api()
        .get("/api/v1/admin/config/revisions", Some(TOKEN));
    assert_eq!(status, 200, "{body}");
    body["revisions"].as_array().unwrap().clone()
}

/// The files `bundle` writes, as the admin API takes them.
fn files(bundle: &Bundle) -> BTreeMap<String, String> {
    let dir = tempfile::tempdir().unwrap();
    bundle.write(dir.path());
    std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            (name, std::fs::read_to_string(&p).unwrap())
        })
        .collect()
}

fn has_file(dir: &Path, name: &str) -> bool {
    dir.join(name).exists()
}

#[test]
fn an_edit_of_one_replicas_directory_is_live_on_the_other() {
    let pg = Postgres::start();
    let url = database(&pg, "edit");
    let a = replica(&v1(), &url);
    let b = replica(&v1(), &url);
    let (ha, hb) = (a.health(), b.health());
    assert_eq!(ha["config_revision"], 1, "{ha}");
    assert_eq!(hb["config_revision"], 1, "{hb}");
    assert_eq!(ha["config_hash"], hb["config_hash"]);
    assert_eq!(greeting(&b, "sales"), Err(404), "no bot sales yet");

    with_sales("Hello from sales").write(&a.bots_dir);
    let (ha, _) = serves(&a, 2, Duration::from_secs(5));
    let (hb, took) = serves(&b, 2, ANNOUNCED);
    println!("an edit of replica A's directory: live on replica B in {took:?}");
    assert_eq!(hb["config_hash"], ha["config_hash"], "{hb}");
    assert_eq!(bots(&hb), ["sales", "support"], "{hb}");
    assert!(hb["config_error"].is_null(), "{hb}");
    assert_eq!(greeting(&b, "sales").as_deref(), Ok("Hello from sales"));
    assert!(
        b.logged("config live: revision 2", Duration::ZERO)
            .is_some_and(|l| l.contains("from the database")),
        "B says where its revision came from"
    );
    // B's directory is not touched: it still holds revision 1's files.
    assert!(!has_file(&b.bots_dir, "sales.toml"));
    assert_eq!(revisions(&b).len(), 2, "one revision recorded, by A");
}

#[test]
fn a_replica_started_on_an_older_bundle_serves_the_live_revision() {
    let pg = Postgres::start();
    let url = database(&pg, "behind");
    let a = replica(&v1(), &url);
    with_sales("Hello from sales").write(&a.bots_dir);
    let (ha, _) = serves(&a, 2, Duration::from_secs(5));

    // B starts on revision 1's bundle while revision 2 is live: it serves revision 2 from
    // the database and records nothing.
    let b = replica(&v1(), &url);
    let hb = b.health();
    assert_eq!(hb["config_revision"], 2, "{hb}");
    assert_eq!(hb["config_hash"], ha["config_hash"], "{hb}");
    assert_eq!(bots(&hb), ["sales", "support"], "{hb}");
    assert_eq!(greeting(&b, "sales").as_deref(), Ok("Hello from sales"));
    let behind = "is revision 1, earlier than the live revision 2";
    assert!(
        b.logged(behind, Duration::ZERO).is_some(),
        "B says it is behind"
    );
    assert_eq!(revisions(&a).len(), 2, "B recorded nothing");

    // An edit of B's directory that no revision has is recorded and live on both.
    with_sales("Sales here, again").write(&b.bots_dir);
    let (hb, _) = serves(&b, 3, Duration::from_secs(5));
    let (ha, took) = serves(&a, 3, ANNOUNCED);
    println!("an edit of the late replica's directory: live on replica A in {took:?}");
    assert_eq!(ha["config_hash"], hb["config_hash"]);
    assert_eq!(greeting(&a, "sales").as_deref(), Ok("Sales here, again"));

    // Its directory edited back to revision 1's bundle (a reverted file) is an edit of a
    // running replica: recorded anew as revision 4 and live on both, as on SQLite.
    std::fs::remove_file(b.bots_dir.join("sales.toml")).unwrap();
    let (hb, _) = serves(&b, 4, Duration::from_secs(5));
    let (ha, took) = serves(&a, 4, ANNOUNCED);
    println!("the late replica's directory reverted to revision 1: live on replica A in {took:?}");
    assert_eq!(ha["config_hash"], hb["config_hash"]);
    assert_eq!(bots(&ha), ["support"], "{ha}");
    assert_eq!(greeting(&a, "sales"), Err(404));
    assert_eq!(revisions(&a).len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_apis_apply_on_one_replica_is_live_on_the_other() {
    let pg = Postgres::start();
    let url = database(&pg, "api");
    let (a, b) = tokio::task::spawn_blocking({
        let url = url.clone();
        move || (replica(&v1(), &url), replica(&v1(), &url))
    })
    .await
    .unwrap();
    let api = common::live::Api::new(&a.url);
    let body = |bundle: &Bundle, dry_run: bool| {
        json!({"files": files(bundle), "dry_run": dry_run}).to_string()
    };

    // A dry run plans against the live revision and records nothing.
    let v2 = with_sales("Hello through the API");
    let (status, dry) = api
        .call(
            "POST",
            "/api/v1/admin/config",
            Some(TOKEN),
            Some(&body(&v2, true)),
        )
        .await;
    assert_eq!(status, 200, "{dry}");
    assert_eq!(dry["plan"], json!(["+ bot sales"]), "{dry}");
    assert!(dry["revision"].is_null(), "{dry}");

    let (status, applied) = api
        .call(
            "POST",
            "/api/v1/admin/config",
            Some(TOKEN),
            Some(&body(&v2, false)),
        )
        .await;
    assert_eq!(status, 200, "{applied}");
    assert_eq!(applied["revision"]["number"], 2, "{applied}");
    assert_eq!(applied["revision"]["source"], "api", "{applied}");
    assert_eq!(applied["unchanged"], false, "{applied}");
    let (a, b) = tokio::task::spawn_blocking(move || {
        // Live on A when it answers, on B within the announcement's time.
        assert_eq!(a.revision(), 2, "{}", a.health());
        let (hb, took) = serves(&b, 2, ANNOUNCED);
        println!("the admin API's apply on replica A: live on replica B in {took:?}");
        assert_eq!(hb["config_hash"], a.health()["config_hash"]);
        assert_eq!(
            greeting(&b, "sales").as_deref(),
            Ok("Hello through the API")
        );
        // Installed in the database, not in A's directory.
        assert!(!has_file(&a.bots_dir, "sales.toml"));
        (a, b)
    })
    .await
    .unwrap();

    // The same bundle again: unchanged, nothing recorded.
    let (status, again) = api
        .call(
            "POST",
            "/api/v1/admin/config",
            Some(TOKEN),
            Some(&body(&v2, false)),
        )
        .await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(
        (
            again["unchanged"].as_bool(),
            again["revision"]["number"].as_i64()
        ),
        (Some(true), Some(2)),
        "{again}"
    );

    // A revision recorded without an announcement (a writer that could not send it) is
    // found by each replica's poll.
    let store = livechat::store::postgres::PgStore::connect(&url, 1)
        .await
        .unwrap();
    let quiet = livechat::config::Bundle::from_sources(
        files(&with_sales("Found by the poll")),
        &|_: &str| None,
    )
    .unwrap();
    {
        use livechat::store::postgres::revisions as pg;
        let mut client = store.pool().get().await.unwrap();
        let tx = client.transaction().await.unwrap();
        pg::lock(&tx).await.unwrap();
        let r = pg::insert(&tx, &quiet.hash, "apply", "~1 bot", &quiet.sources)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        assert_eq!(r.number, 3);
    }
    tokio::task::spawn_blocking(move || {
        let poll = Duration::from_secs(15) + Duration::from_secs(5);
        let (_, took_a) = serves(&a, 3, poll);
        let (_, took_b) = serves(&b, 3, poll);
        println!("a revision never announced: found by A's poll in {took_a:?}, B's in {took_b:?}");
        assert_eq!(greeting(&a, "sales").as_deref(), Ok("Found by the poll"));
        assert_eq!(greeting(&b, "sales").as_deref(), Ok("Found by the poll"));
    })
    .await
    .unwrap();
}
