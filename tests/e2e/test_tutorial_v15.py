"""The Azure Batch Python tutorial, end to end, on real local nodes, written with the current
Batch SDK: azure-batch 15.1.0 (azure-core generation, api-version 2025-06-01,
`BatchClient(endpoint, AzureNamedKeyCredential)`) and azure-storage-blob 12.31.1 on the
client side. The tasks on the nodes run the tutorial's own task script (tests/e2e/tutorial),
which uploads its result with azure-storage 0.36.0 from .venv/node-python.

Same workflow as test_tutorial_v4.py (the seed's python_tutorial_client.py) in 15.x
vocabulary: BatchPoolCreateOptions with taskSlotsPerNode and a pack scheduling policy,
BatchStartTask, ResourceFile(http_url=, file_path=), create_task_collection, list_tasks,
download_task_file, and the LRO deletes. Run with .venv/batch-15 (see run.sh).
"""
from __future__ import annotations

import collections
import datetime
import os
import string
import time
from pathlib import Path

import pytest
from azure.batch import BatchClient
from azure.batch import models as batchmodels
from azure.core.credentials import AzureNamedKeyCredential
from azure.storage.blob import (BlobSasPermissions, BlobServiceClient, ContainerSasPermissions,
                                generate_blob_sas, generate_container_sas)

from e2e_support import (ACCOUNT, BATCH_ACCOUNT, BATCH_KEY, KEY, shared_data_dir,
                         wrap_commands_in_shell)

HERE = Path(__file__).resolve().parent
DATA = shared_data_dir()



def select_image(batch_client, publisher, offer_starts_with, sku_starts_with):
    """Pick a verified Ubuntu image from the account's supported images (the successor of
    the tutorial's list_node_agent_skus helper)."""
    images = [
        img for img in batch_client.list_supported_images()
        if img.image_reference.publisher.lower() == publisher.lower()
        and img.image_reference.offer.lower().startswith(offer_starts_with)
        and img.image_reference.sku.startswith(sku_starts_with)
        and img.verification_type == batchmodels.ImageVerificationType.VERIFIED
    ]
    image = images[-1]
    return image.node_agent_sku_id, batchmodels.BatchVmImageReference(
        publisher=image.image_reference.publisher, offer=image.image_reference.offer,
        sku=image.image_reference.sku, version="latest")



@pytest.mark.needs_own_server
def test_the_tutorial_runs_on_local_nodes(tutorial_server, tmp_path):
    """Containers and uploads with SAS (blob v12), a pool of 2 nodes x 4 slots (pack) whose
    start task copies the script to the shared directory, a job, create_task_collection of
    one task per input file, polling list_tasks until every task is completed, then the
    outputs downloaded and the top 3 words of each file checked; LRO cleanup."""
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

    client = BatchClient(tutorial_server.batch_url,
                         AzureNamedKeyCredential(BATCH_ACCOUNT, BATCH_KEY))
    sku_id, image = select_image(client, 'canonical', '0001-com-ubuntu-server', '22')
    assert sku_id == "batch.node.ubuntu 22.04"
    pool_id, job_id = 'PythonTutorialPool', 'PythonTutorialJob'
    client.create_pool(batchmodels.BatchPoolCreateOptions(
        id=pool_id,
        virtual_machine_configuration=batchmodels.VirtualMachineConfiguration(
            image_reference=image, node_agent_sku_id=sku_id),
        vm_size='STANDARD_D2S_V3',
        target_dedicated_nodes=2,
        task_slots_per_node=4,
        task_scheduling_policy=batchmodels.BatchTaskSchedulingPolicy(
            node_fill_type=batchmodels.BatchNodeFillType.PACK),
        start_task=batchmodels.BatchStartTask(
            command_line=wrap_commands_in_shell('linux', [
                'cp -p python_tutorial_task.py $AZ_BATCH_NODE_SHARED_DIR']),
            user_identity=batchmodels.UserIdentity(auto_user=batchmodels.AutoUserSpecification(
                scope=batchmodels.AutoUserScope.POOL,
                elevation_level=batchmodels.ElevationLevel.ADMIN)),
            wait_for_success=True,
            resource_files=application_files)))
    client.create_job(batchmodels.BatchJobCreateOptions(
        id=job_id, pool_info=batchmodels.BatchPoolInfo(pool_id=pool_id)))

    # Both nodes up first, so that the pack policy has two nodes to choose from.
    deadline = time.time() + 30
    while True:
        nodes = list(client.list_nodes(pool_id))
        if len(nodes) == 2 and all(n.state == batchmodels.BatchNodeState.IDLE for n in nodes):
            break
        assert time.time() < deadline, [(n.id, n.state, n.start_task_info) for n in nodes]
        time.sleep(0.2)

    tasks = []
    for idx, input_file in enumerate(input_files):
        command = ['python $AZ_BATCH_NODE_SHARED_DIR/python_tutorial_task.py '
                   '--filepath {} --numwords {} --storageaccount {} '
                   '--storagecontainer {} --sastoken "{}"'.format(
                       input_file.file_path, '3', ACCOUNT, output_container, output_sas)]
        tasks.append(batchmodels.BatchTaskCreateOptions(
            id='topNtask{}'.format(idx), command_line=wrap_commands_in_shell('linux', command),
            resource_files=[input_file]))
    result = client.create_task_collection(job_id, batchmodels.BatchTaskGroup(task_values=tasks))
    assert [r.status for r in result.result_values] == [batchmodels.BatchTaskAddStatus.SUCCESS] * 3

    deadline = time.time() + 60
    while True:
        listed = list(client.list_tasks(job_id))
        incomplete = [t for t in listed if t.state != batchmodels.BatchTaskState.COMPLETED]
        if not incomplete:
            break
        assert time.time() < deadline, [(t.id, t.state) for t in listed]
        time.sleep(0.5)
    for t in listed:
        assert t.execution_info.exit_code == 0, (t.id, t.execution_info.failure_info)
        assert t.execution_info.result == batchmodels.BatchTaskExecutionResult.SUCCESS
        assert t.node_info.pool_id == pool_id and t.node_info.node_id.startswith('tvm-')
        assert t.resource_files[0].http_url.startswith(tutorial_server.endpoint)

    pool = client.get_pool(pool_id)
    assert pool.current_dedicated_nodes == 2 and pool.task_slots_per_node == 4
    assert pool.task_scheduling_policy.node_fill_type == batchmodels.BatchNodeFillType.PACK
    assert pool.allocation_state == batchmodels.AllocationState.STEADY
    nodes = list(client.list_nodes(pool_id))
    assert len(nodes) == 2
    assert all(n.start_task_info.exit_code == 0 for n in nodes)
    runs = sorted(n.total_tasks_run for n in nodes)
    assert runs == [0, 3], f"packed onto one of 2 nodes x 4 slots: {runs}"
    assert len({t.node_info.node_id for t in listed}) == 1

    stdout = b"".join(client.download_task_file(job_id, 'topNtask0', 'stdout.txt'))
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
    client.begin_delete_job(job_id, polling_interval=1).result(timeout=30)
    client.begin_delete_pool(pool_id, polling_interval=1).result(timeout=30)
    assert pool_id not in [p.id for p in client.list_pools()]
