#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a failure is a test failure
//! Integration tests: the real server on an ephemeral port, driven over HTTP.
//! The official SDKs are covered by tests/e2e; these pin down protocol details and the storage
//! engine's guarantees (visibility, cleanup, concurrency) that are awkward to reach from an SDK.

use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use cobalt_model::{AccountKey, DEV_ACCOUNT_KEY};
use cobalt_server::{Server, ServerConfig};
use reqwest::{Client, Method, StatusCode};

struct TestServer {
    server: Option<Server>,
    dir: tempfile::TempDir,
    data_dir: std::path::PathBuf,
    client: Client,
    sas: String,
}

impl TestServer {
    async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    async fn start_with(tune: impl FnOnce(&mut ServerConfig)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut config = ServerConfig::new(dir.path().to_owned());
        config.blob_port = 0;
        config.batch_port = 0;
        config.storage_accounts = None;
        tune(&mut config);
        let data_dir = config.data_dir.clone();
        let server = Server::start(config).await.unwrap();
        // An account SAS with every permission, valid for an hour.
        let expiry = (chrono_like_now() + 3600).to_string();
        let se = iso(expiry.parse().unwrap());
        let sts = format!("devstoreaccount1\nracwdl\nb\nsco\n\n{se}\n\n\n2020-10-02\n");
        let sig = AccountKey::from_base64("devstoreaccount1", DEV_ACCOUNT_KEY)
            .unwrap()
            .sign(&sts);
        let sas = format!(
            "sv=2020-10-02&ss=b&srt=sco&sp=racwdl&se={}&sig={}",
            pct(&se),
            pct(&sig)
        );
        Self {
            server: Some(server),
            dir,
            data_dir,
            client: Client::new(),
            sas,
        }
    }

    fn addr(&self) -> std::net::SocketAddr {
        self.server.as_ref().unwrap().blob_addr
    }

    /// `http://addr/devstoreaccount1{path}` with the SAS appended to `query`.
    fn url(&self, path: &str, query: &str) -> String {
        let sep = if query.is_empty() { "" } else { "&" };
        format!(
            "http://{}/devstoreaccount1{path}?{query}{sep}{}",
            self.addr(),
            self.sas
        )
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        query: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> reqwest::Response {
        let mut req = self.client.request(method.clone(), self.url(path, query));
        if !headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("x-ms-version"))
        {
            req = req.header("x-ms-version", "2026-10-06");
        }
        if method == Method::PUT {
            req = req.header("content-length", body.len().to_string());
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.body(body).send().await.unwrap()
    }

    /// The body of a GET (with the test SAS).
    async fn get_bytes(&self, path: &str) -> bytes::Bytes {
        self.call(Method::GET, path, "", &[], vec![])
            .await
            .bytes()
            .await
            .unwrap()
    }

    /// The body of a GET (with the test SAS) as text.
    async fn get_text(&self, path: &str, query: &str) -> String {
        self.call(Method::GET, path, query, &[], vec![])
            .await
            .text()
            .await
            .unwrap()
    }

    async fn put_blob(&self, path: &str, body: &[u8]) -> reqwest::Response {
        self.call(
            Method::PUT,
            path,
            "",
            &[("x-ms-blob-type", "BlockBlob")],
            body.to_vec(),
        )
        .await
    }

    async fn create_container(&self, name: &str) {
        let r = self
            .call(
                Method::PUT,
                &format!("/{name}"),
                "restype=container",
                &[],
                vec![],
            )
            .await;
        assert_eq!(r.status(), StatusCode::CREATED, "{:?}", r.text().await);
    }

    fn extent_bytes(&self) -> u64 {
        dir_bytes(&self.data_dir.join("blob/extents"))
    }

    /// Waits (up to `within`) until the extent files hold `bytes`: the engine unlinks on a
    /// thread of its own, moments after the deletion commits (or the collector runs).
    async fn await_extent_bytes(&self, bytes: u64, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        while self.extent_bytes() != bytes && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(self.extent_bytes(), bytes, "extent bytes after {within:?}");
    }

    async fn stop(mut self) -> tempfile::TempDir {
        self.server.take().unwrap().shutdown().await;
        self.dir
    }
}

/// How long a test waits for the engine's reaper to unlink what a request dropped.
const UNLINKED: Duration = Duration::from_secs(10);

fn chrono_like_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// ISO 8601 UTC of Unix seconds, without a dependency on a date crate.
fn iso(secs: i64) -> String {
    let days = secs.div_euclid(86400);
    let rem = secs.rem_euclid(86400);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn pct(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Bytes of the files under `dir` (files vanishing while it looks are not counted).
fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let Ok(meta) = entry.metadata() else { continue };
        total += if meta.is_dir() {
            dir_bytes(&entry.path())
        } else {
            meta.len()
        };
    }
    total
}

/// Sends raw bytes (no URL normalisation) and returns the status and error code.
async fn raw_request(addr: std::net::SocketAddr, head: &str, body: &[u8]) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    let mut response = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf).await.unwrap();
        response.extend_from_slice(&buf[..n]);
        if n == 0 || response.windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    let text = String::from_utf8_lossy(&response).to_string();
    let status = text.split(' ').nth(1).unwrap().parse().unwrap();
    let code = text
        .lines()
        .find_map(|l| l.strip_prefix("x-ms-error-code: "))
        .unwrap_or_default()
        .trim()
        .to_owned();
    (status, code)
}

async fn error_code(r: reqwest::Response) -> (StatusCode, String) {
    let status = r.status();
    let code = r
        .headers()
        .get("x-ms-error-code")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = r.text().await.unwrap();
    if !body.is_empty() {
        assert!(body.contains(&format!("<Code>{code}</Code>")), "{body}");
    }
    (status, code)
}

