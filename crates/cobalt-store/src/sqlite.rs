//! The SQLite backend: WAL with `synchronous=FULL` (a committed transaction survives a crash),
//! one writer connection and a small pool of readers.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use rusqlite::config::DbConfig;
use rusqlite::{Connection, OptionalExtension, params};

use crate::wal_sync::WalSyncer;
use crate::{Durability, Record, Scope, StateCount, Store, StoreError, StoreResult, Write};

const MIGRATIONS: &[&str] = &[
    // 1: records.
    r#"
    CREATE TABLE records(
        account TEXT NOT NULL,
        kind INTEGER NOT NULL,
        parent TEXT NOT NULL,
        key TEXT NOT NULL,
        state TEXT NOT NULL,
        result TEXT NOT NULL,
        body TEXT NOT NULL,
        PRIMARY KEY(account, kind, parent, key)
    ) WITHOUT ROWID;
        CREATE INDEX records_by_state ON records(account, kind, parent, state, key);
    "#,
    // 2: the state index also carries the result, so counts by (state, result) read the
    // index alone (a separate (state, result) index would tempt the planner into sorting
    // every record of a state for a keyset page).
    r#"
    DROP INDEX records_by_state;
    CREATE INDEX records_by_state ON records(account, kind, parent, state, key, result);
    "#,
    // 3: counts by (state, result) kept up to date by triggers, so counting a job's 100,000
    // tasks reads a handful of rows instead of scanning them all (clients poll task counts).
    r#"
    CREATE TABLE counts(
        account TEXT NOT NULL,
        kind INTEGER NOT NULL,
        parent TEXT NOT NULL,
        state TEXT NOT NULL,
        result TEXT NOT NULL,
        n INTEGER NOT NULL,
        PRIMARY KEY(account, kind, parent, state, result)
    ) WITHOUT ROWID;
    INSERT INTO counts
        SELECT account, kind, parent, state, result, COUNT(*) FROM records
        GROUP BY account, kind, parent, state, result;
    CREATE TRIGGER records_counted_insert AFTER INSERT ON records BEGIN
        INSERT INTO counts VALUES (new.account, new.kind, new.parent, new.state, new.result, 1)
        ON CONFLICT(account, kind, parent, state, result) DO UPDATE SET n = n + 1;
    END;
    CREATE TRIGGER records_counted_delete AFTER DELETE ON records BEGIN
        UPDATE counts SET n = n - 1
        WHERE account = old.account AND kind = old.kind AND parent = old.parent
          AND state = old.state AND result = old.result;
    END;
    CREATE TRIGGER records_counted_update AFTER UPDATE OF state, result ON records
    WHEN old.state IS NOT new.state OR old.result IS NOT new.result BEGIN
        UPDATE counts SET n = n - 1
        WHERE account = old.account AND kind = old.kind AND parent = old.parent
          AND state = old.state AND result = old.result;
        INSERT INTO counts VALUES (new.account, new.kind, new.parent, new.state, new.result, 1)
        ON CONFLICT(account, kind, parent, state, result) DO UPDATE SET n = n + 1;
    END;
    "#,
    // 4: the counts are kept by `commit`, which adds up a transaction's changes by (scope,
    // state, result) and writes each sum once: a trigger wrote the counts on every record.
    r#"
    DROP TRIGGER records_counted_insert;
    DROP TRIGGER records_counted_delete;
    DROP TRIGGER records_counted_update;
    "#,
];

const LIST_IN_STATE: &str =
    "SELECT key, state, result, body FROM records INDEXED BY records_by_state
     WHERE account = ?1 AND kind = ?2 AND parent = ?3 AND state = ?4 AND key > ?5
     ORDER BY key LIMIT ?6";
const KEYS_IN_STATE: &str = "SELECT key FROM records INDEXED BY records_by_state
     WHERE account = ?1 AND kind = ?2 AND parent = ?3 AND state = ?4 AND key > ?5
     ORDER BY key LIMIT ?6";
const LIST_ALL: &str = "SELECT key, state, result, body FROM records
     WHERE account = ?1 AND kind = ?2 AND parent = ?3 AND key > ?4
     ORDER BY key LIMIT ?5";

const READERS: usize = 4;
/// Lists of at most this many records count as short reads.
const SMALL_LIST: usize = 64;

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Database(e.to_string())
    }
}

/// The SQLite store, in one file.
#[derive(Debug)]
pub struct SqliteStore {
    /// First, so that it stops (after its last flush) before the connections close.
    syncer: WalSyncer,
    writer: Mutex<Connection>,
    readers: Vec<Mutex<Connection>>,
}

