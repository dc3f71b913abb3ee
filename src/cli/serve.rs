//! `livechat serve`: run the server until Ctrl-C or SIGTERM.

use std::process::ExitCode;

use crate::settings::ServerArgs;

pub fn run(_server: &ServerArgs) -> ExitCode {
    super::fail("serve is not built yet")
}