fn block_id(n: u32) -> String {
    STANDARD.encode(format!("block-{n:06}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_tricks_and_bad_names_are_rejected_without_harm() {
    let s = TestServer::start().await;
    s.create_container("safe").await;
    assert_eq!(
        s.put_blob("/safe/keep.txt", b"precious").await.status(),
        StatusCode::CREATED
    );
    for (path, status, code) in [
        ("/safe/../etc/passwd", 400, "InvalidUri"),
        ("/safe/a/%2E%2E/keep.txt", 400, "InvalidUri"),
        ("/safe/./keep.txt", 400, "InvalidUri"),
        ("/Safe/x", 400, "InvalidResourceName"),
        ("/sa%2Ffe/x", 400, "InvalidResourceName"),
        ("/safe/nul%00byte", 400, "InvalidResourceName"),
        ("/a--b/x", 400, "InvalidResourceName"),
    ] {
        let head = format!(
            "PUT /devstoreaccount1{path}?{} HTTP/1.1\r\nHost: {}\r\nx-ms-version: 2026-10-06\r\nx-ms-blob-type: BlockBlob\r\nContent-Length: 4\r\nConnection: close\r\n\r\n",
            s.sas,
            s.addr()
        );
        assert_eq!(
            raw_request(s.addr(), &head, b"evil").await,
            (status, code.to_owned()),
            "{path}"
        );
    }
    // %2F inside a blob name is a slash, as on Azure.
    assert_eq!(
        s.put_blob("/safe/dir%2Finner.txt", b"x").await.status(),
        StatusCode::CREATED
    );
    let r = s
        .call(Method::GET, "/safe/dir/inner.txt", "", &[], vec![])
        .await;
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"x");
    let r = s.call(Method::GET, "/safe/keep.txt", "", &[], vec![]).await;
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"precious");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_lists_follow_azure_semantics() {
    let s = TestServer::start().await;
    s.create_container("blocks").await;
    let put_block = |n: u32, data: &'static [u8]| {
        let id = block_id(n);
        let s = &s;
        async move {
            s.call(
                Method::PUT,
                "/blocks/b",
                &format!("comp=block&blockid={}", pct(&id)),
                &[],
                data.to_vec(),
            )
            .await
        }
    };
    let commit = |xml: String| {
        let s = &s;
        async move {
            s.call(
                Method::PUT,
                "/blocks/b",
                "comp=blocklist",
                &[],
                xml.into_bytes(),
            )
            .await
        }
    };
    assert_eq!(put_block(1, b"one-").await.status(), StatusCode::CREATED);
    assert_eq!(put_block(2, b"two-").await.status(), StatusCode::CREATED);
    // A staged block does not make the blob visible.
    assert_eq!(
        error_code(s.call(Method::HEAD, "/blocks/b", "", &[], vec![]).await)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    let r = commit(format!(
        "<BlockList><Uncommitted>{}</Uncommitted><Latest>{}</Latest></BlockList>",
        block_id(2),
        block_id(1)
    ))
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(s.get_bytes("/blocks/b").await.as_ref(), b"two-one-");
    // Block 1 is committed now: naming it as Uncommitted fails and changes nothing.
    let r = commit(format!(
        "<BlockList><Uncommitted>{}</Uncommitted></BlockList>",
        block_id(1)
    ))
    .await;
    assert_eq!(
        error_code(r).await,
        (StatusCode::BAD_REQUEST, "InvalidBlockList".into())
    );
    // Committed blocks can be reused, repeated and reordered.
    let r = commit(format!("<BlockList><Committed>{0}</Committed><Committed>{1}</Committed><Committed>{0}</Committed></BlockList>", block_id(1), block_id(2))).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(s.get_bytes("/blocks/b").await.as_ref(), b"one-two-one-");
    let r = s
        .call(
            Method::GET,
            "/blocks/b",
            "comp=blocklist&blocklisttype=all",
            &[],
            vec![],
        )
        .await;
    let xml = r.text().await.unwrap();
    assert_eq!(xml.matches("<Block>").count(), 3, "{xml}");
    assert!(xml.contains("<UncommittedBlocks />"), "{xml}");
    // Malformed input.
    assert_eq!(
        error_code(commit("<BlockList><Latest>".into()).await).await,
        (StatusCode::BAD_REQUEST, "InvalidXmlDocument".into())
    );
    assert_eq!(
        error_code(commit("<BlockList><Latest>!!notbase64</Latest></BlockList>".into()).await)
            .await,
        (StatusCode::BAD_REQUEST, "InvalidBlockList".into())
    );
    let r = s
        .call(
            Method::PUT,
            "/blocks/b",
            "comp=block&blockid=%21%21",
            &[],
            b"x".to_vec(),
        )
        .await;
    assert_eq!(
        error_code(r).await,
        (StatusCode::BAD_REQUEST, "InvalidBlockId".into())
    );
    let long = STANDARD.encode([7u8; 65]);
    let r = s
        .call(
            Method::PUT,
            "/blocks/b",
            &format!("comp=block&blockid={}", pct(&long)),
            &[],
            b"x".to_vec(),
        )
        .await;
    assert_eq!(
        error_code(r).await,
        (StatusCode::BAD_REQUEST, "InvalidBlockId".into())
    );
    // Block ids of one blob must have one length.
    assert_eq!(put_block(3, b"x").await.status(), StatusCode::CREATED);
    let other = STANDARD.encode("short");
    let r = s
        .call(
            Method::PUT,
            "/blocks/b",
            &format!("comp=block&blockid={}", pct(&other)),
            &[],
            b"x".to_vec(),
        )
        .await;
    assert_eq!(
        error_code(r).await,
        (StatusCode::BAD_REQUEST, "InvalidBlobOrBlock".into())
    );
    assert_eq!(s.get_bytes("/blocks/b").await.as_ref(), b"one-two-one-");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranges_sizes_and_versions() {
    let s = TestServer::start().await;
    s.create_container("ranges").await;
    assert_eq!(
        s.put_blob("/ranges/empty", b"").await.status(),
        StatusCode::CREATED
    );
    let r = s
        .call(
            Method::GET,
            "/ranges/empty",
            "",
            &[("x-ms-range", "bytes=0-33554431")],
            vec![],
        )
        .await;
    assert_eq!(r.headers()["content-range"], "bytes */0");
    assert_eq!(
        error_code(r).await,
        (StatusCode::RANGE_NOT_SATISFIABLE, "InvalidRange".into())
    );
    let r = s.call(Method::GET, "/ranges/empty", "", &[], vec![]).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-length"], "0");

    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    assert_eq!(
        s.put_blob("/ranges/big", &data).await.status(),
        StatusCode::CREATED
    );
    let r = s
        .call(
            Method::GET,
            "/ranges/big",
            "",
            &[("x-ms-range", "bytes=100-149")],
            vec![],
        )
        .await;
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.headers()["content-range"], "bytes 100-149/100000");
    assert!(r.headers().contains_key("x-ms-blob-content-md5"));
    assert_eq!(r.bytes().await.unwrap().as_ref(), &data[100..150]);
    let r = s
        .call(
            Method::GET,
            "/ranges/big",
            "",
            &[("range", "bytes=99990-")],
            vec![],
        )
        .await;
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.headers()["content-range"], "bytes 99990-99999/100000");
    assert_eq!(r.bytes().await.unwrap().as_ref(), &data[99990..]);
    let r = s
        .call(
            Method::GET,
            "/ranges/big",
            "",
            &[("x-ms-range", "bytes=100000-100001")],
            vec![],
        )
        .await;
    assert_eq!(error_code(r).await.0, StatusCode::RANGE_NOT_SATISFIABLE);

    // Any well-formed version is accepted and echoed; a malformed one is not.
    let r = s
        .call(
            Method::GET,
            "/ranges",
            "restype=container",
            &[("x-ms-version", "2031-01-01")],
            vec![],
        )
        .await;
    assert_eq!(r.headers()["x-ms-version"], "2031-01-01");
    let r = s
        .client
        .get(s.url("/ranges", "restype=container"))
        .header("x-ms-version", "yesterday")
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_code(r).await,
        (StatusCode::BAD_REQUEST, "InvalidHeaderValue".into())
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_paths_without_the_account_reach_the_dev_account() {
    let s = TestServer::start().await;
    s.create_container("legacy").await;
    assert_eq!(
        s.put_blob("/legacy/file.txt", b"hello").await.status(),
        StatusCode::CREATED
    );
    let url = format!("http://{}/legacy/file.txt?{}", s.addr(), s.sas);
    let r = s
        .client
        .get(url)
        .header("x-ms-version", "2017-04-17")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"hello");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_cut_off_half_way_never_becomes_visible() {
    let s = TestServer::start().await;
    s.create_container("cut").await;
    let url = s.url("/cut/partial.bin", "");
    let path_and_query = url.splitn(4, '/').nth(3).unwrap().to_owned();
    for large in [false, true] {
        use tokio::io::AsyncWriteExt;
        let declared = if large { 8 * 1024 * 1024 } else { 10_000 };
        let mut stream = tokio::net::TcpStream::connect(s.addr()).await.unwrap();
        let head = format!(
            "PUT /{path_and_query} HTTP/1.1\r\nHost: {}\r\nx-ms-version: 2026-10-06\r\nx-ms-blob-type: BlockBlob\r\nContent-Length: {declared}\r\n\r\n",
            s.addr()
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(&vec![1u8; declared / 2]).await.unwrap();
        drop(stream);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = s
        .call(Method::HEAD, "/cut/partial.bin", "", &[], vec![])
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let list = s.get_text("/cut", "restype=container&comp=list").await;
    assert!(!list.contains("partial.bin"), "{list}");
    s.await_extent_bytes(0, UNLINKED).await; // the partial extent was removed
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_leave_one_complete_version() {
    let s = TestServer::start().await;
    s.create_container("race").await;
    let payloads: Vec<Vec<u8>> = (0..6u8)
        .map(|i| vec![i; 300_000 + i as usize * 1000])
        .collect();
    let mut tasks = Vec::new();
    for p in payloads.clone() {
        let (client, url) = (s.client.clone(), s.url("/race/same", ""));
        tasks.push(tokio::spawn(async move {
            client
                .put(url)
                .header("x-ms-version", "2026-10-06")
                .header("x-ms-blob-type", "BlockBlob")
                .body(p)
                .send()
                .await
                .unwrap()
                .status()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), StatusCode::CREATED);
    }
    let got = s
        .call(Method::GET, "/race/same", "", &[], vec![])
        .await
        .bytes()
        .await
        .unwrap();
    assert!(
        payloads.iter().any(|p| p.as_slice() == got.as_ref()),
        "a mix of versions: {} bytes",
        got.len()
    );
    // Only the winner's bytes remain on disk.
    s.await_extent_bytes(got.len() as u64, UNLINKED).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletes_free_space_promptly_and_state_survives_restart() {
    let s = TestServer::start().await;
    s.create_container("space").await;
    let big = vec![42u8; 3 * 1024 * 1024];
    assert_eq!(
        s.put_blob("/space/a", &big).await.status(),
        StatusCode::CREATED
    );
    assert_eq!(
        s.put_blob("/space/b", &big).await.status(),
        StatusCode::CREATED
    );
    let r = s
        .call(
            Method::PUT,
            "/space/c",
            "",
            &[("x-ms-copy-source", &s.url("/space/a", ""))],
            vec![],
        )
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(r.headers()["x-ms-copy-status"], "success");
    assert_eq!(s.extent_bytes(), 3 * big.len() as u64);
    assert_eq!(
        s.call(Method::DELETE, "/space/a", "", &[], vec![])
            .await
            .status(),
        StatusCode::ACCEPTED
    );
    s.await_extent_bytes(2 * big.len() as u64, UNLINKED).await;
    // The copy keeps its bytes after the source is gone.
    assert_eq!(s.get_bytes("/space/c").await.len(), big.len());
    // Restart on the same data directory.
    let dir = s.stop().await;
    let s2 = TestServer::start_with(|c| c.data_dir = dir.path().to_owned()).await;
    assert_eq!(s2.get_bytes("/space/b").await.as_ref(), big.as_slice());
    assert_eq!(
        s2.call(Method::DELETE, "/space", "restype=container", &[], vec![])
            .await
            .status(),
        StatusCode::ACCEPTED
    );
    s2.await_extent_bytes(0, UNLINKED).await;
    assert_eq!(
        error_code(s2.call(Method::GET, "/space/b", "", &[], vec![]).await)
            .await
            .1,
        "ContainerNotFound"
    );
    s2.stop().await;
    drop(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uncommitted_blocks_expire() {
    let s = TestServer::start_with(|c| {
        c.engine.uncommitted_ttl = Duration::from_secs(0);
        c.gc_interval = Duration::from_millis(200);
    })
    .await;
    s.create_container("gcx").await;
    let r = s
        .call(
            Method::PUT,
            "/gcx/abandoned",
            &format!("comp=block&blockid={}", pct(&block_id(1))),
            &[],
            vec![9u8; 100_000],
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    // The abandoned block's extent is collected.
    s.await_extent_bytes(0, Duration::from_secs(5)).await;
    let r = s
        .call(
            Method::GET,
            "/gcx/abandoned",
            "comp=blocklist&blocklisttype=all",
            &[],
            vec![],
        )
        .await;
    assert_eq!(error_code(r).await.1, "BlobNotFound");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_operations_and_verbs_get_azure_errors() {
    let s = TestServer::start().await;
    s.create_container("ops").await;
    let r = s
        .call(
            Method::GET,
            "/ops",
            "restype=container&comp=bogus",
            &[],
            vec![],
        )
        .await;
    assert_eq!(
        error_code(r).await,
        (StatusCode::BAD_REQUEST, "InvalidQueryParameterValue".into())
    );
    let r = s.call(Method::POST, "/ops/x", "", &[], vec![]).await;
    assert_eq!(
        error_code(r).await,
        (StatusCode::METHOD_NOT_ALLOWED, "UnsupportedHttpVerb".into())
    );
    let r = s
        .call(Method::PUT, "/ops/x", "", &[], b"no type".to_vec())
        .await;
    assert_eq!(
        error_code(r).await,
        (StatusCode::BAD_REQUEST, "MissingRequiredHeader".into())
    );
    let r = s
        .call(
            Method::PUT,
            "/ops/x",
            "",
            &[
                ("x-ms-blob-type", "BlockBlob"),
                ("content-md5", "AAAAAAAAAAAAAAAAAAAAAA=="),
            ],
            b"data".to_vec(),
        )
        .await;
    assert_eq!(
        error_code(r).await,
        (StatusCode::BAD_REQUEST, "Md5Mismatch".into())
    );
    assert_eq!(
        error_code(s.call(Method::HEAD, "/ops/x", "", &[], vec![]).await)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    let r = s
        .call(
            Method::PUT,
            "/ops",
            "restype=container&comp=acl",
            &[],
            b"<SignedIdentifiers><SignedIdentifier>".to_vec(),
        )
        .await;
    assert_eq!(
        error_code(r).await,
        (StatusCode::BAD_REQUEST, "InvalidXmlDocument".into())
    );
    // Without credentials, a private container looks like nothing at all.
    let r = s
        .client
        .get(format!(
            "http://{}/devstoreaccount1/ops?restype=container&comp=list",
            s.addr()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_code(r).await,
        (StatusCode::NOT_FOUND, "ResourceNotFound".into())
    );
    s.stop().await;
}

/// An account SAS over the given fields, signed with the development key.
fn account_sas(sp: &str, ss: &str, srt: &str, sip: &str, spr: &str) -> String {
    let se = iso(chrono_like_now() + 3600);
    let sts = format!("devstoreaccount1\n{sp}\n{ss}\n{srt}\n\n{se}\n{sip}\n{spr}\n2020-10-02\n");
    let sig = AccountKey::from_base64("devstoreaccount1", DEV_ACCOUNT_KEY)
        .unwrap()
        .sign(&sts);
    let mut q = format!("sv=2020-10-02&ss={ss}&srt={srt}&sp={sp}&se={}", pct(&se));
    if !sip.is_empty() {
        q.push_str(&format!("&sip={}", pct(sip)));
    }
    if !spr.is_empty() {
        q.push_str(&format!("&spr={}", pct(spr)));
    }
    format!("{q}&sig={}", pct(&sig))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sas_protocol_address_service_and_resource_checks() {
    let s = TestServer::start().await;
    s.create_container("sascheck").await;
    assert_eq!(
        s.put_blob("/sascheck/b", b"data").await.status(),
        StatusCode::CREATED
    );
    let get = |sas: String| {
        let url = format!("http://{}/devstoreaccount1/sascheck/b?{sas}", s.addr());
        let client = s.client.clone();
        async move {
            client
                .get(url)
                .header("x-ms-version", "2026-10-06")
                .send()
                .await
                .unwrap()
        }
    };
    assert_eq!(
        get(account_sas("r", "b", "o", "", "")).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        get(account_sas("r", "b", "o", "127.0.0.1", "https,http"))
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        get(account_sas("r", "b", "o", "127.0.0.0-127.0.0.9", ""))
            .await
            .status(),
        StatusCode::OK
    );
    for (sas, code) in [
        (
            account_sas("r", "b", "o", "", "https"),
            "AuthorizationProtocolMismatch",
        ),
        (
            account_sas("r", "b", "o", "10.1.2.3", ""),
            "AuthorizationSourceIPMismatch",
        ),
        (
            account_sas("r", "qt", "o", "", ""),
            "AuthorizationServiceMismatch",
        ),
        (
            account_sas("r", "b", "sc", "", ""),
            "AuthorizationResourceTypeMismatch",
        ),
        (
            account_sas("wl", "b", "o", "", ""),
            "AuthorizationPermissionMismatch",
        ),
        (
            account_sas("r", "b", "o", "", "").replace("sp=r", "sp=rw"),
            "AuthenticationFailed",
        ),
    ] {
        assert_eq!(
            error_code(get(sas).await).await,
            (StatusCode::FORBIDDEN, code.to_owned())
        );
    }
    s.stop().await;
}

/// Sends a request signed with SharedKey; `key` is the base64 account key to sign with.
async fn shared_key_request(
    s: &TestServer,
    method: Method,
    path: &str,
    query: &str,
    date: std::time::SystemTime,
    key: &str,
    body: Vec<u8>,
) -> reqwest::Response {
    use cobalt_blob::auth::shared_key::{HeaderOrder, string_to_sign};
    use cobalt_blob::request::Query;
    let sep = if query.is_empty() { "" } else { "?" };
    let url = format!("http://{}/devstoreaccount1{path}{sep}{query}", s.addr());
    let mut req = s
        .client
        .request(method.clone(), url)
        .header("x-ms-version", "2026-10-06")
        .header("x-ms-date", httpdate::fmt_http_date(date))
        .header("x-ms-blob-type", "BlockBlob")
        .header("content-length", body.len().to_string())
        .body(body)
        .build()
        .unwrap();
    let q = Query::parse(Some(query).filter(|q| !q.is_empty())).unwrap();
    let sts = string_to_sign(
        &method,
        req.headers(),
        "devstoreaccount1",
        &format!("/devstoreaccount1{path}"),
        &q,
        HeaderOrder::Ordinal,
    );
    let sig = AccountKey::from_base64("devstoreaccount1", key)
        .unwrap()
        .sign(&sts);
    req.headers_mut().insert(
        "authorization",
        format!("SharedKey devstoreaccount1:{sig}").parse().unwrap(),
    );
    s.client.execute(req).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_key_checks_signature_date_and_never_yields_to_public_access() {
    let s = TestServer::start().await;
    let now = std::time::SystemTime::now();
    let r = shared_key_request(
        &s,
        Method::PUT,
        "/sharedkey",
        "restype=container",
        now,
        DEV_ACCOUNT_KEY,
        vec![],
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = shared_key_request(
        &s,
        Method::PUT,
        "/sharedkey/blob%20one.txt",
        "",
        now,
        DEV_ACCOUNT_KEY,
        b"hi".to_vec(),
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    // A request dated 20 minutes ago is refused, as are requests from the future.
    for skew in [-1200i64, 1200] {
        let date = if skew < 0 {
            now - Duration::from_secs(1200)
        } else {
            now + Duration::from_secs(1200)
        };
        let r = shared_key_request(
            &s,
            Method::GET,
            "/sharedkey/blob%20one.txt",
            "",
            date,
            DEV_ACCOUNT_KEY,
            vec![],
        )
        .await;
        assert_eq!(
            error_code(r).await,
            (StatusCode::FORBIDDEN, "AuthenticationFailed".into()),
            "skew {skew}"
        );
    }
    // Make the container public, then sign with a wrong key: still refused, with Azure's detail.
    let r = s
        .call(
            Method::PUT,
            "/sharedkey",
            "restype=container&comp=acl",
            &[("x-ms-blob-public-access", "container")],
            vec![],
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let wrong = STANDARD.encode([3u8; 64]);
    let r = shared_key_request(
        &s,
        Method::GET,
        "/sharedkey/blob%20one.txt",
        "",
        now,
        &wrong,
        vec![],
    )
    .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let body = r.text().await.unwrap();
    assert!(
        body.contains("<AuthenticationErrorDetail>The MAC signature found in the HTTP request"),
        "{body}"
    );
    assert!(!body.contains(DEV_ACCOUNT_KEY) && !body.contains(&wrong));
    // Anonymous reads of the public container work.
    let r = s
        .client
        .get(format!(
            "http://{}/devstoreaccount1/sharedkey/blob%20one.txt",
            s.addr()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"hi");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_an_upload_in_flight_finish() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = TestServer::start().await;
    s.create_container("drain").await;
    let url = s.url("/drain/late.bin", "");
    let path_and_query = url.splitn(4, '/').nth(3).unwrap().to_owned();
    let body = vec![5u8; 2 * 1024 * 1024];
    let mut stream = tokio::net::TcpStream::connect(s.addr()).await.unwrap();
    let head = format!(
        "PUT /{path_and_query} HTTP/1.1\r\nHost: {}\r\nx-ms-version: 2026-10-06\r\nx-ms-blob-type: BlockBlob\r\nContent-Length: {}\r\n\r\n",
        s.addr(),
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&body[..body.len() / 2]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Shut down while the body is half sent.
    let TestServer {
        server,
        dir,
        data_dir,
        ..
    } = s;
    let shutdown = tokio::spawn(server.unwrap().shutdown());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !shutdown.is_finished(),
        "shutdown did not wait for the upload"
    );
    stream.write_all(&body[body.len() / 2..]).await.unwrap();
    let mut response = vec![0u8; 1024];
    let n = stream.read(&mut response).await.unwrap();
    let text = String::from_utf8_lossy(&response[..n]);
    assert!(text.starts_with("HTTP/1.1 201"), "{text}");
    drop(stream);
    tokio::time::timeout(Duration::from_secs(10), shutdown)
        .await
        .unwrap()
        .unwrap();
    // The upload is there after a restart.
    let s2 = TestServer::start_with(|c| c.data_dir = data_dir.clone()).await;
    let got = s2
        .call(Method::GET, "/drain/late.bin", "", &[], vec![])
        .await
        .bytes()
        .await
        .unwrap();
    assert_eq!(got.len(), body.len());
    s2.stop().await;
    drop(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_process_per_data_directory() {
    let s = TestServer::start().await;
    let mut config = ServerConfig::new(s.data_dir.clone());
    config.blob_port = 0;
    config.batch_port = 0;
    let second = Server::start(config).await;
    let err = second
        .err()
        .expect("a second server on the same data directory must not start");
    assert!(
        format!("{err:#}").contains("in use by another Cobalt process"),
        "{err:#}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_copies_and_unsupported_sources() {
    let s = TestServer::start().await;
    s.create_container("snaps").await;
    assert_eq!(
        s.put_blob("/snaps/b", b"live").await.status(),
        StatusCode::CREATED
    );
    // Cobalt keeps no snapshots: naming one finds nothing, and deleting "only" snapshots
    // leaves the blob alone.
    let r = s
        .call(
            Method::GET,
            "/snaps/b",
            "snapshot=2026-01-01T00%3A00%3A00.0000000Z",
            &[],
            vec![],
        )
        .await;
    assert_eq!(
        error_code(r).await,
        (StatusCode::NOT_FOUND, "BlobNotFound".into())
    );
    let r = s
        .call(
            Method::DELETE,
            "/snaps/b",
            "versionid=2026-01-01T00%3A00%3A00.0000000Z",
            &[],
            vec![],
        )
        .await;
    assert_eq!(error_code(r).await.1, "BlobNotFound");
    let r = s
        .call(
            Method::DELETE,
            "/snaps/b",
            "",
            &[("x-ms-delete-snapshots", "only")],
            vec![],
        )
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(s.get_bytes("/snaps/b").await.as_ref(), b"live");
    // Staging a block from a URL is not implemented: say so rather than stage nothing.
    let r = s
        .call(
            Method::PUT,
            "/snaps/c",
            &format!("comp=block&blockid={}", pct(&block_id(1))),
            &[("x-ms-copy-source", &s.url("/snaps/b", ""))],
            vec![],
        )
        .await;
    assert_eq!(
        error_code(r).await,
        (StatusCode::NOT_IMPLEMENTED, "NotImplemented".into())
    );
    // A copy never shows the source's SAS to readers of the destination, and Set Blob
    // Properties ends the copy's record.
    let source = s.url("/snaps/b", "");
    let r = s
        .call(
            Method::PUT,
            "/snaps/copy",
            "",
            &[("x-ms-copy-source", &source)],
            vec![],
        )
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let r = s.call(Method::HEAD, "/snaps/copy", "", &[], vec![]).await;
    let shown = r.headers()["x-ms-copy-source"].to_str().unwrap().to_owned();
    assert!(
        shown.ends_with("/snaps/b") && !shown.contains("sig="),
        "{shown}"
    );
    let r = s
        .call(
            Method::PUT,
            "/snaps/copy",
            "comp=properties",
            &[("x-ms-blob-content-type", "text/plain")],
            vec![],
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = s.call(Method::HEAD, "/snaps/copy", "", &[], vec![]).await;
    assert!(!r.headers().contains_key("x-ms-copy-status"));
    // A copied append blob can still be appended to.
    let r = s
        .call(
            Method::PUT,
            "/snaps/log",
            "",
            &[("x-ms-blob-type", "AppendBlob")],
            vec![],
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    for line in [&b"one\n"[..], b"two\n"] {
        assert_eq!(
            s.call(
                Method::PUT,
                "/snaps/log",
                "comp=appendblock",
                &[],
                line.to_vec()
            )
            .await
            .status(),
            StatusCode::CREATED
        );
    }
    let r = s
        .call(
            Method::PUT,
            "/snaps/log2",
            "",
            &[("x-ms-copy-source", &s.url("/snaps/log", ""))],
            vec![],
        )
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let r = s
        .call(
            Method::PUT,
            "/snaps/log2",
            "comp=appendblock",
            &[],
            b"three\n".to_vec(),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(r.headers()["x-ms-blob-committed-block-count"], "3");
    assert_eq!(r.headers()["x-ms-blob-append-offset"], "8");
    assert_eq!(
        s.get_bytes("/snaps/log2").await.as_ref(),
        b"one\ntwo\nthree\n"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_access_policies_cannot_be_overridden_by_the_token() {
    let s = TestServer::start().await;
    s.create_container("policy").await;
    assert_eq!(
        s.put_blob("/policy/b", b"guarded").await.status(),
        StatusCode::CREATED
    );
    let acl = "<SignedIdentifiers><SignedIdentifier><Id>readers</Id><AccessPolicy><Expiry>2099-01-01T00:00:00Z</Expiry><Permission>r</Permission></AccessPolicy></SignedIdentifier></SignedIdentifiers>";
    let r = s
        .call(
            Method::PUT,
            "/policy",
            "restype=container&comp=acl",
            &[],
            acl.as_bytes().to_vec(),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let service_sas = |se: &str| {
        let sts = format!(
            "\n\n{se}\n/blob/devstoreaccount1/policy\nreaders\n\n\n2020-10-02\nc\n\n\n\n\n\n"
        );
        let sig = AccountKey::from_base64("devstoreaccount1", DEV_ACCOUNT_KEY)
            .unwrap()
            .sign(&sts);
        let se_part = if se.is_empty() {
            String::new()
        } else {
            format!("&se={}", pct(se))
        };
        format!("sv=2020-10-02&sr=c&si=readers{se_part}&sig={}", pct(&sig))
    };
    let get = |sas: String| {
        let url = format!("http://{}/devstoreaccount1/policy/b?{sas}", s.addr());
        let client = s.client.clone();
        async move {
            client
                .get(url)
                .header("x-ms-version", "2026-10-06")
                .send()
                .await
                .unwrap()
        }
    };
    // The policy supplies the permission and expiry.
    assert_eq!(
        get(service_sas("")).await.bytes().await.unwrap().as_ref(),
        b"guarded"
    );
    // A token that also sets the expiry is refused.
    let r = get(service_sas("2099-06-01T00:00:00Z")).await;
    assert_eq!(
        error_code(r).await,
        (StatusCode::FORBIDDEN, "AuthenticationFailed".into())
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_from_a_configuration_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cobalt.toml");
    let key = STANDARD.encode([9u8; 64]);
    std::fs::write(
        &path,
        format!("[[storage_accounts]]\nname = \"secondacct\"\nkey = \"{key}\"\n"),
    )
    .unwrap();
    let file = cobalt_server::ConfigFile::load(&path).unwrap();
    let s = TestServer::start_with(|c| c.apply(&file)).await;
    // An account SAS of the new account, signed with its key.
    let se = iso(chrono_like_now() + 3600);
    let sts = format!("secondacct\nrwdlc\nb\nsco\n\n{se}\n\n\n2020-10-02\n");
    let sig = AccountKey::from_base64("secondacct", &key)
        .unwrap()
        .sign(&sts);
    let sas = format!(
        "sv=2020-10-02&ss=b&srt=sco&sp=rwdlc&se={}&sig={}",
        pct(&se),
        pct(&sig)
    );
    let url = format!("http://{}/secondacct/own?restype=container&{sas}", s.addr());
    let r = s
        .client
        .put(url)
        .header("x-ms-version", "2026-10-06")
        .header("content-length", "0")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    // The development account does not see the other account's container.
    let r = s
        .call(Method::GET, "/own", "restype=container", &[], vec![])
        .await;
    assert_eq!(error_code(r).await.1, "ContainerNotFound");
    s.stop().await;
    // A bad file is refused with a clear message.
    std::fs::write(&path, "[[storage_accounts]]\nname = \"x\"\n").unwrap();
    let err = cobalt_server::ConfigFile::load(&path).unwrap_err();
    assert!(
        format!("{err:#}").contains("not a valid Cobalt configuration"),
        "{err:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_block_list_commits_leave_one_complete_version() {
    let s = TestServer::start().await;
    s.create_container("commits").await;
    // Each writer stages its own 8 blocks of 64 KiB (ids of one length, as Azure requires),
    // all of them before anyone commits, then all commit at once. A commit discards the
    // other writers' uncommitted blocks, so each later commit either finds its blocks or
    // fails with InvalidBlockList; the blob is always exactly one writer's bytes.
    const WRITERS: u8 = 4;
    const BLOCKS: u8 = 8;
    for round in 0..3 {
        let content = |w: u8, b: u8| vec![w * 16 + b + round; 64 * 1024];
        let id = |w: u8, b: u8| STANDARD.encode(format!("w{w}-b{b:02}"));
        for w in 0..WRITERS {
            for b in 0..BLOCKS {
                let r = s
                    .call(
                        Method::PUT,
                        "/commits/same",
                        &format!("comp=block&blockid={}", pct(&id(w, b))),
                        &[],
                        content(w, b),
                    )
                    .await;
                assert_eq!(r.status(), StatusCode::CREATED);
            }
        }
        let mut tasks = Vec::new();
        for w in 0..WRITERS {
            let body: String = (0..BLOCKS)
                .map(|b| format!("<Uncommitted>{}</Uncommitted>", id(w, b)))
                .collect();
            let body =
                format!("<?xml version=\"1.0\" encoding=\"utf-8\"?><BlockList>{body}</BlockList>");
            let (client, url) = (s.client.clone(), s.url("/commits/same", "comp=blocklist"));
            tasks.push(tokio::spawn(async move {
                let r = client
                    .put(url)
                    .header("x-ms-version", "2026-10-06")
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                (w, error_code(r).await)
            }));
        }
        let mut winners = Vec::new();
        for t in tasks {
            match t.await.unwrap() {
                (w, (StatusCode::CREATED, _)) => winners.push(w),
                (_, (status, code)) => {
                    assert_eq!(
                        (status, code.as_str()),
                        (StatusCode::BAD_REQUEST, "InvalidBlockList")
                    )
                }
            }
        }
        assert!(!winners.is_empty(), "round {round}: no commit succeeded");
        let got = s.get_bytes("/commits/same").await;
        let expected = |w: u8| (0..BLOCKS).flat_map(|b| content(w, b)).collect::<Vec<u8>>();
        assert!(
            winners
                .iter()
                .any(|&w| got.as_ref() == expected(w).as_slice()),
            "round {round}: the blob is no single writer's bytes ({} bytes; winners {winners:?})",
            got.len()
        );
        // No writer's uncommitted blocks survive a commit.
        let list = s
            .get_text("/commits/same", "comp=blocklist&blocklisttype=uncommitted")
            .await;
        assert!(
            list.contains("<UncommittedBlocks") && !list.contains("<Block>"),
            "{list}"
        );
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn size_count_and_digest_limits() {
    let s = TestServer::start().await;
    s.create_container("limits").await;
    let kept = b"the blob that is already there";
    assert_eq!(
        s.put_blob("/limits/kept", kept).await.status(),
        StatusCode::CREATED
    );

    // Over-size bodies are refused from their Content-Length alone, before any byte of the
    // body is sent, with each version's limit.
    let mib: u64 = 1024 * 1024;
    let too_big = |path: &str, query: &str, version: &str, len: u64| {
        let sep = if query.is_empty() { "" } else { "&" };
        let head = format!(
            "PUT /devstoreaccount1{path}?{query}{sep}{} HTTP/1.1\r\nhost: {}\r\nx-ms-version: {version}\r\n\
             x-ms-blob-type: BlockBlob\r\ncontent-length: {len}\r\n\r\n",
            s.sas,
            s.addr()
        );
        let addr = s.addr();
        async move { raw_request(addr, &head, b"").await }
    };
    let block = format!("comp=block&blockid={}", pct(&block_id(1)));
    for (version, put_blob_limit, block_limit) in [
        ("2015-04-05", 64 * mib, 4 * mib),
        ("2018-03-28", 256 * mib, 100 * mib),
        ("2026-10-06", 5000 * mib, 4000 * mib),
    ] {
        assert_eq!(
            too_big("/limits/kept", "", version, put_blob_limit + 1).await,
            (413, "RequestBodyTooLarge".to_owned()),
            "Put Blob at {version}"
        );
        assert_eq!(
            too_big("/limits/kept", &block, version, block_limit + 1).await,
            (413, "RequestBodyTooLarge".to_owned()),
            "Put Block at {version}"
        );
    }

    // A Put Block whose bytes do not match its Content-MD5 is refused and not staged.
    let put_some_bytes_with_md5_of = |digested: &'static [u8]| {
        let md5 = STANDARD.encode(md5_of(digested));
        let (s, block) = (&s, &block);
        async move {
            s.call(
                Method::PUT,
                "/limits/kept",
                block,
                &[("content-md5", &md5)],
                b"some bytes".to_vec(),
            )
            .await
        }
    };
    let r = put_some_bytes_with_md5_of(b"other bytes").await;
    assert_eq!(
        error_code(r).await,
        (StatusCode::BAD_REQUEST, "Md5Mismatch".into())
    );
    let r = put_some_bytes_with_md5_of(b"some bytes").await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let list = s
        .get_text("/limits/kept", "comp=blocklist&blocklisttype=uncommitted")
        .await;
    assert_eq!(list.matches("<Block>").count(), 1, "{list}");

    // More than 50,000 blocks in one list: 409 BlockCountExceedsLimit, the blob unchanged.
    let commit_block_1_times = |n: usize| {
        let entry = format!("<Latest>{}</Latest>", block_id(1));
        let body = format!("<BlockList>{}</BlockList>", entry.repeat(n));
        s.call(
            Method::PUT,
            "/limits/kept",
            "comp=blocklist",
            &[],
            body.into_bytes(),
        )
    };
    let r = commit_block_1_times(50_001).await;
    assert_eq!(
        error_code(r).await,
        (StatusCode::CONFLICT, "BlockCountExceedsLimit".into())
    );
    assert_eq!(s.get_bytes("/limits/kept").await.as_ref(), kept);
    // Exactly 50,000 of the staged block is allowed.
    let r = commit_block_1_times(50_000).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = s.call(Method::HEAD, "/limits/kept", "", &[], vec![]).await;
    assert_eq!(r.headers()["content-length"], (50_000 * 10).to_string());
    s.stop().await;
}

fn md5_of(data: &[u8]) -> Vec<u8> {
    use cobalt_md5::{Digest, Md5};
    Md5::digest(data).to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_properties_are_set_per_setting() {
    let s = TestServer::start().await;
    let get = || async {
        let r = s
            .call(
                Method::GET,
                "/",
                "restype=service&comp=properties",
                &[],
                vec![],
            )
            .await;
        assert_eq!(r.status(), StatusCode::OK);
        r.text().await.unwrap()
    };
    let set = |body: &str| {
        let body = body.as_bytes().to_vec();
        async {
            s.call(
                Method::PUT,
                "/",
                "restype=service&comp=properties",
                &[],
                body,
            )
            .await
        }
    };
    let defaults = get().await;
    assert!(
        defaults.contains("<Logging><Version>1.0</Version>"),
        "{defaults}"
    );

    let cors = "<Cors><CorsRule><AllowedOrigins>https://example.org</AllowedOrigins><AllowedMethods>GET</AllowedMethods>\
                <AllowedHeaders>*</AllowedHeaders><ExposedHeaders>*</ExposedHeaders><MaxAgeInSeconds>60</MaxAgeInSeconds></CorsRule></Cors>";
    let r = set(&format!("<?xml version=\"1.0\" encoding=\"utf-8\"?><StorageServiceProperties>{cors}</StorageServiceProperties>")).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let retention =
        "<DeleteRetentionPolicy><Enabled>true</Enabled><Days>7</Days></DeleteRetentionPolicy>";
    let r = set(&format!(
        "<StorageServiceProperties>{retention}</StorageServiceProperties>"
    ))
    .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    // Both settings are there, with the logging and metrics left as they were.
    let both = get().await;
    assert!(both.contains(cors) && both.contains(retention), "{both}");
    assert!(both.contains("<Logging><Version>1.0</Version>"), "{both}");

    // Bad bodies change nothing.
    for body in ["<StorageServiceProperties><Cors>", "<Other/>", "not xml"] {
        assert_eq!(
            error_code(set(body).await).await,
            (StatusCode::BAD_REQUEST, "InvalidXmlDocument".into()),
            "{body}"
        );
    }
    assert_eq!(get().await, both);
    // An empty Cors removes the rules.
    let r = set("<StorageServiceProperties><Cors /></StorageServiceProperties>").await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let cleared = get().await;
    assert!(
        !cleared.contains("CorsRule") && cleared.contains(retention),
        "{cleared}"
    );
    s.stop().await;
}
