//! Cobalt's Azure Batch REST API.
//!
//! Owns (so far): SharedKey authentication of Batch requests as every SDK generation signs
//! them ([`auth`]), the supported api-versions ([`version`]), the Batch JSON error body
//! ([`error`]) and the account operations (supported images, node agent SKUs, node counts).
//! Pools, jobs and tasks (JSON DTOs per api-version, validation, the store) arrive with the
//! Batch service issue and answer 501 NotImplemented until then. Must not do: SQL (the store
//! crate's), scheduling.

mod account;
pub mod auth;
pub mod error;
mod service;
pub mod version;

pub use service::{BatchService, router};
