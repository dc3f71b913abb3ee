//! Attachments over the real server: uploads by a visitor and an agent, messages that carry
//! them (`message.created` lists them), downloads byte for byte, and the hostile side:
//! files that pretend to be something else are served inert, other people get 404, limits
//! refuse with nothing stored, and the disk reserve refuses files while chat goes on.
//! One server serves every section; the reserve needs a second one.

mod common;

use std::path::Path;
use std::time::Duration;

use common::live::{Api, Console, RawReply, Session, agent_email};
use common::{Bundle, TestServer, bot};
use serde_json::{Value, json};

/// `text` for a query string.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A PNG's signature and header chunk for `w` × `h` (no pixels: nothing here decodes them).
fn png(w: u32, h: u32) -> Vec<u8> {
    let mut b = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
    b.extend(w.to_be_bytes());
    b.extend(h.to_be_bytes());
    b.extend(b"\x08\x06\0\0\0 some more bytes of a picture");
    b
}

/// A disk reserve this machine's free space is sure to clear, whatever else fills its disk:
/// the reserve has a test of its own.
const ROOMY: &[(&str, &str)] = &[("LIVECHAT_ATTACHMENT_RESERVE", "1MB")];

const PDF: &[u8] = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << >>\n%%EOF\n";
const SVG: &[u8] = b"<svg xmlns=\"http://www.w3.org/2000/svg\" onload=\"alert(1)\"><script>alert(2)</script></svg>";
const HTML: &[u8] =
    b"<!doctype html><html><body><script>alert(document.cookie)</script></body></html>";

/// A WAV header and a second of silence-ish bytes.
fn wav() -> Vec<u8> {
    let mut b = b"RIFF\x24\x1f\0\0WAVEfmt ".to_vec();
    b.extend([0u8; 8000]);
    b
}

struct World {
    server: TestServer,
    api: Api,
    http: reqwest::Client,
    agent: Console,
    visitor: Session,
}

impl World {
    async fn send(&self, req: reqwest::RequestBuilder) -> RawReply {
        self.try_send(req).await.expect("the server answers")
    }

    async fn try_send(&self, req: reqwest::RequestBuilder) -> Result<RawReply, reqwest::Error> {
        RawReply::of(req).await
    }

    /// Uploads `bytes` as the visitor with this token.
    async fn visitor_upload(&self, token: &str, name: &str, mime: &str, bytes: &[u8]) -> RawReply {
        let req = self
            .http
            .post(format!(
                "{}/api/v1/visitor/attachments?name={}",
                self.server.url,
                encode(name)
            ))
            .bearer_auth(token)
            .header("content-type", mime)
            .body(bytes.to_vec());
        self.send(req).await
    }

    async fn agent_upload(&self, conv: &str, name: &str, mime: &str, bytes: &[u8]) -> RawReply {
        let req = self
            .http
            .post(format!(
                "{}/api/v1/conversations/{conv}/attachments?name={}",
                self.server.url,
                encode(name)
            ))
            .bearer_auth(&self.agent.token)
            .header("content-type", mime)
            .body(bytes.to_vec());
        self.send(req).await
    }

    /// `GET` of a path of the server, with a bearer token when given.
    async fn get(&self, path: &str, token: Option<&str>, range: Option<&str>) -> RawReply {
        let mut req = self.http.get(format!("{}{path}", self.server.url));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(r) = range {
            req = req.header("range", r);
        }
        self.send(req).await
    }

    /// The stored files (not counting uploads in progress): those under the data
    /// directory and, on PostgreSQL, the contents and previews in `file_contents`.
    fn stored_files(&self) -> usize {
        fn walk(dir: &Path, n: &mut usize) {
            let Ok(entries) = std::fs::read_dir(dir) else {
                return;
            };
            for e in entries.flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(&p, n);
                } else {
                    *n += 1;
                }
            }
        }
        let mut n = 0;
        walk(&self.server.data_dir.join("files"), &mut n);
        if self.server.database_url().is_some() {
            let kept =
                "SELECT count(*) FROM (SELECT DISTINCT sha256, preview FROM file_contents) f";
            n += usize::try_from(self.server.count(kept)).unwrap();
        }
        n
    }
}

/// Every attachment response is inert in a browser, whatever the file.
fn assert_inert(r: &RawReply, what: &str) {
    assert_eq!(r.header("x-content-type-options"), "nosniff", "{what}");
    assert_eq!(r.header("content-security-policy"), "sandbox", "{what}");
}

fn assert_download(r: &RawReply, what: &str) {
    assert_eq!(r.status, 200, "{what}");
    assert_inert(r, what);
    assert_eq!(
        r.header("content-type"),
        "application/octet-stream",
        "{what}"
    );
    assert!(
        r.header("content-disposition").starts_with("attachment;"),
        "{what}: {}",
        r.header("content-disposition")
    );
}

