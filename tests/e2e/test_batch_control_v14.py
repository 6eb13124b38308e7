"""Batch control plane end to end with azure-batch 14.2.0 (api-version 2024-02-01.19.0):
pools, jobs, job schedules and tasks, driven through the SDK's own operations against the
real `cobalt` binary. Run with .venv/batch-14 (see run.sh).

Compute nodes do not exist yet, so nothing here expects progress that only a node could
make: a pool with targetDedicatedNodes > 0 stays `resizing`, tasks stay `active` until the
user terminates them, and task files are unavailable. Everything asserted below is what
Azure Batch itself answers for the same requests (shared/reference/batch-rest.md sections
5-10, azure-batch-model.md section 2, and the operation descriptions of the official
swagger in shared/reference/spec/).

Every test uses its own uuid-suffixed ids: the server is shared by the whole session.
"""
from __future__ import annotations

import datetime as dt
import json
import re
import time
import uuid

import pytest
from azure.batch import BatchServiceClient
from azure.batch import models as bm
from azure.batch.batch_auth import SharedKeyCredentials

from e2e_support import (BATCH_ACCOUNT, BATCH_KEY, WRONG_KEY, batch_request, unique,
                         wait_for)

API_VERSION = "2024-02-01.19.0"
VM_SIZE = "standard_d2s_v3"
UTC = dt.timezone.utc


def make_client(url: str, key: str = BATCH_KEY) -> BatchServiceClient:
    return BatchServiceClient(SharedKeyCredentials(BATCH_ACCOUNT, key), batch_url=url)


@pytest.fixture(scope="module")
def client(cobalt_batch) -> BatchServiceClient:
    return make_client(cobalt_batch)


def vm_config() -> bm.VirtualMachineConfiguration:
    return bm.VirtualMachineConfiguration(
        image_reference=bm.ImageReference(
            publisher="canonical", offer="0001-com-ubuntu-server-jammy", sku="22_04-lts",
            version="latest"),
        node_agent_sku_id="batch.node.ubuntu 22.04")


def pool_param(pool_id: str, nodes: int = 0, **kw) -> bm.PoolAddParameter:
    return bm.PoolAddParameter(id=pool_id, vm_size=VM_SIZE,
                               virtual_machine_configuration=vm_config(),
                               target_dedicated_nodes=nodes, **kw)


def expect_batch_error(fn, status: int, codes) -> bm.BatchErrorException:
    """fn() must raise the SDK's own BatchErrorException with this HTTP status and one of
    `codes` (batch-rest.md section 8: `.error.code`, `.error.message.value`)."""
    codes = (codes,) if isinstance(codes, str) else tuple(codes)
    with pytest.raises(bm.BatchErrorException) as ei:
        fn()
    e = ei.value
    assert e.response.status_code == status, (e.response.status_code, e.response.text)
    assert e.error is not None, e.response.text
    assert e.error.code in codes, (e.error.code, e.response.text)
    assert e.error.message is not None and e.error.message.value, e.response.text
    assert e.response.headers.get("request-id"), dict(e.response.headers)
    return e


def metadata(item) -> dict:
    return {m.name: m.value for m in (item.metadata or [])}


@pytest.fixture(scope="module")
def pool_id(client) -> str:
    """A pool with no nodes (allocationState steady) that the jobs of this module target."""
    pid = unique("v14pool")
    client.pool.add(pool_param(pid, 0))
    yield pid
    try:
        client.pool.delete(pid)
    except bm.BatchErrorException:
        pass


@pytest.fixture
def job_id(client, pool_id) -> str:
    jid = unique("v14job")
    client.job.add(bm.JobAddParameter(id=jid, pool_info=bm.PoolInformation(pool_id=pool_id)))
    yield jid
    try:
        client.job.delete(jid)
    except bm.BatchErrorException:
        pass


def wait_steady(client, pid: str, timeout: float = 10) -> bm.CloudPool:
    """A new pool starts `resizing` (azure-batch-model.md 2.3: steady -> resizing on
    create); with nothing to allocate it settles at `steady`."""
    return wait_for(lambda: (lambda p: p if p.allocation_state == bm.AllocationState.steady
                             else None)(client.pool.get(pid)), timeout,
                    what=f"pool {pid} steady")


def wait_pool_gone(client, pid: str, timeout: float = 10):
    wait_for(lambda: not client.pool.exists(pid), timeout, what=f"pool {pid} deleted")


def wait_job_state(client, jid: str, state, timeout: float = 10) -> bm.CloudJob:
    return wait_for(lambda: (lambda j: j if j.state == state else None)(client.job.get(jid)),
                    timeout, what=f"job {jid} reaching {state}")


def wait_job_gone(client, jid: str, timeout: float = 10):
    def gone():
        try:
            client.job.get(jid)
            return False
        except bm.BatchErrorException as e:
            assert e.response.status_code == 404, e.response.text
            return True
    wait_for(gone, timeout, what=f"job {jid} deleted")


def add_tasks(client, jid: str, count: int, prefix: str = "t", start: int = 0):
    """count tasks in add_collection calls of (at most) 100, ids prefix00000, prefix00001..."""
    ids = [f"{prefix}{i:05d}" for i in range(start, start + count)]
    for k in range(0, len(ids), 100):
        chunk = [bm.TaskAddParameter(id=t, command_line=f"/bin/sh -c 'echo {t}'")
                 for t in ids[k:k + 100]]
        result = client.task.add_collection(jid, chunk)
        assert sorted(r.task_id for r in result.value) == sorted(ids[k:k + 100])
        assert all(r.status == bm.TaskAddStatus.success for r in result.value), result.value
    return ids


# == pools ==================================================================================

def test_pool_add_get_list_exists_delete(client):
    """POST /pools -> 201; GET returns the pool as created (state active, server fields
    set); it is listed; HEAD exists -> True; DELETE -> 202, then the pool goes away
    (deleting -> 404 PoolNotFound) and exists -> False (14.x returns False on 404)."""
    pid = unique("v14p")
    raw = client.pool.add(pool_param(pid, 0, display_name="first pool",
                                     metadata=[bm.MetadataItem(name="k", value="v")]),
                           raw=True)
    assert raw.response.status_code == 201
    assert raw.response.headers.get("ETag"), dict(raw.response.headers)
    assert raw.response.headers.get("DataServiceId", "").endswith(f"/pools/{pid}")

    p = client.pool.get(pid)
    assert p.allocation_state in (bm.AllocationState.resizing, bm.AllocationState.steady)
    p = wait_steady(client, pid)   # target 0: nothing to allocate
    assert p.id == pid and p.display_name == "first pool"
    assert p.vm_size == VM_SIZE
    assert p.state == bm.PoolState.active
    assert p.target_dedicated_nodes == 0 and p.current_dedicated_nodes == 0
    assert p.virtual_machine_configuration.node_agent_sku_id == "batch.node.ubuntu 22.04"
    assert p.virtual_machine_configuration.image_reference.offer == "0001-com-ubuntu-server-jammy"
    assert metadata(p) == {"k": "v"}
    assert p.e_tag and p.e_tag == raw.response.headers["ETag"]
    assert re.fullmatch(r"0x[0-9A-F]{15,16}", p.e_tag), p.e_tag   # unquoted, as Azure sends
    assert p.url.endswith(f"/pools/{pid}")
    assert isinstance(p.creation_time, dt.datetime) and isinstance(p.last_modified, dt.datetime)
    assert p.task_slots_per_node == 1

    assert pid in [x.id for x in client.pool.list()]
    assert client.pool.exists(pid) is True

    raw = client.pool.delete(pid, raw=True)
    assert raw.response.status_code == 202
    wait_pool_gone(client, pid)
    expect_batch_error(lambda: client.pool.get(pid), 404, "PoolNotFound")
    assert client.pool.exists(pid) is False
    assert pid not in [x.id for x in client.pool.list()]


def test_pool_with_target_nodes_gets_its_nodes(client):
    """targetDedicatedNodes=2: the pool gets two local nodes (`steady`, currentDedicatedNodes
    2), which become `idle` once their agents are up; deleting the pool removes them."""
    pid = unique("v14p")
    client.pool.add(pool_param(pid, 2))
    p = wait_steady(client, pid)
    assert (p.target_dedicated_nodes, p.current_dedicated_nodes) == (2, 2)
    def two_idle():
        idle = [n for n in client.compute_node.list(pid) if n.state == bm.ComputeNodeState.idle]
        return idle if len(idle) == 2 else None
    nodes = wait_for(two_idle, timeout=20, what="two idle nodes")
    for n in nodes:
        assert n.id.startswith("tvm-") and n.scheduling_state == bm.SchedulingState.enabled
        assert client.compute_node.get(pid, n.id).state == bm.ComputeNodeState.idle
    client.pool.delete(pid)
    wait_pool_gone(client, pid)


