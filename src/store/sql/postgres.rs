//! The PostgreSQL side of [`super::Conn`]: the synchronous `postgres` client on the
//! database thread, statements prepared once per SQL text, and a new connection on the
//! next job after the old one was lost (the failed statement returned its error).
//!
//! Plain TCP only (`NoTls`): put the database on loopback or a private network, or
//! tunnel it.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::error::Error;
use std::time::Duration;

use bytes::BytesMut;
use postgres::types::{IsNull, ToSql, Type, to_sql_checked};
use postgres::{Client, NoTls, Statement};

use super::{Row, StoreError, Value, dollar_placeholders};

/// How long a connection attempt may take when the URL sets no `connect_timeout`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

impl ToSql for Value<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        match *self {
            Value::Null => Ok(IsNull::Yes),
            Value::Integer(i) => match *ty {
                Type::INT4 => i32::try_from(i)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(i)?.to_sql(ty, out),
                Type::BOOL => (i != 0).to_sql(ty, out),
                Type::FLOAT8 => (i as f64).to_sql(ty, out),
                _ => i.to_sql(ty, out),
            },
            Value::Real(f) => match *ty {
                Type::FLOAT4 => (f as f32).to_sql(ty, out),
                _ => f.to_sql(ty, out),
            },
            Value::Text(s) => s.to_sql(ty, out),
            Value::Blob(b) => b.to_sql(ty, out),
        }
    }

    /// Any type: the value converts itself to the parameter's type (above), and a null
    /// fits every column.
    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

/// A PostgreSQL connection with its prepared statements.
pub struct PgConn {
    client: RefCell<Client>,
    statements: RefCell<HashMap<String, Statement>>,
    config: postgres::Config,
    /// The URL without its password, for messages.
    shown: String,
    /// A statement failed for another reason than the SQL (the connection went away).
    lost: Cell<bool>,
    /// A statement failed inside the open transaction: PostgreSQL has aborted it, and
    /// its COMMIT would quietly roll back.
    aborted: Cell<bool>,
}

