//! The dispatcher: one thread that owns the live state of every pool's nodes and runs. It
//! reacts to control-plane changes and agent messages, and each turn of its loop first
//! drains every pending input, then applies the finished runs (one transaction per account),
//! places runnable tasks on free slots (one transaction per pool), and saves changed node
//! records — so a burst of work costs a handful of transactions, not one per task.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::process::Child;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use cobalt_batch::{Batch, BatchResult, Change, Conditions, RunOutcome, RunStart};
use cobalt_model::Accounts;
use cobalt_model::batch::{
    AllocationState, DisableJobOption, JobState, Node, NodeAction, NodeActionError, NodeAgentInfo,
    NodeDeallocationOption, NodeInfo, NodeState, Pool, PoolState, RecentTask, SchedulingState,
    StartTaskInfo, StartTaskState, TaskResult, TaskState, Timestamp, id_key,
};
use cobalt_proto::{
    AgentMessage, Event, FileOp, FileOutcome, FileRequest, Hello, RunEnd, RunKind, ServerMessage,
    Welcome, layout,
};
use tokio::sync::mpsc::UnboundedSender;

use crate::NodesConfig;
use crate::placement::{self, Slots};
use crate::spawn;

/// What the dispatcher hears.
#[derive(Debug)]
pub enum Input {
    /// The control plane changed something.
    Change(Change),
    /// An agent said hello on connection `conn`; `out` reaches it.
    Hello {
        /// The connection.
        conn: u64,
        /// What it said.
        hello: Hello,
        /// Its token.
        token: String,
        /// Messages to the agent.
        out: UnboundedSender<ServerMessage>,
    },
    /// An agent's later message.
    Message {
        /// The connection.
        conn: u64,
        /// The message.
        message: AgentMessage,
    },
    /// A connection ended.
    Closed {
        /// The connection.
        conn: u64,
    },
    /// A file request for a node; the answer (None: the node is not connected) goes to
    /// `reply`.
    File {
        /// The account.
        account: String,
        /// The pool.
        pool: String,
        /// The node.
        node: String,
        /// Path relative to the node root.
        path: String,
        /// What to do.
        op: FileOp,
        /// Where the answer goes.
        reply: std::sync::mpsc::Sender<Option<FileOutcome>>,
    },
    /// An operation on a node, answered on `reply`.
    Act {
        /// The account.
        account: String,
        /// The pool.
        pool: String,
        /// The node.
        node: String,
        /// What to do.
        action: NodeAction,
        /// Where the answer goes.
        reply: std::sync::mpsc::Sender<Result<(), NodeActionError>>,
    },
    /// The preparation and release runs of a job, answered on `reply`.
    PrepStatus {
        /// The account.
        account: String,
        /// The job.
        job: String,
        /// Where the answer goes: (node, its runs) per node.
        reply: std::sync::mpsc::Sender<Vec<(String, PrepRelease)>>,
    },
    /// Stop everything.
    Shutdown,
}

type PoolKey = (String, String);

/// Most recent tasks a node record lists.
const RECENT_TASKS: usize = 10;
/// A local agent that dies this soon after starting, without connecting, failed to start.
const QUICK_DEATH: Duration = Duration::from_secs(10);
/// After this many failed starts in a row, a pool stops starting local agents.
const MAX_SPAWN_FAILURES: u32 = 5;
/// How long a busy turn waits for more events before it starts its work.
const COALESCE: Duration = Duration::from_micros(500);
/// A turn that handled this many inputs counts as busy.
const BUSY_TURN: usize = 4;
/// How stale a node's task counters (`runningTasksCount`…) may be in its saved record: a
/// burst of tasks then saves node records a few times a second, not on every turn.
const COUNTERS_FLUSH: Duration = Duration::from_millis(100);
/// With at least this many runs going, runs end in a stream: the ends (and starts) recorded
/// wait up to [`RUNS_HOLD`], or until [`RUNS_BATCH`] have gathered, to share one transaction.
/// With fewer, each turn writes what it has, so that a lone task completes without delay.
const RUNS_STREAM: usize = 8;
/// How long a stream's recorded runs may wait to be written.
const RUNS_HOLD: Duration = Duration::from_millis(10);
/// A stream's recorded runs are written once this many have gathered.
const RUNS_BATCH: usize = 256;
/// A node takes this many times its task slots in queued runs beyond the runs it has: a slot
/// that frees starts the next task at once, and a busy turn sends more tasks per message.
const QUEUE_PER_SLOT: i32 = 4;
/// A task run waiting this long in the queue of a full node while another node has a free
/// slot is taken back and placed again (a free slot must not idle while tasks wait).
const REBALANCE_AFTER: Duration = Duration::from_millis(100);

struct NodeRt {
    node: Node,
    out: Option<UnboundedSender<ServerMessage>>,
    conn: Option<u64>,
    child: Option<Child>,
    started: Instant,
    free: i32,
    runs: HashSet<u64>,
    start_task_run: Option<u64>,
    /// What happens to the node once its running tasks are done (`taskcompletion`).
    after_drain: Option<Drain>,
}

impl NodeRt {
    /// Whether new task runs may go to the node: connected, not draining, scheduling enabled,
    /// idle or running.
    fn takes_tasks(&self) -> bool {
        self.out.is_some()
            && self.after_drain.is_none()
            && self.node.scheduling_state == SchedulingState::Enabled
            && matches!(self.node.state, NodeState::Idle | NodeState::Running)
    }
}

/// How [`Dispatcher::stop_runs`] settles the tasks of the runs it kills.
enum Stop<'a> {
    /// Back to the queue, counted as a requeue the user asked for.
    Requeue,
    /// Completed as a failure (`TaskEnded`) with this message.
    End(&'a str),
    /// Nothing: they go with their job.
    Forget,
}

/// What a draining node does once its running tasks are done.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Drain {
    /// Leave the pool.
    Remove,
    /// Restart (reboot), wiping the node root first (reimage) or not.
    Restart {
        /// Reimage.
        wipe: bool,
    },
}

struct PoolRt {
    account: String,
    pool: Pool,
    nodes: BTreeMap<String, NodeRt>,
    next_index: u32,
    /// Nodes whose record changed and must be saved this turn.
    dirty: HashSet<String>,
    /// Nodes whose task counters changed: saved at most every [`COUNTERS_FLUSH`].
    lazy: HashSet<String>,
    /// When the pool's node records were last saved.
    flushed: Instant,
    /// Nodes joined or left: the pool's node counts must be recounted.
    recount: bool,
    removed: Vec<String>,
    wants_schedule: bool,
    spawn_failures: u32,
    /// Nodes lost (agent died, server restarted) that a steady pool replaces.
    lost: usize,
    /// What happens to running tasks when a resize down removes nodes.
    dealloc: NodeDeallocationOption,
    /// The active jobs on the pool, best first (None: to be read again after a job changed).
    jobs: Option<Arc<Vec<cobalt_model::batch::Job>>>,
    /// When its queues were last checked for runs a free slot elsewhere should take.
    rebalanced: Instant,
}

/// One execution of a job preparation or release task on a node.
#[derive(Clone, Debug, Default)]
pub struct PrepRun {
    /// Running (false) or completed (true).
    pub completed: bool,
    /// When it started.
    pub start_time: Option<Timestamp>,
    /// When it ended.
    pub end_time: Option<Timestamp>,
    /// Its exit code.
    pub exit_code: Option<i32>,
    /// Success or failure.
    pub result: Option<TaskResult>,
    /// What went wrong.
    pub failure_info: Option<cobalt_model::batch::FailureInfo>,
    /// Retries so far.
    pub retry_count: i32,
}

/// A job's preparation and release task on one node.
#[derive(Clone, Debug)]
pub struct PrepRelease {
    /// The pool of the node.
    pub pool: String,
    /// The preparation task.
    pub prep: PrepRun,
    /// The release task, once the job ended.
    pub release: Option<PrepRun>,
}

struct Run {
    pool: PoolKey,
    node: String,
    kind: RunKind,
    job: String,
    task: String,
    slots: i32,
    /// How long the task directory is kept after the run ends.
    retention: Option<Duration>,
    /// The command's process group, once started (for local nodes whose agent dies).
    pgid: Option<i32>,
    /// A task run the agent has begun (`Event::Began`): its task is `running`. Before that
    /// it waits in the agent's queue and its task is still `active`.
    began: bool,
    /// Where the task runs, recorded when it begins.
    node_info: Option<NodeInfo>,
    /// When it was sent to the node.
    sent: Instant,
    /// Asked back from its node's queue (`Withdraw`): until the agent answers, its task stays
    /// `active` and its slots stay taken. If the agent began it first, it runs as usual.
    withdrawing: bool,
}

impl Run {
    /// A task run still waiting in its agent's queue: not begun, its task still `active`.
    fn queued(&self) -> bool {
        self.kind == RunKind::Task && !self.began
    }

    /// A queued run that may be asked back: not asked already.
    fn movable(&self) -> bool {
        self.queued() && !self.withdrawing
    }
}

struct Dispatcher {
    batch: Arc<Batch>,
    accounts: Accounts,
    config: NodesConfig,
    pools: HashMap<PoolKey, PoolRt>,
    runs: HashMap<u64, Run>,
    by_task: HashMap<(String, String, String), u64>,
    conns: HashMap<u64, (PoolKey, String)>,
    job_pool: HashMap<(String, String), String>,
    outcomes: HashMap<String, Vec<RunOutcome>>,
    /// Queued task runs the agents began, per account, to mark `running` (with the run).
    began: HashMap<String, Vec<(u64, RunStart)>>,
    /// Since when runs in `outcomes` or `began` wait to be written.
    unwritten_since: Option<Instant>,
    /// The last turn handled many inputs.
    busy: bool,
    leaving: Vec<(Child, Instant)>,
    /// The next run id (see [`first_run_id`]).
    next_run: u64,
    files: HashMap<u64, (u64, std::sync::mpsc::Sender<Option<FileOutcome>>)>,
    next_file: u64,
    /// Job preparation and release runs per (account, job key) and node.
    preps: HashMap<(String, String), BTreeMap<String, PrepRelease>>,
    /// Task directories to remove when their retention time is over: (when, pool, node, dir).
    cleanups: std::collections::BinaryHeap<std::cmp::Reverse<(Instant, PoolKey, String, String)>>,
}

