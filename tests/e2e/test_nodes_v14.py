"""Compute nodes and the scheduler end to end with azure-batch 14.2.0 (api-version
2024-02-01.19.0) and azure-storage-blob 12.31.1 for the blob side, against the real
`cobalt` binary and its local node agents. Run with .venv/batch-14 (see run.sh).

Every test asserts what Azure Batch documents for the same requests: task retries and
their accounting, maxWallClockTime, terminate, dependencies and dependencyAction, exit
conditions and job actions, onAllTasksComplete, output and resource files (fileMode), the
start task, job preparation and release tasks, the node environment, user identities and the
file APIs, retentionTime, task slots and maxParallelTasks, job priority, node operations
(disable/enable scheduling, reboot and reimage, remove and resize with each
nodeDeallocationOption), recovery from a lost node and from a server crash
(shared/reference/azure-batch-model.md sections 2.3-2.4, batch-rest.md sections 8 and 11,
and the official swagger's descriptions).

The session server's data directory is under a 0700 temporary directory, so its non-admin
tasks run as the server's own user there; nothing below depends on which user that is.
Markers that must survive a move to another node live in a world-writable temporary
directory (`marks`), so they work whichever user a task runs as.
"""
from __future__ import annotations

import datetime as dt
import os
import signal
import tempfile
import time
import uuid
from pathlib import Path

import pytest
from azure.batch import BatchServiceClient
from azure.batch import models as bm
from azure.batch.batch_auth import SharedKeyCredentials
from azure.storage.blob import (BlobServiceClient, ContainerSasPermissions,
                                generate_container_sas)

from e2e_support import (ACCOUNT, BATCH_ACCOUNT, BATCH_KEY, KEY, SERVER_SECRET, CobaltServer,
                         cobalt_binary, unique, wait_for)

VM_SIZE = "standard_d2s_v3"
UTC = dt.timezone.utc
TIMEOUT = 30      # the longest any single wait here may take


# == helpers ================================================================================

def make_client(url: str) -> BatchServiceClient:
    return BatchServiceClient(SharedKeyCredentials(BATCH_ACCOUNT, BATCH_KEY), batch_url=url)


def vm_config() -> bm.VirtualMachineConfiguration:
    return bm.VirtualMachineConfiguration(
        image_reference=bm.ImageReference(
            publisher="canonical", offer="0001-com-ubuntu-server-jammy", sku="22_04-lts",
            version="latest"),
        node_agent_sku_id="batch.node.ubuntu 22.04")


# Pools and jobs a test creates, deleted after it whatever its outcome (`cleanup`), so a
# failing test leaves no task running on the shared pool.
_created = []


def add_pool(client, nodes: int = 1, slots: int = 1, prefix: str = "v14n", track: bool = True,
             **kw) -> str:
    pid = unique(prefix)
    if track:
        _created.append((client, "pool", pid))
    client.pool.add(bm.PoolAddParameter(id=pid, vm_size=VM_SIZE,
                                        virtual_machine_configuration=vm_config(),
                                        target_dedicated_nodes=nodes, task_slots_per_node=slots,
                                        **kw))
    return pid


def idle_nodes(client, pid: str, count: int, timeout: float = TIMEOUT):
    """Wait until the pool lists exactly `count` nodes, all idle; return them."""
    def probe():
        nodes = list(client.compute_node.list(pid))
        if len(nodes) == count and all(n.state == bm.ComputeNodeState.idle for n in nodes):
            return nodes
        return None
    try:
        return wait_for(probe, timeout, 0.1, what=f"{count} idle nodes in {pid}")
    except AssertionError:
        raise AssertionError(f"pool {pid}: wanted {count} idle nodes, have "
                             f"{[(n.id, n.state) for n in client.compute_node.list(pid)]}")


def node_state(client, pid: str, nid: str, *states, timeout: float = TIMEOUT):
    def probe():
        n = client.compute_node.get(pid, nid)
        return n if n.state in states else None
    try:
        return wait_for(probe, timeout, 0.1, what=f"node {nid} in {states}")
    except AssertionError:
        n = client.compute_node.get(pid, nid)
        raise AssertionError(f"node {nid}: wanted {states}, is {n.state} "
                             f"(start task {n.start_task_info})")


def task_state(client, jid: str, tid: str, state=bm.TaskState.completed,
               timeout: float = TIMEOUT) -> bm.CloudTask:
    def probe():
        t = client.task.get(jid, tid)
        return t if t.state == state else None
    try:
        return wait_for(probe, timeout, 0.1, what=f"task {jid}/{tid} {state}")
    except AssertionError:
        t = client.task.get(jid, tid)
        raise AssertionError(f"task {jid}/{tid}: wanted {state}, is {t.state} "
                             f"(execution {t.execution_info})")


def all_completed(client, jid: str, count: int, timeout: float = TIMEOUT):
    def probe():
        tasks = list(client.task.list(jid))
        done = [t for t in tasks if t.state == bm.TaskState.completed]
        return tasks if len(tasks) == count and len(done) == count else None
    try:
        return wait_for(probe, timeout, 0.2, what=f"{count} tasks of {jid} completed")
    except AssertionError:
        raise AssertionError(f"job {jid}: not all completed: "
                             f"{sorted((t.id, t.state) for t in client.task.list(jid))}")


def job_state(client, jid: str, state, timeout: float = TIMEOUT) -> bm.CloudJob:
    def probe():
        j = client.job.get(jid)
        return j if j.state == state else None
    try:
        return wait_for(probe, timeout, 0.1, what=f"job {jid} {state}")
    except AssertionError:
        j = client.job.get(jid)
        raise AssertionError(f"job {jid}: wanted {state}, is {j.state} ({j.execution_info})")


def add_job(client, pid: str, track: bool = True, **kw) -> str:
    jid = unique("v14j")
    if track:
        _created.append((client, "job", jid))
    client.job.add(bm.JobAddParameter(id=jid, pool_info=bm.PoolInformation(pool_id=pid), **kw))
    return jid


def task(tid: str, cmd: str, **kw) -> bm.TaskAddParameter:
    return bm.TaskAddParameter(id=tid, command_line=cmd, **kw)


def add_tasks(client, jid: str, tasks):
    result = client.task.add_collection(jid, list(tasks))
    bad = [(r.task_id, r.status, r.error and r.error.code) for r in result.value
           if r.status != bm.TaskAddStatus.success]
    assert not bad, bad


def read_task_file(client, jid: str, tid: str, path: str, **opts) -> bytes:
    options = bm.FileGetFromTaskOptions(**opts) if opts else None
    return b"".join(client.file.get_from_task(jid, tid, path, options))


def read_node_file(client, pid: str, nid: str, path: str) -> bytes:
    return b"".join(client.file.get_from_compute_node(pid, nid, path))


def env_of(text: str) -> dict:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def expect_batch_error(fn, status: int, code: str) -> bm.BatchErrorException:
    with pytest.raises(bm.BatchErrorException) as ei:
        fn()
    e = ei.value
    assert e.response.status_code == status, (e.response.status_code, e.response.text)
    assert e.error is not None and e.error.code == code, e.response.text
    return e


def first_run_sleeps(marks: Path, name: str, seconds: int = 30) -> str:
    """A command that sleeps `seconds` the first time it runs and exits 0 at once on any
    later run (a marker in the world-writable `marks` directory, shared by all nodes)."""
    m = marks / name
    return (f"/bin/sh -c 'if [ -e {m} ]; then echo second run; exit 0; fi; echo $$ > {m}.pid; "
            f"touch {m}; echo first run; exec /bin/sleep {seconds}'")


def wait_first_run(marks: Path, name: str):
    """Wait until a first_run_sleeps command has really started: `running` also covers the
    time before the process exists (azure-batch-model.md 2.3)."""
    wait_for(lambda: (marks / name).exists(), 10, 0.05, what=f"{name}: the command started")


def max_overlap(tasks) -> int:
    """The largest number of tasks whose [startTime, endTime) intervals overlap."""
    events = []
    for t in tasks:
        events.append((t.execution_info.start_time, 1))
        events.append((t.execution_info.end_time, -1))
    events.sort(key=lambda e: (e[0], e[1]))   # an end before a start at the same instant
    cur = best = 0
    for _, d in events:
        cur += d
        best = max(best, cur)
    return best


def agent_pids(server_pid: int) -> dict:
    """{node id: pid} of the `cobalt agent` children of the server process."""
    children = set()
    for tdir in Path(f"/proc/{server_pid}/task").iterdir():
        try:
            children.update(int(p) for p in (tdir / "children").read_text().split())
        except OSError:
            pass
    agents = {}
    for pid in children:
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"agent" in argv and b"--node-id" in argv:
            agents[argv[argv.index(b"--node-id") + 1].decode()] = pid
    return agents


def alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        return ") Z" not in Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False


def processes_with_arg(arg: str) -> list:
    """PIDs of live processes one of whose arguments is exactly `arg`."""
    found = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            argv = (d / "cmdline").read_bytes().split(b"\0")
            stat = (d / "stat").read_text()
        except OSError:
            continue
        if arg.encode() in argv and ") Z" not in stat:
            found.append(int(d.name))
    return found


# == fixtures ===============================================================================

@pytest.fixture(autouse=True)
def cleanup():
    yield
    while _created:
        c, kind, eid = _created.pop()
        try:
            (c.job.delete if kind == "job" else c.pool.delete)(eid)
        except Exception:  # noqa: BLE001 - already deleted, or its server is gone
            pass


@pytest.fixture(scope="module")
def client(cobalt_batch) -> BatchServiceClient:
    return make_client(cobalt_batch)


@pytest.fixture(scope="module")
def blob(cobalt) -> BlobServiceClient:
    return BlobServiceClient(cobalt, credential={"account_name": ACCOUNT, "account_key": KEY})


@pytest.fixture(scope="module")
def marks():
    d = Path(tempfile.mkdtemp(prefix="cobalt-marks-"))
    d.chmod(0o777)
    return d


