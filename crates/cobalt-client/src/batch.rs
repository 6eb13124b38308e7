//! The Batch service: pools, compute nodes, jobs, tasks and their files, over api-version
//! [`BATCH_API_VERSION`] with SharedKey authentication.
//!
//! Entities are `cobalt_model::batch` types, which follow the current api-version's schema:
//! a `*Spec` is what you send, the entity (`Pool`, `Job`, `Task`, `Node`) what comes back.
//!
//! ```no_run
//! # async fn demo() -> cobalt_client::Result<()> {
//! use cobalt_client::batch::{BatchClient, ListOptions};
//! use cobalt_client::SharedKeyCredential;
//! use futures_util::TryStreamExt;
//!
//! let credential = SharedKeyCredential::new("devbatchaccount1", cobalt_model::DEV_ACCOUNT_KEY)?;
//! let batch = BatchClient::new("http://127.0.0.1:10100", credential)?;
//! let completed = ListOptions::default().filter("state eq 'completed'");
//! let tasks: Vec<_> = batch.list_tasks("job1", &completed).try_collect().await?;
//! # Ok(()) }
//! ```

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
use cobalt_model::batch::{ImageReference, Job, JobSpec, Node, Pool, PoolSpec, Task, TaskSpec};
use futures_util::stream::{self, BoxStream, StreamExt};
use percent_encoding::utf8_percent_encode;
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Method, Request, Response, Url};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::auth::{QUERY_VALUE, SharedKeyCredential};
use crate::error::{Error, Result, ServiceError, TaskAddFailure};
use crate::pipeline::{ClientOptions, Pipeline, paged};

/// The api-version this client speaks.
pub const BATCH_API_VERSION: &str = "2024-07-01.20.0";

/// The URL of a Cobalt server's Batch service on its default port.
pub const DEV_BATCH_URL: &str = "http://127.0.0.1:10100";

/// Tasks per add-collection request (the service's limit).
const TASKS_PER_REQUEST: usize = 100;

/// Options of a list call: OData `$filter`, `$select`, `$expand` and the page size.
#[derive(Clone, Debug, Default)]
pub struct ListOptions {
    /// `$filter`, e.g. `state eq 'active'`.
    pub filter: Option<String>,
    /// `$select`. Leave it out for typed lists: they need the entity's required properties.
    pub select: Option<String>,
    /// `$expand`, e.g. `stats`.
    pub expand: Option<String>,
    /// Items per page (1..=1000; the service's default is 1000).
    pub max_results: Option<u32>,
}

impl ListOptions {
    /// With `$filter`.
    pub fn filter(mut self, filter: impl Into<String>) -> Self {
        self.filter = Some(filter.into());
        self
    }

    /// With a page size.
    pub fn max_results(mut self, n: u32) -> Self {
        self.max_results = Some(n);
        self
    }

    fn query(&self) -> Vec<(&'static str, String)> {
        let mut query = Vec::new();
        for (name, value) in [
            ("$filter", &self.filter),
            ("$select", &self.select),
            ("$expand", &self.expand),
        ] {
            if let Some(value) = value {
                query.push((name, value.clone()));
            }
        }
        if let Some(n) = self.max_results {
            query.push(("maxresults", n.to_string()));
        }
        query
    }
}

/// Task counts of a job.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskCounts {
    /// Active (queued) tasks.
    pub active: i64,
    /// Running (or preparing) tasks.
    pub running: i64,
    /// Completed tasks.
    pub completed: i64,
    /// Completed tasks that succeeded.
    pub succeeded: i64,
    /// Completed tasks that failed.
    pub failed: i64,
}

/// A file or directory on a node.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeFile {
    /// Its path, relative to the task directory or the node root.
    pub name: String,
    /// Its URL.
    #[serde(default)]
    pub url: Option<String>,
    /// Whether it is a directory.
    #[serde(default)]
    pub is_directory: bool,
    /// Size and times.
    #[serde(default)]
    pub properties: Option<FileProperties>,
}

