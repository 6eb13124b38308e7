//! Moving transient states forward: pools and jobs being deleted disappear, jobs being
//! disabled, enabled or terminated settle, jobs with `onAllTasksComplete=terminatejob` complete,
//! and job schedules create their jobs on time. [`Batch::tick`] is called periodically by the
//! server; it only looks at entities an operation marked for attention (or that were unsettled
//! at startup), so its cost does not grow with the number of settled entities.

use cobalt_model::batch::{
    AllocationState, Job, JobSchedule, JobScheduleState, JobState, OnAllTasksComplete, Pool,
    PoolState, RecentJob, Timestamp, id_key,
};
use cobalt_store::{Kind, Scope, Write};

use crate::error::BatchResult;
use crate::service::{Batch, Change, PageRequest, decode, touch};
use crate::{jobs, schedules, tasks};

impl Batch {
    /// Marks for attention every unsettled entity of `account` (used at startup).
    pub(crate) fn recover(&self, account: &str) -> BatchResult<()> {
        let all = PageRequest {
            limit: 1000,
            ..PageRequest::default()
        };
        for kind in [Kind::Pool, Kind::Job, Kind::JobSchedule] {
            let mut page = all.clone();
            loop {
                let records = self.store.list(
                    &Scope::top(account, kind),
                    page.after.as_deref(),
                    None,
                    page.limit,
                )?;
                let done = records.len() < page.limit;
                for r in &records {
                    if !matches!(r.state.as_str(), "completed" | "disabled") {
                        self.attend(account, kind, &r.key);
                    }
                }
                page.after = records.last().map(|r| r.key.clone());
                if done {
                    break;
                }
            }
        }
        Ok(())
    }

    /// Advances every entity that needs it. Errors are logged and retried on the next tick.
    pub fn tick(&self) {
        let items: Vec<_> = {
            let mut set = self.attention.lock().unwrap_or_else(|p| p.into_inner());
            set.drain().collect()
        };
        for (account, kind, key) in items {
            let settled = match kind {
                Kind::Pool => self.tick_pool(&account, &key),
                Kind::Job => self.tick_job(&account, &key),
                Kind::JobSchedule => self.tick_schedule(&account, &key),
                Kind::Task | Kind::Node => Ok(true),
            };
            match settled {
                Ok(true) => {}
                Ok(false) => self.attend(&account, kind, &key),
                Err(e) => {
                    tracing::warn!(
                        ?kind,
                        key,
                        code = e.code.as_str(),
                        "lifecycle step failed; retrying"
                    );
                    self.attend(&account, kind, &key);
                }
            }
        }
    }

    fn tick_pool(&self, account: &str, key: &str) -> BatchResult<bool> {
        let _guard = self.lock();
        let Some(mut pool) = self.load::<Pool>(&Scope::top(account, Kind::Pool), key)? else {
            return Ok(true);
        };
        if pool.state == PoolState::Deleting {
            // The dispatcher makes the nodes leave and removes their records; the pool goes
            // once none is left.
            let nodes = self
                .store
                .list(&Scope::under(account, Kind::Node, key), None, None, 1)?;
            if !nodes.is_empty() {
                return Ok(false);
            }
            self.apply(&[Write::Delete(
                Scope::top(account, Kind::Pool),
                key.to_owned(),
            )])?;
            self.notify(Change::Pool {
                account: account.to_owned(),
                pool: pool.spec.id.clone(),
            });
            return Ok(true);
        }
        let reached = pool.current_dedicated_nodes == pool.spec.target_dedicated_nodes.unwrap_or(0)
            && pool.current_low_priority_nodes == pool.spec.target_low_priority_nodes.unwrap_or(0);
        let settle = match pool.allocation_state {
            AllocationState::Stopping => true,
            AllocationState::Resizing => reached,
            AllocationState::Steady => return Ok(true),
        };
        if !settle {
            return Ok(false);
        }
        // A pool's lastModified and ETag follow pool-level data (targets, settings), not the
        // service's allocation progress.
        pool.allocation_state = AllocationState::Steady;
        pool.allocation_state_transition_time = Timestamp::now();
        let write = Write::Put(
            Scope::top(account, Kind::Pool),
            crate::service::encode(&pool.spec.id, "active", "", &pool)?,
        );
        self.apply(&[write])?;
        Ok(true)
    }

