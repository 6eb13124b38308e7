#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a failure is a test failure
//! Task files larger than what a node agent answers in one read (8 MiB): the real server in
//! process, its pool served by real local agents (this package's `cobalt` binary), and the
//! client reading a 20 MiB file a task wrote, whole, in ranges and by HEAD.

use std::time::{Duration, Instant};

use cobalt_client::SharedKeyCredential;
use cobalt_client::batch::BatchClient;
use cobalt_client::model::{
    ImageReference, JobSpec, PoolInformation, PoolSpec, TaskSpec, VirtualMachineConfiguration,
};
use cobalt_model::batch::TaskState;
use cobalt_model::{DEV_ACCOUNT_KEY, DEV_BATCH_ACCOUNT};
use cobalt_server::{Server, ServerConfig};

const SIZE: u64 = 20 << 20;

async fn start() -> (Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::new(dir.path().to_owned());
    config.blob_port = 0;
    config.batch_port = 0;
    config.storage_accounts = None;
    config.batch_accounts = None;
    config.agent_exe = Some(env!("CARGO_BIN_EXE_cobalt").into());
    (Server::start(config).await.unwrap(), dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_file_larger_than_one_agent_read_comes_whole() {
    let (server, _dir) = start().await;
    let client = BatchClient::new(
        &server.batch_url(),
        SharedKeyCredential::new(DEV_BATCH_ACCOUNT, DEV_ACCOUNT_KEY).unwrap(),
    )
    .unwrap();
    let pool = PoolSpec {
        id: "p1".into(),
        vm_size: "standard_d1_v2".into(),
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
    };
    client.add_pool(&pool).await.unwrap();
    let job = JobSpec {
        pool_info: PoolInformation {
            pool_id: Some("p1".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    client.add_job("j1", &job).await.unwrap();
    let task = TaskSpec {
        id: "t1".into(),
        command_line: format!("/bin/sh -c 'head -c {SIZE} /dev/urandom > big.bin'"),
        ..Default::default()
    };
    client.add_task("j1", &task).await.unwrap();

    let deadline = Instant::now() + Duration::from_secs(120);
    let task = loop {
        let task = client.get_task("j1", "t1").await.unwrap();
        if task.state == TaskState::Completed {
            break task;
        }
        assert!(Instant::now() < deadline, "the task did not complete");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(task.execution_info.exit_code, Some(0), "{task:?}");

    // HEAD reports the whole size.
    let size = client
        .task_file_size("j1", "t1", "wd/big.bin")
        .await
        .unwrap();
    assert_eq!(size, SIZE);

    // The whole file, and the same bytes read in ranges of at most 3 MiB.
    let whole = client
        .get_task_file("j1", "t1", "wd/big.bin", None)
        .await
        .unwrap();
    assert_eq!(whole.len() as u64, SIZE);
    let mut pieces = Vec::with_capacity(whole.len());
    let mut offset = 0;
    while offset < SIZE {
        let end = (offset + (3 << 20)).min(SIZE);
        let piece = client
            .get_task_file("j1", "t1", "wd/big.bin", Some(offset..end))
            .await
            .unwrap();
        assert_eq!(piece.len() as u64, end - offset);
        pieces.extend_from_slice(&piece);
        offset = end;
    }
    assert!(
        pieces == whole[..],
        "ranged reads differ from the whole file"
    );

    // A range larger than one agent read, not aligned on one.
    let range = client
        .get_task_file("j1", "t1", "wd/big.bin", Some((5 << 20)..(15 << 20)))
        .await
        .unwrap();
    assert_eq!(range.len(), 10 << 20);
    assert!(
        range[..] == whole[5 << 20..15 << 20],
        "the range is not exact"
    );

    // An open range to the end, and a range reaching past it.
    let tail = client
        .get_task_file("j1", "t1", "wd/big.bin", Some((SIZE - 100)..u64::MAX))
        .await
        .unwrap();
    assert!(tail[..] == whole[whole.len() - 100..]);

    // Missing files are still 404.
    let err = client
        .get_task_file("j1", "t1", "wd/nope.bin", None)
        .await
        .unwrap_err();
    assert_eq!(
        (err.status(), err.code()),
        (Some(404), Some("FileNotFound"))
    );

    client.delete_pool("p1").await.unwrap();
    server.shutdown().await;
}
