//! Blob operations: Put Blob, Put Block, Put Block List, Get Block List, Get Blob and its
//! properties, Set Properties/Metadata, Delete, Copy.

use axum::body::Body;
use axum::response::Response;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use cobalt_md5::{Digest, Md5};
use futures_util::StreamExt;
use http::{HeaderMap, Method, StatusCode, header};

use super::{blob_headers, finish, respond, with_etag, with_metadata};
use crate::auth::{
    self, AuthRequest, Principal,
    sas::{OVERRIDE_HEADERS, Sas},
};
use crate::engine::{AppendConditions, BlobType, BodyKind, Conditions, ContentHeaders, CopySpec};
use crate::error::{ErrorCode, StorageError, StorageResult};
use crate::headers::{self, resolve_range};
use crate::request::{Operation, Query, parse_target};
use crate::service::{Ctx, DEFAULT_VERSION, account_from_host, find_container, small_body};
use crate::xml::{self, BlockListKind};

const MIB: u64 = 1024 * 1024;
/// Largest block list body accepted (50,000 entries of the longest ids fit well within).
const MAX_BLOCK_LIST_BODY: usize = 8 * 1024 * 1024;
/// Largest range for which `x-ms-range-get-content-md5` is honoured.
const MAX_RANGE_MD5: u64 = 4 * MIB;

fn version(ctx: &Ctx) -> &str {
    headers::get(&ctx.headers, "x-ms-version").unwrap_or(DEFAULT_VERSION)
}

fn max_put_blob(version: &str) -> u64 {
    if version >= "2019-12-12" {
        5000 * MIB
    } else if version >= "2016-05-31" {
        256 * MIB
    } else {
        64 * MIB
    }
}

fn max_block(version: &str) -> u64 {
    if version >= "2019-12-12" {
        4000 * MIB
    } else if version >= "2016-05-31" {
        100 * MIB
    } else {
        4 * MIB
    }
}

fn too_large(limit: u64) -> StorageError {
    StorageError::new(ErrorCode::RequestBodyTooLarge).with_detail("MaxLimit", limit.to_string())
}

/// The request's Content-Length, required and at most `limit`.
fn required_length(h: &HeaderMap, limit: u64) -> StorageResult<u64> {
    let len = headers::content_length(h)?
        .ok_or_else(|| StorageError::new(ErrorCode::MissingContentLengthHeader))?;
    if len > limit {
        return Err(too_large(limit));
    }
    Ok(len)
}

/// The client's `Content-MD5`, decoded.
fn client_md5(h: &HeaderMap) -> StorageResult<Option<Vec<u8>>> {
    match headers::get(h, "content-md5") {
        None => Ok(None),
        Some(v) => STANDARD
            .decode(v.trim())
            .ok()
            .filter(|d| d.len() == 16)
            .map(Some)
            .ok_or_else(|| StorageError::bad_header("Content-MD5", v)),
    }
}

fn check_md5(expected: &Option<Vec<u8>>, actual: Option<[u8; 16]>) -> StorageResult<()> {
    match (expected, actual) {
        (Some(e), Some(a)) if e.as_slice() != a => Err(StorageError::new(ErrorCode::Md5Mismatch)
            .with_detail("UserSpecifiedMd5", STANDARD.encode(e))
            .with_detail("ServerCalculatedMd5", STANDARD.encode(a))),
        _ => Ok(()),
    }
}

/// The `x-ms-blob-*` HTTP properties; with `fallback`, the plain headers fill the gaps (Put Blob).
fn content_headers(h: &HeaderMap, fallback: bool) -> ContentHeaders {
    let pick = |ms: &str, plain: &str| {
        headers::get(h, ms)
            .or_else(|| {
                if fallback {
                    headers::get(h, plain)
                } else {
                    None
                }
            })
            .map(str::to_owned)
    };
    ContentHeaders {
        content_type: pick("x-ms-blob-content-type", "content-type"),
        content_encoding: pick("x-ms-blob-content-encoding", "content-encoding"),
        content_language: pick("x-ms-blob-content-language", "content-language"),
        content_md5: headers::get(h, "x-ms-blob-content-md5").map(str::to_owned),
        content_disposition: pick("x-ms-blob-content-disposition", "content-disposition"),
        cache_control: pick("x-ms-blob-cache-control", "cache-control"),
    }
}

