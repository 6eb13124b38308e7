//! `cobalt demo`: the Azure Batch Python tutorial ("Get started with the Batch SDK for
//! Python"), ported to Rust on `cobalt-client`, end to end.
//!
//! It starts an embedded server on free ports (or targets a running one), creates the
//! `application`, `input` and `output` containers, uploads the task program and the input
//! files, creates a pool of nodes whose start task copies the program into the shared
//! directory, a job, and one task per input file. Each task runs `cobalt-wordcount` as its own
//! process on a node: it reads its file from its working directory, counts the top N words and
//! uploads `<name>_OUTPUT.txt` with a write-only container SAS, over HTTP, as the Python task
//! does. The demo watches the tasks with a progress bar, downloads and prints the outputs,
//! checks them against its own count, cleans up and prints how long each step took.
//!
//! Owns: the demo's workflow and its task program (`wordcount`). Must not do: anything the
//! client crate should do (it talks to the services only through `cobalt-client`).

pub mod wordcount;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use chrono::Utc;
use cobalt_client::batch::{BatchClient, ListOptions};
use cobalt_client::blob::{BlobServiceClient, TransferOptions};
use cobalt_client::model::{
    AutoUser, AutoUserScope, ElevationLevel, JobSpec, NodeState, PoolInformation, PoolSpec,
    ResourceFile, StartTask, TaskSpec, TaskState, UserIdentity, VirtualMachineConfiguration,
};
use cobalt_client::{SasPermissions, SharedKeyCredential};
use cobalt_model::{DEV_ACCOUNT_KEY, DEV_BATCH_ACCOUNT, DEV_STORAGE_ACCOUNT};
use futures_util::TryStreamExt;
use indicatif::{ProgressBar, ProgressStyle};

/// The tutorial's input files, shipped with the demo.
const INPUTS: [(&str, &str); 3] = [
    ("taskdata1.txt", include_str!("../data/taskdata1.txt")),
    ("taskdata2.txt", include_str!("../data/taskdata2.txt")),
    ("taskdata3.txt", include_str!("../data/taskdata3.txt")),
];

/// The task program's file name, next to the `cobalt` executable.
pub const TASK_PROGRAM: &str = "cobalt-wordcount";

/// Options of `cobalt demo`.
#[derive(clap::Args, Debug, Clone)]
pub struct DemoArgs {
    /// Use the Batch service at this URL instead of starting an embedded server (give
    /// --blob-url too).
    #[arg(long, env = "COBALT_BATCH_URL", requires = "blob_url")]
    pub batch_url: Option<String>,
    /// Use the Blob service at this account URL (e.g. http://127.0.0.1:10000/devstoreaccount1).
    #[arg(long, env = "COBALT_BLOB_URL", requires = "batch_url")]
    pub blob_url: Option<String>,
    /// The Batch account.
    #[arg(long, env = "COBALT_ACCOUNT", default_value = DEV_BATCH_ACCOUNT)]
    pub account: String,
    /// The Batch account's key.
    #[arg(long, env = "COBALT_KEY", default_value = DEV_ACCOUNT_KEY, hide_default_value = true, hide_env_values = true)]
    pub key: String,
    /// The storage account.
    #[arg(long, default_value = DEV_STORAGE_ACCOUNT)]
    pub storage_account: String,
    /// The storage account's key.
    #[arg(long, default_value = DEV_ACCOUNT_KEY, hide_default_value = true)]
    pub storage_key: String,
    /// A directory of .txt files to count instead of the tutorial's three.
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// How many of the most common words each task reports.
    #[arg(long, default_value_t = 3)]
    pub numwords: usize,
    /// Nodes in the pool.
    #[arg(long, default_value_t = 2)]
    pub nodes: i32,
    /// The task program (default: cobalt-wordcount next to this executable).
    #[arg(long)]
    pub task_program: Option<PathBuf>,
    /// Give up on the tasks after this many seconds.
    #[arg(long, default_value_t = 120)]
    pub timeout: u64,
    /// Keep the pool, job and containers at the end.
    #[arg(long)]
    pub keep: bool,
}

