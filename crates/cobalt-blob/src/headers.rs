//! Reading request headers (metadata, preconditions, ranges) and formatting dates.

use http::HeaderMap;

use crate::engine::{Conditions, Metadata};
use crate::error::{ErrorCode, StorageError, StorageResult};

/// Largest total metadata size Azure accepts (names and values), in bytes.
pub const MAX_METADATA_BYTES: usize = 8 * 1024;

/// A header's value as text, if present and visible ASCII.
pub fn get<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// `x-ms-meta-*` headers as metadata. Names must be C# identifiers, as in Azure.
pub fn metadata(headers: &HeaderMap) -> StorageResult<Metadata> {
    let mut out = Metadata::new();
    let mut total = 0;
    for (name, value) in headers {
        let Some(key) = name.as_str().strip_prefix("x-ms-meta-") else {
            continue;
        };
        let valid_name = key
            .chars()
            .next()
            .is_some_and(|c| c.is_alphabetic() || c == '_')
            && key.chars().all(|c| c.is_alphanumeric() || c == '_');
        if !valid_name {
            return Err(
                StorageError::new(ErrorCode::InvalidMetadata).with_detail("MetadataName", key)
            );
        }
        let value = value.to_str().map_err(|_| {
            StorageError::new(ErrorCode::InvalidMetadata).with_detail("MetadataName", key)
        })?;
        total += key.len() + value.len();
        out.push((key.to_owned(), value.to_owned()));
    }
    if total > MAX_METADATA_BYTES {
        return Err(StorageError::new(ErrorCode::InvalidMetadata)
            .with_message("The metadata specified exceeds the maximum permissible size of 8 KB."));
    }
    Ok(out)
}

fn date(headers: &HeaderMap, name: &str) -> StorageResult<Option<i64>> {
    match get(headers, name) {
        None => Ok(None),
        Some(v) => httpdate::parse_http_date(v)
            .map(|t| {
                Some(
                    t.duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs() as i64),
                )
            })
            .map_err(|_| StorageError::bad_header(name, v)),
    }
}

/// The standard preconditions (`prefix` = "") or a copy's source preconditions
/// (`prefix` = "x-ms-source-").
pub fn conditions(headers: &HeaderMap, prefix: &str) -> StorageResult<Conditions> {
    Ok(Conditions {
        if_match: get(headers, &format!("{prefix}if-match")).map(str::to_owned),
        if_none_match: get(headers, &format!("{prefix}if-none-match")).map(str::to_owned),
        if_modified_since: date(headers, &format!("{prefix}if-modified-since"))?,
        if_unmodified_since: date(headers, &format!("{prefix}if-unmodified-since"))?,
    })
}

/// A requested byte range: (first, last inclusive if given).
pub type RequestedRange = (u64, Option<u64>);

fn parse_range(value: &str) -> Option<RequestedRange> {
    let spec = value.trim().strip_prefix("bytes=")?;
    let (start, end) = spec.split_once('-')?;
    let start: u64 = start.trim().parse().ok()?;
    let end = match end.trim() {
        "" => None,
        e => Some(e.parse::<u64>().ok()?),
    };
    if end.is_some_and(|e| e < start) {
        return None;
    }
    Some((start, end))
}

/// The range of a read: `x-ms-range` wins over `Range`. A malformed `x-ms-range` is an
/// error; a malformed `Range` is ignored, as HTTP prescribes.
pub fn range(headers: &HeaderMap) -> StorageResult<Option<RequestedRange>> {
    if let Some(v) = get(headers, "x-ms-range") {
        return parse_range(v).map(Some).ok_or_else(|| {
            StorageError::new(ErrorCode::InvalidRange)
                .with_message("The range specified is invalid.")
        });
    }
    Ok(get(headers, "range").and_then(parse_range))
}

/// Resolves a requested range against a size: the inclusive range to send, or 416.
pub fn resolve_range(requested: RequestedRange, size: u64) -> StorageResult<(u64, u64)> {
    let (start, end) = requested;
    if start >= size {
        return Err(StorageError::new(ErrorCode::InvalidRange)
            .with_header(http::header::CONTENT_RANGE, &format!("bytes */{size}")));
    }
    Ok((start, end.map_or(size - 1, |e| e.min(size - 1))))
}

/// RFC 1123 date of Unix seconds.
pub fn http_date(secs: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs.max(0) as u64);
    httpdate::fmt_http_date(t)
}

/// `Content-Length` of the request.
pub fn content_length(headers: &HeaderMap) -> StorageResult<Option<u64>> {
    match get(headers, "content-length") {
        None => Ok(None),
        Some(v) => v
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| StorageError::bad_header("Content-Length", v)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderName, HeaderValue};

    fn map(list: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in list {
            m.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        m
    }

    #[test]
    fn ranges() {
        assert_eq!(
            range(&map(&[("x-ms-range", "bytes=0-33554431")])).unwrap(),
            Some((0, Some(33554431)))
        );
        assert_eq!(
            range(&map(&[("range", "bytes=5-")])).unwrap(),
            Some((5, None))
        );
        assert_eq!(range(&map(&[("range", "bytes=5-1")])).unwrap(), None);
        assert_eq!(
            range(&map(&[("range", "items=1-2"), ("x-ms-range", "bytes=1-2")])).unwrap(),
            Some((1, Some(2)))
        );
        assert!(range(&map(&[("x-ms-range", "bytes=9-1")])).is_err());
        assert_eq!(resolve_range((0, Some(33554431)), 1024).unwrap(), (0, 1023));
        assert_eq!(resolve_range((100, Some(149)), 1024).unwrap(), (100, 149));
        let err = resolve_range((0, Some(10)), 0).unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidRange);
        assert_eq!(err.headers[0].1, "bytes */0");
    }

    #[test]
    fn metadata_rules() {
        let m = metadata(&map(&[
            ("x-ms-meta-idx", "0"),
            ("x-ms-meta-_ok2", "v"),
            ("x-ms-date", "d"),
        ]))
        .unwrap();
        assert_eq!(
            m,
            vec![("idx".into(), "0".into()), ("_ok2".into(), "v".into())]
        );
        assert_eq!(
            metadata(&map(&[("x-ms-meta-1bad", "x")])).unwrap_err().code,
            ErrorCode::InvalidMetadata
        );
        assert_eq!(
            metadata(&map(&[("x-ms-meta-a-b", "x")])).unwrap_err().code,
            ErrorCode::InvalidMetadata
        );
        let big = "x".repeat(MAX_METADATA_BYTES);
        assert_eq!(
            metadata(&map(&[("x-ms-meta-big", &big)])).unwrap_err().code,
            ErrorCode::InvalidMetadata
        );
    }

    #[test]
    fn dates() {
        assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        let c = conditions(
            &map(&[("if-modified-since", "Thu, 01 Jan 1970 00:01:00 GMT")]),
            "",
        )
        .unwrap();
        assert_eq!(c.if_modified_since, Some(60));
        assert!(conditions(&map(&[("if-modified-since", "soon")]), "").is_err());
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn resolved_ranges_stay_inside_the_blob(start in 0u64..2000, len in proptest::option::of(0u64..2000), size in 0u64..2000) {
            let end = len.map(|l| start + l);
            match resolve_range((start, end), size) {
                Ok((a, b)) => {
                    prop_assert!(a <= b && b < size && a == start);
                    if let Some(e) = end { prop_assert!(b <= e); }
                }
                Err(e) => prop_assert!(start >= size && e.code == ErrorCode::InvalidRange),
            }
        }
    }
}
