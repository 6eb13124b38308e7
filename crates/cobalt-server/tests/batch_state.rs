#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a failure is a test failure
//! Integration tests of the Batch control plane through the real server: durability across a
//! restart, conditional requests, add-collection limits, validation errors, filtered paging,
//! job schedules creating jobs, and the scheduler's side of the agent protocol with a scripted
//! node agent. Requests are signed as the SDKs sign them.

use std::path::Path;
use std::time::Duration;

use cobalt_batch_api::auth::{SignedRequest, strings_to_sign};
use cobalt_model::batch::{TaskResult, Timestamp};
use cobalt_model::{AccountKey, DEV_ACCOUNT_KEY, DEV_BATCH_ACCOUNT};
use cobalt_proto::{
    AGENT_PATH, AgentMessage, Assignment, Event, Hello, RunEnd, RunKind, ServerMessage,
    TOKEN_HEADER,
};
use cobalt_server::{Server, ServerConfig};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message as WsMessage;

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

/// A node agent whose every word the test scripts, on the server's agent endpoint.
struct ScriptedAgent {
    ws: tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
    /// Every message the server sent, in order.
    heard: Vec<ServerMessage>,
    /// Runs received and not yet taken by [`Self::runs`] or [`Self::prep`].
    assigned: Vec<Assignment>,
}

impl ScriptedAgent {
    /// Joins `pool` as a new remote node, and waits for `Welcome`.
    async fn join(server: &Server, pool: &str) -> Self {
        Self::rejoin(server, pool, None, Vec::new()).await
    }

    /// Joins `pool` as node `node` (None: a new node) with `running` still going, and waits
    /// for `Welcome`.
    async fn rejoin(server: &Server, pool: &str, node: Option<String>, running: Vec<u64>) -> Self {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let address = server.batch_url().trim_start_matches("http://").to_owned();
        let mut request = format!("ws://{address}{AGENT_PATH}")
            .into_client_request()
            .unwrap();
        let key = AccountKey::from_base64(DEV_BATCH_ACCOUNT, DEV_ACCOUNT_KEY).unwrap();
        let token = cobalt_proto::agent_token(&key, DEV_BATCH_ACCOUNT, pool);
        request
            .headers_mut()
            .insert(TOKEN_HEADER, token.parse().unwrap());
        let tcp = tokio::net::TcpStream::connect(&address).await.unwrap();
        let (ws, _) = tokio_tungstenite::client_async(request, tcp).await.unwrap();
        let mut agent = Self {
            ws,
            heard: Vec::new(),
            assigned: Vec::new(),
        };
        agent
            .say(AgentMessage::Hello(Hello {
                account: DEV_BATCH_ACCOUNT.into(),
                pool_id: pool.into(),
                node_id: node,
                hostname: "scripted".into(),
                ip_address: "127.0.0.1".into(),
                agent_version: "scripted".into(),
                is_root: false,
                running,
            }))
            .await;
        agent.hear(|m| matches!(m, ServerMessage::Welcome(_))).await;
        agent
    }

    /// The node id the server gave in `Welcome`.
    fn node_id(&self) -> String {
        self.heard
            .iter()
            .find_map(|m| match m {
                ServerMessage::Welcome(w) => Some(w.node_id.clone()),
                _ => None,
            })
            .unwrap()
    }

    async fn say(&mut self, message: AgentMessage) {
        use futures_util::SinkExt;
        let text = serde_json::to_string(&message).unwrap();
        self.ws.send(WsMessage::Text(text.into())).await.unwrap();
    }

    async fn events(&mut self, events: Vec<Event>) {
        self.say(AgentMessage::Events { events }).await;
    }

    /// Reads until a message `wanted` accepts arrives, and returns it.
    async fn hear(&mut self, wanted: impl Fn(&ServerMessage) -> bool) -> ServerMessage {
        match self.hear_within(Duration::from_secs(10), wanted).await {
            Some(message) => message,
            None => panic!("the server did not say it; heard {:?}", self.heard),
        }
    }

