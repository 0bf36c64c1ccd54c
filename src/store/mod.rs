//! The database: live alert states, the aggregation groups, the outbox, the notification
//! log, the alert history (and its live [`Feed`]) and silences, with versioned migrations,
//! in SQLite (WAL, `storage.path`) or PostgreSQL (`storage.postgres`). Every statement is
//! written once and runs on both ([`sql`]). All blocking database work runs off the async
//! runtime's workers.
//!
//! One connection lives on one dedicated thread; callers send it closures through a
//! channel ([`Store::call`] from async code, [`Store::call_blocking`] from plain threads)
//! and get the result back. A single writer needs no locking, keeps statements cached, and
//! lets the dispatcher commit a whole batch of transitions in one transaction. With
//! SQLite, a second connection on a thread of its own moves the write-ahead log into the
//! database file every ten seconds, so that no commit waits for a checkpoint's writes and
//! syncs. With PostgreSQL, a lost connection is made again before the next job.
//!
//! The store also knows what is wrong with the database ([`Store::check_writable`], for
//! `/readyz`): commits of alert transitions that keep failing (a full disk, a database
//! that went away), and (SQLite) a database file removed or replaced under the running
//! daemon, which it notices by the file's identity (device and inode) changing.
//!
//! This module stores and loads; it does not decide anything. What a transition means for
//! routing, grouping or delivery belongs to [`crate::dispatch`].

mod acks;
mod alerts;
mod escalations;
mod groups;
pub mod history;
mod log;
mod outbox;
mod schema;
mod silences;
mod sql;
#[doc(hidden)]
pub mod testing;

use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use parking_lot::RwLock;
use rusqlite::Connection;

use crate::config::Config;

pub use crate::text::redact_url;
pub use acks::{
    AckError, StoredAck, ack_key, active_ack, delete_ack, load_ack, mark_announced, put_ack,
    unannounced_acks,
};
pub use alerts::{
    LiveAlertRow, delete_live_alert, load_live_alert, load_live_alerts, save_pending_alerts,
    save_pending_alerts_of, take_pending_alerts, take_pending_alerts_of, upsert_live_alert,
    upsert_live_alerts,
};
pub use escalations::{
    StoredStep, delete_escalations, finish_escalation, load_escalations, schedule_escalation,
};
pub use groups::{
    StoredGroup, delete_group, delete_group_member, load_groups, put_group_members, put_groups,
};
pub use history::{
    Cursor, Feed, FeedEvent, HistoryEntry, HistoryKind, HistoryPage, HistoryQuery, TransitionEvent,
};
pub use log::{LogEntry, Outcome, insert_log, prune_log, recent_log};
pub use outbox::{
    OutboxEntry, OutboxStatus, count_pending, failed_ids, insert_outbox, list_outbox, load_pending,
    load_pending_after, mark_failed, mark_retry, mark_sent, outbox_entry, prune_outbox,
    requeue_failed,
};
pub use silences::{NewSilence, Silence, SilenceMatcher, load_silences};
pub(crate) use sql::params;
pub use sql::{CommitGuard, Conn, FromColumn, Row, ToValue, Tx, Value};

/// What went wrong with the database, naming the file when it matters.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage {path}: cannot create its folder: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("storage {path}: cannot open: {source}")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error(
        "storage {location}: schema version {found} is newer than this build knows ({known}); \
         use a newer navixy-alerts or another database"
    )]
    TooNew {
        location: String,
        found: i64,
        known: i64,
    },
    #[error("storage: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A PostgreSQL error, naming the database's URL without its password.
    #[error("storage {location}: {source}")]
    Postgres {
        location: String,
        source: postgres::Error,
    },
    /// This instance no longer holds the lease its commit needs (see
    /// [`Store::set_commit_guard`]): the commit was rolled back, and is not retried.
    #[error("{0}")]
    Fenced(String),
    #[error("storage: cannot encode or decode {what}: {source}")]
    Json {
        what: &'static str,
        source: serde_json::Error,
    },
    /// Input from outside (the admin API) that cannot be stored as given.
    #[error("{0}")]
    Invalid(String),
    /// The file was deleted or replaced while the daemon held it open: what was written
    /// since went to a file nobody can open again.
    #[error(
        "storage {path}: the database file was removed or replaced while in use; \
         alerts recorded since are lost with it (restore the file, or restart to start anew)"
    )]
    Lost { path: PathBuf },
    /// The last commit of alert transitions failed; they wait, and are retried.
    #[error("storage: alert transitions cannot be committed ({0}); retrying")]
    CommitsFailing(String),
    #[error("storage: the database thread has stopped")]
    Closed,
    #[error("storage: a database job panicked: {0}")]
    Panicked(String),
}

