//! Tasks.

use serde::{Deserialize, Serialize};

use super::Timestamp;
use super::common::{
    EnvironmentSetting, ExitConditions, Extra, FailureInfo, MultiInstanceSettings, OutputFile,
    ResourceFile, TaskConstraints, TaskDependencies, UserIdentity,
};

/// A task's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskState {
    /// Queued (or waiting for its dependencies).
    Active,
    /// Assigned to a node whose job preparation task runs.
    Preparing,
    /// Running (including resource file download).
    Running,
    /// Finished, one way or another.
    Completed,
}

impl TaskState {
    /// As on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Preparing => "preparing",
            Self::Running => "running",
            Self::Completed => "completed",
        }
    }
}

/// How a completed task ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskResult {
    /// Exit code 0 and nothing else went wrong.
    Success,
    /// Anything else; `failureInfo` says what.
    Failure,
}

impl TaskResult {
    /// As on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Failure => "failure",
        }
    }
}

/// What a user sets on a task.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskSpec {
    /// The id (unique in the job, ignoring case).
    #[serde(default)]
    pub id: String,
    /// A name for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// The command line (not run under a shell).
    #[serde(default)]
    pub command_line: String,
    /// How the end is handled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_conditions: Option<ExitConditions>,
    /// Files downloaded first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resource_files: Vec<ResourceFile>,
    /// Files uploaded after.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub output_files: Vec<OutputFile>,
    /// Environment variables.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub environment_settings: Vec<EnvironmentSetting>,
    /// Limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub constraints: Option<TaskConstraints>,
    /// Task slots it takes (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required_slots: Option<i32>,
    /// Who it runs as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_identity: Option<UserIdentity>,
    /// A multi-instance task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multi_instance_settings: Option<MultiInstanceSettings>,
    /// Tasks this one waits for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub depends_on: Option<TaskDependencies>,
    /// Everything else (containerSettings, affinityInfo, applicationPackageReferences…).
    #[serde(flatten)]
    pub other: Extra,
}

/// A task's execution information.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskExecutionInfo {
    /// When the last attempt started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Timestamp>,
    /// When it completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time: Option<Timestamp>,
    /// The program's exit code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// What went wrong.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_info: Option<FailureInfo>,
    /// Retries after failures so far.
    pub retry_count: i32,
    /// When the last retry started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_retry_time: Option<Timestamp>,
    /// Times the user's actions requeued it.
    pub requeue_count: i32,
    /// When it was last requeued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_requeue_time: Option<Timestamp>,
    /// Success or failure, once completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<TaskResult>,
}

/// Where a task ran.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeInfo {
    /// Affinity id of the node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity_id: Option<String>,
    /// The node's URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_url: Option<String>,
    /// The pool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool_id: Option<String>,
    /// The node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_id: Option<String>,
    /// The task directory relative to the node root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_root_directory: Option<String>,
    /// Its URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_root_directory_url: Option<String>,
}

/// A task as the service keeps it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Task {
    /// The user's part.
    #[serde(flatten)]
    pub spec: TaskSpec,
    /// Changes on every update.
    pub e_tag: String,
    /// Last update.
    pub last_modified: Timestamp,
    /// Creation.
    pub creation_time: Timestamp,
    /// The state.
    pub state: TaskState,
    /// When `state` last changed.
    pub state_transition_time: Timestamp,
    /// The state before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_state: Option<TaskState>,
    /// When the state before began.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_state_transition_time: Option<Timestamp>,
    /// Execution information.
    pub execution_info: TaskExecutionInfo,
    /// Where it ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_info: Option<NodeInfo>,
}

impl Task {
    /// Moves to `state`, remembering the one before.
    pub fn transition(&mut self, state: TaskState, now: Timestamp) {
        if self.state != state {
            self.previous_state = Some(self.state);
            self.previous_state_transition_time = Some(self.state_transition_time);
            self.state = state;
            self.state_transition_time = now;
        }
    }

    /// Task slots the task takes.
    pub fn required_slots(&self) -> i32 {
        self.spec.required_slots.unwrap_or(1)
    }
}
