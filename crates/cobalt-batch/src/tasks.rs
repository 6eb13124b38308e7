//! Task operations: add, add collection, get, list, update, delete, terminate, reactivate,
//! and the job's task counts.

use cobalt_model::batch::{
    ErrorCategory, FailureInfo, IsoDuration, Job, JobState, OnTaskFailure, Task, TaskConstraints,
    TaskExecutionInfo, TaskResult, TaskSpec, TaskState, Timestamp, id_key,
};
use cobalt_store::{Kind, Scope, Write};
use serde::Deserialize;
use serde_json::Value;

use crate::error::{BatchError, BatchResult, ErrorCode};
use crate::jobs::check_not_ending;
use crate::service::{Batch, Change, Conditions, Page, PageRequest, encode, touch};
use crate::validate;

/// Most tasks in one add-collection request.
pub const MAX_TASKS_PER_COLLECTION: usize = 100;
/// Longest total of dependency ids of a task, in characters.
const MAX_DEPENDENCY_CHARS: usize = 64_000;

pub(crate) fn scope(account: &str, job_id: &str) -> Scope {
    Scope::under(account, Kind::Task, &id_key(job_id))
}

/// The outcome of one task of an add-collection request.
#[derive(Debug)]
pub enum TaskAddOutcome {
    /// Added.
    Added(Box<Task>),
    /// Refused; `TaskExists` and validation errors are the client's.
    Failed {
        /// The task id as sent.
        task_id: String,
        /// Why.
        error: BatchError,
    },
}

/// Task counts of a job (tasks, and task slots).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TaskCounts {
    /// Active tasks.
    pub active: u64,
    /// Running or preparing.
    pub running: u64,
    /// Completed.
    pub completed: u64,
    /// Completed with success.
    pub succeeded: u64,
    /// Completed with failure.
    pub failed: u64,
}

/// The `result` column of a task: `{result}/{requiredSlots}`, so counts group by both.
fn result_column(task: &Task) -> String {
    let result = task
        .execution_info
        .result
        .map(TaskResult::as_str)
        .unwrap_or("");
    format!("{result}/{}", task.required_slots())
}

impl Batch {
    pub(crate) fn save_task(&self, account: &str, job_id: &str, task: &Task) -> BatchResult<Write> {
        Ok(Write::Put(
            scope(account, job_id),
            encode(
                &task.spec.id,
                task.state.as_str(),
                &result_column(task),
                task,
            )?,
        ))
    }

    /// The task `task_id` of job `job_id`.
    pub fn get_task(
        &self,
        account: &str,
        job_id: &str,
        task_id: &str,
        cond: &Conditions,
    ) -> BatchResult<Task> {
        self.get_job(account, job_id, &Conditions::default())?;
        let task: Task = self
            .load(&scope(account, job_id), task_id)?
            .ok_or_else(|| BatchError::new(ErrorCode::TaskNotFound))?;
        cond.check(&task.e_tag, task.last_modified, true)?;
        Ok(task)
    }

    /// A page of the job's tasks, each mapped through `keep` (None drops it).
    pub fn list_tasks<R>(
        &self,
        account: &str,
        job_id: &str,
        page: &PageRequest,
        keep: impl FnMut(Task) -> BatchResult<Option<R>>,
    ) -> BatchResult<Page<R>> {
        self.get_job(account, job_id, &Conditions::default())?;
        self.scan(&scope(account, job_id), page, keep)
    }

    fn open_job(&self, account: &str, job_id: &str) -> BatchResult<Job> {
        let job = self.get_job(account, job_id, &Conditions::default())?;
        check_not_ending(&job)?;
        Ok(job)
    }

    /// Adds one task.
    pub fn add_task(&self, account: &str, job_id: &str, body: Value) -> BatchResult<Task> {
        let _guard = self.lock();
        let job = self.open_job(account, job_id)?;
        let exists = self
            .store
            .get(&scope(account, &job.id), &id_key(task_id_of(&body)))?
            .is_some();
        let task = self.new_task(&job, body, exists)?;
        self.apply(&[self.save_task(account, job_id, &task)?])?;
        self.attend(account, Kind::Job, &id_key(&job.id));
        self.notify_tasks(account, &job.id);
        Ok(task)
    }