/// Prepared statements kept per SQLite connection.
const STATEMENT_CACHE: usize = 256;

/// How hard a write transaction waits for the disk.
///
/// `Full` (`PRAGMA synchronous=FULL`) syncs the WAL on every commit: a transition is
/// acknowledged only after this, so not even a power cut loses it. `Relaxed` (`NORMAL`)
/// survives a crash of the process but not of the machine; it is for bookkeeping whose loss
/// only repeats work, such as marking a delivered notification as sent (the receiver then
/// sees the same id twice, which at-least-once delivery allows).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    Full,
    Relaxed,
}

/// The connection, owned by the database thread, with what the thread remembers about it.
pub struct Db {
    conn: Conn,
    /// The `synchronous` setting now in force (SQLite), so it is switched only when it
    /// changes.
    synchronous: Durability,
    /// Bumped after every silence change, so the dispatcher reloads its compiled silences.
    silence_generation: Arc<AtomicU64>,
    /// Checks the commits of alert state (see [`Store::set_commit_guard`]).
    guard: Arc<RwLock<Option<CommitGuard>>>,
}

impl Db {
    /// Starts a write transaction with the given durability: on SQLite `FULL` or
    /// `NORMAL` synchronous, on PostgreSQL `synchronous_commit` on or off.
    pub fn write(&mut self, durability: Durability) -> Result<Tx<'_>, StoreError> {
        self.begin(durability, None)
    }

    /// [`Db::write`] for a transaction that commits alert state (transitions, live or
    /// pending alerts, escalation steps, new outbox rows): the commit guard, when one is
    /// set, runs just before its COMMIT, and an error from it rolls everything back.
    pub fn write_guarded(&mut self, durability: Durability) -> Result<Tx<'_>, StoreError> {
        let guard = self.guard.read().clone();
        self.begin(durability, guard)
    }

    fn begin(
        &mut self,
        durability: Durability,
        guard: Option<CommitGuard>,
    ) -> Result<Tx<'_>, StoreError> {
        if let Some(conn) = self.conn.as_sqlite()
            && durability != self.synchronous
        {
            let value = match durability {
                Durability::Full => "FULL",
                Durability::Relaxed => "NORMAL",
            };
            conn.pragma_update(None, "synchronous", value)?;
            self.synchronous = durability;
        }
        Tx::begin(&self.conn, durability == Durability::Relaxed, guard)
    }

    /// The connection, for reads.
    pub fn conn(&self) -> &Conn {
        &self.conn
    }

    /// The current silence generation (see [`Store::silence_generation`]).
    pub fn silence_generation(&self) -> u64 {
        self.silence_generation.load(Ordering::Acquire)
    }
}

type Job = Box<dyn FnOnce(&mut Db) + Send>;

/// A handle on the database thread. Cheap to clone; the thread ends when the last handle
/// is dropped.
#[derive(Clone)]
pub struct Store {
    jobs: mpsc::Sender<Job>,
    /// Where the database lives, for messages (`:memory:` for tests).
    location: Arc<str>,
    silence_generation: Arc<AtomicU64>,
    faults: Arc<Faults>,
    /// Committed transitions and history entries, for live listeners.
    feed: Feed,
    /// Bumped, and notified, after every ack made or undone (see `acks`).
    ack_generation: Arc<AtomicU64>,
    acks_changed: Arc<tokio::sync::Notify>,
    /// The commit guard the database thread runs (see [`Store::set_commit_guard`]).
    guard: Arc<RwLock<Option<CommitGuard>>>,
    /// The database is PostgreSQL, not SQLite.
    postgres: bool,
}

/// What is known about the database, shared by every handle, the database thread and
/// the checkpointer: what is wrong with it, and where the checkpointer got.
#[derive(Debug, Default)]
struct Faults {
    /// The error of the last commit of alert transitions, while they keep failing.
    commits: Mutex<Option<String>>,
    /// The database file, with its identity when opened (`None` in memory).
    file: Option<FileWatch>,
    /// Set once the file is found removed or replaced; never cleared.
    lost: AtomicBool,
    /// Set by the checkpointer when a pass copied the whole log into the file; the
    /// database thread then finishes the checkpoint before its next job
    /// ([`finish_checkpoint`]).
    log_copied: AtomicBool,
}

