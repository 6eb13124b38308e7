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

    /// fsyncs the log; says whether there was one. A log that does not exist (yet, or any
    /// more: the last connection removes it after a full checkpoint) owes nothing.
    fn flush(&self) -> bool {
        match File::open(&self.wal).and_then(|f| f.sync_data()) {
            Ok(()) => true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            Err(e) => {
                tracing::error!(error = %e, wal = %self.wal.display(), "cannot flush the database log");
                false
            }
        }
    }
}

fn run(shared: &Shared) {
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
                let flushed = shared.flush();
                state = shared.lock();
                state.flushes += u64::from(flushed);
            }
        }
    }
}
