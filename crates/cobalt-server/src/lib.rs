//! Cobalt's server process: builds each service from a [`ServerConfig`], binds its listener,
//! runs background tasks, and shuts everything down gracefully.
//!
//! Owns: configuration, listeners, the shutdown signal. Must not do: protocol work; that
//! belongs to the service crates (`cobalt-blob`, later the Batch API).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use cobalt_batch::Batch;
use cobalt_blob::{BlobService, Engine, EngineConfig};
use cobalt_model::{Accounts, DEV_STORAGE_ACCOUNT};
use cobalt_nodes::{Nodes, NodesConfig};
use cobalt_store::SqliteStore;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// Environment variable with extra storage accounts, `name:key[:key2];...` (Azurite's
/// `AZURITE_ACCOUNTS` is read too).
pub const ACCOUNTS_ENV: &str = "COBALT_STORAGE_ACCOUNTS";
/// Environment variable with extra Batch accounts, `name:key[:key2];...`.
pub const BATCH_ACCOUNTS_ENV: &str = "COBALT_BATCH_ACCOUNTS";

/// An account in the configuration file.
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountEntry {
    /// The account name.
    pub name: String,
    /// key1, base64.
    pub key: String,
    /// key2, base64, if any.
    pub secondary_key: Option<String>,
}

/// The configuration file (`cobalt serve --config FILE`, TOML):
///
/// ```toml
/// [[storage_accounts]]
/// name = "myaccount"
/// key = "<base64 key>"
///
/// [[batch_accounts]]
/// name = "mybatch"
/// key = "<base64 key>"
/// secondary_key = "<base64 key>"   # optional
/// ```
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Storage accounts besides `devstoreaccount1`.
    #[serde(default)]
    pub storage_accounts: Vec<AccountEntry>,
    /// Batch accounts besides `devbatchaccount1`.
    #[serde(default)]
    pub batch_accounts: Vec<AccountEntry>,
}

impl ConfigFile {
    /// Reads and parses a configuration file.
    pub fn load(path: &std::path::Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        toml::from_str(&text)
            .with_context(|| format!("{} is not a valid Cobalt configuration", path.display()))
    }
}

/// Appends accounts to a `name:key[:key2];...` list.
fn append_accounts(spec: &mut Option<String>, entries: &[AccountEntry]) {
    for e in entries {
        let mut entry = format!("{}:{}", e.name, e.key);
        if let Some(k2) = &e.secondary_key {
            entry.push(':');
            entry.push_str(k2);
        }
        let list = spec.get_or_insert_with(String::new);
        if !list.is_empty() {
            list.push(';');
        }
        list.push_str(&entry);
    }
}

/// How long a shutdown waits for in-flight requests.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// How a server is set up.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Where state lives.
    pub data_dir: PathBuf,
    /// Address to listen on.
    pub host: IpAddr,
    /// Blob service port; 0 picks a free one.
    pub blob_port: u16,
    /// Batch service port; 0 picks a free one.
    pub batch_port: u16,
    /// Extra storage accounts in `name:key[:key2];...` form.
    pub storage_accounts: Option<String>,
    /// Extra Batch accounts in `name:key[:key2];...` form.
    pub batch_accounts: Option<String>,
    /// Storage engine tuning.
    pub engine: EngineConfig,
    /// How often expired uncommitted blocks are swept.
    pub gc_interval: Duration,
    /// The `cobalt` executable started (`cobalt agent …`) for each node of a pool; None: no
    /// local nodes, pools get only the agents that connect from elsewhere.
    pub agent_exe: Option<PathBuf>,
    /// How often node agents must be heard from.
    pub heartbeat: Duration,
    /// Variables every task on this server's nodes gets (`--node-env`).
    pub node_env: Vec<(String, String)>,
}

impl ServerConfig {
    /// Adds the accounts of a configuration file (after those from the environment).
    pub fn apply(&mut self, file: &ConfigFile) {
        append_accounts(&mut self.storage_accounts, &file.storage_accounts);
        append_accounts(&mut self.batch_accounts, &file.batch_accounts);
    }

    /// Defaults for a data directory: loopback, blob port 10000, Batch port 10100, extra
    /// accounts from the environment.
    pub fn new(data_dir: PathBuf) -> Self {
        let storage_accounts = [ACCOUNTS_ENV, "AZURITE_ACCOUNTS"]
            .iter()
            .find_map(|k| std::env::var(k).ok())
            .filter(|v| !v.trim().is_empty());
        let batch_accounts = std::env::var(BATCH_ACCOUNTS_ENV)
            .ok()
            .filter(|v| !v.trim().is_empty());
        Self {
            data_dir,
            host: IpAddr::from([127, 0, 0, 1]),
            blob_port: 10000,
            batch_port: 10100,
            storage_accounts,
            batch_accounts,
            engine: EngineConfig::default(),
            gc_interval: Duration::from_secs(3600),
            agent_exe: None,
            heartbeat: Duration::from_secs(2),
            node_env: Vec::new(),
        }
    }
}

