#![allow(clippy::unwrap_used, clippy::expect_used)] // a failure is a test failure
#![allow(clippy::result_large_err)] // tungstenite's handshake callback type
//! Integration tests of the node agent: a fake Batch server in the test (a real WebSocket
//! speaking cobalt-proto), the real Blob service of `cobalt-server` for downloads and uploads,
//! and real child processes.

mod blobs;
mod harness;
mod link;
mod runs;
