//! Issue #10, finding 1: a session that ends stops listening. An open console socket ends
//! within about a second of a logout, a new password (even one set by another process) or
//! a removal from the roster, with an error frame that says so; and a console socket is
//! only exempt from the Origin check with a bearer token, not with any `Authorization`.

mod common;

use std::time::{Duration, Instant};

use common::Bundle;
use common::live::{Api, Stream, agent_email, set_password};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// Waits for the socket's `session_ended` error frame, then for it to close; answers how
/// long that took.
async fn ends(stream: &mut Stream) -> Duration {
    let start = Instant::now();
    let frame = stream
        .wait_for(Duration::from_secs(5), "session_ended", |v| {
            v["type"] == "error"
        })
        .await;
    assert_eq!(frame["error"]["code"], "session_ended", "{frame}");
    assert!(
        stream.next_frame(Duration::from_secs(5)).await.is_none(),
        "the socket closes after saying why"
    );
    start.elapsed()
}

/// The socket hears nothing more about a visitor who starts talking now.
async fn is_deaf(api: &Api, stream: &mut Stream) {
    let visitor = api.session("support").await;
    api.request_live_chat(&visitor.token).await;
    assert!(
        stream
            .next_frame(Duration::from_millis(500))
            .await
            .is_none(),
        "a closed socket hears nothing: {:?}",
        stream.seen.last()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_console_socket_ends_when_its_session_does() {
    let emails: Vec<String> = (0..3).map(agent_email).collect();
    let server = Bundle::live(3).serve(&[&emails[0], &emails[1], &emails[2]]);
    let api = Api::new(&server.url);

    // Logout: the socket opened with that session ends.
    let token = api.login(&emails[0]).await;
    let mut stream = api.agent_stream(&token, 0).await;
    let (status, body) = api
        .call("POST", "/api/v1/auth/logout", Some(&token), None)
        .await;
    assert_eq!(status, 204, "{body}");
    let took = ends(&mut stream).await;
    assert!(took < Duration::from_secs(3), "logout ended it in {took:?}");
    is_deaf(&api, &mut stream).await;

    // A new password set by another process (the command line) ends every session.
    let token = api.login(&emails[1]).await;
    let mut stream = api.agent_stream(&token, 0).await;
    let (bots, data) = (server.bots_dir.clone(), server.data_dir.clone());
    let email = emails[1].clone();
    tokio::task::spawn_blocking(move || set_password(&bots, &data, &email))
        .await
        .unwrap();
    let took = ends(&mut stream).await;
    assert!(
        took < Duration::from_secs(3),
        "a new password ended it in {took:?}"
    );

    // Removed from agents.toml: ended too, and the other agents' sockets stay open.
    let token = api.login(&emails[2]).await;
    let mut removed = api.agent_stream(&token, 0).await;
    let boss_token = {
        let (bots, data) = (server.bots_dir.clone(), server.data_dir.clone());
        tokio::task::spawn_blocking(move || set_password(&bots, &data, "boss@acme.example"))
            .await
            .unwrap();
        api.login("boss@acme.example").await
    };
    let mut stays = api.agent_stream(&boss_token, 0).await;
    // The same roster less agent 2.
    let without = Bundle::live(2).roster();
    assert!(!without.contains(&emails[2]), "{without}");
    common::save_atomically(&server.bots_dir.join("agents.toml"), &without);
    let took = ends(&mut removed).await;
    assert!(
        took < Duration::from_secs(4),
        "removal ended it in {took:?}"
    );
    let visitor = api.session("support").await;
    api.request_live_chat(&visitor.token).await;
    stays
        .wait_for(Duration::from_secs(5), "the boss still hears", |v| {
            v["type"] == "livechat.requested" && v["conversation_id"] == visitor.conv
        })
        .await;
    drop(server);
}

/// Finding 7: an `Authorization: Basic` header (an auth proxy makes browsers send one) does
/// not exempt a cookie-authenticated console socket from the Origin check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_basic_auth_header_does_not_skip_the_console_socket_origin_check() {
    let server = Bundle::live(1).serve(&[&agent_email(0)]);
    let api = Api::new(&server.url);
    let token = api.login(&agent_email(0)).await;
    let open = |origin: &'static str, basic: bool| {
        let mut req = api
            .ws_url("/api/v1/agent/events")
            .into_client_request()
            .unwrap();
        let headers = req.headers_mut();
        headers.insert(
            "cookie",
            format!("livechat_session={token}").parse().unwrap(),
        );
        headers.insert("origin", origin.parse().unwrap());
        if basic {
            headers.insert("authorization", "Basic dXNlcjpwYXNz".parse().unwrap());
        }
        tokio_tungstenite::connect_async(req)
    };
    for basic in [false, true] {
        match open("https://evil.example", basic).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                assert_eq!(resp.status(), 403, "basic: {basic}")
            }
            other => panic!("a foreign origin was let in (basic: {basic}): {other:?}"),
        }
    }
    // The console's own origin is let in, with or without the proxy's header.
    let own: &'static str = Box::leak(server.url.clone().into_boxed_str());
    for basic in [false, true] {
        let (ws, _) = open(own, basic).await.expect("own origin");
        drop(ws);
    }
}
