#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a failure is a test failure
//! Integration tests of the Batch service: the real server on an ephemeral port, requests
//! signed the way the SDKs sign them. The official SDKs are covered by tests/e2e.

use cobalt_batch_api::auth::{SignedRequest, strings_to_sign};
use cobalt_model::{AccountKey, DEV_ACCOUNT_KEY, DEV_BATCH_ACCOUNT};
use cobalt_server::{Server, ServerConfig};
use reqwest::{Method, StatusCode};
use serde_json::Value;

async fn start() -> (Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::new(dir.path().to_owned());
    config.blob_port = 0;
    config.batch_port = 0;
    config.batch_accounts = None;
    (Server::start(config).await.unwrap(), dir)
}

/// Sends a SharedKey-signed Batch request to `path_and_query` (e.g. `/pools?api-version=…`).
async fn send(
    server: &Server,
    method: Method,
    path_and_query: &str,
    key: &str,
) -> reqwest::Response {
    let client = reqwest::Client::new();
    let mut req = client
        .request(
            method.clone(),
            format!("{}{path_and_query}", server.batch_url()),
        )
        .header(
            "ocp-date",
            httpdate::fmt_http_date(std::time::SystemTime::now()),
        )
        .header("client-request-id", "0f4e4a3c-0000-4000-8000-000000000001")
        .build()
        .unwrap();
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
    let sig = AccountKey::from_base64(DEV_BATCH_ACCOUNT, key)
        .unwrap()
        .sign(&sts);
    req.headers_mut().insert(
        "authorization",
        format!("SharedKey {DEV_BATCH_ACCOUNT}:{sig}")
            .parse()
            .unwrap(),
    );
    client.execute(req).await.unwrap()
}

async fn json(r: reqwest::Response) -> (StatusCode, Value) {
    let status = r.status();
    assert!(r.headers().contains_key("request-id"));
    (status, r.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_operations_page_through_the_catalogue() {
    let (server, _dir) = start().await;
    let (status, body) = json(
        send(
            &server,
            Method::GET,
            "/supportedimages?api-version=2024-02-01.19.0",
            DEV_ACCOUNT_KEY,
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let all = body["value"].as_array().unwrap().clone();
    assert!(
        all.iter()
            .any(|i| i["nodeAgentSKUId"] == "batch.node.ubuntu 22.04")
    );
    assert!(body.get("odata.nextLink").is_none());
    // Page by one, following the absolute nextLink verbatim as the Python SDKs do.
    let mut seen = Vec::new();
    let mut next = format!(
        "{}/supportedimages?api-version=2024-02-01.19.0&maxresults=1",
        server.batch_url()
    );
    loop {
        let path = next.strip_prefix(&server.batch_url()).unwrap().to_owned();
        let (status, body) = json(send(&server, Method::GET, &path, DEV_ACCOUNT_KEY).await).await;
        assert_eq!(status, StatusCode::OK);
        seen.extend(body["value"].as_array().unwrap().iter().cloned());
        match body["odata.nextLink"].as_str() {
            Some(link) => {
                assert!(link.contains("api-version=2024-02-01.19.0"), "{link}");
                next = link.to_owned();
            }
            None => break,
        }
    }
    assert_eq!(seen, all);
    let (_, skus) = json(
        send(
            &server,
            Method::GET,
            "/nodeagentskus?api-version=2017-09-01.6.0",
            DEV_ACCOUNT_KEY,
        )
        .await,
    )
    .await;
    assert!(
        skus["value"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["id"] == "batch.node.ubuntu 16.04"
                && s["verifiedImageReferences"][0]["offer"] == "UbuntuServer")
    );
    let (status, counts) = json(
        send(
            &server,
            Method::GET,
            "/nodecounts?api-version=2025-06-01",
            DEV_ACCOUNT_KEY,
        )
        .await,
    )
    .await;
    assert_eq!(
        (status, counts["value"].as_array().unwrap().len()),
        (StatusCode::OK, 0)
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_have_azure_shape_and_status() {
    let (server, _dir) = start().await;
    let wrong = "d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXktd3Jvbmc=";
    let (status, body) = json(
        send(
            &server,
            Method::GET,
            "/supportedimages?api-version=2024-02-01.19.0",
            wrong,
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["code"], "AuthenticationFailed");
    assert_eq!(body["message"]["lang"], "en-US");
    assert!(
        body["message"]["value"]
            .as_str()
            .unwrap()
            .contains("RequestId:")
    );
    assert_eq!(body["values"][0]["key"], "AuthenticationErrorDetail");
    let (status, body) = json(
        send(
            &server,
            Method::GET,
            "/supportedimages?api-version=2099-01-01",
            DEV_ACCOUNT_KEY,
        )
        .await,
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str().unwrap()),
        (StatusCode::BAD_REQUEST, "InvalidQueryParameterValue")
    );
    let (status, body) =
        json(send(&server, Method::GET, "/supportedimages", DEV_ACCOUNT_KEY).await).await;
    assert_eq!(
        (status, body["code"].as_str().unwrap()),
        (StatusCode::BAD_REQUEST, "MissingRequiredQueryParameter")
    );
    let (status, body) = json(
        send(
            &server,
            Method::POST,
            "/pools?api-version=2024-02-01.19.0",
            DEV_ACCOUNT_KEY,
        )
        .await,
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str().unwrap()),
        (StatusCode::BAD_REQUEST, "InvalidRequestBody")
    );
    let (status, body) = json(
        send(
            &server,
            Method::GET,
            "/nonsense?api-version=2024-02-01.19.0",
            DEV_ACCOUNT_KEY,
        )
        .await,
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str().unwrap()),
        (StatusCode::NOT_FOUND, "InvalidUri")
    );
    let (status, body) = json(
        send(
            &server,
            Method::DELETE,
            "/supportedimages?api-version=2024-02-01.19.0",
            DEV_ACCOUNT_KEY,
        )
        .await,
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str().unwrap()),
        (StatusCode::METHOD_NOT_ALLOWED, "UnsupportedHttpVerb")
    );
    let r = send(
        &server,
        Method::GET,
        "/supportedimages?api-version=2024-02-01.19.0&maxresults=0",
        DEV_ACCOUNT_KEY,
    )
    .await;
    assert_eq!(
        r.headers()["client-request-id"],
        "0f4e4a3c-0000-4000-8000-000000000001"
    );
    assert_eq!(json(r).await.1["code"], "InvalidQueryParameterValue");
    server.shutdown().await;
}
