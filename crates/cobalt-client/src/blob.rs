//! The Blob service: containers and block blobs, with SharedKey, SAS or anonymous access.
//!
//! ```no_run
//! # async fn demo() -> cobalt_client::Result<()> {
//! use cobalt_client::blob::BlobServiceClient;
//!
//! let service = BlobServiceClient::from_connection_string("UseDevelopmentStorage=true")?;
//! let container = service.container_client("input");
//! container.create_if_not_exists().await?;
//! container.blob_client("hello.txt").upload("hello".into()).await?;
//! # Ok(()) }
//! ```

use std::path::Path;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use cobalt_md5::{Digest, Md5};
use futures_util::stream::{self, BoxStream, StreamExt, TryStreamExt};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, Request, Response, Url};
use serde::Deserialize;
use tokio::io::AsyncWriteExt;

use crate::auth::{QUERY_VALUE, SasPermissions, SharedKeyCredential};
use crate::error::{Error, Result, ServiceError};
use crate::pipeline::{ClientOptions, Pipeline, paged};

/// The `x-ms-version` this client speaks.
pub const BLOB_VERSION: &str = "2024-11-04";

/// The storage emulator's endpoint for the development account.
pub const DEV_BLOB_ENDPOINT: &str = "http://127.0.0.1:10000/devstoreaccount1";

/// What stays literal in a blob name put in a URL path (`/` separates virtual directories).
const BLOB_NAME: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/');

/// How requests are authorized.
#[derive(Clone, Debug)]
enum Auth {
    SharedKey(SharedKeyCredential),
    /// A SAS token (without `?`), appended to every request's query.
    Sas(String),
    Anonymous,
}

#[derive(Debug)]
struct Inner {
    pipeline: Pipeline,
    /// The account's URL without a trailing `/`: `http://127.0.0.1:10000/devstoreaccount1` or
    /// `https://acct.blob.core.windows.net`.
    endpoint: Url,
    account: String,
    auth: Auth,
}

/// A client for one storage account's Blob service.
#[derive(Clone, Debug)]
pub struct BlobServiceClient {
    inner: Arc<Inner>,
}

/// A client for one container.
#[derive(Clone, Debug)]
pub struct ContainerClient {
    inner: Arc<Inner>,
    name: String,
}

/// A client for one block blob.
#[derive(Clone, Debug)]
pub struct BlobClient {
    inner: Arc<Inner>,
    container: String,
    name: String,
}

/// A container, as listed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerItem {
    /// Its name.
    pub name: String,
    /// Last change of its properties or metadata.
    pub last_modified: Option<DateTime<Utc>>,
    /// Its ETag.
    pub etag: String,
}

/// A blob, as listed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlobItem {
    /// Its name (with any `/`-separated virtual directories).
    pub name: String,
    /// Its size in bytes.
    pub content_length: u64,
    /// Its content type.
    pub content_type: Option<String>,
    /// The MD5 of its content, base64, when the service knows it.
    pub content_md5: Option<String>,
    /// Last write.
    pub last_modified: Option<DateTime<Utc>>,
    /// Its ETag.
    pub etag: String,
}

/// A blob's properties.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlobProperties {
    /// Its size in bytes.
    pub content_length: u64,
    /// Its content type.
    pub content_type: Option<String>,
    /// The MD5 of its content, base64, when the service knows it.
    pub content_md5: Option<String>,
    /// Last write.
    pub last_modified: Option<DateTime<Utc>>,
    /// Its ETag.
    pub etag: String,
}

/// How files move: block size and parallelism.
#[derive(Clone, Debug)]
pub struct TransferOptions {
    /// Files up to this size go up in one Put Blob; larger ones in blocks of this size.
    pub block_size: usize,
    /// Blocks in flight at once.
    pub concurrency: usize,
}

impl Default for TransferOptions {
    /// 8 MiB blocks, 4 at a time.
    fn default() -> Self {
        Self {
            block_size: 8 << 20,
            concurrency: 4,
        }
    }
}

/// Reports bytes moved so far; called from several tasks at once, so it must be cheap.
pub type Progress<'a> = &'a (dyn Fn(u64) + Send + Sync);

impl BlobServiceClient {
    /// A client for the account at `endpoint` (e.g. `http://127.0.0.1:10000/devstoreaccount1`
    /// or `https://acct.blob.core.windows.net`), signing with `credential`.
    pub fn new(endpoint: &str, credential: SharedKeyCredential) -> Result<Self> {
        let account = credential.account().to_owned();
        Self::build(
            endpoint,
            account,
            Auth::SharedKey(credential),
            &ClientOptions::default(),
        )
    }

