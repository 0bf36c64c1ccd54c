use super::*;
use crate::alert::{AlertStatus, Fingerprint, PendingAlert};
use crate::dispatch::testing::{firing, t0};
use crate::store::store_tests;

// The store's behaviour, the same on SQLite and PostgreSQL.
store_tests!(
    live_alerts_round_trip_and_resolve_forgets,
    a_panicking_job_is_an_error_and_the_thread_goes_on,
    silences_add_list_delete,
    bad_silences_are_refused_with_the_reason,
    outbox_rows_move_from_pending_to_sent_or_failed,
    failing_commits_make_the_store_not_ready_until_one_succeeds,
    a_commit_guard_that_refuses_rolls_the_whole_batch_back,
    pending_alerts_are_kept_for_one_start,
    pending_alerts_are_kept_per_source_for_a_cluster,
    a_write_that_fails_in_isolation_leaves_the_rest_of_its_transaction,
    rows_written_many_at_once_read_back_in_order_and_update_on_conflict,
);

/// 69 rows: one statement of each size (64, 4, 1).
async fn rows_written_many_at_once_read_back_in_order_and_update_on_conflict(store: Store) {
    let alerts: Vec<_> = (0..69).map(|i| firing("fuel_drain", i)).collect();
    let batch = alerts.clone();
    store
        .call(move |db| {
            let tx = db.write(Durability::Full)?;
            let rows = |status: &str| -> Vec<LiveAlertRow> {
                batch
                    .iter()
                    .map(|t| {
                        LiveAlertRow::new(t, format!("{status}:{}", to_json("t", t).unwrap()), t0())
                    })
                    .collect()
            };
            // Written twice: the second write updates every row.
            upsert_live_alerts(&tx, &rows("old"))?;
            let mut fresh = rows("new");
            for row in &mut fresh {
                row.last = row.last.trim_start_matches("new:").to_owned();
            }
            upsert_live_alerts(&tx, &fresh)?;
            let keys: Vec<String> = (0..69).map(|i| format!("g{i}")).collect();
            let groups: Vec<_> = keys.iter().map(|k| ("ops", k.as_str(), "{}")).collect();
            put_groups(&tx, &groups)?;
            let states: Vec<String> = (0..69).map(|i| format!("{{\"n\":{i}}}")).collect();
            let members: Vec<_> = batch
                .iter()
                .zip(&states)
                .map(|(t, state)| ("ops", "g0", t.fingerprint.0.as_str(), state.as_str()))
                .collect();
            put_group_members(&tx, &members)?;
            put_group_members(&tx, &members[..1])?;
            let entries: Vec<_> = batch.iter().map(HistoryEntry::transition).collect();
            history::append_all(&tx, &entries)?;
            tx.commit()?;
            Ok(())
        })
        .await
        .unwrap();

    let live = store.load_live_alerts().await.unwrap();
    assert_eq!(live.len(), 69);
    for rec in &live {
        let want = alerts
            .iter()
            .find(|t| t.fingerprint == rec.fingerprint)
            .unwrap();
        assert_eq!(&rec.last, want);
        assert_eq!(rec.tracker_id, want.tracker.as_ref().map(|tr| tr.id));
    }
    let (groups, page) = store
        .call(|db| {
            let groups = load_groups(db.conn())?;
            let page = history::page(
                db.conn(),
                &HistoryQuery {
                    limit: 100,
                    ..HistoryQuery::default()
                },
            )?;
            Ok((groups, page))
        })
        .await
        .unwrap();
    assert_eq!(groups.len(), 69);
    let g0 = groups.iter().find(|g| g.group_key == "g0").unwrap();
    assert_eq!(g0.members.len(), 69);
    assert_eq!(g0.members[&alerts[5].fingerprint.0], "{\"n\":5}");
    // Newest first: the reverse of the order appended.
    let trackers: Vec<_> = page.entries.iter().rev().map(|e| e.tracker_id).collect();
    assert_eq!(trackers, (0..69).map(Some).collect::<Vec<_>>());
    assert_eq!(page.entries[0], HistoryEntry::transition(&alerts[68]));
}

