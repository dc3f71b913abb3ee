//! Bots tested like code: scripted conversations kept beside a bundle (`DIR/tests/*.toml`)
//! replayed through the pure conversation core on a virtual clock, with no server, store
//! or network; and the flow drawn as a picture.
//!
//! - `case`: the case file format, parsed with spans, checked against the bundle.
//! - `session`: one conversation on a virtual clock (what `livechat try` types into).
//! - `run`: replaying cases and checking their expectations.
//! - `graph`: Mermaid and Graphviz DOT of a bot's flow.
//!
//! A layer beside `chat`: it imports only `config` and `chat`.

pub mod case;
pub mod graph;
pub mod run;
pub mod session;

pub use run::{CaseResult, Failure, Loaded, parse_all, read_tests, run_case};
pub use session::{Session, Setup};
