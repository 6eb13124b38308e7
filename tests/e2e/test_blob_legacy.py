"""End-to-end tests with the legacy SDK azure-storage 0.36.0 (BlockBlobService).

This is the generation the Azure Batch Python tutorial uses
(`from azure.storage.blob import BlockBlobService`). Run with .venv/legacy.

What 0.36.0 puts on the wire (read from site-packages/azure/storage, confirmed with a
response hook against Azurite):

* x-ms-version: 2017-04-17 on every request (_constants.X_MS_VERSION); no Content-Type
  on Put Blob; `User-Agent: Azure-Storage/0.36.0 (Python CPython 3.11.7; Linux ...)`.
* SAS tokens: sv=2017-04-17, e.g. `se=2026-11-21T07%3A54%3A37Z&sp=r&sv=2017-04-17&sr=b&sig=...%3D`
  (values url-quoted with '/' left raw). The string-to-sign is the pre-2018-11-09 service
  SAS form: sp, st, se, /blob/<account>/<container>[/<blob>], si, sip, spr, sv, rscc, rscd,
  rsce, rscl, rsct -- no `sr` line, no snapshot time, no `ses`.
* URLs: the endpoint is "<host[:port]>[/<path>]" (`primary_endpoint`). `is_emulated=True`
  ignores account_name, account_key AND custom_domain and always means
  http://127.0.0.1:10000/devstoreaccount1 with the well-known key; so to reach a server on
  another port we pass `custom_domain="http://127.0.0.1:PORT/devstoreaccount1"` (scheme
  included: it sets the protocol, and a bare "host:port" is mis-parsed by urlparse for
  non-IP host names) with is_emulated=False. `_update_request()` then moves the path part of
  the host into the request path: `request.host = "127.0.0.1:PORT"`,
  `request.path = "/devstoreaccount1/<container>/<blob>"`. SharedKey signs
  "/" + account + request.path, i.e. "/devstoreaccount1/devstoreaccount1/c/b" (as Azure's
  rules require for path-style URLs).
* THE BUG a server must absorb: operations that pin their location with
  `_OperationContext(location_lock=True)` remember `request.host` *after* that rewrite, i.e.
  without the "/devstoreaccount1" part. Every follow-up request of the same operation
  therefore goes to `http://127.0.0.1:PORT/<container>/<blob>` -- no account segment -- and
  is signed (SharedKey) as "/devstoreaccount1/<container>/<blob>", or carries the SAS,
  which is signed for /blob/devstoreaccount1/<container>/<blob> as usual. Affected:
    - get_blob_to_* (max_connections >= 2, the default) of a blob > 32 MiB: first
      `GET /devstoreaccount1/c/b` with x-ms-range: bytes=0-33554431, then
      `GET /c/b` with x-ms-range: bytes=33554432-37748735 ... (4 MiB) + If-Match: <etag>;
    - get_blob_to_* of an EMPTY blob: `GET /devstoreaccount1/c/b` with
      x-ms-range: bytes=0-33554431 -> 416 InvalidRange, then the SDK retries
      `GET /c/b` without a range and expects 200;
    - list_blobs / list_containers when the generator follows a NextMarker by itself
      (`GET /c?restype=container&comp=list&marker=...`, `GET /?comp=list&marker=...`).
  With max_connections=1 downloads are a single GET with the account in the path.
  Azurite answers the account-less requests with 400 (it takes the container name as the
  account), so the 70 MiB / 0 B / auto-paging tests below fail there; Azure itself puts the
  account in the host name, where the bug is invisible. Cobalt must treat a path whose
  first segment is not a known account as /<container>/<blob> of devstoreaccount1.
"""
from __future__ import annotations

import datetime
import io
import urllib.request
from urllib.parse import urlsplit

import pytest

try:
    from azure.common import (AzureConflictHttpError, AzureHttpError,
                              AzureMissingResourceHttpError)
    from azure.storage._constants import X_MS_VERSION, __version__ as SDK_VERSION
    from azure.storage.blob import (BlobPermissions, BlockBlobService, ContainerPermissions,
                                    Include, PublicAccess)
    from azure.storage.blob.models import BlobPrefix, ContentSettings
    from azure.storage.models import _OperationContext
    from azure.storage.retry import no_retry