/// Starts the dispatcher thread.
pub fn spawn(
    batch: Arc<Batch>,
    accounts: Accounts,
    config: NodesConfig,
    rx: Receiver<Input>,
) -> std::io::Result<()> {
    let mut d = Dispatcher {
        batch,
        accounts,
        config,
        pools: HashMap::new(),
        runs: HashMap::new(),
        by_task: HashMap::new(),
        conns: HashMap::new(),
        job_pool: HashMap::new(),
        outcomes: HashMap::new(),
        began: HashMap::new(),
        unwritten_since: None,
        busy: false,
        leaving: Vec::new(),
        next_run: first_run_id(),
        files: HashMap::new(),
        next_file: 1,
        cleanups: std::collections::BinaryHeap::new(),
        preps: HashMap::new(),
    };
    std::thread::Builder::new()
        .name("cobalt-dispatcher".to_owned())
        .spawn(move || d.run(&rx))?;
    Ok(())
}

/// Whether `node` may start tasks of `job` as far as the job's preparation task goes: the job
/// has none, does not wait for it, or it succeeded there.
fn prep_allows(
    preps: &HashMap<(String, String), BTreeMap<String, PrepRelease>>,
    account: &str,
    job: &cobalt_model::batch::Job,
    node: &str,
) -> bool {
    let Some(prep) = &job.spec.job_preparation_task else {
        return true;
    };
    !prep.wait_for_success.unwrap_or(true)
        || preps
            .get(&(account.to_owned(), id_key(&job.id)))
            .and_then(|m| m.get(node))
            .is_some_and(|p| p.prep.completed && p.prep.result == Some(TaskResult::Success))
}

/// The first run id of this process: the time in microseconds. A remote agent that reconnects
/// after a restart may still report runs of the previous process (in `Hello`, or events it
/// kept); their ids are smaller than any this process gives, so they are never taken for its
/// own runs.
fn first_run_id() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()
        .and_then(|d| u64::try_from(d.as_micros()).ok())
        .unwrap_or(0)
        .max(1)
}

fn pool_key(account: &str, pool: &str) -> PoolKey {
    (account.to_owned(), id_key(pool))
}

fn log_err<T>(what: &str, r: BatchResult<T>) -> Option<T> {
    match r {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::error!(code = e.code.as_str(), "dispatcher: {what} failed");
            None
        }
    }
}

impl Dispatcher {
    fn run(&mut self, rx: &Receiver<Input>) {
        self.recover();
        loop {
            let mut stop = false;
            let mut handled = 0usize;
            match rx.recv_timeout(self.idle_wait()) {
                Ok(input) => {
                    stop |= self.handle(input);
                    handled += 1;
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => stop = true,
            }
            while let Ok(input) = rx.try_recv() {
                stop |= self.handle(input);
                handled += 1;
            }
            // Under load, let a moment's worth of events gather: a turn's transactions and
            // queries then serve many runs instead of one or two.
            if self.busy && !stop {
                std::thread::sleep(COALESCE);
                while let Ok(input) = rx.try_recv() {
                    stop |= self.handle(input);
                    handled += 1;
                }
            }
            self.busy = handled >= BUSY_TURN;
            if stop {
                // What ended is written: those tasks need not run again after a restart.
                self.flush_runs();
                self.stop_all();
                return;
            }
            if self.runs_due() {
                self.flush_runs();
            }
            self.clean_expired();
            self.rebalance_all();
            self.schedule_all();
            self.reap();
            self.flush_nodes();
        }
    }

    /// A previous process's runs are gone with its agents: requeue them (not counted as
    /// retries) and start every pool's nodes afresh.
    fn recover(&mut self) {
        let accounts: Vec<String> = self.accounts.names().map(str::to_owned).collect();
        for account in accounts {
            if let Some(running) =
                log_err("listing running tasks", self.batch.running_tasks(&account))
            {
                log_err(
                    "requeueing tasks",
                    self.batch.requeue_runs(&account, running, false),
                );
            }
            let Some(pools) = log_err("listing pools", self.batch.all_pools(&account)) else {
                continue;
            };
            for pool in pools {
                // The nodes the pool had are lost with the previous process; it gets as many.
                let had =
                    usize::try_from(pool.current_dedicated_nodes + pool.current_low_priority_nodes)
                        .unwrap_or(0);
                let stale: Vec<String> = log_err(
                    "listing nodes",
                    self.batch.pool_nodes(&account, &pool.spec.id),
                )
                .unwrap_or_default()
                .into_iter()
                .map(|n| n.id)
                .collect();
                log_err(
                    "removing stale nodes",
                    self.batch
                        .save_nodes(&account, &pool.spec.id, &[], &stale, true),
                );
                self.refresh_pool(&account, &pool.spec.id, had);
            }
        }
    }

    /// Handles one input; true means stop.
    fn handle(&mut self, input: Input) -> bool {
        match input {
            Input::Change(change) => self.on_change(change),
            Input::Hello {
                conn,
                hello,
                token,
                out,
            } => self.on_hello(conn, hello, &token, out),
            Input::Message { conn, message } => self.on_message(conn, message),
            Input::Closed { conn } => self.on_closed(conn),
            Input::File {
                account,
                pool,
                node,
                path,
                op,
                reply,
            } => {
                self.on_file(&account, &pool, &node, path, op, reply);
            }
            Input::Act {
                account,
                pool,
                node,
                action,
                reply,
            } => {
                let result = self.on_act(&account, &pool, &node, action);
                // The node's new state is saved before the API answers, so a read right after
                // the answer sees it.
                self.flush_nodes();
                let _ = reply.send(result);
            }
            Input::PrepStatus {
                account,
                job,
                reply,
            } => {
                let runs = self
                    .preps
                    .get(&(account, id_key(&job)))
                    .map(|m| m.iter().map(|(n, p)| (n.clone(), p.clone())).collect())
                    .unwrap_or_default();
                let _ = reply.send(runs);
            }
            Input::Shutdown => return true,
        }
        false
    }

    fn on_change(&mut self, change: Change) {
        match change {
            Change::Pool { account, pool } => self.refresh_pool(&account, &pool, 0),
            Change::Tasks { account, job } => self.wake_job_pool(&account, &job),
            Change::Job { account, job } => self.on_job(&account, &job),
            Change::JobDisabling {
                account,
                job,
                option,
            } => self.on_job_disabling(&account, &job, option),
            Change::NodesRemoved {
                account,
                pool,
                nodes,
                option,
            } => {
                let key = pool_key(&account, &pool);
                for node in nodes {
                    self.drain_or(&key, &node, option, Drain::Remove);
                }
            }
            Change::PoolResize {
                account,
                pool,
                option,
            } => {
                if let Some(rt) = self.pools.get_mut(&pool_key(&account, &pool)) {
                    rt.dealloc = option;
                }
            }
            Change::TaskStopped { account, job, task } => {
                if let Some(run) = self
                    .by_task
                    .get(&(account, id_key(&job), id_key(&task)))
                    .copied()
                {
                    self.kill_run(run);
                }
            }
        }
    }

    fn job_pool_of(&mut self, account: &str, job: &str) -> Option<String> {
        let key = (account.to_owned(), id_key(job));
        if let Some(p) = self.job_pool.get(&key) {
            return Some(p.clone());
        }
        let job = self
            .batch
            .get_job(account, job, &Conditions::default())
            .ok()?;
        let pool = id_key(job.spec.pool_info.pool_id.as_deref()?);
        self.job_pool.insert(key, pool.clone());
        Some(pool)
    }

    fn wake_job_pool(&mut self, account: &str, job: &str) {
        if let Some(pool) = self.job_pool_of(account, job)
            && let Some(p) = self.pools.get_mut(&(account.to_owned(), pool))
        {
            p.wants_schedule = true;
        }
    }

    fn job_runs(&self, account: &str, job: &str) -> Vec<u64> {
        let job = id_key(job);
        self.runs
            .iter()
            .filter(|(_, r)| {
                r.pool.0 == account && id_key(&r.job) == job && r.kind == RunKind::Task
            })
            .map(|(id, _)| *id)
            .collect()
    }

    fn on_job(&mut self, account: &str, job_id: &str) {
        // Which jobs run on which pool, and in what order, may have changed.
        for p in self.pools.values_mut().filter(|p| p.account == account) {
            p.jobs = None;
        }
        self.job_pool.remove(&(account.to_owned(), id_key(job_id)));
        let job = match self.batch.get_job(account, job_id, &Conditions::default()) {
            Ok(job) => Ok(job),
            Err(e) if e.code == cobalt_batch::ErrorCode::JobNotFound => Err(()),
            Err(e) => {
                tracing::error!(
                    code = e.code.as_str(),
                    job = job_id,
                    "cannot read a changed job"
                );
                return;
            }
        };
        let Ok(job) = job else {
            // Deleted: its runs stop.
            for run in self.job_runs(account, job_id) {
                self.kill_run(run);
            }
            return;
        };
        if job.state == JobState::Deleting {
            // A deleted job's task directories go from every node.
            let dir = format!("{}/{}", layout::WORKITEMS, job.id);
            for p in self.pools.values().filter(|p| p.account == account) {
                for n in p.nodes.values() {
                    if let Some(out) = &n.out {
                        let _ = out.send(ServerMessage::Clean { dir: dir.clone() });
                    }
                }
            }
        }
        match job.state {
            JobState::Terminating | JobState::Completed | JobState::Deleting => {
                self.start_releases(account, &job);
                let runs = self.job_runs(account, job_id);
                let how = if job.state == JobState::Deleting {
                    // The tasks go with the job.
                    Stop::Forget
                } else {
                    Stop::End("Task was ended because its job was terminated")
                };
                self.stop_runs(account, runs, how);
            }
            _ => self.wake_job_pool(account, job_id),
        }
    }

    fn on_job_disabling(&mut self, account: &str, job: &str, option: DisableJobOption) {
        if option == DisableJobOption::Wait {
            // Running tasks finish; those still waiting in a node's queue have not begun, and
            // stay active.
            let runs = self.job_runs(account, job);
            self.withdraw(runs);
            return;
        }
        let runs = self.job_runs(account, job);
        let how = if option == DisableJobOption::Requeue {
            Stop::Requeue
        } else {
            Stop::End("Task was ended because its job was disabled")
        };
        self.stop_runs(account, runs, how);
    }

    /// Kills `runs` and settles their tasks: requeued (counted as the user's requeue), ended
    /// as failures with `reason`, or left to go with their job.
    fn stop_runs(&mut self, account: &str, runs: Vec<u64>, how: Stop<'_>) {
        let tasks: Vec<(String, String)> = runs
            .iter()
            .filter_map(|r| self.runs.get(r).map(|r| (r.job.clone(), r.task.clone())))
            .collect();
        for run in runs {
            self.kill_run(run);
        }
        if tasks.is_empty() {
            return;
        }
        let r = match how {
            Stop::Requeue => self.batch.requeue_runs(account, tasks, true),
            Stop::End(reason) => self.batch.end_runs(account, tasks, reason),
            Stop::Forget => return,
        };
        log_err("stopping tasks", r);
    }

    /// Reloads a pool after a change: its targets, start task and state; `lost` nodes are to
    /// be replaced even if the pool is steady.
    fn refresh_pool(&mut self, account: &str, pool_id: &str, lost: usize) {
        let key = pool_key(account, pool_id);
        let pool = self
            .batch
            .get_pool(account, pool_id, &Conditions::default())
            .ok();
        match pool {
            Some(pool) if pool.state == PoolState::Active => {
                let rt = self.pools.entry(key.clone()).or_insert_with(|| PoolRt {
                    account: account.to_owned(),
                    pool: pool.clone(),
                    nodes: BTreeMap::new(),
                    next_index: 1,
                    dirty: HashSet::new(),
                    lazy: HashSet::new(),
                    flushed: Instant::now(),
                    rebalanced: Instant::now(),
                    recount: true,
                    removed: Vec::new(),
                    wants_schedule: true,
                    spawn_failures: 0,
                    lost: 0,
                    dealloc: NodeDeallocationOption::Requeue,
                    jobs: None,
                });
                rt.lost += lost;
                if rt.pool.target_nodes() != pool.target_nodes() {
                    rt.spawn_failures = 0;
                }
                rt.pool = pool;
                rt.wants_schedule = true;
                rt.recount = true;
                self.ensure_size(&key);
            }
            _ => self.drain_pool(&key),
        }
    }

    /// A pool being deleted (or gone): every node leaves, its runs go back to the queue.
    fn drain_pool(&mut self, key: &PoolKey) {
        let Some(rt) = self.pools.get(key) else {
            // Nodes left over by an earlier process.
            if let Some(nodes) = log_err("listing nodes", self.batch.pool_nodes(&key.0, &key.1)) {
                let ids: Vec<String> = nodes.into_iter().map(|n| n.id).collect();
                if !ids.is_empty() {
                    log_err(
                        "removing nodes",
                        self.batch.save_nodes(&key.0, &key.1, &[], &ids, true),
                    );
                }
            }
            return;
        };
        let ids: Vec<String> = rt.nodes.keys().cloned().collect();
        for id in ids {
            self.remove_node(key, &id, true, false);
        }
        if let Some(rt) = self.pools.remove(key) {
            log_err(
                "removing nodes",
                self.batch
                    .save_nodes(&rt.account, &rt.pool.spec.id, &[], &rt.removed, true),
            );
        }
    }

    /// Starts or removes local nodes until the pool has its target.
    fn ensure_size(&mut self, key: &PoolKey) {
        let Some(rt) = self.pools.get_mut(key) else {
            return;
        };
        let target = usize::try_from(rt.pool.target_nodes()).unwrap_or(0);
        let live = rt
            .nodes
            .values()
            .filter(|n| n.after_drain.is_none())
            .count();
        // A resizing pool moves to its target; a steady one (e.g. after a stopped resize)
        // only replaces lost nodes.
        let resizing = rt.pool.allocation_state == AllocationState::Resizing;
        let want = if resizing {
            target
        } else {
            (live + rt.lost).min(target)
        };
        rt.lost = 0;
        if live < want {
            for _ in live..want {
                if !self.start_local_node(key) {
                    break;
                }
            }
        } else if resizing && live > target {
            // Remove idle nodes first, then the least busy.
            let mut order: Vec<(usize, String)> = rt
                .nodes
                .iter()
                .filter(|(_, n)| n.after_drain.is_none())
                .map(|(id, n)| (n.runs.len(), id.clone()))
                .collect();
            order.sort();
            let option = self
                .pools
                .get(key)
                .map_or(NodeDeallocationOption::Requeue, |p| p.dealloc);
            for (_, id) in order.into_iter().take(live - target) {
                self.drain_or(key, &id, option, Drain::Remove);
            }
        }
    }

    fn start_local_node(&mut self, key: &PoolKey) -> bool {
        let Some(rt) = self.pools.get_mut(key) else {
            return false;
        };
        if rt.spawn_failures >= MAX_SPAWN_FAILURES {
            return false;
        }
        let Some(exe) = &self.config.agent_exe else {
            return false;
        };
        let Some(account) = self.accounts.get(&rt.account) else {
            return false;
        };
        // Nodes beyond the dedicated target are the low-priority ones.
        let dedicated = i32::try_from(rt.nodes.values().filter(|n| n.node.is_dedicated).count())
            .unwrap_or(i32::MAX)
            < rt.pool.spec.target_dedicated_nodes.unwrap_or(0);
        let Some(key_bytes) = account.keys.first() else {
            return false;
        };
        let now = Timestamp::now();
        let id = spawn::node_id(&rt.pool.spec.id, rt.next_index, now);
        rt.next_index += 1;
        let root = spawn::node_root(&self.config.data_dir, &rt.account, &rt.pool.spec.id, &id);
        let child = spawn::start(&spawn::LocalAgent {
            exe,
            server: &self.config.batch_url,
            account: &rt.account,
            key: key_bytes,
            pool: &rt.pool.spec.id,
            node: &id,
            root: &root,
        });
        let child = match child {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(pool = rt.pool.spec.id, error = %e, "cannot start a node agent");
                rt.spawn_failures += 1;
                return false;
            }
        };
        tracing::info!(pool = rt.pool.spec.id, node = id, "starting a node agent");
        let node = Node {
            id: id.clone(),
            state: NodeState::Creating,
            scheduling_state: SchedulingState::Enabled,
            state_transition_time: now,
            last_boot_time: None,
            allocation_time: now,
            ip_address: None,
            affinity_id: format!("TVM:{id}"),
            vm_size: rt.pool.spec.vm_size.clone(),
            total_tasks_run: 0,
            running_tasks_count: 0,
            running_task_slots_count: 0,
            total_tasks_succeeded: 0,
            recent_tasks: Vec::new(),
            start_task: rt.pool.spec.start_task.clone(),
            start_task_info: None,
            is_dedicated: dedicated,
            node_agent_info: None,
        };
        let free = rt.pool.task_slots_per_node();
        rt.nodes.insert(
            id.clone(),
            NodeRt {
                node,
                out: None,
                conn: None,
                child: Some(child),
                started: Instant::now(),
                free,
                runs: HashSet::new(),
                start_task_run: None,
                after_drain: None,
            },
        );
        rt.dirty.insert(id);
        rt.recount = true;
        true
    }

