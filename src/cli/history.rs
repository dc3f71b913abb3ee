//! `livechat history`: the installed revisions, newest first.

use std::process::ExitCode;

use super::Format;
use crate::settings::ServerArgs;

pub fn run(_server: &ServerArgs, _format: Format) -> ExitCode {
    super::fail("history is not built yet")
}
