#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a failure is a test failure
//! The client commands as a user runs them: `cobalt serve` as a subprocess on free ports (its
//! pools get real local node agents, so tasks really run), and each `cobalt …` command as a
//! subprocess pointed at it through the environment.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use serde_json::Value;

const EXE: &str = env!("CARGO_BIN_EXE_cobalt");

/// Settings of the user's environment that must not leak into a test.
const ISOLATED: [&str; 12] = [
    "COBALT_STORAGE_ACCOUNTS",
    "AZURITE_ACCOUNTS",
    "COBALT_BATCH_ACCOUNTS",
    "COBALT_BATCH_URL",
    "COBALT_BLOB_URL",
    "COBALT_ACCOUNT",
    "COBALT_KEY",
    "AZURE_STORAGE_CONNECTION_STRING",
    "COBALT_CLIENT_CONFIG",
    "COBALT_CONFIG",
    "COBALT_DATA_DIR",
    "COBALT_LOG",
];

/// `cobalt serve` on free ports, killed (by its pid) when dropped.
struct Server {
    child: Child,
    batch_url: String,
    blob_url: String,
    dir: tempfile::TempDir,
    /// Every line the server has logged so far.
    log: Arc<Mutex<Vec<String>>>,
}

impl Server {
    fn start() -> Self {
        Self::start_in(tempfile::tempdir().unwrap(), |_| {})
    }