    /// As [`new`](Self::new), with options.
    pub fn with_options(
        endpoint: &str,
        credential: SharedKeyCredential,
        options: &ClientOptions,
    ) -> Result<Self> {
        let account = credential.account().to_owned();
        Self::build(endpoint, account, Auth::SharedKey(credential), options)
    }

    /// A client that authorizes every request with the SAS `token` (with or without `?`).
    pub fn with_sas(endpoint: &str, token: &str) -> Result<Self> {
        let account = account_of(&parse_endpoint(endpoint)?)?;
        let token = token.trim_start_matches('?').to_owned();
        Self::build(
            endpoint,
            account,
            Auth::Sas(token),
            &ClientOptions::default(),
        )
    }

    /// A client without credentials, for containers whose ACL allows public reads.
    pub fn anonymous(endpoint: &str) -> Result<Self> {
        let account = account_of(&parse_endpoint(endpoint)?)?;
        Self::build(
            endpoint,
            account,
            Auth::Anonymous,
            &ClientOptions::default(),
        )
    }

    /// A client from an Azure Storage connection string: `UseDevelopmentStorage=true`, or
    /// `AccountName`/`AccountKey` with `BlobEndpoint` or `DefaultEndpointsProtocol` +
    /// `EndpointSuffix`, or `BlobEndpoint` + `SharedAccessSignature`.
    pub fn from_connection_string(connection_string: &str) -> Result<Self> {
        let cs = ConnectionString::parse(connection_string)?;
        match (&cs.account_key, &cs.sas) {
            (Some(key), _) => Self::new(
                &cs.blob_endpoint,
                SharedKeyCredential::new(&cs.account_name, key)?,
            ),
            (None, Some(sas)) => Self::with_sas(&cs.blob_endpoint, sas),
            (None, None) => Self::anonymous(&cs.blob_endpoint),
        }
    }

    fn build(endpoint: &str, account: String, auth: Auth, options: &ClientOptions) -> Result<Self> {
        Ok(Self {
            inner: Arc::new(Inner {
                pipeline: Pipeline::new(options)?,
                endpoint: parse_endpoint(endpoint)?,
                account,
                auth,
            }),
        })
    }

    /// The account name.
    pub fn account(&self) -> &str {
        &self.inner.account
    }

    /// The account's URL.
    pub fn url(&self) -> &Url {
        &self.inner.endpoint
    }

    /// A client for container `name` (nothing is sent).
    pub fn container_client(&self, name: &str) -> ContainerClient {
        ContainerClient {
            inner: self.inner.clone(),
            name: name.to_owned(),
        }
    }

    /// The account's containers whose names start with `prefix`, page by page as needed.
    pub fn list_containers(
        &self,
        prefix: Option<&str>,
    ) -> BoxStream<'static, Result<ContainerItem>> {
        let query = vec![("comp", "list".to_owned())];
        self.inner.clone().list(None, query, prefix, |page| {
            page.containers
                .map(|c| c.items)
                .unwrap_or_default()
                .into_iter()
                .map(|c| ContainerItem {
                    name: c.name,
                    last_modified: c.properties.last_modified.as_deref().and_then(http_date),
                    etag: c.properties.etag.unwrap_or_default(),
                })
                .collect()
        })
    }
}

impl ContainerClient {
    /// A client for the container at `url`, authorized by the SAS in its query (if any).
    pub fn from_sas_url(url: &str) -> Result<Self> {
        let parsed = Url::parse(url).map_err(|e| Error::invalid(format!("{url}: {e}")))?;
        let token = parsed.query().unwrap_or_default().to_owned();
        let mut segments: Vec<String> = parsed
            .path_segments()
            .map(|s| s.filter(|s| !s.is_empty()).map(decode).collect())
            .unwrap_or_default();
        let Some(container) = segments.pop() else {
            return Err(Error::invalid(format!("{url} names no container")));
        };
        let mut endpoint = parsed.clone();
        endpoint.set_query(None);
        endpoint.set_path(&segments.join("/"));
        let service = if token.is_empty() {
            BlobServiceClient::anonymous(endpoint.as_str())?
        } else {
            BlobServiceClient::with_sas(endpoint.as_str(), &token)?
        };
        Ok(service.container_client(&container))
    }

    /// The container's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The container's URL (without any SAS).
    pub fn url(&self) -> Url {
        self.inner.url(Some(&self.name), None)
    }

    /// A client for blob `name` in this container (nothing is sent).
    pub fn blob_client(&self, name: &str) -> BlobClient {
        BlobClient {
            inner: self.inner.clone(),
            container: self.name.clone(),
            name: name.to_owned(),
        }
    }

