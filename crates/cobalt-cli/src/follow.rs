//! `cobalt task logs` and `cobalt task run`: a task's output files, followed with ranged reads
//! while the task runs.
//!
//! The loop reads the task's state, then everything new in its files; when the state it read
//! was `completed`, the files were complete before that read, so nothing is lost. Until the
//! task has a node its files answer `TaskFilesUnavailable` (409) or `FileNotFound` (404):
//! that means "not yet". A new run (a retry or a requeue) starts its files again.
//!
//! Owns: following and the exit status of a followed task. Must not do: HTTP (the client
//! crate's job).

use std::time::Duration;

use cobalt_client::model::{Task, TaskResult, TaskSpec, TaskState};

use crate::batch_cmds::{FILE_CHUNK, command_line, get_task};
use crate::connection::Batch;
use crate::errors::Scope;
use crate::output::write_bytes;

/// `cobalt task run`.
#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// The job to add the task to.
    #[arg(long)]
    job: String,
    /// Create the job on this pool if it does not exist.
    #[arg(long)]
    pool: Option<String>,
    /// The task's id [default: run-<date>-<time>-<random>].
    #[arg(long)]
    id: Option<String>,
    /// The command and its arguments, after `--` (run without a shell; a single argument is
    /// the whole command line).
    #[arg(last = true, required = true, value_name = "CMD")]
    command: Vec<String>,
}

/// The fastest and slowest polls.
const POLL_MIN: Duration = Duration::from_millis(200);
const POLL_MAX: Duration = Duration::from_secs(1);

#[derive(Clone, Copy, Debug)]
enum Sink {
    Stdout,
    Stderr,
}

/// One followed file.
#[derive(Debug)]
struct Tail {
    path: &'static str,
    offset: u64,
    sink: Sink,
}

impl Tail {
    fn new(path: &'static str, sink: Sink) -> Self {
        Self {
            path,
            offset: 0,
            sink,
        }
    }

    fn write(&self, bytes: &[u8]) -> anyhow::Result<()> {
        match self.sink {
            Sink::Stdout => write_bytes(&mut std::io::stdout().lock(), bytes),
            Sink::Stderr => write_bytes(&mut std::io::stderr().lock(), bytes),
        }
    }

    /// Prints what is new in the file; says whether there was anything. `wait`: a file that
    /// is not there yet is not an error.
    async fn drain(
        &mut self,
        b: &Batch,
        job: &str,
        task: &str,
        wait: bool,
    ) -> anyhow::Result<bool> {
        let mut got = false;
        loop {
            let range = self.offset..self.offset + FILE_CHUNK;
            match b
                .client
                .get_task_file(job, task, self.path, Some(range))
                .await
            {
                Ok(bytes) => {
                    self.write(&bytes)?;
                    self.offset += bytes.len() as u64;
                    got |= !bytes.is_empty();
                    if (bytes.len() as u64) < FILE_CHUNK {
                        return Ok(got);
                    }
                }
                Err(e)
                    if wait
                        && matches!(e.code(), Some("TaskFilesUnavailable" | "FileNotFound")) =>
                {
                    return Ok(got);
                }
                Err(e) => return Err(b.service.explain(e, &Scope::file(job, task, self.path))),
            }
        }
    }
}

/// Follows `tails` of a task until it completes; returns the completed task.
async fn follow(b: &Batch, job: &str, task: &str, tails: &mut [Tail]) -> anyhow::Result<Task> {
    let mut run = None;
    let mut poll = POLL_MIN;
    loop {
        let t = get_task(b, job, task).await?;
        let this_run = (t.execution_info.retry_count, t.execution_info.requeue_count);
        if run.is_some_and(|r| r != this_run) {
            eprintln!("(task '{task}' started again: its output starts over)");
            for tail in tails.iter_mut() {
                tail.offset = 0;
            }
        }
        run = Some(this_run);
        let done = t.state == TaskState::Completed;
        let mut got = false;
        for tail in tails.iter_mut() {
            got |= tail.drain(b, job, task, true).await?;
        }
        if done {
            return Ok(t);
        }
        poll = if got {
            POLL_MIN
        } else {
            (poll * 3 / 2).min(POLL_MAX)
        };
        tokio::time::sleep(poll).await;
    }
}

