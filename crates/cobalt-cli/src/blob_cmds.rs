//! `cobalt container` and `cobalt blob`: the Blob service, in the spirit of `az storage`,
//! through `cobalt-client`. Uploads and downloads take files and directories (blob names are
//! relative paths with `/`), move several files at once and show one progress bar of bytes.
//!
//! Owns: these commands' arguments, directory walks and what they print. Must not do: HTTP
//! (the client crate's job).

use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Subcommand;
use cobalt_client::SasPermissions;
use cobalt_client::blob::{BlobItem, ContainerClient, ContainerItem, TransferOptions};
use futures_util::{StreamExt, TryStreamExt, stream};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

use crate::connection::{Blob, Connection, Group};
use crate::errors::Scope;
use crate::output::{Out, Row, print_json, size, time_text};

/// `cobalt container …`.
#[derive(Subcommand, Debug)]
pub enum ContainerCommand {
    /// List the storage account's containers.
    ///
    /// Example: cobalt container list --prefix input
    List {
        /// Only containers whose names start with this.
        #[arg(long)]
        prefix: Option<String>,
    },
    /// Create a container.
    ///
    /// Example: cobalt container create input
    Create {
        /// The container's name (3-63 lower-case letters, digits and `-`).
        name: String,
    },
    /// Delete a container and its blobs.
    ///
    /// Example: cobalt container delete input
    Delete {
        /// The container's name.
        name: String,
    },
}

/// `cobalt blob …`.
#[derive(Subcommand, Debug)]
pub enum BlobCommand {
    /// List a container's blobs.
    ///
    /// Example: cobalt blob list input --prefix data/
    List {
        /// The container's name.
        container: String,
        /// Only blobs whose names start with this.
        #[arg(long)]
        prefix: Option<String>,
    },
    /// Upload a file, or a directory recursively (blob names are the relative paths, under
    /// --name if given).
    ///
    /// Example: cobalt blob upload input ./data --name data
    Upload {
        /// The container's name.
        container: String,
        /// A file or a directory.
        path: PathBuf,
        /// The blob's name for a file [default: its file name]; the name prefix for a
        /// directory [default: none].
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        transfer: Transfer,
    },
    /// Download a blob to a file, or every blob under a name prefix (a virtual directory)
    /// into a directory. An empty NAME ("") downloads the whole container.
    ///
    /// Example: cobalt blob download output results/ ./results
    Download {
        /// The container's name.
        container: String,
        /// A blob's name, or a prefix such as `data` or `data/` (blobs `data/…`).
        name: String,
        /// The file (or an existing directory) for one blob; the directory for a prefix.
        dest: PathBuf,
        #[command(flatten)]
        transfer: Transfer,
    },
    /// Delete a blob.
    ///
    /// Example: cobalt blob delete input data/a.txt
    Delete {
        /// The container's name.
        container: String,
        /// The blob's name.
        name: String,
    },
    /// Print a URL with a SAS token for a container or one blob (what a task's resource file
    /// or output file takes).
    ///
    /// Example: cobalt blob sas input data/a.txt --permissions r --expiry-hours 2
    Sas {
        /// The container's name.
        container: String,
        /// A blob's name [default: the whole container].
        name: Option<String>,
        /// What the token allows: letters of r(ead), a(dd), c(reate), w(rite), d(elete),
        /// l(ist).
        #[arg(long, default_value = "r")]
        permissions: String,
        /// Hours until it expires.
        #[arg(long, default_value_t = 2.0)]
        expiry_hours: f64,
    },
}

/// How files move.
#[derive(clap::Args, Debug, Clone)]
pub struct Transfer {
    /// Files moved at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    parallel: u16,
    /// Block size in MiB: larger files go up in blocks, several at a time.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=4000))]
    block_mib: u16,
}

impl Transfer {
    fn options(&self) -> TransferOptions {
        TransferOptions {
            block_size: usize::from(self.block_mib) << 20,
            concurrency: 4,
        }
    }
}

/// A container as `--output json` prints it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ContainerView {
    name: String,
    last_modified: Option<String>,
    etag: String,
}

impl From<ContainerItem> for ContainerView {
    fn from(c: ContainerItem) -> Self {
        Self {
            name: c.name,
            last_modified: c.last_modified.map(|t| t.to_rfc3339()),
            etag: c.etag,
        }
    }
}

/// A blob as `--output json` prints it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct BlobView {
    name: String,
    content_length: u64,
    content_type: Option<String>,
    content_md5: Option<String>,
    last_modified: Option<String>,
    etag: String,
}