    fn tick_job(&self, account: &str, key: &str) -> BatchResult<bool> {
        let _guard = self.lock();
        let Some(mut job) = self.load::<Job>(&jobs::scope(account), key)? else {
            return Ok(true);
        };
        let now = Timestamp::now();
        match job.state {
            JobState::Deleting => {
                self.apply(&[
                    Write::DeleteAll(tasks::scope(account, key)),
                    Write::Delete(jobs::scope(account), key.to_owned()),
                ])?;
                return Ok(true);
            }
            JobState::Disabling => job.transition(JobState::Disabled, now),
            JobState::Enabling => job.transition(JobState::Active, now),
            // Running tasks are stopped and release tasks run first, once nodes run tasks.
            JobState::Terminating => complete(&mut job, now),
            JobState::Active | JobState::Disabled => {
                // The job's maxWallClockTime counts from its creation; a job with one stays
                // under attention until it ends.
                let limit = job
                    .spec
                    .constraints
                    .as_ref()
                    .and_then(|c| c.max_wall_clock_time.as_ref())
                    .and_then(|d| chrono::Duration::from_std(d.value()).ok())
                    .filter(|d| *d < chrono::Duration::days(3650));
                let expired = limit.is_some_and(|d| now.0 >= job.creation_time.0 + d);
                if expired {
                    job.execution_info.terminate_reason = Some("MaxWallClockTimeExpiry".to_owned());
                    job.transition(JobState::Terminating, now);
                } else {
                    let all_done = job.spec.on_all_tasks_complete
                        == Some(OnAllTasksComplete::TerminateJob)
                        && {
                            let (counts, _) = self.task_counts(account, &job.id)?;
                            counts.active + counts.running == 0
                        };
                    if !all_done {
                        return Ok(limit.is_none());
                    }
                    job.execution_info.terminate_reason = Some("AllTasksComplete".to_owned());
                    complete(&mut job, now);
                }
            }
            JobState::Completed => return Ok(true),
        }
        let (e_tag, now) = touch(Some(&job.e_tag));
        job.e_tag = e_tag;
        job.last_modified = now;
        self.apply(&[self.save_job(account, &job)?])?;
        self.notify(Change::Job {
            account: account.to_owned(),
            job: job.id.clone(),
        });
        Ok(false)
    }

    /// Jobs created by schedule `key`, in id order.
    fn schedule_jobs(&self, account: &str, key: &str) -> BatchResult<Vec<Job>> {
        let prefix = format!("{key}:job-");
        let mut after = format!("{key}:");
        let mut out = Vec::new();
        loop {
            let records = self
                .store
                .list(&jobs::scope(account), Some(&after), None, 1000)?;
            let done = records.len() < 1000;
            for r in &records {
                if !r.key.starts_with(&prefix) {
                    return Ok(out);
                }
                out.push(decode(r)?);
                after.clone_from(&r.key);
            }
            if done {
                return Ok(out);
            }
        }
    }

