//! The [`Batch`] service object, conditional requests and paging.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use chrono::{DateTime, Utc};
use cobalt_model::batch::{Job, Task, Timestamp, etag_after, id_key};
use cobalt_store::{Durability, Kind, Record, Scope, Store, StoreError, Write};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{BatchError, BatchResult, ErrorCode};

impl From<StoreError> for BatchError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "state store failed");
        BatchError::new(ErrorCode::InternalError)
    }
}

/// A change the scheduler must react to, reported after its transaction committed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// Tasks became runnable (added, reactivated) in a job.
    Tasks {
        /// The account.
        account: String,
        /// The job.
        job: String,
    },
    /// A job changed (state, priority, pool).
    Job {
        /// The account.
        account: String,
        /// The job.
        job: String,
    },
    /// A pool was added or changed (targets, start task, state).
    Pool {
        /// The account.
        account: String,
        /// The pool.
        pool: String,
    },
    /// A job is being disabled: its running tasks are requeued, terminated or left alone.
    JobDisabling {
        /// The account.
        account: String,
        /// The job.
        job: String,
        /// What happens to running tasks.
        option: cobalt_model::batch::DisableJobOption,
    },
    /// A pool is being resized; nodes it sheds handle their running tasks per `option`.
    PoolResize {
        /// The account.
        account: String,
        /// The pool.
        pool: String,
        /// What happens to the running tasks of removed nodes.
        option: cobalt_model::batch::NodeDeallocationOption,
    },
    /// Nodes were removed from a pool (its target already lowered by as many).
    NodesRemoved {
        /// The account.
        account: String,
        /// The pool.
        pool: String,
        /// The nodes.
        nodes: Vec<String>,
        /// What happens to their running tasks.
        option: cobalt_model::batch::NodeDeallocationOption,
    },
    /// A task was terminated or deleted: whatever runs of it must stop.
    TaskStopped {
        /// The account.
        account: String,
        /// The job.
        job: String,
        /// The task.
        task: String,
    },
}

/// Who hears about [`Change`]s (the dispatcher). Called with no lock held; must not block.
pub trait Observer: Send + Sync + std::fmt::Debug {
    /// Something changed.
    fn changed(&self, change: Change);
}

/// The Batch service: every operation on pools, jobs, schedules and tasks.
#[derive(Debug)]
pub struct Batch {
    pub(crate) store: Arc<dyn Store>,
    /// Serialises read-modify-write operations (the store has one writer anyway).
    write: Mutex<()>,
    /// Entities whose state the lifecycle must move forward: (account, kind, key).
    pub(crate) attention: Mutex<HashSet<(String, Kind, String)>>,
    observer: RwLock<Option<Arc<dyn Observer>>>,
    /// Bumped after every committed write: watchers (the dashboard) compare it to see whether
    /// anything changed.
    generation: AtomicU64,
    /// Decoded copies of tasks the dispatcher is about to write again.
    task_cache: Mutex<TaskCache>,
}

/// A task's place: (account, job key, task key).
pub(crate) type TaskKey = (String, String, String);

/// Decoded copies of the tasks the dispatcher is about to write again (those it found runnable,
/// those it started), so that starting and finishing a run need neither read nor decode its
/// task, and of the jobs whose runs it records. A copy is only ever what the store holds:
/// every committed write of a task or job drops its copy, under the same lock as the
/// generation bump (see [`Batch::commit`]).
#[derive(Debug, Default)]
struct TaskCache {
    tasks: HashMap<TaskKey, Task>,
    /// By (account, job key).
    jobs: HashMap<(String, String), Arc<Job>>,
}

impl TaskCache {
    /// At most this many copies (runs in flight are far fewer; the rest are tasks found
    /// runnable that were not placed).
    const MAX: usize = 4096;

