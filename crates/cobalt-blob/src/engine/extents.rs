//! Extent files: immutable files holding the bytes of one block or one Put Blob body.
//!
//! An extent is written and fsynced before the metadata that references it commits, and
//! unlinked after the metadata that dropped it commits. Readers pin the extents they stream,
//! so an unlink waits until the last reader lets go. Files no metadata references (left by a
//! crash between write and commit) are removed at startup.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use md5::{Digest, Md5};

/// The id of an extent file.
pub type ExtentId = i64;

/// The extent directory and the pin table.
#[derive(Debug)]
pub struct Extents {
    root: PathBuf,
    pins: Mutex<PinTable>,
}

#[derive(Debug, Default)]
struct PinTable {
    counts: HashMap<ExtentId, usize>,
    doomed: HashSet<ExtentId>,
}

impl Extents {
    /// Opens (creating) the extent directory.
    pub fn open(root: PathBuf) -> io::Result<Self> {
        for shard in 0..=255u8 {
            std::fs::create_dir_all(root.join(format!("{shard:02x}")))?;
        }
        Ok(Self {
            root,
            pins: Mutex::new(PinTable::default()),
        })
    }

    /// Where extent `id` lives.
    pub fn path(&self, id: ExtentId) -> PathBuf {
        let id = id as u64;
        self.root
            .join(format!("{:02x}", id & 0xff))
            .join(format!("{id:016x}"))
    }

