//! The fence: a commit of alert state by an instance that no longer holds its leases is
//! refused, in the same transaction.
//!
//! Installed as the store's commit guard (`Store::set_commit_guard`) for a run of the
//! sources held: before each such commit it reads every one of their lease rows `FOR
//! SHARE`, still naming this instance with the epoch the run started with, unexpired on
//! the database's clock. The row lock makes a concurrent takeover (an `UPDATE` of that
//! row) wait for this commit, so a takeover always sees every commit made before it,
//! and none after.

use std::sync::Arc;

use super::lease::DB_NOW_MS;
use crate::store::{CommitGuard, StoreError, Tx, params};

/// The guard for `instance` holding `held` (source, epoch).
pub fn guard(instance: &str, held: Vec<(String, i64)>) -> CommitGuard {
    let instance = instance.to_owned();
    let sql = format!(
        "SELECT 1 FROM leases WHERE source = ?1 AND owner = ?2 AND epoch = ?3 \
         AND expires_at > {DB_NOW_MS} FOR SHARE"
    );
    Arc::new(move |tx: &Tx<'_>| {
        for (source, epoch) in &held {
            let holds: Option<i64> =
                tx.query_opt(&sql, params![source, instance, epoch], |row| row.get(0))?;
            if holds.is_none() {
                return Err(StoreError::Fenced(format!(
                    "source {source}: this instance ({instance}) no longer holds its lease \
                     (epoch {epoch}); the commit is refused"
                )));
            }
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::Leases;
    use crate::config::ClusterConfig;
    use crate::dispatch::testing::{firing, t0};
    use crate::store::testing::shared_or_skip;
    use crate::store::{Durability, Store, upsert_live_alert};
    use std::time::Duration;

    async fn commit(store: &Store, rule: &'static str) -> Result<(), StoreError> {
        store
            .call(move |db| {
                let tx = db.write_guarded(Durability::Full)?;
                upsert_live_alert(&tx, &firing(rule, 7), t0())?;
                tx.commit()
            })
            .await
    }

    #[tokio::test]
    async fn a_commit_after_the_lease_was_taken_is_refused_and_writes_nothing() {
        let Some(pg) = shared_or_skip("cluster::fence") else {
            return;
        };
        let url = pg.create_database();
        let store = Store::open_postgres(&url).unwrap();
        let cluster = ClusterConfig {
            instance: "a".into(),
            lease: Duration::from_secs(60),
            renew: None,
        };
        let (mut leases, _) = Leases::new(&url, &cluster, vec!["navixy".into()]);
        leases.round().await;
        store.set_commit_guard(guard("a", leases.held()));
        commit(&store, "first").await.unwrap();

        // Another instance takes the lease.
        let database = url.rsplit('/').next().unwrap();
        pg.psql(
            database,
            "UPDATE leases SET owner = 'b', epoch = epoch + 1, \
             expires_at = (extract(epoch from clock_timestamp()) * 1000)::bigint + 60000",
        )
        .unwrap();
        let err = commit(&store, "second").await.unwrap_err();
        assert!(matches!(err, StoreError::Fenced(_)), "{err:?}");
        assert_eq!(
            err.to_string(),
            "source navixy: this instance (a) no longer holds its lease (epoch 1); the commit is refused"
        );
        let rules: Vec<String> = store
            .load_live_alerts()
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.rule.to_string())
            .collect();
        assert_eq!(rules, ["first"]);
    }
}