#[test]
fn migrations_set_the_version_and_are_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/folder/alerts.db");
    drop(Store::open_path(&path).unwrap());
    assert!(path.exists(), "the parent folders are created");
    let conn = rusqlite::Connection::open(&path).unwrap();
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version, schema::VERSION);
    let mode: String = conn
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    drop(conn);
    // Opening again runs no step twice.
    drop(Store::open_path(&path).unwrap());
}

#[test]
fn a_database_from_a_newer_build_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("alerts.db");
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.pragma_update(None, "user_version", 99).unwrap();
    drop(conn);
    let err = Store::open_path(&path).unwrap_err().to_string();
    assert!(err.contains("alerts.db"), "{err}");
    assert!(err.contains("schema version 99"), "{err}");
}

#[test]
fn storage_path_resolves_against_the_config_folder() {
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("conf/navixy-alerts.yaml");
    let config = crate::config::Config::from_yaml(
        "source: { simulator: {} }\nstorage: { path: data/x.db }\n",
        &config_path,
        |_| None,
    )
    .unwrap();
    drop(Store::open(&config).unwrap());
    assert!(dir.path().join("conf/data/x.db").exists());
}

async fn live_alerts_round_trip_and_resolve_forgets(store: Store) {
    let fuel = firing("fuel_drain", 21080);
    let other = firing("speeding", 21081);
    let (f, o) = (fuel.clone(), other.clone());
    store
        .call(move |db| {
            let tx = db.write(Durability::Full)?;
            upsert_live_alert(&tx, &f, t0())?;
            upsert_live_alert(&tx, &o, t0())?;
            tx.commit()?;
            Ok(())
        })
        .await
        .unwrap();
    let live = store.load_live_alerts().await.unwrap();
    assert_eq!(live.len(), 2);
    let rec = live.iter().find(|r| r.rule == "fuel_drain").unwrap();
    assert_eq!(rec.fingerprint, fuel.fingerprint);
    assert_eq!(rec.tracker_id, Some(21080));
    assert_eq!(rec.status, AlertStatus::Firing);
    assert_eq!(rec.starts_at, t0());
    assert_eq!(rec.last, fuel);

    let fp = fuel.fingerprint.clone();
    store
        .call(move |db| {
            let tx = db.write(Durability::Full)?;
            delete_live_alert(&tx, &fp)?;
            tx.commit()?;
            Ok(())
        })
        .await
        .unwrap();
    let live = store.load_live_alerts().await.unwrap();
    assert_eq!(live.len(), 1);
    assert_eq!(live[0].rule, "speeding");
}

#[test]
fn blocking_calls_work_from_a_plain_thread() {
    let store = Store::open_in_memory().unwrap();
    let live = std::thread::spawn(move || store.load_live_alerts_blocking())
        .join()
        .unwrap()
        .unwrap();
    assert!(live.is_empty());
}

async fn a_panicking_job_is_an_error_and_the_thread_goes_on(store: Store) {
    let err = store
        .call(|_db| -> Result<(), StoreError> { panic!("boom") })
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Panicked(ref m) if m == "boom"),
        "{err}"
    );
    store.check_writable().await.unwrap();
}

fn matcher(name: &str, value: &str, is_regex: bool) -> SilenceMatcher {
    SilenceMatcher {
        name: name.into(),
        value: value.into(),
        is_regex,
        is_equal: true,
    }
}

async fn silences_add_list_delete(store: Store) {
    let generation = store.silence_generation();
    let added = store
        .add_silence(
            NewSilence {
                matchers: vec![matcher("rule", "fuel_.*", true)],
                starts_at: None,
                ends_at: t0() + chrono::Duration::hours(2),
                created_by: "ops".into(),
                comment: "refuelling at the depot".into(),
            },
            t0(),
        )
        .await
        .unwrap();
    assert!(added.id.starts_with("sil_"));
    assert_eq!(added.starts_at, t0());
    assert!(store.silence_generation() > generation);
    assert_eq!(added.state(t0()), "active");
    assert_eq!(added.state(t0() + chrono::Duration::hours(3)), "expired");

    let listed = store.list_silences().await.unwrap();
    assert_eq!(listed, vec![added.clone()]);
    assert!(store.delete_silence(&added.id).await.unwrap());
    assert!(!store.delete_silence(&added.id).await.unwrap());
    assert!(store.list_silences().await.unwrap().is_empty());
}

