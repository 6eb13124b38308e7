//! The test harness: a fake Batch server speaking cobalt-proto over a real WebSocket, the real
//! Blob service of `cobalt-server`, and an agent running in process.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use cobalt_agent::{AgentConfig, AgentError, Exit};
use cobalt_model::batch::{OutputFile, ResourceFile};
use cobalt_model::{AccountKey, DEV_ACCOUNT_KEY};
use cobalt_proto::{
    AgentMessage, Assignment, Event, FileOutcome, FileRequest, Hello, RunEnd, RunKind,
    ServerMessage, TOKEN_HEADER, Welcome,
};
use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http;

/// The longest any single wait in a test lasts.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// A fake Batch server: accepts agents on `ws://127.0.0.1:port`, checks the token, and hands
/// each connection to the test.
pub struct FakeServer {
    pub url: String,
    /// While set, upgrades are answered 503 (the server is "down").
    pub refuse: Arc<AtomicBool>,
    conns: mpsc::UnboundedReceiver<Conn>,
}

impl FakeServer {
    pub async fn start(token: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (tx, conns) = mpsc::unbounded_channel();
        let token = token.to_owned();
        let refuse = Arc::new(AtomicBool::new(false));
        let refusing = refuse.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let token = token.clone();
                let tx = tx.clone();
                let refusing = refusing.load(Ordering::SeqCst);
                tokio::spawn(async move {
                    let check =
                        |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
                            if refusing {
                                let busy = http::Response::builder().status(503).body(None);
                                return Err(busy.unwrap());
                            }
                            let ok = req.uri().path() == cobalt_proto::AGENT_PATH
                                && req
                                    .headers()
                                    .get(TOKEN_HEADER)
                                    .and_then(|v| v.to_str().ok())
                                    == Some(token.as_str());
                            if ok {
                                Ok(resp)
                            } else {
                                Err(http::Response::builder().status(401).body(None).unwrap())
                            }
                        };
                    if let Ok(ws) = tokio_tungstenite::accept_hdr_async(tcp, check).await {
                        let _ = tx.send(Conn::new(ws));
                    }
                });
            }
        });
        Self { url, refuse, conns }
    }

    /// The next agent connection.
    pub async fn next_conn(&mut self) -> Conn {
        tokio::time::timeout(PATIENCE, self.conns.recv())
            .await
            .expect("no agent connected")
            .unwrap()
    }

    /// The next connection, with Hello read and Welcome sent.
    pub async fn accept(&mut self, node_id: &str, heartbeat_seconds: u64) -> (Conn, Hello) {
        let mut conn = self.next_conn().await;
        let hello = conn.welcome(node_id, heartbeat_seconds).await;
        (conn, hello)
    }
}

/// One agent connection, as the server sees it.
pub struct Conn {
    ws: WebSocketStream<TcpStream>,
    /// Every event received, in order.
    pub events: Vec<Event>,
    /// How many `Events` messages carried them.
    pub event_messages: usize,
    /// Pings received.
    pub pings: usize,
    replies: Vec<cobalt_proto::FileReply>,
}

impl Conn {
    pub fn new(ws: WebSocketStream<TcpStream>) -> Self {
        Self {
            ws,
            events: Vec::new(),
            event_messages: 0,
            pings: 0,
            replies: Vec::new(),
        }
    }

    /// Reads Hello and answers Welcome.
    pub async fn welcome(&mut self, node_id: &str, heartbeat_seconds: u64) -> Hello {
        self.welcome_with_slots(node_id, heartbeat_seconds, 0).await
    }

    /// Reads Hello and answers Welcome with `task_slots` (0: no limit).
    pub async fn welcome_with_slots(
        &mut self,
        node_id: &str,
        heartbeat_seconds: u64,
        task_slots: u32,
    ) -> Hello {
        let hello = self.hello().await;
        self.send_welcome(&hello, node_id, heartbeat_seconds, task_slots)
            .await;
        hello
    }

    /// Reads the agent's first message, which must be Hello.
    pub async fn hello(&mut self) -> Hello {
        let AgentMessage::Hello(hello) = self.recv().await.expect("closed before Hello") else {
            panic!("expected Hello first");
        };
        hello
    }

