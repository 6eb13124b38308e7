//! Task and node files, served from the node the task ran on (through its agent): list
//! (recursive), get (with `ocp-range`), properties (HEAD) and delete.
//!
//! A get is streamed: the agent answers a read with at most a few MiB (its cap), so the body
//! asks for the file chunk by chunk as the client takes it, and no file is ever held whole.
//! The response promises (`Content-Length`) the bytes the file had at the first chunk: a
//! file that grows meanwhile (a running task's `stdout.txt`) is served up to that size; one
//! that shrinks, disappears or whose node goes away ends the response with an error (the
//! connection is cut), never with a body shorter than its `Content-Length`.

use std::io;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::response::Response;
use base64::Engine as _;
use cobalt_model::batch::{NodeAction, NodeActionError};
use cobalt_proto::{FileEntry, FileOp, FileOutcome};
use futures_util::{Stream, StreamExt as _, stream};
use http::{Method, StatusCode, header};
use serde_json::{Value, json};

use crate::error::{BatchError, BatchResult, ErrorCode};
use crate::odata::ListKind;
use crate::service::{ListQuery, Req, list_response, respond};

/// What the API asks of the nodes (the dispatcher answers): file operations, answered by
/// the node agents, and node actions.
pub trait NodeAgents: Send + Sync + std::fmt::Debug {
    /// Runs `op` on `path` (relative to the node root) of `node`; None when the node is not
    /// connected. Blocks until the agent answers.
    fn file(
        &self,
        account: &str,
        pool: &str,
        node: &str,
        path: &str,
        op: FileOp,
    ) -> Option<FileOutcome>;

    /// Reboots, reimages, or disables/enables scheduling on a node. Blocks.
    fn act(
        &self,
        account: &str,
        pool: &str,
        node: &str,
        action: NodeAction,
    ) -> Result<(), NodeActionError>;

    /// The job's preparation and release task runs, one
    /// `JobPreparationAndReleaseTaskExecutionInformation` per node (without URLs, which the
    /// API adds). Blocks.
    fn prep_release(&self, account: &str, job: &str) -> Vec<serde_json::Value>;
}

/// The most bytes the API asks an agent for in one read. It must not exceed the agent's own
/// cap (`cobalt_agent::MAX_READ_BYTES`, 8 MiB); a shorter answer (an agent with a smaller cap)
/// is fine, the next read starts where it ended.
const CHUNK_BYTES: u64 = 4 << 20;

/// Where a file request goes: a node, a base directory on it, and the URL the names hang off.
pub(crate) struct FileTarget<'a> {
    pub files: &'a Arc<dyn NodeAgents>,
    pub pool: String,
    pub node: String,
    /// Directory on the node the API's paths are relative to ("" for node files).
    pub base: String,
    /// URL of `…/files`.
    pub url: String,
    /// The error when the node is not reachable.
    pub unavailable: ErrorCode,
}

fn join(base: &str, path: &str) -> String {
    match (base.is_empty(), path.is_empty()) {
        (true, _) => path.to_owned(),
        (_, true) => base.to_owned(),
        _ => format!("{base}/{path}"),
    }
}

fn entry_json(url: &str, e: &FileEntry) -> Value {
    json!({
        "name": e.name,
        "url": format!("{url}/{}", e.name),
        "isDirectory": e.is_directory,
        "properties": {
            "creationTime": e.created,
            "lastModified": e.modified,
            "contentLength": e.size,
            "contentType": "application/octet-stream",
            "fileMode": e.mode,
        },
    })
}

