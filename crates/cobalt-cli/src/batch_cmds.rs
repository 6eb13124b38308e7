//! `cobalt pool`, `node`, `job`, `task` and `file`: the Batch service's entities, in the
//! spirit of `az batch`, through `cobalt-client`.
//!
//! Owns: these commands' arguments and what they print. Must not do: HTTP (the client crate's
//! job); streaming a task's output lives in `follow`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Subcommand;
use cobalt_client::batch::{ListOptions, NodeDeallocation, NodeFile};
use cobalt_client::model::{
    ImageReference, Job, JobSpec, Node, Pool, PoolInformation, PoolSpec, StartTask, Task, TaskSpec,
    TaskState, VirtualMachineConfiguration,
};
use futures_util::TryStreamExt;
use serde::Serialize;

use crate::connection::{Batch, Connection, Group};
use crate::errors::Scope;
use crate::follow;
use crate::output::{Row, or_dash, size, time, time_text, write_bytes};

/// `cobalt pool …`.
#[derive(Subcommand, Debug)]
pub enum PoolCommand {
    /// List the account's pools.
    ///
    /// Example: cobalt pool list --output json
    List,
    /// Show a pool.
    ///
    /// Example: cobalt pool show pool1
    Show {
        /// The pool's id.
        id: String,
    },
    /// Create a pool. On Cobalt its nodes are local agents that start at once.
    ///
    /// Example: cobalt pool create pool1 --nodes 2 --slots 4 --start-task "/bin/sh -c 'apt-get install -y jq'"
    Create(PoolCreate),
    /// Resize a pool.
    ///
    /// Example: cobalt pool resize pool1 --nodes 4
    Resize {
        /// The pool's id.
        id: String,
        /// The new number of (dedicated) nodes.
        #[arg(long)]
        nodes: i32,
        /// What happens to the tasks running on nodes that leave.
        #[arg(long, value_enum, default_value_t = Deallocation::Requeue)]
        deallocation: Deallocation,
    },
    /// Delete a pool (its nodes leave, then it is gone).
    ///
    /// Example: cobalt pool delete pool1 --wait
    Delete {
        /// The pool's id.
        id: String,
        /// Wait until the pool is gone.
        #[arg(long)]
        wait: bool,
    },
}

/// `cobalt pool create`.
#[derive(clap::Args, Debug)]
pub struct PoolCreate {
    /// The pool's id (letters, digits, `-`, `_`; at most 64).
    id: String,
    /// Dedicated nodes.
    #[arg(long)]
    nodes: i32,
    /// Task slots per node (tasks a node runs at once).
    #[arg(long)]
    slots: Option<i32>,
    /// VM size (Cobalt records it; Azure needs a real one).
    #[arg(long, default_value = "standard_d1_v2")]
    vm_size: String,
    /// A command line each node runs when it joins; tasks wait for it to succeed.
    #[arg(long, value_name = "CMD")]
    start_task: Option<String>,
    /// The image, as publisher:offer:sku[:version].
    #[arg(
        long,
        default_value = "canonical:0001-com-ubuntu-server-jammy:22_04-lts"
    )]
    image: String,
    /// The node agent SKU that goes with the image.
    #[arg(long, default_value = "batch.node.ubuntu 22.04")]
    node_agent_sku: String,
}

/// What happens to running tasks when their node leaves a pool.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Deallocation {
    /// Stop them and queue them again.
    Requeue,
    /// Stop them; they complete as failed.
    Terminate,
    /// Let them finish first.
    Taskcompletion,
    /// Let them finish and keep their files.
    Retaineddata,
}

impl From<Deallocation> for NodeDeallocation {
    fn from(d: Deallocation) -> Self {
        match d {
            Deallocation::Requeue => Self::Requeue,
            Deallocation::Terminate => Self::Terminate,
            Deallocation::Taskcompletion => Self::TaskCompletion,
            Deallocation::Retaineddata => Self::RetainedData,
        }
    }
}

