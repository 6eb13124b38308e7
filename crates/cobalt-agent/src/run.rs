//! One run, from assignment to `Ended`: task directory, resource files, the process (as the
//! right user, in its own process group, with the wall-clock limit), output files. Also the
//! table of runs in progress, through which the connection kills them.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use cobalt_model::batch::{FailureInfo, TaskResult, Timestamp};
use cobalt_proto::{Assignment, Event, RunEnd, layout};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot, watch};

use crate::codes::{self, server_error, user_error};
use crate::exec::{self, Identity, Launch};
use crate::node::NodeDirs;
use crate::{outputs, resources};

/// What every run of a session shares.
pub(crate) struct RunContext {
    pub dirs: Arc<NodeDirs>,
    pub http: reqwest::Client,
    pub identity: Identity,
    /// Every task's environment before its own variables: the agent's variables that tasks
    /// inherit ([`cobalt_proto::inherited_by_tasks`]), then the node's (`Welcome.environment`).
    pub base_env: Vec<(OsString, OsString)>,
    /// The node's path variables (`AZ_BATCH_NODE_*_DIR`), which a run's settings do not override.
    pub node_env: Vec<(OsString, OsString)>,
    pub events: mpsc::UnboundedSender<Event>,
}

/// Why a run is asked to stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stop {
    /// Keep going.
    No,
    /// The server's `Kill`: end with `TaskEnded`.
    Kill,
    /// The agent is leaving: kill and report nothing.
    Leave,
}

struct RunControl {
    stop: watch::Sender<Stop>,
    /// The process group, once spawned (0 before).
    pgid: Arc<AtomicI32>,
    /// The run has its slots and is under way: it can no longer be withdrawn.
    begun: bool,
}

/// The runs in progress, and the node's task slots.
#[derive(Clone, Default)]
pub(crate) struct Runs {
    table: Arc<Mutex<HashMap<u64, RunControl>>>,
    /// The node's task slots (`Welcome::task_slots`). None: no limit.
    slots: Arc<Mutex<Option<TaskSlots>>>,
}

/// A node's task slots: how many, and where task runs ask for theirs.
#[derive(Clone)]
struct TaskSlots {
    total: u32,
    requests: mpsc::UnboundedSender<SlotRequest>,
}

/// A run asking for `wanted` slots; the permit comes back on `reply`.
struct SlotRequest {
    wanted: u32,
    reply: oneshot::Sender<OwnedSemaphorePermit>,
}

impl TaskSlots {
    /// `total` slots, granted strictly in the order runs ask (the order the server sent
    /// them), by one task that owns the semaphore.
    fn new(total: u32) -> Self {
        let (requests, mut rx) = mpsc::unbounded_channel::<SlotRequest>();
        let semaphore = Arc::new(Semaphore::new(total as usize));
        tokio::spawn(async move {
            while let Some(mut request) = rx.recv().await {
                // A run withdrawn or killed while it waited is gone: it holds up no run behind
                // it, and slots granted as it went go back at once.
                let acquired = tokio::select! {
                    acquired = Arc::clone(&semaphore).acquire_many_owned(request.wanted) => acquired,
                    () = request.reply.closed() => continue,
                };
                let Ok(permit) = acquired else {
                    return;
                };
                let _ = request.reply.send(permit);
            }
        });
        Self { total, requests }
    }

    /// Asks for a run's slots (at most all of them); the answer comes in turn.
    fn ask(&self, wanted: u32) -> oneshot::Receiver<OwnedSemaphorePermit> {
        let (reply, rx) = oneshot::channel();
        let _ = self.requests.send(SlotRequest {
            wanted: wanted.min(self.total),
            reply,
        });
        rx
    }
}

impl Runs {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, RunControl>> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sets the node's task slots (from `Welcome`); 0 means no limit. Runs holding slots of
    /// an earlier setting keep them.
    pub fn set_slots(&self, slots: u32) {
        let mut current = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        if current.as_ref().map(|s| s.total) != Some(slots) {
            *current = (slots > 0).then(|| TaskSlots::new(slots));
        }
    }

