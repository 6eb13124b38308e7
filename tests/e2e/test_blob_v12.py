"""End-to-end tests with the current Python SDK, azure-storage-blob 12.31.1.

Run with .venv/blob-v12 (see tests/e2e/run.sh). The SDK sends x-ms-version 2026-10-06
and generates SAS tokens with sv=2026-10-06; one test pins api_version=2019-02-02.

Expected semantics are Azure's. Where Azurite is known to differ, the assertion is
relaxed only when COBALT_BLOB_ENDPOINT is set (see EXTERNAL / AUTH_FAILED_CODES).
"""
from __future__ import annotations

import base64
import hashlib
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest

try:
    from azure.core import MatchConditions
    from azure.core.exceptions import (ClientAuthenticationError, HttpResponseError,
                                       ResourceExistsError, ResourceModifiedError,
                                       ResourceNotFoundError, ResourceNotModifiedError)
    from azure.storage.blob import (AccessPolicy, AccountSasPermissions, BlobBlock,
                                    BlobClient, BlobPrefix, BlobSasPermissions,
                                    BlobServiceClient, BlockState, ContainerClient,
                                    ContainerSasPermissions, ContentSettings, PublicAccess,
                                    ResourceTypes, generate_account_sas,
                                    generate_blob_sas, generate_container_sas)
except ImportError as exc:  # wrong venv: this module needs azure-storage-blob v12
    pytest.skip(f"azure-storage-blob v12 not importable ({exc}); use .venv/blob-v12",
                allow_module_level=True)

from e2e_support import ACCOUNT, EXTERNAL, KEY, WRONG_KEY, KiB, MiB, port_is_free, sha256, unique

SDK_DEFAULT_VERSION = "2026-10-06"

# Azure answers a bad signature / expired or not-yet-valid SAS / wrong key with
# 403 AuthenticationFailed. Azurite says AuthorizationFailure instead; accepted only
# when running against an external endpoint.
AUTH_FAILED_CODES = ("AuthenticationFailed",) + (("AuthorizationFailure",) if EXTERNAL else ())
# Anonymous access to something that is not public: Azure hides the resource with
# 404 ResourceNotFound. (Azurite's answer is accepted as well in external mode.)
ANON_DENIED_STATUS = (404,) + ((401, 403) if EXTERNAL else ())
ANON_DENIED_CODES = ("ResourceNotFound",) + (
    ("NoAuthenticationInformation", "AuthorizationFailure", "ResourceNotFound") if EXTERNAL else ())


