//! Task and node files, served from the node the task ran on (through its agent): list
//! (recursive), get (with `ocp-range`), properties (HEAD) and delete.

use std::sync::Arc;

use axum::body::Body;
use axum::response::Response;
use base64::Engine as _;
use cobalt_model::batch::{NodeAction, NodeActionError};
use cobalt_proto::{FileEntry, FileOp, FileOutcome};
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
                self.bytes(&entry, path, None)
            }
            _ => {
                let (offset, length) = range(req)?;
                let FileOutcome::Data { entry, data } =
                    self.call(req, path, FileOp::Read { offset, length })?
                else {
                    return Err(BatchError::new(ErrorCode::InternalError));
                };
                self.conditions(req, &entry)?;
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(data)
                    .map_err(|_| BatchError::new(ErrorCode::InternalError))?;
                self.bytes(&entry, path, Some(bytes))
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

    fn bytes(&self, entry: &FileEntry, path: &str, body: Option<Vec<u8>>) -> BatchResult<Response> {
        let length = body.as_ref().map_or(entry.size, |b| b.len() as u64);
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
            .body(body.map_or_else(Body::empty, Body::from))
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
        Some(end) => Ok((start, Some(end - start + 1))),
        None => Ok((start, None)),
    }
}
