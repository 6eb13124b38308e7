#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a failure is a test failure
//! Integration tests of the Batch control plane through the real server: durability across a
//! restart, conditional requests, add-collection limits, validation errors, filtered paging
//! and job schedules creating jobs. Requests are signed as the SDKs sign them.

use std::path::Path;
use std::time::Duration;

use cobalt_batch_api::auth::{SignedRequest, strings_to_sign};
use cobalt_model::{AccountKey, DEV_ACCOUNT_KEY, DEV_BATCH_ACCOUNT};
use cobalt_server::{Server, ServerConfig};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const V: &str = "api-version=2024-02-01.19.0";

async fn start_in(dir: &Path) -> Server {
    let mut config = ServerConfig::new(dir.to_owned());
    config.blob_port = 0;
    config.batch_port = 0;
    config.batch_accounts = None;
    Server::start(config).await.unwrap()
}

struct Reply {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

/// Sends a signed request with an optional JSON body and extra headers.
async fn call(
    server: &Server,
    method: Method,
    path_and_query: &str,
    body: Option<&Value>,
    extra: &[(&str, &str)],
) -> Reply {
    let client = reqwest::Client::new();
    let bytes = body.map(|b| b.to_string()).unwrap_or_default();
    let mut builder = client
        .request(
            method.clone(),
            format!("{}{path_and_query}", server.batch_url()),
        )
        .header(
            "ocp-date",
            httpdate::fmt_http_date(std::time::SystemTime::now()),
        );
    if body.is_some() {
        builder = builder
            .header("content-type", "application/json; odata=minimalmetadata")
            .header("content-length", bytes.len().to_string());
    } else if method != Method::GET && method != Method::HEAD {
        builder = builder.header("content-length", "0");
    }
    for (k, v) in extra {
        builder = builder.header(*k, *v);
    }
    let mut req = builder.body(bytes).build().unwrap();
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    let signed = SignedRequest {
        method: &method,
        headers: req.headers(),
        raw_path: path,
        raw_query: Some(query),
    };
    let sts = strings_to_sign(&signed, DEV_BATCH_ACCOUNT).remove(0);
    let sig = AccountKey::from_base64(DEV_BATCH_ACCOUNT, DEV_ACCOUNT_KEY)
        .unwrap()
        .sign(&sts);
    req.headers_mut().insert(
        "authorization",
        format!("SharedKey {DEV_BATCH_ACCOUNT}:{sig}")
            .parse()
            .unwrap(),
    );
    let r = client.execute(req).await.unwrap();
    let status = r.status();
    let headers = r.headers().clone();
    let text = r.text().await.unwrap();
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap()
    };
    Reply {
        status,
        headers,
        body,
    }
}

fn pool_body(id: &str, nodes: i32) -> Value {
    json!({
        "id": id, "vmSize": "standard_d2s_v3", "targetDedicatedNodes": nodes,
        "virtualMachineConfiguration": {
            "imageReference": {"publisher": "canonical", "offer": "0001-com-ubuntu-server-jammy", "sku": "22_04-lts"},
            "nodeAgentSKUId": "batch.node.ubuntu 22.04"
        }
    })
}

