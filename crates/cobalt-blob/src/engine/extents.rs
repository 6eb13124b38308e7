//! Extent files: immutable files holding the bytes of one block or one Put Blob body.
//!
//! An extent is written and fsynced before the metadata that references it commits, and
//! unlinked after the metadata that dropped it commits. Readers pin the extents they stream,
//! so an unlink waits until the last reader lets go. Files no metadata references (left by a
//! crash between write and commit) are removed at startup.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, Write};
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
    pub fn create(self: &Arc<Self>) -> io::Result<(ExtentWriter, ExtentGuard)> {
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
                    return Ok((ExtentWriter::new(file, path)?, guard));
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

/// Written bytes are handed to the disk in windows of this size while the upload goes on, so
/// the final fsync has little left to do and dirty memory stays bounded.
const WRITEBACK_WINDOW: u64 = 1 << 20;

/// Writes the bytes of a new extent; runs on a blocking thread.
///
/// A flusher thread works beside it: it makes the new directory entry durable at once, then
/// fsyncs each window of written bytes while the next one arrives, so a request's final
/// fsync only covers its last window.
pub struct ExtentWriter {
    file: io::BufWriter<File>,
    len: u64,
    md5: Option<Md5>,
    /// Bytes already handed to the flusher.
    flushed: u64,
    wake: std::sync::mpsc::SyncSender<()>,
    flusher: std::thread::JoinHandle<io::Result<()>>,
}

impl ExtentWriter {
    fn new(file: File, path: PathBuf) -> io::Result<Self> {
        let synced = file.try_clone()?;
        let (wake, rx) = std::sync::mpsc::sync_channel::<()>(1);
        let flusher = std::thread::Builder::new()
            .name("extent-flusher".into())
            .spawn(move || -> io::Result<()> {
                sync_dir(&path)?;
                while rx.recv().is_ok() {
                    synced.sync_data()?;
                }
                Ok(())
            })?;
        Ok(Self {
            file: io::BufWriter::with_capacity(WRITEBACK_WINDOW as usize, file),
            len: 0,
            md5: None,
            flushed: 0,
            wake,
            flusher,
        })
    }

    /// Also computes the MD5 of what is written.
    pub fn with_md5(mut self) -> Self {
        self.md5 = Some(Md5::new());
        self
    }

    /// Appends a chunk.
    pub fn write(&mut self, chunk: &Bytes) -> io::Result<()> {
        if let Some(md5) = &mut self.md5 {
            md5.update(chunk);
        }
        self.file.write_all(chunk)?;
        self.len += chunk.len() as u64;
        if self.len - self.flushed >= WRITEBACK_WINDOW {
            self.file.flush()?;
            // A full channel means a sync is pending anyway; it will cover these bytes too.
            let _ = self.wake.try_send(());
            self.flushed = self.len;
        }
        Ok(())
    }

    /// Flushes and fsyncs the file (its directory entry is already durable); returns
    /// (length, MD5).
    pub fn finish(self) -> io::Result<(u64, Option<[u8; 16]>)> {
        let file = self.file.into_inner().map_err(|e| e.into_error())?;
        drop(self.wake);
        self.flusher
            .join()
            .map_err(|_| io::Error::other("extent flusher panicked"))??;
        file.sync_data()?;
        Ok((self.len, self.md5.map(|m| m.finalize().into())))
    }
}

fn sync_dir(file: &Path) -> io::Result<()> {
    match file.parent() {
        Some(dir) => File::open(dir)?.sync_all(),
        None => Ok(()),
    }
}
