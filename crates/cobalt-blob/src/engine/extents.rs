//! Extent files: immutable files holding the bytes of one block or one Put Blob body.
//!
//! An extent is written and fsynced before the metadata that references it commits, and
//! unlinked after the metadata that dropped it commits. Readers pin the extents they stream,
//! so an unlink waits until the last reader lets go. Unlinks run on a thread of their own: with
//! online discard, unlinking a 1 GiB file waits ~0.2 s for the device, which no request (and no
//! async worker dropping a reader's pins) should wait for. Files no metadata references (left
//! by a crash between write and commit, or before the reaper got to them) are removed at
//! startup.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, mpsc};

use bytes::Bytes;
use cobalt_md5::{Digest, Md5};

/// The id of an extent file.
pub type ExtentId = i64;

/// The extent directory and the pin table.
#[derive(Debug)]
pub struct Extents {
    root: PathBuf,
    pins: Mutex<PinTable>,
    /// Direct writes' buffers, kept for the next writer (at most `SPARE_BUFFERS`).
    spare: Mutex<Vec<SectorBuf>>,
    /// Unlinks files handed to it, in order; `None` only while dropping.
    reaper: Option<Reaper>,
}

#[derive(Debug)]
struct Reaper {
    queue: mpsc::Sender<PathBuf>,
    thread: std::thread::JoinHandle<()>,
}