/// Serves `app` on `listener` until `stop` turns true, then drains in-flight requests.
async fn serve(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    mut stop: watch::Receiver<bool>,
    name: &'static str,
) {
    // Small responses go out as headers and body in separate writes; without TCP_NODELAY,
    // Nagle's algorithm holds the body back for a delayed ACK (~40 ms).
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
    });
    let app = app.into_make_service_with_connect_info::<SocketAddr>();
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = stop.wait_for(|s| *s).await;
        })
        .await;
    if let Err(e) = served {
        tracing::error!(error = %e, "{name} listener failed");
    }
}

/// How often transient Batch states (deleting, terminating, schedules) are moved forward.
const LIFECYCLE_INTERVAL: Duration = Duration::from_millis(250);

/// Runs the Batch lifecycle until shutdown.
async fn run_lifecycle(batch: Arc<Batch>, mut stop: watch::Receiver<bool>) {
    let mut interval = tokio::time::interval(LIFECYCLE_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let b = Arc::clone(&batch);
        if let Err(e) = tokio::task::spawn_blocking(move || b.tick()).await {
            tracing::error!(error = %e, "Batch lifecycle step panicked");
        }
    }
}

/// Node files for the Batch API, answered by the node agents through the dispatcher.
#[derive(Debug)]
struct NodeFilesOf(Arc<Nodes>);

impl cobalt_batch_api::NodeAgents for NodeFilesOf {
    fn file(
        &self,
        account: &str,
        pool: &str,
        node: &str,
        path: &str,
        op: cobalt_proto::FileOp,
    ) -> Option<cobalt_proto::FileOutcome> {
        self.0.file(account, pool, node, path, op)
    }

    fn act(
        &self,
        account: &str,
        pool: &str,
        node: &str,
        action: cobalt_model::batch::NodeAction,
    ) -> Result<(), cobalt_model::batch::NodeActionError> {
        self.0.act(account, pool, node, action)
    }

    fn prep_release(&self, account: &str, job: &str) -> Vec<serde_json::Value> {
        let info = |r: &cobalt_nodes::PrepRun, dir: String| {
            serde_json::json!({
                "state": if r.completed { "completed" } else { "running" },
                "startTime": r.start_time,
                "endTime": r.end_time,
                "exitCode": r.exit_code,
                "result": r.result,
                "failureInfo": r.failure_info,
                "retryCount": r.retry_count,
                "taskRootDirectory": dir,
            })
        };
        self.0
            .prep_release(account, job)
            .into_iter()
            .map(|(node, p)| {
                let mut v = serde_json::json!({
                    "poolId": p.pool,
                    "nodeId": node,
                    "jobPreparationTaskExecutionInfo":
                        info(&p.prep, format!("workitems/{job}/job-1/jobpreparation")),
                });
                if let Some(r) = &p.release {
                    v["jobReleaseTaskExecutionInfo"] =
                        info(r, format!("workitems/{job}/job-1/jobrelease"));
                }
                strip_nulls(&mut v);
                v
            })
            .collect()
    }
}

/// Removes `null` members (the wire leaves absent properties out).
fn strip_nulls(v: &mut serde_json::Value) {
    if let serde_json::Value::Object(map) = v {
        map.retain(|_, v| !v.is_null());
        for v in map.values_mut() {
            strip_nulls(v);
        }
    }
}

/// A started server.
pub struct Server {
    /// Where the blob service listens.
    pub blob_addr: SocketAddr,
    /// Where the Batch service listens.
    pub batch_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<()>,
    nodes: Arc<Nodes>,
}

