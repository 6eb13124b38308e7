//! Compute nodes: a node agent in a pool.

use serde::{Deserialize, Serialize};

use super::Timestamp;
use super::common::{FailureInfo, StartTask};
use super::task::TaskResult;

/// A node's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeState {
    /// Free for tasks.
    Idle,
    /// Restarting.
    Rebooting,
    /// Being wiped and restarted.
    Reimaging,
    /// Running tasks.
    Running,
    /// Cannot run tasks.
    Unusable,
    /// Being allocated (the agent is starting).
    Creating,
    /// The agent is up and preparing.
    Starting,
    /// The start task runs and tasks wait for it (`waitForSuccess`).
    WaitingForStartTask,
    /// The start task failed (with `waitForSuccess`).
    StartTaskFailed,
    /// Lost contact.
    Unknown,
    /// Being removed.
    LeavingPool,
    /// Scheduling disabled and no task runs.
    Offline,
    /// Evicted (spot).
    Preempted,
    /// Upgrading its OS.
    #[serde(rename = "upgradingos")]
    UpgradingOs,
    /// Stopped, keeping its disk.
    Deallocated,
    /// Being stopped.
    Deallocating,
}

impl NodeState {
    /// As on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Idle => "idle",
            Self::Rebooting => "rebooting",
            Self::Reimaging => "reimaging",
            Self::Running => "running",
            Self::Unusable => "unusable",
            Self::Creating => "creating",
            Self::Starting => "starting",
            Self::WaitingForStartTask => "waitingforstarttask",
            Self::StartTaskFailed => "starttaskfailed",
            Self::Unknown => "unknown",
            Self::LeavingPool => "leavingpool",
            Self::Offline => "offline",
            Self::Preempted => "preempted",
            Self::UpgradingOs => "upgradingos",
            Self::Deallocated => "deallocated",
            Self::Deallocating => "deallocating",
        }
    }
}

/// Whether new tasks may be scheduled on a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SchedulingState {
    /// They may.
    #[default]
    Enabled,
    /// They may not.
    Disabled,
}

/// The start task's state on a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StartTaskState {
    /// Running.
    Running,
    /// Ended.
    Completed,
}

/// The start task's execution on a node.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StartTaskInfo {
    /// Running or completed.
    pub state: StartTaskState,
    /// When the last attempt started.
    pub start_time: Timestamp,
    /// When it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time: Option<Timestamp>,
    /// Its exit code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// What went wrong.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_info: Option<FailureInfo>,
    /// Retries so far.
    pub retry_count: i32,
    /// When the last retry started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_retry_time: Option<Timestamp>,
    /// Success or failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<TaskResult>,
}

/// The node agent's version.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeAgentInfo {
    /// Version.
    pub version: String,
    /// When it last changed.
    pub last_update_time: Timestamp,
}

/// A task that ran recently on a node.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecentTask {
    /// The task's URL (filled in when rendered).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_url: Option<String>,
    /// Its job.
    pub job_id: String,
    /// The task.
    pub task_id: String,
    /// Its state.
    pub task_state: super::task::TaskState,
}

/// A compute node as the service keeps it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Node {
    /// The id (`tvm-…`).
    pub id: String,
    /// The state.
    pub state: NodeState,
    /// Whether tasks may be scheduled.
    pub scheduling_state: SchedulingState,
    /// When `state` last changed.
    pub state_transition_time: Timestamp,
    /// When the agent last (re)started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_boot_time: Option<Timestamp>,
    /// When the node joined the pool.
    pub allocation_time: Timestamp,
    /// Its address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_address: Option<String>,
    /// An opaque locality hint for task affinity.
    pub affinity_id: String,
    /// The pool's VM size.
    pub vm_size: String,
    /// Tasks run so far.
    pub total_tasks_run: i64,
    /// Tasks running now.
    pub running_tasks_count: i64,
    /// Task slots in use now.
    pub running_task_slots_count: i64,
    /// Tasks that succeeded.
    pub total_tasks_succeeded: i64,
    /// Recently run tasks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recent_tasks: Vec<RecentTask>,
    /// The pool's start task as the node runs it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_task: Option<StartTask>,
    /// The start task's execution.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_task_info: Option<StartTaskInfo>,
    /// Dedicated (not low-priority).
    pub is_dedicated: bool,
    /// The agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_agent_info: Option<NodeAgentInfo>,
}

impl Node {
    /// Moves to `state`.
    pub fn transition(&mut self, state: NodeState, now: Timestamp) {
        if self.state != state {
            self.state = state;
            self.state_transition_time = now;
        }
    }
}

/// An operation on a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeAction {
    /// Restart the agent: the start task runs again; running tasks per the option.
    Reboot(super::NodeDeallocationOption),
    /// Wipe the node and restart it; running tasks per the option.
    Reimage(super::NodeDeallocationOption),
    /// Stop scheduling tasks on the node; running tasks per the option.
    DisableScheduling(super::NodeDeallocationOption),
    /// Schedule tasks on the node again.
    EnableScheduling,
}

/// Why a node action was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeActionError {
    /// No such node.
    NotFound,
    /// The node is in a state (or kind) that does not allow it.
    InvalidState,
}
