//! Container operations: create, delete, properties, metadata, ACL, list blobs.

use axum::body::Body;
use axum::response::Response;
use http::{Method, StatusCode, header};

use super::service::{include_metadata, max_results, write_metadata};
use super::{container_headers, finish, respond, with_etag};
use crate::engine::ListItem;
use crate::error::{ErrorCode, StorageError, StorageResult};
use crate::headers::{self, http_date};
use crate::request::PublicAccess;
use crate::service::{Ctx, small_body};
use crate::xml;

pub(super) async fn create_container(ctx: Ctx) -> StorageResult<Response> {
    let metadata = headers::metadata(&ctx.headers)?;
    let public = PublicAccess::parse(headers::get(&ctx.headers, "x-ms-blob-public-access"))?;
    let (a, c) = (ctx.account(), ctx.container());
    let created = ctx
        .engine(move |e| e.create_container(&a, &c, &metadata, public))
        .await?;
    finish(
        with_etag(
            respond(StatusCode::CREATED),
            &created.etag,
            created.last_modified,
        ),
        Body::empty(),
    )
}

pub(super) async fn delete_container(ctx: Ctx) -> StorageResult<Response> {
    let cond = headers::conditions(&ctx.headers, "")?;
    if cond.if_match.is_some() || cond.if_none_match.is_some() {
        return Err(StorageError::new(ErrorCode::UnsupportedHeader));
    }
    let (a, c) = (ctx.account(), ctx.container());
    ctx.engine(move |e| e.delete_container(&a, &c, &cond))
        .await?;
    finish(respond(StatusCode::ACCEPTED), Body::empty())
}

pub(super) async fn get_container_properties(ctx: Ctx) -> StorageResult<Response> {
    let (a, c) = (ctx.account(), ctx.container());
    let container = ctx.engine(move |e| e.container(&a, &c)).await?;
    finish(
        container_headers(respond(StatusCode::OK), &container),
        Body::empty(),
    )
}

pub(super) async fn set_container_metadata(ctx: Ctx) -> StorageResult<Response> {
    let metadata = headers::metadata(&ctx.headers)?;
    let cond = headers::conditions(&ctx.headers, "")?;
    let (a, c) = (ctx.account(), ctx.container());
    let container = ctx
        .engine(move |e| e.set_container_metadata(&a, &c, &metadata, &cond))
        .await?;
    finish(
        with_etag(
            respond(StatusCode::OK),
            &container.etag,
            container.last_modified,
        ),
        Body::empty(),
    )
}

pub(super) async fn get_container_acl(ctx: Ctx) -> StorageResult<Response> {
    let (a, c) = (ctx.account(), ctx.container());
    let container = ctx.engine(move |e| e.container(&a, &c)).await?;
    let mut b = with_etag(
        respond(StatusCode::OK),
        &container.etag,
        container.last_modified,
    );
    if let Some(p) = container.public_access {
        b = b.header("x-ms-blob-public-access", p.as_str());
    }
    let body = if ctx.method == Method::HEAD {
        Body::empty()
    } else {
        b = b.header(header::CONTENT_TYPE, "application/xml");
        Body::from(xml::write_signed_identifiers(&container.identifiers))
    };
    finish(b, body)
}

pub(super) async fn set_container_acl(ctx: Ctx, body: Body) -> StorageResult<Response> {
    let public = PublicAccess::parse(headers::get(&ctx.headers, "x-ms-blob-public-access"))?;
    let cond = headers::conditions(&ctx.headers, "")?;
    let bytes = small_body(body, 64 * 1024).await?;
    let identifiers = xml::parse_signed_identifiers(&bytes)?;
    for id in &identifiers {
        for (name, value) in [("Start", &id.start), ("Expiry", &id.expiry)] {
            if let Some(v) = value.as_deref().filter(|v| !v.is_empty())
                && crate::auth::sas::parse_time(v).is_none()
            {
                return Err(
                    StorageError::new(ErrorCode::InvalidXmlDocument).with_message(format!(
                        "The {name} time {v:?} of signed identifier {:?} is not a valid time.",
                        id.id
                    )),
                );
            }
        }
    }
    let (a, c) = (ctx.account(), ctx.container());
    let container = ctx
        .engine(move |e| e.set_container_acl(&a, &c, public, &identifiers, &cond))
        .await?;
    finish(
        with_etag(
            respond(StatusCode::OK),
            &container.etag,
            container.last_modified,
        ),
        Body::empty(),
    )
}

