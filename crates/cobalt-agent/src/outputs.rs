//! Output files: after the process exits, expanding each `filePattern` whose upload condition
//! holds and uploading the matches with Put Blob. Every upload is logged to
//! `{task dir}/fileuploadout.txt`, every failure to `fileuploaderr.txt`.
//!
//! Patterns are relative to the working directory and may climb to the task directory
//! (`../stdout.txt`), never above it: the agent may run as root while the task did not, so a
//! pattern (or a symbolic link a task made) must not reach files the task could not read.

use std::path::{Path, PathBuf};

use cobalt_model::batch::{FailureInfo, OutputFile, UploadCondition};
use globset::{GlobBuilder, GlobMatcher};
use reqwest::Client;
use reqwest::header::CONTENT_LENGTH;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::io::ReaderStream;

use crate::blob;
use crate::codes::{self, user_error, with_detail, without_query};

/// A file pattern split into the directory to search and what to match under it.
#[derive(Debug, PartialEq)]
pub(crate) struct Pattern {
    /// The literal leading directories (or, without a wildcard, the file), relative to the
    /// task directory.
    pub base: PathBuf,
    /// The rest, from the first segment with a wildcard (`*`, `?`, `[`); None for a single
    /// file.
    pub glob: Option<String>,
}

/// Splits `pattern` (relative to `wd/`, or absolute inside `task_dir`) into a base relative to
/// the task directory and a glob. Errors when it leaves the task directory.
pub(crate) fn split_pattern(pattern: &str, task_dir: &Path) -> Result<Pattern, String> {
    if pattern.trim().is_empty() {
        return Err("the file pattern is empty".into());
    }
    let segments: Vec<&str> = pattern.split('/').collect();
    let first_glob = segments.iter().position(|s| s.contains(['*', '?', '[']));
    let literal = &segments[..first_glob.unwrap_or(segments.len())];
    let absolute = pattern.starts_with('/');
    let mut stack: Vec<&str> = if absolute {
        Vec::new()
    } else {
        vec![cobalt_proto::layout::WD]
    };
    for segment in literal {
        match *segment {
            "" | "." => {}
            ".." => {
                if stack.pop().is_none() {
                    return Err(format!("the pattern '{pattern}' leaves the task directory"));
                }
            }
            s => stack.push(s),
        }
    }
    if absolute {
        let task = task_dir.to_str().ok_or("the task directory is not UTF-8")?;
        let task: Vec<&str> = task.split('/').filter(|s| !s.is_empty()).collect();
        if !stack.starts_with(&task) {
            return Err(format!(
                "the pattern '{pattern}' is outside the task directory"
            ));
        }
        stack.drain(..task.len());
    }
    let base: PathBuf = stack.iter().collect();
    let glob = first_glob.map(|i| segments[i..].join("/").trim_end_matches('/').to_owned());
    if glob.is_none() && base.as_os_str().is_empty() {
        return Err(format!("the pattern '{pattern}' names no file"));
    }
    Ok(Pattern { base, glob })
}

/// The blob a match goes to: with a wildcard, `path` is a virtual directory and the match keeps
/// its path relative to the pattern's base; without one, `path` is the blob name (default:
/// the file's name).
pub(crate) fn blob_name(path: Option<&str>, wildcard: bool, rel: &str) -> String {
    let path = path.map(|p| p.trim_matches('/')).filter(|p| !p.is_empty());
    match (path, wildcard) {
        (Some(dir), true) => format!("{dir}/{rel}"),
        (Some(name), false) => name.to_owned(),
        (None, true) => rel.to_owned(),
        (None, false) => rel.rsplit('/').next().unwrap_or(rel).to_owned(),
    }
}

/// Whether an output file is uploaded after a run that `succeeded` (exit code 0, no failure).
pub(crate) fn wanted(condition: UploadCondition, succeeded: bool) -> bool {
    match condition {
        UploadCondition::TaskSuccess => succeeded,
        UploadCondition::TaskFailure => !succeeded,
        UploadCondition::TaskCompletion => true,
    }
}

