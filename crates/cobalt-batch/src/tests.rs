//! Control-plane tests on a real SQLite store: state rules and the lifecycle.

use std::sync::Arc;

use cobalt_model::batch::{AllocationState, JobScheduleState, JobState, TaskState};
use cobalt_store::SqliteStore;
use serde_json::json;

use crate::{Batch, Conditions, ErrorCode, PageRequest};

const A: &str = "acct";

fn batch() -> (Batch, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("state.db")).unwrap();
    (Batch::new(Arc::new(store), &[A.to_owned()]).unwrap(), dir)
}

fn pool(id: &str, nodes: i32) -> serde_json::Value {
    json!({"id": id, "vmSize": "s", "targetDedicatedNodes": nodes,
           "virtualMachineConfiguration": {"imageReference": {"publisher": "canonical", "offer": "o", "sku": "s"},
                                           "nodeAgentSKUId": "batch.node.ubuntu 22.04"}})
}

fn no() -> Conditions {
    Conditions::default()
}

#[test]
fn an_empty_pool_settles_and_a_deleted_pool_disappears() {
    let (b, _d) = batch();
    b.add_pool(A, pool("empty", 0)).unwrap();
    b.add_pool(A, pool("wants", 3)).unwrap();
    b.tick();
    assert_eq!(
        b.get_pool(A, "empty", &no()).unwrap().allocation_state,
        AllocationState::Steady
    );
    // No node can join yet, so a pool that wants nodes keeps resizing (never faked).
    assert_eq!(
        b.get_pool(A, "wants", &no()).unwrap().allocation_state,
        AllocationState::Resizing
    );
    assert_eq!(
        b.resize_pool(A, "wants", json!({"targetDedicatedNodes": 1}), &no())
            .unwrap_err()
            .code,
        ErrorCode::PoolBeingResized
    );
    b.stop_resize_pool(A, "wants", &no()).unwrap();
    b.tick();
    assert_eq!(
        b.get_pool(A, "wants", &no()).unwrap().allocation_state,
        AllocationState::Steady
    );
    b.delete_pool(A, "EMPTY", &no()).unwrap();
    assert_eq!(
        b.delete_pool(A, "empty", &no()).unwrap_err().code,
        ErrorCode::PoolBeingDeleted
    );
    b.tick();
    assert_eq!(
        b.get_pool(A, "empty", &no()).unwrap_err().code,
        ErrorCode::PoolNotFound
    );
}

#[test]
fn terminatejob_completes_a_job_once_its_tasks_are_done() {
    let (b, _d) = batch();
    b.add_job(A, json!({"id": "j", "poolInfo": {"poolId": "p"}}))
        .unwrap();
    b.add_task(A, "j", json!({"id": "t1", "commandLine": "x"}))
        .unwrap();
    b.update_job(
        A,
        "j",
        json!({"onAllTasksComplete": "terminatejob"}),
        false,
        &no(),
    )
    .unwrap();
    b.tick();
    assert_eq!(
        b.get_job(A, "j", &no()).unwrap().state,
        JobState::Active,
        "t1 is still active"
    );
    let back = b.update_job(
        A,
        "j",
        json!({"onAllTasksComplete": "noaction"}),
        false,
        &no(),
    );
    assert_eq!(
        back.unwrap_err().code,
        ErrorCode::InvalidPropertyValue,
        "the switch is one-way"
    );
    b.terminate_task(A, "j", "t1", &no()).unwrap();
    b.tick();
    let job = b.get_job(A, "j", &no()).unwrap();
    assert_eq!(job.state, JobState::Completed);
    assert_eq!(
        job.execution_info.terminate_reason.as_deref(),
        Some("AllTasksComplete")
    );
    assert!(job.execution_info.end_time.is_some());
    assert_eq!(job.previous_state, Some(JobState::Active));
}

