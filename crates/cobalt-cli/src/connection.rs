//! Where the client commands connect and with which keys: flags, then the environment, then
//! the client config file, then the local development server.
//!
//! Owns: the connection flags, the config file format, the resolution order and building the
//! `cobalt-client` clients. Must not do: print a key (nothing here implements a `Debug` that
//! shows one).

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use cobalt_client::batch::{BatchClient, DEV_BATCH_URL};
use cobalt_client::blob::{BlobServiceClient, ConnectionString, DEV_BLOB_ENDPOINT};
use cobalt_client::{ClientOptions, RetryPolicy, SharedKeyCredential};
use cobalt_model::{DEV_ACCOUNT_KEY, DEV_BATCH_ACCOUNT, DEV_STORAGE_ACCOUNT};
use serde::Deserialize;

use crate::errors::Service;
use crate::output::{Format, Out};

/// Options every client command takes (after its group's name: `cobalt pool list --output
/// json`).
#[derive(clap::Args, Clone)]
pub struct ClientOpts {
    /// Output format: human tables, or JSON for scripts (lists as a JSON array).
    #[arg(long, global = true, value_enum, default_value_t = Format::Table)]
    pub output: Format,
    /// Batch service URL [env: COBALT_BATCH_URL] [default: http://127.0.0.1:10100].
    #[arg(long, global = true, value_name = "URL")]
    pub batch_url: Option<String>,
    /// Batch account [env: COBALT_ACCOUNT] [default: devbatchaccount1].
    #[arg(long, global = true)]
    pub account: Option<String>,
    /// Batch account key, base64 [env: COBALT_KEY] [default: the development key].
    #[arg(long, global = true)]
    pub key: Option<String>,
    /// Blob service account URL [env: COBALT_BLOB_URL] [default:
    /// http://127.0.0.1:10000/devstoreaccount1].
    #[arg(long, global = true, value_name = "URL")]
    pub blob_url: Option<String>,
    /// Storage account [default: the account the blob URL names, or devstoreaccount1].
    #[arg(long, global = true)]
    pub storage_account: Option<String>,
    /// Storage account key, base64 [default: the development key].
    #[arg(long, global = true)]
    pub storage_key: Option<String>,
    /// Azure Storage connection string [env: AZURE_STORAGE_CONNECTION_STRING].
    #[arg(long, global = true)]
    pub connection_string: Option<String>,
    /// Client config file (TOML: batch_url, account, key, blob_url, storage_account,
    /// storage_key, connection_string) [env: COBALT_CLIENT_CONFIG] [default:
    /// <config dir>/cobalt/client.toml].
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

impl fmt::Debug for ClientOpts {
    /// Without the keys and the connection string.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientOpts")
            .field("output", &self.output)
            .field("batch_url", &self.batch_url)
            .field("account", &self.account)
            .field("blob_url", &self.blob_url)
            .field("storage_account", &self.storage_account)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// A group of client commands (`cobalt pool …`) with the options they share.
#[derive(clap::Args, Debug)]
pub struct Group<C: clap::Subcommand> {
    /// Output and connection options.
    #[command(flatten)]
    pub opts: ClientOpts,
    /// The command.
    #[command(subcommand)]
    pub command: C,
}

/// One source of settings: the flags, the environment or the config file.
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Layer {
    batch_url: Option<String>,
    account: Option<String>,
    key: Option<String>,
    blob_url: Option<String>,
    storage_account: Option<String>,
    storage_key: Option<String>,
    connection_string: Option<String>,
}

impl Layer {
    fn from_flags(opts: &ClientOpts) -> Self {
        Self {
            batch_url: opts.batch_url.clone(),
            account: opts.account.clone(),
            key: opts.key.clone(),
            blob_url: opts.blob_url.clone(),
            storage_account: opts.storage_account.clone(),
            storage_key: opts.storage_key.clone(),
            connection_string: opts.connection_string.clone(),
        }
        .non_empty()
    }

    fn from_env(var: impl Fn(&str) -> Option<String>) -> Self {
        Self {
            batch_url: var("COBALT_BATCH_URL"),
            account: var("COBALT_ACCOUNT"),
            key: var("COBALT_KEY"),
            blob_url: var("COBALT_BLOB_URL"),
            storage_account: None,
            storage_key: None,
            connection_string: var("AZURE_STORAGE_CONNECTION_STRING"),
        }
        .non_empty()
    }