impl FileTarget<'_> {
    fn call(&self, req: &Req, path: &str, op: FileOp) -> BatchResult<FileOutcome> {
        if path.split('/').any(|p| p == "..") {
            return Err(ErrorCode::InvalidUri.into());
        }
        let outcome = self
            .files
            .file(
                &req.account,
                &self.pool,
                &self.node,
                &join(&self.base, path),
                op,
            )
            .ok_or_else(|| {
                BatchError::new(self.unavailable)
                    .with_message("The node holding the files is not available.")
            })?;
        match outcome {
            FileOutcome::NotFound => Err(ErrorCode::FileNotFound.into()),
            FileOutcome::Failed { message } => {
                tracing::warn!(message, "node could not serve a file request");
                Err(BatchError::new(ErrorCode::InternalError))
            }
            other => Ok(other),
        }
    }

    /// `GET …/files[?recursive=true]`.
    pub fn list(&self, req: &Req) -> BatchResult<Response> {
        let recursive = req
            .query("recursive")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"));
        let q = ListQuery::parse(req, ListKind::TaskFiles)?;
        let FileOutcome::Listing { entries } = self.call(req, "", FileOp::List { recursive })?
        else {
            return Err(BatchError::new(ErrorCode::InternalError));
        };
        let mut items: Vec<Value> = entries
            .iter()
            .map(|e| entry_json(&self.url, e))
            .filter_map(|v| q.keep(v))
            .collect();
        let skip: usize = q
            .page
            .after
            .as_deref()
            .and_then(|a| a.parse().ok())
            .unwrap_or(0);
        let end = skip.saturating_add(q.page.limit).min(items.len());
        let next = (end < items.len()).then(|| end.to_string());
        items = items.into_iter().skip(skip).take(q.page.limit).collect();
        list_response(req, "files", cobalt_batch::Page { items, next })
    }

    /// `GET`, `HEAD` or `DELETE …/files/{path}`.
    pub fn one(&self, req: &Req, path: &str) -> BatchResult<Response> {
        match req.method {
            Method::DELETE => {
                let recursive = req
                    .query("recursive")
                    .is_some_and(|v| v.eq_ignore_ascii_case("true"));
                self.call(req, path, FileOp::Delete { recursive })?;
                respond(StatusCode::OK, &[], None)
            }
            Method::HEAD => {
                let FileOutcome::Stat { entry } = self.call(req, path, FileOp::Stat)? else {
                    return Err(BatchError::new(ErrorCode::InternalError));
                };
                self.conditions(req, &entry)?;
                self.bytes(&entry, path, entry.size, Body::empty())
            }
            _ => {
                let (offset, length) = range(req)?;
                let want = length.unwrap_or(u64::MAX).min(CHUNK_BYTES);
                let FileOutcome::Data { entry, data } = self.call(
                    req,
                    path,
                    FileOp::Read {
                        offset,
                        length: Some(want),
                    },
                )?
                else {
                    return Err(BatchError::new(ErrorCode::InternalError));
                };
                self.conditions(req, &entry)?;
                let mut first =
                    decode(&data).map_err(|_| BatchError::new(ErrorCode::InternalError))?;
                // The range, cut at the end of the file as the first chunk saw it.
                let end = length
                    .map_or(u64::MAX, |l| offset.saturating_add(l))
                    .min(entry.size);
                let total = end.saturating_sub(offset);
                first.truncate(usize::try_from(total).unwrap_or(usize::MAX));
                let next = offset.saturating_add(first.len() as u64);
                let body = if next >= end {
                    Body::from(first)
                } else {
                    let rest = Rest {
                        files: Arc::clone(self.files),
                        account: req.account.clone(),
                        pool: self.pool.clone(),
                        node: self.node.clone(),
                        path: join(&self.base, path),
                        next,
                        end,
                    };
                    Body::from_stream(
                        stream::once(async move { Ok(Bytes::from(first)) }).chain(rest.stream()),
                    )
                };
                self.bytes(&entry, path, total, body)
            }
        }
    }

    fn conditions(&self, req: &Req, entry: &FileEntry) -> BatchResult<()> {
        req.cond.check(
            "",
            entry.modified,
            req.method == Method::GET || req.method == Method::HEAD,
        )
    }

    fn bytes(
        &self,
        entry: &FileEntry,
        path: &str,
        length: u64,
        body: Body,
    ) -> BatchResult<Response> {
        Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .header(header::CONTENT_LENGTH, length)
            .header(header::LAST_MODIFIED, entry.modified.rfc1123())
            .header("ocp-creation-time", entry.created.rfc1123())
            .header(
                "ocp-batch-file-isdirectory",
                if entry.is_directory { "true" } else { "false" },
            )
            .header("ocp-batch-file-url", format!("{}/{path}", self.url))
            .header("ocp-batch-file-mode", &entry.mode)
            .body(body)
            .map_err(|_| BatchError::new(ErrorCode::InternalError))
    }
}

