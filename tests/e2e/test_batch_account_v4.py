"""Batch end-to-end tests, azure-batch 4.0.0: the SDK the Azure Batch Python tutorial pins
(api-version 2017-09-01.6.0). Run with .venv/batch-4 (see run.sh).

The client is built exactly as the tutorial builds it, and the image lookup is the
tutorial's common/helpers.py logic (batch-rest.md section 1).
"""
from __future__ import annotations

import json
import time
import uuid

import pytest

import azure.batch.batch_service_client as batch
import azure.batch.batch_auth as batchauth
import azure.batch.models as batchmodels

from e2e_support import BATCH_ACCOUNT, BATCH_KEY, WRONG_KEY


def make_client(url: str, key: str = BATCH_KEY) -> batch.BatchServiceClient:
    # As in python_tutorial_client.py (azure-batch 4.0.0).
    credentials = batchauth.SharedKeyCredentials(BATCH_ACCOUNT, key)
    return batch.BatchServiceClient(credentials, base_url=url)


@pytest.fixture(scope="module")
def client(cobalt_batch) -> batch.BatchServiceClient:
    return make_client(cobalt_batch)


def select_latest_verified_vm_image_with_node_agent_sku(
        batch_client, publisher, offer, sku_starts_with):
    """Select the latest verified image that Azure Batch supports given
    a publisher, offer and sku (starts with filter).

    Re-implemented from the tutorial's common/helpers.py (SDK 1.0.0 - 4.0.0 era).
    :return: (node agent sku id to use, vm image ref to use)
    """
    # get verified vm image list and node agent sku ids from service
    node_agent_skus = batch_client.account.list_node_agent_skus()
    # pick the latest supported sku
    skus_to_use = [
        (sku, image_ref) for sku in node_agent_skus for image_ref in sorted(
            sku.verified_image_references, key=lambda item: item.sku)
        if image_ref.publisher.lower() == publisher.lower() and
        image_ref.offer.lower() == offer.lower() and
        image_ref.sku.startswith(sku_starts_with)
    ]
    # skus are listed in reverse order, pick first for latest
    sku_to_use, image_ref_to_use = skus_to_use[0]
    return (sku_to_use.id, image_ref_to_use)


def test_client_speaks_2017_09_01(client):
    assert client.api_version == "2017-09-01.6.0"


def test_tutorial_image_selection(client):
    sku_id, image_ref = select_latest_verified_vm_image_with_node_agent_sku(
        client, "Canonical", "UbuntuServer", "16")
    assert sku_id == "batch.node.ubuntu 16.04"
    assert (image_ref.publisher, image_ref.offer, image_ref.sku) == \
        ("Canonical", "UbuntuServer", "16.04-LTS")
    # The tutorial then builds its pool from exactly these values.
    vmc = batchmodels.VirtualMachineConfiguration(
        image_reference=image_ref, node_agent_sku_id=sku_id)
    assert vmc.image_reference.version in (None, "latest")


def test_node_agent_skus_are_well_formed(client):
    skus = list(client.account.list_node_agent_skus())
    assert skus
    ids = [s.id for s in skus]
    assert len(ids) == len(set(ids)), ids
    assert "batch.node.ubuntu 16.04" in ids
    for s in skus:
        assert s.id, s
        assert s.os_type == batchmodels.OSType.linux, s
        assert s.verified_image_references, s
        for r in s.verified_image_references:
            assert r.publisher and r.offer and r.sku, r


def test_node_agent_skus_page_with_maxresults_1(client):
    everything = [s.id for s in client.account.list_node_agent_skus()]
    opts = batchmodels.AccountListNodeAgentSkusOptions(max_results=1)
    paged = [s.id for s in client.account.list_node_agent_skus(
        account_list_node_agent_skus_options=opts)]
    assert paged == everything