except ImportError as exc:  # wrong venv: this module needs azure-storage 0.36.0
    pytest.skip(f"azure-storage 0.36.0 not importable ({exc}); use .venv/legacy",
                allow_module_level=True)

from e2e_support import ACCOUNT, EXTERNAL, KEY, WRONG_KEY, KiB, MiB, port_is_free, sha256, unique

if SDK_VERSION != "0.36.0":
    pytest.skip(f"expected azure-storage 0.36.0, found {SDK_VERSION}", allow_module_level=True)

SIZES = [0, 1 * KiB, 9 * MiB, 70 * MiB]
SIZE_IDS = ["0B", "1KiB", "9MiB", "70MiB"]


# ---------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------
class Recorder:
    """requests response hook: remembers (method, path, query, x-ms-range, status)."""

    def __init__(self):
        self.calls = []

    def __call__(self, resp, *args, **kwargs):
        req = resp.request
        parts = urlsplit(req.url)
        self.calls.append((req.method, parts.path, parts.query, req.headers.get("x-ms-range"),
                           req.headers.get("x-ms-version"), resp.status_code))

    def clear(self):
        self.calls.clear()


def make_service(endpoint, *, key=KEY, sas_token=None, anonymous=False, recorder=None):
    kw = {"account_name": ACCOUNT, "custom_domain": endpoint}
    if sas_token is not None:
        kw["sas_token"] = sas_token
    elif not anonymous:
        kw["account_key"] = key
    svc = BlockBlobService(**kw)
    svc.retry = no_retry          # fail fast: the default ExponentialRetry sleeps 15 s+
    if recorder is not None:
        svc.request_session.hooks["response"].append(recorder)
    return svc


def utcnow():
    return datetime.datetime.utcnow()


def expect_http_error(fn, status, code=None, exc=AzureHttpError):
    with pytest.raises(exc) as ei:
        fn()
    err = ei.value
    assert err.status_code == status, f"status {err.status_code} != {status}: {err}"
    if code is not None:
        # 0.36.0 keeps no error code; it is in the XML body it appends to the message
        # (HEAD responses have no body).
        assert f"<Code>{code}</Code>" in str(err), f"{code} not in {err}"
    return err


def account_less_gets(recorder: Recorder, container: str, blob: str):
    """GETs of the blob sent without the account segment (the 0.36.0 follow-ups)."""
    return [c for c in recorder.calls if c[0] == "GET" and c[1] == f"/{container}/{blob}"]


@pytest.fixture(scope="module")
def endpoint(cobalt):
    return cobalt


@pytest.fixture(scope="module")
def svc(endpoint):
    return make_service(endpoint)


@pytest.fixture
def container(svc):
    name = unique("legacy")
    assert svc.create_container(name) is True
    yield name
    svc.delete_container(name)


# ---------------------------------------------------------------------------------
# client construction
# ---------------------------------------------------------------------------------
def test_sdk_identity_and_endpoint_parsing(endpoint):
    assert X_MS_VERSION == "2017-04-17"
    svc = make_service(endpoint)
    assert svc.protocol == "http"
    assert svc.primary_endpoint == endpoint.split("://", 1)[1]
    # is_emulated=True is hard-wired to 127.0.0.1:10000 and ignores custom_domain
    emu = BlockBlobService(account_name=ACCOUNT, account_key=KEY, is_emulated=True,
                           custom_domain=endpoint)
    assert emu.primary_endpoint == f"127.0.0.1:10000/{ACCOUNT}"
    assert emu.protocol == "http" and emu.account_key == KEY


def test_is_emulated_client_roundtrip(endpoint, cobalt_factory):
    # is_emulated=True always targets http://127.0.0.1:10000/devstoreaccount1: run a server of
    # our own there unless the suite's server is already on it.
    if endpoint != f"http://127.0.0.1:10000/{ACCOUNT}":
        if not port_is_free(10000):
            pytest.skip("port 10000 is taken by another process")
        cobalt_factory("emulated", port=10000).start()
    emu = BlockBlobService(is_emulated=True)
    emu.retry = no_retry
    name = unique("emu")
    emu.create_container(name)
    try:
        emu.create_blob_from_bytes(name, "b", b"emulated")
        assert emu.get_blob_to_bytes(name, "b").content == b"emulated"
    finally:
        emu.delete_container(name)


