"""Batch control plane end to end with azure-batch 15.1.0 (azure-core generation,
api-version 2025-06-01, `BatchClient`): pools, jobs, job schedules and tasks, including the
SDK's long-running-operation wrappers (begin_*), against the real `cobalt` binary.
Run with .venv/batch-15 (see run.sh).

15.x maps errors to azure-core exceptions (batch-rest.md section 8): any request with
If-Match -> ResourceModifiedError, 404 -> ResourceNotFoundError, 409 ->
ResourceExistsError, 304 -> ResourceModifiedError, anything else -> HttpResponseError.
Its LRO pollers GET the entity until it leaves the transient state (section 5), so these
tests only pass if the server moves deleting/terminating/disabling/enabling/stopping on.

Compute nodes do not exist yet: nothing here expects node or task progress.
"""
from __future__ import annotations

import datetime as dt
import uuid

import pytest
from azure.batch import BatchClient
from azure.batch import models as bm
from azure.core import MatchConditions
from azure.core.credentials import AzureNamedKeyCredential
from azure.core.exceptions import (HttpResponseError, ResourceExistsError,
                                   ResourceModifiedError, ResourceNotFoundError)

from azure.batch.models._models import BatchJobTerminateOptions  # not re-exported by 15.1.0

from e2e_support import BATCH_ACCOUNT, BATCH_KEY, WRONG_KEY, batch_request, unique, wait_for

API_VERSION = "2025-06-01"
VM_SIZE = "standard_d2s_v3"
UTC = dt.timezone.utc
POLL = 1          # polling_interval (s) for the begin_* pollers (SDK default: 5)
LRO_TIMEOUT = 15  # seconds an LRO may take here before the test fails


def make_client(url: str, key: str = BATCH_KEY) -> BatchClient:
    # retry_total=0: an unexpected 5xx fails the test now instead of after 10 retries.
    return BatchClient(url, AzureNamedKeyCredential(BATCH_ACCOUNT, key), retry_total=0)


@pytest.fixture(scope="module")
def client(cobalt_batch) -> BatchClient:
    return make_client(cobalt_batch)


def status(pipeline_response, _deserialized, _headers) -> int:
    """cls= callback: the HTTP status of the response (the SDK checks it too)."""
    return pipeline_response.http_response.status_code


def vm_config() -> bm.VirtualMachineConfiguration:
    return bm.VirtualMachineConfiguration(
        image_reference=bm.BatchVmImageReference(
            publisher="canonical", offer="0001-com-ubuntu-server-jammy", sku="22_04-lts",
            version="latest"),
        node_agent_sku_id="batch.node.ubuntu 22.04")


def pool_options(pool_id: str, nodes: int = 0, **kw) -> bm.BatchPoolCreateOptions:
    return bm.BatchPoolCreateOptions(id=pool_id, vm_size=VM_SIZE,
                                     virtual_machine_configuration=vm_config(),
                                     target_dedicated_nodes=nodes, **kw)


def md(*pairs) -> list:
    return [bm.BatchMetadataItem(name=n, value=v) for n, v in pairs]


def metadata(item) -> dict:
    return {m.name: m.value for m in (item.metadata or [])}


def expect_error(fn, exc_type, status_code: int, codes) -> HttpResponseError:
    """fn() must raise exactly `exc_type` (the 15.x mapping) with this status and one of
    `codes` in .error.code (BatchError parsed by the SDK)."""
    codes = (codes,) if isinstance(codes, str) else tuple(codes)
    with pytest.raises(HttpResponseError) as ei:
        fn()
    e = ei.value
    assert type(e) is exc_type, (type(e), e)
    assert e.status_code == status_code, e
    assert e.error is not None and e.error.code in codes, (e.error and e.error.code, e)
    assert isinstance(e.error.message, str) and e.error.message, e
    assert e.response.headers.get("request-id"), dict(e.response.headers)
    return e


def finish(poller):
    """Wait for a begin_* poller; it must end Succeeded (the SDK marks a poll that hit an
    unexpected error as Failed without raising)."""
    poller.result(timeout=LRO_TIMEOUT)
    assert poller.done(), "LRO did not complete"
    assert poller.status() == "Succeeded", poller.status()


def terminate(reason: str) -> BatchJobTerminateOptions:
    """15.1.0 cannot send a job terminate without a reason: with no options (or empty
    ones, a falsy mapping) it builds a request with content-type None and raises
    ValueError before sending anything."""
    return BatchJobTerminateOptions(termination_reason=reason)


def wait_steady(client, pid: str) -> bm.BatchPool:
    return wait_for(lambda: (lambda p: p if p.allocation_state == bm.AllocationState.STEADY
                             else None)(client.get_pool(pid)), what=f"pool {pid} steady")


