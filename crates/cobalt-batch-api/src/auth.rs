//! SharedKey for the Batch service. It differs from Storage's: `ocp-*` headers instead of
//! `x-ms-*`, the date in `ocp-date`, query names as sent, and the SDKs disagree on details
//! (see ../shared/reference/batch-rest.md §3), so the verifier accepts a request when any of
//! the variants a real SDK produces matches:
//!
//! - `Content-Length`: the value received; when absent on a request other than GET/HEAD, both
//!   `""` (JavaScript DELETE) and `"0"` (Python 15.x).
//! - The path: as received, or with `%2F`/`%5C` decoded (azure-batch 4.0.0 signs file paths
//!   decoded but sends them encoded).
//! - The query: names as received, sorted, first non-empty value (the Python SDKs), or names
//!   lower-cased with sorted, comma-joined values (the documented rule).

use chrono::{DateTime, Utc};
use http::{HeaderMap, Method};
use percent_encoding::percent_decode_str;

use cobalt_model::Account;

/// How far a request's `ocp-date` may be from the server's clock.
pub const MAX_CLOCK_SKEW: chrono::Duration = chrono::Duration::minutes(15);

/// Why a request failed authentication. Rendered as a Batch error by the API layer.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    /// No `Authorization` header (401 is not used by Batch: this is 403 AuthenticationFailed).
    #[error("the request has no Authorization header")]
    Missing,
    /// The header is not `SharedKey account:signature`.
    #[error("the Authorization header is not of the form 'SharedKey account:signature'")]
    Malformed,
    /// The header names another account.
    #[error("the account {0} in the Authorization header is not this account")]
    WrongAccount(String),
    /// `ocp-date`/`Date` missing or unreadable.
    #[error("the request has no valid ocp-date or Date header")]
    NoDate,
    /// The date is more than 15 minutes from the server's clock.
    #[error("the request date {0} is more than 15 minutes from the server's time")]
    Stale(String),
    /// No variant of the string-to-sign matches the signature.
    #[error(
        "The MAC signature found in the HTTP request '{signature}' is not the same as any computed signature. Server used following string to sign: '{string_to_sign}'."
    )]
    BadSignature {
        /// The signature the client sent.
        signature: String,
        /// The canonical string-to-sign (the first variant).
        string_to_sign: String,
    },
}

/// The parts of a request SharedKey covers.
pub struct SignedRequest<'a> {
    /// The method.
    pub method: &'a Method,
    /// The headers.
    pub headers: &'a HeaderMap,
    /// The path exactly as sent (still percent-encoded).
    pub raw_path: &'a str,
    /// The query exactly as sent, without `?`.
    pub raw_query: Option<&'a str>,
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

fn decode(s: &str) -> String {
    percent_decode_str(s).decode_utf8_lossy().into_owned()
}

/// The query's (name, value) pairs, decoded, in order.
fn query_pairs(raw: Option<&str>) -> Vec<(String, String)> {
    raw.unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (n, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(n), decode(v))
        })
        .collect()
}

/// The query as the Python SDKs sign it: names as sent, sorted; first non-empty value.
fn query_as_sent(pairs: &[(String, String)]) -> String {
    let mut seen: Vec<(&str, &str)> = Vec::new();
    for (n, v) in pairs {
        if !v.is_empty() && !seen.iter().any(|(sn, _)| sn == n) {
            seen.push((n, v));
        }
    }
    seen.sort();
    seen.iter().map(|(n, v)| format!("\n{n}:{v}")).collect()
}

/// The query as documented: names lower-cased and sorted; values sorted and comma-joined.
fn query_documented(pairs: &[(String, String)]) -> String {
    let mut grouped: Vec<(String, Vec<&str>)> = Vec::new();
    for (n, v) in pairs {
        let n = n.to_ascii_lowercase();
        match grouped.iter_mut().find(|(g, _)| *g == n) {
            Some((_, values)) => values.push(v),
            None => grouped.push((n, vec![v])),
        }
    }
    grouped.sort();
    grouped
        .into_iter()
        .map(|(n, mut values)| {
            values.sort_unstable();
            format!("\n{n}:{}", values.join(","))
        })
        .collect()
}

/// Every string-to-sign a real SDK could have produced for this request; the first is the
/// canonical one (reported when none matches).
pub fn strings_to_sign(req: &SignedRequest<'_>, account: &str) -> Vec<String> {
    let h = |name| header(req.headers, name);
    let lengths: Vec<&str> = match req.headers.get(http::header::CONTENT_LENGTH) {
        Some(v) => vec![v.to_str().unwrap_or("")],
        None if *req.method == Method::GET || *req.method == Method::HEAD => vec![""],
        None => vec!["0", ""],
    };
    let mut ocp: Vec<(&str, &str)> = req
        .headers
        .iter()
        .filter(|(n, v)| n.as_str().starts_with("ocp-") && !v.is_empty())
        .map(|(n, v)| (n.as_str(), v.to_str().unwrap_or("")))
        .collect();
    ocp.sort();
    let ocp: String = ocp.iter().map(|(n, v)| format!("{n}:{v}\n")).collect();
    let mut paths = vec![req.raw_path.to_owned()];
    let decoded = req
        .raw_path
        .replace("%2F", "/")
        .replace("%2f", "/")
        .replace("%5C", "/")
        .replace("%5c", "/");
    if decoded != req.raw_path {
        paths.push(decoded);
    }
    let pairs = query_pairs(req.raw_query);
    let mut queries = vec![query_as_sent(&pairs)];
    let documented = query_documented(&pairs);
    if documented != queries[0] {
        queries.push(documented);
    }
    let mut out = Vec::new();
    for length in &lengths {
        let head = format!(
            "{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}",
            req.method.as_str(),
            h("content-encoding"),
            h("content-language"),
            length,
            h("content-md5"),
            h("content-type"),
            h("date"),
            h("if-modified-since"),
            h("if-match"),
            h("if-none-match"),
            h("if-unmodified-since"),
            h("range"),
            ocp,
        );
        for path in &paths {
            for query in &queries {
                out.push(format!("{head}/{account}{path}{query}"));
            }
        }
    }
    out
}

/// Verifies the request's SharedKey signature and date against `account`.
pub fn verify(
    req: &SignedRequest<'_>,
    account: &Account,
    now: DateTime<Utc>,
) -> Result<(), AuthError> {
    let authorization = req
        .headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or(AuthError::Missing)?;
    let credential = authorization
        .trim()
        .strip_prefix("SharedKey ")
        .ok_or(AuthError::Malformed)?;
    let (name, signature) = credential
        .trim()
        .rsplit_once(':')
        .ok_or(AuthError::Malformed)?;
    if name != account.name {
        return Err(AuthError::WrongAccount(name.to_owned()));
    }
    let date = req
        .headers
        .get("ocp-date")
        .or_else(|| req.headers.get(http::header::DATE))
        .and_then(|v| v.to_str().ok())
        .ok_or(AuthError::NoDate)?;
    let when: DateTime<Utc> = httpdate::parse_http_date(date)
        .map_err(|_| AuthError::NoDate)?
        .into();
    if (now - when).abs() > MAX_CLOCK_SKEW {
        return Err(AuthError::Stale(date.to_owned()));
    }
    let candidates = strings_to_sign(req, &account.name);
    if candidates.iter().any(|s| account.verify(s, signature)) {
        return Ok(());
    }
    Err(AuthError::BadSignature {
        signature: signature.to_owned(),
        string_to_sign: candidates.into_iter().next().unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests;
