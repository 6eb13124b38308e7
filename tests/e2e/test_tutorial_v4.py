"""The Azure Batch Python tutorial, end to end, on real local nodes: azure-batch 4.0.0
(api-version 2017-09-01.6.0) and azure-storage 0.36.0, as python_tutorial_client.py does it
(../shared/seed, batch-rest.md section 1), with the edits MISSION.md lists: the account
constants, the blob endpoint, and a start task that only copies the task script (no pip from
the internet; the nodes' `python` already has azure-storage 0.36.0).

Run with .venv/batch-4 (see run.sh).
"""
from __future__ import annotations

import collections
import datetime
import os
import string
import time
from pathlib import Path

import pytest

import azure.batch.batch_auth as batchauth
import azure.batch.batch_service_client as batch
import azure.batch.models as batchmodels
import azure.storage.blob as azureblob

from e2e_support import (ACCOUNT, BATCH_ACCOUNT, BATCH_KEY, KEY, shared_data_dir,
                         wrap_commands_in_shell)

HERE = Path(__file__).resolve().parent
DATA = shared_data_dir()



def select_latest_verified_vm_image_with_node_agent_sku(batch_client, publisher, offer, sku_starts_with):
    """The tutorial helper (common/helpers.py, SDK 1.0.0 - 4.0.0 era)."""
    node_agent_skus = batch_client.account.list_node_agent_skus()
    skus_to_use = [
        (sku, image_ref) for sku in node_agent_skus for image_ref in sorted(
            sku.verified_image_references, key=lambda item: item.sku)
        if image_ref.publisher.lower() == publisher.lower() and
        image_ref.offer.lower() == offer.lower() and
        image_ref.sku.startswith(sku_starts_with)
    ]
    sku_to_use, image_ref_to_use = skus_to_use[0]
    return (sku_to_use.id, image_ref_to_use)