/// A file and the identity it had when opened.
#[derive(Debug)]
struct FileWatch {
    path: PathBuf,
    id: Option<FileId>,
}

/// A file's identity: the same path may name another file after a delete or a restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileId {
    dev: u64,
    ino: u64,
}

impl FileId {
    /// The identity of the file at `path` now; `None` if there is none.
    fn of(path: &Path) -> Option<FileId> {
        let meta = std::fs::metadata(path).ok()?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt as _;
            Some(FileId {
                dev: meta.dev(),
                ino: meta.ino(),
            })
        }
        #[cfg(not(unix))]
        {
            let _ = meta;
            Some(FileId { dev: 0, ino: 0 })
        }
    }
}

impl Faults {
    /// Checks that the database file is still the one opened; logs once when it is not.
    fn check_file(&self) -> Result<(), StoreError> {
        let Some(file) = &self.file else {
            return Ok(());
        };
        let lost = || StoreError::Lost {
            path: file.path.clone(),
        };
        if self.lost.load(Ordering::Acquire) {
            return Err(lost());
        }
        if FileId::of(&file.path) == file.id {
            return Ok(());
        }
        if !self.lost.swap(true, Ordering::AcqRel) {
            tracing::error!(path = %file.path.display(), "The database file was removed or replaced while in use: not ready; alerts recorded from now on do not survive a restart.");
        }
        Err(lost())
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("location", &self.location)
            .finish()
    }
}

impl Store {
    /// Opens the database named by `storage.path`, relative to the config file's folder,
    /// creating its folder and running migrations.
    pub fn open(config: &Config) -> Result<Store, StoreError> {
        if let Some(pg) = &config.storage.postgres {
            // In a cluster, a frozen instance's open transaction (and its locks, the
            // fence's lease row among them) ends after one lease, as its delivery's does.
            let idle = config.cluster.as_ref().map(|c| c.lease);
            return Store::open_postgres_ending_idle(&pg.url, idle);
        }
        if config.storage.path == ":memory:" {
            return Store::open_in_memory();
        }
        Store::open_path(&config.resolve(&config.storage.path))
    }