impl From<BlobItem> for BlobView {
    fn from(b: BlobItem) -> Self {
        Self {
            name: b.name,
            content_length: b.content_length,
            content_type: b.content_type,
            content_md5: b.content_md5,
            last_modified: b.last_modified.map(|t| t.to_rfc3339()),
            etag: b.etag,
        }
    }
}

/// One file moved, as `--output json` prints it.
#[derive(Clone, Debug, Serialize)]
struct Moved {
    blob: String,
    path: PathBuf,
    size: u64,
}

/// Runs `cobalt container …`.
pub async fn container(group: Group<ContainerCommand>) -> anyhow::Result<u8> {
    let conn = Connection::new(&group.opts)?;
    let b = conn.blob()?;
    let out = conn.out;
    match group.command {
        ContainerCommand::List { prefix } => {
            let items: Vec<ContainerView> = b
                .client
                .list_containers(prefix.as_deref())
                .map_ok(ContainerView::from)
                .try_collect()
                .await
                .map_err(b.service.err(Scope::none()))?;
            out.list(&items, "containers", &["NAME", "LAST MODIFIED"], |c| {
                vec![c.name.clone(), time_text(c.last_modified.as_deref())]
            })?;
        }
        ContainerCommand::Create { name } => {
            b.client
                .container_client(&name)
                .create()
                .await
                .map_err(b.service.err(Scope::container(&name)))?;
            out.done(format_args!("container '{name}' created"))?;
        }
        ContainerCommand::Delete { name } => {
            b.client
                .container_client(&name)
                .delete()
                .await
                .map_err(b.service.err(Scope::container(&name)))?;
            out.done(format_args!("container '{name}' deleted"))?;
        }
    }
    Ok(0)
}

/// Runs `cobalt blob …`.
pub async fn blob(group: Group<BlobCommand>) -> anyhow::Result<u8> {
    let conn = Connection::new(&group.opts)?;
    let b = conn.blob()?;
    let out = conn.out;
    match group.command {
        BlobCommand::List { container, prefix } => {
            let items: Vec<BlobView> = b
                .client
                .container_client(&container)
                .list_blobs(prefix.as_deref())
                .map_ok(BlobView::from)
                .try_collect()
                .await
                .map_err(b.service.err(Scope::container(&container)))?;
            out.list(
                &items,
                "blobs",
                &["NAME", "SIZE", "LAST MODIFIED"],
                blob_row,
            )?;
        }
        BlobCommand::Upload {
            container,
            path,
            name,
            transfer,
        } => upload(&b, out, &container, &path, name.as_deref(), &transfer).await?,
        BlobCommand::Download {
            container,
            name,
            dest,
            transfer,
        } => download(&b, out, &container, &name, &dest, &transfer).await?,
        BlobCommand::Delete { container, name } => {
            b.client
                .container_client(&container)
                .blob_client(&name)
                .delete()
                .await
                .map_err(b.service.err(Scope::blob(&container, &name)))?;
            out.done(format_args!("blob '{name}' deleted"))?;
        }
        BlobCommand::Sas {
            container,
            name,
            permissions,
            expiry_hours,
        } => {
            let permissions = SasPermissions::parse(&permissions)
                .map_err(|e| anyhow::anyhow!("--permissions: {e}"))?;
            if !(expiry_hours > 0.0 && expiry_hours <= 24.0 * 366.0 * 10.0) {
                bail!("--expiry-hours must be more than 0 and at most ten years");
            }
            let expiry = chrono::Utc::now()
                + chrono::Duration::milliseconds((expiry_hours * 3_600_000.0) as i64);
            let c = b.client.container_client(&container);
            let url = match &name {
                Some(n) => c.blob_client(n).sas_url(permissions, expiry),
                None => c.sas_url(permissions, expiry),
            }
            .map_err(|e| anyhow::anyhow!("{e}"))?;
            if out.is_json() {
                print_json(&serde_json::json!({ "url": url, "expiry": expiry.to_rfc3339() }))?;
            } else {
                crate::output::write_stdout(&format!("{url}\n"))?;
            }
        }
    }
    Ok(0)
}

fn blob_row(b: &BlobView) -> Row {
    vec![
        b.name.clone(),
        size(b.content_length),
        time_text(b.last_modified.as_deref()),
    ]
}

/// One byte bar over everything, drawn on stderr while stdout is a terminal.
fn progress_bar(total: u64, files: usize) -> ProgressBar {
    let target = if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let bar = ProgressBar::with_draw_target(Some(total), target);
    if let Ok(style) = ProgressStyle::with_template(
        "{bar:30} {bytes}/{total_bytes} {binary_bytes_per_sec} {msg} eta {eta}",
    ) {
        bar.set_style(style);
    }
    bar.set_message(format!("{files} file(s)"));
    bar
}

