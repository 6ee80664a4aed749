use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode, header};
use pin_project_lite::pin_project;

use super::{LayerState, Serving, VersionBody, while_serving};
use crate::{VersionError, changes::Direction, payload::VersionedPayload};

const API_VERSION: HeaderName = HeaderName::from_static("api-version");
const API_SUPPORTED_VERSIONS: HeaderName = HeaderName::from_static("api-supported-versions");
const API_DEPRECATED_VERSIONS: HeaderName = HeaderName::from_static("api-deprecated-versions");

pin_project! {
    /// Response future of [`VersionService`](super::VersionService).
    pub struct ResponseFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Called {
            #[pin]
            future: F,
            index: usize,
            serving: Serving,
            state: Arc<LayerState>,
        },
        Rejected {
            error: Option<Box<VersionError>>,
            state: Arc<LayerState>,
        },
        Misplaced,
    }
}

impl<F> ResponseFuture<F> {
    pub(super) fn called(future: F, index: usize, serving: Serving, state: Arc<LayerState>) -> Self {
        Self {
            kind: Kind::Called {
                future,
                index,
                serving,
                state,
            },
        }
    }

    pub(super) fn rejected(error: VersionError, state: Arc<LayerState>) -> Self {
        Self {
            kind: Kind::Rejected {
                error: Some(Box::new(error)),
                state,
            },
        }
    }

    pub(super) fn misplaced() -> Self {
        Self { kind: Kind::Misplaced }
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<VersionBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Called {
                future,
                index,
                serving,
                state,
            } => {
                let response = ready!(while_serving(*serving, || future.poll(cx)))?;
                Poll::Ready(Ok(shape_response(response, *index, state)))
            }
            KindProj::Rejected { error, state } => {
                let error = error.take().expect("ResponseFuture polled after completion");
                let mut response: Response<VersionBody<B>> = error.to_response(state.set.versions());
                common_headers(response.headers_mut(), state, None);
                Poll::Ready(Ok(response))
            }
            KindProj::Misplaced => {
                tracing::error!(
                    "VersionLayer is applied inside the router (Router::layer); it must wrap the whole router \
                     (`VersionLayer::layer(router)`) so `/api/vX.Y/...` paths are rewritten before routing"
                );
                let mut response = Response::new(VersionBody::full(Bytes::from_static(
                    b"server misconfiguration: VersionLayer must wrap the whole router, not Router::layer",
                )));
                *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
                Poll::Ready(Ok(response))
            }
        }
    }
}

/// Version headers every answer carries (`Vary` too: caches must key on the version header).
/// Errors (`served` is `None`) always list the versions, so a client can correct itself.
fn common_headers(headers: &mut HeaderMap, state: &LayerState, served: Option<&HeaderValue>) {
    let set = &state.set.inner;
    headers.reserve(4);
    if let Some(served) = served {
        headers.insert(API_VERSION, served.clone());
    }
    if set.report_versions || served.is_none() {
        headers.insert(API_SUPPORTED_VERSIONS, set.supported_header.clone());
        if let Some(deprecated) = &set.deprecated_header {
            headers.insert(API_DEPRECATED_VERSIONS, deprecated.clone());
        }
    }
    if let Some(vary) = &set.vary {
        headers.append(header::VARY, vary.clone());
    }
}

fn shape_response<B>(response: Response<B>, index: usize, state: &LayerState) -> Response<VersionBody<B>> {
    let (mut parts, body) = response.into_parts();
    let info = state.set.info(index);
    common_headers(&mut parts.headers, state, Some(&info.served));
    for (name, value) in &info.deprecation_headers {
        parts.headers.insert(name.clone(), value.clone());
    }
    // Only responses for older versions carry the typed value (the newest is already JSON).
    let Some(payload) = parts.extensions.remove::<VersionedPayload>() else {
        return Response::from_parts(parts, VersionBody::inner(body));
    };
    match render(&payload, index, state) {
        Ok(bytes) => {
            parts
                .headers
                .insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
            Response::from_parts(parts, VersionBody::full(bytes))
        }
        Err(error) => {
            tracing::error!(%error, version = %info.version, "could not render a versioned response");
            parts.status = StatusCode::INTERNAL_SERVER_ERROR;
            parts.headers.remove(header::CONTENT_LENGTH);
            Response::from_parts(
                parts,
                VersionBody::full(Bytes::from_static(b"{\"error\":\"could not render the response\"}")),
            )
        }
    }
}

/// Serialize once: straight from the typed value for the newest version, through a JSON value
/// and the compiled plan otherwise.
fn render(payload: &VersionedPayload, index: usize, state: &LayerState) -> Result<Vec<u8>, String> {
    let payload = &payload.0;
    let plan = match &state.changes {
        Some(changes) => Some(
            changes
                .plan_for(payload.payload_type(), payload.shape_fn(), index, Direction::Down)
                .map_err(|e| e.to_string())?,
        ),
        None => None,
    };
    match plan {
        Some(plan) if !plan.is_empty() => {
            let mut value = payload.to_value().map_err(|e| e.to_string())?;
            plan.apply(&mut value);
            serde_json::to_vec(&value).map_err(|e| e.to_string())
        }
        _ => payload.to_bytes().map_err(|e| e.to_string()),
    }
}
