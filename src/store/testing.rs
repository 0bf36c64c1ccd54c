//! A private PostgreSQL server for the tests (unit and integration): `initdb` in a folder
//! of its own, listening on a free loopback port, stopped and removed when dropped. Run as
//! root (CI), the server runs as the `postgres` user that Debian's package creates, since
//! PostgreSQL refuses to run as root. Not part of the API.
//!
//! Tests take the process's shared server with [`shared_or_skip`] and a database of their
//! own with [`PgServer::create_database`]; a test that stops the server starts its own.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

/// Set to `1` to fail, not skip, the tests whose system tools are missing (CI sets it).
const REQUIRE_ALL: &str = "NAVIXY_ALERTS_REQUIRE_ALL";

/// The superuser the server is created with; connections need no password (loopback only).
const USER: &str = "navixy";

/// A running PostgreSQL server of the test process's own.
#[derive(Debug)]
pub struct PgServer {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
    /// Run the server's programs as the `postgres` user (we are root).
    as_postgres: bool,
}

static NEXT: AtomicU32 = AtomicU32::new(0);

impl PgServer {
    /// Creates and starts a server. `Err` says why not (PostgreSQL not installed, or it
    /// failed to start, with its log).
    pub fn start() -> Result<PgServer, String> {
        let bin = find_bin().ok_or_else(|| {
            "PostgreSQL's initdb was found neither on PATH nor in /usr/lib/postgresql/*/bin"
                .to_owned()
        })?;
        let as_postgres = is_root();
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        // Short: the server's Unix socket lives in this folder too (a path of at most 107 bytes).
        let data = std::env::temp_dir().join(format!("navixy-pg-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&data);
        std::fs::create_dir_all(&data).map_err(|e| format!("{}: {e}", data.display()))?;
        if as_postgres {
            run(Command::new("chown").arg("postgres:postgres").arg(&data))?;
        }
        let server = PgServer {
            bin,
            data,
            port: free_port()?,
            as_postgres,
        };
        let pgdata = server.pgdata();
        server.run_pg(
            "initdb",
            &[
                "-D",
                path_str(&pgdata)?,
                "-U",
                USER,
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
                "--no-instructions",
            ],
        )?;
        server.start_server()?;
        server.watch_parent()?;
        Ok(server)
    }

    /// The loopback port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A connection URL for `database`.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://{USER}@127.0.0.1:{}/{database}", self.port)
    }

    /// Creates a new, empty database and returns its URL.
    ///
    /// # Panics
    /// When the server does not accept it (a test's setup failing).
    pub fn create_database(&self) -> String {
        let name = format!(
            "t{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        self.psql("postgres", &format!("CREATE DATABASE {name}"))
            .unwrap_or_else(|e| panic!("cannot create a test database: {e}"));
        self.url(&name)
    }

    /// Runs one SQL command with `psql` (for test setup and inspection); its output, tuples
    /// only, unaligned.
    pub fn psql(&self, database: &str, sql: &str) -> Result<String, String> {
        let psql = self.bin.join("psql");
        let out = Command::new(if psql.exists() {
            psql
        } else {
            PathBuf::from("psql")
        })
        .args([
            "-X",
            "-q",
            "-t",
            "-A",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            "127.0.0.1",
        ])
        .args([
            "-p",
            &self.port.to_string(),
            "-U",
            USER,
            "-d",
            database,
            "-c",
            sql,
        ])
        .output()
        .map_err(|e| format!("psql: {e}"))?;
        check(&out, "psql")?;
        Ok(String::from_utf8_lossy(&out.stdout).trim_end().to_owned())
    }

    /// Stops the server (`pg_ctl stop -m fast`: clients are disconnected, data is kept).
    ///
    /// # Panics
    /// When it cannot be stopped.
    pub fn stop(&self) {
        let pgdata = self.pgdata();
        let pgdata = pgdata.to_string_lossy();
        self.run_pg("pg_ctl", &["-D", &pgdata, "-m", "fast", "-w", "stop"])
            .unwrap_or_else(|e| panic!("cannot stop the test PostgreSQL: {e}"));
    }

    /// Starts the server again after [`PgServer::stop`]: same data, same port.
    ///
    /// # Panics
    /// When it does not start.
    pub fn start_again(&self) {
        self.start_server()
            .unwrap_or_else(|e| panic!("cannot start the test PostgreSQL again: {e}"));
    }

    /// A shared server is never dropped (statics are not), and a test process may die of a
    /// signal: a small shell stops the server and removes its folder once this process
    /// is gone.
    fn watch_parent(&self) -> Result<(), String> {
        let pgdata = self.pgdata();
        let pg_ctl = self.bin.join("pg_ctl");
        let stop = format!(
            "{} {} -D {} -m immediate -w stop",
            if self.as_postgres {
                "runuser -u postgres --"
            } else {
                ""
            },
            path_str(&pg_ctl)?,
            path_str(&pgdata)?
        );
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {stop} >/dev/null 2>&1; rm -rf {dir}",
            pid = std::process::id(),
            dir = path_str(&self.data)?
        );
        Command::new("sh")
            .args(["-c", &script])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map(drop)
            .map_err(|e| format!("sh: {e}"))
    }

    fn pgdata(&self) -> PathBuf {
        self.data.join("pgdata")
    }

    fn start_server(&self) -> Result<(), String> {
        let pgdata = self.pgdata();
        let log = self.data.join("server.log");
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=300",
            self.port,
            path_str(&self.data)?
        );
        let started = self.run_pg(
            "pg_ctl",
            &[
                "-D",
                path_str(&pgdata)?,
                "-l",
                path_str(&log)?,
                "-o",
                &options,
                "-w",
                "-t",
                "60",
                "start",
            ],
        );
        started.map_err(|e| {
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            format!("{e}\nserver log:\n{log}")
        })
    }

