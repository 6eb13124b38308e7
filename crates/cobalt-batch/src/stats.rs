//! Statistics (`$expand=stats`) of jobs, job schedules, pools and tasks, computed from what
//! the service records: task counts, retries, and the start and end of every task run. CPU and
//! I/O figures are reported by nodes; until a node has run a task they are zero.

use std::time::Duration;

use cobalt_model::batch::{IsoDuration, Job, Pool, Task, TaskResult, Timestamp, id_key};
use serde::Serialize;

use crate::error::BatchResult;
use crate::service::{Batch, Conditions, PageRequest};
use crate::tasks;

/// Resource statistics of a job, job schedule or task (Azure's `JobStatistics` shape; the
/// task counters are absent for a task).
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UsageStats {
    /// When the statistics period began.
    pub start_time: Timestamp,
    /// When they were last updated.
    pub last_update_time: Timestamp,
    /// CPU time in user mode of every task run.
    #[serde(rename = "userCPUTime")]
    pub user_cpu_time: IsoDuration,
    /// CPU time in kernel mode.
    #[serde(rename = "kernelCPUTime")]
    pub kernel_cpu_time: IsoDuration,
    /// Wall clock time of every task run.
    pub wall_clock_time: IsoDuration,
    /// Disk reads.
    #[serde(rename = "readIOps")]
    pub read_iops: u64,
    /// Disk writes.
    #[serde(rename = "writeIOps")]
    pub write_iops: u64,
    /// GiB read.
    #[serde(rename = "readIOGiB")]
    pub read_io_gib: f64,
    /// GiB written.
    #[serde(rename = "writeIOGiB")]
    pub write_io_gib: f64,
    /// Tasks that succeeded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub num_succeeded_tasks: Option<u64>,
    /// Tasks that failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub num_failed_tasks: Option<u64>,
    /// Retries of all tasks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub num_task_retries: Option<u64>,
    /// Time tasks waited between creation and their (last) start.
    pub wait_time: IsoDuration,
}

#[derive(Default)]
struct Totals {
    wall: Duration,
    wait: Duration,
    succeeded: u64,
    failed: u64,
    retries: u64,
}

impl Totals {
    fn add_task(&mut self, task: &Task, now: Timestamp) {
        let info = &task.execution_info;
        self.retries += u64::try_from(info.retry_count).unwrap_or(0);
        match info.result {
            Some(TaskResult::Success) => self.succeeded += 1,
            Some(TaskResult::Failure) => self.failed += 1,
            None => {}
        }
        if let Some(start) = info.start_time {
            let end = info.end_time.unwrap_or(now);
            self.wall += (end.0 - start.0).to_std().unwrap_or_default();
            self.wait += (start.0 - task.creation_time.0)
                .to_std()
                .unwrap_or_default();
        }
    }

    fn add(&mut self, other: &Totals) {
        self.wall += other.wall;
        self.wait += other.wait;
        self.succeeded += other.succeeded;
        self.failed += other.failed;
        self.retries += other.retries;
    }

    fn into_stats(self, start_time: Timestamp, now: Timestamp, counters: bool) -> UsageStats {
        UsageStats {
            start_time,
            last_update_time: now,
            user_cpu_time: IsoDuration::from_std(Duration::ZERO),
            kernel_cpu_time: IsoDuration::from_std(Duration::ZERO),
            wall_clock_time: IsoDuration::from_std(self.wall),
            read_iops: 0,
            write_iops: 0,
            read_io_gib: 0.0,
            write_io_gib: 0.0,
            num_succeeded_tasks: counters.then_some(self.succeeded),
            num_failed_tasks: counters.then_some(self.failed),
            num_task_retries: counters.then_some(self.retries),
            wait_time: IsoDuration::from_std(self.wait),
        }
    }
}

/// Pool statistics: the period only (usage and resource figures come from nodes).
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolStats {
    /// When the statistics period began (the pool's creation).
    pub start_time: Timestamp,
    /// When they were last updated.
    pub last_update_time: Timestamp,
}