START_TASK = ("/bin/sh -c 'echo start-ok; env | grep ^AZ_BATCH_ | sort; "
              "echo boot >> $AZ_BATCH_NODE_SHARED_DIR/boots'")


@pytest.fixture(scope="module")
def pool(client) -> str:
    """One node, four slots, a start task that succeeds (waitForSuccess): most tests here
    run their tasks on it, one test at a time."""
    pid = add_pool(client, 1, 4, track=False,
                   start_task=bm.StartTask(command_line=START_TASK, wait_for_success=True))
    idle_nodes(client, pid, 1)
    yield pid
    try:
        client.pool.delete(pid)
    except bm.BatchErrorException:
        pass


@pytest.fixture(scope="module")
def node_id(client, pool) -> str:
    return list(client.compute_node.list(pool))[0].id


@pytest.fixture
def container(blob):
    """A fresh container and a read/write/create/list SAS URL for it."""
    name = unique("v14nodes")
    cc = blob.create_container(name)
    sas = generate_container_sas(ACCOUNT, name, account_key=KEY,
                                 permission=ContainerSasPermissions(read=True, add=True,
                                                                    create=True, write=True,
                                                                    list=True),
                                 expiry=dt.datetime.now(UTC) + dt.timedelta(hours=2))
    yield cc, f"{cc.url}?{sas}"
    try:
        cc.delete_container()
    except Exception:  # noqa: BLE001 - best effort
        pass


def test_the_node_that_ran_a_task_is_listed(client):
    """A pool's tasks run on nodes the API shows: once a task added right after the pool
    has completed, the node named by its nodeInfo is listed and readable, and it counts
    the run (totalTasksRun 1)."""
    pid = add_pool(client, 1, 1)
    jid = add_job(client, pid)
    client.task.add(jid, task("quick", "/bin/true"))
    nid = task_state(client, jid, "quick").node_info.node_id
    listed = {n.id: n.state for n in client.compute_node.list(pid)}
    assert nid in listed, (nid, listed)
    n = client.compute_node.get(pid, nid)
    assert n.state in (bm.ComputeNodeState.idle, bm.ComputeNodeState.running), n.state
    assert n.total_tasks_run == 1, n.total_tasks_run


# == 1. retries =============================================================================

def test_retries_are_spent_then_the_task_fails(client, pool):
    """maxTaskRetryCount=2 and a command that always exits 1: three attempts, then
    completed with result failure, exitCode 1, retryCount 2 and failureInfo
    {category usererror, code FailureExitCode} (azure-batch-model.md 2.4 Retries)."""
    jid = add_job(client, pool)
    client.task.add(jid, task("fail", "/bin/sh -c 'echo attempt; exit 1'",
                              constraints=bm.TaskConstraints(max_task_retry_count=2)))
    t = task_state(client, jid, "fail")
    ei = t.execution_info
    assert ei.result == bm.TaskExecutionResult.failure
    assert ei.exit_code == 1
    assert ei.retry_count == 2
    assert ei.last_retry_time is not None
    assert ei.requeue_count == 0
    assert ei.failure_info is not None
    assert ei.failure_info.category == bm.ErrorCategory.user_error
    assert ei.failure_info.code == "FailureExitCode"
    assert t.previous_state == bm.TaskState.running
    client.job.delete(jid)


def test_a_retry_that_succeeds(client, pool):
    """A command that fails the first time (creating a marker in the node's shared
    directory) and succeeds the second time: success with retryCount 1, no failureInfo."""
    jid = add_job(client, pool)
    marker = f"$AZ_BATCH_NODE_SHARED_DIR/{jid}.mark"
    cmd = f"/bin/sh -c 'if [ -e {marker} ]; then exit 0; fi; touch {marker}; exit 7'"
    client.task.add(jid, task("flaky", cmd,
                              constraints=bm.TaskConstraints(max_task_retry_count=3)))
    t = task_state(client, jid, "flaky")
    ei = t.execution_info
    assert ei.result == bm.TaskExecutionResult.success, ei.failure_info
    assert ei.exit_code == 0
    assert ei.retry_count == 1
    assert ei.failure_info is None
    client.job.delete(jid)


def test_job_max_task_retry_count_is_inherited(client, pool):
    """A task without its own maxTaskRetryCount inherits the job's constraints."""
    jid = add_job(client, pool, constraints=bm.JobConstraints(max_task_retry_count=1))
    client.task.add(jid, task("inherits", "/bin/sh -c 'exit 2'"))
    t = task_state(client, jid, "inherits")
    assert t.execution_info.retry_count == 1
    assert t.execution_info.exit_code == 2
    assert t.execution_info.result == bm.TaskExecutionResult.failure
    client.job.delete(jid)


def test_reactivate_a_failed_task_resets_its_retry_count(client, pool, marks):
    """Reactivating a failed task makes it active again and eligible for its retries anew:
    the retry count is reset to 0 and the previous exit code and failure information are
    gone; here the second life succeeds at once (swagger Task_Reactivate)."""
    jid = add_job(client, pool)
    m = marks / f"{jid}-fixed"
    client.task.add(jid, task("phoenix", f"/bin/sh -c 'test -e {m}'",
                              constraints=bm.TaskConstraints(max_task_retry_count=1)))
    t = task_state(client, jid, "phoenix")
    assert (t.execution_info.result, t.execution_info.retry_count) == (
        bm.TaskExecutionResult.failure, 1)
    m.touch()
    raw = client.task.reactivate(jid, "phoenix", raw=True)
    assert raw.response.status_code == 204
    t = task_state(client, jid, "phoenix")
    ei = t.execution_info
    assert ei.result == bm.TaskExecutionResult.success, ei
    assert ei.exit_code == 0 and ei.failure_info is None
    assert ei.retry_count == 0, ei.retry_count
    # A succeeded task cannot be reactivated.
    expect_batch_error(lambda: client.task.reactivate(jid, "phoenix"), 409, "TaskSucceeded")
    client.job.delete(jid)


# == 2. maxWallClockTime ====================================================================

def test_max_wall_clock_time_kills_the_task(client, pool):
    """maxWallClockTime PT2S on a 30 s command: completed as a failure within a few
    seconds, failureInfo code MaxWallClockTimeExceeded; the whole process tree (here a
    background sleep too) is gone."""
    jid = add_job(client, pool)
    tag = f"29.{uuid.uuid4().int % 10**6:06d}"     # a unique argument to find the processes
    client.task.add(jid, task("slow", f"/bin/sh -c '/bin/sleep {tag} & exec /bin/sleep 30'",
                              constraints=bm.TaskConstraints(
                                  max_wall_clock_time=dt.timedelta(seconds=2))))
    started = time.monotonic()
    t = task_state(client, jid, "slow", timeout=15)
    elapsed = time.monotonic() - started
    assert elapsed < 10, f"killed after {elapsed:.1f}s, limit 2s"
    ei = t.execution_info
    assert ei.result == bm.TaskExecutionResult.failure
    assert ei.failure_info is not None
    assert ei.failure_info.code == "MaxWallClockTimeExceeded", ei.failure_info
    assert ei.failure_info.category == bm.ErrorCategory.user_error
    assert ei.retry_count == 0
    assert (ei.end_time - ei.start_time).total_seconds() < 10
    wait_for(lambda: not processes_with_arg(tag), 5, what="the task's process tree gone")
    client.job.delete(jid)


def test_job_max_wall_clock_time_terminates_the_job(client):
    """Job constraints maxWallClockTime PT2S: the job is terminated a few seconds after its
    creation (completed, terminateReason MaxWallClockTimeExpiry) and its running task is
    terminated with it."""
    pid = add_pool(client, 1, 1)
    jid = add_job(client, pid, constraints=bm.JobConstraints(
        max_wall_clock_time=dt.timedelta(seconds=2)))
    client.task.add(jid, task("long", "/bin/sleep 30"))
    j = job_state(client, jid, bm.JobState.completed, timeout=10)
    assert j.execution_info.terminate_reason == "MaxWallClockTimeExpiry"
    assert (j.execution_info.end_time - j.creation_time).total_seconds() < 10
    t = task_state(client, jid, "long", timeout=10)
    assert t.execution_info is None or t.execution_info.exit_code != 0
    client.job.delete(jid)


def test_deleting_a_job_kills_its_running_task(client):
    """Deleting a job with a running task: the job goes away and the task's process is
    killed, freeing the node (it goes back to idle)."""
    pid = add_pool(client, 1, 1)
    nid = idle_nodes(client, pid, 1)[0].id
    jid = add_job(client, pid)
    tag = f"28.{uuid.uuid4().int % 10**6:06d}"
    client.task.add(jid, task("doomed", f"/bin/sleep {tag}"))
    wait_for(lambda: processes_with_arg(tag), 10, 0.05, what="the task's process")
    raw = client.job.delete(jid, raw=True)
    assert raw.response.status_code == 202
    wait_for(lambda: _job_gone(client, jid), TIMEOUT, what="job deleted")
    wait_for(lambda: not processes_with_arg(tag), 10, what="the task's process killed")
    node_state(client, pid, nid, bm.ComputeNodeState.idle, timeout=10)


def test_deleting_a_running_task_kills_it(client, pool, node_id):
    """DELETE of a running task -> 200; the task is gone and its process killed."""
    jid = add_job(client, pool)
    tag = f"27.{uuid.uuid4().int % 10**6:06d}"
    client.task.add(jid, task("doomed", f"/bin/sleep {tag}"))
    wait_for(lambda: processes_with_arg(tag), 10, 0.05, what="the task's process")
    raw = client.task.delete(jid, "doomed", raw=True)
    assert raw.response.status_code == 200
    expect_batch_error(lambda: client.task.get(jid, "doomed"), 404, "TaskNotFound")
    wait_for(lambda: not processes_with_arg(tag), 10, what="the task's process killed")
    node_state(client, pool, node_id, bm.ComputeNodeState.idle, timeout=10)