def test_pool_add_twice_is_409_pool_exists(client, pool_id):
    """Adding a pool whose id exists -> 409 PoolExists (batch-rest.md section 8)."""
    expect_batch_error(lambda: client.pool.add(pool_param(pool_id)), 409, "PoolExists")


def test_pool_ids_are_case_insensitive(client, pool_id):
    """Ids are case-preserving but case-insensitive (azure-batch-model.md 2.1)."""
    assert client.pool.get(pool_id.upper()).id == pool_id
    expect_batch_error(lambda: client.pool.add(pool_param(pool_id.upper())), 409, "PoolExists")


def test_missing_pool_is_404_pool_not_found(client):
    """get/delete/patch/resize of an unknown pool -> 404 PoolNotFound; exists -> False
    (14.x turns the HEAD 404 into False, batch-rest.md section 5)."""
    missing = unique("v14nopool")
    expect_batch_error(lambda: client.pool.get(missing), 404, "PoolNotFound")
    expect_batch_error(lambda: client.pool.delete(missing), 404, "PoolNotFound")
    expect_batch_error(lambda: client.pool.patch(missing, bm.PoolPatchParameter(
        metadata=[])), 404, "PoolNotFound")
    expect_batch_error(lambda: client.pool.resize(missing, bm.PoolResizeParameter(
        target_dedicated_nodes=1)), 404, "PoolNotFound")
    assert client.pool.exists(missing) is False


def test_pool_add_with_invalid_id_is_400(client):
    """Ids allow letters, digits, '-' and '_' (at most 64): anything else is rejected
    with 400 InvalidPropertyValue and nothing is created."""
    e = expect_batch_error(lambda: client.pool.add(pool_param("bad id!")), 400,
                           "InvalidPropertyValue")
    details = {v.key: v.value for v in (e.error.values or [])}
    assert details.get("PropertyName") == "id", details   # as in batch-rest.md section 8
    expect_batch_error(lambda: client.pool.add(pool_param("x" * 65)), 400,
                       "InvalidPropertyValue")


def test_pool_patch_replaces_only_given_properties(client):
    """PATCH /pools/{id} -> 200; properties absent from the request are kept
    (swagger Pool_Patch)."""
    pid = unique("v14p")
    client.pool.add(pool_param(pid, metadata=[bm.MetadataItem(name="a", value="1")],
                               start_task=bm.StartTask(command_line="/bin/true")))
    etag0 = client.pool.get(pid).e_tag
    raw = client.pool.patch(pid, bm.PoolPatchParameter(
        metadata=[bm.MetadataItem(name="b", value="2")]), raw=True)
    assert raw.response.status_code == 200
    p = client.pool.get(pid)
    assert metadata(p) == {"b": "2"}
    assert p.start_task is not None and p.start_task.command_line == "/bin/true"
    assert p.e_tag != etag0, "an update must change the ETag"
    # The update response names the new version (ETag, Last-Modified) and the entity.
    assert raw.response.headers.get("ETag") == p.e_tag, dict(raw.response.headers)
    assert raw.response.headers.get("Last-Modified", "").endswith(" GMT")
    assert raw.response.headers.get("DataServiceId", "").endswith(f"/pools/{pid}")

    client.pool.patch(pid, bm.PoolPatchParameter(start_task=bm.StartTask(command_line="/bin/echo hi")))
    p = client.pool.get(pid)
    assert p.start_task.command_line == "/bin/echo hi"
    assert metadata(p) == {"b": "2"}
    client.pool.delete(pid)


def test_pool_update_properties_replaces_everything(client):
    """POST /pools/{id}/updateproperties -> 204; it replaces all updatable properties:
    a start task absent from the request is removed (swagger Pool_UpdateProperties)."""
    pid = unique("v14p")
    client.pool.add(pool_param(pid, metadata=[bm.MetadataItem(name="a", value="1")],
                               start_task=bm.StartTask(command_line="/bin/true")))
    raw = client.pool.update_properties(pid, bm.PoolUpdatePropertiesParameter(
        certificate_references=[], application_package_references=[],
        metadata=[bm.MetadataItem(name="c", value="3")]), raw=True)
    assert raw.response.status_code == 204
    p = client.pool.get(pid)
    assert metadata(p) == {"c": "3"}
    assert p.start_task is None
    client.pool.update_properties(pid, bm.PoolUpdatePropertiesParameter(
        certificate_references=[], application_package_references=[], metadata=[],
        start_task=bm.StartTask(command_line="/bin/echo again")))
    p = client.pool.get(pid)
    assert metadata(p) == {}
    assert p.start_task.command_line == "/bin/echo again"
    client.pool.delete(pid)


def test_pool_resize_and_stop_resize(client):
    """resize (202) moves a steady pool to `resizing` with the new target; stopresize (202)
    goes through `stopping` to `steady`, keeping the nodes allocated so far; resizing to 0
    settles at `steady` (swagger Pool_Resize / Pool_StopResize)."""
    pid = unique("v14p")
    client.pool.add(pool_param(pid, 0))
    wait_steady(client, pid)
    raw = client.pool.resize(pid, bm.PoolResizeParameter(target_dedicated_nodes=2), raw=True)
    assert raw.response.status_code == 202
    p = client.pool.get(pid)
    assert p.allocation_state in (bm.AllocationState.resizing, bm.AllocationState.steady)
    assert p.target_dedicated_nodes == 2
    # (A second resize while resizing is 409 PoolBeingResized: covered in the control
    # plane's tests, since local nodes are allocated at once and the window is too short.)
    raw = client.pool.stop_resize(pid, raw=True)
    assert raw.response.status_code == 202
    p = client.pool.get(pid)
    assert p.allocation_state in (bm.AllocationState.stopping, bm.AllocationState.steady)
    # Azure keeps the nodes allocated so far; here they are allocated at once.
    assert 0 <= wait_steady(client, pid).current_dedicated_nodes <= 2

    client.pool.resize(pid, bm.PoolResizeParameter(target_dedicated_nodes=0))
    p = wait_steady(client, pid)
    assert p.target_dedicated_nodes == 0
    client.pool.delete(pid)


def test_pool_list_filter_and_select(client):
    """GET /pools with $filter (startswith(id, ...), state eq) and $select: only the
    matching pools, and only the selected properties."""
    prefix = "v14flt" + uuid.uuid4().hex[:8]
    ids = [f"{prefix}-{i}" for i in range(3)]
    for pid in ids:
        client.pool.add(pool_param(pid, metadata=[bm.MetadataItem(name="n", value=pid)]))
    opts = bm.PoolListOptions(filter=f"startswith(id, '{prefix}')", select="id,state")
    got = list(client.pool.list(opts))
    assert sorted(p.id for p in got) == ids
    for p in got:
        assert p.state == bm.PoolState.active
        assert p.vm_size is None and p.metadata is None and p.e_tag is None, p
    opts = bm.PoolListOptions(filter=f"startswith(id, '{prefix}') and state eq 'deleting'")
    assert list(client.pool.list(opts)) == []
    opts = bm.PoolListOptions(filter=f"id eq '{ids[1]}'")
    assert [p.id for p in client.pool.list(opts)] == [ids[1]]
    p = client.pool.get(ids[0], bm.PoolGetOptions(select="id,vmSize"))
    assert (p.id, p.vm_size, p.state, p.metadata) == (ids[0], VM_SIZE, None, None)
    for pid in ids:
        client.pool.delete(pid)


def test_pool_invalid_filter_is_400(client):
    """An unparsable $filter -> 400 InvalidQueryParameterValue."""
    expect_batch_error(lambda: list(client.pool.list(bm.PoolListOptions(
        filter="id eq"))), 400, ("InvalidQueryParameterValue", "InvalidInput"))


