//! Request addressing: which account, container and blob a URL names, its decoded query, and
//! the closed set of operations this service answers.

use http::{HeaderMap, Method};
use percent_encoding::percent_decode_str;

use crate::error::{ErrorCode, StorageError, StorageResult};

/// Longest blob name Azure accepts, in characters.
pub const MAX_BLOB_NAME_CHARS: usize = 1024;

/// What a request addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The account name.
    pub account: String,
    /// The container, if the path names one.
    pub container: Option<String>,
    /// The blob (decoded), if the path names one.
    pub blob: Option<String>,
}

/// A request's query string, decoded. Names compare case-insensitively.
#[derive(Clone, Debug, Default)]
pub struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    /// Parses a raw query string. `+` stays `+` (Azure signatures contain it unencoded).
    pub fn parse(raw: Option<&str>) -> StorageResult<Self> {
        let mut pairs = Vec::new();
        for part in raw.unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
            let (name, value) = part.split_once('=').unwrap_or((part, ""));
            let name = decode(name).ok_or_else(|| StorageError::bad_query(name, value))?;
            let value = decode(value).ok_or_else(|| StorageError::bad_query(&name, value))?;
            pairs.push((name, value));
        }
        Ok(Self { pairs })
    }

    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every (name, value) pair in order.
    pub fn pairs(&self) -> &[(String, String)] {
        &self.pairs
    }
}

fn decode(s: &str) -> Option<String> {
    percent_decode_str(s)
        .decode_utf8()
        .ok()
        .map(|c| c.into_owned())
}

/// Splits a raw (still percent-encoded) path into account, container and blob.
///
/// `is_account` says whether a first path segment names a known account. When it does not,
/// the request belongs to `default_account` and the first segment is the container: the legacy
/// Python SDK sends follow-up downloads as `/container/blob` on path-style endpoints.
pub fn parse_target(
    raw_path: &str,
    host_account: Option<&str>,
    default_account: &str,
    is_account: impl Fn(&str) -> bool,
) -> StorageResult<Target> {
    let rest = raw_path.strip_prefix('/').unwrap_or(raw_path);
    let (account, rest) = match host_account {
        Some(account) => (account.to_owned(), rest),
        None => {
            let (first, after) = rest.split_once('/').unwrap_or((rest, ""));
            let first_decoded =
                decode(first).ok_or_else(|| StorageError::new(ErrorCode::InvalidUri))?;
            if is_account(&first_decoded) {
                (first_decoded, after)
            } else {
                (default_account.to_owned(), rest)
            }
        }
    };
    let (container_raw, blob_raw) = match rest.split_once('/') {
        Some((c, b)) => (c, Some(b)),
        None => (rest, None),
    };
    if container_raw.is_empty() {
        if blob_raw.is_some_and(|b| !b.is_empty()) {
            return Err(ErrorCode::InvalidUri.into());
        }
        return Ok(Target {
            account,
            container: None,
            blob: None,
        });
    }
    let container =
        decode(container_raw).ok_or_else(|| StorageError::new(ErrorCode::InvalidUri))?;
    validate_container_name(&container)?;
    let blob = match blob_raw {
        None | Some("") => None,
        Some(raw) => {
            let name = decode(raw).ok_or_else(|| StorageError::new(ErrorCode::InvalidUri))?;
            validate_blob_name(&name)?;
            Some(name)
        }
    };
    Ok(Target {
        account,
        container: Some(container),
        blob,
    })
}

/// Azure's container name rules: 3-63 characters of lowercase letters, digits and single
/// hyphens, starting and ending with a letter or digit; or `$root`, `$logs`, `$web`.
pub fn validate_container_name(name: &str) -> StorageResult<()> {
    if matches!(name, "$root" | "$logs" | "$web") {
        return Ok(());
    }
    let bytes = name.as_bytes();
    let ok = (3..=63).contains(&bytes.len())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
        && !name.contains("--");
    if ok {
        Ok(())
    } else {
        Err(StorageError::new(ErrorCode::InvalidResourceName))
    }
}