    /// Takes a node out of its pool: it is told to leave, its runs go back to the queue
    /// (`counted`: as a requeue the user asked for, e.g. a resize down).
    fn remove_node(&mut self, key: &PoolKey, id: &str, wipe: bool, counted: bool) {
        let Some(rt) = self.pools.get_mut(key) else {
            return;
        };
        let Some(mut node) = rt.nodes.remove(id) else {
            return;
        };
        rt.dirty.remove(id);
        rt.lazy.remove(id);
        rt.removed.push(id.to_owned());
        if let Some(out) = &node.out {
            let _ = out.send(ServerMessage::Leave { wipe });
        }
        if let Some(conn) = node.conn {
            self.conns.remove(&conn);
        }
        if let Some(child) = node.child.take() {
            self.leaving.push((child, Instant::now()));
        }
        let account = rt.account.clone();
        let tasks = self.forget_runs(&node.runs);
        if !tasks.is_empty() {
            log_err(
                "requeueing tasks",
                self.batch.requeue_runs(&account, tasks, counted),
            );
        }
    }

    /// Drops runs from the books; returns the (job, task) of the task runs among them.
    fn forget_runs(&mut self, runs: &HashSet<u64>) -> Vec<(String, String)> {
        let mut tasks = Vec::new();
        for run in runs {
            if let Some(r) = self.unbook(*run)
                && r.kind == RunKind::Task
            {
                tasks.push((r.job, r.task));
            }
        }
        tasks
    }

    /// Removes a run from the books, with its start if that is not written yet: a run that is
    /// gone must not turn its task `running` afterwards.
    fn unbook(&mut self, run: u64) -> Option<Run> {
        let r = self.runs.remove(&run)?;
        self.by_task
            .remove(&(r.pool.0.clone(), id_key(&r.job), id_key(&r.task)));
        if let Some(pending) = self.began.get_mut(&r.pool.0) {
            pending.retain(|(id, _)| *id != run);
        }
        Some(r)
    }

    /// Drops a run from the books at once, and tells its agent to kill it.
    fn kill_run(&mut self, run: u64) {
        self.drop_run(run, true);
    }

    /// The agent gave back a run it was asked to withdraw: its slots are free, and its task,
    /// still `active`, is placed again.
    fn on_withdrawn(&mut self, run: u64) {
        self.drop_run(run, false);
    }

    /// Drops a run from the books and frees its slots; `kill`: tells its agent to kill it.
    fn drop_run(&mut self, run: u64, kill: bool) {
        let Some(r) = self.unbook(run) else {
            return;
        };
        if let Some(rt) = self.pools.get_mut(&r.pool)
            && let Some(node) = rt.nodes.get_mut(&r.node)
        {
            if kill && let Some(out) = &node.out {
                let _ = out.send(ServerMessage::Kill { run });
            }
            node.runs.remove(&run);
            node.free += r.slots;
            update_counters(&mut node.node, &self.runs, &node.runs);
            rt.dirty.insert(r.node.clone());
            rt.wants_schedule = true;
        }
    }