    /// Opens (or creates) a database file.
    pub fn open_path(path: &Path) -> Result<Store, StoreError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|source| StoreError::CreateDir {
                path: path.to_path_buf(),
                source,
            })?;
        }
        let conn = Connection::open(path).map_err(|source| StoreError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        Store::start(conn, path)
    }

    /// A private in-memory database, gone when the last handle is dropped.
    pub fn open_in_memory() -> Result<Store, StoreError> {
        let path = Path::new(":memory:");
        let conn = Connection::open_in_memory().map_err(|source| StoreError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        Store::start(conn, path)
    }

    fn start(mut conn: Connection, path: &Path) -> Result<Store, StoreError> {
        let open_err = |source| StoreError::Open {
            path: path.to_path_buf(),
            source,
        };
        // WAL: readers never block the writer, and a commit is one append to the log.
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(open_err)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(open_err)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(open_err)?;
        // A batch's commit writes the outbox, the history, the group members and their
        // indexes: with SQLite's default 2 MiB page cache, pages are spilled to the log in
        // the middle of the transaction and read back from the file for the next row.
        conn.pragma_update(None, "cache_size", -CACHE_KIB)
            .map_err(open_err)?;
        // A statement that writes several rows (the multi-row writes of a batch) keeps
        // the pages it changes in a statement journal, to undo itself alone if it fails
        // half-way. Past 64 KiB SQLite spills that journal to a temp file, one `pwrite`
        // per page: most commits did. In memory it is a copy. The transaction's own
        // durability is the WAL's and does not change.
        conn.pragma_update(None, "temp_store", "MEMORY")
            .map_err(open_err)?;
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(open_err)?;
        // Every statement the daemon runs stays prepared, BEGIN and COMMIT too (rusqlite
        // keeps 16 by default, fewer than the flow, the senders and the multi-row writes
        // use between them; one that falls out is parsed again).
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        schema::migrate(&mut conn, path)?;
        let in_memory = path == Path::new(":memory:");
        let faults = Arc::new(Faults {
            file: (!in_memory).then(|| FileWatch {
                path: path.to_path_buf(),
                id: FileId::of(path),
            }),
            ..Faults::default()
        });
        // Checkpoints run on the checkpointer's connection, not inside whichever commit
        // crosses a thousand pages of log (a transition's commit then waited for them).
        // The writer's WAL hook holds the only sender of the checkpointer's `wake`: when
        // the database thread closes the connection, the checkpointer ends.
        if !in_memory {
            conn.pragma_update(None, "wal_autocheckpoint", 0)
                .map_err(open_err)?;
            let (nudge, wake) = mpsc::sync_channel::<()>(1);
            nudge_checkpoints(&mut conn, nudge, CHECKPOINT_PAGES).map_err(open_err)?;
            let conn = Connection::open(path).map_err(open_err)?;
            let faults = faults.clone();
            std::thread::Builder::new()
                .name("navixy-alerts-checkpoint".into())
                .spawn(move || checkpoint_every(&conn, &faults, CHECKPOINT_EVERY, &wake))
                .map_err(|e| {
                    StoreError::Panicked(format!("cannot start the checkpoint thread: {e}"))
                })?;
        }
        let conn = Conn::sqlite(conn);
        Store::spawn(move || Ok(conn), false, path.display().to_string(), faults)
    }

    /// Connects to a PostgreSQL database (`storage.postgres.url`) and brings its schema
    /// to this build's version. Errors name the URL without its password.
    pub fn open_postgres(url: &str) -> Result<Store, StoreError> {
        Store::open_postgres_ending_idle(url, None)
    }

    /// [`Store::open_postgres`], the server ending a transaction left idle for `idle`
    /// (`idle_in_transaction_session_timeout`).
    pub fn open_postgres_ending_idle(
        url: &str,
        idle: Option<Duration>,
    ) -> Result<Store, StoreError> {
        let url = url.to_owned();
        let location = redact_url(&url);
        let shown = location.clone();
        // The synchronous client runs a runtime of its own: it must not be made (nor
        // used) on an async worker, so it is made on the database thread.
        let open = move || {
            let conn = Conn::postgres(sql::PgConn::connect_ending_idle(&url, idle)?);
            schema::migrate_postgres(&conn, &shown)?;
            Ok(conn)
        };
        Store::spawn(open, true, location, Arc::new(Faults::default()))
    }

    /// Starts the database thread on the connection `open` makes there, and waits until
    /// it is made.
    fn spawn(
        open: impl FnOnce() -> Result<Conn, StoreError> + Send + 'static,
        postgres: bool,
        location: String,
        faults: Arc<Faults>,
    ) -> Result<Store, StoreError> {
        let silence_generation = Arc::new(AtomicU64::new(0));
        let guard: Arc<RwLock<Option<CommitGuard>>> = Arc::default();
        let (jobs, rx) = mpsc::channel::<Job>();
        let (opened, ready) = mpsc::sync_channel::<Result<(), StoreError>>(1);
        let thread_generation = silence_generation.clone();
        let thread_guard = guard.clone();
        let thread_faults = faults.clone();
        std::thread::Builder::new()
            .name("navixy-alerts-store".into())
            .spawn(move || {
                // Ends when every Store handle is gone, and the checkpointer with it (its
                // `wake` closes with this thread's connection).
                let conn = match open() {
                    Ok(conn) => conn,
                    Err(e) => {
                        let _ = opened.send(Err(e));
                        return;
                    }
                };
                let _ = opened.send(Ok(()));
                let mut db = Db {
                    conn,
                    synchronous: Durability::Full,
                    silence_generation: thread_generation,
                    guard: thread_guard,
                };
                while let Ok(job) = rx.recv() {
                    db.conn.heal();
                    finish_checkpoint(&db.conn, &thread_faults);
                    job(&mut db);
                }
            })
            .map_err(|e| StoreError::Panicked(format!("cannot start the database thread: {e}")))?;
        ready.recv().map_err(|_| StoreError::Closed)??;
        Ok(Store {
            jobs,
            location: Arc::from(location),
            silence_generation,
            faults,
            feed: Feed::default(),
            ack_generation: Arc::default(),
            acks_changed: Arc::default(),
            guard,
            postgres,
        })
    }

    /// Sets the check every commit of alert state runs just before its COMMIT
    /// ([`Db::write_guarded`]): transitions, live and pending alerts, escalation steps and
    /// new outbox rows. An `Err` (normally [`StoreError::Fenced`]) rolls the commit back.
    /// The cluster sets it to "this instance still holds its leases".
    pub fn set_commit_guard(&self, guard: CommitGuard) {
        *self.guard.write() = Some(guard);
    }

    /// True when the database is PostgreSQL.
    pub fn is_postgres(&self) -> bool {
        self.postgres
    }

    /// Where the database lives, for messages.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// Runs `f` on the database thread and waits for its result without blocking the
    /// async runtime. A panic inside `f` is caught and returned as an error; the thread
    /// goes on.
    pub async fn call<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&mut Db) -> Result<R, StoreError> + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.jobs
            .send(Box::new(move |db| {
                let _ = tx.send(run_caught(db, f));
            }))
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Like [`Store::call`], for code that is not async (a shard worker restoring its
    /// alerts at start). Must not be called from inside an async task.
    pub fn call_blocking<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&mut Db) -> Result<R, StoreError> + Send + 'static,
    {
        let (tx, rx) = mpsc::sync_channel(1);
        self.jobs
            .send(Box::new(move |db| {
                let _ = tx.send(run_caught(db, f));
            }))
            .map_err(|_| StoreError::Closed)?;
        rx.recv().map_err(|_| StoreError::Closed)?
    }

    /// Every live (firing) alert, for the rule evaluator to restore after a restart so
    /// that it neither fires them again nor forgets to resolve them.
    pub async fn load_live_alerts(&self) -> Result<Vec<crate::alert::AlertRecord>, StoreError> {
        self.call(|db| load_live_alerts(db.conn())).await
    }

    /// [`Store::load_live_alerts`] for code that is not async.
    pub fn load_live_alerts_blocking(&self) -> Result<Vec<crate::alert::AlertRecord>, StoreError> {
        self.call_blocking(|db| load_live_alerts(db.conn()))
    }

    /// Keeps a stopping daemon's pending alerts for the next start (replacing any kept).
    pub async fn save_pending_alerts(
        &self,
        pending: Vec<crate::alert::PendingAlert>,
    ) -> Result<(), StoreError> {
        self.call(move |db| {
            let tx = db.write_guarded(Durability::Full)?;
            save_pending_alerts(&tx, &pending)?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// The pending alerts the last stop kept, removed from the store as they are read.
    pub async fn take_pending_alerts(&self) -> Result<Vec<crate::alert::PendingAlert>, StoreError> {
        self.call(|db| {
            let tx = db.write_guarded(Durability::Full)?;
            let pending = take_pending_alerts(&tx)?;
            tx.commit()?;
            Ok(pending)
        })
        .await
    }

    /// [`Store::save_pending_alerts`] for a cluster's instance: replaces only the kept
    /// pending alerts of `sources`, the ones it runs.
    pub async fn save_pending_alerts_of(
        &self,
        sources: Vec<String>,
        pending: Vec<crate::alert::PendingAlert>,
    ) -> Result<(), StoreError> {
        self.call(move |db| {
            let tx = db.write_guarded(Durability::Full)?;
            save_pending_alerts_of(&tx, &sources, &pending)?;
            tx.commit()
        })
        .await
    }

    /// [`Store::take_pending_alerts`] for a cluster's instance: takes only those of
    /// `sources`, the ones it runs.
    pub async fn take_pending_alerts_of(
        &self,
        sources: Vec<String>,
    ) -> Result<Vec<crate::alert::PendingAlert>, StoreError> {
        self.call(move |db| {
            let tx = db.write_guarded(Durability::Full)?;
            let pending = take_pending_alerts_of(&tx, &sources)?;
            tx.commit()?;
            Ok(pending)
        })
        .await
    }

    /// Adds a silence (validated first: matchers, regexes, time range).
    pub async fn add_silence(
        &self,
        silence: NewSilence,
        now: DateTime<Utc>,
    ) -> Result<Silence, StoreError> {
        let stored = silence.into_silence(now)?;
        let generation = self.silence_generation.clone();
        self.call(move |db| {
            let tx = db.write(Durability::Full)?;
            silences::insert_silence(&tx, &stored)?;
            tx.commit()?;
            generation.fetch_add(1, Ordering::AcqRel);
            Ok(stored)
        })
        .await
    }

    /// All silences, active, pending and expired, newest first.
    pub async fn list_silences(&self) -> Result<Vec<Silence>, StoreError> {
        self.call(|db| load_silences(db.conn())).await
    }

    /// Deletes a silence; false if there was none with that id.
    pub async fn delete_silence(&self, id: &str) -> Result<bool, StoreError> {
        let id = id.to_owned();
        let generation = self.silence_generation.clone();
        self.call(move |db| {
            let tx = db.write(Durability::Full)?;
            let deleted = silences::delete_silence(&tx, &id)?;
            tx.commit()?;
            generation.fetch_add(1, Ordering::AcqRel);
            Ok(deleted)
        })
        .await
    }

    /// Notifications that failed for good (a permanent error, or retried for
    /// `notify.retry_for` without success), newest first.
    pub async fn list_failed(&self, limit: usize) -> Result<Vec<OutboxEntry>, StoreError> {
        self.call(move |db| list_outbox(db.conn(), Some(OutboxStatus::Failed), limit))
            .await
    }

    /// The outbox, any status, newest first.
    pub async fn list_outbox(
        &self,
        status: Option<OutboxStatus>,
        limit: usize,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        self.call(move |db| list_outbox(db.conn(), status, limit))
            .await
    }

    /// The newest entries of the notification log: what happened to each transition
    /// on each channel (queued, silenced, unrouted, held, ...).
    pub async fn recent_log(&self, limit: usize) -> Result<Vec<LogEntry>, StoreError> {
        self.call(move |db| recent_log(db.conn(), limit)).await
    }

    /// The live stream of what is committed: writers publish after their commit,
    /// `GET /api/v1/events` listens.
    pub fn feed(&self) -> &Feed {
        &self.feed
    }

    /// A page of the alert history, newest first.
    pub async fn history(&self, query: HistoryQuery) -> Result<HistoryPage, StoreError> {
        self.call(move |db| history::page(db.conn(), &query)).await
    }

    /// Appends entries in a transaction of their own and tells the feed (for writers
    /// that have no transaction to share, such as an acknowledgement).
    pub async fn append_history(&self, entries: Vec<HistoryEntry>) -> Result<(), StoreError> {
        let feed = self.feed.clone();
        self.call(move |db| {
            let tx = db.write(Durability::Full)?;
            for e in &entries {
                history::append(&tx, e)?;
            }
            tx.commit()?;
            feed.publish_all(entries.into_iter().map(FeedEvent::History));
            Ok(())
        })
        .await
    }

    /// Deletes history entries older than `before`, `batch` at a time, each batch in a
    /// transaction of its own so that commits of transitions go in between. Returns how
    /// many.
    pub async fn prune_history(
        &self,
        before: DateTime<Utc>,
        batch: usize,
    ) -> Result<usize, StoreError> {
        let mut total = 0;
        loop {
            let n = self
                .call(move |db| {
                    let tx = db.write(Durability::Relaxed)?;
                    let n = history::prune_history(&tx, before, batch)?;
                    tx.commit()?;
                    Ok(n)
                })
                .await?;
            total += n;
            if n < batch {
                return Ok(total);
            }
            tokio::task::yield_now().await;
        }
    }

    /// A silence generation that changes whenever a silence is added or deleted.
    pub fn silence_generation(&self) -> u64 {
        self.silence_generation.load(Ordering::Acquire)
    }

    /// Checks that the database file is still the one opened, not removed or replaced
    /// (the daemon would go on writing to a file that nobody can open again).
    pub fn check_file(&self) -> Result<(), StoreError> {
        self.faults.check_file()
    }

    /// Notes the outcome of a commit of alert transitions (`/readyz` is not ready while
    /// they fail). Returns true when it changes the state: the first failure after a
    /// success, or the first success after failures (for logging once).
    pub fn note_commit(&self, result: Result<(), &StoreError>) -> bool {
        let mut commits = self.faults.commits.lock();
        match result {
            Ok(()) => commits.take().is_some(),
            Err(e) => commits.replace(e.to_string()).is_none(),
        }
    }

    /// For `/readyz`: the database file is the one opened, commits of alert transitions
    /// are not failing, and the database accepts a cheap write.
    pub async fn check_writable(&self) -> Result<(), StoreError> {
        self.check_file()?;
        if let Some(e) = self.faults.commits.lock().clone() {
            return Err(StoreError::CommitsFailing(e));
        }
        self.call(|db| {
            let tx = db.write(Durability::Relaxed)?;
            tx.execute(
                "INSERT INTO meta (key, value) VALUES ('ready_check', '1')
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                params![],
            )?;
            tx.commit()?;
            Ok(())
        })
        .await
    }
}

impl Store {
    /// SQLite: moves the whole write-ahead log into the database file and empties it;
    /// returns SQLite's "busy" flag (0 when complete). `None` on PostgreSQL, which has no
    /// such file.
    pub async fn checkpoint_truncate(&self) -> Result<Option<i64>, StoreError> {
        self.call(|db| match db.conn().as_sqlite() {
            Some(conn) => Ok(Some(conn.query_row(
                "PRAGMA wal_checkpoint(TRUNCATE)",
                [],
                |row| row.get::<_, i64>(0),
            )?)),
            None => Ok(None),
        })
        .await
    }
}

/// The store connection's page cache (SQLite reads a negative `cache_size` as KiB).
const CACHE_KIB: i64 = 32 * 1024;

/// How often the checkpointer moves the log into the database file, at the latest.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(10);

/// Pages of log (16 MiB) after which a commit wakes the checkpointer early.
///
/// Under load the writer appends about 50 MB of log a second, nearly all of it new
/// versions of the same few thousand pages. A log that waits ten seconds for its
/// checkpoint grows by every page written (370 MB in a 7 s `loadtest throughput`), and
/// each append to new blocks of the file costs the kernel an allocation and a page to
/// zero. Started over every 16 MiB, the log overwrites blocks it has already, and each
/// checkpoint copies at most the database's pages.
const CHECKPOINT_PAGES: i32 = 4096;

/// Makes every commit of `conn` that leaves `pages` more pages in its log than at the
/// last nudge (or than nothing, after the log started over) send one to the checkpointer:
/// `nudge` is the sending end of its `wake`, and closes with `conn`. A nudge waiting
/// already is enough.
fn nudge_checkpoints(
    conn: &mut Connection,
    nudge: mpsc::SyncSender<()>,
    pages: i32,
) -> rusqlite::Result<()> {
    let mut at_last_nudge = 0;
    conn.wal_hook(Some(move |_: &mut rusqlite::hooks::Wal, in_log: i32| {
        if in_log < at_last_nudge {
            at_last_nudge = 0;
        }
        if in_log >= at_last_nudge + pages {
            at_last_nudge = in_log;
            let _ = nudge.try_send(());
        }
        Ok(())
    }))
}

/// Runs a passive checkpoint every `period`, or sooner when nudged through `wake`, until
/// every sender of `wake` is gone. Passive: it copies what no reader still needs and
/// never blocks the writer, which goes on appending to the log meanwhile. First it checks
/// that the file is still there (a removed file is logged once, and not written). A pass
/// that copied the whole log says so in `faults.log_copied`, for [`finish_checkpoint`].
fn checkpoint_every(
    conn: &Connection,
    faults: &Faults,
    period: Duration,
    wake: &mpsc::Receiver<()>,
) {
    let mut failed = false;
    while !matches!(
        wake.recv_timeout(period),
        Err(mpsc::RecvTimeoutError::Disconnected)
    ) {
        if faults.check_file().is_err() {
            continue;
        }
        match checkpoint_pass(conn, faults) {
            Ok(()) => failed = false,
            Err(e) if !failed => {
                tracing::warn!(error = %e, "Database checkpoint failed; the log grows until one succeeds.");
                failed = true;
            }
            Err(_) => {}
        }
    }
}

/// One pass of the checkpointer; a pass that copied the whole log sets
/// `faults.log_copied`.
fn checkpoint_pass(conn: &Connection, faults: &Faults) -> rusqlite::Result<()> {
    let (log, copied) = passive_checkpoint(conn)?;
    if log > 0 && copied == log {
        faults.log_copied.store(true, Ordering::Release);
    }
    Ok(())
}

/// On the database thread, between two jobs: when the checkpointer's last pass copied the
/// whole log, copies what was committed since (little: what the writer appended while the
/// pass ran) with a passive checkpoint of its own.
///
/// SQLite starts the log over at the first write of a transaction that began with every
/// frame in the file. Under steady load the writer is nearly always inside a transaction
/// that began before the checkpointer's pass ended, and that transaction appends to the
/// log, so the log did not start over while the load lasted: it grew by every page
/// written (to 370 MB in 30 s of `loadtest latency`), each commit extending the file.
/// Here no transaction is open, so the next one starts the log over (unless a reader
/// still reads from it; then a later pass does). Passive: it never waits.
fn finish_checkpoint(conn: &Conn, faults: &Faults) {
    let Some(conn) = conn.as_sqlite() else {
        return;
    };
    if faults.log_copied.swap(false, Ordering::AcqRel)
        && let Err(e) = passive_checkpoint(conn)
    {
        tracing::debug!(error = %e, "Cannot finish the database checkpoint; the next one will.");
    }
}

/// One passive checkpoint: the log's frames, and how many of them are now in the file.
fn passive_checkpoint(conn: &Connection) -> rusqlite::Result<(i64, i64)> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
        Ok((row.get(1)?, row.get(2)?))
    })
}

