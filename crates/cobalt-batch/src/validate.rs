//! Validation as Azure does it: the request body's shape, required properties, id rules,
//! ranges and resource files, each failure with Azure's code and `values`.

use cobalt_model::batch::{
    EnvironmentSetting, IsoDuration, ResourceFile, StartTask, TaskConstraints, is_valid_id,
};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::{BatchError, BatchResult, ErrorCode};

/// Deserializes a request body into `T`, naming the property at fault.
pub(crate) fn parse<T: DeserializeOwned>(body: Value) -> BatchResult<T> {
    if !body.is_object() {
        return Err(BatchError::new(ErrorCode::InvalidRequestBody)
            .with_message("The request body must be a JSON object."));
    }
    serde_path_to_error::deserialize(body).map_err(|e| {
        let path = e.path().to_string();
        let reason = e.into_inner().to_string();
        if path.is_empty() || path == "." {
            return BatchError::new(ErrorCode::InvalidRequestBody).with_value("Reason", reason);
        }
        BatchError::new(ErrorCode::InvalidPropertyValue)
            .with_value("PropertyName", path.replace('.', "/"))
            .with_value("Reason", reason)
    })
}

pub(crate) fn missing(property: &str) -> BatchError {
    BatchError::new(ErrorCode::MissingRequiredProperty).with_value("PropertyName", property)
}

pub(crate) fn invalid(property: &str, value: impl ToString, reason: &str) -> BatchError {
    BatchError::new(ErrorCode::InvalidPropertyValue)
        .with_value("PropertyName", property)
        .with_value("PropertyValue", value.to_string())
        .with_value("Reason", reason)
}

/// An entity id: present, ≤64 of letters, digits, `-` and `_`.
pub(crate) fn id(property: &str, id: &str) -> BatchResult<()> {
    if id.is_empty() {
        return Err(missing(property));
    }
    if !is_valid_id(id) {
        return Err(invalid(
            property,
            id,
            "The id can contain any combination of alphanumeric characters including hyphens and underscores, and cannot contain more than 64 characters.",
        ));
    }
    Ok(())
}

pub(crate) fn required(property: &str, value: &str) -> BatchResult<()> {
    if value.trim().is_empty() {
        return Err(missing(property));
    }
    Ok(())
}

pub(crate) fn range(property: &str, value: Option<i32>, min: i32, max: i32) -> BatchResult<()> {
    match value {
        Some(v) if v < min || v > max => Err(invalid(
            property,
            v,
            &format!("The value must be between {min} and {max}."),
        )),
        _ => Ok(()),
    }
}

pub(crate) fn min_duration(
    property: &str,
    value: Option<&IsoDuration>,
    min_secs: u64,
) -> BatchResult<()> {
    match value {
        Some(d) if d.value().as_secs() < min_secs => Err(invalid(
            property,
            d.as_str(),
            &format!("The duration must be at least {min_secs} seconds."),
        )),
        _ => Ok(()),
    }
}

/// A relative path that stays inside the working directory.
fn relative_path(property: &str, path: &str) -> BatchResult<()> {
    let escapes = path.starts_with('/')
        || path.starts_with('\\')
        || path.split(['/', '\\']).any(|part| part == "..")
        || path.contains(':');
    if escapes {
        return Err(invalid(
            property,
            path,
            "The file path must be relative and must not escape the working directory.",
        ));
    }
    Ok(())
}

pub(crate) fn resource_files(property: &str, files: &[ResourceFile]) -> BatchResult<()> {
    for (i, f) in files.iter().enumerate() {
        let at = |name: &str| format!("{property}[{i}]/{name}");
        let sources = [
            f.http_url.is_some(),
            f.storage_container_url.is_some(),
            f.auto_storage_container_name.is_some(),
        ]
        .iter()
        .filter(|s| **s)
        .count();
        if sources != 1 {
            return Err(BatchError::new(ErrorCode::InvalidPropertyValue)
                .with_value("PropertyName", format!("{property}[{i}]"))
                .with_value(
                    "Reason",
                    "Exactly one of httpUrl, storageContainerUrl or autoStorageContainerName must be specified.",
                ));
        }
        match (&f.http_url, &f.file_path) {
            (Some(_), None) => return Err(missing(&at("filePath"))),
            (_, Some(p)) => relative_path(&at("filePath"), p)?,
            _ => {}
        }
        if let Some(mode) = &f.file_mode
            && (mode.is_empty()
                || mode.len() > 4
                || !mode.chars().all(|c| ('0'..='7').contains(&c)))
        {
            return Err(invalid(
                &at("fileMode"),
                mode,
                "The file mode must be an octal number such as 0770.",
            ));
        }
    }
    Ok(())
}

pub(crate) fn environment(property: &str, settings: &[EnvironmentSetting]) -> BatchResult<()> {
    for (i, s) in settings.iter().enumerate() {
        required(&format!("{property}[{i}]/name"), &s.name)?;
    }
    Ok(())
}

pub(crate) fn task_constraints(property: &str, c: Option<&TaskConstraints>) -> BatchResult<()> {
    if let Some(c) = c {
        range(
            &format!("{property}/maxTaskRetryCount"),
            c.max_task_retry_count,
            -1,
            i32::MAX,
        )?;
    }
    Ok(())
}

pub(crate) fn start_task(property: &str, t: &StartTask) -> BatchResult<()> {
    required(&format!("{property}/commandLine"), &t.command_line)?;
    resource_files(&format!("{property}/resourceFiles"), &t.resource_files)?;
    environment(
        &format!("{property}/environmentSettings"),
        &t.environment_settings,
    )?;
    range(
        &format!("{property}/maxTaskRetryCount"),
        t.max_task_retry_count,
        -1,
        i32::MAX,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn resource_file_rules() {
        let f = |v: Value| serde_json::from_value::<ResourceFile>(v).unwrap();
        let ok = f(json!({"httpUrl": "http://x/y", "filePath": "in/a.txt"}));
        assert!(resource_files("resourceFiles", &[ok]).is_ok());
        let container = f(json!({"storageContainerUrl": "http://x/c"}));
        assert!(resource_files("resourceFiles", &[container]).is_ok());
        for bad in [
            json!({"filePath": "a"}),
            json!({"httpUrl": "http://x", "storageContainerUrl": "http://y", "filePath": "a"}),
            json!({"httpUrl": "http://x"}),
            json!({"httpUrl": "http://x", "filePath": "../a"}),
            json!({"httpUrl": "http://x", "filePath": "/etc/passwd"}),
            json!({"httpUrl": "http://x", "filePath": "a", "fileMode": "999"}),
        ] {
            assert!(
                resource_files("resourceFiles", &[f(bad.clone())]).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn body_errors_name_the_property() {
        #[derive(serde::Deserialize, Debug)]
        #[serde(rename_all = "camelCase")]
        #[allow(dead_code)]
        struct T {
            target_dedicated_nodes: Option<i32>,
        }
        let e = parse::<T>(json!({"targetDedicatedNodes": "many"})).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidPropertyValue);
        assert_eq!(
            e.values[0],
            ("PropertyName".to_owned(), "targetDedicatedNodes".to_owned())
        );
        assert_eq!(
            parse::<T>(json!([1])).unwrap_err().code,
            ErrorCode::InvalidRequestBody
        );
    }
}