    /// Answers `hello` with Welcome.
    pub async fn send_welcome(
        &mut self,
        hello: &Hello,
        node_id: &str,
        heartbeat_seconds: u64,
        task_slots: u32,
    ) {
        self.send(ServerMessage::Welcome(Welcome {
            node_id: node_id.into(),
            environment: vec![
                ("AZ_BATCH_POOL_ID".into(), hello.pool_id.clone()),
                ("NODE_VAR".into(), "from-welcome".into()),
            ],
            heartbeat_seconds,
            task_slots,
        }))
        .await;
    }

    pub async fn send(&mut self, message: ServerMessage) {
        let text = serde_json::to_string(&message).unwrap();
        self.ws.send(Message::text(text)).await.unwrap();
    }

    pub async fn run(&mut self, assignments: Vec<Assignment>) {
        self.send(ServerMessage::Run { runs: assignments }).await;
    }

    /// The next protocol message (None when the agent closed), recording events and pings.
    pub async fn recv(&mut self) -> Option<AgentMessage> {
        loop {
            let message = tokio::time::timeout(PATIENCE, self.ws.next())
                .await
                .expect("the agent said nothing");
            match message {
                Some(Ok(Message::Text(text))) => {
                    let message: AgentMessage = serde_json::from_str(&text).unwrap();
                    match &message {
                        AgentMessage::Events { events } => {
                            self.event_messages += 1;
                            self.events.extend(events.iter().cloned());
                        }
                        AgentMessage::FileReply(reply) => self.replies.push(reply.clone()),
                        AgentMessage::Hello(_) => {}
                    }
                    return Some(message);
                }
                Some(Ok(Message::Ping(_))) => self.pings += 1,
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
                Some(Ok(_)) => {}
            }
        }
    }

    /// Reads until `run` has ended; returns its end.
    pub async fn ended(&mut self, run: u64) -> RunEnd {
        loop {
            if let Some(end) = self.find_end(run) {
                return end;
            }
            self.recv().await.expect("the agent closed the connection");
        }
    }

    fn find_end(&self, run: u64) -> Option<RunEnd> {
        self.events.iter().find_map(|e| match e {
            Event::Ended(end) if end.run == run => Some(end.clone()),
            _ => None,
        })
    }

    /// Reads until `run` has started.
    pub async fn started(&mut self, run: u64) {
        while !self.was_started(run) {
            self.recv().await.expect("the agent closed the connection");
        }
    }

    pub fn was_started(&self, run: u64) -> bool {
        self.events
            .iter()
            .any(|e| matches!(e, Event::Started { run: r, .. } if *r == run))
    }

    /// Sends a file request and waits for its answer.
    pub async fn file(&mut self, id: u64, path: &str, op: cobalt_proto::FileOp) -> FileOutcome {
        let request = FileRequest {
            id,
            path: path.into(),
            op,
        };
        self.send(ServerMessage::File(request)).await;
        loop {
            if let Some(i) = self.replies.iter().position(|r| r.id == id) {
                return self.replies.remove(i).outcome;
            }
            self.recv().await.expect("the agent closed the connection");
        }
    }

    /// Closes the connection from the server side.
    pub async fn drop_connection(mut self) {
        let _ = self.ws.close(None).await;
    }
}

/// An agent running in this process, on a node root in a temporary directory.
pub struct TestAgent {
    pub root: PathBuf,
    /// A directory outside the node root, for the tests' own files.
    pub scratch: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    join: Option<JoinHandle<Result<Exit, AgentError>>>,
    _dir: tempfile::TempDir,
}

impl TestAgent {
    pub fn start(server: &str, token: &str) -> Self {
        // Tasks that run as `nobody` (when the tests run as root) must reach their directory.
        Self::start_in(server, token, 0o755)
    }

