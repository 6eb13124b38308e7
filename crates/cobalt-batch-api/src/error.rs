//! Batch errors on the wire: the codes come from the control plane (`cobalt_batch::error`);
//! this is the one place where an error becomes Azure's JSON error body.

use axum::body::Body;
use axum::response::Response;
use http::{Method, StatusCode, header};
use serde_json::json;

pub use cobalt_batch::error::{BatchError, BatchResult, ErrorCode};

/// Renders `error`: its status and (except for HEAD and 304) the JSON body Azure sends.
pub fn render(error: BatchError, method: &Method, base_url: &str, request_id: &str) -> Response {
    if error.code == ErrorCode::NotModified {
        return Response::builder()
            .status(StatusCode::NOT_MODIFIED)
            .body(Body::empty())
            .unwrap_or_else(|_| Response::new(Body::empty()));
    }
    let message = error.message.as_deref().unwrap_or(error.code.message());
    let time = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.6f0Z");
    let mut body = json!({
        "odata.metadata": format!("{base_url}/$metadata#Microsoft.Azure.Batch.Protocol.Entities.Container.errors/@Element"),
        "code": error.code.as_str(),
        "message": {"lang": "en-US", "value": format!("{message}\nRequestId:{request_id}\nTime:{time}")},
    });
    if !error.values.is_empty() {
        body["values"] = error
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
        .status(error.code.status())
        .header(
            header::CONTENT_TYPE,
            "application/json;odata=minimalmetadata",
        )
        .body(body)
        .unwrap_or_else(|_| Response::new(Body::empty()))
}