def add_tasks(client, jid: str, count: int, prefix: str = "t"):
    ids = [f"{prefix}{i:05d}" for i in range(count)]
    for k in range(0, count, 100):
        group = bm.BatchTaskGroup(task_values=[
            bm.BatchTaskCreateOptions(id=t, command_line=f"/bin/echo {t}") for t in ids[k:k + 100]])
        result = client.create_task_collection(jid, group)
        assert sorted(r.task_id for r in result.result_values) == ids[k:k + 100]
        assert all(r.status == bm.BatchTaskAddStatus.SUCCESS for r in result.result_values)
    return ids


@pytest.fixture(scope="module")
def pool_id(client) -> str:
    pid = unique("v15pool")
    client.create_pool(pool_options(pid, 0))
    yield pid
    try:
        client.begin_delete_pool(pid, polling_interval=POLL)
    except HttpResponseError:
        pass


@pytest.fixture
def job_id(client, pool_id) -> str:
    jid = unique("v15job")
    client.create_job(bm.BatchJobCreateOptions(id=jid, pool_info=bm.BatchPoolInfo(pool_id=pool_id)))
    return jid


# == pools ==================================================================================

def test_pool_create_get_list_exists_and_lro_delete(client):
    """create_pool -> 201; get_pool/list_pools/pool_exists see it; begin_delete_pool sends
    DELETE (202) and completes once the pool is gone; get_pool is then
    ResourceNotFoundError PoolNotFound and pool_exists raises ResourceNotFoundError too
    (15.1.0's error policy fires before the HEAD's 404 -> False, batch-rest.md section 5)."""
    pid = unique("v15p")
    assert client.create_pool(pool_options(pid, 0, display_name="p15", metadata=md(("k", "v"))),
                              cls=status) == 201
    p = wait_steady(client, pid)
    assert (p.id, p.display_name, p.vm_size) == (pid, "p15", VM_SIZE)
    assert p.state == bm.BatchPoolState.ACTIVE
    assert (p.target_dedicated_nodes, p.current_dedicated_nodes) == (0, 0)
    assert p.virtual_machine_configuration.node_agent_sku_id == "batch.node.ubuntu 22.04"
    assert metadata(p) == {"k": "v"}
    assert p.etag and p.url.endswith(f"/pools/{pid}")
    assert isinstance(p.last_modified, dt.datetime) and isinstance(p.creation_time, dt.datetime)
    assert pid in [x.id for x in client.list_pools()]
    assert client.pool_exists(pid) is True

    finish(client.begin_delete_pool(pid, polling_interval=POLL))
    expect_error(lambda: client.get_pool(pid), ResourceNotFoundError, 404, "PoolNotFound")
    with pytest.raises(ResourceNotFoundError) as ei:
        client.pool_exists(pid)
    assert ei.value.status_code == 404
    assert pid not in [x.id for x in client.list_pools()]


def test_pool_errors(client, pool_id, cobalt_batch):
    """Duplicate pool -> ResourceExistsError 409 PoolExists; unknown pool ->
    ResourceNotFoundError 404 PoolNotFound; invalid id -> HttpResponseError 400
    InvalidPropertyValue; wrong key -> HttpResponseError 403 AuthenticationFailed."""
    expect_error(lambda: client.create_pool(pool_options(pool_id)), ResourceExistsError, 409,
                 "PoolExists")
    missing = unique("v15nopool")
    expect_error(lambda: client.get_pool(missing), ResourceNotFoundError, 404, "PoolNotFound")
    expect_error(lambda: client.begin_delete_pool(missing), ResourceNotFoundError, 404,
                 "PoolNotFound")
    expect_error(lambda: client.create_pool(pool_options("bad id!")), HttpResponseError, 400,
                 "InvalidPropertyValue")
    bad = make_client(cobalt_batch, key=WRONG_KEY)
    expect_error(lambda: bad.get_pool(pool_id), HttpResponseError, 403, "AuthenticationFailed")
    expect_error(lambda: bad.create_pool(pool_options(unique("v15p"))), HttpResponseError, 403,
                 "AuthenticationFailed")


def test_pool_with_target_nodes_gets_nodes(client):
    """targetDedicatedNodes=2 -> two local nodes: the pool is steady with 2 current nodes,
    and list_nodes shows them going `idle` once their agents are up."""
    pid = unique("v15p")
    client.create_pool(pool_options(pid, 2))
    p = wait_steady(client, pid)
    assert (p.target_dedicated_nodes, p.current_dedicated_nodes) == (2, 2)

    def two_idle():
        idle = [n for n in client.list_nodes(pid) if n.state == bm.BatchNodeState.IDLE]
        return idle if len(idle) == 2 else None
    nodes = wait_for(two_idle, timeout=20, what="two idle nodes")
    assert client.get_node(pid, nodes[0].id).state == bm.BatchNodeState.IDLE
    finish(client.begin_delete_pool(pid, polling_interval=POLL))