async fn world() -> World {
    let tiny = format!(
        "{}\n[attachments]\nmax_size = \"1KB\"\ntypes = [\"image\"]\n",
        bot("Tiny", "Hi")
    );
    let closed = format!("{}\n[attachments]\nenabled = false\n", bot("Closed", "Hi"));
    let server = Bundle::live(1)
        .bot("tiny", tiny)
        .bot("closed", closed)
        .serve_with(&[&agent_email(0)], ROOMY);
    let api = Api::new(&server.url);
    let agent = api.go_online(&agent_email(0)).await;
    let visitor = api.session("support").await;
    api.request_live_chat(&visitor.token).await;
    api.act_ok(&agent.token, &visitor.conv, "accept", json!({}))
        .await;
    World {
        server,
        api,
        http: reqwest::Client::new(),
        agent,
        visitor,
    }
}

#[tokio::test]
async fn attachments_go_both_ways_and_are_served_safely() {
    let mut w = world().await;
    both_ways(&mut w).await;
    hostile_files_are_inert(&w).await;
    only_those_who_may_see_get_them(&w).await;
    limits_refuse_with_nothing_stored(&w).await;
    audio_is_served_in_ranges(&w).await;
    a_huge_picture_costs_nothing(&w).await;
    previews_are_small_and_carry_no_metadata(&mut w).await;
}

