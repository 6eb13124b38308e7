//! The request pipeline: authentication → api-version → query options and conditions → body →
//! operation (on a blocking thread, since the control plane writes to disk synchronously) →
//! common headers. Every error is rendered by [`crate::error::render`].

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::response::Response;
use cobalt_batch::{Batch, Conditions, Page, PageRequest};
use cobalt_model::Accounts;
use cobalt_model::batch::Timestamp;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use http_body_util::BodyExt;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use serde::Serialize;
use serde_json::{Value, json};

use crate::auth::{self, AuthError, SignedRequest};
use crate::dto;
use crate::error::{BatchError, BatchResult, ErrorCode, render};
use crate::odata::{Filter, ListKind, ODataError, Select, parse_expand};
use crate::routes;
use crate::version::ApiVersion;

/// Largest page a list returns, and the default.
const MAX_RESULTS: usize = 1000;
/// Largest request body accepted.
pub(crate) const MAX_BODY: usize = 4 << 20;

/// The Batch service: its accounts and the control plane.
#[derive(Debug)]
pub struct BatchService {
    /// Known Batch accounts and their keys.
    pub accounts: Accounts,
    /// The control plane.
    pub batch: Arc<Batch>,
    /// Files on nodes (None: no node can be reached).
    pub files: Option<Arc<dyn crate::files::NodeAgents>>,
}

/// The axum router serving every Batch request.
pub fn router(service: Arc<BatchService>) -> axum::Router {
    axum::Router::new().fallback(handle).with_state(service)
}

/// A request past authentication, as the operations see it.
#[derive(Debug)]
pub(crate) struct Req {
    pub method: Method,
    /// Path segments, percent-decoded.
    pub segments: Vec<String>,
    pub raw_path: String,
    pub query: Vec<(String, String)>,
    pub version: ApiVersion,
    pub base_url: String,
    pub account: String,
    pub cond: Conditions,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Req {
    pub fn query(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON in the current schema; `required` makes an empty body an error.
    pub fn json(&self, required: bool) -> BatchResult<Value> {
        if self.body.iter().all(u8::is_ascii_whitespace) {
            return if required {
                Err(BatchError::new(ErrorCode::InvalidRequestBody)
                    .with_message("The request body is missing."))
            } else {
                Ok(Value::Null)
            };
        }
        let mut value: Value = serde_json::from_slice(&self.body).map_err(|e| {
            BatchError::new(ErrorCode::InvalidRequestBody).with_value("Reason", e.to_string())
        })?;
        dto::inbound(self.version, &mut value);
        Ok(value)
    }

    /// A header's value, if it is text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }

    /// The URL of an entity path such as `/pools/p1`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }
}

fn decode(s: &str) -> String {
    percent_decode_str(s).decode_utf8_lossy().into_owned()
}

async fn handle(State(svc): State<Arc<BatchService>>, req: Request) -> Response {
    let request_id = uuid::Uuid::new_v4().to_string();
    let method = req.method().clone();
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("127.0.0.1")
        .to_owned();
    let base_url = format!("http://{host}");
    let client_request_id = req
        .headers()
        .get("client-request-id")
        .or_else(|| req.headers().get("x-ms-client-request-id"))
        .cloned();
    let path = req.uri().path().to_owned();
    let mut response = match run(svc, req, &base_url).await {
        Ok(r) => r,
        Err(e) => render(e, &method, &base_url, &request_id),
    };
    tracing::debug!(%method, path, status = response.status().as_u16(), "batch request");
    let h = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        h.insert("request-id", v);
    }
    if let Some(v) = client_request_id {
        h.insert("client-request-id", v);
    }
    h.insert("dataserviceversion", HeaderValue::from_static("3.0"));
    response
}

async fn run(svc: Arc<BatchService>, req: Request, base_url: &str) -> BatchResult<Response> {
    let (parts, body) = req.into_parts();
    let account = authenticate(
        &svc,
        &SignedRequest {
            method: &parts.method,
            headers: &parts.headers,
            raw_path: parts.uri.path(),
            raw_query: parts.uri.query(),
        },
    )?;
    let query: Vec<(String, String)> = parts
        .uri
        .query()
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (n, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(n), decode(&v.replace('+', " ")))
        })
        .collect();
    let version = ApiVersion::parse(
        query
            .iter()
            .find(|(n, _)| n == "api-version")
            .map(|(_, v)| v.as_str()),
    )?;
    let raw_path = parts.uri.path().trim_end_matches('/').to_owned();
    let segments = raw_path
        .trim_start_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .map(decode)
        .collect();
    let cond = conditions(&parts.headers)?;
    let body = read_body(body).await?;
    let req = Req {
        method: parts.method,
        segments,
        raw_path,
        query,
        version,
        base_url: base_url.to_owned(),
        account,
        cond,
        headers: parts.headers,
        body,
    };
    tokio::task::spawn_blocking(move || routes::dispatch(&svc, &req))
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "Batch operation panicked");
            BatchError::new(ErrorCode::InternalError)
        })?
}

