//! The request pipeline: address → operation → authentication → handler → common headers.
//! Every request passes through [`handle`], in that order, and every error is rendered by
//! `StorageError::into_response` there.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::response::Response;
use futures_util::FutureExt;
use http::{HeaderMap, HeaderValue, Method};

use crate::auth::{self, AuthRequest, Principal, sas::Sas};
use crate::engine::{Engine, EngineError};
use crate::error::{ErrorCode, StorageError, StorageResult};
use crate::handlers;
use crate::headers;
use crate::request::{Operation, Query, Target, parse_target};
use cobalt_model::Accounts;

/// The version reported when a request names none.
pub const DEFAULT_VERSION: &str = "2026-10-06";

/// The blob service: its accounts and its storage engine.
#[derive(Debug)]
pub struct BlobService {
    /// The storage engine.
    pub engine: Arc<Engine>,
    /// Known accounts and their keys.
    pub accounts: Accounts,
    /// The account of requests whose path names none (the legacy SDK's follow-up GETs).
    pub default_account: String,
}

/// Everything a handler knows about its request, besides the body.
pub(crate) struct Ctx {
    pub svc: Arc<BlobService>,
    pub method: Method,
    pub headers: HeaderMap,
    pub query: Query,
    pub target: Target,
    pub principal: Principal,
    pub base_url: String,
    pub remote_ip: std::net::IpAddr,
}

impl Ctx {
    pub fn account(&self) -> String {
        self.target.account.clone()
    }
    pub fn container(&self) -> String {
        self.target.container.clone().unwrap_or_default()
    }
    pub fn blob(&self) -> String {
        self.target.blob.clone().unwrap_or_default()
    }
    /// Whether a SAS allows creating but not overwriting.
    pub fn create_only(&self) -> bool {
        matches!(&self.principal, Principal::Sas(g) if g.create_only)
    }
    /// Runs engine work on a blocking thread.
    pub async fn engine<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Engine) -> Result<T, EngineError> + Send + 'static,
    ) -> StorageResult<T> {
        let engine = Arc::clone(&self.svc.engine);
        tokio::task::spawn_blocking(move || f(&engine))
            .await
            .map_err(StorageError::internal)?
            .map_err(StorageError::from)
    }
}

impl From<EngineError> for StorageError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::ContainerNotFound => ErrorCode::ContainerNotFound.into(),
            EngineError::ContainerAlreadyExists => ErrorCode::ContainerAlreadyExists.into(),
            EngineError::BlobNotFound => ErrorCode::BlobNotFound.into(),
            EngineError::BlobAlreadyExists => ErrorCode::BlobAlreadyExists.into(),
            EngineError::CreateOnly => ErrorCode::AuthorizationPermissionMismatch.into(),
            EngineError::ConditionNotMet => ErrorCode::ConditionNotMet.into(),
            EngineError::NotModified => ErrorCode::ConditionNotMetRead.into(),
            EngineError::InvalidBlockList(_) => ErrorCode::InvalidBlockList.into(),
            EngineError::BlockCountExceedsLimit => ErrorCode::BlockCountExceedsLimit.into(),
            EngineError::InvalidBlobType => ErrorCode::InvalidBlobType.into(),
            EngineError::AppendPositionConditionNotMet => ErrorCode::AppendPositionConditionNotMet.into(),
            EngineError::MaxBlobSizeConditionNotMet => ErrorCode::MaxBlobSizeConditionNotMet.into(),
            EngineError::BlockIdLength => StorageError::new(ErrorCode::InvalidBlobOrBlock)
                .with_message("The specified blob or block content is invalid. Block ids of a blob must all have the same length."),
            EngineError::InvalidRange(size) => StorageError::new(ErrorCode::InvalidRange)
                .with_header(http::header::CONTENT_RANGE, &format!("bytes */{size}")),
            EngineError::Body(cause) => {
                tracing::debug!(%cause, "request body failed");
                StorageError::new(ErrorCode::InvalidInput).with_message(format!("The request body could not be read: {cause}"))
            }
            e @ (EngineError::Io(_) | EngineError::Db(_) | EngineError::DirectoryInUse(_)) => StorageError::internal(e),
        }
    }
}

fn valid_version(v: &str) -> bool {
    let b = v.as_bytes();
    b.len() == 10
        && b.iter().enumerate().all(|(i, c)| {
            if i == 4 || i == 7 {
                *c == b'-'
            } else {
                c.is_ascii_digit()
            }
        })
}

/// The account named by a production-style host (`account.blob.localhost:10000`), if any.
fn host_account<'a>(headers: &'a HeaderMap, svc: &BlobService) -> Option<&'a str> {
    account_from_host(headers::get(headers, "host")?, svc)
}

/// The account named by the first label of a host name (`account.blob.localhost[:port]`);
/// `None` for IP addresses and single-label hosts (path-style addressing).
pub(crate) fn account_from_host<'a>(host: &'a str, svc: &BlobService) -> Option<&'a str> {
    let host = host.rsplit_once(':').map_or(host, |(h, port)| {
        if port.bytes().all(|b| b.is_ascii_digit()) {
            h
        } else {
            host
        }
    });
    if host.parse::<std::net::IpAddr>().is_ok() || host.starts_with('[') || !host.contains('.') {
        return None;
    }
    let label = host.split('.').next()?;
    svc.accounts.get(label).map(|_| label)
}