def test_lro_resize_up_down_and_stop_resize(client):
    """begin_resize_pool to 2 completes once the pool is steady with 2 nodes, then to 0
    once they are gone; begin_stop_pool_resize on a steady pool completes at once."""
    pid = unique("v15p")
    client.create_pool(pool_options(pid, 0))
    wait_steady(client, pid)
    finish(client.begin_resize_pool(pid, bm.BatchPoolResizeOptions(target_dedicated_nodes=2),
                                    polling_interval=POLL))
    p = client.get_pool(pid)
    assert p.allocation_state == bm.AllocationState.STEADY
    assert (p.target_dedicated_nodes, p.current_dedicated_nodes) == (2, 2)
    assert len(list(client.list_nodes(pid))) == 2

    finish(client.begin_stop_pool_resize(pid, polling_interval=POLL))
    assert client.get_pool(pid).allocation_state == bm.AllocationState.STEADY

    finish(client.begin_resize_pool(pid, bm.BatchPoolResizeOptions(target_dedicated_nodes=0),
                                    polling_interval=POLL))
    p = client.get_pool(pid)
    assert p.allocation_state == bm.AllocationState.STEADY
    assert (p.target_dedicated_nodes, p.current_dedicated_nodes) == (0, 0)
    assert list(client.list_nodes(pid)) == []
    finish(client.begin_delete_pool(pid, polling_interval=POLL))


def test_pool_update_and_replace_properties(client):
    """update_pool (PATCH, 200) keeps what it does not mention; replace_pool_properties
    (POST updateproperties, 204) removes a start task it does not mention."""
    pid = unique("v15p")
    client.create_pool(pool_options(pid, metadata=md(("a", "1")),
                                    start_task=bm.BatchStartTask(command_line="/bin/true")))
    assert client.update_pool(pid, bm.BatchPoolUpdateOptions(metadata=md(("b", "2"))),
                              cls=status) == 200
    p = client.get_pool(pid)
    assert metadata(p) == {"b": "2"}
    assert p.start_task is not None and p.start_task.command_line == "/bin/true"
    assert client.replace_pool_properties(pid, bm.BatchPoolReplaceOptions(
        application_package_references=[], metadata=md(("c", "3"))), cls=status) == 204
    p = client.get_pool(pid)
    assert metadata(p) == {"c": "3"}
    assert p.start_task is None
    finish(client.begin_delete_pool(pid, polling_interval=POLL))


def test_pool_conditional_requests(client):
    """Stale If-Match on update_pool -> 412 ConditionNotMet, which 15.x raises as
    ResourceModifiedError; the current ETag works. get_pool with If-None-Match: <current>
    -> 304, also ResourceModifiedError in 15.x."""
    pid = unique("v15p")
    client.create_pool(pool_options(pid))
    stale = client.get_pool(pid).etag
    client.update_pool(pid, bm.BatchPoolUpdateOptions(metadata=md(("v", "1"))))
    current = client.get_pool(pid).etag
    assert current != stale
    expect_error(lambda: client.update_pool(
        pid, bm.BatchPoolUpdateOptions(metadata=md(("v", "2"))), etag=stale,
        match_condition=MatchConditions.IfNotModified), ResourceModifiedError, 412,
        "ConditionNotMet")
    assert metadata(client.get_pool(pid)) == {"v": "1"}
    client.update_pool(pid, bm.BatchPoolUpdateOptions(metadata=md(("v", "3"))), etag=current,
                       match_condition=MatchConditions.IfNotModified)
    assert metadata(client.get_pool(pid)) == {"v": "3"}
    now = client.get_pool(pid).etag
    with pytest.raises(ResourceModifiedError) as ei:
        client.get_pool(pid, etag=now, match_condition=MatchConditions.IfModified)
    assert ei.value.status_code == 304
    assert client.get_pool(pid, etag=stale, match_condition=MatchConditions.IfModified).id == pid
    finish(client.begin_delete_pool(pid, polling_interval=POLL))


def test_pool_list_filter_and_select(client):
    """list_pools(filter=..., select=[...]) and get_pool(select=[...]); a bad filter is
    HttpResponseError 400."""
    prefix = "v15flt" + uuid.uuid4().hex[:8]
    ids = [f"{prefix}-{i}" for i in range(3)]
    for pid in ids:
        client.create_pool(pool_options(pid, metadata=md(("n", pid))))
    got = list(client.list_pools(filter=f"startswith(id, '{prefix}')", select=["id", "state"]))
    assert sorted(p.id for p in got) == ids
    for p in got:
        assert p.state == bm.BatchPoolState.ACTIVE
        assert p.vm_size is None and p.metadata is None and p.etag is None, p
    assert [p.id for p in client.list_pools(filter=f"id eq '{ids[2]}'")] == [ids[2]]
    p = client.get_pool(ids[0], select=["id", "vmSize"])
    assert (p.id, p.vm_size, p.state) == (ids[0], VM_SIZE, None)
    expect_error(lambda: list(client.list_pools(filter="id eq")), HttpResponseError, 400,
                 ("InvalidQueryParameterValue", "InvalidInput"))
    for pid in ids:
        client.begin_delete_pool(pid)


