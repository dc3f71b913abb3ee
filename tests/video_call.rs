//! Issue #13 in two real browsers: a visitor asks for a video call in the widget, an agent
//! accepts in the console, both peer connections reach `connected` and each side's remote
//! `<video>` shows frames of Chromium's fake camera; muting and the camera going off are
//! seen by the other side; hanging up ends both sides and stores `video.ended`.
//!
//! Calls need loopback host candidates and nothing else: this machine forbids traffic to
//! any address but loopback, so the test runs itself again in a network namespace that
//! holds only loopback (`unshare -n`, as root), the server, chromedriver and both browsers
//! inside it.

mod common;

use std::time::{Duration, Instant};

use serde_json::Value;

use common::Bundle;
use common::browser::{Browser, js, until};
use common::live::{Api, agent_email};

const CALL_FLAGS: &[&str] = &[
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--allow-loopback-in-peer-connection",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
];

const INSIDE: &str = "LIVECHAT_TEST_IN_NETNS";

#[test]
fn a_video_call_connects_between_the_widget_and_the_console() {
    in_namespace(
        "a_video_call_connects_between_the_widget_and_the_console",
        call,
    );
}

#[test]
fn a_call_through_the_turn_relay_connects_with_the_servers_credentials() {
    in_namespace(
        "a_call_through_the_turn_relay_connects_with_the_servers_credentials",
        relayed_call,
    );
}

/// Runs the test `name` again inside a network namespace that holds only loopback, where
/// `inside` does the work.
fn in_namespace<F: std::future::Future<Output = ()> + Send>(name: &str, inside: fn() -> F) {
    if std::env::var_os(INSIDE).is_some() {
        return common::live::block_on(inside());
    }
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new("unshare")
        .args(["-n", "sh", "-c", "ip link set lo up && exec \"$0\" \"$@\""])
        .arg(&exe)
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(INSIDE, "1")
        .output()
        .expect("unshare (util-linux) runs");
    let said = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "the call test inside the namespace:\n{said}"
    );
    assert!(said.contains("1 passed"), "{said}");
}

/// The widget's shadow root, as `r`, for a widget script.
fn widget(body: &str) -> String {
    format!("const r = document.querySelector('[data-livechat]').shadowRoot; {body}")
}

/// A `<video>` that shows frames: it has a size and its time goes on.
const PLAYING: &str =
    "const v = arguments[0] || VIDEO; return !!v && v.videoWidth > 0 && v.currentTime > 0.5;";

/// How wide the picture the widget receives is.
async fn remote_width(visitor: &Browser) -> i64 {
    let script = widget("return r.querySelector('.lc-remote').videoWidth;");
    js(visitor, &script).await.as_i64().unwrap_or(0)
}

