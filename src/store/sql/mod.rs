//! The SQL both backends run: a store function writes its statement once, with SQLite's
//! numbered placeholders (`?1`, `?2`, ...), and runs it on whichever database the daemon
//! uses, SQLite or PostgreSQL.
//!
//! [`Conn`] is the database thread's connection; a write transaction is a [`Tx`], which
//! derefs to it, so a function taking `&Conn` runs inside a transaction or outside one.
//! Parameters are [`Value`]s, borrowed from the caller (see [`params!`]); a result row is a
//! [`Row`] read with [`Row::get`]. The SQL must be what both dialects read the same way:
//! `INTEGER` columns are `BIGINT` in PostgreSQL (so every integer binds as `i64`),
//! `ON CONFLICT` rather than `INSERT OR ...`, `RETURNING` rather than the last row id, a
//! cast where an aggregate would change type.

mod postgres;
mod sqlite;

use std::fmt::Write as _;
use std::ops::Deref;
use std::sync::OnceLock;

pub use self::postgres::PgConn;

use super::StoreError;

/// One statement parameter, borrowed from the caller: binding it copies nothing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    /// A null PostgreSQL accepts for a column of any type.
    Null,
    Integer(i64),
    Real(f64),
    Text(&'a str),
    Blob(&'a [u8]),
}

/// What can be bound as a statement parameter.
pub trait ToValue {
    fn to_value(&self) -> Value<'_>;
}

impl ToValue for Value<'_> {
    fn to_value(&self) -> Value<'_> {
        *self
    }
}

impl ToValue for i64 {
    fn to_value(&self) -> Value<'_> {
        Value::Integer(*self)
    }
}

impl ToValue for u32 {
    fn to_value(&self) -> Value<'_> {
        Value::Integer(i64::from(*self))
    }
}

impl ToValue for i32 {
    fn to_value(&self) -> Value<'_> {
        Value::Integer(i64::from(*self))
    }
}

/// Booleans are stored as 0 and 1, as SQLite does, so the SQL reads the same on both.
impl ToValue for bool {
    fn to_value(&self) -> Value<'_> {
        Value::Integer(i64::from(*self))
    }
}

impl ToValue for f64 {
    fn to_value(&self) -> Value<'_> {
        Value::Real(*self)
    }
}

impl ToValue for str {
    fn to_value(&self) -> Value<'_> {
        Value::Text(self)
    }
}

impl ToValue for String {
    fn to_value(&self) -> Value<'_> {
        Value::Text(self)
    }
}

impl ToValue for [u8] {
    fn to_value(&self) -> Value<'_> {
        Value::Blob(self)
    }
}

impl ToValue for Vec<u8> {
    fn to_value(&self) -> Value<'_> {
        Value::Blob(self)
    }
}

impl<T: ToValue + ?Sized> ToValue for &T {
    fn to_value(&self) -> Value<'_> {
        (**self).to_value()
    }
}

impl<T: ToValue> ToValue for Option<T> {
    fn to_value(&self) -> Value<'_> {
        match self {
            Some(v) => v.to_value(),
            None => Value::Null,
        }
    }
}