# ---------------------------------------------------------------------------------
# containers
# ---------------------------------------------------------------------------------
def test_create_and_delete_container(svc):
    name = unique("cont")
    assert svc.create_container(name) is True
    try:
        assert svc.create_container(name) is False                       # fail_on_exist=False
        expect_http_error(lambda: svc.create_container(name, fail_on_exist=True), 409,
                          "ContainerAlreadyExists", AzureConflictHttpError)
        assert svc.exists(name) is True
        props = svc.get_container_properties(name)
        assert props.name == name and props.properties.etag
        svc.set_container_metadata(name, {"team": "cobalt"})
        assert svc.get_container_metadata(name) == {"team": "cobalt"}
        assert name in [c.name for c in svc.list_containers(prefix=name)]
    finally:
        assert svc.delete_container(name) is True
    assert svc.exists(name) is False
    assert svc.delete_container(name) is False                           # swallowed 404
    expect_http_error(lambda: svc.delete_container(name, fail_not_exist=True), 404,
                      "ContainerNotFound", AzureMissingResourceHttpError)


def test_container_acl_public_access(svc, endpoint, container):
    assert svc.get_container_acl(container).public_access is None
    svc.set_container_acl(container, public_access=PublicAccess.Container)
    assert svc.get_container_acl(container).public_access == "container"
    # (0.36.0 reads PublicAccess only from the List Containers XML, not from headers)
    [listed] = [c for c in svc.list_containers(prefix=container)]
    assert listed.properties.public_access == "container"
    svc.create_blob_from_bytes(container, "pub.txt", b"public data")

    anon = make_service(endpoint, anonymous=True)
    assert anon.get_blob_to_bytes(container, "pub.txt", max_connections=1).content == b"public data"
    assert anon.get_blob_to_bytes(container, "pub.txt").content == b"public data"
    assert [b.name for b in anon.list_blobs(container)] == ["pub.txt"]
    with pytest.raises(AzureHttpError) as ei:          # anonymous clients never write
        anon.create_blob_from_bytes(container, "x.txt", b"x")
    assert ei.value.status_code in (401, 403, 404)
    assert not svc.exists(container, "x.txt")

    svc.set_container_acl(container, public_access=PublicAccess.Blob)
    assert svc.get_container_acl(container).public_access == "blob"
    assert anon.get_blob_to_bytes(container, "pub.txt").content == b"public data"
    with pytest.raises(AzureHttpError):
        list(anon.list_blobs(container))

    svc.set_container_acl(container)                    # back to private
    assert svc.get_container_acl(container).public_access is None
    with pytest.raises(AzureHttpError) as ei:
        anon.get_blob_to_bytes(container, "pub.txt")
    assert ei.value.status_code in ((404,) if not EXTERNAL else (403, 404))


# ---------------------------------------------------------------------------------
# upload / download
# ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def payload_files(payloads, tmp_path_factory):
    d = tmp_path_factory.mktemp("legacy-payloads")
    paths = {}
    for size in SIZES:
        p = d / f"payload-{size}.bin"
        p.write_bytes(payloads[size].data)
        paths[size] = p
    return paths