/// A node file's properties.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FileProperties {
    /// Its size in bytes.
    #[serde(default)]
    pub content_length: u64,
    /// When it was created.
    #[serde(default)]
    pub creation_time: Option<String>,
    /// When it last changed.
    #[serde(default)]
    pub last_modified: Option<String>,
    /// Its content type.
    #[serde(default)]
    pub content_type: Option<String>,
    /// Its mode, e.g. `0100644`.
    #[serde(default)]
    pub file_mode: Option<String>,
}

/// An image the pools can use, with the node agent SKU that goes with it.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageInformation {
    /// The node agent SKU, e.g. `batch.node.ubuntu 22.04`.
    #[serde(rename = "nodeAgentSKUId")]
    pub node_agent_sku_id: String,
    /// The image.
    pub image_reference: ImageReference,
    /// `linux` or `windows`.
    #[serde(default)]
    pub os_type: Option<String>,
    /// `verified` or `unverified`.
    #[serde(default)]
    pub verification_type: Option<String>,
}

/// What to do with running tasks when nodes leave a pool.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum NodeDeallocation {
    /// Stop them and queue them again (Azure's default).
    #[default]
    Requeue,
    /// Stop them; they complete as failed.
    Terminate,
    /// Let them finish first.
    TaskCompletion,
    /// Let them finish and keep their data until it expires.
    RetainedData,
}

impl NodeDeallocation {
    fn as_str(self) -> &'static str {
        match self {
            Self::Requeue => "requeue",
            Self::Terminate => "terminate",
            Self::TaskCompletion => "taskcompletion",
            Self::RetainedData => "retaineddata",
        }
    }
}

#[derive(Debug)]
struct Inner {
    pipeline: Pipeline,
    base: Url,
    credential: SharedKeyCredential,
}

/// A client for one Batch account.
#[derive(Clone, Debug)]
pub struct BatchClient {
    inner: Arc<Inner>,
}

impl BatchClient {
    /// A client for the Batch account at `url` (e.g. `http://127.0.0.1:10100` or
    /// `https://acct.region.batch.azure.com`), signing with `credential`.
    pub fn new(url: &str, credential: SharedKeyCredential) -> Result<Self> {
        Self::with_options(url, credential, &ClientOptions::default())
    }

