//! Building blocks shared by pools, jobs and tasks, in the service's current schema
//! (2024-02-01.19.0 / 2025-06-01 key names). Fields Cobalt does not interpret are kept in
//! `other` so that whatever a client stored comes back unchanged.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::IsoDuration;

/// Unknown or uninterpreted properties, kept verbatim.
pub type Extra = Map<String, Value>;

/// A `{name, value}` pair of pool, job or schedule metadata.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MetadataItem {
    /// The name.
    pub name: String,
    /// The value.
    pub value: String,
}

/// An environment variable for a task.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EnvironmentSetting {
    /// The variable's name.
    pub name: String,
    /// Its value; absent means empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// A file downloaded to the node before a task runs.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceFile {
    /// Container of the account's linked storage (not supported by Cobalt's nodes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_storage_container_name: Option<String>,
    /// A container URL (with SAS) whose blobs are all downloaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_container_url: Option<String>,
    /// A single file's URL (2017: `blobSource`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_url: Option<String>,
    /// Only blobs whose names start with this prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blob_prefix: Option<String>,
    /// Where to put the file(s), relative to the task's working directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_path: Option<String>,
    /// Octal file mode on Linux, e.g. `0770`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_mode: Option<String>,
    /// Everything else (`identityReference`).
    #[serde(flatten)]
    pub other: Extra,
}

/// When an output file is uploaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UploadCondition {
    /// Only after exit code 0.
    TaskSuccess,
    /// Only after a non-zero exit code.
    TaskFailure,
    /// Always.
    TaskCompletion,
}

/// Files uploaded after a task runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutputFile {
    /// A glob relative to the task directory (`**`, `*`, `?`).
    pub file_pattern: String,
    /// Where the files go.
    pub destination: OutputFileDestination,
    /// When they go.
    pub upload_options: OutputFileUploadOptions,
}

/// The destination of an output file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutputFileDestination {
    /// A blob container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<OutputFileContainer>,
}

/// A blob container destination.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutputFileContainer {
    /// The container URL, with a SAS granting write.
    pub container_url: String,
    /// The blob name (single file) or virtual directory (pattern).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Everything else (`identityReference`, `uploadHeaders`).
    #[serde(flatten)]
    pub other: Extra,
}

/// When to upload an output file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutputFileUploadOptions {
    /// The condition.
    pub upload_condition: UploadCondition,
}

/// Who a task runs as.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserIdentity {
    /// A named user account of the pool.
    #[serde(default, rename = "username", skip_serializing_if = "Option::is_none")]
    pub user_name: Option<String>,
    /// The automatic user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_user: Option<AutoUser>,
}

/// The automatic user a task runs as.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AutoUser {
    /// `task` (default) or `pool`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<AutoUserScope>,
    /// `nonadmin` (default) or `admin`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub elevation_level: Option<ElevationLevel>,
}

/// The scope of an automatic user.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AutoUserScope {
    /// A user per task.
    Task,
    /// One user shared by the pool's tasks.
    Pool,
}

/// Whether a user is an administrator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ElevationLevel {
    /// An ordinary user.
    NonAdmin,
    /// Root / administrator.
    Admin,
}

/// Limits of a task.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskConstraints {
    /// Longest a task may run, from its start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_wall_clock_time: Option<IsoDuration>,
    /// How long the task directory is kept after completion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_time: Option<IsoDuration>,
    /// Retries after a non-zero exit: 0 none, -1 unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_task_retry_count: Option<i32>,
}

/// Limits of a job.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobConstraints {
    /// Longest the job may run, from its creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_wall_clock_time: Option<IsoDuration>,
    /// Default retry count of the job's tasks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_task_retry_count: Option<i32>,
}

/// The task a node runs when it joins the pool (and after reboot or reimage).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StartTask {
    /// The command line (not run under a shell).
    #[serde(default)]
    pub command_line: String,
    /// Files downloaded first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resource_files: Vec<ResourceFile>,
    /// Environment variables.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub environment_settings: Vec<EnvironmentSetting>,
    /// Who it runs as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_identity: Option<UserIdentity>,
    /// Retries after a non-zero exit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_task_retry_count: Option<i32>,
    /// Whether tasks wait for the start task to succeed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_for_success: Option<bool>,
    /// Everything else (`containerSettings`).
    #[serde(flatten)]
    pub other: Extra,
}

/// What a job does when one of its tasks fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobAction {
    /// Nothing.
    None,
    /// Disable the job.
    Disable,
    /// Terminate the job.
    Terminate,
}

/// What happens to a failed task's dependents.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DependencyAction {
    /// The dependents may run.
    Satisfy,
    /// They stay blocked.
    Block,
}

/// The reaction to one kind of task exit.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExitOptions {
    /// The job's reaction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_action: Option<JobAction>,
    /// The dependents' fate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dependency_action: Option<DependencyAction>,
}

/// An exit code and its reaction.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExitCodeMapping {
    /// The exit code.
    pub code: i32,
    /// The reaction.
    pub exit_options: ExitOptions,
}

/// An inclusive range of exit codes and its reaction.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExitCodeRangeMapping {
    /// First code.
    pub start: i32,
    /// Last code.
    pub end: i32,
    /// The reaction.
    pub exit_options: ExitOptions,
}

/// How a task's end is handled, checked in field order.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExitConditions {
    /// Single exit codes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exit_codes: Vec<ExitCodeMapping>,
    /// Ranges of exit codes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exit_code_ranges: Vec<ExitCodeRangeMapping>,
    /// The task could not start (e.g. a resource file failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_processing_error: Option<ExitOptions>,
    /// An output file failed to upload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_upload_error: Option<ExitOptions>,
    /// Anything else.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<ExitOptions>,
}

/// An inclusive range of integer task ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskIdRange {
    /// First id.
    pub start: i64,
    /// Last id.
    pub end: i64,
}

/// The tasks a task waits for.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskDependencies {
    /// Task ids.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub task_ids: Vec<String>,
    /// Ranges of integer task ids.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub task_id_ranges: Vec<TaskIdRange>,
}

/// A multi-instance (MPI) task.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MultiInstanceSettings {
    /// How many nodes (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number_of_instances: Option<i32>,
    /// Run on every node before the primary's command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coordination_command_line: Option<String>,
    /// Files for every node.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub common_resource_files: Vec<ResourceFile>,
}

/// An error of the service about a task or job: `{category, code, message, details}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FailureInfo {
    /// `usererror` or `servererror`.
    pub category: ErrorCategory,
    /// A code such as `TaskEnded`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// A sentence for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// `{name, value}` details.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<NameValue>,
}

impl FailureInfo {
    /// The failure of a program that exited with the non-zero `code` (`FailureExitCode`).
    pub fn exit_code(code: i32) -> Self {
        Self {
            category: ErrorCategory::UserError,
            code: Some("FailureExitCode".to_owned()),
            message: Some("The task exited with an exit code representing a failure".to_owned()),
            details: vec![NameValue {
                name: "Message".to_owned(),
                value: Some(format!("The task exited with exit code {code}")),
            }],
        }
    }
}

/// A `{name, value}` detail.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NameValue {
    /// The name.
    pub name: String,
    /// The value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// Whose fault an error is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ErrorCategory {
    /// The user's (bad input, failing program).
    UserError,
    /// The service's.
    ServerError,
}
