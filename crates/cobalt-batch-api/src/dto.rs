//! Translation between an api-version's JSON schema and the current one the control plane
//! speaks. Older SDKs name some properties differently:
//!
//! | current (≥ version)                 | older name                                  |
//! |-------------------------------------|---------------------------------------------|
//! | `httpUrl` (2018-12-01.8.0)          | `blobSource` (resource files)               |
//! | `taskSlotsPerNode` (2020-09-01.12.0)| `maxTasksPerNode` (pools, pool specs)       |
//! | `targetDedicatedNodes` (2017-05)    | `targetDedicated` (accepted on input only)  |
//! | `userIdentity` (2017-01)            | `runElevated` (accepted on input only)      |
//!
//! Requests are translated up before validation ([`inbound`]); entities are translated down
//! before they are sent ([`outbound`]), so each client reads its own words.

use serde_json::{Map, Value, json};

use crate::version::ApiVersion;

/// Renames, for each version boundary: (current name, old name, first version with the current name).
const RENAMES: &[(&str, &str, ApiVersion)] = &[
    ("httpUrl", "blobSource", ApiVersion::V2018_12_01),
    (
        "taskSlotsPerNode",
        "maxTasksPerNode",
        ApiVersion::V2020_09_01,
    ),
];

/// Properties the service fills in by default that older versions do not have: (name, first
/// version with it). Answers to older versions leave them out (2017-09-01.6.0 and
/// 2020-09-01.12.0 swagger definitions).
const ADDED: &[(&str, ApiVersion)] = &[
    ("requiredSlots", ApiVersion::V2020_09_01),
    ("maxParallelTasks", ApiVersion::V2022_10_01),
    ("allowTaskPreemption", ApiVersion::V2022_10_01),
];

/// Translates a request body from `version`'s schema to the current one.
pub fn inbound(version: ApiVersion, body: &mut Value) {
    walk(body, &mut |map| {
        for (current, old, since) in RENAMES {
            if version < *since {
                rename(map, old, current);
            }
        }
        rename(map, "targetDedicated", "targetDedicatedNodes");
        if let Some(Value::Bool(elevated)) = map.remove("runElevated") {
            let level = if elevated { "admin" } else { "nonadmin" };
            map.entry("userIdentity")
                .or_insert_with(|| json!({"autoUser": {"elevationLevel": level}}));
        }
    });
}

/// Translates an entity from the current schema to `version`'s.
pub fn outbound(version: ApiVersion, entity: &mut Value) {
    let renamed = RENAMES.iter().all(|(_, _, since)| version >= *since);
    if renamed && ADDED.iter().all(|(_, since)| version >= *since) {
        return;
    }
    walk(entity, &mut |map| {
        for (current, old, since) in RENAMES {
            if version < *since {
                rename(map, current, old);
            }
        }
        for (name, since) in ADDED {
            if version < *since {
                map.remove(*name);
            }
        }
    });
}

fn rename(map: &mut Map<String, Value>, from: &str, to: &str) {
    if !map.contains_key(to)
        && let Some(v) = map.remove(from)
    {
        map.insert(to.to_owned(), v);
    }
}

/// Calls `f` on every object in `value`, outermost first.
fn walk(value: &mut Value, f: &mut impl FnMut(&mut Map<String, Value>)) {
    match value {
        Value::Object(map) => {
            f(map);
            for v in map.values_mut() {
                walk(v, f);
            }
        }
        Value::Array(items) => {
            for v in items {
                walk(v, f);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_2017_pool_of_the_tutorial_becomes_current_and_back() {
        let mut pool = json!({
            "id": "PythonTutorialPool", "maxTasksPerNode": 2, "targetDedicatedNodes": 1,
            "startTask": {"commandLine": "x", "resourceFiles": [{"blobSource": "http://b/a", "filePath": "a"}]},
        });
        inbound(ApiVersion::V2017_09_01, &mut pool);
        assert_eq!(pool["taskSlotsPerNode"], 2);
        assert_eq!(
            pool["startTask"]["resourceFiles"][0]["httpUrl"],
            "http://b/a"
        );
        assert!(
            pool["startTask"]["resourceFiles"][0]
                .get("blobSource")
                .is_none()
        );
        outbound(ApiVersion::V2017_09_01, &mut pool);
        assert_eq!(pool["maxTasksPerNode"], 2);
        assert_eq!(
            pool["startTask"]["resourceFiles"][0]["blobSource"],
            "http://b/a"
        );
    }

    #[test]
    fn older_versions_do_not_see_newer_properties() {
        let job = json!({"id": "j", "maxParallelTasks": -1, "allowTaskPreemption": false,
                         "jobManagerTask": {"requiredSlots": 1}});
        let mut old = job.clone();
        outbound(ApiVersion::V2017_09_01, &mut old);
        assert_eq!(old, json!({"id": "j", "jobManagerTask": {}}));
        let mut v2020 = job.clone();
        outbound(ApiVersion::V2020_09_01, &mut v2020);
        assert_eq!(
            v2020,
            json!({"id": "j", "jobManagerTask": {"requiredSlots": 1}})
        );
        let mut current = job.clone();
        outbound(ApiVersion::V2022_10_01, &mut current);
        assert_eq!(current, job);
    }

    #[test]
    fn versions_in_between_translate_only_what_changed() {
        let mut pool = json!({"maxTasksPerNode": 3, "resourceFiles": [{"httpUrl": "u"}]});
        inbound(ApiVersion::V2018_12_01, &mut pool);
        assert_eq!(
            pool,
            json!({"taskSlotsPerNode": 3, "resourceFiles": [{"httpUrl": "u"}]})
        );
        let mut current = json!({"blobSource": "kept"});
        inbound(ApiVersion::V2024_02_01, &mut current);
        assert_eq!(current, json!({"blobSource": "kept"}));
        let mut out = json!({"taskSlotsPerNode": 3});
        outbound(ApiVersion::V2025_06_01, &mut out);
        assert_eq!(out, json!({"taskSlotsPerNode": 3}));
    }

    #[test]
    fn pre_2017_words_are_understood() {
        let mut pool =
            json!({"targetDedicated": 2, "startTask": {"commandLine": "x", "runElevated": true}});
        inbound(ApiVersion::V2017_09_01, &mut pool);
        assert_eq!(pool["targetDedicatedNodes"], 2);
        assert_eq!(
            pool["startTask"]["userIdentity"]["autoUser"]["elevationLevel"],
            "admin"
        );
    }
}
