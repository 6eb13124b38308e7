//! The request pipeline: authentication → api-version → operation → common headers. Every
//! request passes through [`handle`]; every error is rendered by `BatchError::into_response`.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use http::{HeaderValue, Method, StatusCode, header};
use percent_encoding::percent_decode_str;
use serde_json::{Value, json};

use crate::account;
use crate::auth::{self, AuthError, SignedRequest};
use crate::error::{BatchError, BatchResult, ErrorCode};
use crate::version::ApiVersion;
use cobalt_model::Accounts;

/// Largest page a list returns, and the default.
const MAX_RESULTS: usize = 1000;

/// The Batch service: its accounts (state and operations grow with the Batch issues).
#[derive(Debug)]
pub struct BatchService {
    /// Known Batch accounts and their keys.
    pub accounts: Accounts,
}

/// The axum router serving every Batch request.
pub fn router(service: Arc<BatchService>) -> axum::Router {
    axum::Router::new().fallback(handle).with_state(service)
}

struct Ctx {
    method: Method,
    path: String,
    query: Vec<(String, String)>,
    version: ApiVersion,
    base_url: String,
}

impl Ctx {
    fn query(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
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
        .unwrap_or("127.0.0.1");
    let base_url = format!("http://{host}");
    let client_request_id = req
        .headers()
        .get("client-request-id")
        .or_else(|| req.headers().get("x-ms-client-request-id"))
        .cloned();
    let mut response = match run(&svc, &req, &base_url) {
        Ok(r) => r,
        Err(e) => e.into_response(&method, &base_url, &request_id),
    };
    tracing::debug!(%method, path = req.uri().path(), status = response.status().as_u16(), "batch request");
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

fn run(svc: &BatchService, req: &Request, base_url: &str) -> BatchResult<Response> {
    let signed = SignedRequest {
        method: req.method(),
        headers: req.headers(),
        raw_path: req.uri().path(),
        raw_query: req.uri().query(),
    };
    authenticate(svc, &signed)?;
    let query: Vec<(String, String)> = req
        .uri()
        .query()
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (n, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(n), decode(v))
        })
        .collect();
    let version = ApiVersion::parse(
        query
            .iter()
            .find(|(n, _)| n == "api-version")
            .map(|(_, v)| v.as_str()),
    )?;
    let ctx = Ctx {
        method: req.method().clone(),
        path: req.uri().path().trim_end_matches('/').to_owned(),
        query,
        version,
        base_url: base_url.to_owned(),
    };
    dispatch(&ctx)
}

fn authenticate(svc: &BatchService, req: &SignedRequest<'_>) -> BatchResult<()> {
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
            let missing = req.headers.contains_key(header::AUTHORIZATION);
            return Err(failed(if missing {
                AuthError::Malformed
            } else {
                AuthError::Missing
            }));
        }
    };
    auth::verify(req, account, chrono::Utc::now()).map_err(failed)
}

/// The operations this increment serves; the rest of the Batch surface answers 501 until built.
fn dispatch(ctx: &Ctx) -> BatchResult<Response> {
    let segments: Vec<&str> = ctx.path.trim_start_matches('/').split('/').collect();
    match (segments.as_slice(), &ctx.method) {
        (["supportedimages"], &Method::GET) => {
            list(ctx, "supportedimages", account::supported_images())
        }
        (["nodeagentskus"], &Method::GET) => list(ctx, "nodeagentskus", account::node_agent_skus()),
        // No pool can exist yet (pools arrive with the Batch service issue), so no pool has nodes.
        (["nodecounts"], &Method::GET) => list(ctx, "nodecounts", Vec::new()),
        (["supportedimages" | "nodeagentskus" | "nodecounts"], _) => {
            Err(ErrorCode::UnsupportedHttpVerb.into())
        }
        (
            [
                "pools" | "jobs" | "jobschedules" | "certificates" | "applications"
                | "poolusagemetrics" | "lifetimejobstats" | "lifetimepoolstats",
                ..,
            ],
            _,
        ) => Err(
            BatchError::new(ErrorCode::NotImplemented).with_message(format!(
                "Cobalt does not implement {} {} yet.",
                ctx.method, ctx.path
            )),
        ),
        _ => Err(ErrorCode::InvalidUri.into()),
    }
}

/// A list response page: `maxresults` items from `$skiptoken` on, with an absolute
/// `odata.nextLink` carrying the api-version (the Python SDKs GET it verbatim).
fn list(ctx: &Ctx, kind: &str, items: Vec<Value>) -> BatchResult<Response> {
    let max = match ctx.query("maxresults") {
        None => MAX_RESULTS,
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_RESULTS).contains(n))
            .ok_or_else(|| {
                BatchError::new(ErrorCode::InvalidQueryParameterValue)
                    .with_value("QueryParameterName", "maxresults")
                    .with_value("QueryParameterValue", v)
            })?,
    };
    if ctx.query("$filter").is_some() {
        return Err(BatchError::new(ErrorCode::NotImplemented)
            .with_message(format!("Cobalt does not implement $filter on {kind} yet.")));
    }
    let skip = match ctx.query("$skiptoken") {
        None => 0,
        Some(v) => v.parse::<usize>().map_err(|_| {
            BatchError::new(ErrorCode::InvalidQueryParameterValue)
                .with_value("QueryParameterName", "$skiptoken")
                .with_value("QueryParameterValue", v)
        })?,
    };
    let page: Vec<Value> = items.iter().skip(skip).take(max).cloned().collect();
    let mut body = json!({
        "odata.metadata": format!("{}/$metadata#{kind}", ctx.base_url),
        "value": page,
    });
    if skip + max < items.len() {
        body["odata.nextLink"] = json!(format!(
            "{}{}?api-version={}&maxresults={max}&$skiptoken={}",
            ctx.base_url,
            ctx.path,
            ctx.version.as_str(),
            skip + max
        ));
    }
    Response::builder()
        .status(StatusCode::OK)
        .header(
            header::CONTENT_TYPE,
            "application/json;odata=minimalmetadata",
        )
        .body(Body::from(body.to_string()))
        .map_err(|e| {
            tracing::error!(error = %e, "cannot build response");
            BatchError::new(ErrorCode::InternalError)
        })
}