    fn notify_tasks(&self, account: &str, job_id: &str) {
        self.notify(Change::Tasks {
            account: account.to_owned(),
            job: job_id.to_owned(),
        });
    }

    fn notify_stopped(&self, account: &str, job_id: &str, task_id: &str) {
        self.notify(Change::TaskStopped {
            account: account.to_owned(),
            job: job_id.to_owned(),
            task: task_id.to_owned(),
        });
    }

    /// Adds up to 100 tasks in one transaction; each gets its own outcome, in input order.
    pub fn add_tasks(
        &self,
        account: &str,
        job_id: &str,
        bodies: Vec<Value>,
    ) -> BatchResult<Vec<TaskAddOutcome>> {
        if bodies.len() > MAX_TASKS_PER_COLLECTION {
            return Err(BatchError::new(ErrorCode::RequestBodyTooLarge).with_message(format!(
                "The collection has {} tasks; at most {MAX_TASKS_PER_COLLECTION} may be added at once.",
                bodies.len()
            )));
        }
        let _guard = self.lock();
        let job = self.open_job(account, job_id)?;
        // Which ids are taken, in one query.
        let keys: Vec<String> = bodies.iter().map(|b| id_key(task_id_of(b))).collect();
        let taken = self.store.existing(&scope(account, &job.id), &keys)?;
        let mut seen = std::collections::HashSet::new();
        let mut writes = Vec::new();
        let mut outcomes = Vec::new();
        for body in bodies {
            let task_id = task_id_of(&body).to_owned();
            let key = id_key(&task_id);
            let outcome = if !seen.insert(key.clone()) && !task_id.is_empty() {
                Err(BatchError::new(ErrorCode::TaskExists))
            } else {
                let exists = taken.contains(&key);
                self.new_task(&job, body, exists)
            };
            match outcome {
                Ok(task) => {
                    writes.push(self.save_task(account, job_id, &task)?);
                    outcomes.push(TaskAddOutcome::Added(Box::new(task)));
                }
                Err(error) => outcomes.push(TaskAddOutcome::Failed { task_id, error }),
            }
        }
        self.apply(&writes)?;
        self.attend(account, Kind::Job, &id_key(&job.id));
        if !writes.is_empty() {
            self.notify_tasks(account, &job.id);
        }
        Ok(outcomes)
    }

