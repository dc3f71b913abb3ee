//! livechat: a self-hosted live chat appliance in one binary.
//!
//! The layers, bottom up: `ids`, `config`, `settings` → `chat` (the pure conversation
//! core) → `store`, `hub`, `auth`, `mail`, `webhooks`, `deploy` → `engine` → `http` →
//! `server`, `cli`. `docs/architecture.md` says what each holds and where new code goes;
//! `tests/layers.rs` keeps the imports pointing down.

pub mod auth;
pub mod bottest;
pub mod chat;
pub mod cli;
pub mod config;
pub mod dburl;
pub mod deploy;
pub mod engine;
pub mod http;
pub mod hub;
pub mod ids;
pub mod mail;
pub mod server;
pub mod settings;
pub mod store;
pub mod webhooks;