/// Where the demo runs: the embedded server (kept alive until the end) or a running one.
struct Target {
    batch: BatchClient,
    blobs: BlobServiceClient,
    /// The Blob endpoint the nodes use.
    blob_endpoint: String,
    embedded: Option<(cobalt_server::Server, tempfile::TempDir)>,
}

/// The names of what the demo creates: the tutorial's, made unique on a shared server.
struct Names {
    pool: String,
    job: String,
    application: String,
    input: String,
    output: String,
}

impl Names {
    fn new(unique: bool) -> Self {
        let suffix = if unique {
            format!("-{}", &uuid::Uuid::new_v4().simple().to_string()[..8])
        } else {
            String::new()
        };
        Self {
            pool: format!("CobaltDemoPool{suffix}"),
            job: format!("CobaltDemoJob{suffix}"),
            application: format!("application{suffix}"),
            input: format!("input{suffix}"),
            output: format!("output{suffix}"),
        }
    }
}

/// Per-step timings, printed at the end.
struct Steps {
    started: Instant,
    last: Instant,
    done: Vec<(&'static str, Duration)>,
}

impl Steps {
    fn new() -> Self {
        let now = Instant::now();
        Self {
            started: now,
            last: now,
            done: Vec::new(),
        }
    }

    fn finish(&mut self, name: &'static str) {
        let now = Instant::now();
        let took = now - self.last;
        println!("  ✓ {name} ({:.2} s)", took.as_secs_f64());
        self.done.push((name, took));
        self.last = now;
    }

    fn print(&self) {
        println!("\nElapsed time per step:");
        for (name, took) in &self.done {
            println!("  {:>7.3} s  {name}", took.as_secs_f64());
        }
        println!("  {:>7.3} s  total", self.started.elapsed().as_secs_f64());
    }
}

/// Runs the demo. `agent_exe` is the `cobalt` executable the embedded server starts as node
/// agents.
pub async fn run(args: DemoArgs, agent_exe: PathBuf) -> anyhow::Result<()> {
    let mut steps = Steps::new();
    let program = match &args.task_program {
        Some(p) => p.clone(),
        None => agent_exe.with_file_name(TASK_PROGRAM),
    };
    if !program.is_file() {
        bail!(
            "the demo's task program {} is missing: build it with `cargo build --release` (or give --task-program)",
            program.display()
        );
    }
    let inputs = read_inputs(args.input.as_deref())?;

    println!("Sample start: {}\n", Utc::now().format("%Y-%m-%d %H:%M:%S"));
    let target = connect(&args, agent_exe).await?;
    steps.finish(if target.embedded.is_some() {
        "start an embedded Cobalt server"
    } else {
        "connect"
    });
    let names = Names::new(target.embedded.is_none());
    let outcome = workflow(&args, &target, &names, &program, &inputs, &mut steps).await;
    if !args.keep {
        cleanup(&target, &names).await;
        steps.finish("delete the containers, the job and the pool");
    }
    if let Some((server, _dir)) = target.embedded {
        server.shutdown().await;
    }
    outcome?;
    steps.print();
    println!("\nSample end: {}", Utc::now().format("%Y-%m-%d %H:%M:%S"));
    Ok(())
}

fn read_inputs(dir: Option<&Path>) -> anyhow::Result<Vec<(String, String)>> {
    let Some(dir) = dir else {
        return Ok(INPUTS
            .iter()
            .map(|(name, text)| ((*name).to_owned(), (*text).to_owned()))
            .collect());
    };
    let mut inputs = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "txt") && path.is_file() {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            inputs.push((name, text));
        }
    }
    inputs.sort();
    if inputs.is_empty() {
        bail!("{} holds no .txt files to count", dir.display());
    }
    Ok(inputs)
}

