//! Task operations on the wire.

use axum::response::Response;
use cobalt_batch::{BatchError, Conditions, TaskAddOutcome};
use cobalt_model::batch::Task;
use http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::error::{BatchResult, ErrorCode};
use crate::files::FileTarget;
use crate::odata::ListKind;
use crate::service::{
    BatchService, ListQuery, Req, entity, entity_headers, list_response, respond, to_json,
    wants_stats, with_stats,
};

/// Largest add-collection body.
const MAX_COLLECTION_BYTES: usize = 1 << 20;

fn url(req: &Req, job: &str, task: &str) -> String {
    req.url(&format!("/jobs/{job}/tasks/{task}"))
}

fn task_json(
    svc: &BatchService,
    req: &Req,
    job: &str,
    task: &Task,
    stats: bool,
) -> BatchResult<Value> {
    let url = url(req, job, &task.spec.id);
    let mut v = to_json(task, &url)?;
    with_node_urls(req, &mut v);
    if stats && let Some(s) = svc.batch.task_stats(task) {
        with_stats(&mut v, &s, &url)?;
    }
    Ok(v)
}

/// `nodeInfo.nodeUrl` and `taskRootDirectoryUrl`, built from the node's pool and id for this
/// request: they name the server as the client reached it (not stored, so a server that comes
/// back on another port or address gives working URLs).
fn with_node_urls(req: &Req, task: &mut Value) {
    let Some(info) = task.get_mut("nodeInfo").and_then(Value::as_object_mut) else {
        return;
    };
    let (Some(pool), Some(node)) = (
        info.get("poolId").and_then(Value::as_str),
        info.get("nodeId").and_then(Value::as_str),
    ) else {
        return;
    };
    let node_url = req.url(&format!("/pools/{pool}/nodes/{node}"));
    if let Some(dir) = info.get("taskRootDirectory").and_then(Value::as_str) {
        let dir_url = format!("{node_url}/files/{dir}");
        info.insert("taskRootDirectoryUrl".to_owned(), Value::String(dir_url));
    }
    info.insert("nodeUrl".to_owned(), Value::String(node_url));
}

/// `POST /jobs/{job}/tasks`.
pub(crate) fn add_task(svc: &BatchService, req: &Req, job: &str) -> BatchResult<Response> {
    let task = svc.batch.add_task(&req.account, job, req.json(true)?)?;
    let url = url(req, job, &task.spec.id);
    respond(
        StatusCode::CREATED,
        &entity_headers(&task.e_tag, task.last_modified, &url),
        None,
    )
}

/// `POST /jobs/{job}/addtaskcollection`: ≤100 tasks and ≤1 MB; a result per task.
pub(crate) fn add_task_collection(
    svc: &BatchService,
    req: &Req,
    job: &str,
) -> BatchResult<Response> {
    if req.body.len() > MAX_COLLECTION_BYTES {
        return Err(BatchError::new(ErrorCode::RequestBodyTooLarge)
            .with_value("MaxLimit", MAX_COLLECTION_BYTES.to_string()));
    }
    let mut body = req.json(true)?;
    let tasks = match body.get_mut("value").map(Value::take) {
        Some(Value::Array(items)) => items,
        Some(_) => {
            return Err(BatchError::new(ErrorCode::InvalidPropertyValue)
                .with_value("PropertyName", "value"));
        }
        None => {
            return Err(BatchError::new(ErrorCode::MissingRequiredProperty)
                .with_value("PropertyName", "value"));
        }
    };
    let outcomes = svc.batch.add_tasks(&req.account, job, tasks)?;
    let results: Vec<Value> = outcomes
        .into_iter()
        .map(|outcome| match outcome {
            TaskAddOutcome::Added(task) => json!({
                "status": "success",
                "taskId": task.spec.id,
                "eTag": task.e_tag,
                "lastModified": task.last_modified,
                "location": url(req, job, &task.spec.id),
            }),
            TaskAddOutcome::Failed { task_id, error } => {
                let status = if error.code.status().is_server_error() { "servererror" } else { "clienterror" };
                let mut e = json!({
                    "code": error.code.as_str(),
                    "message": {"lang": "en-US", "value": error.message.as_deref().unwrap_or(error.code.message())},
                });
                if !error.values.is_empty() {
                    e["values"] = error.values.iter().map(|(k, v)| json!({"key": k, "value": v})).collect();
                }
                json!({"status": status, "taskId": task_id, "error": e})
            }
        })
        .collect();
    respond(StatusCode::OK, &[], Some(&json!({ "value": results })))
}