/// Fails early (before reading a body) when the container is missing or a precondition on the
/// current blob already fails. The commit checks again atomically.
async fn precheck(ctx: &Ctx, cond: &Conditions) -> StorageResult<()> {
    let (a, c, b, cond) = (ctx.account(), ctx.container(), ctx.blob(), cond.clone());
    ctx.engine(move |e| match e.blob(&a, &c, &b) {
        Ok(props) => cond.check_write(Some((&props.etag, props.last_modified))),
        Err(crate::engine::EngineError::BlobNotFound) => cond.check_write(None),
        Err(err) => Err(err),
    })
    .await
}

pub(super) async fn put_blob(ctx: Ctx, body: Body) -> StorageResult<Response> {
    let blob_type = match headers::get(&ctx.headers, "x-ms-blob-type") {
        Some("BlockBlob") => BlobType::Block,
        Some("AppendBlob") => BlobType::Append,
        Some("PageBlob") => {
            return Err(StorageError::new(ErrorCode::NotImplemented).with_message(
                "Cobalt stores block and append blobs; page blobs are not supported.",
            ));
        }
        Some(other) => return Err(StorageError::bad_header("x-ms-blob-type", other)),
        None => {
            return Err(StorageError::new(ErrorCode::MissingRequiredHeader)
                .with_detail("HeaderName", "x-ms-blob-type"));
        }
    };
    let len = required_length(&ctx.headers, max_put_blob(version(&ctx)))?;
    if blob_type == BlobType::Append && len != 0 {
        return Err(StorageError::bad_header("Content-Length", &len.to_string())
            .with_message("The Put Blob of an append blob must have an empty body."));
    }
    let metadata = headers::metadata(&ctx.headers)?;
    let cond = headers::conditions(&ctx.headers, "")?;
    let expected_md5 = client_md5(&ctx.headers)?;
    let mut content = content_headers(&ctx.headers, true);
    // Before reading a large body, fail fast if it could never be committed. Small bodies
    // arrive with the headers; the commit's own check is enough for them.
    if len > ctx.svc.engine.config().inline_max {
        precheck(&ctx, &cond).await?;
    }
    let staged = ctx
        .svc
        .engine
        .stage(body.into_data_stream(), len, BodyKind::Blob, true)
        .await?;
    check_md5(&expected_md5, staged.md5)?;
    let md5 = staged.md5.map(|m| STANDARD.encode(m));
    if content.content_md5.is_none() {
        content.content_md5.clone_from(&md5);
    }
    let (a, c, b, create_only) = (
        ctx.account(),
        ctx.container(),
        ctx.blob(),
        ctx.create_only(),
    );
    let props = ctx
        .engine(move |e| {
            e.put_blob(
                &a,
                &c,
                &b,
                blob_type,
                staged,
                &content,
                &metadata,
                &cond,
                create_only,
            )
        })
        .await?;
    let mut builder = with_etag(
        respond(StatusCode::CREATED),
        &props.etag,
        props.last_modified,
    )
    .header("x-ms-request-server-encrypted", "true");
    if let Some(md5) = md5 {
        builder = builder.header("content-md5", md5);
    }
    finish(builder, Body::empty())
}

fn block_id(ctx: &Ctx) -> StorageResult<Vec<u8>> {
    let raw = ctx.query.get("blockid").ok_or_else(|| {
        StorageError::new(ErrorCode::MissingRequiredQueryParameter)
            .with_detail("QueryParameterName", "blockid")
    })?;
    STANDARD
        .decode(raw)
        .ok()
        .filter(|id| !id.is_empty() && id.len() <= crate::engine::MAX_BLOCK_ID_BYTES)
        .ok_or_else(|| StorageError::new(ErrorCode::InvalidBlockId))
}

pub(super) async fn put_block(ctx: Ctx, body: Body) -> StorageResult<Response> {
    let id = block_id(&ctx)?;
    let len = required_length(&ctx.headers, max_block(version(&ctx)))?;
    let expected_md5 = client_md5(&ctx.headers)?;
    {
        let (a, c) = (ctx.account(), ctx.container());
        ctx.engine(move |e| e.container(&a, &c)).await?;
    }
    let staged = ctx
        .svc
        .engine
        .stage(
            body.into_data_stream(),
            len,
            BodyKind::Block,
            expected_md5.is_some(),
        )
        .await?;
    check_md5(&expected_md5, staged.md5)?;
    let md5 = staged.md5.map(|m| STANDARD.encode(m));
    let (a, c, b) = (ctx.account(), ctx.container(), ctx.blob());
    ctx.engine(move |e| e.stage_block(&a, &c, &b, &id, staged))
        .await?;
    let mut builder = respond(StatusCode::CREATED).header("x-ms-request-server-encrypted", "true");
    if let Some(md5) = md5 {
        builder = builder.header("content-md5", md5);
    }
    finish(builder, Body::empty())
}