#[test]
fn disable_and_enable_move_through_their_transient_states() {
    let (b, _d) = batch();
    b.add_job(A, json!({"id": "j", "poolInfo": {"poolId": "p"}}))
        .unwrap();
    assert_eq!(
        b.disable_job(A, "j", json!({}), &no()).unwrap_err().code,
        ErrorCode::MissingRequiredProperty
    );
    b.disable_job(A, "j", json!({"disableTasks": "requeue"}), &no())
        .unwrap();
    assert_eq!(b.get_job(A, "j", &no()).unwrap().state, JobState::Disabling);
    b.tick();
    assert_eq!(b.get_job(A, "j", &no()).unwrap().state, JobState::Disabled);
    // A disabled job still accepts tasks; they wait.
    b.add_task(A, "j", json!({"id": "t", "commandLine": "x"}))
        .unwrap();
    b.update_job(
        A,
        "j",
        json!({"poolInfo": {"poolId": "other"}}),
        false,
        &no(),
    )
    .unwrap();
    b.enable_job(A, "j", &no()).unwrap();
    b.tick();
    let job = b.get_job(A, "j", &no()).unwrap();
    assert_eq!(
        (job.state, job.execution_info.pool_id.as_deref()),
        (JobState::Active, Some("other"))
    );
    let active_pool_change = b.update_job(
        A,
        "j",
        json!({"poolInfo": {"poolId": "third"}}),
        false,
        &no(),
    );
    assert_eq!(
        active_pool_change.unwrap_err().code,
        ErrorCode::OperationInvalidForCurrentState
    );
}

#[test]
fn reactivate_requires_a_failed_task() {
    let (b, _d) = batch();
    b.add_job(
        A,
        json!({"id": "j", "poolInfo": {"poolId": "p"}, "constraints": {"maxTaskRetryCount": 3}}),
    )
    .unwrap();
    let t = b
        .add_task(A, "j", json!({"id": "t", "commandLine": "x"}))
        .unwrap();
    let c = t.spec.constraints.unwrap();
    assert_eq!(
        c.max_task_retry_count,
        Some(3),
        "tasks inherit the job's retry count"
    );
    assert_eq!(c.retention_time.unwrap().as_str(), "P7D");
    assert_eq!(
        b.reactivate_task(A, "j", "t", &no()).unwrap_err().code,
        ErrorCode::TaskNotCompleted
    );
    b.terminate_task(A, "j", "t", &no()).unwrap();
    assert_eq!(
        b.terminate_task(A, "j", "t", &no()).unwrap_err().code,
        ErrorCode::TaskCompleted
    );
    b.reactivate_task(A, "j", "t", &no()).unwrap();
    let t = b.get_task(A, "j", "t", &no()).unwrap();
    assert_eq!(
        (t.state, t.previous_state),
        (TaskState::Active, Some(TaskState::Completed))
    );
    assert!(t.execution_info.failure_info.is_none());
}

#[test]
fn deleting_a_job_removes_its_tasks() {
    let (b, _d) = batch();
    b.add_job(A, json!({"id": "j", "poolInfo": {"poolId": "p"}}))
        .unwrap();
    let tasks = (0..250).map(|i| json!({"id": format!("t{i}"), "commandLine": "x"}));
    for chunk in tasks.collect::<Vec<_>>().chunks(100) {
        b.add_tasks(A, "j", chunk.to_vec()).unwrap();
    }
    assert_eq!(b.task_counts(A, "j").unwrap().0.active, 250);
    b.delete_job(A, "j", &no()).unwrap();
    assert_eq!(
        b.add_task(A, "j", json!({"id": "x", "commandLine": "x"}))
            .unwrap_err()
            .code,
        ErrorCode::JobBeingDeleted
    );
    b.tick();
    assert_eq!(
        b.get_job(A, "j", &no()).unwrap_err().code,
        ErrorCode::JobNotFound
    );
    // A new job of the same name starts empty.
    b.add_job(A, json!({"id": "j", "poolInfo": {"poolId": "p"}}))
        .unwrap();
    let page = b
        .list_tasks(
            A,
            "j",
            &PageRequest {
                limit: 10,
                ..PageRequest::default()
            },
            |t| Ok(Some(t)),
        )
        .unwrap();
    assert!(page.items.is_empty());
}

#[test]
fn unsettled_work_is_recovered_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    {
        let b = Batch::new(Arc::new(SqliteStore::open(&path).unwrap()), &[A.to_owned()]).unwrap();
        b.add_job(A, json!({"id": "j", "poolInfo": {"poolId": "p"}}))
            .unwrap();
        b.terminate_job(A, "j", json!({"terminateReason": "enough"}), &no())
            .unwrap();
        // Crash before the lifecycle ran.
    }
    let b = Batch::new(Arc::new(SqliteStore::open(&path).unwrap()), &[A.to_owned()]).unwrap();
    b.tick();
    let job = b.get_job(A, "j", &no()).unwrap();
    assert_eq!(
        (job.state, job.execution_info.terminate_reason.as_deref()),
        (JobState::Completed, Some("enough"))
    );
}

