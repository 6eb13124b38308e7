//! Resource files: downloading a run's `resourceFiles` into its working directory before the
//! command starts. Any failure is a pre-processing error described by a `FailureInfo`
//! ([`crate::codes`]): the command is then not run.

use std::fs::Permissions;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use cobalt_model::batch::{FailureInfo, ResourceFile};
use reqwest::{Client, StatusCode, Url};
use tokio::io::AsyncWriteExt;

use crate::blob;
use crate::codes::{self, user_error, with_detail, without_query};
use crate::node::safe_relative;

/// Downloads every resource file into `wd`, in order; stops at the first failure.
pub(crate) async fn download_all(
    http: &Client,
    wd: &Path,
    files: &[ResourceFile],
) -> Result<(), FailureInfo> {
    for file in files {
        download_one(http, wd, file).await?;
    }
    Ok(())
}

async fn download_one(http: &Client, wd: &Path, file: &ResourceFile) -> Result<(), FailureInfo> {
    let mode = file_mode(file)?;
    if let Some(url) = &file.http_url {
        let rel = match file.file_path.as_deref().filter(|p| !p.is_empty()) {
            Some(p) => p.to_owned(),
            None => last_segment(url),
        };
        let dest = destination(wd, &rel)?;
        fetch(http, url, &dest, &rel).await?;
        return set_mode(&dest, mode, &rel);
    }
    if let Some(container) = &file.storage_container_url {
        let names = list_container(http, container, file.blob_prefix.as_deref()).await?;
        let base = file.file_path.as_deref().unwrap_or_default();
        for name in names {
            let rel = if base.is_empty() {
                name.clone()
            } else {
                format!("{}/{name}", base.trim_end_matches('/'))
            };
            let dest = destination(wd, &rel)?;
            let url = blob::blob_url(container, &name).map_err(|m| download_error(container, m))?;
            fetch(http, url.as_str(), &dest, &rel).await?;
            set_mode(&dest, mode, &rel)?;
        }
        return Ok(());
    }
    let message = if file.auto_storage_container_name.is_some() {
        "autoStorageContainerName needs the account's linked storage, which Cobalt nodes do not have; use storageContainerUrl"
    } else {
        "the resource file has neither httpUrl nor storageContainerUrl"
    };
    Err(user_error(codes::BLOB_DOWNLOAD_MISC_ERROR, message))
}

/// `wd/{rel}`, refusing paths that are absolute or climb out of `wd`.
fn destination(wd: &Path, rel: &str) -> Result<PathBuf, FailureInfo> {
    match safe_relative(rel) {
        Some(p) if !p.as_os_str().is_empty() => Ok(wd.join(p)),
        _ => Err(with_detail(
            user_error(
                codes::RESOURCE_FILE_CREATE_FAILED,
                format!(
                    "the resource file path '{rel}' must be relative to the working directory and must not contain '..'"
                ),
            ),
            "FilePath",
            rel,
        )),
    }
}

/// The last path segment of a URL (a file name for an `httpUrl` without `filePath`).
fn last_segment(url: &str) -> String {
    Url::parse(url)
        .ok()
        .and_then(|u| {
            let segment = u.path_segments()?.next_back()?.to_owned();
            let decoded = percent_encoding::percent_decode_str(&segment)
                .decode_utf8_lossy()
                .into_owned();
            Some(decoded).filter(|s| !s.is_empty())
        })
        .unwrap_or_default()
}

fn file_mode(file: &ResourceFile) -> Result<Option<u32>, FailureInfo> {
    // Azure applies 0770 when fileMode is absent; its start task and tasks run as users of one
    // group. Here an elevated start task runs as root and non-admin tasks as `nobody`, so a
    // 0770 file copied by the start task (the tutorial's `cp -p` to the shared directory) could
    // not be read by the tasks: without fileMode the file keeps the mode it was created with
    // (0644 under the usual umask).
    let Some(text) = file.file_mode.as_deref() else {
        return Ok(None);
    };
    match u32::from_str_radix(text, 8) {
        Ok(mode) if mode <= 0o7777 => Ok(Some(mode)),
        _ => Err(with_detail(
            user_error(
                codes::RESOURCE_FILE_CREATE_FAILED,
                format!("the file mode '{text}' is not an octal mode such as 0755"),
            ),
            "FileMode",
            text,
        )),
    }
}

fn set_mode(dest: &Path, mode: Option<u32>, rel: &str) -> Result<(), FailureInfo> {
    let Some(mode) = mode else { return Ok(()) };
    std::fs::set_permissions(dest, Permissions::from_mode(mode))
        .map_err(|e| create_failed(rel, format!("cannot set the file mode: {e}")))
}