def _job_gone(client, jid: str) -> bool:
    try:
        client.job.get(jid)
        return False
    except bm.BatchErrorException as e:
        return e.response.status_code == 404


# == 3. terminate ===========================================================================

def test_terminate_a_running_task(client, pool, node_id):
    """POST .../terminate on a running task -> 204; the task is completed at once with
    failureInfo TaskEnded, its process is killed, and the node goes back to idle."""
    jid = add_job(client, pool)
    client.task.add(jid, task("long", "/bin/sleep 30"))
    task_state(client, jid, "long", bm.TaskState.running)
    n = wait_for(lambda: (lambda n: n if n.running_tasks_count == 1 else None)(
        client.compute_node.get(pool, node_id)), 10, what="runningTasksCount 1")
    assert n.state == bm.ComputeNodeState.running
    assert n.running_task_slots_count == 1
    counts = {c.pool_id: c for c in client.account.list_pool_node_counts()}
    assert counts[pool].dedicated.running == 1 and counts[pool].dedicated.total == 1, (
        counts[pool].dedicated)
    raw = client.task.terminate(jid, "long", raw=True)
    assert raw.response.status_code == 204
    t = task_state(client, jid, "long", timeout=10)
    ei = t.execution_info
    assert ei.result == bm.TaskExecutionResult.failure
    assert ei.failure_info is not None and ei.failure_info.code == "TaskEnded", ei.failure_info
    assert (ei.end_time - ei.start_time).total_seconds() < 15
    n = node_state(client, pool, node_id, bm.ComputeNodeState.idle, timeout=10)
    assert n.running_tasks_count == 0 and n.running_task_slots_count == 0
    # Terminating a completed task again is a conflict.
    expect_batch_error(lambda: client.task.terminate(jid, "long"), 409, "TaskCompleted")
    client.job.delete(jid)


# == 4. dependencies ========================================================================

def test_dependencies_run_in_order(client, pool):
    """usesTaskDependencies: 2 depends on 1 (taskIds), 3 on the range 1-2. Each starts only
    after its parents completed (startTime >= parents' endTime)."""
    jid = add_job(client, pool, uses_task_dependencies=True)
    add_tasks(client, jid, [
        task("3", "/bin/sh -c 'echo three'", depends_on=bm.TaskDependencies(
            task_id_ranges=[bm.TaskIdRange(start=1, end=2)])),
        task("2", "/bin/sh -c 'sleep 0.5; echo two'",
             depends_on=bm.TaskDependencies(task_ids=["1"])),
        task("1", "/bin/sh -c 'sleep 0.5; echo one'"),
    ])
    tasks = {t.id: t for t in all_completed(client, jid, 3)}
    for t in tasks.values():
        assert t.execution_info.exit_code == 0, (t.id, t.execution_info.failure_info)
    a, b, c = (tasks[i].execution_info for i in ("1", "2", "3"))
    assert b.start_time >= a.end_time, (a.end_time, b.start_time)
    assert c.start_time >= a.end_time and c.start_time >= b.end_time, (b.end_time, c.start_time)
    assert tasks["2"].depends_on.task_ids == ["1"]
    client.job.delete(jid)


def test_a_failed_parent_blocks_its_dependent_unless_satisfy(client, pool):
    """A parent that exits non-zero blocks its dependents forever (they stay active); a
    parent whose exitConditions.default says dependencyAction=satisfy lets them run."""
    jid = add_job(client, pool, uses_task_dependencies=True)
    add_tasks(client, jid, [
        task("1", "/bin/sh -c 'exit 2'"),
        task("2", "/bin/sh -c 'echo never'", depends_on=bm.TaskDependencies(task_ids=["1"])),
        task("3", "/bin/sh -c 'exit 2'", exit_conditions=bm.ExitConditions(
            default=bm.ExitOptions(dependency_action=bm.DependencyAction.satisfy))),
        task("4", "/bin/sh -c 'echo runs'", depends_on=bm.TaskDependencies(task_ids=["3"])),
    ])
    t4 = task_state(client, jid, "4")
    assert t4.execution_info.exit_code == 0
    t1 = task_state(client, jid, "1")
    t3 = client.task.get(jid, "3")
    assert t3.execution_info.result == bm.TaskExecutionResult.failure
    assert t4.execution_info.start_time >= t3.execution_info.end_time
    time.sleep(1.5)   # well after "1" failed: "2" must still be waiting
    t2 = client.task.get(jid, "2")
    assert t1.execution_info.result == bm.TaskExecutionResult.failure
    assert t2.state == bm.TaskState.active, t2.execution_info
    assert t2.execution_info is None or t2.execution_info.start_time is None
    client.job.delete(jid)


# == 5. exit conditions =====================================================================

def test_exit_code_mapping_terminates_the_job(client, pool):
    """onTaskFailure=performexitoptionsjobaction and exitCodes [{code 3, jobAction
    terminate}]: the task's exit 3 terminates the job (completed, terminateReason
    TaskFailed), and the job's other running task is terminated with it."""
    jid = add_job(client, pool,
                  on_task_failure=bm.OnTaskFailure.perform_exit_options_job_action)
    client.task.add(jid, task("other", "/bin/sleep 30"))
    task_state(client, jid, "other", bm.TaskState.running)
    client.task.add(jid, task("three", "/bin/sh -c 'exit 3'", exit_conditions=bm.ExitConditions(
        exit_codes=[bm.ExitCodeMapping(code=3, exit_options=bm.ExitOptions(
            job_action=bm.JobAction.terminate))])))
    t = task_state(client, jid, "three")
    assert t.execution_info.exit_code == 3
    assert t.execution_info.failure_info.code == "FailureExitCode"
    j = job_state(client, jid, bm.JobState.completed)
    assert j.execution_info.terminate_reason == "TaskFailed"
    assert j.execution_info.end_time is not None
    other = task_state(client, jid, "other", timeout=10)
    assert other.execution_info.end_time is not None
    client.job.delete(jid)


def test_non_zero_exit_terminates_the_job_by_default(client, pool):
    """With onTaskFailure=performexitoptionsjobaction, the default jobAction for a
    non-zero exit (no exitConditions) is terminate: terminateReason TaskFailed."""
    jid = add_job(client, pool,
                  on_task_failure=bm.OnTaskFailure.perform_exit_options_job_action)
    client.task.add(jid, task("five", "/bin/sh -c 'exit 5'"))
    task_state(client, jid, "five")
    j = job_state(client, jid, bm.JobState.completed)
    assert j.execution_info.terminate_reason == "TaskFailed"
    client.job.delete(jid)


def test_failures_leave_the_job_active_without_a_job_action(client, pool):
    """onTaskFailure noaction (the default): a failed task does not end the job; with
    performexitoptionsjobaction, an exit code mapped to jobAction none does not either, and
    neither does a success."""
    plain = add_job(client, pool)
    client.task.add(plain, task("f", "/bin/sh -c 'exit 5'"))
    keep = add_job(client, pool,
                   on_task_failure=bm.OnTaskFailure.perform_exit_options_job_action)
    add_tasks(client, keep, [
        task("three", "/bin/sh -c 'exit 3'", exit_conditions=bm.ExitConditions(
            exit_codes=[bm.ExitCodeMapping(code=3, exit_options=bm.ExitOptions(
                job_action=bm.JobAction.none))])),
        task("ok", "/bin/true"),
    ])
    task_state(client, plain, "f")
    all_completed(client, keep, 2)
    time.sleep(0.6)   # a few lifecycle ticks
    assert client.job.get(plain).state == bm.JobState.active
    assert client.job.get(keep).state == bm.JobState.active
    client.job.delete(plain)
    client.job.delete(keep)


def test_disable_job_requeues_and_enable_resumes(client, pool, marks):
    """Job disable with disableTasks=requeue: its running task is stopped and requeued
    (active, requeueCount 1, lastRequeueTime set), nothing runs while the job is disabled;
    enable makes it run again to success."""
    jid = add_job(client, pool)
    client.task.add(jid, task("again", first_run_sleeps(marks, f"{jid}-again")))
    task_state(client, jid, "again", bm.TaskState.running)
    wait_first_run(marks, f"{jid}-again")
    raw = client.job.disable(jid, bm.DisableJobOption.requeue, raw=True)
    assert raw.response.status_code == 202
    job_state(client, jid, bm.JobState.disabled)
    t = task_state(client, jid, "again", bm.TaskState.active, timeout=10)
    assert t.execution_info.requeue_count == 1, t.execution_info
    assert t.execution_info.last_requeue_time is not None
    assert t.execution_info.retry_count == 0
    time.sleep(1)
    assert client.task.get(jid, "again").state == bm.TaskState.active
    client.job.enable(jid)
    t = task_state(client, jid, "again")
    assert t.execution_info.exit_code == 0, t.execution_info
    assert t.execution_info.requeue_count == 1 and t.execution_info.retry_count == 0
    assert b"second run" in read_task_file(client, jid, "again", "stdout.txt")
    client.job.delete(jid)


def test_higher_priority_jobs_are_scheduled_first(client, marks):
    """On a busy one-slot node, a task of a priority-100 job added after a task of a
    priority-0 job runs first once the slot frees up."""
    pid = add_pool(client, 1, 1)
    idle_nodes(client, pid, 1)
    blocker = add_job(client, pid)
    client.task.add(blocker, task("block", f"/bin/sh -c 'touch {marks}/{blocker}; sleep 1'"))
    wait_first_run(marks, blocker)
    low = add_job(client, pid, priority=0)
    client.task.add(low, task("low", "/bin/true"))
    high = add_job(client, pid, priority=100)
    client.task.add(high, task("high", "/bin/true"))
    lo = task_state(client, low, "low")
    hi = task_state(client, high, "high")
    assert hi.execution_info.start_time <= lo.execution_info.start_time, (
        hi.execution_info.start_time, lo.execution_info.start_time)
    for j in (blocker, low, high):
        client.job.delete(j)
    client.pool.delete(pid)


