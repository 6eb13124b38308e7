//! Durable state of the Batch service.
//!
//! Owns: the [`Store`] trait, a record store of Batch entities keyed by (account, kind,
//! parent, id), and its SQLite backend ([`SqliteStore`]). Records are opaque JSON documents
//! plus the few columns lists and counts filter on (state, result), so the trait is easy to
//! implement on another database (PostgreSQL) and one conformance suite ([`conformance`])
//! checks every backend. Must not do: interpret documents, validate, or know HTTP; that is the
//! Batch service's job.

pub mod conformance;
mod sqlite;
mod wal_sync;

pub use sqlite::SqliteStore;
pub use wal_sync::SYNC_WINDOW;

/// The kinds of record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Pools (parent: none).
    Pool,
    /// Jobs (parent: none).
    Job,
    /// Job schedules (parent: none).
    JobSchedule,
    /// Tasks (parent: the job's key).
    Task,
    /// Compute nodes (parent: the pool's key).
    Node,
}

impl Kind {
    fn code(self) -> i64 {
        match self {
            Self::Pool => 1,
            Self::Job => 2,
            Self::JobSchedule => 3,
            Self::Task => 4,
            Self::Node => 5,
        }
    }
}

/// Where a record lives: its account, kind and parent key ("" for top-level records).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Scope {
    /// The Batch account.
    pub account: String,
    /// The kind of record.
    pub kind: Kind,
    /// The parent's key (a job's for tasks, a pool's for nodes), or "".
    pub parent: String,
}

impl Scope {
    /// A top-level scope (pools, jobs, schedules).
    pub fn top(account: &str, kind: Kind) -> Self {
        Self {
            account: account.to_owned(),
            kind,
            parent: String::new(),
        }
    }

    /// The children of `parent` (tasks of a job, nodes of a pool).
    pub fn under(account: &str, kind: Kind, parent: &str) -> Self {
        Self {
            account: account.to_owned(),
            kind,
            parent: parent.to_owned(),
        }
    }
}

/// One stored entity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// The unique key within the scope (the lower-cased id).
    pub key: String,
    /// The entity's state, for filtered lists and counts.
    pub state: String,
    /// A secondary attribute for counts (a task's result), or "".
    pub result: String,
    /// The entity, as a JSON document.
    pub body: String,
}

/// A change; [`Store::apply`] makes a list of them atomically.
#[derive(Clone, Debug)]
pub enum Write {
    /// Insert or replace a record.
    Put(Scope, Record),
    /// Delete a record if present.
    Delete(Scope, String),
    /// Delete every record of a scope (a job's tasks, a pool's nodes).
    DeleteAll(Scope),
}

/// How many records of a scope have a given (state, result).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateCount {
    /// The state.
    pub state: String,
    /// The result.
    pub result: String,
    /// How many.
    pub count: u64,
}

/// Errors of a store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed.
    #[error("state database: {0}")]
    Database(String),
    /// The database was written by a newer Cobalt.
    #[error("state database schema version {0} is newer than this Cobalt understands")]
    TooNew(i64),
}

/// Result of store operations.
pub type StoreResult<T> = Result<T, StoreError>;

/// Durable, transactional storage of Batch records. A successful [`Store::apply`] survives a
/// crash of the process or the machine.
pub trait Store: Send + Sync + std::fmt::Debug {
    /// The record with `key` in `scope`.
    fn get(&self, scope: &Scope, key: &str) -> StoreResult<Option<Record>>;

    /// Up to `limit` records of `scope` with keys after `after`, in key order, optionally only
    /// those in `state`.
    fn list(
        &self,
        scope: &Scope,
        after: Option<&str>,
        state: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<Record>>;

    /// The keys of up to `limit` records of `scope` in `state` with keys after `after`, in key
    /// order: the records' bodies are not read (a scan that skips most of what it finds).
    fn keys_in_state(
        &self,
        scope: &Scope,
        state: &str,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<String>>;

    /// Record counts of `scope` by (state, result).
    fn count(&self, scope: &Scope) -> StoreResult<Vec<StateCount>>;

    /// Which of `keys` have a record in `scope` (one query for a whole batch of new records).
    fn existing(
        &self,
        scope: &Scope,
        keys: &[String],
    ) -> StoreResult<std::collections::HashSet<String>> {
        let mut found = std::collections::HashSet::new();
        for key in keys {
            if self.get(scope, key)?.is_some() {
                found.insert(key.clone());
            }
        }
        Ok(found)
    }

    /// Applies `writes` in one transaction: all or nothing, durable when it returns.
    fn apply(&self, writes: &[Write]) -> StoreResult<()> {
        self.apply_with(writes, Durability::Durable)
    }

    /// Applies `writes` in one transaction with the given durability.
    fn apply_with(&self, writes: &[Write], durability: Durability) -> StoreResult<()>;
}

/// How soon a transaction must be on stable storage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// Before `apply` returns (an acknowledged client write).
    Durable,
    /// Within [`SYNC_WINDOW`], flushed together with the other transactions of that window.
    /// A crash of the machine (never of the process) may lose the window's last transactions,
    /// never corrupt them, and never keep a later one without them. For what the service
    /// does again if it is lost: a run's end (the task runs again, as after a lost node).
    Soon,
    /// With the next durable transaction: a crash may lose it, never corrupt it, and never
    /// keep a later durable transaction without it. For state the service can rebuild (a
    /// task's move to `running`, node counters), so that it costs no flush of its own.
    Deferred,
}