impl Batch {
    fn job_totals(&self, account: &str, job_id: &str, now: Timestamp) -> BatchResult<Totals> {
        let mut totals = Totals::default();
        let mut page = PageRequest {
            limit: 1000,
            ..PageRequest::default()
        };
        loop {
            let p = self.scan(&tasks::scope(account, job_id), &page, |t: Task| {
                totals.add_task(&t, now);
                Ok(None::<()>)
            })?;
            match p.next {
                Some(next) => page.after = Some(next),
                None => return Ok(totals),
            }
        }
    }

    /// Statistics of `job` (one pass over its tasks).
    pub fn job_stats(&self, account: &str, job: &Job) -> BatchResult<UsageStats> {
        let now = Timestamp::now();
        Ok(self
            .job_totals(account, &job.id, now)?
            .into_stats(job.creation_time, now, true))
    }

    /// Statistics of a job schedule: the sum over the jobs it created.
    pub fn job_schedule_stats(&self, account: &str, schedule_id: &str) -> BatchResult<UsageStats> {
        let schedule = self.get_job_schedule(account, schedule_id, &Conditions::default())?;
        let now = Timestamp::now();
        let mut totals = Totals::default();
        let prefix = format!("{}:job-", id_key(schedule_id));
        let page = PageRequest {
            after: Some(format!("{}:", id_key(schedule_id))),
            limit: 1000,
            state: None,
        };
        let jobs = self.list_jobs(account, &page, |j| {
            Ok(id_key(&j.id).starts_with(&prefix).then_some(j.id))
        })?;
        for job in jobs.items {
            totals.add(&self.job_totals(account, &job, now)?);
        }
        Ok(totals.into_stats(schedule.creation_time, now, true))
    }

    /// Lifetime statistics of the account's jobs (2017's `/lifetimejobstats`): the sum over
    /// the jobs that exist, from the oldest one's creation. Deleted jobs no longer count.
    pub fn lifetime_job_stats(&self, account: &str) -> BatchResult<UsageStats> {
        let now = Timestamp::now();
        let mut totals = Totals::default();
        let mut start = now;
        let mut page = PageRequest {
            limit: 1000,
            ..PageRequest::default()
        };
        loop {
            let jobs = self.list_jobs(account, &page, |j| Ok(Some((j.id, j.creation_time))))?;
            for (id, created) in jobs.items {
                start = start.min(created);
                totals.add(&self.job_totals(account, &id, now)?);
            }
            match jobs.next {
                Some(next) => page.after = Some(next),
                None => return Ok(totals.into_stats(start, now, true)),
            }
        }
    }

    /// Lifetime statistics of the account's pools (2017's `/lifetimepoolstats`): the period
    /// from the oldest existing pool's creation.
    pub fn lifetime_pool_stats(&self, account: &str) -> BatchResult<PoolStats> {
        let now = Timestamp::now();
        let mut start = now;
        let mut page = PageRequest {
            limit: 1000,
            ..PageRequest::default()
        };
        loop {
            let pools = self.list_pools(account, &page, |p| Ok(Some(p.creation_time)))?;
            start = pools.items.into_iter().fold(start, Timestamp::min);
            match pools.next {
                Some(next) => page.after = Some(next),
                None => {
                    return Ok(PoolStats {
                        start_time: start,
                        last_update_time: now,
                    });
                }
            }
        }
    }

    /// Statistics of a task that has started; None before its first start.
    pub fn task_stats(&self, task: &Task) -> Option<UsageStats> {
        task.execution_info.start_time?;
        let now = Timestamp::now();
        let mut totals = Totals::default();
        totals.add_task(task, now);
        Some(totals.into_stats(task.creation_time, now, false))
    }

    /// Statistics of a pool.
    pub fn pool_stats(&self, pool: &Pool) -> PoolStats {
        PoolStats {
            start_time: pool.creation_time,
            last_update_time: Timestamp::now(),
        }
    }
}