    /// As [`new`](Self::new), with options.
    pub fn with_options(
        url: &str,
        credential: SharedKeyCredential,
        options: &ClientOptions,
    ) -> Result<Self> {
        let base = Url::parse(url.trim_end_matches('/'))
            .map_err(|e| Error::invalid(format!("Batch URL {url:?}: {e}")))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(Error::invalid(format!(
                "Batch URL {url:?} must be http:// or https://"
            )));
        }
        Ok(Self {
            inner: Arc::new(Inner {
                pipeline: Pipeline::new(options)?,
                base,
                credential,
            }),
        })
    }

    /// The account's URL.
    pub fn url(&self) -> &Url {
        &self.inner.base
    }

    /// The account name.
    pub fn account(&self) -> &str {
        self.inner.credential.account()
    }

    // ---- pools ----

    /// Creates a pool (`PoolExists` if its id is taken).
    pub async fn add_pool(&self, pool: &PoolSpec) -> Result<()> {
        self.inner.post(&["pools"], &[], Some(json(pool)?)).await
    }

    /// A pool.
    pub async fn get_pool(&self, pool_id: &str) -> Result<Pool> {
        self.inner.get(&["pools", pool_id], &[]).await
    }

    /// Whether a pool exists.
    pub async fn pool_exists(&self, pool_id: &str) -> Result<bool> {
        exists(
            self.inner
                .call(Method::HEAD, &["pools", pool_id], &[], None)
                .await,
        )
    }

    /// The account's pools.
    pub fn list_pools(&self, options: &ListOptions) -> BoxStream<'static, Result<Pool>> {
        self.inner.list(&["pools"], options)
    }

    /// Starts deleting a pool: it goes to `deleting`, its nodes leave, then it is gone.
    pub async fn delete_pool(&self, pool_id: &str) -> Result<()> {
        self.inner.delete(&["pools", pool_id], &[]).await
    }

    /// Resizes a pool to `dedicated` nodes (and `low_priority` spot nodes).
    pub async fn resize_pool(
        &self,
        pool_id: &str,
        dedicated: i32,
        low_priority: i32,
        deallocation: NodeDeallocation,
    ) -> Result<()> {
        let body = json!({
            "targetDedicatedNodes": dedicated,
            "targetLowPriorityNodes": low_priority,
            "nodeDeallocationOption": deallocation.as_str(),
        });
        self.inner
            .post(&["pools", pool_id, "resize"], &[], Some(body))
            .await
    }

    // ---- nodes ----

    /// A pool's compute nodes.
    pub fn list_nodes(
        &self,
        pool_id: &str,
        options: &ListOptions,
    ) -> BoxStream<'static, Result<Node>> {
        self.inner.list(&["pools", pool_id, "nodes"], options)
    }

    /// A compute node.
    pub async fn get_node(&self, pool_id: &str, node_id: &str) -> Result<Node> {
        self.inner
            .get(&["pools", pool_id, "nodes", node_id], &[])
            .await
    }

    /// Restarts a node's agent; its start task runs again. Running tasks are requeued.
    pub async fn reboot_node(&self, pool_id: &str, node_id: &str) -> Result<()> {
        let body = json!({"nodeRebootOption": "requeue"});
        self.inner
            .post(
                &["pools", pool_id, "nodes", node_id, "reboot"],
                &[],
                Some(body),
            )
            .await
    }

    /// Removes nodes from a pool (its target shrinks by as many).
    pub async fn remove_nodes(
        &self,
        pool_id: &str,
        node_ids: &[&str],
        deallocation: NodeDeallocation,
    ) -> Result<()> {
        let body = json!({"nodeList": node_ids, "nodeDeallocationOption": deallocation.as_str()});
        self.inner
            .post(&["pools", pool_id, "removenodes"], &[], Some(body))
            .await
    }

    /// The files under a node's root (`recursive` walks directories).
    pub fn list_node_files(
        &self,
        pool_id: &str,
        node_id: &str,
        recursive: bool,
    ) -> BoxStream<'static, Result<NodeFile>> {
        let options = recursive_option(recursive);
        self.inner
            .list_with(&["pools", pool_id, "nodes", node_id, "files"], &options)
    }

    /// A node file's content, or `range` (`start..end`, end exclusive) of it.
    pub async fn get_node_file(
        &self,
        pool_id: &str,
        node_id: &str,
        path: &str,
        range: Option<std::ops::Range<u64>>,
    ) -> Result<Bytes> {
        self.inner
            .file(&["pools", pool_id, "nodes", node_id, "files", path], range)
            .await
    }

    // ---- jobs ----

    /// Creates job `job_id` (`JobExists` if the id is taken).
    pub async fn add_job(&self, job_id: &str, job: &JobSpec) -> Result<()> {
        let mut body = json(job)?;
        if let Value::Object(map) = &mut body {
            map.insert("id".to_owned(), Value::String(job_id.to_owned()));
        }
        self.inner.post(&["jobs"], &[], Some(body)).await
    }

    /// A job.
    pub async fn get_job(&self, job_id: &str) -> Result<Job> {
        self.inner.get(&["jobs", job_id], &[]).await
    }

    /// The account's jobs.
    pub fn list_jobs(&self, options: &ListOptions) -> BoxStream<'static, Result<Job>> {
        self.inner.list(&["jobs"], options)
    }

    /// Starts deleting a job: running tasks are stopped, then the job and its tasks are gone.
    pub async fn delete_job(&self, job_id: &str) -> Result<()> {
        self.inner.delete(&["jobs", job_id], &[]).await
    }

    /// Terminates a job: running tasks are stopped, the job completes.
    pub async fn terminate_job(&self, job_id: &str, reason: Option<&str>) -> Result<()> {
        let body = reason.map(|r| json!({"terminateReason": r}));
        self.inner
            .post(&["jobs", job_id, "terminate"], &[], body)
            .await
    }

    /// A job's task counts.
    pub async fn task_counts(&self, job_id: &str) -> Result<TaskCounts> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Result_ {
            task_counts: TaskCounts,
        }
        let result: Result_ = self.inner.get(&["jobs", job_id, "taskcounts"], &[]).await?;
        Ok(result.task_counts)
    }

    // ---- tasks ----

    /// Adds one task (`TaskExists` if its id is taken).
    pub async fn add_task(&self, job_id: &str, task: &TaskSpec) -> Result<()> {
        self.inner
            .post(&["jobs", job_id, "tasks"], &[], Some(json(task)?))
            .await
    }

    /// Adds many tasks: in requests of 100, four at a time. A task that already exists counts
    /// as added (so the call can be repeated after a failure); a server error on a task is
    /// retried. Returns [`Error::TasksNotAdded`] with every task the service refused.
    pub async fn add_tasks(&self, job_id: &str, tasks: &[TaskSpec]) -> Result<()> {
        const ROUNDS: usize = 8;
        let mut pending: VecDeque<Vec<TaskSpec>> = tasks
            .chunks(TASKS_PER_REQUEST)
            .map(<[TaskSpec]>::to_vec)
            .collect();
        let mut failures = Vec::new();
        for round in 0..ROUNDS {
            if pending.is_empty() {
                break;
            }
            let chunks: Vec<Vec<TaskSpec>> = pending.drain(..).collect();
            let outcomes: Vec<Result<ChunkOutcome>> = stream::iter(chunks)
                .map(|chunk| self.add_chunk(job_id, chunk))
                .buffer_unordered(4)
                .collect()
                .await;
            let mut retry = Vec::new();
            for outcome in outcomes {
                let outcome = outcome?;
                failures.extend(outcome.failed);
                retry.extend(outcome.retry);
                pending.extend(outcome.split);
            }
            if !retry.is_empty() {
                if round + 1 == ROUNDS {
                    failures.extend(retry.into_iter().map(|(task, error)| TaskAddFailure {
                        task_id: task.id,
                        error,
                    }));
                } else {
                    pending.extend(
                        retry
                            .chunks(TASKS_PER_REQUEST)
                            .map(|c| c.iter().map(|(task, _)| task.clone()).collect::<Vec<_>>()),
                    );
                    tokio::time::sleep(std::time::Duration::from_millis(200 << round)).await;
                }
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(Error::TasksNotAdded(failures))
        }
    }

    async fn add_chunk(&self, job_id: &str, chunk: Vec<TaskSpec>) -> Result<ChunkOutcome> {
        let body = json!({"value": chunk});
        let response = self
            .inner
            .call(
                Method::POST,
                &["jobs", job_id, "addtaskcollection"],
                &[],
                Some(body),
            )
            .await;
        let mut outcome = ChunkOutcome::default();
        let response = match response {
            Err(e) if e.code() == Some("RequestBodyTooLarge") && chunk.len() > 1 => {
                let mut first = chunk;
                let second = first.split_off(first.len() / 2);
                outcome.split = vec![first, second];
                return Ok(outcome);
            }
            other => other?,
        };
        #[derive(Deserialize)]
        struct Results {
            value: Vec<AddResult>,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct AddResult {
            status: String,
            task_id: String,
            #[serde(default)]
            error: Option<ErrorBody>,
        }
        let results: Results = read_json(response).await?;
        let mut by_id: std::collections::HashMap<String, TaskSpec> =
            chunk.into_iter().map(|t| (t.id.clone(), t)).collect();
        for result in results.value {
            let error = result
                .error
                .map(|e| e.into_service_error(400, None))
                .unwrap_or_else(|| ServiceError {
                    status: 500,
                    code: String::new(),
                    message: format!("status {}", result.status),
                    details: Vec::new(),
                    request_id: None,
                });
            match result.status.as_str() {
                "success" => {}
                "clienterror" if error.code == "TaskExists" => {}
                "servererror" => {
                    if let Some(task) = by_id.remove(&result.task_id) {
                        outcome.retry.push((task, error));
                    }
                }
                _ => outcome.failed.push(TaskAddFailure {
                    task_id: result.task_id,
                    error,
                }),
            }
        }
        Ok(outcome)
    }

    /// A task.
    pub async fn get_task(&self, job_id: &str, task_id: &str) -> Result<Task> {
        self.inner
            .get(&["jobs", job_id, "tasks", task_id], &[])
            .await
    }

    /// A job's tasks.
    pub fn list_tasks(
        &self,
        job_id: &str,
        options: &ListOptions,
    ) -> BoxStream<'static, Result<Task>> {
        self.inner.list(&["jobs", job_id, "tasks"], options)
    }

    /// Deletes a task (stopping it if it runs).
    pub async fn delete_task(&self, job_id: &str, task_id: &str) -> Result<()> {
        self.inner
            .delete(&["jobs", job_id, "tasks", task_id], &[])
            .await
    }

    /// Terminates a task: it is stopped and completes.
    pub async fn terminate_task(&self, job_id: &str, task_id: &str) -> Result<()> {
        self.inner
            .post(&["jobs", job_id, "tasks", task_id, "terminate"], &[], None)
            .await
    }

    /// The files of a task's directory on its node (`recursive` walks `wd/`).
    pub fn list_task_files(
        &self,
        job_id: &str,
        task_id: &str,
        recursive: bool,
    ) -> BoxStream<'static, Result<NodeFile>> {
        let options = recursive_option(recursive);
        self.inner
            .list_with(&["jobs", job_id, "tasks", task_id, "files"], &options)
    }

    /// A task file's content (e.g. `stdout.txt`, `wd/out.txt`), or `range` (`start..end`, end
    /// exclusive) of it: what `task logs --follow` polls.
    pub async fn get_task_file(
        &self,
        job_id: &str,
        task_id: &str,
        path: &str,
        range: Option<std::ops::Range<u64>>,
    ) -> Result<Bytes> {
        self.inner
            .file(&["jobs", job_id, "tasks", task_id, "files", path], range)
            .await
    }

    /// A task file's size in bytes (a HEAD request).
    pub async fn task_file_size(&self, job_id: &str, task_id: &str, path: &str) -> Result<u64> {
        let response = self
            .inner
            .call(
                Method::HEAD,
                &["jobs", job_id, "tasks", task_id, "files", path],
                &[],
                None,
            )
            .await?;
        Ok(response
            .headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0))
    }

    // ---- account ----

    /// The images (and node agent SKUs) pools can use.
    pub fn list_supported_images(&self) -> BoxStream<'static, Result<ImageInformation>> {
        self.inner
            .list(&["supportedimages"], &ListOptions::default())
    }
}

