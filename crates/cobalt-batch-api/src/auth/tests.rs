//! The reference's SharedKey vectors, and a replay of every request the official SDKs sent in
//! ../shared/reference/wire/batch-wire-log.txt (azure-batch 4.0.0, 14.2.0, 15.1.0 and
//! @azure/batch 10.2.0), each of which must verify, except the log's deliberate wrong-key ones.

use super::*;
use cobalt_model::{AccountKey, Accounts};
use http::{HeaderName, HeaderValue};

const KEY: &str = "YmF0Y2gtbW9jay1zaGFyZWQta2V5LTAxMjM0NTY3ODk=";

fn account() -> Account {
    let mut accounts = Accounts::default();
    accounts
        .extend_from_spec(&format!("testaccount:{KEY}"))
        .unwrap();
    accounts.get("testaccount").unwrap().clone()
}

fn headers(list: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (k, v) in list {
        map.append(
            HeaderName::from_bytes(k.to_ascii_lowercase().as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    map
}

fn at(date: &str) -> DateTime<Utc> {
    httpdate::parse_http_date(date).unwrap().into()
}

const DATE: &str = "Fri, 17 Feb 2017 00:00:00 GMT";

#[test]
fn reference_vectors() {
    let key = AccountKey::from_base64("testaccount", KEY).unwrap();
    let cases = [
        (
            Method::GET,
            "/jobs/job1/tasks",
            "api-version=2024-02-01.19.0&$filter=state%20eq%20%27completed%27&$select=id%2Cstate&maxresults=2&timeout=30",
            vec![],
            "GET\n\n\n\n\n\n\n\n\n\n\n\nocp-date:Fri, 17 Feb 2017 00:00:00 GMT\n/testaccount/jobs/job1/tasks\n$filter:state eq 'completed'\n$select:id,state\napi-version:2024-02-01.19.0\nmaxresults:2\ntimeout:30",
            "hHiSRIJ7aiCC2wbMmPctYNSxSRweZQk3vmbvJF9jdUU=",
        ),
        (
            Method::POST,
            "/jobs",
            "api-version=2024-02-01.19.0",
            vec![
                ("Content-Length", "47"),
                (
                    "Content-Type",
                    "application/json; odata=minimalmetadata; charset=utf-8",
                ),
            ],
            "POST\n\n\n47\n\napplication/json; odata=minimalmetadata; charset=utf-8\n\n\n\n\n\n\nocp-date:Fri, 17 Feb 2017 00:00:00 GMT\n/testaccount/jobs\napi-version:2024-02-01.19.0",
            "X41QHNAEsUEpQMPEO3GqS86Pg6o4pfgGUQrz7iQHx1Q=",
        ),
        (
            Method::DELETE,
            "/pools/pool1",
            "api-version=2024-02-01.19.0",
            vec![("Content-Length", "0")],
            "DELETE\n\n\n0\n\n\n\n\n\n\n\n\nocp-date:Fri, 17 Feb 2017 00:00:00 GMT\n/testaccount/pools/pool1\napi-version:2024-02-01.19.0",
            "cKd71xXV3r+E9gBlMaoTAwZuF3BAbWMbxbYsJgK+f7M=",
        ),
    ];
    for (method, path, query, extra, expected, signature) in cases {
        let mut list = vec![("ocp-date", DATE)];
        list.extend(extra);
        let h = headers(&list);
        let req = SignedRequest {
            method: &method,
            headers: &h,
            raw_path: path,
            raw_query: Some(query),
        };
        let strings = strings_to_sign(&req, "testaccount");
        assert_eq!(strings[0], expected);
        assert_eq!(key.sign(expected), signature);
        let mut signed = h.clone();
        signed.insert(
            "authorization",
            format!("SharedKey testaccount:{signature}")
                .parse()
                .unwrap(),
        );
        let req = SignedRequest {
            headers: &signed,
            ..req
        };
        assert_eq!(verify(&req, &account(), at(DATE)), Ok(()));
    }
}

#[test]
fn refusals() {
    let sign = |method: &Method, h: &HeaderMap| {
        let req = SignedRequest {
            method,
            headers: h,
            raw_path: "/pools",
            raw_query: Some("api-version=2024-02-01.19.0"),
        };
        AccountKey::from_base64("testaccount", KEY)
            .unwrap()
            .sign(&strings_to_sign(&req, "testaccount")[0])
    };
    let mut h = headers(&[("ocp-date", DATE)]);
    let sig = sign(&Method::GET, &h);
    h.insert(
        "authorization",
        format!("SharedKey testaccount:{sig}").parse().unwrap(),
    );
    let req = SignedRequest {
        method: &Method::GET,
        headers: &h,
        raw_path: "/pools",
        raw_query: Some("api-version=2024-02-01.19.0"),
    };
    assert_eq!(verify(&req, &account(), at(DATE)), Ok(()));
    // 14 minutes late is fine; 16 is not, in either direction.
    assert_eq!(
        verify(&req, &account(), at(DATE) + chrono::Duration::minutes(14)),
        Ok(())
    );
    assert!(matches!(
        verify(&req, &account(), at(DATE) + chrono::Duration::minutes(16)),
        Err(AuthError::Stale(_))
    ));
    assert!(matches!(
        verify(&req, &account(), at(DATE) - chrono::Duration::minutes(16)),
        Err(AuthError::Stale(_))
    ));
    // The same signature on another path fails, and says what was signed.
    let other = SignedRequest {
        raw_path: "/jobs",
        ..req
    };
    match verify(&other, &account(), at(DATE)) {
        Err(AuthError::BadSignature { string_to_sign, .. }) => {
            assert!(string_to_sign.ends_with("/testaccount/jobs\napi-version:2024-02-01.19.0"))
        }
        other => panic!("{other:?}"),
    }
    let mut wrong = h.clone();
    wrong.insert(
        "authorization",
        format!("SharedKey otheraccount:{sig}").parse().unwrap(),
    );
    let r = SignedRequest {
        headers: &wrong,
        ..req
    };
    assert_eq!(
        verify(&r, &account(), at(DATE)),
        Err(AuthError::WrongAccount("otheraccount".into()))
    );
    wrong.insert("authorization", "Bearer token".parse().unwrap());
    let r = SignedRequest {
        headers: &wrong,
        ..req
    };
    assert_eq!(verify(&r, &account(), at(DATE)), Err(AuthError::Malformed));
    let none = headers(&[("ocp-date", DATE)]);
    let r = SignedRequest {
        headers: &none,
        ..req
    };
    assert_eq!(verify(&r, &account(), at(DATE)), Err(AuthError::Missing));
}

/// One request of the wire log.
struct Logged {
    line: usize,
    method: Method,
    path: String,
    query: Option<String>,
    headers: HeaderMap,
    expect_ok: bool,
}

fn wire_log() -> Vec<Logged> {
    // ../shared beside the repository, or wherever COBALT_SHARED_DIR says.
    let shared = std::env::var("COBALT_SHARED_DIR")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared").to_owned());
    let path = format!("{shared}/reference/wire/batch-wire-log.txt");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("the SDK wire log {path} is needed: {e}"));
    let mut out: Vec<Logged> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if let Some(request) = line.strip_prefix(">>> [") {
            let (_, rest) = request.split_once("] ").unwrap();
            let (method, target) = rest.split_once(' ').unwrap();
            let (path, query) = match target.split_once('?') {
                Some((p, q)) => (p.to_owned(), Some(q.to_owned())),
                None => (target.to_owned(), None),
            };
            out.push(Logged {
                line: i + 1,
                method: method.parse().unwrap(),
                path,
                query,
                headers: HeaderMap::new(),
                expect_ok: true,
            });
        } else if let (Some(current), Some(header)) = (out.last_mut(), line.strip_prefix("> ")) {
            let Some((name, value)) = header.split_once(": ") else {
                continue;
            };
            if matches!(name, "path" | "query" | "body") {
                continue;
            }
            current.headers.append(
                HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        } else if line.starts_with("# auth: MISMATCH") {
            out.last_mut().unwrap().expect_ok = false;
        }
    }
    out
}

#[test]
fn every_request_the_sdks_sent_verifies() {
    let requests = wire_log();
    assert!(
        requests.len() > 120,
        "only {} requests in the wire log",
        requests.len()
    );
    let mut checked = 0;
    for r in requests
        .iter()
        .filter(|r| r.headers.contains_key("authorization"))
    {
        let date = r.headers["ocp-date"].to_str().unwrap();
        let req = SignedRequest {
            method: &r.method,
            headers: &r.headers,
            raw_path: &r.path,
            raw_query: r.query.as_deref(),
        };
        let result = verify(&req, &account(), at(date));
        if r.expect_ok {
            assert_eq!(
                result,
                Ok(()),
                "request at line {}: {} {}",
                r.line,
                r.method,
                r.path
            );
        } else {
            assert!(
                matches!(result, Err(AuthError::BadSignature { .. })),
                "line {}",
                r.line
            );
        }
        checked += 1;
    }
    assert_eq!(checked, 142);
}
