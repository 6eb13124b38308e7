//! The JSON endpoints of the storage page: containers and blobs of the session's storage
//! account, download and delete. Engine calls run on blocking threads.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use cobalt_blob::engine::{Conditions, ListItem};
use http::{HeaderValue, header};
use serde::Deserialize;
use serde_json::json;

use crate::batch::{blocking, json};
use crate::error::{UiError, UiResult};
use crate::{Principal, Ui};

/// Items in one page of a listing.
const PAGE: usize = 200;

/// `?prefix=&marker=`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ListQuery {
    prefix: Option<String>,
    marker: Option<String>,
}

fn account(p: &Principal) -> UiResult<String> {
    p.storage.clone().ok_or_else(|| {
        UiError::Forbidden(
            "This session has no storage account: log in with a storage account key too.".into(),
        )
    })
}

/// `GET /ui/api/storage/containers?prefix=&marker=`.
pub(crate) async fn list_containers(
    State(ui): State<Arc<Ui>>,
    p: Principal,
    Query(q): Query<ListQuery>,
) -> UiResult<Response> {
    let account = account(&p)?;
    let v = blocking(move || {
        let (items, next) = ui.config.engine.list_containers(
            &account,
            q.prefix.as_deref().unwrap_or(""),
            q.marker.as_deref().unwrap_or(""),
            PAGE,
        )?;
        let items: Vec<_> = items
            .iter()
            .map(|c| json!({"name": c.name, "lastModified": c.last_modified * 1000}))
            .collect();
        Ok(json!({"account": account, "items": items, "next": next}))
    })
    .await?;
    json(&v)
}

/// `DELETE /ui/api/storage/containers/{container}`.
pub(crate) async fn delete_container(
    State(ui): State<Arc<Ui>>,
    p: Principal,
    Path(container): Path<String>,
) -> UiResult<Response> {
    let account = account(&p)?;
    blocking(move || {
        Ok(ui
            .config
            .engine
            .delete_container(&account, &container, &Conditions::default())?)
    })
    .await?;
    json(&json!({"deleted": true}))
}

/// `GET /ui/api/storage/containers/{container}/blobs?prefix=&marker=`.
pub(crate) async fn list_blobs(
    State(ui): State<Arc<Ui>>,
    p: Principal,
    Path(container): Path<String>,
    Query(q): Query<ListQuery>,
) -> UiResult<Response> {
    let account = account(&p)?;
    let v = blocking(move || {
        let (items, next) = ui.config.engine.list_blobs(
            &account,
            &container,
            q.prefix.as_deref().unwrap_or(""),
            None,
            q.marker.as_deref().unwrap_or(""),
            PAGE,
        )?;
        let items: Vec<_> = items
            .iter()
            .filter_map(|i| match i {
                ListItem::Blob(b) => Some(json!({
                    "name": b.name,
                    "size": b.size,
                    "lastModified": b.last_modified * 1000,
                    "contentType": b.headers.content_type,
                    "blobType": b.blob_type.as_str(),
                })),
                ListItem::Prefix(_) => None,
            })
            .collect();
        Ok(json!({"items": items, "next": next}))
    })
    .await?;
    json(&v)
}

/// A file name for `Content-Disposition`: the blob name's last segment, in safe ASCII.
pub(crate) fn download_name(blob: &str) -> String {
    let last = blob.rsplit('/').next().unwrap_or(blob);
    let name: String = last
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.+".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if name.is_empty() { "blob".into() } else { name }
}

/// `GET /ui/api/storage/containers/{container}/blobs/{blob}`: the blob's bytes, streamed.
pub(crate) async fn download_blob(
    State(ui): State<Arc<Ui>>,
    p: Principal,
    Path((container, blob)): Path<(String, String)>,
) -> UiResult<Response> {
    let account = account(&p)?;
    let name = download_name(&blob);
    let (props, reader) = blocking(move || {
        Ok(ui
            .config
            .engine
            .open_blob(&account, &container, &blob, |props| {
                Ok(props.size.checked_sub(1).map(|last| (0, last)))
            })?)
    })
    .await?;
    let body = match reader.as_inline() {
        Some(bytes) => Body::from(bytes),
        None => Body::from_stream(reader.into_stream()),
    };
    let content_type = props
        .headers
        .content_type
        .as_deref()
        .and_then(|t| HeaderValue::from_str(t).ok())
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    Response::builder()
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CONTENT_LENGTH, props.size)
        .header(
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{name}\""),
        )
        .header(header::CACHE_CONTROL, "no-store")
        .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff")
        .body(body)
        .map_err(UiError::internal)
}

/// `DELETE /ui/api/storage/containers/{container}/blobs/{blob}`.
pub(crate) async fn delete_blob(
    State(ui): State<Arc<Ui>>,
    p: Principal,
    Path((container, blob)): Path<(String, String)>,
) -> UiResult<Response> {
    let account = account(&p)?;
    blocking(move || {
        Ok(ui
            .config
            .engine
            .delete_blob(&account, &container, &blob, &Conditions::default())?)
    })
    .await?;
    json(&json!({"deleted": true}))
}
