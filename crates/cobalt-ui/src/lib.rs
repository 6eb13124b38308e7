//! The web dashboard, served by `cobalt serve` at `/ui/` on the Batch port: pools and their
//! node heat map, jobs and their task timeline, paged task lists, a task's live stdout/stderr,
//! and the blob containers of a storage account.
//!
//! Owns: the embedded pages (`assets/`, plain HTML/CSS/JS modules compiled into the binary,
//! no front-end build step), the JSON endpoints under `/ui/api/` they read, the change stream
//! (`/ui/api/events`, server-sent events driven by [`cobalt_batch::Batch::generation`]) and
//! the dashboard's login: loopback requests need none, other hosts log in with a Batch account
//! key and get an HMAC-signed, HttpOnly session cookie ([`auth`]).
//!
//! Must not do: SQL or state rules (it reads and deletes through `cobalt_batch::Batch` and
//! `cobalt_blob::engine::Engine`, on blocking threads), the Azure wire formats (the API
//! crates'), or load a whole task list: tasks are read a keyset page at a time.

pub mod auth;
mod batch;
mod error;
mod events;
mod static_files;
mod storage;

use std::sync::Arc;

use axum::Router;
use axum::routing::{delete, get, post};
use cobalt_batch::Batch;
use cobalt_batch_api::NodeAgents;
use cobalt_blob::Engine;
use cobalt_model::{AccountKey, Accounts};
use tokio::sync::watch;

pub use auth::{Principal, SESSION_COOKIE, guard};
pub use error::{UiError, UiResult};

/// What the dashboard reads from.
#[derive(Clone, Debug)]
pub struct UiConfig {
    /// The Batch control plane.
    pub batch: Arc<Batch>,
    /// The Batch accounts (the first one is shown by default).
    pub batch_accounts: Accounts,
    /// Task and node files, through the node agents (None: files are unavailable).
    pub files: Option<Arc<dyn NodeAgents>>,
    /// The blob storage engine.
    pub engine: Arc<Engine>,
    /// The storage accounts.
    pub storage_accounts: Accounts,
    /// The storage account shown by default.
    pub default_storage: String,
    /// Turns true at shutdown: event streams end so the server can drain.
    pub stop: watch::Receiver<bool>,
}

/// The dashboard's state.
#[derive(Debug)]
pub struct Ui {
    config: UiConfig,
    /// Signs session cookies; new for every process, so a restart logs remote users out.
    secret: AccountKey,
}

impl Ui {
    /// The dashboard over `config`.
    pub fn new(config: UiConfig) -> Self {
        use base64::Engine as _;
        let bytes: [u8; 32] = rand::random();
        let encoded = base64::engine::general_purpose::STANDARD.encode(bytes);
        let secret = AccountKey::from_base64("ui", &encoded)
            .unwrap_or_else(|_| unreachable!("freshly encoded base64 decodes"));
        Self { config, secret }
    }

    /// The Batch account shown when none is chosen.
    pub fn default_batch_account(&self) -> Option<&str> {
        self.config.batch_accounts.names().next()
    }
}

/// The dashboard's routes, to merge into the Batch listener's router.
pub fn router(ui: Arc<Ui>) -> Router {
    use batch as b;
    use storage as s;
    Router::new()
        .route("/ui", get(static_files::redirect))
        .route("/ui/", get(static_files::index))
        .route("/ui/assets/{file}", get(static_files::asset))
        .route("/ui/api/session", get(auth::session))
        .route("/ui/api/login", post(auth::login))
        .route("/ui/api/logout", post(auth::logout))
        .route("/ui/api/events", get(events::events))
        .route("/ui/api/pools", get(b::list_pools))
        .route("/ui/api/pools/{pool}", get(b::get_pool))
        .route("/ui/api/pools/{pool}/nodes", get(b::list_nodes))
        .route("/ui/api/pools/{pool}/nodes/{node}", get(b::get_node))
        .route(
            "/ui/api/pools/{pool}/nodes/{node}/files/{*path}",
            get(b::node_file),
        )
        .route("/ui/api/jobs", get(b::list_jobs))
        .route("/ui/api/jobs/{job}", get(b::get_job))
        .route("/ui/api/jobs/{job}/timeline", get(b::timeline))
        .route("/ui/api/jobs/{job}/tasks", get(b::list_tasks))
        .route("/ui/api/jobs/{job}/tasks/{task}", get(b::get_task))
        .route("/ui/api/jobs/{job}/tasks/{task}/files", get(b::task_files))
        .route(
            "/ui/api/jobs/{job}/tasks/{task}/files/{*path}",
            get(b::task_file),
        )
        .route("/ui/api/storage/containers", get(s::list_containers))
        .route(
            "/ui/api/storage/containers/{container}",
            delete(s::delete_container),
        )
        .route(
            "/ui/api/storage/containers/{container}/blobs",
            get(s::list_blobs),
        )
        .route(
            "/ui/api/storage/containers/{container}/blobs/{*blob}",
            get(s::download_blob).delete(s::delete_blob),
        )
        .route("/ui/api/{*rest}", get(not_found).post(not_found))
        .with_state(ui)
}

async fn not_found() -> UiError {
    UiError::NotFound("No dashboard endpoint at this address.".into())
}

#[cfg(test)]
mod tests;