def test_pool_if_match_with_stale_etag_is_412(client):
    """If-Match with an ETag the pool no longer has -> 412 ConditionNotMet and nothing
    changes; with the current ETag the update goes through (batch-rest.md section 8)."""
    pid = unique("v14p")
    client.pool.add(pool_param(pid))
    stale = client.pool.get(pid).e_tag
    client.pool.patch(pid, bm.PoolPatchParameter(metadata=[bm.MetadataItem(name="v", value="1")]))
    current = client.pool.get(pid).e_tag
    assert current != stale
    expect_batch_error(lambda: client.pool.patch(
        pid, bm.PoolPatchParameter(metadata=[bm.MetadataItem(name="v", value="2")]),
        bm.PoolPatchOptions(if_match=stale)), 412, "ConditionNotMet")
    assert metadata(client.pool.get(pid)) == {"v": "1"}
    client.pool.patch(pid, bm.PoolPatchParameter(metadata=[bm.MetadataItem(name="v", value="3")]),
                      bm.PoolPatchOptions(if_match=current))
    assert metadata(client.pool.get(pid)) == {"v": "3"}
    expect_batch_error(lambda: client.pool.delete(pid, bm.PoolDeleteOptions(if_match=current)),
                       412, "ConditionNotMet")
    assert client.pool.exists(pid)
    client.pool.delete(pid)


def test_pool_conditional_get_on_the_wire(client, cobalt_batch):
    """GET with If-None-Match: <current ETag> -> 304 without a body; with another ETag ->
    200. If-Unmodified-Since in the past on PATCH -> 412 ConditionNotMet."""
    pid = unique("v14p")
    client.pool.add(pool_param(pid))
    etag = client.pool.get(pid).e_tag
    r = batch_request(cobalt_batch, "GET", f"/pools/{pid}", headers={"If-None-Match": etag},
                      api_version=API_VERSION)
    assert r.status == 304, r
    assert r.body == b""
    r = batch_request(cobalt_batch, "GET", f"/pools/{pid}", headers={"If-None-Match": "0x8D000"},
                      api_version=API_VERSION)
    assert r.status == 200, r
    assert r.headers.get("ETag") == etag
    lm = r.headers.get("Last-Modified")
    r = batch_request(cobalt_batch, "GET", f"/pools/{pid}", headers={"If-Modified-Since": lm},
                      api_version=API_VERSION)
    assert r.status == 304, r
    r = batch_request(cobalt_batch, "GET", f"/pools/{pid}",
                      headers={"If-Modified-Since": "Sat, 01 Jan 2000 00:00:00 GMT"},
                      api_version=API_VERSION)
    assert r.status == 200, r
    past = dt.datetime(2001, 1, 1, tzinfo=UTC)
    expect_batch_error(lambda: client.pool.patch(
        pid, bm.PoolPatchParameter(metadata=[]), bm.PoolPatchOptions(if_unmodified_since=past)),
        412, "ConditionNotMet")
    client.pool.delete(pid)


def test_wrong_key_on_pool_operations_is_403(cobalt_batch):
    """A wrong account key on pool/job operations -> 403 AuthenticationFailed,
    raised as BatchErrorException."""
    bad = make_client(cobalt_batch, key=WRONG_KEY)
    expect_batch_error(lambda: bad.pool.add(pool_param(unique("v14p"))), 403,
                       "AuthenticationFailed")
    expect_batch_error(lambda: list(bad.job.list()), 403, "AuthenticationFailed")


# == jobs ===================================================================================

def test_job_add_get_list_delete(client, pool_id):
    """POST /jobs -> 201; GET shows state active, the pool, priority 0 and an
    executionInfo with startTime and poolId; DELETE -> 202, then 404 JobNotFound."""
    jid = unique("v14j")
    raw = client.job.add(bm.JobAddParameter(
        id=jid, display_name="my job", priority=10,
        pool_info=bm.PoolInformation(pool_id=pool_id),
        constraints=bm.JobConstraints(max_task_retry_count=2),
        metadata=[bm.MetadataItem(name="m", value="1")]), raw=True)
    assert raw.response.status_code == 201
    j = client.job.get(jid)
    assert (j.id, j.display_name, j.priority) == (jid, "my job", 10)
    assert j.state == bm.JobState.active
    assert j.pool_info.pool_id == pool_id
    assert j.constraints.max_task_retry_count == 2
    assert metadata(j) == {"m": "1"}
    assert j.execution_info is not None and j.execution_info.start_time is not None
    assert j.execution_info.pool_id == pool_id
    assert j.e_tag and j.url.endswith(f"/jobs/{jid}")
    assert jid in [x.id for x in client.job.list()]

    raw = client.job.delete(jid, raw=True)
    assert raw.response.status_code == 202
    wait_job_gone(client, jid)
    expect_batch_error(lambda: client.job.get(jid), 404, "JobNotFound")


def test_job_add_twice_is_409_and_missing_job_is_404(client, job_id, pool_id):
    """Duplicate job id -> 409 JobExists; get/delete/terminate/list-tasks of an unknown
    job -> 404 JobNotFound."""
    expect_batch_error(lambda: client.job.add(bm.JobAddParameter(
        id=job_id, pool_info=bm.PoolInformation(pool_id=pool_id))), 409, "JobExists")
    missing = unique("v14nojob")
    expect_batch_error(lambda: client.job.get(missing), 404, "JobNotFound")
    expect_batch_error(lambda: client.job.delete(missing), 404, "JobNotFound")
    expect_batch_error(lambda: client.job.terminate(missing), 404, "JobNotFound")
    expect_batch_error(lambda: list(client.task.list(missing)), 404, "JobNotFound")


def test_job_priority_out_of_range_is_400(client, pool_id):
    """Job priority is -1000..1000 (azure-batch-model.md 2.2)."""
    expect_batch_error(lambda: client.job.add(bm.JobAddParameter(
        id=unique("v14j"), priority=5000, pool_info=bm.PoolInformation(pool_id=pool_id))),
        400, ("OutOfRangePriority", "InvalidPropertyValue"))


def test_job_patch_keeps_and_update_replaces(client, pool_id):
    """PATCH /jobs/{id} (200) replaces only the given properties; PUT /jobs/{id} (200)
    replaces all updatable ones: constraints and metadata absent from it are removed
    (swagger Job_Patch / Job_Update)."""
    jid = unique("v14j")
    client.job.add(bm.JobAddParameter(
        id=jid, pool_info=bm.PoolInformation(pool_id=pool_id), priority=1,
        constraints=bm.JobConstraints(max_task_retry_count=3),
        metadata=[bm.MetadataItem(name="a", value="1")]))
    raw = client.job.patch(jid, bm.JobPatchParameter(priority=500), raw=True)
    assert raw.response.status_code == 200
    j = client.job.get(jid)
    assert j.priority == 500
    assert j.constraints.max_task_retry_count == 3
    assert metadata(j) == {"a": "1"}

    raw = client.job.update(jid, bm.JobUpdateParameter(
        pool_info=bm.PoolInformation(pool_id=pool_id), priority=-5), raw=True)
    assert raw.response.status_code == 200
    j = client.job.get(jid)
    assert j.priority == -5
    assert metadata(j) == {}
    assert j.constraints is None or j.constraints.max_task_retry_count in (None, 0), j.constraints
    client.job.delete(jid)


@pytest.mark.parametrize("option", [bm.DisableJobOption.requeue, bm.DisableJobOption.terminate,
                                    bm.DisableJobOption.wait])
def test_job_disable_and_enable(client, job_id, option):
    """disable (202) -> disabling -> disabled, previousState active; enable (202) ->
    enabling -> active. disableTasks only acts on *running* tasks (swagger
    DisableJobOption), so active tasks stay active, untouched, whatever the option."""
    add_tasks(client, job_id, 2)
    raw = client.job.disable(job_id, option, raw=True)
    assert raw.response.status_code == 202
    j = wait_job_state(client, job_id, bm.JobState.disabled)
    assert j.previous_state in (bm.JobState.active, bm.JobState.disabling)
    tasks = list(client.task.list(job_id))
    assert [t.state for t in tasks] == [bm.TaskState.active] * 2
    assert all(t.execution_info.failure_info is None for t in tasks)
    raw = client.job.enable(job_id, raw=True)
    assert raw.response.status_code == 202
    j = wait_job_state(client, job_id, bm.JobState.active)
    assert j.previous_state in (bm.JobState.disabled, bm.JobState.enabling)