def test_exit_code_ranges_and_error_conditions_pick_the_job_action(client, pool, container):
    """With performexitoptionsjobaction the default for a failure is terminate, but a
    matching exitCodeRanges entry, preProcessingError (a resource file that cannot be
    downloaded) or fileUploadError (an output upload that fails) with jobAction none wins:
    the job stays active. A task whose upload fails completes as a failure although its
    command exited 0, without a retry."""
    cc, url = container
    base, sas = url.split("?", 1)
    missing = f"{cc.url.rsplit('/', 1)[0]}/{unique('nocontainer')}?{sas}"
    none = bm.ExitOptions(job_action=bm.JobAction.none)
    jid = add_job(client, pool,
                  on_task_failure=bm.OnTaskFailure.perform_exit_options_job_action)
    add_tasks(client, jid, [
        task("range", "/bin/sh -c 'exit 15'", exit_conditions=bm.ExitConditions(
            exit_code_ranges=[bm.ExitCodeRangeMapping(start=10, end=20, exit_options=none)])),
        task("pre", "/bin/true", exit_conditions=bm.ExitConditions(pre_processing_error=none),
             resource_files=[bm.ResourceFile(http_url=f"{base}/nothing-here?{sas}",
                                             file_path="x")]),
        task("upload", "/bin/sh -c 'echo x > result.txt'",
             exit_conditions=bm.ExitConditions(file_upload_error=none),
             constraints=bm.TaskConstraints(max_task_retry_count=2),
             output_files=[bm.OutputFile(
                 file_pattern="result.txt",
                 destination=bm.OutputFileDestination(
                     container=bm.OutputFileBlobContainerDestination(container_url=missing)),
                 upload_options=bm.OutputFileUploadOptions(
                     upload_condition=bm.OutputFileUploadCondition.task_completion))]),
    ])
    tasks = {t.id: t.execution_info for t in all_completed(client, jid, 3)}
    assert tasks["range"].exit_code == 15
    assert tasks["pre"].failure_info.code == "BlobNotFound", tasks["pre"].failure_info
    up = tasks["upload"]
    assert up.exit_code == 0, up
    assert up.result == bm.TaskExecutionResult.failure, up
    assert up.failure_info is not None and up.failure_info.category == bm.ErrorCategory.user_error
    assert up.retry_count == 0
    names = {f.name for f in client.file.list_from_task(jid, "upload")}
    assert "fileuploaderr.txt" in names or "fileuploadout.txt" in names, names
    time.sleep(0.6)
    j = client.job.get(jid)
    assert j.state == bm.JobState.active, (j.state, j.execution_info.terminate_reason)


def test_job_action_disable(client, pool):
    """exitCodes [{code 4, jobAction disable}]: the task's exit 4 disables the job."""
    jid = add_job(client, pool,
                  on_task_failure=bm.OnTaskFailure.perform_exit_options_job_action)
    client.task.add(jid, task("four", "/bin/sh -c 'exit 4'", exit_conditions=bm.ExitConditions(
        exit_codes=[bm.ExitCodeMapping(code=4, exit_options=bm.ExitOptions(
            job_action=bm.JobAction.disable))])))
    task_state(client, jid, "four")
    job_state(client, jid, bm.JobState.disabled)


# == 6. onAllTasksComplete ==================================================================

def test_on_all_tasks_complete_terminates_the_job(client, pool):
    """The recommended pattern: create the job with noaction, add the tasks, then switch
    onAllTasksComplete to terminatejob. The job stays active while tasks run and completes
    once they all have (terminateReason AllTasksComplete), failures included."""
    jid = add_job(client, pool)
    add_tasks(client, jid, [task("a", "/bin/sh -c 'sleep 1'"), task("b", "/bin/sh -c 'exit 1'")])
    client.job.patch(jid, bm.JobPatchParameter(
        on_all_tasks_complete=bm.OnAllTasksComplete.terminate_job))
    assert client.job.get(jid).state == bm.JobState.active   # "a" still sleeps
    j = job_state(client, jid, bm.JobState.completed)
    assert j.execution_info.terminate_reason == "AllTasksComplete"
    ends = [t.execution_info.end_time for t in client.task.list(jid)]
    assert all(t is not None for t in ends)
    assert j.execution_info.end_time >= max(ends)
    client.job.delete(jid)


# == 7. output files ========================================================================

def test_output_files_are_uploaded_by_condition(client, pool, container):
    """outputFiles to a container SAS URL: `out/**/*.txt` (tasksuccess) uploads every
    matching file under the virtual directory `path`, keeping the sub-directories below the
    pattern's fixed prefix; a single file goes to the exact blob name `path`; `../stdout.txt`
    uploads the task's stdout; a taskfailure file of a successful task is not uploaded.
    Uploads finish before the task is reported completed."""
    cc, url = container
    jid = add_job(client, pool)

    def out(pattern, path, cond):
        return bm.OutputFile(
            file_pattern=pattern,
            destination=bm.OutputFileDestination(
                container=bm.OutputFileBlobContainerDestination(container_url=url, path=path)),
            upload_options=bm.OutputFileUploadOptions(upload_condition=cond))

    cmd = ("/bin/sh -c 'mkdir -p out/sub && echo alpha > out/a.txt && echo beta > out/sub/b.txt"
           " && echo gamma > out/c.log && echo hello-stdout'")
    client.task.add(jid, task("writer", cmd, output_files=[
        out("out/**/*.txt", "results", bm.OutputFileUploadCondition.task_success),
        out("out/a.txt", "single/renamed.txt", bm.OutputFileUploadCondition.task_completion),
        out("../stdout.txt", "logs/writer-stdout.txt", bm.OutputFileUploadCondition.task_completion),
        out("out/a.txt", "failure-only/a.txt", bm.OutputFileUploadCondition.task_failure),
    ]))
    t = task_state(client, jid, "writer")
    assert t.execution_info.result == bm.TaskExecutionResult.success, t.execution_info.failure_info
    names = sorted(b.name for b in cc.list_blobs())
    assert names == ["logs/writer-stdout.txt", "results/a.txt", "results/sub/b.txt",
                     "single/renamed.txt"], names
    assert cc.download_blob("results/a.txt").readall() == b"alpha\n"
    assert cc.download_blob("results/sub/b.txt").readall() == b"beta\n"
    assert cc.download_blob("single/renamed.txt").readall() == b"alpha\n"
    assert b"hello-stdout" in cc.download_blob("logs/writer-stdout.txt").readall()
    client.job.delete(jid)


def test_output_files_of_a_failed_task(client, pool, container):
    """A task that exits 1: taskfailure and taskcompletion files are uploaded, tasksuccess
    files are not."""
    cc, url = container
    jid = add_job(client, pool)

    def out(pattern, path, cond):
        return bm.OutputFile(
            file_pattern=pattern,
            destination=bm.OutputFileDestination(
                container=bm.OutputFileBlobContainerDestination(container_url=url, path=path)),
            upload_options=bm.OutputFileUploadOptions(upload_condition=cond))

    client.task.add(jid, task("loser", "/bin/sh -c 'echo partial > part.txt; echo oops >&2; exit 1'",
                              output_files=[
        out("part.txt", "on-success/part.txt", bm.OutputFileUploadCondition.task_success),
        out("part.txt", "on-failure/part.txt", bm.OutputFileUploadCondition.task_failure),
        out("../std*.txt", "logs", bm.OutputFileUploadCondition.task_completion),
    ]))
    t = task_state(client, jid, "loser")
    assert t.execution_info.result == bm.TaskExecutionResult.failure
    assert t.execution_info.exit_code == 1
    names = sorted(b.name for b in cc.list_blobs())
    assert names == ["logs/stderr.txt", "logs/stdout.txt", "on-failure/part.txt"], names
    assert cc.download_blob("logs/stderr.txt").readall() == b"oops\n"
    client.job.delete(jid)


# == 8. resource files ======================================================================

def test_resource_files_are_downloaded_into_the_working_directory(client, pool, container):
    """httpUrl (a blob SAS URL) -> wd/{filePath}; storageContainerUrl + blobPrefix -> every
    blob under the prefix, its full name kept below filePath. The task sees them in its cwd."""
    cc, url = container
    cc.upload_blob("input.txt", b"resource-bytes\n")
    cc.upload_blob("pre/x.txt", b"x\n")
    cc.upload_blob("pre/sub/y.txt", b"y\n")
    cc.upload_blob("other.txt", b"other\n")
    base, sas = url.split("?", 1)
    jid = add_job(client, pool)
    client.task.add(jid, task(
        "reader", "/bin/sh -c 'cat in/data.txt; ls -R dl | sort'",
        resource_files=[bm.ResourceFile(http_url=f"{base}/input.txt?{sas}", file_path="in/data.txt"),
                        bm.ResourceFile(storage_container_url=url, blob_prefix="pre/",
                                        file_path="dl")]))
    t = task_state(client, jid, "reader")
    assert t.execution_info.exit_code == 0, t.execution_info.failure_info
    out = read_task_file(client, jid, "reader", "stdout.txt").decode()
    assert out.startswith("resource-bytes\n"), out
    files = {f.name for f in client.file.list_from_task(jid, "reader", recursive=True)
             if not f.is_directory}
    assert {"wd/in/data.txt", "wd/dl/pre/x.txt", "wd/dl/pre/sub/y.txt"} <= files, files
    assert not any(f.endswith("other.txt") for f in files), files
    client.job.delete(jid)