/// Per-file progress that adds to the shared bar (the client reports totals so far, possibly
/// out of order when blocks finish together).
struct FileProgress<'a> {
    bar: &'a ProgressBar,
    seen: AtomicU64,
}

impl FileProgress<'_> {
    fn report(&self, so_far: u64) {
        let before = self.seen.fetch_max(so_far, Ordering::Relaxed);
        if so_far > before {
            self.bar.inc(so_far - before);
        }
    }
}

/// The files under `root` (itself if it is a file), with their blob names.
fn files_to_upload(root: &Path, name: Option<&str>) -> anyhow::Result<Vec<(PathBuf, String)>> {
    let meta =
        std::fs::metadata(root).with_context(|| format!("cannot read {}", root.display()))?;
    if meta.is_file() {
        let blob = match name {
            Some(n) => n.to_owned(),
            None => root
                .file_name()
                .and_then(|n| n.to_str())
                .map(str::to_owned)
                .with_context(|| {
                    format!("{} has no usable file name; give --name", root.display())
                })?,
        };
        return Ok(vec![(root.to_owned(), blob)]);
    }
    let prefix = name
        .map(|n| n.trim_end_matches('/'))
        .filter(|n| !n.is_empty());
    let mut files = Vec::new();
    for entry in walkdir::WalkDir::new(root)
        .follow_links(true)
        .sort_by_file_name()
    {
        let entry = entry.with_context(|| format!("cannot walk {}", root.display()))?;
        if !entry.file_type().is_file() {
            continue;
        }
        let relative = entry.path().strip_prefix(root).unwrap_or(entry.path());
        let mut parts = Vec::new();
        for c in relative.components() {
            match c {
                Component::Normal(p) => parts.push(p.to_str().with_context(|| {
                    format!(
                        "{} is not UTF-8: blob names must be",
                        entry.path().display()
                    )
                })?),
                _ => bail!("unexpected path {}", entry.path().display()),
            }
        }
        let mut blob = parts.join("/");
        if let Some(prefix) = prefix {
            blob = format!("{prefix}/{blob}");
        }
        files.push((entry.path().to_owned(), blob));
    }
    Ok(files)
}

async fn upload(
    b: &Blob,
    out: Out,
    container: &str,
    path: &Path,
    name: Option<&str>,
    transfer: &Transfer,
) -> anyhow::Result<()> {
    let files = files_to_upload(path, name)?;
    let mut sized = Vec::with_capacity(files.len());
    for (file, blob) in files {
        let len = std::fs::metadata(&file)
            .with_context(|| format!("cannot read {}", file.display()))?
            .len();
        sized.push((file, blob, len));
    }
    let total: u64 = sized.iter().map(|(_, _, len)| len).sum();
    let bar = progress_bar(total, sized.len());
    let started = Instant::now();
    let c = b.client.container_client(container);
    let options = transfer.options();
    let moved: Vec<Moved> = stream::iter(sized)
        .map(|(file, blob, _)| {
            let (c, bar, options) = (&c, &bar, &options);
            async move {
                let progress = FileProgress {
                    bar,
                    seen: AtomicU64::new(0),
                };
                let size = c
                    .blob_client(&blob)
                    .upload_file(&file, options, &|n| progress.report(n))
                    .await
                    .map_err(b.service.err(Scope::blob(container, &blob)))?;
                progress.report(size);
                Ok::<_, anyhow::Error>(Moved {
                    blob,
                    path: file,
                    size,
                })
            }
        })
        .buffer_unordered(usize::from(transfer.parallel))
        .try_collect()
        .await?;
    bar.finish_and_clear();
    report(out, "uploaded", "to", container, moved, started.elapsed())
}

fn report(
    out: Out,
    verb: &str,
    preposition: &str,
    container: &str,
    mut moved: Vec<Moved>,
    took: Duration,
) -> anyhow::Result<()> {
    moved.sort_by(|a, b| a.blob.cmp(&b.blob));
    if out.is_json() {
        return print_json(&moved);
    }
    let bytes: u64 = moved.iter().map(|m| m.size).sum();
    out.done(format_args!(
        "{verb} {} file(s), {}, {preposition} container '{container}' in {:.1} s",
        moved.len(),
        size(bytes),
        took.as_secs_f64()
    ))
}

