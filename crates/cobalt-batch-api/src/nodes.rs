//! Compute node operations on the wire. Nodes exist once node agents join a pool; every
//! operation first finds its pool and node, so a missing one answers Azure's 404.

use axum::response::Response;
use http::Method;
use serde_json::Value;

use crate::error::{BatchError, BatchResult, ErrorCode};
use crate::odata::ListKind;
use crate::service::{BatchService, ListQuery, Req, list_response};

/// `GET /pools/{id}/nodes`.
pub(crate) fn list_nodes(svc: &BatchService, req: &Req, pool: &str) -> BatchResult<Response> {
    let q = ListQuery::parse(req, ListKind::Nodes)?;
    let page = svc
        .batch
        .list_nodes(&req.account, pool, &q.page, |node: Value| Ok(q.keep(node)))?;
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
    svc.batch.get_node(&req.account, pool, node)?;
    // Nodes exist only while node agents run them; their operations arrive with the agents.
    Err(BatchError::new(ErrorCode::NotImplemented)
        .with_message("Cobalt does not run node agents yet, so no node operation is available."))
}