/// The parameters of one statement: `params![id, to_ms(at), comment]`.
macro_rules! params {
    () => {
        &[] as &[$crate::store::Value<'_>]
    };
    ($($p:expr),+ $(,)?) => {
        &[$($crate::store::ToValue::to_value(&$p)),+] as &[$crate::store::Value<'_>]
    };
}
pub(crate) use params;

/// Rows per statement of [`insert_rows`], largest first: any number of rows goes in a few
/// statements of these sizes, whose texts stay few enough to stay prepared.
const ROWS_PER_STATEMENT: [usize; 4] = [64, 16, 4, 1];

/// A multi-row `{head} VALUES (...), (...) {tail}` for [`insert_rows`]: a `static` at its
/// one call site, which makes the text for each size of [`ROWS_PER_STATEMENT`] once, on
/// first use, instead of at every call.
pub(crate) struct InsertRows {
    head: &'static str,
    tail: &'static str,
    columns: usize,
    texts: OnceLock<[String; ROWS_PER_STATEMENT.len()]>,
}

impl InsertRows {
    /// `head` names the table and its `columns` columns; `tail` follows the values
    /// (`ON CONFLICT ...`, or nothing).
    pub const fn new(head: &'static str, tail: &'static str, columns: usize) -> InsertRows {
        InsertRows {
            head,
            tail,
            columns,
            texts: OnceLock::new(),
        }
    }

    /// The statement of `ROWS_PER_STATEMENT[size]` rows.
    fn text(&self, size: usize) -> &str {
        &self
            .texts
            .get_or_init(|| ROWS_PER_STATEMENT.map(|rows| self.make(rows)))[size]
    }

    fn make(&self, rows: usize) -> String {
        let mut sql = String::from(self.head);
        sql.push_str(" VALUES ");
        for row in 0..rows {
            sql.push_str(if row == 0 { "(" } else { ", (" });
            for column in 0..self.columns {
                if column > 0 {
                    sql.push_str(", ");
                }
                // Writing to a String cannot fail.
                let _ = write!(sql, "?{}", row * self.columns + column + 1);
            }
            sql.push(')');
        }
        sql.push(' ');
        sql.push_str(self.tail);
        sql
    }
}

/// Runs `statement` for every row of `rows` (`bind` pushes a row's values), a few
/// statements instead of one per row: each statement costs its setup, and a table with
/// `AUTOINCREMENT` its counter's update, once for all its rows. Rows go in the order
/// given. An `ON CONFLICT DO UPDATE` tail needs rows with distinct keys (PostgreSQL
/// refuses to update one row twice in a statement).
pub(crate) fn insert_rows<'a, R>(
    conn: &Conn,
    statement: &InsertRows,
    rows: &'a [R],
    mut bind: impl FnMut(&'a R, &mut Vec<Value<'a>>),
) -> Result<(), StoreError> {
    let mut rest = rows;
    let mut args = Vec::new();
    while !rest.is_empty() {
        let size = ROWS_PER_STATEMENT
            .iter()
            .position(|n| *n <= rest.len())
            .unwrap_or(ROWS_PER_STATEMENT.len() - 1);
        let (chunk, after) = rest.split_at(ROWS_PER_STATEMENT[size]);
        args.clear();
        for row in chunk {
            bind(row, &mut args);
        }
        debug_assert_eq!(args.len(), chunk.len() * statement.columns);
        conn.execute(statement.text(size), &args)?;
        rest = after;
    }
    Ok(())
}

/// A column value a [`Row`] can be read as.
pub trait FromColumn: Sized {
    #[doc(hidden)]
    fn from_sqlite(row: &rusqlite::Row<'_>, i: usize) -> Result<Self, StoreError>;
    #[doc(hidden)]
    fn from_postgres(row: &::postgres::Row, i: usize) -> Result<Self, StoreError>;
}

/// One row of a result.
pub enum Row<'a> {
    Sqlite(&'a rusqlite::Row<'a>),
    Postgres(&'a ::postgres::Row),
}

impl Row<'_> {
    /// Column `i` (from 0) as a `T`; an error names the column when its type does not fit.
    pub fn get<T: FromColumn>(&self, i: usize) -> Result<T, StoreError> {
        match self {
            Row::Sqlite(row) => T::from_sqlite(row, i),
            Row::Postgres(row) => T::from_postgres(row, i),
        }
    }
}

/// The database thread's connection to either backend.
pub struct Conn {
    backend: Backend,
}

enum Backend {
    Sqlite(rusqlite::Connection),
    Postgres(Box<PgConn>),
}

impl Conn {
    pub(crate) fn sqlite(conn: rusqlite::Connection) -> Conn {
        Conn {
            backend: Backend::Sqlite(conn),
        }
    }

    pub(crate) fn postgres(conn: PgConn) -> Conn {
        Conn {
            backend: Backend::Postgres(Box::new(conn)),
        }
    }

    /// The SQLite connection, for what only SQLite has (pragmas, checkpoints).
    pub(crate) fn as_sqlite(&self) -> Option<&rusqlite::Connection> {
        match &self.backend {
            Backend::Sqlite(conn) => Some(conn),
            Backend::Postgres(_) => None,
        }
    }

    /// True on PostgreSQL, for the rare statement whose text must differ.
    pub fn is_postgres(&self) -> bool {
        matches!(self.backend, Backend::Postgres(_))
    }

    /// Runs one statement; returns how many rows it changed.
    pub fn execute(&self, sql: &str, params: &[Value<'_>]) -> Result<usize, StoreError> {
        match &self.backend {
            Backend::Sqlite(conn) => sqlite::execute(conn, sql, params),
            Backend::Postgres(conn) => conn.execute(sql, params),
        }
    }

    /// The first row of a query read by `f`, or `None` when there is none.
    pub fn query_opt<T>(
        &self,
        sql: &str,
        params: &[Value<'_>],
        f: impl FnOnce(&Row<'_>) -> Result<T, StoreError>,
    ) -> Result<Option<T>, StoreError> {
        match &self.backend {
            Backend::Sqlite(conn) => sqlite::query_opt(conn, sql, params, f),
            Backend::Postgres(conn) => conn.query_opt(sql, params, f),
        }
    }

    /// The first row of a query that always returns one (`count(*)`, `RETURNING`).
    pub fn query_one<T>(
        &self,
        sql: &str,
        params: &[Value<'_>],
        f: impl FnOnce(&Row<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.query_opt(sql, params, f)?
            .ok_or_else(|| StoreError::Invalid(format!("storage: no row returned by `{sql}`")))
    }

    /// Every row of a query, each read by `f`.
    pub fn query_map<T>(
        &self,
        sql: &str,
        params: &[Value<'_>],
        f: impl FnMut(&Row<'_>) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        match &self.backend {
            Backend::Sqlite(conn) => sqlite::query_map(conn, sql, params, f),
            Backend::Postgres(conn) => conn.query_map(sql, params, f),
        }
    }

    /// Runs statements separated by `;`, without parameters (schema changes, tests).
    pub fn execute_batch(&self, sql: &str) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(conn) => Ok(conn.execute_batch(sql)?),
            Backend::Postgres(conn) => conn.batch(sql),
        }
    }

    /// A write transaction outside the database thread's [`super::Db::write`] (tests,
    /// migrations): full durability, no commit guard.
    pub fn transaction(&self) -> Result<Tx<'_>, StoreError> {
        Tx::begin(self, false, None)
    }

    /// Starts a transaction: `BEGIN IMMEDIATE` on SQLite (the write lock up front, so a
    /// reader elsewhere cannot make the commit fail half-way), `BEGIN` on PostgreSQL, with
    /// `synchronous_commit` off for the transaction when `relaxed`.
    pub(crate) fn begin(&self, relaxed: bool) -> Result<(), StoreError> {
        match &self.backend {
            // Prepared once per connection, like every statement: each delivery outcome
            // and each batch of transitions is a transaction of its own.
            Backend::Sqlite(conn) => sqlite::execute(conn, "BEGIN IMMEDIATE", &[]).map(drop),
            Backend::Postgres(conn) if relaxed => {
                conn.begin("BEGIN; SET LOCAL synchronous_commit = off")
            }
            Backend::Postgres(conn) => conn.begin("BEGIN"),
        }
    }

    fn commit(&self) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(conn) => sqlite::execute(conn, "COMMIT", &[]).map(drop),
            Backend::Postgres(conn) => conn.commit(),
        }
    }

    /// Runs `f` so that its failure undoes only what it wrote, and the transaction goes
    /// on: as any failed statement does on SQLite, inside a savepoint on PostgreSQL
    /// (where a failed statement aborts the whole transaction).
    pub fn isolated<T>(
        &self,
        f: impl FnOnce(&Conn) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        match &self.backend {
            Backend::Sqlite(_) => f(self),
            Backend::Postgres(conn) => conn.isolated(|| f(self)),
        }
    }

    fn rollback(&self) {
        match &self.backend {
            // Nothing to roll back when a failed COMMIT already ended it.
            Backend::Sqlite(conn) if conn.is_autocommit() => {}
            Backend::Sqlite(conn) => {
                let _ = conn.execute_batch("ROLLBACK");
            }
            Backend::Postgres(conn) => conn.rollback(),
        }
    }

    /// Before a job: on PostgreSQL, connects again when the connection was lost.
    pub(crate) fn heal(&self) {
        if let Backend::Postgres(conn) = &self.backend {
            conn.reconnect_if_lost();
        }
    }
}

/// Checks a write transaction just before its COMMIT; an error rolls it back. The
/// cluster's fencing: "this instance still holds its leases" (see `Store::set_commit_guard`).
pub type CommitGuard = std::sync::Arc<dyn Fn(&Tx<'_>) -> Result<(), StoreError> + Send + Sync>;

/// A write transaction; rolled back when dropped without [`Tx::commit`].
pub struct Tx<'a> {
    conn: &'a Conn,
    guard: Option<CommitGuard>,
    done: bool,
}

impl<'a> Tx<'a> {
    /// Starts one (see [`Conn::begin`]); `guard` runs before its commit.
    pub(crate) fn begin(
        conn: &'a Conn,
        relaxed: bool,
        guard: Option<CommitGuard>,
    ) -> Result<Tx<'a>, StoreError> {
        conn.begin(relaxed)?;
        Ok(Tx {
            conn,
            guard,
            done: false,
        })
    }

    /// Commits, after the commit guard (if any) agreed; on an error nothing is kept.
    pub fn commit(mut self) -> Result<(), StoreError> {
        if let Some(guard) = self.guard.take() {
            guard(&self)?;
        }
        self.conn.commit()?;
        self.done = true;
        Ok(())
    }
}

impl Deref for Tx<'_> {
    type Target = Conn;

    fn deref(&self) -> &Conn {
        self.conn
    }
}

