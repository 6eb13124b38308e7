"""Batch control plane end to end with azure-batch 4.0.0 (api-version 2017-09-01.6.0, the
tutorial's SDK): pools, jobs, job schedules and tasks in the 2017 schema (ResourceFile
`blobSource`, pool `maxTasksPerNode`, flat TaskCounts), against the real `cobalt` binary.
Run with .venv/batch-4 (see run.sh). The tutorial's own flow is in
test_batch_account_v4.py.

Compute nodes do not exist yet: nothing here expects node or task progress.
"""
from __future__ import annotations

import datetime as dt
import uuid

import pytest

import azure.batch.batch_auth as batchauth
import azure.batch.batch_service_client as batch
import azure.batch.models as bm
from azure.batch.models.batch_error import BatchErrorException

from e2e_support import (BATCH_ACCOUNT, BATCH_KEY, WRONG_KEY, batch_request, unique,
                         wait_for)

API_2017 = "2017-09-01.6.0"
API_2024 = "2024-02-01.19.0"
UTC = dt.timezone.utc
BLOB = "http://127.0.0.1:10000/devstoreaccount1/input/data.txt?sv=2017-04-17&sr=b&sp=r&sig=x%3D"


def make_client(url: str, key: str = BATCH_KEY) -> batch.BatchServiceClient:
    return batch.BatchServiceClient(batchauth.SharedKeyCredentials(BATCH_ACCOUNT, key),
                                    base_url=url)


@pytest.fixture(scope="module")
def client(cobalt_batch) -> batch.BatchServiceClient:
    return make_client(cobalt_batch)


def vm_config() -> bm.VirtualMachineConfiguration:
    return bm.VirtualMachineConfiguration(
        bm.ImageReference(publisher="Canonical", offer="UbuntuServer", sku="16.04-LTS",
                          version="latest"),
        "batch.node.ubuntu 16.04")


def pool_param(pool_id: str, nodes: int = 0, **kw) -> bm.PoolAddParameter:
    return bm.PoolAddParameter(pool_id, "STANDARD_A1", virtual_machine_configuration=vm_config(),
                               target_dedicated_nodes=nodes, **kw)


def expect_batch_error(fn, status: int, codes) -> BatchErrorException:
    """fn() must raise 4.0.0's BatchErrorException with this status and one of `codes`;
    .error.message.value is what the tutorial's print_batch_exception prints."""
    codes = (codes,) if isinstance(codes, str) else tuple(codes)
    with pytest.raises(BatchErrorException) as ei:
        fn()
    e = ei.value
    assert e.response.status_code == status, (e.response.status_code, e.response.text)
    assert e.error is not None and e.error.code in codes, (e.error and e.error.code, e.response.text)
    assert e.error.message is not None and e.error.message.value, e.response.text
    return e


def metadata(item) -> dict:
    return {m.name: m.value for m in (item.metadata or [])}


def wait_steady(client, pid: str) -> bm.CloudPool:
    return wait_for(lambda: (lambda p: p if p.allocation_state == bm.AllocationState.steady
                             else None)(client.pool.get(pid)), what=f"pool {pid} steady")


def wait_job_state(client, jid: str, state) -> bm.CloudJob:
    return wait_for(lambda: (lambda j: j if j.state == state else None)(client.job.get(jid)),
                    what=f"job {jid} {state}")


def add_tasks(client, jid: str, count: int, prefix: str = "t"):
    ids = [f"{prefix}{i:05d}" for i in range(count)]
    for k in range(0, count, 100):
        result = client.task.add_collection(jid, [
            bm.TaskAddParameter(t, f"/bin/echo {t}") for t in ids[k:k + 100]])
        assert sorted(r.task_id for r in result.value) == ids[k:k + 100]
        assert all(r.status == bm.TaskAddStatus.success for r in result.value), result.value
    return ids


@pytest.fixture(scope="module")
def pool_id(client) -> str:
    pid = unique("v4pool")
    client.pool.add(pool_param(pid))
    return pid


