//! The SQLite side of [`super::Conn`]: statements cached per connection
//! (`prepare_cached`), parameters bound without copies.

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, params_from_iter};

use super::{Row, StoreError, Value};

impl rusqlite::ToSql for Value<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match *self {
            Value::Null => ValueRef::Null,
            Value::Integer(i) => ValueRef::Integer(i),
            Value::Real(f) => ValueRef::Real(f),
            Value::Text(s) => ValueRef::Text(s.as_bytes()),
            Value::Blob(b) => ValueRef::Blob(b),
        }))
    }
}

pub(super) fn execute(
    conn: &Connection,
    sql: &str,
    params: &[Value<'_>],
) -> Result<usize, StoreError> {
    Ok(conn
        .prepare_cached(sql)?
        .execute(params_from_iter(params.iter()))?)
}

pub(super) fn query_opt<T>(
    conn: &Connection,
    sql: &str,
    params: &[Value<'_>],
    f: impl FnOnce(&Row<'_>) -> Result<T, StoreError>,
) -> Result<Option<T>, StoreError> {
    let mut stmt = conn.prepare_cached(sql)?;
    let mut rows = stmt.query(params_from_iter(params.iter()))?;
    match rows.next()? {
        Some(row) => Ok(Some(f(&Row::Sqlite(row))?)),
        None => Ok(None),
    }
}

pub(super) fn query_map<T>(
    conn: &Connection,
    sql: &str,
    params: &[Value<'_>],
    mut f: impl FnMut(&Row<'_>) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    let mut stmt = conn.prepare_cached(sql)?;
    let mut rows = stmt.query(params_from_iter(params.iter()))?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(f(&Row::Sqlite(row))?);
    }
    Ok(out)
}
