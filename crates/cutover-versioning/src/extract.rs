//! axum glue: the negotiated version as an extractor, `Versioned<T>` responses,
//! `VersionedJson<T>` request bodies, and per-endpoint version ranges.

use std::{
    convert::Infallible,
    future::Future,
    marker::PhantomData,
    pin::Pin,
    task::{Context, Poll},
};

use axum::{
    body::{Body, Bytes},
    extract::{FromRequest, FromRequestParts, Request},
    http::{HeaderValue, Method, StatusCode, header, request::Parts},
    response::{IntoResponse, Response},
};
use cutover_core::problem::Problem;
use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;
use tower_layer::Layer;
use tower_service::Service;

use crate::{
    ApiVersion, Negotiated, TransformError, UnknownFields, VersionChanges, VersionError, VersionedShape,
    changes::Direction,
    layer::{Serving, serving},
    payload::VersionedPayload,
};

/// Rejection when an extractor needs the [`VersionLayer`](crate::VersionLayer) and the request
/// did not pass through it.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the API version is only known behind VersionLayer; wrap the router with it")]
pub struct MissingVersionLayer;

impl IntoResponse for MissingVersionLayer {
    fn into_response(self) -> Response {
        Problem::new(StatusCode::INTERNAL_SERVER_ERROR)
            .with_title("Server misconfiguration")
            .with_detail(self.to_string())
            .into_response()
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

/// A JSON request body sent in the client's version (to create a resource), brought forward
/// to the newest representation before it is deserialized: an old client's `{"name": ...}`
/// arrives in the handler as today's `username`.
///
/// The write contract holds for every version, the newest included: fields the version does
/// not have are refused with 400 naming them (unless the resource
/// [ignores them](crate::ResourceBuilder::ignore_unknown_fields)), fields added with a default
/// get it when absent, and errors name fields as the client's version does.
///
/// Rejections are problem+json: 415 without a JSON content type, 413 for a body over the
/// limit, 400 for invalid JSON or unknown fields, 422 for JSON of the wrong shape. To update a
/// stored resource, use [`VersionedUpdate`].
#[derive(Debug, Clone)]
pub struct VersionedJson<T>(pub T);

/// Why a [`VersionedJson`] or [`VersionedUpdate`] body was refused: a problem document.
#[derive(Debug, Clone)]
pub struct VersionedJsonRejection(Problem);

impl VersionedJsonRejection {
    /// The problem sent to the client.
    pub fn problem(&self) -> &Problem {
        &self.0
    }
}

impl IntoResponse for VersionedJsonRejection {
    fn into_response(self) -> Response {
        self.0.into_response()
    }
}

impl From<Problem> for VersionedJsonRejection {
    fn from(problem: Problem) -> Self {
        Self(problem)
    }
}

fn misconfigured(error: &dyn std::fmt::Display) -> VersionedJsonRejection {
    tracing::error!(%error, "could not upgrade a versioned request body");
    VersionedJsonRejection(Problem::internal())
}

fn rejection(error: TransformError) -> VersionedJsonRejection {
    match error {
        TransformError::UnknownFields(unknown) => VersionedJsonRejection(unknown_fields(&unknown)),
        TransformError::ReadOnly(read_only) => VersionedJsonRejection(
            Problem::bad_request(read_only.to_string())
                .with_type("urn:cutover:problem:read-only-fields")
                .with_title("Read-only fields")
                .with_extension("fields", read_only.fields().to_vec()),
        ),
        TransformError::Json { message, .. } => VersionedJsonRejection(
            Problem::unprocessable(message)
                .with_type("urn:cutover:problem:invalid-body")
                .with_title("Invalid request body"),
        ),
        other => misconfigured(&other),
    }
}

fn unknown_fields(unknown: &UnknownFields) -> Problem {
    Problem::bad_request(unknown.to_string())
        .with_type("urn:cutover:problem:unknown-fields")
        .with_title("Unknown fields")
        .with_extension("fields", unknown.fields().to_vec())
        .with_extension("api_version", unknown.version().to_string())
}

/// A JSON body, read and parsed, with what the version layer knows about the request.
struct ReadBody {
    value: Value,
    negotiated: Option<Negotiated>,
}

impl ReadBody {
    async fn read<S: Send + Sync>(request: Request, state: &S) -> Result<Self, VersionedJsonRejection> {
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
            return Err(VersionedJsonRejection(
                Problem::new(StatusCode::UNSUPPORTED_MEDIA_TYPE)
                    .with_detail("expected a request body with `Content-Type: application/json`"),
            ));
        }
        let negotiated = request.extensions().get::<Negotiated>().cloned();
        let bytes = Bytes::from_request(request, state).await.map_err(|rejection| {
            // 413 when the body is over the limit, 400 when it could not be read.
            let problem = Problem::new(rejection.status()).with_detail(rejection.body_text());
            VersionedJsonRejection(problem)
        })?;
        let value = crate::json::from_slice(&bytes).map_err(|error| {
            VersionedJsonRejection(
                Problem::bad_request(crate::json::public_message(&error.to_string()))
                    .with_type("urn:cutover:problem:invalid-json")
                    .with_title("Invalid JSON"),
            )
        })?;
        Ok(Self { value, negotiated })
    }

    /// The changes and the client's version index, when the request went through a layer
    /// with changes.
    fn versioning(&self) -> Option<(VersionChanges, usize, ApiVersion)> {
        let negotiated = self.negotiated.as_ref()?;
        let changes = negotiated.versioning()?.changes()?.clone();
        Some((changes, negotiated.index, negotiated.version.clone()))
    }
}

fn plain<T: DeserializeOwned>(value: Value) -> Result<T, VersionedJsonRejection> {
    serde_json::from_value(value).map_err(|error| rejection(TransformError::from(error)))
}

impl<T, S> FromRequest<S> for VersionedJson<T>
where
    T: DeserializeOwned + VersionedShape + 'static,
    S: Send + Sync,
{
    type Rejection = VersionedJsonRejection;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let body = ReadBody::read(request, state).await?;
        match body.versioning() {
            Some((changes, _, version)) => changes.upgrade(body.value, &version).map(Self).map_err(rejection),
            None => plain(body.value).map(Self),
        }
    }
}

