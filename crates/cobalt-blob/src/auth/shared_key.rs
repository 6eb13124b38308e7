//! SharedKey and SharedKeyLite string-to-sign for the Blob service (version 2009-09-19 and later).

use http::{HeaderMap, Method};

use crate::request::Query;

/// How `x-ms-` headers are ordered in the canonicalized headers. Clients disagree for names
/// that contain `-` or `_` after the prefix, so the verifier tries each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderOrder {
    /// Ordinal (byte) order: Azure's documented rule, the legacy Python SDK, most SDKs.
    Ordinal,
    /// The v12 Python SDK's collation, in which `-` is ignored at the first level.
    IgnoreHyphen,
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// `name:value\n` for every `x-ms-` header, sorted per `order`.
fn canonicalized_headers(headers: &HeaderMap, order: HeaderOrder) -> String {
    let mut names: Vec<&str> = headers
        .keys()
        .map(|k| k.as_str())
        .filter(|k| k.starts_with("x-ms-"))
        .collect();
    names.dedup();
    match order {
        HeaderOrder::Ordinal => names.sort_unstable(),
        HeaderOrder::IgnoreHyphen => names.sort_unstable_by(|a, b| {
            let strip = |s: &str| s.replace('-', "");
            strip(a).cmp(&strip(b)).then_with(|| a.cmp(b))
        }),
    }
    let mut out = String::new();
    for name in names {
        let values: Vec<&str> = headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap_or("").trim())
            .collect();
        out.push_str(name);
        out.push(':');
        out.push_str(&values.join(","));
        out.push('\n');
    }
    out
}

/// `/account/raw-path` plus each query parameter as `\nname:v1,v2`, names lower-cased and sorted.
pub fn canonicalized_resource(account: &str, raw_path: &str, query: &Query) -> String {
    let mut out = format!("/{account}{raw_path}");
    let mut params: Vec<(String, Vec<&str>)> = Vec::new();
    for (name, value) in query.pairs() {
        let name = name.to_ascii_lowercase();
        match params.iter_mut().find(|(n, _)| *n == name) {
            Some((_, values)) => values.push(value),
            None => params.push((name, vec![value])),
        }
    }
    params.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, mut values) in params {
        values.sort_unstable();
        out.push('\n');
        out.push_str(&name);
        out.push(':');
        out.push_str(&values.join(","));
    }
    out
}

/// The SharedKey string-to-sign of a request.
pub fn string_to_sign(
    method: &Method,
    headers: &HeaderMap,
    account: &str,
    raw_path: &str,
    query: &Query,
    order: HeaderOrder,
) -> String {
    let h = |name| header_str(headers, name);
    let version = h("x-ms-version");
    let mut content_length = h("content-length");
    // Since 2015-02-21 a zero Content-Length is signed as the empty string.
    if content_length == "0" && (version.is_empty() || version >= "2015-02-21") {
        content_length = "";
    }
    let mut s = String::with_capacity(512);
    for part in [
        method.as_str(),
        h("content-encoding"),
        h("content-language"),
        content_length,
        h("content-md5"),
        h("content-type"),
        h("date"),
        h("if-modified-since"),
        h("if-match"),
        h("if-none-match"),
        h("if-unmodified-since"),
        h("range"),
    ] {
        s.push_str(part);
        s.push('\n');
    }
    s.push_str(&canonicalized_headers(headers, order));
    s.push_str(&canonicalized_resource(account, raw_path, query));
    s
}

/// The SharedKeyLite string-to-sign of a request.
pub fn string_to_sign_lite(
    method: &Method,
    headers: &HeaderMap,
    account: &str,
    raw_path: &str,
    query: &Query,
) -> String {
    let h = |name| header_str(headers, name);
    let mut s = format!(
        "{}\n{}\n{}\n{}\n",
        method.as_str(),
        h("content-md5"),
        h("content-type"),
        h("date")
    );
    s.push_str(&canonicalized_headers(headers, HeaderOrder::Ordinal));
    s.push_str(&format!("/{account}{raw_path}"));
    if let Some(comp) = query.get("comp") {
        s.push_str("?comp=");
        s.push_str(comp);
    }
    s
}

#[cfg(test)]
mod tests;