async fn bad_silences_are_refused_with_the_reason(store: Store) {
    let new = |matchers, ends_at| NewSilence {
        matchers,
        starts_at: None,
        ends_at,
        created_by: String::new(),
        comment: String::new(),
    };
    let later = t0() + chrono::Duration::hours(1);
    let cases = [
        (new(vec![], later), "at least one matcher"),
        (
            new(vec![matcher("rule", "(", true)], later),
            "not a valid regex",
        ),
        (
            new(vec![matcher("", "x", false)], later),
            "needs a label `name`",
        ),
        (
            new(vec![matcher("rule", "x", false)], t0()),
            "must end after it starts",
        ),
    ];
    for (silence, expected) in cases {
        let err = store
            .add_silence(silence, t0())
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains(expected), "{err} should contain {expected}");
    }
}

async fn outbox_rows_move_from_pending_to_sent_or_failed(store: Store) {
    store
        .call(|db| {
            let tx = db.write(Durability::Full)?;
            insert_outbox(&tx, "msg_a", "ops", "g", t0(), "{}")?;
            insert_outbox(&tx, "msg_b", "ops", "g", t0(), "{}")?;
            insert_outbox(&tx, "msg_c", "mail", "g", t0(), "{}")?;
            tx.commit()?;
            Ok(())
        })
        .await
        .unwrap();
    let later = t0() + chrono::Duration::seconds(5);
    store
        .call(move |db| {
            let tx = db.write(Durability::Relaxed)?;
            mark_sent(&tx, "msg_a", 1, later)?;
            mark_retry(&tx, "msg_b", 1, later, "HTTP 503")?;
            mark_failed(&tx, "msg_c", 1, later, "HTTP 400: bad request")?;
            tx.commit()?;
            Ok(())
        })
        .await
        .unwrap();
    let pending = store.call(|db| load_pending(db.conn())).await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].id, "msg_b");
    assert_eq!(pending[0].attempts, 1);
    assert_eq!(pending[0].next_attempt_at, later);
    assert_eq!(pending[0].last_error.as_deref(), Some("HTTP 503"));

    let failed = store.list_failed(10).await.unwrap();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].id, "msg_c");
    assert_eq!(failed[0].status, OutboxStatus::Failed);
    assert_eq!(failed[0].finished_at, Some(later));
    assert_eq!(store.call(|db| count_pending(db.conn())).await.unwrap(), 1);

    let json = serde_json::to_value(&failed[0]).unwrap();
    assert_eq!(
        json["payload"],
        serde_json::json!({}),
        "nested, not a string"
    );
    assert_eq!(json["status"], "failed");

    let pruned = store
        .call(move |db| prune_outbox(db.conn(), later + chrono::Duration::seconds(1)))
        .await
        .unwrap();
    assert_eq!(pruned, 1, "only the sent row is pruned");
}

#[test]
fn a_relaxed_write_syncs_normal_and_a_full_one_syncs_full() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_path(&dir.path().join("alerts.db")).unwrap();
    let modes: Vec<i64> = store
        .call_blocking(|db| {
            let mut modes = Vec::new();
            for durability in [
                Durability::Relaxed,
                Durability::Relaxed,
                Durability::Full,
                Durability::Relaxed,
            ] {
                let tx = db.write(durability)?;
                modes.push(
                    tx.query_one("PRAGMA synchronous", crate::store::params![], |r| r.get(0))?,
                );
                tx.commit()?;
            }
            Ok(modes)
        })
        .unwrap();
    // SQLite's codes: 1 NORMAL, 2 FULL.
    assert_eq!(modes, [1, 1, 2, 1]);
}

#[test]
fn statement_journals_stay_in_memory() {
    // A batch's multi-row writes journal each page they change; on disk that was a
    // temp file written page by page at every commit.
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_path(&dir.path().join("alerts.db")).unwrap();
    let temp_store: i64 = store
        .call_blocking(|db| {
            db.conn()
                .query_one("PRAGMA temp_store", crate::store::params![], |r| r.get(0))
        })
        .unwrap();
    // SQLite's codes: 0 DEFAULT, 1 FILE, 2 MEMORY.
    assert_eq!(temp_store, 2);
}

