//! Job operations on the wire.

use axum::response::Response;
use cobalt_batch::{BatchError, Conditions, TaskCounts};
use cobalt_model::batch::{Job, id_key};
use http::StatusCode;
use serde_json::{Value, json};

use crate::error::{BatchResult, ErrorCode};
use crate::odata::ListKind;
use crate::service::{
    BatchService, ListQuery, Req, entity, entity_headers, list_response, respond, static_page,
    to_json, wants_stats, with_stats,
};
use crate::version::ApiVersion;

pub(crate) fn url(req: &Req, id: &str) -> String {
    req.url(&format!("/jobs/{id}"))
}

fn job_json(svc: &BatchService, req: &Req, job: &Job, stats: bool) -> BatchResult<Value> {
    let url = url(req, &job.id);
    let mut v = to_json(job, &url)?;
    if stats {
        with_stats(&mut v, &svc.batch.job_stats(&req.account, job)?, &url)?;
    }
    Ok(v)
}

/// `POST /jobs`.
pub(crate) fn add_job(svc: &BatchService, req: &Req) -> BatchResult<Response> {
    let job = svc.batch.add_job(&req.account, req.json(true)?)?;
    let url = url(req, &job.id);
    respond(
        StatusCode::CREATED,
        &entity_headers(&job.e_tag, job.last_modified, &url),
        None,
    )
}

/// `GET /jobs/{id}`.
pub(crate) fn get_job(svc: &BatchService, req: &Req, id: &str) -> BatchResult<Response> {
    let job = svc.batch.get_job(&req.account, id, &req.cond)?;
    entity(
        req,
        job_json(svc, req, &job, wants_stats(req)?)?,
        &job.e_tag,
        job.last_modified,
        &url(req, &job.id),
    )
}

/// `GET /jobs`, or `GET /jobschedules/{id}/jobs` with `schedule`.
pub(crate) fn list_jobs(
    svc: &BatchService,
    req: &Req,
    schedule: Option<&str>,
) -> BatchResult<Response> {
    let mut q = ListQuery::parse(req, ListKind::Jobs)?;
    let prefix = match schedule {
        Some(id) => {
            svc.batch
                .get_job_schedule(&req.account, id, &Conditions::default())?;
            let key = id_key(id);
            if q.page.after.is_none() {
                q.page.after = Some(format!("{key}:"));
            }
            Some(format!("{key}:job-"))
        }
        None => None,
    };
    let page = svc.batch.list_jobs(&req.account, &q.page, |job| {
        if prefix
            .as_ref()
            .is_some_and(|p| !id_key(&job.id).starts_with(p.as_str()))
        {
            return Ok(None);
        }
        Ok(q.keep(job_json(svc, req, &job, q.stats)?))
    })?;
    list_response(req, "jobs", page)
}

/// `PATCH` (`replace` false) or `PUT` (`replace` true) `/jobs/{id}`.
pub(crate) fn update_job(
    svc: &BatchService,
    req: &Req,
    id: &str,
    replace: bool,
) -> BatchResult<Response> {
    let job = svc
        .batch
        .update_job(&req.account, id, req.json(true)?, replace, &req.cond)?;
    let url = url(req, &job.id);
    respond(
        StatusCode::OK,
        &entity_headers(&job.e_tag, job.last_modified, &url),
        None,
    )
}

/// `DELETE /jobs/{id}`.
pub(crate) fn delete_job(svc: &BatchService, req: &Req, id: &str) -> BatchResult<Response> {
    svc.batch.delete_job(&req.account, id, &req.cond)?;
    respond(StatusCode::ACCEPTED, &[], None)
}

/// `POST /jobs/{id}/disable|enable|terminate`.
pub(crate) fn job_action(
    svc: &BatchService,
    req: &Req,
    id: &str,
    action: &str,
) -> BatchResult<Response> {
    let (b, a, c) = (&svc.batch, &req.account, &req.cond);
    match action {
        "disable" => b.disable_job(a, id, req.json(true)?, c)?,
        "enable" => b.enable_job(a, id, c)?,
        _ => b.terminate_job(a, id, req.json(false)?, c)?,
    }
    let job = b.get_job(a, id, &Conditions::default())?;
    let url = url(req, &job.id);
    respond(
        StatusCode::ACCEPTED,
        &entity_headers(&job.e_tag, job.last_modified, &url),
        None,
    )
}

fn counts_json(c: &TaskCounts) -> Value {
    json!({"active": c.active, "running": c.running, "completed": c.completed,
           "succeeded": c.succeeded, "failed": c.failed})
}

/// `GET /jobs/{id}/taskcounts`: `TaskCounts` before 2020-09-01.12.0, `TaskCountsResult` since.
pub(crate) fn get_task_counts(svc: &BatchService, req: &Req, id: &str) -> BatchResult<Response> {
    let (tasks, slots) = svc.batch.task_counts(&req.account, id)?;
    let body = if req.version < ApiVersion::V2020_09_01 {
        let mut c = counts_json(&tasks);
        c["validationStatus"] = json!("validated");
        c
    } else {
        json!({"taskCounts": counts_json(&tasks), "taskSlotCounts": counts_json(&slots)})
    };
    respond(StatusCode::OK, &[], Some(&body))
}

/// `GET /jobs/{id}/jobpreparationandreleasetaskstatus`: one entry per node that ran the job's
/// preparation task.
pub(crate) fn list_prep_release_status(
    svc: &BatchService,
    req: &Req,
    id: &str,
) -> BatchResult<Response> {
    let job = svc
        .batch
        .get_job(&req.account, id, &Conditions::default())?;
    if job.spec.job_preparation_task.is_none() && job.spec.job_release_task.is_none() {
        return Err(BatchError::new(ErrorCode::JobPreparationTaskNotSpecified));
    }
    let mut items = svc
        .files
        .as_ref()
        .map(|agents| agents.prep_release(&req.account, &job.id))
        .unwrap_or_default();
    for item in &mut items {
        let pool = item["poolId"].as_str().unwrap_or_default().to_owned();
        let node = item["nodeId"].as_str().unwrap_or_default().to_owned();
        let node_url = req.url(&format!("/pools/{pool}/nodes/{node}"));
        for info in [
            "jobPreparationTaskExecutionInfo",
            "jobReleaseTaskExecutionInfo",
        ] {
            if let Some(dir) = item[info]["taskRootDirectory"].as_str().map(str::to_owned) {
                item[info]["taskRootDirectoryUrl"] = json!(format!("{node_url}/files/{dir}"));
            }
        }
        item["nodeUrl"] = json!(node_url);
    }
    let page = static_page(req, ListKind::JobPrepReleaseStatus, items)?;
    list_response(req, "jobpreparationandreleasetaskstatus", page)
}