    fn forget(&mut self, writes: &[Write]) {
        if self.tasks.is_empty() && self.jobs.is_empty() {
            return;
        }
        for write in writes {
            match write {
                Write::Put(s, r) if s.kind == Kind::Job => {
                    self.jobs.remove(&(s.account.clone(), r.key.clone()));
                }
                Write::Delete(s, key) if s.kind == Kind::Job => {
                    self.jobs.remove(&(s.account.clone(), key.clone()));
                }
                Write::DeleteAll(s) if s.kind == Kind::Job => {
                    self.jobs.retain(|(account, _), _| *account != s.account);
                }
                Write::Put(s, r) if s.kind == Kind::Task => {
                    self.tasks
                        .remove(&(s.account.clone(), s.parent.clone(), r.key.clone()));
                }
                Write::Delete(s, key) if s.kind == Kind::Task => {
                    self.tasks
                        .remove(&(s.account.clone(), s.parent.clone(), key.clone()));
                }
                Write::DeleteAll(s) if s.kind == Kind::Task => {
                    self.tasks
                        .retain(|(account, job, _), _| *account != s.account || *job != s.parent);
                }
                _ => {}
            }
        }
    }

    fn keep(&mut self, tasks: impl IntoIterator<Item = (TaskKey, Task)>) {
        for (key, task) in tasks {
            bounded_insert(&mut self.tasks, key, task);
        }
    }
}

/// Inserts into a cache of at most [`TaskCache::MAX`] entries, emptying it when full.
fn bounded_insert<K: std::hash::Hash + Eq, V>(map: &mut HashMap<K, V>, key: K, value: V) {
    if map.len() >= TaskCache::MAX {
        map.clear();
    }
    map.insert(key, value);
}

impl Batch {
    /// The service over `store`, picking up unfinished transitions of `accounts`.
    pub fn new(store: Arc<dyn Store>, accounts: &[String]) -> BatchResult<Self> {
        let batch = Self {
            store,
            write: Mutex::new(()),
            attention: Mutex::new(HashSet::new()),
            observer: RwLock::new(None),
            generation: AtomicU64::new(0),
            task_cache: Mutex::new(TaskCache::default()),
        };
        for account in accounts {
            batch.recover(account)?;
        }
        Ok(batch)
    }

    /// Sets who hears about changes (one observer: the dispatcher).
    pub fn set_observer(&self, observer: Arc<dyn Observer>) {
        *self.observer.write().unwrap_or_else(|p| p.into_inner()) = Some(observer);
    }

    /// A counter that moves after every committed change to pools, jobs, schedules, tasks or
    /// nodes (never backwards; its value means nothing else). Cheap: one atomic load.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    fn task_cache(&self) -> MutexGuard<'_, TaskCache> {
        self.task_cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes the cached copy of a task, if there is one (see [`TaskCache`]).
    pub(crate) fn take_cached_task(
        &self,
        account: &str,
        job_id: &str,
        task_id: &str,
    ) -> Option<Task> {
        let key = (account.to_owned(), id_key(job_id), id_key(task_id));
        self.task_cache().tasks.remove(&key)
    }

    /// The job `job_id`, from the cache or else read (and cached if nothing was written
    /// meanwhile). For reads under the write lock that need a job as it is now.
    pub(crate) fn current_job(&self, account: &str, job_id: &str) -> BatchResult<Option<Arc<Job>>> {
        let key = (account.to_owned(), id_key(job_id));
        if let Some(job) = self.task_cache().jobs.get(&key) {
            return Ok(Some(job.clone()));
        }
        let seen = self.generation();
        let Some(job) = self.load::<Job>(&crate::jobs::scope(account), job_id)? else {
            return Ok(None);
        };
        let job = Arc::new(job);
        let mut cache = self.task_cache();
        if self.generation() == seen {
            bounded_insert(&mut cache.jobs, key, job.clone());
        }
        Ok(Some(job))
    }

