#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a failure is a test failure
//! The client against the real server (both services on ephemeral ports): every call, the
//! error mapping, SAS round trips, add-collection's chunking and duplicate handling, paging,
//! and retries against a server that answers 503 first.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use chrono::Utc;
use cobalt_client::batch::{BatchClient, ListOptions};
use cobalt_client::blob::{BlobServiceClient, ContainerClient, TransferOptions};
use cobalt_client::model::{
    ImageReference, JobSpec, PoolInformation, PoolSpec, TaskSpec, VirtualMachineConfiguration,
};
use cobalt_client::{ClientOptions, Error, RetryPolicy, SasPermissions, SharedKeyCredential};
use cobalt_model::{DEV_ACCOUNT_KEY, DEV_BATCH_ACCOUNT, DEV_STORAGE_ACCOUNT};
use cobalt_server::{Server, ServerConfig};
use futures_util::TryStreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn start() -> (Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::new(dir.path().to_owned());
    config.blob_port = 0;
    config.batch_port = 0;
    config.storage_accounts = None;
    config.batch_accounts = None;
    (Server::start(config).await.unwrap(), dir)
}

fn blobs(server: &Server) -> BlobServiceClient {
    let endpoint = format!("http://{}/{DEV_STORAGE_ACCOUNT}", server.blob_addr);
    let cs = format!(
        "DefaultEndpointsProtocol=http;AccountName={DEV_STORAGE_ACCOUNT};AccountKey={DEV_ACCOUNT_KEY};BlobEndpoint={endpoint};"
    );
    BlobServiceClient::from_connection_string(&cs).unwrap()
}

fn batch(server: &Server) -> BatchClient {
    BatchClient::new(
        &server.batch_url(),
        SharedKeyCredential::new(DEV_BATCH_ACCOUNT, DEV_ACCOUNT_KEY).unwrap(),
    )
    .unwrap()
}

#[tokio::test]
async fn containers_and_blobs() {
    let (server, _dir) = start().await;
    let service = blobs(&server);
    let c = service.container_client("input");
    assert!(c.create_if_not_exists().await.unwrap());
    assert!(!c.create_if_not_exists().await.unwrap());
    assert_eq!(
        c.create().await.unwrap_err().code(),
        Some("ContainerAlreadyExists")
    );
    assert!(c.exists().await.unwrap());

    let blob = c.blob_client("dir/hello world.txt");
    blob.upload(Bytes::from_static(b"hello")).await.unwrap();
    assert_eq!(&blob.download().await.unwrap()[..], b"hello");
    assert_eq!(&blob.download_range(1, 3).await.unwrap()[..], b"ell");
    let props = blob.properties().await.unwrap();
    assert_eq!(props.content_length, 5);
    assert_eq!(
        props.content_md5.as_deref(),
        Some("XUFAKrxLKna5cZ2REBfFkg==")
    );

    let names: Vec<String> = c
        .list_blobs(Some("dir/"))
        .map_ok(|b| b.name)
        .try_collect()
        .await
        .unwrap();
    assert_eq!(names, ["dir/hello world.txt"]);
    let containers: Vec<String> = service
        .list_containers(None)
        .map_ok(|c| c.name)
        .try_collect()
        .await
        .unwrap();
    assert_eq!(containers, ["input"]);

    blob.delete().await.unwrap();
    let missing = blob.download().await.unwrap_err();
    assert!(missing.is_not_found());
    assert_eq!(missing.code(), Some("BlobNotFound"));
    assert!(!blob.exists().await.unwrap());
    assert!(c.delete_if_exists().await.unwrap());
    assert!(!c.delete_if_exists().await.unwrap());
    server.shutdown().await;
}

