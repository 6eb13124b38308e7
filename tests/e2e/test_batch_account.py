"""Batch end-to-end tests, azure-batch 14.2.0 (api-version 2024-02-01.19.0), plus the
SDK-independent wire checks (raw signed requests from e2e_support.batch_request).

Run with .venv/batch-14 (see run.sh). Covered here: the account-level lists
(/supportedimages, /nodecounts), SharedKey authentication, api-version checks and the
error format (shared/reference/batch-rest.md sections 2-8). Pools, jobs, job schedules
and tasks are in test_batch_control_v14.py.
"""
from __future__ import annotations

import uuid
from email.utils import formatdate

import pytest
import requests
from azure.batch import BatchServiceClient
from azure.batch import models as batchmodels
from azure.batch.batch_auth import SharedKeyAuth, SharedKeyCredentials

from e2e_support import (BATCH_ACCOUNT, BATCH_KEY, WRONG_KEY, batch_request,
                         batch_signature, batch_string_to_sign)

API_VERSION = "2024-02-01.19.0"

# Images the catalogue must offer (batch-rest.md section 1; newer SDK samples pick jammy).
UBUNTU_1604 = ("Canonical", "UbuntuServer", "16.04-LTS", "batch.node.ubuntu 16.04")
UBUNTU_2204 = ("canonical", "0001-com-ubuntu-server-jammy", "22_04-lts", "batch.node.ubuntu 22.04")


def make_client(url: str, key: str = BATCH_KEY, account: str = BATCH_ACCOUNT) -> BatchServiceClient:
    return BatchServiceClient(SharedKeyCredentials(account, key), batch_url=url)


@pytest.fixture(scope="module")
def client(cobalt_batch) -> BatchServiceClient:
    return make_client(cobalt_batch)


def image_tuple(img) -> tuple:
    r = img.image_reference
    return (r.publisher, r.offer, r.sku, img.node_agent_sku_id)


def expect_batch_error(fn, status: int, codes) -> batchmodels.BatchErrorException:
    """Call fn, expect BatchErrorException with this HTTP status and one of `codes`."""
    codes = (codes,) if isinstance(codes, str) else tuple(codes)
    with pytest.raises(batchmodels.BatchErrorException) as ei:
        fn()
    e = ei.value
    assert e.response.status_code == status, (e.response.status_code, e.response.text)
    assert e.error is not None, e.response.text
    assert e.error.code in codes, (e.error.code, e.response.text)
    assert e.error.message is not None and e.error.message.value, e.response.text
    assert e.error.message.lang.lower() == "en-us"
    return e


def assert_batch_error_body(resp, status: int, codes) -> dict:
    """A raw error response: status, request-id, JSON Content-Type and the BatchError
    body {"odata.metadata", "code", "message": {"lang", "value"}, ["values"]}."""
    codes = (codes,) if isinstance(codes, str) else tuple(codes)
    assert resp.status == status, resp
    assert_request_id(resp)
    assert "application/json" in (resp.headers.get("Content-Type") or ""), resp.headers
    body = resp.json()
    assert isinstance(body.get("odata.metadata"), str) and body["odata.metadata"], body
    assert body.get("code") in codes, body
    msg = body.get("message")
    assert isinstance(msg, dict), body
    assert msg.get("lang") == "en-US", body
    assert isinstance(msg.get("value"), str) and msg["value"], body
    for v in body.get("values") or []:
        assert set(v) == {"key", "value"}, body
    return body


def assert_request_id(resp) -> str:
    rid = resp.headers.get("request-id")
    assert rid, f"no request-id header: {dict(resp.headers)}"
    uuid.UUID(rid)  # a GUID, as the real service sends
    return rid


# -- SharedKey signer of the raw tests (no server needed) ----------------------------------

