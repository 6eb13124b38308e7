//! The agent protocol, version 1: what a node agent and the Batch server say to each other
//! over one WebSocket (JSON text frames), and how an agent proves it may join a pool.
//!
//! Owns: [`AgentMessage`] (agent → server), [`ServerMessage`] (server → agent), the work an
//! agent is given ([`Assignment`]), what it reports ([`Event`]), the node directory layout
//! ([`layout`]) and the agent token ([`agent_token`]). Must not do: IO. Both sides batch: the
//! server sends many assignments in one message and the agent reports many events in one, which
//! is what makes thousands of tasks per second possible.

use cobalt_model::batch::{
    EnvironmentSetting, FailureInfo, OutputFile, ResourceFile, TaskResult, Timestamp,
};
use cobalt_model::{Account, AccountKey};
use serde::{Deserialize, Serialize};

/// The path of the agent endpoint on the Batch port.
pub const AGENT_PATH: &str = "/cobalt/agent/v1";

/// The header carrying the agent token.
pub const TOKEN_HEADER: &str = "x-cobalt-agent-token";

/// The token an agent presents to join `pool` of `account`: an HMAC of the account key, so the
/// server can check it without storing secrets, and a machine given the token cannot do
/// anything else with the account.
pub fn agent_token(key: &AccountKey, account: &str, pool: &str) -> String {
    key.sign(&token_message(account, pool))
}

/// Whether `token` is the agent token of `pool`, made with any of the account's keys
/// (compared in constant time).
pub fn verify_agent_token(account: &Account, pool: &str, token: &str) -> bool {
    account.verify(&token_message(&account.name, pool), token)
}

fn token_message(account: &str, pool: &str) -> String {
    format!("cobalt-agent/v1\n{account}\n{}", pool.to_ascii_lowercase())
}

/// Agent → server.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum AgentMessage {
    /// The first message: who the agent is.
    Hello(Hello),
    /// Things that happened, in order.
    Events {
        /// The events.
        events: Vec<Event>,
    },
    /// The answer to a [`ServerMessage::File`] request.
    FileReply(FileReply),
}

/// An agent introducing itself.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Hello {
    /// The Batch account.
    pub account: String,
    /// The pool to join.
    pub pool_id: String,
    /// The node id the server gave this agent when it started it (local agents), or the id it
    /// had before a reconnect; None for a new remote agent.
    pub node_id: Option<String>,
    /// The machine's host name.
    pub hostname: String,
    /// An address other machines reach it at.
    pub ip_address: String,
    /// The agent's version.
    pub agent_version: String,
    /// Whether the agent runs as root (it can then run non-admin tasks as another user).
    pub is_root: bool,
    /// Runs (`Assignment::run`) still going on this node after a reconnect.
    #[serde(default)]
    pub running: Vec<u64>,
}

/// What happened on a node.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "camelCase")]
pub enum Event {
    /// A queued run ([`Assignment::queued`]) with resource files got its task slots: it is
    /// running from now on, downloading them first. (Without resource files, `Started` says
    /// the run began.)
    Began {
        /// The run.
        run: u64,
        /// When.
        at: Timestamp,
    },
    /// A run's command started (its resource files are downloaded).
    Started {
        /// The run.
        run: u64,
        /// When.
        at: Timestamp,
        /// The process group of the command (its leader's pid), so that a server on the same
        /// machine can kill it when the agent itself dies.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pgid: Option<i32>,
    },
    /// A run ended, one way or another.
    Ended(RunEnd),
    /// A run the server asked back ([`ServerMessage::Withdraw`]) left the agent's queue
    /// before it began: it never ran, and nothing else is said about it.
    Withdrawn {
        /// The run.
        run: u64,
    },
}

/// The end of a run.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunEnd {
    /// The run.
    pub run: u64,
    /// When it started (None: it never started, e.g. a resource file failed).
    pub start_time: Option<Timestamp>,
    /// When it ended.
    pub end_time: Timestamp,
    /// The exit code, if the process ran and exited.
    pub exit_code: Option<i32>,
    /// Success or failure (a failure has `failure_info`, unless it is a non-zero exit).
    pub result: TaskResult,
    /// What went wrong outside the program: a download, an upload, a timeout, a kill.
    pub failure_info: Option<FailureInfo>,
    /// Whether the failure happened before the command (resource files): never retried.
    #[serde(default)]
    pub pre_processing_error: bool,
    /// Whether an output file failed to upload: never retried.
    #[serde(default)]
    pub file_upload_error: bool,
}