impl PgConn {
    /// Connects to `url`; the error names it without its password.
    /// With `idle`, the server ends a transaction left idle that long (on every
    /// reconnection too).
    pub fn connect_ending_idle(url: &str, idle: Option<Duration>) -> Result<PgConn, StoreError> {
        let shown = crate::text::redact_url(url);
        let mut config: postgres::Config = url.parse().map_err(|source| StoreError::Postgres {
            location: shown.clone(),
            source,
        })?;
        if let Some(idle) = idle {
            config.options(&format!(
                "-c idle_in_transaction_session_timeout={}",
                idle.as_millis().max(1)
            ));
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        let client = config
            .connect(NoTls)
            .map_err(|source| StoreError::Postgres {
                location: shown.clone(),
                source,
            })?;
        Ok(PgConn {
            client: RefCell::new(client),
            statements: RefCell::default(),
            config,
            shown,
            lost: Cell::new(false),
            aborted: Cell::new(false),
        })
    }

    fn error(&self, source: postgres::Error) -> StoreError {
        if source.as_db_error().is_none() {
            self.lost.set(true);
        }
        self.aborted.set(true);
        StoreError::Postgres {
            location: self.shown.clone(),
            source,
        }
    }

    /// Connects again if the connection was lost; when that fails too, the job's own
    /// statements fail with the connection's error.
    pub(super) fn reconnect_if_lost(&self) {
        let mut client = self.client.borrow_mut();
        if !self.lost.get() && !client.is_closed() {
            return;
        }
        match self.config.connect(NoTls) {
            Ok(fresh) => {
                *client = fresh;
                self.statements.borrow_mut().clear();
                self.lost.set(false);
                tracing::info!(database = %self.shown, "Connected to PostgreSQL again.");
            }
            Err(e) => {
                tracing::debug!(database = %self.shown, error = %e, "PostgreSQL still unreachable.");
            }
        }
    }

    fn statement(&self, client: &mut Client, sql: &str) -> Result<Statement, StoreError> {
        if let Some(stmt) = self.statements.borrow().get(sql) {
            return Ok(stmt.clone());
        }
        let stmt = client
            .prepare(&dollar_placeholders(sql))
            .map_err(|e| self.error(e))?;
        self.statements
            .borrow_mut()
            .insert(sql.to_owned(), stmt.clone());
        Ok(stmt)
    }

    fn rows(&self, sql: &str, params: &[Value<'_>]) -> Result<Vec<postgres::Row>, StoreError> {
        let mut client = self.client.borrow_mut();
        let stmt = self.statement(&mut client, sql)?;
        let args: Vec<&(dyn ToSql + Sync)> =
            params.iter().map(|v| v as &(dyn ToSql + Sync)).collect();
        client.query(&stmt, &args).map_err(|e| self.error(e))
    }

    pub(super) fn execute(&self, sql: &str, params: &[Value<'_>]) -> Result<usize, StoreError> {
        let mut client = self.client.borrow_mut();
        let stmt = self.statement(&mut client, sql)?;
        let args: Vec<&(dyn ToSql + Sync)> =
            params.iter().map(|v| v as &(dyn ToSql + Sync)).collect();
        let n = client.execute(&stmt, &args).map_err(|e| self.error(e))?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    pub(super) fn query_opt<T>(
        &self,
        sql: &str,
        params: &[Value<'_>],
        f: impl FnOnce(&Row<'_>) -> Result<T, StoreError>,
    ) -> Result<Option<T>, StoreError> {
        match self.rows(sql, params)?.first() {
            Some(row) => Ok(Some(f(&Row::Postgres(row))?)),
            None => Ok(None),
        }
    }

    pub(super) fn query_map<T>(
        &self,
        sql: &str,
        params: &[Value<'_>],
        mut f: impl FnMut(&Row<'_>) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        self.rows(sql, params)?
            .iter()
            .map(|row| f(&Row::Postgres(row)))
            .collect()
    }

    pub(super) fn batch(&self, sql: &str) -> Result<(), StoreError> {
        self.client
            .borrow_mut()
            .batch_execute(sql)
            .map_err(|e| self.error(e))
    }

    pub(super) fn begin(&self, sql: &str) -> Result<(), StoreError> {
        self.batch(sql)?;
        self.aborted.set(false);
        Ok(())
    }

    /// COMMIT, unless a statement of the transaction failed: PostgreSQL would answer a
    /// COMMIT of an aborted transaction with a rollback, and no error.
    pub(super) fn commit(&self) -> Result<(), StoreError> {
        if self.aborted.get() {
            return Err(StoreError::Invalid(format!(
                "storage {}: not committed: a statement of the transaction failed",
                self.shown
            )));
        }
        self.batch("COMMIT")
    }

    /// Runs `f` inside a savepoint: when it fails, only what it did is undone and the
    /// transaction goes on (as a failed statement leaves a SQLite transaction).
    pub(super) fn isolated<T>(
        &self,
        f: impl FnOnce() -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.batch("SAVEPOINT isolated")?;
        match f() {
            Ok(v) => {
                self.batch("RELEASE SAVEPOINT isolated")?;
                Ok(v)
            }
            Err(e) => {
                self.batch("ROLLBACK TO SAVEPOINT isolated")?;
                self.aborted.set(false);
                Err(e)
            }
        }
    }

    pub(super) fn rollback(&self) {
        if self.lost.get() {
            return;
        }
        let _ = self.client.borrow_mut().batch_execute("ROLLBACK");
    }
}

/// The error of reading column `i` as the wrong type, naming the column.
pub(super) fn column_error(row: &postgres::Row, i: usize, e: postgres::Error) -> StoreError {
    let name = row.columns().get(i).map_or("?", |c| c.name());
    StoreError::Invalid(format!("storage: column `{name}`: {e}"))
}