@pytest.fixture
def job_id(client, pool_id) -> str:
    jid = unique("v4job")
    client.job.add(bm.JobAddParameter(jid, bm.PoolInformation(pool_id=pool_id)))
    return jid


# == pools ==================================================================================

def test_pool_add_get_list_exists_delete_2017_schema(client, cobalt_batch):
    """pool.add with max_tasks_per_node and a start task whose resource file uses the 2017
    `blob_source`: both round-trip through pool.get and the wire shows the 2017 names
    (maxTasksPerNode, blobSource); the 2024-02-01 view of the same pool shows
    taskSlotsPerNode and httpUrl. list/exists see it; delete -> 202, then 404."""
    pid = unique("v4p")
    raw = client.pool.add(pool_param(
        pid, 0, max_tasks_per_node=4,
        start_task=bm.StartTask("/bin/true", resource_files=[bm.ResourceFile(BLOB, "data.txt")]),
        metadata=[bm.MetadataItem("k", "v")]), raw=True)
    assert raw.response.status_code == 201
    p = wait_steady(client, pid)
    assert p.id == pid and p.state == bm.PoolState.active
    assert p.max_tasks_per_node == 4
    assert [(r.blob_source, r.file_path) for r in p.start_task.resource_files] == [(BLOB, "data.txt")]
    assert p.virtual_machine_configuration.node_agent_sku_id == "batch.node.ubuntu 16.04"
    assert metadata(p) == {"k": "v"}

    wire = batch_request(cobalt_batch, "GET", f"/pools/{pid}", api_version=API_2017).json()
    assert wire["maxTasksPerNode"] == 4 and "taskSlotsPerNode" not in wire, wire
    assert wire["startTask"]["resourceFiles"] == [{"blobSource": BLOB, "filePath": "data.txt"}], wire
    new = batch_request(cobalt_batch, "GET", f"/pools/{pid}", api_version=API_2024).json()
    assert new["taskSlotsPerNode"] == 4 and "maxTasksPerNode" not in new, new
    assert new["startTask"]["resourceFiles"] == [{"httpUrl": BLOB, "filePath": "data.txt"}], new

    assert pid in [x.id for x in client.pool.list()]
    assert client.pool.exists(pid) is True
    assert client.pool.delete(pid, raw=True).response.status_code == 202
    wait_for(lambda: not client.pool.exists(pid), what="pool deleted")
    expect_batch_error(lambda: client.pool.get(pid), 404, "PoolNotFound")


def test_pool_errors(client, pool_id, cobalt_batch):
    """Duplicate pool -> 409 PoolExists; unknown pool -> 404 PoolNotFound and exists ->
    False; invalid id -> 400 InvalidPropertyValue; wrong key -> 403 AuthenticationFailed."""
    expect_batch_error(lambda: client.pool.add(pool_param(pool_id)), 409, "PoolExists")
    missing = unique("v4nopool")
    expect_batch_error(lambda: client.pool.get(missing), 404, "PoolNotFound")
    expect_batch_error(lambda: client.pool.delete(missing), 404, "PoolNotFound")
    assert client.pool.exists(missing) is False
    expect_batch_error(lambda: client.pool.add(pool_param("bad id!")), 400, "InvalidPropertyValue")
    bad = make_client(cobalt_batch, key=WRONG_KEY)
    expect_batch_error(lambda: bad.pool.get(pool_id), 403, "AuthenticationFailed")


def test_pool_patch_update_properties_resize(client):
    """patch (200) keeps the start task, update_properties (204) removes it; resize (202)
    -> resizing with the new target, stop_resize (202) -> steady with the nodes allocated
    so far (Azure keeps what it has; it does not go back)."""
    pid = unique("v4p")
    client.pool.add(pool_param(pid, 0, start_task=bm.StartTask("/bin/true")))
    assert client.pool.patch(pid, bm.PoolPatchParameter(
        metadata=[bm.MetadataItem("a", "1")]), raw=True).response.status_code == 200
    p = client.pool.get(pid)
    assert metadata(p) == {"a": "1"} and p.start_task.command_line == "/bin/true"
    assert client.pool.update_properties(pid, bm.PoolUpdatePropertiesParameter(
        [], [], [bm.MetadataItem("b", "2")]), raw=True).response.status_code == 204
    p = client.pool.get(pid)
    assert metadata(p) == {"b": "2"} and p.start_task is None

    wait_steady(client, pid)
    assert client.pool.resize(pid, bm.PoolResizeParameter(target_dedicated_nodes=3),
                              raw=True).response.status_code == 202
    p = client.pool.get(pid)
    assert p.allocation_state in (bm.AllocationState.resizing, bm.AllocationState.steady)
    assert p.target_dedicated_nodes == 3
    assert client.pool.stop_resize(pid, raw=True).response.status_code == 202
    assert 0 <= wait_steady(client, pid).current_dedicated_nodes <= 3
    client.pool.delete(pid)


