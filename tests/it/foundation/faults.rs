//! `run` never stays half alive: a thread or task of the daemon that dies takes the
//! process down with an error, through the real binary (the fault is injected by the
//! debug build's `NAVIXY_ALERTS_INJECT_FAULT`).

use std::io::Read as _;
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// How long a faulted daemon may take to exit before the test gives up on it.
const EXIT_LIMIT: Duration = Duration::from_secs(120);

struct Ended {
    code: Option<i32>,
    stderr: String,
    admin_port: u16,
}

/// Runs the daemon on the simulator with `part` set to fail once frames flow, and waits
/// for it to exit.
fn run_with_fault(part: &str) -> Ended {
    let dir = tempfile::tempdir().unwrap();
    let admin_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = dir.path().join("navixy-alerts.yaml");
    std::fs::write(
        &config,
        format!(
            "source:\n  simulator: {{ trackers: 2 }}\nengine:\n  eval_interval: 100ms\n  workers: 2\nstorage: {{ path: \"{}\" }}\nserver: {{ listen: \"127.0.0.1:{admin_port}\" }}\n",
            dir.path().join("alerts.db").display()
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_navixy-alerts"))
        .args(["run", "-c"])
        .arg(&config)
        .env("RUST_LOG", "info")
        .env("NAVIXY_ALERTS_INJECT_FAULT", part)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut stderr = child.stderr.take().unwrap();
    let (done, ended) = mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        let status = child.wait().unwrap();
        let _ = done.send((status.code(), text));
    });
    let Ok((code, stderr)) = ended.recv_timeout(EXIT_LIMIT) else {
        // SAFETY: `kill` on the id of the child this test started.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        panic!("the daemon kept running after its {part} failed");
    };
    Ended {
        code,
        stderr,
        admin_port,
    }
}

fn assert_down(ended: &Ended, message: &str) {
    assert_eq!(ended.code, Some(70), "{}", ended.stderr);
    assert!(ended.stderr.contains(message), "{}", ended.stderr);
    assert!(
        ended
            .stderr
            .contains("Internal error: a thread panicked; the process stops (exit 70)."),
        "{}",
        ended.stderr
    );
    // Nothing answers `/readyz` any more.
    assert!(TcpStream::connect(("127.0.0.1", ended.admin_port)).is_err());
}

#[test]
fn a_panic_in_the_engine_thread_stops_the_daemon() {
    let ended = run_with_fault("engine");
    assert_down(&ended, "injected fault in the engine thread");
    assert!(
        ended.stderr.contains("thread=\"engine\""),
        "{}",
        ended.stderr
    );
}

#[test]
fn a_panic_in_the_source_task_stops_the_daemon() {
    let ended = run_with_fault("source");
    assert_down(&ended, "injected fault in the source task");
}
