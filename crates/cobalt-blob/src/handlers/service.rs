//! Account-level operations: list containers, service properties, account information.

use axum::body::Body;
use axum::response::Response;
use http::{StatusCode, header};

use super::{finish, respond};
use crate::engine::Container;
use crate::error::{ErrorCode, StorageError, StorageResult};
use crate::headers::http_date;
use crate::service::{Ctx, small_body};
use crate::xml;

/// Azure's default and largest page size.
pub(super) const MAX_RESULTS: usize = 5000;

/// `maxresults`: 1..=5000, default 5000.
pub(super) fn max_results(ctx: &Ctx) -> StorageResult<usize> {
    match ctx.query.get("maxresults") {
        None => Ok(MAX_RESULTS),
        Some(v) => match v.parse::<usize>() {
            Ok(n) if n >= 1 => Ok(n.min(MAX_RESULTS)),
            _ => Err(StorageError::new(ErrorCode::OutOfRangeInput)
                .with_detail("QueryParameterName", "maxresults")),
        },
    }
}

fn include(ctx: &Ctx, what: &str) -> bool {
    ctx.query
        .pairs()
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("include"))
        .any(|(_, v)| v.split(',').any(|i| i.trim().eq_ignore_ascii_case(what)))
}

pub(super) fn include_metadata(ctx: &Ctx) -> bool {
    include(ctx, "metadata")
}

pub(super) fn write_metadata(out: &mut String, metadata: &crate::engine::Metadata) {
    if metadata.is_empty() {
        out.push_str("<Metadata />");
        return;
    }
    out.push_str("<Metadata>");
    for (k, v) in metadata {
        xml::element(out, k, v);
    }
    out.push_str("</Metadata>");
}

pub(super) async fn list_containers(ctx: Ctx) -> StorageResult<Response> {
    let prefix = ctx.query.get("prefix").unwrap_or_default().to_owned();
    let marker = ctx.query.get("marker").unwrap_or_default().to_owned();
    let max = max_results(&ctx)?;
    let (account, p, m) = (ctx.account(), prefix.clone(), marker.clone());
    let (containers, next) = ctx
        .engine(move |e| e.list_containers(&account, &p, &m, max))
        .await?;
    let with_metadata = include_metadata(&ctx);
    let mut out = String::with_capacity(256 + containers.len() * 400);
    out.push_str(xml::DECLARATION);
    out.push_str(&format!(
        r#"<EnumerationResults ServiceEndpoint="{}">"#,
        xml::escape(&ctx.base_url)
    ));
    xml::element_or_empty(&mut out, "Prefix", &prefix);
    xml::element_or_empty(&mut out, "Marker", &marker);
    if ctx.query.get("maxresults").is_some() {
        xml::element(&mut out, "MaxResults", &max.to_string());
    }
    out.push_str("<Containers>");
    for c in &containers {
        write_container(&mut out, c, with_metadata);
    }
    out.push_str("</Containers>");
    xml::element_or_empty(&mut out, "NextMarker", next.as_deref().unwrap_or_default());
    out.push_str("</EnumerationResults>");
    finish(
        respond(StatusCode::OK).header(header::CONTENT_TYPE, "application/xml"),
        Body::from(out),
    )
}

fn write_container(out: &mut String, c: &Container, with_metadata: bool) {
    out.push_str("<Container>");
    xml::element(out, "Name", &c.name);
    out.push_str("<Properties>");
    xml::element(out, "Last-Modified", &http_date(c.last_modified));
    xml::element(out, "Etag", &format!("\"{}\"", c.etag));
    out.push_str("<LeaseStatus>unlocked</LeaseStatus><LeaseState>available</LeaseState>");
    if let Some(p) = c.public_access {
        xml::element(out, "PublicAccess", p.as_str());
    }
    out.push_str("<DefaultEncryptionScope>$account-encryption-key</DefaultEncryptionScope><DenyEncryptionScopeOverride>false</DenyEncryptionScopeOverride>");
    out.push_str(
        "<HasImmutabilityPolicy>false</HasImmutabilityPolicy><HasLegalHold>false</HasLegalHold>",
    );
    out.push_str("</Properties>");
    if with_metadata {
        write_metadata(out, &c.metadata);
    }
    out.push_str("</Container>");
}

const DEFAULT_SERVICE_PROPERTIES: &str = concat!(
    r#"<?xml version="1.0" encoding="utf-8"?><StorageServiceProperties>"#,
    "<Logging><Version>1.0</Version><Delete>false</Delete><Read>false</Read><Write>false</Write>",
    "<RetentionPolicy><Enabled>false</Enabled></RetentionPolicy></Logging>",
    "<HourMetrics><Version>1.0</Version><Enabled>false</Enabled><RetentionPolicy><Enabled>false</Enabled></RetentionPolicy></HourMetrics>",
    "<MinuteMetrics><Version>1.0</Version><Enabled>false</Enabled><RetentionPolicy><Enabled>false</Enabled></RetentionPolicy></MinuteMetrics>",
    "<Cors />",
    "<DeleteRetentionPolicy><Enabled>false</Enabled></DeleteRetentionPolicy>",
    "<StaticWebsite><Enabled>false</Enabled></StaticWebsite>",
    "</StorageServiceProperties>"
);

pub(super) async fn get_service_properties(ctx: Ctx) -> StorageResult<Response> {
    let account = ctx.account();
    let stored = ctx.engine(move |e| e.service_properties(&account)).await?;
    let body = stored.unwrap_or_else(|| DEFAULT_SERVICE_PROPERTIES.to_owned());
    finish(
        respond(StatusCode::OK).header(header::CONTENT_TYPE, "application/xml"),
        Body::from(body),
    )
}

pub(super) async fn set_service_properties(ctx: Ctx, body: Body) -> StorageResult<Response> {
    let bytes = small_body(body, 64 * 1024).await?;
    let account = ctx.account();
    ctx.engine(move |e| {
        e.update_service_properties(&account, |stored| {
            xml::merge_service_properties(stored.unwrap_or(DEFAULT_SERVICE_PROPERTIES), &bytes)
        })
    })
    .await??;
    finish(respond(StatusCode::ACCEPTED), Body::empty())
}

pub(super) async fn get_account_info(_ctx: Ctx) -> StorageResult<Response> {
    finish(
        respond(StatusCode::OK)
            .header("x-ms-sku-name", "Standard_LRS")
            .header("x-ms-account-kind", "StorageV2")
            .header("x-ms-is-hns-enabled", "false"),
        Body::empty(),
    )
}