#[test]
fn commits_leave_the_log_to_the_checkpointer() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("alerts.db");
    let store = Store::open_path(&path).unwrap();
    for i in 0..50 {
        store
            .call_blocking(move |db| {
                let tx = db.write(Durability::Full)?;
                upsert_live_alert(&tx, &firing("speeding", i), t0())?;
                tx.commit()?;
                Ok(())
            })
            .unwrap();
    }
    let auto: i64 = store
        .call_blocking(|db| {
            db.conn()
                .query_one("PRAGMA wal_autocheckpoint", crate::store::params![], |r| {
                    r.get(0)
                })
        })
        .unwrap();
    assert_eq!(auto, 0, "commits never checkpoint");
    // No commit checkpointed: every frame is still in the log, and a checkpoint from
    // another connection (the checkpointer's) moves them all into the file.
    let other = Connection::open(&path).unwrap();
    let (log, copied) = passive_checkpoint(&other).unwrap();
    assert!(log >= 50, "{log} frames in the log");
    assert_eq!(copied, log);
    // The checkpointer's loop ends with the database thread.
    let (stop, stopped) = mpsc::channel();
    drop(stop);
    checkpoint_every(
        &other,
        &Faults::default(),
        Duration::from_secs(3600),
        &stopped,
    );
}

#[test]
fn the_log_starts_over_after_a_checkpoint_that_a_transaction_straddled() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("alerts.db");
    let store = Store::open_path(&path).unwrap();
    let commit = |store: &Store, trackers: std::ops::Range<i64>| {
        store
            .call_blocking(move |db| {
                let tx = db.write(Durability::Full)?;
                for i in trackers {
                    upsert_live_alert(&tx, &firing("speeding", i), t0())?;
                }
                tx.commit()?;
                Ok(())
            })
            .unwrap();
    };
    // The log's salt (bytes 16..24 of its header) changes each time it starts over; read
    // from the file, because a checkpoint to measure the log would start it over too.
    let wal = path.with_extension("db-wal");
    let salt = || std::fs::read(&wal).unwrap()[16..24].to_vec();
    commit(&store, 0..200);
    let before = salt();
    // The checkpointer's pass copies the whole log while a transaction is open, as it
    // nearly always is under load; that transaction then appends to the log.
    let checkpointer = Connection::open(&path).unwrap();
    let faults = store.faults.clone();
    store
        .call_blocking(move |db| {
            let tx = db.write(Durability::Full)?;
            upsert_live_alert(&tx, &firing("speeding", 500), t0())?;
            checkpoint_pass(&checkpointer, &faults).unwrap();
            tx.commit()?;
            Ok(())
        })
        .unwrap();
    assert!(store.faults.log_copied.load(Ordering::Acquire));
    assert_eq!(salt(), before, "the straddling commit appended to the log");
    // The next commit starts the log over instead of appending to it forever.
    commit(&store, 600..601);
    assert_ne!(salt(), before, "the log did not start over");
    assert!(!store.faults.log_copied.load(Ordering::Acquire));
}

/// The frames in a log file (its 32-byte header, then a 24-byte header and a page each).
fn frames_in(wal: &Path) -> u64 {
    (std::fs::metadata(wal).unwrap().len() - 32) / (4096 + 24)
}

#[test]
fn commits_nudge_the_checkpointer_each_time_the_log_grows_by_the_threshold() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("alerts.db");
    let wal = path.with_extension("db-wal");
    let mut conn = Connection::open(&path).unwrap();
    conn.pragma_update(None, "journal_mode", "WAL").unwrap();
    conn.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
    conn.execute_batch("CREATE TABLE t (v BLOB)").unwrap();
    let (nudge, wake) = mpsc::sync_channel(1);
    nudge_checkpoints(&mut conn, nudge, 8).unwrap();
    // Each commit adds four pages: a row of 8 KB (two overflow pages), the table's leaf
    // and its root.
    let commit = |conn: &Connection| {
        conn.execute("INSERT INTO t (v) VALUES (zeroblob(8000))", [])
            .unwrap();
    };
    let mut nudged_at = Vec::new();
    for _ in 0..6 {
        commit(&conn);
        if wake.try_recv().is_ok() {
            nudged_at.push(frames_in(&wal));
        }
    }
    // The log grew past 8 pages, then past 8 more, and so on: each crossing nudged once.
    assert_eq!(frames_in(&wal), 26);
    assert_eq!(nudged_at, [10, 18, 26]);
    // A nudge not yet taken is enough: crossings meanwhile do not queue more.
    for _ in 0..12 {
        commit(&conn);
    }
    assert!(wake.try_recv().is_ok());
    assert!(wake.try_recv().is_err(), "one nudge waits at most");
    // Once the checkpointer has copied everything, the next commit starts the log over,
    // and the count starts over with it: 8 pages later, a nudge.
    let other = Connection::open(&path).unwrap();
    let (log, copied) = passive_checkpoint(&other).unwrap();
    assert_eq!(copied, log);
    let mut commits = 0;
    while wake.try_recv().is_err() {
        commit(&conn);
        commits += 1;
        assert!(commits < 12, "no nudge after the log started over");
    }
    assert_eq!(commits, 2, "nudged at the 8th page of the new log");
    // The sender goes with the connection, and the checkpointer's loop with it.
    drop(conn);
    assert_eq!(wake.recv(), Err(mpsc::RecvError));
}

