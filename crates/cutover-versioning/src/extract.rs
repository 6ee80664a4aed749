//! axum glue: the negotiated version as an extractor, `Versioned<T>` responses,
//! `VersionedJson<T>` request bodies, and per-endpoint version ranges.

use std::{
    convert::Infallible,
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use axum::{
    body::{Body, Bytes},
    extract::{FromRequest, FromRequestParts, Request},
    http::{HeaderValue, StatusCode, header, request::Parts},
    response::{IntoResponse, Response},
};
use serde::{Serialize, de::DeserializeOwned};
use serde_json::json;
use tower_layer::Layer;
use tower_service::Service;

use crate::{
    ApiVersion, Negotiated, VersionError, VersionedShape,
    changes::Direction,
    layer::{Serving, serving},
    payload::VersionedPayload,
};

fn problem(status: StatusCode, title: &str, detail: impl Into<String>) -> Response {
    let body = json!({ "type": "about:blank", "title": title, "status": status.as_u16(), "detail": detail.into() });
    let mut response = (status, body.to_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    response
}

/// Rejection when an extractor needs the [`VersionLayer`](crate::VersionLayer) and the request
/// did not pass through it.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the API version is only known behind VersionLayer; wrap the router with it")]
pub struct MissingVersionLayer;

impl IntoResponse for MissingVersionLayer {
    fn into_response(self) -> Response {
        problem(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Server misconfiguration",
            self.to_string(),
        )
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Negotiated {
    type Rejection = MissingVersionLayer;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Negotiated>().cloned().ok_or(MissingVersionLayer)
    }
}

/// A response in the newest representation, serialized once, in the shape of the version the
/// request negotiated. For the newest version it costs what `Json` costs; for older ones the
/// value goes to the version layer, which applies the declared changes. Without the layer, it
/// is served in the newest shape.
///
/// ```
/// use axum::{Router, routing::get};
/// use cutover_versioning::{Shape, Versioned, VersionedShape};
///
/// #[derive(serde::Serialize)]
/// struct User { id: u64, username: String }
/// impl VersionedShape for User {
///     fn shape() -> Shape { Shape::resource("user") }
/// }
///
/// async fn get_user() -> Versioned<User> {
///     Versioned::ok(User { id: 1, username: "ada".into() })
/// }
/// let app: Router = Router::new().route("/api/users/1", get(get_user));
/// # drop(app);
/// ```
#[derive(Debug, Clone)]
pub struct Versioned<T> {
    status: StatusCode,
    value: T,
}

impl<T> Versioned<T> {
    /// 200 OK.
    pub fn ok(value: T) -> Self {
        Self {
            status: StatusCode::OK,
            value,
        }
    }

    /// 201 Created.
    pub fn created(value: T) -> Self {
        Self {
            status: StatusCode::CREATED,
            value,
        }
    }

    /// Any status.
    pub fn with_status(status: StatusCode, value: T) -> Self {
        Self { status, value }
    }
}

impl<T> IntoResponse for Versioned<T>
where
    T: Serialize + VersionedShape + Send + Sync + 'static,
{
    fn into_response(self) -> Response {
        if serving() == Serving::Older {
            // The layer shapes it for the older version and serializes it then.
            let mut response = Response::new(Body::empty());
            *response.status_mut() = self.status;
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            response.extensions_mut().insert(VersionedPayload::new(self.value));
            return response;
        }
        (self.status, axum::Json(self.value)).into_response()
    }
}

/// A JSON request body sent in the client's version, brought forward to the newest
/// representation before it is deserialized: an old client's `{"name": ...}` arrives in the
/// handler as today's `username`.
///
/// Rejections are problem+json: 415 without a JSON content type, 400 for invalid JSON, 422 for
/// JSON of the wrong shape.
#[derive(Debug, Clone)]
pub struct VersionedJson<T>(pub T);

/// Why a [`VersionedJson`] body was refused.
#[derive(Debug)]
pub struct VersionedJsonRejection(Response);

impl IntoResponse for VersionedJsonRejection {
    fn into_response(self) -> Response {
        self.0
    }
}

impl<T, S> FromRequest<S> for VersionedJson<T>
where
    T: DeserializeOwned + VersionedShape + 'static,
    S: Send + Sync,
{
    type Rejection = VersionedJsonRejection;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|media| {
                let media = media.trim();
                media.eq_ignore_ascii_case("application/json")
                    || (media.starts_with("application/") && media.ends_with("+json"))
            });
        if !is_json {
            return Err(VersionedJsonRejection(problem(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Unsupported media type",
                "expected a request body with `Content-Type: application/json`",
            )));
        }
        let negotiated = request.extensions().get::<Negotiated>().cloned();
        let changes = negotiated
            .as_ref()
            .and_then(|n| n.versioning())
            .and_then(|v| v.changes().cloned());
        let bytes = Bytes::from_request(request, state).await.map_err(|rejection| {
            VersionedJsonRejection(problem(
                StatusCode::BAD_REQUEST,
                "Unreadable body",
                rejection.body_text(),
            ))
        })?;
        let unprocessable = |error: serde_json::Error| {
            VersionedJsonRejection(problem(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Invalid request body",
                error.to_string(),
            ))
        };
        match (negotiated, changes) {
            (Some(negotiated), Some(changes)) if !negotiated.is_head() => {
                let mut value: serde_json::Value = serde_json::from_slice(&bytes).map_err(|error| {
                    VersionedJsonRejection(problem(StatusCode::BAD_REQUEST, "Invalid JSON", error.to_string()))
                })?;
                let plan = changes.plan::<T>(negotiated.index, Direction::Up).map_err(|error| {
                    tracing::error!(%error, "could not upgrade a versioned request body");
                    VersionedJsonRejection(problem(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "Server misconfiguration",
                        "version changes are invalid",
                    ))
                })?;
                plan.apply(&mut value);
                serde_json::from_value(value).map(Self).map_err(unprocessable)
            }
            _ => serde_json::from_slice(&bytes).map(Self).map_err(|error| {
                if error.is_syntax() || error.is_eof() {
                    VersionedJsonRejection(problem(StatusCode::BAD_REQUEST, "Invalid JSON", error.to_string()))
                } else {
                    unprocessable(error)
                }
            }),
        }
    }
}

/// Restricts a route to a range of versions; outside it the route answers 400 with the same
/// problem document as any unsupported version. Apply with `route_layer`.
///
/// ```
/// use axum::{Router, routing::get};
/// use cutover_versioning::VersionRange;
///
/// let app: Router = Router::new()
///     .route("/api/users/search", get(|| async { "[]" }))
///     .route_layer(VersionRange::since("1.2").expect("a version"));
/// # drop(app);
/// ```
#[derive(Debug, Clone)]
pub struct VersionRange {
    min: Option<ApiVersion>,
    max: Option<ApiVersion>,
}

impl VersionRange {
    /// From `min` on.
    pub fn since(min: &str) -> Result<Self, crate::ParseVersionError> {
        Ok(Self {
            min: Some(min.parse()?),
            max: None,
        })
    }

    /// Up to and including `max`.
    pub fn until(max: &str) -> Result<Self, crate::ParseVersionError> {
        Ok(Self {
            min: None,
            max: Some(max.parse()?),
        })
    }

    /// From `min` up to and including `max`.
    pub fn between(min: &str, max: &str) -> Result<Self, crate::ParseVersionError> {
        Ok(Self {
            min: Some(min.parse()?),
            max: Some(max.parse()?),
        })
    }

    fn check(&self, version: &ApiVersion) -> Result<(), VersionError> {
        if let Some(min) = self.min.as_ref().filter(|min| version < *min) {
            return Err(VersionError::OutOfRange {
                requested: version.clone(),
                detail: format!("this endpoint exists from API version {min} on; the request uses {version}"),
            });
        }
        if let Some(max) = self.max.as_ref().filter(|max| version > *max) {
            return Err(VersionError::OutOfRange {
                requested: version.clone(),
                detail: format!("this endpoint exists up to API version {max}; the request uses {version}"),
            });
        }
        Ok(())
    }
}

impl<S> Layer<S> for VersionRange {
    type Service = VersionRangeService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        VersionRangeService {
            inner,
            range: self.clone(),
        }
    }
}

/// The service made by [`VersionRange`].
#[derive(Debug, Clone)]
pub struct VersionRangeService<S> {
    inner: S,
    range: VersionRange,
}

impl<S> Service<Request> for VersionRangeService<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let Some(negotiated) = request.extensions().get::<Negotiated>() else {
            return Box::pin(std::future::ready(Ok(MissingVersionLayer.into_response())));
        };
        if let Err(error) = self.range.check(negotiated.version()) {
            let supported: Vec<String> = negotiated
                .versioning()
                .map(|v| v.versions().versions().map(ToString::to_string).collect())
                .unwrap_or_default();
            let response: Response<Body> = error.to_response(supported.iter());
            return Box::pin(std::future::ready(Ok(response)));
        }
        Box::pin(self.inner.call(request))
    }
}