#[test]
fn a_schedule_creates_one_job_at_a_time() {
    let (b, _d) = batch();
    b.add_job_schedule(
        A,
        json!({"id": "s", "schedule": {"recurrenceInterval": "PT1M"},
                                 "jobSpecification": {"poolInfo": {"poolId": "p"}}}),
    )
    .unwrap();
    b.tick();
    b.tick();
    let s = b.get_job_schedule(A, "s", &no()).unwrap();
    assert_eq!(s.execution_info.recent_job.unwrap().id, "s:job-1");
    let next = s.execution_info.next_run_time.unwrap();
    assert!(
        next.0 > chrono::Utc::now() + chrono::Duration::seconds(50),
        "next run one interval later"
    );
    assert_eq!(
        b.get_job(A, "s:job-1", &no()).unwrap().state,
        JobState::Active
    );
    b.terminate_job_schedule(A, "s", &no()).unwrap();
    b.tick();
    assert_eq!(
        b.get_job_schedule(A, "s", &no()).unwrap().state,
        JobScheduleState::Completed
    );
    b.tick();
    let job = b.get_job(A, "s:job-1", &no()).unwrap();
    assert_eq!(
        (job.state, job.execution_info.terminate_reason.as_deref()),
        (JobState::Completed, Some("TerminateJobSchedule"))
    );
    let too_short = b.add_job_schedule(A, json!({"id": "t", "schedule": {"recurrenceInterval": "PT10S"},
                                                 "jobSpecification": {"poolInfo": {"poolId": "p"}}}));
    assert_eq!(too_short.unwrap_err().code, ErrorCode::InvalidPropertyValue);
}

#[test]
fn a_job_past_its_wall_clock_time_terminates() {
    let (b, _d) = batch();
    b.add_job(
        A,
        json!({"id": "j", "poolInfo": {"poolId": "p"}, "constraints": {"maxWallClockTime": "PT1S"}}),
    )
    .unwrap();
    b.tick();
    assert_eq!(b.get_job(A, "j", &no()).unwrap().state, JobState::Active);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    b.tick();
    b.tick();
    let job = b.get_job(A, "j", &no()).unwrap();
    assert_eq!(
        (job.state, job.execution_info.terminate_reason.as_deref()),
        (JobState::Completed, Some("MaxWallClockTimeExpiry"))
    );
}

