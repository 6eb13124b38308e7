//! The behaviour every [`Store`] backend must show; run it from each backend's tests.

use crate::{Kind, Record, Scope, StateCount, Store, Write};

fn rec(key: &str, state: &str, result: &str) -> Record {
    Record {
        key: key.to_owned(),
        state: state.to_owned(),
        result: result.to_owned(),
        body: format!("{{\"id\":\"{key}\"}}"),
    }
}

/// Runs the suite against an empty `store`; panics on the first difference.
#[allow(clippy::unwrap_used)]
pub fn run(store: &dyn Store) {
    let jobs = Scope::top("a", Kind::Job);
    let tasks = Scope::under("a", Kind::Task, "job1");
    let other_job = Scope::under("a", Kind::Task, "job2");
    let other_account = Scope::top("b", Kind::Job);

    // Put, get, replace.
    store
        .apply(&[Write::Put(jobs.clone(), rec("job1", "active", ""))])
        .unwrap();
    assert_eq!(
        store.get(&jobs, "job1").unwrap(),
        Some(rec("job1", "active", ""))
    );
    assert_eq!(store.get(&other_account, "job1").unwrap(), None);
    store
        .apply(&[Write::Put(jobs.clone(), rec("job1", "completed", ""))])
        .unwrap();
    assert_eq!(
        store.get(&jobs, "job1").unwrap().unwrap().state,
        "completed"
    );

    // Lists are in key order, paged by key, filtered by state; scopes do not mix.
    let writes: Vec<Write> = (0..25)
        .map(|i| {
            let state = if i % 5 == 0 { "completed" } else { "active" };
            let result = if i % 10 == 0 {
                "failure"
            } else if i % 5 == 0 {
                "success"
            } else {
                ""
            };
            Write::Put(tasks.clone(), rec(&format!("t{i:02}"), state, result))
        })
        .chain(std::iter::once(Write::Put(
            other_job.clone(),
            rec("t00", "active", ""),
        )))
        .collect();
    store.apply(&writes).unwrap();
    let page1 = store.list(&tasks, None, None, 10).unwrap();
    assert_eq!(page1.len(), 10);
    assert_eq!(page1[0].key, "t00");
    let page3 = store.list(&tasks, Some("t19"), None, 10).unwrap();
    assert_eq!(
        page3.iter().map(|r| r.key.as_str()).collect::<Vec<_>>(),
        ["t20", "t21", "t22", "t23", "t24"]
    );
    let done = store.list(&tasks, None, Some("completed"), 100).unwrap();
    assert_eq!(
        done.iter().map(|r| r.key.as_str()).collect::<Vec<_>>(),
        ["t00", "t05", "t10", "t15", "t20"]
    );
    let done_after = store
        .list(&tasks, Some("t10"), Some("completed"), 1)
        .unwrap();
    assert_eq!(done_after[0].key, "t15");
    assert_eq!(
        store.keys_in_state(&tasks, "completed", None, 100).unwrap(),
        ["t00", "t05", "t10", "t15", "t20"]
    );
    assert_eq!(
        store
            .keys_in_state(&tasks, "active", Some("t16"), 3)
            .unwrap(),
        ["t17", "t18", "t19"]
    );
    assert!(
        store
            .keys_in_state(&tasks, "running", None, 10)
            .unwrap()
            .is_empty()
    );

    // Which keys exist, in one scope only.
    let keys: Vec<String> = ["t00", "t24", "t25", "job1", "t'); --"]
        .iter()
        .map(|k| (*k).to_owned())
        .collect();
    let mut found: Vec<String> = store.existing(&tasks, &keys).unwrap().into_iter().collect();
    found.sort();
    assert_eq!(found, ["t00", "t24"]);
    assert!(store.existing(&tasks, &[]).unwrap().is_empty());
    assert_eq!(store.existing(&other_job, &keys).unwrap().len(), 1);

    // Counts by state and result.
    let mut counts = store.count(&tasks).unwrap();
    counts.sort_by(|a, b| (&a.state, &a.result).cmp(&(&b.state, &b.result)));
    let c = |state: &str, result: &str, count| StateCount {
        state: state.into(),
        result: result.into(),
        count,
    };
    assert_eq!(
        counts,
        vec![
            c("active", "", 20),
            c("completed", "failure", 3),
            c("completed", "success", 2)
        ]
    );
    // Counts follow a record's state changing, deletes and deleting a whole scope.
    store
        .apply(&[
            Write::Put(tasks.clone(), rec("t01", "completed", "success")),
            Write::Put(tasks.clone(), rec("t02", "active", "")),
            Write::Delete(tasks.clone(), "t05".into()),
            Write::Delete(tasks.clone(), "missing".into()),
        ])
        .unwrap();
    let mut counts = store.count(&tasks).unwrap();
    counts.sort_by(|a, b| (&a.state, &a.result).cmp(&(&b.state, &b.result)));
    assert_eq!(
        counts,
        vec![
            c("active", "", 19),
            c("completed", "failure", 3),
            c("completed", "success", 2)
        ]
    );
    let other_tasks = Scope::under("a", Kind::Task, "job9");
    store
        .apply(&[Write::Put(other_tasks.clone(), rec("x", "active", ""))])
        .unwrap();
    store.apply(&[Write::DeleteAll(tasks.clone())]).unwrap();
    assert_eq!(store.count(&tasks).unwrap(), vec![]);
    assert_eq!(store.count(&other_tasks).unwrap(), vec![c("active", "", 1)]);
    // Within one transaction: a record put twice counts once, in its last state; a scope
    // deleted whole counts only what is put in it afterwards.
    store
        .apply(&[
            Write::Put(other_tasks.clone(), rec("y", "active", "")),
            Write::Put(other_tasks.clone(), rec("y", "completed", "success")),
            Write::Put(other_tasks.clone(), rec("x", "running", "")),
        ])
        .unwrap();
    let mut counts = store.count(&other_tasks).unwrap();
    counts.sort_by(|a, b| (&a.state, &a.result).cmp(&(&b.state, &b.result)));
    assert_eq!(
        counts,
        vec![c("completed", "success", 1), c("running", "", 1)]
    );
    store
        .apply(&[
            Write::Put(other_tasks.clone(), rec("z", "active", "")),
            Write::DeleteAll(other_tasks.clone()),
            Write::Put(other_tasks.clone(), rec("x", "active", "")),
        ])
        .unwrap();
    assert_eq!(store.count(&other_tasks).unwrap(), vec![c("active", "", 1)]);
    store.apply(&writes).unwrap();

    // A deferred transaction is visible at once, like a durable one.
    store
        .apply_with(
            &[Write::Put(jobs.clone(), rec("job2", "active", ""))],
            crate::Durability::Deferred,
        )
        .unwrap();
    assert_eq!(store.get(&jobs, "job2").unwrap().unwrap().state, "active");
    store
        .apply_with(
            &[Write::Put(jobs.clone(), rec("job3", "active", ""))],
            crate::Durability::Soon,
        )
        .unwrap();
    assert_eq!(store.get(&jobs, "job3").unwrap().unwrap().state, "active");
    store
        .apply(&[Write::Delete(jobs.clone(), "job3".into())])
        .unwrap();
    store
        .apply(&[Write::Delete(jobs.clone(), "job2".into())])
        .unwrap();

    // Transactions are atomic; deletes are scoped.
    store
        .apply(&[
            Write::Delete(tasks.clone(), "t00".into()),
            Write::DeleteAll(other_job.clone()),
        ])
        .unwrap();
    assert_eq!(store.get(&tasks, "t00").unwrap(), None);
    assert!(store.list(&other_job, None, None, 10).unwrap().is_empty());
    store
        .apply(&[
            Write::DeleteAll(tasks.clone()),
            Write::Delete(jobs.clone(), "job1".into()),
        ])
        .unwrap();
    assert!(store.list(&tasks, None, None, 10).unwrap().is_empty());
    assert_eq!(store.get(&jobs, "job1").unwrap(), None);
}