/// `ocp-range: bytes=a-b` (or `bytes=a-`) as (offset, length).
fn range(req: &Req) -> BatchResult<(u64, Option<u64>)> {
    let Some(text) = req.header("ocp-range") else {
        return Ok((0, None));
    };
    let bad = || {
        BatchError::new(ErrorCode::InvalidHeaderValue)
            .with_value("HeaderName", "ocp-range")
            .with_value("HeaderValue", text.clone())
    };
    let spec = text.trim().strip_prefix("bytes=").ok_or_else(bad)?;
    let (a, b) = spec.split_once('-').ok_or_else(bad)?;
    let start: u64 = a.trim().parse().map_err(|_| bad())?;
    let end: Option<u64> = match b.trim() {
        "" => None,
        b => Some(b.parse().map_err(|_| bad())?),
    };
    match end {
        Some(end) if end < start => Err(bad()),
        Some(end) => Ok((start, Some((end - start).saturating_add(1)))),
        None => Ok((start, None)),
    }
}

fn decode(data: &str) -> Result<Vec<u8>, base64::DecodeError> {
    base64::engine::general_purpose::STANDARD.decode(data)
}

/// The part of a get's body after the first chunk: bytes `next..end` of `path`, read from the
/// node in chunks as the client takes them.
struct Rest {
    files: Arc<dyn NodeAgents>,
    account: String,
    pool: String,
    node: String,
    /// Path relative to the node root.
    path: String,
    /// The next byte to read.
    next: u64,
    /// One past the last byte promised.
    end: u64,
}