#[tokio::test]
async fn files_go_up_in_blocks_and_come_down_whole() {
    let (server, dir) = start().await;
    let c = blobs(&server).container_client("files");
    c.create().await.unwrap();
    let data: Vec<u8> = (0..(3 << 20) + 12_345)
        .map(|i| (i * 7 % 251) as u8)
        .collect();
    let src = dir.path().join("src.bin");
    std::fs::write(&src, &data).unwrap();
    let options = TransferOptions {
        block_size: 1 << 20,
        concurrency: 3,
    };
    let sent = AtomicU64::new(0);
    let blob = c.blob_client("big.bin");
    let len = blob
        .upload_file(&src, &options, &|n| {
            sent.fetch_max(n, Ordering::Relaxed);
        })
        .await
        .unwrap();
    assert_eq!(len, data.len() as u64);
    assert_eq!(sent.load(Ordering::Relaxed), len);

    let dst = dir.path().join("dst.bin");
    let received = AtomicU64::new(0);
    blob.download_to_file(&dst, &|n| received.store(n, Ordering::Relaxed))
        .await
        .unwrap();
    assert_eq!(std::fs::read(&dst).unwrap(), data);
    assert_eq!(received.load(Ordering::Relaxed), len);
    assert!(!dir.path().join("dst.bin.part").exists());

    // A failed download leaves neither the file nor its partial copy.
    let gone = dir.path().join("gone.bin");
    let err = c
        .blob_client("missing")
        .download_to_file(&gone, &|_| {})
        .await
        .unwrap_err();
    assert!(err.is_not_found());
    assert!(!gone.exists() && !dir.path().join("gone.bin.part").exists());
    server.shutdown().await;
}

#[tokio::test]
async fn sas_tokens_grant_what_they_say() {
    let (server, _dir) = start().await;
    let c = blobs(&server).container_client("output");
    c.create().await.unwrap();
    let expiry = Utc::now() + chrono::Duration::hours(2);

    // A write-only container SAS uploads, but cannot read.
    let writer =
        ContainerClient::from_sas_url(&c.sas_url(SasPermissions::WRITE, expiry).unwrap()).unwrap();
    writer
        .blob_client("result.txt")
        .upload(Bytes::from_static(b"42"))
        .await
        .unwrap();
    let denied = writer
        .blob_client("result.txt")
        .download()
        .await
        .unwrap_err();
    assert_eq!(denied.status(), Some(403));
    assert_eq!(denied.code(), Some("AuthorizationPermissionMismatch"));

    // A read SAS for one blob reads it, over plain HTTP as a resource file would.
    let url = c
        .blob_client("result.txt")
        .sas_url(SasPermissions::READ, expiry)
        .unwrap();
    assert_eq!(
        reqwest::get(&url).await.unwrap().text().await.unwrap(),
        "42"
    );

    // A client without the key cannot make a SAS.
    assert!(matches!(
        writer.generate_sas(SasPermissions::READ, expiry),
        Err(Error::InvalidArgument(_))
    ));

    // The wrong key is refused with Azure's code and detail.
    let endpoint = format!("http://{}/{DEV_STORAGE_ACCOUNT}", server.blob_addr);
    let wrong = BlobServiceClient::new(
        &endpoint,
        SharedKeyCredential::new(DEV_STORAGE_ACCOUNT, "d3Jvbmcta2V5").unwrap(),
    )
    .unwrap();
    let err = wrong.container_client("output").exists().await.unwrap_err();
    assert_eq!(err.status(), Some(403));
    server.shutdown().await;
}