impl Drop for Tx<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.conn.rollback();
        }
    }
}

/// Rewrites SQLite's `?N` placeholders as PostgreSQL's `$N` (outside string literals and
/// quoted names).
pub(crate) fn dollar_placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut quote: Option<char> = None;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '\'' || c == '"' => quote = Some(c),
            None if c == '?' && chars.peek().is_some_and(char::is_ascii_digit) => {
                out.push('$');
                continue;
            }
            None => {}
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_the_postgresql_way_outside_quotes() {
        assert_eq!(
            dollar_placeholders("SELECT a FROM t WHERE b = ?1 AND c = '?2' AND \"?3\" = ?12"),
            "SELECT a FROM t WHERE b = $1 AND c = '?2' AND \"?3\" = $12"
        );
    }
}

/// Reads the types both drivers read the same way.
macro_rules! from_column {
    ($($t:ty),*) => {$(
        impl FromColumn for $t {
            fn from_sqlite(row: &rusqlite::Row<'_>, i: usize) -> Result<Self, StoreError> {
                Ok(row.get(i)?)
            }
            fn from_postgres(row: &::postgres::Row, i: usize) -> Result<Self, StoreError> {
                row.try_get(i).map_err(|e| postgres::column_error(row, i, e))
            }
        }
    )*};
}
from_column!(
    f64,
    String,
    bool,
    Vec<u8>,
    Option<f64>,
    Option<String>,
    Option<bool>,
    Option<Vec<u8>>
);