    /// An agent whose node root is under a directory of mode `mode`.
    pub fn start_in(server: &str, token: &str, mode: u32) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(mode)).unwrap();
        let root = dir.path().join("node");
        let scratch = dir.path().join("scratch");
        std::fs::create_dir_all(&scratch).unwrap();
        std::fs::set_permissions(&scratch, std::fs::Permissions::from_mode(0o777)).unwrap();
        let config = AgentConfig {
            server: server.into(),
            account: "devbatchaccount1".into(),
            pool_id: "pool1".into(),
            node_root: root.clone(),
            token: token.into(),
            node_id: None,
            node_env: vec![
                ("AGENT_VAR".into(), "from-the-agent".into()),
                // The machine's own setting wins over the server's (`Welcome`).
                ("NODE_VAR".into(), "from-the-machine".into()),
            ],
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let join = tokio::spawn(cobalt_agent::run(config, async {
            let _ = stopped.await;
        }));
        Self {
            root,
            scratch,
            stop: Some(stop),
            join: Some(join),
            _dir: dir,
        }
    }

    /// The agent's result, once it has stopped by itself.
    pub async fn finished(&mut self) -> Result<Exit, AgentError> {
        let join = self.join.take().unwrap();
        tokio::time::timeout(PATIENCE, join)
            .await
            .expect("the agent did not stop")
            .unwrap()
    }

    /// Stops the agent as SIGTERM would.
    pub async fn shutdown(&mut self) -> Result<Exit, AgentError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.finished().await
    }

    /// A task's directory.
    pub fn task_dir(&self, run: u64) -> PathBuf {
        self.root.join(task_dir_of(run))
    }

    /// A file in a task's working directory, as text.
    pub fn wd_file(&self, run: u64, name: &str) -> String {
        std::fs::read_to_string(self.task_dir(run).join("wd").join(name)).unwrap_or_default()
    }

    pub fn stdout(&self, run: u64) -> String {
        std::fs::read_to_string(self.task_dir(run).join("stdout.txt")).unwrap_or_default()
    }
}

impl Drop for TestAgent {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// The task directory of run `run` in the tests.
pub fn task_dir_of(run: u64) -> String {
    cobalt_proto::layout::task_dir("job", &format!("task{run}"))
}

/// A task assignment with nothing but a command line.
pub fn task(run: u64, command_line: &str) -> Assignment {
    Assignment {
        run,
        kind: RunKind::Task,
        dir: task_dir_of(run),
        command_line: command_line.into(),
        environment: Vec::new(),
        resource_files: Vec::new(),
        output_files: Vec::new(),
        max_wall_clock_seconds: None,
        elevated: false,
        job_prep_dir: None,
        slots: 0,
        queued: false,
    }
}

/// A fake server and an agent connected to it (Welcome sent, heartbeat 5 s).
pub async fn connected() -> (FakeServer, Conn, TestAgent) {
    connected_with_slots(0).await
}

/// [`connected`], the node having `task_slots` task slots (0: no limit).
pub async fn connected_with_slots(task_slots: u32) -> (FakeServer, Conn, TestAgent) {
    let mut server = FakeServer::start("secret-token").await;
    let agent = TestAgent::start(&server.url, "secret-token");
    let mut conn = server.next_conn().await;
    conn.welcome_with_slots("node-1", 5, task_slots).await;
    (server, conn, agent)
}

/// The uid the agent runs non-elevated tasks as.
pub fn task_uid() -> String {
    let own = run_text("id", &["-u"]);
    if own == "0" {
        run_text("id", &["-u", "nobody"])
    } else {
        own
    }
}

fn run_text(program: &str, args: &[&str]) -> String {
    let out = std::process::Command::new(program)
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Whether process `pid` is gone (a zombie waiting for an init that does not reap counts as
/// gone: it runs nothing).
pub fn process_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with(['Z', 'X'])),
    }
}