    fn on_hello(
        &mut self,
        conn: u64,
        hello: Hello,
        token: &str,
        out: UnboundedSender<ServerMessage>,
    ) {
        let allowed = self
            .accounts
            .get(&hello.account)
            .is_some_and(|a| cobalt_proto::verify_agent_token(a, &hello.pool_id, token));
        let key = pool_key(&hello.account, &hello.pool_id);
        if !allowed || !self.pools.contains_key(&key) {
            tracing::warn!(pool = hello.pool_id, allowed, "refusing a node agent");
            let _ = out.send(ServerMessage::Leave { wipe: false });
            return;
        }
        let now = Timestamp::now();
        let Some(rt) = self.pools.get_mut(&key) else {
            return;
        };
        let id = match hello.node_id.clone() {
            Some(id) => id,
            None => {
                let id = spawn::node_id(&rt.pool.spec.id, rt.next_index, now);
                rt.next_index += 1;
                id
            }
        };
        let slots = rt.pool.task_slots_per_node();
        let vm_size = rt.pool.spec.vm_size.clone();
        let start_task = rt.pool.spec.start_task.clone();
        let entry = rt.nodes.entry(id.clone()).or_insert_with(|| NodeRt {
            node: Node {
                id: id.clone(),
                state: NodeState::Creating,
                scheduling_state: SchedulingState::Enabled,
                state_transition_time: now,
                last_boot_time: None,
                allocation_time: now,
                ip_address: None,
                affinity_id: format!("TVM:{id}"),
                vm_size,
                total_tasks_run: 0,
                running_tasks_count: 0,
                running_task_slots_count: 0,
                total_tasks_succeeded: 0,
                recent_tasks: Vec::new(),
                start_task: start_task.clone(),
                start_task_info: None,
                is_dedicated: true,
                node_agent_info: None,
            },
            out: None,
            conn: None,
            child: None,
            started: Instant::now(),
            free: slots,
            runs: HashSet::new(),
            start_task_run: None,
            after_drain: None,
        });
        if let Some(old) = entry.conn.replace(conn) {
            self.conns.remove(&old);
        }
        entry.out = Some(out.clone());
        entry.node.ip_address = Some(hello.ip_address.clone());
        entry.node.node_agent_info = Some(NodeAgentInfo {
            version: hello.agent_version.clone(),
            last_update_time: now,
        });
        // Runs the agent no longer has were lost with it; runs it has that we do not know are
        // stale: they are killed once it is welcomed (an agent takes nothing before Welcome).
        let reported: HashSet<u64> = hello.running.iter().copied().collect();
        let lost: HashSet<u64> = entry.runs.difference(&reported).copied().collect();
        let stale: Vec<u64> = reported.difference(&entry.runs).copied().collect();
        let fresh = entry.node.last_boot_time.is_none()
            || !lost.is_empty() && entry.runs.len() == lost.len();
        if fresh {
            entry.node.last_boot_time = Some(now);
        }
        let is_dedicated = entry.node.is_dedicated.to_string();
        let mut env = self.config.node_env.clone();
        env.extend([
            ("AZ_BATCH_ACCOUNT_NAME".to_owned(), hello.account.clone()),
            (
                "AZ_BATCH_ACCOUNT_URL".to_owned(),
                self.config.batch_url.clone(),
            ),
            ("AZ_BATCH_POOL_ID".to_owned(), rt.pool.spec.id.clone()),
            ("AZ_BATCH_NODE_ID".to_owned(), id.clone()),
            ("AZ_BATCH_NODE_IS_DEDICATED".to_owned(), is_dedicated),
        ]);
        let _ = out.send(ServerMessage::Welcome(Welcome {
            node_id: id.clone(),
            environment: env,
            heartbeat_seconds: self.config.heartbeat.as_secs().max(1),
            task_slots: u32::try_from(rt.pool.task_slots_per_node()).unwrap_or(1),
        }));
        for run in stale {
            let _ = out.send(ServerMessage::Kill { run });
        }
        // A start task that never ran, or whose run was lost with the connection, runs now.
        let needs_start_task = entry.start_task_run.is_none()
            && entry
                .node
                .start_task_info
                .as_ref()
                .is_none_or(|i| i.state == StartTaskState::Running);
        let account = rt.account.clone();
        rt.dirty.insert(id.clone());
        rt.recount = true;
        rt.wants_schedule = true;
        self.conns.insert(conn, (key.clone(), id.clone()));
        let tasks = self.forget_runs(&lost);
        if let Some(node) = self.pools.get_mut(&key).and_then(|p| p.nodes.get_mut(&id)) {
            for run in &lost {
                node.runs.remove(run);
            }
            node.free = slots
                - node
                    .runs
                    .iter()
                    .filter_map(|r| self.runs.get(r))
                    .map(|r| r.slots)
                    .sum::<i32>();
        }
        if !tasks.is_empty() {
            log_err(
                "requeueing lost tasks",
                self.batch.requeue_runs(&account, tasks, false),
            );
        }
        match start_task.filter(|_| needs_start_task) {
            Some(start) => self.run_start_task(&key, &id, &start, 0),
            None => {
                let state = self.settled_state(&key, &id);
                self.set_node_state(&key, &id, state);
            }
        }
    }

    /// The state of a connected node from its facts: a failed start task it waits for, a
    /// start task still running, scheduling disabled, or its running tasks.
    fn settled_state(&self, key: &PoolKey, id: &str) -> NodeState {
        let Some(rt) = self.pools.get(key) else {
            return NodeState::Idle;
        };
        let Some(n) = rt.nodes.get(id) else {
            return NodeState::Idle;
        };
        let wait = rt
            .pool
            .spec
            .start_task
            .as_ref()
            .is_some_and(|t| t.wait_for_success.unwrap_or(true));
        if let Some(info) = &n.node.start_task_info {
            if info.state == StartTaskState::Running && wait {
                return NodeState::WaitingForStartTask;
            }
            if info.result == Some(TaskResult::Failure) && wait {
                return NodeState::StartTaskFailed;
            }
        }
        if n.node.scheduling_state == SchedulingState::Disabled {
            return NodeState::Offline;
        }
        let busy = n
            .runs
            .iter()
            .any(|r| self.runs.get(r).is_some_and(|r| r.kind == RunKind::Task));
        if busy {
            NodeState::Running
        } else {
            NodeState::Idle
        }
    }

    fn run_start_task(
        &mut self,
        key: &PoolKey,
        id: &str,
        start: &cobalt_model::batch::StartTask,
        retry: i32,
    ) {
        let run = self.next_run;
        self.next_run += 1;
        let Some(rt) = self.pools.get_mut(key) else {
            return;
        };
        let Some(node) = rt.nodes.get_mut(id) else {
            return;
        };
        let now = Timestamp::now();
        node.start_task_run = Some(run);
        node.node.start_task_info = Some(StartTaskInfo {
            state: StartTaskState::Running,
            start_time: now,
            end_time: None,
            exit_code: None,
            failure_info: None,
            retry_count: retry,
            last_retry_time: (retry > 0).then_some(now),
            result: None,
        });
        let wait = start.wait_for_success.unwrap_or(true);
        node.node.transition(
            if wait {
                NodeState::WaitingForStartTask
            } else {
                NodeState::Idle
            },
            now,
        );
        if let Some(out) = &node.out {
            let _ = out.send(ServerMessage::Run {
                runs: vec![placement::start_task_assignment(run, start)],
            });
        }
        rt.dirty.insert(id.to_owned());
        node.runs.insert(run);
        self.runs.insert(
            run,
            Run {
                pool: key.clone(),
                node: id.to_owned(),
                kind: RunKind::StartTask,
                job: String::new(),
                task: String::new(),
                slots: 0,
                retention: None,
                pgid: None,
                began: true,
                node_info: None,
                sent: Instant::now(),
                withdrawing: false,
            },
        );
    }

    fn set_node_state(&mut self, key: &PoolKey, id: &str, state: NodeState) {
        if let Some(rt) = self.pools.get_mut(key)
            && let Some(node) = rt.nodes.get_mut(id)
        {
            node.node.transition(state, Timestamp::now());
            rt.dirty.insert(id.to_owned());
            rt.wants_schedule = true;
        }
    }

    fn on_message(&mut self, conn: u64, message: AgentMessage) {
        // Only a welcomed agent speaks, and only of its own node's runs and file requests.
        let Some((key, node)) = self.conns.get(&conn).cloned() else {
            tracing::warn!(
                conn,
                "a message from a connection that is not a node; ignored"
            );
            return;
        };
        let mine = |r: &Run| r.pool == key && r.node == node;
        match message {
            AgentMessage::Events { events } => {
                for event in events {
                    match event {
                        Event::Ended(end) => {
                            if self.runs.get(&end.run).is_some_and(mine) {
                                self.on_run_end(end);
                            }
                        }
                        Event::Began { run, .. } => {
                            if self.runs.get(&run).is_some_and(mine) {
                                self.on_began(run);
                            }
                        }
                        Event::Withdrawn { run } => {
                            if self
                                .runs
                                .get(&run)
                                .is_some_and(|r| mine(r) && r.withdrawing && !r.began)
                            {
                                self.on_withdrawn(run);
                            }
                        }
                        Event::Started { run, pgid, .. } => {
                            if self.runs.get(&run).is_some_and(|r| mine(r) && !r.began) {
                                self.on_began(run);
                            }
                            let local = self
                                .pools
                                .get(&key)
                                .and_then(|p| p.nodes.get(&node))
                                .is_some_and(|n| n.child.is_some());
                            let own = nix::unistd::getpgrp().as_raw();
                            if let Some(r) = self.runs.get_mut(&run).filter(|r| mine(r)) {
                                // A process group is only trusted from an agent this server
                                // started on this machine, and never its own.
                                r.pgid = pgid.filter(|g| local && *g > 1 && *g != own);
                            }
                        }
                    }
                }
            }
            AgentMessage::Hello(_) => tracing::warn!(conn, "a second hello; ignored"),
            AgentMessage::FileReply(reply) => {
                if self.files.get(&reply.id).is_some_and(|(c, _)| *c == conn)
                    && let Some((_, tx)) = self.files.remove(&reply.id)
                {
                    let _ = tx.send(Some(reply.outcome));
                }
            }
        }
    }