def test_wrong_key_is_403(cobalt_batch):
    bad = make_client(cobalt_batch, key=WRONG_KEY)
    with pytest.raises(batchmodels.BatchErrorException) as ei:
        list(bad.account.list_node_agent_skus())
    e = ei.value
    assert e.response.status_code == 403, e.response.text
    assert e.error.code == "AuthenticationFailed"
    # What the tutorial's print_batch_exception() reads.
    assert isinstance(e.error.message.value, str) and e.error.message.value
    assert e.response.headers.get("request-id")


# -- the tutorial's own flow (batch-rest.md section 1) ----------------------------------------

_TUTORIAL_TASK_FILE = "python_tutorial_task.py"


def wrap_commands_in_shell(ostype, commands):
    """common/helpers.py: wrap commands in a shell (linux branch)."""
    assert ostype.lower() == "linux"
    return "/bin/bash -c 'set -e; set -o pipefail; {}; wait'".format(";".join(commands))


def sas_url(blob_endpoint: str, container: str, blob: str, perm: str = "r") -> str:
    """A blob URL shaped like the tutorial's get_container_sas_url/make_blob_url result
    (a service SAS of azure-storage 0.36.0). The Batch service only stores it."""
    return (f"{blob_endpoint}/{container}/{blob}?se=2099-01-01T00%3A00%3A00Z&sp={perm}"
            f"&sv=2017-04-17&sr=b&sig=Ge7iBrpusuA9ITLBELUTJ9lm6vB0tVl6GRHlaM5LQI0%3D")


