//! Compute node operations on the wire. Nodes are node agents in a pool; every operation
//! first finds its pool and node, so a missing one answers Azure's 404.

use axum::response::Response;
use cobalt_model::batch::{Node, NodeAction, NodeActionError, NodeDeallocationOption};
use http::{Method, StatusCode};
use serde_json::Value;

use crate::error::{BatchError, BatchResult, ErrorCode};
use crate::files::FileTarget;
use crate::odata::ListKind;
use crate::service::{
    BatchService, ListQuery, Req, entity, list_response, respond, static_page, to_json,
};

fn url(req: &Req, pool: &str, node: &str) -> String {
    req.url(&format!("/pools/{pool}/nodes/{node}"))
}

/// A node's wire JSON: its URL, and its recent tasks' URLs.
fn node_json(req: &Req, pool: &str, node: &Node) -> BatchResult<Value> {
    let mut v = to_json(node, &url(req, pool, &node.id))?;
    if let Some(Value::Array(recent)) = v.get_mut("recentTasks") {
        for t in recent {
            let (job, task) = (
                t["jobId"].as_str().unwrap_or_default(),
                t["taskId"].as_str().unwrap_or_default(),
            );
            t["taskUrl"] = Value::String(req.url(&format!("/jobs/{job}/tasks/{task}")));
        }
    }
    Ok(v)
}

/// `GET /pools/{id}/nodes`.
pub(crate) fn list_nodes(svc: &BatchService, req: &Req, pool: &str) -> BatchResult<Response> {
    let q = ListQuery::parse(req, ListKind::Nodes)?;
    let page = svc
        .batch
        .list_nodes(&req.account, pool, &q.page, |node: Value| {
            let node: Node = serde_json::from_value(node).map_err(|e| {
                tracing::error!(error = %e, "stored node does not decode");
                BatchError::new(ErrorCode::InternalError)
            })?;
            Ok(q.keep(node_json(req, pool, &node)?))
        })?;
    list_response(req, "nodes", page)
}

/// Everything under `/pools/{pool}/nodes/{node}`.
pub(crate) fn node_operation(
    svc: &BatchService,
    req: &Req,
    pool: &str,
    node: &str,
    rest: &[&str],
) -> BatchResult<Response> {
    let known = matches!(
        (rest, &req.method),
        ([], &Method::GET)
            | (
                ["reboot"
                    | "reimage"
                    | "disablescheduling"
                    | "enablescheduling"
                    | "start"
                    | "deallocate"
                    | "uploadbatchservicelogs"
                    | "users"],
                &Method::POST
            )
            | (
                ["remoteloginsettings" | "rdp" | "extensions" | "files"],
                &Method::GET
            )
            | (["extensions", _], &Method::GET)
            | (["users", _], &Method::PUT | &Method::DELETE)
            | (
                ["files", ..],
                &Method::GET | &Method::HEAD | &Method::DELETE
            )
    );
    if !known {
        return Err(ErrorCode::UnsupportedHttpVerb.into());
    }
    let n = svc.batch.get_node(&req.account, pool, node)?;
    if let (["files", path @ ..], Some(files)) = (rest, svc.files.as_ref()) {
        let target = FileTarget {
            files,
            pool: pool.to_owned(),
            node: n.id.clone(),
            base: String::new(),
            url: format!("{}/files", url(req, pool, &n.id)),
            unavailable: ErrorCode::NodeStateUnusable,
        };
        return if path.is_empty() {
            target.list(req)
        } else {
            target.one(req, &path.join("/"))
        };
    }
    if rest.is_empty() {
        let value = node_json(req, pool, &n)?;
        let etag = format!("0x{:X}", n.state_transition_time.ticks());
        return entity(
            req,
            value,
            &etag,
            n.state_transition_time,
            &url(req, pool, &n.id),
        );
    }
    match rest {
        ["extensions"] => {
            // Cobalt nodes run no VM extensions.
            let page = static_page(req, ListKind::Nodes, Vec::new())?;
            return list_response(req, "extensions", page);
        }
        ["extensions", _] => return Err(ErrorCode::NodeExtensionNotFound.into()),
        _ => {}
    }
    let action = match rest {
        ["reboot"] => NodeAction::Reboot(option(req, "nodeRebootOption")?),
        ["reimage"] => NodeAction::Reimage(option(req, "nodeReimageOption")?),
        ["disablescheduling"] => {
            NodeAction::DisableScheduling(option(req, "nodeDisableSchedulingOption")?)
        }
        ["enablescheduling"] => NodeAction::EnableScheduling,
        _ => {
            return Err(BatchError::new(ErrorCode::NotImplemented)
                .with_message("Cobalt does not serve this node operation yet."));
        }
    };
    let agents = svc
        .files
        .as_ref()
        .ok_or_else(|| BatchError::new(ErrorCode::NodeStateUnusable))?;
    agents
        .act(&req.account, pool, &n.id, action)
        .map_err(|e| match e {
            NodeActionError::NotFound => BatchError::new(ErrorCode::NodeNotFound),
            NodeActionError::InvalidState => {
                BatchError::new(ErrorCode::OperationInvalidForCurrentState)
            }
        })?;
    let status = match action {
        NodeAction::Reboot(_) | NodeAction::Reimage(_) => StatusCode::ACCEPTED,
        _ => StatusCode::OK,
    };
    respond(status, &[], None)
}

/// The deallocation option named `field` in the body (default requeue).
fn option(req: &Req, field: &str) -> BatchResult<NodeDeallocationOption> {
    let body = req.json(false)?;
    match body.get(field) {
        None | Some(Value::Null) => Ok(NodeDeallocationOption::Requeue),
        Some(v) => serde_json::from_value(v.clone()).map_err(|_| {
            BatchError::new(ErrorCode::InvalidPropertyValue)
                .with_value("PropertyName", field)
                .with_value("PropertyValue", v.to_string())
        }),
    }
}