@pytest.mark.parametrize("size", SIZES, ids=SIZE_IDS)
def test_create_blob_from_path_and_download(endpoint, container, payloads, payload_files,
                                            tmp_path, size):
    """create_blob_from_path + get_blob_to_bytes/path as the Batch tutorial does.
    For 70 MiB (> 32 MiB) and 0 B the default download (max_connections=2) sends
    account-less follow-up GETs; the recorder proves it."""
    rec = Recorder()
    svc = make_service(endpoint, recorder=rec)
    p = payloads[size]
    svc.create_blob_from_path(container, "blob.bin", str(payload_files[size]))
    puts = [c for c in rec.calls if c[0] == "PUT"]
    assert all(c[1] == f"/{ACCOUNT}/{container}/blob.bin" for c in puts)
    if size >= 64 * MiB:   # 18 x Put Block + Put Block List
        assert sum("comp=block&" in c[2] for c in puts) == 18
        assert any("comp=blocklist" in c[2] for c in puts)
    assert {c[4] for c in rec.calls} == {"2017-04-17"}

    rec.clear()
    blob = svc.get_blob_to_bytes(container, "blob.bin")                  # max_connections=2
    assert len(blob.content) == size and sha256(blob.content) == p.sha256
    assert blob.properties.content_length == size
    follow_ups = account_less_gets(rec, container, "blob.bin")
    if size == 0:
        # 416 for bytes=0-33554431, then a plain GET without the account segment
        assert [(c[3], c[5]) for c in rec.calls] == [("bytes=0-33554431", 416), (None, 200)]
        assert len(follow_ups) == 1
    elif size > 32 * MiB:
        assert rec.calls[0][1] == f"/{ACCOUNT}/{container}/blob.bin"
        assert rec.calls[0][3] == "bytes=0-33554431"
        assert len(follow_ups) == 10 and all(c[5] == 206 for c in follow_ups)
    else:
        assert follow_ups == []

    out = tmp_path / "out.bin"
    svc.get_blob_to_path(container, "blob.bin", str(out), max_connections=4)
    assert out.stat().st_size == size and sha256(out.read_bytes()) == p.sha256
    single = svc.get_blob_to_bytes(container, "blob.bin", max_connections=1)
    assert sha256(single.content) == p.sha256

    props = svc.get_blob_properties(container, "blob.bin")
    assert props.properties.content_length == size
    assert props.properties.blob_type == "BlockBlob"
    assert props.properties.etag and props.properties.last_modified
    if size < 64 * MiB:  # single Put Blob: server-computed Content-MD5
        assert props.properties.content_settings.content_md5


@pytest.mark.parametrize("size", SIZES, ids=SIZE_IDS)
def test_create_blob_from_bytes_and_text(svc, container, payloads, size):
    p = payloads[size]
    svc.create_blob_from_bytes(container, "bytes.bin", p.data, max_connections=4)
    assert sha256(svc.get_blob_to_bytes(container, "bytes.bin", max_connections=4).content) == p.sha256
    if size <= 9 * MiB:
        text = p.data.hex()[: size]          # `size` characters of ASCII text
        svc.create_blob_from_text(container, "text.txt", text)
        assert svc.get_blob_to_text(container, "text.txt").content == text
        assert svc.get_blob_to_bytes(container, "text.txt").content == text.encode()
    svc.create_blob_from_stream(container, "stream.bin", io.BytesIO(p.data))
    assert sha256(svc.get_blob_to_bytes(container, "stream.bin").content) == p.sha256


def test_ranged_downloads(endpoint, container, payloads):
    rec = Recorder()
    svc = make_service(endpoint, recorder=rec)
    small, big = payloads[9 * MiB], payloads[70 * MiB]
    svc.create_blob_from_bytes(container, "small.bin", small.data)
    svc.create_blob_from_bytes(container, "big.bin", big.data, max_connections=4)

    got = svc.get_blob_to_bytes(container, "small.bin", start_range=100, end_range=149)
    assert got.content == small.data[100:150]
    got = svc.get_blob_to_bytes(container, "small.bin", start_range=9 * MiB - 10)
    assert got.content == small.data[-10:]
    got = svc.get_blob_to_bytes(container, "small.bin", start_range=5, end_range=5,
                                max_connections=1)
    assert got.content == small.data[5:6]

    # a 69 MiB range of the big blob: 32 MiB first GET + account-less 4 MiB GETs
    rec.clear()
    start, end = 1 * MiB, 70 * MiB - 1
    got = svc.get_blob_to_bytes(container, "big.bin", start_range=start, end_range=end,
                                max_connections=4)
    assert sha256(got.content) == sha256(big.data[start:end + 1])
    assert account_less_gets(rec, container, "big.bin")
    got = svc.get_blob_to_bytes(container, "big.bin", start_range=40 * MiB, end_range=41 * MiB + 6)
    assert got.content == big.data[40 * MiB:41 * MiB + 7]


