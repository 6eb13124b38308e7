//! The connection: reconnecting, the token, heartbeats, Leave, shutdown; file requests and
//! Clean.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use base64::Engine as _;
use cobalt_agent::{AgentError, Exit};
use cobalt_proto::{FileOp, FileOutcome, ServerMessage};

use crate::harness::{FakeServer, TestAgent, connected, read_pid, task, task_dir_of, wait_gone};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_connection_is_resumed_and_runs_go_on() {
    let (mut server, mut conn, agent) = connected().await;
    conn.run(vec![task(1, "/bin/sh -c 'sleep 1; echo done'")])
        .await;
    conn.started(1).await;
    conn.drop_connection().await;

    // The agent comes back with its node id and the run still going; its end, which happens
    // while the server has not yet answered Hello, is kept and sent after Welcome.
    let began = Instant::now();
    let mut conn = server.next_conn().await;
    assert!(began.elapsed() < Duration::from_secs(2));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let hello = conn.welcome("node-1", 5).await;
    assert_eq!(hello.node_id.as_deref(), Some("node-1"));
    assert_eq!(hello.running, [1]);
    let end = conn.ended(1).await;
    assert_eq!(end.exit_code, Some(0));
    assert_eq!(agent.stdout(1), "done\n");

    // A run that ends while the server is down is still listed in Hello (its end has not been
    // delivered), and its end follows Welcome.
    conn.run(vec![task(2, "/bin/sh -c 'sleep 0.3'")]).await;
    conn.started(2).await;
    server.refuse.store(true, Ordering::SeqCst);
    conn.drop_connection().await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    server.refuse.store(false, Ordering::SeqCst);
    let (mut conn, hello) = server.accept("node-1", 5).await;
    assert_eq!(hello.running, [2]);
    assert_eq!(conn.ended(2).await.exit_code, Some(0));

    // And a reconnect with nothing going lists nothing.
    conn.drop_connection().await;
    let (mut conn, hello) = server.accept("node-1", 5).await;
    assert!(hello.running.is_empty());
    conn.run(vec![task(3, "true")]).await;
    assert_eq!(conn.ended(3).await.exit_code, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_before_welcome_is_obeyed_after_it() {
    let (mut server, mut conn, agent) = connected().await;
    conn.run(vec![task(1, "/bin/sh -c 'echo $$ > pid; sleep 30'")])
        .await;
    conn.started(1).await;
    let pid = read_pid(&agent.task_dir(1).join("wd/pid")).await;
    conn.drop_connection().await;

    // An earlier server kills the runs it does not know before it welcomes the node.
    let mut conn = server.next_conn().await;
    let hello = conn.hello().await;
    assert_eq!(hello.running, [1]);
    conn.send(ServerMessage::Kill { run: 1 }).await;
    conn.send_welcome(&hello, "node-1", 5, 0).await;
    let end = conn.ended(1).await;
    assert!(end.failure_info.is_some(), "{end:?}");
    assert!(wait_gone(pid).await, "the process of run 1 is still there");
    // The connection stays: the next run goes on it.
    conn.run(vec![task(2, "true")]).await;
    assert_eq!(conn.ended(2).await.exit_code, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_token_stops_the_agent() {
    let server = FakeServer::start("right").await;
    let mut agent = TestAgent::start(&server.url, "wrong");
    let result = agent.finished().await;
    assert!(
        matches!(result, Err(AgentError::Unauthorized { status: 401 })),
        "{result:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leave_instead_of_welcome_refuses_a_new_agent_and_removes_a_known_one() {
    // Never welcomed: Leave is a refusal (wrong token or pool), an error.
    let mut server = FakeServer::start("t").await;
    let mut agent = TestAgent::start(&server.url, "t");
    let mut conn = server.next_conn().await;
    conn.hello().await;
    conn.send(ServerMessage::Leave { wipe: false }).await;
    let result = agent.finished().await;
    assert!(matches!(result, Err(AgentError::Refused)), "{result:?}");

    // Welcomed before: the node was removed while the connection was down.
    let (mut server, conn, mut agent) = connected().await;
    conn.drop_connection().await;
    let mut conn = server.next_conn().await;
    conn.hello().await;
    conn.send(ServerMessage::Leave { wipe: true }).await;
    assert_eq!(agent.finished().await.unwrap(), Exit::Left);
    assert_eq!(std::fs::read_dir(&agent.root).unwrap().count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_retries_until_the_server_is_up_pings_when_idle_and_gives_up_on_silence() {
    // Reserve a port, start the agent against it, and only then start listening.
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = probe.local_addr().unwrap();
    drop(probe);
    let mut agent = TestAgent::start(&format!("http://{addr}"), "t");
    tokio::time::sleep(Duration::from_millis(700)).await;
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let (tcp, _) = tokio::time::timeout(Duration::from_secs(10), listener.accept())
        .await
        .unwrap()
        .unwrap();
    let ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
    let mut conn = crate::harness::Conn::new(ws);
    conn.welcome("node-9", 1).await;
    let began = Instant::now();
    while conn.pings == 0 {
        assert!(began.elapsed() < Duration::from_secs(3), "no heartbeat");
        conn.send(ServerMessage::Kill { run: 12345 }).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        let _ = tokio::time::timeout(Duration::from_millis(100), conn.recv()).await;
    }

    // A server that goes quiet (reads nothing, so not even pongs come back) is given up after
    // three heartbeats, and the agent connects again.
    let began = Instant::now();
    let (tcp, _) = tokio::time::timeout(Duration::from_secs(10), listener.accept())
        .await
        .unwrap()
        .unwrap();
    let took = began.elapsed();
    assert!(took > Duration::from_secs(2), "{took:?}");
    let ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
    let hello = crate::harness::Conn::new(ws).welcome("node-9", 1).await;
    assert_eq!(hello.node_id.as_deref(), Some("node-9"));
    drop(conn);
    assert_eq!(agent.shutdown().await.unwrap(), Exit::Shutdown);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leave_kills_everything_wipes_and_exits() {
    let (_server, mut conn, mut agent) = connected().await;
    let pid_file = agent.scratch.join("leave.pid");
    let mut a = task(
        1,
        &format!("/bin/sh -c 'echo $$ > {}; sleep 30'", pid_file.display()),
    );
    a.elevated = true;
    conn.run(vec![a]).await;
    conn.started(1).await;
    let pid = read_pid(&pid_file).await;
    conn.send(ServerMessage::Leave { wipe: true }).await;
    assert_eq!(agent.finished().await.unwrap(), Exit::Left);
    assert!(wait_gone(pid).await);
    assert_eq!(std::fs::read_dir(&agent.root).unwrap().count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_kills_running_process_groups() {
    let (_server, mut conn, mut agent) = connected().await;
    let pid_file = agent.scratch.join("term.pid");
    let mut a = task(
        1,
        &format!(
            "/bin/sh -c 'sleep 30 & echo $! > {}; wait'",
            pid_file.display()
        ),
    );
    a.elevated = true;
    conn.run(vec![a]).await;
    let pid = read_pid(&pid_file).await;
    assert_eq!(agent.shutdown().await.unwrap(), Exit::Shutdown);
    assert!(wait_gone(pid).await);
    assert!(agent.root.join("workitems").is_dir(), "no wipe on shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_requests_and_clean() {
    let (_server, mut conn, agent) = connected().await;
    conn.run(vec![task(
        1,
        "/bin/sh -c 'mkdir sub; printf 0123456789 > sub/f.txt; echo out'",
    )])
    .await;
    conn.ended(1).await;
    let dir = task_dir_of(1);

    let FileOutcome::Listing { entries } =
        conn.file(1, &dir, FileOp::List { recursive: true }).await
    else {
        panic!("not a listing")
    };
    let names: Vec<_> = entries
        .iter()
        .map(|e| (e.name.as_str(), e.is_directory))
        .collect();
    assert_eq!(
        names,
        [
            ("stderr.txt", false),
            ("stdout.txt", false),
            ("wd", true),
            ("wd/sub", true),
            ("wd/sub/f.txt", false)
        ]
    );
    let f = entries.iter().find(|e| e.name == "wd/sub/f.txt").unwrap();
    assert_eq!((f.size, f.mode.len()), (10, 4));

    let FileOutcome::Data { entry, data } = conn
        .file(
            2,
            &format!("{dir}/wd/sub/f.txt"),
            FileOp::Read {
                offset: 2,
                length: Some(5),
            },
        )
        .await
    else {
        panic!("no data")
    };
    assert_eq!(
        base64::engine::general_purpose::STANDARD
            .decode(data)
            .unwrap(),
        b"23456"
    );
    assert_eq!(entry.size, 10);
    let FileOutcome::Data { data, .. } = conn
        .file(
            3,
            &format!("{dir}/stdout.txt"),
            FileOp::Read {
                offset: 0,
                length: None,
            },
        )
        .await
    else {
        panic!("no data")
    };
    assert_eq!(
        base64::engine::general_purpose::STANDARD
            .decode(data)
            .unwrap(),
        b"out\n"
    );

    let stat = conn.file(4, &format!("{dir}/wd"), FileOp::Stat).await;
    assert!(matches!(stat, FileOutcome::Stat { entry } if entry.is_directory));
    assert!(matches!(
        conn.file(5, "nope", FileOp::Stat).await,
        FileOutcome::NotFound
    ));
    assert!(matches!(
        conn.file(6, "../../etc/passwd", FileOp::Stat).await,
        FileOutcome::Failed { .. }
    ));
    assert!(matches!(
        conn.file(
            7,
            "/etc/passwd",
            FileOp::Read {
                offset: 0,
                length: None
            }
        )
        .await,
        FileOutcome::Failed { .. }
    ));
    let delete = conn
        .file(
            8,
            &format!("{dir}/wd/sub"),
            FileOp::Delete { recursive: true },
        )
        .await;
    assert!(matches!(delete, FileOutcome::Done));
    assert!(!agent.task_dir(1).join("wd/sub").exists());

    conn.send(ServerMessage::Clean { dir: dir.clone() }).await;
    conn.send(ServerMessage::Clean {
        dir: "../outside".into(),
    })
    .await;
    let began = Instant::now();
    while agent.task_dir(1).exists() {
        assert!(began.elapsed() < Duration::from_secs(5), "not cleaned");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(agent.root.join("workitems").is_dir());
}