fn optional_u64(h: &HeaderMap, name: &str) -> StorageResult<Option<u64>> {
    headers::get(h, name)
        .map(|v| {
            v.trim()
                .parse()
                .map_err(|_| StorageError::bad_header(name, v))
        })
        .transpose()
}

pub(super) async fn append_block(ctx: Ctx, body: Body) -> StorageResult<Response> {
    let limit = if version(&ctx) >= "2022-11-02" {
        100 * MIB
    } else {
        4 * MIB
    };
    let len = required_length(&ctx.headers, limit)?;
    let expected_md5 = client_md5(&ctx.headers)?;
    let cond = headers::conditions(&ctx.headers, "")?;
    let max_size = optional_u64(&ctx.headers, "x-ms-blob-condition-maxsize")?;
    let append_position = optional_u64(&ctx.headers, "x-ms-blob-condition-appendpos")?;
    {
        let (a, c, b) = (ctx.account(), ctx.container(), ctx.blob());
        let props = ctx.engine(move |e| e.blob(&a, &c, &b)).await?;
        if props.blob_type != BlobType::Append {
            return Err(ErrorCode::InvalidBlobType.into());
        }
    }
    let staged = ctx
        .svc
        .engine
        .stage(
            body.into_data_stream(),
            len,
            BodyKind::AppendBlock,
            expected_md5.is_some(),
        )
        .await?;
    check_md5(&expected_md5, staged.md5)?;
    let md5 = staged.md5.map(|m| STANDARD.encode(m));
    let (a, c, b) = (ctx.account(), ctx.container(), ctx.blob());
    let (props, offset) = ctx
        .engine(move |e| {
            e.append_block(
                &a,
                &c,
                &b,
                staged,
                &cond,
                AppendConditions {
                    max_size,
                    append_position,
                },
            )
        })
        .await?;
    let mut builder = with_etag(
        respond(StatusCode::CREATED),
        &props.etag,
        props.last_modified,
    )
    .header("x-ms-blob-append-offset", offset)
    .header("x-ms-blob-committed-block-count", props.block_count)
    .header("x-ms-request-server-encrypted", "true");
    if let Some(md5) = md5 {
        builder = builder.header("content-md5", md5);
    }
    finish(builder, Body::empty())
}

pub(super) async fn put_block_list(ctx: Ctx, body: Body) -> StorageResult<Response> {
    let metadata = headers::metadata(&ctx.headers)?;
    let cond = headers::conditions(&ctx.headers, "")?;
    let content = content_headers(&ctx.headers, false);
    let bytes = small_body(body, MAX_BLOCK_LIST_BODY).await?;
    let entries = xml::parse_block_list(&bytes)?;
    let list = entries
        .into_iter()
        .map(|(kind, id)| {
            STANDARD
                .decode(id.trim())
                .ok()
                .filter(|d| !d.is_empty() && d.len() <= crate::engine::MAX_BLOCK_ID_BYTES)
                .map(|d| (kind, d))
                .ok_or_else(|| StorageError::new(ErrorCode::InvalidBlockList))
        })
        .collect::<StorageResult<Vec<(BlockListKind, Vec<u8>)>>>()?;
    let (a, c, b, create_only) = (
        ctx.account(),
        ctx.container(),
        ctx.blob(),
        ctx.create_only(),
    );
    let props = ctx
        .engine(move |e| {
            e.commit_block_list(&a, &c, &b, &list, &content, &metadata, &cond, create_only)
        })
        .await?;
    let builder = with_etag(
        respond(StatusCode::CREATED),
        &props.etag,
        props.last_modified,
    )
    .header("x-ms-request-server-encrypted", "true");
    finish(builder, Body::empty())
}

