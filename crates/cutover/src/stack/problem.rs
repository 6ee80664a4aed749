//! Error responses the stack or the framework produce get an RFC 9457 problem body: a handler
//! that panics, and any error status produced without a body
//! (axum's 404 and 405, a timeout's 503), or as plain text by a body limit (413).
//! Responses the application wrote itself are left alone.

use std::any::Any;

use axum::{body::Body, response::Response};
use bytes::Bytes;
use cutover_core::problem::Problem;
use http::{StatusCode, header};
use http_body::Body as _;

/// Give a bodyless error response (or a plain-text 408/413) a problem document.
pub(crate) fn fill(response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let content_type = response.headers().get(header::CONTENT_TYPE);
    let empty = content_type.is_none() && response.body().size_hint().exact() == Some(0);
    let framework_text = matches!(status, StatusCode::PAYLOAD_TOO_LARGE | StatusCode::REQUEST_TIMEOUT)
        && content_type.is_some_and(|value| value.as_bytes().starts_with(b"text/plain"));
    if !(empty || framework_text) {
        return response;
    }
    let (mut parts, _) = response.into_parts();
    let problem = match status {
        StatusCode::PAYLOAD_TOO_LARGE => {
            Problem::new(status).with_detail("the request body is larger than this endpoint accepts")
        }
        StatusCode::REQUEST_TIMEOUT => Problem::new(status).with_detail("the request was not received in time"),
        StatusCode::SERVICE_UNAVAILABLE => Problem::new(status).with_detail("the service could not answer in time"),
        _ => Problem::new(status),
    };
    let filled: Response<Body> = problem.to_response();
    let (filled_parts, body) = filled.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    for (name, value) in &filled_parts.headers {
        parts.headers.insert(name.clone(), value.clone());
    }
    Response::from_parts(parts, body)
}

/// The answer to a handler that panicked: a 500 problem, the panic logged (not sent).
#[derive(Debug, Clone, Copy)]
pub(crate) struct PanicResponse;

impl tower_http::catch_panic::ResponseForPanic for PanicResponse {
    type ResponseBody = http_body_util::Full<Bytes>;

    fn response_for_panic(&mut self, panic: Box<dyn Any + Send + 'static>) -> Response<Self::ResponseBody> {
        let message = panic
            .downcast_ref::<&str>()
            .map(|text| (*text).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".to_owned());
        tracing::error!(panic = %message, "a handler panicked; answered 500 and kept serving");
        Problem::internal().to_response()
    }
}