def test_recreated_job_starts_empty(client, pool_id):
    """Deleting a job deletes its tasks: a new job with the same id has none."""
    jid = unique("v14j")
    client.job.add(bm.JobAddParameter(id=jid, pool_info=bm.PoolInformation(pool_id=pool_id)))
    add_tasks(client, jid, 3)
    client.job.delete(jid)
    wait_job_gone(client, jid)
    client.job.add(bm.JobAddParameter(id=jid, pool_info=bm.PoolInformation(pool_id=pool_id)))
    assert list(client.task.list(jid)) == []
    assert client.job.get_task_counts(jid).task_counts.active == 0
    expect_batch_error(lambda: client.task.get(jid, "t00000"), 404, "TaskNotFound")


def test_job_terminate_completes_job_and_keeps_active_tasks(client, job_id):
    """terminate (202) -> terminating -> completed with executionInfo.terminateReason and
    endTime; active tasks stay active (swagger Job_Terminate); no task can be added to a
    completed job (409 JobCompleted)."""
    add_tasks(client, job_id, 3)
    raw = client.job.terminate(job_id, terminate_reason="done by test", raw=True)
    assert raw.response.status_code == 202
    j = wait_job_state(client, job_id, bm.JobState.completed)
    assert j.execution_info.terminate_reason == "done by test"
    assert j.execution_info.end_time is not None
    assert {t.state for t in client.task.list(job_id)} == {bm.TaskState.active}
    expect_batch_error(lambda: client.task.add(job_id, bm.TaskAddParameter(
        id="late", command_line="/bin/true")), 409, "JobCompleted")
    # "A completed job accepts no more tasks and no changes" (azure-batch-model.md 2.3);
    # disabling is only possible from active/disabling/disabled (swagger Job_Disable).
    expect_batch_error(lambda: client.job.patch(job_id, bm.JobPatchParameter(priority=1)),
                       409, "JobCompleted")
    expect_batch_error(lambda: client.job.disable(job_id, bm.DisableJobOption.requeue),
                       409, ("JobCompleted", "JobNotActive", "OperationInvalidForCurrentState"))
    expect_batch_error(lambda: client.job.terminate(job_id), 409, "JobCompleted")


def test_job_on_all_tasks_complete_terminates_the_job(client, pool_id):
    """onAllTasksComplete=terminatejob: once every task is completed (here: terminated by
    the user) the job completes with terminateReason AllTasksComplete; an empty job with
    terminatejob counts as all complete at once (azure-batch-model.md 2.4)."""
    jid = unique("v14j")
    client.job.add(bm.JobAddParameter(id=jid, pool_info=bm.PoolInformation(pool_id=pool_id)))
    ids = add_tasks(client, jid, 2)
    client.job.patch(jid, bm.JobPatchParameter(
        on_all_tasks_complete=bm.OnAllTasksComplete.terminate_job))
    assert client.job.get(jid).state == bm.JobState.active    # tasks still active
    client.task.terminate(jid, ids[0])
    assert client.job.get(jid).state == bm.JobState.active
    client.task.terminate(jid, ids[1])
    j = wait_job_state(client, jid, bm.JobState.completed)
    assert j.execution_info.terminate_reason == "AllTasksComplete"

    empty = unique("v14j")
    client.job.add(bm.JobAddParameter(id=empty, pool_info=bm.PoolInformation(pool_id=pool_id),
                                      on_all_tasks_complete=bm.OnAllTasksComplete.terminate_job))
    j = wait_job_state(client, empty, bm.JobState.completed)
    assert j.execution_info.terminate_reason == "AllTasksComplete"


def test_job_list_pages(client, pool_id):
    """maxresults=4 over 10 jobs: pages of 4, 4, 2 through odata.nextLink."""
    prefix = "v14jp" + uuid.uuid4().hex[:8]
    ids = [f"{prefix}-{i:02d}" for i in range(10)]
    for jid in ids:
        client.job.add(bm.JobAddParameter(id=jid, pool_info=bm.PoolInformation(pool_id=pool_id)))
    paged = client.job.list(bm.JobListOptions(filter=f"startswith(id, '{prefix}')", max_results=4))
    pages = []
    while True:
        try:
            pages.append([j.id for j in paged.advance_page()])
        except StopIteration:
            break
        assert len(pages) < 10
    assert [len(p) for p in pages] == [4, 4, 2]
    assert sorted(j for p in pages for j in p) == ids


def test_job_terminate_default_reason_is_user_terminate(client, job_id):
    """Terminate without a reason: terminateReason is UserTerminate
    (azure-batch-model.md 2.2)."""
    client.job.terminate(job_id)
    j = wait_job_state(client, job_id, bm.JobState.completed)
    assert j.execution_info.terminate_reason == "UserTerminate"


def test_job_task_counts(client, job_id):
    """GET /jobs/{id}/taskcounts: 5 tasks, 2 of them terminated -> active 3, completed 2,
    failed 2 (a terminated task's result is failure), and the same slot counts."""
    ids = add_tasks(client, job_id, 5)
    for t in ids[:2]:
        client.task.terminate(job_id, t)
    r = client.job.get_task_counts(job_id)
    c = r.task_counts
    assert (c.active, c.running, c.completed, c.succeeded, c.failed) == (3, 0, 2, 0, 2), c
    s = r.task_slot_counts
    assert (s.active, s.running, s.completed, s.succeeded, s.failed) == (3, 0, 2, 0, 2), s


def test_job_list_filter_and_select(client, pool_id):
    """$filter=startswith(id, ...) and state eq 'active'|'completed' returns exactly the
    matching jobs; $select=id,state leaves the other properties out."""
    prefix = "v14jf" + uuid.uuid4().hex[:8]
    ids = [f"{prefix}-{i}" for i in range(3)]
    for jid in ids:
        client.job.add(bm.JobAddParameter(id=jid, pool_info=bm.PoolInformation(pool_id=pool_id)))
    client.job.terminate(ids[0])
    wait_job_state(client, ids[0], bm.JobState.completed)
    active = list(client.job.list(bm.JobListOptions(
        filter=f"startswith(id, '{prefix}') and state eq 'active'", select="id,state")))
    assert sorted(j.id for j in active) == ids[1:]
    for j in active:
        assert j.state == bm.JobState.active
        assert j.pool_info is None and j.priority is None and j.e_tag is None, j
    done = list(client.job.list(bm.JobListOptions(
        filter=f"startswith(id, '{prefix}') and state eq 'completed'")))
    assert [j.id for j in done] == [ids[0]]


def test_job_if_match_with_stale_etag_is_412(client, job_id):
    """PATCH /jobs/{id} with a stale If-Match -> 412 ConditionNotMet; nothing changes."""
    stale = client.job.get(job_id).e_tag
    client.job.patch(job_id, bm.JobPatchParameter(priority=7))
    expect_batch_error(lambda: client.job.patch(job_id, bm.JobPatchParameter(priority=9),
                                                bm.JobPatchOptions(if_match=stale)),
                       412, "ConditionNotMet")
    assert client.job.get(job_id).priority == 7


# == job schedules ==========================================================================

def schedule_param(sid: str, pool_id: str, **schedule) -> bm.JobScheduleAddParameter:
    return bm.JobScheduleAddParameter(
        id=sid, schedule=bm.Schedule(**schedule),
        job_specification=bm.JobSpecification(
            pool_info=bm.PoolInformation(pool_id=pool_id), priority=3))


def test_job_schedule_add_get_list_exists_delete(client, pool_id):
    """POST /jobschedules -> 201; GET shows state active, the schedule and job
    specification, and executionInfo.nextRunTime = doNotRunUntil; no job is created
    before it; exists -> True; DELETE -> 202, then 404 JobScheduleNotFound."""
    sid = unique("v14s")
    later = (dt.datetime.now(UTC) + dt.timedelta(days=1)).replace(microsecond=0)
    raw = client.job_schedule.add(schedule_param(
        sid, pool_id, do_not_run_until=later, recurrence_interval=dt.timedelta(hours=1)),
        raw=True)
    assert raw.response.status_code == 201
    s = client.job_schedule.get(sid)
    assert s.id == sid and s.state == bm.JobScheduleState.active
    assert s.schedule.recurrence_interval == dt.timedelta(hours=1)
    assert s.schedule.do_not_run_until == later
    assert s.job_specification.pool_info.pool_id == pool_id
    assert s.job_specification.priority == 3
    assert s.execution_info.next_run_time == later
    assert s.execution_info.recent_job is None
    assert s.e_tag and s.url.endswith(f"/jobschedules/{sid}")
    assert sid in [x.id for x in client.job_schedule.list()]
    assert client.job_schedule.exists(sid) is True
    assert list(client.job.list_from_job_schedule(sid)) == []

    raw = client.job_schedule.delete(sid, raw=True)
    assert raw.response.status_code == 202
    wait_for(lambda: not client.job_schedule.exists(sid), what="schedule deleted")
    expect_batch_error(lambda: client.job_schedule.get(sid), 404, "JobScheduleNotFound")


