//! The server side of compute nodes.
//!
//! Owns: the agent endpoint on the Batch port ([`Nodes::router`], one WebSocket per agent,
//! `session`), the local node agents a pool gets when it is created or resized (`spawn`: child
//! processes of `cobalt agent`, one per node, each with its own node root under the data
//! directory), and the dispatcher (`dispatcher`): one thread holding the live state of every
//! pool's nodes and runs, which places runnable tasks on free task slots (`placement`), sends
//! them to agents in batches, and applies their reports to the control plane in batches.
//! Must not do: Batch REST (the API crate's), SQL (it changes state only through
//! `cobalt_batch::Batch`, so the control plane's rules hold), run task processes (agents do).

mod dispatcher;
mod placement;
mod session;
mod spawn;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use cobalt_batch::{Batch, Change, Observer};
use cobalt_model::Accounts;

pub use dispatcher::{Input, PrepRelease, PrepRun};

/// How the node service runs.
#[derive(Clone, Debug)]
pub struct NodesConfig {
    /// Node roots of local agents go under `{data_dir}/nodes`.
    pub data_dir: PathBuf,
    /// The `cobalt` executable, started as `cobalt agent …` for local nodes (None: no local
    /// nodes).
    pub agent_exe: Option<PathBuf>,
    /// The Batch service URL local agents connect to (`http://127.0.0.1:PORT`).
    pub batch_url: String,
    /// How often agents must be heard from; three missed beats make a node `unknown`.
    pub heartbeat: Duration,
    /// Variables every task on these nodes gets, before the `AZ_BATCH_*` ones (`Welcome`).
    pub node_env: Vec<(String, String)>,
}

/// The node service: a handle to the dispatcher thread.
#[derive(Debug)]
pub struct Nodes {
    inputs: mpsc::Sender<Input>,
    heartbeat: Duration,
}

/// Feeds the control plane's changes to the dispatcher.
#[derive(Debug)]
struct Feed(mpsc::Sender<Input>);

impl Observer for Feed {
    fn changed(&self, change: Change) {
        // The dispatcher gone means the server is stopping; nothing to tell.
        let _ = self.0.send(Input::Change(change));
    }
}

impl Nodes {
    /// Starts the dispatcher thread for `accounts` and subscribes it to `batch`'s changes.
    /// Unfinished runs of a previous process are requeued and pools get fresh local nodes.
    pub fn start(
        batch: Arc<Batch>,
        accounts: Accounts,
        config: NodesConfig,
    ) -> std::io::Result<Arc<Self>> {
        let (tx, rx) = mpsc::channel();
        batch.set_observer(Arc::new(Feed(tx.clone())));
        let heartbeat = config.heartbeat;
        dispatcher::spawn(batch, accounts, config, rx)?;
        Ok(Arc::new(Self {
            inputs: tx,
            heartbeat,
        }))
    }

    /// The router of the agent endpoint (`cobalt_proto::AGENT_PATH`).
    pub fn router(self: &Arc<Self>) -> axum::Router {
        session::router(Arc::clone(self))
    }

    /// Asks node `node` of `pool` for a file operation on `path` (relative to its node root)
    /// and waits for the answer (at most 30 s). None: the node is not connected.
    /// Blocks: call it from a blocking thread.
    pub fn file(
        &self,
        account: &str,
        pool: &str,
        node: &str,
        path: &str,
        op: cobalt_proto::FileOp,
    ) -> Option<cobalt_proto::FileOutcome> {
        let (tx, rx) = mpsc::channel();
        let input = Input::File {
            account: account.to_owned(),
            pool: pool.to_owned(),
            node: node.to_owned(),
            path: path.to_owned(),
            op,
            reply: tx,
        };
        self.inputs.send(input).ok()?;
        rx.recv_timeout(Duration::from_secs(30)).ok().flatten()
    }

    /// Runs `action` on node `node` of `pool` and waits for the dispatcher's answer.
    /// Blocks: call it from a blocking thread.
    pub fn act(
        &self,
        account: &str,
        pool: &str,
        node: &str,
        action: cobalt_model::batch::NodeAction,
    ) -> Result<(), cobalt_model::batch::NodeActionError> {
        let (tx, rx) = mpsc::channel();
        let input = Input::Act {
            account: account.to_owned(),
            pool: pool.to_owned(),
            node: node.to_owned(),
            action,
            reply: tx,
        };
        let gone = cobalt_model::batch::NodeActionError::NotFound;
        self.inputs.send(input).map_err(|_| gone)?;
        rx.recv_timeout(Duration::from_secs(30)).map_err(|_| gone)?
    }

    /// The job preparation and release runs of `job`, per node (since this process started).
    /// Blocks: call it from a blocking thread.
    pub fn prep_release(&self, account: &str, job: &str) -> Vec<(String, PrepRelease)> {
        let (tx, rx) = mpsc::channel();
        let input = Input::PrepStatus {
            account: account.to_owned(),
            job: job.to_owned(),
            reply: tx,
        };
        if self.inputs.send(input).is_err() {
            return Vec::new();
        }
        rx.recv_timeout(Duration::from_secs(30)).unwrap_or_default()
    }

    /// Stops every local agent and the dispatcher thread.
    pub fn shutdown(&self) {
        let _ = self.inputs.send(Input::Shutdown);
    }
}