    /// Validates a new task of `job` and fills in its defaults; `exists` (a task of its id is
    /// already there) makes it `TaskExists`.
    fn new_task(&self, job: &Job, body: Value, exists: bool) -> BatchResult<Task> {
        let mut spec: TaskSpec = validate::parse(body)?;
        validate::id("id", &spec.id)?;
        validate::required("commandLine", &spec.command_line)?;
        validate::resource_files("resourceFiles", &spec.resource_files)?;
        validate::environment("environmentSettings", &spec.environment_settings)?;
        validate::task_constraints("constraints", spec.constraints.as_ref())?;
        validate::range("requiredSlots", spec.required_slots, 1, i32::MAX)?;
        if let Some(deps) = &spec.depends_on {
            if job.spec.uses_task_dependencies != Some(true) {
                return Err(ErrorCode::TaskDependenciesNotSpecifiedOnJob.into());
            }
            let chars: usize = deps.task_ids.iter().map(String::len).sum();
            if chars > MAX_DEPENDENCY_CHARS {
                return Err(ErrorCode::TaskDependencyListTooLong.into());
            }
            for (i, r) in deps.task_id_ranges.iter().enumerate() {
                if r.start > r.end || r.start < 0 {
                    return Err(validate::invalid(
                        &format!("dependsOn/taskIdRanges[{i}]"),
                        format!("{}-{}", r.start, r.end),
                        "A range must have 0 <= start <= end.",
                    ));
                }
            }
        }
        if let Some(mi) = &spec.multi_instance_settings {
            validate::range(
                "multiInstanceSettings/numberOfInstances",
                mi.number_of_instances,
                1,
                i32::MAX,
            )?;
            if spec.required_slots.unwrap_or(1) != 1 {
                return Err(validate::invalid(
                    "requiredSlots",
                    spec.required_slots.unwrap_or(1),
                    "A multi-instance task must require exactly 1 slot.",
                ));
            }
        }
        let has_job_action = spec.exit_conditions.as_ref().is_some_and(|e| {
            e.exit_codes
                .iter()
                .map(|m| &m.exit_options)
                .chain(e.exit_code_ranges.iter().map(|m| &m.exit_options))
                .chain(e.pre_processing_error.iter())
                .chain(e.file_upload_error.iter())
                .chain(e.default.iter())
                .any(|o| {
                    o.job_action
                        .is_some_and(|a| a != cobalt_model::batch::JobAction::None)
                })
        });
        if has_job_action
            && job.spec.on_task_failure != Some(OnTaskFailure::PerformExitOptionsJobAction)
        {
            return Err(validate::invalid(
                "exitConditions",
                "jobAction",
                "A jobAction other than none requires the job's onTaskFailure to be performexitoptionsjobaction.",
            ));
        }
        if exists {
            return Err(ErrorCode::TaskExists.into());
        }
        let constraints = spec
            .constraints
            .get_or_insert_with(TaskConstraints::default);
        constraints
            .max_wall_clock_time
            .get_or_insert_with(IsoDuration::unlimited);
        constraints
            .retention_time
            .get_or_insert_with(|| IsoDuration::days(7));
        let job_retries = job
            .spec
            .constraints
            .as_ref()
            .and_then(|c| c.max_task_retry_count);
        constraints
            .max_task_retry_count
            .get_or_insert(job_retries.unwrap_or(0));
        spec.required_slots.get_or_insert(1);
        let (e_tag, now) = touch(None);
        Ok(Task {
            spec,
            e_tag,
            last_modified: now,
            creation_time: now,
            state: TaskState::Active,
            state_transition_time: now,
            previous_state: None,
            previous_state_transition_time: None,
            execution_info: TaskExecutionInfo::default(),
            node_info: None,
        })
    }

    fn change_task(
        &self,
        account: &str,
        job_id: &str,
        task_id: &str,
        cond: &Conditions,
        change: impl FnOnce(&mut Task, &Job, Timestamp) -> BatchResult<()>,
    ) -> BatchResult<Task> {
        let _guard = self.lock();
        let job = self.get_job(account, job_id, &Conditions::default())?;
        let mut task = self.get_task(account, job_id, task_id, &Conditions::default())?;
        cond.check(&task.e_tag, task.last_modified, false)?;
        change(&mut task, &job, Timestamp::now())?;
        let (e_tag, now) = touch(Some(&task.e_tag));
        task.e_tag = e_tag;
        task.last_modified = now;
        self.apply(&[self.save_task(account, job_id, &task)?])?;
        self.attend(account, Kind::Job, &id_key(&job.id));
        Ok(task)
    }

    /// `PUT /jobs/{job}/tasks/{task}`: replaces the constraints (absent: defaults).
    pub fn update_task(
        &self,
        account: &str,
        job_id: &str,
        task_id: &str,
        body: Value,
        cond: &Conditions,
    ) -> BatchResult<Task> {
        #[derive(Deserialize)]
        struct Update {
            constraints: Option<TaskConstraints>,
        }
        let update: Update = validate::parse(body)?;
        validate::task_constraints("constraints", update.constraints.as_ref())?;
        self.change_task(account, job_id, task_id, cond, |task, job, _| {
            if task.state == TaskState::Completed {
                return Err(ErrorCode::TaskCompleted.into());
            }
            let mut c = update.constraints.unwrap_or_default();
            c.max_wall_clock_time
                .get_or_insert_with(IsoDuration::unlimited);
            c.retention_time.get_or_insert_with(|| IsoDuration::days(7));
            let job_retries = job
                .spec
                .constraints
                .as_ref()
                .and_then(|c| c.max_task_retry_count);
            c.max_task_retry_count
                .get_or_insert(job_retries.unwrap_or(0));
            task.spec.constraints = Some(c);
            Ok(())
        })
    }

