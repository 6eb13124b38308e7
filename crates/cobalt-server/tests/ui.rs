#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a failure is a test failure
//! Integration tests of the dashboard's endpoints (`/ui/…` on the Batch port) through the real
//! server: pools, jobs and keyset-paged tasks, errors, the change stream, the login guard, and
//! a shutdown that does not wait for open event streams. Pages are tested in a browser by
//! tests/ui.

use std::collections::HashSet;
use std::time::Duration;

use cobalt_batch_api::auth::{SignedRequest, strings_to_sign};
use cobalt_model::{AccountKey, DEV_ACCOUNT_KEY, DEV_BATCH_ACCOUNT};
use cobalt_server::{Server, ServerConfig};
use futures_util::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const V: &str = "api-version=2024-07-01.20.0";

async fn start() -> (Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::new(dir.path().to_owned());
    config.blob_port = 0;
    config.batch_port = 0;
    config.batch_accounts = None;
    config.storage_accounts = None;
    (Server::start(config).await.unwrap(), dir)
}

/// A signed Batch REST request with a JSON body.
async fn batch_post(server: &Server, path_and_query: &str, body: &Value) -> StatusCode {
    let client = reqwest::Client::new();
    let bytes = body.to_string();
    let mut req = client
        .post(format!("{}{path_and_query}", server.batch_url()))
        .header(
            "ocp-date",
            httpdate::fmt_http_date(std::time::SystemTime::now()),
        )
        .header("content-type", "application/json; odata=minimalmetadata")
        .header("content-length", bytes.len().to_string())
        .body(bytes)
        .build()
        .unwrap();
    let (path, query) = path_and_query.split_once('?').unwrap();
    let signed = SignedRequest {
        method: &Method::POST,
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
    client.execute(req).await.unwrap().status()
}

/// GET of a dashboard endpoint from loopback: (status, JSON body).
async fn ui_get(server: &Server, path: &str) -> (StatusCode, Value) {
    let r = reqwest::get(format!("{}{path}", server.batch_url()))
        .await
        .unwrap();
    let status = r.status();
    if status != StatusCode::METHOD_NOT_ALLOWED {
        let ct = r.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(ct.starts_with("application/json"), "{path}: {ct}");
    }
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn seed(server: &Server, tasks: usize) {
    let pool = json!({
        "id": "P1", "vmSize": "standard_d2s_v3", "targetDedicatedNodes": 2, "taskSlotsPerNode": 2,
        "virtualMachineConfiguration": {
            "imageReference": {"publisher": "canonical", "offer": "0001-com-ubuntu-server-jammy", "sku": "22_04-lts"},
            "nodeAgentSKUId": "batch.node.ubuntu 22.04"
        }
    });
    assert_eq!(
        batch_post(server, &format!("/pools?{V}"), &pool).await,
        StatusCode::CREATED
    );
    let job = json!({"id": "J1", "poolInfo": {"poolId": "P1"}});
    assert_eq!(
        batch_post(server, &format!("/jobs?{V}"), &job).await,
        StatusCode::CREATED
    );
    let ids: Vec<String> = (0..tasks).map(|i| format!("task-{i:04}")).collect();
    for chunk in ids.chunks(100) {
        let value: Vec<Value> = chunk
            .iter()
            .map(|id| json!({"id": id, "commandLine": "/bin/true"}))
            .collect();
        let status = batch_post(
            server,
            &format!("/jobs/J1/addtaskcollection?{V}"),
            &json!({ "value": value }),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pools_jobs_and_task_pages() {
    let (server, _dir) = start().await;
    seed(&server, 250).await;

    let (status, pools) = ui_get(&server, "/ui/api/pools").await;
    assert_eq!(status, StatusCode::OK);
    let pool = &pools["items"][0];
    assert_eq!(pool["id"], "P1");
    assert_eq!(pool["targetDedicatedNodes"], 2);
    assert!(pool["allocationState"].is_string());
    let (status, nodes) = ui_get(&server, "/ui/api/pools/p1/nodes").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(nodes["taskSlotsPerNode"], 2);
    assert!(nodes["nodes"].is_array());

    let (_, jobs) = ui_get(&server, "/ui/api/jobs").await;
    assert_eq!(jobs["items"][0]["id"], "J1");
    assert_eq!(jobs["items"][0]["taskCounts"]["active"], 250);
    let (_, job) = ui_get(&server, "/ui/api/jobs/J1").await;
    assert_eq!(job["taskCounts"]["active"], 250);
    assert_eq!(job["taskCounts"]["failed"], 0);

    // Keyset pages of 100: 100, 100, 50, nothing repeated.
    let mut seen = HashSet::new();
    let mut after = String::new();
    let mut pages = 0;
    loop {
        let (status, page) = ui_get(
            &server,
            &format!("/ui/api/jobs/J1/tasks?limit=100&after={after}"),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 100);
        for t in items {
            assert_eq!(t["state"], "active");
            assert!(seen.insert(t["id"].as_str().unwrap().to_owned()));
        }
        pages += 1;
        match page["next"].as_str() {
            Some(n) => after = n.to_owned(),
            None => break,
        }
    }
    assert_eq!((pages, seen.len()), (3, 250));

    // Filters: an id prefix (any case), a state.
    let (_, page) = ui_get(&server, "/ui/api/jobs/J1/tasks?prefix=TASK-01&limit=1000").await;
    assert_eq!(page["items"].as_array().unwrap().len(), 100);
    assert_eq!(page["items"][0]["id"], "task-0100");
    let (_, page) = ui_get(
        &server,
        "/ui/api/jobs/J1/tasks?prefix=task-024&state=active",
    )
    .await;
    assert_eq!(page["items"].as_array().unwrap().len(), 10);
    let (_, page) = ui_get(&server, "/ui/api/jobs/J1/tasks?state=completed").await;
    assert_eq!(page["items"].as_array().unwrap().len(), 0);
    assert!(page["next"].is_null());
    let (status, e) = ui_get(&server, "/ui/api/jobs/J1/tasks?state=sleeping").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(e["error"]["message"].as_str().unwrap().contains("sleeping"));

    let (status, task) = ui_get(&server, "/ui/api/jobs/J1/tasks/task-0007").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(task["commandLine"], "/bin/true");
    let (_, timeline) = ui_get(&server, "/ui/api/jobs/J1/timeline").await;
    assert_eq!(timeline["items"].as_array().unwrap().len(), 0);

    // Errors: JSON, with the control plane's code and status.
    let (status, e) = ui_get(&server, "/ui/api/pools/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(e["error"]["code"], "PoolNotFound");
    let (status, e) = ui_get(&server, "/ui/api/jobs/J1/tasks/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(e["error"]["code"], "TaskNotFound");
    let (status, e) = ui_get(&server, "/ui/api/no/such/thing").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(e["error"]["code"], "NotFound");
    // A task that never ran has no files.
    let (status, _) = ui_get(&server, "/ui/api/jobs/J1/tasks/task-0007/files/stdout.txt").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = ui_get(&server, "/ui/api/storage/containers/none/blobs").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, c) = ui_get(&server, "/ui/api/storage/containers").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(c["account"], "devstoreaccount1");

    // The page and its assets.
    let r = reqwest::get(format!("{}/ui/", server.batch_url()))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("default-src 'self'")
    );
    assert!(r.text().await.unwrap().contains("/ui/assets/app.js"));
    let r = reqwest::get(format!("{}/ui/assets/heatmap.js", server.batch_url()))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("export function drawHeatmap")
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_stream_reports_changes_and_ends_at_shutdown() {
    let (server, _dir) = start().await;
    let r = reqwest::get(format!("{}/ui/api/events", server.batch_url()))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let mut stream = r.bytes_stream();
    let mut text = String::new();
    let mut next_event = async || loop {
        let chunk = tokio::time::timeout(Duration::from_secs(5), stream.next())
            .await
            .expect("an event within 5 s")
            .unwrap()
            .unwrap();
        text.push_str(&String::from_utf8_lossy(&chunk));
        if let Some(end) = text.find("\n\n") {
            let event: String = text.drain(..end + 2).collect();
            if event.contains("event: change") {
                return event;
            }
        }
    };
    let first = next_event().await;
    assert!(first.contains("data: "), "{first}");
    let job = json!({"id": "J2", "poolInfo": {"poolId": "P"}});
    assert_eq!(
        batch_post(&server, &format!("/jobs?{V}"), &job).await,
        StatusCode::CREATED
    );
    let second = next_event().await;
    assert_ne!(first, second);
    // An open stream does not hold the shutdown up.
    tokio::time::timeout(Duration::from_secs(10), server.shutdown())
        .await
        .expect("shutdown with an open event stream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_hosts_must_log_in() {
    let (server, _dir) = start().await;
    let client = reqwest::Client::new();
    let url = |p: &str| format!("{}{p}", server.batch_url());
    // Seen from the server, a request naming another host is not local (as from another
    // machine, or a DNS-rebinding page): it needs a session.
    let remote = |r: reqwest::RequestBuilder| r.header("host", "batch.example:10100");
    let r = remote(client.get(url("/ui/api/pools")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "Unauthorized");
    // The page itself loads (it shows the login form).
    let r = remote(client.get(url("/ui/"))).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    let login = |key: &str| {
        remote(client.post(url("/ui/api/login")))
            .header("content-type", "application/json")
            .body(json!({"account": DEV_BATCH_ACCOUNT, "key": key}).to_string())
            .send()
    };
    let wrong = AccountKey::from_base64("x", "AAAA")
        .map(|_| "AAAA")
        .unwrap();
    let r = login(wrong).await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.headers().get("set-cookie").is_none());
    let r = login(DEV_ACCOUNT_KEY).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let pair = cookie.split(';').next().unwrap().to_owned();
    let r = remote(client.get(url("/ui/api/pools")))
        .header("cookie", &pair)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = remote(client.get(url("/ui/api/session")))
        .header("cookie", &pair)
        .send()
        .await
        .unwrap();
    let s: Value = r.json().await.unwrap();
    assert_eq!(s["local"], false);
    assert_eq!(s["account"], DEV_BATCH_ACCOUNT);
    // The Batch key gives no storage access, nor access to another account.
    let r = remote(client.get(url("/ui/api/storage/containers")))
        .header("cookie", &pair)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = remote(client.get(url("/ui/api/pools?account=otheraccount")))
        .header("cookie", &pair)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // With the storage key too, the session reads the storage account.
    let r = remote(client.post(url("/ui/api/login")))
        .header("content-type", "application/json")
        .body(
            json!({"account": DEV_BATCH_ACCOUNT, "key": DEV_ACCOUNT_KEY,
                   "storageAccount": "devstoreaccount1", "storageKey": DEV_ACCOUNT_KEY})
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let both = r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let r = remote(client.get(url("/ui/api/storage/containers")))
        .header("cookie", &both)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // A login must be JSON (a cross-site form cannot post it without a preflight).
    let r = remote(client.post(url("/ui/api/login")))
        .header("content-type", "text/plain")
        .body(json!({"account": DEV_BATCH_ACCOUNT, "key": DEV_ACCOUNT_KEY}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // A tampered cookie is refused.
    let forged = format!("{}x", pair);
    let r = remote(client.get(url("/ui/api/pools")))
        .header("cookie", forged)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    server.shutdown().await;
}