/// `GET /jobs/{job}/tasks/{task}`.
pub(crate) fn get_task(
    svc: &BatchService,
    req: &Req,
    job: &str,
    task: &str,
) -> BatchResult<Response> {
    let t = svc.batch.get_task(&req.account, job, task, &req.cond)?;
    entity(
        req,
        task_json(svc, req, job, &t, wants_stats(req)?)?,
        &t.e_tag,
        t.last_modified,
        &url(req, job, &t.spec.id),
    )
}

/// `GET /jobs/{job}/tasks`.
pub(crate) fn list_tasks(svc: &BatchService, req: &Req, job: &str) -> BatchResult<Response> {
    let q = ListQuery::parse(req, ListKind::Tasks)?;
    let page = svc.batch.list_tasks(&req.account, job, &q.page, |t| {
        Ok(q.keep(task_json(svc, req, job, &t, q.stats)?))
    })?;
    list_response(req, "tasks", page)
}

/// `PUT /jobs/{job}/tasks/{task}`.
pub(crate) fn update_task(
    svc: &BatchService,
    req: &Req,
    job: &str,
    task: &str,
) -> BatchResult<Response> {
    let t = svc.batch.update_task(
        &req.account,
        job,
        task,
        req.json(false)?
            .as_object()
            .map_or(json!({}), |o| Value::Object(o.clone())),
        &req.cond,
    )?;
    let url = url(req, job, &t.spec.id);
    respond(
        StatusCode::OK,
        &entity_headers(&t.e_tag, t.last_modified, &url),
        None,
    )
}

/// `DELETE /jobs/{job}/tasks/{task}`: 200, not 202.
pub(crate) fn delete_task(
    svc: &BatchService,
    req: &Req,
    job: &str,
    task: &str,
) -> BatchResult<Response> {
    svc.batch.delete_task(&req.account, job, task, &req.cond)?;
    respond(StatusCode::OK, &[], None)
}

/// `POST /jobs/{job}/tasks/{task}/terminate|reactivate`: 204.
pub(crate) fn task_action(
    svc: &BatchService,
    req: &Req,
    job: &str,
    task: &str,
    action: &str,
) -> BatchResult<Response> {
    if action == "terminate" {
        svc.batch
            .terminate_task(&req.account, job, task, &req.cond)?;
    } else {
        svc.batch
            .reactivate_task(&req.account, job, task, &req.cond)?;
    }
    let t = svc
        .batch
        .get_task(&req.account, job, task, &Conditions::default())?;
    let url = url(req, job, &t.spec.id);
    respond(
        StatusCode::NO_CONTENT,
        &entity_headers(&t.e_tag, t.last_modified, &url),
        None,
    )
}

/// `GET /jobs/{job}/tasks/{task}/subtasksinfo`: the subtasks of a multi-instance task.
pub(crate) fn list_subtasks(
    svc: &BatchService,
    req: &Req,
    job: &str,
    task: &str,
) -> BatchResult<Response> {
    svc.batch
        .get_task(&req.account, job, task, &Conditions::default())?;
    // Subtasks exist once a multi-instance task runs on nodes.
    respond(StatusCode::OK, &[], Some(&json!({ "value": [] })))
}

/// `/jobs/{job}/tasks/{task}/files[/{path}]`: the task's directory on its node.
pub(crate) fn task_files(
    svc: &BatchService,
    req: &Req,
    job: &str,
    task: &str,
    path: &[&str],
) -> BatchResult<Response> {
    let allowed = if path.is_empty() {
        req.method == Method::GET
    } else {
        matches!(req.method, Method::GET | Method::HEAD | Method::DELETE)
    };
    if !allowed {
        return Err(ErrorCode::UnsupportedHttpVerb.into());
    }
    let t = svc
        .batch
        .get_task(&req.account, job, task, &Conditions::default())?;
    let unavailable = || {
        BatchError::new(ErrorCode::TaskFilesUnavailable)
            .with_message("The task has not run on a node, so it has no files.")
    };
    let info = t.node_info.as_ref().ok_or_else(unavailable)?;
    let (Some(pool), Some(node), Some(dir), Some(files)) = (
        info.pool_id.clone(),
        info.node_id.clone(),
        info.task_root_directory.clone(),
        svc.files.as_ref(),
    ) else {
        return Err(unavailable());
    };
    let target = FileTarget {
        files,
        pool,
        node,
        base: dir,
        url: format!("{}/files", url(req, job, &t.spec.id)),
        unavailable: ErrorCode::TaskFilesUnavailable,
    };
    if path.is_empty() {
        target.list(req)
    } else {
        target.one(req, &path.join("/"))
    }
}
