//! Pools: the user's specification and the service's view of it.

use serde::{Deserialize, Serialize};

use super::common::{Extra, MetadataItem, StartTask};
use super::{IsoDuration, Timestamp};

/// A pool's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PoolState {
    /// Usable.
    Active,
    /// Being deleted; gone once its nodes are.
    Deleting,
}

/// Whether a pool is changing size.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AllocationState {
    /// At its target size (or gave up trying).
    Steady,
    /// Nodes are being added or removed.
    Resizing,
    /// A resize is being stopped.
    Stopping,
}

/// What happens to a removed node's running tasks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeDeallocationOption {
    /// Stop them and put them back in the queue (the default).
    #[default]
    Requeue,
    /// Stop them; they complete with a failure.
    Terminate,
    /// Let them finish first.
    TaskCompletion,
    /// Let them finish and keep their data.
    RetainedData,
}

/// The image a pool's nodes run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageReference {
    /// e.g. `Canonical`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publisher: Option<String>,
    /// e.g. `UbuntuServer` or `0001-com-ubuntu-server-jammy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offer: Option<String>,
    /// e.g. `16.04-LTS`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sku: Option<String>,
    /// e.g. `latest`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Everything else (`virtualMachineImageId`, gallery ids).
    #[serde(flatten)]
    pub other: Extra,
}

/// A pool of virtual machines.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachineConfiguration {
    /// The image.
    #[serde(default)]
    pub image_reference: ImageReference,
    /// The node agent SKU, e.g. `batch.node.ubuntu 22.04`.
    #[serde(default, rename = "nodeAgentSKUId")]
    pub node_agent_sku_id: String,
    /// Everything else.
    #[serde(flatten)]
    pub other: Extra,
}

/// What a user sets on a pool.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolSpec {
    /// The id (≤64 of letters, digits, `-`, `_`; unique ignoring case).
    #[serde(default)]
    pub id: String,
    /// A name for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// The VM size, e.g. `standard_d2s_v3`.
    #[serde(default)]
    pub vm_size: String,
    /// The virtual machine configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub virtual_machine_configuration: Option<VirtualMachineConfiguration>,
    /// Longest a resize may take (default 15 minutes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resize_timeout: Option<IsoDuration>,
    /// Wanted dedicated nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_dedicated_nodes: Option<i32>,
    /// Wanted low-priority (spot) nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_low_priority_nodes: Option<i32>,
    /// Whether a formula sizes the pool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_auto_scale: Option<bool>,
    /// The start task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_task: Option<StartTask>,
    /// Task slots per node (2017: `maxTasksPerNode`); default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_slots_per_node: Option<i32>,
    /// Name/value pairs for the user.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metadata: Vec<MetadataItem>,
    /// Everything else, kept as sent (network, mounts, user accounts, policies…).
    #[serde(flatten)]
    pub other: Extra,
}

/// A pool as the service keeps it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pool {
    /// The user's part.
    #[serde(flatten)]
    pub spec: PoolSpec,
    /// Changes on every update.
    pub e_tag: String,
    /// Last update.
    pub last_modified: Timestamp,
    /// Creation.
    pub creation_time: Timestamp,
    /// Active or deleting.
    pub state: PoolState,
    /// When `state` last changed.
    pub state_transition_time: Timestamp,
    /// Steady, resizing or stopping.
    pub allocation_state: AllocationState,
    /// When `allocationState` last changed.
    pub allocation_state_transition_time: Timestamp,
    /// Dedicated nodes in the pool.
    pub current_dedicated_nodes: i32,
    /// Low-priority nodes in the pool.
    pub current_low_priority_nodes: i32,
    /// Why the last resize fell short (only while steady).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resize_errors: Vec<serde_json::Value>,
}

impl Pool {
    /// Task slots per node.
    pub fn task_slots_per_node(&self) -> i32 {
        self.spec.task_slots_per_node.unwrap_or(1)
    }

    /// Total wanted nodes.
    pub fn target_nodes(&self) -> i32 {
        self.spec
            .target_dedicated_nodes
            .unwrap_or(0)
            .saturating_add(self.spec.target_low_priority_nodes.unwrap_or(0))
    }
}
