//! `replay`.

use std::process::ExitCode;

use crate::cli::ReplayArgs;

pub fn run(_args: ReplayArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`replay` is not available in this build")
}