def test_properties_metadata_exists_delete(svc, container):
    svc.create_blob_from_bytes(container, "doc.txt", b"hello",
                               content_settings=ContentSettings(content_type="text/plain",
                                                                content_language="en"),
                               metadata={"a": "1"})
    props = svc.get_blob_properties(container, "doc.txt")
    assert props.properties.content_length == 5
    assert props.properties.content_settings.content_type == "text/plain"
    assert props.properties.content_settings.content_language == "en"
    assert props.metadata == {"a": "1"}
    etag = props.properties.etag

    svc.set_blob_metadata(container, "doc.txt", {"b": "2", "c": "three"})
    assert svc.get_blob_metadata(container, "doc.txt") == {"b": "2", "c": "three"}
    assert svc.get_blob_properties(container, "doc.txt").properties.etag != etag
    svc.set_blob_properties(container, "doc.txt",
                            content_settings=ContentSettings(content_type="application/json"))
    assert svc.get_blob_properties(container, "doc.txt").properties.content_settings.content_type \
        == "application/json"

    assert svc.exists(container, "doc.txt") is True
    assert svc.exists(container, "nope.txt") is False
    assert svc.exists(container) is True
    svc.delete_blob(container, "doc.txt")
    assert svc.exists(container, "doc.txt") is False
    expect_http_error(lambda: svc.delete_blob(container, "doc.txt"), 404, "BlobNotFound",
                      AzureMissingResourceHttpError)
    expect_http_error(lambda: svc.get_blob_to_bytes(container, "doc.txt", max_connections=1), 404,
                      "BlobNotFound", AzureMissingResourceHttpError)
    expect_http_error(lambda: svc.get_blob_properties(container, "doc.txt"), 404, None,
                      AzureMissingResourceHttpError)


def test_conditional_overwrite(svc, container):
    svc.create_blob_from_bytes(container, "c.txt", b"v1")
    expect_http_error(lambda: svc.create_blob_from_bytes(container, "c.txt", b"v2", if_none_match="*"),
                      409, "BlobAlreadyExists", AzureConflictHttpError)
    etag = svc.get_blob_properties(container, "c.txt").properties.etag
    svc.create_blob_from_bytes(container, "c.txt", b"v2", if_match=etag)
    expect_http_error(lambda: svc.create_blob_from_bytes(container, "c.txt", b"v3", if_match=etag),
                      412, "ConditionNotMet")
    assert svc.get_blob_to_bytes(container, "c.txt").content == b"v2"


def test_blocks_copy_and_modified_since(svc, container):
    from azure.storage.blob.models import BlobBlock, BlobBlockState, BlockListType
    svc.put_block(container, "blocks.bin", b"first-", "YmxvY2stMQ==")
    svc.put_block(container, "blocks.bin", b"second", "YmxvY2stMg==")
    listed = svc.get_block_list(container, "blocks.bin", block_list_type=BlockListType.All)
    assert [b.id for b in listed.uncommitted_blocks] == ["YmxvY2stMQ==", "YmxvY2stMg=="]
    assert not listed.committed_blocks
    svc.put_block_list(container, "blocks.bin", [BlobBlock("YmxvY2stMg==", BlobBlockState.Latest),
                                                 BlobBlock("YmxvY2stMQ==", BlobBlockState.Latest)])
    assert svc.get_blob_to_bytes(container, "blocks.bin").content == b"secondfirst-"
    listed = svc.get_block_list(container, "blocks.bin", block_list_type=BlockListType.All)
    assert [(b.id, b.size) for b in listed.committed_blocks] == [("YmxvY2stMg==", 6), ("YmxvY2stMQ==", 6)]
    assert not listed.uncommitted_blocks
    # Committed blocks can be listed again, in any order; a block that is not there cannot.
    svc.put_block_list(container, "blocks.bin", [BlobBlock("YmxvY2stMQ==", BlobBlockState.Committed)])
    assert svc.get_blob_to_bytes(container, "blocks.bin").content == b"first-"
    expect_http_error(lambda: svc.put_block_list(container, "blocks.bin",
                                                 [BlobBlock("YmxvY2stMw==", BlobBlockState.Latest)]),
                      400, "InvalidBlockList")

    # Copy Blob within the server, authorised by the request's own key.
    copy = svc.copy_blob(container, "copy.bin", svc.make_blob_url(container, "blocks.bin"))
    assert copy.status == "success"
    assert svc.get_blob_to_bytes(container, "copy.bin").content == b"first-"

    # If-Modified-Since: a time after the last change gets 304 Not Modified.
    modified = svc.get_blob_properties(container, "copy.bin").properties.last_modified
    later = modified + datetime.timedelta(seconds=1)
    expect_http_error(lambda: svc.get_blob_to_bytes(container, "copy.bin", if_modified_since=later,
                                                    max_connections=1), 304)
    earlier = modified - datetime.timedelta(seconds=1)
    assert svc.get_blob_to_bytes(container, "copy.bin", if_modified_since=earlier).content == b"first-"