/// Server → agent.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum ServerMessage {
    /// The answer to [`AgentMessage::Hello`].
    Welcome(Welcome),
    /// Work to run now.
    Run {
        /// The runs.
        runs: Vec<Assignment>,
    },
    /// Stop a run: kill its process tree. An `Ended` event follows.
    Kill {
        /// The run.
        run: u64,
    },
    /// Give back these runs if they still wait in the queue for their slots: each one that
    /// does is dropped and answered with [`Event::Withdrawn`]. A run that has begun goes on
    /// (its `Began`/`Started`/`Ended` say so), and an unknown one is ignored: unlike `Kill`,
    /// this never stops a process.
    Withdraw {
        /// The runs.
        runs: Vec<u64>,
    },
    /// Remove a task directory (retention time over, task deleted).
    Clean {
        /// The directory, relative to the node root.
        dir: String,
    },
    /// A file request (list, read, delete).
    File(FileRequest),
    /// Leave: kill everything, optionally wipe the node root, and exit.
    Leave {
        /// Wipe the node root first (reimage, removal).
        wipe: bool,
    },
}

/// The server accepting an agent.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Welcome {
    /// The node's id.
    pub node_id: String,
    /// Variables every task on the node gets (`AZ_BATCH_ACCOUNT_NAME`, `AZ_BATCH_POOL_ID`…).
    pub environment: Vec<(String, String)>,
    /// How often the agent must send something (events or pings), in seconds.
    pub heartbeat_seconds: u64,
    /// The node's task slots (`taskSlotsPerNode`): task runs wait in a queue, in the order
    /// they arrive, until their slots are free. 0: no limit (runs start when they arrive).
    #[serde(default)]
    pub task_slots: u32,
}

/// Which kind of task a run is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RunKind {
    /// The pool's start task.
    StartTask,
    /// A job preparation task.
    JobPreparation,
    /// A job release task.
    JobRelease,
    /// A task.
    Task,
}

/// One run of a task on a node.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Assignment {
    /// Unique per server: names the run in events.
    pub run: u64,
    /// What it is.
    pub kind: RunKind,
    /// The task directory, relative to the node root (`startup`, `workitems/{job}/job-1/{task}`).
    pub dir: String,
    /// The command line, not run under a shell.
    pub command_line: String,
    /// Variables: the job's common ones, then the task's, then `AZ_BATCH_*` of the run.
    pub environment: Vec<EnvironmentSetting>,
    /// Files to download into `wd/` first.
    pub resource_files: Vec<ResourceFile>,
    /// Files to upload after.
    pub output_files: Vec<OutputFile>,
    /// Kill the process tree after this many seconds.
    pub max_wall_clock_seconds: Option<f64>,
    /// Run as an administrator (root) rather than an unprivileged user.
    pub elevated: bool,
    /// The job preparation task's directory on this node (relative to the node root), when
    /// the job has one: the agent sets `AZ_BATCH_JOB_PREP_DIR` and
    /// `AZ_BATCH_JOB_PREP_WORKING_DIR` from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_prep_dir: Option<String>,
    /// Task slots the run takes (`requiredSlots`; 0 for start, preparation and release tasks,
    /// which take none).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub slots: u32,
    /// The server sent the run ahead of a free slot: its task is running only once the agent
    /// says so ([`Event::Began`], or [`Event::Started`] for a run without resource files).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub queued: bool,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// A request for the files of a node.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileRequest {
    /// Names the reply.
    pub id: u64,
    /// The path, relative to the node root.
    pub path: String,
    /// What to do.
    pub op: FileOp,
}

/// A file operation.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "camelCase")]
pub enum FileOp {
    /// List a directory (recursively or not).
    List {
        /// Descend into subdirectories.
        recursive: bool,
    },
    /// Read a file, or a byte range of it.
    Read {
        /// First byte.
        offset: u64,
        /// Most bytes to return.
        length: Option<u64>,
    },
    /// Describe a file or directory.
    Stat,
    /// Delete a file, or a directory (recursively only if asked).
    Delete {
        /// Delete a directory and everything under it.
        recursive: bool,
    },
}

/// One entry of a listing.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileEntry {
    /// Path relative to the listed directory's base (the request path's root).
    pub name: String,
    /// A directory.
    pub is_directory: bool,
    /// Size in bytes.
    pub size: u64,
    /// Creation (birth) time if the filesystem knows it, else the change time.
    pub created: Timestamp,
    /// Last modification.
    pub modified: Timestamp,
    /// Octal mode, e.g. `0644`.
    pub mode: String,
}

/// The answer to a file request.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileReply {
    /// The request.
    pub id: u64,
    /// What came out.
    pub outcome: FileOutcome,
}