async fn both_ways(w: &mut World) {
    let shot = png(64, 48);
    let up = w
        .visitor_upload(&w.visitor.token, "screen shot.png", "image/png", &shot)
        .await;
    assert_eq!(up.status, 201, "{:?}", up.json());
    let a = up.json();
    assert!(a["id"].as_str().unwrap().starts_with("a_"), "{a}");
    assert_eq!(a["name"], "screen shot.png");
    assert_eq!(a["type"], "image/png");
    assert_eq!(a["size"], shot.len());
    assert_eq!(
        (a["width"].as_u64(), a["height"].as_u64()),
        (Some(64), Some(48))
    );
    let id = a["id"].as_str().unwrap().to_string();

    // A message of files alone; sent twice with one client id, it is one message.
    let body = json!({"client_id": "shot-1", "attachments": [id]});
    let first = w
        .api
        .post_ok(
            "/api/v1/visitor/messages",
            Some(&w.visitor.token),
            body.clone(),
        )
        .await;
    let again = w
        .api
        .post_ok("/api/v1/visitor/messages", Some(&w.visitor.token), body)
        .await;
    assert_eq!(again["duplicate"], true, "{again}");
    assert_eq!(again["message_id"], first["message_id"]);
    let event = w
        .agent
        .stream
        .wait_for(Duration::from_secs(10), "the visitor's files", |v| {
            v["type"] == "message.created" && v["data"]["attachments"].is_array()
        })
        .await;
    let listed = &event["data"]["attachments"][0];
    assert_eq!(listed["id"], id.as_str(), "{event}");
    assert_eq!(listed["name"], "screen shot.png");
    assert_eq!(listed["type"], "image/png");
    assert_eq!(listed["width"], 64);
    let url = listed["url"].as_str().unwrap().to_string();
    assert_eq!(url, format!("/api/v1/attachments/{id}"));

    // The agent sees the picture inline, byte for byte.
    let got = w.get(&url, Some(&w.agent.token), None).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.bytes, shot);
    assert_eq!(got.header("content-type"), "image/png");
    assert!(got.header("content-disposition").starts_with("inline;"));
    assert_inert(&got, "the screenshot");

    // The agent sends a PDF back with a text; the visitor downloads it byte for byte.
    let up = w
        .agent_upload(&w.visitor.conv, "invoice.pdf", "application/pdf", PDF)
        .await;
    assert_eq!(up.status, 201, "{:?}", up.json());
    assert_eq!(up.json()["type"], "application/pdf");
    let pdf_id = up.json()["id"].as_str().unwrap().to_string();
    w.api
        .act_ok(
            &w.agent.token,
            &w.visitor.conv,
            "messages",
            json!({"text": "Your invoice", "attachments": [pdf_id]}),
        )
        .await;
    let history = w.api.history(&w.visitor.token, 0).await;
    let sent = history
        .iter()
        .find(|e| e["data"]["text"] == "Your invoice")
        .expect("the agent's message in the visitor's history");
    assert_eq!(sent["data"]["attachments"][0]["id"], pdf_id.as_str());
    assert_eq!(sent["data"]["attachments"][0]["name"], "invoice.pdf");
    let got = w
        .get(
            &format!("/api/v1/attachments/{pdf_id}"),
            Some(&w.visitor.token),
            None,
        )
        .await;
    assert_download(&got, "the PDF");
    assert_eq!(got.bytes, PDF);
    assert!(
        got.header("content-disposition")
            .contains("filename*=UTF-8''invoice.pdf"),
        "{}",
        got.header("content-disposition")
    );

    // The same file sent twice is stored once.
    let before = w.stored_files();
    let up = w
        .visitor_upload(&w.visitor.token, "again.png", "image/png", &shot)
        .await;
    assert_eq!(up.status, 201);
    assert_ne!(up.json()["id"], id.as_str());
    assert_eq!(w.stored_files(), before);

    // Neither text nor files is no message; a blank text is an empty one; notes carry no files.
    let (status, body) = w
        .api
        .post(
            "/api/v1/visitor/messages",
            Some(&w.visitor.token),
            json!({"attachments": []}),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_body")),
        "{body}"
    );
    let (status, body) = w
        .api
        .post(
            "/api/v1/visitor/messages",
            Some(&w.visitor.token),
            json!({"text": " ", "attachments": []}),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_input")),
        "{body}"
    );
    let (status, body) = w
        .api
        .act(
            &w.agent.token,
            &w.visitor.conv,
            "notes",
            json!({"text": "see file", "attachments": [pdf_id]}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
}

async fn hostile_files_are_inert(w: &World) {
    // What each claims to be, and what it is.
    let mut polyglot = b"GIF89a\x01\x00\x01\x00".to_vec();
    polyglot.extend(HTML);
    let cases: [(&str, &str, Vec<u8>, &str); 4] = [
        (
            "evil.svg",
            "image/svg+xml",
            SVG.to_vec(),
            "application/octet-stream",
        ),
        (
            "page.png",
            "image/png",
            HTML.to_vec(),
            "application/octet-stream",
        ),
        ("poly.gif", "text/html", polyglot, "image/gif"),
        ("forged.html", "text/html", png(2, 2), "image/png"),
    ];
    for (name, claimed, bytes, actual) in cases {
        let up = w
            .visitor_upload(&w.visitor.token, name, claimed, &bytes)
            .await;
        assert_eq!(up.status, 201, "{name}: {:?}", up.json());
        assert_eq!(up.json()["type"], actual, "{name}");
        let url = up.json()["url"].as_str().unwrap().to_string();
        let got = w.get(&url, Some(&w.visitor.token), None).await;
        assert_eq!(got.bytes, bytes, "{name}");
        assert_inert(&got, name);
        if actual == "application/octet-stream" {
            assert_download(&got, name);
        } else {
            // Shown inline only as the picture its bytes make, never as a page.
            assert_eq!(got.header("content-type"), actual, "{name}");
        }
    }
}

async fn only_those_who_may_see_get_them(w: &World) {
    let up = w
        .visitor_upload(&w.visitor.token, "mine.pdf", "application/pdf", PDF)
        .await;
    let id = up.json()["id"].as_str().unwrap().to_string();
    let url = format!("/api/v1/attachments/{id}");
    let other = w.api.session("support").await;
    let not_found = |r: &RawReply, what: &str| {
        assert_eq!(r.status, 404, "{what}");
        assert_eq!(r.json()["error"]["code"], "not_found", "{what}");
    };
    not_found(
        &w.get(&url, Some(&other.token), None).await,
        "another visitor",
    );
    not_found(&w.get(&url, None, None).await, "nobody");
    not_found(
        &w.get(
            "/api/v1/attachments/a_0000000000000000",
            Some(&w.visitor.token),
            None,
        )
        .await,
        "a guessed id",
    );
    // Another visitor cannot send it either.
    let (status, body) = w
        .api
        .post(
            "/api/v1/visitor/messages",
            Some(&other.token),
            json!({"text": "look", "attachments": [id]}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "unknown_attachment");

    // A signed link opens it without a token, until it expires; a forged one never.
    let link = w
        .api
        .get_ok(
            &format!("/api/v1/visitor/attachments/{id}/link?ttl=1"),
            Some(&w.visitor.token),
        )
        .await;
    let signed = link["url"].as_str().unwrap().to_string();
    assert_eq!(w.get(&signed, None, None).await.bytes, PDF);
    let forged = signed.replace("sig=", "sig=00");
    not_found(&w.get(&forged, None, None).await, "a forged link");
    let (status, _) = w
        .api
        .get(
            &format!("/api/v1/visitor/attachments/{id}/link"),
            Some(&other.token),
        )
        .await;
    assert_eq!(status, 404, "another visitor's link");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    not_found(&w.get(&signed, None, None).await, "an expired link");
}

async fn limits_refuse_with_nothing_stored(w: &World) {
    let before = w.stored_files();
    let tiny = w.api.session("tiny").await;
    let big = vec![b'x'; 2000];
    let mut big_png = png(10, 10);
    big_png.extend(&big);
    let r = w
        .visitor_upload(&tiny.token, "big.png", "image/png", &big_png)
        .await;
    assert_eq!(r.status, 413, "{:?}", r.json());
    assert_eq!(r.json()["error"]["code"], "file_too_large");
    let r = w
        .visitor_upload(&tiny.token, "doc.pdf", "application/pdf", PDF)
        .await;
    assert_eq!(r.status, 415, "{:?}", r.json());
    assert_eq!(r.json()["error"]["code"], "type_not_allowed");
    let closed = w.api.session("closed").await;
    // Its widget shows no file button.
    let started = w.api.visitor("closed").await;
    assert_eq!(started["widget"]["attachments"], false, "{started}");
    assert_eq!(w.api.visitor("tiny").await["widget"]["attachments"], true);
    let r = w
        .visitor_upload(&closed.token, "a.png", "image/png", &png(1, 1))
        .await;
    assert_eq!(r.status, 403, "{:?}", r.json());
    assert_eq!(r.json()["error"]["code"], "attachments_disabled");
    let r = w
        .visitor_upload(&w.visitor.token, "empty.png", "image/png", b"")
        .await;
    assert_eq!(r.json()["error"]["code"], "empty_file");
    // Over the default 10 MB of `support`.
    // Refused on its declared length, before the body is read: the client may see the
    // connection close while it still sends, or the answer.
    let huge = vec![0u8; 10_000_001];
    let req = w
        .http
        .post(format!(
            "{}/api/v1/visitor/attachments?name=huge.bin",
            w.server.url
        ))
        .bearer_auth(&w.visitor.token)
        .body(huge);
    if let Ok(r) = w.try_send(req).await {
        assert_eq!(r.status, 413);
        assert_eq!(r.json()["error"]["code"], "file_too_large");
    }
    assert_eq!(w.stored_files(), before, "a refused upload leaves no file");
    let tmp = std::fs::read_dir(w.server.data_dir.join("files/tmp"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(tmp, 0, "no upload left half-written");
}

async fn audio_is_served_in_ranges(w: &World) {
    let audio = wav();
    let up = w
        .visitor_upload(&w.visitor.token, "note.wav", "audio/wav", &audio)
        .await;
    assert_eq!(up.json()["type"], "audio/wav");
    let url = up.json()["url"].as_str().unwrap().to_string();
    let part = w
        .get(&url, Some(&w.visitor.token), Some("bytes=4-13"))
        .await;
    assert_eq!(part.status, 206);
    assert_eq!(
        part.header("content-range"),
        format!("bytes 4-13/{}", audio.len())
    );
    assert_eq!(part.bytes, audio[4..14]);
    assert_inert(&part, "a range");
    let tail = w.get(&url, Some(&w.visitor.token), Some("bytes=-5")).await;
    assert_eq!(tail.bytes, audio[audio.len() - 5..]);
    let beyond = w
        .get(&url, Some(&w.visitor.token), Some("bytes=999999-"))
        .await;
    assert_eq!(beyond.status, 416);
}

/// Resident memory of the server process, in kB.
fn rss_kb(server: &TestServer) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.child.id())).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// A real PNG of `side` × `side` black pixels (1-bit grey): a few dozen kilobytes that
/// decode to `side`² bytes or more.
fn png_bomb(side: u32) -> Vec<u8> {
    use std::io::Write;
    fn chunk(out: &mut Vec<u8>, kind: &[u8], data: &[u8]) {
        out.extend((data.len() as u32).to_be_bytes());
        let mut crc = flate2::Crc::new();
        crc.update(kind);
        crc.update(data);
        out.extend(kind);
        out.extend(data);
        out.extend(crc.sum().to_be_bytes());
    }
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = side.to_be_bytes().to_vec();
    ihdr.extend(side.to_be_bytes());
    ihdr.extend([1, 0, 0, 0, 0]); // 1 bit, grey, deflate, no filter, no interlace
    chunk(&mut out, b"IHDR", &ihdr);
    let row = vec![0u8; 1 + side.div_ceil(8) as usize];
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    for _ in 0..side {
        z.write_all(&row).unwrap();
    }
    chunk(&mut out, b"IDAT", &z.finish().unwrap());
    chunk(&mut out, b"IEND", b"");
    out
}

async fn a_huge_picture_costs_nothing(w: &World) {
    let before = rss_kb(&w.server);
    let bomb = png_bomb(20_000);
    assert!(bomb.len() < 1_000_000, "{} bytes", bomb.len());
    let up = w
        .visitor_upload(&w.visitor.token, "bomb.png", "image/png", &bomb)
        .await;
    assert_eq!(up.status, 201, "{:?}", up.json());
    // Its size is read from its header; over the pixel bound no pixel is decoded: no preview.
    assert_eq!(up.json()["width"], 20_000);
    assert!(up.json().get("preview_url").is_none(), "{}", up.json());
    let after = rss_kb(&w.server);
    // 20,000 × 20,000 RGBA decoded would be 1.6 GB; allow for ordinary noise.
    assert!(
        after < before + 50_000,
        "RSS went from {before} kB to {after} kB"
    );
}

#[tokio::test]
async fn the_disk_reserve_refuses_files_while_chat_goes_on() {
    let bundle = Bundle::live(1);
    let server = TestServer::start(
        |dir| bundle.write(dir),
        &[("LIVECHAT_ATTACHMENT_RESERVE", "100%")],
    );
    let api = Api::new(&server.url);
    let visitor = api.session("support").await;
    let resp = reqwest::Client::new()
        .post(format!(
            "{}/api/v1/visitor/attachments?name=a.png",
            server.url
        ))
        .bearer_auth(&visitor.token)
        .body(png(1, 1))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 507);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "storage_reserve", "{body}");
    let sent = api
        .post_ok(
            "/api/v1/visitor/messages",
            Some(&visitor.token),
            json!({"text": "can you still hear me?"}),
        )
        .await;
    assert!(sent["seq"].is_i64(), "{sent}");
}