async fn read_body(body: Body) -> BatchResult<Bytes> {
    let limited = http_body_util::Limited::new(body, MAX_BODY);
    match limited.collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            Err(BatchError::new(ErrorCode::RequestBodyTooLarge)
                .with_value("MaxLimit", MAX_BODY.to_string()))
        }
        Err(e) => Err(BatchError::new(ErrorCode::InvalidRequestBody)
            .with_message(format!("The request body could not be read: {e}"))),
    }
}

fn conditions(headers: &HeaderMap) -> BatchResult<Conditions> {
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let date = |name: &str| -> BatchResult<Option<chrono::DateTime<chrono::Utc>>> {
        match text(name) {
            None => Ok(None),
            Some(v) => httpdate::parse_http_date(&v)
                .map(|t| Some(chrono::DateTime::<chrono::Utc>::from(t)))
                .map_err(|_| {
                    BatchError::new(ErrorCode::InvalidHeaderValue)
                        .with_value("HeaderName", name)
                        .with_value("HeaderValue", v)
                }),
        }
    };
    Ok(Conditions {
        if_match: text("if-match"),
        if_none_match: text("if-none-match"),
        if_modified_since: date("if-modified-since")?,
        if_unmodified_since: date("if-unmodified-since")?,
    })
}

fn authenticate(svc: &BatchService, req: &SignedRequest<'_>) -> BatchResult<String> {
    let failed = |e: AuthError| {
        BatchError::new(ErrorCode::AuthenticationFailed)
            .with_value("AuthenticationErrorDetail", e.to_string())
    };
    let name = req
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|a| a.trim().strip_prefix("SharedKey "))
        .and_then(|c| c.rsplit_once(':'))
        .map(|(name, _)| name.trim());
    let account = match name {
        Some(name) => svc
            .accounts
            .get(name)
            .ok_or_else(|| failed(AuthError::WrongAccount(name.to_owned())))?,
        None => {
            let present = req.headers.contains_key(header::AUTHORIZATION);
            return Err(failed(if present {
                AuthError::Malformed
            } else {
                AuthError::Missing
            }));
        }
    };
    auth::verify(req, account, chrono::Utc::now()).map_err(failed)?;
    Ok(account.name.clone())
}

// ---------------------------------------------------------------------------------------------
// Responses
// ---------------------------------------------------------------------------------------------

fn internal(e: impl std::fmt::Display) -> BatchError {
    tracing::error!(error = %e, "cannot build response");
    BatchError::new(ErrorCode::InternalError)
}

/// A response with `status`, extra `headers` and an optional JSON body.
pub(crate) fn respond(
    status: StatusCode,
    headers: &[(&str, String)],
    body: Option<&Value>,
) -> BatchResult<Response> {
    let mut builder = Response::builder().status(status);
    for (name, value) in headers {
        builder = builder.header(*name, value);
    }
    let body = match body {
        Some(v) => {
            builder = builder.header(
                header::CONTENT_TYPE,
                "application/json;odata=minimalmetadata",
            );
            Body::from(v.to_string())
        }
        None => Body::empty(),
    };
    builder.body(body).map_err(internal)
}

/// ETag, Last-Modified (RFC 1123) and DataServiceId of an entity.
pub(crate) fn entity_headers(
    etag: &str,
    modified: Timestamp,
    url: &str,
) -> Vec<(&'static str, String)> {
    vec![
        ("etag", etag.to_owned()),
        ("last-modified", modified.rfc1123()),
        ("dataserviceid", url.to_owned()),
    ]
}

/// The wire JSON of an entity: its current-schema form with `url` set.
pub(crate) fn to_json<T: Serialize>(entity: &T, url: &str) -> BatchResult<Value> {
    let mut v = serde_json::to_value(entity).map_err(internal)?;
    if let Value::Object(map) = &mut v {
        map.insert("url".to_owned(), Value::String(url.to_owned()));
    }
    Ok(v)
}

/// 200 with one entity, in the caller's schema and `$select`ion.
pub(crate) fn entity(
    req: &Req,
    mut value: Value,
    etag: &str,
    modified: Timestamp,
    url: &str,
) -> BatchResult<Response> {
    let headers = entity_headers(etag, modified, url);
    if req.method == Method::HEAD {
        return respond(StatusCode::OK, &headers, None);
    }
    dto::outbound(req.version, &mut value);
    if let Some(select) = req.query("$select") {
        value = Select::parse(select).map_err(odata_error)?.apply(value);
    }
    respond(StatusCode::OK, &headers, Some(&value))
}

/// Whether the request asks for `stats`: `$expand=stats`, or `stats` in `$select`.
pub(crate) fn wants_stats(req: &Req) -> BatchResult<bool> {
    let expand = match req.query("$expand") {
        Some(e) => parse_expand(e).map_err(odata_error)?,
        None => false,
    };
    let selected = match req.query("$select") {
        Some(s) => Select::parse(s).map_err(odata_error)?.includes("stats"),
        None => false,
    };
    Ok(expand || selected)
}

