//! `livechat rollback REV`: install an earlier revision again, as a new revision.

use std::process::ExitCode;

use crate::settings::ServerArgs;

pub fn run(_server: &ServerArgs, _revision: i64, _dry_run: bool) -> ExitCode {
    super::fail("rollback is not built yet")
}