async fn connect(args: &DemoArgs, agent_exe: PathBuf) -> anyhow::Result<Target> {
    let storage = SharedKeyCredential::new(&args.storage_account, &args.storage_key)?;
    let batch_credential = SharedKeyCredential::new(&args.account, &args.key)?;
    if let (Some(batch_url), Some(blob_url)) = (&args.batch_url, &args.blob_url) {
        return Ok(Target {
            batch: BatchClient::new(batch_url, batch_credential)?,
            blobs: BlobServiceClient::new(blob_url, storage)?,
            blob_endpoint: blob_url.trim_end_matches('/').to_owned(),
            embedded: None,
        });
    }
    let dir = tempfile::Builder::new()
        .prefix("cobalt-demo-")
        .tempdir()
        .context("creating the embedded server's data directory")?;
    let mut config = cobalt_server::ServerConfig::new(dir.path().to_owned());
    config.blob_port = 0;
    config.batch_port = 0;
    config.agent_exe = Some(agent_exe);
    let server = cobalt_server::Server::start(config)
        .await
        .context("starting the embedded server")?;
    let blob_endpoint = format!("http://{}/{}", server.blob_addr, args.storage_account);
    println!(
        "Embedded Cobalt server: Batch {} · Blob {blob_endpoint}",
        server.batch_url()
    );
    Ok(Target {
        batch: BatchClient::new(&server.batch_url(), batch_credential)?,
        blobs: BlobServiceClient::new(&blob_endpoint, storage)?,
        blob_endpoint,
        embedded: Some((server, dir)),
    })
}