def test_job_schedule_errors(client, pool_id):
    """Duplicate schedule id -> 409 JobScheduleExists; get/delete/list-jobs of an unknown
    schedule -> 404 JobScheduleNotFound; exists -> False."""
    sid = unique("v14s")
    client.job_schedule.add(schedule_param(sid, pool_id,
                                           do_not_run_until=dt.datetime(2099, 1, 1, tzinfo=UTC)))
    expect_batch_error(lambda: client.job_schedule.add(schedule_param(sid, pool_id)), 409,
                       "JobScheduleExists")
    missing = unique("v14nos")
    expect_batch_error(lambda: client.job_schedule.get(missing), 404, "JobScheduleNotFound")
    expect_batch_error(lambda: client.job_schedule.delete(missing), 404, "JobScheduleNotFound")
    expect_batch_error(lambda: list(client.job.list_from_job_schedule(missing)), 404,
                       "JobScheduleNotFound")
    assert client.job_schedule.exists(missing) is False
    client.job_schedule.delete(sid)


def test_job_schedule_recurrence_below_one_minute_is_400(client, pool_id):
    """recurrenceInterval and startWindow have a 1-minute minimum: 400 (swagger Schedule)."""
    expect_batch_error(lambda: client.job_schedule.add(schedule_param(
        unique("v14s"), pool_id, recurrence_interval=dt.timedelta(seconds=30))), 400,
        "InvalidPropertyValue")
    expect_batch_error(lambda: client.job_schedule.add(schedule_param(
        unique("v14s"), pool_id, start_window=dt.timedelta(seconds=10))), 400,
        "InvalidPropertyValue")


def test_job_schedule_creates_its_job_on_time(client, pool_id):
    """doNotRunUntil = now+2s, no recurrence: the job `{id}:job-1` appears within a few
    seconds with the schedule's job specification, list_from_job_schedule shows it,
    executionInfo.recentJob names it and nextRunTime is gone; once that job finishes the
    schedule completes (swagger Schedule.recurrenceInterval: one job, then complete)."""
    sid = unique("v14s")
    start = dt.datetime.now(UTC) + dt.timedelta(seconds=2)
    client.job_schedule.add(schedule_param(sid, pool_id, do_not_run_until=start))
    job_name = f"{sid}:job-1"
    assert list(client.job.list_from_job_schedule(sid)) == []

    jobs = wait_for(lambda: list(client.job.list_from_job_schedule(sid)), timeout=10,
                    what="the schedule's first job")
    assert [j.id for j in jobs] == [job_name]
    j = client.job.get(job_name)
    assert j.state == bm.JobState.active
    assert j.pool_info.pool_id == pool_id and j.priority == 3
    assert j.creation_time >= start - dt.timedelta(seconds=1), (j.creation_time, start)
    s = client.job_schedule.get(sid)
    assert s.execution_info.recent_job is not None and s.execution_info.recent_job.id == job_name
    assert s.execution_info.next_run_time is None
    assert s.state == bm.JobScheduleState.active   # its job is still running

    client.job.terminate(job_name)
    wait_for(lambda: client.job_schedule.get(sid).state == bm.JobScheduleState.completed,
             what="schedule completed after its only job finished")
    assert client.job_schedule.get(sid).execution_info.end_time is not None

    client.job_schedule.delete(sid)
    wait_for(lambda: not client.job_schedule.exists(sid), what="schedule deleted")
    expect_batch_error(lambda: client.job.get(job_name), 404, "JobNotFound")


def test_recurring_schedule_runs_now_and_plans_the_next_run(client, pool_id):
    """recurrenceInterval PT1M without doNotRunUntil: the first job is created at once and
    executionInfo.nextRunTime is one interval after it was due (about a minute from now);
    no second job exists before then."""
    sid = unique("v14s")
    before = dt.datetime.now(UTC)
    client.job_schedule.add(schedule_param(sid, pool_id, recurrence_interval=dt.timedelta(minutes=1)))
    wait_for(lambda: list(client.job.list_from_job_schedule(sid)), what="first recurring job")
    s = client.job_schedule.get(sid)
    assert s.execution_info.recent_job.id == f"{sid}:job-1"
    nxt = s.execution_info.next_run_time
    assert nxt is not None
    assert before + dt.timedelta(seconds=55) <= nxt <= before + dt.timedelta(seconds=65), (before, nxt)
    client.job.terminate(f"{sid}:job-1")
    wait_job_state(client, f"{sid}:job-1", bm.JobState.completed)
    time.sleep(0.5)
    assert [j.id for j in client.job.list_from_job_schedule(sid)] == [f"{sid}:job-1"]
    assert client.job_schedule.get(sid).state == bm.JobScheduleState.active
    client.job_schedule.delete(sid)


def test_job_schedule_completes_after_do_not_run_after(client, pool_id):
    """doNotRunUntil far ahead, doNotRunAfter = now+1s: no job is ever created and the
    schedule moves to completed once the deadline has passed (swagger
    Schedule.doNotRunAfter)."""
    sid = unique("v14s")
    now = dt.datetime.now(UTC)
    client.job_schedule.add(schedule_param(sid, pool_id,
                                           do_not_run_until=now + dt.timedelta(hours=1),
                                           do_not_run_after=now + dt.timedelta(seconds=1)))
    s = wait_for(lambda: (lambda x: x if x.state == bm.JobScheduleState.completed else None)(
        client.job_schedule.get(sid)), timeout=10, what="schedule completed after doNotRunAfter")
    assert s.execution_info.end_time is not None
    assert list(client.job.list_from_job_schedule(sid)) == []
    client.job_schedule.delete(sid)


def test_job_schedule_disable_enable_terminate(client, pool_id):
    """disable/enable -> 204 (disabled/active); terminate -> 202, terminating ->
    completed, and the schedule's active job is terminated with terminateReason
    TerminateJobSchedule."""
    sid = unique("v14s")
    client.job_schedule.add(schedule_param(sid, pool_id))   # no doNotRunUntil: runs now
    job_name = f"{sid}:job-1"
    wait_for(lambda: client.job_schedule.get(sid).execution_info.recent_job,
             what="the schedule's job")
    raw = client.job_schedule.disable(sid, raw=True)
    assert raw.response.status_code == 204
    assert client.job_schedule.get(sid).state == bm.JobScheduleState.disabled
    raw = client.job_schedule.enable(sid, raw=True)
    assert raw.response.status_code == 204
    assert client.job_schedule.get(sid).state == bm.JobScheduleState.active
    raw = client.job_schedule.terminate(sid, raw=True)
    assert raw.response.status_code == 202
    wait_for(lambda: client.job_schedule.get(sid).state == bm.JobScheduleState.completed,
             what="schedule completed")
    j = wait_job_state(client, job_name, bm.JobState.completed)
    assert j.execution_info.terminate_reason == "TerminateJobSchedule"
    expect_batch_error(lambda: client.job_schedule.enable(sid), 409,
                       ("JobScheduleCompleted", "OperationInvalidForCurrentState"))
    client.job_schedule.delete(sid)


def test_job_schedule_patch_and_update(client, pool_id):
    """PATCH keeps what it does not mention; PUT replaces schedule, job specification and
    metadata."""
    sid = unique("v14s")
    far = dt.datetime(2099, 1, 1, tzinfo=UTC)
    client.job_schedule.add(bm.JobScheduleAddParameter(
        id=sid, schedule=bm.Schedule(do_not_run_until=far),
        job_specification=bm.JobSpecification(pool_info=bm.PoolInformation(pool_id=pool_id)),
        metadata=[bm.MetadataItem(name="a", value="1")]))
    raw = client.job_schedule.patch(sid, bm.JobSchedulePatchParameter(
        schedule=bm.Schedule(do_not_run_until=far, recurrence_interval=dt.timedelta(hours=2))),
        raw=True)
    assert raw.response.status_code == 200
    s = client.job_schedule.get(sid)
    assert s.schedule.recurrence_interval == dt.timedelta(hours=2)
    assert metadata(s) == {"a": "1"}
    raw = client.job_schedule.update(sid, bm.JobScheduleUpdateParameter(
        schedule=bm.Schedule(do_not_run_until=far),
        job_specification=bm.JobSpecification(pool_info=bm.PoolInformation(pool_id=pool_id),
                                               priority=9)), raw=True)
    assert raw.response.status_code == 200
    s = client.job_schedule.get(sid)
    assert s.schedule.recurrence_interval is None
    assert s.job_specification.priority == 9
    assert metadata(s) == {}
    client.job_schedule.delete(sid)