def test_pool_if_match_with_stale_etag_is_412(client):
    """pool.patch with a stale If-Match -> 412 ConditionNotMet; nothing changes."""
    pid = unique("v4p")
    client.pool.add(pool_param(pid))
    stale = client.pool.get(pid).e_tag
    client.pool.patch(pid, bm.PoolPatchParameter(metadata=[bm.MetadataItem("v", "1")]))
    expect_batch_error(lambda: client.pool.patch(
        pid, bm.PoolPatchParameter(metadata=[bm.MetadataItem("v", "2")]),
        bm.PoolPatchOptions(if_match=stale)), 412, "ConditionNotMet")
    assert metadata(client.pool.get(pid)) == {"v": "1"}
    client.pool.delete(pid)


def test_pool_list_filter_and_select(client):
    """$filter=startswith(id, ...) with $select=id,maxTasksPerNode (a 2017 name)."""
    prefix = "v4flt" + uuid.uuid4().hex[:8]
    ids = [f"{prefix}-{i}" for i in range(3)]
    for pid in ids:
        client.pool.add(pool_param(pid, max_tasks_per_node=2))
    got = list(client.pool.list(bm.PoolListOptions(filter=f"startswith(id, '{prefix}')",
                                                   select="id,maxTasksPerNode")))
    assert sorted(p.id for p in got) == ids
    for p in got:
        assert p.max_tasks_per_node == 2 and p.state is None and p.vm_size is None, p
    for pid in ids:
        client.pool.delete(pid)


# == jobs ===================================================================================

def test_job_add_get_list_delete_and_errors(client, pool_id):
    """job.add -> 201, get/list, duplicate -> 409 JobExists, delete -> 202 then 404
    JobNotFound, invalid id -> 400 InvalidPropertyValue."""
    jid = unique("v4j")
    assert client.job.add(bm.JobAddParameter(jid, bm.PoolInformation(pool_id=pool_id),
                                             priority=7), raw=True).response.status_code == 201
    j = client.job.get(jid)
    assert (j.id, j.priority, j.state) == (jid, 7, bm.JobState.active)
    assert j.pool_info.pool_id == pool_id and j.execution_info.start_time is not None
    assert jid in [x.id for x in client.job.list()]
    expect_batch_error(lambda: client.job.add(bm.JobAddParameter(
        jid, bm.PoolInformation(pool_id=pool_id))), 409, "JobExists")
    assert client.job.delete(jid, raw=True).response.status_code == 202
    wait_for(lambda: jid not in [x.id for x in client.job.list()], what="job deleted")
    expect_batch_error(lambda: client.job.get(jid), 404, "JobNotFound")
    expect_batch_error(lambda: client.job.add(bm.JobAddParameter(
        "bad id!", bm.PoolInformation(pool_id=pool_id))), 400, "InvalidPropertyValue")