impl Server {
    /// Opens state, binds listeners and starts serving.
    pub async fn start(config: ServerConfig) -> anyhow::Result<Self> {
        let mut accounts = Accounts::dev_storage();
        if let Some(spec) = &config.storage_accounts {
            accounts
                .extend_from_spec(spec)
                .context("invalid storage account list")?;
        }
        let blob_dir = config.data_dir.join("blob");
        let engine_config = config.engine.clone();
        let engine = tokio::task::spawn_blocking(move || Engine::open(&blob_dir, engine_config))
            .await?
            .with_context(|| {
                format!(
                    "cannot open the blob store in {}",
                    config.data_dir.display()
                )
            })?;
        let engine = Arc::new(engine);
        let service = Arc::new(BlobService {
            engine: Arc::clone(&engine),
            accounts: accounts.clone(),
            default_account: DEV_STORAGE_ACCOUNT.to_owned(),
        });
        let storage_accounts = accounts;
        let ui_engine = Arc::clone(&engine);
        let listener = tokio::net::TcpListener::bind((config.host, config.blob_port))
            .await
            .with_context(|| format!("cannot listen on {}:{}", config.host, config.blob_port))?;
        let blob_addr = listener.local_addr()?;
        let (shutdown, rx) = watch::channel(false);
        let mut tasks = JoinSet::new();
        tasks.spawn(serve(
            listener,
            cobalt_blob::router(service),
            rx.clone(),
            "blob",
        ));
        tasks.spawn(cobalt_blob::run_gc(engine, config.gc_interval, rx.clone()));
        tracing::info!(data_dir = %config.data_dir.display(), "blob service listening on http://{blob_addr}");

        let mut batch_accounts = Accounts::dev_batch();
        if let Some(spec) = &config.batch_accounts {
            batch_accounts
                .extend_from_spec(spec)
                .context("invalid Batch account list")?;
        }
        let batch_dir = config.data_dir.join("batch");
        let names: Vec<String> = batch_accounts.names().map(str::to_owned).collect();
        let control = tokio::task::spawn_blocking(move || -> anyhow::Result<Batch> {
            std::fs::create_dir_all(&batch_dir)?;
            let store = SqliteStore::open(&batch_dir.join("state.db"))?;
            Batch::new(Arc::new(store), &names)
                .map_err(|e| anyhow::anyhow!("cannot recover Batch state: {}", e.code.as_str()))
        })
        .await?
        .with_context(|| {
            format!(
                "cannot open the Batch state in {}",
                config.data_dir.display()
            )
        })?;
        let control = Arc::new(control);
        tasks.spawn(run_lifecycle(Arc::clone(&control), rx.clone()));
        let listener = tokio::net::TcpListener::bind((config.host, config.batch_port))
            .await
            .with_context(|| format!("cannot listen on {}:{}", config.host, config.batch_port))?;
        let batch_addr = listener.local_addr()?;
        // Local agents connect over loopback whatever address the service listens on.
        let loopback = SocketAddr::from(([127, 0, 0, 1], batch_addr.port()));
        let nodes = Nodes::start(
            Arc::clone(&control),
            batch_accounts.clone(),
            NodesConfig {
                data_dir: config.data_dir.clone(),
                agent_exe: config.agent_exe.clone(),
                batch_url: format!("http://{loopback}"),
                heartbeat: config.heartbeat,
                node_env: config.node_env.clone(),
            },
        )
        .context("cannot start the node dispatcher")?;
        let files: Arc<dyn cobalt_batch_api::NodeAgents> =
            Arc::new(NodeFilesOf(Arc::clone(&nodes)));
        let ui = Arc::new(cobalt_ui::Ui::new(cobalt_ui::UiConfig {
            batch: Arc::clone(&control),
            batch_accounts: batch_accounts.clone(),
            files: Some(Arc::clone(&files)),
            engine: ui_engine,
            storage_accounts,
            default_storage: DEV_STORAGE_ACCOUNT.to_owned(),
            stop: rx.clone(),
        }));
        let batch = Arc::new(cobalt_batch_api::BatchService {
            accounts: batch_accounts,
            batch: control,
            files: Some(files),
        });
        tasks.spawn(serve(
            listener,
            nodes
                .router()
                .merge(cobalt_ui::router(ui))
                .merge(cobalt_batch_api::router(batch)),
            rx,
            "batch",
        ));
        tracing::info!("batch service listening on http://{batch_addr}");
        tracing::info!("dashboard at http://{batch_addr}/ui/");
        Ok(Self {
            blob_addr,
            batch_addr,
            shutdown,
            tasks,
            nodes,
        })
    }

    /// The Batch account URL (`http://host:port`).
    pub fn batch_url(&self) -> String {
        format!("http://{}", self.batch_addr)
    }

    /// Stops accepting connections, lets in-flight requests finish (for at most
    /// [`DRAIN_TIMEOUT`]), and waits for every task. Cutting a request off is safe: nothing
    /// becomes visible before its metadata commits.
    pub async fn shutdown(mut self) {
        self.nodes.shutdown();
        let _ = self.shutdown.send(true);
        let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!("requests still running after {DRAIN_TIMEOUT:?}; cutting them off");
            self.tasks.shutdown().await;
        }
    }
}
