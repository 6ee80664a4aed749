//! RFC 9457 problem details: the one error body every cutover crate answers with, and the
//! one applications can use for their own errors.
//!
//! ```
//! use cutover_core::problem::Problem;
//! use http::StatusCode;
//!
//! let problem = Problem::new(StatusCode::CONFLICT)
//!     .with_detail("a user with username `ada` already exists")
//!     .with_extension("field", "username");
//! let response: http::Response<bytes::Bytes> = problem.to_response();
//! assert_eq!(response.status(), 409);
//! assert_eq!(response.headers()["content-type"], "application/problem+json");
//! let body: serde_json::Value = serde_json::from_slice(response.body()).unwrap();
//! assert_eq!(body["title"], "Conflict");
//! assert_eq!(body["field"], "username");
//! ```

use std::{borrow::Cow, fmt};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode, header};
use serde_json::{Map, Value};

/// The media type of problem documents.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// An RFC 9457 problem document with its status and any extra response headers.
///
/// `type` defaults to `about:blank` and `title` to the status's reason phrase, as the RFC
/// recommends for problems that need no further identification.
#[derive(Clone, PartialEq)]
pub struct Problem {
    status: StatusCode,
    kind: Cow<'static, str>,
    title: Cow<'static, str>,
    detail: Option<String>,
    /// The members most problems do without, boxed so a `Result<_, Problem>` stays small.
    extra: Option<Box<Extra>>,
}

#[derive(Clone, Default, PartialEq)]
struct Extra {
    instance: Option<String>,
    extensions: Map<String, Value>,
    headers: HeaderMap,
}

impl Problem {
    /// A problem with `status`, type `about:blank` and the status's reason as title.
    pub fn new(status: StatusCode) -> Self {
        Self {
            status,
            kind: Cow::Borrowed("about:blank"),
            title: Cow::Borrowed(status.canonical_reason().unwrap_or("Error")),
            detail: None,
            extra: None,
        }
    }

    fn extra(&mut self) -> &mut Extra {
        self.extra.get_or_insert_with(Box::default)
    }

    /// 400 Bad Request.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST).with_detail(detail)
    }

    /// 404 Not Found.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND).with_detail(detail)
    }

    /// 409 Conflict.
    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT).with_detail(detail)
    }

    /// 422 Unprocessable Content.
    pub fn unprocessable(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY).with_detail(detail)
    }

    /// 500 Internal Server Error. The detail is fixed: what went wrong belongs in the logs,
    /// not in a response anyone can read.
    pub fn internal() -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR).with_detail("the server could not complete the request")
    }

    /// 503 Service Unavailable with `Retry-After: <seconds>`.
    pub fn unavailable(detail: impl Into<String>, retry_after_seconds: u64) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE)
            .with_detail(detail)
            .with_header(header::RETRY_AFTER, HeaderValue::from(retry_after_seconds.max(1)))
    }

    /// A URI identifying the kind of problem (`type`).
    pub fn with_type(mut self, uri: impl Into<Cow<'static, str>>) -> Self {
        self.kind = uri.into();
        self
    }

    /// A short summary that does not change between occurrences (`title`).
    pub fn with_title(mut self, title: impl Into<Cow<'static, str>>) -> Self {
        self.title = title.into();
        self
    }

    /// What happened this time, for the client (`detail`).
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// A URI for this occurrence (`instance`).
    pub fn with_instance(mut self, instance: impl Into<String>) -> Self {
        self.extra().instance = Some(instance.into());
        self
    }

    /// An extension member. The standard members (`type`, `title`, `status`, `detail`,
    /// `instance`) cannot be overwritten this way.
    pub fn with_extension(mut self, name: impl Into<String>, value: impl Into<Value>) -> Self {
        let name = name.into();
        if !matches!(name.as_str(), "type" | "title" | "status" | "detail" | "instance") {
            self.extra().extensions.insert(name, value.into());
        }
        self
    }

    /// A header sent with the problem (`Retry-After`, `Allow`, ...).
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.extra().headers.insert(name, value);
        self
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The `type` URI.
    pub fn type_uri(&self) -> &str {
        &self.kind
    }

    /// The `title`.
    pub fn title(&self) -> &str {
        &self.title
    }

    /// The `detail`, when there is one.
    pub fn detail(&self) -> Option<&str> {
        self.detail.as_deref()
    }

    /// An extension member.
    pub fn extension(&self, name: &str) -> Option<&Value> {
        self.extra.as_ref()?.extensions.get(name)
    }

    /// The document as JSON.
    pub fn to_json(&self) -> Value {
        let mut body = Map::new();
        body.insert("type".to_owned(), Value::from(&*self.kind));
        body.insert("title".to_owned(), Value::from(&*self.title));
        body.insert("status".to_owned(), Value::from(self.status.as_u16()));
        if let Some(detail) = &self.detail {
            body.insert("detail".to_owned(), Value::from(detail.as_str()));
        }
        if let Some(extra) = &self.extra {
            if let Some(instance) = &extra.instance {
                body.insert("instance".to_owned(), Value::from(instance.as_str()));
            }
            for (name, value) in &extra.extensions {
                body.insert(name.clone(), value.clone());
            }
        }
        Value::Object(body)
    }

    /// The response: the status, `Content-Type: application/problem+json`,
    /// `Cache-Control: no-store`, the extra headers and the document.
    pub fn to_response<B: From<Bytes>>(&self) -> Response<B> {
        let body = serde_json::to_vec(&self.to_json()).unwrap_or_default();
        let mut response = Response::new(B::from(Bytes::from(body)));
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(extra) = &self.extra {
            for (name, value) in &extra.headers {
                headers.insert(name.clone(), value.clone());
            }
        }
        response
    }
}

impl fmt::Debug for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Problem")
            .field("status", &self.status.as_u16())
            .field("type", &self.kind)
            .field("title", &self.title)
            .field("detail", &self.detail)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.detail {
            Some(detail) => write!(f, "{} {}: {detail}", self.status.as_u16(), self.title),
            None => write!(f, "{} {}", self.status.as_u16(), self.title),
        }
    }
}

impl std::error::Error for Problem {}

impl From<StatusCode> for Problem {
    fn from(status: StatusCode) -> Self {
        Self::new(status)
    }
}

#[cfg(feature = "axum")]
impl axum_core::response::IntoResponse for Problem {
    fn into_response(self) -> axum_core::response::Response {
        self.to_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_members_cannot_be_overwritten_by_extensions() {
        let problem = Problem::new(StatusCode::NOT_FOUND)
            .with_extension("status", 200)
            .with_extension("title", "ok")
            .with_extension("id", 7);
        let json = problem.to_json();
        assert_eq!(json["status"], 404);
        assert_eq!(json["title"], "Not Found");
        assert_eq!(json["id"], 7);
        assert_eq!(json["type"], "about:blank");
        assert!(json.get("detail").is_none());
    }

    #[test]
    fn unavailable_says_when_to_retry() {
        let response: Response<Bytes> = Problem::unavailable("draining", 0).to_response();
        assert_eq!(response.status(), 503);
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
        assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
        let body: Value = serde_json::from_slice(response.body()).unwrap();
        assert_eq!(body["detail"], "draining");
    }

    #[test]
    fn a_result_of_a_problem_stays_small() {
        assert!(size_of::<Problem>() <= 96, "{}", size_of::<Problem>());
    }

    #[test]
    fn internal_never_carries_the_cause() {
        let problem = Problem::internal();
        assert_eq!(
            problem.to_string(),
            "500 Internal Server Error: the server could not complete the request"
        );
    }
}
