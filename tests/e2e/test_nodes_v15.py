"""Compute nodes and the scheduler end to end with azure-batch 15.1.0 (azure-core generation,
api-version 2025-06-01, `BatchClient`) and azure-storage-blob 12.31.1 for the blob side,
against the real `cobalt` binary and its local node agents, including the SDK's
long-running-operation wrappers of node operations (begin_reboot_node, begin_remove_nodes,
begin_disable_job/begin_enable_job). Run with .venv/batch-15 (see run.sh).

Same behaviours as test_nodes_v14.py, through the current schema (`onTaskFailure` and
`onAllTasksComplete` as task_failure_mode / all_tasks_complete_mode, `BatchNodeRemoveOptions
.node_ids`, `upload_options` of type OutputFileUploadConfiguration...), each asserting what
Azure Batch documents (shared/reference/azure-batch-model.md sections 2.3-2.4, batch-rest.md
sections 8 and 11). 15.x raises azure-core exceptions: 404 -> ResourceNotFoundError, 409 ->
ResourceExistsError.
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
from azure.batch import BatchClient
from azure.batch import models as bm
from azure.core.credentials import AzureNamedKeyCredential
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.batch.models._models import (  # not re-exported by 15.1.0
    BatchJobTerminateOptions, BatchNodeRebootOptions)
from azure.storage.blob import (BlobServiceClient, ContainerSasPermissions,
                                generate_container_sas)

from e2e_support import ACCOUNT, BATCH_ACCOUNT, BATCH_KEY, KEY, SERVER_SECRET, unique, wait_for

VM_SIZE = "standard_d2s_v3"
UTC = dt.timezone.utc
TIMEOUT = 30      # the longest any single wait here may take
POLL = 1          # polling_interval (s) of the begin_* pollers (SDK default: 5)


# == helpers ================================================================================

def make_client(url: str) -> BatchClient:
    # retry_total=0: an unexpected 5xx fails the test now instead of after 10 retries.
    return BatchClient(url, AzureNamedKeyCredential(BATCH_ACCOUNT, BATCH_KEY), retry_total=0)


def status(pipeline_response, _deserialized, _headers) -> int:
    """cls= callback: the HTTP status of the response."""
    return pipeline_response.http_response.status_code


def vm_config() -> bm.VirtualMachineConfiguration:
    return bm.VirtualMachineConfiguration(
        image_reference=bm.BatchVmImageReference(
            publisher="canonical", offer="0001-com-ubuntu-server-jammy", sku="22_04-lts",
            version="latest"),
        node_agent_sku_id="batch.node.ubuntu 22.04")


# Pools and jobs a test creates, deleted after it whatever its outcome (`cleanup`).
_created = []


def add_pool(client, nodes: int = 1, slots: int = 1, track: bool = True, **kw) -> str:
    pid = unique("v15n")
    if track:
        _created.append((client, "pool", pid))
    client.create_pool(bm.BatchPoolCreateOptions(
        id=pid, vm_size=VM_SIZE, virtual_machine_configuration=vm_config(),
        target_dedicated_nodes=nodes, task_slots_per_node=slots, **kw))
    return pid


def add_job(client, pid: str, track: bool = True, **kw) -> str:
    jid = unique("v15j")
    if track:
        _created.append((client, "job", jid))
    client.create_job(bm.BatchJobCreateOptions(id=jid, pool_info=bm.BatchPoolInfo(pool_id=pid),
                                               **kw))
    return jid


def task(tid: str, cmd: str, **kw) -> bm.BatchTaskCreateOptions:
    return bm.BatchTaskCreateOptions(id=tid, command_line=cmd, **kw)


def add_tasks(client, jid: str, tasks):
    result = client.create_task_collection(jid, bm.BatchTaskGroup(task_values=list(tasks)))
    bad = [(r.task_id, r.status) for r in result.result_values
           if r.status != bm.BatchTaskAddStatus.SUCCESS]
    assert not bad, bad


def idle_nodes(client, pid: str, count: int, timeout: float = TIMEOUT):
    def probe():
        nodes = list(client.list_nodes(pid))
        if len(nodes) == count and all(n.state == bm.BatchNodeState.IDLE for n in nodes):
            return nodes
        return None
    try:
        return wait_for(probe, timeout, 0.1, what=f"{count} idle nodes in {pid}")
    except AssertionError:
        raise AssertionError(f"pool {pid}: wanted {count} idle nodes, have "
                             f"{[(n.id, n.state) for n in client.list_nodes(pid)]}")


def node_state(client, pid: str, nid: str, *states, timeout: float = TIMEOUT):
    def probe():
        n = client.get_node(pid, nid)
        return n if n.state in states else None
    try:
        return wait_for(probe, timeout, 0.1, what=f"node {nid} in {states}")
    except AssertionError:
        n = client.get_node(pid, nid)
        raise AssertionError(f"node {nid}: wanted {states}, is {n.state} "
                             f"(start task {n.start_task_info})")


def task_state(client, jid: str, tid: str, state=bm.BatchTaskState.COMPLETED,
               timeout: float = TIMEOUT) -> bm.BatchTask:
    def probe():
        t = client.get_task(jid, tid)
        return t if t.state == state else None
    try:
        return wait_for(probe, timeout, 0.1, what=f"task {jid}/{tid} {state}")
    except AssertionError:
        t = client.get_task(jid, tid)
        raise AssertionError(f"task {jid}/{tid}: wanted {state}, is {t.state} "
                             f"(execution {t.execution_info})")


def all_completed(client, jid: str, count: int, timeout: float = TIMEOUT):
    def probe():
        tasks = list(client.list_tasks(jid))
        done = [t for t in tasks if t.state == bm.BatchTaskState.COMPLETED]
        return tasks if len(tasks) == count and len(done) == count else None
    try:
        return wait_for(probe, timeout, 0.2, what=f"{count} tasks of {jid} completed")
    except AssertionError:
        raise AssertionError(f"job {jid}: not all completed: "
                             f"{sorted((t.id, t.state) for t in client.list_tasks(jid))}")


def job_state(client, jid: str, state, timeout: float = TIMEOUT) -> bm.BatchJob:
    def probe():
        j = client.get_job(jid)
        return j if j.state == state else None
    try:
        return wait_for(probe, timeout, 0.1, what=f"job {jid} {state}")
    except AssertionError:
        j = client.get_job(jid)
        raise AssertionError(f"job {jid}: wanted {state}, is {j.state} ({j.execution_info})")


def read_task_file(client, jid: str, tid: str, path: str, **kw) -> bytes:
    return b"".join(client.download_task_file(jid, tid, path, **kw))


def read_node_file(client, pid: str, nid: str, path: str) -> bytes:
    return b"".join(client.download_node_file(pid, nid, path))


def env_of(text: str) -> dict:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def expect_error(fn, exc_type, status_code: int, code: str) -> HttpResponseError:
    with pytest.raises(HttpResponseError) as ei:
        fn()
    e = ei.value
    assert type(e) is exc_type, (type(e), e)
    assert e.status_code == status_code, e
    assert e.error is not None and e.error.code == code, (e.error and e.error.code, e)
    return e


def expect_download_404(fn):
    """A download of a missing file: ResourceNotFoundError 404. (15.1.0 streams downloads
    and does not read an error body, so `.error` stays None; test_nodes_v14.py checks the
    FileNotFound code.)"""
    with pytest.raises(ResourceNotFoundError) as ei:
        fn()
    assert ei.value.status_code == 404, ei.value


def finish(poller):
    """Wait for a begin_* poller; it must end Succeeded (the SDK marks a poll that hit an
    unexpected error as Failed without raising)."""
    poller.result(timeout=TIMEOUT)
    assert poller.done(), "LRO did not complete"
    assert poller.status() == "Succeeded", poller.status()


def first_run_sleeps(marks: Path, name: str, seconds: int = 30) -> str:
    """Sleeps `seconds` the first time it runs, exits 0 at once on any later run."""
    m = marks / name
    return (f"/bin/sh -c 'if [ -e {m} ]; then echo second run; exit 0; fi; touch {m}; "
            f"echo first run; exec /bin/sleep {seconds}'")


def wait_first_run(marks: Path, name: str):
    """`running` also covers the time before the process exists: wait for the command."""
    wait_for(lambda: (marks / name).exists(), 10, 0.05, what=f"{name}: the command started")


def out_file(url: str, pattern: str, path: str, cond) -> bm.OutputFile:
    return bm.OutputFile(
        file_pattern=pattern,
        destination=bm.OutputFileDestination(
            container=bm.OutputFileBlobContainerDestination(container_url=url, path=path)),
        upload_options=bm.OutputFileUploadConfiguration(upload_condition=cond))


def max_overlap(tasks) -> int:
    events = []
    for t in tasks:
        events.append((t.execution_info.start_time, 1))
        events.append((t.execution_info.end_time, -1))
    events.sort(key=lambda e: (e[0], e[1]))
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


def processes_with_arg(arg: str) -> list:
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
            if kind == "job":
                c.begin_delete_job(eid, polling_interval=POLL)
            else:
                c.begin_delete_pool(eid, polling_interval=POLL)
        except Exception:  # noqa: BLE001 - already deleted, or its server is gone
            pass


@pytest.fixture(scope="module")
def client(cobalt_batch) -> BatchClient:
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
    """One node, four slots, a start task that succeeds (waitForSuccess)."""
    pid = add_pool(client, 1, 4, track=False, start_task=bm.BatchStartTask(
        command_line=START_TASK, wait_for_success=True))
    idle_nodes(client, pid, 1)
    yield pid
    try:
        client.begin_delete_pool(pid, polling_interval=POLL)
    except HttpResponseError:
        pass


@pytest.fixture(scope="module")
def node_id(client, pool) -> str:
    return list(client.list_nodes(pool))[0].id


@pytest.fixture
def container(blob):
    name = unique("v15nodes")
    cc = blob.create_container(name)
    sas = generate_container_sas(ACCOUNT, name, account_key=KEY,
                                 permission=ContainerSasPermissions(read=True, add=True,
                                                                    create=True, write=True,
                                                                    list=True),
                                 expiry=dt.datetime.now(UTC) + dt.timedelta(hours=2))
    yield cc, f"{cc.url}?{sas}"
    try:
        cc.delete_container()
    except Exception:  # noqa: BLE001
        pass


def test_the_node_that_ran_a_task_is_listed(client):
    """Once a task added right after the pool has completed, the node named by its
    nodeInfo is listed and readable, and counts the run."""
    pid = add_pool(client, 1, 1)
    jid = add_job(client, pid)
    client.create_task(jid, task("quick", "/bin/true"))
    nid = task_state(client, jid, "quick").node_info.node_id
    listed = {n.id: n.state for n in client.list_nodes(pid)}
    assert nid in listed, (nid, listed)
    assert client.get_node(pid, nid).total_tasks_run == 1
    # The count is written with the task's completion: a read right after it has it.
    for i in range(2, 12):
        client.create_task(jid, task(f"quick{i}", "/bin/true"))
        deadline = time.monotonic() + TIMEOUT
        while client.get_task(jid, f"quick{i}").state != bm.BatchTaskState.COMPLETED:
            assert time.monotonic() < deadline, f"quick{i} did not complete"
        assert client.get_node(pid, nid).total_tasks_run == i


# == 1. retries =============================================================================

def test_retries_are_spent_then_the_task_fails(client, pool):
    """maxTaskRetryCount=2, always exit 1: completed, failure, exitCode 1, retryCount 2,
    failureInfo {usererror, FailureExitCode}."""
    jid = add_job(client, pool)
    client.create_task(jid, task("fail", "/bin/sh -c 'exit 1'",
                                 constraints=bm.BatchTaskConstraints(max_task_retry_count=2)))
    ei = task_state(client, jid, "fail").execution_info
    assert ei.result == bm.BatchTaskExecutionResult.FAILURE
    assert (ei.exit_code, ei.retry_count, ei.requeue_count) == (1, 2, 0)
    assert ei.last_retry_time is not None
    assert ei.failure_info.category == bm.BatchErrorSourceCategory.USER_ERROR
    assert ei.failure_info.code == "FailureExitCode"


def test_a_retry_that_succeeds(client, pool):
    """Fails once (marker in the node's shared directory), then succeeds: retryCount 1."""
    jid = add_job(client, pool)
    marker = f"$AZ_BATCH_NODE_SHARED_DIR/{jid}.mark"
    client.create_task(jid, task(
        "flaky", f"/bin/sh -c 'if [ -e {marker} ]; then exit 0; fi; touch {marker}; exit 7'",
        constraints=bm.BatchTaskConstraints(max_task_retry_count=3)))
    ei = task_state(client, jid, "flaky").execution_info
    assert ei.result == bm.BatchTaskExecutionResult.SUCCESS, ei.failure_info
    assert (ei.exit_code, ei.retry_count) == (0, 1)
    assert ei.failure_info is None


def test_reactivate_a_failed_task_resets_its_retry_count(client, pool, marks):
    """reactivate_task (204) of a failed task: active again, the retry count reset to 0."""
    jid = add_job(client, pool)
    m = marks / f"{jid}-fixed"
    client.create_task(jid, task("phoenix", f"/bin/sh -c 'test -e {m}'",
                                 constraints=bm.BatchTaskConstraints(max_task_retry_count=1)))
    assert task_state(client, jid, "phoenix").execution_info.retry_count == 1
    m.touch()
    assert client.reactivate_task(jid, "phoenix", cls=status) == 204
    ei = task_state(client, jid, "phoenix").execution_info
    assert ei.result == bm.BatchTaskExecutionResult.SUCCESS, ei
    assert (ei.exit_code, ei.retry_count, ei.failure_info) == (0, 0, None)


# == 2. maxWallClockTime ====================================================================

def test_max_wall_clock_time_kills_the_task(client, pool):
    """maxWallClockTime PT2S on a 30 s command: failure MaxWallClockTimeExceeded within a
    few seconds; the process tree is gone."""
    jid = add_job(client, pool)
    tag = f"29.{uuid.uuid4().int % 10**6:06d}"
    client.create_task(jid, task("slow", f"/bin/sh -c '/bin/sleep {tag} & exec /bin/sleep 30'",
                                 constraints=bm.BatchTaskConstraints(
                                     max_wall_clock_time=dt.timedelta(seconds=2))))
    t = task_state(client, jid, "slow", timeout=15)
    ei = t.execution_info
    assert ei.result == bm.BatchTaskExecutionResult.FAILURE
    assert ei.failure_info.code == "MaxWallClockTimeExceeded", ei.failure_info
    assert ei.failure_info.category == bm.BatchErrorSourceCategory.USER_ERROR
    assert (ei.end_time - ei.start_time).total_seconds() < 10
    wait_for(lambda: not processes_with_arg(tag), 5, what="the task's process tree gone")


def test_job_max_wall_clock_time_terminates_the_job(client):
    """Job maxWallClockTime PT2S: completed, terminateReason MaxWallClockTimeExpiry."""
    pid = add_pool(client, 1, 1)
    jid = add_job(client, pid, constraints=bm.BatchJobConstraints(
        max_wall_clock_time=dt.timedelta(seconds=2)))
    client.create_task(jid, task("long", "/bin/sleep 30"))
    j = job_state(client, jid, bm.BatchJobState.COMPLETED, timeout=10)
    assert j.execution_info.termination_reason == "MaxWallClockTimeExpiry"
    task_state(client, jid, "long", timeout=10)


# == 3. terminate ===========================================================================

def test_terminate_a_running_task(client, pool, node_id):
    """terminate_task -> 204: completed with failureInfo TaskEnded; the node is idle
    again; a second terminate is 409 TaskCompleted."""
    jid = add_job(client, pool)
    client.create_task(jid, task("long", "/bin/sleep 30"))
    task_state(client, jid, "long", bm.BatchTaskState.RUNNING)
    n = wait_for(lambda: (lambda n: n if n.running_tasks_count == 1 else None)(
        client.get_node(pool, node_id)), 10, what="runningTasksCount 1")
    assert n.state == bm.BatchNodeState.RUNNING
    counts = {c.pool_id: c for c in client.list_pool_node_counts()}
    assert counts[pool].dedicated.running == 1, counts[pool].dedicated
    assert client.terminate_task(jid, "long", cls=status) == 204
    ei = task_state(client, jid, "long", timeout=10).execution_info
    assert ei.result == bm.BatchTaskExecutionResult.FAILURE
    assert ei.failure_info is not None and ei.failure_info.code == "TaskEnded", ei.failure_info
    n = node_state(client, pool, node_id, bm.BatchNodeState.IDLE, timeout=10)
    assert (n.running_tasks_count, n.running_task_slots_count) == (0, 0)
    expect_error(lambda: client.terminate_task(jid, "long"), ResourceExistsError, 409,
                 "TaskCompleted")


# == 4. dependencies ========================================================================

def test_dependencies_run_in_order(client, pool):
    """2 depends on 1 (taskIds), 3 on the range 1-2: each starts after its parents end."""
    jid = add_job(client, pool, uses_task_dependencies=True)
    add_tasks(client, jid, [
        task("3", "/bin/true", depends_on=bm.BatchTaskDependencies(
            task_id_ranges=[bm.BatchTaskIdRange(start=1, end=2)])),
        task("2", "/bin/sh -c 'sleep 1'", depends_on=bm.BatchTaskDependencies(task_ids=["1"])),
        task("1", "/bin/sh -c 'sleep 1'"),
    ])
    tasks = {t.id: t.execution_info for t in all_completed(client, jid, 3)}
    assert all(ei.exit_code == 0 for ei in tasks.values())
    assert tasks["2"].start_time >= tasks["1"].end_time
    assert tasks["3"].start_time >= max(tasks["1"].end_time, tasks["2"].end_time)


def test_a_failed_parent_blocks_its_dependent_unless_satisfy(client, pool):
    """A failed parent blocks its dependent (active); dependencyAction satisfy releases it."""
    jid = add_job(client, pool, uses_task_dependencies=True)
    add_tasks(client, jid, [
        task("1", "/bin/sh -c 'exit 2'"),
        task("2", "/bin/true", depends_on=bm.BatchTaskDependencies(task_ids=["1"])),
        task("3", "/bin/sh -c 'exit 2'", exit_conditions=bm.ExitConditions(
            default=bm.ExitOptions(dependency_action=bm.DependencyAction.SATISFY))),
        task("4", "/bin/true", depends_on=bm.BatchTaskDependencies(task_ids=["3"])),
    ])
    assert task_state(client, jid, "4").execution_info.exit_code == 0
    assert task_state(client, jid, "1").execution_info.exit_code == 2
    time.sleep(1.5)
    t2 = client.get_task(jid, "2")
    assert t2.state == bm.BatchTaskState.ACTIVE, t2.execution_info


# == 5. exit conditions =====================================================================

def test_exit_code_mapping_terminates_the_job(client, pool):
    """task_failure_mode performexitoptionsjobaction and exitCodes [{3: terminate}]: the job
    completes with terminateReason TaskFailed; its other running task is terminated."""
    jid = add_job(client, pool,
                  task_failure_mode=bm.BatchTaskFailureMode.PERFORM_EXIT_OPTIONS_JOB_ACTION)
    client.create_task(jid, task("other", "/bin/sleep 30"))
    task_state(client, jid, "other", bm.BatchTaskState.RUNNING)
    client.create_task(jid, task("three", "/bin/sh -c 'exit 3'", exit_conditions=bm.ExitConditions(
        exit_codes=[bm.ExitCodeMapping(code=3, exit_options=bm.ExitOptions(
            job_action=bm.BatchJobActionKind.TERMINATE))])))
    assert task_state(client, jid, "three").execution_info.exit_code == 3
    j = job_state(client, jid, bm.BatchJobState.COMPLETED)
    assert j.execution_info.termination_reason == "TaskFailed"
    task_state(client, jid, "other", timeout=10)


def test_non_zero_exit_terminates_the_job_by_default(client, pool):
    """performexitoptionsjobaction and no exitConditions: a non-zero exit terminates."""
    jid = add_job(client, pool,
                  task_failure_mode=bm.BatchTaskFailureMode.PERFORM_EXIT_OPTIONS_JOB_ACTION)
    client.create_task(jid, task("five", "/bin/sh -c 'exit 5'"))
    j = job_state(client, jid, bm.BatchJobState.COMPLETED)
    assert j.execution_info.termination_reason == "TaskFailed"


# == 6. onAllTasksComplete ==================================================================

def test_all_tasks_complete_terminates_the_job(client, pool):
    """Job created with noaction, tasks added, then update_job to terminatejob: completes
    with terminateReason AllTasksComplete after the last task."""
    jid = add_job(client, pool)
    add_tasks(client, jid, [task("a", "/bin/sh -c 'sleep 1'"), task("b", "/bin/true")])
    client.update_job(jid, bm.BatchJobUpdateOptions(
        all_tasks_complete_mode=bm.BatchAllTasksCompleteMode.TERMINATE_JOB))
    assert client.get_job(jid).state == bm.BatchJobState.ACTIVE
    j = job_state(client, jid, bm.BatchJobState.COMPLETED)
    assert j.execution_info.termination_reason == "AllTasksComplete"
    assert j.execution_info.end_time >= max(t.execution_info.end_time
                                            for t in client.list_tasks(jid))


# == 7. output files ========================================================================

def test_output_files_are_uploaded_by_condition(client, pool, container):
    """`out/**/*.txt` -> path/a.txt, path/sub/b.txt; a named file -> the exact blob name;
    `../stdout.txt` -> the stdout; a taskfailure file of a successful task: nothing."""
    cc, url = container
    jid = add_job(client, pool)
    cmd = ("/bin/sh -c 'mkdir -p out/sub && echo alpha > out/a.txt && echo beta > out/sub/b.txt"
           " && echo gamma > out/c.log && echo hello-stdout'")
    c = bm.OutputFileUploadCondition
    client.create_task(jid, task("writer", cmd, output_files=[
        out_file(url, "out/**/*.txt", "results", c.TASK_SUCCESS),
        out_file(url, "out/a.txt", "single/renamed.txt", c.TASK_COMPLETION),
        out_file(url, "../stdout.txt", "logs/writer-stdout.txt", c.TASK_COMPLETION),
        out_file(url, "out/a.txt", "failure-only/a.txt", c.TASK_FAILURE),
    ]))
    t = task_state(client, jid, "writer")
    assert t.execution_info.result == bm.BatchTaskExecutionResult.SUCCESS
    names = sorted(b.name for b in cc.list_blobs())
    assert names == ["logs/writer-stdout.txt", "results/a.txt", "results/sub/b.txt",
                     "single/renamed.txt"], names
    assert cc.download_blob("results/sub/b.txt").readall() == b"beta\n"
    assert b"hello-stdout" in cc.download_blob("logs/writer-stdout.txt").readall()


# == 8. resource files ======================================================================

def test_resource_files(client, pool, node_id, container):
    """httpUrl with a SAS -> wd/{filePath}; a 404 httpUrl -> failure usererror BlobNotFound,
    no exitCode, no retry (maxTaskRetryCount 3), the command never ran."""
    cc, url = container
    cc.upload_blob("input.txt", b"resource-bytes\n")
    base, sas = url.split("?", 1)
    jid = add_job(client, pool)
    marker = f"{jid}-ran"
    add_tasks(client, jid, [
        task("reader", "/bin/cat in/data.txt", resource_files=[
            bm.ResourceFile(http_url=f"{base}/input.txt?{sas}", file_path="in/data.txt")]),
        task("nofile", f"/bin/sh -c 'touch $AZ_BATCH_NODE_SHARED_DIR/{marker}'",
             resource_files=[bm.ResourceFile(http_url=f"{base}/missing.txt?{sas}",
                                             file_path="x.txt")],
             constraints=bm.BatchTaskConstraints(max_task_retry_count=3)),
    ])
    t = task_state(client, jid, "reader")
    assert t.execution_info.exit_code == 0, t.execution_info.failure_info
    assert read_task_file(client, jid, "reader", "stdout.txt") == b"resource-bytes\n"
    assert "wd/in/data.txt" in {f.name for f in client.list_task_files(jid, "reader",
                                                                       recursive=True)}
    ei = task_state(client, jid, "nofile").execution_info
    assert ei.result == bm.BatchTaskExecutionResult.FAILURE
    assert ei.failure_info is not None
    assert ei.failure_info.category == bm.BatchErrorSourceCategory.USER_ERROR, ei.failure_info
    assert ei.failure_info.code == "BlobNotFound", ei.failure_info
    assert ei.exit_code is None and ei.retry_count == 0
    expect_download_404(lambda: read_node_file(client, pool, node_id, f"shared/{marker}"))


# == 9. start task ==========================================================================

def test_successful_start_task(client, pool, node_id):
    """The pool's start task succeeded: idle, startTaskInfo completed/success/exit 0;
    startup/stdout.txt holds its output, without AZ_BATCH_JOB_ID/AZ_BATCH_TASK_ID."""
    n = client.get_node(pool, node_id)
    assert n.state == bm.BatchNodeState.IDLE
    si = n.start_task_info
    assert si.state == bm.BatchStartTaskState.COMPLETED
    assert si.result == bm.BatchTaskExecutionResult.SUCCESS
    assert (si.exit_code, si.retry_count) == (0, 0)
    env = env_of(read_node_file(client, pool, node_id, "startup/stdout.txt").decode())
    assert env["AZ_BATCH_POOL_ID"] == pool and env["AZ_BATCH_NODE_ID"] == node_id
    assert "AZ_BATCH_JOB_ID" not in env and "AZ_BATCH_TASK_ID" not in env
    names = {f.name for f in client.list_node_files(pool, node_id, recursive=True)}
    assert {"startup/stdout.txt", "startup/stderr.txt", "shared/boots"} <= names, names


def test_failing_start_task_with_wait_for_success(client):
    """waitForSuccess and exit 4 (one retry): starttaskfailed, exitCode 4, retryCount 1,
    result failure with a failureInfo; tasks stay active."""
    pid = add_pool(client, 1, 1, start_task=bm.BatchStartTask(
        command_line="/bin/sh -c 'exit 4'", wait_for_success=True, max_task_retry_count=1))
    nid = wait_for(lambda: [n.id for n in client.list_nodes(pid)], 10, what="a node")[0]
    n = node_state(client, pid, nid, bm.BatchNodeState.START_TASK_FAILED)
    si = n.start_task_info
    assert (si.exit_code, si.retry_count) == (4, 1)
    assert si.result == bm.BatchTaskExecutionResult.FAILURE
    jid = add_job(client, pid)
    client.create_task(jid, task("waits", "/bin/true"))
    time.sleep(1.5)
    assert client.get_task(jid, "waits").state == bm.BatchTaskState.ACTIVE
    assert si.failure_info is not None and si.failure_info.code == "FailureExitCode", si


# == 10. environment and files ==============================================================

def test_task_environment_and_files(client, pool, node_id):
    """AZ_BATCH_* variables, job commonEnvironmentSettings and task environmentSettings;
    list_task_files (recursive), download_task_file with ocp_range, get_task_file_properties,
    delete_task_file, and the task's files through the node."""
    jid = add_job(client, pool, common_environment_settings=[
        bm.EnvironmentSetting(name="JOB_VAR", value="from-job")])
    client.create_task(jid, task(
        "env", "/bin/sh -c 'env | sort; echo PWD_IS=$(pwd); mkdir -p made; echo data > made/f.txt'",
        environment_settings=[bm.EnvironmentSetting(name="TASK_VAR", value="from task")]))
    t = task_state(client, jid, "env")
    assert t.execution_info.exit_code == 0
    out = read_task_file(client, jid, "env", "stdout.txt")
    env = env_of(out.decode())
    assert env["AZ_BATCH_JOB_ID"] == jid and env["AZ_BATCH_TASK_ID"] == "env"
    assert env["AZ_BATCH_POOL_ID"] == pool and env["AZ_BATCH_NODE_ID"] == node_id
    assert env["AZ_BATCH_TASK_WORKING_DIR"].endswith("/wd")
    assert env["PWD_IS"] == env["AZ_BATCH_TASK_WORKING_DIR"]
    assert env["AZ_BATCH_NODE_SHARED_DIR"] == env["AZ_BATCH_NODE_ROOT_DIR"] + "/shared"
    assert (env["JOB_VAR"], env["TASK_VAR"]) == ("from-job", "from task")
    # The machine's variables, but none of the server's or the agent's secrets.
    assert env["PATH"] == os.environ["PATH"]
    assert "COBALT_AGENT_TOKEN" not in env and "COBALT_AGENT_PARENT" not in env, env
    assert SERVER_SECRET not in env, env

    files = {f.name: f for f in client.list_task_files(jid, "env", recursive=True)}
    assert {"stdout.txt", "stderr.txt", "wd", "wd/made", "wd/made/f.txt"} <= set(files), files
    assert files["wd"].is_directory and files["stdout.txt"].properties.content_length == len(out)
    assert read_task_file(client, jid, "env", "stdout.txt", ocp_range="bytes=0-9") == out[:10]
    props = client.get_task_file_properties(jid, "env", "stdout.txt")
    assert props.content_length == len(out)
    assert props.is_directory is False
    assert props.url.endswith("/files/stdout.txt"), props.url
    assert props.last_modified is not None
    tdir = t.node_info.task_root_directory
    assert read_node_file(client, pool, node_id, f"{tdir}/wd/made/f.txt") == b"data\n"
    assert client.delete_task_file(jid, "env", "wd/made/f.txt", cls=status) == 200
    expect_download_404(lambda: read_task_file(client, jid, "env", "wd/made/f.txt"))


def test_job_preparation_and_release_tasks(client, pool, node_id, marks):
    """The preparation task runs once before the job's tasks on the node (they see
    AZ_BATCH_JOB_PREP_DIR); the status list shows it completed; terminating the job runs
    the release task, which the status list then shows completed."""
    tag = unique("prep15")
    jid = add_job(client, pool,
                  job_preparation_task=bm.BatchJobPreparationTask(
                      command_line=f"/bin/sh -c 'echo prepared >> {marks}/{tag}.prep'"),
                  job_release_task=bm.BatchJobReleaseTask(
                      command_line=f"/bin/sh -c 'echo released >> {marks}/{tag}.rel'"))
    show = f"/bin/sh -c 'cat {marks}/{tag}.prep; echo PREP=$AZ_BATCH_JOB_PREP_DIR'"
    add_tasks(client, jid, [task("p1", show), task("p2", show)])
    all_completed(client, jid, 2)
    out = read_task_file(client, jid, "p2", "stdout.txt").decode()
    assert out.startswith("prepared\n") and env_of(out)["PREP"].endswith("/jobpreparation"), out
    assert (marks / f"{tag}.prep").read_text() == "prepared\n"
    status = list(client.list_job_preparation_and_release_task_status(jid))
    assert [(s.pool_id, s.node_id) for s in status] == [(pool, node_id)]
    prep = status[0].job_preparation_task_execution_info
    assert prep.state == bm.BatchJobPreparationTaskState.COMPLETED
    assert (prep.exit_code, prep.result) == (0, bm.BatchTaskExecutionResult.SUCCESS)
    finish(client.begin_terminate_job(jid, BatchJobTerminateOptions(termination_reason="done"),
                                      polling_interval=POLL))
    assert client.get_job(jid).state == bm.BatchJobState.COMPLETED
    assert (marks / f"{tag}.rel").read_text() == "released\n"
    rel = list(client.list_job_preparation_and_release_task_status(jid))[0] \
        .job_release_task_execution_info
    assert rel is not None and rel.state == bm.BatchJobReleaseTaskState.COMPLETED, rel
    assert rel.exit_code == 0


# == 11. task slots =========================================================================

def test_task_slots_limit_concurrency(client):
    """taskSlotsPerNode=2: four tasks at most (and exactly) two at a time; requiredSlots=2
    tasks one at a time."""
    pid = add_pool(client, 1, 2)
    nid = idle_nodes(client, pid, 1)[0].id
    jid = add_job(client, pid)
    add_tasks(client, jid, [task(f"s{i}", "/bin/sh -c 'sleep 0.5'") for i in range(4)])
    seen = 0
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        n = client.get_node(pid, nid)
        assert n.running_tasks_count <= 2 and n.running_task_slots_count <= 2
        seen = max(seen, n.running_tasks_count)
        if all(t.state == bm.BatchTaskState.COMPLETED for t in client.list_tasks(jid)):
            break
        time.sleep(0.1)
    assert seen == 2, seen
    assert max_overlap(all_completed(client, jid, 4)) == 2
    jid2 = add_job(client, pid)
    add_tasks(client, jid2, [task(f"w{i}", "/bin/sh -c 'sleep 0.5'", required_slots=2)
                             for i in range(2)])
    assert max_overlap(all_completed(client, jid2, 2)) == 1


def test_pack_fills_slots_not_queues_while_a_node_is_free(client):
    """nodeFillType pack on 2 nodes x 1 slot: two long tasks run at once, one per node (a node
    holds queued runs for its next free slot, but a task never queues while a slot is free)."""
    pid = add_pool(client, 2, 1, task_scheduling_policy=bm.BatchTaskSchedulingPolicy(
        node_fill_type=bm.BatchNodeFillType.PACK))
    idle_nodes(client, pid, 2)
    jid = add_job(client, pid)
    add_tasks(client, jid, [task(f"p{i}", "/bin/sh -c 'sleep 1'") for i in range(2)])
    done = all_completed(client, jid, 2)
    assert {t.node_info.node_id for t in done} == {n.id for n in client.list_nodes(pid)}
    assert max_overlap(done) == 2


def test_a_free_slot_takes_tasks_queued_behind_a_long_one(client):
    """2 nodes x 1 slot, spread: a long task on one node, a short one on the other, and quick
    tasks queued behind both. Once the short one ends, its node runs every quick task, those
    queued behind the long task included, as Azure starts tasks on any free slot."""
    pid = add_pool(client, 2, 1)
    idle_nodes(client, pid, 2)
    jid = add_job(client, pid)
    add_tasks(client, jid, [task("long", "/bin/sh -c 'sleep 4'"),
                            task("short", "/bin/sh -c 'sleep 0.3'")]
              + [task(f"q{i}", "/bin/true") for i in range(4)])
    done = {t.id: t for t in all_completed(client, jid, 6)}
    long_end = done["long"].execution_info.end_time
    for i in range(4):
        q = done[f"q{i}"]
        assert q.execution_info.end_time < long_end - dt.timedelta(seconds=2), (q.id, q.node_info.node_id)
        assert q.execution_info.retry_count == 0 and q.execution_info.exit_code == 0


# == 12 / 15. node operations and their LROs ================================================

def test_disable_and_enable_node_scheduling(client, marks):
    """disable_node_scheduling (requeue): the running task goes back to active, the node is
    offline/disabled and new tasks wait; enable_node_scheduling: everything completes."""
    pid = add_pool(client, 1, 1)
    nid = idle_nodes(client, pid, 1)[0].id
    jid = add_job(client, pid)
    client.create_task(jid, task("first", first_run_sleeps(marks, f"{jid}-first")))
    task_state(client, jid, "first", bm.BatchTaskState.RUNNING)
    wait_first_run(marks, f"{jid}-first")
    assert client.disable_node_scheduling(pid, nid, bm.BatchNodeDisableSchedulingOptions(
        node_disable_scheduling_option=bm.BatchNodeDisableSchedulingOption.REQUEUE),
        cls=status) == 200
    n = node_state(client, pid, nid, bm.BatchNodeState.OFFLINE, timeout=10)
    assert n.scheduling_state == bm.SchedulingState.DISABLED
    task_state(client, jid, "first", bm.BatchTaskState.ACTIVE, timeout=10)
    client.create_task(jid, task("second", "/bin/true"))
    time.sleep(1.5)
    assert client.get_task(jid, "second").state == bm.BatchTaskState.ACTIVE
    assert client.enable_node_scheduling(pid, nid, cls=status) == 200
    for t in all_completed(client, jid, 2):
        assert t.execution_info.exit_code == 0, (t.id, t.execution_info)
    node_state(client, pid, nid, bm.BatchNodeState.IDLE)


def test_lro_reboot_node(client, marks):
    """begin_reboot_node (nodeRebootOption requeue) polls get_node and completes
    (Succeeded) at the first answer that is not `rebooting`, so the node must show
    `rebooting` as soon as the reboot is accepted: when the LRO completes, the node has
    rebooted (new lastBootTime) and run its start task again; the requeued task completes
    without a retry."""
    pid = add_pool(client, 1, 1, start_task=bm.BatchStartTask(command_line=START_TASK,
                                                              wait_for_success=True))
    n0 = idle_nodes(client, pid, 1)[0]
    jid = add_job(client, pid)
    client.create_task(jid, task("busy", first_run_sleeps(marks, f"{jid}-busy")))
    task_state(client, jid, "busy", bm.BatchTaskState.RUNNING)
    wait_first_run(marks, f"{jid}-busy")
    # 15.1.0 cannot send a reboot without options (ValueError before any request).
    finish(client.begin_reboot_node(pid, n0.id, BatchNodeRebootOptions(
        node_reboot_kind="requeue"), polling_interval=POLL))
    n = client.get_node(pid, n0.id)
    assert n.state != bm.BatchNodeState.REBOOTING
    assert n.last_boot_time is not None and n.last_boot_time > n0.last_boot_time, (
        "begin_reboot_node completed but the node shows no reboot: "
        f"state {n.state}, lastBootTime {n.last_boot_time} (before: {n0.last_boot_time})")
    ei = task_state(client, jid, "busy").execution_info
    assert (ei.exit_code, ei.retry_count) == (0, 0), ei
    n = node_state(client, pid, n0.id, bm.BatchNodeState.IDLE)
    assert n.start_task_info.start_time > n0.start_task_info.start_time
    assert n.start_task_info.result == bm.BatchTaskExecutionResult.SUCCESS


def test_lro_remove_nodes(client, marks):
    """begin_remove_nodes of the node running a task completes once the pool is steady
    with one node; the task is requeued (requeueCount 1) and completes on the other node."""
    pid = add_pool(client, 2, 1)
    idle_nodes(client, pid, 2)
    jid = add_job(client, pid)
    client.create_task(jid, task("moved", first_run_sleeps(marks, f"{jid}-moved")))
    victim = task_state(client, jid, "moved", bm.BatchTaskState.RUNNING).node_info.node_id
    wait_first_run(marks, f"{jid}-moved")
    finish(client.begin_remove_nodes(pid, bm.BatchNodeRemoveOptions(node_ids=[victim]),
                                     polling_interval=POLL))
    p = client.get_pool(pid)
    assert p.allocation_state == bm.AllocationState.STEADY
    assert (p.target_dedicated_nodes, p.current_dedicated_nodes) == (1, 1)
    assert victim not in [n.id for n in client.list_nodes(pid)]
    t = task_state(client, jid, "moved")
    assert t.node_info.node_id != victim
    ei = t.execution_info
    assert (ei.exit_code, ei.requeue_count, ei.retry_count) == (0, 1, 0), ei


def test_lro_disable_and_enable_job_requeue(client, pool, marks):
    """begin_disable_job (requeue) completes when the job is disabled; the running task is
    requeued (requeueCount 1); begin_enable_job completes and the task runs to success."""
    jid = add_job(client, pool)
    client.create_task(jid, task("again", first_run_sleeps(marks, f"{jid}-again")))
    task_state(client, jid, "again", bm.BatchTaskState.RUNNING)
    wait_first_run(marks, f"{jid}-again")
    finish(client.begin_disable_job(jid, bm.BatchJobDisableOptions(
        disable_tasks=bm.DisableBatchJobOption.REQUEUE), polling_interval=POLL))
    assert client.get_job(jid).state == bm.BatchJobState.DISABLED
    ei = task_state(client, jid, "again", bm.BatchTaskState.ACTIVE, timeout=10).execution_info
    assert ei.requeue_count == 1, ei
    finish(client.begin_enable_job(jid, polling_interval=POLL))
    ei = task_state(client, jid, "again").execution_info
    assert (ei.exit_code, ei.requeue_count, ei.retry_count) == (0, 1, 0), ei


# == 13. node loss ==========================================================================

@pytest.mark.needs_own_server
def test_a_lost_node_is_replaced_and_its_task_requeued(client, cobalt_server, marks):
    """kill -9 of the agent running a task: the task completes on a replacement node with
    retryCount 0 and requeueCount 0; the pool is back at one idle node."""
    pid = add_pool(client, 1, 1)
    nid = idle_nodes(client, pid, 1)[0].id
    jid = add_job(client, pid)
    client.create_task(jid, task("survivor", first_run_sleeps(marks, f"{jid}-survivor")))
    task_state(client, jid, "survivor", bm.BatchTaskState.RUNNING)
    wait_first_run(marks, f"{jid}-survivor")
    agents = agent_pids(cobalt_server.pid)
    assert nid in agents, (nid, agents)
    os.kill(agents[nid], signal.SIGKILL)
    t = task_state(client, jid, "survivor")
    ei = t.execution_info
    assert (ei.exit_code, ei.retry_count, ei.requeue_count) == (0, 0, 0), ei
    assert t.node_info.node_id != nid
    assert idle_nodes(client, pid, 1)[0].id != nid
    p = client.get_pool(pid)
    assert (p.target_dedicated_nodes, p.current_dedicated_nodes) == (1, 1)


# == 14. server crash =======================================================================

@pytest.mark.needs_own_server
def test_server_kill_9_mid_job_loses_no_task(cobalt_factory):
    """20 short tasks; kill -9 of the server mid-job; after a restart on the same data
    directory every task completes successfully and the pool has its two nodes again."""
    server = cobalt_factory("nodes15-crash")
    server.start()
    c = make_client(server.batch_url)
    pid = add_pool(c, 2, 2, track=False)
    idle_nodes(c, pid, 2)
    jid = add_job(c, pid, track=False)
    add_tasks(c, jid, [task(f"c{i:02d}", "/bin/sh -c 'sleep 0.5'") for i in range(20)])

    def some_done_some_running():
        tasks = list(c.list_tasks(jid))
        return (sum(t.state == bm.BatchTaskState.COMPLETED for t in tasks) >= 2 and
                sum(t.state == bm.BatchTaskState.RUNNING for t in tasks) >= 1)
    wait_for(some_done_some_running, TIMEOUT, 0.05, what="a job half done")
    server.kill9()
    server.start()
    c = make_client(server.batch_url)
    tasks = all_completed(c, jid, 20)
    bad = [(t.id, t.execution_info.exit_code, t.execution_info.failure_info) for t in tasks
           if t.execution_info.result != bm.BatchTaskExecutionResult.SUCCESS]
    assert not bad, bad
    counts = c.get_job_task_counts(jid).task_counts
    assert (counts.completed, counts.succeeded, counts.failed) == (20, 20, 0)
    idle_nodes(c, pid, 2)
    p = c.get_pool(pid)
    assert (p.target_dedicated_nodes, p.current_dedicated_nodes) == (2, 2)