/// Integers are `BIGINT` columns, but an expression (`SELECT 1`) may be a narrower type.
impl FromColumn for Option<i64> {
    fn from_sqlite(row: &rusqlite::Row<'_>, i: usize) -> Result<Self, StoreError> {
        Ok(row.get(i)?)
    }
    fn from_postgres(row: &::postgres::Row, i: usize) -> Result<Self, StoreError> {
        use ::postgres::types::Type;
        let ty = row.columns().get(i).map(|c| c.type_().clone());
        let got = match ty {
            Some(Type::INT4) => row.try_get::<_, Option<i32>>(i).map(|v| v.map(i64::from)),
            Some(Type::INT2) => row.try_get::<_, Option<i16>>(i).map(|v| v.map(i64::from)),
            _ => row.try_get::<_, Option<i64>>(i),
        };
        got.map_err(|e| postgres::column_error(row, i, e))
    }
}

impl FromColumn for i64 {
    fn from_sqlite(row: &rusqlite::Row<'_>, i: usize) -> Result<Self, StoreError> {
        Ok(row.get(i)?)
    }
    fn from_postgres(row: &::postgres::Row, i: usize) -> Result<Self, StoreError> {
        Option::<i64>::from_postgres(row, i)?
            .ok_or_else(|| StoreError::Invalid(format!("storage: column {i} is null")))
    }
}

/// Stored as `BIGINT`; a value out of range reads as the largest.
impl FromColumn for u32 {
    fn from_sqlite(row: &rusqlite::Row<'_>, i: usize) -> Result<Self, StoreError> {
        Ok(u32::try_from(row.get::<_, i64>(i)?).unwrap_or(u32::MAX))
    }
    fn from_postgres(row: &::postgres::Row, i: usize) -> Result<Self, StoreError> {
        Ok(u32::try_from(i64::from_postgres(row, i)?).unwrap_or(u32::MAX))
    }
}
