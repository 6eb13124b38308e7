//! The operation table: method and path to handler. Handlers are named after Azure's
//! operations and live in one file per resource family.

use axum::response::Response;
use http::Method;

use crate::error::{BatchError, BatchResult, ErrorCode};
use crate::service::{BatchService, Req};
use crate::{account, jobs, nodes, pools, schedules, tasks};

/// Runs the operation `req` names.
pub(crate) fn dispatch(svc: &BatchService, req: &Req) -> BatchResult<Response> {
    let seg: Vec<&str> = req.segments.iter().map(String::as_str).collect();
    let m = &req.method;
    let get = m == Method::GET;
    let post = m == Method::POST;
    match seg.as_slice() {
        ["supportedimages"] if get => account::list_supported_images(req),
        ["nodeagentskus"] if get => account::list_node_agent_skus(req),
        ["nodecounts"] if get => account::list_pool_node_counts(svc, req),
        ["applications"] if get => account::list_applications(req),
        ["applications", _] if get => Err(ErrorCode::ApplicationNotFound.into()),
        ["poolusagemetrics"] if get => account::list_pool_usage_metrics(req),
        ["lifetimepoolstats"] if get => account::get_lifetime_pool_stats(svc, req),
        ["lifetimejobstats"] if get => account::get_lifetime_job_stats(svc, req),
        ["certificates", ..] => Err(BatchError::new(ErrorCode::CertificateRetired).with_value(
            "Reason",
            "The operation is blocked because the 'Azure Batch Certificates' feature was retired on 02/29/2024. For Certificate APIs, they are no longer supported.",
        )),
        [c] if c.starts_with("certificates(") => Err(ErrorCode::CertificateRetired.into()),

        ["pools"] if get => pools::list_pools(svc, req),
        ["pools"] if post => pools::add_pool(svc, req),
        ["pools", id] => match *m {
            Method::GET | Method::HEAD => pools::get_pool(svc, req, id),
            Method::PATCH => pools::patch_pool(svc, req, id),
            Method::DELETE => pools::delete_pool(svc, req, id),
            _ => Err(ErrorCode::UnsupportedHttpVerb.into()),
        },
        ["pools", id, action] if post && pools::is_action(action) => pools::pool_action(svc, req, id, action),
        ["pools", id, "nodes"] if get => nodes::list_nodes(svc, req, id),
        ["pools", pool, "nodes", node, rest @ ..] => nodes::node_operation(svc, req, pool, node, rest),

        ["jobs"] if get => jobs::list_jobs(svc, req, None),
        ["jobs"] if post => jobs::add_job(svc, req),
        ["jobs", id] => match *m {
            Method::GET | Method::HEAD => jobs::get_job(svc, req, id),
            Method::PATCH => jobs::update_job(svc, req, id, false),
            Method::PUT => jobs::update_job(svc, req, id, true),
            Method::DELETE => jobs::delete_job(svc, req, id),
            _ => Err(ErrorCode::UnsupportedHttpVerb.into()),
        },
        ["jobs", id, action @ ("disable" | "enable" | "terminate")] if post => jobs::job_action(svc, req, id, action),
        ["jobs", id, "taskcounts"] if get => jobs::get_task_counts(svc, req, id),
        ["jobs", id, "jobpreparationandreleasetaskstatus"] if get => jobs::list_prep_release_status(svc, req, id),
        ["jobs", id, "addtaskcollection"] if post => tasks::add_task_collection(svc, req, id),
        ["jobs", id, "tasks"] if get => tasks::list_tasks(svc, req, id),
        ["jobs", id, "tasks"] if post => tasks::add_task(svc, req, id),
        ["jobs", job, "tasks", task] => match *m {
            Method::GET | Method::HEAD => tasks::get_task(svc, req, job, task),
            Method::PUT => tasks::update_task(svc, req, job, task),
            Method::DELETE => tasks::delete_task(svc, req, job, task),
            _ => Err(ErrorCode::UnsupportedHttpVerb.into()),
        },
        ["jobs", job, "tasks", task, action @ ("terminate" | "reactivate")] if post => {
            tasks::task_action(svc, req, job, task, action)
        }
        ["jobs", job, "tasks", task, "subtasksinfo"] if get => tasks::list_subtasks(svc, req, job, task),
        ["jobs", job, "tasks", task, "files", path @ ..] => tasks::task_files(svc, req, job, task, path),

        ["jobschedules"] if get => schedules::list_job_schedules(svc, req),
        ["jobschedules"] if post => schedules::add_job_schedule(svc, req),
        ["jobschedules", id] => match *m {
            Method::GET | Method::HEAD => schedules::get_job_schedule(svc, req, id),
            Method::PATCH => schedules::update_job_schedule(svc, req, id, false),
            Method::PUT => schedules::update_job_schedule(svc, req, id, true),
            Method::DELETE => schedules::delete_job_schedule(svc, req, id),
            _ => Err(ErrorCode::UnsupportedHttpVerb.into()),
        },
        ["jobschedules", id, action @ ("disable" | "enable" | "terminate")] if post => {
            schedules::job_schedule_action(svc, req, id, action)
        }
        ["jobschedules", id, "jobs"] if get => jobs::list_jobs(svc, req, Some(id)),

        [
            "supportedimages" | "nodeagentskus" | "nodecounts" | "applications" | "poolusagemetrics"
            | "lifetimepoolstats" | "lifetimejobstats" | "pools" | "jobs" | "jobschedules",
            ..,
        ] => Err(ErrorCode::UnsupportedHttpVerb.into()),
        _ => Err(ErrorCode::InvalidUri.into()),
    }
}