/// A request body that updates a stored resource, in the client's version: a full
/// representation for `PUT`, a JSON merge patch (RFC 7396, `application/merge-patch+json` or
/// `application/json`) for `PATCH`. The handler loads the stored resource and calls
/// [`onto`](Self::onto), which brings the body forward onto it: the client changes what its
/// version can see, and fields it cannot see keep their stored values (a `1.0` client's `PUT`
/// never resets a field added in `1.3`).
///
/// Fields the version does not have are refused with 400 when the body is read, before the
/// handler runs.
///
/// ```
/// use axum::{Router, extract::Path, routing::put};
/// use cutover_versioning::{Shape, Versioned, VersionedJsonRejection, VersionedShape, VersionedUpdate};
///
/// #[derive(Clone, serde::Serialize, serde::Deserialize)]
/// struct User { id: u64, username: String, preferences: serde_json::Value }
/// impl VersionedShape for User {
///     fn shape() -> Shape { Shape::resource("user") }
/// }
///
/// async fn replace(Path(id): Path<u64>, update: VersionedUpdate<User>) -> Result<Versioned<User>, VersionedJsonRejection> {
///     let stored = User { id, username: "ada".into(), preferences: serde_json::json!({}) }; // load it
///     let updated: User = update.onto(&stored)?;
///     // store `updated`...
///     Ok(Versioned::ok(updated))
/// }
/// let app: Router = Router::new().route("/api/users/{id}", put(replace).patch(replace));
/// # drop(app);
/// ```
#[derive(Debug)]
pub struct VersionedUpdate<T> {
    body: ReadBodyParts,
    patch: bool,
    _target: PhantomData<fn() -> T>,
}

#[derive(Debug)]
struct ReadBodyParts {
    value: Value,
    versioning: Option<(VersionChanges, ApiVersion)>,
}

impl<T> VersionedUpdate<T>
where
    T: DeserializeOwned + VersionedShape + 'static,
{
    /// Whether the body is a merge patch (`PATCH`) rather than a full representation.
    pub fn is_patch(&self) -> bool {
        self.patch
    }

    /// The body as sent, in the client's version.
    pub fn body(&self) -> &Value {
        &self.body.value
    }

    /// Apply the body to `stored` (the resource as it is, newest representation) and
    /// deserialize the result. Rejections: 422 when the result is not a valid `T` (named in
    /// the client's vocabulary), 500 when the version changes are invalid.
    pub fn onto<R>(self, stored: &R) -> Result<T, VersionedJsonRejection>
    where
        R: Serialize + VersionedShape + 'static,
    {
        let ReadBodyParts { value, versioning } = self.body;
        match (versioning, self.patch) {
            (Some((changes, version)), false) => changes.upgrade_onto(value, &version, stored).map_err(rejection),
            (Some((changes, version)), true) => changes.patch_onto(value, &version, stored).map_err(rejection),
            (None, false) => plain(value),
            (None, true) => {
                let mut current = serde_json::to_value(stored).map_err(|error| misconfigured(&error))?;
                crate::changes::merge_patch(&mut current, value);
                plain(current)
            }
        }
    }
}

impl<T, S> FromRequest<S> for VersionedUpdate<T>
where
    T: DeserializeOwned + VersionedShape + 'static,
    S: Send + Sync,
{
    type Rejection = VersionedJsonRejection;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let patch = request.method() == Method::PATCH;
        let body = ReadBody::read(request, state).await?;
        let versioning = match body.versioning() {
            Some((changes, index, version)) => {
                let plan = changes
                    .plan::<T>(index, Direction::Up)
                    .map_err(|error| misconfigured(&error))?;
                changes
                    .check_fields(&plan, &body.value, index)
                    .map_err(|unknown| VersionedJsonRejection(unknown_fields(&unknown)))?;
                Some((changes, version))
            }
            None => None,
        };
        Ok(Self {
            body: ReadBodyParts {
                value: body.value,
                versioning,
            },
            patch,
            _target: PhantomData,
        })
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