# == tasks ==================================================================================

def test_task_add_get_list_delete(client, job_id):
    """POST /jobs/{j}/tasks -> 201; GET shows state active with default constraints and
    executionInfo counters at 0; DELETE -> 200 (not 202), then 404 TaskNotFound."""
    raw = client.task.add(job_id, bm.TaskAddParameter(
        id="t1", command_line="/bin/sh -c 'echo hi'", display_name="first",
        environment_settings=[bm.EnvironmentSetting(name="A", value="1")],
        resource_files=[bm.ResourceFile(http_url="http://example.invalid/x", file_path="x")]),
        raw=True)
    assert raw.response.status_code == 201
    t = client.task.get(job_id, "t1")
    assert (t.id, t.display_name, t.command_line) == ("t1", "first", "/bin/sh -c 'echo hi'")
    assert t.state == bm.TaskState.active
    assert [(e.name, e.value) for e in t.environment_settings] == [("A", "1")]
    assert [(r.http_url, r.file_path) for r in t.resource_files] == [("http://example.invalid/x", "x")]
    assert t.constraints is not None
    assert t.constraints.retention_time == dt.timedelta(days=7)   # service default (§9)
    assert t.constraints.max_task_retry_count == 0
    assert t.execution_info is not None
    assert (t.execution_info.retry_count, t.execution_info.requeue_count) == (0, 0)
    assert t.node_info is None
    assert t.e_tag and t.url.endswith(f"/jobs/{job_id}/tasks/t1")
    assert [x.id for x in client.task.list(job_id)] == ["t1"]

    raw = client.task.delete(job_id, "t1", raw=True)
    assert raw.response.status_code == 200
    expect_batch_error(lambda: client.task.get(job_id, "t1"), 404, "TaskNotFound")
    assert list(client.task.list(job_id)) == []


def test_task_inherits_the_jobs_max_task_retry_count(client, pool_id):
    """A task that does not set constraints.maxTaskRetryCount takes the job's
    (azure-batch-model.md 2.4); one that sets it keeps its own."""
    jid = unique("v14j")
    client.job.add(bm.JobAddParameter(id=jid, pool_info=bm.PoolInformation(pool_id=pool_id),
                                      constraints=bm.JobConstraints(max_task_retry_count=5)))
    client.task.add(jid, bm.TaskAddParameter(id="inherit", command_line="/bin/true"))
    client.task.add(jid, bm.TaskAddParameter(id="own", command_line="/bin/true",
                                             constraints=bm.TaskConstraints(max_task_retry_count=1)))
    assert client.task.get(jid, "inherit").constraints.max_task_retry_count == 5
    assert client.task.get(jid, "own").constraints.max_task_retry_count == 1
    client.job.delete(jid)


def test_task_errors(client, job_id):
    """Duplicate task id -> 409 TaskExists; task in an unknown job -> 404 JobNotFound;
    unknown task -> 404 TaskNotFound; invalid id -> 400 InvalidPropertyValue."""
    client.task.add(job_id, bm.TaskAddParameter(id="dup", command_line="/bin/true"))
    expect_batch_error(lambda: client.task.add(job_id, bm.TaskAddParameter(
        id="dup", command_line="/bin/true")), 409, "TaskExists")
    expect_batch_error(lambda: client.task.add(unique("v14nojob"), bm.TaskAddParameter(
        id="x", command_line="/bin/true")), 404, "JobNotFound")
    expect_batch_error(lambda: client.task.get(job_id, "nope"), 404, "TaskNotFound")
    expect_batch_error(lambda: client.task.terminate(job_id, "nope"), 404, "TaskNotFound")
    expect_batch_error(lambda: client.task.add(job_id, bm.TaskAddParameter(
        id="bad id", command_line="/bin/true")), 400, "InvalidPropertyValue")
    # Ids are case-insensitive (azure-batch-model.md 2.1).
    expect_batch_error(lambda: client.task.add(job_id, bm.TaskAddParameter(
        id="DUP", command_line="/bin/true")), 409, "TaskExists")
    assert client.task.get(job_id, "DUP").id == "dup"


def test_reactivate_in_a_completed_job_is_409(client, job_id):
    """Reactivation fails if the job has completed (swagger Task_Reactivate)."""
    client.task.add(job_id, bm.TaskAddParameter(id="r", command_line="/bin/true"))
    client.task.terminate(job_id, "r")
    client.job.terminate(job_id)
    wait_job_state(client, job_id, bm.JobState.completed)
    expect_batch_error(lambda: client.task.reactivate(job_id, "r"), 409,
                       ("JobCompleted", "OperationInvalidForCurrentState"))
    assert client.task.get(job_id, "r").state == bm.TaskState.completed


def test_task_add_collection_of_100(client, job_id):
    """POST addtaskcollection with 100 tasks -> 200 with one `success` result per task
    (eTag, lastModified, location), and all 100 are listed."""
    tasks = [bm.TaskAddParameter(id=f"c{i:03d}", command_line=f"/bin/echo {i}") for i in range(100)]
    result = client.task.add_collection(job_id, tasks)
    assert len(result.value) == 100
    assert sorted(r.task_id for r in result.value) == [f"c{i:03d}" for i in range(100)]
    for r in result.value:
        assert r.status == bm.TaskAddStatus.success, r
        assert r.e_tag and r.last_modified is not None, r
        assert r.location and r.location.endswith(f"/jobs/{job_id}/tasks/{r.task_id}"), r
        assert r.error is None
    listed = sorted(t.id for t in client.task.list(job_id))
    assert listed == [f"c{i:03d}" for i in range(100)]
    assert client.task.get(job_id, "c042").command_line == "/bin/echo 42"


def test_task_add_collection_with_an_existing_id(client, job_id):
    """A collection containing the id of an existing task: that task gets a per-task
    `clienterror` with error.code TaskExists (the SDK helper passes it through as a
    result), the others are added, and the existing task is unchanged."""
    client.task.add(job_id, bm.TaskAddParameter(id="old", command_line="/bin/echo original"))
    result = client.task.add_collection(job_id, [
        bm.TaskAddParameter(id="new1", command_line="/bin/true"),
        bm.TaskAddParameter(id="old", command_line="/bin/echo replaced"),
        bm.TaskAddParameter(id="new2", command_line="/bin/true")])
    by_id = {r.task_id: r for r in result.value}
    assert set(by_id) == {"new1", "old", "new2"}
    assert by_id["new1"].status == by_id["new2"].status == bm.TaskAddStatus.success
    assert by_id["old"].status == bm.TaskAddStatus.client_error
    assert by_id["old"].error is not None and by_id["old"].error.code == "TaskExists"
    assert by_id["old"].error.message.value
    assert client.task.get(job_id, "old").command_line == "/bin/echo original"
    assert sorted(t.id for t in client.task.list(job_id)) == ["new1", "new2", "old"]


def test_task_add_collection_duplicate_in_one_request_on_the_wire(cobalt_batch, job_id):
    """Two tasks with the same id in one addtaskcollection: the id must not be reported
    added twice - either the request is rejected (400) or one result is success and the
    other clienterror TaskExists; exactly one task exists afterwards."""
    body = (b'{"value":[{"id":"twin","commandLine":"/bin/echo a"},'
            b'{"id":"twin","commandLine":"/bin/echo b"}]}')
    r = batch_request(cobalt_batch, "POST", f"/jobs/{job_id}/addtaskcollection", body=body,
                      api_version=API_VERSION)
    if r.status == 400:
        assert r.json()["code"] in ("InvalidPropertyValue", "InvalidRequestBody"), r
    else:
        assert r.status == 200, r
        statuses = sorted(v["status"] for v in r.json()["value"])
        assert statuses == ["clienterror", "success"], r.json()
        err = [v for v in r.json()["value"] if v["status"] == "clienterror"][0]
        assert err["error"]["code"] == "TaskExists", err
    listed = batch_request(cobalt_batch, "GET", f"/jobs/{job_id}/tasks", api_version=API_VERSION)
    assert [t["id"] for t in listed.json()["value"]] == (["twin"] if r.status == 200 else [])


