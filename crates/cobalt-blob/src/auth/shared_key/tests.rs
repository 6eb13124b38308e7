//! Vectors captured from the official SDKs (../shared/reference/wire/blob-wire-*.txt): each
//! request's headers, and the signature the SDK sent with the development key.

use http::{HeaderMap, HeaderName, HeaderValue, Method};

use super::*;
use crate::request::Query;
use cobalt_model::{AccountKey, DEV_ACCOUNT_KEY};

fn headers(list: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in list {
        map.append(
            HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    map
}

fn sign(s: &str) -> String {
    AccountKey::from_base64("devstoreaccount1", DEV_ACCOUNT_KEY)
        .unwrap()
        .sign(s)
}

#[test]
fn reference_create_container_string() {
    // blob-rest.md §3.1, captured request #1 of the v12 log.
    let h = headers(&[
        ("x-ms-version", "2026-10-06"),
        ("x-ms-date", "Sat, 21 Nov 2026 04:16:05 GMT"),
        (
            "x-ms-client-request-id",
            "452cc3d0-c68f-11f0-9a73-02fc00000001",
        ),
        ("Content-Length", "0"),
    ]);
    let q = Query::parse(Some("restype=container")).unwrap();
    let s = string_to_sign(
        &Method::PUT,
        &h,
        "devstoreaccount1",
        "/devstoreaccount1/wirev12",
        &q,
        HeaderOrder::Ordinal,
    );
    assert_eq!(
        s,
        "PUT\n\n\n\n\n\n\n\n\n\n\n\nx-ms-client-request-id:452cc3d0-c68f-11f0-9a73-02fc00000001\n\
         x-ms-date:Sat, 21 Nov 2026 04:16:05 GMT\nx-ms-version:2026-10-06\n\
         /devstoreaccount1/devstoreaccount1/wirev12\nrestype:container"
    );
}

#[test]
fn legacy_create_container_signature() {
    // blob-wire-legacy.txt #1: the signature the legacy SDK sent.
    let h = headers(&[
        ("x-ms-version", "2019-02-02"),
        (
            "x-ms-client-request-id",
            "6e4a74a6-e562-11f1-9a73-02fc00000001",
        ),
        ("x-ms-date", "Sat, 21 Nov 2026 04:17:14 GMT"),
        ("Content-Length", "0"),
    ]);
    let q = Query::parse(Some("restype=container")).unwrap();
    let s = string_to_sign(
        &Method::PUT,
        &h,
        "devstoreaccount1",
        "/devstoreaccount1/wirelegacy",
        &q,
        HeaderOrder::Ordinal,
    );
    assert_eq!(sign(&s), "32nNNfE+MqTxNQTLdDexsL7gv1VNGoBROKOJ0gtZI6E=");
}

#[test]
fn legacy_put_blob_signature() {
    // blob-wire-legacy.txt #4: Put Blob of 1 KiB, Content-Length signed as is.
    let h = headers(&[
        ("x-ms-blob-type", "BlockBlob"),
        ("Content-Length", "1024"),
        ("x-ms-version", "2019-02-02"),
        (
            "x-ms-client-request-id",
            "6e5a4746-e562-11f1-9a73-02fc00000001",
        ),
        ("x-ms-date", "Sat, 21 Nov 2026 04:17:14 GMT"),
    ]);
    let q = Query::parse(None).unwrap();
    let s = string_to_sign(
        &Method::PUT,
        &h,
        "devstoreaccount1",
        "/devstoreaccount1/wirelegacy/small.bin",
        &q,
        HeaderOrder::Ordinal,
    );
    assert_eq!(sign(&s), "P1lM0jNA/y/JpQVIrkvFSdOgg/cfmljy+i1+8j0tioo=");
}

#[test]
fn query_values_are_decoded_sorted_and_grouped() {
    let q = Query::parse(Some(
        "comp=list&include=metadata&include=copy&Prefix=a%2Fb&marker=",
    ))
    .unwrap();
    assert_eq!(
        canonicalized_resource("acct", "/acct/c", &q),
        "/acct/acct/c\ncomp:list\ninclude:copy,metadata\nmarker:\nprefix:a/b"
    );
}

#[test]
fn header_orders_differ_only_for_odd_names() {
    let h = headers(&[
        ("x-ms-meta-a-b", "1"),
        ("x-ms-meta-a_b", "2"),
        ("x-ms-meta-aa", "3"),
        ("x-ms-date", "d"),
    ]);
    assert_eq!(
        canonicalized_headers(&h, HeaderOrder::Ordinal),
        "x-ms-date:d\nx-ms-meta-a-b:1\nx-ms-meta-a_b:2\nx-ms-meta-aa:3\n"
    );
    assert_eq!(
        canonicalized_headers(&h, HeaderOrder::IgnoreHyphen),
        "x-ms-date:d\nx-ms-meta-a_b:2\nx-ms-meta-aa:3\nx-ms-meta-a-b:1\n"
    );
}

#[test]
fn lite_string() {
    let h = headers(&[("x-ms-date", "d"), ("Content-Type", "text/plain")]);
    let q = Query::parse(Some("comp=metadata&restype=container")).unwrap();
    assert_eq!(
        string_to_sign_lite(&Method::PUT, &h, "acct", "/acct/c", &q),
        "PUT\n\ntext/plain\n\nx-ms-date:d\n/acct/acct/c?comp=metadata"
    );
}
