//! The JSON endpoints of the Batch pages: pools and their nodes, jobs, tasks, and task and
//! node files (byte ranges, for live output). Every read runs on a blocking thread.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use base64::Engine as _;
use cobalt_batch::{PageRequest, StateCount, TaskCounts};
use cobalt_model::batch::{Node, Task, TaskState};
use cobalt_proto::{FileOp, FileOutcome};
use http::{HeaderValue, StatusCode, header};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::error::{UiError, UiResult};
use crate::{Principal, Ui};

/// Most items in one page of a list.
pub(crate) const MAX_PAGE: usize = 1000;
/// Items in a page when the page does not say.
const DEFAULT_PAGE: usize = 100;
/// Most task runs a job timeline shows, per state (running, completed).
pub(crate) const TIMELINE_CAP: usize = 2000;
/// Most bytes of a file one read returns.
const MAX_READ: u64 = 1 << 20;

/// A JSON response that is never cached.
pub(crate) fn json<T: Serialize + ?Sized>(value: &T) -> UiResult<Response> {
    let body = serde_json::to_vec(value).map_err(UiError::internal)?;
    Response::builder()
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CACHE_CONTROL, "no-store")
        .body(Body::from(body))
        .map_err(UiError::internal)
}

/// Runs `f` on a blocking thread.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> UiResult<T> + Send + 'static,
) -> UiResult<T> {
    tokio::task::spawn_blocking(f).await?
}

fn to_value<T: Serialize>(v: &T) -> UiResult<Value> {
    serde_json::to_value(v).map_err(UiError::internal)
}

fn counts_by_state(counts: &[StateCount]) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for c in counts {
        *out.entry(c.state.clone()).or_insert(0) += c.count;
    }
    out
}

fn task_counts_json(c: &TaskCounts) -> Value {
    json!({"active": c.active, "running": c.running, "completed": c.completed,
           "succeeded": c.succeeded, "failed": c.failed})
}

/// Which page of a list (`?after=&limit=`).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct PageQuery {
    after: Option<String>,
    limit: Option<usize>,
    state: Option<String>,
    prefix: Option<String>,
}

impl PageQuery {
    fn request(&self) -> PageRequest {
        PageRequest {
            after: self.after.clone().filter(|a| !a.is_empty()),
            limit: self.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE),
            state: None,
        }
    }
}

/// `GET /ui/api/pools`: every pool with its node counts by state.
pub(crate) async fn list_pools(State(ui): State<Arc<Ui>>, p: Principal) -> UiResult<Response> {
    let items = blocking(move || {
        let batch = &ui.config.batch;
        let mut items = Vec::new();
        for pool in batch.all_pools(&p.batch)? {
            let counts = batch.node_counts(&p.batch, &pool.spec.id)?;
            let mut v = to_value(&pool)?;
            v["nodeCounts"] = to_value(&counts_by_state(&counts))?;
            items.push(v);
        }
        Ok(items)
    })
    .await?;
    json(&json!({ "items": items }))
}

/// `GET /ui/api/pools/{pool}`: the pool with its node counts.
pub(crate) async fn get_pool(
    State(ui): State<Arc<Ui>>,
    p: Principal,
    Path(pool): Path<String>,
) -> UiResult<Response> {
    let v = blocking(move || {
        let batch = &ui.config.batch;
        let found = batch.get_pool(&p.batch, &pool, &Default::default())?;
        let mut v = to_value(&found)?;
        v["nodeCounts"] = to_value(&counts_by_state(&batch.node_counts(&p.batch, &pool)?))?;
        Ok(v)
    })
    .await?;
    json(&v)
}

/// One cell of the heat map.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct NodeCell {
    id: String,
    state: &'static str,
    /// Task slots in use.
    slots: i64,
    /// Tasks running.
    tasks: i64,
    /// The start task's state and result (`running`, `completed/success`…), if it ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    start_task: Option<String>,
    dedicated: bool,
}