def test_the_tutorial_runs_on_local_nodes(tutorial_server, tmp_path):
    """Containers and uploads with SAS, a pool of 2 nodes whose start task copies the script
    to the shared directory, a job, add_collection of one task per file, polling task.list
    until every task is completed, downloading the outputs and checking the top 3 words of
    each file, then cleanup: the seed's workflow, nothing faked."""
    blob_client = azureblob.BlockBlobService(account_name=ACCOUNT, account_key=KEY,
                                             custom_domain=tutorial_server.endpoint)
    app_container, input_container, output_container = 'application', 'input', 'output'
    for c in (app_container, input_container, output_container):
        blob_client.create_container(c, fail_on_exist=False)

    def upload_file_to_container(container_name, file_path):
        blob_name = os.path.basename(file_path)
        blob_client.create_blob_from_path(container_name, blob_name, file_path)
        sas_token = blob_client.generate_blob_shared_access_signature(
            container_name, blob_name, permission=azureblob.BlobPermissions.READ,
            expiry=datetime.datetime.utcnow() + datetime.timedelta(hours=2))
        sas_url = blob_client.make_blob_url(container_name, blob_name, sas_token=sas_token)
        return batchmodels.ResourceFile(file_path=blob_name, blob_source=sas_url)

    application_files = [upload_file_to_container(app_container, str(HERE / "tutorial" / "python_tutorial_task.py"))]
    input_paths = [str(DATA / f"taskdata{i}.txt") for i in (1, 2, 3)]
    input_files = [upload_file_to_container(input_container, p) for p in input_paths]
    output_sas = blob_client.generate_container_shared_access_signature(
        output_container, permission=azureblob.BlobPermissions.WRITE,
        expiry=datetime.datetime.utcnow() + datetime.timedelta(hours=2))

    client = batch.BatchServiceClient(batchauth.SharedKeyCredentials(BATCH_ACCOUNT, BATCH_KEY),
                                      base_url=tutorial_server.batch_url)
    sku_id, image = select_latest_verified_vm_image_with_node_agent_sku(client, 'Canonical', 'UbuntuServer', '16')
    pool_id, job_id = 'PythonTutorialPool', 'PythonTutorialJob'
    client.pool.add(batchmodels.PoolAddParameter(
        id=pool_id,
        virtual_machine_configuration=batchmodels.VirtualMachineConfiguration(
            image_reference=image, node_agent_sku_id=sku_id),
        vm_size='BASIC_A1',
        target_dedicated_nodes=2,
        start_task=batchmodels.StartTask(
            command_line=wrap_commands_in_shell('linux', [
                'cp -p python_tutorial_task.py $AZ_BATCH_NODE_SHARED_DIR']),
            user_identity=batchmodels.UserIdentity(auto_user=batchmodels.AutoUserSpecification(
                scope=batchmodels.AutoUserScope.pool,
                elevation_level=batchmodels.ElevationLevel.admin)),
            wait_for_success=True,
            resource_files=application_files)))
    client.job.add(batchmodels.JobAddParameter(id=job_id, pool_info=batchmodels.PoolInformation(pool_id=pool_id)))
    tasks = []
    for idx, input_file in enumerate(input_files):
        command = ['python $AZ_BATCH_NODE_SHARED_DIR/python_tutorial_task.py '
                   '--filepath {} --numwords {} --storageaccount {} '
                   '--storagecontainer {} --sastoken "{}"'.format(
                       input_file.file_path, '3', ACCOUNT, output_container, output_sas)]
        tasks.append(batchmodels.TaskAddParameter(
            id='topNtask{}'.format(idx), command_line=wrap_commands_in_shell('linux', command),
            resource_files=[input_file]))
    result = client.task.add_collection(job_id, tasks)
    assert [r.status for r in result.value] == [batchmodels.TaskAddStatus.success] * 3

    deadline = time.time() + 120
    while True:
        listed = list(client.task.list(job_id))
        if all(t.state == batchmodels.TaskState.completed for t in listed):
            break
        assert time.time() < deadline, [(t.id, t.state) for t in listed]
        time.sleep(0.5)
    for t in listed:
        assert t.execution_info.exit_code == 0, (t.id, t.execution_info.failure_info)
        assert t.execution_info.result == batchmodels.TaskExecutionResult.success
        assert t.node_info.pool_id == pool_id and t.node_info.node_id.startswith('tvm-')

    pool = client.pool.get(pool_id)
    assert pool.current_dedicated_nodes == 2
    assert pool.allocation_state == batchmodels.AllocationState.steady
    nodes = list(client.compute_node.list(pool_id))
    assert len(nodes) == 2
    assert all(n.start_task_info.exit_code == 0 for n in nodes)
    ran = sum(n.total_tasks_run for n in nodes)
    assert ran == 3

    stdout = b"".join(client.file.get_from_task(job_id, 'topNtask0', 'stdout.txt'))
    assert b"Uploading file" in stdout

    downloaded = tmp_path / "out"
    downloaded.mkdir()
    blobs = sorted(b.name for b in blob_client.list_blobs(output_container))
    assert blobs == ['taskdata1_OUTPUT.txt', 'taskdata2_OUTPUT.txt', 'taskdata3_OUTPUT.txt']
    for name, path in zip(blobs, input_paths):
        blob_client.get_blob_to_path(output_container, name, str(downloaded / name))
        text = (downloaded / name).read_text()
        words = [w.strip(string.punctuation) for w in Path(path).read_text().split()]
        for word, count in collections.Counter(words).most_common(3):
            assert f"{word}: {count}" in text, text
        assert "Job:  PythonTutorialJob" in text and "Pool: PythonTutorialPool" in text

    for c in (app_container, input_container, output_container):
        blob_client.delete_container(c)
    client.job.delete(job_id)
    client.pool.delete(pool_id)
    deadline = time.time() + 30
    while client.pool.exists(pool_id):
        assert time.time() < deadline, "the pool was not deleted"
        time.sleep(0.2)