    fn on_run_end(&mut self, end: RunEnd) {
        // A queued run that ended before it said it began (it failed to start) began too:
        // its task goes `running`, then completes, in this turn's flushes.
        if self.runs.get(&end.run).is_some_and(|r| !r.began) {
            self.on_began(end.run);
        }
        let Some(run) = self.runs.remove(&end.run) else {
            return;
        };
        self.by_task
            .remove(&(run.pool.0.clone(), id_key(&run.job), id_key(&run.task)));
        let (run_pool, run_node) = (run.pool.clone(), run.node.clone());
        let Some(rt) = self.pools.get_mut(&run.pool) else {
            return;
        };
        let account = rt.account.clone();
        let Some(node) = rt.nodes.get_mut(&run.node) else {
            return;
        };
        node.runs.remove(&end.run);
        node.free += run.slots;
        rt.lazy.insert(run.node.clone());
        rt.wants_schedule = true;
        match run.kind {
            RunKind::StartTask => {
                let start = rt.pool.spec.start_task.clone();
                let key = run.pool.clone();
                self.on_start_task_end(&key, &run.node, &end, start);
            }
            RunKind::JobPreparation | RunKind::JobRelease => {
                let account = rt.account.clone();
                self.on_prep_end(&account, &run, &end);
            }
            _ => {
                let succeeded = end.result == TaskResult::Success;
                node.node.total_tasks_run += 1;
                if succeeded {
                    node.node.total_tasks_succeeded += 1;
                }
                node.node
                    .recent_tasks
                    .retain(|t| !(t.job_id == run.job && t.task_id == run.task));
                node.node.recent_tasks.insert(
                    0,
                    RecentTask {
                        task_url: None,
                        job_id: run.job.clone(),
                        task_id: run.task.clone(),
                        task_state: TaskState::Completed,
                    },
                );
                node.node.recent_tasks.truncate(RECENT_TASKS);
                update_counters(&mut node.node, &self.runs, &node.runs);
                if let Some(keep) = run.retention
                    && let Some(when) = Instant::now().checked_add(keep)
                {
                    let dir = layout::task_dir(&run.job, &run.task);
                    self.cleanups.push(std::cmp::Reverse((
                        when,
                        run.pool.clone(),
                        run.node.clone(),
                        dir,
                    )));
                }
                // A start not written yet is written with the end, in one go.
                let began = self.began.get_mut(&account).and_then(|pending| {
                    let i = pending.iter().position(|(r, _)| *r == end.run)?;
                    Some(pending.swap_remove(i).1.node_info)
                });
                self.outcomes.entry(account).or_default().push(RunOutcome {
                    job_id: run.job,
                    task_id: run.task,
                    node_id: run.node,
                    start_time: end.start_time,
                    end_time: end.end_time,
                    exit_code: end.exit_code,
                    failure_info: end.failure_info,
                    pre_processing_error: end.pre_processing_error,
                    file_upload_error: end.file_upload_error,
                    began,
                });
            }
        }
        self.check_drained(&run_pool, &run_node);
    }

    fn on_start_task_end(
        &mut self,
        key: &PoolKey,
        id: &str,
        end: &RunEnd,
        start: Option<cobalt_model::batch::StartTask>,
    ) {
        let Some(start) = start else { return };
        let Some(node) = self.pools.get_mut(key).and_then(|p| p.nodes.get_mut(id)) else {
            return;
        };
        // The end of an earlier start task (before a reboot or reconnect) changes nothing.
        if node.start_task_run != Some(end.run) {
            return;
        }
        node.start_task_run = None;
        let retry = node
            .node
            .start_task_info
            .as_ref()
            .map_or(0, |i| i.retry_count);
        let max = start.max_task_retry_count.unwrap_or(0);
        if let Some(info) = &mut node.node.start_task_info {
            info.state = StartTaskState::Completed;
            info.start_time = end.start_time.unwrap_or(info.start_time);
            info.end_time = Some(end.end_time);
            info.exit_code = end.exit_code;
            info.result = Some(end.result);
            info.failure_info = end.failure_info.clone().or_else(|| exit_failure(end));
        }
        if end.result == TaskResult::Success {
            self.set_node_state(key, id, NodeState::Idle);
            return;
        }
        let retryable = end.exit_code.is_some_and(|c| c != 0) && !end.pre_processing_error;
        if retryable && (max == -1 || retry < max) {
            self.run_start_task(key, id, &start, retry + 1);
        } else if start.wait_for_success.unwrap_or(true) {
            self.set_node_state(key, id, NodeState::StartTaskFailed);
        } else {
            self.set_node_state(key, id, NodeState::Idle);
        }
    }

    fn on_file(
        &mut self,
        account: &str,
        pool: &str,
        node: &str,
        path: String,
        op: FileOp,
        reply: std::sync::mpsc::Sender<Option<FileOutcome>>,
    ) {
        let node = self
            .pools
            .get(&pool_key(account, pool))
            .and_then(|p| p.nodes.get(node))
            .and_then(|n| Some((n.out.clone()?, n.conn?)));
        let Some((out, conn)) = node else {
            let _ = reply.send(None);
            return;
        };
        let id = self.next_file;
        self.next_file += 1;
        if out
            .send(ServerMessage::File(FileRequest { id, path, op }))
            .is_ok()
        {
            self.files.insert(id, (conn, reply));
        } else {
            let _ = reply.send(None);
        }
    }

    /// Stops the runs of a node per `option`: requeue (counted), terminate (completed with a
    /// failure), or let them finish (`taskcompletion`, `retaineddata`).
    fn stop_node_runs(&mut self, key: &PoolKey, id: &str, option: NodeDeallocationOption) {
        let Some(rt) = self.pools.get(key) else {
            return;
        };
        let Some(node) = rt.nodes.get(id) else { return };
        if matches!(
            option,
            NodeDeallocationOption::TaskCompletion | NodeDeallocationOption::RetainedData
        ) {
            return;
        }
        let account = rt.account.clone();
        let runs: Vec<u64> = node
            .runs
            .iter()
            .copied()
            .filter(|r| self.runs.get(r).is_some_and(|r| r.kind == RunKind::Task))
            .collect();
        let how = if option == NodeDeallocationOption::Requeue {
            Stop::Requeue
        } else {
            Stop::End("Task was ended because its node was removed or restarted")
        };
        self.stop_runs(&account, runs, how);
    }

    fn on_act(
        &mut self,
        account: &str,
        pool: &str,
        id: &str,
        action: NodeAction,
    ) -> Result<(), NodeActionError> {
        let key = pool_key(account, pool);
        let node = self
            .pools
            .get(&key)
            .and_then(|p| p.nodes.get(id))
            .ok_or(NodeActionError::NotFound)?;
        let local = node.child.is_some();
        match action {
            NodeAction::EnableScheduling => {
                let Some(n) = self.pools.get_mut(&key).and_then(|p| p.nodes.get_mut(id)) else {
                    return Err(NodeActionError::NotFound);
                };
                n.node.scheduling_state = SchedulingState::Enabled;
                if n.node.state == NodeState::Offline {
                    let state = if n.runs.is_empty() {
                        NodeState::Idle
                    } else {
                        NodeState::Running
                    };
                    n.node.transition(state, Timestamp::now());
                }
                self.touch_node(&key, id);
            }
            NodeAction::DisableScheduling(option) => {
                self.recall_queued(&key, id);
                self.stop_node_runs(&key, id, option);
                let Some(n) = self.pools.get_mut(&key).and_then(|p| p.nodes.get_mut(id)) else {
                    return Err(NodeActionError::NotFound);
                };
                n.node.scheduling_state = SchedulingState::Disabled;
                if matches!(n.node.state, NodeState::Idle | NodeState::Running) {
                    n.node.transition(NodeState::Offline, Timestamp::now());
                }
                self.touch_node(&key, id);
            }
            NodeAction::Reboot(option) | NodeAction::Reimage(option) => {
                if !local {
                    // A remote machine restarts its agent itself; Cobalt cannot reboot it.
                    return Err(NodeActionError::InvalidState);
                }
                let wipe = matches!(action, NodeAction::Reimage(_));
                self.drain_or(&key, id, option, Drain::Restart { wipe });
            }
        }
        Ok(())
    }

    /// A draining node whose last task ended leaves or restarts now.
    fn check_drained(&mut self, key: &PoolKey, id: &str) {
        let Some(n) = self.pools.get(key).and_then(|p| p.nodes.get(id)) else {
            return;
        };
        let Some(drain) = n.after_drain else {
            return;
        };
        let busy = n
            .runs
            .iter()
            .any(|r| self.runs.get(r).is_some_and(|r| r.kind == RunKind::Task));
        if !busy {
            self.finish_drain(key, id, drain);
        }
    }

    /// Removes or restarts a node per its deallocation option: `taskcompletion` and
    /// `retaineddata` let its running tasks finish first (no new task goes to it meanwhile);
    /// `requeue` and `terminate` stop them now.
    fn drain_or(&mut self, key: &PoolKey, id: &str, option: NodeDeallocationOption, drain: Drain) {
        self.recall_queued(key, id);
        let busy = self
            .pools
            .get(key)
            .and_then(|p| p.nodes.get(id))
            .is_some_and(|n| {
                n.runs
                    .iter()
                    .any(|r| self.runs.get(r).is_some_and(|r| r.kind == RunKind::Task))
            });
        let waits = matches!(
            option,
            NodeDeallocationOption::TaskCompletion | NodeDeallocationOption::RetainedData
        );
        if waits && busy {
            if let Some(n) = self.pools.get_mut(key).and_then(|p| p.nodes.get_mut(id)) {
                n.after_drain = Some(drain);
                if drain == Drain::Remove {
                    n.node.transition(NodeState::LeavingPool, Timestamp::now());
                }
            }
            self.touch_node(key, id);
            return;
        }
        self.stop_node_runs(key, id, option);
        self.finish_drain(key, id, drain);
    }

    fn finish_drain(&mut self, key: &PoolKey, id: &str, drain: Drain) {
        match drain {
            // The pool's target already accounts for the node (resize down, remove nodes).
            Drain::Remove => self.remove_node(key, id, true, false),
            Drain::Restart { wipe } => {
                if let Some(n) = self.pools.get_mut(key).and_then(|p| p.nodes.get_mut(id)) {
                    n.after_drain = None;
                }
                self.restart_local_node(key, id, wipe);
            }
        }
    }

    fn touch_node(&mut self, key: &PoolKey, id: &str) {
        if let Some(rt) = self.pools.get_mut(key) {
            rt.dirty.insert(id.to_owned());
            rt.wants_schedule = true;
        }
    }

