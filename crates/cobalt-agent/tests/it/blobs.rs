//! Resource files and output files against the real Blob service.

use cobalt_agent::codes;
use cobalt_model::batch::{ResourceFile, TaskResult};
use std::os::unix::fs::PermissionsExt;

use crate::harness::{Blobs, connected, http_file, output, task};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resource_files_are_downloaded_before_the_command() {
    let blobs = Blobs::start().await;
    blobs.create_container("inputs").await;
    blobs.put("inputs", "data/a.txt", b"AAA").await;
    blobs.put("inputs", "data/sub/b b.txt", b"BBB").await;
    blobs.put("inputs", "other/c.txt", b"CCC").await;
    blobs
        .put(
            "inputs",
            "run.sh",
            b"#!/bin/sh\necho script-ran\ncat in/data/a.txt\n",
        )
        .await;
    let (_server, mut conn, agent) = connected().await;

    let mut a = task(1, "bin/run.sh");
    a.resource_files = vec![
        http_file(
            &blobs.blob_url("inputs", "run.sh"),
            "bin/run.sh",
            Some("0755"),
        ),
        ResourceFile {
            storage_container_url: Some(blobs.container_url("inputs")),
            blob_prefix: Some("data/".into()),
            file_path: Some("in".into()),
            ..Default::default()
        },
        ResourceFile {
            storage_container_url: Some(blobs.container_url("inputs")),
            blob_prefix: Some("other".into()),
            ..Default::default()
        },
    ];
    conn.run(vec![a]).await;
    let end = conn.ended(1).await;
    assert_eq!(
        (end.exit_code, end.failure_info.clone()),
        (Some(0), None),
        "{end:?}"
    );
    assert_eq!(agent.stdout(1), "script-ran\nAAA");
    assert_eq!(agent.wd_file(1, "in/data/sub/b b.txt"), "BBB");
    assert_eq!(agent.wd_file(1, "other/c.txt"), "CCC");
    assert!(!agent.task_dir(1).join("wd/in/other").exists());
    let mode = std::fs::metadata(agent.task_dir(1).join("wd/bin/run.sh"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o755);
    blobs.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_download_is_a_pre_processing_error_and_the_command_never_runs() {
    let blobs = Blobs::start().await;
    blobs.create_container("inputs").await;
    blobs.put("inputs", "ok.txt", b"ok").await;
    let (_server, mut conn, agent) = connected().await;

    let mut missing = task(1, "touch ran");
    missing.resource_files = vec![
        http_file(&blobs.blob_url("inputs", "ok.txt"), "ok.txt", None),
        http_file(&blobs.blob_url("inputs", "missing.txt"), "m.txt", None),
    ];
    let mut denied = task(2, "touch ran");
    let bad_sas = blobs
        .blob_url("inputs", "ok.txt")
        .replace("sig=", "sig=AAAA");
    denied.resource_files = vec![http_file(&bad_sas, "ok.txt", None)];
    let mut escaping = task(3, "touch ran");
    escaping.resource_files = vec![http_file(&blobs.blob_url("inputs", "ok.txt"), "../x", None)];
    let mut no_container = task(4, "touch ran");
    no_container.resource_files = vec![ResourceFile {
        storage_container_url: Some(blobs.container_url("nosuchcontainer")),
        ..Default::default()
    }];
    conn.run(vec![missing, denied, escaping, no_container])
        .await;

    for (run, code) in [
        (1, codes::BLOB_NOT_FOUND),
        (2, codes::BLOB_ACCESS_DENIED),
        (3, codes::RESOURCE_FILE_CREATE_FAILED),
        (4, codes::BLOB_NOT_FOUND),
    ] {
        let end = conn.ended(run).await;
        assert!(end.pre_processing_error, "{end:?}");
        assert_eq!(
            (end.exit_code, end.start_time, end.result),
            (None, None, TaskResult::Failure)
        );
        let info = end.failure_info.unwrap();
        assert_eq!(info.code.as_deref(), Some(code), "{run}");
        let message = info.message.unwrap_or_default();
        assert!(!message.contains("sig="), "the SAS leaked: {message}");
        assert!(!conn.was_started(run));
        assert!(!agent.task_dir(run).join("wd/ran").exists());
        if run == 1 {
            let detail = info.details.iter().find(|d| d.name == "FilePath").unwrap();
            assert_eq!(detail.value.as_deref(), Some("m.txt"));
        }
    }
    blobs.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_files_are_uploaded_by_pattern_and_condition() {
    let blobs = Blobs::start().await;
    blobs.create_container("outputs").await;
    let (_server, mut conn, agent) = connected().await;
    let container = blobs.container_url("outputs");

    let mut a = task(
        1,
        "/bin/sh -c 'mkdir -p out/sub; echo 1 > out/a.txt; echo 2 > out/sub/b.txt; echo 3 > out/c.bin; echo hello'",
    );
    a.output_files = vec![
        output("out/**/*.txt", &container, Some("results"), "tasksuccess"),
        output(
            "../stdout.txt",
            &container,
            Some("logs/stdout.txt"),
            "taskcompletion",
        ),
        output("**/*.bin", &container, None, "taskfailure"),
        output("out/c.bin", &container, None, "tasksuccess"),
    ];
    conn.run(vec![a]).await;
    let end = conn.ended(1).await;
    assert_eq!(
        (end.exit_code, end.result, end.file_upload_error),
        (Some(0), TaskResult::Success, false),
        "{end:?}"
    );
    let mut names = blobs.list("outputs").await;
    names.sort();
    assert_eq!(
        names,
        [
            "c.bin",
            "logs/stdout.txt",
            "results/a.txt",
            "results/sub/b.txt"
        ]
    );
    assert_eq!(
        blobs.get("outputs", "results/sub/b.txt").await.as_deref(),
        Some("2\n")
    );
    assert_eq!(
        blobs.get("outputs", "logs/stdout.txt").await.as_deref(),
        Some("hello\n")
    );
    let log = std::fs::read_to_string(agent.task_dir(1).join("fileuploadout.txt")).unwrap();
    assert_eq!(log.lines().count(), 4, "{log}");
    assert!(!log.contains("sig="), "{log}");

    // A failing task uploads only what its conditions allow; an upload that fails makes the
    // run a file-upload error.
    let mut b = task(2, "/bin/sh -c 'echo x > f.bin; exit 2'");
    b.output_files = vec![
        output("*.bin", &container, Some("failed"), "taskfailure"),
        output("*.bin", &container, Some("never"), "tasksuccess"),
        output(
            "../stderr.txt",
            &blobs.container_url("nosuchcontainer"),
            None,
            "taskcompletion",
        ),
    ];
    conn.run(vec![b]).await;
    let end = conn.ended(2).await;
    assert_eq!(
        (end.exit_code, end.result, end.file_upload_error),
        (Some(2), TaskResult::Failure, true)
    );
    assert_eq!(
        end.failure_info.unwrap().code.as_deref(),
        Some(codes::FILE_UPLOAD_MISC_ERROR)
    );
    assert_eq!(
        blobs.get("outputs", "failed/f.bin").await.as_deref(),
        Some("x\n")
    );
    assert_eq!(blobs.get("outputs", "never/f.bin").await, None);
    let errors = std::fs::read_to_string(agent.task_dir(2).join("fileuploaderr.txt")).unwrap();
    assert!(errors.contains("ContainerNotFound"), "{errors}");
    blobs.stop().await;
}