    /// Caches copies of `tasks` of `job_id`, read from the store after [`Batch::generation`]
    /// read `seen`: only if nothing was written since (else a copy could be older than a
    /// write that already dropped it).
    pub(crate) fn cache_tasks<'a>(
        &self,
        seen: u64,
        account: &str,
        job_id: &str,
        tasks: impl IntoIterator<Item = &'a Task>,
    ) {
        let mut cache = self.task_cache();
        if self.generation() != seen {
            return;
        }
        let job = id_key(job_id);
        cache.keep(tasks.into_iter().map(|t| {
            (
                (account.to_owned(), job.clone(), id_key(&t.spec.id)),
                t.clone(),
            )
        }));
    }

    pub(crate) fn notify(&self, change: Change) {
        let observer = self
            .observer
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some(o) = observer {
            o.changed(change);
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, ()> {
        self.write.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn attend(&self, account: &str, kind: Kind, key: &str) {
        self.attention
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((account.to_owned(), kind, key.to_owned()));
    }

    pub(crate) fn load<T: DeserializeOwned>(
        &self,
        scope: &Scope,
        id: &str,
    ) -> BatchResult<Option<T>> {
        self.store
            .get(scope, &id_key(id))?
            .map(|r| decode(&r))
            .transpose()
    }

    /// Scans `scope` from `request.after`, mapping each entity through `keep` until
    /// `request.limit` are kept. The next page starts after the last key looked at.
    pub(crate) fn scan<T: DeserializeOwned, R>(
        &self,
        scope: &Scope,
        request: &PageRequest,
        mut keep: impl FnMut(T) -> BatchResult<Option<R>>,
    ) -> BatchResult<Page<R>> {
        let limit = request.limit.max(1);
        let mut items = Vec::new();
        let mut after = request.after.clone();
        loop {
            let batch =
                self.store
                    .list(scope, after.as_deref(), request.state.as_deref(), limit)?;
            let exhausted = batch.len() < limit;
            for record in batch {
                after = Some(record.key.clone());
                if let Some(item) = keep(decode(&record)?)? {
                    items.push(item);
                    if items.len() == limit {
                        // More may follow unless this was the scope's last record.
                        let more = !self
                            .store
                            .list(scope, after.as_deref(), request.state.as_deref(), 1)?
                            .is_empty();
                        return Ok(Page {
                            items,
                            next: if more { after } else { None },
                        });
                    }
                }
            }
            if exhausted {
                return Ok(Page { items, next: None });
            }
        }
    }

    /// A page of the job's tasks whose id starts with `prefix` (ids compare
    /// case-insensitively), in `page.state` if set, from `page.after`. A keyset scan that
    /// starts just before the prefix and stops at the first id past it, so a page costs what
    /// its matches cost, however many tasks the job has.
    pub fn list_tasks_with_prefix(
        &self,
        account: &str,
        job_id: &str,
        prefix: &str,
        page: &PageRequest,
    ) -> BatchResult<Page<cobalt_model::batch::Task>> {
        self.get_job(account, job_id, &Conditions::default())?;
        let scope = Scope::under(account, Kind::Task, &id_key(job_id));
        let prefix = id_key(prefix);
        let limit = page.limit.clamp(1, 1000);
        let mut after = match &page.after {
            Some(a) if a.as_str() >= prefix.as_str() => Some(a.clone()),
            _ => key_before(&prefix),
        };
        let mut items = Vec::new();
        loop {
            let want = limit + 1 - items.len();
            let batch = self
                .store
                .list(&scope, after.as_deref(), page.state.as_deref(), want)?;
            let exhausted = batch.len() < want;
            for record in batch {
                if record.key.as_str() < prefix.as_str() {
                    after = Some(record.key);
                    continue;
                }
                if !record.key.starts_with(&prefix) {
                    return Ok(Page { items, next: None });
                }
                if items.len() == limit {
                    return Ok(Page { items, next: after });
                }
                items.push(decode(&record)?);
                after = Some(record.key);
            }
            if exhausted {
                return Ok(Page { items, next: None });
            }
        }
    }

    pub(crate) fn apply(&self, writes: &[Write]) -> BatchResult<()> {
        self.commit(writes, Durability::Durable, Vec::new())
    }

    /// Applies state the service can rebuild after a crash (runs starting, node records)
    /// without a flush of its own: it reaches the disk with the next durable write.
    pub(crate) fn apply_deferred(&self, writes: &[Write]) -> BatchResult<()> {
        self.commit(writes, Durability::Deferred, Vec::new())
    }

    /// Every write goes through here: the transaction, then (under the task cache's lock) the
    /// written tasks' copies dropped, `keep` (copies of tasks as this transaction wrote them)
    /// cached, and the generation bumped.
    pub(crate) fn commit(
        &self,
        writes: &[Write],
        durability: Durability,
        keep: Vec<(TaskKey, Task)>,
    ) -> BatchResult<()> {
        let result = self.store.apply_with(writes, durability);
        let mut cache = self.task_cache();
        cache.forget(writes);
        result?;
        cache.keep(keep);
        self.generation.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }
}

/// A key just below every key starting with `prefix` (ids are ASCII letters, digits, `-` and
/// `_`, all below DEL), or None to scan from the start.
fn key_before(prefix: &str) -> Option<String> {
    let last = *prefix.as_bytes().last()?;
    if !last.is_ascii() || last == 0 {
        return None;
    }
    let head = prefix.get(..prefix.len() - 1)?;
    Some(format!("{head}{}\u{7f}", char::from(last - 1)))
}

pub(crate) fn decode<T: DeserializeOwned>(record: &Record) -> BatchResult<T> {
    serde_json::from_str(&record.body).map_err(|e| {
        tracing::error!(error = %e, key = record.key, "stored entity does not decode");
        BatchError::new(ErrorCode::InternalError)
    })
}

pub(crate) fn encode<T: Serialize>(
    id: &str,
    state: &str,
    result: &str,
    entity: &T,
) -> BatchResult<Record> {
    let body = serde_json::to_string(entity).map_err(|e| {
        tracing::error!(error = %e, "entity does not encode");
        BatchError::new(ErrorCode::InternalError)
    })?;
    Ok(Record {
        key: id_key(id),
        state: state.to_owned(),
        result: result.to_owned(),
        body,
    })
}

/// A new ETag and modification time.
pub(crate) fn touch(previous_etag: Option<&str>) -> (String, Timestamp) {
    let now = Timestamp::now();
    (etag_after(previous_etag, now), now)
}

/// Which page of a list to return.
#[derive(Clone, Debug, Default)]
pub struct PageRequest {
    /// Start after this key (the previous page's `next`).
    pub after: Option<String>,
    /// Page size (1..=1000).
    pub limit: usize,
    /// Only entities in this state (an index the store can use).
    pub state: Option<String>,
}

/// A page of a list.
#[derive(Clone, Debug)]
pub struct Page<T> {
    /// The items.
    pub items: Vec<T>,
    /// Where the next page starts, if there may be one.
    pub next: Option<String>,
}

/// The HTTP conditional headers of a request, checked against an entity's ETag and
/// Last-Modified.
#[derive(Clone, Debug, Default)]
pub struct Conditions {
    /// `If-Match`: the ETag must be one of these (or `*`).
    pub if_match: Option<String>,
    /// `If-None-Match`: the ETag must not be one of these (`*`: must not exist).
    pub if_none_match: Option<String>,
    /// `If-Modified-Since`.
    pub if_modified_since: Option<DateTime<Utc>>,
    /// `If-Unmodified-Since`.
    pub if_unmodified_since: Option<DateTime<Utc>>,
}

fn etag_listed(list: &str, etag: &str) -> bool {
    list.split(',')
        .map(|e| e.trim().trim_start_matches("W/").trim_matches('"'))
        .any(|e| e == "*" || e == etag)
}

impl Conditions {
    /// Whether no condition is set.
    pub fn is_empty(&self) -> bool {
        self.if_match.is_none()
            && self.if_none_match.is_none()
            && self.if_modified_since.is_none()
            && self.if_unmodified_since.is_none()
    }

    /// Checks the conditions; `read` selects 304 (GET/HEAD) over 412 for the "not modified"
    /// outcomes.
    pub fn check(&self, etag: &str, last_modified: Timestamp, read: bool) -> BatchResult<()> {
        let modified_secs = last_modified.0.timestamp();
        let failed = BatchError::new(ErrorCode::ConditionNotMet);
        let not_modified = || {
            if read {
                BatchError::new(ErrorCode::NotModified)
            } else {
                BatchError::new(ErrorCode::ConditionNotMet)
            }
        };
        if let Some(list) = &self.if_match
            && !etag_listed(list, etag)
        {
            return Err(failed);
        }
        if let Some(list) = &self.if_none_match
            && etag_listed(list, etag)
        {
            return Err(not_modified());
        }
        if let Some(t) = self.if_unmodified_since
            && modified_secs > t.timestamp()
        {
            return Err(failed);
        }
        if let Some(t) = self.if_modified_since
            && modified_secs <= t.timestamp()
        {
            return Err(not_modified());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_before_sorts_below_every_key_of_the_prefix() {
        assert_eq!(key_before(""), None);
        let k = key_before("task-1").unwrap();
        for key in ["task-1", "task-10", "task-1_z", "task-1-"] {
            assert!(k.as_str() < key, "{k:?} < {key:?}");
        }
        for key in ["task-0", "task-0zzz", "task-"] {
            assert!(k.as_str() > key, "{k:?} > {key:?}");
        }
    }

    #[test]
    fn tasks_page_by_prefix_and_writes_move_the_generation() {
        let dir = tempfile::tempdir().unwrap();
        let store = cobalt_store::SqliteStore::open(&dir.path().join("state.db")).unwrap();
        let b = Batch::new(Arc::new(store), &["a".to_owned()]).unwrap();
        let g0 = b.generation();
        b.add_job(
            "a",
            serde_json::json!({"id": "j", "poolInfo": {"poolId": "p"}}),
        )
        .unwrap();
        assert!(b.generation() > g0);
        for i in 0..30 {
            b.add_task(
                "a",
                "j",
                serde_json::json!({"id": format!("T-{i}"), "commandLine": "x"}),
            )
            .unwrap();
            b.add_task(
                "a",
                "j",
                serde_json::json!({"id": format!("u-{i}"), "commandLine": "x"}),
            )
            .unwrap();
        }
        let mut page = PageRequest {
            limit: 4,
            ..PageRequest::default()
        };
        let mut seen = Vec::new();
        loop {
            let p = b.list_tasks_with_prefix("a", "j", "t-1", &page).unwrap();
            assert!(p.items.len() <= 4);
            seen.extend(p.items.into_iter().map(|t| t.spec.id));
            match p.next {
                Some(n) => page.after = Some(n),
                None => break,
            }
        }
        let mut want: Vec<String> = (0..30)
            .map(|i| format!("T-{i}"))
            .filter(|id| id.starts_with("T-1"))
            .collect();
        want.sort();
        assert_eq!(seen, want);
        page.after = None;
        page.state = Some("completed".into());
        assert!(
            b.list_tasks_with_prefix("a", "j", "", &page)
                .unwrap()
                .items
                .is_empty()
        );
        page.state = None;
        assert_eq!(
            b.list_tasks_with_prefix("a", "j", "", &page)
                .unwrap()
                .items
                .len(),
            4
        );
        assert_eq!(
            b.list_tasks_with_prefix("a", "nope", "", &page)
                .unwrap_err()
                .code,
            ErrorCode::JobNotFound
        );
    }

    #[test]
    fn conditions() {
        let now = Timestamp::now();
        let etag = "0x8D1";
        let c = |m: Option<&str>, n: Option<&str>| Conditions {
            if_match: m.map(str::to_owned),
            if_none_match: n.map(str::to_owned),
            ..Conditions::default()
        };
        assert!(c(Some("0x8D1"), None).check(etag, now, false).is_ok());
        assert!(c(Some("\"0x8D1\""), None).check(etag, now, false).is_ok());
        assert!(c(Some("*"), None).check(etag, now, false).is_ok());
        let e = c(Some("0x8D2"), None).check(etag, now, false).unwrap_err();
        assert_eq!(e.code, ErrorCode::ConditionNotMet);
        let e = c(None, Some("0x8D1")).check(etag, now, true).unwrap_err();
        assert_eq!(e.code, ErrorCode::NotModified);
        let e = c(None, Some("0x8D1")).check(etag, now, false).unwrap_err();
        assert_eq!(e.code, ErrorCode::ConditionNotMet);
        let since = Conditions {
            if_modified_since: Some(now.0 + chrono::Duration::seconds(5)),
            ..Conditions::default()
        };
        assert_eq!(
            since.check(etag, now, true).unwrap_err().code,
            ErrorCode::NotModified
        );
        let unmod = Conditions {
            if_unmodified_since: Some(now.0 - chrono::Duration::seconds(5)),
            ..Conditions::default()
        };
        assert_eq!(
            unmod.check(etag, now, false).unwrap_err().code,
            ErrorCode::ConditionNotMet
        );
    }
}