/// The outcome of a file request.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "camelCase")]
pub enum FileOutcome {
    /// A listing.
    Listing {
        /// The entries.
        entries: Vec<FileEntry>,
    },
    /// A file's bytes (base64) and its description.
    Data {
        /// The file.
        entry: FileEntry,
        /// The bytes, base64.
        data: String,
    },
    /// A description.
    Stat {
        /// The file or directory.
        entry: FileEntry,
    },
    /// Done (delete).
    Done,
    /// No such file or directory.
    NotFound,
    /// The request could not be served.
    Failed {
        /// Why.
        message: String,
    },
}

/// Whether a task gets the variable `name` from its agent's environment. Tasks start from a
/// defined environment, as on Azure, not from whatever the server or agent process holds
/// (which may be secrets: the agent's token, an account key): the few variables a program
/// expects of its machine (`PATH`, `HOME`, the user, locale and time zone, the temporary
/// directory, proxies and CA certificates), then the `AZ_BATCH_*` variables and the job's and
/// task's environment settings. The server starts its local agents with these variables only.
pub fn inherited_by_tasks(name: &str) -> bool {
    const NAMES: &[&str] = &[
        "PATH",
        "HOME",
        "USER",
        "LOGNAME",
        "SHELL",
        "LANG",
        "LANGUAGE",
        "TZ",
        "TMPDIR",
        "http_proxy",
        "https_proxy",
        "no_proxy",
        "all_proxy",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "NO_PROXY",
        "ALL_PROXY",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
    ];
    NAMES.contains(&name) || name.starts_with("LC_")
}

/// The node directory layout (Azure's, batch-rest.md §11), relative to the node root.
pub mod layout {
    /// Files shared by every task of the node (`AZ_BATCH_NODE_SHARED_DIR`).
    pub const SHARED: &str = "shared";
    /// The start task's directory (`AZ_BATCH_NODE_STARTUP_DIR`).
    pub const STARTUP: &str = "startup";
    /// Per-job, per-task directories.
    pub const WORKITEMS: &str = "workitems";
    /// Mounts (`AZ_BATCH_NODE_MOUNTS_DIR`).
    pub const MOUNTS: &str = "fsmounts";
    /// The working directory inside a task directory.
    pub const WD: &str = "wd";

    /// A job's directory.
    pub fn job_dir(job: &str) -> String {
        format!("{WORKITEMS}/{job}/job-1")
    }

    /// A task's directory (`AZ_BATCH_TASK_DIR`).
    pub fn task_dir(job: &str, task: &str) -> String {
        format!("{}/{task}", job_dir(job))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tasks_inherit_the_machine_variables_only() {
        for name in [
            "PATH",
            "HOME",
            "LANG",
            "LC_ALL",
            "TZ",
            "https_proxy",
            "SSL_CERT_FILE",
        ] {
            assert!(inherited_by_tasks(name), "{name}");
        }
        for name in [
            "COBALT_AGENT_TOKEN",
            "COBALT_AGENT_PARENT",
            "COBALT_KEY",
            "AZURE_STORAGE_CONNECTION_STRING",
            "RUST_LOG",
            "path",
            "",
        ] {
            assert!(!inherited_by_tasks(name), "{name}");
        }
    }
    use cobalt_model::DEV_ACCOUNT_KEY;

    #[test]
    fn tokens_are_per_pool_and_ignore_case() {
        let key = AccountKey::from_base64("acct", DEV_ACCOUNT_KEY).unwrap();
        let account = Account {
            name: "acct".into(),
            keys: vec![key.clone()],
        };
        let other = Account {
            name: "other".into(),
            keys: vec![key.clone()],
        };
        let t = agent_token(&key, "acct", "Pool1");
        assert!(verify_agent_token(&account, "pool1", &t));
        assert!(!verify_agent_token(&account, "pool2", &t));
        assert!(!verify_agent_token(&other, "pool1", &t));
    }

    #[test]
    fn messages_round_trip() {
        let m = AgentMessage::Events {
            events: vec![Event::Ended(RunEnd {
                run: 7,
                start_time: None,
                end_time: Timestamp::now(),
                exit_code: Some(3),
                result: TaskResult::Failure,
                failure_info: None,
                pre_processing_error: false,
                file_upload_error: false,
            })],
        };
        let text = serde_json::to_string(&m).unwrap();
        assert!(
            text.contains(r#""type":"events""#) && text.contains(r#""event":"ended""#),
            "{text}"
        );
        let back: AgentMessage = serde_json::from_str(&text).unwrap();
        assert!(matches!(back, AgentMessage::Events { events } if events.len() == 1));
        assert_eq!(layout::task_dir("j", "t"), "workitems/j/job-1/t");
    }
}
