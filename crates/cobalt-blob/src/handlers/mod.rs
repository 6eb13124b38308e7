//! Request handlers, one per Azure operation, grouped by resource. Each takes the request
//! context and body and returns a response or a `StorageError`.

mod blob;
mod container;
mod service;

use axum::body::Body;
use axum::response::Response;
use http::{StatusCode, header};

use crate::engine::{BlobProps, Container, Metadata};
use crate::error::StorageResult;
use crate::headers::http_date;
use crate::request::Operation;
use crate::service::Ctx;

/// Runs the handler of `op`.
pub(crate) async fn dispatch(op: Operation, ctx: Ctx, body: Body) -> StorageResult<Response> {
    use Operation::*;
    if op.level() == crate::request::Level::Object && names_snapshot(&ctx.query) {
        return Err(no_snapshots());
    }
    match op {
        ListContainers => service::list_containers(ctx).await,
        GetServiceProperties => service::get_service_properties(ctx).await,
        SetServiceProperties => service::set_service_properties(ctx, body).await,
        GetAccountInfo => service::get_account_info(ctx).await,
        CreateContainer => container::create_container(ctx).await,
        DeleteContainer => container::delete_container(ctx).await,
        GetContainerProperties | GetContainerMetadata => {
            container::get_container_properties(ctx).await
        }
        SetContainerMetadata => container::set_container_metadata(ctx).await,
        GetContainerAcl => container::get_container_acl(ctx).await,
        SetContainerAcl => container::set_container_acl(ctx, body).await,
        ListBlobs => container::list_blobs(ctx).await,
        PutBlob => blob::put_blob(ctx, body).await,
        CopyBlob => blob::copy_blob(ctx).await,
        PutBlock => blob::put_block(ctx, body).await,
        PutBlockList => blob::put_block_list(ctx, body).await,
        AppendBlock => blob::append_block(ctx, body).await,
        GetBlockList => blob::get_block_list(ctx).await,
        GetBlob | GetBlobProperties => blob::get_blob(ctx).await,
        GetBlobMetadata => blob::get_blob_metadata(ctx).await,
        SetBlobProperties => blob::set_blob_properties(ctx).await,
        SetBlobMetadata => blob::set_blob_metadata(ctx).await,
        DeleteBlob => blob::delete_blob(ctx).await,
    }
}

/// Whether a query names a snapshot or version of a blob (`snapshot=`, `versionid=`).
fn names_snapshot(query: &crate::request::Query) -> bool {
    query.get("snapshot").is_some() || query.get("versionid").is_some()
}

/// Cobalt keeps no snapshots or versions, so any that is named does not exist.
fn no_snapshots() -> crate::error::StorageError {
    crate::error::StorageError::new(crate::error::ErrorCode::BlobNotFound).with_message(
        "The specified blob does not exist. Cobalt keeps no blob snapshots or versions.",
    )
}

/// A response builder with a status.
fn respond(status: StatusCode) -> http::response::Builder {
    Response::builder().status(status)
}

/// Finishes a builder; a header that failed to build is a bug worth a 500, not a panic.
fn finish(builder: http::response::Builder, body: Body) -> StorageResult<Response> {
    builder
        .body(body)
        .map_err(crate::error::StorageError::internal)
}

fn with_etag(
    builder: http::response::Builder,
    etag: &str,
    last_modified: i64,
) -> http::response::Builder {
    builder
        .header(header::ETAG, format!("\"{etag}\""))
        .header(header::LAST_MODIFIED, http_date(last_modified))
}

fn with_metadata(
    mut builder: http::response::Builder,
    metadata: &Metadata,
) -> http::response::Builder {
    for (k, v) in metadata {
        builder = builder.header(format!("x-ms-meta-{k}"), v);
    }
    builder
}

fn container_headers(builder: http::response::Builder, c: &Container) -> http::response::Builder {
    let mut b = with_metadata(with_etag(builder, &c.etag, c.last_modified), &c.metadata)
        .header("x-ms-lease-state", "available")
        .header("x-ms-lease-status", "unlocked")
        .header("x-ms-has-immutability-policy", "false")
        .header("x-ms-has-legal-hold", "false")
        .header("x-ms-default-encryption-scope", "$account-encryption-key")
        .header("x-ms-deny-encryption-scope-override", "false");
    if let Some(p) = c.public_access {
        b = b.header("x-ms-blob-public-access", p.as_str());
    }
    b
}

fn blob_headers(builder: http::response::Builder, p: &BlobProps) -> http::response::Builder {
    let mut b = with_metadata(with_etag(builder, &p.etag, p.last_modified), &p.metadata)
        .header("x-ms-creation-time", http_date(p.created))
        .header("x-ms-blob-type", p.blob_type.as_str())
        .header("x-ms-lease-state", "available")
        .header("x-ms-lease-status", "unlocked")
        .header("x-ms-server-encrypted", "true")
        .header(header::ACCEPT_RANGES, "bytes");
    if p.blob_type == crate::engine::BlobType::Append {
        b = b.header("x-ms-blob-committed-block-count", p.block_count);
    }
    if let Some(c) = &p.copy {
        b = b
            .header("x-ms-copy-id", &c.id)
            .header("x-ms-copy-source", &c.source)
            .header("x-ms-copy-status", "success")
            .header("x-ms-copy-progress", format!("{}/{}", c.bytes, c.bytes))
            .header("x-ms-copy-completion-time", http_date(c.completed));
    }
    b
}
