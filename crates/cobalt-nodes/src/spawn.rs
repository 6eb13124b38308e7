//! Local node agents: `cobalt agent` child processes, one per node, each with its own node root
//! under `{data_dir}/nodes/{account}/{pool}/{node}`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use cobalt_model::AccountKey;
use cobalt_model::batch::Timestamp;

/// A node id in Azure's style: `tvm-{pool hash}_{n}-{utc time}`.
pub fn node_id(pool: &str, n: u32, now: Timestamp) -> String {
    // FNV-1a: stable across runs and platforms, unlike the std hasher.
    let hash = pool
        .to_ascii_lowercase()
        .bytes()
        .fold(0x811c_9dc5_u32, |h, b| {
            (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
        });
    format!("tvm-{}_{n}-{}", hash, now.0.format("%Y%m%dt%H%M%Sz"))
}

/// The node root of a local node.
pub fn node_root(data_dir: &Path, account: &str, pool: &str, node: &str) -> PathBuf {
    data_dir
        .join("nodes")
        .join(account)
        .join(pool.to_ascii_lowercase())
        .join(node)
}

/// What a local agent needs to be started.
pub struct LocalAgent<'a> {
    /// The `cobalt` executable.
    pub exe: &'a Path,
    /// The Batch URL to connect to.
    pub server: &'a str,
    /// The account.
    pub account: &'a str,
    /// The account key the pool token is made with.
    pub key: &'a AccountKey,
    /// The pool.
    pub pool: &'a str,
    /// The node.
    pub node: &'a str,
    /// Its node root.
    pub root: &'a Path,
}

/// Starts a local agent. Its output goes to `{root}/../{node}.agent.log`.
pub fn start(agent: &LocalAgent<'_>) -> std::io::Result<Child> {
    std::fs::create_dir_all(agent.root)?;
    let log_path = agent.root.with_extension("agent.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)?;
    let token = cobalt_proto::agent_token(agent.key, agent.account, agent.pool);
    Command::new(agent.exe)
        .arg("agent")
        .arg("--server")
        .arg(agent.server)
        .arg("--account")
        .arg(agent.account)
        .arg("--pool")
        .arg(agent.pool)
        .arg("--node-id")
        .arg(agent.node)
        .arg("--node-root")
        .arg(agent.root)
        // The agent (and through it every task) gets none of the server's secrets: only the
        // variables tasks inherit, and the agent's own logging settings.
        .env_clear()
        .envs(std::env::vars_os().filter(|(name, _)| {
            name.to_str().is_some_and(|name| {
                cobalt_proto::inherited_by_tasks(name)
                    || name == "COBALT_LOG"
                    || name == "RUST_BACKTRACE"
            })
        }))
        .env("COBALT_AGENT_TOKEN", token)
        .env("COBALT_AGENT_PARENT", std::process::id().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ids_look_like_azures() {
        let now = Timestamp::now();
        let id = node_id("Pool1", 3, now);
        assert!(id.starts_with("tvm-") && id.contains("_3-"), "{id}");
        assert_eq!(id, node_id("pool1", 3, now));
        assert!(cobalt_model::batch::is_valid_id(&id.replace('-', "_")));
    }
}
