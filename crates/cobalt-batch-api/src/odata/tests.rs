use chrono::Utc;
use serde_json::{Value, json};

use super::*;

/// A completed task that failed on node n1, as the wire carries it.
const TASK: &str = r#"{
    "id": "Task-01",
    "displayName": "render frame 1",
    "state": "completed",
    "previousState": "running",
    "creationTime": "2026-11-21T07:00:00.1234567Z",
    "lastModified": "2026-11-21T07:05:00Z",
    "commandLine": "/bin/bash -c 'exit 3'",
    "executionInfo": {"exitCode": 3, "retryCount": 0, "requeueCount": 0, "result": "failure",
                      "startTime": "2026-11-21T07:01:00Z", "endTime": "2026-11-21T07:02:00Z"},
    "nodeInfo": {"nodeId": "n1", "poolId": "pool1"},
    "multiInstanceSettings": {"numberOfInstances": 2},
    "resourceFiles": [{"httpUrl": "https://x/y", "filePath": "y"}]
}"#;

/// An active task that never ran: no executionInfo result, exit code or node.
const ACTIVE_TASK: &str = r#"{
    "id": "task-02",
    "state": "active",
    "creationTime": "2026-11-21T08:00:00Z",
    "executionInfo": {"retryCount": 0, "requeueCount": 0}
}"#;

fn entity(json: &str) -> Value {
    serde_json::from_str(json).expect("test entity is JSON")
}

fn check_kind(kind: ListKind, filter: &str, entity_json: &str, expected: bool) {
    let parsed = Filter::parse(filter, kind)
        .unwrap_or_else(|e| panic!("{filter:?} should parse for {kind:?}: {e}"));
    assert_eq!(
        parsed.matches(&entity(entity_json)),
        expected,
        "{filter:?} on {entity_json}"
    );
}

fn check(filter: &str, entity_json: &str, expected: bool) {
    check_kind(ListKind::Tasks, filter, entity_json, expected);
}

fn parse_error(filter: &str, kind: ListKind) -> ODataError {
    match Filter::parse(filter, kind) {
        Ok(f) => panic!("{filter:?} should not parse for {kind:?}, got {f:?}"),
        Err(e) => e,
    }
}

#[test]
fn comparisons_on_a_completed_task() {
    let cases: &[(&str, bool)] = &[
        ("state eq 'completed'", true),
        ("state eq 'Completed'", true),
        ("state ne 'completed'", false),
        ("state eq 'active'", false),
        ("state ne 'active'", true),
        ("id eq 'task-01'", true),
        ("id eq 'TASK-01'", true),
        ("id eq 'task-1'", false),
        ("id gt 'task-00'", true),
        ("id lt 'task-00'", false),
        ("id ge 'TASK-01'", true),
        ("id le 'task-01'", true),
        ("executionInfo/exitCode eq 3", true),
        ("executionInfo/exitCode ne 3", false),
        ("executionInfo/exitCode gt 0", true),
        ("executionInfo/exitCode ge 3", true),
        ("executionInfo/exitCode gt 3", false),
        ("executionInfo/exitCode lt 10", true),
        ("executionInfo/exitCode le 2", false),
        ("executionInfo/exitCode gt -1", true),
        ("executionInfo/exitCode lt 3.5", true),
        ("executionInfo/exitCode eq 3.0", true),
        ("executionInfo/exitCode eq 3L", true),
        ("executionInfo/result eq 'failure'", true),
        ("executionInfo/result eq 'FAILURE'", true),
        ("executionInfo/retryCount eq 0", true),
        ("nodeInfo/nodeId eq 'n1'", true),
        ("nodeInfo/nodeId eq 'n2'", false),
        ("multiInstanceSettings/numberOfInstances ge 2", true),
        ("previousState eq 'running'", true),
        ("displayName eq 'Render Frame 1'", true),
        ("commandLine eq '/bin/bash -c ''exit 3'''", true),
        ("lastModifiedTime gt datetime'2026-11-21T07:04:00Z'", true),
        ("lastModified lt datetime'2026-11-21T07:04:00Z'", false),
    ];
    for (filter, expected) in cases {
        check(filter, TASK, *expected);
    }
}