#[test]
fn a_nudge_wakes_the_checkpointer_before_its_period() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("alerts.db");
    let store = Store::open_path(&path).unwrap();
    store
        .call_blocking(|db| {
            let tx = db.write(Durability::Full)?;
            upsert_live_alert(&tx, &firing("speeding", 1), t0())?;
            tx.commit()?;
            Ok(())
        })
        .unwrap();
    let conn = Connection::open(&path).unwrap();
    let faults = Arc::new(Faults::default());
    let (nudge, wake) = mpsc::sync_channel(1);
    let thread_faults = faults.clone();
    let checkpointer = std::thread::spawn(move || {
        checkpoint_every(&conn, &thread_faults, Duration::from_secs(3600), &wake)
    });
    nudge.send(()).unwrap();
    // Not the hour's pass: the nudge's, which copies the whole log.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !faults.log_copied.load(Ordering::Acquire) {
        assert!(
            std::time::Instant::now() < deadline,
            "the nudge woke nothing"
        );
        std::thread::yield_now();
    }
    drop(nudge);
    checkpointer.join().unwrap();
}

async fn pending_alerts_are_kept_for_one_start(store: Store) {
    let pending = |rule: &str, tracker: i64, key: Option<&str>| PendingAlert {
        fingerprint: Fingerprint::new(rule, Some(tracker), key),
        rule: rule.into(),
        tracker_id: tracker,
        key: key.map(str::to_string),
        since: t0(),
    };
    let first = vec![pending("idling", 7, None), pending("door", 8, Some("2"))];
    store.save_pending_alerts(first).await.unwrap();
    // A second stop replaces what the first kept.
    let second = vec![pending("idling", 9, None), pending("door", 8, Some("3"))];
    store.save_pending_alerts(second.clone()).await.unwrap();
    let mut taken = store.take_pending_alerts().await.unwrap();
    taken.sort_by(|a, b| a.fingerprint.cmp(&b.fingerprint));
    let mut want = second;
    want.sort_by(|a, b| a.fingerprint.cmp(&b.fingerprint));
    assert_eq!(taken, want);
    // Taken once: a start that ends without saving leaves nothing to the next.
    assert!(store.take_pending_alerts().await.unwrap().is_empty());
}

/// In a cluster each instance saves and takes the pending alerts of its own sources
/// only: north's stop keeps south's, and south's start takes nothing of north's.
async fn pending_alerts_are_kept_per_source_for_a_cluster(store: Store) {
    let pending = |source: &str, tracker: i64| PendingAlert {
        fingerprint: Fingerprint::of_source("idling", source, Some(tracker), None),
        rule: "idling".into(),
        tracker_id: tracker,
        key: None,
        since: t0(),
    };
    let (north, south) = (vec!["north".to_string()], vec!["south".to_string()]);
    store
        .save_pending_alerts_of(south.clone(), vec![pending("south", 7)])
        .await
        .unwrap();
    store
        .save_pending_alerts_of(north.clone(), vec![pending("north", 7)])
        .await
        .unwrap();
    // North's second stop replaces north's only.
    store
        .save_pending_alerts_of(north.clone(), vec![pending("north", 8)])
        .await
        .unwrap();
    assert_eq!(
        store.take_pending_alerts_of(south.clone()).await.unwrap(),
        vec![pending("south", 7)]
    );
    assert!(
        store
            .take_pending_alerts_of(south)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store.take_pending_alerts_of(north).await.unwrap(),
        vec![pending("north", 8)]
    );
}