    /// Starts on `dir` (its `data` directory may hold an earlier server's state), with what
    /// `tune` adds to the command line and environment.
    fn start_in(dir: tempfile::TempDir, tune: impl FnOnce(&mut Command)) -> Self {
        std::fs::write(dir.path().join("client.toml"), "").unwrap();
        let mut command = Command::new(EXE);
        command
            .arg("serve")
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["--blob-port", "0", "--batch-port", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for name in ISOLATED {
            command.env_remove(name);
        }
        tune(&mut command);
        let mut child = command.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let log = Arc::new(Mutex::new(Vec::new()));
        let lines = Arc::clone(&log);
        // Reads the log to the end, so the server never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { return };
                for service in ["blob", "batch"] {
                    let marker = format!("{service} service listening on ");
                    if let Some(rest) = line.split(&marker).nth(1) {
                        let url = rest.split_whitespace().next().unwrap_or_default();
                        let _ = tx.send((service, url.to_owned()));
                    }
                }
                lines.lock().unwrap().push(line);
            }
        });
        let mut server = Self {
            child,
            batch_url: String::new(),
            blob_url: String::new(),
            dir,
            log,
        };
        while server.batch_url.is_empty() || server.blob_url.is_empty() {
            let (service, url) = rx
                .recv_timeout(Duration::from_secs(30))
                .expect("cobalt serve did not say where it listens");
            match service {
                "blob" => server.blob_url = format!("{url}/devstoreaccount1"),
                _ => server.batch_url = url,
            }
        }
        server
    }

    /// A `cobalt` command pointed at this server.
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(EXE);
        command.args(args).stdin(Stdio::null());
        for name in ISOLATED {
            command.env_remove(name);
        }
        command
            .env("COBALT_BATCH_URL", &self.batch_url)
            .env("COBALT_BLOB_URL", &self.blob_url)
            .env("COBALT_CLIENT_CONFIG", self.dir.path().join("client.toml"));
        command
    }

    /// Runs `cobalt args…`.
    fn run(&self, args: &[&str]) -> Run {
        Run::of(self.command(args).output().unwrap(), args)
    }

    /// Runs `cobalt args…` and expects success.
    fn ok(&self, args: &[&str]) -> Run {
        let run = self.run(args);
        assert_eq!(run.code, 0, "cobalt {args:?} failed: {}", run.stderr);
        run
    }

    /// Runs `cobalt GROUP --output json args…` and parses what it prints.
    fn json(&self, args: &[&str]) -> Value {
        // After the group's name, so that it stays before a task's `-- CMD…`.
        let mut all = args.to_vec();
        all.splice(1..1, ["--output", "json"]);
        let run = self.ok(&all);
        serde_json::from_str(&run.stdout)
            .unwrap_or_else(|e| panic!("cobalt {all:?} printed no JSON ({e}): {}", run.stdout))
    }

    /// A pool of one node whose node is idle.
    fn pool_with_a_node(&self, pool: &str) {
        self.ok(&["pool", "create", pool, "--nodes", "1"]);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let nodes = self.json(&["node", "list", pool]);
            if nodes
                .as_array()
                .is_some_and(|n| n.len() == 1 && n[0]["state"] == "idle")
            {
                return;
            }
            assert!(Instant::now() < deadline, "no idle node: {nodes}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Its local agents exit with it.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a command did.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn of(output: Output, args: &[&str]) -> Self {
        Self {
            code: output
                .status
                .code()
                .unwrap_or_else(|| panic!("cobalt {args:?} was killed")),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

fn ids(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap_or_else(|| panic!("not a JSON array: {list}"))
        .iter()
        .map(|v| v["id"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn pools_jobs_tasks_and_files() {
    let s = Server::start();
    s.pool_with_a_node("p1");
    assert!(s.ok(&["pool", "list"]).stdout.contains("p1"));
    assert_eq!(ids(&s.json(&["pool", "list"])), ["p1"]);
    let pool = s.json(&["pool", "show", "p1"]);
    assert_eq!(
        (pool["id"].as_str(), pool["targetDedicatedNodes"].as_i64()),
        (Some("p1"), Some(1))
    );
    assert!(s.ok(&["pool", "show", "p1"]).stdout.contains("state:"));

    let job = s.json(&["job", "create", "j1", "--pool", "p1"]);
    assert_eq!(job["id"], "j1");
    assert_eq!(ids(&s.json(&["job", "list"])), ["j1"]);
    assert!(s.ok(&["job", "show", "j1"]).stdout.contains("pool:"));

    let task = s.json(&[
        "task",
        "add",
        "j1",
        "t1",
        "--",
        "/bin/sh",
        "-c",
        "echo hi; mkdir -p out; echo x > out/r.txt",
    ]);
    assert_eq!(task["id"], "t1");
    let logs = s.ok(&["task", "logs", "j1", "t1", "--follow"]);
    assert_eq!(logs.stdout, "hi\n");
    assert_eq!(
        ids(&s.json(&["task", "list", "j1", "--state", "completed"])),
        ["t1"]
    );
    assert_eq!(
        s.json(&["task", "show", "j1", "t1"])["executionInfo"]["exitCode"],
        0
    );
    assert!(
        s.ok(&["task", "list", "j1"])
            .stdout
            .contains("completed (success)")
    );

    let files = s.json(&["file", "list", "j1", "t1", "--recursive"]);
    let names: Vec<&str> = files
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"stdout.txt") && names.contains(&"wd/out/r.txt"),
        "{names:?}"
    );
    assert_eq!(
        s.ok(&["file", "get", "j1", "t1", "stdout.txt"]).stdout,
        "hi\n"
    );
    let copy = s.dir.path().join("r.txt");
    s.ok(&[
        "file",
        "get",
        "j1",
        "t1",
        "wd/out/r.txt",
        "-o",
        copy.to_str().unwrap(),
    ]);
    assert_eq!(std::fs::read_to_string(&copy).unwrap(), "x\n");

    s.ok(&["task", "add", "j1", "t2", "--", "/bin/sleep", "30"]);
    s.ok(&["task", "terminate", "j1", "t2"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while s.json(&["task", "show", "j1", "t2"])["state"] != "completed" {
        assert!(Instant::now() < deadline, "t2 did not complete");
        std::thread::sleep(Duration::from_millis(100));
    }
    s.ok(&["task", "delete", "j1", "t2"]);
    assert_eq!(s.run(&["task", "show", "j1", "t2"]).code, 1);

    s.ok(&["job", "terminate", "j1"]);
    s.ok(&["job", "delete", "j1"]);
    s.ok(&["pool", "delete", "p1", "--wait"]);
    assert_eq!(ids(&s.json(&["pool", "list"])), Vec::<String>::new());
}

#[test]
fn task_run_streams_output_and_exits_with_the_task_code() {
    let s = Server::start();
    s.pool_with_a_node("p1");
    // The job does not exist yet: --pool creates it.
    let run = s.run(&[
        "task",
        "run",
        "--job",
        "j1",
        "--pool",
        "p1",
        "--id",
        "three",
        "--",
        "/bin/sh",
        "-c",
        "echo hello; echo oops >&2; exit 3",
    ]);
    assert_eq!(run.code, 3, "{run:?}");
    assert_eq!(run.stdout, "hello\n");
    assert!(run.stderr.contains("oops"), "{run:?}");
    let ok = s.run(&[
        "task",
        "run",
        "--job",
        "j1",
        "--id",
        "fine",
        "--",
        "/bin/echo",
        "a b",
    ]);
    assert_eq!((ok.code, ok.stdout.as_str()), (0, "a b\n"), "{ok:?}");
    // A task that cannot start fails with code 1 and says why.
    let bad = s.run(&["task", "run", "--job", "j1", "--", "/nonexistent/program"]);
    assert_eq!(bad.code, 1, "{bad:?}");
    assert!(bad.stderr.contains("failed"), "{bad:?}");
    // The logs of a failed task exit with its code too.
    let logs = s.run(&["task", "logs", "j1", "three"]);
    assert_eq!(
        (logs.code, logs.stdout.as_str()),
        (3, "hello\n"),
        "{logs:?}"
    );
}

#[test]
fn task_logs_follow_prints_everything_until_the_task_completes() {
    let s = Server::start();
    s.pool_with_a_node("p1");
    s.ok(&["job", "create", "j1", "--pool", "p1"]);
    s.ok(&[
        "task",
        "add",
        "j1",
        "slow",
        "--",
        "/bin/sh",
        "-c",
        "for i in 1 2 3; do echo line$i; sleep 0.3; done",
    ]);
    // Started before the task has a node: it waits, then streams.
    let started = Instant::now();
    let follow = s.ok(&["task", "logs", "j1", "slow", "--follow"]);
    assert_eq!(follow.stdout, "line1\nline2\nline3\n", "{follow:?}");
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_eq!(
        s.json(&["task", "show", "j1", "slow"])["state"],
        "completed"
    );
    // The task's stderr, which is empty.
    assert_eq!(s.ok(&["task", "logs", "j1", "slow", "--stderr"]).stdout, "");
}

fn write_tree(root: &Path) {
    std::fs::create_dir_all(root.join("sub/deeper")).unwrap();
    std::fs::write(root.join("a.txt"), "alpha\n").unwrap();
    std::fs::write(root.join("empty"), "").unwrap();
    std::fs::write(root.join("sub/deeper/name with space.txt"), "spaces\n").unwrap();
    let big: Vec<u8> = (0..(3 << 20) + 777)
        .map(|i: u32| (i * 31 % 253) as u8)
        .collect();
    std::fs::write(root.join("sub/big.bin"), big).unwrap();
}

/// Every file under `root`, relative, with its bytes.
fn read_tree(root: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files = Vec::new();
    let mut dirs = vec![root.to_owned()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                let bytes = std::fs::read(&path).unwrap();
                files.push((path.strip_prefix(root).unwrap().to_owned(), bytes));
            }
        }
    }
    files.sort();
    files
}

#[test]
fn blob_directories_round_trip_byte_for_byte() {
    let s = Server::start();
    let src = s.dir.path().join("src");
    write_tree(&src);
    s.ok(&["container", "create", "data"]);
    assert!(s.ok(&["container", "list"]).stdout.contains("data"));
    let up = s.json(&[
        "blob",
        "upload",
        "data",
        src.to_str().unwrap(),
        "--name",
        "in",
        "--block-mib",
        "1",
    ]);
    assert_eq!(up.as_array().unwrap().len(), 4);
    let listed = s.json(&["blob", "list", "data", "--prefix", "in/sub/"]);
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["in/sub/big.bin", "in/sub/deeper/name with space.txt"]
    );

    let dst = s.dir.path().join("dst");
    s.ok(&["blob", "download", "data", "in", dst.to_str().unwrap()]);
    assert_eq!(read_tree(&src), read_tree(&dst));

    // One blob to a file; a single file up under its own name.
    let one = s.dir.path().join("one.bin");
    s.ok(&[
        "blob",
        "download",
        "data",
        "in/sub/big.bin",
        one.to_str().unwrap(),
    ]);
    assert_eq!(
        std::fs::read(&one).unwrap(),
        std::fs::read(src.join("sub/big.bin")).unwrap()
    );
    s.ok(&[
        "blob",
        "upload",
        "data",
        src.join("a.txt").to_str().unwrap(),
    ]);
    let sas = s
        .ok(&["blob", "sas", "data", "a.txt", "--permissions", "r"])
        .stdout;
    assert!(
        sas.starts_with(&format!("{}/data/a.txt?", s.blob_url)) && sas.contains("sig="),
        "{sas}"
    );

    s.ok(&["blob", "delete", "data", "a.txt"]);
    let missing = s.run(&["blob", "delete", "data", "a.txt"]);
    assert_eq!(missing.code, 1);
    assert!(
        missing
            .stderr
            .contains("blob 'a.txt' does not exist in container 'data'"),
        "{missing:?}"
    );
    s.ok(&["container", "delete", "data"]);
}

#[test]
fn errors_say_what_went_wrong_and_what_to_do() {
    let s = Server::start();
    let unknown = s.run(&["job", "show", "nightly"]);
    assert_eq!(unknown.code, 1);
    assert!(
        unknown.stderr.contains("job 'nightly' does not exist"),
        "{unknown:?}"
    );

    let wrong_key = s.run(&["pool", "list", "--key", "d3Jvbmcta2V5"]);
    assert_eq!(wrong_key.code, 1);
    assert!(
        wrong_key.stderr.contains("rejected the key") && wrong_key.stderr.contains("COBALT_KEY"),
        "{wrong_key:?}"
    );
    let wrong_storage_key = s.run(&["container", "list", "--storage-key", "d3Jvbmcta2V5"]);
    assert_eq!(wrong_storage_key.code, 1);
    assert!(
        wrong_storage_key.stderr.contains("rejected the key"),
        "{wrong_storage_key:?}"
    );

    // A port nobody listens on.
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let url = format!("http://{free}");
    let down = s.run(&["job", "list", "--batch-url", &url]);
    assert_eq!(down.code, 1);
    assert!(
        down.stderr.contains("is `cobalt serve` running?") && down.stderr.contains(&url),
        "{down:?}"
    );

    // Precedence: the config file is below the environment, which is below the flags.
    let config = s.dir.path().join("client.toml");
    std::fs::write(&config, format!("batch_url = \"{url}\"\n")).unwrap();
    let from_file = s
        .command(&["job", "list"])
        .env_remove("COBALT_BATCH_URL")
        .output()
        .unwrap();
    assert_eq!(from_file.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&from_file.stderr).contains(&url));
    s.ok(&["job", "list"]);
    let flag = s
        .command(&["job", "list", "--batch-url", &url])
        .output()
        .unwrap();
    assert_eq!(flag.status.code(), Some(1));
    std::fs::write(&config, "batch_ulr = \"typo\"\n").unwrap();
    let typo = s.run(&["job", "list"]);
    assert!(
        typo.code == 1 && typo.stderr.contains("client.toml"),
        "{typo:?}"
    );
    std::fs::write(&config, "").unwrap();

    // Usage errors are clap's: exit code 2.
    assert_eq!(s.run(&["job", "lst"]).code, 2);
    assert_eq!(s.run(&["task", "add", "j1", "t1"]).code, 2);
}

#[test]
fn completions_for_bash() {
    let out = Command::new(EXE)
        .args(["completions", "bash"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let script = String::from_utf8_lossy(&out.stdout);
    assert!(
        script.contains("cobalt") && script.contains("pool"),
        "{script}"
    );
}

/// A valid account key (base64 of 64 bytes) other than the development key.
fn test_key(byte: u8) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode([byte; 64])
}

#[test]
fn serve_takes_accounts_from_the_environment_and_a_config_file_and_never_logs_keys() {
    let dir = tempfile::tempdir().unwrap();
    let (env_key, file_key) = (test_key(7), test_key(9));
    let config = dir.path().join("cobalt.toml");
    std::fs::write(
        &config,
        format!("[[storage_accounts]]\nname = \"fileacct\"\nkey = \"{file_key}\"\n"),
    )
    .unwrap();
    let s = Server::start_in(dir, |c| {
        c.env("COBALT_STORAGE_ACCOUNTS", format!("envacct:{env_key}"))
            .env("COBALT_LOG", "debug")
            .arg("--config")
            .arg(&config);
    });
    let base = s.blob_url.trim_end_matches("/devstoreaccount1").to_owned();
    let file = s.dir.path().join("hello.txt");
    std::fs::write(&file, "hello").unwrap();
    for (account, key) in [("envacct", &env_key), ("fileacct", &file_key)] {
        let url = format!("{base}/{account}");
        let with = |args: &[&str]| {
            let mut all = args.to_vec();
            all.extend(["--blob-url", &url, "--storage-key", key]);
            s.ok(&all)
        };
        with(&["container", "create", "own"]);
        with(&["blob", "upload", "own", file.to_str().unwrap()]);
        assert!(with(&["blob", "list", "own"]).stdout.contains("hello.txt"));
        // Each account is its own: the other key is refused, the development account has no such container.
        let other = if account == "envacct" {
            &file_key
        } else {
            &env_key
        };
        let refused = s.run(&[
            "blob",
            "list",
            "own",
            "--blob-url",
            &url,
            "--storage-key",
            other,
        ]);
        assert_eq!(refused.code, 1, "{refused:?}");
    }
    assert_eq!(s.run(&["blob", "list", "own"]).code, 1);

    let log = s.log.lock().unwrap().join("\n");
    assert!(log.contains("blob service listening on"), "{log}");
    for key in [
        env_key.as_str(),
        file_key.as_str(),
        cobalt_model::DEV_ACCOUNT_KEY,
    ] {
        assert!(!log.contains(key), "a key is in the log");
    }
}

/// Reads an HTTP response head (status line and headers) from a raw connection.
fn read_head(conn: &mut std::net::TcpStream) -> String {
    use std::io::Read;
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = conn.read(&mut buf).unwrap();
        assert!(n > 0, "connection closed before a response head: {head:?}");
        head.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

#[test]
fn sigterm_lets_an_upload_in_flight_finish_then_exits_cleanly() {
    use std::io::Write;
    let s = Server::start();
    s.ok(&["container", "create", "inflight"]);
    let url = s
        .ok(&["blob", "sas", "inflight", "big.bin", "--permissions", "cw"])
        .stdout
        .trim()
        .to_owned();
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_at(rest.find('/').unwrap());
    let body: Vec<u8> = (0..8 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();

    // Send the head and half the body; `Expect: 100-continue` makes the server say when its
    // handler has started reading, so the request is surely in flight.
    let mut conn = std::net::TcpStream::connect(host).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        conn,
        "PUT {path} HTTP/1.1\r\nhost: {host}\r\nx-ms-version: 2026-10-06\r\nx-ms-blob-type: BlockBlob\r\n\
         content-length: {}\r\nexpect: 100-continue\r\n\r\n",
        body.len()
    )
    .unwrap();
    let interim = read_head(&mut conn);
    assert!(interim.starts_with("HTTP/1.1 100"), "{interim}");
    conn.write_all(&body[..body.len() / 2]).unwrap();

    let status = Command::new("kill")
        .args(["-TERM", &s.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    std::thread::sleep(Duration::from_millis(200));
    conn.write_all(&body[body.len() / 2..]).unwrap();
    let response = read_head(&mut conn);
    assert!(response.starts_with("HTTP/1.1 201"), "{response}");

    // The server then exits by itself, successfully.
    let mut s = s;
    let deadline = Instant::now() + Duration::from_secs(30);
    let exit = loop {
        if let Some(exit) = s.child.try_wait().unwrap() {
            break exit;
        }
        assert!(
            Instant::now() < deadline,
            "still running 30 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(exit.success(), "exit status {exit}");
    let log = s.log.lock().unwrap().join("\n");

    // A new server on the same data directory has the whole blob.
    let dir = std::mem::replace(&mut s.dir, tempfile::tempdir().unwrap());
    drop(s);
    let again = Server::start_in(dir, |_| {});
    let out = again.dir.path().join("big.bin");
    again.ok(&[
        "blob",
        "download",
        "inflight",
        "big.bin",
        out.to_str().unwrap(),
    ]);
    assert!(
        std::fs::read(&out).unwrap() == body,
        "the blob differs after the restart; log:\n{log}"
    );
}