    /// Reads until a message `wanted` accepts arrives (returned), or `limit` passes (None).
    async fn hear_within(
        &mut self,
        limit: Duration,
        wanted: impl Fn(&ServerMessage) -> bool,
    ) -> Option<ServerMessage> {
        use futures_util::StreamExt;
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let frame = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .ok()?
                .expect("the server closed the connection")
                .unwrap();
            let WsMessage::Text(text) = frame else {
                continue;
            };
            let message: ServerMessage = serde_json::from_str(&text).unwrap();
            self.heard.push(message.clone());
            if let ServerMessage::Run { runs } = &message {
                self.assigned.extend(runs.iter().cloned());
            }
            if wanted(&message) {
                return Some(message);
            }
        }
    }

    /// Waits for assignments of `kind` until `n` have come; takes them, in the order they
    /// came.
    async fn take(&mut self, kind: RunKind, n: usize) -> Vec<Assignment> {
        while self.assigned.iter().filter(|a| a.kind == kind).count() < n {
            self.hear(|m| matches!(m, ServerMessage::Run { .. })).await;
        }
        let (taken, rest) = std::mem::take(&mut self.assigned)
            .into_iter()
            .partition(|a| a.kind == kind);
        self.assigned = rest;
        taken
    }

    /// Waits until `n` task runs have come; returns (task id, run) in the order they came.
    async fn runs(&mut self, n: usize) -> Vec<(String, Assignment)> {
        let runs = self.take(RunKind::Task, n).await;
        runs.into_iter()
            .map(|a| (a.dir.rsplit('/').next().unwrap().to_owned(), a))
            .collect()
    }

    /// Waits until `n` task runs have come; returns their ids in the order they came.
    async fn run_ids(&mut self, n: usize) -> Vec<u64> {
        self.take(RunKind::Task, n)
            .await
            .iter()
            .map(|a| a.run)
            .collect()
    }

    /// Waits for the job preparation run.
    async fn prep(&mut self) -> Assignment {
        self.take(RunKind::JobPreparation, 1).await.remove(0)
    }
}

fn ended_ok(run: u64) -> Event {
    Event::Ended(RunEnd {
        run,
        start_time: Some(Timestamp::now()),
        end_time: Timestamp::now(),
        exit_code: Some(0),
        result: TaskResult::Success,
        failure_info: None,
        pre_processing_error: false,
        file_upload_error: false,
    })
}

fn started(run: u64) -> Event {
    Event::Started {
        run,
        at: Timestamp::now(),
        pgid: None,
    }
}