fn open_connection(path: &Path) -> StoreResult<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(30))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    // 16 MiB of page cache per connection: hot task pages stay in process.
    conn.pragma_update(None, "cache_size", -16_384)?;
    // Plans that do not depend on bound values: otherwise SQLite re-prepares a cached
    // statement whose `LIMIT ?` (or range) parameter is bound again, on every call.
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    Ok(conn)
}

fn lock(m: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl SqliteStore {
    /// Opens (creating and migrating) the database at `path`.
    pub fn open(path: &Path) -> StoreResult<Self> {
        let mut writer = open_connection(path)?;
        migrate(&mut writer)?;
        let readers = (0..READERS)
            .map(|_| open_connection(path).map(Mutex::new))
            .collect::<StoreResult<_>>()?;
        let mut wal = path.as_os_str().to_owned();
        wal.push("-wal");
        let syncer = WalSyncer::start(wal.into())
            .map_err(|e| StoreError::Database(format!("cannot start the log flusher: {e}")))?;
        Ok(Self {
            syncer,
            writer: Mutex::new(writer),
            readers,
        })
    }

    /// A connection for a short read: the writer's when it is free (its page cache is warm,
    /// since the writer's own commits do not invalidate it, while other connections reload
    /// every page a commit touched), else a reader.
    fn small_read(&self) -> MutexGuard<'_, Connection> {
        match self.writer.try_lock() {
            Ok(guard) => guard,
            Err(_) => self.reader(),
        }
    }

    /// A connection for a list of up to `limit` records: a short read or not.
    fn list_read(&self, limit: usize) -> MutexGuard<'_, Connection> {
        if limit <= SMALL_LIST {
            self.small_read()
        } else {
            self.reader()
        }
    }

    fn reader(&self) -> MutexGuard<'_, Connection> {
        for r in &self.readers {
            if let Ok(guard) = r.try_lock() {
                return guard;
            }
        }
        // All busy: wait for one, spreading the waiters by thread.
        let n = std::hash::BuildHasher::hash_one(
            &std::collections::hash_map::RandomState::new(),
            std::thread::current().id(),
        );
        let i = usize::try_from(n % self.readers.len() as u64).unwrap_or(0);
        lock(&self.readers[i])
    }
}

fn migrate(conn: &mut Connection) -> StoreResult<()> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let known = i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX);
    if version > known {
        return Err(StoreError::TooNew(version));
    }
    let tx = conn.transaction()?;
    for (i, sql) in MIGRATIONS
        .iter()
        .enumerate()
        .skip(usize::try_from(version).unwrap_or(0))
    {
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", i + 1)?;
    }
    tx.commit()?;
    Ok(())
}

fn record(row: &rusqlite::Row<'_>) -> rusqlite::Result<Record> {
    Ok(Record {
        key: row.get(0)?,
        state: row.get(1)?,
        result: row.get(2)?,
        body: row.get(3)?,
    })
}

impl Store for SqliteStore {
    fn get(&self, scope: &Scope, key: &str) -> StoreResult<Option<Record>> {
        let conn = self.small_read();
        let mut stmt = conn.prepare_cached(
            "SELECT key, state, result, body FROM records
             WHERE account = ?1 AND kind = ?2 AND parent = ?3 AND key = ?4",
        )?;
        Ok(stmt
            .query_row(
                params![scope.account, scope.kind.code(), scope.parent, key],
                record,
            )
            .optional()?)
    }