/// GETs `url` into `dest` (creating its directory), streaming.
async fn fetch(http: &Client, url: &str, dest: &Path, rel: &str) -> Result<(), FailureInfo> {
    let fail = |info: FailureInfo| {
        with_detail(
            with_detail(info, "FilePath", rel),
            "ResourceFileUrl",
            without_query(url),
        )
    };
    let mut response = http
        .get(url)
        .header("x-ms-version", blob::VERSION)
        .send()
        .await
        .map_err(|e| fail(download_error(url, e.without_url().to_string())))?;
    check_status(response.status(), url).map_err(fail)?;
    if let Some(parent) = dest.parent() {
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(|e| create_failed(rel, e.to_string()))?;
    }
    let mut out = tokio::fs::File::create(dest)
        .await
        .map_err(|e| create_failed(rel, e.to_string()))?;
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => out
                .write_all(&chunk)
                .await
                .map_err(|e| create_failed(rel, e.to_string()))?,
            Ok(None) => break,
            Err(e) => return Err(fail(download_error(url, e.without_url().to_string()))),
        }
    }
    out.flush()
        .await
        .map_err(|e| create_failed(rel, e.to_string()))
}

/// Every blob name of a container (with `prefix`), following `NextMarker`.
async fn list_container(
    http: &Client,
    container: &str,
    prefix: Option<&str>,
) -> Result<Vec<String>, FailureInfo> {
    let fail = |info: FailureInfo| with_detail(info, "ContainerUrl", without_query(container));
    let mut names = Vec::new();
    let mut marker: Option<String> = None;
    loop {
        let url = blob::list_url(container, prefix, marker.as_deref())
            .map_err(|m| fail(download_error(container, m)))?;
        let response = http
            .get(url)
            .header("x-ms-version", blob::VERSION)
            .send()
            .await
            .map_err(|e| fail(download_error(container, e.without_url().to_string())))?;
        check_status(response.status(), container).map_err(fail)?;
        let body = response
            .text()
            .await
            .map_err(|e| fail(download_error(container, e.without_url().to_string())))?;
        let page = blob::parse_list(&body).map_err(|m| {
            fail(download_error(
                container,
                format!("the container listing is not valid XML: {m}"),
            ))
        })?;
        names.extend(page.names);
        match page.next_marker {
            Some(next) => marker = Some(next),
            None => return Ok(names),
        }
    }
}

/// 2xx → Ok; 404 → `BlobNotFound`; 401/403 → `BlobAccessDenied`; else `BlobDownloadMiscError`.
fn check_status(status: StatusCode, url: &str) -> Result<(), FailureInfo> {
    let shown = without_query(url);
    let info = match status.as_u16() {
        200..=299 => return Ok(()),
        404 => user_error(
            codes::BLOB_NOT_FOUND,
            format!("the resource file {shown} does not exist (HTTP 404)"),
        ),
        401 | 403 => user_error(
            codes::BLOB_ACCESS_DENIED,
            format!(
                "access to the resource file {shown} was denied (HTTP {status}); check its SAS"
            ),
        ),
        _ => download_error(url, format!("HTTP {status}")),
    };
    Err(with_detail(
        info,
        "HttpStatusCode",
        status.as_u16().to_string(),
    ))
}

fn download_error(url: &str, cause: String) -> FailureInfo {
    user_error(
        codes::BLOB_DOWNLOAD_MISC_ERROR,
        format!(
            "the resource file {} could not be downloaded: {cause}",
            without_query(url)
        ),
    )
}

fn create_failed(rel: &str, cause: String) -> FailureInfo {
    with_detail(
        user_error(
            codes::RESOURCE_FILE_CREATE_FAILED,
            format!("the resource file '{rel}' could not be written on the node: {cause}"),
        ),
        "FilePath",
        rel,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_stay_in_the_working_directory() {
        let wd = Path::new("/n/t/wd");
        assert_eq!(destination(wd, "a/b.txt").unwrap(), wd.join("a/b.txt"));
        for bad in ["../x", "/etc/passwd", "a/../../x", "", "."] {
            let info = destination(wd, bad).unwrap_err();
            assert_eq!(
                info.code.as_deref(),
                Some(codes::RESOURCE_FILE_CREATE_FAILED),
                "{bad}"
            );
        }
    }

    #[test]
    fn file_modes_and_names() {
        let mode = |m: &str| {
            file_mode(&ResourceFile {
                file_mode: Some(m.into()),
                ..Default::default()
            })
        };
        assert_eq!(mode("0755").unwrap(), Some(0o755));
        assert_eq!(file_mode(&ResourceFile::default()).unwrap(), None);
        assert_eq!(mode("644").unwrap(), Some(0o644));
        assert!(mode("0999").is_err() && mode("rwx").is_err() && mode("77777").is_err());
        assert_eq!(last_segment("http://h/c/dir/a%20b.txt?sig=x"), "a b.txt");
        assert_eq!(last_segment("http://h/"), "");
    }

    #[test]
    fn statuses_map_to_azure_codes() {
        let code = |s: u16| {
            check_status(StatusCode::from_u16(s).unwrap(), "http://h/c/b?sig=secret")
                .err()
                .map(|i| {
                    assert!(!i.message.as_deref().unwrap_or_default().contains("secret"));
                    i.code.unwrap_or_default()
                })
        };
        assert_eq!(code(200), None);
        assert_eq!(code(404).as_deref(), Some(codes::BLOB_NOT_FOUND));
        assert_eq!(code(403).as_deref(), Some(codes::BLOB_ACCESS_DENIED));
        assert_eq!(code(401).as_deref(), Some(codes::BLOB_ACCESS_DENIED));
        assert_eq!(code(500).as_deref(), Some(codes::BLOB_DOWNLOAD_MISC_ERROR));
    }
}