def test_job_patch_update_disable_enable_terminate(client, pool_id):
    """patch (200) keeps, update (200) replaces; disable/enable (202) settle at
    disabled/active; terminate (202) completes the job with the given reason, after which
    task.add is 409 JobCompleted."""
    jid = unique("v4j")
    client.job.add(bm.JobAddParameter(jid, bm.PoolInformation(pool_id=pool_id), priority=1,
                                      constraints=bm.JobConstraints(max_task_retry_count=2),
                                      metadata=[bm.MetadataItem("a", "1")]))
    assert client.job.patch(jid, bm.JobPatchParameter(priority=3), raw=True).response.status_code == 200
    j = client.job.get(jid)
    assert (j.priority, j.constraints.max_task_retry_count, metadata(j)) == (3, 2, {"a": "1"})
    assert client.job.update(jid, bm.JobUpdateParameter(bm.PoolInformation(pool_id=pool_id),
                                                        priority=4),
                             raw=True).response.status_code == 200
    j = client.job.get(jid)
    assert j.priority == 4 and metadata(j) == {}

    assert client.job.disable(jid, bm.DisableJobOption.requeue, raw=True).response.status_code == 202
    wait_job_state(client, jid, bm.JobState.disabled)
    assert client.job.enable(jid, raw=True).response.status_code == 202
    wait_job_state(client, jid, bm.JobState.active)
    assert client.job.terminate(jid, terminate_reason="bye", raw=True).response.status_code == 202
    j = wait_job_state(client, jid, bm.JobState.completed)
    assert j.execution_info.terminate_reason == "bye"
    expect_batch_error(lambda: client.task.add(jid, bm.TaskAddParameter("late", "/bin/true")),
                       409, "JobCompleted")


def test_job_task_counts_2017(client, job_id):
    """2017-09-01.6.0 TaskCounts is flat {active, running, completed, succeeded, failed,
    validationStatus}, all required (swagger 2017 TaskCounts)."""
    ids = add_tasks(client, job_id, 3)
    client.task.terminate(job_id, ids[0])
    c = client.job.get_task_counts(job_id)
    assert (c.active, c.running, c.completed, c.succeeded, c.failed) == (2, 0, 1, 0, 1), c
    assert c.validation_status == bm.TaskCountValidationStatus.validated


# == job schedules ==========================================================================

def schedule_param(sid: str, pool_id: str, **schedule) -> bm.JobScheduleAddParameter:
    return bm.JobScheduleAddParameter(sid, bm.Schedule(**schedule),
                                      bm.JobSpecification(bm.PoolInformation(pool_id=pool_id)))


def test_job_schedule_crud_and_errors(client, pool_id):
    """job_schedule add (201)/get/list/exists/patch (200)/disable, enable (204)/delete
    (202); duplicate -> 409 JobScheduleExists; gone -> 404 JobScheduleNotFound."""
    sid = unique("v4s")
    later = (dt.datetime.now(UTC) + dt.timedelta(days=1)).replace(microsecond=0)
    assert client.job_schedule.add(schedule_param(
        sid, pool_id, do_not_run_until=later, recurrence_interval=dt.timedelta(hours=1)),
        raw=True).response.status_code == 201
    s = client.job_schedule.get(sid)
    assert s.state == bm.JobScheduleState.active
    assert s.schedule.recurrence_interval == dt.timedelta(hours=1)
    assert s.execution_info.next_run_time == later
    assert sid in [x.id for x in client.job_schedule.list()]
    assert client.job_schedule.exists(sid) is True
    expect_batch_error(lambda: client.job_schedule.add(schedule_param(sid, pool_id)), 409,
                       "JobScheduleExists")
    assert client.job_schedule.patch(sid, bm.JobSchedulePatchParameter(
        metadata=[bm.MetadataItem("x", "y")]), raw=True).response.status_code == 200
    assert metadata(client.job_schedule.get(sid)) == {"x": "y"}
    assert client.job_schedule.disable(sid, raw=True).response.status_code == 204
    assert client.job_schedule.get(sid).state == bm.JobScheduleState.disabled
    assert client.job_schedule.enable(sid, raw=True).response.status_code == 204
    assert client.job_schedule.delete(sid, raw=True).response.status_code == 202
    wait_for(lambda: not client.job_schedule.exists(sid), what="schedule deleted")
    expect_batch_error(lambda: client.job_schedule.get(sid), 404, "JobScheduleNotFound")