    fn container_query(extra: &[(&'static str, String)]) -> Vec<(&'static str, String)> {
        let mut query = vec![("restype", "container".to_owned())];
        query.extend_from_slice(extra);
        query
    }

    async fn send(&self, method: Method, query: &[(&'static str, String)]) -> Result<Response> {
        self.inner
            .send(
                method,
                Some(&self.name),
                None,
                &Self::container_query(query),
                HeaderMap::new(),
                Bytes::new(),
            )
            .await
    }

    /// Creates the container (409 `ContainerAlreadyExists` if it exists).
    pub async fn create(&self) -> Result<()> {
        self.send(Method::PUT, &[]).await.map(drop)
    }

    /// Creates the container unless it exists; says whether it created it.
    pub async fn create_if_not_exists(&self) -> Result<bool> {
        match self.create().await {
            Ok(()) => Ok(true),
            Err(e) if e.code() == Some("ContainerAlreadyExists") => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Deletes the container and its blobs.
    pub async fn delete(&self) -> Result<()> {
        self.send(Method::DELETE, &[]).await.map(drop)
    }

    /// Deletes the container if it exists; says whether it did.
    pub async fn delete_if_exists(&self) -> Result<bool> {
        match self.delete().await {
            Ok(()) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Whether the container exists.
    pub async fn exists(&self) -> Result<bool> {
        match self.send(Method::GET, &[]).await {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The container's blobs whose names start with `prefix`, in name order, page by page as
    /// needed.
    pub fn list_blobs(&self, prefix: Option<&str>) -> BoxStream<'static, Result<BlobItem>> {
        let query = Self::container_query(&[("comp", "list".to_owned())]);
        let container = Some(self.name.clone());
        self.inner.clone().list(container, query, prefix, |page| {
            page.blobs
                .map(|b| b.items)
                .unwrap_or_default()
                .into_iter()
                .map(|b| BlobItem {
                    name: b.name,
                    content_length: b.properties.content_length.unwrap_or(0),
                    content_type: b.properties.content_type.filter(|t| !t.is_empty()),
                    content_md5: b.properties.content_md5.filter(|m| !m.is_empty()),
                    last_modified: b.properties.last_modified.as_deref().and_then(http_date),
                    etag: b.properties.etag.unwrap_or_default(),
                })
                .collect()
        })
    }

    /// A SAS token (without `?`) for this container, signed with the account key.
    pub fn generate_sas(
        &self,
        permissions: SasPermissions,
        expiry: DateTime<Utc>,
    ) -> Result<String> {
        Ok(self
            .inner
            .credential()?
            .service_sas(&self.name, None, permissions, None, expiry))
    }

    /// The container's URL with a fresh SAS token.
    pub fn sas_url(&self, permissions: SasPermissions, expiry: DateTime<Utc>) -> Result<String> {
        Ok(format!(
            "{}?{}",
            self.url(),
            self.generate_sas(permissions, expiry)?
        ))
    }
}

impl BlobClient {
    /// The blob's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The blob's URL (without any SAS).
    pub fn url(&self) -> Url {
        self.inner.url(Some(&self.container), Some(&self.name))
    }

    async fn send(
        &self,
        method: Method,
        query: &[(&'static str, String)],
        headers: HeaderMap,
        body: Bytes,
    ) -> Result<Response> {
        self.inner
            .send(
                method,
                Some(&self.container),
                Some(&self.name),
                query,
                headers,
                body,
            )
            .await
    }

    /// Uploads `data` as the blob's whole content (Put Blob), replacing any previous content.
    pub async fn upload(&self, data: Bytes) -> Result<()> {
        let mut headers = HeaderMap::new();
        headers.insert("x-ms-blob-type", HeaderValue::from_static("BlockBlob"));
        headers.insert(
            "x-ms-blob-content-type",
            HeaderValue::from_static("application/octet-stream"),
        );
        insert(&mut headers, "content-md5", &md5_base64(&data))?;
        self.send(Method::PUT, &[], headers, data).await.map(drop)
    }

    /// Uploads the file at `path`: one Put Blob if it fits in a block, else blocks in
    /// parallel and a Put Block List, so the blob appears whole or not at all. `progress`
    /// hears the bytes sent so far.
    pub async fn upload_file(
        &self,
        path: &Path,
        options: &TransferOptions,
        progress: Progress<'_>,
    ) -> Result<u64> {
        let len = tokio::fs::metadata(path)
            .await
            .map_err(|e| Error::io(path, e))?
            .len();
        let block = options.block_size.max(1);
        if len <= block as u64 {
            let data = tokio::fs::read(path)
                .await
                .map_err(|e| Error::io(path, e))?;
            self.upload(Bytes::from(data)).await?;
            progress(len);
            return Ok(len);
        }
        let count = len.div_ceil(block as u64);
        let sent = std::sync::atomic::AtomicU64::new(0);
        let ids: Vec<String> = (0..count).map(block_id).collect();
        stream::iter(0..count)
            .map(|i| {
                let id = &ids[usize::try_from(i).unwrap_or(usize::MAX).min(ids.len() - 1)];
                let sent = &sent;
                async move {
                    let offset = i * block as u64;
                    let size = (len - offset).min(block as u64);
                    let data = read_at(path, offset, size).await?;
                    self.put_block(id, data).await?;
                    progress(sent.fetch_add(size, std::sync::atomic::Ordering::Relaxed) + size);
                    Ok::<_, Error>(())
                }
            })
            .buffer_unordered(options.concurrency.max(1))
            .try_collect::<Vec<()>>()
            .await?;
        self.put_block_list(&ids).await?;
        Ok(len)
    }

    /// Stages one block (Put Block).
    pub async fn put_block(&self, id: &str, data: Bytes) -> Result<()> {
        let mut headers = HeaderMap::new();
        insert(&mut headers, "content-md5", &md5_base64(&data))?;
        let query = [("comp", "block".to_owned()), ("blockid", id.to_owned())];
        self.send(Method::PUT, &query, headers, data)
            .await
            .map(drop)
    }

    /// Commits the blob from staged blocks, in order (Put Block List, all `Latest`).
    pub async fn put_block_list(&self, ids: &[String]) -> Result<()> {
        let mut xml = String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?><BlockList>");
        for id in ids {
            xml.push_str("<Latest>");
            xml.push_str(id);
            xml.push_str("</Latest>");
        }
        xml.push_str("</BlockList>");
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("application/xml"));
        headers.insert(
            "x-ms-blob-content-type",
            HeaderValue::from_static("application/octet-stream"),
        );
        let query = [("comp", "blocklist".to_owned())];
        self.send(Method::PUT, &query, headers, Bytes::from(xml))
            .await
            .map(drop)
    }

    /// The blob's whole content.
    pub async fn download(&self) -> Result<Bytes> {
        let response = self
            .send(Method::GET, &[], HeaderMap::new(), Bytes::new())
            .await?;
        let url = response.url().clone();
        response
            .bytes()
            .await
            .map_err(|e| Error::transport(&url, e))
    }

    /// `len` bytes from `offset` (fewer at the end of the blob).
    pub async fn download_range(&self, offset: u64, len: u64) -> Result<Bytes> {
        if len == 0 {
            return Ok(Bytes::new());
        }
        let mut headers = HeaderMap::new();
        insert(
            &mut headers,
            "x-ms-range",
            &format!("bytes={offset}-{}", offset + len - 1),
        )?;
        let response = self.send(Method::GET, &[], headers, Bytes::new()).await?;
        let url = response.url().clone();
        response
            .bytes()
            .await
            .map_err(|e| Error::transport(&url, e))
    }

    /// Streams the blob into the file at `path` (written as `path.part`, renamed when
    /// complete, so a broken download never looks finished). `progress` hears the bytes
    /// received so far. Returns the size.
    pub async fn download_to_file(&self, path: &Path, progress: Progress<'_>) -> Result<u64> {
        let mut response = self
            .send(Method::GET, &[], HeaderMap::new(), Bytes::new())
            .await?;
        let url = response.url().clone();
        let part = path.with_extension(match path.extension() {
            Some(ext) => format!("{}.part", ext.to_string_lossy()),
            None => "part".to_owned(),
        });
        let mut file = tokio::fs::File::create(&part)
            .await
            .map_err(|e| Error::io(&part, e))?;
        let mut received = 0u64;
        let result = async {
            while let Some(chunk) = response
                .chunk()
                .await
                .map_err(|e| Error::transport(&url, e))?
            {
                file.write_all(&chunk)
                    .await
                    .map_err(|e| Error::io(&part, e))?;
                received += chunk.len() as u64;
                progress(received);
            }
            file.flush().await.map_err(|e| Error::io(&part, e))?;
            tokio::fs::rename(&part, path)
                .await
                .map_err(|e| Error::io(path, e))
        }
        .await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&part).await;
        }
        result.map(|()| received)
    }

    /// The blob's properties (a HEAD request).
    pub async fn properties(&self) -> Result<BlobProperties> {
        let response = self
            .send(Method::HEAD, &[], HeaderMap::new(), Bytes::new())
            .await?;
        let h = response.headers();
        let text = |name: &str| h.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        Ok(BlobProperties {
            content_length: text("content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
            content_type: text("content-type"),
            content_md5: text("content-md5"),
            last_modified: text("last-modified").as_deref().and_then(http_date),
            etag: text("etag").unwrap_or_default(),
        })
    }

    /// Whether the blob exists.
    pub async fn exists(&self) -> Result<bool> {
        match self.properties().await {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Deletes the blob.
    pub async fn delete(&self) -> Result<()> {
        self.send(Method::DELETE, &[], HeaderMap::new(), Bytes::new())
            .await
            .map(drop)
    }

    /// A SAS token (without `?`) for this blob, signed with the account key.
    pub fn generate_sas(
        &self,
        permissions: SasPermissions,
        expiry: DateTime<Utc>,
    ) -> Result<String> {
        Ok(self.inner.credential()?.service_sas(
            &self.container,
            Some(&self.name),
            permissions,
            None,
            expiry,
        ))
    }

    /// The blob's URL with a fresh SAS token: what a Batch resource file's `httpUrl` takes.
    pub fn sas_url(&self, permissions: SasPermissions, expiry: DateTime<Utc>) -> Result<String> {
        Ok(format!(
            "{}?{}",
            self.url(),
            self.generate_sas(permissions, expiry)?
        ))
    }
}

impl Inner {
    fn credential(&self) -> Result<&SharedKeyCredential> {
        match &self.auth {
            Auth::SharedKey(c) => Ok(c),
            _ => Err(Error::invalid(
                "making a SAS needs the account key (this client has a SAS or no credential)",
            )),
        }
    }

    /// `endpoint/container/blob`, blob name percent-encoded except its `/`.
    fn url(&self, container: Option<&str>, blob: Option<&str>) -> Url {
        let mut path = self.endpoint.path().trim_end_matches('/').to_owned();
        if let Some(container) = container {
            path.push('/');
            path.extend(utf8_percent_encode(container, BLOB_NAME));
            if let Some(blob) = blob {
                path.push('/');
                path.extend(utf8_percent_encode(blob, BLOB_NAME));
            }
        }
        let mut url = self.endpoint.clone();
        url.set_path(&path);
        url
    }

    fn build(
        &self,
        method: &Method,
        url: &Url,
        headers: &HeaderMap,
        body: &Bytes,
    ) -> Result<Request> {
        let mut request = Request::new(method.clone(), url.clone());
        *request.headers_mut() = headers.clone();
        let h = request.headers_mut();
        h.insert("x-ms-version", HeaderValue::from_static(BLOB_VERSION));
        insert(
            h,
            "x-ms-date",
            &httpdate::fmt_http_date(std::time::SystemTime::now()),
        )?;
        insert(
            h,
            "x-ms-client-request-id",
            &uuid::Uuid::new_v4().to_string(),
        )?;
        if !matches!(*method, Method::GET | Method::HEAD) {
            insert(h, "content-length", &body.len().to_string())?;
        }
        if !body.is_empty() {
            *request.body_mut() = Some(body.clone().into());
        }
        if let Auth::SharedKey(credential) = &self.auth {
            credential.sign_blob(&mut request)?;
        }
        Ok(request)
    }

    /// Sends one operation and turns an error status into [`Error::Service`].
    async fn send(
        &self,
        method: Method,
        container: Option<&str>,
        blob: Option<&str>,
        query: &[(&str, String)],
        headers: HeaderMap,
        body: Bytes,
    ) -> Result<Response> {
        let mut url = self.url(container, blob);
        let mut q = String::new();
        for (name, value) in query {
            if !q.is_empty() {
                q.push('&');
            }
            q.push_str(name);
            q.push('=');
            q.extend(utf8_percent_encode(value, QUERY_VALUE));
        }
        if let Auth::Sas(token) = &self.auth
            && !token.is_empty()
        {
            if !q.is_empty() {
                q.push('&');
            }
            q.push_str(token);
        }
        if container.is_none() && blob.is_none() {
            // Service operations address the account root, `/account/?comp=list`.
            url.set_path(&format!("{}/", url.path().trim_end_matches('/')));
        }
        url.set_query((!q.is_empty()).then_some(q.as_str()));
        let response = self
            .pipeline
            .send(|| self.build(&method, &url, &headers, &body))
            .await?;
        if response.status().is_success() {
            return Ok(response);
        }
        Err(storage_error(response).await)
    }

    /// A List Containers (no `container`) or List Blobs operation, page by page: `query`
    /// plus `prefix` and each page's marker; `items` picks a page's entries.
    fn list<T: Send + 'static>(
        self: Arc<Self>,
        container: Option<String>,
        query: Vec<(&'static str, String)>,
        prefix: Option<&str>,
        items: fn(EnumerationResults) -> Vec<T>,
    ) -> BoxStream<'static, Result<T>> {
        let prefix = prefix.unwrap_or_default().to_owned();
        paged(move |marker| {
            let inner = Arc::clone(&self);
            let container = container.clone();
            let mut query = query.clone();
            if !prefix.is_empty() {
                query.push(("prefix", prefix.clone()));
            }
            if let Some(marker) = marker {
                query.push(("marker", marker));
            }
            async move {
                let response = inner
                    .send(
                        Method::GET,
                        container.as_deref(),
                        None,
                        &query,
                        HeaderMap::new(),
                        Bytes::new(),
                    )
                    .await?;
                let page: EnumerationResults = inner.xml(response).await?;
                let next = page.next_marker.clone().filter(|m| !m.is_empty());
                Ok((items(page), next))
            }
        })
    }

    async fn xml<T: for<'de> Deserialize<'de>>(&self, response: Response) -> Result<T> {
        let url = response.url().clone();
        let text = response
            .text()
            .await
            .map_err(|e| Error::transport(&url, e))?;
        quick_xml::de::from_str(&text).map_err(|e| Error::decode(&url, e))
    }
}

/// Reads a Storage error: `x-ms-error-code` and the XML body's `Code`, `Message` and any
/// other elements (e.g. `AuthenticationErrorDetail`).
async fn storage_error(response: Response) -> Error {
    let status = response.status().as_u16();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let mut error = ServiceError {
        status,
        code: header("x-ms-error-code").unwrap_or_default(),
        message: String::new(),
        details: Vec::new(),
        request_id: header("x-ms-request-id"),
    };
    let body = response.text().await.unwrap_or_default();
    for (name, value) in xml_children(&body) {
        match name.as_str() {
            "Code" if error.code.is_empty() => error.code = value,
            "Code" => {}
            "Message" => {
                error.message = value.lines().next().unwrap_or_default().to_owned();
            }
            _ => error.details.push((name, value)),
        }
    }
    Error::Service(Box::new(error))
}

/// The text of each child element of the root: enough for Storage error bodies.
fn xml_children(xml: &str) -> Vec<(String, String)> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut out = Vec::new();
    let mut depth = 0usize;
    let mut current: Option<(String, String)> = None;
    loop {
        match reader.read_event() {
            Ok(Event::Start(e)) => {
                depth += 1;
                if depth == 2 {
                    let name = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
                    current = Some((name, String::new()));
                }
            }
            Ok(Event::Text(t)) => {
                if let Some((_, text)) = current.as_mut()
                    && let Ok(t) = t.decode()
                {
                    text.push_str(&t);
                }
            }
            Ok(Event::GeneralRef(r)) => {
                if let Some((_, text)) = current.as_mut() {
                    let resolved = r
                        .resolve_char_ref()
                        .ok()
                        .flatten()
                        .map(String::from)
                        .or_else(|| {
                            let name = r.decode().ok()?;
                            quick_xml::escape::resolve_xml_entity(&name).map(String::from)
                        });
                    text.push_str(&resolved.unwrap_or_default());
                }
            }
            Ok(Event::End(_)) => {
                if depth == 2
                    && let Some(done) = current.take()
                {
                    out.push(done);
                }
                depth = depth.saturating_sub(1);
            }
            Ok(Event::Eof) | Err(_) => break,
            _ => {}
        }
    }
    out
}

/// The parts of an Azure Storage connection string this client uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectionString {
    /// `AccountName` (or the development account).
    pub account_name: String,
    /// `AccountKey`.
    pub account_key: Option<String>,
    /// `SharedAccessSignature`.
    pub sas: Option<String>,
    /// `BlobEndpoint`, or the one made of `DefaultEndpointsProtocol`, `AccountName` and
    /// `EndpointSuffix`.
    pub blob_endpoint: String,
}

impl ConnectionString {
    /// Parses `Key=Value;…` (keys case-insensitive, values may contain `=`).
    pub fn parse(s: &str) -> Result<Self> {
        let mut get = std::collections::HashMap::new();
        for part in s.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let Some((key, value)) = part.split_once('=') else {
                return Err(Error::invalid(format!(
                    "connection string part {part:?} is not Key=Value"
                )));
            };
            get.insert(key.trim().to_ascii_lowercase(), value.trim().to_owned());
        }
        if get
            .get("usedevelopmentstorage")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
        {
            return Ok(Self {
                account_name: cobalt_model::DEV_STORAGE_ACCOUNT.to_owned(),
                account_key: Some(cobalt_model::DEV_ACCOUNT_KEY.to_owned()),
                sas: None,
                blob_endpoint: get.get("developmentstorageproxyuri").map_or_else(
                    || DEV_BLOB_ENDPOINT.to_owned(),
                    |p| {
                        format!(
                            "{}/{}",
                            p.trim_end_matches('/'),
                            cobalt_model::DEV_STORAGE_ACCOUNT
                        )
                    },
                ),
            });
        }
        let account_key = get.remove("accountkey");
        let sas = get.remove("sharedaccesssignature");
        let blob_endpoint = match (get.get("blobendpoint"), get.get("accountname")) {
            (Some(endpoint), _) => endpoint.clone(),
            (None, Some(account)) => format!(
                "{}://{account}.blob.{}",
                get.get("defaultendpointsprotocol")
                    .map_or("https", String::as_str),
                get.get("endpointsuffix")
                    .map_or("core.windows.net", String::as_str)
            ),
            (None, None) => {
                return Err(Error::invalid(
                    "the connection string has neither BlobEndpoint nor AccountName",
                ));
            }
        };
        let account_name = match get.get("accountname") {
            Some(name) => name.clone(),
            None => account_of(&parse_endpoint(&blob_endpoint)?)?,
        };
        if account_key.is_none() && sas.is_none() && !get.contains_key("blobendpoint") {
            return Err(Error::invalid(
                "the connection string has neither AccountKey nor SharedAccessSignature",
            ));
        }
        Ok(Self {
            account_name,
            account_key,
            sas,
            blob_endpoint,
        })
    }
}

fn parse_endpoint(endpoint: &str) -> Result<Url> {
    let url = Url::parse(endpoint.trim_end_matches('/'))
        .map_err(|e| Error::invalid(format!("blob endpoint {endpoint:?}: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(Error::invalid(format!(
            "blob endpoint {endpoint:?} must be http:// or https://"
        )));
    }
    Ok(url)
}

/// The account an endpoint addresses: the first path segment for path-style URLs (IP
/// addresses, `localhost`), else the host's first label.
fn account_of(endpoint: &Url) -> Result<String> {
    let host = endpoint.host_str().unwrap_or_default();
    let is_ip = host
        .trim_matches(['[', ']'])
        .parse::<std::net::IpAddr>()
        .is_ok();
    let path_style = is_ip || host == "localhost" || !host.contains('.');
    let account = if path_style {
        endpoint
            .path_segments()
            .and_then(|mut s| s.find(|s| !s.is_empty()))
            .map(decode)
    } else {
        host.split('.').next().map(str::to_owned)
    };
    account
        .filter(|a| !a.is_empty())
        .ok_or_else(|| Error::invalid(format!("cannot tell the account of {endpoint}")))
}

fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

fn insert(headers: &mut HeaderMap, name: &'static str, value: &str) -> Result<()> {
    let value = HeaderValue::from_str(value)
        .map_err(|_| Error::invalid(format!("{name} cannot be sent as a header: {value:?}")))?;
    headers.insert(HeaderName::from_static(name), value);
    Ok(())
}

fn md5_base64(data: &[u8]) -> String {
    STANDARD.encode(Md5::digest(data))
}

/// Block `i`'s id: all ids of a blob must have the same length.
fn block_id(i: u64) -> String {
    STANDARD.encode(format!("cobalt-{i:010}"))
}

async fn read_at(path: &Path, offset: u64, size: u64) -> Result<Bytes> {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let mut file = tokio::fs::File::open(path)
        .await
        .map_err(|e| Error::io(path, e))?;
    file.seek(std::io::SeekFrom::Start(offset))
        .await
        .map_err(|e| Error::io(path, e))?;
    let mut data = vec![0; usize::try_from(size).unwrap_or(0)];
    file.read_exact(&mut data)
        .await
        .map_err(|e| Error::io(path, e))?;
    Ok(Bytes::from(data))
}

/// RFC 1123, as in `Last-Modified`.
fn http_date(s: &str) -> Option<DateTime<Utc>> {
    httpdate::parse_http_date(s).ok().map(DateTime::<Utc>::from)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct EnumerationResults {
    #[serde(default)]
    containers: Option<ContainersXml>,
    #[serde(default)]
    blobs: Option<BlobsXml>,
    #[serde(default)]
    next_marker: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ContainersXml {
    #[serde(rename = "Container", default)]
    items: Vec<ContainerXml>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ContainerXml {
    name: String,
    properties: PropertiesXml,
}

#[derive(Debug, Deserialize)]
struct BlobsXml {
    #[serde(rename = "Blob", default)]
    items: Vec<BlobXml>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct BlobXml {
    name: String,
    properties: PropertiesXml,
}

#[derive(Debug, Deserialize)]
struct PropertiesXml {
    #[serde(rename = "Last-Modified", default)]
    last_modified: Option<String>,
    #[serde(rename = "Etag", default)]
    etag: Option<String>,
    #[serde(rename = "Content-Length", default)]
    content_length: Option<u64>,
    #[serde(rename = "Content-Type", default)]
    content_type: Option<String>,
    #[serde(rename = "Content-MD5", default)]
    content_md5: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_strings() {
        let dev = ConnectionString::parse("UseDevelopmentStorage=true").unwrap();
        assert_eq!(dev.blob_endpoint, DEV_BLOB_ENDPOINT);
        assert_eq!(dev.account_name, "devstoreaccount1");
        let explicit = ConnectionString::parse(
            "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;BlobEndpoint=http://127.0.0.1:1234/devstoreaccount1;",
        )
        .unwrap();
        assert_eq!(
            explicit.blob_endpoint,
            "http://127.0.0.1:1234/devstoreaccount1"
        );
        assert_eq!(explicit.account_key.as_deref(), Some("a2V5"));
        let cloud = ConnectionString::parse(
            "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=a2V5;EndpointSuffix=core.windows.net",
        )
        .unwrap();
        assert_eq!(cloud.blob_endpoint, "https://acct.blob.core.windows.net");
        let sas = ConnectionString::parse(
            "BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;SharedAccessSignature=sv=2019-02-02&sig=abc%3D",
        )
        .unwrap();
        assert_eq!(sas.account_name, "devstoreaccount1");
        assert_eq!(sas.sas.as_deref(), Some("sv=2019-02-02&sig=abc%3D"));
        assert!(ConnectionString::parse("AccountKey=a2V5").is_err());
        assert!(ConnectionString::parse("nonsense").is_err());
    }

    #[test]
    fn accounts_of_endpoints() {
        let of = |s: &str| account_of(&Url::parse(s).unwrap()).unwrap();
        assert_eq!(
            of("http://127.0.0.1:10000/devstoreaccount1"),
            "devstoreaccount1"
        );
        assert_eq!(of("http://localhost:10000/acct/"), "acct");
        assert_eq!(of("https://acct.blob.core.windows.net"), "acct");
    }

    #[test]
    fn list_blobs_page() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?><EnumerationResults ServiceEndpoint="http://127.0.0.1:10000/devstoreaccount1" ContainerName="c"><Prefix/><MaxResults>3</MaxResults><Blobs><Blob><Name>dir/item0.txt</Name><Properties><Creation-Time>Sat, 21 Nov 2026 04:16:06 GMT</Creation-Time><Last-Modified>Sat, 21 Nov 2026 04:16:06 GMT</Last-Modified><Etag>0x208E4D78A820060</Etag><Content-Length>7</Content-Length><Content-Type>text/plain</Content-Type><Content-MD5>Rzzq2i+EAo3TmaEJeODBUg==</Content-MD5><BlobType>BlockBlob</BlobType></Properties><Metadata><idx>0</idx></Metadata></Blob><Blob><Name>b</Name><Properties><Content-Length>0</Content-Length><Content-MD5 /></Properties></Blob></Blobs><NextMarker>dir/item2.txt</NextMarker></EnumerationResults>"#;
        let page: EnumerationResults = quick_xml::de::from_str(xml).unwrap();
        let blobs = page.blobs.unwrap().items;
        assert_eq!(blobs.len(), 2);
        assert_eq!(blobs[0].name, "dir/item0.txt");
        assert_eq!(blobs[0].properties.content_length, Some(7));
        assert_eq!(page.next_marker.as_deref(), Some("dir/item2.txt"));
    }

    #[test]
    fn error_bodies() {
        let body = "<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>AuthenticationFailed</Code><Message>Server failed to authenticate the request.\nRequestId:1\nTime:2026</Message><AuthenticationErrorDetail>Signature did not match &amp; more</AuthenticationErrorDetail></Error>";
        let children = xml_children(body);
        assert_eq!(children[0], ("Code".into(), "AuthenticationFailed".into()));
        assert_eq!(
            children[2],
            (
                "AuthenticationErrorDetail".into(),
                "Signature did not match & more".into()
            )
        );
    }

    #[test]
    fn block_ids_have_one_length() {
        assert_eq!(block_id(0).len(), block_id(u64::from(u32::MAX)).len());
    }
}