/// The tutorial's steps 1 to 7; returns each output file's name and content.
async fn workflow(
    args: &DemoArgs,
    target: &Target,
    names: &Names,
    program: &Path,
    inputs: &[(String, String)],
    steps: &mut Steps,
) -> anyhow::Result<Vec<(String, String)>> {
    let blobs = &target.blobs;
    let batch = &target.batch;
    let expiry = Utc::now() + chrono::Duration::hours(2);

    // 1. Containers.
    let application = blobs.container_client(&names.application);
    let input = blobs.container_client(&names.input);
    let output = blobs.container_client(&names.output);
    for container in [&application, &input, &output] {
        container.create_if_not_exists().await?;
    }
    steps.finish("create the containers");

    // 2. Uploads, each with a read-only SAS URL.
    application
        .blob_client(TASK_PROGRAM)
        .upload_file(program, &TransferOptions::default(), &|_| {})
        .await
        .with_context(|| format!("uploading {}", program.display()))?;
    let program_url = application
        .blob_client(TASK_PROGRAM)
        .sas_url(SasPermissions::READ, expiry)?;
    let mut input_files = Vec::new();
    for (name, text) in inputs {
        let blob = input.blob_client(name);
        blob.upload(Bytes::from(text.clone())).await?;
        println!("    uploaded {name} to container [{}]", names.input);
        input_files.push(ResourceFile {
            http_url: Some(blob.sas_url(SasPermissions::READ, expiry)?),
            file_path: Some(name.clone()),
            ..Default::default()
        });
    }
    steps.finish("upload the task program and the input files");

    // 3. The pool: its start task copies the program into the node's shared directory.
    let image = batch
        .list_supported_images()
        .try_filter(|i| {
            std::future::ready(
                i.image_reference
                    .publisher
                    .as_deref()
                    .is_some_and(|p| p.eq_ignore_ascii_case("canonical")),
            )
        })
        .try_next()
        .await?
        .context("the Batch service offers no Ubuntu image")?;
    let pool = PoolSpec {
        id: names.pool.clone(),
        vm_size: "standard_d1_v2".into(),
        virtual_machine_configuration: Some(VirtualMachineConfiguration {
            image_reference: image.image_reference,
            node_agent_sku_id: image.node_agent_sku_id,
            ..Default::default()
        }),
        target_dedicated_nodes: Some(args.nodes),
        start_task: Some(StartTask {
            command_line: format!("/bin/sh -c \"cp -p {TASK_PROGRAM} $AZ_BATCH_NODE_SHARED_DIR\""),
            resource_files: vec![ResourceFile {
                http_url: Some(program_url),
                file_path: Some(TASK_PROGRAM.into()),
                file_mode: Some("0755".into()),
                ..Default::default()
            }],
            user_identity: Some(UserIdentity {
                auto_user: Some(AutoUser {
                    scope: Some(AutoUserScope::Pool),
                    elevation_level: Some(ElevationLevel::Admin),
                }),
                ..Default::default()
            }),
            wait_for_success: Some(true),
            ..Default::default()
        }),
        ..Default::default()
    };
    batch.add_pool(&pool).await?;
    steps.finish("create the pool");

    // 4. The job.
    let job = JobSpec {
        pool_info: PoolInformation {
            pool_id: Some(names.pool.clone()),
            ..Default::default()
        },
        ..Default::default()
    };
    batch.add_job(&names.job, &job).await?;
    steps.finish("create the job");

    // 5. One task per input file, with a write-only container SAS for its output.
    let output_sas = output.generate_sas(SasPermissions::WRITE, expiry)?;
    let tasks: Vec<TaskSpec> = input_files
        .into_iter()
        .enumerate()
        .map(|(i, file)| {
            let path = file.file_path.clone().unwrap_or_default();
            TaskSpec {
                id: format!("Task{i}"),
                command_line: format!(
                    "/bin/sh -c \"$AZ_BATCH_NODE_SHARED_DIR/{TASK_PROGRAM} --filepath {path} --numwords {} --storageaccount {} --storagecontainer {} --sastoken '{output_sas}' --blob-endpoint {}\"",
                    args.numwords, args.storage_account, names.output, target.blob_endpoint
                ),
                resource_files: vec![file],
                ..Default::default()
            }
        })
        .collect();
    batch.add_tasks(&names.job, &tasks).await?;
    steps.finish("add the tasks (add-collection)");

    // 6. Monitor until every task completes.
    monitor(batch, names, tasks.len(), Duration::from_secs(args.timeout)).await?;
    steps.finish("run the tasks on the nodes");

    // 7. Download the outputs and check them.
    let mut outputs = Vec::new();
    let mut listed = output.list_blobs(None);
    while let Some(item) = listed.try_next().await? {
        let data = output.blob_client(&item.name).download().await?;
        outputs.push((item.name, String::from_utf8_lossy(&data).into_owned()));
    }
    check_outputs(&outputs, inputs, args.numwords)?;
    for (name, text) in &outputs {
        println!("\n{name}:\n{}", text.trim_end());
    }
    println!();
    steps.finish("download and check the outputs");
    Ok(outputs)
}