def test_job_schedule_creates_its_job_on_time(client, pool_id):
    """doNotRunUntil = now+2s, no recurrence: `{id}:job-1` appears within seconds and
    job.list_from_job_schedule shows it; terminate (202) completes the schedule."""
    sid = unique("v4s")
    client.job_schedule.add(schedule_param(
        sid, pool_id, do_not_run_until=dt.datetime.now(UTC) + dt.timedelta(seconds=2)))
    jobs = wait_for(lambda: list(client.job.list_from_job_schedule(sid)), timeout=10,
                    what="the schedule's job")
    assert [j.id for j in jobs] == [f"{sid}:job-1"]
    assert client.job.get(f"{sid}:job-1").pool_info.pool_id == pool_id
    assert client.job_schedule.terminate(sid, raw=True).response.status_code == 202
    wait_for(lambda: client.job_schedule.get(sid).state == bm.JobScheduleState.completed,
             what="schedule completed")
    client.job_schedule.delete(sid)


# == tasks ==================================================================================

def test_task_add_get_list_delete_with_blob_source(client, cobalt_batch, job_id):
    """task.add with ResourceFile(blob_source=...) -> 201; task.get returns it as
    blob_source, the 2017 wire uses blobSource, and the 2024 view shows httpUrl; delete
    -> 200 (not 202), then 404 TaskNotFound."""
    raw = client.task.add(job_id, bm.TaskAddParameter(
        "t1", "/bin/echo hi", resource_files=[bm.ResourceFile(BLOB, "data.txt", file_mode="0644")]),
        raw=True)
    assert raw.response.status_code == 201
    t = client.task.get(job_id, "t1")
    assert t.state == bm.TaskState.active and t.command_line == "/bin/echo hi"
    assert [(r.blob_source, r.file_path, r.file_mode) for r in t.resource_files] == \
        [(BLOB, "data.txt", "0644")]
    wire = batch_request(cobalt_batch, "GET", f"/jobs/{job_id}/tasks/t1", api_version=API_2017)
    assert wire.json()["resourceFiles"] == [{"blobSource": BLOB, "filePath": "data.txt",
                                             "fileMode": "0644"}], wire.json()
    new = batch_request(cobalt_batch, "GET", f"/jobs/{job_id}/tasks/t1", api_version=API_2024)
    assert new.json()["resourceFiles"] == [{"httpUrl": BLOB, "filePath": "data.txt",
                                            "fileMode": "0644"}], new.json()
    assert [x.id for x in client.task.list(job_id)] == ["t1"]
    expect_batch_error(lambda: client.task.add(job_id, bm.TaskAddParameter("t1", "/bin/true")),
                       409, "TaskExists")
    assert client.task.delete(job_id, "t1", raw=True).response.status_code == 200
    expect_batch_error(lambda: client.task.get(job_id, "t1"), 404, "TaskNotFound")
    expect_batch_error(lambda: client.task.add(unique("v4nojob"), bm.TaskAddParameter(
        "x", "/bin/true")), 404, "JobNotFound")


def test_task_created_with_http_url_reads_back_as_blob_source(client, cobalt_batch, job_id):
    """A task added through 2024-02-01 with httpUrl is seen by 4.0.0 as blob_source."""
    body = f'{{"id":"new","commandLine":"/bin/true","resourceFiles":[{{"httpUrl":"{BLOB}","filePath":"d"}}]}}'
    r = batch_request(cobalt_batch, "POST", f"/jobs/{job_id}/tasks", body=body.encode(),
                      api_version=API_2024)
    assert r.status == 201, r
    t = client.task.get(job_id, "new")
    assert [(x.blob_source, x.file_path) for x in t.resource_files] == [(BLOB, "d")]


def test_task_add_collection_100_and_existing_id(client, job_id):
    """add_collection of 100 -> 100 `success`; a collection repeating an id -> that task
    is clienterror TaskExists (4.0.0 has no bulk helper: the raw per-task result)."""
    result = client.task.add_collection(job_id, [
        bm.TaskAddParameter(f"c{i:03d}", "/bin/true",
                            resource_files=[bm.ResourceFile(BLOB, f"f{i}")]) for i in range(100)])
    assert len(result.value) == 100
    assert all(r.status == bm.TaskAddStatus.success and r.e_tag for r in result.value)
    assert len(list(client.task.list(job_id))) == 100
    result = client.task.add_collection(job_id, [bm.TaskAddParameter("c050", "/bin/false"),
                                                 bm.TaskAddParameter("d000", "/bin/true")])
    by_id = {r.task_id: r for r in result.value}
    assert by_id["d000"].status == bm.TaskAddStatus.success
    assert by_id["c050"].status == bm.TaskAddStatus.client_error
    assert by_id["c050"].error.code == "TaskExists"
    assert client.task.get(job_id, "c050").command_line == "/bin/true"