/// Removes the database and its `-wal` and `-shm` files, as `rm alerts.db*` does.
fn remove_database(path: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        let _ = std::fs::remove_file(name);
    }
}

#[tokio::test]
async fn a_removed_database_file_is_noticed_by_name_and_stays_lost() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("alerts.db");
    let store = Store::open_path(&path).unwrap();
    store.check_writable().await.unwrap();
    store.check_file().unwrap();

    remove_database(&path);
    // SQLite itself goes on writing to the removed file without complaint.
    let err = store.check_writable().await.unwrap_err();
    assert!(matches!(err, StoreError::Lost { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains(&path.display().to_string()) && text.contains("removed or replaced"),
        "{text}"
    );
    assert!(store.check_file().is_err());

    // A new file at the same path (a restore, another process) is not the one this
    // store wrote to: still lost.
    drop(Store::open_path(&path).unwrap());
    assert!(matches!(
        store.check_writable().await,
        Err(StoreError::Lost { .. })
    ));
}

#[tokio::test]
async fn a_replaced_database_file_is_noticed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("alerts.db");
    let store = Store::open_path(&path).unwrap();
    let other = dir.path().join("other.db");
    drop(Store::open_path(&other).unwrap());
    std::fs::rename(&other, &path).unwrap();
    assert!(matches!(store.check_file(), Err(StoreError::Lost { .. })));
}

async fn failing_commits_make_the_store_not_ready_until_one_succeeds(store: Store) {
    let full = StoreError::Sqlite(rusqlite::Error::SqliteFailure(
        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
        Some("database or disk is full".into()),
    ));
    assert!(store.note_commit(Err(&full)), "the first failure is news");
    assert!(!store.note_commit(Err(&full)), "the second is not");
    let err = store.check_writable().await.unwrap_err().to_string();
    assert_eq!(
        err,
        "storage: alert transitions cannot be committed (storage: database or disk is full); retrying"
    );
    assert!(store.note_commit(Ok(())), "the recovery is news");
    store.check_writable().await.unwrap();
}

async fn a_commit_guard_that_refuses_rolls_the_whole_batch_back(store: Store) {
    let seen = Arc::new(AtomicU64::new(u64::MAX));
    let inside = seen.clone();
    store.set_commit_guard(Arc::new(move |tx: &Tx<'_>| {
        // The guard runs inside the transaction: it sees the batch, uncommitted.
        let live: i64 =
            tx.query_one("SELECT count(*) FROM live_alerts", params![], |r| r.get(0))?;
        inside.store(live as u64, Ordering::Release);
        Err(StoreError::Fenced(
            "this instance no longer holds `navixy`".into(),
        ))
    }));
    let fuel = firing("fuel_drain", 21080);
    let err = store
        .call(move |db| {
            let tx = db.write_guarded(Durability::Full)?;
            upsert_live_alert(&tx, &fuel, t0())?;
            insert_outbox(&tx, "msg_1", "ops", "g", t0(), "{}")?;
            history::append(&tx, &HistoryEntry::transition(&fuel))?;
            tx.commit()
        })
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "this instance no longer holds `navixy`");
    assert!(matches!(err, StoreError::Fenced(_)));
    assert_eq!(seen.load(Ordering::Acquire), 1);
    assert!(store.load_live_alerts().await.unwrap().is_empty());
    assert!(store.list_outbox(None, 10).await.unwrap().is_empty());
    let history = store
        .history(HistoryQuery {
            limit: 10,
            ..HistoryQuery::default()
        })
        .await
        .unwrap();
    assert!(history.entries.is_empty());

    // Writes that do not commit alert state are not guarded.
    store
        .call(|db| {
            let tx = db.write(Durability::Full)?;
            insert_outbox(&tx, "msg_2", "ops", "g", t0(), "{}")?;
            tx.commit()
        })
        .await
        .unwrap();
    assert_eq!(store.list_outbox(None, 10).await.unwrap().len(), 1);
}

// What only PostgreSQL has: a server shared by instances, and a connection to lose.