/// Direct-write buffers kept between uploads: the uploads that usually run at once.
const SPARE_BUFFERS: usize = 4;

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
        let (queue, doomed) = mpsc::channel::<PathBuf>();
        let thread = std::thread::Builder::new()
            .name("extent-reaper".into())
            .spawn(move || doomed.iter().for_each(|path| remove(&path)))?;
        Ok(Self {
            root,
            pins: Mutex::new(PinTable::default()),
            spare: Mutex::new(Vec::new()),
            reaper: Some(Reaper { queue, thread }),
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
            self.unlink(id);
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
            self.unlink(id);
        }
    }

    /// Removes extents at once, on this thread: for the startup sweep, before anyone reads.
    pub fn sweep(&self, ids: &[ExtentId]) {
        for id in ids {
            remove(&self.path(*id));
        }
    }

    /// Hands extent `id` to the reaper.
    fn unlink(&self, id: ExtentId) {
        let path = self.path(id);
        match &self.reaper {
            Some(reaper) => {
                if let Err(mpsc::SendError(path)) = reaper.queue.send(path) {
                    remove(&path);
                }
            }
            None => remove(&path),
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

impl Drop for Extents {
    /// Waits for the reaper to unlink what it was given.
    fn drop(&mut self) {
        if let Some(Reaper { queue, thread }) = self.reaper.take() {
            drop(queue);
            if thread.join().is_err() {
                tracing::warn!("the extent reaper panicked");
            }
        }
    }
}

fn remove(path: &Path) {
    if let Err(e) = std::fs::remove_file(path)
        && e.kind() != io::ErrorKind::NotFound
    {
        tracing::warn!(path = %path.display(), error = %e, "could not remove extent");
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
            self.extents.unlink(self.id);
        }
    }
}

/// Bytes are written to the file in windows of this size, each on a blocking thread while the
/// next window arrives; through the page cache, they are fsynced in the background as they land.
const WINDOW: usize = 1 << 20;

/// Direct I/O moves whole sectors from and to aligned memory; 4 KiB covers every common
/// logical block size.
const SECTOR: usize = 4096;

/// A background fsync starts once this much more has been written.
const SYNC_EVERY: u64 = WINDOW as u64;

/// Windows that may wait for the hasher at once (hashing is the slowest stage of Put Blob).
const MD5_BACKLOG: usize = 4;

type Task<T> = tokio::task::JoinHandle<io::Result<T>>;

async fn join<T>(task: Task<T>) -> io::Result<T> {
    task.await.map_err(io::Error::other)?
}

/// How windows reach an extent file.
#[derive(Debug)]
enum Sink {
    /// Through the page cache, fsynced in the background as they land.
    Cached,
    /// Around it (`O_DIRECT`): copied into a sector-aligned buffer and written as whole
    /// sectors. `None` while a write has the buffer.
    Direct(Option<SectorBuf>),
}

/// A buffer with room for a window at a sector boundary of memory.
#[derive(Debug)]
struct SectorBuf(Vec<u8>);

impl SectorBuf {
    fn new() -> Self {
        Self(vec![0; WINDOW + SECTOR])
    }

    /// The first `n` bytes from the first sector boundary.
    fn aligned(&mut self, n: usize) -> &mut [u8] {
        if self.0.len() < n + SECTOR {
            self.0 = vec![0; n + SECTOR];
        }
        let start = self.0.as_ptr().align_offset(SECTOR).min(SECTOR);
        &mut self.0[start..start + n]
    }
}

/// Streams a request body into a new extent. Holds a blocking thread only while a window is
/// written, hashed or synced, never while waiting for the network; at most two windows are in
/// memory (one being written, one arriving).
pub struct ExtentWriter {
    extents: Arc<Extents>,
    /// The new file, created on a blocking thread while the first window arrives.
    opening: Option<Task<(File, ExtentGuard)>>,
    /// Set once `opening` is done.
    opened: Option<(Arc<File>, ExtentGuard)>,
    cache: bool,
    window: Vec<Bytes>,
    window_len: usize,
    written: u64,
    /// Bytes covered by the last background fsync started.
    synced: u64,
    sink: Sink,
    write: Option<Task<Sink>>,
    sync: Option<Task<()>>,
    md5: Option<Task<Md5>>,
    md5_slots: Arc<tokio::sync::Semaphore>,
    want_md5: bool,
    dir_sync: Option<Task<()>>,
}

impl ExtentWriter {
    /// Starts a new extent. Its file is created (and its directory entry made durable) on
    /// blocking threads while the body's first window arrives: creating a file can take a
    /// millisecond (ext4 looks for a free inode), too long for an async worker.
    ///
    /// With `cache` false the bytes go around the page cache where the file system allows it:
    /// for bytes unlikely to be read back soon, which then neither cost a copy into the cache
    /// nor push out what others read.
    pub fn new(extents: &Arc<Extents>, want_md5: bool, cache: bool) -> Self {
        let creator = Arc::clone(extents);
        Self {
            extents: Arc::clone(extents),
            opening: Some(tokio::task::spawn_blocking(move || creator.create())),
            opened: None,
            cache,
            window: Vec::new(),
            window_len: 0,
            written: 0,
            synced: 0,
            sink: Sink::Cached,
            write: None,
            sync: None,
            md5: None,
            md5_slots: Arc::new(tokio::sync::Semaphore::new(MD5_BACKLOG)),
            want_md5,
            dir_sync: None,
        }
    }

    /// The file, once created; the first call waits for it and picks the sink.
    async fn file(&mut self) -> io::Result<Arc<File>> {
        if let Some(opening) = self.opening.take() {
            let (file, guard) = join(opening).await?;
            let path = self.extents.path(guard.id);
            self.dir_sync = Some(tokio::task::spawn_blocking(move || sync_dir(&path)));
            if !self.cache && set_direct(&file, true).is_ok() {
                let spare = self
                    .extents
                    .spare
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .pop();
                self.sink = Sink::Direct(Some(spare.unwrap_or_else(SectorBuf::new)));
            }
            self.opened = Some((Arc::new(file), guard));
        }
        match &self.opened {
            Some((file, _)) => Ok(Arc::clone(file)),
            None => Err(io::Error::other("extent file creation failed earlier")),
        }
    }

    /// Adds a chunk of the body. Every window but the last is exactly `WINDOW` bytes, so a
    /// direct write's windows start and end at sector boundaries.
    pub async fn push(&mut self, mut chunk: Bytes) -> io::Result<()> {
        while self.window_len + chunk.len() >= WINDOW {
            let head = chunk.split_to(WINDOW - self.window_len);
            self.window_len += head.len();
            self.window.push(head);
            self.flush_window(false).await?;
        }
        if !chunk.is_empty() {
            self.window_len += chunk.len();
            self.window.push(chunk);
        }
        Ok(())
    }

    /// Hands the current window to a writer (and hasher) task, after the previous one is done.
    async fn flush_window(&mut self, last: bool) -> io::Result<()> {
        let file = self.file().await?;
        if let Some(previous) = self.write.take() {
            self.sink = join(previous).await?;
            // What is written goes to the disk while the next windows arrive, a few MiB at a time
            // (an fsync per window costs more in journal commits than it saves).
            if matches!(self.sink, Sink::Cached)
                && self.written - self.synced >= SYNC_EVERY
                && self.sync.as_ref().is_none_or(|s| s.is_finished())
            {
                self.synced = self.written;
                if let Some(done) = self.sync.take() {
                    join(done).await?;
                }
                let file = Arc::clone(&file);
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
        let sink = match &mut self.sink {
            Sink::Cached => Sink::Cached,
            Sink::Direct(buf) => Sink::Direct(buf.take()),
        };
        self.write = Some(tokio::task::spawn_blocking(move || {
            let sink = match sink {
                // One system call per window: the chunks as they arrived are often only a few KiB.
                Sink::Cached => {
                    write_all_vectored_at(&file, &window, offset).map(|()| Sink::Cached)
                }
                Sink::Direct(buf) => write_direct(
                    &file,
                    buf.unwrap_or_else(SectorBuf::new),
                    &window,
                    offset,
                    last,
                ),
            }?;
            // The last window's thread also makes the file durable: one trip less per body.
            if last {
                file.sync_data()?;
            }
            Ok(sink)
        }));
        Ok(())
    }

    /// Writes the last window and fsyncs the file; returns the extent (still armed: it goes
    /// away if dropped), its length and MD5.
    pub async fn finish(mut self) -> io::Result<(ExtentGuard, u64, Option<[u8; 16]>)> {
        self.flush_window(true).await?;
        if let Some(last) = self.write.take()
            && let Sink::Direct(Some(buf)) = join(last).await?
        {
            let mut spare = self.extents.spare.lock().unwrap_or_else(|e| e.into_inner());
            if spare.len() < SPARE_BUFFERS {
                spare.push(buf);
            }
        }
        if let Some(sync) = self.sync.take() {
            join(sync).await?;
        }
        if let Some(dir_sync) = self.dir_sync.take() {
            join(dir_sync).await?;
        }
        let md5 = match self.md5.take() {
            Some(task) => Some(join(task).await?.finalize().into()),
            None => None,
        };
        let (_, guard) = self
            .opened
            .take()
            .ok_or_else(|| io::Error::other("extent file never created"))?;
        Ok((guard, self.written, md5))
    }

    /// The file being written (tests look at its flags).
    #[cfg(test)]
    async fn test_file(&mut self) -> Arc<File> {
        self.file().await.expect("extent file")
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

/// Turns direct I/O on or off for an open file; fails where the file system has none.
fn set_direct(file: &File, on: bool) -> io::Result<()> {
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    let flags = OFlag::from_bits_truncate(fcntl(file, FcntlArg::F_GETFL)?);
    let flags = if on {
        flags | OFlag::O_DIRECT
    } else {
        flags - OFlag::O_DIRECT
    };
    fcntl(file, FcntlArg::F_SETFL(flags))?;
    Ok(())
}

/// Writes a window at `offset` with direct I/O. Every window but the `last` fills whole
/// sectors; the last is padded to a sector, and the file cut back to its length.
///
/// Should the file system refuse the write (`EINVAL`: an alignment it wants and we do not
/// know), the window goes through the page cache instead, and so does the rest of the file.
fn write_direct(
    file: &File,
    mut buf: SectorBuf,
    window: &[Bytes],
    offset: u64,
    last: bool,
) -> io::Result<Sink> {
    let len = window.iter().map(Bytes::len).sum::<usize>();
    let whole = len.next_multiple_of(SECTOR);
    let bytes = buf.aligned(whole);
    let mut at = 0;
    for chunk in window {
        bytes[at..at + chunk.len()].copy_from_slice(chunk);
        at += chunk.len();
    }
    bytes[len..].fill(0);
    let sink = match write_all_at(file, bytes, offset) {
        Ok(()) => Sink::Direct(Some(buf)),
        Err(e) if e.raw_os_error() == Some(nix::libc::EINVAL) => {
            set_direct(file, false)?;
            write_all_at(file, &bytes[..len], offset)?;
            Sink::Cached
        }
        Err(e) => return Err(e),
    };
    if last {
        file.set_len(offset + len as u64)?;
    }
    Ok(sink)
}

fn write_all_at(file: &File, bytes: &[u8], offset: u64) -> io::Result<()> {
    std::os::unix::fs::FileExt::write_all_at(file, bytes, offset)
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

    fn is_direct(file: &File) -> bool {
        use nix::fcntl::{FcntlArg, OFlag, fcntl};
        let flags = fcntl(file, FcntlArg::F_GETFL).expect("F_GETFL");
        OFlag::from_bits_truncate(flags).contains(OFlag::O_DIRECT)
    }

    /// Streams `body` through an extent writer in chunks of the given sizes (cycled) and
    /// returns what the file then holds.
    async fn stream(cache: bool, body: &[u8], chunk_sizes: &[usize]) -> Vec<u8> {
        let dir = tempfile::tempdir().expect("tempdir");
        let extents = Arc::new(Extents::open(dir.path().to_path_buf()).expect("open"));
        let mut writer = ExtentWriter::new(&extents, true, cache);
        let mut rest = Bytes::copy_from_slice(body);
        for size in chunk_sizes.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            writer
                .push(rest.split_to((*size).min(rest.len())))
                .await
                .expect("push");
        }
        let (guard, len, md5) = writer.finish().await.expect("finish");
        assert_eq!(len, body.len() as u64);
        assert_eq!(md5, Some(Md5::digest(body).into()));
        std::fs::read(extents.path(guard.disarm())).expect("read")
    }

    #[tokio::test]
    async fn every_length_and_chunking_lands_whole_with_and_without_the_page_cache() {
        let body: Vec<u8> = (0..3 * WINDOW + 12_345)
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        let lengths = [
            0,
            1,
            SECTOR - 1,
            SECTOR,
            SECTOR + 1,
            WINDOW - 1,
            WINDOW,
            WINDOW + 1,
        ];
        let chunkings: [&[usize]; 3] = [&[1 << 16], &[4095, 70_001, 13], &[5 * WINDOW]];
        for cache in [true, false] {
            for len in lengths.into_iter().chain([body.len()]) {
                for chunks in chunkings {
                    let stored = stream(cache, &body[..len], chunks).await;
                    assert!(
                        stored == body[..len],
                        "cache {cache}, {len} B in {chunks:?}"
                    );
                }
            }
        }
    }

    #[tokio::test]
    async fn uncached_extents_bypass_the_page_cache_where_the_file_system_can() {
        let dir = tempfile::tempdir().expect("tempdir");
        let extents = Arc::new(Extents::open(dir.path().to_path_buf()).expect("open"));
        let mut writer = ExtentWriter::new(&extents, false, false);
        let probe = writer.test_file().await;
        // Where direct I/O exists (ext4, xfs...), an uncached writer uses it.
        assert_eq!(is_direct(&probe), set_direct(&probe, true).is_ok());
        writer.finish().await.expect("finish");
        let mut writer = ExtentWriter::new(&extents, false, true);
        let probe = writer.test_file().await;
        assert!(!is_direct(&probe), "a cached writer never uses direct I/O");
    }

    #[tokio::test]
    async fn a_writer_dropped_before_it_finishes_leaves_no_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let extents = Arc::new(Extents::open(dir.path().to_path_buf()).expect("open"));
        // Dropped before its file exists, with part of a window, and after whole windows.
        for len in [0, 10, 2 * WINDOW + 10] {
            let mut writer = ExtentWriter::new(&extents, false, false);
            if len > 0 {
                writer
                    .push(Bytes::from(vec![1u8; len]))
                    .await
                    .expect("push");
            }
            drop(writer);
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !extents.list().expect("list").is_empty() {
            assert!(
                std::time::Instant::now() < deadline,
                "extent files left behind"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    #[test]
    fn a_refused_direct_write_goes_through_the_page_cache() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("extent");
        let file = File::create_new(&path).expect("create");
        if set_direct(&file, true).is_err() {
            return; // no direct I/O on this file system: nothing to refuse
        }
        // An offset off the sector grid: file systems that enforce alignment refuse it.
        let window = [Bytes::from_static(b"hello, "), Bytes::from_static(b"world")];
        let sink = write_direct(&file, SectorBuf::new(), &window, 3, true).expect("write");
        let stored = std::fs::read(&path).expect("read");
        assert_eq!(stored, b"\0\0\0hello, world");
        match sink {
            Sink::Cached => assert!(!is_direct(&file), "direct I/O is off after a refusal"),
            Sink::Direct(_) => assert!(is_direct(&file), "this file system took it as it was"),
        }
    }
}