/// `cobalt node …`.
#[derive(Subcommand, Debug)]
pub enum NodeCommand {
    /// List a pool's compute nodes.
    ///
    /// Example: cobalt node list pool1
    List {
        /// The pool's id.
        pool: String,
    },
    /// Show a compute node.
    ///
    /// Example: cobalt node show pool1 node-1
    Show {
        /// The pool's id.
        pool: String,
        /// The node's id.
        node: String,
    },
    /// Reboot a node: its agent restarts, its running tasks are requeued, its start task runs
    /// again.
    ///
    /// Example: cobalt node reboot pool1 node-1
    Reboot {
        /// The pool's id.
        pool: String,
        /// The node's id.
        node: String,
    },
    /// Remove nodes from a pool (its target size shrinks by as many).
    ///
    /// Example: cobalt node remove pool1 node-1 node-2 --deallocation taskcompletion
    Remove {
        /// The pool's id.
        pool: String,
        /// The nodes' ids.
        #[arg(required = true)]
        nodes: Vec<String>,
        /// What happens to the tasks running on them.
        #[arg(long, value_enum, default_value_t = Deallocation::Requeue)]
        deallocation: Deallocation,
    },
}

/// `cobalt job …`.
#[derive(Subcommand, Debug)]
pub enum JobCommand {
    /// List the account's jobs.
    ///
    /// Example: cobalt job list
    List,
    /// Show a job and its task counts.
    ///
    /// Example: cobalt job show job1
    Show {
        /// The job's id.
        id: String,
    },
    /// Create a job on a pool.
    ///
    /// Example: cobalt job create job1 --pool pool1
    Create {
        /// The job's id (letters, digits, `-`, `_`; at most 64).
        id: String,
        /// The pool its tasks run on.
        #[arg(long)]
        pool: String,
        /// Priority, -1000 to 1000 (higher runs first).
        #[arg(long, allow_negative_numbers = true)]
        priority: Option<i32>,
    },
    /// Terminate a job: running tasks are stopped, the job completes.
    ///
    /// Example: cobalt job terminate job1
    Terminate {
        /// The job's id.
        id: String,
        /// Why (recorded as the job's terminate reason).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Delete a job and its tasks.
    ///
    /// Example: cobalt job delete job1
    Delete {
        /// The job's id.
        id: String,
    },
}

/// Task states, for `--state`.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum StateFilter {
    /// Queued.
    Active,
    /// Waiting for the job preparation task on its node.
    Preparing,
    /// Running.
    Running,
    /// Finished.
    Completed,
}

/// `cobalt task …`.
#[derive(Subcommand, Debug)]
pub enum TaskCommand {
    /// List a job's tasks.
    ///
    /// Example: cobalt task list job1 --state completed
    List {
        /// The job's id.
        job: String,
        /// Only tasks in this state.
        #[arg(long, value_enum)]
        state: Option<StateFilter>,
    },
    /// Show a task.
    ///
    /// Example: cobalt task show job1 task1
    Show {
        /// The job's id.
        job: String,
        /// The task's id.
        task: String,
    },
    /// Add a task. The command runs without a shell: wrap it in `/bin/sh -c '…'` for pipes
    /// and variables. A single argument is taken as the whole command line.
    ///
    /// Example: cobalt task add job1 task1 -- /bin/sh -c 'echo $AZ_BATCH_TASK_ID'
    Add {
        /// The job's id.
        job: String,
        /// The task's id (letters, digits, `-`, `_`; at most 64).
        task: String,
        /// Retries after a non-zero exit (-1: no limit).
        #[arg(long, allow_negative_numbers = true)]
        retries: Option<i32>,
        /// The command and its arguments, after `--`.
        #[arg(last = true, required = true, value_name = "CMD")]
        command: Vec<String>,
    },
    /// Delete a task (stopping it if it runs).
    ///
    /// Example: cobalt task delete job1 task1
    Delete {
        /// The job's id.
        job: String,
        /// The task's id.
        task: String,
    },
    /// Terminate a task: it is stopped and completes.
    ///
    /// Example: cobalt task terminate job1 task1
    Terminate {
        /// The job's id.
        job: String,
        /// The task's id.
        task: String,
    },
    /// Print a task's stdout.txt (or stderr.txt). With --follow, keep printing while the
    /// task runs (waiting for it to start) and end when it completes. Exits non-zero when
    /// the task failed (with its exit code when it has one).
    ///
    /// Example: cobalt task logs job1 task1 --follow
    Logs {
        /// The job's id.
        job: String,
        /// The task's id.
        task: String,
        /// Keep printing until the task completes.
        #[arg(long, short)]
        follow: bool,
        /// Print stderr.txt instead of stdout.txt.
        #[arg(long)]
        stderr: bool,
    },
    /// Add a task, stream its stdout (and its stderr to stderr) until it completes, and exit
    /// with its exit code. Ctrl-C terminates the task.
    ///
    /// Example: cobalt task run --job job1 --pool pool1 -- /bin/sh -c 'hostname; nproc'
    Run(follow::RunArgs),
}