#[tokio::test]
async fn batch_entities_round_trip() {
    let (server, _dir) = start().await;
    let client = batch(&server);
    let pool = PoolSpec {
        id: "pool1".into(),
        vm_size: "standard_d1_v2".into(),
        target_dedicated_nodes: Some(0),
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
    let err = client.add_pool(&pool).await.unwrap_err();
    assert_eq!((err.status(), err.code()), (Some(409), Some("PoolExists")));
    assert!(client.pool_exists("pool1").await.unwrap());
    assert!(!client.pool_exists("nope").await.unwrap());
    assert_eq!(client.get_pool("pool1").await.unwrap().spec.id, "pool1");

    let job = JobSpec {
        pool_info: PoolInformation {
            pool_id: Some("pool1".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    client.add_job("job1", &job).await.unwrap();
    let jobs: Vec<_> = client
        .list_jobs(&ListOptions::default())
        .try_collect()
        .await
        .unwrap();
    assert_eq!(jobs.len(), 1);

    // 250 tasks go in three requests; one added twice still counts as added.
    let tasks: Vec<TaskSpec> = (0..250)
        .map(|i| TaskSpec {
            id: format!("t{i:03}"),
            command_line: "/bin/true".into(),
            ..Default::default()
        })
        .collect();
    client.add_task("job1", &tasks[0]).await.unwrap();
    client.add_tasks("job1", &tasks).await.unwrap();
    let listed: Vec<_> = client
        .list_tasks("job1", &ListOptions::default().max_results(40))
        .try_collect()
        .await
        .unwrap();
    assert_eq!(listed.len(), 250);
    let counts = client.task_counts("job1").await.unwrap();
    assert_eq!(counts.active, 250);
    let filtered: Vec<_> = client
        .list_tasks("job1", &ListOptions::default().filter("id eq 't007'"))
        .try_collect()
        .await
        .unwrap();
    assert_eq!(filtered.len(), 1);

    // A task the service refuses is reported with its id and code; the others are added.
    let bad = vec![
        TaskSpec {
            id: "ok1".into(),
            command_line: "/bin/true".into(),
            ..Default::default()
        },
        TaskSpec {
            id: "bad".into(),
            ..Default::default()
        },
    ];
    match client.add_tasks("job1", &bad).await {
        Err(Error::TasksNotAdded(failures)) => {
            assert_eq!(failures.len(), 1);
            assert_eq!(failures[0].task_id, "bad");
            assert_eq!(failures[0].error.code, "MissingRequiredProperty");
        }
        other => panic!("expected TasksNotAdded, got {other:?}"),
    }
    client.get_task("job1", "ok1").await.unwrap();

    client.terminate_task("job1", "t001").await.unwrap();
    client.delete_task("job1", "t002").await.unwrap();
    let err = client.get_task("job1", "t002").await.unwrap_err();
    assert_eq!(err.code(), Some("TaskNotFound"));
    client.terminate_job("job1", Some("done")).await.unwrap();
    client.delete_job("job1").await.unwrap();
    client.delete_pool("pool1").await.unwrap();
    let err = client.get_job("nope").await.unwrap_err();
    assert_eq!((err.status(), err.code()), (Some(404), Some("JobNotFound")));
    assert!(err.to_string().contains("JobNotFound"));

    let images: Vec<_> = client.list_supported_images().try_collect().await.unwrap();
    assert!(!images.is_empty());

    // The wrong key: 403 AuthenticationFailed with the service's detail.
    let wrong = BatchClient::new(
        &server.batch_url(),
        SharedKeyCredential::new(DEV_BATCH_ACCOUNT, "d3Jvbmcta2V5").unwrap(),
    )
    .unwrap();
    let err = wrong.get_pool("pool1").await.unwrap_err();
    assert_eq!(err.code(), Some("AuthenticationFailed"));
    assert!(
        err.service()
            .unwrap()
            .detail("AuthenticationErrorDetail")
            .is_some()
    );
    server.shutdown().await;
}

/// A server that answers 503 (with `Retry-After: 0`) `failures` times, then 404 with a Batch
/// error body; it counts the requests it saw.
async fn flaky(failures: usize) -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(AtomicUsize::new(0));
    let count = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let count = count.clone();
            tokio::spawn(async move {
                let mut buf = vec![0; 8192];
                loop {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                    let n = count.fetch_add(1, Ordering::SeqCst);
                    let reply = if n < failures {
                        "HTTP/1.1 503 Service Unavailable\r\nretry-after: 0\r\ncontent-length: 0\r\n\r\n".to_owned()
                    } else {
                        let body = r#"{"code":"PoolNotFound","message":{"lang":"en-US","value":"The specified pool does not exist."}}"#;
                        format!(
                            "HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                            body.len()
                        )
                    };
                    if socket.write_all(reply.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (url, seen)
}

#[tokio::test]
async fn retries_until_the_service_answers() {
    let (url, seen) = flaky(2).await;
    let options = ClientOptions {
        retry: RetryPolicy {
            max_retries: 3,
            initial_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(50),
        },
        ..Default::default()
    };
    let credential = SharedKeyCredential::new(DEV_BATCH_ACCOUNT, DEV_ACCOUNT_KEY).unwrap();
    let client = BatchClient::with_options(&url, credential.clone(), &options).unwrap();
    let err = client.get_pool("p").await.unwrap_err();
    assert_eq!(err.code(), Some("PoolNotFound"));
    assert_eq!(seen.load(Ordering::SeqCst), 3);

    // Without retries the first 503 is the answer.
    let (url, seen) = flaky(5).await;
    let options = ClientOptions {
        retry: RetryPolicy::none(),
        ..Default::default()
    };
    let client = BatchClient::with_options(&url, credential, &options).unwrap();
    assert_eq!(client.get_pool("p").await.unwrap_err().status(), Some(503));
    assert_eq!(seen.load(Ordering::SeqCst), 1);
}
