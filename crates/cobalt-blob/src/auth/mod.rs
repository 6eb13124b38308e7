//! Authentication and authorization of Blob requests: SharedKey / SharedKeyLite, service and
//! account SAS, and anonymous access to public containers.
//!
//! Keys are compared in constant time (see `cobalt_model::AccountKey`) and never logged.

pub mod sas;
pub mod shared_key;

use chrono::{DateTime, Utc};
use http::{HeaderMap, Method};

use crate::error::{ErrorCode, StorageError, StorageResult};
use crate::request::{Level, Operation, Query, Target};
use crate::xml::SignedIdentifier;
use cobalt_model::Account;
use sas::Sas;
use shared_key::HeaderOrder;

/// How far a request's date may be from the server's clock.
const MAX_CLOCK_SKEW: chrono::Duration = chrono::Duration::minutes(15);

/// Who a request acts as, once authenticated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Principal {
    /// Signed with an account key: may do anything in the account.
    Key,
    /// A SAS that allows this operation.
    Sas(SasGrant),
    /// No credentials; allowed by the container's public access level.
    Anonymous,
}

/// What a SAS allows beyond the operation check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SasGrant {
    /// Only `c` (create) among write permissions: existing blobs may not be overwritten.
    pub create_only: bool,
    /// `rscc`...`rsct` response header overrides (empty strings when unset).
    pub overrides: [String; 5],
}

/// Everything authentication looks at.
pub struct AuthRequest<'a> {
    /// The HTTP method.
    pub method: &'a Method,
    /// The request headers.
    pub headers: &'a HeaderMap,
    /// The path exactly as sent (still percent-encoded).
    pub raw_path: &'a str,
    /// The decoded query.
    pub query: &'a Query,
    /// What the request addresses.
    pub target: &'a Target,
    /// The operation.
    pub operation: Operation,
    /// The client's address.
    pub remote_ip: std::net::IpAddr,
}

fn auth_failed(detail: impl Into<String>) -> StorageError {
    StorageError::new(ErrorCode::AuthenticationFailed)
        .with_detail("AuthenticationErrorDetail", detail)
}

/// Verifies an `Authorization: SharedKey|SharedKeyLite account:signature` header.
pub fn verify_shared_key(
    req: &AuthRequest<'_>,
    account: &Account,
    authorization: &str,
) -> StorageResult<Principal> {
    let (scheme, credential) = authorization
        .trim()
        .split_once(' ')
        .ok_or_else(|| StorageError::new(ErrorCode::InvalidAuthenticationInfo))?;
    let (name, signature) = credential
        .trim()
        .rsplit_once(':')
        .ok_or_else(|| StorageError::new(ErrorCode::InvalidAuthenticationInfo))?;
    if name != account.name {
        return Err(auth_failed(format!(
            "The account {name} in the Authorization header does not match the account {} of the request.",
            account.name
        )));
    }
    check_request_date(req.headers)?;
    let candidates: Vec<String> = match scheme {
        "SharedKey" => {
            let ordinal = shared_key::string_to_sign(
                req.method,
                req.headers,
                &account.name,
                req.raw_path,
                req.query,
                HeaderOrder::Ordinal,
            );
            let alternative = shared_key::string_to_sign(
                req.method,
                req.headers,
                &account.name,
                req.raw_path,
                req.query,
                HeaderOrder::IgnoreHyphen,
            );
            if alternative == ordinal {
                vec![ordinal]
            } else {
                vec![ordinal, alternative]
            }
        }
        "SharedKeyLite" => vec![shared_key::string_to_sign_lite(
            req.method,
            req.headers,
            &account.name,
            req.raw_path,
            req.query,
        )],
        "Bearer" => {
            return Err(auth_failed(
                "Cobalt accepts SharedKey and SAS credentials; OAuth bearer tokens are not supported.",
            ));
        }
        _ => return Err(StorageError::new(ErrorCode::InvalidAuthenticationInfo)),
    };
    if candidates.iter().any(|s| account.verify(s, signature)) {
        return Ok(Principal::Key);
    }
    Err(auth_failed(format!(
        "The MAC signature found in the HTTP request '{signature}' is not the same as any computed signature. Server used following string to sign: '{}'.",
        candidates[0]
    )))
}

fn check_request_date(headers: &HeaderMap) -> StorageResult<()> {
    let raw = headers
        .get("x-ms-date")
        .or_else(|| headers.get(http::header::DATE))
        .and_then(|v| v.to_str().ok());
    let Some(raw) = raw else {
        return Err(auth_failed(
            "Request must contain an x-ms-date or Date header.",
        ));
    };
    let Ok(date) = httpdate::parse_http_date(raw) else {
        return Err(StorageError::bad_header("x-ms-date", raw));
    };
    let date: DateTime<Utc> = date.into();
    let now = Utc::now();
    if date < now - MAX_CLOCK_SKEW {
        return Err(auth_failed(format!("Request date header too old: '{raw}'")));
    }
    if date > now + MAX_CLOCK_SKEW {
        return Err(auth_failed(format!(
            "Request date header is in the future: '{raw}'"
        )));
    }
    Ok(())
}

