//! The engine's test files once more, every server on PostgreSQL (#17): each file below is
//! compiled here as a module, and `common::store_under_test` answers "postgres" in this
//! crate, so every `TestServer` runs on a database of its own in a cluster of the process
//! (one per file's `common`), set up as SQLite's data directory would be (`livechat agent
//! password` and the other commands a test runs reach the same database). `cargo test`
//! runs them on SQLite as their own files and here on PostgreSQL: one command, both stores.
//!
//! The browser files (`browser_smoke`, `console`, `console_alerts`, `first_five_minutes`)
//! are among them: the widget and the console in Chromium against a server on PostgreSQL.
//! `video_call` is not: its two calls run four Chromiums in a network namespace, and beside
//! another test here (two run at once) a call's switch back from screen to camera took
//! longer than its 20 s (CI, 2026-12-03); it passes on PostgreSQL by hand, alone.
//!
//! Left out, as SQLite's alone: `stored_events` (databases written by earlier releases),
//! `backup` (the database file), `storage_full` (the data directory's disk), `first_run` and
//! `init_and_examples` (the default data directory), the `pg_*` files (PostgreSQL already)
//! and the files that start no server. Any test file runs on PostgreSQL by hand with
//! `LIVECHAT_TEST_STORE=postgres cargo test --test NAME`.

// Each file brings its `mod common;`: one copy each, as when it is its own test crate.
#![allow(clippy::duplicate_mod)]

#[path = "api_errors.rs"]
mod api_errors;
#[path = "apply.rs"]
mod apply;
#[path = "attachments.rs"]
mod attachments;
#[path = "auth.rs"]
mod auth;
#[path = "browser_smoke.rs"]
mod browser_smoke;
#[path = "console.rs"]
mod console;
#[path = "console_alerts.rs"]
mod console_alerts;
#[path = "contact_fields.rs"]
mod contact_fields;
#[path = "delivery.rs"]
mod delivery;
#[path = "first_five_minutes.rs"]
mod first_five_minutes;
#[path = "invite.rs"]
mod invite;
#[path = "lifecycle.rs"]
mod lifecycle;
#[path = "limits.rs"]
mod limits;
#[path = "livechat.rs"]
mod livechat;
#[path = "mail.rs"]
mod mail;
#[path = "notify.rs"]
mod notify;
#[path = "privacy.rs"]
mod privacy;
#[path = "proxy.rs"]
mod proxy;
#[path = "request_alert.rs"]
mod request_alert;
#[path = "restart.rs"]
mod restart;
#[path = "serve.rs"]
mod serve;
#[path = "sessions.rs"]
mod sessions;
#[path = "socket_writes.rs"]
mod socket_writes;
#[path = "unread.rs"]
mod unread;
#[path = "video.rs"]
mod video;
#[path = "visitors_online.rs"]
mod visitors_online;
#[path = "webhooks.rs"]
mod webhooks;
#[path = "widget.rs"]
mod widget;