#[test]
fn postgres_two_stores_opening_one_empty_database_at_once_both_succeed() {
    let test = "store::tests::postgres_two_stores_opening_one_empty_database_at_once_both_succeed";
    let Some(server) = testing::shared_or_skip(test) else {
        return;
    };
    let url = server.create_database();
    let barrier = Arc::new(std::sync::Barrier::new(2));
    let opening: Vec<_> = (0..2)
        .map(|_| {
            let (url, barrier) = (url.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                Store::open_postgres(&url)
            })
        })
        .collect();
    for handle in opening {
        let store = handle.join().unwrap().unwrap();
        assert!(store.is_postgres());
    }
    let database = url.rsplit('/').next().unwrap();
    let version = server
        .psql(database, "SELECT version FROM schema_version")
        .unwrap();
    assert_eq!(version.trim(), schema::VERSION.to_string());
}

#[test]
fn postgres_a_database_from_a_newer_build_is_refused_by_name() {
    let test = "store::tests::postgres_a_database_from_a_newer_build_is_refused_by_name";
    let Some(server) = testing::shared_or_skip(test) else {
        return;
    };
    let url = server.create_database();
    drop(Store::open_postgres(&url).unwrap());
    let database = url.rsplit('/').next().unwrap();
    server
        .psql(database, "UPDATE schema_version SET version = 99")
        .unwrap();
    let err = Store::open_postgres(&url).unwrap_err();
    assert!(
        matches!(err, StoreError::TooNew { found: 99, .. }),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "storage {url}: schema version 99 is newer than this build knows ({}); \
             use a newer navixy-alerts or another database",
            schema::VERSION
        )
    );
}

#[test]
fn postgres_errors_name_the_database_without_its_password() {
    // Nothing listens on port 1: the connection is refused at once.
    let err = Store::open_postgres("postgres://alerts:s3cret@127.0.0.1:1/alerts")
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("storage postgres://alerts:***@127.0.0.1:1/alerts: "),
        "{err}"
    );
    assert!(!err.contains("s3cret"), "{err}");
}

#[tokio::test]
async fn postgres_a_lost_connection_fails_one_call_and_the_next_reconnects() {
    let test = "store::tests::postgres_a_lost_connection_fails_one_call_and_the_next_reconnects";
    // A server of its own: stopping the shared one would fail the other tests.
    let server = match testing::PgServer::start() {
        Ok(server) => server,
        Err(why) => {
            // Skips (or fails under NAVIXY_ALERTS_REQUIRE_ALL) as the shared one does.
            if testing::shared_or_skip(test).is_none() {
                return;
            }
            panic!("{why}");
        }
    };
    let url = server.create_database();
    let store = Store::open_postgres(&url).unwrap();
    store.check_writable().await.unwrap();

    server.stop();
    let err = store.check_writable().await.unwrap_err();
    assert!(matches!(err, StoreError::Postgres { .. }), "{err:?}");
    assert!(
        err.to_string().starts_with(&format!("storage {url}: ")),
        "{err}"
    );

    server.start_again();
    store.check_writable().await.unwrap();
    let fuel = firing("fuel_drain", 21080);
    store
        .call(move |db| {
            let tx = db.write_guarded(Durability::Full)?;
            upsert_live_alert(&tx, &fuel, t0())?;
            tx.commit()
        })
        .await
        .unwrap();
    assert_eq!(store.load_live_alerts().await.unwrap().len(), 1);
}

async fn a_write_that_fails_in_isolation_leaves_the_rest_of_its_transaction(store: Store) {
    let ids = store
        .call(|db| {
            let tx = db.write(Durability::Relaxed)?;
            insert_outbox(&tx, "msg_1", "ops", "g", t0(), "{}")?;
            // The same id again: refused, and only this write is undone.
            let again = tx.isolated(|c| insert_outbox(c, "msg_1", "ops", "g", t0(), "{}"));
            assert!(again.is_err());
            insert_outbox(&tx, "msg_2", "ops", "g", t0(), "{}")?;
            tx.commit()?;
            Ok(load_pending(db.conn())?
                .into_iter()
                .map(|e| e.id)
                .collect::<Vec<_>>())
        })
        .await
        .unwrap();
    assert_eq!(ids, ["msg_1", "msg_2"]);
}
