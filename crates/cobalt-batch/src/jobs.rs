//! Job operations: add, get, list, patch, update, delete, disable, enable, terminate.

use cobalt_model::batch::{
    DisableJobOption, IsoDuration, Job, JobConstraints, JobExecutionInfo, JobSpec, JobState,
    MetadataItem, OnAllTasksComplete, OnTaskFailure, PoolInformation, Timestamp, id_key,
};
use cobalt_store::{Kind, Scope, Write};
use serde::Deserialize;
use serde_json::Value;

use crate::error::{BatchError, BatchResult, ErrorCode};
use crate::service::{Batch, Change, Conditions, Page, PageRequest, encode, touch};
use crate::validate;

pub(crate) fn scope(account: &str) -> Scope {
    Scope::top(account, Kind::Job)
}

/// The body of `PATCH /jobs/{id}` (only present properties change) and of `PUT /jobs/{id}`
/// (absent properties return to their defaults).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobUpdate {
    /// -1000..1000.
    pub priority: Option<i32>,
    /// -1 or ≥1.
    pub max_parallel_tasks: Option<i32>,
    /// Whether tasks may be preempted.
    pub allow_task_preemption: Option<bool>,
    /// One-way: `noaction` → `terminatejob`.
    pub on_all_tasks_complete: Option<OnAllTasksComplete>,
    /// Limits.
    pub constraints: Option<JobConstraints>,
    /// Where tasks run.
    pub pool_info: Option<PoolInformation>,
    /// Metadata.
    pub metadata: Option<Vec<MetadataItem>>,
}

impl Batch {
    pub(crate) fn save_job(&self, account: &str, job: &Job) -> BatchResult<Write> {
        Ok(Write::Put(
            scope(account),
            encode(&job.id, job.state.as_str(), "", job)?,
        ))
    }

    /// The job `id`, or 404 JobNotFound.
    pub fn get_job(&self, account: &str, id: &str, cond: &Conditions) -> BatchResult<Job> {
        let job: Job = self
            .load(&scope(account), id)?
            .ok_or_else(|| BatchError::new(ErrorCode::JobNotFound))?;
        cond.check(&job.e_tag, job.last_modified, true)?;
        Ok(job)
    }

    /// Adds a job (current schema).
    pub fn add_job(&self, account: &str, body: Value) -> BatchResult<Job> {
        let mut body = body;
        let id = match body.as_object_mut().and_then(|o| o.remove("id")) {
            None => String::new(),
            Some(Value::String(id)) => id,
            Some(other) => return Err(validate::invalid("id", other, "The id must be a string.")),
        };
        let spec: JobSpec = validate::parse(body)?;
        validate::id("id", &id)?;
        let _guard = self.lock();
        if self.load::<Job>(&scope(account), &id)?.is_some() {
            return Err(ErrorCode::JobExists.into());
        }
        let job = Self::new_job(id, spec)?;
        self.apply(&[self.save_job(account, &job)?])?;
        self.job_added(account, &job);
        Ok(job)
    }

    /// After a new job is stored: its lifecycle and the dispatcher hear of it.
    pub(crate) fn job_added(&self, account: &str, job: &Job) {
        self.attend(account, Kind::Job, &id_key(&job.id));
        self.notify(Change::Job {
            account: account.to_owned(),
            job: job.id.clone(),
        });
    }

    /// A new job: its spec validated, its defaults filled in (the caller checked the id).
    pub(crate) fn new_job(id: String, mut spec: JobSpec) -> BatchResult<Job> {
        validate_job_spec(&spec)?;
        spec.priority.get_or_insert(0);
        spec.max_parallel_tasks.get_or_insert(-1);
        spec.allow_task_preemption.get_or_insert(false);
        spec.uses_task_dependencies.get_or_insert(false);
        spec.on_all_tasks_complete
            .get_or_insert(OnAllTasksComplete::NoAction);
        spec.on_task_failure.get_or_insert(OnTaskFailure::NoAction);
        let constraints = spec.constraints.get_or_insert_with(JobConstraints::default);
        constraints
            .max_wall_clock_time
            .get_or_insert_with(IsoDuration::unlimited);
        constraints.max_task_retry_count.get_or_insert(0);
        let (e_tag, now) = touch(None);
        let job = Job {
            execution_info: JobExecutionInfo {
                start_time: now,
                end_time: None,
                pool_id: spec.pool_info.pool_id.clone(),
                scheduling_error: None,
                terminate_reason: None,
            },
            id,
            spec,
            e_tag,
            last_modified: now,
            creation_time: now,
            state: JobState::Active,
            state_transition_time: now,
            previous_state: None,
            previous_state_transition_time: None,
        };
        Ok(job)
    }

    /// A page of jobs, each mapped through `keep` (None drops it).
    pub fn list_jobs<R>(
        &self,
        account: &str,
        page: &PageRequest,
        keep: impl FnMut(Job) -> BatchResult<Option<R>>,
    ) -> BatchResult<Page<R>> {
        self.scan(&scope(account), page, keep)
    }