/// The single entry point of every blob request.
pub async fn handle(
    State(svc): State<Arc<BlobService>>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    let request_id = uuid::Uuid::new_v4().to_string();
    let method = req.method().clone();
    let version = headers::get(req.headers(), "x-ms-version").map(str::to_owned);
    let client_request_id = req.headers().get("x-ms-client-request-id").cloned();
    let started = std::time::Instant::now();
    let path = req.uri().path().to_owned();
    // A bug in a handler must cost one request a 500, never the connection or the process.
    let outcome = std::panic::AssertUnwindSafe(run(svc, remote, req))
        .catch_unwind()
        .await;
    let (result, op) = outcome.unwrap_or_else(|panic| {
        let cause = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        (
            Err(StorageError::internal(format!("handler panicked: {cause}"))),
            None,
        )
    });
    let mut response = match result {
        Ok(r) => r,
        Err(e) => e.into_response(&method, &request_id),
    };
    tracing::debug!(
        %method, path, op = ?op, status = response.status().as_u16(),
        ms = started.elapsed().as_secs_f64() * 1000.0, "blob request"
    );
    let h = response.headers_mut();
    let version = version
        .filter(|v| valid_version(v))
        .unwrap_or_else(|| DEFAULT_VERSION.to_owned());
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        h.insert("x-ms-request-id", v);
    }
    if let Ok(v) = HeaderValue::from_str(&version) {
        h.insert("x-ms-version", v);
    }
    if let Some(v) = client_request_id {
        h.insert("x-ms-client-request-id", v);
    }
    if let Ok(v) = HeaderValue::from_str(&httpdate::fmt_http_date(std::time::SystemTime::now())) {
        h.insert(http::header::DATE, v);
    }
    h.insert(
        http::header::SERVER,
        HeaderValue::from_static(concat!("Cobalt-Blob/", env!("CARGO_PKG_VERSION"))),
    );
    response
}

async fn run(
    svc: Arc<BlobService>,
    remote: SocketAddr,
    req: Request,
) -> (StorageResult<Response>, Option<Operation>) {
    let (parts, body) = req.into_parts();
    let prepared = prepare(&svc, remote, &parts).await;
    match prepared {
        Ok((ctx, op)) => (handlers::dispatch(op, ctx, body).await, Some(op)),
        Err(e) => (Err(e), None),
    }
}

async fn prepare(
    svc: &Arc<BlobService>,
    remote: SocketAddr,
    parts: &http::request::Parts,
) -> StorageResult<(Ctx, Operation)> {
    if let Some(v) = headers::get(&parts.headers, "x-ms-version")
        && !valid_version(v)
    {
        return Err(StorageError::bad_header("x-ms-version", v));
    }
    let raw_path = parts.uri.path();
    let query = Query::parse(parts.uri.query())?;
    let target = parse_target(
        raw_path,
        host_account(&parts.headers, svc),
        &svc.default_account,
        |a| svc.accounts.get(a).is_some(),
    )?;
    let op = Operation::resolve(&parts.method, &target, &query, &parts.headers)?;
    let account = svc
        .accounts
        .get(&target.account)
        .ok_or_else(|| StorageError::new(ErrorCode::ResourceNotFound))?;
    let auth_req = AuthRequest {
        method: &parts.method,
        headers: &parts.headers,
        raw_path,
        query: &query,
        target: &target,
        operation: op,
        remote_ip: remote.ip(),
    };
    let principal = if let Some(authorization) = headers::get(&parts.headers, "authorization") {
        auth::verify_shared_key(&auth_req, account, authorization)?
    } else if let Some(sas) = Sas::from_query(&query) {
        let policy = match (&target.container, sas.identifier.is_empty()) {
            (Some(container), false) => find_container(&svc.engine, &target.account, container)
                .await?
                .and_then(|c| c.identifiers.into_iter().find(|i| i.id == sas.identifier)),
            _ => None,
        };
        auth::verify_sas(&auth_req, account, &sas, policy.as_ref())?
    } else {
        let public = match &target.container {
            Some(container) => find_container(&svc.engine, &target.account, container)
                .await?
                .and_then(|c| c.public_access),
            None => None,
        };
        if !op.allowed_anonymously(public) {
            return Err(StorageError::new(ErrorCode::ResourceNotFound));
        }
        Principal::Anonymous
    };
    let host = headers::get(&parts.headers, "host").unwrap_or("127.0.0.1");
    let base_url = if host_account(&parts.headers, svc).is_some() {
        format!("http://{host}/")
    } else {
        format!("http://{host}/{}/", target.account)
    };
    let ctx = Ctx {
        svc: Arc::clone(svc),
        method: parts.method.clone(),
        headers: parts.headers.clone(),
        query,
        target,
        principal,
        base_url,
        remote_ip: remote.ip(),
    };
    Ok((ctx, op))
}

/// A container's stored state, or `None` when it does not exist.
pub(crate) async fn find_container(
    engine: &Arc<Engine>,
    account: &str,
    container: &str,
) -> StorageResult<Option<crate::engine::Container>> {
    let (engine, a, c) = (Arc::clone(engine), account.to_owned(), container.to_owned());
    match tokio::task::spawn_blocking(move || engine.container(&a, &c))
        .await
        .map_err(StorageError::internal)?
    {
        Ok(c) => Ok(Some(c)),
        Err(EngineError::ContainerNotFound) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Reads a small body (XML) up to `limit` bytes.
pub(crate) async fn small_body(body: Body, limit: usize) -> StorageResult<bytes::Bytes> {
    use http_body_util::BodyExt;
    match http_body_util::Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(StorageError::new(ErrorCode::RequestBodyTooLarge)
                .with_detail("MaxLimit", limit.to_string()))
        }
        Err(e) => Err(StorageError::new(ErrorCode::InvalidInput)
            .with_message(format!("The request body could not be read: {e}"))),
    }
}
