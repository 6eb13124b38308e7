//! File requests from the server (the Batch API's node and task file operations): list, read,
//! stat and delete under the node root. Paths are relative to the root; absolute paths and
//! `..` are refused.

use std::fs::{self, Metadata};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use cobalt_model::batch::Timestamp;
use cobalt_proto::{FileEntry, FileOp, FileOutcome, FileReply, FileRequest};

use crate::node::NodeDirs;

/// The most bytes one `Read` returns (a larger file is read in several requests, by offset,
/// as the Batch API's file downloads do): base64 of it must fit in one WebSocket frame
/// (16 MiB by default on the server side). A read reports the file's size when it opened it,
/// so the caller knows how much is left.
pub const MAX_READ_BYTES: u64 = 8 << 20;

/// Serves one request on a blocking thread.
pub(crate) async fn serve(dirs: Arc<NodeDirs>, request: FileRequest) -> FileReply {
    let id = request.id;
    let outcome = tokio::task::spawn_blocking(move || serve_blocking(&dirs, &request))
        .await
        .unwrap_or_else(|e| FileOutcome::Failed {
            message: format!("the file request failed: {e}"),
        });
    FileReply { id, outcome }
}

fn serve_blocking(dirs: &NodeDirs, request: &FileRequest) -> FileOutcome {
    let Some(path) = dirs.resolve(&request.path) else {
        return FileOutcome::Failed {
            message: format!(
                "'{}' must be relative to the node root and must not contain '..'",
                request.path
            ),
        };
    };
    let name = request.path.trim_matches('/').to_owned();
    // A symbolic link a task made must not lead the agent (maybe root) out of the node root.
    let is_delete = matches!(request.op, FileOp::Delete { .. });
    let checked = if is_delete {
        path.parent()
    } else {
        Some(path.as_path())
    };
    match checked.map(|p| p.canonicalize()) {
        Some(Ok(real)) if real.starts_with(&dirs.root) => {}
        Some(Err(e)) if e.kind() == io::ErrorKind::NotFound => return FileOutcome::NotFound,
        _ if path == dirs.root => {}
        _ => {
            return FileOutcome::Failed {
                message: format!("'{}' leads outside the node root", request.path),
            };
        }
    }
    let result = match request.op {
        FileOp::List { recursive } => list(&path, recursive),
        FileOp::Read { offset, length } => read(&path, &name, offset, length),
        FileOp::Stat => fs::metadata(&path).map(|m| FileOutcome::Stat {
            entry: entry(name, &m),
        }),
        FileOp::Delete { recursive } => delete(&path, path == dirs.root, recursive),
    };
    result.unwrap_or_else(|e| match e.kind() {
        io::ErrorKind::NotFound => FileOutcome::NotFound,
        _ => FileOutcome::Failed {
            message: e.to_string(),
        },
    })
}

/// The entries under `dir`, named relative to it with '/', directories included, sorted.
fn list(dir: &Path, recursive: bool) -> io::Result<FileOutcome> {
    if !fs::metadata(dir)?.is_dir() {
        return Err(io::Error::other("not a directory"));
    }
    let depth = if recursive { usize::MAX } else { 1 };
    let mut entries = Vec::new();
    for item in walkdir::WalkDir::new(dir)
        .min_depth(1)
        .max_depth(depth)
        .sort_by_file_name()
    {
        // Entries that vanish or cannot be read while listing are left out.
        let Ok(item) = item else { continue };
        let Ok(meta) = item.metadata() else { continue };
        let Ok(rel) = item.path().strip_prefix(dir) else {
            continue;
        };
        let name = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy())
            .collect::<Vec<_>>()
            .join("/");
        entries.push(entry(name, &meta));
    }
    Ok(FileOutcome::Listing { entries })
}

/// Up to `length` bytes (at most [`MAX_READ_BYTES`]) from `offset`.
fn read(path: &Path, name: &str, offset: u64, length: Option<u64>) -> io::Result<FileOutcome> {
    let mut file = fs::File::open(path)?;
    let meta = file.metadata()?;
    if meta.is_dir() {
        return Err(io::Error::other("is a directory"));
    }
    let want = length.unwrap_or(u64::MAX).min(MAX_READ_BYTES);
    file.seek(SeekFrom::Start(offset))?;
    let mut data = Vec::new();
    file.take(want).read_to_end(&mut data)?;
    Ok(FileOutcome::Data {
        entry: entry(name.to_owned(), &meta),
        data: base64::engine::general_purpose::STANDARD.encode(data),
    })
}

fn delete(path: &Path, is_root: bool, recursive: bool) -> io::Result<FileOutcome> {
    if is_root {
        return Err(io::Error::other("the node root cannot be deleted"));
    }
    let meta = fs::symlink_metadata(path)?;
    if !meta.is_dir() {
        fs::remove_file(path)?;
    } else if recursive {
        fs::remove_dir_all(path)?;
    } else {
        fs::remove_dir(path)?;
    }
    Ok(FileOutcome::Done)
}

fn entry(name: String, meta: &Metadata) -> FileEntry {
    let change_time = DateTime::from_timestamp(meta.ctime(), nanos(meta.ctime_nsec()));
    let created = meta
        .created()
        .ok()
        .map(timestamp)
        .or_else(|| change_time.map(Timestamp))
        .unwrap_or_else(Timestamp::now);
    let modified = meta.modified().map(timestamp).unwrap_or(created);
    FileEntry {
        name,
        is_directory: meta.is_dir(),
        size: if meta.is_dir() { 0 } else { meta.len() },
        created,
        modified,
        mode: format!("{:04o}", meta.permissions().mode() & 0o7777),
    }
}