def test_resource_file_modes(client, pool, container):
    """fileMode (Linux, octal) sets the downloaded file's mode, so a script given 0755 runs
    as is. Without fileMode Azure applies 0770; Cobalt deliberately keeps the created mode
    (0644): its elevated start task runs as root and its non-admin tasks as `nobody`, which
    share no group, so a 0770 file copied by the start task (the tutorial's `cp -p`) would be
    unreadable by the tasks (see crates/cobalt-agent/src/resources.rs)."""
    cc, url = container
    cc.upload_blob("run.sh", b"#!/bin/sh\necho script-ran\n")
    cc.upload_blob("plain.txt", b"plain\n")
    base, sas = url.split("?", 1)
    jid = add_job(client, pool)
    client.task.add(jid, task(
        "modes", "/bin/sh -c './run.sh && stat -c %a run.sh plain.txt'",
        resource_files=[
            bm.ResourceFile(http_url=f"{base}/run.sh?{sas}", file_path="run.sh",
                            file_mode="0755"),
            bm.ResourceFile(http_url=f"{base}/plain.txt?{sas}", file_path="plain.txt")]))
    t = task_state(client, jid, "modes")
    assert t.execution_info.exit_code == 0, t.execution_info.failure_info
    assert read_task_file(client, jid, "modes", "stdout.txt").decode().split() == [
        "script-ran", "755", "644"]


def test_a_missing_resource_file_fails_the_task_without_running_it(client, pool, node_id,
                                                                  container):
    """An httpUrl that answers 404: the task completes as a failure with failureInfo
    {category usererror, code BlobNotFound}, no exitCode (the command never ran), and no
    retry although maxTaskRetryCount is 3 (pre-processing errors are not retried)."""
    cc, url = container
    base, sas = url.split("?", 1)
    jid = add_job(client, pool)
    marker = f"{jid}-ran"
    client.task.add(jid, task(
        "nofile", f"/bin/sh -c 'touch $AZ_BATCH_NODE_SHARED_DIR/{marker}'",
        resource_files=[bm.ResourceFile(http_url=f"{base}/does-not-exist.txt?{sas}",
                                        file_path="x.txt")],
        constraints=bm.TaskConstraints(max_task_retry_count=3)))
    t = task_state(client, jid, "nofile")
    ei = t.execution_info
    assert ei.result == bm.TaskExecutionResult.failure
    assert ei.failure_info is not None
    assert ei.failure_info.category == bm.ErrorCategory.user_error, ei.failure_info
    assert ei.failure_info.code == "BlobNotFound", ei.failure_info
    assert ei.exit_code is None, ei.exit_code
    assert ei.retry_count == 0
    time.sleep(0.5)
    assert client.task.get(jid, "nofile").execution_info.retry_count == 0
    expect_batch_error(lambda: read_node_file(client, pool, node_id, f"shared/{marker}"),
                       404, "FileNotFound")
    client.job.delete(jid)


# == 9. start task ==========================================================================

def test_successful_start_task_makes_the_node_idle(client, pool, node_id):
    """waitForSuccess and exit 0: the node is idle and startTaskInfo says completed,
    success, exitCode 0; its stdout is the node file startup/stdout.txt, and the start task
    gets the node's AZ_BATCH_* variables but not AZ_BATCH_JOB_ID/AZ_BATCH_TASK_ID."""
    n = client.compute_node.get(pool, node_id)
    assert n.state == bm.ComputeNodeState.idle
    si = n.start_task_info
    assert si is not None
    assert si.state == bm.StartTaskState.completed
    assert si.result == bm.TaskExecutionResult.success
    assert si.exit_code == 0 and si.retry_count == 0
    assert si.start_time <= si.end_time
    assert n.start_task.command_line == START_TASK
    out = read_node_file(client, pool, node_id, "startup/stdout.txt").decode()
    assert out.startswith("start-ok\n"), out
    env = env_of(out)
    assert env.get("AZ_BATCH_POOL_ID") == pool
    assert env.get("AZ_BATCH_NODE_ID") == node_id
    assert "AZ_BATCH_JOB_ID" not in env and "AZ_BATCH_TASK_ID" not in env, env
    assert env.get("AZ_BATCH_TASK_WORKING_DIR", "").endswith("/startup/wd"), env
    names = {f.name for f in client.file.list_from_compute_node(pool, node_id, recursive=True)}
    assert {"startup/stdout.txt", "startup/stderr.txt", "shared/boots"} <= names, names


def test_failing_start_task_with_wait_for_success(client):
    """A start task that exits 4 with waitForSuccess (one retry allowed): the node ends in
    starttaskfailed, startTaskInfo has exitCode 4, retryCount 1, result failure and a
    failureInfo; tasks of a job on that pool stay active."""
    pid = add_pool(client, 1, 1, start_task=bm.StartTask(
        command_line="/bin/sh -c 'echo failing; exit 4'", wait_for_success=True,
        max_task_retry_count=1))
    nid = wait_for(lambda: [n.id for n in client.compute_node.list(pid)], 10,
                   what="a node")[0]
    n = node_state(client, pid, nid, bm.ComputeNodeState.start_task_failed)
    si = n.start_task_info
    assert si.exit_code == 4
    assert si.retry_count == 1
    assert si.state == bm.StartTaskState.completed
    assert si.result == bm.TaskExecutionResult.failure
    jid = add_job(client, pid)
    client.task.add(jid, task("waits", "/bin/true"))
    time.sleep(1.5)
    t = client.task.get(jid, "waits")
    assert t.state == bm.TaskState.active, t.execution_info
    assert client.compute_node.get(pid, nid).state == bm.ComputeNodeState.start_task_failed
    # "failureInfo: set only if the task is in the completed state and encountered a failure"
    assert si.failure_info is not None and si.failure_info.code == "FailureExitCode", si
    assert si.failure_info.category == bm.ErrorCategory.user_error


def test_failing_start_task_without_wait_for_success(client):
    """Without waitForSuccess a failing start task does not hold the node: it becomes idle
    (startTaskInfo result failure, exitCode 5) and runs tasks."""
    pid = add_pool(client, 1, 1, start_task=bm.StartTask(
        command_line="/bin/sh -c 'exit 5'", wait_for_success=False))
    jid = add_job(client, pid)
    client.task.add(jid, task("runs", "/bin/true"))
    t = task_state(client, jid, "runs")
    assert t.execution_info.exit_code == 0
    n = wait_for(lambda: (lambda n: n if n.start_task_info and n.start_task_info.end_time
                          else None)(client.compute_node.get(pid, t.node_info.node_id)),
                 10, what="start task completed")
    assert n.state in (bm.ComputeNodeState.idle, bm.ComputeNodeState.running), n.state
    assert n.start_task_info.exit_code == 5
    assert n.start_task_info.result == bm.TaskExecutionResult.failure
    client.job.delete(jid)
    client.pool.delete(pid)


# == 10. environment and files ==============================================================

def test_task_environment_and_task_files(client, cobalt_batch, pool, node_id):
    """A task prints its environment: AZ_BATCH_JOB_ID/TASK_ID/POOL_ID/NODE_ID, a working
    directory ending in /wd (its cwd), the node's shared directory, the job's
    commonEnvironmentSettings and the task's environmentSettings (which win on a clash).
    The Task Files API lists stdout.txt, stderr.txt and wd/... (recursive), reads a byte
    range (ocp-range), and answers HEAD with the file's properties."""
    jid = add_job(client, pool, common_environment_settings=[
        bm.EnvironmentSetting(name="JOB_VAR", value="from-job"),
        bm.EnvironmentSetting(name="CLASH", value="job")])
    client.task.add(jid, task(
        "env", "/bin/sh -c 'env | sort; echo PWD_IS=$(pwd); mkdir -p made/deeper; "
               "echo data > made/deeper/file.txt; echo to-stderr >&2'",
        environment_settings=[bm.EnvironmentSetting(name="TASK_VAR", value="from task"),
                              bm.EnvironmentSetting(name="CLASH", value="task")]))
    t = task_state(client, jid, "env")
    assert t.execution_info.exit_code == 0
    assert t.node_info.node_id == node_id and t.node_info.pool_id == pool
    # The node's URLs name the server as this client reaches it.
    node_url = f"{cobalt_batch}/pools/{pool}/nodes/{node_id}"
    assert t.node_info.node_url == node_url
    assert t.node_info.task_root_directory_url == f"{node_url}/files/{t.node_info.task_root_directory}"
    assert t.node_info.affinity_id == f"TVM:{node_id}"
    out = read_task_file(client, jid, "env", "stdout.txt")
    env = env_of(out.decode())
    assert env["AZ_BATCH_JOB_ID"] == jid
    assert env["AZ_BATCH_TASK_ID"] == "env"
    assert env["AZ_BATCH_POOL_ID"] == pool
    assert env["AZ_BATCH_NODE_ID"] == node_id
    assert env["AZ_BATCH_ACCOUNT_NAME"] == BATCH_ACCOUNT
    assert env["AZ_BATCH_NODE_IS_DEDICATED"] == "true"
    wd = env["AZ_BATCH_TASK_WORKING_DIR"]
    assert wd.endswith("/wd") and wd == env["AZ_BATCH_TASK_DIR"] + "/wd", env
    assert env["PWD_IS"] == wd
    root = env["AZ_BATCH_NODE_ROOT_DIR"]
    assert env["AZ_BATCH_NODE_SHARED_DIR"] == root + "/shared"
    assert env["AZ_BATCH_NODE_STARTUP_DIR"] == root + "/startup"
    assert env["AZ_BATCH_TASK_DIR"].startswith(root + "/")
    assert env["AZ_BATCH_TASK_DIR"].endswith("/" + t.node_info.task_root_directory), (
        env["AZ_BATCH_TASK_DIR"], t.node_info.task_root_directory)
    assert env["JOB_VAR"] == "from-job"
    assert env["TASK_VAR"] == "from task"
    assert env["CLASH"] == "task"
    # The machine's variables, but none of the server's or the agent's secrets.
    assert env["PATH"] == os.environ["PATH"]
    assert "COBALT_AGENT_TOKEN" not in env and "COBALT_AGENT_PARENT" not in env, env
    assert SERVER_SECRET not in env, env

    files = {f.name: f for f in client.file.list_from_task(jid, "env", recursive=True)}
    assert {"stdout.txt", "stderr.txt", "wd", "wd/made", "wd/made/deeper",
            "wd/made/deeper/file.txt"} <= set(files), sorted(files)
    assert files["wd"].is_directory and not files["stdout.txt"].is_directory
    assert files["stdout.txt"].properties.content_length == len(out)
    assert files["wd/made/deeper/file.txt"].properties.content_length == 5
    # "The file mode is returned only for files on Linux Compute Nodes" (octal).
    assert files["stdout.txt"].properties.file_mode, files["stdout.txt"].properties
    top = {f.name for f in client.file.list_from_task(jid, "env", recursive=False)}
    assert {"stdout.txt", "stderr.txt", "wd"} <= top and "wd/made" not in top, top

    assert read_task_file(client, jid, "env", "stderr.txt") == b"to-stderr\n"
    assert read_task_file(client, jid, "env", "wd/made/deeper/file.txt") == b"data\n"
    assert read_task_file(client, jid, "env", "stdout.txt", ocp_range="bytes=0-9") == out[:10]
    assert read_task_file(client, jid, "env", "stdout.txt", ocp_range="bytes=5-") == out[5:]

    raw = client.file.get_properties_from_task(jid, "env", "stdout.txt", raw=True)
    assert raw.response.status_code == 200
    assert int(raw.headers["Content-Length"]) == len(out)
    assert raw.headers["ocp-batch-file-isdirectory"] is False
    assert raw.headers["ocp-batch-file-url"].endswith("/files/stdout.txt"), raw.headers
    assert raw.headers["Last-Modified"] is not None
    assert raw.headers["ocp-batch-file-mode"], raw.headers
    expect_batch_error(lambda: read_task_file(client, jid, "env", "nope.txt"), 404,
                       "FileNotFound")

    # The same files through the node: workitems/{job}/job-1/{task}/...
    tdir = t.node_info.task_root_directory
    assert read_node_file(client, pool, node_id, f"{tdir}/stdout.txt") == out
    # Delete a task file: 200, then it is gone.
    raw = client.file.delete_from_task(jid, "env", "wd/made/deeper/file.txt", raw=True)
    assert raw.response.status_code == 200
    expect_batch_error(lambda: read_task_file(client, jid, "env", "wd/made/deeper/file.txt"),
                       404, "FileNotFound")
    client.job.delete(jid)