    /// Starts a run in the background; a run already in progress is not started twice. A
    /// task run first waits for its slots (queued runs behind it wait their turn); a queued
    /// run with resource files says [`Event::Began`] once it has them.
    pub fn start(&self, ctx: Arc<RunContext>, assignment: Assignment) {
        let (stop, stop_rx) = watch::channel(Stop::No);
        let pgid = Arc::new(AtomicI32::new(0));
        {
            let mut table = self.lock();
            if table.contains_key(&assignment.run) {
                tracing::debug!(run = assignment.run, "run already in progress");
                return;
            }
            let control = RunControl {
                stop,
                pgid: pgid.clone(),
                begun: false,
            };
            table.insert(assignment.run, control);
        }
        let runs = self.clone();
        // Asked now, in the order runs arrive, whatever order their tasks run in.
        let slots = self
            .slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .filter(|_| assignment.slots > 0)
            .map(|s| s.ask(assignment.slots));
        tokio::spawn(async move {
            let run = assignment.run;
            let mut stop_rx = stop_rx;
            let permit = match slots {
                Some(granted) => {
                    tokio::select! {
                        permit = granted => permit.ok(),
                        _ = stop_rx.wait_for(|s| *s != Stop::No) => {
                            // Killed (or leaving) before it began: the server has forgotten
                            // it already, so nothing is reported.
                            runs.lock().remove(&run);
                            return;
                        }
                    }
                }
                None => None,
            };
            if !runs.begin(run) {
                // Withdrawn while it waited: the server has it back (its slots go back with
                // the permit).
                return;
            }
            // A queued run with files to download says it began now, so that its task shows
            // `running` while they download; otherwise `Started` says it, a moment later,
            // and the server hears one message less per task.
            if assignment.queued && !assignment.resource_files.is_empty() {
                let _ = ctx.events.send(Event::Began {
                    run,
                    at: Timestamp::now(),
                });
            }
            let end = execute(&ctx, assignment, stop_rx, &pgid).await;
            // The slots are free before the server hears of the end, so that a run it sends
            // on that news finds them free.
            drop(permit);
            // Queued before the run leaves the table, so that a `Hello` always counts it:
            // either as going or as ended with its `Ended` still to be sent.
            if let Some(end) = end {
                let _ = ctx.events.send(Event::Ended(end));
            }
            runs.lock().remove(&run);
        });
    }

    /// Marks a run as under way; false if it was withdrawn meanwhile (it must not start).
    fn begin(&self, run: u64) -> bool {
        match self.lock().get_mut(&run) {
            Some(control) => {
                control.begun = true;
                true
            }
            None => false,
        }
    }

    /// Takes back a run that waits for its slots: it never starts and reports nothing. False
    /// if it has begun, or is not here (ended, or never arrived).
    pub fn withdraw(&self, run: u64) -> bool {
        let mut table = self.lock();
        if table.get(&run).is_none_or(|c| c.begun) {
            return false;
        }
        if let Some(control) = table.remove(&run) {
            // Wakes the run out of its wait for slots.
            control.stop.send_replace(Stop::Leave);
        }
        true
    }

    /// Kills a run's process tree (its `Ended` follows). False if no such run is going.
    pub fn kill(&self, run: u64) -> bool {
        let table = self.lock();
        let Some(control) = table.get(&run) else {
            return false;
        };
        control.stop.send_replace(Stop::Kill);
        exec::kill_group(control.pgid.load(Ordering::SeqCst));
        true
    }

    /// Kills every run at once, reporting nothing (the agent is leaving).
    pub fn kill_all(&self) {
        for control in self.lock().values() {
            control.stop.send_replace(Stop::Leave);
            exec::kill_group(control.pgid.load(Ordering::SeqCst));
        }
    }