def test_raw_signer_matches_reference_vectors_and_sdk():
    """e2e_support's signer reproduces batch-rest.md section 3's vectors and the 14.2.0
    SharedKeyAuth, so the raw tests below sign exactly like the SDK."""
    key = "YmF0Y2gtbW9jay1zaGFyZWQta2V5LTAxMjM0NTY3ODk="
    date = {"ocp-date": "Fri, 17 Feb 2017 00:00:00 GMT"}
    sts = batch_string_to_sign(
        "GET", "/jobs/job1/tasks",
        "api-version=2024-02-01.19.0&$filter=state%20eq%20%27completed%27"
        "&$select=id%2Cstate&maxresults=2&timeout=30", date, "testaccount")
    assert sts == ("GET\n\n\n\n\n\n\n\n\n\n\n\nocp-date:Fri, 17 Feb 2017 00:00:00 GMT\n"
                   "/testaccount/jobs/job1/tasks\n$filter:state eq 'completed'\n"
                   "$select:id,state\napi-version:2024-02-01.19.0\nmaxresults:2\ntimeout:30")
    assert batch_signature(sts, key) == "hHiSRIJ7aiCC2wbMmPctYNSxSRweZQk3vmbvJF9jdUU="
    post = dict(date, **{"Content-Length": "47",
                         "Content-Type": "application/json; odata=minimalmetadata; charset=utf-8"})
    assert batch_signature(batch_string_to_sign(
        "POST", "/jobs", "api-version=2024-02-01.19.0", post, "testaccount"), key) \
        == "X41QHNAEsUEpQMPEO3GqS86Pg6o4pfgGUQrz7iQHx1Q="
    assert batch_signature(batch_string_to_sign(
        "DELETE", "/pools/pool1", "api-version=2024-02-01.19.0",
        dict(date, **{"Content-Length": "0"}), "testaccount"), key) \
        == "cKd71xXV3r+E9gBlMaoTAwZuF3BAbWMbxbYsJgK+f7M="

    # Cross-check with the SDK's own signer on a prepared request.
    req = requests.Request(
        "GET", "http://127.0.0.1:1/supportedimages?api-version=2024-02-01.19.0&maxresults=1",
        headers={"ocp-date": "Fri, 17 Feb 2017 00:00:00 GMT"}).prepare()
    SharedKeyAuth("Authorization", BATCH_ACCOUNT, BATCH_KEY)(req)
    ours = batch_signature(batch_string_to_sign(
        "GET", "/supportedimages", "api-version=2024-02-01.19.0&maxresults=1",
        dict(req.headers), BATCH_ACCOUNT))
    assert req.headers["Authorization"] == f"SharedKey {BATCH_ACCOUNT}:{ours}"


# -- GET /supportedimages ------------------------------------------------------------------

def test_list_supported_images(client):
    images = list(client.account.list_supported_images())
    assert images, "the catalogue is empty"
    found = {image_tuple(i) for i in images}
    assert UBUNTU_1604 in found, found
    assert UBUNTU_2204 in found, found
    for img in images:
        assert img.node_agent_sku_id, img
        r = img.image_reference
        assert r.publisher and r.offer and r.sku, img
        assert img.os_type == batchmodels.OSType.linux, img
        assert img.verification_type == batchmodels.VerificationType.verified, img


def test_list_supported_images_pages_with_maxresults_1(client):
    everything = [image_tuple(i) for i in client.account.list_supported_images()]
    assert len(everything) >= 2
    opts = batchmodels.AccountListSupportedImagesOptions(max_results=1)
    paged = [image_tuple(i) for i in client.account.list_supported_images(
        account_list_supported_images_options=opts)]
    assert paged == everything


def test_supported_images_pages_on_the_wire(cobalt_batch):
    """maxresults=1: one entry per page and an absolute odata.nextLink that carries the
    api-version (14.x and 4.0.0 GET it verbatim, batch-rest.md section 7); none on the
    last page."""
    resp = batch_request(cobalt_batch, "GET", "/supportedimages",
                         [("maxresults", "1")], api_version=API_VERSION)
    assert resp.status == 200, resp
    assert_request_id(resp)
    assert "application/json" in (resp.headers.get("Content-Type") or "")
    total = len(batch_request(cobalt_batch, "GET", "/supportedimages",
                              api_version=API_VERSION).json()["value"])
    pages = 0
    seen = []
    while True:
        body = resp.json()
        pages += 1
        assert len(body["value"]) == 1, body
        seen.append(body["value"][0]["nodeAgentSKUId"])
        link = body.get("odata.nextLink")
        if not link:
            break
        assert link.startswith("http://") or link.startswith("https://"), link
        assert "api-version=" in link, link
        assert pages < 100, "nextLink never ends"
        resp = batch_request(cobalt_batch, "GET", link)
        assert resp.status == 200, resp
    assert pages == total, (pages, total)


def test_maxresults_out_of_range_is_rejected(cobalt_batch):
    resp = batch_request(cobalt_batch, "GET", "/supportedimages", [("maxresults", "0")],
                         api_version=API_VERSION)
    assert_batch_error_body(resp, 400, ("InvalidQueryParameterValue",
                                        "OutOfRangeQueryParameterValue"))


# -- GET /nodecounts -----------------------------------------------------------------------

def test_list_pool_node_counts_is_empty_without_pools(client):
    assert list(client.account.list_pool_node_counts()) == []


# -- authentication ------------------------------------------------------------------------

def test_wrong_key_is_403_authentication_failed(cobalt_batch):
    bad = make_client(cobalt_batch, key=WRONG_KEY)
    e = expect_batch_error(lambda: list(bad.account.list_supported_images()),
                           403, "AuthenticationFailed")
    assert_request_id_header(e.response)
    # The real service explains the mismatch in values[AuthenticationErrorDetail].
    keys = [v.key for v in (e.error.values or [])]
    assert "AuthenticationErrorDetail" in keys, keys


def test_wrong_key_on_node_counts_too(cobalt_batch):
    bad = make_client(cobalt_batch, key=WRONG_KEY)
    expect_batch_error(lambda: list(bad.account.list_pool_node_counts()),
                       403, "AuthenticationFailed")