// ---- In real Chromium: the widget and the console ---------------------------------------

/// A real WAV: half a second of a 440 Hz tone, 8 kHz, 16-bit mono.
fn tone_wav() -> Vec<u8> {
    let samples: Vec<i16> = (0..4000)
        .map(|i| ((i as f64 * 440.0 * std::f64::consts::TAU / 8000.0).sin() * 8000.0) as i16)
        .collect();
    let data = samples.len() as u32 * 2;
    let mut b = b"RIFF".to_vec();
    b.extend((36 + data).to_le_bytes());
    b.extend(b"WAVEfmt ");
    b.extend(16u32.to_le_bytes());
    b.extend(1u16.to_le_bytes()); // PCM
    b.extend(1u16.to_le_bytes()); // mono
    b.extend(8000u32.to_le_bytes());
    b.extend(16000u32.to_le_bytes());
    b.extend(2u16.to_le_bytes());
    b.extend(16u16.to_le_bytes());
    b.extend(b"data");
    b.extend(data.to_le_bytes());
    for s in samples {
        b.extend(s.to_le_bytes());
    }
    b
}

async fn run_js(browser: &common::browser::Browser, script: &str, args: Vec<Value>) -> Value {
    browser
        .client
        .execute(script, args)
        .await
        .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
}