#[derive(Default)]
struct ChunkOutcome {
    failed: Vec<TaskAddFailure>,
    retry: Vec<(TaskSpec, ServiceError)>,
    split: Vec<Vec<TaskSpec>>,
}

fn recursive_option(recursive: bool) -> Vec<(&'static str, String)> {
    if recursive {
        vec![("recursive", "true".to_owned())]
    } else {
        Vec::new()
    }
}

fn json(value: &impl Serialize) -> Result<Value> {
    serde_json::to_value(value).map_err(|e| Error::invalid(format!("cannot serialize: {e}")))
}

fn exists(response: Result<Response>) -> Result<bool> {
    match response {
        Ok(_) => Ok(true),
        Err(e) if e.is_not_found() => Ok(false),
        Err(e) => Err(e),
    }
}

async fn read_json<T: DeserializeOwned>(response: Response) -> Result<T> {
    let url = response.url().clone();
    let bytes = response
        .bytes()
        .await
        .map_err(|e| Error::transport(&url, e))?;
    serde_json::from_slice(&bytes).map_err(|e| Error::decode(&url, e))
}

/// A Batch error body: `{"code", "message": {"lang", "value"}, "values": [{"key", "value"}]}`.
#[derive(Debug, Default, Deserialize)]
struct ErrorBody {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: Option<ErrorMessage>,
    #[serde(default)]
    values: Vec<ErrorValue>,
}

