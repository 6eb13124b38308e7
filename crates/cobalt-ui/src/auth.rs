//! Who may use the dashboard. A request from a loopback address, addressed to a loopback host
//! name (so a DNS-rebinding page cannot pose as local), needs no login and may look at every
//! account. Any other request needs a session: `POST /ui/api/login` with a Batch account name
//! and key (checked with the account's keys, in constant time) sets an HttpOnly, SameSite
//! cookie carrying the account names and an expiry, HMAC-signed with a per-process secret.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequestParts, Query, State};
use axum::response::{IntoResponse, Response};
use cobalt_model::{Account, AccountKey};
use http::request::Parts;
use http::{HeaderMap, HeaderValue, header};
use serde::Deserialize;

use crate::error::{UiError, UiResult};
use crate::{Ui, batch::json};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "cobalt_ui";
/// How long a session lasts.
const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// What the session signature covers, besides its fields (keeps it apart from any other HMAC).
const SESSION_DOMAIN: &str = "cobalt-ui-session/v1";

/// Who a request acts as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// A loopback request (no login).
    pub local: bool,
    /// The Batch account the request reads.
    pub batch: String,
    /// The storage account it reads, if it may read one.
    pub storage: Option<String>,
}

/// The accounts a request asks for (`?account=` and `?storage=`).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Wanted {
    /// A Batch account.
    pub account: Option<String>,
    /// A storage account.
    pub storage: Option<String>,
}

/// Whether `host` (a `Host` header: name or address, with an optional port) names this
/// machine's loopback interface.
fn host_is_loopback(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    name.eq_ignore_ascii_case("localhost")
        || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Whether a request may skip the login: it comes from a loopback address and names a
/// loopback host.
pub fn is_local(peer: Option<SocketAddr>, headers: &HeaderMap) -> bool {
    let from_loopback = peer.is_some_and(|p| match p.ip() {
        IpAddr::V4(ip) => ip.is_loopback(),
        IpAddr::V6(ip) => {
            ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    });
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    from_loopback && host_is_loopback(host)
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn session_message(batch: &str, storage: &str, expires: u64) -> String {
    format!("{SESSION_DOMAIN}\n{batch}\n{storage}\n{expires}")
}

impl Ui {
    /// A session token for `batch` (and `storage`), valid until `expires` (Unix seconds).
    pub fn session_token(&self, batch: &str, storage: Option<&str>, expires: u64) -> String {
        let storage = storage.unwrap_or("");
        let sig = self.secret.sign(&session_message(batch, storage, expires));
        format!("{batch}.{storage}.{expires}.{sig}")
    }

    /// The accounts of a valid, unexpired session token.
    fn open_session(&self, token: &str) -> Option<(String, Option<String>)> {
        let mut parts = token.splitn(4, '.');
        let (batch, storage, expires, sig) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let expires_at: u64 = expires.parse().ok()?;
        if !self
            .secret
            .verify(&session_message(batch, storage, expires_at), sig)
            || expires_at <= now_secs()
        {
            return None;
        }
        self.config.batch_accounts.get(batch)?;
        let storage = (!storage.is_empty()).then(|| storage.to_owned());
        Some((batch.to_owned(), storage))
    }
}

/// The session cookie of a request, if any.
fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.trim_matches('"'))
}

/// Decides who a request acts as: loopback requests any account they ask for (the first one
/// by default), others the accounts of their session, and nothing else.
pub fn guard(
    ui: &Ui,
    peer: Option<SocketAddr>,
    headers: &HeaderMap,
    wanted: &Wanted,
) -> UiResult<Principal> {
    let known_batch = |name: &str| ui.config.batch_accounts.get(name).is_some();
    let known_storage = |name: &str| ui.config.storage_accounts.get(name).is_some();
    if is_local(peer, headers) {
        let batch = match &wanted.account {
            Some(a) => a.clone(),
            None => ui
                .default_batch_account()
                .ok_or_else(|| UiError::NotFound("No Batch account is configured.".into()))?
                .to_owned(),
        };
        if !known_batch(&batch) {
            return Err(UiError::NotFound(format!(
                "No Batch account named {batch}."
            )));
        }
        let storage = wanted
            .storage
            .clone()
            .unwrap_or_else(|| ui.config.default_storage.clone());
        if !known_storage(&storage) {
            return Err(UiError::NotFound(format!(
                "No storage account named {storage}."
            )));
        }
        return Ok(Principal {
            local: true,
            batch,
            storage: Some(storage),
        });
    }
    let (batch, storage) = session_cookie(headers)
        .and_then(|t| ui.open_session(t))
        .ok_or_else(|| UiError::Unauthorized("Log in with a Batch account name and key.".into()))?;
    if wanted.account.as_ref().is_some_and(|a| *a != batch)
        || wanted
            .storage
            .as_ref()
            .is_some_and(|s| Some(s) != storage.as_ref())
    {
        return Err(UiError::Forbidden(
            "This session is not for that account; log in with its key.".into(),
        ));
    }
    Ok(Principal {
        local: false,
        batch,
        storage,
    })
}

impl FromRequestParts<Arc<Ui>> for Principal {
    type Rejection = UiError;

    async fn from_request_parts(parts: &mut Parts, ui: &Arc<Ui>) -> Result<Self, UiError> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0);
        let Query(wanted) = Query::<Wanted>::try_from_uri(&parts.uri)
            .map_err(|e| UiError::BadRequest(e.body_text()))?;
        guard(ui, peer, &parts.headers, &wanted)
    }
}