/// Azure's blob name rules as far as a server can check them: 1-1024 characters, no control
/// characters, no `.`/`..` path segments (which an HTTP stack would resolve away).
pub fn validate_blob_name(name: &str) -> StorageResult<()> {
    let chars = name.chars().count();
    if chars == 0 || chars > MAX_BLOB_NAME_CHARS {
        return Err(ErrorCode::InvalidResourceName.into());
    }
    if name
        .chars()
        .any(|c| c.is_control() || c == '\u{FFFE}' || c == '\u{FFFF}')
    {
        return Err(ErrorCode::InvalidResourceName.into());
    }
    if name.split('/').any(|seg| seg == "." || seg == "..") {
        return Err(ErrorCode::InvalidUri.into());
    }
    Ok(())
}

/// Every operation the service answers. Resolved once per request from method, path and query.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    /// `GET /?comp=list`
    ListContainers,
    /// `GET /?restype=service&comp=properties`
    GetServiceProperties,
    /// `PUT /?restype=service&comp=properties`
    SetServiceProperties,
    /// `GET|HEAD /?restype=account&comp=properties`
    GetAccountInfo,
    /// `PUT /c?restype=container`
    CreateContainer,
    /// `DELETE /c?restype=container`
    DeleteContainer,
    /// `GET|HEAD /c?restype=container`
    GetContainerProperties,
    /// `GET|HEAD /c?restype=container&comp=metadata`
    GetContainerMetadata,
    /// `PUT /c?restype=container&comp=metadata`
    SetContainerMetadata,
    /// `GET|HEAD /c?restype=container&comp=acl`
    GetContainerAcl,
    /// `PUT /c?restype=container&comp=acl`
    SetContainerAcl,
    /// `GET /c?restype=container&comp=list`
    ListBlobs,
    /// `PUT /c/b`
    PutBlob,
    /// `PUT /c/b` with `x-ms-copy-source`
    CopyBlob,
    /// `PUT /c/b?comp=block`
    PutBlock,
    /// `PUT /c/b?comp=blocklist`
    PutBlockList,
    /// `PUT /c/b?comp=appendblock`
    AppendBlock,
    /// `GET /c/b?comp=blocklist`
    GetBlockList,
    /// `GET /c/b`
    GetBlob,
    /// `HEAD /c/b`
    GetBlobProperties,
    /// `PUT /c/b?comp=properties`
    SetBlobProperties,
    /// `GET|HEAD /c/b?comp=metadata`
    GetBlobMetadata,
    /// `PUT /c/b?comp=metadata`
    SetBlobMetadata,
    /// `DELETE /c/b`
    DeleteBlob,
}

/// The resource level an operation acts on (an account SAS's `srt`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// `s`: the service.
    Service,
    /// `c`: a container.
    Container,
    /// `o`: a blob.
    Object,
}