    fn list(
        &self,
        scope: &Scope,
        after: Option<&str>,
        state: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<Record>> {
        let conn = self.list_read(limit);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let after = after.unwrap_or("");
        let base = (
            scope.account.as_str(),
            scope.kind.code(),
            scope.parent.as_str(),
        );
        let rows = match state {
            Some(state) => {
                let mut stmt = conn.prepare_cached(LIST_IN_STATE)?;
                stmt.query_map(params![base.0, base.1, base.2, state, after, limit], record)?
                    .collect::<rusqlite::Result<Vec<_>>>()?
            }
            None => {
                let mut stmt = conn.prepare_cached(LIST_ALL)?;
                stmt.query_map(params![base.0, base.1, base.2, after, limit], record)?
                    .collect::<rusqlite::Result<Vec<_>>>()?
            }
        };
        Ok(rows)
    }

    fn keys_in_state(
        &self,
        scope: &Scope,
        state: &str,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<String>> {
        let conn = self.list_read(limit);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut stmt = conn.prepare_cached(KEYS_IN_STATE)?;
        let keys = stmt
            .query_map(
                params![
                    scope.account,
                    scope.kind.code(),
                    scope.parent,
                    state,
                    after.unwrap_or(""),
                    limit
                ],
                |row| row.get(0),
            )?
            .collect::<rusqlite::Result<Vec<String>>>()?;
        Ok(keys)
    }

    fn count(&self, scope: &Scope) -> StoreResult<Vec<StateCount>> {
        let conn = self.reader();
        let mut stmt = conn.prepare_cached(
            "SELECT state, result, n FROM counts
             WHERE account = ?1 AND kind = ?2 AND parent = ?3 AND n > 0",
        )?;
        let rows = stmt
            .query_map(
                params![scope.account, scope.kind.code(), scope.parent],
                |row| {
                    Ok(StateCount {
                        state: row.get(0)?,
                        result: row.get(1)?,
                        count: u64::try_from(row.get::<_, i64>(2)?).unwrap_or(0),
                    })
                },
            )?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    fn existing(&self, scope: &Scope, keys: &[String]) -> StoreResult<HashSet<String>> {
        if keys.is_empty() {
            return Ok(HashSet::new());
        }
        let keys = serde_json::to_string(keys).map_err(|e| StoreError::Database(e.to_string()))?;
        let conn = self.small_read();
        let mut stmt = conn.prepare_cached(
            "SELECT key FROM records
             WHERE account = ?1 AND kind = ?2 AND parent = ?3
               AND key IN (SELECT value FROM json_each(?4))",
        )?;
        let found = stmt
            .query_map(
                params![scope.account, scope.kind.code(), scope.parent, keys],
                |row| row.get(0),
            )?
            .collect::<rusqlite::Result<HashSet<String>>>()?;
        Ok(found)
    }

    fn apply_with(&self, writes: &[Write], durability: Durability) -> StoreResult<()> {
        let mut conn = lock(&self.writer);
        // After a failed flush, transactions reported committed may not be on disk: stop
        // accepting writes rather than build on them.
        self.syncer.check().map_err(StoreError::Database)?;
        let changes_before = conn.total_changes();
        let relaxed = durability != Durability::Durable;
        if relaxed {
            // In WAL mode a NORMAL commit is not synced; the next FULL commit syncs the WAL,
            // and with it every frame before its own (so does the syncer's flush).
            conn.prepare_cached("PRAGMA synchronous = NORMAL")?
                .execute([])?;
        }
        let result = commit(&mut conn, writes);
        if relaxed {
            conn.prepare_cached("PRAGMA synchronous = FULL")?
                .execute([])?;
        }
        result?;
        // A transaction that changed nothing wrote no log frames, and so synced nothing.
        if conn.total_changes() == changes_before {
            return Ok(());
        }
        // Still under the writer's lock: no commit slips between these and the flags.
        match durability {
            Durability::Durable => self.syncer.clean(),
            Durability::Soon => self.syncer.dirty(),
            Durability::Deferred => {}
        }
        Ok(())
    }
}

/// Changes to the counts of records by (scope, state, result). Changes that cancel out (a
/// record written again in the state it had) write nothing.
#[derive(Default)]
struct CountChanges<'a>(HashMap<(&'a Scope, String, String), i64>);

impl<'a> CountChanges<'a> {
    fn add(&mut self, scope: &'a Scope, state: &str, result: &str, n: i64) {
        *self
            .0
            .entry((scope, state.to_owned(), result.to_owned()))
            .or_default() += n;
    }

