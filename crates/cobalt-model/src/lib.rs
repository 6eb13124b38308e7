//! Cobalt's domain model: the types every other crate speaks.
//!
//! Owns: storage and batch accounts with their secret keys ([`Account`], [`AccountKey`],
//! [`Accounts`]); the Batch entities, their states and id rules ([`batch`]). Must not do: IO, HTTP, SQL or any wire format; those belong to the API and
//! store crates.

mod account;
pub mod batch;

pub use account::{
    Account, AccountKey, AccountKeyError, Accounts, DEV_ACCOUNT_KEY, DEV_BATCH_ACCOUNT,
    DEV_STORAGE_ACCOUNT,
};