def test_task_files_while_the_task_runs(client, pool):
    """stdout.txt can be read while the task is still running."""
    jid = add_job(client, pool)
    client.task.add(jid, task("talker", "/bin/sh -c 'echo early; exec /bin/sleep 30'"))
    task_state(client, jid, "talker", bm.TaskState.running)
    def stdout():
        try:
            return read_task_file(client, jid, "talker", "stdout.txt")
        except bm.BatchErrorException as e:   # `running` includes the moments before launch
            assert e.response.status_code == 404, e.response.text
            return None
    got = wait_for(stdout, 10, what="stdout of a running task")
    assert got == b"early\n"
    client.task.terminate(jid, "talker")
    task_state(client, jid, "talker")
    client.job.delete(jid)


@pytest.mark.needs_own_server
def test_user_identities_on_a_reachable_data_dir():
    """On a server whose node directories other users can reach (like the tutorial's), a
    task without userIdentity runs as the non-administrative auto-user (not root), can write
    its working directory and the node's shared directory (read/write for all tasks); an
    autoUser with elevationLevel admin runs with full permissions (root here)."""
    root = Path(tempfile.mkdtemp(prefix="cobalt-users-"))
    root.chmod(0o755)
    server = CobaltServer(cobalt_binary(), root / "data", root)
    server.start()
    try:
        c = make_client(server.batch_url)
        pid = add_pool(c, 1, 2, track=False)
        idle_nodes(c, pid, 1)
        jid = add_job(c, pid, track=False)
        admin = bm.UserIdentity(auto_user=bm.AutoUserSpecification(
            scope=bm.AutoUserScope.task, elevation_level=bm.ElevationLevel.admin))
        add_tasks(c, jid, [
            task("plain", "/bin/sh -c 'id -u; echo mine > own.txt; cat own.txt; "
                          "echo shared > $AZ_BATCH_NODE_SHARED_DIR/plain.txt && echo wrote-shared'"),
            task("admin", "/bin/sh -c 'id -u'", user_identity=admin),
        ])
        tasks = {t.id: t for t in all_completed(c, jid, 2)}
        for t in tasks.values():
            assert t.execution_info.exit_code == 0, (t.id, t.execution_info.failure_info)
        plain = read_task_file(c, jid, "plain", "stdout.txt").decode().split()
        assert plain[0] != "0", f"a non-admin task ran as root: {plain}"
        assert plain[1:] == ["mine", "wrote-shared"], plain
        assert read_task_file(c, jid, "admin", "stdout.txt").decode().split() == ["0"]
    finally:
        server.terminate(grace=10)


def test_job_preparation_and_release_tasks(client, pool, node_id, marks):
    """A job preparation task runs once on the node before the job's first task there; the
    job's tasks see AZ_BATCH_JOB_PREP_DIR (.../jobpreparation) and
    AZ_BATCH_JOB_PREP_WORKING_DIR (its wd); the status list shows the preparation completed
    (exit 0, success) and, after the job is terminated, the release task completed too."""
    tag = unique("prep")
    jid = add_job(client, pool,
                  job_preparation_task=bm.JobPreparationTask(
                      command_line=f"/bin/sh -c 'echo prepared >> {marks}/{tag}.prep'"),
                  job_release_task=bm.JobReleaseTask(
                      command_line=f"/bin/sh -c 'echo released >> {marks}/{tag}.rel'"))
    show = (f"/bin/sh -c 'cat {marks}/{tag}.prep; echo PREP=$AZ_BATCH_JOB_PREP_DIR; "
            f"echo PREPWD=$AZ_BATCH_JOB_PREP_WORKING_DIR'")
    add_tasks(client, jid, [task("p1", show), task("p2", show)])
    all_completed(client, jid, 2)
    out = read_task_file(client, jid, "p1", "stdout.txt").decode()
    assert out.startswith("prepared\n"), out
    env = env_of(out)
    assert env["PREP"].endswith("/jobpreparation"), env
    assert env["PREPWD"] == env["PREP"] + "/wd", env
    assert (marks / f"{tag}.prep").read_text() == "prepared\n"   # once per node
    assert not (marks / f"{tag}.rel").exists(), "release ran before the job ended"

    status = list(client.job.list_preparation_and_release_task_status(jid))
    assert [(s.pool_id, s.node_id) for s in status] == [(pool, node_id)], status
    prep = status[0].job_preparation_task_execution_info
    assert prep.state == bm.JobPreparationTaskState.completed
    assert (prep.exit_code, prep.retry_count) == (0, 0)
    assert prep.result == bm.TaskExecutionResult.success
    assert prep.start_time <= prep.end_time

    client.job.terminate(jid)
    job_state(client, jid, bm.JobState.completed)
    assert (marks / f"{tag}.rel").read_text() == "released\n"
    rel = list(client.job.list_preparation_and_release_task_status(jid))[0] \
        .job_release_task_execution_info
    assert rel is not None and rel.state == bm.JobReleaseTaskState.completed, rel
    assert rel.exit_code == 0 and rel.result == bm.TaskExecutionResult.success


def test_a_failed_job_preparation_task_holds_the_job_tasks(client, pool, node_id):
    """A preparation task that exits 3 (waitForSuccess, the default): the job's task does
    not run on that node (it stays active) and the status list shows the failure."""
    jid = add_job(client, pool, job_preparation_task=bm.JobPreparationTask(
        command_line="/bin/sh -c 'exit 3'"))
    client.task.add(jid, task("held", "/bin/true"))
    prep = wait_for(lambda: next((s.job_preparation_task_execution_info for s in
                                  client.job.list_preparation_and_release_task_status(jid)
                                  if s.job_preparation_task_execution_info and
                                  s.job_preparation_task_execution_info.state ==
                                  bm.JobPreparationTaskState.completed), None),
                    10, what="the preparation task completed")
    assert prep.exit_code == 3
    assert prep.result == bm.TaskExecutionResult.failure
    time.sleep(1)
    t = client.task.get(jid, "held")
    assert t.state == bm.TaskState.active, (t.state, t.execution_info)
    # "failureInfo: set only if the task is in the completed state and encountered a failure"
    assert prep.failure_info is not None and prep.failure_info.code == "FailureExitCode", prep


# == 11. task slots =========================================================================

