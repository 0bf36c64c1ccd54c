//! `test`: rule unit tests. Exit 0 when every test passes, 1 otherwise.

use std::process::ExitCode;

use crate::cli::TestArgs;
use crate::rules::testing;

pub fn run(args: TestArgs) -> anyhow::Result<ExitCode> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let summary = testing::run_files(&args.files, &mut out)?;
    Ok(if summary.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
