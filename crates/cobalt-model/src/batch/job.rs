//! Jobs and job schedules.

use serde::{Deserialize, Serialize};

use super::common::{
    EnvironmentSetting, Extra, FailureInfo, JobConstraints, MetadataItem, ResourceFile,
    TaskConstraints, UserIdentity,
};
use super::{IsoDuration, Timestamp};

/// A job's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Tasks are scheduled.
    Active,
    /// Being disabled.
    Disabling,
    /// No new tasks start.
    Disabled,
    /// Being enabled.
    Enabling,
    /// Being terminated (release tasks run).
    Terminating,
    /// Done; accepts nothing more.
    Completed,
    /// Being deleted.
    Deleting,
}

impl JobState {
    /// active, disabled… as on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Disabling => "disabling",
            Self::Disabled => "disabled",
            Self::Enabling => "enabling",
            Self::Terminating => "terminating",
            Self::Completed => "completed",
            Self::Deleting => "deleting",
        }
    }
}

/// What a job does when all its tasks are complete.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnAllTasksComplete {
    /// Nothing (the default).
    #[default]
    NoAction,
    /// Terminate the job.
    TerminateJob,
}

/// What a job does when a task fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnTaskFailure {
    /// Nothing (the default).
    #[default]
    NoAction,
    /// Apply the task's exit conditions' job action.
    PerformExitOptionsJobAction,
}

/// How a job's tasks are treated when it is disabled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DisableJobOption {
    /// Stop running tasks and queue them again.
    Requeue,
    /// Stop running tasks; they complete.
    Terminate,
    /// Let running tasks finish.
    Wait,
}

/// Where a job's tasks run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolInformation {
    /// An existing pool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool_id: Option<String>,
    /// A pool created for the job (not supported by Cobalt yet; kept as sent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_pool_specification: Option<serde_json::Value>,
}

/// The job preparation task, run on a node before the job's first task there.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobPreparationTask {
    /// Id (default `jobpreparation`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The command line.
    #[serde(default)]
    pub command_line: String,
    /// Files downloaded first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resource_files: Vec<ResourceFile>,
    /// Environment variables.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub environment_settings: Vec<EnvironmentSetting>,
    /// Limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub constraints: Option<TaskConstraints>,
    /// Whether the job's tasks wait for it (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_for_success: Option<bool>,
    /// Who it runs as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_identity: Option<UserIdentity>,
    /// Whether it runs again after a reboot (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rerun_on_node_reboot_after_success: Option<bool>,
    /// Everything else.
    #[serde(flatten)]
    pub other: Extra,
}

/// The job release task, run on each node that ran the job when the job ends.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobReleaseTask {
    /// Id (default `jobrelease`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The command line.
    #[serde(default)]
    pub command_line: String,
    /// Files downloaded first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resource_files: Vec<ResourceFile>,
    /// Environment variables.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub environment_settings: Vec<EnvironmentSetting>,
    /// Longest it may run (≤ 15 minutes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_wall_clock_time: Option<IsoDuration>,
    /// How long its directory is kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_time: Option<IsoDuration>,
    /// Who it runs as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_identity: Option<UserIdentity>,
    /// Everything else.
    #[serde(flatten)]
    pub other: Extra,
}

/// What a user sets on a job (the id excepted: a schedule's job specification has none).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobSpec {
    /// A name for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// -1000..1000, default 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i32>,
    /// Most tasks running at once; -1 unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_parallel_tasks: Option<i32>,
    /// Whether higher-priority jobs may preempt this one's tasks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_task_preemption: Option<bool>,
    /// Whether tasks may depend on each other.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uses_task_dependencies: Option<bool>,
    /// Limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub constraints: Option<JobConstraints>,
    /// The job manager task (kept as sent; run like a task).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_manager_task: Option<serde_json::Value>,
    /// The preparation task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_preparation_task: Option<JobPreparationTask>,
    /// The release task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_release_task: Option<JobReleaseTask>,
    /// Environment of every task.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub common_environment_settings: Vec<EnvironmentSetting>,
    /// Where tasks run.
    #[serde(default)]
    pub pool_info: PoolInformation,
    /// What happens when all tasks are complete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_all_tasks_complete: Option<OnAllTasksComplete>,
    /// What happens when a task fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_task_failure: Option<OnTaskFailure>,
    /// Name/value pairs for the user.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metadata: Vec<MetadataItem>,
    /// Everything else (networkConfiguration…).
    #[serde(flatten)]
    pub other: Extra,
}

/// A job's execution information.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobExecutionInfo {
    /// When the job was created.
    pub start_time: Timestamp,
    /// When it completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time: Option<Timestamp>,
    /// The pool it runs on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool_id: Option<String>,
    /// Why the service could not schedule it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduling_error: Option<FailureInfo>,
    /// Why it ended: `UserTerminate`, `AllTasksComplete`, `TaskFailed`… or the user's words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terminate_reason: Option<String>,
}

/// A job as the service keeps it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Job {
    /// The id.
    pub id: String,
    /// The user's part.
    #[serde(flatten)]
    pub spec: JobSpec,
    /// Changes on every update.
    pub e_tag: String,
    /// Last update.
    pub last_modified: Timestamp,
    /// Creation.
    pub creation_time: Timestamp,
    /// The state.
    pub state: JobState,
    /// When `state` last changed.
    pub state_transition_time: Timestamp,
    /// The state before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_state: Option<JobState>,
    /// When the state before began.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_state_transition_time: Option<Timestamp>,
    /// Execution information.
    pub execution_info: JobExecutionInfo,
}

impl Job {
    /// Moves to `state`, remembering the one before.
    pub fn transition(&mut self, state: JobState, now: Timestamp) {
        if self.state != state {
            self.previous_state = Some(self.state);
            self.previous_state_transition_time = Some(self.state_transition_time);
            self.state = state;
            self.state_transition_time = now;
        }
    }

    /// Whether the job accepts new tasks and changes.
    pub fn is_open(&self) -> bool {
        matches!(
            self.state,
            JobState::Active | JobState::Disabling | JobState::Disabled | JobState::Enabling
        )
    }
}