impl NodeCell {
    pub(crate) fn of(n: &Node) -> Self {
        let start_task = n.start_task_info.as_ref().map(|s| {
            let state = match s.state {
                cobalt_model::batch::StartTaskState::Running => "running",
                cobalt_model::batch::StartTaskState::Completed => "completed",
            };
            match s.result {
                Some(r) => format!("{state}/{}", r.as_str()),
                None => state.to_owned(),
            }
        });
        Self {
            id: n.id.clone(),
            state: n.state.as_str(),
            slots: n.running_task_slots_count,
            tasks: n.running_tasks_count,
            start_task,
            dedicated: n.is_dedicated,
        }
    }
}

/// `GET /ui/api/pools/{pool}/nodes`: one compact record per node (the heat map's input).
pub(crate) async fn list_nodes(
    State(ui): State<Arc<Ui>>,
    p: Principal,
    Path(pool): Path<String>,
) -> UiResult<Response> {
    let v = blocking(move || {
        let batch = &ui.config.batch;
        let found = batch.get_pool(&p.batch, &pool, &Default::default())?;
        let nodes: Vec<NodeCell> = batch
            .pool_nodes(&p.batch, &pool)?
            .iter()
            .map(NodeCell::of)
            .collect();
        Ok(json!({"taskSlotsPerNode": found.task_slots_per_node(), "nodes": nodes}))
    })
    .await?;
    json(&v)
}

/// `GET /ui/api/pools/{pool}/nodes/{node}`: the node as the service keeps it.
pub(crate) async fn get_node(
    State(ui): State<Arc<Ui>>,
    p: Principal,
    Path((pool, node)): Path<(String, String)>,
) -> UiResult<Response> {
    let v = blocking(move || {
        let batch = &ui.config.batch;
        let found = batch.get_pool(&p.batch, &pool, &Default::default())?;
        let mut v = to_value(&batch.get_node(&p.batch, &pool, &node)?)?;
        v["poolId"] = json!(found.spec.id);
        v["taskSlotsPerNode"] = json!(found.task_slots_per_node());
        Ok(v)
    })
    .await?;
    json(&v)
}

/// A byte range of a file (`?offset=&length=`).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RangeQuery {
    offset: Option<u64>,
    length: Option<u64>,
}

/// Validates a path relative to a node or task directory.
pub(crate) fn relative_path(path: &str) -> UiResult<&str> {
    let path = path.trim_start_matches('/');
    if path.is_empty() || path.split('/').any(|s| s == ".." || s == ".") || path.contains('\\') {
        return Err(UiError::BadRequest(format!("Invalid file path {path:?}.")));
    }
    Ok(path)
}

/// Asks the node for `op` on `path` (relative to its root).
fn node_file_op(
    ui: &Ui,
    account: &str,
    pool: &str,
    node: &str,
    path: &str,
    op: FileOp,
) -> UiResult<FileOutcome> {
    let files = ui.config.files.as_ref().ok_or_else(|| {
        UiError::Unavailable("Node files are not available on this server.".into())
    })?;
    match files.file(account, pool, node, path, op) {
        None => Err(UiError::Unavailable(
            "The node holding the file is not connected.".into(),
        )),
        Some(FileOutcome::NotFound) => Err(UiError::NotFound(format!("No file {path}."))),
        Some(FileOutcome::Failed { message }) => Err(UiError::internal(message)),
        Some(other) => Ok(other),
    }
}

/// Reads a range of a node file: the bytes, with the file's whole size in
/// `x-cobalt-file-size` (a live view asks again from where it stopped).
fn read_range(
    ui: &Ui,
    account: &str,
    pool: &str,
    node: &str,
    path: &str,
    range: &RangeQuery,
) -> UiResult<Response> {
    let offset = range.offset.unwrap_or(0);
    let length = range.length.unwrap_or(MAX_READ).min(MAX_READ);
    let outcome = node_file_op(
        ui,
        account,
        pool,
        node,
        path,
        FileOp::Read {
            offset,
            length: Some(length),
        },
    )?;
    let FileOutcome::Data { entry, data } = outcome else {
        return Err(UiError::BadRequest(format!("{path} is not a file.")));
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data)
        .map_err(UiError::internal)?;
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::CACHE_CONTROL, "no-store")
        .header("x-cobalt-file-size", HeaderValue::from(entry.size))
        .header("x-cobalt-offset", HeaderValue::from(offset))
        .body(Body::from(bytes))
        .map_err(UiError::internal)
}