/// Polls `script` until it answers true.
async fn wait_true(browser: &common::browser::Browser, what: &str, script: &str) {
    let start = std::time::Instant::now();
    loop {
        if run_js(browser, script, vec![]).await == Value::Bool(true) {
            return;
        }
        if start.elapsed() > Duration::from_secs(15) {
            let text = run_js(browser, "return document.body.innerText;", vec![]).await;
            panic!("never true: {what}\nthe page says:\n{text}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A script that pastes files into the element `target` (a CSS selector, in the widget's
/// shadow root when `shadow`): `arguments[0]` is `[[name, type, bytes]]`, or a PNG drawn on
/// a canvas when `bytes` is null.
const PASTE: &str = "
  const [files, target, shadow, how] = arguments;
  const done = arguments[arguments.length - 1];
  const root = shadow ? document.querySelector('[data-livechat]').shadowRoot : document;
  const picture = () => new Promise((ok) => {
    const c = document.createElement('canvas');
    c.width = 40; c.height = 30;
    const g = c.getContext('2d');
    g.fillStyle = '#c00'; g.fillRect(0, 0, 40, 30);
    c.toBlob(ok, 'image/png');
  });
  (async () => {
    const dt = new DataTransfer();
    for (const [name, type, bytes] of files) {
      const blob = bytes ? new Blob([new Uint8Array(bytes)], { type }) : await picture();
      dt.items.add(new File([blob], name, { type }));
    }
    const el = root.querySelector(target);
    el.dispatchEvent(how === 'drop'
      ? new DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true })
      : new ClipboardEvent('paste', { clipboardData: dt, bubbles: true, cancelable: true }));
    done(true);
  })().catch((e) => done(String(e)));
";

async fn paste(
    browser: &common::browser::Browser,
    files: Value,
    target: &str,
    shadow: bool,
    how: &str,
) {
    let r = browser
        .client
        .execute_async(PASTE, vec![files, json!(target), json!(shadow), json!(how)])
        .await
        .unwrap();
    assert_eq!(r, Value::Bool(true), "pasting files failed: {r}");
}

/// Waits for a `message.created` of `author` carrying files on the agent's stream.
async fn files_from(console: &mut Console, author: &str) -> Value {
    console
        .stream
        .wait_for(Duration::from_secs(15), "a message with files", |v| {
            v["type"] == "message.created"
                && v["data"]["author"] == author
                && v["data"]["attachments"].is_array()
        })
        .await
}

#[tokio::test]
async fn in_chromium_files_go_both_ways_and_an_svg_runs_nothing() {
    let server = Bundle::live(1).serve_with(&[&agent_email(0)], ROOMY);
    let api = Api::new(&server.url);
    let mut agent = api.go_online(&agent_email(0)).await;
    let browser = common::browser::Browser::start().await;

    // The visitor asks for a person in the widget; the agent accepts.
    browser.goto(&format!("{}/chat/support", server.url)).await;
    wait_true(
        &browser,
        "the widget offers a person",
        "const h = document.querySelector('[data-livechat]');
         const r = h && h.shadowRoot;
         if (!r) return false;
         const live = r.querySelector('.lc-live');
         if (live) { live.click(); return true; }
         const c = [...r.querySelectorAll('.lc-choice')]
           .find((b) => b.textContent === 'Talk to a person');
         if (c && !window.chose) { window.chose = true; c.click(); }
         return false;",
    )
    .await;
    let ring = agent.stream.event("livechat.ringing", None).await;
    let conv = ring["conversation_id"].as_str().unwrap().to_string();
    api.act_ok(&agent.token, &conv, "accept", json!({})).await;

    // A pasted screenshot and a dropped PDF.
    paste(
        &browser,
        json!([["screenshot.png", "image/png", null]]),
        ".lc-input",
        true,
        "paste",
    )
    .await;
    let shot = files_from(&mut agent, "visitor").await;
    assert_eq!(
        shot["data"]["attachments"][0]["type"], "image/png",
        "{shot}"
    );
    paste(
        &browser,
        json!([["invoice.pdf", "application/pdf", PDF]]),
        ".lc-panel",
        true,
        "drop",
    )
    .await;
    let pdf = files_from(&mut agent, "visitor").await;
    assert_eq!(
        pdf["data"]["attachments"][0]["name"], "invoice.pdf",
        "{pdf}"
    );
    // And an SVG with a script, sent over the API with the widget's own token.
    let token = run_js(
        &browser,
        "return Object.entries(localStorage).find(([k]) => k.startsWith('livechat:'))[1];",
        vec![],
    )
    .await;
    let token = token.as_str().unwrap().trim_matches('"').to_string();
    let svg = b"<svg xmlns=\"http://www.w3.org/2000/svg\"><script>top.svgRan = true; top.document.title = 'pwned';</script></svg>";
    let up = reqwest::Client::new()
        .post(format!(
            "{}/api/v1/visitor/attachments?name=logo.svg",
            server.url
        ))
        .bearer_auth(&token)
        .header("content-type", "image/svg+xml")
        .body(svg.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(up.status().as_u16(), 201);
    let svg_id = up.json::<Value>().await.unwrap()["id"].clone();
    api.post_ok(
        "/api/v1/visitor/messages",
        Some(&token),
        json!({"attachments": [svg_id]}),
    )
    .await;

    // The agent's console: the picture inline, the PDF byte for byte, the SVG inert.
    browser.goto(&format!("{}/console", server.url)).await;
    browser.type_into("#signin-email", &agent_email(0)).await;
    browser
        .type_into("#signin-password", common::live::PASSWORD)
        .await;
    browser.click("#signin-submit").await;
    browser.wait_for_text("#me", &agent_email(0)).await;
    browser
        .click(&format!("#sec-mine .row[data-id='{conv}']"))
        .await;
    wait_true(
        &browser,
        "the screenshot shows inline",
        "const i = document.querySelector('#messages .msg-files img');
         // The server's preview inline; the link opens the original.
         return !!i && i.complete && i.naturalWidth === 40
           && i.getAttribute('src').endsWith('/preview')
           && !i.parentElement.getAttribute('href').endsWith('/preview');",
    )
    .await;
    let got = browser
        .client
        .execute_async(
            "const done = arguments[arguments.length - 1];
             const a = [...document.querySelectorAll('#messages .file-card')]
               .find((e) => e.textContent.startsWith('invoice.pdf'));
             fetch(a.href).then((r) => r.arrayBuffer())
               .then((b) => done(Array.from(new Uint8Array(b))), (e) => done(String(e)));",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(got, json!(PDF), "the PDF downloads byte for byte");
    let title = run_js(&browser, "return document.title;", vec![]).await;
    run_js(
        &browser,
        "const a = [...document.querySelectorAll('#messages .file-card')]
           .find((e) => e.textContent.startsWith('logo.svg'));
         const f = document.createElement('iframe');
         f.src = a.href;
         document.body.append(f);
         return true;",
        vec![],
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let ran = run_js(
        &browser,
        "return [window.svgRan === true, document.title];",
        vec![],
    )
    .await;
    assert_eq!(ran, json!([false, title]), "the SVG's script ran");

    // The agent pastes a picture and a voice note back.
    paste(
        &browser,
        json!([["reply.png", "image/png", null]]),
        "#composer-text",
        false,
        "paste",
    )
    .await;
    files_from(&mut agent, "agent").await;
    paste(
        &browser,
        json!([["note.wav", "audio/wav", tone_wav()]]),
        "#composer-text",
        false,
        "paste",
    )
    .await;
    let voice = files_from(&mut agent, "agent").await;
    assert_eq!(
        voice["data"]["attachments"][0]["type"], "audio/wav",
        "{voice}"
    );

    // The visitor sees the picture and plays the voice note.
    browser.goto(&format!("{}/chat/support", server.url)).await;
    wait_true(
        &browser,
        "the agent's picture shows in the widget",
        "const h = document.querySelector('[data-livechat]');
         const i = h && h.shadowRoot && h.shadowRoot.querySelector('.lc-agent .lc-file-img');
         return !!i && i.complete && i.naturalWidth === 40 && i.src.includes('/preview?')
           && !!i.parentElement.href && !i.parentElement.href.includes('/preview');",
    )
    .await;
    wait_true(
        &browser,
        "the voice note can play",
        "const h = document.querySelector('[data-livechat]');
         const a = h && h.shadowRoot && h.shadowRoot.querySelector('.lc-agent audio');
         if (!a || !a.src) return false;
         if (a.preload !== 'auto') { a.preload = 'auto'; a.load(); }
         return a.readyState >= 2;",
    )
    .await;
    browser.close().await;
}

// ---- Previews ----------------------------------------------------------------------------

/// The markers of a JPEG's segments before its scan (SOI first).
fn jpeg_markers(bytes: &[u8]) -> Vec<u8> {
    assert_eq!(&bytes[..2], b"\xff\xd8", "a JPEG");
    let mut markers = vec![0xd8];
    let mut i = 2;
    while i + 4 <= bytes.len() && bytes[i] == 0xff {
        let marker = bytes[i + 1];
        markers.push(marker);
        if marker == 0xda {
            break;
        }
        let len = u16::from_be_bytes([bytes[i + 2], bytes[i + 3]]) as usize;
        i += 2 + len;
    }
    markers
}

/// A photo as a phone sends it: 1600 × 1200 with an EXIF segment whose GPS IFD says where.
fn photo_with_gps() -> Vec<u8> {
    let img = image::RgbImage::from_fn(1600, 1200, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, ((x + y) % 256) as u8])
    });
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 85)
        .encode_image(&img)
        .unwrap();
    // TIFF, big-endian: IFD0 with one entry, the GPS IFD pointer (0x8825), to a GPS IFD with
    // GPSLatitudeRef "N" and GPSLatitude 48/1 0/1 0/1.
    let mut tiff = b"MM\0\x2a\0\0\0\x08".to_vec();
    tiff.extend([0, 1, 0x88, 0x25, 0, 4, 0, 0, 0, 1, 0, 0, 0, 26, 0, 0, 0, 0]);
    tiff.extend([0, 2]);
    tiff.extend([0, 1, 0, 2, 0, 0, 0, 2, b'N', 0, 0, 0]);
    tiff.extend([0, 2, 0, 5, 0, 0, 0, 3, 0, 0, 0, 56]);
    tiff.extend([0, 0, 0, 0]);
    for n in [48u32, 1, 0, 1, 0, 1] {
        tiff.extend(n.to_be_bytes());
    }
    let mut app1 = b"\xff\xe1".to_vec();
    app1.extend(((2 + 6 + tiff.len()) as u16).to_be_bytes());
    app1.extend(b"Exif\0\0");
    app1.extend(tiff);
    jpeg.splice(2..2, app1);
    jpeg
}

async fn previews_are_small_and_carry_no_metadata(w: &mut World) {
    let photo = photo_with_gps();
    assert!(
        jpeg_markers(&photo).contains(&0xe1),
        "the photo has its EXIF"
    );
    let up = w
        .visitor_upload(&w.visitor.token, "IMG_0001.jpg", "image/jpeg", &photo)
        .await;
    assert_eq!(up.status, 201, "{:?}", up.json());
    let a = up.json();
    // The original's size, from its frame header.
    assert_eq!(
        (a["width"].as_u64(), a["height"].as_u64()),
        (Some(1600), Some(1200))
    );
    let id = a["id"].as_str().unwrap().to_string();
    assert_eq!(
        a["preview_url"],
        format!("/api/v1/attachments/{id}/preview"),
        "{a}"
    );

    // The preview: a JPEG within the box, with no APP1 (EXIF) segment and no GPS anywhere.
    let preview = w
        .get(
            a["preview_url"].as_str().unwrap(),
            Some(&w.visitor.token),
            None,
        )
        .await;
    assert_eq!(preview.status, 200);
    assert_inert(&preview, "the preview");
    assert_eq!(preview.header("content-type"), "image/jpeg");
    let markers = jpeg_markers(&preview.bytes);
    assert!(!markers.contains(&0xe1), "no APP1 in {markers:x?}");
    assert!(
        !preview.bytes.windows(4).any(|b| b == b"Exif"),
        "no Exif anywhere in the preview"
    );
    let shown = image::load_from_memory(&preview.bytes).unwrap();
    assert_eq!((shown.width(), shown.height()), (800, 600));

    // The original is kept as sent, metadata and all.
    let original = w
        .get(
            &format!("/api/v1/attachments/{id}"),
            Some(&w.visitor.token),
            None,
        )
        .await;
    assert_eq!(original.status, 200);
    assert!(original.bytes == photo, "the original, byte for byte");

    // The visitor's signed link opens both, without a token; others get 404.
    let link = w
        .get(
            &format!("/api/v1/visitor/attachments/{id}/link"),
            Some(&w.visitor.token),
            None,
        )
        .await
        .json();
    let signed = w
        .get(link["preview_url"].as_str().unwrap(), None, None)
        .await;
    assert_eq!(signed.bytes, preview.bytes);
    let other = w.api.session("support").await;
    let denied = w
        .get(a["preview_url"].as_str().unwrap(), Some(&other.token), None)
        .await;
    assert_eq!(denied.status, 404);

    // In a message, the agent's event carries the preview too.
    w.api
        .post_ok(
            "/api/v1/visitor/messages",
            Some(&w.visitor.token),
            json!({"client_id": "photo-1", "attachments": [id]}),
        )
        .await;
    let event = w
        .agent
        .stream
        .wait_for(Duration::from_secs(10), "the photo", |v| {
            v["type"] == "message.created" && v["data"]["attachments"][0]["id"] == id.as_str()
        })
        .await;
    assert_eq!(
        event["data"]["attachments"][0]["preview_url"],
        a["preview_url"]
    );

    // A picture with transparency keeps it: a PNG preview.
    let mut clear = image::RgbaImage::from_pixel(900, 300, image::Rgba([200, 0, 0, 255]));
    clear.put_pixel(5, 5, image::Rgba([0, 0, 0, 0]));
    let mut bytes = std::io::Cursor::new(Vec::new());
    clear.write_to(&mut bytes, image::ImageFormat::Png).unwrap();
    let up = w
        .visitor_upload(&w.visitor.token, "logo.png", "image/png", bytes.get_ref())
        .await;
    assert_eq!(up.status, 201);
    let got = w
        .get(
            up.json()["preview_url"].as_str().unwrap(),
            Some(&w.visitor.token),
            None,
        )
        .await;
    assert_eq!(got.header("content-type"), "image/png");
    let shown = image::load_from_memory(&got.bytes).unwrap();
    assert_eq!((shown.width(), shown.height()), (800, 267));

    // Broken pictures upload as they are, with no preview: a PNG header with nothing after
    // it, a JPEG frame header with no scan.
    let mut broken_jpeg = b"\xff\xd8\xff\xc0\x00\x11\x08\x00\x64\x00\x64\x03".to_vec();
    broken_jpeg.extend([1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1]);
    broken_jpeg.extend(b"\xff\xd9");
    for (name, mime, bytes) in [
        ("cut.png", "image/png", png(640, 480)),
        ("cut.jpg", "image/jpeg", broken_jpeg),
    ] {
        let up = w.visitor_upload(&w.visitor.token, name, mime, &bytes).await;
        assert_eq!(up.status, 201, "{name}: {:?}", up.json());
        assert_eq!(up.json()["type"], mime, "{name}");
        assert!(
            up.json().get("preview_url").is_none(),
            "{name}: {}",
            up.json()
        );
        let id = up.json()["id"].as_str().unwrap().to_string();
        let none = w
            .get(
                &format!("/api/v1/attachments/{id}/preview"),
                Some(&w.visitor.token),
                None,
            )
            .await;
        assert_eq!(none.status, 404, "{name}");
        let kept = w
            .get(
                &format!("/api/v1/attachments/{id}"),
                Some(&w.visitor.token),
                None,
            )
            .await;
        assert_eq!(kept.bytes, bytes, "{name}");
    }
    // A recording's length comes from its header (WAV); a file that is not one has none.
    let up = w
        .visitor_upload(&w.visitor.token, "tone.wav", "audio/wav", &tone_wav())
        .await;
    assert_eq!(up.status, 201);
    assert_eq!(up.json()["duration"], 0.5, "{}", up.json());
    assert!(up.json().get("preview_url").is_none());
    let up = w
        .visitor_upload(&w.visitor.token, "bare.wav", "audio/wav", &wav())
        .await;
    assert!(up.json().get("duration").is_none(), "{}", up.json());

    // No preview is left half-written among the uploads in progress.
    let tmp = w.server.data_dir.join("files").join("tmp");
    let left: Vec<_> = std::fs::read_dir(&tmp)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
}

/// The key of signed links is kept (on SQLite in the data directory, `link.key`, the
/// server's user's alone; on PostgreSQL as the one row of `link_key`): a link made before
/// a restart still opens after it, and a tampered one does not.
#[tokio::test]
async fn a_signed_link_outlives_a_restart() {
    let server = Bundle::live(1).serve_with(&[], ROOMY);
    let api = Api::new(&server.url);
    let visitor = api.session("support").await;
    let shot = png(8, 8);
    let up = reqwest::Client::new()
        .post(format!(
            "{}/api/v1/visitor/attachments?name=a.png",
            server.url
        ))
        .bearer_auth(&visitor.token)
        .body(shot.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(up.status(), 201);
    let id = up.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let link = api
        .get_ok(
            &format!("/api/v1/visitor/attachments/{id}/link"),
            Some(&visitor.token),
        )
        .await;
    let path = link["url"].as_str().unwrap().to_string();
    let key = server.data_dir.join("link.key");
    if server.database_url().is_some() {
        let keys = "SELECT count(*) FROM link_key WHERE length(key) = 32";
        assert_eq!(server.count(keys), 1, "one key, in the database");
        assert!(!key.exists(), "no key in the data directory on PostgreSQL");
    } else {
        assert_eq!(std::fs::read(&key).unwrap().len(), 32);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&key).unwrap().permissions().mode();
            assert_eq!(
                mode & 0o077,
                0,
                "readable by the server's user only: {mode:o}"
            );
        }
    }
    let server = tokio::task::spawn_blocking(move || server.kill_and_restart())
        .await
        .unwrap();
    let get = |path: String| {
        let url = format!("{}{path}", server.url);
        async move { reqwest::get(url).await.unwrap() }
    };
    let opened = get(path.clone()).await;
    assert_eq!(opened.status(), 200, "the link made before the restart");
    assert_eq!(opened.bytes().await.unwrap().to_vec(), shot);
    let last = if path.ends_with('0') { "1" } else { "0" };
    let tampered = format!("{}{last}", &path[..path.len() - 1]);
    assert_eq!(get(tampered).await.status(), 404);
}