/// Uploads every wanted output file. All are attempted; the first failure is reported.
pub(crate) async fn upload_all(
    http: &Client,
    task_dir: &Path,
    outputs: &[OutputFile],
    succeeded: bool,
) -> Result<(), FailureInfo> {
    let mut log = UploadLog::new(task_dir);
    let mut first_error: Option<FailureInfo> = None;
    for output in outputs {
        if !wanted(output.upload_options.upload_condition, succeeded) {
            continue;
        }
        if let Err(info) = upload_output(http, task_dir, output, &mut log).await {
            log.error(info.message.as_deref().unwrap_or_default()).await;
            first_error.get_or_insert(info);
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// One `OutputFile`: expand, then upload each match.
async fn upload_output(
    http: &Client,
    task_dir: &Path,
    output: &OutputFile,
    log: &mut UploadLog,
) -> Result<(), FailureInfo> {
    let pattern = &output.file_pattern;
    let fail = |message: String| {
        with_detail(
            user_error(codes::FILE_UPLOAD_MISC_ERROR, message),
            "FilePattern",
            pattern,
        )
    };
    let Some(container) = &output.destination.container else {
        return Err(fail(format!(
            "the output file '{pattern}' has no container destination"
        )));
    };
    let split = split_pattern(pattern, task_dir).map_err(fail)?;
    let wildcard = split.glob.is_some();
    let matches = {
        let task_dir = task_dir.to_owned();
        tokio::task::spawn_blocking(move || expand(&task_dir, &split))
            .await
            .map_err(|e| fail(e.to_string()))?
            .map_err(fail)?
    };
    if matches.is_empty() {
        log.out(&format!("no file matches '{pattern}'")).await;
    }
    let mut first_error = None;
    for (file, rel) in matches {
        let name = blob_name(container.path.as_deref(), wildcard, &rel);
        let shown = format!(
            "{}/{name}",
            without_query(&container.container_url).trim_end_matches('/')
        );
        let result = match blob::blob_url(&container.container_url, &name) {
            Ok(url) => put_blob(http, url, &file).await,
            Err(m) => Err(m),
        };
        match result {
            Ok(bytes) => {
                log.out(&format!(
                    "uploaded {} to {shown} ({bytes} bytes)",
                    file.display()
                ))
                .await
            }
            Err(cause) => {
                let message = format!("uploading {} to {shown} failed: {cause}", file.display());
                log.error(&message).await;
                let info = with_detail(
                    with_detail(fail(message), "FilePath", rel),
                    "BlobUrl",
                    shown,
                );
                first_error.get_or_insert(info);
            }
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// The files a pattern matches, with their paths relative to the pattern's base ('/'-separated),
/// sorted. A single-file pattern that names no file is an error; a wildcard that matches
/// nothing is not.
fn expand(task_dir: &Path, pattern: &Pattern) -> Result<Vec<(PathBuf, String)>, String> {
    let root = task_dir
        .canonicalize()
        .map_err(|e| format!("the task directory is unreadable: {e}"))?;
    let base = task_dir.join(&pattern.base);
    let Some(glob) = &pattern.glob else {
        let file = inside(&root, &base)
            .ok_or_else(|| format!("{} does not exist or is not a file", base.display()))?;
        let name = file_name(&base);
        return Ok(vec![(file, name)]);
    };
    let matcher = compile(glob)?;
    let mut walk = walkdir::WalkDir::new(&base)
        .min_depth(1)
        .sort_by_file_name();
    if !glob.contains("**") {
        walk = walk.max_depth(glob.split('/').count());
    }
    let mut out = Vec::new();
    for entry in walk.into_iter().filter_map(Result::ok) {
        if entry.file_type().is_dir() {
            continue;
        }
        let Ok(rel) = entry.path().strip_prefix(&base) else {
            continue;
        };
        let rel = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy())
            .collect::<Vec<_>>()
            .join("/");
        if matcher.is_match(&rel)
            && let Some(file) = inside(&root, entry.path())
        {
            out.push((file, rel));
        }
    }
    Ok(out)
}

fn compile(glob: &str) -> Result<GlobMatcher, String> {
    GlobBuilder::new(glob)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .map(|g| g.compile_matcher())
        .map_err(|e| format!("bad file pattern: {e}"))
}

/// `path` resolved (following links) if it is a regular file inside `root`.
fn inside(root: &Path, path: &Path) -> Option<PathBuf> {
    let real = path.canonicalize().ok()?;
    (real.starts_with(root) && real.is_file()).then_some(real)
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Put Blob of one file, streamed with its length as of now. Returns the bytes sent.
async fn put_blob(http: &Client, url: reqwest::Url, file: &Path) -> Result<u64, String> {
    let handle = tokio::fs::File::open(file)
        .await
        .map_err(|e| e.to_string())?;
    let len = handle.metadata().await.map_err(|e| e.to_string())?.len();
    let body = reqwest::Body::wrap_stream(ReaderStream::new(handle.take(len)));
    let response = http
        .put(url)
        .header("x-ms-blob-type", "BlockBlob")
        .header("x-ms-version", blob::VERSION)
        .header(CONTENT_LENGTH, len)
        .body(body)
        .send()
        .await
        .map_err(|e| e.without_url().to_string())?;
    let status = response.status();
    if status.is_success() {
        return Ok(len);
    }
    let code = response
        .headers()
        .get("x-ms-error-code")
        .and_then(|v| v.to_str().ok())
        .map(|c| format!(" {c}"))
        .unwrap_or_default();
    Err(format!("HTTP {status}{code}"))
}

/// The upload logs of a task directory, opened on first use.
struct UploadLog {
    dir: PathBuf,
    out: Option<tokio::fs::File>,
    err: Option<tokio::fs::File>,
}

impl UploadLog {
    fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_owned(),
            out: None,
            err: None,
        }
    }

    async fn out(&mut self, line: &str) {
        let path = self.dir.join("fileuploadout.txt");
        Self::append(&mut self.out, &path, line).await;
    }

    async fn error(&mut self, line: &str) {
        let path = self.dir.join("fileuploaderr.txt");
        Self::append(&mut self.err, &path, line).await;
    }

    async fn append(file: &mut Option<tokio::fs::File>, path: &Path, line: &str) {
        if file.is_none() {
            let opened = tokio::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .await;
            match opened {
                Ok(f) => *file = Some(f),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "cannot open upload log")
                }
            }
        }
        if let Some(f) = file {
            let text = format!("{} {line}\n", cobalt_model::batch::Timestamp::now());
            if let Err(e) = f.write_all(text.as_bytes()).await {
                tracing::warn!(path = %path.display(), error = %e, "cannot write upload log");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_split_into_base_and_glob() {
        let task = Path::new("/n/workitems/j/job-1/t");
        let check = |pattern: &str, base: &str, glob: Option<&str>| {
            let got = split_pattern(pattern, task).unwrap();
            assert_eq!(
                got,
                Pattern {
                    base: PathBuf::from(base),
                    glob: glob.map(str::to_owned)
                },
                "{pattern}"
            );
        };
        check("out.txt", "wd/out.txt", None);
        check("./a/b.txt", "wd/a/b.txt", None);
        check("../stdout.txt", "stdout.txt", None);
        check("../std*.txt", "", Some("std*.txt"));
        check("**/*.txt", "wd", Some("**/*.txt"));
        check("out/**", "wd/out", Some("**"));
        check("a/../b/?.log", "wd/b", Some("?.log"));
        check("d/[ab].txt", "wd/d", Some("[ab].txt"));
        check("dir/**/", "wd/dir", Some("**"));
        check("/n/workitems/j/job-1/t/wd/x.txt", "wd/x.txt", None);
        check("/n/workitems/j/job-1/t/*.txt", "", Some("*.txt"));
        for bad in [
            "../../x",
            "../..",
            "/etc/passwd",
            "/n/workitems/j/job-1/other/x",
            "/n/workitems/j/job-1/t/../u/x",
            "..",
            "",
            "/n/workitems",
        ] {
            assert!(split_pattern(bad, task).is_err(), "{bad}");
        }
    }

    #[test]
    fn blob_names() {
        assert_eq!(blob_name(None, false, "stdout.txt"), "stdout.txt");
        assert_eq!(
            blob_name(Some("logs/out.txt"), false, "stdout.txt"),
            "logs/out.txt"
        );
        assert_eq!(blob_name(Some("res/"), true, "a/b.txt"), "res/a/b.txt");
        assert_eq!(blob_name(Some(""), true, "a/b.txt"), "a/b.txt");
        assert_eq!(blob_name(None, true, "b.txt"), "b.txt");
    }

    #[test]
    fn upload_conditions() {
        use UploadCondition::*;
        assert!(wanted(TaskSuccess, true) && !wanted(TaskSuccess, false));
        assert!(wanted(TaskFailure, false) && !wanted(TaskFailure, true));
        assert!(wanted(TaskCompletion, true) && wanted(TaskCompletion, false));
    }

    #[test]
    fn expansion_follows_globs_and_stays_inside() {
        let dir = tempfile::tempdir().unwrap();
        let task = dir.path().join("t");
        std::fs::create_dir_all(task.join("wd/a/b")).unwrap();
        for f in [
            "stdout.txt",
            "stderr.txt",
            "wd/x.txt",
            "wd/a/y.txt",
            "wd/a/b/z.txt",
            "wd/a/n.bin",
        ] {
            std::fs::write(task.join(f), f).unwrap();
        }
        std::fs::write(dir.path().join("secret.txt"), "s").unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret.txt"), task.join("wd/leak.txt"))
            .unwrap();
        std::os::unix::fs::symlink(task.join("wd/x.txt"), task.join("wd/a/ok.txt")).unwrap();
        let names = |pattern: &str| -> Vec<String> {
            let p = split_pattern(pattern, &task).unwrap();
            expand(&task, &p)
                .unwrap()
                .into_iter()
                .map(|(_, rel)| rel)
                .collect()
        };
        assert_eq!(
            names("**/*.txt"),
            ["a/b/z.txt", "a/ok.txt", "a/y.txt", "x.txt"]
        );
        assert_eq!(names("*.txt"), ["x.txt"]);
        assert_eq!(names("a/*"), ["n.bin", "ok.txt", "y.txt"]);
        assert_eq!(names("../std*.txt"), ["stderr.txt", "stdout.txt"]);
        assert_eq!(names("../stdout.txt"), ["stdout.txt"]);
        assert_eq!(names("nothing/*.txt"), Vec::<String>::new());
        let missing = split_pattern("missing.txt", &task).unwrap();
        assert!(expand(&task, &missing).is_err());
        let leak = split_pattern("leak.txt", &task).unwrap();
        assert!(expand(&task, &leak).is_err());
    }
}