#[test]
fn missing_properties_and_null() {
    let cases: &[(&str, bool)] = &[
        ("executionInfo/exitCode eq 0", false),
        ("executionInfo/exitCode gt 0", false),
        ("executionInfo/exitCode lt 0", false),
        ("executionInfo/exitCode ne 0", true),
        ("executionInfo/exitCode eq null", true),
        ("executionInfo/exitCode ne null", false),
        ("not (executionInfo/exitCode gt 0)", true),
        ("nodeInfo/nodeId eq 'n1'", false),
        ("nodeInfo/nodeId ne 'n1'", true),
        ("nodeInfo/nodeId eq null", true),
        ("executionInfo/result ne 'success'", true),
        (
            "executionInfo/startTime lt datetime'2030-01-01T00:00:00Z'",
            false,
        ),
        ("startswith(displayName, 'r')", false),
        ("displayName eq null", true),
    ];
    for (filter, expected) in cases {
        check(filter, ACTIVE_TASK, *expected);
    }
    check("executionInfo/exitCode eq null", TASK, false);
    check("executionInfo/exitCode ne null", TASK, true);
    // An explicit JSON null counts as missing.
    check(
        "nodeInfo/nodeId eq null",
        r#"{"nodeInfo": {"nodeId": null}}"#,
        true,
    );
    check("nodeInfo/nodeId eq null", r#"{"nodeInfo": 5}"#, true);
}

#[test]
fn values_of_an_unexpected_json_type_never_compare() {
    check(
        "executionInfo/exitCode eq 3",
        r#"{"executionInfo": {"exitCode": "3"}}"#,
        false,
    );
    check(
        "executionInfo/exitCode ne 3",
        r#"{"executionInfo": {"exitCode": "3"}}"#,
        true,
    );
    check("state eq 'active'", r#"{"state": 1}"#, false);
    check(
        "creationTime gt datetime'2020-01-01T00:00:00Z'",
        r#"{"creationTime": "soon"}"#,
        false,
    );
}

#[test]
fn precedence_of_not_and_or() {
    let cases: &[(&str, bool)] = &[
        // and binds tighter than or: true or (false and false)
        (
            "state eq 'completed' or state eq 'active' and id eq 'nope'",
            true,
        ),
        // (true or false) and false
        (
            "(state eq 'completed' or state eq 'active') and id eq 'nope'",
            false,
        ),
        // false and false or true → (false and false) or true
        (
            "id eq 'nope' and state eq 'active' or executionInfo/exitCode eq 3",
            true,
        ),
        // not binds tighter than and: (not false) and true
        (
            "not state eq 'active' and executionInfo/exitCode eq 3",
            true,
        ),
        (
            "not state eq 'completed' and executionInfo/exitCode eq 3",
            false,
        ),
        (
            "not (state eq 'completed' and executionInfo/exitCode eq 4)",
            true,
        ),
        ("not not state eq 'completed'", true),
        ("not (not (state eq 'completed'))", true),
        ("(((state eq 'completed')))", true),
        (
            "(executionInfo/exitCode lt 0) or (executionInfo/exitCode gt 0)",
            true,
        ),
        ("(state eq 'running') and startswith(id, 'task')", false),
    ];
    for (filter, expected) in cases {
        check(filter, TASK, *expected);
    }
}

#[test]
fn whitespace_is_lenient() {
    let cases: &[(&str, bool)] = &[
        ("  state   eq\t'completed'  ", true),
        ("(state eq 'completed')and(id eq 'task-01')", true),
        ("startswith( id ,'task' )", true),
        (
            "state eq 'completed'\nand\nexecutionInfo/exitCode eq 3",
            true,
        ),
    ];
    for (filter, expected) in cases {
        check(filter, TASK, *expected);
    }
}

#[test]
fn datetimes_compare_as_instants() {
    let cases: &[(&str, bool)] = &[
        ("creationTime gt datetime'2026-11-21T07:00:00Z'", true),
        ("creationTime lt datetime'2026-11-21T07:00:01Z'", true),
        (
            "creationTime eq datetime'2026-11-21T07:00:00.1234567Z'",
            true,
        ),
        (
            "creationTime eq datetime'2026-11-21T07:00:00.1234567+00:00'",
            true,
        ),
        (
            "creationTime eq datetime'2026-11-21T08:00:00.1234567+01:00'",
            true,
        ),
        ("creationTime ne datetime'2026-11-21T07:00:00Z'", true),
        ("creationTime gt DateTime'2026-11-21T06:59:59Z'", true),
        ("creationTime gt DATETIME'2026-11-21T06:59:59Z'", true),
        ("creationTime gt datetimeoffset'2026-11-21T06:59:59Z'", true),
        (
            "creationTime gt DateTime'Sat, 21 Nov 2026 06:59:59 GMT'",
            true,
        ),
        (
            "creationTime gt DateTime'Sat, 21 Nov 2026 07:00:01 GMT'",
            false,
        ),
        (
            "creationTime gt datetime'2026-11-21T06:59:59.0000000'",
            true,
        ),
        ("creationTime ge datetime'2026-11-21'", true),
        ("creationTime lt datetime'2026-11-22'", true),
        ("creationTime gt '2026-11-21T06:00:00Z'", true),
        ("creationTime lt '2026-11-21T06:00:00Z'", false),
        ("creationTime gt 2026-11-21T06:00:00Z", true),
        ("creationTime lt 2026-11-21T09:00:00+03:00", false),
        ("executionInfo/endTime gt executionInfo/startTime", false),
    ];
    for (filter, expected) in &cases[..cases.len() - 1] {
        check(filter, TASK, *expected);
    }
    // Comparing two properties is not something Azure supports.
    parse_error(cases[cases.len() - 1].0, ListKind::Tasks);
}

#[test]
fn startswith_forms() {
    let cases: &[(&str, bool)] = &[
        ("startswith(id,'task')", true),
        ("startswith(id, 'TASK-0')", true),
        ("startswith(id, 'job')", false),
        ("startswith(id, '')", true),
        ("startswith(id,'task') eq true", true),
        ("startswith(id,'task') eq false", false),
        ("startswith(id,'task') ne true", false),
        ("startswith(id,'job') ne true", true),
        ("not startswith(id,'job')", true),
        ("startswith(nodeInfo/nodeId, 'n')", true),
    ];
    for (filter, expected) in cases {
        check(filter, TASK, *expected);
    }
    let file = r#"{"name": "wd/output.txt", "isDirectory": false,
                   "properties": {"contentLength": 12, "lastModified": "2026-11-21T07:00:00Z"}}"#;
    check_kind(ListKind::TaskFiles, "startswith(name, 'wd')", file, true);
    check_kind(ListKind::TaskFiles, "startswith(name, 'std')", file, false);
    check_kind(
        ListKind::NodeFiles,
        "startswith(name,'wd/') and isDirectory eq false",
        file,
        true,
    );
    check_kind(
        ListKind::NodeFiles,
        "properties/contentLength gt 10",
        file,
        true,
    );
}

#[test]
fn other_lists() {
    use ListKind::*;
    let node = r#"{"id": "tvm-1", "state": "idle", "schedulingState": "enabled", "isDedicated": true,
                   "startTaskInfo": {"state": "completed", "exitCode": 0, "result": "success"}}"#;
    let pool = r#"{"id": "pool1", "state": "active", "allocationState": "steady",
                   "enableAutoScale": false, "vmSize": "STANDARD_D2S_V3", "currentDedicatedNodes": 2}"#;
    let image = r#"{"nodeAgentSKUId": "batch.node.ubuntu 22.04", "osType": "linux",
                    "verificationType": "verified",
                    "imageReference": {"publisher": "canonical", "offer": "x", "sku": "22_04-lts"}}"#;
    let prep = r#"{"poolId": "p", "nodeId": "n",
                   "jobPreparationTaskExecutionInfo": {"state": "completed", "exitCode": 1}}"#;
    let cases: &[(ListKind, &str, &str, bool)] = &[
        (Nodes, "state eq 'idle'", node, true),
        (Nodes, "state eq 'running'", node, false),
        (
            Nodes,
            "schedulingState eq 'enabled' and isDedicated eq true",
            node,
            true,
        ),
        (Nodes, "startTaskInfo/exitCode ne 0", node, false),
        (Nodes, "startTaskInfo/state eq 'completed'", node, true),
        (
            Pools,
            "allocationState eq 'steady' and enableAutoScale eq false",
            pool,
            true,
        ),
        (Pools, "vmSize eq 'standard_d2s_v3'", pool, true),
        (
            Pools,
            "startswith(id, 'POOL') and currentDedicatedNodes gt 1",
            pool,
            true,
        ),
        (
            SupportedImages,
            "verificationType eq 'verified'",
            image,
            true,
        ),
        (SupportedImages, "osType eq 'windows'", image, false),
        (
            SupportedImages,
            "nodeAgentSKUId eq 'batch.node.ubuntu 22.04'",
            image,
            true,
        ),
        (
            SupportedImages,
            "startswith(imageReference/publisher, 'Canonical')",
            image,
            true,
        ),
        (
            NodeAgentSkus,
            "osType eq 'linux'",
            r#"{"id": "a", "osType": "linux"}"#,
            true,
        ),
        (
            PoolNodeCounts,
            "poolId eq 'pool1'",
            r#"{"poolId": "pool1"}"#,
            true,
        ),
        (
            JobPrepReleaseStatus,
            "jobPreparationTaskExecutionInfo/exitCode ne 0",
            prep,
            true,
        ),
        (
            JobPrepReleaseStatus,
            "jobReleaseTaskExecutionInfo/state eq 'running'",
            prep,
            false,
        ),
        (
            Certificates,
            "state eq 'active'",
            r#"{"state": "deleting"}"#,
            false,
        ),
        (
            Jobs,
            "executionInfo/poolId eq 'p1'",
            r#"{"executionInfo": {"poolId": "P1"}}"#,
            true,
        ),
        (
            JobSchedules,
            "schedule/doNotRunUntil lt datetime'2030-01-01T00:00:00Z'",
            r#"{"schedule": {"doNotRunUntil": "2029-01-01T00:00:00Z"}}"#,
            true,
        ),
        (
            PoolUsageMetrics,
            "poolId ge 'p' and totalCoreHours gt 0.5",
            r#"{"poolId": "pool", "totalCoreHours": 0.75}"#,
            true,
        ),
        (
            Subtasks,
            "id eq 1 and state eq 'completed'",
            r#"{"id": 1, "state": "completed"}"#,
            true,
        ),
        (
            Applications,
            "id eq 'blender'",
            r#"{"id": "Blender"}"#,
            true,
        ),
    ];
    for (kind, filter, json, expected) in cases {
        check_kind(*kind, filter, json, *expected);
    }
}

