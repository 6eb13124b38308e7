//! The `failureInfo` codes the agent reports in `RunEnd`, and the exit code of a killed
//! process. Azure's codes where Azure has one (batch-rest.md §8); the server passes them through
//! to `executionInfo.failureInfo` and applies its retry rules (a pre-processing or file-upload
//! error is never retried).

use cobalt_model::batch::{ErrorCategory, FailureInfo, NameValue};

/// A resource file's URL answered 404 (blob, or container being listed, not found).
/// Pre-processing error.
pub const BLOB_NOT_FOUND: &str = "BlobNotFound";
/// A resource file's URL answered 401 or 403 (bad or expired SAS). Pre-processing error.
pub const BLOB_ACCESS_DENIED: &str = "BlobAccessDenied";
/// Any other download failure: another HTTP status, a network error, an unreadable container
/// listing. Pre-processing error.
pub const BLOB_DOWNLOAD_MISC_ERROR: &str = "BlobDownloadMiscError";
/// A resource file could not be written on the node: a `filePath` that is absolute or
/// escapes `wd/` with `..`, a bad `fileMode`, a local IO error. Pre-processing error.
pub const RESOURCE_FILE_CREATE_FAILED: &str = "ResourceFileCreateFailed";
/// The command line's program does not exist, is not executable, or is not an executable
/// format; also an empty command line or one with unbalanced quotes. Not a pre-processing
/// error (`exit_code` is None).
pub const COMMAND_PROGRAM_NOT_FOUND: &str = "CommandProgramNotFound";
/// The process could not be started for a reason that is not the user's (fork failed, the
/// task directory could not be created or handed to the task's user). Category
/// `servererror`.
pub const TASK_START_FAILED: &str = "TaskStartFailed";
/// `maxWallClockTime` passed: the process group was killed with SIGKILL.
pub const MAX_WALL_CLOCK_TIME_EXCEEDED: &str = "MaxWallClockTimeExceeded";
/// The server asked to kill the run (`ServerMessage::Kill`: terminate task or job).
pub const TASK_ENDED: &str = "TaskEnded";
/// At least one output file failed to upload (Azure's code for upload failures).
/// `file_upload_error` is set.
pub const FILE_UPLOAD_MISC_ERROR: &str = "FileUploadMiscError";

/// The exit code reported for a process the agent killed (wall clock, `Kill`): 128 + SIGKILL,
/// the shell's and Docker's convention. Any process that died of a signal reports
/// 128 + that signal.
pub const KILLED_EXIT_CODE: i32 = 128 + 9;

/// A `usererror` failure.
pub(crate) fn user_error(code: &str, message: impl Into<String>) -> FailureInfo {
    FailureInfo {
        category: ErrorCategory::UserError,
        code: Some(code.to_owned()),
        message: Some(message.into()),
        details: Vec::new(),
    }
}

/// A `servererror` failure.
pub(crate) fn server_error(code: &str, message: impl Into<String>) -> FailureInfo {
    FailureInfo {
        category: ErrorCategory::ServerError,
        ..user_error(code, message)
    }
}

/// Adds a `{name, value}` detail.
pub(crate) fn with_detail(
    mut info: FailureInfo,
    name: &str,
    value: impl Into<String>,
) -> FailureInfo {
    info.details.push(NameValue {
        name: name.to_owned(),
        value: Some(value.into()),
    });
    info
}

/// A URL without its query, so that a SAS never ends up in a failure message or a log.
pub(crate) fn without_query(url: &str) -> &str {
    url.split_once('?').map_or(url, |(base, _)| base)
}