/// Verifies a SAS token and checks that it allows the request's operation.
///
/// `policy` is the container's stored access policy named by `si`, if the token names one.
pub fn verify_sas(
    req: &AuthRequest<'_>,
    account: &Account,
    sas: &Sas,
    policy: Option<&SignedIdentifier>,
) -> StorageResult<Principal> {
    let target = req.target;
    let string_to_sign = if sas.is_account_sas() {
        sas.account_string_to_sign(&account.name)
    } else {
        let scope_ok = matches!(
            (sas.resource.as_deref(), &target.container, &target.blob),
            (Some("c"), Some(_), _) | (Some("b" | "bs" | "bv"), Some(_), Some(_))
        );
        let Some(container) = target.container.as_deref().filter(|_| scope_ok) else {
            return Err(StorageError::new(
                ErrorCode::AuthorizationResourceTypeMismatch,
            ));
        };
        let blob = if sas.resource.as_deref() == Some("c") {
            None
        } else {
            target.blob.as_deref()
        };
        sas.service_string_to_sign(&account.name, container, blob)
    };
    if !account.verify(&string_to_sign, &sas.signature) {
        return Err(auth_failed(format!(
            "Signature did not match. String to sign used was {string_to_sign}"
        )));
    }
    if !sas.identifier.is_empty() && policy.is_none() {
        return Err(auth_failed(format!(
            "The signed identifier {} does not exist.",
            sas.identifier
        )));
    }
    // A stored access policy supplies the fields the token leaves out; a field set in both is
    // refused, so revoking access through the policy cannot be bypassed by the token.
    let pick = |name: &str, own: &str, from_policy: Option<&String>| -> StorageResult<String> {
        match (own.is_empty(), from_policy.filter(|v| !v.is_empty())) {
            (false, Some(_)) => Err(auth_failed(format!(
                "The field {name} is specified both in the shared access signature and in the stored access policy {}.",
                sas.identifier
            ))),
            (true, Some(v)) => Ok(v.clone()),
            _ => Ok(own.to_owned()),
        }
    };
    let permissions = pick(
        "sp",
        &sas.permissions,
        policy.and_then(|p| p.permission.as_ref()),
    )?;
    let start = pick("st", &sas.start, policy.and_then(|p| p.start.as_ref()))?;
    let expiry = pick("se", &sas.expiry, policy.and_then(|p| p.expiry.as_ref()))?;
    check_time_window(&start, &expiry)?;
    if !sas.protocol.is_empty() && !sas.protocol.split(',').any(|p| p.trim() == "http") {
        return Err(StorageError::new(ErrorCode::AuthorizationProtocolMismatch));
    }
    if !sas.ip.is_empty() && !sas::ip_allowed(&sas.ip, req.remote_ip) {
        return Err(
            StorageError::new(ErrorCode::AuthorizationSourceIPMismatch).with_message(format!(
                "This request is not authorized to perform this operation using this source IP {}.",
                req.remote_ip
            )),
        );
    }
    let op = req.operation;
    if sas.is_account_sas() {
        if !sas.services.as_deref().unwrap_or_default().contains('b') {
            return Err(StorageError::new(ErrorCode::AuthorizationServiceMismatch));
        }
        let needed = match op.level() {
            Level::Service => 's',
            Level::Container => 'c',
            Level::Object => 'o',
        };
        if !sas
            .resource_types
            .as_deref()
            .unwrap_or_default()
            .contains(needed)
        {
            return Err(StorageError::new(
                ErrorCode::AuthorizationResourceTypeMismatch,
            ));
        }
    } else {
        let container_op_ok = matches!(
            op,
            Operation::ListBlobs
                | Operation::GetContainerProperties
                | Operation::GetContainerMetadata
        ) && sas.resource.as_deref() == Some("c");
        if op.level() != Level::Object && !container_op_ok {
            return Err(StorageError::new(
                ErrorCode::AuthorizationResourceTypeMismatch,
            ));
        }
    }
    if !op
        .sas_permissions()
        .chars()
        .any(|p| permissions.contains(p))
    {
        return Err(StorageError::new(
            ErrorCode::AuthorizationPermissionMismatch,
        ));
    }
    Ok(Principal::Sas(SasGrant {
        create_only: !permissions.contains('w'),
        overrides: sas.overrides.clone(),
    }))
}

fn check_time_window(start: &str, expiry: &str) -> StorageResult<()> {
    let now = Utc::now();
    let Some(expiry_time) = sas::parse_time(expiry) else {
        return Err(auth_failed(if expiry.is_empty() {
            "Signed expiry time must be specified.".to_owned()
        } else {
            format!("se is mandatory and must be a valid time. Received: {expiry}")
        }));
    };
    let start_time =
        if start.is_empty() {
            None
        } else {
            Some(sas::parse_time(start).ok_or_else(|| {
                auth_failed(format!("st must be a valid time. Received: {start}"))
            })?)
        };
    if now > expiry_time || start_time.is_some_and(|s| now < s) {
        let fmt = |t: DateTime<Utc>| t.format("%a, %d %b %Y %H:%M:%S GMT").to_string();
        return Err(auth_failed(format!(
            "Signed expiry time [{}] must be after signed start time [{}] and the current time [{}] within that window",
            fmt(expiry_time),
            start_time.map(fmt).unwrap_or_default(),
            fmt(now)
        )));
    }
    Ok(())
}