/// Sets `value["stats"]` to `stats` with its `url`.
pub(crate) fn with_stats<T: Serialize>(value: &mut Value, stats: &T, url: &str) -> BatchResult<()> {
    let mut s = serde_json::to_value(stats).map_err(internal)?;
    s["url"] = Value::String(format!("{url}/stats"));
    value["stats"] = s;
    Ok(())
}

pub(crate) fn odata_error(e: ODataError) -> BatchError {
    let mut error = BatchError::new(ErrorCode::InvalidQueryParameterValue);
    for (k, v) in e.values() {
        error = error.with_value(k, v);
    }
    error
}

// ---------------------------------------------------------------------------------------------
// Lists
// ---------------------------------------------------------------------------------------------

/// The query options of a list: page, `$filter`, `$select`, `$expand`.
pub(crate) struct ListQuery {
    pub page: PageRequest,
    /// Whether `stats` are wanted (`$expand=stats`, or `stats` in `$select`).
    pub stats: bool,
    pub filter: Option<Filter>,
    pub select: Option<Select>,
    pub version: ApiVersion,
}

impl ListQuery {
    /// Parses the options of a list of `kind`; `indexed_state` pushes `state eq '…'` down.
    pub fn parse(req: &Req, kind: ListKind) -> BatchResult<Self> {
        let limit = match req.query("maxresults") {
            None => MAX_RESULTS,
            Some(v) => v
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=MAX_RESULTS).contains(n))
                .ok_or_else(|| {
                    BatchError::new(ErrorCode::InvalidQueryParameterValue)
                        .with_value("QueryParameterName", "maxresults")
                        .with_value("QueryParameterValue", v)
                        .with_value("Reason", "maxresults must be between 1 and 1000.")
                })?,
        };
        let filter = req
            .query("$filter")
            .filter(|f| !f.trim().is_empty())
            .map(|f| Filter::parse(f, kind))
            .transpose()
            .map_err(odata_error)?;
        let select = req
            .query("$select")
            .map(Select::parse)
            .transpose()
            .map_err(odata_error)?;
        let stats = wants_stats(req)?;
        let state = filter
            .as_ref()
            .and_then(|f| f.required_eq("state"))
            .map(str::to_ascii_lowercase);
        Ok(Self {
            page: PageRequest {
                after: req.query("$skiptoken").map(str::to_owned),
                limit,
                state,
            },
            stats,
            filter,
            select,
            version: req.version,
        })
    }

    /// Keeps `value` if the filter matches, in the caller's schema and selection.
    pub fn keep(&self, mut value: Value) -> Option<Value> {
        if self.filter.as_ref().is_some_and(|f| !f.matches(&value)) {
            return None;
        }
        dto::outbound(self.version, &mut value);
        Some(match &self.select {
            Some(s) => s.apply(value),
            None => value,
        })
    }
}

const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// The list response: `odata.metadata`, `value`, and an absolute `odata.nextLink` that carries
/// the api-version and the query options (the Python SDKs GET it verbatim).
pub(crate) fn list_response(req: &Req, kind: &str, page: Page<Value>) -> BatchResult<Response> {
    let mut body = json!({
        "odata.metadata": format!("{}/$metadata#{kind}", req.base_url),
        "value": page.items,
    });
    if let Some(next) = page.next {
        let mut link = format!(
            "{}{}?api-version={}",
            req.base_url,
            req.raw_path,
            req.version.as_str()
        );
        for (name, value) in &req.query {
            let skip = ["api-version", "$skiptoken", "timeout"]
                .iter()
                .any(|n| name.eq_ignore_ascii_case(n));
            if !skip {
                link.push_str(&format!(
                    "&{}={}",
                    utf8_percent_encode(name, QUERY_VALUE),
                    utf8_percent_encode(value, QUERY_VALUE)
                ));
            }
        }
        link.push_str(&format!(
            "&$skiptoken={}",
            utf8_percent_encode(&next, QUERY_VALUE)
        ));
        body["odata.nextLink"] = Value::String(link);
    }
    respond(StatusCode::OK, &[], Some(&body))
}

/// A page of a list computed in memory (catalogues, counts), with the offset as token.
pub(crate) fn static_page(
    req: &Req,
    kind: ListKind,
    items: Vec<Value>,
) -> BatchResult<Page<Value>> {
    let q = ListQuery::parse(req, kind)?;
    let skip = match &q.page.after {
        None => 0,
        Some(v) => v.parse::<usize>().map_err(|_| {
            BatchError::new(ErrorCode::InvalidQueryParameterValue)
                .with_value("QueryParameterName", "$skiptoken")
                .with_value("QueryParameterValue", v.clone())
        })?,
    };
    let kept: Vec<Value> = items.into_iter().filter_map(|v| q.keep(v)).collect();
    let end = skip.saturating_add(q.page.limit).min(kept.len());
    let next = (end < kept.len()).then(|| end.to_string());
    Ok(Page {
        items: kept.into_iter().skip(skip).take(q.page.limit).collect(),
        next,
    })
}