pub(super) async fn get_block_list(ctx: Ctx) -> StorageResult<Response> {
    let kind = ctx
        .query
        .get("blocklisttype")
        .unwrap_or("committed")
        .to_ascii_lowercase();
    let (want_committed, want_uncommitted) = match kind.as_str() {
        "committed" => (true, false),
        "uncommitted" => (false, true),
        "all" => (true, true),
        other => return Err(StorageError::bad_query("blocklisttype", other)),
    };
    let (a, c, b) = (ctx.account(), ctx.container(), ctx.blob());
    let (committed, uncommitted, props) = ctx.engine(move |e| e.block_list(&a, &c, &b)).await?;
    let mut out = String::from(xml::DECLARATION);
    out.push_str("<BlockList>");
    for (wanted, name, blocks) in [
        (want_committed, "CommittedBlocks", &committed),
        (want_uncommitted, "UncommittedBlocks", &uncommitted),
    ] {
        if !wanted {
            continue;
        }
        if blocks.is_empty() {
            out.push_str(&format!("<{name} />"));
            continue;
        }
        out.push_str(&format!("<{name}>"));
        for (id, size) in blocks {
            out.push_str("<Block>");
            xml::element(&mut out, "Name", &STANDARD.encode(id));
            xml::element(&mut out, "Size", &size.to_string());
            out.push_str("</Block>");
        }
        out.push_str(&format!("</{name}>"));
    }
    out.push_str("</BlockList>");
    let mut builder = respond(StatusCode::OK).header(header::CONTENT_TYPE, "application/xml");
    if let Some(p) = props {
        builder =
            with_etag(builder, &p.etag, p.last_modified).header("x-ms-blob-content-length", p.size);
    }
    finish(builder, Body::from(out))
}

pub(super) async fn get_blob(ctx: Ctx) -> StorageResult<Response> {
    let cond = headers::conditions(&ctx.headers, "")?;
    let requested = headers::range(&ctx.headers)?;
    let head = ctx.method == Method::HEAD;
    let want_range_md5 = headers::get(&ctx.headers, "x-ms-range-get-content-md5")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let (a, c, b) = (ctx.account(), ctx.container(), ctx.blob());
    let (props, range, reader) = ctx
        .engine(move |e| {
            let mut range = None;
            let (props, reader) = e.open_blob(&a, &c, &b, |p| {
                cond.check_read(&p.etag, p.last_modified)?;
                let r = match requested {
                    Some(req) if !head => Some(
                        resolve_range(req, p.size)
                            .map_err(|_| crate::engine::EngineError::InvalidRange(p.size))?,
                    ),
                    _ => None,
                };
                range = r;
                Ok(if head || p.size == 0 {
                    None
                } else {
                    Some(r.unwrap_or((0, p.size - 1)))
                })
            })?;
            Ok((props, range, reader))
        })
        .await?;
    let (status, length) = match range {
        Some((start, end)) => (StatusCode::PARTIAL_CONTENT, end - start + 1),
        None => (StatusCode::OK, props.size),
    };
    let mut builder = blob_headers(respond(status), &props)
        .header(header::CONTENT_LENGTH, length)
        .header(
            header::CONTENT_TYPE,
            props
                .headers
                .content_type
                .as_deref()
                .unwrap_or("application/octet-stream"),
        );
    if head {
        builder = builder
            .header("x-ms-access-tier", "Hot")
            .header("x-ms-access-tier-inferred", "true");
    }
    for (name, value) in [
        (header::CONTENT_ENCODING, &props.headers.content_encoding),
        (header::CONTENT_LANGUAGE, &props.headers.content_language),
        (
            header::CONTENT_DISPOSITION,
            &props.headers.content_disposition,
        ),
        (header::CACHE_CONTROL, &props.headers.cache_control),
    ] {
        if let Some(v) = value {
            builder = builder.header(name, v);
        }
    }
    match (range, &props.headers.content_md5) {
        (None, Some(md5)) => builder = builder.header("content-md5", md5),
        (Some(_), Some(md5)) => builder = builder.header("x-ms-blob-content-md5", md5),
        _ => {}
    }
    if let Some((start, end)) = range {
        builder = builder.header(
            header::CONTENT_RANGE,
            format!("bytes {start}-{end}/{}", props.size),
        );
    }
    if let Principal::Sas(grant) = &ctx.principal {
        for (name, value) in OVERRIDE_HEADERS.iter().zip(&grant.overrides) {
            if !value.is_empty()
                && let Some(h) = builder.headers_mut()
            {
                h.insert(
                    *name,
                    value
                        .parse()
                        .map_err(|_| StorageError::bad_query(name, value))?,
                );
            }
        }
    }
    if head {
        return finish(builder, Body::empty());
    }
    if let Some(bytes) = reader.as_inline() {
        if want_range_md5 && range.is_some() {
            builder = builder.header("content-md5", STANDARD.encode(Md5::digest(&bytes)));
        }
        return finish(builder, Body::from(bytes));
    }
    let stream = reader.into_stream();
    if let Some((start, end)) = range.filter(|_| want_range_md5) {
        if end - start + 1 > MAX_RANGE_MD5 {
            return Err(StorageError::new(ErrorCode::OutOfRangeInput).with_message(
                "x-ms-range-get-content-md5 is supported for ranges of at most 4 MiB.",
            ));
        }
        let chunks: Vec<bytes::Bytes> = stream
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<std::io::Result<_>>()
            .map_err(StorageError::internal)?;
        let mut md5 = Md5::new();
        chunks.iter().for_each(|c| md5.update(c));
        builder = builder.header("content-md5", STANDARD.encode(md5.finalize()));
        let body = futures_util::stream::iter(chunks.into_iter().map(Ok::<_, std::io::Error>));
        return finish(builder, Body::from_stream(body));
    }
    finish(builder, Body::from_stream(stream))
}

