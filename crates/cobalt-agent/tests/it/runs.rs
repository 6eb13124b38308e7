//! Runs: environment, working directory, users, exit codes, wall clock, kills, batching.

use std::time::{Duration, Instant};

use cobalt_agent::codes;
use cobalt_model::batch::{EnvironmentSetting, TaskResult};
use cobalt_proto::{Event, ServerMessage};

use crate::harness::{
    FakeServer, TestAgent, connected, connected_with_slots, read_pid, task, task_uid, wait_gone,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_sees_its_environment_and_writes_in_its_working_directory() {
    let (_server, mut conn, agent) = connected().await;
    let mut a = task(
        1,
        r#"/bin/sh -c 'echo "wd=$AZ_BATCH_TASK_WORKING_DIR"; echo "task=$AZ_BATCH_TASK_DIR"; echo "shared=$AZ_BATCH_NODE_SHARED_DIR"; echo "root=$AZ_BATCH_NODE_ROOT_DIR"; echo "certs=$AZ_BATCH_CERTIFICATES_DIR"; echo "var=$MY_VAR"; echo "node=$NODE_VAR"; echo "agent=$AGENT_VAR"; echo "pool=$AZ_BATCH_POOL_ID"; echo "pwd=$(pwd)"; echo "uid=$(id -u)"; echo made > made.txt; echo oops >&2'"#,
    );
    a.environment = vec![EnvironmentSetting {
        name: "MY_VAR".into(),
        value: Some("a value with spaces".into()),
    }];
    let mut elevated = task(2, "/bin/sh -c 'id -u'");
    elevated.elevated = true;
    conn.run(vec![a, elevated]).await;
    let end = conn.ended(1).await;
    assert_eq!(
        (end.exit_code, end.result, end.failure_info.clone()),
        (Some(0), TaskResult::Success, None),
        "{end:?} stderr: {:?}",
        std::fs::read_to_string(agent.task_dir(1).join("stderr.txt"))
    );
    assert!(end.start_time.is_some() && !end.pre_processing_error);
    let started = conn
        .events
        .iter()
        .position(|e| matches!(e, Event::Started { run: 1, .. }));
    let ended = conn
        .events
        .iter()
        .position(|e| matches!(e, Event::Ended(r) if r.run == 1));
    assert!(started < ended, "{:?}", conn.events);

    let task_dir = agent.task_dir(1);
    let root = agent.root.canonicalize().unwrap();
    let task_dir_abs = task_dir.canonicalize().unwrap();
    let expected = [
        format!("wd={}/wd", task_dir_abs.display()),
        format!("task={}", task_dir_abs.display()),
        format!("shared={}/shared", root.display()),
        format!("root={}", root.display()),
        format!("certs={}/certs", task_dir_abs.display()),
        "var=a value with spaces".into(),
        "node=from-the-machine".into(),
        "agent=from-the-agent".into(),
        "pool=pool1".into(),
        format!("pwd={}/wd", task_dir_abs.display()),
        format!("uid={}", task_uid()),
    ];
    let stdout = agent.stdout(1);
    assert_eq!(stdout.lines().collect::<Vec<_>>(), expected, "{stdout}");
    assert_eq!(agent.wd_file(1, "made.txt"), "made\n");
    assert_eq!(
        std::fs::read_to_string(task_dir.join("stderr.txt")).unwrap(),
        "oops\n"
    );
    assert!(root.join("startup").is_dir() && root.join("workitems").is_dir());

    let end = conn.ended(2).await;
    assert_eq!(end.exit_code, Some(0));
    let own_uid = String::from_utf8(
        std::process::Command::new("id")
            .arg("-u")
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert_eq!(
        agent.stdout(2),
        own_uid,
        "elevated runs run as the agent's user"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_root_other_users_cannot_reach_runs_tasks_as_the_agent() {
    let mut server = FakeServer::start("t").await;
    let agent = TestAgent::start_in(&server.url, "t", 0o700);
    let (mut conn, hello) = server.accept("node-1", 5).await;
    conn.run(vec![task(1, "id -u")]).await;
    let end = conn.ended(1).await;
    assert_eq!(end.exit_code, Some(0), "{end:?}");
    let own_uid = if hello.is_root { "0" } else { &task_uid() };
    assert_eq!(agent.stdout(1).trim(), own_uid);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_codes_and_programs_that_cannot_run() {
    let (_server, mut conn, agent) = connected().await;
    std::fs::write(agent.scratch.join("not-executable"), "#!/bin/sh\n").unwrap();
    let not_executable = agent.scratch.join("not-executable");
    conn.run(vec![
        task(1, "/bin/sh -c 'exit 3'"),
        task(2, "/no/such/program arg"),
        task(3, "echo 'unterminated"),
        task(4, r#"printf "%s|" 'a b' c\ d "$HOME""#),
        task(5, &not_executable.display().to_string()),
        task(6, "/bin/sh -c 'kill -TERM $$'"),
        task(7, "true"),
    ])
    .await;

    let end = conn.ended(1).await;
    assert_eq!((end.exit_code, end.result), (Some(3), TaskResult::Failure));
    assert!(
        end.failure_info.is_none(),
        "the server describes non-zero exits"
    );

    for run in [2, 3, 5] {
        let end = conn.ended(run).await;
        let info = end.failure_info.clone().unwrap();
        assert_eq!(
            info.code.as_deref(),
            Some(codes::COMMAND_PROGRAM_NOT_FOUND),
            "{run}: {end:?}"
        );
        assert_eq!((end.exit_code, end.result), (None, TaskResult::Failure));
        assert!(!end.pre_processing_error && end.start_time.is_some());
    }

    conn.ended(4).await;
    assert_eq!(
        agent.stdout(4),
        "a b|c d|$HOME|",
        "no shell: no variable expansion"
    );

    let end = conn.ended(6).await;
    assert_eq!(end.exit_code, Some(128 + 15));
    let end = conn.ended(7).await;
    assert_eq!(
        (end.exit_code, end.result),
        (Some(0), TaskResult::Success),
        "PATH lookup"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wall_clock_kills_the_whole_process_tree() {
    let (_server, mut conn, agent) = connected().await;
    let mut a = task(1, "/bin/sh -c 'sleep 30 & echo $! > bg.pid; sleep 30'");
    a.max_wall_clock_seconds = Some(1.0);
    let began = Instant::now();
    conn.run(vec![a]).await;
    let end = conn.ended(1).await;
    let took = began.elapsed();
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(5),
        "{took:?}"
    );
    assert_eq!(end.exit_code, Some(codes::KILLED_EXIT_CODE));
    let info = end.failure_info.unwrap();
    assert_eq!(
        info.code.as_deref(),
        Some(codes::MAX_WALL_CLOCK_TIME_EXCEEDED)
    );
    assert_eq!(end.result, TaskResult::Failure);
    let background = read_pid(&agent.task_dir(1).join("wd/bg.pid")).await;
    assert!(wait_gone(background).await, "the background sleep survived");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_ends_a_run_with_task_ended() {
    let (_server, mut conn, agent) = connected().await;
    conn.run(vec![task(1, "/bin/sh -c 'echo $$ > pid; sleep 30'")])
        .await;
    conn.started(1).await;
    let pid = read_pid(&agent.task_dir(1).join("wd/pid")).await;
    conn.send(ServerMessage::Kill { run: 1 }).await;
    conn.send(ServerMessage::Kill { run: 99 }).await; // unknown: ignored
    let end = conn.ended(1).await;
    let info = end.failure_info.unwrap();
    assert_eq!(info.code.as_deref(), Some(codes::TASK_ENDED));
    assert_eq!(
        info.message.as_deref(),
        Some("Task was ended by user request")
    );
    assert_eq!(end.exit_code, Some(codes::KILLED_EXIT_CODE));
    assert!(wait_gone(pid).await);

    // A kill that arrives while resource files are still downloading ends the run too, and
    // the command never runs.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let slow = format!("http://{}/never-answers", listener.local_addr().unwrap());
    let mut a = task(2, "touch ran");
    a.resource_files = vec![crate::harness::http_file(&slow, "f", None)];
    conn.run(vec![a]).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    conn.send(ServerMessage::Kill { run: 2 }).await;
    let end = conn.ended(2).await;
    assert_eq!(
        end.failure_info.unwrap().code.as_deref(),
        Some(codes::TASK_ENDED)
    );
    assert_eq!((end.exit_code, end.start_time), (None, None));
    assert!(!conn.was_started(2) && !agent.task_dir(2).join("wd/ran").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_of_many_quick_runs_are_batched() {
    let (_server, mut conn, _agent) = connected().await;
    let runs: Vec<_> = (1..=100).map(|run| task(run, "/bin/true")).collect();
    let began = Instant::now();
    conn.run(runs).await;
    for run in 1..=100 {
        let end = conn.ended(run).await;
        assert_eq!(end.exit_code, Some(0));
    }
    let took = began.elapsed();
    let events = conn.events.len();
    let messages = conn.event_messages;
    eprintln!("100 runs: {events} events in {messages} messages, {took:?}");
    // Each run ends once; it says `Started` first only if it outlived START_DELAY.
    for run in 1..=100 {
        let at = |started: bool| {
            conn.events.iter().position(|e| match e {
                Event::Started { run: r, .. } => started && *r == run,
                Event::Ended(end) => !started && end.run == run,
                Event::Began { .. } | Event::Withdrawn { .. } => false,
            })
        };
        let ends = conn
            .events
            .iter()
            .filter(|e| matches!(e, Event::Ended(end) if end.run == run))
            .count();
        assert_eq!(ends, 1, "run {run}: {:?}", conn.events);
        if let Some(start) = at(true) {
            assert!(Some(start) < at(false), "run {run}: {:?}", conn.events);
        }
    }
    assert!((100..=200).contains(&events), "{events} events");
    assert!(messages <= 100, "{messages} messages for {events} events");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_that_lasts_says_it_started_while_it_runs() {
    let (_server, mut conn, agent) = connected().await;
    conn.run(vec![task(
        1,
        "/bin/sh -c 'sleep 0.3; echo done > done.txt'",
    )])
    .await;
    conn.started(1).await;
    assert!(
        !agent.task_dir(1).join("wd/done.txt").exists(),
        "Started came after the run ended"
    );
    let end = conn.ended(1).await;
    assert_eq!(end.exit_code, Some(0));
}

/// A task run the server sent ahead of a free slot.
fn queued(run: u64, command_line: &str) -> cobalt_proto::Assignment {
    let mut a = task(run, command_line);
    a.slots = 1;
    a.queued = true;
    a
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_runs_wait_for_a_slot_in_the_order_they_came() {
    let (_server, mut conn, _agent) = connected_with_slots(1).await;
    conn.run(vec![
        queued(1, "/bin/sh -c 'sleep 0.4'"),
        queued(2, "/bin/true"),
        queued(3, "/bin/true"),
    ])
    .await;
    let first = conn.ended(1).await;
    let second = conn.ended(2).await;
    let third = conn.ended(3).await;
    // One slot: each began after the one before it ended.
    assert!(
        second.start_time.unwrap() >= first.end_time,
        "{first:?} {second:?}"
    );
    assert!(
        third.start_time.unwrap() >= second.end_time,
        "{second:?} {third:?}"
    );
    // Without resource files, `Started` says a queued run began: no `Began`.
    assert!(
        !conn.events.iter().any(|e| matches!(e, Event::Began { .. })),
        "{:?}",
        conn.events
    );

    // A queued run killed before it began never starts and reports nothing.
    conn.run(vec![
        queued(4, "/bin/sh -c 'sleep 0.4'"),
        queued(5, "/bin/sh -c 'echo ran > ran.txt'"),
    ])
    .await;
    conn.started(4).await;
    conn.send(ServerMessage::Kill { run: 5 }).await;
    conn.ended(4).await;
    conn.run(vec![queued(6, "/bin/true")]).await;
    conn.ended(6).await;
    assert!(
        !conn.events.iter().any(|e| match e {
            Event::Started { run, .. } | Event::Began { run, .. } | Event::Withdrawn { run } =>
                *run == 5,
            Event::Ended(end) => end.run == 5,
        }),
        "{:?}",
        conn.events
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_withdrawn_run_leaves_the_queue_but_a_begun_one_runs_on() {
    let (_server, mut conn, agent) = connected_with_slots(1).await;
    conn.run(vec![
        queued(1, "/bin/sh -c 'sleep 0.4; echo one'"),
        queued(2, "/bin/sh -c 'echo two'"),
        queued(3, "/bin/sh -c 'echo three'"),
    ])
    .await;
    conn.started(1).await;
    // Run 1 has begun: withdrawing it does nothing. Run 2 waits for the slot: it comes back.
    // Run 9 is unknown: ignored.
    conn.send(ServerMessage::Withdraw {
        runs: vec![1, 2, 9],
    })
    .await;
    let end = conn.ended(1).await;
    assert_eq!(end.result, TaskResult::Success, "{end:?}");
    assert_eq!(agent.stdout(1), "one\n");
    // Run 3 takes the slot run 2 would have had.
    conn.ended(3).await;
    assert_eq!(agent.stdout(3), "three\n");
    let about = |run: u64| -> Vec<&Event> {
        conn.events
            .iter()
            .filter(|e| match e {
                Event::Started { run: r, .. }
                | Event::Began { run: r, .. }
                | Event::Withdrawn { run: r } => *r == run,
                Event::Ended(end) => end.run == run,
            })
            .collect()
    };
    assert!(
        matches!(about(2)[..], [Event::Withdrawn { run: 2 }]),
        "{:?}",
        conn.events
    );
    assert!(about(9).is_empty(), "{:?}", conn.events);
    assert!(
        !about(1)
            .iter()
            .any(|e| matches!(e, Event::Withdrawn { .. })),
        "{:?}",
        conn.events
    );
    assert!(!agent.task_dir(2).join("stdout.txt").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_withdrawn_run_holds_up_no_run_behind_it() {
    let (_server, mut conn, _agent) = connected_with_slots(2).await;
    // Two slots: run 1 takes one; run 2 wants both and waits for run 1; run 3, behind it,
    // wants one.
    let mut both = queued(2, "/bin/true");
    both.slots = 2;
    conn.run(vec![
        queued(1, "/bin/sh -c 'sleep 1'"),
        both,
        queued(3, "/bin/true"),
    ])
    .await;
    conn.started(1).await;
    conn.send(ServerMessage::Withdraw { runs: vec![2] }).await;
    // Run 3 takes the free slot at once, not after run 1.
    let third = conn.ended(3).await;
    let first = conn.ended(1).await;
    assert!(
        third.end_time < first.end_time,
        "{third:?} ended after {first:?}"
    );
    assert!(!conn.was_started(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_run_with_resource_files_says_when_it_began() {
    let (_server, mut conn, _agent) = connected_with_slots(1).await;
    let mut a = queued(1, "/bin/true");
    // A file that cannot be downloaded still makes the run begin first.
    a.resource_files = vec![cobalt_model::batch::ResourceFile {
        http_url: Some("http://127.0.0.1:9/nothing".into()),
        file_path: Some("x".into()),
        ..Default::default()
    }];
    conn.run(vec![a]).await;
    let end = conn.ended(1).await;
    assert!(end.pre_processing_error, "{end:?}");
    let began = conn
        .events
        .iter()
        .position(|e| matches!(e, Event::Began { run: 1, .. }));
    let ended = conn
        .events
        .iter()
        .position(|e| matches!(e, Event::Ended(r) if r.run == 1));
    assert!(began.is_some() && began < ended, "{:?}", conn.events);
}
