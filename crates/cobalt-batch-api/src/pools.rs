//! Pool operations on the wire.

use axum::response::Response;
use cobalt_model::batch::Pool;
use http::StatusCode;
use serde_json::Value;

use crate::error::{BatchError, BatchResult, ErrorCode};
use crate::odata::ListKind;
use crate::service::{
    BatchService, ListQuery, Req, entity, entity_headers, list_response, respond, to_json,
    wants_stats, with_stats,
};

fn url(req: &Req, id: &str) -> String {
    req.url(&format!("/pools/{id}"))
}

fn pool_json(svc: &BatchService, req: &Req, pool: &Pool, stats: bool) -> BatchResult<Value> {
    let url = url(req, &pool.spec.id);
    let mut v = to_json(pool, &url)?;
    if stats {
        with_stats(&mut v, &svc.batch.pool_stats(pool), &url)?;
    }
    Ok(v)
}

/// Certificate references are refused since the feature's retirement.
fn refuse_certificates(body: &Value) -> BatchResult<()> {
    let has = body
        .get("certificateReferences")
        .and_then(Value::as_array)
        .is_some_and(|c| !c.is_empty());
    if has {
        return Err(BatchError::new(ErrorCode::CertificateRetired).with_value(
            "Reason",
            "The operation is blocked because the 'Azure Batch Certificates' feature was retired on 02/29/2024. For Pool, Job, and Job Schedule APIs, the target resource should no longer contain certificate references.",
        ));
    }
    Ok(())
}

/// `POST /pools`.
pub(crate) fn add_pool(svc: &BatchService, req: &Req) -> BatchResult<Response> {
    let body = req.json(true)?;
    refuse_certificates(&body)?;
    let pool = svc.batch.add_pool(&req.account, body)?;
    let url = url(req, &pool.spec.id);
    respond(
        StatusCode::CREATED,
        &entity_headers(&pool.e_tag, pool.last_modified, &url),
        None,
    )
}

/// `GET` and `HEAD /pools/{id}`.
pub(crate) fn get_pool(svc: &BatchService, req: &Req, id: &str) -> BatchResult<Response> {
    let pool = svc.batch.get_pool(&req.account, id, &req.cond)?;
    let value = pool_json(svc, req, &pool, wants_stats(req)?)?;
    entity(
        req,
        value,
        &pool.e_tag,
        pool.last_modified,
        &url(req, &pool.spec.id),
    )
}

/// `GET /pools`.
pub(crate) fn list_pools(svc: &BatchService, req: &Req) -> BatchResult<Response> {
    let q = ListQuery::parse(req, ListKind::Pools)?;
    let page = svc.batch.list_pools(&req.account, &q.page, |pool| {
        Ok(q.keep(pool_json(svc, req, &pool, q.stats)?))
    })?;
    list_response(req, "pools", page)
}

/// `PATCH /pools/{id}`.
pub(crate) fn patch_pool(svc: &BatchService, req: &Req, id: &str) -> BatchResult<Response> {
    let body = req.json(true)?;
    refuse_certificates(&body)?;
    let pool = svc.batch.patch_pool(&req.account, id, body, &req.cond)?;
    let url = url(req, &pool.spec.id);
    respond(
        StatusCode::OK,
        &entity_headers(&pool.e_tag, pool.last_modified, &url),
        None,
    )
}

/// `DELETE /pools/{id}`: 202, the pool is `deleting` until its nodes are gone.
pub(crate) fn delete_pool(svc: &BatchService, req: &Req, id: &str) -> BatchResult<Response> {
    svc.batch.delete_pool(&req.account, id, &req.cond)?;
    respond(StatusCode::ACCEPTED, &[], None)
}

/// Whether `action` is a `POST /pools/{id}/{action}` operation.
pub(crate) fn is_action(action: &str) -> bool {
    matches!(
        action,
        "resize"
            | "stopresize"
            | "removenodes"
            | "updateproperties"
            | "enableautoscale"
            | "disableautoscale"
            | "evaluateautoscale"
            | "upgradeos"
    )
}

/// `POST /pools/{id}/{action}`.
pub(crate) fn pool_action(
    svc: &BatchService,
    req: &Req,
    id: &str,
    action: &str,
) -> BatchResult<Response> {
    let b = &svc.batch;
    let a = &req.account;
    let pool = match action {
        "resize" => b.resize_pool(a, id, req.json(true)?, &req.cond)?,
        "stopresize" => b.stop_resize_pool(a, id, &req.cond)?,
        "removenodes" => b.remove_nodes(a, id, req.json(true)?, &req.cond)?,
        "updateproperties" => {
            let body = req.json(true)?;
            refuse_certificates(&body)?;
            let pool = b.update_pool_properties(a, id, body)?;
            let url = url(req, &pool.spec.id);
            return respond(
                StatusCode::NO_CONTENT,
                &entity_headers(&pool.e_tag, pool.last_modified, &url),
                None,
            );
        }
        "upgradeos" => {
            b.get_pool(a, id, &req.cond)?;
            return Err(BatchError::new(ErrorCode::OperationInvalidForCurrentState)
                .with_message("Cobalt nodes run the host's operating system; it cannot be upgraded through the pool."));
        }
        _ => {
            b.get_pool(a, id, &req.cond)?;
            return Err(BatchError::new(ErrorCode::NotImplemented)
                .with_message("Cobalt does not evaluate autoscale formulas yet."));
        }
    };
    let url = url(req, &pool.spec.id);
    respond(
        StatusCode::ACCEPTED,
        &entity_headers(&pool.e_tag, pool.last_modified, &url),
        None,
    )
}