pub(super) async fn get_blob_metadata(ctx: Ctx) -> StorageResult<Response> {
    let cond = headers::conditions(&ctx.headers, "")?;
    let (a, c, b) = (ctx.account(), ctx.container(), ctx.blob());
    let props = ctx
        .engine(move |e| {
            let p = e.blob(&a, &c, &b)?;
            cond.check_read(&p.etag, p.last_modified)?;
            Ok(p)
        })
        .await?;
    finish(
        with_metadata(
            with_etag(respond(StatusCode::OK), &props.etag, props.last_modified),
            &props.metadata,
        ),
        Body::empty(),
    )
}

pub(super) async fn set_blob_properties(ctx: Ctx) -> StorageResult<Response> {
    let cond = headers::conditions(&ctx.headers, "")?;
    let content = content_headers(&ctx.headers, false);
    let (a, c, b) = (ctx.account(), ctx.container(), ctx.blob());
    let props = ctx
        .engine(move |e| e.set_blob_headers(&a, &c, &b, &content, &cond))
        .await?;
    finish(
        with_etag(respond(StatusCode::OK), &props.etag, props.last_modified),
        Body::empty(),
    )
}

pub(super) async fn set_blob_metadata(ctx: Ctx) -> StorageResult<Response> {
    let cond = headers::conditions(&ctx.headers, "")?;
    let metadata = headers::metadata(&ctx.headers)?;
    let (a, c, b) = (ctx.account(), ctx.container(), ctx.blob());
    let props = ctx
        .engine(move |e| e.set_blob_metadata(&a, &c, &b, &metadata, &cond))
        .await?;
    finish(
        with_etag(respond(StatusCode::OK), &props.etag, props.last_modified)
            .header("x-ms-request-server-encrypted", "true"),
        Body::empty(),
    )
}

pub(super) async fn delete_blob(ctx: Ctx) -> StorageResult<Response> {
    let cond = headers::conditions(&ctx.headers, "")?;
    let (a, c, b) = (ctx.account(), ctx.container(), ctx.blob());
    match headers::get(&ctx.headers, "x-ms-delete-snapshots") {
        // A blob has no snapshots here, so deleting "only" its snapshots changes nothing.
        Some("only") => {
            ctx.engine(move |e| {
                let p = e.blob(&a, &c, &b)?;
                cond.check_update(&p.etag, p.last_modified)
            })
            .await?;
        }
        None | Some("include") => {
            ctx.engine(move |e| e.delete_blob(&a, &c, &b, &cond))
                .await?
        }
        Some(other) => return Err(StorageError::bad_header("x-ms-delete-snapshots", other)),
    }
    finish(
        respond(StatusCode::ACCEPTED).header("x-ms-delete-type-permanent", "true"),
        Body::empty(),
    )
}

/// Whether a copy source URL's authority is this server (as the client reached it).
/// `names_account`: the host's first label is one of this server's accounts (production-style).
fn is_local_authority(
    authority: &http::uri::Authority,
    request_host: &str,
    names_account: bool,
) -> bool {
    if authority.as_str().eq_ignore_ascii_case(request_host) {
        return true;
    }
    let request_port = request_host.rsplit_once(':').map(|(_, p)| p);
    let loopback = names_account
        || matches!(authority.host(), "localhost" | "127.0.0.1" | "[::1]")
        || authority
            .host()
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback());
    loopback && authority.port_u16().map(|p| p.to_string()).as_deref() == request_port
}