    /// Creates a new, empty extent file with a fresh id.
    pub fn create(self: &Arc<Self>) -> io::Result<(File, ExtentGuard)> {
        loop {
            let id = (rand::random::<u64>() >> 1).max(1) as ExtentId;
            let path = self.path(id);
            match File::options().write(true).create_new(true).open(&path) {
                Ok(file) => {
                    let guard = ExtentGuard {
                        extents: Arc::clone(self),
                        id,
                        armed: true,
                    };
                    return Ok((file, guard));
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Hard-links extent `src` under a fresh id (Copy Blob shares bytes without copying them).
    pub fn link(self: &Arc<Self>, src: ExtentId) -> io::Result<ExtentGuard> {
        loop {
            let id = (rand::random::<u64>() >> 1).max(1) as ExtentId;
            match std::fs::hard_link(self.path(src), self.path(id)) {
                Ok(()) => {
                    sync_dir(&self.path(id))?;
                    return Ok(ExtentGuard {
                        extents: Arc::clone(self),
                        id,
                        armed: true,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Locks the pin table. Hold it across the metadata read that finds extents and the
    /// [`PinGuard::pin`] calls, so no unlink can slip in between.
    pub fn pin_lock(self: &Arc<Self>) -> PinGuard<'_> {
        PinGuard {
            extents: self,
            table: self.pins.lock().unwrap_or_else(|e| e.into_inner()),
        }
    }

    fn unpin(&self, ids: &[ExtentId]) {
        let mut unlink = Vec::new();
        {
            let mut table = self.pins.lock().unwrap_or_else(|e| e.into_inner());
            for id in ids {
                if let Some(count) = table.counts.get_mut(id) {
                    *count -= 1;
                    if *count == 0 {
                        table.counts.remove(id);
                        if table.doomed.remove(id) {
                            unlink.push(*id);
                        }
                    }
                }
            }
        }
        for id in unlink {
            self.unlink_now(id);
        }
    }

    /// Removes extents whose metadata is gone. Call only after that change committed.
    pub fn release(&self, ids: impl IntoIterator<Item = ExtentId>) {
        let mut now = Vec::new();
        {
            let mut table = self.pins.lock().unwrap_or_else(|e| e.into_inner());
            for id in ids {
                if table.counts.contains_key(&id) {
                    table.doomed.insert(id);
                } else {
                    now.push(id);
                }
            }
        }
        for id in now {
            self.unlink_now(id);
        }
    }

    fn unlink_now(&self, id: ExtentId) {
        if let Err(e) = std::fs::remove_file(self.path(id))
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(extent = id, error = %e, "could not remove extent");
        }
    }

    /// Every extent id on disk (for the startup sweep).
    pub fn list(&self) -> io::Result<Vec<ExtentId>> {
        let mut ids = Vec::new();
        for shard in std::fs::read_dir(&self.root)? {
            let shard = shard?;
            if !shard.file_type()?.is_dir() {
                continue;
            }
            for entry in std::fs::read_dir(shard.path())? {
                let entry = entry?;
                match entry
                    .file_name()
                    .to_str()
                    .and_then(|n| u64::from_str_radix(n, 16).ok())
                {
                    Some(id) => ids.push(id as ExtentId),
                    None => {
                        let _ = std::fs::remove_file(entry.path());
                    }
                }
            }
        }
        Ok(ids)
    }
}

/// The pin table, locked.
pub struct PinGuard<'a> {
    extents: &'a Arc<Extents>,
    table: MutexGuard<'a, PinTable>,
}

impl PinGuard<'_> {
    /// Pins extents until the returned [`Pins`] drops.
    pub fn pin(&mut self, ids: Vec<ExtentId>) -> Pins {
        for id in &ids {
            *self.table.counts.entry(*id).or_default() += 1;
        }
        Pins {
            extents: Arc::clone(self.extents),
            ids,
        }
    }
}

/// Extents kept on disk while a reader streams them.
#[derive(Debug)]
pub struct Pins {
    extents: Arc<Extents>,
    ids: Vec<ExtentId>,
}

impl Pins {
    /// The extent directory.
    pub fn extents(&self) -> &Extents {
        &self.extents
    }
}

impl Drop for Pins {
    fn drop(&mut self) {
        self.extents.unpin(&self.ids);
    }
}

/// Deletes a new extent unless it is disarmed once its metadata has committed.
#[derive(Debug)]
pub struct ExtentGuard {
    extents: Arc<Extents>,
    /// The extent's id.
    pub id: ExtentId,
    armed: bool,
}

impl ExtentGuard {
    /// The metadata now owns the extent: keep the file.
    pub fn disarm(mut self) -> ExtentId {
        self.armed = false;
        self.id
    }
}

impl Drop for ExtentGuard {
    fn drop(&mut self) {
        if self.armed {
            self.extents.unlink_now(self.id);
        }
    }
}

/// Bytes are written to the file in windows of this size, each on a blocking thread while the
/// next window arrives, and fsynced in the background as they land.
const WINDOW: usize = 1 << 20;

/// A background fsync starts once this much more has been written.
const SYNC_EVERY: u64 = WINDOW as u64;

/// Windows that may wait for the hasher at once (hashing is the slowest stage of Put Blob).
const MD5_BACKLOG: usize = 4;

type Task<T> = tokio::task::JoinHandle<io::Result<T>>;

async fn join<T>(task: Task<T>) -> io::Result<T> {
    task.await.map_err(io::Error::other)?
}

/// Streams a request body into a new extent. Holds a blocking thread only while a window is
/// written, hashed or synced, never while waiting for the network; at most two windows are in
/// memory (one being written, one arriving).
pub struct ExtentWriter {
    file: Arc<File>,
    window: Vec<Bytes>,
    window_len: usize,
    written: u64,
    /// Bytes covered by the last background fsync started.
    synced: u64,
    write: Option<Task<()>>,
    sync: Option<Task<()>>,
    md5: Option<Task<Md5>>,
    md5_slots: Arc<tokio::sync::Semaphore>,
    want_md5: bool,
    dir_sync: Task<()>,
}

impl ExtentWriter {
    /// Starts writing `file` (at `path`); its directory entry is made durable right away.
    pub fn new(file: File, path: PathBuf, want_md5: bool) -> Self {
        let dir_sync = tokio::task::spawn_blocking(move || sync_dir(&path));
        Self {
            file: Arc::new(file),
            window: Vec::new(),
            window_len: 0,
            written: 0,
            synced: 0,
            write: None,
            sync: None,
            md5: None,
            md5_slots: Arc::new(tokio::sync::Semaphore::new(MD5_BACKLOG)),
            want_md5,
            dir_sync,
        }
    }

    /// Adds a chunk of the body.
    pub async fn push(&mut self, chunk: Bytes) -> io::Result<()> {
        self.window_len += chunk.len();
        self.window.push(chunk);
        if self.window_len >= WINDOW {
            self.flush_window().await?;
        }
        Ok(())
    }

    /// Hands the current window to a writer (and hasher) task, after the previous one is done.
    async fn flush_window(&mut self) -> io::Result<()> {
        if let Some(previous) = self.write.take() {
            join(previous).await?;
            // What is written goes to the disk while the next windows arrive, a few MiB at a time
            // (an fsync per window costs more in journal commits than it saves).
            if self.written - self.synced >= SYNC_EVERY
                && self.sync.as_ref().is_none_or(|s| s.is_finished())
            {
                self.synced = self.written;
                if let Some(done) = self.sync.take() {
                    join(done).await?;
                }
                let file = Arc::clone(&self.file);
                self.sync = Some(tokio::task::spawn_blocking(move || file.sync_data()));
            }
        }
        let window = std::mem::take(&mut self.window);
        let offset = self.written;
        self.written += self.window_len as u64;
        self.window_len = 0;
        if self.want_md5 {
            // Windows hash one after another, each on a blocking thread only while it hashes;
            // at most MD5_BACKLOG windows wait, which bounds memory.
            let permit = Arc::clone(&self.md5_slots)
                .acquire_owned()
                .await
                .map_err(io::Error::other)?;
            let previous = self.md5.take();
            let chunks = window.clone();
            self.md5 = Some(tokio::task::spawn(async move {
                let _permit = permit;
                let mut md5 = match previous {
                    Some(p) => join(p).await?,
                    None => Md5::new(),
                };
                join(tokio::task::spawn_blocking(move || {
                    chunks.iter().for_each(|c| md5.update(c));
                    Ok(md5)
                }))
                .await
            }));
        }
        let file = Arc::clone(&self.file);
        // One system call per window: the chunks as they arrived are often only a few KiB.
        self.write = Some(tokio::task::spawn_blocking(move || {
            write_all_vectored_at(&file, &window, offset)
        }));
        Ok(())
    }

    /// Writes the last window and fsyncs the file; returns (length, MD5).
    pub async fn finish(mut self) -> io::Result<(u64, Option<[u8; 16]>)> {
        self.flush_window().await?;
        if let Some(last) = self.write.take() {
            join(last).await?;
        }
        if let Some(sync) = self.sync.take() {
            join(sync).await?;
        }
        join(self.dir_sync).await?;
        let file = Arc::clone(&self.file);
        join(tokio::task::spawn_blocking(move || file.sync_data())).await?;
        let md5 = match self.md5.take() {
            Some(task) => Some(join(task).await?.finalize().into()),
            None => None,
        };
        Ok((self.written, md5))
    }
}

/// At most this many buffers go to one `pwritev` (Linux's `IOV_MAX`).
const IOV_MAX: usize = 1024;

/// Writes `chunks`, one after another, at `offset` of `file` with as few `pwritev` calls as the
/// kernel allows, without copying them into one buffer first.
fn write_all_vectored_at(file: &File, chunks: &[Bytes], mut offset: u64) -> io::Result<()> {
    let mut rest = chunks.iter().filter(|c| !c.is_empty());
    let mut pending: Vec<&[u8]> = Vec::new();
    loop {
        pending.extend(rest.by_ref().take(IOV_MAX - pending.len()).map(|c| &c[..]));
        if pending.is_empty() {
            return Ok(());
        }
        let slices: Vec<io::IoSlice<'_>> = pending.iter().map(|c| io::IoSlice::new(c)).collect();
        let at = i64::try_from(offset).map_err(io::Error::other)?;
        let mut written = match nix::sys::uio::pwritev(file, &slices, at) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        };
        offset += written as u64;
        // Drop what was written; a buffer written in part keeps its tail.
        let mut done = 0;
        for c in &mut pending {
            if written < c.len() {
                *c = &c[written..];
                break;
            }
            written -= c.len();
            done += 1;
        }
        pending.drain(..done);
    }
}

fn sync_dir(file: &Path) -> io::Result<()> {
    match file.parent() {
        Some(dir) => File::open(dir)?.sync_all(),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectored_writes_put_every_chunk_in_order_at_the_offset() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("extent");
        let file = File::create_new(&path).expect("create");
        // More buffers than one pwritev takes, some of them empty.
        let chunks: Vec<Bytes> = (0..2500u32)
            .map(|i| Bytes::from(vec![(i % 251) as u8; (i % 7) as usize * 3]))
            .collect();
        let expected: Vec<u8> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
        write_all_vectored_at(&file, &chunks, 5).expect("write");
        write_all_vectored_at(&file, &[], 5).expect("nothing to write");
        let stored = std::fs::read(&path).expect("read");
        assert_eq!(stored[..5], [0; 5]);
        assert_eq!(stored[5..], expected[..]);
    }
}
