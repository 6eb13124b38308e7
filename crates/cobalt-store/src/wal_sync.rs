//! Group flushes of SQLite's write-ahead log: transactions committed with
//! [`Durability::Soon`](crate::Durability::Soon) reach stable storage together, at most
//! [`SYNC_WINDOW`] after the first of them.
//!
//! In WAL mode, `synchronous = FULL` differs from `NORMAL` only by an fsync of the log after
//! each commit; an fsync of the log file by this thread therefore makes every transaction
//! committed before it exactly as durable as a `FULL` commit would have.

use std::fs::File;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The longest a `Soon` transaction waits for its flush.
pub const SYNC_WINDOW: Duration = Duration::from_millis(100);

/// The flushing thread; stopped (after a last flush) when dropped.
#[derive(Debug)]
pub(crate) struct WalSyncer {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    wal: PathBuf,
}

#[derive(Debug, Default)]
struct State {
    /// When the oldest transaction not yet flushed was committed.
    since: Option<Instant>,
    stop: bool,
    /// Flushes of an existing log done (for tests).
    flushes: u64,
    /// Why a flush failed. Linux may mark the pages clean after a failed fsync, so a later
    /// one that succeeds proves nothing: the store refuses writes from then on.
    failed: Option<String>,
}

impl WalSyncer {
    /// Starts the thread for the log file at `wal`.
    pub fn start(wal: PathBuf) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
            wal,
        });
        let thread = std::thread::Builder::new()
            .name("cobalt-walsync".into())
            .spawn({
                let shared = Arc::clone(&shared);
                move || run(&shared)
            })?;
        Ok(Self {
            shared,
            thread: Some(thread),
        })
    }

    /// A transaction was committed without a flush: flush within [`SYNC_WINDOW`].
    pub fn dirty(&self) {
        let mut state = self.shared.lock();
        if state.since.is_none() {
            state.since = Some(Instant::now());
            self.shared.wake.notify_one();
        }
    }

    /// A flush just covered every transaction committed so far (call it under the lock that
    /// orders commits).
    pub fn clean(&self) {
        self.shared.lock().since = None;
    }

    /// An error if a flush has failed.
    pub fn check(&self) -> Result<(), String> {
        match &self.shared.lock().failed {
            None => Ok(()),
            Some(e) => Err(format!("the database log could not be flushed: {e}")),
        }
    }

    /// Whether a flush is owed, and how many were done.
    #[cfg(test)]
    pub fn status(&self) -> (bool, u64) {
        let state = self.shared.lock();
        (state.since.is_some(), state.flushes)
    }
}

impl Drop for WalSyncer {
    fn drop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// fsyncs the log (and, the first time, its directory, which SQLite syncs only when a
    /// commit of its own is the first to sync a new log); says whether there was a log. A
    /// log that does not exist (yet, or any more: the last connection removes it after a full
    /// checkpoint) owes nothing.
    fn flush(&self, dir_synced: &mut bool) -> std::io::Result<bool> {
        match File::open(&self.wal) {
            Ok(file) => file.sync_data()?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        }
        if !*dir_synced {
            if let Some(dir) = self.wal.parent().filter(|d| !d.as_os_str().is_empty()) {
                File::open(dir)?.sync_all()?;
            }
            *dir_synced = true;
        }
        Ok(true)
    }
}

fn run(shared: &Shared) {
    let mut dir_synced = false;
    let mut state = shared.lock();
    loop {
        match state.since {
            None if state.stop => return,
            None => {
                state = shared.wake.wait(state).unwrap_or_else(|p| p.into_inner());
            }
            Some(since) => {
                let due = since + SYNC_WINDOW;
                let now = Instant::now();
                if now < due && !state.stop {
                    state = shared
                        .wake
                        .wait_timeout(state, due - now)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                    continue;
                }
                // Commits from here on owe a flush of their own (this one may miss them).
                state.since = None;
                drop(state);
                let flushed = shared.flush(&mut dir_synced);
                state = shared.lock();
                match flushed {
                    Ok(flushed) => state.flushes += u64::from(flushed),
                    Err(e) => {
                        tracing::error!(error = %e, wal = %shared.wal.display(),
                            "cannot flush the database log; refusing writes from now on");
                        state.failed = Some(e.to_string());
                    }
                }
            }
        }
    }
}

/// Waits until `done`, failing with `what` after [`SYNC_WINDOW`] fifty times over.
#[cfg(test)]
pub(crate) fn wait_until(what: &str, done: impl Fn() -> bool) {
    let began = Instant::now();
    while !done() {
        assert!(began.elapsed() < SYNC_WINDOW * 50, "{what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_flush_is_remembered() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("not-a-directory");
        std::fs::write(&file, b"").unwrap();
        // Opening a path under a regular file fails with ENOTDIR, not NotFound.
        let syncer = WalSyncer::start(file.join("state.db-wal")).unwrap();
        assert_eq!(syncer.check(), Ok(()));
        syncer.dirty();
        wait_until("the failure was not seen", || syncer.check().is_err());
        assert!(
            syncer
                .check()
                .is_err_and(|e| e.contains("could not be flushed")),
            "{:?}",
            syncer.check()
        );
        assert_eq!(syncer.status(), (false, 0));
    }

    #[test]
    fn a_missing_log_owes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let wal = dir.path().join("state.db-wal");
        let syncer = WalSyncer::start(wal.clone()).unwrap();
        syncer.dirty();
        wait_until("the flush never ran", || !syncer.status().0);
        assert_eq!(syncer.check(), Ok(()));
        // Once the log exists, the next flush syncs it.
        std::fs::write(&wal, b"frames").unwrap();
        syncer.dirty();
        wait_until("no flush", || syncer.status().1 > 0);
        assert_eq!(syncer.check(), Ok(()));
    }
}