/// `cobalt file …`.
#[derive(Subcommand, Debug)]
pub enum FileCommand {
    /// List the files of a task's directory on its node (stdout.txt, stderr.txt, wd/…).
    ///
    /// Example: cobalt file list job1 task1 --recursive
    List {
        /// The job's id.
        job: String,
        /// The task's id.
        task: String,
        /// Walk the directories too.
        #[arg(long, short)]
        recursive: bool,
    },
    /// Download a task's file to stdout, or to a file with -o.
    ///
    /// Example: cobalt file get job1 task1 wd/result.csv -o result.csv
    Get {
        /// The job's id.
        job: String,
        /// The task's id.
        task: String,
        /// The file's path in the task directory, e.g. stdout.txt or wd/out.txt.
        path: String,
        /// Write to this file instead of stdout.
        #[arg(short = 'o', long = "out", value_name = "FILE")]
        out: Option<PathBuf>,
    },
}

/// Collects a list.
async fn collect<T>(
    stream: futures_util::stream::BoxStream<'static, cobalt_client::Result<T>>,
) -> cobalt_client::Result<Vec<T>> {
    stream.try_collect().await
}

// ---- pools ----

/// Runs `cobalt pool …`.
pub async fn pool(group: Group<PoolCommand>) -> anyhow::Result<u8> {
    let conn = Connection::new(&group.opts)?;
    let b = conn.batch()?;
    let out = conn.out;
    match group.command {
        PoolCommand::List => {
            let pools = collect(b.client.list_pools(&ListOptions::default()))
                .await
                .map_err(b.service.err(Scope::none()))?;
            out.list(
                &pools,
                "pools",
                &["ID", "STATE", "ALLOCATION", "NODES", "SLOTS", "VM SIZE"],
                pool_row,
            )?;
        }
        PoolCommand::Show { id } => {
            let pool = get_pool(&b, &id).await?;
            out.show(&pool, pool_fields)?;
        }
        PoolCommand::Create(args) => {
            let spec = pool_spec(&args)?;
            b.client
                .add_pool(&spec)
                .await
                .map_err(b.service.err(Scope::pool(&args.id)))?;
            if out.is_json() {
                out.show(&get_pool(&b, &args.id).await?, pool_fields)?;
            }
            out.done(format_args!(
                "pool '{}' created with {} node(s)",
                args.id, args.nodes
            ))?;
        }
        PoolCommand::Resize {
            id,
            nodes,
            deallocation,
        } => {
            b.client
                .resize_pool(&id, nodes, 0, deallocation.into())
                .await
                .map_err(b.service.err(Scope::pool(&id)))?;
            out.done(format_args!("pool '{id}' resizing to {nodes} node(s)"))?;
        }
        PoolCommand::Delete { id, wait } => {
            b.client
                .delete_pool(&id)
                .await
                .map_err(b.service.err(Scope::pool(&id)))?;
            if wait {
                loop {
                    match b.client.get_pool(&id).await {
                        Err(e) if e.is_not_found() => break,
                        Err(e) => return Err(b.service.explain(e, &Scope::pool(&id))),
                        Ok(_) => tokio::time::sleep(Duration::from_millis(300)).await,
                    }
                }
                out.done(format_args!("pool '{id}' deleted"))?;
            } else {
                out.done(format_args!("pool '{id}' is being deleted"))?;
            }
        }
    }
    Ok(0)
}

async fn get_pool(b: &Batch, id: &str) -> anyhow::Result<Pool> {
    b.client
        .get_pool(id)
        .await
        .map_err(b.service.err(Scope::pool(id)))
}