#[test]
fn runs_write_over_what_the_store_holds_not_over_older_copies() {
    use std::collections::HashSet;

    use cobalt_model::batch::{NodeInfo, TaskResult, Timestamp};

    use crate::{RunFate, RunOutcome, RunStart};

    let (b, _d) = batch();
    b.add_job(A, json!({"id": "j", "poolInfo": {"poolId": "p"}}))
        .unwrap();
    for id in ["t1", "t2"] {
        b.add_task(A, "j", json!({"id": id, "commandLine": "x"}))
            .unwrap();
    }
    let node = NodeInfo {
        node_id: Some("n".into()),
        ..NodeInfo::default()
    };
    let start = |id: &str| RunStart {
        job_id: "j".into(),
        task_id: id.into(),
        node_info: node.clone(),
    };
    let outcome = |id: &str, exit_code| RunOutcome {
        job_id: "j".into(),
        task_id: id.into(),
        node_id: "n".into(),
        start_time: Some(Timestamp::now()),
        end_time: Timestamp::now(),
        exit_code: Some(exit_code),
        failure_info: None,
        pre_processing_error: false,
        file_upload_error: false,
        began: None,
    };
    // A turn that only starts runs, and one that only ends them.
    let start_runs = |starts| b.record_runs(A, starts, Vec::new(), &[]).unwrap().started;
    let finish_runs = |outcomes| b.record_runs(A, Vec::new(), outcomes, &[]).unwrap().fates;
    let jobs = b.pool_jobs(A, "p").unwrap();
    let found = b.runnable(A, &jobs, 10, &HashSet::new()).unwrap();
    assert_eq!(found[0].tasks.len(), 2);

    // t1 changes between being found runnable and starting: its start and end build on the
    // change (3 retries), so a failure is retried.
    b.update_task(
        A,
        "j",
        "t1",
        json!({"constraints": {"maxTaskRetryCount": 3}}),
        &no(),
    )
    .unwrap();
    // t2 is terminated while it runs: its end is stale.
    let started = start_runs(vec![start("t1"), start("t2")]);
    assert_eq!(started.len(), 2);
    b.terminate_task(A, "j", "t2", &no()).unwrap();
    let fates = finish_runs(vec![outcome("t1", 1), outcome("t2", 0)]);
    assert_eq!(fates, vec![RunFate::Retried, RunFate::Ignored]);
    let t1 = b.get_task(A, "j", "t1", &no()).unwrap();
    assert_eq!(
        (t1.state, t1.execution_info.retry_count),
        (TaskState::Active, 1)
    );
    let t2 = b.get_task(A, "j", "t2", &no()).unwrap();
    assert_eq!(t2.state, TaskState::Completed);
    assert_ne!(t2.execution_info.result, Some(TaskResult::Success));

    // A job that stops between two starts: the second sees it stopped.
    b.add_job(A, json!({"id": "j2", "poolInfo": {"poolId": "p"}}))
        .unwrap();
    for id in ["a", "b"] {
        b.add_task(A, "j2", json!({"id": id, "commandLine": "x"}))
            .unwrap();
    }
    let start2 = |id: &str| RunStart {
        job_id: "j2".into(),
        task_id: id.into(),
        node_info: node.clone(),
    };
    assert_eq!(start_runs(vec![start2("a")]).len(), 1);
    b.terminate_job(A, "j2", json!({}), &no()).unwrap();
    assert!(start_runs(vec![start2("b")]).is_empty());

    // Found, started and ended with nothing in between: the copies carry it through.
    let jobs = b.pool_jobs(A, "p").unwrap();
    let found = b.runnable(A, &jobs, 10, &HashSet::new()).unwrap();
    assert_eq!(found[0].tasks[0].spec.id, "t1");
    start_runs(vec![start("t1")]);
    assert_eq!(
        b.get_task(A, "j", "t1", &no()).unwrap().state,
        TaskState::Running
    );
    let fates = finish_runs(vec![outcome("t1", 0)]);
    assert_eq!(fates, vec![RunFate::Completed(TaskResult::Success)]);
    let t1 = b.get_task(A, "j", "t1", &no()).unwrap();
    assert_eq!(
        (t1.state, t1.execution_info.retry_count),
        (TaskState::Completed, 1)
    );
}

#[test]
fn a_copy_read_before_a_write_is_not_cached() {
    let (b, _d) = batch();
    b.add_job(A, json!({"id": "j", "poolInfo": {"poolId": "p"}}))
        .unwrap();
    b.add_task(A, "j", json!({"id": "t", "commandLine": "x"}))
        .unwrap();
    let seen = b.generation();
    let task = b.get_task(A, "j", "t", &no()).unwrap();
    b.cache_tasks(seen, A, "j", [&task]);
    assert!(b.take_cached_task(A, "j", "t").is_some());
    assert!(b.take_cached_task(A, "j", "t").is_none(), "taken");

    let seen = b.generation();
    let task = b.get_task(A, "j", "t", &no()).unwrap();
    b.add_task(A, "j", json!({"id": "other", "commandLine": "x"}))
        .unwrap();
    b.cache_tasks(seen, A, "j", [&task]);
    assert!(b.take_cached_task(A, "j", "t").is_none());
}

#[test]
fn a_collection_refuses_ids_taken_before_or_within_it() {
    use crate::TaskAddOutcome;

    let (b, _d) = batch();
    b.add_job(A, json!({"id": "j", "poolInfo": {"poolId": "p"}}))
        .unwrap();
    b.add_task(A, "j", json!({"id": "Old", "commandLine": "x"}))
        .unwrap();
    let outcomes = b
        .add_tasks(
            A,
            "j",
            ["old", "new", "NEW", "bad id!"]
                .iter()
                .map(|id| json!({"id": id, "commandLine": "x"}))
                .collect(),
        )
        .unwrap();
    let codes: Vec<Option<ErrorCode>> = outcomes
        .iter()
        .map(|o| match o {
            TaskAddOutcome::Added(_) => None,
            TaskAddOutcome::Failed { error, .. } => Some(error.code),
        })
        .collect();
    assert_eq!(
        codes,
        [
            Some(ErrorCode::TaskExists),
            None,
            Some(ErrorCode::TaskExists),
            Some(ErrorCode::InvalidPropertyValue)
        ]
    );
    assert_eq!(b.task_counts(A, "j").unwrap().0.active, 2);
}