async fn add_tasks(server: &Server, job: &str, ids: impl Iterator<Item = String>) -> Reply {
    let tasks: Vec<Value> = ids
        .map(|id| json!({"id": id, "commandLine": "echo hi"}))
        .collect();
    call(
        server,
        Method::POST,
        &format!("/jobs/{job}/addtaskcollection?{V}"),
        Some(&json!({"value": tasks})),
        &[],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_state_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_in(dir.path()).await;
    assert_eq!(
        call(
            &server,
            Method::POST,
            &format!("/pools?{V}"),
            Some(&pool_body("P1", 2)),
            &[]
        )
        .await
        .status,
        StatusCode::CREATED
    );
    let job = json!({"id": "job1", "poolInfo": {"poolId": "P1"}, "priority": 7});
    assert_eq!(
        call(
            &server,
            Method::POST,
            &format!("/jobs?{V}"),
            Some(&job),
            &[]
        )
        .await
        .status,
        StatusCode::CREATED
    );
    let r = add_tasks(&server, "job1", (0..100).map(|i| format!("t{i:03}"))).await;
    assert!(
        r.body["value"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["status"] == "success")
    );
    let before = call(
        &server,
        Method::GET,
        &format!("/jobs/job1/tasks/t042?{V}"),
        None,
        &[],
    )
    .await;
    server.shutdown().await;

    let server = start_in(dir.path()).await;
    let pool = call(&server, Method::GET, &format!("/pools/p1?{V}"), None, &[]).await;
    assert_eq!(pool.status, StatusCode::OK);
    assert_eq!(
        pool.body["id"], "P1",
        "ids keep their case and match ignoring it"
    );
    assert_eq!(pool.body["targetDedicatedNodes"], 2);
    let job = call(&server, Method::GET, &format!("/jobs/job1?{V}"), None, &[]).await;
    assert_eq!(job.body["priority"], 7);
    let after = call(
        &server,
        Method::GET,
        &format!("/jobs/job1/tasks/t042?{V}"),
        None,
        &[],
    )
    .await;
    let without_url = |mut v: Value| {
        v.as_object_mut().unwrap().remove("url");
        v
    };
    assert_eq!(without_url(after.body), without_url(before.body));
    assert_eq!(after.headers["etag"], before.headers["etag"]);
    let counts = call(
        &server,
        Method::GET,
        &format!("/jobs/job1/taskcounts?{V}"),
        None,
        &[],
    )
    .await;
    assert_eq!(counts.body["taskCounts"]["active"], 100);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditional_headers_guard_reads_and_writes() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_in(dir.path()).await;
    let created = call(
        &server,
        Method::POST,
        &format!("/pools?{V}"),
        Some(&pool_body("cond", 0)),
        &[],
    )
    .await;
    let etag = created.headers["etag"].to_str().unwrap().to_owned();
    let lm = created.headers["last-modified"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(lm.ends_with(" GMT"), "Last-Modified is RFC 1123: {lm}");
    let path = format!("/pools/cond?{V}");
    let r = call(
        &server,
        Method::GET,
        &path,
        None,
        &[("if-none-match", &etag)],
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_MODIFIED);
    let r = call(&server, Method::GET, &path, None, &[("if-match", &etag)]).await;
    assert_eq!(r.status, StatusCode::OK);
    let patch = json!({"metadata": [{"name": "k", "value": "v"}]});
    let r = call(
        &server,
        Method::PATCH,
        &path,
        Some(&patch),
        &[("if-match", "0x8D0000000000000")],
    )
    .await;
    assert_eq!(
        (r.status, r.body["code"].as_str()),
        (StatusCode::PRECONDITION_FAILED, Some("ConditionNotMet"))
    );
    let r = call(
        &server,
        Method::PATCH,
        &path,
        Some(&patch),
        &[("if-match", &etag)],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_ne!(
        r.headers["etag"].to_str().unwrap(),
        etag,
        "a write changes the ETag"
    );
    let r = call(
        &server,
        Method::DELETE,
        &path,
        None,
        &[("if-unmodified-since", "Mon, 01 Jan 2001 00:00:00 GMT")],
    )
    .await;
    assert_eq!(r.status, StatusCode::PRECONDITION_FAILED);
    let r = call(&server, Method::GET, &path, None, &[]).await;
    assert_eq!(r.body["metadata"][0]["value"], "v");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_collection_limits_and_per_task_results() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_in(dir.path()).await;
    let job = json!({"id": "coll", "poolInfo": {"poolId": "nowhere"}});
    call(
        &server,
        Method::POST,
        &format!("/jobs?{V}"),
        Some(&job),
        &[],
    )
    .await;
    let r = add_tasks(&server, "coll", (0..101).map(|i| format!("t{i}"))).await;
    assert_eq!(
        (r.status, r.body["code"].as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, Some("RequestBodyTooLarge"))
    );
    let big = "x".repeat(1 << 20);
    let tasks = json!({"value": [{"id": "big", "commandLine": big}]});
    let r = call(
        &server,
        Method::POST,
        &format!("/jobs/coll/addtaskcollection?{V}"),
        Some(&tasks),
        &[],
    )
    .await;
    assert_eq!(r.body["code"], "RequestBodyTooLarge");
    let r = add_tasks(&server, "coll", ["a", "b"].into_iter().map(str::to_owned)).await;
    assert_eq!(r.status, StatusCode::OK);
    let mixed = json!({"value": [
        {"id": "A", "commandLine": "x"},
        {"id": "c", "commandLine": "x"},
        {"id": "bad id", "commandLine": "x"},
        {"id": "d"},
    ]});
    let r = call(
        &server,
        Method::POST,
        &format!("/jobs/coll/addtaskcollection?{V}"),
        Some(&mixed),
        &[],
    )
    .await;
    let results = r.body["value"].as_array().unwrap();
    let summary: Vec<(&str, &str, &str)> = results
        .iter()
        .map(|t| {
            (
                t["taskId"].as_str().unwrap(),
                t["status"].as_str().unwrap(),
                t["error"]["code"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("A", "clienterror", "TaskExists"),
            ("c", "success", ""),
            ("bad id", "clienterror", "InvalidPropertyValue"),
            ("d", "clienterror", "MissingRequiredProperty"),
        ]
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validation_and_state_errors_use_azure_codes() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_in(dir.path()).await;
    let check = |r: Reply, status: StatusCode, code: &str| {
        assert_eq!(
            (r.status, r.body["code"].as_str().unwrap_or("")),
            (status, code),
            "{}",
            r.body
        );
        r.body
    };
    let mut no_size = pool_body("p", 0);
    no_size.as_object_mut().unwrap().remove("vmSize");
    let body = check(
        call(
            &server,
            Method::POST,
            &format!("/pools?{V}"),
            Some(&no_size),
            &[],
        )
        .await,
        StatusCode::BAD_REQUEST,
        "MissingRequiredProperty",
    );
    assert_eq!(
        body["values"][0],
        json!({"key": "PropertyName", "value": "vmSize"})
    );
    let long = pool_body(&"x".repeat(65), 0);
    check(
        call(
            &server,
            Method::POST,
            &format!("/pools?{V}"),
            Some(&long),
            &[],
        )
        .await,
        StatusCode::BAD_REQUEST,
        "InvalidPropertyValue",
    );
    let typed = json!({"id": "j", "poolInfo": {"poolId": "p"}, "priority": "high"});
    let body = check(
        call(
            &server,
            Method::POST,
            &format!("/jobs?{V}"),
            Some(&typed),
            &[],
        )
        .await,
        StatusCode::BAD_REQUEST,
        "InvalidPropertyValue",
    );
    assert_eq!(body["values"][0]["value"], "priority");
    let range = json!({"id": "j", "poolInfo": {"poolId": "p"}, "priority": 1001});
    check(
        call(
            &server,
            Method::POST,
            &format!("/jobs?{V}"),
            Some(&range),
            &[],
        )
        .await,
        StatusCode::BAD_REQUEST,
        "InvalidPropertyValue",
    );
    let r = call(&server, Method::POST, &format!("/jobs?{V}"), None, &[]).await;
    check(r, StatusCode::BAD_REQUEST, "InvalidRequestBody");
    let job = json!({"id": "Done", "poolInfo": {"poolId": "p"}});
    assert_eq!(
        call(
            &server,
            Method::POST,
            &format!("/jobs?{V}"),
            Some(&job),
            &[]
        )
        .await
        .status,
        StatusCode::CREATED
    );
    let dup = json!({"id": "done", "poolInfo": {"poolId": "p"}});
    check(
        call(
            &server,
            Method::POST,
            &format!("/jobs?{V}"),
            Some(&dup),
            &[],
        )
        .await,
        StatusCode::CONFLICT,
        "JobExists",
    );
    let deps = json!({"id": "t", "commandLine": "x", "dependsOn": {"taskIds": ["a"]}});
    check(
        call(
            &server,
            Method::POST,
            &format!("/jobs/done/tasks?{V}"),
            Some(&deps),
            &[],
        )
        .await,
        StatusCode::BAD_REQUEST,
        "TaskDependenciesNotSpecifiedOnJob",
    );
    assert_eq!(
        call(
            &server,
            Method::POST,
            &format!("/jobs/done/terminate?{V}"),
            None,
            &[]
        )
        .await
        .status,
        StatusCode::ACCEPTED
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    let r = call(&server, Method::GET, &format!("/jobs/done?{V}"), None, &[]).await;
    assert_eq!(
        (
            r.body["state"].as_str(),
            r.body["executionInfo"]["terminateReason"].as_str()
        ),
        (Some("completed"), Some("UserTerminate"))
    );
    let task = json!({"id": "late", "commandLine": "x"});
    check(
        call(
            &server,
            Method::POST,
            &format!("/jobs/done/tasks?{V}"),
            Some(&task),
            &[],
        )
        .await,
        StatusCode::CONFLICT,
        "JobCompleted",
    );
    check(
        call(
            &server,
            Method::POST,
            &format!("/jobs/nope/tasks?{V}"),
            Some(&task),
            &[],
        )
        .await,
        StatusCode::NOT_FOUND,
        "JobNotFound",
    );
    check(
        call(
            &server,
            Method::GET,
            &format!("/certificates?{V}"),
            None,
            &[],
        )
        .await,
        StatusCode::BAD_REQUEST,
        "CertificateRetired",
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filtered_pages_follow_next_links_with_the_query() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_in(dir.path()).await;
    let job = json!({"id": "pg", "poolInfo": {"poolId": "p"}});
    call(
        &server,
        Method::POST,
        &format!("/jobs?{V}"),
        Some(&job),
        &[],
    )
    .await;
    add_tasks(&server, "pg", (0..30).map(|i| format!("t{i:02}"))).await;
    for i in (0..30).step_by(3) {
        let r = call(
            &server,
            Method::POST,
            &format!("/jobs/pg/tasks/t{i:02}/terminate?{V}"),
            None,
            &[],
        )
        .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT);
    }
    let mut next = format!(
        "/jobs/pg/tasks?{V}&$filter=state%20eq%20%27completed%27&$select=id,state&maxresults=4"
    );
    let mut ids = Vec::new();
    let mut pages = 0;
    loop {
        let r = call(&server, Method::GET, &next, None, &[]).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        pages += 1;
        for t in r.body["value"].as_array().unwrap() {
            assert_eq!(
                t.as_object().unwrap().len(),
                2,
                "$select keeps id and state: {t}"
            );
            assert_eq!(t["state"], "completed");
            ids.push(t["id"].as_str().unwrap().to_owned());
        }
        match r.body["odata.nextLink"].as_str() {
            Some(link) => {
                assert!(
                    link.starts_with("http://")
                        && link.contains("api-version=")
                        && link.contains("filter"),
                    "{link}"
                );
                next = link.strip_prefix(&server.batch_url()).unwrap().to_owned();
            }
            None => break,
        }
    }
    assert_eq!(
        ids,
        (0..30)
            .step_by(3)
            .map(|i| format!("t{i:02}"))
            .collect::<Vec<_>>()
    );
    assert_eq!(pages, 3);
    let bad = call(
        &server,
        Method::GET,
        &format!("/jobs/pg/tasks?{V}&$filter=state%20eq"),
        None,
        &[],
    )
    .await;
    assert_eq!(
        (bad.status, bad.body["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("InvalidQueryParameterValue"))
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_schedule_creates_its_job_on_time() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_in(dir.path()).await;
    let due = chrono::Utc::now() + chrono::Duration::milliseconds(800);
    let schedule = json!({
        "id": "nightly",
        "schedule": {"doNotRunUntil": due.to_rfc3339()},
        "jobSpecification": {"poolInfo": {"poolId": "p"}, "priority": 5},
    });
    assert_eq!(
        call(
            &server,
            Method::POST,
            &format!("/jobschedules?{V}"),
            Some(&schedule),
            &[]
        )
        .await
        .status,
        StatusCode::CREATED
    );
    let jobs = call(
        &server,
        Method::GET,
        &format!("/jobschedules/nightly/jobs?{V}"),
        None,
        &[],
    )
    .await;
    assert_eq!(jobs.body["value"], json!([]), "nothing before the due time");
    let mut found = None;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let jobs = call(
            &server,
            Method::GET,
            &format!("/jobschedules/nightly/jobs?{V}"),
            None,
            &[],
        )
        .await;
        if let Some(j) = jobs.body["value"].as_array().unwrap().first() {
            found = Some(j.clone());
            break;
        }
    }
    let job = found.expect("the schedule created no job");
    assert_eq!(job["id"], "nightly:job-1");
    assert_eq!(job["priority"], 5);
    let s = call(
        &server,
        Method::GET,
        &format!("/jobschedules/nightly?{V}"),
        None,
        &[],
    )
    .await;
    assert_eq!(s.body["executionInfo"]["recentJob"]["id"], "nightly:job-1");
    // Without recurrence the schedule completes once its job does.
    call(
        &server,
        Method::POST,
        &format!("/jobs/nightly:job-1/terminate?{V}"),
        None,
        &[],
    )
    .await;
    let mut state = Value::Null;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        state = call(
            &server,
            Method::GET,
            &format!("/jobschedules/nightly?{V}"),
            None,
            &[],
        )
        .await
        .body["state"]
            .clone();
        if state == "completed" {
            break;
        }
    }
    assert_eq!(state, "completed");
    assert_eq!(
        call(
            &server,
            Method::DELETE,
            &format!("/jobschedules/nightly?{V}"),
            None,
            &[]
        )
        .await
        .status,
        StatusCode::ACCEPTED
    );
    let mut gone = false;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let r = call(
            &server,
            Method::GET,
            &format!("/jobs/nightly:job-1?{V}"),
            None,
            &[],
        )
        .await;
        if r.status == StatusCode::NOT_FOUND {
            gone = true;
            break;
        }
    }
    assert!(gone, "deleting a schedule deletes its jobs");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_are_expanded_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_in(dir.path()).await;
    let job = json!({"id": "st", "poolInfo": {"poolId": "p"}});
    call(
        &server,
        Method::POST,
        &format!("/jobs?{V}"),
        Some(&job),
        &[],
    )
    .await;
    add_tasks(
        &server,
        "st",
        ["a", "b", "c"].into_iter().map(str::to_owned),
    )
    .await;
    call(
        &server,
        Method::POST,
        &format!("/jobs/st/tasks/a/terminate?{V}"),
        None,
        &[],
    )
    .await;
    let plain = call(&server, Method::GET, &format!("/jobs/st?{V}"), None, &[]).await;
    assert!(plain.body.get("stats").is_none());
    let r = call(
        &server,
        Method::GET,
        &format!("/jobs/st?{V}&$expand=stats"),
        None,
        &[],
    )
    .await;
    let stats = &r.body["stats"];
    assert_eq!(
        (
            stats["numSucceededTasks"].as_u64(),
            stats["numFailedTasks"].as_u64()
        ),
        (Some(0), Some(1))
    );
    assert_eq!(stats["numTaskRetries"], 0);
    assert_eq!(stats["wallClockTime"], "PT0S", "no task has run");
    assert!(stats["url"].as_str().unwrap().ends_with("/jobs/st/stats"));
    let r = call(
        &server,
        Method::GET,
        &format!("/jobs?{V}&$select=id,stats"),
        None,
        &[],
    )
    .await;
    assert_eq!(
        r.body["value"][0]["stats"]["numFailedTasks"], 1,
        "selecting stats computes them"
    );
    let old = "api-version=2017-09-01.6.0";
    let r = call(
        &server,
        Method::GET,
        &format!("/lifetimejobstats?{old}"),
        None,
        &[],
    )
    .await;
    assert_eq!(
        (r.status, r.body["numFailedTasks"].as_u64()),
        (StatusCode::OK, Some(1))
    );
    assert!(
        r.body["url"]
            .as_str()
            .unwrap()
            .ends_with("/lifetimejobstats")
    );
    let r = call(
        &server,
        Method::GET,
        &format!("/lifetimepoolstats?{old}"),
        None,
        &[],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body["startTime"].is_string() && r.body["lastUpdateTime"].is_string());
    let r = call(
        &server,
        Method::GET,
        &format!("/jobs?{V}&$expand=tasks"),
        None,
        &[],
    )
    .await;
    assert_eq!(r.body["code"], "InvalidQueryParameterValue");
    server.shutdown().await;
}
