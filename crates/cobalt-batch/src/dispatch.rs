//! The control plane's side of running tasks: which tasks may run on a pool now, and the
//! state changes of runs (start, end, requeue, stop), each batch in one transaction. The
//! dispatcher (`cobalt-nodes`) decides placement and talks to the agents; the rules —
//! priorities, `maxParallelTasks`, dependencies, retries, exit conditions, job actions — are
//! applied here so that they hold whoever calls.

use std::collections::HashSet;

use cobalt_model::batch::{
    DependencyAction, ErrorCategory, ExitOptions, FailureInfo, Job, JobAction, JobState, Node,
    NodeInfo, OnTaskFailure, Task, TaskResult, TaskState, Timestamp, id_key,
};
use cobalt_store::{Durability, Kind, Write};

use crate::error::BatchResult;
use crate::jobs;
use crate::service::{Batch, Change, PageRequest, TaskKey, touch};
use crate::tasks;

/// A task about to run on a node.
#[derive(Clone, Debug)]
pub struct RunStart {
    /// Its job.
    pub job_id: String,
    /// The task.
    pub task_id: String,
    /// Where it runs.
    pub node_info: NodeInfo,
}

/// How a run ended, as the agent saw it.
#[derive(Clone, Debug)]
pub struct RunOutcome {
    /// Its job.
    pub job_id: String,
    /// The task.
    pub task_id: String,
    /// The node it ran on.
    pub node_id: String,
    /// When the command started (None: it never did).
    pub start_time: Option<Timestamp>,
    /// When the run ended.
    pub end_time: Timestamp,
    /// The exit code, if the program exited.
    pub exit_code: Option<i32>,
    /// What went wrong besides a non-zero exit.
    pub failure_info: Option<FailureInfo>,
    /// A resource file failed: the command never ran.
    pub pre_processing_error: bool,
    /// An output file failed to upload.
    pub file_upload_error: bool,
    /// Where the run began, when its task was not marked `running` yet (the run began and
    /// ended before the dispatcher flushed its start): the task goes from `active` straight
    /// through `running` to its end, in one write.
    pub began: Option<NodeInfo>,
}

/// What [`Batch::record_runs`] did.
#[derive(Clone, Debug, Default)]
pub struct RunsRecorded {
    /// The (job, task) id keys of the runs started (the others' tasks were no longer active:
    /// terminated, deleted, their job stopped).
    pub started: Vec<(String, String)>,
    /// What became of each outcome's task, in order.
    pub fates: Vec<RunFate>,
}

/// The writes of ended runs, and what follows once they are committed.
#[derive(Default)]
struct Finished {
    fates: Vec<RunFate>,
    job_actions: Vec<(String, JobAction)>,
    touched_jobs: Vec<String>,
}

/// What became of a run's task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunFate {
    /// Completed with this result.
    Completed(TaskResult),
    /// Queued again for a retry.
    Retried,
    /// The run was stale (the task was terminated, deleted or moved meanwhile).
    Ignored,
}

/// Runnable tasks of one job, best first.
#[derive(Clone, Debug)]
pub struct RunnableJob {
    /// The job.
    pub job: Job,
    /// Its runnable tasks, in order.
    pub tasks: Vec<Task>,
}

/// A task starts running on a node.
fn begin(task: &mut Task, node_info: NodeInfo, now: Timestamp) {
    task.transition(TaskState::Running, now);
    let info = &mut task.execution_info;
    info.start_time = Some(now);
    info.end_time = None;
    info.exit_code = None;
    info.failure_info = None;
    info.result = None;
    if info.retry_count > 0 {
        info.last_retry_time = Some(now);
    }
    task.node_info = Some(node_info);
}

fn failed(outcome: &RunOutcome) -> bool {
    outcome.exit_code != Some(0)
        || outcome.failure_info.is_some()
        || outcome.pre_processing_error
        || outcome.file_upload_error
}

