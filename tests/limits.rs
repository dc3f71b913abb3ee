//! Issue #10, finding 5: slow clients do not hold the server. Headers must arrive within
//! `header_timeout` (also when a kept-alive connection idles), a request is answered
//! within `request_timeout` (a slow body gets `408 request_timeout`), open connections are
//! capped at `max_connections`, and one address holds at most `sockets_per_address` event
//! sockets. The limits are set short here by environment, as an operator would.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{Bundle, TestServer};

/// Reads until the server closes the connection; answers what it said and when it closed.
fn until_closed(tcp: &mut TcpStream, limit: Duration) -> (String, Duration) {
    let start = Instant::now();
    tcp.set_read_timeout(Some(limit)).unwrap();
    let mut said = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match tcp.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => said.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!(
                "still open after {:?} ({e}); said {said:?}",
                start.elapsed()
            ),
        }
    }
    (String::from_utf8_lossy(&said).into_owned(), start.elapsed())
}

#[test]
fn slow_clients_are_cut_off_and_capped() {
    let server = TestServer::start(
        |dir| Bundle::live(1).write(dir),
        &[
            ("LIVECHAT_HEADER_TIMEOUT", "1s"),
            ("LIVECHAT_REQUEST_TIMEOUT", "1s"),
            ("LIVECHAT_MAX_CONNECTIONS", "300"),
            ("LIVECHAT_SOCKETS_PER_ADDRESS", "2"),
        ],
    );
    let addr = server.url.trim_start_matches("http://").to_string();

    // 200 connections that never finish their headers are all cut within the timeout.
    let start = Instant::now();
    let mut slow: Vec<TcpStream> = (0..200)
        .map(|_| {
            let mut tcp = TcpStream::connect(&addr).unwrap();
            tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
                .unwrap();
            tcp
        })
        .collect();
    for tcp in &mut slow {
        until_closed(tcp, Duration::from_secs(5));
    }
    let all_cut = start.elapsed();
    assert!(
        all_cut < Duration::from_secs(4),
        "200 slow headers cut in {all_cut:?}"
    );
    eprintln!("200 slow-header connections cut in {all_cut:?}");

    // A kept-alive connection that idles after its request is closed as well.
    let mut idle = TcpStream::connect(&addr).unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let (said, took) = until_closed(&mut idle, Duration::from_secs(5));
    assert!(said.starts_with("HTTP/1.1 200"), "{said}");
    assert!(
        took < Duration::from_secs(3),
        "an idle keep-alive closed after {took:?}"
    );

    // A body that never finishes: 408 with the stable code.
    let mut body = TcpStream::connect(&addr).unwrap();
    body.write_all(
        b"POST /api/v1/visitor/sessions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"bot\":",
    )
    .unwrap();
    let (said, took) = until_closed(&mut body, Duration::from_secs(5));
    assert!(said.starts_with("HTTP/1.1 408"), "{said}");
    assert!(said.contains("\"request_timeout\""), "{said}");
    assert!(took < Duration::from_secs(3), "answered after {took:?}");

    // The address's third event socket is refused; closing one frees its place.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async move {
        let url = |_: ()| server.url.replacen("http://", "ws://", 1) + "/api/v1/visitor/events";
        let first = tokio_tungstenite::connect_async(url(()))
            .await
            .expect("first");
        let _second = tokio_tungstenite::connect_async(url(()))
            .await
            .expect("second");
        match tokio_tungstenite::connect_async(url(())).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                assert_eq!(resp.status(), 429);
                let body = String::from_utf8_lossy(resp.body().as_deref().unwrap_or_default())
                    .into_owned();
                assert!(body.contains("too_many_sockets"), "{body}");
            }
            other => panic!("a third socket from one address: {other:?}"),
        }
        drop(first);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match tokio_tungstenite::connect_async(url(())).await {
                Ok(_) => break,
                Err(e) => assert!(Instant::now() < deadline, "never freed: {e}"),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        drop(server);
    });
}

#[test]
fn connections_over_the_cap_wait_for_a_place() {
    let server = TestServer::start(
        |dir| Bundle::live(1).write(dir),
        &[
            ("LIVECHAT_HEADER_TIMEOUT", "30s"),
            ("LIVECHAT_MAX_CONNECTIONS", "4"),
        ],
    );
    let addr = server.url.trim_start_matches("http://").to_string();
    // Four connections take every place (each has sent half its headers).
    let mut held: Vec<TcpStream> = (0..4)
        .map(|_| {
            let mut tcp = TcpStream::connect(&addr).unwrap();
            tcp.write_all(b"GET /healthz HTTP/1.1\r\n").unwrap();
            tcp
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    // A fifth is queued by the kernel but not served while they hold on…
    let mut fifth = TcpStream::connect(&addr).unwrap();
    fifth
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    fifth
        .set_read_timeout(Some(Duration::from_millis(700)))
        .unwrap();
    let mut buf = [0u8; 64];
    assert!(
        fifth.read(&mut buf).is_err(),
        "served over the cap: {:?}",
        String::from_utf8_lossy(&buf)
    );
    // …and served as soon as one of them goes.
    drop(held.pop());
    let (said, _) = until_closed(&mut fifth, Duration::from_secs(5));
    assert!(said.starts_with("HTTP/1.1 200"), "{said}");
}
