//! Tests that need a system service the Rust toolchain does not bring (a browser, a
//! database server) ask [`require_system`] first: on a machine without it they are
//! skipped with a note saying how to install it, unless `NAVIXY_ALERTS_REQUIRE_ALL=1`
//! (CI) makes a missing tool a failure. Everything else the tests need, they bring
//! themselves (the SMTP server is in process).

use std::path::{Path, PathBuf};

/// Set to `1` to fail, not skip, the tests whose system tools are missing.
pub const REQUIRE_ALL: &str = "NAVIXY_ALERTS_REQUIRE_ALL";

/// The script that installs every tool the suite can use.
pub const INSTALL_SCRIPT: &str = "scripts/install-test-deps.sh";

/// Whether `tool` (a program name, looked up on `PATH`) is installed. When it is not,
/// prints `SKIPPED: ...` and returns false, so that the test returns early; with
/// [`REQUIRE_ALL`] set to `1`, panics instead. `install` says how to get it.
///
/// ```ignore
/// if !require_system("chromium", "apt-get install chromium chromium-driver") { return; }
/// ```
pub fn require_system(tool: &str, install: &str) -> bool {
    let required = std::env::var(REQUIRE_ALL).is_ok_and(|v| v == "1");
    decide(tool, install, find_program(tool).is_some(), required)
}

/// A loopback port that was free a moment ago, for a server a test starts as a process
/// or hands a fixed address.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

fn decide(tool: &str, install: &str, found: bool, required: bool) -> bool {
    if found {
        return true;
    }
    let message = format!("needs {tool} ({install}); install with `{INSTALL_SCRIPT}`");
    assert!(!required, "{REQUIRE_ALL}=1 and this test {message}");
    eprintln!("SKIPPED: {message}");
    false
}

/// The first executable file named `tool` on `PATH` (or `tool` itself if it is a path).
fn find_program(tool: &str) -> Option<PathBuf> {
    if tool.contains('/') {
        return is_executable(Path::new(tool)).then(|| PathBuf::from(tool));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(tool))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    let Ok(meta) = std::fs::metadata(path) else {
        return false;
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        meta.is_file() && meta.permissions().mode() & 0o111 != 0
    }
    #[cfg(not(unix))]
    {
        meta.is_file()
    }
}

#[test]
fn a_tool_on_path_is_found_and_a_missing_one_is_skipped() {
    assert!(find_program("sh").is_some(), "sh is on every PATH");
    assert!(find_program("no-such-tool-navixy-alerts").is_none());
    assert!(decide("sh", "apt-get install dash", true, true));
    assert!(!decide("no-such-tool", "apt-get install it", false, false));
}

#[test]
#[should_panic(expected = "NAVIXY_ALERTS_REQUIRE_ALL=1 and this test needs no-such-tool")]
fn a_missing_tool_fails_when_everything_is_required() {
    decide("no-such-tool", "apt-get install it", false, true);
}
