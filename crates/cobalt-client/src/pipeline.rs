//! Sending a request: one shared HTTP connection pool, a fresh signature per attempt, and retries
//! with exponential backoff and jitter on throttling, server errors and broken connections.

use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::{self, BoxStream, StreamExt, TryStreamExt};

use rand::Rng;
use reqwest::{Method, Request, Response, StatusCode};

use crate::error::{Error, Result};

/// When and how often a failed request is tried again.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Retries after the first attempt (0 disables retrying).
    pub max_retries: u32,
    /// The wait before the first retry; it doubles with each retry.
    pub initial_delay: Duration,
    /// The longest wait between two attempts (also caps a `Retry-After`).
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// Four retries, 0.4 s doubling up to 30 s: the official SDKs' policy, roughly.
    fn default() -> Self {
        Self {
            max_retries: 4,
            initial_delay: Duration::from_millis(400),
            max_delay: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// A policy that never retries.
    pub fn none() -> Self {
        Self {
            max_retries: 0,
            ..Self::default()
        }
    }

    /// The wait before retry number `retry` (0-based): exponential, with ±25 % jitter so that
    /// clients throttled together do not come back together.
    fn delay(&self, retry: u32) -> Duration {
        let base = self
            .initial_delay
            .saturating_mul(2u32.saturating_pow(retry))
            .min(self.max_delay);
        let jitter = rand::rng().random_range(0.75..1.25);
        base.mul_f64(jitter).min(self.max_delay)
    }
}

/// Options shared by the Batch and Blob clients.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// Retries.
    pub retry: RetryPolicy,
    /// The limit for connecting.
    pub connect_timeout: Duration,
    /// The limit for one attempt of a request, body included (`None`: no limit; large
    /// downloads need it).
    pub request_timeout: Option<Duration>,
    /// The `User-Agent` sent.
    pub user_agent: String,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            retry: RetryPolicy::default(),
            connect_timeout: Duration::from_secs(10),
            request_timeout: None,
            user_agent: concat!("cobalt-client/", env!("CARGO_PKG_VERSION")).to_owned(),
        }
    }
}

/// The HTTP client and the retry policy.
#[derive(Debug)]
pub(crate) struct Pipeline {
    http: reqwest::Client,
    retry: RetryPolicy,
}

impl Pipeline {
    pub(crate) fn new(options: &ClientOptions) -> Result<Self> {
        let mut builder = reqwest::Client::builder()
            .user_agent(options.user_agent.clone())
            .connect_timeout(options.connect_timeout)
            .pool_max_idle_per_host(32);
        if let Some(timeout) = options.request_timeout {
            builder = builder.timeout(timeout);
        }
        let http = builder
            .build()
            .map_err(|e| Error::invalid(format!("cannot set up the HTTP client: {e}")))?;
        Ok(Self {
            http,
            retry: options.retry.clone(),
        })
    }

    /// Sends the request `build` makes (called again, so signed again, for every attempt) and
    /// returns the first response that is not worth retrying. Error statuses are returned as
    /// responses: the caller knows the error body's format.
    pub(crate) async fn send(&self, build: impl Fn() -> Result<Request>) -> Result<Response> {
        let mut retry = 0;
        loop {
            let request = build()?;
            let method = request.method().clone();
            let url = request.url().clone();
            let outcome = self.http.execute(request).await;
            let last = retry >= self.retry.max_retries;
            match outcome {
                Ok(response) if !last && retryable(&method, response.status()) => {
                    let wait = retry_after(&response)
                        .map_or_else(|| self.retry.delay(retry), |d| d.min(self.retry.max_delay));
                    tracing::debug!(%method, url = %crate::error::redact(&url), status = %response.status(), ?wait, "retrying");
                    tokio::time::sleep(wait).await;
                }
                Ok(response) => return Ok(response),
                Err(e) if !last && (e.is_connect() || e.is_timeout() || e.is_request()) => {
                    tracing::debug!(%method, url = %crate::error::redact(&url), error = %e, "retrying");
                    tokio::time::sleep(self.retry.delay(retry)).await;
                }
                Err(e) => return Err(Error::transport(&url, e)),
            }
            retry += 1;
        }
    }
}

/// Whether a response is worth another attempt: throttling and server trouble. A POST is not
/// idempotent, so it is retried only when the service cannot have acted on it (429, 503) or
/// says it failed as a whole (500, 504), as the Azure SDKs do.
fn retryable(method: &Method, status: StatusCode) -> bool {
    match status.as_u16() {
        429 | 500 | 503 | 504 => true,
        408 | 502 => method != Method::POST && method != Method::PATCH,
        _ => false,
    }
}

/// The service's `Retry-After`, in seconds.
fn retry_after(response: &Response) -> Option<Duration> {
    response
        .headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// A stream of items over pages: `fetch(marker)` returns a page and the next marker.
pub(crate) fn paged<T, F, Fut>(fetch: F) -> BoxStream<'static, Result<T>>
where
    T: Send + 'static,
    F: Fn(Option<String>) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(Vec<T>, Option<String>)>> + Send + 'static,
{
    let fetch = Arc::new(fetch);
    stream::try_unfold(Some(None), move |state: Option<Option<String>>| {
        let fetch = fetch.clone();
        async move {
            let Some(marker) = state else {
                return Ok(None);
            };
            let (items, next) = fetch(marker).await?;
            Ok(Some((items, next.map(Some))))
        }
    })
    .map_ok(|items: Vec<T>| stream::iter(items.into_iter().map(Ok)))
    .try_flatten()
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let policy = RetryPolicy {
            max_retries: 10,
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
        };
        let first = policy.delay(0);
        assert!(first >= Duration::from_millis(75) && first <= Duration::from_millis(125));
        let third = policy.delay(2);
        assert!(third >= Duration::from_millis(300) && third <= Duration::from_millis(500));
        assert!(policy.delay(30) <= Duration::from_secs(1));
    }

    #[test]
    fn what_is_retried() {
        assert!(retryable(&Method::GET, StatusCode::SERVICE_UNAVAILABLE));
        assert!(retryable(&Method::POST, StatusCode::TOO_MANY_REQUESTS));
        assert!(retryable(&Method::GET, StatusCode::BAD_GATEWAY));
        assert!(!retryable(&Method::POST, StatusCode::BAD_GATEWAY));
        assert!(!retryable(&Method::GET, StatusCode::NOT_FOUND));
        assert!(!retryable(&Method::PUT, StatusCode::CONFLICT));
    }
}
