"""The Azure Batch Python tutorial, end to end, on real local nodes, written with the SDKs of
the current Batch Python quickstart: azure-batch 14.2.0 (api-version 2024-02-01.19.0,
`BatchServiceClient(SharedKeyCredentials, batch_url=)`) and azure-storage-blob 12.31.1
(`BlobServiceClient`, `generate_blob_sas`, `generate_container_sas`) on the client side.
The tasks on the nodes run the tutorial's own task script (tests/e2e/tutorial), which uploads
its result with azure-storage 0.36.0 from .venv/node-python.

Same workflow as test_tutorial_v4.py (the seed's python_tutorial_client.py), in today's
vocabulary: ResourceFile(http_url=, file_path=), an image from list_supported_images,
taskSlotsPerNode and a spread task scheduling policy. Run with .venv/batch-14 (see run.sh).
"""
from __future__ import annotations

import collections
import datetime
import os
import string
import time
from pathlib import Path

import pytest
from azure.batch import BatchServiceClient
from azure.batch import models as batchmodels
from azure.batch.batch_auth import SharedKeyCredentials
from azure.storage.blob import (BlobSasPermissions, BlobServiceClient, ContainerSasPermissions,
                                generate_blob_sas, generate_container_sas)

from e2e_support import (ACCOUNT, BATCH_ACCOUNT, BATCH_KEY, KEY, shared_data_dir,
                         wrap_commands_in_shell)

HERE = Path(__file__).resolve().parent
DATA = shared_data_dir()



def select_image(batch_client, publisher, offer_starts_with, sku_starts_with):
    """Pick a verified Ubuntu image from the account's supported images (the 14.x successor
    of the tutorial's list_node_agent_skus helper)."""
    images = [
        img for img in batch_client.account.list_supported_images()
        if img.image_reference.publisher.lower() == publisher.lower()
        and img.image_reference.offer.lower().startswith(offer_starts_with)
        and img.image_reference.sku.startswith(sku_starts_with)
        and img.verification_type == batchmodels.VerificationType.verified
    ]
    image = images[-1]
    return image.node_agent_sku_id, batchmodels.ImageReference(
        publisher=image.image_reference.publisher, offer=image.image_reference.offer,
        sku=image.image_reference.sku, version="latest")



