//! Cobalt's Batch control plane.
//!
//! Owns: the operations of the Batch service on pools, jobs, job schedules and tasks
//! ([`Batch`]), their validation and state rules as Azure applies them, the Azure error codes
//! ([`error`]), conditional requests ([`Conditions`]), paging ([`Page`]) and the lifecycle that
//! moves transient states forward (`deleting` → gone, `terminating` → `completed`, schedules
//! creating jobs) in [`Batch::tick`]. Entities are read and written through a
//! `cobalt_store::Store`; every operation is one store transaction. Must not do: HTTP, JSON
//! wire schemas of older api-versions (the API crate translates), SQL (the store's), or run
//! processes (nodes and agents do).

mod dispatch;
pub mod error;
mod jobs;
mod lifecycle;
mod nodes;
mod pools;
mod schedules;
mod service;
mod stats;
mod tasks;
mod validate;

pub use cobalt_store::StateCount;
pub use dispatch::{
    FILE_UPLOAD_CODE, RunFate, RunOutcome, RunStart, RunnableJob, RunsRecorded, exit_options,
};
pub use error::{BatchError, BatchResult, ErrorCode};
pub use jobs::JobUpdate;
pub use pools::{PoolPatch, PoolResize};
pub use schedules::JobScheduleUpdate;
pub use service::{Batch, Change, Conditions, Observer, Page, PageRequest};
pub use stats::{PoolStats, UsageStats};
pub use tasks::{TaskAddOutcome, TaskCounts};

#[cfg(test)]
mod tests;