def test_paging_over_2500_tasks(client, job_id):
    """2,500 tasks; maxresults=1000 -> 3 pages (1000, 1000, 500) followed through the
    absolute nextLink that 4.0.0 GETs verbatim; maxresults=400 with $filter -> 7 pages."""
    ids = add_tasks(client, job_id, 2500)

    def pages_of(opts):
        paged = client.task.list(job_id, opts)
        pages = []
        while True:
            try:
                pages.append([t.id for t in paged.advance_page()])
            except StopIteration:
                return pages
            assert len(pages) < 20, "nextLink never ends"

    pages = pages_of(bm.TaskListOptions(max_results=1000, select="id"))
    assert [len(p) for p in pages] == [1000, 1000, 500]
    assert sorted(t for p in pages for t in p) == ids
    pages = pages_of(bm.TaskListOptions(max_results=400, filter="state eq 'active'",
                                        select="id,state"))
    assert [len(p) for p in pages] == [400] * 6 + [100]
    assert len({t for p in pages for t in p}) == 2500


def test_task_filter_select_terminate_reactivate_update(client, job_id):
    """terminate (204) -> completed/failure/TaskEnded; $filter by state and $select;
    reactivate (204) -> active; update (200) sets constraints; stale If-Match -> 412."""
    ids = add_tasks(client, job_id, 4)
    assert client.task.terminate(job_id, ids[0], raw=True).response.status_code == 204
    t = client.task.get(job_id, ids[0])
    assert t.state == bm.TaskState.completed
    assert t.execution_info.result == bm.TaskExecutionResult.failure
    assert t.execution_info.failure_info.code == "TaskEnded"
    assert t.execution_info.failure_info.category == bm.ErrorCategory.user_error
    done = list(client.task.list(job_id, bm.TaskListOptions(filter="state eq 'completed'",
                                                            select="id,state")))
    assert [(x.id, x.state, x.command_line) for x in done] == \
        [(ids[0], bm.TaskState.completed, None)]
    assert client.task.reactivate(job_id, ids[0], raw=True).response.status_code == 204
    t = client.task.get(job_id, ids[0])
    assert t.state == bm.TaskState.active and t.execution_info.failure_info is None

    stale = t.e_tag
    assert client.task.update(job_id, ids[0], constraints=bm.TaskConstraints(
        max_wall_clock_time=dt.timedelta(hours=2), max_task_retry_count=1),
        raw=True).response.status_code == 200
    t = client.task.get(job_id, ids[0])
    assert t.constraints.max_wall_clock_time == dt.timedelta(hours=2)
    assert t.constraints.max_task_retry_count == 1
    expect_batch_error(lambda: client.task.update(
        job_id, ids[0], task_update_options=bm.TaskUpdateOptions(if_match=stale),
        constraints=bm.TaskConstraints(max_task_retry_count=3)), 412, "ConditionNotMet")


# == the 2017-09-01.6.0 schema on the wire ====================================================