/// `dest/relative`, refusing names that would leave `dest`.
fn local_path(dest: &Path, relative: &str) -> anyhow::Result<PathBuf> {
    let mut path = dest.to_owned();
    for part in relative.split('/') {
        if part.is_empty() || part == "." || part == ".." || part.contains('\0') {
            bail!("blob name part {part:?} of {relative:?} cannot be a local path");
        }
        path.push(part);
    }
    Ok(path)
}

async fn download(
    b: &Blob,
    out: Out,
    container: &str,
    name: &str,
    dest: &Path,
    transfer: &Transfer,
) -> anyhow::Result<()> {
    let c = b.client.container_client(container);
    let mut plan: Vec<(String, PathBuf, u64)> = Vec::new();
    let single = if name.is_empty() || name.ends_with('/') {
        None
    } else {
        match c.blob_client(name).properties().await {
            Ok(props) => Some(props.content_length),
            Err(e) if e.is_not_found() => None,
            Err(e) => return Err(b.service.explain(e, &Scope::blob(container, name))),
        }
    };
    if let Some(len) = single {
        let base = name.rsplit('/').next().unwrap_or(name);
        let path = if dest.is_dir() {
            local_path(dest, base)?
        } else {
            dest.to_owned()
        };
        plan.push((name.to_owned(), path, len));
    } else {
        let prefix = match name.trim_end_matches('/') {
            "" => String::new(),
            p => format!("{p}/"),
        };
        let blobs = list_under(b, &c, &prefix).await?;
        if blobs.is_empty() {
            bail!(
                "no blob named '{name}' nor any under '{prefix}' in container '{container}' (cobalt blob list {container})"
            );
        }
        for blob in blobs {
            let relative = blob.name.strip_prefix(&prefix).unwrap_or(&blob.name);
            if relative.is_empty() || relative.ends_with('/') {
                // A zero-length "directory" marker some tools create.
                continue;
            }
            plan.push((
                blob.name.clone(),
                local_path(dest, relative)?,
                blob.content_length,
            ));
        }
    }
    let total = plan.iter().map(|(_, _, len)| len).sum();
    let bar = progress_bar(total, plan.len());
    let started = Instant::now();
    let moved: Vec<Moved> = stream::iter(plan)
        .map(|(blob, path, _)| {
            let (c, bar) = (&c, &bar);
            async move {
                if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                    tokio::fs::create_dir_all(parent)
                        .await
                        .with_context(|| format!("cannot create {}", parent.display()))?;
                }
                let progress = FileProgress {
                    bar,
                    seen: AtomicU64::new(0),
                };
                let size = c
                    .blob_client(&blob)
                    .download_to_file(&path, &|n| progress.report(n))
                    .await
                    .map_err(b.service.err(Scope::blob(container, &blob)))?;
                Ok::<_, anyhow::Error>(Moved { blob, path, size })
            }
        })
        .buffer_unordered(usize::from(transfer.parallel))
        .try_collect()
        .await?;
    bar.finish_and_clear();
    report(
        out,
        "downloaded",
        "from",
        container,
        moved,
        started.elapsed(),
    )
}

async fn list_under(b: &Blob, c: &ContainerClient, prefix: &str) -> anyhow::Result<Vec<BlobItem>> {
    c.list_blobs((!prefix.is_empty()).then_some(prefix))
        .try_collect()
        .await
        .map_err(b.service.err(Scope::container(c.name())))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn blob_names_stay_inside_the_destination() {
        let dest = Path::new("/tmp/d");
        assert_eq!(local_path(dest, "a/b.txt").unwrap(), dest.join("a/b.txt"));
        assert!(local_path(dest, "../x").is_err());
        assert!(local_path(dest, "a//b").is_err());
        assert!(local_path(dest, "/abs").is_err());
    }

    #[test]
    fn directories_become_relative_names() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("sub/deeper")).unwrap();
        std::fs::write(dir.path().join("a.txt"), "a").unwrap();
        std::fs::write(dir.path().join("sub/deeper/b.bin"), "b").unwrap();
        let names: Vec<String> = files_to_upload(dir.path(), None)
            .unwrap()
            .into_iter()
            .map(|(_, n)| n)
            .collect();
        assert_eq!(names, ["a.txt", "sub/deeper/b.bin"]);
        let names: Vec<String> = files_to_upload(dir.path(), Some("data/"))
            .unwrap()
            .into_iter()
            .map(|(_, n)| n)
            .collect();
        assert_eq!(names, ["data/a.txt", "data/sub/deeper/b.bin"]);
        let one = files_to_upload(&dir.path().join("a.txt"), None).unwrap();
        assert_eq!(one[0].1, "a.txt");
    }
}
