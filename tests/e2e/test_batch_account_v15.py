"""Batch end-to-end tests, azure-batch 15.1.0 (azure-core generation, api-version
2025-06-01, `BatchClient` + `AzureNamedKeyCredential`). Run with .venv/batch-15.
"""
from __future__ import annotations

import pytest
from azure.batch import BatchClient
from azure.batch import models as bm
from azure.core.credentials import AzureNamedKeyCredential
from azure.core.exceptions import HttpResponseError

from e2e_support import BATCH_ACCOUNT, BATCH_KEY, WRONG_KEY

UBUNTU_1604 = ("Canonical", "UbuntuServer", "16.04-LTS", "batch.node.ubuntu 16.04")
UBUNTU_2204 = ("canonical", "0001-com-ubuntu-server-jammy", "22_04-lts", "batch.node.ubuntu 22.04")


def make_client(url: str, key: str = BATCH_KEY, **kwargs) -> BatchClient:
    # retry_total=0: an unexpected 5xx should fail the test now, not after 10 retries.
    return BatchClient(url, AzureNamedKeyCredential(BATCH_ACCOUNT, key), retry_total=0, **kwargs)


@pytest.fixture(scope="module")
def client(cobalt_batch) -> BatchClient:
    return make_client(cobalt_batch)


def image_tuple(img) -> tuple:
    r = img.image_reference
    return (r.publisher, r.offer, r.sku, img.node_agent_sku_id)


def test_client_speaks_2025_06_01(client):
    assert client._config.api_version == "2025-06-01"


def test_list_supported_images(client):
    images = list(client.list_supported_images())
    found = {image_tuple(i) for i in images}
    assert UBUNTU_1604 in found, found
    assert UBUNTU_2204 in found, found
    for img in images:
        assert img.os_type == bm.OSType.LINUX, img
        assert img.verification_type == bm.ImageVerificationType.VERIFIED, img


def test_list_supported_images_pages_with_max_results_1(client):
    everything = [image_tuple(i) for i in client.list_supported_images()]
    paged = [image_tuple(i) for i in client.list_supported_images(max_results=1)]
    assert paged == everything
    # by_page() sees one entry per page.
    pages = [list(p) for p in client.list_supported_images(max_results=1).by_page()]
    assert len(pages) == len(everything)
    assert all(len(p) == 1 for p in pages)


def test_list_pool_node_counts_is_empty_without_pools(client):
    assert list(client.list_pool_node_counts()) == []


def test_wrong_key_is_403(cobalt_batch):
    bad = make_client(cobalt_batch, key=WRONG_KEY)
    with pytest.raises(HttpResponseError) as ei:
        list(bad.list_supported_images())
    e = ei.value
    assert e.status_code == 403, e
    assert e.error is not None and e.error.code == "AuthenticationFailed", e
    assert isinstance(e.error.message, str) and e.error.message, e
    assert e.model is not None and e.model.code == "AuthenticationFailed"
    assert e.response.headers.get("request-id")
    assert "AuthenticationErrorDetail" in [d.code for d in e.error.details], e.error.details


def test_unsupported_api_version_is_400(cobalt_batch):
    c = make_client(cobalt_batch, api_version="2099-01-01")
    with pytest.raises(HttpResponseError) as ei:
        list(c.list_pool_node_counts())
    e = ei.value
    assert e.status_code == 400, e
    assert e.error.code in ("UnsupportedRequestVersion", "InvalidQueryParameterValue"), e