/// `GET /ui/api/pools/{pool}/nodes/{node}/files/{path}?offset=&length=`: a range of a file
/// under the node root (`startup/stdout.txt` is the start task's output).
pub(crate) async fn node_file(
    State(ui): State<Arc<Ui>>,
    p: Principal,
    Path((pool, node, path)): Path<(String, String, String)>,
    Query(range): Query<RangeQuery>,
) -> UiResult<Response> {
    blocking(move || {
        let path = relative_path(&path)?;
        ui.config.batch.get_node(&p.batch, &pool, &node)?;
        read_range(&ui, &p.batch, &pool, &node, path, &range)
    })
    .await
}

/// `GET /ui/api/jobs?after=&limit=`: a page of jobs, each with its task counts.
pub(crate) async fn list_jobs(
    State(ui): State<Arc<Ui>>,
    p: Principal,
    Query(q): Query<PageQuery>,
) -> UiResult<Response> {
    let v = blocking(move || {
        let batch = &ui.config.batch;
        let page = batch.list_jobs(&p.batch, &q.request(), |job| Ok(Some(job)))?;
        let mut items = Vec::new();
        for job in page.items {
            let mut v = to_value(&job)?;
            let (tasks, _) = batch.task_counts(&p.batch, &job.id)?;
            v["taskCounts"] = task_counts_json(&tasks);
            items.push(v);
        }
        Ok(json!({"items": items, "next": page.next}))
    })
    .await?;
    json(&v)
}

/// `GET /ui/api/jobs/{job}`: the job with its task and slot counts.
pub(crate) async fn get_job(
    State(ui): State<Arc<Ui>>,
    p: Principal,
    Path(job): Path<String>,
) -> UiResult<Response> {
    let v = blocking(move || {
        let batch = &ui.config.batch;
        let found = batch.get_job(&p.batch, &job, &Default::default())?;
        let (tasks, slots) = batch.task_counts(&p.batch, &job)?;
        let mut v = to_value(&found)?;
        v["taskCounts"] = task_counts_json(&tasks);
        v["taskSlotCounts"] = task_counts_json(&slots);
        Ok(v)
    })
    .await?;
    json(&v)
}

/// A row of the task list.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TaskRow {
    id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    display_name: Option<String>,
    state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    exit_code: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    node_id: Option<String>,
    /// Unix milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    start: Option<i64>,
    /// Unix milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    end: Option<i64>,
    retry_count: i32,
}

impl TaskRow {
    pub(crate) fn of(t: &Task) -> Self {
        let info = &t.execution_info;
        Self {
            id: t.spec.id.clone(),
            display_name: t.spec.display_name.clone(),
            state: t.state.as_str(),
            exit_code: info.exit_code,
            result: info.result.map(|r| r.as_str()),
            node_id: t.node_info.as_ref().and_then(|n| n.node_id.clone()),
            start: info.start_time.map(|s| s.0.timestamp_millis()),
            end: info.end_time.map(|s| s.0.timestamp_millis()),
            retry_count: info.retry_count,
        }
    }
}

/// Checks a task state filter.
pub(crate) fn task_state(state: Option<&str>) -> UiResult<Option<String>> {
    match state.filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(s @ ("active" | "preparing" | "running" | "completed")) => Ok(Some(s.to_owned())),
        Some(other) => Err(UiError::BadRequest(format!(
            "Unknown task state {other:?}: use active, preparing, running or completed."
        ))),
    }
}

/// `GET /ui/api/jobs/{job}/tasks?state=&prefix=&after=&limit=`: a keyset page of tasks.
pub(crate) async fn list_tasks(
    State(ui): State<Arc<Ui>>,
    p: Principal,
    Path(job): Path<String>,
    Query(q): Query<PageQuery>,
) -> UiResult<Response> {
    let mut page = q.request();
    page.state = task_state(q.state.as_deref())?;
    let prefix = q.prefix.unwrap_or_default();
    let v = blocking(move || {
        let found = ui
            .config
            .batch
            .list_tasks_with_prefix(&p.batch, &job, &prefix, &page)?;
        let items: Vec<TaskRow> = found.items.iter().map(TaskRow::of).collect();
        Ok(json!({"items": items, "next": found.next}))
    })
    .await?;
    json(&v)
}