    /// Restarts a local agent under the same node id and root (wiped first for a reimage):
    /// the node goes `rebooting`/`reimaging`, then through `starting` and its start task again.
    fn restart_local_node(&mut self, key: &PoolKey, id: &str, wipe: bool) {
        let Some(exe) = self.config.agent_exe.clone() else {
            return;
        };
        let Some(rt) = self.pools.get_mut(key) else {
            return;
        };
        let Some(account) = self.accounts.get(&rt.account) else {
            return;
        };
        let Some(account_key) = account.keys.first() else {
            return;
        };
        let Some(node) = rt.nodes.get_mut(id) else {
            return;
        };
        if let Some(out) = node.out.take() {
            let _ = out.send(ServerMessage::Leave { wipe });
        }
        if let Some(conn) = node.conn.take() {
            self.conns.remove(&conn);
        }
        if let Some(child) = node.child.take() {
            self.leaving.push((child, Instant::now()));
        }
        let now = Timestamp::now();
        node.node.transition(
            if wipe {
                NodeState::Reimaging
            } else {
                NodeState::Rebooting
            },
            now,
        );
        node.node.start_task_info = None;
        node.node.last_boot_time = None;
        node.start_task_run = None;
        node.free = rt.pool.task_slots_per_node();
        let root = spawn::node_root(&self.config.data_dir, &rt.account, &rt.pool.spec.id, id);
        if wipe {
            // The old agent wipes too; removing here makes sure nothing of it is left.
            let _ = std::fs::remove_dir_all(&root);
        }
        match spawn::start(&spawn::LocalAgent {
            exe: &exe,
            server: &self.config.batch_url,
            account: &rt.account,
            key: account_key,
            pool: &rt.pool.spec.id,
            node: id,
            root: &root,
        }) {
            Ok(child) => {
                node.child = Some(child);
                node.started = Instant::now();
            }
            Err(e) => tracing::error!(node = id, error = %e, "cannot restart a node agent"),
        }
        rt.dirty.insert(id.to_owned());
    }

    /// For each node in `slots`: may tasks of `job` run there now? Starts the job's
    /// preparation task on nodes that have not run it; with `waitForSuccess` (the default)
    /// tasks wait for it, and a node where it failed takes none of the job's tasks.
    fn prep_ready(
        &mut self,
        key: &PoolKey,
        account: &str,
        job: &cobalt_model::batch::Job,
        slots: &[Slots],
    ) -> Vec<bool> {
        let Some(prep) = job.spec.job_preparation_task.clone() else {
            return vec![true; slots.len()];
        };
        let mut ready = Vec::with_capacity(slots.len());
        for s in slots {
            let started = self
                .preps
                .get(&(account.to_owned(), id_key(&job.id)))
                .is_some_and(|m| m.contains_key(&s.node));
            if !started {
                self.start_prep(key, account, job, &s.node, &prep, 0);
            }
            ready.push(prep_allows(&self.preps, account, job, &s.node));
        }
        ready
    }

    fn start_prep(
        &mut self,
        key: &PoolKey,
        account: &str,
        job: &cobalt_model::batch::Job,
        node: &str,
        prep: &cobalt_model::batch::JobPreparationTask,
        retry: i32,
    ) {
        let Some(out) = self
            .pools
            .get(key)
            .and_then(|p| p.nodes.get(node))
            .and_then(|n| n.out.clone())
        else {
            return;
        };
        let run = self.next_run;
        self.next_run += 1;
        let _ = out.send(ServerMessage::Run {
            runs: vec![placement::prep_assignment(run, job, prep)],
        });
        self.preps
            .entry((account.to_owned(), id_key(&job.id)))
            .or_default()
            .insert(
                node.to_owned(),
                PrepRelease {
                    pool: key.1.clone(),
                    prep: PrepRun {
                        start_time: Some(Timestamp::now()),
                        retry_count: retry,
                        ..PrepRun::default()
                    },
                    release: None,
                },
            );
        self.runs.insert(
            run,
            Run {
                pool: key.clone(),
                node: node.to_owned(),
                kind: RunKind::JobPreparation,
                job: job.id.clone(),
                task: String::new(),
                slots: 0,
                retention: None,
                pgid: None,
                began: true,
                node_info: None,
                sent: Instant::now(),
                withdrawing: false,
            },
        );
        if let Some(n) = self.pools.get_mut(key).and_then(|p| p.nodes.get_mut(node)) {
            n.runs.insert(run);
        }
    }

    fn on_prep_end(&mut self, account: &str, run: &Run, end: &RunEnd) {
        let job_key = (account.to_owned(), id_key(&run.job));
        let Some(entry) = self
            .preps
            .get_mut(&job_key)
            .and_then(|m| m.get_mut(&run.node))
        else {
            return;
        };
        let slot = match run.kind {
            RunKind::JobRelease => entry.release.get_or_insert_with(PrepRun::default),
            _ => &mut entry.prep,
        };
        slot.completed = true;
        slot.start_time = end.start_time.or(slot.start_time);
        slot.end_time = Some(end.end_time);
        slot.exit_code = end.exit_code;
        slot.result = Some(end.result);
        slot.failure_info = end.failure_info.clone().or_else(|| exit_failure(end));
        if run.kind != RunKind::JobPreparation || end.result == TaskResult::Success {
            return;
        }
        // A failed preparation task is retried like a task (non-zero exit, retries left).
        let retry = slot.retry_count;
        let Ok(job) = self
            .batch
            .get_job(account, &run.job, &Conditions::default())
        else {
            return;
        };
        let Some(prep) = job.spec.job_preparation_task.clone() else {
            return;
        };
        let max = prep
            .constraints
            .as_ref()
            .and_then(|c| c.max_task_retry_count)
            .unwrap_or(0);
        let retryable = end.exit_code.is_some_and(|c| c != 0) && !end.pre_processing_error;
        if retryable && (max == -1 || retry < max) {
            self.start_prep(&run.pool, account, &job, &run.node, &prep, retry + 1);
        }
    }

    /// The job ended: its release task runs on every node that ran its preparation task.
    fn start_releases(&mut self, account: &str, job: &cobalt_model::batch::Job) {
        let Some(release) = job.spec.job_release_task.clone() else {
            return;
        };
        let job_key = (account.to_owned(), id_key(&job.id));
        let nodes: Vec<(String, String)> = self
            .preps
            .get(&job_key)
            .map(|m| {
                m.iter()
                    .filter(|(_, p)| p.release.is_none())
                    .map(|(n, p)| (n.clone(), p.pool.clone()))
                    .collect()
            })
            .unwrap_or_default();
        for (node, pool) in nodes {
            let key = (account.to_owned(), pool);
            let Some(out) = self
                .pools
                .get(&key)
                .and_then(|p| p.nodes.get(&node))
                .and_then(|n| n.out.clone())
            else {
                continue;
            };
            let run = self.next_run;
            self.next_run += 1;
            let _ = out.send(ServerMessage::Run {
                runs: vec![placement::release_assignment(run, job, &release)],
            });
            if let Some(entry) = self.preps.get_mut(&job_key).and_then(|m| m.get_mut(&node)) {
                entry.release = Some(PrepRun {
                    start_time: Some(Timestamp::now()),
                    ..PrepRun::default()
                });
            }
            if let Some(n) = self
                .pools
                .get_mut(&key)
                .and_then(|p| p.nodes.get_mut(&node))
            {
                n.runs.insert(run);
            }
            self.runs.insert(
                run,
                Run {
                    pool: key,
                    node,
                    kind: RunKind::JobRelease,
                    job: job.id.clone(),
                    task: String::new(),
                    slots: 0,
                    retention: None,
                    pgid: None,
                    began: true,
                    node_info: None,
                    sent: Instant::now(),
                    withdrawing: false,
                },
            );
        }
    }

