//! A typed async client for the Azure Batch and Azure Blob Storage REST APIs.
//!
//! It speaks the same wire protocol as the official SDKs, so it works against Cobalt (a
//! self-hosted Azure Batch with a built-in Blob service) and against Azure itself:
//!
//! - [`blob`]: containers and block blobs, with SharedKey, SAS or anonymous access; parallel
//!   block uploads and streaming downloads of files; SAS tokens for resource files.
//! - [`batch`]: pools, compute nodes, jobs, tasks (add-collection in chunks of 100), task and
//!   node files, with SharedKey authentication.
//!
//! Every call retries throttling (429), server errors (5xx) and broken connections with
//! exponential backoff ([`RetryPolicy`]), lists are [`Stream`](futures_util::Stream)s that
//! fetch pages as they are consumed, and a refusal is an [`Error::Service`] holding Azure's
//! error code, message and details.
//!
//! ```no_run
//! use cobalt_client::SharedKeyCredential;
//! use cobalt_client::batch::{BatchClient, ListOptions};
//! use cobalt_client::blob::BlobServiceClient;
//! use cobalt_model::batch::{PoolInformation, JobSpec};
//! use futures_util::TryStreamExt;
//!
//! # async fn demo() -> cobalt_client::Result<()> {
//! let key = cobalt_model::DEV_ACCOUNT_KEY;
//! let blobs = BlobServiceClient::from_connection_string("UseDevelopmentStorage=true")?;
//! blobs.container_client("input").create_if_not_exists().await?;
//!
//! let batch = BatchClient::new(
//!     "http://127.0.0.1:10100",
//!     SharedKeyCredential::new("devbatchaccount1", key)?,
//! )?;
//! let pools: Vec<_> = batch.list_pools(&ListOptions::default()).try_collect().await?;
//! println!("{} pools", pools.len());
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

pub mod auth;
pub mod batch;
pub mod blob;
mod error;
mod pipeline;

pub use auth::{SasPermissions, SharedKeyCredential};
pub use error::{Error, Result, ServiceError, TaskAddFailure};
pub use pipeline::{ClientOptions, RetryPolicy};

/// The entity types the Batch calls take and return.
pub use cobalt_model::batch as model;