def test_task_add_collection_over_100_is_rejected_on_the_wire(cobalt_batch, job_id):
    """At most 100 tasks per addtaskcollection (azure-batch-model.md 2.1)."""
    tasks = ",".join(f'{{"id":"o{i}","commandLine":"/bin/true"}}' for i in range(101))
    r = batch_request(cobalt_batch, "POST", f"/jobs/{job_id}/addtaskcollection",
                      body=f'{{"value":[{tasks}]}}'.encode(), api_version=API_VERSION)
    assert r.status in (400, 413), r
    listed = batch_request(cobalt_batch, "GET", f"/jobs/{job_id}/tasks", api_version=API_VERSION)
    assert listed.json()["value"] == []


def test_paging_over_2500_tasks(client, cobalt_batch, job_id):
    """2,500 tasks (25 add_collection calls of 100). With maxresults=1000 the SDK walks 3
    pages (1000, 1000, 500) through absolute odata.nextLinks carrying the api-version;
    together they hold every task exactly once, and a filtered listing pages too."""
    ids = add_tasks(client, job_id, 2500)
    paged = client.task.list(job_id, bm.TaskListOptions(max_results=1000, select="id"))
    pages = []
    while True:
        try:
            pages.append([t.id for t in paged.advance_page()])
        except StopIteration:
            break
        assert len(pages) < 10, "nextLink never ends"
    assert [len(p) for p in pages] == [1000, 1000, 500]
    flat = [t for p in pages for t in p]
    assert len(set(flat)) == 2500 and sorted(flat) == ids

    # Default page size is 1000 as well; iterating without options sees everything.
    assert sorted(t.id for t in client.task.list(job_id)) == ids

    # On the wire: absolute nextLink with api-version; none on the last page.
    r = batch_request(cobalt_batch, "GET", f"/jobs/{job_id}/tasks",
                      [("maxresults", "1000"), ("$select", "id")], api_version=API_VERSION)
    sizes = []
    while True:
        assert r.status == 200, r
        body = r.json()
        sizes.append(len(body["value"]))
        link = body.get("odata.nextLink")
        if not link:
            break
        assert link.startswith("http://"), link
        assert "api-version=" in link, link
        r = batch_request(cobalt_batch, "GET", link)
    assert sizes == [1000, 1000, 500]

    # A filter that matches every task pages the same way.
    opts = bm.TaskListOptions(filter="state eq 'active'", select="id,state", max_results=1000)
    assert len(list(client.task.list(job_id, opts))) == 2500


def test_small_pages(client, job_id):
    """maxresults=3 over 7 tasks: pages of 3, 3, 1 in id order."""
    ids = add_tasks(client, job_id, 7, prefix="s")
    paged = client.task.list(job_id, bm.TaskListOptions(max_results=3))
    pages = []
    while True:
        try:
            pages.append([t.id for t in paged.advance_page()])
        except StopIteration:
            break
        assert len(pages) < 10
    assert [len(p) for p in pages] == [3, 3, 1]
    assert sorted(t for p in pages for t in p) == ids


def test_task_list_filter_and_select(client, job_id):
    """$filter by state (active/completed) and $select on list and get; an unparsable
    filter -> 400."""
    ids = add_tasks(client, job_id, 6)
    for t in ids[:2]:
        client.task.terminate(job_id, t)
    done = list(client.task.list(job_id, bm.TaskListOptions(filter="state eq 'completed'")))
    assert sorted(t.id for t in done) == ids[:2]
    active = list(client.task.list(job_id, bm.TaskListOptions(
        filter="state eq 'active'", select="id,state")))
    assert sorted(t.id for t in active) == ids[2:]
    for t in active:
        assert t.state == bm.TaskState.active
        assert t.command_line is None and t.e_tag is None and t.execution_info is None, t
    t = client.task.get(job_id, ids[0], bm.TaskGetOptions(select="id,commandLine"))
    assert (t.id, t.command_line, t.state) == (ids[0], f"/bin/sh -c 'echo {ids[0]}'", None)
    expect_batch_error(lambda: list(client.task.list(job_id, bm.TaskListOptions(
        filter="state eq"))), 400, ("InvalidQueryParameterValue", "InvalidInput"))


def test_task_terminate(client, job_id):
    """POST .../terminate -> 204; the task is completed with executionInfo.result failure
    and failureInfo {category usererror, code TaskEnded}; terminating it again is 409
    TaskCompleted."""
    client.task.add(job_id, bm.TaskAddParameter(id="term", command_line="/bin/sleep 1000"))
    raw = client.task.terminate(job_id, "term", raw=True)
    assert raw.response.status_code == 204
    t = client.task.get(job_id, "term")
    assert t.state == bm.TaskState.completed
    assert t.previous_state == bm.TaskState.active
    assert t.execution_info.result == bm.TaskExecutionResult.failure
    fi = t.execution_info.failure_info
    assert fi is not None and fi.code == "TaskEnded", fi
    assert fi.category == bm.ErrorCategory.user_error, fi
    assert t.execution_info.end_time is not None
    expect_batch_error(lambda: client.task.terminate(job_id, "term"), 409, "TaskCompleted")


def test_task_reactivate(client, job_id):
    """POST .../reactivate -> 204 on a failed (terminated) task: back to active, result
    and failureInfo cleared, retryCount 0 (swagger Task_Reactivate); reactivating a task
    that is not completed is 409 TaskNotCompleted."""
    client.task.add(job_id, bm.TaskAddParameter(id="re", command_line="/bin/false"))
    expect_batch_error(lambda: client.task.reactivate(job_id, "re"), 409, "TaskNotCompleted")
    client.task.terminate(job_id, "re")
    raw = client.task.reactivate(job_id, "re", raw=True)
    assert raw.response.status_code == 204
    t = client.task.get(job_id, "re")
    assert t.state == bm.TaskState.active
    assert t.previous_state == bm.TaskState.completed
    assert t.execution_info.result is None and t.execution_info.failure_info is None
    assert t.execution_info.retry_count == 0


def test_task_update_constraints(client, job_id):
    """PUT /jobs/{j}/tasks/{t} -> 200 replaces the constraints; a stale If-Match -> 412."""
    client.task.add(job_id, bm.TaskAddParameter(id="upd", command_line="/bin/true"))
    stale = client.task.get(job_id, "upd").e_tag
    raw = client.task.update(job_id, "upd", constraints=bm.TaskConstraints(
        max_wall_clock_time=dt.timedelta(hours=1), retention_time=dt.timedelta(days=1),
        max_task_retry_count=4), raw=True)
    assert raw.response.status_code == 200
    t = client.task.get(job_id, "upd")
    assert t.constraints.max_wall_clock_time == dt.timedelta(hours=1)
    assert t.constraints.retention_time == dt.timedelta(days=1)
    assert t.constraints.max_task_retry_count == 4
    assert t.e_tag != stale
    expect_batch_error(lambda: client.task.update(
        job_id, "upd", constraints=bm.TaskConstraints(max_task_retry_count=1),
        task_update_options=bm.TaskUpdateOptions(if_match=stale)), 412, "ConditionNotMet")
    assert client.task.get(job_id, "upd").constraints.max_task_retry_count == 4


def test_task_slot_counts_follow_required_slots(client):
    """taskSlotCounts count requiredSlots, taskCounts count tasks (TaskCountsResult)."""
    pid, jid = unique("v14p"), unique("v14j")
    client.pool.add(pool_param(pid, task_slots_per_node=4))
    client.job.add(bm.JobAddParameter(id=jid, pool_info=bm.PoolInformation(pool_id=pid)))
    client.task.add_collection(jid, [
        bm.TaskAddParameter(id="big", command_line="/bin/true", required_slots=3),
        bm.TaskAddParameter(id="small", command_line="/bin/true")])
    client.task.terminate(jid, "big")
    r = client.job.get_task_counts(jid)
    assert (r.task_counts.active, r.task_counts.completed, r.task_counts.failed) == (1, 1, 1)
    assert (r.task_slot_counts.active, r.task_slot_counts.completed,
            r.task_slot_counts.failed) == (1, 3, 3), r.task_slot_counts
    assert client.task.get(jid, "big").required_slots == 3
    client.job.delete(jid)
    client.pool.delete(pid)