fn nanos(n: i64) -> u32 {
    u32::try_from(n).unwrap_or(0)
}

fn timestamp(time: SystemTime) -> Timestamp {
    Timestamp(DateTime::<Utc>::from(time))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(path: &str, op: FileOp) -> FileRequest {
        FileRequest {
            id: 1,
            path: path.into(),
            op,
        }
    }

    #[test]
    fn list_read_stat_delete() {
        let dir = tempfile::tempdir().unwrap();
        let dirs = NodeDirs::prepare(dir.path()).unwrap();
        let task = dirs.root.join("workitems/j/job-1/t");
        fs::create_dir_all(task.join("wd/sub")).unwrap();
        fs::write(task.join("stdout.txt"), "hello world").unwrap();
        fs::write(task.join("wd/sub/f"), "x").unwrap();
        let serve = |path: &str, op| serve_blocking(&dirs, &request(path, op));

        let FileOutcome::Listing { entries } =
            serve("workitems/j/job-1/t", FileOp::List { recursive: true })
        else {
            panic!()
        };
        let names: Vec<_> = entries
            .iter()
            .map(|e| (e.name.as_str(), e.is_directory))
            .collect();
        assert_eq!(
            names,
            [
                ("stdout.txt", false),
                ("wd", true),
                ("wd/sub", true),
                ("wd/sub/f", false)
            ]
        );
        assert_eq!(entries[0].size, 11);
        assert_eq!(entries[0].mode.len(), 4);
        let FileOutcome::Listing { entries } =
            serve("workitems/j/job-1/t/", FileOp::List { recursive: false })
        else {
            panic!()
        };
        assert_eq!(entries.len(), 2);

        let FileOutcome::Data { entry, data } = serve(
            "workitems/j/job-1/t/stdout.txt",
            FileOp::Read {
                offset: 6,
                length: Some(3),
            },
        ) else {
            panic!()
        };
        assert_eq!(
            data,
            base64::engine::general_purpose::STANDARD.encode("wor")
        );
        assert_eq!(
            (entry.size, entry.name.as_str()),
            (11, "workitems/j/job-1/t/stdout.txt")
        );

        assert!(
            matches!(serve("workitems/j/job-1/t/wd", FileOp::Stat), FileOutcome::Stat { entry } if entry.is_directory)
        );
        assert!(matches!(serve("nope", FileOp::Stat), FileOutcome::NotFound));
        assert!(matches!(
            serve("../etc", FileOp::Stat),
            FileOutcome::Failed { .. }
        ));
        assert!(matches!(
            serve(
                "/etc/passwd",
                FileOp::Read {
                    offset: 0,
                    length: None
                }
            ),
            FileOutcome::Failed { .. }
        ));
        assert!(matches!(
            serve("", FileOp::Delete { recursive: true }),
            FileOutcome::Failed { .. }
        ));
        let wd = "workitems/j/job-1/t/wd";
        assert!(matches!(
            serve(wd, FileOp::Delete { recursive: false }),
            FileOutcome::Failed { .. }
        ));
        assert!(matches!(
            serve(wd, FileOp::Delete { recursive: true }),
            FileOutcome::Done
        ));
        assert!(!task.join("wd").exists());
        std::os::unix::fs::symlink("/etc", task.join("etc")).unwrap();
        assert!(matches!(
            serve("workitems/j/job-1/t/etc/hostname", FileOp::Stat),
            FileOutcome::Failed { .. }
        ));
        assert!(matches!(
            serve("workitems/j/job-1/t/etc", FileOp::List { recursive: false }),
            FileOutcome::Failed { .. }
        ));
        assert!(matches!(
            serve(
                "workitems/j/job-1/t/etc",
                FileOp::Delete { recursive: false }
            ),
            FileOutcome::Done
        ));
        assert!(Path::new("/etc/hostname").exists() || Path::new("/etc").is_dir());
        assert!(matches!(
            serve(wd, FileOp::Delete { recursive: true }),
            FileOutcome::NotFound
        ));
    }

    #[test]
    fn a_read_stops_at_the_cap_and_reports_the_whole_size() {
        let dir = tempfile::tempdir().unwrap();
        let dirs = NodeDirs::prepare(dir.path()).unwrap();
        let size = MAX_READ_BYTES + 1000;
        let content: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        fs::write(dirs.root.join("big"), &content).unwrap();
        let read = |offset, length| {
            let FileOutcome::Data { entry, data } =
                serve_blocking(&dirs, &request("big", FileOp::Read { offset, length }))
            else {
                panic!("no data")
            };
            assert_eq!(entry.size, size);
            base64::engine::general_purpose::STANDARD
                .decode(data)
                .unwrap()
        };
        let cap = usize::try_from(MAX_READ_BYTES).unwrap();
        assert!(read(0, None) == content[..cap]);
        assert!(read(0, Some(size)) == content[..cap]);
        assert!(read(MAX_READ_BYTES, None) == content[cap..]);
        assert!(read(10, Some(5)) == content[10..15]);
        assert!(read(size, None).is_empty());
        assert!(read(size + 10, Some(5)).is_empty());
    }
}