    /// Runs one of the server's programs, as `postgres` when we are root.
    fn run_pg(&self, program: &str, args: &[&str]) -> Result<(), String> {
        let path = self.bin.join(program);
        let mut command = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&path);
            c
        } else {
            Command::new(&path)
        };
        command.args(args).current_dir(&self.data);
        run(&mut command)
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let pgdata = self.pgdata();
        let pgdata = pgdata.to_string_lossy().into_owned();
        let _ = self.run_pg("pg_ctl", &["-D", &pgdata, "-m", "immediate", "-w", "stop"]);
        let _ = std::fs::remove_dir_all(&self.data);
    }
}

/// The test process's one shared server, started on first use. Without PostgreSQL it
/// prints `SKIPPED: ...` and returns `None`, so that the test returns early; with
/// `NAVIXY_ALERTS_REQUIRE_ALL=1` it panics instead. A server that is installed but fails
/// to start always panics.
///
/// ```ignore
/// let Some(pg) = shared_or_skip("store::conformance") else { return };
/// let url = pg.create_database();
/// ```
pub fn shared_or_skip(test: &str) -> Option<&'static PgServer> {
    static SHARED: OnceLock<Result<PgServer, String>> = OnceLock::new();
    if find_bin().is_none() {
        let message = format!(
            "{test} needs PostgreSQL (apt-get install postgresql); \
             install with `scripts/install-test-deps.sh`"
        );
        let required = std::env::var(REQUIRE_ALL).is_ok_and(|v| v == "1");
        assert!(!required, "{REQUIRE_ALL}=1 and {message}");
        eprintln!("SKIPPED: {message}");
        return None;
    }
    match SHARED.get_or_init(PgServer::start) {
        Ok(server) => Some(server),
        Err(e) => panic!("{test}: the test PostgreSQL server did not start: {e}"),
    }
}

/// The folder of PostgreSQL's server programs: `initdb` on `PATH`, or the newest
/// `/usr/lib/postgresql/<version>/bin` (Debian does not put them on `PATH`).
fn find_bin() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .find(|dir| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file())
    });
    if let Some(dir) = on_path {
        // Debian's /usr/local/bin links: use the folder they point into, where psql is too.
        return Some(
            std::fs::canonicalize(dir.join("initdb"))
                .ok()
                .and_then(|p| p.parent().map(Path::to_path_buf))
                .unwrap_or(dir),
        );
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

fn is_root() -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt as _;
        // The owner of /proc/self is the process's effective user.
        std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
    }
    #[cfg(not(unix))]
    {
        false
    }
}

fn free_port() -> Result<u16, String> {
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("no free port: {e}"))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

fn path_str(path: &Path) -> Result<&str, String> {
    path.to_str()
        .ok_or_else(|| format!("{}: not UTF-8", path.display()))
}

fn run(command: &mut Command) -> Result<(), String> {
    let out = command
        .output()
        .map_err(|e| format!("{:?}: {e}", command.get_program()))?;
    check(&out, &format!("{:?}", command.get_program()))
}

fn check(out: &Output, what: &str) -> Result<(), String> {
    if out.status.success() {
        return Ok(());
    }
    Err(format!(
        "{what} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_private_server_runs_sql_stops_and_starts_again_with_its_data() {
        let Some(_) = shared_or_skip("store::testing") else {
            return;
        };
        let server = PgServer::start().unwrap();
        let url = server.create_database();
        let db = url.rsplit('/').next().unwrap();
        server
            .psql(db, "CREATE TABLE t (x BIGINT); INSERT INTO t VALUES (42)")
            .unwrap();
        server.stop();
        assert!(server.psql(db, "SELECT x FROM t").is_err());
        server.start_again();
        assert_eq!(server.psql(db, "SELECT x FROM t").unwrap(), "42");
    }
}
