"""Job preparation and release tasks on real local nodes, with azure-batch 14.2.0
(api-version 2024-02-01.19.0). Run with .venv/batch-14 (see run.sh).

Azure: the preparation task runs on a node before the job's first task there (tasks wait for
it with waitForSuccess, the default) and sets AZ_BATCH_JOB_PREP_DIR / _WORKING_DIR for the
job's tasks; the release task runs on each such node when the job ends; both appear in
job.list_preparation_and_release_task_status (azure-batch-model.md 2.2).
"""
from __future__ import annotations

import time
import uuid

import azure.batch.models as bm
from azure.batch import BatchServiceClient
from azure.batch.batch_auth import SharedKeyCredentials

from e2e_support import BATCH_ACCOUNT, BATCH_KEY, wait_for


def client_for(url: str) -> BatchServiceClient:
    return BatchServiceClient(SharedKeyCredentials(BATCH_ACCOUNT, BATCH_KEY), batch_url=url)


def test_preparation_runs_before_tasks_and_release_after_the_job(cobalt_batch):
    c = client_for(cobalt_batch)
    suffix = uuid.uuid4().hex[:8]
    pid, jid = f"prep-pool-{suffix}", f"prep-job-{suffix}"
    c.pool.add(bm.PoolAddParameter(
        id=pid, vm_size="standard_d2s_v3", target_dedicated_nodes=1,
        virtual_machine_configuration=bm.VirtualMachineConfiguration(
            image_reference=bm.ImageReference(publisher="canonical", offer="0001-com-ubuntu-server-jammy",
                                              sku="22_04-lts"),
            node_agent_sku_id="batch.node.ubuntu 22.04")))
    c.job.add(bm.JobAddParameter(
        id=jid, pool_info=bm.PoolInformation(pool_id=pid),
        job_preparation_task=bm.JobPreparationTask(
            command_line="/bin/sh -c 'sleep 0.3; echo prepared > prep.txt'"),
        job_release_task=bm.JobReleaseTask(command_line="/bin/sh -c 'echo released'")))
    c.task.add(jid, bm.TaskAddParameter(
        id="t1", command_line="/bin/sh -c 'cat $AZ_BATCH_JOB_PREP_WORKING_DIR/prep.txt'"))

    task = wait_for(lambda: (lambda t: t if t.state == bm.TaskState.completed else None)(c.task.get(jid, "t1")),
                    timeout=30, what="task completed")
    assert task.execution_info.exit_code == 0, task.execution_info.failure_info
    out = b"".join(c.file.get_from_task(jid, "t1", "stdout.txt"))
    assert out == b"prepared\n", out

    status = list(c.job.list_preparation_and_release_task_status(jid))
    assert len(status) == 1
    prep = status[0].job_preparation_task_execution_info
    assert prep.state == bm.JobPreparationTaskState.completed and prep.exit_code == 0
    assert prep.end_time <= task.execution_info.start_time, "tasks wait for the preparation task"
    assert status[0].job_release_task_execution_info is None, "the job has not ended"

    c.job.terminate(jid)
    def released():
        s = list(c.job.list_preparation_and_release_task_status(jid))[0]
        r = s.job_release_task_execution_info
        return r if r is not None and r.state == bm.JobReleaseTaskState.completed else None
    release = wait_for(released, timeout=30, what="release task completed")
    assert release.exit_code == 0
    assert release.task_root_directory.endswith("jobrelease")
    c.job.delete(jid)
    c.pool.delete(pid)


def test_status_of_a_job_without_preparation_task_is_409(cobalt_batch):
    c = client_for(cobalt_batch)
    jid = f"noprep-{uuid.uuid4().hex[:8]}"
    c.job.add(bm.JobAddParameter(id=jid, pool_info=bm.PoolInformation(pool_id="nowhere")))
    try:
        list(c.job.list_preparation_and_release_task_status(jid))
        raise AssertionError("expected 409 JobPreparationTaskNotSpecified")
    except bm.BatchErrorException as e:
        assert e.response.status_code == 409 and e.error.code == "JobPreparationTaskNotSpecified"
    c.job.delete(jid)
