//! The metadata database: SQLite in WAL mode with `synchronous=FULL`, so a committed
//! transaction survives a crash. One writer connection; readers from a small pool.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::config::DbConfig;
use rusqlite::{Connection, Transaction};

use super::EngineError;

const SCHEMA: &[&str] = &[
    // Version 1.
    r#"
    CREATE TABLE containers(
        id INTEGER PRIMARY KEY,
        account TEXT NOT NULL,
        name TEXT NOT NULL,
        etag TEXT NOT NULL,
        last_modified INTEGER NOT NULL,
        metadata TEXT NOT NULL,
        public_access TEXT,
        acl TEXT NOT NULL,
        UNIQUE(account, name)
    );
    CREATE TABLE blobs(
        id INTEGER PRIMARY KEY,
        container_id INTEGER NOT NULL,
        name TEXT NOT NULL,
        size INTEGER NOT NULL,
        etag TEXT NOT NULL,
        created INTEGER NOT NULL,
        last_modified INTEGER NOT NULL,
        headers TEXT NOT NULL,
        metadata TEXT NOT NULL,
        block_count INTEGER NOT NULL,
        copy TEXT,
        blob_type TEXT NOT NULL DEFAULT 'BlockBlob',
        UNIQUE(container_id, name)
    );
    CREATE TABLE pieces(
        blob_id INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        block_id BLOB,
        offset INTEGER NOT NULL,
        size INTEGER NOT NULL,
        extent INTEGER,
        data BLOB,
        PRIMARY KEY(blob_id, seq)
    );
    CREATE TABLE uncommitted(
        container_id INTEGER NOT NULL,
        blob_name TEXT NOT NULL,
        block_id BLOB NOT NULL,
        size INTEGER NOT NULL,
        extent INTEGER NOT NULL,
        staged_at INTEGER NOT NULL,
        PRIMARY KEY(container_id, blob_name, block_id)
    );
    CREATE INDEX uncommitted_age ON uncommitted(staged_at);
    CREATE TABLE service_properties(
        account TEXT PRIMARY KEY,
        xml TEXT NOT NULL
    );
    "#,
];

/// Errors of the metadata database.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// SQLite failed.
    #[error("metadata database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The database was written by a newer Cobalt.
    #[error("metadata database schema version {0} is newer than this Cobalt understands")]
    TooNew(i64),
}

/// The metadata database.
#[derive(Debug)]
pub struct Db {
    path: PathBuf,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
}

fn open(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    // Pages freed by deletes go back to the filesystem (see `Db::write`). This takes effect
    // only on a new, empty database, so it must come before anything writes the header.
    conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "OFF")?;
    conn.busy_timeout(std::time::Duration::from_secs(30))?;
    conn.set_prepared_statement_cache_capacity(64);
    // Plans that do not depend on bound values: otherwise SQLite re-prepares a cached
    // statement whose `LIMIT ?` (or range) parameter is bound again, on every call.
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    Ok(conn)
}

impl Db {
    /// Opens (creating and migrating) the database at `path`.
    pub fn open(path: &Path) -> Result<Self, DbError> {
        let mut conn = open(path)?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if version > SCHEMA.len() as i64 {
            return Err(DbError::TooNew(version));
        }

        for (i, step) in SCHEMA.iter().enumerate().skip(version as usize) {
            let tx = conn.transaction()?;
            tx.execute_batch(step)?;
            tx.pragma_update(None, "user_version", (i + 1) as i64)?;
            tx.commit()?;
        }
        Ok(Self {
            path: path.to_owned(),
            writer: Mutex::new(conn),
            readers: Mutex::new(Vec::new()),
        })
    }

    /// Runs `f` in a write transaction, committing if it returns `Ok`.
    pub fn write<T>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, EngineError>,
    ) -> Result<T, EngineError> {
        let mut conn = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(DbError::from)?;
        let out = f(&tx)?;
        // Give back the pages this transaction freed (inline blob bytes of deleted or
        // overwritten blobs), so deleting data shrinks the database file. Free when none were.
        // Each step of the pragma frees one page, so run it to the end.
        {
            let mut vacuum = tx
                .prepare_cached("PRAGMA incremental_vacuum")
                .map_err(DbError::from)?;
            let mut rows = vacuum.query([]).map_err(DbError::from)?;
            while rows.next().map_err(DbError::from)?.is_some() {}
        }
        tx.commit().map_err(DbError::from)?;
        Ok(out)
    }

    /// Runs `f` on a read connection (a consistent snapshot for the duration of one statement;
    /// wrap several statements in a transaction inside `f` if they must agree).
    pub fn read<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, EngineError>,
    ) -> Result<T, EngineError> {
        let conn = self.readers.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let conn = match conn {
            Some(c) => c,
            None => open(&self.path).map_err(DbError::from)?,
        };
        let out = f(&conn);
        let mut readers = self.readers.lock().unwrap_or_else(|e| e.into_inner());
        if readers.len() < 8 {
            readers.push(conn);
        }
        out
    }
}
