//! The agent's one error type. A task's own failures (a download, a program that does not
//! exist, an upload) are not errors of the agent: they are reported to the server as a
//! `FailureInfo` in the run's `Ended` event (see [`crate::codes`]).

use std::io;
use std::path::PathBuf;

/// Why the agent stopped, or why one connection attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// `--server` is not an http(s) or ws(s) URL with a host.
    #[error("invalid server URL '{url}': {reason}")]
    InvalidServerUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The token is not a valid HTTP header value.
    #[error("the agent token contains characters that cannot be sent in a header")]
    InvalidToken,
    /// The server answered the WebSocket upgrade with 401 or 403: the token is wrong for this
    /// account and pool. Retrying cannot help, so the agent exits.
    #[error("the server refused the agent token for this account and pool (HTTP {status})")]
    Unauthorized {
        /// The HTTP status of the refusal.
        status: u16,
    },
    /// The server answered the first `Hello` with `Leave`: it does not accept this agent
    /// (wrong token for the account and pool, or no such pool).
    #[error("the server refused this agent: wrong token for the account and pool, or no such pool")]
    Refused,
    /// The node root (or one of its standard directories) could not be created.
    #[error("cannot prepare the node root {path}: {source}")]
    NodeRoot {
        /// The directory.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The TCP connection or the TLS handshake failed (retried).
    #[error("cannot connect to {address}: {source}")]
    Connect {
        /// `host:port`.
        address: String,
        /// The cause.
        source: io::Error,
    },
    /// The WebSocket failed: handshake, framing, or the connection dropped (retried).
    #[error("websocket: {0}")]
    WebSocket(#[from] tokio_tungstenite::tungstenite::Error),
    /// The server broke the protocol: no `Welcome`, or a message that is not JSON of the
    /// expected shape where one is required (retried).
    #[error("protocol: {0}")]
    Protocol(String),
    /// Nothing (not even a pong) came from the server for three heartbeats: the connection
    /// is taken for dead (retried).
    #[error("the server was silent for {0:?}")]
    ServerSilent(std::time::Duration),
    /// The server did not answer `Hello` in time (retried).
    #[error("the server did not answer Hello within {0:?}")]
    WelcomeTimeout(std::time::Duration),
    /// The HTTP client for blob transfers could not be built.
    #[error("cannot build the HTTP client: {0}")]
    HttpClient(#[from] reqwest::Error),
}

impl AgentError {
    /// Whether reconnecting cannot help (the agent then exits with this error).
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            Self::InvalidServerUrl { .. }
                | Self::InvalidToken
                | Self::Unauthorized { .. }
                | Self::Refused
                | Self::NodeRoot { .. }
                | Self::HttpClient(_)
        )
    }
}