# == jobs ===================================================================================

def test_job_create_get_list_and_lro_delete(client, pool_id):
    """create_job -> 201; get/list see it; begin_delete_job completes once the job is
    gone (deleting -> 404), then get_job -> ResourceNotFoundError JobNotFound."""
    jid = unique("v15j")
    assert client.create_job(bm.BatchJobCreateOptions(
        id=jid, priority=10, pool_info=bm.BatchPoolInfo(pool_id=pool_id),
        constraints=bm.BatchJobConstraints(max_task_retry_count=2), metadata=md(("m", "1"))),
        cls=status) == 201
    j = client.get_job(jid)
    assert (j.id, j.priority, j.state) == (jid, 10, bm.BatchJobState.ACTIVE)
    assert j.pool_info.pool_id == pool_id
    assert j.constraints.max_task_retry_count == 2
    assert metadata(j) == {"m": "1"}
    assert j.execution_info.start_time is not None and j.execution_info.pool_id == pool_id
    assert jid in [x.id for x in client.list_jobs()]
    finish(client.begin_delete_job(jid, polling_interval=POLL))
    expect_error(lambda: client.get_job(jid), ResourceNotFoundError, 404, "JobNotFound")


def test_job_errors(client, job_id, pool_id):
    """Duplicate job -> ResourceExistsError 409 JobExists; unknown job ->
    ResourceNotFoundError 404 JobNotFound; priority out of -1000..1000 -> 400."""
    expect_error(lambda: client.create_job(bm.BatchJobCreateOptions(
        id=job_id, pool_info=bm.BatchPoolInfo(pool_id=pool_id))), ResourceExistsError, 409,
        "JobExists")
    missing = unique("v15nojob")
    expect_error(lambda: client.get_job(missing), ResourceNotFoundError, 404, "JobNotFound")
    expect_error(lambda: client.begin_terminate_job(missing, terminate("x")),
                 ResourceNotFoundError, 404,
                 "JobNotFound")
    expect_error(lambda: client.create_job(bm.BatchJobCreateOptions(
        id=unique("v15j"), priority=5000, pool_info=bm.BatchPoolInfo(pool_id=pool_id))),
        HttpResponseError, 400, ("OutOfRangePriority", "InvalidPropertyValue"))


def test_lro_disable_and_enable_job(client, job_id):
    """begin_disable_job completes at disabled, begin_enable_job at active (the pollers
    wait while the job is disabling/enabling, batch-rest.md section 5)."""
    finish(client.begin_disable_job(job_id, bm.BatchJobDisableOptions(
        disable_tasks=bm.DisableBatchJobOption.REQUEUE), polling_interval=POLL))
    assert client.get_job(job_id).state == bm.BatchJobState.DISABLED
    finish(client.begin_enable_job(job_id, polling_interval=POLL))
    j = client.get_job(job_id)
    assert j.state == bm.BatchJobState.ACTIVE
    assert j.previous_state in (bm.BatchJobState.DISABLED, bm.BatchJobState.ENABLING)


def test_lro_terminate_job(client, job_id):
    """begin_terminate_job completes with the job completed, terminateReason as given;
    active tasks stay active; adding a task afterwards is 409 JobCompleted."""
    add_tasks(client, job_id, 2)
    finish(client.begin_terminate_job(job_id, terminate("enough"), polling_interval=POLL))
    j = client.get_job(job_id)
    assert j.state == bm.BatchJobState.COMPLETED
    assert j.execution_info.termination_reason == "enough"
    assert j.execution_info.end_time is not None
    assert {t.state for t in client.list_tasks(job_id)} == {bm.BatchTaskState.ACTIVE}
    expect_error(lambda: client.create_task(job_id, bm.BatchTaskCreateOptions(
        id="late", command_line="/bin/true")), ResourceExistsError, 409, "JobCompleted")