#[test]
fn every_list_accepts_each_of_its_properties() {
    for kind in ListKind::ALL {
        assert!(kind.filter_properties().count() > 0, "{kind:?}");
        for property in kind.filter_properties() {
            let filter = format!("{property} eq null");
            let parsed = Filter::parse(&filter, kind);
            assert!(parsed.is_ok(), "{filter} on {kind:?}: {parsed:?}");
            assert!(parsed.is_ok_and(|f| f.matches(&json!({}))));
        }
    }
}

#[test]
fn an_empty_filter_matches_everything() {
    for text in ["", "   "] {
        let filter = Filter::parse(text, ListKind::Tasks).expect("empty filter parses");
        assert!(filter.matches(&entity(TASK)));
        assert_eq!(filter.required_eq("state"), None);
    }
}

#[test]
fn syntax_errors() {
    let cases = [
        "state eq",
        "state 'active'",
        "state eq 'active' and",
        "state eq 'active' or or id eq 'x'",
        "(state eq 'active'",
        "state eq 'active')",
        "state eq 'active' id eq 'x'",
        "state eq 'active",
        "state eq active",
        "state == 'active'",
        "state eq 'active' AND id eq 'x'",
        "State eq 'active'",
        "id startswith 'dev'",
        "startswith(id)",
        "startswith(id, 3)",
        "startswith('x', id)",
        "startswith(id, 'x') eq 'y'",
        "endswith(id, 'x')",
        "substringof('x', id)",
        "()",
        "not",
        "eq 'x'",
        "state eq 'a' & id eq 'b'",
        "executionInfo/exitCode eq 3x",
        "executionInfo/exitCode eq -",
        "executionInfo/exitCode eq 1.2.3",
        "creationTime gt datetime'yesterday'",
        "creationTime gt datetime'2026-13-45T00:00:00Z'",
        "'active' eq state",
    ];
    for filter in cases {
        let e = parse_error(filter, ListKind::Tasks);
        assert_eq!(e.parameter, "$filter");
        assert_eq!(e.value, filter);
        assert!(!e.reason.is_empty());
    }
}

