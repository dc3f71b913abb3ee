//! How the widget and the console's files reach browsers, over real HTTP from the real
//! binary: compressed by `Accept-Encoding` (and decoding to the same bytes), revalidated by
//! `ETag`, cacheable for a year at the versioned URL `/healthz` names.

mod common;

use std::io::Read;

use common::TestServer;

/// A client that decodes nothing, so the test sees the bytes on the wire.
async fn get(
    url: &str,
    headers: &[(&str, &str)],
) -> (reqwest::StatusCode, reqwest::header::HeaderMap, Vec<u8>) {
    let mut req = reqwest::Client::new().get(url);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let res = req.send().await.unwrap();
    let (status, headers) = (res.status(), res.headers().clone());
    (status, headers, res.bytes().await.unwrap().to_vec())
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .unwrap();
    out
}

fn unbrotli(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    brotli::Decompressor::new(bytes, 4096)
        .read_to_end(&mut out)
        .unwrap();
    out
}

async fn server() -> TestServer {
    tokio::task::spawn_blocking(|| {
        TestServer::start(
            |dir| {
                common::Bundle::new()
                    .team("support", &["support"])
                    .agent("Ana Lima", "ana@acme.example", "support")
                    .bot("support", common::bot("Support", "Hi"))
                    .write(dir)
            },
            &[],
        )
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn the_widget_is_sent_compressed_and_decodes_to_the_file() {
    let server = server().await;
    let url = format!("{}/widget.js", server.url);
    let (status, h, plain) = get(&url, &[]).await;
    assert_eq!(status, 200);
    assert!(h.get("content-encoding").is_none());
    assert_eq!(h["content-type"], "text/javascript; charset=utf-8");
    assert!(
        plain.starts_with(b"/*") || plain.starts_with(b"("),
        "{:?}",
        &plain[..20]
    );

    let (status, h, br) = get(&url, &[("accept-encoding", "br")]).await;
    assert_eq!(status, 200);
    assert_eq!(h["content-encoding"], "br");
    assert_eq!(h["vary"], "Accept-Encoding");
    assert_eq!(h["content-length"].to_str().unwrap(), br.len().to_string());
    assert!(
        br.len() < 12 * 1024,
        "the widget is {} bytes with brotli",
        br.len()
    );
    assert_eq!(unbrotli(&br), plain);

    // What browsers send: brotli wins.
    let (_, h, _) = get(&url, &[("accept-encoding", "gzip, deflate, br, zstd")]).await;
    assert_eq!(h["content-encoding"], "br");

    let (status, h, gz) = get(&url, &[("accept-encoding", "gzip")]).await;
    assert_eq!(status, 200);
    assert_eq!(h["content-encoding"], "gzip");
    assert_eq!(gunzip(&gz), plain);
    assert!(br.len() < gz.len() && gz.len() < plain.len());
    eprintln!(
        "widget.js over the wire: {} bytes plain, {} gzip, {} brotli",
        plain.len(),
        gz.len(),
        br.len()
    );

    let (_, h, css) = get(
        &format!("{}/widget.css", server.url),
        &[("accept-encoding", "gzip")],
    )
    .await;
    assert_eq!(h["content-encoding"], "gzip");
    let css = String::from_utf8(gunzip(&css)).unwrap();
    assert!(css.contains('{'), "{css}");
}

#[tokio::test]
async fn an_etag_the_browser_holds_gets_304() {
    let server = server().await;
    for path in [
        "/widget.js",
        "/widget.css",
        "/console.css",
        "/console/js/app.js",
    ] {
        let url = format!("{}{path}", server.url);
        let (_, first, body) = get(&url, &[("accept-encoding", "br")]).await;
        let etag = first["etag"].to_str().unwrap().to_string();
        assert!(
            etag.starts_with('"') && etag.ends_with("-br\""),
            "{path}: {etag}"
        );
        assert!(!body.is_empty());

        let (status, h, body) =
            get(&url, &[("accept-encoding", "br"), ("if-none-match", &etag)]).await;
        assert_eq!(status, 304, "{path}");
        assert!(body.is_empty(), "{path}");
        assert_eq!(h["etag"], etag.as_str(), "{path}");
        assert_eq!(h["vary"], "Accept-Encoding", "{path}");

        // Each encoding has its own strong tag; any of them is the same file.
        let (_, plain, _) = get(&url, &[]).await;
        assert_ne!(plain["etag"], etag.as_str(), "{path}");
        let (status, _, _) = get(&url, &[("if-none-match", &etag)]).await;
        assert_eq!(status, 304, "{path}");
        let (status, _, _) = get(&url, &[("if-none-match", "\"0000000000000000\"")]).await;
        assert_eq!(status, 200, "{path}: another file's tag");
    }
}

#[tokio::test]
async fn the_versioned_url_is_immutable_and_the_plain_one_is_not() {
    let server = server().await;
    let health: serde_json::Value = reqwest::get(format!("{}/healthz", server.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let path = health["widget_js"].as_str().unwrap().to_string();
    let version = path.strip_prefix("/widget.js?v=").unwrap();
    assert_eq!(version.len(), 16, "{path}");

    let (status, h, versioned) = get(&format!("{}{path}", server.url), &[]).await;
    assert_eq!(status, 200);
    assert_eq!(h["cache-control"], "public, max-age=31536000, immutable");
    assert_eq!(h["etag"], format!("\"{version}\"").as_str());

    let (_, h, plain) = get(&format!("{}/widget.js", server.url), &[]).await;
    assert_eq!(h["cache-control"], "public, max-age=300");
    assert_eq!(plain, versioned);

    // An old snippet's version gets today's file, but only for a while.
    let (status, h, old) = get(&format!("{}/widget.js?v=0123456789abcdef", server.url), &[]).await;
    assert_eq!(status, 200);
    assert_eq!(h["cache-control"], "public, max-age=300");
    assert_eq!(old, plain);
}

#[tokio::test]
async fn every_console_module_is_compressed() {
    let server = server().await;
    let (_, _, app) = get(&format!("{}/console/js/app.js", server.url), &[]).await;
    let (status, h, gz) = get(
        &format!("{}/console/js/app.js", server.url),
        &[("accept-encoding", "gzip")],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(h["content-encoding"], "gzip");
    assert_eq!(h["cache-control"], "public, max-age=300");
    assert_eq!(gunzip(&gz), app);
    let (status, h, _) = get(
        &format!("{}/console/js/nope.js", server.url),
        &[("accept-encoding", "br")],
    )
    .await;
    assert_eq!(status, 404);
    assert!(h.get("content-encoding").is_none());
}
