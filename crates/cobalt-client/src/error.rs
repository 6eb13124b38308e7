//! The client's one error type. A service's refusal keeps everything the service said: the
//! status, Azure's error code, the message and the key/value details.

use std::fmt;
use std::path::PathBuf;

/// What the service answered when it refused a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceError {
    /// The HTTP status, e.g. 409.
    pub status: u16,
    /// Azure's error code, e.g. `PoolExists` or `ContainerNotFound` (empty if the service sent
    /// none, as for a 404 to a HEAD request).
    pub code: String,
    /// The service's message, without its `RequestId:`/`Time:` lines.
    pub message: String,
    /// The error's details: Batch `values` (`PropertyName`, `Reason`…) or the extra elements of
    /// a Storage error (`AuthenticationErrorDetail`…).
    pub details: Vec<(String, String)>,
    /// The service's `request-id` / `x-ms-request-id`, for support.
    pub request_id: Option<String>,
}

impl ServiceError {
    /// The value of detail `key`, if the service sent it.
    pub fn detail(&self, key: &str) -> Option<&str> {
        self.details
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

impl fmt::Display for ServiceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.code.is_empty(), self.message.is_empty()) {
            (true, _) => write!(f, "HTTP {}", self.status)?,
            (false, true) => write!(f, "{} (HTTP {})", self.code, self.status)?,
            (false, false) => write!(f, "{} (HTTP {}): {}", self.code, self.status, self.message)?,
        }
        for (key, value) in &self.details {
            write!(f, "; {key}: {value}")?;
        }
        Ok(())
    }
}

/// Why a task of [`add_tasks`](crate::batch::BatchClient::add_tasks) was not added.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskAddFailure {
    /// The task's id.
    pub task_id: String,
    /// The service's error for it.
    pub error: ServiceError,
}

/// Everything that can go wrong in a call.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The service refused the request (after any retries).
    #[error("{0}")]
    Service(Box<ServiceError>),
    /// The service could not be reached, or the connection broke.
    #[error("cannot reach {url}: {source}")]
    Transport {
        /// The URL of the request (without its query, which may hold a SAS).
        url: String,
        /// What the HTTP stack said.
        #[source]
        source: reqwest::Error,
    },
    /// A local file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// The service answered something this client cannot understand.
    #[error("unexpected response from {url}: {reason}")]
    Decode {
        /// The URL of the request (without its query).
        url: String,
        /// What was wrong with it.
        reason: String,
    },
    /// An argument cannot be used (a malformed URL, key or connection string…).
    #[error("{0}")]
    InvalidArgument(String),
    /// Some tasks of an add-collection call were refused.
    #[error("{} task(s) were not added, first {}: {}", .0.len(), .0[0].task_id, .0[0].error)]
    TasksNotAdded(Vec<TaskAddFailure>),
}

impl Error {
    /// The service's refusal, if that is what this is.
    pub fn service(&self) -> Option<&ServiceError> {
        match self {
            Self::Service(e) => Some(e),
            _ => None,
        }
    }

    /// The HTTP status of a service refusal.
    pub fn status(&self) -> Option<u16> {
        self.service().map(|e| e.status)
    }

    /// Azure's error code of a service refusal.
    pub fn code(&self) -> Option<&str> {
        self.service().map(|e| e.code.as_str())
    }

    /// Whether the service said 404.
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }

    /// Whether the service said 409 (exists, or the wrong state).
    pub fn is_conflict(&self) -> bool {
        self.status() == Some(409)
    }

    pub(crate) fn invalid(reason: impl Into<String>) -> Self {
        Self::InvalidArgument(reason.into())
    }

    pub(crate) fn decode(url: &reqwest::Url, reason: impl fmt::Display) -> Self {
        Self::Decode {
            url: redact(url),
            reason: reason.to_string(),
        }
    }

    pub(crate) fn transport(url: &reqwest::Url, source: reqwest::Error) -> Self {
        Self::Transport {
            url: redact(url),
            source: source.without_url(),
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}

/// `url` without its query: a SAS must not end up in an error message or a log.
pub(crate) fn redact(url: &reqwest::Url) -> String {
    let mut url = url.clone();
    url.set_query(None);
    url.to_string()
}

/// The client's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