impl Rest {
    fn stream(self) -> impl Stream<Item = io::Result<Bytes>> + Send + 'static {
        stream::try_unfold(self, |rest| async move {
            if rest.next >= rest.end {
                return Ok(None);
            }
            let want = (rest.end - rest.next).min(CHUNK_BYTES);
            let (mut rest, read) = tokio::task::spawn_blocking(move || {
                let read = rest.read(want);
                (rest, read)
            })
            .await
            .map_err(io::Error::other)?;
            let mut data = read.inspect_err(|e| {
                tracing::warn!(
                    error = %e,
                    path = rest.path,
                    offset = rest.next,
                    promised = rest.end,
                    "cutting a file download short"
                );
            })?;
            data.truncate(usize::try_from(want).unwrap_or(usize::MAX));
            rest.next += data.len() as u64;
            Ok(Some((Bytes::from(data), rest)))
        })
    }

    /// Up to `want` bytes from `next` (at least one). Blocks.
    fn read(&self, want: u64) -> io::Result<Vec<u8>> {
        let op = FileOp::Read {
            offset: self.next,
            length: Some(want),
        };
        match self
            .files
            .file(&self.account, &self.pool, &self.node, &self.path, op)
        {
            Some(FileOutcome::Data { data, .. }) => match decode(&data) {
                Ok(data) if data.is_empty() => Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the file shrank while it was being read",
                )),
                Ok(data) => Ok(data),
                Err(e) => Err(io::Error::new(io::ErrorKind::InvalidData, e)),
            },
            None => Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "the node is no longer connected",
            )),
            Some(FileOutcome::NotFound) => Err(io::Error::new(
                io::ErrorKind::NotFound,
                "the file was deleted while it was being read",
            )),
            Some(FileOutcome::Failed { message }) => Err(io::Error::other(message)),
            Some(_) => Err(io::Error::other("the node answered a read with no data")),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use cobalt_model::batch::Timestamp;
    use http::HeaderMap;
    use http_body_util::BodyExt as _;

    use super::*;
    use crate::version::ApiVersion;

    /// A node holding one file, `f`, that answers at most `cap` bytes a read and can change
    /// the file after the first read.
    #[derive(Debug)]
    struct FakeNode {
        file: Mutex<Vec<u8>>,
        cap: u64,
        /// The file's content from the second read on.
        then: Mutex<Option<Vec<u8>>>,
        /// (offset, length) of every read.
        reads: Mutex<Vec<(u64, Option<u64>)>>,
    }

    impl FakeNode {
        fn new(file: Vec<u8>, cap: u64) -> Arc<Self> {
            Arc::new(Self {
                file: Mutex::new(file),
                cap,
                then: Mutex::new(None),
                reads: Mutex::new(Vec::new()),
            })
        }
    }

    impl NodeAgents for FakeNode {
        fn file(
            &self,
            _account: &str,
            _pool: &str,
            _node: &str,
            path: &str,
            op: FileOp,
        ) -> Option<FileOutcome> {
            if path != "base/f" {
                return Some(FileOutcome::NotFound);
            }
            let mut file = self.file.lock().unwrap();
            let entry = FileEntry {
                name: path.to_owned(),
                is_directory: false,
                size: file.len() as u64,
                created: Timestamp::now(),
                modified: Timestamp::now(),
                mode: "0644".into(),
            };
            let outcome = match op {
                FileOp::Stat => FileOutcome::Stat { entry },
                FileOp::Read { offset, length } => {
                    self.reads.lock().unwrap().push((offset, length));
                    let want = length.unwrap_or(u64::MAX).min(self.cap);
                    let start = offset.min(file.len() as u64);
                    let end = start.saturating_add(want).min(file.len() as u64);
                    let data = &file[start as usize..end as usize];
                    let data = base64::engine::general_purpose::STANDARD.encode(data);
                    if let Some(then) = self.then.lock().unwrap().take() {
                        *file = then;
                    }
                    FileOutcome::Data { entry, data }
                }
                _ => FileOutcome::Failed {
                    message: "unsupported".into(),
                },
            };
            Some(outcome)
        }

        fn act(&self, _: &str, _: &str, _: &str, _: NodeAction) -> Result<(), NodeActionError> {
            Ok(())
        }

        fn prep_release(&self, _: &str, _: &str) -> Vec<Value> {
            Vec::new()
        }
    }

    fn request(method: Method, range: Option<&str>) -> Req {
        let mut headers = HeaderMap::new();
        if let Some(range) = range {
            headers.insert("ocp-range", range.parse().unwrap());
        }
        Req {
            method,
            segments: Vec::new(),
            raw_path: String::new(),
            query: Vec::new(),
            version: ApiVersion::V2024_07_01,
            base_url: "http://localhost".into(),
            account: "acct".into(),
            cond: cobalt_batch::Conditions::default(),
            headers,
            body: Bytes::new(),
        }
    }

    /// `method` on `f` with an optional `ocp-range`: the response's Content-Length and its
    /// body (or the error that cut it).
    async fn get(
        node: &Arc<FakeNode>,
        method: Method,
        range: Option<&str>,
    ) -> (u64, Result<Bytes, String>) {
        let files: Arc<dyn NodeAgents> = node.clone();
        let target = FileTarget {
            files: &files,
            pool: "p".into(),
            node: "n".into(),
            base: "base".into(),
            url: "http://localhost/files".into(),
            unavailable: ErrorCode::NodeStateUnusable,
        };
        let response = target.one(&request(method, range), "f").unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let length = response.headers()[header::CONTENT_LENGTH]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        let body = response.into_body().collect().await;
        (
            length,
            body.map(|b| b.to_bytes()).map_err(|e| e.to_string()),
        )
    }

    fn content(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    #[tokio::test]
    async fn a_large_file_comes_whole_in_chunks_no_larger_than_the_cap() {
        let file = content((16 << 20) + 12345);
        let node = FakeNode::new(file.clone(), u64::MAX);
        let (length, body) = get(&node, Method::GET, None).await;
        assert_eq!(length, file.len() as u64);
        assert!(body.unwrap() == file);
        let reads = node.reads.lock().unwrap().clone();
        assert_eq!(reads.len(), 5);
        assert!(
            reads
                .iter()
                .all(|(_, l)| l.is_some_and(|l| l <= CHUNK_BYTES))
        );

        // A range larger than a chunk.
        let (length, body) = get(&node, Method::GET, Some("bytes=5242880-15728639")).await;
        assert_eq!(length, 10 << 20);
        assert!(body.unwrap() == file[5 << 20..15 << 20]);

        // HEAD: the size, no read.
        node.reads.lock().unwrap().clear();
        let (length, body) = get(&node, Method::HEAD, None).await;
        assert_eq!((length, body.unwrap().len()), (file.len() as u64, 0));
        assert!(node.reads.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn short_answers_and_ranges() {
        // An agent answering 7 bytes a read still serves the whole file.
        let file = content(100);
        let node = FakeNode::new(file.clone(), 7);
        let (length, body) = get(&node, Method::GET, None).await;
        assert_eq!((length, body.unwrap()), (100, Bytes::from(file.clone())));
        let (length, body) = get(&node, Method::GET, Some("bytes=10-49")).await;
        assert_eq!(
            (length, body.unwrap()),
            (40, Bytes::from(file[10..50].to_vec()))
        );
        // Open-ended, past the end, beyond the end, and the largest end there is.
        let (length, body) = get(&node, Method::GET, Some("bytes=95-")).await;
        assert_eq!(
            (length, body.unwrap()),
            (5, Bytes::from(file[95..].to_vec()))
        );
        let (length, body) = get(&node, Method::GET, Some("bytes=90-200")).await;
        assert_eq!(
            (length, body.unwrap()),
            (10, Bytes::from(file[90..].to_vec()))
        );
        let (length, body) = get(&node, Method::GET, Some("bytes=150-200")).await;
        assert_eq!((length, body.unwrap()), (0, Bytes::new()));
        let (length, body) = get(&node, Method::GET, Some("bytes=0-18446744073709551615")).await;
        assert_eq!((length, body.unwrap()), (100, Bytes::from(file)));
    }

    #[tokio::test]
    async fn a_growing_file_is_served_at_its_first_size() {
        let node = FakeNode::new(content(100), 30);
        *node.then.lock().unwrap() = Some(content(1000));
        let (length, body) = get(&node, Method::GET, None).await;
        assert_eq!((length, body.unwrap()), (100, Bytes::from(content(100))));
    }

    #[tokio::test]
    async fn a_shrinking_file_ends_the_body_with_an_error() {
        let node = FakeNode::new(content(100), 30);
        *node.then.lock().unwrap() = Some(content(50));
        let (length, body) = get(&node, Method::GET, None).await;
        assert_eq!(length, 100);
        assert!(body.unwrap_err().contains("shrank"));

        // Deleted while read.
        let node = FakeNode::new(content(100), 30);
        let (length, _) = get(&node, Method::HEAD, None).await;
        assert_eq!(length, 100);
        *node.then.lock().unwrap() = Some(Vec::new());
        let (_, body) = get(&node, Method::GET, Some("bytes=10-")).await;
        assert!(body.is_err());
    }

    #[test]
    fn missing_file_is_404() {
        let node = FakeNode::new(content(10), 30);
        let files: Arc<dyn NodeAgents> = node;
        let target = FileTarget {
            files: &files,
            pool: "p".into(),
            node: "n".into(),
            base: "base".into(),
            url: "http://localhost/files".into(),
            unavailable: ErrorCode::NodeStateUnusable,
        };
        let err = target.one(&request(Method::GET, None), "g").unwrap_err();
        assert_eq!(err.code, ErrorCode::FileNotFound);
    }
}
