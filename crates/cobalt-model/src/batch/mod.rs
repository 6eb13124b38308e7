//! The Batch domain: pools, jobs, job schedules and tasks as the service keeps them, in the
//! current schema's vocabulary (api-version translation is the API crate's job), plus the
//! id rules every entity shares.

mod common;
mod job;
mod node;
mod pool;
mod schedule;
mod task;
mod time;

pub use common::*;
pub use job::*;
pub use node::*;
pub use pool::*;
pub use schedule::*;
pub use task::*;
pub use time::{IsoDuration, Timestamp, UNLIMITED};

/// Longest id of a pool, job, schedule or task.
pub const MAX_ID_LEN: usize = 64;

/// Whether `id` is a valid pool, job, schedule or task id: 1 to 64 characters, each a letter,
/// digit, hyphen or underscore.
pub fn is_valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The key under which an id is unique: ids are case-preserving but case-insensitive.
pub fn id_key(id: &str) -> String {
    id.to_ascii_lowercase()
}

/// An ETag for a change at `now`, after `previous` (ETags are the .NET tick count of the
/// change, bumped so that two changes in the same tick still differ).
pub fn etag_after(previous: Option<&str>, now: Timestamp) -> String {
    let previous = previous
        .and_then(|p| p.strip_prefix("0x"))
        .and_then(|p| u64::from_str_radix(p, 16).ok())
        .unwrap_or(0);
    format!("0x{:X}", now.ticks().max(previous + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        assert!(is_valid_id("PythonTutorialPool"));
        assert!(is_valid_id("a-b_c-9"));
        assert!(is_valid_id(&"x".repeat(64)));
        assert!(!is_valid_id(&"x".repeat(65)));
        assert!(!is_valid_id(""));
        assert!(!is_valid_id("a b"));
        assert!(!is_valid_id("a.b"));
        assert!(!is_valid_id("sched:job-1"));
        assert_eq!(id_key("MyPool"), "mypool");
    }

    #[test]
    fn etags_increase() {
        let now = Timestamp::now();
        let a = etag_after(None, now);
        let b = etag_after(Some(&a), now);
        assert!(a.starts_with("0x8D"), "{a}");
        assert_ne!(a, b);
    }
}