    /// Writes the changes into `counts`, and forgets them.
    fn write(&mut self, tx: &rusqlite::Transaction<'_>) -> StoreResult<()> {
        for ((s, state, result), n) in self.0.drain() {
            if n != 0 {
                tx.prepare_cached(
                    "INSERT INTO counts VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT(account, kind, parent, state, result) DO UPDATE SET n = n + excluded.n",
                )?
                .execute(params![s.account, s.kind.code(), s.parent, state, result, n])?;
            }
        }
        Ok(())
    }
}

/// The state and result of the record with `key` in `scope`, if there is one.
fn state_of(
    tx: &rusqlite::Transaction<'_>,
    scope: &Scope,
    key: &str,
) -> StoreResult<Option<(String, String)>> {
    Ok(tx
        .prepare_cached(
            "SELECT state, result FROM records
             WHERE account = ?1 AND kind = ?2 AND parent = ?3 AND key = ?4",
        )?
        .query_row(
            params![scope.account, scope.kind.code(), scope.parent, key],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()?)
}

fn commit(conn: &mut Connection, writes: &[Write]) -> StoreResult<()> {
    let tx = conn.transaction()?;
    let mut counts = CountChanges::default();
    for w in writes {
        match w {
            Write::Put(s, r) => {
                let old = state_of(&tx, s, &r.key)?;
                if let Some((state, result)) = &old {
                    counts.add(s, state, result, -1);
                }
                counts.add(s, &r.state, &r.result, 1);
                // The same parameters for both: ?1-?4 the key, ?5-?7 the values.
                let sql = if old.is_some() {
                    "UPDATE records SET state = ?5, result = ?6, body = ?7
                     WHERE account = ?1 AND kind = ?2 AND parent = ?3 AND key = ?4"
                } else {
                    "INSERT INTO records(account, kind, parent, key, state, result, body)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
                };
                tx.prepare_cached(sql)?.execute(params![
                    s.account,
                    s.kind.code(),
                    s.parent,
                    r.key,
                    r.state,
                    r.result,
                    r.body
                ])?;
            }
            Write::Delete(s, key) => {
                if let Some((state, result)) = state_of(&tx, s, key)? {
                    counts.add(s, &state, &result, -1);
                    tx.prepare_cached(
                        "DELETE FROM records WHERE account = ?1 AND kind = ?2 AND parent = ?3 AND key = ?4",
                    )?
                    .execute(params![s.account, s.kind.code(), s.parent, key])?;
                }
            }
            Write::DeleteAll(s) => {
                // The changes so far may count records of the scope: in first, then all gone.
                counts.write(&tx)?;
                let scope = params![s.account, s.kind.code(), s.parent];
                tx.prepare_cached(
                    "DELETE FROM records WHERE account = ?1 AND kind = ?2 AND parent = ?3",
                )?
                .execute(scope)?;
                tx.prepare_cached(
                    "DELETE FROM counts WHERE account = ?1 AND kind = ?2 AND parent = ?3",
                )?
                .execute(scope)?;
            }
        }
    }
    counts.write(&tx)?;
    tx.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put_active(scope: &Scope, key: &str) -> Write {
        Write::Put(
            scope.clone(),
            Record {
                key: key.into(),
                state: "active".into(),
                result: String::new(),
                body: "{}".into(),
            },
        )
    }

    #[test]
    fn sqlite_passes_the_conformance_suite() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("batch.db")).unwrap();
        crate::conformance::run(&store);
    }

    #[test]
    fn list_statements_are_prepared_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("batch.db")).unwrap();
        let scope = Scope::top("acct", crate::Kind::Pool);
        let put = |key: &str| put_active(&scope, key);
        store.apply(&[put("a"), put("b"), put("c")]).unwrap();
        for (after, limit) in [(None, 2), (Some("a"), 3), (Some("b"), 1)] {
            store.list(&scope, after, Some("active"), limit).unwrap();
            store.list(&scope, after, None, limit).unwrap();
            store.keys_in_state(&scope, "active", after, limit).unwrap();
        }
        let conn = store.small_read();
        for sql in [LIST_IN_STATE, LIST_ALL, KEYS_IN_STATE] {
            let stmt = conn.prepare_cached(sql).unwrap();
            assert_eq!(
                stmt.get_status(rusqlite::StatementStatus::RePrepare),
                0,
                "{sql}"
            );
        }
    }

    #[test]
    fn soon_transactions_are_flushed_together_within_the_window() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("batch.db")).unwrap();
        let scope = Scope::top("acct", crate::Kind::Pool);
        let put = |key: &str| put_active(&scope, key);
        // A durable commit owes nothing; a deferred one is left to the next durable commit.
        store.apply(&[put("a")]).unwrap();
        store.apply_with(&[put("b")], Durability::Deferred).unwrap();
        assert_eq!(store.syncer.status(), (false, 0));

        let began = std::time::Instant::now();
        for key in ["c", "d", "e"] {
            store.apply_with(&[put(key)], Durability::Soon).unwrap();
        }
        assert!(store.syncer.status().0, "a flush is owed");
        crate::wal_sync::wait_until("no flush", || store.syncer.status().1 > 0);
        assert!(
            began.elapsed() >= crate::SYNC_WINDOW,
            "flushed before the window ended"
        );
        assert_eq!(store.syncer.status(), (false, 1), "one flush for the three");

        // A durable commit that writes nothing syncs nothing, so it leaves the flush owed;
        // one that writes covers it.
        store.apply_with(&[put("f")], Durability::Soon).unwrap();
        store.apply(&[]).unwrap();
        store
            .apply(&[Write::Delete(scope.clone(), "nothing".into())])
            .unwrap();
        assert!(
            store.syncer.status().0,
            "an empty commit cleared the flush owed"
        );
        store.apply(&[put("g")]).unwrap();
        assert!(!store.syncer.status().0);
        assert_eq!(store.get(&scope, "f").unwrap().unwrap().key, "f");
    }

    #[test]
    fn state_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("batch.db");
        let scope = Scope::top("acct", crate::Kind::Pool);
        {
            let store = SqliteStore::open(&path).unwrap();
            store.apply(&[put_active(&scope, "p")]).unwrap();
        }
        let store = SqliteStore::open(&path).unwrap();
        assert!(store.get(&scope, "p").unwrap().is_some());
    }
}
