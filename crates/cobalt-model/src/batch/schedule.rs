//! Job schedules: jobs created on a recurrence.

use serde::{Deserialize, Serialize};

use super::common::MetadataItem;
use super::job::JobSpec;
use super::{IsoDuration, Timestamp};

/// A job schedule's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobScheduleState {
    /// Creating jobs on time.
    Active,
    /// Done: past `doNotRunAfter`, or terminated.
    Completed,
    /// Creating no jobs.
    Disabled,
    /// Being terminated.
    Terminating,
    /// Being deleted.
    Deleting,
}

/// When a schedule creates jobs.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Schedule {
    /// No job before this time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub do_not_run_until: Option<Timestamp>,
    /// No job after this time; the schedule then completes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub do_not_run_after: Option<Timestamp>,
    /// How late a job may still be created after its due time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_window: Option<IsoDuration>,
    /// Time between jobs; none means a single job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recurrence_interval: Option<IsoDuration>,
}

/// The most recent job of a schedule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecentJob {
    /// Its id.
    pub id: String,
    /// Its URL (filled in when rendered).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// A schedule's execution information.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobScheduleExecutionInfo {
    /// When the next job is due.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_run_time: Option<Timestamp>,
    /// The last job created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recent_job: Option<RecentJob>,
    /// When the schedule completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time: Option<Timestamp>,
}

/// A job schedule as the service keeps it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobSchedule {
    /// The id.
    pub id: String,
    /// A name for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// When jobs are created.
    pub schedule: Schedule,
    /// What each job is.
    pub job_specification: JobSpec,
    /// Name/value pairs for the user.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metadata: Vec<MetadataItem>,
    /// Changes on every update.
    pub e_tag: String,
    /// Last update.
    pub last_modified: Timestamp,
    /// Creation.
    pub creation_time: Timestamp,
    /// The state.
    pub state: JobScheduleState,
    /// When `state` last changed.
    pub state_transition_time: Timestamp,
    /// The state before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_state: Option<JobScheduleState>,
    /// When the state before began.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_state_transition_time: Option<Timestamp>,
    /// Execution information.
    pub execution_info: JobScheduleExecutionInfo,
}

impl JobSchedule {
    /// Moves to `state`, remembering the one before.
    pub fn transition(&mut self, state: JobScheduleState, now: Timestamp) {
        if self.state != state {
            self.previous_state = Some(self.state);
            self.previous_state_transition_time = Some(self.state_transition_time);
            self.state = state;
            self.state_transition_time = now;
        }
    }

    /// The id of the next job the schedule creates: `{schedule}:job-{n}`.
    pub fn next_job_id(&self) -> String {
        let last = self
            .execution_info
            .recent_job
            .as_ref()
            .and_then(|j| j.id.rsplit_once(":job-"))
            .and_then(|(_, n)| n.parse::<u64>().ok())
            .unwrap_or(0);
        format!("{}:job-{}", self.id, last + 1)
    }
}
