//! Cobalt's blob service: an Azure Blob Storage-compatible REST API over a durable, streaming
//! storage engine.
//!
//! Owns: the Blob wire protocol (path-style addressing, operations, XML bodies, Storage error
//! XML), SharedKey/SAS/anonymous authorization, and the storage engine (metadata in SQLite,
//! bytes in extent files). Must not do: anything Batch-specific; other crates reach blobs
//! over HTTP like any client.
//!
//! Request flow: [`router`] → `service::handle` (address → [`request::Operation`] →
//! authentication → handler in `handlers/` → engine call on a blocking thread) → common
//! response headers. Errors render in one place (`StorageError::into_response`).

pub mod auth;
pub mod engine;
pub mod error;
mod handlers;
pub mod headers;
pub mod request;
mod service;
pub mod xml;

use std::sync::Arc;
use std::time::Duration;

pub use engine::{Engine, EngineConfig};
pub use service::{BlobService, DEFAULT_VERSION};

/// The axum router serving every blob request. Serve it with
/// `into_make_service_with_connect_info::<SocketAddr>()` (SAS `sip` checks need the peer).
pub fn router(service: Arc<BlobService>) -> axum::Router {
    axum::Router::new()
        .fallback(service::handle)
        .with_state(service)
}

/// Periodically drops uncommitted blocks older than the engine's TTL, until `shutdown`.
pub async fn run_gc(
    engine: Arc<Engine>,
    every: Duration,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        let e = Arc::clone(&engine);
        match tokio::task::spawn_blocking(move || e.sweep_uncommitted()).await {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => tracing::info!(blocks = n, "garbage-collected expired uncommitted blocks"),
            Ok(Err(e)) => tracing::warn!(error = %e, "uncommitted block sweep failed"),
            Err(e) => tracing::warn!(error = %e, "uncommitted block sweep panicked"),
        }
    }
}