    /// The runs in progress.
    pub fn ids(&self) -> Vec<u64> {
        let mut ids: Vec<u64> = self.lock().keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// Waits (at most `limit`) until every run has finished.
    pub async fn wait_idle(&self, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        while !self.lock().is_empty() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// How the process ended.
enum Exit {
    /// By itself (or by a signal the agent did not send).
    Exited(ExitStatus),
    /// The wall clock ran out: killed.
    TimedOut(ExitStatus),
    /// The server's `Kill`.
    Killed(ExitStatus),
}

/// The whole run. None when the agent is leaving (nothing is reported).
async fn execute(
    ctx: &RunContext,
    a: Assignment,
    mut stop: watch::Receiver<Stop>,
    pgid: &AtomicI32,
) -> Option<RunEnd> {
    let (task_dir, stdout, stderr) = match before_start(ctx, &a, &mut stop).await {
        Ok(prepared) => prepared,
        Err(end) => return end.map(|end| *end),
    };
    let start = Timestamp::now();
    let (code, info) =
        run_command(ctx, &a, &task_dir, (stdout, stderr), &mut stop, pgid, start).await?;
    Some(finish(ctx, &a, &task_dir, Some(start), code, info).await)
}

/// Everything before the command: the task directory, stdout.txt and stderr.txt, the resource
/// files, handing the directory to the task's user. `Err` is the run's end (None: leaving).
async fn before_start(
    ctx: &RunContext,
    a: &Assignment,
    stop: &mut watch::Receiver<Stop>,
) -> Result<(PathBuf, File, File), Option<Box<RunEnd>>> {
    let not_started = |info| Err(Some(Box::new(ended(a.run, None, None, Some(info), true))));
    let Some(task_dir) = ctx.dirs.resolve(&a.dir).filter(|_| !a.dir.is_empty()) else {
        let message = format!(
            "the task directory '{}' is not a path under the node root",
            a.dir
        );
        return not_started(server_error(codes::TASK_START_FAILED, message));
    };
    let wd = task_dir.join(layout::WD);
    // Three or four file system calls: cheaper in place than on a blocking thread.
    let (stdout, stderr) = match prepare(&task_dir, &wd) {
        Ok(files) => files,
        Err(e) => {
            let message = format!("cannot create the task directory: {e}");
            return not_started(server_error(codes::TASK_START_FAILED, message));
        }
    };
    let downloaded = tokio::select! {
        r = resources::download_all(&ctx.http, &wd, &a.resource_files) => r,
        () = stopped(stop) => Err(stopped_info()),
    };
    if let Err(info) = downloaded {
        return match *stop.borrow() {
            Stop::Leave => Err(None),
            Stop::Kill => Err(Some(Box::new(ended(
                a.run,
                None,
                None,
                Some(stopped_info()),
                false,
            )))),
            Stop::No => not_started(info),
        };
    }
    if let Some((uid, gid)) = ctx.identity.run_as(a.elevated) {
        let dir = task_dir.clone();
        let owned = tokio::task::spawn_blocking(move || give_to(&dir, uid, gid))
            .await
            .unwrap_or_else(|e| Err(e.to_string()));
        if let Err(e) = owned {
            let message = format!("cannot hand the task directory to the task's user: {e}");
            return not_started(server_error(codes::TASK_START_FAILED, message));
        }
    }
    Ok((task_dir, stdout, stderr))
}

/// Starts the command and waits for it: its exit code and what went wrong, if anything.
/// None when the agent is leaving.
async fn run_command(
    ctx: &RunContext,
    a: &Assignment,
    task_dir: &Path,
    (stdout, stderr): (File, File),
    stop: &mut watch::Receiver<Stop>,
    pgid: &AtomicI32,
    start: Timestamp,
) -> Option<(Option<i32>, Option<FailureInfo>)> {
    let argv = match exec::split_command(&a.command_line) {
        Ok(argv) => argv,
        Err(message) => {
            return Some((
                None,
                Some(user_error(codes::COMMAND_PROGRAM_NOT_FOUND, message)),
            ));
        }
    };
    let program = argv.first().cloned().unwrap_or_default();
    let launch = Launch {
        argv,
        cwd: task_dir.join(layout::WD),
        env: environment(ctx, a, task_dir),
        stdout,
        stderr,
        user: ctx.identity.run_as(a.elevated),
    };
    let mut child = match exec::spawn(launch) {
        Ok(child) => child,
        Err(e) if exec::is_program_error(&e) => {
            let message = format!("cannot run '{program}': {e}");
            return Some((
                None,
                Some(user_error(codes::COMMAND_PROGRAM_NOT_FOUND, message)),
            ));
        }
        Err(e) => {
            let message = format!("cannot start '{program}': {e}");
            return Some((None, Some(server_error(codes::TASK_START_FAILED, message))));
        }
    };
    let group = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .unwrap_or(0);
    pgid.store(group, Ordering::SeqCst);
    let _ = ctx.events.send(Event::Started {
        run: a.run,
        at: start,
        pgid: (group > 0).then_some(group),
    });
    let outcome = match wait(&mut child, group, a.max_wall_clock_seconds, stop).await {
        Ok(Exit::Exited(status)) => (Some(exec::exit_code(status)), None),
        Ok(Exit::TimedOut(status)) => {
            let info = timeout_info(a.max_wall_clock_seconds);
            (Some(exec::exit_code(status)), Some(info))
        }
        Ok(Exit::Killed(_)) if *stop.borrow() == Stop::Leave => return None,
        Ok(Exit::Killed(status)) => (Some(exec::exit_code(status)), Some(stopped_info())),
        Err(e) => {
            let info = server_error(codes::TASK_START_FAILED, format!("lost the process: {e}"));
            (None, Some(info))
        }
    };
    Some(outcome)
}

/// Creates the task directory and `wd/`, and opens stdout.txt and stderr.txt for appending.
fn prepare(task_dir: &Path, wd: &Path) -> Result<(File, File), String> {
    make_dirs(task_dir, wd).map_err(|e| format!("{}: {e}", wd.display()))?;
    let open = |name: &str| {
        let path = task_dir.join(name);
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| format!("{}: {e}", path.display()))
    };
    Ok((open("stdout.txt")?, open("stderr.txt")?))
}

/// Creates `task_dir` and `wd` in it: two calls where the job's directory exists (the usual
/// case), not the three of `create_dir_all`.
fn make_dirs(task_dir: &Path, wd: &Path) -> std::io::Result<()> {
    use std::io::ErrorKind;
    match fs::create_dir(task_dir) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
        Err(e) if e.kind() == ErrorKind::NotFound => return fs::create_dir_all(wd),
        Err(e) => return Err(e),
    }
    match fs::create_dir(wd) {
        Err(e) if e.kind() == ErrorKind::AlreadyExists && wd.is_dir() => Ok(()),
        other => other,
    }
}

/// Chowns the task directory tree to the task's user (links themselves, never their targets).
fn give_to(task_dir: &Path, uid: u32, gid: u32) -> Result<(), String> {
    for entry in walkdir::WalkDir::new(task_dir) {
        let entry = entry.map_err(|e| e.to_string())?;
        std::os::unix::fs::lchown(entry.path(), Some(uid), Some(gid))
            .map_err(|e| format!("{}: {e}", entry.path().display()))?;
    }
    Ok(())
}

/// The agent's environment and the node's (`Welcome`), then the run's and the path variables.
fn environment(ctx: &RunContext, a: &Assignment, task_dir: &Path) -> Vec<(OsString, OsString)> {
    let run = a
        .environment
        .iter()
        .map(|s| (s.name.clone(), s.value.clone().unwrap_or_default()));
    let prep = a.job_prep_dir.iter().flat_map(|dir| {
        let dir = ctx.dirs.root.join(dir);
        [
            (
                "AZ_BATCH_JOB_PREP_DIR".to_owned(),
                dir.to_string_lossy().into_owned(),
            ),
            (
                "AZ_BATCH_JOB_PREP_WORKING_DIR".to_owned(),
                dir.join(cobalt_proto::layout::WD)
                    .to_string_lossy()
                    .into_owned(),
            ),
        ]
    });
    let mut env = ctx.base_env.clone();
    env.extend(run.map(|(k, v)| (k.into(), v.into())));
    env.extend(ctx.node_env.iter().cloned());
    env.extend(
        crate::node::task_variables(task_dir)
            .into_iter()
            .chain(prep)
            .map(|(k, v)| (k.into(), v.into())),
    );
    env
}

/// Waits for the process, killing its group when the wall clock runs out or when asked to.
async fn wait(
    child: &mut tokio::process::Child,
    group: i32,
    max_seconds: Option<f64>,
    stop: &mut watch::Receiver<Stop>,
) -> std::io::Result<Exit> {
    let limit = max_seconds
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .map(|d| tokio::time::Instant::now().checked_add(d));
    let timeout = async {
        match limit {
            Some(Some(deadline)) => tokio::time::sleep_until(deadline).await,
            _ => std::future::pending().await,
        }
    };
    tokio::select! {
        status = child.wait() => Ok(Exit::Exited(status?)),
        () = timeout => {
            exec::kill_group(group);
            Ok(Exit::TimedOut(child.wait().await?))
        }
        // A stop that came before the process group was recorded is seen here too.
        () = stopped(stop) => {
            exec::kill_group(group);
            Ok(Exit::Killed(child.wait().await?))
        }
    }
}

/// Uploads the output files whose condition holds (also after a command that could not start:
/// a failure) and builds the `RunEnd`.
async fn finish(
    ctx: &RunContext,
    a: &Assignment,
    task_dir: &Path,
    start: Option<Timestamp>,
    exit_code: Option<i32>,
    mut info: Option<FailureInfo>,
) -> RunEnd {
    let succeeded = exit_code == Some(0) && info.is_none();
    let mut upload_failed = false;
    if !a.output_files.is_empty()
        && let Err(upload) =
            outputs::upload_all(&ctx.http, task_dir, &a.output_files, succeeded).await
    {
        upload_failed = true;
        info.get_or_insert(upload);
    }
    // A failed upload always leaves `info` set, so the result is a failure.
    let mut end = ended(a.run, start, exit_code, info, false);
    end.file_upload_error = upload_failed;
    end
}

fn ended(
    run: u64,
    start_time: Option<Timestamp>,
    exit_code: Option<i32>,
    failure_info: Option<FailureInfo>,
    pre_processing_error: bool,
) -> RunEnd {
    let success = exit_code == Some(0) && failure_info.is_none();
    RunEnd {
        run,
        start_time,
        end_time: Timestamp::now(),
        exit_code,
        result: if success {
            TaskResult::Success
        } else {
            TaskResult::Failure
        },
        failure_info,
        pre_processing_error,
        file_upload_error: false,
    }
}

/// Resolves once the run is asked to stop (holding no lock on the value afterwards).
async fn stopped(stop: &mut watch::Receiver<Stop>) {
    let _ = stop.wait_for(|s| *s != Stop::No).await;
}

fn stopped_info() -> FailureInfo {
    user_error(codes::TASK_ENDED, "Task was ended by user request")
}

fn timeout_info(max_seconds: Option<f64>) -> FailureInfo {
    user_error(
        codes::MAX_WALL_CLOCK_TIME_EXCEEDED,
        format!(
            "The task ran longer than its maximum wall clock time ({} s) and was killed",
            max_seconds.unwrap_or_default()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_directories_are_made_under_new_and_existing_parents() {
        let root = tempfile::tempdir().unwrap();
        let task = root.path().join("workitems/j/job-1/t");
        let wd = task.join("wd");
        make_dirs(&task, &wd).unwrap();
        assert!(wd.is_dir(), "a new job's parents are made too");
        make_dirs(&task, &wd).unwrap();
        let other = root.path().join("workitems/j/job-1/u");
        make_dirs(&other, &other.join("wd")).unwrap();
        assert!(other.join("wd").is_dir());
        let blocked = root.path().join("workitems/j/job-1/v");
        fs::create_dir(&blocked).unwrap();
        fs::write(blocked.join("wd"), b"a file").unwrap();
        assert!(make_dirs(&blocked, &blocked.join("wd")).is_err());
    }
}