impl Operation {
    /// Resolves the operation, or the Azure error for a request that names none.
    pub fn resolve(
        method: &Method,
        target: &Target,
        query: &Query,
        headers: &HeaderMap,
    ) -> StorageResult<Self> {
        use Operation::*;
        let restype = query.get("restype");
        let comp = query.get("comp");
        let read = *method == Method::GET || *method == Method::HEAD;
        let unsupported_verb = || StorageError::new(ErrorCode::UnsupportedHttpVerb);
        let bad_comp = |c: &str| StorageError::bad_query("comp", c);
        match (&target.container, &target.blob) {
            (None, _) => match (restype, comp) {
                (_, Some("list")) if *method == Method::GET => Ok(ListContainers),
                (Some("service"), Some("properties")) if *method == Method::GET => {
                    Ok(GetServiceProperties)
                }
                (Some("service"), Some("properties")) if *method == Method::PUT => {
                    Ok(SetServiceProperties)
                }
                (Some("account"), Some("properties")) if read => Ok(GetAccountInfo),
                (_, Some("list")) | (Some("service" | "account"), Some("properties")) => {
                    Err(unsupported_verb())
                }
                (_, Some(c)) => Err(bad_comp(c)),
                (Some(r), None) => Err(StorageError::bad_query("restype", r)),
                (None, None) => Err(StorageError::new(ErrorCode::InvalidQueryParameterValue)
                    .with_detail("QueryParameterName", "comp")
                    .with_message(
                        "The requested URI does not represent any resource on the server.",
                    )),
            },
            (Some(_), None) => {
                if restype == Some("account") && comp == Some("properties") && read {
                    return Ok(GetAccountInfo);
                }
                if restype != Some("container") {
                    // `GET /c` without restype addresses a blob in `$root` on Azure.
                    return Err(match restype {
                        Some(r) => StorageError::bad_query("restype", r),
                        None => StorageError::new(ErrorCode::InvalidUri),
                    });
                }
                match (method.as_str(), comp) {
                    ("PUT", None) => Ok(CreateContainer),
                    ("DELETE", None) => Ok(DeleteContainer),
                    ("GET" | "HEAD", None) => Ok(GetContainerProperties),
                    ("GET" | "HEAD", Some("metadata")) => Ok(GetContainerMetadata),
                    ("PUT", Some("metadata")) => Ok(SetContainerMetadata),
                    ("GET" | "HEAD", Some("acl")) => Ok(GetContainerAcl),
                    ("PUT", Some("acl")) => Ok(SetContainerAcl),
                    ("GET", Some("list")) => Ok(ListBlobs),
                    (_, None | Some("metadata" | "acl" | "list")) => Err(unsupported_verb()),
                    (_, Some("lease")) => Err(StorageError::new(ErrorCode::NotImplemented)
                        .with_message("Cobalt does not implement container leases.")),
                    (_, Some(c)) => Err(bad_comp(c)),
                }
            }
            (Some(_), Some(_)) => match (method.as_str(), comp) {
                ("PUT", Some(c @ ("block" | "appendblock")))
                    if headers.contains_key("x-ms-copy-source") =>
                {
                    Err(
                        StorageError::new(ErrorCode::NotImplemented).with_message(format!(
                            "Cobalt does not implement comp={c} from a copy source URL yet."
                        )),
                    )
                }
                ("PUT", None) if headers.contains_key("x-ms-copy-source") => Ok(CopyBlob),
                ("PUT", None) => Ok(PutBlob),
                ("PUT", Some("block")) => Ok(PutBlock),
                ("PUT", Some("blocklist")) => Ok(PutBlockList),
                ("PUT", Some("appendblock")) => Ok(AppendBlock),
                ("GET", Some("blocklist")) => Ok(GetBlockList),
                ("GET", None) => Ok(GetBlob),
                ("HEAD", None) => Ok(GetBlobProperties),
                ("PUT", Some("properties")) => Ok(SetBlobProperties),
                ("GET" | "HEAD", Some("metadata")) => Ok(GetBlobMetadata),
                ("PUT", Some("metadata")) => Ok(SetBlobMetadata),
                ("DELETE", None) => Ok(DeleteBlob),
                (
                    _,
                    None | Some("block" | "blocklist" | "appendblock" | "properties" | "metadata"),
                ) => Err(unsupported_verb()),
                (
                    _,
                    Some(
                        c @ ("lease"
                        | "snapshot"
                        | "tier"
                        | "page"
                        | "pagelist"
                        | "tags"
                        | "undelete"
                        | "copy"
                        | "query"
                        | "seal"
                        | "expiry"
                        | "immutabilityPolicies"
                        | "legalhold"),
                    ),
                ) => Err(StorageError::new(ErrorCode::NotImplemented)
                    .with_message(format!("Cobalt does not implement comp={c} yet."))),
                (_, Some(c)) => Err(bad_comp(c)),
            },
        }
    }

