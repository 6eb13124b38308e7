//! Job schedule operations: add, get, list, patch, update, delete, disable, enable,
//! terminate. Creating jobs on time is the lifecycle's ([`crate::Batch::tick`]).

use cobalt_model::batch::{
    JobSchedule, JobScheduleExecutionInfo, JobScheduleState, JobSpec, MetadataItem, Schedule,
    Timestamp, id_key,
};
use cobalt_store::{Kind, Scope, Write};
use serde::Deserialize;
use serde_json::Value;

use crate::error::{BatchError, BatchResult, ErrorCode};
use crate::jobs::validate_job_spec;
use crate::service::{Batch, Conditions, Page, PageRequest, encode, touch};
use crate::validate;

pub(crate) fn scope(account: &str) -> Scope {
    Scope::top(account, Kind::JobSchedule)
}

/// The body of add, `PATCH` (present properties change) and `PUT` (all replaced).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobScheduleUpdate {
    /// The id (add only).
    #[serde(default)]
    pub id: String,
    /// A name for people (add only).
    pub display_name: Option<String>,
    /// When jobs are created.
    pub schedule: Option<Schedule>,
    /// What each job is.
    pub job_specification: Option<JobSpec>,
    /// Metadata.
    pub metadata: Option<Vec<MetadataItem>>,
}

fn state_str(s: JobScheduleState) -> &'static str {
    match s {
        JobScheduleState::Active => "active",
        JobScheduleState::Completed => "completed",
        JobScheduleState::Disabled => "disabled",
        JobScheduleState::Terminating => "terminating",
        JobScheduleState::Deleting => "deleting",
    }
}

fn validate_schedule(s: &Schedule) -> BatchResult<()> {
    validate::min_duration(
        "schedule/recurrenceInterval",
        s.recurrence_interval.as_ref(),
        60,
    )?;
    validate::min_duration("schedule/startWindow", s.start_window.as_ref(), 60)
}

/// When the first job of a new or changed schedule is due.
pub(crate) fn first_run(s: &Schedule, now: Timestamp) -> Option<Timestamp> {
    let due = s.do_not_run_until.map_or(now, |t| t.max(now));
    match s.do_not_run_after {
        Some(after) if after < due => None,
        _ => Some(due),
    }
}

impl Batch {
    pub(crate) fn save_schedule(&self, account: &str, s: &JobSchedule) -> BatchResult<Write> {
        Ok(Write::Put(
            scope(account),
            encode(&s.id, state_str(s.state), "", s)?,
        ))
    }

    /// The job schedule `id`.
    pub fn get_job_schedule(
        &self,
        account: &str,
        id: &str,
        cond: &Conditions,
    ) -> BatchResult<JobSchedule> {
        let s: JobSchedule = self
            .load(&scope(account), id)?
            .ok_or_else(|| BatchError::new(ErrorCode::JobScheduleNotFound))?;
        cond.check(&s.e_tag, s.last_modified, true)?;
        Ok(s)
    }

    /// Adds a job schedule.
    pub fn add_job_schedule(&self, account: &str, body: Value) -> BatchResult<JobSchedule> {
        let add: JobScheduleUpdate = validate::parse(body)?;
        validate::id("id", &add.id)?;
        let schedule = add.schedule.ok_or_else(|| validate::missing("schedule"))?;
        let spec = add
            .job_specification
            .ok_or_else(|| validate::missing("jobSpecification"))?;
        validate_schedule(&schedule)?;
        validate_job_spec(&spec)?;
        let _guard = self.lock();
        if self
            .load::<JobSchedule>(&scope(account), &add.id)?
            .is_some()
        {
            return Err(ErrorCode::JobScheduleExists.into());
        }
        let (e_tag, now) = touch(None);
        let s = JobSchedule {
            execution_info: JobScheduleExecutionInfo {
                next_run_time: first_run(&schedule, now),
                ..JobScheduleExecutionInfo::default()
            },
            id: add.id,
            display_name: add.display_name,
            schedule,
            job_specification: spec,
            metadata: add.metadata.unwrap_or_default(),
            e_tag,
            last_modified: now,
            creation_time: now,
            state: JobScheduleState::Active,
            state_transition_time: now,
            previous_state: None,
            previous_state_transition_time: None,
        };
        self.apply(&[self.save_schedule(account, &s)?])?;
        self.attend(account, Kind::JobSchedule, &id_key(&s.id));
        Ok(s)
    }

