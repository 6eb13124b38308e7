//! Storage errors: the Azure error codes this service returns, their HTTP status and message,
//! and the one place where an error becomes an XML response.

use axum::body::Body;
use axum::response::Response;
use http::{HeaderValue, Method, StatusCode, header};

macro_rules! error_codes {
    ($($code:ident => ($status:literal, $message:literal),)*) => {
        /// An Azure Storage error code (`x-ms-error-code`), with its status and message.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum ErrorCode { $(
            #[doc = $message]
            $code,
        )* }

        impl ErrorCode {
            /// The code as Azure spells it.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$code => stringify!($code),)* }
            }
            /// The HTTP status Azure answers with.
            pub fn status(self) -> StatusCode {
                let status = match self { $(Self::$code => $status,)* };
                StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            }
            /// Azure's default message.
            pub fn message(self) -> &'static str {
                match self { $(Self::$code => $message,)* }
            }
        }
    };
}

error_codes! {
    ConditionNotMetRead => (304, "The condition specified using HTTP conditional header(s) is not met."),
    InvalidBlockId => (400, "The specified block ID is invalid. The block ID must be Base64-encoded."),
    InvalidBlockList => (400, "The specified block list is invalid."),
    InvalidBlobOrBlock => (400, "The specified blob or block content is invalid."),
    InvalidHeaderValue => (400, "The value for one of the HTTP headers is not in the correct format."),
    InvalidMetadata => (400, "The metadata specified is invalid. It has characters that are not permitted."),
    InvalidQueryParameterValue => (400, "Value for one of the query parameters specified in the request URI is invalid."),
    InvalidResourceName => (400, "The specified resource name contains invalid characters."),
    InvalidUri => (400, "The requested URI does not represent any resource on the server."),
    InvalidXmlDocument => (400, "XML specified is not syntactically valid."),
    InvalidAuthenticationInfo => (400, "Authentication information is not given in the correct format. Check the value of Authorization header."),
    Md5Mismatch => (400, "The MD5 value specified in the request did not match with the MD5 value calculated by the server."),
    MissingRequiredHeader => (400, "An HTTP header that's mandatory for this request is not specified."),
    MissingRequiredQueryParameter => (400, "A query parameter that's mandatory for this request is not specified."),
    MultipleConditionHeadersNotSupported => (400, "Multiple condition headers are not supported."),
    OutOfRangeInput => (400, "One of the request inputs is out of range."),
    UnsupportedHeader => (400, "One of the HTTP headers specified in the request is not supported."),
    InvalidInput => (400, "One of the request inputs is not valid."),
    NoAuthenticationInformation => (401, "Server failed to authenticate the request. Please refer to the information in the www-authenticate header."),
    AuthenticationFailed => (403, "Server failed to authenticate the request. Make sure the value of Authorization header is formed correctly including the signature."),
    AuthorizationPermissionMismatch => (403, "This request is not authorized to perform this operation using this permission."),
    AuthorizationProtocolMismatch => (403, "This request is not authorized to perform this operation using this protocol."),
    AuthorizationResourceTypeMismatch => (403, "This request is not authorized to perform this operation using this resource type."),
    AuthorizationServiceMismatch => (403, "This request is not authorized to perform this operation using this service."),
    AuthorizationSourceIPMismatch => (403, "This request is not authorized to perform this operation using this source IP."),
    CannotVerifyCopySource => (403, "The copy source could not be verified."),
    BlobNotFound => (404, "The specified blob does not exist."),
    ContainerNotFound => (404, "The specified container does not exist."),
    ResourceNotFound => (404, "The specified resource does not exist."),
    UnsupportedHttpVerb => (405, "The resource doesn't support the specified HTTP verb."),
    BlobAlreadyExists => (409, "The specified blob already exists."),
    ContainerAlreadyExists => (409, "The specified container already exists."),
    ContainerBeingDeleted => (409, "The specified container is being deleted. Try operation later."),
    BlockCountExceedsLimit => (409, "The committed block count cannot exceed the maximum limit of 50,000 blocks."),
    InvalidBlobType => (409, "The blob type is invalid for this operation."),
    MissingContentLengthHeader => (411, "Content-Length header value must be specified."),
    ConditionNotMet => (412, "The condition specified using HTTP conditional header(s) is not met."),
    AppendPositionConditionNotMet => (412, "The append position condition specified was not met."),
    MaxBlobSizeConditionNotMet => (412, "The max blob size condition specified was not met."),
    RequestBodyTooLarge => (413, "The request body is too large and exceeds the maximum permissible limit."),
    InvalidRange => (416, "The range specified is invalid for the current size of the resource."),
    InternalError => (500, "The server encountered an internal error. Please retry the request."),
    NotImplemented => (501, "The requested operation is not implemented by Cobalt."),
}