/// The exit options that apply to a completed task: Azure's order is exit codes, ranges,
/// pre-processing error, file upload error, then default; without a match, success means no
/// action and satisfied dependents, failure means terminate and blocked dependents.
pub fn exit_options(task: &Task) -> ExitOptions {
    let info = &task.execution_info;
    let success = info.result == Some(TaskResult::Success);
    let fallback = ExitOptions {
        job_action: Some(if success {
            JobAction::None
        } else {
            JobAction::Terminate
        }),
        dependency_action: Some(if success {
            DependencyAction::Satisfy
        } else {
            DependencyAction::Block
        }),
    };
    let Some(c) = &task.spec.exit_conditions else {
        return fallback;
    };
    let pre = info
        .failure_info
        .as_ref()
        .and_then(|f| f.code.as_deref())
        .is_some_and(is_pre_processing_code);
    let found = match info.exit_code {
        Some(code) => c
            .exit_codes
            .iter()
            .find(|m| m.code == code)
            .map(|m| m.exit_options.clone())
            .or_else(|| {
                c.exit_code_ranges
                    .iter()
                    .find(|r| r.start <= code && code <= r.end)
                    .map(|r| r.exit_options.clone())
            }),
        None => None,
    };
    let found = found
        .or_else(|| pre.then(|| c.pre_processing_error.clone()).flatten())
        .or_else(|| {
            let upload = info.failure_info.as_ref().and_then(|f| f.code.as_deref())
                == Some(FILE_UPLOAD_CODE);
            upload.then(|| c.file_upload_error.clone()).flatten()
        })
        .or_else(|| if success { None } else { c.default.clone() });
    match found {
        Some(o) => ExitOptions {
            job_action: o.job_action.or(fallback.job_action),
            dependency_action: o.dependency_action.or(fallback.dependency_action),
        },
        None => fallback,
    }
}

/// The failure code of an output file upload failure.
pub const FILE_UPLOAD_CODE: &str = "FileUploadMiscError";

fn is_pre_processing_code(code: &str) -> bool {
    matches!(
        code,
        "BlobNotFound"
            | "BlobAccessDenied"
            | "BlobDownloadMiscError"
            | "BlobDownloadTimedOut"
            | "ResourceFileCreateFailed"
    )
}

impl Batch {
    /// The active jobs on `pool_id`, best first: priority (higher first), then age.
    pub fn pool_jobs(&self, account: &str, pool_id: &str) -> BatchResult<Vec<Job>> {
        let mut jobs: Vec<Job> = Vec::new();
        let mut page = PageRequest {
            limit: 1000,
            state: Some("active".to_owned()),
            ..PageRequest::default()
        };
        loop {
            let p = self.scan(&jobs::scope(account), &page, |j: Job| {
                let here = j
                    .spec
                    .pool_info
                    .pool_id
                    .as_deref()
                    .is_some_and(|p| p.eq_ignore_ascii_case(pool_id));
                Ok(here.then_some(j))
            })?;
            jobs.extend(p.items);
            match p.next {
                Some(next) => page.after = Some(next),
                None => break,
            }
        }
        jobs.sort_by(|a, b| {
            b.spec
                .priority
                .unwrap_or(0)
                .cmp(&a.spec.priority.unwrap_or(0))
                .then(a.creation_time.cmp(&b.creation_time))
        });
        Ok(jobs)
    }