    /// A page of job schedules, each mapped through `keep` (None drops it).
    pub fn list_job_schedules<R>(
        &self,
        account: &str,
        page: &PageRequest,
        keep: impl FnMut(JobSchedule) -> BatchResult<Option<R>>,
    ) -> BatchResult<Page<R>> {
        self.scan(&scope(account), page, keep)
    }

    fn change_schedule(
        &self,
        account: &str,
        id: &str,
        cond: &Conditions,
        change: impl FnOnce(&mut JobSchedule, Timestamp) -> BatchResult<()>,
    ) -> BatchResult<JobSchedule> {
        let _guard = self.lock();
        let mut s = self.get_job_schedule(account, id, &Conditions::default())?;
        cond.check(&s.e_tag, s.last_modified, false)?;
        change(&mut s, Timestamp::now())?;
        let (e_tag, now) = touch(Some(&s.e_tag));
        s.e_tag = e_tag;
        s.last_modified = now;
        self.apply(&[self.save_schedule(account, &s)?])?;
        self.attend(account, Kind::JobSchedule, &id_key(&s.id));
        Ok(s)
    }

    /// `PATCH` (`replace` false) or `PUT` (`replace` true).
    pub fn update_job_schedule(
        &self,
        account: &str,
        id: &str,
        body: Value,
        replace: bool,
        cond: &Conditions,
    ) -> BatchResult<JobSchedule> {
        let update: JobScheduleUpdate = validate::parse(body)?;
        if replace {
            if update.schedule.is_none() {
                return Err(validate::missing("schedule"));
            }
            if update.job_specification.is_none() {
                return Err(validate::missing("jobSpecification"));
            }
        }
        if let Some(s) = &update.schedule {
            validate_schedule(s)?;
        }
        if let Some(j) = &update.job_specification {
            validate_job_spec(j)?;
        }
        self.change_schedule(account, id, cond, |s, now| {
            check_schedule_open(s)?;
            if let Some(schedule) = update.schedule {
                s.execution_info.next_run_time = first_run(&schedule, now);
                s.schedule = schedule;
            }
            if let Some(j) = update.job_specification {
                s.job_specification = j;
            }
            if let Some(m) = update.metadata.or(replace.then(Vec::new)) {
                s.metadata = m;
            }
            Ok(())
        })
    }

    /// Marks the schedule `deleting`; the lifecycle removes it and its jobs.
    pub fn delete_job_schedule(
        &self,
        account: &str,
        id: &str,
        cond: &Conditions,
    ) -> BatchResult<()> {
        self.change_schedule(account, id, cond, |s, now| {
            if s.state == JobScheduleState::Deleting {
                return Err(ErrorCode::JobScheduleBeingDeleted.into());
            }
            s.transition(JobScheduleState::Deleting, now);
            Ok(())
        })?;
        Ok(())
    }

    /// Stops creating jobs.
    pub fn disable_job_schedule(
        &self,
        account: &str,
        id: &str,
        cond: &Conditions,
    ) -> BatchResult<()> {
        self.change_schedule(account, id, cond, |s, now| {
            check_schedule_open(s)?;
            s.transition(JobScheduleState::Disabled, now);
            Ok(())
        })?;
        Ok(())
    }

    /// Resumes creating jobs.
    pub fn enable_job_schedule(
        &self,
        account: &str,
        id: &str,
        cond: &Conditions,
    ) -> BatchResult<()> {
        self.change_schedule(account, id, cond, |s, now| {
            check_schedule_open(s)?;
            if s.state == JobScheduleState::Disabled {
                s.transition(JobScheduleState::Active, now);
            }
            Ok(())
        })?;
        Ok(())
    }

    /// Terminates the schedule and its active job.
    pub fn terminate_job_schedule(
        &self,
        account: &str,
        id: &str,
        cond: &Conditions,
    ) -> BatchResult<()> {
        self.change_schedule(account, id, cond, |s, now| {
            check_schedule_open(s)?;
            s.transition(JobScheduleState::Terminating, now);
            Ok(())
        })?;
        Ok(())
    }
}

fn check_schedule_open(s: &JobSchedule) -> BatchResult<()> {
    match s.state {
        JobScheduleState::Completed => Err(ErrorCode::JobScheduleCompleted.into()),
        JobScheduleState::Terminating => Err(ErrorCode::JobScheduleBeingTerminated.into()),
        JobScheduleState::Deleting => Err(ErrorCode::JobScheduleBeingDeleted.into()),
        _ => Ok(()),
    }
}
