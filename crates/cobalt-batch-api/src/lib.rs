//! Cobalt's Azure Batch REST API.
//!
//! Owns: the wire. SharedKey authentication of Batch requests as every SDK generation signs
//! them ([`auth`]), the supported api-versions ([`version`]) and the translation of each one's
//! schema to the current one (`dto`), OData query options ([`odata`]), paging with absolute
//! `odata.nextLink`s, conditional headers, the Batch JSON error body ([`error`]), and the
//! operation table (`routes`) with one handler file per resource family. Handlers turn wire
//! JSON into calls on the control plane (`cobalt_batch::Batch`) and its answers back into
//! wire JSON. Must not do: validation or state rules (the control plane's), SQL (the store's),
//! scheduling.

mod account;
pub mod auth;
mod dto;
pub mod error;
pub mod files;
mod jobs;
mod nodes;
pub mod odata;
mod pools;
mod routes;
mod schedules;
mod service;
mod tasks;
pub mod version;

pub use files::NodeAgents;
pub use service::{BatchService, router};