fn run_caught<R, F>(db: &mut Db, f: F) -> Result<R, StoreError>
where
    F: FnOnce(&mut Db) -> Result<R, StoreError>,
{
    match std::panic::catch_unwind(AssertUnwindSafe(|| f(db))) {
        Ok(result) => result,
        Err(panic) => {
            // A transaction left open by the panic is rolled back when it is dropped
            // during unwinding; the connection stays usable.
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Err(StoreError::Panicked(message))
        }
    }
}

/// Milliseconds since the epoch: how times are stored.
pub(crate) fn to_ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// The inverse of [`to_ms`]; out-of-range values (a corrupt row) read as the epoch rather
/// than failing the whole load.
pub(crate) fn from_ms(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or(DateTime::UNIX_EPOCH)
}

pub(crate) fn to_json<T: serde::Serialize>(
    what: &'static str,
    value: &T,
) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|source| StoreError::Json { what, source })
}

pub(crate) fn from_json<T: serde::de::DeserializeOwned>(
    what: &'static str,
    text: &str,
) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|source| StoreError::Json { what, source })
}

#[cfg(test)]
mod tests;

/// A migrated private in-memory connection, for unit tests that drive the dispatcher's
/// synchronous parts directly.
#[cfg(test)]
pub(crate) fn test_connection() -> Conn {
    let mut conn = Connection::open_in_memory().unwrap();
    conn.pragma_update(None, "foreign_keys", "ON").unwrap();
    schema::migrate(&mut conn, Path::new(":memory:")).unwrap();
    Conn::sqlite(conn)
}