/// The exit status that stands for a task: 0 unless it completed and failed; then its exit
/// code when that fits, else 1. A failure without an exit code is explained on stderr.
fn exit_status(t: &Task) -> u8 {
    if t.state != TaskState::Completed {
        return 0;
    }
    let e = &t.execution_info;
    let failed = e.result == Some(TaskResult::Failure);
    match e.exit_code {
        Some(code) if code != 0 => u8::try_from(code).ok().filter(|c| *c != 0).unwrap_or(1),
        _ if failed => {
            let why = e.failure_info.as_ref().map_or_else(String::new, |f| {
                format!(
                    ": {}: {}",
                    f.code.as_deref().unwrap_or("?"),
                    f.message.as_deref().unwrap_or("")
                )
            });
            eprintln!("task '{}' failed{why}", t.spec.id);
            1
        }
        _ => 0,
    }
}

/// `cobalt task logs`.
pub async fn logs(
    b: &Batch,
    job: &str,
    task: &str,
    follow_it: bool,
    stderr: bool,
) -> anyhow::Result<u8> {
    let path = if stderr { "stderr.txt" } else { "stdout.txt" };
    let mut tails = [Tail::new(path, Sink::Stdout)];
    let t = if follow_it {
        follow(b, job, task, &mut tails).await?
    } else {
        let t = get_task(b, job, task).await?;
        for tail in &mut tails {
            tail.drain(b, job, task, false).await?;
        }
        t
    };
    Ok(exit_status(&t))
}

/// `run-20261121-070000-3f2a9c`.
fn auto_id() -> String {
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!(
        "run-{}-{}",
        chrono::Utc::now().format("%Y%m%d-%H%M%S"),
        random.get(..6).unwrap_or("0")
    )
}

/// Creates job `job` on `pool` unless it exists.
async fn ensure_job(b: &Batch, job: &str, pool: &str) -> anyhow::Result<()> {
    match b.client.get_job(job).await {
        Ok(existing) => {
            if let Some(other) = existing.spec.pool_info.pool_id.as_deref()
                && !other.eq_ignore_ascii_case(pool)
            {
                tracing::warn!("job '{job}' runs on pool '{other}', not '{pool}'");
            }
            Ok(())
        }
        Err(e) if e.code() == Some("JobNotFound") => {
            let spec = cobalt_client::model::JobSpec {
                pool_info: cobalt_client::model::PoolInformation {
                    pool_id: Some(pool.to_owned()),
                    ..Default::default()
                },
                ..Default::default()
            };
            match b.client.add_job(job, &spec).await {
                Ok(()) => {
                    tracing::info!("created job '{job}' on pool '{pool}'");
                    Ok(())
                }
                Err(e) if e.code() == Some("JobExists") => Ok(()),
                Err(e) => Err(b.service.explain(e, &Scope::job_on_pool(job, pool))),
            }
        }
        Err(e) => Err(b.service.explain(e, &Scope::job(job))),
    }
}

/// `cobalt task run`.
pub async fn run(b: &Batch, args: RunArgs) -> anyhow::Result<u8> {
    let job = args.job;
    let id = args.id.unwrap_or_else(auto_id);
    if let Some(pool) = &args.pool {
        ensure_job(b, &job, pool).await?;
    }
    let spec = TaskSpec {
        id: id.clone(),
        command_line: command_line(&args.command),
        ..Default::default()
    };
    b.client
        .add_task(&job, &spec)
        .await
        .map_err(b.service.err(Scope::task(&job, &id)))?;
    tracing::info!("added task '{id}' to job '{job}'");
    let mut tails = [
        Tail::new("stdout.txt", Sink::Stdout),
        Tail::new("stderr.txt", Sink::Stderr),
    ];
    tokio::select! {
        t = follow(b, &job, &id, &mut tails) => Ok(exit_status(&t?)),
        _ = tokio::signal::ctrl_c() => {
            match b.client.terminate_task(&job, &id).await {
                Ok(()) => eprintln!("interrupted: task '{id}' of job '{job}' terminated"),
                Err(e) => eprintln!(
                    "interrupted; task '{id}' of job '{job}' may still run: {}",
                    b.service.explain(e, &Scope::task(&job, &id))
                ),
            }
            Ok(130)
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn auto_ids_are_valid_task_ids() {
        let id = auto_id();
        assert!(cobalt_model::batch::is_valid_id(&id), "{id}");
        assert_ne!(id, auto_id());
    }
}