#[derive(Debug, Default, Deserialize)]
struct ErrorMessage {
    #[serde(default)]
    value: String,
}

#[derive(Debug, Default, Deserialize)]
struct ErrorValue {
    #[serde(default)]
    key: String,
    #[serde(default)]
    value: String,
}

impl ErrorBody {
    fn into_service_error(self, status: u16, request_id: Option<String>) -> ServiceError {
        let message = self
            .message
            .map(|m| m.value.lines().next().unwrap_or_default().to_owned())
            .unwrap_or_default();
        ServiceError {
            status,
            code: self.code,
            message,
            details: self.values.into_iter().map(|v| (v.key, v.value)).collect(),
            request_id,
        }
    }
}

impl Inner {
    /// `base/seg/seg?api-version=…&query`, each segment percent-encoded (a `/` in a file path
    /// becomes `%2F`, as the SDKs send it).
    fn url(&self, segments: &[&str], query: &[(&str, String)]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        let mut q = format!("api-version={BATCH_API_VERSION}");
        for (name, value) in query {
            q.push('&');
            q.push_str(name);
            q.push('=');
            q.extend(utf8_percent_encode(value, QUERY_VALUE));
        }
        url.set_query(Some(&q));
        url
    }

    fn build(
        &self,
        method: &Method,
        url: &Url,
        headers: &HeaderMap,
        body: &Bytes,
    ) -> Result<Request> {
        let mut request = Request::new(method.clone(), url.clone());
        *request.headers_mut() = headers.clone();
        let h = request.headers_mut();
        let date = httpdate::fmt_http_date(std::time::SystemTime::now());
        h.insert(
            "ocp-date",
            HeaderValue::from_str(&date).map_err(|e| Error::invalid(e.to_string()))?,
        );
        h.insert(
            "client-request-id",
            HeaderValue::from_str(&uuid::Uuid::new_v4().to_string())
                .map_err(|e| Error::invalid(e.to_string()))?,
        );
        h.insert("accept", HeaderValue::from_static("application/json"));
        if !matches!(*method, Method::GET | Method::HEAD) {
            h.insert("content-length", HeaderValue::from(body.len()));
        }
        if !body.is_empty() {
            h.insert(
                "content-type",
                HeaderValue::from_static("application/json; odata=minimalmetadata"),
            );
            *request.body_mut() = Some(body.clone().into());
        }
        self.credential.sign_batch(&mut request)?;
        Ok(request)
    }

