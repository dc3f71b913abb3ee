//! Files across replicas (#17): two `livechat serve` processes on one real PostgreSQL, each
//! reached at its own URL. A visitor's file uploaded through one replica is listed and
//! downloaded through the other, by the agent and by the visitor, with the answer one
//! server gives; a link signed by one opens on the other, tampered or expired links on
//! neither; the erase of the visitor leaves none of their bytes in the database. The
//! largest file a bot takes by default goes up through one replica and down through the
//! other, timed beside a server on SQLite.

mod common;

use std::time::{Duration, Instant};

use common::live::{Api, RawReply, agent_email};
use common::postgres::{self, Postgres};
use common::{Bundle, TestServer};
use serde_json::json;
use sha2::{Digest, Sha256};

/// A disk reserve this machine's free space is sure to clear (the reserve has a test of
/// its own in `attachments.rs`).
const RESERVE: (&str, &str) = ("LIVECHAT_ATTACHMENT_RESERVE", "1MB");
const BOSS: &str = "boss@acme.example";
/// The largest file a bot takes unless it says otherwise (`attachments.max_size`).
const LARGEST: usize = 10_000_000;

/// What a download's answer says of the file, beside its bytes.
fn described(reply: &RawReply) -> [(&'static str, String); 5] {
    [
        "content-type",
        "content-disposition",
        "x-content-type-options",
        "content-security-policy",
        "content-length",
    ]
    .map(|h| (h, reply.header(h).to_string()))
}

async fn send(req: reqwest::RequestBuilder) -> RawReply {
    RawReply::of(req).await.expect("the server answers")
}

/// `GET` of `path` on `server`, with a bearer token and a range when given.
async fn get(
    server: &TestServer,
    path: &str,
    token: Option<&str>,
    range: Option<&str>,
) -> RawReply {
    let mut req = reqwest::Client::new().get(format!("{}{path}", server.url));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(r) = range {
        req = req.header("range", r);
    }
    send(req).await
}

/// The visitor with `token` uploads `bytes` named `name` through `server`.
async fn upload(server: &TestServer, token: &str, name: &str, bytes: Vec<u8>) -> RawReply {
    let req = reqwest::Client::new()
        .post(format!(
            "{}/api/v1/visitor/attachments?name={name}",
            server.url
        ))
        .bearer_auth(token)
        .body(bytes);
    send(req).await
}

/// A picture the server can decode, and so makes a preview of.
fn picture() -> Vec<u8> {
    let img = image::RgbImage::from_fn(1200, 900, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, ((x * y) % 256) as u8])
    });
    let mut png = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    png
}