fn pool_spec(args: &PoolCreate) -> anyhow::Result<PoolSpec> {
    let mut parts = args.image.split(':');
    let (Some(publisher), Some(offer), Some(sku)) = (parts.next(), parts.next(), parts.next())
    else {
        anyhow::bail!(
            "--image {:?} is not publisher:offer:sku[:version]",
            args.image
        );
    };
    let version = parts.next().map(str::to_owned);
    Ok(PoolSpec {
        id: args.id.clone(),
        vm_size: args.vm_size.clone(),
        virtual_machine_configuration: Some(VirtualMachineConfiguration {
            image_reference: ImageReference {
                publisher: Some(publisher.to_owned()),
                offer: Some(offer.to_owned()),
                sku: Some(sku.to_owned()),
                version,
                ..Default::default()
            },
            node_agent_sku_id: args.node_agent_sku.clone(),
            ..Default::default()
        }),
        target_dedicated_nodes: Some(args.nodes),
        task_slots_per_node: args.slots,
        start_task: args.start_task.as_ref().map(|cmd| StartTask {
            command_line: cmd.clone(),
            wait_for_success: Some(true),
            ..Default::default()
        }),
        ..Default::default()
    })
}

fn lower<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        _ => "?".to_owned(),
    }
}

fn pool_row(p: &Pool) -> Row {
    vec![
        p.spec.id.clone(),
        lower(&p.state),
        lower(&p.allocation_state),
        format!(
            "{}/{}",
            p.current_dedicated_nodes + p.current_low_priority_nodes,
            p.target_nodes()
        ),
        p.task_slots_per_node().to_string(),
        p.spec.vm_size.clone(),
    ]
}

fn pool_fields(p: &Pool) -> Vec<(&'static str, String)> {
    let image = p.spec.virtual_machine_configuration.as_ref().map(|vm| {
        let i = &vm.image_reference;
        [&i.publisher, &i.offer, &i.sku]
            .iter()
            .map(|s| s.as_deref().unwrap_or(""))
            .collect::<Vec<_>>()
            .join(":")
    });
    vec![
        ("id", p.spec.id.clone()),
        ("state", lower(&p.state)),
        ("allocation state", lower(&p.allocation_state)),
        (
            "nodes",
            format!(
                "{} (target {})",
                p.current_dedicated_nodes + p.current_low_priority_nodes,
                p.target_nodes()
            ),
        ),
        ("task slots per node", p.task_slots_per_node().to_string()),
        ("vm size", p.spec.vm_size.clone()),
        ("image", or_dash(image)),
        (
            "start task",
            or_dash(p.spec.start_task.as_ref().map(|s| s.command_line.clone())),
        ),
        ("created", time(p.creation_time.0)),
        ("resize errors", p.resize_errors.len().to_string()),
    ]
}

// ---- nodes ----

/// Runs `cobalt node …`.
pub async fn node(group: Group<NodeCommand>) -> anyhow::Result<u8> {
    let conn = Connection::new(&group.opts)?;
    let b = conn.batch()?;
    let out = conn.out;
    match group.command {
        NodeCommand::List { pool } => {
            let nodes = collect(b.client.list_nodes(&pool, &ListOptions::default()))
                .await
                .map_err(b.service.err(Scope::pool(&pool)))?;
            out.list(
                &nodes,
                "nodes",
                &["ID", "STATE", "SCHEDULING", "RUNNING", "TASKS RUN", "IP"],
                node_row,
            )?;
        }
        NodeCommand::Show { pool, node } => {
            let n = b
                .client
                .get_node(&pool, &node)
                .await
                .map_err(b.service.err(Scope::node(&pool, &node)))?;
            out.show(&n, node_fields)?;
        }
        NodeCommand::Reboot { pool, node } => {
            b.client
                .reboot_node(&pool, &node)
                .await
                .map_err(b.service.err(Scope::node(&pool, &node)))?;
            out.done(format_args!("node '{node}' of pool '{pool}' is rebooting"))?;
        }
        NodeCommand::Remove {
            pool,
            nodes,
            deallocation,
        } => {
            let ids: Vec<&str> = nodes.iter().map(String::as_str).collect();
            let scope = match ids.as_slice() {
                [one] => Scope::node(&pool, one),
                _ => Scope::pool(&pool),
            };
            b.client
                .remove_nodes(&pool, &ids, deallocation.into())
                .await
                .map_err(b.service.err(scope))?;
            out.done(format_args!(
                "removing {} node(s) from pool '{pool}'",
                ids.len()
            ))?;
        }
    }
    Ok(0)
}