/// `GET /ui/api/jobs/{job}/timeline`: the runs of the job's running and completed tasks
/// (at most [`TIMELINE_CAP`] of each), for the timeline by node.
pub(crate) async fn timeline(
    State(ui): State<Arc<Ui>>,
    p: Principal,
    Path(job): Path<String>,
) -> UiResult<Response> {
    let v = blocking(move || {
        let batch = &ui.config.batch;
        let mut items = Vec::new();
        let mut truncated = false;
        for state in [TaskState::Running, TaskState::Completed] {
            let mut page = PageRequest {
                after: None,
                limit: MAX_PAGE,
                state: Some(state.as_str().to_owned()),
            };
            let mut taken = 0;
            loop {
                let found = batch.list_tasks(&p.batch, &job, &page, |t| {
                    Ok(t.execution_info
                        .start_time
                        .is_some()
                        .then(|| TaskRow::of(&t)))
                })?;
                taken += found.items.len();
                items.extend(found.items);
                match found.next {
                    Some(next) if taken < TIMELINE_CAP => page.after = Some(next),
                    Some(_) => {
                        truncated = true;
                        break;
                    }
                    None => break,
                }
            }
        }
        Ok(json!({"items": items, "truncated": truncated}))
    })
    .await?;
    json(&v)
}

/// `GET /ui/api/jobs/{job}/tasks/{task}`: the task as the service keeps it.
pub(crate) async fn get_task(
    State(ui): State<Arc<Ui>>,
    p: Principal,
    Path((job, task)): Path<(String, String)>,
) -> UiResult<Response> {
    let v = blocking(move || {
        let found = ui
            .config
            .batch
            .get_task(&p.batch, &job, &task, &Default::default())?;
        to_value(&found)
    })
    .await?;
    json(&v)
}

/// Where a task's files are: (pool, node, task directory).
fn task_home(ui: &Ui, account: &str, job: &str, task: &str) -> UiResult<(String, String, String)> {
    let t = ui
        .config
        .batch
        .get_task(account, job, task, &Default::default())?;
    let info = t.node_info.as_ref();
    match (
        info.and_then(|i| i.pool_id.clone()),
        info.and_then(|i| i.node_id.clone()),
        info.and_then(|i| i.task_root_directory.clone()),
    ) {
        (Some(pool), Some(node), Some(dir)) => Ok((pool, node, dir)),
        _ => Err(UiError::NotFound(
            "The task has not run on a node, so it has no files.".into(),
        )),
    }
}

/// `GET /ui/api/jobs/{job}/tasks/{task}/files`: the files of the task directory.
pub(crate) async fn task_files(
    State(ui): State<Arc<Ui>>,
    p: Principal,
    Path((job, task)): Path<(String, String)>,
) -> UiResult<Response> {
    let v = blocking(move || {
        let (pool, node, dir) = task_home(&ui, &p.batch, &job, &task)?;
        let outcome = node_file_op(
            &ui,
            &p.batch,
            &pool,
            &node,
            &dir,
            FileOp::List { recursive: true },
        )?;
        let FileOutcome::Listing { entries } = outcome else {
            return Err(UiError::internal("a listing answered with something else"));
        };
        to_value(&json!({ "items": entries }))
    })
    .await?;
    json(&v)
}

/// `GET /ui/api/jobs/{job}/tasks/{task}/files/{path}?offset=&length=`: a range of a file of
/// the task directory (`stdout.txt`, `stderr.txt`, `wd/…`).
pub(crate) async fn task_file(
    State(ui): State<Arc<Ui>>,
    p: Principal,
    Path((job, task, path)): Path<(String, String, String)>,
    Query(range): Query<RangeQuery>,
) -> UiResult<Response> {
    blocking(move || {
        let path = relative_path(&path)?;
        let (pool, node, dir) = task_home(&ui, &p.batch, &job, &task)?;
        read_range(
            &ui,
            &p.batch,
            &pool,
            &node,
            &format!("{dir}/{path}"),
            &range,
        )
    })
    .await
}