/// A PDF of `size` bytes whose body no compressor shrinks.
fn document(size: usize) -> Vec<u8> {
    let mut bytes = b"%PDF-1.4\n".to_vec();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    while bytes.len() < size {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        bytes.extend(x.to_le_bytes());
    }
    bytes.truncate(size);
    bytes
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Pieces of `sha` (a content and its preview) in the database.
async fn pieces(client: &tokio_postgres::Client, sha: &str) -> i64 {
    client
        .query_one(
            "SELECT count(*) FROM file_contents WHERE sha256 = $1",
            &[&sha],
        )
        .await
        .unwrap()
        .get(0)
}

/// Files under a server's `DATA_DIR/files`, the upload area left out.
fn files_on_disk(server: &TestServer) -> Vec<String> {
    fn walk(at: &std::path::Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(at).into_iter().flatten() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else {
                out.push(path.display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(&server.data_dir.join("files"), &mut out);
    out.retain(|p| !p.ends_with(".part"));
    out
}

/// `url` with one hex digit of its signature changed.
fn tampered(url: &str) -> String {
    let last = url.chars().last().unwrap();
    let other = if last == '0' { '1' } else { '0' };
    format!("{}{other}", &url[..url.len() - 1])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_file_uploaded_through_one_replica_is_served_by_the_other() {
    let pg = Postgres::start();
    pg.database("files");
    let url = pg.uri("files");
    let (a, b) = tokio::task::spawn_blocking(move || {
        let env = [("LIVECHAT_DATABASE_URL", url.as_str()), RESERVE];
        let bundle = Bundle::live(1);
        let a = bundle.serve_with(&[&agent_email(0), BOSS], &env);
        let b = bundle.serve_with(&[], &env);
        (a, b)
    })
    .await
    .unwrap();
    let (api_a, api_b) = (Api::new(&a.url), Api::new(&b.url));
    let client = postgres::connect(&pg.url("files")).await;

    // The agent's console is on B; the visitor chats through A.
    let mut agent = api_b.go_online(&agent_email(0)).await;
    // A rings the agent once it sees them online (else the request goes to the offline
    // form and the conversation stays with the bot).
    api_a
        .wait_agent(&agent.token, &agent_email(0), |v| {
            v["online"] == true && v["accepting"] == true
        })
        .await;
    let visitor = api_a.session("support").await;
    api_a.request_live_chat(&visitor.token).await;
    api_b
        .act_ok(&agent.token, &visitor.conv, "accept", json!({}))
        .await;

    // A picture (with the preview the server makes) and the largest document, through A.
    let shot = picture();
    let up = upload(&a, &visitor.token, "screen%20shot.png", shot.clone()).await;
    assert_eq!(up.status, 201, "{:?}", up.json());
    let shot_id = up.json()["id"].as_str().unwrap().to_string();
    assert!(up.json()["preview_url"].is_string(), "{}", up.json());
    let big = document(LARGEST);
    let started = Instant::now();
    let up = upload(&a, &visitor.token, "r%C3%A9sum%C3%A9.pdf", big.clone()).await;
    let big_up = started.elapsed();
    assert_eq!(up.status, 201, "{:?}", up.json());
    let big_id = up.json()["id"].as_str().unwrap().to_string();
    assert!(
        files_on_disk(&a).is_empty(),
        "replica A keeps nothing of them on disk: {:?}",
        files_on_disk(&a)
    );
    assert!(
        pieces(&client, &sha256(&shot)).await >= 2,
        "the picture and its preview"
    );
    assert_eq!(
        pieces(&client, &sha256(&big)).await,
        LARGEST.div_ceil(1024 * 1024) as i64,
        "the document in pieces of 1 MiB"
    );

    // Sent through A; the agent on B is told of both files, and so is the visitor's history
    // read through B.
    api_a
        .post_ok(
            "/api/v1/visitor/messages",
            Some(&visitor.token),
            json!({"client_id": "files-1", "attachments": [shot_id, big_id]}),
        )
        .await;
    let event = agent
        .stream
        .wait_for(Duration::from_secs(10), "the visitor's files", |v| {
            v["type"] == "message.created" && v["data"]["attachments"].is_array()
        })
        .await;
    let listed: Vec<&str> = event["data"]["attachments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [shot_id.as_str(), big_id.as_str()], "{event}");
    let history = api_b.history(&visitor.token, 0).await;
    assert!(
        history
            .iter()
            .any(|e| e["data"]["attachments"][1]["name"] == "résumé.pdf"),
        "{history:#?}"
    );

    // Through B, byte for byte and described as through A: by the agent and by the visitor.
    for (id, bytes, what) in [
        (&shot_id, &shot, "the picture"),
        (&big_id, &big, "the document"),
    ] {
        let path = format!("/api/v1/attachments/{id}");
        let on_a = get(&a, &path, Some(&agent.token), None).await;
        assert_eq!(on_a.status, 200, "{what} through A");
        for token in [&agent.token, &visitor.token] {
            let started = Instant::now();
            let on_b = get(&b, &path, Some(token), None).await;
            if id == &big_id && token == &agent.token {
                println!(
                    "{LARGEST} bytes on PostgreSQL: up through A in {big_up:?}, down through B in {:?}",
                    started.elapsed()
                );
            }
            assert_eq!(on_b.status, 200, "{what} through B");
            assert!(on_b.bytes == *bytes, "{what}: the same bytes through B");
            assert_eq!(
                described(&on_b),
                described(&on_a),
                "{what}: the same answer"
            );
        }
        assert_eq!(on_a.header("x-content-type-options"), "nosniff");
    }
    let on_b = get(
        &b,
        &format!("/api/v1/attachments/{shot_id}"),
        Some(&visitor.token),
        None,
    )
    .await;
    assert_eq!(on_b.header("content-type"), "image/png");
    assert!(on_b.header("content-disposition").starts_with("inline;"));
    let on_b = get(
        &b,
        &format!("/api/v1/attachments/{big_id}"),
        Some(&visitor.token),
        None,
    )
    .await;
    assert_eq!(on_b.header("content-type"), "application/octet-stream");
    assert!(
        on_b.header("content-disposition").starts_with(
            "attachment; filename=\"r_sum_.pdf\"; filename*=UTF-8''r%C3%A9sum%C3%A9.pdf"
        ),
        "{}",
        on_b.header("content-disposition")
    );
    // A range across the boundary of two pieces, read through B.
    let (first, last) = (1024 * 1024 - 100, 1024 * 1024 + 99);
    let part = get(
        &b,
        &format!("/api/v1/attachments/{big_id}"),
        Some(&visitor.token),
        Some(&format!("bytes={first}-{last}")),
    )
    .await;
    assert_eq!(part.status, 206);
    assert_eq!(
        part.header("content-range"),
        format!("bytes {first}-{last}/{LARGEST}")
    );
    assert!(part.bytes == big[first..=last], "the range's bytes");
    // The preview, made by A, shown through B.
    let preview = format!("/api/v1/attachments/{shot_id}/preview");
    let (pa, pb) = (
        get(&a, &preview, Some(&agent.token), None).await,
        get(&b, &preview, Some(&agent.token), None).await,
    );
    assert_eq!((pa.status, pb.status), (200, 200));
    assert!(pa.bytes == pb.bytes, "the same preview");
    assert_eq!(described(&pa), described(&pb));
    assert!(pb.bytes.len() < shot.len(), "a preview is smaller");

    // A link signed by A opens on B, and one signed by B on A; tampered, on neither.
    for (signer, other) in [(&a, &b), (&b, &a)] {
        let link = Api::new(&signer.url)
            .get_ok(
                &format!("/api/v1/visitor/attachments/{shot_id}/link"),
                Some(&visitor.token),
            )
            .await;
        for url in [
            link["url"].as_str().unwrap(),
            link["preview_url"].as_str().unwrap(),
        ] {
            let opened = get(other, url, None, None).await;
            assert_eq!(opened.status, 200, "{url} signed by {}", signer.url);
            let bad = tampered(url);
            for server in [&a, &b] {
                assert_eq!(get(server, &bad, None, None).await.status, 404, "{bad}");
            }
        }
        let opened = get(other, link["url"].as_str().unwrap(), None, None).await;
        assert!(opened.bytes == shot);
    }
    // A link of a second lasts a second, on both.
    let link = api_a
        .get_ok(
            &format!("/api/v1/visitor/attachments/{shot_id}/link?ttl=1"),
            Some(&visitor.token),
        )
        .await;
    let short = link["url"].as_str().unwrap();
    assert_eq!(
        get(&b, short, None, None).await.status,
        200,
        "before it expires"
    );
    tokio::time::sleep(Duration::from_millis(2100)).await;
    for server in [&a, &b] {
        assert_eq!(get(server, short, None, None).await.status, 404, "expired");
    }

    // The admin erases the visitor through B: none of their bytes are left in the database,
    // and neither replica serves them.
    let boss = api_b.login(BOSS).await;
    let vid = api_b.details(&boss, &visitor.conv).await["visitor"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, body) = api_b
        .call(
            "DELETE",
            &format!("/api/v1/visitors/{vid}"),
            Some(&boss),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(pieces(&client, &sha256(&shot)).await, 0, "the picture went");
    assert_eq!(pieces(&client, &sha256(&big)).await, 0, "the document went");
    let left: i64 = client
        .query_one("SELECT count(*) FROM file_contents", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0);
    for server in [&a, &b] {
        let gone = get(
            server,
            &format!("/api/v1/attachments/{big_id}"),
            Some(&boss),
            None,
        )
        .await;
        assert_eq!(gone.status, 404);
    }
    for server in [&a, &b] {
        assert!(files_on_disk(server).is_empty());
    }

    // The same file up and down one server on SQLite, for comparison.
    let lite =
        tokio::task::spawn_blocking(|| Bundle::live(1).serve_with(&[&agent_email(0)], &[RESERVE]))
            .await
            .unwrap();
    let api = Api::new(&lite.url);
    let visitor = api.session("support").await;
    let started = Instant::now();
    let up = upload(&lite, &visitor.token, "r.pdf", big.clone()).await;
    let up_took = started.elapsed();
    assert_eq!(up.status, 201);
    let id = up.json()["id"].as_str().unwrap().to_string();
    let started = Instant::now();
    let down = get(
        &lite,
        &format!("/api/v1/attachments/{id}"),
        Some(&visitor.token),
        None,
    )
    .await;
    println!(
        "{LARGEST} bytes on SQLite: up in {up_took:?}, down in {:?}",
        started.elapsed()
    );
    assert!(down.bytes == big);
}