    /// The resource level the operation acts on.
    pub fn level(self) -> Level {
        use Operation::*;
        match self {
            ListContainers | GetServiceProperties | SetServiceProperties | GetAccountInfo => {
                Level::Service
            }
            CreateContainer
            | DeleteContainer
            | GetContainerProperties
            | GetContainerMetadata
            | SetContainerMetadata
            | GetContainerAcl
            | SetContainerAcl
            | ListBlobs => Level::Container,
            _ => Level::Object,
        }
    }

    /// SAS permission letters of which any one allows the operation.
    pub fn sas_permissions(self) -> &'static str {
        use Operation::*;
        match self {
            ListContainers | ListBlobs => "l",
            GetServiceProperties
            | GetContainerProperties
            | GetContainerMetadata
            | GetContainerAcl
            | GetBlockList
            | GetBlob
            | GetBlobProperties
            | GetBlobMetadata => "r",
            GetAccountInfo => "racwdl",
            SetServiceProperties | SetContainerMetadata | SetContainerAcl | SetBlobProperties
            | SetBlobMetadata => "w",
            CreateContainer | PutBlob | CopyBlob | PutBlock | PutBlockList => "wc",
            DeleteContainer | DeleteBlob => "d",
            AppendBlock => "aw",
        }
    }

    /// Whether an anonymous request may run it on a container with this public access level.
    pub fn allowed_anonymously(self, public_access: Option<PublicAccess>) -> bool {
        use Operation::*;
        match public_access {
            Some(PublicAccess::Container) => matches!(
                self,
                GetBlob
                    | GetBlobProperties
                    | GetBlobMetadata
                    | GetBlockList
                    | ListBlobs
                    | GetContainerProperties
                    | GetContainerMetadata
            ),
            Some(PublicAccess::Blob) => matches!(
                self,
                GetBlob | GetBlobProperties | GetBlobMetadata | GetBlockList
            ),
            None => false,
        }
    }
}

/// A container's public access level (`x-ms-blob-public-access`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PublicAccess {
    /// Anonymous clients may list the container and read its blobs.
    Container,
    /// Anonymous clients may read blobs.
    Blob,
}

impl PublicAccess {
    /// Parses the header value; `None` for a private container.
    pub fn parse(value: Option<&str>) -> StorageResult<Option<Self>> {
        match value.map(str::trim) {
            None | Some("") => Ok(None),
            Some(v) if v.eq_ignore_ascii_case("container") => Ok(Some(Self::Container)),
            Some(v) if v.eq_ignore_ascii_case("blob") => Ok(Some(Self::Blob)),
            Some(v) => Err(StorageError::bad_header("x-ms-blob-public-access", v)),
        }
    }

    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Container => "container",
            Self::Blob => "blob",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(path: &str) -> StorageResult<Target> {
        parse_target(path, None, "devstoreaccount1", |a| a == "devstoreaccount1")
    }

    fn t(container: Option<&str>, blob: Option<&str>) -> Target {
        Target {
            account: "devstoreaccount1".into(),
            container: container.map(Into::into),
            blob: blob.map(Into::into),
        }
    }

    #[test]
    fn paths() {
        assert_eq!(target("/devstoreaccount1").unwrap(), t(None, None));
        assert_eq!(target("/devstoreaccount1/").unwrap(), t(None, None));
        assert_eq!(
            target("/devstoreaccount1/cont").unwrap(),
            t(Some("cont"), None)
        );
        assert_eq!(
            target("/devstoreaccount1/cont/a/b%20c.txt").unwrap(),
            t(Some("cont"), Some("a/b c.txt"))
        );
        assert_eq!(
            target("/devstoreaccount1/cont/a%2Fb").unwrap(),
            t(Some("cont"), Some("a/b"))
        );
        // The legacy SDK's follow-up GETs omit the account.
        assert_eq!(target("/cont/blob").unwrap(), t(Some("cont"), Some("blob")));
        assert_eq!(target("/").unwrap(), t(None, None));
    }