pub(super) async fn list_blobs(ctx: Ctx) -> StorageResult<Response> {
    let prefix = ctx.query.get("prefix").unwrap_or_default().to_owned();
    let marker = ctx.query.get("marker").unwrap_or_default().to_owned();
    let delimiter = ctx
        .query
        .get("delimiter")
        .filter(|d| !d.is_empty())
        .map(str::to_owned);
    let max = max_results(&ctx)?;
    let (a, c, p, m, d) = (
        ctx.account(),
        ctx.container(),
        prefix.clone(),
        marker.clone(),
        delimiter.clone(),
    );
    let (items, next) = ctx
        .engine(move |e| e.list_blobs(&a, &c, &p, d.as_deref(), &m, max))
        .await?;
    let with_metadata = include_metadata(&ctx);
    let mut out = String::with_capacity(256 + items.len() * 700);
    out.push_str(xml::DECLARATION);
    out.push_str(&format!(
        r#"<EnumerationResults ServiceEndpoint="{}" ContainerName="{}">"#,
        xml::escape(&ctx.base_url),
        xml::escape(&ctx.container())
    ));
    xml::element_or_empty(&mut out, "Prefix", &prefix);
    xml::element_or_empty(&mut out, "Marker", &marker);
    if ctx.query.get("maxresults").is_some() {
        xml::element(&mut out, "MaxResults", &max.to_string());
    }
    if let Some(d) = &delimiter {
        xml::element(&mut out, "Delimiter", d);
    }
    out.push_str("<Blobs>");
    for item in &items {
        match item {
            ListItem::Prefix(p) => {
                out.push_str("<BlobPrefix>");
                xml::element(&mut out, "Name", p);
                out.push_str("</BlobPrefix>");
            }
            ListItem::Blob(b) => {
                out.push_str("<Blob>");
                xml::element(&mut out, "Name", &b.name);
                out.push_str("<Properties>");
                xml::element(&mut out, "Creation-Time", &http_date(b.created));
                xml::element(&mut out, "Last-Modified", &http_date(b.last_modified));
                xml::element(&mut out, "Etag", &b.etag);
                xml::element(&mut out, "Content-Length", &b.size.to_string());
                xml::element(
                    &mut out,
                    "Content-Type",
                    b.headers
                        .content_type
                        .as_deref()
                        .unwrap_or("application/octet-stream"),
                );
                for (name, value) in [
                    ("Content-Encoding", &b.headers.content_encoding),
                    ("Content-Language", &b.headers.content_language),
                    ("Content-MD5", &b.headers.content_md5),
                    ("Cache-Control", &b.headers.cache_control),
                    ("Content-Disposition", &b.headers.content_disposition),
                ] {
                    if let Some(v) = value {
                        xml::element(&mut out, name, v);
                    }
                }
                xml::element(&mut out, "BlobType", b.blob_type.as_str());
                out.push_str(
                    "<AccessTier>Hot</AccessTier><AccessTierInferred>true</AccessTierInferred>",
                );
                out.push_str("<LeaseStatus>unlocked</LeaseStatus><LeaseState>available</LeaseState><ServerEncrypted>true</ServerEncrypted>");
                if let Some(copy) = &b.copy {
                    xml::element(&mut out, "CopyId", &copy.id);
                    xml::element(&mut out, "CopySource", &copy.source);
                    out.push_str("<CopyStatus>success</CopyStatus>");
                    xml::element(
                        &mut out,
                        "CopyProgress",
                        &format!("{}/{}", copy.bytes, copy.bytes),
                    );
                    xml::element(&mut out, "CopyCompletionTime", &http_date(copy.completed));
                }
                out.push_str("</Properties>");
                if with_metadata {
                    write_metadata(&mut out, &b.metadata);
                }
                out.push_str("</Blob>");
            }
        }
    }
    out.push_str("</Blobs>");
    xml::element_or_empty(&mut out, "NextMarker", next.as_deref().unwrap_or_default());
    out.push_str("</EnumerationResults>");
    finish(
        respond(StatusCode::OK).header(header::CONTENT_TYPE, "application/xml"),
        Body::from(out),
    )
}