fn node_row(n: &Node) -> Row {
    vec![
        n.id.clone(),
        n.state.as_str().to_owned(),
        lower(&n.scheduling_state),
        n.running_tasks_count.to_string(),
        n.total_tasks_run.to_string(),
        or_dash(n.ip_address.clone()),
    ]
}

fn node_fields(n: &Node) -> Vec<(&'static str, String)> {
    vec![
        ("id", n.id.clone()),
        ("state", n.state.as_str().to_owned()),
        ("scheduling", lower(&n.scheduling_state)),
        ("vm size", n.vm_size.clone()),
        ("ip address", or_dash(n.ip_address.clone())),
        ("running tasks", n.running_tasks_count.to_string()),
        ("running task slots", n.running_task_slots_count.to_string()),
        ("tasks run", n.total_tasks_run.to_string()),
        ("tasks succeeded", n.total_tasks_succeeded.to_string()),
        (
            "start task",
            or_dash(n.start_task_info.as_ref().map(|s| {
                let mut text = lower(&s.state);
                if let Some(code) = s.exit_code {
                    text.push_str(&format!(", exit code {code}"));
                }
                text
            })),
        ),
        ("allocated", time(n.allocation_time.0)),
        ("last boot", or_dash(n.last_boot_time.map(|t| time(t.0)))),
        (
            "agent",
            or_dash(n.node_agent_info.as_ref().map(|a| a.version.clone())),
        ),
    ]
}

// ---- jobs ----

/// Runs `cobalt job …`.
pub async fn job(group: Group<JobCommand>) -> anyhow::Result<u8> {
    let conn = Connection::new(&group.opts)?;
    let b = conn.batch()?;
    let out = conn.out;
    match group.command {
        JobCommand::List => {
            let jobs = collect(b.client.list_jobs(&ListOptions::default()))
                .await
                .map_err(b.service.err(Scope::none()))?;
            out.list(
                &jobs,
                "jobs",
                &["ID", "STATE", "POOL", "PRIORITY", "CREATED"],
                job_row,
            )?;
        }
        JobCommand::Show { id } => {
            let job = get_job(&b, &id).await?;
            if out.is_json() {
                out.show(&job, |_| Vec::new())?;
            } else {
                let counts = b
                    .client
                    .task_counts(&id)
                    .await
                    .map_err(b.service.err(Scope::job(&id)))?;
                let mut fields = job_fields(&job);
                fields.push((
                    "tasks",
                    format!(
                        "{} active, {} running, {} completed ({} succeeded, {} failed)",
                        counts.active,
                        counts.running,
                        counts.completed,
                        counts.succeeded,
                        counts.failed
                    ),
                ));
                out.show(&job, |_| fields)?;
            }
        }
        JobCommand::Create { id, pool, priority } => {
            let spec = JobSpec {
                pool_info: PoolInformation {
                    pool_id: Some(pool.clone()),
                    ..Default::default()
                },
                priority,
                ..Default::default()
            };
            b.client
                .add_job(&id, &spec)
                .await
                .map_err(b.service.err(Scope::job_on_pool(&id, &pool)))?;
            if out.is_json() {
                out.show(&get_job(&b, &id).await?, |_| Vec::new())?;
            }
            out.done(format_args!("job '{id}' created on pool '{pool}'"))?;
        }
        JobCommand::Terminate { id, reason } => {
            b.client
                .terminate_job(&id, reason.as_deref())
                .await
                .map_err(b.service.err(Scope::job(&id)))?;
            out.done(format_args!("job '{id}' terminated"))?;
        }
        JobCommand::Delete { id } => {
            b.client
                .delete_job(&id)
                .await
                .map_err(b.service.err(Scope::job(&id)))?;
            out.done(format_args!("job '{id}' is being deleted"))?;
        }
    }
    Ok(0)
}

/// A job, or an explained error.
pub async fn get_job(b: &Batch, id: &str) -> anyhow::Result<Job> {
    b.client
        .get_job(id)
        .await
        .map_err(b.service.err(Scope::job(id)))
}

fn job_row(j: &Job) -> Row {
    vec![
        j.id.clone(),
        j.state.as_str().to_owned(),
        or_dash(j.spec.pool_info.pool_id.clone()),
        j.spec.priority.unwrap_or(0).to_string(),
        time(j.creation_time.0),
    ]
}