@pytest.mark.needs_own_server
def test_the_tutorial_runs_on_local_nodes(tutorial_server, tmp_path):
    """Containers and uploads with SAS (blob v12), a pool of 2 nodes x 2 slots whose start
    task copies the script to the shared directory, a job, add_collection of one task per
    input file, polling task.list until every task is completed, then the outputs
    downloaded and the top 3 words of each file checked; cleanup."""
    blob_service_client = BlobServiceClient(
        account_url=tutorial_server.endpoint,
        credential={"account_name": ACCOUNT, "account_key": KEY})
    app_container, input_container, output_container = 'application', 'input', 'output'
    for c in (app_container, input_container, output_container):
        blob_service_client.create_container(c)

    def upload_file_to_container(container_name, file_path):
        blob_name = os.path.basename(file_path)
        blob_client = blob_service_client.get_blob_client(container_name, blob_name)
        with open(file_path, "rb") as data:
            blob_client.upload_blob(data, overwrite=True)
        sas_token = generate_blob_sas(
            ACCOUNT, container_name, blob_name, account_key=KEY,
            permission=BlobSasPermissions(read=True),
            expiry=datetime.datetime.utcnow() + datetime.timedelta(hours=2))
        sas_url = f"{blob_client.url}?{sas_token}"
        return batchmodels.ResourceFile(http_url=sas_url, file_path=blob_name)

    application_files = [upload_file_to_container(
        app_container, str(HERE / "tutorial" / "python_tutorial_task.py"))]
    input_paths = [str(DATA / f"taskdata{i}.txt") for i in (1, 2, 3)]
    input_files = [upload_file_to_container(input_container, p) for p in input_paths]
    output_sas = generate_container_sas(
        ACCOUNT, output_container, account_key=KEY,
        permission=ContainerSasPermissions(write=True, create=True),
        expiry=datetime.datetime.utcnow() + datetime.timedelta(hours=2))

    client = BatchServiceClient(SharedKeyCredentials(BATCH_ACCOUNT, BATCH_KEY),
                                batch_url=tutorial_server.batch_url)
    sku_id, image = select_image(client, 'canonical', '0001-com-ubuntu-server', '22')
    assert sku_id == "batch.node.ubuntu 22.04"
    pool_id, job_id = 'PythonTutorialPool', 'PythonTutorialJob'
    client.pool.add(batchmodels.PoolAddParameter(
        id=pool_id,
        virtual_machine_configuration=batchmodels.VirtualMachineConfiguration(
            image_reference=image, node_agent_sku_id=sku_id),
        vm_size='STANDARD_D2S_V3',
        target_dedicated_nodes=2,
        task_slots_per_node=2,
        task_scheduling_policy=batchmodels.TaskSchedulingPolicy(
            node_fill_type=batchmodels.ComputeNodeFillType.spread),
        start_task=batchmodels.StartTask(
            command_line=wrap_commands_in_shell('linux', [
                'cp -p python_tutorial_task.py $AZ_BATCH_NODE_SHARED_DIR']),
            user_identity=batchmodels.UserIdentity(auto_user=batchmodels.AutoUserSpecification(
                scope=batchmodels.AutoUserScope.pool,
                elevation_level=batchmodels.ElevationLevel.admin)),
            wait_for_success=True,
            resource_files=application_files)))
    client.job.add(batchmodels.JobAddParameter(
        id=job_id, pool_info=batchmodels.PoolInformation(pool_id=pool_id)))

    # Both nodes up first, so that the spread policy has two nodes to spread over.
    deadline = time.time() + 30
    while True:
        nodes = list(client.compute_node.list(pool_id))
        if len(nodes) == 2 and all(n.state == batchmodels.ComputeNodeState.idle for n in nodes):
            break
        assert time.time() < deadline, [(n.id, n.state, n.start_task_info) for n in nodes]
        time.sleep(0.2)

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

    deadline = time.time() + 60
    while True:
        listed = list(client.task.list(job_id))
        incomplete = [t for t in listed if t.state != batchmodels.TaskState.completed]
        if not incomplete:
            break
        assert time.time() < deadline, [(t.id, t.state) for t in listed]
        time.sleep(0.5)
    for t in listed:
        assert t.execution_info.exit_code == 0, (t.id, t.execution_info.failure_info)
        assert t.execution_info.result == batchmodels.TaskExecutionResult.success
        assert t.node_info.pool_id == pool_id and t.node_info.node_id.startswith('tvm-')
        assert t.resource_files[0].http_url.startswith(tutorial_server.endpoint)

    pool = client.pool.get(pool_id)
    assert pool.current_dedicated_nodes == 2 and pool.task_slots_per_node == 2
    assert pool.task_scheduling_policy.node_fill_type == batchmodels.ComputeNodeFillType.spread
    assert pool.allocation_state == batchmodels.AllocationState.steady
    nodes = list(client.compute_node.list(pool_id))
    assert len(nodes) == 2
    assert all(n.start_task_info.exit_code == 0 for n in nodes)
    runs = sorted(n.total_tasks_run for n in nodes)
    assert runs == [1, 2], f"spread over 2 nodes x 2 slots: {runs}"

    stdout = b"".join(client.file.get_from_task(job_id, 'topNtask0', 'stdout.txt'))
    assert b"Uploading file" in stdout

    downloaded = tmp_path / "out"
    downloaded.mkdir()
    out = blob_service_client.get_container_client(output_container)
    blobs = sorted(b.name for b in out.list_blobs())
    assert blobs == ['taskdata1_OUTPUT.txt', 'taskdata2_OUTPUT.txt', 'taskdata3_OUTPUT.txt']
    for name, path in zip(blobs, input_paths):
        (downloaded / name).write_bytes(out.download_blob(name).readall())
        text = (downloaded / name).read_text()
        words = [w.strip(string.punctuation) for w in Path(path).read_text().split()]
        for word, count in collections.Counter(words).most_common(3):
            assert f"{word}: {count}" in text, text
        assert "Job:  PythonTutorialJob" in text and "Pool: PythonTutorialPool" in text

    for c in (app_container, input_container, output_container):
        blob_service_client.delete_container(c)
    client.job.delete(job_id)
    client.pool.delete(pool_id)
    deadline = time.time() + 30
    while client.pool.exists(pool_id):
        assert time.time() < deadline, "the pool was not deleted"
        time.sleep(0.2)