#[test]
fn deep_nesting_is_rejected_not_overflowed() {
    let deep = format!(
        "{}state eq 'active'{}",
        "(".repeat(10_000),
        ")".repeat(10_000)
    );
    assert!(
        parse_error(&deep, ListKind::Tasks)
            .reason
            .contains("nests deeper")
    );
    let nots = format!("{}state eq 'active'", "not ".repeat(10_000));
    parse_error(&nots, ListKind::Tasks);
    // Long flat chains are fine.
    let chain = vec!["state eq 'completed'"; 5_000].join(" and ");
    check(&chain, TASK, true);
}

#[test]
fn properties_must_be_filterable_on_the_list() {
    use ListKind::*;
    let cases: &[(ListKind, &str)] = &[
        (Tasks, "foo eq 'x'"),
        (Tasks, "executionInfo eq 'x'"),
        (Tasks, "executionInfo/foo eq 1"),
        (Tasks, "allocationState eq 'steady'"),
        (Nodes, "executionInfo/exitCode eq 0"),
        (Pools, "verificationType eq 'verified'"),
        (SupportedImages, "state eq 'active'"),
        (TaskFiles, "id eq 'x'"),
        (PoolNodeCounts, "state eq 'x'"),
        (Certificates, "id eq 'x'"),
    ];
    for (kind, filter) in cases {
        let e = parse_error(filter, *kind);
        assert!(
            e.reason.contains("cannot be used in $filter"),
            "{}",
            e.reason
        );
    }
}