    /// Kills the process groups of a dead local agent's runs: on this machine they would
    /// otherwise go on, orphaned, while their tasks run again elsewhere.
    fn kill_orphans(&self, key: &PoolKey, id: &str) {
        let Some(node) = self.pools.get(key).and_then(|p| p.nodes.get(id)) else {
            return;
        };
        for run in &node.runs {
            if let Some(pgid) = self.runs.get(run).and_then(|r| r.pgid).filter(|g| *g > 1) {
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(pgid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }

    fn on_closed(&mut self, conn: u64) {
        // Pending file requests of the connection are answered "not connected".
        self.files.retain(|_, (c, _)| *c != conn);
        let Some((key, id)) = self.conns.remove(&conn) else {
            return;
        };
        let Some(rt) = self.pools.get_mut(&key) else {
            return;
        };
        let Some(node) = rt.nodes.get_mut(&id) else {
            return;
        };
        if node.conn != Some(conn) {
            return;
        }
        node.conn = None;
        node.out = None;
        if node.child.is_some() {
            // A local agent that lost its connection is gone: replace it.
            tracing::warn!(node = id, "local node agent disconnected; replacing it");
            self.kill_orphans(&key, &id);
            self.remove_node(&key, &id, false, false);
            if let Some(rt) = self.pools.get_mut(&key) {
                rt.lost += 1;
            }
            self.ensure_size(&key);
        } else {
            tracing::warn!(node = id, "node agent disconnected");
            let runs = std::mem::take(&mut node.runs);
            node.free = rt.pool.task_slots_per_node();
            node.start_task_run = None;
            node.node.transition(NodeState::Unknown, Timestamp::now());
            update_counters(&mut node.node, &HashMap::new(), &HashSet::new());
            rt.dirty.insert(id.clone());
            let account = rt.account.clone();
            let tasks = self.forget_runs(&runs);
            if !tasks.is_empty() {
                log_err(
                    "requeueing tasks of a lost node",
                    self.batch.requeue_runs(&account, tasks, false),
                );
            }
        }
    }

    /// Removes the task directories whose retention time is over (on nodes still there).
    fn clean_expired(&mut self) {
        let now = Instant::now();
        while let Some(std::cmp::Reverse((when, _, _, _))) = self.cleanups.peek() {
            if *when > now {
                break;
            }
            let Some(std::cmp::Reverse((_, key, node, dir))) = self.cleanups.pop() else {
                break;
            };
            if let Some(out) = self
                .pools
                .get(&key)
                .and_then(|p| p.nodes.get(&node))
                .and_then(|n| n.out.as_ref())
            {
                let _ = out.send(ServerMessage::Clean { dir });
            }
        }
    }

    fn schedule_all(&mut self) {
        let keys: Vec<PoolKey> = self
            .pools
            .iter()
            .filter(|(_, p)| p.wants_schedule)
            .map(|(k, _)| k.clone())
            .collect();
        for key in keys {
            if let Some(p) = self.pools.get_mut(&key) {
                p.wants_schedule = false;
            }
            self.schedule(&key);
        }
    }

    /// Places the pool's runnable tasks on its nodes and sends them. A node takes as many
    /// tasks again as it has slots beyond those it runs: they wait in its agent's queue, so a
    /// slot that frees starts the next task at once instead of after a round trip to the
    /// server. Their tasks stay `active` until the agent says it began them (`on_began`).
    fn schedule(&mut self, key: &PoolKey) {
        let Some(rt) = self.pools.get(key) else {
            return;
        };
        let account = rt.account.clone();
        let pool_id = rt.pool.spec.id.clone();
        let jobs = match &rt.jobs {
            Some(jobs) => Arc::clone(jobs),
            None => {
                let Some(jobs) = log_err(
                    "listing the pool's jobs",
                    self.batch.pool_jobs(&account, &pool_id),
                ) else {
                    return;
                };
                let jobs = Arc::new(jobs);
                if let Some(rt) = self.pools.get_mut(key) {
                    rt.jobs = Some(Arc::clone(&jobs));
                }
                jobs
            }
        };
        // A queued run must not make a better job's task wait behind it.
        self.displace_queued(key, &account, &jobs);
        let Some(rt) = self.pools.get(key) else {
            return;
        };
        let depth = QUEUE_PER_SLOT * rt.pool.task_slots_per_node();
        let mut slots: Vec<Slots> = rt
            .nodes
            .iter()
            .filter(|(_, n)| n.free + depth > 0 && n.takes_tasks())
            .map(|(id, n)| Slots {
                node: id.clone(),
                free: n.free,
                queue: depth,
            })
            .collect();
        let free: i32 = slots.iter().map(|s| s.free + s.queue).sum();
        // A free slot is filled at once; queues that are still more than half full are topped
        // up a turn or two later, a scan of the runnable tasks then serving more of them.
        let topped_up = slots
            .iter()
            .all(|s| s.free <= 0 && 2 * (s.free + s.queue) < s.queue);
        if free <= 0 || topped_up {
            return;
        }
        let pack = rt
            .pool
            .spec
            .other
            .get("taskSchedulingPolicy")
            .and_then(|p| p.get("nodeFillType"))
            .and_then(|v| v.as_str())
            == Some("pack");
        // Tasks sent to a queue are still `active`: they must not be picked again.
        let queued = self.queued_tasks(&account);
        let Some(runnable) = log_err(
            "finding runnable tasks",
            self.batch
                .runnable(&account, &jobs, usize::try_from(free).unwrap_or(0), &queued),
        ) else {
            return;
        };
        let mut batches: HashMap<String, Vec<cobalt_proto::Assignment>> = HashMap::new();
        for rj in &runnable {
            // Nodes where the job's preparation task allows its tasks now.
            let ready = self.prep_ready(key, &account, &rj.job, &slots);
            for task in &rj.tasks {
                let view: Vec<Slots> = slots
                    .iter()
                    .zip(&ready)
                    .map(|(s, ok)| Slots {
                        node: s.node.clone(),
                        free: if *ok { s.free } else { 0 },
                        queue: if *ok { s.queue } else { 0 },
                    })
                    .collect();
                let Some(i) = placement::place(&view, task.required_slots(), pack) else {
                    continue;
                };
                slots[i].free -= task.required_slots();
                let node = slots[i].node.clone();
                let dir = layout::task_dir(&rj.job.id, &task.spec.id);
                let run = self.next_run;
                self.next_run += 1;
                self.job_pool
                    .insert((account.clone(), id_key(&rj.job.id)), key.1.clone());
                batches
                    .entry(node.clone())
                    .or_default()
                    .push(placement::task_assignment(run, &rj.job, task));
                self.by_task.insert(
                    (account.clone(), id_key(&rj.job.id), id_key(&task.spec.id)),
                    run,
                );
                self.runs.insert(
                    run,
                    Run {
                        pool: key.clone(),
                        node: node.clone(),
                        kind: RunKind::Task,
                        job: rj.job.id.clone(),
                        task: task.spec.id.clone(),
                        slots: task.required_slots(),
                        retention: task
                            .spec
                            .constraints
                            .as_ref()
                            .and_then(|c| c.retention_time.as_ref())
                            .map(|d| d.value()),
                        pgid: None,
                        began: false,
                        // The URLs are the API's to add, for the address each client uses.
                        node_info: Some(NodeInfo {
                            affinity_id: Some(format!("TVM:{node}")),
                            pool_id: Some(pool_id.clone()),
                            node_id: Some(node.clone()),
                            task_root_directory: Some(dir.clone()),
                            ..NodeInfo::default()
                        }),
                        sent: Instant::now(),
                        withdrawing: false,
                    },
                );
            }
        }
        let Some(rt) = self.pools.get_mut(key) else {
            return;
        };
        for (node_id, runs) in batches {
            let Some(node) = rt.nodes.get_mut(&node_id) else {
                continue;
            };
            for a in &runs {
                node.runs.insert(a.run);
                if let Some(r) = self.runs.get(&a.run) {
                    node.free -= r.slots;
                }
            }
            if let Some(out) = &node.out {
                let _ = out.send(ServerMessage::Run { runs });
            }
        }
    }

    /// The (job, task) keys of the account's task runs whose task is still `active` in the
    /// store: waiting in a node's queue, begun with the start not written yet, or ended with
    /// the end not written yet (a start not written yet is written with its end).
    fn queued_tasks(&self, account: &str) -> HashSet<(String, String)> {
        let unwritten: HashSet<u64> = self
            .began
            .get(account)
            .map(|pending| pending.iter().map(|(run, _)| *run).collect())
            .unwrap_or_default();
        self.runs
            .iter()
            .filter(|(id, r)| {
                r.kind == RunKind::Task
                    && r.pool.0 == account
                    && (!r.began || unwritten.contains(id))
            })
            .map(|(_, r)| (id_key(&r.job), id_key(&r.task)))
            .chain(
                self.outcomes
                    .get(account)
                    .into_iter()
                    .flatten()
                    .map(|o| (id_key(&o.job_id), id_key(&o.task_id))),
            )
            .collect()
    }

    /// Takes back the queued runs of jobs ranked below (in `jobs`, best first) a job that has
    /// a runnable task: they go back to the queue behind it, so that job priority holds even
    /// for runs sent ahead to a node.
    fn displace_queued(&mut self, key: &PoolKey, account: &str, jobs: &[cobalt_model::batch::Job]) {
        let rank = |job: &str| {
            let job = id_key(job);
            jobs.iter().position(|j| id_key(&j.id) == job)
        };
        let queued: Vec<(u64, usize)> = self
            .runs
            .iter()
            .filter(|(_, r)| r.pool == *key && r.movable())
            .filter_map(|(id, r)| Some((*id, rank(&r.job)?)))
            .collect();
        let Some(worst) = queued.iter().map(|(_, r)| *r).max().filter(|w| *w > 0) else {
            return;
        };
        let waiting = self.queued_tasks(account);
        let Some(better) = log_err(
            "finding runnable tasks",
            self.batch.runnable(account, &jobs[..worst], 1, &waiting),
        ) else {
            return;
        };
        let Some(best) = better.first().and_then(|rj| rank(&rj.job.id)) else {
            return;
        };
        let worse = queued
            .into_iter()
            .filter(|(_, r)| *r > best)
            .map(|(run, _)| run)
            .collect();
        self.withdraw(worse);
    }

    /// A queued task run got its slots on its node: its task is `running` from the next
    /// flush on.
    fn on_began(&mut self, run: u64) {
        let Some(r) = self.runs.get_mut(&run) else {
            return;
        };
        if r.began {
            return;
        }
        r.began = true;
        r.withdrawing = false;
        let (key, node) = (r.pool.clone(), r.node.clone());
        let start = RunStart {
            job_id: r.job.clone(),
            task_id: r.task.clone(),
            node_info: r.node_info.clone().unwrap_or_default(),
        };
        self.began
            .entry(key.0.clone())
            .or_default()
            .push((run, start));
        if let Some(rt) = self.pools.get_mut(&key)
            && let Some(n) = rt.nodes.get_mut(&node)
        {
            update_counters(&mut n.node, &self.runs, &n.runs);
            rt.lazy.insert(node);
        }
    }

    /// Whether the runs begun and ended since the last flush are written this turn (see
    /// [`RUNS_STREAM`]).
    fn runs_due(&mut self) -> bool {
        let unwritten = self.unwritten();
        if unwritten == 0 {
            self.unwritten_since = None;
            return false;
        }
        let since = *self.unwritten_since.get_or_insert_with(Instant::now);
        self.runs.len() < RUNS_STREAM || unwritten >= RUNS_BATCH || since.elapsed() >= RUNS_HOLD
    }

    /// How many begun and ended runs wait to be written.
    fn unwritten(&self) -> usize {
        self.outcomes.values().map(Vec::len).sum::<usize>()
            + self.began.values().map(Vec::len).sum::<usize>()
    }

    /// Records the begun runs (their tasks go `running`) and ended runs, in one
    /// transaction per account. A begun run whose task is no longer active (terminated,
    /// deleted, its job stopped) is killed. On a store error both are kept and tried again next
    /// turn, so that no task stays `active` while it runs or `running` with no run behind it.
    fn flush_runs(&mut self) {
        let mut accounts: Vec<String> = self.began.keys().cloned().collect();
        accounts.extend(self.outcomes.keys().cloned());
        accounts.sort();
        accounts.dedup();
        for account in accounts {
            let began = self.began.remove(&account).unwrap_or_default();
            let outcomes = self.outcomes.remove(&account).unwrap_or_default();
            let starts: Vec<RunStart> = began.iter().map(|(_, s)| s.clone()).collect();
            // Runs ended: the nodes' new counters go in the same transaction, so that a
            // node read after its task completed has counted it.
            let mut lazy: Vec<(PoolKey, String)> = Vec::new();
            let mut nodes = Vec::new();
            if !outcomes.is_empty() {
                for (key, rt) in self.pools.iter_mut().filter(|(k, _)| k.0 == account) {
                    for id in rt.lazy.drain() {
                        if let Some(n) = rt.nodes.get(&id) {
                            nodes.push((rt.pool.spec.id.clone(), n.node.clone()));
                        }
                        lazy.push((key.clone(), id));
                    }
                }
            }
            let Some(recorded) = log_err(
                "recording task runs",
                self.batch
                    .record_runs(&account, starts, outcomes.clone(), &nodes),
            ) else {
                for (key, id) in lazy {
                    if let Some(rt) = self.pools.get_mut(&key) {
                        rt.lazy.insert(id);
                    }
                }
                if !began.is_empty() {
                    self.began.entry(account.clone()).or_default().extend(began);
                }
                if !outcomes.is_empty() {
                    self.outcomes.entry(account).or_default().extend(outcomes);
                }
                continue;
            };
            let started: HashSet<(String, String)> = recorded.started.into_iter().collect();
            for (run, start) in began {
                if !started.contains(&(id_key(&start.job_id), id_key(&start.task_id))) {
                    self.kill_run(run);
                }
            }
        }
        // What a store error kept waits on: the next turn tries again.
        if self.unwritten() == 0 {
            self.unwritten_since = None;
        }
    }

    /// Takes back the task runs that waited [`REBALANCE_AFTER`] or more in the queue of a full
    /// node while another node of their pool has free slots (the runs ahead of them took
    /// longer than the other node's): placed again, they start on those free slots.
    fn rebalance_all(&mut self) {
        let now = Instant::now();
        let (runs, preps) = (&self.runs, &self.preps);
        let mut taken = Vec::new();
        for rt in self.pools.values_mut() {
            if now.duration_since(rt.rebalanced) < REBALANCE_AFTER / 2 {
                continue;
            }
            rt.rebalanced = now;
            let mut open: Vec<(&String, i32)> = rt
                .nodes
                .iter()
                .filter(|(_, n)| n.free > 0 && n.takes_tasks())
                .map(|(id, n)| (id, n.free))
                .collect();
            if open.is_empty() {
                continue;
            }
            // The pool's jobs are known once it was scheduled; until then nothing moves.
            let Some(jobs) = rt.jobs.as_deref() else {
                continue;
            };
            let mut waiting: Vec<u64> = rt
                .nodes
                .values()
                .filter(|n| n.free <= 0)
                .flat_map(|n| n.runs.iter().copied())
                .filter(|id| {
                    runs.get(id).is_some_and(|r| {
                        r.movable() && now.duration_since(r.sent) >= REBALANCE_AFTER
                    })
                })
                .collect();
            // The longest waiting first (run ids grow), each to a free node that can start it,
            // as many as those nodes' free slots take. A node whose preparation task for the
            // run's job has not succeeded cannot: the run would only come back to a queue.
            waiting.sort_unstable();
            for id in waiting {
                let Some(r) = runs.get(&id) else {
                    continue;
                };
                let job_key = id_key(&r.job);
                let Some(job) = jobs.iter().find(|j| id_key(&j.id) == job_key) else {
                    continue;
                };
                let to = open.iter_mut().find(|(node, free)| {
                    *free >= r.slots && prep_allows(preps, &rt.account, job, node)
                });
                if let Some((_, free)) = to {
                    *free -= r.slots;
                    taken.push(id);
                }
            }
        }
        if !taken.is_empty() {
            tracing::debug!(runs = taken.len(), "queued runs move to free slots");
            self.withdraw(taken);
        }
    }

    /// Takes back the task runs waiting in a node's queue (not begun) at once, with `Kill`: the
    /// node is leaving or stops taking tasks, so one its agent began meanwhile stops too. Their
    /// tasks are still `active`, and go to other nodes.
    fn recall_queued(&mut self, key: &PoolKey, id: &str) {
        let runs: Vec<u64> = self
            .pools
            .get(key)
            .and_then(|p| p.nodes.get(id))
            .map(|n| n.runs.iter().copied().collect())
            .unwrap_or_default();
        for run in runs {
            if self.runs.get(&run).is_some_and(Run::queued) {
                self.kill_run(run);
            }
        }
    }

    /// Asks the agents to give back those of `runs` that are task runs waiting in their queue
    /// (not begun, not asked already). Each comes back with `Withdrawn` (`on_withdrawn`), or
    /// runs if its agent began it first: a run is never killed for being moved. Runs of a node
    /// that is not connected are dropped at once. Their tasks are still `active`, so nothing
    /// is written.
    fn withdraw(&mut self, runs: Vec<u64>) {
        // Per node: its connection and the runs it is asked for.
        let mut asks: HashMap<(PoolKey, String), (UnboundedSender<ServerMessage>, Vec<u64>)> =
            HashMap::new();
        let mut gone = Vec::new();
        for run in runs {
            let Some(r) = self.runs.get_mut(&run).filter(|r| r.movable()) else {
                continue;
            };
            let out = self
                .pools
                .get(&r.pool)
                .and_then(|p| p.nodes.get(&r.node))
                .and_then(|n| n.out.clone());
            match out {
                Some(out) => {
                    r.withdrawing = true;
                    let node = (r.pool.clone(), r.node.clone());
                    asks.entry(node).or_insert((out, Vec::new())).1.push(run);
                }
                None => gone.push(run),
            }
        }
        for run in gone {
            self.drop_run(run, false);
        }
        for (out, runs) in asks.into_values() {
            let _ = out.send(ServerMessage::Withdraw { runs });
        }
    }

    /// Reaps local agents: one that died before connecting failed to start; leaving agents
    /// that linger are killed.
    fn reap(&mut self) {
        self.leaving
            .retain_mut(|(child, since)| match child.try_wait() {
                Ok(Some(_)) | Err(_) => false,
                Ok(None) if since.elapsed() > Duration::from_secs(5) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    false
                }
                Ok(None) => true,
            });
        let mut dead = Vec::new();
        for (key, rt) in &mut self.pools {
            for (id, node) in &mut rt.nodes {
                if let Some(child) = &mut node.child
                    && let Ok(Some(status)) = child.try_wait()
                {
                    tracing::warn!(node = id, %status, "local node agent exited");
                    if node.conn.is_none() && node.started.elapsed() < QUICK_DEATH {
                        rt.spawn_failures += 1;
                    }
                    dead.push((key.clone(), id.clone()));
                }
            }
        }
        for (key, id) in dead {
            self.kill_orphans(&key, &id);
            self.remove_node(&key, &id, false, false);
            if let Some(rt) = self.pools.get_mut(&key) {
                rt.lost += 1;
            }
            self.ensure_size(&key);
        }
    }

    /// Saves changed node records: at once for state changes, joins and departures; task
    /// counters at most every [`COUNTERS_FLUSH`].
    fn flush_nodes(&mut self) {
        for rt in self.pools.values_mut() {
            let due = !rt.dirty.is_empty()
                || !rt.removed.is_empty()
                || rt.recount
                || (!rt.lazy.is_empty() && rt.flushed.elapsed() >= COUNTERS_FLUSH);
            if !due {
                continue;
            }
            let ids: HashSet<String> = rt.dirty.drain().chain(rt.lazy.drain()).collect();
            let nodes: Vec<Node> = ids
                .iter()
                .filter_map(|id| rt.nodes.get(id).map(|n| n.node.clone()))
                .collect();
            let removed = std::mem::take(&mut rt.removed);
            let recount = std::mem::take(&mut rt.recount) || !removed.is_empty();
            rt.flushed = Instant::now();
            log_err(
                "saving nodes",
                self.batch
                    .save_nodes(&rt.account, &rt.pool.spec.id, &nodes, &removed, recount),
            );
        }
    }

    /// How long the loop may wait for input before node counters are due to be saved, or
    /// recorded runs to be written.
    fn idle_wait(&self) -> Duration {
        self.pools
            .values()
            .filter(|rt| !rt.lazy.is_empty())
            .map(|rt| COUNTERS_FLUSH.saturating_sub(rt.flushed.elapsed()))
            .chain(
                self.unwritten_since
                    .map(|since| RUNS_HOLD.saturating_sub(since.elapsed())),
            )
            .min()
            .unwrap_or(Duration::from_millis(200))
            .min(Duration::from_millis(200))
    }

    fn stop_all(&mut self) {
        let keys: Vec<PoolKey> = self.pools.keys().cloned().collect();
        for key in &keys {
            let ids: Vec<String> = self
                .pools
                .get(key)
                .map(|p| p.nodes.keys().cloned().collect())
                .unwrap_or_default();
            for id in ids {
                // Their tasks are requeued when the server starts again.
                if let Some(node) = self.pools.get_mut(key).and_then(|p| p.nodes.get_mut(&id)) {
                    if let Some(out) = &node.out {
                        let _ = out.send(ServerMessage::Leave { wipe: false });
                    }
                    if let Some(child) = node.child.take() {
                        self.leaving.push((child, Instant::now()));
                    }
                }
            }
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        while !self.leaving.is_empty() && Instant::now() < deadline {
            self.leaving
                .retain_mut(|(c, _)| matches!(c.try_wait(), Ok(None)));
            std::thread::sleep(Duration::from_millis(20));
        }
        for (mut child, _) in self.leaving.drain(..) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The failure of a run that exited with a non-zero code and nothing else went wrong.
fn exit_failure(end: &RunEnd) -> Option<cobalt_model::batch::FailureInfo> {
    let code = end.exit_code.filter(|c| *c != 0)?;
    Some(cobalt_model::batch::FailureInfo::exit_code(code))
}

/// Sets a node's running counters and state (idle ⇄ running) from its runs.
fn update_counters(node: &mut Node, runs: &HashMap<u64, Run>, mine: &HashSet<u64>) {
    let tasks: Vec<&Run> = mine
        .iter()
        .filter_map(|r| runs.get(r))
        .filter(|r| r.kind == RunKind::Task && r.began)
        .collect();
    node.running_tasks_count = i64::try_from(tasks.len()).unwrap_or(i64::MAX);
    node.running_task_slots_count = tasks.iter().map(|r| i64::from(r.slots)).sum();
    let now = Timestamp::now();
    match node.state {
        NodeState::Idle if !tasks.is_empty() => node.transition(NodeState::Running, now),
        NodeState::Running if tasks.is_empty() => node.transition(NodeState::Idle, now),
        _ => {}
    }
}