    /// Up to `limit` tasks that may start now among `jobs` (from [`Batch::pool_jobs`], in
    /// order): each job's active tasks whose dependencies are met, within its
    /// `maxParallelTasks`.
    pub fn runnable(
        &self,
        account: &str,
        jobs: &[Job],
        limit: usize,
        queued: &HashSet<(String, String)>,
    ) -> BatchResult<Vec<RunnableJob>> {
        // Copies of the tasks found are cached for `record_runs` if nothing is written meanwhile.
        let seen = self.generation();
        let mut out = Vec::new();
        let mut left = limit;
        for job in jobs {
            if left == 0 {
                break;
            }
            let mut allowance = left;
            if let Some(max) = job.spec.max_parallel_tasks.filter(|m| *m > 0) {
                let job_key = id_key(&job.id);
                let waiting = queued.iter().filter(|(j, _)| *j == job_key).count();
                let running: u64 = self
                    .store
                    .count(&tasks::scope(account, &job.id))?
                    .iter()
                    .filter(|c| c.state == "running" || c.state == "preparing")
                    .map(|c| c.count)
                    .sum::<u64>()
                    + u64::try_from(waiting).unwrap_or(0);
                let max = u64::try_from(max).unwrap_or(0);
                allowance =
                    allowance.min(usize::try_from(max.saturating_sub(running)).unwrap_or(0));
            }
            if allowance == 0 {
                continue;
            }
            let tasks = self.runnable_tasks(account, job, allowance, queued)?;
            self.cache_tasks(seen, account, &job.id, &tasks);
            left -= tasks.len();
            if !tasks.is_empty() {
                out.push(RunnableJob {
                    job: job.clone(),
                    tasks,
                });
            }
        }
        Ok(out)
    }

    fn runnable_tasks(
        &self,
        account: &str,
        job: &Job,
        limit: usize,
        queued: &HashSet<(String, String)>,
    ) -> BatchResult<Vec<Task>> {
        let scope = tasks::scope(account, &job.id);
        let job_key = id_key(&job.id);
        let mut found = Vec::new();
        let mut after: Option<String> = None;
        loop {
            // Keys first, as many as are queued and a few more than `limit` in case some wait
            // for their dependencies: the queued ones (most of what the scan finds under load)
            // are skipped without reading their records.
            let want = (limit - found.len() + queued.len()).clamp(8, 256);
            let keys = self
                .store
                .keys_in_state(&scope, "active", after.as_deref(), want)?;
            let done = keys.len() < want;
            for key in keys {
                if queued.contains(&(job_key.clone(), key.clone())) {
                    after = Some(key);
                    continue;
                }
                // Gone or no longer active since the keys were read: not runnable.
                let record = self.store.get(&scope, &key)?;
                after = Some(key);
                let Some(record) = record.filter(|r| r.state == "active") else {
                    continue;
                };
                let task: Task = crate::service::decode(&record)?;
                if self.dependencies_met(account, job, &task)? {
                    found.push(task);
                    if found.len() == limit {
                        return Ok(found);
                    }
                }
            }
            if done {
                return Ok(found);
            }
        }
    }