#[test]
fn operators_and_literals_must_fit_the_property() {
    let cases = [
        "state gt 'active'",
        "state ge 'active'",
        "startswith(state, 'act')",
        "executionInfo/result lt 'success'",
        "executionInfo/exitCode eq '3'",
        "executionInfo/exitCode eq true",
        "executionInfo/exitCode gt null",
        "state eq 3",
        "state eq datetime'2026-11-21T07:00:00Z'",
        "id eq 42",
        "creationTime gt 'not a time'",
        "creationTime gt 5",
    ];
    for filter in cases {
        parse_error(filter, ListKind::Tasks);
    }
    parse_error("enableAutoScale eq 'true'", ListKind::Pools);
    parse_error("enableAutoScale gt false", ListKind::Pools);
    let e = parse_error("state gt 'active'", ListKind::Tasks);
    assert!(e.reason.contains("'gt'"), "{}", e.reason);
}

#[test]
fn errors_carry_azure_values() {
    let e = parse_error("state eq", ListKind::Tasks);
    assert_eq!(ODataError::CODE, "InvalidQueryParameterValue");
    let values = e.values();
    assert_eq!(values[0], ("QueryParameterName", "$filter"));
    assert_eq!(values[1], ("QueryParameterValue", "state eq"));
    assert_eq!(values[2].0, "Reason");
    assert_eq!(values[2].1, e.to_string());
}

#[test]
fn required_eq_finds_index_pins() {
    let cases: &[(&str, &str, Option<&str>)] = &[
        ("state eq 'active'", "state", Some("active")),
        ("state eq 'Active' and id eq 'x'", "state", Some("Active")),
        (
            "id eq 'x' and (state eq 'running')",
            "state",
            Some("running"),
        ),
        (
            "id eq 'x' and (state eq 'running' and startswith(id, 'x'))",
            "state",
            Some("running"),
        ),
        (
            "startswith(id,'t') and state eq 'completed' and executionInfo/exitCode gt 0",
            "state",
            Some("completed"),
        ),
        (
            "state eq 'active' and (id eq 'a' or id eq 'b')",
            "state",
            Some("active"),
        ),
        (
            "nodeInfo/nodeId eq 'n1' and state eq 'running'",
            "nodeInfo/nodeId",
            Some("n1"),
        ),
        ("state eq 'active' or id eq 'x'", "state", None),
        ("not state eq 'active'", "state", None),
        ("not (state eq 'active' and id eq 'x')", "state", None),
        ("state ne 'active'", "state", None),
        ("state eq null", "state", None),
        ("id eq 'x'", "state", None),
        (
            "executionInfo/exitCode eq 0",
            "executionInfo/exitCode",
            None,
        ),
        (
            "lastModifiedTime eq datetime'2026-11-21T07:00:00Z'",
            "lastModified",
            None,
        ),
    ];
    for (filter, property, expected) in cases {
        let parsed = Filter::parse(filter, ListKind::Tasks).expect("parses");
        assert_eq!(
            parsed.required_eq(property),
            *expected,
            "{filter} / {property}"
        );
    }
}

fn select(text: &str, json: Value) -> Value {
    Select::parse(text).expect("select parses").apply(json)
}