    fn tick_schedule(&self, account: &str, key: &str) -> BatchResult<bool> {
        let _guard = self.lock();
        let Some(mut s) = self.load::<JobSchedule>(&schedules::scope(account), key)? else {
            return Ok(true);
        };
        let now = Timestamp::now();
        let jobs = self.schedule_jobs(account, key)?;
        match s.state {
            JobScheduleState::Deleting => {
                let mut writes = Vec::new();
                for job in &jobs {
                    let job_key = id_key(&job.id);
                    writes.push(Write::DeleteAll(tasks::scope(account, &job_key)));
                    writes.push(Write::Delete(jobs::scope(account), job_key));
                }
                writes.push(Write::Delete(schedules::scope(account), key.to_owned()));
                self.apply(&writes)?;
                return Ok(true);
            }
            JobScheduleState::Terminating => {
                let mut writes = Vec::new();
                for mut job in jobs.into_iter().filter(Job::is_open) {
                    job.execution_info.terminate_reason = Some("TerminateJobSchedule".to_owned());
                    job.transition(JobState::Terminating, now);
                    writes.push(self.save_job(account, &job)?);
                    self.attend(account, Kind::Job, &id_key(&job.id));
                }
                s.transition(JobScheduleState::Completed, now);
                s.execution_info.end_time = Some(now);
                s.execution_info.next_run_time = None;
                writes.push(self.save_schedule(account, &s)?);
                self.apply(&writes)?;
                return Ok(true);
            }
            JobScheduleState::Completed | JobScheduleState::Disabled => return Ok(true),
            JobScheduleState::Active => {}
        }
        let running = jobs.iter().any(|j| j.state != JobState::Completed);
        let Some(due) = s.execution_info.next_run_time else {
            if !running {
                s.transition(JobScheduleState::Completed, now);
                s.execution_info.end_time = Some(now);
                self.apply(&[self.save_schedule(account, &s)?])?;
                return Ok(true);
            }
            return Ok(false);
        };
        if due > now || running {
            // At most one active job per schedule: a due job waits for the previous one.
            if running && missed_window(&s, due, now) {
                s.execution_info.next_run_time = next_after(&s, due, now);
                self.apply(&[self.save_schedule(account, &s)?])?;
            }
            return Ok(false);
        }
        // The job and the schedule's `recentJob` go in one transaction: a client that finds
        // the job finds the schedule naming it.
        let mut writes = Vec::new();
        let mut created = None;
        if missed_window(&s, due, now) {
            s.execution_info.next_run_time = next_after(&s, due, now);
        } else {
            let job_id = s.next_job_id();
            let job = Self::new_job(job_id.clone(), s.job_specification.clone())?;
            writes.push(self.save_job(account, &job)?);
            s.execution_info.recent_job = Some(RecentJob {
                id: job_id,
                url: None,
            });
            s.execution_info.next_run_time = next_after(&s, due, now);
            created = Some(job);
        }
        let (e_tag, stamp) = touch(Some(&s.e_tag));
        s.e_tag = e_tag;
        s.last_modified = stamp;
        writes.push(self.save_schedule(account, &s)?);
        self.apply(&writes)?;
        if let Some(job) = created {
            tracing::info!(schedule = s.id, job = job.id, "job schedule created a job");
            self.job_added(account, &job);
        }
        Ok(false)
    }
}

fn complete(job: &mut Job, now: Timestamp) {
    job.transition(JobState::Completed, now);
    job.execution_info.end_time = Some(now);
}

fn missed_window(s: &JobSchedule, due: Timestamp, now: Timestamp) -> bool {
    s.schedule
        .start_window
        .as_ref()
        .and_then(|w| chrono::Duration::from_std(w.value()).ok())
        .is_some_and(|w| now.0 > due.0 + w)
}

/// The first recurrence after `now`, or None (no recurrence, or past `doNotRunAfter`).
fn next_after(s: &JobSchedule, due: Timestamp, now: Timestamp) -> Option<Timestamp> {
    let interval =
        chrono::Duration::from_std(s.schedule.recurrence_interval.as_ref()?.value()).ok()?;
    if interval <= chrono::Duration::zero() {
        return None;
    }
    let behind = (now.0 - due.0).num_milliseconds().max(0);
    let steps = behind / interval.num_milliseconds().max(1) + 1;
    let next = Timestamp(due.0 + interval * i32::try_from(steps).ok()?);
    match s.schedule.do_not_run_after {
        Some(after) if next > after => None,
        _ => Some(next),
    }
}