fn job_fields(j: &Job) -> Vec<(&'static str, String)> {
    let mut fields = vec![
        ("id", j.id.clone()),
        ("state", j.state.as_str().to_owned()),
        ("pool", or_dash(j.spec.pool_info.pool_id.clone())),
        ("priority", j.spec.priority.unwrap_or(0).to_string()),
        ("created", time(j.creation_time.0)),
    ];
    if let Some(end) = j.execution_info.end_time {
        fields.push(("ended", time(end.0)));
    }
    if let Some(reason) = &j.execution_info.terminate_reason {
        fields.push(("terminate reason", reason.clone()));
    }
    fields
}

// ---- tasks ----

/// Runs `cobalt task …`.
pub async fn task(group: Group<TaskCommand>) -> anyhow::Result<u8> {
    let conn = Connection::new(&group.opts)?;
    let b = conn.batch()?;
    let out = conn.out;
    match group.command {
        TaskCommand::List { job, state } => {
            let mut options = ListOptions::default();
            if let Some(state) = state {
                options = options.filter(format!("state eq '{}'", task_state(state).as_str()));
            }
            let tasks = collect(b.client.list_tasks(&job, &options))
                .await
                .map_err(b.service.err(Scope::job(&job)))?;
            out.list(
                &tasks,
                "tasks",
                &["ID", "STATE", "EXIT", "NODE", "COMMAND"],
                task_row,
            )?;
        }
        TaskCommand::Show { job, task } => {
            let t = get_task(&b, &job, &task).await?;
            out.show(&t, task_fields)?;
        }
        TaskCommand::Add {
            job,
            task,
            retries,
            command,
        } => {
            let spec = TaskSpec {
                id: task.clone(),
                command_line: command_line(&command),
                constraints: retries.map(|n| cobalt_client::model::TaskConstraints {
                    max_task_retry_count: Some(n),
                    ..Default::default()
                }),
                ..Default::default()
            };
            b.client
                .add_task(&job, &spec)
                .await
                .map_err(b.service.err(Scope::task(&job, &task)))?;
            if out.is_json() {
                out.show(&get_task(&b, &job, &task).await?, task_fields)?;
            }
            out.done(format_args!("task '{task}' added to job '{job}'"))?;
        }
        TaskCommand::Delete { job, task } => {
            b.client
                .delete_task(&job, &task)
                .await
                .map_err(b.service.err(Scope::task(&job, &task)))?;
            out.done(format_args!("task '{task}' deleted"))?;
        }
        TaskCommand::Terminate { job, task } => {
            b.client
                .terminate_task(&job, &task)
                .await
                .map_err(b.service.err(Scope::task(&job, &task)))?;
            out.done(format_args!("task '{task}' terminated"))?;
        }
        TaskCommand::Logs {
            job,
            task,
            follow,
            stderr,
        } => return follow::logs(&b, &job, &task, follow, stderr).await,
        TaskCommand::Run(args) => return follow::run(&b, args).await,
    }
    Ok(0)
}

/// The task command line for `args`: one argument as it is, several quoted and joined (the
/// node splits it again without a shell).
pub fn command_line(args: &[String]) -> String {
    match args {
        [one] => one.clone(),
        many => shell_words::join(many),
    }
}

fn task_state(state: StateFilter) -> TaskState {
    match state {
        StateFilter::Active => TaskState::Active,
        StateFilter::Preparing => TaskState::Preparing,
        StateFilter::Running => TaskState::Running,
        StateFilter::Completed => TaskState::Completed,
    }
}

/// A task, or an explained error.
pub async fn get_task(b: &Batch, job: &str, task: &str) -> anyhow::Result<Task> {
    b.client
        .get_task(job, task)
        .await
        .map_err(b.service.err(Scope::task(job, task)))
}

fn task_row(t: &Task) -> Row {
    vec![
        t.spec.id.clone(),
        task_state_text(t),
        or_dash(t.execution_info.exit_code),
        or_dash(t.node_info.as_ref().and_then(|n| n.node_id.clone())),
        t.spec.command_line.clone(),
    ]
}

/// `completed (failure)`, `running`…
fn task_state_text(t: &Task) -> String {
    match t.execution_info.result {
        Some(r) if t.state == TaskState::Completed => {
            format!("{} ({})", t.state.as_str(), r.as_str())
        }
        _ => t.state.as_str().to_owned(),
    }
}