async fn call() {
    let server = Bundle::live(1)
        .live_chat(|d| d.set("modes", r#"["text", "video"]"#))
        .serve(&[&agent_email(0)]);
    let api = Api::new(&server.url);
    let agent_flags: Vec<&str> = CALL_FLAGS
        .iter()
        .copied()
        .chain(["--auto-select-tab-capture-source-by-title=livechat console"])
        .collect();
    let agent = Browser::start_with(&agent_flags).await;
    let visitor = Browser::start_with(CALL_FLAGS).await;

    let watcher = sign_in(&agent, &server, &api).await;
    // "Video calls" is on by default; off and on again, the server follows.
    agent.click("label[for='video-calls']").await;
    api.wait_agent(&watcher, &agent_email(0), |a| a["video"] == false)
        .await;
    agent.click("label[for='video-calls']").await;
    api.wait_agent(&watcher, &agent_email(0), |a| a["video"] == true)
        .await;

    start_call(&agent, &visitor, &server).await;

    // The screenshots the docs show.
    agent
        .screenshot(&common::browser::screenshot_path("call-console.png"))
        .await;
    visitor
        .screenshot(&common::browser::screenshot_path("call-widget.png"))
        .await;

    // The agent shares their screen (the console's own tab, picked by its title): the
    // visitor's picture changes from the fake camera's 640 wide to the tab's size, and
    // back when sharing stops.
    let camera_width = remote_width(&visitor).await;
    js(&agent, "document.getElementById('call-share').click();").await;
    until(
        &agent,
        "sharing",
        "return document.getElementById('call-share').textContent === 'Stop sharing';",
    )
    .await;
    let start = Instant::now();
    while remote_width(&visitor).await == camera_width {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the visitor still sees the camera ({camera_width} wide)"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    js(&agent, "document.getElementById('call-share').click();").await;
    let start = Instant::now();
    while remote_width(&visitor).await != camera_width {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the camera never came back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The visitor mutes and turns the camera off: the console says so.
    js(
        &visitor,
        &widget("r.querySelector('.lc-mute').click(); r.querySelector('.lc-cam').click();"),
    )
    .await;
    until(&agent, "the visitor muted, camera off", "const t = document.getElementById('call-state').textContent; return t.includes('Visitor muted') && t.includes('Visitor camera off');").await;

    // The agent hangs up: both sides end, and the log has the call's length.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    js(&agent, "document.getElementById('call-hangup').click();").await;
    until(
        &agent,
        "the console's call gone",
        "return document.getElementById('call').hidden;",
    )
    .await;
    until(&visitor, "the widget's call gone", &widget("return !r.querySelector('.lc-call') && r.querySelector('.lc-log').textContent.includes('Call ended');")).await;
    // The agent offers a call in the chat and the visitor declines: the chat goes on in
    // text.
    until(&agent, "the Video call button", "return [...document.querySelectorAll('#conv-actions button')].some(b => b.textContent === 'Video call');").await;
    js(&agent, "[...document.querySelectorAll('#conv-actions button')].find(b => b.textContent === 'Video call').click();").await;
    until(
        &visitor,
        "the offer",
        &widget("return !!r.querySelector('.lc-decline');"),
    )
    .await;
    js(&visitor, &widget("r.querySelector('.lc-decline').click();")).await;
    until(&visitor, "the offer gone, the chat on", &widget("return !r.querySelector('.lc-offer') && !r.querySelector('.lc-call') && !r.querySelector('.lc-input').disabled;")).await;

    let ends: Vec<Value> = server
        .rows("SELECT data FROM events WHERE type = 'video.ended' ORDER BY seq")
        .iter()
        .map(|row| serde_json::from_str(&row[0]).unwrap())
        .collect();
    assert_eq!(ends.len(), 2, "{ends:?}");
    assert_eq!(ends[0]["reason"], "hangup", "{ends:?}");
    assert_eq!(ends[0]["by"], agent_email(0).as_str(), "{ends:?}");
    assert!(ends[0]["duration_secs"].as_i64().unwrap() >= 1, "{ends:?}");
    assert_eq!(ends[1]["reason"], "declined", "{ends:?}");
    agent.close().await;
    visitor.close().await;
}

/// The agent signs in to the console and turns "Accept chats" on; a token of theirs for
/// the API.
async fn sign_in(agent: &Browser, server: &common::TestServer, api: &Api) -> String {
    agent.goto(&format!("{}/console", server.url)).await;
    agent.type_into("#signin-email", &agent_email(0)).await;
    agent
        .type_into("#signin-password", common::live::PASSWORD)
        .await;
    agent.click("#signin-submit").await;
    agent.wait_for_text("#conn", "Live").await;
    agent.click("label.switch").await;
    let watcher = api.login(&agent_email(0)).await;
    api.wait_agent(&watcher, &agent_email(0), |a| a["accepting"] == true)
        .await;
    watcher
}

/// The visitor asks for a person on video in the widget, the agent accepts in the console,
/// and each side sees the other's camera.
async fn start_call(agent: &Browser, visitor: &Browser, server: &common::TestServer) {
    // The visitor asks for a person on video: both buttons are offered.
    visitor.goto(&format!("{}/chat/support", server.url)).await;
    until(
        visitor,
        "the choices",
        &widget("return !!r.querySelector('.lc-choice');"),
    )
    .await;
    js(visitor, &widget("[...r.querySelectorAll('.lc-choice')].find(b => b.textContent === 'Talk to a person').click();")).await;
    until(visitor, "the video button", &widget("return !!r.querySelector('.lc-video') && !!r.querySelector('.lc-live:not(.lc-video)');")).await;
    js(visitor, &widget("r.querySelector('.lc-video').click();")).await;

    // It rings in the console; the agent accepts and the call starts on both sides.
    until(
        agent,
        "the request, marked as video",
        "const c = document.querySelector('#sec-new .row .chip.video'); return !!c && c.textContent === 'Video';",
    )
    .await;
    js(agent, "document.querySelector('#sec-new .row').click();").await;
    until(agent, "Accept", "return [...document.querySelectorAll('#conv-actions button')].some(b => b.textContent === 'Accept');").await;
    js(agent, "[...document.querySelectorAll('#conv-actions button')].find(b => b.textContent === 'Accept').click();").await;
    until(
        agent,
        "the console's call connected",
        "return document.getElementById('call').dataset.state === 'connected';",
    )
    .await;
    until(
        visitor,
        "the widget's call connected",
        &widget(
            "const c = r.querySelector('.lc-call'); return !!c && c.dataset.state === 'connected';",
        ),
    )
    .await;
    until(
        agent,
        "the visitor's camera in the console",
        &format!("const VIDEO = document.getElementById('call-remote'); {PLAYING}"),
    )
    .await;
    until(
        visitor,
        "the agent's camera in the widget",
        &widget(&format!(
            "const VIDEO = r.querySelector('.lc-remote'); {PLAYING}"
        )),
    )
    .await;
}

/// A coturn `turnserver` on loopback, set up as docs/operations.md says (`use-auth-secret`
/// with the secret livechat has), plus what a test on one machine needs: relaying between
/// loopback addresses and no TLS.
struct Turn {
    child: std::process::Child,
    port: u16,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Turn {
    fn start(secret: &str) -> Turn {
        let port = std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("turn.log");
        let config = dir.path().join("turnserver.conf");
        std::fs::write(
            &config,
            format!(
                "listening-ip=127.0.0.1\nrelay-ip=127.0.0.1\nlistening-port={port}\n\
                 min-port=49152\nmax-port=49200\nrealm=livechat.test\nuse-auth-secret\n\
                 static-auth-secret={secret}\nno-tls\nno-dtls\nno-cli\nno-multicast-peers\n\
                 allow-loopback-peers\nfingerprint\nverbose\nno-stdout-log\nsimple-log\n\
                 log-file={}\npidfile={}\n",
                log.display(),
                dir.path().join("turn.pid").display()
            ),
        )
        .unwrap();
        let child = std::process::Command::new("turnserver")
            .arg("-c")
            .arg(&config)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("coturn's turnserver runs (apt-get install coturn)");
        Turn {
            child,
            port,
            log,
            _dir: dir,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// With `relay_only`, both browsers may use only the relay: the call connects only if
/// coturn takes the credentials livechat made, and the console says the media goes
/// through the relay.
async fn relayed_call() {
    let secret = "turn-test-secret-0123456789";
    let turn = Turn::start(secret);
    let config = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        config.path(),
        format!(
            "[webrtc]\nturn = [\"turn:127.0.0.1:{}?transport=udp\"]\nturn_secret = \
             \"{secret}\"\nrelay_only = true\n",
            turn.port
        ),
    )
    .unwrap();
    let server = Bundle::live(1)
        .live_chat(|d| d.set("modes", r#"["text", "video"]"#))
        .serve_with(
            &[&agent_email(0)],
            &[("LIVECHAT_CONFIG", config.path().to_str().unwrap())],
        );
    let api = Api::new(&server.url);
    let agent = Browser::start_with(CALL_FLAGS).await;
    let visitor = Browser::start_with(CALL_FLAGS).await;
    sign_in(&agent, &server, &api).await;
    start_call(&agent, &visitor, &server).await;

    until(
        &agent,
        "the console's route known",
        "return !!document.getElementById('call').dataset.route;",
    )
    .await;
    let route = js(
        &agent,
        "return document.getElementById('call').dataset.route;",
    )
    .await;
    assert_eq!(route, "relay", "{}", turn.log());
    // Both sides took a relay address from coturn under a user name livechat made.
    let log = turn.log();
    for who in ["visitor-", &format!("agent-{}", agent_email(0))] {
        assert!(
            log.lines()
                .any(|l| l.contains("user <") && l.contains(who) && l.contains("success")),
            "no allocation for {who} in coturn's log:\n{log}"
        );
    }
    js(&agent, "document.getElementById('call-hangup').click();").await;
    until(
        &visitor,
        "the widget's call gone",
        &widget("return !r.querySelector('.lc-call');"),
    )
    .await;
    agent.close().await;
    visitor.close().await;
}