/// A migrated connection to a new database of the test process's PostgreSQL server;
/// `None` (the test is skipped, and says so) when PostgreSQL is not installed.
#[cfg(test)]
pub(crate) fn pg_test_connection(test: &str) -> Option<Conn> {
    let url = testing::shared_or_skip(test)?.create_database();
    let conn = Conn::postgres(sql::PgConn::connect_ending_idle(&url, None).unwrap());
    schema::migrate_postgres(&conn, &url).unwrap();
    Some(conn)
}

/// A store on a new database of the test process's PostgreSQL server (see
/// [`pg_test_connection`]).
#[cfg(test)]
pub(crate) fn pg_test_store(test: &str) -> Option<Store> {
    let url = testing::shared_or_skip(test)?.create_database();
    Some(Store::open_postgres(&url).unwrap())
}

/// One test body, run on both backends: each `fn name(conn: &Conn)` of the calling module
/// becomes the tests `sqlite::name` (an in-memory database) and `postgres::name` (a new
/// database on the test server, skipped without PostgreSQL).
#[cfg(test)]
macro_rules! conn_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[test]
            fn $name() {
                super::$name(&$crate::store::test_connection());
            })*
        }
        mod postgres {
            $(#[test]
            fn $name() {
                let test = concat!(module_path!(), "::", stringify!($name));
                if let Some(conn) = $crate::store::pg_test_connection(test) {
                    super::$name(&conn);
                }
            })*
        }
    };
}
#[cfg(test)]
pub(crate) use conn_tests;

/// [`conn_tests!`] for `async fn name(store: Store)`.
#[cfg(test)]
macro_rules! store_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test]
            async fn $name() {
                super::$name($crate::store::Store::open_in_memory().unwrap()).await;
            })*
        }
        mod postgres {
            $(#[tokio::test]
            async fn $name() {
                let test = concat!(module_path!(), "::", stringify!($name));
                if let Some(store) = $crate::store::pg_test_store(test) {
                    super::$name(store).await;
                }
            })*
        }
    };
}
#[cfg(test)]
pub(crate) use store_tests;