    /// An empty value counts as unset (`COBALT_KEY= cobalt …`).
    fn non_empty(mut self) -> Self {
        for field in [
            &mut self.batch_url,
            &mut self.account,
            &mut self.key,
            &mut self.blob_url,
            &mut self.storage_account,
            &mut self.storage_key,
            &mut self.connection_string,
        ] {
            if field.as_deref().is_some_and(|v| v.trim().is_empty()) {
                *field = None;
            }
        }
        self
    }
}

/// How the Blob service authorizes this client.
#[derive(Clone, PartialEq, Eq)]
pub enum BlobAuth {
    /// SharedKey with this base64 key.
    Key(String),
    /// A SAS token.
    Sas(String),
    /// No credential (public containers only).
    Anonymous,
}

/// Everything needed to connect, resolved.
#[derive(Clone, PartialEq, Eq)]
pub struct Settings {
    /// The Batch service URL.
    pub batch_url: String,
    /// The Batch account.
    pub account: String,
    /// Its key.
    pub key: String,
    /// The Blob service's account URL.
    pub blob_url: String,
    /// The storage account.
    pub storage_account: String,
    /// How blob requests are authorized.
    pub blob_auth: BlobAuth,
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("batch_url", &self.batch_url)
            .field("account", &self.account)
            .field("blob_url", &self.blob_url)
            .field("storage_account", &self.storage_account)
            .finish_non_exhaustive()
    }
}

/// The first value of `field` among `layers` (highest precedence first).
fn first<'a>(
    layers: &'a [&Layer],
    field: impl Fn(&'a Layer) -> &'a Option<String>,
) -> Option<(usize, &'a str)> {
    layers
        .iter()
        .enumerate()
        .find_map(|(i, l)| field(l).as_deref().map(|v| (i, v)))
}

/// Resolves the settings from `layers`, highest precedence first. A connection string gives
/// the blob endpoint, account and credential; a blob URL, storage account or storage key
/// from the same or a higher layer replaces its part.
pub fn resolve(layers: &[&Layer]) -> anyhow::Result<Settings> {
    let batch_url = first(layers, |l| &l.batch_url).map(|(_, v)| v.to_owned());
    let account = match first(layers, |l| &l.account) {
        Some((_, a)) => a.to_owned(),
        None => batch_url
            .as_deref()
            .and_then(account_of_batch_url)
            .unwrap_or_else(|| DEV_BATCH_ACCOUNT.to_owned()),
    };
    let key = first(layers, |l| &l.key).map_or(DEV_ACCOUNT_KEY, |(_, v)| v);

    let cs = first(layers, |l| &l.connection_string);
    let limit = cs.map_or(usize::MAX, |(level, _)| level);
    let part = |field: fn(&Layer) -> &Option<String>| {
        first(layers, field)
            .filter(|(level, _)| *level <= limit)
            .map(|(_, v)| v.to_owned())
    };
    let (url_part, account_part, key_part) = (
        part(|l| &l.blob_url),
        part(|l| &l.storage_account),
        part(|l| &l.storage_key),
    );
    let (mut blob_url, mut storage_account, mut blob_auth) = match cs {
        Some((_, text)) => {
            let cs = ConnectionString::parse(text)
                .map_err(|e| anyhow::anyhow!("the storage connection string: {e}"))?;
            let auth = match (cs.account_key, cs.sas) {
                (Some(key), _) => BlobAuth::Key(key),
                (None, Some(sas)) => BlobAuth::Sas(sas),
                (None, None) => BlobAuth::Anonymous,
            };
            (cs.blob_endpoint, cs.account_name, auth)
        }
        None => (
            DEV_BLOB_ENDPOINT.to_owned(),
            DEV_STORAGE_ACCOUNT.to_owned(),
            BlobAuth::Key(DEV_ACCOUNT_KEY.to_owned()),
        ),
    };
    if let Some(url) = url_part {
        if account_part.is_none()
            && let Some(a) = account_of_blob_url(&url)
        {
            storage_account = a;
        }
        blob_url = url;
    }
    if let Some(a) = account_part {
        storage_account = a;
    }
    if let Some(k) = key_part {
        blob_auth = BlobAuth::Key(k);
    }
    Ok(Settings {
        batch_url: batch_url.unwrap_or_else(|| DEV_BATCH_URL.to_owned()),
        account,
        key: key.to_owned(),
        blob_url,
        storage_account,
        blob_auth,
    })
}

fn host_and_path(url: &str) -> Option<(&str, &str)> {
    let rest = url.split_once("://")?.1;
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(v6),
        None => host.split(':').next().unwrap_or(host),
    };
    Some((host, path))
}

