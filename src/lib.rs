//! livechat: a self-hosted live chat appliance in one binary.
//!
//! The spine: `config` (the bundle, pure) → `chat` (pure domain) → `engine` → `store`/`hub`
//! → `http`. See `docs/` for how each part is used.

pub mod auth;
pub mod chat;
pub mod cli;
pub mod config;
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