# ---------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------
def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def parse_iso(value) -> datetime:
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).replace(microsecond=0)
    return datetime.strptime(value[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc)


def service_client(endpoint: str, key: str = KEY, **kw) -> BlobServiceClient:
    # retry_total=0: a failing server must fail the test at once, not after backoff.
    kw.setdefault("retry_total", 0)
    return BlobServiceClient(endpoint, credential={"account_name": ACCOUNT, "account_key": key}, **kw)


def expect_error(fn, exc=HttpResponseError, status=None, codes=None):
    with pytest.raises(exc) as ei:
        fn()
    err = ei.value
    if status is not None:
        allowed = status if isinstance(status, tuple) else (status,)
        assert err.status_code in allowed, f"status {err.status_code} not in {allowed}: {err}"
    if codes is not None:
        allowed = codes if isinstance(codes, tuple) else (codes,)
        assert err.error_code in allowed, f"error_code {err.error_code!r} not in {allowed}: {err}"
    return err


def expect_permission_mismatch(fn):
    return expect_error(fn, status=403, codes="AuthorizationPermissionMismatch")


def expect_auth_failed(fn):
    err = expect_error(fn, status=403, codes=AUTH_FAILED_CODES)
    if err.error_code == "AuthenticationFailed":
        assert isinstance(err, ClientAuthenticationError)
        # Azure says why in the body (a HEAD response has none); the SDK appends it.
        if not EXTERNAL and err.response.request.method != "HEAD":
            assert "AuthenticationErrorDetail" in str(err), str(err)
    return err


def md5_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def download(bc: BlobClient, **kw) -> bytes:
    return bc.download_blob(**kw).readall()


@pytest.fixture(scope="module")
def service(cobalt) -> BlobServiceClient:
    return service_client(cobalt)


@pytest.fixture
def container(service):
    cc = service.create_container(unique("v12"))
    yield cc
    try:
        cc.delete_container()
    except HttpResponseError:
        pass


# ---------------------------------------------------------------------------------
# containers
# ---------------------------------------------------------------------------------
def test_container_lifecycle(service):
    name = unique("life")
    cc = service.create_container(name)
    try:
        err = expect_error(lambda: service.create_container(name), ResourceExistsError, 409,
                           "ContainerAlreadyExists")
        assert isinstance(err, ResourceExistsError)

        props = cc.get_container_properties()
        assert props.name == name
        assert props.etag and props.last_modified
        assert not props.metadata
        assert props.public_access is None

        cc.set_container_metadata({"owner": "cobalt", "purpose": "e2e"})
        props2 = cc.get_container_properties()
        assert props2.metadata == {"owner": "cobalt", "purpose": "e2e"}
        assert props2.etag != props.etag
    finally:
        cc.delete_container()
    expect_error(cc.get_container_properties, ResourceNotFoundError, 404, "ContainerNotFound")
    expect_error(cc.delete_container, ResourceNotFoundError, 404, "ContainerNotFound")
    expect_error(lambda: cc.upload_blob("x", b"x"), ResourceNotFoundError, 404, "ContainerNotFound")


def test_container_public_access_levels(container):
    for level, expected in ((PublicAccess.CONTAINER, "container"), (PublicAccess.BLOB, "blob"),
                            (None, None)):
        container.set_container_access_policy(signed_identifiers={}, public_access=level)
        acl = container.get_container_access_policy()
        assert acl["public_access"] == expected
        assert acl["signed_identifiers"] == []
        assert container.get_container_properties().public_access == expected


def test_stored_access_policy(cobalt, container):
    start = (utcnow() - timedelta(minutes=5)).replace(microsecond=0)
    expiry = (utcnow() + timedelta(hours=1)).replace(microsecond=0)
    policy = AccessPolicy(permission=ContainerSasPermissions(read=True, list=True),
                          start=start, expiry=expiry)
    container.set_container_access_policy(signed_identifiers={"readers": policy},
                                          public_access=PublicAccess.BLOB)
    acl = container.get_container_access_policy()
    assert acl["public_access"] == "blob"
    assert [i.id for i in acl["signed_identifiers"]] == ["readers"]
    # private again (so the SAS checks below are not answered by anonymous access)
    container.set_container_access_policy(signed_identifiers={"readers": policy})
    acl = container.get_container_access_policy()
    assert acl["public_access"] is None
    [ident] = acl["signed_identifiers"]
    assert ident.id == "readers"
    assert ident.access_policy.permission == "rl"
    # the SDK hands these back as the service's strings, e.g. 2026-01-01T00:00:00.0000000Z
    assert parse_iso(ident.access_policy.start) == start
    assert parse_iso(ident.access_policy.expiry) == expiry

    container.upload_blob("doc.txt", b"policy protected")
    # A SAS that only names the policy: permissions and times come from the server.
    sas = generate_blob_sas(ACCOUNT, container.container_name, "doc.txt", account_key=KEY,
                            policy_id="readers")
    bc = BlobClient(cobalt, container.container_name, "doc.txt", credential=sas, retry_total=0)
    assert download(bc) == b"policy protected"
    expect_permission_mismatch(lambda: bc.upload_blob(b"nope", overwrite=True))
    csas = generate_container_sas(ACCOUNT, container.container_name, account_key=KEY,
                                  policy_id="readers")
    cc = ContainerClient(cobalt, container.container_name, credential=csas, retry_total=0)
    assert [b.name for b in cc.list_blobs()] == ["doc.txt"]

    # Unknown policy id -> the SAS cannot be authenticated.
    bad = generate_blob_sas(ACCOUNT, container.container_name, "doc.txt", account_key=KEY,
                            policy_id="nosuchpolicy")
    expect_error(lambda: download(BlobClient(cobalt, container.container_name, "doc.txt",
                                             credential=bad, retry_total=0)), status=403)


def test_list_containers_paging_and_metadata(service):
    prefix = unique("lc")
    names = [f"{prefix}-{i}" for i in range(5)]
    for i, n in enumerate(names):
        service.create_container(n, metadata={"idx": str(i)})
    try:
        pages = [[c.name for c in page] for page in
                 service.list_containers(name_starts_with=prefix, results_per_page=2).by_page()]
        assert [len(p) for p in pages] == [2, 2, 1]
        assert [n for p in pages for n in p] == names

        listed = list(service.list_containers(name_starts_with=prefix, include_metadata=True))
        assert [c.name for c in listed] == names
        assert [c.metadata for c in listed] == [{"idx": str(i)} for i in range(5)]
        assert all(c.etag and c.last_modified for c in listed)

        assert list(service.list_containers(name_starts_with=prefix + "-zz")) == []
        # a container listing without a prefix also contains ours
        assert set(names) <= {c.name for c in service.list_containers()}
    finally:
        for n in names:
            service.delete_container(n)
    assert list(service.list_containers(name_starts_with=prefix)) == []


# ---------------------------------------------------------------------------------
# blobs: upload / download
# ---------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [0, 1 * KiB, 9 * MiB, 70 * MiB], ids=["0B", "1KiB", "9MiB", "70MiB"])
def test_upload_download_roundtrip(container, payloads, size):
    p = payloads[size]
    bc = container.get_blob_client(f"blob-{size}.bin")
    # 70 MiB > max_single_put_size (64 MiB): staged in 4 MiB blocks + Put Block List.
    bc.upload_blob(p.data, max_concurrency=4)

    props = bc.get_blob_properties()
    assert props.size == size
    assert props.blob_type == "BlockBlob"
    assert props.etag and props.last_modified
    if size <= 64 * MiB:  # single Put Blob: the server computes and stores Content-MD5
        assert props.content_settings.content_md5 is not None
        assert base64.b64encode(props.content_settings.content_md5).decode() == md5_b64(p.data)

    # whole blob, sequential (first GET 32 MiB, then 4 MiB ranged GETs with If-Match)
    stream = bc.download_blob()
    assert stream.size == size
    assert sha256(stream.readall()) == p.sha256
    # parallel chunks
    assert sha256(download(bc, max_concurrency=4)) == p.sha256

    if size == 0:
        assert download(bc) == b""
        return
    # ranged reads (offset/length), including across the 32 MiB first-GET boundary
    ranges = [(0, 1), (size - 1, 1), (size // 3, min(size - size // 3, 100 * KiB))]
    if size > 32 * MiB:
        ranges.append((32 * MiB - 10, 5 * MiB))
    for offset, length in ranges:
        got = download(bc, offset=offset, length=length)
        assert got == p.data[offset:offset + length], (offset, length)
    # offset only: to the end
    assert download(bc, offset=size - 7) == p.data[-7:]
    if size > 32 * MiB:
        assert download(bc, offset=size - 40 * MiB, length=40 * MiB, max_concurrency=4) == \
            p.data[size - 40 * MiB:]


def test_ranged_read_past_end_and_empty_blob_range(container):
    bc = container.get_blob_client("tiny")
    bc.upload_blob(b"0123456789")
    assert download(bc, offset=5, length=100) == b"56789"   # clamped by the server
    expect_error(lambda: download(bc, offset=10, length=5), status=416, codes="InvalidRange")
    empty = container.get_blob_client("empty")
    empty.upload_blob(b"")
    assert download(empty) == b""
    expect_error(lambda: download(empty, offset=0, length=1), status=416, codes="InvalidRange")


def test_upload_overwrite_false_conflict(container):
    bc = container.get_blob_client("once.txt")
    bc.upload_blob(b"first")
    expect_error(lambda: bc.upload_blob(b"second", overwrite=False), ResourceExistsError, 409,
                 "BlobAlreadyExists")
    assert download(bc) == b"first"
    bc.upload_blob(b"second", overwrite=True)
    assert download(bc) == b"second"


def test_properties_headers_and_metadata(container):
    bc = container.get_blob_client("doc.json")
    settings = ContentSettings(content_type="text/plain; charset=utf-8", content_language="en",
                               content_disposition="attachment; filename=doc.txt",
                               cache_control="no-cache", content_encoding="identity")
    bc.upload_blob(b"{}", content_settings=settings, metadata={"color": "blue", "n": "1"})
    props = bc.get_blob_properties()
    cs = props.content_settings
    assert cs.content_type == "text/plain; charset=utf-8"
    assert cs.content_language == "en"
    assert cs.content_disposition == "attachment; filename=doc.txt"
    assert cs.cache_control == "no-cache"
    assert cs.content_encoding == "identity"
    assert props.metadata == {"color": "blue", "n": "1"}
    # download carries the same headers
    dl = bc.download_blob()
    assert dl.properties.content_settings.content_type == "text/plain; charset=utf-8"
    assert dl.properties.metadata == {"color": "blue", "n": "1"}
    assert dl.readall() == b"{}"

    etag1 = props.etag
    bc.set_http_headers(ContentSettings(content_type="application/json", cache_control="max-age=60"))
    props = bc.get_blob_properties()
    assert props.content_settings.content_type == "application/json"
    assert props.content_settings.cache_control == "max-age=60"
    assert props.etag != etag1
    assert props.metadata == {"color": "blue", "n": "1"}     # untouched by Set Blob Properties

    etag2 = props.etag
    bc.set_blob_metadata({"shape": "round"})
    props = bc.get_blob_properties()
    assert props.metadata == {"shape": "round"}               # replaced, not merged
    assert props.etag != etag2
    assert props.content_settings.content_type == "application/json"
    bc.set_blob_metadata({})
    assert bc.get_blob_properties().metadata == {}
    assert download(bc) == b"{}"


def test_block_list_staging_and_mixed_commit(container):
    bc = container.get_blob_client("blocks.bin")
    d0, d1, d2, d0x = b"A" * 1000, b"B" * 2000, b"C" * 3000, b"a" * 500
    bc.stage_block("block-000", d0)
    bc.stage_block("block-001", d1)
    committed, uncommitted = bc.get_block_list("all")
    assert committed == []
    assert [(b.id, b.size) for b in uncommitted] == [("block-000", 1000), ("block-001", 2000)]
    # only uncommitted blocks: the blob does not exist yet
    expect_error(bc.get_blob_properties, ResourceNotFoundError, 404, "BlobNotFound")
    assert [b.name for b in container.list_blobs()] == []

    bc.commit_block_list([BlobBlock("block-000"), BlobBlock("block-001")])
    assert download(bc) == d0 + d1
    committed, uncommitted = bc.get_block_list("all")
    assert [(b.id, b.size) for b in committed] == [("block-000", 1000), ("block-001", 2000)]
    assert uncommitted == []
    assert [(b.id, b.size) for b in bc.get_block_list("committed")[0]] == \
        [("block-000", 1000), ("block-001", 2000)]

    bc.stage_block("block-002", d2)
    bc.stage_block("block-000", d0x)   # new uncommitted version of a committed id
    committed, uncommitted = bc.get_block_list("all")
    assert [(b.id, b.size) for b in committed] == [("block-000", 1000), ("block-001", 2000)]
    assert sorted((b.id, b.size) for b in uncommitted) == [("block-000", 500), ("block-002", 3000)]
    assert download(bc) == d0 + d1     # staging does not change the committed content

    bc.commit_block_list([BlobBlock("block-001", BlockState.COMMITTED),
                          BlobBlock("block-002", BlockState.UNCOMMITTED),
                          BlobBlock("block-000", BlockState.LATEST)])
    assert download(bc) == d1 + d2 + d0x
    committed, uncommitted = bc.get_block_list("all")
    assert [(b.id, b.size) for b in committed] == \
        [("block-001", 2000), ("block-002", 3000), ("block-000", 500)]
    assert uncommitted == []   # uncommitted blocks are discarded by a commit
    assert bc.get_blob_properties().size == 5500

    # referencing a block that does not exist fails and leaves the blob untouched
    expect_error(lambda: bc.commit_block_list([BlobBlock("block-001"), BlobBlock("nosuch-00")]),
                 status=400, codes="InvalidBlockList")
    # azure-storage-blob 12.31.1 compares BlockState values in lower case ("uncommitted") while
    # the enum holds "Uncommitted", so every BlobBlock goes out as <Latest>; the Committed and
    # Uncommitted lookups are covered by the server's Rust integration tests instead.
    assert download(bc) == d1 + d2 + d0x


def test_conditional_requests(container):
    bc = container.get_blob_client("cond.txt")
    bc.upload_blob(b"v1")
    p1 = bc.get_blob_properties()
    assert download(bc, etag=p1.etag, match_condition=MatchConditions.IfNotModified) == b"v1"

    time.sleep(1.05)   # Last-Modified has one-second resolution
    bc.upload_blob(b"v2", overwrite=True)
    p2 = bc.get_blob_properties()
    assert p2.etag != p1.etag
    assert p2.last_modified > p1.last_modified

    # If-Match with a stale etag -> 412 ConditionNotMet
    expect_error(lambda: download(bc, etag=p1.etag, match_condition=MatchConditions.IfNotModified),
                 ResourceModifiedError, 412, "ConditionNotMet")
    expect_error(lambda: bc.upload_blob(b"v3", overwrite=True, etag=p1.etag,
                                        match_condition=MatchConditions.IfNotModified),
                 ResourceModifiedError, 412, "ConditionNotMet")
    expect_error(lambda: bc.set_blob_metadata({"a": "b"},
                                              if_unmodified_since=p1.last_modified - timedelta(hours=1)),
                 ResourceModifiedError, 412, "ConditionNotMet")
    # If-None-Match with the current etag / If-Modified-Since now -> 304 on reads. Azure
    # adds x-ms-error-code: ConditionNotMet to the 304, so the SDK raises
    # ResourceModifiedError (it maps by code); without the header it would be
    # ResourceNotModifiedError. Both are HttpResponseErrors with status 304.
    for read in (lambda: bc.get_blob_properties(etag=p2.etag, match_condition=MatchConditions.IfModified),
                 lambda: download(bc, etag=p2.etag, match_condition=MatchConditions.IfModified),
                 lambda: download(bc, if_modified_since=p2.last_modified)):
        err = expect_error(read, HttpResponseError, 304)
        assert isinstance(err, (ResourceModifiedError, ResourceNotModifiedError))
    # conditions that hold
    assert download(bc, if_modified_since=p1.last_modified - timedelta(seconds=1)) == b"v2"
    assert download(bc, etag=p1.etag, match_condition=MatchConditions.IfModified) == b"v2"
    assert download(bc, if_unmodified_since=p2.last_modified) == b"v2"
    # If-None-Match: * on an existing blob (overwrite=False) -> 409, tested above; delete with etag
    expect_error(lambda: bc.delete_blob(etag=p1.etag, match_condition=MatchConditions.IfNotModified),
                 ResourceModifiedError, 412, "ConditionNotMet")
    bc.delete_blob(etag=p2.etag, match_condition=MatchConditions.IfNotModified)
    assert not bc.exists()


def test_delete_blob(container):
    bc = container.get_blob_client("gone.txt")
    bc.upload_blob(b"bye")
    assert bc.exists()
    bc.delete_blob()
    assert not bc.exists()
    expect_error(bc.get_blob_properties, ResourceNotFoundError, 404, "BlobNotFound")
    expect_error(lambda: download(bc), ResourceNotFoundError, 404, "BlobNotFound")
    expect_error(bc.delete_blob, ResourceNotFoundError, 404, "BlobNotFound")
    expect_error(lambda: container.get_blob_client("never").get_blob_properties(),
                 ResourceNotFoundError, 404, "BlobNotFound")


def wait_for_copy(bc: BlobClient, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while True:
        props = bc.get_blob_properties()
        if props.copy.status != "pending" or time.monotonic() > deadline:
            return props
        time.sleep(0.1)


def test_copy_from_url_with_sas_and_public_source(cobalt, service, payloads):
    src_c = service.create_container(unique("copysrc"))
    pub_c = service.create_container(unique("copypub"), public_access=PublicAccess.BLOB)
    dst_c = service.create_container(unique("copydst"))
    try:
        p = payloads[9 * MiB]
        src = src_c.get_blob_client("src.bin")
        src.upload_blob(p.data, metadata={"origin": "src"})
        sas = generate_blob_sas(ACCOUNT, src_c.container_name, "src.bin", account_key=KEY,
                                permission=BlobSasPermissions(read=True),
                                expiry=utcnow() + timedelta(hours=1))
        dst = dst_c.get_blob_client("copy.bin")
        result = dst.start_copy_from_url(f"{src.url}?{sas}")
        assert result["copy_status"] in ("success", "pending")
        props = wait_for_copy(dst)
        assert props.copy.status == "success"
        assert props.copy.id == result["copy_id"]
        assert props.size == p.size
        assert props.metadata == {"origin": "src"}   # copied along with the data by default
        assert sha256(download(dst)) == p.sha256

        pub = pub_c.get_blob_client("pub.txt")
        pub.upload_blob(b"public source")
        dst2 = dst_c.get_blob_client("copy2.txt")
        dst2.start_copy_from_url(pub.url)
        assert wait_for_copy(dst2).copy.status == "success"
        assert download(dst2) == b"public source"

        # A source in the same account needs no SAS: the Shared Key of the copy request
        # authorises it (Azure: only a source in another account must be public or SAS).
        dst3 = dst_c.get_blob_client("copy3.bin")
        dst3.start_copy_from_url(src.url)
        assert wait_for_copy(dst3).copy.status == "success"
        assert sha256(download(dst3)) == p.sha256

        # a missing source fails the copy request itself
        dst4 = dst_c.get_blob_client("copy4.bin")
        csas = container_sas(src_c.container_name, read=True)
        expect_error(lambda: dst4.start_copy_from_url(f"{src_c.url}/nosuchblob?{csas}"),
                     status=(403, 404))
        assert not dst4.exists()
    finally:
        for c in (src_c, pub_c, dst_c):
            c.delete_container()


def test_list_blobs_prefix_delimiter_paging_metadata(container):
    names = ["a.txt", "dir/sub/y.txt", "dir/x1.txt", "dir/x2.txt", "e.txt"]
    for i, n in enumerate(names):
        container.upload_blob(n, n.encode(), metadata={"idx": str(i)},
                              content_settings=ContentSettings(content_type="text/plain"))

    listed = list(container.list_blobs())
    assert [b.name for b in listed] == sorted(names)
    for b in listed:
        assert b.size == len(b.name)
        assert b.etag and b.last_modified
        assert b.content_settings.content_type == "text/plain"
        assert not b.metadata

    assert [b.name for b in container.list_blobs(name_starts_with="dir/")] == \
        ["dir/sub/y.txt", "dir/x1.txt", "dir/x2.txt"]
    assert list(container.list_blobs(name_starts_with="nope")) == []

    # (the SDK yields a page's BlobPrefix entries before its blobs, whatever the XML order)
    def walk(**kw):
        items = list(container.walk_blobs(delimiter="/", **kw))
        prefixes = [x.name for x in items if isinstance(x, BlobPrefix)]
        blobs = [x.name for x in items if not isinstance(x, BlobPrefix)]
        return prefixes, blobs

    assert walk() == (["dir/"], ["a.txt", "e.txt"])
    assert walk(name_starts_with="dir/") == (["dir/sub/"], ["dir/x1.txt", "dir/x2.txt"])
    assert walk(name_starts_with="dir/sub/") == ([], ["dir/sub/y.txt"])
    # delimiter listing pages count prefixes and blobs together
    pages = [[x.name for x in page] for page in
             container.walk_blobs(delimiter="/", results_per_page=1).by_page()]
    assert sorted(n for p in pages for n in p) == ["a.txt", "dir/", "e.txt"]
    assert all(len(p) == 1 for p in pages)

    pages = [[b.name for b in page] for page in container.list_blobs(results_per_page=2).by_page()]
    assert [len(p) for p in pages] == [2, 2, 1]
    assert [n for p in pages for n in p] == sorted(names)
    # continuation token from one pager resumes in a new one
    pager = container.list_blobs(results_per_page=3).by_page()
    first = [b.name for b in next(pager)]
    token = pager.continuation_token
    assert token
    rest = [b.name for page in container.list_blobs(results_per_page=3).by_page(continuation_token=token)
            for b in page]
    assert first + rest == sorted(names)

    with_md = {b.name: b.metadata for b in container.list_blobs(include=["metadata"])}
    assert with_md == {n: {"idx": str(names.index(n))} for n in names}


# ---------------------------------------------------------------------------------
# SAS
# ---------------------------------------------------------------------------------
def blob_sas(container_name, blob_name, expiry_delta=timedelta(hours=1), start=None, **perm):
    return generate_blob_sas(ACCOUNT, container_name, blob_name, account_key=KEY,
                             permission=BlobSasPermissions(**perm),
                             expiry=utcnow() + expiry_delta, start=start)


def test_upload_blob_from_url_and_copy_with_new_metadata(container):
    src = container.get_blob_client("origin.txt")
    src.upload_blob(b"from a url", metadata={"origin": "yes"},
                    content_settings=ContentSettings(content_type="text/plain"))
    sas = generate_blob_sas(ACCOUNT, container.container_name, "origin.txt", account_key=KEY,
                            permission=BlobSasPermissions(read=True),
                            expiry=utcnow() + timedelta(hours=1))
    # Put Blob From URL: a new block blob; properties and metadata come from the request.
    dst = container.get_blob_client("fromurl.txt")
    dst.upload_blob_from_url(f"{src.url}?{sas}", metadata={"fresh": "1"},
                             content_settings=ContentSettings(content_type="text/markdown"))
    props = dst.get_blob_properties()
    assert download(dst) == b"from a url"
    assert props.metadata == {"fresh": "1"}
    assert props.content_settings.content_type == "text/markdown"
    assert props.copy.status is None
    expect_error(lambda: dst.upload_blob_from_url(f"{src.url}?{sas}", overwrite=False),
                 ResourceExistsError, 409, "BlobAlreadyExists")
    # Copy Blob with metadata in the request replaces the source's metadata.
    cp = container.get_blob_client("copied.txt")
    cp.start_copy_from_url(src.url, metadata={"mine": "2"})
    props = wait_for_copy(cp)
    assert props.metadata == {"mine": "2"}
    assert props.content_settings.content_type == "text/plain"


def container_sas(container_name, **perm):
    return generate_container_sas(ACCOUNT, container_name, account_key=KEY,
                                  permission=ContainerSasPermissions(**perm),
                                  expiry=utcnow() + timedelta(hours=1))


def account_sas(resource_types: ResourceTypes, **perm):
    return generate_account_sas(ACCOUNT, KEY, resource_types=resource_types,
                                permission=AccountSasPermissions(**perm),
                                expiry=utcnow() + timedelta(hours=1))


def sas_blob(cobalt, container_name, blob_name, sas) -> BlobClient:
    return BlobClient(cobalt, container_name, blob_name, credential=sas, retry_total=0)


@pytest.fixture
def sas_setup(container):
    """A container with an existing block blob 'existing.txt' and append blob 'log.txt'."""
    container.upload_blob("existing.txt", b"existing")
    container.get_blob_client("log.txt").create_append_blob()
    return container


def _read_existing(mk):
    assert download(mk("existing.txt")) == b"existing"


def _overwrite_existing(mk):
    mk("existing.txt").upload_blob(b"rewritten", overwrite=True)


def _create_new(mk):
    mk("brand-new.txt").upload_blob(b"new")


def _delete_existing(mk):
    mk("existing.txt").delete_blob()


def _append_to_log(mk):
    mk("log.txt").append_block(b"line\n")


# permission -> (an operation it allows, an operation it does not allow). Each operation
# takes `mk`, which maps a blob name to a client authorised by the SAS under test.
# 'add' is exercised on an append blob (Append Block), the operation it exists for.
SAS_CASES = {
    "read": (_read_existing, _overwrite_existing),
    "write": (_overwrite_existing, _read_existing),
    "create": (_create_new, _read_existing),
    "delete": (_delete_existing, _read_existing),
    "add": (_append_to_log, _read_existing),
}


@pytest.mark.parametrize("perm", list(SAS_CASES))
def test_blob_sas_permissions(cobalt, sas_setup, perm):
    allowed, denied = SAS_CASES[perm]
    cname = sas_setup.container_name
    mk = lambda b: sas_blob(cobalt, cname, b, blob_sas(cname, b, **{perm: True}))  # noqa: E731
    expect_permission_mismatch(lambda: denied(mk))
    allowed(mk)
    _check_sas_effect(sas_setup, perm)


@pytest.mark.parametrize("perm", list(SAS_CASES) + ["list"])
def test_container_sas_permissions(cobalt, sas_setup, perm):
    cname = sas_setup.container_name
    sas = container_sas(cname, **{perm: True})
    cc = ContainerClient(cobalt, cname, credential=sas, retry_total=0)
    if perm == "list":
        assert sorted(b.name for b in cc.list_blobs()) == ["existing.txt", "log.txt"]
        expect_permission_mismatch(lambda: download(cc.get_blob_client("existing.txt")))
        return
    allowed, denied = SAS_CASES[perm]
    expect_permission_mismatch(lambda: denied(cc.get_blob_client))
    allowed(cc.get_blob_client)
    _check_sas_effect(sas_setup, perm)
    # listing needs 'l'
    expect_permission_mismatch(lambda: list(cc.list_blobs()))


def _check_sas_effect(cc: ContainerClient, perm: str):
    """Verify with the account key that the allowed SAS operation really happened."""
    if perm == "write":
        assert download(cc.get_blob_client("existing.txt")) == b"rewritten"
    elif perm == "create":
        assert download(cc.get_blob_client("brand-new.txt")) == b"new"
    elif perm == "delete":
        assert not cc.get_blob_client("existing.txt").exists()
    elif perm == "add":
        assert download(cc.get_blob_client("log.txt")) == b"line\n"
    else:
        assert download(cc.get_blob_client("existing.txt")) == b"existing"


@pytest.mark.parametrize("perm", list(SAS_CASES) + ["list"])
def test_account_sas_permissions(cobalt, service, sas_setup, perm):
    cname = sas_setup.container_name
    sas = account_sas(ResourceTypes(service=True, container=True, object=True), **{perm: True})
    svc = BlobServiceClient(cobalt, credential=sas, retry_total=0)
    if perm == "list":
        names = [c.name for c in svc.list_containers(name_starts_with=cname)]
        assert names == [cname]
        cc = svc.get_container_client(cname)
        assert sorted(b.name for b in cc.list_blobs()) == ["existing.txt", "log.txt"]
        expect_permission_mismatch(lambda: download(cc.get_blob_client("existing.txt")))
        return
    if perm == "create":
        # account SAS 'c' also creates containers
        new_name = unique("acctsas")
        svc.create_container(new_name)
        try:
            assert service.get_container_client(new_name).exists()
        finally:
            service.delete_container(new_name)
    if perm == "delete":
        victim = service.create_container(unique("acctdel"))
        svc.delete_container(victim.container_name)
        assert not victim.exists()
    allowed, denied = SAS_CASES[perm]
    mk = lambda b: svc.get_blob_client(cname, b)  # noqa: E731
    expect_permission_mismatch(lambda: denied(mk))
    allowed(mk)
    _check_sas_effect(sas_setup, perm)
    # listing containers needs 'l'
    expect_permission_mismatch(lambda: list(svc.list_containers()))


def test_account_sas_resource_type_mismatch(cobalt, sas_setup):
    cname = sas_setup.container_name
    # service + container resource types, no object: blob operations are refused
    sas = account_sas(ResourceTypes(service=True, container=True), read=True, list=True)
    svc = BlobServiceClient(cobalt, credential=sas, retry_total=0)
    assert sorted(b.name for b in svc.get_container_client(cname).list_blobs()) == \
        ["existing.txt", "log.txt"]
    expect_error(lambda: download(svc.get_blob_client(cname, "existing.txt")),
                 status=403, codes="AuthorizationResourceTypeMismatch")
    # object only: container listing is refused
    sas_o = account_sas(ResourceTypes(object=True), read=True, list=True)
    svc_o = BlobServiceClient(cobalt, credential=sas_o, retry_total=0)
    assert download(svc_o.get_blob_client(cname, "existing.txt")) == b"existing"
    expect_error(lambda: list(svc_o.get_container_client(cname).list_blobs()),
                 status=403, codes="AuthorizationResourceTypeMismatch")


def test_sas_expired_not_yet_valid_and_tampered(cobalt, sas_setup):
    cname = sas_setup.container_name
    ok = blob_sas(cname, "existing.txt", read=True)
    assert download(sas_blob(cobalt, cname, "existing.txt", ok)) == b"existing"

    expired = blob_sas(cname, "existing.txt", expiry_delta=timedelta(hours=-1),
                       start=utcnow() - timedelta(hours=2), read=True)
    expect_auth_failed(lambda: download(sas_blob(cobalt, cname, "existing.txt", expired)))

    future = blob_sas(cname, "existing.txt", expiry_delta=timedelta(hours=2),
                      start=utcnow() + timedelta(hours=1), read=True)
    expect_auth_failed(lambda: download(sas_blob(cobalt, cname, "existing.txt", future)))

    # flip one character of the signature
    fields = dict(kv.split("=", 1) for kv in ok.split("&"))
    sig = fields["sig"]
    fields["sig"] = ("B" if sig[0] != "B" else "C") + sig[1:]
    tampered = "&".join(f"{k}={v}" for k, v in fields.items())
    expect_auth_failed(lambda: download(sas_blob(cobalt, cname, "existing.txt", tampered)))

    # widen the permissions without re-signing
    fields = dict(kv.split("=", 1) for kv in ok.split("&"))
    fields["sp"] = "rw"
    widened = "&".join(f"{k}={v}" for k, v in fields.items())
    expect_auth_failed(lambda: sas_blob(cobalt, cname, "existing.txt", widened)
                       .upload_blob(b"x", overwrite=True))

    # a blob SAS is bound to its blob
    expect_auth_failed(lambda: download(sas_blob(cobalt, cname, "log.txt", ok)))
    # and a container SAS to its container
    csas = container_sas(cname, read=True)
    other = unique("other")
    expect_error(lambda: download(sas_blob(cobalt, other, "existing.txt", csas)), status=(403,))
    assert download(sas_blob(cobalt, cname, "existing.txt", csas)) == b"existing"


def test_service_sas_protocol_and_ip_range(cobalt, sas_setup):
    if EXTERNAL:
        pytest.skip("Azurite does not check a SAS's protocol or IP range")
    cname = sas_setup.container_name
    expiry = utcnow() + timedelta(hours=1)

    def for_blob(**kw):
        return generate_blob_sas(ACCOUNT, cname, "existing.txt", account_key=KEY,
                                 permission=BlobSasPermissions(read=True), expiry=expiry, **kw)

    def for_container(**kw):
        return generate_container_sas(ACCOUNT, cname, account_key=KEY,
                                      permission=ContainerSasPermissions(read=True), expiry=expiry,
                                      **kw)

    for make in (for_blob, for_container):
        # The client is 127.0.0.1 on plain http.
        for ok in (make(ip="127.0.0.1"), make(ip="127.0.0.0-127.255.255.255"),
                   make(protocol="https,http")):
            assert download(sas_blob(cobalt, cname, "existing.txt", ok)) == b"existing"
        expect_error(lambda: download(sas_blob(cobalt, cname, "existing.txt", make(protocol="https"))),
                     status=403, codes="AuthorizationProtocolMismatch")
        expect_error(lambda: download(sas_blob(cobalt, cname, "existing.txt", make(ip="10.1.2.3"))),
                     status=403, codes="AuthorizationSourceIPMismatch")
        expect_error(lambda: download(sas_blob(cobalt, cname, "existing.txt",
                                               make(ip="10.0.0.0-10.255.255.255"))),
                     status=403, codes="AuthorizationSourceIPMismatch")


@pytest.mark.needs_own_server
def test_service_properties_set_per_setting_and_kept_across_restart(cobalt_factory):
    from azure.storage.blob import BlobAnalyticsLogging, CorsRule, RetentionPolicy, StaticWebsite
    server = cobalt_factory("props")
    svc = service_client(server.start())
    props = svc.get_service_properties()
    assert props["analytics_logging"].version == "1.0" and not props["analytics_logging"].write
    assert props["cors"] == [] and not props["delete_retention_policy"].enabled

    # Each call sends only the settings it names; the others keep their values (Azure's rule).
    rule = CorsRule(["https://example.org", "https://example.net"], ["GET", "PUT"],
                    allowed_headers=["x-ms-meta-*"], exposed_headers=["x-ms-request-id"],
                    max_age_in_seconds=600)
    svc.set_service_properties(cors=[rule])
    svc.set_service_properties(
        analytics_logging=BlobAnalyticsLogging(read=True, write=True, delete=False,
                                               retention_policy=RetentionPolicy(enabled=True, days=5)),
        delete_retention_policy=RetentionPolicy(enabled=True, days=3))
    svc.set_service_properties(static_website=StaticWebsite(enabled=True, index_document="index.html",
                                                            error_document404_path="404.html"))

    svc = service_client(server.restart())
    props = svc.get_service_properties()
    [cors] = props["cors"]
    assert cors.allowed_origins == "https://example.org,https://example.net"
    assert cors.allowed_methods == "GET,PUT"
    assert cors.allowed_headers == "x-ms-meta-*" and cors.exposed_headers == "x-ms-request-id"
    assert cors.max_age_in_seconds == 600
    logging = props["analytics_logging"]
    assert (logging.read, logging.write, logging.delete) == (True, True, False)
    assert logging.retention_policy.enabled and logging.retention_policy.days == 5
    assert props["delete_retention_policy"].enabled and props["delete_retention_policy"].days == 3
    website = props["static_website"]
    assert website.enabled and website.index_document == "index.html"
    assert website.error_document404_path == "404.html"

    # An empty CORS list removes the rules and only them.
    svc.set_service_properties(cors=[])
    props = svc.get_service_properties()
    assert props["cors"] == [] and props["delete_retention_policy"].days == 3


# ---------------------------------------------------------------------------------
# authentication / public access
# ---------------------------------------------------------------------------------
def test_wrong_account_key_rejected(cobalt, service):
    cname = unique("wrongkey")
    cc = service.create_container(cname)
    try:
        cc.upload_blob("b.txt", b"secret")
        bad = service_client(cobalt, key=WRONG_KEY)
        err = expect_auth_failed(lambda: list(bad.list_containers()))
        if not EXTERNAL:
            assert isinstance(err, ClientAuthenticationError)
        expect_auth_failed(lambda: download(bad.get_blob_client(cname, "b.txt")))
        expect_auth_failed(lambda: bad.get_blob_client(cname, "b.txt").get_blob_properties())
        expect_auth_failed(lambda: bad.get_blob_client(cname, "new.txt").upload_blob(b"x"))
        expect_auth_failed(lambda: bad.create_container(unique("nope")))
        assert not cc.get_blob_client("new.txt").exists()

        # A wrong key must never be accepted, not even where anonymous access would be.
        # (Azurite lets it through on public containers: not asserted there.)
        cc.set_container_access_policy(signed_identifiers={}, public_access=PublicAccess.CONTAINER)
        if not EXTERNAL:
            expect_auth_failed(lambda: download(bad.get_blob_client(cname, "b.txt")))
            expect_auth_failed(lambda: list(bad.get_container_client(cname).list_blobs()))
    finally:
        cc.delete_container()


def test_anonymous_public_access_levels(cobalt, service):
    anon = BlobServiceClient(cobalt, retry_total=0)
    conts = {}
    try:
        for level in ("container", "blob", "private"):
            access = None if level == "private" else level
            cc = service.create_container(unique(f"anon{level}"), public_access=access)
            cc.upload_blob("pub.txt", level.encode())
            conts[level] = cc.container_name

        # 'container': read blobs and list them
        c = anon.get_container_client(conts["container"])
        assert download(c.get_blob_client("pub.txt")) == b"container"
        assert c.get_blob_client("pub.txt").get_blob_properties().size == len("container")
        assert [b.name for b in c.list_blobs()] == ["pub.txt"]

        # 'blob': read blobs, but no listing
        c = anon.get_container_client(conts["blob"])
        assert download(c.get_blob_client("pub.txt")) == b"blob"
        expect_error(lambda: list(c.list_blobs()), status=ANON_DENIED_STATUS, codes=ANON_DENIED_CODES)

        # private: nothing, and a private blob looks like it does not exist
        c = anon.get_container_client(conts["private"])
        expect_error(lambda: download(c.get_blob_client("pub.txt")),
                     status=ANON_DENIED_STATUS, codes=ANON_DENIED_CODES)
        expect_error(lambda: list(c.list_blobs()), status=ANON_DENIED_STATUS, codes=ANON_DENIED_CODES)

        # anonymous clients can never write, list containers or read container ACLs
        for level in ("container", "blob", "private"):
            bc = anon.get_blob_client(conts[level], "anon-write.txt")
            expect_error(lambda: bc.upload_blob(b"x"), status=(401, 403, 404))
            assert not service.get_blob_client(conts[level], "anon-write.txt").exists()
        expect_error(lambda: list(anon.list_containers()), status=(401, 403, 404))
        expect_error(lambda: anon.get_container_client(conts["container"]).get_container_access_policy(),
                     status=(401, 403, 404))
    finally:
        for name in conts.values():
            service.delete_container(name)


# ---------------------------------------------------------------------------------
# versions / connection strings
# ---------------------------------------------------------------------------------
def _roundtrip(svc: BlobServiceClient):
    cname = unique("rt")
    cc = svc.create_container(cname)
    try:
        cc.upload_blob("a/b.txt", b"round trip", metadata={"k": "v"})
        bc = cc.get_blob_client("a/b.txt")
        assert download(bc) == b"round trip"
        assert bc.get_blob_properties().metadata == {"k": "v"}
        assert [b.name for b in cc.list_blobs()] == ["a/b.txt"]
        assert cname in [c.name for c in svc.list_containers(name_starts_with=cname)]
        bc.delete_blob()
        assert list(cc.list_blobs()) == []
    finally:
        cc.delete_container()


@pytest.mark.parametrize("api_version", [None, "2019-02-02"], ids=["default-2026-10-06", "2019-02-02"])
def test_api_versions_roundtrip(cobalt, api_version):
    sent, answered = set(), []

    def on_request(request):
        sent.add(request.http_request.headers.get("x-ms-version"))

    def on_response(response):
        answered.append(response.http_response.headers.get("x-ms-version"))

    kw = {"api_version": api_version} if api_version else {}
    svc = service_client(cobalt, raw_request_hook=on_request, raw_response_hook=on_response, **kw)
    _roundtrip(svc)
    assert sent == {api_version or SDK_DEFAULT_VERSION}
    assert answered and all(answered), "every response carries x-ms-version"


def test_connection_strings(cobalt):
    conn = (f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};"
            f"BlobEndpoint={cobalt};")
    svc = BlobServiceClient.from_connection_string(conn, retry_total=0)
    assert svc.account_name == ACCOUNT
    assert svc.url.rstrip("/") == cobalt
    _roundtrip(svc)
    # the plain account-key string credential (account inferred from the 127.0.0.1 URL)
    if cobalt.startswith(("http://127.0.0.1", "http://localhost")):
        _roundtrip(BlobServiceClient(cobalt, credential=KEY, retry_total=0))


def test_use_development_storage_connection_string(cobalt, cobalt_factory):
    # UseDevelopmentStorage=true means http://127.0.0.1:10000/devstoreaccount1: run a server of
    # our own there unless the suite's server is already on it.
    if cobalt != f"http://127.0.0.1:10000/{ACCOUNT}":
        if not port_is_free(10000):
            pytest.skip("port 10000 is taken by another process")
        cobalt_factory("devstorage", port=10000).start()
    svc = BlobServiceClient.from_connection_string("UseDevelopmentStorage=true", retry_total=0)
    _roundtrip(svc)


# ---------------------------------------------------------------------------------
# durability: kill -9 in the middle of uploads, restart on the same data directory
# ---------------------------------------------------------------------------------
@pytest.mark.needs_own_server
def test_crash_mid_upload_keeps_acknowledged_blobs(cobalt_factory, payloads):
    server = cobalt_factory("crash")
    endpoint = server.start()
    # Small thresholds so that most uploads are several Put Blocks + Put Block List.
    client_kw = dict(retry_total=0, max_single_put_size=4 * MiB, max_block_size=1 * MiB,
                     connection_timeout=5, read_timeout=30)
    svc = service_client(endpoint, **client_kw)
    cname = "crash"
    cc = svc.create_container(cname)
    source = payloads[70 * MiB].data
    expected: dict[str, bytes] = {}

    def data_for(i: int, j: int) -> bytes:
        size = (1 * KiB, 3 * MiB, 9 * MiB, 6 * MiB + 17)[(i + j) % 4]
        off = ((i * 7919 + j * 104729) * 4096) % (len(source) - size)
        return source[off:off + size]

    # acknowledged before any crash
    for j in range(3):
        expected[f"pre-{j}"] = data_for(99, j)
        cc.upload_blob(f"pre-{j}", expected[f"pre-{j}"])
    acked = set(expected)
    lock = threading.Lock()
    attempted: dict[str, bytes] = {}
    errors: list[str] = []
    stop = threading.Event()

    def uploader(i: int):
        c = service_client(endpoint, **client_kw).get_container_client(cname)
        j = 0
        while not stop.is_set():
            name, data = f"t{i}-{j:03d}", data_for(i, j)
            with lock:
                attempted[name] = data
            try:
                c.upload_blob(name, data, max_concurrency=2)
            except Exception as exc:  # noqa: BLE001 - the server is being killed
                with lock:
                    errors.append(f"{name}: {type(exc).__name__}")
                return
            with lock:
                acked.add(name)
            j += 1

    threads = [threading.Thread(target=uploader, args=(i,), daemon=True) for i in range(4)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with lock:
            if len(acked) >= 3 + 6:
                break
        time.sleep(0.02)
    time.sleep(0.15)          # land in the middle of the next uploads
    server.kill9()
    stop.set()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "uploads did not notice the dead server"
    with lock:
        acked_now = set(acked)
        in_flight = {n: d for n, d in attempted.items() if n not in acked_now}
    assert len(acked_now) >= 3 + 6, f"too few uploads before the crash: {sorted(acked_now)}"
    # Each thread records an upload before starting it, so the kill met at least one mid-way
    # (the deterministic half-way cases are the integration test and the staged-blocks test below).
    assert in_flight, "no upload was in flight at kill -9"
    expected.update({n: attempted[n] for n in acked_now if n in attempted})

    print(f"crash test: {len(acked_now)} acknowledged, {len(in_flight)} in flight at kill -9 "
          f"({sorted(in_flight)}); upload errors: {errors}")
    endpoint2 = server.start()     # same data dir, new port
    svc2 = service_client(endpoint2, retry_total=0)
    cc2 = svc2.get_container_client(cname)

    # 1. every acknowledged upload is there, byte for byte
    for name in sorted(acked_now):
        data = download(cc2.get_blob_client(name), max_concurrency=2)
        assert len(data) == len(expected[name]) and sha256(data) == sha256(expected[name]), \
            f"acknowledged blob {name} corrupted after kill -9"

    # 2. nothing partial is visible: an interrupted upload is either absent or complete
    listed = {b.name: b.size for b in cc2.list_blobs()}
    print(f"crash test: interrupted uploads visible after restart: "
          f"{sorted(set(in_flight) & set(listed))}")
    assert set(acked_now) <= set(listed), f"missing after restart: {set(acked_now) - set(listed)}"
    unknown = set(listed) - set(acked_now) - set(in_flight)
    assert not unknown, f"blobs nobody uploaded: {unknown}"
    for name, data in in_flight.items():
        bc = cc2.get_blob_client(name)
        if name in listed:
            assert listed[name] == len(data), f"partial blob {name} listed with size {listed[name]}"
            assert sha256(download(bc)) == sha256(data), f"in-flight blob {name} visible but wrong"
        else:
            expect_error(bc.get_blob_properties, ResourceNotFoundError, 404, "BlobNotFound")
            expect_error(lambda: download(bc), ResourceNotFoundError, 404, "BlobNotFound")

    # 3. the restarted server works normally
    cc2.upload_blob("after-restart", b"still alive", overwrite=True)
    assert download(cc2.get_blob_client("after-restart")) == b"still alive"
    cc2.upload_blob("after-restart-big", payloads[9 * MiB].data)
    assert sha256(download(cc2.get_blob_client("after-restart-big"))) == payloads[9 * MiB].sha256

    # 4. an orderly restart (SIGTERM) keeps everything too
    endpoint3 = server.restart()
    cc3 = service_client(endpoint3, retry_total=0).get_container_client(cname)
    assert {b.name for b in cc3.list_blobs()} == set(listed) | {"after-restart", "after-restart-big"}
    assert download(cc3.get_blob_client("after-restart")) == b"still alive"


@pytest.mark.needs_own_server
def test_staged_blocks_survive_kill9_right_after_put_block(cobalt_factory, payloads):
    """A 201 from Put Block means the block survives the process being killed at once: after
    a restart it is listed, in order and whole, and commits."""
    server = cobalt_factory("crash-staged")
    endpoint = server.start()
    bc = service_client(endpoint).create_container("staged").get_blob_client("big")
    source = payloads[9 * MiB].data
    ids = [f"block-{i:03d}" for i in range(9)]
    for i, block_id in enumerate(ids):
        bc.stage_block(block_id, source[i * MiB:(i + 1) * MiB])
    server.kill9()      # right after the last 201
    endpoint2 = server.start()
    bc2 = service_client(endpoint2).get_blob_client("staged", "big")
    committed, uncommitted = bc2.get_block_list("all")
    assert committed == []
    assert [(b.id, b.size) for b in uncommitted] == [(i, MiB) for i in ids]
    bc2.commit_block_list(ids)
    assert sha256(download(bc2)) == payloads[9 * MiB].sha256
