//! Batch errors: the codes this service returns, their HTTP status, and the one place where an
//! error becomes Azure's JSON error body.

use axum::body::Body;
use axum::response::Response;
use http::{Method, StatusCode, header};
use serde_json::json;

macro_rules! error_codes {
    ($($code:ident => ($status:literal, $message:literal),)*) => {
        /// An Azure Batch error code, with its status and default message.
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
    InvalidQueryParameterValue => (400, "Value for one of the query parameters specified in the request URI is invalid."),
    MissingRequiredQueryParameter => (400, "A query parameter that's mandatory for this request is not specified."),
    AuthenticationFailed => (403, "Server failed to authenticate the request. Make sure the value of Authorization header is formed correctly including the signature."),
    InvalidUri => (404, "The requested URI does not represent any resource on the server."),
    UnsupportedHttpVerb => (405, "The resource doesn't support the specified HTTP verb."),
    InternalError => (500, "Server encountered an internal error. Please try again after some time."),
    NotImplemented => (501, "The requested operation is not implemented by Cobalt yet."),
}

/// An error on its way to becoming a Batch JSON error response.
#[derive(Debug)]
pub struct BatchError {
    /// The Azure error code.
    pub code: ErrorCode,
    /// A message replacing the code's default one.
    pub message: Option<String>,
    /// The `values` array: (key, value) details such as `AuthenticationErrorDetail`.
    pub values: Vec<(String, String)>,
}

/// Result type of request handlers.
pub type BatchResult<T> = Result<T, BatchError>;

impl BatchError {
    /// An error with the code's default message.
    pub fn new(code: ErrorCode) -> Self {
        Self {
            code,
            message: None,
            values: Vec::new(),
        }
    }

    /// Replaces the message.
    pub fn with_message(mut self, message: impl Into<String>) -> Self {
        self.message = Some(message.into());
        self
    }

    /// Adds a `values` entry.
    pub fn with_value(mut self, key: &str, value: impl Into<String>) -> Self {
        self.values.push((key.to_owned(), value.into()));
        self
    }

    /// Renders the error: status and (except for HEAD) the JSON body Azure sends.
    pub fn into_response(self, method: &Method, base_url: &str, request_id: &str) -> Response {
        let message = self.message.as_deref().unwrap_or(self.code.message());
        let time = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.6f0Z");
        let mut body = json!({
            "odata.metadata": format!("{base_url}/$metadata#Microsoft.Azure.Batch.Protocol.Entities.Container.errors/@Element"),
            "code": self.code.as_str(),
            "message": {"lang": "en-US", "value": format!("{message}\nRequestId:{request_id}\nTime:{time}")},
        });
        if !self.values.is_empty() {
            body["values"] = self
                .values
                .iter()
                .map(|(k, v)| json!({"key": k, "value": v}))
                .collect();
        }
        let body = if method == Method::HEAD {
            Body::empty()
        } else {
            Body::from(body.to_string())
        };
        Response::builder()
            .status(self.code.status())
            .header(
                header::CONTENT_TYPE,
                "application/json;odata=minimalmetadata",
            )
            .body(body)
            .unwrap_or_else(|_| Response::new(Body::empty()))
    }
}

impl From<ErrorCode> for BatchError {
    fn from(code: ErrorCode) -> Self {
        Self::new(code)
    }
}