/// Waits until `pid` is gone.
pub async fn wait_gone(pid: u32) -> bool {
    for _ in 0..200 {
        if process_gone(pid) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    false
}

/// Reads a pid a task wrote.
pub async fn read_pid(path: &Path) -> u32 {
    for _ in 0..400 {
        if let Ok(text) = std::fs::read_to_string(path)
            && let Ok(pid) = text.trim().parse()
        {
            return pid;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("no pid in {}", path.display());
}

/// The real Blob service on an ephemeral port, with an account SAS for the dev account.
pub struct Blobs {
    server: Option<cobalt_server::Server>,
    _dir: tempfile::TempDir,
    pub base: String,
    pub sas: String,
    client: reqwest::Client,
}

impl Blobs {
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut config = cobalt_server::ServerConfig::new(dir.path().to_owned());
        config.blob_port = 0;
        config.batch_port = 0;
        config.storage_accounts = None;
        let server = cobalt_server::Server::start(config).await.unwrap();
        let base = format!("http://{}/devstoreaccount1", server.blob_addr);
        Self {
            server: Some(server),
            _dir: dir,
            base,
            sas: account_sas(),
            client: reqwest::Client::new(),
        }
    }

    /// `{base}/{container}?{sas}`.
    pub fn container_url(&self, container: &str) -> String {
        format!("{}/{container}?{}", self.base, self.sas)
    }

    /// `{base}/{container}/{blob}?{sas}`.
    pub fn blob_url(&self, container: &str, blob: &str) -> String {
        format!("{}/{container}/{blob}?{}", self.base, self.sas)
    }

    pub async fn create_container(&self, container: &str) {
        let url = format!("{}/{container}?restype=container&{}", self.base, self.sas);
        let r = self
            .client
            .put(url)
            .header("x-ms-version", "2020-04-08")
            .header("content-length", "0")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 201, "{:?}", r.text().await);
    }

    pub async fn put(&self, container: &str, blob: &str, body: &[u8]) {
        let r = self
            .client
            .put(self.blob_url(container, blob))
            .header("x-ms-version", "2020-04-08")
            .header("x-ms-blob-type", "BlockBlob")
            .header("content-length", body.len().to_string())
            .body(body.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 201, "{:?}", r.text().await);
    }

    /// A blob's bytes, or None when it does not exist.
    pub async fn get(&self, container: &str, blob: &str) -> Option<String> {
        let r = self
            .client
            .get(self.blob_url(container, blob))
            .header("x-ms-version", "2020-04-08")
            .send()
            .await
            .unwrap();
        if r.status().as_u16() == 404 {
            return None;
        }
        assert_eq!(r.status().as_u16(), 200);
        Some(r.text().await.unwrap())
    }

    /// The blob names of a container.
    pub async fn list(&self, container: &str) -> Vec<String> {
        let url = format!(
            "{}/{container}?restype=container&comp=list&{}",
            self.base, self.sas
        );
        let r = self
            .client
            .get(url)
            .header("x-ms-version", "2020-04-08")
            .send()
            .await
            .unwrap();
        let body = r.text().await.unwrap();
        body.split("<Name>")
            .skip(1)
            .filter_map(|s| s.split("</Name>").next())
            .map(str::to_owned)
            .collect()
    }

    pub async fn stop(mut self) {
        self.server.take().unwrap().shutdown().await;
    }
}

/// A resource file from a URL.
pub fn http_file(url: &str, file_path: &str, mode: Option<&str>) -> ResourceFile {
    ResourceFile {
        http_url: Some(url.into()),
        file_path: Some(file_path.into()),
        file_mode: mode.map(str::to_owned),
        ..Default::default()
    }
}

/// An output file to a container.
pub fn output(
    pattern: &str,
    container_url: &str,
    path: Option<&str>,
    condition: &str,
) -> OutputFile {
    serde_json::from_value(serde_json::json!({
        "filePattern": pattern,
        "destination": {"container": {"containerUrl": container_url, "path": path}},
        "uploadOptions": {"uploadCondition": condition},
    }))
    .unwrap()
}

/// An account SAS with every blob permission, valid for an hour.
fn account_sas() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let se = iso(now + 3600);
    let sts = format!("devstoreaccount1\nracwdl\nb\nsco\n\n{se}\n\n\n2020-10-02\n");
    let sig = AccountKey::from_base64("devstoreaccount1", DEV_ACCOUNT_KEY)
        .unwrap()
        .sign(&sts);
    format!(
        "sv=2020-10-02&ss=b&srt=sco&sp=racwdl&se={}&sig={}",
        pct(&se),
        pct(&sig)
    )
}

/// ISO 8601 UTC of Unix seconds.
fn iso(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .unwrap()
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
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
