//! The browser harness itself: a real headless Chromium reaches the server.

mod common;

use common::TestServer;
use common::browser::Browser;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_opens_the_full_page_chat() {
    let server = tokio::task::spawn_blocking(|| {
        TestServer::start(|dir| common::live::live_bundle(dir, 1, "90s", "10m"), &[])
    })
    .await
    .unwrap();
    let browser = Browser::start().await;
    browser.goto(&format!("{}/chat/support", server.url)).await;
    let title = browser.client.title().await.unwrap();
    let source = browser.client.source().await.unwrap();
    assert_eq!(title, "Acme Support", "{source}");
    browser.close().await;
}
