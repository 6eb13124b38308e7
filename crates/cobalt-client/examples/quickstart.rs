//! Upload an input file, run a task on it in a pool, read its output: the shortest useful
//! tour of `cobalt-client`. Against a local `cobalt serve` by default; set `COBALT_BATCH_URL`,
//! `COBALT_ACCOUNT`, `COBALT_KEY` and `AZURE_STORAGE_CONNECTION_STRING` for another service
//! (Azure included).
//!
//! ```sh
//! cobalt serve --data-dir /tmp/cobalt &
//! cargo run -p cobalt-client --example quickstart
//! ```

use std::time::Duration;

use bytes::Bytes;
use chrono::Utc;
use cobalt_client::batch::{BatchClient, ListOptions};
use cobalt_client::blob::BlobServiceClient;
use cobalt_client::model::{
    ImageReference, JobSpec, PoolInformation, PoolSpec, ResourceFile, TaskSpec, TaskState,
    VirtualMachineConfiguration,
};
use cobalt_client::{SasPermissions, SharedKeyCredential};
use futures_util::TryStreamExt;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let env = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.into());
    let blobs = BlobServiceClient::from_connection_string(&env(
        "AZURE_STORAGE_CONNECTION_STRING",
        "UseDevelopmentStorage=true",
    ))?;
    let batch = BatchClient::new(
        &env("COBALT_BATCH_URL", cobalt_client::batch::DEV_BATCH_URL),
        SharedKeyCredential::new(
            env("COBALT_ACCOUNT", cobalt_model::DEV_BATCH_ACCOUNT),
            &env("COBALT_KEY", cobalt_model::DEV_ACCOUNT_KEY),
        )?,
    )?;

    // An input file, readable by the task through a SAS URL.
    let input = blobs.container_client("quickstart");
    input.create_if_not_exists().await?;
    let blob = input.blob_client("greeting.txt");
    blob.upload(Bytes::from_static(b"hello from a blob\n"))
        .await?;
    let url = blob.sas_url(
        SasPermissions::READ,
        Utc::now() + chrono::Duration::hours(1),
    )?;

    // A pool of one node, a job, a task.
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let (pool_id, job_id) = (
        format!("quickstart-{suffix}"),
        format!("quickstart-{suffix}"),
    );
    batch
        .add_pool(&PoolSpec {
            id: pool_id.clone(),
            vm_size: "standard_d2s_v3".into(),
            target_dedicated_nodes: Some(1),
            virtual_machine_configuration: Some(VirtualMachineConfiguration {
                image_reference: ImageReference {
                    publisher: Some("canonical".into()),
                    offer: Some("0001-com-ubuntu-server-jammy".into()),
                    sku: Some("22_04-lts".into()),
                    ..Default::default()
                },
                node_agent_sku_id: "batch.node.ubuntu 22.04".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await?;
    let job = JobSpec {
        pool_info: PoolInformation {
            pool_id: Some(pool_id.clone()),
            ..Default::default()
        },
        ..Default::default()
    };
    batch.add_job(&job_id, &job).await?;
    let task = TaskSpec {
        id: "greet".into(),
        command_line: "/bin/cat greeting.txt".into(),
        resource_files: vec![ResourceFile {
            http_url: Some(url),
            file_path: Some("greeting.txt".into()),
            ..Default::default()
        }],
        ..Default::default()
    };
    batch.add_tasks(&job_id, &[task]).await?;

    // Wait for it, then read its stdout from the node.
    let done = ListOptions::default().filter("state eq 'completed'");
    while batch
        .list_tasks(&job_id, &done)
        .try_collect::<Vec<_>>()
        .await?
        .is_empty()
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let task = batch.get_task(&job_id, "greet").await?;
    assert_eq!(task.state, TaskState::Completed);
    let stdout = batch
        .get_task_file(&job_id, "greet", "stdout.txt", None)
        .await?;
    print!(
        "task greet exited with {:?}: {}",
        task.execution_info.exit_code,
        String::from_utf8_lossy(&stdout)
    );

    batch.delete_job(&job_id).await?;
    batch.delete_pool(&pool_id).await?;
    input.delete().await?;
    Ok(())
}