    pub(crate) fn change_job(
        &self,
        account: &str,
        id: &str,
        cond: &Conditions,
        change: impl FnOnce(&mut Job, Timestamp) -> BatchResult<()>,
    ) -> BatchResult<Job> {
        let _guard = self.lock();
        let mut job = self.get_job(account, id, &Conditions::default())?;
        cond.check(&job.e_tag, job.last_modified, false)?;
        let now = Timestamp::now();
        change(&mut job, now)?;
        let (e_tag, now) = touch(Some(&job.e_tag));
        job.e_tag = e_tag;
        job.last_modified = now;
        self.apply(&[self.save_job(account, &job)?])?;
        self.attend(account, Kind::Job, &id_key(&job.id));
        self.notify(Change::Job {
            account: account.to_owned(),
            job: job.id.clone(),
        });
        Ok(job)
    }

    /// `PATCH` (`replace` false) or `PUT` (`replace` true) of a job.
    pub fn update_job(
        &self,
        account: &str,
        id: &str,
        body: Value,
        replace: bool,
        cond: &Conditions,
    ) -> BatchResult<Job> {
        let update: JobUpdate = validate::parse(body)?;
        if replace && update.pool_info.is_none() {
            return Err(validate::missing("poolInfo"));
        }
        validate::range("priority", update.priority, -1000, 1000)?;
        validate_parallel(update.max_parallel_tasks)?;
        if let Some(p) = &update.pool_info {
            validate_pool_info(p)?;
        }
        self.change_job(account, id, cond, |job, _| {
            open_for_changes(job)?;
            if update.pool_info.is_some() && !matches!(job.state, JobState::Disabled) && !replace {
                // Azure lets poolInfo change only while the job is disabled.
                if update.pool_info.as_ref() != Some(&job.spec.pool_info) {
                    return Err(BatchError::new(ErrorCode::OperationInvalidForCurrentState)
                        .with_message(
                            "The pool of a job can be changed only while the job is disabled.",
                        ));
                }
            }
            let s = &mut job.spec;
            let next = match (update.on_all_tasks_complete, replace) {
                (Some(v), _) => Some(v),
                (None, true) => Some(OnAllTasksComplete::NoAction),
                (None, false) => None,
            };
            if let Some(next) = next {
                if s.on_all_tasks_complete == Some(OnAllTasksComplete::TerminateJob)
                    && next == OnAllTasksComplete::NoAction
                {
                    return Err(validate::invalid(
                        "onAllTasksComplete",
                        "noaction",
                        "onAllTasksComplete cannot be changed from terminatejob back to noaction.",
                    ));
                }
                s.on_all_tasks_complete = Some(next);
            }
            if let Some(v) = update.priority.or(replace.then_some(0)) {
                s.priority = Some(v);
            }
            if let Some(v) = update.max_parallel_tasks.or(replace.then_some(-1)) {
                s.max_parallel_tasks = Some(v);
            }
            if let Some(v) = update.allow_task_preemption.or(replace.then_some(false)) {
                s.allow_task_preemption = Some(v);
            }
            if let Some(mut c) = update.constraints.or(replace.then(JobConstraints::default)) {
                c.max_wall_clock_time
                    .get_or_insert_with(IsoDuration::unlimited);
                c.max_task_retry_count.get_or_insert(0);
                s.constraints = Some(c);
            }
            if let Some(p) = update.pool_info {
                job.execution_info.pool_id = p.pool_id.clone();
                s.pool_info = p;
            }
            if let Some(m) = update.metadata.or(replace.then(Vec::new)) {
                s.metadata = m;
            }
            Ok(())
        })
    }

    /// Marks the job `deleting`; the lifecycle removes it and its tasks.
    pub fn delete_job(&self, account: &str, id: &str, cond: &Conditions) -> BatchResult<()> {
        self.change_job(account, id, cond, |job, now| {
            if job.state == JobState::Deleting {
                return Err(ErrorCode::JobBeingDeleted.into());
            }
            job.transition(JobState::Deleting, now);
            Ok(())
        })?;
        Ok(())
    }