def test_job_update_and_replace(client, pool_id):
    """update_job (PATCH, 200) keeps unmentioned properties; replace_job (PUT, 200)
    removes them; a stale ETag -> ResourceModifiedError 412 ConditionNotMet."""
    jid = unique("v15j")
    client.create_job(bm.BatchJobCreateOptions(
        id=jid, pool_info=bm.BatchPoolInfo(pool_id=pool_id), priority=1,
        constraints=bm.BatchJobConstraints(max_task_retry_count=3), metadata=md(("a", "1"))))
    assert client.update_job(jid, bm.BatchJobUpdateOptions(priority=100), cls=status) == 200
    j = client.get_job(jid)
    assert (j.priority, j.constraints.max_task_retry_count, metadata(j)) == (100, 3, {"a": "1"})
    assert client.replace_job(jid, bm.BatchJob(pool_info=bm.BatchPoolInfo(pool_id=pool_id),
                                               priority=-3), cls=status) == 200
    j = client.get_job(jid)
    assert j.priority == -3
    assert metadata(j) == {}
    assert j.constraints is None or j.constraints.max_task_retry_count in (None, 0)
    stale = j.etag
    client.update_job(jid, bm.BatchJobUpdateOptions(priority=4))
    expect_error(lambda: client.update_job(jid, bm.BatchJobUpdateOptions(priority=5), etag=stale,
                                           match_condition=MatchConditions.IfNotModified),
                 ResourceModifiedError, 412, "ConditionNotMet")
    assert client.get_job(jid).priority == 4


def test_job_task_counts(client, job_id):
    """get_job_task_counts: 4 tasks, 1 terminated -> active 3, completed 1, failed 1."""
    ids = add_tasks(client, job_id, 4)
    client.terminate_task(job_id, ids[0])
    r = client.get_job_task_counts(job_id)
    c, s = r.task_counts, r.task_slot_counts
    assert (c.active, c.running, c.completed, c.succeeded, c.failed) == (3, 0, 1, 0, 1), c
    assert (s.active, s.running, s.completed, s.succeeded, s.failed) == (3, 0, 1, 0, 1), s


def test_job_list_filter_and_select(client, pool_id):
    """list_jobs(filter="... and state eq 'active'", select=[id, state]) returns only
    the active jobs, without unselected properties."""
    prefix = "v15jf" + uuid.uuid4().hex[:8]
    ids = [f"{prefix}-{i}" for i in range(3)]
    for jid in ids:
        client.create_job(bm.BatchJobCreateOptions(id=jid, pool_info=bm.BatchPoolInfo(pool_id=pool_id)))
    finish(client.begin_terminate_job(ids[1], terminate("test"), polling_interval=POLL))
    got = list(client.list_jobs(filter=f"startswith(id, '{prefix}') and state eq 'active'",
                                select=["id", "state"]))
    assert sorted(j.id for j in got) == [ids[0], ids[2]]
    for j in got:
        assert j.state == bm.BatchJobState.ACTIVE and j.pool_info is None and j.etag is None


# == job schedules ==========================================================================

def schedule_options(sid: str, pool_id: str, **schedule) -> bm.BatchJobScheduleCreateOptions:
    return bm.BatchJobScheduleCreateOptions(
        id=sid, schedule=bm.BatchJobScheduleConfiguration(**schedule),
        job_specification=bm.BatchJobSpecification(pool_info=bm.BatchPoolInfo(pool_id=pool_id),
                                                    priority=3))


def test_job_schedule_create_get_list_exists_and_lro_delete(client, pool_id):
    """create_job_schedule -> 201; get shows the schedule and nextRunTime; exists ->
    True; duplicate -> 409 JobScheduleExists; begin_delete_job_schedule completes, then
    404 and job_schedule_exists raises ResourceNotFoundError; recurrence < 1 min -> 400."""
    sid = unique("v15s")
    later = (dt.datetime.now(UTC) + dt.timedelta(days=1)).replace(microsecond=0)
    assert client.create_job_schedule(schedule_options(
        sid, pool_id, do_not_run_until=later, recurrence_interval=dt.timedelta(hours=1)),
        cls=status) == 201
    s = client.get_job_schedule(sid)
    assert s.state == bm.BatchJobScheduleState.ACTIVE
    assert s.schedule.recurrence_interval == dt.timedelta(hours=1)
    assert s.schedule.do_not_run_until == later
    assert s.execution_info.next_run_time == later
    assert s.job_specification.priority == 3
    assert sid in [x.id for x in client.list_job_schedules()]
    assert client.job_schedule_exists(sid) is True
    expect_error(lambda: client.create_job_schedule(schedule_options(sid, pool_id)),
                 ResourceExistsError, 409, "JobScheduleExists")
    finish(client.begin_delete_job_schedule(sid, polling_interval=POLL))
    expect_error(lambda: client.get_job_schedule(sid), ResourceNotFoundError, 404,
                 "JobScheduleNotFound")
    with pytest.raises(ResourceNotFoundError):
        client.job_schedule_exists(sid)
    expect_error(lambda: client.create_job_schedule(schedule_options(
        unique("v15s"), pool_id, recurrence_interval=dt.timedelta(seconds=20))),
        HttpResponseError, 400, "InvalidPropertyValue")