    fn dependencies_met(&self, account: &str, job: &Job, task: &Task) -> BatchResult<bool> {
        let Some(deps) = &task.spec.depends_on else {
            return Ok(true);
        };
        let scope = tasks::scope(account, &job.id);
        let ranges = deps
            .task_id_ranges
            .iter()
            .flat_map(|r| (r.start..=r.end).map(|i| i.to_string()));
        for id in deps.task_ids.iter().cloned().chain(ranges) {
            let Some(parent) = self.load::<Task>(&scope, &id)? else {
                return Ok(false);
            };
            if parent.state != TaskState::Completed
                || exit_options(&parent).dependency_action != Some(DependencyAction::Satisfy)
            {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Records a turn's runs in one transaction (deferred when it only starts runs: a start is
    /// rebuilt after a crash; flushed within [`cobalt_store::SYNC_WINDOW`] when a run ended:
    /// should the machine crash before, the task runs again, as after a lost node):
    /// - `starts` mark tasks `running` on their nodes; [`RunsRecorded::started`] lists those
    ///   still active (the others were terminated or deleted meanwhile);
    /// - `outcomes` record how runs ended: completion or retry, exit conditions and job
    ///   actions; stale runs (the task is no longer running on that node) are ignored.
    ///
    /// A run is either started or finished in one call, not both (an outcome's `began` covers
    /// that).
    /// `nodes` (pool id, node record) are saved in the same transaction, so a node's counters
    /// never lag the tasks it ran.
    pub fn record_runs(
        &self,
        account: &str,
        starts: Vec<RunStart>,
        outcomes: Vec<RunOutcome>,
        nodes: &[(String, Node)],
    ) -> BatchResult<RunsRecorded> {
        let _guard = self.lock();
        let now = Timestamp::now();
        let mut writes = Vec::new();
        let mut keep = Vec::new();
        let started = self.start_writes(account, starts, now, &mut writes, &mut keep)?;
        let durability = if outcomes.is_empty() {
            Durability::Deferred
        } else {
            Durability::Soon
        };
        let finished = self.finish_writes(account, outcomes, now, &mut writes)?;
        for (pool_id, node) in nodes {
            writes.push(crate::nodes::node_write(
                &crate::nodes::scope(account, pool_id),
                node,
            )?);
        }
        self.commit(&writes, durability, keep)?;
        for (job_id, action) in finished.job_actions {
            self.apply_job_action(account, &job_id, action, now)?;
        }
        for job in finished.touched_jobs {
            self.attend(account, Kind::Job, &id_key(&job));
            // Dependents may have become runnable.
            self.notify(Change::Tasks {
                account: account.to_owned(),
                job,
            });
        }
        Ok(RunsRecorded {
            started,
            fates: finished.fates,
        })
    }

    /// The writes that mark tasks `running`, and copies of them to cache (their runs' ends
    /// write them again).
    fn start_writes(
        &self,
        account: &str,
        starts: Vec<RunStart>,
        now: Timestamp,
        writes: &mut Vec<Write>,
        keep: &mut Vec<(TaskKey, Task)>,
    ) -> BatchResult<Vec<(String, String)>> {
        let mut started = Vec::new();
        for s in starts {
            let job_key = id_key(&s.job_id);
            // A disabled job lets the runs it has finish (disable with `wait`), and so a run
            // its agent began as it was asked back: any other was stopped with the job.
            let job_runs = self.current_job(account, &s.job_id)?.is_some_and(|j| {
                matches!(
                    j.state,
                    JobState::Active
                        | JobState::Enabling
                        | JobState::Disabling
                        | JobState::Disabled
                )
            });
            if !job_runs {
                continue;
            }
            let Some(mut task) = self.task_to_write(account, &s.job_id, &s.task_id)? else {
                continue;
            };
            if task.state != TaskState::Active {
                continue;
            }
            begin(&mut task, s.node_info, now);
            let (e_tag, stamp) = touch(Some(&task.e_tag));
            task.e_tag = e_tag;
            task.last_modified = stamp;
            writes.push(self.save_task(account, &s.job_id, &task)?);
            let task_key = id_key(&task.spec.id);
            started.push((job_key.clone(), task_key.clone()));
            keep.push(((account.to_owned(), job_key, task_key), task));
        }
        Ok(started)
    }

    /// A task the dispatcher is about to write: its cached copy, else the stored one.
    fn task_to_write(
        &self,
        account: &str,
        job_id: &str,
        task_id: &str,
    ) -> BatchResult<Option<Task>> {
        match self.take_cached_task(account, job_id, task_id) {
            Some(task) => Ok(Some(task)),
            None => self.load::<Task>(&tasks::scope(account, job_id), task_id),
        }
    }

    /// The writes that record how runs ended, and what follows from them once committed.
    fn finish_writes(
        &self,
        account: &str,
        outcomes: Vec<RunOutcome>,
        now: Timestamp,
        writes: &mut Vec<Write>,
    ) -> BatchResult<Finished> {
        let mut finished = Finished::default();
        for o in outcomes {
            let mut task = self.task_to_write(account, &o.job_id, &o.task_id)?;
            // A run that began and ended before its start was written: start it here.
            if let (Some(t), Some(node_info)) = (task.as_mut(), &o.began)
                && t.state == TaskState::Active
            {
                begin(t, node_info.clone(), now);
            }
            let Some(mut task) = task.filter(|t| {
                t.state == TaskState::Running
                    && t.node_info.as_ref().and_then(|n| n.node_id.as_deref())
                        == Some(o.node_id.as_str())
            }) else {
                finished.fates.push(RunFate::Ignored);
                continue;
            };
            let fate = self.apply_outcome(&mut task, &o, now);
            let (e_tag, stamp) = touch(Some(&task.e_tag));
            task.e_tag = e_tag;
            task.last_modified = stamp;
            writes.push(self.save_task(account, &o.job_id, &task)?);
            if let RunFate::Completed(_) = fate {
                if let Some(job) = self.current_job(account, &o.job_id)?
                    && job.spec.on_task_failure == Some(OnTaskFailure::PerformExitOptionsJobAction)
                    && let Some(action) = exit_options(&task)
                        .job_action
                        .filter(|a| *a != JobAction::None)
                {
                    finished.job_actions.push((o.job_id.clone(), action));
                }
                finished.touched_jobs.push(o.job_id.clone());
            }
            finished.fates.push(fate);
        }
        finished.touched_jobs.sort();
        finished.touched_jobs.dedup();
        Ok(finished)
    }

    fn apply_outcome(&self, task: &mut Task, o: &RunOutcome, now: Timestamp) -> RunFate {
        let info = &mut task.execution_info;
        if o.start_time.is_some() {
            info.start_time = o.start_time;
        }
        info.end_time = Some(o.end_time);
        info.exit_code = o.exit_code;
        let max_retries = task
            .spec
            .constraints
            .as_ref()
            .and_then(|c| c.max_task_retry_count)
            .unwrap_or(0);
        let retry_left = max_retries == -1 || info.retry_count < max_retries;
        if !failed(o) {
            info.result = Some(TaskResult::Success);
            info.failure_info = None;
            task.transition(TaskState::Completed, now);
            return RunFate::Completed(TaskResult::Success);
        }
        // Only a non-zero exit is retried; pre-processing and upload errors are not.
        let retryable = o.exit_code.is_some_and(|c| c != 0)
            && o.failure_info.is_none()
            && !o.pre_processing_error
            && !o.file_upload_error;
        if retryable && retry_left {
            info.retry_count += 1;
            info.last_retry_time = Some(now);
            task.transition(TaskState::Active, now);
            return RunFate::Retried;
        }
        info.result = Some(TaskResult::Failure);
        info.failure_info = Some(
            o.failure_info
                .clone()
                .unwrap_or_else(|| FailureInfo::exit_code(o.exit_code.unwrap_or(-1))),
        );
        task.transition(TaskState::Completed, now);
        RunFate::Completed(TaskResult::Failure)
    }

    fn apply_job_action(
        &self,
        account: &str,
        job_id: &str,
        action: JobAction,
        now: Timestamp,
    ) -> BatchResult<()> {
        let Some(mut job) = self.load::<Job>(&jobs::scope(account), job_id)? else {
            return Ok(());
        };
        let next = match (action, job.state) {
            (
                JobAction::Terminate,
                JobState::Active | JobState::Disabled | JobState::Disabling | JobState::Enabling,
            ) => {
                job.execution_info.terminate_reason = Some("TaskFailed".to_owned());
                JobState::Terminating
            }
            (JobAction::Disable, JobState::Active) => JobState::Disabling,
            _ => return Ok(()),
        };
        job.transition(next, now);
        let (e_tag, stamp) = touch(Some(&job.e_tag));
        job.e_tag = e_tag;
        job.last_modified = stamp;
        self.apply(&[self.save_job(account, &job)?])?;
        self.attend(account, Kind::Job, &id_key(job_id));
        self.notify(Change::Job {
            account: account.to_owned(),
            job: job.id.clone(),
        });
        Ok(())
    }

    /// Puts running tasks back in the queue: `counted` (the user's requeue: node removal, job
    /// disable) raises `requeueCount`; a recovery (lost node, server restart) counts nothing.
    pub fn requeue_runs(
        &self,
        account: &str,
        runs: Vec<(String, String)>,
        counted: bool,
    ) -> BatchResult<()> {
        let _guard = self.lock();
        let now = Timestamp::now();
        let mut writes = Vec::new();
        let mut jobs = Vec::new();
        for (job_id, task_id) in runs {
            let Some(mut task) = self.load::<Task>(&tasks::scope(account, &job_id), &task_id)?
            else {
                continue;
            };
            if !matches!(task.state, TaskState::Running | TaskState::Preparing) {
                continue;
            }
            task.transition(TaskState::Active, now);
            if counted {
                task.execution_info.requeue_count += 1;
                task.execution_info.last_requeue_time = Some(now);
            }
            task.node_info = None;
            let (e_tag, stamp) = touch(Some(&task.e_tag));
            task.e_tag = e_tag;
            task.last_modified = stamp;
            writes.push(self.save_task(account, &job_id, &task)?);
            jobs.push(job_id);
        }
        self.apply(&writes)?;
        jobs.sort();
        jobs.dedup();
        for job in jobs {
            self.notify(Change::Tasks {
                account: account.to_owned(),
                job,
            });
        }
        Ok(())
    }

    /// Ends running tasks that were stopped (their job terminated or disabled with
    /// `terminate`): they complete with a failure `TaskEnded`.
    pub fn end_runs(
        &self,
        account: &str,
        runs: Vec<(String, String)>,
        reason: &str,
    ) -> BatchResult<()> {
        let _guard = self.lock();
        let now = Timestamp::now();
        let mut writes = Vec::new();
        let mut jobs = Vec::new();
        for (job_id, task_id) in runs {
            let Some(mut task) = self.load::<Task>(&tasks::scope(account, &job_id), &task_id)?
            else {
                continue;
            };
            if !matches!(task.state, TaskState::Running | TaskState::Preparing) {
                continue;
            }
            task.transition(TaskState::Completed, now);
            let info = &mut task.execution_info;
            info.end_time = Some(now);
            info.result = Some(TaskResult::Failure);
            info.failure_info = Some(FailureInfo {
                category: ErrorCategory::UserError,
                code: Some("TaskEnded".to_owned()),
                message: Some(reason.to_owned()),
                details: Vec::new(),
            });
            let (e_tag, stamp) = touch(Some(&task.e_tag));
            task.e_tag = e_tag;
            task.last_modified = stamp;
            writes.push(self.save_task(account, &job_id, &task)?);
            jobs.push(job_id.clone());
        }
        self.apply(&writes)?;
        // Their jobs may now be complete (onAllTasksComplete).
        jobs.sort();
        jobs.dedup();
        for job in jobs {
            self.attend(account, Kind::Job, &id_key(&job));
        }
        Ok(())
    }

    /// Every task in `running` or `preparing` of the account (for recovery at startup).
    pub fn running_tasks(&self, account: &str) -> BatchResult<Vec<(String, String)>> {
        let mut out = Vec::new();
        let mut page = PageRequest {
            limit: 1000,
            ..PageRequest::default()
        };
        loop {
            let p = self.list_jobs(account, &page, |j| Ok(Some(j.id)))?;
            for job in &p.items {
                for state in ["running", "preparing"] {
                    let mut after: Option<String> = None;
                    loop {
                        let batch = self.store.list(
                            &tasks::scope(account, job),
                            after.as_deref(),
                            Some(state),
                            1000,
                        )?;
                        let done = batch.len() < 1000;
                        for r in &batch {
                            let t: Task = crate::service::decode(r)?;
                            out.push((job.clone(), t.spec.id));
                            after = Some(r.key.clone());
                        }
                        if done {
                            break;
                        }
                    }
                }
            }
            match p.next {
                Some(next) => page.after = Some(next),
                None => return Ok(out),
            }
        }
    }
}