def test_service_properties_keep_what_a_call_leaves_out(cobalt_factory):
    from azure.storage.models import CorsRule, Logging, RetentionPolicy
    server = cobalt_factory("legacy-props")
    own = make_service(server.start())
    props = own.get_blob_service_properties()
    assert props.cors == [] and not props.logging.write
    own.set_blob_service_properties(cors=[CorsRule(["https://example.org"], ["GET", "HEAD"],
                                                   max_age_in_seconds=30)])
    own.set_blob_service_properties(logging=Logging(read=True, write=True, delete=True,
                                                    retention_policy=RetentionPolicy(True, 4)))
    props = own.get_blob_service_properties()
    [rule] = props.cors
    assert rule.allowed_origins == ["https://example.org"] and rule.allowed_methods == ["GET", "HEAD"]
    assert rule.max_age_in_seconds == 30
    assert props.logging.write and props.logging.retention_policy.days == 4
    own.set_blob_service_properties(cors=[])
    props = own.get_blob_service_properties()
    assert props.cors == [] and props.logging.write


# ---------------------------------------------------------------------------------
# listing
# ---------------------------------------------------------------------------------
def test_list_blobs_prefix_delimiter_marker_paging(svc, container):
    names = ["a.txt", "dir/sub/y.txt", "dir/x1.txt", "dir/x2.txt", "e.txt"]
    for i, n in enumerate(names):
        svc.create_blob_from_bytes(container, n, n.encode(), metadata={"idx": str(i)})

    assert [b.name for b in svc.list_blobs(container)] == names
    assert [b.name for b in svc.list_blobs(container, prefix="dir/")] == names[1:4]
    listed = list(svc.list_blobs(container, include=Include.METADATA))
    assert [b.metadata for b in listed] == [{"idx": str(i)} for i in range(5)]
    assert [b.properties.content_length for b in listed] == [len(n) for n in names]

    top = list(svc.list_blobs(container, delimiter="/"))
    assert sorted((isinstance(x, BlobPrefix), x.name) for x in top) == \
        [(False, "a.txt"), (False, "e.txt"), (True, "dir/")]
    inner = list(svc.list_blobs(container, prefix="dir/", delimiter="/"))
    assert sorted((isinstance(x, BlobPrefix), x.name) for x in inner) == \
        [(False, "dir/x1.txt"), (False, "dir/x2.txt"), (True, "dir/sub/")]

    # manual paging with num_results + marker (each page is a new operation)
    seen, marker, pages = [], None, 0
    while True:
        gen = svc.list_blobs(container, num_results=2, marker=marker)
        page = [b.name for b in gen]
        assert len(page) <= 2
        seen += page
        pages += 1
        marker = gen.next_marker
        if not marker:
            break
        assert pages < 10
    assert seen == names and pages == 3