    #[test]
    fn bad_paths() {
        for (path, code) in [
            ("/devstoreaccount1/Cont", ErrorCode::InvalidResourceName),
            ("/devstoreaccount1/a--b", ErrorCode::InvalidResourceName),
            ("/devstoreaccount1/ab", ErrorCode::InvalidResourceName),
            (
                "/devstoreaccount1/cont%2Fx/b",
                ErrorCode::InvalidResourceName,
            ),
            (
                "/devstoreaccount1/cont/../etc/passwd",
                ErrorCode::InvalidUri,
            ),
            ("/devstoreaccount1/cont/a/%2E%2E/b", ErrorCode::InvalidUri),
            (
                "/devstoreaccount1/cont/a%00b",
                ErrorCode::InvalidResourceName,
            ),
            ("/devstoreaccount1/cont/%FF", ErrorCode::InvalidUri),
            ("/devstoreaccount1//blob", ErrorCode::InvalidUri),
        ] {
            assert_eq!(target(path).unwrap_err().code, code, "{path}");
        }
        let long = format!("/devstoreaccount1/cont/{}", "x".repeat(1025));
        assert_eq!(
            target(&long).unwrap_err().code,
            ErrorCode::InvalidResourceName
        );
    }

    #[test]
    fn query_keeps_plus_and_decodes() {
        let q = Query::parse(Some("sig=a+b%2Bc%2F&comp=list&empty=")).unwrap();
        assert_eq!(q.get("sig"), Some("a+b+c/"));
        assert_eq!(q.get("COMP"), Some("list"));
        assert_eq!(q.get("empty"), Some(""));
        assert_eq!(q.get("missing"), None);
    }

    #[test]
    fn operations() {
        let h = HeaderMap::new();
        let q = |s: &str| Query::parse(Some(s)).unwrap();
        let c = t(Some("c1c"), None);
        let b = t(Some("c1c"), Some("b"));
        let s = t(None, None);
        assert_eq!(
            Operation::resolve(&Method::GET, &s, &q("comp=list"), &h).unwrap(),
            Operation::ListContainers
        );
        assert_eq!(
            Operation::resolve(&Method::PUT, &c, &q("restype=container"), &h).unwrap(),
            Operation::CreateContainer
        );
        assert_eq!(
            Operation::resolve(&Method::GET, &c, &q("restype=container&comp=list"), &h).unwrap(),
            Operation::ListBlobs
        );
        assert_eq!(
            Operation::resolve(&Method::PUT, &b, &q("comp=block&blockid=x"), &h).unwrap(),
            Operation::PutBlock
        );
        assert_eq!(
            Operation::resolve(&Method::HEAD, &b, &q(""), &h).unwrap(),
            Operation::GetBlobProperties
        );
        assert_eq!(
            Operation::resolve(&Method::POST, &b, &q(""), &h)
                .unwrap_err()
                .code,
            ErrorCode::UnsupportedHttpVerb
        );
        assert_eq!(
            Operation::resolve(&Method::GET, &b, &q("comp=bogus"), &h)
                .unwrap_err()
                .code,
            ErrorCode::InvalidQueryParameterValue
        );
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn addressing_never_panics_and_only_yields_valid_names(path in "/[ -~]{0,80}", query in "[ -~]{0,80}") {
            let _ = Query::parse(Some(&query));
            if let Ok(t) = parse_target(&path, None, "devstoreaccount1", |a| a == "devstoreaccount1") {
                if let Some(c) = &t.container {
                    prop_assert!(validate_container_name(c).is_ok());
                }
                if let Some(b) = &t.blob {
                    prop_assert!(validate_blob_name(b).is_ok());
                    prop_assert!(!b.split('/').any(|s| s == ".." || s == "."));
                }
            }
        }

        #[test]
        fn query_values_round_trip(value in "\\PC{0,40}") {
            let encoded: String = percent_encoding::utf8_percent_encode(&value, percent_encoding::NON_ALPHANUMERIC).to_string();
            let q = Query::parse(Some(&format!("sig={encoded}&comp=list"))).unwrap();
            prop_assert_eq!(q.get("sig"), Some(value.as_str()));
        }
    }
}