# Property names of the 2017-09-01.6.0 swagger definitions (shared/reference/spec/
# BatchService-2017-09-01.6.0.json). A 2017 response carries nothing else: newer fields
# (requiredSlots, maxParallelTasks, allowTaskPreemption, taskSlotsPerNode, httpUrl, ...)
# belong to later api-versions (batch-rest.md section 9).
SCHEMA_2017 = {
    "CloudPool": {
        "allocationState", "allocationStateTransitionTime", "applicationLicenses",
        "applicationPackageReferences", "autoScaleEvaluationInterval", "autoScaleFormula",
        "autoScaleRun", "certificateReferences", "cloudServiceConfiguration", "creationTime",
        "currentDedicatedNodes", "currentLowPriorityNodes", "displayName", "eTag",
        "enableAutoScale", "enableInterNodeCommunication", "id", "lastModified",
        "maxTasksPerNode", "metadata", "networkConfiguration", "resizeErrors", "resizeTimeout",
        "startTask", "state", "stateTransitionTime", "stats", "targetDedicatedNodes",
        "targetLowPriorityNodes", "taskSchedulingPolicy", "url", "userAccounts",
        "virtualMachineConfiguration", "vmSize"},
    "CloudJob": {
        "commonEnvironmentSettings", "constraints", "creationTime", "displayName", "eTag",
        "executionInfo", "id", "jobManagerTask", "jobPreparationTask", "jobReleaseTask",
        "lastModified", "metadata", "onAllTasksComplete", "onTaskFailure", "poolInfo",
        "previousState", "previousStateTransitionTime", "priority", "state",
        "stateTransitionTime", "stats", "url", "usesTaskDependencies"},
    "CloudTask": {
        "affinityInfo", "applicationPackageReferences", "authenticationTokenSettings",
        "commandLine", "constraints", "containerSettings", "creationTime", "dependsOn",
        "displayName", "eTag", "environmentSettings", "executionInfo", "exitConditions", "id",
        "lastModified", "multiInstanceSettings", "nodeInfo", "outputFiles", "previousState",
        "previousStateTransitionTime", "resourceFiles", "state", "stateTransitionTime", "stats",
        "url", "userIdentity"},
    "CloudJobSchedule": {
        "creationTime", "displayName", "eTag", "executionInfo", "id", "jobSpecification",
        "lastModified", "metadata", "previousState", "previousStateTransitionTime", "schedule",
        "state", "stateTransitionTime", "stats", "url"},
    "JobSpecification": {
        "commonEnvironmentSettings", "constraints", "displayName", "jobManagerTask",
        "jobPreparationTask", "jobReleaseTask", "metadata", "onAllTasksComplete",
        "onTaskFailure", "poolInfo", "priority", "usesTaskDependencies"},
}


def test_2017_responses_carry_only_2017_properties(client, cobalt_batch, pool_id):
    """GET pool/job/task/job schedule (and their lists) at api-version 2017-09-01.6.0
    return only properties of the 2017 swagger's CloudPool/CloudJob/CloudTask/
    CloudJobSchedule (e.g. no requiredSlots, maxParallelTasks, allowTaskPreemption)."""
    jid, sid = unique("v4j"), unique("v4s")
    client.job.add(bm.JobAddParameter(jid, bm.PoolInformation(pool_id=pool_id)))
    client.task.add(jid, bm.TaskAddParameter("t", "/bin/true"))
    client.job_schedule.add(schedule_param(sid, pool_id,
                                           do_not_run_until=dt.datetime(2099, 1, 1, tzinfo=UTC)))

    def get(path):
        r = batch_request(cobalt_batch, "GET", path, api_version=API_2017)
        assert r.status == 200, r
        return r.json()

    extra = {}
    for name, body in [("CloudPool", get(f"/pools/{pool_id}")),
                       ("CloudJob", get(f"/jobs/{jid}")),
                       ("CloudTask", get(f"/jobs/{jid}/tasks/t")),
                       ("CloudJobSchedule", get(f"/jobschedules/{sid}")),
                       ("CloudTask", get(f"/jobs/{jid}/tasks")["value"][0]),
                       ("CloudJob", [j for j in get("/jobs")["value"] if j["id"] == jid][0])]:
        unknown = set(body) - SCHEMA_2017[name] - {"odata.metadata"}
        if unknown:
            extra.setdefault(name, set()).update(unknown)
    spec = get(f"/jobschedules/{sid}")["jobSpecification"]
    unknown = set(spec) - SCHEMA_2017["JobSpecification"]
    if unknown:
        extra["JobSpecification"] = unknown
    assert not extra, f"properties that api-version 2017-09-01.6.0 does not have: {extra}"