def test_job_schedule_creates_its_job_on_time(client, pool_id):
    """doNotRunUntil = now+2s, no recurrence: job `{id}:job-1` appears within a few
    seconds and list_jobs_from_schedule shows it; begin_terminate_job_schedule completes
    with the schedule completed and its job terminated (TerminateJobSchedule)."""
    sid = unique("v15s")
    start = dt.datetime.now(UTC) + dt.timedelta(seconds=2)
    client.create_job_schedule(schedule_options(sid, pool_id, do_not_run_until=start))
    assert list(client.list_jobs_from_schedule(sid)) == []
    jobs = wait_for(lambda: list(client.list_jobs_from_schedule(sid)), timeout=10,
                    what="the schedule's first job")
    assert [j.id for j in jobs] == [f"{sid}:job-1"]
    j = client.get_job(f"{sid}:job-1")
    assert j.pool_info.pool_id == pool_id and j.priority == 3
    assert j.creation_time >= start - dt.timedelta(seconds=1)
    assert client.get_job_schedule(sid).execution_info.recent_job.id == f"{sid}:job-1"

    assert client.disable_job_schedule(sid, cls=status) == 204
    assert client.get_job_schedule(sid).state == bm.BatchJobScheduleState.DISABLED
    assert client.enable_job_schedule(sid, cls=status) == 204
    assert client.get_job_schedule(sid).state == bm.BatchJobScheduleState.ACTIVE

    finish(client.begin_terminate_job_schedule(sid, polling_interval=POLL))
    assert client.get_job_schedule(sid).state == bm.BatchJobScheduleState.COMPLETED
    j = wait_for(lambda: (lambda x: x if x.state == bm.BatchJobState.COMPLETED else None)(
        client.get_job(f"{sid}:job-1")), what="schedule's job completed")
    assert j.execution_info.termination_reason == "TerminateJobSchedule"
    finish(client.begin_delete_job_schedule(sid, polling_interval=POLL))
    expect_error(lambda: client.get_job(f"{sid}:job-1"), ResourceNotFoundError, 404, "JobNotFound")


def test_job_schedule_update_and_replace(client, pool_id):
    """update_job_schedule (PATCH) keeps metadata; replace_job_schedule (PUT) replaces
    schedule, job specification and metadata."""
    sid = unique("v15s")
    far = dt.datetime(2099, 1, 1, tzinfo=UTC)
    client.create_job_schedule(bm.BatchJobScheduleCreateOptions(
        id=sid, schedule=bm.BatchJobScheduleConfiguration(do_not_run_until=far),
        job_specification=bm.BatchJobSpecification(pool_info=bm.BatchPoolInfo(pool_id=pool_id)),
        metadata=md(("a", "1"))))
    assert client.update_job_schedule(sid, bm.BatchJobScheduleUpdateOptions(
        schedule=bm.BatchJobScheduleConfiguration(
            do_not_run_until=far, recurrence_interval=dt.timedelta(hours=2))), cls=status) == 200
    s = client.get_job_schedule(sid)
    assert s.schedule.recurrence_interval == dt.timedelta(hours=2) and metadata(s) == {"a": "1"}
    assert client.replace_job_schedule(sid, bm.BatchJobSchedule(
        schedule=bm.BatchJobScheduleConfiguration(do_not_run_until=far),
        job_specification=bm.BatchJobSpecification(pool_info=bm.BatchPoolInfo(pool_id=pool_id),
                                                   priority=9)), cls=status) == 200
    s = client.get_job_schedule(sid)
    assert s.schedule.recurrence_interval is None
    assert s.job_specification.priority == 9 and metadata(s) == {}
    finish(client.begin_delete_job_schedule(sid, polling_interval=POLL))


# == tasks ==================================================================================

def test_task_create_get_list_delete(client, job_id):
    """create_task -> 201; get/list; duplicate -> 409 TaskExists; delete_task -> 200
    (not 202); then 404 TaskNotFound; unknown job -> 404 JobNotFound; bad id -> 400."""
    assert client.create_task(job_id, bm.BatchTaskCreateOptions(
        id="t1", command_line="/bin/echo hi",
        resource_files=[bm.ResourceFile(http_url="http://example.invalid/x", file_path="x")]),
        cls=status) == 201
    t = client.get_task(job_id, "t1")
    assert (t.id, t.command_line, t.state) == ("t1", "/bin/echo hi", bm.BatchTaskState.ACTIVE)
    assert [(r.http_url, r.file_path) for r in t.resource_files] == [("http://example.invalid/x", "x")]
    assert t.constraints.retention_time == dt.timedelta(days=7)
    assert t.execution_info.retry_count == 0 and t.execution_info.requeue_count == 0
    assert [x.id for x in client.list_tasks(job_id)] == ["t1"]
    expect_error(lambda: client.create_task(job_id, bm.BatchTaskCreateOptions(
        id="t1", command_line="/bin/true")), ResourceExistsError, 409, "TaskExists")
    assert client.delete_task(job_id, "t1", cls=status) == 200
    expect_error(lambda: client.get_task(job_id, "t1"), ResourceNotFoundError, 404, "TaskNotFound")
    expect_error(lambda: client.create_task(unique("v15nojob"), bm.BatchTaskCreateOptions(
        id="x", command_line="/bin/true")), ResourceNotFoundError, 404, "JobNotFound")
    expect_error(lambda: client.create_task(job_id, bm.BatchTaskCreateOptions(
        id="bad id", command_line="/bin/true")), HttpResponseError, 400, "InvalidPropertyValue")