def test_tutorial_flow(client, cobalt):
    """python_tutorial_client.py's Batch calls in order, built exactly as the tutorial
    builds them (azure-batch 4.0.0): image selection from list_node_agent_skus, pool.add
    (whose body must be section 1's), job.add, task.add_collection of 3 tasks with
    blob_source resource files, task.list, job.delete, pool.delete. Without compute
    nodes the tasks stay active, so the tutorial's wait loop is not run; everything the
    server stored is read back in the 2017 schema instead."""
    suffix = uuid.uuid4().hex[:8]
    pool_id, job_id = f"PythonTutorialPool-{suffix}", f"PythonTutorialJob-{suffix}"

    # create_pool()
    task_commands = [
        "cp -p {} $AZ_BATCH_NODE_SHARED_DIR".format(_TUTORIAL_TASK_FILE),
        "curl -fSsL https://bootstrap.pypa.io/get-pip.py | python",
        "pip install azure-storage==0.32.0"]
    sku_to_use, image_ref_to_use = select_latest_verified_vm_image_with_node_agent_sku(
        client, "Canonical", "UbuntuServer", "16")
    user = batchmodels.AutoUserSpecification(
        scope=batchmodels.AutoUserScope.pool,
        elevation_level=batchmodels.ElevationLevel.admin)
    application_files = [batchmodels.ResourceFile(
        file_path=_TUTORIAL_TASK_FILE,
        blob_source=sas_url(cobalt, "application", _TUTORIAL_TASK_FILE))]
    new_pool = batch.models.PoolAddParameter(
        id=pool_id,
        virtual_machine_configuration=batchmodels.VirtualMachineConfiguration(
            image_reference=image_ref_to_use,
            node_agent_sku_id=sku_to_use),
        vm_size="BASIC_A1",
        target_dedicated_nodes=1,
        start_task=batch.models.StartTask(
            command_line=wrap_commands_in_shell("linux", task_commands),
            user_identity=batchmodels.UserIdentity(auto_user=user),
            wait_for_success=True,
            resource_files=application_files),
    )
    raw = client.pool.add(new_pool, raw=True)
    assert raw.response.status_code == 201
    sent = json.loads(raw.response.request.body)
    assert sent == {
        "id": pool_id, "vmSize": "BASIC_A1",
        "virtualMachineConfiguration": {
            "imageReference": {"publisher": "Canonical", "offer": "UbuntuServer",
                               "sku": "16.04-LTS", "version": "latest"},
            "nodeAgentSKUId": "batch.node.ubuntu 16.04"},
        "targetDedicatedNodes": 1,
        "startTask": {
            "commandLine": wrap_commands_in_shell("linux", task_commands),
            "resourceFiles": [{"blobSource": application_files[0].blob_source,
                               "filePath": _TUTORIAL_TASK_FILE}],
            "userIdentity": {"autoUser": {"scope": "pool", "elevationLevel": "admin"}},
            "waitForSuccess": True}}, sent

    # create_job()
    job = batch.models.JobAddParameter(job_id, batch.models.PoolInformation(pool_id=pool_id))
    assert client.job.add(job, raw=True).response.status_code == 201

    # add_tasks()
    input_files = [batchmodels.ResourceFile(file_path=f"taskdata{i}.txt",
                                            blob_source=sas_url(cobalt, "input", f"taskdata{i}.txt"))
                   for i in (1, 2, 3)]
    output_sas = "se=2099-01-01T00%3A00%3A00Z&sp=w&sv=2017-04-17&sr=c&sig=abc%3D"
    tasks = []
    for idx, input_file in enumerate(input_files):
        command = ["python $AZ_BATCH_NODE_SHARED_DIR/{} --filepath {} --numwords {} "
                   "--storageaccount {} --storagecontainer {} --sastoken \"{}\"".format(
                       _TUTORIAL_TASK_FILE, input_file.file_path, "3", "devstoreaccount1",
                       "output", output_sas)]
        tasks.append(batch.models.TaskAddParameter(
            "topNtask{}".format(idx), wrap_commands_in_shell("linux", command),
            resource_files=[input_file]))
    result = client.task.add_collection(job_id, tasks)
    assert sorted((r.task_id, r.status) for r in result.value) == \
        [(f"topNtask{i}", batchmodels.TaskAddStatus.success) for i in range(3)]

    # wait_for_tasks_to_complete(): one iteration of its loop.
    listed = {t.id: t for t in client.task.list(job_id)}
    assert sorted(listed) == ["topNtask0", "topNtask1", "topNtask2"]
    incomplete = [t for t in listed.values() if t.state != batchmodels.TaskState.completed]
    # The start task fetches pip from the internet, which this machine cannot reach: it
    # fails, the node is `starttaskfailed` (waitForSuccess) and the tasks wait, truthfully.
    # test_tutorial_v4.py runs the tutorial to completion with the local edits.
    assert len(incomplete) == 3
    for idx in range(3):
        t = listed[f"topNtask{idx}"]
        assert t.state == batchmodels.TaskState.active
        assert t.command_line == tasks[idx].command_line
        assert [(r.blob_source, r.file_path) for r in t.resource_files] == \
            [(input_files[idx].blob_source, f"taskdata{idx + 1}.txt")]
    pool = client.pool.get(pool_id)
    assert pool.target_dedicated_nodes == 1
    assert pool.start_task.user_identity.auto_user.elevation_level == batchmodels.ElevationLevel.admin
    assert pool.start_task.user_identity.auto_user.scope == batchmodels.AutoUserScope.pool
    assert pool.start_task.wait_for_success is True
    assert [r.blob_source for r in pool.start_task.resource_files] == \
        [application_files[0].blob_source]

    # Clean up: job.delete, pool.delete (the tutorial asks y/n first).
    assert client.job.delete(job_id, raw=True).response.status_code == 202
    assert client.pool.delete(pool_id, raw=True).response.status_code == 202
    for fn in (lambda: client.job.get(job_id), lambda: client.pool.get(pool_id)):
        deadline = time.monotonic() + 10
        while True:
            try:
                fn()
            except batchmodels.batch_error.BatchErrorException as e:
                assert e.response.status_code == 404, e.response.text
                break
            assert time.monotonic() < deadline, "not deleted within 10 s"
            time.sleep(0.1)
