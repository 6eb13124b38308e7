//! Client errors as sentences: what went wrong, about which entity, and what to do next.
//!
//! Owns: the mapping from `cobalt_client::Error` to a message. Must not do: print keys or SAS
//! tokens (the client's errors carry URLs without their query).

use std::fmt;

use cobalt_client::Error;

/// Which service a client talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The Batch service.
    Batch,
    /// The Blob service.
    Blob,
}

/// A service, as errors name it.
#[derive(Clone, Debug)]
pub struct Service {
    kind: Kind,
    url: String,
    account: String,
}

impl Service {
    /// The Batch service at `url`, account `account`.
    pub fn batch(url: &str, account: &str) -> Self {
        Self {
            kind: Kind::Batch,
            url: url.to_owned(),
            account: account.to_owned(),
        }
    }

    /// The Blob service at `url`, account `account`.
    pub fn blob(url: &str, account: &str) -> Self {
        Self {
            kind: Kind::Blob,
            url: url.to_owned(),
            account: account.to_owned(),
        }
    }

    /// Turns a client error about `scope` into a message for people.
    pub fn explain(&self, error: Error, scope: &Scope) -> anyhow::Error {
        anyhow::anyhow!(self.message(&error, scope))
    }

    /// A closure for `map_err`.
    pub fn err(&self, scope: Scope) -> impl FnOnce(Error) -> anyhow::Error + '_ {
        move |e| self.explain(e, &scope)
    }

    fn name(&self) -> &'static str {
        match self.kind {
            Kind::Batch => "Batch service",
            Kind::Blob => "Blob service",
        }
    }

    fn message(&self, error: &Error, scope: &Scope) -> String {
        match error {
            Error::Service(e) => {
                if let Some(m) = scope.explain(&e.code) {
                    return m;
                }
                if e.code == "AuthenticationFailed" || (e.status == 403 && e.code.is_empty()) {
                    return match self.kind {
                        Kind::Batch => format!(
                            "the service rejected the key for account '{}' (check --key / COBALT_KEY, and --account / COBALT_ACCOUNT)",
                            self.account
                        ),
                        Kind::Blob => format!(
                            "the service rejected the key for storage account '{}' (check --storage-key, --storage-account or the connection string, AZURE_STORAGE_CONNECTION_STRING)",
                            self.account
                        ),
                    };
                }
                format!("the {} refused the request: {e}", self.name())
            }
            Error::Transport { source, .. } if source.is_connect() => {
                let hint = match self.kind {
                    Kind::Batch => "set --batch-url or COBALT_BATCH_URL",
                    Kind::Blob => {
                        "set --blob-url, COBALT_BLOB_URL or AZURE_STORAGE_CONNECTION_STRING"
                    }
                };
                format!(
                    "cannot reach the {} at {}: is `cobalt serve` running? ({hint})",
                    self.name(),
                    self.url
                )
            }
            Error::Transport { url, source } => {
                format!(
                    "the request to the {} at {url} failed: {source}",
                    self.name()
                )
            }
            Error::TasksNotAdded(failures) => {
                let mut m = format!("{} task(s) were not added:", failures.len());
                for f in failures.iter().take(5) {
                    m.push_str(&format!("\n  {}: {}", f.task_id, f.error));
                }
                m
            }
            other => other.to_string(),
        }
    }
}

/// The entities a command addresses, so that a "not found" can name them.
#[derive(Clone, Debug, Default)]
pub struct Scope {
    pool: Option<String>,
    node: Option<String>,
    job: Option<String>,
    task: Option<String>,
    file: Option<String>,
    container: Option<String>,
    blob: Option<String>,
}

/// `'id'`, or `the` when the command did not name it.
struct Named<'a>(&'a Option<String>);

impl fmt::Display for Named<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(id) => write!(f, "'{id}'"),
            None => f.write_str("(unnamed)"),
        }
    }
}

impl Scope {
    /// Nothing in particular (lists of the account).
    pub fn none() -> Self {
        Self::default()
    }

    /// A pool.
    pub fn pool(pool: &str) -> Self {
        Self {
            pool: Some(pool.to_owned()),
            ..Self::default()
        }
    }

    /// A pool's node.
    pub fn node(pool: &str, node: &str) -> Self {
        Self {
            node: Some(node.to_owned()),
            ..Self::pool(pool)
        }
    }

    /// A job.
    pub fn job(job: &str) -> Self {
        Self {
            job: Some(job.to_owned()),
            ..Self::default()
        }
    }

    /// A job on a pool.
    pub fn job_on_pool(job: &str, pool: &str) -> Self {
        Self {
            pool: Some(pool.to_owned()),
            ..Self::job(job)
        }
    }

    /// A job's task.
    pub fn task(job: &str, task: &str) -> Self {
        Self {
            task: Some(task.to_owned()),
            ..Self::job(job)
        }
    }

