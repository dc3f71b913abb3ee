//! `livechat validate [DIR]`: every error at once, as file:line:col with the line and a caret.

use std::path::PathBuf;
use std::process::ExitCode;

use super::Format;
use crate::settings::ServerArgs;

pub fn run(_server: &ServerArgs, _dir: Option<PathBuf>, _format: Format) -> ExitCode {
    super::fail("validate is not built yet")
}
