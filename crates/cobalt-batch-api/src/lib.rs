//! Cobalt's Azure Batch REST API.
//!
//! Owns (so far): SharedKey authentication of Batch requests as every SDK generation signs
//! them ([`auth`]). Routing, JSON DTOs per api-version, validation and the Batch error body
//! arrive with the Batch service issue. Must not do: SQL (the store crate's), scheduling.

pub mod auth;