def test_generator_follows_markers_without_account_segment(endpoint, container):
    """What ListGenerator does when the service returns a NextMarker before num_results
    is reached (Azure pages at 5000): the next page is fetched in the same
    location-locked operation context, so it goes to /<container>?restype=container&comp=list
    (and /?comp=list for containers) -- no account segment. Driven here with 2-item pages."""
    rec = Recorder()
    svc = make_service(endpoint, recorder=rec)
    for i in range(5):
        svc.create_blob_from_bytes(container, f"b{i}", b"x")
    ctx = _OperationContext(location_lock=True)
    seen, marker = [], None
    for _ in range(3):
        page = svc._list_blobs(container, marker=marker, max_results=2, _context=ctx)
        seen += [b.name for b in page]
        marker = page.next_marker
    assert seen == [f"b{i}" for i in range(5)] and not marker
    paths = [c[1] for c in rec.calls if c[0] == "GET"]
    assert paths == [f"/{ACCOUNT}/{container}", f"/{container}", f"/{container}"]

    ctx = _OperationContext(location_lock=True)
    rec.clear()
    for _ in range(2):
        page = svc._list_containers(prefix=container, max_results=1, _context=ctx)
        assert [c.name for c in page] == [container]
    assert [c[1] for c in rec.calls] == [f"/{ACCOUNT}/", "/"]


# ---------------------------------------------------------------------------------
# SAS (the tutorial's read SAS for inputs and write SAS for the output container)
# ---------------------------------------------------------------------------------
def test_blob_and_container_sas(endpoint, svc, container, payloads):
    expiry = utcnow() + datetime.timedelta(hours=2)
    svc.create_blob_from_bytes(container, "input.txt", b"tutorial input")
    read_sas = svc.generate_blob_shared_access_signature(container, "input.txt",
                                                         permission=BlobPermissions.READ,
                                                         expiry=expiry)
    fields = dict(kv.split("=", 1) for kv in read_sas.split("&"))
    assert fields["sv"] == "2017-04-17" and fields["sr"] == "b" and fields["sp"] == "r"
    write_sas = svc.generate_container_shared_access_signature(container,
                                                               permission=ContainerPermissions.WRITE,
                                                               expiry=expiry)
    assert "sr=c" in write_sas and "sp=w" in write_sas

    # the Batch node downloads the input with a plain GET of make_blob_url(..., sas_token)
    url = svc.make_blob_url(container, "input.txt", sas_token=read_sas)
    assert url.startswith(f"{endpoint}/{container}/input.txt?")
    with urllib.request.urlopen(url, timeout=30) as resp:
        assert resp.status == 200 and resp.read() == b"tutorial input"

    reader = make_service(endpoint, sas_token=read_sas)
    assert reader.get_blob_to_bytes(container, "input.txt").content == b"tutorial input"
    assert reader.get_blob_properties(container, "input.txt").properties.content_length == 14
    expect_http_error(lambda: reader.create_blob_from_bytes(container, "input.txt", b"overwrite"),
                      403, "AuthorizationPermissionMismatch")
    # a blob SAS does not open other blobs
    expect_http_error(lambda: reader.create_blob_from_bytes(container, "other.txt", b"x"), 403)

    # the task uploads its output with the container write SAS
    writer = make_service(endpoint, sas_token=write_sas)
    writer.create_blob_from_bytes(container, "output.txt", b"task output")
    writer.create_blob_from_bytes(container, "output-big.bin", payloads[70 * MiB].data,
                                  max_connections=4)      # Put Block x18 + Put Block List via SAS
    assert svc.get_blob_to_bytes(container, "output.txt").content == b"task output"
    assert sha256(svc.get_blob_to_bytes(container, "output-big.bin", max_connections=4).content) \
        == payloads[70 * MiB].sha256
    expect_http_error(lambda: writer.get_blob_to_bytes(container, "output.txt", max_connections=1),
                      403, "AuthorizationPermissionMismatch")
    with pytest.raises(AzureHttpError) as ei:
        list(writer.list_blobs(container))
    assert ei.value.status_code == 403

    # read SAS over the SAS connection-string form
    conn = f"BlobEndpoint={endpoint};SharedAccessSignature={read_sas}"
    via_conn = BlockBlobService(connection_string=conn)
    via_conn.retry = no_retry
    assert via_conn.get_blob_to_bytes(container, "input.txt").content == b"tutorial input"

    # big and empty downloads through a read SAS (account-less follow-ups carry the SAS)
    svc.create_blob_from_bytes(container, "empty.bin", b"")
    big_sas = svc.generate_blob_shared_access_signature(container, "output-big.bin",
                                                        permission=BlobPermissions.READ,
                                                        expiry=expiry)
    empty_sas = svc.generate_blob_shared_access_signature(container, "empty.bin",
                                                          permission=BlobPermissions.READ,
                                                          expiry=expiry)
    assert sha256(make_service(endpoint, sas_token=big_sas)
                  .get_blob_to_bytes(container, "output-big.bin").content) == payloads[70 * MiB].sha256
    assert make_service(endpoint, sas_token=empty_sas).get_blob_to_bytes(container, "empty.bin") \
        .content == b""


