//! The node agent: what runs on a compute node and turns the server's assignments into
//! processes.
//!
//! Owns: the one WebSocket to the Batch server ([`run`]: `Hello`/`Welcome`, heartbeats,
//! reconnecting with backoff while runs go on, events batched by [`BATCH_MAX`], a run's
//! `Started` held back for [`START_DELAY`]), the node directory (batch-rest.md §11), runs
//! (task directory, resource file downloads, the process in its own process group, the
//! wall-clock limit, kills, output file uploads, the `failureInfo` of what went wrong:
//! [`codes`]) and the node's file requests.
//! Must not do: touch the database or the Batch REST API (it knows only `cobalt-proto`
//! messages and, as a client, the Blob REST API), decide retries or task state (the server's),
//! run a command through a shell.
//!
//! **Users.** When the agent runs as root, non-elevated runs (`Assignment::elevated ==
//! false`) run as `nobody`: the task directory tree is chowned to it first, and the node root
//! must be reachable by other users (every parent directory `o+x`); if it is not, `nobody`
//! could not even enter its working directory, so the agent logs a warning at startup and
//! runs non-elevated tasks as root too. Elevated runs run as root. When the agent is not
//! root, every run runs as the agent's own user, elevated or not (`Hello::is_root` tells the
//! server so).
//!
//! **Files.** Resource and output files are transferred with plain HTTP(S) against any Blob
//! endpoint (SAS in the URL; `x-ms-version: 2020-04-08`); an output file is one Put Blob, so
//! it must fit in one (5000 MiB). Output patterns and file requests never reach outside the
//! task directory / node root, not even through symbolic links a task made.
//!
//! **Process groups.** Each command leads its own process group; a wall-clock timeout, a
//! `Kill`, `Leave` and shutdown send SIGKILL to the whole group. A process killed by a signal
//! reports 128 + the signal as its exit code ([`codes::KILLED_EXIT_CODE`] for SIGKILL). When
//! the command's own process exits, the run ends even if processes it left in the background
//! go on.
//!
//! **Joining.** The server answers `Hello` with `Welcome`, or refuses with HTTP 401/403 on
//! the upgrade or with `Leave` instead of `Welcome`: the agent then exits with
//! [`AgentError::Unauthorized`] / [`AgentError::Refused`] (a `Leave` answering the `Hello` of
//! an agent welcomed before is a removal: runs are killed, the root wiped if asked, exit 0).
//! Every other failure (refused connection, drop, silence for three heartbeats) is retried
//! with backoff from [`BACKOFF_START`] doubling to [`BACKOFF_MAX`].
//!
//! **Delivery.** An event not yet sent when the connection drops is sent after reconnecting,
//! right after `Welcome`. `Hello::running` lists the runs still going *and* the runs whose
//! `Ended` is among those unsent events, so the server never takes a run that finished while
//! the connection was down for lost. An event sent just before a drop may still be lost with
//! the connection (there are no acknowledgements); such a run is missing from `running`.

mod blob;
pub mod codes;
mod connection;
mod error;
mod exec;
mod files;
mod node;
mod outbox;
mod outputs;
mod resources;
mod run;
mod session;

pub use error::AgentError;
pub use files::MAX_READ_BYTES;
pub use outbox::START_DELAY;
pub use session::{AgentConfig, BACKOFF_MAX, BACKOFF_START, BATCH_MAX, Exit, parent_exited, run};