/// An error on its way to becoming a Storage XML error response.
#[derive(Debug)]
pub struct StorageError {
    /// The Azure error code.
    pub code: ErrorCode,
    /// A message replacing the code's default one.
    pub message: Option<String>,
    /// Extra XML elements after `<Message>` (e.g. `AuthenticationErrorDetail`).
    pub details: Vec<(&'static str, String)>,
    /// Extra response headers (e.g. `Content-Range` on 416).
    pub headers: Vec<(header::HeaderName, HeaderValue)>,
}

/// Result type of request handlers.
pub type StorageResult<T> = Result<T, StorageError>;

impl StorageError {
    /// An error with the code's default message.
    pub fn new(code: ErrorCode) -> Self {
        Self {
            code,
            message: None,
            details: Vec::new(),
            headers: Vec::new(),
        }
    }

    /// Replaces the message.
    pub fn with_message(mut self, message: impl Into<String>) -> Self {
        self.message = Some(message.into());
        self
    }

    /// Adds an XML detail element.
    pub fn with_detail(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.details.push((name, value.into()));
        self
    }

    /// Adds a response header.
    pub fn with_header(mut self, name: header::HeaderName, value: &str) -> Self {
        if let Ok(v) = HeaderValue::from_str(value) {
            self.headers.push((name, v));
        }
        self
    }

    /// `InvalidHeaderValue` naming the header.
    pub fn bad_header(name: &str, value: &str) -> Self {
        Self::new(ErrorCode::InvalidHeaderValue)
            .with_detail("HeaderName", name)
            .with_detail("HeaderValue", value)
    }

    /// `InvalidQueryParameterValue` naming the parameter.
    pub fn bad_query(name: &str, value: &str) -> Self {
        Self::new(ErrorCode::InvalidQueryParameterValue)
            .with_detail("QueryParameterName", name)
            .with_detail("QueryParameterValue", value)
    }

    /// A 500 whose cause is logged here and never returned to the client.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(%cause, "internal error");
        Self::new(ErrorCode::InternalError)
    }

    /// Renders the error: status, `x-ms-error-code`, and (except for HEAD) the XML body.
    pub fn into_response(self, method: &Method, request_id: &str) -> Response {
        let status = self.code.status();
        let message = self.message.as_deref().unwrap_or(self.code.message());
        let mut builder = Response::builder()
            .status(status)
            .header("x-ms-error-code", self.code.wire_code());
        for (name, value) in self.headers {
            builder = builder.header(name, value);
        }
        let body = if method == Method::HEAD || status == StatusCode::NOT_MODIFIED {
            Body::empty()
        } else {
            builder = builder.header(header::CONTENT_TYPE, "application/xml");
            let time = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.6f0Z");
            let mut xml = String::with_capacity(256);
            xml.push_str(r#"<?xml version="1.0" encoding="utf-8"?><Error><Code>"#);
            xml.push_str(self.code.wire_code());
            xml.push_str("</Code><Message>");
            xml.push_str(&crate::xml::escape(&format!(
                "{message}\nRequestId:{request_id}\nTime:{time}"
            )));
            xml.push_str("</Message>");
            for (name, value) in &self.details {
                xml.push_str(&format!("<{name}>{}</{name}>", crate::xml::escape(value)));
            }
            xml.push_str("</Error>");
            Body::from(xml)
        };
        builder
            .body(body)
            .unwrap_or_else(|_| Response::new(Body::empty()))
    }
}

impl From<ErrorCode> for StorageError {
    fn from(code: ErrorCode) -> Self {
        Self::new(code)
    }
}

impl ErrorCode {
    /// The 304 variant shares `ConditionNotMet` on the wire.
    pub fn wire_code(self) -> &'static str {
        match self {
            Self::ConditionNotMetRead => "ConditionNotMet",
            other => other.as_str(),
        }
    }
}