#[test]
fn select_keeps_only_the_selected_paths() {
    let task = entity(TASK);
    assert_eq!(
        select("id,state", task.clone()),
        json!({"id": "Task-01", "state": "completed"})
    );
    assert_eq!(
        select(" id , state ,", task.clone()),
        json!({"id": "Task-01", "state": "completed"})
    );
    assert_eq!(
        select("id,executionInfo/exitCode,nodeInfo/nodeId", task.clone()),
        json!({"id": "Task-01", "executionInfo": {"exitCode": 3}, "nodeInfo": {"nodeId": "n1"}})
    );
    assert_eq!(
        select("executionInfo/exitCode,executionInfo", task.clone())["executionInfo"],
        task["executionInfo"]
    );
    assert_eq!(
        select("executionInfo, executionInfo/exitCode", task.clone())["executionInfo"],
        task["executionInfo"]
    );
    assert_eq!(
        select("resourceFiles/filePath", task.clone()),
        json!({"resourceFiles": [{"httpUrl": "https://x/y", "filePath": "y"}]})
    );
    assert_eq!(select("id/foo", task.clone()), json!({"id": "Task-01"}));
    assert_eq!(select("*", task.clone()), task);
    assert_eq!(select("id,*", task.clone()), task);
}

#[test]
fn select_leaves_absent_keys_absent() {
    let task = entity(ACTIVE_TASK);
    assert_eq!(
        select("id,stats,nodeInfo", task.clone()),
        json!({"id": "task-02"})
    );
    // An object on the way that holds none of the selected keys is dropped.
    assert_eq!(select("executionInfo/exitCode", task.clone()), json!({}));
    assert_eq!(
        select(
            "executionInfo/exitCode,executionInfo/retryCount",
            task.clone()
        ),
        json!({"executionInfo": {"retryCount": 0}})
    );
    // Names are case-sensitive.
    assert_eq!(select("ID,State", task), json!({}));
    assert_eq!(select("id", json!([1, 2])), json!([1, 2]));
}

#[test]
fn select_includes() {
    let s = Select::parse("id,stats/userCPUTime").expect("parses");
    assert!(s.includes("id"));
    assert!(s.includes("stats"));
    assert!(!s.includes("state"));
    assert!(Select::parse("*").expect("parses").includes("stats"));
}

#[test]
fn select_errors() {
    for text in ["", " , ", "id,", "id,,state"] {
        let result = Select::parse(text);
        assert_eq!(result.is_ok(), text.contains("id"), "{text:?}");
    }
    for text in [
        "",
        ",",
        "id,st ate",
        "id,executionInfo//exitCode",
        "/id",
        "id/",
        "id,'state'",
        "id,state eq 'x'",
        "1id",
        "id,nodeInfo/node-id",
    ] {
        let e = Select::parse(text).expect_err(text);
        assert_eq!(e.parameter, "$select");
        assert_eq!(e.value, text);
        assert_eq!(e.values()[0], ("QueryParameterName", "$select"));
    }
}

#[test]
fn expand_accepts_only_stats() {
    assert!(parse_expand("stats").expect("stats"));
    assert!(parse_expand(" stats ").expect("stats"));
    assert!(parse_expand("stats,stats").expect("stats"));
    assert!(!parse_expand("").expect("empty"));
    for text in ["Stats", "stats,nodeInfo", "executionInfo", "*", "stats/x"] {
        let e = parse_expand(text).expect_err(text);
        assert_eq!(e.parameter, "$expand");
        assert_eq!(e.value, text);
    }
}

#[test]
fn time_parsing() {
    let utc = |s: &str| parse_time(s).map(|t| t.with_timezone(&Utc).to_rfc3339());
    assert_eq!(
        utc("2016-11-21T22:43:31.4733476Z").as_deref(),
        Some("2016-11-21T22:43:31.473347600+00:00")
    );
    assert_eq!(
        utc("Sun, 08 May 2011 08:49:37 GMT").as_deref(),
        Some("2011-05-08T08:49:37+00:00")
    );
    assert_eq!(
        utc("2011-05-08T08:49:37").as_deref(),
        Some("2011-05-08T08:49:37+00:00")
    );
    assert_eq!(
        utc("2011-05-08").as_deref(),
        Some("2011-05-08T00:00:00+00:00")
    );
    assert_eq!(
        utc("2011-05-08T10:49:37+02:00").as_deref(),
        Some("2011-05-08T08:49:37+00:00")
    );
    assert_eq!(utc("yesterday"), None);
}