/// Whether `key` (base64, as Azure shows it) is one of `account`'s keys, in constant time.
fn key_matches(account: &Account, key: &str) -> bool {
    const PROBE: &str = "cobalt-ui-login/v1";
    AccountKey::from_base64(&account.name, key).is_ok_and(|k| account.verify(PROBE, &k.sign(PROBE)))
}

/// The login form.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Login {
    account: String,
    key: String,
    storage_account: Option<String>,
    storage_key: Option<String>,
}

/// `GET /ui/api/session`: who the page acts as, and which accounts it may switch to.
pub(crate) async fn session(State(ui): State<Arc<Ui>>, p: Principal) -> UiResult<Response> {
    let (accounts, storage_accounts): (Vec<&str>, Vec<&str>) = if p.local {
        (
            ui.config.batch_accounts.names().collect(),
            ui.config.storage_accounts.names().collect(),
        )
    } else {
        (
            vec![p.batch.as_str()],
            p.storage.iter().map(String::as_str).collect(),
        )
    };
    json(&serde_json::json!({
        "local": p.local,
        "account": p.batch,
        "accounts": accounts,
        "storageAccount": p.storage,
        "storageAccounts": storage_accounts,
    }))
}

/// `POST /ui/api/login` (JSON `{account, key, storageAccount?, storageKey?}`): sets the
/// session cookie.
pub(crate) async fn login(
    State(ui): State<Arc<Ui>>,
    headers: HeaderMap,
    body: Bytes,
) -> UiResult<Response> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !is_json {
        return Err(UiError::BadRequest(
            "Send the login as application/json.".into(),
        ));
    }
    let form: Login = serde_json::from_slice(&body)
        .map_err(|_| UiError::BadRequest("Expected {\"account\", \"key\"}.".into()))?;
    let refused = || UiError::Unauthorized("The account name or key is not valid.".into());
    let account = ui
        .config
        .batch_accounts
        .get(&form.account)
        .ok_or_else(refused)?;
    if !key_matches(account, &form.key) {
        tracing::info!(account = form.account, "dashboard login refused");
        return Err(refused());
    }
    let storage = match (&form.storage_account, &form.storage_key) {
        (Some(name), Some(key)) if !name.is_empty() => {
            let refused =
                || UiError::Unauthorized("The storage account or key is not valid.".into());
            let s = ui.config.storage_accounts.get(name).ok_or_else(refused)?;
            if !key_matches(s, key) {
                return Err(refused());
            }
            Some(name.as_str())
        }
        _ => None,
    };
    let expires = now_secs() + SESSION_TTL.as_secs();
    let token = ui.session_token(&form.account, storage, expires);
    let cookie = format!(
        "{SESSION_COOKIE}={token}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={}",
        SESSION_TTL.as_secs()
    );
    let mut response =
        json(&serde_json::json!({"account": form.account, "storageAccount": storage}))?;
    let value = HeaderValue::from_str(&cookie).map_err(UiError::internal)?;
    response.headers_mut().insert(header::SET_COOKIE, value);
    Ok(response)
}

/// `POST /ui/api/logout`: clears the session cookie.
pub(crate) async fn logout() -> Response {
    (
        [(
            header::SET_COOKIE,
            format!("{SESSION_COOKIE}=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0"),
        )],
        "{}",
    )
        .into_response()
}

/// The clock as sessions see it (for tests).
#[cfg(test)]
pub(crate) fn tests_now() -> u64 {
    now_secs()
}