def test_task_collection_of_100_and_existing_id(client, job_id):
    """create_task_collection with 100 tasks: 100 `success` results; a second collection
    that repeats one id reports that task as `clienterror` TaskExists (the lowercase enum
    15.x compares with ==) and adds the others."""
    group = bm.BatchTaskGroup(task_values=[
        bm.BatchTaskCreateOptions(id=f"c{i:03d}", command_line=f"/bin/echo {i}") for i in range(100)])
    result = client.create_task_collection(job_id, group)
    assert len(result.result_values) == 100
    for r in result.result_values:
        assert r.status == bm.BatchTaskAddStatus.SUCCESS, r
        assert r.etag and r.location.endswith(f"/tasks/{r.task_id}"), r
    assert len(list(client.list_tasks(job_id))) == 100

    result = client.create_task_collection(job_id, bm.BatchTaskGroup(task_values=[
        bm.BatchTaskCreateOptions(id="c007", command_line="/bin/echo again"),
        bm.BatchTaskCreateOptions(id="extra", command_line="/bin/true")]))
    by_id = {r.task_id: r for r in result.result_values}
    assert by_id["extra"].status == bm.BatchTaskAddStatus.SUCCESS
    assert by_id["c007"].status == bm.BatchTaskAddStatus.CLIENT_ERROR
    assert by_id["c007"].error.code == "TaskExists"
    assert client.get_task(job_id, "c007").command_line == "/bin/echo 7"

    # The bulk helper treats TaskExists as already added and raises nothing.
    out = client.create_tasks(job_id, [bm.BatchTaskCreateOptions(id="c008", command_line="/bin/true"),
                                       bm.BatchTaskCreateOptions(id="more", command_line="/bin/true")])
    assert sorted(r.task_id for r in out.result_values) == ["c008", "more"]
    assert len(list(client.list_tasks(job_id))) == 102


def test_create_tasks_helper_with_concurrency(client, job_id):
    """The SDK's bulk helper create_tasks with max_concurrency=8: 1,000 tasks in 10
    concurrent addtaskcollection requests, all added once."""
    tasks = [bm.BatchTaskCreateOptions(id=f"b{i:04d}", command_line="/bin/true") for i in range(1000)]
    out = client.create_tasks(job_id, tasks, max_concurrency=8)
    assert len(out.result_values) == 1000
    assert all(r.status == bm.BatchTaskAddStatus.SUCCESS for r in out.result_values)
    assert client.get_job_task_counts(job_id).task_counts.active == 1000


def test_create_tasks_helper_splits_a_collection_over_1mb(client, job_id):
    """100 tasks of ~15.6 KB each (~1.5 MB): the server answers RequestBodyTooLarge and
    15.x's create_tasks halves the chunk until every task is added."""
    env = [bm.EnvironmentSetting(name=f"E{k}", value="x" * 750) for k in range(20)]
    tasks = [bm.BatchTaskCreateOptions(id=f"big{i:03d}", command_line="/bin/true",
                                       environment_settings=env) for i in range(100)]
    with pytest.raises(HttpResponseError) as ei:
        client.create_task_collection(job_id, bm.BatchTaskGroup(task_values=tasks))
    assert ei.value.status_code == 413 and ei.value.error.code == "RequestBodyTooLarge"
    out = client.create_tasks(job_id, tasks)
    assert sorted(r.task_id for r in out.result_values) == [f"big{i:03d}" for i in range(100)]
    assert len(list(client.list_tasks(job_id))) == 100


