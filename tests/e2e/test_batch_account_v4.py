"""Batch end-to-end tests, azure-batch 4.0.0: the SDK the Azure Batch Python tutorial pins
(api-version 2017-09-01.6.0). Run with .venv/batch-4 (see run.sh).

The client is built exactly as the tutorial builds it, and the image lookup is the
tutorial's common/helpers.py logic (batch-rest.md section 1).
"""
from __future__ import annotations

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