    /// Terminates a task that has not completed: it completes with a failure.
    pub fn terminate_task(
        &self,
        account: &str,
        job_id: &str,
        task_id: &str,
        cond: &Conditions,
    ) -> BatchResult<()> {
        self.change_task(account, job_id, task_id, cond, |task, job, now| {
            check_not_ending(job)?;
            if task.state == TaskState::Completed {
                return Err(ErrorCode::TaskCompleted.into());
            }
            task.transition(TaskState::Completed, now);
            let info = &mut task.execution_info;
            info.end_time = Some(now);
            info.result = Some(TaskResult::Failure);
            info.failure_info = Some(FailureInfo {
                category: ErrorCategory::UserError,
                code: Some("TaskEnded".to_owned()),
                message: Some("Task Was Ended by User Request".to_owned()),
                details: Vec::new(),
            });
            Ok(())
        })?;
        self.notify_stopped(account, job_id, task_id);
        Ok(())
    }

    /// Reactivates a task that completed with a failure: it is queued again, retries reset.
    pub fn reactivate_task(
        &self,
        account: &str,
        job_id: &str,
        task_id: &str,
        cond: &Conditions,
    ) -> BatchResult<()> {
        self.change_task(account, job_id, task_id, cond, |task, job, now| {
            check_not_ending(job)?;
            if task.state != TaskState::Completed {
                return Err(ErrorCode::TaskNotCompleted.into());
            }
            if task.execution_info.result != Some(TaskResult::Failure) {
                return Err(ErrorCode::TaskSucceeded.into());
            }
            task.transition(TaskState::Active, now);
            task.execution_info = TaskExecutionInfo::default();
            task.node_info = None;
            Ok(())
        })?;
        self.notify_tasks(account, job_id);
        Ok(())
    }

    /// Deletes a task (and, once nodes run tasks, stops it).
    pub fn delete_task(
        &self,
        account: &str,
        job_id: &str,
        task_id: &str,
        cond: &Conditions,
    ) -> BatchResult<()> {
        let _guard = self.lock();
        let job = self.get_job(account, job_id, &Conditions::default())?;
        if job.state == JobState::Deleting {
            return Err(ErrorCode::JobBeingDeleted.into());
        }
        let task = self.get_task(account, job_id, task_id, &Conditions::default())?;
        cond.check(&task.e_tag, task.last_modified, false)?;
        self.apply(&[Write::Delete(scope(account, job_id), id_key(task_id))])?;
        self.attend(account, Kind::Job, &id_key(&job.id));
        self.notify_stopped(account, job_id, task_id);
        Ok(())
    }

    /// Task and task-slot counts of a job.
    pub fn task_counts(
        &self,
        account: &str,
        job_id: &str,
    ) -> BatchResult<(TaskCounts, TaskCounts)> {
        self.get_job(account, job_id, &Conditions::default())?;
        let mut tasks = TaskCounts::default();
        let mut slots = TaskCounts::default();
        for c in self.store.count(&scope(account, job_id))? {
            let (result, n_slots) = c.result.split_once('/').unwrap_or((c.result.as_str(), "1"));
            let n_slots = n_slots.parse::<u64>().unwrap_or(1) * c.count;
            for (counts, n) in [(&mut tasks, c.count), (&mut slots, n_slots)] {
                match c.state.as_str() {
                    "active" => counts.active += n,
                    "running" | "preparing" => counts.running += n,
                    "completed" => {
                        counts.completed += n;
                        match result {
                            "success" => counts.succeeded += n,
                            "failure" => counts.failed += n,
                            _ => {}
                        }
                    }
                    _ => {}
                }
            }
        }
        Ok((tasks, slots))
    }
}

/// The `id` of a task's JSON, or "" (validation reports it).
fn task_id_of(body: &Value) -> &str {
    body.get("id").and_then(Value::as_str).unwrap_or_default()
}