def test_task_dependencies_need_uses_task_dependencies(client, job_id, pool_id):
    """dependsOn on a job without usesTaskDependencies -> 400
    TaskDependenciesNotSpecifiedOnJob (azure-batch-model.md 2.4); with it -> 201."""
    expect_batch_error(lambda: client.task.add(job_id, bm.TaskAddParameter(
        id="child", command_line="/bin/true",
        depends_on=bm.TaskDependencies(task_ids=["parent"]))), 400,
        "TaskDependenciesNotSpecifiedOnJob")
    jid = unique("v14j")
    client.job.add(bm.JobAddParameter(id=jid, pool_info=bm.PoolInformation(pool_id=pool_id),
                                      uses_task_dependencies=True))
    client.task.add(jid, bm.TaskAddParameter(id="parent", command_line="/bin/true"))
    client.task.add(jid, bm.TaskAddParameter(
        id="child", command_line="/bin/true",
        depends_on=bm.TaskDependencies(task_ids=["parent"],
                                       task_id_ranges=[bm.TaskIdRange(start=1, end=3)])))
    t = client.task.get(jid, "child")
    assert t.depends_on.task_ids == ["parent"]
    assert [(r.start, r.end) for r in t.depends_on.task_id_ranges] == [(1, 3)]
    assert t.state == bm.TaskState.active


def test_bad_request_bodies_on_the_wire(cobalt_batch, job_id):
    """Missing required property -> 400 MissingRequiredProperty; unparsable JSON -> 400
    InvalidRequestBody (batch-rest.md section 8); nothing is created."""
    r = batch_request(cobalt_batch, "POST", f"/jobs/{job_id}/tasks", body=b'{"id":"nocmd"}',
                      api_version=API_VERSION)
    assert r.status == 400 and r.json()["code"] == "MissingRequiredProperty", r
    r = batch_request(cobalt_batch, "POST", f"/jobs/{job_id}/tasks", body=b'{"id":"x",',
                      api_version=API_VERSION)
    assert r.status == 400 and r.json()["code"] == "InvalidRequestBody", r
    r = batch_request(cobalt_batch, "POST", "/pools", body=b'{"id":"novm"}',
                      api_version=API_VERSION)
    assert r.status == 400 and r.json()["code"] == "MissingRequiredProperty", r
    r = batch_request(cobalt_batch, "GET", f"/jobs/{job_id}/tasks", api_version=API_VERSION)
    assert r.json()["value"] == []


def test_add_collection_bulk_helper_with_threads(client, job_id):
    """The SDK's bulk helper with 8 threads: 1,000 tasks in 10 concurrent requests."""
    tasks = [bm.TaskAddParameter(id=f"b{i:04d}", command_line="/bin/true") for i in range(1000)]
    result = client.task.add_collection(job_id, tasks, threads=8)
    assert len(result.value) == 1000
    assert all(r.status == bm.TaskAddStatus.success for r in result.value)
    assert client.job.get_task_counts(job_id).task_counts.active == 1000


def big_env():
    """20 environment settings of 750 characters: ~15.6 KB per task, so 100 tasks are
    ~1.5 MB, over the 1 MB addtaskcollection limit, and 50 are under it."""
    return [bm.EnvironmentSetting(name=f"E{k}", value="x" * 750) for k in range(20)]


def test_add_collection_over_1mb_is_413_and_the_helper_splits_it(client, cobalt_batch, job_id):
    """A collection over 1 MB -> 413 RequestBodyTooLarge (the code 14.x's helper looks
    for, batch-rest.md section 5); the helper then halves the chunk and all 100 tasks
    are added."""
    raw_tasks = [{"id": f"raw{i}", "commandLine": "/bin/true",
                  "environmentSettings": [{"name": e.name, "value": e.value} for e in big_env()]}
                 for i in range(100)]
    r = batch_request(cobalt_batch, "POST", f"/jobs/{job_id}/addtaskcollection",
                      body=json.dumps({"value": raw_tasks}).encode(), api_version=API_VERSION)
    assert r.status == 413 and r.json()["code"] == "RequestBodyTooLarge", r
    assert list(client.task.list(job_id)) == []

    tasks = [bm.TaskAddParameter(id=f"big{i:03d}", command_line="/bin/true",
                                 environment_settings=big_env()) for i in range(100)]
    result = client.task.add_collection(job_id, tasks)
    assert sorted(r.task_id for r in result.value) == [f"big{i:03d}" for i in range(100)]
    assert all(r.status == bm.TaskAddStatus.success for r in result.value)
    assert len(client.task.get(job_id, "big042").environment_settings) == 20


def test_task_files_are_unavailable_without_a_node(client, job_id):
    """A task that never ran has no files: 409 TaskFilesUnavailable."""
    client.task.add(job_id, bm.TaskAddParameter(id="f", command_line="/bin/true"))
    expect_batch_error(lambda: list(client.file.list_from_task(job_id, "f")), 409,
                       "TaskFilesUnavailable")


# == durability =============================================================================

@pytest.mark.needs_own_server
def test_state_survives_kill_9(cobalt_factory):
    """Pools, jobs, tasks and schedules written before a SIGKILL are all there, unchanged,
    after a restart on the same data directory."""
    server = cobalt_factory("durable")
    server.start()
    c = make_client(server.batch_url)
    pid, jid, sid = unique("dp"), unique("dj"), unique("ds")
    c.pool.add(pool_param(pid, 0, metadata=[bm.MetadataItem(name="k", value="v")]))
    wait_steady(c, pid)
    c.job.add(bm.JobAddParameter(id=jid, pool_info=bm.PoolInformation(pool_id=pid), priority=4))
    ids = add_tasks(c, jid, 150)
    c.task.terminate(jid, ids[0])
    c.job_schedule.add(schedule_param(sid, pid, do_not_run_until=dt.datetime(2099, 1, 1, tzinfo=UTC)))
    before = (c.pool.get(pid), c.job.get(jid), c.task.get(jid, ids[0]), c.job_schedule.get(sid))

    server.kill9()
    server.start()
    c = make_client(server.batch_url)
    after = (c.pool.get(pid), c.job.get(jid), c.task.get(jid, ids[0]), c.job_schedule.get(sid))
    for b, a in zip(before, after):
        assert a.id == b.id and a.e_tag == b.e_tag and a.state == b.state, (b, a)
    assert after[0].allocation_state == bm.AllocationState.steady
    assert metadata(after[0]) == {"k": "v"}
    assert after[1].priority == 4
    assert after[2].execution_info.failure_info.code == "TaskEnded"
    assert sorted(t.id for t in c.task.list(jid)) == ids
    counts = c.job.get_task_counts(jid).task_counts
    assert (counts.active, counts.completed) == (149, 1)
    server.kill9()


@pytest.mark.needs_own_server
def test_transitions_resume_after_kill_9(cobalt_factory):
    """Work the service had accepted but not finished when it was SIGKILLed is finished
    after the restart: a pool and a job being deleted disappear, a job being terminated
    completes, and a schedule whose doNotRunUntil passed while the server was down
    creates its job."""
    server = cobalt_factory("resume")
    server.start()
    c = make_client(server.batch_url)
    pid, jid, tjid, sid = unique("rp"), unique("rj"), unique("rt"), unique("rs")
    c.pool.add(pool_param(pid, 1))
    c.job.add(bm.JobAddParameter(id=jid, pool_info=bm.PoolInformation(pool_id=pid)))
    add_tasks(c, jid, 5)
    c.job.add(bm.JobAddParameter(id=tjid, pool_info=bm.PoolInformation(pool_id=pid)))
    c.job_schedule.add(schedule_param(
        sid, pid, do_not_run_until=dt.datetime.now(UTC) + dt.timedelta(seconds=2)))
    c.pool.delete(pid)
    c.job.delete(jid)
    c.job.terminate(tjid)
    server.kill9()          # within a lifecycle tick of the requests above
    time.sleep(2.5)         # the schedule falls due while the server is down

    server.start()
    c = make_client(server.batch_url)
    wait_pool_gone(c, pid)
    wait_job_gone(c, jid)
    assert wait_job_state(c, tjid, bm.JobState.completed).execution_info.terminate_reason \
        == "UserTerminate"
    jobs = wait_for(lambda: list(c.job.list_from_job_schedule(sid)), timeout=10,
                    what="schedule job after restart")
    assert [j.id for j in jobs] == [f"{sid}:job-1"]