def test_paging_over_2500_tasks(client, cobalt_batch, job_id):
    """2,500 tasks in 25 create_task_collection calls; list_tasks(max_results=1000)
    .by_page() yields pages of 1000, 1000 and 500 holding every task once; max_results=7
    over a filtered list pages too."""
    ids = add_tasks(client, job_id, 2500)
    pages = [[t.id for t in page]
             for page in client.list_tasks(job_id, max_results=1000, select=["id"]).by_page()]
    assert [len(p) for p in pages] == [1000, 1000, 500]
    flat = [t for p in pages for t in p]
    assert sorted(flat) == ids and len(set(flat)) == 2500
    assert sorted(t.id for t in client.list_tasks(job_id)) == ids
    small = [[t.id for t in page] for page in client.list_tasks(
        job_id, max_results=7, filter="startswith(id, 't0001')", select=["id", "state"]).by_page()]
    # t00010 .. t00019: ten tasks -> pages of 7 and 3
    assert [len(p) for p in small] == [7, 3], small
    assert sorted(t for p in small for t in p) == [f"t{i:05d}" for i in range(10, 20)]


def test_task_list_filter_and_select(client, job_id):
    """list_tasks with filter by state and select; the state comes back as the exact
    lowercase enum that 15.x compares with (batch-rest.md section 5)."""
    ids = add_tasks(client, job_id, 5)
    client.terminate_task(job_id, ids[4])
    done = list(client.list_tasks(job_id, filter="state eq 'completed'"))
    assert [t.id for t in done] == [ids[4]]
    assert done[0].state == bm.BatchTaskState.COMPLETED   # exact lowercase enum (section 5)
    active = list(client.list_tasks(job_id, filter="state eq 'active'", select=["id", "state"]))
    assert sorted(t.id for t in active) == ids[:4]
    assert all(t.command_line is None and t.etag is None for t in active)
    t = client.get_task(job_id, ids[0], select=["id", "commandLine"])
    assert (t.id, t.command_line, t.state) == (ids[0], f"/bin/echo {ids[0]}", None)


def test_task_terminate_reactivate_and_replace(client, job_id):
    """terminate_task (204): completed, result failure, failureInfo TaskEnded/usererror;
    again -> 409 TaskCompleted; reactivate_task (204): active again, failure cleared;
    replace_task (200) sets the constraints, a stale ETag -> ResourceModifiedError 412."""
    client.create_task(job_id, bm.BatchTaskCreateOptions(id="x", command_line="/bin/sleep 100"))
    assert client.terminate_task(job_id, "x", cls=status) == 204
    t = client.get_task(job_id, "x")
    assert t.state == bm.BatchTaskState.COMPLETED
    assert t.execution_info.result == bm.BatchTaskExecutionResult.FAILURE
    assert t.execution_info.failure_info.code == "TaskEnded"
    assert t.execution_info.failure_info.category == bm.BatchErrorSourceCategory.USER_ERROR
    expect_error(lambda: client.terminate_task(job_id, "x"), ResourceExistsError, 409,
                 "TaskCompleted")
    assert client.reactivate_task(job_id, "x", cls=status) == 204
    t = client.get_task(job_id, "x")
    assert t.state == bm.BatchTaskState.ACTIVE
    assert t.execution_info.failure_info is None and t.execution_info.result is None
    expect_error(lambda: client.reactivate_task(job_id, "x"), ResourceExistsError, 409,
                 "TaskNotCompleted")

    stale = t.etag
    assert client.replace_task(job_id, "x", bm.BatchTask(constraints=bm.BatchTaskConstraints(
        max_wall_clock_time=dt.timedelta(minutes=30), max_task_retry_count=2)), cls=status) == 200
    t = client.get_task(job_id, "x")
    assert t.constraints.max_wall_clock_time == dt.timedelta(minutes=30)
    assert t.constraints.max_task_retry_count == 2
    expect_error(lambda: client.replace_task(job_id, "x", bm.BatchTask(
        constraints=bm.BatchTaskConstraints(max_task_retry_count=5)), etag=stale,
        match_condition=MatchConditions.IfNotModified), ResourceModifiedError, 412,
        "ConditionNotMet")
    assert client.get_task(job_id, "x").constraints.max_task_retry_count == 2


def test_task_files_unavailable(client, job_id):
    """A task that never ran has no files: ResourceExistsError 409 TaskFilesUnavailable."""
    client.create_task(job_id, bm.BatchTaskCreateOptions(id="f", command_line="/bin/true"))
    expect_error(lambda: list(client.list_task_files(job_id, "f")), ResourceExistsError, 409,
                 "TaskFilesUnavailable")


def test_last_modified_header_is_rfc1123(cobalt_batch, job_id):
    """15.x deserializes Last-Modified as RFC 1123 on every response that declares it
    (batch-rest.md section 5); the create response must carry it that way."""
    body = b'{"id":"hdr","commandLine":"/bin/true"}'
    r = batch_request(cobalt_batch, "POST", f"/jobs/{job_id}/tasks", body=body,
                      api_version=API_VERSION)
    assert r.status == 201, r
    lm = r.headers.get("Last-Modified")
    assert lm and lm.endswith(" GMT"), lm
    from email.utils import parsedate_to_datetime
    assert parsedate_to_datetime(lm).tzinfo is not None