/// Polls a task until it is in `state`; returns it.
async fn task_in(server: &Server, job: &str, task: &str, state: &str) -> Value {
    let path = format!("/jobs/{job}/tasks/{task}?{V}");
    for _ in 0..200 {
        let t = call(server, Method::GET, &path, None, &[]).await.body;
        if t["state"] == state {
            return t;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("task {task} never became {state}");
}

/// Creates a pool of no nodes: its nodes are scripted agents that join it.
async fn empty_pool(server: &Server, pool: &str) {
    let created = call(
        server,
        Method::POST,
        &format!("/pools?{V}"),
        Some(&pool_body(pool, 0)),
        &[],
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED);
}

/// Adds `job` (a job body) and three tasks to it: `a`, `b` and `c`.
async fn job_of_three(server: &Server, job: Value) {
    let created = call(server, Method::POST, &format!("/jobs?{V}"), Some(&job), &[]).await;
    assert_eq!(created.status, StatusCode::CREATED);
    let id = job["id"].as_str().unwrap();
    let added = add_tasks(server, id, ["a", "b", "c"].map(String::from).into_iter()).await;
    assert_eq!(added.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_run_is_withdrawn_not_killed_and_runs_on_if_its_agent_began_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_in(dir.path()).await;
    empty_pool(&server, "scripted").await;
    let mut agent = ScriptedAgent::join(&server, "scripted").await;
    job_of_three(
        &server,
        json!({"id": "race", "poolInfo": {"poolId": "scripted"}}),
    )
    .await;

    // One slot: `a` takes it, `b` and `c` wait in the agent's queue.
    let runs = agent.runs(3).await;
    let run_of = |task: &str| runs.iter().find(|(t, _)| t == task).unwrap().1.clone();
    let (a, b, c) = (run_of("a"), run_of("b"), run_of("c"));
    agent.events(vec![started(a.run)]).await;
    task_in(&server, "race", "a", "running").await;

    // Disabling the job with `wait` asks for the queued runs back; it kills nothing.
    let disabled = call(
        &server,
        Method::POST,
        &format!("/jobs/race/disable?{V}"),
        Some(&json!({"disableTasks": "wait"})),
        &[],
    )
    .await;
    assert_eq!(disabled.status, StatusCode::ACCEPTED);
    let ServerMessage::Withdraw { runs: asked } = agent
        .hear(|m| matches!(m, ServerMessage::Withdraw { .. }))
        .await
    else {
        unreachable!()
    };
    let mut asked = asked;
    asked.sort_unstable();
    assert_eq!(asked, vec![b.run, c.run]);

    // `b` had begun as the request came: it runs on. `c` goes back.
    agent
        .events(vec![
            ended_ok(a.run),
            started(b.run),
            Event::Withdrawn { run: c.run },
        ])
        .await;
    // Its start is recorded although the job is disabled.
    task_in(&server, "race", "b", "running").await;
    agent.events(vec![ended_ok(b.run)]).await;
    let done = task_in(&server, "race", "b", "completed").await;
    assert_eq!(done["executionInfo"]["result"], "success", "{done}");
    assert_eq!(done["executionInfo"]["requeueCount"], 0, "{done}");
    task_in(&server, "race", "a", "completed").await;
    assert_eq!(
        task_in(&server, "race", "c", "active").await["state"],
        "active"
    );
    assert!(
        !agent
            .heard
            .iter()
            .any(|m| matches!(m, ServerMessage::Kill { .. })),
        "{:?}",
        agent.heard
    );

    // Enabled again, `c` comes back as a new run, and completes.
    let enabled = call(
        &server,
        Method::POST,
        &format!("/jobs/race/enable?{V}"),
        None,
        &[],
    )
    .await;
    assert_eq!(enabled.status, StatusCode::ACCEPTED);
    let again = agent.runs(1).await.remove(0);
    assert_eq!(again.0, "c");
    assert_ne!(again.1.run, c.run);
    agent
        .events(vec![started(again.1.run), ended_ok(again.1.run)])
        .await;
    task_in(&server, "race", "c", "completed").await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_runs_move_only_to_a_free_node_that_can_start_them() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_in(dir.path()).await;
    empty_pool(&server, "two").await;
    let mut first = ScriptedAgent::join(&server, "two").await;
    let mut second = ScriptedAgent::join(&server, "two").await;
    let job = json!({
        "id": "prepared", "poolInfo": {"poolId": "two"},
        "jobPreparationTask": {"commandLine": "/bin/true"}
    });
    job_of_three(&server, job).await;

    // The preparation task runs on both nodes; it is done on the first only.
    let (prep1, prep2) = (first.prep().await, second.prep().await);
    first
        .events(vec![started(prep1.run), ended_ok(prep1.run)])
        .await;
    second.events(vec![started(prep2.run)]).await;
    // The first node takes all three (one slot, two queued); `a` runs.
    let runs = first.runs(3).await;
    let run_of = |task: &str| runs.iter().find(|(t, _)| t == task).unwrap().1.clone();
    first.events(vec![started(run_of("a").run)]).await;

    // The second node has a free slot but cannot start the job's tasks: nothing moves.
    let moved = first
        .hear_within(Duration::from_millis(600), |m| {
            matches!(m, ServerMessage::Withdraw { .. })
        })
        .await;
    assert!(moved.is_none(), "{:?}", first.heard);

    // Once its preparation task succeeded, the oldest queued run moves there.
    second.events(vec![ended_ok(prep2.run)]).await;
    let ServerMessage::Withdraw { runs: asked } = first
        .hear(|m| matches!(m, ServerMessage::Withdraw { .. }))
        .await
    else {
        unreachable!()
    };
    assert_eq!(asked, vec![run_of("b").run]);
    first
        .events(vec![Event::Withdrawn {
            run: run_of("b").run,
        }])
        .await;
    let moved = second.runs(1).await.remove(0);
    assert_eq!(moved.0, "b");
    second
        .events(vec![started(moved.1.run), ended_ok(moved.1.run)])
        .await;
    first
        .events(vec![
            ended_ok(run_of("a").run),
            started(run_of("c").run),
            ended_ok(run_of("c").run),
        ])
        .await;
    for task in ["a", "b", "c"] {
        let t = task_in(&server, "prepared", task, "completed").await;
        assert_eq!(t["executionInfo"]["requeueCount"], 0, "{t}");
    }
    server.shutdown().await;
}

/// A scripted node, alone in a new pool `pool`, running task `a` of a job `job` of three (the
/// other two wait in its queue); returns the agent, its node id and the three run ids.
async fn node_running_a(
    server: &Server,
    pool: &str,
    job: &str,
) -> (ScriptedAgent, String, Vec<u64>) {
    empty_pool(server, pool).await;
    let mut agent = ScriptedAgent::join(server, pool).await;
    let node = agent.node_id();
    job_of_three(server, json!({"id": job, "poolInfo": {"poolId": pool}})).await;
    let runs = agent.run_ids(3).await;
    agent.events(vec![started(runs[0])]).await;
    task_in(server, job, "a", "running").await;
    (agent, node, runs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_server_never_reuses_the_run_ids_of_the_one_before() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_in(dir.path()).await;
    let (agent, node, before) = node_running_a(&server, "restart", "long").await;
    server.shutdown().await;
    drop(agent);

    // The node comes back to the new process with the run it still has.
    let server = start_in(dir.path()).await;
    let mut agent = ScriptedAgent::rejoin(&server, "restart", Some(node), vec![before[0]]).await;
    let after = agent.run_ids(3).await;
    assert!(
        after.iter().all(|run| !before.contains(run)),
        "runs {after:?} after the restart reuse ids of {before:?}"
    );
    // The old run is stopped, once the node is welcomed (an agent takes nothing before
    // Welcome): the new process does not know it.
    let kill = agent
        .heard
        .iter()
        .position(|m| matches!(m, ServerMessage::Kill { run } if *run == before[0]));
    let welcome = agent
        .heard
        .iter()
        .position(|m| matches!(m, ServerMessage::Welcome(_)));
    assert!(
        kill.is_some() && welcome < kill,
        "Kill of run {} and Welcome: {:?}",
        before[0],
        agent.heard
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_node_that_drops_out_loses_its_runs_and_gets_work_again_on_its_return() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_in(dir.path()).await;
    let (agent, node, before) = node_running_a(&server, "remote", "away").await;
    drop(agent);

    // The task goes back to the queue, as no retry; the node is `unknown` while it is away.
    let t = task_in(&server, "away", "a", "active").await;
    assert_eq!(t["executionInfo"]["retryCount"], 0, "{t}");
    let path = format!("/pools/remote/nodes/{node}?{V}");
    let away = call(&server, Method::GET, &path, None, &[]).await;
    assert_eq!(away.body["state"], "unknown", "{}", away.body);

    // Back with the run it still has: that run is stopped, and the tasks come again as new runs.
    let mut agent =
        ScriptedAgent::rejoin(&server, "remote", Some(node.clone()), vec![before[0]]).await;
    let again = agent.runs(3).await;
    assert!(
        agent
            .heard
            .iter()
            .any(|m| matches!(m, ServerMessage::Kill { run } if *run == before[0]))
    );
    for (task, a) in &again {
        assert!(!before.contains(&a.run), "{task}: {a:?}");
    }
    for (_, a) in &again {
        agent.events(vec![started(a.run), ended_ok(a.run)]).await;
    }
    for task in ["a", "b", "c"] {
        task_in(&server, "away", task, "completed").await;
    }
    let back = call(&server, Method::GET, &path, None, &[]).await;
    assert_eq!(back.body["state"], "idle", "{}", back.body);
    server.shutdown().await;
}
