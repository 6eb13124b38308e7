//! Job schedule operations on the wire.

use axum::response::Response;
use cobalt_batch::Conditions;
use cobalt_model::batch::JobSchedule;
use http::StatusCode;
use serde_json::Value;

use crate::error::BatchResult;
use crate::jobs;
use crate::odata::ListKind;
use crate::service::{
    BatchService, ListQuery, Req, entity, entity_headers, list_response, respond, to_json,
    wants_stats, with_stats,
};

fn url(req: &Req, id: &str) -> String {
    req.url(&format!("/jobschedules/{id}"))
}

fn schedule_json(
    svc: &BatchService,
    req: &Req,
    s: &JobSchedule,
    stats: bool,
) -> BatchResult<Value> {
    let url = url(req, &s.id);
    let mut v = to_json(s, &url)?;
    if stats {
        with_stats(
            &mut v,
            &svc.batch.job_schedule_stats(&req.account, &s.id)?,
            &url,
        )?;
    }
    if let Some(recent) = v.pointer_mut("/executionInfo/recentJob")
        && let Some(id) = recent.get("id").and_then(Value::as_str).map(str::to_owned)
    {
        recent["url"] = Value::String(jobs::url(req, &id));
    }
    Ok(v)
}

/// `POST /jobschedules`.
pub(crate) fn add_job_schedule(svc: &BatchService, req: &Req) -> BatchResult<Response> {
    let s = svc.batch.add_job_schedule(&req.account, req.json(true)?)?;
    let url = url(req, &s.id);
    respond(
        StatusCode::CREATED,
        &entity_headers(&s.e_tag, s.last_modified, &url),
        None,
    )
}

/// `GET` and `HEAD /jobschedules/{id}`.
pub(crate) fn get_job_schedule(svc: &BatchService, req: &Req, id: &str) -> BatchResult<Response> {
    let s = svc.batch.get_job_schedule(&req.account, id, &req.cond)?;
    entity(
        req,
        schedule_json(svc, req, &s, wants_stats(req)?)?,
        &s.e_tag,
        s.last_modified,
        &url(req, &s.id),
    )
}

/// `GET /jobschedules`.
pub(crate) fn list_job_schedules(svc: &BatchService, req: &Req) -> BatchResult<Response> {
    let q = ListQuery::parse(req, ListKind::JobSchedules)?;
    let page = svc.batch.list_job_schedules(&req.account, &q.page, |s| {
        Ok(q.keep(schedule_json(svc, req, &s, q.stats)?))
    })?;
    list_response(req, "jobschedules", page)
}

/// `PATCH` (`replace` false) or `PUT` (`replace` true).
pub(crate) fn update_job_schedule(
    svc: &BatchService,
    req: &Req,
    id: &str,
    replace: bool,
) -> BatchResult<Response> {
    let s = svc
        .batch
        .update_job_schedule(&req.account, id, req.json(true)?, replace, &req.cond)?;
    let url = url(req, &s.id);
    respond(
        StatusCode::OK,
        &entity_headers(&s.e_tag, s.last_modified, &url),
        None,
    )
}

/// `DELETE /jobschedules/{id}`: 202.
pub(crate) fn delete_job_schedule(
    svc: &BatchService,
    req: &Req,
    id: &str,
) -> BatchResult<Response> {
    svc.batch.delete_job_schedule(&req.account, id, &req.cond)?;
    respond(StatusCode::ACCEPTED, &[], None)
}

/// `POST /jobschedules/{id}/disable|enable` (204) and `terminate` (202).
pub(crate) fn job_schedule_action(
    svc: &BatchService,
    req: &Req,
    id: &str,
    action: &str,
) -> BatchResult<Response> {
    let (b, a, c) = (&svc.batch, &req.account, &req.cond);
    let status = match action {
        "disable" => {
            b.disable_job_schedule(a, id, c)?;
            StatusCode::NO_CONTENT
        }
        "enable" => {
            b.enable_job_schedule(a, id, c)?;
            StatusCode::NO_CONTENT
        }
        _ => {
            b.terminate_job_schedule(a, id, c)?;
            StatusCode::ACCEPTED
        }
    };
    let s = b.get_job_schedule(a, id, &Conditions::default())?;
    let url = url(req, &s.id);
    respond(
        status,
        &entity_headers(&s.e_tag, s.last_modified, &url),
        None,
    )
}