    /// Disables an active job: no new tasks start.
    pub fn disable_job(
        &self,
        account: &str,
        id: &str,
        body: Value,
        cond: &Conditions,
    ) -> BatchResult<()> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Disable {
            disable_tasks: Option<DisableJobOption>,
        }
        let disable: Disable = validate::parse(body)?;
        let option = disable
            .disable_tasks
            .ok_or_else(|| validate::missing("disableTasks"))?;
        let job = self.change_job(account, id, cond, |job, now| {
            check_not_ending(job)?;
            if job.state != JobState::Active {
                return Err(ErrorCode::JobNotActive.into());
            }
            job.transition(JobState::Disabling, now);
            Ok(())
        })?;
        self.notify(Change::JobDisabling {
            account: account.to_owned(),
            job: job.id,
            option,
        });
        Ok(())
    }

    /// Enables a disabled job.
    pub fn enable_job(&self, account: &str, id: &str, cond: &Conditions) -> BatchResult<()> {
        self.change_job(account, id, cond, |job, now| {
            check_not_ending(job)?;
            match job.state {
                JobState::Disabled | JobState::Disabling => {
                    job.transition(JobState::Enabling, now);
                    Ok(())
                }
                _ => Err(BatchError::new(ErrorCode::OperationInvalidForCurrentState)
                    .with_message("The job is not disabled.")),
            }
        })?;
        Ok(())
    }

    /// Terminates the job: running tasks are stopped, release tasks run, then `completed`.
    pub fn terminate_job(
        &self,
        account: &str,
        id: &str,
        body: Value,
        cond: &Conditions,
    ) -> BatchResult<()> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Terminate {
            terminate_reason: Option<String>,
        }
        let t: Terminate = if body.is_null() {
            Terminate {
                terminate_reason: None,
            }
        } else {
            validate::parse(body)?
        };
        self.change_job(account, id, cond, |job, now| {
            check_not_ending(job)?;
            job.execution_info.terminate_reason = Some(
                t.terminate_reason
                    .unwrap_or_else(|| "UserTerminate".to_owned()),
            );
            job.transition(JobState::Terminating, now);
            Ok(())
        })?;
        Ok(())
    }
}

/// Errors for a job that is completed, being terminated or deleted.
pub(crate) fn check_not_ending(job: &Job) -> BatchResult<()> {
    match job.state {
        JobState::Completed => Err(ErrorCode::JobCompleted.into()),
        JobState::Terminating => Err(ErrorCode::JobBeingTerminated.into()),
        JobState::Deleting => Err(ErrorCode::JobBeingDeleted.into()),
        _ => Ok(()),
    }
}

fn open_for_changes(job: &Job) -> BatchResult<()> {
    check_not_ending(job)
}

fn validate_parallel(v: Option<i32>) -> BatchResult<()> {
    match v {
        Some(n) if n == 0 || n < -1 => Err(validate::invalid(
            "maxParallelTasks",
            n,
            "maxParallelTasks must be -1 (unlimited) or greater than 0.",
        )),
        _ => Ok(()),
    }
}

fn validate_pool_info(p: &PoolInformation) -> BatchResult<()> {
    match (&p.pool_id, &p.auto_pool_specification) {
        (None, None) => Err(validate::missing("poolInfo/poolId")),
        (Some(_), Some(_)) => Err(validate::invalid(
            "poolInfo",
            "",
            "Only one of poolId and autoPoolSpecification may be specified.",
        )),
        (Some(id), None) => validate::id("poolInfo/poolId", id),
        (None, Some(_)) => Err(BatchError::new(ErrorCode::NotImplemented).with_message(
            "Cobalt does not create auto pools yet; create a pool and use poolInfo.poolId.",
        )),
    }
}

pub(crate) fn validate_job_spec(spec: &JobSpec) -> BatchResult<()> {
    validate_pool_info(&spec.pool_info)?;
    validate::range("priority", spec.priority, -1000, 1000)?;
    validate_parallel(spec.max_parallel_tasks)?;
    if let Some(c) = &spec.constraints {
        validate::range(
            "constraints/maxTaskRetryCount",
            c.max_task_retry_count,
            -1,
            i32::MAX,
        )?;
    }
    validate::environment(
        "commonEnvironmentSettings",
        &spec.common_environment_settings,
    )?;
    if let Some(t) = &spec.job_manager_task {
        for field in ["id", "commandLine"] {
            if t.get(field)
                .and_then(Value::as_str)
                .is_none_or(|s| s.trim().is_empty())
            {
                return Err(validate::missing(&format!("jobManagerTask/{field}")));
            }
        }
        if let Some(id) = t.get("id").and_then(Value::as_str) {
            validate::id("jobManagerTask/id", id)?;
        }
    }
    if let Some(t) = &spec.job_preparation_task {
        validate::required("jobPreparationTask/commandLine", &t.command_line)?;
        validate::resource_files("jobPreparationTask/resourceFiles", &t.resource_files)?;
        if let Some(id) = &t.id {
            validate::id("jobPreparationTask/id", id)?;
        }
    }
    if let Some(t) = &spec.job_release_task {
        validate::required("jobReleaseTask/commandLine", &t.command_line)?;
        validate::resource_files("jobReleaseTask/resourceFiles", &t.resource_files)?;
        if let Some(id) = &t.id {
            validate::id("jobReleaseTask/id", id)?;
        }
        if t.max_wall_clock_time
            .as_ref()
            .is_some_and(|d| d.value().as_secs() > 15 * 60)
        {
            return Err(validate::invalid(
                "jobReleaseTask/maxWallClockTime",
                t.max_wall_clock_time
                    .as_ref()
                    .map(|d| d.as_str())
                    .unwrap_or_default(),
                "The job release task may run at most 15 minutes.",
            ));
        }
        if spec.job_preparation_task.is_none() {
            return Err(validate::missing("jobPreparationTask"));
        }
    }
    Ok(())
}