fn is_named_host(host: &str) -> bool {
    host.contains('.') && host.parse::<std::net::IpAddr>().is_err()
}

/// `acct` of `https://acct.region.batch.azure.com`.
fn account_of_batch_url(url: &str) -> Option<String> {
    let (host, _) = host_and_path(url)?;
    is_named_host(host)
        .then(|| host.split('.').next().unwrap_or_default().to_owned())
        .filter(|a| !a.is_empty())
}

/// `acct` of `http://127.0.0.1:10000/acct` or `https://acct.blob.core.windows.net`.
fn account_of_blob_url(url: &str) -> Option<String> {
    let (host, path) = host_and_path(url)?;
    let account = if is_named_host(host) {
        host.split('.').next()
    } else {
        path.split('/').find(|s| !s.is_empty())
    };
    account.filter(|a| !a.is_empty()).map(str::to_owned)
}

/// The config file to read: `--config`, `COBALT_CLIENT_CONFIG`, or the default (which may be
/// missing). The flag says whether it must exist.
fn config_path(opts: &ClientOpts) -> Option<(PathBuf, bool)> {
    if let Some(path) = &opts.config {
        return Some((path.clone(), true));
    }
    if let Some(path) = std::env::var_os("COBALT_CLIENT_CONFIG").filter(|p| !p.is_empty()) {
        return Some((PathBuf::from(path), true));
    }
    dirs::config_dir().map(|d| (d.join("cobalt").join("client.toml"), false))
}

fn load_config(path: &Path, required: bool) -> anyhow::Result<Layer> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {
            return Ok(Layer::default());
        }
        Err(e) => {
            return Err(e)
                .with_context(|| format!("cannot read the config file {}", path.display()));
        }
    };
    match toml::from_str::<Layer>(&text) {
        Ok(layer) => Ok(layer.non_empty()),
        Err(e) => bail!(
            "the config file {} is not valid: {}",
            path.display(),
            e.message()
        ),
    }
}

/// The connections of one command: settings and the output format.
#[derive(Debug)]
pub struct Connection {
    /// Resolved settings.
    pub settings: Settings,
    /// How to print.
    pub out: Out,
}

impl Connection {
    /// Resolves flags > environment > config file > defaults.
    pub fn new(opts: &ClientOpts) -> anyhow::Result<Self> {
        let flags = Layer::from_flags(opts);
        let env = Layer::from_env(|name| std::env::var(name).ok());
        let file = match config_path(opts) {
            Some((path, required)) => load_config(&path, required)?,
            None => Layer::default(),
        };
        let settings = resolve(&[&flags, &env, &file])?;
        tracing::debug!(?settings, "connection settings");
        Ok(Self {
            settings,
            out: Out::new(opts.output),
        })
    }

    /// A Batch client and the description errors use.
    pub fn batch(&self) -> anyhow::Result<Batch> {
        let s = &self.settings;
        let service = Service::batch(&s.batch_url, &s.account);
        let credential = SharedKeyCredential::new(&s.account, &s.key)
            .map_err(|e| anyhow::anyhow!("the Batch key (--key / COBALT_KEY): {e}"))?;
        let client = BatchClient::with_options(&s.batch_url, credential, &client_options())
            .map_err(|e| anyhow::anyhow!("{e} (--batch-url / COBALT_BATCH_URL)"))?;
        Ok(Batch { client, service })
    }

    /// A Blob service client and the description errors use.
    pub fn blob(&self) -> anyhow::Result<Blob> {
        let s = &self.settings;
        let service = Service::blob(&s.blob_url, &s.storage_account);
        let client = match &s.blob_auth {
            BlobAuth::Key(key) => {
                let credential =
                    SharedKeyCredential::new(&s.storage_account, key).map_err(|e| {
                        anyhow::anyhow!("the storage key (--storage-key or connection string): {e}")
                    })?;
                BlobServiceClient::with_options(&s.blob_url, credential, &client_options())
            }
            BlobAuth::Sas(token) => BlobServiceClient::with_sas(&s.blob_url, token),
            BlobAuth::Anonymous => BlobServiceClient::anonymous(&s.blob_url),
        }
        .map_err(|e| anyhow::anyhow!("{e} (--blob-url / COBALT_BLOB_URL)"))?;
        Ok(Blob { client, service })
    }
}