def test_task_slots_limit_concurrency(client):
    """taskSlotsPerNode=2 on one node: four short tasks run at most two at a time (and do
    run two at a time); tasks with requiredSlots=2 run one at a time; a job's
    maxParallelTasks=1 runs its tasks one at a time. The node counts its runs and lists its
    recent tasks."""
    pid = add_pool(client, 1, 2)
    nid = idle_nodes(client, pid, 1)[0].id
    jid = add_job(client, pid)
    add_tasks(client, jid, [task(f"s{i}", "/bin/sh -c 'sleep 0.5'") for i in range(4)])
    seen = 0
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        n = client.compute_node.get(pid, nid)
        assert n.running_tasks_count <= 2 and n.running_task_slots_count <= 2, n
        seen = max(seen, n.running_tasks_count)
        if all(t.state == bm.TaskState.completed for t in client.task.list(jid)):
            break
        time.sleep(0.1)
    tasks = all_completed(client, jid, 4)
    assert seen == 2, f"runningTasksCount never reached 2 (max {seen})"
    assert max_overlap(tasks) == 2, [(t.id, t.execution_info.start_time,
                                      t.execution_info.end_time) for t in tasks]

    jid2 = add_job(client, pid)
    add_tasks(client, jid2, [task(f"w{i}", "/bin/sh -c 'sleep 0.5'", required_slots=2)
                             for i in range(2)])
    wide = all_completed(client, jid2, 2)
    assert all(t.required_slots == 2 for t in wide)
    assert max_overlap(wide) == 1, [(t.id, t.execution_info.start_time,
                                     t.execution_info.end_time) for t in wide]
    # A job's maxParallelTasks caps its running tasks below the node's slots.
    jid3 = add_job(client, pid, max_parallel_tasks=1)
    add_tasks(client, jid3, [task(f"p{i}", "/bin/sh -c 'sleep 0.3'") for i in range(3)])
    serial = all_completed(client, jid3, 3)
    assert max_overlap(serial) == 1, [(t.id, t.execution_info.start_time,
                                       t.execution_info.end_time) for t in serial]
    n = client.compute_node.get(pid, nid)
    assert n.total_tasks_run == 9 and n.total_tasks_succeeded == 9, (
        n.total_tasks_run, n.total_tasks_succeeded)
    recent = {(r.job_id, r.task_id): r for r in (n.recent_tasks or [])}
    assert (jid3, "p2") in recent, sorted(recent)
    assert recent[(jid3, "p2")].task_state == bm.TaskState.completed
    assert recent[(jid3, "p2")].task_url.endswith(f"/jobs/{jid3}/tasks/p2")
    for j in (jid, jid2, jid3):
        client.job.delete(j)
    client.pool.delete(pid)


def test_a_stream_of_quick_tasks_runs_each_task_once(client):
    """Two nodes with four slots each and 400 quick tasks: their runs end in a stream, whose
    ends the server writes in batches while the nodes go on with the tasks behind them.
    Every task completes once, at its first try, and the nodes counted exactly one run per
    task (a task whose end is not written yet is not placed again)."""
    pid = add_pool(client, 2, 4)
    idle_nodes(client, pid, 2)
    jid = add_job(client, pid)
    add_tasks(client, jid, [task(f"q{i:03d}", "/bin/true") for i in range(400)])
    tasks = all_completed(client, jid, 400)
    again = [(t.id, t.execution_info.retry_count, t.execution_info.requeue_count)
             for t in tasks if t.execution_info.retry_count or t.execution_info.requeue_count]
    assert not again, again
    assert all(t.execution_info.result == bm.TaskExecutionResult.success for t in tasks)
    nodes = list(client.compute_node.list(pid))
    assert sum(n.total_tasks_run for n in nodes) == 400, [
        (n.id, n.total_tasks_run) for n in nodes]
    assert sum(n.total_tasks_succeeded for n in nodes) == 400
    client.job.delete(jid)
    client.pool.delete(pid)


# == 12. node operations ====================================================================

def test_disable_and_enable_scheduling(client, marks):
    """disableScheduling (default requeue) on a node running a task: the task is requeued
    (back to active), the node goes offline with schedulingState disabled, and new tasks
    wait; enableScheduling makes it schedulable again and both tasks complete."""
    pid = add_pool(client, 1, 1)
    nid = idle_nodes(client, pid, 1)[0].id
    jid = add_job(client, pid)
    client.task.add(jid, task("first", first_run_sleeps(marks, f"{jid}-first")))
    task_state(client, jid, "first", bm.TaskState.running)
    wait_first_run(marks, f"{jid}-first")
    raw = client.compute_node.disable_scheduling(pid, nid, raw=True)
    assert raw.response.status_code == 200
    n = node_state(client, pid, nid, bm.ComputeNodeState.offline, timeout=10)
    assert n.scheduling_state == bm.SchedulingState.disabled
    t = task_state(client, jid, "first", bm.TaskState.active, timeout=10)
    assert t.execution_info.retry_count == 0
    client.task.add(jid, task("second", "/bin/true"))
    time.sleep(1.5)
    assert client.task.get(jid, "second").state == bm.TaskState.active
    assert client.task.get(jid, "first").state == bm.TaskState.active
    assert client.compute_node.get(pid, nid).state == bm.ComputeNodeState.offline

    raw = client.compute_node.enable_scheduling(pid, nid, raw=True)
    assert raw.response.status_code == 200
    assert client.compute_node.get(pid, nid).scheduling_state == bm.SchedulingState.enabled
    for t in all_completed(client, jid, 2):
        assert t.execution_info.exit_code == 0, (t.id, t.execution_info)
        assert t.execution_info.retry_count == 0
    assert b"second run" in read_task_file(client, jid, "first", "stdout.txt")
    node_state(client, pid, nid, bm.ComputeNodeState.idle)
    client.job.delete(jid)
    client.pool.delete(pid)


def test_disable_scheduling_with_task_completion(client):
    """disableScheduling taskcompletion: the running task finishes normally, then the node
    is offline."""
    pid = add_pool(client, 1, 1)
    nid = idle_nodes(client, pid, 1)[0].id
    jid = add_job(client, pid)
    client.task.add(jid, task("finish", "/bin/sh -c 'sleep 1; echo finished'"))
    task_state(client, jid, "finish", bm.TaskState.running)
    client.compute_node.disable_scheduling(
        pid, nid, bm.DisableComputeNodeSchedulingOption.task_completion)
    t = task_state(client, jid, "finish")
    assert t.execution_info.exit_code == 0 and t.execution_info.requeue_count == 0
    n = node_state(client, pid, nid, bm.ComputeNodeState.offline, timeout=10)
    assert n.scheduling_state == bm.SchedulingState.disabled
    client.job.delete(jid)
    client.pool.delete(pid)


def test_reboot_reruns_the_start_task_and_requeues(client, marks):
    """reboot (default requeue) of a node running a task: 202; the node reboots (rebooting
    -> idle), its start task runs again (new startTime, a second line in shared/boots, the
    node's disk being kept), and the requeued task completes afterwards without a retry."""
    pid = add_pool(client, 1, 1, start_task=bm.StartTask(command_line=START_TASK,
                                                         wait_for_success=True))
    n0 = idle_nodes(client, pid, 1)[0]
    nid = n0.id
    jid = add_job(client, pid)
    client.task.add(jid, task("busy", first_run_sleeps(marks, f"{jid}-busy")))
    task_state(client, jid, "busy", bm.TaskState.running)
    wait_first_run(marks, f"{jid}-busy")
    raw = client.compute_node.reboot(pid, nid, raw=True)
    assert raw.response.status_code == 202
    # Once the reboot is accepted the node is rebooting (or, local reboots being quick,
    # already back with a new lastBootTime) - never the pre-reboot node.
    after = client.compute_node.get(pid, nid)
    assert after.state in (bm.ComputeNodeState.rebooting, bm.ComputeNodeState.starting,
                           bm.ComputeNodeState.waiting_for_start_task) or (
        after.last_boot_time is not None and after.last_boot_time > n0.last_boot_time), (
        f"right after reboot (202) the node is {after.state} with lastBootTime "
        f"{after.last_boot_time} (before: {n0.last_boot_time})")
    t = task_state(client, jid, "busy")
    assert t.execution_info.exit_code == 0, t.execution_info
    assert t.execution_info.retry_count == 0
    assert b"second run" in read_task_file(client, jid, "busy", "stdout.txt")
    n = node_state(client, pid, nid, bm.ComputeNodeState.idle)
    assert n.start_task_info.start_time > n0.start_task_info.start_time
    assert n.start_task_info.result == bm.TaskExecutionResult.success
    assert n.last_boot_time > n0.last_boot_time
    boots = read_node_file(client, pid, nid, "shared/boots").decode().split()
    assert boots == ["boot", "boot"], boots
    client.job.delete(jid)
    client.pool.delete(pid)


@pytest.mark.parametrize("option", ["terminate", "taskcompletion"])
def test_reboot_options(client, marks, option):
    """reboot with nodeRebootOption terminate: the running task is completed at once as a
    failure (TaskEnded), not requeued, and the node restarts. With taskcompletion: the task
    runs to its end (exit 0, not requeued) and the node restarts only then (its
    lastBootTime is after the task's endTime)."""
    pid = add_pool(client, 1, 1)
    n0 = idle_nodes(client, pid, 1)[0]
    jid = add_job(client, pid)
    client.task.add(jid, task("t", f"/bin/sh -c 'touch {marks}/{pid}; sleep 2'"))
    wait_first_run(marks, pid)
    client.compute_node.reboot(pid, n0.id, option)
    t = task_state(client, jid, "t", timeout=10)
    ei = t.execution_info
    assert ei.requeue_count == 0 and ei.retry_count == 0, ei
    if option == "terminate":
        assert ei.result == bm.TaskExecutionResult.failure
        assert ei.failure_info is not None and ei.failure_info.code == "TaskEnded", ei
        assert (ei.end_time - ei.start_time).total_seconds() < 1.5, ei
    else:
        assert ei.exit_code == 0 and ei.result == bm.TaskExecutionResult.success, ei
    n = wait_for(lambda: (lambda n: n if n.state == bm.ComputeNodeState.idle and
                          n.last_boot_time > n0.last_boot_time else None)(
        client.compute_node.get(pid, n0.id)), TIMEOUT, what="node rebooted and idle")
    if option == "taskcompletion":
        assert n.last_boot_time >= ei.end_time, (
            f"the node rebooted at {n.last_boot_time}, before its task ended at {ei.end_time}")


def test_reimage_wipes_the_node_and_reruns_the_start_task(client):
    """reimage -> 202: the node comes back idle with a fresh disk (the shared directory's
    file from the first boot is gone) after running its start task again."""
    pid = add_pool(client, 1, 1, start_task=bm.StartTask(command_line=START_TASK,
                                                         wait_for_success=True))
    n0 = idle_nodes(client, pid, 1)[0]
    assert read_node_file(client, pid, n0.id, "shared/boots") == b"boot\n"
    raw = client.compute_node.reimage(pid, n0.id, raw=True)
    assert raw.response.status_code == 202
    n = wait_for(lambda: (lambda n: n if n.state == bm.ComputeNodeState.idle and
                          n.start_task_info.start_time > n0.start_task_info.start_time
                          else None)(client.compute_node.get(pid, n0.id)), TIMEOUT,
                 what="node reimaged and idle")
    assert n.start_task_info.result == bm.TaskExecutionResult.success
    assert read_node_file(client, pid, n0.id, "shared/boots") == b"boot\n"