pub(super) async fn copy_blob(ctx: Ctx) -> StorageResult<Response> {
    let source = headers::get(&ctx.headers, "x-ms-copy-source")
        .unwrap_or_default()
        .to_owned();
    let bad_source = || StorageError::bad_header("x-ms-copy-source", &source);
    let uri: http::Uri = source.parse().map_err(|_| bad_source())?;
    let authority = uri.authority().ok_or_else(bad_source)?;
    let request_host = headers::get(&ctx.headers, "host").unwrap_or_default();
    let svc = &ctx.svc;
    let named_account = account_from_host(authority.as_str(), svc).is_some();
    if !is_local_authority(authority, request_host, named_account) {
        return Err(StorageError::new(ErrorCode::NotImplemented).with_message(
            "Cobalt copies blobs within this server only; the copy source names another host.",
        ));
    }
    let src = parse_target(
        uri.path(),
        account_from_host(authority.as_str(), svc),
        &svc.default_account,
        |a| svc.accounts.get(a).is_some(),
    )
    .map_err(|_| bad_source())?;
    let (Some(src_container), Some(src_blob)) = (src.container.clone(), src.blob.clone()) else {
        return Err(bad_source());
    };
    if super::names_snapshot(&Query::parse(uri.query())?) {
        return Err(super::no_snapshots());
    }
    // The source must be readable by this request: same account with a key, a SAS in the URL,
    // or a public container.
    let src_query = Query::parse(uri.query())?;
    let authorized = if let Some(sas) = Sas::from_query(&src_query) {
        let account = svc.accounts.get(&src.account).ok_or_else(bad_source)?;
        let req = AuthRequest {
            method: &Method::GET,
            headers: &ctx.headers,
            raw_path: uri.path(),
            query: &src_query,
            target: &src,
            operation: Operation::GetBlob,
            remote_ip: ctx.remote_ip,
        };
        let policy = if sas.identifier.is_empty() {
            None
        } else {
            find_container(&svc.engine, &src.account, &src_container)
                .await?
                .and_then(|c| c.identifiers.into_iter().find(|i| i.id == sas.identifier))
        };
        auth::verify_sas(&req, account, &sas, policy.as_ref()).is_ok()
    } else if ctx.principal == Principal::Key && src.account == ctx.target.account {
        true
    } else {
        find_container(&svc.engine, &src.account, &src_container)
            .await?
            .is_some_and(|c| Operation::GetBlob.allowed_anonymously(c.public_access))
    };
    if !authorized {
        return Err(StorageError::new(ErrorCode::CannotVerifyCopySource));
    }
    let cond = headers::conditions(&ctx.headers, "")?;
    let source_cond = headers::conditions(&ctx.headers, "x-ms-source-")?;
    let metadata = headers::metadata(&ctx.headers)?;
    // Put Blob From URL names a blob type; Copy Blob does not. The former takes properties and
    // metadata from the request and answers 201; the latter keeps the source's and answers 202.
    let from_url = match headers::get(&ctx.headers, "x-ms-blob-type") {
        None => false,
        Some("BlockBlob") => true,
        Some(other) => return Err(StorageError::bad_header("x-ms-blob-type", other)),
    };
    let content = from_url.then(|| content_headers(&ctx.headers, false));
    let metadata = (from_url || !metadata.is_empty()).then_some(metadata);
    let (a, c, b, create_only) = (
        ctx.account(),
        ctx.container(),
        ctx.blob(),
        ctx.create_only(),
    );
    let props = ctx
        .engine(move |e| {
            e.copy_blob(&CopySpec {
                source: (&src.account, &src_container, &src_blob),
                source_url: &source,
                dest: (&a, &c, &b),
                metadata: metadata.as_ref(),
                headers: content.as_ref(),
                from_url,
                cond: &cond,
                source_cond: &source_cond,
                create_only,
            })
        })
        .await?;
    if from_url {
        return finish(
            with_etag(
                respond(StatusCode::CREATED),
                &props.etag,
                props.last_modified,
            )
            .header("x-ms-request-server-encrypted", "true"),
            Body::empty(),
        );
    }
    let copy = props.copy.clone().unwrap_or_default();
    finish(
        with_etag(
            respond(StatusCode::ACCEPTED),
            &props.etag,
            props.last_modified,
        )
        .header("x-ms-copy-id", copy.id)
        .header("x-ms-copy-status", "success"),
        Body::empty(),
    )
}