/// Retries for an interactive command: a few, quickly, so a stopped server is reported in
/// about two seconds.
fn client_options() -> ClientOptions {
    ClientOptions {
        retry: RetryPolicy {
            max_retries: 3,
            initial_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(10),
        },
        ..ClientOptions::default()
    }
}

/// A Batch client with what its errors need to say.
#[derive(Clone, Debug)]
pub struct Batch {
    /// The client.
    pub client: BatchClient,
    /// Where it connects.
    pub service: Service,
}

/// A Blob service client with what its errors need to say.
#[derive(Clone, Debug)]
pub struct Blob {
    /// The client.
    pub client: BlobServiceClient,
    /// Where it connects.
    pub service: Service,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn layer(pairs: &[(&str, &str)]) -> Layer {
        let text: String = pairs
            .iter()
            .map(|(k, v)| format!("{k} = {v:?}\n"))
            .collect();
        toml::from_str(&text).unwrap()
    }

    #[test]
    fn defaults_are_the_local_dev_server() {
        let s = resolve(&[&Layer::default()]).unwrap();
        assert_eq!(s.batch_url, "http://127.0.0.1:10100");
        assert_eq!(s.account, "devbatchaccount1");
        assert_eq!(s.key, DEV_ACCOUNT_KEY);
        assert_eq!(s.blob_url, "http://127.0.0.1:10000/devstoreaccount1");
        assert_eq!(s.storage_account, "devstoreaccount1");
        assert!(s.blob_auth == BlobAuth::Key(DEV_ACCOUNT_KEY.to_owned()));
    }

    #[test]
    fn flags_beat_env_beat_file() {
        let flags = layer(&[("account", "flagacct")]);
        let env = layer(&[("account", "envacct"), ("batch_url", "http://env:1")]);
        let file = layer(&[
            ("account", "fileacct"),
            ("batch_url", "http://file:1"),
            ("key", "a2V5"),
        ]);
        let s = resolve(&[&flags, &env, &file]).unwrap();
        assert_eq!(s.account, "flagacct");
        assert_eq!(s.batch_url, "http://env:1");
        assert_eq!(s.key, "a2V5");
    }

    #[test]
    fn accounts_come_from_urls() {
        let l = layer(&[
            ("batch_url", "https://acct.westeurope.batch.azure.com"),
            ("blob_url", "http://127.0.0.1:4000/store2"),
        ]);
        let s = resolve(&[&l]).unwrap();
        assert_eq!(s.account, "acct");
        assert_eq!(s.storage_account, "store2");
        let local = layer(&[("batch_url", "http://127.0.0.1:9")]);
        assert_eq!(resolve(&[&local]).unwrap().account, "devbatchaccount1");
    }

    #[test]
    fn connection_strings_and_their_parts() {
        let cs = "DefaultEndpointsProtocol=http;AccountName=acct;AccountKey=a2V5;BlobEndpoint=http://127.0.0.1:5/acct;";
        let env = layer(&[("connection_string", cs)]);
        // A blob URL in the config file (lower precedence) does not override it …
        let file = layer(&[("blob_url", "http://file:1/x")]);
        let s = resolve(&[&Layer::default(), &env, &file]).unwrap();
        assert_eq!(s.blob_url, "http://127.0.0.1:5/acct");
        assert_eq!(s.storage_account, "acct");
        assert!(s.blob_auth == BlobAuth::Key("a2V5".into()));
        // … a flag does, and keeps the string's account and key.
        let flags = layer(&[("blob_url", "http://127.0.0.1:6/acct")]);
        let s = resolve(&[&flags, &env, &file]).unwrap();
        assert_eq!(s.blob_url, "http://127.0.0.1:6/acct");
        assert!(s.blob_auth == BlobAuth::Key("a2V5".into()));
        let bad = layer(&[("connection_string", "nonsense")]);
        assert!(resolve(&[&bad]).is_err());
    }

    #[test]
    fn empty_values_are_unset_and_unknown_keys_rejected() {
        let env = Layer::from_env(|name| (name == "COBALT_KEY").then(String::new));
        assert!(env.key.is_none());
        assert!(toml::from_str::<Layer>("batch_ulr = \"x\"").is_err());
    }

    #[test]
    fn debug_never_shows_keys() {
        let l = layer(&[("key", "c2VjcmV0"), ("storage_key", "c2VjcmV0")]);
        let s = resolve(&[&l]).unwrap();
        assert!(!format!("{s:?}").contains("c2VjcmV0"));
    }
}