fn task_fields(t: &Task) -> Vec<(&'static str, String)> {
    let e = &t.execution_info;
    let mut fields = vec![
        ("id", t.spec.id.clone()),
        ("state", task_state_text(t)),
        ("command line", t.spec.command_line.clone()),
        ("exit code", or_dash(e.exit_code)),
        ("created", time(t.creation_time.0)),
        ("started", or_dash(e.start_time.map(|s| time(s.0)))),
        ("ended", or_dash(e.end_time.map(|s| time(s.0)))),
        ("retries", e.retry_count.to_string()),
        (
            "node",
            or_dash(t.node_info.as_ref().and_then(|n| {
                Some(format!(
                    "{} (pool {})",
                    n.node_id.as_deref()?,
                    n.pool_id.as_deref().unwrap_or("?")
                ))
            })),
        ),
    ];
    if let Some(f) = &e.failure_info {
        fields.push((
            "failure",
            format!(
                "{}: {}",
                f.code.as_deref().unwrap_or("?"),
                f.message.as_deref().unwrap_or("")
            ),
        ));
    }
    fields
}

// ---- files ----

/// Bytes per ranged read of a task file (the node serves at most 8 MiB per request).
pub const FILE_CHUNK: u64 = 4 << 20;

/// Runs `cobalt file …`.
pub async fn file(group: Group<FileCommand>) -> anyhow::Result<u8> {
    let conn = Connection::new(&group.opts)?;
    let b = conn.batch()?;
    let out = conn.out;
    match group.command {
        FileCommand::List {
            job,
            task,
            recursive,
        } => {
            let files = collect(b.client.list_task_files(&job, &task, recursive))
                .await
                .map_err(b.service.err(Scope::task(&job, &task)))?;
            out.list(&files, "files", &["NAME", "SIZE", "MODIFIED"], file_row)?;
        }
        FileCommand::Get {
            job,
            task,
            path,
            out: target,
        } => {
            let scope = Scope::file(&job, &task, &path);
            match &target {
                Some(file) => {
                    let mut w = std::io::BufWriter::new(
                        std::fs::File::create(file)
                            .with_context(|| format!("cannot create {}", file.display()))?,
                    );
                    let n = copy_file(&b, &job, &task, &path, &scope, &mut w).await?;
                    std::io::Write::flush(&mut w)
                        .with_context(|| format!("cannot write {}", file.display()))?;
                    if !out.is_json() {
                        eprintln!("{} ({}) written to {}", path, size(n), file.display());
                    }
                }
                None => {
                    let mut w = std::io::stdout().lock();
                    copy_file(&b, &job, &task, &path, &scope, &mut w).await?;
                }
            }
        }
    }
    Ok(0)
}

/// Copies a task file to `w` in ranged reads; returns its size.
async fn copy_file(
    b: &Batch,
    job: &str,
    task: &str,
    path: &str,
    scope: &Scope,
    w: &mut impl std::io::Write,
) -> anyhow::Result<u64> {
    let mut offset = 0;
    loop {
        let bytes = b
            .client
            .get_task_file(job, task, path, Some(offset..offset + FILE_CHUNK))
            .await
            .map_err(|e| b.service.explain(e, scope))?;
        write_bytes(w, &bytes)?;
        offset += bytes.len() as u64;
        if (bytes.len() as u64) < FILE_CHUNK {
            return Ok(offset);
        }
    }
}

fn file_row(f: &NodeFile) -> Row {
    let props = f.properties.clone().unwrap_or_default();
    if f.is_directory {
        vec![
            format!("{}/", f.name),
            "-".to_owned(),
            time_text(props.last_modified.as_deref()),
        ]
    } else {
        vec![
            f.name.clone(),
            size(props.content_length),
            time_text(props.last_modified.as_deref()),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines() {
        let args = |a: &[&str]| a.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            command_line(&args(&["/bin/sh", "-c", "echo hello; exit 3"])),
            "/bin/sh -c 'echo hello; exit 3'"
        );
        assert_eq!(
            command_line(&args(&["/bin/sh -c 'echo hi'"])),
            "/bin/sh -c 'echo hi'"
        );
    }
}