def test_expired_and_tampered_sas(endpoint, svc, container):
    svc.create_blob_from_bytes(container, "s.txt", b"secret")
    expired = svc.generate_blob_shared_access_signature(
        container, "s.txt", permission=BlobPermissions.READ,
        start=utcnow() - datetime.timedelta(hours=3), expiry=utcnow() - datetime.timedelta(hours=1))
    codes = ("AuthenticationFailed",) + (("AuthorizationFailure",) if EXTERNAL else ())
    for sas in (expired,
                svc.generate_blob_shared_access_signature(
                    container, "s.txt", permission=BlobPermissions.READ,
                    start=utcnow() + datetime.timedelta(hours=1),
                    expiry=utcnow() + datetime.timedelta(hours=2)),
                svc.generate_blob_shared_access_signature(
                    container, "s.txt", permission=BlobPermissions.READ,
                    expiry=utcnow() + datetime.timedelta(hours=2)).replace("sp=r", "sp=rw")):
        err = expect_http_error(lambda: make_service(endpoint, sas_token=sas)
                                .get_blob_to_bytes(container, "s.txt", max_connections=1), 403)
        assert any(f"<Code>{c}</Code>" in str(err) for c in codes), str(err)


def test_wrong_account_key(endpoint, container, svc):
    svc.create_blob_from_bytes(container, "k.txt", b"key")
    bad = make_service(endpoint, key=WRONG_KEY)
    expect_http_error(lambda: bad.get_blob_to_bytes(container, "k.txt", max_connections=1), 403)
    expect_http_error(lambda: bad.create_blob_from_bytes(container, "new.txt", b"x"), 403)
    with pytest.raises(AzureHttpError) as ei:
        list(bad.list_containers())
    assert ei.value.status_code == 403
    assert not svc.exists(container, "new.txt")


# ---------------------------------------------------------------------------------
# the whole tutorial flow, end to end
# ---------------------------------------------------------------------------------
def test_batch_tutorial_storage_flow(endpoint, svc, tmp_path):
    """Mirrors the storage half of the Azure Batch Python tutorial: input container with
    uploaded files + read SAS URLs, output container with a write SAS, task output
    uploaded through that SAS, results listed and downloaded with get_blob_to_path."""
    inp, out = unique("input"), unique("output")
    svc.create_container(inp, fail_on_exist=False)
    svc.create_container(out, fail_on_exist=False)
    try:
        files = []
        for i in range(3):
            f = tmp_path / f"taskdata{i}.txt"
            f.write_text(f"line {i}\n" * (100 + i))
            files.append(f)
        urls = []
        for f in files:
            svc.create_blob_from_path(inp, f.name, str(f))
            sas = svc.generate_blob_shared_access_signature(
                inp, f.name, permission=BlobPermissions.READ,
                expiry=utcnow() + datetime.timedelta(hours=2))
            urls.append(svc.make_blob_url(inp, f.name, sas_token=sas))
        out_sas = svc.generate_container_shared_access_signature(
            out, permission=BlobPermissions.WRITE, expiry=utcnow() + datetime.timedelta(hours=2))

        task_writer = make_service(endpoint, sas_token=out_sas)
        for f, url in zip(files, urls):            # what each task does on the node
            with urllib.request.urlopen(url, timeout=30) as resp:
                text = resp.read().decode()
            task_writer.create_blob_from_text(out, f"{f.stem}_OUTPUT.txt", text.upper())

        results = sorted(b.name for b in svc.list_blobs(out))
        assert results == [f"taskdata{i}_OUTPUT.txt" for i in range(3)]
        for name, f in zip(results, files):
            dest = tmp_path / f"dl-{name}"
            svc.get_blob_to_path(out, name, str(dest))
            assert dest.read_text() == f.read_text().upper()
    finally:
        svc.delete_container(inp)
        svc.delete_container(out)
