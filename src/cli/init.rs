//! `livechat init DIR`: a commented starter bundle that validates.

use std::path::Path;
use std::process::ExitCode;

pub fn run(_dir: &Path, _force: bool) -> ExitCode {
    super::fail("init is not built yet")
}