def test_unknown_account_is_403(cobalt_batch):
    other = make_client(cobalt_batch, account="someotheraccount")
    expect_batch_error(lambda: list(other.account.list_supported_images()),
                       403, "AuthenticationFailed")


def test_missing_authorization_is_rejected(cobalt_batch):
    resp = batch_request(cobalt_batch, "GET", "/supportedimages", key=None,
                         api_version=API_VERSION)
    # Azure Batch answers 403 AuthenticationFailed (401 would also stop the SDKs).
    assert resp.status in (401, 403), resp
    assert_batch_error_body(resp, resp.status, ("AuthenticationFailed",
                                                "InvalidAuthenticationInfo"))


def test_stale_ocp_date_is_rejected(cobalt_batch):
    """A correctly signed request more than 15 minutes old (batch-rest.md section 3)."""
    import time
    old = formatdate(time.time() - 3600, usegmt=True)
    resp = batch_request(cobalt_batch, "GET", "/supportedimages", api_version=API_VERSION,
                         ocp_date=old)
    assert_batch_error_body(resp, 403, "AuthenticationFailed")
    fresh = batch_request(cobalt_batch, "GET", "/supportedimages", api_version=API_VERSION)
    assert fresh.status == 200, fresh


# -- api-version ---------------------------------------------------------------------------

def test_unsupported_api_version_via_sdk(cobalt_batch):
    c = make_client(cobalt_batch)
    c.account.api_version = "2099-01-01.99.0"
    e = expect_batch_error(lambda: list(c.account.list_supported_images()),
                           400, ("UnsupportedRequestVersion", "InvalidQueryParameterValue"))
    assert_request_id_header(e.response)


def test_unsupported_api_version_raw(cobalt_batch):
    resp = batch_request(cobalt_batch, "GET", "/supportedimages", api_version="2013-01-01.0.0")
    assert_batch_error_body(resp, 400, ("UnsupportedRequestVersion", "InvalidQueryParameterValue"))


def test_missing_api_version_raw(cobalt_batch):
    resp = batch_request(cobalt_batch, "GET", "/supportedimages", api_version=None)
    assert_batch_error_body(resp, 400, ("MissingRequiredQueryParameter",
                                        "UnsupportedRequestVersion",
                                        "InvalidQueryParameterValue"))


@pytest.mark.parametrize("version", ["2017-09-01.6.0", "2024-02-01.19.0", "2025-06-01"])
def test_each_sdk_api_version_is_accepted_raw(cobalt_batch, version):
    resp = batch_request(cobalt_batch, "GET", "/nodecounts", api_version=version)
    assert resp.status == 200, resp
    assert resp.json()["value"] == []


# -- request-id and the error body -----------------------------------------------------------

def assert_request_id_header(response) -> None:
    rid = response.headers.get("request-id")
    assert rid, f"no request-id header: {dict(response.headers)}"
    uuid.UUID(rid)


def test_every_response_carries_a_request_id(cobalt_batch):
    responses = [
        batch_request(cobalt_batch, "GET", "/supportedimages", api_version=API_VERSION),  # 200
        batch_request(cobalt_batch, "GET", "/nodecounts", api_version=API_VERSION),       # 200
        batch_request(cobalt_batch, "GET", "/supportedimages", key=WRONG_KEY,
                      api_version=API_VERSION),                                           # 403
        batch_request(cobalt_batch, "GET", "/supportedimages", api_version="2099-01-01"), # 400
        batch_request(cobalt_batch, "POST", "/pools", body=b'{"id":"p","vmSize":"x"}',
                      api_version=API_VERSION),                                           # 400
    ]
    # The last pool has no virtualMachineConfiguration: 400 MissingRequiredProperty.
    assert [r.status for r in responses] == [200, 200, 403, 400, 400], responses
    ids = [assert_request_id(r) for r in responses]
    assert len(set(ids)) == len(ids), ids


def test_client_request_id_is_echoed_when_asked(cobalt_batch):
    """return-client-request-id: true -> the service echoes client-request-id."""
    crid = str(uuid.uuid4())
    resp = batch_request(cobalt_batch, "GET", "/nodecounts", api_version=API_VERSION,
                         headers={"client-request-id": crid, "return-client-request-id": "true"})
    assert resp.status == 200, resp
    assert_request_id(resp)
    assert resp.headers.get("client-request-id") == crid, dict(resp.headers)


def test_error_body_shape_and_sdk_fields(cobalt_batch):
    bad = make_client(cobalt_batch, key=WRONG_KEY)
    e = expect_batch_error(lambda: list(bad.account.list_pool_node_counts()),
                           403, "AuthenticationFailed")
    assert isinstance(e.error.message.value, str) and e.error.message.value
    assert e.error.message.lang == "en-US"
    body = e.response.json()
    assert set(body) >= {"odata.metadata", "code", "message"}, body
    assert body["message"]["value"] == e.error.message.value
    raw = batch_request(cobalt_batch, "GET", "/nodecounts", key=WRONG_KEY, api_version=API_VERSION)
    assert_batch_error_body(raw, 403, "AuthenticationFailed")