    async fn send(&self, method: Method, url: Url, body: Option<Value>) -> Result<Response> {
        self.send_with(method, url, body, HeaderMap::new()).await
    }

    async fn send_with(
        &self,
        method: Method,
        url: Url,
        body: Option<Value>,
        headers: HeaderMap,
    ) -> Result<Response> {
        let body =
            match body {
                Some(value) => Bytes::from(serde_json::to_vec(&value).map_err(|e| {
                    Error::invalid(format!("cannot serialize the request body: {e}"))
                })?),
                None => Bytes::new(),
            };
        let response = self
            .pipeline
            .send(|| self.build(&method, &url, &headers, &body))
            .await?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status().as_u16();
        let request_id = response
            .headers()
            .get("request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = response.bytes().await.unwrap_or_default();
        let body: ErrorBody = serde_json::from_slice(&bytes).unwrap_or_default();
        Err(Error::Service(Box::new(
            body.into_service_error(status, request_id),
        )))
    }

    async fn call(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, String)],
        body: Option<Value>,
    ) -> Result<Response> {
        self.send(method, self.url(segments, query), body).await
    }

    async fn get<T: DeserializeOwned>(
        &self,
        segments: &[&str],
        query: &[(&str, String)],
    ) -> Result<T> {
        read_json(self.call(Method::GET, segments, query, None).await?).await
    }

    async fn post(
        &self,
        segments: &[&str],
        query: &[(&str, String)],
        body: Option<Value>,
    ) -> Result<()> {
        self.call(Method::POST, segments, query, body)
            .await
            .map(drop)
    }

    async fn delete(&self, segments: &[&str], query: &[(&str, String)]) -> Result<()> {
        self.call(Method::DELETE, segments, query, None)
            .await
            .map(drop)
    }

    async fn file(&self, segments: &[&str], range: Option<std::ops::Range<u64>>) -> Result<Bytes> {
        let mut headers = HeaderMap::new();
        if let Some(range) = &range {
            if range.end <= range.start {
                return Ok(Bytes::new());
            }
            let value = format!("bytes={}-{}", range.start, range.end - 1);
            headers.insert(
                "ocp-range",
                HeaderValue::from_str(&value).map_err(|e| Error::invalid(e.to_string()))?,
            );
        }
        let response = self
            .send_with(Method::GET, self.url(segments, &[]), None, headers)
            .await?;
        let url = response.url().clone();
        response
            .bytes()
            .await
            .map_err(|e| Error::transport(&url, e))
    }

    fn list<T: DeserializeOwned + Send + 'static>(
        self: &Arc<Self>,
        segments: &[&str],
        options: &ListOptions,
    ) -> BoxStream<'static, Result<T>> {
        self.list_with(segments, &options.query())
    }

    /// Pages of a list, following the absolute `odata.nextLink`s the service returns.
    fn list_with<T: DeserializeOwned + Send + 'static>(
        self: &Arc<Self>,
        segments: &[&str],
        query: &[(&'static str, String)],
    ) -> BoxStream<'static, Result<T>> {
        let inner = self.clone();
        let first = self.url(segments, query);
        paged(move |next: Option<String>| {
            let inner = inner.clone();
            let url = match next {
                None => Ok(first.clone()),
                Some(link) => Url::parse(&link).map_err(|e| Error::decode(&first, e)),
            };
            async move {
                #[derive(Deserialize)]
                struct Page<T> {
                    value: Vec<T>,
                    #[serde(rename = "odata.nextLink", default)]
                    next_link: Option<String>,
                }
                let page: Page<T> = read_json(inner.send(Method::GET, url?, None).await?).await?;
                Ok((page.value, page.next_link.filter(|l| !l.is_empty())))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> BatchClient {
        let credential =
            SharedKeyCredential::new("devbatchaccount1", cobalt_model::DEV_ACCOUNT_KEY).unwrap();
        BatchClient::new("http://127.0.0.1:10100/", credential).unwrap()
    }

    #[test]
    fn urls_encode_segments_and_query() {
        let c = client();
        let url = c.inner.url(
            &["jobs", "j 1", "tasks", "t1", "files", "wd/out.txt"],
            &[("$filter", "state eq 'completed'".to_owned())],
        );
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:10100/jobs/j%201/tasks/t1/files/wd%2Fout.txt?api-version=2024-07-01.20.0&$filter=state%20eq%20%27completed%27"
        );
    }

    #[test]
    fn error_bodies_lose_their_request_id_lines() {
        let body: ErrorBody = serde_json::from_str(
            r#"{"code":"PoolExists","message":{"lang":"en-US","value":"The specified pool already exists.\nRequestId:x\nTime:y"},"values":[{"key":"PropertyName","value":"id"}]}"#,
        )
        .unwrap();
        let e = body.into_service_error(409, None);
        assert_eq!(e.code, "PoolExists");
        assert_eq!(e.message, "The specified pool already exists.");
        assert_eq!(e.detail("PropertyName"), Some("id"));
    }
}