/// Polls task and node states with a progress bar until all `total` tasks complete; fails
/// with the stderr of the first failed task.
async fn monitor(
    batch: &BatchClient,
    names: &Names,
    total: usize,
    timeout: Duration,
) -> anyhow::Result<()> {
    let bar = ProgressBar::new(total as u64);
    bar.set_style(
        ProgressStyle::with_template("  {spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.enable_steady_tick(Duration::from_millis(100));
    let deadline = Instant::now() + timeout;
    loop {
        let counts = batch.task_counts(&names.job).await?;
        let nodes: Vec<_> = batch
            .list_nodes(&names.pool, &ListOptions::default())
            .try_collect()
            .await?;
        let mut by_state: BTreeMap<&str, usize> = BTreeMap::new();
        for node in &nodes {
            *by_state.entry(node_state(node.state)).or_default() += 1;
        }
        let nodes_text: Vec<String> = by_state.iter().map(|(s, n)| format!("{n} {s}")).collect();
        bar.set_position(u64::try_from(counts.completed).unwrap_or(0));
        bar.set_message(format!(
            "tasks: {} active, {} running, {} completed · nodes: {}",
            counts.active,
            counts.running,
            counts.completed,
            if nodes_text.is_empty() {
                "allocating".to_owned()
            } else {
                nodes_text.join(", ")
            }
        ));
        if usize::try_from(counts.completed).unwrap_or(0) >= total {
            bar.finish();
            if counts.failed > 0 {
                return Err(failure_report(batch, names).await);
            }
            return Ok(());
        }
        if Instant::now() >= deadline {
            bar.abandon();
            bail!(
                "the tasks did not complete within {} s (see --timeout)",
                timeout.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn node_state(state: NodeState) -> &'static str {
    serde_json::to_value(state)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .map_or("unknown", |s| match s.as_str() {
            "idle" => "idle",
            "running" => "running",
            "creating" | "starting" => "starting",
            "waitingforstarttask" => "waiting for start task",
            "starttaskfailed" => "start task failed",
            _ => "other",
        })
}

/// The first failed task's failure and stderr.
async fn failure_report(batch: &BatchClient, names: &Names) -> anyhow::Error {
    let failed = ListOptions::default().filter("executionInfo/result eq 'failure'");
    let task = match batch.list_tasks(&names.job, &failed).try_next().await {
        Ok(Some(task)) => task,
        Ok(None) => return anyhow::anyhow!("a task failed"),
        Err(e) => return e.into(),
    };
    debug_assert_eq!(task.state, TaskState::Completed);
    let info = &task.execution_info;
    let stderr = batch
        .get_task_file(&names.job, &task.spec.id, "stderr.txt", None)
        .await
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    anyhow::anyhow!(
        "task {} failed ({}{}){}",
        task.spec.id,
        info.exit_code
            .map_or_else(|| "no exit code".to_owned(), |c| format!("exit code {c}")),
        info.failure_info
            .as_ref()
            .map(|f| format!(
                ", {}: {}",
                f.code.as_deref().unwrap_or_default(),
                f.message.as_deref().unwrap_or_default()
            ))
            .unwrap_or_default(),
        if stderr.is_empty() {
            String::new()
        } else {
            format!("; stderr:\n{stderr}")
        }
    )
}

/// Every input has its `_OUTPUT` file, whose words are the demo's own count.
fn check_outputs(
    outputs: &[(String, String)],
    inputs: &[(String, String)],
    numwords: usize,
) -> anyhow::Result<()> {
    for (name, text) in inputs {
        let expected_name = wordcount::output_name(Path::new(name));
        let expected_name = expected_name.to_string_lossy();
        let Some((_, report)) = outputs.iter().find(|(n, _)| *n == *expected_name) else {
            bail!("no output {expected_name} in the output container");
        };
        let expected = wordcount::top_words(text, numwords);
        // Six header lines (where the task ran), then `word: count` lines.
        let got: Vec<&str> = report.lines().skip(6).collect();
        let want: Vec<String> = expected.iter().map(|(w, c)| format!("{w}: {c}")).collect();
        if got != want {
            bail!("{expected_name} says {got:?}, the demo counts {want:?}");
        }
    }
    Ok(())
}

/// Steps 8 and 9: delete the containers, the job and the pool; report but do not fail.
async fn cleanup(target: &Target, names: &Names) {
    for container in [&names.application, &names.input, &names.output] {
        if let Err(e) = target
            .blobs
            .container_client(container)
            .delete_if_exists()
            .await
        {
            eprintln!("could not delete container {container}: {e}");
        }
    }
    for (what, result) in [
        ("job", target.batch.delete_job(&names.job).await),
        ("pool", target.batch.delete_pool(&names.pool).await),
    ] {
        if let Err(e) = result
            && !e.is_not_found()
        {
            eprintln!("could not delete the {what}: {e}");
        }
    }
}