def test_remove_nodes_requeues_their_tasks(client, marks):
    """remove_nodes (default nodeDeallocationOption requeue) of the node running a task:
    202; the pool shrinks to one node (target and current), the removed node disappears,
    and the task is requeued (requeueCount 1, no retry) and completes on the other node."""
    pid = add_pool(client, 2, 1)
    idle_nodes(client, pid, 2)
    jid = add_job(client, pid)
    client.task.add(jid, task("moved", first_run_sleeps(marks, f"{jid}-moved")))
    t = task_state(client, jid, "moved", bm.TaskState.running)
    wait_first_run(marks, f"{jid}-moved")
    victim = t.node_info.node_id
    raw = client.pool.remove_nodes(pid, bm.NodeRemoveParameter(node_list=[victim]), raw=True)
    assert raw.response.status_code == 202
    p = client.pool.get(pid)
    assert p.target_dedicated_nodes == 1
    t = task_state(client, jid, "moved")
    ei = t.execution_info
    assert ei.exit_code == 0, ei
    assert t.node_info.node_id != victim
    assert ei.requeue_count == 1 and ei.last_requeue_time is not None, ei
    assert ei.retry_count == 0
    nodes = idle_nodes(client, pid, 1)
    assert nodes[0].id != victim
    p = wait_for(lambda: (lambda p: p if p.allocation_state == bm.AllocationState.steady
                          else None)(client.pool.get(pid)), TIMEOUT, what="pool steady")
    assert (p.target_dedicated_nodes, p.current_dedicated_nodes) == (1, 1)
    expect_batch_error(lambda: client.compute_node.get(pid, victim), 404, "NodeNotFound")
    client.job.delete(jid)
    client.pool.delete(pid)


def test_remove_nodes_with_terminate(client, marks):
    """remove_nodes with nodeDeallocationOption terminate: the node's running task is
    terminated (completed as a failure, not requeued) and the node goes away."""
    pid = add_pool(client, 1, 1)
    nid = idle_nodes(client, pid, 1)[0].id
    jid = add_job(client, pid)
    client.task.add(jid, task("killed", f"/bin/sh -c 'touch {marks}/{pid}.k; sleep 30'"))
    wait_first_run(marks, f"{pid}.k")
    client.pool.remove_nodes(pid, bm.NodeRemoveParameter(
        node_list=[nid], node_deallocation_option=bm.ComputeNodeDeallocationOption.terminate))
    t = task_state(client, jid, "killed", timeout=10)
    ei = t.execution_info
    assert ei.result == bm.TaskExecutionResult.failure and ei.failure_info is not None, ei
    assert ei.requeue_count == 0 and ei.retry_count == 0, ei
    wait_for(lambda: list(client.compute_node.list(pid)) == [], 10, what="node removed")


@pytest.mark.parametrize("how", ["remove_nodes", "resize"])
def test_task_completion_lets_the_running_task_finish(client, marks, how):
    """nodeDeallocationOption taskcompletion (remove_nodes, or a resize down): "allow
    currently running tasks to complete; remove nodes when all tasks have completed". The
    running task finishes normally (exit 0, never requeued) and only then does its node go
    away; the pool ends steady with no node."""
    pid = add_pool(client, 1, 1)
    nid = idle_nodes(client, pid, 1)[0].id
    jid = add_job(client, pid)
    client.task.add(jid, task("finishes", f"/bin/sh -c 'touch {marks}/{pid}.f; sleep 2'"))
    wait_first_run(marks, f"{pid}.f")
    option = bm.ComputeNodeDeallocationOption.task_completion
    if how == "resize":
        client.pool.resize(pid, bm.PoolResizeParameter(target_dedicated_nodes=0,
                                                       node_deallocation_option=option))
    else:
        client.pool.remove_nodes(pid, bm.NodeRemoveParameter(node_list=[nid],
                                                             node_deallocation_option=option))
    time.sleep(0.5)
    t = client.task.get(jid, "finishes")
    assert t.state == bm.TaskState.running, (t.state, t.execution_info)
    assert [n.id for n in client.compute_node.list(pid)] == [nid], "node gone before its task"
    t = task_state(client, jid, "finishes", timeout=10)
    assert t.execution_info.exit_code == 0, t.execution_info
    assert t.execution_info.requeue_count == 0
    p = wait_for(lambda: (lambda p: p if p.allocation_state == bm.AllocationState.steady
                          and p.current_dedicated_nodes == 0 else None)(client.pool.get(pid)),
                 TIMEOUT, what="pool at 0 nodes")
    assert p.target_dedicated_nodes == 0
    assert list(client.compute_node.list(pid)) == []


def test_retention_time_removes_the_task_directory(client, pool, node_id):
    """constraints.retentionTime PT2S: the task's directory on the node is removed a couple
    of seconds after the task completes (the task itself stays)."""
    jid = add_job(client, pool)
    client.task.add(jid, task("brief", "/bin/sh -c 'echo short-lived'",
                              constraints=bm.TaskConstraints(
                                  retention_time=dt.timedelta(seconds=2))))
    t = task_state(client, jid, "brief")
    tdir = t.node_info.task_root_directory
    assert read_node_file(client, pool, node_id, f"{tdir}/stdout.txt") == b"short-lived\n"

    def gone():
        names = {f.name for f in client.file.list_from_compute_node(pool, node_id,
                                                                    recursive=True)}
        return not any(n == tdir or n.startswith(tdir + "/") for n in names)
    wait_for(gone, 15, 0.25, what="the task directory removed after its retention time")
    assert client.task.get(jid, "brief").state == bm.TaskState.completed


# == 13. node loss ==========================================================================

@pytest.mark.needs_own_server
def test_a_lost_node_is_replaced_and_its_task_requeued(client, cobalt_server, marks):
    """kill -9 of a node's agent while its task runs: the task goes back to active without
    counting a retry or a (user) requeue, runs again on the replacement node and completes;
    the pool gets back to its target of one idle node."""
    pid = add_pool(client, 1, 1)
    nid = idle_nodes(client, pid, 1)[0].id
    jid = add_job(client, pid)
    client.task.add(jid, task("survivor", first_run_sleeps(marks, f"{jid}-survivor")))
    task_state(client, jid, "survivor", bm.TaskState.running)
    wait_first_run(marks, f"{jid}-survivor")
    agents = agent_pids(cobalt_server.pid)
    assert nid in agents, (nid, agents)
    os.kill(agents[nid], signal.SIGKILL)

    t = task_state(client, jid, "survivor")
    ei = t.execution_info
    assert ei.exit_code == 0, ei
    assert ei.result == bm.TaskExecutionResult.success
    assert ei.retry_count == 0 and ei.requeue_count == 0, ei
    assert t.node_info.node_id != nid
    assert b"second run" in read_task_file(client, jid, "survivor", "stdout.txt")
    # The first run's process died with its agent: it does not go on, orphaned, on this
    # machine while the task runs again elsewhere.
    first = int((marks / f"{jid}-survivor.pid").read_text())
    wait_for(lambda: not Path(f"/proc/{first}").exists()
             or "State:\tZ" in Path(f"/proc/{first}/status").read_text(errors="replace"),
             10, what="the first run's process gone")
    nodes = idle_nodes(client, pid, 1)
    assert nodes[0].id != nid
    p = client.pool.get(pid)
    assert (p.target_dedicated_nodes, p.current_dedicated_nodes) == (1, 1)
    client.job.delete(jid)
    client.pool.delete(pid)


# == 14. server crash =======================================================================

@pytest.mark.needs_own_server
def test_server_kill_9_mid_job_loses_no_task(cobalt_factory):
    """20 half-second tasks on 2 nodes x 2 slots; kill -9 of the server while some run; a
    restart on the same data directory finishes every task successfully (none lost, no
    retry counted), the old agents are gone, and the pool gets its two nodes again."""
    server = cobalt_factory("nodes-crash")
    server.start()
    c = make_client(server.batch_url)
    pid = add_pool(c, 2, 2, track=False)     # the server goes away with the test
    idle_nodes(c, pid, 2)
    jid = add_job(c, pid, track=False)
    add_tasks(c, jid, [task(f"c{i:02d}", "/bin/sh -c 'sleep 0.5; echo done'") for i in range(20)])

    def some_done_some_running():
        tasks = list(c.task.list(jid))
        done = sum(t.state == bm.TaskState.completed for t in tasks)
        running = sum(t.state == bm.TaskState.running for t in tasks)
        return done >= 2 and running >= 1
    wait_for(some_done_some_running, TIMEOUT, 0.05, what="a job half done")
    old_agents = agent_pids(server.pid)
    assert len(old_agents) == 2, old_agents
    server.kill9()
    wait_for(lambda: not any(alive(p) for p in old_agents.values()), 10,
             what="the old agents exit with their server")

    server.start()
    c = make_client(server.batch_url)
    tasks = all_completed(c, jid, 20)
    bad = [(t.id, t.execution_info.exit_code, t.execution_info.failure_info) for t in tasks
           if t.execution_info.result != bm.TaskExecutionResult.success]
    assert not bad, bad
    assert all(t.execution_info.retry_count == 0 for t in tasks)
    counts = c.job.get_task_counts(jid)
    assert (counts.task_counts.completed, counts.task_counts.succeeded) == (20, 20)
    nodes = idle_nodes(c, pid, 2)
    p = c.pool.get(pid)
    assert (p.target_dedicated_nodes, p.current_dedicated_nodes) == (2, 2)
    assert len(agent_pids(server.pid)) == 2
    assert all(n.state == bm.ComputeNodeState.idle for n in nodes)