    /// A task's file.
    pub fn file(job: &str, task: &str, path: &str) -> Self {
        Self {
            file: Some(path.to_owned()),
            ..Self::task(job, task)
        }
    }

    /// A container.
    pub fn container(container: &str) -> Self {
        Self {
            container: Some(container.to_owned()),
            ..Self::default()
        }
    }

    /// A blob.
    pub fn blob(container: &str, blob: &str) -> Self {
        Self {
            blob: Some(blob.to_owned()),
            ..Self::container(container)
        }
    }

    /// The sentence for an error code about one of the scope's entities.
    fn explain(&self, code: &str) -> Option<String> {
        let job = self.job.as_deref().unwrap_or("JOB");
        let task = self.task.as_deref().unwrap_or("TASK");
        let pool = self.pool.as_deref().unwrap_or("POOL");
        let container = self.container.as_deref().unwrap_or("CONTAINER");
        Some(match code {
            "PoolNotFound" => format!(
                "pool {} does not exist (cobalt pool list)",
                Named(&self.pool)
            ),
            "NodeNotFound" => format!(
                "node {} does not exist in pool {} (cobalt node list {pool})",
                Named(&self.node),
                Named(&self.pool)
            ),
            "JobNotFound" => format!("job {} does not exist (cobalt job list)", Named(&self.job)),
            "TaskNotFound" => format!(
                "task {} does not exist in job {} (cobalt task list {job})",
                Named(&self.task),
                Named(&self.job)
            ),
            "FileNotFound" => format!(
                "file {} does not exist in the directory of task {} (cobalt file list {job} {task} --recursive)",
                Named(&self.file),
                Named(&self.task)
            ),
            "TaskFilesUnavailable" => format!(
                "task {} has not run on a node, so it has no files yet (cobalt task show {job} {task}; `cobalt task logs {job} {task} --follow` waits)",
                Named(&self.task)
            ),
            "ContainerNotFound" => format!(
                "container {} does not exist (cobalt container list)",
                Named(&self.container)
            ),
            "BlobNotFound" => format!(
                "blob {} does not exist in container {} (cobalt blob list {container})",
                Named(&self.blob),
                Named(&self.container)
            ),
            "PoolExists" => format!("pool {} already exists", Named(&self.pool)),
            "JobExists" => format!("job {} already exists", Named(&self.job)),
            "TaskExists" => format!(
                "task {} already exists in job {}",
                Named(&self.task),
                Named(&self.job)
            ),
            "ContainerAlreadyExists" => {
                format!("container {} already exists", Named(&self.container))
            }
            "PoolBeingDeleted" => format!("pool {} is being deleted", Named(&self.pool)),
            "JobBeingDeleted" => format!("job {} is being deleted", Named(&self.job)),
            "JobCompleted" => format!(
                "job {} is completed and takes no new tasks (cobalt job create to start another)",
                Named(&self.job)
            ),
            "ContainerBeingDeleted" => format!(
                "container {} is being deleted; try again in a moment",
                Named(&self.container)
            ),
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use cobalt_client::ServiceError;

    fn refusal(status: u16, code: &str) -> Error {
        Error::Service(Box::new(ServiceError {
            status,
            code: code.to_owned(),
            message: "The specified thing is wrong.".to_owned(),
            details: vec![("Reason".to_owned(), "because".to_owned())],
            request_id: None,
        }))
    }

    #[test]
    fn messages_name_the_entity_and_the_next_step() {
        let batch = Service::batch("http://127.0.0.1:10100", "devbatchaccount1");
        let m = batch.message(&refusal(404, "JobNotFound"), &Scope::job("nightly"));
        assert_eq!(m, "job 'nightly' does not exist (cobalt job list)");
        let m = batch.message(&refusal(404, "TaskNotFound"), &Scope::task("j", "t"));
        assert_eq!(m, "task 't' does not exist in job 'j' (cobalt task list j)");
        let m = batch.message(&refusal(403, "AuthenticationFailed"), &Scope::none());
        assert!(
            m.contains("rejected the key for account 'devbatchaccount1'"),
            "{m}"
        );
        assert!(m.contains("COBALT_KEY"), "{m}");
        // Anything else shows Azure's code, message and details.
        let m = batch.message(&refusal(400, "InvalidPropertyValue"), &Scope::none());
        assert_eq!(
            m,
            "the Batch service refused the request: InvalidPropertyValue (HTTP 400): The specified thing is wrong.; Reason: because"
        );
        let blob = Service::blob(
            "http://127.0.0.1:10000/devstoreaccount1",
            "devstoreaccount1",
        );
        let m = blob.message(&refusal(404, "BlobNotFound"), &Scope::blob("c", "a/b"));
        assert_eq!(
            m,
            "blob 'a/b' does not exist in container 'c' (cobalt blob list c)"
        );
    }
}
